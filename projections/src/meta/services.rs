//! The service registry: instances of named services with endpoints, tags and capabilities,
//! kept alive by heartbeats.
//!
//! Events on `meta:service:<name>`: `meta.service.registered {"service", "instance",
//! "endpoints", "tags", "capabilities", "ttl_ms"}` registers or refreshes an instance (a
//! registration is a heartbeat: its event time is the instance's last heartbeat);
//! `meta.service.deregistered {"service", "instance"}` removes it. An instance is healthy while
//! `now < heartbeat + ttl`; an instance whose heartbeats stopped stays in the view (reads skip
//! it) until it is deregistered or registers again.

use std::collections::BTreeMap;

use log_engine::{Event, Position};
use serde::{Deserialize, Serialize};

use super::keys::{self, TAG_SERVICE};
use super::rules;
use crate::changes::{self, Touched};
use crate::error::{Error, Result};
use crate::projection::{ApplyError, LoadError};

pub const SERVICE_STREAM_PREFIX: &str = "meta:service:";
pub(crate) const REGISTERED: &str = "meta.service.registered";
pub(crate) const DEREGISTERED: &str = "meta.service.deregistered";
/// Longest heartbeat TTL: one day.
pub const SERVICE_TTL_MS_MAX: u64 = 24 * 60 * 60 * 1000;
/// Most endpoints, tags or capabilities of one instance.
pub const SERVICE_LIST_MAX: usize = 64;

/// What an instance registers (the body of a register/heartbeat).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct InstanceRegistration {
    pub endpoints: Vec<String>,
    pub tags: Vec<String>,
    pub capabilities: Vec<String>,
    /// How long the registration lasts without another heartbeat.
    pub ttl_ms: u64,
}

/// A registered instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceInstance {
    pub service: String,
    pub instance: String,
    pub endpoints: Vec<String>,
    pub tags: Vec<String>,
    pub capabilities: Vec<String>,
    pub ttl_ms: u64,
    /// When it first registered (unix ms, event time).
    pub registered_ms: u64,
    /// Its last heartbeat (unix ms, event time).
    pub heartbeat_ms: u64,
    /// The position of its last heartbeat.
    pub position: Position,
}

impl ServiceInstance {
    pub fn healthy(&self, now_ms: u64) -> bool {
        now_ms < self.heartbeat_ms.saturating_add(self.ttl_ms)
    }
}

#[derive(Debug, Deserialize)]
struct RegisteredData {
    service: String,
    instance: String,
    #[serde(flatten)]
    registration: InstanceRegistration,
}

#[derive(Debug, Deserialize)]
struct DeregisteredData {
    service: String,
    instance: String,
}

pub(crate) fn stream(service: &str) -> String {
    format!("{SERVICE_STREAM_PREFIX}{service}")
}

impl InstanceRegistration {
    pub(crate) fn validate(&self) -> Result<()> {
        if self.ttl_ms == 0 || self.ttl_ms > SERVICE_TTL_MS_MAX {
            return Err(Error::invalid(format!("ttl_ms {} must be between 1 and {SERVICE_TTL_MS_MAX}", self.ttl_ms)));
        }
        for (what, list) in [("endpoints", &self.endpoints), ("tags", &self.tags), ("capabilities", &self.capabilities)]
        {
            if list.len() > SERVICE_LIST_MAX {
                return Err(Error::invalid(format!("an instance may list at most {SERVICE_LIST_MAX} {what}")));
            }
            for item in list {
                rules::check_name(what, item)?;
            }
        }
        Ok(())
    }
}

#[derive(Debug, Default)]
pub(crate) struct Services {
    instances: BTreeMap<(String, String), ServiceInstance>,
}

impl Services {
    pub(crate) fn apply(&mut self, event: &Event, data: &[u8], touched: &mut Touched) -> Result<(), ApplyError> {
        match event.event_type.as_str() {
            REGISTERED => {
                let d: RegisteredData = rules::parse(data)?;
                rules::check_stream(event, &stream(&d.service))?;
                rules::check_name_applied("instance", &d.instance)?;
                d.registration.validate().map_err(|e| ApplyError::new(e.to_string()))?;
                touched.touch(&keys::key(TAG_SERVICE, &[&d.service, &d.instance], None));
                let id = (d.service, d.instance);
                let registered_ms = self.instances.get(&id).map_or(event.timestamp_ms, |i| i.registered_ms);
                let r = d.registration;
                self.instances.insert(
                    id.clone(),
                    ServiceInstance {
                        service: id.0,
                        instance: id.1,
                        endpoints: r.endpoints,
                        tags: r.tags,
                        capabilities: r.capabilities,
                        ttl_ms: r.ttl_ms,
                        registered_ms,
                        heartbeat_ms: event.timestamp_ms,
                        position: event.position,
                    },
                );
            }
            DEREGISTERED => {
                let d: DeregisteredData = rules::parse(data)?;
                rules::check_stream(event, &stream(&d.service))?;
                touched.touch(&keys::key(TAG_SERVICE, &[&d.service, &d.instance], None));
                self.instances.remove(&(d.service, d.instance));
            }
            _ => {}
        }
        Ok(())
    }

    pub(crate) fn entries(&self, out: &mut Vec<(Vec<u8>, Vec<u8>)>) {
        for ((s, i), instance) in &self.instances {
            out.push((keys::key(TAG_SERVICE, &[s, i], None), changes::encode(instance)));
        }
    }

    pub(crate) fn lookup(&self, rest: &[u8]) -> Option<Vec<u8>> {
        let (n, _) = keys::split(rest, 2, false).ok()?;
        self.instances.get(&(n[0].clone(), n[1].clone())).map(changes::encode)
    }

    pub(crate) fn load(&mut self, rest: &[u8], value: &[u8]) -> Result<(), LoadError> {
        let (n, _) = keys::split(rest, 2, false)?;
        let instance: ServiceInstance = changes::decode(rules::VIEW_NAME, rest, value)?;
        self.instances.insert((n[0].clone(), n[1].clone()), instance);
        Ok(())
    }

    pub(crate) fn remove(&mut self, rest: &[u8]) -> Result<(), LoadError> {
        let (n, _) = keys::split(rest, 2, false)?;
        self.instances.remove(&(n[0].clone(), n[1].clone()));
        Ok(())
    }

    pub(crate) fn contains(&self, service: &str, instance: &str) -> bool {
        self.instances.contains_key(&(service.to_string(), instance.to_string()))
    }

    /// Healthy instances, by service name and/or tag, sorted by service then instance.
    pub(crate) fn discover(&self, service: Option<&str>, tag: Option<&str>, now_ms: u64) -> Vec<ServiceInstance> {
        self.instances
            .values()
            .filter(|i| service.is_none_or(|s| i.service == s))
            .filter(|i| tag.is_none_or(|t| i.tags.iter().any(|x| x == t)))
            .filter(|i| i.healthy(now_ms))
            .cloned()
            .collect()
    }
}
