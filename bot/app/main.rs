//! The `fixbot` binary: command-line parsing and wiring. Each subcommand lives
//! in its own module; this file only dispatches.

mod check;
mod config;
mod console;
mod diagnose;
mod flows;
mod graph;
mod helpdesk;
mod http;
mod logging;
mod reload;
mod serve;
mod stats;
mod test;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// jemalloc, with the settings in `.cargo/config.toml`: it gives freed pages
/// back to the system, so an idle server holds what it uses rather than its
/// peak (the load's, or a burst's), which glibc's malloc keeps.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
    /// Run the front-ends whose tokens are set (TELEGRAM_BOT_TOKEN, DISCORD_BOT_TOKEN),
    /// with health, readiness and metrics on one HTTP listener.
    Serve(config::Flags),
    /// Create or update the store's tables, then exit (serve and chat also do it at start).
    Migrate {
        /// The store: `sqlite:PATH` or `postgres://…` [default: FIXBOT_STORE, else sqlite:fixbot.db].
        #[arg(long, value_name = "URL")]
        store: Option<String>,
    },
    /// Delete everything stored about one person (as their /forget would).
    Forget {
        /// The store: `sqlite:PATH` or `postgres://…` [default: FIXBOT_STORE, else sqlite:fixbot.db].
        #[arg(long, value_name = "URL")]
        store: Option<String>,
        /// The platform: telegram, discord, console or web.
        #[arg(long)]
        platform: String,
        /// The person's user id on that platform.
        #[arg(long)]
        user: String,
    },
    /// Sum up the outcome log per symptom and step: cases, resolved, escalated and
    /// abandoned, where cases are fixed and where people give up.
    Stats(stats::StatsArgs),
    /// Check the flow files; exit 0 when clean, 1 with every problem listed.
    Check {
        /// Directory holding the flow files.
        #[arg(long, value_name = "DIR")]
        flows: Option<PathBuf>,
        /// After reviewing stale translations, record today's English hashes
        /// in them, so they no longer count as stale.
        #[arg(long)]
        bless_translations: bool,
    },
    /// Play transcripts through the bot; exit 0 when it still answers as each
    /// one says, 1 with a diff of every difference.
    Test(test::TestArgs),
    /// Draw one flow's steps, choices and ends as a Mermaid (default) or Graphviz diagram.
    Graph(graph::GraphArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let env = |name: &str| std::env::var(name).ok();
    // A server sets up its logging once its settings (and secrets) are
    // known; the other commands keep quiet unless asked.
    if !matches!(cli.command, Command::Serve(_)) {
        logging::init(config::LogFormat::Human, "warn", &[]);
    }
    let result = match cli.command {
        Command::Check { flows, bless_translations } => return check::run(flows.as_deref(), bless_translations),
        Command::Diagnose(args) => diagnose::run(args),
        Command::Graph(args) => graph::run(args),
        Command::Test(args) => match test::run(args) {
            Ok(true) => return ExitCode::SUCCESS,
            Ok(false) => return ExitCode::FAILURE,
            Err(error) => Err(error),
        },
        Command::Chat(args) => runtime().and_then(|runtime| runtime.block_on(console::run(args))),
        Command::Serve(flags) => config::Settings::resolve(flags, &env).and_then(|settings| {
            logging::init(settings.log_format, "info", &settings.secrets);
            runtime()?.block_on(serve::run(settings))
        }),
        Command::Forget { store, platform, user } => config::store_url(store, &env).and_then(|store| {
            runtime()?.block_on(async {
                use fixbot_core::store::Store as _;
                let store = fixbot_store::AnyStore::open(&store).await?;
                let subject = fixbot_core::case::ConversationKey::new(&platform, "", "", &user).subject();
                let rows = store.forget(&platform, &user, subject).await?;
                println!("deleted {rows} stored record(s) of {platform} user {user}");
                Ok(())
            })
        }),
        Command::Stats(args) => runtime().and_then(|runtime| runtime.block_on(stats::run(args, &env))),
        Command::Migrate { store } => config::store_url(store, &env).and_then(|store| {
            runtime()?.block_on(async {
                fixbot_store::AnyStore::open(&store).await?;
                println!("the store is up to date");
                Ok(())
            })
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("fixbot: {}", logging::scrub(&format!("{error:#}")));
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}
