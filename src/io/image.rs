//! Image files (PNG, JPEG) turned into a model's input: its channels, its
//! size, `u8` pixels on the 0–255 scale.

use std::path::Path;

use image::imageops::FilterType;

use crate::{Error, Result};

/// The filter used when an image's size differs from the model's input:
/// bilinear (a triangle filter), which neither rings nor blocks.
pub const RESIZE_FILTER: FilterType = FilterType::Triangle;

/// Reads `path` and returns its pixels as `[c, h, w]` `u8`, converted to `c`
/// channels (1 = luminance, 3 = RGB; alpha is dropped) and resized to `h × w`.
///
/// # Errors
///
/// [`Error::Image`] when the file cannot be decoded, [`Error::InvalidData`]
/// for a JPEG cut short before its end marker, [`Error::Io`] when it cannot
/// be read,
/// [`Error::InvalidArgument`] for a channel count other than 1 or 3.
pub fn read_image(path: &Path, shape: &[usize]) -> Result<Vec<u8>> {
    let &[c, h, w] = shape else {
        return Err(Error::arg(format!("image input needs a [c, h, w] shape, found {shape:?}")));
    };
    let bytes = std::fs::read(path).map_err(|e| Error::io("reading", path, e))?;

    // Decoders fill a cut-short JPEG with grey; refuse it as training does.
    if bytes.starts_with(&[0xff, 0xd8]) {
        crate::data::jpeg_header(&bytes).map_err(|why| Error::invalid(path, why))?;
    }
    let decoded = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Error::io("reading", path, e))?
        .decode()
        .map_err(|source| Error::Image { path: path.into(), source })?;
    let (w32, h32) = (w as u32, h as u32);
    let sized = if decoded.width() == w32 && decoded.height() == h32 {
        decoded
    } else {
        decoded.resize_exact(w32, h32, RESIZE_FILTER)
    };

    // Planar layout: all of channel 0, then channel 1, ...
    match c {
        1 => Ok(sized.to_luma8().into_raw()),
        3 => {
            let rgb = sized.to_rgb8().into_raw();
            let mut planes = vec![0u8; 3 * h * w];
            for (i, px) in rgb.chunks_exact(3).enumerate() {
                for ch in 0..3 {
                    planes[ch * h * w + i] = px[ch];
                }
            }
            Ok(planes)
        }
        other => Err(Error::arg(format!("models with {other} channels cannot read image files"))),
    }
}
