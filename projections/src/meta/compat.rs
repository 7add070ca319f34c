//! Schema compatibility as set inclusion: does every instance valid under one JSON Schema
//! (`narrow`) validate under another (`wide`)?
//!
//! Hand-written on purpose: JSON Schema validators (the `jsonschema` crate validates payloads
//! here) check an instance against a schema; none decides whether one schema includes another.
//!
//! The check is sound and incomplete: it answers "compatible" only when it can prove the
//! inclusion, and otherwise gives the reasons it could not. What it understands:
//! - boolean schemas; `type` (with `integer` inside `number`); `enum` and `const` (exactly: each
//!   listed value is validated against both schemas);
//! - numbers: `minimum`, `maximum`, `exclusiveMinimum`, `exclusiveMaximum` (numeric form),
//!   integer `multipleOf`; strings: `minLength`, `maxLength`;
//! - arrays: `items` (one schema), `minItems`, `maxItems`, `uniqueItems`;
//! - objects: `properties`, `required`, `additionalProperties`, `minProperties`,
//!   `maxProperties`.
//!
//! Keywords are checked only for the instance types `narrow` admits (`minLength` in `wide`
//! does not matter if `narrow` only admits numbers). Any other assertion keyword in `wide`
//! (`pattern`, `format`, `allOf`, `if`, ...) must appear in `narrow` with the same value.
//! Keywords only in `narrow` add constraints to it and are ignored, except those that change
//! what other keywords mean (`patternProperties`, `prefixItems`, array-form `items`,
//! `additionalItems`), which make the check give up unless both schemas agree on them.
//! `$ref` is not supported at all: the caller rejects such schemas under any mode but `none`.

use serde_json::{Map, Value as Json};

/// Keywords that never constrain an instance.
const ANNOTATIONS: &[&str] = &[
    "$schema",
    "$id",
    "$anchor",
    "$comment",
    "$defs",
    "definitions",
    "$vocabulary",
    "title",
    "description",
    "default",
    "examples",
    "deprecated",
    "readOnly",
    "writeOnly",
];

/// Keywords this module reasons about (the rest of `wide`'s must match exactly).
const UNDERSTOOD: &[&str] = &[
    "type",
    "enum",
    "const",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minLength",
    "maxLength",
    "items",
    "minItems",
    "maxItems",
    "uniqueItems",
    "properties",
    "required",
    "additionalProperties",
    "patternProperties",
    "minProperties",
    "maxProperties",
];

/// Keywords that reference other schemas by URI; compatibility cannot follow them.
pub(crate) const REFERENCE_KEYWORDS: &[&str] = &["$ref", "$dynamicRef", "$recursiveRef"];

/// True if a reference keyword appears anywhere in `schema`.
pub(crate) fn uses_references(schema: &Json) -> bool {
    match schema {
        Json::Object(o) => o.iter().any(|(k, v)| REFERENCE_KEYWORDS.contains(&k.as_str()) || uses_references(v)),
        Json::Array(a) => a.iter().any(uses_references),
        _ => false,
    }
}

/// The reasons every instance of `narrow` might not be valid under `wide` (empty: proven).
pub(crate) fn not_included(narrow: &Json, wide: &Json) -> Vec<String> {
    let mut reasons = Vec::new();
    included(narrow, wide, "#", &mut reasons);
    reasons
}

const TRUE: Json = Json::Bool(true);

fn included(narrow: &Json, wide: &Json, path: &str, reasons: &mut Vec<String>) {
    if narrow == wide || *wide == TRUE || *narrow == Json::Bool(false) {
        return;
    }
    let empty = Map::new();
    let w = match wide {
        Json::Object(w) => w,
        Json::Bool(false) => {
            reasons.push(format!("{path}: nothing is valid here now"));
            return;
        }
        _ => {
            reasons.push(format!("{path}: not a schema"));
            return;
        }
    };
    let n = match narrow {
        Json::Object(n) => n,
        Json::Bool(true) => &empty,
        _ => {
            reasons.push(format!("{path}: not a schema"));
            return;
        }
    };
    if w.keys().all(|k| ANNOTATIONS.contains(&k.as_str())) {
        return;
    }

    // A finite `narrow` (enum/const) is decided exactly by validating each value.
    if n.contains_key("enum") || n.contains_key("const") {
        let values: Vec<&Json> = match (n.get("const"), n.get("enum")) {
            (Some(c), _) => vec![c],
            (None, Some(Json::Array(values))) => values.iter().collect(),
            _ => {
                reasons.push(format!("{path}: enum is not an array"));
                return;
            }
        };
        let (Ok(nv), Ok(wv)) = (jsonschema::validator_for(narrow), jsonschema::validator_for(wide)) else {
            reasons.push(format!("{path}: cannot compile the schemas to compare their enums"));
            return;
        };
        for value in values {
            if nv.is_valid(value) && !wv.is_valid(value) {
                reasons.push(format!("{path}: the value {value} is no longer valid"));
            }
        }
        return;
    }
    if w.contains_key("enum") || w.contains_key("const") {
        reasons.push(format!("{path}: the values are now limited by enum or const"));
        return;
    }

    let narrow_types = types(n);
    let admits = |t: &str| match &narrow_types {
        None => true,
        Some(ts) => ts.iter().any(|n| n == t || (t == "number" && n == "integer")),
    };
    if let Some(wide_types) = types(w) {
        match &narrow_types {
            None => reasons.push(format!("{path}: any type was allowed, now only {}", wide_types.join(", "))),
            Some(nts) => {
                for t in nts {
                    let ok = wide_types.iter().any(|w| w == t || (w == "number" && t == "integer"));
                    if !ok {
                        reasons.push(format!("{path}: type {t} is no longer allowed"));
                    }
                }
            }
        }
    }

    if admits("number") || admits("integer") {
        numbers(n, w, path, reasons);
    }
    if admits("string") {
        lower_bound(n, w, "minLength", path, reasons);
        upper_bound(n, w, "maxLength", path, reasons);
    }
    if admits("array") {
        arrays(n, w, path, reasons);
    }
    if admits("object") {
        objects(n, w, path, reasons);
    }

    for (k, wv) in w {
        if ANNOTATIONS.contains(&k.as_str()) || UNDERSTOOD.contains(&k.as_str()) {
            continue;
        }
        if n.get(k) != Some(wv) {
            reasons.push(format!("{path}: cannot show that keyword {k} still holds (it must stay the same)"));
        }
    }
}

/// The schema's `type` list, `None` for any type.
fn types(schema: &Map<String, Json>) -> Option<Vec<String>> {
    match schema.get("type")? {
        Json::String(t) => Some(vec![t.clone()]),
        Json::Array(ts) => Some(ts.iter().filter_map(|t| t.as_str().map(str::to_string)).collect()),
        _ => Some(Vec::new()),
    }
}

fn number(schema: &Map<String, Json>, keyword: &str) -> Option<f64> {
    schema.get(keyword).and_then(Json::as_f64)
}

fn numbers(n: &Map<String, Json>, w: &Map<String, Json>, path: &str, reasons: &mut Vec<String>) {
    let (n_min, n_xmin, n_max, n_xmax) =
        (number(n, "minimum"), number(n, "exclusiveMinimum"), number(n, "maximum"), number(n, "exclusiveMaximum"));
    // Does narrow imply x >= a / x > a / x <= a / x < a?
    let ge = |a: f64| n_min.is_some_and(|m| m >= a) || n_xmin.is_some_and(|m| m >= a);
    let gt = |a: f64| n_min.is_some_and(|m| m > a) || n_xmin.is_some_and(|m| m >= a);
    let le = |a: f64| n_max.is_some_and(|m| m <= a) || n_xmax.is_some_and(|m| m <= a);
    let lt = |a: f64| n_max.is_some_and(|m| m < a) || n_xmax.is_some_and(|m| m <= a);
    for (keyword, holds) in [
        ("minimum", &ge as &dyn Fn(f64) -> bool),
        ("exclusiveMinimum", &gt),
        ("maximum", &le),
        ("exclusiveMaximum", &lt),
    ] {
        match w.get(keyword) {
            None => {}
            Some(Json::Number(a)) => {
                let a = a.as_f64().unwrap_or(f64::NAN);
                if !holds(a) {
                    reasons.push(format!("{path}: {keyword} {a} is now required"));
                }
            }
            Some(other) if n.get(keyword) != Some(other) => {
                reasons.push(format!("{path}: cannot show that keyword {keyword} still holds"));
            }
            Some(_) => {}
        }
    }
    if let Some(wm) = w.get("multipleOf") {
        let ok = match (n.get("multipleOf"), wm.as_u64()) {
            (Some(nm), _) if nm == wm => true,
            (Some(nm), Some(wm)) if wm > 0 => nm.as_u64().is_some_and(|nm| nm % wm == 0),
            _ => false,
        };
        if !ok {
            reasons.push(format!("{path}: values must now be a multiple of {wm}"));
        }
    }
}

/// `wide[keyword]` is a lower bound on a count: narrow's must be at least as high.
fn lower_bound(n: &Map<String, Json>, w: &Map<String, Json>, keyword: &str, path: &str, reasons: &mut Vec<String>) {
    if let Some(a) = w.get(keyword).and_then(Json::as_u64) {
        if n.get(keyword).and_then(Json::as_u64).unwrap_or(0) < a {
            reasons.push(format!("{path}: {keyword} {a} is now required"));
        }
    }
}

/// `wide[keyword]` is an upper bound on a count: narrow's must be at least as low.
fn upper_bound(n: &Map<String, Json>, w: &Map<String, Json>, keyword: &str, path: &str, reasons: &mut Vec<String>) {
    if let Some(a) = w.get(keyword).and_then(Json::as_u64) {
        if n.get(keyword).and_then(Json::as_u64).is_none_or(|b| b > a) {
            reasons.push(format!("{path}: {keyword} {a} is now required"));
        }
    }
}

fn arrays(n: &Map<String, Json>, w: &Map<String, Json>, path: &str, reasons: &mut Vec<String>) {
    lower_bound(n, w, "minItems", path, reasons);
    upper_bound(n, w, "maxItems", path, reasons);
    if w.get("uniqueItems") == Some(&Json::Bool(true)) && n.get("uniqueItems") != Some(&Json::Bool(true)) {
        reasons.push(format!("{path}: items must now be unique"));
    }
    let Some(wi) = w.get("items") else { return };
    let tuple = |s: &Map<String, Json>| {
        s.contains_key("prefixItems") || s.contains_key("additionalItems") || s.get("items").is_some_and(Json::is_array)
    };
    if tuple(n) || tuple(w) {
        for k in ["items", "prefixItems", "additionalItems"] {
            if n.get(k) != w.get(k) {
                reasons.push(format!("{path}: cannot compare tuple-style items (keyword {k} differs)"));
            }
        }
        return;
    }
    included(n.get("items").unwrap_or(&TRUE), wi, &format!("{path}/items"), reasons);
}

fn objects(n: &Map<String, Json>, w: &Map<String, Json>, path: &str, reasons: &mut Vec<String>) {
    lower_bound(n, w, "minProperties", path, reasons);
    upper_bound(n, w, "maxProperties", path, reasons);
    let strings = |s: &Map<String, Json>, k: &str| -> Vec<String> {
        s.get(k)
            .and_then(Json::as_array)
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    };
    let n_required = strings(n, "required");
    for r in strings(w, "required") {
        if !n_required.contains(&r) {
            reasons.push(format!("{path}: property {r} is now required"));
        }
    }
    let shape = ["properties", "patternProperties", "additionalProperties"];
    if !shape.iter().any(|k| w.contains_key(*k)) {
        return;
    }
    if n.contains_key("patternProperties") || w.contains_key("patternProperties") {
        for k in shape {
            if n.get(k) != w.get(k) {
                reasons.push(format!("{path}: cannot compare patternProperties (keyword {k} differs)"));
            }
        }
        return;
    }
    let empty = Map::new();
    let n_props = n.get("properties").and_then(Json::as_object).unwrap_or(&empty);
    let w_props = w.get("properties").and_then(Json::as_object).unwrap_or(&empty);
    let n_extra = n.get("additionalProperties").unwrap_or(&TRUE);
    let w_extra = w.get("additionalProperties").unwrap_or(&TRUE);
    for (name, ws) in w_props {
        let ns = n_props.get(name).unwrap_or(n_extra);
        included(ns, ws, &format!("{path}/properties/{name}"), reasons);
    }
    for (name, ns) in n_props {
        if !w_props.contains_key(name) {
            included(ns, w_extra, &format!("{path}/properties/{name}"), reasons);
        }
    }
    included(n_extra, w_extra, &format!("{path}/additionalProperties"), reasons);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok(narrow: Json, wide: Json) {
        let reasons = not_included(&narrow, &wide);
        assert!(reasons.is_empty(), "{narrow} should be within {wide}: {reasons:?}");
    }

    fn no(narrow: Json, wide: Json) {
        assert!(!not_included(&narrow, &wide).is_empty(), "{narrow} should not be proven within {wide}");
    }

    #[test]
    fn types_and_booleans() {
        ok(json!({"type": "integer"}), json!({"type": "number"}));
        no(json!({"type": "number"}), json!({"type": "integer"}));
        ok(json!({"type": "string"}), json!({"type": ["string", "null"]}));
        no(json!({}), json!({"type": "string"}));
        ok(json!({"type": "string"}), json!(true));
        ok(json!(false), json!({"type": "string"}));
        no(json!(true), json!(false));
        ok(json!({"type": "string", "title": "x"}), json!({"description": "anything"}));
    }

    #[test]
    fn numeric_and_length_bounds() {
        ok(json!({"type": "integer", "minimum": 5}), json!({"type": "integer", "minimum": 0}));
        no(json!({"type": "integer", "minimum": 0}), json!({"type": "integer", "minimum": 5}));
        ok(json!({"type": "number", "exclusiveMinimum": 0}), json!({"type": "number", "minimum": 0}));
        no(json!({"type": "number", "minimum": 0}), json!({"type": "number", "exclusiveMinimum": 0}));
        ok(json!({"type": "number", "maximum": 9}), json!({"type": "number", "exclusiveMaximum": 10}));
        ok(json!({"type": "integer", "multipleOf": 4}), json!({"type": "integer", "multipleOf": 2}));
        no(json!({"type": "integer", "multipleOf": 3}), json!({"type": "integer", "multipleOf": 2}));
        ok(json!({"type": "string", "maxLength": 5}), json!({"type": "string", "maxLength": 10}));
        no(json!({"type": "string"}), json!({"type": "string", "maxLength": 10}));
        // A string bound does not matter when only numbers are allowed.
        ok(json!({"type": "integer"}), json!({"type": ["integer", "string"], "minLength": 3}));
    }

    #[test]
    fn enums_are_decided_by_validation() {
        ok(json!({"enum": ["a", "b"]}), json!({"type": "string", "maxLength": 1}));
        no(json!({"enum": ["a", "bb"]}), json!({"type": "string", "maxLength": 1}));
        ok(json!({"enum": ["a"]}), json!({"enum": ["a", "b"]}));
        no(json!({"enum": ["a", "c"]}), json!({"enum": ["a", "b"]}));
        no(json!({"type": "string"}), json!({"enum": ["a", "b"]}));
        ok(json!({"const": 3}), json!({"type": "integer"}));
    }

    #[test]
    fn objects_follow_properties_required_and_additional() {
        let closed_v1 = json!({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"],
                               "additionalProperties": false});
        let closed_v2 = json!({"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "integer"}},
                               "required": ["a"], "additionalProperties": false});
        ok(closed_v1.clone(), closed_v2.clone());
        no(closed_v2.clone(), closed_v1.clone());
        let open_v1 = json!({"type": "object", "properties": {"a": {"type": "string"}}});
        let open_v2 = json!({"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "integer"}}});
        no(open_v1.clone(), open_v2.clone());
        ok(open_v2, open_v1);
        no(
            json!({"type": "object", "properties": {"a": {"type": "string"}}}),
            json!({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}),
        );
        ok(json!({"type": "object", "required": ["a", "b"]}), json!({"type": "object", "required": ["a"]}));
        no(
            json!({"type": "object", "patternProperties": {"^x": {"type": "string"}}}),
            json!({"type": "object", "patternProperties": {"^x": {"type": "integer"}}}),
        );
    }

    #[test]
    fn arrays_and_unknown_keywords() {
        ok(
            json!({"type": "array", "items": {"type": "integer"}}),
            json!({"type": "array", "items": {"type": "number"}}),
        );
        no(
            json!({"type": "array", "items": {"type": "number"}}),
            json!({"type": "array", "items": {"type": "integer"}}),
        );
        no(json!({"type": "array"}), json!({"type": "array", "uniqueItems": true}));
        no(
            json!({"type": "array", "prefixItems": [{"type": "integer"}], "items": {"type": "string"}}),
            json!({"type": "array", "items": {"type": "string"}}),
        );
        ok(json!({"type": "string", "pattern": "^a"}), json!({"type": "string", "pattern": "^a"}));
        no(json!({"type": "string", "pattern": "^ab"}), json!({"type": "string", "pattern": "^a"}));
        ok(json!({"type": "string", "pattern": "^ab"}), json!({"type": "string"}));
        no(json!({"type": "object"}), json!({"type": "object", "allOf": [{"required": ["a"]}]}));
    }

    #[test]
    fn references_are_found_anywhere() {
        assert!(uses_references(&json!({"properties": {"a": {"items": {"$ref": "#/$defs/x"}}}})));
        assert!(!uses_references(&json!({"properties": {"ref": {"type": "string"}}})));
    }
}
