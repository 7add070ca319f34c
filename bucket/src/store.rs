//! [`Bucket`]: the objects under a [`Location`], through `object_store`; [`BlockingBucket`]
//! for callers on plain threads.
//!
//! Object names are relative to the location's prefix and `/`-separated (`log/0042.seg`).
//! Uploads and downloads stream through bounded buffers and hash what they move with BLAKE3,
//! so a caller checks a digest without reading a file twice.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{BackoffConfig, ClientConfigKey, ObjectStore, ObjectStoreExt, RetryConfig, WriteMultipart};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::error::{Error, Result};
use crate::location::{Kind, Location};

/// A file larger than this is uploaded in parts of this size (S3's smallest part is 5 MiB);
/// smaller ones in one request. Either way the object appears whole or not at all.
pub const PART_SIZE: usize = 8 << 20;
/// Parts of one upload in flight at once: the memory an upload holds is this many parts.
pub const PARTS_IN_FLIGHT: usize = 2;
/// A request is retried this many times on a transient failure (a connection refused, a 5xx)
/// before its error is returned.
pub const REQUEST_RETRIES_MAX: usize = 3;
/// ... and never for longer than this since its first attempt, so an unreachable bucket is an
/// error in bounded time; a caller that must keep trying (the archiver) retries with its own
/// backoff.
pub const REQUEST_RETRY_TIMEOUT: Duration = Duration::from_secs(20);
/// Connecting to the service gives up after this long.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// One request (a part of an upload, a download's whole body) gives up after this long.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// What an upload or a download moved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transfer {
    pub bytes: u64,
    /// BLAKE3 of the bytes moved.
    pub digest: blake3::Hash,
}

/// An object under a location: its name (relative to the location) and size.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Object {
    pub name: String,
    pub size: u64,
}

/// The objects under one [`Location`]. Cheap to clone; every method is async (see
/// [`BlockingBucket`] for plain threads).
#[derive(Clone, Debug)]
pub struct Bucket {
    location: Location,
    store: Arc<dyn ObjectStore>,
    /// The location's prefix inside the store (empty for a local directory, whose store is
    /// rooted at it).
    prefix: String,
}

impl Location {
    /// The object store behind this location. A local directory is created (with its
    /// parents) if it does not exist; a bucket is not contacted until the first request.
    ///
    /// S3 settings come from the environment: `AWS_ENDPOINT_URL`, `AWS_REGION`,
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_ALLOW_HTTP` (`true` for a plain-HTTP
    /// endpoint), and the other `AWS_*` variables `object_store` reads. Requests use
    /// path-style addressing, which every S3-compatible service accepts.
    pub fn open(&self) -> Result<Bucket> {
        let setup = |detail: String| Error::Setup { location: self.to_string(), detail };
        let (store, prefix): (Arc<dyn ObjectStore>, String) = match self.kind() {
            Kind::File { dir } => {
                std::fs::create_dir_all(dir).map_err(|e| Error::io("create the directory", dir, e))?;
                let store = LocalFileSystem::new_with_prefix(dir).map_err(|e| setup(e.to_string()))?;
                // Durable like an object in S3 once written: the file and its directory fsynced.
                (Arc::new(store.with_fsync(true)), String::new())
            }
            Kind::S3 { bucket, prefix } => {
                let retry = RetryConfig {
                    backoff: BackoffConfig::default(),
                    max_retries: REQUEST_RETRIES_MAX,
                    retry_timeout: REQUEST_RETRY_TIMEOUT,
                };
                let store = AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .with_retry(retry)
                    .with_config(
                        AmazonS3ConfigKey::Client(ClientConfigKey::ConnectTimeout),
                        format!("{}ms", CONNECT_TIMEOUT.as_millis()),
                    )
                    .with_config(
                        AmazonS3ConfigKey::Client(ClientConfigKey::Timeout),
                        format!("{}ms", REQUEST_TIMEOUT.as_millis()),
                    )
                    .build()
                    .map_err(|e| setup(e.to_string()))?;
                (Arc::new(store), prefix.clone())
            }
        };
        Ok(Bucket { location: self.clone(), store, prefix })
    }

    /// [`Location::open`] with a runtime of its own, for callers on plain threads.
    pub fn open_blocking(&self) -> Result<BlockingBucket> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Setup { location: self.to_string(), detail: format!("no async runtime: {e}") })?;
        Ok(BlockingBucket { bucket: self.open()?, runtime })
    }
}

impl Bucket {
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// The `object_store` client underneath and the prefix its object paths start with (empty
    /// for a local directory), for code that drives `object_store` itself.
    pub fn object_store(&self) -> (Arc<dyn ObjectStore>, &str) {
        (self.store.clone(), &self.prefix)
    }

    /// The store path of object `name`, refusing a name that would leave the prefix.
    fn path(&self, name: &str) -> Result<ObjectPath> {
        let full = if self.prefix.is_empty() { name.to_string() } else { format!("{}/{name}", self.prefix) };
        ObjectPath::parse(&full).map_err(|e| Error::InvalidLocation {
            text: self.location.object_url(name),
            reason: format!("not an object name: {e}"),
        })
    }

    fn url(&self, name: &str) -> String {
        self.location.object_url(name)
    }

    /// Writes `bytes` as object `name` (replacing it), in one request.
    pub async fn put(&self, name: &str, bytes: Bytes) -> Result<()> {
        let path = self.path(name)?;
        self.store.put(&path, bytes.into()).await.map_err(|e| Error::request("upload", self.url(name), e))?;
        Ok(())
    }

    /// Uploads the whole file `from` as object `name`.
    pub async fn put_file(&self, name: &str, from: &Path) -> Result<Transfer> {
        let len = tokio::fs::metadata(from).await.map_err(|e| Error::io("read the size of", from, e))?.len();
        self.put_file_prefix(name, from, len).await
    }

    /// Uploads the first `len` bytes of file `from` as object `name` (replacing it): in one
    /// request up to [`PART_SIZE`], in parts above. The object appears whole or not at all;
    /// a failed multipart upload is aborted.
    pub async fn put_file_prefix(&self, name: &str, from: &Path, len: u64) -> Result<Transfer> {
        let path = self.path(name)?;
        let mut file = tokio::fs::File::open(from).await.map_err(|e| Error::io("open for upload", from, e))?;
        let mut hasher = blake3::Hasher::new();
        let part = u64::try_from(PART_SIZE).expect("PART_SIZE fits in u64");
        if len <= part {
            let mut buf = vec![0; usize::try_from(len).expect("at most PART_SIZE")];
            file.read_exact(&mut buf).await.map_err(|e| Error::io("read for upload", from, e))?;
            hasher.update(&buf);
            self.store.put(&path, buf.into()).await.map_err(|e| Error::request("upload", self.url(name), e))?;
            return Ok(Transfer { bytes: len, digest: hasher.finalize() });
        }
        let upload =
            self.store.put_multipart(&path).await.map_err(|e| Error::request("start uploading", self.url(name), e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        let mut buf = vec![0; PART_SIZE];
        let mut sent = 0u64;
        while sent < len {
            let n = usize::try_from((len - sent).min(part)).expect("at most PART_SIZE");
            if let Err(e) = file.read_exact(&mut buf[..n]).await {
                let _ = writer.abort().await;
                return Err(Error::io("read for upload", from, e));
            }
            if let Err(e) = writer.wait_for_capacity(PARTS_IN_FLIGHT).await {
                let _ = writer.abort().await;
                return Err(Error::request("upload", self.url(name), e));
            }
            hasher.update(&buf[..n]);
            writer.write(&buf[..n]);
            sent += n as u64;
        }
        // `finish` aborts the upload itself when a part or the completion fails.
        writer.finish().await.map_err(|e| Error::request("finish uploading", self.url(name), e))?;
        Ok(Transfer { bytes: len, digest: hasher.finalize() })
    }

    /// Reads object `name` whole, refusing one larger than `max` bytes before reading it.
    pub async fn get(&self, name: &str, max: u64) -> Result<Bytes> {
        let path = self.path(name)?;
        let found = self.store.get(&path).await.map_err(|e| Error::request("download", self.url(name), e))?;
        if found.meta.size > max {
            return Err(Error::TooLarge { object: self.url(name), size: found.meta.size, max });
        }
        found.bytes().await.map_err(|e| Error::request("download", self.url(name), e))
    }

    /// Downloads object `name` into the new file `to` (which must not exist), fsynced, and
    /// refuses an object larger than `max` bytes. A failed download removes the file.
    pub async fn get_to_file(&self, name: &str, to: &Path, max: u64) -> Result<Transfer> {
        let result = self.download(name, to, max).await;
        if result.is_err() {
            // The file may not exist yet, or be partial: either way it must not stay.
            let _ = tokio::fs::remove_file(to).await;
        }
        result
    }

    async fn download(&self, name: &str, to: &Path, max: u64) -> Result<Transfer> {
        let path = self.path(name)?;
        let found = self.store.get(&path).await.map_err(|e| Error::request("download", self.url(name), e))?;
        if found.meta.size > max {
            return Err(Error::TooLarge { object: self.url(name), size: found.meta.size, max });
        }
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(to)
            .await
            .map_err(|e| Error::io("create", to, e))?;
        let mut hasher = blake3::Hasher::new();
        let mut bytes = 0u64;
        let mut chunks = found.into_stream();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|e| Error::request("download", self.url(name), e))?;
            bytes += chunk.len() as u64;
            if bytes > max {
                return Err(Error::TooLarge { object: self.url(name), size: bytes, max });
            }
            hasher.update(&chunk);
            file.write_all(&chunk).await.map_err(|e| Error::io("write", to, e))?;
        }
        file.sync_all().await.map_err(|e| Error::io("fsync", to, e))?;
        Ok(Transfer { bytes, digest: hasher.finalize() })
    }

    /// The object `name`'s size, or `None` when it does not exist.
    pub async fn head(&self, name: &str) -> Result<Option<Object>> {
        let path = self.path(name)?;
        match self.store.head(&path).await {
            Ok(meta) => Ok(Some(Object { name: name.to_string(), size: meta.size })),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(Error::request("look up", self.url(name), e)),
        }
    }

    /// Every object whose name starts with `under/` (all objects for `""`), sorted by name.
    pub async fn list(&self, under: &str) -> Result<Vec<Object>> {
        let under = under.trim_matches('/');
        let prefix = match (self.prefix.is_empty(), under.is_empty()) {
            (true, true) => None,
            (true, false) => Some(self.path(under)?),
            (false, true) => Some(ObjectPath::from(self.prefix.as_str())),
            (false, false) => Some(self.path(under)?),
        };
        let base = if self.prefix.is_empty() { String::new() } else { format!("{}/", self.prefix) };
        let mut objects = Vec::new();
        let mut listing = self.store.list(prefix.as_ref());
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(|e| Error::request("list", self.location.object_url(under), e))?;
            let full = meta.location.as_ref();
            let name = full.strip_prefix(&base).unwrap_or(full).to_string();
            objects.push(Object { name, size: meta.size });
        }
        objects.sort();
        Ok(objects)
    }

    /// Removes object `name`; one that does not exist is not an error.
    pub async fn delete(&self, name: &str) -> Result<()> {
        let path = self.path(name)?;
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(Error::request("delete", self.url(name), e)),
        }
    }
}

/// A [`Bucket`] with a runtime of its own: the same operations, blocking. For plain threads
/// only: calling it (or dropping it) from inside an async task panics, as any nested tokio
/// runtime does; async code uses [`BlockingBucket::bucket`].
#[derive(Debug)]
pub struct BlockingBucket {
    bucket: Bucket,
    runtime: tokio::runtime::Runtime,
}

impl BlockingBucket {
    pub fn location(&self) -> &Location {
        self.bucket.location()
    }

    /// The async bucket underneath.
    pub fn bucket(&self) -> &Bucket {
        &self.bucket
    }

    pub fn put(&self, name: &str, bytes: Bytes) -> Result<()> {
        self.runtime.block_on(self.bucket.put(name, bytes))
    }

    pub fn put_file(&self, name: &str, from: &Path) -> Result<Transfer> {
        self.runtime.block_on(self.bucket.put_file(name, from))
    }

    pub fn put_file_prefix(&self, name: &str, from: &Path, len: u64) -> Result<Transfer> {
        self.runtime.block_on(self.bucket.put_file_prefix(name, from, len))
    }

    pub fn get(&self, name: &str, max: u64) -> Result<Bytes> {
        self.runtime.block_on(self.bucket.get(name, max))
    }

    pub fn get_to_file(&self, name: &str, to: &Path, max: u64) -> Result<Transfer> {
        self.runtime.block_on(self.bucket.get_to_file(name, to, max))
    }

    pub fn head(&self, name: &str) -> Result<Option<Object>> {
        self.runtime.block_on(self.bucket.head(name))
    }

    pub fn list(&self, under: &str) -> Result<Vec<Object>> {
        self.runtime.block_on(self.bucket.list(under))
    }

    pub fn delete(&self, name: &str) -> Result<()> {
        self.runtime.block_on(self.bucket.delete(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(dir: &Path) -> BlockingBucket {
        Location::local(&dir.join("objects")).open_blocking().unwrap()
    }

    #[test]
    fn a_file_round_trips_in_one_request_and_in_parts_with_its_digest() {
        let dir = tempfile::tempdir().unwrap();
        let bucket = local(dir.path());
        for len in [0usize, 1, PART_SIZE, PART_SIZE + 1, 2 * PART_SIZE + 12_345] {
            let content: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let from = dir.path().join(format!("in-{len}"));
            std::fs::write(&from, &content).unwrap();
            let name = format!("files/{len}.bin");
            let up = bucket.put_file(&name, &from).unwrap();
            assert_eq!((up.bytes, up.digest), (len as u64, blake3::hash(&content)), "upload of {len} bytes");
            let to = dir.path().join(format!("out-{len}"));
            let down = bucket.get_to_file(&name, &to, u64::MAX).unwrap();
            assert_eq!(down, up, "download of {len} bytes");
            assert!(std::fs::read(&to).unwrap() == content, "{len} bytes came back changed");
        }
        let names: Vec<_> = bucket.list("files").unwrap().into_iter().map(|o| o.name).collect();
        assert_eq!(names.len(), 5, "{names:?}");
        assert!(names.iter().all(|n| n.starts_with("files/")), "{names:?}");
    }

    #[test]
    fn a_prefix_of_a_file_uploads_only_that_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let bucket = local(dir.path());
        let from = dir.path().join("segment");
        std::fs::write(&from, b"durable bytes, then zeros\0\0\0\0").unwrap();
        let up = bucket.put_file_prefix("seg", &from, 13).unwrap();
        assert_eq!(up.digest, blake3::hash(b"durable bytes"));
        assert_eq!(bucket.get("seg", 100).unwrap(), "durable bytes");
    }

    #[test]
    fn bounds_and_absent_objects_are_errors_that_leave_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let bucket = local(dir.path());
        bucket.put("big", vec![7u8; 100].into()).unwrap();
        let err = bucket.get("big", 99).unwrap_err();
        assert!(matches!(err, Error::TooLarge { size: 100, max: 99, .. }), "{err}");
        let to = dir.path().join("big.out");
        assert!(matches!(bucket.get_to_file("big", &to, 99).unwrap_err(), Error::TooLarge { .. }));
        assert!(!to.exists(), "a refused download left its file");
        assert!(bucket.get_to_file("absent", &to, 99).unwrap_err().is_not_found());
        assert!(!to.exists());
        assert_eq!(bucket.head("absent").unwrap(), None);
        assert_eq!(bucket.head("big").unwrap(), Some(Object { name: "big".into(), size: 100 }));
        bucket.delete("big").unwrap();
        bucket.delete("big").unwrap();
        assert_eq!(bucket.head("big").unwrap(), None);
    }

    #[test]
    fn a_name_cannot_leave_the_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let bucket = local(dir.path());
        for name in ["../escape", "a/../../b", "a//b"] {
            assert!(matches!(bucket.put(name, "x".into()).unwrap_err(), Error::InvalidLocation { .. }), "{name}");
        }
        assert!(!dir.path().join("escape").exists());
    }

    #[test]
    fn an_s3_location_opens_without_contacting_the_service() {
        // Building the client reads settings only; the first request is what reaches out.
        let bucket = Location::parse("s3://cairn-test/prefix").unwrap().open_blocking().unwrap();
        assert_eq!(bucket.location().to_string(), "s3://cairn-test/prefix");
        assert_eq!(bucket.bucket().path("log/a").unwrap().as_ref(), "prefix/log/a");
    }
}
