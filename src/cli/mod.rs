//! Command-line interface: the subcommands and their arguments.

mod bench;
mod data;
mod download;
mod eval;
mod explain;
mod predict;
mod train;

use clap::{Parser, Subcommand};

/// Train, evaluate and run image classifiers on the CPU.
#[derive(Debug, Parser)]
#[command(name = "xent", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Train a classifier and write a run folder (model, config, metrics).
    Train(train::TrainArgs),
    /// Evaluate a model file: loss, top-1/top-5 accuracy, confusion matrix.
    Eval(eval::EvalArgs),
    /// Classify PNG or JPEG images with a model file.
    Predict(predict::PredictArgs),
    /// Show softmax and cross-entropy step by step for given logits.
    Explain(explain::ExplainArgs),
    /// Time the standard workloads: training and inference throughput, GFLOP/s.
    Bench(bench::BenchArgs),
    /// Dataset commands: `inspect` audits a dataset, `download` fetches one.
    Data {
        #[command(subcommand)]
        command: data::DataCommand,
    },
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> xent::Result<()> {
    match cli.command {
        Command::Train(args) => train::run(&args),
        Command::Eval(args) => eval::run(&args),
        Command::Predict(args) => predict::run(&args),
        Command::Explain(args) => explain::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::Data { command } => data::run(&command),
    }
}

/// Formats a fraction as a percentage with two decimals, e.g. `98.62%`.
fn percent(fraction: f64) -> String {
    format!("{:.2}%", 100.0 * fraction)
}

/// `421642` as `421,642`.
fn thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}
