//! fixbot-core: the troubleshooting brain of fixbot, free of any chat SDK,
//! database or network code.
//!
//! # Layout
//!
//! - [`flow`]: the flow files (`flows/*.yaml`, `flows/_bot.yaml`), loaded in
//!   two stages and checked, every problem with its file and line.
//! - [`matcher`]: one `RegexSet` over every pattern; a message becomes a
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
pub mod markup;
pub mod matcher;
pub mod metrics;
pub mod redact;
pub mod session;
pub mod store;
pub mod text;
pub mod transcript;
pub mod yaml;
