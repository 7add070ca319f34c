//! The on-disk encoding of one checkpoint file: pure encode and decode, no I/O.
//!
//! A checkpoint file (`DIR/checkpoints/<sequence, 20 digits>.ckpt`) is, little-endian
//! (docs/checkpoint-format.md is the full specification):
//!
//! | offset | size | field |
//! |-------:|-----:|-------|
//! | 0 | 8 | magic `CAIRNCKP` |
//! | 8 | 4 | format version: 1, or 2 for a checkpoint of an encrypted log |
//! | 12 | 4 | manifest length `m` (at most [`MANIFEST_LEN_MAX`]) |
//! | 16 | 32 | checkpoint hash = BLAKE3(manifest bytes) |
//! | 48 | m | manifest: MessagePack ([`Manifest`]) |
//! | 48 + m | c | content: snappy (raw block) of MessagePack ([`ProjectionContent`] list); in version 2 sealed with XChaCha20-Poly1305 (tag last) |
//!
//! Invariants the decoder enforces, so that every byte of a file is covered by a check: the
//! magic and version are exact; the stored hash equals BLAKE3 of exactly `m` manifest bytes;
//! the manifest's `compressed_len` equals the bytes after it (so the file has no slack);
//! BLAKE3 of the content equals the manifest's `content_digest`; the decompressed length,
//! read from the snappy preamble and bounded by [`CONTENT_RAW_MAX`] before anything is
//! allocated, equals `raw_len`; and the decoded content names the manifest's projections in
//! the same order with the same counts. Hashes are checked before bytes are decoded, so the
//! MessagePack decoder only ever sees bytes this crate wrote. A version 2 content is opened
//! (authenticated and decrypted with the log's key store) after its digest is checked and
//! before anything is decompressed; its associated data ([`associated_data`]) binds it to the
//! checkpoint's sequence, kind, position, log chain hash and parent, so content moved into
//! another checkpoint fails to open even when the manifest around it is rewritten.
//!
//! This module does not read files, check the chain between checkpoints, or compare against
//! the log: store.rs and restore.rs do.

use log_engine::{CheckpointSeal, Keyring};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

/// First bytes of every checkpoint file.
pub const MAGIC: [u8; 8] = *b"CAIRNCKP";
/// The format of a checkpoint of an unencrypted log (this build writes it byte for byte as
/// builds before encryption did).
pub const FORMAT_VERSION: u32 = 1;
/// The format of a checkpoint of an encrypted log: the manifest gains `sealed`, the content is
/// sealed with the log's key store.
pub const FORMAT_VERSION_SEALED: u32 = 2;
/// Bytes of the nonce a sealed content names.
pub const NONCE_LEN: usize = 24;
/// Bytes the seal adds to a content (the AEAD tag).
pub const SEAL_TAG_LEN: u64 = 16;
/// What a sealed content's associated data starts with.
const SEALED_CONTEXT: &[u8] = b"cairn checkpoint content v2";

const MAGIC_AT: usize = 0;
const VERSION_AT: usize = MAGIC_AT + MAGIC.len();
const MANIFEST_LEN_AT: usize = VERSION_AT + 4;
const HASH_AT: usize = MANIFEST_LEN_AT + 4;
/// Fixed header before the manifest.
pub const HEADER_LEN: usize = HASH_AT + 32;
const _: () = assert!(HEADER_LEN == 48);

/// Largest manifest, in bytes; a longer length field is rejected before anything is read.
pub const MANIFEST_LEN_MAX: usize = 1 << 20;
/// Largest decompressed content, in bytes (one snappy block; snappy's own limit is 4 GiB).
pub const CONTENT_RAW_MAX: u64 = 1 << 31;
/// Most bytes one byte of snappy data can expand to: the densest element is a 3-byte copy of
/// 64 bytes (ratio 21⅓). A preamble announcing more than `compressed length × this` is a lie,
/// refused before the decoder allocates for it.
pub const SNAPPY_EXPANSION_MAX: u64 = 22;
/// Largest compressed content: snappy's worst case for [`CONTENT_RAW_MAX`], and a seal's tag.
pub const CONTENT_COMPRESSED_MAX: u64 = 32 + CONTENT_RAW_MAX + CONTENT_RAW_MAX / 6 + SEAL_TAG_LEN;
/// Largest checkpoint file.
pub const FILE_LEN_MAX: u64 = HEADER_LEN as u64 + MANIFEST_LEN_MAX as u64 + CONTENT_COMPRESSED_MAX;
/// Most projections in one checkpoint.
pub const PROJECTIONS_MAX: usize = 1024;
/// Longest projection name, in UTF-8 bytes.
pub const PROJECTION_NAME_LEN_MAX: usize = 128;
const _: () = assert!(CONTENT_COMPRESSED_MAX < u32::MAX as u64, "one snappy block must hold the content");

/// `kind` byte of a full checkpoint. Zero is not a kind, so zero-filled bytes never decode.
pub const KIND_FULL: u8 = 1;
/// `kind` byte of an incremental checkpoint.
pub const KIND_INCREMENTAL: u8 = 2;

/// The parent hash of a checkpoint that has no parent: BLAKE3 of `cairn/checkpoint/genesis/v1`.
pub fn genesis_hash() -> [u8; 32] {
    *blake3::hash(b"cairn/checkpoint/genesis/v1").as_bytes()
}

/// The manifest, as stored (MessagePack array, fields in this order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Manifest {
    pub sequence: u64,
    pub kind: u8,
    /// The last log position the state includes.
    pub position: u64,
    /// The log's chain hash at `position`.
    #[serde(with = "serde_bytes")]
    pub log_hash: [u8; 32],
    /// Sequence of the parent checkpoint; `None` only with the genesis parent hash.
    pub parent: Option<u64>,
    #[serde(with = "serde_bytes")]
    pub parent_hash: [u8; 32],
    /// Wall-clock time of writing, unix milliseconds (informational).
    pub created_ms: u64,
    /// Sorted by name, names unique.
    pub projections: Vec<ProjectionManifest>,
    /// BLAKE3 of the compressed content bytes.
    #[serde(with = "serde_bytes")]
    pub content_digest: [u8; 32],
    pub raw_len: u64,
    pub compressed_len: u64,
    /// How the content is sealed: present exactly in format version 2 (absent, the manifest is
    /// version 1's 11 fields).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<Sealed>,
}

/// A sealed content's key generation and nonce (manifest field 11).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Sealed {
    pub generation: u32,
    #[serde(with = "serde_bytes")]
    pub nonce: [u8; NONCE_LEN],
}

/// One projection's line in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ProjectionManifest {
    pub name: String,
    /// The projection's state digest at `position`, after this checkpoint is applied.
    #[serde(with = "serde_bytes")]
    pub digest: [u8; 32],
    /// Entries stored (all of them in a full checkpoint, the changed ones in an incremental).
    pub upserts: u64,
    /// Keys removed since the parent (always 0 in a full checkpoint).
    pub removals: u64,
}

/// One projection's part of the content. A full checkpoint stores every entry as an upsert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ProjectionContent {
    pub name: String,
    /// Sorted by key, keys unique.
    pub upserts: Vec<(ByteBuf, ByteBuf)>,
    /// Sorted, unique.
    pub removals: Vec<ByteBuf>,
}

/// Why bytes are not a valid checkpoint. Each variant names the check that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    #[error("the file is {len} bytes, shorter than the {HEADER_LEN}-byte header")]
    ShortHeader { len: u64 },
    #[error("bad magic (not a cairn checkpoint file)")]
    Magic,
    #[error("format version {found}; this build reads versions {FORMAT_VERSION} and {FORMAT_VERSION_SEALED}")]
    Version { found: u32 },
    #[error(
        "the checkpoint is encrypted: reading its content needs the log's key (--key-file, CAIRN_KEY_FILE or CAIRN_KEY) and key store"
    )]
    KeyRequired,
    #[error("content does not open: {0}")]
    Seal(String),
    #[error("manifest length {len} exceeds the maximum {MANIFEST_LEN_MAX}")]
    ManifestTooLong { len: u64 },
    #[error("the file is {len} bytes, too short for its {manifest_len}-byte manifest")]
    ShortManifest { len: u64, manifest_len: u64 },
    #[error("the file is {len} bytes, more than the maximum {FILE_LEN_MAX}")]
    FileTooLong { len: u64 },
    #[error("manifest hash mismatch")]
    ManifestHash,
    #[error("manifest does not decode: {0}")]
    ManifestDecode(String),
    #[error("invalid manifest: {0}")]
    ManifestInvalid(String),
    #[error("content is {actual} bytes, the manifest says {expected}")]
    ContentLength { expected: u64, actual: u64 },
    #[error("content digest mismatch")]
    ContentDigest,
    #[error("content decompresses to {actual} bytes, the manifest says {expected} (at most {CONTENT_RAW_MAX})")]
    RawLength { expected: u64, actual: u64 },
    #[error("content does not decompress: {0}")]
    Decompress(String),
    #[error("content does not decode: {0}")]
    ContentDecode(String),
    #[error("content does not match its manifest: {0}")]
    ContentMismatch(String),
    #[error("the content is {len} bytes uncompressed, more than the maximum {CONTENT_RAW_MAX}")]
    ContentTooLarge { len: u64 },
    #[error("the manifest is {len} bytes, more than the maximum {MANIFEST_LEN_MAX}")]
    ManifestTooLarge { len: u64 },
    #[error(
        "the content claims to decompress to {raw_len} bytes, more than its {compressed_len} compressed bytes can hold (at most {SNAPPY_EXPANSION_MAX} per byte)"
    )]
    Expansion { raw_len: u64, compressed_len: u64 },
}

/// The fixed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub version: u32,
    pub manifest_len: usize,
    pub hash: [u8; 32],
}

/// An encoded checkpoint file.
#[derive(Debug)]
pub(crate) struct Encoded {
    pub bytes: Vec<u8>,
    pub manifest: Manifest,
    pub hash: [u8; 32],
}

/// Encodes a checkpoint. `manifest`'s `content_digest`, `raw_len` and `compressed_len` are
/// filled in here; its projections must line up with `content` (asserted: a mismatch is a bug
/// in the caller, not bad input).
/// With `keys` (an encrypted log's key store) the content is sealed and the file is version 2.
pub(crate) fn encode(
    mut manifest: Manifest,
    content: &[ProjectionContent],
    keys: Option<&Keyring>,
) -> Result<Encoded, FormatError> {
    assert_eq!(manifest.projections.len(), content.len(), "one manifest line per projection");
    for (m, c) in manifest.projections.iter().zip(content) {
        assert_eq!(m.name, c.name, "manifest and content list projections in the same order");
        assert_eq!((m.upserts, m.removals), (c.upserts.len() as u64, c.removals.len() as u64));
    }
    let raw = rmp_serde::to_vec(content).expect("content always serializes");
    if raw.len() as u64 > CONTENT_RAW_MAX {
        return Err(FormatError::ContentTooLarge { len: raw.len() as u64 });
    }
    let mut compressed = snap::raw::Encoder::new().compress_vec(&raw).expect("length checked against CONTENT_RAW_MAX");
    manifest.raw_len = raw.len() as u64;
    manifest.sealed = None;
    if let Some(keys) = keys {
        let seal = keys
            .seal_checkpoint(&associated_data(&manifest), &mut compressed)
            .map_err(|e| FormatError::Seal(e.to_string()))?;
        manifest.sealed = Some(Sealed { generation: seal.generation, nonce: seal.nonce });
    }
    manifest.content_digest = *blake3::hash(&compressed).as_bytes();
    manifest.compressed_len = compressed.len() as u64;
    validate_manifest(&manifest).map_err(FormatError::ManifestInvalid)?;
    let manifest_bytes = rmp_serde::to_vec(&manifest).expect("a manifest always serializes");
    let manifest_len = u32::try_from(manifest_bytes.len())
        .ok()
        .filter(|&len| len as usize <= MANIFEST_LEN_MAX)
        .ok_or(FormatError::ManifestTooLarge { len: manifest_bytes.len() as u64 })?;
    let hash = *blake3::hash(&manifest_bytes).as_bytes();
    let mut bytes = Vec::with_capacity(HEADER_LEN + manifest_bytes.len() + compressed.len());
    bytes.extend_from_slice(&MAGIC);
    let version = if manifest.sealed.is_some() { FORMAT_VERSION_SEALED } else { FORMAT_VERSION };
    bytes.extend_from_slice(&version.to_le_bytes());
    bytes.extend_from_slice(&manifest_len.to_le_bytes());
    bytes.extend_from_slice(&hash);
    debug_assert_eq!(bytes.len(), HEADER_LEN);
    bytes.extend_from_slice(&manifest_bytes);
    bytes.extend_from_slice(&compressed);
    Ok(Encoded { bytes, manifest, hash })
}

/// Decodes the fixed header of a file that is `file_len` bytes long.
pub(crate) fn decode_header(bytes: &[u8], file_len: u64) -> Result<Header, FormatError> {
    if bytes.len() < HEADER_LEN || file_len < HEADER_LEN as u64 {
        return Err(FormatError::ShortHeader { len: file_len.min(bytes.len() as u64) });
    }
    if bytes[MAGIC_AT..VERSION_AT] != MAGIC {
        return Err(FormatError::Magic);
    }
    let version = u32::from_le_bytes(bytes[VERSION_AT..MANIFEST_LEN_AT].try_into().expect("4 bytes"));
    if version != FORMAT_VERSION && version != FORMAT_VERSION_SEALED {
        return Err(FormatError::Version { found: version });
    }
    if file_len > FILE_LEN_MAX {
        return Err(FormatError::FileTooLong { len: file_len });
    }
    let manifest_len = u64::from(u32::from_le_bytes(bytes[MANIFEST_LEN_AT..HASH_AT].try_into().expect("4 bytes")));
    if manifest_len > MANIFEST_LEN_MAX as u64 {
        return Err(FormatError::ManifestTooLong { len: manifest_len });
    }
    if HEADER_LEN as u64 + manifest_len > file_len {
        return Err(FormatError::ShortManifest { len: file_len, manifest_len });
    }
    let mut hash = [0u8; 32];
    hash.copy_from_slice(&bytes[HASH_AT..HEADER_LEN]);
    let manifest_len = usize::try_from(manifest_len).map_err(|_| FormatError::ManifestTooLong { len: manifest_len })?;
    Ok(Header { version, manifest_len, hash })
}

/// Checks the manifest bytes against the header's hash, decodes and validates them, and
/// checks that the content that follows has the manifest's length.
pub(crate) fn decode_manifest(header: &Header, manifest_bytes: &[u8], file_len: u64) -> Result<Manifest, FormatError> {
    assert_eq!(manifest_bytes.len(), header.manifest_len, "caller reads exactly the manifest");
    if *blake3::hash(manifest_bytes).as_bytes() != header.hash {
        return Err(FormatError::ManifestHash);
    }
    let manifest: Manifest =
        rmp_serde::from_slice(manifest_bytes).map_err(|e| FormatError::ManifestDecode(e.to_string()))?;
    validate_manifest(&manifest).map_err(FormatError::ManifestInvalid)?;
    if (header.version == FORMAT_VERSION_SEALED) != manifest.sealed.is_some() {
        return Err(FormatError::ManifestInvalid(format!(
            "a version {} manifest {} a seal",
            header.version,
            if manifest.sealed.is_some() { "has" } else { "lacks" }
        )));
    }
    let actual = file_len - (HEADER_LEN + header.manifest_len) as u64;
    if actual != manifest.compressed_len {
        return Err(FormatError::ContentLength { expected: manifest.compressed_len, actual });
    }
    Ok(manifest)
}

/// Checks and decodes the content bytes (everything after the manifest); a sealed content is
/// opened with `keys` once its digest is checked.
pub(crate) fn decode_content(
    manifest: &Manifest,
    stored: &[u8],
    keys: Option<&Keyring>,
) -> Result<Vec<ProjectionContent>, FormatError> {
    if stored.len() as u64 != manifest.compressed_len {
        return Err(FormatError::ContentLength { expected: manifest.compressed_len, actual: stored.len() as u64 });
    }
    if *blake3::hash(stored).as_bytes() != manifest.content_digest {
        return Err(FormatError::ContentDigest);
    }
    let opened;
    let compressed = match &manifest.sealed {
        None => stored,
        Some(sealed) => {
            let keys = keys.ok_or(FormatError::KeyRequired)?;
            let mut content = stored.to_vec();
            let seal = CheckpointSeal { generation: sealed.generation, nonce: sealed.nonce };
            keys.open_checkpoint(&seal, &associated_data(manifest), &mut content).map_err(FormatError::Seal)?;
            opened = content;
            opened.as_slice()
        }
    };
    // The preamble states the decompressed size; bound it before allocating for it.
    let raw_len = snap::raw::decompress_len(compressed).map_err(|e| FormatError::Decompress(e.to_string()))? as u64;
    if raw_len != manifest.raw_len || raw_len > CONTENT_RAW_MAX {
        return Err(FormatError::RawLength { expected: manifest.raw_len, actual: raw_len });
    }
    // The decoder allocates the announced length up front: a few bytes must not claim 2 GiB.
    if raw_len > (compressed.len() as u64).saturating_mul(SNAPPY_EXPANSION_MAX) {
        return Err(FormatError::Expansion { raw_len, compressed_len: compressed.len() as u64 });
    }
    let raw =
        snap::raw::Decoder::new().decompress_vec(compressed).map_err(|e| FormatError::Decompress(e.to_string()))?;
    let content: Vec<ProjectionContent> =
        rmp_serde::from_slice(&raw).map_err(|e| FormatError::ContentDecode(e.to_string()))?;
    if content.len() != manifest.projections.len() {
        return Err(FormatError::ContentMismatch(format!(
            "{} projections in the content, {} in the manifest",
            content.len(),
            manifest.projections.len()
        )));
    }
    for (m, c) in manifest.projections.iter().zip(&content) {
        if m.name != c.name || m.upserts != c.upserts.len() as u64 || m.removals != c.removals.len() as u64 {
            return Err(FormatError::ContentMismatch(format!(
                "the manifest lists {} with {} upserts and {} removals, the content has {} with {} and {}",
                m.name,
                m.upserts,
                m.removals,
                c.name,
                c.upserts.len(),
                c.removals.len()
            )));
        }
        if !strictly_sorted(c.upserts.iter().map(|(k, _)| k.as_slice()))
            || !strictly_sorted(c.removals.iter().map(|k| k.as_slice()))
        {
            return Err(FormatError::ContentMismatch(format!("keys of projection {} are not sorted", c.name)));
        }
    }
    Ok(content)
}

/// Decodes a whole checkpoint file held in memory, with every check of [`decode_header`],
/// [`decode_manifest`] and [`decode_content`] (not the file-name check, which needs a name).
/// Returns the number of projections and of keys decoded. An entry point for the fuzz target
/// `checkpoint_load`; not part of the API.
#[doc(hidden)]
pub fn decode_file_for_fuzzing(bytes: &[u8]) -> Result<(usize, usize), FormatError> {
    let len = bytes.len() as u64;
    let header = decode_header(bytes, len)?;
    let manifest_end = HEADER_LEN + header.manifest_len;
    let manifest = decode_manifest(&header, &bytes[HEADER_LEN..manifest_end], len)?;
    let content = decode_content(&manifest, &bytes[manifest_end..], None)?;
    let keys = content.iter().map(|c| c.upserts.len() + c.removals.len()).sum();
    Ok((content.len(), keys))
}

/// What a sealed content is bound to: its checkpoint's sequence, kind and position, the log's
/// chain hash there, its parent and the parent's hash, and its decompressed length. Content
/// moved into another checkpoint (or a manifest rewritten around it) does not open.
pub(crate) fn associated_data(m: &Manifest) -> Vec<u8> {
    let mut ad = Vec::with_capacity(SEALED_CONTEXT.len() + 8 + 1 + 8 + 32 + 8 + 32 + 8);
    ad.extend_from_slice(SEALED_CONTEXT);
    ad.extend_from_slice(&m.sequence.to_le_bytes());
    ad.push(m.kind);
    ad.extend_from_slice(&m.position.to_le_bytes());
    ad.extend_from_slice(&m.log_hash);
    ad.extend_from_slice(&m.parent.unwrap_or(u64::MAX).to_le_bytes());
    ad.extend_from_slice(&m.parent_hash);
    ad.extend_from_slice(&m.raw_len.to_le_bytes());
    ad
}

/// Keys in strictly increasing order (sorted, no duplicates).
pub(crate) fn strictly_sorted<'a>(mut keys: impl Iterator<Item = &'a [u8]>) -> bool {
    let Some(mut prev) = keys.next() else { return true };
    for key in keys {
        if key <= prev {
            return false;
        }
        prev = key;
    }
    true
}

/// Field rules that do not depend on the file around the manifest.
fn validate_manifest(m: &Manifest) -> Result<(), String> {
    match m.kind {
        KIND_FULL => {
            if let Some(p) = m.projections.iter().find(|p| p.removals != 0) {
                return Err(format!("full checkpoint lists {} removals for projection {}", p.removals, p.name));
            }
        }
        KIND_INCREMENTAL => {
            if m.parent.is_none() {
                return Err("an incremental checkpoint must name its parent".into());
            }
        }
        other => return Err(format!("unknown kind {other}")),
    }
    match m.parent {
        Some(parent) if parent >= m.sequence => {
            return Err(format!("parent {parent} is not older than sequence {}", m.sequence))
        }
        None if m.parent_hash != genesis_hash() => {
            return Err("a checkpoint without a parent must carry the genesis parent hash".into())
        }
        _ => {}
    }
    if m.projections.len() > PROJECTIONS_MAX {
        return Err(format!("{} projections, at most {PROJECTIONS_MAX}", m.projections.len()));
    }
    for p in &m.projections {
        if p.name.is_empty() || p.name.len() > PROJECTION_NAME_LEN_MAX {
            return Err(format!("projection name of {} bytes (1 to {PROJECTION_NAME_LEN_MAX})", p.name.len()));
        }
    }
    if !m.projections.windows(2).all(|w| w[0].name < w[1].name) {
        return Err("projections are not sorted by name or a name repeats".into());
    }
    if m.raw_len > CONTENT_RAW_MAX || m.compressed_len > CONTENT_COMPRESSED_MAX {
        return Err(format!("content sizes {} raw, {} compressed exceed the maximum", m.raw_len, m.compressed_len));
    }
    Ok(())
}

/// The file name of checkpoint `sequence`: zero-padded so that name order is sequence order.
pub(crate) fn file_name(sequence: u64) -> String {
    format!("{sequence:020}.ckpt")
}

/// Parses a checkpoint file name back to its sequence.
pub(crate) fn parse_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".ckpt")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn sample() -> (Manifest, Vec<ProjectionContent>) {
        let content = vec![
            ProjectionContent {
                name: "a".into(),
                upserts: vec![(ByteBuf::from(b"k1".to_vec()), ByteBuf::from(vec![1, 2, 3]))],
                removals: vec![ByteBuf::from(b"k0".to_vec())],
            },
            ProjectionContent { name: "b".into(), upserts: vec![], removals: vec![] },
        ];
        let manifest = Manifest {
            sequence: 7,
            kind: KIND_INCREMENTAL,
            position: 41,
            log_hash: [9; 32],
            parent: Some(6),
            parent_hash: [5; 32],
            created_ms: 1,
            projections: vec![
                ProjectionManifest { name: "a".into(), digest: [1; 32], upserts: 1, removals: 1 },
                ProjectionManifest { name: "b".into(), digest: [2; 32], upserts: 0, removals: 0 },
            ],
            content_digest: [0; 32],
            raw_len: 0,
            compressed_len: 0,
            sealed: None,
        };
        (manifest, content)
    }

    fn decode_all(bytes: &[u8]) -> Result<(Manifest, Vec<ProjectionContent>), FormatError> {
        let len = bytes.len() as u64;
        let header = decode_header(bytes, len)?;
        let m_end = HEADER_LEN + header.manifest_len;
        let manifest = decode_manifest(&header, &bytes[HEADER_LEN..m_end], len)?;
        let content = decode_content(&manifest, &bytes[m_end..], None)?;
        Ok((manifest, content))
    }

    #[test]
    fn round_trip() {
        let (manifest, content) = sample();
        let encoded = encode(manifest, &content, None).unwrap();
        let (m, c) = decode_all(&encoded.bytes).unwrap();
        assert_eq!(m, encoded.manifest);
        assert_eq!(c, content);
        assert_eq!(encoded.bytes.len() as u64, HEADER_LEN as u64 + (encoded.bytes.len() - HEADER_LEN) as u64);
    }

    #[test]
    fn every_flipped_bit_is_rejected() {
        let (manifest, content) = sample();
        let encoded = encode(manifest, &content, None).unwrap();
        for i in 0..encoded.bytes.len() {
            for bit in 0..8 {
                let mut b = encoded.bytes.clone();
                b[i] ^= 1 << bit;
                assert!(decode_all(&b).is_err(), "flipping bit {bit} of byte {i} went unnoticed");
            }
        }
    }

    #[test]
    fn truncations_and_extensions_are_rejected() {
        let (manifest, content) = sample();
        let encoded = encode(manifest, &content, None).unwrap();
        for len in 0..encoded.bytes.len() {
            assert!(decode_all(&encoded.bytes[..len]).is_err(), "truncation to {len} bytes went unnoticed");
        }
        let mut longer = encoded.bytes.clone();
        longer.push(0);
        assert!(decode_all(&longer).is_err());
    }

    #[test]
    fn a_huge_manifest_length_is_refused_before_reading() {
        let (manifest, content) = sample();
        let mut bytes = encode(manifest, &content, None).unwrap().bytes;
        bytes[MANIFEST_LEN_AT..HASH_AT].copy_from_slice(&u32::MAX.to_le_bytes());
        let err = decode_header(&bytes, bytes.len() as u64).unwrap_err();
        assert_eq!(err, FormatError::ManifestTooLong { len: u64::from(u32::MAX) });
    }

    #[test]
    fn a_lying_decompressed_length_is_refused_before_allocating() {
        let (mut manifest, _) = sample();
        // A snappy preamble claiming 3 GiB, followed by nothing.
        let mut compressed = Vec::new();
        let mut n: u64 = 3 << 30;
        while n >= 0x80 {
            // A varint: the low seven bits, then a continuation bit.
            compressed.push(n.to_le_bytes()[0] | 0x80);
            n >>= 7;
        }
        compressed.push(n.to_le_bytes()[0]);
        manifest.compressed_len = compressed.len() as u64;
        manifest.content_digest = *blake3::hash(&compressed).as_bytes();
        let err = decode_content(&manifest, &compressed, None).unwrap_err();
        assert!(matches!(err, FormatError::RawLength { actual, .. } if actual == 3 << 30), "{err}");
    }

    #[test]
    fn a_decompressed_length_beyond_what_the_bytes_can_hold_is_refused_before_allocating() {
        // A 5-byte content whose snappy preamble announces 1 GiB (under CONTENT_RAW_MAX), with
        // a manifest that agrees: the decoder would allocate 1 GiB before finding the data
        // missing (the checkpoint_load fuzz target's hash-sealing mode builds such inputs).
        let (mut manifest, _) = sample();
        let compressed = vec![0x80, 0x80, 0x80, 0x80, 0x04];
        assert_eq!(snap::raw::decompress_len(&compressed).unwrap(), 1 << 30);
        manifest.raw_len = 1 << 30;
        manifest.compressed_len = compressed.len() as u64;
        manifest.content_digest = *blake3::hash(&compressed).as_bytes();
        let err = decode_content(&manifest, &compressed, None).unwrap_err();
        assert_eq!(err, FormatError::Expansion { raw_len: 1 << 30, compressed_len: 5 });
        // The densest real content still decodes: 1 MiB of one repeated byte.
        let raw = vec![7u8; 1 << 20];
        let compressed = snap::raw::Encoder::new().compress_vec(&raw).unwrap();
        assert!((raw.len() as u64) <= compressed.len() as u64 * SNAPPY_EXPANSION_MAX, "{}", compressed.len());
    }

    #[test]
    fn the_fuzzing_entry_point_decodes_what_encode_wrote() {
        let (manifest, content) = sample();
        let encoded = encode(manifest, &content, None).unwrap();
        assert_eq!(decode_file_for_fuzzing(&encoded.bytes), Ok((2, 2)));
        assert_eq!(decode_file_for_fuzzing(&encoded.bytes[..47]), Err(FormatError::ShortHeader { len: 47 }));
    }

    /// The bytes of `sample()` as format version 1 writes them (docs/checkpoint-format.md walks
    /// through this file). A change here is a format change: bump FORMAT_VERSION.
    const FIXTURE_V1: &[u8] = include_bytes!("../tests/fixtures/v1/sample.ckpt");

    #[test]
    fn version_1_fixture_is_stable() {
        let (manifest, content) = sample();
        let encoded = encode(manifest, &content, None).unwrap();
        if std::env::var_os("SNAPSHOTTER_WRITE_FIXTURE").is_some() {
            std::fs::write(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/v1/sample.ckpt"), &encoded.bytes)
                .unwrap();
        }
        assert_eq!(encoded.bytes, FIXTURE_V1, "the encoding changed; that needs a new format version");
        let (m, c) = decode_all(FIXTURE_V1).unwrap();
        assert_eq!((m, c), (encoded.manifest, content));
        assert_eq!(&FIXTURE_V1[..8], b"CAIRNCKP");
        assert_eq!(FIXTURE_V1[HEADER_LEN], 0x9b, "the manifest is a MessagePack array of 11 fields");
    }

    /// `sample()` sealed as format version 2 writes it, with the key store beside it (opened
    /// with [`FIXTURE_V2_KEK`]). Nonces are random, so only reading is checked: a change that
    /// stops this build opening it is a format change.
    const FIXTURE_V2: &[u8] = include_bytes!("../tests/fixtures/v2/sample.ckpt");
    const FIXTURE_V2_KEK: &str = "6b6579206f6620746865206669787475726520666f722076657273696f6e2032";

    #[test]
    fn version_2_fixture_opens() {
        let dir = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/v2"));
        let kek = || log_engine::Kek::from_hex(FIXTURE_V2_KEK).unwrap();
        let (manifest, content) = sample();
        if std::env::var_os("SNAPSHOTTER_WRITE_FIXTURE").is_some() {
            let _ = std::fs::remove_file(dir.join("keys"));
            let keys = Keyring::open(dir.join("keys"), kek()).unwrap();
            std::fs::write(dir.join("sample.ckpt"), encode(manifest.clone(), &content, Some(&keys)).unwrap().bytes)
                .unwrap();
        }
        let keys = Keyring::open_read_only(dir.join("keys"), kek()).unwrap();
        assert_eq!(FIXTURE_V2[VERSION_AT..MANIFEST_LEN_AT], FORMAT_VERSION_SEALED.to_le_bytes());
        let (m, stored) = parts(FIXTURE_V2);
        assert_eq!(m.sealed.map(|s| s.generation), Some(1));
        assert_eq!((m.sequence, m.position, m.parent), (manifest.sequence, manifest.position, manifest.parent));
        assert_eq!(decode_content(&m, stored, Some(&keys)).unwrap(), content);
    }

    #[test]
    fn limits_fit_snappy() {
        assert_eq!(
            snap::raw::max_compress_len(usize::try_from(CONTENT_RAW_MAX).unwrap()) as u64 + SEAL_TAG_LEN,
            CONTENT_COMPRESSED_MAX
        );
    }

    #[test]
    fn file_names_sort_by_sequence() {
        assert_eq!(file_name(42), "00000000000000000042.ckpt");
        assert_eq!(parse_file_name(&file_name(u64::MAX)), Some(u64::MAX));
        assert_eq!(parse_file_name("42.ckpt"), None);
        assert_eq!(parse_file_name("00000000000000000042.ckpt.tmp"), None);
    }

    fn keyring() -> (tempfile::TempDir, std::sync::Arc<Keyring>) {
        let dir = tempfile::tempdir().unwrap();
        let keys = Keyring::open(dir.path().join(log_engine::KEY_STORE_FILE), log_engine::Kek::generate()).unwrap();
        (dir, keys)
    }

    /// Split a file into its manifest and its stored content.
    fn parts(bytes: &[u8]) -> (Manifest, &[u8]) {
        let header = decode_header(bytes, bytes.len() as u64).unwrap();
        let end = HEADER_LEN + header.manifest_len;
        (decode_manifest(&header, &bytes[HEADER_LEN..end], bytes.len() as u64).unwrap(), &bytes[end..])
    }

    /// A checkpoint of an encrypted log is version 2 with a 12-field manifest; its content holds
    /// none of the plain content's bytes, opens with the key store, and without it says so.
    #[test]
    fn a_sealed_checkpoint_round_trips_with_its_key_only() {
        let (_dir, keys) = keyring();
        let (manifest, content) = sample();
        let plain = encode(manifest.clone(), &content, None).unwrap();
        let sealed = encode(manifest, &content, Some(&keys)).unwrap();
        assert_eq!(sealed.bytes[VERSION_AT..MANIFEST_LEN_AT], FORMAT_VERSION_SEALED.to_le_bytes());
        assert_eq!(sealed.bytes[HEADER_LEN], 0x9c, "the manifest is a MessagePack array of 12 fields");
        let (_, plain_content) = parts(&plain.bytes);
        let (m, stored) = parts(&sealed.bytes);
        assert_eq!(m, sealed.manifest);
        assert_eq!(stored.len() as u64, plain_content.len() as u64 + SEAL_TAG_LEN);
        assert!(!sealed.bytes.windows(plain_content.len()).any(|w| w == plain_content));
        assert_eq!(decode_content(&m, stored, Some(&keys)).unwrap(), content);
        assert_eq!(decode_content(&m, stored, None), Err(FormatError::KeyRequired));
        assert!(matches!(decode_file_for_fuzzing(&sealed.bytes), Err(FormatError::KeyRequired)));
    }

    /// Content moved into another checkpoint does not open, even with the manifest around it
    /// rewritten to match it (its hash is no secret): the associated data binds the content to
    /// its own checkpoint's sequence, position, log hash and parent.
    #[test]
    fn sealed_content_moved_to_another_checkpoint_does_not_open() {
        let (_dir, keys) = keyring();
        let (manifest, content) = sample();
        let a = encode(manifest.clone(), &content, Some(&keys)).unwrap();
        let (a_manifest, a_stored) = parts(&a.bytes);
        for change in [
            |m: &mut Manifest| m.position += 1,
            |m: &mut Manifest| m.sequence += 1,
            |m: &mut Manifest| m.log_hash[0] ^= 1,
            |m: &mut Manifest| m.parent_hash[0] ^= 1,
            |m: &mut Manifest| m.parent = None,
        ] {
            let mut forged = a_manifest.clone();
            change(&mut forged);
            let err = decode_content(&forged, a_stored, Some(&keys)).unwrap_err();
            assert!(matches!(&err, FormatError::Seal(detail) if detail.contains("moved")), "{err}");
        }
        let mut damaged = a_stored.to_vec();
        damaged[3] ^= 1;
        let mut m = a_manifest.clone();
        m.content_digest = *blake3::hash(&damaged).as_bytes();
        assert!(matches!(decode_content(&m, &damaged, Some(&keys)), Err(FormatError::Seal(_))));
    }

    #[test]
    fn zero_kind_is_not_a_checkpoint() {
        let (mut manifest, content) = sample();
        manifest.kind = 0;
        assert!(matches!(encode(manifest, &content, None), Err(FormatError::ManifestInvalid(_))));
    }
}
