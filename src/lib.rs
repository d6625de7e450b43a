//! xent trains, evaluates and runs image classifiers on the CPU.
//!
//! The path of a training step: a batch of images `x [N, C, H, W]` goes
//! through the layers of a `nn::Sequential` to `logits [N, K]`;
//! `loss::cross_entropy` turns them into a loss with log-sum-exp (the log of a
//! softmax is never taken) and returns `dlogits = softmax − target`; the layers'
//! `backward` passes carry that gradient down to the parameters, and an
//! `optim::Optimizer` updates them.
//!
//! # Errors and panics
//!
//! Anything a user can cause (files, dataset bytes, model files, options,
//! shapes at the public API) returns [`Error`]. Panics are reserved for broken
//! internal invariants inside hot loops, and their messages name the
//! invariant.

#![warn(missing_docs)]

pub mod bench;
pub mod data;
mod error;
pub mod io;
pub mod kernels;
pub mod loss;
pub mod nn;
pub mod optim;
pub mod rng;
pub mod tensor;
pub mod train;

pub use error::{Error, Result};
pub use tensor::Tensor;
