//! fixbot's integration tests: one test binary, one module per area.

/// Shared helpers: loading flows, running the binary, fixtures.
mod support;

/// The `fixbot` command line: check, diagnose, chat, bad input.
mod cli;
/// Top-1 accuracy and wrong commitments over the labelled corpus.
mod corpus;
/// Engine behaviour on a small fixture flow set.
mod engine;
/// The session: per-conversation ordering and compare-and-set retries.
mod session;
/// One contract, every store backend.
mod store_contract;
/// Every transcript in `flows/transcripts/` replayed through the engine.
mod transcripts;
