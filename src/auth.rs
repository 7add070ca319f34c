//! Bearer-token authentication and prefix-rule authorisation for `cairn serve --auth FILE`,
//! with tokens that admins add, change and revoke while the server runs.
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
//!   { prefix = "agent-secret-", deny = ["read"] },
//!   { prefix = "", allow = ["list"] },
//! ]
//! ```
//!
//! Invariants:
//! - Deny by default: a request is allowed only if one of its principal's rules covers the
//!   resource (the resource name starts with the rule's prefix) and grants the permission, and
//!   no rule covering it denies that permission: an explicit deny wins over every allow.
//!   `admin` implies every permission; `read` implies `list`; nothing else implies anything
//!   (`append` does not grant `delete` or `erase`).
//! - Only BLAKE3 hashes of tokens are kept, in the file and in the token stream alike. A
//!   presented token is hashed and compared with every principal's hash in constant time
//!   (`blake3::Hash` equality is constant-time), and the scan does not stop at a match, so timing
//!   does not reveal which principal, if any, matched.
//! - Loading rejects anything ambiguous: an unknown permission, a malformed hash, two principals
//!   with the same name or the same token, in the file or between the file and the admin-made
//!   tokens.
//! - The principals in force are one immutable set swapped whole: a request sees the set before
//!   a change or the set after it, never a mix. A reload of the file (SIGHUP) or an admin change
//!   takes effect on the next request; a file that fails to load leaves the set as it was.
//!
//! Principals come from two sources: the file (changed by editing it and sending SIGHUP) and the
//! token stream [`TOKEN_STREAM`] (changed through `/v1/admin/tokens`, replayed at start, so the
//! history of every rule is in the log). Resources are stream names for the log endpoints; the
//! views use `kv:KEY`, `audit:` and `meta:` (see docs/http-api.md). This module does not know
//! HTTP; it answers yes or no.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use crate::limits::TOKEN_LEN_MAX;

/// Prefix of a stored token hash.
const HASH_SCHEME: &str = "blake3:";

/// The reserved stream holding the admin-made tokens' history: one event per change.
pub const TOKEN_STREAM: &str = "$auth:tokens";
/// Event types on [`TOKEN_STREAM`]. Data: `{"name", "token_hash"?, "rules"?}`.
pub const TOKEN_ADDED: &str = "token.added";
pub const TOKEN_RULES_CHANGED: &str = "token.rules_changed";
pub const TOKEN_REVOKED: &str = "token.revoked";
/// Longest principal name, in bytes (names appear in audit entries and error messages).
pub const PRINCIPAL_NAME_LEN_MAX: usize = 128;
/// Most rules one principal may have.
pub const RULES_PER_PRINCIPAL_MAX: usize = 256;

/// A permission a rule can grant or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// Read events and view entries.
    Read,
    /// List names: streams, keys, subjects, services. Implied by `read`.
    List,
    /// Append events and write view entries.
    Append,
    /// Delete streams (not implied by `append`).
    Delete,
    /// Erase payloads (not implied by `append`).
    Erase,
    /// Verify, checkpoints, metrics, tokens; implies every other permission.
    Admin,
}

impl Permission {
    /// True if holding `self` grants `wanted`.
    fn grants(self, wanted: Permission) -> bool {
        self == wanted || self == Permission::Admin || (self == Permission::Read && wanted == Permission::List)
    }
}

impl std::fmt::Display for Permission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Permission::Read => "read",
            Permission::List => "list",
            Permission::Append => "append",
            Permission::Delete => "delete",
            Permission::Erase => "erase",
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

/// Why an admin change of the tokens was refused. The message is a sentence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenChangeError {
    #[error("{0}")]
    Invalid(String),
    #[error("no token named {0:?} was made through the admin API")]
    NotFound(String),
    #[error("a principal named {0:?} exists already")]
    Exists(String),
    #[error("principal {0:?} comes from the auth file: change it there and send SIGHUP")]
    FromFile(String),
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
    rules: Vec<Rule>,
}

/// A rule: permissions granted (`allow`) and refused (`deny`) on every resource whose name
/// starts with `prefix`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub prefix: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<Permission>,
    /// Wins over every `allow` of any rule covering the same resource.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<Permission>,
}

/// Where a principal is defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The `--auth` file.
    File,
    /// `/v1/admin/tokens` (the token stream).
    Api,
}

/// Someone holding a token.
#[derive(Debug)]
pub struct Principal {
    pub name: String,
    token_hash: blake3::Hash,
    pub rules: Vec<Rule>,
    pub source: Source,
}

impl Principal {
    /// True if a rule covering `resource` grants `permission` and none covering it denies it.
    pub fn allows(&self, permission: Permission, resource: &str) -> bool {
        let covering = || self.rules.iter().filter(|r| resource.starts_with(r.prefix.as_str()));
        let denied = covering().any(|r| r.deny.contains(&permission));
        !denied && covering().any(|r| r.allow.iter().any(|p| p.grants(permission)))
    }

    /// True if any rule grants `permission` on anything (a first check before the resource is
    /// known; the resource's own check follows).
    pub fn allows_any(&self, permission: Permission) -> bool {
        self.rules.iter().any(|r| r.allow.iter().any(|p| p.grants(permission)))
    }
}

/// One principal as `/v1/admin/tokens` lists it (never the token nor its hash).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PrincipalInfo {
    pub name: String,
    pub source: Source,
    pub rules: Vec<Rule>,
}

/// An event of the token stream, as its JSON data.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEvent {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<Vec<Rule>>,
}

/// The principals in force: the file's and the API's, swapped whole on every change.
#[derive(Debug, Default)]
struct Principals {
    file: Vec<Arc<Principal>>,
    api: BTreeMap<String, Arc<Principal>>,
}

impl Principals {
    fn all(&self) -> impl Iterator<Item = &Arc<Principal>> {
        self.file.iter().chain(self.api.values())
    }

    /// Refuses a set where two principals share a name or a token.
    fn check(&self) -> Result<(), String> {
        let mut names = HashSet::new();
        let mut hashes = HashSet::new();
        for p in self.all() {
            if !names.insert(p.name.as_str()) {
                return Err(format!("principal {:?} appears twice", p.name));
            }
            if !hashes.insert(*p.token_hash.as_bytes()) {
                return Err(format!("principal {:?} has the same token as another principal", p.name));
            }
        }
        Ok(())
    }
}

/// The auth state of a server: the file's principals and the admin-made ones.
#[derive(Debug)]
pub struct Auth {
    path: Option<PathBuf>,
    current: RwLock<Arc<Principals>>,
}

impl Auth {
    pub fn load(path: &Path) -> Result<Auth, AuthFileError> {
        let file = Auth::load_file(path)?;
        Ok(Auth {
            path: Some(path.to_path_buf()),
            current: RwLock::new(Arc::new(Principals { file, api: BTreeMap::new() })),
        })
    }

    fn load_file(path: &Path) -> Result<Vec<Arc<Principal>>, AuthFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| AuthFileError::Read { path: path.into(), source })?;
        parse_file(&text).map_err(|message| AuthFileError::Invalid { path: path.into(), message })
    }

    /// Parses the TOML text; the error is a sentence.
    pub fn parse(text: &str) -> Result<Auth, String> {
        let file = parse_file(text)?;
        Ok(Auth { path: None, current: RwLock::new(Arc::new(Principals { file, api: BTreeMap::new() })) })
    }

    /// Reads the auth file again (SIGHUP). On success the next request sees the new file's
    /// principals beside the API's; on failure nothing changes and the error says why.
    pub fn reload_file(&self) -> Result<usize, AuthFileError> {
        let Some(path) = &self.path else { return Ok(0) };
        let file = Auth::load_file(path)?;
        let mut current = self.current.write();
        let next = Principals { file, api: current.api.clone() };
        next.check().map_err(|message| AuthFileError::Invalid { path: path.clone(), message })?;
        let count = next.file.len();
        *current = Arc::new(next);
        Ok(count)
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
        let principals = self.current.read().clone();
        let mut found = None;
        for p in principals.all() {
            // Constant-time comparison, and no early exit: see the module invariants.
            if p.token_hash == presented {
                found = Some(p.clone());
            }
        }
        found.ok_or(AuthError::Unknown)
    }

    /// How many principals are in force.
    pub fn principals(&self) -> usize {
        self.current.read().all().count()
    }

    /// Every principal, file first, then the API's by name.
    pub fn list(&self) -> Vec<PrincipalInfo> {
        let principals = self.current.read().clone();
        principals
            .all()
            .map(|p| PrincipalInfo { name: p.name.clone(), source: p.source, rules: p.rules.clone() })
            .collect()
    }

    /// Checks a change against the principals in force, before its event is appended. Nothing
    /// changes until [`Auth::apply`].
    pub fn plan(&self, event_type: &str, event: &TokenEvent) -> Result<(), TokenChangeError> {
        let current = self.current.read().clone();
        let name = &event.name;
        let in_file = current.file.iter().any(|p| &p.name == name);
        let in_api = current.api.contains_key(name);
        match event_type {
            TOKEN_ADDED if in_file || in_api => return Err(TokenChangeError::Exists(name.clone())),
            TOKEN_RULES_CHANGED | TOKEN_REVOKED if in_file => return Err(TokenChangeError::FromFile(name.clone())),
            TOKEN_RULES_CHANGED | TOKEN_REVOKED if !in_api => return Err(TokenChangeError::NotFound(name.clone())),
            _ => {}
        }
        let mut next = Principals { file: current.file.clone(), api: current.api.clone() };
        fold(&mut next.api, event_type, event).map_err(TokenChangeError::Invalid)?;
        next.check().map_err(TokenChangeError::Invalid)
    }

    /// Applies a token-stream event (one just appended, or one replayed at start). An event that
    /// does not fit (replayed after the file changed, say) is skipped with the reason.
    pub fn apply(&self, event_type: &str, event: &TokenEvent) -> Result<(), String> {
        let mut current = self.current.write();
        let mut next = Principals { file: current.file.clone(), api: current.api.clone() };
        fold(&mut next.api, event_type, event)?;
        next.check()?;
        *current = Arc::new(next);
        Ok(())
    }
}

/// Applies one token-stream event to the API's principals.
fn fold(api: &mut BTreeMap<String, Arc<Principal>>, event_type: &str, event: &TokenEvent) -> Result<(), String> {
    check_name(&event.name)?;
    let name = event.name.clone();
    match event_type {
        TOKEN_ADDED => {
            let hash = event.token_hash.as_deref().ok_or("a token.added event needs token_hash")?;
            let token_hash = parse_hash(hash).ok_or("token_hash is not \"blake3:\" and 64 hex digits")?;
            let rules = event.rules.clone().unwrap_or_default();
            check_rules(&rules)?;
            api.insert(name.clone(), Arc::new(Principal { name, token_hash, rules, source: Source::Api }));
        }
        TOKEN_RULES_CHANGED => {
            let rules = event.rules.clone().ok_or("a token.rules_changed event needs rules")?;
            check_rules(&rules)?;
            let old = api.get(&name).ok_or_else(|| format!("no token named {name:?}"))?;
            let changed = Principal { name: name.clone(), token_hash: old.token_hash, rules, source: Source::Api };
            api.insert(name, Arc::new(changed));
        }
        TOKEN_REVOKED => {
            api.remove(&name).ok_or_else(|| format!("no token named {name:?}"))?;
        }
        other => return Err(format!("{other:?} is not a token event")),
    }
    Ok(())
}

fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > PRINCIPAL_NAME_LEN_MAX || name.chars().any(char::is_control) {
        return Err(format!(
            "principal name {name:?} must be 1 to {PRINCIPAL_NAME_LEN_MAX} bytes without control characters"
        ));
    }
    Ok(())
}

fn check_rules(rules: &[Rule]) -> Result<(), String> {
    if rules.len() > RULES_PER_PRINCIPAL_MAX {
        return Err(format!(
            "{} rules, above the limit of {RULES_PER_PRINCIPAL_MAX} (RULES_PER_PRINCIPAL_MAX)",
            rules.len()
        ));
    }
    Ok(())
}

fn parse_file(text: &str) -> Result<Vec<Arc<Principal>>, String> {
    let file: FileFormat = toml::from_str(text).map_err(|e| e.to_string().trim_end().to_string())?;
    if file.principal.is_empty() {
        return Err("it names no [[principal]], so every request would be refused".into());
    }
    let mut principals = Principals::default();
    for p in file.principal {
        check_name(&p.name)?;
        check_rules(&p.rules).map_err(|e| format!("principal {:?} has {e}", p.name))?;
        let token_hash = parse_hash(&p.token_hash)
            .ok_or_else(|| format!("token_hash of principal {:?} is not \"blake3:\" and 64 hex digits", p.name))?;
        principals.file.push(Arc::new(Principal { name: p.name, token_hash, rules: p.rules, source: Source::File }));
    }
    principals.check()?;
    Ok(principals.file)
}

/// BLAKE3 of a token, as stored in the auth file.
pub fn hash_token(token: &str) -> blake3::Hash {
    blake3::hash(token.as_bytes())
}

/// The auth-file line for a token.
pub fn token_hash_line(token: &str) -> String {
    format!("token_hash = \"{}\"", token_hash_text(token))
}

/// A new random token: 244 bits from the OS generator (two v4 UUIDs), hex-encoded.
pub fn new_token() -> String {
    let a = uuid::Uuid::new_v4();
    let b = uuid::Uuid::new_v4();
    format!("cairn_{}{}", a.simple(), b.simple())
}

/// The stored form of a token's hash.
pub fn token_hash_text(token: &str) -> String {
    format!("{HASH_SCHEME}{}", hash_token(token).to_hex())
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
    fn deny_rules_win_and_read_implies_list_but_append_grants_no_delete() {
        let auth = Auth::parse(&file(&[(
            "a",
            "t",
            r#"{ prefix = "agent-", allow = ["read", "append"] }, { prefix = "agent-secret", deny = ["read"] },
               { prefix = "", allow = ["list"] }, { prefix = "ops-", allow = ["admin"], deny = ["erase"] }"#,
        )]))
        .unwrap();
        let a = auth.authenticate(Some("Bearer t")).unwrap();
        assert!(a.allows(Permission::Read, "agent-1"));
        assert!(!a.allows(Permission::Read, "agent-secret-1"), "the deny wins over the allow");
        assert!(a.allows(Permission::Append, "agent-secret-1"), "a deny names its permissions only");
        assert!(a.allows(Permission::List, "agent-1"), "read implies list");
        assert!(a.allows(Permission::List, "billing"), "list without read");
        assert!(!a.allows(Permission::Read, "billing"));
        assert!(!a.allows(Permission::Delete, "agent-1") && !a.allows(Permission::Erase, "agent-1"));
        assert!(a.allows(Permission::Delete, "ops-1"), "admin implies delete");
        assert!(!a.allows(Permission::Erase, "ops-1"), "a deny wins over admin too");
    }

    #[test]
    fn api_tokens_are_added_changed_and_revoked_beside_the_file() {
        let auth = Auth::parse(&file(&[("ops", "t-ops", r#"{ prefix = "", allow = ["admin"] }"#)])).unwrap();
        let added = TokenEvent {
            name: "bot".into(),
            token_hash: Some(token_hash_text("t-bot")),
            rules: Some(vec![Rule { prefix: "bot-".into(), allow: vec![Permission::Append], deny: vec![] }]),
        };
        auth.plan(TOKEN_ADDED, &added).unwrap();
        assert!(auth.authenticate(Some("Bearer t-bot")).is_err(), "plan changes nothing");
        auth.apply(TOKEN_ADDED, &added).unwrap();
        assert!(auth.authenticate(Some("Bearer t-bot")).unwrap().allows(Permission::Append, "bot-1"));
        assert_eq!(auth.plan(TOKEN_ADDED, &added), Err(TokenChangeError::Exists("bot".into())));
        let ops = TokenEvent { name: "ops".into(), token_hash: None, rules: None };
        assert_eq!(auth.plan(TOKEN_REVOKED, &ops), Err(TokenChangeError::FromFile("ops".into())));
        let same_token = TokenEvent { name: "bot2".into(), ..added.clone() };
        assert!(
            matches!(auth.plan(TOKEN_ADDED, &same_token), Err(TokenChangeError::Invalid(m)) if m.contains("same token"))
        );
        let changed = TokenEvent { name: "bot".into(), token_hash: None, rules: Some(vec![]) };
        auth.apply(TOKEN_RULES_CHANGED, &changed).unwrap();
        assert!(!auth.authenticate(Some("Bearer t-bot")).unwrap().allows(Permission::Append, "bot-1"));
        auth.apply(TOKEN_REVOKED, &TokenEvent { name: "bot".into(), token_hash: None, rules: None }).unwrap();
        assert_eq!(auth.authenticate(Some("Bearer t-bot")).unwrap_err(), AuthError::Unknown);
        let gone = TokenEvent { name: "bot".into(), token_hash: None, rules: None };
        assert_eq!(auth.plan(TOKEN_REVOKED, &gone), Err(TokenChangeError::NotFound("bot".into())));
        assert_eq!(auth.list().len(), 1);
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
