//! Search, suggestions and the feed over HTTP: the replica follows listing,
//! availability and owner changes; every filter is exact; bad parameters
//! name their field; a reindex swaps a rebuilt replica in without downtime;
//! a second replica fed by the same outbox agrees.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{TestApp, error_code};

const CAMERAS: &str = "0190c000-0000-7000-8000-000000000101";
const LENSES: &str = "0190c000-0000-7000-8000-000000000102";
const BIKES: &str = "0190c000-0000-7000-8000-000000000104";
const ITEMS: &str = "0190c000-0000-7000-8000-000000000001";
const PHOTOGRAPHY: &str = "0190c000-0000-7000-8000-000000000201";

async fn search(app: &TestApp, query: &str) -> Value {
    let (status, body) = app
        .call_parts(Method::GET, &format!("/v1/search?{query}"), None, None)
        .await;
    assert_eq!(status, 200, "{query}: {body}");
    body
}

fn ids(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["listing"]["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Polls `query` until `done` holds (the replica applies events every
/// `SEARCH_REFRESH_MS`); returns the page and how long it took.
async fn until(app: &TestApp, query: &str, done: impl Fn(&Value) -> bool) -> (Value, Duration) {
    let started = Instant::now();
    loop {
        let page = search(app, query).await;
        if done(&page) {
            return (page, started.elapsed());
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "search never satisfied the condition: {query} -> {page}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn listing(app: &TestApp, token: &str, overrides: Value) -> String {
    app.active_listing(token, overrides).await["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_published_listing_is_found_and_leaves_when_paused() {
    let app = TestApp::spawn().await;
    let (_, owner) = app.user("owner@example.com").await;
    let id = listing(
        &app,
        &owner,
        json!({"title": "Hasselblad medium format camera"}),
    )
    .await;

    let (page, lag) = until(&app, "q=hasselblad", |p| ids(p).contains(&id)).await;
    assert_eq!(page["object"], "search_result");
    assert_eq!(page["total"], 1);
    let hit = &page["data"][0];
    assert_eq!(hit["object"], "search_hit");
    assert_eq!(hit["listing"]["title"], "Hasselblad medium format camera");
    assert_eq!(hit["listing"]["category"]["slug"], "cameras");
    assert_eq!(hit["listing"]["pricing"]["daily"], 2500);
    assert_eq!(hit["listing"]["owner"]["verified"], true);
    assert!(hit["score"].as_f64().unwrap() > 0.0);
    // The target is under a second; the test allows for a loaded CI.
    assert!(lag < Duration::from_secs(5), "index lag {lag:?}");

    let (status, body) = app
        .call_parts(
            Method::POST,
            &format!("/v1/listings/{id}/pause"),
            Some(&owner),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    until(&app, "q=hasselblad", |p| p["total"] == 0).await;

    // Drafts never appear.
    let (status, draft) = app
        .call_parts(
            Method::POST,
            "/v1/listings",
            Some(&owner),
            Some(&json!({"type": "item", "title": "Hasselblad draft"})),
        )
        .await;
    assert_eq!(status, 201, "{draft}");
    let (status, _) = app
        .call_parts(
            Method::POST,
            &format!("/v1/listings/{id}/resume"),
            Some(&owner),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (page, _) = until(&app, "q=hasselblad", |p| p["total"] == 1).await;
    assert_eq!(ids(&page), [id]);
}

#[tokio::test]
async fn words_forgive_typos_by_length_and_the_last_word_is_a_prefix() {
    let app = TestApp::spawn().await;
    let (_, owner) = app.user("owner@example.com").await;
    let camera = listing(
        &app,
        &owner,
        json!({"title": "Canon mirrorless camera body"}),
    )
    .await;
    let bike = listing(
        &app,
        &owner,
        json!({"title": "Cargo bike", "description": "Carries two kids.", "category_id": BIKES}),
    )
    .await;
    until(&app, "", |p| p["total"] == 2).await;

    for (q, expected) in [
        ("camera", vec![camera.as_str()]),
        // One edit in a word of 5-8 letters.
        ("camra", vec![camera.as_str()]),
        // Two edits in a word of 9+ letters.
        ("mirorlesss%20canon", vec![camera.as_str()]),
        // Prefix on the last word.
        ("canon%20mirr", vec![camera.as_str()]),
        ("bik", vec![bike.as_str()]),
        // Accents fold.
        ("cámera", vec![camera.as_str()]),
        // The description and the category name count too.
        ("kids", vec![bike.as_str()]),
        ("photo", vec![camera.as_str()]),
    ] {
        assert_eq!(
            ids(&search(&app, &format!("q={q}")).await),
            expected,
            "q={q}"
        );
    }
    // No edits under 5 letters, except as a prefix; every word must match.
    for q in [
        "bkie%20cargo",
        "cannon%20bike",
        "camerra%20bike",
        "mrrorlss",
    ] {
        assert_eq!(search(&app, &format!("q={q}")).await["total"], 0, "q={q}");
    }
    // Title words outrank description words.
    let described = listing(
        &app,
        &owner,
        json!({"title": "Tripod", "description": "Fits any camera."}),
    )
    .await;
    let (page, _) = until(&app, "q=camera", |p| p["total"] == 2).await;
    assert_eq!(ids(&page), [camera.as_str(), described.as_str()]);
    // A word the index knows as typed is not widened to its neighbours: a
    // listing that misspells it is found by its misspelling, not by the
    // word. An unknown word still matches within its typo budget.
    let hammock = listing(&app, &owner, json!({"title": "Camping hammock"})).await;
    let misspelt = listing(&app, &owner, json!({"title": "Hamock hooks"})).await;
    until(&app, "q=hooks", |p| p["total"] == 1).await;
    assert_eq!(ids(&search(&app, "q=hammock").await), [hammock.as_str()]);
    assert_eq!(ids(&search(&app, "q=hamock").await), [misspelt.as_str()]);
    assert_eq!(
        ids(&search(&app, "q=hammok").await),
        [hammock.as_str()],
        "one edit from hammock, two from hamock"
    );
}

#[tokio::test]
async fn every_filter_is_exact_and_distances_match_postgis() {
    let app = TestApp::spawn().await;
    let (_, owner) = app.user("owner@example.com").await;
    // Notre-Dame; ~1.1 km north; ~4.5 km west; a lens; a photography service.
    let centre = listing(
        &app,
        &owner,
        json!({"title": "Camera A", "location": {"lat": 48.8530, "lng": 2.3499}}),
    )
    .await;
    let north = listing(
        &app,
        &owner,
        json!({"title": "Camera B", "location": {"lat": 48.8630, "lng": 2.3499},
               "pricing": {"daily": 9000, "currency": "EUR"},
               "delivery_options": {"pickup": true, "delivery": false, "delivery_fee": 0}}),
    )
    .await;
    let west = listing(
        &app,
        &owner,
        json!({"title": "Camera C", "location": {"lat": 48.8530, "lng": 2.2887}}),
    )
    .await;
    // Lyon: far from the geo searches below.
    let lyon = json!({"lat": 45.7640, "lng": 4.8357});
    let lens = listing(
        &app,
        &owner,
        json!({"title": "Lens D", "category_id": LENSES, "location": lyon}),
    )
    .await;
    let service = listing(
        &app,
        &owner,
        json!({"type": "service", "title": "Wedding photographer", "category_id": PHOTOGRAPHY,
               "pricing": {"hourly": 6000, "currency": "EUR"}, "quantity": 1,
               "condition": null, "included_items": [], "service_scope": "Weddings in Lyon",
               "location": lyon}),
    )
    .await;
    until(&app, "", |p| p["total"] == 5).await;

    let geo = search(&app, "lat=48.8530&lng=2.3499&radius_km=2&sort=distance").await;
    assert_eq!(ids(&geo), [centre.clone(), north.clone()]);
    let reported = geo["data"][1]["distance_km"].as_f64().unwrap();
    let (postgis,): (f64,) = sqlx::query_as(
        "SELECT ST_Distance(ST_MakePoint(2.3499, 48.8530)::geography, location, false) / 1000
           FROM listings WHERE id = $1::uuid",
    )
    .bind(&north)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert!(
        (reported - postgis).abs() < 0.002,
        "{reported} vs PostGIS {postgis}"
    );
    let wide = search(
        &app,
        "lat=48.8530&lng=2.3499&radius_km=6&sort=distance&type=item&category=cameras",
    )
    .await;
    assert_eq!(ids(&wide), [centre.clone(), north.clone(), west.clone()]);

    // Category includes descendants (by id or slug); type narrows.
    let items = search(&app, &format!("category={ITEMS}")).await;
    assert_eq!(items["total"], 4);
    assert_eq!(ids(&search(&app, "category=lenses").await), [lens.as_str()]);
    assert_eq!(
        search(&app, &format!("category={CAMERAS}")).await["total"],
        4
    );
    assert_eq!(ids(&search(&app, "type=service").await), [service.as_str()]);
    assert_eq!(search(&app, "type=all").await["total"], 5);

    // Price for a period; listings without that period's price are out.
    let cheap = search(&app, "price_max=3000&price_period=daily&sort=price_asc").await;
    assert_eq!(cheap["total"], 3);
    assert!(!ids(&cheap).contains(&north));
    assert_eq!(
        ids(&search(&app, "price_min=5000&price_period=hourly").await),
        [service.as_str()]
    );
    assert_eq!(
        ids(&search(&app, "price_min=8000&price_max=9000").await),
        [north.as_str()]
    );

    // Delivery.
    let delivering = ids(&search(&app, "delivery=true").await);
    assert_eq!(delivering.len(), 4);
    assert!(!delivering.contains(&north));

    // Facets count every match, with categories rolled up.
    let all = search(&app, "limit=1").await;
    assert_eq!(all["facets"]["type"]["item"], 4);
    assert_eq!(all["facets"]["type"]["service"], 1);
    let categories = all["facets"]["category"].as_array().unwrap();
    let count = |slug: &str| {
        categories
            .iter()
            .find(|c| c["slug"] == slug)
            .map(|c| c["count"].as_u64().unwrap())
    };
    assert_eq!(count("items"), Some(4));
    assert_eq!(count("cameras"), Some(4));
    assert_eq!(count("lenses"), Some(1));
    assert_eq!(count("photography"), Some(1));
    let buckets = all["facets"]["price_histogram"].as_array().unwrap();
    let bucketed: u64 = buckets.iter().map(|b| b["count"].as_u64().unwrap()).sum();
    assert_eq!(bucketed, 4, "daily prices: {buckets:?}");
}

#[tokio::test]
async fn sorting_and_the_cursor_walk_every_match_once() {
    let app = TestApp::spawn().await;
    let (_, owner) = app.user("owner@example.com").await;
    let mut expected = Vec::new();
    for (i, price) in [4000, 1000, 3000, 2000, 5000].into_iter().enumerate() {
        let id = listing(
            &app,
            &owner,
            json!({"title": format!("Drone {i}"), "pricing": {"daily": price, "currency": "EUR"}}),
        )
        .await;
        expected.push((price, id));
    }
    expected.sort();
    until(&app, "q=drone", |p| p["total"] == 5).await;

    let mut walked = Vec::new();
    let mut query = "q=drone&sort=price_asc&limit=2".to_owned();
    loop {
        let page = search(&app, &query).await;
        assert_eq!(page["total"], 5);
        walked.extend(ids(&page));
        if page["has_more"] == false {
            assert!(page["next_cursor"].is_null());
            break;
        }
        query = format!(
            "q=drone&sort=price_asc&limit=2&cursor={}",
            page["next_cursor"].as_str().unwrap()
        );
    }
    assert_eq!(
        walked,
        expected
            .iter()
            .map(|(_, id)| id.clone())
            .collect::<Vec<_>>()
    );
    let desc = search(&app, "q=drone&sort=price_desc&limit=1").await;
    assert_eq!(ids(&desc), [expected[4].1.clone()]);
    let (status, body) = app
        .call_parts(Method::GET, "/v1/search?cursor=not-a-cursor", None, None)
        .await;
    assert_eq!((status, error_code(&body)), (400, "invalid_cursor"));
}

#[tokio::test]
async fn availability_excludes_listings_without_a_free_unit_for_the_window() {
    let app = TestApp::spawn().await;
    let (_, owner) = app.user("owner@example.com").await;
    let single = listing(&app, &owner, json!({"title": "Kayak one"})).await;
    let double = listing(&app, &owner, json!({"title": "Kayak two", "quantity": 2})).await;
    until(&app, "q=kayak", |p| p["total"] == 2).await;
    let start = chrono::Utc::now() + chrono::Duration::days(10);
    let end = start + chrono::Duration::days(2);
    let block = |unit: Option<i32>| json!({"windows": [{"status": "blocked", "start_time": start, "end_time": end, "unit": unit}]});
    for (id, unit) in [(&single, None), (&double, Some(0))] {
        let (status, body) = app
            .call_parts(
                Method::PUT,
                &format!("/v1/listings/{id}/availability"),
                Some(&owner),
                Some(&block(unit)),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let window = |from: chrono::DateTime<chrono::Utc>, hours: i64| {
        format!(
            "q=kayak&available_from={}&available_to={}",
            urlencode(&from.to_rfc3339()),
            urlencode(&(from + chrono::Duration::hours(hours)).to_rfc3339())
        )
    };
    // Overlapping the block: the single unit is taken, one of two is free.
    let (page, _) = until(
        &app,
        &window(start + chrono::Duration::hours(12), 24),
        |p| p["total"] == 1,
    )
    .await;
    assert_eq!(ids(&page), [double.as_str()]);
    // Ends exactly when the block starts: both free (ranges are half-open).
    let before = search(&app, &window(start - chrono::Duration::hours(24), 24)).await;
    assert_eq!(before["total"], 2);
    // The second unit of `double` blocked too: nothing is free.
    let (status, body) = app
        .call_parts(
            Method::PUT,
            &format!("/v1/listings/{double}/availability"),
            Some(&owner),
            Some(&json!({"windows": [
                {"status": "blocked", "start_time": start, "end_time": end, "unit": 0},
                {"status": "blocked", "start_time": start, "end_time": end, "unit": 1}
            ]})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    until(
        &app,
        &window(start + chrono::Duration::hours(12), 24),
        |p| p["total"] == 0,
    )
    .await;
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

#[tokio::test]
async fn owner_facts_filter_and_follow_their_events() {
    let app = TestApp::spawn().await;
    let (owner_id, owner) = app.user("owner@example.com").await;
    let id = listing(&app, &owner, json!({"title": "Projector"})).await;
    until(&app, "q=projector&verified_only=true", |p| p["total"] == 1).await;
    assert_eq!(
        search(&app, "q=projector&min_rating=4").await["total"],
        0,
        "no rating yet"
    );

    // The reviews consumer's contract: users.rating_summary changes and
    // `user.rating_updated` is recorded with it.
    let mut tx = app.db.begin().await.unwrap();
    sqlx::query(
        "UPDATE users SET rating_summary = '{\"avg\": 4.5, \"count\": 2}', identity_status = 'rejected'
          WHERE id = $1::uuid",
    )
    .bind(&owner_id)
    .execute(&mut *tx)
    .await
    .unwrap();
    rentify_platform::outbox::record(
        &mut tx,
        rentify_platform::outbox::NewEvent {
            event_type: "user.rating_updated",
            aggregate_type: "user",
            aggregate_id: owner_id.clone(),
            payload: json!({"user_id": owner_id, "avg": 4.5, "count": 2}),
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let (page, _) = until(&app, "q=projector&min_rating=4.5", |p| p["total"] == 1).await;
    assert_eq!(ids(&page), [id]);
    assert_eq!(page["data"][0]["listing"]["owner"]["rating"]["avg"], 4.5);
    assert_eq!(page["data"][0]["listing"]["owner"]["rating"]["count"], 2);
    assert_eq!(search(&app, "q=projector&min_rating=4.6").await["total"], 0);
    assert_eq!(
        search(&app, "q=projector&verified_only=true").await["total"],
        0
    );
}

#[tokio::test]
async fn bad_parameters_answer_400_naming_the_field() {
    let app = TestApp::spawn().await;
    for (query, field) in [
        ("lat=48.85", "lng"),
        ("lng=2.35", "lat"),
        ("radius_km=5", "radius_km"),
        ("limit=0", "limit"),
        ("limit=51", "limit"),
        ("sort=popular", "sort"),
        ("sort=distance", "sort"),
        ("price_min=500&price_max=100", "price_min"),
        ("price_period=monthly", "price_period"),
        ("lat=100&lng=2", "lat"),
        ("available_from=2026-12-01T00:00:00Z", "available_to"),
        (
            "available_from=2026-12-02T00:00:00Z&available_to=2026-12-01T00:00:00Z",
            "available_to",
        ),
        (
            "available_from=tomorrow&available_to=2026-12-01T00:00:00Z",
            "available_from",
        ),
        ("category=not-a-category", "category"),
        ("type=car", "type"),
        ("min_rating=9", "min_rating"),
        ("verified_only=perhaps", "verified_only"),
        ("colour=red", "colour"),
    ] {
        let (status, body) = app
            .call_parts(Method::GET, &format!("/v1/search?{query}"), None, None)
            .await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(error_code(&body), "validation_failed", "{query}");
        assert_eq!(
            body["error"]["details"][0]["field"], field,
            "{query}: {body}"
        );
    }
    let (status, body) = app
        .call_parts(Method::GET, "/v1/search/suggest", None, None)
        .await;
    assert_eq!(
        (status, body["error"]["details"][0]["field"].as_str()),
        (400, Some("q"))
    );
    let (status, _) = app.call_parts(Method::GET, "/v1/feed", None, None).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn suggestions_offer_categories_then_distinct_titles() {
    let app = TestApp::spawn().await;
    let (_, owner) = app.user("owner@example.com").await;
    for title in ["Camper van", "Camera bag", "Camera bag", "Campfire grill"] {
        listing(&app, &owner, json!({"title": title})).await;
    }
    until(&app, "", |p| p["total"] == 4).await;
    let (status, body) = app
        .call_parts(Method::GET, "/v1/search/suggest?q=cam", None, None)
        .await;
    assert_eq!(status, 200, "{body}");
    let texts: Vec<(&str, &str)> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["kind"].as_str().unwrap(), s["text"].as_str().unwrap()))
        .collect();
    assert_eq!(
        texts[..2],
        [
            ("category", "Cameras & photo"),
            ("category", "Camping & outdoor")
        ]
    );
    let mut titles: Vec<&str> = texts[2..].iter().map(|(_, t)| *t).collect();
    titles.sort();
    assert_eq!(titles, ["Camera bag", "Camper van", "Campfire grill"]);
    // Every typed word must start a word of the suggestion.
    let (_, body) = app
        .call_parts(Method::GET, "/v1/search/suggest?q=camera%20b", None, None)
        .await;
    assert_eq!(body["data"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(body["data"][0]["text"], "Camera bag");
    assert_eq!(body["data"][0]["kind"], "listing");
    let (_, body) = app
        .call_parts(
            Method::GET,
            "/v1/search/suggest?q=cameras&limit=1",
            None,
            None,
        )
        .await;
    assert_eq!(body["data"].as_array().unwrap().len(), 1);
    assert_eq!(body["data"][0]["text"], "Cameras & photo");
    assert_eq!(body["data"][0]["slug"], "cameras");
}

#[tokio::test]
async fn the_feed_starts_cold_and_follows_preferences() {
    let app = TestApp::spawn().await;
    let (_, owner) = app.user("owner@example.com").await;
    let camera = listing(&app, &owner, json!({"title": "Camera"})).await;
    let bike = listing(
        &app,
        &owner,
        json!({"title": "Bike", "category_id": BIKES, "pricing": {"daily": 1500, "currency": "EUR"}}),
    )
    .await;
    until(&app, "", |p| p["total"] == 2).await;
    let (_, renter) = app.user("renter@example.com").await;

    let (status, cold) = app
        .call_parts(Method::GET, "/v1/feed", Some(&renter), None)
        .await;
    assert_eq!(status, 200, "{cold}");
    assert_eq!(cold["personalized"], false);
    let keys: Vec<&str> = cold["sections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["new", "popular"]);
    assert_eq!(cold["sections"][0]["data"].as_array().unwrap().len(), 2);

    let (status, body) = app
        .call_parts(
            Method::PATCH,
            "/v1/users/me/preferences",
            Some(&renter),
            Some(&json!({"category_affinities": ["bikes"], "budget": {"min": 0, "max": 2000, "currency": "EUR"}})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, warm) = app
        .call_parts(
            Method::GET,
            "/v1/feed?lat=48.8566&lng=2.3522",
            Some(&renter),
            None,
        )
        .await;
    assert_eq!(warm["personalized"], true);
    assert_eq!(warm["sections"][0]["key"], "for_you");
    assert_eq!(warm["sections"][0]["data"][0]["id"], bike.as_str());
    assert_eq!(warm["sections"][1]["key"], "new_nearby");
    // Each listing shows once across sections.
    assert_eq!(warm["sections"][1]["data"][0]["id"], camera.as_str());

    // An owner's own listings are not suggested to them.
    let (_, own) = app
        .call_parts(Method::GET, "/v1/feed", Some(&owner), None)
        .await;
    assert!(
        own["sections"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["data"].as_array().unwrap().is_empty())
    );
}

#[tokio::test]
async fn a_reindex_swaps_in_a_rebuilt_replica_and_a_second_replica_agrees() {
    let app = TestApp::spawn().await;
    let (_, owner) = app.user("owner@example.com").await;
    let id = listing(&app, &owner, json!({"title": "Telescope"})).await;
    until(&app, "q=telescope", |p| p["total"] == 1).await;

    // A second replica (another API process) on the same database.
    let (second, resume) = rentify_search::SearchIndex::build(app.db.clone())
        .await
        .unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    second.spawn_follower(resume, Duration::from_millis(50), stop.clone());
    assert_eq!(second.len(), 1);

    // A change made behind the outbox's back (as a restore would): only a
    // rebuild from PostgreSQL sees it.
    sqlx::query("UPDATE listings SET title = 'Refractor telescope' WHERE id = $1::uuid")
        .bind(&id)
        .execute(&app.db)
        .await
        .unwrap();
    assert_eq!(search(&app, "q=refractor").await["total"], 0);
    rentify_search::request_reindex(&app.db, "test")
        .await
        .unwrap();
    // Searches keep answering while the rebuild runs.
    let (page, _) = until(&app, "q=refractor", |p| p["total"] == 1).await;
    assert_eq!(ids(&page), [id.as_str()]);

    // Both replicas follow the next change.
    let (status, _) = app
        .call_parts(
            Method::POST,
            &format!("/v1/listings/{id}/pause"),
            Some(&owner),
            None,
        )
        .await;
    assert_eq!(status, 200);
    until(&app, "q=telescope", |p| p["total"] == 0).await;
    let started = Instant::now();
    while !second.is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the second replica did not follow"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    stop.cancel();
}
