//! im2col and col2im for one image: the unfolding that turns a convolution
//! into a matrix product. Layout: `x` is `[c, h, w]`, `cols` is
//! `[c * kh * kw, oh * ow]`, row `(ci * kh + ki) * kw + kj`, so the rows of one
//! channel group are contiguous.

/// Geometry of a 2-D convolution or pooling window over one image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// Input channels.
    pub c: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Vertical stride.
    pub sh: usize,
    /// Horizontal stride.
    pub sw: usize,
    /// Zero padding at top and bottom.
    pub ph: usize,
    /// Zero padding at left and right.
    pub pw: usize,
}

impl Window {
    /// Output height, `floor((h + 2·ph − kh) / sh) + 1`, or 0 when the kernel
    /// does not fit.
    pub fn oh(&self) -> usize {
        out_size(self.h, self.kh, self.sh, self.ph)
    }

    /// Output width.
    pub fn ow(&self) -> usize {
        out_size(self.w, self.kw, self.sw, self.pw)
    }

    /// Rows of the unfolded matrix, `c · kh · kw`.
    pub fn col_rows(&self) -> usize {
        self.c * self.kh * self.kw
    }

    /// Columns of the unfolded matrix, `oh · ow`.
    pub fn col_cols(&self) -> usize {
        self.oh() * self.ow()
    }

    /// Whether `cols` equals `x` itself (1×1 kernel, stride 1, no padding),
    /// so the unfolding can be skipped.
    pub fn is_identity(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.sh == 1 && self.sw == 1 && self.ph == 0 && self.pw == 0
    }

    /// For kernel offset `ki` along an axis, the range of output positions
    /// whose input index `o·s + ki − p` lies inside `0..len`.
    fn valid(len: usize, out: usize, s: usize, p: usize, ki: usize) -> (usize, usize) {
        // o·s + ki ≥ p  ⇔  o ≥ ceil((p − ki) / s)
        let lo = if ki >= p { 0 } else { (p - ki).div_ceil(s) };
        // o·s + ki − p ≤ len − 1  ⇔  o ≤ (len − 1 + p − ki) / s
        let hi = if len + p > ki { ((len - 1 + p - ki) / s + 1).min(out) } else { 0 };
        (lo.min(hi), hi)
    }
}

/// `floor((len + 2·pad − k) / stride) + 1`, or 0 when the kernel does not fit.
pub fn out_size(len: usize, k: usize, stride: usize, pad: usize) -> usize {
    if len + 2 * pad < k {
        0
    } else {
        (len + 2 * pad - k) / stride + 1
    }
}

/// Unfolds one image `x [c, h, w]` into `cols [c·kh·kw, oh·ow]`; positions in
/// the padding become 0.
///
/// # Panics
///
/// When `x` or `cols` is shorter than the geometry requires.
pub fn im2col(g: &Window, x: &[f32], cols: &mut [f32]) {
    let (oh, ow) = (g.oh(), g.ow());
    assert!(x.len() >= g.c * g.h * g.w, "im2col: x shorter than c·h·w");
    assert!(cols.len() >= g.col_rows() * oh * ow, "im2col: cols shorter than rows·oh·ow");

    for ci in 0..g.c {
        let plane = &x[ci * g.h * g.w..(ci + 1) * g.h * g.w];
        for ki in 0..g.kh {
            let (oy_lo, oy_hi) = Window::valid(g.h, oh, g.sh, g.ph, ki);
            for kj in 0..g.kw {
                let (ox_lo, ox_hi) = Window::valid(g.w, ow, g.sw, g.pw, kj);
                let row = ((ci * g.kh + ki) * g.kw + kj) * oh * ow;
                let dst = &mut cols[row..row + oh * ow];

                // Rows of the output whose input row falls in the padding.
                zero(&mut dst[..oy_lo * ow]);
                zero(&mut dst[oy_hi * ow..]);
                for oy in oy_lo..oy_hi {
                    let iy = oy * g.sh + ki - g.ph;
                    let src = &plane[iy * g.w..(iy + 1) * g.w];
                    let out = &mut dst[oy * ow..(oy + 1) * ow];
                    zero(&mut out[..ox_lo]);
                    zero(&mut out[ox_hi..]);
                    if g.sw == 1 {
                        let start = ox_lo + kj - g.pw;
                        copy(&mut out[ox_lo..ox_hi], &src[start..start + ox_hi - ox_lo]);
                    } else {
                        let taps = src[ox_lo * g.sw + kj - g.pw..].iter().step_by(g.sw);
                        out[ox_lo..ox_hi].iter_mut().zip(taps).for_each(|(o, &v)| *o = v);
                    }
                }
            }
        }
    }
}

/// Unfolds one image `x [c, h, w]` into `rows [oh·ow, c·kh·kw]`, the transpose
/// of [`im2col`]: row `p` holds the receptive field of output position `p`.
/// This is the right operand of dweight = dy · colsᵀ, read in place.
///
/// # Panics
///
/// When `x` or `rows` is shorter than the geometry requires.
pub fn im2row(g: &Window, x: &[f32], rows: &mut [f32]) {
    let (oh, ow, k) = (g.oh(), g.ow(), g.col_rows());
    assert!(x.len() >= g.c * g.h * g.w, "im2row: x shorter than c·h·w");
    assert!(rows.len() >= oh * ow * k, "im2row: rows shorter than oh·ow·c·kh·kw");

    for oy in 0..oh {
        for ox in 0..ow {
            let row = &mut rows[(oy * ow + ox) * k..(oy * ow + ox + 1) * k];
            // Kernel columns kj with 0 ≤ ox·sw + kj − pw < w.
            let kj_lo = g.pw.saturating_sub(ox * g.sw).min(g.kw);
            let kj_hi = (g.w + g.pw).saturating_sub(ox * g.sw).clamp(kj_lo, g.kw);
            for ci in 0..g.c {
                for ki in 0..g.kh {
                    let dst = &mut row[(ci * g.kh + ki) * g.kw..(ci * g.kh + ki + 1) * g.kw];
                    let iy = (oy * g.sh + ki).wrapping_sub(g.ph);
                    if iy >= g.h {
                        zero(dst);
                        continue;
                    }
                    zero(&mut dst[..kj_lo]);
                    zero(&mut dst[kj_hi..]);
                    let start = (ci * g.h + iy) * g.w + ox * g.sw + kj_lo - g.pw;
                    copy(&mut dst[kj_lo..kj_hi], &x[start..start + kj_hi - kj_lo]);
                }
            }
        }
    }
}

// The rows copied here are short (an output row, often 8-30 values), so
// plain loops the compiler inlines beat calls to memcpy and memset.

fn zero(values: &mut [f32]) {
    values.iter_mut().for_each(|v| *v = 0.0);
}

fn copy(dst: &mut [f32], src: &[f32]) {
    dst.iter_mut().zip(src).for_each(|(d, &s)| *d = s);
}

/// Folds `cols [c·kh·kw, oh·ow]` back onto an image, adding every column
/// entry into the input position it was read from: the adjoint of
/// [`im2col`]. `dx` is added to, not overwritten.
///
/// # Panics
///
/// When `dx` or `cols` is shorter than the geometry requires.
pub fn col2im(g: &Window, cols: &[f32], dx: &mut [f32]) {
    let (oh, ow) = (g.oh(), g.ow());
    assert!(dx.len() >= g.c * g.h * g.w, "col2im: dx shorter than c·h·w");
    assert!(cols.len() >= g.col_rows() * oh * ow, "col2im: cols shorter than rows·oh·ow");

    for ci in 0..g.c {
        let plane = &mut dx[ci * g.h * g.w..(ci + 1) * g.h * g.w];
        for ki in 0..g.kh {
            let (oy_lo, oy_hi) = Window::valid(g.h, oh, g.sh, g.ph, ki);
            for kj in 0..g.kw {
                let (ox_lo, ox_hi) = Window::valid(g.w, ow, g.sw, g.pw, kj);
                let row = ((ci * g.kh + ki) * g.kw + kj) * oh * ow;
                let src = &cols[row..row + oh * ow];
                for oy in oy_lo..oy_hi {
                    let iy = oy * g.sh + ki - g.ph;
                    let dst = &mut plane[iy * g.w..(iy + 1) * g.w];
                    let col = &src[oy * ow + ox_lo..oy * ow + ox_hi];
                    let taps = dst[ox_lo * g.sw + kj - g.pw..].iter_mut().step_by(g.sw);
                    taps.zip(col).for_each(|(d, &c)| *d += c);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// im2col by its definition, one element at a time.
    fn im2col_naive(g: &Window, x: &[f32]) -> Vec<f32> {
        let (oh, ow) = (g.oh(), g.ow());
        let mut cols = vec![0.0; g.col_rows() * oh * ow];
        for ci in 0..g.c {
            for ki in 0..g.kh {
                for kj in 0..g.kw {
                    for oy in 0..oh {
                        for ox in 0..ow {
                            let iy = (oy * g.sh + ki) as isize - g.ph as isize;
                            let ix = (ox * g.sw + kj) as isize - g.pw as isize;
                            let inside =
                                (0..g.h as isize).contains(&iy) && (0..g.w as isize).contains(&ix);
                            let row = (ci * g.kh + ki) * g.kw + kj;
                            cols[row * oh * ow + oy * ow + ox] = if inside {
                                x[(ci * g.h + iy as usize) * g.w + ix as usize]
                            } else {
                                0.0
                            };
                        }
                    }
                }
            }
        }
        cols
    }

    fn geometries() -> Vec<Window> {
        let mut all = Vec::new();
        for (h, w) in [(5, 5), (6, 7), (1, 4)] {
            for (kh, kw) in [(1, 1), (3, 3), (3, 2), (5, 5)] {
                for (sh, sw) in [(1, 1), (2, 2), (2, 1)] {
                    for (ph, pw) in [(0, 0), (1, 1), (2, 0)] {
                        let g = Window { c: 2, h, w, kh, kw, sh, sw, ph, pw };
                        if g.oh() > 0 && g.ow() > 0 {
                            all.push(g);
                        }
                    }
                }
            }
        }
        all
    }

    #[test]
    fn im2col_matches_definition() {
        for g in geometries() {
            let x: Vec<f32> = (0..g.c * g.h * g.w).map(|i| i as f32 + 1.0).collect();
            let mut cols = vec![f32::NAN; g.col_rows() * g.col_cols()];
            im2col(&g, &x, &mut cols);
            assert_eq!(cols, im2col_naive(&g, &x), "{g:?}");
        }
    }

    #[test]
    fn im2row_is_the_transpose_of_im2col() {
        for g in geometries() {
            let x: Vec<f32> = (0..g.c * g.h * g.w).map(|i| i as f32 + 1.0).collect();
            let (k, p) = (g.col_rows(), g.col_cols());
            let cols = im2col_naive(&g, &x);
            let mut rows = vec![f32::NAN; k * p];
            im2row(&g, &x, &mut rows);
            let transposed: Vec<f32> = (0..k * p).map(|i| cols[(i % k) * p + i / k]).collect();
            assert_eq!(rows, transposed, "{g:?}");
        }
    }

    #[test]
    fn col2im_is_adjoint_of_im2col() {
        // <im2col(x), c> = <x, col2im(c)> for every x and c.
        for g in geometries() {
            let x: Vec<f32> = (0..g.c * g.h * g.w).map(|i| (i % 7) as f32 - 3.0).collect();
            let c: Vec<f32> = (0..g.col_rows() * g.col_cols()).map(|i| (i % 5) as f32).collect();
            let mut cols = vec![0.0; c.len()];
            im2col(&g, &x, &mut cols);
            let mut dx = vec![0.0; x.len()];
            col2im(&g, &c, &mut dx);
            let lhs: f32 = cols.iter().zip(&c).map(|(a, b)| a * b).sum();
            let rhs: f32 = x.iter().zip(&dx).map(|(a, b)| a * b).sum();
            assert_eq!(lhs, rhs, "{g:?}");
        }
    }

    #[test]
    fn output_size_follows_floor_rule() {
        assert_eq!(out_size(5, 3, 2, 1), 3);
        assert_eq!(out_size(28, 5, 1, 2), 28);
        assert_eq!(out_size(7, 2, 2, 0), 3);
        assert_eq!(out_size(2, 5, 1, 1), 0);
    }
}
