//! The hot loops: matrix products, im2col/col2im, pooling. Nothing here knows
//! what a model is; every function works on slices and a geometry.

mod direct;
mod dot;
mod gemm;
mod im2col;
mod nt;
mod packed;
mod peak;
mod pool;
mod simd;
mod transpose;

pub use self::gemm::Gemm;
pub use direct::{conv_rows, conv_rows_split, conv_weight_grad, pad_image, Padded, Store, SLACK};
pub use dot::{dot, sum};
pub use packed::MR;

/// Whether the direct (stride-1, unfolding-free) convolution runs on this CPU.
pub fn direct_conv_available() -> bool {
    direct::available()
}
pub use im2col::{col2im, im2col, im2row, out_size, Window};
pub use nt::gemm_nt_rows;
pub use packed::{gemm_packed, PackedA};
pub use peak::fma_peak;
pub use pool::{maxpool_2x2_backward, maxpool_plane, maxpool_plane_backward};
pub use simd::{level, widest, Level};
pub use transpose::transpose;
