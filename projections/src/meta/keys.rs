//! Entry keys of the metadata view: a one-byte tag naming the registry, then the record's
//! identity as NUL-separated names (names never contain control characters, so NUL cannot
//! occur in them), then, for versioned records, the version as 4 big-endian bytes so that
//! versions sort numerically.

use super::rules;
use crate::projection::LoadError;

pub(crate) const TAG_SCHEMA_MODE: u8 = b'm';
pub(crate) const TAG_SCHEMA_VERSION: u8 = b's';
pub(crate) const TAG_SERVICE: u8 = b'v';
pub(crate) const TAG_CONFIG: u8 = b'c';
pub(crate) const TAG_RELATION: u8 = b'r';

/// Builds a key: tag, names joined by NUL, and an optional version (after one more NUL).
pub(crate) fn key(tag: u8, names: &[&str], version: Option<u32>) -> Vec<u8> {
    let mut k = vec![tag];
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            k.push(0);
        }
        k.extend_from_slice(name.as_bytes());
    }
    if let Some(v) = version {
        k.push(0);
        k.extend_from_slice(&v.to_be_bytes());
    }
    k
}

/// Splits a key (without its tag) into `names` names and, if `versioned`, a version.
pub(crate) fn split(rest: &[u8], names: usize, versioned: bool) -> Result<(Vec<String>, Option<u32>), LoadError> {
    let bad = || LoadError {
        projection: rules::VIEW_NAME.to_string(),
        message: format!("malformed entry key {}", String::from_utf8_lossy(rest)),
    };
    let mut out = Vec::with_capacity(names);
    let mut rest = rest;
    for i in 0..names {
        let last = i + 1 == names && !versioned;
        let end = if last { rest.len() } else { rest.iter().position(|&b| b == 0).ok_or_else(bad)? };
        out.push(String::from_utf8(rest[..end].to_vec()).map_err(|_| bad())?);
        rest = if last { &[] } else { &rest[end + 1..] };
    }
    let version = if versioned {
        let bytes: [u8; 4] = rest.try_into().map_err(|_| bad())?;
        Some(u32::from_be_bytes(bytes))
    } else {
        None
    };
    Ok((out, version))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_split_back_and_sort_versions_numerically() {
        let k = key(TAG_CONFIG, &["global", "db/url"], Some(256));
        assert_eq!(split(&k[1..], 2, true).unwrap(), (vec!["global".to_string(), "db/url".to_string()], Some(256)));
        let k = key(TAG_RELATION, &["a", "owns", "b"], None);
        assert_eq!(split(&k[1..], 3, false).unwrap().0, vec!["a", "owns", "b"]);
        assert!(key(TAG_SCHEMA_VERSION, &["s"], Some(2)) < key(TAG_SCHEMA_VERSION, &["s"], Some(10)));
        assert!(split(b"only-one", 2, false).is_err());
    }
}
