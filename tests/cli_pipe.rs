//! The `xent` binary writing into a pipe whose reader stops early, as in
//! `xent predict ... | head -2` or `xent train | grep -m1 eval`: every
//! command ends quietly, with no panic and no backtrace.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};

/// Runs xent with stdout a pipe whose reader takes `lines` lines and then
/// closes it; returns how xent ended and its stderr.
fn closed_early(args: &[&str], lines: usize) -> (ExitStatus, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_xent"))
        .args(args)
        .env("XENT_DATA", "/nonexistent-xent-data")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the xent binary runs");
    let mut reader = BufReader::new(child.stdout.take().expect("stdout is piped"));
    for _ in 0..lines {
        let mut line = String::new();
        reader.read_line(&mut line).expect("xent writes lines");
    }
    drop(reader);
    let out = child.wait_with_output().expect("xent ends");
    (out.status, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Ends quietly: no panic message, not Rust's panic exit code 101.
fn assert_quiet(args: &[&str], lines: usize) -> ExitStatus {
    let (status, stderr) = closed_early(args, lines);
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    assert!(!stderr.contains("Broken pipe"), "{args:?}: {stderr}");
    assert_ne!(status.code(), Some(101), "{args:?}: {stderr}");
    status
}

/// A pixel CSV of `rows` 8×8 images, each a diagonal stroke.
fn csv_rows(path: &Path, rows: usize) {
    let header: Vec<String> = (0..64).map(|i| format!("pixel{i}")).collect();
    let row: Vec<&str> = (0..64).map(|i| if i % 9 == 0 { "16" } else { "0" }).collect();
    let mut text = header.join(",") + "\n";
    for _ in 0..rows {
        text += &row.join(",");
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

#[test]
fn every_command_ends_quietly_when_stdout_closes() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let run = run.to_str().unwrap();
    let trained = Command::new(env!("CARGO_BIN_EXE_xent"))
        .args(["train", "--epochs", "1", "--quiet", "--out", run])
        .output()
        .unwrap();
    assert!(trained.status.success(), "{}", String::from_utf8_lossy(&trained.stderr));

    // `train | grep -m1 eval`: thousands of step lines, far more than a pipe
    // holds, so xent is still writing when the reader goes.
    let long = dir.path().join("long");
    let args = ["train", "--batch-size", "1", "--epochs", "3", "--log-every", "1", "--out"];
    let status = assert_quiet(&[&args[..], &[long.to_str().unwrap()]].concat(), 4);
    assert!(!status.success(), "the run ends with its reader, not after three epochs");
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGPIPE), "ends as `head` expects");
    }

    // `predict | head -2` on 5,000 CSV rows, then the other commands with a
    // reader that is gone before they print anything.
    let csv = dir.path().join("rows.csv");
    csv_rows(&csv, 5000);
    assert_quiet(&["predict", "--model", run, csv.to_str().unwrap()], 2);
    assert_quiet(&["predict", "--model", run, "--json", csv.to_str().unwrap()], 0);
    assert_quiet(&["eval", "--model", run], 0);
    assert_quiet(&["explain", "--logits", "2,1,0.1;0.5,2.5,0.3", "--targets", "0,1"], 0);
    assert_quiet(&["data", "inspect", "digits"], 0);
    assert_quiet(&["train", "--epochs", "1", "--out", dir.path().join("r2").to_str().unwrap()], 0);
}
