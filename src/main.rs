//! The `xent` command line: parses arguments, calls the library, and turns
//! errors into messages and exit codes (0 success, 1 failure, 2 bad usage).

mod cli {
    pub mod explain;
}

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Train, evaluate and run image classifiers on the CPU.
#[derive(Parser, Debug)]
#[command(name = "xent", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Show a cross-entropy step by step: softmax, loss, reduction, gradient
    Explain(cli::explain::ExplainArgs),
}

fn main() -> ExitCode {
    // Usage errors print clap's message and exit with 2.
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Explain(args) => cli::explain::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            report(&err);
            ExitCode::FAILURE
        }
    }
}

/// `error:`, one `caused by:` per source, and a `hint:` where one is known,
/// all on stderr.
fn report(err: &xent::Error) {
    eprintln!("error: {err}");
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        eprintln!("caused by: {cause}");
        source = cause.source();
    }
    if let Some(hint) = err.hint() {
        eprintln!("hint: {hint}");
    }
}
