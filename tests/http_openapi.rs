//! Issue 23 item 1: `/openapi.json` described all 63 query parameters as `in: path, required`,
//! so the document was invalid and every client generated from it wrong. This suite fetches the
//! document from a real server and holds it to the router: every route the router serves (read
//! from the router's own declaration in src/http/mod.rs) is documented with each of its methods,
//! every documented operation reaches a handler, path parameters are exactly the template's,
//! and no query parameter is declared `in: path`. (The full schema validation and the
//! schemathesis run against a live server are `.ci/api-spec`.)

mod support;

use std::collections::BTreeSet;

use serde_json::Value;
use support::Server;

const METHODS: [&str; 6] = ["get", "head", "post", "put", "delete", "patch"];

/// (method, path) of every route in the router's declaration, `.route("PATH", get(..).post(..))`.
fn routed() -> BTreeSet<(String, String)> {
    let source = include_str!("../src/http/mod.rs");
    let start = source.find("pub fn router(").expect("src/http/mod.rs declares the router");
    let body = &source[start..];
    let body = &body[..body.find(".fallback(").expect("the router has a fallback")];
    let mut out = BTreeSet::new();
    for chunk in body.split(".route(").skip(1) {
        let path = chunk.split('"').nth(1).expect("a route's path is a string literal").to_string();
        let handlers = &chunk[chunk.find(',').expect("a route has handlers")..];
        for method in METHODS {
            let called = handlers.match_indices(&format!("{method}(")).any(|(i, _)| {
                i == 0 || !handlers.as_bytes()[i - 1].is_ascii_alphanumeric() && handlers.as_bytes()[i - 1] != b'_'
            });
            if called {
                out.insert((method.to_string(), path.clone()));
            }
        }
    }
    assert!(out.len() > 40, "the router's declaration was not read: {out:?}");
    out
}

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
fn every_route_is_documented_and_parameters_are_where_they_belong() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let (status, spec) = server.get("/openapi.json");
    assert_eq!(status, 200);
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."), "{}", spec["openapi"]);

    let documented: BTreeSet<(String, String)> = operations(&spec).into_iter().map(|(m, p, _)| (m, p)).collect();
    let missing: Vec<_> = routed().difference(&documented).cloned().collect();
    assert!(missing.is_empty(), "routes the router serves but /openapi.json does not document: {missing:?}");

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

#[test]
fn every_documented_operation_reaches_a_handler() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let (_, spec) = server.get("/openapi.json");
    let client = reqwest::blocking::Client::new();
    for (method, path, _) in operations(&spec) {
        let url: String =
            path.split('/').map(|s| if s.starts_with('{') { "x1" } else { s }).collect::<Vec<_>>().join("/");
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
