//! A shape and a contiguous, row-major `f32` buffer. Images are NCHW: element
//! `(n, c, h, w)` sits at `((n * C + c) * H + h) * W + w`.

use crate::{Error, Result};

/// A dense, row-major `f32` tensor that owns its buffer.
///
/// Layers keep their activation and gradient buffers as tensors and reshape
/// them with [`Tensor::resize`], which reuses the allocation, so a training
/// step of a fixed batch shape allocates nothing.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    data: Vec<f32>,
}

impl Tensor {
    /// A tensor of zeros.
    pub fn zeros(shape: &[usize]) -> Tensor {
        Tensor { shape: shape.to_vec(), data: vec![0.0; shape.iter().product()] }
    }

    /// A tensor filled with `value`.
    pub fn full(shape: &[usize], value: f32) -> Tensor {
        Tensor { shape: shape.to_vec(), data: vec![value; shape.iter().product()] }
    }

    /// A scalar (shape `[]`).
    pub fn scalar(value: f32) -> Tensor {
        Tensor { shape: Vec::new(), data: vec![value] }
    }

    /// Wraps `data` as a tensor of `shape`.
    ///
    /// # Errors
    ///
    /// [`Error::Shape`] when `data.len()` is not the product of `shape`.
    pub fn from_vec(shape: &[usize], data: Vec<f32>) -> Result<Tensor> {
        let numel: usize = shape.iter().product();
        if numel != data.len() {
            return Err(Error::Shape {
                op: "Tensor::from_vec",
                expected: shape.to_vec(),
                found: vec![data.len()],
            });
        }
        Ok(Tensor { shape: shape.to_vec(), data })
    }

    /// The shape, outermost dimension first.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Size of dimension `i`.
    ///
    /// # Panics
    ///
    /// When `i` is not below the rank.
    pub fn dim(&self, i: usize) -> usize {
        self.shape[i]
    }

    /// Number of dimensions.
    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.data.len()
    }

    /// The elements in row-major order.
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// The elements in row-major order, writable.
    pub fn data_mut(&mut self) -> &mut [f32] {
        &mut self.data
    }

    /// Takes the buffer out of the tensor.
    pub fn into_vec(self) -> Vec<f32> {
        self.data
    }

    /// Gives the tensor a new shape with the same number of elements.
    ///
    /// # Errors
    ///
    /// [`Error::Shape`] when the element counts differ.
    pub fn reshape(&mut self, shape: &[usize]) -> Result<()> {
        if shape.iter().product::<usize>() != self.data.len() {
            return Err(Error::Shape {
                op: "Tensor::reshape",
                expected: shape.to_vec(),
                found: self.shape.clone(),
            });
        }
        self.shape.clear();
        self.shape.extend_from_slice(shape);
        Ok(())
    }

    /// Makes this tensor `shape`, keeping the allocation when it is big
    /// enough. The contents afterwards are unspecified; callers overwrite them.
    pub fn resize(&mut self, shape: &[usize]) {
        if self.shape != shape {
            self.shape.clear();
            self.shape.extend_from_slice(shape);
        }
        self.data.resize(shape.iter().product(), 0.0);
    }

    /// Sets every element to `value`.
    pub fn fill(&mut self, value: f32) {
        self.data.fill(value);
    }

    /// Copies shape and contents of `other` into `self`, reusing the buffer.
    pub fn copy_from(&mut self, other: &Tensor) {
        self.resize(&other.shape);
        self.data.copy_from_slice(&other.data);
    }

    /// Row `i` of a tensor viewed as `[shape[0], rest]`.
    pub fn row(&self, i: usize) -> &[f32] {
        let width = self.row_width();
        &self.data[i * width..(i + 1) * width]
    }

    /// Row `i`, writable.
    pub fn row_mut(&mut self, i: usize) -> &mut [f32] {
        let width = self.row_width();
        &mut self.data[i * width..(i + 1) * width]
    }

    /// Elements per entry of the first dimension.
    pub fn row_width(&self) -> usize {
        self.shape.iter().skip(1).product()
    }

    /// Fails with [`Error::Shape`] unless the shape is `expected`.
    pub fn expect_shape(&self, op: &'static str, expected: &[usize]) -> Result<()> {
        if self.shape != expected {
            return Err(Error::Shape {
                op,
                expected: expected.to_vec(),
                found: self.shape.clone(),
            });
        }
        Ok(())
    }

    /// Index of the largest element of each row; ties go to the first, as
    /// `torch.argmax` does.
    pub fn argmax_rows(&self) -> Vec<usize> {
        let width = self.row_width().max(1);
        self.data.chunks(width).map(argmax).collect()
    }
}

/// Index of the first maximal element (NaN never wins).
pub fn argmax(values: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_keeps_capacity() {
        let mut t = Tensor::zeros(&[4, 8]);
        let ptr = t.data().as_ptr();
        t.resize(&[2, 8]);
        t.resize(&[4, 8]);
        assert_eq!(t.shape(), &[4, 8]);
        assert_eq!(t.data().as_ptr(), ptr);
    }

    #[test]
    fn from_vec_checks_length() {
        assert!(Tensor::from_vec(&[2, 3], vec![0.0; 5]).is_err());
        assert_eq!(Tensor::from_vec(&[2, 3], vec![0.0; 6]).unwrap().numel(), 6);
    }

    #[test]
    fn argmax_takes_first_of_ties() {
        let t = Tensor::from_vec(&[2, 3], vec![1.0, 3.0, 3.0, 5.0, 5.0, 0.0]).unwrap();
        assert_eq!(t.argmax_rows(), vec![1, 0]);
    }
}
