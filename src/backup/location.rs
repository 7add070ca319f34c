//! [`Location`]: where a backup is written or read, named by a URL and reached through the
//! `object_store` crate, so that every destination is the same code.
//!
//! Accepted: `s3://BUCKET/PREFIX` (any S3-compatible service, reached through the `bucket`
//! crate with the usual `AWS_*` settings), `file:///absolute/dir` and a plain path (a relative
//! path is taken from the current directory: only the command line accepts one, see
//! [`Location::parse_absolute`]). Nothing is created or contacted when a location is parsed: a
//! destination's directories are made by the first write, and a source that is not there holds
//! no backup.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::ObjectStore;

/// Why a backup URL was refused.
#[derive(Debug, thiserror::Error)]
#[error("invalid backup location {url:?}: {reason}")]
pub struct LocationError {
    pub url: String,
    pub reason: String,
}

/// A backup destination or source: an object store and the prefix under which the backup lives.
#[derive(Clone, Debug)]
pub struct Location {
    pub store: Arc<dyn ObjectStore>,
    pub prefix: ObjectPath,
    /// The URL as given, for messages.
    pub url: String,
}

impl Location {
    /// Parses `url`: `s3://BUCKET/PREFIX`, `file:///DIR` or a plain path.
    pub fn parse(url: &str) -> Result<Location, LocationError> {
        let refuse = |reason: &str| LocationError { url: url.to_string(), reason: reason.to_string() };
        if url.is_empty() {
            return Err(refuse("it is empty"));
        }
        if url.starts_with("s3://") {
            let bucket = bucket::Location::parse(url)
                .and_then(|location| location.open())
                .map_err(|e| refuse(&e.to_string()))?;
            let (store, prefix) = bucket.object_store();
            let prefix = ObjectPath::parse(prefix).map_err(|e| refuse(&e.to_string()))?;
            return Ok(Location { store, prefix, url: bucket.location().to_string() });
        }
        let path = match url.split_once("://") {
            Some(("file", rest)) => {
                if !rest.starts_with('/') {
                    return Err(refuse("a file:// URL names an absolute path: file:///path/to/dir"));
                }
                PathBuf::from(rest)
            }
            Some((scheme, _)) => {
                return Err(refuse(&format!(
                    "the scheme {scheme}:// is not supported here; use s3://BUCKET/PREFIX, file:///DIR or a path"
                )))
            }
            None => PathBuf::from(url),
        };
        Location::directory(&path).map_err(|reason| refuse(&reason))
    }

    /// [`Location::parse`] for a location named to a server: a relative path is refused, since
    /// the server would resolve it against its own working directory, not the caller's.
    pub fn parse_absolute(url: &str) -> Result<Location, LocationError> {
        if is_relative_path(url) {
            return Err(LocationError {
                url: url.to_string(),
                reason: "it is a relative path, which the server would resolve against its own working \
                         directory: give an absolute path, a file:///DIR URL or an s3:// URL"
                    .to_string(),
            });
        }
        Location::parse(url)
    }

    /// A local directory (need not exist yet).
    pub fn directory(dir: &Path) -> Result<Location, String> {
        let absolute = if dir.is_absolute() {
            dir.to_path_buf()
        } else {
            std::env::current_dir().map_err(|e| format!("cannot read the current directory: {e}"))?.join(dir)
        };
        let prefix = ObjectPath::from_absolute_path(&absolute).map_err(|e| e.to_string())?;
        Ok(Location { store: Arc::new(LocalFileSystem::new()), prefix, url: format!("file://{}", absolute.display()) })
    }

    /// The object at `key` (a `/`-separated path) under this location's prefix.
    pub fn key(&self, key: &str) -> ObjectPath {
        key.split('/').fold(self.prefix.clone(), |path, part| path.clone().join(part))
    }
}

/// True when `url` is a plain path that is not absolute (no scheme, no leading `/`).
pub fn is_relative_path(url: &str) -> bool {
    !url.contains("://") && !Path::new(url).is_absolute()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_urls_and_paths_name_the_same_directory() {
        let a = Location::parse("file:///tmp/backups/one").unwrap();
        let b = Location::parse("/tmp/backups/one").unwrap();
        assert_eq!(a.prefix, b.prefix);
        assert_eq!(a.key("manifests/x.json").as_ref(), "tmp/backups/one/manifests/x.json");
    }

    #[test]
    fn unknown_schemes_and_relative_file_urls_are_refused() {
        for url in ["ftp://host/x", "file://relative/x", ""] {
            let e = Location::parse(url).unwrap_err();
            assert_eq!(e.url, url);
        }
    }

    #[test]
    fn a_server_refuses_a_relative_path_and_takes_absolute_ones() {
        for url in ["backups", "./backups", "../x/backups"] {
            let e = Location::parse_absolute(url).unwrap_err();
            assert!(e.reason.contains("relative path"), "{e}");
        }
        for url in ["/tmp/backups", "file:///tmp/backups"] {
            assert!(Location::parse_absolute(url).is_ok(), "{url}");
        }
    }

    #[test]
    fn an_s3_url_names_its_bucket_and_prefix() {
        let at = Location::parse("s3://backups/cairn/prod/").unwrap();
        assert_eq!(at.url, "s3://backups/cairn/prod");
        assert_eq!(at.key("manifests/x.json").as_ref(), "cairn/prod/manifests/x.json");
        assert_eq!(Location::parse("s3://backups").unwrap().key("segments/a").as_ref(), "segments/a");
        assert!(Location::parse("s3://b/a/../etc").is_err());
    }
}
