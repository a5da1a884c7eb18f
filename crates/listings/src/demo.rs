//! The demo marketplace's listings (`rentify seed --demo`): one of each kind,
//! active, owned by the demo owner. Idempotent: fixed ids, inserted once.

use sqlx::PgConnection;
use uuid::Uuid;

/// One demo listing; JSON fields as text, as stored.
struct Demo {
    id: &'static str,
    kind: &'static str,
    category: &'static str,
    title: &'static str,
    description: &'static str,
    pricing: &'static str,
    quantity: i32,
    /// condition, included_items, service_scope, service_packages, property,
    /// delivery_options, booking_rules, instant_book.
    extras: &'static str,
}

const DEMO: &[Demo] = &[
    Demo {
        id: "0190c000-0000-7000-9000-000000000001",
        kind: "item",
        category: "cameras",
        title: "Sony A7 IV mirrorless camera with 28-70 mm lens",
        description: "Full-frame body, two batteries, 128 GB card. Ideal for weddings and travel.",
        pricing: r#"{"hourly": null, "daily": 4500, "weekly": 25000, "deposit": 50000, "currency": "EUR"}"#,
        quantity: 1,
        extras: r#"{"condition": "like_new", "included_items": ["2 batteries", "charger", "128 GB SD card"],
            "delivery_options": {"pickup": true, "delivery": true, "delivery_fee": 1500},
            "booking_rules": {"buffer_minutes": 60, "min_notice_minutes": 120, "max_advance_days": 180},
            "instant_book": true}"#,
    },
    Demo {
        id: "0190c000-0000-7000-9000-000000000002",
        kind: "item",
        category: "e-bikes",
        title: "City e-bikes (5 identical bikes)",
        description: "Step-through e-bikes with 80 km range; helmet and lock included. Book one or several.",
        pricing: r#"{"hourly": 800, "daily": 3500, "weekly": 18000, "deposit": 20000, "currency": "EUR"}"#,
        quantity: 5,
        extras: r#"{"condition": "good", "included_items": ["helmet", "lock"],
            "delivery_options": {"pickup": true, "delivery": false, "delivery_fee": 0},
            "booking_rules": {"buffer_minutes": 30, "min_duration_minutes": 60},
            "instant_book": true}"#,
    },
    Demo {
        id: "0190c000-0000-7000-9000-000000000003",
        kind: "service",
        category: "photography",
        title: "Event and portrait photographer",
        description: "Weddings, portraits and corporate events in Berlin; edited photos within a week.",
        pricing: r#"{"hourly": 9000, "daily": null, "weekly": null, "deposit": 0, "currency": "EUR"}"#,
        quantity: 1,
        extras: r#"{"service_scope": "Shooting, editing and an online gallery; travel within Berlin included.",
            "service_packages": [{"name": "portrait", "price": 25000, "description": "1 hour, 20 edited photos"},
                                 {"name": "wedding", "price": 180000, "description": "8 hours, 400 edited photos"}],
            "booking_rules": {"min_notice_minutes": 2880},
            "instant_book": false}"#,
    },
    Demo {
        id: "0190c000-0000-7000-9000-000000000004",
        kind: "property",
        category: "apartment",
        title: "Bright two-room apartment in Kreuzberg",
        description: "55 m², balcony, fast Wi-Fi; five minutes from the U-Bahn.",
        pricing: r#"{"hourly": null, "daily": 11000, "weekly": 65000, "deposit": 40000, "currency": "EUR"}"#,
        quantity: 1,
        extras: r#"{"property": {"property_type": "apartment", "bedrooms": 1, "bathrooms": 1, "area_sqm": 55,
                         "amenities": ["wifi", "balcony", "washing machine"]},
            "booking_rules": {"min_duration_minutes": 2880},
            "instant_book": false}"#,
    },
];

/// Inserts the demo listings for `owner_id` unless they exist; returns how
/// many were inserted.
pub async fn ensure_listings(conn: &mut PgConnection, owner_id: Uuid) -> sqlx::Result<u64> {
    let mut inserted = 0;
    for demo in DEMO {
        let done = sqlx::query(
            "INSERT INTO listings (id, owner_id, type, status, title, description, category_id,
                 location, time_zone, pricing, quantity, condition, included_items, service_scope,
                 service_packages, property, delivery_options, booking_rules, instant_book,
                 published_at)
             SELECT $1::uuid, $2, $3, 'active', $4, $5, c.id,
                 ST_SetSRID(ST_MakePoint(13.40 + random() * 0.04, 52.50 + random() * 0.03), 4326)::geography,
                 'Europe/Berlin', $6::jsonb, $7, x->>'condition',
                 coalesce(ARRAY(SELECT jsonb_array_elements_text(x->'included_items')), '{}'),
                 x->>'service_scope', coalesce(x->'service_packages', '[]'), x->'property',
                 coalesce(x->'delivery_options', '{\"pickup\": true, \"delivery\": false, \"delivery_fee\": 0}'),
                 coalesce(x->'booking_rules', '{}'), (x->>'instant_book')::boolean, now()
               FROM categories c, (SELECT $8::jsonb AS x) extras
              WHERE c.slug = $9
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(demo.id)
        .bind(owner_id)
        .bind(demo.kind)
        .bind(demo.title)
        .bind(demo.description)
        .bind(demo.pricing)
        .bind(demo.quantity)
        .bind(demo.extras)
        .bind(demo.category)
        .execute(&mut *conn)
        .await?;
        inserted += done.rows_affected();
    }
    Ok(inserted)
}
