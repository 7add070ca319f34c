//! Configuration: keys within scopes, every change a new version, the whole history kept.
//!
//! Events on `meta:config:<scope>:<key>`: `meta.config.set {"scope", "key", "value"}` and
//! `meta.config.deleted {"scope", "key"}`; each is the key's next version (counting from 1; a
//! delete is a version whose value is absent). Reads can ask for the latest version, a given
//! version, or the version in force at a time (the newest whose event time is not after it).

use std::collections::BTreeMap;

use log_engine::{Event, Position};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::keys::{self, TAG_CONFIG};
use super::rules;
use crate::changes::{self, Touched};
use crate::error::{Error, Result};
use crate::projection::{ApplyError, LoadError};

pub const CONFIG_STREAM_PREFIX: &str = "meta:config:";
/// The scope of a key set without one.
pub const DEFAULT_SCOPE: &str = "global";
pub(crate) const SET: &str = "meta.config.set";
pub(crate) const DELETED: &str = "meta.config.deleted";

/// One version of a configuration key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigVersion {
    pub scope: String,
    pub key: String,
    /// Counts from 1.
    pub version: u32,
    /// `None` for a delete.
    pub value: Option<Json>,
    pub timestamp_ms: u64,
    pub position: Position,
}

/// Which version of a key to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsOf {
    Latest,
    Version(u32),
    /// The version in force at this unix ms.
    Time(u64),
}

#[derive(Debug, Deserialize)]
struct SetData {
    scope: String,
    key: String,
    value: Json,
}

#[derive(Debug, Deserialize)]
struct DeletedData {
    scope: String,
    key: String,
}

/// Scopes may not contain `:` (it separates scope and key in the stream name).
pub(crate) fn check_scope(scope: &str) -> Result<()> {
    rules::check_name("scope", scope)?;
    if scope.contains(':') {
        return Err(Error::invalid(format!("scope {scope:?} must not contain ':'")));
    }
    Ok(())
}

pub(crate) fn stream(scope: &str, key: &str) -> String {
    format!("{CONFIG_STREAM_PREFIX}{scope}:{key}")
}

#[derive(Debug, Default)]
pub(crate) struct Config {
    keys: BTreeMap<(String, String), Vec<ConfigVersion>>,
}

impl Config {
    pub(crate) fn apply(&mut self, event: &Event, data: &[u8], touched: &mut Touched) -> Result<(), ApplyError> {
        let (scope, key, value) = match event.event_type.as_str() {
            SET => {
                let d: SetData = rules::parse(data)?;
                (d.scope, d.key, Some(d.value))
            }
            DELETED => {
                let d: DeletedData = rules::parse(data)?;
                (d.scope, d.key, None)
            }
            _ => return Ok(()),
        };
        rules::check_stream(event, &stream(&scope, &key))?;
        check_scope(&scope).map_err(|e| ApplyError::new(e.to_string()))?;
        let history = self.keys.entry((scope.clone(), key.clone())).or_default();
        let version = history.len() as u32 + 1;
        touched.touch(&keys::key(TAG_CONFIG, &[&scope, &key], Some(version)));
        history.push(ConfigVersion {
            scope,
            key,
            version,
            value,
            timestamp_ms: event.timestamp_ms,
            position: event.position,
        });
        Ok(())
    }

    pub(crate) fn entries(&self, out: &mut Vec<(Vec<u8>, Vec<u8>)>) {
        for ((scope, key), history) in &self.keys {
            for v in history {
                out.push((keys::key(TAG_CONFIG, &[scope, key], Some(v.version)), changes::encode(v)));
            }
        }
    }

    pub(crate) fn lookup(&self, rest: &[u8]) -> Option<Vec<u8>> {
        let (n, version) = keys::split(rest, 2, true).ok()?;
        let history = self.keys.get(&(n[0].clone(), n[1].clone()))?;
        history.get(version?.checked_sub(1)? as usize).map(changes::encode)
    }

    pub(crate) fn load(&mut self, rest: &[u8], value: &[u8]) -> Result<(), LoadError> {
        let (n, version) = keys::split(rest, 2, true)?;
        let v: ConfigVersion = changes::decode(rules::VIEW_NAME, rest, value)?;
        let history = self.keys.entry((n[0].clone(), n[1].clone())).or_default();
        let next = history.len() as u32 + 1;
        if version != Some(v.version) || v.version != next {
            return Err(rules::load_error(format!(
                "configuration {}:{} version {} is out of order (expected version {next})",
                n[0], n[1], v.version
            )));
        }
        history.push(v);
        Ok(())
    }

    pub(crate) fn remove(&mut self, rest: &[u8]) -> Result<(), LoadError> {
        let (n, version) = keys::split(rest, 2, true)?;
        let id = (n[0].clone(), n[1].clone());
        if let (Some(history), Some(v)) = (self.keys.get_mut(&id), version) {
            // Versions are never removed by events; a removal can only truncate the newest.
            history.truncate(v.saturating_sub(1) as usize);
            if history.is_empty() {
                self.keys.remove(&id);
            }
        }
        Ok(())
    }

    pub(crate) fn history(&self, scope: &str, key: &str) -> Option<&[ConfigVersion]> {
        self.keys.get(&(scope.to_string(), key.to_string())).map(Vec::as_slice)
    }

    /// The version `as_of` picks, whatever its value (a delete included).
    pub(crate) fn get(&self, scope: &str, key: &str, as_of: AsOf) -> Option<&ConfigVersion> {
        let history = self.history(scope, key)?;
        match as_of {
            AsOf::Latest => history.last(),
            AsOf::Version(v) => history.get(v.checked_sub(1)? as usize),
            AsOf::Time(t) => history.iter().rev().find(|v| v.timestamp_ms <= t),
        }
    }

    /// Keys of a scope with a current value, sorted.
    pub(crate) fn keys(&self, scope: &str) -> Vec<String> {
        self.keys
            .iter()
            .filter(|((s, _), h)| s == scope && h.last().is_some_and(|v| v.value.is_some()))
            .map(|((_, k), _)| k.clone())
            .collect()
    }
}
