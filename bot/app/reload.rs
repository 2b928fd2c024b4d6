//! Hot reload of the flows: on SIGHUP, and when the files change. A broken
//! edit is refused with every problem (file:line) in the log and on
//! `/readyz`, and the flows in use stay; cases in progress carry on by step
//! id, and the engine restarts a case whose step was removed, with a notice.
//!
//! Changes are found by looking at the files' names, sizes and modification
//! times every second rather than by inotify: that works the same on bind
//! mounts, network file systems and Kubernetes ConfigMaps (whose files are
//! swapped by renaming a symlink), costs nothing for a dozen small files, and
//! needs no dependency. An edit is loaded once the files stayed unchanged for
//! one more look, so an editor's several writes make one reload.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fixbot_core::health::Health;
use fixbot_core::metrics::metrics;
use fixbot_core::session::Session;
use fixbot_store::AnyStore;

use crate::flows::{self, Origin};

/// How often the flow files are looked at.
const LOOK_EVERY: Duration = Duration::from_secs(1);
/// The health part the flows report as.
pub const PART: &str = "flows";

/// What identifies the state of a directory of flow files.
type Fingerprint = Vec<(PathBuf, u64, Option<SystemTime>)>;

/// Reloads the flows of `origin` into `session` on SIGHUP and, with `watch`,
/// when the files change; runs until the task is dropped.
pub async fn run(origin: Origin, session: Arc<Session<AnyStore>>, health: Health, watch: bool) {
    report_loaded(&health, &session, None);
    let Origin::Dir(dir) = &origin else {
        // The built-in flows cannot change; SIGHUP only says so.
        return hangups(|| tracing::info!("the flows are built in; there is nothing to reload")).await;
    };
    let mut hangup = hangup_signal();
    let mut seen = fingerprint(dir);
    let mut pending: Option<Fingerprint> = None;
    let mut ticks = tokio::time::interval(LOOK_EVERY);
    loop {
        tokio::select! {
            _ = ticks.tick(), if watch => {
                let now = fingerprint(dir);
                if now == seen {
                    pending = None;
                } else if pending.as_ref() == Some(&now) {
                    // Unchanged since the last look: the edit is complete.
                    tracing::info!(dir = %dir.display(), "the flow files changed; reloading");
                    reload(&origin, &session, &health);
                    seen = now;
                    pending = None;
                } else {
                    pending = Some(now);
                }
            }
            Some(()) = recv(&mut hangup) => {
                tracing::info!("SIGHUP: reloading the flows");
                reload(&origin, &session, &health);
                seen = fingerprint(dir);
            }
        }
    }
}

/// Loads the flows again; on success they replace the ones in use, on
/// failure the ones in use stay and every problem is logged and reported.
pub fn reload(origin: &Origin, session: &Session<AnyStore>, health: &Health) {
    match flows::load(origin) {
        Ok(flows) => {
            session.replace_flows(Arc::new(flows));
            metrics().flow_reloads.with_label_values(&["ok"]).inc();
            report_loaded(health, session, None);
            tracing::info!(flows = session.flows().iter().len(), "flows reloaded");
        }
        Err(errors) => {
            metrics().flow_reloads.with_label_values(&["refused"]).inc();
            let problems = errors.to_string();
            tracing::error!(
                "the edited flows were refused; the flows in use stay. {} problem(s):\n{problems}",
                errors.0.len()
            );
            report_loaded(health, session, Some(&problems));
        }
    }
}

/// Sets the flows' health part: always ready (the flows in use work), with
/// the refused edit's problems when the last reload failed.
fn report_loaded(health: &Health, session: &Session<AnyStore>, refused: Option<&str>) {
    let count = session.flows().iter().len();
    metrics().flows_loaded.set(count as i64);
    let detail = match refused {
        None => format!("{count} flows loaded"),
        Some(problems) => format!("{count} flows in use; the last edit was refused: {}", problems.trim()),
    };
    health.set(PART, true, detail);
}

/// The flow files' names, sizes and modification times, sorted.
fn fingerprint(dir: &Path) -> Fingerprint {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut files: Fingerprint = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "yaml"))
        // metadata() follows symlinks, as a ConfigMap's files are.
        .filter_map(|path| {
            let metadata = std::fs::metadata(&path).ok()?;
            Some((path, metadata.len(), metadata.modified().ok()))
        })
        .collect();
    files.sort();
    files
}

#[cfg(unix)]
type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangup = Option<()>;

#[cfg(unix)]
fn hangup_signal() -> Hangup {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(signal) => Some(signal),
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGHUP; flows reload only when their files change");
            None
        }
    }
}

#[cfg(not(unix))]
fn hangup_signal() -> Hangup {
    None
}

/// The next SIGHUP; never, without a signal to listen to.
async fn recv(hangup: &mut Hangup) -> Option<()> {
    #[cfg(unix)]
    if let Some(signal) = hangup {
        return signal.recv().await;
    }
    let _ = hangup;
    std::future::pending().await
}

/// Runs `then` on every SIGHUP.
async fn hangups(then: impl Fn()) {
    let mut hangup = hangup_signal();
    while recv(&mut hangup).await.is_some() {
        then();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fingerprint_changes_with_the_yaml_files_only() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), "one").unwrap();
        let before = fingerprint(dir.path());
        std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
        assert_eq!(fingerprint(dir.path()), before, "other files do not count");
        std::fs::write(dir.path().join("a.yaml"), "one more").unwrap();
        assert_ne!(fingerprint(dir.path()), before, "a size change counts");
        assert_eq!(fingerprint(&dir.path().join("missing")), Vec::new());
    }
}
