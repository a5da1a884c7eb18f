//! Wallets over HTTP: deposits credited only by the gateway's signed
//! webhook (once, however often it is delivered), withdrawals held,
//! reviewed, paid out or returned, and never more than the wallet holds.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{TestApp, error_code, parts};

/// An app whose withdrawals are approved at once (no deposit-then-withdraw
/// window), unless a test sets its own fraud settings.
pub(crate) async fn app_without_review() -> TestApp {
    TestApp::builder()
        .env("FRAUD_DEPOSIT_WITHDRAW_WINDOW_SECS", "0")
        .env("FRAUD_MAX_TRANSACTIONS_PER_HOUR", "1000")
        .spawn()
        .await
}

/// A POST with a bearer token, an optional `Idempotency-Key` and a JSON body.
pub(crate) async fn post(
    app: &TestApp,
    path: &str,
    token: &str,
    key: Option<&str>,
    body: &Value,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut request = app.client.post(app.url(path)).bearer_auth(token).json(body);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    parts(request.send().await.expect("request sent")).await
}

/// Stores a card (the caller's default if it is their first).
pub(crate) async fn add_card(app: &TestApp, token: &str, card: &str) -> Value {
    let (status, body) = app
        .call_parts(
            Method::POST,
            "/v1/payments/methods",
            Some(token),
            Some(&json!({"token": card})),
        )
        .await;
    assert_eq!(status, 201, "add card: {body}");
    body
}

pub(crate) async fn setup_payouts(app: &TestApp, token: &str, bank_token: &str) -> Value {
    let (status, _, body) = post(
        app,
        "/v1/payouts/setup",
        token,
        None,
        &json!({"token": bank_token}),
    )
    .await;
    assert_eq!(status, 200, "payout setup: {body}");
    body
}

pub(crate) async fn wallet(app: &TestApp, token: &str) -> Value {
    let (status, body) = app
        .call_parts(Method::GET, "/v1/wallet?currency=EUR", Some(token), None)
        .await;
    assert_eq!(status, 200, "wallet: {body}");
    body
}

/// Polls `probe` until it returns `Some`, for what arrives by webhook.
pub(crate) async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
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

/// Waits until the wallet's posted balance is `balance`.
pub(crate) async fn wallet_reaches(app: &TestApp, token: &str, balance: i64) -> Value {
    eventually(&format!("a wallet balance of {balance}"), || async {
        let w = wallet(app, token).await;
        (w["balance"] == balance).then_some(w)
    })
    .await
}

/// Deposits `amount` EUR and waits for the webhook to credit it.
pub(crate) async fn funded(app: &TestApp, token: &str, amount: i64) -> Value {
    let before = wallet(app, token).await["balance"].as_i64().unwrap();
    let (status, _, deposit) = post(
        app,
        "/v1/wallet/deposits",
        token,
        Some(&uuid::Uuid::new_v4().to_string()),
        &json!({"amount": amount, "currency": "EUR"}),
    )
    .await;
    assert_eq!(status, 202, "deposit: {deposit}");
    wallet_reaches(app, token, before + amount).await;
    deposit
}

pub(crate) async fn withdraw(app: &TestApp, token: &str, amount: i64) -> (u16, Value) {
    let (status, _, body) = post(
        app,
        "/v1/wallet/withdrawals",
        token,
        Some(&uuid::Uuid::new_v4().to_string()),
        &json!({"amount": amount, "currency": "EUR"}),
    )
    .await;
    (status, body)
}

/// Waits until the caller's payout `id` is `status`.
pub(crate) async fn payout_reaches(app: &TestApp, token: &str, id: &str, status: &str) -> Value {
    eventually(&format!("payout {id} to be {status}"), || async {
        let (code, page) = app
            .call_parts(Method::GET, "/v1/payouts", Some(token), None)
            .await;
        assert_eq!(code, 200, "{page}");
        page["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["id"] == id && p["status"] == status)
            .cloned()
    })
    .await
}

/// The posted balance of a house account, from its entries.
pub(crate) async fn house_balance(app: &TestApp, kind: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT coalesce(sum(posted), 0)::bigint FROM ledger_balances
          WHERE kind = $1 AND currency = 'EUR'",
    )
    .bind(kind)
    .fetch_one(&app.db)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_deposit_is_credited_once_by_the_webhook_however_often_it_comes() {
    let app = TestApp::builder()
        .env("SANDBOX_WEBHOOK_DUPLICATE_PERCENT", "100")
        .spawn()
        .await;
    let (_, token) = app.user("depositor@example.com").await;

    // No card yet: nothing to charge.
    let (status, _, body) = post(
        &app,
        "/v1/wallet/deposits",
        &token,
        Some("dep-0"),
        &json!({"amount": 5000, "currency": "EUR"}),
    )
    .await;
    assert_eq!(status, 402, "{body}");
    assert_eq!(error_code(&body), "payment_method_required");

    add_card(&app, &token, "tok_visa").await;
    let (status, _, body) = post(
        &app,
        "/v1/wallet/deposits",
        &token,
        None,
        &json!({"amount": 5000, "currency": "EUR"}),
    )
    .await;
    assert_eq!(status, 400, "a deposit needs an Idempotency-Key: {body}");
    for bad in [
        json!({"amount": 0, "currency": "EUR"}),
        json!({"amount": 5, "currency": "eur"}),
    ] {
        let (status, _, body) = post(&app, "/v1/wallet/deposits", &token, Some("bad"), &bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(error_code(&body), "validation_failed");
    }

    let request = json!({"amount": 5000, "currency": "EUR"});
    let (status, _, deposit) =
        post(&app, "/v1/wallet/deposits", &token, Some("dep-1"), &request).await;
    assert_eq!(status, 202, "{deposit}");
    assert_eq!(deposit["object"], "wallet_deposit");
    assert_eq!(deposit["status"], "pending");
    assert_eq!(deposit["amount"], 5000);
    // A retry replays the answer and charges nothing more.
    let (status, headers, replay) =
        post(&app, "/v1/wallet/deposits", &token, Some("dep-1"), &request).await;
    assert_eq!(status, 202);
    assert_eq!(replay, deposit);
    assert_eq!(headers["idempotent-replayed"], "true");

    let credited = wallet_reaches(&app, &token, 5000).await;
    assert_eq!(credited["available"], 5000);
    assert_eq!(credited["held"], 0);

    // Every event again, five more times: still credited once.
    let payments = app.modules.payments.clone();
    let sandbox = payments.sandbox().expect("the sandbox gateway");
    assert!(sandbox.wait_idle(Duration::from_secs(10)).await);
    let intent_id: uuid::Uuid = deposit["id"].as_str().unwrap().parse().unwrap();
    let captured = sandbox
        .sent_events()
        .into_iter()
        .find(|e| {
            e.event_type == "payment_intent.captured" && e.data.rentify_intent_id == Some(intent_id)
        })
        .expect("the capture webhook was sent");
    assert!(sandbox.deliver_again(&captured.id, 5).await);
    sandbox.redeliver_all(2).await;
    assert!(sandbox.wait_idle(Duration::from_secs(10)).await);
    assert_eq!(sandbox.capture_count(intent_id).await, 1);

    let after = wallet(&app, &token).await;
    assert_eq!(after["balance"], 5000, "{after}");
    let deposits: Vec<&Value> = after["recent"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "wallet_deposit")
        .collect();
    assert_eq!(deposits.len(), 1, "{after}");
    assert_eq!(deposits[0]["amount"], 5000);
    assert_eq!(deposits[0]["status"], "posted");
    assert_eq!(house_balance(&app, "gateway_clearing").await, -5000);
}

#[tokio::test]
async fn a_declined_card_is_402_and_credits_nothing() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user("declined@example.com").await;
    add_card(&app, &token, "tok_chargeDeclined").await;
    let (status, _, body) = post(
        &app,
        "/v1/wallet/deposits",
        &token,
        Some("dep-declined"),
        &json!({"amount": 2500, "currency": "EUR"}),
    )
    .await;
    assert_eq!(status, 402, "{body}");
    assert_eq!(error_code(&body), "payment_declined");
    let payments = app.modules.payments.clone();
    assert!(
        payments
            .sandbox()
            .unwrap()
            .wait_idle(Duration::from_secs(10))
            .await
    );
    let w = wallet(&app, &token).await;
    assert_eq!(w["balance"], 0);
    assert_eq!(w["recent"], json!([]));
}

#[tokio::test]
async fn a_forged_webhook_is_refused_and_credits_nothing() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user("forger@example.com").await;
    add_card(&app, &token, "tok_visa").await;
    let payments = app.modules.payments.clone();
    let sandbox = payments.sandbox().unwrap();
    sandbox.pause_webhooks();
    let (status, _, deposit) = post(
        &app,
        "/v1/wallet/deposits",
        &token,
        Some("dep-forged"),
        &json!({"amount": 700, "currency": "EUR"}),
    )
    .await;
    assert_eq!(status, 202, "{deposit}");

    let forged = json!({
        "id": "evt_forged_1",
        "type": "payment_intent.captured",
        "created": chrono::Utc::now().timestamp(),
        "data": {"rentify_intent_id": deposit["id"], "amount": 700_000, "currency": "EUR"},
    });
    let body = serde_json::to_vec(&forged).unwrap();
    let now = chrono::Utc::now().timestamp();
    let wrong_secret =
        rentify_platform::webhook_signature::signature_header(b"not-the-secret", now, &body);
    for signature in [None, Some("t=1,v1=00".to_owned()), Some(wrong_secret)] {
        let mut request = app
            .client
            .post(app.url("/v1/webhooks/payments"))
            .header("content-type", "application/json")
            .body(body.clone());
        if let Some(signature) = &signature {
            request = request.header("Rentify-Signature", signature);
        }
        let (status, _, answer) = parts(request.send().await.unwrap()).await;
        assert!(
            status == 400 || status == 401,
            "{signature:?} → {status} {answer}"
        );
    }
    let w = wallet(&app, &token).await;
    assert_eq!(w["balance"], 0, "{w}");

    // The real, signed one credits the real amount.
    sandbox.resume_webhooks();
    wallet_reaches(&app, &token, 700).await;
}

#[tokio::test]
async fn an_ordinary_withdrawal_is_paid_out_and_the_money_leaves() {
    let app = app_without_review().await;
    let (_, token) = app.user("saver@example.com").await;
    add_card(&app, &token, "tok_visa").await;
    funded(&app, &token, 10_000).await;

    let (status, body) = withdraw(&app, &token, 1000).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(error_code(&body), "payout_account_required");

    // Only tokens: an account number is refused, as is an unknown token.
    for bad in ["DE89 3704 0044 0532 0130 00", "btok_unknown"] {
        let (status, _, body) = post(
            &app,
            "/v1/payouts/setup",
            &token,
            None,
            &json!({"token": bad}),
        )
        .await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    let account = setup_payouts(&app, &token, "btok_ok").await;
    assert_eq!(account["object"], "payout_account");
    assert_eq!(account["last4"].as_str().unwrap().len(), 4);
    assert!(account["bank_name"].is_string());

    let (status, withdrawal) = withdraw(&app, &token, 10_000).await;
    assert_eq!(status, 201, "{withdrawal}");
    assert_eq!(withdrawal["object"], "withdrawal");
    assert_eq!(withdrawal["status"], "approved");
    assert_eq!(withdrawal["flags"], json!([]));
    let payout_id = withdrawal["payout_id"]
        .as_str()
        .expect("a payout")
        .to_owned();

    let payout = payout_reaches(&app, &token, &payout_id, "paid").await;
    assert_eq!(payout["object"], "payout");
    assert_eq!(payout["kind"], "withdrawal");
    assert_eq!(payout["amount"], 10_000);
    assert!(
        payout["provider_payout_id"]
            .as_str()
            .unwrap()
            .starts_with("po_")
    );

    let w = wallet(&app, &token).await;
    assert_eq!(
        (w["balance"].as_i64(), w["held"].as_i64()),
        (Some(0), Some(0)),
        "{w}"
    );
    assert_eq!(house_balance(&app, "payouts_pending").await, 0);
    // In by card, out to the bank: the outside world is square.
    assert_eq!(house_balance(&app, "gateway_clearing").await, 0);

    let (status, body) = withdraw(&app, &token, 1).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(error_code(&body), "insufficient_funds");
}

#[tokio::test]
async fn a_failed_payout_puts_the_money_back_in_the_wallet() {
    let app = app_without_review().await;
    let (_, token) = app.user("closed-account@example.com").await;
    add_card(&app, &token, "tok_visa").await;
    funded(&app, &token, 3000).await;
    setup_payouts(&app, &token, "btok_fail").await;

    let (status, withdrawal) = withdraw(&app, &token, 3000).await;
    assert_eq!(status, 201, "{withdrawal}");
    assert_eq!(withdrawal["status"], "approved");
    let payout_id = withdrawal["payout_id"].as_str().unwrap().to_owned();
    let payout = payout_reaches(&app, &token, &payout_id, "failed").await;
    assert_eq!(payout["failure_code"], "account_closed");

    let w = wallet_reaches(&app, &token, 3000).await;
    assert_eq!(w["available"], 3000);
    assert_eq!(w["recent"][0]["kind"], "payout_return");
    assert_eq!(w["recent"][0]["amount"], 3000);
    assert_eq!(house_balance(&app, "payouts_pending").await, 0);

    // A late duplicate of the failure changes nothing.
    let payments = app.modules.payments.clone();
    let sandbox = payments.sandbox().unwrap();
    sandbox.redeliver_all(2).await;
    assert!(sandbox.wait_idle(Duration::from_secs(10)).await);
    assert_eq!(wallet(&app, &token).await["balance"], 3000);
}

#[tokio::test]
async fn a_flagged_withdrawal_waits_for_an_admin() {
    // Default fraud settings: withdrawing right after a deposit is flagged.
    let app = TestApp::spawn().await;
    let (_, token) = app.user("hasty@example.com").await;
    let (_, admin) = app.admin("treasurer@example.com").await;
    add_card(&app, &token, "tok_visa").await;
    funded(&app, &token, 4000).await;
    setup_payouts(&app, &token, "btok_ok").await;

    let (status, first) = withdraw(&app, &token, 4000).await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["status"], "in_review");
    assert!(first["payout_id"].is_null());
    let checks: Vec<&str> = first["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["check"].as_str().unwrap())
        .collect();
    assert!(checks.contains(&"deposit_then_withdraw"), "{first}");
    assert!(first["flags"][0]["detail"].is_string());
    let w = wallet(&app, &token).await;
    assert_eq!(
        (
            w["balance"].as_i64(),
            w["held"].as_i64(),
            w["available"].as_i64()
        ),
        (Some(4000), Some(4000), Some(0)),
        "{w}"
    );
    // The money is held: nothing more can leave.
    let (status, body) = withdraw(&app, &token, 1).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(error_code(&body), "insufficient_funds");

    let (status, _) = app
        .call_parts(
            Method::GET,
            "/v1/admin/withdrawals?status=in_review",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, 403);
    let (status, queue) = app
        .call_parts(
            Method::GET,
            "/v1/admin/withdrawals?status=in_review",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 200, "{queue}");
    assert_eq!(queue["object"], "list");
    assert_eq!(queue["data"][0]["id"], first["id"]);

    let id = first["id"].as_str().unwrap();
    let (status, body) = app
        .call_parts(
            Method::POST,
            &format!("/v1/admin/withdrawals/{id}/reject"),
            Some(&token),
            Some(&json!({"reason": "mine"})),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    let (status, rejected) = app
        .call_parts(
            Method::POST,
            &format!("/v1/admin/withdrawals/{id}/reject"),
            Some(&admin),
            Some(&json!({"reason": "card deposit withdrawn at once"})),
        )
        .await;
    assert_eq!(status, 200, "{rejected}");
    assert_eq!(rejected["status"], "rejected");
    assert_eq!(rejected["reason"], "card deposit withdrawn at once");
    let w = wallet(&app, &token).await;
    assert_eq!(
        (w["held"].as_i64(), w["available"].as_i64()),
        (Some(0), Some(4000)),
        "{w}"
    );
    for action in ["reject", "approve"] {
        let (status, body) = app
            .call_parts(
                Method::POST,
                &format!("/v1/admin/withdrawals/{id}/{action}"),
                Some(&admin),
                Some(&json!({"reason": "again"})),
            )
            .await;
        assert_eq!(status, 409, "{action} twice: {body}");
        assert_eq!(error_code(&body), "invalid_payment_state");
    }

    // A second flagged one, approved: paid out.
    let (status, second) = withdraw(&app, &token, 1500).await;
    assert_eq!(status, 201, "{second}");
    assert_eq!(second["status"], "in_review");
    let id = second["id"].as_str().unwrap();
    let (status, approved) = app
        .call_parts(
            Method::POST,
            &format!("/v1/admin/withdrawals/{id}/approve"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 200, "{approved}");
    assert_eq!(approved["status"], "approved");
    let payout_id = approved["payout_id"].as_str().unwrap();
    payout_reaches(&app, &token, payout_id, "paid").await;
    let (status, body) = app
        .call_parts(
            Method::POST,
            &format!("/v1/admin/withdrawals/{id}/approve"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(error_code(&body), "invalid_payment_state");
    let w = wallet(&app, &token).await;
    assert_eq!(
        (w["balance"].as_i64(), w["available"].as_i64()),
        (Some(2500), Some(2500)),
        "{w}"
    );
}

#[tokio::test]
async fn concurrent_withdrawals_never_spend_the_same_money_twice() {
    let app = app_without_review().await;
    let (_, token) = app.user("racer@example.com").await;
    add_card(&app, &token, "tok_visa").await;
    funded(&app, &token, 3500).await;
    setup_payouts(&app, &token, "btok_ok").await;

    let attempts = (0..20).map(|_| withdraw(&app, &token, 1000));
    let results = futures::future::join_all(attempts).await;
    let succeeded = results.iter().filter(|(status, _)| *status == 201).count();
    for (status, body) in &results {
        assert!(*status == 201 || *status == 409, "{status} {body}");
        if *status == 409 {
            assert_eq!(error_code(body), "insufficient_funds");
        }
    }
    assert_eq!(succeeded, 3, "{results:?}");

    let w = wallet(&app, &token).await;
    assert_eq!(w["available"], 500, "{w}");
    let negative: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM ledger_accounts WHERE kind = 'wallet' AND posted - pending_debits < 0",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(negative, 0);
    let (status, page) = app
        .call_parts(Method::GET, "/v1/payouts?limit=2", Some(&token), None)
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["data"].as_array().unwrap().len(), 2);
    let next = page["next_cursor"].as_str().expect("a second page");
    let (_, rest) = app
        .call_parts(
            Method::GET,
            &format!("/v1/payouts?limit=2&cursor={next}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(rest["data"].as_array().unwrap().len(), 1, "{rest}");
    assert!(rest["next_cursor"].is_null());
}

#[tokio::test]
async fn the_daily_run_pays_out_wallets_and_resends_after_an_outage() {
    let app = app_without_review().await;
    let (_, token) = app.user("earner@example.com").await;
    let (_, other) = app.user("no-bank@example.com").await;
    for t in [&token, &other] {
        add_card(&app, t, "tok_visa").await;
        funded(&app, t, 2000).await;
    }
    setup_payouts(&app, &token, "btok_ok").await;
    let payments = app.modules.payments.clone();
    let sandbox = payments.sandbox().unwrap();

    // The gateway is down for the first run: the payout waits, pending.
    sandbox.inject(rentify_payments::sandbox::Fault::Unavailable);
    let first = rentify_payments::payouts::run_daily(&payments).await;
    assert!(first.is_err(), "an outage makes the job retry");
    let (_, page) = app
        .call_parts(Method::GET, "/v1/payouts", Some(&token), None)
        .await;
    assert_eq!(page["data"][0]["status"], "pending", "{page}");
    assert_eq!(page["data"][0]["kind"], "earnings");
    let id = page["data"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(wallet(&app, &token).await["balance"], 0);

    // The retry sends it, once; the user without a bank keeps their money.
    let sent = rentify_payments::payouts::run_daily(&payments)
        .await
        .unwrap();
    assert_eq!(sent, 1);
    payout_reaches(&app, &token, &id, "paid").await;
    assert_eq!(
        rentify_payments::payouts::run_daily(&payments)
            .await
            .unwrap(),
        0
    );
    let (_, page) = app
        .call_parts(Method::GET, "/v1/payouts", Some(&token), None)
        .await;
    assert_eq!(page["data"].as_array().unwrap().len(), 1, "{page}");
    assert_eq!(wallet(&app, &other).await["balance"], 2000);
    assert_eq!(house_balance(&app, "payouts_pending").await, 0);
}

#[tokio::test]
async fn payments_bad_card_input_is_a_400_that_names_the_field() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user("cards@example.com").await;
    for (body, field) in [
        (json!({"token": "tok_visa", "type": "card"}), "type"),
        (json!({"token": 42}), "token"),
    ] {
        let (status, error) = app
            .call_parts(
                Method::POST,
                "/v1/payments/methods",
                Some(&token),
                Some(&body),
            )
            .await;
        assert_eq!(status, 400, "{error}");
        assert_eq!(error["error"]["code"], "validation_failed", "{error}");
        assert!(error.to_string().contains(field), "{error}");
    }
    let (status, error) = app
        .call_parts(
            Method::DELETE,
            "/v1/payments/methods/not-an-id",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, 404, "{error}");
    assert_eq!(error["error"]["code"], "not_found");
}
