//! The PostgreSQL twin of `/v1/search`: each parameter set of the mix as
//! one SQL statement, run straight against the database through sqlx, closed
//! loop over a pool of the same concurrency, so the search service's figures
//! can be read beside what PostgreSQL's own full-text search and PostGIS do
//! with the same data.
//!
//! The statement (only the predicates a set uses are written, so every
//! shape has a plan of its own and no `$n IS NULL OR …` defeats an index):
//!
//! ```sql
//! SELECT l.id, ts_rank(TSV, plainto_tsquery('simple', $q)) AS rank,
//!        ST_Distance(l.location, ST_MakePoint($lng, $lat)::geography) AS distance_m,
//!        (l.pricing->>'daily')::bigint AS daily
//!   FROM listings l
//!  WHERE l.status = 'active'
//!    AND TSV @@ plainto_tsquery('simple', $q)
//!    AND ST_DWithin(l.location, ST_MakePoint($lng, $lat)::geography, $radius_m)
//!    AND (l.pricing->>'daily')::bigint BETWEEN $min AND $max
//!    AND (SELECT count(DISTINCT w.unit) FROM availability_windows w
//!          WHERE w.listing_id = l.id AND w.status <> 'available'
//!            AND w.span && tstzrange($from, $to)) < l.quantity
//!  ORDER BY rank DESC | l.location <-> ST_MakePoint($lng, $lat)::geography | daily, l.id
//!  LIMIT 21
//! ```
//!
//! where `TSV` is `to_tsvector('simple', coalesce(l.title, '') || ' ' ||
//! coalesce(l.description, ''))`, served by a GIN expression index the
//! benchmark creates when it is missing ([`setup`]; not a migration: the
//! application does not search in PostgreSQL). Locations use the existing
//! GiST index (and its KNN operator `<->` for nearest first), windows the
//! exclusion constraint's. Relevance without `q` orders by distance (every
//! such set has a point). There is no typo tolerance, no total and no
//! facets: PostgreSQL is doing less here.
//!
//! The sessions run with `jit = off` by default (`--pg-set`): PostGIS
//! functions carry high cost estimates, so with the server's default JIT
//! settings PostgreSQL compiles nearly every one of these statements
//! (~0.7 s of JIT for a 3 km radius query measured here), which would
//! measure the JIT, not the search.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use sqlx::PgPool;
use sqlx::Row;
use sqlx::postgres::PgRow;
use uuid::Uuid;

use super::queries::{LIMIT, Sort, Spec};

/// The GIN index the twin's full-text predicate uses.
pub const FTS_INDEX: &str = "listings_search_bench_fts";
/// The indexed document; the statements repeat it verbatim so the planner
/// matches the expression index.
const TSV: &str =
    "to_tsvector('simple', coalesce(l.title, '') || ' ' || coalesce(l.description, ''))";

const HIST_MAX_MICROS: u64 = 60_000_000;
/// A worker stops after this many failed statements (a dead database).
const MAX_ERRORS: u64 = 100;

/// Which predicates and order a statement has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Shape {
    q: bool,
    geo: bool,
    price: bool,
    window: bool,
    sort: Sort,
}

impl Shape {
    pub fn of(spec: &Spec) -> Self {
        Self {
            q: spec.q.is_some(),
            geo: spec.geo.is_some(),
            price: spec.price.is_some(),
            window: spec.window.is_some(),
            sort: spec.sort,
        }
    }

    /// The statement; parameters in the order [`bind`] binds them.
    pub fn sql(self) -> String {
        let mut n = 0;
        let mut next = || {
            n += 1;
            format!("${n}")
        };
        let mut predicates = vec!["l.status = 'active'".to_owned()];
        let mut rank = "0::real".to_owned();
        let mut distance = "NULL::float8".to_owned();
        let mut nearest = "l.id".to_owned();
        if self.q {
            let q = next();
            rank = format!("ts_rank({TSV}, plainto_tsquery('simple', {q}))");
            predicates.push(format!("{TSV} @@ plainto_tsquery('simple', {q})"));
        }
        if self.geo {
            let (lng, lat, radius) = (next(), next(), next());
            let point = format!("ST_MakePoint({lng}, {lat})::geography");
            distance = format!("ST_Distance(l.location, {point})");
            // The KNN operator: the GiST index can return rows nearest first.
            nearest = format!("l.location <-> {point}");
            predicates.push(format!("ST_DWithin(l.location, {point}, {radius})"));
        }
        if self.price {
            let (low, high) = (next(), next());
            predicates.push(format!(
                "(l.pricing->>'daily')::bigint BETWEEN {low} AND {high}"
            ));
        }
        if self.window {
            let (from, to) = (next(), next());
            predicates.push(format!(
                "(SELECT count(DISTINCT w.unit) FROM availability_windows w
                   WHERE w.listing_id = l.id AND w.status <> 'available'
                     AND w.span && tstzrange({from}, {to})) < l.quantity"
            ));
        }
        let order = match self.sort {
            Sort::Relevance if self.q => "rank DESC, l.id".to_owned(),
            Sort::Relevance | Sort::Distance => format!("{nearest}, l.id"),
            Sort::PriceAsc => "daily NULLS LAST, l.id".to_owned(),
        };
        format!(
            "SELECT l.id, {rank} AS rank, {distance} AS distance_m,
                    (l.pricing->>'daily')::bigint AS daily
               FROM listings l
              WHERE {}
              ORDER BY {order}
              LIMIT {}",
            predicates.join("\n                AND "),
            LIMIT + 1
        )
    }
}

/// The statements of every shape the sets use.
pub fn statements(specs: &[Spec]) -> HashMap<Shape, String> {
    let mut sqls = HashMap::new();
    for spec in specs {
        let shape = Shape::of(spec);
        sqls.entry(shape).or_insert_with(|| shape.sql());
    }
    sqls
}

/// Runs one set; the ids in order.
pub async fn query(pool: &PgPool, sql: &str, spec: &Spec) -> sqlx::Result<Vec<Uuid>> {
    let mut query = sqlx::query(sql);
    if let Some(q) = &spec.q {
        query = query.bind(q.as_str());
    }
    if let (Some((lat, lng, _)), Some(radius)) = (spec.geo, spec.radius_m()) {
        query = query.bind(lng).bind(lat).bind(radius);
    }
    if let Some((low, high)) = spec.price {
        query = query.bind(low).bind(high);
    }
    if let Some((from, to)) = spec.window {
        query = query.bind(from).bind(to);
    }
    let rows: Vec<PgRow> = query.fetch_all(pool).await?;
    rows.iter().map(|row| row.try_get::<Uuid, _>(0)).collect()
}

/// What the setup did, printed before the figures.
pub struct Setup {
    pub index: String,
    pub analyze_s: f64,
    pub active_listings: i64,
}

/// Creates the GIN expression index when it is missing and analyses
/// `listings` (the planner needs statistics on the indexed expression).
pub async fn setup(pool: &PgPool) -> Result<Setup, String> {
    let sql = |e: sqlx::Error| e.to_string();
    let present: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(FTS_INDEX)
        .fetch_one(pool)
        .await
        .map_err(sql)?;
    let index = if present {
        format!("GIN index {FTS_INDEX} present")
    } else {
        let started = Instant::now();
        sqlx::query(&format!(
            "CREATE INDEX IF NOT EXISTS {FTS_INDEX} ON listings USING gin
               (to_tsvector('simple', coalesce(title, '') || ' ' || coalesce(description, '')))"
        ))
        .execute(pool)
        .await
        .map_err(sql)?;
        format!(
            "GIN index {FTS_INDEX} created in {:.2} s",
            started.elapsed().as_secs_f64()
        )
    };
    let started = Instant::now();
    sqlx::query("ANALYZE listings")
        .execute(pool)
        .await
        .map_err(sql)?;
    let analyze_s = started.elapsed().as_secs_f64();
    let active_listings: i64 =
        sqlx::query_scalar("SELECT count(*) FROM listings WHERE status = 'active'")
            .fetch_one(pool)
            .await
            .map_err(sql)?;
    Ok(Setup {
        index,
        analyze_s,
        active_listings,
    })
}

/// What the twin's workers recorded in the measured window.
pub struct Outcome {
    pub latency_us: Histogram<u64>,
    /// Statements that completed inside the window.
    pub in_window: u64,
    pub rows: u64,
    pub empty: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub window: Duration,
}

struct Shared {
    pool: PgPool,
    specs: Arc<Vec<Spec>>,
    sqls: HashMap<Shape, String>,
    seq: AtomicU64,
    measure_from: Instant,
    stop_at: Instant,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_MICROS, 3).expect("static histogram bounds are valid")
}

/// Closed loop: `concurrency` workers run the sets in turn (one shared
/// counter, as the HTTP phases) for the warm-up and the duration.
pub async fn run(
    pool: PgPool,
    specs: Arc<Vec<Spec>>,
    concurrency: usize,
    warmup: Duration,
    duration: Duration,
) -> Outcome {
    let sqls = statements(&specs);
    let start = Instant::now();
    let shared = Arc::new(Shared {
        pool,
        specs,
        sqls,
        seq: AtomicU64::new(0),
        measure_from: start + warmup,
        stop_at: start + warmup + duration,
    });
    let workers: Vec<_> = (0..concurrency)
        .map(|_| tokio::spawn(worker(Arc::clone(&shared))))
        .collect();
    let mut outcome = Outcome {
        latency_us: histogram(),
        in_window: 0,
        rows: 0,
        empty: 0,
        errors: 0,
        first_error: None,
        window: duration,
    };
    for handle in workers {
        let mine = handle.await.expect("twin worker panicked");
        outcome
            .latency_us
            .add(&mine.latency_us)
            .expect("histograms share bounds");
        outcome.in_window += mine.in_window;
        outcome.rows += mine.rows;
        outcome.empty += mine.empty;
        outcome.errors += mine.errors;
        if outcome.first_error.is_none() {
            outcome.first_error = mine.first_error;
        }
    }
    outcome
}

async fn worker(shared: Arc<Shared>) -> Outcome {
    let mut mine = Outcome {
        latency_us: histogram(),
        in_window: 0,
        rows: 0,
        empty: 0,
        errors: 0,
        first_error: None,
        window: Duration::ZERO,
    };
    loop {
        let started = Instant::now();
        if started >= shared.stop_at || mine.errors >= MAX_ERRORS {
            break;
        }
        let seq = shared.seq.fetch_add(1, Ordering::Relaxed);
        let spec = &shared.specs[(seq % shared.specs.len() as u64) as usize];
        let sql = &shared.sqls[&Shape::of(spec)];
        let result = query(&shared.pool, sql, spec).await;
        let done = Instant::now();
        if started < shared.measure_from {
            continue;
        }
        match result {
            Ok(ids) => {
                let micros = u64::try_from((done - started).as_micros()).unwrap_or(u64::MAX);
                mine.latency_us.saturating_record(micros.max(1));
                mine.rows += ids.len() as u64;
                mine.empty += u64::from(ids.is_empty());
                if done <= shared.stop_at {
                    mine.in_window += 1;
                }
            }
            Err(error) => {
                mine.errors += 1;
                if mine.first_error.is_none() {
                    mine.first_error = Some(error.to_string());
                }
            }
        }
    }
    mine
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_have_only_the_predicates_they_bind() {
        let full = Shape {
            q: true,
            geo: true,
            price: true,
            window: true,
            sort: Sort::Relevance,
        };
        let sql = full.sql();
        for n in 1..=8 {
            assert!(sql.contains(&format!("${n}")), "{sql}");
        }
        assert!(!sql.contains("$9"));
        assert!(sql.contains("ORDER BY rank DESC, l.id"));
        assert!(sql.contains("LIMIT 21"));

        let geo_only = Shape {
            q: false,
            geo: true,
            price: false,
            window: false,
            sort: Sort::Relevance,
        }
        .sql();
        assert!(geo_only.contains("ST_DWithin(l.location, ST_MakePoint($1, $2)::geography, $3)"));
        assert!(!geo_only.contains("to_tsvector"));
        assert!(geo_only.contains("ORDER BY l.location <-> ST_MakePoint($1, $2)::geography, l.id"));

        let price = Shape {
            q: true,
            geo: false,
            price: true,
            window: false,
            sort: Sort::PriceAsc,
        }
        .sql();
        assert!(price.contains("BETWEEN $2 AND $3"));
        assert!(price.contains("ORDER BY daily NULLS LAST, l.id"));
    }
}
