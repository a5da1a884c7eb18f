//! Notifications over HTTP: preferences, the caller's list and read marks,
//! the dispatcher's reactions to bookings, email through a real SMTP server
//! (aiosmtpd, started by the test: `AIOSMTPD_PYTHON`, default `python3`),
//! retries while it is down, quiet hours, the live SSE stream (PostgreSQL
//! and Redis fan-outs), the delayed review prompt, and redeliveries that
//! make nothing twice.

use std::{pin::Pin, process::Stdio, time::Duration};

use futures::{Stream, StreamExt};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use uuid::Uuid;

use crate::{
    bookings::{act, body, book, booked, day, parties},
    support::{TestApp, error_code},
};

// ---------------------------------------------------------------- helpers

/// Polls `probe` every 50 ms until it returns `Some`, for up to `secs`.
async fn eventually<T, F, Fut>(what: &str, secs: u64, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `GET /v1/notifications<query>` as `token`'s user.
async fn list(app: &TestApp, token: &str, query: &str) -> Value {
    let (status, body) = app
        .call_parts(
            Method::GET,
            &format!("/v1/notifications{query}"),
            Some(token),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "list");
    body
}

/// Every notification of `token`'s user, newest first.
async fn all(app: &TestApp, token: &str) -> Vec<Value> {
    list(app, token, "?limit=50").await["data"]
        .as_array()
        .unwrap()
        .clone()
}

/// Waits for `token`'s user's notification of `kind` about `booking` (any
/// when `None`) matching `ready`.
async fn wait_for(
    app: &TestApp,
    token: &str,
    kind: &str,
    booking: Option<&Value>,
    ready: impl Fn(&Value) -> bool,
) -> Value {
    eventually(&format!("a {kind} notification"), 20, || async {
        all(app, token).await.into_iter().find(|n| {
            n["type"] == kind
                && booking.is_none_or(|b| n["data"]["booking_id"] == b["id"])
                && ready(n)
        })
    })
    .await
}

fn kinds(notifications: &[Value], booking: &Value) -> Vec<String> {
    let mut kinds: Vec<String> = notifications
        .iter()
        .filter(|n| n["data"]["booking_id"] == booking["id"])
        .map(|n| n["type"].as_str().unwrap().to_owned())
        .collect();
    kinds.sort();
    kinds
}

/// The email delivery of a notification.
fn email_of(notification: &Value) -> Value {
    notification["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["channel"] == "email")
        .cloned()
        .unwrap_or_else(|| panic!("no email delivery in {notification}"))
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&app.db).await.unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A real SMTP server (aiosmtpd, `notifications_smtp.py`), stopped when dropped.
struct SmtpServer {
    _child: tokio::process::Child,
    messages: tokio::sync::mpsc::UnboundedReceiver<Value>,
    /// Received but not asked for yet (messages to others arrive in any order).
    pending: Vec<Value>,
}

impl SmtpServer {
    async fn start(port: u16) -> Self {
        let python = std::env::var("AIOSMTPD_PYTHON").unwrap_or_else(|_| "python3".into());
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/api/notifications_smtp.py"
        );
        let mut child = tokio::process::Command::new(&python)
            .arg(script)
            .arg(port.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {python} ({e}); scripts/test.sh installs aiosmtpd (AIOSMTPD_PYTHON)"
                )
            });
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("the SMTP server starts")
            .unwrap();
        assert_eq!(
            ready.as_deref(),
            Some("READY"),
            "the SMTP server did not start (is aiosmtpd installed for {python}?)"
        );
        let (tx, messages) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(message) = serde_json::from_str::<Value>(&line) {
                    let _ = tx.send(message);
                }
            }
        });
        Self {
            _child: child,
            messages,
            pending: Vec::new(),
        }
    }

    /// The first message to `to` not taken yet, waiting up to `secs` for it.
    async fn message_to(&mut self, to: &str, secs: u64) -> Value {
        let is_for = |message: &Value| {
            message["rcpt_tos"]
                .as_array()
                .is_some_and(|r| r.iter().any(|r| r == to))
        };
        if let Some(at) = self.pending.iter().position(is_for) {
            return self.pending.remove(at);
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let message = tokio::time::timeout_at(deadline, self.messages.recv())
                .await
                .unwrap_or_else(|_| panic!("no email to {to} within {secs} s"))
                .expect("the SMTP server is running");
            if is_for(&message) {
                return message;
            }
            self.pending.push(message);
        }
    }

    /// Every message received and not taken yet.
    fn received(&mut self) -> Vec<Value> {
        let mut out = std::mem::take(&mut self.pending);
        while let Ok(message) = self.messages.try_recv() {
            out.push(message);
        }
        out
    }
}

fn part<'a>(message: &'a Value, content_type: &str) -> &'a str {
    message["parts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["content_type"] == content_type)
        .and_then(|p| p["content"].as_str())
        .unwrap_or_else(|| panic!("no {content_type} part in {message}"))
}

/// A Server-Sent Events stream.
struct EventStream {
    bytes: Pin<Box<dyn Stream<Item = reqwest::Result<Vec<u8>>> + Send>>,
    buffer: String,
}

impl EventStream {
    async fn open(app: &TestApp, token: &str, last_event_id: Option<&str>) -> Self {
        let mut request = app
            .client
            .get(app.url("/v1/notifications/stream"))
            .bearer_auth(token)
            .header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), 200);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        Self {
            bytes: Box::pin(
                response
                    .bytes_stream()
                    .map(|chunk| chunk.map(|b| b.to_vec())),
            ),
            buffer: String::new(),
        }
    }

    /// The next event with data: (event name, id, data).
    async fn next(&mut self, secs: u64) -> (String, String, Value) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let frame: String = self.buffer.drain(..end + 2).collect();
                let (mut name, mut id, mut data) =
                    (String::from("message"), String::new(), String::new());
                for line in frame.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        name = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("id:") {
                        id = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                return (name, id, serde_json::from_str(&data).unwrap());
            }
            let chunk = tokio::time::timeout_at(deadline, self.bytes.next())
                .await
                .unwrap_or_else(|_| panic!("no event within {secs} s"))
                .expect("the stream is open")
                .unwrap();
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

// ---------------------------------------------------------------- preferences

#[tokio::test]
async fn notifications_preferences_default_update_and_validation() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user("prefs@example.com").await;
    let path = "/v1/notifications/preferences";

    let (status, body) = app.call_parts(Method::GET, path, None, None).await;
    assert_eq!((status, error_code(&body)), (401, "unauthenticated"));

    let (status, defaults) = app.call_parts(Method::GET, path, Some(&token), None).await;
    assert_eq!(status, 200, "{defaults}");
    let on = json!({"bookings": true, "payments": true, "reviews": true, "account": true});
    let off = json!({"bookings": false, "payments": false, "reviews": false, "account": false});
    assert_eq!(
        defaults,
        json!({
            "object": "notification_preferences",
            "channels": {"email": on, "sms": off, "push": off},
            "quiet_hours": null,
            "locale": "en"
        })
    );

    // Only what is sent changes.
    let (status, changed) = app
        .call_parts(
            Method::PUT,
            path,
            Some(&token),
            Some(&json!({
                "channels": {"sms": {"bookings": true}, "email": {"reviews": false}},
                "quiet_hours": {"start": "22:00", "end": "07:00", "timezone": "Europe/Paris"},
                "locale": "fr"
            })),
        )
        .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["channels"]["sms"]["bookings"], true);
    assert_eq!(changed["channels"]["sms"]["payments"], false);
    assert_eq!(changed["channels"]["email"]["reviews"], false);
    assert_eq!(changed["channels"]["email"]["bookings"], true);
    assert_eq!(
        changed["quiet_hours"],
        json!({"start": "22:00", "end": "07:00", "timezone": "Europe/Paris"})
    );
    assert_eq!(changed["locale"], "fr");
    let (_, read) = app.call_parts(Method::GET, path, Some(&token), None).await;
    assert_eq!(read, changed);
    // What GET returned can be sent back as is.
    let (status, same) = app
        .call_parts(Method::PUT, path, Some(&token), Some(&read))
        .await;
    assert_eq!((status, &same), (200, &changed));

    // Each invalid field is named.
    for (input, field, code) in [
        (
            json!({"channels": {"in_app": {"bookings": false}}}),
            "channels.in_app.bookings",
            "not_allowed",
        ),
        (
            json!({"channels": {"fax": {"bookings": true}}}),
            "channels.fax",
            "unknown_field",
        ),
        (
            json!({"channels": {"email": {"parties": true}}}),
            "channels.email.parties",
            "unknown_field",
        ),
        (
            json!({"channels": {"email": {"bookings": "yes"}}}),
            "channels.email.bookings",
            "invalid_type",
        ),
        (
            json!({"quiet_hours": {"start": "25:00", "end": "07:00", "timezone": "UTC"}}),
            "quiet_hours.start",
            "invalid_format",
        ),
        (
            json!({"quiet_hours": {"start": "22:00", "end": "22:00", "timezone": "UTC"}}),
            "quiet_hours.end",
            "invalid_range",
        ),
        (
            json!({"quiet_hours": {"start": "22:00", "end": "07:00", "timezone": "Mars/Olympus"}}),
            "quiet_hours.timezone",
            "invalid_choice",
        ),
        (
            json!({"quiet_hours": {"start": "22:00", "end": "07:00"}}),
            "quiet_hours.timezone",
            "required",
        ),
        (json!({"locale": "de"}), "locale", "invalid_choice"),
    ] {
        let (status, error) = app
            .call_parts(Method::PUT, path, Some(&token), Some(&input))
            .await;
        assert_eq!(
            (status, error_code(&error)),
            (400, "validation_failed"),
            "{input}: {error}"
        );
        assert_eq!(
            error["error"]["details"][0]["field"], field,
            "{input}: {error}"
        );
        assert_eq!(
            error["error"]["details"][0]["code"], code,
            "{input}: {error}"
        );
    }
    // Nothing changed by the refused updates; `null` turns quiet hours off.
    let (_, read) = app.call_parts(Method::GET, path, Some(&token), None).await;
    assert_eq!(read, changed);
    let (status, quiet_off) = app
        .call_parts(
            Method::PUT,
            path,
            Some(&token),
            Some(&json!({"quiet_hours": null})),
        )
        .await;
    assert_eq!(status, 200, "{quiet_off}");
    assert_eq!(quiet_off["quiet_hours"], Value::Null);
    assert_eq!(quiet_off["locale"], "fr");
}

// ---------------------------------------------------------------- list and read

#[tokio::test]
async fn notifications_list_read_unread_cursor_and_privacy() {
    let app = TestApp::spawn().await;
    let (ada_id, ada) = app.user("ada@example.com").await;
    let (_, bob) = app.user("bob@example.com").await;
    // The welcome notification, then three more, older and newer.
    let welcome = wait_for(&app, &ada, "user.registered", None, |_| true).await;
    assert_eq!(welcome["object"], "notification");
    assert_eq!(welcome["category"], "account");
    assert_eq!(welcome["title"], "Welcome to Rentify");
    assert_eq!(welcome["critical"], false);
    assert_eq!(welcome["read_at"], Value::Null);
    for (minutes, title) in [(-30, "older"), (1, "newer"), (2, "newest")] {
        sqlx::query(
            "INSERT INTO notifications (id, user_id, type, category, title, body, event_id, created_at)
             VALUES ($1, $2::uuid, 'test', 'bookings', $3, 'body', $4, now() + make_interval(mins => $5))",
        )
        .bind(Uuid::now_v7())
        .bind(&ada_id)
        .bind(title)
        .bind(Uuid::now_v7())
        .bind(minutes)
        .execute(&app.db)
        .await
        .unwrap();
    }

    let first = list(&app, &ada, "?limit=2").await;
    let titles = |page: &Value| -> Vec<String> {
        page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["title"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(titles(&first), ["newest", "newer"]);
    assert_eq!(first["has_more"], true);
    let cursor = first["next_cursor"].as_str().unwrap();
    let second = list(&app, &ada, &format!("?limit=2&cursor={cursor}")).await;
    assert_eq!(titles(&second), ["Welcome to Rentify", "older"]);
    assert_eq!(second["has_more"], false);
    assert_eq!(second["next_cursor"], Value::Null);

    // Read marks: once, idempotent, and the unread filter.
    let id = welcome["id"].as_str().unwrap();
    let read_path = format!("/v1/notifications/{id}/read");
    let (status, read) = app
        .call_parts(Method::PATCH, &read_path, Some(&ada), None)
        .await;
    assert_eq!(status, 200, "{read}");
    assert_eq!(read["id"], welcome["id"]);
    assert!(read["read_at"].is_string());
    let (_, again) = app
        .call_parts(Method::PATCH, &read_path, Some(&ada), None)
        .await;
    assert_eq!(again["read_at"], read["read_at"]);
    let unread = list(&app, &ada, "?unread=true").await;
    assert_eq!(titles(&unread), ["newest", "newer", "older"]);

    // Someone else's is not found, and not listed.
    let (status, error) = app
        .call_parts(Method::PATCH, &read_path, Some(&bob), None)
        .await;
    assert_eq!((status, error_code(&error)), (404, "not_found"));
    let (status, _) = app
        .call_parts(
            Method::PATCH,
            "/v1/notifications/not-an-id/read",
            Some(&bob),
            None,
        )
        .await;
    assert_eq!(status, 404);
    let bobs = all(&app, &bob).await;
    assert!(
        bobs.iter().all(|n| n["type"] == "user.registered"),
        "{bobs:?}"
    );

    // Bad input.
    let (status, error) = app
        .call_parts(Method::GET, "/v1/notifications?limit=0", Some(&ada), None)
        .await;
    assert_eq!(status, 400);
    assert_eq!(error["error"]["details"][0]["field"], "limit");
    let (status, error) = app
        .call_parts(
            Method::GET,
            "/v1/notifications?cursor=garbage",
            Some(&ada),
            None,
        )
        .await;
    assert_eq!((status, error_code(&error)), (400, "invalid_cursor"));
    let (status, _) = app
        .call_parts(Method::GET, "/v1/notifications", None, None)
        .await;
    assert_eq!(status, 401);

    // An erased account keeps nothing here.
    let response = app
        .call(Method::DELETE, "/v1/users/me", Some(&ada), None)
        .await;
    assert_eq!(response.status().as_u16(), 204);
    eventually("the erased account's notifications to go", 20, || async {
        let left = count(
            &app,
            &format!("SELECT count(*) FROM notifications WHERE user_id = '{ada_id}'"),
        )
        .await;
        (left == 0).then_some(())
    })
    .await;
}

// ---------------------------------------------------------------- reactions

#[tokio::test]
async fn notifications_booking_transitions_notify_the_right_people() {
    let app = TestApp::spawn().await;
    let p = parties(&app).await;
    let listing = app
        .active_listing(&p.owner, json!({"instant_book": false}))
        .await;

    // Requested → the owner.
    let b = booked(&app, &p.renter, &body(&listing, day(10, 10), day(12, 10))).await;
    let requested = wait_for(&app, &p.owner, "booking.requested", Some(&b), |_| true).await;
    assert_eq!(requested["category"], "bookings");
    assert_eq!(requested["critical"], false);
    assert_eq!(requested["data"]["listing_id"], listing["id"]);
    assert_eq!(requested["data"]["role"], "owner");
    assert!(
        requested["title"]
            .as_str()
            .unwrap()
            .contains("Mirrorless camera kit"),
        "{requested}"
    );
    // The email went through the development transport.
    let requested = wait_for(&app, &p.owner, "booking.requested", Some(&b), |n| {
        email_of(n)["status"] == "delivered"
    })
    .await;
    assert_eq!(
        email_of(&requested),
        json!({"channel": "email", "status": "delivered", "attempts": 1})
    );
    let recorded = count(
        &app,
        "SELECT count(*) FROM notification_dev_messages
          WHERE channel = 'email' AND recipient = 'owner@example.com'
            AND subject LIKE 'New booking request%' AND body_html LIKE '%<html%'",
    )
    .await;
    assert_eq!(recorded, 1);

    // Approved by the owner → the renter only.
    assert_eq!(act(&app, &p.owner, &b, "approve", None).await.0, 200);
    let approved = wait_for(&app, &p.renter, "booking.approved", Some(&b), |_| true).await;
    assert_eq!(approved["data"]["role"], "renter");

    // Cancelled → both, critical.
    let (status, cancelled) = act(&app, &p.renter, &b, "cancel", None).await;
    assert_eq!(status, 200, "{cancelled}");
    for token in [&p.renter, &p.owner] {
        let n = wait_for(&app, token, "booking.cancelled", Some(&b), |_| true).await;
        assert_eq!(n["critical"], true);
        assert_eq!(n["category"], "bookings");
    }
    let renter_cancel = wait_for(&app, &p.renter, "booking.cancelled", Some(&b), |_| true).await;
    assert!(
        renter_cancel["body"]
            .as_str()
            .unwrap()
            .starts_with("You cancelled"),
        "{renter_cancel}"
    );
    let owner_cancel = wait_for(&app, &p.owner, "booking.cancelled", Some(&b), |_| true).await;
    assert!(
        owner_cancel["body"]
            .as_str()
            .unwrap()
            .starts_with("The renter cancelled"),
        "{owner_cancel}"
    );
    assert_eq!(
        kinds(&all(&app, &p.owner).await, &b),
        ["booking.cancelled", "booking.requested"]
    );
    assert_eq!(
        kinds(&all(&app, &p.renter).await, &b),
        ["booking.approved", "booking.cancelled"]
    );

    // Declined → the renter.
    let d = booked(&app, &p.renter, &body(&listing, day(14, 10), day(15, 10))).await;
    let (status, _) = act(
        &app,
        &p.owner,
        &d,
        "decline",
        Some(json!({"reason": "under repair"})),
    )
    .await;
    assert_eq!(status, 200);
    let declined = wait_for(&app, &p.renter, "booking.declined", Some(&d), |_| true).await;
    assert_eq!(declined["title"], "Your booking request was declined");

    // A declined card: a critical payments notification to the renter.
    let (_, unlucky) = app.user("unlucky@example.com").await;
    app.add_card(&unlucky, "tok_chargeDeclined").await;
    let (status, _, error) = book(
        &app,
        &unlucky,
        Some("declined"),
        &body(&listing, day(20, 10), day(21, 10)),
    )
    .await;
    assert_eq!(status, 402, "{error}");
    let failed = wait_for(&app, &unlucky, "booking.payment_failed", None, |_| true).await;
    assert_eq!(failed["critical"], true);
    assert_eq!(failed["category"], "payments");
    assert!(
        failed["title"]
            .as_str()
            .unwrap()
            .starts_with("Payment failed"),
        "{failed}"
    );
}

#[tokio::test]
async fn notifications_review_prompt_arrives_after_the_delay() {
    let app = TestApp::builder()
        .env("NOTIFICATIONS_REVIEW_PROMPT_DELAY_SECS", "1")
        .spawn()
        .await;
    let p = parties(&app).await;
    let listing = app.active_listing(&p.owner, json!({})).await;
    // Instant: approved → the renter and the owner (who did not approve it).
    let b = booked(&app, &p.renter, &body(&listing, day(10, 10), day(12, 10))).await;
    let owner_new = wait_for(&app, &p.owner, "booking.approved", Some(&b), |_| true).await;
    assert!(
        owner_new["title"]
            .as_str()
            .unwrap()
            .starts_with("New booking"),
        "{owner_new}"
    );
    assert_eq!(act(&app, &p.owner, &b, "start", None).await.0, 200);
    // The owner started it: only the renter is told.
    let started = wait_for(&app, &p.renter, "booking.started", Some(&b), |_| true).await;
    assert_eq!(started["data"]["role"], "renter");
    assert_eq!(act(&app, &p.owner, &b, "complete", None).await.0, 200);
    for (token, role, other) in [
        (&p.renter, "renter", &p.owner_id),
        (&p.owner, "owner", &p.renter_id),
    ] {
        let completed = wait_for(&app, token, "booking.completed", Some(&b), |_| true).await;
        let prompt = wait_for(&app, token, "review_prompt", Some(&b), |_| true).await;
        assert_eq!(prompt["category"], "reviews");
        assert_eq!(prompt["data"]["role"], role);
        assert_eq!(prompt["data"]["reviewee_id"], other.as_str());
        let at = |n: &Value| {
            n["created_at"]
                .as_str()
                .unwrap()
                .parse::<chrono::DateTime<chrono::Utc>>()
                .unwrap()
        };
        let waited = at(&prompt) - at(&completed);
        assert!(
            waited >= chrono::Duration::milliseconds(900),
            "the prompt came {waited} after the completion"
        );
    }
    assert!(
        !all(&app, &p.owner)
            .await
            .iter()
            .any(|n| n["type"] == "booking.started"),
        "the owner started it"
    );
}

#[tokio::test]
async fn notifications_a_redelivered_event_creates_nothing_twice() {
    let app = TestApp::spawn().await;
    let p = parties(&app).await;
    let listing = app.active_listing(&p.owner, json!({})).await;
    let b = booked(&app, &p.renter, &body(&listing, day(10, 10), day(12, 10))).await;
    assert_eq!(act(&app, &p.owner, &b, "start", None).await.0, 200);
    assert_eq!(act(&app, &p.owner, &b, "complete", None).await.0, 200);
    let booking_id = b["id"].as_str().unwrap();
    let event: rentify_events::Event = sqlx::query_as(
        "SELECT id, position, type, aggregate_type, aggregate_id, payload, occurred_at
           FROM events WHERE type = 'booking.completed' AND aggregate_id = $1",
    )
    .bind(booking_id)
    .fetch_one(&app.db)
    .await
    .unwrap();
    for token in [&p.renter, &p.owner] {
        wait_for(&app, token, "booking.completed", Some(&b), |n| {
            n["deliveries"]
                .as_array()
                .unwrap()
                .iter()
                .all(|d| d["status"] != "queued")
        })
        .await;
    }
    let snapshot = || async {
        (
            count(&app, "SELECT count(*) FROM notifications").await,
            count(&app, "SELECT count(*) FROM notification_deliveries").await,
            count(
                &app,
                "SELECT count(*) FROM underway.task WHERE task_queue_name LIKE 'notifications.%'",
            )
            .await,
        )
    };
    let before = snapshot().await;
    let review_prompts = count(
        &app,
        "SELECT count(*) FROM underway.task WHERE task_queue_name = 'notifications.review_prompt'",
    )
    .await;
    assert_eq!(review_prompts, 1);

    // The same event again, its processed-event key forgotten: the handler
    // runs and finds everything made.
    let consumer = app
        .modules
        .notifications
        .consumers()
        .into_iter()
        .find(|c| c.name == "notifications")
        .unwrap();
    assert!(consumer.handles("booking.completed") && consumer.handles("user.registered"));
    let config = rentify_platform::config::Config::from_vars([(
        "DATABASE_URL".to_string(),
        app.database.url.clone(),
    )])
    .unwrap();
    let settings = rentify_events::Settings::from_config(&config);
    let deleted = sqlx::query(
        "DELETE FROM processed_events WHERE consumer = 'notifications' AND event_id = $1",
    )
    .bind(event.id)
    .execute(&app.db)
    .await
    .unwrap()
    .rows_affected();
    assert_eq!(deleted, 1, "the consumer handled the event");
    let outcome = rentify_events::deliver::deliver(&app.db, &consumer, &event, 0, &settings)
        .await
        .unwrap();
    assert_eq!(outcome, rentify_events::deliver::Outcome::Handled);
    assert_eq!(snapshot().await, before);
    // And with its key: not even run.
    let outcome = rentify_events::deliver::deliver(&app.db, &consumer, &event, 0, &settings)
        .await
        .unwrap();
    assert_eq!(outcome, rentify_events::deliver::Outcome::Duplicate);
    assert_eq!(snapshot().await, before);
}

// ---------------------------------------------------------------- email

#[tokio::test]
async fn notifications_email_is_sent_over_smtp_as_text_and_html() {
    let port = free_port();
    let mut smtp = SmtpServer::start(port).await;
    let app = TestApp::builder()
        .env("SMTP_URL", format!("smtp://127.0.0.1:{port}"))
        .spawn()
        .await;
    let (_, renter) = app.renter("renter@example.com").await;
    let (_, owner) = app.user("owner@example.com").await;

    let welcome = smtp.message_to("renter@example.com", 20).await;
    assert_eq!(welcome["subject"], "Welcome to Rentify");
    assert_eq!(welcome["from"], "Rentify <no-reply@rentify.local>");
    assert_eq!(welcome["mail_from"], "no-reply@rentify.local");
    assert_eq!(welcome["content_type"], "multipart/alternative");
    assert!(part(&welcome, "text/plain").contains("Your account is ready."));
    let html = part(&welcome, "text/html");
    assert!(
        html.contains("<html lang=\"en\">") && html.contains("<h1"),
        "{html}"
    );
    let sent = wait_for(&app, &renter, "user.registered", None, |n| {
        email_of(n)["status"] == "sent"
    })
    .await;
    assert_eq!(email_of(&sent)["attempts"], 1);
    let (delivery_id, provider_id): (Uuid, String) = sqlx::query_as(
        "SELECT d.id, d.provider_message_id FROM notification_deliveries d
          WHERE d.notification_id = $1::uuid AND d.channel = 'email'",
    )
    .bind(sent["id"].as_str().unwrap())
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(provider_id, format!("<{delivery_id}@rentify.local>"));
    assert_eq!(welcome["message_id"], provider_id);

    // In the recipient's language: the renter reads French.
    let (status, _) = app
        .call_parts(
            Method::PUT,
            "/v1/notifications/preferences",
            Some(&renter),
            Some(&json!({"locale": "fr"})),
        )
        .await;
    assert_eq!(status, 200);
    let listing = app.active_listing(&owner, json!({})).await;
    booked(&app, &renter, &body(&listing, day(10, 10), day(12, 10))).await;
    let french = smtp.message_to("renter@example.com", 20).await;
    assert_eq!(
        french["subject"],
        "Votre réservation est confirmée : Mirrorless camera kit"
    );
    assert!(part(&french, "text/plain").contains("Bonjour,"));
    assert!(part(&french, "text/html").contains("<html lang=\"fr\">"));
    assert!(part(&french, "text/html").contains("(Europe&#x2f;Paris)"));
    let owner_welcome = smtp.message_to("owner@example.com", 20).await;
    assert_eq!(owner_welcome["subject"], "Welcome to Rentify");
    let english = smtp.message_to("owner@example.com", 20).await;
    assert_eq!(english["subject"], "New booking: Mirrorless camera kit");
}

#[tokio::test]
async fn notifications_smtp_down_retries_the_email_and_in_app_is_there_at_once() {
    let port = free_port();
    let app = TestApp::builder()
        .env("SMTP_URL", format!("smtp://127.0.0.1:{port}"))
        .env("NOTIFICATIONS_MAX_ATTEMPTS", "12")
        // Retries at most 2 s apart: the server's start is noticed soon.
        .env("NOTIFICATIONS_RETRY_BASE_MS", "500")
        .env("NOTIFICATIONS_RETRY_MAX_SECS", "2")
        .spawn()
        .await;
    let (_, token) = app.user("patient@example.com").await;
    // The in-app notification does not wait for email.
    let welcome = wait_for(&app, &token, "user.registered", None, |_| true).await;
    assert_eq!(welcome["title"], "Welcome to Rentify");
    // Attempts fail and are retried; the delivery stays queued.
    let retrying = wait_for(&app, &token, "user.registered", None, |n| {
        email_of(n)["attempts"].as_i64().unwrap() >= 2
    })
    .await;
    assert_eq!(email_of(&retrying)["status"], "queued");
    let last_error: Option<String> = sqlx::query_scalar(
        "SELECT last_error FROM notification_deliveries WHERE notification_id = $1::uuid",
    )
    .bind(retrying["id"].as_str().unwrap())
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert!(last_error.unwrap().starts_with("SMTP"), "the error is kept");

    // The server comes up: the next attempt gets through, once.
    let mut smtp = SmtpServer::start(port).await;
    let message = smtp.message_to("patient@example.com", 30).await;
    assert_eq!(message["subject"], "Welcome to Rentify");
    let sent = wait_for(&app, &token, "user.registered", None, |n| {
        email_of(n)["status"] == "sent"
    })
    .await;
    assert!(email_of(&sent)["attempts"].as_i64().unwrap() >= 3);
    let last_error: Option<String> = sqlx::query_scalar(
        "SELECT last_error FROM notification_deliveries WHERE notification_id = $1::uuid",
    )
    .bind(sent["id"].as_str().unwrap())
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(last_error, None);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(smtp.received().is_empty(), "the email was sent once");
}

#[tokio::test]
async fn notifications_an_email_fails_after_the_last_attempt() {
    let port = free_port();
    let app = TestApp::builder()
        .env("SMTP_URL", format!("smtp://127.0.0.1:{port}"))
        .env("NOTIFICATIONS_MAX_ATTEMPTS", "2")
        .env("NOTIFICATIONS_RETRY_BASE_MS", "200")
        .spawn()
        .await;
    let (_, token) = app.user("unreachable@example.com").await;
    let failed = wait_for(&app, &token, "user.registered", None, |n| {
        email_of(n)["status"] == "failed"
    })
    .await;
    assert_eq!(email_of(&failed)["attempts"], 2);
    assert_eq!(failed["read_at"], Value::Null);
    // No attempt after the last: every task ends, and the count stays.
    eventually("the delivery tasks to end", 20, || async {
        let busy = count(
            &app,
            "SELECT count(*) FROM underway.task
              WHERE task_queue_name = 'notifications.deliver' AND state IN ('pending', 'in_progress')",
        )
        .await;
        (busy == 0).then_some(())
    })
    .await;
    let after = wait_for(&app, &token, "user.registered", None, |_| true).await;
    assert_eq!(
        email_of(&after),
        json!({"channel": "email", "status": "failed", "attempts": 2})
    );
}

#[tokio::test]
async fn notifications_quiet_hours_hold_back_email_unless_critical() {
    let app = TestApp::spawn().await;
    let p = parties(&app).await;
    let listing = app.active_listing(&p.owner, json!({})).await;
    // Quiet from an hour ago to an hour from now.
    let now = chrono::Utc::now();
    let hhmm = |at: chrono::DateTime<chrono::Utc>| at.format("%H:%M").to_string();
    let (status, prefs) = app
        .call_parts(
            Method::PUT,
            "/v1/notifications/preferences",
            Some(&p.renter),
            Some(&json!({"quiet_hours": {
                "start": hhmm(now - chrono::Duration::hours(1)),
                "end": hhmm(now + chrono::Duration::hours(1)),
                "timezone": "UTC"
            }})),
        )
        .await;
    assert_eq!(status, 200, "{prefs}");

    let b = booked(&app, &p.renter, &body(&listing, day(10, 10), day(12, 10))).await;
    let approved = wait_for(&app, &p.renter, "booking.approved", Some(&b), |_| true).await;
    assert_eq!(act(&app, &p.renter, &b, "cancel", None).await.0, 200);
    // The critical cancellation's email leaves at once...
    wait_for(&app, &p.renter, "booking.cancelled", Some(&b), |n| {
        email_of(n)["status"] == "delivered"
    })
    .await;
    // ...the approval's waits for the end of the quiet hours.
    let approved = all(&app, &p.renter)
        .await
        .into_iter()
        .find(|n| n["id"] == approved["id"])
        .unwrap();
    assert_eq!(
        email_of(&approved),
        json!({"channel": "email", "status": "queued", "attempts": 0})
    );
    let deliver_after: chrono::DateTime<chrono::Utc> = sqlx::query_scalar(
        "SELECT deliver_after FROM notification_deliveries WHERE notification_id = $1::uuid",
    )
    .bind(approved["id"].as_str().unwrap())
    .fetch_one(&app.db)
    .await
    .unwrap();
    let wait = deliver_after - now;
    assert!(
        wait > chrono::Duration::minutes(58) && wait <= chrono::Duration::minutes(61),
        "held back for {wait}"
    );
    // The owner has no quiet hours: their email left.
    wait_for(&app, &p.owner, "booking.approved", Some(&b), |n| {
        email_of(n)["status"] == "delivered"
    })
    .await;
}

// ---------------------------------------------------------------- live

/// Backends of the app's database listening for live notifications.
async fn pg_listeners(app: &TestApp) -> i64 {
    count(
        app,
        "SELECT count(*) FROM pg_stat_activity
          WHERE datname = current_database() AND query ILIKE 'LISTEN%rentify_notifications%'",
    )
    .await
}

/// Opens the stream, then makes a notification for the renter, which
/// arrives live; a reconnection with `Last-Event-ID` replays it.
async fn live_notifications_arrive(app: &TestApp) {
    let p = parties(app).await;
    let listing = app.active_listing(&p.owner, json!({})).await;
    let welcome = wait_for(app, &p.renter, "user.registered", None, |_| true).await;
    let mut stream = EventStream::open(app, &p.renter, None).await;
    let (status, _) = app
        .call_parts(Method::GET, "/v1/notifications/stream", None, None)
        .await;
    assert_eq!(status, 401);

    let b = booked(app, &p.renter, &body(&listing, day(10, 10), day(12, 10))).await;
    let (name, id, live) = stream.next(20).await;
    assert_eq!(name, "notification");
    assert_eq!(live["object"], "notification");
    assert_eq!(live["type"], "booking.approved");
    assert_eq!(live["data"]["booking_id"], b["id"]);
    assert_eq!(live["id"].as_str(), Some(id.as_str()));
    assert_eq!(live["deliveries"][0]["channel"], "email");
    // The owner's notification went to the owner only: the next event is
    // the renter's own cancellation.
    assert_eq!(act(app, &p.renter, &b, "cancel", None).await.0, 200);
    let (_, _, next) = stream.next(20).await;
    assert_eq!(next["type"], "booking.cancelled");
    assert_eq!(next["critical"], true);

    // Reconnecting after the welcome replays what came since.
    let mut again = EventStream::open(app, &p.renter, welcome["id"].as_str()).await;
    let (_, replayed_id, replayed) = again.next(20).await;
    assert_eq!(replayed_id, id);
    assert_eq!(replayed["type"], "booking.approved");
    let (_, _, replayed) = again.next(20).await;
    assert_eq!(replayed["type"], "booking.cancelled");
}

#[tokio::test]
async fn notifications_stream_live_through_postgres() {
    let app = TestApp::spawn().await;
    assert_eq!(pg_listeners(&app).await, 0, "no stream, no subscription");
    live_notifications_arrive(&app).await;
    assert_eq!(pg_listeners(&app).await, 1, "one subscription per process");
}

#[tokio::test]
async fn notifications_stream_live_through_redis() {
    let app = TestApp::builder()
        .env("REDIS_URL", crate::support::redis_url())
        .spawn()
        .await;
    live_notifications_arrive(&app).await;
    assert_eq!(
        pg_listeners(&app).await,
        0,
        "Redis carries them, not PostgreSQL"
    );
}

// ---------------------------------------------------------------- retention

#[tokio::test]
async fn notifications_retention_purges_old_read_ones_and_finished_deliveries() {
    let app = TestApp::spawn().await;
    let (user_id, token) = app.user("old@example.com").await;
    let welcome = wait_for(&app, &token, "user.registered", None, |n| {
        email_of(n)["status"] == "delivered"
    })
    .await;
    // A read notification and its delivered email, both long ago; an unread
    // one as old; and a read one whose email still waits.
    let ago = "now() - interval '200 days'";
    sqlx::query(&format!(
        "UPDATE notifications SET read_at = {ago}, created_at = {ago} WHERE id = $1::uuid"
    ))
    .bind(welcome["id"].as_str().unwrap())
    .execute(&app.db)
    .await
    .unwrap();
    sqlx::query(&format!(
        "UPDATE notification_deliveries SET updated_at = {ago} WHERE notification_id = $1::uuid"
    ))
    .bind(welcome["id"].as_str().unwrap())
    .execute(&app.db)
    .await
    .unwrap();
    for (read, queued) in [(false, false), (true, true)] {
        let id = Uuid::now_v7();
        sqlx::query(&format!(
            "INSERT INTO notifications (id, user_id, type, category, title, body, event_id, read_at, created_at)
             VALUES ($1, $2::uuid, 'test', 'bookings', 't', 'b', $3, CASE WHEN $4 THEN {ago} END, {ago})"
        ))
        .bind(id)
        .bind(&user_id)
        .bind(Uuid::now_v7())
        .bind(read)
        .execute(&app.db)
        .await
        .unwrap();
        if queued {
            sqlx::query(&format!(
                "INSERT INTO notification_deliveries
                     (id, notification_id, channel, recipient, subject, body_text, deliver_after, updated_at)
                 VALUES ($1, $2, 'email', 'old@example.com', 's', 't', now() + interval '1 day', {ago})"
            ))
            .bind(Uuid::now_v7())
            .bind(id)
            .execute(&app.db)
            .await
            .unwrap();
        }
    }
    let mut conn = app.db.acquire().await.unwrap();
    let purged = rentify_notifications::purge_expired(&mut conn, 180)
        .await
        .unwrap();
    // The welcome and its email; not the unread one, not the waiting one.
    assert_eq!(purged, 2);
    let left = count(
        &app,
        &format!("SELECT count(*) FROM notifications WHERE user_id = '{user_id}'"),
    )
    .await;
    assert_eq!(left, 2);
    assert_eq!(
        rentify_notifications::purge_expired(&mut conn, 180)
            .await
            .unwrap(),
        0
    );
}
