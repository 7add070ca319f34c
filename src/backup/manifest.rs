//! The backup manifest: what one backup holds, where it ends in the log and the digest of
//! every file, so that a restore proves the copy complete and untampered before trusting it.
//!
//! Layout under a backup's prefix (every object is immutable: its key carries its digest, so an
//! incremental backup writes only keys that are missing, and an older manifest stays valid):
//!
//! ```text
//! segments/<segment file name>.<blake3 hex>      a sealed segment whole, or the active one's
//!                                                durable prefix ending at a batch boundary
//! checkpoints/<checkpoint file name>.<blake3 hex>
//! manifests/<head position, 20 digits>-<created unix ms, 13 digits>.json
//! ```
//!
//! The newest manifest (the greatest key) is the backup. A manifest is JSON:
//! `{"format": 1, "created_ms", "head": {"position", "hash"} | null, "segments": [{"name",
//! "key", "bytes", "capacity", "sealed", "blake3"}], "checkpoints": [{"name", "key", "bytes",
//! "blake3"}]}`.

use serde::{Deserialize, Serialize};

/// The manifest format this build writes and reads.
pub const MANIFEST_FORMAT: u32 = 1;
/// The folder of manifests under a backup's prefix.
pub const MANIFESTS: &str = "manifests";
/// The folder of segment objects.
pub const SEGMENTS: &str = "segments";
/// The folder of checkpoint objects.
pub const CHECKPOINTS: &str = "checkpoints";
/// The longest file name a manifest may name (a segment's or checkpoint's is 25 bytes).
pub const FILE_NAME_LEN_MAX: usize = 64;
/// The largest manifest a restore reads (a manifest names about 200 bytes per file).
pub const MANIFEST_BYTES_MAX: u64 = 64 << 20;

/// One backup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: u32,
    pub created_ms: u64,
    /// The last event the backup holds and the chain hash there; null for an empty log.
    pub head: Option<ManifestHead>,
    pub segments: Vec<SegmentEntry>,
    pub checkpoints: Vec<FileEntry>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestHead {
    pub position: u64,
    /// 64 hex digits.
    pub hash: String,
}

/// A segment: `bytes` of content (its object), restored into a file of `capacity` bytes with
/// zeros after the content.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentEntry {
    pub name: String,
    pub key: String,
    pub bytes: u64,
    pub capacity: u64,
    pub sealed: bool,
    pub blake3: String,
}

/// A checkpoint file, restored as it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    pub name: String,
    pub key: String,
    pub bytes: u64,
    pub blake3: String,
}

/// The object key of a file named `name` in `folder` whose content has `digest`.
pub fn object_key(folder: &str, name: &str, digest: &blake3::Hash) -> String {
    format!("{folder}/{name}.{}", digest.to_hex())
}

/// The key of the manifest of a backup ending at `head` (none: an empty log), made at `created_ms`.
pub fn manifest_key(head: Option<u64>, created_ms: u64) -> String {
    format!("{MANIFESTS}/{:020}-{created_ms:013}.json", head.unwrap_or(0))
}

impl Manifest {
    /// Parses and checks a manifest read from `key`: its format, and that every name is a plain
    /// file name and every key the one its name and digest give (so a manifest cannot make a
    /// restore write outside its target, or read objects it does not vouch for).
    pub fn decode(bytes: &[u8]) -> Result<Manifest, String> {
        let manifest: Manifest = serde_json::from_slice(bytes).map_err(|e| format!("it is not a manifest: {e}"))?;
        if manifest.format != MANIFEST_FORMAT {
            return Err(format!("its format is {}, and this build reads format {MANIFEST_FORMAT}", manifest.format));
        }
        let files = manifest
            .segments
            .iter()
            .map(|s| (SEGMENTS, &s.name, &s.key, &s.blake3))
            .chain(manifest.checkpoints.iter().map(|c| (CHECKPOINTS, &c.name, &c.key, &c.blake3)));
        for (folder, name, key, digest) in files {
            check_name(name)?;
            let digest =
                blake3::Hash::from_hex(digest).map_err(|_| format!("the digest of {name} is not 64 hex digits"))?;
            if *key != object_key(folder, name, &digest) {
                return Err(format!("the key of {name} is {key}, not the one its name and digest give"));
            }
        }
        for s in &manifest.segments {
            if s.bytes > s.capacity {
                return Err(format!("segment {} has {} bytes, more than its capacity {}", s.name, s.bytes, s.capacity));
            }
        }
        if let Some(head) = &manifest.head {
            blake3::Hash::from_hex(&head.hash).map_err(|_| "its head hash is not 64 hex digits".to_string())?;
        }
        Ok(manifest)
    }
}

fn check_name(name: &str) -> Result<(), String> {
    let plain = !name.is_empty()
        && name.len() <= FILE_NAME_LEN_MAX
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if plain {
        Ok(())
    } else {
        Err(format!("it names the file {name:?}, which is not a plain file name"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        let digest = blake3::hash(b"segment");
        Manifest {
            format: MANIFEST_FORMAT,
            created_ms: 1,
            head: Some(ManifestHead { position: 7, hash: blake3::hash(b"h").to_hex().to_string() }),
            segments: vec![SegmentEntry {
                name: "00000000000000000000.seg".into(),
                key: object_key(SEGMENTS, "00000000000000000000.seg", &digest),
                bytes: 7,
                capacity: 100,
                sealed: false,
                blake3: digest.to_hex().to_string(),
            }],
            checkpoints: vec![],
        }
    }

    #[test]
    fn a_manifest_round_trips() {
        let m = sample();
        assert_eq!(Manifest::decode(&serde_json::to_vec(&m).unwrap()).unwrap(), m);
    }

    #[test]
    fn names_that_leave_the_target_and_keys_that_disagree_are_refused() {
        let mut m = sample();
        m.segments[0].name = "../../etc/passwd".into();
        assert!(Manifest::decode(&serde_json::to_vec(&m).unwrap()).unwrap_err().contains("plain file name"));
        let mut m = sample();
        m.segments[0].key = "segments/other".into();
        assert!(Manifest::decode(&serde_json::to_vec(&m).unwrap()).unwrap_err().contains("key"));
        let mut m = sample();
        m.format = 2;
        assert!(Manifest::decode(&serde_json::to_vec(&m).unwrap()).unwrap_err().contains("format"));
    }

    #[test]
    fn manifest_keys_sort_by_head_then_time() {
        assert!(manifest_key(Some(9), 5) < manifest_key(Some(10), 1));
        assert!(manifest_key(None, 1) < manifest_key(Some(0), 2));
    }
}
