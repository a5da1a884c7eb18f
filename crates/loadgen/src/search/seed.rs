//! `rentify-loadgen search-seed`: the data of issue 7's search benchmark,
//! written into a migrated database with a few set-based statements.
//!
//! - `--owners` owner accounts (`users` + `owner`/`renter` roles) with a
//!   mix of identity statuses (60 % verified, 10 % pending, 30 % unverified)
//!   and rating summaries (`{"avg": 3.0–5.0, "count": 1–300}`, one in ten
//!   with no reviews yet), emails `ownerNNNN@search-bench.rentify.test`;
//! - `--listings` `active` listings in the seeded categories (leaves mostly;
//!   camera bodies, bikes and tools sit in the parent categories), with
//!   titles and descriptions from per-category vocabularies (`vocab.rs`),
//!   spread over Paris (denser in the centre) and mentioning the nearest
//!   neighbourhood, prices in EUR cents (`hourly` for services and some
//!   items, never for properties), delivery options, 1–3 units for items;
//! - `blocked` availability windows in the next 60 days (from today's
//!   midnight, Paris time) on about `--blocked-share` of the listings: one
//!   to three spans, each blocking every unit (so the listing is not
//!   available then) or one unit.
//!
//! The content is a function of `--seed` (ids included); only the times
//! (publication dates, windows) follow the clock. Rows go in as arrays
//! (`UNNEST`), `--batch` listings per statement, in one transaction, then
//! the tables are vacuumed and analysed.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use clap::Parser;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};
use uuid::Uuid;

use super::vocab::{self, CATEGORIES, Category, Kind, capitalise, chance, pick, unit};
use crate::ledger::Rng;

/// Seeds the search benchmark's owners, listings and blocked windows.
#[derive(Parser, Debug)]
#[command(name = "rentify-loadgen search-seed")]
pub struct SeedArgs {
    /// A migrated database (`rentify migrate`) without a previous seed.
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,

    /// Active listings to create.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    listings: u32,

    /// Owner accounts the listings belong to.
    #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    owners: u32,

    /// Seed of the generator: the same seed gives the same data.
    #[arg(long, default_value_t = 42)]
    seed: u64,

    /// Share of listings with blocked windows in the next 60 days.
    #[arg(long, default_value_t = 0.30)]
    blocked_share: f64,

    /// Listings per INSERT statement.
    #[arg(long, default_value_t = 5_000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    batch: u32,
}

/// The e-mail domain of the seeded owners (how a previous seed is recognised).
pub const EMAIL_DOMAIN: &str = "search-bench.rentify.test";
/// `availability_windows.note` of the seeded windows.
pub const WINDOW_NOTE: &str = "search-bench";
/// Days ahead the blocked windows cover.
pub const HORIZON_DAYS: i64 = 60;

const FIRST_NAMES: &[&str] = &[
    "Camille", "Léa", "Manon", "Chloé", "Inès", "Sarah", "Emma", "Louise", "Jade", "Alice",
    "Lucas", "Hugo", "Louis", "Gabriel", "Arthur", "Jules", "Adam", "Nathan", "Théo", "Raphaël",
    "Karim", "Yasmine", "Mehdi", "Sofia", "Thomas", "Julie", "Antoine", "Pauline", "Nicolas",
    "Mathilde",
];

/// The owners' columns, one vector per column.
#[derive(Default)]
struct Owners {
    id: Vec<Uuid>,
    email: Vec<String>,
    name: Vec<String>,
    status: Vec<&'static str>,
    rating_avg: Vec<Option<f64>>,
    rating_count: Vec<i64>,
    age_days: Vec<f64>,
}

fn owners(rng: &mut Rng, count: u32) -> Owners {
    let mut o = Owners::default();
    for n in 0..count {
        o.id.push(vocab::uuid(rng));
        o.email.push(format!("owner{n:04}@{EMAIL_DOMAIN}"));
        let initial = (b'A' + (rng.next() % 26) as u8) as char;
        o.name
            .push(format!("{} {initial}.", pick(rng, FIRST_NAMES)));
        let r = unit(rng);
        o.status.push(if r < 0.6 {
            "verified"
        } else if r < 0.7 {
            "pending"
        } else {
            "unverified"
        });
        if chance(rng, 0.1) {
            o.rating_avg.push(None);
            o.rating_count.push(0);
        } else {
            // Skewed to the top, as marketplace ratings are.
            let avg = 5.0 - 2.0 * unit(rng).powi(3);
            o.rating_avg.push(Some((avg * 10.0).round() / 10.0));
            o.rating_count.push(1 + (300.0 * unit(rng).powi(2)) as i64);
        }
        o.age_days.push(30.0 + 900.0 * unit(rng));
    }
    o
}

/// One batch of listings, one vector per column.
#[derive(Default)]
struct Listings {
    id: Vec<Uuid>,
    owner: Vec<Uuid>,
    kind: Vec<&'static str>,
    title: Vec<String>,
    description: Vec<String>,
    category: Vec<Uuid>,
    lat: Vec<f64>,
    lng: Vec<f64>,
    hourly: Vec<Option<i64>>,
    daily: Vec<i64>,
    weekly: Vec<i64>,
    deposit: Vec<i64>,
    quantity: Vec<i32>,
    condition: Vec<Option<&'static str>>,
    /// `|`-separated (a ragged text[][] cannot be bound).
    included: Vec<String>,
    service_scope: Vec<Option<String>>,
    property: Vec<Option<String>>,
    delivery: Vec<bool>,
    delivery_fee: Vec<i64>,
    cancellation: Vec<&'static str>,
    instant_book: Vec<bool>,
    /// Seconds since publication.
    age_s: Vec<f64>,
}

/// One batch of blocked windows.
#[derive(Default)]
struct Windows {
    id: Vec<Uuid>,
    listing: Vec<Uuid>,
    unit: Vec<i32>,
    start: Vec<DateTime<Utc>>,
    end: Vec<DateTime<Utc>>,
}

/// A price in cents in `range`, rounded to 50 cents.
fn price(rng: &mut Rng, (low, high): (i64, i64)) -> i64 {
    let cents = low as f64 + (high - low) as f64 * unit(rng).powf(1.5);
    ((cents / 50.0).round() as i64 * 50).max(50)
}

/// `n` distinct elements (fewer if there are not as many).
fn some<'a>(rng: &mut Rng, items: &[&'a str], n: usize) -> Vec<&'a str> {
    let mut chosen: Vec<&str> = Vec::with_capacity(n);
    for _ in 0..n * 4 {
        if chosen.len() == n.min(items.len()) {
            break;
        }
        let item = *pick(rng, items);
        if !chosen.contains(&item) {
            chosen.push(item);
        }
    }
    chosen
}

fn english_list(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// Title and description of an item.
fn item_text(
    rng: &mut Rng,
    c: &Category,
    hood: &str,
    condition: &str,
    included: &[&str],
    delivery: bool,
) -> (String, String) {
    let (brand, model, noun) = vocab::product_parts(vocab::pick_str(rng, c.products));
    let r = unit(rng);
    let title = if r < 0.45 {
        format!("{brand} {model} {noun}")
    } else if r < 0.65 {
        format!("{} {brand} {model} {noun}", pick(rng, c.adjectives))
    } else if r < 0.85 {
        format!("{brand} {model} {noun} {}", pick(rng, c.extras))
    } else {
        format!("{} {noun} ({brand} {model})", pick(rng, c.adjectives))
    };
    let condition = match condition {
        "new" => "brand new",
        "like_new" => "like-new",
        "good" => "good",
        _ => "fair but fully working",
    };
    let mut description = format!("{} {noun} in {condition} condition. ", capitalise(brand));
    description.push_str(vocab::pick_str(rng, c.uses));
    if chance(rng, 0.5) {
        description.push(' ');
        description.push_str(vocab::pick_str(rng, c.uses));
    }
    if !included.is_empty() {
        description.push_str(&format!(" Comes with {}.", english_list(included)));
    }
    description.push_str(&format!(" Pickup in {hood}"));
    description.push_str(if delivery {
        " or delivery across Paris."
    } else {
        "."
    });
    (title, description)
}

fn service_text(rng: &mut Rng, c: &Category, hood: &str) -> (String, String, String) {
    let noun = vocab::pick_str(rng, c.products);
    let r = unit(rng);
    let title = if r < 0.4 {
        format!("{} {noun}", pick(rng, c.adjectives))
    } else if r < 0.7 {
        format!("{} in {hood}", capitalise(noun))
    } else {
        format!("{} {noun} {}", pick(rng, c.adjectives), pick(rng, c.extras))
    };
    let years = 2 + rng.next() % 20;
    let description = format!(
        "{} {years} years of experience. Based in {hood}, serving all of Paris.",
        some(rng, c.uses, 2).join(" ")
    );
    let scope = format!(
        "{} in Paris and the inner suburbs; travel within 10 km included.",
        capitalise(noun)
    );
    (title, description, scope)
}

fn property_text(rng: &mut Rng, c: &Category, hood: &str) -> (String, String, String) {
    let noun = vocab::pick_str(rng, c.products);
    let r = unit(rng);
    let title = if r < 0.5 {
        format!("{} {noun} in {hood}", pick(rng, c.adjectives))
    } else if r < 0.8 {
        format!("{} {noun} {}", pick(rng, c.adjectives), pick(rng, c.extras))
    } else {
        format!("{} in {hood} {}", capitalise(noun), pick(rng, c.extras))
    };
    let bedrooms = match noun {
        "studio" => 0,
        n if n.starts_with(|c: char| c.is_ascii_digit()) => i64::from(n.as_bytes()[0] - b'0'),
        n if c.slug == "room" || n.contains("room") => 1,
        _ if c.slug == "house" => 2 + (rng.next() % 4) as i64,
        _ => 1 + (rng.next() % 3) as i64,
    };
    let bathrooms = 1 + i64::from(bedrooms >= 3);
    let area = match c.slug {
        "room" => 10 + rng.next() % 15,
        "house" => 90 + rng.next() % 150,
        _ => 20 + bedrooms as u64 * 25 + rng.next() % 30,
    };
    let n = 2 + (rng.next() % 3) as usize;
    let amenities = some(rng, c.included, n);
    let description = format!(
        "{area} m², {}, {bathrooms} bathroom{}. Amenities: {}. {} Located in {hood}.",
        match bedrooms {
            0 => "open-plan".to_owned(),
            1 => "1 bedroom".to_owned(),
            n => format!("{n} bedrooms"),
        },
        if bathrooms == 1 { "" } else { "s" },
        english_list(&amenities),
        pick(rng, c.uses)
    );
    let property = serde_json::json!({
        "property_type": c.slug,
        "bedrooms": bedrooms,
        "bathrooms": bathrooms,
        "area_sqm": area,
        "amenities": amenities,
    })
    .to_string();
    (title, description, property)
}

/// Appends one listing (and its blocked windows) to the batch.
#[allow(clippy::too_many_arguments)]
fn listing(
    rng: &mut Rng,
    owners: &[Uuid],
    blocked_share: f64,
    anchor: DateTime<Utc>,
    l: &mut Listings,
    w: &mut Windows,
) {
    let id = vocab::uuid(rng);
    // Some owners have many listings (a shop), most a few.
    let owner = owners[((owners.len() as f64) * unit(rng).powi(2)) as usize];
    let c = vocab::category(rng);
    let (lat, lng) = vocab::point(rng);
    let hood = vocab::neighbourhood(lat, lng);
    let mut hourly = None;
    let daily;
    let weekly;
    let deposit;
    let mut quantity = 1;
    let mut condition = None;
    let mut included = Vec::new();
    let mut service_scope = None;
    let mut property = None;
    let delivery = c.kind == Kind::Item && chance(rng, 0.4);
    let (title, description) = match c.kind {
        Kind::Item => {
            daily = price(rng, c.price);
            if chance(rng, 0.6) {
                hourly = Some((daily / 4 / 50).max(1) * 50);
            }
            weekly = daily * 5 / 50 * 50;
            deposit = (daily * (5 + (rng.next() % 10) as i64)).min(100_000) / 100 * 100;
            let r = unit(rng);
            quantity = if r < 0.7 {
                1
            } else if r < 0.9 {
                2
            } else {
                3
            };
            let cond = *pick(
                rng,
                &["new", "like_new", "like_new", "good", "good", "fair"],
            );
            condition = Some(cond);
            let n = (rng.next() % 4) as usize;
            included = some(rng, c.included, n);
            item_text(rng, c, hood, cond, &included, delivery)
        }
        Kind::Service => {
            let per_hour = price(rng, c.price);
            hourly = Some(per_hour);
            daily = per_hour * 7;
            weekly = per_hour * 30;
            deposit = 0;
            let (title, description, scope) = service_text(rng, c, hood);
            service_scope = Some(scope);
            (title, description)
        }
        Kind::Property => {
            daily = price(rng, c.price);
            weekly = daily * 6 / 100 * 100;
            deposit = (daily * 4).clamp(20_000, 150_000) / 100 * 100;
            let (title, description, details) = property_text(rng, c, hood);
            property = Some(details);
            (title, description)
        }
    };
    l.id.push(id);
    l.owner.push(owner);
    l.kind.push(c.kind.as_str());
    l.title.push(title);
    l.description.push(description);
    l.category.push(c.id);
    l.lat.push(lat);
    l.lng.push(lng);
    l.hourly.push(hourly);
    l.daily.push(daily);
    l.weekly.push(weekly);
    l.deposit.push(deposit);
    l.quantity.push(quantity);
    l.condition.push(condition);
    l.included.push(included.join("|"));
    l.service_scope.push(service_scope);
    l.property.push(property);
    l.delivery.push(delivery);
    l.delivery_fee.push(if delivery {
        price(rng, (500, 2_500))
    } else {
        0
    });
    l.cancellation
        .push(*pick(rng, &["flexible", "moderate", "moderate", "strict"]));
    l.instant_book.push(chance(rng, 0.5));
    l.age_s.push(86_400.0 * 365.0 * unit(rng));

    if chance(rng, blocked_share) {
        // Spans in separate 20-day thirds of the horizon, so two spans
        // never overlap on a unit (the exclusion constraint).
        let spans = 1 + rng.next() % 3;
        for third in 0..spans as i64 {
            let start_day = third * 20 + (rng.next() % 13) as i64;
            let days = 1 + (rng.next() % 7) as i64;
            let start_hour = 8 + (rng.next() % 5) as i64;
            let start =
                anchor + chrono::Duration::days(start_day) + chrono::Duration::hours(start_hour);
            let end = start + chrono::Duration::days(days);
            let units: Vec<i32> = if chance(rng, 0.6) {
                (0..quantity).collect()
            } else {
                vec![(rng.next() % quantity as u64) as i32]
            };
            for unit in units {
                w.id.push(vocab::uuid(rng));
                w.listing.push(id);
                w.unit.push(unit);
                w.start.push(start);
                w.end.push(end);
            }
        }
    }
}

async fn insert_owners(conn: &mut PgConnection, o: &Owners) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO users (id, email, email_verified_at, display_name, identity_status,
                            rating_summary, created_at, updated_at)
         SELECT t.id, t.email, now() - t.age * interval '1 day', t.name, t.status,
                jsonb_build_object('avg', t.avg, 'count', t.count),
                now() - t.age * interval '1 day', now()
           FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::float8[],
                       $6::int8[], $7::float8[])
             AS t (id, email, name, status, avg, count, age)",
    )
    .bind(&o.id)
    .bind(&o.email)
    .bind(&o.name)
    .bind(&o.status)
    .bind(&o.rating_avg)
    .bind(&o.rating_count)
    .bind(&o.age_days)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO user_roles (user_id, role)
         SELECT id, role FROM unnest($1::uuid[]) AS id, unnest(ARRAY['owner', 'renter']) AS role",
    )
    .bind(&o.id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn insert_listings(conn: &mut PgConnection, l: &Listings) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO listings (id, owner_id, type, status, title, description, category_id,
                               location, time_zone, pricing, quantity, condition, included_items,
                               service_scope, property, delivery_options, policies, instant_book,
                               published_at, created_at, updated_at)
         SELECT t.id, t.owner, t.kind, 'active', t.title, t.description, t.category,
                ST_SetSRID(ST_MakePoint(t.lng, t.lat), 4326)::geography, 'Europe/Paris',
                jsonb_build_object('hourly', t.hourly, 'daily', t.daily, 'weekly', t.weekly,
                                   'deposit', t.deposit, 'currency', 'EUR'),
                t.quantity, t.condition,
                CASE WHEN t.included = '' THEN '{}'::text[] ELSE string_to_array(t.included, '|') END,
                t.scope, t.property::jsonb,
                jsonb_build_object('pickup', true, 'delivery', t.delivery, 'delivery_fee', t.fee),
                jsonb_build_object('cancellation', t.cancellation, 'damage', NULL, 'late_return', NULL),
                t.instant, now() - t.age * interval '1 second',
                now() - t.age * interval '1 second' - interval '2 days',
                now() - t.age * interval '1 second'
           FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::uuid[],
                       $7::float8[], $8::float8[], $9::int8[], $10::int8[], $11::int8[],
                       $12::int8[], $13::int4[], $14::text[], $15::text[], $16::text[],
                       $17::text[], $18::bool[], $19::int8[], $20::text[], $21::bool[],
                       $22::float8[])
             AS t (id, owner, kind, title, description, category, lat, lng, hourly, daily,
                   weekly, deposit, quantity, condition, included, scope, property, delivery,
                   fee, cancellation, instant, age)",
    )
    .bind(&l.id)
    .bind(&l.owner)
    .bind(&l.kind)
    .bind(&l.title)
    .bind(&l.description)
    .bind(&l.category)
    .bind(&l.lat)
    .bind(&l.lng)
    .bind(&l.hourly)
    .bind(&l.daily)
    .bind(&l.weekly)
    .bind(&l.deposit)
    .bind(&l.quantity)
    .bind(&l.condition)
    .bind(&l.included)
    .bind(&l.service_scope)
    .bind(&l.property)
    .bind(&l.delivery)
    .bind(&l.delivery_fee)
    .bind(&l.cancellation)
    .bind(&l.instant_book)
    .bind(&l.age_s)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn insert_windows(conn: &mut PgConnection, w: &Windows) -> sqlx::Result<()> {
    if w.id.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO availability_windows (id, listing_id, unit, status, start_time, end_time,
                                           span, note)
         SELECT t.id, t.listing, t.unit, 'blocked', t.start_time, t.end_time,
                tstzrange(t.start_time, t.end_time), $6
           FROM unnest($1::uuid[], $2::uuid[], $3::int4[], $4::timestamptz[], $5::timestamptz[])
             AS t (id, listing, unit, start_time, end_time)",
    )
    .bind(&w.id)
    .bind(&w.listing)
    .bind(&w.unit)
    .bind(&w.start)
    .bind(&w.end)
    .bind(WINDOW_NOTE)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub async fn connect(url: &str, application: &str) -> Result<PgConnection, String> {
    let options: PgConnectOptions = url
        .parse()
        .map_err(|e| format!("invalid --database-url: {e}"))?;
    options
        .application_name(application)
        .disable_statement_logging()
        .connect()
        .await
        .map_err(|e| format!("cannot connect: {e}"))
}

pub fn main(args: SeedArgs) -> Result<ExitCode, String> {
    if !(0.0..=1.0).contains(&args.blocked_share) {
        return Err("--blocked-share must be between 0 and 1".to_owned());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|err| format!("cannot start the runtime: {err}"))?;
    runtime.block_on(seed(&args))?;
    Ok(ExitCode::SUCCESS)
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

async fn seed(args: &SeedArgs) -> Result<(), String> {
    let started = Instant::now();
    let mut conn = connect(&args.database_url, "rentify-loadgen-search-seed").await?;
    let sql = |e: sqlx::Error| e.to_string();

    let ids: Vec<Uuid> = CATEGORIES.iter().map(|c| c.id).collect();
    let kinds: Vec<&str> = CATEGORIES.iter().map(|c| c.kind.as_str()).collect();
    let known: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM categories c
           JOIN unnest($1::uuid[], $2::text[]) AS t (id, kind) ON t.id = c.id AND t.kind = c.kind",
    )
    .bind(&ids)
    .bind(&kinds)
    .fetch_one(&mut conn)
    .await
    .map_err(|e| format!("{e} (is the database migrated? run `rentify migrate`)"))?;
    if known != CATEGORIES.len() as i64 {
        return Err(format!(
            "{known} of the {} seeded categories found with their kinds: run `rentify migrate` on a fresh database",
            CATEGORIES.len()
        ));
    }
    let previous: i64 = sqlx::query_scalar("SELECT count(*) FROM users WHERE email LIKE $1")
        .bind(format!("%@{EMAIL_DOMAIN}"))
        .fetch_one(&mut conn)
        .await
        .map_err(sql)?;
    if previous > 0 {
        return Err(format!(
            "the database already holds a search seed ({previous} owners @{EMAIL_DOMAIN}); recreate it first"
        ));
    }
    // Local midnight in Paris today: the windows' day 0.
    let anchor: DateTime<Utc> = sqlx::query_scalar(
        "SELECT date_trunc('day', now() AT TIME ZONE 'Europe/Paris') AT TIME ZONE 'Europe/Paris'",
    )
    .fetch_one(&mut conn)
    .await
    .map_err(sql)?;

    let mut rng = Rng(args.seed);
    let mut tx = conn.begin().await.map_err(sql)?;
    // Benchmark data: a crash loses the seed, never anything else.
    sqlx::query("SET LOCAL synchronous_commit = off")
        .execute(&mut *tx)
        .await
        .map_err(sql)?;

    let phase = Instant::now();
    let o = owners(&mut rng, args.owners);
    insert_owners(&mut tx, &o).await.map_err(sql)?;
    let owners_took = phase.elapsed();

    let phase = Instant::now();
    let mut windows_total = 0usize;
    let mut blocked_listings = 0usize;
    let mut written = 0u32;
    let mut kinds = [0u32; 3];
    while written < args.listings {
        let n = args.batch.min(args.listings - written);
        let mut l = Listings::default();
        let mut w = Windows::default();
        for _ in 0..n {
            let before = w.id.len();
            listing(&mut rng, &o.id, args.blocked_share, anchor, &mut l, &mut w);
            blocked_listings += usize::from(w.id.len() > before);
        }
        for kind in &l.kind {
            kinds[match *kind {
                "item" => 0,
                "service" => 1,
                _ => 2,
            }] += 1;
        }
        insert_listings(&mut tx, &l).await.map_err(sql)?;
        insert_windows(&mut tx, &w).await.map_err(sql)?;
        windows_total += w.id.len();
        written += n;
    }
    tx.commit().await.map_err(sql)?;
    let listings_took = phase.elapsed();

    let phase = Instant::now();
    sqlx::query("VACUUM (ANALYZE) users, user_roles, listings, availability_windows")
        .execute(&mut conn)
        .await
        .map_err(sql)?;
    let vacuum_took = phase.elapsed();

    println!(
        "seed        {} owners ({} ms), {} listings ({} items, {} services, {} properties) and {} blocked windows on {} of them ({:.1} %) in {}; VACUUM ANALYZE {}",
        args.owners,
        owners_took.as_millis(),
        args.listings,
        kinds[0],
        kinds[1],
        kinds[2],
        windows_total,
        blocked_listings,
        100.0 * blocked_listings as f64 / f64::from(args.listings),
        secs(listings_took),
        secs(vacuum_took),
    );
    println!(
        "seed        --seed {}, windows from {} for {HORIZON_DAYS} days; total {}",
        args.seed,
        anchor.format("%Y-%m-%d %H:%M UTC"),
        secs(started.elapsed())
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(seed: u64, n: usize) -> (Listings, Windows) {
        let mut rng = Rng(seed);
        let o = owners(&mut rng, 50);
        let anchor = DateTime::parse_from_rfc3339("2030-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let (mut l, mut w) = (Listings::default(), Windows::default());
        for _ in 0..n {
            listing(&mut rng, &o.id, 0.3, anchor, &mut l, &mut w);
        }
        (l, w)
    }

    #[test]
    fn the_same_seed_gives_the_same_listings() {
        let (a, wa) = batch(9, 200);
        let (b, wb) = batch(9, 200);
        assert_eq!(a.id, b.id);
        assert_eq!(a.title, b.title);
        assert_eq!(a.description, b.description);
        assert_eq!(wa.start, wb.start);
        let (c, _) = batch(10, 200);
        assert_ne!(a.title, c.title);
    }

    #[test]
    fn listings_are_consistent() {
        let (l, w) = batch(1, 5_000);
        for i in 0..l.id.len() {
            let c = CATEGORIES.iter().find(|c| c.id == l.category[i]).unwrap();
            assert_eq!(c.kind.as_str(), l.kind[i]);
            assert!((1..=3).contains(&l.quantity[i]));
            assert!(!l.title[i].is_empty() && !l.description[i].is_empty());
            if c.kind == Kind::Property {
                assert!(l.hourly[i].is_none());
                assert_eq!(l.quantity[i], 1);
            }
        }
        // Windows of one listing and unit never overlap (the exclusion
        // constraint), and all lie in the next 60 days.
        for i in 0..w.id.len() {
            for j in i + 1..w.id.len() {
                if w.listing[i] == w.listing[j] && w.unit[i] == w.unit[j] {
                    assert!(w.end[i] <= w.start[j] || w.end[j] <= w.start[i]);
                }
            }
            let days = (w.end[i] - w.start[i]).num_days();
            assert!((1..=7).contains(&days));
        }
        let blocked: std::collections::HashSet<_> = w.listing.iter().collect();
        let share = blocked.len() as f64 / l.id.len() as f64;
        assert!((0.27..0.33).contains(&share), "{share}");
        let hourly = l.hourly.iter().filter(|h| h.is_none()).count();
        assert!(hourly > 0 && hourly < l.id.len());
    }
}
