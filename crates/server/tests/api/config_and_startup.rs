use std::process::Command;

use crate::support::TestDatabase;

fn rentify() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rentify"));
    command.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default()).env("LOG_FORMAT", "json");
    command
}

#[test]
fn a_bad_variable_stops_start_up_naming_it() {
    let output = rentify().arg("serve").env("PORT", "eighty").output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("PORT"), "{stderr}");

    let output = rentify().arg("serve").env("RATE_LIMIT_WRITE", "fast").output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("RATE_LIMIT_WRITE"), "{stderr}");
}

#[test]
fn an_unreachable_database_is_reported_without_secrets() {
    let output = rentify()
        .arg("migrate")
        .env("DATABASE_URL", "postgres://rentify:s3cret-pw@127.0.0.1:1/rentify")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot connect to PostgreSQL"), "{stderr}");
    assert!(!stderr.contains("s3cret-pw"), "the password leaked: {stderr}");
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
            let output = rentify().args(args).env("DATABASE_URL", &database.url).output().unwrap();
            assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
        }
    }
}
