//! A real OpenID Connect provider for the tests: `scripts/oidc-provider/server.mjs`
//! (the npm package `oidc-provider`) run by `node` as a child process, plus a
//! tiny headless "browser" that signs a test user in through it.
//!
//! The provider's packages are installed by `scripts/oidc-provider/install.sh`
//! (`scripts/test.sh` runs it and exports `OIDC_PROVIDER_DIR`); when they are
//! missing, [`OidcProvider::start`] runs the install script itself.

use std::{path::PathBuf, process::Stdio, time::Duration};

use reqwest::{StatusCode, Url, header};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, ChildStdin, Command},
};

/// The client the provider knows (see server.mjs).
pub const CLIENT_ID: &str = "rentify";
pub const CLIENT_SECRET: &str = "rentify-secret";

/// A running provider; the `node` process is killed when this is dropped.
pub struct OidcProvider {
    /// `http://127.0.0.1:<port>`, also the base of every provider URL.
    pub issuer: String,
    _child: Child,
    // Held open: server.mjs (EXIT_WITH_STDIN=1) stops when it closes, so the
    // provider goes away even if this process dies without running Drop.
    _stdin: ChildStdin,
}

/// What the "user" does on the provider's sign-in page.
enum Choice<'a> {
    SignIn(&'a str),
    Cancel,
}

fn provider_dir() -> PathBuf {
    std::env::var_os("OIDC_PROVIDER_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/oidc-provider")
        })
}

impl OidcProvider {
    /// Starts the provider with client `rentify` allowed to redirect to
    /// `redirect_uris`, and waits until it listens.
    pub async fn start(redirect_uris: &[&str]) -> Self {
        Self::start_with(redirect_uris, &[]).await
    }

    /// As [`start`](Self::start), with extra environment for server.mjs
    /// (e.g. `ID_TOKEN_CLAIMS=1`).
    pub async fn start_with(redirect_uris: &[&str], env: &[(&str, &str)]) -> Self {
        let dir = provider_dir();
        if !dir.join("node_modules/oidc-provider").exists() {
            let status = std::process::Command::new(dir.join("install.sh"))
                .stdout(Stdio::null())
                .status()
                .expect("run scripts/oidc-provider/install.sh (needs node and npm)");
            assert!(status.success(), "scripts/oidc-provider/install.sh failed");
        }
        // Node has been seen (once in many CI runs) to start but never print
        // READY; the harness retries such a start rather than let one stuck
        // process fail a test that never ran.
        let mut attempt = 0;
        let (issuer, child, stdin) = loop {
            attempt += 1;
            let mut command = Command::new("node");
            command
                .arg("server.mjs")
                .current_dir(&dir)
                .env("PORT", "0")
                .env("REDIRECT_URIS", redirect_uris.join(","))
                .env("EXIT_WITH_STDIN", "1")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true);
            for (k, v) in env {
                command.env(k, v);
            }
            let mut child = command
                .spawn()
                .expect("start `node scripts/oidc-provider/server.mjs` (is Node.js installed?)");
            let stdin = child.stdin.take().expect("piped stdin");
            let stdout = child.stdout.take().expect("piped stdout");
            let mut lines = BufReader::new(stdout).lines();
            let ready = tokio::time::timeout(Duration::from_secs(20), async {
                while let Some(line) = lines.next_line().await.expect("read provider stdout") {
                    if let Some(issuer) = line.strip_prefix("READY ") {
                        return issuer.trim().to_string();
                    }
                }
                panic!("the OIDC provider exited before it was ready (its stderr is above)");
            })
            .await;
            match ready {
                Ok(issuer) => {
                    // Nothing else is printed on stdout; keep draining it all the same.
                    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
                    break (issuer, child, stdin);
                }
                Err(_) if attempt < 3 => {
                    eprintln!(
                        "the OIDC provider did not print READY within 20 s; starting another"
                    );
                    let _ = child.kill().await;
                }
                Err(_) => panic!("the OIDC provider did not print READY within 20 s, three times"),
            }
        };
        Self {
            issuer,
            _child: child,
            _stdin: stdin,
        }
    }

    /// Plays the browser: opens `authorize_url` (the provider's authorization
    /// endpoint, as Rentify redirected to it), signs in as `user` (alice, bob or
    /// carol), consents, and returns the URL the provider finally redirects to —
    /// the client's redirect URI with `code`, `state` and `iss` — without opening it.
    pub async fn authorize_in_browser(&self, authorize_url: &str, user: &str) -> String {
        self.browse(authorize_url, Choice::SignIn(user)).await
    }

    /// As [`authorize_in_browser`](Self::authorize_in_browser), but the user
    /// cancels on the sign-in page: the result carries `error=access_denied`.
    pub async fn deny_in_browser(&self, authorize_url: &str) -> String {
        self.browse(authorize_url, Choice::Cancel).await
    }

    async fn browse(&self, authorize_url: &str, choice: Choice<'_>) -> String {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let mut jar = CookieJar::default();
        let mut url = Url::parse(authorize_url).expect("an absolute authorize URL");
        let mut form: Option<(String, Vec<(&str, &str)>)> = None;
        let provider = Url::parse(&self.issuer).unwrap().origin();
        for _ in 0..20 {
            if url.origin() != provider {
                // Left the provider: this is the redirect to the client.
                return url.to_string();
            }
            let request = match form.take() {
                Some((action, fields)) => {
                    url = url.join(&action).unwrap();
                    client.post(url.clone()).form(&fields)
                }
                None => client.get(url.clone()),
            };
            let cookies = jar.header_for(url.path());
            let request = if cookies.is_empty() {
                request
            } else {
                request.header(header::COOKIE, cookies)
            };
            let response = request.send().await.expect("the provider answers");
            for set_cookie in response.headers().get_all(header::SET_COOKIE) {
                jar.store(set_cookie.to_str().unwrap_or_default());
            }
            let status = response.status();
            if status.is_redirection() {
                let location = response
                    .headers()
                    .get(header::LOCATION)
                    .expect("a redirect has a Location")
                    .to_str()
                    .unwrap();
                url = url.join(location).expect("a valid Location");
                continue;
            }
            let body = response.text().await.unwrap_or_default();
            if status == StatusCode::OK && url.path().starts_with("/interaction/") {
                // The sign-in page (server.mjs): a form with a `login` field.
                let interaction = url.path().to_string();
                form = Some(match choice {
                    Choice::SignIn(user) => (format!("{interaction}/login"), vec![("login", user)]),
                    Choice::Cancel => (format!("{interaction}/abort"), vec![]),
                });
                continue;
            }
            panic!("unexpected answer from the provider at {url}: {status}\n{body}");
        }
        panic!("the provider did not redirect back to the client within 20 steps");
    }
}

/// Just enough of a cookie store for oidc-provider: cookies by name and path,
/// sent to requests under their path, removed when cleared.
#[derive(Default)]
struct CookieJar {
    cookies: Vec<(String, String, String)>, // (name, path, value)
}

impl CookieJar {
    fn store(&mut self, set_cookie: &str) {
        let mut parts = set_cookie.split(';').map(str::trim);
        let Some((name, value)) = parts.next().and_then(|nv| nv.split_once('=')) else {
            return;
        };
        let mut path = "/".to_string();
        let mut expired = value.is_empty();
        for attribute in parts {
            let (key, val) = attribute.split_once('=').unwrap_or((attribute, ""));
            match key.to_ascii_lowercase().as_str() {
                "path" => path = val.to_string(),
                "max-age" => expired |= val.parse::<i64>().is_ok_and(|age| age <= 0),
                "expires" => expired |= val.contains("1970"),
                _ => {}
            }
        }
        self.cookies.retain(|(n, p, _)| !(n == name && *p == path));
        if !expired {
            self.cookies
                .push((name.to_string(), path, value.to_string()));
        }
    }

    fn header_for(&self, request_path: &str) -> String {
        self.cookies
            .iter()
            .filter(|(_, path, _)| {
                request_path == path
                    || request_path.starts_with(&format!("{}/", path.trim_end_matches('/')))
            })
            .map(|(name, _, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}
