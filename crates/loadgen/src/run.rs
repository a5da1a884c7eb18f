//! The closed loop: workers that send requests back to back and record what
//! came back.
//!
//! Closed loop means each worker waits for its response (body included) before
//! sending the next request, so the offered load adapts to the server: the
//! figures answer "how many requests per second, at what latency, with N
//! clients busy all the time", which is what the benchmarks compare from one
//! change to the next. It is not an open-loop (fixed-rate) generator, so tail
//! latency under overload is understated (coordinated omission); compare runs
//! at the same concurrency rather than reading p99.9 as an SLO figure.
//!
//! Each worker owns one keep-alive connection (hyper's connection-level
//! client) rather than sharing a pool: a pooled client races a new connect
//! against the return of a busy connection and so opens extra ones (59 for 32
//! workers in a trial run), which the server would pay for in accepts. Here N
//! workers means exactly N connections, reopened only when the server closes
//! one.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{HOST, HeaderName, HeaderValue};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Placeholder replaced by a fresh UUIDv4 in every request (each occurrence
/// its own), so that e.g. each request carries its own `Idempotency-Key` and
/// none is deduplicated.
pub const UUID_PLACEHOLDER: &str = "{{uuid}}";
/// Placeholder replaced by a run-wide request counter (0, 1, 2, …, warm-up
/// included), for values that must differ per request but stay readable.
pub const SEQ_PLACEHOLDER: &str = "{{seq}}";
/// Placeholders replaced by RFC 3339 UTC times an hour apart per request:
/// `{{seq_hour}}` is 2030-01-01T00:00:00Z plus `seq` hours and
/// `{{seq_hour_end}}` one hour later, so each request can book its own slot.
pub const SEQ_HOUR_PLACEHOLDER: &str = "{{seq_hour}}";
pub const SEQ_HOUR_END_PLACEHOLDER: &str = "{{seq_hour_end}}";

/// 2030-01-01T00:00:00Z in seconds since the Unix epoch.
const SEQ_HOUR_BASE: u64 = 1_893_456_000;

/// Highest latency the histograms track; slower responses are clamped to it.
/// One minute is well beyond any timeout a benchmark should allow.
const HIST_MAX_MICROS: u64 = 60_000_000;

/// What to send and how hard, already validated.
pub struct Config {
    pub request: RequestTemplate,
    pub concurrency: usize,
    pub warmup: Duration,
    pub duration: Duration,
    pub max_requests: Option<u64>,
    pub timeout: Duration,
    /// Open-loop mode: requests per second across all workers, each worker
    /// sending on its own fixed schedule (see [`worker`]). `None` is closed
    /// loop: each worker sends its next request as soon as the last returns.
    pub rate: Option<f64>,
    /// Keep the body of the first response (warm-up included) whose status
    /// is not this one, e.g. `Some(200)`, so a report can show what the
    /// server said; `None` keeps nothing.
    pub capture_unless: Option<u16>,
}

/// Longest part of a captured response body that is kept, in bytes.
const CAPTURE_MAX_BYTES: usize = 2_048;

/// Everything the workers recorded during the measured window.
pub struct Outcome {
    /// Latency of every request that got a response (any status), in µs.
    pub latency_us: Histogram<u64>,
    /// Responses per HTTP status code.
    pub statuses: BTreeMap<u16, u64>,
    /// Requests that got no response, per kind of failure.
    pub errors: BTreeMap<ErrorKind, u64>,
    /// Responses that arrived before the window closed: the throughput
    /// figure, unaffected by a straggler that takes up to `--timeout` more.
    pub responses_in_window: u64,
    /// The measured window: from the end of the warm-up to `--duration`
    /// later, or to the last response if `--max-requests` ended it sooner.
    pub window: Duration,
    /// With `Config::capture_unless`: the first other status and the start
    /// of its body (lossy UTF-8).
    pub first_unexpected: Option<(u16, String)>,
}

/// Why a request got no HTTP response.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ErrorKind {
    /// Could not open a TCP connection (server down, backlog full, no ports).
    Connect,
    /// No complete response within `--timeout`.
    Timeout,
    /// The server closed the connection before (or while) answering.
    Closed,
    /// Anything else hyper reported (protocol errors and the like).
    Other,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Timeout => "timeout",
            Self::Closed => "closed",
            Self::Other => "other",
        }
    }

    fn of_hyper(err: &hyper::Error) -> Self {
        if err.is_timeout() {
            Self::Timeout
        } else if err.is_incomplete_message() || err.is_closed() || err.is_canceled() {
            Self::Closed
        } else {
            Self::Other
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string with `{{uuid}}` / `{{seq}}` placeholders, split once at start-up
/// so that each request only concatenates.
#[derive(Clone, Debug)]
struct Template {
    parts: Vec<Part>,
}

#[derive(Clone, Debug)]
enum Part {
    Literal(String),
    Uuid,
    Seq,
    SeqHour { offset: u64 },
}

impl Template {
    fn parse(mut text: &str) -> Self {
        let mut parts = Vec::new();
        loop {
            let next = [
                (UUID_PLACEHOLDER, Part::Uuid),
                (SEQ_PLACEHOLDER, Part::Seq),
                (SEQ_HOUR_PLACEHOLDER, Part::SeqHour { offset: 0 }),
                (SEQ_HOUR_END_PLACEHOLDER, Part::SeqHour { offset: 1 }),
            ]
            .into_iter()
            .filter_map(|(needle, part)| text.find(needle).map(|at| (at, needle.len(), part)))
            .min_by_key(|(at, _, _)| *at);
            let Some((at, len, part)) = next else { break };
            if at > 0 {
                parts.push(Part::Literal(text[..at].to_owned()));
            }
            parts.push(part);
            text = &text[at + len..];
        }
        if !text.is_empty() {
            parts.push(Part::Literal(text.to_owned()));
        }
        Self { parts }
    }

    /// The text itself when it has no placeholder, so it can be built once.
    fn as_fixed(&self) -> Option<String> {
        self.parts
            .iter()
            .map(|part| match part {
                Part::Literal(text) => Some(text.as_str()),
                Part::Uuid | Part::Seq | Part::SeqHour { .. } => None,
            })
            .collect()
    }

    fn render(&self, seq: u64) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Uuid => {
                    let mut buf = uuid::Uuid::encode_buffer();
                    out.push_str(uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf));
                }
                Part::Seq => {
                    use std::fmt::Write as _;
                    let _ = write!(out, "{seq}");
                }
                Part::SeqHour { offset } => {
                    out.push_str(&rfc3339(SEQ_HOUR_BASE + (seq + offset) * 3_600));
                }
            }
        }
        out
    }
}

/// Seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ` (civil-from-days,
/// Howard Hinnant's algorithm; no calendar crate needed).
fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

/// One part of the request: built once if it has no placeholder, else
/// rendered per request.
///
/// Placeholders expand only to hex digits, hyphens, decimal digits and the
/// `T`, `:` and `Z` of a timestamp, so a
/// template that renders to a valid value once renders to a valid value every
/// time; `RequestTemplate::new` checks one rendering, which is what makes the
/// `expect`s in `RequestTemplate::build` unreachable.
enum Field<T> {
    Fixed(T),
    Templated(Template),
    /// Request `seq` takes value `seq % len` of a list fixed up front.
    Cycle(Vec<T>),
}

impl<T: Clone> Field<T> {
    fn new<E: fmt::Display>(
        text: &str,
        what: &str,
        convert: impl Fn(String) -> Result<T, E>,
    ) -> Result<Self, String> {
        let template = Template::parse(text);
        match template.as_fixed() {
            Some(fixed) => convert(fixed).map(Self::Fixed),
            None => convert(template.render(0)).map(|_| Self::Templated(template)),
        }
        .map_err(|err| format!("invalid {what} {text:?}: {err}"))
    }

    fn get(&self, seq: u64, convert: impl Fn(String) -> Option<T>) -> T {
        match self {
            Self::Fixed(value) => value.clone(),
            Self::Templated(template) => {
                convert(template.render(seq)).expect("template validated by RequestTemplate::new")
            }
            Self::Cycle(values) => values[(seq % values.len() as u64) as usize].clone(),
        }
    }
}

/// The request every worker sends, with its placeholders still to fill in.
pub struct RequestTemplate {
    /// `host:port` to open connections to.
    connect_to: String,
    method: Method,
    /// Origin form (`/path?query`): each worker talks to the server directly,
    /// so the absolute form meant for proxies would be wrong.
    path: Field<Uri>,
    headers: Vec<(HeaderName, Field<HeaderValue>)>,
    body: Field<Bytes>,
}

impl RequestTemplate {
    /// Validates everything up front so that a typo fails the run at once
    /// instead of turning every request into an error.
    ///
    /// Only `http://` is supported (benchmarks run over loopback, and TLS
    /// would measure the load generator's crypto as much as the server), and
    /// only loopback hosts unless `allow_non_loopback` is set, because this
    /// machine must never send load anywhere else. Placeholders may appear in
    /// the path and query, not in the host: every worker keeps one connection.
    pub fn new(
        method: &str,
        url: &str,
        headers: &[String],
        body: &str,
        allow_non_loopback: bool,
    ) -> Result<Self, String> {
        let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes())
            .map_err(|_| format!("invalid method {method:?}"))?;

        let scheme_end = url.find("://").map_or(0, |at| at + 3);
        match url[..scheme_end].to_ascii_lowercase().as_str() {
            "http://" => {}
            "https://" => return Err(format!("URL {url:?}: https is not supported")),
            _ => return Err(format!("URL {url:?} must start with http://")),
        }
        let rest = &url[scheme_end..];
        let (authority, path) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
        if authority.contains("{{") {
            return Err(format!(
                "URL {url:?}: placeholders are allowed in the path and query only"
            ));
        }
        let target = Uri::try_from(format!("http://{authority}/"))
            .map_err(|err| format!("invalid URL {url:?}: {err}"))?;
        let host = target
            .host()
            .filter(|host| !host.is_empty())
            .ok_or_else(|| format!("URL {url:?} has no host"))?;
        if !allow_non_loopback && !is_loopback(host) {
            return Err(format!(
                "host {host:?} is not a loopback address; pass --allow-non-loopback to target it anyway"
            ));
        }
        let connect_to = format!("{host}:{}", target.port_u16().unwrap_or(80));
        let path = match path {
            "" => "/".to_owned(),
            query if query.starts_with('?') => format!("/{query}"),
            path => path.to_owned(),
        };
        let path = Field::new(&path, "URL path", Uri::try_from)?;

        let mut headers = headers
            .iter()
            .map(|line| {
                let (name, value) = line
                    .split_once(':')
                    .ok_or_else(|| format!("header {line:?} must look like 'Name: value'"))?;
                let name = HeaderName::from_bytes(name.trim().as_bytes())
                    .map_err(|_| format!("invalid header name in {line:?}"))?;
                let value = Field::new(value.trim(), "header value", HeaderValue::try_from)?;
                Ok((name, value))
            })
            .collect::<Result<Vec<_>, String>>()?;
        // HTTP/1.1 requires Host; the connection-level client does not add it.
        if !headers.iter().any(|(name, _)| name == HOST) {
            let value = HeaderValue::try_from(authority)
                .map_err(|err| format!("invalid URL {url:?}: {err}"))?;
            headers.insert(0, (HOST, Field::Fixed(value)));
        }
        let body = Field::new(body, "body", |text| Ok::<_, String>(Bytes::from(text)))?;
        Ok(Self {
            connect_to,
            method,
            path,
            headers,
            body,
        })
    }

    /// GETs of `paths` (each `/path?query`, already encoded) in turn on
    /// `base_url` (`http://host:port`, checked as by [`RequestTemplate::new`]):
    /// request `seq` takes path `seq % paths.len()`, so a run sends a fixed,
    /// reproducible mix.
    pub fn cycle(
        base_url: &str,
        paths: &[String],
        allow_non_loopback: bool,
    ) -> Result<Self, String> {
        if paths.is_empty() {
            return Err("no paths to cycle through".to_owned());
        }
        let mut template = Self::new(
            "GET",
            base_url.trim_end_matches('/'),
            &[],
            "",
            allow_non_loopback,
        )?;
        let uris = paths
            .iter()
            .map(|path| {
                Uri::try_from(path.as_str()).map_err(|err| format!("invalid path {path:?}: {err}"))
            })
            .collect::<Result<Vec<_>, String>>()?;
        template.path = Field::Cycle(uris);
        Ok(template)
    }

    fn build(&self, seq: u64) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(
            self.body.get(seq, |text| Some(Bytes::from(text))),
        ));
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.path.get(seq, |text| Uri::try_from(text).ok());
        let headers = request.headers_mut();
        for (name, value) in &self.headers {
            headers.append(
                name.clone(),
                value.get(seq, |text| HeaderValue::try_from(text).ok()),
            );
        }
        request
    }
}

fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// State shared by all workers.
struct Shared {
    request: RequestTemplate,
    /// When the run (warm-up included) began; open-loop schedules start here.
    start: Instant,
    /// Open loop: seconds between two requests of one worker.
    period: Option<Duration>,
    concurrency: usize,
    /// Requests that start before this instant are warm-up: sent, not recorded.
    measure_from: Instant,
    /// No request starts at or after this instant.
    stop_at: Instant,
    timeout: Duration,
    max_requests: Option<u64>,
    /// Source of `{{seq}}`.
    seq: AtomicU64,
    /// Measured requests started so far, for `--max-requests`.
    started: AtomicU64,
    capture_unless: Option<u16>,
    /// Set once a body has been captured (see `Config::capture_unless`).
    captured: AtomicBool,
    first_unexpected: Mutex<Option<(u16, String)>>,
}

/// What one worker recorded; merged after the run so the hot loop never
/// contends on a lock.
struct WorkerStats {
    latency_us: Histogram<u64>,
    statuses: BTreeMap<u16, u64>,
    errors: BTreeMap<ErrorKind, u64>,
    responses_in_window: u64,
    last_done: Option<Instant>,
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_MICROS, 3).expect("static histogram bounds are valid")
}

/// Runs the load and returns what the measured window recorded.
pub async fn run(config: Config) -> Outcome {
    let start = Instant::now();
    let measure_from = start + config.warmup;
    let stop_at = measure_from + config.duration;
    let period = config
        .rate
        .map(|rate| Duration::from_secs_f64(config.concurrency as f64 / rate));
    let shared = Arc::new(Shared {
        request: config.request,
        start,
        period,
        concurrency: config.concurrency,
        measure_from,
        stop_at,
        timeout: config.timeout,
        max_requests: config.max_requests,
        seq: AtomicU64::new(0),
        started: AtomicU64::new(0),
        capture_unless: config.capture_unless,
        captured: AtomicBool::new(false),
        first_unexpected: Mutex::new(None),
    });

    let workers: Vec<_> = (0..config.concurrency)
        .map(|index| tokio::spawn(worker(Arc::clone(&shared), index)))
        .collect();

    let mut outcome = Outcome {
        latency_us: new_histogram(),
        statuses: BTreeMap::new(),
        errors: BTreeMap::new(),
        responses_in_window: 0,
        window: Duration::ZERO,
        first_unexpected: None,
    };
    let mut last_done = None;
    for handle in workers {
        let stats = handle.await.expect("worker task panicked");
        outcome
            .latency_us
            .add(&stats.latency_us)
            .expect("histograms share bounds");
        for (status, count) in stats.statuses {
            *outcome.statuses.entry(status).or_default() += count;
        }
        for (kind, count) in stats.errors {
            *outcome.errors.entry(kind).or_default() += count;
        }
        outcome.responses_in_window += stats.responses_in_window;
        last_done = last_done.max(stats.last_done);
    }
    // A run cut short by --max-requests ends with its last response; any
    // other ends when the window does.
    let end = last_done.map_or(stop_at, |done| done.min(stop_at));
    outcome.window = end.saturating_duration_since(measure_from);
    outcome.first_unexpected = shared
        .first_unexpected
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .take();
    outcome
}

/// One client: one connection, one request at a time.
///
/// Closed loop, it sends again as soon as a response arrives. Open loop
/// (`--rate`), request `k` of worker `i` is due at `start + (i / N + k) ×
/// period`; the worker sleeps until then, or sends at once when it is behind,
/// and the latency is measured from the due time, not the send time, so a
/// slow server cannot hide its queueing (no coordinated omission, as wrk2).
async fn worker(shared: Arc<Shared>, index: usize) -> WorkerStats {
    let mut stats = WorkerStats {
        latency_us: new_histogram(),
        statuses: BTreeMap::new(),
        errors: BTreeMap::new(),
        responses_in_window: 0,
        last_done: None,
    };
    let mut connection = None;
    let mut due = shared
        .period
        .map(|period| shared.start + period.mul_f64(index as f64 / shared.concurrency as f64));
    loop {
        let sent_at = match (due, shared.period) {
            (Some(at), Some(period)) => {
                if at >= shared.stop_at {
                    break;
                }
                tokio::time::sleep_until(at.into()).await;
                due = Some(at + period);
                at
            }
            _ => Instant::now(),
        };
        if sent_at >= shared.stop_at {
            break;
        }
        let measured = sent_at >= shared.measure_from;
        if measured
            && let Some(max) = shared.max_requests
            && shared.started.fetch_add(1, Ordering::Relaxed) >= max
        {
            break;
        }
        let seq = shared.seq.fetch_add(1, Ordering::Relaxed);
        let request = shared.request.build(seq);
        let capture = shared
            .capture_unless
            .filter(|_| !shared.captured.load(Ordering::Relaxed));
        let exchange = exchange(
            &mut connection,
            &shared.request.connect_to,
            request,
            capture,
        );
        let result = tokio::time::timeout(shared.timeout, exchange).await;
        let done = Instant::now();
        if result.is_err() {
            // The connection may still carry the late response: never reuse it.
            connection = None;
        }
        if let Ok(Ok((status, Some(body)))) = &result
            && !shared.captured.swap(true, Ordering::Relaxed)
        {
            *shared
                .first_unexpected
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) =
                Some((*status, String::from_utf8_lossy(body).into_owned()));
        }
        let result = result.map(|answer| answer.map(|(status, _)| status));
        if !measured {
            continue;
        }
        stats.last_done = Some(done);
        match result {
            Ok(Ok(status)) => {
                let micros = u64::try_from((done - sent_at).as_micros()).unwrap_or(u64::MAX);
                stats.latency_us.saturating_record(micros.max(1));
                *stats.statuses.entry(status).or_default() += 1;
                if done <= shared.stop_at {
                    stats.responses_in_window += 1;
                }
            }
            Ok(Err(kind)) => *stats.errors.entry(kind).or_default() += 1,
            Err(_elapsed) => *stats.errors.entry(ErrorKind::Timeout).or_default() += 1,
        }
    }
    stats
}

type Connection = SendRequest<Full<Bytes>>;

/// Sends one request on the worker's connection, opening one first if there
/// is none or the server closed it (which is not an error: servers may end
/// keep-alive whenever they like), and reads the whole body, since a response
/// only counts once it is complete and only then is the connection free.
///
/// Connection setup, when it happens, is part of the request's latency, as
/// it is for a real client.
///
/// With `capture_unless` set and a different status, the start of the body
/// (up to `CAPTURE_MAX_BYTES`) comes back too.
async fn exchange(
    connection: &mut Option<Connection>,
    connect_to: &str,
    request: Request<Full<Bytes>>,
    capture_unless: Option<u16>,
) -> Result<(u16, Option<Vec<u8>>), ErrorKind> {
    let reusable = match connection.as_mut() {
        Some(sender) => sender.ready().await.is_ok(),
        None => false,
    };
    if !reusable {
        *connection = None;
        *connection = Some(connect(connect_to).await?);
    }
    let sender = connection.as_mut().expect("connection was just set");
    let result = async {
        let response = sender.send_request(request).await?;
        let status = response.status().as_u16();
        let mut kept = capture_unless
            .is_some_and(|expected| expected != status)
            .then(Vec::new);
        let mut body = response.into_body();
        while let Some(frame) = body.frame().await {
            let frame = frame?;
            if let (Some(kept), Some(data)) = (kept.as_mut(), frame.data_ref()) {
                let room = CAPTURE_MAX_BYTES.saturating_sub(kept.len());
                kept.extend_from_slice(&data[..data.len().min(room)]);
            }
        }
        Ok((status, kept))
    }
    .await;
    result.map_err(|err: hyper::Error| {
        *connection = None;
        ErrorKind::of_hyper(&err)
    })
}

async fn connect(connect_to: &str) -> Result<Connection, ErrorKind> {
    let stream = TcpStream::connect(connect_to)
        .await
        .map_err(|_| ErrorKind::Connect)?;
    // Small requests back to back: Nagle's algorithm would add delay, not save packets.
    stream.set_nodelay(true).map_err(|_| ErrorKind::Connect)?;
    let (sender, driver) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|_| ErrorKind::Connect)?;
    // The driver does the socket I/O and ends when the connection closes.
    tokio::spawn(driver);
    Ok(sender)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_without_placeholders_is_fixed() {
        let template = Template::parse("plain {text}");
        assert_eq!(template.as_fixed().as_deref(), Some("plain {text}"));
    }

    #[test]
    fn seq_hours_are_consecutive_rfc3339_times() {
        let template = Template::parse("{{seq_hour}}/{{seq_hour_end}}");
        assert_eq!(
            template.render(0),
            "2030-01-01T00:00:00Z/2030-01-01T01:00:00Z"
        );
        assert_eq!(
            template.render(24 * 59 + 23),
            "2030-03-01T23:00:00Z/2030-03-02T00:00:00Z"
        );
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn template_substitutes_seq_and_uuid() {
        let template = Template::parse("k-{{seq}}-{{uuid}}-{{seq}}");
        assert!(template.as_fixed().is_none());
        let rendered = template.render(42);
        let parts: Vec<_> = rendered.splitn(3, '-').collect();
        assert_eq!(parts[0], "k");
        assert_eq!(parts[1], "42");
        let (uuid, tail) = parts[2].rsplit_once('-').unwrap();
        assert_eq!(tail, "42");
        let uuid = uuid::Uuid::parse_str(uuid).unwrap();
        assert_eq!(uuid.get_version_num(), 4);
        assert_ne!(
            template.render(42),
            rendered,
            "each rendering gets a fresh UUID"
        );
    }

    #[test]
    fn request_template_rejects_non_loopback_and_https() {
        let new = |url: &str| RequestTemplate::new("GET", url, &[], "", false).map(|_| ());
        assert!(new("http://127.0.0.1:8080/x").is_ok());
        assert!(new("http://localhost/x").is_ok());
        assert!(new("http://[::1]:80/").is_ok());
        assert!(new("http://127.0.0.1/items/{{seq}}").is_ok());
        assert!(new("http://example.com/").is_err());
        assert!(new("http://10.0.0.1/").is_err());
        assert!(new("https://127.0.0.1/").is_err());
        assert!(
            new("http://127.0.0.{{seq}}/").is_err(),
            "placeholders only after the host"
        );
    }

    #[test]
    fn request_uses_origin_form_and_sets_host() {
        let template =
            RequestTemplate::new("GET", "http://127.0.0.1:18080?a={{seq}}", &[], "", false)
                .unwrap();
        assert_eq!(template.connect_to, "127.0.0.1:18080");
        let request = template.build(3);
        assert_eq!(request.uri(), "/?a=3");
        assert_eq!(request.headers()[HOST], "127.0.0.1:18080");

        let own_host = ["Host: example.test".to_owned()];
        let template = RequestTemplate::new("GET", "http://[::1]/x", &own_host, "", false).unwrap();
        assert_eq!(template.connect_to, "[::1]:80");
        let request = template.build(0);
        assert_eq!(request.uri(), "/x");
        assert_eq!(request.headers().get_all(HOST).iter().count(), 1);
        assert_eq!(request.headers()[HOST], "example.test");
    }

    #[test]
    fn request_template_renders_headers_and_body() {
        let headers = [
            "Idempotency-Key: {{uuid}}".to_owned(),
            "X-Seq:{{seq}}".to_owned(),
        ];
        let template = RequestTemplate::new(
            "post",
            "http://127.0.0.1/",
            &headers,
            r#"{"n":{{seq}}}"#,
            false,
        )
        .unwrap();
        let request = template.build(7);
        assert_eq!(request.method(), Method::POST);
        assert_eq!(request.headers()["x-seq"], "7");
        assert_eq!(request.headers()["idempotency-key"].len(), 36);
        assert!(
            RequestTemplate::new(
                "GET",
                "http://127.0.0.1/",
                &["nocolon".to_owned()],
                "",
                false
            )
            .is_err()
        );
    }
}
