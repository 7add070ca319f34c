//! Encryption at rest (format version 4): the key-encryption key, the key store it protects,
//! and the keys a record is sealed with. It owns every secret the log uses and nothing else:
//! record.rs seals and opens bodies with what [`Keyring`] hands out.
//!
//! Three layers, so that each of the three operations touches as little as it can:
//!
//! - the **key-encryption key** (KEK, [`Kek`]): 32 bytes the operator keeps outside the data
//!   directory (`--key-file`, `CAIRN_KEY_FILE`, `CAIRN_KEY`); it only wraps what the store holds;
//! - **generations**: random 32-byte keys numbered from 1; new records use the newest, and key
//!   rotation adds one (older ones stay until a re-encryption retires them);
//! - **stream secrets**: a random 32-byte secret per stream (numbered, so that a stream written
//!   again after shredding gets a new one). A record's key is derived from its generation's key
//!   and its stream's secret; its payload digests (what the chain hashes) are keyed by the secret
//!   alone, so rotation never changes a chain hash, and shredding (destroying the secret) leaves
//!   nothing that can decrypt the payload or confirm a guess of it.
//!
//! The store is a file of CRC'd entries (docs/format.md "Key store"), each secret wrapped with
//! XChaCha20-Poly1305 under the KEK. Adding a secret or a generation appends an entry and
//! fdatasyncs before any record uses it; shredding and retiring rewrite the whole file without the
//! destroyed entries (temporary file, fdatasync, rename, directory fsync). The store is not part
//! of the log's segments, so backups and archives of the log never carry it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use parking_lot::{Mutex, RwLock};

use crate::error::{Error, Result};
use crate::field::salted_crc;
use crate::fs::{FileSystem, OsFs};

/// The key store's default file name, in the data directory (`DIR/keys`).
pub const KEY_STORE_FILE: &str = "keys";
/// Bytes of every key: the KEK, a generation's key, a stream secret.
pub const KEY_LEN: usize = 32;
/// XChaCha20-Poly1305's nonce and tag.
pub(crate) const NONCE_LEN: usize = 24;
pub(crate) const TAG_LEN: usize = 16;

const STORE_MAGIC: [u8; 8] = *b"CAIRNKEY";
const STORE_VERSION: u32 = 1;
/// Header: magic, version, reserved, KEK check value, CRC.
const STORE_HEADER_LEN: usize = 8 + 4 + 4 + 32 + 4;
const STORE_SALT: [u8; 8] = *b"cairnKEY";
/// Largest entry body (a stream secret of a 256-byte name); a longer length is damage.
const ENTRY_BODY_MAX: usize = 1024;

const ENTRY_GENERATION: u8 = 1;
const ENTRY_SECRET: u8 = 2;
const ENTRY_SHREDDED: u8 = 3;

const CONTEXT_CHECK: &str = "cairn 2026-12-07 key store check v1";
const CONTEXT_RECORD: &str = "cairn 2026-12-07 record key v4";
const CONTEXT_DIGEST: &str = "cairn 2026-12-07 payload digest key v4";
const CONTEXT_CHECKPOINT: &str = "cairn 2026-12-07 checkpoint key v2";

/// The key-encryption key. Never printed: its `Debug` says only that it is there.
#[derive(Clone)]
pub struct Kek([u8; KEY_LEN]);

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Kek(..)")
    }
}

impl Kek {
    /// A KEK from its text form: 64 hexadecimal digits (surrounding whitespace ignored).
    pub fn from_hex(text: &str) -> std::result::Result<Kek, String> {
        let text = text.trim();
        if text.len() != 2 * KEY_LEN {
            return Err(format!("a key is {} hexadecimal digits, not {} characters", 2 * KEY_LEN, text.len()));
        }
        let mut key = [0u8; KEY_LEN];
        for (i, byte) in key.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16)
                .map_err(|_| "a key is hexadecimal digits only (0-9, a-f)".to_string())?;
        }
        Ok(Kek(key))
    }

    /// A KEK read from a file holding its 64 hexadecimal digits.
    pub fn from_file(path: &Path) -> Result<Kek> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io("read key file", path, e))?;
        Kek::from_hex(&text).map_err(|reason| Error::KeyStore { path: path.to_path_buf(), detail: reason })
    }

    /// A new random KEK.
    pub fn generate() -> Kek {
        Kek(random_key())
    }

    /// The text form [`Kek::from_hex`] reads.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn check_value(&self) -> [u8; 32] {
        let key = blake3::derive_key(CONTEXT_CHECK, &self.0);
        *blake3::keyed_hash(&key, b"check").as_bytes()
    }
}

fn random_key() -> [u8; KEY_LEN] {
    let mut key = [0u8; KEY_LEN];
    getrandom_fill(&mut key);
    key
}

fn getrandom_fill(buf: &mut [u8]) {
    use chacha20poly1305::aead::rand_core::RngCore;
    chacha20poly1305::aead::OsRng.fill_bytes(buf);
}

/// A fresh random nonce: records are sealed with random 24-byte nonces, so a tail rewritten
/// after a crash never reuses one with the same key.
pub(crate) fn random_nonce() -> [u8; NONCE_LEN] {
    let mut nonce = [0u8; NONCE_LEN];
    getrandom_fill(&mut nonce);
    nonce
}

/// How a checkpoint's content was sealed ([`Keyring::seal_checkpoint`]): the generation whose
/// key (derived for checkpoints) sealed it, and its random nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointSeal {
    pub generation: u32,
    pub nonce: [u8; NONCE_LEN],
}

/// What a writer seals a stream's new records with.
#[derive(Clone)]
pub(crate) struct StreamKey {
    pub generation: u32,
    pub secret: u32,
    pub record_key: [u8; KEY_LEN],
    pub digest_key: [u8; KEY_LEN],
}

/// What a reader finds for a record's (stream, secret, generation).
pub(crate) enum RecordKey {
    Key([u8; KEY_LEN]),
    /// The stream's secret was destroyed: the payload is gone for good.
    Shredded,
}

#[derive(Default)]
struct StreamSecrets {
    /// Live secrets by number; the highest is the one new records use.
    live: BTreeMap<u32, [u8; KEY_LEN]>,
    shredded: BTreeSet<u32>,
}

impl StreamSecrets {
    fn next_number(&self) -> u32 {
        let live = self.live.keys().next_back().copied().unwrap_or(0);
        let shredded = self.shredded.iter().next_back().copied().unwrap_or(0);
        live.max(shredded) + 1
    }
}

#[derive(Default)]
struct State {
    generations: BTreeMap<u32, [u8; KEY_LEN]>,
    streams: HashMap<String, StreamSecrets>,
}

/// The key store of one log, opened with its KEK. Shared by the writer, the readers of the
/// process and the scavenger.
pub struct Keyring {
    path: PathBuf,
    kek: Kek,
    writable: bool,
    /// Every byte of the store is read and written through this (the log's `Options::fs`), so
    /// the fault and power-loss suites reach the store as they reach the segments.
    fs: Arc<dyn FileSystem>,
    state: RwLock<State>,
    /// Serialises changes to the file (appends and rewrites). `true` once a failed append
    /// could not be undone: nothing more is written until the store is opened again.
    file: Mutex<bool>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring").field("path", &self.path).field("writable", &self.writable).finish_non_exhaustive()
    }
}

impl Keyring {
    /// Opens the key store at `path` for a writer, creating it (with generation 1) if there is
    /// none. A store written with another KEK is refused.
    pub fn open(path: impl AsRef<Path>, kek: Kek) -> Result<Arc<Keyring>> {
        Keyring::open_on(Arc::new(OsFs), path, kek)
    }

    /// [`Keyring::open`] through `fs`: give it the log's `Options::fs`.
    pub fn open_on(fs: Arc<dyn FileSystem>, path: impl AsRef<Path>, kek: Kek) -> Result<Arc<Keyring>> {
        let ring = Keyring::new(fs, path.as_ref(), kek, true);
        if ring.path.exists() {
            ring.load()?;
            if ring.state.read().generations.is_empty() {
                ring.add_generation()?;
            }
        } else {
            let first = random_key();
            ring.rewrite(&State { generations: BTreeMap::from([(1, first)]), streams: HashMap::new() })?;
            ring.state.write().generations.insert(1, first);
        }
        Ok(Arc::new(ring))
    }

    /// Opens an existing key store without ever writing it (a reader's). A secret created by
    /// a writer after this open is found by reading the file again.
    pub fn open_read_only(path: impl AsRef<Path>, kek: Kek) -> Result<Arc<Keyring>> {
        let ring = Keyring::new(Arc::new(OsFs), path.as_ref(), kek, false);
        ring.load()?;
        Ok(Arc::new(ring))
    }

    fn new(fs: Arc<dyn FileSystem>, path: &Path, kek: Kek, writable: bool) -> Keyring {
        let path = path.to_path_buf();
        Keyring { path, kek, writable, fs, state: RwLock::new(State::default()), file: Mutex::new(false) }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The generation new records are sealed with.
    pub fn current_generation(&self) -> u32 {
        self.state.read().generations.keys().next_back().copied().unwrap_or(0)
    }

    /// Every generation the store still holds, oldest first.
    pub fn generations(&self) -> Vec<u32> {
        self.state.read().generations.keys().copied().collect()
    }

    fn error(&self, detail: impl Into<String>) -> Error {
        Error::KeyStore { path: self.path.clone(), detail: detail.into() }
    }

    /// Whether every secret `stream` ever had was destroyed (and it has no new one yet).
    pub fn stream_shredded(&self, stream: &str) -> bool {
        self.state.read().streams.get(stream).is_some_and(|s| s.live.is_empty() && !s.shredded.is_empty())
    }

    /// Whether secret `number` of `stream` is still live (not destroyed).
    pub(crate) fn secret_live(&self, stream: &str, number: u32) -> bool {
        self.state.read().streams.get(stream).is_some_and(|s| s.live.contains_key(&number))
    }

    /// Whether `stream` has a live secret, so that [`Keyring::writer_key`] writes nothing.
    pub(crate) fn has_writer_key(&self, stream: &str) -> bool {
        self.state.read().streams.get(stream).is_some_and(|s| !s.live.is_empty())
    }

    /// The key a writer seals `stream`'s new records with, creating the stream's secret (durably,
    /// before any record uses it) if it has none.
    pub(crate) fn writer_key(&self, stream: &str) -> Result<StreamKey> {
        {
            let state = self.state.read();
            if let Some(key) = Self::stream_key(&state, stream) {
                return Ok(key);
            }
        }
        if !self.writable {
            return Err(self.error("a reader's key store creates no keys"));
        }
        let mut broken = self.file.lock();
        if let Some(key) = Self::stream_key(&self.state.read(), stream) {
            return Ok(key);
        }
        let number = self.state.read().streams.get(stream).map_or(1, StreamSecrets::next_number);
        let secret = random_key();
        self.append(&mut broken, &self.secret_entry(stream, number, &secret))?;
        self.state.write().streams.entry(stream.to_string()).or_default().live.insert(number, secret);
        Ok(Self::stream_key(&self.state.read(), stream).expect("just added"))
    }

    fn stream_key(state: &State, stream: &str) -> Option<StreamKey> {
        let (&number, secret) = state.streams.get(stream)?.live.iter().next_back()?;
        let (&generation, generation_key) = state.generations.iter().next_back()?;
        Some(StreamKey {
            generation,
            secret: number,
            record_key: record_key(generation_key, secret),
            digest_key: blake3::derive_key(CONTEXT_DIGEST, secret),
        })
    }

    /// The key of a record of `stream` sealed with `secret` and `generation`. A secret the
    /// store does not know is looked up again in the file (a writer in another process may have
    /// added it) before it is reported.
    pub(crate) fn record_key(&self, stream: &str, secret: u32, generation: u32) -> Result<RecordKey> {
        if let Some(found) = self.find(stream, secret, generation) {
            return Ok(found);
        }
        if !self.writable {
            self.load()?;
            if let Some(found) = self.find(stream, secret, generation) {
                return Ok(found);
            }
        }
        let state = self.state.read();
        if !state.generations.contains_key(&generation) {
            return Err(self.error(format!(
                "key generation {generation} is not in the store (it holds {:?}): was it retired, or is this \
                 another log's key store?",
                state.generations.keys().collect::<Vec<_>>()
            )));
        }
        Err(self.error(format!(
            "the store has no secret {secret} of stream {stream:?}: is this the key store of this log? (a store \
             is backed up separately from the log; restore the newest copy)"
        )))
    }

    fn find(&self, stream: &str, secret: u32, generation: u32) -> Option<RecordKey> {
        let state = self.state.read();
        let secrets = state.streams.get(stream)?;
        if secrets.shredded.contains(&secret) {
            return Some(RecordKey::Shredded);
        }
        let secret = secrets.live.get(&secret)?;
        Some(RecordKey::Key(record_key(state.generations.get(&generation)?, secret)))
    }

    /// Destroys every secret of `stream`: its records written so far can no longer be
    /// decrypted nor their digests confirmed from any copy of the log read with this store (an
    /// older copy of the store still holds them: docs/security.md). Returns how
    /// many secrets were destroyed. Records written after this get a new secret.
    pub fn shred(&self, stream: &str) -> Result<usize> {
        self.shred_through(stream, u32::MAX)
    }

    /// Destroys the secrets of `stream` numbered up to `through` (a later one, made after
    /// them, stays). Returns how many were destroyed: 0 when none was live.
    pub fn shred_through(&self, stream: &str, through: u32) -> Result<usize> {
        if !self.writable {
            return Err(self.error("a reader's key store destroys no keys"));
        }
        let mut broken = self.file.lock();
        let doomed = |state: &State| -> Vec<u32> {
            state.streams.get(stream).map_or_else(Vec::new, |s| s.live.range(..=through).map(|(&n, _)| n).collect())
        };
        // Checked before the whole state is copied: an open asks this of every erased stream.
        let numbers = doomed(&self.state.read());
        if numbers.is_empty() {
            return Ok(0);
        }
        let mut next = self.snapshot();
        let secrets = next.streams.get_mut(stream).expect("a stream with live secrets has an entry");
        for n in &numbers {
            secrets.live.remove(n);
            secrets.shredded.insert(*n);
        }
        self.rewrite(&next)?;
        *broken = false;
        *self.state.write() = next;
        self.remove_torn_tails()?;
        Ok(numbers.len())
    }

    /// The number of `stream`'s newest live secret: every record of it sealed so far used
    /// this one or an older one.
    pub(crate) fn newest_secret(&self, stream: &str) -> Option<u32> {
        self.state.read().streams.get(stream)?.live.keys().next_back().copied()
    }

    /// Removes every `keys.torn-*` beside the store: a dropped tail may be an entry holding the
    /// secret a shred destroys, and a shred leaves that secret in no file of the directory.
    fn remove_torn_tails(&self) -> Result<()> {
        let dir = self.path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let prefix = format!("{}.torn-", self.path.file_name().and_then(|n| n.to_str()).unwrap_or(KEY_STORE_FILE));
        let files = self.fs.list(dir).map_err(|e| Error::io("list the key store's directory", dir, e))?;
        let torn: Vec<&PathBuf> = files
            .iter()
            .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&prefix)))
            .collect();
        for file in &torn {
            self.fs.remove(file).map_err(|e| Error::io("remove a kept-aside key store tail", file, e))?;
        }
        if !torn.is_empty() {
            self.fs.sync_dir(dir).map_err(|e| Error::io("fsync directory", dir, e))?;
        }
        Ok(())
    }

    /// Adds a generation: records written from now on are sealed with it. Returns its number.
    pub fn rotate(&self) -> Result<u32> {
        if !self.writable {
            return Err(self.error("a reader's key store cannot rotate"));
        }
        self.add_generation()
    }

    fn add_generation(&self) -> Result<u32> {
        let mut broken = self.file.lock();
        let generation = self.current_generation() + 1;
        let key = random_key();
        self.append(&mut broken, &self.generation_entry(generation, &key))?;
        self.state.write().generations.insert(generation, key);
        Ok(generation)
    }

    /// Removes every generation older than `keep_from` from the store (once no record uses
    /// them). The current generation is never removed.
    pub fn retire_below(&self, keep_from: u32) -> Result<Vec<u32>> {
        if !self.writable {
            return Err(self.error("a reader's key store retires no keys"));
        }
        let mut broken = self.file.lock();
        let mut next = self.snapshot();
        let current = next.generations.keys().next_back().copied().unwrap_or(0);
        let retired: Vec<u32> = next.generations.keys().copied().filter(|&g| g < keep_from.min(current)).collect();
        if retired.is_empty() {
            return Ok(retired);
        }
        next.generations.retain(|g, _| !retired.contains(g));
        self.rewrite(&next)?;
        *broken = false;
        *self.state.write() = next;
        Ok(retired)
    }

    // ---- checkpoints ----

    /// Seals a checkpoint's content in place with the newest generation: XChaCha20-Poly1305
    /// under a key derived from the generation's key, a fresh random nonce, and `associated`
    /// (what binds the content to its checkpoint: snapshotter's format). The tag is appended.
    pub fn seal_checkpoint(&self, associated: &[u8], content: &mut Vec<u8>) -> Result<CheckpointSeal> {
        let (generation, key) = {
            let state = self.state.read();
            let (&generation, key) =
                state.generations.iter().next_back().ok_or_else(|| self.error("the store holds no generation"))?;
            (generation, blake3::derive_key(CONTEXT_CHECKPOINT, key))
        };
        let nonce = random_nonce();
        let tag = cipher(&key)
            .encrypt_in_place_detached(XNonce::from_slice(&nonce), associated, content)
            .map_err(|_| self.error("a checkpoint's content could not be sealed (too large for the cipher)"))?;
        content.extend_from_slice(&tag);
        Ok(CheckpointSeal { generation, nonce })
    }

    /// Opens content sealed by [`Keyring::seal_checkpoint`] in place (the tag is removed).
    /// `Err` names why: a generation the store no longer holds, or content that does not
    /// authenticate (damaged, or moved from another checkpoint).
    pub fn open_checkpoint(
        &self,
        seal: &CheckpointSeal,
        associated: &[u8],
        content: &mut Vec<u8>,
    ) -> std::result::Result<(), String> {
        let key = {
            let state = self.state.read();
            let key = state.generations.get(&seal.generation).ok_or_else(|| {
                format!(
                    "key generation {} sealed it and is not in the key store {} (it holds {:?}): was it retired?",
                    seal.generation,
                    self.path.display(),
                    state.generations.keys().collect::<Vec<_>>()
                )
            })?;
            blake3::derive_key(CONTEXT_CHECKPOINT, key)
        };
        let Some(tag_at) = content.len().checked_sub(TAG_LEN) else {
            return Err("a sealed content is shorter than its tag".to_string());
        };
        let tag = chacha20poly1305::Tag::clone_from_slice(&content[tag_at..]);
        content.truncate(tag_at);
        cipher(&key).decrypt_in_place_detached(XNonce::from_slice(&seal.nonce), associated, content, &tag).map_err(
            |_| {
                format!(
                    "it does not decrypt with key generation {}: it is damaged, or it was moved from another \
                     checkpoint",
                    seal.generation
                )
            },
        )
    }

    fn snapshot(&self) -> State {
        let state = self.state.read();
        State {
            generations: state.generations.clone(),
            streams: state
                .streams
                .iter()
                .map(|(name, s)| (name.clone(), StreamSecrets { live: s.live.clone(), shredded: s.shredded.clone() }))
                .collect(),
        }
    }

    // ---- the file ----

    fn header(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(STORE_HEADER_LEN);
        b.extend_from_slice(&STORE_MAGIC);
        b.extend_from_slice(&STORE_VERSION.to_le_bytes());
        b.extend_from_slice(&[0; 4]);
        b.extend_from_slice(&self.kek.check_value());
        let crc = salted_crc(&STORE_SALT, &b);
        b.extend_from_slice(&crc.to_le_bytes());
        b
    }

    fn wrap(&self, kind: u8, number: u32, name: &str, key: &[u8; KEY_LEN]) -> Vec<u8> {
        let cipher = XChaCha20Poly1305::new((&self.kek.0).into());
        let nonce = random_nonce();
        let mut sealed = key.to_vec();
        let tag = cipher
            .encrypt_in_place_detached(XNonce::from_slice(&nonce), &wrap_ad(kind, number, name), &mut sealed)
            .expect("32 bytes always seal");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        out.extend_from_slice(&tag);
        out
    }

    fn unwrap_key(&self, kind: u8, number: u32, name: &str, wrapped: &[u8]) -> Result<[u8; KEY_LEN]> {
        let cipher = XChaCha20Poly1305::new((&self.kek.0).into());
        let (nonce, rest) = wrapped.split_at(NONCE_LEN);
        let (sealed, tag) = rest.split_at(KEY_LEN);
        let mut key = [0u8; KEY_LEN];
        key.copy_from_slice(sealed);
        cipher
            .decrypt_in_place_detached(XNonce::from_slice(nonce), &wrap_ad(kind, number, name), &mut key, tag.into())
            .map_err(|_| {
                self.error(format!("entry {number} {name:?} does not unwrap with this key: it was altered"))
            })?;
        Ok(key)
    }

    fn generation_entry(&self, generation: u32, key: &[u8; KEY_LEN]) -> Vec<u8> {
        let mut body = generation.to_le_bytes().to_vec();
        body.extend_from_slice(&self.wrap(ENTRY_GENERATION, generation, "", key));
        entry(ENTRY_GENERATION, &body)
    }

    fn secret_entry(&self, stream: &str, number: u32, secret: &[u8; KEY_LEN]) -> Vec<u8> {
        let mut body = number.to_le_bytes().to_vec();
        body.extend_from_slice(&name_field(stream));
        body.extend_from_slice(&self.wrap(ENTRY_SECRET, number, stream, secret));
        entry(ENTRY_SECRET, &body)
    }

    /// Appends `entry` and fdatasyncs it; `broken` is the file lock's flag. A failed write or
    /// fdatasync leaves the store as it was (rewritten from the keys it holds): a partial or
    /// unsynced entry must never have a later one appended after it, or the next open would
    /// find damage before acknowledged secrets. If even that rewrite fails, the store takes no
    /// more keys until it is reopened (the open drops what a crash left at the end).
    fn append(&self, broken: &mut bool, entry: &[u8]) -> Result<()> {
        if *broken {
            return Err(self.error(
                "an earlier write to the key store failed and could not be undone: it takes no new keys until the \
                 log is opened again",
            ));
        }
        let result = (|| {
            let file = self.fs.open(&self.path).map_err(|e| Error::io("open key store", &self.path, e))?;
            let end = file.len().map_err(|e| Error::io("stat key store", &self.path, e))?;
            file.write_all_at(entry, end).map_err(|e| Error::io("append to key store", &self.path, e))?;
            file.sync_data().map_err(|e| Error::io("fdatasync key store", &self.path, e))
        })();
        if let Err(e) = &result {
            let undone = self.rewrite(&self.snapshot());
            tracing::error!(path = %self.path.display(), error = %e, undone = undone.is_ok(), "key store append failed");
            *broken = undone.is_err();
        }
        result
    }

    /// Writes `state` as a new file and renames it over the store: a crash leaves the old store
    /// or the new one.
    fn rewrite(&self, state: &State) -> Result<()> {
        let mut bytes = self.header();
        for (&generation, key) in &state.generations {
            bytes.extend_from_slice(&self.generation_entry(generation, key));
        }
        let mut names: Vec<&String> = state.streams.keys().collect();
        names.sort();
        for name in names {
            let secrets = &state.streams[name];
            for &number in &secrets.shredded {
                let mut body = number.to_le_bytes().to_vec();
                body.extend_from_slice(&name_field(name));
                bytes.extend_from_slice(&entry(ENTRY_SHREDDED, &body));
            }
            for (&number, secret) in &secrets.live {
                bytes.extend_from_slice(&self.secret_entry(name, number, secret));
            }
        }
        let tmp = self.path.with_extension("tmp");
        // A crash during an earlier rewrite may have left its temporary file.
        match self.fs.remove(&tmp) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(Error::io("remove key store leftover", &tmp, e));
            }
            _ => {}
        }
        let file = self.fs.create(&tmp).map_err(|e| Error::io("create key store", &tmp, e))?;
        file.write_all_at(&bytes, 0).map_err(|e| Error::io("write key store", &tmp, e))?;
        file.sync_data().map_err(|e| Error::io("fdatasync key store", &tmp, e))?;
        drop(file);
        self.fs.rename(&tmp, &self.path).map_err(|e| Error::io("rename key store", &self.path, e))?;
        let dir = self.path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        self.fs.sync_dir(dir).map_err(|e| Error::io("fsync directory", dir, e))
    }

    /// Reads the file into the state. A torn last entry (a crash while appending it, before
    /// anything used it) is ignored; a writer's next append goes after it.
    fn load(&self) -> Result<()> {
        let bytes = self.read_file()?;
        if bytes.len() < STORE_HEADER_LEN || bytes[..8] != STORE_MAGIC {
            return Err(self.error("not a cairn key store (bad magic)"));
        }
        let header = &bytes[..STORE_HEADER_LEN];
        let crc = u32::from_le_bytes(header[STORE_HEADER_LEN - 4..].try_into().expect("4 bytes"));
        if crc != salted_crc(&STORE_SALT, &header[..STORE_HEADER_LEN - 4]) {
            return Err(self.error("its header is damaged (CRC)"));
        }
        let version = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
        if version != STORE_VERSION {
            return Err(self.error(format!("key store version {version}; this build reads {STORE_VERSION}")));
        }
        if header[16..48] != self.kek.check_value() {
            return Err(self.error("it was written with another key: check --key-file / CAIRN_KEY_FILE / CAIRN_KEY"));
        }
        let mut state = State::default();
        let mut at = STORE_HEADER_LEN;
        while let Some((kind, body, next)) = next_entry(&bytes, at) {
            self.apply(&mut state, kind, body)?;
            at = next;
        }
        if at != bytes.len() && !torn_tail(&bytes, at) {
            // Damage before the last entry: cutting there would destroy every key after it.
            return Err(self.error(format!(
                "the entry at byte {at} is damaged and is not the last one: restore the key store from its backup"
            )));
        }
        if at != bytes.len() {
            if !self.writable {
                tracing::debug!(path = %self.path.display(), at, "key store ends in a partial entry");
            } else {
                // Drop the torn entry (never acknowledged, so nothing used it) so that the next
                // append follows the last whole one: the rewrite holds exactly what was read. A
                // damaged last entry cannot always be told from a torn one, so the dropped bytes
                // are kept aside first: nothing is destroyed. Only those bytes: a copy of the
                // whole store would keep every secret a later shred destroys.
                let aside = self.keep_aside(&bytes[at..])?;
                self.rewrite(&state)?;
                tracing::warn!(
                    path = %self.path.display(), at, aside = %aside.display(),
                    "key store: dropped a torn last entry; its bytes are kept aside"
                );
            }
        }
        *self.state.write() = state;
        Ok(())
    }

    /// Writes `bytes` (the dropped tail of the store) durably beside the store, as
    /// `keys.torn-<unix ms>`.
    fn keep_aside(&self, bytes: &[u8]) -> Result<PathBuf> {
        let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
        let name = format!("{}.torn-{ms}", self.path.file_name().and_then(|n| n.to_str()).unwrap_or(KEY_STORE_FILE));
        let aside = self.path.with_file_name(name);
        let file = self.fs.create(&aside).map_err(|e| Error::io("keep the key store aside", &aside, e))?;
        file.write_all_at(bytes, 0).map_err(|e| Error::io("keep the key store aside", &aside, e))?;
        file.sync_data().map_err(|e| Error::io("fdatasync key store copy", &aside, e))?;
        let dir = self.path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        self.fs.sync_dir(dir).map_err(|e| Error::io("fsync directory", dir, e))?;
        Ok(aside)
    }

    fn read_file(&self) -> Result<Vec<u8>> {
        let read = |e| Error::io("read key store", &self.path, e);
        let file = self.fs.open_read_only(&self.path).map_err(read)?;
        let len = file.len().map_err(read)?;
        let mut bytes = vec![0u8; usize::try_from(len).map_err(|_| self.error("the file is too large"))?];
        file.read_exact_at(&mut bytes, 0).map_err(read)?;
        Ok(bytes)
    }

    fn apply(&self, state: &mut State, kind: u8, body: &[u8]) -> Result<()> {
        let damaged = || self.error("an entry is damaged");
        let number = u32::from_le_bytes(body.get(..4).ok_or_else(damaged)?.try_into().expect("4 bytes"));
        match kind {
            ENTRY_GENERATION => {
                let wrapped = body.get(4..).filter(|w| w.len() == NONCE_LEN + KEY_LEN + TAG_LEN).ok_or_else(damaged)?;
                state.generations.insert(number, self.unwrap_key(kind, number, "", wrapped)?);
            }
            ENTRY_SECRET | ENTRY_SHREDDED => {
                let len = usize::from(u16::from_le_bytes(body.get(4..6).ok_or_else(damaged)?.try_into().expect("2")));
                let name = body.get(6..6 + len).and_then(|n| std::str::from_utf8(n).ok()).ok_or_else(damaged)?;
                let secrets = state.streams.entry(name.to_string()).or_default();
                if kind == ENTRY_SHREDDED {
                    secrets.live.remove(&number);
                    secrets.shredded.insert(number);
                } else if !secrets.shredded.contains(&number) {
                    let wrapped =
                        body.get(6 + len..).filter(|w| w.len() == NONCE_LEN + KEY_LEN + TAG_LEN).ok_or_else(damaged)?;
                    let secret = self.unwrap_key(kind, number, name, wrapped)?;
                    secrets.live.insert(number, secret);
                }
            }
            _ => return Err(self.error(format!("an entry of unknown kind {kind}"))),
        }
        Ok(())
    }
}

fn record_key(generation_key: &[u8; KEY_LEN], secret: &[u8; KEY_LEN]) -> [u8; KEY_LEN] {
    let mut material = [0u8; 2 * KEY_LEN];
    material[..KEY_LEN].copy_from_slice(generation_key);
    material[KEY_LEN..].copy_from_slice(secret);
    blake3::derive_key(CONTEXT_RECORD, &material)
}

fn wrap_ad(kind: u8, number: u32, name: &str) -> Vec<u8> {
    let mut ad = vec![kind];
    ad.extend_from_slice(&number.to_le_bytes());
    ad.extend_from_slice(name.as_bytes());
    ad
}

fn name_field(name: &str) -> Vec<u8> {
    let len = u16::try_from(name.len()).expect("stream names are at most 256 bytes");
    let mut out = len.to_le_bytes().to_vec();
    out.extend_from_slice(name.as_bytes());
    out
}

/// An entry: CRC (salt `cairnKEY`) of the rest, body length u32, kind u8, body.
fn entry(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; 4];
    out.extend_from_slice(&u32::try_from(body.len()).expect("entries are small").to_le_bytes());
    out.push(kind);
    out.extend_from_slice(body);
    let crc = salted_crc(&STORE_SALT, &out[4..]);
    out[..4].copy_from_slice(&crc.to_le_bytes());
    out
}

/// The entry at `at`: its kind, body and where the next begins; `None` at the end or at a
/// torn or damaged entry.
fn next_entry(bytes: &[u8], at: usize) -> Option<(u8, &[u8], usize)> {
    let head = bytes.get(at..at + 9)?;
    let len = u32::from_le_bytes(head[4..8].try_into().expect("4 bytes")) as usize;
    if len > ENTRY_BODY_MAX {
        return None;
    }
    let end = at + 9 + len;
    let covered = bytes.get(at + 4..end)?;
    let crc = u32::from_le_bytes(head[..4].try_into().expect("4 bytes"));
    (crc == salted_crc(&STORE_SALT, covered)).then(|| (head[8], &bytes[at + 9..end], end))
}

/// Whether the bytes from `at` on are a torn last entry (a crash while appending it, so never
/// acknowledged): no whole, CRC-valid entry starts anywhere after `at` (a torn entry's bytes,
/// or the zeros of a file system that committed the new size before the data). Damage with a
/// whole entry after it is not torn: dropping it would destroy acknowledged secrets.
fn torn_tail(bytes: &[u8], at: usize) -> bool {
    !(at + 1..bytes.len()).any(|from| next_entry(bytes, from).is_some())
}

/// Keyed BLAKE3 of a payload: what the chain hashes for an encrypted record.
pub(crate) fn keyed_digest(digest_key: &[u8; KEY_LEN], bytes: &[u8]) -> [u8; 32] {
    *blake3::keyed_hash(digest_key, bytes).as_bytes()
}

/// XChaCha20-Poly1305 with a record key.
pub(crate) fn cipher(key: &[u8; KEY_LEN]) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new(key.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn kek() -> Kek {
        Kek::from_hex(&"11".repeat(32)).unwrap()
    }

    #[test]
    fn secrets_survive_reopen_and_shredding_is_for_good() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_STORE_FILE);
        let ring = Keyring::open(&path, kek()).unwrap();
        let a = ring.writer_key("a").unwrap();
        let b = ring.writer_key("b").unwrap();
        assert_eq!((a.generation, a.secret), (1, 1));
        drop(ring);
        let ring = Keyring::open(&path, kek()).unwrap();
        let RecordKey::Key(key) = ring.record_key("a", 1, 1).unwrap() else { panic!("a shredded") };
        assert_eq!(key, a.record_key);
        assert_eq!(ring.shred("a").unwrap(), 1);
        assert!(matches!(ring.record_key("a", 1, 1).unwrap(), RecordKey::Shredded));
        let again = ring.writer_key("a").unwrap();
        assert_eq!(again.secret, 2, "a stream written after shredding gets a new secret");
        drop(ring);
        let ring = Keyring::open_read_only(&path, kek()).unwrap();
        assert!(matches!(ring.record_key("a", 1, 1).unwrap(), RecordKey::Shredded));
        assert!(matches!(ring.record_key("b", 1, 1).unwrap(), RecordKey::Key(k) if k == b.record_key));
        // The shredded secret's bytes are in no byte of the file.
        let bytes = std::fs::read(&path).unwrap();
        assert!(!bytes.windows(32).any(|w| w == a.record_key || w == a.digest_key));
    }

    #[test]
    fn another_kek_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_STORE_FILE);
        drop(Keyring::open(&path, kek()).unwrap());
        let err = Keyring::open(&path, Kek::from_hex(&"22".repeat(32)).unwrap()).unwrap_err();
        assert!(err.to_string().contains("another key"), "{err}");
    }

    #[test]
    fn rotation_keeps_old_generations_until_retired() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_STORE_FILE);
        let ring = Keyring::open(&path, kek()).unwrap();
        let old = ring.writer_key("s").unwrap();
        assert_eq!(ring.rotate().unwrap(), 2);
        let new = ring.writer_key("s").unwrap();
        assert_eq!((new.generation, new.secret), (2, 1));
        assert_eq!(new.digest_key, old.digest_key, "rotation keeps the digest key: no chain hash changes");
        assert_ne!(new.record_key, old.record_key);
        assert_eq!(ring.retire_below(2).unwrap(), vec![1]);
        drop(ring);
        let ring = Keyring::open(&path, kek()).unwrap();
        assert_eq!(ring.generations(), vec![2]);
        let Err(err) = ring.record_key("s", 1, 1) else { panic!("generation 1 was retired") };
        assert!(err.to_string().contains("generation 1"), "{err}");
    }

    /// Damage in a middle entry is refused, never cut: a cut there would destroy every later key.
    #[test]
    fn a_damaged_middle_entry_refuses_the_open_and_cuts_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_STORE_FILE);
        let ring = Keyring::open(&path, kek()).unwrap();
        for stream in ["a", "b", "c"] {
            ring.writer_key(stream).unwrap();
        }
        drop(ring);
        let mut bytes = std::fs::read(&path).unwrap();
        let len = bytes.len();
        // The first stream secret's entry follows the header and generation 1's entry.
        let at = STORE_HEADER_LEN + 9 + 4 + NONCE_LEN + KEY_LEN + TAG_LEN + 12;
        bytes[at] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let err = Keyring::open(&path, kek()).unwrap_err();
        assert!(err.to_string().contains("is damaged and is not the last one"), "{err}");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), len as u64, "nothing was cut");
        assert!(Keyring::open_read_only(&path, kek()).is_err());
    }

    #[test]
    fn a_torn_last_entry_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_STORE_FILE);
        let ring = Keyring::open(&path, kek()).unwrap();
        ring.writer_key("a").unwrap();
        drop(ring);
        let len = std::fs::metadata(&path).unwrap().len();
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(&[7, 7, 7]).unwrap();
        let ring = Keyring::open(&path, kek()).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), len);
        assert!(matches!(ring.record_key("a", 1, 1).unwrap(), RecordKey::Key(_)));
    }

    /// A store on a fault-injecting file system, and its path.
    fn faulty() -> (tempfile::TempDir, PathBuf, crate::faults::FaultFs, Arc<Keyring>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_STORE_FILE);
        let fs = crate::faults::FaultFs::new();
        let ring = Keyring::open_on(Arc::new(fs.clone()), &path, kek()).unwrap();
        (dir, path, fs, ring)
    }

    const ENOSPC: i32 = 28;

    /// A secret whose append failed halfway (a full disk) leaves no partial entry for the next
    /// secret to follow: the store reopens, and the later stream's key is there.
    #[test]
    fn a_short_write_leaves_the_store_as_it_was() {
        let (_dir, path, fs, ring) = faulty();
        ring.writer_key("a").unwrap();
        fs.inject_short_write(0, ENOSPC);
        assert!(ring.writer_key("b").is_err());
        fs.clear_injections();
        let c = ring.writer_key("c").unwrap();
        drop(ring);
        let ring = Keyring::open(&path, kek()).unwrap();
        assert!(
            matches!(ring.record_key("c", c.secret, c.generation).unwrap(), RecordKey::Key(k) if k == c.record_key)
        );
        assert!(ring.record_key("b", 1, 1).is_err(), "the failed secret was never stored");
    }

    /// A power cut during an append on a file system that commits the size before the data
    /// leaves zeros at the end: that is a torn tail (never acknowledged), not damage.
    #[test]
    fn a_tail_of_zeros_is_a_torn_entry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_STORE_FILE);
        let ring = Keyring::open(&path, kek()).unwrap();
        let a = ring.writer_key("a").unwrap();
        drop(ring);
        let entry_len = 9 + 4 + 2 + 1 + NONCE_LEN + KEY_LEN + TAG_LEN;
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(&vec![0; entry_len]).unwrap();
        let ring = Keyring::open(&path, kek()).unwrap();
        assert!(matches!(ring.record_key("a", 1, 1).unwrap(), RecordKey::Key(k) if k == a.record_key));
        let b = ring.writer_key("b").unwrap();
        drop(ring);
        let ring = Keyring::open_read_only(&path, kek()).unwrap();
        assert!(matches!(ring.record_key("b", 1, 1).unwrap(), RecordKey::Key(k) if k == b.record_key));
    }

    /// A flipped bit in the length of an entry that is not the last makes its declared end run
    /// past the file: still damage before whole entries, refused, never cut.
    #[test]
    fn a_flipped_length_in_a_middle_entry_is_refused_not_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_STORE_FILE);
        let ring = Keyring::open(&path, kek()).unwrap();
        ring.writer_key("a").unwrap();
        let b_at = std::fs::read(&path).unwrap().len();
        ring.writer_key("b").unwrap();
        ring.writer_key("c").unwrap();
        drop(ring);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[b_at + 5] ^= 1; // b's length + 256: its end is past the file
        std::fs::write(&path, &bytes).unwrap();
        let err = Keyring::open(&path, kek()).unwrap_err();
        assert!(err.to_string().contains("is not the last one"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "nothing was cut");
    }

    /// A store in `dir` with secrets for "a" and then "c", and a bit flipped in "c"'s entry (the
    /// last): its path, "a"'s key, and the store's bytes as damaged.
    fn damaged_last_entry(dir: &Path) -> (PathBuf, StreamKey, Vec<u8>) {
        let path = dir.join(KEY_STORE_FILE);
        let ring = Keyring::open(&path, kek()).unwrap();
        let a = ring.writer_key("a").unwrap();
        ring.writer_key("c").unwrap();
        drop(ring);
        let mut bytes = std::fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n - 20] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        (path, a, bytes)
    }

    /// A dropped tail (torn, or a damaged last entry: the two cannot always be told apart) is
    /// kept aside, never destroyed.
    #[test]
    fn a_dropped_last_entry_is_kept_aside() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _, bytes) = damaged_last_entry(dir.path());
        let n = bytes.len();
        drop(Keyring::open(&path, kek()).unwrap());
        let aside: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with("keys.torn-"))
            .collect();
        assert_eq!(aside.len(), 1, "the dropped tail is kept aside");
        let kept = std::fs::read(&aside[0]).unwrap();
        assert!(!kept.is_empty() && bytes.ends_with(&kept) && kept.len() < n - STORE_HEADER_LEN, "only the tail");
    }

    /// A shred leaves the destroyed secret in no file of the directory: not in the store, and
    /// not in a tail an earlier open kept aside (before the fix, that copy was the whole store).
    #[test]
    fn a_shredded_secret_opens_from_no_file_after_a_torn_tail_was_kept_aside() {
        let dir = tempfile::tempdir().unwrap();
        let (path, a, _) = damaged_last_entry(dir.path());
        // The next writer's open keeps the damaged entry aside.
        let ring = Keyring::open(&path, kek()).unwrap();
        assert_eq!(ring.shred("a").unwrap(), 1);
        drop(ring);
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let file = entry.unwrap().path();
            assert!(!file.file_name().unwrap().to_str().unwrap().contains(".torn-"), "{} is left", file.display());
            if let Ok(copy) = Keyring::open_read_only(&file, kek()) {
                assert!(
                    !matches!(copy.record_key("a", a.secret, a.generation), Ok(RecordKey::Key(k)) if k == a.record_key),
                    "the shredded secret of a still opens from {}",
                    file.display()
                );
            }
        }
    }
}
