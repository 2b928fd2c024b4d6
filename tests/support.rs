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

/// Copies the shipped flow files (not `transcripts/`) into `to`.
pub fn copy_flows(to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(root().join("flows")).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
        }
    }
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

/// The prefixes of every variable `fixbot serve` reads.
const SERVE_VARIABLES: &[&str] = &["TELEGRAM_", "DISCORD_", "FIXBOT_"];

/// Starts `fixbot serve --store STORE ARGS…` with only the fixbot variables
/// given: whatever the surrounding environment holds, only the fakes are reached.
pub fn spawn_serve(store: &str, args: &[&str], platform: &[(&str, &str)]) -> Server {
    let log = tempfile::NamedTempFile::new().expect("a temporary file for the server's log");
    let mut command = Command::new(env!("CARGO_BIN_EXE_fixbot"));
    command.args(["serve", "--store", store]).args(args).current_dir(root()).stdout(Stdio::null());
    // Servers of tests running at once must not fight over the default port.
    if !args.contains(&"--listen") {
        command.args(["--listen", "127.0.0.1:0"]);
    }
    command.stderr(log.reopen().expect("the log file opens again"));
    for (name, _) in std::env::vars() {
        if SERVE_VARIABLES.iter().any(|prefix| name.starts_with(prefix)) {
            command.env_remove(name);
        }
    }
    // The log is read as text when a test fails, so without colour codes.
    command.env("NO_COLOR", "1").envs(platform.iter().copied());
    Server { child: command.spawn().expect("the fixbot binary runs"), log }
}

/// A running `fixbot serve`. Dropping it kills it, so a failing test leaves no
/// server behind that keeps reconnecting to a fake that is gone; when the test
/// is panicking, the server's log is printed with the failure.
pub struct Server {
    child: std::process::Child,
    log: tempfile::NamedTempFile,
}

impl std::ops::Deref for Server {
    type Target = std::process::Child;

    fn deref(&self) -> &Self::Target {
        &self.child
    }
}

impl std::ops::DerefMut for Server {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.child
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.log.path()).unwrap_or_default();
            eprintln!("--- log of fixbot serve (pid {}) ---\n{log}--- end of log ---", self.child.id());
        }
    }
}

/// A free port on 127.0.0.1, for a server to listen on.
pub fn free_address() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port on 127.0.0.1");
    listener.local_addr().expect("a bound address")
}

impl Server {
    /// The log written so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// Sends `signal` (e.g. `TERM`, `HUP`) to the server.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill").args([&format!("-{signal}"), &self.child.id().to_string()]).status();
        assert!(status.is_ok_and(|status| status.success()), "kill -{signal} failed");
    }
}

/// Forwards TCP connections from 127.0.0.1 to `target` until dropped;
/// dropping it cuts every connection. It can also cut connections at
/// random, as a flaky network does: a chunk a client sends is then dropped
/// with its connection instead of being forwarded.
pub struct TcpProxy {
    /// Where clients connect.
    pub address: std::net::SocketAddr,
    resets: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    /// Forwards from 127.0.0.1:`port` (any free port for 0) to `target`,
    /// cutting `resets_per_mille` of the chunks clients send (drawn from `seed`).
    pub async fn start(target: std::net::SocketAddr, port: u16, resets_per_mille: u64, seed: u64) -> TcpProxy {
        use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("a port for the proxy");
        let address = listener.local_addr().expect("a bound address");
        let resets = std::sync::Arc::new(AtomicUsize::new(0));
        let draws = std::sync::Arc::new(AtomicU64::new(seed | 1));
        let counted = resets.clone();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((inbound, _)) = listener.accept().await {
                let (resets, draws) = (counted.clone(), draws.clone());
                connections.spawn(async move {
                    let Ok(outbound) = tokio::net::TcpStream::connect(target).await else { return };
                    let (mut client_reads, mut client_writes) = inbound.into_split();
                    let (mut server_reads, mut server_writes) = outbound.into_split();
                    let back = tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut server_reads, &mut client_writes).await;
                    });
                    let mut buffer = vec![0; 64 * 1024];
                    while let Ok(read) = client_reads.read(&mut buffer).await {
                        // A Weyl sequence through a multiplicative hash: cheap and spread.
                        let step = draws.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed);
                        let draw = step.wrapping_mul(0x2545_f491_4f6c_dd1d);
                        if read == 0 || (draw >> 32) % 1000 < resets_per_mille {
                            if read > 0 {
                                resets.fetch_add(1, Ordering::Relaxed);
                            }
                            break;
                        }
                        if server_writes.write_all(&buffer[..read]).await.is_err() {
                            break;
                        }
                    }
                    back.abort();
                });
            }
        });
        TcpProxy { address, resets, task }
    }

    /// Connections cut on purpose so far.
    pub fn resets(&self) -> usize {
        self.resets.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        // Aborting the accept loop drops the JoinSet, which aborts every forward.
        self.task.abort();
    }
}
