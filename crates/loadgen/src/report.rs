//! The figures of one run, as text for people or as one JSON object for
//! scripts that compare runs.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};

use serde::Serialize;

use crate::run::Outcome;

/// How the run was set up, echoed in the report so that a figure is never
/// read without the load that produced it.
pub struct Setup {
    pub name: String,
    pub method: String,
    pub url: String,
    pub concurrency: usize,
    pub threads: usize,
    pub warmup_s: f64,
    /// Statuses of 400 or above that are answers the scenario expects (a
    /// booking race is mostly 409s), so they do not count as failures.
    pub expected_statuses: Vec<u16>,
    /// Open-loop offered load (`--rate`), if any.
    pub rate: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub name: String,
    pub method: String,
    pub url: String,
    pub concurrency: usize,
    pub threads: usize,
    pub warmup_s: f64,
    /// Open-loop offered load in requests per second; absent for closed loop.
    pub offered_rps: Option<f64>,
    /// Measured window in seconds (see `Outcome::window`).
    pub duration_s: f64,
    /// Requests that got an HTTP response, whatever its status.
    pub requests: u64,
    /// Responses per second of the window, counting only those that arrived
    /// within it (see `Outcome::responses_in_window`).
    pub throughput_rps: f64,
    /// Absent when no request got a response.
    pub latency_ms: Option<Latency>,
    /// Responses per status code (keys are strings for JSON's sake).
    pub status: BTreeMap<String, u64>,
    /// Requests that got no response at all.
    pub transport_errors: u64,
    /// `transport_errors` per kind: connect, timeout, closed, other.
    pub errors: BTreeMap<String, u64>,
    /// Transport errors plus responses with status 400 or above that the
    /// scenario did not expect (`--expect-status`): a benchmark whose answers
    /// are all 401s or 500s measured the wrong thing.
    pub failed: u64,
}

/// Quantiles of a histogram of microseconds, in milliseconds: the one
/// shape every mode (HTTP, ledger, events) reports.
#[derive(Debug, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p99_9: f64,
    pub max: f64,
    pub mean: f64,
}

impl Latency {
    /// `None` for an empty histogram.
    pub fn of(hist: &hdrhistogram::Histogram<u64>) -> Option<Self> {
        let ms = |micros: u64| micros as f64 / 1000.0;
        (!hist.is_empty()).then(|| Self {
            p50: ms(hist.value_at_quantile(0.50)),
            p90: ms(hist.value_at_quantile(0.90)),
            p99: ms(hist.value_at_quantile(0.99)),
            p99_9: ms(hist.value_at_quantile(0.999)),
            max: ms(hist.max()),
            mean: hist.mean() / 1000.0,
        })
    }

    /// `p50 … max` with `decimals` places, or `-` when there is nothing.
    pub fn line(latency: &Option<Self>, decimals: usize) -> String {
        match latency {
            Some(l) => format!(
                "p50 {:.d$}  p90 {:.d$}  p99 {:.d$}  p99.9 {:.d$}  max {:.d$}",
                l.p50,
                l.p90,
                l.p99,
                l.p99_9,
                l.max,
                d = decimals
            ),
            None => "-".into(),
        }
    }
}

impl Report {
    pub fn new(setup: Setup, outcome: &Outcome) -> Self {
        let hist = &outcome.latency_us;
        let requests = hist.len();
        let latency = Latency::of(hist);
        let duration_s = outcome.window.as_secs_f64();
        let transport_errors = outcome.errors.values().sum();
        let failed_responses: u64 = outcome
            .statuses
            .iter()
            .filter(|(status, _)| **status >= 400 && !setup.expected_statuses.contains(status))
            .map(|(_, count)| count)
            .sum();
        Self {
            name: setup.name,
            method: setup.method,
            url: setup.url,
            concurrency: setup.concurrency,
            threads: setup.threads,
            warmup_s: setup.warmup_s,
            offered_rps: setup.rate,
            duration_s,
            requests,
            throughput_rps: if duration_s > 0.0 {
                requests as f64 / duration_s
            } else {
                0.0
            },
            latency_ms: latency,
            status: outcome
                .statuses
                .iter()
                .map(|(s, n)| (s.to_string(), *n))
                .collect(),
            transport_errors,
            errors: outcome
                .errors
                .iter()
                .map(|(k, n)| (k.to_string(), *n))
                .collect(),
            failed: failed_responses + transport_errors,
        }
    }

    /// True when nothing succeeded (including when nothing was sent), which
    /// the binary turns into a non-zero exit so scripts notice a dead target.
    pub fn all_failed(&self) -> bool {
        self.failed == self.requests + self.transport_errors
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "scenario    {}  ({} {})",
            self.name, self.method, self.url
        )?;
        writeln!(
            f,
            "load        {} workers on {} thread{}, {:.2} s measured after {:.2} s warm-up",
            self.concurrency,
            self.threads,
            if self.threads == 1 { "" } else { "s" },
            self.duration_s,
            self.warmup_s,
        )?;
        if let Some(rate) = self.offered_rps {
            writeln!(
                f,
                "offered     {rate:.0} req/s, open loop (latency from each request's due time)"
            )?;
        }
        writeln!(
            f,
            "requests    {}  ({:.1} req/s)",
            self.requests, self.throughput_rps
        )?;
        match &self.latency_ms {
            Some(l) => writeln!(
                f,
                "latency ms  p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
                l.p50, l.p90, l.p99, l.p99_9, l.max
            )?,
            None => writeln!(f, "latency ms  -")?,
        }
        writeln!(f, "status      {}", counts(&self.status))?;
        write!(f, "errors      {}", self.transport_errors)?;
        if self.transport_errors > 0 {
            write!(f, "  ({})", counts(&self.errors))?;
        }
        Ok(())
    }
}

/// `200: 1234, 404: 5`, or `-` when empty.
fn counts(map: &BTreeMap<String, u64>) -> String {
    if map.is_empty() {
        return "-".to_owned();
    }
    let mut out = String::new();
    for (key, count) in map {
        if !out.is_empty() {
            out.push_str(", ");
        }
        let _ = write!(out, "{key}: {count}");
    }
    out
}
