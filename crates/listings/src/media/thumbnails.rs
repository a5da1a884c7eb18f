//! The `listings.make_thumbnail` job: a 320×320-bounded preview of every
//! attached image, written next to the original and linked from the
//! listing's `media` item (`thumbnail_url`).
//!
//! It is enqueued in the transaction that attaches the image. Videos and
//! formats without a decoder here (WebP) are skipped; an image that does
//! not decode is logged and the job completes without a thumbnail, so a
//! corrupt upload is never retried. Store or database failures are retried
//! with underway's back-off (5 attempts).

use std::io::Cursor;

use image::{DynamicImage, ImageFormat, ImageReader, Limits};
use rentify_platform::jobs::{Job, To};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use underway::task::Error as TaskError;
use uuid::Uuid;

use super::store::MediaStore;

/// The queue's name (unique among all jobs).
pub const JOB_NAME: &str = "listings.make_thumbnail";
/// Thumbnails fit in a square of this side, keeping the aspect ratio.
pub const THUMBNAIL_SIDE: u32 = 320;
/// Larger images are not decoded (decompression bombs).
const MAX_SIDE: u32 = 12_000;
const MAX_DECODE_BYTES: u64 = 512 * 1024 * 1024;

/// Input of one thumbnail task.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MakeThumbnail {
    pub media_id: Uuid,
}

/// The job, with the store it reads and writes.
pub type ThumbnailJob = Job<MakeThumbnail, MediaStore>;

/// Builds the job (and its queue, so the API can enqueue before any worker
/// started). Workers run it through `Workers::spawn`.
pub async fn build_job(pool: PgPool, store: MediaStore) -> anyhow::Result<ThumbnailJob> {
    Ok(Job::builder()
        .state(store)
        .step(|mut cx, input: MakeThumbnail| async move {
            make_thumbnail(&mut cx.tx, &cx.state, input.media_id)
                .await
                .map_err(|e| TaskError::Retryable(format!("{e:#}")))?;
            cx.tx
                .commit()
                .await
                .map_err(|e| TaskError::Retryable(e.to_string()))?;
            To::done()
        })
        .name(JOB_NAME)
        .pool(pool)
        .build()
        .await?)
}

/// What a thumbnail is encoded as, from the original's type.
fn thumbnail_format(content_type: &str) -> Option<(ImageFormat, ImageFormat, &'static str)> {
    match content_type {
        // PNG keeps transparency.
        "image/png" => Some((ImageFormat::Png, ImageFormat::Png, "png")),
        "image/jpeg" => Some((ImageFormat::Jpeg, ImageFormat::Jpeg, "jpg")),
        _ => None,
    }
}

async fn make_thumbnail(
    tx: &mut sqlx::PgConnection,
    store: &MediaStore,
    media_id: Uuid,
) -> anyhow::Result<()> {
    let row: Option<(Uuid, String, String, String, Option<String>)> = sqlx::query_as(
        "SELECT listing_id, object_key, content_type, status, thumbnail_key
         FROM listing_media WHERE id = $1 FOR UPDATE",
    )
    .bind(media_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((listing_id, key, content_type, status, existing)) = row else {
        return Ok(());
    };
    if status != "attached" || existing.is_some() {
        return Ok(());
    }
    let Some((source_format, thumb_format, extension)) = thumbnail_format(&content_type) else {
        tracing::info!(media.id = %media_id, content_type, "no thumbnail for this media type");
        return Ok(());
    };
    let Some(original) = store.get(&key).await? else {
        tracing::warn!(media.id = %media_id, "attached media has no object; no thumbnail");
        return Ok(());
    };
    let encoded = tokio::task::spawn_blocking(move || {
        render_thumbnail(&original, source_format, thumb_format)
    })
    .await?;
    let thumbnail = match encoded {
        Ok(bytes) => bytes,
        Err(error) => {
            tracing::warn!(media.id = %media_id, error = %error, "image does not decode; no thumbnail");
            return Ok(());
        }
    };
    let thumbnail_key = format!("{key}.thumb.{extension}");
    store.put(&thumbnail_key, thumbnail.into()).await?;
    sqlx::query("UPDATE listing_media SET thumbnail_key = $2 WHERE id = $1")
        .bind(media_id)
        .bind(&thumbnail_key)
        .execute(&mut *tx)
        .await?;
    let thumbnail_url = store.public_url(&thumbnail_key);
    sqlx::query(
        "UPDATE listings SET
             media = (SELECT COALESCE(jsonb_agg(
                          CASE WHEN item->>'id' = $2
                               THEN jsonb_set(item, '{thumbnail_url}', to_jsonb($3::text))
                               ELSE item END ORDER BY ord), '[]'::jsonb)
                      FROM jsonb_array_elements(media) WITH ORDINALITY AS t(item, ord)),
             version = version + 1,
             updated_at = now()
         WHERE id = $1 AND media @> jsonb_build_array(jsonb_build_object('id', $2))",
    )
    .bind(listing_id)
    .bind(media_id.to_string())
    .bind(&thumbnail_url)
    .execute(&mut *tx)
    .await?;
    tracing::info!(media.id = %media_id, listing.id = %listing_id, "thumbnail made");
    Ok(())
}

/// Decodes `original` (bounded in size) and scales it down to fit
/// [`THUMBNAIL_SIDE`]; images already that small are only re-encoded.
pub fn render_thumbnail(
    original: &[u8],
    source: ImageFormat,
    target: ImageFormat,
) -> Result<Vec<u8>, image::ImageError> {
    let mut reader = ImageReader::with_format(Cursor::new(original), source);
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    let image = reader.decode()?;
    let image = if image.width() > THUMBNAIL_SIDE || image.height() > THUMBNAIL_SIDE {
        image.thumbnail(THUMBNAIL_SIDE, THUMBNAIL_SIDE)
    } else {
        image
    };
    let image = match target {
        // JPEG has no alpha channel.
        ImageFormat::Jpeg => DynamicImage::ImageRgb8(image.to_rgb8()),
        _ => image,
    };
    let mut out = Cursor::new(Vec::new());
    image.write_to(&mut out, target)?;
    Ok(out.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let image = DynamicImage::new_rgba8(width, height);
        let mut out = Cursor::new(Vec::new());
        image.write_to(&mut out, ImageFormat::Png).unwrap();
        out.into_inner()
    }

    #[test]
    fn thumbnails_fit_the_box_and_keep_the_aspect_ratio() {
        let thumb = render_thumbnail(&png(1000, 500), ImageFormat::Png, ImageFormat::Png).unwrap();
        let decoded = image::load_from_memory(&thumb).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (320, 160));

        let small = render_thumbnail(&png(40, 30), ImageFormat::Png, ImageFormat::Jpeg).unwrap();
        let decoded = image::load_from_memory_with_format(&small, ImageFormat::Jpeg).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (40, 30));
    }

    #[test]
    fn corrupt_images_are_errors_not_panics() {
        let mut bytes = png(10, 10);
        bytes.truncate(20);
        assert!(render_thumbnail(&bytes, ImageFormat::Png, ImageFormat::Png).is_err());
        assert!(render_thumbnail(b"nope", ImageFormat::Jpeg, ImageFormat::Jpeg).is_err());
    }
}
