//! The OpenAPI document is generated from the code, checked into
//! `docs/openapi.json` (so every API change shows in review) and validated
//! as OpenAPI 3.1.

use std::path::PathBuf;

fn snapshot_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json")
}

#[test]
fn the_checked_in_document_matches_the_code() {
    let generated = rentify::openapi::document().to_pretty_json().unwrap() + "\n";
    let path = snapshot_path();
    if std::env::var("UPDATE_OPENAPI").is_ok_and(|v| v == "1") {
        std::fs::write(&path, &generated).unwrap();
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "docs/openapi.json is out of date; review the API change and run `make openapi` \
         (or UPDATE_OPENAPI=1 make test)"
    );
}

#[test]
fn the_document_is_valid_openapi_3_1() {
    let validator =
        std::env::var("OPENAPI_SPEC_VALIDATOR").unwrap_or_else(|_| "openapi-spec-validator".into());
    let file = std::env::temp_dir().join(format!("rentify-openapi-{}.json", uuid::Uuid::new_v4()));
    std::fs::write(
        &file,
        rentify::openapi::document().to_pretty_json().unwrap(),
    )
    .unwrap();
    let output = std::process::Command::new(&validator)
        .arg("--schema")
        .arg("3.1")
        .arg(&file)
        .output();
    let _ = std::fs::remove_file(&file);
    let output = output.unwrap_or_else(|e| {
        panic!("cannot run {validator} ({e}); `make test` installs it (pip install openapi-spec-validator)")
    });
    assert!(
        output.status.success(),
        "invalid OpenAPI 3.1:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn every_operation_documents_its_responses_and_a_tag() {
    let doc = serde_json::to_value(rentify::openapi::document()).unwrap();
    let paths = doc["paths"].as_object().unwrap();
    assert!(!paths.is_empty());
    for (path, item) in paths {
        for (method, operation) in item.as_object().unwrap() {
            assert!(
                operation["responses"]
                    .as_object()
                    .is_some_and(|r| !r.is_empty()),
                "{method} {path}: no responses"
            );
            assert!(
                operation["tags"].as_array().is_some_and(|t| !t.is_empty()),
                "{method} {path}: no tag"
            );
        }
    }
}
