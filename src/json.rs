//! Strict JSON for files agentplane did not write: a duplicate object key is
//! an error, not "the last one wins".
//!
//! Parsers disagree on duplicate keys (first wins, last wins, error), so a
//! document with `"allowAGPL": false, "allowAGPL": true` means one thing to
//! agentplane and another to the next tool in line. [`parse_strict`] refuses
//! such a document and names the repeated key by JSON pointer and position.
//!
//! It is `serde_json` underneath (same grammar, numbers, escapes and nesting
//! limit), with a [`DeserializeSeed`] that builds the [`Value`] itself and
//! checks each object's keys as they arrive: one pass, no re-serialising.
//!
//! ```
//! let err = agentplane::json::parse_strict(br#"{"a": {"b": 1, "b": 2}}"#).unwrap_err();
//! assert_eq!(err.pointer.as_deref(), Some("/a/b"));
//! assert_eq!((err.line, err.column), (1, 18)); // just after the repeated key
//! ```

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::cell::RefCell;
use std::fmt;

/// Why [`parse_strict`] refused a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StrictJsonError {
    /// What is wrong, without the position (e.g. "duplicate key `b`",
    /// "EOF while parsing an object").
    pub message: String,
    /// For a duplicate key: the JSON pointer (RFC 6901) of the repeated key.
    pub pointer: Option<String>,
    /// 1-based line of the error (0 when unknown).
    pub line: usize,
    /// 1-based column of the error (0 when unknown).
    pub column: usize,
}

impl StrictJsonError {
    /// Whether the document repeats a key (as opposed to not being JSON at all).
    pub fn is_duplicate_key(&self) -> bool {
        self.pointer.is_some()
    }
}

impl fmt::Display for StrictJsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(p) = &self.pointer {
            write!(f, " at `{p}`")?;
        }
        if self.line > 0 {
            write!(f, " (line {}, column {})", self.line, self.column)?;
        }
        Ok(())
    }
}

impl std::error::Error for StrictJsonError {}

/// Parse one JSON document, refusing duplicate object keys.
///
/// Accepts exactly what `serde_json::from_slice::<Value>` accepts (UTF-8,
/// nesting up to 128 levels, nothing but whitespace after the value), except
/// an object that repeats a key: then the error's `pointer` names the second
/// occurrence, e.g. `/metadata/licensePolicy/allowAGPL`.
pub fn parse_strict(bytes: &[u8]) -> Result<Value, StrictJsonError> {
    // Text already known to be UTF-8 is parsed as text: serde_json then does
    // not check each string's UTF-8 again (3 % of `validate`'s instructions).
    // Other bytes go the byte way, for serde_json's own message and position.
    match std::str::from_utf8(bytes) {
        Ok(text) => parse_strict_str(text),
        Err(_) => parse_read(|| serde_json::de::SliceRead::new(bytes)),
    }
}

/// [`parse_strict`] of text.
pub fn parse_strict_str(text: &str) -> Result<Value, StrictJsonError> {
    parse_read(|| serde_json::de::StrRead::new(text))
}

fn parse_read<'de, R: serde_json::de::Read<'de>>(read: impl Fn() -> R) -> Result<Value, StrictJsonError> {
    // Almost no document repeats a key: the first pass does not track where
    // it is (the pointer string and an index string per array item were ~15 %
    // of `validate`'s parsing). Only when a key repeats is the document parsed
    // again, tracking the pointer; the same parser stops at the same key.
    match parse_with(read(), State::default()) {
        Err(e) if e.pointer.is_some() => parse_with(read(), State { track: true, ..State::default() }),
        other => other,
    }
}

fn parse_with<'de, R: serde_json::de::Read<'de>>(read: R, state: State) -> Result<Value, StrictJsonError> {
    let mut de = serde_json::Deserializer::new(read);
    let result = ValueSeed(&state).deserialize(&mut de).and_then(|v| de.end().map(|()| v));
    result.map_err(|e| {
        let (line, column) = (e.line(), e.column());
        let full = e.to_string();
        let suffix = format!(" at line {line} column {column}");
        let message = full.strip_suffix(&suffix).unwrap_or(&full).to_string();
        StrictJsonError { message, pointer: state.duplicate.borrow_mut().take(), line, column }
    })
}

/// The pointer of the value being built (when tracked), and the repeated key
/// once found (its pointer when tracked, else only that there is one).
#[derive(Default)]
struct State {
    track: bool,
    path: RefCell<String>,
    duplicate: RefCell<Option<String>>,
}

impl State {
    /// Run `f` with `token` pushed onto the current pointer.
    fn nested<T>(&self, token: impl FnOnce() -> String, f: impl FnOnce() -> T) -> T {
        if !self.track {
            return f();
        }
        let len = self.path.borrow().len();
        push_token(&mut self.path.borrow_mut(), &token());
        let out = f();
        self.path.borrow_mut().truncate(len);
        out
    }
}

/// Append `/token` to a pointer, escaped as RFC 6901 says (`~` → `~0`, `/` → `~1`).
fn push_token(pointer: &mut String, token: &str) {
    pointer.push('/');
    for c in token.chars() {
        match c {
            '~' => pointer.push_str("~0"),
            '/' => pointer.push_str("~1"),
            c => pointer.push(c),
        }
    }
}

struct ValueSeed<'s>(&'s State);

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v).map(Value::Number).ok_or_else(|| E::custom("a number that is not finite"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        loop {
            let index = items.len();
            match self.0.nested(|| index.to_string(), || seq.next_element_seed(ValueSeed(self.0)))? {
                Some(v) => items.push(v),
                None => return Ok(Value::Array(items)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            // One lookup for "is it there" and "put it there".
            let slot = match out.entry(key) {
                serde_json::map::Entry::Vacant(slot) => slot,
                serde_json::map::Entry::Occupied(taken) => {
                    let key = taken.key();
                    let mut pointer = self.0.path.borrow().clone();
                    if self.0.track {
                        push_token(&mut pointer, key);
                    }
                    *self.0.duplicate.borrow_mut() = Some(pointer);
                    return Err(de::Error::custom(format_args!("duplicate key `{}`", key.escape_debug())));
                }
            };
            let value = self.0.nested(|| slot.key().clone(), || map.next_value_seed(ValueSeed(self.0)))?;
            slot.insert(value);
        }
        Ok(Value::Object(out))
    }
}

/// Objects of at most this many keys are searched key by key in [`at`].
const SCAN_KEYS: usize = 8;

/// `v.pointer(p)` for a pointer written in the source: object keys only (no
/// `~` escapes), without the allocation per segment that
/// [`Value::pointer`] makes for unescaping (the gates look up many).
pub fn at<'a>(v: &'a Value, p: &str) -> Option<&'a Value> {
    debug_assert!(!p.contains('~'), "a constant pointer has no escapes: {p}");
    if p.is_empty() {
        return Some(v);
    }
    let mut rest = p.strip_prefix('/')?;
    let mut v = v;
    loop {
        // Split at `/` by byte (ASCII, so a char boundary): `str::split` with
        // a char pattern was a third of this function's cost on short pointers.
        let (seg, next) = match rest.bytes().position(|b| b == b'/') {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };
        v = match v {
            // A manifest's objects hold a handful of keys: comparing them is
            // cheaper than hashing `seg` (serde_json's map uses SipHash).
            Value::Object(m) if m.len() <= SCAN_KEYS => m.iter().find(|(k, _)| *k == seg).map(|(_, v)| v)?,
            Value::Object(m) => m.get(seg)?,
            Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get(i))?,
            _ => return None,
        };
        match next {
            Some(n) => rest = n,
            None => return Some(v),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(r: Result<Value, StrictJsonError>) -> Result<Value, (String, Option<String>, usize, usize)> {
        r.map_err(|e| (e.message, e.pointer, e.line, e.column))
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(10_000))]
        /// Text parsed as text (no UTF-8 check per string) gives what the
        /// same bytes parsed as bytes give: the value, or the same message
        /// at the same place, repeated keys included.
        #[test]
        fn text_and_bytes_parse_alike(parts in proptest::collection::vec(
            proptest::sample::select(vec![
                "{", "}", "[", "]", ",", ":", "\"k\"", "\"k\"", "\"é\"", "\"\\ud800\"", "\"\\u00e9\"",
                "\"\\q\"", "\"\t\"", "1", "-0.5e3", "null", "true", " ", "\n", "\"a/b~\"", "é", "\u{7f}",
            ]),
            0..24,
        )) {
            let text = parts.concat();
            let by_bytes = parse_read(|| serde_json::de::SliceRead::new(text.as_bytes()));
            proptest::prop_assert_eq!(summary(parse_strict_str(&text)), summary(by_bytes), "{:?}", text);
        }
    }

    #[test]
    fn same_value_as_serde_json_when_keys_are_unique() {
        let doc = br#"{"a": [1, -2, 3.5, "x\u00e9", null, true, {"b~/c": {}}], "z": 18446744073709551615}"#;
        assert_eq!(parse_strict(doc).unwrap(), serde_json::from_slice::<Value>(doc).unwrap());
    }

    #[test]
    fn duplicate_keys_are_named_by_pointer_and_position() {
        let doc = b"{\n  \"metadata\": {\"licensePolicy\": {\n    \"allowAGPL\": false,\n    \"allowAGPL\": true}}}";
        let e = parse_strict(doc).unwrap_err();
        assert_eq!(e.pointer.as_deref(), Some("/metadata/licensePolicy/allowAGPL"));
        assert_eq!(e.line, 4);
        assert!(e.message.contains("duplicate key `allowAGPL`"), "{e}");
        let e = parse_strict(br#"[0, {"a/b": 1, "a~b": 2, "x": [{"k": 1, "k": 1}]}]"#).unwrap_err();
        assert_eq!(e.pointer.as_deref(), Some("/1/x/0/k"));
        let e = parse_strict(br#"{"a/b": 1, "a/b": 2}"#).unwrap_err();
        assert_eq!(e.pointer.as_deref(), Some("/a~1b"));
        // Keys equal after unescaping are the same key.
        assert!(parse_strict(br#"{"a": 1, "\u0061": 2}"#).unwrap_err().is_duplicate_key());
    }

    #[test]
    fn the_first_problem_is_the_one_reported_either_way() {
        // A repeated key before a syntax error: the key, by pointer (the second pass).
        let e = parse_strict(br#"[{"a": 1}, {"b": [{"c": 1, "c": 2}]}, }"#).unwrap_err();
        assert_eq!((e.pointer.as_deref(), e.line, e.column), (Some("/1/b/0/c"), 1, 30), "{e}");
        // A syntax error before a repeated key: no pointer, the first pass's position.
        let e = parse_strict(br#"[{"a": 1,}, {"c": 1, "c": 2}]"#).unwrap_err();
        assert_eq!((e.pointer.as_deref(), e.line), (None, 1), "{e}");
        assert!(e.message.contains("trailing comma"), "{e}");
    }

    #[test]
    fn at_finds_what_pointer_finds() {
        let v: Value =
            serde_json::from_str(r#"{"a": {"b": [10, {"c": true}], "": 1}, "": {"": 2}, "x": null}"#).unwrap();
        for p in ["", "/", "//", "/a", "/a/b", "/a/b/0", "/a/b/1/c", "/a/b/2", "/a/b/x", "/a/", "/x", "/x/y", "/q", "a"]
        {
            assert_eq!(at(&v, p), v.pointer(p), "{p:?}");
        }
    }

    #[test]
    fn syntax_errors_have_a_position_and_no_pointer() {
        for (doc, line) in [(&b"{\"a\": 1,\n}"[..], 2), (b"{\"a\": tru}", 1), (b"[1] 2", 1), (b"", 1)] {
            let e = parse_strict(doc).unwrap_err();
            assert_eq!((e.pointer.as_deref(), e.line), (None, line), "{e}");
            assert!(!e.message.contains(" at line "), "{e}");
        }
        assert!(parse_strict(b"1e400").is_err());
        assert!(parse_strict(&[b'['; 100_000]).is_err(), "nesting is limited, not a stack overflow");
        assert!(parse_strict(b"\"\xff\"").is_err());
    }
}
