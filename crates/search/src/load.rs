//! Reading the replica's source of truth from PostgreSQL: every active
//! listing at start-up or on a rebuild, and single listings or owners when
//! an event says they changed. Reads only; search never writes.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::model::{Busy, Calendar, Categories, Category, Kind, ListingDoc, OwnerFacts, Prices};

const LISTING_COLUMNS: &str = "
    l.id, l.owner_id, l.type, l.category_id,
    coalesce(l.title, '') AS title, coalesce(l.description, '') AS description,
    l.included_items,
    ST_Y(l.location::geometry) AS lat, ST_X(l.location::geometry) AS lng,
    (l.pricing->>'hourly')::numeric::bigint AS hourly,
    (l.pricing->>'daily')::numeric::bigint AS daily,
    (l.pricing->>'weekly')::numeric::bigint AS weekly,
    coalesce(l.pricing->>'currency', '') AS currency,
    coalesce((l.delivery_options->>'delivery')::boolean, false) AS delivery,
    l.instant_book, l.quantity,
    coalesce(l.media->0->>'thumbnail_url', l.media->0->>'url') AS photo,
    l.published_at";

#[derive(sqlx::FromRow)]
struct ListingRow {
    id: Uuid,
    owner_id: Uuid,
    #[sqlx(rename = "type")]
    kind: String,
    category_id: Option<Uuid>,
    title: String,
    description: String,
    included_items: Vec<String>,
    lat: Option<f64>,
    lng: Option<f64>,
    hourly: Option<i64>,
    daily: Option<i64>,
    weekly: Option<i64>,
    currency: String,
    delivery: bool,
    instant_book: bool,
    quantity: i32,
    photo: Option<String>,
    published_at: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct WindowRow {
    listing_id: Uuid,
    status: String,
    unit: Option<i32>,
    starts: f64,
    ends: f64,
    hold: Option<f64>,
}

#[derive(sqlx::FromRow)]
struct OwnerRow {
    id: Uuid,
    verified: bool,
    avg: Option<f64>,
    count: Option<i64>,
    trust: Option<f64>,
}

impl ListingRow {
    fn into_doc(self) -> ListingDoc {
        ListingDoc {
            id: self.id,
            owner_id: self.owner_id,
            kind: Kind::parse(&self.kind).unwrap_or(Kind::Item),
            category_id: self.category_id,
            title: self.title,
            description: self.description,
            included_items: self.included_items,
            location: self.lat.zip(self.lng),
            prices: Prices {
                hourly: self.hourly,
                daily: self.daily,
                weekly: self.weekly,
                currency: self.currency,
            },
            delivery: self.delivery,
            instant_book: self.instant_book,
            quantity: self.quantity,
            photo: self.photo,
            published_at: self.published_at,
            bookings: 0,
            calendar: Calendar::default(),
        }
    }
}

/// Listings that are `active`, with their calendars and popularity; all of
/// them when `ids` is `None`. A listing missing from the answer is not (or
/// no longer) searchable.
pub async fn listings(
    conn: &mut PgConnection,
    ids: Option<&[Uuid]>,
) -> sqlx::Result<Vec<ListingDoc>> {
    let rows: Vec<ListingRow> = sqlx::query_as(&format!(
        "SELECT {LISTING_COLUMNS} FROM listings l
         WHERE l.status = 'active' AND ($1::uuid[] IS NULL OR l.id = ANY($1))"
    ))
    .bind(ids)
    .fetch_all(&mut *conn)
    .await?;
    let mut docs: Vec<ListingDoc> = rows.into_iter().map(ListingRow::into_doc).collect();
    let mut at: HashMap<Uuid, usize> = docs.iter().enumerate().map(|(i, d)| (d.id, i)).collect();

    let windows: Vec<WindowRow> = sqlx::query_as(
        "SELECT w.listing_id, w.status, w.unit,
                EXTRACT(EPOCH FROM lower(w.span))::float8 AS starts,
                EXTRACT(EPOCH FROM upper(w.span))::float8 AS ends,
                EXTRACT(EPOCH FROM w.hold_expires_at)::float8 AS hold
         FROM availability_windows w JOIN listings l ON l.id = w.listing_id
         WHERE l.status = 'active' AND upper(w.span) > now()
           AND ($1::uuid[] IS NULL OR w.listing_id = ANY($1))",
    )
    .bind(ids)
    .fetch_all(&mut *conn)
    .await?;
    for w in windows {
        let Some(&i) = at.get(&w.listing_id) else {
            continue;
        };
        let calendar = &mut docs[i].calendar;
        match (w.status.as_str(), w.unit) {
            ("available", _) => calendar.open.push((w.starts as i64, w.ends as i64)),
            (_, Some(unit)) => calendar.busy.push(Busy {
                unit,
                start: w.starts as i64,
                end: w.ends as i64,
                hold_expires_at: w.hold.map(|h| h as i64),
            }),
            _ => {}
        }
    }

    let popularity: Vec<(Uuid, i64)> = sqlx::query_as(
        "SELECT b.listing_id, count(*) FROM bookings b
         WHERE b.status IN ('approved', 'active', 'completed', 'disputed', 'resolved')
           AND ($1::uuid[] IS NULL OR b.listing_id = ANY($1))
         GROUP BY b.listing_id",
    )
    .bind(ids)
    .fetch_all(&mut *conn)
    .await?;
    for (listing, count) in popularity {
        if let Some(&i) = at.get(&listing) {
            docs[i].bookings = count;
        }
    }
    at.clear();
    Ok(docs)
}

/// The facts about `owners` that filters and ranking use.
pub async fn owners(
    conn: &mut PgConnection,
    owners: Option<&[Uuid]>,
) -> sqlx::Result<HashMap<Uuid, OwnerFacts>> {
    let rows: Vec<OwnerRow> = sqlx::query_as(
        "SELECT u.id, u.identity_status = 'verified' AS verified,
                (u.rating_summary->>'avg')::float8 AS avg,
                (u.rating_summary->>'count')::numeric::bigint AS count,
                t.score::float8 AS trust
         FROM users u LEFT JOIN trust_scores t ON t.user_id = u.id
         WHERE ($1::uuid[] IS NULL AND EXISTS
                   (SELECT 1 FROM listings l WHERE l.owner_id = u.id AND l.status = 'active'))
            OR u.id = ANY($1)",
    )
    .bind(owners)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|o| {
            (
                o.id,
                OwnerFacts {
                    verified: o.verified,
                    rating_avg: o.avg,
                    rating_count: o.count.unwrap_or(0),
                    trust: o.trust,
                },
            )
        })
        .collect())
}

/// The category tree.
pub async fn categories(pool: &PgPool) -> sqlx::Result<Categories> {
    let rows: Vec<(Uuid, Option<Uuid>, String, String, String)> =
        sqlx::query_as("SELECT id, parent_id, slug, name, kind FROM categories")
            .fetch_all(pool)
            .await?;
    Ok(Categories::new(
        rows.into_iter()
            .map(|(id, parent_id, slug, name, kind)| Category {
                id,
                parent_id,
                slug,
                name,
                kind: Kind::parse(&kind).unwrap_or(Kind::Item),
            })
            .collect(),
    ))
}

/// The oldest transaction that may still commit: every event of an older
/// transaction is final. A replica built from a snapshot taken after this
/// point follows the outbox from here (replaying a few events twice is
/// harmless: applying one re-reads current rows).
pub async fn horizon(conn: &mut PgConnection) -> sqlx::Result<u64> {
    let (xmin,): (String,) = sqlx::query_as("SELECT pg_snapshot_xmin(pg_current_snapshot())::text")
        .fetch_one(conn)
        .await?;
    Ok(xmin.parse().unwrap_or(0))
}
