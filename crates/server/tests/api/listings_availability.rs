//! Availability windows: replacing the owner's windows, blocks expanded per
//! unit, validation, conflicts with bookings (the exclusion constraint) and
//! who sees what.

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{TestApp, error_code};

async fn put(app: &TestApp, token: &str, id: &str, body: Value) -> (u16, Value) {
    app.call_parts(
        Method::PUT,
        &format!("/v1/listings/{id}/availability"),
        Some(token),
        Some(&body),
    )
    .await
}

async fn get(app: &TestApp, token: Option<&str>, id: &str, query: &str) -> (u16, Value) {
    app.call_parts(
        Method::GET,
        &format!("/v1/listings/{id}/availability{query}"),
        token,
        None,
    )
    .await
}

fn summary(page: &Value) -> Vec<(String, Option<i64>)> {
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                format!(
                    "{} {}..{}",
                    w["status"].as_str().unwrap(),
                    &w["start_time"].as_str().unwrap()[..13],
                    &w["end_time"].as_str().unwrap()[..13]
                ),
                w["unit"].as_i64(),
            )
        })
        .collect()
}

fn s(text: &str, unit: Option<i64>) -> (String, Option<i64>) {
    (text.to_owned(), unit)
}

#[tokio::test]
async fn owners_set_windows_and_blocks_cover_every_unit() {
    let app = TestApp::spawn().await;
    let (_, owner) = app.user("cal@example.com").await;
    let (_, stranger) = app.user("peek@example.com").await;
    let listing = app.active_listing(&owner, json!({"quantity": 3})).await;
    let id = listing["id"].as_str().unwrap();

    let (status, body) = put(
        &app,
        &owner,
        id,
        json!({"windows": [
            {"status": "available", "start_time": "2031-03-01T08:00:00Z", "end_time": "2031-03-01T18:00:00Z"},
            {"status": "blocked", "start_time": "2031-03-01T12:00:00Z", "end_time": "2031-03-01T13:00:00Z", "note": "lunch"},
            {"status": "blocked", "start_time": "2031-03-01T15:00:00+02:00", "end_time": "2031-03-01T16:00:00+02:00", "unit": 2},
        ]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "availability");
    assert_eq!(body["windows"].as_array().unwrap().len(), 5);

    let query = "?from=2031-03-01T00:00:00Z&to=2031-03-02T00:00:00Z";
    let (status, page) = get(&app, Some(&owner), id, query).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["object"], "list");
    assert_eq!(
        summary(&page),
        [
            s("available 2031-03-01T08..2031-03-01T18", None),
            s("blocked 2031-03-01T12..2031-03-01T13", Some(0)),
            s("blocked 2031-03-01T12..2031-03-01T13", Some(1)),
            s("blocked 2031-03-01T12..2031-03-01T13", Some(2)),
            s("blocked 2031-03-01T13..2031-03-01T14", Some(2)),
        ],
        "stored in UTC, one block per unit"
    );
    let window = &page["data"][1];
    assert_eq!(window["object"], "availability_window");
    assert_eq!(window["listing_id"], id);
    assert_eq!(window["note"], "lunch");
    // Others see the same times and statuses, without notes.
    let (status, public) = get(&app, Some(&stranger), id, query).await;
    assert_eq!(status, 200);
    assert_eq!(summary(&public), summary(&page));
    assert!(public["data"][1]["note"].is_null());
    let (_, public) = get(&app, None, id, &format!("{query}&limit=2")).await;
    assert_eq!(public["data"].as_array().unwrap().len(), 2);
    assert_eq!(public["has_more"], true);
    let cursor = public["next_cursor"].as_str().unwrap();
    let (_, rest) = get(&app, None, id, &format!("{query}&limit=50&cursor={cursor}")).await;
    assert_eq!(rest["data"].as_array().unwrap().len(), 3);

    // The default read range starts now: these windows are years ahead.
    let (_, soon) = get(&app, Some(&owner), id, "").await;
    assert_eq!(soon["data"], json!([]));

    // A second PUT replaces only the windows inside its range.
    let (status, body) = put(
        &app,
        &owner,
        id,
        json!({
            "from": "2031-03-01T11:00:00Z", "to": "2031-03-01T14:00:00Z",
            "windows": [{"status": "blocked", "start_time": "2031-03-01T11:00:00Z", "end_time": "2031-03-01T11:30:00Z", "unit": 1}]
        }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (_, page) = get(&app, Some(&owner), id, query).await;
    assert_eq!(
        summary(&page),
        [
            s("available 2031-03-01T08..2031-03-01T18", None),
            s("blocked 2031-03-01T11..2031-03-01T11", Some(1)),
        ]
    );

    // Without a range every future owner window is replaced.
    let (status, _) = put(&app, &owner, id, json!({"windows": []})).await;
    assert_eq!(status, 200);
    let (_, page) = get(&app, Some(&owner), id, query).await;
    assert_eq!(page["data"], json!([]));

    let events: Vec<String> = sqlx::query_scalar(
        "SELECT type FROM events WHERE aggregate_id = $1 AND type = 'availability.changed'",
    )
    .bind(id)
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(events.len(), 3);

    // Only the owner sets windows.
    let (status, _) = put(&app, &stranger, id, json!({"windows": []})).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn invalid_windows_are_400s_naming_the_window() {
    let app = TestApp::spawn().await;
    let (_, owner) = app.user("strictcal@example.com").await;
    let listing = app.active_listing(&owner, json!({"quantity": 2})).await;
    let id = listing["id"].as_str().unwrap();
    let w = |status: &str, start: &str, end: &str| json!({"status": status, "start_time": format!("2031-05-01T{start}:00Z"), "end_time": format!("2031-05-01T{end}:00Z")});
    let mut unit_out_of_range = w("blocked", "10:00", "11:00");
    unit_out_of_range["unit"] = json!(2);
    let mut unit_on_available = w("available", "10:00", "11:00");
    unit_on_available["unit"] = json!(0);
    let cases = [
        (json!({"windows": [unit_out_of_range]}), "windows[0].unit"),
        (json!({"windows": [unit_on_available]}), "windows[0].unit"),
        (
            json!({"windows": [w("blocked", "11:00", "10:00")]}),
            "windows[0].end_time",
        ),
        (
            json!({"windows": [w("available", "08:00", "12:00"), w("available", "11:00", "14:00")]}),
            "windows[1]",
        ),
        (
            json!({"windows": [w("booked", "08:00", "12:00")]}),
            "windows[0].status",
        ),
        (
            json!({"windows": [{"status": "blocked", "start_time": "tomorrow", "end_time": "2031-05-01T10:00:00Z"}]}),
            "windows[0].start_time",
        ),
        (
            json!({"windows": [w("blocked", "08:00", "12:00")], "from": "2031-05-01T09:00:00Z"}),
            "windows[0].start_time",
        ),
        (
            json!({"windows": [{"status": "blocked", "start_time": "2020-01-01T00:00:00Z", "end_time": "2020-01-02T00:00:00Z"}]}),
            "windows[0].start_time",
        ),
        (json!({}), "windows"),
    ];
    for (body, field) in cases {
        let (status, answer) = put(&app, &owner, id, body.clone()).await;
        assert_eq!(status, 400, "{body} → {answer}");
        assert_eq!(error_code(&answer), "validation_failed");
        assert_eq!(
            answer["error"]["details"][0]["field"], field,
            "{body} → {answer}"
        );
    }

    for query in [
        "?from=2031-05-02T00:00:00Z&to=2031-05-01T00:00:00Z",
        "?from=2031-01-01T00:00:00Z&to=2032-01-03T00:00:00Z",
        "?from=yesterday",
        "?limit=500",
    ] {
        let (status, answer) = get(&app, None, id, query).await;
        assert_eq!(
            (status, error_code(&answer)),
            (400, "validation_failed"),
            "{query}"
        );
    }
}

#[tokio::test]
async fn blocks_over_a_booking_are_refused_by_the_constraint() {
    let app = TestApp::spawn().await;
    let (_, owner) = app.user("booked@example.com").await;
    let listing = app.active_listing(&owner, json!({"quantity": 2})).await;
    let id = listing["id"].as_str().unwrap();
    let booking = uuid::Uuid::now_v7();
    sqlx::query(
        "INSERT INTO availability_windows (id, listing_id, unit, status, start_time, end_time, span, booking_id)
         VALUES ($1, $2::uuid, 1, 'booked', '2031-06-01T10:00:00Z', '2031-06-01T12:00:00Z',
                 tstzrange('2031-06-01T10:00:00Z', '2031-06-01T12:00:00Z'), $3)",
    )
    .bind(uuid::Uuid::now_v7())
    .bind(id)
    .bind(booking)
    .execute(&app.db)
    .await
    .unwrap();
    let (status, _) = put(
        &app,
        &owner,
        id,
        json!({"windows": [{"status": "blocked", "start_time": "2031-06-02T00:00:00Z", "end_time": "2031-06-03T00:00:00Z"}]}),
    )
    .await;
    assert_eq!(status, 200);

    // Blocking every unit (so also unit 1) over the booking: 409, and the
    // whole replacement is rolled back.
    let (status, body) = put(
        &app,
        &owner,
        id,
        json!({"windows": [{"status": "blocked", "start_time": "2031-06-01T11:00:00Z", "end_time": "2031-06-01T13:00:00Z"}]}),
    )
    .await;
    assert_eq!(
        (status, error_code(&body)),
        (409, "availability_conflict"),
        "{body}"
    );
    let query = "?from=2031-06-01T00:00:00Z&to=2031-06-04T00:00:00Z";
    let (_, page) = get(&app, Some(&owner), id, query).await;
    assert_eq!(
        summary(&page),
        [
            s("booked 2031-06-01T10..2031-06-01T12", Some(1)),
            s("blocked 2031-06-02T00..2031-06-03T00", Some(0)),
            s("blocked 2031-06-02T00..2031-06-03T00", Some(1)),
        ]
    );
    assert_eq!(page["data"][0]["booking_id"], booking.to_string());
    let (_, public) = get(&app, None, id, query).await;
    assert_eq!(public["data"][0]["status"], "booked");
    assert!(public["data"][0]["booking_id"].is_null(), "{public}");

    // The free unit can be blocked; the booking is never replaced.
    let (status, body) = put(
        &app,
        &owner,
        id,
        json!({"windows": [{"status": "blocked", "start_time": "2031-06-01T11:00:00Z", "end_time": "2031-06-01T13:00:00Z", "unit": 0}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (_, page) = get(&app, Some(&owner), id, query).await;
    assert_eq!(
        summary(&page),
        [
            s("booked 2031-06-01T10..2031-06-01T12", Some(1)),
            s("blocked 2031-06-01T11..2031-06-01T13", Some(0)),
        ]
    );

    // Lowering the quantity below a unit in use is refused.
    let (status, body) = app
        .call_parts(
            Method::PATCH,
            &format!("/v1/listings/{id}"),
            Some(&owner),
            Some(&json!({"quantity": 1})),
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (409, "quantity_in_use"),
        "{body}"
    );
}

#[tokio::test]
async fn drafts_calendars_are_private_and_archived_ones_frozen() {
    let app = TestApp::spawn().await;
    let (_, owner) = app.user("drafty@example.com").await;
    let (_, draft) = app
        .call_parts(
            Method::POST,
            "/v1/listings",
            Some(&owner),
            Some(&json!({"type": "item"})),
        )
        .await;
    let id = draft["id"].as_str().unwrap();
    let (status, _) = put(
        &app,
        &owner,
        id,
        json!({"windows": [{"status": "available", "start_time": "2031-01-01T09:00:00Z", "end_time": "2031-01-01T17:00:00Z"}]}),
    )
    .await;
    assert_eq!(status, 200, "drafts can prepare their calendar");
    let (status, _) = get(&app, None, id, "").await;
    assert_eq!(status, 404);
    let (status, _) = get(&app, Some(&owner), id, "").await;
    assert_eq!(status, 200);

    let (status, _) = app
        .call_parts(
            Method::DELETE,
            &format!("/v1/listings/{id}"),
            Some(&owner),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = put(&app, &owner, id, json!({"windows": []})).await;
    assert_eq!((status, error_code(&body)), (409, "invalid_transition"));
    assert_eq!(body["error"]["details"][0]["status"], "archived");
}
