//! Cross-origin access to the API: the chat's own origin and the configured
//! `allowed_origins` may call it, every other origin is refused outright
//! (not merely left unreadable, since a form post needs no preflight).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// How long a browser may reuse a preflight answer, in seconds.
const PREFLIGHT_MAX_AGE: &str = "600";

/// Answers preflights and adds the CORS headers for allowed origins.
pub async fn cors(State(allowed): State<Arc<Vec<String>>>, request: Request, next: Next) -> Response {
    let Some(origin) = request.headers().get(header::ORIGIN).cloned() else {
        // Not from a browser page (or a same-origin GET): nothing to check.
        return next.run(request).await;
    };
    let text = origin.to_str().unwrap_or_default();
    let same = same_origin(text, request.headers());
    if !same && !allowed.iter().any(|allowed| allowed == text) {
        let body = serde_json::json!({ "error": "This site may not use the chat API." });
        return (StatusCode::FORBIDDEN, axum::Json(body)).into_response();
    }
    let mut response = if request.method() == Method::OPTIONS {
        let mut response = StatusCode::NO_CONTENT.into_response();
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST"));
        headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("authorization, content-type"));
        headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static(PREFLIGHT_MAX_AGE));
        response
    } else {
        next.run(request).await
    };
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.append(header::VARY, HeaderValue::from_static("origin"));
    response
}

/// Whether `origin` names the host the request was sent to (directly or
/// through a proxy that says so).
fn same_origin(origin: &str, headers: &HeaderMap) -> bool {
    let Some(host) = origin.strip_prefix("https://").or_else(|| origin.strip_prefix("http://")) else {
        return false;
    };
    [header::HOST.as_str(), "x-forwarded-host"]
        .iter()
        .filter_map(|name| headers.get(*name)?.to_str().ok())
        .any(|given| given.eq_ignore_ascii_case(host))
}
