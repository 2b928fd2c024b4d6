//! A faulty run: one `fixbot serve` with both front-ends while Telegram and
//! Discord fail at random (429s, 5xx, timeouts, garbled answers, connections
//! cut, the gateway dropped), for 1,000 messages of 100 people. Every message
//! must be answered exactly once, every case must end where the engine alone
//! ends it, and no token may reach the log. Issue 7; the figures are printed
//! to stderr, and `docs/reliability.md` says how to rerun it.

use std::time::{Duration, Instant};

use fixbot_store::SqliteStore;

use crate::fake_discord::FakeDiscord;
use crate::fake_telegram::FakeTelegram;
use crate::fault_plan::{Fault, FaultPlan};
use crate::simulated::{DiscordPeople, Script, Tally, TelegramPeople, plan, reference, walk};
use crate::support::{TcpProxy, spawn_serve};

const TELEGRAM_PEOPLE: i64 = 60;
const DISCORD_PEOPLE: i64 = 40;
/// Telegram waits 10 s after a 5xx before it answers the client, and a turn
/// may meet several faults: a turn whose answers take longer is lost.
const ANSWER_WAIT: Duration = Duration::from_secs(120);
/// The client's timeout fixbot is given, and how long a timeout fault holds.
const REQUEST_TIMEOUT: &str = "1s";
const FAULT_HOLD: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_is_answered_once_while_the_platforms_fail() {
    let telegram = FakeTelegram::start().await;
    let discord = FakeDiscord::start().await;
    // Telegram: 9% of calls fail inside the fake, and a flaky network in
    // front of it cuts 4% of what the bot sends.
    let telegram_faults = [(Fault::RateLimited, 3), (Fault::Server, 1), (Fault::Timeout, 3), (Fault::Garbage, 2)];
    telegram.inject_faults(FaultPlan::new(90, &telegram_faults, 7), FAULT_HOLD);
    let fake_address = telegram.api_url().trim_start_matches("http://").trim_end_matches('/').parse().unwrap();
    let network = TcpProxy::start(fake_address, 0, 40, 11).await;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cases.db");
    let store = format!("sqlite:{}", path.display());
    let (telegram_token, discord_token) = (telegram.token().to_owned(), discord.token().to_owned());
    let (telegram_api, discord_api) = (format!("http://{}/", network.address), discord.api_url());
    let server = spawn_serve(
        &store,
        &[],
        &[
            ("TELEGRAM_BOT_TOKEN", &telegram_token),
            ("TELEGRAM_API_URL", &telegram_api),
            ("TELEGRAM_REQUEST_TIMEOUT", REQUEST_TIMEOUT),
            ("DISCORD_BOT_TOKEN", &discord_token),
            ("DISCORD_API_URL", &discord_api),
            ("RUST_LOG", "info"),
        ],
    );
    discord.wait_ready(ANSWER_WAIT).await;
    discord.inject_faults(FaultPlan::new(120, &[(Fault::RateLimited, 1), (Fault::Server, 2)], 13));
    telegram.wait_for(|calls| calls.iter().any(|call| call.method == "getupdates"), ANSWER_WAIT).await;

    let reference = reference();
    let telegram_people = TelegramPeople(telegram.clone());
    let discord_people = DiscordPeople(discord.clone());
    let telegram_scripts: Vec<Script> = plan(&telegram_people, 1..=TELEGRAM_PEOPLE, &reference).await;
    let discord_scripts: Vec<Script> = plan(&discord_people, 1..=DISCORD_PEOPLE, &reference).await;
    let updates = |scripts: &[Script]| -> usize {
        scripts.iter().flat_map(|script| &script.turns).map(|(turn, _)| turn.updates()).sum()
    };
    let (telegram_updates, discord_updates) = (updates(&telegram_scripts), updates(&discord_scripts));

    // The gateway drops now and then: closed with 4000, asked to reconnect,
    // or its session invalidated (resumable).
    let started = Instant::now();
    let gateway = {
        let discord = discord.clone();
        tokio::spawn(async move {
            for round in 0u32.. {
                tokio::time::sleep(Duration::from_secs(3)).await;
                match round % 3 {
                    0 => discord.close_gateway(4000),
                    1 => discord.request_reconnect(),
                    _ => discord.invalidate_session(true),
                }
            }
        })
    };
    let telegram_walkers: Vec<_> = telegram_scripts
        .into_iter()
        .map(|script| tokio::spawn(walk(telegram_people.clone(), script, ANSWER_WAIT)))
        .collect();
    let discord_walkers: Vec<_> = discord_scripts
        .into_iter()
        .map(|script| tokio::spawn(walk(discord_people.clone(), script, ANSWER_WAIT)))
        .collect();
    let (mut telegram_walked, mut discord_walked) = (Vec::new(), Vec::new());
    for walker in telegram_walkers {
        telegram_walked.push(walker.await.unwrap());
    }
    for walker in discord_walkers {
        discord_walked.push(walker.await.unwrap());
    }
    let wall = started.elapsed();
    gateway.abort();
    // A moment for anything sent twice to arrive, then a clean stop.
    tokio::time::sleep(Duration::from_secs(2)).await;
    server.signal("TERM");
    let _ = tokio::task::spawn_blocking({
        let pid = server.id();
        move || {
            let deadline = Instant::now() + Duration::from_secs(30);
            while std::path::Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    })
    .await;
    let log = server.log();

    let stored = SqliteStore::open(&path).await.unwrap();
    let telegram_tally = Tally::of(&telegram_people, &telegram_walked, telegram_updates, &stored, &reference).await;
    let discord_tally = Tally::of(&discord_people, &discord_walked, discord_updates, &stored, &reference).await;
    let telegram_plan = telegram.faults().unwrap();
    let discord_plan = discord.faults().unwrap();
    let telegram_calls = telegram_plan.calls + network.resets();
    let telegram_faults = telegram_plan.total() + network.resets();
    let discord_faults = discord_plan.total() + discord.resumes() + discord.identifies().saturating_sub(1);
    let figures = format!(
        "faulty run in {wall:.1?}\n  telegram: {TELEGRAM_PEOPLE} people, {}\n    calls {telegram_calls}, faults \
         {telegram_faults} ({:.1}%): {:?} and {} connections cut\n  discord: {DISCORD_PEOPLE} people, {}\n    REST calls \
         {}, faults {} ({:.1}%): {:?}; gateway resumed {} times, identified {}",
        telegram_tally.figures(),
        100.0 * telegram_faults as f64 / telegram_calls.max(1) as f64,
        telegram_plan.injected,
        network.resets(),
        discord_tally.figures(),
        discord_plan.calls,
        discord_plan.total(),
        100.0 * discord_plan.total() as f64 / discord_plan.calls.max(1) as f64,
        discord_plan.injected,
        discord.resumes(),
        discord.identifies(),
    );
    {
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), "\n{figures}\n");
    }
    assert!(telegram_updates + discord_updates >= 1000, "{figures}");
    // Every fault strikes before the platform carries a call out, so none
    // may bring a message twice.
    telegram_tally.assert_sound(&figures, 0);
    discord_tally.assert_sound(&figures, 0);
    assert!(telegram_faults * 10 >= telegram_calls, "at least 10% of Telegram calls failed: {figures}");
    assert!(discord_plan.total() * 10 >= discord_plan.calls, "at least 10% of Discord calls failed: {figures}");
    assert!(discord_faults > discord_plan.total(), "the gateway dropped too: {figures}");
    for token in [telegram_token.as_str(), discord_token.as_str()] {
        let hidden = token.split_once(':').map_or(token, |(_, hidden)| hidden);
        assert!(!log.contains(token) && !log.contains(hidden), "a token reached the log");
    }
}
