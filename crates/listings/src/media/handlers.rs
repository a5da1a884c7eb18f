//! The media routes: thin handlers over the SQL and the store.

use std::collections::{BTreeMap, HashSet};

use axum::{
    Extension,
    body::Body,
    extract::{Query, rejection::QueryRejection},
    http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use rentify_platform::{
    ApiError, ApiResult,
    auth::Caller,
    error::{ErrorEnvelope, FieldError},
    extract::{Path, ValidJson},
    idempotency::{self, Begin, IdempotencyKey, Scope},
    ids::new_id,
    outbox::{self, NewEvent},
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::PgConnection;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;
use validator::Validate;

use crate::{listing::service::owned_for_update, model::ListingStatus};

use super::{
    ACCEPTED_TYPES, COMPLETE_GRACE_SECS, ListingMedia, MAX_MEDIA_PER_LISTING, Media, MediaItem,
    MediaList, MediaType, MediaUpload, SNIFF_BYTES, codes, media_type, signing::UploadGrant,
    sniff_matches, thumbnails::MakeThumbnail,
};
use crate::Listings;

const WRITE_SCOPE: &str = "listings:write";

/// `POST /v1/listings/{id}/media` body.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, Validate)]
#[serde(deny_unknown_fields)]
pub struct NewMediaUpload {
    /// `image/jpeg`, `image/png`, `image/webp` or `video/mp4`.
    #[schema(example = "image/jpeg")]
    pub content_type: String,
    /// Exact size of the file, 1 to `MEDIA_MAX_UPLOAD_BYTES` (10 MiB).
    pub size_bytes: i64,
    /// Text alternative, up to 500 characters.
    #[validate(length(max = 500))]
    pub alt: Option<String>,
}

/// `PUT /v1/listings/{id}/media/order` body.
#[derive(Clone, Debug, Deserialize, ToSchema, Validate)]
#[serde(deny_unknown_fields)]
pub struct MediaOrder {
    /// Every attached media id of the listing, once each, in the new order.
    pub ids: Vec<Uuid>,
}

/// The signed query of a local upload URL.
#[derive(Clone, Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UploadQuery {
    /// Unix seconds after which the URL is refused.
    pub expires: i64,
    /// Hex HMAC-SHA256 of `media_id|expires|content_type|size_bytes`.
    pub signature: String,
}

#[derive(sqlx::FromRow)]
struct MediaRow {
    id: Uuid,
    listing_id: Uuid,
    object_key: String,
    content_type: String,
    size_bytes: i64,
    alt: Option<String>,
    status: String,
    position: Option<i32>,
    thumbnail_key: Option<String>,
    upload_expires_at: DateTime<Utc>,
    created_at: DateTime<Utc>,
    attached_at: Option<DateTime<Utc>>,
}

const SELECT_MEDIA: &str = "SELECT id, listing_id, object_key, content_type, size_bytes, alt,
    status, position, thumbnail_key, upload_expires_at, created_at, attached_at
    FROM listing_media";

impl MediaRow {
    fn kind(&self) -> MediaType {
        media_type(&self.content_type).unwrap_or(MediaType::Image)
    }

    fn item(&self, media: &Media) -> MediaItem {
        MediaItem {
            id: self.id,
            url: media.store().public_url(&self.object_key),
            kind: self.kind(),
            alt: self.alt.clone(),
            thumbnail_url: self
                .thumbnail_key
                .as_deref()
                .map(|key| media.store().public_url(key)),
        }
    }

    fn view(&self, media: &Media) -> ListingMedia {
        let item = self.item(media);
        ListingMedia {
            id: self.id,
            object: "listing_media",
            listing_id: self.listing_id,
            url: item.url,
            kind: item.kind,
            alt: item.alt,
            thumbnail_url: item.thumbnail_url,
            status: self.status.clone(),
            position: self.position,
            content_type: self.content_type.clone(),
            size_bytes: self.size_bytes,
            created_at: self.created_at,
            attached_at: self.attached_at,
        }
    }
}

/// Locks the listing for a media change by its owner (the listings
/// module's own [`owned_for_update`]): 404 for anyone else and unknown ids.
/// Returns the listing's status.
async fn lock_owned_listing(
    conn: &mut PgConnection,
    caller: &Caller,
    listing_id: Uuid,
) -> ApiResult<ListingStatus> {
    caller.require_scope(WRITE_SCOPE)?;
    Ok(owned_for_update(conn, listing_id, caller.user_id)
        .await?
        .status)
}

fn refuse_if_archived(status: ListingStatus) -> ApiResult<()> {
    if status == ListingStatus::Archived {
        return Err(ApiError::conflict(
            codes::INVALID_TRANSITION,
            "the media of an archived listing cannot change",
        )
        .with_detail(json!({"status": status.as_str()})));
    }
    Ok(())
}

async fn lock_media(
    conn: &mut PgConnection,
    listing_id: Uuid,
    media_id: Uuid,
) -> ApiResult<MediaRow> {
    sqlx::query_as::<_, MediaRow>(&format!(
        "{SELECT_MEDIA} WHERE id = $1 AND listing_id = $2 AND status <> 'removed' FOR UPDATE"
    ))
    .bind(media_id)
    .bind(listing_id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(ApiError::not_found)
}

fn validate_upload(input: &NewMediaUpload, max_bytes: u64) -> ApiResult<()> {
    let mut fields = Vec::new();
    if media_type(&input.content_type).is_none() {
        let accepted: Vec<&str> = ACCEPTED_TYPES.iter().map(|(t, _)| *t).collect();
        fields.push(FieldError {
            field: "content_type".into(),
            code: codes::UNSUPPORTED_MEDIA_TYPE.into(),
            message: format!("must be one of {}", accepted.join(", ")),
        });
    }
    if input.size_bytes < 1 || input.size_bytes as u64 > max_bytes {
        fields.push(FieldError {
            field: "size_bytes".into(),
            code: "range".into(),
            message: format!("must be between 1 and {max_bytes}"),
        });
    }
    if fields.is_empty() {
        Ok(())
    } else {
        Err(ApiError::validation(fields))
    }
}

/// Starts an upload: answers the URL to PUT the file to.
#[utoipa::path(
    post, path = "/v1/listings/{id}/media", tag = "listings",
    security(("bearer" = [])),
    params(
        ("id" = Uuid, Path, description = "The listing"),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe"),
    ),
    request_body = NewMediaUpload,
    responses(
        (status = 201, description = "A pending upload and its URL", body = MediaUpload),
        (status = 400, description = "`validation_failed` (`content_type`: `unsupported_media_type`; `size_bytes`: `range`)", body = ErrorEnvelope),
        (status = 401, description = "`unauthenticated`", body = ErrorEnvelope),
        (status = 404, description = "No such listing of the caller", body = ErrorEnvelope),
        (status = 409, description = "`media_limit_reached` (20 per listing) or `invalid_transition` (archived)", body = ErrorEnvelope),
    )
)]
pub async fn create_media_upload(
    Extension(listings): Extension<Listings>,
    caller: Caller,
    method: Method,
    uri: Uri,
    key: IdempotencyKey,
    Path(listing_id): Path<Uuid>,
    ValidJson(input): ValidJson<NewMediaUpload>,
) -> ApiResult<Response> {
    let media = listings.media();
    let body = serde_json::to_value(&input).map_err(ApiError::internal)?;
    let mut tx = listings.db().begin().await?;
    let principal = caller.user_id.to_string();
    let scope = Scope {
        principal: &principal,
        method: method.as_str(),
        path: uri.path(),
        body: &body,
    };
    let pending = match idempotency::begin(
        &mut tx,
        &key,
        scope,
        listings.platform().config.idempotency_ttl_hours,
    )
    .await?
    {
        Begin::Replay(response) => return Ok(response),
        Begin::Proceed(pending) => pending,
    };

    let status = lock_owned_listing(&mut tx, &caller, listing_id).await?;
    validate_upload(&input, media.max_upload_bytes)?;
    refuse_if_archived(status)?;
    let in_use: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM listing_media WHERE listing_id = $1
           AND (status = 'attached' OR (status = 'pending' AND upload_expires_at > now()))",
    )
    .bind(listing_id)
    .fetch_one(&mut *tx)
    .await?;
    if in_use >= MAX_MEDIA_PER_LISTING {
        return Err(ApiError::conflict(
            codes::MEDIA_LIMIT_REACHED,
            format!("a listing has at most {MAX_MEDIA_PER_LISTING} media"),
        ));
    }

    let media_id = new_id();
    let object_key = format!("listings/{listing_id}/{media_id}");
    let expires = Utc::now().timestamp() + media.upload_url_ttl.as_secs() as i64;
    let expires_at = DateTime::from_timestamp(expires, 0).unwrap_or_else(Utc::now);
    sqlx::query(
        "INSERT INTO listing_media (id, listing_id, object_key, content_type, size_bytes, alt, upload_expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(media_id)
    .bind(listing_id)
    .bind(&object_key)
    .bind(&input.content_type)
    .bind(input.size_bytes)
    .bind(&input.alt)
    .bind(expires_at)
    .execute(&mut *tx)
    .await?;
    let grant = UploadGrant {
        media_id,
        expires,
        content_type: &input.content_type,
        size_bytes: input.size_bytes,
    };
    let target = media
        .store()
        .upload_target(&object_key, &grant, media.upload_url_ttl)
        .await?;
    let upload = MediaUpload {
        id: media_id,
        object: "media_upload".into(),
        listing_id,
        upload_url: target.url,
        method: "PUT".into(),
        headers: BTreeMap::from([("Content-Type".to_string(), input.content_type.clone())]),
        content_type: input.content_type.clone(),
        size_bytes: input.size_bytes,
        expires_at,
        status: "pending".into(),
    };
    let response = pending
        .complete(&mut tx, StatusCode::CREATED, &upload)
        .await?;
    tx.commit().await?;
    Ok(response)
}

fn header_mismatch(header: &str, message: String) -> ApiError {
    ApiError::invalid_field(header, "mismatch", message)
}

/// Receives the bytes of an upload to the local store. The signed URL is
/// the credential: no bearer token is needed.
#[utoipa::path(
    put, path = "/v1/uploads/{media_id}", tag = "listings",
    params(("media_id" = Uuid, Path, description = "The pending media"), UploadQuery),
    request_body(content = Vec<u8>, description = "The file, with the declared `Content-Type` and exactly `size_bytes` bytes", content_type = "application/octet-stream"),
    responses(
        (status = 204, description = "Stored; now call `complete`"),
        (status = 400, description = "`validation_failed` (`Content-Type` or `Content-Length` differs from the declaration) or `media_content_mismatch` (the bytes are not of the declared type)", body = ErrorEnvelope),
        (status = 403, description = "`invalid_signature` or `upload_url_expired`", body = ErrorEnvelope),
        (status = 404, description = "Media is stored in S3: upload with its presigned URL", body = ErrorEnvelope),
        (status = 409, description = "`upload_closed`: already attached or removed", body = ErrorEnvelope),
    )
)]
pub async fn upload_media(
    Extension(listings): Extension<Listings>,
    Path(media_id): Path<Uuid>,
    query: Result<Query<UploadQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<StatusCode> {
    let media = listings.media();
    let Some(signer) = media.store().upload_signer() else {
        return Err(ApiError::not_found());
    };
    let invalid_signature = || {
        ApiError::new(
            StatusCode::FORBIDDEN,
            codes::INVALID_SIGNATURE,
            "the upload URL's signature does not verify; request a new one",
        )
    };
    let Ok(Query(query)) = query else {
        return Err(invalid_signature());
    };
    let row = sqlx::query_as::<_, MediaRow>(&format!("{SELECT_MEDIA} WHERE id = $1"))
        .bind(media_id)
        .fetch_optional(listings.db())
        .await?
        .ok_or_else(invalid_signature)?;
    let grant = UploadGrant {
        media_id,
        expires: query.expires,
        content_type: &row.content_type,
        size_bytes: row.size_bytes,
    };
    if !signer.verify(&grant, &query.signature) {
        return Err(invalid_signature());
    }
    if Utc::now().timestamp() > query.expires {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            codes::UPLOAD_URL_EXPIRED,
            "the upload URL has expired; request a new one",
        ));
    }
    if row.status != "pending" {
        return Err(ApiError::conflict(
            codes::UPLOAD_CLOSED,
            format!("this media is {}; it takes no more uploads", row.status),
        ));
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !content_type.eq_ignore_ascii_case(&row.content_type) {
        return Err(header_mismatch(
            "Content-Type",
            format!("must be `{}` as declared", row.content_type),
        ));
    }
    let declared = row.size_bytes as usize;
    let wrong_length = || {
        header_mismatch(
            "Content-Length",
            format!("the body must be exactly {declared} bytes as declared"),
        )
    };
    if let Some(length) = headers.get(header::CONTENT_LENGTH)
        && length.to_str().ok().and_then(|v| v.parse::<usize>().ok()) != Some(declared)
    {
        return Err(wrong_length());
    }
    // Never more than the declared size is read (at most the configured maximum).
    let bytes = axum::body::to_bytes(body, declared)
        .await
        .map_err(|_| wrong_length())?;
    if bytes.len() != declared {
        return Err(wrong_length());
    }
    if !sniff_matches(&row.content_type, &bytes) {
        return Err(ApiError::bad_request(
            codes::MEDIA_CONTENT_MISMATCH,
            format!("the file is not a `{}` file", row.content_type),
        ));
    }
    media.store().put(&row.object_key, bytes).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Attaches an uploaded file to the listing (idempotent).
#[utoipa::path(
    post, path = "/v1/listings/{id}/media/{media_id}/complete", tag = "listings",
    security(("bearer" = [])),
    params(
        ("id" = Uuid, Path, description = "The listing"),
        ("media_id" = Uuid, Path, description = "The upload"),
    ),
    responses(
        (status = 200, description = "Attached (also when it already was); the thumbnail follows", body = ListingMedia),
        (status = 400, description = "`media_content_mismatch`: the stored bytes are not of the declared type", body = ErrorEnvelope),
        (status = 401, description = "`unauthenticated`", body = ErrorEnvelope),
        (status = 404, description = "No such media of the caller's listing", body = ErrorEnvelope),
        (status = 409, description = "`upload_incomplete` (not uploaded yet, or another size), `upload_expired` or `invalid_transition`", body = ErrorEnvelope),
    )
)]
pub async fn complete_media_upload(
    Extension(listings): Extension<Listings>,
    caller: Caller,
    Path((listing_id, media_id)): Path<(Uuid, Uuid)>,
) -> ApiResult<axum::Json<ListingMedia>> {
    let media = listings.media();
    let mut tx = listings.db().begin().await?;
    let status = lock_owned_listing(&mut tx, &caller, listing_id).await?;
    let mut row = lock_media(&mut tx, listing_id, media_id).await?;
    if row.status == "attached" {
        return Ok(axum::Json(row.view(media)));
    }
    refuse_if_archived(status)?;
    if Utc::now() > row.upload_expires_at + chrono::Duration::seconds(COMPLETE_GRACE_SECS) {
        return Err(ApiError::conflict(
            codes::UPLOAD_EXPIRED,
            "this upload expired; start a new one",
        ));
    }
    let declared = row.size_bytes as u64;
    match media.store().size(&row.object_key).await? {
        None => {
            return Err(ApiError::conflict(
                codes::UPLOAD_INCOMPLETE,
                "the file has not been uploaded yet; PUT it to the upload URL first",
            ));
        }
        Some(size) if size != declared => {
            return Err(ApiError::conflict(
                codes::UPLOAD_INCOMPLETE,
                format!("the stored file has {size} bytes, not the {declared} declared"),
            ));
        }
        Some(_) => {}
    }
    // The local upload route sniffed already; a presigned S3 PUT did not.
    let head = media
        .store()
        .head_bytes(&row.object_key, SNIFF_BYTES, declared)
        .await?;
    if !sniff_matches(&row.content_type, &head) {
        return Err(ApiError::bad_request(
            codes::MEDIA_CONTENT_MISMATCH,
            format!("the file is not a `{}` file", row.content_type),
        ));
    }

    let position: i32 = sqlx::query_scalar(
        "SELECT COALESCE(max(position) + 1, 0) FROM listing_media
         WHERE listing_id = $1 AND status = 'attached'",
    )
    .bind(listing_id)
    .fetch_one(&mut *tx)
    .await?;
    let attached_at: DateTime<Utc> = sqlx::query_scalar(
        "UPDATE listing_media SET status = 'attached', position = $2, attached_at = now()
         WHERE id = $1 RETURNING attached_at",
    )
    .bind(media_id)
    .bind(position)
    .fetch_one(&mut *tx)
    .await?;
    row.status = "attached".into();
    row.position = Some(position);
    row.attached_at = Some(attached_at);
    let item = row.item(media);
    sqlx::query(
        "UPDATE listings SET media = media || jsonb_build_array($2::jsonb),
             version = version + 1, updated_at = now()
         WHERE id = $1",
    )
    .bind(listing_id)
    .bind(serde_json::to_value(&item).map_err(ApiError::internal)?)
    .execute(&mut *tx)
    .await?;
    outbox::record(
        &mut tx,
        NewEvent {
            event_type: "listing.media_attached",
            aggregate_type: "listing",
            aggregate_id: listing_id.to_string(),
            payload: json!({
                "listing_id": listing_id,
                "media": item,
                "position": position,
                "content_type": row.content_type,
                "size_bytes": row.size_bytes,
            }),
        },
    )
    .await?;
    if row.kind() == MediaType::Image {
        media
            .thumbnail_job()
            .enqueue_using(&mut *tx, &MakeThumbnail { media_id })
            .await
            .map_err(ApiError::internal)?;
    }
    tx.commit().await?;
    Ok(axum::Json(row.view(media)))
}

/// Rewrites `listings.media` and the positions to follow `order`, and bumps
/// the listing's version.
async fn rewrite_order(
    conn: &mut PgConnection,
    listing_id: Uuid,
    order: &[Uuid],
) -> sqlx::Result<Vec<MediaItem>> {
    sqlx::query(
        "UPDATE listing_media m SET position = (t.ord - 1)::int
         FROM unnest($2::uuid[]) WITH ORDINALITY AS t(id, ord)
         WHERE m.id = t.id AND m.listing_id = $1",
    )
    .bind(listing_id)
    .bind(order)
    .execute(&mut *conn)
    .await?;
    let media: sqlx::types::Json<Vec<MediaItem>> = sqlx::query_scalar(
        "UPDATE listings SET
             media = (SELECT COALESCE(jsonb_agg(item ORDER BY array_position($2::uuid[], (item->>'id')::uuid)), '[]'::jsonb)
                      FROM jsonb_array_elements(media) AS item
                      WHERE (item->>'id')::uuid = ANY($2::uuid[])),
             version = version + 1, updated_at = now()
         WHERE id = $1 RETURNING media",
    )
    .bind(listing_id)
    .bind(order)
    .fetch_one(&mut *conn)
    .await?;
    Ok(media.0)
}

async fn attached_ids(conn: &mut PgConnection, listing_id: Uuid) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar(
        "SELECT id FROM listing_media WHERE listing_id = $1 AND status = 'attached'
         ORDER BY position, id",
    )
    .bind(listing_id)
    .fetch_all(&mut *conn)
    .await
}

/// Removes a media file from the listing (or abandons a pending upload).
#[utoipa::path(
    delete, path = "/v1/listings/{id}/media/{media_id}", tag = "listings",
    security(("bearer" = [])),
    params(
        ("id" = Uuid, Path, description = "The listing"),
        ("media_id" = Uuid, Path, description = "The media"),
    ),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "`unauthenticated`", body = ErrorEnvelope),
        (status = 404, description = "No such media of the caller's listing", body = ErrorEnvelope),
    )
)]
pub async fn delete_media(
    Extension(listings): Extension<Listings>,
    caller: Caller,
    Path((listing_id, media_id)): Path<(Uuid, Uuid)>,
) -> ApiResult<StatusCode> {
    let mut tx = listings.db().begin().await?;
    lock_owned_listing(&mut tx, &caller, listing_id).await?;
    let row = lock_media(&mut tx, listing_id, media_id).await?;
    sqlx::query("UPDATE listing_media SET status = 'removed', position = NULL WHERE id = $1")
        .bind(media_id)
        .execute(&mut *tx)
        .await?;
    if row.status == "attached" {
        let order = attached_ids(&mut tx, listing_id).await?;
        rewrite_order(&mut tx, listing_id, &order).await?;
        outbox::record(
            &mut tx,
            NewEvent {
                event_type: "listing.media_removed",
                aggregate_type: "listing",
                aggregate_id: listing_id.to_string(),
                payload: json!({"listing_id": listing_id, "media_id": media_id}),
            },
        )
        .await?;
    }
    tx.commit().await?;
    // The row is the truth (removed media is never served); the files go
    // after the commit, best effort.
    let store = listings.media().store();
    for key in std::iter::once(&row.object_key).chain(row.thumbnail_key.as_ref()) {
        if let Err(error) = store.delete(key).await {
            tracing::warn!(media.id = %media_id, error = %error, "could not delete a removed media file");
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Sets the order of the listing's media.
#[utoipa::path(
    put, path = "/v1/listings/{id}/media/order", tag = "listings",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The listing")),
    request_body = MediaOrder,
    responses(
        (status = 200, description = "The media in the new order", body = MediaList),
        (status = 400, description = "`validation_failed`: `ids` is not a permutation of the attached media", body = ErrorEnvelope),
        (status = 401, description = "`unauthenticated`", body = ErrorEnvelope),
        (status = 404, description = "No such listing of the caller", body = ErrorEnvelope),
    )
)]
pub async fn reorder_media(
    Extension(listings): Extension<Listings>,
    caller: Caller,
    Path(listing_id): Path<Uuid>,
    ValidJson(input): ValidJson<MediaOrder>,
) -> ApiResult<axum::Json<MediaList>> {
    let mut tx = listings.db().begin().await?;
    lock_owned_listing(&mut tx, &caller, listing_id).await?;
    let current: HashSet<Uuid> = attached_ids(&mut tx, listing_id)
        .await?
        .into_iter()
        .collect();
    let wanted: HashSet<Uuid> = input.ids.iter().copied().collect();
    if wanted.len() != input.ids.len() || wanted != current {
        return Err(ApiError::invalid_field(
            "ids",
            "not_a_permutation",
            "must list every attached media id of the listing exactly once",
        ));
    }
    let data = rewrite_order(&mut tx, listing_id, &input.ids).await?;
    outbox::record(
        &mut tx,
        NewEvent {
            event_type: "listing.media_reordered",
            aggregate_type: "listing",
            aggregate_id: listing_id.to_string(),
            payload: json!({"listing_id": listing_id, "media_ids": input.ids}),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(axum::Json(MediaList {
        object: "list",
        data,
        has_more: false,
        next_cursor: None,
    }))
}

/// Serves an attached media file or its thumbnail: from the local store
/// directly, or by a redirect to a short-lived presigned URL for S3.
#[utoipa::path(
    get, path = "/media/listings/{listing_id}/{file}", tag = "listings",
    params(
        ("listing_id" = Uuid, Path, description = "The listing"),
        ("file" = String, Path, description = "`<media id>`, or `<media id>.thumb.jpg` / `.thumb.png` for the thumbnail"),
    ),
    responses(
        (status = 200, description = "The file, with its Content-Type; immutable, cacheable for a year"),
        (status = 307, description = "S3: the file's presigned URL"),
        (status = 404, description = "No such attached media", body = ErrorEnvelope),
    )
)]
pub async fn get_media_file(
    Extension(listings): Extension<Listings>,
    Path((listing_id, file)): Path<(Uuid, String)>,
) -> ApiResult<Response> {
    let (id, thumbnail) = match file.split_once('.') {
        None => (file.as_str(), None),
        Some((id, "thumb.jpg")) => (id, Some("image/jpeg")),
        Some((id, "thumb.png")) => (id, Some("image/png")),
        Some(_) => return Err(ApiError::not_found()),
    };
    let media_id: Uuid = id.parse().map_err(|_| ApiError::not_found())?;
    let row: Option<(String, String, Option<String>)> = sqlx::query_as(
        "SELECT object_key, content_type, thumbnail_key FROM listing_media
         WHERE id = $1 AND listing_id = $2 AND status = 'attached'",
    )
    .bind(media_id)
    .bind(listing_id)
    .fetch_optional(listings.db())
    .await?;
    let Some((object_key, content_type, thumbnail_key)) = row else {
        return Err(ApiError::not_found());
    };
    let (key, content_type) = match thumbnail {
        None => (object_key, content_type),
        Some(thumb_type) => {
            let wanted = format!("{object_key}.{}", &file[id.len() + 1..]);
            match thumbnail_key {
                Some(key) if key == wanted => (key, thumb_type.to_string()),
                _ => return Err(ApiError::not_found()),
            }
        }
    };
    let store = listings.media().store();
    if !store.is_local() {
        let ttl = std::time::Duration::from_secs(3600);
        let Some(url) = store.download_url(&key, ttl).await? else {
            return Err(ApiError::not_found());
        };
        return Ok((
            StatusCode::TEMPORARY_REDIRECT,
            [
                (header::LOCATION, url),
                (header::CACHE_CONTROL, "private, max-age=3000".to_string()),
            ],
        )
            .into_response());
    }
    let Some((size, stream)) = store.stream(&key).await? else {
        tracing::warn!(media.id = %media_id, key, "attached media has no stored file");
        return Err(ApiError::not_found());
    };
    let mut response = Body::from_stream(stream).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&content_type).map_err(ApiError::internal)?,
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    // Keys are never reused and attached files never change.
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    Ok(response)
}
