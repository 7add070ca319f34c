//! MessagePack request bodies, read as the JSON the handlers take.
//!
//! A MessagePack body is converted to JSON text once, and the handlers parse that text as they
//! parse a JSON body, so both encodings have one set of rules. MessagePack can carry what JSON
//! cannot, and each such value has one meaning here, never a silent substitute:
//! - A binary value under the key `data` is an event's binary payload: it becomes `data_b64`
//!   (standard base64), exactly what a JSON client sends, so it is stored as bytes and reads back
//!   as `data_b64`. Anywhere else a binary value is refused: JSON has no bytes, and an array of
//!   numbers would not read back as what the client sent.
//! - Map keys must be strings (JSON object keys are).
//! - Numbers JSON cannot carry (NaN, infinities) are refused by
//!   [`projections::check_msgpack_numbers`] before this runs.
//!
//! Depth is bounded by rmp-serde's own recursion limit, so no body can exhaust the stack.

use std::fmt;

use base64::Engine as _;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Converts one MessagePack value to JSON text. Returns the JSON and the number of bytes the
/// value took, so the caller can refuse trailing bytes.
pub fn to_json(bytes: &[u8]) -> Result<(Vec<u8>, usize), String> {
    let mut rest = bytes;
    let mut de = rmp_serde::Deserializer::new(&mut rest);
    let value = Msg::deserialize(&mut de).map_err(|e| e.to_string())?;
    let used = bytes.len() - rest.len();
    let json = value.into_json(None)?;
    let text = serde_json::to_vec(&json).map_err(|e| e.to_string())?;
    Ok((text, used))
}

/// A MessagePack value: JSON's values plus bytes.
enum Msg {
    Json(Value),
    Bytes(Vec<u8>),
    Array(Vec<Msg>),
    Map(Vec<(String, Msg)>),
}

impl Msg {
    /// `key` is the map key this value sits under, if any: it decides what bytes mean.
    fn into_json(self, key: Option<&str>) -> Result<Value, String> {
        Ok(match self {
            Msg::Json(v) => v,
            Msg::Bytes(_) => {
                let place =
                    key.map_or_else(|| "in an array or at the top".to_owned(), |k| format!("under the key {k:?}"));
                return Err(format!(
                    "a binary value {place}: MessagePack binary is accepted only as an event's \"data\" (it is stored as bytes and read back as data_b64)"
                ));
            }
            Msg::Array(items) => Value::Array(items.into_iter().map(|m| m.into_json(None)).collect::<Result<_, _>>()?),
            Msg::Map(entries) => {
                let mut map = Map::with_capacity(entries.len());
                for (k, v) in entries {
                    match v {
                        Msg::Bytes(b) if k == "data" => {
                            map.insert(
                                "data_b64".to_owned(),
                                Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
                            );
                        }
                        v => {
                            let v = v.into_json(Some(&k))?;
                            map.insert(k, v);
                        }
                    }
                }
                Value::Object(map)
            }
        })
    }
}

impl<'de> Deserialize<'de> for Msg {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Msg, D::Error> {
        d.deserialize_any(MsgVisitor)
    }
}

struct MsgVisitor;

impl<'de> Visitor<'de> for MsgVisitor {
    type Value = Msg;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a MessagePack value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Msg, E> {
        Ok(Msg::Json(Value::Null))
    }

    fn visit_none<E: de::Error>(self) -> Result<Msg, E> {
        Ok(Msg::Json(Value::Null))
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Msg, D::Error> {
        Msg::deserialize(d)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Msg, E> {
        Ok(Msg::Json(Value::Bool(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Msg, E> {
        Ok(Msg::Json(Value::Number(v.into())))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Msg, E> {
        Ok(Msg::Json(Value::Number(v.into())))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Msg, E> {
        Number::from_f64(v)
            .map(|n| Msg::Json(Value::Number(n)))
            .ok_or_else(|| E::custom(format!("the number {v} cannot be carried by JSON")))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Msg, E> {
        Ok(Msg::Json(Value::String(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Msg, E> {
        Ok(Msg::Json(Value::String(v)))
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Msg, E> {
        Ok(Msg::Bytes(v.to_vec()))
    }

    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Msg, E> {
        Ok(Msg::Bytes(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Msg, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(item) = seq.next_element::<Msg>()? {
            items.push(item);
        }
        Ok(Msg::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Msg, A::Error> {
        let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0).min(4096));
        while let Some(key) = map.next_key::<Msg>()? {
            let Msg::Json(Value::String(key)) = key else {
                return Err(de::Error::custom("a map key that is not a string (JSON object keys are strings)"));
            };
            entries.push((key, map.next_value::<Msg>()?));
        }
        Ok(Msg::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// Bytes that rmp-serde writes as MessagePack binary.
    struct Bin<'a>(&'a [u8]);

    impl serde::Serialize for Bin<'_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(self.0)
        }
    }

    fn msgpack_map(key: &str, value: Bin<'_>) -> Vec<u8> {
        rmp_serde::to_vec_named(&BTreeMap::from([(key, value)])).unwrap()
    }

    fn json(bytes: &[u8]) -> Value {
        serde_json::from_slice(&to_json(bytes).unwrap().0).unwrap()
    }

    /// issue 23 (low): a MessagePack binary payload was transcoded into an array of numbers, so it
    /// was stored as JSON and read back as numbers instead of `data_b64`.
    #[test]
    fn binary_event_data_becomes_data_b64() {
        assert_eq!(json(&msgpack_map("data", Bin(&[0, 1, 2, 255]))), serde_json::json!({"data_b64": "AAEC/w=="}));
        let plain = rmp_serde::to_vec_named(&serde_json::json!({"type": "T", "data": {"a": [1, -2, 2.5, null, true]}}))
            .unwrap();
        assert_eq!(json(&plain), serde_json::json!({"type": "T", "data": {"a": [1, -2, 2.5, null, true]}}));
    }

    #[test]
    fn binary_elsewhere_and_non_string_keys_are_refused() {
        let err = to_json(&msgpack_map("value", Bin(&[1, 2]))).unwrap_err();
        assert!(err.contains("under the key \"value\""), "{err}");
        let int_key = rmp_serde::to_vec(&BTreeMap::from([(7u8, ())])).unwrap();
        let err = to_json(&int_key).unwrap_err();
        assert!(err.contains("not a string"), "{err}");
    }

    #[test]
    fn the_length_of_the_value_is_returned_so_trailing_bytes_can_be_refused() {
        let mut body = rmp_serde::to_vec(&1u8).unwrap();
        body.push(0xc0);
        assert_eq!(to_json(&body).unwrap().1, 1);
    }
}
