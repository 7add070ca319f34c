//! The access audit and the principal stamp.
//!
//! - Every request answered 401 or 403, and every admin action (whatever its answer), is
//!   appended as an audit entry (category `authorization`) to the reserved stream
//!   [`ACCESS_AUDIT_STREAM`], which no client can write, before the answer is sent: a client
//!   that saw the answer can find the entry. The audit view indexes it beside the entries
//!   clients write, so `GET /v1/audit?category=authorization` shows both; the `stream` field
//!   tells them apart.
//! - Denials are bounded: at most [`ACCESS_DENIALS_PER_SECOND_MAX`] entries a second, so a
//!   flood of bad tokens cannot fill the disk. What is beyond is counted
//!   (`cairn_access_audit_dropped_total`) and logged, not written. Admin actions are never
//!   dropped: only an admin can make them.
//! - A read replica (`cairn serve --follow`) writes nothing to its log: its denials and refused
//!   admin actions are logged by the server, not appended.
//! - Every event appended through the log endpoints carries its principal in the reserved
//!   metadata key [`PRINCIPAL_KEY`], written by the server; a client's own `$principal` is
//!   refused with 400, so the key cannot be forged. The key-value, audit and metadata endpoints
//!   write through views made for the caller ([`projections::Views::as_principal`]), so their
//!   events carry it too. Without `--auth` there is no principal and nothing is stamped.
//! - An append made with `allow_reserved=true` (an admin writing a view's stream directly) is
//!   an admin action: audited whatever its answer.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{MatchedPath, Query, Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::Response;
use log_engine::{ExpectedVersion, NewEvent, StreamAppend, StreamName};
use parking_lot::Mutex;
use projections::NewAuditEntry;
use serde::Deserialize;
use serde_json::json;

use super::error::ApiError;
use super::extract::Caller;
use super::AppState;

/// The reserved stream the server's own authorization entries go to.
pub const ACCESS_AUDIT_STREAM: &str = "$audit:authorization";
/// The reserved metadata key naming who appended an event.
pub use projections::PRINCIPAL_KEY;
/// Most denied requests (401, 403) written to the access audit per second; the rest are
/// counted and dropped.
pub const ACCESS_DENIALS_PER_SECOND_MAX: u32 = 100;
/// The longest error message kept in an entry, in bytes.
const REASON_LEN_MAX: usize = 512;
/// The longest resource (request path) kept in an entry, in bytes.
const RESOURCE_LEN_MAX: usize = 1024;

/// Requests that change what the server is or who may use it: audited whatever their answer.
/// (method, matched route)
const ADMIN_ACTIONS: &[(&str, &str)] = &[
    ("POST", "/v1/verify"),
    ("POST", "/v1/checkpoints"),
    ("POST", "/v1/admin/tokens"),
    ("PUT", "/v1/admin/tokens/{name}"),
    ("DELETE", "/v1/admin/tokens/{name}"),
    // The stream lifecycle's changes end or shorten what readers see: who did it is recorded.
    ("DELETE", "/v1/streams/{stream}"),
    ("POST", "/v1/streams/{stream}/close"),
    ("PUT", "/v1/streams/{stream}/metadata"),
    ("POST", "/v1/streams/{stream}/fork"),
    ("POST", "/v1/erase"),
    // A scavenge takes payloads off the disk for good.
    ("POST", "/v1/admin/scavenge"),
    // A key rotation changes what every later record is sealed with.
    ("POST", "/v1/admin/keys/rotate"),
];

/// The one query parameter the audit looks at: an append with `allow_reserved=true` writes a
/// view's stream directly (admin only), an admin action. Read as the append handlers read it.
#[derive(Debug, Deserialize)]
struct ReservedFlag {
    #[serde(default)]
    allow_reserved: bool,
}

/// The rate bound of denial entries: a one-second window and its count.
#[derive(Debug, Default)]
pub struct AccessAudit {
    window: Mutex<(u64, u32)>,
}

impl AccessAudit {
    /// True if one more denial may be written in the current second.
    fn admit(&self, now_s: u64) -> bool {
        let mut window = self.window.lock();
        if window.0 != now_s {
            *window = (now_s, 0);
        }
        window.1 += 1;
        window.1 <= ACCESS_DENIALS_PER_SECOND_MAX
    }
}

/// What an audit entry says about one request.
struct Access<'a> {
    principal: &'a str,
    operation: String,
    resource: &'a str,
    status: u16,
    denied: bool,
    reason: Option<String>,
}

/// Middleware: audits denials and admin actions (see the module doc).
pub async fn audit(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    if state.auth.is_none() {
        return next.run(request).await;
    }
    let method = request.method().clone();
    let reserved_write = method == Method::POST
        && Query::<ReservedFlag>::try_from_uri(request.uri()).is_ok_and(|Query(q)| q.allow_reserved);
    let route = request.extensions().get::<MatchedPath>().map(|m| m.as_str().to_string());
    let path = request.uri().path().to_string();
    let authorization = request.headers().get(header::AUTHORIZATION).cloned();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    let denied = status == 401 || status == 403;
    let route_name = route.as_deref().unwrap_or("(unmatched)");
    let admin = reserved_write || ADMIN_ACTIONS.iter().any(|&(m, r)| m == method.as_str() && r == route_name);
    if !denied && !admin {
        return response;
    }
    if state.replica.is_some() {
        // A read replica writes nothing to its log (the leader's audit is the log's); its own
        // denials go to its server log instead.
        tracing::warn!(status, %method, path, "access audit on a read replica: denied or refused, not recorded in the log");
        return response;
    }
    if denied && !state.access_audit.admit(now_s()) {
        state.metrics.access_audit_dropped.inc();
        tracing::warn!(status, %method, path, "access audit: more than ACCESS_DENIALS_PER_SECOND_MAX denials this second; not recorded");
        return response;
    }
    let principal = match (&state.auth, authorization.as_ref().and_then(|v| v.to_str().ok())) {
        (Some(auth), header) => auth.authenticate(header).map(|p| p.name.clone()).ok(),
        (None, _) => None,
    };
    // An error answer is small JSON made by this server; its message is the reason.
    let (response, reason) = if status >= 400 { split_reason(response).await } else { (response, None) };
    let access = Access {
        principal: principal.as_deref().unwrap_or("anonymous"),
        operation: if reserved_write {
            format!("{method} {route_name}?allow_reserved=true")
        } else {
            format!("{method} {route_name}")
        },
        resource: truncate(&path, RESOURCE_LEN_MAX),
        status,
        denied,
        reason,
    };
    if let Err(e) = record(&state, &access).await {
        tracing::error!(error = %e.message, status, %method, path, "access audit: the entry could not be written");
    }
    response
}

async fn split_reason(response: Response) -> (Response, Option<String>) {
    let (parts, body) = response.into_parts();
    match axum::body::to_bytes(body, 64 * 1024).await {
        Ok(bytes) => {
            let reason = serde_json::from_slice::<serde_json::Value>(&bytes).ok().and_then(|v| {
                v.get("message").and_then(|m| m.as_str()).map(|m| truncate(m, REASON_LEN_MAX).to_string())
            });
            (Response::from_parts(parts, Body::from(bytes)), reason)
        }
        Err(_) => (Response::from_parts(parts, Body::empty()), None),
    }
}

/// Appends one entry to [`ACCESS_AUDIT_STREAM`].
async fn record(state: &AppState, access: &Access<'_>) -> Result<(), ApiError> {
    let (level, event, outcome) = if access.denied {
        ("warn", "access.denied", "denied")
    } else if access.status < 400 {
        ("info", "admin.action", "success")
    } else {
        ("warn", "admin.action", "failure")
    };
    let mut metadata = json!({"operation": access.operation, "status": access.status});
    if let Some(reason) = &access.reason {
        metadata["reason"] = json!(reason);
    }
    let entry = json!({
        "level": level,
        "category": "authorization",
        "event": event,
        "actor": {"type": "user", "id": access.principal},
        "target": {"type": "resource", "id": access.resource},
        "outcome": outcome,
        "metadata": metadata,
        "source": {"component": "cairn serve"},
    });
    append_entry(state, entry, access.principal).await
}

/// Validates `entry` as an audit entry and appends it, stamped with `principal`.
pub(super) async fn append_entry(state: &AppState, entry: serde_json::Value, principal: &str) -> Result<(), ApiError> {
    let parsed: NewAuditEntry = serde_json::from_value(entry.clone())
        .map_err(|e| ApiError::internal(format!("the access audit entry is not valid: {e}")))?;
    parsed.validate().map_err(|e| ApiError::internal(format!("the access audit entry is not valid: {e}")))?;
    let event = NewEvent::json(projections::AUDIT_EVENT_TYPE, &entry).with_metadata(&json!({PRINCIPAL_KEY: principal}));
    let stream = StreamName::reserved(ACCESS_AUDIT_STREAM).expect("the access audit stream's name is valid");
    state
        .log
        .append_multi_async(vec![StreamAppend { stream, expected: ExpectedVersion::Any, events: vec![event] }])
        .await?;
    state.metrics.access_audit_entries.inc();
    Ok(())
}

/// Adds `"$principal": NAME` to an event's metadata (JSON object text, or empty for none),
/// keeping the client's bytes as they were; refuses a client's own `$principal`.
pub fn stamp_principal(caller: &Caller, metadata: Vec<u8>, what: &str) -> Result<Vec<u8>, ApiError> {
    if !metadata.is_empty() {
        let keys: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&metadata).map_err(|e| {
            ApiError::bad_request("invalid_input", format!("the metadata of {what} is not a JSON object: {e}"))
        })?;
        if keys.contains_key(PRINCIPAL_KEY) {
            return Err(ApiError::bad_request(
                "reserved_metadata",
                format!("the metadata of {what} holds {PRINCIPAL_KEY:?}, which only the server writes"),
            ));
        }
    }
    let Caller::Principal(principal) = caller else { return Ok(metadata) };
    Ok(projections::with_principal(&metadata, &principal.name))
}

fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn now_s() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stamp_keeps_the_clients_bytes_and_refuses_a_forged_principal() {
        let auth = crate::auth::Auth::parse(&format!(
            "[[principal]]\nname = \"agent \\\"7\\\"\"\n{}\n",
            crate::auth::token_hash_line("t")
        ))
        .unwrap();
        let caller = Caller::Principal(auth.authenticate(Some("Bearer t")).unwrap());
        let stamped =
            |m: &str| String::from_utf8(stamp_principal(&caller, m.as_bytes().to_vec(), "event 0").unwrap()).unwrap();
        assert_eq!(stamped(""), r#"{"$principal":"agent \"7\""}"#);
        assert_eq!(stamped("{}"), r#"{"$principal":"agent \"7\""}"#);
        assert_eq!(
            stamped(r#"{"run":1.50,"x":{"$principal":1}}"#),
            r#"{"$principal":"agent \"7\"","run":1.50,"x":{"$principal":1}}"#
        );
        let forged = stamp_principal(&caller, br#"{"$principal":"ops"}"#.to_vec(), "event 0").unwrap_err();
        assert_eq!((forged.status.as_u16(), forged.code), (400, "reserved_metadata"));
        assert!(stamp_principal(&Caller::Open, br#"{"$principal":"ops"}"#.to_vec(), "event 0").is_err());
        assert_eq!(stamp_principal(&Caller::Open, b"{}".to_vec(), "e").unwrap(), b"{}");
    }

    #[test]
    fn denials_beyond_the_bound_are_not_admitted_until_the_next_second() {
        let audit = AccessAudit::default();
        let admitted = (0..ACCESS_DENIALS_PER_SECOND_MAX + 10).filter(|_| audit.admit(7)).count();
        assert_eq!(admitted, ACCESS_DENIALS_PER_SECOND_MAX as usize);
        assert!(audit.admit(8));
    }
}
