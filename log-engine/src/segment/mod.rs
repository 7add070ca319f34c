//! Segment files, one concept per file:
//!
//! - `layout.rs`: the layout as named constants (checked at compile time, and against
//!   docs/format.md by a test), capacities, file names;
//! - `header.rs`: the header and the trailer;
//! - `footer.rs`: a sealed segment's footer and id record, and the active segment's footer
//!   builder;
//! - `active.rs`: the lifecycle on disk (prepare, install, seal) and the active segment;
//! - `recover.rs`: the scan of the newest segment at open (torn tail vs corruption).
//!
//! Lifecycle: *prepared* (a zero-filled `.tmp` file) → *active* (header written, renamed to
//! `<first position>.seg`, records appended by the writer) → *sealed* (footer and trailer written
//! after the last record; never written again). Only the newest segment may be active.
//!
//! Segment file layout (little-endian; see docs/format.md):
//!
//! | offset | size | field |
//! |-------:|-----:|-------|
//! | 0 | 4096 | header (128 bytes used, rest zero) |
//! | 4096 | … | records (record.rs), each 8-byte aligned |
//! | after the last record | … | seal footer: a record of kind 2 (sealed segments only) |
//! | after the seal record | … | event ids: a record of kind 3 (sealed segments only) |
//! | capacity − 64 | 64 | trailer: locates the footer (sealed segments only) |

mod active;
mod footer;
mod header;
mod layout;
pub(crate) mod recover;

pub(crate) use active::{install, prepare, Active};
pub(crate) use footer::{encode_seal, read_sealed, Footer, FooterBuilder, FooterStream, Sealed};
pub(crate) use header::{SegmentHeader, Trailer};
pub(crate) use layout::*;
pub use layout::{SEGMENT_SIZE_DEFAULT, SEGMENT_SIZE_MAX, SEGMENT_SIZE_MIN, SEGMENT_SIZE_START};
