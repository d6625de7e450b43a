//! The UCI 8×8 handwritten digits, embedded in the binary so that xent
//! trains offline on a fresh machine.
//!
//! 1,797 images of `[1, 8, 8]` pixels, each pixel 0..=16 (the number of
//! inked pixels in a 4×4 block of a 32×32 bitmap), labels 0..=9. The file is
//! `data/digits.csv.gz`: one row per image, 64 pixels row-major then the
//! label. E. Alpaydin and C. Kaynak, *Optical Recognition of Handwritten
//! Digits*, UCI Machine Learning Repository, 1998, CC BY 4.0.
//!
//! The data come without a train/test split, so xent fixes one: within each
//! class, in file order, every fifth sample (positions 4, 9, 14, ... counted
//! from 0 within that class) goes to test and the rest to train. That gives
//! 1,442 training and 355 test images, every class in both at 4:1.

use super::{numbered_classes, Dataset, Split};
use crate::{Error, Result};
use flate2::read::GzDecoder;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The gzip-compressed CSV, as shipped in `data/`.
const DIGITS_CSV_GZ: &[u8] = include_bytes!("../../data/digits.csv.gz");

/// Number of images in the embedded digits.
pub const DIGITS_ROWS: usize = 1797;

/// Side of a digits image, in pixels.
const SIDE: usize = 8;

/// Full intensity of a digits pixel.
const MAX_VALUE: u8 = 16;

/// Every fifth sample of each class goes to the test part.
const TEST_EVERY: usize = 5;

/// All 1,797 embedded digits, in file order, named `digits`.
///
/// # Errors
///
/// [`Error::InvalidData`] or [`Error::InvalidRecord`] only if the embedded
/// file were damaged; the tests rule that out for every build.
pub fn digits() -> Result<Dataset> {
    let origin = Path::new("data/digits.csv.gz (embedded)");
    let mut text = String::with_capacity(300_000);
    GzDecoder::new(DIGITS_CSV_GZ)
        .read_to_string(&mut text)
        .map_err(|e| Error::invalid(origin, format!("cannot decompress: {e}")))?;
    parse_csv(origin, &text)
}

/// The embedded digits split into train and test by the fixed stratified
/// rule of the module docs.
///
/// # Errors
///
/// As [`digits`].
pub fn digits_split() -> Result<Split> {
    Ok(stratified_split(&digits()?, TEST_EVERY))
}

/// Parses rows of `SIDE * SIDE` pixels and a label; blank lines are skipped.
fn parse_csv(origin: &Path, text: &str) -> Result<Dataset> {
    let pixels_per_row = SIDE * SIDE;
    let mut images = Vec::with_capacity(DIGITS_ROWS * pixels_per_row);
    let mut labels = Vec::with_capacity(DIGITS_ROWS);

    for (record, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let bad =
            |detail: String| Error::InvalidRecord { path: PathBuf::from(origin), record, detail };
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() != pixels_per_row + 1 {
            return Err(bad(format!(
                "expected {} comma-separated values (64 pixels and a label), found {}",
                pixels_per_row + 1,
                fields.len()
            )));
        }

        // Pixels 0..=16, then a label 0..=9.
        for (column, field) in fields[..pixels_per_row].iter().enumerate() {
            match field.parse::<u8>() {
                Ok(v) if v <= MAX_VALUE => images.push(v),
                _ => {
                    return Err(bad(format!(
                        "column {}: expected a pixel value 0..={MAX_VALUE}, found {field:?}",
                        column + 1
                    )))
                }
            }
        }
        match fields[pixels_per_row].parse::<u32>() {
            Ok(label) if label < 10 => labels.push(label),
            _ => {
                let found = fields[pixels_per_row];
                return Err(bad(format!("expected a label 0..=9, found {found:?}")));
            }
        }
    }
    Dataset::new("digits", images, labels, [1, SIDE, SIDE], numbered_classes(10), MAX_VALUE)
}

/// Splits `ds` within each class, keeping file order: the sample at
/// position `p` (counted from 0 among its class) goes to test when
/// `p % every == every - 1`, else to train.
///
/// # Panics
///
/// When `every` is 0.
pub fn stratified_split(ds: &Dataset, every: usize) -> Split {
    assert!(every > 0, "stratified_split: every must be at least 1");
    let mut seen = vec![0usize; ds.classes().len()];
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for i in 0..ds.len() {
        let position = &mut seen[ds.label(i) as usize];
        if *position % every == every - 1 {
            test.push(i);
        } else {
            train.push(i);
        }
        *position += 1;
    }
    Split { train: ds.subset(&train), test: ds.subset(&test) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_rejects_bad_rows() {
        let origin = Path::new("d.csv");
        let row = |pixel: &str, label: &str| {
            let mut fields = vec!["0"; 64];
            fields[5] = pixel;
            format!("{},{label}\n", fields.join(","))
        };
        assert_eq!(parse_csv(origin, &row("16", "9")).expect("valid row").len(), 1);
        let msg = parse_csv(origin, &row("17", "9")).unwrap_err().to_string();
        assert!(msg.contains("record 0: column 6: expected a pixel value 0..=16, found \"17\""));
        let msg = parse_csv(origin, &format!("\n{}", row("1", "10"))).unwrap_err().to_string();
        assert!(msg.contains("record 1: expected a label 0..=9, found \"10\""), "{msg}");
        let msg = parse_csv(origin, "1,2,3\n").unwrap_err().to_string();
        assert!(msg.contains("found 3"), "{msg}");
    }

    #[test]
    fn stratified_split_takes_every_kth_of_each_class() {
        let labels = vec![0, 1, 0, 0, 1, 1, 0];
        let ds = Dataset::new("t", (0..7).collect(), labels, [1, 1, 1], numbered_classes(2), 7)
            .expect("valid dataset");
        let split = stratified_split(&ds, 2);
        assert_eq!(split.test.images(), &[2, 4, 6]);
        assert_eq!(split.train.images(), &[0, 1, 3, 5]);
    }
}
