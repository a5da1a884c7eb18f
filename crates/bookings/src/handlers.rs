//! The bookings endpoints: thin handlers over [`crate::service`].

use std::collections::HashMap;

use axum::{
    Extension,
    body::Bytes,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use rentify_identity::{ContactDetails, Identity};
use rentify_platform::{
    ApiError, ApiResult, PlatformState,
    auth::{Principal, UserCaller},
    error::ErrorEnvelope,
    extract::{Json, Path, ValidQuery, parse_json},
    idempotency::IdempotencyKey,
    pagination::{Cursor, Page, PageParams},
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::{
    Bookings,
    model::{Booking, BookingRow},
    pricing::Quote,
    service::{self, ExtendInput, Idem, NewBooking, Reply, Side, TransitionInput},
    state::{Action, Status},
};

pub fn routes() -> OpenApiRouter<PlatformState> {
    OpenApiRouter::new()
        .routes(routes!(create_booking))
        .routes(routes!(quote_booking))
        .routes(routes!(get_booking))
        .routes(routes!(booking_transactions))
        .routes(routes!(approve_booking))
        .routes(routes!(decline_booking))
        .routes(routes!(cancel_booking))
        .routes(routes!(start_booking))
        .routes(routes!(complete_booking))
        .routes(routes!(extend_booking))
        .routes(routes!(dispute_booking))
        .routes(routes!(resolve_booking))
        .routes(routes!(list_my_bookings))
        .routes(routes!(list_my_rentals))
}

/// The counterparty's contact details when `row` reveals them to `viewer`.
async fn contact_for(
    identity: &Identity,
    row: &BookingRow,
    viewer: Uuid,
) -> ApiResult<Option<ContactDetails>> {
    match row.counterparty_of(viewer) {
        Some(other) if row.reveals_contact() => identity.contact_details(other).await,
        _ => Ok(None),
    }
}

/// Renders a committed change for the caller. Contact details are looked up
/// after the commit and are not part of the stored idempotent response (no
/// personal data in `idempotency_keys`): a replay shows `contact: null`.
async fn render(
    identity: &Identity,
    reply: Reply,
    viewer: Uuid,
    status: StatusCode,
) -> ApiResult<Response> {
    match reply {
        Reply::Replay(response) => Ok(response),
        Reply::Fresh(row) => {
            let contact = contact_for(identity, &row, viewer).await?;
            Ok((status, axum::Json(row.view(viewer, contact))).into_response())
        }
    }
}

fn idem<'a>(
    caller: &Principal,
    key: IdempotencyKey,
    path: &'a str,
    body: &impl Serialize,
) -> ApiResult<Idem<'a>> {
    Ok(Idem {
        key,
        principal: caller.user_id.to_string(),
        path,
        body: serde_json::to_value(body).map_err(ApiError::internal)?,
    })
}

/// Creates a booking: `approved` at once for instant-book listings, else a
/// `requested` booking the owner answers within the approval window. The
/// booking holds one unit of the listing from the start; a taken slot is
/// 409 `booking_conflict`, never a double booking.
#[utoipa::path(
    post, path = "/v1/bookings", tag = "bookings",
    security(("bearer" = [])),
    params(("Idempotency-Key" = String, Header, description = "Required: a retry with the same key replays the first answer.")),
    request_body = NewBooking,
    responses(
        (status = 201, description = "Created (`Idempotent-Replayed: true` on a replay)", body = Booking),
        (status = 400, description = "`validation_failed` (also a missing `Idempotency-Key`), `booking_rule_violated`, `pricing_failed`", body = ErrorEnvelope),
        (status = 401, description = "`unauthenticated`", body = ErrorEnvelope),
        (status = 403, description = "`own_listing`, or an API key", body = ErrorEnvelope),
        (status = 404, description = "No such listing", body = ErrorEnvelope),
        (status = 409, description = "`booking_conflict`, `listing_unavailable`, `outside_availability`, `idempotency_key_in_progress`", body = ErrorEnvelope),
        (status = 422, description = "`idempotency_key_reused`", body = ErrorEnvelope),
    )
)]
pub async fn create_booking(
    Extension(bookings): Extension<Bookings>,
    Extension(identity): Extension<Identity>,
    caller: UserCaller,
    key: IdempotencyKey,
    Json(input): Json<NewBooking>,
) -> ApiResult<Response> {
    let key = IdempotencyKey(Some(key.required()?));
    let idem = idem(&caller, key, "/v1/bookings", &input)?;
    let reply = service::create(&bookings, &caller, idem, input).await?;
    // Still waiting for the card's authorization: accepted, not created.
    let status = match &reply {
        Reply::Fresh(row) if row.status == Status::PendingPayment.as_str() => StatusCode::ACCEPTED,
        _ => StatusCode::CREATED,
    };
    render(&identity, reply, caller.user_id, status).await
}

/// A priced dry run of `POST /v1/bookings`.
#[derive(Debug, Serialize, ToSchema)]
pub struct BookingQuote {
    /// Always `booking_quote`.
    #[schema(example = "booking_quote")]
    pub object: &'static str,
    #[serde(flatten)]
    pub quote: Quote,
    /// Whether a unit is free for that time right now.
    pub available: bool,
}

/// Prices a prospective booking with exactly the checks of the real call,
/// and changes nothing.
#[utoipa::path(
    post, path = "/v1/bookings/quote", tag = "bookings",
    security(("bearer" = [])),
    request_body = NewBooking,
    responses(
        (status = 200, description = "The price and whether the time is free", body = BookingQuote),
        (status = 400, description = "`validation_failed`, `booking_rule_violated`, `pricing_failed`", body = ErrorEnvelope),
        (status = 401, description = "`unauthenticated`", body = ErrorEnvelope),
        (status = 403, description = "`own_listing`", body = ErrorEnvelope),
        (status = 404, description = "No such listing", body = ErrorEnvelope),
        (status = 409, description = "`listing_unavailable`, `outside_availability`", body = ErrorEnvelope),
    )
)]
pub async fn quote_booking(
    Extension(bookings): Extension<Bookings>,
    caller: UserCaller,
    Json(input): Json<NewBooking>,
) -> ApiResult<axum::Json<BookingQuote>> {
    let quoted = service::quote(&bookings, &caller, &input).await?;
    Ok(axum::Json(BookingQuote {
        object: "booking_quote",
        quote: quoted.quote,
        available: quoted.available,
    }))
}

/// A booking, for its renter, its owner and admins.
#[utoipa::path(
    get, path = "/v1/bookings/{id}", tag = "bookings",
    security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, description = "The booking; the counterparty's contact once approved", body = Booking),
        (status = 401, description = "`unauthenticated`", body = ErrorEnvelope),
        (status = 404, description = "No such booking, or not yours", body = ErrorEnvelope),
    )
)]
pub async fn get_booking(
    Extension(bookings): Extension<Bookings>,
    Extension(identity): Extension<Identity>,
    caller: UserCaller,
    Path(id): Path<Uuid>,
) -> ApiResult<axum::Json<Booking>> {
    let row = service::get(&bookings, &caller, id).await?;
    let contact = contact_for(&identity, &row, caller.user_id).await?;
    Ok(axum::Json(row.view(caller.user_id, contact)))
}

/// A booking's transactions (its ledger transfers, in the seed's terms).
#[derive(Debug, Serialize, ToSchema)]
pub struct TransactionList {
    #[schema(example = "list")]
    pub object: &'static str,
    pub data: Vec<rentify_payments::escrow::Transaction>,
}

/// The money of a booking, oldest first: the authorization hold (`charge`,
/// `deposit_hold`, `pending` until captured), refunds, the deposit's
/// release and the settlement to the owner (`payout`).
#[utoipa::path(
    get, path = "/v1/bookings/{id}/transactions", tag = "bookings",
    security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, description = "The booking's transactions", body = TransactionList),
        (status = 401, description = "`unauthenticated`", body = ErrorEnvelope),
        (status = 404, description = "No such booking, or not yours", body = ErrorEnvelope),
    )
)]
pub async fn booking_transactions(
    Extension(bookings): Extension<Bookings>,
    caller: UserCaller,
    Path(id): Path<Uuid>,
) -> ApiResult<axum::Json<TransactionList>> {
    service::get(&bookings, &caller, id).await?;
    let data = rentify_payments::escrow::transactions(&mut *bookings.db().acquire().await?, id)
        .await
        .map_err(ApiError::from)?;
    Ok(axum::Json(TransactionList {
        object: "list",
        data,
    }))
}

/// Runs a transition for a handler.
#[allow(clippy::too_many_arguments)]
async fn transition(
    bookings: &Bookings,
    identity: &Identity,
    caller: &Principal,
    id: Uuid,
    action: Action,
    key: IdempotencyKey,
    body: &Bytes,
) -> ApiResult<Response> {
    let input: TransitionInput = if body.iter().all(u8::is_ascii_whitespace) {
        TransitionInput::default()
    } else {
        parse_json(body)?
    };
    let path = format!("/v1/bookings/{id}/{}", action.as_str());
    let idem = idem(caller, key, &path, &input)?;
    let reply = service::act(bookings, caller, id, action, idem, input).await?;
    render(identity, reply, caller.user_id, StatusCode::OK).await
}

macro_rules! transition_handler {
    ($name:ident, $action:expr, $path:literal, $doc:literal, $who:literal, $body:ty) => {
        #[doc = $doc]
        #[utoipa::path(
            post, path = $path, tag = "bookings",
            security(("bearer" = [])),
            params(
                ("id" = Uuid, Path),
                ("Idempotency-Key" = Option<String>, Header, description = "Optional: a retry with the same key replays the first answer."),
            ),
            request_body(content = Option<$body>, description = "Optional JSON body"),
            responses(
                (status = 200, description = "The booking after the transition", body = Booking),
                (status = 400, description = "`validation_failed`", body = ErrorEnvelope),
                (status = 401, description = "`unauthenticated`", body = ErrorEnvelope),
                (status = 403, description = $who, body = ErrorEnvelope),
                (status = 404, description = "No such booking, or not yours", body = ErrorEnvelope),
                (status = 409, description = "`invalid_transition` with `details: [{current_status}]`", body = ErrorEnvelope),
                (status = 422, description = "`idempotency_key_reused`", body = ErrorEnvelope),
            )
        )]
        pub async fn $name(
            Extension(bookings): Extension<Bookings>,
            Extension(identity): Extension<Identity>,
            caller: UserCaller,
            Path(id): Path<Uuid>,
            key: IdempotencyKey,
            body: Bytes,
        ) -> ApiResult<Response> {
            transition(&bookings, &identity, &caller, id, $action, key, &body).await
        }
    };
}

transition_handler!(
    approve_booking,
    Action::Approve,
    "/v1/bookings/{id}/approve",
    "The owner accepts a request (`requested → approved`); contact details are shared from now on.",
    "Only the owner approves",
    TransitionInput
);
transition_handler!(
    decline_booking,
    Action::Decline,
    "/v1/bookings/{id}/decline",
    "The owner declines a request (`requested → declined`, optional `reason`); the unit is released.",
    "Only the owner declines",
    TransitionInput
);
transition_handler!(
    cancel_booking,
    Action::Cancel,
    "/v1/bookings/{id}/cancel",
    "The renter, the owner or an admin cancels (`requested|approved → cancelled`); the unit is released and the refund computed from the cancellation policy.",
    "Not allowed for this caller",
    TransitionInput
);
transition_handler!(
    start_booking,
    Action::Start,
    "/v1/bookings/{id}/start",
    "The owner hands the item over (`approved → active`).",
    "Only the owner starts a booking",
    TransitionInput
);
transition_handler!(
    complete_booking,
    Action::Complete,
    "/v1/bookings/{id}/complete",
    "The owner got the item back (`active → completed`).",
    "Only the owner completes a booking",
    TransitionInput
);
transition_handler!(
    dispute_booking,
    Action::Dispute,
    "/v1/bookings/{id}/dispute",
    "The renter or the owner opens a dispute (`active|completed → disputed`, `reason` required).",
    "Only the parties dispute",
    TransitionInput
);
transition_handler!(
    resolve_booking,
    Action::Resolve,
    "/v1/bookings/{id}/resolve",
    "An admin closes a dispute (`disputed → resolved`, `resolution` required, optional `note`).",
    "Only admins resolve",
    TransitionInput
);

/// The renter extends an approved or active booking: a child booking for
/// the extra time on the same unit (409 `booking_conflict` when taken),
/// approved at once for instant-book listings, else a new request.
#[utoipa::path(
    post, path = "/v1/bookings/{id}/extend", tag = "bookings",
    security(("bearer" = [])),
    params(
        ("id" = Uuid, Path),
        ("Idempotency-Key" = String, Header, description = "Required."),
    ),
    request_body = ExtendInput,
    responses(
        (status = 201, description = "The child booking", body = Booking),
        (status = 400, description = "`validation_failed`, `pricing_failed`", body = ErrorEnvelope),
        (status = 401, description = "`unauthenticated`", body = ErrorEnvelope),
        (status = 403, description = "Only the renter extends", body = ErrorEnvelope),
        (status = 404, description = "No such booking, or not yours", body = ErrorEnvelope),
        (status = 409, description = "`booking_conflict`, `invalid_transition`, `listing_unavailable`", body = ErrorEnvelope),
        (status = 422, description = "`idempotency_key_reused`", body = ErrorEnvelope),
    )
)]
pub async fn extend_booking(
    Extension(bookings): Extension<Bookings>,
    Extension(identity): Extension<Identity>,
    caller: UserCaller,
    Path(id): Path<Uuid>,
    key: IdempotencyKey,
    Json(input): Json<ExtendInput>,
) -> ApiResult<Response> {
    let key = IdempotencyKey(Some(key.required()?));
    let path = format!("/v1/bookings/{id}/extend");
    let idem = idem(&caller, key, &path, &input)?;
    let reply = service::extend(&bookings, &caller, id, idem, input).await?;
    render(&identity, reply, caller.user_id, StatusCode::CREATED).await
}

/// `?limit=&cursor=&status=` of the booking lists.
#[derive(Clone, Debug, Default, Deserialize, IntoParams, validator::Validate)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Page size, 1 to 50 (default 20).
    #[validate(range(min = 1, max = 50))]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Only bookings in this status.
    #[param(value_type = Option<Status>)]
    pub status: Option<Status>,
}

async fn list(
    bookings: &Bookings,
    identity: &Identity,
    caller: &Principal,
    side: Side,
    params: ListParams,
) -> ApiResult<axum::Json<Page<Booking>>> {
    let page = PageParams {
        limit: params.limit,
        cursor: params.cursor,
    };
    let after = page.after::<Uuid>()?.map(|c| c.id);
    let rows = service::list(
        bookings,
        caller.user_id,
        side,
        params.status,
        after,
        page.fetch_limit(),
    )
    .await?;
    let rows = Page::from_rows(rows, &page, |r| Cursor::new(r.id, r.id));
    let mut contacts: HashMap<Uuid, Option<ContactDetails>> = HashMap::new();
    let mut data = Vec::with_capacity(rows.data.len());
    for row in &rows.data {
        let contact = match row.counterparty_of(caller.user_id) {
            Some(other) if row.reveals_contact() => match contacts.get(&other) {
                Some(known) => known.clone(),
                None => {
                    let found = identity.contact_details(other).await?;
                    contacts.insert(other, found.clone());
                    found
                }
            },
            _ => None,
        };
        data.push(row.view(caller.user_id, contact));
    }
    Ok(axum::Json(Page {
        object: rows.object,
        data,
        has_more: rows.has_more,
        next_cursor: rows.next_cursor,
    }))
}

/// The caller's bookings as a renter, newest first.
#[utoipa::path(
    get, path = "/v1/users/me/bookings", tag = "bookings",
    security(("bearer" = [])),
    params(ListParams),
    responses(
        (status = 200, description = "A page of bookings", body = Page<Booking>),
        (status = 400, description = "`validation_failed`, `invalid_cursor`", body = ErrorEnvelope),
        (status = 401, description = "`unauthenticated`", body = ErrorEnvelope),
    )
)]
pub async fn list_my_bookings(
    Extension(bookings): Extension<Bookings>,
    Extension(identity): Extension<Identity>,
    caller: UserCaller,
    ValidQuery(params): ValidQuery<ListParams>,
) -> ApiResult<axum::Json<Page<Booking>>> {
    list(&bookings, &identity, &caller, Side::Renter, params).await
}

/// Bookings of the caller's listings (as the owner), newest first.
#[utoipa::path(
    get, path = "/v1/users/me/rentals", tag = "bookings",
    security(("bearer" = [])),
    params(ListParams),
    responses(
        (status = 200, description = "A page of bookings", body = Page<Booking>),
        (status = 400, description = "`validation_failed`, `invalid_cursor`", body = ErrorEnvelope),
        (status = 401, description = "`unauthenticated`", body = ErrorEnvelope),
    )
)]
pub async fn list_my_rentals(
    Extension(bookings): Extension<Bookings>,
    Extension(identity): Extension<Identity>,
    caller: UserCaller,
    ValidQuery(params): ValidQuery<ListParams>,
) -> ApiResult<axum::Json<Page<Booking>>> {
    list(&bookings, &identity, &caller, Side::Owner, params).await
}
