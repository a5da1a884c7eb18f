//! Search and discovery (ADR 0012). Each API process keeps its own replica
//! of the active listings: a Tantivy index in RAM plus a table of the facts
//! filters need, built from PostgreSQL at start-up and kept current by
//! following the outbox (listing, availability, booking and user events).
//! The replica is disposable: `rentify search reindex` asks every process
//! to rebuild it in the background and swap it in, with no downtime.

use std::{
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use rentify_platform::{
    error::ApiError,
    outbox::{self, NewEvent},
    pagination::Cursor,
};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

mod ahead;
pub mod feed;
mod follow;
pub mod geo;
mod grid;
mod handlers;
pub mod index;
mod load;
pub mod model;
pub mod params;
mod query;
pub mod rank;
mod suggest;
mod titles;

use index::Catalog;

pub use follow::REINDEX_EVENT;

/// The routes of this module.
pub fn routes() -> OpenApiRouter<rentify_platform::PlatformState> {
    OpenApiRouter::new()
        .routes(routes!(handlers::search))
        .routes(routes!(handlers::suggest))
        .routes(routes!(handlers::feed))
}

/// A process's search replica, cheap to clone.
#[derive(Clone)]
pub struct SearchIndex {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    catalog: RwLock<Arc<Catalog>>,
}

/// A replica and where in the outbox it must resume.
struct Built {
    catalog: Catalog,
    resume: rentify_events::stream::Cursor,
}

impl SearchIndex {
    /// Builds the replica from PostgreSQL (every active listing, in one
    /// snapshot). The process should not serve before this returns.
    pub async fn build(pool: PgPool) -> anyhow::Result<(Self, rentify_events::stream::Cursor)> {
        let Built { catalog, resume } = build_catalog(&pool).await?;
        Ok((
            Self {
                inner: Arc::new(Inner {
                    pool,
                    catalog: RwLock::new(Arc::new(catalog)),
                }),
            },
            resume,
        ))
    }

    /// Follows the outbox from `resume` until `shutdown`, applying changes
    /// every `poll` at most.
    pub fn spawn_follower(
        &self,
        resume: rentify_events::stream::Cursor,
        poll: Duration,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(follow::run(self.clone(), resume, poll, shutdown))
    }

    /// The current replica (a rebuild swaps it; a query keeps the one it
    /// started with).
    pub fn catalog(&self) -> Arc<Catalog> {
        self.inner
            .catalog
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn swap(&self, catalog: Catalog) {
        *self
            .inner
            .catalog
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Arc::new(catalog);
    }

    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// Runs a validated search.
    pub fn search(&self, search: &params::Search) -> Result<rank::SearchPage, ApiError> {
        let after = search
            .cursor
            .as_deref()
            .map(Cursor::<f64>::decode)
            .transpose()?;
        let catalog = self.catalog();
        let started = Instant::now();
        let now = chrono::Utc::now().timestamp();
        let table = catalog.table.read().unwrap_or_else(|e| e.into_inner());
        let filter = rank::Filter::new(search, &catalog.categories, now);
        let mut tally = rank::Tally::new(&table, &catalog.categories, search, after.as_ref());
        let visit = |slot: u32, score: f32| {
            if filter.accepts(&table, slot) {
                tally.add(slot, score);
            }
        };
        let mut ahead = ahead::Ahead::new(&table, search.window, visit);
        if search.q.is_some() {
            let searcher = catalog.searcher();
            let (query, scoring) = query::build(&catalog, &searcher, search);
            index::for_each_match(&searcher, query.as_ref(), scoring, |slot, score| {
                ahead.push(slot, score);
            })
            .map_err(ApiError::internal)?;
        } else {
            // Without words every listing is a candidate: a pass over the
            // facts (of the cells round the centre, with a radius) beats
            // uniting posting lists.
            let near = search
                .center
                .zip(search.radius_km)
                .and_then(|(center, km)| table.grid.near(center, km));
            match near {
                Some(slots) => slots.for_each(|slot| ahead.push(slot, 1.0)),
                None => (0..table.facts.len() as u32).for_each(|slot| ahead.push(slot, 1.0)),
            }
        }
        ahead.finish();
        let page = tally.finish();
        metrics::histogram!("search_query_seconds").record(started.elapsed().as_secs_f64());
        Ok(page)
    }

    /// Documents in the replica.
    pub fn len(&self) -> usize {
        self.catalog()
            .table
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

async fn build_catalog(pool: &PgPool) -> anyhow::Result<Built> {
    let started = Instant::now();
    let categories = load::categories(pool).await?;
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut *tx)
        .await?;
    let horizon = load::horizon(&mut tx).await?;
    let mut docs = load::listings(&mut tx, None).await?;
    // Slots in map order: a radius search then reads neighbouring memory.
    docs.sort_by_key(|d| d.location.map(|(lat, lng)| grid::key(lat, lng)));
    let owners = load::owners(&mut tx, None).await?;
    tx.commit().await?;
    let count = docs.len();
    let catalog = tokio::task::spawn_blocking(move || -> anyhow::Result<Catalog> {
        let catalog = Catalog::new(categories)?;
        catalog.apply(docs, &[], owners)?;
        Ok(catalog)
    })
    .await??;
    metrics::gauge!("search_documents").set(count as f64);
    tracing::info!(
        listings = count,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "search index built"
    );
    Ok(Built {
        catalog,
        // Every event of a transaction older than the snapshot's horizon is
        // in the snapshot; newer ones are replayed (harmlessly).
        resume: rentify_events::stream::Cursor {
            tx_id: horizon,
            position: 0,
        },
    })
}

/// Asks every API process to rebuild its replica from PostgreSQL (they
/// swap it in when done and serve the old one meanwhile). Returns the
/// event's id.
pub async fn request_reindex(pool: &PgPool, requested_by: &str) -> anyhow::Result<Uuid> {
    let mut tx = pool.begin().await?;
    let id = outbox::record(
        &mut tx,
        NewEvent {
            event_type: REINDEX_EVENT,
            aggregate_type: "search",
            aggregate_id: "listings".into(),
            payload: serde_json::json!({ "requested_by": requested_by }),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(id)
}
