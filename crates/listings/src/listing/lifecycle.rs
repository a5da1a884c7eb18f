//! The listing state machine, as pure functions:
//!
//! ```text
//! draft ──publish──▶ active            (verified owner, item or service)
//!   │      └───────▶ pending_review ──approve──▶ active
//!   │                      └──reject──▶ rejected ──publish──▶ …
//! active ──pause──▶ paused ──resume──▶ active
//! any but archived ──archive──▶ archived (final)
//! ```
//!
//! Properties and listings of owners whose identity is not verified go
//! through review; edits never change the status (an edited active listing
//! stays active).

use crate::{error::ListingError, model::ListingStatus};

/// Something an owner or an admin does to a listing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Edit,
    /// `needs_review`: a property, or an owner without verified identity.
    Publish {
        needs_review: bool,
    },
    Approve,
    Reject,
    Pause,
    Resume,
    Archive,
}

impl Action {
    /// The verb used in error messages and details.
    pub fn verb(self) -> &'static str {
        match self {
            Action::Edit => "edited",
            Action::Publish { .. } => "published",
            Action::Approve => "approved",
            Action::Reject => "rejected",
            Action::Pause => "paused",
            Action::Resume => "resumed",
            Action::Archive => "archived",
        }
    }

    /// The outbox event a successful action records.
    pub fn event(self, to: ListingStatus) -> &'static str {
        match self {
            Action::Edit => "listing.updated",
            Action::Publish { .. } if to == ListingStatus::PendingReview => {
                "listing.submitted_for_review"
            }
            Action::Publish { .. } => "listing.published",
            Action::Approve => "listing.approved",
            Action::Reject => "listing.rejected",
            Action::Pause => "listing.paused",
            Action::Resume => "listing.resumed",
            Action::Archive => "listing.archived",
        }
    }
}

/// The status after `action`, or 409 `invalid_transition`.
pub fn transition(from: ListingStatus, action: Action) -> Result<ListingStatus, ListingError> {
    use ListingStatus::*;
    let to = match (from, action) {
        (Archived, _) => None,
        (status, Action::Edit) => Some(status),
        (Draft | Rejected, Action::Publish { needs_review: true }) => Some(PendingReview),
        (
            Draft | Rejected,
            Action::Publish {
                needs_review: false,
            },
        ) => Some(Active),
        (PendingReview, Action::Approve) => Some(Active),
        (PendingReview, Action::Reject) => Some(Rejected),
        (Active, Action::Pause) => Some(Paused),
        (Paused, Action::Resume) => Some(Active),
        (_, Action::Archive) => Some(Archived),
        _ => None,
    };
    to.ok_or(ListingError::InvalidTransition {
        status: from,
        action: action.verb(),
    })
}

/// Whether anyone may see a listing in `status`; the others are visible to
/// their owner and admins only.
pub fn is_public(status: ListingStatus) -> bool {
    matches!(status, ListingStatus::Active | ListingStatus::Paused)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ListingStatus::*;

    const ACTIONS: [Action; 8] = [
        Action::Edit,
        Action::Publish { needs_review: true },
        Action::Publish {
            needs_review: false,
        },
        Action::Approve,
        Action::Reject,
        Action::Pause,
        Action::Resume,
        Action::Archive,
    ];

    #[test]
    fn the_happy_paths() {
        let publish = Action::Publish {
            needs_review: false,
        };
        let review = Action::Publish { needs_review: true };
        assert_eq!(transition(Draft, publish).unwrap(), Active);
        assert_eq!(transition(Draft, review).unwrap(), PendingReview);
        assert_eq!(transition(PendingReview, Action::Approve).unwrap(), Active);
        assert_eq!(transition(PendingReview, Action::Reject).unwrap(), Rejected);
        assert_eq!(transition(Rejected, review).unwrap(), PendingReview);
        assert_eq!(transition(Active, Action::Pause).unwrap(), Paused);
        assert_eq!(transition(Paused, Action::Resume).unwrap(), Active);
        assert_eq!(transition(Active, Action::Edit).unwrap(), Active);
    }

    #[test]
    fn archived_is_final_and_everything_else_can_be_archived() {
        for action in ACTIONS {
            assert!(transition(Archived, action).is_err(), "{action:?}");
        }
        for status in ListingStatus::ALL {
            if status != Archived {
                assert_eq!(transition(status, Action::Archive).unwrap(), Archived);
            }
        }
    }

    #[test]
    fn only_listed_transitions_are_allowed() {
        for from in ListingStatus::ALL {
            for action in ACTIONS {
                let allowed = match action {
                    Action::Edit | Action::Archive => from != Archived,
                    Action::Publish { .. } => matches!(from, Draft | Rejected),
                    Action::Approve | Action::Reject => from == PendingReview,
                    Action::Pause => from == Active,
                    Action::Resume => from == Paused,
                };
                assert_eq!(
                    transition(from, action).is_ok(),
                    allowed,
                    "{from:?} {action:?}"
                );
            }
        }
    }
}
