//! Pixel CSV files in the layout of Kaggle's digit recognizer: a header line,
//! an optional `label` column (anywhere; usually first), and one column per
//! pixel (`pixel0`, `pixel1`, ...), one image per row.
//!
//! Every column other than `label` is a pixel, in file order. Their count
//! must be a square, `side × side`: the images are greyscale `[1, side, side]`,
//! row-major, values 0..=255 (`max_value` 255). A file is gzip when it starts
//! with the gzip magic bytes, whatever its name.
//!
//! Classes are `"0"`..`"K-1"`, where `K` is the largest label of the training
//! file plus one, so a class no row uses still gets its number. Line and
//! column numbers in messages count from 1, the header being line 1.

use super::{numbered_classes, Dataset, ImportReport, LoadOptions, Split};
use crate::rng::Rng;
use crate::{Error, Result};
use flate2::read::MultiGzDecoder;
use std::cmp::Reverse;
use std::io::Read;
use std::path::Path;

/// The largest label a CSV file may use; more classes than this are surely
/// a wrong column, not a dataset.
pub const MAX_CSV_LABEL: u32 = 65_535;

/// The random stream purpose of the held-out split ("hold" in ASCII, in the
/// upper half, apart from the other purposes).
const HOLDOUT_STREAM: u64 = 0x686f_6c64 << 32;

/// The rows of a pixel CSV file.
#[derive(Clone, Debug, PartialEq)]
pub struct PixelCsv {
    /// Side of the square greyscale images.
    pub side: usize,
    /// `side * side` pixels per row, row after row.
    pub pixels: Vec<u8>,
    /// One label per row when the header has a `label` column.
    pub labels: Option<Vec<u32>>,
    /// 1-based column of the labels, when there are labels.
    pub label_column: Option<usize>,
    /// 1-based line number of each row.
    pub lines: Vec<usize>,
}

impl PixelCsv {
    /// Number of rows (images).
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    /// Whether the file has no rows.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// Pixels of row `i` (0-based), `side * side` values.
    ///
    /// # Panics
    ///
    /// When `i >= self.len()`.
    pub fn row(&self, i: usize) -> &[u8] {
        let n = self.side * self.side;
        &self.pixels[i * n..(i + 1) * n]
    }
}

/// Whether `name` names a CSV file: it ends in `.csv` or `.csv.gz`, in any
/// case.
pub fn is_csv_path(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.ends_with(".csv") || lower.ends_with(".csv.gz")
}

/// Reads a pixel CSV file, raw or gzip.
///
/// # Errors
///
/// [`Error::Io`] when the file cannot be read; [`Error::InvalidData`] naming
/// the line (and column) for an empty file, a header without pixel columns or
/// with a pixel count that is not a square, a row with another number of
/// values than the header, a cell that is not a whole number, a pixel
/// outside 0..=255, or a label above [`MAX_CSV_LABEL`].
pub fn read_pixel_csv(path: &Path) -> Result<PixelCsv> {
    // Raw or gzip, decided by the first two bytes.
    let bytes = std::fs::read(path).map_err(|e| Error::io("reading", path, e))?;
    let bytes = if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut raw = Vec::new();
        MultiGzDecoder::new(&bytes[..]).read_to_end(&mut raw).map_err(|e| {
            Error::invalid(path, format!("gzip data is corrupt or cut short ({e})"))
        })?;
        raw
    } else {
        bytes
    };
    let text = std::str::from_utf8(&bytes).map_err(|e| {
        Error::invalid(path, format!("not UTF-8 text: invalid byte at offset {}", e.valid_up_to()))
    })?;
    parse_pixel_csv(path, text)
}

/// Parses the text of a pixel CSV file; `path` only names it in errors.
///
/// # Errors
///
/// As [`read_pixel_csv`].
pub fn parse_pixel_csv(path: &Path, text: &str) -> Result<PixelCsv> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text
        .split('\n')
        .enumerate()
        .map(|(i, line)| (i + 1, line.strip_suffix('\r').unwrap_or(line)))
        .filter(|(_, line)| !line.trim().is_empty());

    // The header names the label column and the pixel columns.
    let Some((header_line, header_text)) = lines.next() else {
        return Err(Error::invalid(
            path,
            "file is empty; expected a header line (label,pixel0,pixel1,...) and one row per image",
        ));
    };
    let header = Header::parse(path, header_line, header_text)?;

    // Rows: as many values as the header has columns, pixels 0..=255.
    let mut csv = PixelCsv {
        side: header.side,
        pixels: Vec::new(),
        labels: header.label.map(|_| Vec::new()),
        label_column: header.label.map(|c| c + 1),
        lines: Vec::new(),
    };
    for (line, row) in lines {
        header.parse_row(path, line, row, &mut csv)?;
    }
    if csv.is_empty() {
        return Err(Error::invalid(
            path,
            format!("holds a header (line {header_line}) but no rows of pixels"),
        ));
    }
    Ok(csv)
}

/// What the header line says about the columns.
struct Header {
    /// Column names as written, for messages.
    names: Vec<String>,
    /// 0-based index of the `label` column.
    label: Option<usize>,
    /// Side of the square images.
    side: usize,
}

impl Header {
    /// Reads the header on line `line`.
    fn parse(path: &Path, line: usize, text: &str) -> Result<Header> {
        let names: Vec<String> = text.split(',').map(|c| unquote(c).to_string()).collect();
        let bad = |detail: String| Error::invalid(path, format!("line {line}: {detail}"));

        // A first line of numbers is data without a header.
        if names.iter().all(|n| n.parse::<f64>().is_ok()) {
            return Err(bad(format!(
                "expected a header naming the columns (label,pixel0,pixel1,...), found {} \
                 numbers",
                names.len()
            )));
        }

        // At most one label column; every other column is a pixel.
        let labels: Vec<usize> =
            (0..names.len()).filter(|&i| names[i].eq_ignore_ascii_case("label")).collect();
        if labels.len() > 1 {
            return Err(bad(format!(
                "columns {} and {} are both named label",
                labels[0] + 1,
                labels[1] + 1
            )));
        }
        let pixels = names.len() - labels.len();
        if pixels == 0 {
            return Err(bad(format!(
                "the header has no pixel columns, only {text:?}; expected label,pixel0,pixel1,..."
            )));
        }

        // The pixels must make a square greyscale image.
        let side = pixels.isqrt();
        if side * side != pixels {
            return Err(bad(format!(
                "{pixels} pixel columns do not make a square image: a row must hold side × side \
                 greyscale pixels ({} = {s}×{s} or {} = {t}×{t} would)",
                side * side,
                (side + 1) * (side + 1),
                s = side,
                t = side + 1
            )));
        }
        Ok(Header { names, label: labels.first().copied(), side })
    }

    /// Appends the row on line `line` to `csv`.
    fn parse_row(&self, path: &Path, line: usize, row: &str, csv: &mut PixelCsv) -> Result<()> {
        // As many values as columns.
        let count = row.split(',').count();
        if count != self.names.len() {
            return Err(Error::invalid(
                path,
                format!(
                    "line {line}: expected {} values, one per header column, found {count}",
                    self.names.len()
                ),
            ));
        }

        // Each cell a whole number: pixels 0..=255, the label 0..=MAX_CSV_LABEL.
        let at = |column: usize, detail: String| {
            let name = &self.names[column];
            Error::invalid(path, format!("line {line}, column {} ({name}): {detail}", column + 1))
        };
        for (column, cell) in row.split(',').enumerate() {
            let max = if Some(column) == self.label { MAX_CSV_LABEL } else { 255 };
            let value = parse_whole(cell, max).map_err(|detail| at(column, detail))?;
            match &mut csv.labels {
                Some(labels) if Some(column) == self.label => labels.push(value),
                _ => csv.pixels.push(value as u8),
            }
        }
        csv.lines.push(line);
        Ok(())
    }
}

/// A cell without surrounding blanks and double quotes.
fn unquote(cell: &str) -> &str {
    let cell = cell.trim();
    cell.strip_prefix('"').and_then(|c| c.strip_suffix('"')).unwrap_or(cell).trim()
}

/// Parses a cell as a whole number in `0..=max`; `12.0` counts as 12.
fn parse_whole(cell: &str, max: u32) -> std::result::Result<u32, String> {
    let text = unquote(cell);

    // The common case, a plain decimal, without going through f64.
    if let Ok(v) = text.parse::<u32>() {
        return if v <= max { Ok(v) } else { Err(format!("value {v} is outside 0..={max}")) };
    }
    match text.parse::<f64>() {
        _ if text.is_empty() => Err(format!("empty cell; expected a whole number 0..={max}")),
        Ok(v) if v.fract() == 0.0 && (0.0..=f64::from(max)).contains(&v) => Ok(v as u32),
        Ok(v) if v.fract() == 0.0 || !v.is_finite() => {
            Err(format!("value {text} is outside 0..={max}"))
        }
        Ok(_) => Err(format!("value {text} is not a whole number; expected 0..={max}")),
        Err(_) => Err(format!("expected a whole number 0..={max}, found {text:?}")),
    }
}

/// Reads a labelled pixel CSV file as a split named after `path`.
///
/// The test part is, in this order: a stratified `options.val_fraction` of
/// the file, drawn with `options.seed`; else a `test.csv` with labels beside
/// it. Classes are `"0"`..`"K-1"` with `K` the file's largest label plus one;
/// the test labels must lie among them.
///
/// # Errors
///
/// As [`read_pixel_csv`]; [`Error::InvalidData`] for a file without a label
/// column, a `test.csv` of another image size, or a test label outside the
/// classes (naming its line and column); [`Error::NoTestSplit`] when there
/// is no test part; [`Error::InvalidArgument`] for a `val_fraction` outside
/// `(0, 1)`.
pub fn read_csv_split(path: &Path, options: &LoadOptions) -> Result<Split> {
    read_csv_split_with(path, options).map(|(split, _)| split)
}

/// [`read_csv_split`], with the report of the import: its warnings (see
/// [`label_warning`]).
pub(crate) fn read_csv_split_with(
    path: &Path,
    options: &LoadOptions,
) -> Result<(Split, ImportReport)> {
    let (all, warnings) = read_csv_labelled(path)?;
    let split = split_csv(path, all, options)?;
    Ok((split, ImportReport { warnings, ..ImportReport::default() }))
}

/// Splits `all`, the rows of the CSV file `path`, as [`read_csv_split`]
/// describes.
pub(crate) fn split_csv(path: &Path, all: Dataset, options: &LoadOptions) -> Result<Split> {
    // A held-out fraction when asked for, else a labelled test.csv beside it.
    if let Some(fraction) = options.val_fraction {
        return holdout_split(&all, fraction, options.seed);
    }
    let sibling = path.with_file_name("test.csv");
    let is_self = path.file_name().is_some_and(|f| f.eq_ignore_ascii_case("test.csv"));
    if !is_self && sibling.is_file() {
        let test = read_test_csv(&sibling, path, &all)?;
        return Ok(Split { train: all, test });
    }
    Err(Error::NoTestSplit {
        path: path.into(),
        expected: TEST_CSV.into(),
        detail: format!(
            "{} has no test split: pass --val-fraction 0.1 to hold out a stratified tenth of \
             it for testing, or put {TEST_CSV}",
            path.display()
        ),
    })
}

/// What the test split of a CSV file is, for messages.
const TEST_CSV: &str = "a test.csv with a label column beside it";

/// Reads a labelled pixel CSV file as one dataset named after `path`, with
/// classes `"0"`..`"K-1"` for its largest label `K - 1`, and the warnings
/// worth showing before training (see [`label_warning`]).
///
/// # Errors
///
/// As [`read_pixel_csv`]; [`Error::InvalidData`] for a file without a label
/// column.
pub(crate) fn read_csv_labelled(path: &Path) -> Result<(Dataset, Vec<String>)> {
    let csv = read_pixel_csv(path)?;
    let Some(labels) = csv.labels else {
        return Err(Error::invalid(
            path,
            "the header has no label column, so the rows cannot be trained on; a file of \
             pixels alone is input for `xent predict --model MODEL FILE.csv`",
        ));
    };
    let k = labels.iter().max().map_or(1, |&m| m as usize + 1);
    let warnings = label_warning(path, &labels, &csv.lines).into_iter().collect();
    let shape = [1, csv.side, csv.side];
    let name = path.display().to_string();
    let dataset = Dataset::new(name, csv.pixels, labels, shape, numbered_classes(k), 255)?;
    Ok((dataset, warnings))
}

/// More label values unused below the largest label than this (and than the
/// values used) draw a warning: a class or two without rows is common, a
/// range mostly empty is a stray value.
const UNUSED_LABELS: usize = 10;

/// A warning when the largest label lies far above the labels used: classes
/// are `0..=largest`, so one stray value (60000 among the digits) makes a
/// model of that many classes, nearly all without a row. The file is still
/// read, since a dataset may have many classes; `lines` are the rows' line
/// numbers, for naming the row of the largest label.
fn label_warning(path: &Path, labels: &[u32], lines: &[usize]) -> Option<String> {
    let (row, &largest) = labels.iter().enumerate().max_by_key(|&(i, l)| (l, Reverse(i)))?;
    let mut seen = labels.to_vec();
    seen.sort_unstable();
    seen.dedup();
    let (classes, used) = (largest as usize + 1, seen.len());
    let unused = classes - used;
    if unused <= used.max(UNUSED_LABELS) {
        return None;
    }
    Some(format!(
        "{}: labels go up to {largest} but only {used} distinct values appear, so the model \
         gets {classes} classes, {unused} of them without a row; line {} has label {largest}",
        path.display(),
        lines[row]
    ))
}

/// Reads `test.csv` beside `train_path` as the test part of `train`.
fn read_test_csv(path: &Path, train_path: &Path, train: &Dataset) -> Result<Dataset> {
    let csv = read_pixel_csv(path)?;
    let (Some(labels), Some(column)) = (&csv.labels, csv.label_column) else {
        return Err(Error::NoTestSplit {
            path: train_path.into(),
            expected: TEST_CSV.into(),
            detail: format!(
                "{} has no label column, so it cannot test {}: pass --val-fraction 0.1 to hold \
                 out a stratified tenth of {} instead",
                path.display(),
                train_path.display(),
                train_path.display()
            ),
        });
    };

    // Same image size, labels among the training classes.
    let [_, h, w] = train.sample_shape();
    if (csv.side, csv.side) != (h, w) {
        return Err(Error::invalid(
            path,
            format!(
                "rows hold {s}×{s} images but those of {} are {h}×{w}",
                train_path.display(),
                s = csv.side
            ),
        ));
    }
    let classes = train.classes().len();
    if let Some(i) = labels.iter().position(|&l| l as usize >= classes) {
        return Err(Error::invalid(
            path,
            format!(
                "line {}, column {column} (label): label {} is outside the classes 0..={} \
                 of {}",
                csv.lines[i],
                labels[i],
                classes - 1,
                train_path.display()
            ),
        ));
    }
    Dataset::new(train.name(), csv.pixels, labels.clone(), [1, h, w], train.classes().to_vec(), 255)
}

/// Splits `ds` into train and test, holding out `fraction` of each class for
/// test: `round(fraction · count)` samples, at least one and never all of a
/// class with two or more. Which samples is drawn with `seed`; both parts
/// keep the file order.
///
/// # Errors
///
/// [`Error::InvalidArgument`] for a fraction outside `(0, 1)`, or when no
/// class has two samples, so nothing can be held out.
pub fn holdout_split(ds: &Dataset, fraction: f64, seed: u64) -> Result<Split> {
    if !(fraction > 0.0 && fraction < 1.0) {
        return Err(Error::arg(format!(
            "--val-fraction must lie strictly between 0 and 1, found {fraction}"
        )));
    }

    // Each class's samples, shuffled from one stream in class order.
    let mut by_class = vec![Vec::new(); ds.classes().len()];
    for i in 0..ds.len() {
        by_class[ds.label(i) as usize].push(i);
    }
    let mut rng = Rng::new(seed, HOLDOUT_STREAM);
    let mut held = vec![false; ds.len()];
    for members in &mut by_class {
        rng.shuffle(members);
        let n = members.len();
        let take = if n < 2 { 0 } else { ((fraction * n as f64).round() as usize).clamp(1, n - 1) };
        members[..take].iter().for_each(|&i| held[i] = true);
    }

    // Both parts in file order.
    let (test, train): (Vec<usize>, Vec<usize>) = (0..ds.len()).partition(|&i| held[i]);
    if test.is_empty() {
        return Err(Error::arg(format!(
            "--val-fraction {fraction} holds out nothing: no class of {} has two samples",
            ds.name()
        )));
    }
    Ok(Split { train: ds.subset(&train), test: ds.subset(&test) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<PixelCsv> {
        parse_pixel_csv(Path::new("d.csv"), text)
    }

    fn message(text: &str) -> String {
        parse(text).expect_err("invalid CSV").to_string()
    }

    #[test]
    fn label_column_anywhere_and_pixels_in_order() {
        let csv = parse("pixel0,pixel1,label,pixel2,pixel3\r\n1,2,7,3,4\n\n5,6,0,7,8\n")
            .expect("valid CSV");
        assert_eq!(csv.side, 2);
        assert_eq!(csv.labels, Some(vec![7, 0]));
        assert_eq!(csv.label_column, Some(3));
        assert_eq!(csv.row(1), &[5, 6, 7, 8]);
        assert_eq!(csv.lines, vec![2, 4]);
        let bare = parse("\u{feff}pixel0\n255\n\"12.0\"\n").expect("valid CSV");
        assert_eq!((bare.labels, bare.pixels), (None, vec![255, 12]));
    }

    #[test]
    fn errors_name_line_and_column() {
        let head = "label,pixel0,pixel1,pixel2,pixel3\n";
        let msg = message(&format!("{head}1,2,3,4,5\n1,2,3\n"));
        assert!(msg.contains("line 3: expected 5 values, one per header column, found 3"), "{msg}");
        let msg = message(&format!("{head}1,2,x,4,5\n"));
        assert!(msg.contains("line 2, column 3 (pixel1): expected a whole number 0..=255"));
        let msg = message(&format!("{head}1,2,3,256,5\n"));
        assert!(msg.contains("line 2, column 4 (pixel2): value 256 is outside 0..=255"), "{msg}");
        let msg = message(&format!("{head}1,2,3,4,-1\n"));
        assert!(msg.contains("column 5 (pixel3): value -1 is outside 0..=255"), "{msg}");
        let msg = message(&format!("{head}1,2,3,4,0.5\n"));
        assert!(msg.contains("value 0.5 is not a whole number"), "{msg}");
        let msg = message(&format!("{head}70000,2,3,4,5\n"));
        assert!(msg.contains("column 1 (label): value 70000 is outside 0..=65535"), "{msg}");
        let msg = message(&format!("{head}1,,3,4,5\n"));
        assert!(msg.contains("column 2 (pixel0): empty cell"), "{msg}");
    }

    #[test]
    fn header_problems_are_named() {
        assert!(message("").contains("file is empty"));
        assert!(message("\n \n").contains("file is empty"));
        assert!(message("label\n3\n").contains("no pixel columns"));
        let msg = message("label,a,b,c\n1,2,3,4\n");
        assert!(msg.contains("3 pixel columns do not make a square image"), "{msg}");
        assert!(message("1,2,3,4\n").contains("expected a header"));
        assert!(message("label,p0,LABEL,p1\n").contains("columns 1 and 3 are both named label"));
        assert!(message("label,p0\n").contains("no rows"));
    }

    #[test]
    fn a_stray_large_label_is_pointed_out() {
        let path = Path::new("d.csv");
        let mut labels: Vec<u32> = (0..60).map(|i| i % 10).collect();
        labels[40] = 60_000;
        let lines: Vec<usize> = (2..62).collect();
        let warning = label_warning(path, &labels, &lines).expect("a warning");
        let want = "d.csv: labels go up to 60000 but only 11 distinct values appear, so the \
                    model gets 60001 classes, 59990 of them without a row; line 42 has label 60000";
        assert_eq!(warning, want);

        // A few unused values, or many classes all used, are data.
        labels[40] = 14;
        assert_eq!(label_warning(path, &labels, &lines), None);
        let many: Vec<u32> = (0..5000).collect();
        assert_eq!(label_warning(path, &many, &(2..5002).collect::<Vec<_>>()), None);
    }

    #[test]
    fn csv_names() {
        assert!(is_csv_path("train.csv"));
        assert!(is_csv_path("dir/Train.CSV.gz"));
        assert!(!is_csv_path("train.csv/"));
        assert!(!is_csv_path("mnist"));
    }

    #[test]
    fn holdout_is_stratified_seeded_and_ordered() {
        // 10 samples of class 0, 5 of class 1, 1 of class 2.
        let labels: Vec<u32> = (0..16)
            .map(|i| {
                if i < 10 {
                    0
                } else if i < 15 {
                    1
                } else {
                    2
                }
            })
            .collect();
        let ds = Dataset::new("t", (0..16).collect(), labels, [1, 1, 1], numbered_classes(3), 255)
            .expect("valid dataset");
        let split = holdout_split(&ds, 0.2, 7).expect("valid fraction");
        assert_eq!(split.test.class_counts(), vec![2, 1, 0]);
        assert_eq!(split.train.class_counts(), vec![8, 4, 1]);
        let order = split.test.images().to_vec();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
        assert_eq!(holdout_split(&ds, 0.2, 7).expect("valid fraction"), split);
        let other = (1..20).map(|s| holdout_split(&ds, 0.2, s).expect("valid").test);
        assert!(other.into_iter().any(|t| t.images() != split.test.images()));
        assert!(holdout_split(&ds, 1.0, 0).is_err());
        assert!(holdout_split(&ds, 0.0, 0).is_err());
        assert!(holdout_split(&ds, f64::NAN, 0).is_err());
    }
}
