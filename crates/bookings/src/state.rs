//! The booking state machine, a pure transition table (seed "Booking State
//! Machine"):
//!
//! ```text
//! requested → approved → active → completed
//!     │           │         │          │
//!     ↓           ↓         ↓          ↓
//!  declined    cancelled  disputed → resolved
//! ```
//!
//! plus `cancel` from `requested`, and `extend` from `approved` or `active`,
//! which leaves the booking where it is and creates a child booking. Who may
//! take each action is part of the table too ([`allowed`]); the handlers
//! only look things up here.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Where a booking is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = BookingStatus)]
pub enum Status {
    /// Reserved by the schema for the payments issue; no transition leads
    /// here yet.
    PendingPayment,
    Requested,
    Approved,
    Declined,
    Cancelled,
    Active,
    Completed,
    Disputed,
    Resolved,
}

impl Status {
    pub const ALL: [Self; 9] = [
        Self::PendingPayment,
        Self::Requested,
        Self::Approved,
        Self::Declined,
        Self::Cancelled,
        Self::Active,
        Self::Completed,
        Self::Disputed,
        Self::Resolved,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::PendingPayment => "pending_payment",
            Self::Requested => "requested",
            Self::Approved => "approved",
            Self::Declined => "declined",
            Self::Cancelled => "cancelled",
            Self::Active => "active",
            Self::Completed => "completed",
            Self::Disputed => "disputed",
            Self::Resolved => "resolved",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == value)
    }

    /// No action leads anywhere from here.
    pub fn is_terminal(self) -> bool {
        Action::ALL
            .into_iter()
            .all(|action| next(self, action).is_none())
    }

    /// Whether a booking in this status holds its unit of the listing.
    pub fn holds_unit(self) -> bool {
        !matches!(self, Self::Declined | Self::Cancelled)
    }
}

/// What someone does to a booking.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = BookingAction)]
pub enum Action {
    Approve,
    Decline,
    /// The approval timer declining a request nobody answered.
    Expire,
    Cancel,
    Start,
    Complete,
    Extend,
    Dispute,
    Resolve,
}

impl Action {
    pub const ALL: [Self; 9] = [
        Self::Approve,
        Self::Decline,
        Self::Expire,
        Self::Cancel,
        Self::Start,
        Self::Complete,
        Self::Extend,
        Self::Dispute,
        Self::Resolve,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approve => "approve",
            Self::Decline => "decline",
            Self::Expire => "expire",
            Self::Cancel => "cancel",
            Self::Start => "start",
            Self::Complete => "complete",
            Self::Extend => "extend",
            Self::Dispute => "dispute",
            Self::Resolve => "resolve",
        }
    }

    /// The outbox event the action writes (`booking.<event>`).
    pub fn event(self) -> &'static str {
        match self {
            Self::Approve => "booking.approved",
            Self::Decline | Self::Expire => "booking.declined",
            Self::Cancel => "booking.cancelled",
            Self::Start => "booking.started",
            Self::Complete => "booking.completed",
            Self::Extend => "booking.extended",
            Self::Dispute => "booking.disputed",
            Self::Resolve => "booking.resolved",
        }
    }

    /// Whether the action gives the booking's unit back to the listing.
    pub fn releases_unit(self) -> bool {
        matches!(self, Self::Decline | Self::Expire | Self::Cancel)
    }
}

/// Who acts, relative to the booking.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = BookingParty)]
pub enum Party {
    Renter,
    Owner,
    Admin,
    /// Timers and other background work.
    System,
}

/// The status `action` leads to from `from`, or `None` when the transition
/// does not exist (409 `invalid_transition`). `Extend` keeps the status.
pub fn next(from: Status, action: Action) -> Option<Status> {
    use Action as A;
    use Status as S;
    match (from, action) {
        (S::Requested, A::Approve) => Some(S::Approved),
        (S::Requested, A::Decline | A::Expire) => Some(S::Declined),
        (S::Requested | S::Approved, A::Cancel) => Some(S::Cancelled),
        (S::Approved, A::Start) => Some(S::Active),
        (S::Active, A::Complete) => Some(S::Completed),
        (S::Approved | S::Active, A::Extend) => Some(from),
        (S::Active | S::Completed, A::Dispute) => Some(S::Disputed),
        (S::Disputed, A::Resolve) => Some(S::Resolved),
        _ => None,
    }
}

/// Whether `party` may take `action` (whatever the status).
pub fn allowed(action: Action, party: Party) -> bool {
    use Action as A;
    use Party as P;
    match action {
        A::Approve | A::Decline | A::Start | A::Complete => party == P::Owner,
        A::Expire => party == P::System,
        A::Cancel => matches!(party, P::Renter | P::Owner | P::Admin),
        A::Extend => party == P::Renter,
        A::Dispute => matches!(party, P::Renter | P::Owner),
        A::Resolve => party == P::Admin,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn status() -> impl Strategy<Value = Status> {
        proptest::sample::select(Status::ALL.to_vec())
    }

    fn action() -> impl Strategy<Value = Action> {
        proptest::sample::select(Action::ALL.to_vec())
    }

    /// Position along the happy path; every transition but `extend` moves
    /// strictly forward, so the machine has no cycles.
    fn rank(status: Status) -> u8 {
        match status {
            Status::PendingPayment => 0,
            Status::Requested => 1,
            Status::Approved => 2,
            Status::Declined | Status::Cancelled => 9,
            Status::Active => 3,
            Status::Completed => 4,
            Status::Disputed => 5,
            Status::Resolved => 6,
        }
    }

    #[test]
    fn the_seed_table() {
        use Action as A;
        use Status as S;
        let table = [
            (S::Requested, A::Approve, S::Approved),
            (S::Requested, A::Decline, S::Declined),
            (S::Requested, A::Expire, S::Declined),
            (S::Requested, A::Cancel, S::Cancelled),
            (S::Approved, A::Cancel, S::Cancelled),
            (S::Approved, A::Start, S::Active),
            (S::Active, A::Complete, S::Completed),
            (S::Approved, A::Extend, S::Approved),
            (S::Active, A::Extend, S::Active),
            (S::Active, A::Dispute, S::Disputed),
            (S::Completed, A::Dispute, S::Disputed),
            (S::Disputed, A::Resolve, S::Resolved),
        ];
        for (from, action, to) in table {
            assert_eq!(next(from, action), Some(to), "{from:?} --{action:?}-->");
        }
        let defined = Status::ALL
            .into_iter()
            .flat_map(|s| Action::ALL.into_iter().map(move |a| (s, a)))
            .filter(|&(s, a)| next(s, a).is_some())
            .count();
        assert_eq!(defined, table.len(), "no transition outside the table");
    }

    #[test]
    fn terminal_statuses() {
        for s in [Status::Declined, Status::Cancelled, Status::Resolved] {
            assert!(s.is_terminal(), "{s:?}");
        }
        for s in [Status::Requested, Status::Approved, Status::Active] {
            assert!(!s.is_terminal(), "{s:?}");
        }
    }

    #[test]
    fn who_may_act() {
        assert!(allowed(Action::Approve, Party::Owner));
        assert!(!allowed(Action::Approve, Party::Renter));
        assert!(!allowed(Action::Approve, Party::Admin));
        assert!(allowed(Action::Cancel, Party::Admin));
        assert!(!allowed(Action::Cancel, Party::System));
        assert!(allowed(Action::Resolve, Party::Admin));
        assert!(!allowed(Action::Resolve, Party::Owner));
        assert!(allowed(Action::Extend, Party::Renter));
        assert!(!allowed(Action::Extend, Party::Owner));
        assert!(allowed(Action::Expire, Party::System));
        assert!(!allowed(Action::Expire, Party::Owner));
    }

    #[test]
    fn statuses_and_actions_round_trip() {
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Some(s));
            let json = serde_json::to_value(s).unwrap();
            assert_eq!(json, s.as_str());
        }
        for a in Action::ALL {
            assert!(a.event().starts_with("booking."));
        }
    }

    proptest! {
        #[test]
        fn transitions_only_move_forward(from in status(), action in action()) {
            if let Some(to) = next(from, action) {
                if action == Action::Extend {
                    prop_assert_eq!(to, from);
                } else {
                    prop_assert!(rank(to) > rank(from), "{:?} -> {:?}", from, to);
                }
            }
        }

        #[test]
        fn exactly_the_releasing_actions_give_the_unit_back(from in status(), action in action()) {
            if let Some(to) = next(from, action) {
                prop_assert!(from.holds_unit());
                prop_assert_eq!(action.releases_unit(), !to.holds_unit());
            }
        }

        #[test]
        fn terminal_statuses_stay_put(from in status(), action in action()) {
            if from.is_terminal() {
                prop_assert_eq!(next(from, action), None);
            }
        }

        #[test]
        fn every_action_has_someone_who_may_take_it(action in action()) {
            let parties = [Party::Renter, Party::Owner, Party::Admin, Party::System];
            prop_assert!(parties.into_iter().any(|p| allowed(action, p)));
            // The system acts only through the timer, people never through it.
            prop_assert_eq!(allowed(action, Party::System), action == Action::Expire);
        }

        #[test]
        fn any_sequence_of_actions_ends_somewhere_valid(actions in proptest::collection::vec(action(), 0..20)) {
            let mut status = Status::Requested;
            let mut steps = 0;
            for action in actions {
                if let Some(to) = next(status, action) {
                    if to != status {
                        steps += 1;
                    }
                    status = to;
                }
            }
            // At most requested → approved → active → completed → disputed → resolved.
            prop_assert!(steps <= 5);
            prop_assert!(Status::ALL.contains(&status));
        }
    }
}
