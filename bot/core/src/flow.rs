//! The validated flow model: every flow's steps with resolved gotos, the bot's
//! own strings, and the matcher built from all of them. A `Flows` value only
//! exists when every file passed every check.

mod bot;
mod i18n;
mod load;
mod raw;
pub mod schema;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

pub use bot::{Bot, Labels, Messages, Settings, Word};
pub use i18n::{StaleHash, source_hash};
pub use load::Source;

use crate::lang::Lang;

use crate::markup::Template;
use crate::matcher::{Diagnosis, Matcher};

/// Discord's limit for a message; Telegram allows 4096, so this is the bound.
pub const MAX_TEXT_CHARS: usize = 2000;
/// Both platforms' limit for a button label.
pub const MAX_LABEL_CHARS: usize = 80;
/// Most choices one step may offer: Discord shows at most 25 buttons, and a
/// person reading on a phone wants far fewer.
pub const MAX_CHOICES: usize = 16;
/// Most buttons one message may carry on every platform: Discord's five rows
/// of five. The list of symptoms is the one menu whose length content sets.
pub const MAX_BUTTONS: usize = 25;

/// Which kind of phone a case is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    /// iPhone, backing up to iCloud or Finder/iTunes.
    Ios,
    /// Android, backing up to Google One or a maker's tool.
    Android,
}

impl Platform {
    /// The lower-case name used in JSON and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Ios => "ios",
            Platform::Android => "android",
        }
    }
}

/// Where a choice leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Goto {
    /// The next step that applies to the user's platform; past the last step
    /// the case is handed to a person.
    Next,
    /// A step of the same flow, by index.
    Step(usize),
    /// The problem is fixed: the case ends resolved.
    Resolved,
    /// Hand the case to a person now.
    Escalate,
    /// Continue in another flow, by id.
    Flow(String),
}

/// A button under a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// What the button says.
    pub label: String,
    /// Where it leads.
    pub goto: Goto,
}

/// One message of a flow and the answers it offers.
#[derive(Debug, Clone)]
pub struct Step {
    /// Unique within the flow; cases remember their step by id.
    pub id: String,
    /// Text for iPhone users, or `None` when the step does not apply to them.
    pub ios: Option<Template>,
    /// Text for Android users, or `None` when the step does not apply to them.
    pub android: Option<Template>,
    /// At least one choice; the defaults when the file gave none.
    pub choices: Vec<Choice>,
    /// Whether the two platforms see different texts (or only one sees it).
    pub differs_by_platform: bool,
}

impl Step {
    /// The text for `platform`, or `None` when the step does not apply.
    pub fn text_for(&self, platform: Platform) -> Option<&Template> {
        match platform {
            Platform::Ios => self.ios.as_ref(),
            Platform::Android => self.android.as_ref(),
        }
    }
}

/// One symptom and its fix steps.
#[derive(Debug, Clone)]
pub struct Flow {
    /// The file stem, e.g. `cloud_storage_full`.
    pub id: String,
    /// Short name, shown on buttons.
    pub title: String,
    /// One sentence saying what is wrong.
    pub summary: String,
    /// Hash of the file's text; a case notices when its flow changed.
    pub version: u64,
    /// The steps in order; never empty.
    pub steps: Vec<Step>,
    /// Path of the file the flow came from.
    pub path: PathBuf,
}

impl Flow {
    /// Index of the step with this id.
    pub fn step_index(&self, id: &str) -> Option<usize> {
        self.steps.iter().position(|step| step.id == id)
    }
}

/// Every flow, the bot strings, and the matcher built from them.
#[derive(Debug)]
pub struct Flows {
    flows: Vec<Flow>,
    by_id: HashMap<String, usize>,
    bot: Bot,
    matcher: Matcher,
    /// Every language with translation files, English where untranslated.
    locales: BTreeMap<Lang, i18n::Locale>,
    warnings: Vec<Problem>,
    stale: Vec<StaleHash>,
}

impl Flows {
    /// Loads and checks every `*.yaml` file in `dir`; `_bot.yaml` holds the
    /// bot strings. Returns every problem found, not just the first.
    pub fn load_dir(dir: &Path) -> Result<Flows, FlowErrors> {
        load::load_dir(dir)
    }

    /// Loads and checks flows from in-memory sources (for embedded flows and
    /// tests). Paths are used for ids and diagnostics only.
    pub fn from_sources(sources: Vec<Source>) -> Result<Flows, FlowErrors> {
        load::from_sources(sources)
    }

    /// The flow with this id.
    pub fn get(&self, id: &str) -> Option<&Flow> {
        self.by_id.get(id).map(|&index| &self.flows[index])
    }

    /// The flow at this index (as used by the matcher).
    pub fn at(&self, index: usize) -> &Flow {
        &self.flows[index]
    }

    /// All flows, sorted by id.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &Flow> {
        self.flows.iter()
    }

    /// The bot's own strings and settings.
    pub fn bot(&self) -> &Bot {
        &self.bot
    }

    /// The compiled matcher over every flow.
    pub fn matcher(&self) -> &Matcher {
        &self.matcher
    }

    /// The flow with this id, in `lang` (English texts where untranslated).
    /// Steps, gotos and versions are the same in every language.
    pub fn get_in(&self, lang: Lang, id: &str) -> Option<&Flow> {
        let index = *self.by_id.get(id)?;
        Some(self.locales.get(&lang).map_or(&self.flows[index], |locale| &locale.flows[index]))
    }

    /// The flow at this index, in `lang`.
    pub fn at_in(&self, lang: Lang, index: usize) -> &Flow {
        self.locales.get(&lang).map_or(&self.flows[index], |locale| &locale.flows[index])
    }

    /// All flows in `lang`, sorted by id.
    pub fn iter_in(&self, lang: Lang) -> impl ExactSizeIterator<Item = &Flow> {
        self.locales.get(&lang).map_or(&self.flows, |locale| &locale.flows).iter()
    }

    /// The bot's strings in `lang` (English where untranslated).
    pub fn bot_in(&self, lang: Lang) -> &Bot {
        self.locales.get(&lang).map_or(&self.bot, |locale| &locale.bot)
    }

    /// The languages that have translation files.
    pub fn languages(&self) -> impl Iterator<Item = Lang> + '_ {
        self.locales.keys().copied()
    }

    /// Missing and stale translations: worth fixing, but no reason to
    /// refuse the flows (`fixbot check` prints them as warnings).
    pub fn warnings(&self) -> &[Problem] {
        &self.warnings
    }

    /// Translations whose English changed since they were written, with the
    /// hash that marks them reviewed (`fixbot check --bless-translations`).
    pub fn stale_translations(&self) -> &[StaleHash] {
        &self.stale
    }

    /// Diagnoses a message: shorthand for `self.matcher().diagnose(text)`.
    pub fn diagnose(&self, text: &str) -> Diagnosis {
        self.matcher.diagnose(text)
    }
}

/// One problem in a flow file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file, as given to the loader.
    pub file: PathBuf,
    /// 1-based line, or 0 for the file as a whole.
    pub line: u64,
    /// What is wrong, in one line.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            0 => write!(f, "{}: {}", self.file.display(), self.message),
            line => write!(f, "{}:{line}: {}", self.file.display(), self.message),
        }
    }
}

/// Every problem the loader found, one per line when displayed.
#[derive(Debug, Clone, thiserror::Error)]
pub struct FlowErrors(pub Vec<Problem>);

impl fmt::Display for FlowErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, problem) in self.0.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

/// Collects problems for the file being checked.
#[derive(Debug, Default)]
pub(crate) struct Problems {
    file: PathBuf,
    all: Vec<Problem>,
}

impl Problems {
    fn set_file(&mut self, file: &Path) {
        self.file = file.to_path_buf();
    }

    /// Records a problem. Messages quote what the author wrote, which may
    /// hold line breaks (a multi-line example, a quoted id); those are
    /// written as `\n` so each problem stays one `file:line: reason` line.
    pub(crate) fn push(&mut self, line: u64, message: impl Into<String>) {
        let message = message.into();
        let message = if message.contains(char::is_control) {
            message
                .chars()
                .map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() })
                .collect()
        } else {
            message
        };
        self.all.push(Problem { file: self.file.clone(), line, message });
    }

    fn count(&self) -> usize {
        self.all.len()
    }
}
