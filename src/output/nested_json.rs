//! Pretty JSON written as if it sat `depth` levels deep in a larger
//! pretty-printed document: what `serde_json::to_writer_pretty` of the whole
//! document prints for that value, so that elements rendered one at a time
//! (on the workers, in `validate`) concatenate into that document byte for byte.
//!
//! `serde_json`'s `PrettyFormatter` always starts at depth 0; re-indenting
//! its output afterwards was a second pass and a second buffer for every
//! element. This formatter is serde_json's layout (two spaces a level,
//! `": "` after a key) with a starting depth; serde_json still writes the
//! strings, numbers and escapes. A test keeps the two layouts equal.

use serde::Serialize;
use serde_json::ser::Formatter;
use std::io::{self, Write};

/// `value` pretty-printed at `depth`, appended to `out`, with the indent of
/// its first line (which a pretty printer writes before the value).
pub fn write_at_depth<T: Serialize + ?Sized>(out: &mut Vec<u8>, depth: usize, value: &T) -> serde_json::Result<()> {
    indent(out, depth).map_err(serde_json::Error::io)?;
    let mut ser = serde_json::Serializer::with_formatter(out, AtDepth { depth, has_value: false });
    value.serialize(&mut ser)
}

/// serde_json's pretty layout, starting `depth` levels in.
struct AtDepth {
    depth: usize,
    has_value: bool,
}

const INDENT: &[u8] = b"  ";

fn indent<W: ?Sized + Write>(w: &mut W, depth: usize) -> io::Result<()> {
    for _ in 0..depth {
        w.write_all(INDENT)?;
    }
    Ok(())
}

impl AtDepth {
    /// `[` or `{`: one level deeper, nothing in it yet.
    fn open<W: ?Sized + Write>(&mut self, w: &mut W, bracket: &[u8]) -> io::Result<()> {
        self.depth += 1;
        self.has_value = false;
        w.write_all(bracket)
    }

    /// `]` or `}`: on a line of its own at the outer depth, unless empty.
    fn close<W: ?Sized + Write>(&mut self, w: &mut W, bracket: &[u8]) -> io::Result<()> {
        self.depth -= 1;
        if self.has_value {
            w.write_all(b"\n")?;
            indent(w, self.depth)?;
        }
        w.write_all(bracket)
    }

    /// An array item or an object key: on a line of its own, after a comma
    /// unless it is the first.
    fn item<W: ?Sized + Write>(&self, w: &mut W, first: bool) -> io::Result<()> {
        w.write_all(if first { b"\n" } else { b",\n" })?;
        indent(w, self.depth)
    }
}

impl Formatter for AtDepth {
    fn begin_array<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.open(w, b"[")
    }

    fn end_array<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.close(w, b"]")
    }

    fn begin_array_value<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        self.item(w, first)
    }

    fn end_array_value<W: ?Sized + Write>(&mut self, _w: &mut W) -> io::Result<()> {
        self.has_value = true;
        Ok(())
    }

    fn begin_object<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.open(w, b"{")
    }

    fn end_object<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.close(w, b"}")
    }

    fn begin_object_key<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        self.item(w, first)
    }

    fn begin_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }

    fn end_object_value<W: ?Sized + Write>(&mut self, _w: &mut W) -> io::Result<()> {
        self.has_value = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{Value, json};

    /// The element as serde_json prints it inside a document: the value
    /// pretty-printed on its own, each line indented `depth` levels more.
    fn reindented(value: &Value, depth: usize) -> Vec<u8> {
        let alone = serde_json::to_vec_pretty(value).unwrap();
        let pad = INDENT.repeat(depth);
        let mut out = pad.clone();
        for (i, line) in alone.split(|&b| b == b'\n').enumerate() {
            if i > 0 {
                out.push(b'\n');
                out.extend_from_slice(&pad);
            }
            out.extend_from_slice(line);
        }
        out
    }

    fn at(value: &Value, depth: usize) -> Vec<u8> {
        let mut out = Vec::new();
        write_at_depth(&mut out, depth, value).unwrap();
        out
    }

    #[test]
    fn an_element_two_levels_deep_is_what_the_whole_document_prints() {
        let element = json!({"path": "a\nb\"c", "valid": false, "digest": null, "checks": [
            {"name": "parse", "status": "pass", "message": null},
            {"name": "x", "list": [], "map": {}, "nested": [[1, 2], {"k": [true]}]}
        ]});
        let whole = json!({"valid": false, "bundles": [element.clone(), element.clone()]});
        let mut doc = b"{\n  \"valid\": false,\n  \"bundles\": [\n".to_vec();
        doc.extend(at(&element, 2));
        doc.extend_from_slice(b",\n");
        doc.extend(at(&element, 2));
        doc.extend_from_slice(b"\n  ]\n}");
        assert_eq!(String::from_utf8(doc).unwrap(), serde_json::to_string_pretty(&whole).unwrap());
    }

    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<String>().prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(any::<String>(), inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn any_value_at_any_depth_is_serde_jsons_layout_reindented(value in any_json(), depth in 0usize..4) {
            prop_assert_eq!(at(&value, depth), reindented(&value, depth));
        }
    }
}
