//! Benchmark: inspecting a generated cache of 100,000 entries (goal: under 2 seconds).
//!
//! `cargo bench -p neuron-cache` generates the tree in a temporary folder on local disk (set
//! `NEURON_CACHE_BENCH_DIR` to put it elsewhere, `NEURON_CACHE_BENCH_ENTRIES` to change the
//! count), then times `inspect` three times and prints the figures. With
//! `NEURON_CACHE_BENCH_ROOT=DIR` it inspects that existing tree instead (to compare with
//! `du -sb DIR` on the same tree, warm). `NEURON_CACHE_BENCH_THREADS=N` sets the worker threads
//! (default: the library's choice). The first run follows the
//! generation, so the kernel's caches are warm in all runs; on a freshly mounted Lustre file
//! system the first inspection will be slower.

#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use neuron_cache::{InspectOptions, State};

fn main() {
    let count: usize = std::env::var("NEURON_CACHE_BENCH_ENTRIES")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(100_000);
    let existing = std::env::var_os("NEURON_CACHE_BENCH_ROOT").map(std::path::PathBuf::from);
    let parent = std::env::var_os("NEURON_CACHE_BENCH_DIR").map(std::path::PathBuf::from);
    let directory = match &parent {
        Some(parent) => tempfile::tempdir_in(parent),
        None => tempfile::tempdir(),
    }
    .expect("a temporary folder for the generated cache");
    let root = existing.as_deref().unwrap_or(directory.path());
    let count = match &existing {
        Some(_) => {
            neuron_cache::inspect(root, &InspectOptions::default())
                .expect("inspect the given tree")
                .summary
                .entries
        }
        None => {
            let start = Instant::now();
            neuron_cache::sample::generate(root, count).expect("generate the sample cache");
            println!(
                "generated {count} entries in {:.2} s under {}",
                start.elapsed().as_secs_f64(),
                root.display()
            );
            count
        }
    };

    let options = InspectOptions {
        stale_after: Duration::from_secs(3600),
        threads: std::env::var("NEURON_CACHE_BENCH_THREADS")
            .ok()
            .and_then(|value| value.parse().ok())
            .unwrap_or(0),
        ..InspectOptions::default()
    };
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let mut best = f64::MAX;
    for run in 1..=3 {
        let cpu_before = cpu_seconds();
        let start = Instant::now();
        let report = neuron_cache::inspect(root, &options).expect("inspect the generated cache");
        let seconds = start.elapsed().as_secs_f64();
        let cpu = cpu_seconds()
            .zip(cpu_before)
            .map(|(after, before)| after - before);
        best = best.min(seconds);
        assert_eq!(
            report.summary.entries, count,
            "every generated entry is found"
        );
        println!(
            "inspect run {run}: {seconds:.3} s wall, {} CPU, for {} entries ({:.0} entries/s, {threads} cores; complete {}, failed {}, locked {}, incomplete {})",
            cpu.map_or("? s".to_owned(), |cpu| format!("{cpu:.3} s")),
            report.summary.entries,
            report.summary.entries as f64 / seconds,
            report.summary.count(State::Complete),
            report.summary.count(State::Failed),
            report.summary.count(State::Locked) + report.summary.count(State::StaleLock),
            report.summary.count(State::Incomplete),
        );
    }
    println!("best: {best:.3} s for {count} entries (goal: < 2 s)");
    let quick = InspectOptions {
        sizes: false,
        ..options.clone()
    };
    let cpu_before = cpu_seconds();
    let start = Instant::now();
    let report = neuron_cache::inspect(root, &quick).expect("inspect the generated cache");
    let seconds = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds()
        .zip(cpu_before)
        .map(|(after, before)| after - before);
    assert_eq!(report.summary.entries, count);
    println!(
        "inspect without sizes (--no-sizes): {seconds:.3} s wall, {} CPU",
        cpu.map_or("? s".to_owned(), |cpu| format!("{cpu:.3} s"))
    );
    println!(
        "load average: {}",
        fs_err::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
}

/// User plus system CPU time of this process so far (Linux `/proc/self/stat`), so the figure can
/// be read on a busy machine: wall time includes waiting for the CPU, CPU time does not.
fn cpu_seconds() -> Option<f64> {
    let stat = fs_err::read_to_string("/proc/self/stat").ok()?;
    let after_name = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 and 15 of proc(5) (utime, stime) are at 11 and 12 after the name.
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}
