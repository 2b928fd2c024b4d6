//! The web chat page end to end in headless Chromium, driven over the W3C
//! WebDriver protocol by chromedriver: a paste, a pressed answer, a reload,
//! two visitors who never see each other's cases, and hostile HTML shown as
//! text. Saves a screenshot mid-case to `target/web-screenshot.png`. Skipped,
//! loudly, where Chromium or chromedriver is not installed (CI installs both).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine as _;
use fixbot_web::WebConfig;
use serde_json::{Value, json};

use crate::support::{free_address, root};
use crate::web::{Chat, PASTE};

/// WebDriver's key for an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// How long the page may take to show something.
const PATIENCE: Duration = Duration::from_secs(15);

/// The first of `names` found on the PATH or at a usual place.
fn installed(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = std::env::split_paths(&path).chain([PathBuf::from("/usr/lib/chromium")]).collect();
    names.iter().flat_map(|name| dirs.iter().map(move |dir| dir.join(name))).find(|path| path.is_file())
}

/// A running chromedriver; dropping it stops it.
struct ChromeDriver {
    _child: tokio::process::Child,
    url: String,
}

impl ChromeDriver {
    async fn start(binary: &Path) -> ChromeDriver {
        let port = free_address().port();
        let child = tokio::process::Command::new(binary)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + PATIENCE;
        loop {
            let status = reqwest::get(format!("{url}/status")).await;
            if status.is_ok_and(|response| response.status().is_success()) {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not answer on {url}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        ChromeDriver { _child: child, url }
    }

    /// A new browser with a fresh profile: its own localStorage.
    async fn browser(&self, chromium: &Path) -> Browser {
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1000,860", "--hide-scrollbars", "--force-device-scale-factor=1"],
            },
        }}});
        let http = reqwest::Client::new();
        let answer = send(&http, reqwest::Method::POST, &format!("{}/session", self.url), Some(capabilities)).await;
        let id = answer["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {answer}")).to_owned();
        Browser { http, session: format!("{}/session/{id}", self.url) }
    }
}

async fn send(http: &reqwest::Client, method: reqwest::Method, url: &str, body: Option<Value>) -> Value {
    let mut request = http.request(method, url);
    if let Some(body) = body {
        request = request.header("content-type", "application/json").body(body.to_string());
    }
    let text = request.send().await.expect("chromedriver answers").text().await.unwrap();
    let answer: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    answer["value"].clone()
}

/// One browser session.
struct Browser {
    http: reqwest::Client,
    session: String,
}

impl Browser {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        send(&self.http, method, &format!("{}{path}", self.session), body).await
    }

    async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({ "url": url }))).await;
    }

    async fn reload(&self) {
        self.call(reqwest::Method::POST, "/refresh", Some(json!({}))).await;
    }

    /// Runs `script` in the page with `args` and returns its value.
    async fn run(&self, script: &str, args: Value) -> Value {
        let value =
            self.call(reqwest::Method::POST, "/execute/sync", Some(json!({ "script": script, "args": args }))).await;
        assert!(value.get("error").is_none(), "{script}: {value}");
        value
    }

    /// Waits until `script` returns a truthy value, and returns it.
    async fn wait_for(&self, what: &str, script: &str, args: Value) -> Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let value = self.run(script, args.clone()).await;
            if !(value.is_null() || value == false || value == "" || value == 0) {
                return value;
            }
            assert!(Instant::now() < deadline, "the page never showed {what}; log: {}", self.log().await);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn find(&self, css: &str) -> String {
        let found =
            self.call(reqwest::Method::POST, "/element", Some(json!({"using": "css selector", "value": css}))).await;
        found[ELEMENT].as_str().unwrap_or_else(|| panic!("no {css}: {found}")).to_owned()
    }

    async fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        self.call(reqwest::Method::POST, &format!("/element/{element}/value"), Some(json!({ "text": text }))).await;
    }

    async fn click(&self, css: &str) {
        let element = self.find(css).await;
        self.call(reqwest::Method::POST, &format!("/element/{element}/click"), Some(json!({}))).await;
    }

    /// Every message shown, as "bot: text" or "visitor: text".
    async fn log(&self) -> String {
        let script = "return Array.from(document.querySelectorAll('#log > li')).map(function (item) {
            return (item.classList.contains('bot') ? 'bot: ' : 'visitor: ') + item.querySelector('.body').textContent;
        }).join('\\n');";
        self.run(script, json!([])).await.as_str().unwrap_or_default().to_owned()
    }

    async fn messages(&self) -> u64 {
        self.run("return document.querySelectorAll('#log > li').length;", json!([])).await.as_u64().unwrap()
    }

    /// The text of the latest bot message that offers answers.
    async fn current_step(&self) -> String {
        let script = "var steps = document.querySelectorAll('#log > li.bot');
            for (var i = steps.length - 1; i >= 0; i--) {
                if (steps[i].querySelector('.choices button:not([disabled])')) return steps[i].querySelector('.body').textContent;
            }
            return '';";
        self.wait_for("a step with answers", script, json!([])).await.as_str().unwrap().to_owned()
    }

    /// Pastes `text` and sends it, then waits for the answer.
    async fn paste(&self, text: &str) {
        let before = self.messages().await;
        self.type_into("#message", text).await;
        self.click("#send").await;
        let script = "return document.querySelectorAll('#log > li.bot').length > 0 &&
            document.querySelectorAll('#log > li').length > arguments[0] + 1;";
        self.wait_for("the answer to a paste", script, json!([before])).await;
    }

    async fn screenshot(&self, path: &Path) {
        let encoded = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD.decode(encoded.as_str().unwrap()).unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }

    async fn alert(&self) -> Option<String> {
        let text = self.call(reqwest::Method::GET, "/alert/text", None).await;
        text.as_str().map(str::to_owned)
    }

    async fn quit(self) {
        self.http.delete(&self.session).send().await.ok();
    }
}

#[tokio::test]
async fn the_chat_page_walks_a_case_in_chromium() {
    let (Some(chromium), Some(driver)) =
        (installed(&["chromium", "chromium-browser", "google-chrome"]), installed(&["chromedriver"]))
    else {
        eprintln!(
            "SKIPPED the browser test: install chromium and chromium-driver (apt-get install -y chromium chromium-driver)"
        );
        return;
    };
    // An intranet page on another origin that embeds the chat.
    let intranet = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let intranet_origin = format!("http://{}", intranet.local_addr().unwrap());
    let config = WebConfig {
        title: "IT Service Desk · Backup help".into(),
        allowed_origins: vec![intranet_origin.clone()],
        ..WebConfig::default()
    };
    let chat = Chat::start(config, None).await;
    let host_page = format!(
        "<!doctype html><title>Intranet</title><h1>Intranet</h1>\
         <script src=\"{}/embed.js\" data-title=\"Backup help\" async></script>",
        chat.base
    );
    let host =
        axum::Router::new().route("/", axum::routing::get(move || async move { axum::response::Html(host_page) }));
    tokio::spawn(async move { axum::serve(intranet, host).await });
    let page = format!("{}/", chat.base);
    let chromedriver = ChromeDriver::start(&driver).await;

    // Ann pastes the error and sees the first step.
    let ann = chromedriver.browser(&chromium).await;
    ann.goto(&page).await;
    ann.wait_for("the greeting", "return document.querySelectorAll('#log > li.bot').length;", json!([])).await;
    let focused = ann.run("return document.activeElement && document.activeElement.id;", json!([])).await;
    assert_eq!(focused, "message", "the text box has the focus");
    ann.paste(PASTE).await;
    let first = ann.current_step().await;
    assert!(first.contains("connection"), "the first step: {first}");
    assert!(ann.log().await.contains(&format!("visitor: {PASTE}")));

    // She answers with a button and sees the next step.
    let script = "var buttons = Array.from(document.querySelectorAll('#log .choices button:not([disabled])'));
        var wanted = buttons.find(function (b) { return /still failing|not fixed/i.test(b.textContent); }) || buttons[0];
        wanted.setAttribute('id', 'picked'); return wanted.tagName + ':' + wanted.textContent;";
    let picked = ann.run(script, json!([])).await;
    assert!(picked.as_str().unwrap().starts_with("BUTTON:"), "choices are real buttons: {picked}");
    ann.click("#picked").await;
    let script = "var steps = document.querySelectorAll('#log > li.bot');
        var last = steps[steps.length - 1].querySelector('.body').textContent;
        return last !== arguments[0] && last;";
    let second = ann.wait_for("the next step", script, json!([first])).await.as_str().unwrap().to_owned();
    let scrolled = "var chat = document.querySelector('.chat');
        return chat.scrollTop + chat.clientHeight >= chat.scrollHeight - 2;";
    ann.wait_for("the newest message scrolled into view", scrolled, json!([])).await;
    let screenshot = root().join("target/web-screenshot.png");
    ann.screenshot(&screenshot).await;
    eprintln!("screenshot of the page mid-case: {}", screenshot.display());

    // A reload finds the case where it was.
    ann.reload().await;
    let script = "var steps = document.querySelectorAll('#log > li.bot');
        return steps.length && steps[steps.length - 1].querySelector('.body').textContent;";
    let after_reload = ann.wait_for("the case after a reload", script, json!([])).await;
    assert_eq!(after_reload.as_str(), Some(second.as_str()), "the same step after a reload");
    assert!(ann.log().await.contains(&first), "and the earlier steps above it");
    // Readable on a phone.
    let phone = json!({"width": 390, "height": 844});
    ann.call(reqwest::Method::POST, "/window/rect", Some(phone)).await;
    let overflow = ann.run("return document.documentElement.scrollWidth > window.innerWidth;", json!([])).await;
    assert_eq!(overflow, false, "nothing sticks out sideways on a phone");
    ann.screenshot(&root().join("target/web-screenshot-phone.png")).await;

    // Bob, in another browser, sees a fresh chat and none of Ann's case.
    let bob = chromedriver.browser(&chromium).await;
    bob.goto(&page).await;
    bob.wait_for("Bob's greeting", "return document.querySelectorAll('#log > li.bot').length;", json!([])).await;
    let bob_log = bob.log().await;
    assert!(!bob_log.contains(&first) && !bob_log.contains(PASTE), "Bob sees nothing of Ann's: {bob_log}");

    // Hostile HTML is shown as the text it is.
    let hostile = "<img src=x onerror=alert(1)>";
    bob.paste(hostile).await;
    assert!(bob.log().await.contains(&format!("visitor: {hostile}")), "{}", bob.log().await);
    let images = bob.run("return document.querySelectorAll('img').length;", json!([])).await;
    assert_eq!(images, 0, "no element was made from the paste");
    assert_eq!(bob.alert().await, None, "no script ran");
    assert!(!ann.log().await.contains(hostile), "Ann does not see Bob's message");

    // One script tag on the intranet page adds the chat in a frame.
    bob.goto(&format!("{intranet_origin}/")).await;
    let frame = bob.wait_for("the embedded frame", "return document.querySelector('iframe');", json!([])).await;
    let title = bob.run("return document.querySelector('iframe').title;", json!([])).await;
    assert_eq!(title, "Backup help", "the frame is named for screen readers");
    bob.call(reqwest::Method::POST, "/frame", Some(json!({ "id": frame }))).await;
    let greeting = "return document.querySelectorAll('#log > li.bot').length;";
    bob.wait_for("the chat inside the frame", greeting, json!([])).await;
    let embedded = bob.run("return document.documentElement.classList.contains('embedded');", json!([])).await;
    assert_eq!(embedded, true);
    bob.call(reqwest::Method::POST, "/frame", Some(json!({ "id": null }))).await;

    ann.quit().await;
    bob.quit().await;
}
