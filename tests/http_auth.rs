//! Auth against the real binary: bearer tokens from a TOML file of hashes, per-principal rules
//! on stream-name prefixes, deny by default, 401 for no or unknown tokens, 403 for a principal
//! without the permission (appends, reads, subscriptions, verify, metrics). And the rule that
//! without `--auth` the server refuses a non-loopback address unless told otherwise.

mod support;

use serde_json::json;
use support::{cairn, Server};

const AGENT: &str = "agent-token-1";
const READER: &str = "reader-token-2";
const OPS: &str = "ops-token-3";
const NOBODY: &str = "nobody-token-4";

fn hash_line(token: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = cairn(dir.path(), &["token", "--hash", token]);
    assert_eq!(code, 0, "{err}");
    out.trim().to_string()
}

fn auth_server(dir: &std::path::Path) -> Server {
    let file = format!(
        "[[principal]]\nname = \"agent\"\n{}\nrules = [{{ prefix = \"agent-\", allow = [\"read\", \"append\"] }}]\n\n\
         [[principal]]\nname = \"reader\"\n{}\nrules = [{{ prefix = \"\", allow = [\"read\"] }}]\n\n\
         [[principal]]\nname = \"ops\"\n{}\nrules = [{{ prefix = \"\", allow = [\"admin\"] }}]\n\n\
         [[principal]]\nname = \"nobody\"\n{}\n",
        hash_line(AGENT),
        hash_line(READER),
        hash_line(OPS),
        hash_line(NOBODY)
    );
    let path = dir.join("auth.toml");
    std::fs::write(&path, file).unwrap();
    Server::start(&dir.join("data"), &["--auth", path.to_str().unwrap()])
}

#[test]
fn tokens_and_prefix_rules_decide_every_request() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = auth_server(dir.path());
    let event = json!({"events": [{"type": "T"}]});

    // No token, a malformed one, an unknown one: 401, nothing written.
    let (status, body) = server.post("/v1/streams/agent-1/events", &event);
    assert_eq!((status, body["error"].as_str()), (401, Some("unauthorized")), "{body}");
    server.set_token(Some("not-a-token"));
    assert_eq!(server.post("/v1/streams/agent-1/events", &event).0, 401);

    server.set_token(Some(AGENT));
    assert_eq!(server.post("/v1/streams/agent-1/events", &event).0, 200);
    let (status, body) = server.post("/v1/streams/billing/events", &event);
    assert_eq!((status, body["error"].as_str()), (403, Some("forbidden")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("agent"), "the message names the principal: {body}");
    let (status, _) = server.post(
        "/v1/append",
        &json!({"appends": [
            {"stream": "agent-2", "events": [{"type": "T"}]},
            {"stream": "billing", "events": [{"type": "T"}]}
        ]}),
    );
    assert_eq!(status, 403, "one forbidden stream refuses the whole atomic append");
    assert_eq!(server.get("/v1/streams/agent-1/events").0, 200);
    assert_eq!(server.get("/v1/events?stream_prefix=agent-").0, 200);
    assert_eq!(server.get("/v1/events").0, 403, "the whole log needs a rule with prefix \"\"");
    assert_eq!(server.get("/v1/streams").0, 403);
    assert_eq!(server.get("/v1/streams?prefix=agent-").0, 200);
    assert_eq!(server.get("/v1/head").0, 200);
    assert_eq!(server.get("/v1/subscribe?from=end&stream=billing").0, 403);
    assert_eq!(server.get("/v1/subscribe?from=end").0, 403);
    assert_eq!(server.post("/v1/verify", &json!({})).0, 403);
    assert_eq!(server.get("/metrics").0, 403);

    server.set_token(Some(OPS));
    assert_eq!(server.post("/v1/streams/billing/events", &event).0, 200, "admin implies append");
    assert_eq!(server.post("/v1/verify", &json!({})).0, 200);
    assert_eq!(server.get_text("/metrics").0, 200);

    server.set_token(Some(READER));
    assert_eq!(server.post("/v1/streams/agent-1/events", &event).0, 403);
    let (status, page) = server.get("/v1/events");
    assert_eq!(status, 200);
    // The log also holds the server's access audit ($audit:authorization): the denials above.
    let appended =
        page["events"].as_array().unwrap().iter().filter(|e| !e["stream"].as_str().unwrap().starts_with('$'));
    assert_eq!(appended.count(), 2, "only the permitted appends were written");
    let mut sse = server.subscribe("from=0", None);
    assert_eq!(sse.next().unwrap().id.as_deref(), Some("0"));
    assert_eq!(server.get("/v1/events/1").0, 200);

    server.set_token(Some(NOBODY));
    assert_eq!(server.get("/v1/head").0, 403, "a principal without rules may do nothing");
    assert_eq!(server.get("/v1/streams/agent-1/events").0, 403);

    // Unauthenticated endpoints.
    server.set_token(None);
    assert_eq!(server.get("/healthz").0, 200);
    assert_eq!(server.get("/openapi.json").0, 200);
}

#[test]
fn views_and_checkpoints_are_authorised_by_their_stream_names() {
    let dir = tempfile::tempdir().unwrap();
    let token = "sessions-token";
    let file = format!(
        "[[principal]]\nname = \"sessions\"\n{}\nrules = [\n  {{ prefix = \"kv:session/\", allow = [\"read\", \"append\"] }},\n  \
         {{ prefix = \"audit:agent_activity\", allow = [\"append\"] }},\n]\n\n\
         [[principal]]\nname = \"ops\"\n{}\nrules = [{{ prefix = \"\", allow = [\"admin\"] }}]\n",
        hash_line(token),
        hash_line(OPS)
    );
    let path = dir.path().join("auth.toml");
    std::fs::write(&path, file).unwrap();
    let server = Server::start(&dir.path().join("data"), &["--auth", path.to_str().unwrap()]).with_token(Some(token));
    let put = |key: &str| server.request(reqwest::Method::PUT, &format!("/v1/kv/{key}"), Some(&json!({"value": 1})));
    let (status, written) = put("session%2F1");
    assert_eq!(status, 200);
    assert_eq!(put("billing").0, 403);
    assert_eq!(server.get(&format!("/v1/kv/session%2F1?min_position={}", written["position"])).0, 200);
    assert_eq!(server.get("/v1/kv?prefix=session/").0, 200);
    assert_eq!(server.get("/v1/kv").0, 403, "listing every key needs read on kv:");
    assert_eq!(server.post("/v1/kv/session%2F1/incr", &json!({})).0, 200);
    assert_eq!(server.post("/v1/kv:get", &json!({"keys": ["session/1", "billing"]})).0, 403);
    let activity =
        json!({"level": "info", "category": "agent_activity", "event": "e", "actor": {"type": "agent", "id": "a"}});
    let security =
        json!({"level": "info", "category": "security", "event": "e", "actor": {"type": "agent", "id": "a"}});
    assert_eq!(server.post("/v1/audit", &activity).0, 200);
    assert_eq!(server.post("/v1/audit", &security).0, 403);
    assert_eq!(server.get("/v1/audit").0, 403, "appending audit entries does not grant reading them");
    assert_eq!(server.post("/v1/checkpoints", &json!({})).0, 403);
    assert_eq!(server.get("/v1/checkpoints").0, 403);
    let server = server.with_token(Some(OPS));
    assert_eq!(server.post("/v1/checkpoints", &json!({})).0, 200);
    assert_eq!(server.get("/v1/audit").0, 200);
}

#[test]
fn without_auth_only_loopback_is_allowed_unless_told_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = cairn(&dir.path().join("data"), &["serve", "--listen", "0.0.0.0:0"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("refusing to listen on 0.0.0.0:0 without --auth"), "{err}");
    assert!(!dir.path().join("data").exists(), "nothing was opened");
}

#[test]
fn a_bad_auth_file_stops_the_server_with_a_located_message() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("auth.toml");
    std::fs::write(&path, "[[principal]]\nname = \"a\"\ntoken_hash = \"plain-text\"\n").unwrap();
    let (code, _, err) =
        cairn(&dir.path().join("data"), &["serve", "--listen", "127.0.0.1:0", "--auth", path.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("auth.toml") && err.contains("token_hash of principal \"a\""), "{err}");
}

/// Issue 14 item 6: reading an event by position must not leak across tenants. Before, a
/// principal reading another tenant's position got a 403 naming that tenant's stream, and the
/// 403-vs-404 difference told it which positions exist. Now "someone else's event" and "no
/// event" are the same 404, naming neither the stream nor the head.
#[test]
fn a_denied_read_by_position_reveals_neither_the_stream_nor_the_position() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = auth_server(dir.path());
    server.set_token(Some(OPS));
    let secret = server.append("billing-acme-secret", &[("T", json!({}))]);
    assert_eq!(secret["first_position"], 0);
    server.set_token(Some(AGENT));
    let own = server.append("agent-1", &[("T", json!({}))]);
    assert_eq!(own["first_position"], 1);

    let (status, event) = server.get("/v1/events/1");
    assert_eq!((status, event["stream"].as_str()), (200, Some("agent-1")), "its own event: {event}");
    let (denied_status, denied) = server.get("/v1/events/0");
    let (missing_status, missing) = server.get("/v1/events/2");
    assert_eq!((denied_status, missing_status), (404, 404), "{denied} {missing}");
    assert_eq!(denied["error"], "position_not_found");
    assert!(!denied.to_string().contains("billing"), "the answer names the other tenant's stream: {denied}");
    let normalise = |v: &serde_json::Value| v["message"].as_str().unwrap().replace("position 0", "position 2");
    assert_eq!(normalise(&denied), missing["message"].as_str().unwrap(), "the two answers differ");

    // A principal that may read the whole log still gets the precise answers.
    server.set_token(Some(READER));
    assert_eq!(server.get("/v1/events/0").0, 200);
    assert_eq!(server.get("/v1/events/2").0, 404);
    // One without any read permission is refused before anything is looked up.
    server.set_token(Some(NOBODY));
    assert_eq!(server.get("/v1/events/0").0, 403);
    assert_eq!(server.get("/v1/events/2").0, 403);
}
