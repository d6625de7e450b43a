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
pub fn maxpool_plane(g: &Window, x: &[f32], y: &mut [f32], argmax: Option<&mut [u32]>) {
    let (oh, ow) = (g.oh(), g.ow());
    assert!(x.len() >= g.h * g.w && y.len() >= oh * ow, "maxpool: plane buffers too short");
    if (g.kh, g.kw, g.sh, g.sw, g.ph, g.pw) == (2, 2, 2, 2, 0, 0) {
        maxpool_2x2(g, x, y, argmax);
    } else {
        maxpool_general(g, x, y, argmax);
    }
}

/// Any window, stride and padding.
fn maxpool_general(g: &Window, x: &[f32], y: &mut [f32], mut argmax: Option<&mut [u32]>) {
    let (oh, ow) = (g.oh(), g.ow());
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
                    (best, best_at) = pick(best, best_at, x[iy * g.w + ix], iy * g.w + ix);
                }
            }
            y[oy * ow + ox] = best;
            if let Some(argmax) = argmax.as_deref_mut() {
                argmax[oy * ow + ox] = best_at as u32;
            }
        }
    }
}

/// The running maximum after seeing `v` at `at`: a strictly greater value or
/// a NaN takes over. Written as selects, not branches: on real images which
/// element wins is unpredictable, and a mispredicted branch per element cost
/// more than the comparison.
#[inline(always)]
fn pick(best: f32, best_at: usize, v: f32, at: usize) -> (f32, usize) {
    let take = v > best || v.is_nan();
    (if take { v } else { best }, if take { at } else { best_at })
}

/// The common 2×2, stride 2, unpadded case: four reads per output, in the
/// same scan order as the general loop.
fn maxpool_2x2(g: &Window, x: &[f32], y: &mut [f32], argmax: Option<&mut [u32]>) {
    let (oh, ow, w) = (g.oh(), g.ow(), g.w);
    let mut argmax = argmax;
    for oy in 0..oh {
        let top = &x[2 * oy * w..2 * oy * w + 2 * ow];
        let bottom = &x[(2 * oy + 1) * w..(2 * oy + 1) * w + 2 * ow];
        let out = &mut y[oy * ow..(oy + 1) * ow];
        let base = 2 * oy * w;
        match argmax.as_deref_mut() {
            Some(argmax) => {
                let idx = &mut argmax[oy * ow..(oy + 1) * ow];
                for ox in 0..ow {
                    let at = base + 2 * ox;
                    let (mut best, mut best_at) = (top[2 * ox], at);
                    (best, best_at) = pick(best, best_at, top[2 * ox + 1], at + 1);
                    (best, best_at) = pick(best, best_at, bottom[2 * ox], at + w);
                    (best, best_at) = pick(best, best_at, bottom[2 * ox + 1], at + w + 1);
                    out[ox] = best;
                    idx[ox] = best_at as u32;
                }
            }
            None => {
                for ox in 0..ow {
                    let (mut best, mut at) = (top[2 * ox], 0);
                    (best, at) = pick(best, at, top[2 * ox + 1], 0);
                    (best, at) = pick(best, at, bottom[2 * ox], at);
                    (best, _) = pick(best, at, bottom[2 * ox + 1], at);
                    out[ox] = best;
                }
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
    fn fast_2x2_path_matches_the_general_loop() {
        // Ties, a NaN and an odd width (the last column is dropped).
        let g = Window { c: 1, h: 4, w: 5, kh: 2, kw: 2, sh: 2, sw: 2, ph: 0, pw: 0 };
        let x = [
            1.0,
            1.0,
            3.0,
            2.0,
            9.0, //
            0.0,
            1.0,
            3.0,
            f32::NAN,
            9.0, //
            -1.0,
            -2.0,
            5.0,
            7.0,
            0.0, //
            -1.0,
            -0.5,
            7.0,
            6.0,
            0.0,
        ];
        let (mut fast, mut fast_at) = ([0.0; 4], [0; 4]);
        maxpool_2x2(&g, &x, &mut fast, Some(&mut fast_at));
        let (mut slow, mut slow_at) = ([0.0; 4], [0; 4]);
        maxpool_general(&g, &x, &mut slow, Some(&mut slow_at));
        assert_eq!(fast_at, [0, 8, 16, 13]);
        assert_eq!(fast_at, slow_at);
        assert!(fast[1].is_nan() && slow[1].is_nan());
        assert_eq!([fast[0], fast[2], fast[3]], [1.0, -0.5, 7.0]);
        assert_eq!([slow[0], slow[2], slow[3]], [1.0, -0.5, 7.0]);

        let mut no_index = [0.0; 4];
        maxpool_2x2(&g, &x, &mut no_index, None);
        assert_eq!([no_index[0], no_index[2], no_index[3]], [1.0, -0.5, 7.0]);
    }

    #[test]
    fn first_maximum_wins_ties_and_padding_never_wins() {
        let g = Window { c: 1, h: 2, w: 2, kh: 3, kw: 3, sh: 2, sw: 2, ph: 1, pw: 1 };
        let x = [-5.0, -1.0, -1.0, -7.0];
        let (mut y, mut argmax) = ([0.0], [9]);
        maxpool_plane(&g, &x, &mut y, Some(&mut argmax));
        assert_eq!((y[0], argmax[0]), (-1.0, 1));
    }
}
