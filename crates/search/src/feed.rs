//! The personalised feed: listings picked from the caller's preferences
//! (category affinities, budget, distance), then new and popular listings
//! near them. A new user with no preferences and no location gets the
//! newest and most popular listings overall (a cold start that still
//! shows the best of the marketplace).

use std::collections::HashSet;

use chrono::Utc;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{
    SearchIndex, geo,
    model::{Categories, ListingDoc},
    rank::{self, ListingCard},
};

/// What the feed knows about the caller.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Taste {
    /// Category ids the user likes, most liked first (from slugs).
    pub affinities: Vec<Uuid>,
    /// Daily price range in minor units, with its currency.
    pub budget: Option<(i64, i64, String)>,
    pub center: Option<(f64, f64)>,
    pub max_distance_km: Option<f64>,
}

/// Within this distance when the user set none.
const DEFAULT_RADIUS_KM: f64 = 25.0;

#[derive(Deserialize, Default)]
struct StoredPreferences {
    #[serde(default)]
    category_affinities: Option<Vec<String>>,
    #[serde(default)]
    budget: Option<StoredBudget>,
    #[serde(default)]
    max_distance_km: Option<f64>,
}

#[derive(Deserialize)]
struct StoredBudget {
    min: i64,
    max: i64,
    currency: String,
}

/// The caller's taste, from their profile.
pub async fn taste(pool: &PgPool, user: Uuid, categories: &Categories) -> sqlx::Result<Taste> {
    let row: Option<(
        sqlx::types::Json<serde_json::Value>,
        Option<f64>,
        Option<f64>,
    )> = sqlx::query_as(
        "SELECT preferences, ST_Y(location::geometry), ST_X(location::geometry)
             FROM users WHERE id = $1",
    )
    .bind(user)
    .fetch_optional(pool)
    .await?;
    let Some((preferences, lat, lng)) = row else {
        return Ok(Taste::default());
    };
    let stored: StoredPreferences = serde_json::from_value(preferences.0).unwrap_or_default();
    Ok(Taste {
        affinities: stored
            .category_affinities
            .unwrap_or_default()
            .iter()
            .filter_map(|slug| categories.by_slug(slug).map(|c| c.id))
            .collect(),
        budget: stored.budget.map(|b| (b.min, b.max, b.currency)),
        center: lat.zip(lng),
        max_distance_km: stored.max_distance_km,
    })
}

/// One row of the feed.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Section {
    /// `for_you`, `new_nearby` or `popular_nearby` (`new`, `popular`
    /// without a location).
    pub key: &'static str,
    pub title: &'static str,
    pub data: Vec<ListingCard>,
}

/// `GET /v1/feed`.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Feed {
    #[schema(example = "feed")]
    pub object: &'static str,
    /// Whether preferences shaped it (false: the cold start).
    pub personalized: bool,
    pub sections: Vec<Section>,
}

/// How much `doc` suits `taste` (0: not at all), for the "for you" row:
/// earlier affinities weigh more, in-budget and nearby listings more.
pub fn affinity(doc: &ListingDoc, taste: &Taste, categories: &Categories) -> f64 {
    let mut score = 0.0;
    if let Some(c) = doc.category_id {
        let lineage = categories.lineage(c);
        if let Some(rank) = taste.affinities.iter().position(|a| lineage.contains(a)) {
            score += 2.0 / (1.0 + rank as f64);
        }
    }
    if let Some((min, max, currency)) = &taste.budget
        && doc.prices.currency.eq_ignore_ascii_case(currency)
        && doc.prices.daily.is_some_and(|p| (*min..=*max).contains(&p))
    {
        score += 1.0;
    }
    score
}

impl SearchIndex {
    /// The feed for `taste`, excluding `viewer`'s own listings.
    pub fn feed(&self, viewer: Uuid, taste: &Taste, limit: usize) -> Feed {
        let catalog = self.catalog();
        let table = catalog.table.read().unwrap_or_else(|e| e.into_inner());
        let radius = taste.max_distance_km.unwrap_or(DEFAULT_RADIUS_KM);
        let nearby = |doc: &ListingDoc| match (taste.center, doc.location) {
            (Some(c), Some(at)) => geo::distance_km(c, at) <= radius,
            (Some(_), None) => false,
            (None, _) => true,
        };
        // Each candidate with its quality.
        let candidates: Vec<(&ListingDoc, f64)> = table
            .slots
            .iter()
            .zip(&table.facts)
            .filter_map(|(d, f)| d.as_ref().map(|d| (d, f64::from(f.quality))))
            .filter(|(d, _)| d.owner_id != viewer && nearby(d))
            .collect();
        let personalized = !taste.affinities.is_empty() || taste.budget.is_some();
        let mut shown: HashSet<Uuid> = HashSet::new();
        let take = |mut scored: Vec<(f64, &ListingDoc)>, shown: &mut HashSet<Uuid>| {
            scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.id.cmp(&b.1.id)));
            scored
                .into_iter()
                .filter(|(_, d)| shown.insert(d.id))
                .take(limit)
                .map(|(_, d)| rank::card(d, table.owner(d.owner_id), &catalog.categories))
                .collect::<Vec<_>>()
        };
        let mut sections = Vec::new();
        if personalized {
            let scored = candidates
                .iter()
                .map(|&(d, quality)| (affinity(d, taste, &catalog.categories) * quality, d))
                .filter(|(a, _)| *a > 0.0)
                .collect();
            sections.push(Section {
                key: "for_you",
                title: "Picked for you",
                data: take(scored, &mut shown),
            });
        }
        let now = Utc::now();
        let fresh = candidates
            .iter()
            .map(|&(d, _)| {
                let age_days = d
                    .published_at
                    .map_or(365.0, |p| (now - p).num_seconds().max(0) as f64 / 86_400.0);
                (-age_days, d)
            })
            .collect();
        let local = taste.center.is_some();
        sections.push(Section {
            key: if local { "new_nearby" } else { "new" },
            title: if local {
                "New near you"
            } else {
                "New on Rentify"
            },
            data: take(fresh, &mut shown),
        });
        let popular = candidates
            .iter()
            .map(|&(d, quality)| (((1 + d.bookings) as f64).ln() + quality, d))
            .collect();
        sections.push(Section {
            key: if local { "popular_nearby" } else { "popular" },
            title: if local {
                "Popular near you"
            } else {
                "Popular right now"
            },
            data: take(popular, &mut shown),
        });
        Feed {
            object: "feed",
            personalized,
            sections,
        }
    }
}
