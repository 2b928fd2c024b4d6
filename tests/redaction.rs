//! Personal data and hostile text end to end: what survives sanitising and
//! redaction, what the engine keeps and what it tells the user. Issue
//! "Hostile input, platform faults and privacy".

use std::path::PathBuf;

use fixbot_core::case::ConversationKey;
use fixbot_core::engine::{self, EngineConfig, Input, Transition};
use fixbot_core::flow::{Flows, Source};
use fixbot_core::redact::Kind::{self, *};
use fixbot_core::redact::redact;
use fixbot_core::text::{is_invisible, sanitize};

use crate::support::{root, shipped_flows};

/// Text as people and tools really send it: invisible padding, bidi
/// tricks, terminal colours and chat markup around personal data. Each is
/// sanitised, then redacted, as the engine does.
const HOSTILE: &[(&str, &str, &[Kind])] = &[
    ("a\u{200B}nn@icloud.com", "[email]", &[Email]),
    ("ann\u{2060}.smith@\u{FEFF}gmail.com", "[email]", &[Email]),
    ("a\u{200D}n\u{200C}n@i\u{00AD}cloud.com", "[email]", &[Email]),
    ("an\u{E0041}n@icloud.com\u{E007F}", "[email]", &[Email]),
    ("ann\u{3164}@icl\u{2800}oud.com", "[email]", &[Email]),
    ("\u{202E}moc.duolci@nna\u{202C} is my id", "[email] is my id", &[Email]),
    ("\u{2067}ann@icloud.com\u{2069}\u{061C}", "[email]", &[Email]),
    ("<b>ann@icloud.com</b>", "<b>[email]</b>", &[Email]),
    ("**ann@icloud.com** @everyone @here <@&123>", "**[email]** @everyone @here <@&123>", &[Email]),
    ("+44\u{200D} 20 7946\u{00AD} 0958", "[phone]", &[Phone]),
    ("0\u{2066}6 12 34 56 78\u{2069}", "[phone]", &[Phone]),
    ("\u{1b}[31mIMEI\u{1b}[0m 35 209900 176148 1", "[31mIMEI[0m [imei]", &[Imei]),
    ("3\u{FE0F}5209900\u{180E}1761481", "[imei]", &[Imei]),
    ("C:\\Users\\a\u{200C}nn\\Music", "C:\\Users\\[user]\\Music", &[User]),
    ("Ann\u{E0041}'s iPhone", "[name]'s iPhone", &[Name]),
    ("token=abc\u{200B}123&x", "token=[token]&x", &[Token]),
    ("\u{FEFF}https://ann:pw@nas.example/backup", "[url]", &[Url]),
    ("C02X\u{200B}K0AB\u{200B}JG5H", "[serial]", &[Serial]),
    ("`ann@icloud.com`\r\n> quoted +33\u{2060}6 12 34 56 78", "`[email]`\n> quoted [phone]", &[Email, Phone]),
    ("backup\u{7}\u{1b}\u{202E} failed\u{200F}", "backup failed", &[]),
];

#[test]
fn hostile_text_is_sanitised_before_it_is_redacted() {
    let mut wrong = Vec::new();
    for (input, expected, kinds) in HOSTILE {
        let clean = sanitize(input);
        assert!(
            !clean.chars().any(|c| is_invisible(c) || (c.is_control() && c != '\n')),
            "invisible or control characters survive in {clean:?}"
        );
        let redacted = redact(&clean);
        if redacted.text != *expected || redacted.removed != *kinds {
            wrong.push(format!(
                "{input:?}\n  gave {:?} {:?}\n  want {expected:?} {kinds:?}",
                redacted.text, redacted.removed
            ));
        }
    }
    assert!(wrong.is_empty(), "{} of {} hostile texts:\n{}", wrong.len(), HOSTILE.len(), wrong.join("\n"));
}

/// Plays one message through the engine with no case open.
fn first_message(flows: &Flows, text: &str) -> Transition {
    let key = ConversationKey::new("test", "chat", "", "ann");
    engine::handle(flows, &EngineConfig::default(), &key, None, Input::Text(text.to_owned()), 1_000_000)
}

fn replies(transition: &Transition) -> String {
    transition.replies.iter().map(|reply| reply.to_plain()).collect::<Vec<_>>().join("\n---\n")
}

#[test]
fn the_user_is_told_in_one_line_what_was_removed_and_never_sees_it() {
    let flows = shipped_flows();
    let paste = "This iPhone cannot be backed up because there is not enough iCloud storage available. \
                 My Apple ID is a\u{200B}nn.smith@icloud.com, call +44 20 7946 0958, IMEI 352099001761481.";
    let transition = first_message(&flows, paste);
    let text = replies(&transition);
    let first_line = text.lines().next().unwrap();
    assert_eq!(
        first_line,
        "I removed an e-mail address, a phone number and an IMEI number from your message before keeping it."
    );
    assert!(text.contains("Cloud storage is full"), "the diagnosis still works: {text}");
    for secret in ["ann", "smith", "7946", "352099001761481", "\u{200B}"] {
        assert!(!text.contains(secret), "{secret:?} is echoed: {text}");
    }
    let case = transition.case.as_ref().expect("a case is open");
    assert!(case.paste.contains("[email]") && case.paste.contains("[phone]") && case.paste.contains("[imei]"));
    assert!(!case.paste.contains("smith") && !case.paste.contains('\u{200B}'), "{}", case.paste);
    assert!(case.captures.values().all(|value| !value.contains("smith")));

    // One kind alone, with no list words around it.
    let text = replies(&first_message(&flows, "iCloud backup failed, my number is 06 12 34 56 78"));
    assert!(text.starts_with("I removed a phone number from your message before keeping it.\n"), "{text}");

    // Nothing personal, no notice.
    let text = replies(&first_message(&flows, "iCloud backup failed, not enough storage, 4.87 GB of 5 GB used"));
    assert!(!text.contains("I removed"), "{text}");
}

#[test]
fn a_message_past_the_match_limit_keeps_no_half_address() {
    let flows = shipped_flows();
    let config = EngineConfig { match_limit: 100, ..EngineConfig::default() };
    let key = ConversationKey::new("test", "chat", "", "ann");
    // The address starts before the limit and ends after it.
    let text = format!("{} ann.smith@icloud.com and more", "x".repeat(90));
    let transition = engine::handle(&flows, &config, &key, None, Input::Text(text), 1_000_000);
    let case = transition.case.as_ref().expect("a case is open");
    assert!(!case.paste.contains("ann.smi"), "{}", case.paste);
    assert!(replies(&transition).contains("I removed an e-mail address"));
}

/// The shipped flows with `_bot.yaml` edited.
fn load_with_bot(from: &str, to: &str) -> String {
    let bot = std::fs::read_to_string(root().join("flows/_bot.yaml")).unwrap();
    assert!(bot.contains(from), "_bot.yaml lacks {from:?}");
    let flow = std::fs::read_to_string(root().join("flows/server_outage.yaml")).unwrap();
    let sources = vec![
        Source { path: PathBuf::from("flows/_bot.yaml"), text: bot.replacen(from, to, 1) },
        Source { path: PathBuf::from("flows/server_outage.yaml"), text: flow },
    ];
    match Flows::from_sources(sources) {
        Ok(_) => panic!("the edited _bot.yaml loads"),
        Err(errors) => errors.to_string(),
    }
}

#[test]
fn the_notice_words_are_checked_at_load() {
    let missing = load_with_bot("    ip: \"an IP address\"\n", "");
    assert!(missing.contains("flows/_bot.yaml:") && missing.contains("`ip`"), "{missing}");
    let line: u32 = missing.split("flows/_bot.yaml:").nth(1).unwrap().split(':').next().unwrap().parse().unwrap();
    assert!(line > 0, "{missing}");

    let no_slot = load_with_bot("I removed {removed} from", "I removed something from");
    assert!(no_slot.contains("flows/_bot.yaml:") && no_slot.contains("{removed}"), "{no_slot}");

    let empty = load_with_bot("  last_separator: \" and \"", "  last_separator: \"\"");
    assert!(empty.contains("`personal_data.last_separator` is empty"), "{empty}");
}
