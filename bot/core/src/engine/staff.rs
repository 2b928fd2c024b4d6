//! The engine while a case is with a person: the user's words go to staff
//! and never move the flow, and what staff do arrives as [`StaffInput`]s.

use super::{Command, Input, REDACT_OVERLAP, Run, StaffInput, StaffNote, ToStaff};
use crate::redact::redact;
use crate::text::{has_words, sanitize, truncate};

impl Run<'_> {
    /// Whether the case is with a person.
    pub(super) fn with_staff(&self) -> bool {
        self.case.as_ref().is_some_and(|case| case.staff.is_some())
    }

    /// An input of the user while the case is with a person: text goes to
    /// them and never advances the flow; only `/stop` and `/restart` act,
    /// since words like "back" or "yes" are conversation with a person.
    pub(super) fn input_with_staff(&mut self, input: Input) {
        let messages = &self.bot().messages;
        match input {
            Input::Button(_) => self.notice = Some(messages.stale_button.render().to_plain()),
            Input::Command(command) => self.command_with_staff(command),
            Input::Text(raw) => {
                let clean = sanitize(&raw);
                if clean.is_empty() {
                    return;
                }
                if let Some(command) = Command::parse(&clean) {
                    return self.command_with_staff(command);
                }
                if !has_words(&clean) {
                    return self.say(&messages.no_words, &[]);
                }
                let limit = self.config.match_limit;
                let mut redacted = redact(truncate(&clean, limit.saturating_add(REDACT_OVERLAP)));
                redacted.text = sanitize(truncate(&redacted.text, limit));
                if !redacted.removed.is_empty() {
                    let removed = self.flows.bot().personal_data.list(&redacted.removed);
                    self.say(&messages.removed, &[("removed", &removed)]);
                }
                self.touch();
                self.tell_staff(StaffNote::Message(redacted.text));
            }
            Input::Staff(staff) => self.staff(staff),
        }
    }

    fn command_with_staff(&mut self, command: Command) {
        let messages = &self.bot().messages;
        match command {
            Command::Stop => {
                self.tell_staff(StaffNote::UserClosed);
                self.remove_case();
                self.say(&messages.stopped, &[]);
            }
            Command::Restart => {
                self.tell_staff(StaffNote::UserClosed);
                self.remove_case();
                self.say(&messages.restarted, &[]);
                self.say(&messages.greeting, &[]);
            }
            // The session deletes the case before the engine runs, so this
            // only keeps the match whole.
            Command::Forget => {
                self.case = None;
                self.say(&messages.forgotten, &[]);
            }
            _ => self.say(&messages.with_staff, &[]),
        }
    }

    /// Something staff did: the thread opened, a reply, a close.
    pub(super) fn staff(&mut self, input: StaffInput) {
        let messages = &self.bot().messages;
        if !self.with_staff() {
            // The case closed in the meantime; the caller sees no case.
            return;
        }
        match input {
            StaffInput::Opened(thread) => {
                if let Some(staff) = self.case.as_mut().and_then(|case| case.staff.as_mut()) {
                    staff.thread.get_or_insert(thread);
                    self.changed = true;
                }
            }
            StaffInput::Reply { name, text } => {
                let text = sanitize(&text);
                if text.is_empty() {
                    return;
                }
                self.touch();
                self.say(&messages.staff_says, &[("name", &name), ("text", &text)]);
            }
            StaffInput::Close { name } => {
                self.tell_staff(StaffNote::StaffClosed(name.clone()));
                self.remove_case();
                self.say(&messages.staff_closed, &[("name", &name)]);
            }
            StaffInput::Unreachable => {
                self.remove_case();
                self.say(&messages.staff_unreachable, &[]);
            }
        }
    }

    /// Leaves `note` for the case's staff thread.
    fn tell_staff(&mut self, note: StaffNote) {
        let Some(case) = &self.case else { return };
        let thread = case.staff.as_ref().and_then(|staff| staff.thread.clone());
        self.to_staff = Some(ToStaff { reference: case.reference(), thread, note });
    }
}
