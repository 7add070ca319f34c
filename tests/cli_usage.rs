//! The command line's own surface: help with examples, usage errors (exit 2), and `cairn token`.

mod support;

use support::cairn;

#[test]
fn help_shows_examples_for_the_tool_and_each_command() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, _) = cairn(dir.path(), &["--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("Examples:") && out.contains("cairn demo"), "{out}");
    assert!(out.contains("Exit codes"), "{out}");
    for command in
        ["append", "read", "read-all", "tail", "streams", "head", "verify", "stats", "serve", "demo", "token"]
    {
        let (code, out, err) = cairn(dir.path(), &[command, "--help"]);
        assert_eq!(code, 0, "{command}: {err}");
        assert!(out.contains("Examples:"), "{command} --help has examples: {out}");
    }
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    for args in [&["frobnicate"][..], &["read"], &["read-all", "--limit", "many"], &["-o", "yaml", "head"]] {
        let (code, _, err) = cairn(dir.path(), args);
        assert_eq!(code, 2, "{args:?}: {err}");
    }
}

#[test]
fn token_makes_distinct_tokens_with_their_hash_lines() {
    let dir = tempfile::tempdir().unwrap();
    let (_, a, _) = cairn(dir.path(), &["token", "-o", "json"]);
    let (_, b, _) = cairn(dir.path(), &["token", "-o", "json"]);
    let a: serde_json::Value = serde_json::from_str(&a).unwrap();
    let b: serde_json::Value = serde_json::from_str(&b).unwrap();
    assert_ne!(a["token"], b["token"]);
    let (_, line, _) = cairn(dir.path(), &["token", "--hash", a["token"].as_str().unwrap()]);
    assert_eq!(line.trim(), format!("token_hash = \"{}\"", a["token_hash"].as_str().unwrap()));
}
