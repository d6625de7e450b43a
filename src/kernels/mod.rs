//! Hot loops: GEMM calls, im2col/col2im, pooling.
