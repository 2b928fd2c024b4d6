//! Loading in two stages: parse each file into its raw form, then validate
//! every flow against the others and build the matcher. Problems are
//! collected, never returned early, so an author sees all of them at once.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use super::bot::{Bot, RawBot, to_label, to_template};
use super::i18n;
use super::raw::{RawChoice, RawFlow, RawStep};
use super::{Choice, Flow, FlowErrors, Flows, Goto, MAX_BUTTONS, MAX_CHOICES, Problems, Step};
use crate::flow::Platform;
use crate::markup::Template;
use crate::matcher::{BuildError, Compiled, Matcher, Owner, PatternSpec, Verdict};
use crate::yaml::{self, Spanned, line_of};

/// The text of one flow file and the path it is reported under.
#[derive(Debug, Clone)]
pub struct Source {
    /// Path of the file; its stem is the flow id.
    pub path: PathBuf,
    /// The YAML text.
    pub text: String,
}

/// Reads every `*.yaml` file of `dir` and loads them.
pub(super) fn load_dir(dir: &Path) -> Result<Flows, FlowErrors> {
    let mut problems = Problems::default();
    problems.set_file(dir);
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) => {
            problems.push(0, format!("cannot read the flows directory: {error}"));
            return Err(FlowErrors(problems.all));
        }
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml" || ext == "yml"))
        .collect();
    // Translations: `i18n/<lang>/*.yaml`, for any folder name; the loader
    // reports folders that name no language it knows.
    if let Ok(langs) = std::fs::read_dir(dir.join("i18n")) {
        for lang in langs.filter_map(|entry| entry.ok().map(|entry| entry.path())).filter(|path| path.is_dir()) {
            if let Ok(files) = std::fs::read_dir(&lang) {
                paths.extend(
                    files
                        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
                        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml" || ext == "yml")),
                );
            }
        }
    }
    paths.sort();
    let mut sources = Vec::with_capacity(paths.len());
    for path in paths {
        match std::fs::read(&path) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => sources.push(Source { path, text }),
                Err(_) => {
                    problems.set_file(&path);
                    problems.push(0, "the file is not UTF-8 text");
                }
            },
            Err(error) => {
                problems.set_file(&path);
                problems.push(0, format!("cannot read the file: {error}"));
            }
        }
    }
    match from_sources(sources) {
        Ok(flows) if problems.count() == 0 => Ok(flows),
        Ok(_) => Err(FlowErrors(problems.all)),
        Err(FlowErrors(more)) => {
            problems.all.extend(more);
            Err(FlowErrors(problems.all))
        }
    }
}

/// A flow file parsed into its raw form, with its id and version.
struct Parsed {
    id: String,
    path: PathBuf,
    version: u64,
    raw: RawFlow,
}

pub(super) fn from_sources(mut sources: Vec<Source>) -> Result<Flows, FlowErrors> {
    sources.sort_by(|a, b| a.path.cmp(&b.path));
    let mut problems = Problems::default();
    let mut bot = None;
    let mut platform_specs = Vec::new();
    let mut parsed = Vec::new();
    let mut bot_path = None;
    let mut translations = Vec::new();

    for source in &sources {
        problems.set_file(&source.path);
        if source.path.parent().and_then(Path::parent).and_then(Path::file_name).is_some_and(|name| name == "i18n") {
            match i18n::lang_of(&source.path) {
                Some(lang) => translations.push(i18n::Input { lang, path: &source.path, text: &source.text }),
                None => problems.push(0, "translations live in `i18n/<code>/` with code es, fr, de or pt"),
            }
            continue;
        }
        let stem = source.path.file_stem().and_then(|stem| stem.to_str()).unwrap_or_default();
        if stem == "_bot" {
            match yaml::from_str::<RawBot>(&source.text) {
                Ok(raw) => {
                    let (valid, platforms) = Bot::from_raw(raw, &mut problems);
                    bot = valid;
                    for (platform, list) in [(Platform::Ios, platforms.ios), (Platform::Android, platforms.android)] {
                        for regex in list {
                            platform_specs.push((
                                source.path.clone(),
                                PatternSpec {
                                    line: line_of(&regex),
                                    source: regex.value,
                                    owner: Owner::Platform(platform),
                                },
                            ));
                        }
                    }
                }
                Err(error) => problems.push(error.line, error.message),
            }
            bot_path = Some(source.path.clone());
        } else if stem.starts_with('_') {
            problems.push(0, "names starting with `_` are reserved; only `_bot.yaml` is read");
        } else if !is_id(stem) {
            problems.push(0, format!("`{stem}` is not a valid flow id: use lower-case letters, digits and `_`"));
        } else {
            match yaml::from_str::<RawFlow>(&source.text) {
                Ok(raw) => parsed.push(Parsed {
                    id: stem.to_owned(),
                    path: source.path.clone(),
                    version: fnv1a(source.text.as_bytes()),
                    raw,
                }),
                Err(error) => problems.push(error.line, error.message),
            }
        }
    }

    let dir = sources
        .iter()
        .find(|s| !translations.iter().any(|t| t.path == s.path))
        .and_then(|s| s.path.parent())
        .map(Path::to_path_buf)
        .unwrap_or_default();
    problems.set_file(&dir.join("_bot.yaml"));
    if bot_path.is_none() {
        problems.push(0, "the bot strings file `_bot.yaml` is missing");
    }
    if parsed.is_empty() && sources.iter().all(|s| !s.path.ends_with("_bot.yaml") || sources.len() == 1) {
        problems.set_file(&dir);
        problems.push(0, "there are no flow files (`<id>.yaml`)");
    }
    // The list of symptoms offers every flow and a person on one message.
    if parsed.len() + 1 > MAX_BUTTONS {
        problems.set_file(&dir);
        problems.push(
            0,
            format!(
                "there are {} flows, at most {} fit: the list of symptoms shows a button for each and one for a person, and Discord shows at most {MAX_BUTTONS} buttons under a message",
                parsed.len(),
                MAX_BUTTONS - 1
            ),
        );
    }

    // Every flow file counts as existing, parsed or not, so one broken file
    // does not make each goto to it look dangling as well.
    let ids: HashSet<&str> = sources
        .iter()
        .filter_map(|source| source.path.file_stem().and_then(|stem| stem.to_str()))
        .filter(|stem| is_id(stem))
        .collect();
    let mut flows = Vec::with_capacity(parsed.len());
    let mut specs = Vec::new();
    for (index, flow) in parsed.iter().enumerate() {
        problems.set_file(&flow.path);
        if let Some(bot) = &bot
            && let Some(valid) = validate_flow(flow, bot, &ids, &mut problems)
        {
            flows.push(valid);
        }
        for matcher in &flow.raw.matchers {
            if !(1..=100).contains(&matcher.weight) {
                problems.push(line_of(&matcher.regex), format!("weight {} must be between 1 and 100", matcher.weight));
            }
            specs.push((
                flow.path.clone(),
                PatternSpec {
                    line: line_of(&matcher.regex),
                    source: matcher.regex.value.clone(),
                    owner: Owner::Match { flow: index, weight: matcher.weight },
                },
            ));
        }
        for veto in &flow.raw.unless {
            specs.push((
                flow.path.clone(),
                PatternSpec {
                    line: line_of(&veto.regex),
                    source: veto.regex.value.clone(),
                    owner: Owner::Veto { flow: index },
                },
            ));
        }
        if flow.raw.matchers.is_empty() {
            problems.push(0, "a flow needs at least one `match` pattern");
        }
    }
    specs.extend(platform_specs);
    let (paths, specs): (Vec<PathBuf>, Vec<PatternSpec>) = specs.into_iter().unzip();
    // Compiling the patterns is most of a load, and checking one is parsing
    // it, the first half of compiling it: each is checked and compiled at
    // once, on every core, and a problem reported from there.
    let compiled = Compiled::new(specs);
    for (index, spec, reason) in compiled.problems() {
        problems.set_file(&paths[index]);
        problems.push(spec.line, reason);
    }
    // The literal automaton over every pattern builds on its own thread
    // while the translations are read, once the flows are valid.
    let flow_count = parsed.len();
    let valid_bot = bot.as_ref().filter(|_| problems.count() == 0);
    let (locales, matcher, report) = std::thread::scope(|scope| {
        let matcher = valid_bot.map(|bot| scope.spawn(move || Matcher::assemble(compiled, flow_count, &bot.settings)));
        let mut report = i18n::Report::default();
        let locales = match (&bot, problems.count()) {
            (Some(bot), 0) => {
                let english: Vec<i18n::English<'_>> = flows
                    .iter()
                    .zip(&parsed)
                    .map(|(flow, parsed)| i18n::English {
                        flow,
                        raw_steps: &parsed.raw.steps,
                        raw_title: &parsed.raw.title.value,
                        raw_summary: &parsed.raw.summary.value,
                    })
                    .collect();
                Some(i18n::build_locales(&dir, &translations, &english, bot, &mut problems, &mut report))
            }
            _ => None,
        };
        let matcher = matcher.map(|thread| thread.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)));
        (locales, matcher, report)
    });
    let (Some(bot), Some(locales), Some(matcher), 0) = (bot, locales, matcher, problems.count()) else {
        return Err(FlowErrors(problems.all));
    };
    // Each pattern compiled on its own above; what is left to fail is the
    // automaton over all their literals, or a pattern's capturing regex.
    let mut matcher = matcher.map_err(|error| {
        problems.set_file(&dir);
        problems.push(
            0,
            match error {
                BuildError::Literals(_) => format!("the patterns together are too large to compile: {error}"),
                BuildError::Pattern { .. } => error.to_string(),
            },
        );
        FlowErrors(std::mem::take(&mut problems.all))
    })?;
    check_examples(&parsed, &matcher, &mut problems);
    if problems.count() > 0 {
        return Err(FlowErrors(problems.all));
    }
    matcher.release_caches();
    let by_id = flows.iter().enumerate().map(|(index, flow)| (flow.id.clone(), index)).collect();
    Ok(Flows { flows, by_id, bot, matcher, locales, warnings: report.warnings.all, stale: report.stale })
}

/// Checks one flow's texts, choices and step graph.
fn validate_flow(parsed: &Parsed, bot: &Bot, ids: &HashSet<&str>, problems: &mut Problems) -> Option<Flow> {
    let raw = &parsed.raw;
    let before = problems.count();
    let title = raw.title.value.trim();
    if let Err(reason) = to_label(title) {
        problems.push(line_of(&raw.title), format!("`title`: {reason}"));
    }
    if raw.summary.value.trim().is_empty() {
        problems.push(line_of(&raw.summary), "`summary` is empty");
    }
    if raw.steps.is_empty() {
        problems.push(0, "a flow needs at least one step");
        return None;
    }

    let mut step_ids: HashMap<&str, usize> = HashMap::new();
    for (index, step) in raw.steps.iter().enumerate() {
        let id = step.id.value.as_str();
        if !is_id(id) {
            problems.push(line_of(&step.id), format!("step id `{id}` must use lower-case letters, digits and `_`"));
        } else if matches!(id, "next" | "resolved" | "escalate") {
            problems.push(line_of(&step.id), format!("step id `{id}` is a reserved goto word"));
        } else if step_ids.insert(id, index).is_some() {
            problems.push(line_of(&step.id), format!("step id `{id}` is used twice"));
        }
    }

    let mut steps = Vec::with_capacity(raw.steps.len());
    for step in &raw.steps {
        if let Some(valid) = validate_step(step, bot, &step_ids, ids, problems) {
            steps.push(valid);
        }
    }
    check_reachable(&raw.steps, &step_ids, problems);
    (problems.count() == before).then(|| Flow {
        id: parsed.id.clone(),
        title: title.to_owned(),
        summary: raw.summary.value.trim().to_owned(),
        version: parsed.version,
        steps,
        path: parsed.path.clone(),
    })
}

fn validate_step(
    step: &RawStep,
    bot: &Bot,
    step_ids: &HashMap<&str, usize>,
    flow_ids: &HashSet<&str>,
    problems: &mut Problems,
) -> Option<Step> {
    let line = line_of(&step.id);
    let id = &step.id.value;
    let mut parse =
        |key: &str, text: &Option<String>| -> Option<Template> {
            let text = text.as_deref()?;
            match to_template(text) {
                Ok(template) => {
                    for (slot, has_fallback) in template.slots() {
                        if !has_fallback {
                            problems.push(line, format!(
                            "step `{id}` `{key}`: slot {{{slot}}} needs a fallback, e.g. {{{slot}|enough space}}"
                        ));
                        }
                    }
                    Some(template)
                }
                Err(reason) => {
                    problems.push(line, format!("step `{id}` `{key}`: {reason}"));
                    None
                }
            }
        };
    let text = parse("text", &step.text);
    let ios = parse("ios", &step.ios).or_else(|| text.clone());
    let android = parse("android", &step.android).or(text);
    if step.text.is_none() && step.ios.is_none() && step.android.is_none() {
        problems.push(line, format!("step `{id}` has no `text` (or `ios`/`android`)"));
    }
    let differs_by_platform = step.ios.is_some() || step.android.is_some();

    let choices = match &step.choices {
        None => vec![
            Choice { label: bot.labels.fixed.clone(), goto: Goto::Resolved },
            Choice { label: bot.labels.not_fixed.clone(), goto: Goto::Next },
        ],
        Some(raw) if raw.is_empty() => {
            problems.push(line, format!("step `{id}`: `choices` is empty; leave it out for the defaults"));
            Vec::new()
        }
        Some(raw) if raw.len() > MAX_CHOICES => {
            problems.push(line, format!("step `{id}` has {} choices, at most {MAX_CHOICES} fit", raw.len()));
            Vec::new()
        }
        Some(raw) => raw.iter().filter_map(|choice| validate_choice(choice, step_ids, flow_ids, problems)).collect(),
    };
    Some(Step { id: id.clone(), ios, android, choices, differs_by_platform })
}

fn validate_choice(
    choice: &RawChoice,
    step_ids: &HashMap<&str, usize>,
    flow_ids: &HashSet<&str>,
    problems: &mut Problems,
) -> Option<Choice> {
    let line = line_of(&choice.label);
    let label = match to_label(&choice.label.value) {
        Ok(label) => label,
        Err(reason) => {
            problems.push(line, format!("choice `{}`: {reason}", choice.label.value));
            return None;
        }
    };
    match resolve_goto(&choice.goto.value, step_ids, Some(flow_ids)) {
        Ok(goto) => Some(Choice { label, goto }),
        Err(reason) => {
            problems.push(line_of(&choice.goto), reason);
            None
        }
    }
}

/// Resolves a goto target. Flow targets are checked against `flow_ids`
/// when given.
fn resolve_goto(
    target: &str,
    step_ids: &HashMap<&str, usize>,
    flow_ids: Option<&HashSet<&str>>,
) -> Result<Goto, String> {
    let target = target.trim();
    match target {
        "next" => Ok(Goto::Next),
        "resolved" => Ok(Goto::Resolved),
        "escalate" => Ok(Goto::Escalate),
        _ => match target.strip_prefix("flow:") {
            Some(flow) if flow_ids.is_none_or(|ids| ids.contains(flow)) => Ok(Goto::Flow(flow.to_owned())),
            Some(flow) => Err(format!("goto `flow:{flow}` names no flow")),
            None => step_ids.get(target).map(|&index| Goto::Step(index)).ok_or_else(|| {
                format!("goto `{target}` names no step of this flow (use a step id, `next`, `resolved`, `escalate` or `flow:<id>`)")
            }),
        },
    }
}

/// Reports steps that no path from the first step reaches. Works on the raw
/// gotos, so it still runs when other parts of the flow have problems.
fn check_reachable(raw: &[RawStep], step_ids: &HashMap<&str, usize>, problems: &mut Problems) {
    let mut seen = vec![false; raw.len()];
    let mut stack = vec![0];
    while let Some(index) = stack.pop() {
        if std::mem::replace(&mut seen[index], true) {
            continue;
        }
        // Steps without choices get the defaults: resolved, or next.
        let gotos: Vec<Goto> = match &raw[index].choices {
            None => vec![Goto::Next],
            Some(choices) => choices.iter().filter_map(|c| resolve_goto(&c.goto.value, step_ids, None).ok()).collect(),
        };
        for goto in gotos {
            match goto {
                Goto::Next if index + 1 < raw.len() => stack.push(index + 1),
                Goto::Step(target) => stack.push(target),
                _ => {}
            }
        }
    }
    for (index, reached) in seen.iter().enumerate() {
        if !reached {
            problems.push(
                line_of(&raw[index].id),
                format!("step `{}` is unreachable from the first step", raw[index].id.value),
            );
        }
    }
}

/// Runs every example through the finished matcher.
fn check_examples(parsed: &[Parsed], matcher: &Matcher, problems: &mut Problems) {
    let describe = |verdict: &Verdict| match verdict {
        Verdict::Symptom(flow) => format!("`{}`", parsed[*flow].id),
        Verdict::Unsure(candidates) => format!(
            "a clarifying question between {}",
            candidates.iter().map(|&c| format!("`{}`", parsed[c].id)).collect::<Vec<_>>().join(", ")
        ),
        Verdict::Unknown => "nothing".to_owned(),
    };
    // Diagnosed on every core (a few hundred examples), reported in order.
    let examples: Vec<(usize, bool, &Spanned<String>)> = parsed
        .iter()
        .enumerate()
        .flat_map(|(index, flow)| {
            let matching = flow.raw.examples.matching.iter().map(move |example| (index, true, example));
            matching.chain(flow.raw.examples.no_match.iter().map(move |example| (index, false, example)))
        })
        .collect();
    let diagnoses = crate::parallel::on_every_core(examples.len(), |at| matcher.diagnose(&examples[at].2.value));
    for ((index, matching, example), diagnosis) in examples.into_iter().zip(diagnoses) {
        problems.set_file(&parsed[index].path);
        let selected = diagnosis.verdict == Verdict::Symptom(index);
        if matching && !selected {
            problems.push(
                line_of(example),
                format!(
                    "example \"{}\" selects {} instead of this flow (score {})",
                    short(&example.value),
                    describe(&diagnosis.verdict),
                    diagnosis.score_of(index)
                ),
            );
        } else if !matching && selected {
            problems.push(
                line_of(example),
                format!(
                    "no_match example \"{}\" selects this flow (score {})",
                    short(&example.value),
                    diagnosis.score_of(index)
                ),
            );
        }
    }
}

fn short(text: &str) -> String {
    let cut: String = text.chars().take(60).collect();
    if cut.len() < text.len() { format!("{cut}…") } else { cut }
}

/// Flow and step ids: lower-case ASCII letters, digits and `_`, starting with a letter.
fn is_id(text: &str) -> bool {
    text.starts_with(|c: char| c.is_ascii_lowercase())
        && text.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// FNV-1a: a stable hash for flow versions (std's hasher may change between releases).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOT: &str = include_str!("../../../../flows/_bot.yaml");

    /// The shipped `_bot.yaml` and `count` small flows, `f00.yaml` on.
    fn sources(count: usize) -> Vec<Source> {
        let mut sources = vec![Source { path: PathBuf::from("flows/_bot.yaml"), text: BOT.to_owned() }];
        for index in 0..count {
            let text = format!(
                "title: Flow {index}\nsummary: Flow {index}.\nmatch:\n  - regex: 'word{index:02}x'\n    weight: 10\nsteps:\n  - id: only\n    text: Try it.\n"
            );
            sources.push(Source { path: PathBuf::from(format!("flows/f{index:02}.yaml")), text });
        }
        sources
    }

    /// A reason quoting author text with a line break in it (a multi-line
    /// example, an id or goto in quotes) spanned lines, breaking the
    /// `file:line: reason` lines of `fixbot check`. Issue 7, found by the
    /// `flow_load` fuzz target's `check_problems`.
    #[test]
    fn every_problem_is_one_line() {
        let text = "title: Demo\nsummary: A demo.\nmatch:\n  - regex: 'zzqq'\n    weight: 10\nexamples:\n  match:\n    - |\n      first line\n      second line\nsteps:\n  - id: \"a\\nb\"\n    text: Try it.\n    choices:\n      - label: x\n        goto: \"no\\twhere\"\n";
        let mut all = sources(0);
        all.push(Source { path: PathBuf::from("flows/demo.yaml"), text: text.to_owned() });
        let errors = from_sources(all).unwrap_err();
        let reasons: Vec<&str> = errors.0.iter().map(|problem| problem.message.as_str()).collect();
        assert!(reasons.iter().all(|reason| !reason.contains(['\n', '\r', '\t'])), "{reasons:#?}");
        assert!(reasons.iter().any(|reason| reason.starts_with("step id `a\\nb`")), "{reasons:#?}");
        assert!(reasons.iter().any(|reason| reason.starts_with("goto `no\\twhere`")), "{reasons:#?}");
    }

    /// The list of symptoms is one message with a button per flow and one for
    /// a person; with 25 flows Discord refused it, so no case could start from
    /// it. Issue 7, found writing the button limits of `tests/invariants.rs`.
    #[test]
    fn no_more_flows_than_buttons_fit_under_one_message() {
        assert!(from_sources(sources(MAX_BUTTONS - 1)).is_ok());
        let errors = from_sources(sources(MAX_BUTTONS)).unwrap_err();
        assert_eq!(errors.0.len(), 1, "{errors}");
        assert!(errors.0[0].message.starts_with("there are 25 flows, at most 24 fit"), "{errors}");
    }
}
