//! The memory graph tools, a drop-in for the reference MCP memory server: the same tool names,
//! argument shapes, answers (text and structured) and rules, backed by events on the stream
//! `memory:<graph>` (`memory:default` unless `--graph` says otherwise) and the fold in
//! [`projections::memory`].
//!
//! A write never reads-then-rewrites: it appends one event holding the request (expected
//! version `any`, so concurrent writers from any number of processes all land, in log order),
//! then folds the stream up to just before its own event and applies it, which tells exactly
//! what that change did at its place in the log (the entities that were new, the observations
//! that were added). That is the reference's answer, without its lost updates.
//!
//! The fold is kept between calls in [`GraphCache`] and caught up from the stream on every call,
//! with the caller's own credentials, so a caller who may not read the stream gets the API's
//! `forbidden` and never the cached graph. Calls of one process are serialised on the cache
//! (a write's fold must stop just before its own event); other processes are not.

use axum::http::Method;
use projections::memory::{
    Applied, Entity as GraphEntity, Graph, MemoryChange, ObservationsToAdd, ObservationsToDelete,
    Relation as GraphRelation,
};
use rmcp::handler::server::tool::{schema_for_output, IntoCallToolResult};
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResponse, CallToolResult, ContentBlock};
use rmcp::service::RequestContext;
use rmcp::{tool, tool_router, RoleServer};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::api::{enc, query, ToolError};
use super::log_tools::{Appended, Events};
use super::CairnMcp;

/// Events read per request while folding a graph's stream.
pub const GRAPH_READ_PAGE: u64 = 1000;

/// The graph folded so far, and the stream version to read next.
#[derive(Debug, Default)]
pub struct GraphCache {
    graph: Graph,
    next_version: u64,
}

/// One node, as the reference server's tools take and give it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Entity {
    /// The name of the entity
    pub name: String,
    /// The type of the entity
    pub entity_type: String,
    /// An array of observation contents associated with the entity
    pub observations: Vec<String>,
}

/// One edge, as the reference server's tools take and give it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Relation {
    /// The name of the entity where the relation starts
    pub from: String,
    /// The name of the entity where the relation ends
    pub to: String,
    /// The type of the relation
    pub relation_type: String,
}

impl From<Entity> for GraphEntity {
    fn from(e: Entity) -> GraphEntity {
        GraphEntity { name: e.name, entity_type: e.entity_type, observations: e.observations }
    }
}
impl From<GraphEntity> for Entity {
    fn from(e: GraphEntity) -> Entity {
        Entity { name: e.name, entity_type: e.entity_type, observations: e.observations }
    }
}
impl From<Relation> for GraphRelation {
    fn from(r: Relation) -> GraphRelation {
        GraphRelation { from: r.from, to: r.to, relation_type: r.relation_type }
    }
}
impl From<GraphRelation> for Relation {
    fn from(r: GraphRelation) -> Relation {
        Relation { from: r.from, to: r.to, relation_type: r.relation_type }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct CreateEntitiesArgs {
    pub entities: Vec<Entity>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct RelationsArgs {
    /// An array of relations
    pub relations: Vec<Relation>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AddItem {
    /// The name of the entity to add the observations to
    pub entity_name: String,
    /// An array of observation contents to add
    pub contents: Vec<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct AddObservationsArgs {
    pub observations: Vec<AddItem>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeleteEntitiesArgs {
    /// An array of entity names to delete
    pub entity_names: Vec<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeleteItem {
    /// The name of the entity containing the observations
    pub entity_name: String,
    /// An array of observations to delete
    pub observations: Vec<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct DeleteObservationsArgs {
    pub deletions: Vec<DeleteItem>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct ReadGraphArgs {}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct SearchArgs {
    /// The search query to match against entity names, types, and observation content
    pub query: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct OpenArgs {
    /// An array of entity names to retrieve
    pub names: Vec<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AsOfArgs {
    /// The version of the graph's stream (each change is one version, from 0) to show the graph
    /// at: the graph as it was right after that change.
    pub version: u64,
}

/// `create_entities`' answer.
#[derive(Debug, Serialize, JsonSchema)]
pub struct EntitiesOut {
    pub entities: Vec<Entity>,
}

/// `create_relations`' answer.
#[derive(Debug, Serialize, JsonSchema)]
pub struct RelationsOut {
    pub relations: Vec<Relation>,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AddedOut {
    pub entity_name: String,
    pub added_observations: Vec<String>,
}

/// `add_observations`' answer.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ResultsOut {
    pub results: Vec<AddedOut>,
}

/// A deletion's answer.
#[derive(Debug, Serialize, JsonSchema)]
pub struct SuccessOut {
    pub success: bool,
    pub message: String,
}

/// A graph or part of one.
#[derive(Debug, Serialize, JsonSchema)]
pub struct GraphOut {
    pub entities: Vec<Entity>,
    pub relations: Vec<Relation>,
}

impl From<Graph> for GraphOut {
    fn from(g: Graph) -> GraphOut {
        GraphOut {
            entities: g.entities.into_iter().map(Into::into).collect(),
            relations: g.relations.into_iter().map(Into::into).collect(),
        }
    }
}

/// A tool answer as the reference server gives it: a text (pretty JSON, or a sentence) and the
/// structured content.
#[derive(Debug)]
pub struct Reply {
    text: String,
    structured: Value,
}

impl Reply {
    /// The text is `shown` as pretty JSON; the structured content is `structured`.
    fn json(shown: &impl Serialize, structured: &impl Serialize) -> Reply {
        Reply {
            text: serde_json::to_string_pretty(shown).unwrap_or_default(),
            structured: serde_json::to_value(structured).unwrap_or(Value::Null),
        }
    }

    fn deleted(what: &str) -> Reply {
        let message = format!("{what} deleted successfully");
        Reply { structured: json!({"success": true, "message": message}), text: message }
    }
}

impl IntoCallToolResult for Reply {
    fn into_call_tool_result(self) -> Result<CallToolResponse, rmcp::ErrorData> {
        let mut result = CallToolResult::success(vec![ContentBlock::text(self.text)]);
        result.structured_content = Some(self.structured);
        Ok(result.into())
    }
}

type ReplyResult = Result<Reply, ToolError>;

#[tool_router(router = memory_router, vis = "pub(super)")]
impl CairnMcp {
    #[tool(
        description = "Create multiple new entities in the knowledge graph",
        output_schema = schema_for_output::<EntitiesOut>(),
        annotations(title = "Create Entities", read_only_hint = false, destructive_hint = false, idempotent_hint = false, open_world_hint = false)
    )]
    async fn create_entities(
        &self,
        ctx: RequestContext<RoleServer>,
        Parameters(a): Parameters<CreateEntitiesArgs>,
    ) -> ReplyResult {
        let change = MemoryChange::CreateEntities(a.entities.into_iter().map(Into::into).collect());
        match self.change_graph(&ctx, change).await? {
            Applied::Entities(new) => {
                let new: Vec<Entity> = new.into_iter().map(Into::into).collect();
                Ok(Reply::json(&new, &EntitiesOut { entities: new.clone() }))
            }
            other => Err(unexpected(&other)),
        }
    }

    #[tool(
        description = "Create multiple new relations between entities in the knowledge graph. Relations should be in active voice",
        output_schema = schema_for_output::<RelationsOut>(),
        annotations(title = "Create Relations", read_only_hint = false, destructive_hint = false, idempotent_hint = false, open_world_hint = false)
    )]
    async fn create_relations(
        &self,
        ctx: RequestContext<RoleServer>,
        Parameters(a): Parameters<RelationsArgs>,
    ) -> ReplyResult {
        let change = MemoryChange::CreateRelations(a.relations.into_iter().map(Into::into).collect());
        match self.change_graph(&ctx, change).await? {
            Applied::Relations(new) => {
                let new: Vec<Relation> = new.into_iter().map(Into::into).collect();
                Ok(Reply::json(&new, &RelationsOut { relations: new.clone() }))
            }
            other => Err(unexpected(&other)),
        }
    }

    #[tool(
        description = "Add new observations to existing entities in the knowledge graph",
        output_schema = schema_for_output::<ResultsOut>(),
        annotations(title = "Add Observations", read_only_hint = false, destructive_hint = false, idempotent_hint = false, open_world_hint = false)
    )]
    async fn add_observations(
        &self,
        ctx: RequestContext<RoleServer>,
        Parameters(a): Parameters<AddObservationsArgs>,
    ) -> ReplyResult {
        let items: Vec<ObservationsToAdd> = a
            .observations
            .into_iter()
            .map(|o| ObservationsToAdd { entity_name: o.entity_name, contents: o.contents })
            .collect();
        match self.change_graph(&ctx, MemoryChange::AddObservations(items)).await? {
            Applied::Observations(results) => {
                let results: Vec<AddedOut> = results
                    .into_iter()
                    .map(|r| AddedOut { entity_name: r.entity_name, added_observations: r.added_observations })
                    .collect();
                let text = Reply::json(&results, &Value::Null).text;
                Ok(Reply { text, structured: json!({ "results": results }) })
            }
            Applied::EntityNotFound(name) => Err(entity_not_found(&name)),
            other => Err(unexpected(&other)),
        }
    }

    #[tool(
        description = "Delete multiple entities and their associated relations from the knowledge graph",
        output_schema = schema_for_output::<SuccessOut>(),
        annotations(title = "Delete Entities", read_only_hint = false, destructive_hint = true, idempotent_hint = true, open_world_hint = false)
    )]
    async fn delete_entities(
        &self,
        ctx: RequestContext<RoleServer>,
        Parameters(a): Parameters<DeleteEntitiesArgs>,
    ) -> ReplyResult {
        self.change_graph(&ctx, MemoryChange::DeleteEntities(a.entity_names)).await?;
        Ok(Reply::deleted("Entities"))
    }

    #[tool(
        description = "Delete specific observations from entities in the knowledge graph",
        output_schema = schema_for_output::<SuccessOut>(),
        annotations(title = "Delete Observations", read_only_hint = false, destructive_hint = true, idempotent_hint = true, open_world_hint = false)
    )]
    async fn delete_observations(
        &self,
        ctx: RequestContext<RoleServer>,
        Parameters(a): Parameters<DeleteObservationsArgs>,
    ) -> ReplyResult {
        let items = a
            .deletions
            .into_iter()
            .map(|d| ObservationsToDelete { entity_name: d.entity_name, observations: d.observations })
            .collect();
        self.change_graph(&ctx, MemoryChange::DeleteObservations(items)).await?;
        Ok(Reply::deleted("Observations"))
    }

    #[tool(
        description = "Delete multiple relations from the knowledge graph",
        output_schema = schema_for_output::<SuccessOut>(),
        annotations(title = "Delete Relations", read_only_hint = false, destructive_hint = true, idempotent_hint = true, open_world_hint = false)
    )]
    async fn delete_relations(
        &self,
        ctx: RequestContext<RoleServer>,
        Parameters(a): Parameters<RelationsArgs>,
    ) -> ReplyResult {
        self.change_graph(&ctx, MemoryChange::DeleteRelations(a.relations.into_iter().map(Into::into).collect()))
            .await?;
        Ok(Reply::deleted("Relations"))
    }

    #[tool(
        description = "Read the entire knowledge graph",
        output_schema = schema_for_output::<GraphOut>(),
        annotations(title = "Read Graph", read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false)
    )]
    async fn read_graph(
        &self,
        ctx: RequestContext<RoleServer>,
        Parameters(_): Parameters<ReadGraphArgs>,
    ) -> ReplyResult {
        let graph = self.current_graph(&ctx).await?;
        Ok(graph_reply(graph))
    }

    #[tool(
        description = "Search for nodes in the knowledge graph based on a query",
        output_schema = schema_for_output::<GraphOut>(),
        annotations(title = "Search Nodes", read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false)
    )]
    async fn search_nodes(
        &self,
        ctx: RequestContext<RoleServer>,
        Parameters(a): Parameters<SearchArgs>,
    ) -> ReplyResult {
        let graph = self.current_graph(&ctx).await?;
        Ok(graph_reply(graph.search(&a.query)))
    }

    #[tool(
        description = "Open specific nodes in the knowledge graph by their names",
        output_schema = schema_for_output::<GraphOut>(),
        annotations(title = "Open Nodes", read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false)
    )]
    async fn open_nodes(&self, ctx: RequestContext<RoleServer>, Parameters(a): Parameters<OpenArgs>) -> ReplyResult {
        let graph = self.current_graph(&ctx).await?;
        Ok(graph_reply(graph.open(&a.names)))
    }

    #[tool(
        description = "Read the knowledge graph as it was right after a given change: every change is one event on the graph's stream, and `version` is that event's version in it (from 0). Use it to see what the graph held before a deletion, or to audit how it grew.",
        output_schema = schema_for_output::<GraphOut>(),
        annotations(title = "Read Graph As Of", read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false)
    )]
    async fn read_graph_as_of(
        &self,
        ctx: RequestContext<RoleServer>,
        Parameters(a): Parameters<AsOfArgs>,
    ) -> ReplyResult {
        let auth = self.auth(&ctx);
        let mut cache = GraphCache::default();
        self.fold_until(&mut cache, Some(a.version + 1), auth.as_deref()).await?;
        if cache.next_version <= a.version {
            return Err(ToolError::new(
                "version_not_found",
                format!(
                    "the graph's stream {} has no version {} (its last is {})",
                    self.graph_stream,
                    a.version,
                    last_version(cache.next_version)
                ),
            ));
        }
        Ok(graph_reply(cache.graph))
    }
}

fn last_version(next: u64) -> String {
    next.checked_sub(1).map_or_else(|| "none: it is empty".to_string(), |v| v.to_string())
}

fn graph_reply(graph: Graph) -> Reply {
    let out = GraphOut::from(graph);
    Reply::json(&out, &out)
}

fn entity_not_found(name: &str) -> ToolError {
    ToolError::new("entity_not_found", format!("Entity with name {name} not found"))
}

fn unexpected(applied: &Applied) -> ToolError {
    ToolError::new("internal", format!("the memory graph answered a change with {applied:?}"))
}

impl CairnMcp {
    /// Appends `change` as one event on the graph's stream and answers what it did there.
    async fn change_graph(&self, ctx: &RequestContext<RoleServer>, change: MemoryChange) -> Result<Applied, ToolError> {
        let auth = self.auth(ctx);
        let auth = auth.as_deref();
        let mut cache = self.graphs.lock().await;
        if let MemoryChange::AddObservations(items) = &change {
            // Refuse at once what would fail now, as the reference does, without an event.
            self.fold_until(&mut cache, None, auth).await?;
            if let Some(missing) = items.iter().find(|i| !cache.graph.entities.iter().any(|e| e.name == i.entity_name))
            {
                return Err(entity_not_found(&missing.entity_name));
            }
        }
        let (event_type, data) = change.to_event();
        let body = json!({"events": [{"type": event_type, "data": data}]});
        let path = format!("/v1/streams/{}/events", enc(&self.graph_stream));
        let appended: Appended = self.api.call_as(Method::POST, &path, Some(&body), auth).await?;
        // Fold everything before this change (other writers' changes included), then apply it.
        self.fold_until(&mut cache, Some(appended.last_version), auth).await?;
        if cache.next_version != appended.last_version {
            return Err(ToolError::new(
                "internal",
                format!(
                    "the graph's stream {} did not show version {} before its own change",
                    self.graph_stream, appended.last_version
                ),
            ));
        }
        let applied = cache.graph.apply(&change);
        cache.next_version += 1;
        Ok(applied)
    }

    /// The whole graph now.
    async fn current_graph(&self, ctx: &RequestContext<RoleServer>) -> Result<Graph, ToolError> {
        let auth = self.auth(ctx);
        let mut cache = self.graphs.lock().await;
        self.fold_until(&mut cache, None, auth.as_deref()).await?;
        Ok(cache.graph.clone())
    }

    /// Folds the graph's stream into `cache` up to (not including) version `until`, or to its
    /// end. Always reads at least once, with the caller's credentials.
    async fn fold_until(
        &self,
        cache: &mut GraphCache,
        until: Option<u64>,
        auth: Option<&str>,
    ) -> Result<(), ToolError> {
        loop {
            let want = until.map_or(GRAPH_READ_PAGE, |u| u.saturating_sub(cache.next_version).min(GRAPH_READ_PAGE));
            let q = query(&[("from", Some(cache.next_version.to_string())), ("limit", Some(want.max(1).to_string()))]);
            let path = format!("/v1/streams/{}/events{q}", enc(&self.graph_stream));
            let page: Events = match self.api.call_as(Method::GET, &path, None, auth).await {
                Ok(page) => page,
                Err(e) if e.code == "stream_not_found" => return Ok(()),
                Err(e) => return Err(e),
            };
            if want == 0 {
                return Ok(());
            }
            let read = page.events.len();
            for event in page.events {
                if event.version != cache.next_version {
                    return Err(ToolError::new(
                        "internal",
                        format!(
                            "the graph's stream {} skipped from version {} to {}",
                            self.graph_stream, cache.next_version, event.version
                        ),
                    ));
                }
                if until.is_some_and(|u| event.version >= u) {
                    return Ok(());
                }
                match MemoryChange::from_event(&event.event_type, event.data.as_ref().unwrap_or(&Value::Null)) {
                    Ok(change) => {
                        cache.graph.apply(&change);
                    }
                    // Another program's event on the stream changes nothing in the graph.
                    Err(e) => {
                        tracing::warn!(stream = %self.graph_stream, version = event.version, error = %e, "event skipped in the memory graph");
                    }
                }
                cache.next_version += 1;
            }
            if read == 0 || page.next.is_none() || until.is_some_and(|u| cache.next_version >= u) {
                return Ok(());
            }
        }
    }
}
