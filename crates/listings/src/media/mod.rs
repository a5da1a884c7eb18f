//! Listing media: photos and videos, uploaded straight to the object store
//! (ADR 0009).
//!
//! 1. `POST /v1/listings/{id}/media` declares `{content_type, size_bytes,
//!    alt}` and gets a short-lived upload URL (a `pending` row);
//! 2. the client PUTs the bytes there: to `PUT /v1/uploads/{media_id}` for
//!    the local store (an HMAC-signed URL, [`signing`]), or to the bucket
//!    for S3 (a presigned URL);
//! 3. `POST /v1/listings/{id}/media/{media_id}/complete` checks the object
//!    and attaches it: it joins `listings.media`, the listing's version is
//!    bumped, `listing.media_attached` is recorded and the thumbnail job
//!    ([`thumbnails`]) is enqueued, all in one transaction.
//!
//! Objects are keyed `listings/{listing_id}/{media_id}` (thumbnails add
//! `.thumb.jpg` or `.thumb.png`) and served at `GET /media/<key>`.
//! Pending uploads whose URL expired are never attached.

mod handlers;
pub mod signing;
pub mod store;
pub mod thumbnails;

use std::time::Duration;

use chrono::{DateTime, Utc};
use rentify_platform::{config::Config, jobs::Workers};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use rentify_platform::PlatformState;

pub use handlers::*;
use store::MediaStore;
use thumbnails::ThumbnailJob;

/// Most media (attached, or pending with a live upload URL) per listing.
pub const MAX_MEDIA_PER_LISTING: i64 = 20;
/// How long after its upload URL expired an upload may still be completed
/// (a client that finished the PUT just in time). Past it, a pending upload
/// is never attached.
pub const COMPLETE_GRACE_SECS: i64 = 3600;

/// Stable error codes of the media routes (docs/API-DESIGN.md).
pub mod codes {
    /// `content_type` is not one of the accepted types (a field error).
    pub const UNSUPPORTED_MEDIA_TYPE: &str = "unsupported_media_type";
    /// The listing already has [`super::MAX_MEDIA_PER_LISTING`] media.
    pub const MEDIA_LIMIT_REACHED: &str = "media_limit_reached";
    /// `complete` before the object is in the store (or with another size).
    pub const UPLOAD_INCOMPLETE: &str = "upload_incomplete";
    /// The upload URL, or the time to complete it, has passed.
    pub const UPLOAD_EXPIRED: &str = "upload_expired";
    /// The upload URL's expiry has passed (upload route).
    pub const UPLOAD_URL_EXPIRED: &str = "upload_url_expired";
    /// The upload URL's signature does not verify.
    pub const INVALID_SIGNATURE: &str = "invalid_signature";
    /// The media is no longer pending (already attached or removed).
    pub const UPLOAD_CLOSED: &str = "upload_closed";
    /// The bytes are not of the declared type (magic bytes).
    pub const MEDIA_CONTENT_MISMATCH: &str = "media_content_mismatch";
    /// The listing's status does not allow the change (archived).
    pub const INVALID_TRANSITION: &str = "invalid_transition";
}

/// Image or video.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MediaType {
    Image,
    Video,
}

/// The accepted content types and what they are.
pub const ACCEPTED_TYPES: [(&str, MediaType); 4] = [
    ("image/jpeg", MediaType::Image),
    ("image/png", MediaType::Image),
    ("image/webp", MediaType::Image),
    ("video/mp4", MediaType::Video),
];

/// The media type of an accepted content type.
pub fn media_type(content_type: &str) -> Option<MediaType> {
    ACCEPTED_TYPES
        .iter()
        .find(|(accepted, _)| *accepted == content_type)
        .map(|(_, kind)| *kind)
}

/// Whether `head` (the first bytes of a file) starts like `content_type`
/// says; unknown types never match.
pub fn sniff_matches(content_type: &str, head: &[u8]) -> bool {
    match content_type {
        "image/jpeg" => head.starts_with(&[0xFF, 0xD8, 0xFF]),
        "image/png" => head.starts_with(b"\x89PNG\r\n\x1a\n"),
        "image/webp" => head.len() >= 12 && &head[..4] == b"RIFF" && &head[8..12] == b"WEBP",
        // ISO BMFF: the `ftyp` box comes first.
        "video/mp4" => head.len() >= 8 && &head[4..8] == b"ftyp",
        _ => false,
    }
}

/// How many leading bytes [`sniff_matches`] needs.
pub const SNIFF_BYTES: u64 = 12;

/// One entry of `listing.media`, in the listing's order.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct MediaItem {
    pub id: Uuid,
    /// Public URL of the file (`<PUBLIC_BASE_URL>/media/...`).
    pub url: String,
    #[serde(rename = "type")]
    pub kind: MediaType,
    pub alt: Option<String>,
    /// A preview fitting 320×320, once the thumbnail job made it (images).
    pub thumbnail_url: Option<String>,
}

/// An upload slot: PUT the bytes to `upload_url` with `headers`, then call
/// `complete`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct MediaUpload {
    pub id: Uuid,
    #[schema(example = "media_upload")]
    pub object: String,
    pub listing_id: Uuid,
    pub upload_url: String,
    #[schema(example = "PUT")]
    pub method: String,
    /// Headers the PUT must carry (`Content-Type`).
    #[schema(value_type = Object)]
    pub headers: std::collections::BTreeMap<String, String>,
    pub content_type: String,
    pub size_bytes: i64,
    pub expires_at: DateTime<Utc>,
    #[schema(example = "pending")]
    pub status: String,
}

/// A listing's media file as its owner sees it.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ListingMedia {
    pub id: Uuid,
    #[schema(example = "listing_media")]
    pub object: &'static str,
    pub listing_id: Uuid,
    pub url: String,
    #[serde(rename = "type")]
    pub kind: MediaType,
    pub alt: Option<String>,
    pub thumbnail_url: Option<String>,
    /// `pending`, `attached` or `removed`.
    pub status: String,
    /// 0-based place in `listing.media` (attached only).
    pub position: Option<i32>,
    pub content_type: String,
    pub size_bytes: i64,
    pub created_at: DateTime<Utc>,
    pub attached_at: Option<DateTime<Utc>>,
}

/// The listing's attached media, in order.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct MediaList {
    #[schema(example = "list")]
    pub object: &'static str,
    pub data: Vec<MediaItem>,
    pub has_more: bool,
    pub next_cursor: Option<String>,
}

/// The media service: the object store, upload limits and the thumbnail
/// job, built once per process (API and worker).
#[derive(Clone)]
pub struct Media {
    store: MediaStore,
    thumbnails: ThumbnailJob,
    max_upload_bytes: u64,
    upload_url_ttl: Duration,
}

impl Media {
    /// Opens the store (creating `MEDIA_DIR` when local) and builds the
    /// thumbnail job, so its queue exists before anything enqueues.
    pub async fn init(config: &Config, pool: PgPool) -> anyhow::Result<Self> {
        let store = MediaStore::from_config(config)?;
        let thumbnails = thumbnails::build_job(pool, store.clone()).await?;
        Ok(Self {
            store,
            thumbnails,
            max_upload_bytes: config.media_max_upload_bytes,
            upload_url_ttl: Duration::from_secs(config.media_upload_url_ttl_secs),
        })
    }

    pub fn store(&self) -> &MediaStore {
        &self.store
    }

    pub fn thumbnail_job(&self) -> &ThumbnailJob {
        &self.thumbnails
    }

    /// Runs the media jobs on `workers` (`rentify worker`).
    pub fn spawn(&self, workers: &mut Workers) {
        workers.spawn(&self.thumbnails);
    }
}

/// The media routes with their OpenAPI description.
pub fn routes() -> OpenApiRouter<PlatformState> {
    OpenApiRouter::new()
        .routes(routes!(create_media_upload))
        .routes(routes!(upload_media))
        .routes(routes!(complete_media_upload))
        .routes(routes!(delete_media))
        .routes(routes!(reorder_media))
        .routes(routes!(get_media_file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_accepted_types_have_a_media_type() {
        assert_eq!(media_type("image/png"), Some(MediaType::Image));
        assert_eq!(media_type("video/mp4"), Some(MediaType::Video));
        assert_eq!(media_type("image/gif"), None);
        assert_eq!(media_type("IMAGE/PNG"), None);
    }

    #[test]
    fn sniffing_recognises_each_type_and_refuses_the_others() {
        let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
        let jpeg = [
            0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10, b'J', b'F', b'I', b'F', 0, 1,
        ];
        let webp = b"RIFF\x10\0\0\0WEBPVP8 ";
        let mp4 = b"\0\0\0\x18ftypmp42";
        assert!(sniff_matches("image/png", png));
        assert!(sniff_matches("image/jpeg", &jpeg));
        assert!(sniff_matches("image/webp", webp));
        assert!(sniff_matches("video/mp4", mp4));
        assert!(!sniff_matches("image/jpeg", png));
        assert!(!sniff_matches("image/png", &jpeg));
        assert!(!sniff_matches("video/mp4", webp));
        assert!(!sniff_matches("image/webp", b"RIFF"));
        assert!(!sniff_matches("image/gif", b"GIF89a"));
    }
}
