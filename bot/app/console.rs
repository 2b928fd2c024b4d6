//! `fixbot chat`: the console front-end. Reads one message per line from
//! stdin (a terminal or a pipe), prints the bot's replies with choices as
//! `[1] label`, and answers by number or label. With a persistent store,
//! running it again with the same `--user` resumes the open case.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use fixbot_core::case::ConversationKey;
use fixbot_core::engine::{Command, EngineConfig, Input, Transition};
use fixbot_core::session::Session;
use fixbot_core::text::sanitize;
use fixbot_store::AnyStore;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};

use crate::flows;

/// Longest line read from stdin; the rest of a longer line is dropped
/// rather than held in memory. The engine reads far less of it anyway.
const MAX_LINE_BYTES: usize = 4 << 20;
/// Characters of a piped line echoed back.
const ECHO_CHARS: usize = 120;

/// Arguments of `fixbot chat`.
#[derive(Debug, clap::Args)]
pub struct ChatArgs {
    /// Directory holding the flow files.
    #[arg(long, value_name = "DIR")]
    flows: Option<PathBuf>,
    /// Where cases are kept: `memory:` (default) or `sqlite:PATH`.
    #[arg(long, value_name = "URL", default_value = "memory:")]
    store: String,
    /// Who is chatting; the same name resumes the same case.
    #[arg(long, value_name = "NAME")]
    user: Option<String>,
}

/// Runs the chat until stdin closes.
pub async fn run(args: ChatArgs) -> anyhow::Result<()> {
    let flows = flows::load_for_command(args.flows.as_deref())?;
    let store = AnyStore::open(&args.store).await?;
    let session = Session::new(store, flows, EngineConfig::default());
    let user = args.user.or_else(|| std::env::var("USER").ok()).unwrap_or_else(|| "local".to_owned());
    let key = ConversationKey::new("console", "local", "", &user);
    let interactive = std::io::stdin().is_terminal();
    let mut stdout = tokio::io::stdout();

    let opening = session.handle(&key, Input::Command(Command::Start), now()).await?;
    stdout.write_all(render(&opening).as_bytes()).await?;

    let mut stdin = BufReader::new(tokio::io::stdin());
    let mut line = Vec::new();
    loop {
        if interactive {
            stdout.write_all(b"> ").await?;
        }
        stdout.flush().await?;
        line.clear();
        let read = read_line(&mut stdin, &mut line).await.context("reading stdin")?;
        if read == 0 {
            break;
        }
        let (text, lossy) = decode(&line);
        if !interactive {
            // Echo piped input so the output reads as a transcript; cleaned
            // and shortened, since the echo is the bot's output too.
            stdout.write_all(format!("> {}\n", echo(&text)).as_bytes()).await?;
        }
        if lossy {
            let note = session.flows().bot().messages.unreadable_bytes.render().to_plain();
            stdout.write_all(format!("{note}\n").as_bytes()).await?;
        }
        let transition = session.handle(&key, Input::Text(text), now()).await?;
        stdout.write_all(render(&transition).as_bytes()).await?;
    }
    stdout.flush().await?;
    Ok(())
}

/// Reads one line, keeping at most [`MAX_LINE_BYTES`] of it.
async fn read_line(stdin: &mut BufReader<tokio::io::Stdin>, line: &mut Vec<u8>) -> std::io::Result<usize> {
    let mut total = 0;
    loop {
        let buffer = stdin.fill_buf().await?;
        if buffer.is_empty() {
            return Ok(total);
        }
        let (chunk, done) = match buffer.iter().position(|&byte| byte == b'\n') {
            Some(end) => (&buffer[..=end], true),
            None => (buffer, false),
        };
        let room = MAX_LINE_BYTES.saturating_sub(line.len());
        line.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let used = chunk.len();
        total += used;
        stdin.consume(used);
        if done {
            return Ok(total);
        }
    }
}

/// Decodes a line, replacing invalid UTF-8; reports whether any was replaced.
fn decode(bytes: &[u8]) -> (String, bool) {
    match String::from_utf8_lossy(bytes) {
        std::borrow::Cow::Borrowed(text) => (text.to_owned(), false),
        std::borrow::Cow::Owned(text) => (text.replace('\u{FFFD}', ""), true),
    }
}

/// The user's line as echoed: no control characters, at most one screen line.
fn echo(text: &str) -> String {
    let clean = sanitize(text).replace('\n', " ");
    match clean.char_indices().nth(ECHO_CHARS) {
        Some((cut, _)) => format!("{}…", &clean[..cut]),
        None => clean,
    }
}

fn render(transition: &Transition) -> String {
    let mut out = String::new();
    if let Some(notice) = &transition.notice {
        out.push_str(notice);
        out.push_str("\n\n");
    }
    for reply in &transition.replies {
        out.push_str(&reply.to_plain());
        out.push_str("\n\n");
    }
    out
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs() as i64)
}
