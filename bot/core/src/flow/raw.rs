//! Flow files exactly as written: serde structs, no validation. The loader
//! turns these into the checked types of [`crate::flow`].

use serde::Deserialize;

use crate::yaml::Spanned;

/// One `flows/<id>.yaml` file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFlow {
    pub title: Spanned<String>,
    pub summary: Spanned<String>,
    #[serde(rename = "match")]
    pub matchers: Vec<RawMatcher>,
    #[serde(default)]
    pub unless: Vec<RawVeto>,
    #[serde(default)]
    pub examples: RawExamples,
    pub steps: Vec<RawStep>,
}

/// A pattern that adds its weight to the flow's score.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMatcher {
    pub regex: Spanned<String>,
    #[serde(default = "default_weight")]
    pub weight: u32,
}

fn default_weight() -> u32 {
    1
}

/// A pattern that removes the flow from consideration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVeto {
    pub regex: Spanned<String>,
}

/// Messages that must, or must not, select the flow.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExamples {
    #[serde(default, rename = "match")]
    pub matching: Vec<Spanned<String>>,
    #[serde(default)]
    pub no_match: Vec<Spanned<String>>,
}

/// One step: a text (or per-platform texts) and its choices.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStep {
    pub id: Spanned<String>,
    pub text: Option<String>,
    pub ios: Option<String>,
    pub android: Option<String>,
    pub choices: Option<Vec<RawChoice>>,
}

/// A button under a step.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawChoice {
    pub label: Spanned<String>,
    pub goto: Spanned<String>,
}
