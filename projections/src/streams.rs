//! The stream names the views own: the prefixes of the key-value, audit and metadata streams.
//!
//! It sits at the bottom of the crate (it depends on nothing) so that the error type, the
//! shared write core and each view can name the others' streams without depending on them.

/// Key streams are named `kv:<key>`.
pub const KV_STREAM_PREFIX: &str = "kv:";
/// Audit entries live on streams whose names start with this.
pub const AUDIT_STREAM_PREFIX: &str = "audit:";
/// The server's own audit entries (its access audit) live on reserved streams starting with
/// this, which no client can write (`$` names are cairn's); the audit view indexes them beside
/// the clients' entries.
pub const SERVER_AUDIT_STREAM_PREFIX: &str = "$audit:";
/// The metadata view's streams (schemas, services, configuration, relations) start with this.
pub const META_STREAM_PREFIX: &str = "meta:";

/// The stream-name prefixes the views own, with the view's name: their streams are written
/// only through the views' facades (`KvStore`, `AuditLog`, `MetaStore`). A raw event there
/// is one the view may have to skip, and a raw append servers and tools refuse.
pub const VIEW_STREAM_PREFIXES: [(&str, &str); 3] =
    [(KV_STREAM_PREFIX, "key-value"), (AUDIT_STREAM_PREFIX, "audit"), (META_STREAM_PREFIX, "metadata")];

/// The stream-name prefixes of every stream a view folds: the views' own, and the server's
/// audit streams the audit view indexes. A scavenge keeps what only retention hides in them
/// (log-engine's `ScavengeOptions::keep_hidden`).
pub const VIEW_FOLDED_PREFIXES: [&str; 4] =
    [KV_STREAM_PREFIX, AUDIT_STREAM_PREFIX, SERVER_AUDIT_STREAM_PREFIX, META_STREAM_PREFIX];

/// The prefix and view that own `stream`, if a view does.
pub fn view_stream_owner(stream: &str) -> Option<(&'static str, &'static str)> {
    VIEW_STREAM_PREFIXES.iter().copied().find(|(prefix, _)| stream.starts_with(prefix))
}
