//! The one HTTP listener of `fixbot serve`: `/healthz`, `/readyz` and
//! `/metrics` for operators, and the routes front-ends mount once they are up
//! (the Telegram webhook). It serves from the start, so probes answer while
//! the front-ends are still connecting.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use fixbot_core::health::Health;
use fixbot_core::metrics::metrics;
use fixbot_core::session::Session;
use fixbot_core::store::Store as _;
use fixbot_store::AnyStore;
use serde_json::json;
use tower::ServiceExt as _;

/// How long `/readyz` waits for the store before calling it unreachable.
const STORE_TIMEOUT: Duration = Duration::from_secs(2);

/// What the operator routes read, and the routes mounted later.
#[derive(Clone)]
pub struct Http {
    health: Health,
    session: Arc<Session<AnyStore>>,
    mounted: Arc<RwLock<Router>>,
}

impl Http {
    /// Routes over `session`'s store and the parts `health` records.
    pub fn new(health: Health, session: Arc<Session<AnyStore>>) -> Http {
        Http { health, session, mounted: Arc::new(RwLock::new(Router::new())) }
    }

    /// Adds a front-end's routes; requests to them are answered from now on
    /// (with 404 before, as for any unknown path).
    pub fn mount(&self, routes: Router) {
        let mut mounted = self.mounted.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        *mounted = std::mem::take(&mut *mounted).merge(routes);
    }

    /// The whole router, to serve on the listener.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/readyz", get(ready))
            .route("/metrics", get(render_metrics))
            .fallback(mounted)
            .with_state(self.clone())
    }
}

/// 200 while every part works and the store answers; 503 with the reasons
/// otherwise. The body lists every part either way.
async fn ready(State(http): State<Http>) -> Response {
    let store = match tokio::time::timeout(STORE_TIMEOUT, http.session.store().ping()).await {
        Ok(Ok(())) => json!({"ready": true, "detail": "answering"}),
        Ok(Err(error)) => json!({"ready": false, "detail": format!("unreachable: {error}")}),
        Err(_) => json!({"ready": false, "detail": format!("no answer within {STORE_TIMEOUT:?}")}),
    };
    let store_ready = store["ready"] == true;
    let ready = store_ready && http.health.ready();
    let mut body = json!({ "ready": ready, "store": store });
    for (part, state) in http.health.parts() {
        body[part] = json!(state);
    }
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, axum::Json(body)).into_response()
}

async fn render_metrics() -> Response {
    let content_type = [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")];
    (content_type, metrics().render()).into_response()
}

/// Hands a request to the routes mounted so far.
async fn mounted(State(http): State<Http>, request: Request) -> Response {
    let routes = http.mounted.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
    match routes.oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}
