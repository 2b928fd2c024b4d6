//! Whole-process figures of `fixbot serve` against the test suite's fakes:
//! resident memory while idle with both front-ends connected, and the latency
//! fixbot adds between a Telegram update arriving and its answer leaving,
//! at 1,000 updates a second.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::fake_discord::FakeDiscord;
use crate::fake_telegram::{Chat, FakeTelegram, User};
use crate::{Figure, root};

/// An SQLite store in `dir`, as `--store` takes it.
fn sqlite_in(dir: &std::path::Path) -> String {
    format!("sqlite:{}", dir.join("serve.db").display())
}

/// Starts the release `fixbot serve` with `env` on `store`.
fn serve(store: &str, listen: &str, env: &[(&str, &str)]) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_fixbot"));
    command
        .args(["serve", "--flows"])
        .arg(root().join("flows"))
        .args(["--listen", listen, "--store", store])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (name, _) in std::env::vars() {
        if ["TELEGRAM_", "DISCORD_", "FIXBOT_"].iter().any(|prefix| name.starts_with(prefix)) {
            command.env_remove(name);
        }
    }
    command.envs(env.iter().copied()).spawn().expect("fixbot runs")
}

/// The resident set of process `pid`, in bytes.
fn resident(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kib| kib * 1024)
}

fn free_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

pub fn idle_memory(figures: &mut Vec<Figure>) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rss = runtime.block_on(async {
        let (telegram, discord) = (FakeTelegram::start().await, FakeDiscord::start().await);
        let (telegram_url, discord_url) = (telegram.api_url(), discord.api_url());
        let mut child = serve(
            &sqlite_in(dir.path()),
            &free_port(),
            &[
                ("TELEGRAM_BOT_TOKEN", telegram.token()),
                ("TELEGRAM_API_URL", &telegram_url),
                ("DISCORD_BOT_TOKEN", discord.token()),
                ("DISCORD_API_URL", &discord_url),
            ],
        );
        discord.wait_ready(Duration::from_secs(30)).await;
        telegram.wait_for(|calls| calls.iter().any(|call| call.method == "getupdates"), Duration::from_secs(30)).await;
        // Idle: both front-ends connected, nobody writing.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let rss = resident(child.id());
        let _ = child.kill();
        let _ = child.wait();
        rss
    });
    let measured = rss.map_or("unknown (no /proc)".to_owned(), |bytes| format!("{:.1} MiB", bytes as f64 / 1048576.0));
    figures.push(Figure {
        what: "`fixbot serve` idle, Telegram and Discord connected, resident memory".into(),
        measured,
        target: "under 30 MiB".into(),
        met: rss.map(|bytes| bytes < 30 << 20),
    });
}

/// The latency on SQLite, every step synced to disk before its answer goes
/// out (what a VPS runs), and on the memory store (fixbot's own time, with
/// no disk in the way).
pub fn webhook_latency(figures: &mut Vec<Figure>) {
    let dir = tempfile::tempdir().unwrap();
    webhook_latency_on(figures, "SQLite, every step synced", &sqlite_in(dir.path()));
    webhook_latency_on(figures, "memory store", "memory:");
}

fn webhook_latency_on(figures: &mut Vec<Figure>, store_name: &str, store: &str) {
    const UPDATES: i64 = 3000;
    const WARM_UP: i64 = 1000;
    const SECRET: &str = "bench-secret";
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let latencies = runtime.block_on(async {
        let telegram = FakeTelegram::start().await;
        let (listen, api_url) = (free_port(), telegram.api_url());
        let mut child = serve(
            store,
            &listen,
            &[
                ("TELEGRAM_BOT_TOKEN", telegram.token()),
                ("TELEGRAM_API_URL", &api_url),
                ("TELEGRAM_WEBHOOK_URL", "https://bench.example.test/telegram/webhook"),
                ("TELEGRAM_WEBHOOK_SECRET", SECRET),
                // Pacing is Telegram's limit, not fixbot's time: lift it, or
                // 1,000 updates a second queue behind a 1 ms gap.
                ("TELEGRAM_MESSAGES_PER_SECOND", "1000000"),
                ("FIXBOT_RATE_LIMIT_PER_MINUTE", "0"),
            ],
        );
        telegram.wait_for(|calls| calls.iter().any(|call| call.method == "setwebhook"), Duration::from_secs(30)).await;
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let url = format!("http://{listen}{}", fixbot_telegram::WEBHOOK_PATH);
        let corpus = crate::pastes::corpus(&root());
        // Each update comes from a chat of its own, so no per-chat limit
        // holds an answer back: what is measured is fixbot's own time.
        let post = |chats: std::ops::Range<i64>| {
            let (client, url, corpus, telegram) = (&client, &url, &corpus, &telegram);
            async move {
                let mut sent_at = std::collections::HashMap::new();
                let mut ticks = tokio::time::interval(Duration::from_millis(1));
                let mut posts = tokio::task::JoinSet::new();
                for chat in chats {
                    ticks.tick().await;
                    let id = telegram.text(
                        Chat::private(chat),
                        User { id: chat, language: "en" },
                        &corpus[chat as usize % corpus.len()],
                    );
                    let body = telegram.update(id).to_string();
                    sent_at.insert(chat, Instant::now());
                    let (client, url) = (client.clone(), url.clone());
                    posts.spawn(async move {
                        let _ = client
                            .post(url)
                            .header("X-Telegram-Bot-Api-Secret-Token", SECRET)
                            .header("Content-Type", "application/json")
                            .body(body)
                            .send()
                            .await;
                    });
                }
                while posts.join_next().await.is_some() {}
                sent_at
            }
        };
        // A second of the same load first, as every timing here is taken
        // warm: a running bot has its connections open and its lazy DFAs'
        // states built.
        post(1..1 + WARM_UP).await;
        let sent_at = post(1_000_000..1_000_000 + UPDATES).await;
        let _ = child.kill();
        let _ = child.wait();
        // The first answer to each chat, from when its update was posted.
        let mut answered = std::collections::HashMap::new();
        for call in telegram.calls().into_iter().filter(|call| call.method == "sendmessage") {
            if let Some(chat) = call.params["chat_id"].as_i64() {
                answered.entry(chat).or_insert(call.at);
            }
        }
        let mut latencies: Vec<Duration> = sent_at
            .iter()
            .filter_map(|(chat, sent)| Some(answered.get(chat)?.saturating_duration_since(*sent)))
            .collect();
        latencies.sort();
        latencies
    });
    let percentile = |p: usize| latencies.get(latencies.len().saturating_sub(1) * p / 100).copied().unwrap_or_default();
    let (p50, p99) = (percentile(50), percentile(99));
    figures.push(Figure {
        what: format!(
            "latency from a webhook update to its answer, 1,000 updates/s, {store_name} ({} answered)",
            latencies.len()
        ),
        measured: format!("p50 {:.2} ms, p99 {:.2} ms", p50.as_secs_f64() * 1e3, p99.as_secs_f64() * 1e3),
        target: "p99 under 5 ms".into(),
        met: Some(p99 < Duration::from_millis(5) && latencies.len() == UPDATES as usize),
    });
}
