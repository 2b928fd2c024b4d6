//! The server's settings: a YAML file (`--config`), environment variables
//! over it, command-line flags over both. Secrets come only from the
//! environment, or from files it names (`*_FILE`, for Docker and Kubernetes
//! secrets), never from the file or the command line. Every key is listed in
//! `deploy/fixbot.yaml` and every variable in `deploy/fixbot.env.example`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use std::num::NonZeroU32;

use fixbot_core::flood::RateLimit;
use fixbot_core::text::parse_duration;
use fixbot_discord::{DiscordConfig, ShardRange};
use fixbot_telegram::TelegramConfig;
use fixbot_web::WebConfig;
use serde::Deserialize;

/// Where settings are read from: a variable's value by name. The process
/// environment in the server, a map in tests.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The settings given on the command line (`fixbot serve`).
#[derive(Debug, Default, clap::Args)]
pub struct Flags {
    /// A YAML settings file (see deploy/fixbot.yaml).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory holding the flow files [default: ./flows, else the built-in flows].
    #[arg(long, value_name = "DIR")]
    pub flows: Option<PathBuf>,
    /// Where cases are kept: `sqlite:PATH`, `postgres://…` or `memory:` [default: sqlite:fixbot.db].
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
    /// The HTTP listener: health, readiness, metrics, the Telegram webhook [default: 0.0.0.0:8080].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// The Discord shards this instance runs, e.g. `0-1/4` (shards 0 and 1 of 4) or `2/4`.
    #[arg(long, value_name = "RANGE")]
    pub shards: Option<String>,
    /// How log lines look: `human` or `json` [default: human].
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<String>,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One readable line per event.
    Human,
    /// One JSON object per line, for log collectors.
    Json,
}

/// How the Telegram front-end takes updates.
#[derive(Debug, Clone)]
pub enum Updates {
    /// Long polling: simplest, one instance per bot.
    Polling,
    /// Telegram POSTs to `url` with `secret`: any number of instances.
    Webhook {
        /// The public HTTPS address Telegram calls.
        url: url::Url,
        /// Checked on every request.
        secret: String,
    },
}

/// Everything `fixbot serve` runs with.
#[derive(Debug)]
pub struct Settings {
    /// The flows directory; `None` finds `./flows` or the built-in flows.
    pub flows: Option<PathBuf>,
    /// The store URL.
    pub store: String,
    /// The HTTP listener's address.
    pub listen: String,
    /// How log lines look.
    pub log_format: LogFormat,
    /// Seconds without a message after which a case closes.
    pub idle_timeout: i64,
    /// Seconds outcome records are kept.
    pub retention: i64,
    /// How long a stop may take to finish the messages in flight.
    pub shutdown_timeout: Duration,
    /// Whether edits to the flow files are picked up without SIGHUP.
    pub watch_flows: bool,
    /// How fast one person may write; `None` for no limit.
    pub rate_limit: Option<RateLimit>,
    /// Bytes of a message that are read for diagnosis; the rest is cut with a notice.
    pub max_message_bytes: usize,
    /// The Telegram front-end, when its token is set.
    pub telegram: Option<(TelegramConfig, Updates)>,
    /// The Discord front-end, when its token is set.
    pub discord: Option<DiscordConfig>,
    /// The web chat, when enabled.
    pub web: Option<WebConfig>,
    /// Where cases handed to a person go.
    pub staff: StaffSettings,
    /// Every secret value, for scrubbing them from logs and errors.
    pub secrets: Vec<String>,
}

/// The staff desks: where a case goes when it is handed to a person. The
/// Discord channel and Telegram chat are also in the front-ends' settings.
#[derive(Debug, Default)]
pub struct StaffSettings {
    /// A Discord channel: a thread per case.
    pub discord_channel: Option<u64>,
    /// A Telegram group: a topic per case in a forum, reply chains otherwise.
    pub telegram_chat: Option<i64>,
    /// A help desk's webhook and the secret both directions carry.
    pub webhook: Option<(url::Url, String)>,
}

impl StaffSettings {
    /// Whether any desk is configured: escalated cases then stay with staff.
    pub fn any(&self) -> bool {
        self.discord_channel.is_some() || self.telegram_chat.is_some() || self.webhook.is_some()
    }
}

/// The settings file, every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    flows: Option<PathBuf>,
    store: Option<String>,
    listen: Option<String>,
    log_format: Option<String>,
    idle_timeout: Option<String>,
    retention: Option<String>,
    shutdown_timeout: Option<String>,
    watch_flows: Option<bool>,
    rate_limit_burst: Option<u32>,
    rate_limit_per_minute: Option<u32>,
    max_message_bytes: Option<usize>,
    #[serde(default)]
    telegram: TelegramFile,
    #[serde(default)]
    discord: DiscordFile,
    #[serde(default)]
    web: WebFile,
    #[serde(default)]
    staff: StaffFile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TelegramFile {
    api_url: Option<String>,
    webhook_url: Option<String>,
    messages_per_second: Option<u32>,
    request_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StaffFile {
    discord_channel: Option<u64>,
    discord_roles: Option<Vec<u64>>,
    telegram_chat: Option<i64>,
    webhook_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DiscordFile {
    api_url: Option<String>,
    guild_ids: Option<Vec<u64>>,
    help_channels: Option<Vec<u64>>,
    threads: Option<bool>,
    shards: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebFile {
    enabled: Option<bool>,
    title: Option<String>,
    accent_colour: Option<String>,
    allowed_origins: Option<Vec<String>>,
}

/// Where one value came from, for error messages.
struct Given {
    value: String,
    origin: String,
}

/// Picks each value from the flag, the variable or the file, in that order.
struct Layers<'a> {
    env: Env<'a>,
    file_name: String,
}

impl Layers<'_> {
    /// The first of `flag`, `$variable` and the file's `key` that is set.
    fn pick(&self, flag: Option<String>, variable: &str, file: Option<String>, key: &str) -> Option<Given> {
        let named = |value: String, origin: String| Some(Given { value, origin });
        if let Some(value) = flag {
            return named(value, format!("--{}", key.rsplit('.').next().unwrap_or(key).replace('_', "-")));
        }
        if let Some(value) = variable_value(self.env, variable) {
            return named(value, variable.to_owned());
        }
        file.and_then(|value| named(value, format!("{}: {key}", self.file_name)))
    }

    /// Like [`Layers::pick`], parsed; `what` says what a good value looks like.
    fn parse<T>(
        &self,
        picked: Option<Given>,
        what: &str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> anyhow::Result<Option<T>> {
        picked
            .map(|given| {
                parse(given.value.trim()).with_context(|| format!("{} `{}` is not {what}", given.origin, given.value))
            })
            .transpose()
    }

    /// Like [`Layers::parse`] where the parser says what is wrong.
    fn parse_or_say<T, E: std::fmt::Display>(
        &self,
        picked: Option<Given>,
        parse: impl Fn(&str) -> Result<T, E>,
    ) -> anyhow::Result<Option<T>> {
        picked
            .map(|given| {
                parse(given.value.trim())
                    .map_err(|error| anyhow::anyhow!("{} `{}`: {error}", given.origin, given.value))
            })
            .transpose()
    }
}

/// A variable's trimmed value; unset and blank are the same.
fn variable_value(env: Env<'_>, name: &str) -> Option<String> {
    env(name).map(|value| value.trim().to_owned()).filter(|value| !value.is_empty())
}

/// A secret from `$name`, or from the file `$name_FILE` names.
fn secret(env: Env<'_>, name: &str) -> anyhow::Result<Option<String>> {
    let file_variable = format!("{name}_FILE");
    match (variable_value(env, name), variable_value(env, &file_variable)) {
        (Some(_), Some(_)) => bail!("set {name} or {file_variable}, not both"),
        (Some(value), None) => Ok(Some(value)),
        (None, Some(path)) => {
            let value = std::fs::read_to_string(&path)
                .with_context(|| format!("{file_variable}: cannot read `{path}`"))?
                .trim()
                .to_owned();
            if value.is_empty() {
                bail!("{file_variable}: `{path}` is empty");
            }
            Ok(Some(value))
        }
        (None, None) => Ok(None),
    }
}

fn duration_seconds(text: &str) -> Option<i64> {
    parse_duration(text)
}

fn url(text: &str) -> Option<url::Url> {
    url::Url::parse(text).ok()
}

fn boolean(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// A comma-separated list of Discord ids.
fn ids(text: &str) -> Option<Vec<u64>> {
    text.split(',').map(str::trim).filter(|id| !id.is_empty()).map(|id| id.parse().ok()).collect()
}

fn join(ids: Option<Vec<u64>>) -> Option<String> {
    ids.map(|ids| ids.iter().map(u64::to_string).collect::<Vec<_>>().join(","))
}

impl Settings {
    /// Reads the settings file named by `--config` (if any) and layers the
    /// environment and the flags over it.
    pub fn resolve(flags: Flags, env: Env<'_>) -> anyhow::Result<Settings> {
        let (file, file_name) = match &flags.config {
            Some(path) => (read_file(path)?, path.display().to_string()),
            None => (File::default(), "the settings file".to_owned()),
        };
        let layers = Layers { env, file_name };
        let mut secrets = Vec::new();

        let store = match flags.store {
            Some(store) => Some(store),
            None => secret(env, "FIXBOT_STORE")?.or(file.store),
        }
        .unwrap_or_else(|| "sqlite:fixbot.db".to_owned());
        if let Some(password) = store_password(&store) {
            secrets.push(password);
        }
        let flows = flags.flows.or_else(|| variable_value(env, "FIXBOT_FLOWS").map(PathBuf::from)).or(file.flows);
        let listen = layers
            .pick(flags.listen, "FIXBOT_LISTEN", file.listen, "listen")
            .map_or_else(|| "0.0.0.0:8080".to_owned(), |given| given.value);
        let log_format = layers
            .parse(
                layers.pick(flags.log_format, "FIXBOT_LOG_FORMAT", file.log_format, "log_format"),
                "`human` or `json`",
                |text| match text {
                    "human" => Some(LogFormat::Human),
                    "json" => Some(LogFormat::Json),
                    _ => None,
                },
            )?
            .unwrap_or(LogFormat::Human);
        let duration = |variable: &str, value: Option<String>, key: &str, default: &str| {
            let picked = layers.pick(None, variable, value, key);
            let parsed = layers.parse(picked, "a duration like 90s, 30m, 24h or 90d", duration_seconds)?;
            anyhow::Ok(parsed.unwrap_or_else(|| duration_seconds(default).unwrap_or(0)))
        };
        let idle_timeout = duration("FIXBOT_IDLE_TIMEOUT", file.idle_timeout, "idle_timeout", "24h")?;
        let retention = duration("FIXBOT_RETENTION", file.retention, "retention", "90d")?;
        let shutdown_timeout = duration("FIXBOT_SHUTDOWN_TIMEOUT", file.shutdown_timeout, "shutdown_timeout", "20s")?;
        let watch_flows = layers
            .parse(
                layers.pick(None, "FIXBOT_WATCH_FLOWS", file.watch_flows.map(|on| on.to_string()), "watch_flows"),
                "true or false",
                boolean,
            )?
            .unwrap_or(true);
        let count = |variable: &str, value: Option<u64>, key: &str, default: u32| {
            let picked = layers.pick(None, variable, value.map(|value| value.to_string()), key);
            let parsed = layers.parse(picked, "a whole number, 0 for no limit", |text| text.parse::<u32>().ok())?;
            anyhow::Ok(parsed.unwrap_or(default))
        };
        let burst = count("FIXBOT_RATE_LIMIT_BURST", file.rate_limit_burst.map(u64::from), "rate_limit_burst", 10)?;
        let per_minute = count(
            "FIXBOT_RATE_LIMIT_PER_MINUTE",
            file.rate_limit_per_minute.map(u64::from),
            "rate_limit_per_minute",
            30,
        )?;
        let rate_limit = match (NonZeroU32::new(burst), NonZeroU32::new(per_minute)) {
            (Some(burst), Some(per_minute)) => Some(RateLimit { burst, per_minute }),
            _ => None,
        };
        let max_message_bytes = layers
            .parse(
                layers.pick(
                    None,
                    "FIXBOT_MAX_MESSAGE_BYTES",
                    file.max_message_bytes.map(|bytes| bytes.to_string()),
                    "max_message_bytes",
                ),
                "a number of bytes from 1024 to 16777216",
                |text| text.parse::<usize>().ok().filter(|bytes| (1024..=16 << 20).contains(bytes)),
            )?
            .unwrap_or(64 * 1024);

        let staff = file.staff;
        let discord_channel = layers.parse(
            layers.pick(
                None,
                "FIXBOT_STAFF_DISCORD_CHANNEL",
                staff.discord_channel.map(|id| id.to_string()),
                "staff.discord_channel",
            ),
            "a Discord channel id",
            |text| text.parse::<u64>().ok().filter(|id| *id != 0),
        )?;
        let discord_roles = layers.parse(
            layers.pick(None, "FIXBOT_STAFF_DISCORD_ROLES", join(staff.discord_roles), "staff.discord_roles"),
            "a comma-separated list of role ids",
            ids,
        )?;
        let telegram_chat = layers.parse(
            layers.pick(
                None,
                "FIXBOT_STAFF_TELEGRAM_CHAT",
                staff.telegram_chat.map(|id| id.to_string()),
                "staff.telegram_chat",
            ),
            "a Telegram chat id like -1001234567890",
            |text| text.parse::<i64>().ok().filter(|id| *id != 0),
        )?;
        let webhook_url = layers.parse(
            layers.pick(None, "FIXBOT_STAFF_WEBHOOK_URL", staff.webhook_url, "staff.webhook_url"),
            "an http:// or https:// URL",
            |text| url(text).filter(|url| matches!(url.scheme(), "http" | "https")),
        )?;
        let webhook = match webhook_url {
            None => None,
            Some(url) => {
                let secret = secret(env, "FIXBOT_STAFF_WEBHOOK_SECRET")?
                    .context("FIXBOT_STAFF_WEBHOOK_SECRET must be set with a staff webhook URL")?;
                secrets.push(secret.clone());
                Some((url, secret))
            }
        };

        let telegram = match secret(env, "TELEGRAM_BOT_TOKEN")? {
            None => None,
            Some(token) => {
                secrets.push(token.clone());
                let telegram = file.telegram;
                let api_url = layers.parse(
                    layers.pick(None, "TELEGRAM_API_URL", telegram.api_url, "telegram.api_url"),
                    "a URL",
                    url,
                )?;
                let rate = layers
                    .parse(
                        layers.pick(
                            None,
                            "TELEGRAM_MESSAGES_PER_SECOND",
                            telegram.messages_per_second.map(|rate| rate.to_string()),
                            "telegram.messages_per_second",
                        ),
                        "a number from 1 to 1000 (up to 1000000 to measure fixbot itself)",
                        |text| text.parse().ok().filter(|rate| (1..=1_000_000).contains(rate)),
                    )?
                    .unwrap_or(fixbot_telegram::DEFAULT_MESSAGES_PER_SECOND);
                let webhook = layers.parse(
                    layers.pick(None, "TELEGRAM_WEBHOOK_URL", telegram.webhook_url, "telegram.webhook_url"),
                    "a URL",
                    url,
                )?;
                let updates = match webhook {
                    None => Updates::Polling,
                    Some(url) => {
                        let secret = secret(env, "TELEGRAM_WEBHOOK_SECRET")?
                            .context("TELEGRAM_WEBHOOK_SECRET must be set with a webhook URL")?;
                        if !fixbot_telegram::valid_secret(&secret) {
                            bail!("TELEGRAM_WEBHOOK_SECRET must be 1-256 characters of A-Z, a-z, 0-9, _ and -");
                        }
                        secrets.push(secret.clone());
                        Updates::Webhook { url, secret }
                    }
                };
                let request_timeout = layers
                    .parse(
                        layers.pick(
                            None,
                            "TELEGRAM_REQUEST_TIMEOUT",
                            telegram.request_timeout,
                            "telegram.request_timeout",
                        ),
                        "a duration like 10s",
                        duration_seconds,
                    )?
                    .map_or(fixbot_telegram::DEFAULT_REQUEST_TIMEOUT, |seconds| {
                        Duration::from_secs(seconds.unsigned_abs())
                    });
                let config = TelegramConfig {
                    api_url,
                    messages_per_second: rate,
                    request_timeout,
                    staff_chat: telegram_chat,
                    ..TelegramConfig::new(token)
                };
                Some((config, updates))
            }
        };

        let discord = match secret(env, "DISCORD_BOT_TOKEN")? {
            None => None,
            Some(token) => {
                secrets.push(token.clone());
                let discord = file.discord;
                let api_url = layers.parse(
                    layers.pick(None, "DISCORD_API_URL", discord.api_url, "discord.api_url"),
                    "a URL",
                    url,
                )?;
                let id_list = |variable: &str, value: Option<Vec<u64>>, key: &str| {
                    layers.parse(layers.pick(None, variable, join(value), key), "a comma-separated list of ids", ids)
                };
                let guild_ids = id_list("DISCORD_GUILD_IDS", discord.guild_ids, "discord.guild_ids")?;
                let help_channels = id_list("DISCORD_HELP_CHANNELS", discord.help_channels, "discord.help_channels")?;
                let threads = layers.parse(
                    layers.pick(None, "DISCORD_THREADS", discord.threads.map(|on| on.to_string()), "discord.threads"),
                    "true or false",
                    boolean,
                )?;
                let shards = layers.parse_or_say(
                    layers.pick(flags.shards, "DISCORD_SHARDS", discord.shards, "discord.shards"),
                    str::parse::<ShardRange>,
                )?;
                Some(DiscordConfig {
                    token,
                    api_url: api_url.map(|url| url.to_string()),
                    guild_ids: guild_ids.unwrap_or_default(),
                    help_channels: help_channels.unwrap_or_default(),
                    threads: threads.unwrap_or(false),
                    shards,
                    staff_channel: discord_channel,
                    staff_roles: discord_roles.clone().unwrap_or_default(),
                    ..DiscordConfig::default()
                })
            }
        };
        if discord_roles.is_some() && discord.is_none() {
            bail!("staff.discord_roles needs the Discord front-end: set DISCORD_BOT_TOKEN");
        }
        if discord_channel.is_some() && discord.is_none() {
            bail!("staff.discord_channel needs the Discord front-end: set DISCORD_BOT_TOKEN");
        }
        if telegram_chat.is_some() && telegram.is_none() {
            bail!("staff.telegram_chat needs the Telegram front-end: set TELEGRAM_BOT_TOKEN");
        }

        let web = file.web;
        let enabled = layers.parse(
            layers.pick(None, "FIXBOT_WEB_ENABLED", web.enabled.map(|on| on.to_string()), "web.enabled"),
            "true or false",
            boolean,
        )?;
        let web = match enabled {
            Some(true) => {
                let title = layers.pick(None, "FIXBOT_WEB_TITLE", web.title, "web.title").map(|given| given.value);
                let accent_colour = layers.parse(
                    layers.pick(None, "FIXBOT_WEB_ACCENT_COLOUR", web.accent_colour, "web.accent_colour"),
                    "a colour like #2457a6",
                    |text| fixbot_web::valid_colour(text).then(|| text.to_owned()),
                )?;
                let allowed_origins = layers.parse(
                    layers.pick(
                        None,
                        "FIXBOT_WEB_ALLOWED_ORIGINS",
                        web.allowed_origins.map(|origins| origins.join(",")),
                        "web.allowed_origins",
                    ),
                    "a comma-separated list of origins like https://intranet.example",
                    |text| {
                        let origins = text.split(',').map(str::trim).filter(|origin| !origin.is_empty());
                        origins.map(|origin| fixbot_web::valid_origin(origin).then(|| origin.to_owned())).collect()
                    },
                )?;
                let defaults = WebConfig::default();
                Some(WebConfig {
                    title: title.filter(|title| !title.is_empty()).unwrap_or(defaults.title.clone()),
                    accent_colour: accent_colour.unwrap_or(defaults.accent_colour.clone()),
                    allowed_origins: allowed_origins.unwrap_or_default(),
                    ..defaults
                })
            }
            _ => None,
        };

        Ok(Settings {
            flows,
            store,
            listen,
            log_format,
            idle_timeout,
            retention,
            shutdown_timeout: Duration::from_secs(shutdown_timeout.unsigned_abs()),
            watch_flows,
            rate_limit,
            max_message_bytes,
            telegram,
            discord,
            web,
            staff: StaffSettings { discord_channel, telegram_chat, webhook },
            secrets,
        })
    }
}

/// Reads and parses the settings file; unknown keys are errors, with their line.
fn read_file(path: &Path) -> anyhow::Result<File> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read the settings file {}", path.display()))?;
    fixbot_core::yaml::from_str(&text)
        .map_err(|error| anyhow::anyhow!("{}:{}: {}", path.display(), error.line, error.message))
}

/// The password in a store URL, if it has one.
fn store_password(store: &str) -> Option<String> {
    let parsed = url::Url::parse(store).ok()?;
    parsed.password().filter(|password| password.len() >= 4).map(str::to_owned)
}

/// The store URL for commands other than `serve`: the flag, else
/// `FIXBOT_STORE` (or the file `FIXBOT_STORE_FILE` names), else the default.
pub fn store_url(flag: Option<String>, env: Env<'_>) -> anyhow::Result<String> {
    match flag {
        Some(store) => Ok(store),
        None => Ok(secret(env, "FIXBOT_STORE")?.unwrap_or_else(|| "sqlite:fixbot.db".to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn resolve(flags: Flags, variables: &[(&str, &str)]) -> anyhow::Result<Settings> {
        let map: HashMap<String, String> = variables.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Settings::resolve(flags, &|name| map.get(name).cloned())
    }

    fn file(text: &str) -> (tempfile::NamedTempFile, Flags) {
        use std::io::Write as _;
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(text.as_bytes()).unwrap();
        let flags = Flags { config: Some(file.path().to_owned()), ..Flags::default() };
        (file, flags)
    }

    #[test]
    fn defaults_with_nothing_set() {
        let settings = resolve(Flags::default(), &[]).unwrap();
        assert_eq!(settings.store, "sqlite:fixbot.db");
        assert_eq!(settings.listen, "0.0.0.0:8080");
        assert_eq!(settings.idle_timeout, 24 * 3600);
        assert_eq!(settings.retention, 90 * 86_400);
        assert_eq!(settings.shutdown_timeout, Duration::from_secs(20));
        assert!(settings.watch_flows && settings.telegram.is_none() && settings.discord.is_none());
        let limit = settings.rate_limit.unwrap();
        assert_eq!((limit.burst.get(), limit.per_minute.get(), settings.max_message_bytes), (10, 30, 65_536));
        let unlimited = resolve(Flags::default(), &[("FIXBOT_RATE_LIMIT_PER_MINUTE", "0")]).unwrap();
        assert!(unlimited.rate_limit.is_none(), "0 turns the limit off");
        assert_eq!(settings.log_format, LogFormat::Human);
    }

    #[test]
    fn flags_beat_variables_beat_the_file() {
        let (_file, mut flags) =
            file("listen: 127.0.0.1:1\nidle_timeout: 1h\nretention: 7d\ntelegram:\n  messages_per_second: 100\n");
        flags.listen = Some("127.0.0.1:3".into());
        let settings = resolve(
            flags,
            &[("FIXBOT_LISTEN", "127.0.0.1:2"), ("FIXBOT_IDLE_TIMEOUT", "30m"), ("TELEGRAM_BOT_TOKEN", "123:abcdefgh")],
        )
        .unwrap();
        assert_eq!(settings.listen, "127.0.0.1:3", "the flag wins");
        assert_eq!(settings.idle_timeout, 1800, "the variable beats the file");
        assert_eq!(settings.retention, 7 * 86_400, "the file beats the default");
        assert_eq!(settings.telegram.unwrap().0.messages_per_second, 100);
    }

    #[test]
    fn secrets_come_from_variables_or_files_and_are_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "987:from-a-file\n").unwrap();
        let path = path.display().to_string();
        let settings = resolve(
            Flags::default(),
            &[
                ("DISCORD_BOT_TOKEN_FILE", &path),
                ("TELEGRAM_BOT_TOKEN", "123:abcdefgh"),
                ("FIXBOT_STORE", "postgres://fixbot:hunter22@db/fixbot"),
            ],
        )
        .unwrap();
        assert_eq!(settings.discord.unwrap().token, "987:from-a-file");
        assert_eq!(settings.store, "postgres://fixbot:hunter22@db/fixbot");
        for secret in ["987:from-a-file", "123:abcdefgh", "hunter22"] {
            assert!(settings.secrets.iter().any(|known| known == secret), "{secret} is scrubbed from logs");
        }
        let both = resolve(Flags::default(), &[("DISCORD_BOT_TOKEN", "a"), ("DISCORD_BOT_TOKEN_FILE", &path)]);
        assert!(both.unwrap_err().to_string().contains("not both"));
        let missing = resolve(Flags::default(), &[("DISCORD_BOT_TOKEN_FILE", "/nonexistent/token")]);
        assert!(missing.unwrap_err().to_string().contains("cannot read"));
    }

    #[test]
    fn bad_values_name_where_they_came_from() {
        let (_file, flags) = file("retention: forever\n");
        let error = resolve(flags, &[]).unwrap_err().to_string();
        assert!(error.contains(": retention `forever` is not a duration"), "{error}");
        let error = resolve(Flags::default(), &[("FIXBOT_LOG_FORMAT", "xml")]).unwrap_err().to_string();
        assert!(error.contains("FIXBOT_LOG_FORMAT `xml` is not `human` or `json`"), "{error}");
        let error =
            resolve(Flags::default(), &[("TELEGRAM_BOT_TOKEN", "1:abcdefgh"), ("TELEGRAM_MESSAGES_PER_SECOND", "0")])
                .unwrap_err()
                .to_string();
        assert!(error.contains("is not a number from 1 to 1000"), "{error}");
        let error =
            resolve(Flags { shards: Some("5/4".into()), ..Flags::default() }, &[("DISCORD_BOT_TOKEN", "abcdefgh")])
                .unwrap_err()
                .to_string();
        assert!(error.contains("--shards `5/4`: there is no shard 5 among 4"), "{error}");
    }

    /// The settings files shipped in `deploy/` are read by this parser, not
    /// by a copy of its rules: the example with every key uncommented, and
    /// the one inside the Kubernetes ConfigMap.
    #[test]
    fn the_shipped_settings_files_are_valid() {
        let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
        let example = std::fs::read_to_string(deploy.join("fixbot.yaml")).unwrap();
        let every_key: String = example
            .lines()
            .map(|line| {
                // `# key: value` lines are the commented keys; other comments are prose.
                let is_key = |rest: &&str| {
                    rest.trim_start().split_once(':').is_some_and(|(key, _)| {
                        !key.is_empty() && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                    })
                };
                line.strip_prefix("# ").filter(is_key).unwrap_or(line)
            })
            .map(|line| format!("{line}\n"))
            .collect();
        assert!(every_key.contains("\n  shards: null"), "the example lists every key, commented:\n{every_key}");
        #[derive(Deserialize)]
        struct ConfigMap {
            data: std::collections::BTreeMap<String, String>,
        }
        let manifest = std::fs::read_to_string(deploy.join("kubernetes/configmap.yaml")).unwrap();
        let configmap: ConfigMap = fixbot_core::yaml::from_str(&manifest).unwrap();
        for (name, text) in [("fixbot.yaml", every_key), ("configmap.yaml", configmap.data["fixbot.yaml"].clone())] {
            let (_file, flags) = file(&text);
            let settings = resolve(
                flags,
                &[
                    ("TELEGRAM_BOT_TOKEN", "1:abcdefgh"),
                    ("TELEGRAM_WEBHOOK_SECRET", "s"),
                    ("DISCORD_BOT_TOKEN", "abcdefgh"),
                ],
            );
            assert!(settings.is_ok(), "{name}: {:#}", settings.unwrap_err());
        }
    }

    #[test]
    fn the_web_chat_is_off_until_enabled_and_its_looks_are_checked() {
        assert!(resolve(Flags::default(), &[]).unwrap().web.is_none());
        let (_file, flags) = file(
            "web:\n  enabled: true\n  title: IT help\n  accent_colour: '#0a7'\n  allowed_origins: [https://intranet.example]\n",
        );
        let web = resolve(flags, &[]).unwrap().web.unwrap();
        assert_eq!((web.title.as_str(), web.accent_colour.as_str()), ("IT help", "#0a7"));
        assert_eq!(web.allowed_origins, ["https://intranet.example"]);
        let error = resolve(Flags::default(), &[("FIXBOT_WEB_ENABLED", "yes"), ("FIXBOT_WEB_ACCENT_COLOUR", "red;}")])
            .unwrap_err()
            .to_string();
        assert!(error.contains("FIXBOT_WEB_ACCENT_COLOUR `red;}` is not a colour"), "{error}");
        let error = resolve(
            Flags::default(),
            &[("FIXBOT_WEB_ENABLED", "1"), ("FIXBOT_WEB_ALLOWED_ORIGINS", "https://a.example/")],
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("is not a comma-separated list of origins"), "{error}");
    }

    #[test]
    fn staff_desks_come_from_the_file_and_the_environment() {
        let (_file, flags) = file("staff:\n  discord_channel: 70\n  discord_roles: [71, 72]\n  telegram_chat: -1001\n");
        let variables = [
            ("TELEGRAM_BOT_TOKEN", "1:abcdefgh"),
            ("DISCORD_BOT_TOKEN", "abcdefgh"),
            ("FIXBOT_STAFF_TELEGRAM_CHAT", "-1002"),
            ("FIXBOT_STAFF_WEBHOOK_URL", "https://desk.example.test/fixbot"),
            ("FIXBOT_STAFF_WEBHOOK_SECRET", "desk-secret"),
        ];
        let settings = resolve(flags, &variables).unwrap();
        assert_eq!(settings.staff.discord_channel, Some(70));
        assert_eq!(settings.staff.telegram_chat, Some(-1002), "the variable beats the file");
        assert_eq!(settings.telegram.unwrap().0.staff_chat, Some(-1002));
        let discord = settings.discord.unwrap();
        assert_eq!((discord.staff_channel, discord.staff_roles), (Some(70), vec![71, 72]));
        let (url, secret) = settings.staff.webhook.unwrap();
        assert_eq!((url.as_str(), secret.as_str()), ("https://desk.example.test/fixbot", "desk-secret"));
        assert!(settings.secrets.iter().any(|known| known == "desk-secret"), "scrubbed from logs");
        assert!(!resolve(Flags::default(), &[]).unwrap().staff.any());

        let no_secret = resolve(Flags::default(), &[("FIXBOT_STAFF_WEBHOOK_URL", "https://desk.example.test/")]);
        assert!(no_secret.unwrap_err().to_string().contains("FIXBOT_STAFF_WEBHOOK_SECRET"));
        let no_front = resolve(Flags::default(), &[("FIXBOT_STAFF_DISCORD_CHANNEL", "70")]);
        assert!(no_front.unwrap_err().to_string().contains("DISCORD_BOT_TOKEN"));
        let no_front = resolve(Flags::default(), &[("FIXBOT_STAFF_DISCORD_ROLES", "71")]);
        assert!(no_front.unwrap_err().to_string().contains("DISCORD_BOT_TOKEN"));
        let bad = resolve(Flags::default(), &[("FIXBOT_STAFF_TELEGRAM_CHAT", "staff")]);
        assert!(bad.unwrap_err().to_string().contains("is not a Telegram chat id"));
    }

    #[test]
    fn unknown_keys_in_the_file_are_refused_with_their_line() {
        let (file, flags) = file("store: \"memory:\"\ntelegram:\n  token: nope\n");
        let error = resolve(flags, &[]).unwrap_err().to_string();
        assert!(error.starts_with(&format!("{}:3: unknown field `token`", file.path().display())), "{error}");
    }
}
