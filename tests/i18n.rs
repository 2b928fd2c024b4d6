//! Translations (issue "Speaking the user's language"): the loader's
//! fallback to English per whole step, its errors and warnings, the
//! language a case opens in, and stored cases from before translations.

use std::path::{Path, PathBuf};

use fixbot_core::case::{Case, ConversationKey};
use fixbot_core::engine::{self, EngineConfig, Input, Transition};
use fixbot_core::flow::{FlowErrors, Flows, Platform, Source, source_hash};
use fixbot_core::lang::{Lang, detect};

use crate::support::{root, shipped_flows};

const ALPHA: &str = r#"
title: Alpha space is full
summary: The alpha space is smaller than the backup.
match:
  - regex: 'alpha (is )?full(?: by (?P<needed>\d+ ?gb))?'
    weight: 10
steps:
  - id: check
    ios: "iPhone: free {needed|some space}."
    android: "Android: free {needed|some space}."
  - id: common
    text: "Everyone sees this."
    choices:
      - { label: "It works now", goto: resolved }
      - { label: "Keep going", goto: next }
  - id: last
    text: "The last step."
"#;

fn load(files: &[(&str, &str)]) -> Result<Flows, FlowErrors> {
    let bot = std::fs::read_to_string(root().join("flows/_bot.yaml")).unwrap();
    let mut sources = vec![
        Source { path: PathBuf::from("flows/_bot.yaml"), text: bot },
        Source { path: PathBuf::from("flows/alpha.yaml"), text: ALPHA.to_owned() },
    ];
    sources.extend(
        files.iter().map(|(name, text)| Source { path: Path::new("flows").join(name), text: (*text).to_owned() }),
    );
    Flows::from_sources(sources)
}

fn play(flows: &Flows, hint: Option<Lang>, case: Option<Case>, text: &str) -> Transition {
    let key = ConversationKey::new("test", "chat", "", "user");
    engine::handle_in(flows, &EngineConfig::default(), &key, case, Input::Text(text.to_owned()), 1_000_000, hint)
}

#[test]
fn a_step_missing_any_text_is_shown_wholly_in_english() {
    // `check` lacks its android text and `common` its choice labels: both
    // stay English as a whole; `last` is complete, with the default buttons
    // from the French `_bot.yaml`, and translated.
    let french = r#"
title: { source: "0", text: "L'espace alpha est plein" }
steps:
  check:
    source: "0"
    ios: "iPhone : libérez {needed|de la place}."
  common:
    source: "0"
    text: "Tout le monde voit ceci."
  last:
    source: "0"
    text: "La dernière étape."
"#;
    let bot = "labels:\n  fixed: { source: '0', text: \"C'est réglé\" }\n  not_fixed: { source: '0', text: 'Ça échoue encore' }\n";
    let flows =
        load(&[("i18n/fr/alpha.yaml", french), ("i18n/fr/_bot.yaml", bot)]).unwrap_or_else(|errors| panic!("{errors}"));
    let alpha = flows.get_in(Lang::Fr, "alpha").unwrap();
    assert_eq!(alpha.title, "L'espace alpha est plein");
    assert_eq!(alpha.summary, "The alpha space is smaller than the backup.", "the summary falls back alone");
    let plain = |platform| alpha.steps[0].text_for(platform).unwrap().render().to_plain();
    assert_eq!(plain(Platform::Ios), "iPhone: free some space.", "half a step is never shown");
    assert_eq!(plain(Platform::Android), "Android: free some space.");
    assert_eq!(alpha.steps[1].ios.as_ref().unwrap().render().to_plain(), "Everyone sees this.");
    assert_eq!(alpha.steps[1].choices[0].label, "It works now");
    assert_eq!(alpha.steps[2].ios.as_ref().unwrap().render().to_plain(), "La dernière étape.");
    assert_eq!(alpha.steps[2].choices[0].label, "C'est réglé");
    // English is untouched.
    assert_eq!(flows.get("alpha").unwrap().title, "Alpha space is full");

    let warnings: Vec<String> = flows.warnings().iter().map(ToString::to_string).collect();
    let all = warnings.join("\n");
    assert!(all.contains("fr: not translated: summary, step `check` (incomplete"), "{all}");
    assert!(all.contains("step `common` (incomplete"), "{all}");
    assert!(all.contains("flows/i18n/fr/alpha.yaml:2: fr: `title` is stale"), "{all}");
    assert!(all.contains("bot string(s) not translated: labels.android, "), "{all}");
    assert!(all.contains("de: no translations yet"), "{all}");
    // Blessing would write today's hash of the English title.
    let stale = flows.stale_translations().iter().find(|s| s.line == 2 && s.file.ends_with("alpha.yaml")).unwrap();
    assert_eq!(stale.new, source_hash(["Alpha space is full"]));
}

#[test]
fn the_engine_falls_back_to_english_for_an_incomplete_step() {
    let french = r#"
steps:
  check:
    source: "0"
    ios: "iPhone : libérez {needed|de la place}."
"#;
    let flows = load(&[("i18n/fr/alpha.yaml", french)]).unwrap();
    // Without a French `_bot.yaml` a step with the default buttons would be
    // half French, so it stays English.
    let last = format!("{french}  last:\n    source: '0'\n    text: 'La dernière étape.'\n");
    let with_last = load(&[("i18n/fr/alpha.yaml", &last)]).unwrap();
    let step = &with_last.get_in(Lang::Fr, "alpha").unwrap().steps[2];
    assert_eq!(step.ios.as_ref().unwrap().render().to_plain(), "The last step.");
    assert!(with_last.warnings().iter().any(|w| w.message.contains("`_bot.yaml` is not translated")));
    let shown = play(&flows, Some(Lang::Fr), None, "my iphone says alpha is full by 5 GB");
    let text = shown.replies.last().unwrap().to_plain();
    assert!(text.contains("iPhone: free 5 GB."), "{text}");
    assert_eq!(shown.case.unwrap().language, Lang::Fr);
}

#[test]
fn malformed_translations_unknown_ids_and_slot_mismatches_are_errors() {
    let spanish = r#"
steps:
  check:
    source: "0"
    ios: "iPhone: libera {neded|espacio}."
    android: "Android: libera {needed|espacio}."
  common:
    source: "0"
    text: "Todos ven esto."
    choices: ["Ya funciona"]
  nowhere:
    source: "0"
    text: "No existe."
"#;
    let bot = r#"
labels:
  fixd: { source: "0", text: "Arreglado" }
messages:
  removed: { source: "0", text: "He quitado datos de tu mensaje." }
"#;
    let german = "steps:\n  check:\n    source: '0'\n    txt: 'Tippfehler'\n";
    let errors = load(&[
        ("i18n/es/alpha.yaml", spanish),
        ("i18n/es/_bot.yaml", bot),
        ("i18n/es/gamma.yaml", "steps: {}\n"),
        ("i18n/de/alpha.yaml", german),
    ])
    .unwrap_err()
    .to_string();
    for expected in [
        "flows/i18n/es/alpha.yaml:4: step `check`: `ios`: slots {neded} differ from the English slots {needed}",
        "flows/i18n/es/alpha.yaml:8: step `common`: has 1 choice labels, the English step has 2",
        "flows/i18n/es/alpha.yaml:12: step `nowhere` is no step of the English flow",
        "flows/i18n/es/_bot.yaml:3: `labels.fixd` is no string of the English `_bot.yaml`",
        "flows/i18n/es/_bot.yaml:5: `messages.removed`: slots none differ from the English slots {removed}",
        "flows/i18n/es/gamma.yaml: `gamma` is no flow",
        "flows/i18n/de/alpha.yaml:4: unknown field `txt`",
    ] {
        assert!(errors.contains(expected), "missing {expected:?} in:\n{errors}");
    }
}

#[test]
fn too_long_translations_are_errors_like_english_ones() {
    let long = "x".repeat(2100);
    let spanish = format!("steps:\n  last:\n    source: '0'\n    text: '{long}'\n");
    let errors = load(&[("i18n/es/alpha.yaml", &spanish)]).unwrap_err().to_string();
    assert!(errors.contains("step `last`: `text`: text can reach 2100 characters, Discord allows 2000"), "{errors}");
    let title = format!("title: {{ source: '0', text: '{}' }}\n", "y".repeat(81));
    let errors = load(&[("i18n/es/alpha.yaml", &title)]).unwrap_err().to_string();
    assert!(errors.contains("`title`: label has 81 characters"), "{errors}");
}

#[test]
fn a_case_opens_in_the_hint_else_the_detected_language_else_english() {
    let flows = shipped_flows();
    let paste = "No se pudo completar la copia de seguridad del iPhone porque no hay suficiente espacio en iCloud";
    // No hint: the paste's words decide.
    let detected = play(&flows, None, None, paste);
    assert_eq!(detected.case.as_ref().unwrap().language, Lang::Es);
    assert!(detected.replies[0].to_plain().contains("almacenamiento en la nube"), "{}", detected.replies[0].to_plain());
    // The platform's hint wins over the words.
    let hinted = play(&flows, Some(Lang::En), None, paste);
    assert_eq!(hinted.case.as_ref().unwrap().language, Lang::En);
    // Too few known words: English.
    let short = play(&flows, None, None, "iCloud lleno");
    assert_eq!(short.case.map(|case| case.language), Some(Lang::En));
    // The detector explains itself: known words per language.
    let detection = detect(paste);
    assert!(detection.hits[1] > detection.hits[0], "{detection:?}");
}

#[test]
fn the_language_command_switches_mid_case_and_before_any_case() {
    let flows = shipped_flows();
    let opened = play(&flows, None, None, "iPhone: Not enough iCloud storage");
    let switched = play(&flows, None, opened.case, "/language es");
    let text = switched.replies.last().unwrap().to_plain();
    assert!(text.contains("te respondo en Español"), "{text}");
    assert!(text.contains("Ajustes → [tu nombre] → iCloud"), "the step comes back in Spanish: {text}");
    // A later paste keeps the chosen language, whatever the hint says.
    let case = switched.case.unwrap();
    assert_eq!(case.language, Lang::Es);
    let again = play(&flows, Some(Lang::En), Some(case), "/help");
    assert!(again.replies[0].to_plain().contains("Pega el error"), "{}", again.replies[0].to_plain());
    // Before any case: the greeting in the new language, remembered for the paste.
    let chosen = play(&flows, None, None, "/language es");
    assert!(chosen.replies[0].to_plain().contains("¡Hola!"), "{}", chosen.replies[0].to_plain());
    let paste = play(&flows, None, chosen.case, "Not enough iCloud storage");
    assert!(paste.replies[0].to_plain().contains("almacenamiento en la nube"), "{}", paste.replies[0].to_plain());
    // Unknown language: the list.
    let list = play(&flows, None, None, "/language klingon");
    assert!(list.replies[0].to_plain().contains("/language pt"), "{}", list.replies[0].to_plain());
}

#[test]
fn cases_stored_before_translations_load_as_english() {
    let flows = shipped_flows();
    let opened = play(&flows, None, None, "iPhone: Not enough iCloud storage");
    let mut json: serde_json::Value = serde_json::to_value(opened.case.unwrap()).unwrap();
    assert!(json.get("language").is_none(), "English is not written: {json}");
    json.as_object_mut().unwrap().remove("language");
    let case: Case = serde_json::from_value(json).unwrap();
    assert_eq!(case.language, Lang::En);
}
