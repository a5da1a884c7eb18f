//! Every event consumer of the platform, listed in one place: the worker
//! runs them, the API measures their backlog.

use rentify_events::Consumer;
use rentify_notifications::Notifications;
use rentify_platform::PlatformState;

use crate::app::Modules;

/// The consumers, by module.
pub fn all(notifications: &Notifications) -> Vec<Consumer> {
    let mut consumers = notifications.consumers();
    consumers.extend(rentify_bookings::consumers());
    consumers.extend(rentify_reviews::consumers());
    consumers
}

/// The cursors whose backlog turns into backpressure (see
/// [`rentify_events::backlog`]).
pub fn backlog_cursors(state: &PlatformState, modules: &Modules) -> Vec<String> {
    rentify_events::backlog_cursors(
        &all(&modules.notifications),
        state.config.nats_url.is_some(),
    )
}
