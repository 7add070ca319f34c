//! Issue 23 item 1: `/openapi.json` described all 63 query parameters as `in: path, required`,
//! so the document was invalid and every client generated from it wrong. This suite fetches the
//! document from a real server and holds it to the router. The router and the document come
//! from one declaration (src/http/mod.rs, `api`), so a route cannot be served undocumented; what
//! is checked here is what that declaration could still get wrong: every documented operation
//! reaches a handler, no documented path takes a method it does not document, path parameters
//! are exactly the template's, no query parameter is declared `in: path`, and every answer
//! has a typed schema that the live answers match. (The full schema validation and the
//! schemathesis run against a live server are `.ci/api-spec`.)

mod support;

use std::collections::BTreeSet;

use serde_json::Value;
use support::Server;

const METHODS: [&str; 6] = ["get", "head", "post", "put", "delete", "patch"];

fn operations(spec: &Value) -> Vec<(String, String, &Value)> {
    let mut out = Vec::new();
    for (path, item) in spec["paths"].as_object().expect("paths") {
        for method in METHODS {
            if let Some(op) = item.get(method) {
                out.push((method.to_string(), path.clone(), op));
            }
        }
    }
    out
}

#[test]
fn every_operation_has_its_parameters_where_they_belong() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let (status, spec) = server.get("/openapi.json");
    assert_eq!(status, 200);
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."), "{}", spec["openapi"]);

    for (method, path, op) in operations(&spec) {
        let template: BTreeSet<&str> =
            path.split('/').filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}'))).collect();
        let params = op["parameters"].as_array().cloned().unwrap_or_default();
        let declared: BTreeSet<String> = params
            .iter()
            .filter(|p| p["in"] == "path")
            .map(|p| {
                assert_eq!(p["required"], true, "{method} {path}: path parameter {} must be required", p["name"]);
                p["name"].as_str().unwrap().to_string()
            })
            .collect();
        let expected: BTreeSet<String> = template.iter().map(|s| s.to_string()).collect();
        assert_eq!(declared, expected, "{method} {path}: the path parameters must be exactly the template's");
        for p in params.iter().filter(|p| p["in"] == "query") {
            assert_ne!(p["required"], true, "{method} {path}: query parameter {} is optional", p["name"]);
        }
        let responses = op["responses"].as_object().unwrap_or_else(|| panic!("{method} {path}: no responses"));
        assert!(responses.keys().any(|s| s.starts_with('2')), "{method} {path}: no success answer documented");
    }
}

/// The URL of a documented path, with `x1` for every path parameter.
fn concrete(path: &str) -> String {
    path.split('/').map(|s| if s.starts_with('{') { "x1" } else { s }).collect::<Vec<_>>().join("/")
}

/// One `routes!` call per path: a call that named handlers of two paths would register each
/// path with every method of both, serving requests the document says the path refuses. Every
/// method a path does not document is answered 405 (a GET path answers HEAD as well).
#[test]
fn no_path_takes_a_method_it_does_not_document() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let (_, spec) = server.get("/openapi.json");
    let client = reqwest::blocking::Client::new();
    let mut served = Vec::new();
    for (path, item) in spec["paths"].as_object().expect("paths") {
        for method in METHODS {
            if item.get(method).is_some() || method == "head" && item.get("get").is_some() {
                continue;
            }
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let status = client.request(m, server.url(&concrete(path))).send().unwrap().status().as_u16();
            if status != 405 {
                served.push(format!("{} {path} answered {status}", method.to_uppercase()));
            }
        }
    }
    assert!(served.is_empty(), "methods served but not documented: {served:?}");
}

#[test]
fn every_documented_operation_reaches_a_handler() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let (_, spec) = server.get("/openapi.json");
    let client = reqwest::blocking::Client::new();
    for (method, path, _) in operations(&spec) {
        let url = concrete(&path);
        let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let response = client.request(m, server.url(&url)).send().unwrap();
        let status = response.status().as_u16();
        let streaming =
            response.headers().get("content-type").is_some_and(|c| c.as_bytes().starts_with(b"text/event-stream"));
        // A subscription answers 200 and never ends: its status is enough.
        let body: Value = if streaming { Value::Null } else { response.json().unwrap_or(Value::Null) };
        assert_ne!(status, 405, "{method} {path}: documented but the router does not take the method");
        assert_ne!(
            body["error"], "not_found",
            "{method} {path}: documented but the router has no such route ({status} {body})"
        );
    }
}

/// The schema `/openapi.json` gives the `status` answer of `method path`, as a JSON Schema that
/// resolves the document's `#/components/...` references.
fn answer_schema(spec: &Value, method: &str, path: &str, status: u16) -> Value {
    let schema = &spec["paths"][path][method]["responses"][status.to_string()]["content"]["application/json"]["schema"];
    assert!(schema.is_object(), "{method} {path}: no JSON schema for its {status} answer");
    serde_json::json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "components": spec["components"],
        "allOf": [schema],
    })
}

/// A schema that says nothing about an answer's fields: `{"type": "object"}` and no more.
fn untyped(spec: &Value, schema: &Value) -> bool {
    let schema = match schema["$ref"].as_str() {
        Some(r) => &spec["components"]["schemas"][r.trim_start_matches("#/components/schemas/")],
        None => schema,
    };
    schema["type"] == "object" && schema.get("properties").is_none() && schema.get("additionalProperties").is_none()
}

/// Issue 23: 18 answers of the metadata view and the checkpoints, and the audit entry a client
/// posts, were documented as a bare `object` (their fields only in prose), so neither clients
/// nor schemathesis knew their shape. Every success answer and request body with JSON now names
/// its fields (the document itself excepted).
#[test]
fn every_json_success_answer_has_a_typed_schema() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let (_, spec) = server.get("/openapi.json");
    let mut bare = Vec::new();
    for (method, path, op) in operations(&spec) {
        if path == "/openapi.json" {
            continue;
        }
        for (status, answer) in op["responses"].as_object().unwrap() {
            let Some(schema) = answer["content"].get("application/json").map(|c| &c["schema"]) else { continue };
            if status.starts_with('2') && untyped(&spec, schema) {
                bare.push(format!("{method} {path} {status}"));
            }
        }
        if let Some(body) = op["requestBody"]["content"].get("application/json") {
            if untyped(&spec, &body["schema"]) {
                bare.push(format!("{method} {path} request body"));
            }
        }
    }
    assert!(bare.is_empty(), "answers documented as a bare object: {bare:?}");
}

/// Every metadata-view and checkpoint endpoint (and the key-value and audit ones), driven with
/// real requests through the cases where a field is null or left out (an identical schema's
/// `position: null`, a deleted configuration version's `value: null`, a damaged checkpoint's
/// `info: null` and `detail`, a full checkpoint's `parent: null`), answers exactly what its
/// documented schema says: required fields present, nullable ones only where documented.
#[test]
fn view_and_checkpoint_answers_match_their_documented_schemas() {
    use reqwest::Method;
    use serde_json::json;

    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let (_, spec) = server.get("/openapi.json");
    let mut checked = BTreeSet::new();
    // The views apply writes after answering them: a read names the newest position written so
    // far (`min_position`, read-your-writes) wherever the operation takes it.
    let mut written: Option<u64> = None;
    let mut call = |method: Method, template: &str, url: &str, body: Option<Value>| -> Value {
        let m = method.as_str().to_lowercase();
        let takes_min_position = spec["paths"][template][&m]["parameters"]
            .as_array()
            .is_some_and(|params| params.iter().any(|p| p["name"] == "min_position"));
        let url = match written {
            Some(p) if takes_min_position => {
                format!("{url}{}min_position={p}", if url.contains('?') { '&' } else { '?' })
            }
            _ => url.to_string(),
        };
        let (status, answer) = server.request(method.clone(), &url, body.as_ref());
        assert_eq!(status, 200, "{method} {url}: {answer}");
        if let Some(p) = answer["position"].as_u64() {
            written = Some(written.map_or(p, |w| w.max(p)));
        }
        let schema = answer_schema(&spec, &m, template, status);
        let validator = jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("{m} {template}: {e}"));
        let errors: Vec<String> =
            validator.iter_errors(&answer).map(|e| format!("{}: {e}", e.instance_path())).collect();
        assert!(errors.is_empty(), "{method} {url} answered {answer}, which its schema refuses: {errors:?}");
        checked.insert((m, template.to_string()));
        answer
    };

    let schema = json!({"schema": {"type": "object", "properties": {"n": {"type": "integer"}}}});
    let path = "/v1/meta/schemas/{subject}/versions";
    call(Method::POST, path, "/v1/meta/schemas/orders/versions", Some(schema.clone()));
    let again = call(Method::POST, path, "/v1/meta/schemas/orders/versions", Some(schema));
    assert_eq!(again["position"], Value::Null, "an identical schema writes nothing: {again}");
    call(Method::GET, "/v1/meta/schemas", "/v1/meta/schemas", None);
    let compat = "/v1/meta/schemas/{subject}/compatibility";
    call(Method::PUT, compat, "/v1/meta/schemas/orders/compatibility", Some(json!({"mode": "full"})));
    call(Method::GET, compat, "/v1/meta/schemas/orders/compatibility", None);
    call(Method::GET, "/v1/meta/schemas/{subject}/versions/{version}", "/v1/meta/schemas/orders/versions/latest", None);
    let invalid = call(
        Method::POST,
        "/v1/meta/schemas/{subject}/validate",
        "/v1/meta/schemas/orders/validate",
        Some(json!({"payload": {"n": "x"}})),
    );
    assert_eq!(invalid["valid"], false, "{invalid}");

    let instance = "/v1/meta/services/{name}/instances/{id}";
    let registration = json!({"endpoints": ["http://10.0.0.1:80"], "tags": ["eu"], "ttl_ms": 600_000});
    call(Method::PUT, instance, "/v1/meta/services/search/instances/i-1", Some(registration));
    let found = call(Method::GET, "/v1/meta/services", "/v1/meta/services", None);
    assert_eq!(found["instances"].as_array().map(Vec::len), Some(1), "{found}");
    call(Method::DELETE, instance, "/v1/meta/services/search/instances/i-1", None);

    let config = "/v1/meta/config/{key}";
    call(Method::PUT, config, "/v1/meta/config/limit", Some(json!({"value": 5})));
    call(Method::DELETE, config, "/v1/meta/config/limit", None);
    call(Method::PUT, config, "/v1/meta/config/limit", Some(json!({"value": {"max": 6}, "scope": "global"})));
    call(Method::GET, config, "/v1/meta/config/limit", None);
    let history = call(Method::GET, "/v1/meta/config/{key}/history", "/v1/meta/config/limit/history", None);
    assert_eq!(history["versions"][1]["value"], Value::Null, "the delete is a version without a value: {history}");

    let edge = json!({"from": "agent-7", "to": "tool-search", "type": "calls", "properties": {"weight": 2}});
    call(Method::POST, "/v1/meta/relations", "/v1/meta/relations", Some(edge.clone()));
    call(Method::GET, "/v1/meta/relations/{entity}", "/v1/meta/relations/agent-7?depth=2", None);
    let mut gone = edge;
    gone.as_object_mut().unwrap().remove("properties");
    call(Method::DELETE, "/v1/meta/relations", "/v1/meta/relations", Some(gone));

    call(Method::PUT, "/v1/kv/{key}", "/v1/kv/k", Some(json!({"value": {"a": 1}, "ttl_ms": 600_000})));
    call(Method::GET, "/v1/kv/{key}", "/v1/kv/k", None);
    call(Method::POST, "/v1/kv/{key}/incr", "/v1/kv/n/incr", None);
    call(Method::GET, "/v1/kv/{key}/history", "/v1/kv/n/history", None);
    call(Method::GET, "/v1/kv", "/v1/kv", None);
    call(Method::DELETE, "/v1/kv/{key}", "/v1/kv/absent", None);
    call(Method::DELETE, "/v1/kv/{key}", "/v1/kv/k", None);
    call(Method::POST, "/v1/kv/{key}/append", "/v1/kv/s/append", Some(json!({"value": "ab"})));
    call(Method::POST, "/v1/kv/{key}/push", "/v1/kv/l/push", Some(json!({"values": [1, "two"]})));
    call(Method::GET, "/v1/kv/{key}/range", "/v1/kv/l/range", None);
    call(Method::POST, "/v1/kv/{key}/pop", "/v1/kv/l/pop", Some(json!({"count": 5})));
    let none = call(Method::POST, "/v1/kv/{key}/pop", "/v1/kv/l/pop", None);
    assert_eq!(none["position"], Value::Null, "popping an empty list writes nothing: {none}");
    call(Method::POST, "/v1/kv/{key}/sadd", "/v1/kv/set/sadd", Some(json!({"members": ["a", "b"]})));
    call(Method::POST, "/v1/kv/{key}/srem", "/v1/kv/set/srem", Some(json!({"members": ["a"]})));
    call(Method::GET, "/v1/kv/{key}/members", "/v1/kv/set/members", None);
    call(Method::POST, "/v1/kv:get", "/v1/kv:get", Some(json!({"keys": ["n", "absent"]})));
    let ops = json!({"ops": [{"op": "incr", "key": "n", "delta": 2}, {"op": "set", "key": "t", "value": 1}]});
    call(Method::POST, "/v1/kv:txn", "/v1/kv:txn", Some(ops));
    let entry = json!({"level": "info", "category": "security", "event": "login",
                       "actor": {"type": "user", "id": "u-1"}});
    let receipt = call(Method::POST, "/v1/audit", "/v1/audit", Some(entry));
    let id = receipt["id"].as_str().unwrap().to_string();
    call(Method::GET, "/v1/audit", "/v1/audit", None);
    call(Method::GET, "/v1/audit/{id}", &format!("/v1/audit/{id}"), None);
    call(Method::GET, "/v1/audit/{id}/proof", &format!("/v1/audit/{id}/proof"), None);

    let full = call(Method::POST, "/v1/checkpoints", "/v1/checkpoints", Some(json!({"kind": "full"})));
    assert_eq!(full["parent"], Value::Null, "a full checkpoint has no parent: {full}");
    call(Method::POST, "/v1/kv/{key}/incr", "/v1/kv/n/incr", None);
    let incremental = call(Method::POST, "/v1/checkpoints", "/v1/checkpoints", Some(json!({"kind": "incremental"})));
    assert_eq!(incremental["parent"], full["sequence"], "{incremental}");
    // A manifest that cannot be read: its row has `info: null` and a `detail`.
    // A manifest that cannot be read (`info: null`, a `detail`), a child whose chain it breaks
    // (`info` and a `detail`), and a valid checkpoint (no `detail`).
    std::fs::write(full["file"].as_str().unwrap(), b"not a checkpoint").unwrap();
    call(Method::POST, "/v1/checkpoints", "/v1/checkpoints", Some(json!({"kind": "full"})));
    let listed = call(Method::GET, "/v1/checkpoints", "/v1/checkpoints", None);
    let rows = listed["checkpoints"].as_array().unwrap();
    assert!(
        rows.iter().any(|r| r["status"] == "damaged" && r["info"].is_null() && r["detail"].is_string()),
        "{listed}"
    );
    assert!(rows.iter().any(|r| r["status"] == "broken_chain" && r["info"].is_object()), "{listed}");
    assert!(rows.iter().any(|r| r["status"] == "valid" && r.get("detail").is_none()), "{listed}");

    let meta_and_checkpoints: BTreeSet<(String, String)> = operations(&spec)
        .into_iter()
        .filter(|(_, p, _)| p.starts_with("/v1/meta") || p.starts_with("/v1/checkpoints"))
        .map(|(m, p, _)| (m, p))
        .collect();
    let missed: Vec<_> = meta_and_checkpoints.difference(&checked).collect();
    assert!(missed.is_empty(), "metadata and checkpoint operations this test did not drive: {missed:?}");
}

/// The fields of `value` that `schema` does not name, as JSON pointers: `$ref`s, `allOf`s and
/// `oneOf`s resolved, nested objects followed where their schema names fields, free-form
/// objects (`{"type": "object"}` with no properties) taken as they are.
fn undocumented_fields(spec: &Value, schema: &Value, value: &Value, at: &str, out: &mut Vec<String>) {
    fn properties<'a>(spec: &'a Value, schema: &'a Value, into: &mut Vec<(&'a String, &'a Value)>) {
        if let Some(r) = schema["$ref"].as_str() {
            let name = r.trim_start_matches("#/components/schemas/");
            return properties(spec, &spec["components"]["schemas"][name], into);
        }
        for part in ["allOf", "oneOf"] {
            for s in schema[part].as_array().into_iter().flatten() {
                properties(spec, s, into);
            }
        }
        into.extend(schema["properties"].as_object().into_iter().flatten());
    }
    let Some(object) = value.as_object() else { return };
    let mut named = Vec::new();
    properties(spec, schema, &mut named);
    if named.is_empty() {
        return; // a free-form object
    }
    for (key, field) in object {
        match named.iter().find(|(name, _)| *name == key) {
            Some((_, field_schema)) => undocumented_fields(spec, field_schema, field, &format!("{at}/{key}"), out),
            None => out.push(format!("{at}/{key}")),
        }
    }
}

/// Issue 23: `POST /v1/audit`'s body was a bare `object` with its fields in prose, and a stored
/// entry was described by its required fields only. An entry with every optional field set is
/// accepted as its documented body, and the entry read back is described field by field.
#[test]
fn an_audit_entry_with_every_field_is_documented_going_in_and_coming_out() {
    use reqwest::Method;
    use serde_json::json;

    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let (_, spec) = server.get("/openapi.json");
    let entry = json!({
        "id": "0b9c8f1e-2d3a-4c5b-8e6f-7a8b9c0d1e2f",
        "level": "warn", "category": "data_access", "event": "export",
        "actor": {"type": "agent", "id": "agent-7", "name": "Planner", "roles": ["exporter"]},
        "target": {"type": "table", "id": "orders", "name": "Orders", "properties": {"rows": 12}},
        "context": {"trace_id": "t-1", "span_id": "s-1", "parent_span_id": "s-0", "workflow_id": "w-1",
                    "task_id": "k-1", "agent_id": "agent-7", "user_id": "u-1"},
        "outcome": "success", "metadata": {"reason": "monthly report"},
        "source": {"component": "exporter", "instance": "i-1", "version": "1.2.0", "node": "n-1"},
    });
    let body_schema = &spec["paths"]["/v1/audit"]["post"]["requestBody"]["content"]["application/json"]["schema"];
    let mut missing = Vec::new();
    undocumented_fields(&spec, body_schema, &entry, "", &mut missing);
    assert!(missing.is_empty(), "fields of an audit entry its request body schema does not name: {missing:?}");
    let validator = jsonschema::validator_for(&json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "components": spec["components"],
        "allOf": [body_schema],
    }))
    .unwrap();
    assert!(validator.is_valid(&entry), "the documented body schema refuses a valid entry");
    assert!(!validator.is_valid(&json!({"level": "info"})), "the documented body schema requires the entry's fields");

    let (status, receipt) = server.request(Method::POST, "/v1/audit", Some(&entry));
    assert_eq!(status, 200, "{receipt}");
    let url = format!("/v1/audit/{}?min_position={}", entry["id"].as_str().unwrap(), receipt["position"]);
    let (status, stored) = server.request(Method::GET, &url, None);
    assert_eq!(status, 200, "{stored}");
    assert_eq!(stored["target"], entry["target"], "{stored}");
    let mut missing = Vec::new();
    undocumented_fields(&spec, &answer_schema(&spec, "get", "/v1/audit/{id}", 200), &stored, "", &mut missing);
    assert!(missing.is_empty(), "fields of a stored audit entry its answer schema does not name: {missing:?}");
}

/// Every `$ref` in the document names a schema it holds: a type used only as a query
/// parameter (the lifecycle's `DeleteModeParam`) was referenced but never registered, which
/// openapi-spec-validator refuses.
#[test]
fn every_schema_reference_resolves() {
    fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    out.push(r);
                }
                map.values().for_each(|v| refs(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let (_, spec) = server.get("/openapi.json");
    let mut found = Vec::new();
    refs(&spec, &mut found);
    assert!(!found.is_empty());
    for r in found {
        let name = r.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("an unexpected $ref {r}"));
        assert!(spec["components"]["schemas"].get(name).is_some(), "$ref {r} names no schema of the document");
    }
}
