//! The `cairn` binary: CLI and HTTP server over the embedded store.

fn main() {
    println!("cairn");
}
