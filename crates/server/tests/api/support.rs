//! The test harness: a fresh database cloned from a migrated template, the
//! real application on a random port, and an HTTP client.

use std::{sync::OnceLock, time::Duration};

use axum::Router;
use rentify::app::{Application, Modules};
use rentify_platform::{PlatformState, config::Config, db, jobs::Workers};
use reqwest::{Response, header::HeaderMap};
use serde_json::Value;
use sqlx::{Connection, Executor, PgConnection, PgPool};
use tokio::sync::oneshot;

/// The server the tests use: `TEST_DATABASE_URL`, else `DATABASE_URL`, else
/// the local default; only its host and credentials matter.
pub fn server_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .or_else(|_| std::env::var("DATABASE_URL"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/rentify".into())
}

pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL")
        .or_else(|_| std::env::var("REDIS_URL"))
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "redis://127.0.0.1:6379".into())
}

fn url_for_database(name: &str) -> String {
    let base = server_url();
    let (prefix, rest) = base.split_once("://").expect("a URL");
    let host = rest.split('/').next().unwrap_or(rest);
    let query = base
        .split_once('?')
        .map(|(_, q)| format!("?{q}"))
        .unwrap_or_default();
    format!("{prefix}://{host}/{name}{query}")
}

async fn admin() -> PgConnection {
    PgConnection::connect(&url_for_database("postgres"))
        .await
        .expect("PostgreSQL must be running (make test starts it)")
}

/// Name of the template for the current migrations: a new migration gives a
/// new template, so a stale one is never used.
fn template_name() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        for migration in db::MIGRATOR.iter() {
            migration.version.hash(&mut hasher);
            migration.checksum.hash(&mut hasher);
        }
        format!("rentify_tpl_{:016x}", hasher.finish())
    })
}

/// Creates (once per migration set, across processes) the migrated template.
async fn ensure_template(admin: &mut PgConnection) {
    let template = template_name();
    // Serialise template creation across concurrently starting test processes.
    admin
        .execute("SELECT pg_advisory_lock(74110001)")
        .await
        .unwrap();
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(template)
            .fetch_one(&mut *admin)
            .await
            .unwrap();
    if !exists {
        let building = format!("{template}_build");
        admin
            .execute(format!("DROP DATABASE IF EXISTS {building} WITH (FORCE)").as_str())
            .await
            .unwrap();
        admin
            .execute(format!("CREATE DATABASE {building}").as_str())
            .await
            .unwrap();
        let pool = PgPool::connect(&url_for_database(&building)).await.unwrap();
        db::migrate(&pool)
            .await
            .expect("migrations apply to an empty database");
        pool.close().await;
        admin
            .execute(format!("ALTER DATABASE {building} RENAME TO {template}").as_str())
            .await
            .unwrap();
    }
    admin
        .execute("SELECT pg_advisory_unlock(74110001)")
        .await
        .unwrap();
}

/// A new, migrated, empty database; dropped when the guard is.
pub struct TestDatabase {
    pub name: String,
    pub url: String,
}

impl TestDatabase {
    pub async fn create() -> Self {
        let mut admin = admin().await;
        ensure_template(&mut admin).await;
        let name = format!("rentify_test_{}", uuid::Uuid::new_v4().simple());
        // Cloning needs the template free of connections; serialise clones.
        admin
            .execute("SELECT pg_advisory_lock(74110002)")
            .await
            .unwrap();
        let created = admin
            .execute(format!("CREATE DATABASE {name} TEMPLATE {}", template_name()).as_str())
            .await;
        admin
            .execute("SELECT pg_advisory_unlock(74110002)")
            .await
            .unwrap();
        created.expect("clone the template");
        Self {
            url: url_for_database(&name),
            name,
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs inside the test's runtime; use a private one on a thread.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let mut admin = admin().await;
                let _ = admin
                    .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                    .await;
            });
        })
        .join();
    }
}

/// A running application and what a test needs to talk to it.
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub db: PgPool,
    /// The in-process modules (e.g. `modules.payments.sandbox()` to inject
    /// gateway faults).
    pub modules: Modules,
    /// The payments job workers, stopped when the app is dropped.
    _workers: Option<Workers>,
    /// The event consumers (in-process, or on JetStream when the app was
    /// built with `NATS_URL`), stopped when the app is dropped.
    _consumers: Option<rentify_events::Runtime>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    // Last, so the server and pools are gone before the database is dropped.
    pub database: TestDatabase,
}

pub struct TestAppBuilder {
    vars: Vec<(String, String)>,
    routes: Router<PlatformState>,
    payment_jobs: bool,
    consumers: bool,
}

impl TestAppBuilder {
    /// No event consumers: the test runs them itself, or checks what waits
    /// in the outbox.
    pub fn without_consumers(mut self) -> Self {
        self.consumers = false;
        self
    }

    /// Sets an environment variable of the app's configuration.
    pub fn env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.vars.push((key.to_string(), value.into()));
        self
    }

    pub fn routes(mut self, routes: Router<PlatformState>) -> Self {
        self.routes = routes;
        self
    }

    /// No in-process payments worker: the test runs the money tasks itself
    /// (`rentify_payments::escrow::run`), in the order it wants.
    pub fn without_payment_jobs(mut self) -> Self {
        self.payment_jobs = false;
        self
    }

    pub async fn spawn(self) -> TestApp {
        let database = TestDatabase::create().await;
        let mut vars = vec![
            ("HOST".to_string(), "127.0.0.1".to_string()),
            ("PORT".to_string(), "0".to_string()),
            ("DATABASE_URL".to_string(), database.url.clone()),
            ("DATABASE_MAX_CONNECTIONS".to_string(), "10".to_string()),
            ("RATE_LIMITS".to_string(), "off".to_string()),
            ("SHUTDOWN_GRACE_SECS".to_string(), "5".to_string()),
        ];
        vars.extend(self.vars);
        // Later settings win, as in a shell environment.
        let vars: std::collections::BTreeMap<String, String> = vars.into_iter().collect();
        let config = Config::from_vars(vars).expect("valid test configuration");
        let app = Application::build(config.clone())
            .await
            .expect("the app builds")
            .with_extra_routes(self.routes);
        let address = format!("http://{}", app.local_addr());
        let db = app.state().db.clone();
        let modules = app.modules().clone();
        // The money follows bookings through jobs: run them in-process, as
        // `rentify all` does.
        let job_pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(24)
            .connect(&database.url)
            .await
            .expect("connect the job pool");
        let mut workers = Workers::new(2, Duration::from_millis(50));
        if self.payment_jobs {
            modules
                .payments
                .jobs_on(job_pool.clone())
                .await
                .expect("payment jobs")
                .spawn(&mut workers);
        }
        let consumers = if self.consumers {
            modules
                .notifications
                .jobs_on(job_pool.clone())
                .await
                .expect("notification jobs")
                .spawn(&mut workers);
            rentify_reviews::ReviewJobs::build(job_pool.clone())
                .await
                .expect("review jobs")
                .spawn(&mut workers);
            Some(
                rentify_events::Runtime::start(
                    job_pool,
                    rentify::consumers::all(&modules.notifications),
                    rentify_events::Settings::from_config(&config),
                    config
                        .nats_url
                        .as_ref()
                        .map(secrecy::ExposeSecret::expose_secret),
                )
                .await
                .expect("event consumers start"),
            )
        } else {
            None
        };
        let (tx, rx) = oneshot::channel();
        let server = tokio::spawn(app.run_until(async move {
            let _ = rx.await;
        }));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        TestApp {
            address,
            client,
            db,
            modules,
            _workers: Some(workers),
            _consumers: consumers,
            shutdown: Some(tx),
            server: Some(server),
            database,
        }
    }
}

impl TestApp {
    pub fn builder() -> TestAppBuilder {
        TestAppBuilder {
            vars: Vec::new(),
            routes: Router::new(),
            payment_jobs: true,
            consumers: true,
        }
    }

    pub async fn spawn() -> Self {
        Self::builder().spawn().await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn get(&self, path: &str) -> Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request sent")
    }

    pub async fn post_json(&self, path: &str, body: &Value, headers: &[(&str, &str)]) -> Response {
        let mut request = self.client.post(self.url(path)).json(body);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        request.send().await.expect("request sent")
    }

    /// POSTs `body` verbatim as JSON (for bodies `serde_json` would normalise).
    pub async fn post_raw(
        &self,
        path: &str,
        body: &'static str,
        headers: &[(&str, &str)],
    ) -> Response {
        let mut request = self
            .client
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        request.send().await.expect("request sent")
    }

    /// Starts the shutdown without waiting for it.
    pub fn begin_stop(&mut self) -> tokio::task::JoinHandle<anyhow::Result<()>> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.server.take().expect("server running")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

/// Status, headers and JSON body of a response, for compact assertions.
pub async fn parts(response: Response) -> (u16, HeaderMap, Value) {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, headers, body)
}

/// Asserts the error envelope and returns its code.
pub fn error_code(body: &Value) -> &str {
    let error = body
        .get("error")
        .unwrap_or_else(|| panic!("no error envelope in {body}"));
    assert!(error["message"].is_string(), "message missing in {body}");
    assert!(error["details"].is_array(), "details missing in {body}");
    error["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no code in {body}"))
}

/// A strong password every test account uses unless it tests the policy.
pub const PASSWORD: &str = "Tq8#vLm2$xWz9!pR";

impl TestApp {
    /// Any method, with an optional bearer token and JSON body.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Response {
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        request.send().await.expect("request sent")
    }

    /// `call`, then status and JSON body.
    pub async fn call_parts(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let (status, _, body) = parts(self.call(method, path, token, body).await).await;
        (status, body)
    }

    /// Registers `email` with [`PASSWORD`] and returns the session.
    pub async fn register(&self, email: &str) -> Value {
        let (status, body) = self
            .call_parts(
                reqwest::Method::POST,
                "/v1/auth/register",
                None,
                Some(&serde_json::json!({
                    "email": email, "password": PASSWORD, "display_name": email.split('@').next().unwrap()
                })),
            )
            .await;
        assert_eq!(status, 201, "register {email}: {body}");
        body
    }

    /// Registers `email` and returns (user id, access token).
    pub async fn user(&self, email: &str) -> (String, String) {
        let session = self.register(email).await;
        (
            session["user"]["id"].as_str().unwrap().to_owned(),
            session["access_token"].as_str().unwrap().to_owned(),
        )
    }

    /// A signed-in user with a default card (`tok_visa`), ready to book.
    pub async fn renter(&self, email: &str) -> (String, String) {
        let (id, token) = self.user(email).await;
        self.add_card(&token, "tok_visa").await;
        (id, token)
    }

    /// Adds a card from a sandbox token; returns the payment method.
    pub async fn add_card(&self, token: &str, card: &str) -> Value {
        let response = self
            .client
            .post(self.url("/v1/payments/methods"))
            .bearer_auth(token)
            .json(&serde_json::json!({ "token": card }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 201, "add card {card}");
        response.json().await.unwrap()
    }

    /// An admin made the way operators do (`rentify admin create`), signed in.
    pub async fn admin(&self, email: &str) -> (String, String) {
        let (id, _) = self.user(email).await;
        sqlx::query("INSERT INTO user_roles (user_id, role) VALUES ($1::uuid, 'admin')")
            .bind(&id)
            .execute(&self.db)
            .await
            .unwrap();
        let (status, body) = self
            .call_parts(
                reqwest::Method::POST,
                "/v1/auth/login",
                None,
                Some(&serde_json::json!({"email": email, "password": PASSWORD})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        (id, body["access_token"].as_str().unwrap().to_owned())
    }
}

/// The body of a complete item listing (Cameras category), ready to publish.
pub fn listing_body() -> Value {
    serde_json::json!({
        "type": "item",
        "title": "Mirrorless camera kit",
        "description": "A full-frame camera with a 24-70 mm lens, two batteries and a charger.",
        "category_id": "0190c000-0000-7000-8000-000000000101",
        "location": {"lat": 48.8566, "lng": 2.3522},
        "time_zone": "Europe/Paris",
        "pricing": {"hourly": 500, "daily": 2500, "weekly": 12000, "deposit": 30000, "currency": "EUR"},
        "quantity": 1,
        "condition": "like_new",
        "included_items": ["24-70 mm lens", "2 batteries", "charger"],
        "delivery_options": {"pickup": true, "delivery": true, "delivery_fee": 800},
        "policies": {"cancellation": "moderate", "damage": "Repairs at cost", "late_return": "One extra day"},
        "booking_rules": {"buffer_minutes": 0, "min_notice_minutes": 0},
        "instant_book": true
    })
}

impl TestApp {
    /// Creates a complete listing owned by `owner_token`'s user — the
    /// [`listing_body`] with `overrides`' top-level keys replacing its own —
    /// makes the owner identity-verified, publishes it and returns it with
    /// status `active` (a listing that went to review, e.g. a property, is
    /// approved directly in the database).
    pub async fn active_listing(&self, owner_token: &str, overrides: Value) -> Value {
        let mut body = listing_body();
        if let (Some(body), Some(overrides)) = (body.as_object_mut(), overrides.as_object()) {
            for (key, value) in overrides {
                body.insert(key.clone(), value.clone());
            }
        }
        let (status, listing) = self
            .call_parts(
                reqwest::Method::POST,
                "/v1/listings",
                Some(owner_token),
                Some(&body),
            )
            .await;
        assert_eq!(status, 201, "create listing: {listing}");
        let id = listing["id"].as_str().unwrap().to_owned();
        sqlx::query("UPDATE users SET identity_status = 'verified' WHERE id = $1::uuid")
            .bind(listing["owner_id"].as_str().unwrap())
            .execute(&self.db)
            .await
            .unwrap();
        let (status, listing) = self
            .call_parts(
                reqwest::Method::POST,
                &format!("/v1/listings/{id}/publish"),
                Some(owner_token),
                None,
            )
            .await;
        assert_eq!(status, 200, "publish listing: {listing}");
        if listing["status"] == "active" {
            return listing;
        }
        sqlx::query(
            "UPDATE listings SET status = 'active', published_at = now(), version = version + 1
              WHERE id = $1::uuid",
        )
        .bind(&id)
        .execute(&self.db)
        .await
        .unwrap();
        let (status, listing) = self
            .call_parts(
                reqwest::Method::GET,
                &format!("/v1/listings/{id}"),
                Some(owner_token),
                None,
            )
            .await;
        assert_eq!(status, 200, "{listing}");
        listing
    }
}
