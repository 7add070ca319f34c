//! The metadata view through its facade: schema registry (versions, compatibility modes,
//! validation), service registry (heartbeats, discovery), configuration (versions, history,
//! as-of reads) and relationships (neighbours, bounded traversal).

mod common;

use common::*;
use log_engine::{ExpectedVersion, NewEvent};
use projections::{AsOf, Compatibility, EdgeDirection, Error, InstanceRegistration, VersionSel, RELATION_DEPTH_MAX};
use serde_json::json;

fn person_v1() -> serde_json::Value {
    json!({"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"],
           "additionalProperties": false})
}

fn person_v2() -> serde_json::Value {
    json!({"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
           "required": ["name"], "additionalProperties": false})
}

#[test]
fn schema_versions_and_backward_compatibility() {
    let (_dir, _log, views) = views();
    let meta = views.meta();
    let r1 = meta.register_schema("person", person_v1()).unwrap();
    assert_eq!(r1.version, 1);
    at(&views, r1.position.unwrap());
    let again = meta.register_schema("person", person_v1()).unwrap();
    assert_eq!((again.version, again.position), (1, None), "re-registering a schema answers its version");
    let r2 = meta.register_schema("person", person_v2()).unwrap();
    assert_eq!(r2.version, 2, "adding an optional property to a closed schema is backward compatible");
    at(&views, r2.position.unwrap());
    // Making a property required is not: old data without it would be rejected.
    let mut v3 = person_v2();
    v3["required"] = json!(["name", "age"]);
    let err = meta.register_schema("person", v3.clone()).unwrap_err();
    assert_eq!(err.code(), Some("incompatible_schema"));
    match &err {
        Error::IncompatibleSchema { mode, against, reasons, .. } => {
            assert_eq!((*mode, *against), ("backward", 2));
            assert!(reasons.iter().any(|r| r.contains("age")), "{reasons:?}");
        }
        other => panic!("expected incompatible_schema, got {other}"),
    }
    assert_eq!(meta.schema("person", VersionSel::Latest).unwrap().version, 2);
    assert_eq!(meta.schema("person", VersionSel::Number(1)).unwrap().schema, person_v1());
    assert_eq!(meta.schema("person", VersionSel::Number(3)).unwrap_err().code(), Some("version_not_found"));
    assert_eq!(meta.schema("nobody", VersionSel::Latest).unwrap_err().code(), Some("subject_not_found"));
    assert_eq!(meta.subjects(), vec!["person".to_string()]);

    // Mode none accepts anything valid.
    let p = meta.set_compatibility("person", Compatibility::None).unwrap();
    at(&views, p);
    assert_eq!(meta.compatibility("person"), Compatibility::None);
    assert_eq!(meta.register_schema("person", v3).unwrap().version, 3);
}

#[test]
fn forward_and_full_modes() {
    let (_dir, _log, views) = views();
    let meta = views.meta();
    at(&views, meta.set_compatibility("f", Compatibility::Forward).unwrap());
    at(&views, meta.register_schema("f", person_v2()).unwrap().position.unwrap());
    // Forward: new data must validate under the old schema; dropping a property is fine...
    assert_eq!(meta.register_schema("f", person_v1()).unwrap().version, 2);
    // ...adding one to a closed schema is not: old readers would reject the new property.
    let mut with_email = person_v1();
    with_email["properties"]["email"] = json!({"type": "string"});
    let err = meta.register_schema("f", with_email).unwrap_err();
    assert_eq!(err.code(), Some("incompatible_schema"));
    assert!(err.to_string().contains("forward") && err.to_string().contains("email"), "{err}");
    assert_eq!(meta.register_schema("f", person_v2()).unwrap().version, 1, "an existing version is answered as is");

    at(&views, meta.set_compatibility("g", Compatibility::Full).unwrap());
    at(&views, meta.register_schema("g", json!({"type": "integer", "maximum": 10})).unwrap().position.unwrap());
    let err = meta.register_schema("g", json!({"type": "integer", "maximum": 20})).unwrap_err();
    assert!(err.to_string().contains("forward"), "widening fails the forward half: {err}");
    let err = meta.register_schema("g", json!({"type": "integer", "maximum": 5})).unwrap_err();
    assert!(err.to_string().contains("backward"), "narrowing fails the backward half: {err}");
    assert_eq!(
        meta.register_schema("g", json!({"type": "integer", "maximum": 10, "title": "n"})).unwrap().version,
        2,
        "an annotation-only change is fully compatible"
    );
}

#[test]
fn invalid_schemas_references_and_validation() {
    let (_dir, log, views) = views();
    let meta = views.meta();
    let err = meta.register_schema("bad", json!({"type": 12})).unwrap_err();
    assert_eq!(err.code(), Some("invalid_schema"));
    assert_eq!(meta.register_schema("bad", json!("string")).unwrap_err().code(), Some("invalid_schema"));
    assert!(log.head().is_none(), "a rejected schema writes nothing");

    let with_ref =
        json!({"$defs": {"n": {"type": "string"}}, "type": "object", "properties": {"n": {"$ref": "#/$defs/n"}}});
    at(&views, meta.register_schema("refs", with_ref.clone()).unwrap().position.unwrap());
    let mut changed = with_ref.clone();
    changed["required"] = json!(["n"]);
    let err = meta.register_schema("refs", changed).unwrap_err();
    assert!(err.to_string().contains("$ref"), "{err}");

    at(&views, meta.register_schema("person", person_v1()).unwrap().position.unwrap());
    let ok = meta.validate("person", VersionSel::Latest, &json!({"name": "Ada"})).unwrap();
    assert!(ok.valid && ok.errors.is_empty());
    let bad = meta.validate("person", VersionSel::Number(1), &json!({"name": 7, "extra": true})).unwrap();
    assert!(!bad.valid);
    assert_eq!(bad.errors.len(), 2, "{:?}", bad.errors);
    assert!(bad.errors.iter().any(|e| e.starts_with("/name")), "{:?}", bad.errors);
    assert_eq!(meta.validate("nobody", VersionSel::Latest, &json!(1)).unwrap_err().code(), Some("subject_not_found"));
}

fn registration(tags: &[&str], ttl_ms: u64) -> InstanceRegistration {
    InstanceRegistration {
        endpoints: vec!["http://10.0.0.1:8080".into()],
        tags: tags.iter().map(|t| t.to_string()).collect(),
        capabilities: vec!["summarize".into()],
        ttl_ms,
    }
}

#[test]
fn services_register_heartbeat_expire_and_deregister() {
    let (_dir, _log, views) = views();
    let meta = views.meta();
    meta.register_instance("search", "i-1", registration(&["gpu", "eu"], 10_000)).unwrap();
    meta.register_instance("search", "i-2", registration(&["eu"], 10_000)).unwrap();
    let p = meta.register_instance("embed", "i-1", registration(&["gpu"], 10_000)).unwrap();
    at(&views, p);
    let names = |found: Vec<projections::ServiceInstance>| {
        found.into_iter().map(|i| format!("{}/{}", i.service, i.instance)).collect::<Vec<_>>()
    };
    let now = projections::now_ms();
    assert_eq!(names(meta.discover(Some("search"), None, now)), vec!["search/i-1", "search/i-2"]);
    assert_eq!(names(meta.discover(None, Some("gpu"), now)), vec!["embed/i-1", "search/i-1"]);
    assert_eq!(names(meta.discover(Some("search"), Some("gpu"), now)), vec!["search/i-1"]);
    let first = meta.discover(Some("search"), Some("gpu"), now).remove(0);
    assert_eq!(first.endpoints, vec!["http://10.0.0.1:8080".to_string()]);
    // Health comes from the last heartbeat's event time plus the TTL.
    let deadline = first.heartbeat_ms + first.ttl_ms;
    assert_eq!(meta.discover(Some("search"), Some("gpu"), deadline - 1).len(), 1);
    assert!(meta.discover(Some("search"), Some("gpu"), deadline).is_empty());
    // A heartbeat moves it on and keeps the first registration time.
    let p = meta.register_instance("search", "i-1", registration(&["gpu", "eu"], 10_000)).unwrap();
    at(&views, p);
    let beat = meta.discover(Some("search"), Some("gpu"), now).remove(0);
    assert_eq!(beat.registered_ms, first.registered_ms);
    assert!(beat.heartbeat_ms >= first.heartbeat_ms && beat.position > first.position);

    let p = meta.deregister_instance("search", "i-2").unwrap();
    at(&views, p);
    assert_eq!(names(meta.discover(Some("search"), None, now)), vec!["search/i-1"]);
    assert_eq!(meta.deregister_instance("search", "i-2").unwrap_err().code(), Some("instance_not_found"));
    assert_eq!(meta.register_instance("s", "i", registration(&[], 0)).unwrap_err().code(), Some("invalid_input"));
}

#[test]
fn configuration_versions_history_and_as_of() {
    let (_dir, _log, views) = views();
    let meta = views.meta();
    let w1 = meta.set_config(None, "db/pool", json!(10)).unwrap();
    let w2 = meta.set_config(None, "db/pool", json!(20)).unwrap();
    let w3 = meta.set_config(Some("prod"), "db/pool", json!(50)).unwrap();
    assert_eq!((w1.version, w2.version, w3.version), (1, 2, 1), "versions count per scope and key");
    at(&views, w3.position);
    assert_eq!(meta.config(None, "db/pool", AsOf::Latest).unwrap().value, Some(json!(20)));
    assert_eq!(meta.config(Some("global"), "db/pool", AsOf::Version(1)).unwrap().value, Some(json!(10)));
    assert_eq!(meta.config(Some("prod"), "db/pool", AsOf::Latest).unwrap().value, Some(json!(50)));
    let history = meta.config_history(None, "db/pool").unwrap();
    assert_eq!(history.iter().map(|v| v.version).collect::<Vec<_>>(), vec![1, 2]);
    let t1 = history[0].timestamp_ms;
    assert_eq!(
        meta.config(None, "db/pool", AsOf::Time(t1)).unwrap().version,
        if history[1].timestamp_ms == t1 { 2 } else { 1 }
    );
    assert_eq!(meta.config(None, "db/pool", AsOf::Time(t1 - 1)).unwrap_err().code(), Some("config_not_found"));
    assert_eq!(meta.config(None, "db/pool", AsOf::Version(9)).unwrap_err().code(), Some("config_not_found"));

    let d = meta.delete_config(None, "db/pool").unwrap();
    assert_eq!(d.version, 3);
    at(&views, d.position);
    assert_eq!(meta.config(None, "db/pool", AsOf::Latest).unwrap_err().code(), Some("config_not_found"));
    assert_eq!(meta.config(None, "db/pool", AsOf::Version(2)).unwrap().value, Some(json!(20)), "history survives");
    assert_eq!(meta.config_history(None, "db/pool").unwrap().len(), 3);
    assert_eq!(meta.delete_config(None, "db/pool").unwrap_err().code(), Some("config_not_found"));
    assert_eq!(meta.config_keys(Some("prod")), vec!["db/pool".to_string()]);
    assert!(meta.config_keys(None).is_empty());
    assert_eq!(meta.set_config(Some("a:b"), "k", json!(1)).unwrap_err().code(), Some("invalid_input"));
}

#[test]
fn relationships_neighbours_and_bounded_traversal() {
    let (_dir, _log, views) = views();
    let meta = views.meta();
    // a -calls-> b -calls-> c -calls-> d, c -calls-> a (a cycle), b -owns-> x
    for (from, to, kind) in
        [("a", "b", "calls"), ("b", "c", "calls"), ("c", "d", "calls"), ("c", "a", "calls"), ("b", "x", "owns")]
    {
        meta.relate(from, to, kind, Some(json!({"weight": 1}))).unwrap();
    }
    caught_up(&views);
    let edges = |entity: &str, dir, kind: Option<&str>, depth| {
        let t = meta.relations(entity, dir, kind, depth).unwrap();
        assert!(!t.truncated);
        t.edges
            .into_iter()
            .map(|h| {
                format!("{}{}{}@{}", h.relation.from, h.relation.kind.chars().next().unwrap(), h.relation.to, h.depth)
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(edges("b", EdgeDirection::Out, None, 1), vec!["bcc@1", "box@1"]);
    assert_eq!(edges("b", EdgeDirection::In, None, 1), vec!["acb@1"]);
    assert_eq!(edges("b", EdgeDirection::Both, None, 1), vec!["bcc@1", "box@1", "acb@1"]);
    assert_eq!(edges("a", EdgeDirection::Out, Some("calls"), 2), vec!["acb@1", "bcc@2"]);
    assert_eq!(
        edges("a", EdgeDirection::Out, Some("calls"), RELATION_DEPTH_MAX),
        vec!["acb@1", "bcc@2", "cca@3", "ccd@3"],
        "breadth first, each edge once; the cycle back to a ends the walk"
    );
    let t = meta.relations("a", EdgeDirection::Out, None, 1).unwrap();
    assert_eq!(t.edges[0].relation.properties, json!({"weight": 1}));
    assert_eq!(serde_json::to_value(&t.edges[0]).unwrap()["type"], "calls");

    caught_up(&views);
    let p = meta.unrelate("b", "c", "calls").unwrap();
    at(&views, p);
    assert_eq!(edges("a", EdgeDirection::Out, None, 3), vec!["acb@1", "box@2"]);
    assert_eq!(edges("c", EdgeDirection::In, None, 1), Vec::<String>::new());
    assert_eq!(meta.unrelate("b", "c", "calls").unwrap_err().code(), Some("relation_not_found"));
    assert_eq!(meta.relations("a", EdgeDirection::Out, None, 0).unwrap_err().code(), Some("invalid_input"));
    assert_eq!(
        meta.relations("a", EdgeDirection::Out, None, RELATION_DEPTH_MAX + 1).unwrap_err().code(),
        Some("invalid_input")
    );
    assert_eq!(meta.relate("a", "b", "calls", Some(json!([1]))).unwrap_err().code(), Some("invalid_input"));
}

#[test]
fn events_on_the_wrong_stream_are_recorded_not_applied() {
    let (_dir, log, views) = views();
    let bad = log
        .append(
            "meta:config:global:other",
            ExpectedVersion::Any,
            vec![NewEvent::json("meta.config.set", &json!({"scope": "global", "key": "k", "value": 1}))],
        )
        .unwrap();
    at(&views, bad.last_position);
    assert_eq!(views.meta().config(None, "k", AsOf::Latest).unwrap_err().code(), Some("config_not_found"));
    let status = views.status();
    assert!(
        status.recent_errors[0].message.contains("belongs on stream meta:config:global:k"),
        "{:?}",
        status.recent_errors
    );
}
