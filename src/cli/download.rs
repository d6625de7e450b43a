//! `xent data download`: fetches named datasets into the data directory,
//! with a progress bar on a terminal and one line per file otherwise.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use clap::Args;
use indicatif::{HumanBytes, ProgressBar, ProgressStyle};
use xent::data::{self, Event};
use xent::Result;

/// Options of `xent data download`.
#[derive(Debug, Args)]
pub struct DownloadArgs {
    /// Datasets to fetch.
    #[arg(required = true, value_name = "NAME", value_parser = DOWNLOADABLE)]
    names: Vec<String>,
    /// Data folder; each dataset goes to DIR/<name>/ [default: $XENT_DATA, else the platform
    /// cache folder, e.g. ~/.cache/xent].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Base URL to fetch from instead of the built-in mirrors; repeat it to give fallbacks,
    /// tried in order [default: $XENT_MIRROR (comma-separated), else the published mirrors].
    #[arg(long = "mirror", value_name = "URL")]
    mirrors: Vec<String>,
}

/// The datasets with a download, as `xent::data::SOURCES` lists them.
const DOWNLOADABLE: [&str; 5] = ["mnist", "fashion-mnist", "kmnist", "cifar10", "cifar100"];

/// Runs `xent data download`.
pub fn run(args: &DownloadArgs) -> Result<()> {
    let data_dir = args.data_dir.clone().unwrap_or_else(data::data_dir);
    for name in &args.names {
        fetch_dataset(name, &data_dir, &args.mirrors)?;
    }
    Ok(())
}

/// Downloads (or finds) the dataset `name` in `data_dir`, printing what it
/// does; also used by `xent train --download`.
pub fn fetch_dataset(name: &str, data_dir: &Path, mirrors: &[String]) -> Result<()> {
    let mirrors = match data::source(name) {
        Some(source) => data::resolve_mirrors(source, mirrors),
        None => mirrors.to_vec(),
    };
    let mut display = Display { bar: None, terminal: std::io::stdout().is_terminal() };
    let result = data::download(name, data_dir, &mirrors, &mut |event| display.show(event));
    display.clear();
    let dir = result?;
    println!("done   {name} in {}", dir.display());
    Ok(())
}

/// Turns download events into lines and a byte progress bar.
struct Display {
    bar: Option<ProgressBar>,
    terminal: bool,
}

impl Display {
    fn show(&mut self, event: &Event) {
        match *event {
            Event::Present { file } => {
                println!("skip   {file}: already present and verified, not downloaded again");
            }
            Event::Replacing { file, reason } => {
                eprintln!("warning: {file} is present but {reason}; downloading it again");
            }
            Event::Start { file, url, total } => {
                println!("fetch  {file} from {url}");
                if self.terminal {
                    self.bar = Some(new_bar(total));
                }
            }
            Event::Progress { bytes, .. } => {
                if let Some(bar) = &self.bar {
                    bar.set_position(bytes);
                }
            }
            Event::Failed { url, reason, .. } => {
                self.clear();
                eprintln!("warning: {url}: {reason}");
            }
            Event::Verified { file, bytes, checked } => {
                self.clear();
                println!("ok     {file}: {}, {checked} verified", HumanBytes(bytes));
            }
            Event::Extracted { file, archive } => {
                println!("unpack {file} from {archive}");
            }
        }
    }

    fn clear(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

fn new_bar(total: Option<u64>) -> ProgressBar {
    let template = match total {
        Some(_) => "       [{bar:30}] {bytes:>10}/{total_bytes} | {bytes_per_sec} | eta {eta}",
        None => "       {spinner} {bytes:>10} | {bytes_per_sec}",
    };
    let style = ProgressStyle::with_template(template)
        .expect("the template is valid")
        .progress_chars("=> ");
    match total {
        Some(total) => ProgressBar::new(total).with_style(style),
        None => ProgressBar::no_length().with_style(style),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_source_can_be_named() {
        let sources: Vec<&str> = data::SOURCES.iter().map(|s| s.name).collect();
        assert_eq!(sources, DOWNLOADABLE);
    }
}
