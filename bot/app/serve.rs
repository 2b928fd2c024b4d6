//! `fixbot serve`: runs every front-end whose token is set (Telegram,
//! Discord), on one session and store, until SIGINT or SIGTERM; then
//! finishes the updates in flight and exits 0.

mod shards;

use std::future::Future;
use std::hash::{BuildHasher as _, Hasher as _};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use fixbot_core::button::ButtonCodec;
use fixbot_core::engine::EngineConfig;
use fixbot_core::session::Session;
use fixbot_core::store::Store as _;
use fixbot_core::text::parse_duration;
use fixbot_discord::{DiscordConfig, ShardRange};
use fixbot_store::AnyStore;
use fixbot_telegram::TelegramConfig;

use crate::flows;

/// How often idle cases and old outcome records are swept out of the store.
const SWEEP_INTERVAL: Duration = Duration::from_secs(600);
/// Default idle time after which a case is closed.
const DEFAULT_IDLE: &str = "24h";
/// Default age after which outcome records are deleted.
const DEFAULT_RETENTION: &str = "90d";

/// Arguments of `fixbot serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Directory holding the flow files.
    #[arg(long, value_name = "DIR")]
    flows: Option<PathBuf>,
    /// Where cases are kept: `sqlite:PATH` or `memory:`.
    #[arg(long, value_name = "URL", default_value = "sqlite:fixbot.db")]
    store: String,
    /// The HTTP listener, for the Telegram webhook (when TELEGRAM_WEBHOOK_URL is set).
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:8080")]
    listen: String,
    /// The Discord shards this instance runs, like 0-1/4 or 2/4, when several split the bot
    /// (also DISCORD_SHARDS); every instance names the same total.
    #[arg(long, value_name = "FIRST-LAST/TOTAL", value_parser = shards::parse_shards)]
    shards: Option<ShardRange>,
}

/// How the Telegram front-end takes updates.
enum Updates {
    /// Long polling: simplest, one instance per bot.
    Polling,
    /// Telegram POSTs to `url` with `secret`: any number of instances.
    Webhook { url: url::Url, secret: String },
}

/// Runs the server.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let telegram = telegram_config()?;
    let discord = discord_config(args.shards)?;
    if telegram.is_none() && discord.is_none() {
        bail!("nothing to serve: set TELEGRAM_BOT_TOKEN or DISCORD_BOT_TOKEN (see deploy/fixbot.env.example)");
    }
    let flows = flows::load_for_command(args.flows.as_deref())?;
    let store = AnyStore::open(&args.store).await?;
    // One secret per store: every instance sharing it accepts the others'
    // buttons, and buttons keep working across restarts.
    let secret = store.meta_or_insert("button_secret", &random_hex()).await.context("reading the button secret")?;
    let codec = ButtonCodec::new(secret.as_bytes());
    let idle_timeout = env_duration("FIXBOT_IDLE_TIMEOUT", DEFAULT_IDLE)?;
    let retention = env_duration("FIXBOT_RETENTION", DEFAULT_RETENTION)?;
    let config = EngineConfig { idle_timeout, ..EngineConfig::default() };
    let session = Arc::new(Session::new(store, flows, config));

    // One signal stops every front-end.
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut stopping = stopping.clone();
        async move {
            let _ = stopping.wait_for(|stop| *stop).await;
        }
    };
    let signals = {
        let stop = stop.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            let _ = stop.send(true);
        })
    };
    let sweeper = tokio::spawn(sweep(session.clone(), retention));
    let mut frontends = tokio::task::JoinSet::new();
    if let Some((config, updates)) = telegram {
        let (session, codec, stopped) = (session.clone(), codec.clone(), stopped());
        let listen = args.listen.clone();
        frontends.spawn(async move { run_telegram(config, updates, session, codec, &listen, stopped).await });
    }
    if let Some(config) = discord {
        let (session, codec, stopped) = (session.clone(), codec.clone(), stopped());
        frontends.spawn(async move {
            fixbot_discord::run(config, session, codec, stopped).await.context("the Discord front-end stopped")
        });
    }
    let mut outcome = Ok(());
    while let Some(joined) = frontends.join_next().await {
        let result = joined.context("a front-end panicked").and_then(|result| result);
        if let Err(error) = result {
            // One front-end failing for good stops the others: a half-working
            // bot would look healthy while ignoring a platform.
            tracing::error!("{error:#}");
            let _ = stop.send(true);
            outcome = Err(error);
        }
    }
    signals.abort();
    sweeper.abort();
    outcome?;
    tracing::info!("stopped");
    Ok(())
}

async fn run_telegram(
    config: TelegramConfig,
    updates: Updates,
    session: Arc<Session<AnyStore>>,
    codec: ButtonCodec,
    listen: &str,
    stopped: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let frontend = fixbot_telegram::connect(config, session, codec).await.context("connecting to Telegram")?;
    match updates {
        Updates::Polling => {
            frontend.poll(Duration::from_secs(30), stopped).await.context("the Telegram front-end stopped")
        }
        Updates::Webhook { url, secret } => {
            let listener =
                tokio::net::TcpListener::bind(listen).await.with_context(|| format!("listening on {listen}"))?;
            frontend.set_webhook(url, &secret).await.context("registering the Telegram webhook")?;
            tracing::info!(%listen, path = fixbot_telegram::WEBHOOK_PATH, "serving the webhook");
            // Graceful: the listener stops accepting, requests in flight finish.
            axum::serve(listener, frontend.router(secret))
                .with_graceful_shutdown(stopped)
                .await
                .context("serving the webhook")
        }
    }
}

/// The Discord settings from the environment, if a token is set; `--shards`
/// wins over DISCORD_SHARDS.
fn discord_config(shards: Option<ShardRange>) -> anyhow::Result<Option<DiscordConfig>> {
    let Some(token) = env("DISCORD_BOT_TOKEN") else {
        return Ok(None);
    };
    let shards = match (shards, env("DISCORD_SHARDS")) {
        (Some(shards), _) => Some(shards),
        (None, Some(value)) => {
            Some(shards::parse_shards(&value).map_err(|error| anyhow::anyhow!("DISCORD_SHARDS `{value}`: {error}"))?)
        }
        (None, None) => None,
    };
    Ok(Some(DiscordConfig {
        token,
        api_url: env_url("DISCORD_API_URL")?.map(|url| url.to_string()),
        guild_ids: env_ids("DISCORD_GUILD_IDS")?,
        help_channels: env_ids("DISCORD_HELP_CHANNELS")?,
        threads: env("DISCORD_THREADS").is_some_and(|value| matches!(value.as_str(), "1" | "true" | "yes")),
        shards,
    }))
}

/// A comma-separated list of Discord ids.
fn env_ids(name: &str) -> anyhow::Result<Vec<u64>> {
    let Some(value) = env(name) else { return Ok(Vec::new()) };
    value
        .split(',')
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(|id| id.parse().with_context(|| format!("{name}: `{id}` is not a Discord id")))
        .collect()
}

/// The Telegram settings from the environment, if a token is set.
fn telegram_config() -> anyhow::Result<Option<(TelegramConfig, Updates)>> {
    let Some(token) = env("TELEGRAM_BOT_TOKEN") else {
        return Ok(None);
    };
    let api_url = env_url("TELEGRAM_API_URL")?;
    let updates = match env_url("TELEGRAM_WEBHOOK_URL")? {
        None => Updates::Polling,
        Some(url) => {
            let secret = env("TELEGRAM_WEBHOOK_SECRET")
                .context("TELEGRAM_WEBHOOK_SECRET must be set with TELEGRAM_WEBHOOK_URL")?;
            if !fixbot_telegram::valid_secret(&secret) {
                bail!("TELEGRAM_WEBHOOK_SECRET must be 1-256 characters of A-Z, a-z, 0-9, _ and -");
            }
            Updates::Webhook { url, secret }
        }
    };
    let messages_per_second = match env("TELEGRAM_MESSAGES_PER_SECOND") {
        None => fixbot_telegram::DEFAULT_MESSAGES_PER_SECOND,
        Some(value) => value
            .parse()
            .ok()
            .filter(|rate| (1..=1000).contains(rate))
            .with_context(|| format!("TELEGRAM_MESSAGES_PER_SECOND `{value}` is not a number from 1 to 1000"))?,
    };
    Ok(Some((TelegramConfig { api_url, messages_per_second, ..TelegramConfig::new(token) }, updates)))
}

/// A variable's trimmed value; unset and blank are the same.
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().map(|value| value.trim().to_owned()).filter(|value| !value.is_empty())
}

fn env_url(name: &str) -> anyhow::Result<Option<url::Url>> {
    env(name).map(|value| url::Url::parse(&value).with_context(|| format!("{name} `{value}` is not a URL"))).transpose()
}

/// Closes idle cases and deletes outcome records past the retention age.
async fn sweep(session: Arc<Session<AnyStore>>, retention: i64) {
    let mut interval = tokio::time::interval(SWEEP_INTERVAL);
    loop {
        interval.tick().await;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs() as i64);
        match session.expire(now).await {
            Ok(0) => {}
            Ok(count) => tracing::info!(count, "expired idle cases"),
            Err(error) => tracing::warn!(%error, "expiring idle cases failed"),
        }
        match session.purge(now, retention).await {
            Ok(0) => {}
            Ok(count) => tracing::info!(count, "purged outcome records past retention"),
            Err(error) => tracing::warn!(%error, "purging outcome records failed"),
        }
    }
}

/// A duration from the environment like `90s`, `30m`, `24h` or `90d`, in seconds.
fn env_duration(name: &str, default: &str) -> anyhow::Result<i64> {
    let value = env(name).unwrap_or_else(|| default.to_owned());
    parse_duration(&value).with_context(|| format!("{name} `{value}` is not a duration like 30m, 24h or 90d"))
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
