//! From the index's matches to a page: the exact filters, ranking, facets,
//! the price histogram and keyset pagination. Pure functions over the
//! replica's table, so each rule is tested without a database.

use std::collections::{BinaryHeap, HashMap};

use chrono::{DateTime, Utc};
use rentify_platform::pagination::Cursor;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{
    geo::{self, UnitVector},
    index::Table,
    model::{
        Categories, DELIVERY, Envelope, Facts, Kind, LIVE, LOCATED, ListingDoc, NO_CATEGORY,
        OwnerFacts, Period, Prices, VERIFIED,
    },
    params::{Search, Sort},
};

/// A search's filters, prepared once per query for the loop that runs
/// them on every candidate: the radius as a squared chord, the categories
/// as a table by position, the price period as an index.
pub struct Filter<'a> {
    search: &'a Search,
    period: Period,
    reach: Option<(UnitVector, f64)>,
    categories: Option<Vec<bool>>,
    now: i64,
}

impl<'a> Filter<'a> {
    pub fn new(search: &'a Search, categories: &Categories, now: i64) -> Self {
        Self {
            search,
            period: search.price_period(),
            reach: search
                .center
                .zip(search.radius_km)
                .map(|((lat, lng), km)| (UnitVector::new(lat, lng), geo::km_chord2(km))),
            categories: search.categories.as_ref().map(|wanted| {
                let mut allowed = vec![false; categories.order.len()];
                for position in wanted.iter().filter_map(|&id| categories.position(id)) {
                    allowed[usize::from(position)] = true;
                }
                allowed
            }),
            now,
        }
    }

    /// Whether the listing in `slot` passes every filter of the search
    /// except the words (which the index decided). The cheap checks go
    /// first; the calendar, the one read outside [`Facts`], goes last and
    /// only for listings whose calendar can refuse the dates.
    #[inline]
    pub fn accepts(&self, table: &Table, slot: u32) -> bool {
        let facts = table.facts(slot);
        self.passes(facts) && self.free(facts, table.busy(slot), || table.get(slot))
    }

    fn passes(&self, f: &Facts) -> bool {
        let search = self.search;
        if !f.has(LIVE)
            || search.kind.is_some_and(|k| k != f.kind)
            || (search.delivery && !f.has(DELIVERY))
            || (search.verified_only && !f.has(VERIFIED))
        {
            return false;
        }
        if search.price_min.is_some() || search.price_max.is_some() {
            let Some(price) = f.price(self.period) else {
                return false;
            };
            if search.price_min.is_some_and(|min| price < min)
                || search.price_max.is_some_and(|max| price > max)
            {
                return false;
            }
        }
        if let Some(allowed) = &self.categories
            && !allowed.get(usize::from(f.leaf)).copied().unwrap_or(false)
        {
            return false;
        }
        // NaN (no reviews) is below any minimum.
        if search
            .min_rating
            .is_some_and(|min| f.rating.is_nan() || f.rating < min)
        {
            return false;
        }
        if let Some((center, max)) = self.reach
            && !(f.has(LOCATED) && f.at.chord2(center) <= max)
        {
            return false;
        }
        true
    }

    /// `busy` is the listing's [`Envelope`]: a stay outside it needs no
    /// look at the calendar.
    fn free<'d>(
        &self,
        f: &Facts,
        busy: Envelope,
        doc: impl FnOnce() -> Option<&'d ListingDoc>,
    ) -> bool {
        let Some((from, to)) = self.search.window else {
            return true;
        };
        !f.calendar_decides(busy, from, to)
            || doc().is_some_and(|d| d.calendar.has_free_unit(d.quantity, from, to, self.now))
    }
}

/// How much an owner's record lifts a listing: up to +25 % for trust, +10
/// % for reviews (a Bayesian average, so one 5-star review is not a 5.0),
/// +5 % for a track record of bookings. Words still dominate relevance.
pub fn quality(doc: &ListingDoc, owner: Option<&OwnerFacts>) -> f64 {
    let trust = owner
        .and_then(|o| o.trust)
        .unwrap_or(50.0)
        .clamp(0.0, 100.0);
    let rating = owner.map_or(PRIOR_RATING, bayesian_rating);
    let popularity = ((1 + doc.bookings.max(0)) as f64).ln() / 100f64.ln();
    1.0 + 0.25 * trust / 100.0 + 0.10 * (rating - 1.0) / 4.0 + 0.05 * popularity.min(1.0)
}

const PRIOR_RATING: f64 = 3.5;
const PRIOR_WEIGHT: f64 = 5.0;

/// The owner's average pulled towards 3.5 as if by five more reviews.
pub fn bayesian_rating(owner: &OwnerFacts) -> f64 {
    let n = owner.rating_count.max(0) as f64;
    match owner.rating_avg {
        Some(avg) if n > 0.0 => (avg * n + PRIOR_RATING * PRIOR_WEIGHT) / (n + PRIOR_WEIGHT),
        _ => PRIOR_RATING,
    }
}

/// One result.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct SearchHit {
    #[schema(example = "search_hit")]
    pub object: &'static str,
    pub listing: ListingCard,
    /// Relevance: BM25 times the quality lift (1 without `q`).
    pub score: f64,
    /// From the search's centre, when it has one.
    pub distance_km: Option<f64>,
}

/// What a result shows of a listing.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ListingCard {
    pub id: Uuid,
    #[serde(rename = "type")]
    pub kind: Kind,
    pub title: String,
    pub category: Option<CategoryRef>,
    pub pricing: Prices,
    pub location: Option<LatLng>,
    pub delivery: bool,
    pub instant_book: bool,
    pub photo_url: Option<String>,
    pub published_at: Option<DateTime<Utc>>,
    pub owner: OwnerCard,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct CategoryRef {
    pub id: Uuid,
    pub slug: String,
    pub name: String,
}

#[derive(Clone, Copy, Debug, Serialize, ToSchema)]
pub struct LatLng {
    pub lat: f64,
    pub lng: f64,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct OwnerCard {
    pub id: Uuid,
    /// Identity verified through KYC.
    pub verified: bool,
    pub rating: RatingSummary,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct RatingSummary {
    pub avg: Option<f64>,
    pub count: i64,
}

/// Counts over every match (not just the page).
#[derive(Clone, Debug, Default, Serialize, ToSchema)]
pub struct Facets {
    /// Matches per listing type.
    #[serde(rename = "type")]
    pub kind: HashMap<&'static str, usize>,
    /// Matches per category, each counted in its category and the ones
    /// above it; most matches first.
    pub category: Vec<CategoryCount>,
    /// Prices of the matches for `price_period`.
    pub price_histogram: Vec<Bucket>,
    /// The period the histogram's prices are for (`daily` by default).
    pub price_period: &'static str,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct CategoryCount {
    pub id: Uuid,
    pub slug: String,
    pub name: String,
    pub count: usize,
}

/// Prices in `[min, max)`, minor units.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct Bucket {
    pub min: i64,
    pub max: i64,
    pub count: usize,
}

/// A page of results.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct SearchPage {
    #[schema(example = "search_result")]
    pub object: &'static str,
    pub data: Vec<SearchHit>,
    pub has_more: bool,
    pub next_cursor: Option<String>,
    /// Every match, across pages.
    pub total: usize,
    pub facets: Facets,
}

/// A ranked candidate: `key` orders ascending, ties by id.
struct Ranked {
    key: f64,
    id: Uuid,
    slot: u32,
    score: f64,
}

impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for Ranked {}

impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key
            .total_cmp(&other.key)
            .then_with(|| self.id.cmp(&other.id))
    }
}

/// The order key of a match for `sort`, smaller first. Listings without
/// the sorted-by value come last. Distance sorts by squared chord, which
/// orders like the distance.
fn sort_key(sort: Sort, score: f64, f: &Facts, period: Period, center: Option<UnitVector>) -> f64 {
    let last = f64::MAX;
    match sort {
        Sort::Relevance => -score,
        Sort::PriceAsc => f.price(period).map_or(last, |p| p as f64),
        Sort::PriceDesc => f.price(period).map_or(last, |p| -(p as f64)),
        Sort::Distance => match center {
            Some(c) if f.has(LOCATED) => f.at.chord2(c),
            _ => last,
        },
        Sort::Rating => {
            if f.rating.is_nan() {
                0.0
            } else {
                -f.rating
            }
        }
    }
}

/// A page in the making: matches are added one at a time (from the index
/// or a scan, right after their filter) and counted into the facets, and
/// the best of them kept. Only [`Facts`] are read per match; the documents
/// are read for the page alone.
pub struct Tally<'a> {
    table: &'a Table,
    categories: &'a Categories,
    search: &'a Search,
    after: Option<&'a Cursor<f64>>,
    period: Period,
    sort: Sort,
    center: Option<UnitVector>,
    leaves: Vec<usize>,
    kinds: [usize; 3],
    prices: Vec<i64>,
    /// The page (and one more) in a max-heap whose top is the worst kept:
    /// most matches cost one comparison.
    best: BinaryHeap<Ranked>,
    take: usize,
    total: usize,
}

impl<'a> Tally<'a> {
    pub fn new(
        table: &'a Table,
        categories: &'a Categories,
        search: &'a Search,
        after: Option<&'a Cursor<f64>>,
    ) -> Self {
        let take = search.limit + 1;
        Self {
            table,
            categories,
            search,
            after,
            period: search.price_period(),
            sort: search.sort(),
            center: search.center.map(|(lat, lng)| UnitVector::new(lat, lng)),
            leaves: vec![0; categories.order.len()],
            kinds: [0; 3],
            prices: Vec::with_capacity(4096),
            best: BinaryHeap::with_capacity(take + 1),
            take,
            total: 0,
        }
    }

    #[inline]
    pub fn add(&mut self, slot: u32, score: f32) {
        let f = self.table.facts(slot);
        if !f.has(LIVE) {
            return;
        }
        self.total += 1;
        self.kinds[f.kind as usize] += 1;
        if let Some(n) = self.leaves.get_mut(usize::from(f.leaf)) {
            *n += 1;
        }
        if let Some(price) = f.price(self.period) {
            self.prices.push(price);
        }
        let score = f64::from(score) * f64::from(f.quality);
        let key = sort_key(self.sort, score, f, self.period, self.center);
        let full = self.best.len() == self.take;
        if (full && self.best.peek().is_some_and(|w| key > w.key))
            || self.after.is_some_and(|a| key < a.key)
        {
            return;
        }
        let Some(id) = self.table.id(slot) else {
            return;
        };
        if self.after.is_some_and(|a| (key, id) <= (a.key, a.id)) {
            return;
        }
        let ranked = Ranked {
            key,
            id,
            slot,
            score,
        };
        if !full {
            self.best.push(ranked);
        } else if self.best.peek().is_some_and(|worst| ranked < *worst) {
            self.best.pop();
            self.best.push(ranked);
        }
    }

    pub fn finish(self) -> SearchPage {
        let Self {
            table,
            categories,
            search,
            period,
            center,
            leaves,
            kinds,
            prices,
            best,
            total,
            ..
        } = self;
        let mut facets = Facets::default();
        for kind in Kind::ALL {
            if kinds[kind as usize] > 0 {
                facets.kind.insert(kind.as_str(), kinds[kind as usize]);
            }
        }
        // Each leaf's count goes to it and every category above it.
        let mut counts = vec![0usize; categories.order.len()];
        for (leaf, &n) in leaves.iter().enumerate().filter(|(_, n)| **n > 0) {
            if leaf < usize::from(NO_CATEGORY) {
                for &c in categories.lineage_at(leaf as u16) {
                    counts[usize::from(c)] += n;
                }
            }
        }
        let mut category_list: Vec<CategoryCount> = counts
            .into_iter()
            .enumerate()
            .filter(|&(_, count)| count > 0)
            .filter_map(|(i, count)| {
                let id = categories.order[i];
                categories.by_id.get(&id).map(|c| CategoryCount {
                    id,
                    slug: c.slug.clone(),
                    name: c.name.clone(),
                    count,
                })
            })
            .collect();
        category_list.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.slug.cmp(&b.slug)));
        facets.category = category_list;
        facets.price_histogram = histogram(&prices);
        facets.price_period = period_name(period);

        let mut ranked = best.into_sorted_vec();
        let has_more = ranked.len() > search.limit;
        ranked.truncate(search.limit);
        let next_cursor = has_more
            .then(|| ranked.last().map(|r| Cursor::new(r.key, r.id).encode()))
            .flatten();
        let data = ranked
            .iter()
            .filter_map(|r| {
                let doc = table.get(r.slot)?;
                let f = table.facts(r.slot);
                let distance = center
                    .filter(|_| f.has(LOCATED))
                    .map(|c| geo::chord2_km(f.at.chord2(c)));
                Some(SearchHit {
                    object: "search_hit",
                    listing: card(doc, table.owner(doc.owner_id), categories),
                    score: (r.score * 1000.0).round() / 1000.0,
                    distance_km: distance.map(|d| (d * 1000.0).round() / 1000.0),
                })
            })
            .collect();
        SearchPage {
            object: "search_result",
            data,
            has_more,
            next_cursor,
            total,
            facets,
        }
    }
}

/// A listing as results show it.
pub fn card(doc: &ListingDoc, owner: Option<&OwnerFacts>, categories: &Categories) -> ListingCard {
    ListingCard {
        id: doc.id,
        kind: doc.kind,
        title: doc.title.clone(),
        category: doc
            .category_id
            .and_then(|id| categories.by_id.get(&id))
            .map(|c| CategoryRef {
                id: c.id,
                slug: c.slug.clone(),
                name: c.name.clone(),
            }),
        pricing: doc.prices.clone(),
        location: doc.location.map(|(lat, lng)| LatLng { lat, lng }),
        delivery: doc.delivery,
        instant_book: doc.instant_book,
        photo_url: doc.photo.clone(),
        published_at: doc.published_at,
        owner: OwnerCard {
            id: doc.owner_id,
            verified: owner.is_some_and(|o| o.verified),
            rating: RatingSummary {
                avg: owner.and_then(|o| o.rating_avg),
                count: owner.map_or(0, |o| o.rating_count),
            },
        },
    }
}

/// The smallest of 1, 2 or 5 times a power of ten that is at least `x`.
fn nice(x: i64) -> i64 {
    let mut base = 1i64;
    loop {
        for m in [1, 2, 5] {
            if base.saturating_mul(m) >= x {
                return base.saturating_mul(m);
            }
        }
        base = base.saturating_mul(10);
    }
}

/// About ten buckets of a round width spanning `prices`.
pub fn histogram(prices: &[i64]) -> Vec<Bucket> {
    let (Some(&min), Some(&max)) = (prices.iter().min(), prices.iter().max()) else {
        return Vec::new();
    };
    let width = nice(((max - min) / 10).max(1) + 1);
    let start = min.div_euclid(width) * width;
    let n = ((max - start) / width + 1) as usize;
    let mut buckets: Vec<Bucket> = (0..n)
        .map(|i| Bucket {
            min: start + i as i64 * width,
            max: start + (i as i64 + 1) * width,
            count: 0,
        })
        .collect();
    for &p in prices {
        buckets[((p - start) / width) as usize].count += 1;
    }
    buckets
}

/// `period` as the API spells it.
pub fn period_name(period: Period) -> &'static str {
    match period {
        Period::Hourly => "hourly",
        Period::Daily => "daily",
        Period::Weekly => "weekly",
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::model::Calendar;

    fn doc(n: u128, price: i64, at: (f64, f64)) -> ListingDoc {
        ListingDoc {
            id: Uuid::from_u128(n),
            owner_id: Uuid::from_u128(1000),
            kind: Kind::Item,
            category_id: None,
            title: format!("thing {n}"),
            description: String::new(),
            included_items: vec![],
            location: Some(at),
            prices: Prices {
                hourly: None,
                daily: Some(price),
                weekly: None,
                currency: "EUR".into(),
            },
            delivery: n.is_multiple_of(2),
            instant_book: false,
            quantity: 1,
            photo: None,
            published_at: None,
            bookings: 0,
            calendar: Calendar::default(),
        }
    }

    /// A table of `docs` and their slots.
    fn table(docs: Vec<ListingDoc>) -> (Table, Vec<u32>) {
        let mut table = Table::default();
        let mut slots = Vec::new();
        for (i, d) in docs.into_iter().enumerate() {
            table.by_id.insert(d.id, i as u32);
            table.put(i as u32, d, Vec::new(), &Categories::default());
            slots.push(i as u32);
        }
        (table, slots)
    }

    /// The page of `slots` (each scoring 1).
    fn page(
        slots: &[u32],
        table: &Table,
        search: &Search,
        after: Option<&Cursor<f64>>,
    ) -> SearchPage {
        let categories = Categories::default();
        let mut tally = Tally::new(table, &categories, search, after);
        for &slot in slots {
            tally.add(slot, 1.0);
        }
        tally.finish()
    }

    /// Whether `doc` (owned by `owner`) passes `search`'s filters.
    fn passes(doc: &ListingDoc, owner: Option<&OwnerFacts>, search: &Search) -> bool {
        let facts = Facts::new(doc, owner, NO_CATEGORY, 1.0);
        let filter = Filter::new(search, &Categories::default(), 0);
        filter.passes(&facts) && filter.free(&facts, Envelope::of(doc), || Some(doc))
    }

    #[test]
    fn filters_are_exact() {
        let search = Search {
            center: Some((48.8566, 2.3522)),
            radius_km: Some(2.0),
            price_min: Some(1000),
            price_max: Some(2000),
            delivery: true,
            limit: 20,
            ..Search::default()
        };
        // ~1.1 km north of the centre, in range, delivers.
        assert!(passes(&doc(2, 1500, (48.8666, 2.3522)), None, &search));
        // ~2.2 km away.
        assert!(!passes(&doc(2, 1500, (48.8766, 2.3522)), None, &search));
        assert!(!passes(&doc(2, 2001, (48.8666, 2.3522)), None, &search));
        assert!(
            !passes(&doc(3, 1500, (48.8666, 2.3522)), None, &search),
            "no delivery"
        );
        // The page reports the distance of each hit.
        let (table, hits) = table(vec![doc(2, 1500, (48.8666, 2.3522))]);
        let found = page(&hits, &table, &search, None);
        let d = found.data[0].distance_km.unwrap();
        assert!((d - 1.112).abs() < 0.01, "{d}");
        let rated = Search {
            min_rating: Some(4.0),
            verified_only: true,
            limit: 20,
            ..Search::default()
        };
        let good = OwnerFacts {
            verified: true,
            rating_avg: Some(4.5),
            rating_count: 3,
            trust: None,
        };
        assert!(passes(&doc(1, 1, (0.0, 0.0)), Some(&good), &rated));
        assert!(!passes(&doc(1, 1, (0.0, 0.0)), None, &rated));
        let unverified = OwnerFacts {
            verified: false,
            ..good
        };
        assert!(!passes(&doc(1, 1, (0.0, 0.0)), Some(&unverified), &rated));
        let low = OwnerFacts {
            rating_avg: Some(3.9),
            ..good
        };
        assert!(!passes(&doc(1, 1, (0.0, 0.0)), Some(&low), &rated));
        let dated = Search {
            window: Some((100, 200)),
            limit: 20,
            ..Search::default()
        };
        let mut booked = doc(4, 1, (0.0, 0.0));
        booked.calendar.busy.push(crate::model::Busy {
            unit: 0,
            start: 150,
            end: 250,
            hold_expires_at: None,
        });
        assert!(!passes(&booked, None, &dated), "its one unit is busy");
        assert!(passes(&doc(5, 1, (0.0, 0.0)), None, &dated));
    }

    #[test]
    fn pages_follow_the_sort_and_the_cursor_resumes() {
        let docs: Vec<ListingDoc> = (0..25)
            .map(|n| doc(n, 100 * (25 - n as i64), (0.0, 0.0)))
            .collect();
        let (table, hits) = table(docs);
        let mut search = Search {
            sort: Some(Sort::PriceAsc),
            limit: 10,
            ..Search::default()
        };
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let after = cursor.as_deref().map(|c| Cursor::<f64>::decode(c).unwrap());
            let page = page(&hits, &table, &search, after.as_ref());
            assert_eq!(page.total, 25);
            seen.extend(page.data.iter().map(|h| h.listing.pricing.daily.unwrap()));
            cursor = page.next_cursor.clone();
            if !page.has_more {
                break;
            }
        }
        let mut sorted = seen.clone();
        sorted.sort();
        assert_eq!(seen, sorted);
        assert_eq!(seen.len(), 25);
        search.sort = Some(Sort::PriceDesc);
        let first = page(&hits, &table, &search, None);
        assert_eq!(first.data[0].listing.pricing.daily, Some(2500));
    }

    proptest! {
        #[test]
        fn the_histogram_counts_every_price_once_in_its_bucket(
            prices in proptest::collection::vec(0i64..10_000_000, 1..300)
        ) {
            let buckets = histogram(&prices);
            prop_assert!(buckets.len() <= 12, "{} buckets", buckets.len());
            prop_assert_eq!(buckets.iter().map(|b| b.count).sum::<usize>(), prices.len());
            for p in &prices {
                let holding = buckets.iter().filter(|b| b.min <= *p && *p < b.max).count();
                prop_assert_eq!(holding, 1);
            }
        }

        #[test]
        fn quality_lifts_by_at_most_forty_percent(
            trust in proptest::option::of(0.0f64..=100.0),
            avg in proptest::option::of(1.0f64..=5.0), count in 0i64..1000, bookings in 0i64..100_000,
        ) {
            let mut d = doc(1, 1, (0.0, 0.0));
            d.bookings = bookings;
            let owner = OwnerFacts { verified: true, rating_avg: avg, rating_count: count, trust };
            let q = quality(&d, Some(&owner));
            prop_assert!((1.0..=1.4).contains(&q), "{q}");
        }
    }
}
