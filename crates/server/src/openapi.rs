//! The OpenAPI 3.1 document, generated from handler annotations
//! (`#[utoipa::path]`) and served at `/v1/openapi.json` and `/docs`.

use rentify_platform::{
    auth::BearerSecurity,
    error::{ErrorEnvelope, ErrorObject, FieldError},
};
use utoipa::OpenApi;

use crate::app::api_routes;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Rentify API",
        version = "1.0.0",
        description = "Rent items, book services, lease properties and request on-demand providers.\n\n\
Conventions (docs/API-DESIGN.md): JSON in and out; every object has `id` and `object`; \
errors are `{\"error\": {\"code\", \"message\", \"details\"}}` with stable codes; lists are cursor-paginated \
(`limit` ≤ 50, `next_cursor`); state-changing POSTs accept `Idempotency-Key`; money is integer minor units \
with an ISO 4217 currency; times are RFC 3339 UTC; `X-Request-Id` is echoed; rate limits answer \
`RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` and `Retry-After` on 429.",
        license(name = "Apache-2.0")
    ),
    servers((url = "/", description = "this server")),
    components(schemas(ErrorEnvelope, ErrorObject, FieldError)),
    modifiers(&BearerSecurity),
    tags(
        (name = "auth", description = "Sign-up, sign-in, sessions, verification, MFA and external sign-in"),
        (name = "users", description = "Profiles, preferences, identity verification (KYC) and privacy"),
        (name = "api_keys", description = "Scoped API keys for services (admins)"),
        (name = "listings", description = "Categories, listings (items, services, properties), their lifecycle and availability"),
        (name = "bookings", description = "Bookings: placement, the state machine, extensions and a booking's transactions"),
        (name = "payments", description = "Cards, wallets, deposits, withdrawals and payouts; money moves only through the double-entry ledger"),
        (name = "search", description = "Search with facets, autocomplete and the personalised feed (a replica that follows changes within a second)"),
        (name = "reviews", description = "Double-blind reviews between the parties of a completed booking, and users' public reviews"),
        (name = "notifications", description = "In-app notifications, their live stream (SSE) and delivery preferences"),
        (name = "admin", description = "Roles, accounts, the audit log and listing review (admins)"),
        (name = "webhooks", description = "Signed callbacks from providers"),
        (name = "operations", description = "Health checks and metrics for operators"),
    )
)]
struct ApiDoc;

/// The static part of the document; paths are added by [`api_routes`].
pub fn base() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The whole document, without needing a database (for `rentify openapi`).
pub fn document() -> utoipa::openapi::OpenApi {
    api_routes().split_for_parts().1
}
