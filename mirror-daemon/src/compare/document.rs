//! A JSON body parsed for comparing: a tree in an arena, its strings borrowed from the body, and
//! parsed only as deep as the comparison needs.
//!
//! serde_json parses it (so the bodies that parse as a [`serde_json::Value`] parse, with the same
//! numbers), but the tree lives in one [`Bump`] arena per pair, freed at once, strings without
//! escapes (member names included) are not copied, and an object is one list of members sorted by
//! name, not a map of owned keys. Objects read as serde_json's do (its default map): members by
//! name in byte order, the last of duplicate names wins; [`Node`]'s `Display` writes compact JSON
//! as `Value`'s does, for excerpts.
//!
//! A body is parsed one level at a time ([`Node::unparsed`], then [`Node::expand`]): an object's
//! member values and an array's items stay [`Node::Raw`], their text as the body spells it
//! (checked as JSON syntax by serde_json as it skips them), and are parsed when the comparison
//! finds the two sides spelled differently. Most of a shadow's answer is spelled as the
//! primary's, so most of it is never built into a tree. Below [`LAZY_LEVELS`] a value is parsed
//! whole, so that no text is scanned more than `LAZY_LEVELS + 1` times however deep the
//! documents.

use std::{cmp::Ordering, fmt, io};

use bumpalo::{collections::Vec as BumpVec, Bump};
use serde::{
    de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor},
    ser::{Serialize, Serializer},
};
use serde_json::{value::RawValue, Number};

/// Levels parsed one at a time; deeper values are parsed whole.
pub(super) const LAZY_LEVELS: usize = 4;

/// One JSON value of a parsed body; `'b` is the arena's and the body's lifetime.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Node<'b> {
    Null,
    Bool(bool),
    Number(Number),
    String(&'b str),
    Array(&'b [Node<'b>]),
    /// Members sorted by name, names distinct.
    Object(&'b [(&'b str, Node<'b>)]),
    /// A value not parsed yet: its JSON text, valid JSON syntax (serde_json skipped it), which
    /// [`Node::expand`] parses. Equal text is an equal value; different text may still be.
    Raw(&'b str),
}

impl<'b> Node<'b> {
    /// Parses `body` as one JSON document into `arena`, whole; `None` when it is not one.
    pub fn parse(body: &'b [u8], arena: &'b Bump) -> Option<Self> {
        Self::parse_text(std::str::from_utf8(body).ok()?, arena, false)
    }

    /// The whole of `body` as one raw value, to be parsed only as far as the comparison needs
    /// ([`Node::expand`]); `None` when it is not UTF-8, so not JSON.
    pub fn unparsed(body: &'b [u8]) -> Option<Self> {
        std::str::from_utf8(body).ok().map(Self::Raw)
    }

    /// The text of a [`Node::Raw`] at `level` (the root is at level 0, its members at level 1)
    /// parsed: that level, its members or items left raw, or whole from [`LAZY_LEVELS`] on.
    /// `None` when it is not JSON as far as serde_json reads it.
    pub fn expand(text: &'b str, level: usize, arena: &'b Bump) -> Option<Self> {
        Self::parse_text(text, arena, level < LAZY_LEVELS)
    }

    fn parse_text(text: &'b str, arena: &'b Bump, lazy: bool) -> Option<Self> {
        // Valid UTF-8 as a whole exactly when its strings are (JSON is ASCII outside strings),
        // so serde_json reads it as a `str` and need not check each string again.
        // As serde_json::from_slice: one value, then nothing but whitespace.
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let node = Seed { arena, lazy }.deserialize(&mut deserializer).ok()?;
        deserializer.end().ok()?;
        Some(node)
    }

    /// The member `name` of an object's sorted `members`.
    pub fn member(members: &'b [(&'b str, Node<'b>)], name: &str) -> Option<&'b Self> {
        members
            .binary_search_by(|(member, _)| (*member).cmp(name))
            .ok()
            .map(|at| &members[at].1)
    }
}

/// Parses one value into the arena: whole, or (`lazy`) with its members or items left raw.
#[derive(Clone, Copy)]
struct Seed<'b> {
    arena: &'b Bump,
    lazy: bool,
}

impl<'b> DeserializeSeed<'b> for Seed<'b> {
    type Value = Node<'b>;

    fn deserialize<D: Deserializer<'b>>(self, deserializer: D) -> Result<Node<'b>, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'b> Visitor<'b> for Seed<'b> {
    type Value = Node<'b>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Node<'b>, E> {
        Ok(Node::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Node<'b>, E> {
        Ok(Node::Number(value.into()))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Node<'b>, E> {
        Ok(Node::Number(value.into()))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Node<'b>, E> {
        // As serde_json's Value: a number it cannot hold is null (never from parsing JSON).
        Ok(Number::from_f64(value).map_or(Node::Null, Node::Number))
    }

    fn visit_borrowed_str<E>(self, value: &'b str) -> Result<Node<'b>, E> {
        Ok(Node::String(value))
    }

    fn visit_str<E>(self, value: &str) -> Result<Node<'b>, E> {
        Ok(Node::String(self.arena.alloc_str(value)))
    }

    fn visit_unit<E>(self) -> Result<Node<'b>, E> {
        Ok(Node::Null)
    }

    fn visit_none<E>(self) -> Result<Node<'b>, E> {
        Ok(Node::Null)
    }

    fn visit_some<D: Deserializer<'b>>(self, deserializer: D) -> Result<Node<'b>, D::Error> {
        self.deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'b>>(self, mut seq: A) -> Result<Node<'b>, A::Error> {
        let mut items = BumpVec::new_in(self.arena);
        if self.lazy {
            while let Some(item) = seq.next_element::<&'b RawValue>()? {
                items.push(Node::Raw(item.get()));
            }
        } else {
            while let Some(item) = seq.next_element_seed(self)? {
                items.push(item);
            }
        }
        Ok(Node::Array(items.into_bump_slice()))
    }

    fn visit_map<A: MapAccess<'b>>(self, mut map: A) -> Result<Node<'b>, A::Error> {
        let mut members = BumpVec::new_in(self.arena);
        while let Some(name) = map.next_key_seed(Name(self.arena))? {
            let value = if self.lazy {
                Node::Raw(map.next_value::<&'b RawValue>()?.get())
            } else {
                map.next_value_seed(self)?
            };
            members.push((name, value));
        }
        // Strictly ascending already: sorted, and no duplicates to drop.
        if members.is_sorted_by(|a, b| names_order(a.0, b.0).is_lt()) {
            return Ok(Node::Object(members.into_bump_slice()));
        }
        // Stable: duplicates stay in document order, and the one kept takes the last value.
        members.sort_by(|a, b| names_order(a.0, b.0));
        members.dedup_by(|later, kept| {
            let duplicate = later.0 == kept.0;
            if duplicate {
                std::mem::swap(&mut later.1, &mut kept.1);
            }
            duplicate
        });
        Ok(Node::Object(members.into_bump_slice()))
    }
}

/// `str`'s order (by bytes), compared in line: member names are short, and a call to `memcmp`
/// for each of a sort's comparisons cost more than the comparing.
fn names_order(left: &str, right: &str) -> Ordering {
    let (left, right) = (left.as_bytes(), right.as_bytes());
    for (l, r) in left.iter().zip(right) {
        if l != r {
            return l.cmp(r);
        }
    }
    left.len().cmp(&right.len())
}

/// Parses a member name: borrowed from the body when it has no escapes, else into the arena.
#[derive(Clone, Copy)]
struct Name<'b>(&'b Bump);

impl<'b> DeserializeSeed<'b> for Name<'b> {
    type Value = &'b str;

    fn deserialize<D: Deserializer<'b>>(self, deserializer: D) -> Result<&'b str, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'b> Visitor<'b> for Name<'b> {
    type Value = &'b str;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_borrowed_str<E>(self, value: &'b str) -> Result<&'b str, E> {
        Ok(value)
    }

    fn visit_str<E>(self, value: &str) -> Result<&'b str, E> {
        Ok(self.0.alloc_str(value))
    }
}

impl Serialize for Node<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Node::Null => serializer.serialize_unit(),
            Node::Bool(value) => serializer.serialize_bool(*value),
            Node::Number(number) => number.serialize(serializer),
            Node::String(text) => serializer.serialize_str(text),
            Node::Array(items) => serializer.collect_seq(items.iter()),
            Node::Object(members) => {
                serializer.collect_map(members.iter().map(|(name, value)| (name, value)))
            }
            // As a `Value` writes it, not as spelled: the comparison shows only parsed values
            // ([`Node::expand`]), so this is for completeness.
            Node::Raw(text) => match serde_json::from_str::<serde_json::Value>(text) {
                Ok(value) => value.serialize(serializer),
                Err(_) => serializer.serialize_str(text),
            },
        }
    }
}

/// Compact JSON, as serde_json's `Value` writes it; a writer that fails stops the rendering.
impl fmt::Display for Node<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Adapter<'f, 'g>(&'f mut fmt::Formatter<'g>);
        impl io::Write for Adapter<'_, '_> {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                // serde_json writes whole UTF-8 sequences (it splits strings at escapes only).
                let text = std::str::from_utf8(buf).map_err(io::Error::other)?;
                self.0.write_str(text).map_err(io::Error::other)?;
                Ok(buf.len())
            }

            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        serde_json::to_writer(Adapter(f), self).map_err(|_| fmt::Error)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    /// Documents that stress what a `Value` settles: duplicate names, member order, escapes,
    /// numbers of every kind, nesting.
    const DOCUMENTS: &[&str] = &[
        r#"{"b":1,"a":[true,false,null],"a":{"z":"\u00e9\n","y":-0.0},"c":"x\"y"}"#,
        r#"[1, 1.0, -7, 18446744073709551615, -9223372036854775808, 1e300, 2.5e-3, 12.50]"#,
        r#"{"k":{"k":{"k":{"k":[[],{},"",0]}}},"é":"ü","a/b~c":null}"#,
        r#""just a string""#,
        r#"{"dup":1,"dup":2,"dup":3,"other":{"x":1,"x":{"deep":true}}}"#,
        "  {\"spaced\" : [ 1 , 2 ] }  \n",
        r#"{"\u0041b":1,"Ab":2,"c\td":[{"\"":"\\"}]}"#,
        // Sorted already (kept as it came), and sorted but for a duplicate at the end.
        r#"{"a":1,"b":{"c":2,"d":[3]},"bb":0,"é":4}"#,
        r#"{"a":1,"b":2,"b":3}"#,
    ];

    #[test]
    fn parses_as_a_value_does_and_renders_the_same_text() {
        let arena = Bump::new();
        for text in DOCUMENTS {
            let node = Node::parse(text.as_bytes(), &arena).expect("parses");
            let value: Value = serde_json::from_str(text).expect("parses as a value");
            assert_eq!(node.to_string(), value.to_string(), "{text}");
            // A level at a time: the root parsed, its values raw, then each parsed in turn.
            let level = Node::expand(text, 0, &arena).expect("parses a level");
            assert_eq!(level.to_string(), value.to_string(), "{text}");
            let children: Vec<&Node> = match &level {
                Node::Object(members) => members.iter().map(|(_, value)| value).collect(),
                Node::Array(items) => items.iter().collect(),
                _ => Vec::new(),
            };
            for child in children {
                let Node::Raw(raw) = child else {
                    panic!("{text}: the root's values are raw: {child:?}");
                };
                let parsed = Node::expand(raw, 1, &arena).expect("parses");
                assert!(!matches!(parsed, Node::Raw(_)));
                let whole = Node::parse(raw.as_bytes(), &arena).expect("parses");
                assert_eq!(parsed.to_string(), whole.to_string(), "{raw}");
                // Deep enough, a raw value is parsed whole: nothing raw is left in it.
                let deep = Node::expand(raw, LAZY_LEVELS, &arena).expect("parses");
                assert_eq!(deep, whole, "{raw}");
            }
        }
        // Names and strings without escapes are not copied; others are unescaped in the arena.
        let text = br#"{"plain":"text","\u0041b":"\t"}"#;
        let node = Node::parse(text, &arena).expect("parses");
        let borrowed = |s: &str| text.as_ptr_range().contains(&s.as_ptr());
        let Node::Object([(escaped, Node::String(tab)), (plain, Node::String(value))]) = node
        else {
            panic!("two members: {node:?}");
        };
        assert_eq!(
            (*escaped, *tab, *plain, *value),
            ("Ab", "\t", "plain", "text")
        );
        assert!(!borrowed(escaped) && !borrowed(tab) && borrowed(plain) && borrowed(value));
        let node = Node::parse(br#"{"dup":1,"dup":2}"#, &arena).expect("parses");
        let Node::Object(members) = &node else {
            panic!("an object: {node:?}");
        };
        assert_eq!(Node::member(members, "dup"), Some(&Node::Number(2.into())));
        assert_eq!(Node::member(members, "none"), None);
    }

    #[test]
    fn rejects_what_a_value_rejects() {
        for text in [
            "",
            "{",
            r#"{"a":1}x"#,
            r#"{"a":1,}"#,
            "[1e400]",
            r#""\ud800""#,
            "\"\u{1}\"",
            "01",
            &format!("{}{}", "[".repeat(200), "]".repeat(200)),
        ] {
            assert!(
                serde_json::from_str::<Value>(text).is_err(),
                "{text} is rejected by serde_json"
            );
            assert_eq!(Node::parse(text.as_bytes(), &Bump::new()), None, "{text}");
        }
        // Bytes that are not UTF-8, in a string or out of one.
        for body in [&b"[1,\xff]"[..], b"{\"a\":\"\xc3\"}", b"\"\xed\xa0\x80\""] {
            assert!(serde_json::from_slice::<Value>(body).is_err());
            assert_eq!(Node::parse(body, &Bump::new()), None, "{body:?}");
        }
        let body = "{\"é\":\"ü\"}".as_bytes();
        assert!(Node::parse(body, &Bump::new()).is_some());
        // A level at a time, syntax is checked whole, but what serde_json skips without parsing
        // (out of range, a lone surrogate, nesting past 128) waits for the comparison.
        for text in [
            "",
            "{",
            r#"{"a":1}x"#,
            r#"{"a":1,}"#,
            "\"\u{1}\"",
            "01",
            "[1,]",
            "[\"\\x\"]",
        ] {
            let arena = Bump::new();
            assert_eq!(Node::expand(text, 0, &arena), None, "{text}");
        }
        for text in ["[1e400]", r#"["\ud800"]"#] {
            let arena = Bump::new();
            let Some(Node::Array([Node::Raw(raw)])) = Node::expand(text, 0, &arena) else {
                panic!("{text} parses a level");
            };
            assert_eq!(Node::expand(raw, 1, &arena), None, "{text}");
        }
    }
}
