//! Privacy: GDPR data export and erasure.

use rentify_platform::PlatformState;
use utoipa_axum::router::OpenApiRouter;

pub fn routes() -> OpenApiRouter<PlatformState> {
    OpenApiRouter::new()
}
