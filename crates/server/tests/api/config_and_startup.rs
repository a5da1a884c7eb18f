use std::process::Command;

use crate::support::TestDatabase;

fn rentify() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rentify"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("LOG_FORMAT", "json");
    command
}

#[test]
fn a_bad_variable_stops_start_up_naming_it() {
    let output = rentify()
        .arg("serve")
        .env("PORT", "eighty")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("PORT"), "{stderr}");

    let output = rentify()
        .arg("serve")
        .env("RATE_LIMIT_WRITE", "fast")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains("RATE_LIMIT_WRITE"),
        "{stderr}"
    );
}

#[test]
fn an_unreachable_database_is_reported_without_secrets() {
    let output = rentify()
        .arg("migrate")
        .env(
            "DATABASE_URL",
            "postgres://rentify:s3cret-pw@127.0.0.1:1/rentify",
        )
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot connect to PostgreSQL"), "{stderr}");
    assert!(
        !stderr.contains("s3cret-pw"),
        "the password leaked: {stderr}"
    );
}

#[test]
fn openapi_prints_a_3_1_document() {
    let output = rentify().arg("openapi").output().unwrap();
    assert!(output.status.success());
    let doc: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/health/live"]["get"].is_object());
    assert!(doc["components"]["schemas"]["ErrorEnvelope"].is_object());
}

#[tokio::test]
async fn migrate_and_seed_run_twice_on_a_database() {
    let database = TestDatabase::create().await;
    for _ in 0..2 {
        for args in [&["migrate"][..], &["seed", "--demo"][..]] {
            let output = rentify()
                .args(args)
                .env("DATABASE_URL", &database.url)
                .output()
                .unwrap();
            assert!(
                output.status.success(),
                "{args:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
    // Seeding twice leaves the same demo accounts, the admin among them.
    let pool = sqlx::PgPool::connect(&database.url).await.unwrap();
    let accounts: Vec<(String, Vec<String>)> = sqlx::query_as(
        "SELECT u.email, ARRAY(SELECT role FROM user_roles r WHERE r.user_id = u.id ORDER BY role)
         FROM users u ORDER BY u.email",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    assert_eq!(accounts.len(), 3, "{accounts:?}");
    assert!(accounts.contains(&(
        "admin@rentify.test".into(),
        vec!["admin".into(), "renter".into()]
    )));
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `rentify <command>` on a free port, waits until `/health/ready`
/// answers 200, checks `/metrics`, then stops it with SIGTERM and expects a
/// clean exit: what an orchestrator does.
async fn serves_probes_and_stops_cleanly(command: &str) {
    let database = TestDatabase::create().await;
    let port = free_port();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_rentify"))
        .arg(command)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", &database.url)
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("SHUTDOWN_GRACE_SECS", "5")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let mut ready = false;
    for _ in 0..100 {
        if let Ok(response) = client.get(format!("{base}/health/ready")).send().await
            && response.status() == 200
        {
            ready = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(ready, "`rentify {command}` never became ready");
    let metrics = client.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(
        metrics
            .text()
            .await
            .unwrap()
            .contains("http_requests_total")
    );

    let pid = child.id().unwrap().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::time::timeout(std::time::Duration::from_secs(15), child.wait())
        .await
        .expect("stops within the grace period")
        .unwrap();
    assert!(status.success(), "`rentify {command}` exited with {status}");
}

#[tokio::test]
async fn worker_serves_its_probes_and_stops_on_sigterm() {
    serves_probes_and_stops_cleanly("worker").await;
}

#[tokio::test]
async fn all_serves_and_stops_on_sigterm() {
    serves_probes_and_stops_cleanly("all").await;
}
