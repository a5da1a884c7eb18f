//! A review as stored, as each viewer sees it, as it is written (the
//! inputs), and the payload of its outbox events.

use axum::{
    Json,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use rentify_platform::http::etag::if_match_allows;
pub use rentify_platform::http::etag::with_etag;
use rentify_platform::patch::double_option;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;
use validator::Validate;

use crate::error::ReviewError;

/// Longest comment, in characters (also a CHECK in the table).
pub const COMMENT_MAX: usize = 2000;

/// Where a review is in moderation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = ReviewStatus)]
pub enum ReviewStatus {
    /// Held by the moderation checks until an admin decides; not shown to
    /// anyone but its author and admins, not counted.
    Pending,
    Published,
    /// An admin refused it (final).
    Rejected,
}

impl ReviewStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Published => "published",
            Self::Rejected => "rejected",
        }
    }
}

/// Which side of the booking wrote the review.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = ReviewAuthorRole)]
pub enum AuthorRole {
    /// The renter, about the owner.
    Renter,
    /// The owner, about the renter.
    Owner,
}

impl AuthorRole {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Renter => "renter",
            Self::Owner => "owner",
        }
    }
}

/// Every column of `reviews`, in [`COLUMNS`] order.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct ReviewRow {
    pub id: Uuid,
    pub booking_id: Uuid,
    pub listing_id: Uuid,
    pub author_id: Uuid,
    pub target_id: Uuid,
    pub author_role: String,
    pub rating: i16,
    pub comment: Option<String>,
    pub status: String,
    pub moderation_flags: Vec<String>,
    pub rejection_reason: Option<String>,
    pub moderated_by: Option<Uuid>,
    pub moderated_at: Option<DateTime<Utc>>,
    pub visible_at: Option<DateTime<Utc>>,
    pub editable_until: DateTime<Utc>,
    pub window_closes_at: DateTime<Utc>,
    pub version: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The column list of [`ReviewRow`], for `SELECT` and `RETURNING`.
pub const COLUMNS: &str = "id, booking_id, listing_id, author_id, target_id, author_role, rating,
    comment, status, moderation_flags, rejection_reason, moderated_by, moderated_at, visible_at,
    editable_until, window_closes_at, version, created_at, updated_at";

/// Who is looking, which decides what of a review they see.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Viewer {
    /// Its author: everything, sealed or held.
    Author,
    /// An admin: everything.
    Admin,
    /// Anyone else, the reviewed party included: only a public review, and
    /// not its moderation record.
    Public,
}

impl ReviewRow {
    /// Published and unsealed: shown to everyone and counted.
    pub fn is_public(&self) -> bool {
        crate::rules::is_public(&self.status, self.visible_at)
    }

    pub fn view(&self, viewer: Viewer) -> Review {
        let private = viewer != Viewer::Public;
        Review {
            id: self.id,
            object: "review",
            booking_id: self.booking_id,
            listing_id: self.listing_id,
            author_id: self.author_id,
            target_id: self.target_id,
            author_role: self.author_role.clone(),
            rating: self.rating,
            comment: self.comment.clone(),
            status: self.status.clone(),
            visible: self.is_public(),
            visible_at: self.visible_at,
            moderation_flags: private.then(|| self.moderation_flags.clone()),
            rejection_reason: if private {
                self.rejection_reason.clone()
            } else {
                None
            },
            editable_until: self.editable_until,
            window_closes_at: self.window_closes_at,
            version: self.version,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }

    pub fn event_payload(&self, actor_id: Option<Uuid>) -> EventPayload<'_> {
        EventPayload {
            review_id: self.id,
            booking_id: self.booking_id,
            listing_id: self.listing_id,
            author_id: self.author_id,
            target_id: self.target_id,
            author_role: &self.author_role,
            rating: self.rating,
            status: &self.status,
            visible: self.is_public(),
            visible_at: self.visible_at,
            moderation_flags: &self.moderation_flags,
            actor_id,
            reason: self.rejection_reason.as_deref(),
        }
    }
}

/// A review of one party of a completed booking by the other.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Review {
    pub id: Uuid,
    /// Always `review`.
    #[schema(example = "review")]
    pub object: &'static str,
    pub booking_id: Uuid,
    pub listing_id: Uuid,
    pub author_id: Uuid,
    /// Whom the review is about: the other party of the booking.
    pub target_id: Uuid,
    #[schema(value_type = AuthorRole)]
    pub author_role: String,
    /// 1 to 5.
    pub rating: i16,
    pub comment: Option<String>,
    #[schema(value_type = ReviewStatus)]
    pub status: String,
    /// Shown to everyone and counted in the ratings: `published` and no
    /// longer sealed. A sealed review waits for the other party's review or
    /// the end of the review window.
    pub visible: bool,
    /// When the double blind lifted; `null` while sealed.
    pub visible_at: Option<DateTime<Utc>>,
    /// What the moderation checks found (`link`, `profanity`, …). Only for
    /// the author and admins.
    #[schema(value_type = Option<Vec<crate::moderation::Flag>>)]
    pub moderation_flags: Option<Vec<String>>,
    /// Why an admin rejected it. Only for the author and admins.
    pub rejection_reason: Option<String>,
    /// The author may edit it until then, while it is still sealed.
    pub editable_until: DateTime<Utc>,
    /// The end of the booking's review window: a lone review is revealed
    /// then, and no review can be written after it.
    pub window_closes_at: DateTime<Utc>,
    /// Bumped by every change; the `ETag`.
    pub version: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The body of `POST /v1/bookings/{id}/reviews`.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema, Validate)]
#[serde(deny_unknown_fields)]
pub struct NewReview {
    /// 1 (worst) to 5 (best), a whole number.
    #[validate(range(min = 1, max = 5))]
    #[schema(minimum = 1, maximum = 5)]
    pub rating: u8,
    /// Up to 2000 characters; blank means none.
    #[validate(length(max = 2000))]
    pub comment: Option<String>,
}

/// The body of `PATCH /v1/reviews/{id}`: the fields to change.
#[derive(Clone, Debug, Default, Deserialize, Serialize, ToSchema, Validate)]
#[serde(deny_unknown_fields)]
pub struct ReviewPatch {
    #[validate(range(min = 1, max = 5))]
    #[schema(minimum = 1, maximum = 5)]
    pub rating: Option<u8>,
    /// Up to 2000 characters; `null` or blank removes it.
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub comment: Option<Option<String>>,
}

/// `{reason}` of a rejection.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema, Validate)]
#[serde(deny_unknown_fields)]
#[schema(as = ReviewRejection)]
pub struct Rejection {
    /// Shown to the author; 1 to 1000 characters.
    #[validate(custom(function = "not_blank"), length(max = 1000))]
    pub reason: String,
}

fn not_blank(value: &str) -> Result<(), validator::ValidationError> {
    if value.trim().is_empty() {
        let mut error = validator::ValidationError::new("required");
        error.message = Some("must not be empty".into());
        Err(error)
    } else {
        Ok(())
    }
}

/// The payload of every `review.*` outbox event. `visible` is whether the
/// review is public (published and unsealed): what the rating aggregate
/// and the search index count.
#[derive(Clone, Debug, Serialize)]
pub struct EventPayload<'a> {
    pub review_id: Uuid,
    pub booking_id: Uuid,
    pub listing_id: Uuid,
    pub author_id: Uuid,
    pub target_id: Uuid,
    pub author_role: &'a str,
    pub rating: i16,
    pub status: &'a str,
    pub visible: bool,
    pub visible_at: Option<DateTime<Utc>>,
    pub moderation_flags: &'a [String],
    /// The admin of an approval or rejection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor_id: Option<Uuid>,
    /// A rejection's reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
}

/// Checks `If-Match` against the current version as listings do (strong
/// comparison): absent or `*` passes; otherwise one of the listed tags must
/// be `"<version>"`, else 412 `precondition_failed`.
pub fn check_if_match(headers: &HeaderMap, version: i32) -> Result<(), ReviewError> {
    if if_match_allows(headers, version) {
        Ok(())
    } else {
        Err(ReviewError::PreconditionFailed { current: version })
    }
}

/// One review as a response, with its `ETag`.
pub struct ReviewResponse {
    pub status: StatusCode,
    pub review: Review,
}

impl IntoResponse for ReviewResponse {
    fn into_response(self) -> Response {
        let version = self.review.version;
        with_etag((self.status, Json(self.review)).into_response(), version)
    }
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderValue, header};

    use super::*;

    fn with(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::IF_MATCH, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn if_match_uses_strong_comparison() {
        assert!(check_if_match(&HeaderMap::new(), 3).is_ok());
        assert!(check_if_match(&with("\"3\""), 3).is_ok());
        assert!(check_if_match(&with("\"1\", \"3\""), 3).is_ok());
        assert!(check_if_match(&with("*"), 3).is_ok());
        assert!(matches!(
            check_if_match(&with("\"2\""), 3),
            Err(ReviewError::PreconditionFailed { current: 3 })
        ));
        assert!(check_if_match(&with("W/\"3\""), 3).is_err());
    }

    #[test]
    fn patches_tell_a_null_comment_from_an_absent_one() {
        let absent: ReviewPatch = serde_json::from_str(r#"{"rating": 4}"#).unwrap();
        assert_eq!(absent.comment, None);
        let null: ReviewPatch = serde_json::from_str(r#"{"comment": null}"#).unwrap();
        assert_eq!(null.comment, Some(None));
        assert!(serde_json::from_str::<ReviewPatch>(r#"{"stars": 4}"#).is_err());
    }
}
