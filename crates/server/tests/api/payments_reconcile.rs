//! Reconciliation: clean after real money flows, and a gateway movement
//! the ledger does not know is found and named — over HTTP and by the
//! `rentify ledger reconcile` command.

use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use crate::{
    payments_wallet::{
        add_card, app_without_review, funded, payout_reaches, setup_payouts, wallet_reaches,
        withdraw,
    },
    support::{TestApp, error_code},
};

fn today() -> String {
    chrono::Utc::now()
        .date_naive()
        .format("%Y-%m-%d")
        .to_string()
}

/// Deposits, a paid withdrawal and a failed one, all settled.
async fn money_moves(app: &TestApp) {
    let (_, saver) = app.user("saver@example.com").await;
    let (_, unlucky) = app.user("unlucky@example.com").await;
    for (token, bank) in [(&saver, "btok_ok"), (&unlucky, "btok_fail")] {
        add_card(app, token, "tok_visa").await;
        funded(app, token, 10_000).await;
        setup_payouts(app, token, bank).await;
        let (status, withdrawal) = withdraw(app, token, 4_000).await;
        assert_eq!(status, 201, "{withdrawal}");
        let payout = withdrawal["payout_id"].as_str().unwrap();
        let outcome = if bank == "btok_ok" { "paid" } else { "failed" };
        payout_reaches(app, token, payout, outcome).await;
    }
    wallet_reaches(app, &unlucky, 10_000).await;
    let payments = app.modules.payments.clone();
    assert!(
        payments
            .sandbox()
            .unwrap()
            .wait_idle(Duration::from_secs(10))
            .await
    );
}

fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {report}"))
}

/// A capture at the gateway that no ledger transfer matches: a charge the
/// processor made that Rentify never recorded.
async fn forge_unrecorded_capture(app: &TestApp) {
    for statement in [
        "INSERT INTO sandbox_gateway.methods (id, token, brand, last4, exp_month, exp_year, behaviour)
         VALUES ('pm_forged', 'tok_visa', 'visa', '4242', 12, 2031, 'succeed')",
        "INSERT INTO sandbox_gateway.intents
             (id, rentify_intent_id, method_id, amount, currency, status, amount_captured)
         VALUES ('pi_forged', gen_random_uuid(), 'pm_forged', 4321, 'EUR', 'captured', 4321)",
        "INSERT INTO sandbox_gateway.operations (id, kind, intent_id, reference, amount, currency)
         VALUES ('ch_forged', 'capture', 'pi_forged', 'forged', 4321, 'EUR')",
    ] {
        sqlx::query(statement).execute(&app.db).await.unwrap();
    }
}

#[tokio::test]
async fn the_books_reconcile_after_money_moved_and_a_stray_capture_is_named() {
    let app = app_without_review().await;
    let (_, admin) = app.admin("auditor@example.com").await;
    let (_, someone) = app.user("someone@example.com").await;
    money_moves(&app).await;
    let path = format!("/v1/admin/reconciliation/{}", today());

    let (status, body) = app.call_parts(Method::GET, &path, Some(&admin), None).await;
    assert_eq!(status, 404, "not reconciled yet: {body}");
    let (status, _) = app
        .call_parts(Method::POST, &path, Some(&someone), None)
        .await;
    assert_eq!(status, 403);

    let (status, report) = app
        .call_parts(Method::POST, &path, Some(&admin), None)
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["clean"], true, "{report}");
    assert_eq!(report["day"], today());
    for name in [
        "ledger_balanced",
        "running_balances",
        "booking_settlements",
        "gateway_records",
    ] {
        assert_eq!(check(&report, name)["ok"], true, "{name}: {report}");
    }
    let (status, stored) = app.call_parts(Method::GET, &path, Some(&admin), None).await;
    assert_eq!(status, 200);
    assert_eq!(stored, report);

    forge_unrecorded_capture(&app).await;
    let (status, report) = app
        .call_parts(Method::POST, &path, Some(&admin), None)
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["clean"], false, "{report}");
    let gateway = check(&report, "gateway_records");
    assert_eq!(gateway["ok"], false);
    let found = gateway["discrepancies"].as_array().unwrap();
    assert_eq!(found.len(), 1, "{report}");
    assert_eq!(found[0]["issue"], "capture_without_ledger");
    assert_eq!(found[0]["provider_id"], "ch_forged");
    assert_eq!(found[0]["gateway_amount"], 4321);
    assert_eq!(check(&report, "ledger_balanced")["ok"], true);
    // The stored report is replaced by the new run.
    let clean: bool =
        sqlx::query_scalar("SELECT clean FROM reconciliation_reports WHERE day = $1::date")
            .bind(today())
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert!(!clean);

    let (status, body) = app
        .call_parts(
            Method::GET,
            "/v1/admin/reconciliation/not-a-date",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(error_code(&body), "not_found");
}

#[tokio::test]
async fn the_daily_job_entry_point_reconciles_a_quiet_day() {
    let app = TestApp::spawn().await;
    let payments = app.modules.payments.clone();
    let yesterday = chrono::Utc::now().date_naive() - chrono::Days::new(1);
    let report = rentify_payments::reconcile::run(&payments, yesterday)
        .await
        .unwrap();
    assert!(report.clean, "{report:?}");
    assert_eq!(report.checks.len(), 5);
}

/// Runs the built binary against the test's database.
async fn reconcile_cli(app: &TestApp) -> (Option<i32>, Value, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_rentify"))
        .args(["ledger", "reconcile", "--date", &today()])
        .env("DATABASE_URL", &app.database.url)
        .env("RUST_LOG", "off")
        .env("RATE_LIMITS", "off")
        .env("PORT", "0")
        .output()
        .await
        .expect("the rentify binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let report = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("not a JSON report ({e}): {stdout}\nstderr: {stderr}"));
    (output.status.code(), report, stderr)
}

#[tokio::test]
async fn the_cli_prints_the_report_and_fails_when_the_books_do_not_balance() {
    let app = app_without_review().await;
    money_moves(&app).await;

    let (code, report, stderr) = reconcile_cli(&app).await;
    assert_eq!(code, Some(0), "{report}\n{stderr}");
    assert_eq!(report["clean"], true, "{report}");
    assert_eq!(report["day"], today());

    forge_unrecorded_capture(&app).await;
    let (code, report, _) = reconcile_cli(&app).await;
    assert_eq!(code, Some(1), "{report}");
    assert_eq!(report["clean"], false);
    assert_eq!(
        check(&report, "gateway_records")["discrepancies"][0]["provider_id"],
        "ch_forged"
    );
}
