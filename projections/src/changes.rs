//! Change tracking for [`crate::Projection::changes_since_mark`]: the set of entry keys touched
//! since the last mark.
//!
//! A view records every entry key it upserts or removes; when asked for changes it looks each
//! touched key up in its current state: present means upsert, absent means removal. So a key
//! written and then removed within one epoch is reported once, as a removal, and the tracker
//! never needs to know the values. It does not order or encode entries; the view does.

use std::collections::HashSet;

use crate::projection::Changes;

/// Entry keys touched since the last mark.
#[derive(Debug, Default, Clone)]
pub(crate) struct Touched {
    keys: HashSet<Vec<u8>>,
}

impl Touched {
    /// Records that the entry under `key` was upserted or removed.
    pub(crate) fn touch(&mut self, key: &[u8]) {
        // Look up before inserting: most touches hit a key already touched in this epoch, and
        // the lookup spares their allocation.
        if !self.keys.contains(key) {
            self.keys.insert(key.to_vec());
        }
    }

    pub(crate) fn clear(&mut self) {
        self.keys.clear();
    }

    /// The changes: each touched key with its current encoded value (`lookup` returns `None`
    /// for a key no longer present, which makes it a removal). Sorted by key.
    pub(crate) fn changes(&self, mut lookup: impl FnMut(&[u8]) -> Option<Vec<u8>>) -> Changes {
        let mut keys: Vec<&Vec<u8>> = self.keys.iter().collect();
        keys.sort_unstable();
        let mut changes = Changes::default();
        for key in keys {
            match lookup(key) {
                Some(value) => changes.upserts.push((key.clone(), value)),
                None => changes.removals.push(key.clone()),
            }
        }
        changes
    }
}

/// rmp-serde encoding of an entry value, with field names: structs with optional fields that
/// are skipped when absent only round-trip as maps. Encoding an in-memory value cannot fail:
/// every value the views store is plain data (strings, numbers, maps with string keys).
pub(crate) fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    rmp_serde::to_vec_named(value).expect("view entries are plain data and always encode")
}

/// Decodes an entry value, naming the projection and key in the error.
pub(crate) fn decode<T: serde::de::DeserializeOwned>(
    projection: &str,
    key: &[u8],
    bytes: &[u8],
) -> Result<T, crate::projection::LoadError> {
    rmp_serde::from_slice(bytes).map_err(|e| crate::projection::LoadError {
        projection: projection.to_string(),
        message: format!("entry {} does not decode: {e}", String::from_utf8_lossy(key)),
    })
}
