//! How a dataset is imported (options from the command line) and what the
//! import did (the report shown before training).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Which CIFAR-100 labels to use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LabelKind {
    /// The 100 fine classes.
    #[default]
    Fine,
    /// The 20 coarse superclasses.
    Coarse,
}

/// Options for importing a dataset. Each reader uses the ones that apply to
/// its format; `channels`, `size` and `skip_bad` are refused for formats
/// other than image folders. A model file records them, so `xent eval`
/// reads the same test split as training did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LoadOptions {
    /// Channels every image is converted to (1 or 3); `None`: the most common
    /// mode found.
    pub channels: Option<usize>,
    /// `(height, width)` every image is resized to; `None`: sizes must agree.
    pub size: Option<(usize, usize)>,
    /// Skip (and list) corrupt files instead of failing on them.
    pub skip_bad: bool,
    /// Fraction of a folder without a test split held out for testing,
    /// stratified by class.
    pub val_fraction: Option<f64>,
    /// CIFAR-100 fine or coarse labels.
    pub labels: LabelKind,
    /// Seed for anything random in the import (the held-out split).
    pub seed: u64,
}

impl Default for LoadOptions {
    fn default() -> LoadOptions {
        LoadOptions {
            channels: None,
            size: None,
            skip_bad: false,
            val_fraction: None,
            labels: LabelKind::Fine,
            seed: 0,
        }
    }
}

/// What an import found and did, for the user to read before training.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ImportReport {
    /// Entries passed over on purpose (hidden files, non-images), with why.
    pub skipped: Vec<(PathBuf, String)>,
    /// Files that could not be decoded and were left out (`skip_bad`), with why.
    pub bad: Vec<(PathBuf, String)>,
    /// Conversions applied, e.g. `"RGBA -> RGB"` and how many images.
    pub conversions: BTreeMap<String, usize>,
    /// Anything else worth knowing (a class missing from the test split, …).
    pub warnings: Vec<String>,
}
