//! The flow format's JSON Schemas (`flows/schema.json`, `flows/bot.schema.json`):
//! the committed files are what the loader's own types generate, every shipped
//! file names its schema and validates against it with a real validator, and
//! what the schema refuses the loader refuses too.

use std::path::Path;

use fixbot_core::flow::schema::schema_files;
use fixbot_core::flow::{Flows, Source};
use serde_json::Value;

use crate::support::root;

/// The one command that rewrites the committed schemas.
const REGENERATE: &str = "FIXBOT_BLESS=1 cargo test schema";

#[test]
fn committed_schemas_are_current() {
    let bless = std::env::var_os("FIXBOT_BLESS").is_some();
    let mut stale = Vec::new();
    for file in schema_files() {
        let path = root().join("flows").join(file.name);
        if std::fs::read_to_string(&path).ok().as_deref() == Some(file.text.as_str()) {
            continue;
        }
        if bless {
            std::fs::write(&path, &file.text).unwrap();
        } else {
            stale.push(format!("flows/{}", file.name));
        }
    }
    assert!(
        stale.is_empty(),
        "{} no longer match(es) the flow types; regenerate with `{REGENERATE}` and commit the result",
        stale.join(" and ")
    );
}

fn committed_schema(name: &str) -> Value {
    let text = std::fs::read_to_string(root().join("flows").join(name)).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The schema a file of `flows/` is written against, by its name.
fn schema_name(path: &Path) -> &'static str {
    if path.file_name().unwrap() == "_bot.yaml" { "bot.schema.json" } else { "schema.json" }
}

/// Validates `yaml` (as the YAML parser the loader uses reads it) against
/// the committed schema; returns each error as `path: reason`.
fn schema_errors(schema: &str, yaml: &str) -> Vec<String> {
    let validator = jsonschema::draft7::new(&committed_schema(schema)).unwrap();
    let document: Value = fixbot_core::yaml::from_str(yaml).unwrap();
    validator.iter_errors(&document).map(|error| format!("{}: {error}", error.instance_path())).collect()
}

#[test]
fn every_shipped_file_names_and_follows_its_schema() {
    let dir = root().join("flows");
    let mut paths: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|entry| entry.unwrap().path()).collect();
    paths.retain(|path| path.extension().is_some_and(|ext| ext == "yaml"));
    paths.sort();
    assert!(paths.len() > 10, "{paths:?}");
    let mut problems = Vec::new();
    for path in &paths {
        let text = std::fs::read_to_string(path).unwrap();
        let schema = schema_name(path);
        let modeline = format!("# yaml-language-server: $schema=./{schema}");
        if text.lines().next() != Some(modeline.as_str()) {
            problems.push(format!("{}: the first line must be `{modeline}`", path.display()));
        }
        for error in schema_errors(schema, &text) {
            problems.push(format!("{}: {error}", path.display()));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The shipped `_bot.yaml` with one flow file beside it, through the loader.
fn loads(flow: &str) -> bool {
    let bot = std::fs::read_to_string(root().join("flows/_bot.yaml")).unwrap();
    Flows::from_sources(vec![
        Source { path: "flows/_bot.yaml".into(), text: bot },
        Source { path: "flows/fixture.yaml".into(), text: flow.to_owned() },
    ])
    .is_ok()
}

const VALID: &str = "\
# yaml-language-server: $schema=./schema.json
title: Fixture
summary: A flow for the schema tests.
match:
  - regex: 'zzz fixture'
    weight: 10
steps:
  - id: first
    text: First.
  - id: iphone_only
    ios: Only on iPhone.
    choices:
      - { label: \"Done\", goto: resolved }
      - { label: \"Elsewhere\", goto: flow:fixture }
      - { label: \"Again\", goto: first }
      - { label: \"Person\", goto: escalate }
";

#[test]
fn the_schema_and_the_loader_agree_on_good_and_broken_flows() {
    assert!(loads(VALID), "the fixture loads");
    assert_eq!(schema_errors("schema.json", VALID), Vec::<String>::new());
    for (what, from, to) in [
        ("an unknown key", "summary:", "sumary:"),
        ("a missing title", "title: Fixture\n", ""),
        ("a step without text", "    text: First.\n", ""),
        ("a weight of 0", "weight: 10", "weight: 0"),
        ("a goto with spaces inside", "goto: first", "goto: \"first step\""),
        ("a step id with capitals", "id: first", "id: First"),
        (
            "an empty choice list",
            "    ios: Only on iPhone.\n    choices:\n",
            "    ios: Only on iPhone.\n    choices: []\n    x:\n",
        ),
        ("an over-long label", "label: \"Done\"", &format!("label: \"{}\"", "x".repeat(81))),
        ("no steps", "steps:\n", "steps: []\nold_steps:\n"),
    ] {
        assert!(VALID.contains(from), "{what}: {from:?}");
        let broken = VALID.replacen(from, to, 1);
        assert!(!loads(&broken), "the loader accepts {what}");
        assert!(!schema_errors("schema.json", &broken).is_empty(), "the schema accepts {what}");
    }
}
