//! Max-pooling loops over one `[h, w]` plane, with the argmax that backward
//! needs. Follows PyTorch: the window is scanned row by row, only a strictly
//! greater value (or a NaN) replaces the current maximum, and padding never
//! wins.

use super::Window;

/// Max-pools one plane `x [h, w]` into `y [oh, ow]`; `argmax`, when given,
/// receives the flat index `iy·w + ix` of each output's maximum.
///
/// # Panics
///
/// When a slice is shorter than the geometry requires (`g.c` is ignored).
pub fn maxpool_plane(g: &Window, x: &[f32], y: &mut [f32], mut argmax: Option<&mut [u32]>) {
    let (oh, ow) = (g.oh(), g.ow());
    assert!(x.len() >= g.h * g.w && y.len() >= oh * ow, "maxpool: plane buffers too short");
    for oy in 0..oh {
        // Window rows clipped to the image: padding acts as −∞.
        let y0 = (oy * g.sh).saturating_sub(g.ph);
        let y1 = (oy * g.sh + g.kh - g.ph).min(g.h);
        for ox in 0..ow {
            let x0 = (ox * g.sw).saturating_sub(g.pw);
            let x1 = (ox * g.sw + g.kw - g.pw).min(g.w);
            let mut best = f32::NEG_INFINITY;
            let mut best_at = y0 * g.w + x0;
            for iy in y0..y1 {
                for ix in x0..x1 {
                    let v = x[iy * g.w + ix];
                    if v > best || v.is_nan() {
                        best = v;
                        best_at = iy * g.w + ix;
                    }
                }
            }
            y[oy * ow + ox] = best;
            if let Some(argmax) = argmax.as_deref_mut() {
                argmax[oy * ow + ox] = best_at as u32;
            }
        }
    }
}

/// Backward of [`maxpool_plane`]: adds each `dy` into `dx` at its argmax, so an
/// input chosen by overlapping windows collects all their gradients.
pub fn maxpool_plane_backward(argmax: &[u32], dy: &[f32], dx: &mut [f32]) {
    for (&at, &g) in argmax.iter().zip(dy) {
        dx[at as usize] += g;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_maximum_wins_ties_and_padding_never_wins() {
        let g = Window { c: 1, h: 2, w: 2, kh: 3, kw: 3, sh: 2, sw: 2, ph: 1, pw: 1 };
        let x = [-5.0, -1.0, -1.0, -7.0];
        let (mut y, mut argmax) = ([0.0], [9]);
        maxpool_plane(&g, &x, &mut y, Some(&mut argmax));
        assert_eq!((y[0], argmax[0]), (-1.0, 1));
    }
}
