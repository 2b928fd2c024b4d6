//! `fixbot serve`: runs every front-end whose token is set, on one session
//! and store, until SIGINT or SIGTERM; then finishes the updates in flight
//! and exits 0.

use std::hash::{BuildHasher as _, Hasher as _};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use fixbot_core::button::ButtonCodec;
use fixbot_core::engine::EngineConfig;
use fixbot_core::session::Session;
use fixbot_core::store::Store as _;
use fixbot_store::AnyStore;
use fixbot_telegram::TelegramConfig;

use crate::flows;

/// How often idle cases are swept out of the store.
const EXPIRY_INTERVAL: Duration = Duration::from_secs(600);

/// Arguments of `fixbot serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Directory holding the flow files.
    #[arg(long, value_name = "DIR")]
    flows: Option<PathBuf>,
    /// Where cases are kept: `sqlite:PATH` or `memory:`.
    #[arg(long, value_name = "URL", default_value = "sqlite:fixbot.db")]
    store: String,
}

/// Runs the server.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let telegram = telegram_config()?;
    let Some(telegram) = telegram else {
        bail!("nothing to serve: set TELEGRAM_BOT_TOKEN (see deploy/fixbot.env.example)");
    };
    let flows = flows::load_for_command(args.flows.as_deref())?;
    let store = AnyStore::open(&args.store).await?;
    // One secret per store: every instance sharing it accepts the others'
    // buttons, and buttons keep working across restarts.
    let secret = store.meta_or_insert("button_secret", &random_hex()).await.context("reading the button secret")?;
    let codec = ButtonCodec::new(secret.as_bytes());
    let session = Arc::new(Session::new(store, flows, EngineConfig::default()));

    let sweeper = tokio::spawn(expire_idle_cases(session.clone()));
    let result = fixbot_telegram::run(telegram, session, codec, shutdown_signal()).await;
    sweeper.abort();
    result.context("the Telegram front-end stopped")?;
    tracing::info!("stopped");
    Ok(())
}

/// The Telegram settings from the environment, if a token is set.
fn telegram_config() -> anyhow::Result<Option<TelegramConfig>> {
    let Some(token) = std::env::var("TELEGRAM_BOT_TOKEN").ok().filter(|token| !token.trim().is_empty()) else {
        return Ok(None);
    };
    let api_url = match std::env::var("TELEGRAM_API_URL") {
        Ok(url) if !url.trim().is_empty() => {
            Some(url::Url::parse(url.trim()).with_context(|| format!("TELEGRAM_API_URL `{url}` is not a URL"))?)
        }
        _ => None,
    };
    Ok(Some(TelegramConfig { token: token.trim().to_owned(), api_url, poll_timeout: Duration::from_secs(30) }))
}

async fn expire_idle_cases(session: Arc<Session<AnyStore>>) {
    let mut interval = tokio::time::interval(EXPIRY_INTERVAL);
    loop {
        interval.tick().await;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs() as i64);
        match session.expire(now).await {
            Ok(0) => {}
            Ok(count) => tracing::info!(count, "expired idle cases"),
            Err(error) => tracing::warn!(%error, "expiring idle cases failed"),
        }
    }
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only SIGINT stops the server");
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
    tracing::info!("shutting down: finishing the updates in flight");
}

/// 256 bits in hex for the button secret. std's `RandomState` is seeded from
/// the operating system's random source, which is all an HMAC key needs, and
/// saves a dependency.
fn random_hex() -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_nanos());
    (0..4u64)
        .map(|index| {
            let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
            hasher.write_u64(index);
            hasher.write_u128(nanos);
            format!("{:016x}", hasher.finish())
        })
        .collect()
}
