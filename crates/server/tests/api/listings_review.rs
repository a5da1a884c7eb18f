//! Admin review of listings: the queue, approve, reject with a reason, and
//! publishing again after a rejection.

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{TestApp, error_code, listing_body};

async fn submitted(app: &TestApp, token: &str, title: &str) -> String {
    let mut body = listing_body();
    body["title"] = json!(title);
    let (status, listing) = app
        .call_parts(Method::POST, "/v1/listings", Some(token), Some(&body))
        .await;
    assert_eq!(status, 201, "{listing}");
    let id = listing["id"].as_str().unwrap().to_owned();
    let (status, listing) = app
        .call_parts(
            Method::POST,
            &format!("/v1/listings/{id}/publish"),
            Some(token),
            None,
        )
        .await;
    assert_eq!(status, 200, "{listing}");
    assert_eq!(listing["status"], "pending_review");
    id
}

fn ids(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn admins_see_the_queue_and_approve() {
    let app = TestApp::spawn().await;
    let (_, owner) = app.user("newbie@example.com").await;
    let (admin_id, admin) = app.admin("reviewer@example.com").await;
    let mut queued = Vec::new();
    for n in 0..3 {
        queued.push(submitted(&app, &owner, &format!("Listing {n}")).await);
    }

    let (status, body) = app
        .call_parts(Method::GET, "/v1/admin/listings", Some(&owner), None)
        .await;
    assert_eq!((status, error_code(&body)), (403, "forbidden"));
    let (status, page) = app
        .call_parts(
            Method::GET,
            "/v1/admin/listings?status=pending_review&limit=2",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(ids(&page), queued[..2], "oldest first");
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, page) = app
        .call_parts(
            Method::GET,
            &format!("/v1/admin/listings?limit=2&cursor={cursor}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(ids(&page), queued[2..]);
    assert_eq!(page["has_more"], false);

    let id = &queued[0];
    let approve = format!("/v1/admin/listings/{id}/approve");
    let (status, body) = app
        .call_parts(Method::POST, &approve, Some(&owner), None)
        .await;
    assert_eq!((status, error_code(&body)), (403, "forbidden"));
    let (status, listing) = app
        .call_parts(Method::POST, &approve, Some(&admin), None)
        .await;
    assert_eq!(status, 200, "{listing}");
    assert_eq!(listing["status"], "active");
    assert!(listing["published_at"].is_string());
    let (status, body) = app
        .call_parts(Method::POST, &approve, Some(&admin), None)
        .await;
    assert_eq!((status, error_code(&body)), (409, "invalid_transition"));
    assert_eq!(body["error"]["details"][0]["status"], "active");
    let (status, _) = app
        .call_parts(
            Method::POST,
            &format!("/v1/admin/listings/{}/approve", uuid::Uuid::now_v7()),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 404);

    let (status, public) = app
        .call_parts(Method::GET, &format!("/v1/listings/{id}"), None, None)
        .await;
    assert_eq!((status, public["status"].as_str()), (200, Some("active")));
    let reviewer: Option<uuid::Uuid> =
        sqlx::query_scalar("SELECT reviewed_by FROM listings WHERE id = $1::uuid")
            .bind(id)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(reviewer.unwrap().to_string(), admin_id);
    let (event, payload): (String, Value) = sqlx::query_as(
        "SELECT type, payload FROM events WHERE aggregate_id = $1 ORDER BY position DESC LIMIT 1",
    )
    .bind(id)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(event, "listing.approved");
    assert_eq!(payload["reviewed_by"], admin_id.as_str());
    assert_eq!(payload["status"], "active");

    let (_, page) = app
        .call_parts(Method::GET, "/v1/admin/listings", Some(&admin), None)
        .await;
    assert_eq!(ids(&page), queued[1..]);
}

#[tokio::test]
async fn rejection_needs_a_reason_and_the_owner_can_try_again() {
    let app = TestApp::spawn().await;
    let (_, owner) = app.user("hopeful@example.com").await;
    let (_, admin) = app.admin("strict@example.com").await;
    let id = submitted(&app, &owner, "Blurry photos").await;
    let reject = format!("/v1/admin/listings/{id}/reject");

    for body in [json!({}), json!({"reason": "   "}), json!({"reason": 5})] {
        let (status, answer) = app
            .call_parts(Method::POST, &reject, Some(&admin), Some(&body))
            .await;
        assert_eq!(
            (status, error_code(&answer)),
            (400, "validation_failed"),
            "{body}"
        );
        assert_eq!(answer["error"]["details"][0]["field"], "reason");
    }
    let (status, listing) = app
        .call_parts(
            Method::POST,
            &reject,
            Some(&admin),
            Some(&json!({"reason": "Please upload sharper photos."})),
        )
        .await;
    assert_eq!(status, 200, "{listing}");
    assert_eq!(listing["status"], "rejected");
    assert_eq!(listing["rejection_reason"], "Please upload sharper photos.");
    let (status, body) = app
        .call_parts(
            Method::POST,
            &reject,
            Some(&admin),
            Some(&json!({"reason": "again"})),
        )
        .await;
    assert_eq!((status, error_code(&body)), (409, "invalid_transition"));
    assert_eq!(body["error"]["details"][0]["status"], "rejected");

    // Hidden from the public; the owner sees why, edits and publishes again.
    let path = format!("/v1/listings/{id}");
    let (status, _) = app.call_parts(Method::GET, &path, None, None).await;
    assert_eq!(status, 404);
    let (status, listing) = app
        .call_parts(
            Method::PATCH,
            &path,
            Some(&owner),
            Some(&json!({"title": "Sharp photos now"})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(listing["status"], "rejected");
    assert_eq!(listing["rejection_reason"], "Please upload sharper photos.");
    let (status, listing) = app
        .call_parts(Method::POST, &format!("{path}/publish"), Some(&owner), None)
        .await;
    assert_eq!(status, 200, "{listing}");
    assert_eq!(listing["status"], "pending_review");
    assert!(listing["rejection_reason"].is_null());

    let events: Vec<String> =
        sqlx::query_scalar("SELECT type FROM events WHERE aggregate_id = $1 ORDER BY position")
            .bind(&id)
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert_eq!(
        events,
        [
            "listing.created",
            "listing.submitted_for_review",
            "listing.rejected",
            "listing.updated",
            "listing.submitted_for_review"
        ]
    );
}
