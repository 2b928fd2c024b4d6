//! The chat page and its assets, embedded in the binary: no CDN, no fonts,
//! nothing fetched from elsewhere. The page carries a strict
//! Content-Security-Policy; the title and accent colour are filled in from
//! the configuration.

use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use fixbot_core::markup::escape_html;
use fixbot_core::store::Store;

use crate::{Shared, valid_colour};

const INDEX: &str = include_str!("../assets/index.html");
const STYLESHEET: &str = include_str!("../assets/app.css");
const SCRIPT: &str = include_str!("../assets/app.js");
const EMBED: &str = include_str!("../assets/embed.js");
const OPENAPI: &str = include_str!("../openapi.yaml");

/// `GET /`: the chat page.
pub async fn index<S: Store + 'static>(State(web): State<Shared<S>>) -> Response {
    // The controls say what the bot's own buttons say, from flows/_bot.yaml.
    let flows = web.session.flows();
    let labels = &flows.bot().labels;
    let html = INDEX
        .replace("{{title}}", &escape_html(&web.config.title))
        .replace("{{restart}}", &escape_html(&labels.command_restart))
        .replace("{{human}}", &escape_html(&labels.command_human));
    // Only the configured sites may frame the page (the embed).
    let ancestors: String = web.config.allowed_origins.iter().map(|origin| format!(" {origin}")).collect();
    let policy = format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'self'{ancestors}"
    );
    let mut response = asset("text/html; charset=utf-8", html);
    let headers = response.headers_mut();
    if let Ok(policy) = HeaderValue::from_str(&policy) {
        headers.insert(header::CONTENT_SECURITY_POLICY, policy);
    }
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(
        HeaderName::from_static("permissions-policy"),
        HeaderValue::from_static("camera=(), microphone=(), geolocation=()"),
    );
    response
}

/// `GET /app.css`, in the configured accent colour.
pub async fn stylesheet<S: Store + 'static>(State(web): State<Shared<S>>) -> Response {
    let accent = &web.config.accent_colour;
    let accent = if valid_colour(accent) { accent.as_str() } else { crate::DEFAULT_ACCENT };
    asset("text/css; charset=utf-8", STYLESHEET.replace("{{accent}}", accent))
}

/// `GET /app.js`.
pub async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT.to_owned())
}

/// `GET /embed.js`: one script tag adds the chat to another page.
pub async fn embed() -> Response {
    asset("text/javascript; charset=utf-8", EMBED.to_owned())
}

/// `GET /openapi.yaml`: the API's description.
pub async fn openapi() -> Response {
    asset("application/yaml; charset=utf-8", OPENAPI.to_owned())
}

fn asset(content_type: &'static str, body: String) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
