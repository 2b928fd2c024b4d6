//! The performance targets, measured side by side with their alternatives in
//! one run: `cargo bench --bench targets`. Prints a table of every figure,
//! its target, and the ratio against the alternative where there is one, and
//! writes it to `target/bench/targets.md` for `docs/benchmarks.md`. No figure
//! here is asserted: the machines are shared and noisy; the table says which
//! targets were met.

// The fakes are the test suite's; the benchmarks use a part of them.
#[allow(unused_imports)]
#[path = "../tests/fake_discord.rs"]
mod fake_discord;
#[allow(unused_imports)]
#[path = "../tests/fake_telegram.rs"]
mod fake_telegram;
#[allow(unused_imports)]
#[path = "../tests/fault_plan.rs"]
mod fault_plan;
mod pastes;
mod system;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fixbot_core::case::ConversationKey;
use fixbot_core::engine::{EngineConfig, Input};
use fixbot_core::flow::Flows;
use fixbot_core::session::Session;
use fixbot_core::store::Store;
use fixbot_store::{MemoryStore, SqliteStore};

/// The binary's allocator (bot/app/main.rs), so the in-process figures
/// measure the code as it runs in `fixbot`.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// One line of the table.
struct Figure {
    what: String,
    measured: String,
    target: String,
    met: Option<bool>,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Where the benchmark writes its files.
fn workdir() -> PathBuf {
    let dir = root().join("target/bench");
    std::fs::create_dir_all(&dir).expect("target/bench can be created");
    dir
}

/// The median of `runs` timings of `work`.
fn median(runs: usize, mut work: impl FnMut()) -> Duration {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            work();
            start.elapsed()
        })
        .collect();
    times.sort();
    times[runs / 2]
}

fn flows() -> Flows {
    Flows::load_dir(&root().join("flows")).expect("the shipped flows load")
}

/// Every pattern's source, in the matcher's order.
fn patterns(flows: &Flows) -> Vec<String> {
    let matcher = flows.matcher();
    (0..matcher.len()).map(|index| matcher.pattern(index).0.to_owned()).collect()
}

fn write_jsonl(path: &Path, messages: &[String]) {
    let lines: String = messages.iter().map(|message| serde_json::to_string(message).unwrap() + "\n").collect();
    std::fs::write(path, lines).expect("the benchmark's messages can be written");
}

fn load(figures: &mut Vec<Figure>) {
    let time = median(11, || drop(flows()));
    figures.push(Figure {
        what: "load and compile all flows".into(),
        measured: format!("{:.1} ms", time.as_secs_f64() * 1e3),
        target: "under 50 ms".into(),
        met: Some(time < Duration::from_millis(50)),
    });
}

fn diagnose(figures: &mut Vec<Figure>) {
    let flows = flows();
    let pastes = pastes::pastes(&root(), 400);
    let bytes: usize = pastes.iter().map(String::len).sum();
    // Warm the lazy DFAs as a running bot's are, then measure.
    for paste in &pastes {
        fixbot_core::engine::diagnose_text(&flows, paste);
    }
    let ours = median(5, || {
        for paste in &pastes {
            std::hint::black_box(fixbot_core::engine::diagnose_text(&flows, paste));
        }
    });
    let ours_rate = pastes.len() as f64 / ours.as_secs_f64();
    let dir = workdir();
    let (patterns_file, pastes_file) = (dir.join("patterns.json"), dir.join("pastes.jsonl"));
    std::fs::write(&patterns_file, serde_json::to_string(&patterns(&flows)).unwrap()).unwrap();
    write_jsonl(&pastes_file, &pastes);
    let python = Command::new("python3")
        .arg(root().join("benches/python_re.py"))
        .args([&patterns_file, &pastes_file])
        .output()
        .ok()
        .filter(|output| output.status.success())
        .and_then(|output| serde_json::from_slice::<serde_json::Value>(&output.stdout).ok());
    let (measured, met) = match python.and_then(|report| report["seconds"].as_f64()) {
        Some(seconds) => {
            let python_rate = pastes.len() as f64 / seconds;
            let ratio = ours_rate / python_rate;
            (format!("{ours_rate:.0} msg/s vs Python re {python_rate:.1} msg/s: {ratio:.0}×"), Some(ratio >= 50.0))
        }
        None => (format!("{ours_rate:.0} msg/s (python3 did not run)"), None),
    };
    figures.push(Figure {
        what: format!(
            "diagnose {} pastes, 100 B to 4 KiB ({:.1} KiB on average)",
            pastes.len(),
            bytes as f64 / 1024.0 / pastes.len() as f64
        ),
        measured,
        target: "50× a Python re loop".into(),
        met,
    });
}

/// The ripgrep to compare with: the one on `PATH`, else one installed with
/// cargo into `target/bench-tools` (once, on a machine that has none), so the
/// comparison runs on a clean checkout.
fn ripgrep() -> Option<PathBuf> {
    let works = |rg: &Path| Command::new(rg).arg("--version").stdout(Stdio::null()).status().is_ok_and(|s| s.success());
    let local = root().join("target/bench-tools/bin/rg");
    if let Some(found) = [PathBuf::from("rg"), local.clone()].into_iter().find(|rg| works(rg)) {
        return Some(found);
    }
    eprintln!("ripgrep is not installed; installing it into target/bench-tools with cargo");
    let installed = Command::new(env!("CARGO"))
        .args(["install", "ripgrep", "--locked", "--root"])
        .arg(root().join("target/bench-tools"))
        .status()
        .is_ok_and(|status| status.success());
    (installed && works(&local)).then_some(local)
}

fn huge_paste(figures: &mut Vec<Figure>) {
    let flows = flows();
    let pastes = pastes::pastes(&root(), 400);
    let mut text = String::with_capacity(33 << 20);
    while text.len() < 32 << 20 {
        for paste in &pastes {
            text.push_str(paste);
            text.push('\n');
        }
    }
    let dir = workdir();
    let (file, pattern_file) = (dir.join("paste-32mib.txt"), dir.join("patterns.txt"));
    std::fs::write(&file, &text).unwrap();
    std::fs::write(&pattern_file, patterns(&flows).join("\n") + "\n").unwrap();
    let ours = median(3, || drop(std::hint::black_box(flows.diagnose(&text))));
    let ripgrep = ripgrep().map(|rg| {
        median(3, || {
            let _ = Command::new(&rg)
                .args(["--no-unicode", "--ignore-case", "--count", "--no-config", "--file"])
                .args([&pattern_file, &file])
                .stdout(Stdio::null())
                .status();
        })
    });
    let (measured, met) = match ripgrep {
        Some(rg) => {
            let ratio = ours.as_secs_f64() / rg.as_secs_f64();
            (
                format!("{:.2} s vs ripgrep {:.2} s: {ratio:.1}× its time", ours.as_secs_f64(), rg.as_secs_f64()),
                Some(ratio <= 2.0),
            )
        }
        None => (format!("{:.2} s (ripgrep not installed)", ours.as_secs_f64()), None),
    };
    figures.push(Figure {
        what: "diagnose one 32 MiB paste".into(),
        measured,
        target: "within 2× ripgrep".into(),
        met,
    });
}

fn batch(figures: &mut Vec<Figure>) {
    let pastes = pastes::pastes(&root(), 20_000);
    let file = workdir().join("batch.jsonl");
    write_jsonl(&file, &pastes);
    let time = median(3, || {
        let status = Command::new(env!("CARGO_BIN_EXE_fixbot"))
            .args(["diagnose", "--batch", "--flows"])
            .arg(root().join("flows"))
            .stdin(std::fs::File::open(&file).unwrap())
            .stdout(Stdio::null())
            .status()
            .expect("fixbot runs");
        assert!(status.success());
    });
    figures.push(Figure {
        what: "`fixbot diagnose --batch`, 20,000 pastes, whole process".into(),
        measured: format!("{:.2} s, {:.0} msg/s", time.as_secs_f64(), 20_000.0 / time.as_secs_f64()),
        target: "reported".into(),
        met: None,
    });
}

/// What one simulated person sends after the paste: "still failing" (the
/// second choice of most steps), skips and a step back, as people walk a
/// case that takes a while to fix.
const SCRIPT: &[&str] = &["2", "skip", "2", "back", "2", "skip", "2", "back", "2"];

/// The simulated people talking at once in each session round.
const PEOPLE: usize = 2000;

/// Runs `PEOPLE` conversations through `session`, all at once: each opens
/// its case with a message of `corpus` (the errors people paste, 89 B on
/// average; diagnosing long pastes is measured above) and walks it with
/// `SCRIPT`. Round `round` talks in chats of its own, so each round opens
/// new cases.
async fn session_round<S: Store + 'static>(session: Arc<Session<S>>, corpus: Arc<Vec<String>>, round: usize) {
    let mut tasks = tokio::task::JoinSet::new();
    for person in 0..PEOPLE {
        let (session, paste) = (session.clone(), corpus[person % corpus.len()].clone());
        tasks.spawn(async move {
            let key = person_key(round, person);
            session.handle(&key, Input::Text(paste), 1_000_000).await.expect("the store works");
            for answer in SCRIPT {
                session.handle(&key, Input::Text((*answer).to_owned()), 1_000_000).await.expect("the store works");
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

fn person_key(round: usize, person: usize) -> ConversationKey {
    ConversationKey::new("bench", &format!("{round}-{person}"), "", &person.to_string())
}

/// Messages handled a second by `session`, 2,000 people at once: the median
/// of `rounds` rounds after one to warm up (the lazy DFAs, the store's pages).
fn session_rate<S: Store + 'static>(
    runtime: &tokio::runtime::Runtime,
    session: &Arc<Session<S>>,
    rounds: usize,
) -> f64 {
    // Each round runs as a task of the runtime, as a front-end's handlers
    // do: waiting for the people from outside it would wake this thread once
    // for each of them, which no running bot does.
    // Read once, outside the timed rounds.
    let corpus = Arc::new(pastes::corpus(&root()));
    let round_on_runtime =
        |round| runtime.block_on(runtime.spawn(session_round(session.clone(), corpus.clone(), round))).unwrap();
    round_on_runtime(0);
    let mut round = 0;
    let time = median(rounds, || {
        round += 1;
        round_on_runtime(round);
    });
    (PEOPLE * (1 + SCRIPT.len())) as f64 / time.as_secs_f64()
}

/// The two-thread runtime the sessions run on, as `fixbot serve`'s on a
/// two-core machine.
fn session_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// The session on the memory store.
fn memory_session(figures: &mut Vec<Figure>) {
    let runtime = session_runtime();
    let memory = Arc::new(Session::new(MemoryStore::new(), Arc::new(flows()), EngineConfig::default()));
    let rate = session_rate(&runtime, &memory, 15);
    figures.push(Figure {
        what: "engine + session, memory store, 2,000 people at once".into(),
        measured: format!("{rate:.0} msg/s"),
        target: "200,000 msg/s".into(),
        met: Some(rate >= 200_000.0),
    });
}

/// The session on SQLite, every step synced, and the stored size per case.
fn sqlite_session(figures: &mut Vec<Figure>) {
    let runtime = session_runtime();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.db");
    let store = runtime.block_on(SqliteStore::open(&path)).unwrap();
    let sqlite = Arc::new(Session::new(store, Arc::new(flows()), EngineConfig::default()));
    const ROUNDS: usize = 5;
    let rate = session_rate(&runtime, &sqlite, ROUNDS);
    figures.push(Figure {
        what: "engine + session, SQLite, every step committed and synced".into(),
        measured: format!("{rate:.0} msg/s"),
        target: "20,000 msg/s".into(),
        met: Some(rate >= 20_000.0),
    });
    // Stored size: the cases now open in the file (every round's), with
    // everything else the store keeps beside them.
    let open = runtime.block_on(async {
        let mut open = 0;
        for round in 0..=ROUNDS {
            for person in 0..PEOPLE {
                open += usize::from(sqlite.store().get(&person_key(round, person)).await.unwrap().is_some());
            }
        }
        sqlite.store().close().await;
        open
    });
    let bytes = std::fs::metadata(&path).map_or(0, |metadata| metadata.len());
    let per_case = bytes as f64 / open.max(1) as f64;
    figures.push(Figure {
        what: format!("stored size per open case ({open} open, whole SQLite file)"),
        measured: format!("{per_case:.0} B"),
        target: "under 2 KiB".into(),
        met: Some(per_case < 2048.0),
    });
}

fn main() {
    // `cargo bench` passes `--bench`; names filter, as with other benchmarks.
    let filters: Vec<String> = std::env::args().skip(1).filter(|arg| !arg.starts_with('-')).collect();
    let run = |name: &str| filters.is_empty() || filters.iter().any(|filter| name.contains(filter.as_str()));
    let mut figures = Vec::new();
    if run("load") {
        load(&mut figures);
    }
    if run("diagnose") {
        diagnose(&mut figures);
    }
    if run("huge") {
        huge_paste(&mut figures);
    }
    if run("batch") {
        batch(&mut figures);
    }
    if run("session memory") {
        memory_session(&mut figures);
    }
    if run("session sqlite") {
        sqlite_session(&mut figures);
    }
    if run("system idle") {
        system::idle_memory(&mut figures);
    }
    if run("system latency") {
        system::webhook_latency(&mut figures);
    }
    let mut table = String::from("| what | measured | target | met |\n| --- | --- | --- | --- |\n");
    for figure in &figures {
        let met = match figure.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "—",
        };
        let _ = writeln!(table, "| {} | {} | {} | {met} |", figure.what, figure.measured, figure.target);
    }
    println!("\n{table}");
    let file = workdir().join("targets.md");
    std::fs::write(&file, &table).expect("the table can be written");
    println!("written to {}", file.display());
}
