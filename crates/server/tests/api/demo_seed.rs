//! `rentify seed --demo`: the demo marketplace `make run` serves.

use rentify::seed;
use rentify_platform::config::Config;

use crate::support::{TestApp, parts};

#[tokio::test]
async fn the_demo_seed_is_idempotent_and_its_listings_can_be_booked() {
    let app = TestApp::spawn().await;
    let config = Config::from_vars([("DATABASE_URL".to_string(), app.database.url.clone())])
        .expect("a valid configuration");
    seed::demo(config.clone(), &app.db)
        .await
        .expect("first seed");
    seed::demo(config, &app.db)
        .await
        .expect("second seed changes nothing");

    let owner: uuid::Uuid =
        sqlx::query_scalar("SELECT id FROM users WHERE email = 'olivia@rentify.test'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    let (status, _, page) = parts(app.get(&format!("/v1/users/{owner}/listings")).await).await;
    assert_eq!(status, 200, "{page}");
    let listings = page["data"].as_array().unwrap();
    assert_eq!(listings.len(), 4, "{page}");
    assert!(listings.iter().all(|l| l["status"] == "active"));
    let bikes = listings
        .iter()
        .find(|l| l["quantity"] == 5)
        .expect("the e-bike fleet");

    // The demo renter books one e-bike for an afternoon.
    let login = serde_json::json!({"email": "ravi@rentify.test", "password": seed::DEMO_PASSWORD});
    let (_, _, session) = parts(app.post_json("/v1/auth/login", &login, &[]).await).await;
    let token = session["access_token"]
        .as_str()
        .expect("a session")
        .to_string();
    let booking = serde_json::json!({
        "listing_id": bikes["id"],
        "start_time": "2030-05-04T12:00:00Z",
        "end_time": "2030-05-04T16:00:00Z",
        "delivery_method": "pickup",
    });
    let (status, _, booked) = parts(
        app.post_json(
            "/v1/bookings",
            &booking,
            &[
                ("Authorization", &format!("Bearer {token}")),
                ("Idempotency-Key", "demo-1"),
            ],
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{booked}");
    assert_eq!(booked["status"], "approved", "the fleet is instant-book");
    assert_eq!(booked["subtotal"], 3_200, "4 hours at 8.00 EUR");
}
