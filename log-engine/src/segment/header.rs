//! The segment header (first 128 bytes of the file) and the trailer (last 64 bytes of a sealed
//! segment): pure encode and decode.

use super::layout::{
    FORMAT_VERSION, FORMAT_VERSION_FLAGS, FORMAT_VERSION_OLDEST, HEADER_CAPACITY, HEADER_CRC, HEADER_CREATED,
    HEADER_FLAGS, HEADER_FLAGS_KNOWN, HEADER_FLAG_ENCRYPTED, HEADER_ID, HEADER_MAGIC, HEADER_PREV_HASH, HEADER_SALT,
    HEADER_USED, HEADER_VERSION, MAGIC, TRAILER_CRC, TRAILER_FOOTER_LEN, TRAILER_FOOTER_OFFSET, TRAILER_IDS_LEN,
    TRAILER_LEN, TRAILER_MAGIC, TRAILER_MAGIC_FIELD, TRAILER_SALT,
};
use crate::cast::usize_of;
use crate::error::{CorruptionKind, HeaderDamage};
use crate::field::{salted_crc, u32_in, u64_in};
use crate::types::{ChainHash, SegmentId};

/// The segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegmentHeader {
    /// The format version: [`FORMAT_VERSION`] for every segment this build creates, or an
    /// older one it reads.
    pub version: u32,
    pub id: SegmentId,
    pub capacity: u64,
    /// Chain hash at `id - 1` (the genesis hash for the first segment).
    pub prev_hash: ChainHash,
    pub created_ms: u64,
    /// Header flags ([`HEADER_FLAGS_KNOWN`]); 0 in a segment older than version 5.
    pub flags: u32,
}

impl SegmentHeader {
    pub(crate) fn encode(&self) -> [u8; HEADER_USED] {
        let mut b = [0u8; HEADER_USED];
        b[HEADER_MAGIC.range()].copy_from_slice(&MAGIC);
        b[HEADER_VERSION.range()].copy_from_slice(&self.version.to_le_bytes());
        assert!(
            self.flags & !HEADER_FLAGS_KNOWN == 0 && (self.flags == 0 || self.version >= FORMAT_VERSION_FLAGS),
            "header flags {:#x} in a version {} segment",
            self.flags,
            self.version
        );
        b[HEADER_FLAGS.range()].copy_from_slice(&self.flags.to_le_bytes());
        b[HEADER_ID.range()].copy_from_slice(&self.id.0.to_le_bytes());
        b[HEADER_CAPACITY.range()].copy_from_slice(&self.capacity.to_le_bytes());
        b[HEADER_PREV_HASH.range()].copy_from_slice(&self.prev_hash.0);
        b[HEADER_CREATED.range()].copy_from_slice(&self.created_ms.to_le_bytes());
        let crc = salted_crc(&HEADER_SALT, &b[..HEADER_CRC.at]);
        b[HEADER_CRC.range()].copy_from_slice(&crc.to_le_bytes());
        b
    }

    pub(crate) fn decode(b: &[u8]) -> Result<SegmentHeader, CorruptionKind> {
        let bad = |damage| CorruptionKind::SegmentHeader(Box::new(damage));
        if b.len() < HEADER_USED {
            return Err(bad(HeaderDamage::Short { len: b.len() }));
        }
        if b[HEADER_MAGIC.range()] != MAGIC {
            return Err(bad(HeaderDamage::Magic));
        }
        let (stored, computed) = (u32_in(b, HEADER_CRC), salted_crc(&HEADER_SALT, &b[..HEADER_CRC.at]));
        if stored != computed {
            return Err(bad(HeaderDamage::Crc { stored, computed }));
        }
        let version = u32_in(b, HEADER_VERSION);
        if !(FORMAT_VERSION_OLDEST..=FORMAT_VERSION).contains(&version) {
            return Err(bad(HeaderDamage::Version {
                found: version,
                oldest: FORMAT_VERSION_OLDEST,
                supported: FORMAT_VERSION,
            }));
        }
        // Before version 5 the field was reserved (written as zero, never read).
        let flags = if version >= FORMAT_VERSION_FLAGS { u32_in(b, HEADER_FLAGS) } else { 0 };
        if flags & !HEADER_FLAGS_KNOWN != 0 {
            return Err(bad(HeaderDamage::Flags { flags }));
        }
        let mut prev = [0u8; 32];
        prev.copy_from_slice(&b[HEADER_PREV_HASH.range()]);
        Ok(SegmentHeader {
            version,
            id: SegmentId(u64_in(b, HEADER_ID)),
            capacity: u64_in(b, HEADER_CAPACITY),
            prev_hash: ChainHash(prev),
            created_ms: u64_in(b, HEADER_CREATED),
            flags,
        })
    }

    /// Whether the segment was written to an encrypted log ([`HEADER_FLAG_ENCRYPTED`]).
    pub(crate) fn encrypted(&self) -> bool {
        self.flags & HEADER_FLAG_ENCRYPTED != 0
    }

    /// The flags of a new segment: encrypted when the log is.
    pub(crate) fn flags_for(encrypted: bool) -> u32 {
        if encrypted {
            HEADER_FLAG_ENCRYPTED
        } else {
            0
        }
    }
}

/// The trailer: the last 64 bytes of a sealed segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Trailer {
    pub footer_offset: u64,
    pub footer_len: u64,
    /// Length of the id record, which starts at `footer_offset + footer_len`.
    pub ids_len: u64,
}

impl Trailer {
    pub(crate) fn encode(&self) -> [u8; usize_of(TRAILER_LEN)] {
        let mut b = [0u8; usize_of(TRAILER_LEN)];
        b[TRAILER_MAGIC_FIELD.range()].copy_from_slice(&TRAILER_MAGIC);
        b[TRAILER_FOOTER_OFFSET.range()].copy_from_slice(&self.footer_offset.to_le_bytes());
        b[TRAILER_FOOTER_LEN.range()].copy_from_slice(&self.footer_len.to_le_bytes());
        b[TRAILER_IDS_LEN.range()].copy_from_slice(&self.ids_len.to_le_bytes());
        let crc = salted_crc(&TRAILER_SALT, &b[..TRAILER_CRC.at]);
        b[TRAILER_CRC.range()].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// `None` when the trailer area is not a valid trailer (the segment is not sealed).
    pub(crate) fn decode(b: &[u8]) -> Option<Trailer> {
        if b.len() != usize_of(TRAILER_LEN) || b[TRAILER_MAGIC_FIELD.range()] != TRAILER_MAGIC {
            return None;
        }
        if u32_in(b, TRAILER_CRC) != salted_crc(&TRAILER_SALT, &b[..TRAILER_CRC.at]) {
            return None;
        }
        Some(Trailer {
            footer_offset: u64_in(b, TRAILER_FOOTER_OFFSET),
            footer_len: u64_in(b, TRAILER_FOOTER_LEN),
            ids_len: u64_in(b, TRAILER_IDS_LEN),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_every_bit_flip() {
        let h = SegmentHeader {
            version: FORMAT_VERSION,
            id: SegmentId(42),
            capacity: 1 << 20,
            prev_hash: ChainHash::genesis(),
            created_ms: 7,
            flags: HEADER_FLAG_ENCRYPTED,
        };
        let b = h.encode();
        assert_eq!(SegmentHeader::decode(&b).unwrap(), h);
        for bit in 0..HEADER_USED * 8 {
            let mut d = b;
            d[bit / 8] ^= 1 << (bit % 8);
            assert!(SegmentHeader::decode(&d).is_err(), "bit {bit}");
        }
    }

    /// An unknown flag is refused even under a valid CRC; a version 4 header's reserved bytes
    /// are not read as flags.
    #[test]
    fn unknown_flags_are_refused_and_old_headers_have_none() {
        let h = SegmentHeader {
            version: FORMAT_VERSION,
            id: SegmentId(0),
            capacity: 1 << 20,
            prev_hash: ChainHash::genesis(),
            created_ms: 7,
            flags: 0,
        };
        let mut b = h.encode();
        b[HEADER_FLAGS.range()].copy_from_slice(&2u32.to_le_bytes());
        let crc = salted_crc(&HEADER_SALT, &b[..HEADER_CRC.at]);
        b[HEADER_CRC.range()].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(
            SegmentHeader::decode(&b),
            Err(CorruptionKind::SegmentHeader(d)) if matches!(*d, HeaderDamage::Flags { flags: 2 })
        ));
        let old = SegmentHeader { version: 4, ..h }.encode();
        assert_eq!(SegmentHeader::decode(&old).unwrap().flags, 0);
    }

    #[test]
    fn trailer_round_trip_and_every_bit_flip() {
        let t = Trailer { footer_offset: 8192, footer_len: 400, ids_len: 128 };
        let b = t.encode();
        assert_eq!(Trailer::decode(&b), Some(t));
        for bit in 0..b.len() * 8 {
            let mut d = b;
            d[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(Trailer::decode(&d), None, "bit {bit}");
        }
    }
}
