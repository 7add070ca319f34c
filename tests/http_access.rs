//! The access audit and token administration against the real binary with `--auth`: every
//! denied request leaves exactly one entry in `$audit:authorization` (found with `GET
//! /v1/audit?category=authorization`), and so does every admin action; appended events carry
//! the server-written `$principal`, which a client cannot forge; tokens added, changed and
//! revoked through `/v1/admin/tokens` take effect on the next request, are stored as hashes on
//! `$auth:tokens` and survive a restart; SIGHUP reloads the auth file, and a bad one changes
//! nothing; deny rules win over allow rules, and `list` is separate from `read`.

mod support;

use serde_json::{json, Value};
use support::{cairn, hangup, wait_for_log, Server};

const OPS: &str = "ops-token-1";
const AGENT: &str = "agent-token-2";
const LISTER: &str = "lister-token-3";

fn hash_line(token: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = cairn(dir.path(), &["token", "--hash", token]);
    assert_eq!(code, 0, "{err}");
    out.trim().to_string()
}

fn auth_file(extra: &str) -> String {
    format!(
        "[[principal]]\nname = \"ops\"\n{}\nrules = [{{ prefix = \"\", allow = [\"admin\"] }}]\n\n\
         [[principal]]\nname = \"agent\"\n{}\nrules = [{{ prefix = \"agent-\", allow = [\"read\", \"append\"] }}, \
         {{ prefix = \"agent-secret\", deny = [\"read\"] }}]\n\n\
         [[principal]]\nname = \"lister\"\n{}\nrules = [{{ prefix = \"\", allow = [\"list\"] }}]\n{extra}",
        hash_line(OPS),
        hash_line(AGENT),
        hash_line(LISTER),
    )
}

fn start(dir: &std::path::Path) -> Server {
    let path = dir.join("auth.toml");
    if !path.exists() {
        std::fs::write(&path, auth_file("")).unwrap();
    }
    Server::start(&dir.join("data"), &["--auth", path.to_str().unwrap()])
}

/// The server's authorization entries (as ops), once the view has caught up with the log.
fn access_entries(server: &mut Server) -> Vec<Value> {
    server.set_token(Some(OPS));
    let (status, head) = server.get("/v1/head");
    assert_eq!(status, 200, "{head}");
    let (status, page) =
        server.get(&format!("/v1/audit?category=authorization&order=asc&limit=1000&min_position={}", head["position"]));
    assert_eq!(status, 200, "{page}");
    page["entries"].as_array().unwrap().iter().filter(|e| e["stream"] == "$audit:authorization").cloned().collect()
}

#[test]
fn every_denied_request_and_every_admin_action_leaves_exactly_one_entry() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path());
    let event = json!({"events": [{"type": "T"}]});
    server.set_token(None);
    assert_eq!(server.post("/v1/streams/agent-1/events", &event).0, 401);
    server.set_token(Some("not-a-token"));
    assert_eq!(server.get("/v1/streams/agent-1/events").0, 401);
    server.set_token(Some(AGENT));
    assert_eq!(server.post("/v1/streams/billing/events", &event).0, 403);
    assert_eq!(server.get("/v1/streams/agent-secret-1/events").0, 403, "the deny rule wins");
    assert_eq!(server.post("/v1/verify", &json!({})).0, 403);
    assert_eq!(server.post("/v1/streams/agent-1/events", &event).0, 200, "allowed: not audited");
    server.set_token(Some(OPS));
    assert_eq!(server.post("/v1/verify", &json!({})).0, 200);

    let entries = access_entries(&mut server);
    let summary: Vec<(String, String, String, String)> = entries
        .iter()
        .map(|e| {
            (
                e["event"].as_str().unwrap().to_string(),
                e["actor"]["id"].as_str().unwrap().to_string(),
                e["target"]["id"].as_str().unwrap().to_string(),
                e["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let row = |event: &str, who: &str, what: &str, outcome: &str| {
        (event.to_string(), who.to_string(), what.to_string(), outcome.to_string())
    };
    assert_eq!(
        summary,
        vec![
            row("access.denied", "anonymous", "/v1/streams/agent-1/events", "denied"),
            row("access.denied", "anonymous", "/v1/streams/agent-1/events", "denied"),
            row("access.denied", "agent", "/v1/streams/billing/events", "denied"),
            row("access.denied", "agent", "/v1/streams/agent-secret-1/events", "denied"),
            row("access.denied", "agent", "/v1/verify", "denied"),
            row("admin.action", "ops", "/v1/verify", "success"),
        ]
    );
    let denied = &entries[2];
    assert_eq!(denied["metadata"]["operation"], "POST /v1/streams/{stream}/events");
    assert_eq!(denied["metadata"]["status"], 403);
    assert!(denied["metadata"]["reason"].as_str().unwrap().contains("may not append"), "{denied}");
    assert!(denied["timestamp"].as_u64().unwrap() > 0);
    assert!(!entries[1].to_string().contains("not-a-token"), "a presented token is never recorded");

    // The stream is reserved: no client writes it, even with admin.
    let (status, body) = server.post("/v1/streams/$audit:authorization/events", &event);
    assert_eq!(status, 400, "{body}");
    let (status, body) = server.get_text("/metrics");
    assert_eq!(status, 200);
    assert!(body.contains("cairn_access_audit_entries_total 6"), "{body}");
}

#[test]
fn appended_events_carry_the_servers_principal_which_a_client_cannot_forge() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path());
    server.set_token(Some(AGENT));
    let body = json!({"events": [{"type": "T", "metadata": {"run": 1.50, "x": {"$principal": "nested is data"}}}]});
    assert_eq!(server.post("/v1/streams/agent-1/events", &body).0, 200);
    let (status, read) = server.get("/v1/streams/agent-1/events");
    assert_eq!(status, 200, "{read}");
    assert_eq!(
        read["events"][0]["metadata"],
        json!({"$principal": "agent", "run": 1.50, "x": {"$principal": "nested is data"}})
    );

    let forged = json!({"events": [{"type": "T", "metadata": {"$principal": "ops"}}]});
    let (status, err) = server.post("/v1/streams/agent-1/events", &forged);
    assert_eq!((status, err["error"].as_str()), (400, Some("reserved_metadata")), "{err}");
    let (status, err) = server.post(
        "/v1/append",
        &json!({"appends": [{"stream": "agent-2", "events": [{"type": "T", "metadata": {"$principal": "ops"}}]}]}),
    );
    assert_eq!((status, err["error"].as_str()), (400, Some("reserved_metadata")), "{err}");
    let (_, read) = server.get("/v1/streams/agent-1/events");
    assert_eq!(read["events"].as_array().unwrap().len(), 1, "the forged append wrote nothing");
}

#[test]
fn tokens_changed_through_the_api_take_effect_on_the_next_request_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path());
    let event = json!({"events": [{"type": "T"}]});
    server.set_token(Some(AGENT));
    assert_eq!(server.post("/v1/admin/tokens", &json!({"name": "x"})).0, 403, "admin only");

    server.set_token(Some(OPS));
    let (status, created) = server
        .post("/v1/admin/tokens", &json!({"name": "bot", "rules": [{"prefix": "bot-", "allow": ["append", "read"]}]}));
    assert_eq!(status, 200, "{created}");
    let bot = created["token"].as_str().unwrap().to_string();
    let (status, err) = server.post("/v1/admin/tokens", &json!({"name": "agent"}));
    assert_eq!((status, err["error"].as_str()), (409, Some("principal_exists")), "{err}");
    let (status, err) = server.request(reqwest::Method::DELETE, "/v1/admin/tokens/agent", None);
    assert_eq!((status, err["error"].as_str()), (409, Some("principal_from_file")), "{err}");

    server.set_token(Some(&bot));
    assert_eq!(server.post("/v1/streams/bot-1/events", &event).0, 200);
    assert_eq!(server.post("/v1/streams/agent-1/events", &event).0, 403);

    // New rules: a deny on bot-locked; the very next request is decided by them.
    server.set_token(Some(OPS));
    let rules = json!({"rules": [{"prefix": "bot-", "allow": ["append", "read"]}, {"prefix": "bot-locked", "deny": ["append"]}]});
    assert_eq!(server.request(reqwest::Method::PUT, "/v1/admin/tokens/bot", Some(&rules)).0, 200);
    server.set_token(Some(&bot));
    assert_eq!(server.post("/v1/streams/bot-locked/events", &event).0, 403);
    assert_eq!(server.post("/v1/streams/bot-2/events", &event).0, 200);

    // A second token, kept over the restart; the first revoked before it.
    server.set_token(Some(OPS));
    let (_, kept) =
        server.post("/v1/admin/tokens", &json!({"name": "kept", "rules": [{"prefix": "", "allow": ["read"]}]}));
    let kept = kept["token"].as_str().unwrap().to_string();
    let (status, list) = server.get("/v1/admin/tokens");
    assert_eq!(status, 200, "{list}");
    let names: Vec<(&str, &str)> = list["principals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap(), p["source"].as_str().unwrap()))
        .collect();
    assert_eq!(names, vec![("ops", "file"), ("agent", "file"), ("lister", "file"), ("bot", "api"), ("kept", "api")]);
    assert!(!list.to_string().contains("blake3:"), "no hash is listed");
    assert_eq!(server.request(reqwest::Method::DELETE, "/v1/admin/tokens/bot", None).0, 200);
    server.set_token(Some(&bot));
    assert_eq!(server.post("/v1/streams/bot-3/events", &event).0, 401, "revoked: refused on the next request");

    // The token stream holds hashes, never tokens, each change stamped with the admin.
    server.set_token(Some(OPS));
    let (status, stream) = server.get("/v1/streams/%24auth%3Atokens/events");
    assert_eq!(status, 200, "{stream}");
    let text = stream.to_string();
    assert!(!text.contains(&bot) && !text.contains(&kept), "no token is stored");
    let types: Vec<&str> = stream["events"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["token.added", "token.rules_changed", "token.added", "token.revoked"]);
    assert!(stream["events"].as_array().unwrap().iter().all(|e| e["metadata"]["$principal"] == "ops"));
    let outcomes: Vec<Value> = access_entries(&mut server)
        .iter()
        .filter(|e| e["event"] == "admin.action")
        .map(|e| e["outcome"].clone())
        .collect();
    assert_eq!(
        outcomes,
        ["success", "failure", "failure", "success", "success", "success"],
        "every token change is in the access audit, the refused ones too"
    );

    let status = server.stop();
    assert!(status.success());
    let mut server = start(dir.path());
    server.set_token(Some(&kept));
    assert_eq!(server.get("/v1/streams/bot-1/events").0, 200, "an API token outlives a restart");
    server.set_token(Some(&bot));
    assert_eq!(server.get("/v1/streams/bot-1/events").0, 401, "and so does a revocation");
}

#[test]
fn sighup_reloads_the_auth_file_and_a_bad_file_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path());
    const NEW: &str = "new-token-9";
    server.set_token(Some(NEW));
    assert_eq!(server.get("/v1/head").0, 401);
    let extra = format!(
        "\n[[principal]]\nname = \"new\"\n{}\nrules = [{{ prefix = \"\", allow = [\"read\"] }}]\n",
        hash_line(NEW)
    );
    std::fs::write(dir.path().join("auth.toml"), auth_file(&extra)).unwrap();
    hangup(&server);
    wait_for_log(&server, "auth file reloaded", 1);
    assert_eq!(server.get("/v1/head").0, 200, "the new principal is known without a restart");

    std::fs::write(dir.path().join("auth.toml"), "[[principal]]\nname = \"broken\"\n").unwrap();
    hangup(&server);
    wait_for_log(&server, "auth file NOT reloaded", 1);
    assert_eq!(server.get("/v1/head").0, 200, "a bad file leaves the principals as they were");
    assert!(server.stderr().contains("auth.toml"), "the log names the file");
}

#[test]
fn list_is_separate_from_read() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path());
    server.set_token(Some(OPS));
    server.append("agent-1", &[("T", json!({}))]);
    server.set_token(Some(LISTER));
    let (status, streams) = server.get("/v1/streams");
    assert_eq!(status, 200, "{streams}");
    assert_eq!(streams["streams"][0]["stream"], "agent-1");
    assert_eq!(server.get("/v1/streams/agent-1/events").0, 403, "list does not grant read");
}

/// Issue 20: the key-value, audit and metadata endpoints wrote their events without
/// `$principal`, so who set a key or registered a schema was not on record. Every event those
/// views append carries the principal that asked, as log appends do.
#[test]
fn key_value_audit_and_metadata_writes_carry_the_principal() {
    let dir = tempfile::tempdir().unwrap();
    let writer = "writer-token-4";
    std::fs::write(
        dir.path().join("auth.toml"),
        auth_file(&format!(
            "\n[[principal]]\nname = \"writer\"\n{}\nrules = [{{ prefix = \"\", allow = [\"read\", \"append\"] }}]\n",
            hash_line(writer)
        )),
    )
    .unwrap();
    let mut server = start(dir.path());
    server.set_token(Some(writer));
    let put = reqwest::Method::PUT;
    for (method, path, body) in [
        (put.clone(), "/v1/kv/session-1", json!({"value": {"step": 1}})),
        (reqwest::Method::POST, "/v1/kv/visits/incr", json!({"delta": 2})),
        (reqwest::Method::POST, "/v1/kv:txn", json!({"ops": [{"op": "set", "key": "k2", "value": 1}]})),
        (
            reqwest::Method::POST,
            "/v1/audit",
            json!({"level": "info", "category": "agent_activity", "event": "tool.called", "actor": {"type": "agent", "id": "a7"}}),
        ),
        (put.clone(), "/v1/meta/config/retries", json!({"value": 3})),
        (reqwest::Method::POST, "/v1/meta/schemas/orders/versions", json!({"schema": {"type": "object"}})),
        (
            put,
            "/v1/meta/services/search/instances/i-1",
            json!({"endpoints": ["10.0.0.7:80"], "tags": [], "capabilities": [], "ttl_ms": 60_000}),
        ),
    ] {
        let (status, answer) = server.request(method.clone(), path, Some(&body));
        assert_eq!(status, 200, "{method} {path}: {answer}");
    }

    let (status, page) = server.get("/v1/events?from=0&limit=1000");
    assert_eq!(status, 200, "{page}");
    let written: Vec<(String, Value)> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["stream"].as_str().unwrap().to_string(), e["metadata"].clone()))
        .collect();
    let streams: std::collections::BTreeSet<&str> = written.iter().map(|(s, _)| s.split(':').next().unwrap()).collect();
    assert_eq!(streams.into_iter().collect::<Vec<_>>(), ["audit", "kv", "meta"], "{written:?}");
    for (stream, metadata) in &written {
        assert_eq!(metadata, &json!({"$principal": "writer"}), "the event on {stream}");
    }
}

/// Issue 20: an admin appending to a view's stream with `allow_reserved=true` (repair work that
/// bypasses the view's checks) left no trace beyond the event. Each such append, single or
/// multi-stream, is an admin action with its own entry; one refused to a non-admin is a denial,
/// recorded once; an ordinary append is not audited.
#[test]
fn every_allow_reserved_append_leaves_one_admin_entry() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path());
    let event = json!({"events": [{"type": "Repaired", "data": {}}]});
    server.set_token(Some(OPS));
    assert_eq!(server.post("/v1/streams/agent-1/events", &event).0, 200, "ordinary: not audited");
    let (status, body) = server.post("/v1/streams/kv%3Arepaired/events?allow_reserved=true", &event);
    assert_eq!(status, 200, "{body}");
    let multi = json!({"appends": [{"stream": "meta:config:global:x", "events": [{"type": "Repaired", "data": {}}]}]});
    let (status, body) = server.post("/v1/append?allow_reserved=true", &multi);
    assert_eq!(status, 200, "{body}");
    server.set_token(Some(AGENT));
    assert_eq!(server.post("/v1/streams/kv%3Aagent-1/events?allow_reserved=true", &event).0, 403);

    let entries = access_entries(&mut server);
    let summary: Vec<(&str, &str, &str, &str)> = entries
        .iter()
        .map(|e| {
            (
                e["event"].as_str().unwrap(),
                e["actor"]["id"].as_str().unwrap(),
                e["metadata"]["operation"].as_str().unwrap(),
                e["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("admin.action", "ops", "POST /v1/streams/{stream}/events?allow_reserved=true", "success"),
            ("admin.action", "ops", "POST /v1/append?allow_reserved=true", "success"),
            ("access.denied", "agent", "POST /v1/streams/{stream}/events?allow_reserved=true", "denied"),
        ]
    );
    assert_eq!(entries[0]["target"]["id"], "/v1/streams/kv%3Arepaired/events");
    server.set_token(Some(OPS));
    let (_, read) = server.get("/v1/streams/kv%3Arepaired/events");
    assert_eq!(read["events"][0]["metadata"], json!({"$principal": "ops"}), "{read}");
}
