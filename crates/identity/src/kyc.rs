//! Identity verification (KYC) through a third-party provider.

use rentify_platform::PlatformState;
use utoipa_axum::router::OpenApiRouter;

pub fn routes() -> OpenApiRouter<PlatformState> {
    OpenApiRouter::new()
}
