//! The command-line contract of DESIGN.md, exercised through the real binary:
//! `check`, `diagnose --json/--batch`, and `chat` over piped stdin, including
//! a kill -9 and resume with the SQLite store, and hostile input.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::support::{copy_flows, fixbot, fixbot_in, root, stderr, stdout};

const ICLOUD_FULL: &str = "This iPhone cannot be backed up because there is not enough iCloud storage available.";

#[test]
fn check_passes_on_the_shipped_flows() {
    let output = fixbot(&["check"], b"");
    assert!(output.status.success(), "{}{}", stdout(&output), stderr(&output));
    assert!(stdout(&output).contains("13 flows"), "{}", stdout(&output));
}

fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{} lacks {from:?}", path.display());
    std::fs::write(path, text.replacen(from, to, 1)).unwrap();
}

#[test]
fn check_reports_every_problem_of_a_broken_copy_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let flows = dir.path().join("flows");
    copy_flows(&flows);
    // An unknown key, a bad regex, a dangling goto, an unreachable step, an
    // over-long label and a wrong example, in different files.
    edit(&flows.join("server_outage.yaml"), "title:", "titel: oops\ntitle:");
    edit(&flows.join("usb_connection.yaml"), "- regex: '", "- regex: '(unclosed ");
    std::fs::write(flows.join("zz_broken.yaml"), format!(
        "title: Broken\nsummary: A broken flow.\nmatch:\n  - regex: 'zzz broken'\n    weight: 10\nexamples:\n  match: [\"nothing like it\"]\nsteps:\n  - id: one\n    text: One.\n    choices:\n      - {{ label: \"Go\", goto: nowhere }}\n      - {{ label: \"{}\", goto: resolved }}\n  - id: lonely\n    text: Nobody gets here.\n    choices:\n      - {{ label: Done, goto: resolved }}\n",
        "x".repeat(81)
    )).unwrap();
    std::fs::write(flows.join("bad name.yaml"), "title: x\n").unwrap();

    let output = fixbot_in(dir.path(), &["check"], b"");
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{out}");
    for expected in [
        "flows/server_outage.yaml:",
        "unknown field `titel`",
        "flows/usb_connection.yaml:",
        "invalid regex",
        "flows/zz_broken.yaml:12: goto `nowhere` names no step",
        "flows/zz_broken.yaml:13: choice",
        "flows/zz_broken.yaml:14: step `lonely` is unreachable",
        "flows/bad name.yaml: `bad name` is not a valid flow id",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
    // Every problem line has file:line where a line is known.
    assert!(
        out.lines().filter(|line| line.starts_with("flows/server_outage.yaml:")).all(|line| line
            .split(':')
            .nth(1)
            .unwrap()
            .parse::<u32>()
            .is_ok()),
        "{out}"
    );

    // Every command that loads flows refuses them the same way.
    for args in [&["diagnose", "hello"][..], &["chat"][..]] {
        let output = fixbot_in(dir.path(), args, b"");
        assert_eq!(output.status.code(), Some(1));
        let err = stderr(&output);
        assert!(err.contains("problem(s)") && err.contains("flows/zz_broken.yaml:12"), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn check_reports_a_wrong_example() {
    let dir = tempfile::tempdir().unwrap();
    let flows = dir.path().join("flows");
    copy_flows(&flows);
    std::fs::write(flows.join("zz_example.yaml"), "title: Example\nsummary: An example.\nmatch:\n  - regex: 'zzz example'\n    weight: 10\nexamples:\n  match:\n    - \"nothing like it\"\nsteps:\n  - id: one\n    text: One.\n").unwrap();
    let output = fixbot_in(dir.path(), &["check", "--flows", "flows"], b"");
    assert!(
        stdout(&output).contains("flows/zz_example.yaml:8: example \"nothing like it\" selects nothing"),
        "{}",
        stdout(&output)
    );
}

#[test]
fn diagnose_json_honours_the_contract() {
    let output = fixbot(&["diagnose", "--json", ICLOUD_FULL], b"");
    assert!(output.status.success(), "{}", stderr(&output));
    let value: Value = serde_json::from_str(stdout(&output).trim()).unwrap();
    assert_eq!(value["symptom"], "cloud_storage_full");
    assert_eq!(value["platform"], "ios");
    assert!(value["score"].as_u64().unwrap() > 0);
    assert_eq!(value["candidates"][0]["symptom"], "cloud_storage_full");
    assert!(value["candidates"].as_array().unwrap().iter().all(|c| c["score"].is_u64()));
    assert!(value["captures"].is_object());
    let keys: Vec<&String> = value.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["candidates", "captures", "platform", "score", "symptom"]);

    let output = fixbot(&["diagnose", "--json"], b"what a lovely day");
    let value: Value = serde_json::from_str(stdout(&output).trim()).unwrap();
    assert_eq!(value["symptom"], Value::Null);
    assert_eq!(value["platform"], Value::Null);
    assert_eq!(value["score"], 0);
}

#[test]
fn diagnose_batch_answers_each_line_in_order() {
    let input = format!(
        "{}\n\"hello there\"\nnot json\n{}\n",
        serde_json::to_string(ICLOUD_FULL).unwrap(),
        serde_json::to_string("Backup couldn't complete").unwrap()
    );
    let output = fixbot(&["diagnose", "--batch"], input.as_bytes());
    assert!(output.status.success(), "{}", stderr(&output));
    let lines: Vec<Value> = stdout(&output).lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[0]["symptom"], "cloud_storage_full");
    assert_eq!(lines[1]["symptom"], Value::Null);
    assert!(lines[2]["error"].as_str().unwrap().contains("line 3"));
    assert!(lines[3].get("error").is_none());
}

/// Walks the example through piped chat, answering "Still failing"
/// until the case ends.
#[test]
fn chat_walks_the_icloud_example_to_an_end() {
    let mut input = format!("{ICLOUD_FULL}\n");
    for _ in 0..20 {
        input.push_str("Still failing\n");
    }
    let output = fixbot(&["chat", "--user", "ann"], input.as_bytes());
    let out = stdout(&output);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(out.contains("Cloud storage"), "{out}");
    assert!(out.contains("[1] "), "{out}");
    assert!(out.contains("handing your case to a person") || out.contains("backup works again"), "{out}");

    // Answering with the first button each time ends the case too.
    let output = fixbot(&["chat"], format!("{ICLOUD_FULL}\n{}", "1\n".repeat(20)).as_bytes());
    let out = stdout(&output);
    assert!(out.contains("handing your case to a person") || out.contains("backup works again"), "{out}");
}

#[test]
fn chat_resumes_after_kill_with_the_sqlite_store() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("cases.db").display());
    let mut child = Command::new(env!("CARGO_BIN_EXE_fixbot"))
        .args(["chat", "--store", &url, "--user", "ann"])
        .current_dir(root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    writeln!(stdin, "{ICLOUD_FULL}").unwrap();
    writeln!(stdin, "Still failing").unwrap();
    stdin.flush().unwrap();
    // Read until the second step has been shown, then kill -9 mid-case.
    let mut seen = Vec::new();
    let mut choice_blocks = 0;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if line.starts_with("[1] ") {
            choice_blocks += 1;
        }
        seen.push(line);
        if choice_blocks == 2 {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let last_step =
        seen.iter().rev().skip_while(|line| line.starts_with('[')).find(|line| !line.is_empty()).unwrap().clone();

    let output = fixbot(&["chat", "--store", &url, "--user", "ann"], b"");
    let out = stdout(&output);
    assert!(out.contains("Welcome back"), "{out}");
    assert!(out.contains(&last_step), "resumes at {last_step:?}:\n{out}");

    let output = fixbot(&["chat", "--store", &url, "--user", "bob"], b"");
    assert!(!stdout(&output).contains("Welcome back"), "another user has no case");
}

#[test]
fn chat_answers_hostile_input_without_losing_the_case() {
    let mut input = Vec::new();
    input.extend_from_slice(format!("{ICLOUD_FULL}\n").as_bytes());
    input.extend_from_slice(b"\n");
    input.extend_from_slice(b"   \t \n");
    input.extend_from_slice(b"\xff\xfe\xfd\n");
    input.extend_from_slice("\u{1b}[2J\u{7}\u{202e}\n".as_bytes());
    input.extend_from_slice("🔥🔥🔥\n".as_bytes());
    input.extend_from_slice(&vec![b'a'; 1 << 20]);
    input.extend_from_slice(b"\n");
    input.extend_from_slice(b"help\n");
    let output = fixbot(&["chat"], &input);
    let out = stdout(&output);
    let err = stderr(&output);
    assert!(output.status.success(), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    for expected in ["message was empty", "wasn't readable text", "only read text", "very long", "You can also type"] {
        assert!(out.contains(expected), "missing {expected:?}");
    }
    assert!(!out.contains('\u{202e}') && !out.contains('\u{1b}'), "control characters are never echoed");
    // The case survived it all: help still shows the first step, choices and all.
    let first_step = out.split("\n> ").nth(1).unwrap().trim_end();
    let choices: String = first_step.lines().filter(|line| line.starts_with('[')).collect::<Vec<_>>().join("\n");
    assert!(!choices.is_empty(), "{first_step}");
    assert!(out.trim_end().ends_with(&choices), "{}", &out[out.len().saturating_sub(500)..]);
}

#[test]
fn migrate_creates_the_tables() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("new.db").display());
    let output = fixbot(&["migrate", "--store", &url], b"");
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("up to date"));
    assert!(dir.path().join("new.db").exists());
    let output = fixbot(&["migrate", "--store", "redis://nope"], b"");
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("unknown store URL"), "{}", stderr(&output));
    if let Some(url) = crate::store_contract::postgres_url() {
        // A schema of its own: the database is shared with other tests and checkouts.
        let schema = crate::store_contract::TestSchema::new(&url);
        let output = fixbot(&["migrate", "--store", &schema.create()], b"");
        assert!(output.status.success(), "{}", stderr(&output));
    }
}

#[test]
fn forget_deletes_a_persons_case_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("cases.db").display());
    fixbot(&["chat", "--store", &url, "--user", "ann"], format!("{ICLOUD_FULL}\n").as_bytes());
    let output = fixbot(&["forget", "--store", &url, "--platform", "console", "--user", "ann"], b"");
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("deleted 1 stored record"), "{}", stdout(&output));
    let output = fixbot(&["chat", "--store", &url, "--user", "ann"], b"");
    assert!(!stdout(&output).contains("Welcome back"), "the case is gone");
}

/// Issue "Speaking the user's language": an English edit makes its
/// translations stale (a warning, exit 0); `--bless-translations` records
/// the new English hash after review, and a bad translation fails the check.
#[test]
fn check_warns_of_stale_translations_and_blesses_them() {
    let dir = tempfile::tempdir().unwrap();
    let flows = dir.path().join("flows");
    copy_flows(&flows);
    let spanish = flows.join("i18n/es");
    std::fs::create_dir_all(&spanish).unwrap();
    for entry in std::fs::read_dir(root().join("flows/i18n/es")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, spanish.join(path.file_name().unwrap())).unwrap();
    }
    edit(&flows.join("cloud_storage_full.yaml"), "Keep the backup of the phone", "Always keep the backup of the phone");

    let output = fixbot_in(dir.path(), &["check"], b"");
    let out = stdout(&output);
    assert!(output.status.success(), "{out}");
    assert!(out.contains("warning: flows/i18n/es/cloud_storage_full.yaml:"), "{out}");
    assert!(out.contains("es: step `delete_old_backups` is stale"), "{out}");
    assert!(out.contains("warning: flows/i18n/fr: fr: no translations yet"), "{out}");

    let output = fixbot_in(dir.path(), &["check", "--bless-translations"], b"");
    assert!(stdout(&output).contains("blessed 1 stale translation(s)"), "{}", stdout(&output));
    let output = fixbot_in(dir.path(), &["check"], b"");
    assert!(!stdout(&output).contains("is stale"), "{}", stdout(&output));

    edit(&spanish.join("cloud_storage_full.yaml"), "{needed|el tamaño", "{necesario|el tamaño");
    let output = fixbot_in(dir.path(), &["check"], b"");
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    assert!(
        stdout(&output).contains("slots {necesario} differ from the English slots {needed}"),
        "{}",
        stdout(&output)
    );
}
