//! Where media bytes live: the local filesystem (`MEDIA_DIR`, default) or an
//! S3-compatible bucket (`MEDIA_S3_BUCKET`), both behind `object_store`
//! (ADR 0009). Clients never send media through a handler that buffers
//! JSON: they PUT the bytes to an upload URL, which is a signed Rentify URL
//! for the local store and a presigned bucket URL for S3.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use object_store::{
    ObjectStore, PutPayload, aws::AmazonS3, aws::AmazonS3Builder, local::LocalFileSystem,
    path::Path as ObjectPath, signer::Signer,
};
use rentify_platform::config::Config;

use super::signing::{UploadGrant, UploadSigner};

/// The object store of listing media and how uploads reach it.
#[derive(Clone, Debug)]
pub struct MediaStore {
    objects: Arc<dyn ObjectStore>,
    backend: Backend,
    public_base_url: String,
}

#[derive(Clone, Debug)]
enum Backend {
    /// Uploads go to `PUT /v1/uploads/{id}` with an HMAC-signed query.
    Local { signer: UploadSigner },
    /// Uploads go straight to the bucket with a presigned PUT.
    S3 { bucket: Arc<AmazonS3> },
}

/// Where and how the client uploads the bytes.
#[derive(Clone, Debug)]
pub struct UploadTarget {
    pub url: String,
}

impl MediaStore {
    /// The bucket when `MEDIA_S3_BUCKET` is set (credentials from `AWS_*`),
    /// else `MEDIA_DIR`, created if missing.
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        let public_base_url = config.public_base_url.trim_end_matches('/').to_string();
        if let Some(bucket) = &config.media_s3_bucket {
            let s3 = Arc::new(
                AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .build()
                    .map_err(|e| anyhow::anyhow!("MEDIA_S3_BUCKET={bucket}: {e}"))?,
            );
            return Ok(Self {
                objects: s3.clone(),
                backend: Backend::S3 { bucket: s3 },
                public_base_url,
            });
        }
        std::fs::create_dir_all(&config.media_dir)
            .map_err(|e| anyhow::anyhow!("cannot create MEDIA_DIR `{}`: {e}", config.media_dir))?;
        let local = LocalFileSystem::new_with_prefix(&config.media_dir)
            .map_err(|e| anyhow::anyhow!("MEDIA_DIR `{}`: {e}", config.media_dir))?;
        Ok(Self {
            objects: Arc::new(local),
            backend: Backend::Local {
                signer: UploadSigner::from_config(config),
            },
            public_base_url,
        })
    }

    /// Whether Rentify itself receives uploads and serves the objects.
    pub fn is_local(&self) -> bool {
        matches!(self.backend, Backend::Local { .. })
    }

    /// The signer of local upload URLs (`None` for S3).
    pub fn upload_signer(&self) -> Option<&UploadSigner> {
        match &self.backend {
            Backend::Local { signer } => Some(signer),
            Backend::S3 { .. } => None,
        }
    }

    /// The URL the client PUTs the bytes of `grant` to, valid for `ttl`.
    pub async fn upload_target(
        &self,
        key: &str,
        grant: &UploadGrant<'_>,
        ttl: Duration,
    ) -> anyhow::Result<UploadTarget> {
        let url = match &self.backend {
            Backend::Local { signer } => format!(
                "{}/v1/uploads/{}?expires={}&signature={}",
                self.public_base_url,
                grant.media_id,
                grant.expires,
                signer.sign(grant)
            ),
            // The presigned URL binds the method, key and expiry only;
            // `complete` checks the size and the bytes' signature.
            Backend::S3 { bucket } => bucket
                .signed_url(axum::http::Method::PUT, &object_path(key)?, ttl)
                .await?
                .to_string(),
        };
        Ok(UploadTarget { url })
    }

    /// A presigned GET of `key` (S3 only), for `GET /media/...` redirects.
    pub async fn download_url(&self, key: &str, ttl: Duration) -> anyhow::Result<Option<String>> {
        match &self.backend {
            Backend::Local { .. } => Ok(None),
            Backend::S3 { bucket } => Ok(Some(
                bucket
                    .signed_url(axum::http::Method::GET, &object_path(key)?, ttl)
                    .await?
                    .to_string(),
            )),
        }
    }

    /// The public URL of an object: `<PUBLIC_BASE_URL>/media/<key>`.
    pub fn public_url(&self, key: &str) -> String {
        format!("{}/media/{key}", self.public_base_url)
    }

    pub async fn put(&self, key: &str, bytes: Bytes) -> anyhow::Result<()> {
        self.objects
            .put(&object_path(key)?, PutPayload::from(bytes))
            .await?;
        Ok(())
    }

    /// The object's size, or `None` when it does not exist.
    pub async fn size(&self, key: &str) -> anyhow::Result<Option<u64>> {
        match self.objects.head(&object_path(key)?).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The first `len` bytes (fewer if the object is shorter).
    pub async fn head_bytes(&self, key: &str, len: u64, size: u64) -> anyhow::Result<Bytes> {
        let end = len.min(size);
        if end == 0 {
            return Ok(Bytes::new());
        }
        Ok(self.objects.get_range(&object_path(key)?, 0..end).await?)
    }

    /// The whole object, or `None` when it does not exist.
    pub async fn get(&self, key: &str) -> anyhow::Result<Option<Bytes>> {
        match self.objects.get(&object_path(key)?).await {
            Ok(result) => Ok(Some(result.bytes().await?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The object as a stream with its size, or `None` when it does not exist.
    pub async fn stream(
        &self,
        key: &str,
    ) -> anyhow::Result<
        Option<(
            u64,
            futures::stream::BoxStream<'static, object_store::Result<Bytes>>,
        )>,
    > {
        match self.objects.get(&object_path(key)?).await {
            Ok(result) => Ok(Some((result.meta.size, result.into_stream()))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes `key`; a missing object is not an error.
    pub async fn delete(&self, key: &str) -> anyhow::Result<()> {
        match self.objects.delete(&object_path(key)?).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// Keys are made by this module (`listings/<uuid>/<uuid>[.thumb.png]`);
/// `Path::parse` still refuses `..`, empty segments and the like.
fn object_path(key: &str) -> anyhow::Result<ObjectPath> {
    ObjectPath::parse(key).map_err(|e| anyhow::anyhow!("invalid object key `{key}`: {e}"))
}
