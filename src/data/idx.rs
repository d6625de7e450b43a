//! The IDX format of MNIST and its relatives (Fashion-MNIST, KMNIST), raw or
//! gzip-compressed.
//!
//! An IDX file is a big-endian header, the magic number `00 00 08 R` (`08`:
//! unsigned bytes, `R`: the number of dimensions), then `R` dimensions as
//! big-endian `u32`, then the bytes. Images have `R = 3` (count, rows,
//! columns), labels `R = 1` (count). A file is gzip when it starts with the
//! gzip magic bytes `1f 8b`, whatever its name.

use super::{Dataset, Split};
use crate::{Error, Result};
use flate2::read::MultiGzDecoder;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// The four files of an MNIST-style dataset, in the order train images,
/// train labels, test images, test labels. Each may also carry `.gz`.
pub const IDX_FILES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

/// IDX data type code for unsigned bytes, the only one these datasets use.
const UBYTE: u8 = 0x08;

/// Deflate cannot expand data more than about 1032 times; this bounds the
/// buffer a gzip file's header can make us reserve.
const MAX_DEFLATE_RATIO: u64 = 1032;

/// The images of one IDX file.
#[derive(Clone, Debug, PartialEq)]
pub struct IdxImages {
    /// Number of images.
    pub count: usize,
    /// Rows per image.
    pub h: usize,
    /// Columns per image.
    pub w: usize,
    /// `count * h * w` bytes, image after image, each row-major.
    pub pixels: Vec<u8>,
}

/// Reads an IDX image file (magic `0x00000803`), raw or gzip.
///
/// # Errors
///
/// [`Error::Io`] when the file cannot be read; [`Error::InvalidData`] when
/// the header is not that of an unsigned-byte image file, when an image has
/// no pixels, when the gzip data is corrupt, or when the file is longer or
/// shorter than its header promises.
pub fn read_idx_images(path: &Path) -> Result<IdxImages> {
    let idx = read_idx(path, Kind::Images)?;
    let (count, h, w) = (idx.dims[0], idx.dims[1], idx.dims[2]);
    if h == 0 || w == 0 {
        return Err(Error::invalid(path, format!("images of {h}×{w} pixels are empty")));
    }
    Ok(IdxImages { count, h, w, pixels: idx.body })
}

/// Reads an IDX label file (magic `0x00000801`), raw or gzip, whose labels
/// must lie in `0..classes`.
///
/// # Errors
///
/// As [`read_idx_images`], and [`Error::InvalidRecord`] naming the first
/// label outside `0..classes`.
pub fn read_idx_labels(path: &Path, classes: usize) -> Result<Vec<u32>> {
    let labels = read_idx(path, Kind::Labels)?.body;

    // Report the first label out of range, and say so when the labels run
    // 1..=classes, the common off-by-one of a converted dataset.
    if let Some(record) = labels.iter().position(|&l| l as usize >= classes) {
        let (min, max) = (labels.iter().min(), labels.iter().max());
        let mut detail = format!(
            "label {} is outside 0..={} ({classes} classes)",
            labels[record],
            classes.saturating_sub(1)
        );
        if min == Some(&1) && max.map(|&m| m as usize) == Some(classes) {
            detail.push_str(&format!(
                "; the labels run 1..={classes}, so they look 1-based, expected 0-based"
            ));
        }
        return Err(Error::InvalidRecord { path: path.to_path_buf(), record, detail });
    }
    Ok(labels.into_iter().map(u32::from).collect())
}

/// Reads the four [`IDX_FILES`] of `dir` (each raw or `.gz`) as a split
/// named `name` with the given class names and `max_value` 255.
///
/// # Errors
///
/// [`Error::DatasetMissing`] naming the files that are absent; otherwise as
/// [`read_idx_images`] and [`read_idx_labels`], plus [`Error::InvalidData`]
/// when the image and label counts of a pair differ, or when the test images
/// are not the size of the training images.
pub fn read_idx_split(dir: &Path, name: &str, classes: &[String]) -> Result<Split> {
    // Find each file, raw first, and list all that are absent at once.
    let found: Vec<Option<PathBuf>> = IDX_FILES.iter().map(|file| find(dir, file)).collect();
    let missing: Vec<String> = IDX_FILES
        .iter()
        .zip(&found)
        .filter(|(_, path)| path.is_none())
        .map(|(file, _)| file.to_string())
        .collect();
    if !missing.is_empty() {
        return Err(Error::DatasetMissing { name: name.into(), dir: dir.into(), missing });
    }
    let paths: Vec<PathBuf> = found.into_iter().flatten().collect();

    // Read the training pair on a second thread; it is six times the test pair.
    let (train, test) = std::thread::scope(|scope| {
        let train = scope.spawn(|| read_pair(name, &paths[0], &paths[1], classes));
        let test = read_pair(name, &paths[2], &paths[3], classes);
        (train.join().expect("reading IDX files does not panic"), test)
    });
    let (train, test) = (train?, test?);

    // The model sees one input size, so both parts must share it.
    if test.sample_shape() != train.sample_shape() {
        let [_, h, w] = test.sample_shape();
        let [_, th, tw] = train.sample_shape();
        return Err(Error::invalid(
            &paths[2],
            format!(
                "images are {h}×{w} but the training images in {} are {th}×{tw}",
                paths[0].display()
            ),
        ));
    }
    Ok(Split { train, test })
}

/// `dir/file` if it is a file, else `dir/file.gz` if that is.
fn find(dir: &Path, file: &str) -> Option<PathBuf> {
    [dir.join(file), dir.join(format!("{file}.gz"))].into_iter().find(|path| path.is_file())
}

/// One image file and its label file as a dataset.
fn read_pair(name: &str, images: &Path, labels: &Path, classes: &[String]) -> Result<Dataset> {
    let idx = read_idx_images(images)?;
    let targets = read_idx_labels(labels, classes.len())?;
    if idx.count != targets.len() {
        return Err(Error::invalid(
            images,
            format!(
                "holds {} images but {} holds {} labels; the counts must match",
                idx.count,
                labels.display(),
                targets.len()
            ),
        ));
    }
    if idx.count == 0 {
        // A split of nothing cannot train, and would test as 0%.
        return Err(Error::invalid(images, "holds no images (its header gives a count of 0)"));
    }
    Dataset::new(name, idx.pixels, targets, [1, idx.h, idx.w], classes.to_vec(), 255)
}

/// Which IDX file is expected.
#[derive(Clone, Copy)]
enum Kind {
    Images,
    Labels,
}

impl Kind {
    /// Number of dimensions in the header.
    fn rank(self) -> u8 {
        match self {
            Kind::Images => 3,
            Kind::Labels => 1,
        }
    }

    /// The file kind in words, for messages.
    fn noun(self) -> &'static str {
        match self {
            Kind::Images => "image",
            Kind::Labels => "label",
        }
    }

    /// The big-endian magic number.
    fn magic(self) -> [u8; 4] {
        [0, 0, UBYTE, self.rank()]
    }
}

/// A decompressed IDX file: its dimensions and the bytes after the header.
struct Idx {
    dims: Vec<usize>,
    body: Vec<u8>,
}

/// Reads and checks one IDX file: magic number, dimensions, and a body of
/// exactly the length the dimensions give.
fn read_idx(path: &Path, kind: Kind) -> Result<Idx> {
    // Open, and sniff the gzip magic bytes rather than trusting the name.
    let file = File::open(path).map_err(|e| Error::io("opening", path, e))?;
    let file_len = file.metadata().map_err(|e| Error::io("reading", path, e))?.len();
    let mut buffered = BufReader::with_capacity(1 << 16, file);
    let head = buffered.fill_buf().map_err(|e| Error::io("reading", path, e))?;
    let gzip = head.starts_with(&[0x1f, 0x8b]);
    let mut source: Box<dyn Read> =
        if gzip { Box::new(MultiGzDecoder::new(buffered)) } else { Box::new(buffered) };
    let reader = Reader { path, gzip };

    // Magic number, then one big-endian u32 per dimension.
    let dims = read_header(&reader, &mut source, kind)?;
    let header_len = 4 + 4 * dims.len();

    // The body: exactly the product of the dimensions, nothing more. The
    // buffer is sized from the header, bounded by what the file can hold.
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| Error::invalid(path, format!("header dimensions {dims:?} are too large")))?;
    let bound = if gzip { file_len.saturating_mul(MAX_DEFLATE_RATIO) } else { file_len };
    let mut body = Vec::with_capacity(expected.min(usize::try_from(bound).unwrap_or(usize::MAX)));
    reader.read(source.by_ref().take(expected as u64), &mut body)?;
    if body.len() < expected {
        return Err(Error::invalid(
            path,
            cut_short(kind, &dims, header_len, body.len(), reader.after()),
        ));
    }

    // Nothing may follow the last record.
    let extra = reader.count_rest(&mut source)?;
    if extra > 0 {
        return Err(Error::invalid(
            path,
            format!(
                "{extra} extra bytes after the last {}; the header promises exactly {expected} \
                 bytes after the {header_len}-byte header{}",
                kind.noun(),
                reader.after()
            ),
        ));
    }
    Ok(Idx { dims, body })
}

/// Reads and checks the magic number of an IDX file of `kind`, then its
/// dimensions.
fn read_header(reader: &Reader, source: &mut dyn Read, kind: Kind) -> Result<Vec<usize>> {
    // The magic number, possibly short when the file is.
    let mut magic = [0u8; 4];
    let got = reader.fill(source, &mut magic)?;
    check_magic(reader.path, kind, &magic[..got], reader.after())?;

    // One big-endian u32 per dimension.
    let mut header = vec![0u8; 4 * kind.rank() as usize];
    let got = reader.fill(source, &mut header)?;
    if got < header.len() {
        return Err(Error::invalid(
            reader.path,
            format!(
                "header is cut short: expected {} bytes of dimensions after the magic number, \
                 found {got}{}",
                header.len(),
                reader.after()
            ),
        ));
    }
    Ok(header
        .chunks_exact(4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .collect())
}

/// Checks the (possibly short) magic number of an IDX file of `kind`.
fn check_magic(path: &Path, kind: Kind, magic: &[u8], after: &str) -> Result<()> {
    let want = kind.magic();
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ");
    let detail = match magic {
        m if m == want => return Ok(()),
        [] => format!("file is empty{after}; expected an IDX {} file", kind.noun()),
        m if m.len() < 4 => format!(
            "file is {} bytes long{after}, too short for the 4-byte IDX magic number",
            m.len()
        ),
        [r, UBYTE, 0, 0] if *r == kind.rank() => format!(
            "header looks little-endian: magic bytes {}, but IDX is big-endian ({})",
            hex(magic),
            hex(&want)
        ),
        [0, 0, t, r] if *r == kind.rank() => format!(
            "magic number {} has data type 0x{t:02x}, which is not supported; expected \
             0x08 (unsigned bytes), magic number 0x{:08x}",
            hex(magic),
            u32::from_be_bytes(want)
        ),
        [0, 0, UBYTE, r] => format!(
            "expected an IDX {} file ({} dimensions, magic number 0x{:08x}), found one with \
             {r} dimensions (magic number 0x{:08x})",
            kind.noun(),
            kind.rank(),
            u32::from_be_bytes(want),
            u32::from_be_bytes([0, 0, UBYTE, *r])
        ),
        m => format!(
            "expected the IDX {} magic number 0x{:08x} (bytes {}), found bytes {}",
            kind.noun(),
            u32::from_be_bytes(want),
            hex(&want),
            hex(m)
        ),
    };
    Err(Error::invalid(path, detail))
}

/// The message for a body shorter than the header promises.
fn cut_short(kind: Kind, dims: &[usize], header_len: usize, found: usize, after: &str) -> String {
    let record_len: usize = dims[1..].iter().product();
    let (whole, partial) = (found / record_len, found % record_len);
    let size = match kind {
        Kind::Images => format!(" of {}×{}", dims[1], dims[2]),
        Kind::Labels => String::new(),
    };
    let mut detail = format!(
        "file is cut short: the header promises {} {}s{size} ({} bytes after the \
         {header_len}-byte header), found {found} bytes{after}: {whole} whole {}s",
        dims[0],
        kind.noun(),
        dims[0] * record_len,
        kind.noun()
    );
    if partial > 0 {
        detail.push_str(&format!(", then {partial} bytes of {} {whole}", kind.noun()));
    }
    detail
}

/// Reads from a raw or gzip source and turns failures into errors that
/// name the file.
struct Reader<'a> {
    path: &'a Path,
    gzip: bool,
}

impl Reader<'_> {
    /// " after decompression" for gzip files, so sizes are not mistaken for
    /// the size on disk.
    fn after(&self) -> &'static str {
        if self.gzip {
            " after decompression"
        } else {
            ""
        }
    }

    /// Fills `buf` or stops at the end of the data; returns the bytes read.
    fn fill(&self, source: &mut dyn Read, buf: &mut [u8]) -> Result<usize> {
        let mut got = 0;
        while got < buf.len() {
            match source.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.error(e)),
            }
        }
        Ok(got)
    }

    /// Appends everything `source` yields to `body`.
    fn read(&self, mut source: impl Read, body: &mut Vec<u8>) -> Result<()> {
        source.read_to_end(body).map(drop).map_err(|e| self.error(e))
    }

    /// Number of bytes left in `source`.
    fn count_rest(&self, source: &mut dyn Read) -> Result<u64> {
        io::copy(source, &mut io::sink()).map_err(|e| self.error(e))
    }

    /// A read failure: inside a gzip stream it means corrupt or cut-short
    /// compressed data; otherwise the operating system failed.
    fn error(&self, e: io::Error) -> Error {
        let corrupt = matches!(
            e.kind(),
            io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof
        );
        if self.gzip && corrupt {
            Error::invalid(self.path, format!("gzip data is corrupt or cut short ({e})"))
        } else {
            Error::io("reading", self.path, e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_checks_name_the_problem() {
        let path = Path::new("f");
        let msg = |m: &[u8]| check_magic(path, Kind::Images, m, "").unwrap_err().to_string();
        assert!(check_magic(path, Kind::Images, &[0, 0, 8, 3], "").is_ok());
        assert!(msg(&[]).contains("file is empty"));
        assert!(msg(&[0, 0]).contains("2 bytes long"));
        assert!(msg(&[3, 8, 0, 0]).contains("little-endian"));
        assert!(msg(&[0, 0, 0x0d, 3]).contains("data type 0x0d"));
        assert!(msg(&[0, 0, 8, 1]).contains("found one with 1 dimensions"));
        assert!(msg(b"GIF8").contains("found bytes 47 49 46 38"));
    }

    #[test]
    fn cut_short_counts_whole_and_partial_records() {
        let msg = cut_short(Kind::Images, &[3, 2, 2], 16, 9, "");
        assert!(msg.contains("promises 3 images of 2×2 (12 bytes"), "{msg}");
        assert!(msg.contains("found 9 bytes: 2 whole images, then 1 bytes of image 2"), "{msg}");
    }
}
