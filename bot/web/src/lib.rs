//! fixbot-web: the web front-end for internal help desks. A JSON chat API
//! (start a conversation, send a text, a choice or a command, long-poll the
//! bot's replies; documented in `openapi.yaml`) and a self-contained chat
//! page, both mounted on `fixbot serve`'s HTTP listener. Like the other
//! front-ends it holds no troubleshooting logic: every input goes to the
//! core [`Session`].

mod api;
mod cors;
mod outbox;
mod page;
mod token;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{MethodRouter, get, post};
use fixbot_core::button::ButtonCodec;
use fixbot_core::desk::Handovers;
use fixbot_core::flood::{Flood, RateLimit};
use fixbot_core::session::Session;
use fixbot_core::store::Store;

pub use outbox::{Choice, Event, Speaker};
pub use token::{TOKEN_LEN, Tokens};

/// The platform name in conversation keys, metrics and logs.
pub const PART: &str = "web";

/// The default page title.
pub const DEFAULT_TITLE: &str = "Backup help";
/// The default accent colour.
pub const DEFAULT_ACCENT: &str = "#2457a6";
/// The longest a long poll waits for a new event: below the 30-60 s idle
/// timeouts of common proxies.
pub const DEFAULT_POLL_WAIT: Duration = Duration::from_secs(25);

/// How the web front-end looks and whom it serves.
#[derive(Debug, Clone)]
pub struct WebConfig {
    /// The page's title and heading.
    pub title: String,
    /// The accent colour, `#rgb` or `#rrggbb` (see [`valid_colour`]).
    pub accent_colour: String,
    /// Origins (`https://intranet.example`) whose pages may call the API and
    /// embed the chat; the chat's own origin always may.
    pub allowed_origins: Vec<String>,
    /// The longest a long poll waits.
    pub poll_wait: Duration,
    /// New conversations a minute, from everyone together.
    pub new_conversations: RateLimit,
}

impl Default for WebConfig {
    fn default() -> WebConfig {
        WebConfig {
            title: DEFAULT_TITLE.to_owned(),
            accent_colour: DEFAULT_ACCENT.to_owned(),
            allowed_origins: Vec::new(),
            poll_wait: DEFAULT_POLL_WAIT,
            new_conversations: RateLimit {
                burst: std::num::NonZeroU32::new(60).unwrap_or(std::num::NonZeroU32::MIN),
                per_minute: std::num::NonZeroU32::new(120).unwrap_or(std::num::NonZeroU32::MIN),
            },
        }
    }
}

/// Whether `text` is a colour the page accepts: `#` and 3 or 6 hex digits.
/// Anything else could break out of the stylesheet.
pub fn valid_colour(text: &str) -> bool {
    text.strip_prefix('#')
        .is_some_and(|digits| matches!(digits.len(), 3 | 6) && digits.bytes().all(|byte| byte.is_ascii_hexdigit()))
}

/// Whether `text` is an origin as browsers send it: scheme and host, an
/// optional port, nothing else.
pub fn valid_origin(text: &str) -> bool {
    let rest = text.strip_prefix("https://").or_else(|| text.strip_prefix("http://"));
    rest.is_some_and(|host| {
        !host.is_empty() && host.bytes().all(|byte| byte.is_ascii_alphanumeric() || b".-:[]".contains(&byte))
    })
}

/// The running front-end: the session and what the web adds to it.
struct Web<S> {
    session: Arc<Session<S>>,
    codec: ButtonCodec,
    tokens: Tokens,
    /// Shared with the staff line, which adds what staff say.
    outbox: Arc<outbox::Outbox>,
    /// Where cases handed to a person go, when staff desks are configured.
    handovers: Option<Arc<Handovers<S>>>,
    /// Limits new conversations, which would otherwise sidestep the
    /// per-person limit by starting afresh.
    starts: Flood,
    config: WebConfig,
    /// Set when the server stops: long polls answer at once.
    stopping: tokio::sync::watch::Receiver<bool>,
}

type Shared<S> = Arc<Web<S>>;

/// The routes, each with its method; the OpenAPI file lists the same
/// (checked by a test). `api` routes get CORS.
fn routes<S: Store + 'static>() -> Vec<(&'static str, &'static str, bool, MethodRouter<Shared<S>>)> {
    vec![
        ("GET", "/", false, get(page::index::<S>)),
        ("GET", "/app.css", false, get(page::stylesheet::<S>)),
        ("GET", "/app.js", false, get(page::script)),
        ("GET", "/embed.js", false, get(page::embed)),
        ("GET", "/openapi.yaml", false, get(page::openapi)),
        ("POST", "/api/v1/conversations", true, post(api::start::<S>)),
        ("POST", "/api/v1/messages", true, post(api::send::<S>)),
        ("GET", "/api/v1/events", true, get(api::events::<S>)),
    ]
}

/// Every route as (method, path), for documentation checks.
pub fn paths() -> Vec<(&'static str, &'static str)> {
    routes::<fixbot_core::store::MemoryStore>().into_iter().map(|(method, path, _, _)| (method, path)).collect()
}

/// The web routes over `session`, to mount on the server's listener.
/// `codec` seals answer buttons as on the other front-ends; `secret` seals
/// conversation keys (share it between instances on one store). Long polls
/// end early once `stopping` turns true.
/// The web front-end's routes. With `handovers`, a case a visitor hands to
/// a person goes to the staff desks, and staff answers come back here.
pub fn router<S: Store + 'static>(
    session: Arc<Session<S>>,
    codec: ButtonCodec,
    secret: &[u8],
    config: WebConfig,
    stopping: tokio::sync::watch::Receiver<bool>,
    handovers: Option<Arc<Handovers<S>>>,
) -> Router {
    let outbox = Arc::new(outbox::Outbox::default());
    if let Some(handovers) = &handovers {
        // Staff answers and closes reach a web visitor through their outbox.
        handovers.add_line(PART, Arc::new(api::StaffLine { outbox: outbox.clone(), codec: codec.clone() }));
    }
    let web = Arc::new(Web {
        session,
        codec,
        tokens: Tokens::new(secret),
        outbox,
        handovers,
        starts: Flood::new(config.new_conversations),
        config,
        stopping,
    });
    let (mut pages, mut api) = (Router::new(), Router::new());
    for (_, path, is_api, route) in routes::<S>() {
        if is_api {
            api = api.route(path, route);
        } else {
            pages = pages.route(path, route);
        }
    }
    let origins = Arc::new(web.config.allowed_origins.clone());
    let api = api.layer(axum::middleware::from_fn_with_state(origins, cors::cors));
    pages.merge(api).with_state(web)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_and_origins_are_checked() {
        assert!(valid_colour("#2457a6") && valid_colour("#fff"));
        assert!(!valid_colour("red") && !valid_colour("#12345") && !valid_colour("#fff;}body{"));
        assert!(valid_origin("https://intranet.example") && valid_origin("http://127.0.0.1:8080"));
        assert!(!valid_origin("https://intranet.example/") && !valid_origin("intranet.example"));
    }

    /// Every route is in `openapi.yaml` and every path there is a route.
    #[test]
    fn the_openapi_file_lists_exactly_the_routes() {
        let spec = include_str!("../openapi.yaml");
        let mut documented = Vec::new();
        let mut path = None;
        let mut in_paths = false;
        for line in spec.lines() {
            if !line.starts_with(' ') && !line.is_empty() {
                in_paths = line.trim_end() == "paths:";
                continue;
            }
            if !in_paths {
                continue;
            }
            if let Some(name) = line.strip_prefix("  ").and_then(|rest| rest.strip_suffix(':'))
                && name.starts_with('/')
            {
                path = Some(name.to_owned());
            } else if let Some(method) = line.strip_prefix("    ").and_then(|rest| rest.strip_suffix(':'))
                && ["get", "post", "put", "patch", "delete"].contains(&method)
                && let Some(path) = &path
            {
                documented.push((method.to_ascii_uppercase(), path.clone()));
            }
        }
        let mut routed: Vec<(String, String)> =
            paths().into_iter().map(|(method, path)| (method.to_owned(), path.to_owned())).collect();
        documented.sort();
        routed.sort();
        assert_eq!(routed, documented, "bot/web/openapi.yaml and the router disagree");
    }
}
