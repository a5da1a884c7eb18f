//! The query strings of `/v1/search`, `/v1/search/suggest` and `/v1/feed`,
//! parsed by hand so that every mistake names its parameter: a typed
//! deserializer would stop at the first and could not say that `radius_km`
//! needs a centre.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use rentify_platform::error::{ApiError, FieldError};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::model::{Categories, Kind, Period};

pub const DEFAULT_LIMIT: usize = 20;
pub const MAX_LIMIT: usize = 50;
const MAX_Q: usize = 200;

/// How results are ordered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Sort {
    Relevance,
    PriceAsc,
    PriceDesc,
    Distance,
    Rating,
}

impl Sort {
    fn parse(raw: &str) -> Option<Self> {
        match raw {
            "relevance" => Some(Self::Relevance),
            "price_asc" => Some(Self::PriceAsc),
            "price_desc" => Some(Self::PriceDesc),
            "distance" => Some(Self::Distance),
            "rating" => Some(Self::Rating),
            _ => None,
        }
    }
}

/// `GET /v1/search`'s parameters (documentation; parsing is [`parse`]).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct SearchParams {
    /// Free text: every word must match (BM25 relevance; the last word may
    /// be a prefix; a word found nowhere as typed matches with one typo
    /// from 5 letters, two from 9).
    q: Option<String>,
    /// `item`, `service`, `property` or `all` (default).
    #[param(rename = "type")]
    kind: Option<String>,
    /// A category id or slug; its descendants match too.
    category: Option<String>,
    /// Centre of a geo search, with `lng`.
    lat: Option<f64>,
    lng: Option<f64>,
    /// Maximum great-circle distance from the centre.
    radius_km: Option<f64>,
    /// Minor units, for `price_period`.
    price_min: Option<i64>,
    price_max: Option<i64>,
    /// `hourly`, `daily` (default) or `weekly`.
    price_period: Option<String>,
    /// RFC 3339; with `available_to`, only listings with a free unit for
    /// the whole window.
    available_from: Option<String>,
    available_to: Option<String>,
    /// `true`: only listings that deliver.
    delivery: Option<bool>,
    /// `true`: only owners whose identity is verified.
    verified_only: Option<bool>,
    /// Minimum owner rating, 0 to 5.
    min_rating: Option<f64>,
    /// `relevance` (default), `price_asc`, `price_desc`, `distance` (needs a
    /// centre) or `rating`.
    sort: Option<String>,
    /// `next_cursor` of the previous page (with the same filters).
    cursor: Option<String>,
    /// 1 to 50 (default 20).
    limit: Option<u32>,
}

/// A validated search.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Search {
    pub q: Option<String>,
    pub kind: Option<Kind>,
    /// The category and its descendants.
    pub categories: Option<HashSet<Uuid>>,
    pub center: Option<(f64, f64)>,
    pub radius_km: Option<f64>,
    pub price_min: Option<i64>,
    pub price_max: Option<i64>,
    pub period: Option<Period>,
    /// Unix seconds, `[from, to)`.
    pub window: Option<(i64, i64)>,
    pub delivery: bool,
    pub verified_only: bool,
    pub min_rating: Option<f64>,
    pub sort: Option<Sort>,
    pub cursor: Option<String>,
    pub limit: usize,
    /// `[south, north, west, east]` around the radius: a cheap first
    /// check before the great-circle distance.
    pub bbox: Option<[f64; 4]>,
}

impl Search {
    /// The period prices are filtered, sorted and bucketed by.
    pub fn price_period(&self) -> Period {
        self.period.unwrap_or(Period::Daily)
    }

    pub fn sort(&self) -> Sort {
        self.sort.unwrap_or(Sort::Relevance)
    }
}

struct Errors(Vec<FieldError>);

impl Errors {
    fn add(&mut self, field: &str, code: &str, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.into(),
            code: code.into(),
            message: message.into(),
        });
    }

    fn number<T: std::str::FromStr>(&mut self, field: &str, raw: Option<&str>) -> Option<T> {
        let raw = raw?;
        match raw.trim().parse() {
            Ok(v) => Some(v),
            Err(_) => {
                self.add(field, "type", format!("`{raw}` is not a number"));
                None
            }
        }
    }

    fn float(&mut self, field: &str, raw: Option<&str>, min: f64, max: f64) -> Option<f64> {
        let v: f64 = self.number(field, raw)?;
        if !v.is_finite() || v < min || v > max {
            self.add(field, "range", format!("must be between {min} and {max}"));
            return None;
        }
        Some(v)
    }

    fn flag(&mut self, field: &str, raw: Option<&str>) -> bool {
        match raw.map(str::trim) {
            None | Some("false" | "0" | "") => false,
            Some("true" | "1") => true,
            Some(other) => {
                self.add(field, "type", format!("`{other}` is not true or false"));
                false
            }
        }
    }

    fn limit(&mut self, raw: Option<&str>) -> usize {
        match self.number::<i64>("limit", raw) {
            None => DEFAULT_LIMIT,
            Some(n) if (1..=MAX_LIMIT as i64).contains(&n) => n as usize,
            Some(_) => {
                self.add(
                    "limit",
                    "range",
                    format!("must be between 1 and {MAX_LIMIT}"),
                );
                DEFAULT_LIMIT
            }
        }
    }

    fn time(&mut self, field: &str, raw: Option<&str>) -> Option<DateTime<Utc>> {
        let raw = raw?;
        match DateTime::parse_from_rfc3339(raw.trim()) {
            Ok(t) => Some(t.with_timezone(&Utc)),
            Err(_) => {
                self.add(field, "type", "must be an RFC 3339 date-time");
                None
            }
        }
    }

    fn finish<T>(self, value: T) -> Result<T, ApiError> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(ApiError::validation(self.0))
        }
    }
}

/// The query string as `(name, value)` pairs, refusing names not in
/// `known` and repeated names (which would be ambiguous).
fn pairs(query: &str, known: &[&str], errors: &mut Errors) -> Vec<(String, String)> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (name, value) in form_pairs(query) {
        if !known.contains(&name.as_str()) {
            errors.add(&name, "unknown", "is not a parameter of this endpoint");
        } else if !seen.insert(name.clone()) {
            errors.add(&name, "repeated", "is given more than once");
        } else {
            out.push((name, value));
        }
    }
    out
}

fn form_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    serde_urlencoded::from_str::<Vec<(String, String)>>(query)
        .unwrap_or_default()
        .into_iter()
}

fn get<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

const SEARCH_PARAMS: &[&str] = &[
    "q",
    "type",
    "category",
    "lat",
    "lng",
    "radius_km",
    "price_min",
    "price_max",
    "price_period",
    "available_from",
    "available_to",
    "delivery",
    "verified_only",
    "min_rating",
    "sort",
    "cursor",
    "limit",
];

/// Parses and checks `/v1/search`'s query string.
pub fn parse(query: &str, categories: &Categories) -> Result<Search, ApiError> {
    let mut e = Errors(Vec::new());
    let p = pairs(query, SEARCH_PARAMS, &mut e);
    let mut s = Search {
        limit: e.limit(get(&p, "limit")),
        ..Search::default()
    };
    if let Some(q) = get(&p, "q").map(str::trim).filter(|q| !q.is_empty()) {
        if q.chars().count() > MAX_Q {
            e.add("q", "length", format!("must be at most {MAX_Q} characters"));
        }
        s.q = Some(q.to_owned());
    }
    match get(&p, "type") {
        None | Some("all") => {}
        Some(raw) => match Kind::parse(raw) {
            Some(kind) => s.kind = Some(kind),
            None => e.add("type", "enum", "must be item, service, property or all"),
        },
    }
    if let Some(raw) = get(&p, "category") {
        let found = raw
            .parse::<Uuid>()
            .ok()
            .filter(|id| categories.by_id.contains_key(id))
            .or_else(|| categories.by_slug(raw).map(|c| c.id));
        match found {
            Some(id) => s.categories = Some(categories.descendants(id)),
            None => e.add("category", "unknown", "is not a category id or slug"),
        }
    }
    let lat = e.float("lat", get(&p, "lat"), -90.0, 90.0);
    let lng = e.float("lng", get(&p, "lng"), -180.0, 180.0);
    match (get(&p, "lat"), get(&p, "lng")) {
        (Some(_), None) => e.add("lng", "required", "is required with `lat`"),
        (None, Some(_)) => e.add("lat", "required", "is required with `lng`"),
        _ => s.center = lat.zip(lng),
    }
    s.radius_km = e.float("radius_km", get(&p, "radius_km"), 0.0, 20_000.0);
    if s.radius_km == Some(0.0) {
        e.add("radius_km", "range", "must be greater than 0");
    }
    if get(&p, "radius_km").is_some() && get(&p, "lat").is_none() && get(&p, "lng").is_none() {
        e.add(
            "radius_km",
            "required",
            "needs a centre: give `lat` and `lng`",
        );
    }
    for field in ["price_min", "price_max"] {
        let v: Option<i64> = e.number(field, get(&p, field));
        if v.is_some_and(|v| v < 0) {
            e.add(field, "range", "must not be negative");
        }
        if field == "price_min" {
            s.price_min = v;
        } else {
            s.price_max = v;
        }
    }
    if let (Some(min), Some(max)) = (s.price_min, s.price_max)
        && min > max
    {
        e.add("price_min", "range", "must not exceed `price_max`");
    }
    if let Some(raw) = get(&p, "price_period") {
        match Period::parse(raw) {
            Some(period) => s.period = Some(period),
            None => e.add("price_period", "enum", "must be hourly, daily or weekly"),
        }
    }
    let from = e.time("available_from", get(&p, "available_from"));
    let to = e.time("available_to", get(&p, "available_to"));
    match (get(&p, "available_from"), get(&p, "available_to")) {
        (Some(_), None) => e.add(
            "available_to",
            "required",
            "is required with `available_from`",
        ),
        (None, Some(_)) => e.add(
            "available_from",
            "required",
            "is required with `available_to`",
        ),
        _ => {}
    }
    if let (Some(from), Some(to)) = (from, to) {
        if from >= to {
            e.add("available_to", "range", "must be after `available_from`");
        } else {
            s.window = Some((from.timestamp(), to.timestamp()));
        }
    }
    s.delivery = e.flag("delivery", get(&p, "delivery"));
    s.verified_only = e.flag("verified_only", get(&p, "verified_only"));
    s.min_rating = e.float("min_rating", get(&p, "min_rating"), 0.0, 5.0);
    if let Some(raw) = get(&p, "sort") {
        match Sort::parse(raw) {
            Some(Sort::Distance) if get(&p, "lat").is_none() => e.add(
                "sort",
                "required",
                "`distance` needs a centre: give `lat` and `lng`",
            ),
            Some(sort) => s.sort = Some(sort),
            None => e.add(
                "sort",
                "enum",
                "must be relevance, price_asc, price_desc, distance or rating",
            ),
        }
    }
    s.cursor = get(&p, "cursor")
        .filter(|c| !c.is_empty())
        .map(str::to_owned);
    e.finish(s)
}

/// `GET /v1/search/suggest`'s parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct SuggestParams {
    /// What the user has typed so far (1 to 100 characters).
    q: String,
    /// 1 to 20 suggestions (default 8).
    limit: Option<u32>,
}

/// Parses `/v1/search/suggest`'s query string into `(q, limit)`.
pub fn parse_suggest(query: &str) -> Result<(String, usize), ApiError> {
    let mut e = Errors(Vec::new());
    let p = pairs(query, &["q", "limit"], &mut e);
    let q = get(&p, "q").map(str::trim).unwrap_or_default().to_owned();
    if q.is_empty() {
        e.add("q", "required", "is required");
    } else if q.chars().count() > 100 {
        e.add("q", "length", "must be at most 100 characters");
    }
    let limit = match e.number::<i64>("limit", get(&p, "limit")) {
        None => 8,
        Some(n) if (1..=20).contains(&n) => n as usize,
        Some(_) => {
            e.add("limit", "range", "must be between 1 and 20");
            8
        }
    };
    e.finish((q, limit))
}

/// `GET /v1/feed`'s parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct FeedParams {
    /// Where the caller is now; overrides the profile's location.
    lat: Option<f64>,
    lng: Option<f64>,
    /// Listings per section, 1 to 50 (default 10).
    limit: Option<u32>,
}

/// Parses `/v1/feed`'s query string into `(centre, limit)`.
pub fn parse_feed(query: &str) -> Result<(Option<(f64, f64)>, usize), ApiError> {
    let mut e = Errors(Vec::new());
    let p = pairs(query, &["lat", "lng", "limit"], &mut e);
    let lat = e.float("lat", get(&p, "lat"), -90.0, 90.0);
    let lng = e.float("lng", get(&p, "lng"), -180.0, 180.0);
    match (get(&p, "lat"), get(&p, "lng")) {
        (Some(_), None) => e.add("lng", "required", "is required with `lat`"),
        (None, Some(_)) => e.add("lat", "required", "is required with `lng`"),
        _ => {}
    }
    let limit = match e.number::<i64>("limit", get(&p, "limit")) {
        None => 10,
        Some(n) if (1..=MAX_LIMIT as i64).contains(&n) => n as usize,
        Some(_) => {
            e.add(
                "limit",
                "range",
                format!("must be between 1 and {MAX_LIMIT}"),
            );
            10
        }
    };
    e.finish((lat.zip(lng), limit))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(query: &str) -> Vec<String> {
        match parse(query, &Categories::default()) {
            Ok(_) => Vec::new(),
            Err(error) => error
                .envelope_json()
                .pointer("/error/details")
                .and_then(|d| d.as_array())
                .map(|d| {
                    d.iter()
                        .filter_map(|f| f["field"].as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    #[test]
    fn bad_parameters_name_their_field() {
        assert_eq!(fields("lat=48.8"), ["lng"]);
        assert_eq!(fields("radius_km=5"), ["radius_km"]);
        assert_eq!(fields("limit=0"), ["limit"]);
        assert_eq!(fields("limit=51"), ["limit"]);
        assert_eq!(fields("sort=cheapest"), ["sort"]);
        assert_eq!(fields("sort=distance"), ["sort"]);
        assert_eq!(fields("price_min=500&price_max=100"), ["price_min"]);
        assert_eq!(fields("lat=91&lng=2"), ["lat"]);
        assert_eq!(
            fields("available_from=2026-01-01T00:00:00Z"),
            ["available_to"]
        );
        assert_eq!(fields("colour=red"), ["colour"]);
        assert_eq!(fields("type=car"), ["type"]);
        assert_eq!(fields("min_rating=6"), ["min_rating"]);
        assert_eq!(fields("delivery=maybe"), ["delivery"]);
    }

    #[test]
    fn a_full_search_parses() {
        let s = parse(
            "q=canon%20camera&type=item&lat=48.85&lng=2.35&radius_km=5&price_min=100&price_max=9000\
             &price_period=daily&available_from=2026-12-01T10:00:00Z&available_to=2026-12-03T10:00:00Z\
             &delivery=true&verified_only=1&min_rating=4.5&sort=distance&limit=50",
            &Categories::default(),
        )
        .unwrap();
        assert_eq!(s.q.as_deref(), Some("canon camera"));
        assert_eq!(s.kind, Some(Kind::Item));
        assert_eq!(s.center, Some((48.85, 2.35)));
        assert_eq!(s.window.map(|(f, t)| t - f), Some(2 * 86_400));
        assert!(s.delivery && s.verified_only);
        assert_eq!(s.sort(), Sort::Distance);
        assert_eq!(s.limit, 50);
    }
}
