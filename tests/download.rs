//! Dataset downloads against a small HTTP/1.1 server on 127.0.0.1 started by
//! each test, serving the real MNIST files from `$XENT_DATA/mnist` (skipped,
//! with a note, when absent): a whole download checked and read, a corrupt
//! copy and a dropped connection refused with nothing kept, a fallback after
//! a 404, files already present not fetched again, and `xent train
//! --download`.

use std::fs;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use xent::data::{self, Event, IDX_FILES};
use xent::Error;

/// What the server does to the files it serves.
#[derive(Clone, Copy, PartialEq)]
enum Fault {
    /// Serves them as they are.
    None,
    /// Flips the bits of the middle byte, same length.
    Corrupt,
    /// Announces the full length, sends half, and closes the connection.
    Drop,
}

/// A server of the files in one folder at `base`; `/<name>` is the file,
/// anything else a 404. It logs every path asked for.
struct Server {
    base: String,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn start(dir: &Path, fault: Fault) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free local port");
        let base = format!("http://{}/", listener.local_addr().expect("bound"));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (dir, log) = (dir.to_path_buf(), Arc::clone(&requests));
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                // A client that hangs up early is its own business.
                let _ = respond(stream, &dir, fault, &log);
            }
        });
        Server { base, requests }
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().expect("not poisoned").clone()
    }
}

/// Answers one request and closes the connection.
fn respond(
    mut stream: TcpStream,
    dir: &Path,
    fault: Fault,
    log: &Mutex<Vec<String>>,
) -> io::Result<()> {
    // The request line, then headers up to the blank line.
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header == "\r\n" {
            break;
        }
    }
    let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
    log.lock().expect("not poisoned").push(path.clone());

    // A file directly in the folder, or 404.
    let name = path.trim_start_matches('/');
    let found = if name.contains('/') { None } else { fs::read(dir.join(name)).ok() };
    let Some(mut body) = found else {
        let text = b"not found";
        write!(stream, "HTTP/1.1 404 Not Found\r\nContent-Length: {}\r\n", text.len())?;
        write!(stream, "Connection: close\r\n\r\n")?;
        return stream.write_all(text);
    };
    let len = body.len();
    match fault {
        Fault::None => {}
        Fault::Corrupt => body[len / 2] ^= 0xff,
        Fault::Drop => body.truncate(len / 2),
    }
    write!(stream, "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n")?;
    write!(stream, "Content-Length: {len}\r\nConnection: close\r\n\r\n")?;
    stream.write_all(&body)?;
    stream.flush()
}

/// `$XENT_DATA/mnist` when it holds the four gzip files.
fn mnist_files() -> Option<PathBuf> {
    let dir = PathBuf::from(std::env::var_os("XENT_DATA")?).join("mnist");
    IDX_FILES.iter().all(|f| dir.join(format!("{f}.gz")).is_file()).then_some(dir)
}

macro_rules! mnist_or_skip {
    () => {
        match mnist_files() {
            Some(dir) => dir,
            None => {
                println!("skipped: set XENT_DATA to a folder holding mnist/*.gz to run this test");
                return;
            }
        }
    };
}

/// The MNIST label file, the smallest to fetch.
fn labels_file() -> &'static data::RemoteFile {
    let source = data::source("mnist").expect("mnist is downloadable");
    source.files.iter().find(|f| f.name == "train-labels-idx1-ubyte.gz").expect("listed")
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|entries| entries.map(|e| e.unwrap().file_name().to_string_lossy().into()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

fn xent(args: &[&str], data_dir: &Path, mirror: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xent"))
        .args(args)
        .env("XENT_DATA", data_dir)
        .env("XENT_MIRROR", mirror)
        .output()
        .expect("the xent binary runs")
}

#[test]
fn download_fetches_verifies_and_the_loader_reads_mnist() {
    let mnist = mnist_or_skip!();
    let server = Server::start(&mnist, Fault::None);
    let root = tempfile::tempdir().unwrap();

    // The whole command, mirrors from XENT_MIRROR, into $XENT_DATA/mnist.
    let out = xent(&["data", "download", "mnist"], root.path(), &server.base);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout.matches("md5 and sha256 verified").count(), 4, "{stdout}");
    assert_eq!(server.requests().len(), 4);

    // The very bytes, no temporary file left, and the loader reads them.
    let dir = root.path().join("mnist");
    let mut want: Vec<String> = IDX_FILES.iter().map(|f| format!("{f}.gz")).collect();
    want.sort();
    assert_eq!(names_in(&dir), want);
    for name in &want {
        assert_eq!(fs::read(dir.join(name)).unwrap(), fs::read(mnist.join(name)).unwrap());
    }
    let split = data::load_from("mnist", root.path()).expect("downloaded MNIST reads");
    assert_eq!((split.train.len(), split.test.len()), (60_000, 10_000));

    // A second run finds everything and fetches nothing.
    let again = xent(&["data", "download", "mnist"], root.path(), &server.base);
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(again.status.success());
    assert_eq!(stdout.matches("already present and verified").count(), 4, "{stdout}");
    assert_eq!(server.requests().len(), 4);
}

#[test]
fn present_files_are_not_downloaded_again_but_a_damaged_one_is() {
    let mnist = mnist_or_skip!();
    let server = Server::start(&mnist, Fault::None);
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("mnist");
    fs::create_dir(&dir).unwrap();
    for f in IDX_FILES {
        fs::copy(mnist.join(format!("{f}.gz")), dir.join(format!("{f}.gz"))).unwrap();
    }

    // Intact copies: four Present events and no request at all.
    let mut events = Vec::new();
    let mirrors = vec![server.base.clone()];
    data::download("mnist", root.path(), &mirrors, &mut |e| events.push(format!("{e:?}")))
        .expect("nothing to fetch");
    assert_eq!(events.iter().filter(|e| e.starts_with("Present")).count(), 4, "{events:?}");
    assert!(server.requests().is_empty(), "{:?}", server.requests());

    // A damaged copy is fetched again and replaced by a verified one.
    let target = dir.join("train-labels-idx1-ubyte.gz");
    fs::write(&target, b"damaged").unwrap();
    let mut events = Vec::new();
    let fetched = data::fetch(labels_file(), &mirrors, &dir, &mut |e| {
        events.push(format!("{e:?}"));
    })
    .expect("the mirror has it");
    assert!(fetched);
    assert!(events[0].starts_with("Replacing"), "{events:?}");
    assert!(events[0].contains("expected md5 d53e105ee54ea40749a09fcbcd1e9432"), "{events:?}");
    assert_eq!(
        fs::read(&target).unwrap(),
        fs::read(mnist.join("train-labels-idx1-ubyte.gz")).unwrap()
    );
    assert_eq!(server.requests(), ["/train-labels-idx1-ubyte.gz"]);
}

#[test]
fn a_checksum_mismatch_keeps_nothing() {
    let mnist = mnist_or_skip!();
    let server = Server::start(&mnist, Fault::Corrupt);
    let dir = tempfile::tempdir().unwrap();

    let err =
        data::fetch(labels_file(), std::slice::from_ref(&server.base), dir.path(), &mut |_| {})
            .expect_err("the copy is corrupt");
    let msg = err.to_string();
    assert!(matches!(err, Error::Download { .. }), "{msg}");
    assert!(msg.starts_with("downloading train-labels-idx1-ubyte.gz: "), "{msg}");
    assert!(msg.contains("expected md5 d53e105ee54ea40749a09fcbcd1e9432, found md5 "), "{msg}");
    assert!(err.hint().is_some_and(|h| h.contains("--mirror")));
    assert!(names_in(dir.path()).is_empty(), "{:?}", names_in(dir.path()));
}

#[test]
fn a_failed_download_over_a_damaged_copy_says_the_copy_is_still_there() {
    let mnist = mnist_or_skip!();
    let server = Server::start(&mnist, Fault::Corrupt);
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("train-labels-idx1-ubyte.gz");
    fs::write(&target, b"damaged").unwrap();

    let err =
        data::fetch(labels_file(), std::slice::from_ref(&server.base), dir.path(), &mut |_| {})
            .expect_err("the copy is corrupt");
    assert!(matches!(err, Error::Download { failed_check: true, .. }), "{err}");
    let hint = err.hint().expect("a hint");
    assert!(!hint.contains("nothing was kept"), "{hint}");
    let want =
        "the train-labels-idx1-ubyte.gz already there failed its checksum and is left as it was";
    assert!(hint.contains(want) && hint.contains("--mirror"), "{hint}");
    assert_eq!(fs::read(&target).unwrap(), b"damaged");
    assert_eq!(names_in(dir.path()), ["train-labels-idx1-ubyte.gz"]);
}

#[test]
fn a_mirror_must_be_an_http_url() {
    let root = tempfile::tempdir().unwrap();
    let data_dir = root.path().join("data");
    let download = ["data", "download", "mnist", "--data-dir", data_dir.to_str().unwrap()];
    for (mirror, from_env) in
        [("notaurl", false), ("file:///tmp/mnist/", false), ("ftp://example.org/", true)]
    {
        let out = match from_env {
            false => xent(&[&download[..], &["--mirror", mirror]].concat(), root.path(), ""),
            true => xent(&download, root.path(), mirror),
        };
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{mirror}: {stderr}");
        let want = format!("mirror {mirror:?} is not an http:// or https:// URL");
        assert!(stderr.contains(&want), "{stderr}");
        assert!(!stderr.contains("invalid format"), "{stderr}");
    }
    assert!(!data_dir.exists(), "nothing is written for a bad mirror");

    // The library refuses it too, before any request.
    let err = data::fetch(labels_file(), &["localhost:8000".into()], root.path(), &mut |_| {})
        .expect_err("not a URL");
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
}

#[test]
fn a_dropped_connection_keeps_nothing() {
    let mnist = mnist_or_skip!();
    let server = Server::start(&mnist, Fault::Drop);
    let dir = tempfile::tempdir().unwrap();

    let err =
        data::fetch(labels_file(), std::slice::from_ref(&server.base), dir.path(), &mut |_| {})
            .expect_err("the connection drops halfway");
    let msg = err.to_string();
    assert!(msg.starts_with("downloading train-labels-idx1-ubyte.gz: "), "{msg}");
    assert!(msg.contains(" of 28881 bytes"), "{msg}");
    assert!(names_in(dir.path()).is_empty(), "{:?}", names_in(dir.path()));
}

#[test]
fn a_404_falls_back_to_the_next_mirror() {
    let mnist = mnist_or_skip!();
    let server = Server::start(&mnist, Fault::None);
    let dir = tempfile::tempdir().unwrap();

    let mirrors = vec![format!("{}missing/", server.base), server.base.clone()];
    let mut events = Vec::new();
    let fetched = data::fetch(labels_file(), &mirrors, dir.path(), &mut |e| {
        if !matches!(e, Event::Progress { .. }) {
            events.push(format!("{e:?}"));
        }
    })
    .expect("the second mirror has it");
    assert!(fetched);
    assert!(events[0].contains("HTTP 404"), "{events:?}");
    assert!(events.last().unwrap().starts_with("Verified"), "{events:?}");
    let want = ["/missing/train-labels-idx1-ubyte.gz", "/train-labels-idx1-ubyte.gz"];
    assert_eq!(server.requests(), want);
    assert_eq!(names_in(dir.path()), ["train-labels-idx1-ubyte.gz"]);
}

#[test]
fn train_names_the_download_command_and_download_fetches_first() {
    let mnist = mnist_or_skip!();
    let server = Server::start(&mnist, Fault::None);
    let root = tempfile::tempdir().unwrap();
    let run = root.path().join("run");
    let run = run.to_str().unwrap();

    // Missing files: the hint names the command that fetches them.
    let out = xent(&["train", "--dataset", "mnist", "--out", run], root.path(), &server.base);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("hint: run `xent data download mnist`"), "{stderr}");
    assert!(server.requests().is_empty());

    // --download fetches them, then trains.
    let args = ["train", "--dataset", "mnist", "--download", "--model", "linear"];
    let rest = ["--epochs", "1", "--batch-size", "1000", "--quiet", "--out", run];
    let out = xent(&[&args[..], &rest[..]].concat(), root.path(), &server.base);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout.matches("md5 and sha256 verified").count(), 4, "{stdout}");
    assert!(stdout.contains("done   test acc"), "{stdout}");
}
