use clap::Parser;

/// mimalloc instead of glibc's allocator: a request allocates many small
/// short-lived buffers, and glibc's malloc and free were ~15 % of a booking
/// attempt's CPU in the race benchmark (docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = rentify::cli::Cli::parse();
    match rentify::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // Start-up errors (bad configuration, database down) go to stderr
            // plainly: there may be no log pipeline yet.
            eprintln!("rentify: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
