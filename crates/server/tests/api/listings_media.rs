//! Listing media: signed upload URLs to the local store, completion,
//! serving, thumbnails (the real worker), order and removal.

use std::{io::Cursor, path::PathBuf, time::Duration};

use image::{DynamicImage, ImageFormat, Rgb, RgbImage};
use rentify::worker::{self, OpsPort};
use rentify_listings::media::signing::{UploadGrant, UploadSigner};
use rentify_platform::config::Config;
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::{TestApp, error_code, parts};

const SIGNING_KEY: &str = "test-media-signing-key";
const MAX_BYTES: u64 = 4 * 1024 * 1024;

/// A private `MEDIA_DIR`, removed when the test ends.
struct MediaDir(PathBuf);

impl MediaDir {
    fn new() -> Self {
        Self(std::env::temp_dir().join(format!("rentify-media-{}", Uuid::new_v4().simple())))
    }

    fn path(&self) -> String {
        self.0.to_string_lossy().into_owned()
    }
}

impl Drop for MediaDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn app(dir: &MediaDir) -> TestApp {
    TestApp::builder()
        .env("MEDIA_DIR", dir.path())
        .env("MEDIA_SIGNING_KEY", SIGNING_KEY)
        .env("MEDIA_MAX_UPLOAD_BYTES", MAX_BYTES.to_string())
        .spawn()
        .await
}

/// A PNG of noise (it does not compress: 800×600 is over 1 MiB, above
/// the JSON body limit).
fn png(width: u32, height: u32) -> Vec<u8> {
    let mut state: u32 = 0x9E37_79B9;
    let image = RgbImage::from_fn(width, height, |_, _| {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let [r, g, b, _] = state.to_le_bytes();
        Rgb([r, g, b])
    });
    let mut out = Cursor::new(Vec::new());
    DynamicImage::ImageRgb8(image)
        .write_to(&mut out, ImageFormat::Png)
        .unwrap();
    out.into_inner()
}

/// A draft listing of a new user: (listing id, owner token).
async fn listing(app: &TestApp, email: &str) -> (String, String) {
    let (_, token) = app.user(email).await;
    let (status, body) = app
        .call_parts(
            Method::POST,
            "/v1/listings",
            Some(&token),
            Some(&json!({"type": "item", "title": "Camera"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    (body["id"].as_str().unwrap().to_owned(), token)
}

async fn request_upload(app: &TestApp, token: &str, listing_id: &str, body: Value) -> (u16, Value) {
    app.call_parts(
        Method::POST,
        &format!("/v1/listings/{listing_id}/media"),
        Some(token),
        Some(&body),
    )
    .await
}

/// The path and query of an upload URL (its host is `PUBLIC_BASE_URL`).
fn local_path(upload_url: &str) -> String {
    let rest = upload_url.split_once("://").unwrap().1;
    rest[rest.find('/').unwrap()..].to_string()
}

async fn put_bytes(app: &TestApp, path: &str, content_type: &str, bytes: Vec<u8>) -> (u16, Value) {
    let response = app
        .client
        .put(app.url(path))
        .header("content-type", content_type)
        .body(bytes)
        .send()
        .await
        .unwrap();
    let (status, _, body) = parts(response).await;
    (status, body)
}

async fn complete(app: &TestApp, token: &str, listing_id: &str, media_id: &str) -> (u16, Value) {
    app.call_parts(
        Method::POST,
        &format!("/v1/listings/{listing_id}/media/{media_id}/complete"),
        Some(token),
        None,
    )
    .await
}

/// Requests, uploads and completes `bytes` as a PNG; returns the media id.
async fn attach_png(app: &TestApp, token: &str, listing_id: &str, bytes: Vec<u8>) -> String {
    let (status, upload) = request_upload(
        app,
        token,
        listing_id,
        json!({"content_type": "image/png", "size_bytes": bytes.len()}),
    )
    .await;
    assert_eq!(status, 201, "{upload}");
    let media_id = upload["id"].as_str().unwrap().to_owned();
    let (status, body) = put_bytes(
        app,
        &local_path(upload["upload_url"].as_str().unwrap()),
        "image/png",
        bytes,
    )
    .await;
    assert_eq!(status, 204, "{body}");
    let (status, body) = complete(app, token, listing_id, &media_id).await;
    assert_eq!(status, 200, "{body}");
    media_id
}

async fn listing_media(app: &TestApp, token: &str, listing_id: &str) -> (Vec<Value>, i64) {
    let (status, body) = app
        .call_parts(
            Method::GET,
            &format!("/v1/listings/{listing_id}"),
            Some(token),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    (
        body["media"].as_array().unwrap().clone(),
        body["version"].as_i64().unwrap(),
    )
}

fn media_path(url: &str) -> String {
    local_path(url)
}

#[tokio::test]
async fn an_uploaded_image_is_attached_served_and_thumbnailed() {
    let dir = MediaDir::new();
    let app = app(&dir).await;
    let (listing_id, token) = listing(&app, "owner@example.com").await;
    let (_, version_before) = listing_media(&app, &token, &listing_id).await;
    let bytes = png(800, 600);
    assert!(bytes.len() > 1024 * 1024);

    let (status, upload) = request_upload(
        &app,
        &token,
        &listing_id,
        json!({"content_type": "image/png", "size_bytes": bytes.len(), "alt": "Front view"}),
    )
    .await;
    assert_eq!(status, 201, "{upload}");
    assert_eq!(upload["object"], "media_upload");
    assert_eq!(upload["method"], "PUT");
    assert_eq!(upload["status"], "pending");
    assert_eq!(upload["headers"]["Content-Type"], "image/png");
    assert!(upload["expires_at"].is_string());
    let media_id = upload["id"].as_str().unwrap().to_owned();
    let upload_url = upload["upload_url"].as_str().unwrap();
    assert!(
        upload_url.contains(&format!("/v1/uploads/{media_id}?expires=")),
        "{upload_url}"
    );

    // Completing before the bytes arrived is refused.
    let (status, body) = complete(&app, &token, &listing_id, &media_id).await;
    assert_eq!((status, error_code(&body)), (409, "upload_incomplete"));

    // The signed URL is the credential: no bearer token.
    let (status, body) = put_bytes(&app, &local_path(upload_url), "image/png", bytes.clone()).await;
    assert_eq!(status, 204, "{body}");

    let (status, attached) = complete(&app, &token, &listing_id, &media_id).await;
    assert_eq!(status, 200, "{attached}");
    assert_eq!(attached["object"], "listing_media");
    assert_eq!(attached["status"], "attached");
    assert_eq!(attached["type"], "image");
    assert_eq!(attached["position"], 0);
    let url = attached["url"].as_str().unwrap().to_owned();
    assert!(
        url.ends_with(&format!("/media/listings/{listing_id}/{media_id}")),
        "{url}"
    );

    // Completing again changes nothing.
    let (status, again) = complete(&app, &token, &listing_id, &media_id).await;
    assert_eq!((status, &again["id"]), (200, &attached["id"]));

    let (media, version) = listing_media(&app, &token, &listing_id).await;
    assert_eq!(media.len(), 1, "{media:?}");
    assert_eq!(media[0]["id"], media_id.as_str());
    assert_eq!(media[0]["url"], url.as_str());
    assert_eq!(media[0]["type"], "image");
    assert_eq!(media[0]["alt"], "Front view");
    assert!(media[0]["thumbnail_url"].is_null());
    assert_eq!(version, version_before + 1);

    let events: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE type = 'listing.media_attached' AND aggregate_id = $1",
    )
    .bind(&listing_id)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(events, 1);

    // Served publicly with its type and long-lived caching.
    let response = app.get(&media_path(&url)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "image/png");
    assert!(
        response.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("immutable")
    );
    assert_eq!(response.bytes().await.unwrap().as_ref(), bytes.as_slice());

    // A file that starts like a PNG but does not decode.
    let corrupt = [b"\x89PNG\r\n\x1a\n".to_vec(), vec![7; 500]].concat();
    let corrupt_id = attach_png(&app, &token, &listing_id, corrupt).await;

    // The real worker makes the thumbnail.
    let config = Config::from_vars([
        ("DATABASE_URL".to_string(), app.database.url.clone()),
        ("MEDIA_DIR".to_string(), dir.path()),
        ("MEDIA_SIGNING_KEY".to_string(), SIGNING_KEY.to_string()),
        ("JOB_POLL_INTERVAL_MS".to_string(), "50".to_string()),
    ])
    .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(worker::run_until(
        config,
        app.db.clone(),
        OpsPort::Shared,
        async move {
            let _ = stopped.await;
        },
    ));
    let mut done = false;
    for _ in 0..200 {
        let settled: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM underway.task
             WHERE task_queue_name = 'listings.make_thumbnail' AND state = 'succeeded'",
        )
        .fetch_one(&app.db)
        .await
        .unwrap();
        if settled == 2 {
            done = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop.send(());
    worker.await.unwrap().unwrap();
    assert!(
        done,
        "both thumbnail tasks succeed, the corrupt image included"
    );
    let (media, _) = listing_media(&app, &token, &listing_id).await;
    assert_eq!(media[1]["id"], corrupt_id.as_str());
    assert!(media[1]["thumbnail_url"].is_null(), "{media:?}");
    let thumbnail_url = media[0]["thumbnail_url"].as_str().map(str::to_owned);
    let thumbnail_url = thumbnail_url.expect("the thumbnail job ran");
    assert!(thumbnail_url.ends_with(".thumb.png"), "{thumbnail_url}");

    let response = app.get(&media_path(&thumbnail_url)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "image/png");
    let thumbnail = image::load_from_memory(&response.bytes().await.unwrap()).unwrap();
    assert_eq!((thumbnail.width(), thumbnail.height()), (320, 240));

    // Unknown files and other listings' paths are 404.
    for path in [
        format!("/media/listings/{listing_id}/{}", Uuid::now_v7()),
        format!("/media/listings/{}/{media_id}", Uuid::now_v7()),
        format!("/media/listings/{listing_id}/{media_id}.thumb.jpg"),
        format!("/media/listings/{listing_id}/..%2F..%2Fetc%2Fpasswd"),
    ] {
        assert_eq!(app.get(&path).await.status(), 404, "{path}");
    }
}

#[tokio::test]
async fn declarations_are_validated_and_only_the_owner_may_upload() {
    let dir = MediaDir::new();
    let app = app(&dir).await;
    let (listing_id, token) = listing(&app, "owner@example.com").await;

    let (status, body) = request_upload(
        &app,
        &token,
        &listing_id,
        json!({"content_type": "image/gif", "size_bytes": 10}),
    )
    .await;
    assert_eq!((status, error_code(&body)), (400, "validation_failed"));
    assert_eq!(body["error"]["details"][0]["field"], "content_type");
    assert_eq!(
        body["error"]["details"][0]["code"],
        "unsupported_media_type"
    );

    for size in [0, MAX_BYTES + 1] {
        let (status, body) = request_upload(
            &app,
            &token,
            &listing_id,
            json!({"content_type": "image/png", "size_bytes": size}),
        )
        .await;
        assert_eq!((status, error_code(&body)), (400, "validation_failed"));
        assert_eq!(body["error"]["details"][0]["field"], "size_bytes", "{body}");
    }

    let declaration = json!({"content_type": "video/mp4", "size_bytes": 1000});
    let (status, body) = app
        .call_parts(
            Method::POST,
            &format!("/v1/listings/{listing_id}/media"),
            None,
            Some(&declaration),
        )
        .await;
    assert_eq!((status, error_code(&body)), (401, "unauthenticated"));

    // A stranger cannot tell the listing exists.
    let (_, stranger) = app.user("stranger@example.com").await;
    let (status, body) = request_upload(&app, &stranger, &listing_id, declaration.clone()).await;
    assert_eq!((status, error_code(&body)), (404, "not_found"));
    let (status, upload) = request_upload(&app, &token, &listing_id, declaration.clone()).await;
    assert_eq!(status, 201, "{upload}");
    let media_id = upload["id"].as_str().unwrap();
    let (status, body) = complete(&app, &stranger, &listing_id, media_id).await;
    assert_eq!((status, error_code(&body)), (404, "not_found"));
    let (status, _) = app
        .call_parts(
            Method::DELETE,
            &format!("/v1/listings/{listing_id}/media/{media_id}"),
            Some(&stranger),
            None,
        )
        .await;
    assert_eq!(status, 404);

    // At most 20 media per listing (live pending uploads count).
    for _ in 1..20 {
        let (status, body) = request_upload(&app, &token, &listing_id, declaration.clone()).await;
        assert_eq!(status, 201, "{body}");
    }
    let (status, body) = request_upload(&app, &token, &listing_id, declaration).await;
    assert_eq!((status, error_code(&body)), (409, "media_limit_reached"));
}

#[tokio::test]
async fn upload_urls_are_checked_before_any_byte_is_stored() {
    let dir = MediaDir::new();
    let app = app(&dir).await;
    let (listing_id, token) = listing(&app, "owner@example.com").await;
    let bytes = png(20, 10);
    let (status, upload) = request_upload(
        &app,
        &token,
        &listing_id,
        json!({"content_type": "image/png", "size_bytes": bytes.len()}),
    )
    .await;
    assert_eq!(status, 201, "{upload}");
    let media_id: Uuid = upload["id"].as_str().unwrap().parse().unwrap();
    let path = local_path(upload["upload_url"].as_str().unwrap());

    // A tampered signature, or none.
    let tampered = format!("{}{}", &path[..path.len() - 4], "0000");
    let (status, body) = put_bytes(&app, &tampered, "image/png", bytes.clone()).await;
    assert_eq!((status, error_code(&body)), (403, "invalid_signature"));
    let (status, body) = put_bytes(
        &app,
        &format!("/v1/uploads/{media_id}"),
        "image/png",
        bytes.clone(),
    )
    .await;
    assert_eq!((status, error_code(&body)), (403, "invalid_signature"));

    // A correctly signed URL whose time has passed.
    let expires = chrono::Utc::now().timestamp() - 10;
    let signature = UploadSigner::new(SIGNING_KEY.as_bytes()).sign(&UploadGrant {
        media_id,
        expires,
        content_type: "image/png",
        size_bytes: bytes.len() as i64,
    });
    let (status, body) = put_bytes(
        &app,
        &format!("/v1/uploads/{media_id}?expires={expires}&signature={signature}"),
        "image/png",
        bytes.clone(),
    )
    .await;
    assert_eq!((status, error_code(&body)), (403, "upload_url_expired"));

    // Another Content-Type than declared.
    let (status, body) = put_bytes(&app, &path, "image/jpeg", bytes.clone()).await;
    assert_eq!((status, error_code(&body)), (400, "validation_failed"));
    assert_eq!(body["error"]["details"][0]["field"], "Content-Type");

    // Fewer or more bytes than declared.
    for wrong in [
        bytes[..bytes.len() - 1].to_vec(),
        [bytes.clone(), vec![0; 5]].concat(),
    ] {
        let (status, body) = put_bytes(&app, &path, "image/png", wrong).await;
        assert_eq!((status, error_code(&body)), (400, "validation_failed"));
        assert_eq!(body["error"]["details"][0]["field"], "Content-Length");
    }

    // Nothing was stored: completing is still refused.
    let (status, body) = complete(&app, &token, &listing_id, &media_id.to_string()).await;
    assert_eq!((status, error_code(&body)), (409, "upload_incomplete"));

    // A PNG declared as a JPEG.
    let (status, upload) = request_upload(
        &app,
        &token,
        &listing_id,
        json!({"content_type": "image/jpeg", "size_bytes": bytes.len()}),
    )
    .await;
    assert_eq!(status, 201, "{upload}");
    let (status, body) = put_bytes(
        &app,
        &local_path(upload["upload_url"].as_str().unwrap()),
        "image/jpeg",
        bytes.clone(),
    )
    .await;
    assert_eq!((status, error_code(&body)), (400, "media_content_mismatch"));

    // The right bytes go through; the URL is then spent once attached.
    let (status, body) = put_bytes(&app, &path, "image/png", bytes.clone()).await;
    assert_eq!(status, 204, "{body}");
    let (status, body) = complete(&app, &token, &listing_id, &media_id.to_string()).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = put_bytes(&app, &path, "image/png", bytes).await;
    assert_eq!((status, error_code(&body)), (409, "upload_closed"));
}

#[tokio::test]
async fn media_can_be_reordered_and_removed() {
    let dir = MediaDir::new();
    let app = app(&dir).await;
    let (listing_id, token) = listing(&app, "owner@example.com").await;
    let mut ids = Vec::new();
    for width in [10, 20, 30] {
        ids.push(attach_png(&app, &token, &listing_id, png(width, 10)).await);
    }
    let (media, version) = listing_media(&app, &token, &listing_id).await;
    let order: Vec<&str> = media.iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(order, ids);

    let reordered = vec![ids[2].clone(), ids[0].clone(), ids[1].clone()];
    let (status, body) = app
        .call_parts(
            Method::PUT,
            &format!("/v1/listings/{listing_id}/media/order"),
            Some(&token),
            Some(&json!({"ids": reordered})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "list");
    let returned: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(returned, reordered);
    let (media, new_version) = listing_media(&app, &token, &listing_id).await;
    let order: Vec<&str> = media.iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(order, reordered);
    assert!(new_version > version);

    // Only a permutation of the attached media is an order.
    let unknown = Uuid::now_v7().to_string();
    for bad in [
        json!([ids[0], ids[1]]),
        json!([ids[0], ids[0], ids[1]]),
        json!([ids[0], ids[1], unknown]),
        json!([ids[0], ids[1], ids[2], unknown]),
    ] {
        let (status, body) = app
            .call_parts(
                Method::PUT,
                &format!("/v1/listings/{listing_id}/media/order"),
                Some(&token),
                Some(&json!({ "ids": bad })),
            )
            .await;
        assert_eq!((status, error_code(&body)), (400, "validation_failed"));
        assert_eq!(body["error"]["details"][0]["field"], "ids");
    }

    // Removing the first one.
    let removed_url = media[0]["url"].as_str().unwrap().to_owned();
    let (status, _) = app
        .call_parts(
            Method::DELETE,
            &format!("/v1/listings/{listing_id}/media/{}", reordered[0]),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (media, _) = listing_media(&app, &token, &listing_id).await;
    let order: Vec<&str> = media.iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(order, vec![ids[0].as_str(), ids[1].as_str()]);
    assert_eq!(app.get(&media_path(&removed_url)).await.status(), 404);
    let (status, body) = app
        .call_parts(
            Method::DELETE,
            &format!("/v1/listings/{listing_id}/media/{}", reordered[0]),
            Some(&token),
            None,
        )
        .await;
    assert_eq!((status, error_code(&body)), (404, "not_found"));
    let positions: Vec<(String, i32)> = sqlx::query_as(
        "SELECT id::text, position FROM listing_media WHERE status = 'attached' ORDER BY position",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(
        positions,
        vec![(ids[0].clone(), 0), (ids[1].clone(), 1)],
        "positions follow the listing's order"
    );
    // A new one goes last.
    let last = attach_png(&app, &token, &listing_id, png(5, 5)).await;
    let (media, _) = listing_media(&app, &token, &listing_id).await;
    assert_eq!(media.len(), 3);
    assert_eq!(media[2]["id"], last.as_str());
}
