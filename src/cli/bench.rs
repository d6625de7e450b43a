//! `xent bench`: the standard workloads at each thread count, the machine's
//! ceiling, and optionally a per-layer profile.

use clap::Args;
use xent::bench::{self, Budget, WORKLOADS};
use xent::{Error, Result};

/// Options of `xent bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Thread counts to run at, comma-separated.
    #[arg(long, default_value = "2,1", value_delimiter = ',')]
    threads: Vec<usize>,
    /// Workloads to run (W1, W2, W3s, W3), comma-separated [default: all].
    #[arg(long, value_delimiter = ',')]
    workload: Vec<String>,
    /// Seconds of training steps timed per workload.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Also print each layer's forward and backward time.
    #[arg(long)]
    profile: bool,
    /// One JSON object per line: the ceiling, then one per workload and thread count.
    #[arg(long)]
    json: bool,
}

/// Runs `xent bench`.
pub fn run(args: &BenchArgs) -> Result<()> {
    let chosen: Vec<_> = WORKLOADS
        .iter()
        .filter(|w| args.workload.is_empty() || args.workload.iter().any(|n| n == w.name))
        .collect();
    if chosen.is_empty() {
        return Err(Error::arg(format!(
            "no workload among {:?} (known: W1, W2, W3s, W3)",
            args.workload
        )));
    }
    if args.seconds.is_nan() || args.seconds <= 0.0 {
        return Err(Error::arg(format!("--seconds must be > 0, found {}", args.seconds)));
    }
    let budget = Budget { train_seconds: args.seconds, ..Budget::default() };

    for &threads in &args.threads {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .map_err(|e| Error::arg(format!("cannot start {threads} threads: {e}")))?;
        pool.install(|| run_at(&chosen, &budget, args))?;
    }
    Ok(())
}

fn run_at(chosen: &[&bench::Workload], budget: &Budget, args: &BenchArgs) -> Result<()> {
    // The ceiling first, so every rate below can be read against it.
    let ceiling = bench::ceiling();
    if args.json {
        println!("{}", serde_json::json!({ "ceiling": ceiling }));
    } else {
        println!(
            "threads {} | ceiling: fma peak {:.0} GFLOP/s, gemm 1024³ {:.0} GFLOP/s",
            ceiling.threads, ceiling.fma_peak_gflops, ceiling.gemm_gflops
        );
        println!(
            "  {:<4} {:>12} {:>8} {:>7} {:>12} {:>14}",
            "", "train img/s", "GFLOP/s", "% peak", "b1 latency", "b256 img/s"
        );
    }

    for workload in chosen {
        let result = bench::run_workload(workload, budget)?;
        if args.json {
            println!("{}", serde_json::to_string(&result).expect("plain data"));
        } else {
            let latency = result.infer_b1_latency_ms.map_or("-".into(), |ms| format!("{ms:.3} ms"));
            let throughput =
                result.infer_b256_images_per_second.map_or("-".into(), |r| format!("{r:.0}"));
            println!(
                "  {:<4} {:>12.0} {:>8.1} {:>6.1}% {:>12} {:>14}",
                result.workload,
                result.train_images_per_second,
                result.train_gflops,
                100.0 * result.train_gflops / ceiling.fma_peak_gflops,
                latency,
                throughput
            );
        }
        if args.profile {
            print_profile(workload, args.json)?;
        }
    }
    Ok(())
}

fn print_profile(workload: &bench::Workload, json: bool) -> Result<()> {
    let profile = bench::profile(workload, 20)?;
    for row in &profile.layers {
        if json {
            let line = serde_json::json!({ "workload": workload.name, "profile": row });
            println!("{line}");
        } else {
            let gflops =
                if row.gflops > 0.0 { format!("{:.1} GFLOP/s", row.gflops) } else { String::new() };
            println!(
                "       {:>2} {:<28} fwd {:>7.3} ms  bwd {:>7.3} ms  {gflops}",
                row.index, row.layer, row.forward_ms, row.backward_ms
            );
        }
    }
    if json {
        let line = serde_json::json!({
            "workload": workload.name,
            "step_ms": profile.step_ms,
            "outside_layers_ms": profile.outside_layers_ms,
        });
        println!("{line}");
    } else {
        println!(
            "          step {:.3} ms, of which {:.3} ms outside the layers (zero_grad, loss, \
             optimizer)",
            profile.step_ms, profile.outside_layers_ms
        );
    }
    Ok(())
}
