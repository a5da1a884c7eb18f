//! What the bookings endpoints do, one transaction each: create (claim a
//! unit, then write the booking, its first transition, its event and its
//! approval timer), quote (the same checks, read-only), the state machine's
//! transitions, extensions, and the expiry of unanswered requests.
//!
//! The create path is the hot one (1000 clients racing for the last units):
//! everything that needs no database is checked before the transaction
//! opens, and the unit is claimed before anything is written, so a conflict
//! costs a few reads and a rollback.

use chrono::{DateTime, Duration, Utc};
use rentify_listings::{
    inventory,
    model::{CancellationPolicy, ListingStatus, ListingType, Pricing},
    terms::{self, BookingTerms},
};
use rentify_payments::{PaymentError, PaymentJobs, escrow, intents, jobs::MoneyTask};
use rentify_platform::{
    ApiError,
    auth::Principal,
    error::FieldError,
    idempotency::{self, Begin, IdempotencyKey, Pending, Scope},
    ids::new_id,
    outbox::{self, NewEvent},
};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;
use validator::Validate;

use crate::{
    Bookings,
    error::{BookingError, BookingResult, Rule},
    jobs::ApprovalTimeout,
    model::{BookingQuery, BookingRow, COLUMNS, DeliveryAddress, DeliveryMethod},
    payment,
    placement::{self, KeyClaim, Payment, Placed},
    pricing::{self, Fees, PriceRequest, ProtectionPlan, Quote},
    refund::{self, Canceller, Paid},
    state::{self, Action, Party, Status},
};

/// `POST /v1/bookings` (and `/v1/bookings/quote`).
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewBooking {
    pub listing_id: Uuid,
    /// RFC 3339; inclusive.
    pub start_time: DateTime<Utc>,
    /// RFC 3339; exclusive.
    pub end_time: DateTime<Utc>,
    pub delivery_method: DeliveryMethod,
    /// Required for `delivery`, refused for `pickup`.
    #[serde(default)]
    pub delivery_address: Option<DeliveryAddress>,
    #[serde(default)]
    pub protection_plan: ProtectionPlan,
    /// The name of one of the listing's packages (services only).
    #[serde(default)]
    pub service_package: Option<String>,
    /// The card to charge; default: the renter's default card. Ignored by
    /// the quote.
    #[serde(default)]
    pub payment_method_id: Option<Uuid>,
}

/// The idempotency context of a state-changing request.
pub struct Idem<'a> {
    pub key: IdempotencyKey,
    pub principal: String,
    pub path: &'a str,
    pub body: serde_json::Value,
}

/// A state-changing call's outcome: a replay of the first answer, or the
/// booking as committed (the handler renders it for the caller).
pub enum Reply {
    Replay(axum::response::Response),
    Fresh(Box<BookingRow>),
}

async fn begin_idempotent(
    b: &Bookings,
    tx: &mut PgConnection,
    idem: &Idem<'_>,
) -> BookingResult<Result<Pending, axum::response::Response>> {
    let scope = Scope {
        principal: &idem.principal,
        method: "POST",
        path: idem.path,
        body: &idem.body,
    };
    match idempotency::begin(
        tx,
        &idem.key,
        scope,
        b.platform().config.idempotency_ttl_hours,
    )
    .await?
    {
        Begin::Replay(response) => Ok(Err(response)),
        Begin::Proceed(pending) => Ok(Ok(pending)),
    }
}

fn field(field: &str, code: &str, message: &str) -> FieldError {
    FieldError {
        field: field.into(),
        code: code.into(),
        message: message.into(),
    }
}

/// Checks that need no database (a start in the past is a `min_notice`
/// violation, checked with the listing's rules after the idempotency
/// lookup so a late retry still replays).
pub fn validate_input(input: &NewBooking) -> Result<(), ApiError> {
    let mut errors = Vec::new();
    if input.end_time <= input.start_time {
        errors.push(field("end_time", "range", "must be after `start_time`"));
    }
    match (input.delivery_method, &input.delivery_address) {
        (DeliveryMethod::Delivery, None) => errors.push(field(
            "delivery_address",
            "required",
            "a delivery needs an address",
        )),
        (DeliveryMethod::Pickup, Some(_)) => errors.push(field(
            "delivery_address",
            "not_allowed",
            "only a delivery takes an address",
        )),
        (_, Some(address)) => {
            if let Err(invalid) = address.validate() {
                for (name, _) in invalid.field_errors() {
                    errors.push(field(
                        &format!("delivery_address.{name}"),
                        "invalid",
                        "is missing or malformed",
                    ));
                }
            }
        }
        _ => {}
    }
    if let Some(name) = &input.service_package
        && (name.is_empty() || name.len() > 100)
    {
        errors.push(field("service_package", "length", "1 to 100 characters"));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::validation(errors))
    }
}

/// Checks against the listing: bookable, not one's own, delivery and
/// package offered, and the listing's booking rules. Minimum notice is
/// real time; the advance window is counted in local days of the listing.
pub fn check_terms(
    terms: &BookingTerms,
    renter_id: Uuid,
    input: &NewBooking,
    now: DateTime<Utc>,
) -> BookingResult<()> {
    if terms.status != ListingStatus::Active {
        return Err(BookingError::ListingUnavailable(terms.status.as_str()));
    }
    if terms.owner_id == renter_id {
        return Err(BookingError::OwnListing);
    }
    let offered = match input.delivery_method {
        DeliveryMethod::Pickup => terms.delivery.pickup,
        DeliveryMethod::Delivery => terms.delivery.delivery,
    };
    if !offered {
        return Err(ApiError::invalid_field(
            "delivery_method",
            "not_offered",
            format!(
                "this listing does not offer {}",
                input.delivery_method.as_str()
            ),
        )
        .into());
    }
    if let Some(name) = &input.service_package {
        if terms.kind != ListingType::Service {
            return Err(ApiError::invalid_field(
                "service_package",
                "not_offered",
                "only services have packages",
            )
            .into());
        }
        if !terms.service_packages.iter().any(|p| &p.name == name) {
            return Err(ApiError::invalid_field(
                "service_package",
                "unknown",
                "the listing has no package of that name",
            )
            .into());
        }
    }
    let rules = &terms.rules;
    let notice = input.start_time - now;
    if notice < Duration::minutes(i64::from(rules.min_notice_minutes)) {
        return Err(BookingError::rule(
            Rule::MinNotice,
            format!(
                "bookings must be made at least {} minutes before they start",
                rules.min_notice_minutes
            ),
            rules.min_notice_minutes.into(),
        ));
    }
    if let Some(days) = rules.max_advance_days
        && input.start_time > pricing::plus_local_days(now, terms.time_zone, u64::from(days))
    {
        return Err(BookingError::rule(
            Rule::MaxAdvance,
            format!("bookings may start at most {days} days ahead"),
            days.into(),
        ));
    }
    let minutes = (input.end_time - input.start_time).num_minutes();
    if let Some(min) = rules.min_duration_minutes
        && minutes < i64::from(min)
    {
        return Err(BookingError::rule(
            Rule::MinDuration,
            format!("bookings must last at least {min} minutes"),
            min.into(),
        ));
    }
    check_max_duration(rules, input.start_time, input.end_time)
}

/// The `max_duration` rule over `[start, end)`; an extension checks the
/// whole rental, from the first booking of its chain to the new end.
fn check_max_duration(
    rules: &rentify_listings::model::BookingRules,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> BookingResult<()> {
    match rules.max_duration_minutes {
        Some(max) if (end - start) > Duration::minutes(i64::from(max)) => Err(BookingError::rule(
            Rule::MaxDuration,
            format!("bookings may last at most {max} minutes"),
            max.into(),
        )),
        _ => Ok(()),
    }
}

/// Prices the booking with the listing's rates ([`pricing::price`]).
pub fn quote_for(terms: &BookingTerms, input: &NewBooking) -> BookingResult<Quote> {
    let rates = terms
        .pricing
        .as_ref()
        .ok_or(pricing::PricingError::NoApplicableRate)?;
    let package = input
        .service_package
        .as_ref()
        .and_then(|name| terms.service_packages.iter().find(|p| &p.name == name));
    let delivery_fee = match input.delivery_method {
        DeliveryMethod::Delivery => terms.delivery.delivery_fee,
        DeliveryMethod::Pickup => 0,
    };
    Ok(pricing::price(&PriceRequest {
        pricing: rates,
        start: input.start_time,
        end: input.end_time,
        time_zone: terms.time_zone,
        package,
        delivery_fee,
        protection: input.protection_plan,
    })?)
}

/// `POST /v1/bookings/quote`: the answer of [`create`] without its effect.
pub struct Quoted {
    pub quote: Quote,
    pub available: bool,
}

pub async fn quote(b: &Bookings, caller: &Principal, input: &NewBooking) -> BookingResult<Quoted> {
    let now = Utc::now();
    validate_input(input)?;
    let mut conn = b.db().acquire().await?;
    let terms = terms::booking_terms(&mut conn, input.listing_id, false)
        .await?
        .ok_or(BookingError::NotFound)?;
    check_terms(&terms, caller.user_id, input, now)?;
    let quote = quote_for(&terms, input)?;
    let availability =
        inventory::check(&mut conn, &terms, input.start_time, input.end_time).await?;
    if !availability.within_opening_hours {
        return Err(BookingError::OutsideAvailability);
    }
    Ok(Quoted {
        quote,
        available: availability.free_units > 0,
    })
}

/// What a new booking row is made of.
struct NewRow<'a> {
    id: Uuid,
    terms: &'a BookingTerms,
    renter_id: Uuid,
    parent_id: Option<Uuid>,
    unit: i32,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    delivery_method: DeliveryMethod,
    delivery_address: Option<serde_json::Value>,
    protection_plan: ProtectionPlan,
    service_package: Option<&'a str>,
    quote: &'a Quote,
    approval_window: Duration,
    now: DateTime<Utc>,
    /// Set when there is something to pay: the booking waits in
    /// `pending_payment` for its authorization until then.
    payment_expires_at: Option<DateTime<Utc>>,
}

/// The row of a new booking: `pending_payment` while its card is
/// authorized; with nothing to pay, `approved` at once for instant book,
/// else a `requested` one that holds its slot for the approval window.
fn new_row(r: NewRow<'_>) -> BookingResult<BookingRow> {
    let (status, approval_expires_at, approved_at) = if r.payment_expires_at.is_some() {
        (Status::PendingPayment, None, None)
    } else if r.terms.instant_book {
        (Status::Approved, None, Some(r.now))
    } else {
        (Status::Requested, Some(r.now + r.approval_window), None)
    };
    Ok(BookingRow {
        id: r.id,
        listing_id: r.terms.listing_id,
        renter_id: r.renter_id,
        owner_id: r.terms.owner_id,
        parent_id: r.parent_id,
        unit: r.unit,
        status: status.as_str().to_owned(),
        status_reason: None,
        start_time: r.start,
        end_time: r.end,
        time_zone: r.terms.time_zone.name().to_owned(),
        delivery_method: r.delivery_method.as_str().to_owned(),
        delivery_address: r.delivery_address,
        protection_plan: r.protection_plan.as_str().to_owned(),
        service_package: r.service_package.map(str::to_owned),
        cancellation_policy: r.terms.policies.cancellation.as_str().to_owned(),
        currency: r.quote.currency.as_str().to_owned(),
        pricing_snapshot: serde_json::to_value(r.quote).map_err(anyhow::Error::from)?,
        subtotal: r.quote.subtotal,
        fees: serde_json::to_value(r.quote.fees).map_err(anyhow::Error::from)?,
        deposit: r.quote.deposit,
        total: r.quote.total,
        approval_expires_at,
        approved_at,
        payment_method_id: None,
        payment_expires_at: r.payment_expires_at,
        cancelled_by: None,
        refund: None,
        dispute: None,
        resolution: None,
        version: 1,
        created_at: r.now,
        updated_at: r.now,
    })
}

/// The event a new booking starts with.
fn first_event(row: &BookingRow) -> &'static str {
    if row.payment_expires_at.is_some() {
        "booking.pending_payment"
    } else if row.approved_at.is_some() {
        Action::Approve.event()
    } else {
        "booking.requested"
    }
}

/// Inserts a booking whose unit is already claimed (extensions), with its
/// first transition and event, and arms a request's approval timer.
async fn insert_booking(
    b: &Bookings,
    conn: &mut PgConnection,
    row: BookingRow,
) -> BookingResult<BookingRow> {
    let event = first_event(&row);
    sqlx::query(
        "WITH b AS (
            INSERT INTO bookings SELECT * FROM jsonb_populate_record(NULL::bookings, $1)
            RETURNING id, status, renter_id
        )
        INSERT INTO booking_transitions (booking_id, from_status, to_status, event, actor_id)
        SELECT id, NULL, status, $2, renter_id FROM b",
    )
    .bind(serde_json::to_value(&row).map_err(anyhow::Error::from)?)
    .bind(event)
    .execute(&mut *conn)
    .await?;
    record_event(conn, &row, event, None, Some(row.renter_id), None, false).await?;
    if let Some(deadline) = row.approval_expires_at.or(row.payment_expires_at) {
        enqueue_approval_timer(b, conn, row.id, deadline).await?;
    }
    Ok(row)
}

/// `POST /v1/bookings`: validate and price in Rust against the listing's
/// (cached) terms, then place the booking in one round trip (ADR 0008);
/// a booking with something to pay is placed `pending_payment` and its card
/// authorized right after (the payment saga, `crate::payment`).
pub async fn create(
    b: &Bookings,
    caller: &Principal,
    idem: Idem<'_>,
    input: NewBooking,
) -> BookingResult<Reply> {
    let now = Utc::now();
    validate_input(&input)?;
    let key = idem.key.0.as_deref();
    let fingerprint = idempotency::fingerprint(&Scope {
        principal: &idem.principal,
        method: "POST",
        path: idem.path,
        body: &idem.body,
    });
    let claim = KeyClaim {
        principal: &idem.principal,
        key,
        fingerprint: &fingerprint,
        path: idem.path,
        ttl_hours: b.platform().config.idempotency_ttl_hours,
    };
    let address = input
        .delivery_address
        .as_ref()
        .map(serde_json::to_value)
        .transpose()
        .map_err(anyhow::Error::from)?;
    let id = new_id();
    let mut conn = b.db().acquire().await?;
    let mut fresh_terms = false;
    let mut expired_once = false;
    loop {
        let terms = b.terms(&mut conn, input.listing_id, fresh_terms).await?;
        // A rule that fails now may have passed for the first request with
        // this key (the listing changed, time went by): replay that answer.
        let decided = terms
            .as_deref()
            .ok_or(BookingError::NotFound)
            .and_then(|terms| {
                check_terms(terms, caller.user_id, &input, now)?;
                Ok((terms, quote_for(terms, &input)?))
            });
        let (terms, quote) = match decided {
            Ok(decided) => decided,
            // Cached terms may be out of date: judge again on fresh ones.
            Err(_) if !fresh_terms => {
                fresh_terms = true;
                continue;
            }
            Err(error) => {
                return match stored_reply(&mut conn, &claim).await? {
                    Some(reply) => Ok(reply),
                    None => Err(error),
                };
            }
        };
        let pays = quote.total > 0;
        if pays && let Err(error) = b.payments().ensure_gateway_available() {
            // Nothing is held or charged while the gateway is down.
            return match stored_reply(&mut conn, &claim).await? {
                Some(reply) => Ok(reply),
                None => Err(BookingError::Api(error.into())),
            };
        }
        let row = new_row(NewRow {
            id,
            terms,
            renter_id: caller.user_id,
            parent_id: None,
            unit: 0,
            start: input.start_time,
            end: input.end_time,
            delivery_method: input.delivery_method,
            delivery_address: address.clone(),
            protection_plan: input.protection_plan,
            service_package: input.service_package.as_deref(),
            quote: &quote,
            approval_window: b.approval_window(),
            now,
            payment_expires_at: pays.then(|| payment::payment_deadline(b.payments(), now)),
        })?;
        let event = first_event(&row);
        let response =
            serde_json::to_string(&row.view(caller.user_id, None)).map_err(anyhow::Error::from)?;
        let payment = pays.then(|| Payment {
            renter: caller.user_id,
            method: input.payment_method_id,
            intent: new_id(),
        });
        match placement::place(
            &mut conn,
            &claim,
            terms,
            &row,
            event,
            new_id(),
            &response,
            payment.as_ref(),
        )
        .await?
        {
            Placed::Created { unit, .. } => {
                let booking = BookingRow { unit, ..row };
                if let Some(deadline) = booking.approval_expires_at.or(booking.payment_expires_at) {
                    // After the commit: the sweeper declines the request even
                    // if this process dies before the timer is enqueued.
                    arm_approval_timer(b, &mut conn, booking.id, deadline).await;
                }
                drop(conn);
                return match payment {
                    Some(payment) => {
                        authorize_payment(b, claim.principal, claim.key, booking, payment.intent)
                            .await
                    }
                    None => Ok(Reply::Fresh(Box::new(booking))),
                };
            }
            Placed::Replay { status, body } => {
                return Ok(Reply::Replay(idempotency::replay(status, body)));
            }
            Placed::KeyReused => return Err(idempotency::key_reused().into()),
            Placed::KeyInProgress => return Err(idempotency::key_in_progress().into()),
            Placed::NotFound => return Err(BookingError::NotFound),
            Placed::PaymentMethodRequired => {
                return Err(BookingError::Api(PaymentError::MethodRequired.into()));
            }
            Placed::PaymentMethodUnknown => {
                return Err(ApiError::invalid_field(
                    "payment_method_id",
                    "unknown",
                    "no such payment method of yours",
                )
                .into());
            }
            Placed::Stale | Placed::Unavailable(_) if !fresh_terms => fresh_terms = true,
            Placed::Stale => return Err(BookingError::Conflict),
            Placed::Unavailable(status) => {
                let status = ListingStatus::parse(&status).unwrap_or(ListingStatus::Archived);
                return Err(BookingError::ListingUnavailable(status.as_str()));
            }
            Placed::OutsideAvailability => return Err(BookingError::OutsideAvailability),
            Placed::ConflictExpired if !expired_once => {
                expired_once = true;
                let mut tx = b.db().begin().await?;
                expire_overlapping(b, &mut tx, terms, input.start_time, input.end_time).await?;
                tx.commit().await?;
            }
            Placed::Conflict | Placed::ConflictExpired => return Err(BookingError::Conflict),
        }
    }
}

/// Authorizes a placed booking's card and applies the answer (the saga's
/// first path), then brings the key's stored answer up to date: `201` with
/// the booking `requested`/`approved`, `402 payment_declined` with it
/// `cancelled`, or `202` with it still `pending_payment` when the gateway
/// did not answer in time (a webhook or the payment timer decides).
async fn authorize_payment(
    b: &Bookings,
    principal: &str,
    key: Option<&str>,
    booking: BookingRow,
    intent_id: Uuid,
) -> BookingResult<Reply> {
    let description = format!("Rentify booking {}", booking.id);
    let answer = intents::request_authorization(b.payments(), intent_id, false, &description)
        .await
        .map_err(|e| BookingError::Api(e.into()))?;
    let outcome = intents::authorization_outcome(&answer);
    let provider = answer.as_ref().ok().map(|s| s.provider_intent_id.as_str());
    let (status, body, reply) = match outcome {
        None => {
            // No answer: ask again later (same key, so never a second
            // authorization), until the payment timer gives up.
            let mut conn = b.db().acquire().await?;
            b.payments()
                .jobs()
                .enqueue(
                    &mut conn,
                    &MoneyTask::Authorize {
                        booking_id: booking.id,
                    },
                )
                .await?;
            let view = booking.view(booking.renter_id, None);
            let body = serde_json::to_value(&view).map_err(anyhow::Error::from)?;
            (202, body, Ok(Reply::Fresh(Box::new(booking))))
        }
        Some(outcome) => {
            let declined = outcome.clone().err();
            // The answer decides the response, whichever path (this call or
            // an early webhook) applied it to the booking.
            match (
                payment::decide(b, intent_id, outcome, provider).await?,
                declined,
            ) {
                (payment::Decided::Declined(code, message, row), _)
                | (payment::Decided::Booking(row), Some((code, message))) => {
                    let error = ApiError::from(PaymentError::Declined { code, message })
                        .with_detail(serde_json::json!({"booking_id": row.id}));
                    let body = error.envelope_json();
                    (402, body, Err(BookingError::Api(error)))
                }
                (payment::Decided::Booking(row), None) => {
                    let body = serde_json::to_value(row.view(row.renter_id, None))
                        .map_err(anyhow::Error::from)?;
                    (201, body, Ok(Reply::Fresh(row)))
                }
            }
        }
    };
    // A decision stored its own answer with the booking (`payment::decide`);
    // only the 202 of an unanswered authorization is stored here.
    if let Some(key) = key.filter(|_| status == 202) {
        sqlx::query(
            "UPDATE idempotency_keys SET response_status = $3, response_body = $4
              WHERE principal = $1 AND key = $2",
        )
        .bind(principal)
        .bind(key)
        .bind(status as i16)
        .bind(body)
        .execute(b.db())
        .await?;
    }
    reply
}

/// The stored answer to `claim`'s key, when there is one (the error path of
/// [`create`] only).
async fn stored_reply(
    conn: &mut PgConnection,
    claim: &KeyClaim<'_>,
) -> BookingResult<Option<Reply>> {
    let Some(key) = claim.key else {
        return Ok(None);
    };
    let stored = idempotency::lookup(
        conn,
        claim.principal,
        key,
        claim.fingerprint,
        claim.ttl_hours,
    )
    .await?;
    Ok(stored.map(Reply::Replay))
}

/// Enqueues the request's approval timer, delayed to its deadline. Best
/// effort by design: the periodic sweep (`bookings.expire_requests`) and the
/// inline expiry on conflicts decline it anyway.
async fn arm_approval_timer(
    b: &Bookings,
    conn: &mut PgConnection,
    booking_id: Uuid,
    deadline: DateTime<Utc>,
) {
    let delay = (deadline - Utc::now()).num_milliseconds().max(0);
    let enqueued = b
        .jobs()
        .approval_timeout
        .enqueue_after_using(
            &mut *conn,
            &ApprovalTimeout { booking_id },
            jiff::Span::new().milliseconds(delay),
        )
        .await;
    if let Err(error) = enqueued {
        tracing::warn!(booking.id = %booking_id, error = %error, "approval timer not enqueued; the sweep will expire the request");
    }
}

/// Inputs of the transitions that take a body.
#[derive(Clone, Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransitionInput {
    /// Why (decline, cancel: optional; dispute: required).
    #[serde(default)]
    pub reason: Option<String>,
    /// How a dispute ended (resolve: required).
    #[serde(default)]
    pub resolution: Option<String>,
    #[serde(default)]
    pub note: Option<String>,
    /// Resolve: minor units refunded to the renter's card.
    #[serde(default)]
    pub refund_amount: Option<i64>,
    /// Resolve: minor units of the deposit paid to the owner for damage.
    #[serde(default)]
    pub deposit_capture: Option<i64>,
}

async fn lock_booking(conn: &mut PgConnection, id: Uuid) -> BookingResult<BookingRow> {
    sqlx::query_as::<_, BookingRow>(&format!(
        "SELECT {COLUMNS} FROM bookings WHERE id = $1 FOR UPDATE"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await?
    .ok_or(BookingError::NotFound)
}

/// The parties `caller` is to `row`, most specific first; empty when the
/// booking is none of their business (404).
fn parties(caller: &Principal, row: &BookingRow) -> Vec<Party> {
    let mut parties = Vec::with_capacity(2);
    if caller.user_id == row.renter_id {
        parties.push(Party::Renter);
    }
    if caller.user_id == row.owner_id {
        parties.push(Party::Owner);
    }
    if caller.is_admin() {
        parties.push(Party::Admin);
    }
    parties
}

/// Checks who acts and from where: 404 for strangers, 403 for a party the
/// action is not for, 409 for a transition that does not exist.
fn authorize(
    caller: &Principal,
    row: &BookingRow,
    action: Action,
) -> BookingResult<(Party, Status, Status)> {
    let parties = parties(caller, row);
    if parties.is_empty() {
        return Err(BookingError::NotFound);
    }
    let party = parties
        .into_iter()
        .find(|&p| state::allowed(action, p))
        .ok_or(BookingError::Forbidden(match action {
            Action::Approve | Action::Decline | Action::Start | Action::Complete => {
                "only the listing's owner may do this"
            }
            Action::Extend => "only the renter may extend a booking",
            Action::Resolve => "only an admin may resolve a dispute",
            _ => "you may not do this to this booking",
        }))?;
    let from = row.status()?;
    let to = state::next(from, action).ok_or(BookingError::InvalidTransition {
        action: action.as_str(),
        current: from,
    })?;
    Ok((party, from, to))
}

fn required_text(value: Option<&str>, name: &str) -> Result<String, ApiError> {
    match value.map(str::trim) {
        Some(v) if !v.is_empty() && v.len() <= 2000 => Ok(v.to_owned()),
        _ => Err(ApiError::invalid_field(
            name,
            "required",
            "1 to 2000 characters",
        )),
    }
}

/// Approve, decline, cancel, start, complete, dispute, resolve.
pub async fn act(
    b: &Bookings,
    caller: &Principal,
    id: Uuid,
    action: Action,
    idem: Idem<'_>,
    input: TransitionInput,
) -> BookingResult<Reply> {
    let now = Utc::now();
    let reason = input
        .reason
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty());
    if reason.is_some_and(|r| r.len() > 2000) {
        return Err(ApiError::invalid_field("reason", "length", "at most 2000 characters").into());
    }
    let dispute_reason = match action {
        Action::Dispute => Some(required_text(input.reason.as_deref(), "reason")?),
        _ => None,
    };
    let resolution_text = match action {
        Action::Resolve => Some(required_text(input.resolution.as_deref(), "resolution")?),
        _ => None,
    };
    let mut tx = b.db().begin().await?;
    let pending = match begin_idempotent(b, &mut tx, &idem).await? {
        Ok(pending) => pending,
        Err(replay) => return Ok(Reply::Replay(replay)),
    };
    let row = lock_booking(&mut tx, id).await?;
    let (party, from, to) = authorize(caller, &row, action)?;
    if action == Action::Resolve {
        check_resolution_amounts(&row, &input)?;
        if input.deposit_capture.unwrap_or(0) > 0
            && escrow::is_settled(&mut tx, id)
                .await
                .map_err(|e| BookingError::Api(e.into()))?
        {
            return Err(ApiError::invalid_field(
                "deposit_capture",
                "deposit_released",
                "the booking was settled before the dispute: its deposit is back on the renter's card",
            )
            .into());
        }
    }

    let mut refund_json = None;
    let mut cancelled_by = None;
    let mut dispute = None;
    let mut resolution = None;
    let status_reason: Option<String> = match action {
        Action::Decline => Some(reason.unwrap_or("declined_by_owner").to_owned()),
        Action::Cancel => {
            let policy = CancellationPolicy::parse(&row.cancellation_policy)
                .ok_or_else(|| anyhow::anyhow!("booking {id} has an unknown policy"))?;
            let fees: Fees =
                serde_json::from_value(row.fees.clone()).map_err(anyhow::Error::from)?;
            let paid = Paid {
                subtotal: row.subtotal,
                service_fee: fees.service_fee,
                delivery_fee: fees.delivery_fee,
                insurance: fees.insurance,
                deposit: row.deposit,
            };
            let canceller = match party {
                Party::Renter => Canceller::Renter,
                Party::Owner => Canceller::Owner,
                _ => Canceller::Admin,
            };
            let refund = refund::refund(policy, row.start_time - now, paid, canceller);
            let mut value = serde_json::to_value(refund).map_err(anyhow::Error::from)?;
            value["currency"] = row.currency.clone().into();
            refund_json = Some(value);
            cancelled_by = Some(caller.user_id);
            Some(match reason {
                Some(r) => r.to_owned(),
                None => format!("cancelled_by_{}", canceller_name(canceller)),
            })
        }
        Action::Dispute => {
            dispute = Some(serde_json::json!({
                "reason": dispute_reason,
                "opened_by": caller.user_id,
                "opened_at": now,
            }));
            dispute_reason.clone()
        }
        Action::Resolve => {
            resolution = Some(serde_json::json!({
                "resolution": resolution_text,
                "refund_amount": input.refund_amount.unwrap_or(0),
                "deposit_capture": input.deposit_capture.unwrap_or(0),
                "note": input.note,
                "resolved_by": caller.user_id,
                "resolved_at": now,
            }));
            resolution_text.clone()
        }
        _ => None,
    };

    let updated: BookingRow = sqlx::query_as(&format!(
        "UPDATE bookings SET status = $2, status_reason = $3, version = version + 1,
                updated_at = now(),
                approved_at = CASE WHEN $2 = 'approved' THEN now() ELSE approved_at END,
                cancelled_by = COALESCE($4, cancelled_by), refund = COALESCE($5, refund),
                dispute = COALESCE($6, dispute), resolution = COALESCE($7, resolution)
          WHERE id = $1 AND status = $8
         RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(to.as_str())
    .bind(status_reason.as_deref())
    .bind(cancelled_by)
    .bind(refund_json)
    .bind(dispute)
    .bind(resolution)
    .bind(from.as_str())
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(BookingError::InvalidTransition {
        action: action.as_str(),
        current: from,
    })?;
    if action.releases_unit() {
        inventory::release(&mut tx, id).await?;
    } else if to == Status::Approved {
        inventory::confirm(&mut tx, id).await?;
    }
    money_follows(b, &mut tx, &updated, action, &input).await?;
    record_event(
        &mut tx,
        &updated,
        action.event(),
        Some(from.as_str()),
        Some(caller.user_id),
        status_reason.as_deref(),
        true,
    )
    .await?;
    pending
        .complete(
            &mut tx,
            axum::http::StatusCode::OK,
            &updated.view(caller.user_id, None),
        )
        .await?;
    tx.commit().await?;
    Ok(Reply::Fresh(Box::new(updated)))
}

/// A resolution gives back at most what was paid (the deposit aside) and
/// takes at most the deposit for damage.
fn check_resolution_amounts(row: &BookingRow, input: &TransitionInput) -> BookingResult<()> {
    let price = row.total - row.deposit;
    if let Some(refund) = input.refund_amount
        && !(0..=price).contains(&refund)
    {
        return Err(ApiError::invalid_field(
            "refund_amount",
            "range",
            format!("0 to {price} (what the renter paid, the deposit aside)"),
        )
        .into());
    }
    if let Some(capture) = input.deposit_capture
        && !(0..=row.deposit).contains(&capture)
    {
        return Err(ApiError::invalid_field(
            "deposit_capture",
            "range",
            format!("0 to {} (the deposit)", row.deposit),
        )
        .into());
    }
    Ok(())
}

/// The money a transition moves, as a task enqueued in its transaction
/// (the gateway is called after the commit; see `rentify_payments::escrow`).
async fn money_follows(
    b: &Bookings,
    tx: &mut PgConnection,
    row: &BookingRow,
    action: Action,
    input: &TransitionInput,
) -> BookingResult<()> {
    let booking_id = row.id;
    let task = match action {
        Action::Decline | Action::Expire => MoneyTask::Void { booking_id },
        Action::Cancel => {
            let refunded: refund::Refund = row
                .refund
                .clone()
                .map(serde_json::from_value)
                .transpose()
                .map_err(anyhow::Error::from)?
                .ok_or_else(|| anyhow::anyhow!("a cancelled booking without its refund"))?;
            escrow::record_refund(
                tx,
                booking_id,
                &escrow::Charges {
                    rental: refunded.subtotal,
                    delivery: refunded.delivery_fee,
                    protection: refunded.insurance,
                    service_fee: refunded.service_fee,
                    deposit: refunded.deposit,
                },
            )
            .await
            .map_err(|e| BookingError::Api(e.into()))?;
            MoneyTask::CancellationFee { booking_id }
        }
        Action::Start => MoneyTask::Capture { booking_id },
        Action::Complete => MoneyTask::Settle { booking_id },
        Action::Dispute => {
            escrow::on_dispute(b.payments(), tx, booking_id)
                .await
                .map_err(|e| BookingError::Api(e.into()))?;
            return Ok(());
        }
        Action::Resolve => MoneyTask::Resolve {
            booking_id,
            refund: input.refund_amount.unwrap_or(0),
            deposit_capture: input.deposit_capture.unwrap_or(0),
        },
        Action::Approve | Action::Extend => return Ok(()),
    };
    b.payments().jobs().enqueue(tx, &task).await?;
    Ok(())
}

fn canceller_name(canceller: Canceller) -> &'static str {
    match canceller {
        Canceller::Renter => "renter",
        Canceller::Owner => "owner",
        Canceller::Admin => "admin",
    }
}

/// `POST /v1/bookings/{id}/extend`.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtendInput {
    /// The new end; after the booking's current end.
    pub end_time: DateTime<Utc>,
}

/// Extends a booking: a child booking for `[parent end, new end)` on the
/// same unit, priced on its own (rates only: no second deposit, delivery
/// fee or package), approved at once for instant-book listings.
pub async fn extend(
    b: &Bookings,
    caller: &Principal,
    id: Uuid,
    idem: Idem<'_>,
    input: ExtendInput,
) -> BookingResult<Reply> {
    let mut tx = b.db().begin().await?;
    let pending = match begin_idempotent(b, &mut tx, &idem).await? {
        Ok(pending) => pending,
        Err(replay) => return Ok(Reply::Replay(replay)),
    };
    let parent = lock_booking(&mut tx, id).await?;
    let (_, from, _) = authorize(caller, &parent, Action::Extend)?;
    if input.end_time <= parent.end_time {
        return Err(ApiError::invalid_field(
            "end_time",
            "range",
            "must be after the booking's current end",
        )
        .into());
    }
    let terms = terms::booking_terms(&mut tx, parent.listing_id, true)
        .await?
        .ok_or(BookingError::NotFound)?;
    if terms.status != ListingStatus::Active {
        return Err(BookingError::ListingUnavailable(terms.status.as_str()));
    }
    // The rental as a whole (earlier extensions included) keeps to the
    // listing's longest duration.
    let first_start: DateTime<Utc> = sqlx::query_scalar(
        "WITH RECURSIVE chain AS (
             SELECT id, parent_id, start_time FROM bookings WHERE id = $1
             UNION ALL
             SELECT b.id, b.parent_id, b.start_time FROM bookings b JOIN chain c ON b.id = c.parent_id
         )
         SELECT min(start_time) FROM chain",
    )
    .bind(parent.id)
    .fetch_one(&mut *tx)
    .await?;
    check_max_duration(&terms.rules, first_start, input.end_time)?;
    let rates = Pricing {
        deposit: 0,
        ..terms
            .pricing
            .clone()
            .ok_or(pricing::PricingError::NoApplicableRate)?
    };
    let protection = ProtectionPlan::parse(&parent.protection_plan).unwrap_or_default();
    let quote = pricing::price(&PriceRequest {
        pricing: &rates,
        start: parent.end_time,
        end: input.end_time,
        time_zone: terms.time_zone,
        package: None,
        delivery_fee: 0,
        protection,
    })?;
    let child_id = new_id();
    let child_now = Utc::now();
    // The extra time is paid like a booking: the child waits in
    // `pending_payment` for its card's authorization (the parent's card, or
    // the renter's default one).
    let method = if quote.total > 0 {
        b.payments()
            .ensure_gateway_available()
            .map_err(|e| BookingError::Api(e.into()))?;
        let method: Option<Uuid> = sqlx::query_scalar(
            "SELECT id FROM payment_methods
              WHERE user_id = $1 AND deleted_at IS NULL AND (id = $2 OR is_default)
              ORDER BY id = $2 DESC LIMIT 1",
        )
        .bind(parent.renter_id)
        .bind(parent.payment_method_id)
        .fetch_optional(&mut *tx)
        .await?;
        Some(method.ok_or(BookingError::Api(PaymentError::MethodRequired.into()))?)
    } else {
        None
    };
    let payment_expires_at = method.map(|_| payment::payment_deadline(b.payments(), child_now));
    // A child request holds its time for its own approval window.
    let hold_until = payment_expires_at
        .or_else(|| (!terms.instant_book).then(|| child_now + b.approval_window()));
    inventory::trim_buffer(&mut tx, parent.id).await?;
    let mut claimed = inventory::claim_exact(
        &mut tx,
        &terms,
        parent.unit,
        parent.end_time,
        input.end_time,
        child_id,
        hold_until,
    )
    .await?;
    if !claimed
        && expire_overlapping(b, &mut tx, &terms, parent.end_time, input.end_time).await? > 0
    {
        claimed = inventory::claim_exact(
            &mut tx,
            &terms,
            parent.unit,
            parent.end_time,
            input.end_time,
            child_id,
            hold_until,
        )
        .await?;
    }
    if !claimed {
        return Err(BookingError::Conflict);
    }
    let delivery_method = if parent.delivery_method == "delivery" {
        DeliveryMethod::Delivery
    } else {
        DeliveryMethod::Pickup
    };
    let child = insert_booking(
        b,
        &mut tx,
        new_row(NewRow {
            id: child_id,
            terms: &terms,
            renter_id: parent.renter_id,
            parent_id: Some(parent.id),
            unit: parent.unit,
            start: parent.end_time,
            end: input.end_time,
            delivery_method,
            delivery_address: parent.delivery_address.clone(),
            protection_plan: protection,
            service_package: None,
            quote: &quote,
            approval_window: b.approval_window(),
            now: child_now,
            payment_expires_at,
        })?,
    )
    .await?;
    let intent_id = new_id();
    if let Some(method) = method {
        sqlx::query("UPDATE bookings SET payment_method_id = $2 WHERE id = $1")
            .bind(child.id)
            .bind(method)
            .execute(&mut *tx)
            .await?;
        intents::open(
            &mut tx,
            intents::NewIntent {
                id: intent_id,
                purpose: "booking",
                booking_id: Some(child.id),
                user_id: child.renter_id,
                payment_method_id: method,
                currency: &child.currency,
                amount: child.total,
                deposit: child.deposit,
            },
        )
        .await
        .map_err(|e| BookingError::Api(e.into()))?;
    }
    sqlx::query(
        "WITH t AS (
            INSERT INTO booking_transitions (booking_id, from_status, to_status, event, actor_id)
            VALUES ($1, $2, $2, 'booking.extended', $3)
         )
         UPDATE bookings SET version = version + 1, updated_at = now() WHERE id = $1",
    )
    .bind(parent.id)
    .bind(from.as_str())
    .bind(caller.user_id)
    .execute(&mut *tx)
    .await?;
    let mut payload = parent.event_payload(Some(from.as_str()), Some(caller.user_id), None);
    payload.child_booking_id = Some(child.id);
    payload.child_end_time = Some(child.end_time);
    outbox::record(
        &mut tx,
        NewEvent {
            event_type: Action::Extend.event(),
            aggregate_type: "booking",
            aggregate_id: parent.id.to_string(),
            payload,
        },
    )
    .await?;
    pending
        .complete(
            &mut tx,
            axum::http::StatusCode::CREATED,
            &child.view(caller.user_id, None),
        )
        .await?;
    tx.commit().await?;
    match method {
        Some(method) => {
            let child = BookingRow {
                payment_method_id: Some(method),
                ..child
            };
            authorize_payment(b, &idem.principal, idem.key.0.as_deref(), child, intent_id).await
        }
        None => Ok(Reply::Fresh(Box::new(child))),
    }
}

/// Records a transition of `row` (already updated) and its event.
pub(crate) async fn record_transition(
    conn: &mut PgConnection,
    row: &BookingRow,
    event: &str,
    from: Option<&str>,
    actor: Option<Uuid>,
    reason: Option<&str>,
) -> BookingResult<()> {
    record_event(conn, row, event, from, actor, reason, true).await
}

/// Enqueues a request's approval timer in the caller's transaction.
pub(crate) async fn enqueue_approval_timer(
    b: &Bookings,
    conn: &mut PgConnection,
    booking_id: Uuid,
    deadline: DateTime<Utc>,
) -> BookingResult<()> {
    let delay = (deadline - Utc::now()).num_milliseconds().max(0);
    b.jobs()
        .approval_timeout
        .enqueue_after_using(
            &mut *conn,
            &ApprovalTimeout { booking_id },
            jiff::Span::new().milliseconds(delay),
        )
        .await
        .map_err(|e| anyhow::anyhow!("enqueue the approval timer: {e}"))?;
    Ok(())
}

/// Records `event` about `row` in the outbox and, with `transition`, its
/// row in `booking_transitions` (a create writes that with the booking).
#[allow(clippy::too_many_arguments)]
async fn record_event(
    conn: &mut PgConnection,
    row: &BookingRow,
    event: &str,
    from: Option<&str>,
    actor: Option<Uuid>,
    reason: Option<&str>,
    transition: bool,
) -> BookingResult<()> {
    if transition {
        sqlx::query(
            "INSERT INTO booking_transitions (booking_id, from_status, to_status, event, actor_id, reason)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(row.id)
        .bind(from)
        .bind(&row.status)
        .bind(event)
        .bind(actor)
        .bind(reason)
        .execute(&mut *conn)
        .await?;
    }
    outbox::record(
        conn,
        NewEvent {
            event_type: event,
            aggregate_type: "booking",
            aggregate_id: row.id.to_string(),
            payload: row.event_payload(from, actor, reason),
        },
    )
    .await?;
    Ok(())
}

/// Declines the overdue requests in `filter` (`approval_timeout`, no actor),
/// releases their units and records their transitions and events.
async fn expire_where(
    conn: &mut PgConnection,
    money: &PaymentJobs,
    filter: &str,
    bind: impl FnOnce(BookingQuery<'_>) -> BookingQuery<'_>,
) -> BookingResult<usize> {
    let sql = format!(
        "WITH overdue AS (
            SELECT b.id AS overdue_id FROM bookings b
             WHERE {filter} AND b.status = 'requested' AND b.approval_expires_at <= now()
             ORDER BY b.id
               FOR UPDATE
        ), done AS (
            UPDATE bookings SET status = 'declined', status_reason = 'approval_timeout',
                   version = version + 1, updated_at = now()
              FROM overdue WHERE id = overdue.overdue_id AND status = 'requested'
            RETURNING {COLUMNS}
        ), released AS (
            DELETE FROM availability_windows w USING done
             WHERE w.booking_id = done.id AND w.status = 'booked'
        )
        SELECT * FROM done"
    );
    let rows = bind(sqlx::query_as::<_, BookingRow>(&sql))
        .fetch_all(&mut *conn)
        .await?;
    for row in &rows {
        record_event(
            conn,
            row,
            Action::Expire.event(),
            Some(Status::Requested.as_str()),
            None,
            Some("approval_timeout"),
            true,
        )
        .await?;
        money
            .enqueue(conn, &MoneyTask::Void { booking_id: row.id })
            .await?;
    }
    Ok(rows.len())
}

/// Expires overdue requests and unpaid bookings holding any unit of the
/// listing during `[start, end + buffer)`; returns how many.
async fn expire_overlapping(
    b: &Bookings,
    conn: &mut PgConnection,
    terms: &BookingTerms,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> BookingResult<usize> {
    let span_end = inventory::span_end(terms, end);
    let filter = "b.id IN (SELECT w.booking_id FROM availability_windows w
                   WHERE w.listing_id = $1 AND w.status <> 'available'
                     AND w.booking_id IS NOT NULL AND w.span && tstzrange($2, $3))";
    let money = b.payments().jobs();
    let requests = expire_where(conn, money, filter, |q| {
        q.bind(terms.listing_id).bind(start).bind(span_end)
    })
    .await?;
    let unpaid = payment::expire_unpaid_where(money, conn, filter, |q| {
        q.bind(terms.listing_id).bind(start).bind(span_end)
    })
    .await?;
    Ok(requests + unpaid)
}

/// The sweep's work: declines every overdue request and cancels every
/// booking whose payment did not come in time. Idempotent.
pub async fn expire_overdue(conn: &mut PgConnection, money: &PaymentJobs) -> BookingResult<usize> {
    let requests = expire_where(conn, money, "TRUE", |q| q).await?;
    Ok(requests + payment::expire_unpaid_where(money, conn, "TRUE", |q| q).await?)
}

/// The approval and payment timers' work: declines `booking_id` if it is
/// still an overdue request, cancels it if still unpaid past its payment
/// deadline. Idempotent.
pub async fn expire_booking(
    conn: &mut PgConnection,
    money: &PaymentJobs,
    booking_id: Uuid,
) -> BookingResult<bool> {
    let requests = expire_where(conn, money, "b.id = $1", |q| q.bind(booking_id)).await?;
    let unpaid =
        payment::expire_unpaid_where(money, conn, "b.id = $1", |q| q.bind(booking_id)).await?;
    Ok(requests + unpaid > 0)
}

/// `GET /v1/bookings/{id}`: parties and admins; 404 for anyone else.
pub async fn get(b: &Bookings, caller: &Principal, id: Uuid) -> BookingResult<BookingRow> {
    let row: Option<BookingRow> =
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM bookings WHERE id = $1"))
            .bind(id)
            .fetch_optional(b.db())
            .await?;
    match row {
        Some(row) if !parties(caller, &row).is_empty() => Ok(row),
        _ => Err(BookingError::NotFound),
    }
}

/// Which side of the bookings a list shows.
#[derive(Clone, Copy, Debug)]
pub enum Side {
    Renter,
    Owner,
}

/// One page of `user_id`'s bookings, newest first (by id, a UUIDv7).
pub async fn list(
    b: &Bookings,
    user_id: Uuid,
    side: Side,
    status: Option<Status>,
    after: Option<Uuid>,
    fetch_limit: i64,
) -> BookingResult<Vec<BookingRow>> {
    let column = match side {
        Side::Renter => "renter_id",
        Side::Owner => "owner_id",
    };
    let rows = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM bookings
          WHERE {column} = $1 AND ($2::text IS NULL OR status = $2)
            AND ($3::uuid IS NULL OR id < $3)
          ORDER BY id DESC LIMIT $4"
    ))
    .bind(user_id)
    .bind(status.map(Status::as_str))
    .bind(after)
    .bind(fetch_limit)
    .fetch_all(b.db())
    .await?;
    Ok(rows)
}
