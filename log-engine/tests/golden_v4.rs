//! The format version 4 golden fixture (`fixtures/golden-v4/`): a small encrypted log, its key
//! (`cairn.key`, the key-encryption key in its text form) and its key store (`keys`), written
//! by the code of format version 4 and scavenged (husks of encrypted events), with one stream
//! shredded, committed with what was true of it when it was written (`expected.json`). Today's
//! code must open it with the key and find exactly that; without the key `verify` passes and a
//! payload read says it needs the key.
//!
//! The fixture is frozen: today's code writes version 5, so `CAIRN_GOLDEN_WRITE` cannot write it
//! again (the version check fails); the test only reads. The test is shared with version 5
//! (`common/golden_encrypted.rs`).

mod common;

use common::golden_encrypted::{check, Fixture};

#[test]
fn todays_code_reads_the_version_4_fixture() {
    check(&Fixture { dir: "golden-v4", version: 4, flags: None, id_base: 0x904d_0000 });
}
