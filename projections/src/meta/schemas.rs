//! The schema registry: numbered versions of a named JSON Schema (a subject), a compatibility
//! mode per subject, and validation of payloads.
//!
//! Events on `meta:schema:<subject>`: `meta.schema.registered {"subject", "schema"}` adds the
//! next version (versions count from 1); `meta.schema.compatibility {"subject", "mode"}` sets
//! the mode. Compatibility is checked by the writer against the latest version (see
//! compat.rs for what can be proven); the view records what was registered and never
//! re-checks it, so replay cannot change history.

use std::collections::BTreeMap;

use log_engine::{Event, Position};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::compat;
use super::keys::{self, TAG_SCHEMA_MODE, TAG_SCHEMA_VERSION};
use super::rules;
use crate::changes::{self, Touched};
use crate::error::{Error, Result};
use crate::projection::{ApplyError, LoadError};

pub const SCHEMA_STREAM_PREFIX: &str = "meta:schema:";
pub(crate) const REGISTERED: &str = "meta.schema.registered";
pub(crate) const COMPATIBILITY: &str = "meta.schema.compatibility";
/// Most validation errors reported for one payload.
pub const VALIDATION_ERRORS_MAX: usize = 100;

/// How a new version must relate to the latest one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compatibility {
    /// No check.
    None,
    /// Everything valid under the latest version is valid under the new one (consumers on the
    /// new schema read old data). The default.
    #[default]
    Backward,
    /// Everything valid under the new version is valid under the latest one (consumers on the
    /// old schema read new data).
    Forward,
    /// Both.
    Full,
}

impl Compatibility {
    pub fn as_str(self) -> &'static str {
        match self {
            Compatibility::None => "none",
            Compatibility::Backward => "backward",
            Compatibility::Forward => "forward",
            Compatibility::Full => "full",
        }
    }
}

/// One registered version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SchemaVersion {
    pub subject: String,
    /// Counts from 1.
    pub version: u32,
    pub schema: Json,
    pub timestamp_ms: u64,
    pub position: Position,
}

/// Which version to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionSel {
    Latest,
    Number(u32),
}

/// A validation answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Validation {
    pub valid: bool,
    /// `"<instance path>: <message>"`, at most [`VALIDATION_ERRORS_MAX`].
    pub errors: Vec<String>,
    /// The version validated against.
    pub version: u32,
}

#[derive(Debug, Default)]
struct Subject {
    mode: Option<Compatibility>,
    versions: Vec<SchemaVersion>,
}

#[derive(Debug, Default)]
pub(crate) struct Schemas {
    subjects: BTreeMap<String, Subject>,
}

pub(crate) fn stream(subject: &str) -> String {
    format!("{SCHEMA_STREAM_PREFIX}{subject}")
}

#[derive(Deserialize)]
struct RegisteredData {
    subject: String,
    schema: Json,
}

#[derive(Deserialize)]
struct CompatibilityData {
    subject: String,
    mode: Compatibility,
}

impl Schemas {
    pub(crate) fn apply(&mut self, event: &Event, data: &[u8], touched: &mut Touched) -> Result<(), ApplyError> {
        match event.event_type.as_str() {
            REGISTERED => {
                let d: RegisteredData = rules::parse(data)?;
                rules::check_stream(event, &stream(&d.subject))?;
                if !(d.schema.is_object() || d.schema.is_boolean()) {
                    return Err(ApplyError::new("a schema must be a JSON object or a boolean"));
                }
                let subject = self.subjects.entry(d.subject.clone()).or_default();
                let version = subject.versions.len() as u32 + 1;
                touched.touch(&keys::key(TAG_SCHEMA_VERSION, &[&d.subject], Some(version)));
                subject.versions.push(SchemaVersion {
                    subject: d.subject,
                    version,
                    schema: d.schema,
                    timestamp_ms: event.timestamp_ms,
                    position: event.position,
                });
            }
            COMPATIBILITY => {
                let d: CompatibilityData = rules::parse(data)?;
                rules::check_stream(event, &stream(&d.subject))?;
                touched.touch(&keys::key(TAG_SCHEMA_MODE, &[&d.subject], None));
                self.subjects.entry(d.subject).or_default().mode = Some(d.mode);
            }
            _ => {}
        }
        Ok(())
    }

    pub(crate) fn entries(&self, out: &mut Vec<(Vec<u8>, Vec<u8>)>) {
        for (name, subject) in &self.subjects {
            if let Some(mode) = subject.mode {
                out.push((keys::key(TAG_SCHEMA_MODE, &[name], None), changes::encode(&mode)));
            }
            for v in &subject.versions {
                out.push((keys::key(TAG_SCHEMA_VERSION, &[name], Some(v.version)), changes::encode(v)));
            }
        }
    }

    pub(crate) fn lookup(&self, tag: u8, rest: &[u8]) -> Option<Vec<u8>> {
        if tag == TAG_SCHEMA_MODE {
            let (names, _) = keys::split(rest, 1, false).ok()?;
            self.subjects.get(&names[0])?.mode.map(|m| changes::encode(&m))
        } else {
            let (names, version) = keys::split(rest, 1, true).ok()?;
            let v = self.subjects.get(&names[0])?.versions.get(version? as usize - 1)?;
            Some(changes::encode(v))
        }
    }

    pub(crate) fn load(&mut self, tag: u8, rest: &[u8], value: &[u8]) -> Result<(), LoadError> {
        if tag == TAG_SCHEMA_MODE {
            let (names, _) = keys::split(rest, 1, false)?;
            let mode: Compatibility = changes::decode(rules::VIEW_NAME, rest, value)?;
            self.subjects.entry(names[0].clone()).or_default().mode = Some(mode);
            return Ok(());
        }
        let (names, version) = keys::split(rest, 1, true)?;
        let v: SchemaVersion = changes::decode(rules::VIEW_NAME, rest, value)?;
        let subject = self.subjects.entry(names[0].clone()).or_default();
        let expected = subject.versions.len() as u32 + 1;
        if version != Some(v.version) || v.version > expected {
            return Err(rules::load_error(format!(
                "schema {} version {} is out of order (expected at most version {expected})",
                names[0], v.version
            )));
        }
        if v.version == expected {
            subject.versions.push(v);
        } else {
            let i = v.version as usize - 1;
            subject.versions[i] = v;
        }
        Ok(())
    }

    pub(crate) fn remove(&mut self, tag: u8, rest: &[u8]) -> Result<(), LoadError> {
        let (names, version) = keys::split(rest, 1, tag == TAG_SCHEMA_VERSION)?;
        let Some(subject) = self.subjects.get_mut(&names[0]) else { return Ok(()) };
        match version {
            None => subject.mode = None,
            // Versions are never removed by events; a removal can only truncate the newest.
            Some(v) => subject.versions.truncate(v as usize - 1),
        }
        if subject.mode.is_none() && subject.versions.is_empty() {
            self.subjects.remove(&names[0]);
        }
        Ok(())
    }

    pub(crate) fn mode(&self, subject: &str) -> Compatibility {
        self.subjects.get(subject).and_then(|s| s.mode).unwrap_or_default()
    }

    pub(crate) fn subjects(&self) -> Vec<String> {
        self.subjects.iter().filter(|(_, s)| !s.versions.is_empty()).map(|(n, _)| n.clone()).collect()
    }

    pub(crate) fn get(&self, subject: &str, sel: VersionSel) -> Result<SchemaVersion> {
        let s = self
            .subjects
            .get(subject)
            .filter(|s| !s.versions.is_empty())
            .ok_or_else(|| Error::SubjectNotFound { subject: subject.to_string() })?;
        let found = match sel {
            VersionSel::Latest => s.versions.last(),
            VersionSel::Number(n) => n.checked_sub(1).and_then(|i| s.versions.get(i as usize)),
        };
        found.cloned().ok_or_else(|| Error::SchemaVersionNotFound {
            subject: subject.to_string(),
            version: match sel {
                VersionSel::Latest => 0,
                VersionSel::Number(n) => n,
            },
        })
    }

    /// Plans a registration: `Ok(Err(v))` if this exact schema is already version `v`;
    /// `Ok(Ok(v))` with the version it will get; `Err` if it is incompatible.
    pub(crate) fn plan_register(&self, subject: &str, schema: &Json) -> Result<std::result::Result<u32, u32>> {
        let Some(s) = self.subjects.get(subject) else { return Ok(Ok(1)) };
        if let Some(existing) = s.versions.iter().find(|v| v.schema == *schema) {
            return Ok(Err(existing.version));
        }
        let mode = s.mode.unwrap_or_default();
        let Some(latest) = s.versions.last() else { return Ok(Ok(1)) };
        let incompatible = |reasons: Vec<String>| Error::IncompatibleSchema {
            subject: subject.to_string(),
            mode: mode.as_str(),
            against: latest.version,
            reasons,
        };
        if mode != Compatibility::None && (compat::uses_references(schema) || compat::uses_references(&latest.schema)) {
            return Err(incompatible(vec![
                "compatibility of schemas that use $ref cannot be checked; set the subject's mode to none".into(),
            ]));
        }
        let mut reasons = Vec::new();
        if matches!(mode, Compatibility::Backward | Compatibility::Full) {
            reasons.extend(compat::not_included(&latest.schema, schema).into_iter().map(|r| format!("backward: {r}")));
        }
        if matches!(mode, Compatibility::Forward | Compatibility::Full) {
            reasons.extend(compat::not_included(schema, &latest.schema).into_iter().map(|r| format!("forward: {r}")));
        }
        if !reasons.is_empty() {
            return Err(incompatible(reasons));
        }
        Ok(Ok(s.versions.len() as u32 + 1))
    }
}

/// Compiles a schema, as an input error naming the subject.
pub(crate) fn compile(subject: &str, schema: &Json) -> Result<jsonschema::Validator> {
    if !(schema.is_object() || schema.is_boolean()) {
        return Err(Error::InvalidSchema {
            subject: subject.to_string(),
            message: "a schema must be a JSON object or a boolean".into(),
        });
    }
    jsonschema::validator_for(schema)
        .map_err(|e| Error::InvalidSchema { subject: subject.to_string(), message: e.to_string() })
}

/// Validates `payload` against a registered version.
pub(crate) fn validate(version: &SchemaVersion, payload: &Json) -> Result<Validation> {
    let validator = compile(&version.subject, &version.schema)?;
    let errors: Vec<String> = validator
        .iter_errors(payload)
        .take(VALIDATION_ERRORS_MAX)
        .map(|e| {
            let path = e.instance_path().to_string();
            format!("{}: {e}", if path.is_empty() { "/" } else { &path })
        })
        .collect();
    Ok(Validation { valid: errors.is_empty(), errors, version: version.version })
}
