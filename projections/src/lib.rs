//! cairn's read side: projections (key-value, audit, metadata views) built by replaying the log.
