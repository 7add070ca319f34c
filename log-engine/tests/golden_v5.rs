//! The format version 5 golden fixture (`fixtures/golden-v5/`): a small encrypted log, its key
//! (`cairn.key`, the key-encryption key in its text form) and its key store (`keys`), written
//! by the code of format version 5 (every segment header flagged encrypted) and scavenged
//! (husks of encrypted events), with one stream
//! shredded, committed with what was true of it when it was written (`expected.json`). Today's
//! code must open it with the key and find exactly that; without the key `verify` passes and a
//! payload read says it needs the key.
//!
//! `CAIRN_GOLDEN_WRITE=1 cargo test -p log-engine --test golden_v5` writes the fixture afresh
//! (only when the format version changes); without it the test only reads.

mod common;

use common::golden_encrypted::{check, Fixture};

#[test]
fn todays_code_reads_the_version_5_fixture() {
    check(&Fixture { dir: "golden-v5", version: 5, flags: Some(1), id_base: 0x905d_0000 });
}
