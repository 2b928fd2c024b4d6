//! fixbot-core: the troubleshooting brain of fixbot, free of any chat SDK,
//! database or network code.
//!
//! # Layout
//!
//! - [`flow`]: the flow files (`flows/*.yaml`, `flows/_bot.yaml`), loaded in
//!   two stages and checked, every problem with its file and line; their JSON
//!   Schemas for editors ([`flow::schema`]); translations beside them.
//! - [`lang`]: the five languages, platform locale hints, and the detector
//!   that guesses a paste's language; translations load in `flow`.
//! - [`matcher`]: the patterns' pieces, each a lazy DFA run only where a
//!   literal automaton finds its literals; a message becomes a
//!   [`matcher::Diagnosis`].
//! - [`engine`]: the pure state machine. A case, an input and the time in,
//!   the next case, the replies and the outcome records out.
//! - [`session`]: runs the engine against a [`store::Store`], one message of
//!   a conversation at a time, and keeps floods out ([`flood`]).
//! - [`handover`], [`desk`]: a case handed to a person. What staff read
//!   and do (the packet, thread notes, staff inputs to the engine), and the
//!   staff desk that routes between front-ends' staff places and users.
//! - [`markup`], [`text`], [`redact`]: what replies are made of, how user
//!   text is cleaned and folded, and what is removed before anything is kept.
//! - [`health`], [`metrics`]: what readiness probes and `/metrics` report.
//! - [`stats`]: the outcome log summed up per symptom and step, for staff;
//!   [`why`]: what staff see when they ask why a case went as it did.
//! - [`transcript`]: conversations written as the console shows them, played
//!   through the engine and compared, for `fixbot test` and the tests.
//! - [`yaml`]: the one place YAML is parsed, for flows and the server's
//!   configuration alike.

pub mod button;
pub mod case;
pub mod command;
pub mod desk;
pub mod engine;
pub mod flood;
pub mod flow;
pub mod handover;
pub mod health;
pub mod lang;
pub mod markup;
pub mod matcher;
pub mod metrics;
mod parallel;
pub mod redact;
pub mod session;
pub mod stats;
pub mod store;
pub mod text;
pub mod transcript;
pub mod why;
pub mod yaml;
