//! The ledger's rules hold against any SQL, not only the Rust API: a
//! transfer must balance (checked at commit), entries are append-only and
//! written only with their transfer, a transfer changes once (pending →
//! posted | voided), and a wallet never goes below zero, also when twenty
//! transactions race to spend it.

use rentify_payments::ledger::{self, AccountKind, LedgerError, NewTransfer, Phase, TransferKind};
use sqlx::PgPool;
use uuid::Uuid;

use crate::support::TestApp;

/// The database's refusal of `sql` (run in its own transaction, committed).
async fn refused(db: &PgPool, sql: &str) -> String {
    let mut tx = db.begin().await.unwrap();
    let outcome = match sqlx::raw_sql(sql).execute(&mut *tx).await {
        Ok(_) => tx.commit().await.map(|_| ()),
        Err(error) => Err(error),
    };
    match outcome {
        Ok(()) => panic!("the database accepted: {sql}"),
        Err(error) => error.to_string(),
    }
}

#[tokio::test]
async fn payments_the_ledgers_rules_are_enforced_by_the_database() {
    let app = TestApp::spawn().await;
    let p = &app.modules.payments;
    let clearing = p
        .accounts()
        .house(AccountKind::GatewayClearing, "EUR")
        .await
        .unwrap();
    let revenue = p
        .accounts()
        .house(AccountKind::PlatformRevenue, "EUR")
        .await
        .unwrap();
    let (user, _) = app.user("wallet@example.com").await;
    let user: Uuid = user.parse().unwrap();
    let wallet = p.accounts().wallet(user, "EUR").await.unwrap();

    // An unbalanced transfer is refused at commit, whoever writes it.
    let error = refused(
        &app.db,
        &format!(
            "SELECT ledger_transfer(gen_random_uuid(), 'adjustment', 'posted', 'EUR',
                ARRAY['{clearing}', '{revenue}']::uuid[], ARRAY[-100, 99]::bigint[],
                NULL, NULL, NULL, NULL, 'off by one')"
        ),
    )
    .await;
    assert!(error.contains("does not balance"), "{error}");

    // A balanced one is fine; its entries then cannot change or go.
    let mut tx = app.db.begin().await.unwrap();
    let id = ledger::transfer(
        &mut tx,
        NewTransfer::between(
            TransferKind::WalletDeposit,
            Phase::Posted,
            "EUR",
            clearing,
            wallet,
            1_000,
        ),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    for sql in [
        format!("UPDATE ledger_entries SET amount = amount * 2 WHERE transfer_id = '{id}'"),
        format!("DELETE FROM ledger_entries WHERE transfer_id = '{id}'"),
        "TRUNCATE ledger_entries CASCADE".to_owned(),
        format!("DELETE FROM ledger_transfers WHERE id = '{id}'"),
        // Posted is final.
        format!("UPDATE ledger_transfers SET status = 'voided' WHERE id = '{id}'"),
        format!("UPDATE ledger_transfers SET amount = 1 WHERE id = '{id}'"),
    ] {
        let error = refused(&app.db, &sql).await;
        assert!(
            error.contains("append-only") || error.contains("only pending"),
            "{sql}: {error}"
        );
    }
    // Entries only with their transfer, in its transaction (a balanced pair
    // slipped into an old transfer is refused too).
    let error = refused(
        &app.db,
        &format!(
            "INSERT INTO ledger_entries (transfer_id, account_id, currency, amount, tracked)
             VALUES ('{id}', '{clearing}', 'EUR', -5, false), ('{id}', '{revenue}', 'EUR', 5, false)"
        ),
    )
    .await;
    assert!(error.contains("only be added"), "{error}");
    // A wallet entry on a transfer that does not declare one would skip the
    // running balance: refused.
    let error = refused(
        &app.db,
        &format!(
            "INSERT INTO ledger_transfers (id, kind, status, currency, amount)
             VALUES ('{t}', 'adjustment', 'posted', 'EUR', 5);
             INSERT INTO ledger_entries (transfer_id, account_id, currency, amount, tracked)
             VALUES ('{t}', '{clearing}', 'EUR', -5, false), ('{t}', '{wallet}', 'EUR', 5, true)",
            t = Uuid::now_v7()
        ),
    )
    .await;
    assert!(error.contains("has_tracked"), "{error}");
    // Lying about the account's `tracked` fails its foreign key.
    let error = refused(
        &app.db,
        &format!(
            "INSERT INTO ledger_transfers (id, kind, status, currency, amount)
             VALUES ('{t}', 'adjustment', 'posted', 'EUR', 5);
             INSERT INTO ledger_entries (transfer_id, account_id, currency, amount, tracked)
             VALUES ('{t}', '{clearing}', 'EUR', -5, false), ('{t}', '{wallet}', 'EUR', 5, false)",
            t = Uuid::now_v7()
        ),
    )
    .await;
    assert!(error.contains("foreign key"), "{error}");
    // Currencies do not mix.
    let error = refused(
        &app.db,
        &format!(
            "SELECT ledger_transfer(gen_random_uuid(), 'adjustment', 'posted', 'USD',
                ARRAY['{clearing}', '{revenue}']::uuid[], ARRAY[-100, 100]::bigint[],
                NULL, NULL, NULL, NULL, 'wrong currency')"
        ),
    )
    .await;
    assert!(error.contains("foreign key"), "{error}");

    // Twenty transactions race to take 100 each from a wallet of 1,000,
    // half of them as holds: exactly ten succeed and it ends at zero.
    let races = (0..20).map(|n| {
        let db = app.db.clone();
        async move {
            let mut tx = db.begin().await.unwrap();
            let phase = if n % 2 == 0 {
                Phase::Posted
            } else {
                Phase::Pending
            };
            let spent = ledger::transfer(
                &mut tx,
                NewTransfer::between(TransferKind::Withdrawal, phase, "EUR", wallet, revenue, 100),
            )
            .await;
            match spent {
                Ok(_) => tx.commit().await.map(|_| true).map_err(LedgerError::from),
                Err(LedgerError::InsufficientFunds) => Ok(false),
                Err(error) => Err(error),
            }
        }
    });
    let outcomes = futures::future::join_all(races).await;
    let won = outcomes
        .into_iter()
        .map(|o| o.expect("a refusal is insufficient_funds, nothing else"))
        .filter(|won| *won)
        .count();
    assert_eq!(won, 10);
    let mut conn = app.db.acquire().await.unwrap();
    let balance = ledger::wallet_balance(&mut conn, user, "EUR")
        .await
        .unwrap();
    assert_eq!(balance.available, 0, "{balance:?}");
    let error = refused(
        &app.db,
        &format!("UPDATE ledger_accounts SET posted = -1 WHERE id = '{wallet}'"),
    )
    .await;
    assert!(error.contains("ledger_no_overdraft"), "{error}");
    // Voiding the holds gives their money back; posting them would not
    // take it twice.
    let holds: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM ledger_transfers WHERE kind = 'withdrawal' AND status = 'pending'",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert!(!holds.is_empty());
    let mut tx = app.db.begin().await.unwrap();
    for hold in &holds {
        assert!(ledger::void(&mut tx, *hold).await.unwrap());
        assert!(
            !ledger::post(&mut tx, *hold).await.unwrap(),
            "voided is final"
        );
    }
    tx.commit().await.unwrap();
    let balance = ledger::wallet_balance(&mut conn, user, "EUR")
        .await
        .unwrap();
    assert_eq!(balance.available, 100 * holds.len() as i64);
    assert_eq!(balance.held, 0);
}
