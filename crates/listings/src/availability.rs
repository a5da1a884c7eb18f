//! Availability windows of a listing: the owner's opening hours
//! (`available`, all units), blocks (`blocked`, one unit each) and bookings
//! (`booked`, written by the bookings module). Start inclusive, end
//! exclusive, stored in UTC; the listing's `time_zone` is what bookings use
//! for day arithmetic.
//!
//! `PUT` replaces the owner's windows inside a range in one transaction and
//! never touches `booked` ones: a block over a booking is refused by the
//! exclusion constraint `availability_no_overlap` (409
//! `availability_conflict`).
//!
//! Who sees what: anyone who may see the listing sees every window with its
//! status (so a calendar can grey out busy times); only the owner and admins
//! see `booking_id` and `note`.

use std::collections::HashMap;

use axum::Extension;
use chrono::{DateTime, Duration, Utc};
use rentify_platform::{
    ApiResult, PlatformState,
    auth::{MaybeCaller, UserCaller},
    error::{ErrorEnvelope, FieldError},
    extract::{Json, Path, ValidQuery},
    ids::new_id,
    outbox::{self, NewEvent},
    pagination::{Cursor, Page, PageParams},
};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;
use validator::Validate;

use crate::{
    Listings,
    error::{ListingError, is_constraint},
    listing::{lifecycle, service, store::Listing},
    model::ListingStatus,
};

/// Longest range a read may cover.
pub const MAX_RANGE_DAYS: i64 = 366;
/// Default range of a read.
pub const DEFAULT_RANGE_DAYS: i64 = 90;
/// Most windows one `PUT` may carry, and most rows it may expand to (a
/// block without `unit` is one row per unit).
pub const MAX_WINDOWS: usize = 500;
pub const MAX_ROWS: usize = 10_000;

pub fn routes() -> OpenApiRouter<PlatformState> {
    OpenApiRouter::new().routes(routes!(get_availability, set_availability))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WindowStatus {
    /// Open for bookings (all units). When a listing has any, bookings
    /// must fall inside one.
    Available,
    /// Closed by the owner (one unit).
    Blocked,
    /// Taken by a booking (one unit).
    Booked,
}

impl WindowStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Available => "available",
            Self::Blocked => "blocked",
            Self::Booked => "booked",
        }
    }
}

/// A time range of a listing with what it is used for.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct AvailabilityWindow {
    pub id: Uuid,
    #[schema(example = "availability_window")]
    pub object: &'static str,
    pub listing_id: Uuid,
    pub status: WindowStatus,
    /// Inclusive.
    pub start_time: DateTime<Utc>,
    /// Exclusive.
    pub end_time: DateTime<Utc>,
    /// The unit of inventory (0-based) a block or booking occupies; `null`
    /// for `available` windows, which open every unit.
    pub unit: Option<i32>,
    /// The booking of a `booked` window (owner and admins only).
    pub booking_id: Option<Uuid>,
    /// The owner's note (owner and admins only).
    pub note: Option<String>,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    listing_id: Uuid,
    status: String,
    start_time: DateTime<Utc>,
    end_time: DateTime<Utc>,
    unit: Option<i32>,
    booking_id: Option<Uuid>,
    note: Option<String>,
}

impl Row {
    fn view(self, private: bool) -> AvailabilityWindow {
        let status = match self.status.as_str() {
            "available" => WindowStatus::Available,
            "blocked" => WindowStatus::Blocked,
            _ => WindowStatus::Booked,
        };
        AvailabilityWindow {
            id: self.id,
            object: "availability_window",
            listing_id: self.listing_id,
            status,
            start_time: self.start_time,
            end_time: self.end_time,
            unit: self.unit,
            booking_id: self.booking_id.filter(|_| private),
            note: self.note.filter(|_| private),
        }
    }
}

#[derive(Debug, Deserialize, IntoParams, Validate)]
#[into_params(parameter_in = Query)]
pub struct RangeQuery {
    /// RFC 3339; default now.
    pub from: Option<DateTime<Utc>>,
    /// RFC 3339, exclusive; default `from` + 90 days; at most 366 days
    /// after `from`.
    pub to: Option<DateTime<Utc>>,
}

fn field_error(field: &str, code: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        code: code.into(),
        message: message.into(),
    }
}

/// The read range, defaults applied; 400 when it is empty or too long.
pub fn read_range(
    query: &RangeQuery,
    now: DateTime<Utc>,
) -> Result<(DateTime<Utc>, DateTime<Utc>), ListingError> {
    let from = query.from.unwrap_or(now);
    let to = query
        .to
        .unwrap_or(from + Duration::days(DEFAULT_RANGE_DAYS));
    if to <= from {
        return Err(ListingError::field("to", "range", "must be after `from`"));
    }
    if to - from > Duration::days(MAX_RANGE_DAYS) {
        return Err(ListingError::field(
            "to",
            "range",
            "the range may cover at most 366 days",
        ));
    }
    Ok((from, to))
}

/// Windows overlapping `[from, to)`, in time order. Anyone who may see the
/// listing may read them; `booking_id` and `note` only its owner and admins.
#[utoipa::path(
    get, path = "/v1/listings/{id}/availability", tag = "listings",
    params(("id" = Uuid, Path), RangeQuery, PageParams),
    responses(
        (status = 200, description = "A page of windows", body = Page<AvailabilityWindow>),
        (status = 400, description = "`validation_failed` (range) or `invalid_cursor`", body = ErrorEnvelope),
        (status = 404, description = "`not_found`", body = ErrorEnvelope),
    )
)]
pub async fn get_availability(
    Extension(listings): Extension<Listings>,
    MaybeCaller(caller): MaybeCaller,
    Path(id): Path<Uuid>,
    ValidQuery(range): ValidQuery<RangeQuery>,
    ValidQuery(page): ValidQuery<PageParams>,
) -> ApiResult<axum::Json<Page<AvailabilityWindow>>> {
    let (from, to) = read_range(&range, Utc::now())?;
    let after: Option<Cursor<DateTime<Utc>>> = page.after()?;
    let mut conn = listings.db().acquire().await?;
    let listing = service::visible(&mut conn, id, caller.as_ref()).await?;
    let private = caller
        .as_ref()
        .is_some_and(|c| c.user_id == listing.owner_id || c.is_admin());
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, listing_id, status, start_time, end_time, unit, booking_id, note
           FROM availability_windows
          WHERE listing_id = $1 AND start_time < $3 AND end_time > $2
            AND ($4::timestamptz IS NULL OR (start_time, id) > ($4, $5))
          ORDER BY start_time, id
          LIMIT $6",
    )
    .bind(id)
    .bind(from)
    .bind(to)
    .bind(after.as_ref().map(|c| c.key))
    .bind(after.as_ref().map(|c| c.id))
    .bind(page.fetch_limit())
    .fetch_all(&mut *conn)
    .await?;
    let page = Page::from_rows(rows, &page, |r| Cursor::new(r.start_time, r.id));
    Ok(axum::Json(page.map(|row| row.view(private))))
}

/// A window the owner sets.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WindowInput {
    /// `available` or `blocked`; `booked` windows come from bookings only.
    pub status: WindowStatus,
    /// RFC 3339, inclusive.
    pub start_time: DateTime<Utc>,
    /// RFC 3339, exclusive; after `start_time`.
    pub end_time: DateTime<Utc>,
    /// Blocks only: the unit (0 ..= quantity-1) to block; absent blocks
    /// every unit.
    #[serde(default)]
    pub unit: Option<i32>,
    /// Up to 500 characters, for the owner.
    #[serde(default)]
    pub note: Option<String>,
}

/// The owner's windows for a range, replacing the ones there.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetAvailability {
    pub windows: Vec<WindowInput>,
    /// Start of the replaced range (default now). Owner windows starting at
    /// or after it and ending by `to` are replaced.
    #[serde(default)]
    pub from: Option<DateTime<Utc>>,
    /// End of the replaced range (default: open-ended, every future window).
    #[serde(default)]
    pub to: Option<DateTime<Utc>>,
}

/// The result of a `PUT`: the replaced range and the windows now in it.
#[derive(Debug, Serialize, ToSchema)]
pub struct AvailabilitySet {
    #[schema(example = "availability")]
    pub object: &'static str,
    pub listing_id: Uuid,
    pub from: DateTime<Utc>,
    pub to: Option<DateTime<Utc>>,
    /// The owner's windows written, in time order (a block without `unit`
    /// appears once per unit).
    pub windows: Vec<AvailabilityWindow>,
}

/// A row to insert.
#[derive(Clone, Debug, PartialEq)]
pub struct NewWindow {
    pub status: WindowStatus,
    pub start_time: DateTime<Utc>,
    pub end_time: DateTime<Utc>,
    pub unit: Option<i32>,
    pub note: Option<String>,
}

/// Checks the owner's windows and expands blocks without a unit into one
/// row per unit. Pure: every rule that does not need other rows.
pub fn plan(
    input: &SetAvailability,
    quantity: i32,
    from: DateTime<Utc>,
) -> Result<Vec<NewWindow>, ListingError> {
    let mut errors = Vec::new();
    if let Some(to) = input.to
        && to <= from
    {
        errors.push(field_error("to", "range", "must be after `from`"));
    }
    if input.windows.len() > MAX_WINDOWS {
        errors.push(field_error("windows", "length", "at most 500 windows"));
    }
    let mut rows = Vec::new();
    for (i, window) in input.windows.iter().enumerate() {
        let at = |field: &str| format!("windows[{i}].{field}");
        if window.status == WindowStatus::Booked {
            errors.push(field_error(
                &at("status"),
                "invalid_choice",
                "owners set `available` or `blocked`; bookings make `booked` windows",
            ));
            continue;
        }
        if window.end_time <= window.start_time {
            errors.push(field_error(
                &at("end_time"),
                "range",
                "must be after `start_time`",
            ));
            continue;
        }
        if window.start_time < from || input.to.is_some_and(|to| window.end_time > to) {
            errors.push(field_error(
                &at("start_time"),
                "out_of_range",
                "the window must lie inside the replaced range [`from`, `to`)",
            ));
            continue;
        }
        if window
            .note
            .as_deref()
            .is_some_and(|n| n.chars().count() > 500)
        {
            errors.push(field_error(&at("note"), "length", "at most 500 characters"));
        }
        let units: Vec<Option<i32>> = match (window.status, window.unit) {
            (WindowStatus::Available, None) => vec![None],
            (WindowStatus::Available, Some(_)) => {
                errors.push(field_error(
                    &at("unit"),
                    "not_allowed",
                    "`available` windows open every unit; omit `unit`",
                ));
                continue;
            }
            (_, Some(unit)) if !(0..quantity).contains(&unit) => {
                errors.push(field_error(
                    &at("unit"),
                    "range",
                    format!(
                        "must be between 0 and {} (the listing's quantity - 1)",
                        quantity - 1
                    ),
                ));
                continue;
            }
            (_, Some(unit)) => vec![Some(unit)],
            (_, None) => (0..quantity).map(Some).collect(),
        };
        for unit in units {
            rows.push((
                i,
                NewWindow {
                    status: window.status,
                    start_time: window.start_time,
                    end_time: window.end_time,
                    unit,
                    note: window.note.clone(),
                },
            ));
        }
    }
    if rows.len() > MAX_ROWS {
        errors.push(field_error(
            "windows",
            "too_many",
            "the windows expand to more than 10000 unit blocks",
        ));
    }
    // Overlaps within the request: available windows among themselves,
    // blocks among themselves per unit.
    let mut lanes: HashMap<Option<i32>, Vec<&(usize, NewWindow)>> = HashMap::new();
    for row in &rows {
        lanes.entry(row.1.unit).or_default().push(row);
    }
    let mut overlapping = Vec::new();
    for lane in lanes.values_mut() {
        lane.sort_by_key(|(_, w)| w.start_time);
        for pair in lane.windows(2) {
            if pair[1].1.start_time < pair[0].1.end_time {
                overlapping.push(pair[1].0);
            }
        }
    }
    overlapping.sort();
    overlapping.dedup();
    for i in overlapping {
        errors.push(field_error(
            &format!("windows[{i}]"),
            "overlap",
            "overlaps another window of the request",
        ));
    }
    if errors.is_empty() {
        rows.sort_by_key(|(_, w)| (w.start_time, w.unit));
        Ok(rows.into_iter().map(|(_, w)| w).collect())
    } else {
        Err(ListingError::Invalid(errors))
    }
}

/// Replaces the owner's `available` and `blocked` windows inside
/// [`from`, `to`) (default: every window starting from now on) with the
/// given ones, in one transaction. `booked` windows stay; a block over one
/// is 409 `availability_conflict`.
#[utoipa::path(
    put, path = "/v1/listings/{id}/availability", tag = "listings",
    security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    request_body = SetAvailability,
    responses(
        (status = 200, description = "The windows now set in the range", body = AvailabilitySet),
        (status = 400, description = "`validation_failed`: times, units, overlaps within the request", body = ErrorEnvelope),
        (status = 404, description = "`not_found`", body = ErrorEnvelope),
        (status = 409, description = "`availability_conflict` (a block over a booking, or a window overlapping one outside the range) or `invalid_transition` (archived)", body = ErrorEnvelope),
    )
)]
pub async fn set_availability(
    Extension(listings): Extension<Listings>,
    caller: UserCaller,
    Path(id): Path<Uuid>,
    Json(input): Json<SetAvailability>,
) -> ApiResult<axum::Json<AvailabilitySet>> {
    Ok(axum::Json(
        replace_windows(&listings, caller.user_id, id, input).await?,
    ))
}

async fn replace_windows(
    listings: &Listings,
    owner: Uuid,
    id: Uuid,
    input: SetAvailability,
) -> Result<AvailabilitySet, ListingError> {
    let from = input.from.unwrap_or_else(Utc::now);
    let mut tx = listings.db().begin().await?;
    // The lock serialises concurrent replacements of one listing's windows.
    let listing = service::owned_for_update(&mut tx, id, owner).await?;
    if listing.status == ListingStatus::Archived {
        return Err(ListingError::InvalidTransition {
            status: listing.status,
            action: "given availability",
        });
    }
    let quantity = i32::try_from(listing.data.quantity).map_err(anyhow::Error::from)?;
    let rows = plan(&input, quantity, from)?;
    let removed = sqlx::query(
        "DELETE FROM availability_windows
          WHERE listing_id = $1 AND status IN ('available', 'blocked')
            AND start_time >= $2 AND ($3::timestamptz IS NULL OR end_time <= $3)",
    )
    .bind(id)
    .bind(from)
    .bind(input.to)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let written = insert(&mut tx, &listing, &rows).await?;
    record_changed(&mut tx, &listing, from, input.to, removed, written.len()).await?;
    tx.commit().await?;
    Ok(AvailabilitySet {
        object: "availability",
        listing_id: id,
        from,
        to: input.to,
        windows: written.into_iter().map(|r| r.view(true)).collect(),
    })
}

async fn insert(
    tx: &mut PgConnection,
    listing: &Listing,
    rows: &[NewWindow],
) -> Result<Vec<Row>, ListingError> {
    let ids: Vec<Uuid> = rows.iter().map(|_| new_id()).collect();
    let units: Vec<Option<i32>> = rows.iter().map(|r| r.unit).collect();
    let statuses: Vec<&str> = rows.iter().map(|r| r.status.as_str()).collect();
    let starts: Vec<DateTime<Utc>> = rows.iter().map(|r| r.start_time).collect();
    let ends: Vec<DateTime<Utc>> = rows.iter().map(|r| r.end_time).collect();
    let notes: Vec<Option<String>> = rows.iter().map(|r| r.note.clone()).collect();
    let inserted: Result<Vec<Row>, sqlx::Error> = sqlx::query_as(
        "INSERT INTO availability_windows
            (id, listing_id, unit, status, start_time, end_time, span, note)
         SELECT w.id, $1, w.unit, w.status, w.start_time, w.end_time,
                tstzrange(w.start_time, w.end_time), w.note
           FROM UNNEST($2::uuid[], $3::int4[], $4::text[], $5::timestamptz[],
                       $6::timestamptz[], $7::text[])
                AS w (id, unit, status, start_time, end_time, note)
         RETURNING id, listing_id, status, start_time, end_time, unit, booking_id, note",
    )
    .bind(listing.id)
    .bind(&ids)
    .bind(&units)
    .bind(&statuses)
    .bind(&starts)
    .bind(&ends)
    .bind(&notes)
    .fetch_all(&mut *tx)
    .await;
    match inserted {
        Ok(mut rows) => {
            rows.sort_by_key(|r| (r.start_time, r.unit));
            Ok(rows)
        }
        Err(e)
            if is_constraint(&e, "availability_no_overlap")
                || is_constraint(&e, "availability_open_no_overlap") =>
        {
            Err(ListingError::AvailabilityConflict)
        }
        Err(e) => Err(e.into()),
    }
}

async fn record_changed(
    tx: &mut PgConnection,
    listing: &Listing,
    from: DateTime<Utc>,
    to: Option<DateTime<Utc>>,
    removed: u64,
    written: usize,
) -> anyhow::Result<()> {
    outbox::record(
        tx,
        NewEvent {
            event_type: "availability.changed",
            aggregate_type: "listing",
            aggregate_id: listing.id.to_string(),
            payload: serde_json::json!({
                "id": listing.id,
                "listing_id": listing.id,
                "owner_id": listing.owner_id,
                "type": listing.data.kind,
                "status": listing.status,
                "public": lifecycle::is_public(listing.status),
                "from": from,
                "to": to,
                "removed": removed,
                "written": written,
            }),
        },
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn t(hour: u32) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(&format!("2030-01-01T{hour:02}:00:00Z"))
            .unwrap()
            .with_timezone(&Utc)
    }

    fn input(value: serde_json::Value) -> SetAvailability {
        serde_json::from_value(value).unwrap()
    }

    fn fields(error: ListingError) -> Vec<String> {
        match error {
            ListingError::Invalid(errors) => errors.into_iter().map(|e| e.field).collect(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn blocks_without_a_unit_expand_to_every_unit() {
        let rows = plan(
            &input(json!({"windows": [
                {"status": "blocked", "start_time": t(10), "end_time": t(12)},
                {"status": "available", "start_time": t(8), "end_time": t(18)},
                {"status": "blocked", "start_time": t(12), "end_time": t(13), "unit": 1},
            ]})),
            3,
            t(0),
        )
        .unwrap();
        let units: Vec<Option<i32>> = rows.iter().map(|r| r.unit).collect();
        assert_eq!(units, [None, Some(0), Some(1), Some(2), Some(1)]);
    }

    #[test]
    fn bad_windows_are_named() {
        let error = plan(
            &input(json!({"windows": [
                {"status": "blocked", "start_time": t(10), "end_time": t(9)},
                {"status": "blocked", "start_time": t(10), "end_time": t(11), "unit": 3},
                {"status": "available", "start_time": t(8), "end_time": t(12)},
                {"status": "available", "start_time": t(11), "end_time": t(14)},
                {"status": "available", "start_time": t(1), "end_time": t(2), "unit": 0},
                {"status": "booked", "start_time": t(1), "end_time": t(2)},
            ]})),
            3,
            t(0),
        )
        .unwrap_err();
        assert_eq!(
            fields(error),
            [
                "windows[0].end_time",
                "windows[1].unit",
                "windows[4].unit",
                "windows[5].status",
                "windows[3]"
            ]
        );
        let error = plan(
            &input(json!({"to": t(5), "windows": [
                {"status": "blocked", "start_time": t(4), "end_time": t(6)},
            ]})),
            1,
            t(2),
        )
        .unwrap_err();
        assert_eq!(fields(error), ["windows[0].start_time"]);
    }

    #[test]
    fn blocks_on_different_units_may_overlap_but_not_on_the_same() {
        let body = |unit_b: i32| {
            input(json!({"windows": [
                {"status": "blocked", "start_time": t(1), "end_time": t(3), "unit": 0},
                {"status": "blocked", "start_time": t(2), "end_time": t(4), "unit": unit_b},
            ]}))
        };
        assert!(plan(&body(1), 2, t(0)).is_ok());
        assert_eq!(fields(plan(&body(0), 2, t(0)).unwrap_err()), ["windows[1]"]);
    }

    #[test]
    fn read_ranges_default_and_are_bounded() {
        let now = t(0);
        let (from, to) = read_range(
            &RangeQuery {
                from: None,
                to: None,
            },
            now,
        )
        .unwrap();
        assert_eq!((from, to), (now, now + Duration::days(90)));
        let long = RangeQuery {
            from: None,
            to: Some(now + Duration::days(367)),
        };
        assert!(read_range(&long, now).is_err());
        let backwards = RangeQuery {
            from: Some(now),
            to: Some(now),
        };
        assert!(read_range(&backwards, now).is_err());
    }
}
