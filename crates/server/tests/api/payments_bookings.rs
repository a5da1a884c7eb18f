//! A booking's money over HTTP with the sandbox gateway: the card is
//! required and authorized at placement (402 without one, cancelled on a
//! decline), the hold is captured at the start and settled to the owner and
//! the platform at completion, cancellations keep the policy's fee,
//! disputes refund and take the deposit; captures and webhooks have one
//! effect however often they come; the payment timer and a late webhook
//! end in one outcome; a gateway outage is a 503 that charges nothing.

use std::time::Duration as StdDuration;

use rentify_payments::{escrow, jobs::MoneyTask, sandbox::Fault};
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    bookings::{act, body, book, booked, day, parties},
    payments_wallet::eventually,
    support::{TestApp, error_code},
};

/// Waits until every money task ran and the gateway is quiet.
pub(crate) async fn settled(app: &TestApp) {
    eventually("the money tasks to finish", || async {
        let busy: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM underway.task
              WHERE task_queue_name = 'payments.booking_money' AND state IN ('pending', 'in_progress')",
        )
        .fetch_one(&app.db)
        .await
        .unwrap();
        let quiet = app
            .modules
            .payments
            .sandbox()
            .unwrap()
            .wait_idle(StdDuration::from_secs(5))
            .await;
        (busy == 0 && quiet).then_some(())
    })
    .await;
}

pub(crate) async fn transactions(
    app: &TestApp,
    token: &str,
    booking: &Value,
) -> Vec<(String, i64, String)> {
    let id = booking["id"].as_str().unwrap();
    let (status, list) = app
        .call_parts(
            Method::GET,
            &format!("/v1/bookings/{id}/transactions"),
            Some(token),
            None,
        )
        .await;
    assert_eq!(status, 200, "{list}");
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["type"].as_str().unwrap().to_owned(),
                t["amount"].as_i64().unwrap(),
                t["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

pub(crate) async fn intent_of(app: &TestApp, booking: &Value) -> (Uuid, String, i64) {
    sqlx::query_as(
        "SELECT id, status, amount_captured FROM payment_intents WHERE booking_id = $1::uuid",
    )
    .bind(booking["id"].as_str().unwrap())
    .fetch_one(&app.db)
    .await
    .unwrap()
}

async fn status_of(app: &TestApp, booking: &Value) -> (String, Option<String>) {
    sqlx::query_as("SELECT status, status_reason FROM bookings WHERE id = $1::uuid")
        .bind(booking["id"].as_str().unwrap())
        .fetch_one(&app.db)
        .await
        .unwrap()
}

/// The whole ledger sums to zero, every transfer balances, no wallet is
/// below zero and the running balances match the entries.
pub(crate) async fn assert_books_balance(app: &TestApp) {
    let total: i64 = sqlx::query_scalar(
        "SELECT coalesce(sum(e.amount), 0)::bigint FROM ledger_entries e
           JOIN ledger_transfers t ON t.id = e.transfer_id WHERE t.status = 'posted'",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(total, 0, "the ledger must sum to zero");
    let unbalanced: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT transfer_id FROM ledger_entries
                                GROUP BY transfer_id HAVING sum(amount) <> 0) u",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(unbalanced, 0);
    let drift: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM ledger_accounts a JOIN ledger_balances b ON b.account_id = a.id
          WHERE a.tracked AND (a.posted <> b.posted OR a.pending_debits <> b.pending_debits
                               OR a.posted - a.pending_debits < 0)",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(drift, 0, "wallet balances drifted or went negative");
}

pub(crate) async fn owner_wallet(app: &TestApp, token: &str) -> Value {
    let (status, wallet) = app
        .call_parts(Method::GET, "/v1/wallet?currency=EUR", Some(token), None)
        .await;
    assert_eq!(status, 200, "{wallet}");
    wallet
}

#[tokio::test]
async fn payments_a_booking_needs_a_card_and_a_decline_cancels_it() {
    let app = TestApp::spawn().await;
    let p = parties(&app).await;
    let listing = app.active_listing(&p.owner, json!({})).await;
    let request = body(&listing, day(10, 10), day(12, 10));

    let (_, no_card) = app.user("nocard@example.com").await;
    let (status, _, error) = book(&app, &no_card, Some("k1"), &request).await;
    assert_eq!(status, 402, "{error}");
    assert_eq!(error_code(&error), "payment_method_required");
    let mut unknown_card = request.clone();
    unknown_card["payment_method_id"] = json!(Uuid::now_v7());
    let (status, _, error) = book(&app, &p.renter, Some("k2"), &unknown_card).await;
    assert_eq!(status, 400, "{error}");
    assert_eq!(error["error"]["details"][0]["field"], "payment_method_id");
    let bookings: i64 = sqlx::query_scalar("SELECT count(*) FROM bookings")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(bookings, 0, "nothing is held without a card");

    for (card, code) in [
        ("tok_chargeDeclined", "card_declined"),
        ("tok_insufficientFunds", "insufficient_funds"),
    ] {
        let (_, token) = app.user(&format!("{code}@example.com")).await;
        app.add_card(&token, card).await;
        let key = format!("declined-{code}");
        let (status, _, error) = book(&app, &token, Some(&key), &request).await;
        assert_eq!(status, 402, "{error}");
        assert_eq!(error_code(&error), "payment_declined");
        assert_eq!(error["error"]["details"][0]["decline_code"], code);
        let id = error["error"]["details"][1]["booking_id"].clone();
        let declined = json!({"id": id});
        assert_eq!(
            status_of(&app, &declined).await,
            ("cancelled".into(), Some(code.into()))
        );
        assert_eq!(intent_of(&app, &declined).await.1, "failed");
        // A retry replays the decline.
        let (again, _, replay) = book(&app, &token, Some(&key), &request).await;
        assert_eq!((again, replay.clone()), (402, error));
        assert!(transactions(&app, &token, &declined).await.is_empty());
    }
    // The declined bookings gave the unit back.
    let b = booked(&app, &p.renter, &request).await;
    assert_eq!(b["status"], "approved");
    assert!(b["payment_method_id"].is_string());
}

#[tokio::test]
async fn payments_escrow_follows_the_booking_to_the_owners_wallet() {
    let app = TestApp::spawn().await;
    let p = parties(&app).await;
    let listing = app.active_listing(&p.owner, json!({})).await;
    // 2 days at 25.00: 50.00 rental, 5.00 service fee, 300.00 deposit.
    let b = booked(&app, &p.renter, &body(&listing, day(10, 10), day(12, 10))).await;
    assert_eq!(b["status"], "approved");
    assert_eq!(
        transactions(&app, &p.renter, &b).await,
        [
            ("charge".into(), 5_500, "pending".into()),
            ("deposit_hold".into(), 30_000, "pending".into())
        ]
    );

    assert_eq!(act(&app, &p.owner, &b, "start", None).await.0, 200);
    settled(&app).await;
    let (intent, status, captured) = intent_of(&app, &b).await;
    assert_eq!((status.as_str(), captured), ("captured", 35_500));
    assert_eq!(
        transactions(&app, &p.renter, &b).await,
        [
            ("charge".into(), 5_500, "completed".into()),
            ("deposit_hold".into(), 30_000, "completed".into())
        ]
    );

    assert_eq!(act(&app, &p.owner, &b, "complete", None).await.0, 200);
    settled(&app).await;
    // 50.00 − 3 % commission to the owner, the fee and the commission to
    // the platform; then the deposit back to the card.
    let txs = transactions(&app, &p.owner, &b).await;
    assert_eq!(txs.len(), 4, "{txs:?}");
    assert_eq!(txs[2], ("payout".into(), 5_500, "completed".into()));
    assert_eq!(
        txs[3],
        ("deposit_release".into(), 30_000, "completed".into())
    );
    assert_eq!(owner_wallet(&app, &p.owner).await["available"], 4_850);
    let (owner, platform): (i64, i64) = sqlx::query_as(
        "SELECT owner_amount, platform_amount FROM booking_settlements WHERE booking_id = $1::uuid",
    )
    .bind(b["id"].as_str().unwrap())
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!((owner, platform), (4_850, 650));
    let items: Vec<(String, i64)> = sqlx::query_as(
        "SELECT kind, sum(amount)::bigint FROM booking_line_items WHERE booking_id = $1::uuid
          GROUP BY kind ORDER BY kind",
    )
    .bind(b["id"].as_str().unwrap())
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(
        items,
        [
            ("commission".into(), 150),
            ("deposit".into(), 30_000),
            ("rental".into(), 5_000),
            ("service_fee".into(), 500)
        ]
    );
    let sandbox = app.modules.payments.sandbox().unwrap();
    assert_eq!(sandbox.capture_count(intent).await, 1);
    assert_books_balance(&app).await;
    // A stranger sees nothing.
    let (_, stranger) = app.user("stranger@example.com").await;
    let id = b["id"].as_str().unwrap();
    let (status, _) = app
        .call_parts(
            Method::GET,
            &format!("/v1/bookings/{id}/transactions"),
            Some(&stranger),
            None,
        )
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn payments_cancellation_keeps_the_policys_fee_and_releases_the_rest() {
    let app = TestApp::spawn().await;
    let p = parties(&app).await;
    let listing = app.active_listing(&p.owner, json!({})).await;
    // Moderate, 2 days' notice: half the rental kept, and the service fee.
    let late = booked(&app, &p.renter, &body(&listing, day(2, 10), day(4, 10))).await;
    let (status, cancelled) = act(&app, &p.renter, &late, "cancel", None).await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["refund"]["rental_percent"], 50);
    settled(&app).await;
    let (_, status, captured) = intent_of(&app, &late).await;
    assert_eq!((status.as_str(), captured), ("captured", 3_000));
    let txs = transactions(&app, &p.renter, &late).await;
    assert_eq!(
        txs,
        [
            ("charge".into(), 5_500, "voided".into()),
            ("deposit_hold".into(), 30_000, "voided".into()),
            ("charge".into(), 3_000, "completed".into()),
            ("payout".into(), 3_000, "completed".into())
        ]
    );
    assert_eq!(owner_wallet(&app, &p.owner).await["available"], 2_500 - 75);

    // Ten days' notice: everything back, the hold voided, nothing charged.
    let early = booked(&app, &p.renter, &body(&listing, day(10, 10), day(12, 10))).await;
    assert_eq!(act(&app, &p.renter, &early, "cancel", None).await.0, 200);
    settled(&app).await;
    let (intent, status, _) = intent_of(&app, &early).await;
    assert_eq!(status, "voided");
    assert_eq!(
        app.modules
            .payments
            .sandbox()
            .unwrap()
            .capture_count(intent)
            .await,
        0
    );
    assert!(
        transactions(&app, &p.renter, &early)
            .await
            .iter()
            .all(|t| t.2 == "voided")
    );
    // A declined request releases its hold too.
    let manual = app
        .active_listing(&p.owner, json!({"instant_book": false}))
        .await;
    let request = booked(&app, &p.renter, &body(&manual, day(10, 10), day(12, 10))).await;
    assert_eq!(request["status"], "requested");
    assert_eq!(act(&app, &p.owner, &request, "decline", None).await.0, 200);
    settled(&app).await;
    assert_eq!(intent_of(&app, &request).await.1, "voided");
    assert_books_balance(&app).await;
}

#[tokio::test]
async fn payments_disputes_pause_the_payout_and_resolutions_refund_or_take_the_deposit() {
    let app = TestApp::spawn().await;
    let p = parties(&app).await;
    let (_, admin) = app.admin("admin@example.com").await;
    let listing = app.active_listing(&p.owner, json!({})).await;

    // Disputed while active: nothing settles until the resolution.
    let b = booked(&app, &p.renter, &body(&listing, day(10, 10), day(12, 10))).await;
    assert_eq!(act(&app, &p.owner, &b, "start", None).await.0, 200);
    let disputed = act(
        &app,
        &p.renter,
        &b,
        "dispute",
        Some(json!({"reason": "scratched lens"})),
    )
    .await;
    assert_eq!(disputed.0, 200, "{}", disputed.1);
    settled(&app).await;
    assert_eq!(owner_wallet(&app, &p.owner).await["balance"], 0);
    let too_much = act(
        &app,
        &admin,
        &b,
        "resolve",
        Some(json!({"resolution": "refund", "refund_amount": 5_501})),
    )
    .await;
    assert_eq!(too_much.0, 400, "{}", too_much.1);
    let resolved = act(
        &app,
        &admin,
        &b,
        "resolve",
        Some(json!({"resolution": "partial_refund", "refund_amount": 2_000, "deposit_capture": 10_000})),
    )
    .await;
    assert_eq!(resolved.0, 200, "{}", resolved.1);
    settled(&app).await;
    let txs = transactions(&app, &p.owner, &b).await;
    let kinds: Vec<&str> = txs.iter().map(|t| t.0.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "charge",
            "deposit_hold",
            "deposit_capture",
            "refund",
            "payout",
            "deposit_release"
        ],
        "{txs:?}"
    );
    assert_eq!(txs[2].1, 10_000);
    assert_eq!(txs[3].1, 2_000);
    assert_eq!(txs[5].1, 20_000);
    // 30.00 rental left − 0.90 commission, plus 100.00 of the deposit.
    assert_eq!(
        owner_wallet(&app, &p.owner).await["balance"],
        2_910 + 10_000
    );

    // Disputed after settlement: the earnings are held, then clawed back.
    let c = booked(&app, &p.renter, &body(&listing, day(20, 10), day(22, 10))).await;
    assert_eq!(act(&app, &p.owner, &c, "start", None).await.0, 200);
    assert_eq!(act(&app, &p.owner, &c, "complete", None).await.0, 200);
    settled(&app).await;
    assert_eq!(
        owner_wallet(&app, &p.owner).await["balance"],
        12_910 + 4_850
    );
    assert_eq!(
        act(
            &app,
            &p.renter,
            &c,
            "dispute",
            Some(json!({"reason": "broken"}))
        )
        .await
        .0,
        200
    );
    // Settled before the dispute: the deposit is back on the card.
    let (status, refused) = act(
        &app,
        &admin,
        &c,
        "resolve",
        Some(json!({"resolution": "damage", "deposit_capture": 1_000})),
    )
    .await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["error"]["details"][0]["code"], "deposit_released");
    let wallet = owner_wallet(&app, &p.owner).await;
    assert_eq!(wallet["held"], 4_850, "{wallet}");
    assert_eq!(
        act(
            &app,
            &admin,
            &c,
            "resolve",
            Some(json!({"resolution": "refund", "refund_amount": 1_000}))
        )
        .await
        .0,
        200
    );
    settled(&app).await;
    let wallet = owner_wallet(&app, &p.owner).await;
    assert_eq!(wallet["held"], 0, "{wallet}");
    assert_eq!(wallet["balance"], 12_910 + 4_850 - 1_000);
    let refunded: i64 = sqlx::query_scalar(
        "SELECT amount_refunded FROM payment_intents WHERE booking_id = $1::uuid",
    )
    .bind(c["id"].as_str().unwrap())
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(
        refunded,
        30_000 + 1_000,
        "the deposit and the dispute refund"
    );
    assert_books_balance(&app).await;
}

#[tokio::test]
async fn payments_twenty_concurrent_captures_charge_once() {
    let app = TestApp::spawn().await;
    let p = parties(&app).await;
    let (_, admin) = app.admin("admin@example.com").await;
    let listing = app.active_listing(&p.owner, json!({})).await;
    let b = booked(&app, &p.renter, &body(&listing, day(10, 10), day(12, 10))).await;
    let id = b["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/admin/bookings/{id}/capture");
    let calls = (0..20).map(|_| app.call_parts(Method::POST, &path, Some(&admin), None));
    let answers = futures::future::join_all(calls).await;
    for (status, payment) in &answers {
        assert_eq!(*status, 200, "{payment}");
        assert_eq!(payment["status"], "captured");
        assert_eq!(payment["amount_captured"], 35_500);
    }
    // The start's own capture task finds it done.
    assert_eq!(act(&app, &p.owner, &b, "start", None).await.0, 200);
    settled(&app).await;
    let (intent, _, _) = intent_of(&app, &b).await;
    assert_eq!(
        app.modules
            .payments
            .sandbox()
            .unwrap()
            .capture_count(intent)
            .await,
        1
    );
    let posted: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM ledger_transfers
          WHERE booking_id = $1::uuid AND status = 'posted' AND kind IN ('charge', 'deposit_hold')",
    )
    .bind(&id)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(posted, 2, "one charge and one deposit, posted once");
    // A renter may not.
    let (status, _) = app
        .call_parts(Method::POST, &path, Some(&p.renter), None)
        .await;
    assert_eq!(status, 403);
    assert_books_balance(&app).await;
}

#[tokio::test]
async fn payments_webhooks_five_times_and_out_of_order_have_one_effect() {
    let app = TestApp::spawn().await;
    let p = parties(&app).await;
    let listing = app.active_listing(&p.owner, json!({})).await;
    let sandbox = app.modules.payments.sandbox().unwrap().clone();

    // The authorization happens, its answer is lost: only the webhook can
    // tell, and it comes five times, shuffled with the others.
    sandbox.pause_webhooks();
    sandbox.inject(Fault::LostResponse);
    let key = "lost-answer";
    let (status, _, pending) = book(
        &app,
        &p.renter,
        Some(key),
        &body(&listing, day(10, 10), day(12, 10)),
    )
    .await;
    assert_eq!(status, 202, "{pending}");
    assert_eq!(pending["status"], "pending_payment");
    assert!(pending["payment_expires_at"].is_string());
    sandbox.resume_webhooks_shuffled();
    sandbox.redeliver_all(5).await;
    settled(&app).await;
    assert_eq!(status_of(&app, &pending).await.0, "approved");
    // The stored answer caught up: a retry sees the approved booking.
    let (status, _, replay) = book(
        &app,
        &p.renter,
        Some(key),
        &body(&listing, day(10, 10), day(12, 10)),
    )
    .await;
    assert_eq!((status, replay["status"].as_str()), (201, Some("approved")));

    // The capture's webhook, five times out of order with the rest.
    sandbox.pause_webhooks();
    assert_eq!(act(&app, &p.owner, &pending, "start", None).await.0, 200);
    assert_eq!(act(&app, &p.owner, &pending, "complete", None).await.0, 200);
    sandbox.resume_webhooks_shuffled();
    sandbox.redeliver_all(5).await;
    settled(&app).await;

    let id = pending["id"].as_str().unwrap();
    let approvals: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM booking_transitions WHERE booking_id = $1::uuid AND to_status = 'approved'",
    )
    .bind(id)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(approvals, 1);
    let kinds: Vec<(String, String)> = sqlx::query_as(
        "SELECT kind, status FROM ledger_transfers WHERE booking_id = $1::uuid ORDER BY created_at, id",
    )
    .bind(id)
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(
        kinds,
        [
            ("charge".into(), "posted".into()),
            ("deposit_hold".into(), "posted".into()),
            ("settlement".into(), "posted".into()),
            ("deposit_release".into(), "posted".into())
        ]
    );
    let duplicates: i64 = sqlx::query_scalar("SELECT count(*) FROM payment_webhook_events")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert!(duplicates >= 3, "the events were recorded once each");
    assert_eq!(owner_wallet(&app, &p.owner).await["balance"], 4_850);
    assert_books_balance(&app).await;
}

/// Books with a lost authorization answer and lets the payment deadline
/// pass; the booking is then `pending_payment` past its deadline.
async fn unpaid_past_deadline(app: &TestApp, token: &str, listing: &Value, d: i64) -> Value {
    let sandbox = app.modules.payments.sandbox().unwrap();
    sandbox.pause_webhooks();
    sandbox.inject(Fault::LostResponse);
    let key = Uuid::now_v7().to_string();
    let (status, _, pending) = book(
        app,
        token,
        Some(&key),
        &body(listing, day(d, 10), day(d, 12)),
    )
    .await;
    assert_eq!(status, 202, "{pending}");
    tokio::time::sleep(StdDuration::from_millis(1_100)).await;
    pending
}

async fn run_payment_timer(app: &TestApp, booking: &Value) -> bool {
    let mut tx = app.db.begin().await.unwrap();
    let id: Uuid = booking["id"].as_str().unwrap().parse().unwrap();
    let expired =
        rentify_bookings::service::expire_booking(&mut tx, app.modules.payments.jobs(), id)
            .await
            .unwrap();
    tx.commit().await.unwrap();
    expired
}

#[tokio::test]
async fn payments_a_late_success_recovers_a_free_unit_or_is_voided() {
    let app = TestApp::builder()
        .env("PAYMENTS_HOLD_TIMEOUT_SECS", "1")
        .without_payment_jobs()
        .spawn()
        .await;
    let p = parties(&app).await;
    let (_, other) = app.renter("other@example.com").await;
    let listing = app.active_listing(&p.owner, json!({})).await;
    let sandbox = app.modules.payments.sandbox().unwrap().clone();
    let payments = app.modules.payments.clone();

    // The unit is still free: the late success takes it again.
    let a = unpaid_past_deadline(&app, &p.renter, &listing, 10).await;
    assert!(run_payment_timer(&app, &a).await);
    assert_eq!(
        status_of(&app, &a).await,
        ("cancelled".into(), Some("payment_timeout".into()))
    );
    assert_eq!(intent_of(&app, &a).await.1, "expired");
    sandbox.resume_webhooks();
    assert!(sandbox.wait_idle(StdDuration::from_secs(10)).await);
    assert_eq!(
        status_of(&app, &a).await,
        ("approved".into(), Some("payment_recovered".into()))
    );
    assert_eq!(intent_of(&app, &a).await.1, "authorized");
    // The timer's void, run late, leaves a recovered booking alone.
    let a_id: Uuid = a["id"].as_str().unwrap().parse().unwrap();
    escrow::run(&payments, &MoneyTask::Void { booking_id: a_id })
        .await
        .unwrap();
    assert_eq!(intent_of(&app, &a).await.1, "authorized");

    // The unit was taken meanwhile: the late success is voided.
    let b = unpaid_past_deadline(&app, &p.renter, &listing, 20).await;
    assert!(run_payment_timer(&app, &b).await);
    let taken = booked(&app, &other, &body(&listing, day(20, 10), day(20, 12))).await;
    assert_eq!(taken["status"], "approved");
    sandbox.resume_webhooks();
    assert!(sandbox.wait_idle(StdDuration::from_secs(10)).await);
    assert_eq!(status_of(&app, &b).await.0, "cancelled");
    let b_id: Uuid = b["id"].as_str().unwrap().parse().unwrap();
    escrow::run(&payments, &MoneyTask::Void { booking_id: b_id })
        .await
        .unwrap();
    let (intent, status, _) = intent_of(&app, &b).await;
    assert_eq!(status, "voided");
    let at_gateway: String = sqlx::query_scalar(
        "SELECT status FROM sandbox_gateway.intents WHERE rentify_intent_id = $1",
    )
    .bind(intent)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(at_gateway, "voided");
    assert_books_balance(&app).await;
}

#[tokio::test]
async fn payments_the_timer_and_a_late_webhook_race_to_exactly_one_outcome() {
    let app = TestApp::builder()
        .env("PAYMENTS_HOLD_TIMEOUT_SECS", "1")
        // Every round loses an answer on purpose; keep the circuit closed.
        .env("PAYMENTS_BREAKER_THRESHOLD", "100")
        .spawn()
        .await;
    let p = parties(&app).await;
    let listing = app.active_listing(&p.owner, json!({})).await;
    let sandbox = app.modules.payments.sandbox().unwrap().clone();
    for round in 0..6 {
        let b = unpaid_past_deadline(&app, &p.renter, &listing, 10 + round).await;
        let timer = run_payment_timer(&app, &b);
        let webhook = async {
            sandbox.resume_webhooks_shuffled();
        };
        tokio::join!(timer, webhook);
        settled(&app).await;
        let (status, reason) = status_of(&app, &b).await;
        let (intent, intent_status, _) = intent_of(&app, &b).await;
        let windows: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM availability_windows WHERE booking_id = $1::uuid",
        )
        .bind(b["id"].as_str().unwrap())
        .fetch_one(&app.db)
        .await
        .unwrap();
        let at_gateway: String = sqlx::query_scalar(
            "SELECT status FROM sandbox_gateway.intents WHERE rentify_intent_id = $1",
        )
        .bind(intent)
        .fetch_one(&app.db)
        .await
        .unwrap();
        match status.as_str() {
            "approved" => {
                assert_eq!(intent_status, "authorized", "round {round}");
                assert_eq!(windows, 1, "round {round}");
                assert_eq!(at_gateway, "authorized", "round {round}");
            }
            "cancelled" => {
                assert_eq!(reason.as_deref(), Some("payment_timeout"), "round {round}");
                assert_eq!(intent_status, "voided", "round {round}");
                assert_eq!(windows, 0, "round {round}");
                assert_eq!(at_gateway, "voided", "round {round}");
            }
            other => panic!("round {round}: {other} with intent {intent_status}"),
        }
    }
    assert_books_balance(&app).await;
}

#[tokio::test]
async fn payments_a_gateway_outage_is_a_503_that_holds_and_charges_nothing() {
    // No payment worker: its retry of an unanswered authorization would
    // succeed (the faults are one-shot) and reset the breaker's count of
    // consecutive failures between the requests below.
    let app = TestApp::builder()
        .env("PAYMENTS_BREAKER_THRESHOLD", "3")
        .env("PAYMENTS_BREAKER_OPEN_SECS", "30")
        .env("PAYMENTS_GATEWAY_TIMEOUT_MS", "300")
        .without_payment_jobs()
        .spawn()
        .await;
    let p = parties(&app).await;
    let listing = app.active_listing(&p.owner, json!({"quantity": 5})).await;
    let sandbox = app.modules.payments.sandbox().unwrap().clone();

    // A slow answer times out; the gateway still authorizes and its
    // webhook approves the booking.
    sandbox.inject(Fault::Slow(StdDuration::from_secs(1)));
    let (status, _, slow) = book(
        &app,
        &p.renter,
        Some("slow"),
        &body(&listing, day(5, 10), day(5, 12)),
    )
    .await;
    assert_eq!(status, 202, "{slow}");
    eventually("the webhook to approve the slow booking", || async {
        (status_of(&app, &slow).await.0 == "approved").then_some(())
    })
    .await;

    // With the slow call, three failures open the circuit; then nothing is
    // even attempted.
    for n in 0..2 {
        sandbox.inject(Fault::Unavailable);
        let (status, _, pending) = book(
            &app,
            &p.renter,
            Some(&format!("down-{n}")),
            &body(&listing, day(6, 10), day(6, 12)),
        )
        .await;
        assert_eq!(status, 202, "{pending}");
        assert_eq!(pending["status"], "pending_payment");
    }
    let before: i64 = sqlx::query_scalar("SELECT count(*) FROM bookings")
        .fetch_one(&app.db)
        .await
        .unwrap();
    let (status, headers, error) = book(
        &app,
        &p.renter,
        Some("open"),
        &body(&listing, day(7, 10), day(7, 12)),
    )
    .await;
    assert_eq!(status, 503, "{error}");
    assert_eq!(error_code(&error), "payment_provider_unavailable");
    assert!(headers.contains_key("retry-after"));
    let after: i64 = sqlx::query_scalar("SELECT count(*) FROM bookings")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(before, after, "nothing placed while the circuit is open");
    let captures: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM sandbox_gateway.operations WHERE kind = 'capture'",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(captures, 0);
}

#[tokio::test]
async fn payments_an_extension_charges_the_extra_time_on_the_same_card() {
    let app = TestApp::spawn().await;
    let p = parties(&app).await;
    let listing = app.active_listing(&p.owner, json!({})).await;
    let b = booked(&app, &p.renter, &body(&listing, day(10, 10), day(12, 10))).await;
    assert_eq!(act(&app, &p.owner, &b, "start", None).await.0, 200);
    let id = b["id"].as_str().unwrap();
    let (status, child) = app
        .call_parts(
            Method::POST,
            &format!("/v1/bookings/{id}/extend"),
            Some(&p.renter),
            Some(&json!({"end_time": day(13, 10).to_rfc3339()})),
        )
        .await;
    // `call_parts` sends no Idempotency-Key: the extension requires one.
    assert_eq!(status, 400, "{child}");
    let response = app
        .client
        .post(app.url(&format!("/v1/bookings/{id}/extend")))
        .bearer_auth(&p.renter)
        .header("Idempotency-Key", "one-more-day")
        .json(&json!({"end_time": day(13, 10).to_rfc3339()}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    let child: Value = response.json().await.unwrap();
    assert_eq!(child["status"], "approved", "{child}");
    assert_eq!(child["payment_method_id"], b["payment_method_id"]);
    // One more day at 25.00 plus its 10 % fee; no second deposit.
    assert_eq!(
        transactions(&app, &p.renter, &child).await,
        [("charge".into(), 2_750, "pending".into())]
    );
    assert_eq!(act(&app, &p.owner, &child, "start", None).await.0, 200);
    settled(&app).await;
    assert_eq!(intent_of(&app, &child).await.1, "captured");
    assert_books_balance(&app).await;
}
