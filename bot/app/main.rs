//! The `fixbot` binary: command-line parsing and wiring. Each subcommand lives
//! in its own module; this file only dispatches.

mod check;
mod console;
mod diagnose;
mod flows;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// fixbot: a troubleshooting chat-bot for failed phone backups.
#[derive(Debug, Parser)]
#[command(name = "fixbot", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Chat with the bot in this terminal (or over piped stdin).
    Chat(console::ChatArgs),
    /// Print what the bot makes of a message, without starting a case.
    Diagnose(diagnose::DiagnoseArgs),
    /// Run the front-ends whose tokens are set (TELEGRAM_BOT_TOKEN).
    Serve(serve::ServeArgs),
    /// Create or update the store's tables, then exit (serve and chat also do it at start).
    Migrate {
        /// The store: `sqlite:PATH` or `postgres://…`.
        #[arg(long, value_name = "URL", default_value = "sqlite:fixbot.db")]
        store: String,
    },
    /// Delete everything stored about one person (as their /forget would).
    Forget {
        /// The store: `sqlite:PATH` or `postgres://…`.
        #[arg(long, value_name = "URL", default_value = "sqlite:fixbot.db")]
        store: String,
        /// The platform: telegram, discord, console or web.
        #[arg(long)]
        platform: String,
        /// The person's user id on that platform.
        #[arg(long)]
        user: String,
    },
    /// Check the flow files; exit 0 when clean, 1 with every problem listed.
    Check {
        /// Directory holding the flow files.
        #[arg(long, value_name = "DIR")]
        flows: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The console keeps quiet unless asked; a server reports what it does.
    init_logging(if matches!(cli.command, Command::Serve(_)) { "info" } else { "warn" });
    let result = match cli.command {
        Command::Check { flows } => return check::run(flows.as_deref()),
        Command::Diagnose(args) => diagnose::run(args),
        Command::Chat(args) => runtime().and_then(|runtime| runtime.block_on(console::run(args))),
        Command::Serve(args) => runtime().and_then(|runtime| runtime.block_on(serve::run(args))),
        Command::Forget { store, platform, user } => runtime().and_then(|runtime| {
            runtime.block_on(async {
                use fixbot_core::store::Store as _;
                let store = fixbot_store::AnyStore::open(&store).await?;
                let subject = fixbot_core::case::ConversationKey::new(&platform, "", "", &user).subject();
                let rows = store.forget(&platform, &user, subject).await?;
                println!("deleted {rows} stored record(s) of {platform} user {user}");
                Ok(())
            })
        }),
        Command::Migrate { store } => runtime().and_then(|runtime| {
            runtime.block_on(async {
                fixbot_store::AnyStore::open(&store).await?;
                println!("the store is up to date");
                Ok(())
            })
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("fixbot: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

/// Logs go to stderr at `default` level; `RUST_LOG` overrides it.
fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}
