//! Where cairn's copies go and come from: a [`Location`] (`s3://BUCKET/PREFIX` in any
//! S3-compatible service, or a local directory) and a [`Bucket`], the objects under it.
//!
//! Every request goes through the `object_store` crate (its S3 client, or its local file
//! system store), never a hand-written S3 client. S3 settings come from the environment, as
//! every S3 tool reads them: `AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_ALLOW_HTTP`.
//!
//! Invariants:
//! - An object appears whole or not at all: one request up to [`PART_SIZE`], a multipart
//!   upload above (completed atomically by the service, aborted on failure); a local object is
//!   written to a temporary file, fsynced and renamed, with its directory fsynced.
//! - Object names are relative to the location and cannot leave its prefix.
//! - A request is retried a bounded number of times ([`REQUEST_RETRIES_MAX`], within
//!   [`REQUEST_RETRY_TIMEOUT`]), so an unreachable service is an error in bounded time.
//! - Uploads and downloads stream through bounded buffers and return the BLAKE3 digest of
//!   what they moved ([`Transfer`]); reads of a whole object take a size bound.
//!
//! This crate knows nothing of segments, checkpoints or manifests: what goes where, and how
//! it is checked, belongs to its callers.
//!
//! ```
//! # let dir = tempfile::tempdir().unwrap();
//! use bucket::Location;
//! let location = Location::parse(&format!("file://{}", dir.path().join("backups").display()))?;
//! let bucket = location.open_blocking()?;
//! bucket.put("notes/hello", "hi".into())?;
//! assert_eq!(bucket.get("notes/hello", 1024)?, "hi");
//! assert_eq!(bucket.list("notes")?[0].name, "notes/hello");
//! assert!(bucket.get("notes/absent", 1024).unwrap_err().is_not_found());
//! # Ok::<(), bucket::Error>(())
//! ```

mod error;
mod location;
mod store;

pub use crate::error::{Error, Result};
pub use crate::location::{Location, LOCATION_LEN_MAX};
pub use crate::store::{
    BlockingBucket, Bucket, Object, Transfer, CONNECT_TIMEOUT, PARTS_IN_FLIGHT, PART_SIZE, REQUEST_RETRIES_MAX,
    REQUEST_RETRY_TIMEOUT, REQUEST_TIMEOUT,
};
