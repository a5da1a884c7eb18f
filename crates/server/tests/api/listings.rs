//! Listings: drafts, fields and their rules, visibility, optimistic
//! concurrency (ETag / If-Match), publishing, pause/resume, archive, the
//! per-user list and the outbox events.

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{TestApp, error_code, listing_body, parts};

const CAMERAS: &str = "0190c000-0000-7000-8000-000000000101";
const PHOTOGRAPHY: &str = "0190c000-0000-7000-8000-000000000201";
const APARTMENTS: &str = "0190c000-0000-7000-8000-000000000301";

async fn create(app: &TestApp, token: &str, body: Value) -> (u16, Value) {
    app.call_parts(Method::POST, "/v1/listings", Some(token), Some(&body))
        .await
}

async fn post(app: &TestApp, token: &str, path: &str) -> (u16, Value) {
    app.call_parts(Method::POST, path, Some(token), None).await
}

fn fields(body: &Value) -> Vec<String> {
    body["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap().to_owned())
        .collect()
}

async fn events(app: &TestApp, listing_id: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT type FROM events WHERE aggregate_type = 'listing' AND aggregate_id = $1
          ORDER BY position",
    )
    .bind(listing_id)
    .fetch_all(&app.db)
    .await
    .unwrap()
}

async fn verify_identity(app: &TestApp, user_id: &str) {
    sqlx::query("UPDATE users SET identity_status = 'verified' WHERE id = $1::uuid")
        .bind(user_id)
        .execute(&app.db)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_minimal_draft_makes_its_creator_an_owner() {
    let app = TestApp::spawn().await;
    let (user_id, token) = app.user("olga@example.com").await;
    let (_, me) = app
        .call_parts(Method::GET, "/v1/users/me", Some(&token), None)
        .await;
    assert!(!me["roles"].as_array().unwrap().contains(&json!("owner")));

    let response = app
        .call(
            Method::POST,
            "/v1/listings",
            Some(&token),
            Some(&json!({"type": "item"})),
        )
        .await;
    let (status, headers, draft) = parts(response).await;
    assert_eq!(status, 201, "{draft}");
    assert_eq!(draft["object"], "listing");
    assert_eq!(draft["status"], "draft");
    assert_eq!(draft["owner_id"], user_id.as_str());
    assert_eq!(draft["type"], "item");
    assert_eq!(draft["version"], 1);
    assert_eq!(draft["quantity"], 1);
    assert_eq!(draft["time_zone"], "UTC");
    assert_eq!(draft["media"], json!([]));
    assert!(draft["title"].is_null() && draft["pricing"].is_null());
    assert_eq!(headers["etag"], "\"1\"");

    let (_, me) = app
        .call_parts(Method::GET, "/v1/users/me", Some(&token), None)
        .await;
    assert!(
        me["roles"].as_array().unwrap().contains(&json!("owner")),
        "{me}"
    );
    let id = draft["id"].as_str().unwrap();
    assert_eq!(events(&app, id).await, ["listing.created"]);
    let payload: Value = sqlx::query_scalar(
        "SELECT payload FROM events WHERE aggregate_id = $1 AND type = 'listing.created'",
    )
    .bind(id)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(payload["owner_id"], user_id.as_str());
    assert_eq!(payload["type"], "item");
    assert_eq!(payload["status"], "draft");

    // Without a type there is nothing to create; without a token, no one to own it.
    let (status, body) = create(&app, &token, json!({"title": "x"})).await;
    assert_eq!((status, error_code(&body)), (400, "validation_failed"));
    assert_eq!(fields(&body), ["type"]);
    let (status, _) = app
        .call_parts(
            Method::POST,
            "/v1/listings",
            None,
            Some(&json!({"type": "item"})),
        )
        .await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn complete_listings_of_each_type_round_trip() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user("multi@example.com").await;

    let (status, item) = create(&app, &token, listing_body()).await;
    assert_eq!(status, 201, "{item}");
    for key in [
        "title",
        "description",
        "category_id",
        "location",
        "time_zone",
        "pricing",
        "condition",
        "included_items",
        "delivery_options",
        "policies",
        "instant_book",
    ] {
        assert_eq!(item[key], listing_body()[key], "{key}");
    }

    let service = json!({
        "type": "service", "title": "Wedding photography",
        "description": "Full day coverage", "category_id": PHOTOGRAPHY,
        "location": {"lat": 45.76, "lng": 4.83}, "time_zone": "Europe/Paris",
        "pricing": {"hourly": 9000, "currency": "EUR"},
        "service_scope": "Ceremony and reception, 300 edited photos",
        "service_packages": [
            {"name": "Half day", "price": 60000, "description": "4 hours"},
            {"name": "Full day", "price": 110000}
        ],
        "booking_rules": {"min_notice_minutes": 2880, "max_advance_days": 365,
                          "min_duration_minutes": 60, "max_duration_minutes": 720},
        "policies": {"cancellation": "strict"}
    });
    let (status, body) = create(&app, &token, service.clone()).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["service_packages"][0]["name"], "Half day");
    assert_eq!(body["service_packages"][1]["description"], Value::Null);
    assert_eq!(body["booking_rules"]["max_advance_days"], 365);
    assert_eq!(body["policies"]["cancellation"], "strict");

    let property = json!({
        "type": "property", "title": "Sunny studio", "description": "Near the park",
        "category_id": APARTMENTS, "location": {"lat": 52.52, "lng": 13.405},
        "time_zone": "Europe/Berlin",
        "pricing": {"daily": 9000, "weekly": 55000, "deposit": 50000, "currency": "EUR"},
        "property": {"property_type": "apartment", "bedrooms": 1, "bathrooms": 1,
                     "area_sqm": 32, "amenities": ["wifi", "washer"]}
    });
    let (status, body) = create(&app, &token, property).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["property"]["amenities"], json!(["wifi", "washer"]));
    assert_eq!(body["location"], json!({"lat": 52.52, "lng": 13.405}));
}

#[tokio::test]
async fn invalid_fields_are_400s_naming_each_field() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user("bad@example.com").await;
    let cases = [
        (
            json!({"type": "service", "condition": "new", "included_items": ["a"], "property": {"property_type": "room"}}),
            vec!["condition", "included_items", "property"],
        ),
        (
            json!({"type": "item", "service_scope": "x", "service_packages": [{"name": "A", "price": 1}]}),
            vec!["service_scope", "service_packages"],
        ),
        (
            json!({"type": "item", "category_id": PHOTOGRAPHY}),
            vec!["category_id"],
        ),
        (
            json!({"type": "item", "category_id": "0190c000-0000-7000-8000-0000000009ff"}),
            vec!["category_id"],
        ),
        (
            json!({"type": "item", "location": {"lat": 95.0, "lng": 200.0}}),
            vec!["location.lat", "location.lng"],
        ),
        (
            json!({"type": "item", "time_zone": "Europe/Atlantis", "quantity": 0}),
            vec!["time_zone", "quantity"],
        ),
        (
            json!({"type": "item", "pricing": {"daily": -5, "deposit": -1, "currency": "EUR"}}),
            vec!["pricing.daily", "pricing.deposit"],
        ),
        (
            json!({"type": "service", "service_packages": [{"name": "Basic", "price": 10}, {"name": "basic", "price": -1}]}),
            vec!["service_packages[1].name", "service_packages[1].price"],
        ),
        (
            json!({"type": "item", "booking_rules": {"min_duration_minutes": 600, "max_duration_minutes": 60}}),
            vec!["booking_rules.min_duration_minutes"],
        ),
        (json!({"type": "item", "title": "   "}), vec!["title"]),
        (
            json!({"type": "item", "pricing": {"daily": 100, "currency": "euro"}}),
            vec!["pricing.currency"],
        ),
        (json!({"type": "boat"}), vec!["type"]),
        (
            json!({"type": "item", "media": [{"url": "https://x"}]}),
            vec!["media"],
        ),
        (json!({"type": "item", "quantity": "two"}), vec!["quantity"]),
    ];
    for (body, expected) in cases {
        let (status, answer) = create(&app, &token, body.clone()).await;
        assert_eq!(status, 400, "{body} → {answer}");
        assert_eq!(error_code(&answer), "validation_failed", "{answer}");
        assert_eq!(fields(&answer), expected, "{body} → {answer}");
    }
    let (_, answer) = create(
        &app,
        &token,
        json!({"type": "item", "category_id": PHOTOGRAPHY}),
    )
    .await;
    assert_eq!(answer["error"]["details"][0]["code"], "kind_mismatch");
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM listings")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(count, 0, "nothing invalid was stored");
}

#[tokio::test]
async fn drafts_are_visible_only_to_their_owner_and_admins() {
    let app = TestApp::spawn().await;
    let (_, owner) = app.user("owner@example.com").await;
    let (_, stranger) = app.user("stranger@example.com").await;
    let (_, admin) = app.admin("admin@example.com").await;
    let (_, draft) = create(&app, &owner, json!({"type": "item", "title": "Drill"})).await;
    let path = format!("/v1/listings/{}", draft["id"].as_str().unwrap());

    for token in [None, Some(stranger.as_str())] {
        let (status, body) = app.call_parts(Method::GET, &path, token, None).await;
        assert_eq!((status, error_code(&body)), (404, "not_found"));
    }
    for token in [&owner, &admin] {
        let response = app.call(Method::GET, &path, Some(token), None).await;
        let (status, headers, body) = parts(response).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["title"], "Drill");
        assert_eq!(headers["etag"], "\"1\"");
    }
    // Only the owner may change it; for anyone else it does not exist.
    for (method, suffix) in [
        (Method::PATCH, ""),
        (Method::DELETE, ""),
        (Method::POST, "/publish"),
        (Method::POST, "/pause"),
    ] {
        let body = (method == Method::PATCH).then(|| json!({"title": "Mine"}));
        let (status, _) = app
            .call_parts(
                method.clone(),
                &format!("{path}{suffix}"),
                Some(&stranger),
                body.as_ref(),
            )
            .await;
        assert_eq!(status, 404, "{method} {suffix}");
    }
    let (status, _) = app
        .call_parts(Method::GET, "/v1/listings/not-a-uuid", None, None)
        .await;
    assert_eq!(status, 404);

    // Active listings are public.
    let active = app.active_listing(&owner, json!({})).await;
    let (status, body) = app
        .call_parts(
            Method::GET,
            &format!("/v1/listings/{}", active["id"].as_str().unwrap()),
            None,
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "active");
}

#[tokio::test]
async fn patch_updates_clears_and_checks_if_match() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user("patcher@example.com").await;
    let (_, listing) = create(&app, &token, listing_body()).await;
    let path = format!("/v1/listings/{}", listing["id"].as_str().unwrap());

    let patch = |body: Value, if_match: Option<&'static str>| {
        let mut request = app
            .client
            .patch(app.url(&path))
            .bearer_auth(&token)
            .json(&body);
        if let Some(tag) = if_match {
            request = request.header("if-match", tag);
        }
        async move { parts(request.send().await.unwrap()).await }
    };

    let (status, headers, body) = patch(
        json!({"title": "Camera, updated", "included_items": null, "location": null, "quantity": 3}),
        Some("\"1\""),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["etag"], "\"2\"");
    assert_eq!(body["version"], 2);
    assert_eq!(body["title"], "Camera, updated");
    assert_eq!(body["included_items"], json!([]));
    assert!(body["location"].is_null());
    assert_eq!(body["quantity"], 3);
    assert_eq!(
        body["description"],
        listing_body()["description"],
        "absent fields are kept"
    );

    let (status, _, body) = patch(json!({"title": "Stale"}), Some("\"1\"")).await;
    assert_eq!((status, error_code(&body)), (412, "precondition_failed"));
    assert_eq!(body["error"]["details"][0]["current_etag"], "\"2\"");

    // Without If-Match the write still bumps the version atomically.
    let (status, headers, body) = patch(json!({"instant_book": false}), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["etag"], "\"3\"");
    let (status, headers, _) = patch(json!({"quantity": null}), Some("*")).await;
    assert_eq!(status, 200);
    assert_eq!(headers["etag"], "\"4\"");

    let (status, _, body) = patch(json!({"type": "service"}), None).await;
    assert_eq!((status, fields(&body)), (400, vec!["type".to_string()]));
    let (status, _, body) = patch(json!({"service_scope": "x"}), None).await;
    assert_eq!(
        (status, fields(&body)),
        (400, vec!["service_scope".to_string()])
    );
    let (status, _, body) = patch(json!({"category_id": APARTMENTS}), None).await;
    assert_eq!(
        (status, fields(&body)),
        (400, vec!["category_id".to_string()])
    );

    let id = listing["id"].as_str().unwrap();
    assert_eq!(
        events(&app, id).await,
        [
            "listing.created",
            "listing.updated",
            "listing.updated",
            "listing.updated"
        ]
    );
}

#[tokio::test]
async fn concurrent_patches_with_one_etag_let_exactly_one_win() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user("racer@example.com").await;
    let (_, listing) = create(&app, &token, listing_body()).await;
    let path = format!("/v1/listings/{}", listing["id"].as_str().unwrap());
    for round in 0..3 {
        let (_, current) = app.call_parts(Method::GET, &path, Some(&token), None).await;
        let tag = format!("\"{}\"", current["version"]);
        let requests = (0..2).map(|n| {
            app.client
                .patch(app.url(&path))
                .bearer_auth(&token)
                .header("if-match", &tag)
                .json(&json!({"title": format!("writer {n} round {round}")}))
                .send()
        });
        let statuses: Vec<u16> = futures::future::join_all(requests)
            .await
            .into_iter()
            .map(|r| r.unwrap().status().as_u16())
            .collect();
        let mut sorted = statuses.clone();
        sorted.sort();
        assert_eq!(sorted, [200, 412], "round {round}: {statuses:?}");
    }
    let (_, last) = app.call_parts(Method::GET, &path, Some(&token), None).await;
    assert_eq!(last["version"], 4);
}

#[tokio::test]
async fn publishing_checks_completeness_then_activates_or_queues_for_review() {
    let app = TestApp::spawn().await;
    let (user_id, token) = app.user("pub@example.com").await;

    let (_, draft) = create(&app, &token, json!({"type": "item", "title": "Tent"})).await;
    let publish = format!("/v1/listings/{}/publish", draft["id"].as_str().unwrap());
    let (status, body) = post(&app, &token, &publish).await;
    assert_eq!(
        (status, error_code(&body)),
        (400, "listing_incomplete"),
        "{body}"
    );
    assert_eq!(
        fields(&body),
        [
            "description",
            "category_id",
            "location",
            "pricing",
            "condition"
        ]
    );
    let (_, service) = create(
        &app,
        &token,
        json!({"type": "service", "pricing": {"currency": "EUR"}}),
    )
    .await;
    let (status, body) = post(
        &app,
        &token,
        &format!("/v1/listings/{}/publish", service["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        fields(&body),
        [
            "title",
            "description",
            "category_id",
            "location",
            "pricing.rates",
            "service_scope"
        ]
    );

    // An owner without a verified identity goes through review.
    let (_, listing) = create(&app, &token, listing_body()).await;
    let id = listing["id"].as_str().unwrap().to_owned();
    let (status, body) = post(&app, &token, &format!("/v1/listings/{id}/publish")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "pending_review");
    assert!(body["published_at"].is_null());
    let (status, body) = post(&app, &token, &format!("/v1/listings/{id}/publish")).await;
    assert_eq!((status, error_code(&body)), (409, "invalid_transition"));
    assert_eq!(body["error"]["details"][0]["status"], "pending_review");

    // A verified owner's item goes live at once…
    verify_identity(&app, &user_id).await;
    let (_, listing) = create(&app, &token, listing_body()).await;
    let id = listing["id"].as_str().unwrap().to_owned();
    let (status, body) = post(&app, &token, &format!("/v1/listings/{id}/publish")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "active");
    assert!(body["published_at"].is_string());
    assert_eq!(
        events(&app, &id).await,
        ["listing.created", "listing.published"]
    );
    // …but a property is always reviewed.
    let (_, property) = create(
        &app,
        &token,
        json!({
            "type": "property", "title": "Loft", "description": "Bright loft",
            "category_id": APARTMENTS, "location": {"lat": 41.39, "lng": 2.17},
            "pricing": {"daily": 12000, "currency": "EUR"},
            "property": {"property_type": "apartment"}
        }),
    )
    .await;
    let (status, body) = post(
        &app,
        &token,
        &format!("/v1/listings/{}/publish", property["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "pending_review");
    assert_eq!(
        events(&app, property["id"].as_str().unwrap()).await,
        ["listing.created", "listing.submitted_for_review"]
    );
}

#[tokio::test]
async fn pause_resume_archive_and_invalid_transitions() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user("cycle@example.com").await;
    let listing = app.active_listing(&token, json!({})).await;
    assert_eq!(listing["status"], "active");
    let id = listing["id"].as_str().unwrap().to_owned();
    let url = |suffix: &str| format!("/v1/listings/{id}{suffix}");

    let (status, body) = post(&app, &token, &url("/resume")).await;
    assert_eq!((status, error_code(&body)), (409, "invalid_transition"));
    assert_eq!(body["error"]["details"][0]["status"], "active");
    let (status, body) = post(&app, &token, &url("/pause")).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("paused")));
    let (status, body) = post(&app, &token, &url("/pause")).await;
    assert_eq!((status, error_code(&body)), (409, "invalid_transition"));
    assert_eq!(body["error"]["details"][0]["status"], "paused");
    let (status, body) = app.call_parts(Method::GET, &url(""), None, None).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("paused")));
    let (status, body) = post(&app, &token, &url("/resume")).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("active")));
    // Edits keep an active listing active.
    let (status, body) = app
        .call_parts(
            Method::PATCH,
            &url(""),
            Some(&token),
            Some(&json!({"title": "Still live"})),
        )
        .await;
    assert_eq!((status, body["status"].as_str()), (200, Some("active")));

    let (status, body) = app
        .call_parts(Method::DELETE, &url(""), Some(&token), None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "archived");
    assert!(body["archived_at"].is_string());
    let (status, body) = app.call_parts(Method::GET, &url(""), None, None).await;
    assert_eq!((status, error_code(&body)), (404, "not_found"));
    let (status, body) = app
        .call_parts(Method::GET, &url(""), Some(&token), None)
        .await;
    assert_eq!((status, body["status"].as_str()), (200, Some("archived")));

    for (method, suffix) in [
        (Method::DELETE, ""),
        (Method::PATCH, ""),
        (Method::POST, "/publish"),
        (Method::POST, "/resume"),
    ] {
        let body = (method == Method::PATCH).then(|| json!({"title": "Back"}));
        let (status, answer) = app
            .call_parts(method.clone(), &url(suffix), Some(&token), body.as_ref())
            .await;
        assert_eq!(
            (status, error_code(&answer)),
            (409, "invalid_transition"),
            "{method} {suffix}"
        );
        assert_eq!(answer["error"]["details"][0]["status"], "archived");
    }
    assert_eq!(
        events(&app, &id).await,
        [
            "listing.created",
            "listing.published",
            "listing.paused",
            "listing.resumed",
            "listing.updated",
            "listing.archived"
        ]
    );
}

#[tokio::test]
async fn a_users_listings_are_paginated_and_filtered_by_visibility() {
    let app = TestApp::spawn().await;
    let (owner_id, owner) = app.user("lister@example.com").await;
    let (_, stranger) = app.user("browser@example.com").await;
    let (_, admin) = app.admin("root@example.com").await;
    let mut active = Vec::new();
    for n in 0..3 {
        let listing = app
            .active_listing(&owner, json!({"title": format!("Active {n}")}))
            .await;
        active.push(listing["id"].as_str().unwrap().to_owned());
    }
    for n in 0..2 {
        create(
            &app,
            &owner,
            json!({"type": "item", "title": format!("Draft {n}")}),
        )
        .await;
    }
    let path = format!("/v1/users/{owner_id}/listings");

    // The public sees active listings only, newest first, two per page.
    let (status, page) = app
        .call_parts(
            Method::GET,
            &format!("{path}?limit=2"),
            Some(&stranger),
            None,
        )
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["object"], "list");
    assert_eq!(page["has_more"], true);
    let ids: Vec<&str> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [active[2].as_str(), active[1].as_str()]);
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, page) = app
        .call_parts(
            Method::GET,
            &format!("{path}?limit=2&cursor={cursor}"),
            None,
            None,
        )
        .await;
    assert_eq!(page["data"].as_array().unwrap().len(), 1);
    assert_eq!(page["data"][0]["id"], active[0].as_str());
    assert_eq!(page["has_more"], false);
    assert!(page["next_cursor"].is_null());
    let (_, page) = app
        .call_parts(Method::GET, &format!("{path}?status=draft"), None, None)
        .await;
    assert_eq!(page["data"], json!([]));

    // The owner and admins see every status and can filter.
    for token in [&owner, &admin] {
        let (_, page) = app.call_parts(Method::GET, &path, Some(token), None).await;
        assert_eq!(page["data"].as_array().unwrap().len(), 5);
        let (_, page) = app
            .call_parts(
                Method::GET,
                &format!("{path}?status=draft"),
                Some(token),
                None,
            )
            .await;
        assert_eq!(page["data"].as_array().unwrap().len(), 2);
        assert!(
            page["data"]
                .as_array()
                .unwrap()
                .iter()
                .all(|l| l["status"] == "draft")
        );
    }

    for query in ["?limit=51", "?limit=0", "?status=sold"] {
        let (status, body) = app
            .call_parts(Method::GET, &format!("{path}{query}"), None, None)
            .await;
        assert_eq!(
            (status, error_code(&body)),
            (400, "validation_failed"),
            "{query}"
        );
    }
    let (status, body) = app
        .call_parts(Method::GET, &format!("{path}?cursor=garbage"), None, None)
        .await;
    assert_eq!((status, error_code(&body)), (400, "invalid_cursor"));
}

#[tokio::test]
async fn creating_with_an_idempotency_key_creates_once() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user("retry@example.com").await;
    let send = |body: Value| {
        app.client
            .post(app.url("/v1/listings"))
            .bearer_auth(&token)
            .header("idempotency-key", "create-1")
            .json(&body)
            .send()
    };
    let (status, _, first) = parts(
        send(json!({"type": "item", "title": "Kayak"}))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 201);
    let (status, headers, again) = parts(
        send(json!({"type": "item", "title": "Kayak"}))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(headers["idempotent-replayed"], "true");
    assert_eq!(again["id"], first["id"]);
    let (status, _, body) = parts(
        send(json!({"type": "item", "title": "Canoe"}))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, error_code(&body)), (422, "idempotency_key_reused"));
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM listings")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(count, 1);

    // Transitions replay too: a retried publish answers the first result
    // instead of 409.
    let (_, listing) = app
        .call_parts(
            Method::POST,
            "/v1/listings",
            Some(&token),
            Some(&listing_body()),
        )
        .await;
    let publish = app.url(&format!(
        "/v1/listings/{}/publish",
        listing["id"].as_str().unwrap()
    ));
    let send = || {
        app.client
            .post(&publish)
            .bearer_auth(&token)
            .header("idempotency-key", "publish-1")
            .send()
    };
    let (status, headers, first) = parts(send().await.unwrap()).await;
    assert_eq!(status, 200, "{first}");
    assert!(headers.get("idempotent-replayed").is_none());
    let (status, headers, again) = parts(send().await.unwrap()).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(headers["idempotent-replayed"], "true");
    assert_eq!(again, first);
}

#[tokio::test]
async fn categories_are_served_as_a_tree() {
    let app = TestApp::spawn().await;
    let (status, body) = app
        .call_parts(Method::GET, "/v1/categories", None, None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "list");
    let roots = body["data"].as_array().unwrap();
    let slugs: Vec<&str> = roots.iter().map(|c| c["slug"].as_str().unwrap()).collect();
    assert_eq!(slugs, ["items", "services", "properties"]);
    let items = &roots[0];
    assert_eq!(items["object"], "category");
    assert_eq!(items["kind"], "item");
    assert!(items["parent_id"].is_null());
    let cameras = &items["children"][0];
    assert_eq!(cameras["id"], CAMERAS);
    assert_eq!(cameras["parent_id"], items["id"]);
    let lenses: Vec<&str> = cameras["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["slug"].as_str().unwrap())
        .collect();
    assert_eq!(lenses, ["lenses", "drones"]);
    assert_eq!(roots[2]["children"].as_array().unwrap().len(), 3);
}
