//! `rentify-loadgen events`: outbox → consumer throughput and lag, the
//! workload of issue 6's benchmark (scripts/bench.sh `events_outbox` and
//! `events_jetstream`).
//!
//! **Producers.** `--producers` connections insert domain events straight
//! into the outbox (`events`) with SQL, open loop: transaction `k` of
//! producer `i` (one multi-row `INSERT` of `--events-per-tx` events,
//! autocommitted) is due at `start + (i / N + k) × period`, where the period
//! gives `--rate` events/s in all. A producer that is late sends at once, and
//! its insert latency is measured from the due time, so a database that
//! cannot take the rate shows as late producers and a produced rate below
//! the offered one, never as a quietly lower load. The events are a mix of
//! booking, payment, listing and message events with realistic JSON payloads
//! (a `booking.requested` is ~420 bytes of JSON, the mix averages ~335).
//!
//! **Consumers.** `--consumers` named consumers (`bench_events_0`, …), each
//! subscribed to `*` so each reads every event, run on the real runtime
//! (`rentify_events::Runtime`): in-process on the outbox by default, on NATS
//! JetStream (the relay plus durable consumers) with `--nats-url`, on a
//! stream and subject prefix of their own (deleted at the end). The handler
//! has no effect of its own: the figures are the delivery machinery's
//! (reading, decoding, the processed-event keys, the cursor, the commit),
//! which a real handler's work adds to. Producers and consumers share this
//! process (its RSS is reported, both included), and it shares the machine
//! with PostgreSQL and NATS.
//!
//! **Lag** of an event = the time its handling committed − its
//! `occurred_at`. The handler records it in an `after_commit` hook, so it is
//! taken once the consumer's transaction (effect, processed-event key and
//! cursor) committed, and a batch that rolls back and runs again counts once.
//! `occurred_at` is the producer transaction's start (`now()`); that
//! transaction is a single `INSERT`, so it is its commit time minus the
//! insert itself (a millisecond or so): the lag is, if anything, overstated
//! by that much. Nothing special is stored in the payload. Only events that
//! occurred inside the measured window are in the lag histogram (those
//! handled after it, while the backlog drains, included).
//!
//! **Checks** after the run, once the backlog drained (bounded by
//! `--drain-timeout`): every produced event was handled exactly once by
//! every consumer (the handler's count and a bitmap of positions, and the
//! consumer's processed-event keys in the database), with no dead letter
//! and no pending retry. Exit status 1 when a check or a producer
//! transaction failed, 2 for bad arguments.

use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use clap::Parser;
use hdrhistogram::Histogram;

use crate::report::Latency;
use rentify_events::{Consumer, Context, Event, Handler, Runtime, Settings, retry::Backoff};
use serde::Serialize;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgConnection};
use uuid::Uuid;

use crate::ledger::Rng;
use crate::parse_seconds;

/// Produces domain events into the outbox at a fixed rate and measures how
/// fast, and how late, consumers handle them (see the module documentation).
#[derive(Parser, Debug)]
#[command(name = "rentify-loadgen events")]
pub struct EventsArgs {
    /// The database, migrated (`rentify migrate`); the run's events stay in it.
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,

    /// Offered load: events per second, in all producers.
    #[arg(long, default_value_t = 12_000.0)]
    rate: f64,

    /// Measured seconds.
    #[arg(long, short = 'd', default_value = "10", value_parser = parse_seconds)]
    duration: Duration,

    /// Seconds of load before measuring.
    #[arg(long, default_value = "2", value_parser = parse_seconds)]
    warmup: Duration,

    /// Producer connections inserting events.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
    producers: u32,

    /// Events per producer transaction (one multi-row INSERT).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    events_per_tx: u32,

    /// Consumers, each reading every event (`bench_events_0`, `_1`, …).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    consumers: u32,

    /// Events a consumer handles per transaction (EVENTS_BATCH_SIZE); on
    /// JetStream the relay's batch, and each pull asks for up to 100.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    batch_size: u32,

    /// Milliseconds an idle consumer waits before looking again (EVENTS_POLL_MS).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    poll_ms: u64,

    /// NATS server: JetStream mode (relay + durable consumers) on a stream of
    /// this run's own, deleted at the end. Unset: in-process on the outbox.
    #[arg(long)]
    nats_url: Option<String>,

    /// Seconds to wait after the window for the consumers to catch up
    /// before the run counts as failed.
    #[arg(long, default_value = "60", value_parser = parse_seconds)]
    drain_timeout: Duration,

    /// Runtime threads (producers and consumers share them); defaults to
    /// half the CPUs (PostgreSQL needs the rest).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    threads: Option<u32>,

    /// Scenario name shown in the report (default events_outbox or
    /// events_jetstream).
    #[arg(long)]
    name: Option<String>,

    /// Print one JSON object (and a one-line summary on stderr) instead of text.
    #[arg(long)]
    json: bool,
}

/// Highest latency tracked (10 minutes); slower ones are clamped to it.
const HIST_MAX_MICROS: u64 = 600_000_000;
/// A producer gives up after this many failed transactions (a dead database).
const MAX_ERRORS: u64 = 100;
/// The statement every producer transaction is: one INSERT of a batch.
const INSERT: &str = "INSERT INTO events (id, type, aggregate_type, aggregate_id, payload)
     SELECT id, type, aggregate_type, aggregate_id, payload::jsonb
       FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[])
         AS t (id, type, aggregate_type, aggregate_id, payload)";

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_MICROS, 3).expect("static histogram bounds")
}

fn micros(d: Duration) -> u64 {
    (d.as_micros() as u64).clamp(1, HIST_MAX_MICROS)
}

// ------------------------------------------------------------------ events

/// One batch of events, as the columns the INSERT unnests.
#[derive(Default)]
struct Batch {
    ids: Vec<Uuid>,
    types: Vec<&'static str>,
    aggregate_types: Vec<&'static str>,
    aggregate_ids: Vec<String>,
    payloads: Vec<String>,
}

/// An RFC 3339 UTC time `hours` after 2030-01-01T00:00:00Z.
fn time_at(hours: u64) -> String {
    let at =
        DateTime::<Utc>::from_timestamp(1_893_456_000 + 3600 * hours as i64, 0).unwrap_or_default();
    at.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Adds one event of a realistic mix: what a booking's life writes to the
/// outbox (request, approval, payment, completion), plus listing updates
/// and messages.
fn push_event(batch: &mut Batch, rng: &mut Rng) {
    let id = Uuid::now_v7();
    let booking = Uuid::now_v7();
    let listing = Uuid::from_u64_pair(0x0190_0000_0000_7000, rng.between(1, 5_000));
    let renter = Uuid::from_u64_pair(0x0190_0000_0000_7000, 1_000_000 + rng.between(1, 50_000));
    let owner = Uuid::from_u64_pair(0x0190_0000_0000_7000, 2_000_000 + rng.between(1, 5_000));
    let start = rng.between(0, 24 * 365);
    let subtotal = rng.between(20, 500) * 100;
    let (event_type, aggregate_type, aggregate_id, payload) = match rng.between(0, 99) {
        0..=39 => (
            "booking.requested",
            "booking",
            booking,
            format!(
                r#"{{"booking_id":"{booking}","listing_id":"{listing}","renter_id":"{renter}","owner_id":"{owner}","unit":{},"start_time":"{}","end_time":"{}","delivery_method":"pickup","protection_plan":"basic","currency":"EUR","subtotal":{subtotal},"service_fee":{},"deposit":5000,"total":{}}}"#,
                rng.between(1, 10),
                time_at(start),
                time_at(start + rng.between(1, 72)),
                subtotal / 10,
                subtotal + subtotal / 10,
            ),
        ),
        40..=59 => (
            "booking.approved",
            "booking",
            booking,
            format!(
                r#"{{"booking_id":"{booking}","listing_id":"{listing}","renter_id":"{renter}","owner_id":"{owner}","approved_by":"{owner}","start_time":"{}","payment_intent_id":"{}"}}"#,
                time_at(start),
                Uuid::now_v7(),
            ),
        ),
        60..=74 => (
            "payment.authorized",
            "payment",
            Uuid::now_v7(),
            format!(
                r#"{{"intent_id":"{}","booking_id":"{booking}","renter_id":"{renter}","amount":{},"currency":"EUR","provider":"sandbox","provider_ref":"pi_{:016x}"}}"#,
                Uuid::now_v7(),
                subtotal + subtotal / 10,
                rng.next(),
            ),
        ),
        75..=84 => (
            "booking.completed",
            "booking",
            booking,
            format!(
                r#"{{"booking_id":"{booking}","listing_id":"{listing}","renter_id":"{renter}","owner_id":"{owner}","end_time":"{}","returned_condition":"good"}}"#,
                time_at(start + 48),
            ),
        ),
        85..=92 => (
            "listing.updated",
            "listing",
            listing,
            format!(
                r#"{{"listing_id":"{listing}","owner_id":"{owner}","changed":["price","availability"],"daily_price":{},"currency":"EUR","version":{}}}"#,
                subtotal,
                rng.between(2, 40),
            ),
        ),
        _ => (
            "message.sent",
            "conversation",
            Uuid::now_v7(),
            format!(
                r#"{{"message_id":"{}","booking_id":"{booking}","sender_id":"{renter}","recipient_id":"{owner}","preview":"Hi! Is the bike still available for the weekend?"}}"#,
                Uuid::now_v7(),
            ),
        ),
    };
    batch.ids.push(id);
    batch.types.push(event_type);
    batch.aggregate_types.push(aggregate_type);
    batch.aggregate_ids.push(aggregate_id.to_string());
    batch.payloads.push(payload);
}

// --------------------------------------------------------------- producers

/// When the run's phases begin and end, on both clocks: producers schedule
/// with `Instant`, events carry PostgreSQL's wall-clock `occurred_at`.
#[derive(Clone, Copy)]
struct Timeline {
    start: Instant,
    measure_from: Instant,
    stop_at: Instant,
    start_wall: DateTime<Utc>,
    measure_from_wall: DateTime<Utc>,
    stop_at_wall: DateTime<Utc>,
}

/// What one producer did.
struct Produced {
    /// From each measured transaction's due time to its commit.
    insert_us: Histogram<u64>,
    /// From each measured transaction's due time to its start: how far
    /// behind the schedule the producer ran.
    slip_us: Histogram<u64>,
    /// Events committed in all, warm-up included.
    events: u64,
    /// Events of transactions that committed inside the window.
    events_in_window: u64,
    payload_bytes: u64,
    errors: u64,
    first_error: Option<String>,
}

async fn producer(
    mut conn: PgConnection,
    index: u32,
    producers: u32,
    per_tx: u32,
    period: Duration,
    timeline: Timeline,
    seed: u64,
) -> Produced {
    let mut rec = Produced {
        insert_us: histogram(),
        slip_us: histogram(),
        events: 0,
        events_in_window: 0,
        payload_bytes: 0,
        errors: 0,
        first_error: None,
    };
    let mut rng = Rng(seed);
    let mut due = timeline.start + period.mul_f64(f64::from(index) / f64::from(producers));
    while due < timeline.stop_at && rec.errors < MAX_ERRORS {
        tokio::time::sleep_until(due.into()).await;
        let mut batch = Batch::default();
        for _ in 0..per_tx {
            push_event(&mut batch, &mut rng);
        }
        let bytes: u64 = batch.payloads.iter().map(|p| p.len() as u64).sum();
        let began = Instant::now();
        let result = sqlx::query(INSERT)
            .bind(&batch.ids)
            .bind(&batch.types)
            .bind(&batch.aggregate_types)
            .bind(&batch.aggregate_ids)
            .bind(&batch.payloads)
            .execute(&mut conn)
            .await;
        let done = Instant::now();
        match result {
            Ok(result) => {
                rec.events += result.rows_affected();
                rec.payload_bytes += bytes;
                if done >= timeline.measure_from && done < timeline.stop_at {
                    rec.events_in_window += result.rows_affected();
                }
                if due >= timeline.measure_from {
                    rec.insert_us.saturating_record(micros(done - due));
                    rec.slip_us.saturating_record(micros(began - due));
                }
            }
            Err(error) => {
                rec.errors += 1;
                if rec.first_error.is_none() {
                    rec.first_error = Some(format!("insert: {error}"));
                }
            }
        }
        due += period;
    }
    rec
}

// --------------------------------------------------------------- consumers

/// What one consumer's handler saw, recorded after each commit.
struct Tally {
    /// Lag of the events that occurred inside the window.
    lag_us: Histogram<u64>,
    /// Committed handlings of this run's events.
    handled: u64,
    /// ... whose commit fell inside the window.
    handled_in_window: u64,
    /// Committed handlings per second since the start (warm-up included).
    per_second: Vec<u64>,
    /// One bit per position after `base`: handled already.
    seen: Vec<u64>,
    duplicates: u64,
    /// Events from before the run (the cursor was not where it was put).
    foreign: u64,
}

impl Tally {
    fn new() -> Self {
        Self {
            lag_us: histogram(),
            handled: 0,
            handled_in_window: 0,
            per_second: Vec::new(),
            seen: Vec::new(),
            duplicates: 0,
            foreign: 0,
        }
    }
}

struct Probe {
    base: i64,
    timeline: Timeline,
    tally: Mutex<Tally>,
}

impl Probe {
    fn new(base: i64, timeline: Timeline) -> Self {
        Self {
            base,
            timeline,
            tally: Mutex::new(Tally::new()),
        }
    }

    fn committed(&self, position: i64, occurred_at: DateTime<Utc>) {
        let now = Utc::now();
        let t = &self.timeline;
        let mut tally = self.tally.lock().expect("tally lock");
        if position <= self.base {
            tally.foreign += 1;
            return;
        }
        let index = (position - self.base - 1) as usize;
        let (word, bit) = (index / 64, 1u64 << (index % 64));
        if tally.seen.len() <= word {
            tally.seen.resize(word + 1, 0);
        }
        if tally.seen[word] & bit != 0 {
            tally.duplicates += 1;
            return;
        }
        tally.seen[word] |= bit;
        tally.handled += 1;
        if now >= t.measure_from_wall && now < t.stop_at_wall {
            tally.handled_in_window += 1;
        }
        let second = ((now - t.start_wall).num_milliseconds().max(0) / 1000) as usize;
        if tally.per_second.len() <= second {
            tally.per_second.resize(second + 1, 0);
        }
        tally.per_second[second] += 1;
        if occurred_at >= t.measure_from_wall && occurred_at < t.stop_at_wall {
            let lag = (now - occurred_at).to_std().unwrap_or_default();
            tally.lag_us.saturating_record(micros(lag));
        }
    }

    fn handled(&self) -> u64 {
        self.tally.lock().expect("tally lock").handled
    }
}

/// The benchmark's handler: no effect, it only records when each event's
/// handling committed.
struct Recorder(Arc<Probe>);

#[async_trait::async_trait]
impl Handler for Recorder {
    async fn handle(&self, cx: &mut Context<'_>, event: &Event) -> anyhow::Result<()> {
        let probe = self.0.clone();
        let (position, occurred_at) = (event.position, event.occurred_at);
        cx.after_commit(async move { probe.committed(position, occurred_at) });
        Ok(())
    }
}

// ------------------------------------------------------------------ report

#[derive(Debug, Serialize)]
struct Check {
    name: String,
    value: String,
    ok: bool,
}

#[derive(Debug, Serialize)]
struct ConsumerReport {
    name: String,
    handled: u64,
    handled_per_s: f64,
    /// The slowest whole second of the window.
    handled_per_s_min_1s: u64,
    /// Handled per whole second of the window.
    per_second: Vec<u64>,
    lag_ms: Option<Latency>,
    duplicates: u64,
}

#[derive(Debug, Serialize)]
struct Report {
    name: String,
    /// `in_process` or `jetstream`.
    mode: &'static str,
    offered_rate: f64,
    producers: u32,
    events_per_tx: u32,
    consumers: u32,
    batch_size: u32,
    poll_ms: u64,
    threads: usize,
    warmup_s: f64,
    duration_s: f64,
    synchronous_commit: String,
    /// Events committed by the producers, warm-up included.
    produced: u64,
    /// Events committed by the producers inside the window, per second:
    /// below the offered rate when the producers fell behind their schedule
    /// (the transactions due then still run, late, after the window).
    produced_per_s: f64,
    payload_bytes_avg: f64,
    /// Producer transactions: due time → commit (open loop: lateness included).
    insert_ms: Option<Latency>,
    /// Producer transactions: due time → start (how far behind schedule).
    producer_slip_ms: Option<Latency>,
    /// Handled events (the slowest consumer's), warm-up and drain included.
    handled: u64,
    /// Sustained throughput: events whose handling committed inside the
    /// window, per second (the slowest consumer's).
    handled_per_s: f64,
    /// The slowest whole second of the window, over every consumer.
    handled_per_s_min_1s: u64,
    /// Commit of the handling − `occurred_at`, events that occurred in the
    /// window, every consumer.
    lag_ms: Option<Latency>,
    /// Seconds after the window until every consumer had handled every event.
    drained_after_s: Option<f64>,
    rss_peak_mib: Option<f64>,
    rss_mib: Option<f64>,
    nats_stream: Option<String>,
    consumers_detail: Vec<ConsumerReport>,
    errors: u64,
    first_error: Option<String>,
    checks: Vec<Check>,
}

fn status_mib(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn opt_ms(latency: &Option<Latency>, pick: fn(&Latency) -> f64) -> String {
    latency
        .as_ref()
        .map_or_else(|| "-".into(), |l| format!("{:.1}", pick(l)))
}

/// One line for people: what was offered, what was sustained, how late.
fn summary(r: &Report) -> String {
    format!(
        "{}: {} consumer{} ({}) handled {:.0} events/s sustained of {:.0} offered, lag ms p50 {} p99 {} max {}, RSS peak {:.1} MiB",
        r.name,
        r.consumers,
        if r.consumers == 1 { "" } else { "s" },
        r.mode,
        r.handled_per_s,
        r.offered_rate,
        opt_ms(&r.lag_ms, |l| l.p50),
        opt_ms(&r.lag_ms, |l| l.p99),
        opt_ms(&r.lag_ms, |l| l.max),
        r.rss_peak_mib.unwrap_or(0.0),
    )
}

fn print_report(r: &Report) {
    println!("{}", summary(r));
    println!(
        "scenario    {}  (outbox -> {} consumer{}, {})",
        r.name,
        r.consumers,
        if r.consumers == 1 { "" } else { "s" },
        match r.mode {
            "jetstream" => "JetStream: relay + durable consumers",
            _ => "in-process: a cursor per consumer, a batch per transaction",
        }
    );
    println!(
        "load        {:.0} events/s offered by {} producers ({} events per transaction, ~{:.0} B payloads), {:.2} s measured after {:.2} s warm-up, {} thread{}, synchronous_commit={}",
        r.offered_rate,
        r.producers,
        r.events_per_tx,
        r.payload_bytes_avg,
        r.duration_s,
        r.warmup_s,
        r.threads,
        if r.threads == 1 { "" } else { "s" },
        r.synchronous_commit
    );
    println!(
        "consumers   batch {}, poll {} ms{}",
        r.batch_size,
        r.poll_ms,
        r.nats_stream
            .as_ref()
            .map(|s| format!(", stream {s}"))
            .unwrap_or_default()
    );
    println!(
        "produced    {:.1} events/s in the window ({} events in all)",
        r.produced_per_s, r.produced
    );
    println!(
        "insert      ms {}  (due -> commit)",
        Latency::line(&r.insert_ms, 1)
    );
    println!(
        "throughput  {:.1} events/s sustained (slowest second {}; {} handled)",
        r.handled_per_s, r.handled_per_s_min_1s, r.handled
    );
    println!(
        "lag         ms {}  (handling committed - occurred_at)",
        Latency::line(&r.lag_ms, 1)
    );
    if r.consumers_detail.len() > 1 {
        for c in &r.consumers_detail {
            println!(
                "  {:<14} {:.1} events/s, lag ms {}",
                c.name,
                c.handled_per_s,
                Latency::line(&c.lag_ms, 1)
            );
        }
    }
    match r.drained_after_s {
        Some(s) => println!("drained     {s:.2} s after the window"),
        None => println!("drained     no"),
    }
    match &r.first_error {
        Some(e) => println!("errors      {}  (first: {e})", r.errors),
        None => println!("errors      {}", r.errors),
    }
    for check in &r.checks {
        println!(
            "check       {}: {}  {}",
            check.name,
            check.value,
            if check.ok { "ok" } else { "FAILED" }
        );
    }
    if let (Some(peak), Some(now)) = (r.rss_peak_mib, r.rss_mib) {
        println!("loadgen RSS peak {peak:.1} MiB, now {now:.1} MiB (producers and consumers)");
    }
}

// -------------------------------------------------------------------- run

pub fn main(args: EventsArgs) -> Result<ExitCode, String> {
    if args.duration.is_zero() {
        return Err("--duration must be above zero".to_owned());
    }
    if !(args.rate.is_finite() && args.rate > 0.0) {
        return Err("--rate must be a positive number of events per second".to_owned());
    }
    let threads = match args.threads {
        Some(threads) => threads as usize,
        None => std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1)),
    };
    // The runtime reports its failures (a batch that failed, NATS away)
    // through tracing: show them.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_io()
        .enable_time()
        .build()
        .map_err(|err| format!("cannot start the runtime: {err}"))?;
    let report = runtime.block_on(run(&args, threads))?;
    let failed = report.errors > 0 || report.checks.iter().any(|c| !c.ok);
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&report).expect("report serializes")
        );
        eprintln!("{}", summary(&report));
    } else {
        print_report(&report);
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Puts `name`'s cursor at `head`, the end of the outbox, so that the
/// run's consumers (and relay) read this run's events and no history.
async fn cursor_to(conn: &mut PgConnection, name: &str, head: &(String, i64)) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO event_cursors (name, tx_id, position) VALUES ($1, $2::text::xid8, $3)
         ON CONFLICT (name) DO UPDATE
            SET tx_id = EXCLUDED.tx_id, position = EXCLUDED.position, updated_at = now()",
    )
    .bind(name)
    .bind(&head.0)
    .bind(head.1)
    .execute(conn)
    .await?;
    Ok(())
}

async fn run(args: &EventsArgs, threads: usize) -> Result<Report, String> {
    let jetstream = args.nats_url.is_some();
    let name = args.name.clone().unwrap_or_else(|| {
        if jetstream {
            "events_jetstream".into()
        } else {
            "events_outbox".into()
        }
    });
    let options: PgConnectOptions = args
        .database_url
        .parse::<PgConnectOptions>()
        .map_err(|e| format!("invalid --database-url: {e}"))?
        .application_name("rentify-loadgen-events")
        .disable_statement_logging();
    let mut admin = options
        .connect()
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let sql = |e: sqlx::Error| e.to_string();
    let synchronous_commit: String = sqlx::query_scalar("SHOW synchronous_commit")
        .fetch_one(&mut admin)
        .await
        .map_err(sql)?;
    let base: i64 = sqlx::query_scalar("SELECT coalesce(max(position), 0) FROM events")
        .fetch_one(&mut admin)
        .await
        .map_err(|e| format!("{e} (is the database migrated?)"))?;

    // The stream's order is (tx_id, position): its last event. (Ordered by
    // the xid8 column, not by its text: an unaliased `tx_id::text` is an
    // output column named tx_id, which ORDER BY would take, and "999" sorts
    // after "1000".)
    let head: (String, i64) = sqlx::query_as(
        "SELECT tx_id::text AS head_tx, position FROM events
          ORDER BY events.tx_id DESC, events.position DESC LIMIT 1",
    )
    .fetch_optional(&mut admin)
    .await
    .map_err(sql)?
    .unwrap_or_else(|| ("0".into(), 0));
    let names: Vec<String> = (0..args.consumers)
        .map(|i| format!("bench_events_{i}"))
        .collect();
    for consumer in &names {
        cursor_to(&mut admin, consumer, &head).await.map_err(sql)?;
    }
    if jetstream {
        cursor_to(&mut admin, rentify_events::jetstream::RELAY_CURSOR, &head)
            .await
            .map_err(sql)?;
    }
    sqlx::query("DELETE FROM event_retries WHERE consumer = ANY($1)")
        .bind(&names)
        .execute(&mut admin)
        .await
        .map_err(sql)?;

    // A stream and subjects of this run's own: nothing replays an earlier
    // run, and deleting it at the end leaves the server as it was.
    let run_id = format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis())
    );
    let settings = Settings {
        batch_size: args.batch_size,
        nats_stream: format!("BENCH_EVENTS_{run_id}"),
        nats_subject_prefix: format!("bench-{run_id}"),
        poll_interval: Duration::from_millis(args.poll_ms),
        max_attempts: 8,
        retry: Backoff {
            base: Duration::from_millis(500),
            max: Duration::from_secs(3600),
        },
    };

    let mut producer_conns = Vec::with_capacity(args.producers as usize);
    for _ in 0..args.producers {
        producer_conns.push(
            options
                .connect()
                .await
                .map_err(|e| format!("cannot connect: {e}"))?,
        );
    }
    // In-process a consumer holds one connection per batch and scans its
    // retries between batches; on JetStream the relay, each worker and
    // each retry scanner hold one.
    let pool = PgPoolOptions::new()
        .max_connections(2 * args.consumers + 2)
        .connect_with(options.clone())
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;

    let start = Instant::now() + Duration::from_millis(200);
    let start_wall = Utc::now() + chrono::Duration::milliseconds(200);
    let to_chrono = |d: Duration| chrono::Duration::from_std(d).unwrap_or_default();
    let timeline = Timeline {
        start,
        measure_from: start + args.warmup,
        stop_at: start + args.warmup + args.duration,
        start_wall,
        measure_from_wall: start_wall + to_chrono(args.warmup),
        stop_at_wall: start_wall + to_chrono(args.warmup + args.duration),
    };
    let probes: Vec<Arc<Probe>> = names
        .iter()
        .map(|_| Arc::new(Probe::new(base, timeline)))
        .collect();
    let consumers: Vec<Consumer> = names
        .iter()
        .zip(&probes)
        .map(|(name, probe)| Consumer::new(name.clone(), Recorder(probe.clone())).on("*"))
        .collect();
    let consumer_runtime = Runtime::start(
        pool.clone(),
        consumers,
        settings.clone(),
        args.nats_url.as_deref(),
    )
    .await
    .map_err(|e| format!("cannot start the consumers: {e:#}"))?;

    let period = Duration::from_secs_f64(
        f64::from(args.producers) * f64::from(args.events_per_tx) / args.rate,
    );
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let handles: Vec<_> = producer_conns
        .into_iter()
        .enumerate()
        .map(|(i, conn)| {
            tokio::spawn(producer(
                conn,
                i as u32,
                args.producers,
                args.events_per_tx,
                period,
                timeline,
                seed ^ ((i as u64 + 1) << 40),
            ))
        })
        .collect();
    let mut insert_us = histogram();
    let mut slip_us = histogram();
    let (mut produced, mut produced_in_window, mut payload_bytes, mut errors) = (0, 0, 0, 0);
    let mut first_error = None;
    for handle in handles {
        let rec = handle
            .await
            .map_err(|e| format!("producer panicked: {e}"))?;
        insert_us.add(&rec.insert_us).expect("same bounds");
        slip_us.add(&rec.slip_us).expect("same bounds");
        produced += rec.events;
        produced_in_window += rec.events_in_window;
        payload_bytes += rec.payload_bytes;
        errors += rec.errors;
        if first_error.is_none() {
            first_error = rec.first_error;
        }
    }

    // The backlog drains; lag keeps being recorded for the window's events.
    let window_end = timeline.stop_at.max(Instant::now());
    let deadline = window_end + args.drain_timeout;
    let drained_after_s = loop {
        if probes.iter().all(|p| p.handled() >= produced) {
            break Some(timeline.stop_at.elapsed().as_secs_f64());
        }
        if Instant::now() >= deadline {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    // A moment for a duplicate delivery to show, then stop.
    tokio::time::sleep(Duration::from_millis(500)).await;
    consumer_runtime.shutdown(Duration::from_secs(10)).await;
    let rss_peak_mib = status_mib("VmHWM:");
    let rss_mib = status_mib("VmRSS:");

    let mut checks = vec![Check {
        name: "producer transactions failed".into(),
        value: errors.to_string(),
        ok: errors == 0,
    }];
    checks.push(Check {
        name: "backlog drained".into(),
        value: match drained_after_s {
            Some(s) => format!("{s:.2} s after the window"),
            None => format!("not within {:.0} s", args.drain_timeout.as_secs_f64()),
        },
        ok: drained_after_s.is_some(),
    });
    let mut detail = Vec::new();
    let mut lag_all = histogram();
    let window_s = args.duration.as_secs_f64();
    let first_second = args.warmup.as_secs_f64().ceil() as usize;
    let last_second = (args.warmup + args.duration).as_secs_f64().floor() as usize;
    for (consumer, probe) in names.iter().zip(&probes) {
        // The consumers have stopped: take what they recorded.
        let tally = std::mem::replace(&mut *probe.tally.lock().expect("tally lock"), Tally::new());
        lag_all.add(&tally.lag_us).expect("same bounds");
        let per_second: Vec<u64> = (first_second..last_second)
            .map(|s| tally.per_second.get(s).copied().unwrap_or(0))
            .collect();
        let keys: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM processed_events p JOIN events e ON e.id = p.event_id
              WHERE p.consumer = $1 AND e.position > $2",
        )
        .bind(consumer)
        .bind(base)
        .fetch_one(&mut admin)
        .await
        .map_err(sql)?;
        let dead: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM dead_letters d JOIN events e ON e.id = d.event_id
              WHERE d.consumer = $1 AND e.position > $2",
        )
        .bind(consumer)
        .bind(base)
        .fetch_one(&mut admin)
        .await
        .map_err(sql)?;
        let retrying: i64 =
            sqlx::query_scalar("SELECT count(*) FROM event_retries WHERE consumer = $1")
                .bind(consumer)
                .fetch_one(&mut admin)
                .await
                .map_err(sql)?;
        checks.push(Check {
            name: format!("{consumer}: handled once each / produced"),
            value: format!(
                "{} / {produced} ({} duplicates, {} from before the run)",
                tally.handled, tally.duplicates, tally.foreign
            ),
            ok: tally.handled == produced && tally.duplicates == 0 && tally.foreign == 0,
        });
        checks.push(Check {
            name: format!("{consumer}: processed-event keys / produced"),
            value: format!("{keys} / {produced}"),
            ok: keys as u64 == produced,
        });
        checks.push(Check {
            name: format!("{consumer}: dead letters, pending retries"),
            value: format!("{dead}, {retrying}"),
            ok: dead == 0 && retrying == 0,
        });
        detail.push(ConsumerReport {
            name: consumer.clone(),
            handled: tally.handled,
            handled_per_s: tally.handled_in_window as f64 / window_s,
            handled_per_s_min_1s: per_second.iter().copied().min().unwrap_or(0),
            per_second,
            lag_ms: Latency::of(&tally.lag_us),
            duplicates: tally.duplicates,
        });
    }

    let nats_stream = if let Some(url) = &args.nats_url {
        let deleted = delete_stream(url, &settings.nats_stream).await;
        checks.push(Check {
            name: format!("JetStream stream {} deleted", settings.nats_stream),
            value: deleted.clone().err().unwrap_or_else(|| "yes".into()),
            ok: deleted.is_ok(),
        });
        Some(settings.nats_stream.clone())
    } else {
        None
    };

    Ok(Report {
        name,
        mode: if jetstream { "jetstream" } else { "in_process" },
        offered_rate: args.rate,
        producers: args.producers,
        events_per_tx: args.events_per_tx,
        consumers: args.consumers,
        batch_size: args.batch_size,
        poll_ms: args.poll_ms,
        threads,
        warmup_s: args.warmup.as_secs_f64(),
        duration_s: window_s,
        synchronous_commit,
        produced,
        produced_per_s: produced_in_window as f64 / window_s,
        payload_bytes_avg: if produced > 0 {
            payload_bytes as f64 / produced as f64
        } else {
            0.0
        },
        insert_ms: Latency::of(&insert_us),
        producer_slip_ms: Latency::of(&slip_us),
        handled: detail.iter().map(|c| c.handled).min().unwrap_or(0),
        handled_per_s: detail
            .iter()
            .map(|c| c.handled_per_s)
            .fold(f64::INFINITY, f64::min),
        handled_per_s_min_1s: detail
            .iter()
            .map(|c| c.handled_per_s_min_1s)
            .min()
            .unwrap_or(0),
        lag_ms: Latency::of(&lag_all),
        drained_after_s,
        rss_peak_mib,
        rss_mib,
        nats_stream,
        consumers_detail: detail,
        errors,
        first_error,
        checks,
    })
}

async fn delete_stream(url: &str, stream: &str) -> Result<(), String> {
    use rentify_events::jetstream::async_nats;
    let client = async_nats::connect(url)
        .await
        .map_err(|e| format!("cannot connect to NATS: {e}"))?;
    async_nats::jetstream::new(client)
        .delete_stream(stream)
        .await
        .map_err(|e| format!("cannot delete: {e}"))?;
    Ok(())
}
