//! Relationships: typed, directed edges between named entities, with properties, and
//! traversal to a bounded depth.
//!
//! Events on `meta:relation:<from>`: `meta.relation.added {"from", "to", "type",
//! "properties"?}` adds an edge or replaces its properties; `meta.relation.removed {"from",
//! "to", "type"}` removes it. Edges are kept by (from, type, to), with a reverse index by
//! (to, type, from) that is derived state (rebuilt by `load`).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::ops::Bound;

use log_engine::{Event, Position};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::keys::{self, TAG_RELATION};
use super::rules;
use crate::changes::{self, Touched};
use crate::projection::{ApplyError, LoadError};

pub const RELATION_STREAM_PREFIX: &str = "meta:relation:";
pub(crate) const ADDED: &str = "meta.relation.added";
pub(crate) const REMOVED: &str = "meta.relation.removed";
/// Deepest traversal.
pub const RELATION_DEPTH_MAX: u32 = 8;
/// Most edges one traversal returns.
pub const TRAVERSAL_EDGES_MAX: usize = 10_000;

/// Which edges of an entity to follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EdgeDirection {
    /// Edges from the entity.
    #[default]
    Out,
    /// Edges to the entity.
    In,
    Both,
}

/// An edge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Relation {
    pub from: String,
    pub to: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// A JSON object (`{}` when none was given).
    pub properties: Json,
    pub timestamp_ms: u64,
    pub position: Position,
}

/// An edge found by a traversal, and at which depth (1: an edge of the start entity).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hop {
    #[serde(flatten)]
    pub relation: Relation,
    pub depth: u32,
}

/// The edges a traversal found, breadth first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Traversal {
    pub edges: Vec<Hop>,
    /// True if it stopped at [`TRAVERSAL_EDGES_MAX`].
    pub truncated: bool,
}

#[derive(Debug, Deserialize)]
struct AddedData {
    from: String,
    to: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    properties: Option<Json>,
}

#[derive(Debug, Deserialize)]
struct RemovedData {
    from: String,
    to: String,
    #[serde(rename = "type")]
    kind: String,
}

pub(crate) fn stream(from: &str) -> String {
    format!("{RELATION_STREAM_PREFIX}{from}")
}

type EdgeKey = (String, String, String);

#[derive(Debug, Default)]
pub(crate) struct Relations {
    /// (from, type, to) → edge.
    edges: BTreeMap<EdgeKey, Relation>,
    /// (to, type, from): derived.
    reverse: BTreeSet<EdgeKey>,
}

impl Relations {
    pub(crate) fn apply(&mut self, event: &Event, data: &[u8], touched: &mut Touched) -> Result<(), ApplyError> {
        match event.event_type.as_str() {
            ADDED => {
                let d: AddedData = rules::parse(data)?;
                rules::check_stream(event, &stream(&d.from))?;
                rules::check_name_applied("entity", &d.to)?;
                rules::check_name_applied("relation type", &d.kind)?;
                let properties = match d.properties {
                    None | Some(Json::Null) => Json::Object(Default::default()),
                    Some(p @ Json::Object(_)) => p,
                    Some(_) => return Err(ApplyError::new("relation properties must be a JSON object")),
                };
                touched.touch(&keys::key(TAG_RELATION, &[&d.from, &d.kind, &d.to], None));
                self.insert(Relation {
                    from: d.from,
                    to: d.to,
                    kind: d.kind,
                    properties,
                    timestamp_ms: event.timestamp_ms,
                    position: event.position,
                });
            }
            REMOVED => {
                let d: RemovedData = rules::parse(data)?;
                rules::check_stream(event, &stream(&d.from))?;
                touched.touch(&keys::key(TAG_RELATION, &[&d.from, &d.kind, &d.to], None));
                self.edges.remove(&(d.from.clone(), d.kind.clone(), d.to.clone()));
                self.reverse.remove(&(d.to, d.kind, d.from));
            }
            _ => {}
        }
        Ok(())
    }

    fn insert(&mut self, r: Relation) {
        self.reverse.insert((r.to.clone(), r.kind.clone(), r.from.clone()));
        self.edges.insert((r.from.clone(), r.kind.clone(), r.to.clone()), r);
    }

    pub(crate) fn entries(&self, out: &mut Vec<(Vec<u8>, Vec<u8>)>) {
        for ((f, k, t), r) in &self.edges {
            out.push((keys::key(TAG_RELATION, &[f, k, t], None), changes::encode(r)));
        }
    }

    pub(crate) fn lookup(&self, rest: &[u8]) -> Option<Vec<u8>> {
        let (n, _) = keys::split(rest, 3, false).ok()?;
        self.edges.get(&(n[0].clone(), n[1].clone(), n[2].clone())).map(changes::encode)
    }

    pub(crate) fn load(&mut self, rest: &[u8], value: &[u8]) -> Result<(), LoadError> {
        let (n, _) = keys::split(rest, 3, false)?;
        let r: Relation = changes::decode(rules::VIEW_NAME, rest, value)?;
        if (r.from.as_str(), r.kind.as_str(), r.to.as_str()) != (&n[0], &n[1], &n[2]) {
            return Err(rules::load_error(format!("relation entry {}/{}/{} holds another edge", n[0], n[1], n[2])));
        }
        self.insert(r);
        Ok(())
    }

    pub(crate) fn remove(&mut self, rest: &[u8]) -> Result<(), LoadError> {
        let (n, _) = keys::split(rest, 3, false)?;
        let [f, k, t]: [String; 3] = n.try_into().expect("split returns three names");
        self.edges.remove(&(f.clone(), k.clone(), t.clone()));
        self.reverse.remove(&(t, k, f));
        Ok(())
    }

    pub(crate) fn contains(&self, from: &str, to: &str, kind: &str) -> bool {
        self.edges.contains_key(&(from.to_string(), kind.to_string(), to.to_string()))
    }

    /// Edges touching `entity` in `direction`, optionally of one type.
    fn edges_of<'a>(&'a self, entity: &str, direction: EdgeDirection, kind: Option<&'a str>) -> Vec<&'a Relation> {
        let start = (entity.to_string(), String::new(), String::new());
        let mut found = Vec::new();
        if matches!(direction, EdgeDirection::Out | EdgeDirection::Both) {
            found.extend(
                self.edges
                    .range((Bound::Included(start.clone()), Bound::Unbounded))
                    .take_while(|((f, _, _), _)| f == entity)
                    .filter(|((_, k, _), _)| kind.is_none_or(|x| x == k))
                    .map(|(_, r)| r),
            );
        }
        if matches!(direction, EdgeDirection::In | EdgeDirection::Both) {
            for (to, k, from) in
                self.reverse.range((Bound::Included(start), Bound::Unbounded)).take_while(|(t, _, _)| t == entity)
            {
                if kind.is_none_or(|x| x == k) {
                    if let Some(r) = self.edges.get(&(from.clone(), k.clone(), to.clone())) {
                        found.push(r);
                    }
                }
            }
        }
        found
    }

    /// Breadth-first traversal from `entity` to `depth` hops (1..=[`RELATION_DEPTH_MAX`]).
    /// Each edge is reported once, at the depth it was first reached; cycles end naturally
    /// because each entity is expanded once.
    pub(crate) fn traverse(&self, entity: &str, direction: EdgeDirection, kind: Option<&str>, depth: u32) -> Traversal {
        let mut edges = Vec::new();
        let mut seen_edges: HashSet<(&str, &str, &str)> = HashSet::new();
        let mut expanded: HashSet<String> = HashSet::from([entity.to_string()]);
        let mut frontier = vec![entity.to_string()];
        for d in 1..=depth {
            let mut next = Vec::new();
            for node in &frontier {
                for r in self.edges_of(node, direction, kind) {
                    if !seen_edges.insert((&r.from, &r.kind, &r.to)) {
                        continue;
                    }
                    if edges.len() == TRAVERSAL_EDGES_MAX {
                        return Traversal { edges, truncated: true };
                    }
                    edges.push(Hop { relation: r.clone(), depth: d });
                    let other = if r.from == *node { &r.to } else { &r.from };
                    if expanded.insert(other.clone()) {
                        next.push(other.clone());
                    }
                }
            }
            frontier = next;
        }
        Traversal { edges, truncated: false }
    }
}
