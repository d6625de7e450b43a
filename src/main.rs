//! The `xent` command: parses arguments, calls the library, and turns errors
//! into one clear message and an exit code: 0 success, 1 a failed run (files,
//! data, divergence), 2 bad usage (an option's value, a model spec).

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    restore_sigpipe();
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let mut shown = err.to_string();
            eprintln!("error: {shown}");
            let mut source = std::error::Error::source(&err);
            while let Some(cause) = source {
                // Decoders often repeat their cause inside their own message.
                let text = cause.to_string().split_whitespace().collect::<Vec<_>>().join(" ");
                if !shown.contains(&text) {
                    eprintln!("caused by: {text}");
                }
                shown = text;
                source = cause.source();
            }
            if let Some(hint) = err.hint() {
                eprintln!("hint: {hint}");
            }
            ExitCode::from(exit_code(&err))
        }
    }
}

/// Ends the process quietly when stdout is a pipe that closes early
/// (`xent predict … | head -2`), as `head` and `grep` expect of a Unix tool.
/// Rust ignores SIGPIPE, so every write to the closed pipe would fail and
/// `println!` would panic, in whichever thread prints; the default action
/// ends the whole process at the first such write instead.
#[cfg(unix)]
fn restore_sigpipe() {
    // SAFETY: `signal` with SIG_DFL installs no handler, so no Rust code runs
    // from the signal; it is called first in `main`, before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Elsewhere a closed stdout is not a signal; nothing to restore.
#[cfg(not(unix))]
fn restore_sigpipe() {}

/// 2 for a value the user typed that xent cannot use, 1 for everything else.
fn exit_code(err: &xent::Error) -> u8 {
    use xent::Error;
    match err {
        Error::InvalidArgument(_)
        | Error::Spec { .. }
        | Error::UnknownDataset { .. }
        | Error::NoTestSplit { .. } => 2,
        _ => 1,
    }
}
