//! Every payments route.

use rentify_platform::PlatformState;
use utoipa_axum::router::OpenApiRouter;

pub fn routes() -> OpenApiRouter<PlatformState> {
    OpenApiRouter::new()
        .merge(crate::methods::routes())
        .merge(crate::webhooks::routes())
        .merge(crate::payouts::routes())
        .merge(crate::wallet::routes())
        .merge(crate::reconcile::routes())
}
