//! HTTP: `/v1/search`, `/v1/search/suggest` and `/v1/feed`. Reads only; the
//! replica answers without touching PostgreSQL (the feed reads the caller's
//! profile once).

use axum::{Extension, Json, extract::RawQuery};
use rentify_platform::{
    auth::UserCaller,
    error::{ApiError, ApiResult, ErrorEnvelope},
};
use serde::Serialize;
use utoipa::ToSchema;

use crate::{
    SearchIndex,
    feed::{self, Feed},
    params::{self, FeedParams, SearchParams, SuggestParams},
    rank::SearchPage,
    suggest::Suggestion,
};

/// Searches active listings: words, type, category, distance, price,
/// availability, delivery, verified owners and rating, with facets.
/// Results follow the listings within about a second of a change.
#[utoipa::path(
    get, path = "/v1/search", tag = "search",
    params(SearchParams),
    responses(
        (status = 200, description = "A page of results with facets over every match", body = SearchPage),
        (status = 400, description = "`validation_failed` naming each bad parameter, or `invalid_cursor`", body = ErrorEnvelope),
    )
)]
pub async fn search(
    Extension(index): Extension<SearchIndex>,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<SearchPage>> {
    let catalog = index.catalog();
    let search = params::parse(query.as_deref().unwrap_or_default(), &catalog.categories)?;
    drop(catalog);
    Ok(Json(index.search(&search)?))
}

/// Suggestions as the user types: matching categories, then listing titles.
#[derive(Serialize, ToSchema)]
pub struct SuggestionList {
    #[schema(example = "list")]
    object: &'static str,
    data: Vec<Suggestion>,
}

/// Autocomplete on listing titles and category names.
#[utoipa::path(
    get, path = "/v1/search/suggest", tag = "search",
    params(SuggestParams),
    responses(
        (status = 200, description = "Suggestions, categories first", body = SuggestionList),
        (status = 400, description = "`validation_failed`: `q` missing or too long, `limit` out of range", body = ErrorEnvelope),
    )
)]
pub async fn suggest(
    Extension(index): Extension<SearchIndex>,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<SuggestionList>> {
    let (q, limit) = params::parse_suggest(query.as_deref().unwrap_or_default())?;
    let data = index.suggest(&q, limit).map_err(ApiError::internal)?;
    Ok(Json(SuggestionList {
        object: "list",
        data,
    }))
}

/// The caller's feed: picked from their preferences (category affinities,
/// budget, distance), then new and popular listings near them.
#[utoipa::path(
    get, path = "/v1/feed", tag = "search",
    security(("bearer" = [])),
    params(FeedParams),
    responses(
        (status = 200, description = "Sections of listings", body = Feed),
        (status = 400, description = "`validation_failed`", body = ErrorEnvelope),
        (status = 401, description = "`unauthenticated`", body = ErrorEnvelope),
    )
)]
pub async fn feed(
    Extension(index): Extension<SearchIndex>,
    caller: UserCaller,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Feed>> {
    let (center, limit) = params::parse_feed(query.as_deref().unwrap_or_default())?;
    let catalog = index.catalog();
    let mut taste = feed::taste(index.pool(), caller.user_id, &catalog.categories).await?;
    drop(catalog);
    if center.is_some() {
        taste.center = center;
    }
    Ok(Json(index.feed(caller.user_id, &taste, limit)))
}
