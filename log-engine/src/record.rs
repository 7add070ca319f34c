//! Record frames: pure encode and decode, no I/O, no `unsafe`. Decoding treats its input as
//! hostile (it comes from a file that may be damaged): every length is bounded before it sizes
//! anything, and snappy's claimed length is checked before a buffer is allocated.
//!
//! Frame layout (little-endian; see docs/format.md):
//!
//! | offset | size | field |
//! |-------:|-----:|-------|
//! | 0  | 4  | `crc`: CRC-32 (crc32fast) of [`CRC_SALT`] followed by bytes `4..frame_len` |
//! | 4  | 4  | `body_len` |
//! | 8  | 1  | `kind`: 1 event, 2 seal (footer), 3 ids, 4 husk, 5 encrypted event; 0 is never valid |
//! | 9  | 1  | `flags`: bit 0 body snappy-compressed, bit 1 last record of its batch, bit 2 binary data |
//! | 10 | 6  | reserved, zero |
//! | 16 | 8  | `position` (seal: last position of the segment) |
//! | 24 | 8  | `version` (seal: record count) |
//! | 32 | 8  | `timestamp_ms` |
//! | 40 | 8  | `watermark`: bytes of this segment already durable when this record was written |
//! | 48 | 32 | `hash`: chain hash at `position` |
//! | 80 | `body_len` | body, then zero padding to a multiple of 8 |

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::XNonce;

use crate::cast::usize_of;
use crate::error::{BodyDamage, CorruptionKind, Error, FrameDamage};
use crate::field::{contiguous, u32_in, u64_in, Field};
use crate::keys::{self, Keyring, RecordKey, StreamKey, NONCE_LEN, TAG_LEN};
use crate::types::{
    ChainHash, Event, EventRef, NewEvent, Position, SegmentId, StreamName, StreamVersion, EVENT_SIZE_MAX,
};

// The frame header's fields, in docs/format.md's order ("### Record frame").
const FRAME_CRC: Field = Field::first(4);
const FRAME_BODY_LEN: Field = FRAME_CRC.then(4);
const FRAME_KIND: Field = FRAME_BODY_LEN.then(1);
const FRAME_FLAGS: Field = FRAME_KIND.then(1);
const FRAME_RESERVED: Field = FRAME_FLAGS.then(6);
const FRAME_POSITION: Field = FRAME_RESERVED.then(8);
const FRAME_VERSION: Field = FRAME_POSITION.then(8);
const FRAME_TIMESTAMP: Field = FRAME_VERSION.then(8);
const FRAME_WATERMARK: Field = FRAME_TIMESTAMP.then(8);
const FRAME_HASH: Field = FRAME_WATERMARK.then(32);
const FRAME_FIELDS: [Field; 10] = [
    FRAME_CRC,
    FRAME_BODY_LEN,
    FRAME_KIND,
    FRAME_FLAGS,
    FRAME_RESERVED,
    FRAME_POSITION,
    FRAME_VERSION,
    FRAME_TIMESTAMP,
    FRAME_WATERMARK,
    FRAME_HASH,
];
/// Where a frame's kind byte lies.
pub(crate) const FRAME_KIND_AT: usize = FRAME_KIND.at;
/// The frame header; the body follows it.
pub(crate) const FRAME_HEADER_LEN: usize = FRAME_HASH.end();
pub(crate) const RECORD_ALIGN: usize = 8;
/// Mixed into every record CRC so that a zero-filled region never validates.
pub(crate) const CRC_SALT: [u8; 8] = *b"cairnREC";

pub(crate) const KIND_EVENT: u8 = 1;
pub(crate) const KIND_SEAL: u8 = 2;
/// A sealed segment's event ids, right after its seal record (segment.rs).
pub(crate) const KIND_IDS: u8 = 3;
/// An event whose payload a scavenge removed: its header and its payload digests, so that its
/// position stays taken and the chain still verifies through it (format version 3).
pub(crate) const KIND_HUSK: u8 = 4;
/// An event whose metadata and data are sealed with XChaCha20-Poly1305 (format version 4):
/// the header fields recovery and verify need stay readable, the payload needs the key.
pub(crate) const KIND_CIPHER: u8 = 5;

/// Whether a record of `kind` is an event with its payload (plain or encrypted).
pub(crate) fn is_event_kind(kind: u8) -> bool {
    kind == KIND_EVENT || kind == KIND_CIPHER
}

pub(crate) const FLAG_COMPRESSED: u8 = 1 << 0;
pub(crate) const FLAG_BATCH_END: u8 = 1 << 1;
pub(crate) const FLAG_DATA_BINARY: u8 = 1 << 2;
const FLAGS_KNOWN: u8 = FLAG_COMPRESSED | FLAG_BATCH_END | FLAG_DATA_BINARY;

/// Bodies at least this large are snappy-compressed when that makes them smaller.
pub(crate) const COMPRESS_THRESHOLD: usize = 4 * 1024;
/// Largest event body on disk: the event limit plus msgpack framing.
pub(crate) const EVENT_BODY_MAX: usize = EVENT_SIZE_MAX + 1024;

const _: () = assert!(contiguous(&FRAME_FIELDS, FRAME_HEADER_LEN) && FRAME_HEADER_LEN == 80);
const _: () = assert!(FRAME_HEADER_LEN.is_multiple_of(RECORD_ALIGN));
const _: () = assert!(EVENT_BODY_MAX < u32::MAX as usize);
// Seal and id records are never events, a husk is none of them, and BATCH_END is a real bit.
const _: () = assert!(KIND_SEAL != KIND_EVENT && KIND_IDS != KIND_EVENT && KIND_IDS != KIND_SEAL);
const _: () = assert!(KIND_HUSK != KIND_EVENT && KIND_HUSK != KIND_SEAL && KIND_HUSK != KIND_IDS && KIND_HUSK != 0);
const _: () = assert!(KIND_CIPHER > KIND_HUSK);
const _: () = assert!(FLAG_BATCH_END != 0);

/// The fixed part of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FrameHeader {
    pub kind: u8,
    pub flags: u8,
    pub position: u64,
    pub version: u64,
    pub timestamp_ms: u64,
    pub watermark: u64,
    pub hash: ChainHash,
}

/// A frame whose CRC and bounds checked out.
#[derive(Debug)]
pub(crate) struct Frame<'a> {
    pub header: FrameHeader,
    pub body: &'a [u8],
    /// Bytes the frame occupies, padding included.
    pub len: usize,
}

/// Why bytes at an offset are not a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// The header is all zeros: unwritten, preallocated space.
    Zero,
    /// Fewer bytes remain than the frame claims.
    Truncated,
    Kind(u8),
    Flags(u8),
    Length {
        len: u64,
        max: u64,
    },
    Crc {
        stored: u32,
        computed: u32,
    },
}

impl From<FrameError> for CorruptionKind {
    fn from(e: FrameError) -> CorruptionKind {
        CorruptionKind::RecordFrame(match e {
            FrameError::Crc { stored, computed } => return CorruptionKind::RecordCrc { stored, computed },
            FrameError::Zero => FrameDamage::Zero,
            FrameError::Truncated => FrameDamage::Truncated,
            FrameError::Kind(kind) => FrameDamage::Kind(kind),
            FrameError::Flags(flags) => FrameDamage::Flags(flags),
            FrameError::Length { len, max } => FrameDamage::BodyLength { len, max },
        })
    }
}

/// Body length of an already-validated frame at `offset`.
pub(crate) fn body_len_at(bytes: &[u8], offset: u64) -> usize {
    let at = usize_of(offset);
    u32_in(&bytes[at..at + FRAME_HEADER_LEN], FRAME_BODY_LEN) as usize
}

pub(crate) fn frame_len(body_len: usize) -> usize {
    (FRAME_HEADER_LEN + body_len).next_multiple_of(RECORD_ALIGN)
}

/// Appends one frame to `buf`, which must end on a record boundary.
pub(crate) fn encode_frame(buf: &mut Vec<u8>, header: &FrameHeader, body: &[u8]) {
    let start = buf.len();
    assert!(start.is_multiple_of(RECORD_ALIGN), "frame start {start} is not aligned");
    assert!(matches!(header.kind, KIND_EVENT | KIND_SEAL | KIND_IDS | KIND_HUSK | KIND_CIPHER), "kind {}", header.kind);
    assert!(header.kind != KIND_HUSK || header.flags & FLAG_COMPRESSED == 0, "a husk is never compressed");
    let len = frame_len(body.len());
    buf.reserve(len);
    buf.extend_from_slice(&[0; FRAME_CRC.len]);
    buf.extend_from_slice(&u32::try_from(body.len()).expect("body length bounded").to_le_bytes());
    buf.push(header.kind);
    buf.push(header.flags);
    buf.extend_from_slice(&[0; FRAME_RESERVED.len]);
    buf.extend_from_slice(&header.position.to_le_bytes());
    buf.extend_from_slice(&header.version.to_le_bytes());
    buf.extend_from_slice(&header.timestamp_ms.to_le_bytes());
    buf.extend_from_slice(&header.watermark.to_le_bytes());
    buf.extend_from_slice(&header.hash.0);
    debug_assert_eq!(buf.len() - start, FRAME_HEADER_LEN);
    buf.extend_from_slice(body);
    buf.resize(start + len, 0);
    let crc = frame_crc(&buf[start + FRAME_CRC.end()..start + len]);
    buf[start + FRAME_CRC.at..start + FRAME_CRC.end()].copy_from_slice(&crc.to_le_bytes());
}

/// CRC-32 of [`CRC_SALT`] alone, computed at compile time: a frame's CRC continues from it, so
/// the eight salt bytes are not hashed again for every record.
const CRC_OF_SALT: u32 = crc32_const(&CRC_SALT);

/// CRC-32 (IEEE, as crc32fast computes it; a test compares them), bit by bit, for constants.
const fn crc32_const(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    let mut i = 0;
    while i < bytes.len() {
        crc ^= bytes[i] as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
            bit += 1;
        }
        i += 1;
    }
    !crc
}

fn frame_crc(bytes_after_crc: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new_with_initial(CRC_OF_SALT);
    hasher.update(bytes_after_crc);
    hasher.finalize()
}

/// Decodes the frame at the start of `bytes` (which runs to the end of the usable region).
/// `body_max` bounds the body length before anything is sized by it.
pub(crate) fn decode_frame(bytes: &[u8], body_max: usize) -> Result<Frame<'_>, FrameError> {
    if bytes.len() < FRAME_HEADER_LEN {
        if bytes.iter().all(|&b| b == 0) {
            return Err(FrameError::Zero);
        }
        return Err(FrameError::Truncated);
    }
    let head = &bytes[..FRAME_HEADER_LEN];
    let kind = head[FRAME_KIND.at];
    if kind == 0 {
        if head.iter().all(|&b| b == 0) {
            return Err(FrameError::Zero);
        }
        return Err(FrameError::Kind(0));
    }
    if !matches!(kind, KIND_EVENT | KIND_SEAL | KIND_IDS | KIND_HUSK | KIND_CIPHER) {
        return Err(FrameError::Kind(kind));
    }
    let flags = head[FRAME_FLAGS.at];
    // A husk's body is a few dozen bytes: it is never compressed.
    let known = if kind == KIND_HUSK { FLAGS_KNOWN & !FLAG_COMPRESSED } else { FLAGS_KNOWN };
    if flags & !known != 0 || head[FRAME_RESERVED.range()].iter().any(|&b| b != 0) {
        return Err(FrameError::Flags(flags));
    }
    let body_len = u32_in(head, FRAME_BODY_LEN) as usize;
    if body_len > body_max {
        return Err(FrameError::Length { len: body_len as u64, max: body_max as u64 });
    }
    let len = frame_len(body_len);
    if len > bytes.len() {
        return Err(FrameError::Truncated);
    }
    let (stored, computed) = (u32_in(head, FRAME_CRC), frame_crc(&bytes[FRAME_CRC.end()..len]));
    if stored != computed {
        return Err(FrameError::Crc { stored, computed });
    }
    let mut hash = [0u8; 32];
    hash.copy_from_slice(&head[FRAME_HASH.range()]);
    let header = FrameHeader {
        kind,
        flags,
        position: u64_in(head, FRAME_POSITION),
        version: u64_in(head, FRAME_VERSION),
        timestamp_ms: u64_in(head, FRAME_TIMESTAMP),
        watermark: u64_in(head, FRAME_WATERMARK),
        hash: ChainHash(hash),
    };
    Ok(Frame { header, body: &bytes[FRAME_HEADER_LEN..FRAME_HEADER_LEN + body_len], len })
}

/// Bytes an encoded body adds to what `NewEvent::size` counts: a fixarray marker, the id (a
/// 2-byte header and its 16 bytes), and a header of at most 5 bytes for each other field.
const BODY_OVERHEAD_MAX: usize = 1 + 5 + 2 + 16 + 5 + 5 + 5;

/// The event body as stored (msgpack array of five fields).
#[derive(Serialize)]
struct BodyOut<'a> {
    stream: &'a str,
    #[serde(with = "serde_bytes")]
    id: &'a [u8],
    event_type: &'a str,
    #[serde(with = "serde_bytes")]
    metadata: &'a [u8],
    #[serde(with = "serde_bytes")]
    data: &'a [u8],
}

#[derive(Deserialize)]
struct BodyIn<'a> {
    #[serde(borrow)]
    stream: std::borrow::Cow<'a, str>,
    #[serde(with = "serde_bytes", borrow)]
    id: std::borrow::Cow<'a, [u8]>,
    #[serde(borrow)]
    event_type: std::borrow::Cow<'a, str>,
    #[serde(with = "serde_bytes", borrow)]
    metadata: std::borrow::Cow<'a, [u8]>,
    #[serde(with = "serde_bytes", borrow)]
    data: std::borrow::Cow<'a, [u8]>,
}

/// A husk's body as stored (msgpack array of five fields): the event's header fields that are
/// not in the frame, and its payload digests in place of the payload.
#[derive(Serialize)]
struct HuskOut<'a> {
    stream: &'a str,
    #[serde(with = "serde_bytes")]
    id: &'a [u8],
    event_type: &'a str,
    #[serde(with = "serde_bytes")]
    metadata_digest: &'a [u8],
    #[serde(with = "serde_bytes")]
    data_digest: &'a [u8],
}

#[derive(Deserialize)]
struct HuskIn<'a> {
    #[serde(borrow)]
    stream: std::borrow::Cow<'a, str>,
    #[serde(with = "serde_bytes", borrow)]
    id: std::borrow::Cow<'a, [u8]>,
    #[serde(borrow)]
    event_type: std::borrow::Cow<'a, str>,
    #[serde(with = "serde_bytes", borrow)]
    metadata_digest: std::borrow::Cow<'a, [u8]>,
    #[serde(with = "serde_bytes", borrow)]
    data_digest: std::borrow::Cow<'a, [u8]>,
}

/// An event prepared by the appender (off the writer thread): body encoded and compressed,
/// payload digests taken. The writer adds position, version, timestamp and the chain hash.
#[derive(Debug, Clone)]
pub(crate) struct PreparedEvent {
    pub id: Uuid,
    /// Whether the caller chose the id (and may retry with it); a generated v4 id is new.
    pub client_id: bool,
    pub event_type: String,
    pub data_binary: bool,
    pub body: Vec<u8>,
    pub compressed: bool,
    pub metadata_digest: [u8; 32],
    pub data_digest: [u8; 32],
    /// For an encrypted event: the key its body is sealed with when the writer knows its
    /// position (`body` is then the encrypted body with a zero nonce and the plaintext where
    /// the ciphertext goes; [`seal_body`] fills both in).
    pub cipher: Option<CipherPlan>,
}

#[derive(Debug, Clone)]
pub(crate) struct CipherPlan {
    record_key: [u8; 32],
    /// Where the ciphertext starts in the body.
    clear_len: usize,
}

// The encrypted event body (docs/format.md "Encrypted event body").
const CIPHER_GENERATION: std::ops::Range<usize> = 0..4;
const CIPHER_SECRET: std::ops::Range<usize> = 4..8;
const CIPHER_NONCE: std::ops::Range<usize> = 8..8 + NONCE_LEN;
const CIPHER_METADATA_DIGEST: std::ops::Range<usize> = 32..64;
const CIPHER_DATA_DIGEST: std::ops::Range<usize> = 64..96;
const CIPHER_ID: std::ops::Range<usize> = 96..112;
/// Bytes before the stream name's length.
const CIPHER_FIXED: usize = 112;
const _: () = assert!(CIPHER_NONCE.end == CIPHER_METADATA_DIGEST.start);

/// The plaintext an encrypted event seals: its metadata and data, as a msgpack array.
#[derive(Serialize)]
struct InnerOut<'a> {
    #[serde(with = "serde_bytes")]
    metadata: &'a [u8],
    #[serde(with = "serde_bytes")]
    data: &'a [u8],
}

#[derive(Deserialize)]
struct InnerIn {
    #[serde(with = "serde_bytes")]
    metadata: Vec<u8>,
    #[serde(with = "serde_bytes")]
    data: Vec<u8>,
}

/// `bytes` snappy-compressed when that is worth it (at least [`COMPRESS_THRESHOLD`] and smaller).
fn maybe_compress(raw: Vec<u8>) -> (Vec<u8>, bool) {
    if raw.len() >= COMPRESS_THRESHOLD {
        let packed = snap::raw::Encoder::new().compress_vec(&raw).expect("snappy input is bounded");
        if packed.len() < raw.len() {
            return (packed, true);
        }
    }
    (raw, false)
}

impl PreparedEvent {
    /// Prepares `event` for `stream`: encrypted when `key` is given (its stream's key), plain
    /// otherwise.
    pub(crate) fn new(stream: &StreamName, event: &NewEvent, key: Option<&StreamKey>) -> PreparedEvent {
        match key {
            Some(key) => PreparedEvent::encrypted(stream, event, key),
            None => PreparedEvent::plain(stream, event),
        }
    }

    fn encrypted(stream: &StreamName, event: &NewEvent, key: &StreamKey) -> PreparedEvent {
        let id = event.id.unwrap_or_else(Uuid::new_v4);
        let data = event.data.as_bytes();
        let mut inner = Vec::with_capacity(event.metadata.len() + data.len() + 16);
        rmp_serde::encode::write(&mut inner, &InnerOut { metadata: &event.metadata, data })
            .expect("encoding to a Vec cannot fail");
        let (inner, compressed) = maybe_compress(inner);
        let metadata_digest = keys::keyed_digest(&key.digest_key, &event.metadata);
        let data_digest = keys::keyed_digest(&key.digest_key, data);
        let (name, event_type) = (stream.as_str().as_bytes(), event.event_type.as_bytes());
        let clear_len = CIPHER_FIXED + 2 + name.len() + 2 + event_type.len();
        let mut body = Vec::with_capacity(clear_len + inner.len() + TAG_LEN);
        body.extend_from_slice(&key.generation.to_le_bytes());
        body.extend_from_slice(&key.secret.to_le_bytes());
        body.extend_from_slice(&[0; NONCE_LEN]);
        body.extend_from_slice(&metadata_digest);
        body.extend_from_slice(&data_digest);
        body.extend_from_slice(id.as_bytes());
        for field in [name, event_type] {
            body.extend_from_slice(&u16::try_from(field.len()).expect("names are at most 256 bytes").to_le_bytes());
            body.extend_from_slice(field);
        }
        debug_assert_eq!(body.len(), clear_len);
        body.extend_from_slice(&inner);
        body.extend_from_slice(&[0; TAG_LEN]);
        assert!(body.len() <= EVENT_BODY_MAX, "body {} above EVENT_BODY_MAX", body.len());
        PreparedEvent {
            id,
            client_id: event.id.is_some(),
            event_type: event.event_type.clone(),
            data_binary: !event.data.is_json(),
            body,
            compressed,
            metadata_digest,
            data_digest,
            cipher: Some(CipherPlan { record_key: key.record_key, clear_len }),
        }
    }

    fn plain(stream: &StreamName, event: &NewEvent) -> PreparedEvent {
        let id = event.id.unwrap_or_else(Uuid::new_v4);
        let data = event.data.as_bytes();
        // Sized up front (the fields, the id and every header), so that encoding allocates once.
        let capacity = event.size(stream) + BODY_OVERHEAD_MAX;
        let mut raw = Vec::with_capacity(capacity);
        rmp_serde::encode::write(
            &mut raw,
            &BodyOut {
                stream: stream.as_str(),
                id: id.as_bytes(),
                event_type: &event.event_type,
                metadata: &event.metadata,
                data,
            },
        )
        .expect("encoding to a Vec cannot fail");
        debug_assert!(raw.len() <= capacity, "body of {} bytes above its estimate {capacity}", raw.len());
        let (body, compressed) = maybe_compress(raw);
        assert!(body.len() <= EVENT_BODY_MAX, "body {} above EVENT_BODY_MAX", body.len());
        PreparedEvent {
            id,
            client_id: event.id.is_some(),
            event_type: event.event_type.clone(),
            data_binary: !event.data.is_json(),
            body,
            compressed,
            metadata_digest: digest(&event.metadata),
            data_digest: digest(data),
            cipher: None,
        }
    }

    /// The record kind this event is written as.
    /// The number of the stream secret an encrypted event is sealed with.
    pub(crate) fn secret(&self) -> Option<u32> {
        self.cipher.as_ref().map(|_| u32::from_le_bytes(self.body[CIPHER_SECRET].try_into().expect("4 bytes")))
    }

    pub(crate) fn kind(&self) -> u8 {
        if self.cipher.is_some() {
            KIND_CIPHER
        } else {
            KIND_EVENT
        }
    }

    pub(crate) fn flags(&self) -> u8 {
        let mut flags = 0;
        if self.compressed {
            flags |= FLAG_COMPRESSED;
        }
        if self.data_binary {
            flags |= FLAG_DATA_BINARY;
        }
        flags
    }
}

/// BLAKE3 of no bytes (a test checks it): the metadata digest of an event appended without
/// metadata, taken without hashing.
const EMPTY_DIGEST: [u8; 32] = [
    0xaf, 0x13, 0x49, 0xb9, 0xf5, 0xf9, 0xa1, 0xa6, 0xa0, 0x40, 0x4d, 0xea, 0x36, 0xdc, 0xc9, 0x49, 0x9b, 0xcb, 0x25,
    0xc9, 0xad, 0xc1, 0x12, 0xb7, 0xcc, 0x9a, 0x93, 0xca, 0xe4, 0x1f, 0x32, 0x62,
];

/// BLAKE3 of a payload, as the chain rule takes it.
fn digest(bytes: &[u8]) -> [u8; 32] {
    if bytes.is_empty() {
        return EMPTY_DIGEST;
    }
    *blake3::hash(bytes).as_bytes()
}

/// The fields of `header(p)` in the chain rule.
pub(crate) struct ChainInput<'a> {
    pub position: u64,
    pub version: u64,
    pub timestamp_ms: u64,
    pub id: &'a [u8; 16],
    pub stream: &'a str,
    pub event_type: &'a str,
    pub data_binary: bool,
    pub metadata_digest: &'a [u8; 32],
    pub data_digest: &'a [u8; 32],
}

/// `h(p) = BLAKE3(h(p-1) || header(p) || BLAKE3(metadata) || BLAKE3(data))`, with `header(p)` as
/// specified in docs/format.md.
pub(crate) fn chain_hash(prev: &ChainHash, input: &ChainInput<'_>) -> ChainHash {
    // One contiguous buffer and one `hash` call: a dozen small `update`s cost more than the
    // three compressions the input needs. Within the name limits it stays on the stack; only a
    // record read from a damaged or forged file can carry longer names.
    const FIXED: usize = 32 + 8 * 3 + 16 + 4 + 4 + 1 + 32 + 32;
    let len = FIXED + input.stream.len() + input.event_type.len();
    let mut stack = [0u8; FIXED + crate::types::STREAM_NAME_LEN_MAX + crate::types::EVENT_TYPE_LEN_MAX];
    let mut heap = Vec::new();
    let buf: &mut [u8] = if len <= stack.len() {
        &mut stack[..len]
    } else {
        heap.resize(len, 0);
        &mut heap
    };
    let mut at = 0;
    for part in [
        &prev.0[..],
        &input.position.to_le_bytes(),
        &input.version.to_le_bytes(),
        &input.timestamp_ms.to_le_bytes(),
        input.id,
        &u32::try_from(input.stream.len()).expect("stream names are at most STREAM_NAME_LEN_MAX bytes").to_le_bytes(),
        input.stream.as_bytes(),
        &u32::try_from(input.event_type.len()).expect("event types are at most EVENT_TYPE_LEN_MAX bytes").to_le_bytes(),
        input.event_type.as_bytes(),
        &[u8::from(input.data_binary)],
        input.metadata_digest,
        input.data_digest,
    ] {
        buf[at..at + part.len()].copy_from_slice(part);
        at += part.len();
    }
    debug_assert_eq!(at, len);
    ChainHash(*blake3::hash(buf).as_bytes())
}

/// The body's bytes: the frame body, or its decompression (length checked first). An encrypted
/// event's compression applies to its plaintext, inside the ciphertext.
fn raw_body<'a>(frame: &Frame<'a>) -> Result<std::borrow::Cow<'a, [u8]>, BodyDamage> {
    if frame.header.flags & FLAG_COMPRESSED == 0 || frame.header.kind == KIND_CIPHER {
        return Ok(std::borrow::Cow::Borrowed(frame.body));
    }
    decompress(frame.body).map(std::borrow::Cow::Owned)
}

fn decompress(bytes: &[u8]) -> Result<Vec<u8>, BodyDamage> {
    let len = snap::raw::decompress_len(bytes).map_err(|e| BodyDamage::SnappyHeader { reason: e.to_string() })?;
    if len > EVENT_BODY_MAX {
        return Err(BodyDamage::DecompressedLength { len, max: EVENT_BODY_MAX });
    }
    snap::raw::Decoder::new().decompress_vec(bytes).map_err(|e| BodyDamage::Snappy { reason: e.to_string() })
}

/// The associated data an encrypted event is sealed with: the frame header's position, version,
/// timestamp and payload flags, and every clear byte of the body (generation, secret, nonce,
/// digests, id, stream, type). A body moved to another position or stream, or altered in any
/// byte, fails to decrypt.
fn cipher_ad(header: &FrameHeader, clear: &[u8]) -> Vec<u8> {
    let mut ad = Vec::with_capacity(25 + clear.len());
    ad.extend_from_slice(&header.position.to_le_bytes());
    ad.extend_from_slice(&header.version.to_le_bytes());
    ad.extend_from_slice(&header.timestamp_ms.to_le_bytes());
    ad.push(header.flags & (FLAG_COMPRESSED | FLAG_DATA_BINARY));
    ad.extend_from_slice(clear);
    ad
}

/// The body to write for `event` under `header`: a plain event's as prepared; an encrypted
/// one's sealed now, with a fresh random nonce, its position known.
pub(crate) fn seal_body<'e>(event: &'e PreparedEvent, header: &FrameHeader) -> std::borrow::Cow<'e, [u8]> {
    let Some(plan) = &event.cipher else { return std::borrow::Cow::Borrowed(&event.body) };
    let mut body = event.body.clone();
    body[CIPHER_NONCE].copy_from_slice(&keys::random_nonce());
    reseal(&mut body, plan.clear_len, &plan.record_key, header);
    std::borrow::Cow::Owned(body)
}

/// Encrypts the plaintext at `body[clear_len..len - TAG_LEN]` in place and writes the tag.
fn reseal(body: &mut [u8], clear_len: usize, key: &[u8; 32], header: &FrameHeader) {
    let ad = cipher_ad(header, &body[..clear_len]);
    let nonce = *XNonce::from_slice(&body[CIPHER_NONCE]);
    let tag_at = body.len() - TAG_LEN;
    let tag = keys::cipher(key)
        .encrypt_in_place_detached(&nonce, &ad, &mut body[clear_len..tag_at])
        .expect("a bounded body always seals");
    body[tag_at..].copy_from_slice(&tag);
}

/// Why a committed event does not decode.
#[derive(Debug)]
pub(crate) enum DecodeError {
    Body(BodyDamage),
    /// An encrypted event read without a key.
    KeyRequired,
    Key(Error),
}

impl From<BodyDamage> for DecodeError {
    fn from(d: BodyDamage) -> DecodeError {
        DecodeError::Body(d)
    }
}

impl DecodeError {
    /// The error naming where the record is.
    pub(crate) fn at(self, segment: SegmentId, offset: u64, position: u64) -> Error {
        match self {
            DecodeError::Body(d) => Error::Corrupt {
                segment,
                offset,
                position: Some(Position(position)),
                kind: CorruptionKind::RecordBody(d),
            },
            DecodeError::KeyRequired => Error::KeyRequired { position: Position(position) },
            DecodeError::Key(e) => e,
        }
    }
}

fn msgpack<'a, T: Deserialize<'a>>(raw: &'a [u8]) -> Result<T, BodyDamage> {
    rmp_serde::from_slice(raw).map_err(|e| BodyDamage::Msgpack { reason: e.to_string() })
}

/// A 16-byte event id from a decoded body.
fn id_of(id: &[u8]) -> Result<[u8; 16], BodyDamage> {
    id.try_into().map_err(|_| BodyDamage::IdLength { len: id.len() })
}

/// A 32-byte payload digest from a husk's body.
fn digest_of(digest: &[u8]) -> Result<[u8; 32], BodyDamage> {
    digest.try_into().map_err(|_| BodyDamage::DigestLength { len: digest.len() })
}

/// What an event or husk record holds beyond its frame header, borrowed where the body allows.
struct Fields<'a> {
    stream: std::borrow::Cow<'a, str>,
    id: [u8; 16],
    event_type: std::borrow::Cow<'a, str>,
    content: Content<'a>,
}

enum Content<'a> {
    Payload {
        metadata: std::borrow::Cow<'a, [u8]>,
        data: std::borrow::Cow<'a, [u8]>,
    },
    Husk {
        metadata_digest: [u8; 32],
        data_digest: [u8; 32],
    },
    /// An encrypted event: its keyed digests, its key's numbers, and the sealed part.
    Cipher {
        metadata_digest: [u8; 32],
        data_digest: [u8; 32],
        generation: u32,
        secret: u32,
        clear_len: usize,
    },
}

impl Content<'_> {
    /// `(BLAKE3(metadata), BLAKE3(data))`: taken for an event, as stored for a husk.
    fn digests(&self) -> ([u8; 32], [u8; 32]) {
        match self {
            Content::Payload { metadata, data } => (digest(metadata), digest(data)),
            Content::Husk { metadata_digest, data_digest } | Content::Cipher { metadata_digest, data_digest, .. } => {
                (*metadata_digest, *data_digest)
            }
        }
    }
}

/// Decodes an event or husk frame's body (`raw` is [`raw_body`]'s output for an event, the
/// frame body for a husk).
fn fields<'a>(kind: u8, raw: &'a [u8]) -> Result<Fields<'a>, BodyDamage> {
    // The shape the engine writes for these two kinds, read without the general decoder
    // (body.rs); any other body gets the general decoder's verdict below.
    let five = if matches!(kind, KIND_EVENT | KIND_HUSK) { crate::body::five(raw) } else { None };
    if let Some(five) = five {
        let (first, second) = (five.first, five.second);
        return Ok(Fields {
            stream: std::borrow::Cow::Borrowed(five.stream),
            id: id_of(five.id)?,
            event_type: std::borrow::Cow::Borrowed(five.event_type),
            content: if kind == KIND_HUSK {
                Content::Husk { metadata_digest: digest_of(first)?, data_digest: digest_of(second)? }
            } else {
                Content::Payload {
                    metadata: std::borrow::Cow::Borrowed(first),
                    data: std::borrow::Cow::Borrowed(second),
                }
            },
        });
    }
    if kind == KIND_HUSK {
        let husk: HuskIn<'a> = msgpack(raw)?;
        return Ok(Fields {
            id: id_of(&husk.id)?,
            content: Content::Husk {
                metadata_digest: digest_of(&husk.metadata_digest)?,
                data_digest: digest_of(&husk.data_digest)?,
            },
            stream: husk.stream,
            event_type: husk.event_type,
        });
    }
    if kind == KIND_CIPHER {
        return cipher_fields(raw);
    }
    debug_assert_eq!(kind, KIND_EVENT);
    let body: BodyIn<'a> = msgpack(raw)?;
    Ok(Fields {
        id: id_of(&body.id)?,
        content: Content::Payload { metadata: body.metadata, data: body.data },
        stream: body.stream,
        event_type: body.event_type,
    })
}

/// An encrypted event body's clear fields (docs/format.md "Encrypted event body").
fn cipher_fields(raw: &[u8]) -> Result<Fields<'_>, BodyDamage> {
    let short = || BodyDamage::Cipher { reason: format!("a body of {} bytes is too short", raw.len()) };
    let u32_at = |r: std::ops::Range<usize>| u32::from_le_bytes(raw[r].try_into().expect("4 bytes"));
    if raw.len() < CIPHER_FIXED + 2 {
        return Err(short());
    }
    let mut at = CIPHER_FIXED;
    let mut text = |what: &str| -> Result<std::borrow::Cow<'_, str>, BodyDamage> {
        let len = usize::from(u16::from_le_bytes(raw.get(at..at + 2).ok_or_else(short)?.try_into().expect("2")));
        let bytes = raw.get(at + 2..at + 2 + len).ok_or_else(short)?;
        at += 2 + len;
        std::str::from_utf8(bytes)
            .map(std::borrow::Cow::Borrowed)
            .map_err(|_| BodyDamage::Cipher { reason: format!("its {what} is not UTF-8") })
    };
    let stream = text("stream name")?;
    let event_type = text("event type")?;
    if raw.len() < at + TAG_LEN {
        return Err(short());
    }
    Ok(Fields {
        stream,
        id: raw[CIPHER_ID].try_into().expect("16 bytes"),
        event_type,
        content: Content::Cipher {
            metadata_digest: raw[CIPHER_METADATA_DIGEST].try_into().expect("32 bytes"),
            data_digest: raw[CIPHER_DATA_DIGEST].try_into().expect("32 bytes"),
            generation: u32_at(CIPHER_GENERATION),
            secret: u32_at(CIPHER_SECRET),
            clear_len: at,
        },
    })
}

/// The plaintext of an encrypted event's body, opened with `key` (still compressed if its
/// flags say so).
fn decrypt(frame: &Frame<'_>, clear_len: usize, key: &[u8; 32]) -> Result<Vec<u8>, BodyDamage> {
    let body = frame.body;
    let number = |r: std::ops::Range<usize>| u32::from_le_bytes(body[r].try_into().expect("4 bytes"));
    let tag_at = body.len() - TAG_LEN;
    let mut plain = body[clear_len..tag_at].to_vec();
    keys::cipher(key)
        .decrypt_in_place_detached(
            XNonce::from_slice(&body[CIPHER_NONCE]),
            &cipher_ad(&frame.header, &body[..clear_len]),
            &mut plain,
            body[tag_at..].into(),
        )
        .map_err(|_| BodyDamage::Decrypt { generation: number(CIPHER_GENERATION), secret: number(CIPHER_SECRET) })?;
    Ok(plain)
}

/// Opens an encrypted event's body with `key`: its metadata and data.
fn open_cipher(frame: &Frame<'_>, clear_len: usize, key: &[u8; 32]) -> Result<(Vec<u8>, Vec<u8>), BodyDamage> {
    let mut plain = decrypt(frame, clear_len, key)?;
    if frame.header.flags & FLAG_COMPRESSED != 0 {
        plain = decompress(&plain)?;
    }
    let inner: InnerIn = msgpack(&plain)?;
    Ok((inner.metadata, inner.data))
}

/// Checks an encrypted event's tag with its key (verify's path with a key): a ciphertext
/// replaced in place keeps every chain hash, since the chain covers the clear digests. Other
/// kinds, and a shredded stream's records (nothing can open them), pass.
pub(crate) fn authenticate(frame: &Frame<'_>, keys: &Keyring) -> Result<(), DecodeError> {
    if frame.header.kind != KIND_CIPHER {
        return Ok(());
    }
    let fields = cipher_fields(frame.body)?;
    let Content::Cipher { generation, secret, clear_len, .. } = fields.content else { return Ok(()) };
    match keys.record_key(&fields.stream, secret, generation).map_err(DecodeError::Key)? {
        RecordKey::Shredded => Ok(()),
        RecordKey::Key(key) => decrypt(frame, clear_len, &key).map(drop).map_err(DecodeError::Body),
    }
}

/// Just the stream name and id of an event or husk frame: what the index needs, without
/// copying the payload.
pub(crate) fn decode_index_fields(frame: &Frame<'_>) -> Result<(String, Uuid), BodyDamage> {
    let raw = raw_body(frame)?;
    let fields = fields(frame.header.kind, &raw)?;
    Ok((fields.stream.into_owned(), Uuid::from_bytes(fields.id)))
}

/// Decodes an event or husk frame's body into an [`Event`], checking the decompressed size
/// first. A husk decodes with `erased` set and an empty payload, and so does an encrypted event
/// whose stream's key was shredded. An encrypted event needs `keys`.
pub(crate) fn decode_event(frame: &Frame<'_>, keys: Option<&Keyring>) -> Result<Event, DecodeError> {
    with_event(frame, keys, |event| event.to_event())
}

/// Decodes an event or husk frame's body as [`decode_event`] does and hands `f` the event
/// borrowed from the frame (or from its decompressed or decrypted body): nothing is copied out.
pub(crate) fn with_event<R>(
    frame: &Frame<'_>,
    keys: Option<&Keyring>,
    f: impl FnOnce(EventRef<'_>) -> R,
) -> Result<R, DecodeError> {
    let header = &frame.header;
    let raw = raw_body(frame)?;
    let fields = fields(header.kind, &raw)?;
    let opened: (Vec<u8>, Vec<u8>);
    let (metadata, data, erased): (&[u8], &[u8], bool) = match &fields.content {
        Content::Payload { metadata, data } => (metadata, data, false),
        Content::Husk { .. } => (&[], &[], true),
        Content::Cipher { generation, secret, clear_len, .. } => {
            let keys = keys.ok_or(DecodeError::KeyRequired)?;
            match keys.record_key(&fields.stream, *secret, *generation).map_err(DecodeError::Key)? {
                RecordKey::Shredded => (&[], &[], true),
                RecordKey::Key(key) => {
                    opened = open_cipher(frame, *clear_len, &key)?;
                    (&opened.0, &opened.1, false)
                }
            }
        }
    };
    Ok(f(EventRef {
        position: Position(header.position),
        stream: &fields.stream,
        version: StreamVersion(header.version),
        id: Uuid::from_bytes(fields.id),
        event_type: &fields.event_type,
        timestamp_ms: header.timestamp_ms,
        metadata,
        data,
        data_is_json: header.flags & FLAG_DATA_BINARY == 0,
        hash: header.hash,
        erased,
    }))
}

/// The chain hash of an event or husk frame, recomputed from its predecessor's hash without
/// copying the event out (verify's path): only a compressed body is decompressed into a
/// buffer. A husk hashes its stored digests, so it verifies exactly as the event it replaced.
/// `seen` gets the event's stream and id, for checks against a footer.
pub(crate) fn frame_chain_hash(
    prev: &ChainHash,
    frame: &Frame<'_>,
    seen: impl FnOnce(&str, &[u8; 16]),
) -> Result<ChainHash, BodyDamage> {
    let header = &frame.header;
    let raw = raw_body(frame)?;
    let fields = fields(header.kind, &raw)?;
    seen(&fields.stream, &fields.id);
    let (metadata_digest, data_digest) = fields.content.digests();
    Ok(chain_hash(
        prev,
        &ChainInput {
            position: header.position,
            version: header.version,
            timestamp_ms: header.timestamp_ms,
            id: &fields.id,
            stream: &fields.stream,
            event_type: &fields.event_type,
            data_binary: header.flags & FLAG_DATA_BINARY != 0,
            metadata_digest: &metadata_digest,
            data_digest: &data_digest,
        },
    ))
}

/// Whether `frame` (an event, encrypted event or husk of `stream`) holds `event`'s content: an
/// idempotent retry's check. An encrypted event and a husk are compared by what they keep in
/// the clear (stream, id, type, data kind, payload digests); a plain event by its body.
pub(crate) fn same_content(frame: &Frame<'_>, stream: &str, event: &PreparedEvent) -> bool {
    let same_kind = frame.header.flags & FLAG_DATA_BINARY == event.flags() & FLAG_DATA_BINARY;
    match frame.header.kind {
        KIND_HUSK => same_kind && frame.body == husk_body(stream, event),
        KIND_CIPHER => {
            let Ok(fields) = cipher_fields(frame.body) else { return false };
            same_kind
                && fields.stream == stream
                && fields.id == *event.id.as_bytes()
                && fields.event_type == event.event_type
                && fields.content.digests() == (event.metadata_digest, event.data_digest)
        }
        _ => frame.body == event.body,
    }
}

fn encode_husk(husk: &HuskOut<'_>) -> Vec<u8> {
    let mut body = Vec::with_capacity(husk.stream.len() + husk.event_type.len() + 16 + 64 + 16);
    rmp_serde::encode::write(&mut body, husk).expect("encoding to a Vec cannot fail");
    body
}

/// The body of the husk an event prepared for `stream` would become: what an idempotent retry
/// compares with a husk in the log.
pub(crate) fn husk_body(stream: &str, event: &PreparedEvent) -> Vec<u8> {
    encode_husk(&HuskOut {
        stream,
        id: event.id.as_bytes(),
        event_type: &event.event_type,
        metadata_digest: &event.metadata_digest,
        data_digest: &event.data_digest,
    })
}

/// The husk that replaces an event frame: the same frame header (kind husk, never compressed)
/// and a body of the event's stream, id, type and payload digests. A husk stays itself.
/// The result is the bytes to write; its length is a multiple of [`RECORD_ALIGN`].
pub(crate) fn husk_of(frame: &Frame<'_>) -> Result<Vec<u8>, BodyDamage> {
    let header = &frame.header;
    let raw = raw_body(frame)?;
    let fields = fields(header.kind, &raw)?;
    let (metadata_digest, data_digest) = fields.content.digests();
    let body = encode_husk(&HuskOut {
        stream: &fields.stream,
        id: &fields.id,
        event_type: &fields.event_type,
        metadata_digest: &metadata_digest,
        data_digest: &data_digest,
    });
    let husk = FrameHeader { kind: KIND_HUSK, flags: header.flags & !FLAG_COMPRESSED, ..*header };
    let mut out = Vec::with_capacity(frame_len(body.len()));
    encode_frame(&mut out, &husk, &body);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::field::salted_crc;
    use crate::types::Payload;

    #[test]
    fn the_empty_digest_is_blake3_of_nothing() {
        assert_eq!(&EMPTY_DIGEST, blake3::hash(b"").as_bytes());
        assert_eq!(digest(b""), *blake3::hash(b"").as_bytes());
        assert_eq!(digest(b"{}"), *blake3::hash(b"{}").as_bytes());
    }

    /// A frame's CRC starts from the salt's CRC instead of hashing the salt: the same value.
    #[test]
    fn frame_crc_is_the_crc_of_the_salt_and_the_bytes() {
        assert_eq!(crc32fast::hash(&CRC_SALT), CRC_OF_SALT);
        assert_eq!(CRC_OF_SALT, 0x6c74_03d9);
        for bytes in [&b""[..], b"x", &[7u8; 1000][..]] {
            assert_eq!(frame_crc(bytes), salted_crc(&CRC_SALT, bytes));
        }
    }

    /// The frame table of docs/format.md is the constants' (a format change updates both).
    #[test]
    fn frame_layout_matches_docs_format_md() {
        crate::field::doc::assert_fields("### Record frame", &FRAME_FIELDS);
    }

    fn sample(position: u64, data: &[u8]) -> (Vec<u8>, Event) {
        let stream = StreamName::new("agent-7").unwrap();
        let new = NewEvent::bytes("ToolCalled", data.to_vec()).with_metadata(&serde_json::json!({"run": 1}));
        let prepared = PreparedEvent::new(&stream, &new, None);
        let hash = chain_hash(
            &ChainHash::genesis(),
            &ChainInput {
                position,
                version: 3,
                timestamp_ms: 1_700_000_000_000,
                id: prepared.id.as_bytes(),
                stream: stream.as_str(),
                event_type: "ToolCalled",
                data_binary: true,
                metadata_digest: &prepared.metadata_digest,
                data_digest: &prepared.data_digest,
            },
        );
        let header = FrameHeader {
            kind: KIND_EVENT,
            flags: prepared.flags() | FLAG_BATCH_END,
            position,
            version: 3,
            timestamp_ms: 1_700_000_000_000,
            watermark: 4096,
            hash,
        };
        let mut buf = Vec::new();
        encode_frame(&mut buf, &header, &prepared.body);
        let event = Event {
            position: Position(position),
            stream: "agent-7".into(),
            version: StreamVersion(3),
            id: prepared.id,
            event_type: "ToolCalled".into(),
            timestamp_ms: 1_700_000_000_000,
            metadata: br#"{"run":1}"#.to_vec(),
            data: Payload::Bytes(data.to_vec()),
            hash,
            erased: false,
        };
        (buf, event)
    }

    #[test]
    fn round_trip_small_and_compressed() {
        for data in [b"hello".to_vec(), vec![7u8; 64 * 1024]] {
            let (buf, expected) = sample(41, &data);
            assert_eq!(buf.len() % RECORD_ALIGN, 0);
            let frame = decode_frame(&buf, EVENT_BODY_MAX).unwrap();
            assert_eq!(frame.len, buf.len());
            assert_eq!(frame.header.flags & FLAG_COMPRESSED != 0, data.len() > COMPRESS_THRESHOLD);
            let event = decode_event(&frame, None).unwrap();
            assert_eq!(event, expected);
            let mut seen = None;
            let hash = frame_chain_hash(&ChainHash::genesis(), &frame, |s, id| seen = Some((s.to_string(), *id)));
            assert_eq!(hash.unwrap(), expected.hash);
            assert_eq!(seen, Some((expected.stream.clone(), *expected.id.as_bytes())));
        }
    }

    /// The chain rule exactly as docs/format.md spells it, field by field: a change to the hash
    /// input (order, widths, a field dropped) breaks every existing log and must show here.
    #[test]
    fn chain_hash_follows_the_documented_rule() {
        for (stream, event_type) in
            [("agent-7".to_string(), "ToolCalled".to_string()), ("s".repeat(600), "t".repeat(300))]
        {
            let (metadata_digest, data_digest) = (blake3::hash(b"{}"), blake3::hash(b"payload"));
            let input = ChainInput {
                position: 41,
                version: 3,
                timestamp_ms: 1_700_000_000_000,
                id: &[9u8; 16],
                stream: &stream,
                event_type: &event_type,
                data_binary: true,
                metadata_digest: metadata_digest.as_bytes(),
                data_digest: data_digest.as_bytes(),
            };
            let mut h = blake3::Hasher::new();
            h.update(blake3::hash(b"cairn/log/genesis/v1").as_bytes());
            h.update(&41u64.to_le_bytes());
            h.update(&3u64.to_le_bytes());
            h.update(&1_700_000_000_000u64.to_le_bytes());
            h.update(&[9u8; 16]);
            h.update(&u32::try_from(stream.len()).unwrap().to_le_bytes());
            h.update(stream.as_bytes());
            h.update(&u32::try_from(event_type.len()).unwrap().to_le_bytes());
            h.update(event_type.as_bytes());
            h.update(&[1]);
            h.update(blake3::hash(b"{}").as_bytes());
            h.update(blake3::hash(b"payload").as_bytes());
            assert_eq!(
                chain_hash(&ChainHash::genesis(), &input).0,
                *h.finalize().as_bytes(),
                "stream {}",
                stream.len()
            );
        }
    }

    /// A husk reads as its event with the payload gone, chains exactly like it (so verify
    /// passes through it), is a fraction of its size, and stays itself when husked again.
    #[test]
    fn a_husk_keeps_the_header_and_the_chain_of_its_event() {
        for data in [b"hello".to_vec(), vec![7u8; 64 * 1024]] {
            let (buf, event) = sample(41, &data);
            let frame = decode_frame(&buf, EVENT_BODY_MAX).unwrap();
            let husk = husk_of(&frame).unwrap();
            assert_eq!(husk.len() % RECORD_ALIGN, 0);
            assert!(husk.len() < FRAME_HEADER_LEN + 128, "a husk of {} bytes", husk.len());
            let husk_frame = decode_frame(&husk, EVENT_BODY_MAX).unwrap();
            assert_eq!(husk_frame.header.kind, KIND_HUSK);
            assert_eq!(husk_frame.header.flags & FLAG_COMPRESSED, 0);
            assert_eq!(husk_frame.header.flags & !FLAG_COMPRESSED, frame.header.flags & !FLAG_COMPRESSED);
            let read = decode_event(&husk_frame, None).unwrap();
            let erased =
                Event { metadata: Vec::new(), data: Payload::Bytes(Vec::new()), erased: true, ..event.clone() };
            assert_eq!(read, erased);
            let mut seen = None;
            let hash = frame_chain_hash(&ChainHash::genesis(), &husk_frame, |s, id| seen = Some((s.to_string(), *id)));
            assert_eq!(hash.unwrap(), event.hash);
            assert_eq!(seen, Some((event.stream.clone(), *event.id.as_bytes())));
            assert_eq!(decode_index_fields(&husk_frame).unwrap(), (event.stream.clone(), event.id));
            assert_eq!(husk_of(&husk_frame).unwrap(), husk, "a husk husked again");
        }
    }

    #[test]
    fn every_flipped_bit_of_a_husk_is_detected() {
        let (buf, _) = sample(5, b"payload");
        let husk = husk_of(&decode_frame(&buf, EVENT_BODY_MAX).unwrap()).unwrap();
        for bit in 0..husk.len() * 8 {
            let mut damaged = husk.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(decode_frame(&damaged, EVENT_BODY_MAX).is_err(), "bit {bit} flipped went unnoticed");
        }
    }

    /// A husk is never compressed: a frame claiming so is refused before its body is used.
    #[test]
    fn a_compressed_husk_is_refused() {
        let (buf, _) = sample(5, b"payload");
        let husk = husk_of(&decode_frame(&buf, EVENT_BODY_MAX).unwrap()).unwrap();
        let frame = decode_frame(&husk, EVENT_BODY_MAX).unwrap();
        let header = FrameHeader { flags: frame.header.flags | FLAG_COMPRESSED, ..frame.header };
        let mut forged = Vec::new();
        // Encoded by hand: encode_frame refuses to write such a frame.
        forged.extend_from_slice(&husk);
        forged[FRAME_FLAGS.at] = header.flags;
        let crc = frame_crc(&forged[FRAME_CRC.end()..]);
        forged[..4].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(decode_frame(&forged, EVENT_BODY_MAX).unwrap_err(), FrameError::Flags(header.flags));
    }

    #[test]
    fn zeros_never_decode() {
        for len in [0, 1, 79, 80, 4096] {
            let zeros = vec![0u8; len];
            assert_eq!(decode_frame(&zeros, EVENT_BODY_MAX).unwrap_err(), FrameError::Zero);
        }
    }

    #[test]
    fn every_flipped_bit_is_detected() {
        let (buf, _) = sample(5, b"payload");
        for bit in 0..buf.len() * 8 {
            let mut damaged = buf.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(decode_frame(&damaged, EVENT_BODY_MAX).is_err(), "bit {bit} flipped went unnoticed");
        }
    }

    #[test]
    fn every_truncation_is_detected() {
        let (buf, _) = sample(5, b"payload");
        // Cutting only the zero padding loses nothing; every cut into meaningful bytes must show.
        let meaningful = FRAME_HEADER_LEN + body_len_at(&buf, 0);
        for cut in 0..meaningful {
            let mut short = buf[..cut].to_vec();
            short.resize(buf.len(), 0);
            assert!(decode_frame(&short, EVENT_BODY_MAX).is_err(), "cut at {cut} went unnoticed");
        }
    }

    #[test]
    fn length_is_bounded_before_use() {
        let (mut buf, _) = sample(5, b"payload");
        buf[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            decode_frame(&buf, EVENT_BODY_MAX).unwrap_err(),
            FrameError::Length { len: u64::from(u32::MAX), max: EVENT_BODY_MAX as u64 }
        );
    }

    #[test]
    fn snappy_bomb_is_refused_before_allocation() {
        // A body claiming a huge decompressed length with a valid frame CRC.
        let mut body = Vec::new();
        let mut n = (EVENT_BODY_MAX as u64 + 1) * 1000;
        while n >= 0x80 {
            // A varint: the low seven bits, then a continuation bit.
            body.push(n.to_le_bytes()[0] | 0x80);
            n >>= 7;
        }
        body.push(n.to_le_bytes()[0]);
        let header = FrameHeader {
            kind: KIND_EVENT,
            flags: FLAG_COMPRESSED,
            position: 0,
            version: 0,
            timestamp_ms: 0,
            watermark: 0,
            hash: ChainHash::genesis(),
        };
        let mut buf = Vec::new();
        encode_frame(&mut buf, &header, &body);
        let frame = decode_frame(&buf, EVENT_BODY_MAX).unwrap();
        let Err(DecodeError::Body(err)) = decode_event(&frame, None) else { panic!("decoded") };
        assert!(matches!(err, BodyDamage::DecompressedLength { max: EVENT_BODY_MAX, .. }), "{err}");
        assert!(err.to_string().contains("above EVENT_BODY_MAX"), "{err}");
    }
}
