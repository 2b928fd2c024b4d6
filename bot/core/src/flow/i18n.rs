//! Translations: `flows/i18n/<lang>/<flow id>.yaml` and
//! `flows/i18n/<lang>/_bot.yaml` hold only texts, keyed by the English
//! file's ids, each with a short hash of the English it translates.
//!
//! A translated flow is the English flow with its texts replaced, so every
//! goto, step id and version stays the English one. English is the fallback
//! per string, never per half step: a step whose body or any choice label
//! is missing is shown wholly in English. Missing and stale translations are
//! warnings; malformed files, unknown ids and slot mismatches are errors.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::bot::{Bot, to_label, to_template};
use super::raw::RawStep;
use super::{Flow, Problems, Step};
use crate::lang::Lang;
use crate::markup::Template;
use crate::yaml::{self, Spanned, line_of};

/// One translated string and the hash of the English it was made from.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawText {
    source: Spanned<String>,
    text: String,
}

/// One translated step: the same text keys as the English step, and its
/// choice labels in order when the English step lists choices.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStepText {
    source: Spanned<String>,
    text: Option<String>,
    ios: Option<String>,
    android: Option<String>,
    choices: Option<Vec<String>>,
}

/// `flows/i18n/<lang>/<flow id>.yaml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFlowText {
    title: Option<RawText>,
    summary: Option<RawText>,
    #[serde(default)]
    steps: BTreeMap<String, RawStepText>,
}

/// `flows/i18n/<lang>/_bot.yaml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBotText {
    #[serde(default)]
    labels: BTreeMap<String, RawText>,
    #[serde(default)]
    messages: BTreeMap<String, RawText>,
    #[serde(default)]
    personal_data: BTreeMap<String, RawText>,
}

/// The bot strings and flows of one language, English where untranslated.
#[derive(Debug)]
pub(crate) struct Locale {
    pub(crate) bot: Bot,
    pub(crate) flows: Vec<Flow>,
}

/// A translation whose recorded English hash no longer matches the English:
/// where it is, and the hash that would bless it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaleHash {
    /// The translation file.
    pub file: PathBuf,
    /// 1-based line of its `source:` value.
    pub line: u64,
    /// The hash written there.
    pub old: String,
    /// The hash of today's English.
    pub new: String,
}

/// What loading the translations found besides errors.
#[derive(Debug, Default)]
pub(crate) struct Report {
    pub(crate) warnings: Problems,
    pub(crate) stale: Vec<StaleHash>,
}

/// The short hash recorded in translations: eight hex digits of FNV-1a over
/// the English text(s), joined by a byte no text contains.
pub fn source_hash<'a>(texts: impl IntoIterator<Item = &'a str>) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for text in texts {
        for &byte in text.trim().as_bytes().iter().chain(&[0xff]) {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{:08x}", hash as u32)
}

/// The English texts of a step in the order its hash covers them.
pub(crate) fn step_sources(step: &RawStep) -> Vec<&str> {
    let mut texts = Vec::new();
    for (key, text) in [("text", &step.text), ("ios", &step.ios), ("android", &step.android)] {
        if let Some(text) = text {
            texts.push(key);
            texts.push(text.as_str());
        }
    }
    for choice in step.choices.iter().flatten() {
        texts.push(choice.label.value.as_str());
    }
    texts
}

/// Whether `path` is `…/i18n/<lang>/<file>.yaml`, and for which language.
pub(crate) fn lang_of(path: &Path) -> Option<Lang> {
    let parent = path.parent()?;
    let code = parent.file_name()?.to_str()?;
    (parent.parent()?.file_name()? == "i18n").then(|| Lang::ALL.into_iter().find(|lang| lang.code() == code))?
}

/// One translation file to read.
pub(crate) struct Input<'a> {
    pub(crate) lang: Lang,
    pub(crate) path: &'a Path,
    pub(crate) text: &'a str,
}

/// The English flows together with their raw steps, which tell which text
/// keys and choices each step has.
pub(crate) struct English<'a> {
    pub(crate) flow: &'a Flow,
    pub(crate) raw_steps: &'a [RawStep],
    pub(crate) raw_title: &'a str,
    pub(crate) raw_summary: &'a str,
}

/// Builds every language's locale from its files, recording errors in
/// `problems` and missing or stale translations in `report`.
pub(crate) fn build_locales(
    dir: &Path,
    files: &[Input<'_>],
    english: &[English<'_>],
    bot: &Bot,
    problems: &mut Problems,
    report: &mut Report,
) -> BTreeMap<Lang, Locale> {
    let mut locales = BTreeMap::new();
    for lang in Lang::ALL.into_iter().filter(|lang| !lang.is_english()) {
        let lang_dir = dir.join("i18n").join(lang.code());
        let mine: Vec<&Input<'_>> = files.iter().filter(|file| file.lang == lang).collect();
        report.warnings.set_file(&lang_dir);
        if mine.is_empty() {
            report.warnings.push(0, format!("{lang}: no translations yet; everything is shown in English"));
            continue;
        }
        let mut locale = Locale { bot: bot.clone(), flows: english.iter().map(|e| e.flow.clone()).collect() };
        let mut seen_bot = false;
        let mut bot_done = BTreeSet::new();
        let mut seen_flows = BTreeSet::new();
        // `_bot.yaml` first: steps with the default choices need its labels.
        let (bots, flows): (Vec<&Input<'_>>, Vec<&Input<'_>>) =
            mine.into_iter().partition(|file| file.path.file_stem().is_some_and(|stem| stem == "_bot"));
        for file in bots.into_iter().chain(flows) {
            problems.set_file(file.path);
            report.warnings.set_file(file.path);
            let stem = file.path.file_stem().and_then(|stem| stem.to_str()).unwrap_or_default();
            if stem == "_bot" {
                seen_bot = true;
                match yaml::from_str::<RawBotText>(file.text) {
                    Ok(raw) => bot_done = translate_bot(lang, &raw, bot, &mut locale.bot, problems, report, file.path),
                    Err(error) => problems.push(error.line, error.message),
                }
                continue;
            }
            let Some(index) = english.iter().position(|e| e.flow.id == stem) else {
                problems
                    .push(0, format!("`{stem}` is no flow: a translation must be named after an English flow file"));
                continue;
            };
            seen_flows.insert(index);
            match yaml::from_str::<RawFlowText>(file.text) {
                Ok(raw) => {
                    // A step with the default choices is only whole when
                    // both default labels are translated too.
                    let labels = (bot_done.contains("labels.fixed") && bot_done.contains("labels.not_fixed"))
                        .then(|| (locale.bot.labels.fixed.clone(), locale.bot.labels.not_fixed.clone()));
                    translate_flow(
                        lang,
                        &raw,
                        &english[index],
                        labels.as_ref(),
                        &mut locale.flows[index],
                        problems,
                        report,
                        file.path,
                    );
                }
                Err(error) => problems.push(error.line, error.message),
            }
        }
        report.warnings.set_file(&lang_dir);
        if !seen_bot {
            report.warnings.push(0, format!("{lang}: `_bot.yaml` is not translated"));
        }
        let untranslated: Vec<&str> = english
            .iter()
            .enumerate()
            .filter(|(index, _)| !seen_flows.contains(index))
            .map(|(_, e)| e.flow.id.as_str())
            .collect();
        if !untranslated.is_empty() {
            report
                .warnings
                .push(0, format!("{lang}: {} flow(s) not translated: {}", untranslated.len(), untranslated.join(", ")));
        }
        locales.insert(lang, locale);
    }
    locales
}

/// Checks a recorded hash against today's English.
fn check_source(source: &Spanned<String>, expected: String, what: &str, lang: Lang, path: &Path, report: &mut Report) {
    if source.value.trim() != expected {
        report
            .warnings
            .push(line_of(source), format!("{lang}: {what} is stale: the English changed since it was translated"));
        report.stale.push(StaleHash {
            file: path.to_path_buf(),
            line: line_of(source),
            old: source.value.trim().to_owned(),
            new: expected,
        });
    }
}

fn translate_bot(
    lang: Lang,
    raw: &RawBotText,
    english: &Bot,
    bot: &mut Bot,
    problems: &mut Problems,
    report: &mut Report,
    path: &Path,
) -> BTreeSet<String> {
    let mut done = BTreeSet::new();
    for (section, entries) in
        [("labels", &raw.labels), ("messages", &raw.messages), ("personal_data", &raw.personal_data)]
    {
        for (key, entry) in entries {
            let name = format!("{section}.{key}");
            let line = line_of(&entry.source);
            let Some(source) = english.sources.get(&name) else {
                problems.push(line, format!("`{name}` is no string of the English `_bot.yaml`"));
                continue;
            };
            let applied = match (section, key.as_str()) {
                ("labels", _) => bot.labels.set(key, &entry.text),
                ("messages", _) => {
                    if let Err(reason) = same_slots(source, &entry.text) {
                        problems.push(line, format!("`{name}`: {reason}"));
                        continue;
                    }
                    bot.messages.set(key, &entry.text)
                }
                (_, "separator") | (_, "last_separator") if entry.text.is_empty() => Some(Err("is empty".to_owned())),
                (_, "separator") => {
                    bot.personal_data.separator.clone_from(&entry.text);
                    Some(Ok(()))
                }
                (_, "last_separator") => {
                    bot.personal_data.last_separator.clone_from(&entry.text);
                    Some(Ok(()))
                }
                _ => bot.personal_data.kinds.set(key, &entry.text),
            };
            match applied {
                Some(Ok(())) => {
                    done.insert(name.clone());
                    check_source(
                        &entry.source,
                        source_hash([source.as_str()]),
                        &format!("`{name}`"),
                        lang,
                        path,
                        report,
                    );
                }
                Some(Err(reason)) => problems.push(line, format!("`{name}`: {reason}")),
                None => problems.push(line, format!("`{name}` is no string of the English `_bot.yaml`")),
            }
        }
    }
    let missing: Vec<&str> = english.sources.keys().filter(|key| !done.contains(*key)).map(String::as_str).collect();
    if !missing.is_empty() {
        report
            .warnings
            .push(0, format!("{lang}: {} bot string(s) not translated: {}", missing.len(), missing.join(", ")));
    }
    done
}

/// Errors unless `translated` uses exactly the slots of `english`.
fn same_slots(english: &str, translated: &str) -> Result<(), String> {
    let names = |text: &str| -> Result<BTreeSet<String>, String> {
        Ok(Template::parse(text.trim_end())?.slots().map(|(name, _)| name.to_owned()).collect())
    };
    let (want, have) = (names(english)?, names(translated)?);
    if want == have {
        return Ok(());
    }
    let list = |set: &BTreeSet<String>| {
        if set.is_empty() {
            "none".to_owned()
        } else {
            set.iter().map(|s| format!("{{{s}}}")).collect::<Vec<_>>().join(", ")
        }
    };
    Err(format!("slots {} differ from the English slots {}", list(&have), list(&want)))
}

#[allow(clippy::too_many_arguments)]
fn translate_flow(
    lang: Lang,
    raw: &RawFlowText,
    english: &English<'_>,
    default_labels: Option<&(String, String)>,
    flow: &mut Flow,
    problems: &mut Problems,
    report: &mut Report,
    path: &Path,
) {
    let mut missing = Vec::new();
    for (what, entry, source, target) in [
        ("title", &raw.title, english.raw_title, &mut flow.title),
        ("summary", &raw.summary, english.raw_summary, &mut flow.summary),
    ] {
        let Some(entry) = entry else {
            missing.push(what.to_owned());
            continue;
        };
        let text = entry.text.trim();
        let valid = if what == "title" { to_label(text).map(drop) } else { Ok(()) };
        match valid {
            Err(reason) => problems.push(line_of(&entry.source), format!("`{what}`: {reason}")),
            Ok(()) if text.is_empty() => problems.push(line_of(&entry.source), format!("`{what}` is empty")),
            Ok(()) => {
                *target = text.to_owned();
                check_source(&entry.source, source_hash([source]), &format!("`{what}`"), lang, path, report);
            }
        }
    }
    for (id, entry) in &raw.steps {
        if !english.raw_steps.iter().any(|step| step.id.value == *id) {
            problems.push(line_of(&entry.source), format!("step `{id}` is no step of the English flow"));
        }
    }
    for (index, raw_step) in english.raw_steps.iter().enumerate() {
        let id = raw_step.id.value.as_str();
        let Some(entry) = raw.steps.get(id) else {
            missing.push(format!("step `{id}`"));
            continue;
        };
        match translate_step(raw_step, entry, &flow.steps[index], default_labels) {
            Ok(Some(step)) => {
                flow.steps[index] = step;
                check_source(
                    &entry.source,
                    source_hash(step_sources(raw_step)),
                    &format!("step `{id}`"),
                    lang,
                    path,
                    report,
                );
            }
            Ok(None) => missing.push(format!("step `{id}` (incomplete, shown in English)")),
            Err(reasons) => {
                for reason in reasons {
                    problems.push(line_of(&entry.source), format!("step `{id}`: {reason}"));
                }
            }
        }
    }
    // Untranslated steps with default choices still show English labels:
    // a step is English or translated as a whole.
    if !missing.is_empty() {
        report.warnings.push(0, format!("{lang}: not translated: {}", missing.join(", ")));
    }
}

/// The translated step; `Ok(None)` when some text is missing (the step
/// stays English); `Err` for a malformed one.
fn translate_step(
    english: &RawStep,
    entry: &RawStepText,
    step: &Step,
    default_labels: Option<&(String, String)>,
) -> Result<Option<Step>, Vec<String>> {
    let mut errors = Vec::new();
    let mut complete = true;
    let mut parse = |key: &str, source: &Option<String>, text: &Option<String>| -> Option<Template> {
        match (source, text) {
            (None, Some(_)) => {
                errors.push(format!("has `{key}` but the English step has none"));
                None
            }
            (Some(_), None) => {
                complete = false;
                None
            }
            (None, None) => None,
            (Some(source), Some(text)) => {
                if let Err(reason) = same_slots(source, text) {
                    errors.push(format!("`{key}`: {reason}"));
                }
                match to_template(text) {
                    Ok(template) => Some(template),
                    Err(reason) => {
                        errors.push(format!("`{key}`: {reason}"));
                        None
                    }
                }
            }
        }
    };
    let text = parse("text", &english.text, &entry.text);
    let ios = parse("ios", &english.ios, &entry.ios);
    let android = parse("android", &english.android, &entry.android);
    let mut choices = step.choices.clone();
    match (&english.choices, &entry.choices) {
        (None, Some(_)) => errors.push("has `choices` but the English step uses the default ones".to_owned()),
        (Some(_), None) => complete = false,
        (None, None) => match (default_labels, choices.as_mut_slice()) {
            (Some((fixed_label, not_fixed_label)), [fixed, not_fixed]) => {
                fixed.label.clone_from(fixed_label);
                not_fixed.label.clone_from(not_fixed_label);
            }
            // The default buttons would stay English: not a whole step.
            _ => complete = false,
        },
        (Some(want), Some(labels)) => {
            if want.len() != labels.len() {
                errors.push(format!("has {} choice labels, the English step has {}", labels.len(), want.len()));
            } else {
                for (choice, label) in choices.iter_mut().zip(labels) {
                    match to_label(label) {
                        Ok(label) => choice.label = label,
                        Err(reason) => errors.push(format!("choice `{label}`: {reason}")),
                    }
                }
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    if !complete {
        return Ok(None);
    }
    let ios = if english.ios.is_some() { ios } else { step.ios.as_ref().and(text.clone()) };
    let android = if english.android.is_some() { android } else { step.android.as_ref().and(text) };
    Ok(Some(Step { ios, android, choices, ..step.clone() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_short_and_stable() {
        assert_eq!(source_hash(["Hello"]), source_hash(["  Hello\n"]));
        assert_ne!(source_hash(["a", "b"]), source_hash(["ab"]));
        assert_eq!(source_hash(["Hello"]).len(), 8);
    }

    #[test]
    fn slots_must_match() {
        assert!(same_slots("Free {needed|space}.", "Libera {needed|espacio}.").is_ok());
        let error = same_slots("Free {needed|space}.", "Libera {neded|espacio}.").unwrap_err();
        assert!(error.contains("{neded}") && error.contains("{needed}"), "{error}");
    }

    #[test]
    fn translation_paths_name_their_language() {
        assert_eq!(lang_of(Path::new("flows/i18n/es/x.yaml")), Some(Lang::Es));
        assert_eq!(lang_of(Path::new("flows/i18n/xx/x.yaml")), None);
        assert_eq!(lang_of(Path::new("flows/x.yaml")), None);
    }
}
