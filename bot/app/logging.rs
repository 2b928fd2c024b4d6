//! Log lines: human-readable or JSON, on stderr, with every secret the
//! process knows scrubbed from them. The Telegram token is part of every Bot
//! API URL, so an HTTP client's error can carry it into any line; scrubbing
//! each written line, rather than trusting every call site, is what makes
//! "never a token in the logs" hold.

use std::io::Write;
use std::sync::{Arc, OnceLock};

use tracing_subscriber::fmt::MakeWriter;

use crate::config::LogFormat;

/// What secrets are replaced with.
const SCRUBBED: &str = "[redacted]";
/// Shorter values are not scrubbed: they would mangle ordinary words.
const SHORTEST_SECRET: usize = 6;

/// The secrets of this process, set once they are known.
static SECRETS: OnceLock<Scrubber> = OnceLock::new();

/// Replaces known secrets in text.
#[derive(Debug, Default, Clone)]
pub struct Scrubber {
    secrets: Arc<Vec<String>>,
}

impl Scrubber {
    /// A scrubber for `secrets`, with the forms they take in URLs and in
    /// the halves of a bot token (`123456:ABC…`: the part after the colon is
    /// what must stay hidden).
    pub fn new(secrets: &[String]) -> Scrubber {
        let mut all: Vec<String> = Vec::new();
        for secret in secrets {
            let mut forms = vec![secret.clone(), secret.replace(':', "%3A"), secret.replace(':', "%3a")];
            if let Some((_, hidden)) = secret.split_once(':') {
                forms.push(hidden.to_owned());
            }
            all.extend(forms.into_iter().filter(|form| form.len() >= SHORTEST_SECRET));
        }
        // Longest first, so a token is replaced whole before its half is.
        all.sort_by_key(|form| std::cmp::Reverse(form.len()));
        all.dedup();
        Scrubber { secrets: Arc::new(all) }
    }

    /// `text` with every secret replaced.
    pub fn scrub(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for secret in self.secrets.iter() {
            if text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), SCRUBBED);
            }
        }
        text
    }
}

/// `text` with the process's known secrets replaced, for error messages
/// printed outside the log.
pub fn scrub(text: &str) -> String {
    match SECRETS.get() {
        Some(scrubber) => scrubber.scrub(text),
        None => text.to_owned(),
    }
}

/// Starts logging to stderr at `default` level (`RUST_LOG` overrides it), in
/// `format`, with `secrets` scrubbed from every line.
pub fn init(format: LogFormat, default: &str, secrets: &[String]) {
    let scrubber = SECRETS.get_or_init(|| Scrubber::new(secrets)).clone();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let writer = ScrubbingStderr { scrubber };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer);
    // A second init (only possible in tests) keeps the first subscriber.
    let _ = match format {
        LogFormat::Human => builder.with_ansi(false).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Hands out one [`Line`] per event.
struct ScrubbingStderr {
    scrubber: Scrubber,
}

impl<'a> MakeWriter<'a> for ScrubbingStderr {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line { buffer: Vec::with_capacity(256), scrubber: self.scrubber.clone() }
    }
}

/// One event's output, held until the event is complete so that a secret
/// split across several writes is still found, then scrubbed and written.
struct Line {
    buffer: Vec<u8>,
    scrubber: Scrubber,
}

impl Write for Line {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        let text = self.scrubber.scrub(&String::from_utf8_lossy(&self.buffer));
        // Nothing sensible is left to do when stderr itself fails.
        let _ = std::io::stderr().lock().write_all(text.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_scrubbed_whole_halved_and_url_encoded() {
        let scrubber = Scrubber::new(&["123456:ABC-secret_part".to_owned(), "tiny".to_owned()]);
        let line = "GET https://api.telegram.org/bot123456:ABC-secret_part/getMe failed; \
                    encoded bot123456%3AABC-secret_part; half ABC-secret_part; tiny stays";
        let scrubbed = scrubber.scrub(line);
        assert!(!scrubbed.contains("ABC-secret_part"), "{scrubbed}");
        assert!(scrubbed.contains("/bot[redacted]/getMe"), "{scrubbed}");
        assert!(scrubbed.contains("tiny stays"), "short values are left alone: {scrubbed}");
    }
}
