//! Comparing two JSON documents as values: member order and number spelling do not matter
//! (`1.0` equals `1`), and every differing place is reported by its path.
//!
//! One walk over both documents ([`Node`]s) at once; a member present on one side only, an array
//! item beyond the other's length, or a value of another type or value is a difference at that
//! place. Places under an `ignore` pattern are skipped without being compared. Members are
//! visited by name (the primary's, then those only the shadow has), so differences come in the
//! same order whatever the documents' member order.
//!
//! The documents come unparsed ([`Node::unparsed`]); a place whose two values are spelled alike
//! is equal without parsing, two objects or two arrays spelled differently are parsed a level
//! further ([`Node::expand`]) and walked, anything else is parsed whole and compared. A value
//! that does not parse there (serde_json skips some things it would not parse: numbers out of
//! range, lone surrogates, nesting past 128) makes the bodies not JSON after all: [`diff`] says
//! so, and they are compared byte for byte.

use bumpalo::Bump;

use serde_json::Number;

use super::{
    differences::{Differences, Shown, WHOLE_BODY},
    document::Node,
    path::{self, IgnoreSet, Live, Step},
};

/// The documents turned out not to be JSON where they differ: nothing was added.
#[derive(Debug, PartialEq)]
pub(super) struct NotJson;

/// Adds every differing place of `primary` and `shadow` to `out`, parsing raw values into
/// `arena` as needed; when one does not parse, adds nothing and says so.
pub(super) fn diff<'a>(
    primary: &'a Node<'a>,
    shadow: &'a Node<'a>,
    arena: &'a Bump,
    ignore: &IgnoreSet,
    out: &mut Differences<'a>,
) -> Result<(), NotJson> {
    let before = (out.list.len(), out.overflow);
    let mut walker = Walker {
        ignore,
        arena,
        steps: Vec::new(),
        shape: String::new(),
        failed: false,
        out,
    };
    walker.walk(primary, shadow, ignore.root());
    if walker.failed {
        out.list.truncate(before.0);
        out.overflow = before.1;
        return Err(NotJson);
    }
    Ok(())
}

struct Walker<'a, 'w> {
    ignore: &'w IgnoreSet,
    arena: &'a Bump,
    /// A raw value did not parse: stop, and drop what was found.
    failed: bool,
    /// The path from the root to the values being compared.
    steps: Vec<Step<'a>>,
    /// Reused for each difference's shape, so that a known shape costs no allocation.
    shape: String,
    out: &'w mut Differences<'a>,
}

impl<'a> Walker<'a, '_> {
    fn walk(&mut self, primary: &'a Node<'a>, shadow: &'a Node<'a>, live: Live) {
        if self.failed {
            return;
        }
        if let (Node::Raw(left), Node::Raw(right)) = (primary, shadow) {
            if left == right {
                return;
            }
        }
        if matches!(primary, Node::Raw(_)) || matches!(shadow, Node::Raw(_)) {
            // Two objects or two arrays are walked a level further; anything else is compared
            // (and shown) whole.
            let further = container(primary).is_some() && container(primary) == container(shadow);
            let (Some(primary), Some(shadow)) =
                (self.parse(primary, further), self.parse(shadow, further))
            else {
                return;
            };
            return self.walk(primary, shadow, live);
        }
        match (primary, shadow) {
            (&Node::Object(left), &Node::Object(right)) => {
                // Members are sorted by name: objects with the same names (the usual case) pair
                // them up by place, and have none on one side only.
                let same_names = left.len() == right.len()
                    && left.iter().zip(right).all(|((l, _), (r, _))| l == r);
                for (at, (name, value)) in left.iter().enumerate() {
                    let Some(live) = self.enter(Step::Member(name), live) else {
                        continue;
                    };
                    let other = if same_names {
                        right.get(at).map(|(_, other)| other)
                    } else {
                        Node::member(right, name)
                    };
                    match other {
                        Some(other) => self.walk(value, other, live),
                        None => {
                            if let Some(value) = self.whole(value) {
                                self.differ(value, Shown::Absent)
                            }
                        }
                    }
                    self.steps.pop();
                }
                if same_names {
                    return;
                }
                for (name, value) in right {
                    if Node::member(left, name).is_some() {
                        continue;
                    }
                    if self.enter(Step::Member(name), live).is_some() {
                        if let Some(value) = self.whole(value) {
                            self.differ(Shown::Absent, value);
                        }
                        self.steps.pop();
                    }
                }
            }
            (&Node::Array(left), &Node::Array(right)) => {
                for index in 0..left.len().max(right.len()) {
                    let Some(live) = self.enter(Step::Item(index), live) else {
                        continue;
                    };
                    match (left.get(index), right.get(index)) {
                        (Some(value), Some(other)) => self.walk(value, other, live),
                        (Some(value), None) => {
                            if let Some(value) = self.whole(value) {
                                self.differ(value, Shown::Absent)
                            }
                        }
                        (None, Some(other)) => {
                            if let Some(other) = self.whole(other) {
                                self.differ(Shown::Absent, other)
                            }
                        }
                        (None, None) => {}
                    }
                    self.steps.pop();
                }
            }
            (Node::Number(left), Node::Number(right)) => {
                if !numbers_equal(left, right) {
                    self.differ(Shown::Json(primary), Shown::Json(shadow));
                }
            }
            _ => {
                if primary != shadow {
                    self.differ(Shown::Json(primary), Shown::Json(shadow));
                }
            }
        }
    }

    /// A raw `node` parsed: a level `further` (whole from [`super::document::LAZY_LEVELS`] on),
    /// or whole; `None`, and the walk failed, when it does not parse.
    fn parse(&mut self, node: &'a Node<'a>, further: bool) -> Option<&'a Node<'a>> {
        let Node::Raw(text) = *node else {
            return Some(node);
        };
        let parsed = if further {
            Node::expand(text, self.steps.len(), self.arena)
        } else {
            Node::parse(text.as_bytes(), self.arena)
        };
        match parsed {
            Some(parsed) => Some(self.arena.alloc(parsed)),
            None => {
                self.failed = true;
                None
            }
        }
    }

    /// `node` to be shown, parsed whole when it is raw; `None`, and the walk failed, when it
    /// does not parse.
    fn whole(&mut self, node: &'a Node<'a>) -> Option<Shown<'a>> {
        self.parse(node, false).map(Shown::Json)
    }

    /// Steps in; `None` (and no step) when an `ignore` pattern covers the place.
    fn enter(&mut self, step: Step<'a>, live: Live) -> Option<Live> {
        let live = if live == 0 {
            0
        } else {
            let (next, ignored) = self.ignore.step(live, self.steps.len(), step);
            if ignored {
                return None;
            }
            next
        };
        self.steps.push(step);
        Some(live)
    }

    fn differ(&mut self, primary: Shown<'a>, shadow: Shown<'a>) {
        if self.steps.is_empty() {
            // Documents of different kinds or scalar values: the whole body differs.
            self.out
                .add(WHOLE_BODY, || WHOLE_BODY.to_string(), primary, shadow, true);
            return;
        }
        path::write_shape(&mut self.shape, &self.steps);
        let steps = &self.steps;
        self.out.add(
            &self.shape,
            || {
                let mut concrete = String::new();
                path::write_path(&mut concrete, steps);
                concrete
            },
            primary,
            shadow,
            true,
        );
    }
}

/// `{` or `[` when `node` is an object or an array, parsed or raw.
fn container(node: &Node<'_>) -> Option<u8> {
    match node {
        Node::Object(_) => Some(b'{'),
        Node::Array(_) => Some(b'['),
        Node::Raw(text) => text
            .bytes()
            .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
            .filter(|b| matches!(b, b'{' | b'[')),
        _ => None,
    }
}

/// Numbers are equal by value: as integers when both are, else as floating point.
fn numbers_equal(left: &Number, right: &Number) -> bool {
    if let (Some(l), Some(r)) = (left.as_i64(), right.as_i64()) {
        return l == r;
    }
    if let (Some(l), Some(r)) = (left.as_u64(), right.as_u64()) {
        return l == r;
    }
    match (left.as_f64(), right.as_f64()) {
        (Some(l), Some(r)) => l == r,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::compare::{path::IgnorePath, tests::json_diff};

    /// The differences of two documents, given as values (written out, then parsed as bodies):
    /// the same whether the documents are parsed whole or a level at a time.
    fn differences(primary: &Value, shadow: &Value, ignore: &[&str]) -> Vec<(String, String, u32)> {
        let ignore = IgnoreSet::new(
            ignore
                .iter()
                .map(|p| IgnorePath::parse(p).expect("pattern"))
                .collect(),
        );
        let whole = texts_differ(&primary.to_string(), &shadow.to_string(), &ignore, false);
        let lazy = texts_differ(&primary.to_string(), &shadow.to_string(), &ignore, true);
        assert_eq!(whole, lazy, "parsed whole and a level at a time");
        whole.expect("both are JSON")
    }

    /// The differences of two bodies, parsed whole or (`lazy`) a level at a time.
    fn texts_differ(
        primary: &str,
        shadow: &str,
        ignore: &IgnoreSet,
        lazy: bool,
    ) -> Result<Vec<(String, String, u32)>, NotJson> {
        let found = json_diff(primary, shadow, ignore, lazy)?.found;
        Ok(found
            .into_iter()
            .map(|(shape, path, places, ..)| (shape, path, places))
            .collect())
    }

    fn strings(list: &[(&str, &str, u32)]) -> Vec<(String, String, u32)> {
        list.iter()
            .map(|(s, p, n)| (s.to_string(), p.to_string(), *n))
            .collect()
    }

    #[test]
    fn equal_documents_have_no_differences_whatever_the_order_and_number_spelling() {
        let primary = json!({"a": 1, "b": [1.0, 2, {"c": null}], "d": "x"});
        let shadow: Value =
            serde_json::from_str(r#"{"d":"x","b":[1,2.0,{"c":null}],"a":1.0}"#).expect("json");
        assert!(differences(&primary, &shadow, &[]).is_empty());
        // Large integers are compared exactly, not through floating point.
        let big = json!({"id": 9_007_199_254_740_993u64});
        let near = json!({"id": 9_007_199_254_740_992u64});
        assert_eq!(differences(&big, &near, &[]).len(), 1);
    }

    #[test]
    fn each_differing_place_is_reported_with_its_indices_and_counted_by_shape() {
        let primary = json!({
            "items": [{"id": "a1", "price": 10}, {"id": "a2", "price": 11}, {"id": "a3", "price": 12}],
            "total": 33,
            "gone": true
        });
        let shadow = json!({
            "items": [{"id": "b1", "price": 10}, {"id": "b2", "price": 99}, {"id": "b3", "price": 12}],
            "total": 33,
            "new": [1]
        });
        assert_eq!(
            differences(&primary, &shadow, &[]),
            strings(&[
                ("/gone", "/gone", 1),
                ("/items/*/id", "/items/0/id", 3),
                ("/items/*/price", "/items/1/price", 1),
                ("/new", "/new", 1),
            ])
        );
        assert_eq!(
            differences(&primary, &shadow, &["/items/*/id", "/gone", "/new"]),
            strings(&[("/items/*/price", "/items/1/price", 1)])
        );
    }

    #[test]
    fn extra_items_types_and_roots_differ_where_they_stand() {
        assert_eq!(
            differences(&json!({"a": [1, 2]}), &json!({"a": [1, 2, 3, 4]}), &[]),
            strings(&[("/a/*", "/a/2", 2)])
        );
        assert_eq!(
            differences(&json!({"a": {"b": 1}}), &json!({"a": [1]}), &[]),
            strings(&[("/a", "/a", 1)])
        );
        assert_eq!(
            differences(&json!([1]), &json!({"a": 1}), &[]),
            strings(&[("body", "body", 1)])
        );
        assert_eq!(
            differences(&json!({"a/b": {"~": 1}}), &json!({"a/b": {"~": 2}}), &[]),
            strings(&[("/a~1b/~0", "/a~1b/~0", 1)])
        );
    }

    #[test]
    fn places_below_the_lazy_levels_are_found_as_when_parsed_whole() {
        // Nested deeper than the levels parsed one at a time, objects and arrays in turn, with
        // equal siblings at every level and member orders that differ; two places differ at the
        // bottom (`differences` also checks that parsing whole finds the same).
        let mut primary = json!({"leaf": 1, "same": [1, {"x": "y"}], "gone": 0});
        let mut shadow: Value =
            serde_json::from_str(r#"{"same":[1,{"x":"y"}],"leaf":2}"#).expect("json");
        let mut path = String::new();
        for level in 0..(super::super::document::LAZY_LEVELS + 3) {
            if level % 2 == 0 {
                primary = json!({"next": primary, "n": level, "equal": {"a": [level]}});
                shadow = json!({"equal": {"a": [level]}, "n": level, "next": shadow});
                path.insert_str(0, "/next");
            } else {
                primary = json!([level, primary, {"b": level}]);
                shadow = json!([level, shadow, {"b": level}]);
                path.insert_str(0, "/1");
            }
        }
        let shape = path.replace("/1", "/*");
        assert_eq!(
            differences(&primary, &shadow, &[]),
            [
                (format!("{shape}/gone"), format!("{path}/gone"), 1),
                (format!("{shape}/leaf"), format!("{path}/leaf"), 1),
            ]
        );
    }

    #[test]
    fn what_is_not_json_where_it_differs_makes_the_bodies_not_json() {
        let ignore = IgnoreSet::default();
        let deep = |leaf: u8| format!("{{\"a\":{}{leaf}{}}}", "[".repeat(200), "]".repeat(200));
        for (primary, shadow) in [
            // Out of range, a lone surrogate, nested past serde_json's 128 levels: serde_json
            // skips them as raw text, and would not parse them.
            (r#"{"a":1e400,"b":1}"#, r#"{"a":1e401,"b":1}"#),
            (r#"{"a":["\ud800"],"b":1}"#, r#"{"a":["\ud801"],"b":1}"#),
            (r#"{"b":1}"#, r#"{"b":1,"only":"\ud800"}"#),
            (r#"[1]"#, r#"[1,1e999]"#),
            // Roots of different kinds are parsed whole, what they hold too.
            (r#"{"a":1e400}"#, r#"[1]"#),
            (&deep(1), &deep(2)),
        ] {
            assert_eq!(
                texts_differ(primary, shadow, &ignore, true),
                Err(NotJson),
                "{primary} | {shadow}"
            );
            assert!(
                Node::parse(primary.as_bytes(), &bumpalo::Bump::new()).is_none()
                    || Node::parse(shadow.as_bytes(), &bumpalo::Bump::new()).is_none()
            );
        }
        // What was found before the walk stays; what the walk found before it failed goes.
        let arena = bumpalo::Bump::new();
        let primary = Node::unparsed(br#"{"a":1,"z":1e400}"#).expect("utf-8");
        let shadow = Node::unparsed(br#"{"a":2,"z":1e401}"#).expect("utf-8");
        let mut out = Differences::default();
        out.add(
            "header:etag",
            || "header:etag".into(),
            Shown::Absent,
            Shown::Absent,
            false,
        );
        assert_eq!(
            diff(&primary, &shadow, &arena, &ignore, &mut out),
            Err(NotJson)
        );
        assert_eq!(out.list.len(), 1);
        assert_eq!(out.list[0].shape, "header:etag");
        // Roots are found past whitespace, and walked a level at a time like any other place.
        assert_eq!(
            texts_differ(
                " \n{\"a\":1,\"b\":[1]}",
                "{\"b\":[1] ,\"a\":2}\t",
                &ignore,
                true
            ),
            Ok(strings(&[("/a", "/a", 1)]))
        );
        // Spelled alike on both sides, such a value is equal without being parsed.
        assert_eq!(
            texts_differ(
                r#"{"a":1e400,"b":1}"#,
                r#"{"a":1e400,"b":2}"#,
                &ignore,
                true
            ),
            Ok(strings(&[("/b", "/b", 1)]))
        );
    }

    #[test]
    fn the_shapes_a_pair_keeps_are_bounded() {
        let primary: Value = (0..200)
            .map(|i| (format!("f{i}"), json!(i)))
            .collect::<serde_json::Map<_, _>>()
            .into();
        let shadow: Value = (0..200)
            .map(|i| (format!("f{i}"), json!(-i - 1)))
            .collect::<serde_json::Map<_, _>>()
            .into();
        let (primary, shadow) = (primary.to_string(), shadow.to_string());
        for lazy in [false, true] {
            let found = json_diff(&primary, &shadow, &IgnoreSet::default(), lazy);
            let found = found.expect("both are JSON");
            assert_eq!(found.found.len(), crate::compare::differences::MAX_SHAPES);
            assert!(found.overflow);
        }
    }
}
