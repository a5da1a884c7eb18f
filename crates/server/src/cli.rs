//! Subcommands of the `rentify` binary.

use clap::{Parser, Subcommand};
use rentify_platform::{config::Config, db, telemetry};

use crate::{app::Application, openapi, seed, worker};

#[derive(Debug, Parser)]
#[command(name = "rentify", version, about = "Rentify marketplace backend")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API (stateless; run as many as needed).
    Serve,
    /// Run job workers and schedulers (and, later, event consumers).
    Worker,
    /// Migrate, then serve the API and run the workers in one process.
    All,
    /// Apply database migrations and exit.
    Migrate,
    /// Load data.
    Seed {
        /// A small, realistic demo marketplace (idempotent).
        #[arg(long)]
        demo: bool,
    },
    /// Print the OpenAPI 3.1 document as JSON.
    Openapi,
    /// Operator commands for administrators.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Operator commands for access-token signing keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Operator commands for the money ledger.
    Ledger {
        #[command(subcommand)]
        command: LedgerCommand,
    },
    /// Operator commands for the search index.
    Search {
        #[command(subcommand)]
        command: SearchCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum SearchCommand {
    /// Ask every API process to rebuild its search replica from PostgreSQL
    /// (each serves its current one until the new one is swapped in).
    Reindex,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create an admin account, or make an existing account admin.
    Create {
        #[arg(long)]
        email: String,
        /// Prefer `RENTIFY_ADMIN_PASSWORD` in scripts: arguments show in `ps`.
        #[arg(long, env = "RENTIFY_ADMIN_PASSWORD", hide_env_values = true)]
        password: String,
        #[arg(long)]
        display_name: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum LedgerCommand {
    /// Reconcile one UTC day (ledger balance, running balances, booking
    /// settlements, gateway records), store the report and print it as
    /// JSON; exit code 1 when it is not clean.
    Reconcile {
        /// The day, `YYYY-MM-DD`.
        #[arg(long)]
        date: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Start signing with a new key; tokens of the old one stay valid until they expire.
    Rotate,
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Openapi = cli.command {
        println!("{}", openapi::document().to_pretty_json()?);
        return Ok(());
    }
    let config = Config::from_env()?;
    telemetry::init(config.log_format);
    match cli.command {
        Command::Serve => {
            let app = Application::build(config).await?;
            let pool = app.state().db.clone();
            let result = app.run_until(shutdown_signal()).await;
            pool.close().await;
            result
        }
        Command::Worker => {
            let pool = db::connect(&config).await?;
            let result = worker::run_until(
                config,
                pool.clone(),
                worker::OpsPort::Serve,
                shutdown_signal(),
            )
            .await;
            pool.close().await;
            result
        }
        Command::All => {
            // One pool for the whole process: migrations, API and worker.
            let pool = db::connect(&config).await?;
            db::migrate(&pool).await?;
            let app = Application::build_with_pool(config.clone(), pool.clone()).await?;
            // One stop signal for both halves: SIGTERM, or the API failing.
            let (stop, stopped) = tokio::sync::watch::channel(false);
            let worker = tokio::spawn(worker::run_until(
                config,
                pool.clone(),
                worker::OpsPort::Shared,
                {
                    let mut stopped = stopped.clone();
                    async move {
                        let _ = stopped.wait_for(|s| *s).await;
                    }
                },
            ));
            let api = app.run_until({
                let stop = stop.clone();
                async move {
                    shutdown_signal().await;
                    let _ = stop.send(true);
                }
            });
            let result = api.await;
            let _ = stop.send(true);
            let worker_result = worker.await;
            // Both halves have drained; only now is the shared pool closed.
            pool.close().await;
            worker_result??;
            result
        }
        Command::Migrate => {
            let pool = db::connect(&config).await?;
            db::migrate(&pool).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Seed { demo } => {
            anyhow::ensure!(demo, "nothing to seed: pass --demo");
            let pool = db::connect(&config).await?;
            let result = seed::demo(config, &pool).await;
            pool.close().await;
            result
        }
        Command::Admin {
            command:
                AdminCommand::Create {
                    email,
                    password,
                    display_name,
                },
        } => {
            let (identity, pool) = identity_for_operator(config).await?;
            let result = rentify_identity::admin::create_admin(
                &identity,
                &email,
                &password,
                display_name.as_deref(),
            )
            .await;
            pool.close().await;
            let email = rentify_identity::sessions::normalize_email(&email);
            match result {
                Ok((id, true)) => println!("created admin {email} ({id})"),
                Ok((id, false)) => println!("{email} ({id}) is now an admin"),
                Err(error) => {
                    let error = rentify_platform::ApiError::from(error);
                    anyhow::bail!("{}: {}", error.code(), error.message());
                }
            }
            Ok(())
        }
        Command::Keys {
            command: KeysCommand::Rotate,
        } => {
            let (identity, pool) = identity_for_operator(config).await?;
            let kid = identity.keys().rotate().await;
            pool.close().await;
            println!("now signing with {}", kid?);
            Ok(())
        }
        Command::Ledger {
            command: LedgerCommand::Reconcile { date },
        } => {
            let day = rentify_payments::reconcile::parse_day(&date)?;
            let pool = db::connect(&config).await?;
            let state = rentify_platform::PlatformState::build(config, pool.clone()).await?;
            let payments = rentify_payments::Payments::init(&state).await?;
            let result = rentify_payments::reconcile::run(&payments, day).await;
            pool.close().await;
            let report = result?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            anyhow::ensure!(
                report.clean,
                "the books do not reconcile for {date}: {} discrepancies",
                report.discrepancies()
            );
            Ok(())
        }
        Command::Search {
            command: SearchCommand::Reindex,
        } => {
            let pool = db::connect(&config).await?;
            let result = rentify_search::request_reindex(&pool, "cli").await;
            let (listings,): (i64,) =
                sqlx::query_as("SELECT count(*) FROM listings WHERE status = 'active'")
                    .fetch_one(&pool)
                    .await?;
            pool.close().await;
            let event = result?;
            println!(
                "reindex requested (event {event}): each API process rebuilds its replica of {listings} active listings in the background and swaps it in"
            );
            Ok(())
        }
        Command::Openapi => unreachable!("handled before configuration is read"),
    }
}

/// The identity module on its own pool, for operator commands.
async fn identity_for_operator(
    config: Config,
) -> anyhow::Result<(rentify_identity::Identity, sqlx::PgPool)> {
    let pool = db::connect(&config).await?;
    let state = rentify_platform::PlatformState::build(config, pool.clone()).await?;
    let identity = rentify_identity::Identity::init(&state).await?;
    Ok((identity, pool))
}

/// Resolves on SIGTERM (orchestrators) or Ctrl-C (people).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown signal received");
}
