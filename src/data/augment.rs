//! Random transforms of training images: a crop of the zero-padded image and
//! a horizontal flip, as torchvision's `RandomCrop(size, padding=pad)` then
//! `RandomHorizontalFlip()`.
//!
//! Each sample's draw is a pure function of the seed, the epoch and the
//! sample's index in the dataset, so it does not depend on the batch the
//! sample lands in, the thread that builds it or the order batches are built.
//! The transforms are applied while a batch is written (see
//! [`BatchPlan::fill`](super::BatchPlan::fill)): the pixels stay `u8` and no
//! image is copied.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Largest `crop:PAD` accepted; far beyond any image, it only keeps the
/// offset arithmetic clear of overflow.
pub const MAX_CROP_PAD: usize = 1 << 16;

/// Tag of the augmentation draws ("augm" in ASCII, in the upper half), mixed
/// into the seed so they are independent of other uses of the same seed.
const AUGMENT_TAG: u64 = 0x6175_676d << 32;

/// Which random transforms training batches get; the default is none.
///
/// Written and parsed as a comma-separated list: `crop:PAD` (pad `PAD`
/// zero pixels on every side, then crop back to the original size at a
/// random offset) and `flip` (mirror left-right with probability 1/2), or
/// `none`.
///
/// ```
/// use xent::data::Augment;
///
/// let augment: Augment = "crop:4,flip".parse().unwrap();
/// assert_eq!(augment, Augment { crop_pad: 4, flip: true });
/// assert_eq!(augment.to_string(), "crop:4,flip");
/// assert!(Augment::default().is_none());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Augment {
    /// Zero padding on each side before the random crop; 0 means no crop.
    pub crop_pad: usize,
    /// Mirror left-right with probability 1/2.
    pub flip: bool,
}

/// Where one sample's output pixels come from: output pixel `(r, col)` takes
/// the source pixel `(r + dy, col' + dx)` where `col' = w - 1 - col` when
/// `flip` is set and `col` otherwise; a source outside the image is padding,
/// pixel value 0.
///
/// torchvision's crop corner in the padded image is `(dy + pad, dx + pad)`;
/// the flip is applied after the crop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    /// Row offset, `-pad..=pad`.
    pub dy: isize,
    /// Column offset, `-pad..=pad`.
    pub dx: isize,
    /// Mirror the cropped image left-right.
    pub flip: bool,
}

impl Placement {
    /// The image as it is.
    pub const IDENTITY: Placement = Placement { dy: 0, dx: 0, flip: false };
}

impl Augment {
    /// No transform.
    pub const NONE: Augment = Augment { crop_pad: 0, flip: false };

    /// Whether no transform is applied.
    pub fn is_none(&self) -> bool {
        *self == Augment::NONE
    }

    /// Parses `crop:PAD`, `flip`, both joined by a comma, or `none`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] naming the part that is not understood, a
    /// padding that is not a whole number from 1 to [`MAX_CROP_PAD`], or a
    /// transform given twice.
    pub fn parse(text: &str) -> Result<Augment> {
        let text = text.trim();
        let mut augment = Augment::NONE;
        if text == "none" {
            return Ok(augment);
        }
        let (mut crop_seen, mut flip_seen) = (false, false);
        for part in text.split(',').map(str::trim) {
            let twice = |name: &str| Error::arg(format!("--augment {text:?}: {name} given twice"));
            match part.split_once(':') {
                Some(("crop", pad)) => {
                    if std::mem::replace(&mut crop_seen, true) {
                        return Err(twice("crop"));
                    }
                    augment.crop_pad = match pad.trim().parse::<usize>() {
                        Ok(p) if (1..=MAX_CROP_PAD).contains(&p) => p,
                        _ => {
                            return Err(Error::arg(format!(
                                "--augment {text:?}: crop:PAD takes a padding from 1 to \
                                 {MAX_CROP_PAD} pixels, found {pad:?}"
                            )))
                        }
                    };
                }
                None if part == "flip" => {
                    if std::mem::replace(&mut flip_seen, true) {
                        return Err(twice("flip"));
                    }
                    augment.flip = true;
                }
                _ => {
                    return Err(Error::arg(format!(
                        "--augment {text:?}: unknown transform {part:?} (known: crop:PAD, flip, \
                         none)"
                    )))
                }
            }
        }
        Ok(augment)
    }

    /// The placement of sample `index` in `epoch` of a run seeded with
    /// `seed`: offsets uniform in `-pad..=pad` and a fair coin for the flip,
    /// drawn from a hash of the three numbers alone.
    pub fn draw(&self, seed: u64, epoch: usize, index: usize) -> Placement {
        if self.is_none() {
            return Placement::IDENTITY;
        }

        // One 64-bit key per (seed, epoch, index), then one word per draw:
        // a SplitMix64 stream started at the key.
        let key =
            splitmix64(splitmix64(splitmix64(seed ^ AUGMENT_TAG) ^ epoch as u64) ^ index as u64);
        let word = |k: u64| splitmix64(key.wrapping_add(k.wrapping_mul(GOLDEN_GAMMA)));

        // Offsets uniform over the 2·pad + 1 crop corners of each axis
        // (torchvision's randint(0, 2·pad + 1) in the padded image, shifted by
        // −pad); the flip is a fair coin, the top bit of its word.
        let pad = self.crop_pad;
        let offset = |k: u64| below(word(k), 2 * pad + 1) as isize - pad as isize;
        Placement { dy: offset(1), dx: offset(2), flip: self.flip && word(3) >> 63 == 1 }
    }
}

impl fmt::Display for Augment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if self.crop_pad > 0 {
            parts.push(format!("crop:{}", self.crop_pad));
        }
        if self.flip {
            parts.push("flip".to_string());
        }
        if parts.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&parts.join(","))
        }
    }
}

impl FromStr for Augment {
    type Err = Error;

    fn from_str(text: &str) -> Result<Augment> {
        Augment::parse(text)
    }
}

impl TryFrom<String> for Augment {
    type Error = Error;

    fn try_from(text: String) -> Result<Augment> {
        Augment::parse(&text)
    }
}

impl From<Augment> for String {
    fn from(augment: Augment) -> String {
        augment.to_string()
    }
}

/// The increment of the SplitMix64 sequence: 2⁶⁴ divided by the golden ratio.
const GOLDEN_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// SplitMix64's finaliser applied to `z + γ`: a bijection of `u64` whose
/// outputs pass as independent uniform words for distinct inputs.
fn splitmix64(z: u64) -> u64 {
    let z = z.wrapping_add(GOLDEN_GAMMA);
    let z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// `word` mapped onto `0..n` by the high half of `word · n` (bias below
/// `n / 2⁶⁴`, nothing for the few crop offsets drawn here).
fn below(word: u64, n: usize) -> usize {
    ((u128::from(word) * n as u128) >> 64) as usize
}

/// Writes one `h × w` channel plane of an image through `placement`: each
/// output pixel is `table[v]` for its source value `v`, and `table[0]` where
/// the source lies in the padding.
///
/// # Panics
///
/// When `pixels` or `out` is not `h * w` long (the callers size both).
pub(super) fn place_plane(
    pixels: &[u8],
    out: &mut [f32],
    [h, w]: [usize; 2],
    placement: Placement,
    table: &[f32; 256],
) {
    assert!(pixels.len() == h * w && out.len() == h * w, "planes are h × w");
    let zero = table[0];

    // The output columns whose source column `col + dx` lies in the image.
    let (hi, wi) = (h as isize, w as isize);
    let lo = (-placement.dx).clamp(0, wi);
    let end = (wi - placement.dx).clamp(lo, wi);
    let src_lo = lo + placement.dx;
    let (lo, end) = (lo as usize, end as usize);

    // Row by row: padding rows are all zero; others are zero, source, zero,
    // then reversed in place for the flip (the flip follows the crop).
    for (r, row) in out.chunks_exact_mut(w).enumerate() {
        let src_r = r as isize + placement.dy;
        if !(0..hi).contains(&src_r) {
            row.fill(zero);
            continue;
        }
        row[..lo].fill(zero);
        if end > lo {
            // Here 0 <= src_lo and src_lo + (end - lo) <= w by the clamps above.
            let start = src_r as usize * w + src_lo as usize;
            for (o, &v) in row[lo..end].iter_mut().zip(&pixels[start..start + (end - lo)]) {
                *o = table[v as usize];
            }
        }
        row[end..].fill(zero);
        if placement.flip {
            row.reverse();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display_round_trip() {
        for text in ["none", "flip", "crop:4", "crop:4,flip"] {
            assert_eq!(Augment::parse(text).expect("valid").to_string(), text);
        }
        assert_eq!(
            Augment::parse("flip, crop:2").expect("valid"),
            Augment { crop_pad: 2, flip: true }
        );
    }

    #[test]
    fn parse_rejects_bad_lists() {
        for (text, part) in [
            ("crop", "unknown transform \"crop\""),
            ("crop:0", "from 1 to"),
            ("crop:x", "found \"x\""),
            ("flip,flip", "flip given twice"),
            ("crop:1,crop:2", "crop given twice"),
            ("rotate:5", "unknown transform \"rotate:5\""),
            ("", "unknown transform \"\""),
        ] {
            let err = Augment::parse(text).expect_err(text).to_string();
            assert!(err.contains(part), "{text}: {err}");
        }
    }

    #[test]
    fn draws_cover_every_offset_and_both_sides() {
        let augment = Augment { crop_pad: 2, flip: true };
        let draws: Vec<Placement> = (0..2000).map(|i| augment.draw(3, 1, i)).collect();
        for d in -2..=2 {
            let rows = draws.iter().filter(|p| p.dy == d).count();
            let cols = draws.iter().filter(|p| p.dx == d).count();
            assert!((300..500).contains(&rows) && (300..500).contains(&cols), "{d}: {rows} {cols}");
        }
        let flips = draws.iter().filter(|p| p.flip).count();
        assert!((900..1100).contains(&flips), "{flips} flips of 2000");
        assert_eq!(Augment::NONE.draw(3, 1, 5), Placement::IDENTITY);
        let flip_only = Augment { crop_pad: 0, flip: true }.draw(3, 1, 5);
        assert_eq!((flip_only.dy, flip_only.dx), (0, 0));
    }

    #[test]
    fn placement_past_the_image_is_all_padding() {
        let table: [f32; 256] = std::array::from_fn(|v| v as f32);
        for (dy, dx) in [(0, 3), (0, -3), (2, 0), (-5, 1)] {
            let mut out = [9.0; 4];
            let far = Placement { dy, dx, flip: dx > 0 };
            place_plane(&[1, 2, 3, 4], &mut out, [2, 2], far, &table);
            assert_eq!(out, [0.0; 4], "dy {dy} dx {dx}");
        }
    }
}
