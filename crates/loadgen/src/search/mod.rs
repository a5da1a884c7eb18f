//! `rentify-loadgen search`: issue 7's search benchmark (scripts/bench.sh
//! `search`, `suggest`, `search_pg`), on data written by
//! `rentify-loadgen search-seed` (`seed.rs`).
//!
//! Phases, each closed loop at `--concurrency` for `--warmup` + `--duration`:
//!
//! 1. **search**: `GET /v1/search` with the parameter sets of `queries.rs`
//!    in turn (text, radius, price and availability filters, three orders),
//!    on the HTTP machinery of the other scenarios (`run.rs`: one keep-alive
//!    connection per worker);
//! 2. **suggest**: `GET /v1/search/suggest?q=<2–5 letters>`;
//! 3. **pg**: the same parameter sets as SQL (`twin.rs`) over a pool of
//!    `--concurrency` connections, after creating the GIN index it needs if
//!    it is missing.
//!
//! Any status other than 200 counts as an error (the first such body is
//! printed). Before the phases, `--sample` sets are sent once to both the
//! service and PostgreSQL and their answers compared (how many find
//! something, how much their first pages overlap), so the two sides are
//! seen to do comparable work. Then the service's latency beside
//! PostgreSQL's, as ratios, and issue 7's targets (p99 ≤ 25 ms, suggest
//! p99 ≤ 5 ms): printed, not asserted.
//!
//! Exit status 1 when an HTTP phase got no 200 at all or a statement of the
//! twin failed; 2 for bad arguments or a failed setup.

mod queries;
pub mod seed;
mod twin;
mod vocab;

use std::collections::HashSet;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use clap::{Parser, ValueEnum};
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use sqlx::ConnectOptions;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use tokio::net::TcpStream;
use uuid::Uuid;

use crate::parse_seconds;
use crate::report::{self, Latency};
use crate::run::{self, RequestTemplate};
use queries::Spec;

/// Issue 7's targets, printed beside the figures.
const SEARCH_P99_TARGET_MS: f64 = 25.0;
const SUGGEST_P99_TARGET_MS: f64 = 5.0;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Phase {
    /// `GET /v1/search`.
    Search,
    /// `GET /v1/search/suggest`.
    Suggest,
    /// The PostgreSQL twin (needs no server).
    Pg,
}

/// Measures `/v1/search` and `/v1/search/suggest` on a seeded database
/// and the equivalent PostgreSQL full-text + PostGIS queries beside them
/// (see the module documentation).
#[derive(Parser, Debug)]
#[command(name = "rentify-loadgen search")]
pub struct SearchArgs {
    /// The server under test (`rentify serve` on the seeded database);
    /// http:// on a loopback host.
    #[arg(long, default_value = "http://127.0.0.1:18081")]
    base_url: String,

    /// The seeded database (`rentify-loadgen search-seed`), for the twin.
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,

    /// Concurrent clients: HTTP connections, and the twin's pool size.
    #[arg(long, short = 'c', default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    concurrency: u32,

    /// Measured seconds per phase.
    #[arg(long, short = 'd', default_value = "10", value_parser = parse_seconds)]
    duration: Duration,

    /// Unmeasured seconds before each phase.
    #[arg(long, default_value = "2", value_parser = parse_seconds)]
    warmup: Duration,

    /// Phases to run, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "search,suggest,pg")]
    phases: Vec<Phase>,

    /// Seed of the query mix.
    #[arg(long, default_value_t = 42)]
    seed: u64,

    /// Distinct parameter sets (and suggestion prefixes) sent in turn.
    #[arg(long, default_value_t = 4_096, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    queries: u32,

    /// Parameter sets sent once to both sides to compare their answers
    /// before the timed phases; 0 skips the comparison.
    #[arg(long, default_value_t = 100)]
    sample: u32,

    /// Settings of the twin's sessions, `name=value`, comma-separated (see
    /// `twin.rs` for why JIT is off); `--pg-set ''` keeps the server's.
    #[arg(long = "pg-set", value_delimiter = ',', default_value = "jit=off")]
    pg_set: Vec<String>,

    /// Seconds a request may take before it counts as a timeout error.
    #[arg(long, default_value = "30", value_parser = parse_seconds)]
    timeout: Duration,

    /// Runtime threads; defaults to half the CPUs (the server and
    /// PostgreSQL need the rest).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    threads: Option<u32>,

    /// After the comparison, print the N parameter sets the service took
    /// longest over, one at a time (to see which shapes set the tail).
    #[arg(long, default_value_t = 0)]
    slowest: usize,

    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,

    /// Permit a --base-url host outside 127.0.0.0/8, ::1 and localhost.
    #[arg(long)]
    allow_non_loopback: bool,
}

#[derive(Debug, Serialize)]
struct HttpPhase {
    #[serde(flatten)]
    report: report::Report,
    /// Transport errors plus responses other than 200.
    non_200: u64,
    /// The first response other than 200: status and the start of its body.
    first_error: Option<String>,
}

#[derive(Debug, Serialize)]
struct PgPhase {
    concurrency: usize,
    duration_s: f64,
    queries: u64,
    throughput_qps: f64,
    latency_ms: Option<Latency>,
    rows_per_query: f64,
    /// Share of statements that found nothing, in %.
    empty_pct: f64,
    errors: u64,
    first_error: Option<String>,
    setup: String,
    /// `--pg-set`.
    settings: String,
}

/// The service's latency over the twin's: below 1 the service is faster.
#[derive(Debug, Serialize)]
struct Ratios {
    p50: f64,
    p99: f64,
    throughput: f64,
}

#[derive(Debug, Default, Serialize)]
struct Side {
    /// One query at a time, nothing else running: the cost of a query
    /// without queueing.
    alone_ms: Option<Latency>,
    #[serde(skip)]
    alone_us: Option<hdrhistogram::Histogram<u64>>,
    asked: u32,
    /// Sets that got an answer (HTTP: 200 with a readable body).
    answered: u32,
    with_hits: u32,
    typo_asked: u32,
    typo_with_hits: u32,
    failed: u32,
    first_failure: Option<String>,
    /// Each set's time alone, in µs, in the order asked.
    #[serde(skip)]
    took_us: Vec<u64>,
}

#[derive(Debug, Serialize)]
struct Agreement {
    sets: usize,
    http: Option<Side>,
    pg: Option<Side>,
    /// Mean over the sets where both found something of |A ∩ B| / min(|A|, |B|)
    /// for the first pages (20 ids), in %.
    overlap_pct: Option<f64>,
}

#[derive(Debug, Serialize)]
struct Report {
    name: &'static str,
    base_url: String,
    seed: u64,
    query_sets: usize,
    typo_sets: usize,
    active_listings: Option<i64>,
    /// Start and end of the days availability windows are drawn from.
    availability_days: (String, String),
    concurrency: usize,
    threads: usize,
    agreement: Option<Agreement>,
    search: Option<HttpPhase>,
    suggest: Option<HttpPhase>,
    pg: Option<PgPhase>,
    /// `search` over `pg`.
    ratio: Option<Ratios>,
    note: String,
}

pub fn main(args: SearchArgs) -> Result<ExitCode, String> {
    if args.duration.is_zero() {
        return Err("--duration must be above zero".to_owned());
    }
    if args.phases.is_empty() {
        return Err("--phases names none".to_owned());
    }
    let threads = match args.threads {
        Some(threads) => threads as usize,
        None => std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1)),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_io()
        .enable_time()
        .build()
        .map_err(|err| format!("cannot start the runtime: {err}"))?;
    let report = runtime.block_on(run(&args, threads))?;
    let http_dead = |phase: &Option<HttpPhase>| {
        phase
            .as_ref()
            .is_some_and(|p| p.report.status.get("200").copied().unwrap_or(0) == 0)
    };
    let failed = http_dead(&report.search)
        || http_dead(&report.suggest)
        || report
            .pg
            .as_ref()
            .is_some_and(|pg| pg.errors > 0 || pg.queries == 0);
    // Text is printed phase by phase as the run goes.
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&report).expect("report serializes")
        );
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The days availability windows are drawn from: the seeded 60 days from
/// their first midnight, or what is left of them; from today when the seed
/// has no windows (or they are nearly all past: reseed).
async fn availability_days(
    pool: &PgPool,
) -> Result<(DateTime<Utc>, DateTime<Utc>, Option<String>), String> {
    let first: Option<DateTime<Utc>> =
        sqlx::query_scalar("SELECT min(start_time) FROM availability_windows WHERE note = $1")
            .bind(seed::WINDOW_NOTE)
            .fetch_one(pool)
            .await
            .map_err(|e| e.to_string())?;
    let today = Utc::now()
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .expect("midnight exists")
        .and_utc();
    let horizon = chrono::Duration::days(seed::HORIZON_DAYS);
    Ok(match first {
        Some(first) => {
            let anchor = first
                .date_naive()
                .and_hms_opt(0, 0, 0)
                .expect("midnight exists")
                .and_utc();
            let from = anchor.max(today);
            if anchor + horizon - from < chrono::Duration::days(14) {
                (
                    today,
                    today + horizon,
                    Some(format!(
                        "the seeded blocked windows end {}: availability filters exclude little; reseed (BENCH_SEARCH_RESEED=1)",
                        (anchor + horizon).format("%Y-%m-%d")
                    )),
                )
            } else {
                (from, anchor + horizon, None)
            }
        }
        None => (
            today,
            today + horizon,
            Some("no seeded blocked windows found (run search-seed)".to_owned()),
        ),
    })
}

async fn pool(url: &str, size: u32, settings: &[String]) -> Result<PgPool, String> {
    let options: PgConnectOptions = url
        .parse()
        .map_err(|e| format!("invalid --database-url: {e}"))?;
    let settings = settings
        .iter()
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.split_once('=')
                .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
                .ok_or_else(|| format!("--pg-set {s:?} is not name=value"))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let options = options
        .application_name("rentify-loadgen-search")
        .disable_statement_logging()
        .options(settings);
    let pool = PgPoolOptions::new()
        .max_connections(size)
        .test_before_acquire(false)
        .acquire_timeout(Duration::from_secs(30))
        .connect_with(options)
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    // Open every connection now, not during the warm-up.
    let mut held = Vec::with_capacity(size as usize);
    for _ in 0..size {
        held.push(
            pool.acquire()
                .await
                .map_err(|e| format!("cannot connect: {e}"))?,
        );
    }
    drop(held);
    Ok(pool)
}

fn connect_to(base_url: &str) -> String {
    let rest = base_url.trim_start_matches("http://");
    let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
    if authority.contains(':') && !authority.ends_with(']') {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    }
}

/// One GET on a connection of its own (the comparison is not timed).
async fn get(base_url: &str, path: &str) -> Result<(u16, Bytes), String> {
    let authority = base_url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    let stream = TcpStream::connect(connect_to(base_url))
        .await
        .map_err(|e| format!("connect {base_url}: {e}"))?;
    let (mut sender, driver) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(driver);
    let request = Request::get(path)
        .header(hyper::header::HOST, authority)
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, body))
}

/// The listing ids of a search answer, in order.
fn hit_ids(body: &[u8]) -> Result<Vec<Uuid>, String> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let data = value
        .get("data")
        .and_then(|d| d.as_array())
        .ok_or("no `data` array")?;
    data.iter()
        .map(|hit| {
            hit.pointer("/listing/id")
                .and_then(|id| id.as_str())
                .and_then(|id| Uuid::parse_str(id).ok())
                .ok_or_else(|| "a hit without `listing.id`".to_owned())
        })
        .collect()
}

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text: String = text.chars().take(300).collect();
    text.replace('\n', " ")
}

fn record(
    side: &mut Side,
    spec: &Spec,
    took: Duration,
    answer: Result<Vec<Uuid>, String>,
) -> Option<Vec<Uuid>> {
    side.asked += 1;
    let hist = side.alone_us.get_or_insert_with(|| {
        hdrhistogram::Histogram::new_with_bounds(1, 60_000_000, 3).expect("static bounds")
    });
    hist.saturating_record((took.as_micros() as u64).max(1));
    side.took_us.push(took.as_micros() as u64);
    side.typo_asked += u32::from(spec.typo);
    match answer {
        Ok(ids) => {
            side.answered += 1;
            if !ids.is_empty() {
                side.with_hits += 1;
                side.typo_with_hits += u32::from(spec.typo);
            }
            Some(ids)
        }
        Err(error) => {
            side.failed += 1;
            side.first_failure.get_or_insert(error);
            None
        }
    }
}

/// Sends the first `sets` parameter sets once to each side and compares.
async fn agreement(specs: &[Spec], base_url: Option<&str>, pool: Option<&PgPool>) -> Agreement {
    let sqls = twin::statements(specs);
    let mut http = base_url.map(|_| Side::default());
    let mut pg = pool.map(|_| Side::default());
    let (mut overlap_sum, mut overlap_n) = (0.0, 0u32);
    for spec in specs {
        let from_http = match (base_url, http.as_mut()) {
            (Some(base_url), Some(side)) => {
                let started = Instant::now();
                let answer = match get(base_url, &spec.path()).await {
                    Ok((200, body)) => {
                        hit_ids(&body).map_err(|e| format!("{e}: {}", snippet(&body)))
                    }
                    Ok((status, body)) => Err(format!("{status} {}", snippet(&body))),
                    Err(error) => Err(error),
                };
                record(side, spec, started.elapsed(), answer)
            }
            _ => None,
        };
        let from_pg = match (pool, pg.as_mut()) {
            (Some(pool), Some(side)) => {
                let started = Instant::now();
                let answer = twin::query(pool, &sqls[&twin::Shape::of(spec)], spec)
                    .await
                    .map_err(|e| e.to_string());
                record(side, spec, started.elapsed(), answer)
            }
            _ => None,
        };
        if let (Some(a), Some(b)) = (from_http, from_pg) {
            let a: HashSet<Uuid> = a.into_iter().take(queries::LIMIT).collect();
            let b: HashSet<Uuid> = b.into_iter().take(queries::LIMIT).collect();
            if !a.is_empty() && !b.is_empty() {
                overlap_sum += a.intersection(&b).count() as f64 / a.len().min(b.len()) as f64;
                overlap_n += 1;
            }
        }
    }
    for side in [http.as_mut(), pg.as_mut()].into_iter().flatten() {
        side.alone_ms = side.alone_us.as_ref().and_then(Latency::of);
    }
    Agreement {
        sets: specs.len(),
        http,
        pg,
        overlap_pct: (overlap_n > 0).then(|| 100.0 * overlap_sum / f64::from(overlap_n)),
    }
}

async fn http_phase(
    args: &SearchArgs,
    threads: usize,
    name: &str,
    paths: &[String],
) -> Result<HttpPhase, String> {
    let request = RequestTemplate::cycle(&args.base_url, paths, args.allow_non_loopback)?;
    let outcome = run::run(run::Config {
        request,
        concurrency: args.concurrency as usize,
        warmup: args.warmup,
        duration: args.duration,
        max_requests: None,
        timeout: args.timeout,
        rate: None,
        capture_unless: Some(200),
    })
    .await;
    let non_200 = outcome
        .statuses
        .iter()
        .filter(|(status, _)| **status != 200)
        .map(|(_, n)| n)
        .sum::<u64>()
        + outcome.errors.values().sum::<u64>();
    let first_error = outcome
        .first_unexpected
        .as_ref()
        .map(|(status, body)| format!("{status} {}", snippet(body.as_bytes())));
    let endpoint = paths[0].split('?').next().unwrap_or_default();
    let setup = report::Setup {
        name: name.to_owned(),
        method: "GET".to_owned(),
        url: format!(
            "{}{endpoint}?… ({} query strings in turn)",
            args.base_url.trim_end_matches('/'),
            paths.len()
        ),
        concurrency: args.concurrency as usize,
        threads,
        warmup_s: args.warmup.as_secs_f64(),
        expected_statuses: Vec::new(),
        rate: None,
    };
    Ok(HttpPhase {
        report: report::Report::new(setup, &outcome),
        non_200,
        first_error,
    })
}

async fn run(args: &SearchArgs, threads: usize) -> Result<Report, String> {
    let wants = |phase: Phase| args.phases.contains(&phase);
    let http_wanted = wants(Phase::Search) || wants(Phase::Suggest);
    if http_wanted {
        // Validates the URL (http://, loopback) before anything runs.
        RequestTemplate::cycle(&args.base_url, &["/".to_owned()], args.allow_non_loopback)?;
    }
    let concurrency = args.concurrency as usize;
    let pool = pool(&args.database_url, args.concurrency, &args.pg_set).await?;
    let (from, until, stale) = availability_days(&pool).await?;
    let specs = Arc::new(queries::specs(
        args.seed,
        args.queries as usize,
        from,
        until,
    ));
    let typo_sets = specs.iter().filter(|s| s.typo).count();

    let twin_setup = if wants(Phase::Pg) {
        Some(twin::setup(&pool).await?)
    } else {
        None
    };
    if !args.json {
        println!(
            "scenario    search  ({} parameter sets from --seed {}, {} with a typo; availability windows from {} to {}{})",
            specs.len(),
            args.seed,
            typo_sets,
            from.format("%Y-%m-%d"),
            until.format("%Y-%m-%d"),
            match &twin_setup {
                Some(s) => format!("; {} active listings", s.active_listings),
                None => String::new(),
            }
        );
        if let Some(warning) = &stale {
            println!("warning     {warning}");
        }
        if let Some(s) = &twin_setup {
            println!(
                "setup       {}; ANALYZE listings {:.2} s; twin sessions: {}",
                s.index,
                s.analyze_s,
                pg_settings(&args.pg_set)
            );
        }
    }

    let agreement = if args.sample > 0 && (wants(Phase::Search) || wants(Phase::Pg)) {
        let sets = &specs[..(args.sample as usize).min(specs.len())];
        let base_url = wants(Phase::Search).then_some(args.base_url.as_str());
        let pg = wants(Phase::Pg).then_some(&pool);
        let found = agreement(sets, base_url, pg).await;
        if !args.json {
            print_agreement(&found);
            if let Some(side) = &found.http {
                print_slowest(sets, &side.took_us, args.slowest);
            }
        }
        Some(found)
    } else {
        None
    };

    let search = if wants(Phase::Search) {
        let paths: Vec<String> = specs.iter().map(Spec::path).collect();
        let phase = http_phase(args, threads, "search", &paths).await?;
        if !args.json {
            print_http(&phase);
        }
        Some(phase)
    } else {
        None
    };
    let suggest = if wants(Phase::Suggest) {
        let paths: Vec<String> = queries::prefixes(args.seed, args.queries as usize)
            .iter()
            .map(|p| queries::suggest_path(p))
            .collect();
        let phase = http_phase(args, threads, "suggest", &paths).await?;
        if !args.json {
            print_http(&phase);
        }
        Some(phase)
    } else {
        None
    };
    let pg = if wants(Phase::Pg) {
        let outcome = twin::run(
            pool.clone(),
            Arc::clone(&specs),
            concurrency,
            args.warmup,
            args.duration,
        )
        .await;
        let count = outcome.latency_us.len();
        let phase = PgPhase {
            concurrency,
            duration_s: outcome.window.as_secs_f64(),
            queries: outcome.in_window,
            throughput_qps: outcome.in_window as f64 / outcome.window.as_secs_f64(),
            latency_ms: Latency::of(&outcome.latency_us),
            rows_per_query: if count > 0 {
                outcome.rows as f64 / count as f64
            } else {
                0.0
            },
            empty_pct: if count > 0 {
                100.0 * outcome.empty as f64 / count as f64
            } else {
                0.0
            },
            errors: outcome.errors,
            first_error: outcome.first_error,
            setup: twin_setup
                .as_ref()
                .map(|s| s.index.clone())
                .unwrap_or_default(),
            settings: pg_settings(&args.pg_set),
        };
        if !args.json {
            print_pg(&phase, threads, args.warmup);
        }
        Some(phase)
    } else {
        None
    };
    pool.close().await;

    let ratio = match (&search, &pg) {
        (Some(search), Some(pg)) => match (&search.report.latency_ms, &pg.latency_ms) {
            (Some(s), Some(p)) => Some(Ratios {
                p50: s.p50 / p.p50,
                p99: s.p99 / p.p99,
                throughput: search.report.throughput_rps / pg.throughput_qps,
            }),
            _ => None,
        },
        _ => None,
    };
    let note = format!(
        "PostgreSQL full-text search ('simple' configuration, plainto_tsquery) has no typo \
         tolerance: the {typo_sets} sets with a typo match only where the misspelling itself \
         occurs, so there it finds (next to) nothing; it also counts no total and computes no \
         facets, which /v1/search does. Both sides share this machine's CPUs with the load \
         generator."
    );
    let report = Report {
        name: "search",
        base_url: args.base_url.clone(),
        seed: args.seed,
        query_sets: specs.len(),
        typo_sets,
        active_listings: twin_setup.as_ref().map(|s| s.active_listings),
        availability_days: (
            from.format("%Y-%m-%d").to_string(),
            until.format("%Y-%m-%d").to_string(),
        ),
        concurrency,
        threads,
        agreement,
        search,
        suggest,
        pg,
        ratio,
        note,
    };
    if !args.json {
        print_summary(&report);
    }
    Ok(report)
}

fn pg_settings(settings: &[String]) -> String {
    let set: Vec<&str> = settings
        .iter()
        .map(String::as_str)
        .filter(|s| !s.is_empty())
        .collect();
    if set.is_empty() {
        "server settings".to_owned()
    } else {
        set.join(", ")
    }
}

fn pct(part: u32, whole: u32) -> String {
    if whole == 0 {
        "-".to_owned()
    } else {
        format!("{:.0} %", 100.0 * f64::from(part) / f64::from(whole))
    }
}

fn side_line(name: &str, side: &Side) -> String {
    let mut line = format!(
        "{name}: hits for {} of them (typo'd sets: {}); p50 {} ms, p99 {} ms",
        pct(side.with_hits, side.answered),
        pct(side.typo_with_hits, side.typo_asked),
        side.alone_ms
            .as_ref()
            .map_or("-".to_owned(), |l| format!("{:.2}", l.p50)),
        side.alone_ms
            .as_ref()
            .map_or("-".to_owned(), |l| format!("{:.2}", l.p99)),
    );
    if side.failed > 0 {
        line.push_str(&format!(
            ", {} failed (first: {})",
            side.failed,
            side.first_failure.as_deref().unwrap_or("-")
        ));
    }
    line
}

fn print_agreement(a: &Agreement) {
    println!(
        "agreement   the first {} sets once each, one at a time{}",
        a.sets,
        match a.overlap_pct {
            Some(overlap) => format!(": first pages overlap {overlap:.0} % (where both find some)"),
            None => String::new(),
        }
    );
    if let Some(http) = &a.http {
        println!("            {}", side_line("/v1/search", http));
    }
    if let Some(pg) = &a.pg {
        println!("            {}", side_line("PostgreSQL", pg));
    }
}

fn print_slowest(sets: &[Spec], took_us: &[u64], n: usize) {
    let mut order: Vec<usize> = (0..took_us.len().min(sets.len())).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(took_us[i]));
    for &i in order.iter().take(n) {
        println!(
            "slowest     {:>8.2} ms  {}",
            took_us[i] as f64 / 1000.0,
            sets[i].path()
        );
    }
}

fn print_http(phase: &HttpPhase) {
    println!();
    println!("{}", phase.report);
    match &phase.first_error {
        Some(first) => println!("non-200     {}  (first: {first})", phase.non_200),
        None => println!("non-200     {}", phase.non_200),
    }
}

fn print_pg(pg: &PgPhase, threads: usize, warmup: Duration) {
    println!();
    println!(
        "scenario    search_pg  (the same sets as SQL: to_tsvector('simple') @@ plainto_tsquery ranked by ts_rank, ST_DWithin, daily price, blocked units < quantity; LIMIT 21)"
    );
    println!(
        "load        {} pooled connections ({}) on {} thread{}, {:.2} s measured after {:.2} s warm-up",
        pg.concurrency,
        pg.settings,
        threads,
        if threads == 1 { "" } else { "s" },
        pg.duration_s,
        warmup.as_secs_f64()
    );
    println!(
        "queries     {}  ({:.1} q/s; {:.1} rows per query, {:.1} % empty)",
        pg.queries, pg.throughput_qps, pg.rows_per_query, pg.empty_pct
    );
    println!("latency ms  {}", Latency::line(&pg.latency_ms, 3));
    match &pg.first_error {
        Some(e) => println!("errors      {}  (first: {e})", pg.errors),
        None => println!("errors      {}", pg.errors),
    }
}

fn print_summary(r: &Report) {
    println!();
    if let (Some(search), Some(pg), Some(ratio)) = (&r.search, &r.pg, &r.ratio)
        && let (Some(s), Some(p)) = (&search.report.latency_ms, &pg.latency_ms)
    {
        println!(
            "compare     /v1/search vs PostgreSQL: p50 {:.2} vs {:.2} ms ({:.2}x), p99 {:.2} vs {:.2} ms ({:.2}x), {:.0} vs {:.0} per s ({:.2}x)",
            s.p50,
            p.p50,
            ratio.p50,
            s.p99,
            p.p99,
            ratio.p99,
            search.report.throughput_rps,
            pg.throughput_qps,
            ratio.throughput
        );
    }
    let target = |phase: &Option<HttpPhase>, name: &str, limit: f64| {
        if let Some(l) = phase.as_ref().and_then(|p| p.report.latency_ms.as_ref()) {
            println!(
                "target      {name} p99 {:.2} ms: {} (issue 7 asks p99 <= {limit} ms)",
                l.p99,
                if l.p99 <= limit { "met" } else { "NOT met" }
            );
        }
    };
    target(&r.search, "/v1/search", SEARCH_P99_TARGET_MS);
    target(&r.suggest, "/v1/search/suggest", SUGGEST_P99_TARGET_MS);
    if r.pg.is_some() {
        println!("note        {}", r.note);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hit_ids_reads_the_contract() {
        let body = br#"{"object":"search_result","data":[
            {"object":"search_hit","listing":{"id":"0190c000-0000-7000-9000-000000000001"},"score":1.5,"distance_km":0.4}],
            "has_more":false,"next_cursor":null,"total":1,"facets":{}}"#;
        assert_eq!(
            hit_ids(body).unwrap(),
            [Uuid::parse_str("0190c000-0000-7000-9000-000000000001").unwrap()]
        );
        assert!(hit_ids(b"{\"data\": [{}]}").is_err());
        assert!(hit_ids(b"oops").is_err());
    }

    #[test]
    fn connect_to_adds_the_default_port() {
        assert_eq!(connect_to("http://127.0.0.1:18081"), "127.0.0.1:18081");
        assert_eq!(connect_to("http://localhost/"), "localhost:80");
    }
}
