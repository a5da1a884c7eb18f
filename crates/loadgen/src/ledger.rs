//! `rentify-loadgen ledger`: completed-booking settlement straight against
//! PostgreSQL through the Rust ledger API (`rentify_payments::ledger`), the
//! workload of issue 5's benchmark (scripts/bench.sh `ledger_settlement`).
//!
//! Each of `--connections` workers owns one connection and settles bookings
//! back to back (closed loop). One booking is two transactions:
//!
//! 1. **authorize** (the booking's approval, an earlier event in real life,
//!    so its own transaction: one autocommitted `ledger_transfer` call): a
//!    `pending` charge, gateway clearing → escrow (the rent) + platform revenue
//!    (the renter's service fee);
//! 2. **settle** (the booking completed: capture, settlement and payout commit
//!    together or not at all, in one statement through `ledger::batch`): the
//!    posting of that charge (the capture), a `settlement` escrow → the
//!    owner's wallet (tracked, one of N at random) and platform revenue (the
//!    commission), and a `payout` owner's wallet → payouts pending and
//!    platform revenue (the payout fee).
//!
//! So every one of the three transfers of a booking credits the one
//! platform-revenue account, and the wallet's running balance (the no-overdraft
//! CHECK) is written twice per booking. scripts/bench/ledger_settlement.sql is
//! the same SQL for pgbench.
//!
//! After the run the ledger is checked (posted entries sum to zero per
//! currency, every transfer balances, no wallet below zero, running balances
//! equal to the entries, the run's transfers all posted); a failed check or a
//! failed transaction makes the exit status 1.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use hdrhistogram::Histogram;

use crate::report::Latency;
use rentify_payments::ledger::{self, Leg, NewTransfer, Phase, TransferKind};
use serde::Serialize;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, PgConnection};
use uuid::Uuid;

use crate::parse_seconds;

/// Settles simulated completed bookings through the ledger (see the module
/// documentation) and checks the ledger afterwards.
#[derive(Parser, Debug)]
#[command(name = "rentify-loadgen ledger")]
pub struct LedgerArgs {
    /// The database, prepared by scripts/bench/ledger_setup.sql.
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,

    /// Concurrent workers, each with its own connection.
    #[arg(long, short = 'c', default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=1000))]
    connections: u32,

    /// Measured seconds.
    #[arg(long, short = 'd', default_value = "20", value_parser = parse_seconds)]
    duration: Duration,

    /// Seconds of load before measuring.
    #[arg(long, default_value = "5", value_parser = parse_seconds)]
    warmup: Duration,

    /// Currency of the accounts to use.
    #[arg(long, default_value = "EUR")]
    currency: String,

    /// `SET synchronous_commit` for the driver's sessions (e.g. `off`).
    /// Unset: the server's setting. Reported with the figures.
    #[arg(long)]
    synchronous_commit: Option<String>,

    /// Runtime threads; defaults to half the CPUs (PostgreSQL needs the rest).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    threads: Option<u32>,

    /// Scenario name shown in the report.
    #[arg(long, default_value = "ledger_settlement")]
    name: String,

    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// Transfers per settled booking: charge, settlement, payout.
const TRANSFERS_PER_BOOKING: u64 = 3;
/// Fixed fee the platform takes per payout, in minor units.
const PAYOUT_FEE: i64 = 25;
/// Highest latency tracked; slower transactions are clamped to it.
const HIST_MAX_MICROS: u64 = 60_000_000;
/// A worker gives up after this many failed transactions (a dead database).
const MAX_ERRORS: u64 = 100;

/// Account ids, read from the database once.
struct Accounts {
    clearing: Uuid,
    escrow: Uuid,
    revenue: Uuid,
    payouts_pending: Uuid,
    /// (wallet, owner), ordered by wallet id: index n-1 is pgbench's owner n.
    wallets: Vec<(Uuid, Uuid)>,
}

/// The renter of booking n's charge: the setup's numbering (`…-c000-…n`),
/// the same the pgbench script builds.
fn renter_id(n: usize) -> Uuid {
    Uuid::parse_str(&format!("00000000-0000-4000-c000-{n:012}")).expect("valid uuid")
}

/// What one worker recorded.
struct Recorded {
    authorize_us: Histogram<u64>,
    settle_us: Histogram<u64>,
    booking_us: Histogram<u64>,
    /// Bookings whose settle transaction committed inside the window.
    bookings: u64,
    /// Bookings settled in all, warm-up included.
    bookings_total: u64,
    errors: u64,
    first_error: Option<String>,
}

impl Recorded {
    fn new() -> Self {
        let hist = || Histogram::new_with_bounds(1, HIST_MAX_MICROS, 3).expect("bounds");
        Self {
            authorize_us: hist(),
            settle_us: hist(),
            booking_us: hist(),
            bookings: 0,
            bookings_total: 0,
            errors: 0,
            first_error: None,
        }
    }

    fn merge(&mut self, other: Self) {
        self.authorize_us
            .add(&other.authorize_us)
            .expect("same bounds");
        self.settle_us.add(&other.settle_us).expect("same bounds");
        self.booking_us.add(&other.booking_us).expect("same bounds");
        self.bookings += other.bookings;
        self.bookings_total += other.bookings_total;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    fn error(&mut self, what: &str, error: impl std::fmt::Display) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(format!("{what}: {error}"));
        }
    }
}

/// splitmix64: enough randomness to pick owners and amounts, no crate needed.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `low..=high` (modulo bias is irrelevant here).
    pub(crate) fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low + 1)
    }
}

/// The amounts of one booking; the pgbench script computes the same.
struct Amounts {
    subtotal: i64,
    service_fee: i64,
    commission: i64,
    earnings: i64,
}

impl Amounts {
    fn new(subtotal: i64) -> Self {
        let commission = subtotal * 15 / 100;
        Self {
            subtotal,
            service_fee: subtotal / 10,
            commission,
            earnings: subtotal - commission,
        }
    }
}

fn leg(account: Uuid, amount: i64) -> Leg {
    Leg { account, amount }
}

/// One booking's two transactions; returns the latency of each.
async fn settle_one(
    conn: &mut PgConnection,
    accounts: &Accounts,
    currency: &str,
    rng: &mut Rng,
) -> Result<(Duration, Duration), String> {
    let n = rng.between(1, accounts.wallets.len() as u64) as usize;
    let (wallet, owner) = accounts.wallets[n - 1];
    let renter = renter_id(n);
    let a = Amounts::new(rng.between(2_000, 50_000) as i64);
    let booking = Uuid::now_v7();

    let started = Instant::now();
    let charge = NewTransfer {
        kind: TransferKind::Charge,
        phase: Phase::Pending,
        currency,
        legs: vec![
            leg(accounts.clearing, -(a.subtotal + a.service_fee)),
            leg(accounts.escrow, a.subtotal),
            leg(accounts.revenue, a.service_fee),
        ],
        booking_id: Some(booking),
        user_id: Some(renter),
        intent_id: None,
        provider_ref: None,
        description: "authorization hold",
    };
    // Autocommit: one statement, its own transaction.
    let charge_id = ledger::transfer(&mut *conn, charge.clone())
        .await
        .map_err(|e| format!("authorize: {e}"))?;
    let authorized = Instant::now();

    // Capture, settlement and payout: one statement, committed together.
    let settlement = NewTransfer {
        kind: TransferKind::Settlement,
        phase: Phase::Posted,
        legs: vec![
            leg(accounts.escrow, -a.subtotal),
            leg(wallet, a.earnings),
            leg(accounts.revenue, a.commission),
        ],
        user_id: Some(owner),
        description: "escrow settled to the owner and the platform",
        ..charge.clone()
    };
    let payout = NewTransfer {
        kind: TransferKind::Payout,
        legs: vec![
            leg(wallet, -a.earnings),
            leg(accounts.payouts_pending, a.earnings - PAYOUT_FEE),
            leg(accounts.revenue, PAYOUT_FEE),
        ],
        booking_id: None,
        description: "payout of earnings",
        ..settlement.clone()
    };
    ledger::batch(&mut *conn, &[charge_id], &[settlement, payout])
        .await
        .map_err(|e| format!("settle: {e}"))?;
    let settled = Instant::now();
    Ok((authorized - started, settled - authorized))
}

async fn worker(
    mut conn: PgConnection,
    accounts: Arc<Accounts>,
    currency: Arc<str>,
    seed: u64,
    measure_from: Instant,
    measure_until: Instant,
) -> Recorded {
    let mut rec = Recorded::new();
    let mut rng = Rng(seed);
    while Instant::now() < measure_until && rec.errors < MAX_ERRORS {
        let started = Instant::now();
        match settle_one(&mut conn, &accounts, &currency, &mut rng).await {
            Ok((authorize, settle)) => {
                rec.bookings_total += 1;
                let done = Instant::now();
                if started >= measure_from && done <= measure_until {
                    let us = |d: Duration| (d.as_micros() as u64).clamp(1, HIST_MAX_MICROS);
                    rec.authorize_us.record(us(authorize)).expect("clamped");
                    rec.settle_us.record(us(settle)).expect("clamped");
                    rec.booking_us.record(us(done - started)).expect("clamped");
                }
                if done >= measure_from && done <= measure_until {
                    rec.bookings += 1;
                }
            }
            Err(error) => rec.error("transaction", error),
        }
    }
    rec
}

async fn load_accounts(conn: &mut PgConnection, currency: &str) -> Result<Accounts, String> {
    let house = async |conn: &mut PgConnection, kind: &str| -> Result<Uuid, String> {
        sqlx::query_scalar(
            "SELECT id FROM ledger_accounts WHERE kind = $1 AND owner_id IS NULL AND currency = $2",
        )
        .bind(kind)
        .bind(currency)
        .fetch_optional(conn)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| {
            format!("no {kind} account in {currency}: run scripts/bench/ledger_setup.sql first")
        })
    };
    let clearing = house(conn, "gateway_clearing").await?;
    let escrow = house(conn, "escrow").await?;
    let revenue = house(conn, "platform_revenue").await?;
    let payouts_pending = house(conn, "payouts_pending").await?;
    let wallets: Vec<(Uuid, Uuid)> = sqlx::query_as(
        "SELECT id, owner_id FROM ledger_accounts WHERE kind = 'wallet' AND currency = $1 ORDER BY id",
    )
    .bind(currency)
    .fetch_all(conn)
    .await
    .map_err(|e| e.to_string())?;
    if wallets.is_empty() {
        return Err(format!(
            "no wallets in {currency}: run scripts/bench/ledger_setup.sql first"
        ));
    }
    Ok(Accounts {
        clearing,
        escrow,
        revenue,
        payouts_pending,
        wallets,
    })
}

/// One check of the ledger after the run.
#[derive(Debug, Serialize)]
struct Check {
    name: &'static str,
    value: String,
    ok: bool,
}

async fn check_ledger(
    conn: &mut PgConnection,
    posted_before: i64,
    expected_new: u64,
) -> Result<Vec<Check>, sqlx::Error> {
    let mut checks = Vec::new();
    let per_currency: Vec<(String, i64)> = sqlx::query_as(
        "SELECT t.currency::text, sum(e.amount)::bigint FROM ledger_entries e
           JOIN ledger_transfers t ON t.id = e.transfer_id
          WHERE t.status = 'posted' GROUP BY 1 ORDER BY 1",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut text = String::new();
    for (currency, sum) in &per_currency {
        let _ = write!(
            text,
            "{}{currency} {sum}",
            if text.is_empty() { "" } else { ", " }
        );
    }
    checks.push(Check {
        name: "posted entries sum per currency",
        value: if text.is_empty() { "-".into() } else { text },
        ok: per_currency.iter().all(|(_, sum)| *sum == 0),
    });
    let unbalanced: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM ledger_transfers t
           LEFT JOIN (SELECT transfer_id, sum(amount) AS total,
                             sum(amount) FILTER (WHERE amount > 0) AS credits
                        FROM ledger_entries GROUP BY transfer_id) e ON e.transfer_id = t.id
          WHERE e.total IS DISTINCT FROM 0 OR e.credits IS DISTINCT FROM t.amount",
    )
    .fetch_one(&mut *conn)
    .await?;
    checks.push(Check {
        name: "transfers not summing to 0 (or to their amount)",
        value: unbalanced.to_string(),
        ok: unbalanced == 0,
    });
    let negative: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM ledger_accounts WHERE tracked AND posted - pending_debits < 0",
    )
    .fetch_one(&mut *conn)
    .await?;
    checks.push(Check {
        name: "wallets below zero",
        value: negative.to_string(),
        ok: negative == 0,
    });
    let drifted: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM ledger_balances b JOIN ledger_accounts a ON a.id = b.account_id
          WHERE a.tracked AND (a.posted, a.pending_debits) <> (b.posted, b.pending_debits)",
    )
    .fetch_one(&mut *conn)
    .await?;
    checks.push(Check {
        name: "wallet running balances != their entries",
        value: drifted.to_string(),
        ok: drifted == 0,
    });
    let posted_after: i64 =
        sqlx::query_scalar("SELECT count(*) FROM ledger_transfers WHERE status = 'posted'")
            .fetch_one(&mut *conn)
            .await?;
    let new = (posted_after - posted_before) as u64;
    checks.push(Check {
        name: "posted transfers written by this run",
        value: format!("{new} (3 x {} bookings = {expected_new})", expected_new / 3),
        ok: new == expected_new,
    });
    Ok(checks)
}

#[derive(Debug, Serialize)]
struct Report {
    name: String,
    connections: u32,
    threads: usize,
    warmup_s: f64,
    duration_s: f64,
    synchronous_commit: String,
    owners: usize,
    bookings: u64,
    bookings_per_s: f64,
    transfers_per_s: f64,
    transactions_per_s: f64,
    /// The authorize transaction: one autocommitted `ledger_transfer`.
    authorize_ms: Option<Latency>,
    /// The settle transaction: BEGIN, post, 2 × ledger_transfer, COMMIT.
    settle_ms: Option<Latency>,
    /// Both, back to back.
    booking_ms: Option<Latency>,
    errors: u64,
    first_error: Option<String>,
    checks: Vec<Check>,
    rss_peak_mib: Option<f64>,
}

fn rss_peak_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

pub fn main(args: LedgerArgs) -> Result<ExitCode, String> {
    if args.duration.is_zero() {
        return Err("--duration must be above zero".to_owned());
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
    let failed = report.errors > 0 || report.checks.iter().any(|c| !c.ok) || report.bookings == 0;
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&report).expect("report serializes")
        );
    } else {
        print_report(&report);
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

async fn run(args: &LedgerArgs, threads: usize) -> Result<Report, String> {
    let mut options: PgConnectOptions = args
        .database_url
        .parse()
        .map_err(|e| format!("invalid --database-url: {e}"))?;
    options = options
        .application_name("rentify-loadgen-ledger")
        .disable_statement_logging();
    if let Some(mode) = &args.synchronous_commit {
        options = options.options([("synchronous_commit", mode.as_str())]);
    }
    let mut admin = options
        .connect()
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let synchronous_commit: String = sqlx::query_scalar("SHOW synchronous_commit")
        .fetch_one(&mut admin)
        .await
        .map_err(|e| e.to_string())?;
    let accounts = Arc::new(load_accounts(&mut admin, &args.currency).await?);
    let posted_before: i64 =
        sqlx::query_scalar("SELECT count(*) FROM ledger_transfers WHERE status = 'posted'")
            .fetch_one(&mut admin)
            .await
            .map_err(|e| e.to_string())?;

    let mut conns = Vec::with_capacity(args.connections as usize);
    for _ in 0..args.connections {
        conns.push(
            options
                .connect()
                .await
                .map_err(|e| format!("cannot connect: {e}"))?,
        );
    }
    let currency: Arc<str> = Arc::from(args.currency.as_str());
    let start = Instant::now();
    let measure_from = start + args.warmup;
    let measure_until = measure_from + args.duration;
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let handles: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(i, conn)| {
            tokio::spawn(worker(
                conn,
                accounts.clone(),
                currency.clone(),
                seed ^ ((i as u64 + 1) << 40),
                measure_from,
                measure_until,
            ))
        })
        .collect();
    let mut rec = Recorded::new();
    for handle in handles {
        rec.merge(handle.await.map_err(|e| format!("worker panicked: {e}"))?);
    }
    let duration_s = args.duration.as_secs_f64();

    let checks = check_ledger(
        &mut admin,
        posted_before,
        rec.bookings_total * TRANSFERS_PER_BOOKING,
    )
    .await
    .map_err(|e| format!("ledger checks: {e}"))?;
    let bookings_per_s = rec.bookings as f64 / duration_s;
    Ok(Report {
        name: args.name.clone(),
        connections: args.connections,
        threads,
        warmup_s: args.warmup.as_secs_f64(),
        duration_s,
        synchronous_commit,
        owners: accounts.wallets.len(),
        bookings: rec.bookings,
        bookings_per_s,
        transfers_per_s: bookings_per_s * TRANSFERS_PER_BOOKING as f64,
        transactions_per_s: bookings_per_s * 2.0,
        authorize_ms: Latency::of(&rec.authorize_us),
        settle_ms: Latency::of(&rec.settle_us),
        booking_ms: Latency::of(&rec.booking_us),
        errors: rec.errors,
        first_error: rec.first_error,
        checks,
        rss_peak_mib: rss_peak_mib(),
    })
}

fn print_report(r: &Report) {
    println!(
        "scenario    {}  (rentify_payments::ledger, 3 transfers per booking, all crediting platform_revenue)",
        r.name
    );
    println!(
        "load        {} connections on {} thread{}, {:.2} s measured after {:.2} s warm-up, {} owner wallets, synchronous_commit={}",
        r.connections,
        r.threads,
        if r.threads == 1 { "" } else { "s" },
        r.duration_s,
        r.warmup_s,
        r.owners,
        r.synchronous_commit
    );
    println!(
        "throughput  {:.1} transfers/s  ({:.1} bookings/s, {:.1} transactions/s; {} bookings)",
        r.transfers_per_s, r.bookings_per_s, r.transactions_per_s, r.bookings
    );
    println!("authorize   ms {}", Latency::line(&r.authorize_ms, 3));
    println!("settle      ms {}", Latency::line(&r.settle_ms, 3));
    println!("booking     ms {}", Latency::line(&r.booking_ms, 3));
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
    if let Some(rss) = r.rss_peak_mib {
        println!("driver RSS  peak {rss:.1} MiB");
    }
}
