//! Softmax, log-softmax, cross-entropy and NLL: values and gradients.
