//! Helpers shared by the test modules.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use fixbot_core::flow::{Flows, Source};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The shipped flows, loaded and checked.
pub fn shipped_flows() -> Arc<Flows> {
    let dir = root().join("flows");
    Arc::new(Flows::load_dir(&dir).unwrap_or_else(|errors| panic!("shipped flows do not load:\n{errors}")))
}

/// The shipped `_bot.yaml` with the given flow files (name, YAML) beside it.
pub fn flows_with(files: &[(&str, &str)]) -> Flows {
    let bot = std::fs::read_to_string(root().join("flows/_bot.yaml")).unwrap();
    let mut sources = vec![Source { path: PathBuf::from("flows/_bot.yaml"), text: bot }];
    sources.extend(
        files.iter().map(|(name, text)| Source { path: Path::new("flows").join(name), text: text.to_string() }),
    );
    Flows::from_sources(sources).unwrap_or_else(|errors| panic!("fixture flows do not load:\n{errors}"))
}

/// Runs the `fixbot` binary with `args` and `stdin`, from the repository root.
pub fn fixbot(args: &[&str], stdin: &[u8]) -> Output {
    fixbot_in(&root(), args, stdin)
}

/// Runs the `fixbot` binary in `dir`.
pub fn fixbot_in(dir: &Path, args: &[&str], stdin: &[u8]) -> Output {
    use std::io::Write as _;
    let mut child = Command::new(env!("CARGO_BIN_EXE_fixbot"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the fixbot binary runs");
    let mut pipe = child.stdin.take().unwrap();
    let input = stdin.to_vec();
    // Write from a thread so a large input cannot deadlock against a full stdout pipe.
    let writer = std::thread::spawn(move || {
        let _ = pipe.write_all(&input);
    });
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap();
    output
}

/// Stdout as text.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Stderr as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts that `sent` concurrent "skip"s of an iPhone user in the
/// `cloud_storage_full` flow were applied one after another: the Skipped
/// outcomes name that flow's iPhone steps once each, in order, none lost.
pub async fn assert_skips_applied_in_turn(store: &impl fixbot_core::store::Store, flows: &Flows, sent: usize) {
    use fixbot_core::case::Outcome;
    let skipped: Vec<String> = store
        .outcomes(0)
        .await
        .unwrap()
        .into_iter()
        .filter(|record| record.outcome == Outcome::Skipped)
        .map(|record| record.step)
        .collect();
    let flow = flows.get("cloud_storage_full").unwrap();
    let ios: Vec<String> = flow.steps.iter().filter(|step| step.ios.is_some()).map(|step| step.id.clone()).collect();
    assert_eq!(skipped, ios[..skipped.len()], "each step skipped once, in order");
    assert_eq!(skipped.len(), ios.len().min(sent), "no skip was lost");
}

/// Every variable through which `fixbot serve` reaches a platform.
const PLATFORM_VARIABLES: &[&str] = &[
    "TELEGRAM_BOT_TOKEN",
    "TELEGRAM_API_URL",
    "TELEGRAM_WEBHOOK_URL",
    "TELEGRAM_WEBHOOK_SECRET",
    "TELEGRAM_MESSAGES_PER_SECOND",
    "DISCORD_BOT_TOKEN",
    "DISCORD_API_URL",
    "DISCORD_GUILD_IDS",
    "DISCORD_HELP_CHANNELS",
    "DISCORD_THREADS",
];

/// Starts `fixbot serve` on `store` with only the platform variables given:
/// whatever the surrounding environment holds, only the fakes are reached.
pub fn spawn_serve(store: &str, platform: &[(&str, &str)]) -> std::process::Child {
    serve_command(&["--store", store], platform).spawn().expect("the fixbot binary runs")
}

/// `fixbot serve ARGS` with only the platform variables given, output
/// discarded; callers may redirect it before spawning.
pub fn serve_command(args: &[&str], platform: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_fixbot"));
    command.arg("serve").args(args).current_dir(root()).stdout(Stdio::null()).stderr(Stdio::null());
    for name in PLATFORM_VARIABLES {
        command.env_remove(name);
    }
    command.envs(platform.iter().copied());
    command
}
