use clap::Parser;

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
