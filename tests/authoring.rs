//! The content authors' commands through the real binary: `fixbot graph`
//! (Mermaid checked line by line against its grammar, DOT read by Graphviz
//! itself) and `fixbot test` on passing, failing and malformed transcripts.

use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Stdio};

use regex::Regex;

use crate::support::{copy_flows, fixbot, fixbot_in, root, shipped_flows, stderr, stdout};

/// A flow whose texts and labels hold everything a diagram syntax could trip
/// on: quotes, backslashes, brackets, braces, pipes, `#`, `&`, angle brackets,
/// backticks, a line break, and text beyond ASCII.
const HOSTILE: &str = r##"title: 'Quotes "q" & <b>tags</b> #1 | [x] {y} — Ça 日本'
summary: A flow whose words are hard to draw.
match:
  - regex: 'zzz hostile'
    weight: 10
steps:
  - id: first
    text: 'Type `C:\Users\N\"x"` [a] #2; a|b <br> & → 🔥'
    choices:
      - { label: "Say \"yes\" | {ok} [1]", goto: next }
      - { label: "two\nlines", goto: flow:usb_connection }
      - { label: "#quot; `tick` \\N", goto: escalate }
  - id: iphone_only
    ios: Only on the iPhone.
  - id: end
    text: 'The end; %% not a comment'
"##;

fn hostile_flows(dir: &Path) {
    copy_flows(&dir.join("flows"));
    std::fs::write(dir.join("flows/zz_hostile.yaml"), HOSTILE).unwrap();
}

/// Checks Mermaid output line by line against the few shapes `graph` writes,
/// and that every label's text carries no character Mermaid would read as
/// syntax. Returns the node ids declared.
fn assert_mermaid(text: &str) -> HashSet<String> {
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("flowchart TD"), "{text}");
    // Label text: no quote, `#` only in numeric entities, `<` only in <br>.
    let label = r##"(?:[^"#<>`|\n]|#[0-9]+;|<br>)*"##;
    let node = Regex::new(&format!(
        r#"^    ([a-z0-9_]+)(?:\(\["{label}"\]\)|\["{label}"\]|\(\(\("{label}"\)\)\)|\{{\{{"{label}"\}}\}}|\[\["{label}"\]\])$"#
    ))
    .unwrap();
    let edge = Regex::new(&format!(r#"^    ([a-z0-9_]+) -->(?:\|"{label}"\|)? ([a-z0-9_]+)$"#)).unwrap();
    let class_def = Regex::new(r"^    classDef [a-z_]+ [a-z0-9:#,.\- ]+$").unwrap();
    let class = Regex::new(r"^    class ([a-z0-9_,]+) [a-z_]+$").unwrap();
    let mut nodes = HashSet::new();
    let mut used = Vec::new();
    for line in lines {
        if let Some(found) = node.captures(line) {
            assert!(nodes.insert(found[1].to_owned()), "node declared twice: {line}");
        } else if let Some(found) = edge.captures(line) {
            used.extend([found[1].to_owned(), found[2].to_owned()]);
        } else if let Some(found) = class.captures(line) {
            used.extend(found[1].split(',').map(str::to_owned));
        } else {
            assert!(class_def.is_match(line), "not Mermaid `graph` writes: {line:?}\n{text}");
        }
    }
    for id in used {
        assert!(nodes.contains(&id), "`{id}` is used but not declared:\n{text}");
    }
    nodes
}

/// Checks DOT output: a `digraph` whose every statement is a node or an
/// edge with well-formed quoted strings; then, where Graphviz is installed
/// (CI installs it), that `dot` reads it. Returns the SVG when drawn.
fn assert_dot(text: &str) -> Option<String> {
    let string = r#""(?:[^"\\\n]|\\.)*""#;
    let attributes = format!(
        r#"(?: \[[a-z]+={string_or_word}(?:, [a-z]+={string_or_word})*\])?"#,
        string_or_word = format!("(?:{string}|[a-z0-9]+)")
    );
    let node = Regex::new(&format!(r"^    {string}{attributes};$")).unwrap();
    let edge = Regex::new(&format!(r"^    {string} -> {string}{attributes};$")).unwrap();
    let defaults = Regex::new(&format!(r"^    (?:node|edge){attributes};$")).unwrap();
    let mut lines = text.lines();
    assert!(Regex::new(&format!(r"^digraph {string} \{{$")).unwrap().is_match(lines.next().unwrap()), "{text}");
    assert_eq!(text.lines().last(), Some("}"));
    for line in lines.filter(|line| *line != "}") {
        assert!(
            node.is_match(line) || edge.is_match(line) || defaults.is_match(line),
            "not DOT `graph` writes: {line:?}"
        );
    }

    let mut dot = match Command::new("dot").arg("-V").output() {
        Ok(_) => Command::new("dot"),
        Err(_) if std::env::var_os("CI").is_some() => panic!("Graphviz `dot` is missing; .ci/run installs it"),
        Err(_) => {
            eprintln!("SKIPPED: Graphviz `dot` is not installed; the DOT output was checked by shape only");
            return None;
        }
    };
    let mut child =
        dot.arg("-Tsvg").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    use std::io::Write as _;
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success() && output.stderr.is_empty(), "dot: {}\n{text}", stderr(&output));
    Some(stdout(&output))
}

#[test]
fn graph_draws_a_shipped_flow_in_mermaid_by_id_or_file() {
    let output = fixbot(&["graph", "corrupt_backup"], b"");
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    let nodes = assert_mermaid(&text);
    let flows = shipped_flows();
    let flow = flows.get("corrupt_backup").unwrap();
    for step in &flow.steps {
        assert!(nodes.contains(&format!("step_{}", step.id)), "step {} is drawn", step.id);
    }
    // The ends, each in its own shape and class; platforms parting ways are labelled.
    for expected in [
        "    start([\"Backup is corrupt\"])",
        "    resolved(((\"resolved\")))",
        "    escalate{{\"escalate: a person takes over\"}}",
        "    flow_usb_connection[[\"flow:usb_connection<br>",
        "    class resolved resolved",
        "    class escalate escalated",
        "-->|\"Still failing (Android)\"|",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }

    let by_file = fixbot(&["graph", "flows/corrupt_backup.yaml", "--format", "mermaid"], b"");
    assert_eq!(stdout(&by_file), text);
}

#[test]
fn graph_draws_every_shipped_flow_in_dot_that_graphviz_reads() {
    for flow in shipped_flows().iter() {
        let output = fixbot(&["graph", &flow.id, "--format", "dot"], b"");
        assert!(output.status.success(), "{}", stderr(&output));
        if let Some(svg) = assert_dot(&stdout(&output)) {
            assert!(svg.contains(&flow.steps[0].id), "{}: the first step is drawn", flow.id);
        }
    }
}

#[test]
fn graph_escapes_every_label() {
    let dir = tempfile::tempdir().unwrap();
    hostile_flows(dir.path());
    let output = fixbot_in(dir.path(), &["graph", "zz_hostile"], b"");
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    let nodes = assert_mermaid(&text);
    assert!(nodes.contains("step_end"), "a step named `end` (a Mermaid keyword) is drawn");
    for expected in
        ["#34;q#34;", "#35;1", "#60;b#62;", "#124;", "#96;C:\\Users\\N\\#34;x#34;#96;", "two<br>lines", "Ça 日本", "🔥"]
    {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }

    let output = fixbot_in(dir.path(), &["graph", "zz_hostile", "--flows", "flows", "--format", "dot"], b"");
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.contains(r#"Type `C:\\Users\\N\\\"x\"`"#) && text.contains(r#"two\nlines"#), "{text}");
    if let Some(svg) = assert_dot(&text) {
        for expected in
            ["Quotes &quot;q&quot; &amp; &lt;b&gt;tags&lt;/b&gt; #1 | [x] {y} — Ça 日本", "two", "lines", "🔥"]
        {
            assert!(svg.contains(expected), "the drawing lacks {expected:?}:\n{svg}");
        }
    }
}

#[test]
fn graph_of_an_unknown_flow_lists_the_flows() {
    let output = fixbot(&["graph", "no_such_flow"], b"");
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(err.contains("there is no flow `no_such_flow`"), "{err}");
    assert!(err.contains("cloud_storage_full, computer_storage_full"), "{err}");
    assert!(stdout(&output).is_empty());
}

/// A copy of the shipped flows with some transcripts beside them.
fn flows_with_transcripts(dir: &Path, transcripts: &[(&str, &str)]) {
    copy_flows(&dir.join("flows"));
    std::fs::create_dir_all(dir.join("flows/transcripts")).unwrap();
    for (name, text) in transcripts {
        std::fs::write(dir.join("flows/transcripts").join(name), text).unwrap();
    }
}

fn shipped_transcript(name: &str) -> String {
    std::fs::read_to_string(root().join("flows/transcripts").join(name)).unwrap()
}

#[test]
fn test_passes_on_the_shipped_transcripts() {
    let output = fixbot(&["test"], b"");
    let out = stdout(&output);
    assert!(output.status.success(), "{out}{}", stderr(&output));
    let count = std::fs::read_dir(root().join("flows/transcripts")).unwrap().count();
    assert_eq!(out.lines().filter(|line| line.starts_with("ok      flows/transcripts/")).count(), count, "{out}");
    assert!(out.ends_with(&format!("{count} transcript(s): {count} ok, 0 failed\n")), "{out}");
}

#[test]
fn test_shows_a_diff_for_a_changed_transcript_and_bless_rewrites_it() {
    let original = shipped_transcript("cloud_storage_full.txt");
    let line = original.lines().position(|line| line.starts_with("It looks like this")).unwrap() + 1;
    let changed = original.replacen("It looks like this", "It seems to be", 1);
    let dir = tempfile::tempdir().unwrap();
    flows_with_transcripts(
        dir.path(),
        &[("cloud_storage_full.txt", &changed), ("server_outage.txt", &shipped_transcript("server_outage.txt"))],
    );

    let output = fixbot_in(dir.path(), &["test", "--flows", "flows"], b"");
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{out}");
    let failed = format!("FAILED  flows/transcripts/cloud_storage_full.txt:{line}: the bot now answers differently");
    assert!(out.contains(&failed), "missing {failed:?} in:\n{out}");
    let said = original.lines().nth(line - 1).unwrap();
    assert!(out.contains(&format!("\n    - {}\n", changed.lines().nth(line - 1).unwrap())), "{out}");
    assert!(out.contains(&format!("\n    + {said}\n")), "{out}");
    assert!(out.contains("ok      flows/transcripts/server_outage.txt"), "{out}");
    assert!(out.ends_with("2 transcript(s): 1 ok, 1 failed\n"), "{out}");

    // A file named on the command line is played alone.
    let output = fixbot_in(dir.path(), &["test", "flows/transcripts/server_outage.txt"], b"");
    assert!(output.status.success(), "{}", stdout(&output));

    let output = fixbot_in(dir.path(), &["test", "--bless"], b"");
    assert!(output.status.success(), "{}", stdout(&output));
    assert!(stdout(&output).contains("blessed flows/transcripts/cloud_storage_full.txt"));
    let blessed = std::fs::read_to_string(dir.path().join("flows/transcripts/cloud_storage_full.txt")).unwrap();
    assert_eq!(blessed, original);
}

#[test]
fn test_reports_malformed_transcripts_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    flows_with_transcripts(
        dir.path(),
        &[
            ("bad_wait.txt", "# waits too vaguely\n> hello\n~ wait soon\n> hi\n"),
            ("no_messages.txt", "# only a comment\n"),
            ("unanswered.txt", "> hello\n"),
        ],
    );
    std::fs::write(dir.path().join("flows/transcripts/not_utf8.txt"), b"> \xff\xfe\n").unwrap();
    let output = fixbot_in(dir.path(), &["test", "--flows", "flows", "flows/transcripts", "missing.txt"], b"");
    let out = stdout(&output);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{out}{err}");
    assert!(!err.contains("panicked"), "{err}");
    for expected in [
        "FAILED  flows/transcripts/bad_wait.txt:3: cannot read duration `soon`",
        "FAILED  flows/transcripts/no_messages.txt:1: no `> message` line",
        "FAILED  flows/transcripts/not_utf8.txt: the file is not UTF-8 text",
        "FAILED  missing.txt: cannot read the file",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
    assert!(out.ends_with("5 transcript(s): 0 ok, 5 failed\n"), "{out}");

    // No transcripts at all, and flows that do not load, are said plainly.
    let empty = tempfile::tempdir().unwrap();
    copy_flows(&empty.path().join("flows"));
    std::fs::create_dir_all(empty.path().join("flows/transcripts")).unwrap();
    let output = fixbot_in(empty.path(), &["test"], b"");
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("there are no transcript files (*.txt) in flows/transcripts"),
        "{}",
        stderr(&output)
    );
    std::fs::write(empty.path().join("flows/zz_broken.yaml"), "title: [").unwrap();
    let output = fixbot_in(empty.path(), &["test", "--flows", "flows"], b"");
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("flows/zz_broken.yaml:"), "{}", stderr(&output));
}
