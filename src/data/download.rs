//! Downloading the named datasets from their published mirrors, with the
//! published checksums checked before a file gets its name.
//!
//! A file is written to a hidden temporary file in the dataset folder
//! (`.<name>.<pid>.part`), its md5 (and sha256, where published) computed on
//! the way, and renamed to its final name only when they match. A failed or
//! interrupted download never leaves data under a dataset's file name, and
//! the temporary file is removed on every error. A file already present
//! with the right checksum is not downloaded again. The CIFAR archives are
//! extracted after their check, only the files the reader needs, each again
//! through a temporary name.

use super::cifar::CifarKind;
use crate::{Error, Result};
use flate2::read::GzDecoder;
use md5::{Digest, Md5};
use sha2::Sha256;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The environment variable that replaces the built-in mirrors: one or more
/// base URLs separated by commas or blanks, tried in order.
pub const MIRROR_ENV: &str = "XENT_MIRROR";

/// A file of a dataset as published, with its checksums.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemoteFile {
    /// File name, both on the mirror and on disk.
    pub name: &'static str,
    /// Published md5, lowercase hex.
    pub md5: &'static str,
    /// sha256, lowercase hex, where one is known.
    pub sha256: Option<&'static str>,
}

/// Where a dataset is published and what it consists of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Source {
    /// Dataset name, also its folder under the data directory.
    pub name: &'static str,
    /// Base URLs, tried in order; a file's URL is the base and its name.
    pub mirrors: &'static [&'static str],
    /// The files to fetch.
    pub files: &'static [RemoteFile],
    /// For an archive: the CIFAR dataset to extract from it.
    pub extract: Option<CifarKind>,
}

/// MNIST: md5 as checked by torchvision; sha256 of the same original files.
const MNIST_FILES: [RemoteFile; 4] = [
    RemoteFile {
        name: "train-images-idx3-ubyte.gz",
        md5: "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        sha256: Some("440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
    },
    RemoteFile {
        name: "train-labels-idx1-ubyte.gz",
        md5: "d53e105ee54ea40749a09fcbcd1e9432",
        sha256: Some("3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
    },
    RemoteFile {
        name: "t10k-images-idx3-ubyte.gz",
        md5: "9fb629c4189551a2d022fa330f9573f3",
        sha256: Some("8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
    },
    RemoteFile {
        name: "t10k-labels-idx1-ubyte.gz",
        md5: "ec29112dd5afa0611ce80d1b7f02629c",
        sha256: Some("f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
    },
];

/// Fashion-MNIST, md5 as published with torchvision.
const FASHION_MNIST_FILES: [RemoteFile; 4] = [
    md5_only("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
    md5_only("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
    md5_only("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
    md5_only("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310"),
];

/// KMNIST, md5 as published with torchvision.
const KMNIST_FILES: [RemoteFile; 4] = [
    md5_only("train-images-idx3-ubyte.gz", "bdb82020997e1d708af4cf47b453dcf7"),
    md5_only("train-labels-idx1-ubyte.gz", "e144d726b3acfaa3e44228e80efcd344"),
    md5_only("t10k-images-idx3-ubyte.gz", "5c965bf0a639b31b8f53240b1b52f4d7"),
    md5_only("t10k-labels-idx1-ubyte.gz", "7320c461ea6c1c855c0b718fb2a4b134"),
];

/// The CIFAR binary archives, md5 as published on the CIFAR page.
const CIFAR10_FILES: [RemoteFile; 1] =
    [md5_only("cifar-10-binary.tar.gz", "c32a1d4ab5d03f1284b67883e8d87530")];
const CIFAR100_FILES: [RemoteFile; 1] =
    [md5_only("cifar-100-binary.tar.gz", "03b5dce01913d631647c71ecec9e9cb8")];

const fn md5_only(name: &'static str, md5: &'static str) -> RemoteFile {
    RemoteFile { name, md5, sha256: None }
}

/// Every downloadable dataset.
pub const SOURCES: [Source; 5] = [
    Source {
        name: "mnist",
        mirrors: &[
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "http://yann.lecun.com/exdb/mnist/",
        ],
        files: &MNIST_FILES,
        extract: None,
    },
    Source {
        name: "fashion-mnist",
        mirrors: &["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
        files: &FASHION_MNIST_FILES,
        extract: None,
    },
    Source {
        name: "kmnist",
        mirrors: &["http://codh.rois.ac.jp/kmnist/dataset/kmnist/"],
        files: &KMNIST_FILES,
        extract: None,
    },
    Source {
        name: "cifar10",
        mirrors: &["https://www.cs.toronto.edu/~kriz/"],
        files: &CIFAR10_FILES,
        extract: Some(CifarKind::Cifar10),
    },
    Source {
        name: "cifar100",
        mirrors: &["https://www.cs.toronto.edu/~kriz/"],
        files: &CIFAR100_FILES,
        extract: Some(CifarKind::Cifar100),
    },
];

/// The source of a downloadable dataset; `None` for any other name.
pub fn source(name: &str) -> Option<&'static Source> {
    SOURCES.iter().find(|s| s.name == name)
}

/// What a download is doing, for a progress display. The library prints
/// nothing itself.
#[derive(Clone, Debug, PartialEq)]
pub enum Event<'a> {
    /// `file` is already present with the right checksum (or, for a file
    /// extracted from an archive, the right size); it is not fetched again.
    Present {
        /// File name.
        file: &'a str,
    },
    /// `file` is present but its checksum is wrong; it is fetched again and
    /// replaced only once the new copy checks out.
    Replacing {
        /// File name.
        file: &'a str,
        /// What the check found.
        reason: &'a str,
    },
    /// Fetching `file` from `url` begins.
    Start {
        /// File name.
        file: &'a str,
        /// The URL being read.
        url: &'a str,
        /// Its length in bytes, when the server says.
        total: Option<u64>,
    },
    /// `bytes` of `file` have arrived so far.
    Progress {
        /// File name.
        file: &'a str,
        /// Bytes received.
        bytes: u64,
    },
    /// Fetching from `url` failed; the next mirror, if any, is tried.
    Failed {
        /// File name.
        file: &'a str,
        /// The URL that failed.
        url: &'a str,
        /// What went wrong.
        reason: &'a str,
    },
    /// `file` arrived whole, its checksums matched, and it has its name.
    Verified {
        /// File name.
        file: &'a str,
        /// Its length in bytes.
        bytes: u64,
        /// The checksums compared, e.g. `"md5 and sha256"`.
        checked: &'static str,
    },
    /// `file` was extracted from the archive `archive`.
    Extracted {
        /// File name.
        file: &'a str,
        /// The archive's file name.
        archive: &'a str,
    },
}

/// The mirrors to use for `source`: `overrides` when given, else those in
/// `$XENT_MIRROR`, else the built-in ones.
pub fn resolve_mirrors(source: &Source, overrides: &[String]) -> Vec<String> {
    let from_env = std::env::var(MIRROR_ENV).unwrap_or_default();
    choose_mirrors(source, overrides, &from_env)
}

/// [`resolve_mirrors`] with the environment variable's value given.
fn choose_mirrors(source: &Source, overrides: &[String], from_env: &str) -> Vec<String> {
    if !overrides.is_empty() {
        return overrides.to_vec();
    }
    let listed: Vec<String> = from_env
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|m| !m.is_empty())
        .map(str::to_string)
        .collect();
    if listed.is_empty() {
        source.mirrors.iter().map(|m| m.to_string()).collect()
    } else {
        listed
    }
}

/// The URL of `file` on `mirror`: the mirror itself when it already ends in
/// the file's name, else the mirror joined with the name.
pub fn file_url(mirror: &str, file: &str) -> String {
    if mirror.ends_with(&format!("/{file}")) {
        mirror.to_string()
    } else if mirror.ends_with('/') {
        format!("{mirror}{file}")
    } else {
        format!("{mirror}/{file}")
    }
}

/// Downloads the dataset `name` into `<data_dir>/<name>/` from `mirrors`
/// (see [`resolve_mirrors`]; empty means the built-in ones), verifies it,
/// and extracts CIFAR archives. Returns the dataset folder.
///
/// # Errors
///
/// [`Error::InvalidArgument`] for a name with no download;
/// [`Error::Download`] when a file cannot be had intact from any mirror;
/// [`Error::Io`] when the folder or a file cannot be written; the errors of
/// [`extract_tar_gz`].
pub fn download(
    name: &str,
    data_dir: &Path,
    mirrors: &[String],
    on_event: &mut dyn FnMut(&Event),
) -> Result<PathBuf> {
    let Some(source) = source(name) else {
        let known: Vec<&str> = SOURCES.iter().map(|s| s.name).collect();
        let why = if name == "digits" { "; digits is built in and needs none" } else { "" };
        return Err(Error::arg(format!(
            "no download for dataset {name:?}{why} (downloadable: {})",
            known.join(", ")
        )));
    };
    check_mirrors(mirrors)?;
    let dir = data_dir.join(source.name);
    let mirrors = if mirrors.is_empty() {
        source.mirrors.iter().map(|m| m.to_string()).collect()
    } else {
        mirrors.to_vec()
    };

    // Plain files: each fetched (or found) and verified.
    let Some(kind) = source.extract else {
        for file in source.files {
            fetch(file, &mirrors, &dir, on_event)?;
        }
        return Ok(dir);
    };

    // An archive: nothing to do when the extracted files are all there.
    let wanted = kind.data_files();
    let whole = |f: &&str| {
        let expected = (kind.published_records(f) * kind.record_len()) as u64;
        fs::metadata(dir.join(f)).is_ok_and(|m| m.is_file() && m.len() == expected)
    };
    if wanted.iter().all(whole) {
        wanted.iter().for_each(|file| on_event(&Event::Present { file }));
        return Ok(dir);
    }
    let archive = &source.files[0];
    fetch(archive, &mirrors, &dir, on_event)?;
    let extracted = extract_tar_gz(&dir.join(archive.name), &dir, &wanted, kind.name_files())?;
    for file in &extracted {
        on_event(&Event::Extracted { file, archive: archive.name });
    }
    Ok(dir)
}

/// Makes `<dir>/<file.name>` a verified copy of `file`: kept when already
/// present with the right checksums, else fetched from the first of
/// `mirrors` that delivers it intact. Returns whether it was downloaded.
///
/// # Errors
///
/// [`Error::InvalidArgument`] for a mirror that is not an `http://` or
/// `https://` URL; [`Error::Download`] listing what went wrong at each
/// mirror (a transfer cut short, an HTTP error, a checksum mismatch naming
/// both checksums); [`Error::Io`] when `dir` or the file cannot be written.
pub fn fetch(
    file: &RemoteFile,
    mirrors: &[String],
    dir: &Path,
    on_event: &mut dyn FnMut(&Event),
) -> Result<bool> {
    check_mirrors(mirrors)?;
    fs::create_dir_all(dir).map_err(|e| Error::io("creating", dir, e))?;
    let target = dir.join(file.name);

    // A present file is kept when it checks out; one that does not stays
    // until a verified copy replaces it.
    let mut failed_check = false;
    if target.is_file() {
        let mut reader = File::open(&target).map_err(|e| Error::io("opening", &target, e))?;
        let digests =
            Digests::of(&mut reader, |_| {}).map_err(|e| Error::io("reading", &target, e))?;
        match digests.mismatch(file) {
            None => {
                on_event(&Event::Present { file: file.name });
                return Ok(false);
            }
            Some(reason) => {
                failed_check = true;
                on_event(&Event::Replacing { file: file.name, reason: &reason });
            }
        }
    }

    // Each mirror in turn, into a temporary file renamed only once verified.
    let mut attempts = Vec::new();
    for mirror in mirrors {
        let url = file_url(mirror, file.name);
        let temp = TempFile::new(dir, file.name);
        let reason = match get(&url, &temp.path, file.name, on_event)? {
            Err(reason) => reason,
            Ok((digests, bytes)) => match digests.mismatch(file) {
                Some(mismatch) => format!("{mismatch}; the download was discarded"),
                None => {
                    temp.keep_as(&target)?;
                    let checked = if file.sha256.is_some() { "md5 and sha256" } else { "md5" };
                    on_event(&Event::Verified { file: file.name, bytes, checked });
                    return Ok(true);
                }
            },
        };
        on_event(&Event::Failed { file: file.name, url: &url, reason: &reason });
        attempts.push(format!("{url}: {reason}"));
    }
    if attempts.is_empty() {
        attempts.push("no mirror to download from".into());
    }
    Err(Error::Download { file: file.name.into(), attempts, failed_check })
}

/// Refuses a mirror that is not an `http://` or `https://` URL before any
/// request, which would fail with the HTTP client's terse "invalid format".
fn check_mirrors(mirrors: &[String]) -> Result<()> {
    let is_http = |m: &str| {
        let lower = m.to_ascii_lowercase();
        let rest = lower.strip_prefix("https://").or_else(|| lower.strip_prefix("http://"));
        rest.is_some_and(|host| !host.is_empty() && !host.starts_with('/'))
    };
    match mirrors.iter().find(|m| !is_http(m)) {
        None => Ok(()),
        Some(mirror) => Err(Error::arg(format!(
            "mirror {mirror:?} is not an http:// or https:// URL; --mirror and {MIRROR_ENV} take \
             URLs such as https://example.org/mnist/"
        ))),
    }
}

/// Streams `url` into `temp`, hashing on the way. The outer error is local
/// (the temporary file cannot be written); the inner one is the network's
/// or the server's, worth trying another mirror for.
fn get(
    url: &str,
    temp: &Path,
    file: &str,
    on_event: &mut dyn FnMut(&Event),
) -> Result<std::result::Result<(Digests, u64), String>> {
    // Headers first: an HTTP error or a refused connection ends here.
    let mut response = match agent(url).get(url).call() {
        Ok(response) => response,
        Err(ureq::Error::StatusCode(code)) => return Ok(Err(http_status(code))),
        Err(e) => return Ok(Err(e.to_string())),
    };
    let total = response.body().content_length();
    on_event(&Event::Start { file, url, total });

    // The body, hashed as it is written; a short body is an error.
    let mut out = File::create(temp).map_err(|e| Error::io("creating", temp, e))?;
    let (mut bytes, mut written) = (0u64, Ok(()));
    let hashed = Digests::of(&mut response.body_mut().as_reader(), |chunk| {
        bytes += chunk.len() as u64;
        if written.is_ok() {
            written = out.write_all(chunk);
        }
        on_event(&Event::Progress { file, bytes });
    });
    written.map_err(|e| Error::io("writing", temp, e))?;
    let digests = match hashed {
        Ok(digests) => digests,
        Err(e) => {
            let of = total.map_or(String::new(), |t| format!(" of {t}"));
            return Ok(Err(format!("transfer failed after {bytes}{of} bytes ({e})")));
        }
    };
    if let Some(t) = total.filter(|&t| t != bytes) {
        return Ok(Err(format!("transfer ended after {bytes} of {t} bytes")));
    }
    out.sync_all().map_err(|e| Error::io("writing", temp, e))?;
    Ok(Ok((digests, bytes)))
}

/// An HTTP client with timeouts; a loopback URL bypasses any proxy, which
/// could not reach this machine's own ports.
fn agent(url: &str) -> ureq::Agent {
    let host = url.split("://").nth(1).unwrap_or(url);
    let loopback = ["127.0.0.1", "localhost", "[::1]"].iter().any(|h| {
        host.strip_prefix(h).is_some_and(|rest| rest.is_empty() || rest.starts_with([':', '/']))
    });
    let mut config = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_per_read(Some(Duration::from_secs(60)))
        .user_agent(format!("xent/{}", env!("CARGO_PKG_VERSION")));
    if loopback {
        config = config.proxy(None);
    }
    config.build().into()
}

/// "HTTP 404 (not found)" and the like.
fn http_status(code: u16) -> String {
    let meaning = match code {
        401 | 403 => " (access refused)",
        404 => " (not found)",
        500..=599 => " (server error)",
        _ => "",
    };
    format!("HTTP {code}{meaning}")
}

/// md5 and sha256 of some bytes, as lowercase hex.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Digests {
    /// md5, 32 hex digits.
    pub md5: String,
    /// sha256, 64 hex digits.
    pub sha256: String,
}

impl Digests {
    /// Digests of everything `reader` yields; `each` sees every chunk.
    ///
    /// # Errors
    ///
    /// The reader's error.
    pub fn of(reader: &mut dyn Read, mut each: impl FnMut(&[u8])) -> io::Result<Digests> {
        let (mut md5, mut sha256) = (Md5::new(), Sha256::new());
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            md5.update(&buf[..n]);
            sha256.update(&buf[..n]);
            each(&buf[..n]);
        }
        Ok(Digests { md5: hex(&md5.finalize()), sha256: hex(&sha256.finalize()) })
    }

    /// Why these digests are not those of `file`, or `None` when they are.
    fn mismatch(&self, file: &RemoteFile) -> Option<String> {
        if self.md5 != file.md5 {
            return Some(format!(
                "checksum mismatch: expected md5 {}, found md5 {}",
                file.md5, self.md5
            ));
        }
        match file.sha256 {
            Some(want) if want != self.sha256 => Some(format!(
                "checksum mismatch: expected sha256 {want}, found sha256 {}",
                self.sha256
            )),
            _ => None,
        }
    }
}

/// Lowercase hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A hidden file beside the final one, removed when dropped unless it was
/// renamed into place.
struct TempFile {
    path: PathBuf,
    kept: bool,
}

impl TempFile {
    /// `<dir>/.<name>.<pid>.part`; the process id keeps two concurrent
    /// downloads apart.
    fn new(dir: &Path, name: &str) -> TempFile {
        let path = dir.join(format!(".{name}.{}.part", std::process::id()));
        TempFile { path, kept: false }
    }

    /// Renames the file to `target`, replacing any file there at once.
    fn keep_as(mut self, target: &Path) -> Result<()> {
        fs::rename(&self.path, target).map_err(|e| Error::io("renaming into", target, e))?;
        self.kept = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.kept {
            // Nothing to do when it was never created.
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Extracts from the gzip tar `archive` into `dest` the regular files named
/// in `wanted` (all required) and `optional`, wherever they sit in the
/// archive. Only the file name of an entry is used, never its path, so an
/// archive cannot write outside `dest`. Each file is written under a
/// temporary name; all are renamed into place once every wanted file was
/// read whole. Returns the names extracted.
///
/// # Errors
///
/// [`Error::InvalidData`] when the archive is corrupt or cut short, or lacks
/// a wanted file; [`Error::Io`] when a file cannot be written. No extracted
/// file is left behind on error.
pub fn extract_tar_gz(
    archive: &Path,
    dest: &Path,
    wanted: &[&str],
    optional: &[&str],
) -> Result<Vec<String>> {
    let corrupt =
        |e: io::Error| Error::invalid(archive, format!("archive is corrupt or cut short ({e})"));
    let file = File::open(archive).map_err(|e| Error::io("opening", archive, e))?;
    let mut tar = tar::Archive::new(GzDecoder::new(io::BufReader::new(file)));

    // Copy each wanted regular file to a temporary name, first copy wins.
    let mut found: Vec<(String, TempFile)> = Vec::new();
    for entry in tar.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        let path = entry.path().map_err(corrupt)?.into_owned();
        let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_string) else {
            continue;
        };
        let listed = wanted.contains(&name.as_str()) || optional.contains(&name.as_str());
        if !listed || !entry.header().entry_type().is_file() || found.iter().any(|f| f.0 == name) {
            continue;
        }
        let temp = TempFile::new(dest, &name);
        let mut out = File::create(&temp.path).map_err(|e| Error::io("creating", &temp.path, e))?;
        io::copy(&mut entry, &mut out).map_err(corrupt)?;
        out.sync_all().map_err(|e| Error::io("writing", &temp.path, e))?;
        found.push((name, temp));
    }

    // All wanted files or none.
    let missing: Vec<&str> =
        wanted.iter().copied().filter(|w| !found.iter().any(|f| f.0 == *w)).collect();
    if !missing.is_empty() {
        return Err(Error::invalid(
            archive,
            format!("archive holds no {}; nothing was extracted", missing.join(", ")),
        ));
    }
    let mut names = Vec::with_capacity(found.len());
    for (name, temp) in found {
        temp.keep_as(&dest.join(&name))?;
        names.push(name);
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use flate2::Compression;

    /// A gzip tar holding `entries` as regular files (or a directory when the
    /// contents are `None`), names written as given, `..` included.
    fn tar_gz(entries: &[(&str, Option<&[u8]>)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
        for (path, contents) in entries {
            let mut header = tar::Header::new_gnu();
            let name = &mut header.as_gnu_mut().expect("a GNU header").name;
            name[..path.len()].copy_from_slice(path.as_bytes());
            let (kind, mode, bytes) = match contents {
                Some(bytes) => (tar::EntryType::Regular, 0o644, *bytes),
                None => (tar::EntryType::Directory, 0o755, &[][..]),
            };
            header.set_entry_type(kind);
            header.set_mode(mode);
            header.set_size(bytes.len() as u64);
            header.set_cksum();
            builder.append(&header, bytes).expect("in memory");
        }
        builder.into_inner().expect("in memory").finish().expect("in memory")
    }

    fn names_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .expect("readable")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn extracts_wanted_files_by_name_only() {
        let dir = tempfile::tempdir().expect("temp dir");
        let archive = dir.path().join("cifar-like.tar.gz");
        let record = [3u8; 3073];
        fs::write(
            &archive,
            tar_gz(&[
                ("cifar-10-batches-bin", None),
                ("cifar-10-batches-bin/data_batch_1.bin", Some(&record)),
                ("cifar-10-batches-bin/readme.html", Some(b"<p>")),
                ("cifar-10-batches-bin/batches.meta.txt", Some(b"a\nb\n")),
                ("../../test_batch.bin", Some(&record[..10])),
            ]),
        )
        .expect("writable");
        let out = dir.path().join("out");
        fs::create_dir(&out).expect("writable");

        let wanted = ["data_batch_1.bin", "test_batch.bin"];
        let optional = ["batches.meta.txt", "fine_label_names.txt"];
        let names = extract_tar_gz(&archive, &out, &wanted, &optional).expect("valid archive");
        assert_eq!(names, vec!["data_batch_1.bin", "batches.meta.txt", "test_batch.bin"]);
        assert_eq!(names_in(&out), vec!["batches.meta.txt", "data_batch_1.bin", "test_batch.bin"]);
        assert_eq!(fs::read(out.join("data_batch_1.bin")).expect("extracted"), record);
        assert_eq!(fs::read(out.join("test_batch.bin")).expect("extracted").len(), 10);
    }

    #[test]
    fn a_missing_or_corrupt_archive_leaves_nothing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let archive = dir.path().join("a.tar.gz");
        let out = dir.path().join("out");
        fs::create_dir(&out).expect("writable");
        fs::write(&archive, tar_gz(&[("x/train.bin", Some(&[1, 2, 3]))])).expect("writable");

        let err = extract_tar_gz(&archive, &out, &["train.bin", "test.bin"], &[]).unwrap_err();
        assert!(err.to_string().contains("archive holds no test.bin"), "{err}");
        assert!(names_in(&out).is_empty(), "{:?}", names_in(&out));

        let mut bytes = tar_gz(&[("train.bin", Some(&[7; 5000]))]);
        bytes.truncate(bytes.len() / 2);
        fs::write(&archive, bytes).expect("writable");
        let err = extract_tar_gz(&archive, &out, &["train.bin"], &[]).unwrap_err();
        assert!(err.to_string().contains("corrupt or cut short"), "{err}");
        assert!(names_in(&out).is_empty(), "{:?}", names_in(&out));
    }

    #[test]
    fn mirrors_and_urls() {
        let mnist = source("mnist").expect("known");
        let given = vec!["http://a/".to_string()];
        assert_eq!(choose_mirrors(mnist, &given, "http://b/"), given);
        assert_eq!(choose_mirrors(mnist, &[], "http://b/, http://c/"), ["http://b/", "http://c/"]);
        assert_eq!(choose_mirrors(mnist, &[], " ")[0], mnist.mirrors[0]);
        assert_eq!(file_url("http://a/x", "f.gz"), "http://a/x/f.gz");
        assert_eq!(file_url("http://a/x/", "f.gz"), "http://a/x/f.gz");
        assert_eq!(file_url("http://a/x/f.gz", "f.gz"), "http://a/x/f.gz");
        assert!(source("digits").is_none());
    }

    #[test]
    fn digests_are_the_published_kind() {
        // md5("") and sha256("") are well known.
        let d = Digests::of(&mut io::empty(), |_| {}).expect("in memory");
        assert_eq!(d.md5, "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(d.sha256, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        let file = md5_only("f", "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(d.mismatch(&file), None);
        let other = md5_only("f", "00000000000000000000000000000000");
        let msg = d.mismatch(&other).expect("differs");
        assert!(msg.contains("expected md5 0000"), "{msg}");
        assert!(msg.contains("found md5 d41d8cd98f00b204e9800998ecf8427e"), "{msg}");
    }
}
