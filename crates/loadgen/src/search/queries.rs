//! The query mix of issue 7's search benchmark: a fixed list of parameter
//! sets drawn from the seed, sent as `GET /v1/search` query strings and run
//! as SQL by the PostgreSQL twin, and the prefixes sent to
//! `GET /v1/search/suggest`.
//!
//! One parameter set, each part drawn independently:
//!
//! - `q` (80 %): one word (60 %) or two (a brand and its product, an
//!   adjective and a noun, a noun and a neighbourhood), from the seed's
//!   vocabularies; 12 % of them carry a typo (a letter dropped, doubled or
//!   two swapped: `camra`);
//! - `lat`, `lng`, `radius_km` (70 %, always when there is no `q`): 1–5 km
//!   around a point drawn like the listings' (denser in the centre);
//! - `price_min`, `price_max` with `price_period=daily` (40 %);
//! - `available_from`, `available_to` (35 %): a 1–3 day window starting in
//!   the seeded 60 days, RFC 3339;
//! - `sort`: `distance` (15 % of those with a point), `price_asc` (15 %),
//!   otherwise relevance (the parameter left out); `limit=20` always.

use std::fmt::Write as _;

use chrono::{DateTime, Duration, Utc};

use super::vocab::{self, CATEGORIES, Category, Kind, chance, pick, unit};
use crate::ledger::Rng;

/// Results asked for per page.
pub const LIMIT: usize = 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Sort {
    Relevance,
    Distance,
    PriceAsc,
}

/// One parameter set.
#[derive(Clone, Debug)]
pub struct Spec {
    pub q: Option<String>,
    /// `q` carries a deliberate typo.
    pub typo: bool,
    /// Latitude, longitude, radius in km.
    pub geo: Option<(f64, f64, f64)>,
    /// Daily price bounds in cents.
    pub price: Option<(i64, i64)>,
    pub window: Option<(DateTime<Utc>, DateTime<Utc>)>,
    pub sort: Sort,
}

/// Percent-encodes a query-string value (RFC 3986 unreserved characters
/// kept, everything else as UTF-8 bytes).
pub fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

impl Spec {
    /// `/v1/search?…`
    pub fn path(&self) -> String {
        let mut path = format!("/v1/search?limit={LIMIT}");
        if let Some(q) = &self.q {
            let _ = write!(path, "&q={}", encode(q));
        }
        if let Some((lat, lng, radius)) = self.geo {
            let _ = write!(path, "&lat={lat:.5}&lng={lng:.5}&radius_km={radius:.1}");
        }
        if let Some((low, high)) = self.price {
            let _ = write!(path, "&price_min={low}&price_max={high}&price_period=daily");
        }
        if let Some((from, to)) = self.window {
            let _ = write!(
                path,
                "&available_from={}&available_to={}",
                encode(&rfc3339(from)),
                encode(&rfc3339(to))
            );
        }
        match self.sort {
            Sort::Relevance => {}
            Sort::Distance => path.push_str("&sort=distance"),
            Sort::PriceAsc => path.push_str("&sort=price_asc"),
        }
        path
    }

    /// The radius in metres, rounded as the query string rounds it.
    pub fn radius_m(&self) -> Option<f64> {
        self.geo
            .map(|(_, _, km)| (km * 10.0).round() / 10.0 * 1_000.0)
    }
}

/// A typo: a letter dropped, doubled, or two neighbours swapped, never the
/// first letter (people rarely get that wrong).
fn typo(rng: &mut Rng, word: &str) -> String {
    let mut chars: Vec<char> = word.chars().collect();
    if chars.len() < 5 {
        return word.to_owned();
    }
    let at = 1 + (rng.next() as usize % (chars.len() - 2));
    match rng.next() % 3 {
        0 => {
            chars.remove(at);
        }
        1 => chars.insert(at, chars[at]),
        _ if chars[at] == chars[at + 1] => {
            chars.remove(at);
        }
        _ => chars.swap(at, at + 1),
    }
    chars.into_iter().collect()
}

/// Words of a category's products: (brands, nouns, other words).
fn terms(c: &Category) -> (Vec<String>, Vec<String>, Vec<String>) {
    let (mut brands, mut nouns, mut others) = (Vec::new(), Vec::new(), Vec::new());
    for product in c.products {
        let (brand, _, noun) = vocab::product_parts(product);
        brands.extend(vocab::words(brand));
        nouns.extend(vocab::words(vocab::head_noun(noun)));
        others.extend(vocab::words(noun));
    }
    for adjective in c.adjectives {
        others.extend(vocab::words(adjective));
    }
    for list in [&mut brands, &mut nouns, &mut others] {
        list.sort();
        list.dedup();
    }
    (brands, nouns, others)
}

fn query_text(rng: &mut Rng) -> (String, bool) {
    let c = vocab::category(rng);
    let (brands, nouns, others) = terms(c);
    let noun = pick(rng, &nouns).clone();
    let mut words: Vec<String> = if chance(rng, 0.6) {
        let r = unit(rng);
        vec![if r < 0.4 || (brands.is_empty() && r < 0.7) {
            noun
        } else if r < 0.7 {
            pick(rng, &brands).clone()
        } else {
            pick(rng, &others).clone()
        }]
    } else {
        let r = unit(rng);
        if r < 0.5 && c.kind == Kind::Item {
            // The brand of one product and that product's noun.
            let (brand, _, product_noun) = vocab::product_parts(vocab::pick_str(rng, c.products));
            let brand = vocab::words(brand).next().unwrap_or_default();
            let product_noun = vocab::words(vocab::head_noun(product_noun))
                .next()
                .unwrap_or_default();
            vec![brand, product_noun]
        } else if r < 0.8 {
            vec![pick(rng, &others).clone(), noun]
        } else {
            let (name, _, _) = pick(rng, vocab::NEIGHBOURHOODS);
            let place = vocab::words(name)
                .max_by_key(|w| w.chars().count())
                .unwrap_or_default();
            vec![noun, place]
        }
    };
    words.retain(|w| !w.is_empty());
    words.dedup();
    let mut typoed = false;
    if chance(rng, 0.12)
        && let Some(word) = words.iter_mut().find(|w| w.chars().count() >= 5)
    {
        *word = typo(rng, word);
        typoed = true;
    }
    (words.join(" "), typoed)
}

/// `count` parameter sets; windows start between `from` (a midnight) and
/// `until` (the seeded horizon).
pub fn specs(seed: u64, count: usize, from: DateTime<Utc>, until: DateTime<Utc>) -> Vec<Spec> {
    let mut rng = Rng(seed ^ 0x5ea7_c4ed_0000_0007);
    let window_days = ((until - from).num_days() - 3).max(1) as u64;
    (0..count)
        .map(|_| {
            let (q, typo) = if chance(&mut rng, 0.8) {
                let (q, typo) = query_text(&mut rng);
                (Some(q), typo)
            } else {
                (None, false)
            };
            let geo = (q.is_none() || chance(&mut rng, 0.7)).then(|| {
                let (lat, lng) = vocab::point(&mut rng);
                let radius = (10.0 + 40.0 * unit(&mut rng)).round() / 10.0;
                (lat, lng, radius)
            });
            let price = chance(&mut rng, 0.4).then(|| {
                let low = *pick(&mut rng, &[0, 1_000, 2_000, 3_000, 5_000, 8_000]);
                let high = low + *pick(&mut rng, &[3_000, 5_000, 10_000, 20_000, 50_000]);
                (low, high)
            });
            let window = chance(&mut rng, 0.35).then(|| {
                let start = from
                    + Duration::days((rng.next() % window_days) as i64)
                    + Duration::hours(8 + (rng.next() % 6) as i64);
                (start, start + Duration::days(1 + (rng.next() % 3) as i64))
            });
            let r = unit(&mut rng);
            let sort = if geo.is_some() && r < 0.15 {
                Sort::Distance
            } else if r > 0.85 {
                Sort::PriceAsc
            } else {
                Sort::Relevance
            };
            Spec {
                q,
                typo,
                geo,
                price,
                window,
                sort,
            }
        })
        .collect()
}

/// `count` suggestion prefixes: the first 2–5 letters of vocabulary words
/// (brands, nouns, neighbourhoods), lower case.
pub fn prefixes(seed: u64, count: usize) -> Vec<String> {
    let mut rng = Rng(seed ^ 0x5ea7_c4ed_0000_0005);
    let mut all: Vec<String> = Vec::new();
    for c in CATEGORIES {
        let (brands, nouns, others) = terms(c);
        all.extend(brands);
        all.extend(nouns);
        all.extend(others);
    }
    for (name, _, _) in vocab::NEIGHBOURHOODS {
        all.extend(vocab::words(name));
    }
    all.sort();
    all.dedup();
    (0..count)
        .map(|_| {
            let word = pick(&mut rng, &all);
            let len = 2 + (rng.next() % 4) as usize;
            word.chars().take(len).collect()
        })
        .collect()
}

/// `/v1/search/suggest?q=…`
pub fn suggest_path(prefix: &str) -> String {
    format!("/v1/search/suggest?q={}&limit=8", encode(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window() -> (DateTime<Utc>, DateTime<Utc>) {
        let from = DateTime::parse_from_rfc3339("2030-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        (from, from + Duration::days(60))
    }

    #[test]
    fn the_mix_is_deterministic_and_has_every_part() {
        let (from, until) = window();
        let a = specs(42, 2_000, from, until);
        let b = specs(42, 2_000, from, until);
        assert_eq!(
            a.iter().map(Spec::path).collect::<Vec<_>>(),
            b.iter().map(Spec::path).collect::<Vec<_>>()
        );
        let share = |f: &dyn Fn(&Spec) -> bool| a.iter().filter(|s| f(s)).count() as f64 / 2_000.0;
        assert!((0.75..0.85).contains(&share(&|s| s.q.is_some())));
        assert!(share(&|s| s.typo) > 0.05);
        assert!((0.35..0.45).contains(&share(&|s| s.price.is_some())));
        assert!((0.30..0.40).contains(&share(&|s| s.window.is_some())));
        assert!(share(&|s| s.sort == Sort::Distance) > 0.05);
        assert!(share(&|s| s.sort == Sort::PriceAsc) > 0.05);
        assert!(a.iter().all(|s| s.q.is_some() || s.geo.is_some()));
        for s in &a {
            if let Some((_, _, r)) = s.geo {
                assert!((1.0..=5.0).contains(&r));
            }
            if let Some((start, end)) = s.window {
                assert!(start >= from && end <= until + Duration::days(1));
                assert!((1..=3).contains(&(end - start).num_days()));
            }
        }
    }

    #[test]
    fn paths_are_encoded() {
        let (from, _) = window();
        let spec = Spec {
            q: Some("vélo électrique".into()),
            typo: false,
            geo: Some((48.85661, 2.35222, 2.5)),
            price: Some((1_000, 6_000)),
            window: Some((from, from + Duration::days(2))),
            sort: Sort::Distance,
        };
        assert_eq!(
            spec.path(),
            "/v1/search?limit=20&q=v%C3%A9lo%20%C3%A9lectrique&lat=48.85661&lng=2.35222&radius_km=2.5\
             &price_min=1000&price_max=6000&price_period=daily\
             &available_from=2030-01-01T00%3A00%3A00Z&available_to=2030-01-03T00%3A00%3A00Z&sort=distance"
        );
        assert_eq!(spec.radius_m(), Some(2_500.0));
        assert!(spec.path().parse::<hyper::Uri>().is_ok());
    }

    #[test]
    fn typos_change_one_letter() {
        let mut rng = Rng(3);
        for _ in 0..100 {
            let t = typo(&mut rng, "camera");
            assert_ne!(t, "camera");
            assert!(t.starts_with('c'));
            assert!((5..=7).contains(&t.len()));
        }
        assert_eq!(typo(&mut rng, "tent"), "tent");
    }

    #[test]
    fn prefixes_are_short_and_lower_case() {
        let p = prefixes(42, 500);
        assert!(p.iter().all(|p| (2..=5).contains(&p.chars().count())));
        assert!(p.iter().all(|p| p.to_lowercase() == *p));
        assert!(suggest_path("ca").starts_with("/v1/search/suggest?q=ca"));
    }
}
