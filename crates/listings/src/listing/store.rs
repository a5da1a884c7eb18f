//! SQL over the `listings` table. Every write bumps `version` (the ETag);
//! content updates are conditional on the version read, so two writers can
//! never silently overwrite each other.

use chrono::{DateTime, Utc};
use rentify_identity::users::Location;
use rentify_platform::outbox::{self, NewEvent};
use serde_json::{Value, json};
use sqlx::PgConnection;
use uuid::Uuid;

use super::fields::ListingData;
use crate::model::{ListingStatus, ListingType};

/// A stored listing.
#[derive(Clone, Debug)]
pub struct Listing {
    pub id: Uuid,
    pub owner_id: Uuid,
    pub status: ListingStatus,
    pub data: ListingData,
    /// Ordered `{id, url, type, alt, thumbnail_url}`, kept by the media flow.
    pub media: Value,
    pub rejection_reason: Option<String>,
    pub reviewed_by: Option<Uuid>,
    pub reviewed_at: Option<DateTime<Utc>>,
    pub published_at: Option<DateTime<Utc>>,
    pub archived_at: Option<DateTime<Utc>>,
    pub version: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, owner_id, type, status, title, description, category_id, media,
    ST_Y(location::geometry) AS lat, ST_X(location::geometry) AS lng, time_zone, pricing,
    quantity, condition, included_items, service_scope, service_packages, property,
    delivery_options, policies, booking_rules, instant_book, rejection_reason, reviewed_by,
    reviewed_at, published_at, archived_at, version, created_at, updated_at";

#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    owner_id: Uuid,
    r#type: String,
    status: String,
    title: Option<String>,
    description: Option<String>,
    category_id: Option<Uuid>,
    media: Value,
    lat: Option<f64>,
    lng: Option<f64>,
    time_zone: String,
    pricing: Option<Value>,
    quantity: i32,
    condition: Option<String>,
    included_items: Vec<String>,
    service_scope: Option<String>,
    service_packages: Value,
    property: Option<Value>,
    delivery_options: Value,
    policies: Value,
    booking_rules: Value,
    instant_book: bool,
    rejection_reason: Option<String>,
    reviewed_by: Option<Uuid>,
    reviewed_at: Option<DateTime<Utc>>,
    published_at: Option<DateTime<Utc>>,
    archived_at: Option<DateTime<Utc>>,
    version: i32,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<Row> for Listing {
    type Error = anyhow::Error;

    fn try_from(row: Row) -> anyhow::Result<Self> {
        let id = row.id;
        let bad = |what: &str| anyhow::anyhow!("listing {id} has an invalid {what}");
        let kind = ListingType::parse(&row.r#type).ok_or_else(|| bad("type"))?;
        Ok(Listing {
            id,
            owner_id: row.owner_id,
            status: ListingStatus::parse(&row.status).ok_or_else(|| bad("status"))?,
            data: ListingData {
                kind,
                title: row.title,
                description: row.description,
                category_id: row.category_id,
                location: row.lat.zip(row.lng).map(|(lat, lng)| Location { lat, lng }),
                time_zone: row.time_zone,
                pricing: row.pricing.map(serde_json::from_value).transpose()?,
                quantity: i64::from(row.quantity),
                condition: row
                    .condition
                    .map(|c| serde_json::from_value(Value::String(c)))
                    .transpose()?,
                included_items: row.included_items,
                service_scope: row.service_scope,
                service_packages: serde_json::from_value(row.service_packages)?,
                property: row.property.map(serde_json::from_value).transpose()?,
                delivery_options: serde_json::from_value(row.delivery_options)?,
                policies: serde_json::from_value(row.policies)?,
                booking_rules: serde_json::from_value(row.booking_rules)?,
                instant_book: row.instant_book,
            },
            media: row.media,
            rejection_reason: row.rejection_reason,
            reviewed_by: row.reviewed_by,
            reviewed_at: row.reviewed_at,
            published_at: row.published_at,
            archived_at: row.archived_at,
            version: row.version,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

fn convert(rows: Vec<Row>) -> anyhow::Result<Vec<Listing>> {
    rows.into_iter().map(Listing::try_from).collect()
}

/// The listing, optionally locked `FOR UPDATE` until the transaction ends.
pub async fn find(
    conn: &mut PgConnection,
    id: Uuid,
    lock: bool,
) -> anyhow::Result<Option<Listing>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM listings WHERE id = $1{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    let row: Option<Row> = sqlx::query_as(&sql).bind(id).fetch_optional(conn).await?;
    row.map(Listing::try_from).transpose()
}

/// Values of the content columns, in the order `$3..$19` of the writes.
fn bind_data<'q>(
    query: sqlx::query::QueryAs<'q, sqlx::Postgres, Row, sqlx::postgres::PgArguments>,
    data: &'q ListingData,
) -> anyhow::Result<sqlx::query::QueryAs<'q, sqlx::Postgres, Row, sqlx::postgres::PgArguments>> {
    let condition = data
        .condition
        .map(serde_json::to_value)
        .transpose()?
        .and_then(|v| v.as_str().map(str::to_owned));
    Ok(query
        .bind(&data.title)
        .bind(&data.description)
        .bind(data.category_id)
        .bind(data.location.map(|l| l.lat))
        .bind(data.location.map(|l| l.lng))
        .bind(&data.time_zone)
        .bind(
            data.pricing
                .as_ref()
                .map(serde_json::to_value)
                .transpose()?,
        )
        .bind(i32::try_from(data.quantity)?)
        .bind(condition)
        .bind(&data.included_items)
        .bind(&data.service_scope)
        .bind(serde_json::to_value(&data.service_packages)?)
        .bind(
            data.property
                .as_ref()
                .map(serde_json::to_value)
                .transpose()?,
        )
        .bind(serde_json::to_value(&data.delivery_options)?)
        .bind(serde_json::to_value(&data.policies)?)
        .bind(serde_json::to_value(&data.booking_rules)?)
        .bind(data.instant_book))
}

const POINT: &str = "CASE WHEN $6::float8 IS NULL THEN NULL
    ELSE ST_SetSRID(ST_MakePoint($7::float8, $6::float8), 4326)::geography END";

/// Inserts a new `draft`.
pub async fn insert(
    conn: &mut PgConnection,
    id: Uuid,
    owner_id: Uuid,
    data: &ListingData,
) -> anyhow::Result<Listing> {
    let sql = format!(
        "INSERT INTO listings (id, owner_id, type, title, description, category_id, location,
            time_zone, pricing, quantity, condition, included_items, service_scope,
            service_packages, property, delivery_options, policies, booking_rules, instant_book)
         VALUES ($1, $2, $20, $3, $4, $5, {POINT}, $8, $9, $10, $11, $12, $13, $14, $15, $16,
            $17, $18, $19)
         RETURNING {COLUMNS}"
    );
    let query = sqlx::query_as::<_, Row>(&sql).bind(id).bind(owner_id);
    let row = bind_data(query, data)?
        .bind(data.kind.as_str())
        .fetch_one(conn)
        .await?;
    row.try_into()
}

/// Writes `data` if the listing is still at `version`; `None` when another
/// write got there first.
pub async fn update_data(
    conn: &mut PgConnection,
    id: Uuid,
    version: i32,
    data: &ListingData,
) -> anyhow::Result<Option<Listing>> {
    let sql = format!(
        "UPDATE listings SET title = $3, description = $4, category_id = $5, location = {POINT},
            time_zone = $8, pricing = $9, quantity = $10, condition = $11, included_items = $12,
            service_scope = $13, service_packages = $14, property = $15, delivery_options = $16,
            policies = $17, booking_rules = $18, instant_book = $19,
            version = version + 1, updated_at = now()
         WHERE id = $1 AND version = $2
         RETURNING {COLUMNS}"
    );
    let query = sqlx::query_as::<_, Row>(&sql).bind(id).bind(version);
    let row = bind_data(query, data)?.fetch_optional(conn).await?;
    row.map(Listing::try_from).transpose()
}

/// Moves the listing to `to` (the caller checked the transition on a locked
/// row) and keeps the timestamps that go with it: `published_at` on the
/// first activation, `archived_at`, the review's author and reason.
pub async fn set_status(
    conn: &mut PgConnection,
    id: Uuid,
    to: ListingStatus,
    reviewer: Option<Uuid>,
    rejection_reason: Option<&str>,
) -> anyhow::Result<Listing> {
    let sql = format!(
        "UPDATE listings SET status = $2,
            published_at = CASE WHEN $2 = 'active' THEN COALESCE(published_at, now())
                                ELSE published_at END,
            archived_at = CASE WHEN $2 = 'archived' THEN now() ELSE archived_at END,
            rejection_reason = CASE WHEN $2 = 'rejected' THEN $4
                                    WHEN $2 IN ('pending_review', 'active') THEN NULL
                                    ELSE rejection_reason END,
            reviewed_by = COALESCE($3, reviewed_by),
            reviewed_at = CASE WHEN $3::uuid IS NULL THEN reviewed_at ELSE now() END,
            version = version + 1, updated_at = now()
         WHERE id = $1
         RETURNING {COLUMNS}"
    );
    let row: Row = sqlx::query_as(&sql)
        .bind(id)
        .bind(to.as_str())
        .bind(reviewer)
        .bind(rejection_reason)
        .fetch_one(conn)
        .await?;
    row.try_into()
}

/// Whether any unit at or above `quantity` has a window that has not ended.
pub async fn units_in_use_from(
    conn: &mut PgConnection,
    id: Uuid,
    quantity: i64,
) -> anyhow::Result<bool> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM availability_windows
                         WHERE listing_id = $1 AND unit >= $2 AND end_time > now())",
    )
    .bind(id)
    .bind(i32::try_from(quantity)?)
    .fetch_one(conn)
    .await?)
}

/// A page of `owner_id`'s listings in the given statuses, newest first
/// (ids are UUIDv7), after the listing `after`.
pub async fn list_by_owner(
    conn: &mut PgConnection,
    owner_id: Uuid,
    statuses: &[&str],
    after: Option<Uuid>,
    fetch: i64,
) -> anyhow::Result<Vec<Listing>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM listings
          WHERE owner_id = $1 AND status = ANY($2) AND ($3::uuid IS NULL OR id < $3)
          ORDER BY id DESC LIMIT $4"
    );
    let rows: Vec<Row> = sqlx::query_as(&sql)
        .bind(owner_id)
        .bind(statuses)
        .bind(after)
        .bind(fetch)
        .fetch_all(conn)
        .await?;
    convert(rows)
}

/// A page of listings in `status`, oldest first (a review queue).
pub async fn list_by_status(
    conn: &mut PgConnection,
    status: ListingStatus,
    after: Option<Uuid>,
    fetch: i64,
) -> anyhow::Result<Vec<Listing>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM listings
          WHERE status = $1 AND ($2::uuid IS NULL OR id > $2)
          ORDER BY id LIMIT $3"
    );
    let rows: Vec<Row> = sqlx::query_as(&sql)
        .bind(status.as_str())
        .bind(after)
        .bind(fetch)
        .fetch_all(conn)
        .await?;
    convert(rows)
}

/// Records `event_type` about `listing` in the outbox (the caller's
/// transaction). `extra` is merged into the payload.
pub async fn record_event(
    conn: &mut PgConnection,
    event_type: &str,
    listing: &Listing,
    extra: Value,
) -> anyhow::Result<()> {
    let mut payload = json!({
        "id": listing.id,
        "owner_id": listing.owner_id,
        "type": listing.data.kind,
        "status": listing.status,
        "version": listing.version,
    });
    if let (Some(payload), Value::Object(extra)) = (payload.as_object_mut(), extra) {
        payload.extend(extra);
    }
    outbox::record(
        conn,
        NewEvent {
            event_type,
            aggregate_type: "listing",
            aggregate_id: listing.id.to_string(),
            payload,
        },
    )
    .await?;
    Ok(())
}
