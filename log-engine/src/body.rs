//! The fast path for reading an event or husk body: the msgpack array of five fields that
//! `record.rs` writes (docs/format.md, "Event body"), parsed by hand into borrowed slices.
//!
//! Why: decoding bodies through `rmp_serde`'s generic deserializer was about a third of a
//! replay's CPU (`Log::for_each`), more than the CRC. Every body the engine writes has one
//! shape: a fixarray of 5, then str, bin, str, bin, bin (stream, id, type, and metadata and data
//! for an event, or the two payload digests for a husk). This module reads exactly that shape
//! and nothing else: any other byte (another array length, a field in another msgpack type,
//! invalid UTF-8, a length past the end, trailing bytes) makes it return `None`, and the caller
//! decodes the body with `rmp_serde` as before, which accepts or refuses it with the same result
//! and the same error as ever. So this changes no byte on disk and no verdict on any input, only
//! how fast the common shape is read. Pure code: no I/O, no `unsafe`, bounds checked everywhere.

/// The five fields of a body, borrowed from it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Five<'a> {
    pub stream: &'a str,
    pub id: &'a [u8],
    pub event_type: &'a str,
    /// An event's metadata, or a husk's metadata digest.
    pub first: &'a [u8],
    /// An event's data, or a husk's data digest.
    pub second: &'a [u8],
}

/// msgpack markers of the shape read here (the msgpack specification's names).
const FIXARRAY_5: u8 = 0x95;
const FIXSTR_MIN: u8 = 0xa0;
const FIXSTR_MAX: u8 = 0xbf;
const STR8: u8 = 0xd9;
const STR16: u8 = 0xda;
const STR32: u8 = 0xdb;
const BIN8: u8 = 0xc4;
const BIN16: u8 = 0xc5;
const BIN32: u8 = 0xc6;

struct Cursor<'a> {
    bytes: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.bytes.len() {
            return None;
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Some(head)
    }

    fn byte(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    /// A big-endian length of `n` bytes (1, 2 or 4).
    fn len(&mut self, n: usize) -> Option<usize> {
        let be = self.take(n)?;
        Some(be.iter().fold(0usize, |acc, &b| (acc << 8) | usize::from(b)))
    }

    fn str(&mut self) -> Option<&'a str> {
        let len = match self.byte()? {
            m @ FIXSTR_MIN..=FIXSTR_MAX => usize::from(m - FIXSTR_MIN),
            STR8 => self.len(1)?,
            STR16 => self.len(2)?,
            STR32 => self.len(4)?,
            _ => return None,
        };
        std::str::from_utf8(self.take(len)?).ok()
    }

    fn bin(&mut self) -> Option<&'a [u8]> {
        let len = match self.byte()? {
            BIN8 => self.len(1)?,
            BIN16 => self.len(2)?,
            BIN32 => self.len(4)?,
            _ => return None,
        };
        self.take(len)
    }
}

/// The body's five fields if it has exactly the shape the engine writes; `None` otherwise (the
/// caller then decodes it the general way).
pub(crate) fn five(body: &[u8]) -> Option<Five<'_>> {
    let mut at = Cursor { bytes: body };
    if at.byte()? != FIXARRAY_5 {
        return None;
    }
    let five = Five { stream: at.str()?, id: at.bin()?, event_type: at.str()?, first: at.bin()?, second: at.bin()? };
    at.bytes.is_empty().then_some(five)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serialize;

    #[derive(Serialize)]
    struct Out<'a> {
        stream: &'a str,
        #[serde(with = "serde_bytes")]
        id: &'a [u8],
        event_type: &'a str,
        #[serde(with = "serde_bytes")]
        first: &'a [u8],
        #[serde(with = "serde_bytes")]
        second: &'a [u8],
    }

    fn encode(out: &Out<'_>) -> Vec<u8> {
        rmp_serde::encode::to_vec(out).unwrap()
    }

    /// Every length class of every field (fix/8/16/32-bit headers) round-trips through the
    /// encoder the engine uses.
    #[test]
    fn reads_what_the_encoder_writes_at_every_length_class() {
        let long = "s".repeat(70_000);
        let bytes = vec![7u8; 70_000];
        for stream_len in [0, 1, 31, 32, 255, 256, 65_535, 65_536] {
            for data_len in [0, 1, 255, 256, 65_535, 65_536] {
                let out = Out {
                    stream: &long[..stream_len],
                    id: &[1; 16],
                    event_type: "t",
                    first: b"{\"a\":1}",
                    second: &bytes[..data_len],
                };
                let body = encode(&out);
                let got = five(&body).expect("the engine's own shape");
                assert_eq!(
                    (got.stream, got.id, got.event_type, got.first, got.second),
                    (out.stream, out.id, out.event_type, out.first, out.second)
                );
            }
        }
    }

    /// Anything but the exact shape is left to the general decoder: truncation at every byte,
    /// trailing bytes, another array length, invalid UTF-8, a str where a bin belongs.
    #[test]
    fn leaves_every_other_shape_to_the_general_decoder() {
        let body = encode(&Out { stream: "agent-7", id: &[9; 16], event_type: "t", first: b"", second: b"xyz" });
        assert!(five(&body).is_some());
        for cut in 0..body.len() {
            assert_eq!(five(&body[..cut]), None, "cut at {cut}");
        }
        let mut trailing = body.clone();
        trailing.push(0);
        assert_eq!(five(&trailing), None);
        let mut four = body.clone();
        four[0] = 0x94;
        assert_eq!(five(&four), None);
        let mut bad_utf8 = body.clone();
        bad_utf8[2] = 0xff;
        assert_eq!(five(&bad_utf8), None);
        let mut str_for_bin = body.clone();
        let id_marker = 1 + 1 + "agent-7".len();
        assert_eq!(str_for_bin[id_marker], BIN8);
        str_for_bin[id_marker] = STR8;
        assert_eq!(five(&str_for_bin), None);
    }
}
