//! The one lossless `u64` → `usize` conversion the engine relies on.
//!
//! The engine builds for 64-bit targets only (asserted below): it maps whole segments and indexes
//! them with `u64` offsets, positions and counts, which on such a target always fit a `usize`.
//! [`usize_of`] is that conversion, in one place, instead of an `as` cast (or an `#[allow]`)
//! at every use. Conversions that can lose something on this target (a count written into a
//! narrower on-disk field, a `u128` duration) are checked where they happen instead.

const _: () = assert!(usize::BITS == u64::BITS, "the log engine needs a 64-bit target");

/// `n` as a `usize`: lossless, because `usize` is 64 bits here (the assertion above).
#[allow(clippy::cast_possible_truncation)] // lossless on the 64-bit targets this crate builds for
#[inline]
pub(crate) const fn usize_of(n: u64) -> usize {
    n as usize
}
