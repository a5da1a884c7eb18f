//! Builds the HTTP application: one router for every module, behind the
//! platform's middleware stack. `main` and the tests both use
//! [`Application::build`].

use std::{future::Future, net::SocketAddr};

use axum::middleware;
use axum::{Extension, Router, http::HeaderValue};
use rentify_bookings::Bookings;
use rentify_events::Backlog;
use rentify_identity::Identity;
use rentify_listings::Listings;
use rentify_notifications::Notifications;
use rentify_payments::Payments;
use rentify_platform::{PlatformState, config::Config, db, health, http};
use rentify_reviews::Reviews;
use rentify_search::SearchIndex;
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower_http::set_header::SetResponseHeaderLayer;
use utoipa_axum::{router::OpenApiRouter, routes};
use utoipa_swagger_ui::SwaggerUi;

use crate::openapi;

/// Every API route, with its OpenAPI description. Modules contribute their
/// `OpenApiRouter`s here.
pub fn api_routes() -> OpenApiRouter<PlatformState> {
    OpenApiRouter::with_openapi(openapi::base())
        .merge(ops_routes())
        .merge(rentify_identity::routes())
        // Listing and notification writes can wait when the event consumers
        // are behind; sign-in, bookings and payments cannot.
        .merge(rentify_listings::routes().layer(middleware::from_fn(
            rentify_events::backlog::shed_when_overloaded,
        )))
        .merge(rentify_bookings::routes())
        .merge(rentify_payments::routes())
        .merge(rentify_notifications::routes().layer(middleware::from_fn(
            rentify_events::backlog::shed_when_overloaded,
        )))
        .merge(rentify_events::dead_letters::routes())
        // Reviews are not urgent either; their reads are public.
        .merge(rentify_reviews::routes().layer(middleware::from_fn(
            rentify_events::backlog::shed_when_overloaded,
        )))
        .merge(rentify_search::routes())
}

/// Health and metrics: served by the API and by `rentify worker`.
pub fn ops_routes() -> OpenApiRouter<PlatformState> {
    OpenApiRouter::new()
        .routes(routes!(health::live))
        .routes(routes!(health::ready))
        .routes(routes!(http::metrics::render))
}

/// The modules' services, built once per process and handed to their
/// handlers as request extensions.
#[derive(Clone)]
pub struct Modules {
    pub identity: Identity,
    pub listings: Listings,
    pub bookings: Bookings,
    pub payments: Payments,
    pub notifications: Notifications,
    pub reviews: Reviews,
    /// How far behind the event consumers are (measured by the API process).
    pub backlog: Backlog,
    /// This process's search replica, and where in the outbox its follower
    /// starts (the snapshot it was built from).
    pub search: SearchIndex,
    pub search_resume: rentify_events::stream::Cursor,
}

impl Modules {
    /// Builds every module on `state` (the database must be migrated).
    pub async fn init(state: &PlatformState) -> anyhow::Result<Self> {
        let identity = Identity::init(state).await.map_err(|e| {
            anyhow::anyhow!("cannot start the identity module (is the database migrated? run `rentify migrate`): {e}")
        })?;
        let listings = Listings::init(state).await?;
        let payments = Payments::init(state).await?;
        let bookings = Bookings::init(state, payments.clone()).await?;
        let notifications = Notifications::init(state, identity.clone()).await?;
        let reviews = Reviews::init(state).await?;
        let (search, search_resume) = SearchIndex::build(state.db.clone())
            .await
            .map_err(|e| anyhow::anyhow!("cannot build the search index: {e}"))?;
        Ok(Self {
            identity,
            listings,
            bookings,
            payments,
            notifications,
            reviews,
            backlog: Backlog::new(state.config.events_backlog_limit),
            search,
            search_resume,
        })
    }
}

/// The complete router for `state`: API, docs, fallbacks and middleware.
pub fn router(state: PlatformState, modules: Modules) -> Router {
    router_with(state, modules, Router::new())
}

/// [`router`] plus `extra` routes behind the same middleware; the tests use
/// it to mount a reference module that exercises the platform pieces.
pub fn router_with(state: PlatformState, modules: Modules, extra: Router<PlatformState>) -> Router {
    let (api, document) = api_routes().split_for_parts();
    let api = api
        .merge(extra)
        // One `layer` call: each call boxes the routes again (see
        // `http::apply`).
        .layer(
            ServiceBuilder::new()
                .layer(Extension(modules.identity))
                .layer(Extension(modules.listings))
                .layer(Extension(modules.bookings))
                .layer(Extension(modules.payments))
                .layer(Extension(modules.notifications))
                .layer(Extension(modules.reviews))
                .layer(Extension(modules.backlog))
                .layer(Extension(modules.search)),
        );
    let docs = Router::from(SwaggerUi::new("/docs").url("/v1/openapi.json", document)).layer(
        SetResponseHeaderLayer::overriding(
            axum::http::header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline'",
            ),
        ),
    );
    let router = api.merge(docs).fallback(http::envelope::not_found);
    http::apply(router, &state).with_state(state)
}

/// A bound, ready-to-run HTTP server.
pub struct Application {
    listener: TcpListener,
    state: PlatformState,
    modules: Modules,
    extra: Router<PlatformState>,
}

impl Application {
    /// Connects the stores and binds the port (`PORT=0` picks a free one).
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let pool = db::connect(&config).await?;
        Self::build_with_pool(config, pool).await
    }

    /// [`Application::build`] on an existing pool (`rentify all` migrates
    /// on it first).
    pub async fn build_with_pool(config: Config, pool: sqlx::PgPool) -> anyhow::Result<Self> {
        let addr = SocketAddr::new(config.host, config.port);
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot bind {addr} (HOST/PORT): {e}"))?;
        let state = PlatformState::build(config, pool).await?;
        let modules = Modules::init(&state).await?;
        if state.config.payments_webhook_url.is_none()
            && let Some(sandbox) = modules.payments.sandbox()
        {
            // The port is only known now (PORT=0 picks one).
            let port = listener.local_addr()?.port();
            sandbox.set_webhook_url(format!("http://127.0.0.1:{port}/v1/webhooks/payments"));
        }
        Ok(Self {
            listener,
            state,
            modules,
            extra: Router::new(),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn state(&self) -> &PlatformState {
        &self.state
    }

    pub fn modules(&self) -> &Modules {
        &self.modules
    }

    /// Mounts more routes behind the same middleware (tests only).
    #[doc(hidden)]
    pub fn with_extra_routes(mut self, extra: Router<PlatformState>) -> Self {
        self.extra = extra;
        self
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets in-flight
    /// requests finish (up to `SHUTDOWN_GRACE_SECS`). The pool stays open: the
    /// caller closes it once everything sharing it (the worker in `all`) stopped.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Self {
            listener,
            state,
            modules,
            extra,
        } = self;
        let grace = state.config.shutdown_grace();
        // Measure the consumers' backlog while serving, for backpressure.
        let monitor = tokio_util::sync::CancellationToken::new();
        let _stop_monitor = monitor.clone().drop_guard();
        modules.backlog.spawn_monitor(
            state.db.clone(),
            crate::consumers::backlog_cursors(&state, &modules),
            std::time::Duration::from_secs(1),
            monitor.clone(),
        );
        // Keep this process's search replica current.
        modules.search.spawn_follower(
            modules.search_resume,
            state.config.search_refresh(),
            monitor,
        );
        tracing::info!(addr = %listener.local_addr()?, docs = %format!("{}/docs", state.config.public_base_url), "serving the API");
        let (draining_tx, mut draining_rx) = tokio::sync::watch::channel(false);
        let draining_state = state.clone();
        let app =
            router_with(state, modules, extra).into_make_service_with_connect_info::<SocketAddr>();
        let server = axum::serve(listener, app).with_graceful_shutdown(async move {
            shutdown.await;
            draining_state.start_draining();
            let _ = draining_tx.send(true);
        });
        let server = tokio::spawn(async move { server.await });
        let mut server = server;
        tokio::select! {
            result = &mut server => { result??; }
            _ = draining_rx.changed() => {
                match tokio::time::timeout(grace, &mut server).await {
                    Ok(result) => result??,
                    Err(_) => {
                        tracing::warn!(grace_secs = grace.as_secs(), "in-flight requests did not finish in time");
                        server.abort();
                    }
                }
            }
        }
        tracing::info!("stopped");
        Ok(())
    }
}
