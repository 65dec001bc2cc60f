//! Comparing two JSON documents as values: member order and number spelling do not matter
//! (`1.0` equals `1`), and every differing place is reported by its path.
//!
//! One walk over both documents ([`Node`]s) at once; a member present on one side only, an array
//! item beyond the other's length, or a value of another type or value is a difference at that
//! place. Places under an `ignore` pattern are skipped without being compared. Members are
//! visited by name (the primary's, then those only the shadow has), so differences come in the
//! same order whatever the documents' member order.

use serde_json::Number;

use super::{
    differences::{Differences, Shown, WHOLE_BODY},
    document::Node,
    path::{self, IgnoreSet, Live, Step},
};

/// Adds every differing place of `primary` and `shadow` to `out`.
pub(super) fn diff<'a>(
    primary: &'a Node<'a>,
    shadow: &'a Node<'a>,
    ignore: &IgnoreSet,
    out: &mut Differences<'a>,
) {
    let mut walker = Walker {
        ignore,
        steps: Vec::new(),
        shape: String::new(),
        out,
    };
    walker.walk(primary, shadow, ignore.root());
}

struct Walker<'a, 'w> {
    ignore: &'w IgnoreSet,
    /// The path from the root to the values being compared.
    steps: Vec<Step<'a>>,
    /// Reused for each difference's shape, so that a known shape costs no allocation.
    shape: String,
    out: &'w mut Differences<'a>,
}

impl<'a> Walker<'a, '_> {
    fn walk(&mut self, primary: &'a Node<'a>, shadow: &'a Node<'a>, live: Live) {
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
                        None => self.differ(Shown::Json(value), Shown::Absent),
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
                        self.differ(Shown::Absent, Shown::Json(value));
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
                        (Some(value), None) => self.differ(Shown::Json(value), Shown::Absent),
                        (None, Some(other)) => self.differ(Shown::Absent, Shown::Json(other)),
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
    use crate::compare::path::IgnorePath;

    /// The differences of two documents, given as values (written out, then parsed as bodies).
    fn differences(primary: &Value, shadow: &Value, ignore: &[&str]) -> Vec<(String, String, u32)> {
        let (primary, shadow) = (primary.to_string(), shadow.to_string());
        let arena = bumpalo::Bump::new();
        let primary = Node::parse(primary.as_bytes(), &arena).expect("primary parses");
        let shadow = Node::parse(shadow.as_bytes(), &arena).expect("shadow parses");
        let ignore = IgnoreSet::new(
            ignore
                .iter()
                .map(|p| IgnorePath::parse(p).expect("pattern"))
                .collect(),
        );
        let mut out = Differences::default();
        diff(&primary, &shadow, &ignore, &mut out);
        out.list
            .into_iter()
            .map(|d| (d.shape, d.path, d.places))
            .collect()
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
        let arena = bumpalo::Bump::new();
        let primary = Node::parse(primary.as_bytes(), &arena).expect("primary parses");
        let shadow = Node::parse(shadow.as_bytes(), &arena).expect("shadow parses");
        let ignore = IgnoreSet::default();
        let mut out = Differences::default();
        diff(&primary, &shadow, &ignore, &mut out);
        assert_eq!(out.list.len(), crate::compare::differences::MAX_SHAPES);
        assert!(out.overflow);
    }
}
