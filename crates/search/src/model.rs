//! What a search replica holds about each active listing and its owner: the
//! filterable facts that Tantivy does not index (prices, calendar, owner
//! rating and trust), kept in memory beside the index so every filter is
//! exact and cheap at query time.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::geo::UnitVector;

/// Listing kinds, as in the listings module.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Item,
    Service,
    Property,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Item, Kind::Service, Kind::Property];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Item => "item",
            Kind::Service => "service",
            Kind::Property => "property",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == raw)
    }
}

/// The billing period a price is quoted for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    Hourly,
    Daily,
    Weekly,
}

impl Period {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "hourly" => Some(Self::Hourly),
            "daily" => Some(Self::Daily),
            "weekly" => Some(Self::Weekly),
            _ => None,
        }
    }
}

/// Prices in minor units; a listing need not offer every period.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Prices {
    pub hourly: Option<i64>,
    pub daily: Option<i64>,
    pub weekly: Option<i64>,
    pub currency: String,
}

impl Prices {
    pub fn for_period(&self, period: Period) -> Option<i64> {
        match period {
            Period::Hourly => self.hourly,
            Period::Daily => self.daily,
            Period::Weekly => self.weekly,
        }
    }
}

/// A listing's calendar from now on, in Unix seconds: the owner's opening
/// windows (when there are any, a stay must fit inside one) and the spans
/// occupied on each unit (blocks and bookings, buffers included).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Calendar {
    pub open: Vec<(i64, i64)>,
    pub busy: Vec<Busy>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Busy {
    pub unit: i32,
    pub start: i64,
    pub end: i64,
    /// A booking request whose hold lapses then frees the unit.
    pub hold_expires_at: Option<i64>,
}

impl Calendar {
    /// Whether at least one of `quantity` units is free for all of
    /// `[from, to)` at `now`: exact interval arithmetic, the same rule the
    /// bookings module enforces with its exclusion constraint.
    /// Runs for every candidate of a search with dates, so a short
    /// calendar (the usual case) is checked without allocating.
    pub fn has_free_unit(&self, quantity: i32, from: i64, to: i64, now: i64) -> bool {
        if !self.open.is_empty() && !self.open.iter().any(|&(s, e)| s <= from && to <= e) {
            return false;
        }
        let overlaps =
            |b: &&Busy| b.start < to && from < b.end && b.hold_expires_at.is_none_or(|h| h > now);
        if self.busy.len() <= 32 {
            // Count each unit at its first overlapping span.
            let mut taken = 0;
            for (i, b) in self.busy.iter().enumerate() {
                if overlaps(&b)
                    && !self.busy[..i]
                        .iter()
                        .filter(overlaps)
                        .any(|e| e.unit == b.unit)
                {
                    taken += 1;
                }
            }
            return taken < quantity;
        }
        let mut taken: Vec<i32> = self.busy.iter().filter(overlaps).map(|b| b.unit).collect();
        taken.sort_unstable();
        taken.dedup();
        (taken.len() as i32) < quantity
    }

    /// Whether the calendar can refuse a stay (without spans or opening
    /// windows, every unit is free).
    pub fn constrains(&self) -> bool {
        !self.open.is_empty() || !self.busy.is_empty()
    }
}

/// An active listing as search sees it.
#[derive(Clone, Debug)]
pub struct ListingDoc {
    pub id: Uuid,
    pub owner_id: Uuid,
    pub kind: Kind,
    pub category_id: Option<Uuid>,
    pub title: String,
    pub description: String,
    pub included_items: Vec<String>,
    /// `(lat, lng)` in degrees.
    pub location: Option<(f64, f64)>,
    pub prices: Prices,
    pub delivery: bool,
    pub instant_book: bool,
    pub quantity: i32,
    pub photo: Option<String>,
    pub published_at: Option<DateTime<Utc>>,
    /// Bookings that went ahead (approved or later): the popularity signal.
    pub bookings: i64,
    pub calendar: Calendar,
}

/// Where a listing's busy spans lie, in whole minutes since the epoch
/// rounded outwards: 8 bytes per slot beside [`Facts`], so a search with
/// dates skips the calendar of a listing whose spans all lie outside the
/// stay (most of them) without reading the document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Envelope {
    first_minute: u32,
    last_minute: u32,
}

impl Envelope {
    /// Covers all time: the calendar must always be read.
    pub const ALWAYS: Envelope = Envelope {
        first_minute: 0,
        last_minute: u32::MAX,
    };

    pub fn of(doc: &ListingDoc) -> Self {
        let calendar = &doc.calendar;
        if !calendar.open.is_empty() || doc.quantity < 1 {
            return Self::ALWAYS;
        }
        let start = calendar.busy.iter().map(|b| b.start).min();
        let end = calendar.busy.iter().map(|b| b.end).max();
        let (Some(start), Some(end)) = (start, end) else {
            return Self::ALWAYS;
        };
        let minute = |t: i64| u32::try_from(t.clamp(0, i64::from(u32::MAX))).unwrap_or(u32::MAX);
        Self {
            first_minute: minute(start.div_euclid(60)),
            last_minute: minute((end + 59).div_euclid(60)),
        }
    }

    /// Whether `[from, to)` (Unix seconds) overlaps no busy span.
    #[inline]
    pub fn clear_of(self, from: i64, to: i64) -> bool {
        to <= i64::from(self.first_minute) * 60 || from >= i64::from(self.last_minute) * 60
    }
}

/// [`Facts::prices`] when the listing has no price for the period.
pub const NO_PRICE: i64 = i64::MIN;
/// [`Facts::leaf`] of a listing without a (known) category.
pub const NO_CATEGORY: u16 = u16::MAX;

/// The slot holds a listing.
pub const LIVE: u8 = 1;
/// The listing has a location.
pub const LOCATED: u8 = 1 << 1;
pub const DELIVERY: u8 = 1 << 2;
/// The owner's identity is verified.
pub const VERIFIED: u8 = 1 << 3;
/// The calendar can refuse a stay: only then is it read (see
/// [`Calendar::constrains`]).
pub const CALENDAR: u8 = 1 << 4;

/// What a search reads of every candidate, copied out of its
/// [`ListingDoc`] and owner into one 64-byte cache line per slot. A search
/// walks tens of thousands of candidates; the documents themselves (several
/// hundred bytes behind pointers) are read only for a page's results and
/// for calendars that can refuse the dates.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(align(64))]
pub struct Facts {
    pub at: UnitVector,
    /// By [`Period`] (`period as usize`), [`NO_PRICE`] when not offered.
    pub prices: [i64; 3],
    /// The owner's average rating, NaN without reviews.
    pub rating: f64,
    /// [`crate::rank::quality`] of the listing and its owner.
    pub quality: f32,
    /// The category's position in [`Categories::order`], or [`NO_CATEGORY`].
    pub leaf: u16,
    pub kind: Kind,
    /// [`LIVE`], [`LOCATED`], [`DELIVERY`], [`VERIFIED`], [`CALENDAR`].
    pub flags: u8,
}

// One cache line: the layout is the point of the type.
const _: () = assert!(std::mem::size_of::<Facts>() == 64);

impl Facts {
    /// An empty slot.
    pub const EMPTY: Facts = Facts {
        at: UnitVector::ORIGIN,
        prices: [NO_PRICE; 3],
        rating: f64::NAN,
        quality: 1.0,
        leaf: NO_CATEGORY,
        kind: Kind::Item,
        flags: 0,
    };

    pub fn new(doc: &ListingDoc, owner: Option<&OwnerFacts>, leaf: u16, quality: f64) -> Self {
        let flag = |on: bool, bit: u8| if on { bit } else { 0 };
        let price = |p: Option<i64>| p.unwrap_or(NO_PRICE);
        Self {
            at: doc
                .location
                .map_or(UnitVector::ORIGIN, |(lat, lng)| UnitVector::new(lat, lng)),
            prices: [
                price(doc.prices.hourly),
                price(doc.prices.daily),
                price(doc.prices.weekly),
            ],
            rating: owner.and_then(|o| o.rating_avg).unwrap_or(f64::NAN),
            quality: quality as f32,
            leaf,
            kind: doc.kind,
            flags: LIVE
                | flag(doc.location.is_some(), LOCATED)
                | flag(doc.delivery, DELIVERY)
                | flag(owner.is_some_and(|o| o.verified), VERIFIED)
                | flag(doc.calendar.constrains() || doc.quantity < 1, CALENDAR),
        }
    }

    #[inline]
    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// Whether a stay `[from, to)` (Unix seconds) needs this listing's
    /// calendar read: it has one, and the stay overlaps its `busy` envelope.
    #[inline]
    pub fn calendar_decides(&self, busy: Envelope, from: i64, to: i64) -> bool {
        self.has(CALENDAR) && !busy.clear_of(from, to)
    }

    #[inline]
    pub fn price(&self, period: Period) -> Option<i64> {
        let p = self.prices[period as usize];
        (p != NO_PRICE).then_some(p)
    }
}

/// What ranking and filters need to know about an owner.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OwnerFacts {
    pub verified: bool,
    pub rating_avg: Option<f64>,
    pub rating_count: i64,
    /// 0..=100 from the trust engine; `None` until it has run.
    pub trust: Option<f64>,
}

/// A category of the tree.
#[derive(Clone, Debug)]
pub struct Category {
    pub id: Uuid,
    pub parent_id: Option<Uuid>,
    pub slug: String,
    pub name: String,
    pub kind: Kind,
}

/// The category tree, small and read-mostly.
#[derive(Clone, Debug, Default)]
pub struct Categories {
    pub by_id: HashMap<Uuid, Category>,
    /// Every id, in a fixed order: facets count by position.
    pub order: Vec<Uuid>,
    position: HashMap<Uuid, u16>,
    /// Each position's lineage, as positions (leaf first).
    lineages: Vec<Vec<u16>>,
}

impl Categories {
    pub fn new(list: Vec<Category>) -> Self {
        let mut order: Vec<Uuid> = list.iter().map(|c| c.id).collect();
        order.sort();
        let position = order
            .iter()
            .enumerate()
            .map(|(i, id)| (*id, i as u16))
            .collect();
        let mut categories = Self {
            by_id: list.into_iter().map(|c| (c.id, c)).collect(),
            order,
            position,
            lineages: Vec::new(),
        };
        categories.lineages = categories
            .order
            .iter()
            .map(|&id| categories.lineage_positions(id))
            .collect();
        categories
    }

    /// The position of `id` in [`Categories::order`].
    pub fn position(&self, id: Uuid) -> Option<u16> {
        self.position.get(&id).copied()
    }

    /// The lineage of the category at `position`, as positions.
    pub fn lineage_at(&self, position: u16) -> &[u16] {
        self.lineages
            .get(usize::from(position))
            .map_or(&[], Vec::as_slice)
    }

    /// [`Categories::lineage`] as positions in [`Categories::order`].
    pub fn lineage_positions(&self, id: Uuid) -> Vec<u16> {
        self.lineage(id)
            .iter()
            .filter_map(|c| self.position.get(c).copied())
            .collect()
    }

    /// `id` and its ancestors, leaf first (cycles cannot exist, but the
    /// walk is bounded anyway).
    pub fn lineage(&self, id: Uuid) -> Vec<Uuid> {
        let mut out = Vec::new();
        let mut at = Some(id);
        while let Some(current) = at {
            if out.len() > 16 || !self.by_id.contains_key(&current) {
                break;
            }
            out.push(current);
            at = self.by_id[&current].parent_id;
        }
        out
    }

    /// `id` and every category below it.
    pub fn descendants(&self, id: Uuid) -> HashSet<Uuid> {
        self.by_id
            .keys()
            .copied()
            .filter(|&c| self.lineage(c).contains(&id))
            .collect()
    }

    /// The slug path from the root, e.g. `/items/cameras/lenses`.
    pub fn path(&self, id: Uuid) -> Option<String> {
        let lineage = self.lineage(id);
        if lineage.is_empty() {
            return None;
        }
        Some(lineage.iter().rev().fold(String::new(), |mut path, c| {
            path.push('/');
            path.push_str(&self.by_id[c].slug);
            path
        }))
    }

    pub fn by_slug(&self, slug: &str) -> Option<&Category> {
        self.by_id.values().find(|c| c.slug == slug)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn busy(unit: i32, start: i64, end: i64) -> Busy {
        Busy {
            unit,
            start,
            end,
            hold_expires_at: None,
        }
    }

    #[test]
    fn a_unit_is_free_unless_every_unit_overlaps() {
        let calendar = Calendar {
            open: vec![],
            busy: vec![busy(0, 10, 20), busy(1, 15, 30)],
        };
        assert!(!calendar.has_free_unit(2, 16, 18, 0), "both units taken");
        assert!(
            calendar.has_free_unit(2, 20, 25, 0),
            "unit 0 is free from 20"
        );
        assert!(calendar.has_free_unit(3, 16, 18, 0), "a third unit");
        assert!(calendar.has_free_unit(1, 30, 40, 0), "ends are exclusive");
        assert!(!calendar.has_free_unit(1, 5, 11, 0));
    }

    #[test]
    fn opening_windows_must_contain_the_stay() {
        let calendar = Calendar {
            open: vec![(100, 200)],
            busy: vec![],
        };
        assert!(calendar.has_free_unit(1, 100, 200, 0));
        assert!(!calendar.has_free_unit(1, 150, 250, 0));
    }

    #[test]
    fn the_envelope_only_clears_stays_outside_every_span() {
        let mut doc = ListingDoc {
            id: Uuid::nil(),
            owner_id: Uuid::nil(),
            kind: Kind::Item,
            category_id: None,
            title: String::new(),
            description: String::new(),
            included_items: vec![],
            location: None,
            prices: Prices::default(),
            delivery: false,
            instant_book: false,
            quantity: 2,
            photo: None,
            published_at: None,
            bookings: 0,
            calendar: Calendar::default(),
        };
        doc.calendar.busy = vec![busy(0, 6_000, 6_030), busy(1, 12_000, 12_090)];
        let envelope = Envelope::of(&doc);
        // Rounded outwards to whole minutes: 100 to 202.
        assert!(envelope.clear_of(0, 6_000));
        assert!(!envelope.clear_of(0, 6_001));
        assert!(envelope.clear_of(12_120, 13_000));
        assert!(!envelope.clear_of(12_089, 13_000));
        assert!(
            !envelope.clear_of(7_000, 8_000),
            "between spans: the calendar decides"
        );
        doc.calendar.open = vec![(0, 100_000)];
        assert_eq!(Envelope::of(&doc), Envelope::ALWAYS);
        assert!(!Envelope::ALWAYS.clear_of(0, 1));
    }

    #[test]
    fn a_lapsed_hold_frees_its_unit() {
        let calendar = Calendar {
            open: vec![],
            busy: vec![Busy {
                hold_expires_at: Some(50),
                ..busy(0, 10, 20)
            }],
        };
        assert!(!calendar.has_free_unit(1, 12, 14, 40));
        assert!(calendar.has_free_unit(1, 12, 14, 60));
    }
}
