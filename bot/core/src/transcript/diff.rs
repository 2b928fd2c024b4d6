//! A line diff between a transcript file and what the engine says now,
//! shown as hunks with a little context, each headed by the file's line.

use std::fmt::Write as _;

/// Unchanged lines shown around each change.
const CONTEXT: usize = 2;
/// Beyond this many cells the middle is shown as replaced whole rather than
/// aligned, so a runaway transcript cannot take the memory of the table.
const MAX_CELLS: usize = 4_000_000;

/// One line of a diff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change<'a> {
    /// In both texts.
    Same(&'a str),
    /// In the file only.
    Removed(&'a str),
    /// In the engine's output only.
    Added(&'a str),
}

/// A run of changes with their context, starting at `line` of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hunk<'a> {
    /// 1-based line of the file where the hunk starts.
    pub line: usize,
    /// The hunk's lines in order.
    pub changes: Vec<Change<'a>>,
}

impl Hunk<'_> {
    /// 1-based line of the file where the hunk's first change is.
    pub fn changed_line(&self) -> usize {
        self.line + self.changes.iter().take_while(|change| matches!(change, Change::Same(_))).count()
    }
}

/// The hunks that turn `expected` into `actual`; empty when they are equal.
pub fn diff_lines<'a>(expected: &'a str, actual: &'a str) -> Vec<Hunk<'a>> {
    let changes = align(&expected.lines().collect::<Vec<_>>(), &actual.lines().collect::<Vec<_>>());
    let mut hunks: Vec<Hunk> = Vec::new();
    // The file line each change sits at, and whether it is near a change.
    let mut line = 1;
    let mut lines = Vec::with_capacity(changes.len());
    for change in &changes {
        lines.push(line);
        if !matches!(change, Change::Added(_)) {
            line += 1;
        }
    }
    let changed: Vec<usize> =
        changes.iter().enumerate().filter(|(_, c)| !matches!(c, Change::Same(_))).map(|(i, _)| i).collect();
    let mut index = 0;
    while index < changed.len() {
        let start = changed[index].saturating_sub(CONTEXT);
        let mut end = changed[index];
        // Changes closer than two contexts apart share a hunk.
        while index + 1 < changed.len() && changed[index + 1] <= end + 2 * CONTEXT + 1 {
            index += 1;
            end = changed[index];
        }
        let end = (end + CONTEXT + 1).min(changes.len());
        hunks.push(Hunk { line: lines[start], changes: changes[start..end].to_vec() });
        index += 1;
    }
    hunks
}

/// Renders hunks for a person: a `path:line` header per hunk naming its first
/// change, then the lines marked `-` (only in the file), `+` (only in the
/// engine's output) or blank.
pub fn render_hunks(path: &str, hunks: &[Hunk], indent: &str) -> String {
    let mut out = String::new();
    for hunk in hunks {
        let _ = writeln!(out, "{indent}{path}:{}", hunk.changed_line());
        for change in &hunk.changes {
            let (mark, text) = match change {
                Change::Same(text) => (' ', text),
                Change::Removed(text) => ('-', text),
                Change::Added(text) => ('+', text),
            };
            let _ = writeln!(out, "{indent}{mark} {text}");
        }
    }
    out
}

/// Aligns two line lists on a longest common subsequence, after taking off
/// their common start and end.
fn align<'a>(a: &[&'a str], b: &[&'a str]) -> Vec<Change<'a>> {
    let prefix = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let suffix = a[prefix..].iter().rev().zip(b[prefix..].iter().rev()).take_while(|(x, y)| x == y).count();
    let (middle_a, middle_b) = (&a[prefix..a.len() - suffix], &b[prefix..b.len() - suffix]);
    let mut changes: Vec<Change> = a[..prefix].iter().map(|line| Change::Same(line)).collect();
    if (middle_a.len() + 1) * (middle_b.len() + 1) > MAX_CELLS {
        changes.extend(middle_a.iter().map(|line| Change::Removed(line)));
        changes.extend(middle_b.iter().map(|line| Change::Added(line)));
    } else {
        // table[i][j]: length of the common subsequence of a[i..] and b[j..].
        let width = middle_b.len() + 1;
        let mut table = vec![0u32; (middle_a.len() + 1) * width];
        for i in (0..middle_a.len()).rev() {
            for j in (0..middle_b.len()).rev() {
                table[i * width + j] = if middle_a[i] == middle_b[j] {
                    table[(i + 1) * width + j + 1] + 1
                } else {
                    table[(i + 1) * width + j].max(table[i * width + j + 1])
                };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < middle_a.len() || j < middle_b.len() {
            if i < middle_a.len() && j < middle_b.len() && middle_a[i] == middle_b[j] {
                changes.push(Change::Same(middle_a[i]));
                i += 1;
                j += 1;
            } else if i < middle_a.len()
                && (j == middle_b.len() || table[(i + 1) * width + j] >= table[i * width + j + 1])
            {
                // Removals first: the file's line, then what replaces it.
                changes.push(Change::Removed(middle_a[i]));
                i += 1;
            } else {
                changes.push(Change::Added(middle_b[j]));
                j += 1;
            }
        }
    }
    changes.extend(a[a.len() - suffix..].iter().map(|line| Change::Same(line)));
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_texts_have_no_hunks() {
        assert!(diff_lines("a\nb\n", "a\nb\n").is_empty());
    }

    #[test]
    fn a_changed_line_is_shown_with_its_context_and_file_line() {
        let expected = "1\n2\n3\n4\n5\n6\n7\n8\n9\n";
        let actual = "1\n2\n3\n4\nfive\n6\n7\n8\n9\n";
        let hunks = diff_lines(expected, actual);
        assert_eq!(hunks.len(), 1);
        assert_eq!(hunks[0].line, 3);
        assert_eq!(render_hunks("t.txt", &hunks, ""), "t.txt:5\n  3\n  4\n- 5\n+ five\n  6\n  7\n");
    }

    #[test]
    fn far_apart_changes_get_their_own_hunks_and_lines() {
        let expected: String = (1..=20).map(|n| format!("{n}\n")).collect();
        let actual = expected.replacen("2\n", "two\n", 1).replacen("18\n", "", 1) + "21\n";
        let hunks = diff_lines(&expected, &actual);
        let lines: Vec<usize> = hunks.iter().map(|hunk| hunk.line).collect();
        assert_eq!(lines, [1, 16]);
        assert!(hunks[1].changes.contains(&Change::Removed("18")));
        assert!(hunks[1].changes.contains(&Change::Added("21")));
    }
}
