//! The library's one error type. Every variant carries the facts a user needs
//! to act: the file, the record, what was expected and what was found.

use std::path::PathBuf;

/// Result with the library's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// Everything a user can cause: bad files, bad shapes, bad options.
///
/// Messages are lowercase and name the values involved. [`Error::hint`] adds
/// the fix where one is known.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A tensor had the wrong shape for an operation.
    #[error("{op}: expected shape {expected:?}, found {found:?}")]
    Shape {
        /// The operation that refused the tensor.
        op: &'static str,
        /// The shape it needed (0 stands for "any size" where noted by `op`).
        expected: Vec<usize>,
        /// The shape it got.
        found: Vec<usize>,
    },

    /// Reading or writing a file failed at the operating-system level.
    #[error("{action} {}", path.display())]
    Io {
        /// "reading", "writing", "creating", ...
        action: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },

    /// A file's contents are not what its format requires.
    #[error("{}: {detail}", path.display())]
    InvalidData {
        /// The file.
        path: PathBuf,
        /// What was expected and what was found.
        detail: String,
    },

    /// One record (image, row, label) of a file is wrong.
    #[error("{}: record {record}: {detail}", path.display())]
    InvalidRecord {
        /// The file.
        path: PathBuf,
        /// 0-based index of the record in the file.
        record: usize,
        /// What was expected and what was found.
        detail: String,
    },

    /// A named dataset's files are not in the data directory.
    #[error("dataset {name}: {} not found in {}", missing.join(", "), dir.display())]
    DatasetMissing {
        /// Dataset name, e.g. `mnist`.
        name: String,
        /// Where the files were looked for.
        dir: PathBuf,
        /// The file names that are absent.
        missing: Vec<String>,
    },

    /// A dataset without a test split, where training could hold one out
    /// with `--val-fraction`.
    #[error("{detail}")]
    NoTestSplit {
        /// The dataset: a `.csv` file or an image folder.
        path: PathBuf,
        /// What its test split would be, e.g. `a test.csv with a label
        /// column beside it`.
        expected: String,
        /// The message: what is missing and how training does without it.
        detail: String,
    },

    /// A dataset name that xent does not know.
    #[error("unknown dataset {name:?} (known: {known})")]
    UnknownDataset {
        /// The name given.
        name: String,
        /// The names xent knows, comma-separated.
        known: String,
    },

    /// A dataset file could not be had intact from any mirror. Nothing
    /// downloaded is left under its name; a copy that was there before is.
    #[error("downloading {file}: {}", attempts.join("; "))]
    Download {
        /// The file's name, e.g. `train-images-idx3-ubyte.gz`.
        file: String,
        /// What went wrong at each URL tried, in order, URL first.
        attempts: Vec<String>,
        /// Whether a copy that failed its checksum was already there; it
        /// is left as it was.
        failed_check: bool,
    },

    /// A model spec that does not parse or does not fit the input.
    #[error("model spec {spec:?}: {detail}")]
    Spec {
        /// The spec text as given.
        spec: String,
        /// What is wrong, naming the layer.
        detail: String,
    },

    /// An option or argument outside its valid range.
    #[error("{0}")]
    InvalidArgument(String),

    /// The output folder already holds a run.
    #[error("run folder {} already holds a run", path.display())]
    RunExists {
        /// The run folder.
        path: PathBuf,
    },

    /// The training loss stopped being finite.
    #[error("loss became {loss} at epoch {epoch}, step {step}; training stopped")]
    Diverged {
        /// 1-based epoch.
        epoch: usize,
        /// 1-based step within the epoch.
        step: usize,
        /// The non-finite value (NaN or infinity).
        loss: f32,
    },

    /// A model file that cannot be used.
    #[error("{}: {detail}", path.display())]
    ModelFile {
        /// The model file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },

    /// An image that cannot be decoded.
    #[error("{}: cannot decode image", path.display())]
    Image {
        /// The image file.
        path: PathBuf,
        /// The decoder's reason.
        #[source]
        source: image::ImageError,
    },
}

impl Error {
    /// Builds an [`Error::Io`] for `path`.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io { action, path: path.into(), source }
    }

    /// Builds an [`Error::InvalidData`] for `path`.
    pub fn invalid(path: impl Into<PathBuf>, detail: impl Into<String>) -> Error {
        Error::InvalidData { path: path.into(), detail: detail.into() }
    }

    /// Builds an [`Error::InvalidArgument`].
    pub fn arg(detail: impl Into<String>) -> Error {
        Error::InvalidArgument(detail.into())
    }

    /// The fix, where xent knows one.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::DatasetMissing { name, dir, .. } if crate::data::DATASETS.contains(&&**name) => {
                Some(format!(
                    "run `xent data download {name}` to fetch them (or add --download to \
                     `xent train`), or put the {name} files in {}; set XENT_DATA to use another \
                     data folder; see \"Data\" in the README",
                    dir.display()
                ))
            }
            Error::DatasetMissing { missing, .. }
                if missing.iter().any(|f| f.ends_with(".bin")) =>
            {
                Some(
                    "a CIFAR-10 folder holds data_batch_1.bin .. data_batch_5.bin and \
                     test_batch.bin, a CIFAR-100 folder train.bin and test.bin, either in the \
                     folder or in its cifar-10-batches-bin/ or cifar-100-binary/ sub-folder; \
                     `xent data download cifar10` (or cifar100) fetches them"
                        .into(),
                )
            }
            Error::DatasetMissing { .. } => Some(
                "a dataset folder holds train-images-idx3-ubyte, train-labels-idx1-ubyte, \
                 t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte (each raw or .gz), or one \
                 sub-folder of PNG or JPEG images per class, or CIFAR .bin files"
                    .into(),
            ),
            Error::Download { file, failed_check, .. } => {
                let kept = if *failed_check {
                    format!(
                        "the {file} already there failed its checksum and is left as it was \
                         (delete it, or replace it with a good copy)"
                    )
                } else {
                    "nothing was kept under the file's name".into()
                };
                Some(format!(
                    "{kept}; try again, give another mirror with --mirror URL (or XENT_MIRROR), \
                     or put the file in the dataset folder yourself"
                ))
            }
            Error::RunExists { .. } => {
                Some("pass --force to replace it, or --out to choose another folder".into())
            }
            // Each epoch's model replaces the one before, and a run replacing
            // another moves in only once its first epoch is saved.
            Error::Diverged { epoch: 1, .. } => Some(
                "lower --lr; no epoch completed, so this run saved no model (an earlier run in \
                 its folder is kept as it was)"
                    .into(),
            ),
            Error::Diverged { epoch, .. } => {
                let last = epoch - 1;
                let epochs = if last == 1 { "epoch 1".into() } else { format!("epochs 1-{last}") };
                Some(format!(
                    "lower --lr; the run folder keeps the model of epoch {last}, the last \
                     completed, and the metrics of {epochs}"
                ))
            }
            Error::UnknownDataset { .. } => Some(
                "a folder of images (one sub-folder per class), of IDX or CIFAR .bin files, or \
                 a .csv file also works as --dataset"
                    .into(),
            ),
            _ => None,
        }
    }
}
