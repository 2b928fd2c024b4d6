//! The content authors' commands through the real binary: `fixbot test` on
//! passing, failing and malformed transcripts.

use std::path::Path;

use crate::support::{copy_flows, fixbot, fixbot_in, root, stderr, stdout};

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
