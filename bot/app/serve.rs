//! `fixbot serve`: one process runs every front-end whose token is set
//! (Telegram, Discord) or that is enabled (the web chat) on one session and
//! store, with one HTTP listener for health, readiness, metrics, the
//! Telegram webhook and the web chat. With staff desks configured, the
//! front-ends and the webhook desk share one `Handovers`, so a case can be
//! answered on another platform than the user's. SIGHUP and edits to
//! the flow files reload the flows. SIGINT or SIGTERM stops taking updates,
//! finishes the ones in flight within the shutdown timeout, closes the store
//! and exits 0.

use std::future::Future;
use std::hash::{BuildHasher as _, Hasher as _};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use fixbot_core::button::ButtonCodec;
use fixbot_core::desk::Handovers;
use fixbot_core::engine::EngineConfig;
use fixbot_core::health::Health;
use fixbot_core::metrics::metrics;
use fixbot_core::session::Session;
use fixbot_core::store::Store as _;
use fixbot_store::AnyStore;
use fixbot_telegram::TelegramConfig;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::{Settings, Updates};
use crate::flows;
use crate::helpdesk::{self, WebhookDesk};
use crate::http::Http;
use crate::reload;

/// How often idle cases and old outcome records are swept out of the store.
const SWEEP_INTERVAL: Duration = Duration::from_secs(600);
/// The longest wait between attempts to reach Telegram at start.
const MAX_CONNECT_BACKOFF: Duration = Duration::from_secs(60);

/// Completes once a stop was asked for.
fn stopped(stopping: &watch::Receiver<bool>) -> impl Future<Output = ()> + Send + 'static {
    let mut stopping = stopping.clone();
    async move {
        let _ = stopping.wait_for(|stop| *stop).await;
    }
}

/// Runs the server with `settings` until a signal stops it or a front-end
/// fails for good.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    if settings.telegram.is_none() && settings.discord.is_none() && settings.web.is_none() {
        bail!(
            "nothing to serve: set TELEGRAM_BOT_TOKEN or DISCORD_BOT_TOKEN, or FIXBOT_WEB_ENABLED=true \
             (see deploy/fixbot.env.example)"
        );
    }
    let origin = flows::locate(settings.flows.as_deref());
    let flows = flows::load_for_command(settings.flows.as_deref())?;
    let store = AnyStore::open(&settings.store).await?;
    // One secret per store: every instance sharing it accepts the others'
    // buttons, and buttons keep working across restarts.
    let secret = store.meta_or_insert("button_secret", &random_hex()).await.context("reading the button secret")?;
    let codec = ButtonCodec::new(secret.as_bytes());
    let web_secret = match settings.web {
        Some(_) => Some(store.meta_or_insert("web_secret", &random_hex()).await.context("reading the web secret")?),
        None => None,
    };
    let config = EngineConfig {
        idle_timeout: settings.idle_timeout,
        match_limit: settings.max_message_bytes,
        staff: settings.staff.any(),
    };
    let mut session = Session::new(store, flows, config);
    if let Some(limit) = settings.rate_limit {
        session = session.with_rate_limit(limit);
    }
    let session = Arc::new(session);
    let health = Health::new();

    // The listener comes first, so probes answer while front-ends connect.
    let listener = tokio::net::TcpListener::bind(&settings.listen)
        .await
        .with_context(|| format!("listening on {}", settings.listen))?;
    let address = listener.local_addr().context("reading the listener's address")?;
    tracing::info!(%address, "serving /healthz, /readyz and /metrics");
    let http = Http::new(health.clone(), session.clone());
    let handovers = settings.staff.any().then(|| Arc::new(Handovers::new(session.clone())));
    if let (Some(handovers), Some((url, secret))) = (&handovers, &settings.staff.webhook) {
        let desk = WebhookDesk::start(url.clone(), secret.clone()).context("starting the webhook desk")?;
        handovers.add_desk(Arc::new(desk));
        http.mount(helpdesk::router(handovers.clone(), secret.clone()));
        tracing::info!("the webhook desk takes hand-overs; staff answer on /handover/{{case}}/reply");
    }

    let (stop, stopping) = watch::channel(false);
    let signals = {
        let stop = stop.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            let _ = stop.send(true);
        })
    };
    if let (Some(config), Some(secret)) = (settings.web, web_secret) {
        let router = fixbot_web::router(
            session.clone(),
            codec.clone(),
            secret.as_bytes(),
            config,
            stopping.clone(),
            handovers.clone(),
        );
        http.mount(router);
        tracing::info!(%address, "serving the web chat at /");
    }
    let sweeper = tokio::spawn(sweep(session.clone(), settings.retention));
    let reloader = tokio::spawn(reload::run(origin, session.clone(), health.clone(), settings.watch_flows));

    let mut tasks: JoinSet<anyhow::Result<()>> = JoinSet::new();
    {
        let (router, stopped) = (http.router(), stopped(&stopping));
        tasks.spawn(async move {
            // Graceful: the listener stops accepting, requests in flight
            // (webhook updates among them) finish.
            axum::serve(listener, router).with_graceful_shutdown(stopped).await.context("serving HTTP")
        });
    }
    if let Some((config, updates)) = settings.telegram {
        let config = TelegramConfig { health: health.clone(), ..config };
        let (session, codec, http, stopping) = (session.clone(), codec.clone(), http.clone(), stopping.clone());
        let handovers = handovers.clone();
        tasks.spawn(async move { run_telegram(config, updates, session, codec, handovers, http, stopping).await });
    }
    if let Some(config) = settings.discord {
        let config = fixbot_discord::DiscordConfig { health: health.clone(), ..config };
        let (session, codec, stopped) = (session.clone(), codec.clone(), stopped(&stopping));
        let handovers = handovers.clone();
        tasks.spawn(async move {
            fixbot_discord::run_with(config, session, codec, handovers, stopped)
                .await
                .context("the Discord front-end stopped")
        });
    }

    // Wait for every task; the first failure stops the others, since a
    // half-working bot would look healthy while ignoring a platform.
    let all_ended = async {
        let mut failure = None;
        while let Some(joined) = tasks.join_next().await {
            if let Err(error) = joined.context("a task panicked").and_then(|result| result) {
                tracing::error!("{error:#}");
                let _ = stop.send(true);
                failure.get_or_insert(error);
            }
        }
        failure
    };
    tokio::pin!(all_ended);
    let failure = tokio::select! {
        failure = &mut all_ended => failure,
        () = stopped(&stopping) => {
            tracing::info!(timeout = ?settings.shutdown_timeout, "stopping: finishing the updates in flight");
            match tokio::time::timeout(settings.shutdown_timeout, &mut all_ended).await {
                Ok(failure) => failure,
                Err(_) => Some(anyhow::anyhow!(
                    "updates were still in flight after the shutdown timeout of {:?}; stopped without them",
                    settings.shutdown_timeout
                )),
            }
        }
    };
    signals.abort();
    sweeper.abort();
    reloader.abort();
    session.store().close().await;
    match failure {
        Some(error) => Err(error),
        None => {
            tracing::info!("stopped");
            Ok(())
        }
    }
}

/// Connects to Telegram (retrying while it cannot be reached), then takes
/// updates by polling, or mounts the webhook, until the stop.
async fn run_telegram(
    config: TelegramConfig,
    updates: Updates,
    session: Arc<Session<AnyStore>>,
    codec: ButtonCodec,
    handovers: Option<Arc<Handovers<AnyStore>>>,
    http: Http,
    stopping: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let health = config.health.clone();
    let mut backoff = Duration::from_secs(1);
    let frontend = loop {
        health.set(fixbot_telegram::PART, false, "connecting");
        match fixbot_telegram::connect_with(config.clone(), session.clone(), codec.clone(), handovers.clone()).await {
            Ok(frontend) => break frontend,
            Err(error) if error.is_transient() => {
                tracing::warn!(%error, ?backoff, "cannot reach Telegram; trying again");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = stopped(&stopping) => return Ok(()),
                }
                backoff = (backoff * 2).min(MAX_CONNECT_BACKOFF);
            }
            Err(error) => return Err(error).context("connecting to Telegram"),
        }
    };
    match updates {
        Updates::Polling => {
            frontend.poll(Duration::from_secs(30), stopped(&stopping)).await.context("the Telegram front-end stopped")
        }
        Updates::Webhook { url, secret } => {
            http.mount(frontend.router(secret.clone()));
            frontend.set_webhook(url, &secret).await.context("registering the Telegram webhook")?;
            tracing::info!(path = fixbot_telegram::WEBHOOK_PATH, "serving the Telegram webhook");
            // Updates now arrive on the HTTP listener, which finishes those
            // in flight when it stops.
            stopped(&stopping).await;
            Ok(())
        }
    }
}

/// Every few minutes, records cases idle past the timeout as abandoned, then
/// deletes cases, outcome records and receipts past their retention.
async fn sweep(session: Arc<Session<AnyStore>>, retention: i64) {
    let mut interval = tokio::time::interval(SWEEP_INTERVAL);
    loop {
        interval.tick().await;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs() as i64);
        match session.close_idle(now).await {
            Ok(0) => {}
            Ok(closed) => tracing::info!(cases = closed, "closed idle cases as abandoned"),
            Err(error) => {
                metrics().store_errors.inc();
                tracing::warn!(%error, "closing idle cases failed");
            }
        }
        match session.purge(now, retention).await {
            Ok(purged) if purged == Default::default() => {}
            Ok(purged) => tracing::info!(
                cases = purged.cases,
                outcomes = purged.outcomes,
                receipts = purged.receipts,
                "purged what is past retention"
            ),
            Err(error) => {
                metrics().store_errors.inc();
                tracing::warn!(%error, "purging what is past retention failed");
            }
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
