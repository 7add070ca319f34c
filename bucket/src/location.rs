//! [`Location`]: the one way a backup, an archive or a restore names where its objects are.
//!
//! Three spellings, checked before anything is touched:
//! - `s3://BUCKET/PREFIX` (the prefix may be empty or nested: `s3://backups/cairn/prod`), in
//!   any S3-compatible service; the endpoint, region and credentials come from the
//!   environment (see the crate docs);
//! - `file:///ABSOLUTE/PATH`, a local directory;
//! - a path without a scheme (`backups/prod`, `/srv/backups`), the same as `file://`, so that
//!   commands that took a directory keep taking one.
//!
//! A prefix never holds an empty, `.` or `..` segment: every object named under a location
//! stays under it.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::error::{Error, Result};

/// The longest location text accepted (S3 keys are at most 1,024 bytes, and a prefix leaves
/// room for the object names under it).
pub const LOCATION_LEN_MAX: usize = 512;

/// Where objects are: a local directory or a bucket and prefix in an S3-compatible service.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Location {
    kind: Kind,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    /// A local directory (created when the location is opened).
    File { dir: PathBuf },
    /// A bucket and a prefix inside it: `/`-joined segments, none empty, `""` for the root.
    S3 { bucket: String, prefix: String },
}

impl Location {
    /// Parses `s3://BUCKET/PREFIX`, `file:///PATH` or a plain path (see the module docs).
    ///
    /// ```
    /// use bucket::Location;
    /// let archive: Location = "s3://backups/cairn/prod/".parse()?;
    /// assert_eq!(archive.to_string(), "s3://backups/cairn/prod");
    /// assert_eq!(archive.object_url("log/x.seg"), "s3://backups/cairn/prod/log/x.seg");
    /// assert_eq!("file:///srv/backups".parse::<Location>()?.local_dir(), Some(std::path::Path::new("/srv/backups")));
    /// assert!("s3://".parse::<Location>().is_err());
    /// assert!("s3://b/a/../../etc".parse::<Location>().is_err());
    /// # Ok::<(), bucket::Error>(())
    /// ```
    pub fn parse(text: &str) -> Result<Location> {
        let invalid = |reason: &str| Error::InvalidLocation { text: text.to_string(), reason: reason.to_string() };
        if text.is_empty() {
            return Err(invalid("it is empty"));
        }
        if text.len() > LOCATION_LEN_MAX {
            return Err(invalid(&format!("it is longer than {LOCATION_LEN_MAX} bytes")));
        }
        if text.chars().any(char::is_control) {
            return Err(invalid("it holds a control character"));
        }
        if let Some(rest) = text.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            check_bucket_name(bucket).map_err(|reason| invalid(&reason))?;
            let prefix = prefix.strip_suffix('/').unwrap_or(prefix);
            if !prefix.is_empty() {
                for segment in prefix.split('/') {
                    if segment.is_empty() || segment == "." || segment == ".." {
                        return Err(invalid("its prefix holds an empty, `.` or `..` segment"));
                    }
                }
            }
            return Ok(Location { kind: Kind::S3 { bucket: bucket.to_string(), prefix: prefix.to_string() } });
        }
        if let Some(rest) = text.strip_prefix("file://") {
            if !rest.starts_with('/') {
                return Err(invalid("a file:// location takes an absolute path (file:///srv/backups)"));
            }
            return Ok(Location { kind: Kind::File { dir: PathBuf::from(rest) } });
        }
        if let Some((scheme, _)) = text.split_once("://") {
            return Err(invalid(&format!("the scheme {scheme}:// is not supported (use s3:// or file://)")));
        }
        Ok(Location { kind: Kind::File { dir: PathBuf::from(text) } })
    }

    /// A local directory, as given.
    pub fn local(dir: &Path) -> Location {
        Location { kind: Kind::File { dir: dir.to_path_buf() } }
    }

    /// The directory of a local location; `None` for a bucket.
    pub fn local_dir(&self) -> Option<&Path> {
        match &self.kind {
            Kind::File { dir } => Some(dir),
            Kind::S3 { .. } => None,
        }
    }

    /// Whether this is a bucket in an S3-compatible service.
    pub fn is_s3(&self) -> bool {
        matches!(self.kind, Kind::S3 { .. })
    }

    /// The full address of the object `name` under this location, for messages and reports.
    pub fn object_url(&self, name: &str) -> String {
        let base = self.to_string();
        if base.ends_with('/') {
            format!("{base}{name}")
        } else {
            format!("{base}/{name}")
        }
    }

    /// This location with `sub` (`/`-separated relative segments) appended to its prefix.
    pub fn join(&self, sub: &str) -> Result<Location> {
        Location::parse(&self.object_url(sub.trim_matches('/')))
    }

    pub(crate) fn kind(&self) -> &Kind {
        &self.kind
    }
}

/// S3's rules for a bucket name, checked here so a typo fails with a sentence, not an HTTP 400.
fn check_bucket_name(bucket: &str) -> std::result::Result<(), String> {
    if bucket.is_empty() {
        return Err("it names no bucket (s3://BUCKET/PREFIX)".to_string());
    }
    if !(3..=63).contains(&bucket.len()) {
        return Err(format!("the bucket name {bucket:?} is not 3 to 63 characters long"));
    }
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
    if !bucket.chars().all(allowed) {
        return Err(format!("the bucket name {bucket:?} may hold only lowercase letters, digits, `-` and `.`"));
    }
    Ok(())
}

impl FromStr for Location {
    type Err = Error;

    fn from_str(text: &str) -> Result<Location> {
        Location::parse(text)
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            Kind::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
            Kind::File { dir } if dir.is_absolute() => write!(f, "file://{}", dir.display()),
            Kind::File { dir } => write!(f, "{}", dir.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_parse_to_their_kind_and_print_back() {
        for (text, shown) in [
            ("s3://backups", "s3://backups"),
            ("s3://backups/", "s3://backups"),
            ("s3://backups/cairn/prod", "s3://backups/cairn/prod"),
            ("s3://my.bucket-1/p/", "s3://my.bucket-1/p"),
            ("file:///srv/backups", "file:///srv/backups"),
            ("/srv/backups", "file:///srv/backups"),
            ("relative/dir", "relative/dir"),
        ] {
            let location = Location::parse(text).unwrap();
            assert_eq!(location.to_string(), shown, "{text}");
            assert_eq!(Location::parse(shown).unwrap(), location, "{shown} parses back to {text}'s location");
        }
        assert!(Location::parse("s3://b1c/x").unwrap().is_s3());
        assert_eq!(Location::parse("relative/dir").unwrap().local_dir(), Some(Path::new("relative/dir")));
    }

    #[test]
    fn malformed_locations_are_refused_with_the_reason() {
        for (text, reason) in [
            ("", "empty"),
            ("s3://", "names no bucket"),
            ("s3:///prefix", "names no bucket"),
            ("s3://ab", "3 to 63"),
            ("s3://Backups", "lowercase"),
            ("s3://backups//x", "empty"),
            ("s3://backups/a/../b", "`..`"),
            ("s3://backups/./b", "`.`"),
            ("file://relative", "absolute path"),
            ("gs://bucket/x", "gs:// is not supported"),
            ("s3://backups/a\nb", "control character"),
        ] {
            let err = Location::parse(text).unwrap_err().to_string();
            assert!(err.contains(reason), "{text:?}: {err}");
        }
        let long = format!("s3://backups/{}", "a".repeat(LOCATION_LEN_MAX));
        assert!(Location::parse(&long).unwrap_err().to_string().contains("longer than"));
    }

    #[test]
    fn join_and_object_urls_stay_under_the_prefix() {
        let root = Location::parse("s3://backups").unwrap();
        assert_eq!(root.object_url("a/b"), "s3://backups/a/b");
        assert_eq!(root.join("archive/").unwrap().to_string(), "s3://backups/archive");
        assert!(root.join("../other").is_err());
        let local = Location::parse("/srv/b").unwrap();
        assert_eq!(local.join("x").unwrap().local_dir(), Some(Path::new("/srv/b/x")));
    }
}
