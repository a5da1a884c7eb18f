//! Keeping a replica current: read the outbox after the replica's own
//! position (in memory, not an `event_cursors` row: a replica is rebuilt on
//! every start, and a durable cursor per process would hold back retention
//! once the process is gone), work out which listings and owners changed,
//! re-read them and commit. Applying an event re-reads current rows, so
//! reading one twice is harmless and order within a batch does not matter.

use std::{
    collections::{BTreeSet, HashMap},
    time::Duration,
};

use chrono::Utc;
use rentify_events::{
    Event,
    stream::{self, Cursor, Horizon},
};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{SearchIndex, load};

/// Recorded by `rentify search reindex`.
pub const REINDEX_EVENT: &str = "search.reindex_requested";

const BATCH: i64 = 2000;

fn patterns() -> Vec<String> {
    [
        "listing.%",
        "availability.%",
        "booking.%",
        "user.%",
        "search.%",
    ]
    .into_iter()
    .map(String::from)
    .collect()
}

/// What a batch of events asks the replica to re-read.
#[derive(Debug, Default, PartialEq)]
pub struct Changes {
    pub listings: BTreeSet<Uuid>,
    pub owners: BTreeSet<Uuid>,
    pub rebuild: bool,
}

/// The listings and owners `events` touch.
pub fn changes(events: &[Event]) -> Changes {
    let mut out = Changes::default();
    for event in events {
        let family = event.event_type.split('.').next().unwrap_or_default();
        match family {
            "listing" | "availability" => {
                out.listings.extend(
                    event
                        .uuid("listing_id")
                        .or_else(|| event.uuid("id"))
                        .or_else(|| event.aggregate_id.parse().ok()),
                );
            }
            "booking" => out.listings.extend(event.uuid("listing_id")),
            "user" => {
                out.owners.extend(
                    event
                        .uuid("user_id")
                        .or_else(|| event.aggregate_id.parse().ok()),
                );
            }
            "search" if event.event_type == REINDEX_EVENT => out.rebuild = true,
            _ => {}
        }
    }
    out
}

pub(crate) async fn run(
    index: SearchIndex,
    mut cursor: Cursor,
    poll: Duration,
    shutdown: CancellationToken,
) {
    let patterns = patterns();
    loop {
        let full = match step(&index, &mut cursor, &patterns).await {
            Ok(full) => full,
            Err(error) => {
                tracing::warn!(error = %error, "search replica: could not apply events; retrying");
                false
            }
        };
        if !full {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(poll) => {}
            }
        } else if shutdown.is_cancelled() {
            return;
        }
    }
}

/// One read-and-apply; whether the batch was full.
async fn step(
    index: &SearchIndex,
    cursor: &mut Cursor,
    patterns: &[String],
) -> anyhow::Result<bool> {
    let mut conn = index.pool().acquire().await?;
    let horizon = load::horizon(&mut conn).await?;
    let (events, reached) =
        stream::read_after(&mut conn, *cursor, Horizon(horizon), patterns, BATCH).await?;
    let full = events.len() as i64 == BATCH;
    let events: Vec<Event> = events.into_iter().map(|(_, e)| e).collect();
    let changes = changes(&events);
    if changes.rebuild {
        drop(conn);
        let built = crate::build_catalog(index.pool()).await?;
        index.swap(built.catalog);
        *cursor = built.resume;
        tracing::info!("search replica rebuilt on request");
        return Ok(true);
    }
    let catalog = index.catalog();
    if !changes.listings.is_empty() || !changes.owners.is_empty() {
        let ids: Vec<Uuid> = changes.listings.iter().copied().collect();
        let docs = if ids.is_empty() {
            Vec::new()
        } else {
            load::listings(&mut conn, Some(&ids)).await?
        };
        let gone: Vec<Uuid> = ids
            .iter()
            .filter(|id| !docs.iter().any(|d| d.id == **id))
            .copied()
            .collect();
        // The owners of changed listings are re-read too: one query per
        // batch, and the replica then never keeps stale owner facts
        // (verification, rating) past the owner's next listing change.
        let mut owner_ids: BTreeSet<Uuid> = changes.owners.clone();
        owner_ids.extend(docs.iter().map(|d| d.owner_id));
        let owner_ids: Vec<Uuid> = owner_ids.into_iter().collect();
        let owners: HashMap<Uuid, _> = if owner_ids.is_empty() {
            HashMap::new()
        } else {
            load::owners(&mut conn, Some(&owner_ids)).await?
        };
        drop(conn);
        let catalog = catalog.clone();
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            catalog.apply(docs, &gone, owners)?;
            Ok(())
        })
        .await??;
        metrics::gauge!("search_documents").set(index.len() as f64);
    }
    if let Some(last) = events.last() {
        let lag = (Utc::now() - last.occurred_at).num_milliseconds().max(0) as f64 / 1000.0;
        metrics::gauge!("search_index_lag_seconds").set(lag);
    }
    if let Some(reached) = reached {
        *cursor = reached;
    }
    Ok(full)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn event(event_type: &str, aggregate_id: &str, payload: serde_json::Value) -> Event {
        Event {
            id: Uuid::nil(),
            position: 1,
            event_type: event_type.into(),
            aggregate_type: event_type.split('.').next().unwrap().into(),
            aggregate_id: aggregate_id.into(),
            payload,
            occurred_at: Utc::now(),
        }
    }

    #[test]
    fn events_name_what_to_reread() {
        let (l1, l2, u) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        let c = changes(&[
            event("listing.published", &l1.to_string(), json!({"id": l1})),
            event(
                "availability.changed",
                &l2.to_string(),
                json!({"listing_id": l2}),
            ),
            event("booking.approved", "b", json!({"listing_id": l1})),
            event("user.rating_updated", &u.to_string(), json!({"user_id": u})),
            event("payment.captured", "p", json!({})),
        ]);
        assert_eq!(c.listings, BTreeSet::from([l1, l2]));
        assert_eq!(c.owners, BTreeSet::from([u]));
        assert!(!c.rebuild);
        assert!(changes(&[event(REINDEX_EVENT, "listings", json!({}))]).rebuild);
    }
}
