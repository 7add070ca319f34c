//! The memory graph: a knowledge graph of entities, relations and observations, as agents keep
//! it through the MCP memory tools (`create_entities`, `add_observations`, ...), rebuilt from
//! the events of one stream.
//!
//! Each change an agent asks for is one event on the graph's stream (`memory:<graph>`), whose
//! data is the request itself; the graph is the fold of those events in version order. So
//! concurrent writers never overwrite each other (an append never reads-then-rewrites a file,
//! as the reference memory server does), every change is an auditable event with its
//! position and hash, and the graph can be rebuilt as of any version of its stream.
//!
//! Why a fold of its own and not the metadata view's relations: the graph is entities with
//! ordered observations plus relations, changed together (deleting an entity removes its
//! relations in the same step); split across the metadata view's relation streams it would
//! need several streams per change, and the reference server's rules (first entity of a name
//! wins, duplicates inside one request kept, an unknown entity fails the whole request) are
//! not the metadata view's. And it is not a registered view: `cairn mcp --server` is an HTTP
//! client that only reads streams, so the fold must run wherever the stream can be read.
//!
//! The rules are the reference server's, kept exactly so that a graph written here and one
//! written there by the same calls are identical (the MCP suite compares them step by step):
//! - creating an entity or relation that already exists (by name; by `from`, `to` and
//!   `relationType`) changes nothing; duplicates within one request are all added;
//! - adding observations to an unknown entity fails the whole request, which changes nothing;
//!   an observation the entity already holds is not added again;
//! - deleting an entity deletes every relation from or to it; deleting what does not exist is
//!   not an error.
//!
//! Pure: no I/O. An event this module does not understand changes nothing and is reported.

use serde::{Deserialize, Serialize};

/// Prefix of every memory graph's stream: the graph `default` lives in `memory:default`.
pub const MEMORY_STREAM_PREFIX: &str = "memory:";

/// The event types, one per kind of change; the data is the request's arguments.
pub const ENTITIES_CREATED: &str = "memory.entities_created";
pub const RELATIONS_CREATED: &str = "memory.relations_created";
pub const OBSERVATIONS_ADDED: &str = "memory.observations_added";
pub const ENTITIES_DELETED: &str = "memory.entities_deleted";
pub const OBSERVATIONS_DELETED: &str = "memory.observations_deleted";
pub const RELATIONS_DELETED: &str = "memory.relations_deleted";

/// A node of the graph.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Entity {
    pub name: String,
    pub entity_type: String,
    pub observations: Vec<String>,
}

/// A directed, typed edge between two entity names (which need not exist).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Relation {
    pub from: String,
    pub to: String,
    pub relation_type: String,
}

/// Observations to add to one entity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObservationsToAdd {
    pub entity_name: String,
    pub contents: Vec<String>,
}

/// Observations to delete from one entity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObservationsToDelete {
    pub entity_name: String,
    pub observations: Vec<String>,
}

/// What one `add_observations` item added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObservationsAdded {
    pub entity_name: String,
    pub added_observations: Vec<String>,
}

/// One change to the graph: the payload of one event on its stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemoryChange {
    CreateEntities(Vec<Entity>),
    CreateRelations(Vec<Relation>),
    AddObservations(Vec<ObservationsToAdd>),
    DeleteEntities(Vec<String>),
    DeleteObservations(Vec<ObservationsToDelete>),
    DeleteRelations(Vec<Relation>),
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EntitiesData {
    entities: Vec<Entity>,
}
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RelationsData {
    relations: Vec<Relation>,
}
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AddData {
    observations: Vec<ObservationsToAdd>,
}
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NamesData {
    entity_names: Vec<String>,
}
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DeletionsData {
    deletions: Vec<ObservationsToDelete>,
}

/// Why an event could not be read as a change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MemoryEventError {
    #[error("event type {0:?} is not a memory graph change")]
    UnknownType(String),
    #[error("the data of a {kind} event is not valid: {detail}")]
    BadData { kind: &'static str, detail: String },
}

impl MemoryChange {
    /// The event type and JSON data this change is stored as.
    pub fn to_event(&self) -> (&'static str, serde_json::Value) {
        let to = |v: Result<serde_json::Value, serde_json::Error>| v.unwrap_or(serde_json::Value::Null);
        match self {
            MemoryChange::CreateEntities(e) => {
                (ENTITIES_CREATED, to(serde_json::to_value(EntitiesData { entities: e.clone() })))
            }
            MemoryChange::CreateRelations(r) => {
                (RELATIONS_CREATED, to(serde_json::to_value(RelationsData { relations: r.clone() })))
            }
            MemoryChange::AddObservations(o) => {
                (OBSERVATIONS_ADDED, to(serde_json::to_value(AddData { observations: o.clone() })))
            }
            MemoryChange::DeleteEntities(n) => {
                (ENTITIES_DELETED, to(serde_json::to_value(NamesData { entity_names: n.clone() })))
            }
            MemoryChange::DeleteObservations(d) => {
                (OBSERVATIONS_DELETED, to(serde_json::to_value(DeletionsData { deletions: d.clone() })))
            }
            MemoryChange::DeleteRelations(r) => {
                (RELATIONS_DELETED, to(serde_json::to_value(RelationsData { relations: r.clone() })))
            }
        }
    }

    /// Reads a stored event back as a change.
    pub fn from_event(event_type: &str, data: &serde_json::Value) -> Result<MemoryChange, MemoryEventError> {
        fn parse<T: serde::de::DeserializeOwned>(
            kind: &'static str,
            data: &serde_json::Value,
        ) -> Result<T, MemoryEventError> {
            T::deserialize(data).map_err(|e| MemoryEventError::BadData { kind, detail: e.to_string() })
        }
        Ok(match event_type {
            ENTITIES_CREATED => MemoryChange::CreateEntities(parse::<EntitiesData>(ENTITIES_CREATED, data)?.entities),
            RELATIONS_CREATED => {
                MemoryChange::CreateRelations(parse::<RelationsData>(RELATIONS_CREATED, data)?.relations)
            }
            OBSERVATIONS_ADDED => {
                MemoryChange::AddObservations(parse::<AddData>(OBSERVATIONS_ADDED, data)?.observations)
            }
            ENTITIES_DELETED => MemoryChange::DeleteEntities(parse::<NamesData>(ENTITIES_DELETED, data)?.entity_names),
            OBSERVATIONS_DELETED => {
                MemoryChange::DeleteObservations(parse::<DeletionsData>(OBSERVATIONS_DELETED, data)?.deletions)
            }
            RELATIONS_DELETED => {
                MemoryChange::DeleteRelations(parse::<RelationsData>(RELATIONS_DELETED, data)?.relations)
            }
            other => return Err(MemoryEventError::UnknownType(other.to_string())),
        })
    }
}

/// What applying one change did: the answer its tool gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The entities that were new (`create_entities`).
    Entities(Vec<Entity>),
    /// The relations that were new (`create_relations`).
    Relations(Vec<Relation>),
    /// Per item, the observations that were new (`add_observations`).
    Observations(Vec<ObservationsAdded>),
    /// The change failed as a whole and changed nothing: `add_observations` named an entity the
    /// graph does not hold (at the change's place in the log).
    EntityNotFound(String),
    /// A deletion (which never fails).
    Deleted,
}

/// The whole graph, in the order its entities and relations were created.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Graph {
    pub entities: Vec<Entity>,
    pub relations: Vec<Relation>,
}

impl Graph {
    /// Applies one change with the reference server's rules (see the module docs).
    pub fn apply(&mut self, change: &MemoryChange) -> Applied {
        match change {
            MemoryChange::CreateEntities(entities) => {
                let new: Vec<Entity> =
                    entities.iter().filter(|e| !self.entities.iter().any(|x| x.name == e.name)).cloned().collect();
                self.entities.extend(new.iter().cloned());
                Applied::Entities(new)
            }
            MemoryChange::CreateRelations(relations) => {
                let new: Vec<Relation> = relations.iter().filter(|r| !self.relations.contains(r)).cloned().collect();
                self.relations.extend(new.iter().cloned());
                Applied::Relations(new)
            }
            MemoryChange::AddObservations(items) => {
                // All or nothing: check every item against a copy, keep the copy only if all
                // named entities exist.
                let mut entities = self.entities.clone();
                let mut results = Vec::with_capacity(items.len());
                for item in items {
                    let Some(entity) = entities.iter_mut().find(|e| e.name == item.entity_name) else {
                        return Applied::EntityNotFound(item.entity_name.clone());
                    };
                    let new: Vec<String> =
                        item.contents.iter().filter(|c| !entity.observations.contains(c)).cloned().collect();
                    entity.observations.extend(new.iter().cloned());
                    results.push(ObservationsAdded { entity_name: item.entity_name.clone(), added_observations: new });
                }
                self.entities = entities;
                Applied::Observations(results)
            }
            MemoryChange::DeleteEntities(names) => {
                self.entities.retain(|e| !names.contains(&e.name));
                self.relations.retain(|r| !names.contains(&r.from) && !names.contains(&r.to));
                Applied::Deleted
            }
            MemoryChange::DeleteObservations(deletions) => {
                for d in deletions {
                    if let Some(entity) = self.entities.iter_mut().find(|e| e.name == d.entity_name) {
                        entity.observations.retain(|o| !d.observations.contains(o));
                    }
                }
                Applied::Deleted
            }
            MemoryChange::DeleteRelations(relations) => {
                self.relations.retain(|r| !relations.contains(r));
                Applied::Deleted
            }
        }
    }

    /// Entities whose name, type or an observation contains `query` (case-insensitive), with
    /// every relation that touches one of them (`search_nodes`).
    pub fn search(&self, query: &str) -> Graph {
        let q = query.to_lowercase();
        let hit = |s: &str| s.to_lowercase().contains(&q);
        self.subgraph(|e| hit(&e.name) || hit(&e.entity_type) || e.observations.iter().any(|o| hit(o)))
    }

    /// The named entities, with every relation that touches one of them (`open_nodes`).
    pub fn open(&self, names: &[String]) -> Graph {
        self.subgraph(|e| names.contains(&e.name))
    }

    fn subgraph(&self, keep: impl Fn(&Entity) -> bool) -> Graph {
        let entities: Vec<Entity> = self.entities.iter().filter(|e| keep(e)).cloned().collect();
        let names: std::collections::HashSet<&str> = entities.iter().map(|e| e.name.as_str()).collect();
        let relations = self
            .relations
            .iter()
            .filter(|r| names.contains(r.from.as_str()) || names.contains(r.to.as_str()))
            .cloned()
            .collect();
        Graph { entities, relations }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entity(name: &str, observations: &[&str]) -> Entity {
        Entity {
            name: name.into(),
            entity_type: "person".into(),
            observations: observations.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn relation(from: &str, to: &str) -> Relation {
        Relation { from: from.into(), to: to.into(), relation_type: "knows".into() }
    }

    #[test]
    fn every_change_round_trips_through_its_event() {
        let changes = [
            MemoryChange::CreateEntities(vec![entity("a", &["x"])]),
            MemoryChange::CreateRelations(vec![relation("a", "b")]),
            MemoryChange::AddObservations(vec![ObservationsToAdd {
                entity_name: "a".into(),
                contents: vec!["y".into()],
            }]),
            MemoryChange::DeleteEntities(vec!["a".into()]),
            MemoryChange::DeleteObservations(vec![ObservationsToDelete {
                entity_name: "a".into(),
                observations: vec!["y".into()],
            }]),
            MemoryChange::DeleteRelations(vec![relation("a", "b")]),
        ];
        for change in changes {
            let (kind, data) = change.to_event();
            assert_eq!(MemoryChange::from_event(kind, &data).unwrap(), change);
        }
        assert!(matches!(
            MemoryChange::from_event(ENTITIES_CREATED, &serde_json::json!({"entities": 3})),
            Err(MemoryEventError::BadData { .. })
        ));
        assert!(matches!(
            MemoryChange::from_event("kv.set", &serde_json::json!({})),
            Err(MemoryEventError::UnknownType(_))
        ));
    }

    #[test]
    fn existing_names_are_not_created_again_but_duplicates_in_one_request_are() {
        let mut g = Graph::default();
        g.apply(&MemoryChange::CreateEntities(vec![entity("a", &[])]));
        let applied =
            g.apply(&MemoryChange::CreateEntities(vec![entity("a", &["new"]), entity("b", &[]), entity("b", &[])]));
        assert_eq!(applied, Applied::Entities(vec![entity("b", &[]), entity("b", &[])]));
        assert_eq!(g.entities.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), ["a", "b", "b"]);
        assert!(g.entities[0].observations.is_empty());
    }

    #[test]
    fn observations_on_an_unknown_entity_change_nothing() {
        let mut g = Graph::default();
        g.apply(&MemoryChange::CreateEntities(vec![entity("a", &["x"])]));
        let before = g.clone();
        let applied = g.apply(&MemoryChange::AddObservations(vec![
            ObservationsToAdd { entity_name: "a".into(), contents: vec!["y".into()] },
            ObservationsToAdd { entity_name: "ghost".into(), contents: vec!["z".into()] },
        ]));
        assert_eq!(applied, Applied::EntityNotFound("ghost".into()));
        assert_eq!(g, before);
        let applied = g.apply(&MemoryChange::AddObservations(vec![ObservationsToAdd {
            entity_name: "a".into(),
            contents: vec!["x".into(), "y".into()],
        }]));
        assert_eq!(
            applied,
            Applied::Observations(vec![ObservationsAdded {
                entity_name: "a".into(),
                added_observations: vec!["y".into()]
            }])
        );
        assert_eq!(g.entities[0].observations, ["x", "y"]);
    }

    #[test]
    fn deleting_an_entity_deletes_its_relations_and_queries_include_touching_relations() {
        let mut g = Graph::default();
        g.apply(&MemoryChange::CreateEntities(vec![entity("a", &["Likes Tea"]), entity("b", &[]), entity("c", &[])]));
        g.apply(&MemoryChange::CreateRelations(vec![relation("a", "b"), relation("b", "c"), relation("a", "b")]));
        assert_eq!(g.relations.len(), 3, "duplicates within one request are kept, as the reference does");
        let found = g.search("tea");
        assert_eq!(found.entities, vec![entity("a", &["Likes Tea"])]);
        assert_eq!(found.relations, vec![relation("a", "b"), relation("a", "b")]);
        assert_eq!(g.open(&["c".into()]).relations, vec![relation("b", "c")]);
        g.apply(&MemoryChange::DeleteEntities(vec!["b".into()]));
        assert_eq!(g.entities.len(), 2);
        assert!(g.relations.is_empty());
    }
}
