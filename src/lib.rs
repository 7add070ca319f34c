//! cairn: an append-only, event-sourced log store for AI-agent platforms.
//!
//! This package is the `cairn` binary (a CLI and an HTTP server over the embedded store) and a
//! thin library that re-exports the three engine crates, so that an embedding application needs
//! one dependency:
//!
//! - [`log_engine`]: the segmented write-ahead log, the single source of truth;
//! - [`projections`]: the read side (key-value, audit and metadata views);
//! - [`snapshotter`]: hash-chained checkpoints, restore and recovery drills.
//!
//! The modules below hold the binary's own code. They depend on the engine crates; nothing in
//! the engine crates depends on them.

pub use log_engine;
pub use projections;
pub use snapshotter;

pub mod archive;
pub mod auth;
pub mod backup;
pub mod cli;
pub mod codes;
pub mod config;
pub mod demo;
pub mod error;
pub mod http;
pub mod interrupt;
pub mod limits;
pub mod mcp;
pub mod output;
pub mod replica;
pub mod server_file;
pub mod store;
pub mod tier;
pub mod wire;
