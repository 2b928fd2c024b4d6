//! fixbot's integration tests: one test binary, one module per area.

/// What every engine transition keeps; shared with the fuzz targets in `fuzz/`.
mod invariants;
/// Simulated people walking scripted cases, checked against the engine alone.
mod simulated;
/// Shared helpers: loading flows, running the binary, fixtures.
mod support;

/// A strict fake of Discord's REST API and gateway.
mod fake_discord;
/// The fake checked with serenity's own client.
mod fake_discord_selftest;
/// A strict fake of the Telegram Bot API.
mod fake_telegram;
/// The fake checked with teloxide's own client.
mod fake_telegram_selftest;
/// Random faults the fakes inject, from a seeded plan.
mod fault_plan;

/// The authors' commands: `fixbot graph` and `fixbot test`.
mod authoring;
/// The `fixbot` command line: check, diagnose, chat, bad input.
mod cli;
/// Top-1 accuracy and wrong commitments over the labelled corpus.
mod corpus;
/// The Discord front-end end to end against the fake REST API and gateway.
mod discord;
/// Engine behaviour on a small fixture flow set.
mod engine;
/// 1,000 messages through both front-ends while the platforms fail at random.
mod faults;
/// Handing a case to a person: packets, both ways of the relay, `/close`, the webhook desk.
mod handover;
/// The hostile-input corpus and forged buttons through both front-ends.
mod hostile;
/// Translations: fallback, checks, the language of a case.
mod i18n;
/// The matcher fires exactly what the regex crate finds.
mod matcher;
/// Two `fixbot serve` processes on one PostgreSQL behind the Telegram webhook, one killed.
mod multi_instance;
/// Engine invariants over generated conversations against the shipped flows.
mod properties;
/// Sanitising and redaction end to end: hostile text, the notice, what is kept.
mod redaction;
/// The flow format's JSON Schemas: current, followed by every shipped file, agreeing with the loader.
mod schema;
/// `fixbot serve` for operators: health, readiness, metrics, reload, signals, logs.
mod serve;
/// The session: per-conversation ordering and compare-and-set retries.
mod session;
/// `fixbot stats` on seeded stores: the figures, the formats, the HTML report in Chromium.
mod stats;
/// One contract, every store backend.
mod store_contract;
/// The Telegram front-end end to end against the fake Bot API.
mod telegram;
/// Every transcript in `flows/transcripts/` replayed through the engine.
mod transcripts;
/// The web chat API: keys, messages, long polls, CORS, refusals, rate limit.
mod web;
/// The web chat page in headless Chromium, driven over WebDriver.
mod web_browser;
/// `/why` for staff on both front-ends, refused to everyone else.
mod why;
