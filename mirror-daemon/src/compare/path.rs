//! JSON paths: the `ignore` patterns of `[mirror.rules.compare]` and the names differences are
//! reported under.
//!
//! A path is JSON-Pointer-like (RFC 6901): `/items/3/price`, with `~1` for `/` and `~0` for `~` in
//! member names. A pattern may use `*` for any array item or object member (`/items/*/id`); a
//! pattern covers everything below the place it names. Differences are reported with their array
//! indices (`/items/3/price`) and counted for noise under their *shape*, indices replaced by `*`
//! (`/items/*/price`), so that a field of every item of a list is one field.

use std::fmt::Write as _;

/// One `ignore` pattern, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnorePath {
    segments: Vec<PatternSegment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PatternSegment {
    /// `*`: any array item or object member.
    Any,
    /// A member name (unescaped), or an array index written as decimal digits.
    Name(String),
}

impl IgnorePath {
    /// Parses `/a/*/b`; the error says what is wrong, for a config error.
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        let Some(rest) = text.strip_prefix('/') else {
            return Err(if text.is_empty() {
                "would ignore the whole body: set max_body_bytes = 0 to compare status and \
                 headers only"
            } else {
                "must start with '/' (JSON Pointer, e.g. /items/*/id)"
            });
        };
        let segments = rest
            .split('/')
            .map(|segment| match segment {
                "*" => Ok(PatternSegment::Any),
                _ => unescape(segment).map(PatternSegment::Name),
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { segments })
    }

    fn len(&self) -> usize {
        self.segments.len()
    }
}

/// Undoes JSON Pointer escaping: `~1` is `/`, `~0` is `~`; any other `~` is an error.
fn unescape(segment: &str) -> Result<String, &'static str> {
    let mut out = String::with_capacity(segment.len());
    let mut chars = segment.chars();
    while let Some(c) = chars.next() {
        if c != '~' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('0') => out.push('~'),
            Some('1') => out.push('/'),
            _ => return Err("has a '~' that is neither ~0 (~) nor ~1 (/)"),
        }
    }
    Ok(out)
}

/// One step into a JSON document: a member name or an array index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step<'a> {
    Member(&'a str),
    Item(usize),
}

/// The `ignore` patterns of a rule, matched step by step while a document is walked.
///
/// The walk carries a bit set of the patterns that still match the path so far ([`Self::ALL`] at
/// the root); each step keeps the patterns whose next segment matches it. A set that becomes
/// empty costs nothing further down, so a walk pays only near the paths that are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IgnoreSet {
    patterns: Vec<IgnorePath>,
}

/// Which patterns still match; bit i is pattern i (at most 64, see `MAX_IGNORE_PATHS`).
pub(super) type Live = u64;

impl IgnoreSet {
    /// At most [`crate::config::MAX_IGNORE_PATHS`] patterns, validated with the config; more are
    /// dropped rather than mis-matched.
    pub fn new(patterns: Vec<IgnorePath>) -> Self {
        let mut patterns = patterns;
        patterns.truncate(crate::config::MAX_IGNORE_PATHS);
        Self { patterns }
    }

    /// Every pattern, live at the root.
    pub(super) fn root(&self) -> Live {
        match self.patterns.len() {
            64 => u64::MAX,
            n => (1u64 << n) - 1,
        }
    }

    /// The patterns still live after taking `step` at `depth` (0 for the root's members), and
    /// whether one of them ends there, so that everything from here down is ignored.
    pub(super) fn step(&self, live: Live, depth: usize, step: Step<'_>) -> (Live, bool) {
        let mut next = 0;
        let mut ignored = false;
        let mut bits = live;
        while bits != 0 {
            let i = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            let pattern = &self.patterns[i];
            let matches = match (&pattern.segments[depth], step) {
                (PatternSegment::Any, _) => true,
                (PatternSegment::Name(name), Step::Member(member)) => name == member,
                (PatternSegment::Name(name), Step::Item(index)) => {
                    name.parse::<usize>().is_ok_and(|n| n == index)
                }
            };
            if matches {
                if pattern.len() == depth + 1 {
                    ignored = true;
                } else {
                    next |= 1 << i;
                }
            }
        }
        (next, ignored)
    }
}

/// Writes the JSON Pointer of `steps` to `out`: `/items/3/price`.
pub(super) fn write_path(out: &mut String, steps: &[Step<'_>]) {
    out.clear();
    for step in steps {
        out.push('/');
        match step {
            Step::Member(name) => push_escaped(out, name),
            Step::Item(index) => {
                let _ = write!(out, "{index}");
            }
        }
    }
}

/// Writes the shape of `steps` to `out`, array indices as `*`: `/items/*/price`.
pub(super) fn write_shape(out: &mut String, steps: &[Step<'_>]) {
    out.clear();
    for step in steps {
        out.push('/');
        match step {
            Step::Member(name) => push_escaped(out, name),
            Step::Item(_) => out.push('*'),
        }
    }
}

fn push_escaped(out: &mut String, name: &str) {
    for c in name.chars() {
        match c {
            '~' => out.push_str("~0"),
            '/' => out.push_str("~1"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(patterns: &[&str]) -> IgnoreSet {
        IgnoreSet::new(
            patterns
                .iter()
                .map(|p| IgnorePath::parse(p).expect("valid pattern"))
                .collect(),
        )
    }

    /// Whether the path `steps` is ignored by `set`, walking it as the differ does.
    fn ignored(set: &IgnoreSet, steps: &[Step<'_>]) -> bool {
        let mut live = set.root();
        for (depth, step) in steps.iter().enumerate() {
            if live == 0 {
                return false;
            }
            let (next, ends_here) = set.step(live, depth, *step);
            if ends_here {
                return true;
            }
            live = next;
        }
        false
    }

    #[test]
    fn wildcards_match_any_item_or_member_and_cover_what_is_below() {
        use Step::{Item, Member};
        let set = set(&["/items/*/id", "/generated_at", "/meta/*"]);
        assert!(ignored(&set, &[Member("items"), Item(0), Member("id")]));
        assert!(ignored(&set, &[Member("items"), Item(41), Member("id")]));
        assert!(ignored(
            &set,
            &[Member("items"), Member("x"), Member("id"), Member("deeper")]
        ));
        assert!(!ignored(&set, &[Member("items"), Item(0), Member("price")]));
        assert!(
            !ignored(&set, &[Member("items"), Item(0)]),
            "the item itself is compared"
        );
        assert!(ignored(&set, &[Member("generated_at")]));
        assert!(!ignored(&set, &[Member("generated")]));
        assert!(ignored(&set, &[Member("meta"), Member("host")]));
        assert!(!ignored(&set, &[Member("meta")]));
    }

    #[test]
    fn numeric_segments_name_array_items_and_escapes_name_members() {
        use Step::{Item, Member};
        let set = set(&["/items/0", "/a~1b/c~0d"]);
        assert!(ignored(&set, &[Member("items"), Item(0), Member("x")]));
        assert!(!ignored(&set, &[Member("items"), Item(1)]));
        assert!(ignored(&set, &[Member("items"), Member("0")]));
        assert!(ignored(&set, &[Member("a/b"), Member("c~d")]));
    }

    #[test]
    fn malformed_patterns_say_why() {
        assert!(IgnorePath::parse("items/*/id")
            .expect_err("relative")
            .contains("must start with '/'"));
        assert!(IgnorePath::parse("")
            .expect_err("root")
            .contains("max_body_bytes = 0"));
        assert!(IgnorePath::parse("/a~2")
            .expect_err("escape")
            .contains("~0"));
    }

    #[test]
    fn paths_are_json_pointers_and_shapes_replace_indices() {
        use Step::{Item, Member};
        let steps = [Member("items"), Item(3), Member("a/b~c")];
        let mut out = String::new();
        write_path(&mut out, &steps);
        assert_eq!(out, "/items/3/a~1b~0c");
        write_shape(&mut out, &steps);
        assert_eq!(out, "/items/*/a~1b~0c");
        write_path(&mut out, &[]);
        assert_eq!(out, "");
    }

    #[test]
    fn sixty_four_patterns_all_take_part() {
        let patterns: Vec<String> = (0..64).map(|i| format!("/f{i}")).collect();
        let set = set(&patterns.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(set.root(), u64::MAX);
        assert!(ignored(&set, &[Step::Member("f63")]));
        assert!(ignored(&set, &[Step::Member("f0")]));
        assert!(!ignored(&set, &[Step::Member("f64")]));
    }
}
