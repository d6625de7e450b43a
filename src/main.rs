//! The `xent` command: parses arguments, calls the library, and turns errors
//! into one clear message and an exit code: 0 success, 1 a failed run (files,
//! data, divergence), 2 bad usage (an option's value, a model spec).

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
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

/// 2 for a value the user typed that xent cannot use, 1 for everything else.
fn exit_code(err: &xent::Error) -> u8 {
    use xent::Error;
    match err {
        Error::InvalidArgument(_) | Error::Spec { .. } | Error::UnknownDataset { .. } => 2,
        _ => 1,
    }
}
