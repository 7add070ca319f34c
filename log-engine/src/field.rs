//! Fixed-layout fields: each on-disk structure's offsets are named constants, each defined from
//! the one before it, so that a field's offset is never a number typed twice. Each structure's
//! module lists its fields in docs/format.md's order (a `…_FIELDS` table), asserts at compile
//! time that they end where the structure does, and tests the table against docs/format.md.
//! The salted CRC every structure's checksum uses lives here too, so that the key store, the
//! extent record and segment headers need nothing of record.rs.

use std::ops::Range;

/// CRC-32 of `salt` followed by `bytes`: every on-disk structure's checksum, each with its own
/// salt so that zero-filled space, or one structure's bytes read as another's, never validates.
pub(crate) fn salted_crc(salt: &[u8], bytes: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(salt);
    h.update(bytes);
    h.finalize()
}

/// A field of a fixed-layout structure: where it starts and how many bytes it takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Field {
    pub at: usize,
    pub len: usize,
}

impl Field {
    /// The first field of a structure.
    pub(crate) const fn first(len: usize) -> Field {
        Field { at: 0, len }
    }

    /// The field right after this one.
    pub(crate) const fn then(self, len: usize) -> Field {
        Field { at: self.at + self.len, len }
    }

    pub(crate) const fn end(self) -> usize {
        self.at + self.len
    }

    pub(crate) const fn range(self) -> Range<usize> {
        self.at..self.at + self.len
    }
}

/// True when `fields` follow one another from offset 0 without a gap and end at `len`.
pub(crate) const fn contiguous(fields: &[Field], len: usize) -> bool {
    let mut at = 0;
    let mut i = 0;
    while i < fields.len() {
        if fields[i].at != at {
            return false;
        }
        at += fields[i].len;
        i += 1;
    }
    at == len
}

/// Reads a little-endian `u64` field.
pub(crate) fn u64_in(b: &[u8], field: Field) -> u64 {
    u64::from_le_bytes(b[field.range()].try_into().expect("an 8-byte field"))
}

/// Reads a little-endian `u32` field.
pub(crate) fn u32_in(b: &[u8], field: Field) -> u32 {
    u32::from_le_bytes(b[field.range()].try_into().expect("a 4-byte field"))
}

#[cfg(test)]
pub(crate) mod doc {
    //! Reading docs/format.md's tables, to check the constants against the document.

    use super::Field;

    const FORMAT_MD: &str = include_str!("../../docs/format.md");

    /// The body rows (after the column names and the rule) of the first table after the heading
    /// that starts with `heading`, as cells.
    pub(crate) fn table(heading: &str) -> Vec<Vec<String>> {
        let mut lines = FORMAT_MD.lines().skip_while(|l| !l.starts_with(heading));
        assert!(lines.next().is_some(), "docs/format.md has no heading {heading:?}");
        lines
            .skip_while(|l| !l.starts_with('|'))
            .take_while(|l| l.starts_with('|'))
            .skip(2)
            .map(|l| l.trim_matches('|').split('|').map(|c| c.trim().to_string()).collect())
            .collect()
    }

    /// The (offset, size) rows of the table after `heading` whose two first cells are numbers.
    pub(crate) fn fields(heading: &str) -> Vec<Field> {
        table(heading)
            .iter()
            .filter_map(|cells| Some(Field { at: cells[0].parse().ok()?, len: cells.get(1)?.parse().ok()? }))
            .collect()
    }

    /// Asserts that docs/format.md's table after `heading` lists exactly `fields`.
    pub(crate) fn assert_fields(heading: &str, fields: &[Field]) {
        assert_eq!(
            super::doc::fields(heading),
            fields,
            "docs/format.md's table under {heading:?} and the code disagree"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_follow_one_another() {
        let a = Field::first(8);
        let b = a.then(4);
        assert_eq!((b.at, b.end(), b.range()), (8, 12, 8..12));
        assert!(contiguous(&[a, b], 12));
        assert!(!contiguous(&[a, b], 16));
        assert!(!contiguous(&[b, a], 12));
    }
}
