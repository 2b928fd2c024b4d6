//! The web front-end over HTTP: conversation keys, messages and long-polled
//! events, refused keys and presses, CORS, bad requests and the rate limit,
//! and `fixbot serve` mounting it. The chat page in a real browser is in
//! `web_browser.rs`.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fixbot_core::button::ButtonCodec;
use fixbot_core::engine::EngineConfig;
use fixbot_core::flood::RateLimit;
use fixbot_core::session::Session;
use fixbot_core::store::MemoryStore;
use fixbot_web::WebConfig;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::support::{free_address, shipped_flows, spawn_serve};

/// The paste the browser test uses too: a Finder/iCloud backup failure.
pub const PASTE: &str = "The last backup could not be completed.";

/// A web front-end on 127.0.0.1 over the shipped flows and a memory store.
pub struct Chat {
    pub base: String,
    client: reqwest::Client,
    _stop: watch::Sender<bool>,
}

/// One HTTP answer.
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Chat {
    /// Serves the web routes with `config`, and `limit` per visitor.
    pub async fn start(config: WebConfig, limit: Option<RateLimit>) -> Chat {
        let mut session = Session::new(MemoryStore::new(), shipped_flows(), EngineConfig::default());
        if let Some(limit) = limit {
            session = session.with_rate_limit(limit);
        }
        let (stop, stopping) = watch::channel(false);
        let router = fixbot_web::router(
            Arc::new(session),
            ButtonCodec::new(b"buttons"),
            b"conversation keys",
            config,
            stopping,
            None,
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await });
        Chat { base, client: reqwest::Client::new(), _stop: stop }
    }

    /// Sends `method path` with an optional key, JSON body text and Origin.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
        origin: Option<&str>,
    ) -> Answer {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body.to_owned());
        }
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        let response = request.send().await.unwrap();
        let (status, headers) = (response.status().as_u16(), response.headers().clone());
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Answer { status, headers, body }
    }

    /// A new conversation's key.
    pub async fn conversation(&self) -> String {
        let answer = self.call("POST", "/api/v1/conversations", None, None, None).await;
        assert_eq!(answer.status, 201, "{}", answer.body);
        answer.body["token"].as_str().unwrap().to_owned()
    }

    /// Sends one message and returns the events it caused.
    pub async fn send(&self, token: &str, message: Value) -> Value {
        let answer = self.call("POST", "/api/v1/messages", Some(token), Some(&message.to_string()), None).await;
        assert_eq!(answer.status, 200, "{message}: {}", answer.body);
        answer.body
    }
}

/// The bot's events' texts, joined.
fn bot_text(batch: &Value) -> String {
    let events = batch["events"].as_array().unwrap();
    let bot = events.iter().filter(|event| event["from"] == "bot");
    bot.map(|event| event["body"].as_array().unwrap().iter().map(|span| span["text"].as_str().unwrap()).collect())
        .collect::<Vec<String>>()
        .join("\n")
}

/// The choices of the last event that has any: (label, ref).
fn choices(batch: &Value) -> Vec<(String, String)> {
    let events = batch["events"].as_array().unwrap();
    let last = events.iter().rev().find(|event| !event["choices"].as_array().unwrap().is_empty());
    let choices = last.map(|event| event["choices"].as_array().unwrap().clone()).unwrap_or_default();
    choices
        .iter()
        .map(|choice| (choice["label"].as_str().unwrap().into(), choice["ref"].as_str().unwrap().into()))
        .collect()
}

/// The answer that moves on to another step: "Still failing" or "not
/// fixed" where the step offers it, else its first choice (the connection
/// step offers "Page loads on Wi-Fi").
pub fn not_fixed(choices: &[(String, String)]) -> (String, String) {
    let wanted = ["still failing", "not fixed"];
    let found = choices.iter().find(|(label, _)| wanted.iter().any(|word| label.to_lowercase().contains(word)));
    found.or(choices.first()).unwrap_or_else(|| panic!("no choices")).clone()
}

#[tokio::test]
async fn a_conversation_is_diagnosed_walked_and_read_back_by_cursor() {
    let chat = Chat::start(WebConfig::default(), None).await;
    let token = chat.conversation().await;
    let greeting = chat.send(&token, json!({"command": "start"})).await;
    assert!(bot_text(&greeting).contains("phone backup fails"), "{greeting}");

    let first = chat.send(&token, json!({"text": PASTE})).await;
    let events = first["events"].as_array().unwrap();
    assert_eq!(events[0]["from"], "visitor");
    assert_eq!(events[0]["body"][0]["text"], PASTE, "the visitor's own text comes back");
    let step = choices(&first);
    assert!(step.len() >= 2, "the first step offers answers: {first}");

    let (label, reference) = not_fixed(&step);
    let second = chat.send(&token, json!({"choice": reference})).await;
    assert_eq!(second["events"][0]["from"], "visitor");
    assert_eq!(second["events"][0]["body"][0]["text"], label.as_str(), "a press shows its label");
    assert_ne!(bot_text(&second), bot_text(&first), "the next step follows");

    // The same press again is stale: refused, nothing changes.
    let again = chat.send(&token, json!({"choice": reference})).await;
    assert!(choices(&again).is_empty() && bot_text(&again).to_lowercase().contains("button"), "{again}");

    // A reloaded page reads everything back, numbered, with the cursor.
    let cursor = again["cursor"].as_u64().unwrap();
    let history = chat.call("GET", "/api/v1/events?after=0&wait=0", Some(&token), None, None).await;
    assert_eq!(history.body["cursor"].as_u64(), Some(cursor));
    let ids: Vec<u64> = history.body["events"].as_array().unwrap().iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, (1..=cursor).collect::<Vec<_>>());
    assert_eq!(history.headers["cache-control"], "no-store");

    // A long poll waits for the next event and wakes when it comes.
    let poll = {
        let (base, token) = (chat.base.clone(), token.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let url = format!("{base}/api/v1/events?after={cursor}");
            let request = reqwest::Client::new().get(url).header("authorization", format!("Bearer {token}"));
            let body: Value = serde_json::from_str(&request.send().await.unwrap().text().await.unwrap()).unwrap();
            (body, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    chat.send(&token, json!({"command": "human"})).await;
    let (body, waited) = poll.await.unwrap();
    assert!(waited >= Duration::from_millis(250) && waited < Duration::from_secs(10), "{waited:?}");
    assert_eq!(body["events"][0]["id"].as_u64(), Some(cursor + 1), "{body}");
    // An empty wait runs out with no events and the same cursor.
    let idle =
        chat.call("GET", &format!("/api/v1/events?after={}&wait=1", cursor + 10), Some(&token), None, None).await;
    assert_eq!(idle.body["events"], json!([]));
}

#[tokio::test]
async fn forged_and_other_visitors_keys_and_presses_are_refused_without_a_leak() {
    let chat = Chat::start(WebConfig::default(), None).await;
    let (ann, bob) = (chat.conversation().await, chat.conversation().await);
    assert_ne!(ann, bob);
    let first = chat.send(&ann, json!({"text": PASTE})).await;
    let (_, reference) = not_fixed(&choices(&first));

    // Bob presses Ann's button: refused, and Ann's case does not move.
    let pressed = chat.send(&bob, json!({"choice": reference})).await;
    assert!(bot_text(&pressed).contains("someone else's case"), "{pressed}");
    let bob_history = chat.call("GET", "/api/v1/events?wait=0", Some(&bob), None, None).await;
    assert!(!bot_text(&bob_history.body).contains(&bot_text(&first)), "Bob never sees Ann's step");
    let ann_history = chat.call("GET", "/api/v1/events?wait=0", Some(&ann), None, None).await;
    assert_eq!(ann_history.body["cursor"], first["cursor"], "Ann's case did not move");

    // A guessed key, an altered one, none, or one in the URL: the same 401.
    let mut altered = ann.clone().into_bytes();
    altered[40] = if altered[40] == b'a' { b'b' } else { b'a' };
    let altered = String::from_utf8(altered).unwrap();
    let guessed = "0123456789abcdef".repeat(4);
    let mut bodies = Vec::new();
    for (path, token) in [
        ("/api/v1/events?wait=0", Some(guessed.as_str())),
        ("/api/v1/events?wait=0", Some(altered.as_str())),
        ("/api/v1/events?wait=0", None),
        (&*format!("/api/v1/events?wait=0&token={ann}"), None),
    ] {
        let answer = chat.call("GET", path, token, None, None).await;
        assert_eq!(answer.status, 401, "{path} {token:?}");
        assert_eq!(answer.headers["www-authenticate"], "Bearer");
        bodies.push(answer.body.to_string());
    }
    let sent = chat.call("POST", "/api/v1/messages", Some(&guessed), Some(r#"{"text":"hi"}"#), None).await;
    assert_eq!(sent.status, 401);
    bodies.push(sent.body.to_string());
    bodies.dedup();
    assert_eq!(bodies.len(), 1, "every refusal reads the same: {bodies:?}");
    assert!(!bodies[0].contains("backup"), "nothing of a case leaks: {}", bodies[0]);
}

#[tokio::test]
async fn only_the_page_itself_and_allowed_origins_may_call_the_api() {
    let config = WebConfig { allowed_origins: vec!["https://intranet.example".into()], ..WebConfig::default() };
    let chat = Chat::start(config, None).await;
    let allowed = Some("https://intranet.example");
    let preflight = chat.call("OPTIONS", "/api/v1/messages", None, None, allowed).await;
    assert_eq!(preflight.status, 204);
    assert_eq!(preflight.headers["access-control-allow-origin"], "https://intranet.example");
    assert!(preflight.headers["access-control-allow-headers"].to_str().unwrap().contains("authorization"));
    let started = chat.call("POST", "/api/v1/conversations", None, None, allowed).await;
    assert_eq!(started.status, 201);
    assert_eq!(started.headers["access-control-allow-origin"], "https://intranet.example");

    let evil = Some("https://evil.example");
    let preflight = chat.call("OPTIONS", "/api/v1/messages", None, None, evil).await;
    assert_eq!(preflight.status, 403);
    assert!(!preflight.headers.contains_key("access-control-allow-origin"));
    let started = chat.call("POST", "/api/v1/conversations", None, None, evil).await;
    assert_eq!(started.status, 403, "a simple request from elsewhere does nothing either");
    assert!(!started.headers.contains_key("access-control-allow-origin"));

    // The page's own origin, which browsers send on every POST.
    let own = chat.base.clone();
    assert_eq!(chat.call("POST", "/api/v1/conversations", None, None, Some(&own)).await.status, 201);
}

#[tokio::test]
async fn unreadable_requests_get_a_friendly_400() {
    let chat = Chat::start(WebConfig::default(), None).await;
    let token = chat.conversation().await;
    for body in [
        r#"{"text": "unclosed"#,
        r#"{"text": "a", "choice": "b"}"#,
        r#"{"txt": "a"}"#,
        "[]",
        r#"{"command": "reboot"}"#,
        r#"{"text": "  "}"#,
    ] {
        let answer = chat.call("POST", "/api/v1/messages", Some(&token), Some(body), None).await;
        assert_eq!(answer.status, 400, "{body}: {}", answer.body);
        let error = answer.body["error"].as_str().unwrap_or_else(|| panic!("{body}: {}", answer.body));
        assert!(error.ends_with('.') && error.len() < 120, "{body}: {error}");
    }
    let query = chat.call("GET", "/api/v1/events?after=soon", Some(&token), None, None).await;
    assert_eq!(query.status, 400);
    assert!(query.body["error"].as_str().unwrap().contains("could not be read"));
}

#[tokio::test]
async fn a_visitor_past_the_rate_limit_is_told_once_then_ignored() {
    let limit = RateLimit { burst: NonZeroU32::new(2).unwrap(), per_minute: NonZeroU32::new(1).unwrap() };
    let chat = Chat::start(WebConfig::default(), Some(limit)).await;
    let (token, other) = (chat.conversation().await, chat.conversation().await);
    for _ in 0..2 {
        assert!(!bot_text(&chat.send(&token, json!({"text": "help"})).await).contains("faster than"));
    }
    let noticed = chat.send(&token, json!({"text": "help"})).await;
    assert!(bot_text(&noticed).contains("faster than I can keep up"), "{noticed}");
    let ignored = chat.send(&token, json!({"text": "help"})).await;
    assert_eq!(bot_text(&ignored), "", "told once: {ignored}");
    assert!(
        !bot_text(&chat.send(&other, json!({"text": "help"})).await).contains("faster than"),
        "others are not slowed"
    );
    let metrics = fixbot_core::metrics::metrics().render();
    assert!(metrics.contains(r#"fixbot_messages_received_total{platform="web"}"#), "counted as web");
}

#[tokio::test]
async fn the_page_is_self_contained_behind_a_strict_policy() {
    let config = WebConfig {
        title: "IT <help> desk".into(),
        accent_colour: "#0a7d5a".into(),
        allowed_origins: vec!["https://intranet.example".into()],
        ..WebConfig::default()
    };
    let chat = Chat::start(config, None).await;
    let page = chat.call("GET", "/", None, None, None).await;
    assert_eq!(page.status, 200);
    let policy = page.headers["content-security-policy"].to_str().unwrap();
    for directive in ["default-src 'none'", "script-src 'self'", "frame-ancestors 'self' https://intranet.example"] {
        assert!(policy.contains(directive), "{policy}");
    }
    let html = page.body.as_str().unwrap();
    assert!(html.contains("<title>IT &lt;help&gt; desk</title>"));
    assert!(html.contains(r#"aria-live="polite""#) && html.contains(r#"<label for="message">"#));
    assert!(!html.contains("http://") && !html.contains("https://"), "nothing is fetched from elsewhere");
    let css = chat.call("GET", "/app.css", None, None, None).await;
    assert!(css.body.as_str().unwrap().contains("--accent: #0a7d5a;"));
    let script = chat.call("GET", "/app.js", None, None, None).await.body.as_str().unwrap().to_owned();
    assert!(!script.contains("innerHTML") && !script.contains("eval("), "messages are built with textContent");
    let embed = chat.call("GET", "/embed.js", None, None, None).await;
    assert!(embed.body.as_str().unwrap().contains("iframe"));
    let spec = chat.call("GET", "/openapi.yaml", None, None, None).await;
    assert!(spec.body.as_str().unwrap().starts_with("# fixbot's web chat API"));
}

#[tokio::test]
async fn fixbot_serve_mounts_the_web_chat_when_enabled() {
    let address = free_address().to_string();
    let variables = [("FIXBOT_WEB_ENABLED", "true"), ("FIXBOT_WEB_TITLE", "Service desk")];
    let _server = spawn_serve("memory:", &["--listen", &address], &variables);
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let page = loop {
        match client.get(format!("http://{address}/")).send().await {
            Ok(response) if response.status() == 200 => break response.text().await.unwrap(),
            _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
            other => panic!("the web chat never answered: {other:?}"),
        }
    };
    assert!(page.contains("<h1>Service desk</h1>"), "{page}");
    let started = client.post(format!("http://{address}/api/v1/conversations")).send().await.unwrap();
    assert_eq!(started.status(), 201);
}

#[tokio::test]
async fn the_browsers_language_picks_the_language_of_a_new_case() {
    let chat = Chat::start(WebConfig::default(), None).await;
    let token = chat.conversation().await;
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/messages", chat.base))
        .header("authorization", format!("Bearer {token}"))
        .header("accept-language", "fr-FR,fr;q=0.9,en;q=0.5")
        .json(&json!({ "text": PASTE }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let said = bot_text(&response.json().await.unwrap());
    assert!(said.contains("On dirait qu'il s'agit de ceci"), "a French browser gets French: {said}");

    // Without the header, the English paste opens an English case.
    let token = chat.conversation().await;
    let said = bot_text(&chat.send(&token, json!({ "text": PASTE })).await);
    assert!(said.contains("It looks like this"), "{said}");
}
