//! `xent data`: commands about datasets. `inspect` audits a dataset without
//! training, `download` fetches a named one (see `download.rs`); the import
//! report of `xent train` is printed from here too.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use clap::{Args, Subcommand};
use xent::data::{ImportReport, Inspection, LoadOptions};
use xent::Result;

use super::thousands;

/// Commands about datasets.
#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Audit a dataset without training: classes and counts per split, image sizes,
    /// channel modes, skipped and bad files, pixel mean and std, duplicates and test leakage.
    Inspect(InspectArgs),
    /// Download named datasets and verify their published checksums.
    Download(super::download::DownloadArgs),
}

/// Options of `xent data inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Dataset: digits, mnist, fashion-mnist, kmnist, cifar10, cifar100 (from $XENT_DATA), a
    /// folder of images (one sub-folder per class), a folder of MNIST-style IDX files or CIFAR
    /// .bin files, or a pixel .csv file.
    #[arg(value_name = "PATH|NAME")]
    dataset: String,
    /// Channels to convert images to, 1 or 3 [default: the mode most images have].
    #[arg(long)]
    channels: Option<usize>,
    /// Measure images resized to HxW (bilinear) [default: at their own size].
    #[arg(long, value_name = "HxW", value_parser = parse_size)]
    size: Option<(usize, usize)>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// Runs a `xent data` command.
pub fn run(cmd: &DataCommand) -> Result<()> {
    match cmd {
        DataCommand::Inspect(args) => inspect(args),
        DataCommand::Download(args) => super::download::run(args),
    }
}

/// `HxW` as `(h, w)`, e.g. `32x32`.
pub fn parse_size(text: &str) -> std::result::Result<(usize, usize), String> {
    let parsed = text
        .split_once(['x', 'X'])
        .and_then(|(h, w)| Some((h.trim().parse().ok()?, w.trim().parse().ok()?)));
    match parsed {
        Some((h, w)) if h > 0 && w > 0 => Ok((h, w)),
        Some(_) => Err(format!("height and width must be at least 1, found {text:?}")),
        _ => Err(format!("expected HEIGHTxWIDTH such as 32x32, found {text:?}")),
    }
}

fn inspect(args: &InspectArgs) -> Result<()> {
    let options =
        LoadOptions { channels: args.channels, size: args.size, ..LoadOptions::default() };
    let report = xent::data::inspect(&args.dataset, &options)?;
    if args.json {
        let json = serde_json::to_string(&report).expect("the report serialises");
        println!("{json}");
    } else {
        print!("{}", format_inspection(&report));
    }
    for warning in &report.warnings {
        eprintln!("warning: {warning}");
    }
    Ok(())
}

/// Entries of a list shown in text; `--json` has them all.
const SHOWN: usize = 10;

/// The inspection as text: one labelled line per finding, the class table,
/// and the files behind each finding.
fn format_inspection(r: &Inspection) -> String {
    let mut out = format!("dataset   {} ({})\n", r.dataset, r.format);
    let mut names = r.classes.clone();
    names.truncate(SHOWN * 2);
    let more = if r.classes.len() > names.len() { ", ..." } else { "" };
    out += &format!("classes   {}: {}{more}\n", r.classes.len(), names.join(", "));
    let splits: Vec<String> =
        r.splits.iter().map(|s| format!("{} {}", s.name, thousands(s.images as u64))).collect();
    out += &format!("images    {}\n", splits.join(" | "));
    out += &class_table(r);

    // Sizes, layouts and what loading converts.
    let sizes: Vec<String> = r
        .sizes
        .iter()
        .take(SHOWN)
        .map(|s| format!("{}x{}: {}", s.height, s.width, thousands(s.images as u64)))
        .collect();
    let more = if r.sizes.len() > SHOWN {
        format!(" (+{} more)", r.sizes.len() - SHOWN)
    } else {
        String::new()
    };
    out += &format!("sizes     {}{more} (height x width)\n", sizes.join(", "));
    let modes: Vec<String> =
        r.modes.iter().map(|(m, n)| format!("{m}: {}", thousands(*n as u64))).collect();
    out += &format!("modes     {} -> {} channel(s)\n", modes.join(", "), r.channels);
    if !r.conversions.is_empty() {
        let conversions: Vec<String> =
            r.conversions.iter().map(|(c, n)| format!("{c}: {}", thousands(*n as u64))).collect();
        out += &format!("convert   {}\n", conversions.join(", "));
    }

    // Normalisation, on the [0, 1] scale of the pixels.
    let list =
        |values: &[f64]| values.iter().map(|v| format!("{v:.4}")).collect::<Vec<_>>().join(", ");
    let first = r.splits.first().map_or("train", |s| s.name.as_str());
    out += &format!(
        "pixels    mean {} | std {} ({first}, pixel / {} on [0, 1])\n",
        list(&r.mean),
        list(&r.std),
        r.max_value
    );

    // Files passed over or unreadable, then duplicates.
    out += &notes("skipped", &r.skipped);
    out += &notes("bad", &r.bad);
    out += &format!("leaks     {} test image(s) identical to a training image\n", r.leaks.len());
    for leak in r.leaks.iter().take(SHOWN) {
        out += &format!("          {} = {}\n", leak.test, leak.train);
    }
    if r.leaks.len() > SHOWN {
        out += &format!("          ... and {} more\n", r.leaks.len() - SHOWN);
    }
    let duplicates: Vec<String> = r.duplicates.iter().map(|(s, n)| format!("{s} {n}")).collect();
    out += &format!(
        "repeats   {} (images identical to an earlier one of their split)\n",
        duplicates.join(" | ")
    );
    out
}

/// Images per class and split, training classes first. Classes without an
/// image in any split are counted on one line when there are more than
/// [`SHOWN`] of them, as when a stray label of a CSV file makes thousands.
fn class_table(r: &Inspection) -> String {
    // Each split's counts by class, and every class in order of appearance.
    let by_split: Vec<HashMap<&str, usize>> = r
        .splits
        .iter()
        .map(|s| s.classes.iter().map(|c| (c.class.as_str(), c.images)).collect())
        .collect();
    let mut classes: Vec<&str> = r.classes.iter().map(String::as_str).collect();
    let mut known: HashSet<&str> = classes.iter().copied().collect();
    for split in &r.splits {
        for count in &split.classes {
            if known.insert(&count.class) {
                classes.push(&count.class);
            }
        }
    }
    let counts = |class: &str| -> Vec<usize> {
        by_split.iter().map(|split| split.get(class).copied().unwrap_or(0)).collect()
    };
    let empty: Vec<&str> =
        classes.iter().copied().filter(|c| counts(c).iter().all(|&n| n == 0)).collect();
    let collapse = empty.len() > SHOWN;

    let width = classes.iter().map(|c| c.chars().count()).max().unwrap_or(5).max(5);
    let mut out = format!("  {:<width$}", "class");
    for split in &r.splits {
        out += &format!(" {:>8}", split.name);
    }
    out.push('\n');
    for class in classes {
        let counts = counts(class);
        if collapse && counts.iter().all(|&n| n == 0) {
            continue;
        }
        out += &format!("  {class:<width$}");
        for n in counts {
            out += &format!(" {n:>8}");
        }
        out.push('\n');
    }
    if collapse {
        out += &format!(
            "  ... and {} classes without images: {}, ... (--json lists all)\n",
            thousands(empty.len() as u64),
            empty[..SHOWN].join(", ")
        );
    }
    out
}

/// A labelled count with the first files and their reasons.
fn notes(label: &str, notes: &[xent::data::FileNote]) -> String {
    let mut out = format!("{label:<9} {}\n", notes.len());
    for note in notes.iter().take(SHOWN) {
        out += &format!("          {}: {}\n", note.path, note.reason);
    }
    if notes.len() > SHOWN {
        out += &format!("          ... and {} more (--json lists all)\n", notes.len() - SHOWN);
    }
    out
}

/// Examples of each kind shown by [`print_import_report`].
const IMPORT_EXAMPLES: usize = 5;

/// Prints what an import did: skipped entries, bad files left out and
/// conversions to stdout (unless `quiet`), warnings to stderr. Paths are
/// shown relative to `dataset` when under it.
pub fn print_import_report(dataset: &str, report: &ImportReport, quiet: bool) {
    let root = Path::new(dataset);
    let show = |path: &Path| path.strip_prefix(root).unwrap_or(path).display().to_string();
    let lists = [
        ("skipped", "entry", "entries", "(hidden, foreign or not images)", &report.skipped),
        ("left out", "file", "files", "that cannot be decoded (--skip-bad)", &report.bad),
    ];
    if !quiet {
        for (verb, one, many, why, list) in lists.into_iter().filter(|l| !l.4.is_empty()) {
            let noun = if list.len() == 1 { one } else { many };
            println!("import {verb} {} {noun} {why}", list.len());
            for (path, why) in list.iter().take(IMPORT_EXAMPLES) {
                println!("         {}: {why}", show(path));
            }
            if list.len() > IMPORT_EXAMPLES {
                let more = list.len() - IMPORT_EXAMPLES;
                println!(
                    "         ... and {more} more (`xent data inspect --json` lists them all)"
                );
            }
        }
        if !report.conversions.is_empty() {
            let done: Vec<String> =
                report.conversions.iter().map(|(what, n)| format!("{what}: {n}")).collect();
            println!("import applied {}", done.join(", "));
        }
    }
    for warning in report.warnings.iter().take(IMPORT_EXAMPLES) {
        eprintln!("warning: {warning}");
    }
    if report.warnings.len() > IMPORT_EXAMPLES {
        eprintln!("warning: ... and {} more", report.warnings.len() - IMPORT_EXAMPLES);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_as_height_x_width() {
        assert_eq!(parse_size("32x28"), Ok((32, 28)));
        assert_eq!(parse_size("8X8"), Ok((8, 8)));
        for bad in ["32", "0x4", "ax4", "4x", "-1x3"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        let zero = parse_size("0x0").expect_err("no zero sides");
        assert_eq!(zero, "height and width must be at least 1, found \"0x0\"");
    }
}
