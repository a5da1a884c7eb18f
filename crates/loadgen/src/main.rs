//! `rentify-loadgen`: the closed-loop HTTP load generator behind
//! `scripts/bench.sh`.
//!
//! A small purpose-built tool rather than wrk or oha so that the benchmarks
//! need nothing beyond the workspace (no package to install on CI or a fresh
//! machine), can template per-request values such as `Idempotency-Key`, and
//! print one JSON object per scenario that later runs can be compared with.
//!
//! Exit status: 0 when at least one request succeeded, 1 when every request
//! failed (a transport error or a status of 400 or above), 2 for bad
//! arguments.
//!
//! `rentify-loadgen ledger …` is the other mode: no HTTP, the ledger
//! settlement workload straight against PostgreSQL (see `ledger.rs`); exit
//! status 1 when a transaction failed or the ledger checks after the run did.
//!
//! `rentify-loadgen events …`: no HTTP either, domain events produced into the
//! outbox at a fixed rate and handled by the event consumers' runtime,
//! in-process or on NATS JetStream (see `events.rs`): throughput and lag;
//! exit status 1 when an event was not handled exactly once.
//!
//! `rentify-loadgen search-seed …` writes issue 7's search data (owners,
//! listings across Paris, blocked windows) into a migrated database, and
//! `rentify-loadgen search …` measures `/v1/search` and
//! `/v1/search/suggest` on it beside the same queries run as PostgreSQL
//! full-text + PostGIS SQL (see `search/mod.rs`); exit status 1 when a phase
//! got no 200 at all or a statement failed.

mod events;
mod ledger;
mod report;
mod run;
mod search;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use crate::report::{Report, Setup};
use crate::run::{Config, RequestTemplate};

/// Sends HTTP requests back to back from N concurrent workers over keep-alive
/// connections and reports throughput and latency.
///
/// In the body (--body or --body-file), --header values and the path and query
/// of --url, `{{uuid}}` is replaced per request by a fresh UUIDv4 (each
/// occurrence its own) and `{{seq}}` by a counter (0, 1, 2, ... across all
/// workers, warm-up included).
///
/// `rentify-loadgen ledger --help`: the ledger settlement benchmark instead
/// (PostgreSQL only, no HTTP); `rentify-loadgen events --help`: the outbox →
/// event consumers benchmark; `rentify-loadgen search-seed --help` and
/// `rentify-loadgen search --help`: the search benchmark.
#[derive(Parser, Debug)]
#[command(name = "rentify-loadgen", version)]
struct Args {
    /// Target URL; http:// on a loopback host (see --allow-non-loopback).
    #[arg(long)]
    url: String,

    /// HTTP method.
    #[arg(long, default_value = "GET")]
    method: String,

    /// Request body.
    #[arg(long, conflicts_with = "body_file")]
    body: Option<String>,

    /// Read the request body from this file (UTF-8).
    #[arg(long, value_name = "PATH")]
    body_file: Option<PathBuf>,

    /// Request header as 'Name: value'; repeat for more.
    #[arg(long = "header", short = 'H', value_name = "'NAME: VALUE'")]
    headers: Vec<String>,

    /// Concurrent workers, each with its own keep-alive connection.
    #[arg(long, short = 'c', default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    concurrency: u32,

    /// Measured seconds (fractions allowed).
    #[arg(long, short = 'd', default_value = "10", value_parser = parse_seconds)]
    duration: Duration,

    /// Seconds of load before measuring, to open connections and warm caches.
    #[arg(long, default_value = "2", value_parser = parse_seconds)]
    warmup: Duration,

    /// Open loop: send this many requests per second in all (spread over the
    /// workers on fixed schedules) instead of back to back, and measure
    /// latency from each request's due time.
    #[arg(long)]
    rate: Option<f64>,

    /// Stop after this many measured requests, even before --duration.
    #[arg(long)]
    max_requests: Option<u64>,

    /// Seconds a request may take before it counts as a timeout error.
    #[arg(long, default_value = "30", value_parser = parse_seconds)]
    timeout: Duration,

    /// Runtime threads. Defaults to half the CPUs (at least one) because the
    /// server under test runs on the same machine and needs the rest.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    threads: Option<u32>,

    /// Scenario name shown in the report (defaults to METHOD URL).
    #[arg(long)]
    name: Option<String>,

    /// Statuses of 400 or above that are expected answers, not failures,
    /// e.g. `--expect-status 409` for a booking race. Repeat or comma-separate.
    #[arg(long = "expect-status", value_delimiter = ',')]
    expect_status: Vec<u16>,

    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,

    /// Permit a host outside 127.0.0.0/8, ::1 and localhost.
    #[arg(long)]
    allow_non_loopback: bool,
}

pub(crate) fn parse_seconds(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    Duration::try_from_secs_f64(seconds)
        .map_err(|_| format!("{text:?} is not a usable number of seconds"))
}

fn main() -> ExitCode {
    if std::env::args_os()
        .nth(1)
        .is_some_and(|arg| arg == "ledger")
    {
        let args = ledger::LedgerArgs::parse_from(std::env::args_os().skip(1));
        return match ledger::main(args) {
            Ok(code) => code,
            Err(message) => {
                eprintln!("rentify-loadgen ledger: {message}");
                ExitCode::from(2)
            }
        };
    }
    if std::env::args_os()
        .nth(1)
        .is_some_and(|arg| arg == "events")
    {
        let args = events::EventsArgs::parse_from(std::env::args_os().skip(1));
        return match events::main(args) {
            Ok(code) => code,
            Err(message) => {
                eprintln!("rentify-loadgen events: {message}");
                ExitCode::from(2)
            }
        };
    }
    if std::env::args_os()
        .nth(1)
        .is_some_and(|arg| arg == "search-seed")
    {
        let args = search::seed::SeedArgs::parse_from(std::env::args_os().skip(1));
        return match search::seed::main(args) {
            Ok(code) => code,
            Err(message) => {
                eprintln!("rentify-loadgen search-seed: {message}");
                ExitCode::from(2)
            }
        };
    }
    if std::env::args_os()
        .nth(1)
        .is_some_and(|arg| arg == "search")
    {
        let args = search::SearchArgs::parse_from(std::env::args_os().skip(1));
        return match search::main(args) {
            Ok(code) => code,
            Err(message) => {
                eprintln!("rentify-loadgen search: {message}");
                ExitCode::from(2)
            }
        };
    }
    let args = Args::parse();
    match start(args) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("rentify-loadgen: {message}");
            ExitCode::from(2)
        }
    }
}

fn start(args: Args) -> Result<ExitCode, String> {
    let body = match (&args.body, &args.body_file) {
        (Some(body), _) => body.clone(),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map_err(|err| format!("cannot read --body-file {}: {err}", path.display()))?,
        (None, None) => String::new(),
    };
    let request = RequestTemplate::new(
        &args.method,
        &args.url,
        &args.headers,
        &body,
        args.allow_non_loopback,
    )?;
    if args
        .rate
        .is_some_and(|rate| !(rate.is_finite() && rate > 0.0))
    {
        return Err("--rate must be a positive number of requests per second".to_owned());
    }
    if args.duration.is_zero() {
        return Err("--duration must be above zero".to_owned());
    }
    let threads = match args.threads {
        Some(threads) => threads as usize,
        None => std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1)),
    };
    let setup = Setup {
        name: args
            .name
            .unwrap_or_else(|| format!("{} {}", args.method.to_ascii_uppercase(), args.url)),
        method: args.method.to_ascii_uppercase(),
        url: args.url,
        concurrency: args.concurrency as usize,
        threads,
        warmup_s: args.warmup.as_secs_f64(),
        expected_statuses: args.expect_status.clone(),
        rate: args.rate,
    };
    let config = Config {
        request,
        concurrency: setup.concurrency,
        warmup: args.warmup,
        duration: args.duration,
        max_requests: args.max_requests,
        timeout: args.timeout,
        rate: args.rate,
        capture_unless: None,
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_io()
        .enable_time()
        .build()
        .map_err(|err| format!("cannot start the runtime: {err}"))?;
    let outcome = runtime.block_on(run::run(config));

    let report = Report::new(setup, &outcome);
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&report).expect("report serializes")
        );
    } else {
        println!("{report}");
    }
    Ok(if report.all_failed() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
