//! Flow files exactly as written: serde structs, no validation. The loader
//! turns these into the checked types of [`crate::flow`].
//!
//! The doc comments here are also the descriptions of `flows/schema.json`
//! (see [`super::schema`]), which editors show while an author types, so they
//! are written for content authors rather than for Rust readers.

use schemars::JsonSchema;
use serde::Deserialize;

use crate::yaml::Spanned;

/// Flow and step ids: lower-case letters, digits and `_`, starting with a letter.
pub(super) const ID_PATTERN: &str = r"^[a-z][a-z0-9_]*$";

/// A goto target: `next`, `resolved`, `escalate`, `flow:<id>` or a step id.
/// The loader trims the target, so surrounding spaces are allowed.
const GOTO_PATTERN: &str = r"^\s*(flow:)?[a-z][a-z0-9_]*\s*$";

/// A fixbot flow: one symptom (for example "iCloud storage is full") and the
/// steps that fix it. The file name is the flow's id: `cloud_storage_full.yaml`
/// is the flow `cloud_storage_full`. Run `fixbot check` after every change.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Flow", title = "fixbot flow")]
pub struct RawFlow {
    /// Short name of the symptom, shown on buttons when the bot asks which
    /// problem is meant. At most 80 characters; aim for under 40.
    #[schemars(with = "String", length(min = 1, max = 80))]
    pub title: Spanned<String>,
    /// One sentence saying what is wrong, shown under the title when the bot
    /// recognises the symptom.
    #[schemars(with = "String", length(min = 1))]
    pub summary: Spanned<String>,
    /// Patterns that recognise the symptom in the user's message. Each one
    /// that fires adds its weight to the flow's score; the best flow is chosen
    /// when it reaches `settings.commit_score` in `_bot.yaml` and beats the
    /// runner-up by `settings.margin`.
    #[serde(rename = "match")]
    #[schemars(length(min = 1))]
    pub matchers: Vec<RawMatcher>,
    /// Patterns that rule the flow out: when any of them fires, this flow is
    /// not considered for the message, whatever its score.
    #[serde(default)]
    pub unless: Vec<RawVeto>,
    /// Messages that must, and must not, select this flow. `fixbot check` runs
    /// every example against all the flows.
    #[serde(default)]
    pub examples: RawExamples,
    /// The fix steps, shown one message at a time, in this order unless a
    /// choice jumps elsewhere. Every step must be reachable from the first.
    #[schemars(length(min = 1))]
    pub steps: Vec<RawStep>,
}

/// A pattern that adds its weight to the flow's score when it matches.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Pattern")]
pub struct RawMatcher {
    /// A regular expression in Rust syntax (no look-around, no
    /// back-references), matched case-insensitively against the message with
    /// accents removed and quotes straightened: write plain lower-case ASCII,
    /// in single quotes. A named group such as `(?P<needed>\d+ ?gb)` can be
    /// shown in a step as `{needed|fallback}`.
    #[schemars(with = "String", length(min = 1))]
    pub regex: Spanned<String>,
    /// What the pattern adds to the score when it matches: 10 for an exact
    /// message from the phone, 6 to 9 for a distinctive phrase, 2 to 5 for a
    /// hint that needs another one.
    #[serde(default = "default_weight")]
    #[schemars(range(min = 1, max = 100))]
    pub weight: u32,
}

fn default_weight() -> u32 {
    1
}

/// A pattern that removes the flow from consideration when it matches.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Veto")]
pub struct RawVeto {
    /// A regular expression in Rust syntax, written like the `match` patterns.
    #[schemars(with = "String", length(min = 1))]
    pub regex: Spanned<String>,
}

/// Messages that must, or must not, select the flow; `fixbot check` tests them.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Examples")]
pub struct RawExamples {
    /// 3 to 6 realistic messages that must select this flow: at least one real
    /// device message, one in the user's own words and one not in English.
    #[serde(default, rename = "match")]
    #[schemars(with = "Vec<String>")]
    pub matching: Vec<Spanned<String>>,
    /// 2 or 3 near misses that belong to another flow or to none.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub no_match: Vec<Spanned<String>>,
}

/// One step: a message to the user and the answers it offers. Give `text`
/// (the same for everyone), or `ios` and/or `android`; a step with only one
/// platform's text is skipped for the other platform's users.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    rename = "Step",
    extend("anyOf" = [{ "required": ["text"] }, { "required": ["ios"] }, { "required": ["android"] }])
)]
pub struct RawStep {
    /// The step's name, unique in this flow: lower-case letters, digits and
    /// `_`. Choices jump to a step by its id. `next`, `resolved` and
    /// `escalate` are reserved.
    #[schemars(with = "String", pattern(ID_PATTERN))]
    pub id: Spanned<String>,
    /// What the bot says, for both platforms. Markup: `**bold**`, `` `code` ``,
    /// `[link text](https://…)`, lines starting with `- ` for lists, blank
    /// lines between paragraphs, `{capture|fallback}` slots. One action per
    /// step; aim under 500 characters, never over 2000.
    pub text: Option<String>,
    /// What the bot says to iPhone users, replacing `text` for them. Without
    /// `text` or `android`, the step is for iPhone users only.
    pub ios: Option<String>,
    /// What the bot says to Android users, replacing `text` for them. Without
    /// `text` or `ios`, the step is for Android users only.
    pub android: Option<String>,
    /// The buttons under the step. Leave it out for the defaults: "That
    /// fixed it" (goto `resolved`) and "Still failing" (goto `next`).
    #[schemars(length(min = 1, max = 16))]
    pub choices: Option<Vec<RawChoice>>,
}

/// A button under a step, and where it leads.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Choice")]
pub struct RawChoice {
    /// What the button says: at most 80 characters, best under 30. People may
    /// also type it, or its number.
    #[schemars(with = "String", length(min = 1, max = 80))]
    pub label: Spanned<String>,
    /// Where the button leads: `next` (the next step for the user's platform;
    /// after the last one the case goes to a person), `resolved` (it is
    /// fixed), `escalate` (hand over to a person now, with a case summary),
    /// `flow:<id>` (continue in another flow) or the id of a step of this flow.
    #[schemars(
        with = "String",
        pattern(GOTO_PATTERN),
        extend("examples" = ["next", "resolved", "escalate", "flow:outdated_software"])
    )]
    pub goto: Spanned<String>,
}
