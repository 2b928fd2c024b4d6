//! The navigation commands a user can give at any time, as `/name` on every
//! front-end and as words listed in `flows/_bot.yaml`.

use crate::lang::Lang;

/// Navigation the user can ask for at any time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    /// `/start`: greet, or show where an open case is.
    Start,
    /// `/help`.
    Help,
    /// `/back`: the previous step.
    Back,
    /// `/restart`: close the case and start over.
    Restart,
    /// `/skip`: leave this step without an answer.
    Skip,
    /// `/stop`: close the case.
    Stop,
    /// `/human`: hand the case to a person.
    Human,
    /// `/forget`: delete everything stored about the user.
    Forget,
    /// `/language es`: answer in this language from now on; without a
    /// known language, list them.
    Language(Option<Lang>),
}

impl Command {
    /// Parses `/name` or `/name@botname` (the rest of the line is ignored).
    pub fn parse(text: &str) -> Option<Command> {
        let mut words = text.trim().strip_prefix('/')?.split_whitespace();
        let word = words.next()?;
        let name = word.split('@').next()?.to_ascii_lowercase();
        Some(match name.as_str() {
            "start" => Command::Start,
            "help" => Command::Help,
            "back" => Command::Back,
            "restart" => Command::Restart,
            "skip" => Command::Skip,
            "stop" | "cancel" => Command::Stop,
            "human" | "person" => Command::Human,
            "forget" => Command::Forget,
            "language" | "lang" | "idioma" | "langue" | "sprache" | "lingua" => {
                Command::Language(words.next().and_then(Lang::parse))
            }
            _ => return None,
        })
    }
}
