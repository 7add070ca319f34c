//! [`Location`]: where a backup is written or read, named by a URL and reached through the
//! `object_store` crate, so that every destination is the same code.
//!
//! Accepted: `file:///absolute/dir` and a plain path (relative paths are taken from the current
//! directory). Nothing is created or checked when a location is parsed: a destination's
//! directories are made by the first write, and a source that is not there holds no backup.

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
    /// Parses `url`: `file:///DIR` or a plain path.
    pub fn parse(url: &str) -> Result<Location, LocationError> {
        let refuse = |reason: &str| LocationError { url: url.to_string(), reason: reason.to_string() };
        if url.is_empty() {
            return Err(refuse("it is empty"));
        }
        let path = match url.split_once("://") {
            Some(("file", rest)) => {
                if !rest.starts_with('/') {
                    return Err(refuse("a file:// URL names an absolute path: file:///path/to/dir"));
                }
                PathBuf::from(rest)
            }
            Some((scheme, _)) => {
                return Err(refuse(&format!("the scheme {scheme}:// is not supported here; use file:///DIR or a path")))
            }
            None => PathBuf::from(url),
        };
        Location::directory(&path).map_err(|reason| refuse(&reason))
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
}
