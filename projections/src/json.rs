//! The JSON cairn accepts: text it can read back losslessly, checked before it is written.
//!
//! Event payloads are stored as the text the client sent, and most are never parsed again
//! until a view or a reader looks inside. So text that a parser accepts only lazily (a raw
//! value is skimmed, not decoded) could be stored and fail on every later read: a value nested
//! deeper than a parser's recursion limit, a number outside the `f64` range (`1e999999`), a
//! string escape that is not Unicode (a lone surrogate, `"\ud800"`). Such text is refused at
//! the door with [`check_json`]: the same rules for an event's `data` and `metadata`, and for
//! every value a view's facade writes ([`check_value`]).
//!
//! The views themselves use [`check_readable`], which is looser: only what a view must be able
//! to parse again. An event that fails it is an apply error (recorded, skipped), never a panic.
//! It is looser so that events written before [`JSON_DEPTH_MAX`] existed replay as they did.
//!
//! Checking decodes every number and string but allocates only for strings with escapes: no
//! tree is built.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value as Json;

/// Deepest nesting of arrays and objects accepted in an event's `data` or `metadata`, or in a
/// value written through a view: `[[1]]` is 2 deep, a scalar 0.
pub const JSON_DEPTH_MAX: usize = 64;

/// Why JSON text was refused: a sentence naming the rule it broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct JsonError(pub String);

/// Checks that `text` is one JSON value cairn can read back as it was written: well formed,
/// nested at most [`JSON_DEPTH_MAX`] deep, every number finite as an `f64`, every string valid
/// Unicode (no lone surrogate escapes).
pub fn check_json(text: &[u8]) -> Result<(), JsonError> {
    check(text, JSON_DEPTH_MAX)
}

/// Checks that `text` is one JSON value a view can parse: [`check_json`] without the depth
/// limit (the parser's own recursion limit, 128, still applies).
pub fn check_readable(text: &[u8]) -> Result<(), JsonError> {
    check(text, usize::MAX)
}

fn check(text: &[u8], depth_max: usize) -> Result<(), JsonError> {
    let mut de = serde_json::Deserializer::from_slice(text);
    Checker { depth: 0, depth_max }.deserialize(&mut de).and_then(|()| de.end()).map_err(|e| {
        let message = e.to_string();
        if let Some(rest) = message.strip_prefix(DEPTH_MARK) {
            JsonError(format!("it is nested deeper than {depth_max} levels (JSON_DEPTH_MAX){rest}"))
        } else if message.starts_with("number out of range") {
            JsonError(format!("it holds a number outside the 64-bit floating-point range ({message})"))
        } else if message.contains("surrogate") || message.contains("unicode") || message.contains("hex escape") {
            JsonError(format!("it holds a string that is not valid Unicode ({message})"))
        } else if message.starts_with("recursion limit exceeded") {
            JsonError(format!("it is nested too deep to parse ({message})"))
        } else {
            JsonError(format!("it is not valid JSON ({message})"))
        }
    })
}

/// Checks a value built in memory (a facade's argument): only its depth can be wrong, since a
/// `serde_json::Value` holds no non-finite number and no invalid string. Iterative, so that
/// even a value nested far too deep is refused without exhausting the stack.
pub fn check_value(value: &Json) -> Result<(), JsonError> {
    let mut stack: Vec<(&Json, usize)> = vec![(value, 0)];
    while let Some((v, depth)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Json>> = match v {
            Json::Array(items) => Box::new(items.iter()),
            Json::Object(map) => Box::new(map.values()),
            _ => continue,
        };
        if depth + 1 > JSON_DEPTH_MAX {
            return Err(JsonError(format!("it is nested deeper than {JSON_DEPTH_MAX} levels (JSON_DEPTH_MAX)")));
        }
        stack.extend(children.map(|c| (c, depth + 1)));
    }
    Ok(())
}

/// Marks the depth error so [`check`] can word it.
const DEPTH_MARK: &str = "cairn-depth";

/// Visits one value, decoding what a reader would decode, and refuses it past `depth_max`.
#[derive(Clone, Copy)]
struct Checker {
    depth: usize,
    depth_max: usize,
}

impl Checker {
    fn nested<E: de::Error>(self) -> Result<Checker, E> {
        if self.depth >= self.depth_max {
            return Err(E::custom(DEPTH_MARK));
        }
        Ok(Checker { depth: self.depth + 1, depth_max: self.depth_max })
    }
}

impl<'de> DeserializeSeed<'de> for Checker {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Checker {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_i128<E: de::Error>(self, _: i128) -> Result<(), E> {
        Ok(())
    }

    fn visit_u128<E: de::Error>(self, _: u128) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        if v.is_finite() {
            Ok(())
        } else {
            Err(E::custom(format_args!("number out of range: {v}")))
        }
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<(), E> {
        Ok(())
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        self.deserialize(d)
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        self.deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let inner = self.nested()?;
        while seq.next_element_seed(inner)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let inner = self.nested()?;
        while map.next_key_seed(inner)?.is_some() {
            map.next_value_seed(inner)?;
        }
        Ok(())
    }
}

/// Checks a MessagePack document before it is transcoded to JSON: JSON cannot carry a NaN or an
/// infinity (a transcoder would write `null`), so a non-finite float is refused here. Depth and
/// strings are checked again on the JSON text.
pub fn check_msgpack_numbers(bytes: &[u8]) -> Result<(), JsonError> {
    let mut de = rmp_serde::Deserializer::new(bytes);
    Checker { depth: 0, depth_max: usize::MAX }.deserialize(&mut de).map_err(|e| {
        let message = e.to_string();
        if message.starts_with("number out of range") {
            JsonError(format!("it holds a number JSON cannot carry ({message})"))
        } else {
            JsonError(format!("it is not valid MessagePack ({message})"))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nested(depth: usize) -> String {
        format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
    }

    #[test]
    fn accepts_ordinary_json_at_the_depth_limit() {
        for ok in [r#"{"a": [1, 2.5, -3e10, "x\u00e9\ud83d\ude00", null, true]}"#, "0", "\"\"", "1e308"] {
            check_json(ok.as_bytes()).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        check_json(nested(JSON_DEPTH_MAX).as_bytes()).unwrap();
        check_value(&serde_json::from_str(&nested(JSON_DEPTH_MAX)).unwrap()).unwrap();
    }

    /// issue 14 item 1: the three payloads that made a view panic are refused with a reason.
    #[test]
    fn refuses_what_cannot_be_read_back() {
        let err = check_json(nested(JSON_DEPTH_MAX + 1).as_bytes()).unwrap_err();
        assert!(err.0.contains("nested deeper than 64 levels (JSON_DEPTH_MAX)"), "{err}");
        let err = check_json(br#"{"v": 1e999999}"#).unwrap_err();
        assert!(err.0.contains("outside the 64-bit floating-point range"), "{err}");
        let err = check_json(br#"{"v": "\ud800"}"#).unwrap_err();
        assert!(err.0.contains("not valid Unicode"), "{err}");
        let err = check_json(br#"{"\udc00": 1}"#).unwrap_err();
        assert!(err.0.contains("not valid Unicode"), "object keys are checked too: {err}");
        assert!(check_json(b"[1] 2").is_err(), "one value only");
        assert!(check_json(b"").is_err());
        let mut deep = json!(1);
        for _ in 0..1_000 {
            deep = json!([deep]);
        }
        assert!(check_value(&deep).unwrap_err().0.contains("JSON_DEPTH_MAX"));
    }

    #[test]
    fn readable_is_looser_on_depth_only() {
        check_readable(nested(100).as_bytes()).unwrap();
        assert!(check_readable(nested(200).as_bytes()).is_err(), "the parser's own recursion limit");
        assert!(check_readable(b"1e999999").is_err());
        assert!(check_readable(br#""\ud800""#).is_err());
    }

    #[test]
    fn msgpack_non_finite_floats_are_refused() {
        let bytes = rmp_serde::to_vec(&(1.5f64, f64::INFINITY)).unwrap();
        assert!(check_msgpack_numbers(&bytes).unwrap_err().0.contains("JSON cannot carry"));
        let bytes = rmp_serde::to_vec(&vec![f32::NAN]).unwrap();
        assert!(check_msgpack_numbers(&bytes).is_err());
        check_msgpack_numbers(&rmp_serde::to_vec(&(1.5f64, "s", vec![1u8])).unwrap()).unwrap();
    }
}
