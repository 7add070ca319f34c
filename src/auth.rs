//! Bearer-token authentication and prefix-rule authorisation for `cairn serve --auth FILE`.
//!
//! The auth file is TOML:
//!
//! ```toml
//! [[principal]]
//! name = "planner"
//! # `cairn token` prints a fresh token and this line; the token itself is never stored.
//! token_hash = "blake3:4f6b0c0d6e1c2b3a..."
//! rules = [
//!   { prefix = "agent-", allow = ["read", "append"] },
//!   { prefix = "", allow = ["read"] },
//! ]
//! ```
//!
//! Invariants:
//! - Deny by default: a request is allowed only if one of its principal's rules covers the
//!   resource (the resource name starts with the rule's prefix) and grants the permission.
//!   `admin` implies `read` and `append` on the same prefix.
//! - Only BLAKE3 hashes of tokens are kept. A presented token is hashed and compared with every
//!   principal's hash in constant time (`blake3::Hash` equality is constant-time), and the scan
//!   does not stop at a match, so timing does not reveal which principal, if any, matched.
//! - Loading rejects anything ambiguous: an unknown permission, a malformed hash, two principals
//!   with the same name or the same token.
//!
//! Resources are stream names for the log endpoints; the views use `kv:KEY`, `audit:` and
//! `meta:` (see docs/http-api.md). This module does not know HTTP; it answers yes or no.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use crate::limits::TOKEN_LEN_MAX;

/// Prefix of a stored token hash.
const HASH_SCHEME: &str = "blake3:";

/// A permission a rule can grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    Read,
    Append,
    /// Verify, checkpoints, metrics, restore; implies read and append.
    Admin,
}

impl std::fmt::Display for Permission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Permission::Read => "read",
            Permission::Append => "append",
            Permission::Admin => "admin",
        })
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthFileError {
    #[error("cannot read the auth file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the auth file {} is not valid: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
}

/// Why a request was not authenticated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("this server requires a bearer token: send the header `Authorization: Bearer <token>`")]
    Missing,
    #[error("the Authorization header is not of the form `Bearer <token>`")]
    Malformed,
    #[error("the bearer token is not known to this server")]
    Unknown,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFormat {
    #[serde(default)]
    principal: Vec<PrincipalFormat>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PrincipalFormat {
    name: String,
    token_hash: String,
    #[serde(default)]
    rules: Vec<RuleFormat>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFormat {
    prefix: String,
    allow: Vec<Permission>,
}

/// A rule: permissions on every resource whose name starts with `prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub prefix: String,
    pub allow: Vec<Permission>,
}

/// Someone holding a token.
#[derive(Debug)]
pub struct Principal {
    pub name: String,
    token_hash: blake3::Hash,
    pub rules: Vec<Rule>,
}

impl Principal {
    /// True if a rule covers `resource` and grants `permission` (or admin).
    pub fn allows(&self, permission: Permission, resource: &str) -> bool {
        self.rules.iter().any(|r| {
            resource.starts_with(r.prefix.as_str())
                && r.allow.iter().any(|&p| p == permission || p == Permission::Admin)
        })
    }

    /// True if any rule grants `permission` on anything.
    pub fn allows_any(&self, permission: Permission) -> bool {
        self.rules.iter().any(|r| r.allow.iter().any(|&p| p == permission || p == Permission::Admin))
    }
}

/// The loaded auth file.
#[derive(Debug)]
pub struct Auth {
    principals: Vec<Arc<Principal>>,
}

impl Auth {
    pub fn load(path: &Path) -> Result<Auth, AuthFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| AuthFileError::Read { path: path.into(), source })?;
        Auth::parse(&text).map_err(|message| AuthFileError::Invalid { path: path.into(), message })
    }

    /// Parses the TOML text; the error is a sentence.
    pub fn parse(text: &str) -> Result<Auth, String> {
        let file: FileFormat = toml::from_str(text).map_err(|e| e.to_string().trim_end().to_string())?;
        if file.principal.is_empty() {
            return Err("it names no [[principal]], so every request would be refused".into());
        }
        let mut names = HashSet::new();
        let mut hashes = HashSet::new();
        let mut principals = Vec::new();
        for p in file.principal {
            if !names.insert(p.name.clone()) {
                return Err(format!("principal {:?} appears twice", p.name));
            }
            let token_hash = parse_hash(&p.token_hash)
                .ok_or_else(|| format!("token_hash of principal {:?} is not \"blake3:\" and 64 hex digits", p.name))?;
            if !hashes.insert(*token_hash.as_bytes()) {
                return Err(format!("principal {:?} has the same token as another principal", p.name));
            }
            let rules = p.rules.into_iter().map(|r| Rule { prefix: r.prefix, allow: r.allow }).collect();
            principals.push(Arc::new(Principal { name: p.name, token_hash, rules }));
        }
        Ok(Auth { principals })
    }

    /// Finds the principal of an `Authorization` header value.
    pub fn authenticate(&self, header: Option<&str>) -> Result<Arc<Principal>, AuthError> {
        let header = header.ok_or(AuthError::Missing)?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty() && t.len() <= TOKEN_LEN_MAX)
            .ok_or(AuthError::Malformed)?;
        let presented = hash_token(token);
        let mut found = None;
        for p in &self.principals {
            // Constant-time comparison, and no early exit: see the module invariants.
            if p.token_hash == presented {
                found = Some(p.clone());
            }
        }
        found.ok_or(AuthError::Unknown)
    }

    pub fn principals(&self) -> usize {
        self.principals.len()
    }
}

/// BLAKE3 of a token, as stored in the auth file.
pub fn hash_token(token: &str) -> blake3::Hash {
    blake3::hash(token.as_bytes())
}

/// The auth-file line for a token.
pub fn token_hash_line(token: &str) -> String {
    format!("token_hash = \"{HASH_SCHEME}{}\"", hash_token(token).to_hex())
}

/// A new random token: 244 bits from the OS generator (two v4 UUIDs), hex-encoded.
pub fn new_token() -> String {
    let a = uuid::Uuid::new_v4();
    let b = uuid::Uuid::new_v4();
    format!("cairn_{}{}", a.simple(), b.simple())
}

fn parse_hash(text: &str) -> Option<blake3::Hash> {
    let hex = text.strip_prefix(HASH_SCHEME)?;
    blake3::Hash::from_hex(hex).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(tokens: &[(&str, &str, &str)]) -> String {
        tokens
            .iter()
            .map(|(name, token, rules)| {
                format!("[[principal]]\nname = \"{name}\"\n{}\nrules = [{rules}]\n", token_hash_line(token))
            })
            .collect()
    }

    #[test]
    fn rules_allow_by_prefix_and_deny_by_default() {
        let auth = Auth::parse(&file(&[
            ("agents", "t-agents", r#"{ prefix = "agent-", allow = ["read", "append"] }"#),
            ("ops", "t-ops", r#"{ prefix = "", allow = ["admin"] }"#),
            ("nobody", "t-nobody", ""),
        ]))
        .unwrap();
        let agents = auth.authenticate(Some("Bearer t-agents")).unwrap();
        assert_eq!(agents.name, "agents");
        assert!(agents.allows(Permission::Append, "agent-7"));
        assert!(agents.allows(Permission::Read, "agent-"));
        assert!(!agents.allows(Permission::Read, "billing"));
        assert!(!agents.allows(Permission::Read, ""), "a prefix rule does not grant the whole log");
        assert!(!agents.allows(Permission::Admin, "agent-7"));
        let ops = auth.authenticate(Some("Bearer t-ops")).unwrap();
        assert!(ops.allows(Permission::Append, "anything"), "admin implies append");
        let nobody = auth.authenticate(Some("Bearer t-nobody")).unwrap();
        assert!(!nobody.allows(Permission::Read, "agent-7"));
        assert!(!nobody.allows_any(Permission::Read));
    }

    #[test]
    fn unknown_missing_and_malformed_tokens_are_refused() {
        let auth = Auth::parse(&file(&[("a", "secret", r#"{ prefix = "", allow = ["read"] }"#)])).unwrap();
        assert_eq!(auth.authenticate(None).unwrap_err(), AuthError::Missing);
        assert_eq!(auth.authenticate(Some("Basic xyz")).unwrap_err(), AuthError::Malformed);
        assert_eq!(auth.authenticate(Some("Bearer ")).unwrap_err(), AuthError::Malformed);
        assert_eq!(auth.authenticate(Some("Bearer secreT")).unwrap_err(), AuthError::Unknown);
        assert!(auth.authenticate(Some("Bearer secret")).is_ok());
    }

    #[test]
    fn ambiguous_files_are_rejected() {
        assert!(Auth::parse("").unwrap_err().contains("no [[principal]]"));
        let twice = file(&[("a", "x", ""), ("a", "y", "")]);
        assert!(Auth::parse(&twice).unwrap_err().contains("appears twice"));
        let same_token = file(&[("a", "x", ""), ("b", "x", "")]);
        assert!(Auth::parse(&same_token).unwrap_err().contains("same token"));
        let bad_perm = file(&[("a", "x", r#"{ prefix = "", allow = ["write"] }"#)]);
        assert!(Auth::parse(&bad_perm).is_err());
        let bad_hash = "[[principal]]\nname = \"a\"\ntoken_hash = \"sha1:00\"\n";
        assert!(Auth::parse(bad_hash).unwrap_err().contains("token_hash of principal \"a\""));
    }

    #[test]
    fn new_tokens_are_distinct_and_hash_to_a_loadable_line() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert!(a.len() > 60);
        let text = format!("[[principal]]\nname = \"x\"\n{}\n", token_hash_line(&a));
        let auth = Auth::parse(&text).unwrap();
        assert_eq!(auth.authenticate(Some(&format!("Bearer {a}"))).unwrap().name, "x");
    }
}
