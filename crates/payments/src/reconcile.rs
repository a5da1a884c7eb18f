//! Reconciliation: the daily proof that the books are right.
//!
//! The database already refuses an unbalanced transfer or an overdrawn
//! wallet; what it cannot see is a bug that writes the wrong (balanced)
//! thing, a running balance drifting from its entries through a trigger
//! bug, a booking whose money was never settled, or the gateway having
//! moved money the ledger does not know about (or the reverse). Each check
//! below looks for one of those and names every discrepancy, so an operator
//! can act on the report alone.
//!
//! Gateway and ledger clocks differ by the time a webhook takes, so a
//! movement near midnight may be on either side of it: the reverse checks
//! (ledger → gateway) accept a gateway record from the neighbouring days.

use std::collections::{HashMap, HashSet};

use axum::{Extension, Json};
use chrono::{DateTime, Days, NaiveDate, NaiveTime, Utc};
use rentify_platform::{
    ApiError, ApiResult, PlatformState, auth::AdminCaller, error::ErrorEnvelope, extract::Path,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::{
    Payments,
    error::PaymentError,
    gateway::{GatewayRecord, PaymentGateway},
};

pub fn routes() -> OpenApiRouter<PlatformState> {
    OpenApiRouter::new().routes(routes!(get_report, run_report))
}

/// One check of a report.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Check {
    /// `ledger_balanced`, `running_balances`, `booking_settlements`,
    /// `gateway_records`.
    pub name: String,
    pub ok: bool,
    /// What is wrong, one object per finding, each with an `issue` code.
    #[schema(value_type = Vec<Object>)]
    pub discrepancies: Vec<Value>,
}

/// A day's reconciliation.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Report {
    /// The UTC day whose gateway records and bookings were checked (the
    /// ledger-wide invariants are checked as of `generated_at`).
    pub day: NaiveDate,
    /// No check found anything.
    pub clean: bool,
    pub checks: Vec<Check>,
    pub generated_at: DateTime<Utc>,
}

impl Report {
    /// How many discrepancies all checks found.
    pub fn discrepancies(&self) -> usize {
        self.checks.iter().map(|c| c.discrepancies.len()).sum()
    }
}

fn check(name: &str, discrepancies: Vec<Value>) -> Check {
    Check {
        name: name.to_owned(),
        ok: discrepancies.is_empty(),
        discrepancies,
    }
}

/// `YYYY-MM-DD`, for the CLI (whose crate does not depend on chrono).
pub fn parse_day(raw: &str) -> anyhow::Result<NaiveDate> {
    NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .map_err(|e| anyhow::anyhow!("{raw:?} is not a date (YYYY-MM-DD): {e}"))
}

fn start_of(day: NaiveDate) -> DateTime<Utc> {
    day.and_time(NaiveTime::MIN).and_utc()
}

/// Reconciles `day`, stores the report (replacing an earlier one of the
/// same day) and exports the discrepancy count as a gauge.
pub async fn run(p: &Payments, day: NaiveDate) -> anyhow::Result<Report> {
    let checks = vec![
        check("ledger_balanced", ledger_balanced(p).await?),
        check("running_balances", running_balances(p).await?),
        check("booking_settlements", booking_settlements(p, day).await?),
        check("booking_escrow", booking_escrow(p).await?),
        check("gateway_records", gateway_records(p, day).await?),
    ];
    let report = Report {
        day,
        clean: checks.iter().all(|c| c.ok),
        checks,
        generated_at: Utc::now(),
    };
    let count = report.discrepancies();
    metrics::gauge!("payments_reconciliation_discrepancies").set(count as f64);
    if !report.clean {
        for c in report.checks.iter().filter(|c| !c.ok) {
            tracing::warn!(
                %day, check = c.name, discrepancies = ?c.discrepancies,
                "the ledger does not reconcile"
            );
        }
    }
    sqlx::query(
        "INSERT INTO reconciliation_reports (day, clean, report) VALUES ($1, $2, $3)
         ON CONFLICT (day) DO UPDATE
            SET clean = EXCLUDED.clean, report = EXCLUDED.report, created_at = now()",
    )
    .bind(day)
    .bind(report.clean)
    .bind(serde_json::to_value(&report)?)
    .execute(p.db())
    .await?;
    Ok(report)
}

/// (a) Double entry holds: posted money sums to zero per currency, and
/// every transfer's entries sum to zero and to its stated amount.
async fn ledger_balanced(p: &Payments) -> anyhow::Result<Vec<Value>> {
    let mut found = Vec::new();
    let currencies: Vec<(String, i64)> = sqlx::query_as(
        "SELECT e.currency::text, sum(e.amount)::bigint
           FROM ledger_entries e JOIN ledger_transfers t ON t.id = e.transfer_id
          WHERE t.status = 'posted'
          GROUP BY e.currency HAVING sum(e.amount) <> 0",
    )
    .fetch_all(p.db())
    .await?;
    for (currency, sum) in currencies {
        found.push(json!({"issue": "currency_unbalanced", "currency": currency, "sum": sum}));
    }
    let transfers: Vec<(Uuid, String, i64, i64, i64)> = sqlx::query_as(
        "SELECT t.id, t.kind, t.amount,
                coalesce(sum(e.amount), 0)::bigint,
                coalesce(sum(e.amount) FILTER (WHERE e.amount > 0), 0)::bigint
           FROM ledger_transfers t LEFT JOIN ledger_entries e ON e.transfer_id = t.id
          GROUP BY t.id
         HAVING coalesce(sum(e.amount), 0) <> 0
             OR coalesce(sum(e.amount) FILTER (WHERE e.amount > 0), 0) <> t.amount",
    )
    .fetch_all(p.db())
    .await?;
    for (id, kind, amount, sum, credits) in transfers {
        found.push(json!({
            "issue": "transfer_unbalanced", "transfer_id": id, "kind": kind,
            "amount": amount, "sum": sum, "credits": credits,
        }));
    }
    Ok(found)
}

/// (b) Every tracked account's running balance equals its entries, and no
/// wallet is below zero. One statement, so one snapshot of both.
async fn running_balances(p: &Payments) -> anyhow::Result<Vec<Value>> {
    let mut found = Vec::new();
    type Row = (Uuid, String, Option<Uuid>, String, i64, i64, i64, i64);
    let drifted: Vec<Row> = sqlx::query_as(
        "SELECT a.id, a.kind, a.owner_id, a.currency::text, a.posted, a.pending_debits,
                b.posted, b.pending_debits
           FROM ledger_accounts a JOIN ledger_balances b ON b.account_id = a.id
          WHERE a.tracked AND (a.posted <> b.posted OR a.pending_debits <> b.pending_debits)",
    )
    .fetch_all(p.db())
    .await?;
    for (id, kind, owner, currency, posted, pending, entries_posted, entries_pending) in drifted {
        found.push(json!({
            "issue": "running_balance_drift", "account_id": id, "kind": kind,
            "owner_id": owner, "currency": currency,
            "running": {"posted": posted, "pending_debits": pending},
            "entries": {"posted": entries_posted, "pending_debits": entries_pending},
        }));
    }
    let negative: Vec<(Uuid, Option<Uuid>, String, i64, i64)> = sqlx::query_as(
        "SELECT account_id, owner_id, currency::text, posted, pending_debits
           FROM ledger_balances
          WHERE kind = 'wallet' AND (posted < 0 OR posted - pending_debits < 0)",
    )
    .fetch_all(p.db())
    .await?;
    for (id, owner, currency, posted, pending) in negative {
        found.push(json!({
            "issue": "wallet_negative", "account_id": id, "owner_id": owner,
            "currency": currency, "posted": posted, "pending_debits": pending,
        }));
    }
    Ok(found)
}

/// (c) A finished booking (`completed`, `resolved`) with a payment was
/// captured and settled. Only bookings finished by the end of `day`: later
/// ones may still have their settlement job queued.
async fn booking_settlements(p: &Payments, day: NaiveDate) -> anyhow::Result<Vec<Value>> {
    let end = start_of(day + Days::new(1));
    let rows: Vec<(Uuid, String, Uuid, String, bool)> = sqlx::query_as(
        "SELECT b.id, b.status, i.id, i.status, s.booking_id IS NOT NULL
           FROM bookings b
           JOIN payment_intents i ON i.booking_id = b.id
           LEFT JOIN booking_settlements s ON s.booking_id = b.id
          WHERE b.status IN ('completed', 'resolved') AND b.updated_at < $1
            AND (i.status <> 'captured' OR s.booking_id IS NULL)
          ORDER BY b.id",
    )
    .bind(end)
    .fetch_all(p.db())
    .await?;
    Ok(rows
        .into_iter()
        .map(|(booking, status, intent, intent_status, _)| {
            let issue = if intent_status == "captured" {
                "missing_settlement"
            } else {
                "missing_capture"
            };
            json!({
                "issue": issue, "booking_id": booking, "booking_status": status,
                "intent_id": intent, "intent_status": intent_status,
            })
        })
        .collect())
}

/// (c') Per booking, escrow and held deposits never go below zero (which
/// would spend other bookings' money, invisible in the accounts' totals),
/// and a settled booking leaves nothing behind in either.
async fn booking_escrow(p: &Payments) -> anyhow::Result<Vec<Value>> {
    let rows: Vec<(Uuid, String, i64, bool)> = sqlx::query_as(
        "SELECT t.booking_id, a.kind, sum(e.amount)::bigint,
                EXISTS (SELECT 1 FROM booking_settlements s WHERE s.booking_id = t.booking_id)
           FROM ledger_entries e
           JOIN ledger_transfers t ON t.id = e.transfer_id
           JOIN ledger_accounts a ON a.id = e.account_id
          WHERE t.status = 'posted' AND t.booking_id IS NOT NULL
            AND a.kind IN ('escrow', 'deposits_held')
          GROUP BY t.booking_id, a.kind
         HAVING sum(e.amount) < 0
             OR (sum(e.amount) <> 0
                 AND EXISTS (SELECT 1 FROM booking_settlements s WHERE s.booking_id = t.booking_id))
          ORDER BY 1, 2",
    )
    .fetch_all(p.db())
    .await?;
    Ok(rows
        .into_iter()
        .map(|(booking, kind, left, settled)| {
            let issue = if left < 0 {
                "booking_overdrawn"
            } else {
                "settled_booking_left_money"
            };
            json!({"issue": issue, "booking_id": booking, "account": kind, "amount": left, "settled": settled})
        })
        .collect())
}

/// The Rentify intent of a gateway record: echoed by the gateway, else
/// found by the gateway's intent id.
fn record_intent(record: &GatewayRecord, by_provider: &HashMap<String, Uuid>) -> Option<Uuid> {
    record.intent_id.or_else(|| {
        record
            .provider_intent_id
            .as_ref()
            .and_then(|id| by_provider.get(id).copied())
    })
}

/// (d) The gateway's records of `day` against the ledger, both ways.
async fn gateway_records(p: &Payments, day: NaiveDate) -> anyhow::Result<Vec<Value>> {
    let gateway = p.gateway();
    let records = gateway.records(day).await.map_err(PaymentError::from)?;
    let mut nearby = records.clone();
    for other in [day - Days::new(1), day + Days::new(1)] {
        nearby.extend(gateway.records(other).await.map_err(PaymentError::from)?);
    }
    let start = start_of(day);
    let end = start_of(day + Days::new(1));
    let mut found = Vec::new();

    let provider_intents: Vec<String> = nearby
        .iter()
        .filter_map(|r| r.provider_intent_id.clone())
        .collect();
    let by_provider: HashMap<String, Uuid> = sqlx::query_as::<_, (String, Uuid)>(
        "SELECT provider_intent_id, id FROM payment_intents WHERE provider_intent_id = ANY($1)",
    )
    .bind(&provider_intents)
    .fetch_all(p.db())
    .await?
    .into_iter()
    .collect();

    // Captures: the ledger's posted card money of the intent (charge and
    // deposit holds, or a wallet top-up) is what the gateway captured.
    let captures: Vec<&GatewayRecord> = records.iter().filter(|r| r.kind == "capture").collect();
    let capture_intents: Vec<Uuid> = captures
        .iter()
        .filter_map(|r| record_intent(r, &by_provider))
        .collect();
    let captured: HashMap<Uuid, i64> = sqlx::query_as::<_, (Uuid, i64)>(
        "SELECT intent_id, sum(amount)::bigint FROM ledger_transfers
          WHERE intent_id = ANY($1) AND status = 'posted'
            AND kind IN ('charge', 'deposit_hold', 'wallet_deposit')
          GROUP BY intent_id",
    )
    .bind(&capture_intents)
    .fetch_all(p.db())
    .await?
    .into_iter()
    .collect();
    for record in &captures {
        let intent = record_intent(record, &by_provider);
        let ledger = intent.and_then(|i| captured.get(&i).copied()).unwrap_or(0);
        if ledger != record.amount {
            found.push(json!({
                "issue": if ledger == 0 { "capture_without_ledger" } else { "capture_amount_mismatch" },
                "provider_id": record.provider_id, "intent_id": intent,
                "provider_intent_id": record.provider_intent_id,
                "gateway_amount": record.amount, "ledger_amount": ledger,
                "currency": record.currency,
            }));
        }
    }

    // Refunds: one ledger transfer carries the refund's id.
    let refunds: Vec<&GatewayRecord> = records.iter().filter(|r| r.kind == "refund").collect();
    let refund_ids: Vec<String> = refunds.iter().map(|r| r.provider_id.clone()).collect();
    let refunded: HashMap<String, i64> = sqlx::query_as::<_, (String, i64)>(
        "SELECT provider_ref, sum(amount)::bigint FROM ledger_transfers
          WHERE provider_ref = ANY($1) AND status = 'posted'
          GROUP BY provider_ref",
    )
    .bind(&refund_ids)
    .fetch_all(p.db())
    .await?
    .into_iter()
    .collect();
    for record in &refunds {
        let ledger = refunded.get(&record.provider_id).copied().unwrap_or(0);
        if ledger != record.amount {
            found.push(json!({
                "issue": if ledger == 0 { "refund_without_ledger" } else { "refund_amount_mismatch" },
                "provider_id": record.provider_id, "intent_id": record_intent(record, &by_provider),
                "gateway_amount": record.amount, "ledger_amount": ledger,
                "currency": record.currency,
            }));
        }
    }

    // Payouts: a `payouts` row, by the gateway's id or by our reference.
    let gateway_payouts: Vec<&GatewayRecord> =
        records.iter().filter(|r| r.kind == "payout").collect();
    let payout_rows: Vec<(Uuid, Option<String>, i64)> = sqlx::query_as(
        "SELECT id, provider_payout_id, amount FROM payouts
          WHERE provider_payout_id = ANY($1) OR id::text = ANY($2)",
    )
    .bind(
        gateway_payouts
            .iter()
            .map(|r| r.provider_id.clone())
            .collect::<Vec<_>>(),
    )
    .bind(
        gateway_payouts
            .iter()
            .filter_map(|r| r.reference.clone())
            .collect::<Vec<_>>(),
    )
    .fetch_all(p.db())
    .await?;
    for record in &gateway_payouts {
        let row = payout_rows.iter().find(|(id, provider, _)| {
            provider.as_deref() == Some(record.provider_id.as_str())
                || record.reference.as_deref() == Some(id.to_string().as_str())
        });
        match row {
            None => found.push(json!({
                "issue": "payout_without_record", "provider_id": record.provider_id,
                "reference": record.reference, "gateway_amount": record.amount,
                "currency": record.currency,
            })),
            Some((id, _, amount)) if *amount != record.amount => found.push(json!({
                "issue": "payout_amount_mismatch", "provider_id": record.provider_id,
                "payout_id": id, "gateway_amount": record.amount, "ledger_amount": amount,
                "currency": record.currency,
            })),
            Some(_) => {}
        }
    }

    // The reverse: what the ledger says moved that day, unknown to the
    // gateway on that day or the days around it.
    let gateway_capture_intents: HashSet<Uuid> = nearby
        .iter()
        .filter(|r| r.kind == "capture")
        .filter_map(|r| record_intent(r, &by_provider))
        .collect();
    let ledger_captures: Vec<(Uuid, i64)> = sqlx::query_as(
        "SELECT intent_id, sum(amount)::bigint FROM ledger_transfers
          WHERE status = 'posted' AND intent_id IS NOT NULL
            AND kind IN ('charge', 'deposit_hold', 'wallet_deposit')
            AND coalesce(resolved_at, created_at) >= $1 AND coalesce(resolved_at, created_at) < $2
          GROUP BY intent_id",
    )
    .bind(start)
    .bind(end)
    .fetch_all(p.db())
    .await?;
    for (intent, amount) in ledger_captures {
        if !gateway_capture_intents.contains(&intent) {
            found.push(json!({
                "issue": "capture_missing_at_gateway", "intent_id": intent, "ledger_amount": amount,
            }));
        }
    }
    let gateway_refunds: HashSet<&str> = nearby
        .iter()
        .filter(|r| r.kind == "refund")
        .map(|r| r.provider_id.as_str())
        .collect();
    // A refund transfer names the gateway's refund; one without a
    // reference (or naming the intent) never went to the gateway.
    let ledger_refunds: Vec<(Uuid, String, String, i64)> = sqlx::query_as(
        "SELECT t.id, t.kind, t.provider_ref, t.amount FROM ledger_transfers t
          WHERE t.status = 'posted' AND t.kind IN ('refund', 'deposit_release')
            AND t.provider_ref IS NOT NULL
            AND NOT EXISTS (SELECT 1 FROM payment_intents i WHERE i.provider_intent_id = t.provider_ref)
            AND t.created_at >= $1 AND t.created_at < $2",
    )
    .bind(start)
    .bind(end)
    .fetch_all(p.db())
    .await?;
    for (id, kind, reference, amount) in ledger_refunds {
        if !gateway_refunds.contains(reference.as_str()) {
            found.push(json!({
                "issue": "refund_missing_at_gateway", "transfer_id": id, "kind": kind,
                "provider_ref": reference, "ledger_amount": amount,
            }));
        }
    }
    let gateway_payout_keys: HashSet<&str> = nearby
        .iter()
        .filter(|r| r.kind == "payout")
        .flat_map(|r| [Some(r.provider_id.as_str()), r.reference.as_deref()])
        .flatten()
        .collect();
    // A failed payout moved no money, so the gateway does not report it.
    let sent_payouts: Vec<(Uuid, String, i64)> = sqlx::query_as(
        "SELECT id, provider_payout_id, amount FROM payouts
          WHERE provider_payout_id IS NOT NULL AND status <> 'failed'
            AND created_at >= $1 AND created_at < $2",
    )
    .bind(start)
    .bind(end)
    .fetch_all(p.db())
    .await?;
    for (id, provider, amount) in sent_payouts {
        if !gateway_payout_keys.contains(provider.as_str())
            && !gateway_payout_keys.contains(id.to_string().as_str())
        {
            found.push(json!({
                "issue": "payout_missing_at_gateway", "payout_id": id,
                "provider_payout_id": provider, "ledger_amount": amount,
            }));
        }
    }
    Ok(found)
}

/// A stored reconciliation report.
#[utoipa::path(
    get, path = "/v1/admin/reconciliation/{date}", tag = "admin",
    security(("bearer" = [])),
    params(("date" = String, Path, description = "The UTC day, `YYYY-MM-DD`")),
    responses(
        (status = 200, description = "The report", body = Report),
        (status = 401, description = "`unauthenticated`", body = ErrorEnvelope),
        (status = 403, description = "Admins only", body = ErrorEnvelope),
        (status = 404, description = "Not reconciled yet", body = ErrorEnvelope),
    )
)]
pub async fn get_report(
    Extension(payments): Extension<Payments>,
    _admin: AdminCaller,
    Path(date): Path<NaiveDate>,
) -> ApiResult<Json<Report>> {
    let stored: Option<sqlx::types::Json<Report>> =
        sqlx::query_scalar("SELECT report FROM reconciliation_reports WHERE day = $1")
            .bind(date)
            .fetch_optional(payments.db())
            .await?;
    stored.map(|r| Json(r.0)).ok_or_else(ApiError::not_found)
}

/// Reconciles a day now (replacing its stored report) and returns it.
#[utoipa::path(
    post, path = "/v1/admin/reconciliation/{date}", tag = "admin",
    security(("bearer" = [])),
    params(("date" = String, Path, description = "The UTC day, `YYYY-MM-DD`")),
    responses(
        (status = 200, description = "The report", body = Report),
        (status = 401, description = "`unauthenticated`", body = ErrorEnvelope),
        (status = 403, description = "Admins only", body = ErrorEnvelope),
        (status = 404, description = "Not a date", body = ErrorEnvelope),
        (status = 503, description = "`payment_provider_unavailable`", body = ErrorEnvelope),
    )
)]
pub async fn run_report(
    Extension(payments): Extension<Payments>,
    _admin: AdminCaller,
    Path(date): Path<NaiveDate>,
) -> ApiResult<Json<Report>> {
    let report =
        run(&payments, date)
            .await
            .map_err(|error| match error.downcast::<PaymentError>() {
                Ok(error) => ApiError::from(error),
                Err(error) => ApiError::internal(error),
            })?;
    Ok(Json(report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_parse_strictly() {
        assert_eq!(
            parse_day("2026-11-22").unwrap(),
            NaiveDate::from_ymd_opt(2026, 11, 22).unwrap()
        );
        assert!(parse_day("22/11/2026").is_err());
        assert!(parse_day("2026-02-30").is_err());
    }

    #[test]
    fn a_report_is_clean_only_without_discrepancies() {
        let clean = check("a", vec![]);
        let dirty = check("b", vec![json!({"issue": "x"})]);
        assert!(clean.ok);
        assert!(!dirty.ok);
        let report = Report {
            day: NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
            clean: false,
            checks: vec![clean, dirty],
            generated_at: Utc::now(),
        };
        assert_eq!(report.discrepancies(), 1);
    }
}
