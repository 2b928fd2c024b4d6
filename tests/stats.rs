//! `fixbot stats` on seeded stores (SQLite and PostgreSQL) against figures
//! counted by hand: the table, JSON and CSV formats, `--since`, friendly
//! errors, and the HTML report rendered in headless Chromium.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{SystemTime, UNIX_EPOCH};

use fixbot_core::case::{ConversationKey, Outcome, OutcomeRecord};
use fixbot_core::store::{Change, Store};
use fixbot_store::{PostgresStore, SqliteStore};
use serde_json::{Value, json};

use crate::store_contract::{TestSchema, postgres_url};
use crate::support::{fixbot, root, stderr, stdout};

/// Two fixture flows whose titles need quoting in CSV and escaping in HTML.
const FULL: &str = r#"
title: 'Storage full, "really"'
summary: The storage is full.
match:
  - regex: 'storage (is )?full'
    weight: 10
steps:
  - id: check_space
    text: "Open **Settings → iCloud** and look at the bar. It shows what is left."
  - id: delete_backups
    ios: "Delete old backups you no longer need."
    android: "Delete old Google One backups."
  - id: ask_for_help
    text: "Still stuck? Ask for help."
"#;

const SLOW: &str = r#"
title: 'Slow <network> & co'
summary: The network is slow.
match:
  - regex: 'network (is )?slow'
    weight: 10
steps:
  - id: check_wifi
    text: "Check the Wi-Fi, then try again"
"#;

/// A flows directory with the shipped `_bot.yaml` and the two fixtures.
fn fixture_flows() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(root().join("flows/_bot.yaml"), dir.path().join("_bot.yaml")).unwrap();
    std::fs::write(dir.path().join("full.yaml"), FULL).unwrap();
    std::fs::write(dir.path().join("slow.yaml"), SLOW).unwrap();
    dir
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// The outcome log, counted by hand below. `step` is `flow/step`, or empty
/// for a case that ended before any step.
fn log(now: i64) -> Vec<OutcomeRecord> {
    use Outcome::*;
    let record = |at: i64, case_id: u64, symptom: &str, step: &str, outcome| {
        let (flow, step) = step.split_once('/').unwrap_or((symptom, ""));
        OutcomeRecord {
            case_id,
            subject: case_id,
            at,
            symptom: symptom.into(),
            flow: flow.into(),
            step: step.into(),
            outcome,
        }
    };
    let (old, recent) = (now - 10 * 86_400, now - 2 * 86_400);
    vec![
        // Outside `--since 7d`: case 20, resolved at delete_backups.
        record(old, 20, "full", "full/check_space", NotFixed),
        record(old + 1, 20, "full", "full/delete_backups", Fixed),
        // Within it, ten cases.
        record(recent, 1, "full", "full/check_space", NotFixed),
        record(recent + 1, 1, "full", "full/delete_backups", Fixed), // 1: resolved
        record(recent + 2, 2, "full", "full/check_space", NotFixed),
        record(recent + 3, 2, "full", "full/delete_backups", NotFixed),
        record(recent + 4, 2, "full", "full/ask_for_help", Escalated), // 2: escalated
        record(recent + 5, 3, "full", "full/check_space", Skipped),
        record(recent + 6, 3, "full", "full/delete_backups", Abandoned), // 3: abandoned
        record(recent + 7, 4, "full", "full/check_space", Fixed),        // 4: resolved
        record(recent + 8, 5, "full", "full/check_space", NotFixed),     // 5: open
        record(recent + 9, 6, "slow", "slow/check_wifi", Abandoned),     // 6: abandoned (slow)
        record(recent + 10, 8, "", "", Escalated),                       // 8: no symptom, escalated
        record(recent + 11, 9, "full", "full/check_space", NotFixed),
        record(recent + 12, 9, "full", "full/delete_backups", Abandoned), // 9: switched away ...
        record(recent + 13, 9, "slow", "slow/check_wifi", Fixed),         // ... and resolved as slow
        record(recent + 14, 4, "full", "full/check_space", NotFixed),     // 4 again: a new, open case
    ]
}

/// Appends the log to `store` as the session would: one commit per record.
async fn seed(store: &impl Store, now: i64) {
    for record in log(now) {
        let key = ConversationKey::new("test", "chat", "", &record.case_id.to_string());
        let change = Change { expected: None, case: None, outcomes: std::slice::from_ref(&record), receipt: None };
        store.commit(&key, change).await.unwrap();
    }
}

/// A SQLite store in `dir` holding the log; its URL.
async fn seeded_sqlite(dir: &Path, now: i64) -> String {
    let path = dir.join("stats.db");
    let store = SqliteStore::open(&path).await.unwrap();
    seed(&store, now).await;
    store.close().await;
    format!("sqlite:{}", path.display())
}

/// `fixbot stats ARGS… --flows FIXTURES`, which must succeed.
fn stats(flows: &Path, args: &[&str]) -> String {
    let mut all = vec!["stats", "--flows", flows.to_str().unwrap()];
    all.extend_from_slice(args);
    let output = fixbot(&all, b"");
    assert!(output.status.success(), "fixbot {all:?}: {}{}", stdout(&output), stderr(&output));
    stdout(&output)
}

/// The figures of the last seven days, counted by hand from [`log`]:
/// (symptom, cases, resolved, escalated, abandoned, open, percentages).
fn expected_symptoms() -> Value {
    json!([
        ["full", 7, 2, 1, 2, 2, 28.6, 14.3, 28.6],
        ["slow", 2, 1, 0, 1, 0, 50.0, 0.0, 50.0],
        [null, 1, 0, 1, 0, 0, 0.0, 100.0, 0.0],
    ])
}

/// The steps of `full` in the last seven days: (step, cases, fixed, not fixed,
/// skipped, abandoned, escalated, fixed %, gave up %).
fn expected_full_steps() -> Value {
    json!([
        ["check_space", 7, 1, 5, 1, 0, 0, 14.3, 0.0],
        ["delete_backups", 4, 1, 1, 0, 2, 0, 14.3, 28.6],
        ["ask_for_help", 1, 0, 0, 0, 0, 1, 0.0, 14.3],
    ])
}

/// The JSON report's figures in the shape of [`expected_symptoms`] and
/// [`expected_full_steps`].
fn figures(report: &Value) -> (Value, Value) {
    let symptoms = report["symptoms"].as_array().unwrap();
    let ends: Vec<Value> = symptoms
        .iter()
        .map(|s| {
            json!([
                s["symptom"],
                s["cases"],
                s["resolved"],
                s["escalated"],
                s["abandoned"],
                s["open"],
                s["resolved_pct"],
                s["escalated_pct"],
                s["abandoned_pct"]
            ])
        })
        .collect();
    let steps: Vec<Value> = symptoms[0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            json!([
                s["step"],
                s["cases"],
                s["fixed"],
                s["not_fixed"],
                s["skipped"],
                s["abandoned"],
                s["escalated"],
                s["fixed_pct"],
                s["gave_up_pct"]
            ])
        })
        .collect();
    (Value::Array(ends), Value::Array(steps))
}

/// The JSON report of `store` over the last seven days matches the count by hand.
fn assert_json_matches_the_count_by_hand(flows: &Path, store: &str, now: i64) {
    let report: Value = serde_json::from_str(&stats(flows, &["--store", store, "--since", "7d", "--format", "json"]))
        .expect("one JSON object");
    let since = report["since"].as_i64().unwrap();
    assert!((now - 7 * 86_400..=now - 7 * 86_400 + 60).contains(&since), "since {since}");
    assert_eq!(
        report["totals"],
        json!({"cases": 10, "resolved": 3, "escalated": 2, "abandoned": 3, "open": 2,
               "resolved_pct": 30.0, "escalated_pct": 20.0, "abandoned_pct": 30.0})
    );
    let (symptoms, steps) = figures(&report);
    assert_eq!(symptoms, expected_symptoms());
    assert_eq!(steps, expected_full_steps());
    let full = &report["symptoms"][0];
    assert_eq!(full["title"], "Storage full, \"really\"");
    assert_eq!(full["steps"][0]["flow"], "full");
    assert_eq!(full["steps"][0]["title"], "1. Open Settings → iCloud and look at the bar.");
    assert_eq!(
        report["symptoms"][2]["steps"],
        json!([{"flow": null, "step": null, "title": null, "cases": 1,
        "fixed": 0, "not_fixed": 0, "skipped": 0, "abandoned": 0, "escalated": 1,
        "fixed_pct": 0.0, "gave_up_pct": 100.0}])
    );
}

#[tokio::test]
async fn stats_of_a_sqlite_store_match_a_count_by_hand() {
    let (dir, flows, now) = (tempfile::tempdir().unwrap(), fixture_flows(), now());
    let store = seeded_sqlite(dir.path(), now).await;
    assert_json_matches_the_count_by_hand(flows.path(), &store, now);

    // Without --since, case 20 counts too: one more case of `full`, resolved.
    let report: Value = serde_json::from_str(&stats(flows.path(), &["--store", &store, "--format", "json"])).unwrap();
    assert_eq!(report["since"], Value::Null);
    assert_eq!((&report["totals"]["cases"], &report["totals"]["resolved"]), (&json!(11), &json!(4)));
    let full = &report["symptoms"][0];
    assert_eq!((&full["cases"], &full["resolved"], &full["resolved_pct"]), (&json!(8), &json!(3), &json!(37.5)));
    assert_eq!(full["steps"][1]["fixed"], 2);
}

#[tokio::test]
async fn stats_of_a_postgres_store_match_a_count_by_hand() {
    let Some(url) = postgres_url() else { return };
    let (flows, now) = (fixture_flows(), now());
    let schema = TestSchema::new(&url);
    let store = PostgresStore::open_in_schema(&url, Some(&schema.name)).await.unwrap();
    seed(&store, now).await;
    store.close().await;
    assert_json_matches_the_count_by_hand(flows.path(), &schema.create(), now);
}

#[tokio::test]
async fn the_table_is_aligned_plain_text_with_titles_or_ids() {
    let (dir, flows, now) = (tempfile::tempdir().unwrap(), fixture_flows(), now());
    let store = seeded_sqlite(dir.path(), now).await;
    let table = stats(flows.path(), &["--store", &store, "--since", "7d"]);
    let expected = "\
Outcomes of the last 7d: 10 cases; 3 resolved (30.0%), 2 escalated (20.0%), 3 abandoned (30.0%), 2 open.

symptom                 cases  resolved %  escalated %  abandoned %  open
Storage full, \"really\"      7        28.6         14.3         28.6     2
Slow <network> & co         2        50.0          0.0         50.0     0
(no symptom)                1         0.0        100.0          0.0     0

Storage full, \"really\" (full): 7 cases
  step                                            cases  fixed  not fixed  skipped  abandoned  escalated  fixed %  gave up %
  1. Open Settings → iCloud and look at the bar.      7      1          5        1          0          0     14.3        0.0
  2. Delete old backups you no longer need.           4      1          1        0          2          0     14.3       28.6
  3. Still stuck?                                     1      0          0        0          0          1      0.0       14.3

Slow <network> & co (slow): 2 cases
  step                                cases  fixed  not fixed  skipped  abandoned  escalated  fixed %  gave up %
  1. Check the Wi-Fi, then try again      2      1          0        0          1          0     50.0       50.0

(no symptom): 1 case
  step               cases  fixed  not fixed  skipped  abandoned  escalated  fixed %  gave up %
  (before any step)      1      0          0        0          0          1      0.0      100.0
";
    assert_eq!(table, expected, "\n{table}");

    // Flows that no longer hold a symptom: ids stand in for titles.
    let other = tempfile::tempdir().unwrap();
    std::fs::copy(root().join("flows/_bot.yaml"), other.path().join("_bot.yaml")).unwrap();
    std::fs::write(other.path().join("slow.yaml"), SLOW).unwrap();
    let table = stats(other.path(), &["--store", &store, "--since", "7d"]);
    let words = |line: &str| line.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(table.lines().any(|line| words(line) == "full 7 28.6 14.3 28.6 2"), "{table}");
    assert!(table.contains("\nfull: 7 cases\n") && table.contains("\n  full/check_space  "), "{table}");
    assert!(table.contains("\n  1. Check the Wi-Fi, then try again  "), "{table}");
}

/// Splits CSV text into rows of fields, RFC 4180 quoting undone.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let (mut rows, mut row, mut field) = (Vec::new(), Vec::new(), String::new());
    let (mut quoted, mut chars) = (false, text.chars().peekable());
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') if field.is_empty() => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\r') => assert_eq!(chars.next(), Some('\n'), "CRLF line ends"),
            (false, '\n') => panic!("a bare LF ends a CSV line"),
            (false, c) => field.push(c),
        }
        if !quoted && c == '\r' {
            row.push(std::mem::take(&mut field));
            rows.push(std::mem::take(&mut row));
        }
    }
    assert!(field.is_empty() && row.is_empty(), "the last line ends with CRLF");
    rows
}

#[tokio::test]
async fn csv_has_a_header_and_quotes_what_needs_it() {
    let (dir, flows, now) = (tempfile::tempdir().unwrap(), fixture_flows(), now());
    let store = seeded_sqlite(dir.path(), now).await;
    let csv = stats(flows.path(), &["--store", &store, "--since", "7d", "--format", "csv"]);
    assert!(csv.starts_with("symptom,symptom_title,cases,resolved,escalated,abandoned,open,"), "{csv}");
    assert!(
        csv.contains("\r\nfull,\"Storage full, \"\"really\"\"\",7,2,1,2,2,28.6,14.3,28.6,full,check_space,"),
        "{csv}"
    );
    let rows = parse_csv(&csv);
    let header = &rows[0];
    assert_eq!(header.len(), 21);
    assert!(rows.iter().all(|row| row.len() == header.len()), "{rows:?}");
    let column = |row: &[String], name: &str| row[header.iter().position(|h| h == name).unwrap()].clone();
    let keys: Vec<(String, String)> =
        rows[1..].iter().map(|row| (column(row, "symptom"), column(row, "step"))).collect();
    let key = |symptom: &str, step: &str| (symptom.to_owned(), step.to_owned());
    assert_eq!(
        keys,
        [
            key("full", "check_space"),
            key("full", "delete_backups"),
            key("full", "ask_for_help"),
            key("slow", "check_wifi"),
            key("", "")
        ]
    );
    let delete = &rows[2];
    assert_eq!(column(delete, "symptom_title"), "Storage full, \"really\"");
    assert_eq!(column(delete, "step_title"), "2. Delete old backups you no longer need.");
    let figures: Vec<String> = ["step_cases", "fixed", "not_fixed", "skipped", "step_abandoned", "step_escalated"]
        .iter()
        .chain(&["fixed_pct", "gave_up_pct"])
        .map(|name| column(delete, name))
        .collect();
    assert_eq!(figures, ["4", "1", "1", "0", "2", "0", "14.3", "28.6"]);
    assert_eq!(column(&rows[4], "symptom_title"), "Slow <network> & co");
    assert_eq!(column(&rows[5], "escalated_pct"), "100.0");
}

#[test]
fn bad_durations_and_unreachable_stores_get_friendly_errors() {
    let flows = fixture_flows();
    let flows = flows.path().to_str().unwrap();
    let friendly = |output: &Output, wanted: &str| {
        let error = stderr(output);
        assert!(!output.status.success(), "{error}");
        assert!(error.contains(wanted) && !error.contains("panicked"), "{error}");
        assert!(stdout(output).is_empty(), "{}", stdout(output));
    };
    let output = fixbot(&["stats", "--flows", flows, "--store", "memory:", "--since", "7x"], b"");
    friendly(&output, "`7x` is not a duration: write a number and s, m, h or d, such as 7d");
    assert_eq!(output.status.code(), Some(2), "a usage error");
    friendly(&fixbot(&["stats", "--flows", flows, "--since=-1d"], b""), "is not a duration");

    let dir = tempfile::tempdir().unwrap();
    let missing = format!("sqlite:{}", dir.path().join("nowhere.db").display());
    friendly(&fixbot(&["stats", "--flows", flows, "--store", &missing], b""), "there is no store at");
    assert!(!dir.path().join("nowhere.db").exists(), "no empty store is created");
    // Nothing listens on port 1.
    let refused = fixbot(&["stats", "--flows", flows, "--store", "postgres://fixbot:secret@127.0.0.1:1/fixbot"], b"");
    friendly(&refused, "cannot open the store at `postgres://fixbot:***@127.0.0.1:1/fixbot`");
    assert!(!stderr(&refused).contains("secret"), "{}", stderr(&refused));
    friendly(&fixbot(&["stats", "--flows", flows, "--store", "redis://x"], b""), "unknown store URL");

    let empty = stats(Path::new(flows), &["--store", "memory:", "--since", "24h"]);
    assert_eq!(empty, "No outcomes recorded in the last 24h.\n");
}

// --- The HTML report in headless Chromium ------------------------------------------------

/// Chromium (or Chrome), from `FIXBOT_TEST_CHROMIUM` or the PATH; `None`
/// with a loud note when there is none (`.ci/run` installs it).
fn chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("FIXBOT_TEST_CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
        .find(|candidate| candidate.is_file());
    if found.is_none() {
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "\n*** SKIPPED: no chromium on the PATH, so the HTML report was not rendered (apt-get install chromium) ***\n"
        );
    }
    found
}

/// Runs headless Chromium on `page` with `args` and a profile of its own.
fn run_chromium(chromium: &Path, page: &Path, args: &[&str]) -> Output {
    let profile = tempfile::tempdir().unwrap();
    let output = Command::new(chromium)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"])
        .args(["--disable-background-networking", "--disable-extensions", "--hide-scrollbars"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium runs");
    assert!(output.status.success(), "chromium failed: {}", stderr(&output));
    output
}

/// Measures every bar once the page is laid out, into `<pre id="probe">`:
/// its figures, its box and its track's width, its computed fill, and
/// whether it is what shows at its centre; with the page title, the
/// resources fetched and any overflow.
const PROBE: &str = r#"<script>
const bars = [...document.querySelectorAll('[data-bar]')].map((bar) => {
  bar.scrollIntoView({ block: 'center', inline: 'center' });
  const box = bar.getBoundingClientRect();
  const hit = document.elementFromPoint(box.x + box.width / 2, box.y + box.height / 2);
  return { kind: bar.dataset.bar, value: +bar.dataset.value, max: +bar.dataset.max, width: box.width,
           height: box.height, track: bar.previousElementSibling.getBoundingClientRect().width,
           fill: getComputedStyle(bar).fill, shown: hit === bar };
});
const probe = document.createElement('pre');
probe.id = 'probe';
probe.textContent = JSON.stringify({ title: document.title, bars,
  fetched: performance.getEntriesByType('resource').length,
  overflow: document.documentElement.scrollWidth - document.documentElement.clientWidth,
  tables: document.querySelectorAll('table').length, described: document.querySelectorAll('svg[role=img] > title + desc').length });
document.body.append(probe);
</script>"#;

#[tokio::test]
async fn the_html_report_renders_its_bars_in_chromium() {
    let (dir, flows, now) = (tempfile::tempdir().unwrap(), fixture_flows(), now());
    let store = seeded_sqlite(dir.path(), now).await;
    let report = dir.path().join("report.html");
    let table = stats(flows.path(), &["--store", &store, "--since", "7d", "--html", report.to_str().unwrap()]);
    assert!(table.starts_with("Outcomes of the last 7d"), "the format still goes to stdout: {table}");
    let html = std::fs::read_to_string(&report).unwrap();
    for fetch in ["http:", "https:", "src=", "<link", "<script", "@import", "url("] {
        assert!(!html.contains(fetch), "the report must be self-contained, found {fetch}");
    }
    assert!(html.contains("Slow &lt;network&gt; &amp; co") && !html.contains("Slow <network>"), "escaped");
    assert!(html.contains("Storage full, &quot;really&quot;"));

    let Some(chromium) = chromium() else { return };
    let probed = dir.path().join("probed.html");
    std::fs::write(&probed, html.replace("</body>", &format!("{PROBE}\n</body>"))).unwrap();
    let dom = stdout(&run_chromium(&chromium, &probed, &["--window-size=1280,900", "--dump-dom"]));
    let start = dom.find("<pre id=\"probe\">").expect("the probe ran") + "<pre id=\"probe\">".len();
    let text = &dom[start..start + dom[start..].find("</pre>").unwrap()];
    let probe: Value =
        serde_json::from_str(&text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")).unwrap();

    assert_eq!(probe["title"], "fixbot statistics: the last 7d");
    assert_eq!(probe["fetched"], 0, "nothing is fetched");
    assert_eq!(probe["overflow"], 0, "nothing sticks out sideways");
    // Per symptom: an ends chart and a steps chart, each beside its table; plus the overview.
    assert_eq!((&probe["tables"], &probe["described"]), (&json!(1 + 3 * 2), &json!(3 * 2)));
    let bars = probe["bars"].as_array().unwrap();
    // Four ends per symptom, and two bars (fixed, gave up) per step: 3 + 1 + 1 steps.
    assert_eq!(bars.len(), 3 * 4 + 5 * 2, "{bars:?}");
    let drawn: Vec<(&str, u64)> =
        bars.iter().map(|bar| (bar["kind"].as_str().unwrap(), bar["value"].as_u64().unwrap())).collect();
    assert_eq!(
        drawn[..10],
        [
            ("resolved", 2),
            ("escalated", 1),
            ("abandoned", 2),
            ("open", 2),
            ("fixed", 1),
            ("gave-up", 0),
            ("fixed", 1),
            ("gave-up", 2),
            ("fixed", 0),
            ("gave-up", 1)
        ]
    );
    // Every bar is as long as its share of its track, drawn wide enough to compare.
    for bar in bars {
        let figure = |name: &str| bar[name].as_f64().unwrap();
        let (value, width, height, track) = (figure("value"), figure("width"), figure("height"), figure("track"));
        assert!(track > 200.0, "{bar} has a track wide enough to read");
        if value == 0.0 {
            assert!(width < 0.01, "an empty bar has no length: {bar}");
            continue;
        }
        let expected = track * value / figure("max");
        assert!((width - expected).abs() < 1.0, "{bar} should be {expected:.1}px wide");
        assert!(height >= 8.0, "{bar} is tall enough to see");
        assert_eq!(bar["shown"], true, "{bar} is what shows at its centre");
        let fill = bar["fill"].as_str().unwrap();
        assert!(fill.starts_with("rgb(") && fill != "rgb(255, 255, 255)", "{bar} has a colour");
    }

    // A picture of it, to look at: target/tmp/stats-report.png.
    let screenshot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("stats-report.png");
    let _ = std::fs::remove_file(&screenshot);
    run_chromium(&chromium, &report, &["--window-size=1280,2400", &format!("--screenshot={}", screenshot.display())]);
    let png = std::fs::read(&screenshot).expect("a screenshot was written");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "a real picture, {} bytes", png.len());
}
