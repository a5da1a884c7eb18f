//! The domain rules of reviews, pure functions of what they decide on, so
//! the handlers and the service only look things up here:
//!
//! - who may review whom ([`author_role`]): the renter the owner, the owner
//!   the renter, nobody else;
//! - when ([`review_window`]): once the booking is `completed`, until
//!   `REVIEWS_WINDOW_SECS` (14 days) after;
//! - what is public ([`is_public`]): published and unsealed. The double
//!   blind lifts when both parties reviewed or the window closed, so neither
//!   writes knowing the other's review;
//! - what can be edited ([`check_editable`]): by its author, for 48 hours,
//!   and only while still sealed (once the other party can read it, an
//!   edit would be the retaliation the blind prevents); never a rejected one;
//! - what moderation does to it ([`status_after_checks`]): any flag holds
//!   it as `pending`.

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use crate::{
    error::{LockReason, ReviewError},
    model::{AuthorRole, COMMENT_MAX, ReviewRow, ReviewStatus},
    moderation::Flag,
};

/// How long after writing it an author may change a review.
pub const EDIT_WINDOW: Duration = Duration::hours(48);

/// The role of `author` on a booking between `renter_id` and `owner_id`,
/// and whom their review is about; `None` for anyone else.
pub fn author_role(renter_id: Uuid, owner_id: Uuid, author: Uuid) -> Option<(AuthorRole, Uuid)> {
    if renter_id == owner_id {
        return None;
    }
    if author == renter_id {
        Some((AuthorRole::Renter, owner_id))
    } else if author == owner_id {
        Some((AuthorRole::Owner, renter_id))
    } else {
        None
    }
}

/// When the booking's review window closes, if it is open at `now`: the
/// booking must be `completed` (`booking_status`) since `completed_at`.
/// A booking disputed after completion waits for support, not for reviews.
pub fn review_window(
    booking_status: &str,
    completed_at: DateTime<Utc>,
    now: DateTime<Utc>,
    window: Duration,
) -> Result<DateTime<Utc>, ReviewError> {
    if booking_status != "completed" {
        return Err(ReviewError::BookingNotCompleted {
            current: booking_status.to_owned(),
        });
    }
    let closes = completed_at + window;
    if now >= closes {
        return Err(ReviewError::WindowClosed { closed_at: closes });
    }
    Ok(closes)
}

/// Published and unsealed: shown to everyone and counted.
pub fn is_public(status: &str, visible_at: Option<DateTime<Utc>>) -> bool {
    status == ReviewStatus::Published.as_str() && visible_at.is_some()
}

/// Whether the author may still change `review` at `now`.
pub fn check_editable(review: &ReviewRow, now: DateTime<Utc>) -> Result<(), ReviewError> {
    if review.status == ReviewStatus::Rejected.as_str() {
        return Err(ReviewError::Locked(LockReason::Rejected));
    }
    if now >= review.editable_until {
        return Err(ReviewError::Locked(LockReason::EditWindowPassed));
    }
    if review.visible_at.is_some() {
        return Err(ReviewError::Locked(LockReason::Revealed));
    }
    Ok(())
}

/// A clean review is published at once; a flagged one waits for an admin.
pub fn status_after_checks(flags: &[Flag]) -> ReviewStatus {
    if flags.is_empty() {
        ReviewStatus::Published
    } else {
        ReviewStatus::Pending
    }
}

/// The comment as stored: trimmed, blank as none.
pub fn clean_comment(comment: Option<&str>) -> Option<String> {
    comment
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
}

/// The comment's length rule, for inputs `validator` cannot reach (a
/// PATCH's `null`-able comment).
pub fn check_comment_length(comment: Option<&str>) -> Result<(), rentify_platform::ApiError> {
    match comment {
        Some(c) if c.chars().count() > COMMENT_MAX => {
            Err(rentify_platform::ApiError::invalid_field(
                "comment",
                "length",
                format!("length must be at most {COMMENT_MAX}"),
            ))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    fn review(status: &str, visible_at: Option<DateTime<Utc>>) -> ReviewRow {
        ReviewRow {
            id: Uuid::now_v7(),
            booking_id: Uuid::now_v7(),
            listing_id: Uuid::now_v7(),
            author_id: Uuid::now_v7(),
            target_id: Uuid::now_v7(),
            author_role: "renter".into(),
            rating: 4,
            comment: None,
            status: status.into(),
            moderation_flags: vec![],
            rejection_reason: None,
            moderated_by: None,
            moderated_at: None,
            visible_at,
            editable_until: at(0) + EDIT_WINDOW,
            window_closes_at: at(0) + Duration::days(14),
            version: 1,
            created_at: at(0),
            updated_at: at(0),
        }
    }

    #[test]
    fn only_the_two_parties_review_each_other() {
        let (renter, owner, stranger) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        assert_eq!(
            author_role(renter, owner, renter),
            Some((AuthorRole::Renter, owner))
        );
        assert_eq!(
            author_role(renter, owner, owner),
            Some((AuthorRole::Owner, renter))
        );
        assert_eq!(author_role(renter, owner, stranger), None);
        assert_eq!(author_role(renter, renter, renter), None);
    }

    #[test]
    fn the_window_opens_at_completion_and_closes_after_it() {
        let window = Duration::days(14);
        assert_eq!(
            review_window("completed", at(0), at(10), window).unwrap(),
            at(0) + window
        );
        for status in ["requested", "approved", "active", "disputed", "cancelled"] {
            assert!(matches!(
                review_window(status, at(0), at(10), window),
                Err(ReviewError::BookingNotCompleted { current }) if current == status
            ));
        }
        assert!(matches!(
            review_window("completed", at(0), at(0) + window, window),
            Err(ReviewError::WindowClosed { closed_at }) if closed_at == at(0) + window
        ));
    }

    #[test]
    fn editing_stops_after_48_hours_once_revealed_or_rejected() {
        let sealed = review("published", None);
        assert!(check_editable(&sealed, at(3600)).is_ok());
        assert!(matches!(
            check_editable(&sealed, at(0) + EDIT_WINDOW),
            Err(ReviewError::Locked(LockReason::EditWindowPassed))
        ));
        assert!(matches!(
            check_editable(&review("published", Some(at(60))), at(3600)),
            Err(ReviewError::Locked(LockReason::Revealed))
        ));
        assert!(matches!(
            check_editable(&review("rejected", None), at(3600)),
            Err(ReviewError::Locked(LockReason::Rejected))
        ));
        assert!(check_editable(&review("pending", None), at(3600)).is_ok());
    }

    #[test]
    fn only_published_unsealed_reviews_are_public() {
        assert!(is_public("published", Some(at(0))));
        assert!(!is_public("published", None));
        assert!(!is_public("pending", Some(at(0))));
        assert!(!is_public("rejected", Some(at(0))));
        assert_eq!(status_after_checks(&[]), ReviewStatus::Published);
        assert_eq!(status_after_checks(&[Flag::Link]), ReviewStatus::Pending);
    }

    #[test]
    fn comments_are_trimmed_and_bounded() {
        assert_eq!(clean_comment(Some("  nice  ")).as_deref(), Some("nice"));
        assert_eq!(clean_comment(Some("   ")), None);
        assert_eq!(clean_comment(None), None);
        assert!(check_comment_length(Some(&"é".repeat(2000))).is_ok());
        let too_long = check_comment_length(Some(&"a".repeat(2001))).unwrap_err();
        assert_eq!(too_long.code(), "validation_failed");
    }

    proptest! {
        #[test]
        fn a_review_is_writable_exactly_inside_the_window(done in -1_000_000i64..1_000_000, now in -1_000_000i64..3_000_000) {
            let window = Duration::days(14);
            let open = review_window("completed", at(done), at(now), window).is_ok();
            prop_assert_eq!(open, at(now) < at(done) + window);
        }

        #[test]
        fn nothing_is_editable_after_its_deadline(offset in 0i64..10_000_000, revealed in any::<bool>()) {
            let r = review("published", revealed.then(|| at(1)));
            let now = at(0) + EDIT_WINDOW + Duration::seconds(offset);
            prop_assert!(check_editable(&r, now).is_err());
        }
    }
}
