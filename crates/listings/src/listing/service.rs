//! The listing operations, each one transaction that also records its
//! outbox event: create, update (optimistic, by version), and the status
//! transitions of [`super::lifecycle`].

use axum::{
    http::{StatusCode, header},
    response::Response,
};
use rentify_platform::{
    auth::Principal,
    error::FieldError,
    idempotency::{self, Begin, IdempotencyKey, Pending, Scope},
    ids::new_id,
};
use sqlx::PgConnection;
use uuid::Uuid;

use super::{
    fields::{ListingData, ListingInput},
    lifecycle::{self, Action},
    store::{self, Listing},
    view::{self, ListingView},
};
use crate::{Listings, categories, error::ListingError, model::ListingType};

/// What identifies a state-changing POST for its `Idempotency-Key`: a
/// retry with the same key and body replays the first response.
pub struct Retry<'a> {
    pub key: &'a IdempotencyKey,
    pub principal: Uuid,
    pub path: String,
    pub body: serde_json::Value,
}

impl Retry<'_> {
    /// Claims the key on `tx`, or gives the stored response.
    async fn begin(
        &self,
        tx: &mut PgConnection,
        listings: &Listings,
    ) -> Result<Result<Pending, Response>, ListingError> {
        let principal = self.principal.to_string();
        let scope = Scope {
            principal: &principal,
            method: "POST",
            path: &self.path,
            body: &self.body,
        };
        let ttl = listings.platform().config.idempotency_ttl_hours;
        Ok(match idempotency::begin(tx, self.key, scope, ttl).await? {
            Begin::Replay(response) => Err(response),
            Begin::Proceed(pending) => Ok(pending),
        })
    }
}

/// Stores the response under the key (same transaction) and returns it
/// with the listing's `ETag`.
async fn respond(
    tx: &mut PgConnection,
    pending: Pending,
    status: StatusCode,
    listing: Listing,
) -> Result<Response, ListingError> {
    let version = listing.version;
    let mut response = pending
        .complete(tx, status, &ListingView::from(listing))
        .await?;
    if let Ok(value) = rentify_platform::http::etag::etag(version).parse() {
        response.headers_mut().insert(header::ETAG, value);
    }
    Ok(response)
}

/// The listing if `caller` may see it (public statuses, its owner, admins);
/// otherwise `NotFound`, so existence does not leak.
pub async fn visible(
    conn: &mut PgConnection,
    id: Uuid,
    caller: Option<&Principal>,
) -> Result<Listing, ListingError> {
    let listing = store::find(conn, id, false)
        .await?
        .ok_or(ListingError::NotFound)?;
    let privileged = caller.is_some_and(|c| c.user_id == listing.owner_id || c.is_admin());
    if lifecycle::is_public(listing.status) || privileged {
        Ok(listing)
    } else {
        Err(ListingError::NotFound)
    }
}

/// The caller's own listing, locked for the transaction; anyone else's is
/// `NotFound`.
pub async fn owned_for_update(
    conn: &mut PgConnection,
    id: Uuid,
    owner: Uuid,
) -> Result<Listing, ListingError> {
    match store::find(conn, id, true).await? {
        Some(listing) if listing.owner_id == owner => Ok(listing),
        _ => Err(ListingError::NotFound),
    }
}

/// Field rules plus the category's existence and kind.
async fn check(
    conn: &mut PgConnection,
    data: &ListingData,
    category_changed: bool,
) -> Result<(), ListingError> {
    let mut errors = data.validate();
    if category_changed && let Some(category) = data.category_id {
        match categories::kind_of(conn, category).await? {
            None => errors.push(FieldError {
                field: "category_id".into(),
                code: "not_found".into(),
                message: "no such category (see `GET /v1/categories`)".into(),
            }),
            Some(kind) if kind != data.kind => errors.push(FieldError {
                field: "category_id".into(),
                code: "kind_mismatch".into(),
                message: format!(
                    "this category holds `{}` listings, not `{}`",
                    kind.as_str(),
                    data.kind.as_str()
                ),
            }),
            Some(_) => {}
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ListingError::Invalid(errors))
    }
}

/// Creates a draft for `owner`, making them an `owner` with their first
/// listing.
pub async fn create(
    listings: &Listings,
    owner: Uuid,
    retry: Retry<'_>,
    input: ListingInput,
) -> Result<Response, ListingError> {
    let kind: ListingType = input
        .kind
        .ok_or_else(|| ListingError::field("type", "required", "`type` is required"))?;
    let mut data = ListingData::new(kind);
    data.apply(input);

    let mut tx = listings.db().begin().await?;
    check(&mut tx, &data, true).await?;
    let pending = match retry.begin(&mut tx, listings).await? {
        Ok(pending) => pending,
        Err(replay) => return Ok(replay),
    };
    let listing = store::insert(&mut tx, new_id(), owner, &data).await?;
    rentify_identity::become_owner(&mut tx, owner).await?;
    store::record_event(&mut tx, "listing.created", &listing, serde_json::json!({})).await?;
    let response = respond(&mut tx, pending, StatusCode::CREATED, listing).await?;
    tx.commit().await?;
    Ok(response)
}

/// Applies `input` to the owner's listing. The row is locked, `If-Match`
/// is compared with the locked version, and the write is conditional on
/// that version, so of two concurrent writers with the same `If-Match`
/// exactly one wins and the other gets 412.
pub async fn update(
    listings: &Listings,
    owner: Uuid,
    id: Uuid,
    headers: &axum::http::HeaderMap,
    input: ListingInput,
) -> Result<Listing, ListingError> {
    let mut tx = listings.db().begin().await?;
    let current = owned_for_update(&mut tx, id, owner).await?;
    view::check_if_match(headers, current.version)?;
    lifecycle::transition(current.status, Action::Edit)?;
    if input.kind.is_some_and(|k| k != current.data.kind) {
        return Err(ListingError::field(
            "type",
            "immutable",
            "the type of a listing cannot change; create another listing",
        ));
    }
    let mut data = current.data.clone();
    let set = data.apply(input);
    if set.is_empty() {
        // Nothing to change: no new version, no event.
        return Ok(current);
    }
    check(&mut tx, &data, data.category_id != current.data.category_id).await?;
    if data.quantity < current.data.quantity
        && store::units_in_use_from(&mut tx, id, data.quantity).await?
    {
        return Err(ListingError::QuantityInUse {
            quantity: data.quantity as i32,
        });
    }
    let updated = store::update_data(&mut tx, id, current.version, &data)
        .await?
        .ok_or(ListingError::PreconditionFailed {
            current: current.version,
        })?;
    store::record_event(
        &mut tx,
        "listing.updated",
        &updated,
        serde_json::json!({ "fields": set }),
    )
    .await?;
    tx.commit().await?;
    Ok(updated)
}

/// An owner's transition (publish, pause, resume, archive).
pub async fn owner_transition(
    listings: &Listings,
    owner: Uuid,
    id: Uuid,
    action: OwnerAction,
    retry: Retry<'_>,
) -> Result<Response, ListingError> {
    let mut tx = listings.db().begin().await?;
    let pending = match retry.begin(&mut tx, listings).await? {
        Ok(pending) => pending,
        Err(replay) => return Ok(replay),
    };
    let current = owned_for_update(&mut tx, id, owner).await?;
    let action = match action {
        OwnerAction::Publish => {
            // Check the transition first: publishing an active listing is a
            // 409 whatever its content.
            lifecycle::transition(
                current.status,
                Action::Publish {
                    needs_review: false,
                },
            )?;
            let missing = current.data.missing_for_publish();
            if !missing.is_empty() {
                return Err(ListingError::Incomplete(missing));
            }
            let needs_review = current.data.kind == ListingType::Property
                || !rentify_identity::identity_verified(&mut tx, owner).await?;
            Action::Publish { needs_review }
        }
        OwnerAction::Pause => Action::Pause,
        OwnerAction::Resume => Action::Resume,
        OwnerAction::Archive => Action::Archive,
    };
    let listing = apply_transition(&mut tx, current, action, None, None).await?;
    let response = respond(&mut tx, pending, StatusCode::OK, listing).await?;
    tx.commit().await?;
    Ok(response)
}

/// An admin's review decision on a listing in `pending_review`.
pub async fn review(
    listings: &Listings,
    reviewer: Uuid,
    id: Uuid,
    action: Action,
    reason: Option<&str>,
    retry: Retry<'_>,
) -> Result<Response, ListingError> {
    let mut tx = listings.db().begin().await?;
    let pending = match retry.begin(&mut tx, listings).await? {
        Ok(pending) => pending,
        Err(replay) => return Ok(replay),
    };
    let current = store::find(&mut tx, id, true)
        .await?
        .ok_or(ListingError::NotFound)?;
    let listing = apply_transition(&mut tx, current, action, Some(reviewer), reason).await?;
    let response = respond(&mut tx, pending, StatusCode::OK, listing).await?;
    tx.commit().await?;
    Ok(response)
}

/// What an owner may do to their listing's status.
#[derive(Clone, Copy, Debug)]
pub enum OwnerAction {
    Publish,
    Pause,
    Resume,
    Archive,
}

/// Validates and writes `action` on the locked `current`, with its event.
pub async fn apply_transition(
    tx: &mut PgConnection,
    current: Listing,
    action: Action,
    reviewer: Option<Uuid>,
    reason: Option<&str>,
) -> Result<Listing, ListingError> {
    let to = lifecycle::transition(current.status, action)?;
    let listing = store::set_status(tx, current.id, to, reviewer, reason).await?;
    let extra = serde_json::json!({
        "from": current.status,
        "reviewed_by": reviewer,
        "reason": reason,
    });
    store::record_event(tx, action.event(to), &listing, extra).await?;
    Ok(listing)
}
