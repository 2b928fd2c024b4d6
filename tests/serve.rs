//! `fixbot serve` as operators run it, as a real process: health, readiness
//! and metrics on one listener (parsed with a Prometheus text-format parser,
//! counters moving as a case runs), hot reload of a good and of a broken
//! flow edit while a case is open (by file watch and by SIGHUP), SIGTERM
//! while a message is in flight, readiness when the store goes away, and no
//! token in any log line of a faulty run. Issue 6.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::fake_telegram::{Chat, FakeTelegram, User};
use crate::support::{Server, TcpProxy, free_address, root, spawn_serve};

const WAIT: Duration = Duration::from_secs(30);
const ICLOUD_FULL: &str = "This iPhone cannot be backed up because there is not enough iCloud storage available.";

/// A small flow whose steps the reload tests edit.
const DEMO: &str = r#"
title: Demo sync is stuck
summary: The demo sync does not finish.
match:
  - regex: 'demo sync (is )?stuck'
    weight: 10
steps:
  - id: first
    text: "Demo step one."
  - id: second
    text: "Demo step two."
  - id: third
    text: "Demo step three."
"#;

/// GETs `path` from the server: the status and the body.
async fn get(address: SocketAddr, path: &str) -> (u16, String) {
    let client = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(10)).build().unwrap();
    match client.get(format!("http://{address}{path}")).send().await {
        Ok(response) => (response.status().as_u16(), response.text().await.unwrap_or_default()),
        Err(_) => (0, String::new()),
    }
}

/// Waits until `path` answers with `status`, and returns the body.
async fn wait_for_status(address: SocketAddr, path: &str, status: u16) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let (got, body) = get(address, path).await;
        if got == status {
            return body;
        }
        assert!(Instant::now() < deadline, "{path} answered {got}, not {status}: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The samples of `/metrics`, parsed as Prometheus parses them, by name and
/// sorted labels.
async fn scrape(address: SocketAddr) -> HashMap<String, f64> {
    let (status, text) = get(address, "/metrics").await;
    assert_eq!(status, 200, "{text}");
    let lines = text.lines().map(|line| Ok(line.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text format");
    let mut samples = HashMap::new();
    for sample in scrape.samples {
        let mut labels: Vec<String> = sample.labels.iter().map(|(name, value)| format!("{name}={value}")).collect();
        labels.sort();
        let value = match sample.value {
            prometheus_parse::Value::Counter(value)
            | prometheus_parse::Value::Gauge(value)
            | prometheus_parse::Value::Untyped(value) => value,
            prometheus_parse::Value::Histogram(buckets) => buckets.last().map_or(0.0, |bucket| bucket.count),
            prometheus_parse::Value::Summary(_) => continue,
        };
        samples.insert(format!("{}{{{}}}", sample.metric, labels.join(",")), value);
    }
    samples
}

fn sample(samples: &HashMap<String, f64>, key: &str) -> f64 {
    samples.get(key).copied().unwrap_or(0.0)
}

/// Waits until the metric `key` reaches `value`.
async fn wait_for_metric(address: SocketAddr, key: &str, value: f64) {
    let deadline = Instant::now() + WAIT;
    while sample(&scrape(address).await, key) < value {
        assert!(Instant::now() < deadline, "{key} did not reach {value}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A serve process on the fake Telegram (long polling) at a known address.
async fn serve(fake: &FakeTelegram, store: &str, args: &[&str], extra: &[(&str, &str)]) -> (Server, SocketAddr) {
    let address = free_address();
    let listen = address.to_string();
    let mut all_args = vec!["--listen", listen.as_str()];
    all_args.extend_from_slice(args);
    let api_url = fake.api_url();
    let mut platform = vec![("TELEGRAM_BOT_TOKEN", fake.token()), ("TELEGRAM_API_URL", api_url.as_str())];
    platform.extend_from_slice(extra);
    let server = spawn_serve(store, &all_args, &platform);
    wait_for_status(address, "/healthz", 200).await;
    (server, address)
}

fn user(id: i64) -> (Chat, User) {
    (Chat::private(id), User { id, language: "en" })
}

/// Waits for the `count`th message to `chat` and returns its text.
async fn nth_reply(fake: &FakeTelegram, chat: i64, count: usize) -> String {
    let deadline = Instant::now() + WAIT;
    while fake.sent_count(chat) < count {
        assert!(Instant::now() < deadline, "no reply {count} in chat {chat}: {:?}", fake.sent_to(chat));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    fake.sent_to(chat)[count - 1].plain.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_metrics_follow_a_case() {
    let fake = FakeTelegram::start().await;
    let (_server, address) = serve(&fake, "memory:", &[], &[]).await;
    let ready = wait_for_status(address, "/readyz", 200).await;
    let ready: Value = serde_json::from_str(&ready).unwrap();
    assert_eq!(ready["telegram"]["ready"], true, "{ready}");
    assert_eq!(ready["store"]["ready"], true, "{ready}");
    assert!(ready["flows"]["detail"].as_str().unwrap().contains("flows loaded"), "{ready}");
    let before = scrape(address).await;
    let flows = crate::support::shipped_flows().iter().len() as f64;
    assert_eq!(sample(&before, "fixbot_flows_loaded{}"), flows);

    let (chat, user) = user(41);
    fake.text(chat, user, ICLOUD_FULL);
    nth_reply(&fake, 41, 1).await;
    fake.text(chat, user, "skip");
    nth_reply(&fake, 41, 2).await;
    fake.text(chat, user, "stop");
    nth_reply(&fake, 41, 3).await;
    wait_for_metric(address, "fixbot_reply_duration_seconds{platform=telegram}", 3.0).await;

    let after = scrape(address).await;
    let moved = |key: &str| sample(&after, key) - sample(&before, key);
    assert_eq!(moved("fixbot_messages_received_total{platform=telegram}"), 3.0);
    assert_eq!(moved("fixbot_messages_sent_total{platform=telegram}"), 3.0);
    assert_eq!(moved("fixbot_diagnoses_total{symptom=cloud_storage_full}"), 1.0);
    assert_eq!(
        moved(
            "fixbot_step_outcomes_total{flow=cloud_storage_full,outcome=skipped,step=compare_space,symptom=cloud_storage_full}"
        ),
        1.0
    );
    assert_eq!(moved("fixbot_cases_ended_total{end=abandoned,symptom=cloud_storage_full}"), 1.0);
    assert_eq!(moved("fixbot_reply_duration_seconds{platform=telegram}"), 3.0, "every reply was timed");
    assert_eq!(sample(&after, "fixbot_store_errors_total{}"), 0.0);
    assert_eq!(get(address, "/nowhere").await.0, 404);
}

/// A serve process on a flows directory of its own: the shipped
/// `_bot.yaml` with the demo flow beside it.
async fn serve_demo(fake: &FakeTelegram, extra: &[(&str, &str)]) -> (Server, SocketAddr, tempfile::TempDir) {
    let flows = tempfile::tempdir().unwrap();
    std::fs::copy(root().join("flows/_bot.yaml"), flows.path().join("_bot.yaml")).unwrap();
    std::fs::write(flows.path().join("demo.yaml"), DEMO).unwrap();
    let dir = flows.path().display().to_string();
    let (server, address) = serve(fake, "memory:", &["--flows", &dir], extra).await;
    (server, address, flows)
}

/// Replaces the demo flow's file in one step, as an editor saving it would.
fn edit_demo(dir: &Path, text: &str) {
    let temporary = dir.join(".demo.yaml.tmp");
    std::fs::write(&temporary, text).unwrap();
    std::fs::rename(&temporary, dir.join("demo.yaml")).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_to_the_flows_are_picked_up_and_broken_ones_refused_while_a_case_is_open() {
    let fake = FakeTelegram::start().await;
    let (_server, address, flows) = serve_demo(&fake, &[]).await;
    let (chat, user) = user(42);
    fake.text(chat, user, "my demo sync is stuck");
    assert!(nth_reply(&fake, 42, 1).await.contains("Demo step one."));

    // A good edit: the open case goes on, by step id, with the new text.
    edit_demo(flows.path(), &DEMO.replace("Demo step two.", "Demo step two, reworded."));
    wait_for_metric(address, "fixbot_flow_reloads_total{result=ok}", 1.0).await;
    fake.text(chat, user, "skip");
    assert!(nth_reply(&fake, 42, 2).await.contains("Demo step two, reworded."));

    // A broken edit is refused with its file and line; the flows in use stay.
    edit_demo(flows.path(), &DEMO.replace("  - id: third\n", "  - id: third\n    txet: typo\n"));
    wait_for_metric(address, "fixbot_flow_reloads_total{result=refused}", 1.0).await;
    let (status, ready) = get(address, "/readyz").await;
    assert_eq!(status, 200, "the flows in use still work: {ready}");
    assert!(ready.contains("the last edit was refused") && ready.contains("demo.yaml:"), "{ready}");
    fake.text(chat, user, "skip");
    assert!(nth_reply(&fake, 42, 3).await.contains("Demo step three."));

    // The step the case is at is removed: the case restarts with a notice.
    let without_third = DEMO.replace("  - id: third\n    text: \"Demo step three.\"\n", "");
    edit_demo(flows.path(), &without_third);
    wait_for_metric(address, "fixbot_flow_reloads_total{result=ok}", 2.0).await;
    fake.text(chat, user, "skip");
    let reply = nth_reply(&fake, 42, 4).await;
    assert!(reply.contains("were updated") && reply.contains("Demo step one."), "{reply}");
    assert!(!get(address, "/readyz").await.1.contains("refused"), "a good edit clears the refusal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_flows_when_watching_is_off() {
    let fake = FakeTelegram::start().await;
    let (server, address, flows) = serve_demo(&fake, &[("FIXBOT_WATCH_FLOWS", "false")]).await;
    let (chat, user) = user(43);
    fake.text(chat, user, "demo sync stuck");
    nth_reply(&fake, 43, 1).await;
    edit_demo(flows.path(), &DEMO.replace("Demo step two.", "Demo step two, after SIGHUP."));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(sample(&scrape(address).await, "fixbot_flow_reloads_total{result=ok}"), 0.0, "no watching");
    server.signal("HUP");
    wait_for_metric(address, "fixbot_flow_reloads_total{result=ok}", 1.0).await;
    fake.text(chat, user, "skip");
    assert!(nth_reply(&fake, 43, 2).await.contains("after SIGHUP"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_message_answers_it_and_exits_zero() {
    let fake = FakeTelegram::start().await;
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite:{}", dir.path().join("cases.db").display());
    let (mut server, address) = serve(&fake, &store, &[], &[]).await;
    wait_for_status(address, "/readyz", 200).await;
    // Telegram is slow to take the answer: the message is in flight when
    // the signal comes.
    fake.delay_next("sendmessage", Duration::from_secs(2));
    let (chat, user) = user(44);
    fake.text(chat, user, ICLOUD_FULL);
    let deadline = Instant::now() + WAIT;
    while !fake.calls().iter().any(|call| call.method == "getupdates" && call.params.to_string().contains("offset")) {
        assert!(Instant::now() < deadline, "the update was never fetched");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.signal("TERM");
    let status = tokio::task::spawn_blocking(move || {
        let status = server.wait().unwrap();
        drop(server);
        status
    })
    .await
    .unwrap();
    assert!(status.success(), "serve exits 0 after a SIGTERM: {status:?}");
    assert_eq!(fake.sent_count(44), 1, "the message in flight was answered before the exit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_fails_while_the_store_is_unreachable() {
    let Some(url) = crate::store_contract::postgres_url() else { return };
    let schema = crate::store_contract::TestSchema::new(&url);
    let direct = schema.create();
    // The server reaches PostgreSQL through a proxy the test can cut.
    let parsed = url::Url::parse(&direct).unwrap();
    let target: SocketAddr =
        format!("{}:{}", parsed.host_str().unwrap(), parsed.port().unwrap_or(5432)).parse().unwrap();
    let proxy = TcpProxy::start(target, 0, 0, 0).await;
    let mut through = parsed.clone();
    through.set_port(Some(proxy.address.port())).unwrap();
    let fake = FakeTelegram::start().await;
    let (_server, address) = serve(&fake, through.as_str(), &[], &[]).await;
    wait_for_status(address, "/readyz", 200).await;

    let port = proxy.address.port();
    drop(proxy);
    let body = wait_for_status(address, "/readyz", 503).await;
    let ready: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["ready"], false, "{ready}");
    assert_eq!(ready["store"]["ready"], false, "{ready}");
    assert_eq!(ready["telegram"]["ready"], true, "only the store is down: {ready}");
    assert_eq!(get(address, "/healthz").await.0, 200, "the process is alive all the same");

    // The store comes back on the same address: ready again.
    let _proxy = TcpProxy::start(target, port, 0, 0).await;
    wait_for_status(address, "/readyz", 200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_reaches_any_log_line() {
    use crate::fake_discord::{FakeDiscord, Place};
    // Telegram is unreachable (every client error names the URL, token and
    // all); Discord answers a case, one call with a 500; the log is JSON at
    // the most verbose level.
    let telegram = FakeTelegram::start().await;
    let discord = FakeDiscord::start().await;
    let (token, discord_token) = (telegram.token().to_owned(), discord.token().to_owned());
    let (discord_api, unreachable) = (discord.api_url(), format!("http://{}/", free_address()));
    let mut server = spawn_serve(
        "memory:",
        &["--log-format", "json"],
        &[
            ("TELEGRAM_BOT_TOKEN", &token),
            ("TELEGRAM_API_URL", &unreachable),
            ("DISCORD_BOT_TOKEN", &discord_token),
            ("DISCORD_API_URL", &discord_api),
            ("RUST_LOG", "trace"),
        ],
    );
    discord.wait_ready(WAIT).await;
    discord.fail_next("POST", "/api/v10/webhooks", 500, None);
    discord.slash(
        Place::guild(5000, 10),
        1,
        "fix",
        serde_json::json!([{ "name": "error", "type": 3, "value": ICLOUD_FULL }]),
    );
    let deadline = Instant::now() + WAIT;
    while !server.log().contains("cannot reach Telegram") || discord.posts().is_empty() {
        assert!(Instant::now() < deadline, "Telegram was never tried, or Discord never answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.kill().unwrap();
    server.wait().unwrap();
    let log = server.log();

    let hidden_half = token.split_once(':').map_or(token.as_str(), |(_, hidden)| hidden);
    for secret in [token.as_str(), hidden_half, discord_token.as_str()] {
        let leaks: Vec<&str> = log.lines().filter(|line| line.contains(secret)).take(3).collect();
        assert!(leaks.is_empty(), "a secret reached the log:\n{}", leaks.join("\n"));
    }
    // teloxide leaves the URL out of its network errors; whatever else
    // might carry a token is scrubbed line by line (bot/app/logging.rs).
    assert!(log.contains("A network error"), "Telegram's failures were logged");
    assert!(log.contains("discord front-end connected"), "Discord's work was logged");
    let lines = log.lines().filter(|line| !line.trim().is_empty());
    let (json, total) = lines.fold((0, 0), |(json, total), line| {
        (json + usize::from(serde_json::from_str::<Value>(line).is_ok()), total + 1)
    });
    assert!(total >= 20 && json == total, "{json} of {total} lines are JSON");
}
