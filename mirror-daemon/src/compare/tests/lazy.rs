//! Parsing a level at a time finds what parsing whole finds: generated pairs of documents, the
//! shadow's derived from the primary's (values changed, members reordered, dropped or added,
//! numbers respelled, duplicate names, whitespace), compared both ways.

use proptest::prelude::*;

use super::json_diff;
use crate::compare::path::{IgnorePath, IgnoreSet};

/// A generated JSON value; objects keep their members in order and may repeat a name.
#[derive(Debug, Clone)]
enum Json {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(&'static str),
    Array(Vec<Json>),
    Object(Vec<(&'static str, Json)>),
}

const NAMES: [&str; 5] = ["a", "b", "id", "price", "é/~"];
const TEXTS: [&str; 5] = ["", "x", "Widget 7", "a\"b\\c", "\u{e9}\n"];

fn json() -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        (-3i64..1000).prop_map(Json::Int),
        prop_oneof![Just(0.5), Just(-0.0), Just(12.5), Just(1e300)].prop_map(Json::Float),
        prop::sample::select(&TEXTS[..]).prop_map(Json::Text),
    ];
    leaf.prop_recursive(7, 64, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Json::Array),
            prop::collection::vec((prop::sample::select(&NAMES[..]), inner), 0..5)
                .prop_map(Json::Object),
        ]
    })
}

/// How the shadow's document differs from the primary's, read one choice per place.
struct Choices<'c>(std::slice::Iter<'c, u8>);

impl Choices<'_> {
    fn next(&mut self) -> u8 {
        self.0.next().copied().unwrap_or(0)
    }
}

/// The shadow's value: mostly the primary's, changed where the choices say.
fn derive(value: &Json, choices: &mut Choices<'_>) -> Json {
    match (choices.next(), value) {
        (0..=19, _) => Json::Int(i64::from(choices.next())),
        (20..=29, _) => Json::Text(TEXTS[usize::from(choices.next()) % TEXTS.len()]),
        (30..=39, Json::Object(members)) => {
            let mut members: Vec<_> = members
                .iter()
                .map(|(n, v)| (*n, derive(v, choices)))
                .collect();
            members.reverse();
            Json::Object(members)
        }
        (40..=49, Json::Object(members)) => {
            let mut members: Vec<_> = members
                .iter()
                .map(|(n, v)| (*n, derive(v, choices)))
                .collect();
            let at = usize::from(choices.next()) % (members.len() + 1);
            if at < members.len() && choices.next().is_multiple_of(2) {
                members.remove(at);
            } else {
                members.insert(at, (NAMES[at % NAMES.len()], Json::Bool(true)));
            }
            Json::Object(members)
        }
        (50..=59, Json::Array(items)) => {
            let mut items: Vec<_> = items.iter().map(|v| derive(v, choices)).collect();
            if choices.next().is_multiple_of(2) {
                items.pop();
            } else {
                items.push(Json::Null);
            }
            Json::Array(items)
        }
        (_, Json::Object(members)) => Json::Object(
            members
                .iter()
                .map(|(n, v)| (*n, derive(v, choices)))
                .collect(),
        ),
        (_, Json::Array(items)) => Json::Array(items.iter().map(|v| derive(v, choices)).collect()),
        (_, leaf) => leaf.clone(),
    }
}

/// JSON text of `value`, spelled as the choices say: integers as `7`, `7.0` or `7e0`, spaces
/// or none, and a decoy member before a real one (the last of duplicate names wins).
fn render(value: &Json, choices: &mut Choices<'_>, out: &mut String) {
    let space = |choices: &mut Choices<'_>, out: &mut String| {
        if choices.next().is_multiple_of(4) {
            out.push_str(" \n");
        }
    };
    match value {
        Json::Null => out.push_str("null"),
        Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Json::Int(i) => match choices.next() % 3 {
            0 => out.push_str(&format!("{i}.0")),
            1 => out.push_str(&format!("{i}e0")),
            _ => out.push_str(&i.to_string()),
        },
        Json::Float(f) => out.push_str(&serde_json::to_string(f).expect("finite")),
        Json::Text(text) => out.push_str(&serde_json::to_string(text).expect("string")),
        Json::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                space(choices, out);
                render(item, choices, out);
            }
            out.push(']');
        }
        Json::Object(members) => {
            out.push('{');
            for (i, (name, member)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                space(choices, out);
                let name = serde_json::to_string(name).expect("string");
                if choices.next().is_multiple_of(8) {
                    out.push_str(&format!("{name}:[\"decoy\"],"));
                }
                out.push_str(&name);
                out.push(':');
                render(member, choices, out);
            }
            out.push('}');
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn a_level_at_a_time_finds_what_parsing_whole_finds(
        primary in json(),
        changes in prop::collection::vec(any::<u8>(), 0..64),
        spelling in prop::collection::vec(any::<u8>(), 0..64),
        ignored in any::<bool>(),
    ) {
        let shadow = derive(&primary, &mut Choices(changes.iter()));
        let mut texts = [String::new(), String::new()];
        render(&primary, &mut Choices(spelling.iter()), &mut texts[0]);
        let respelled: Vec<u8> = spelling.iter().rev().copied().collect();
        render(&shadow, &mut Choices(respelled.iter()), &mut texts[1]);
        let patterns = if ignored { vec!["/*/id", "/price"] } else { Vec::new() };
        let ignore = IgnoreSet::new(
            patterns.iter().map(|p| IgnorePath::parse(p).expect("pattern")).collect(),
        );
        let whole = json_diff(&texts[0], &texts[1], &ignore, false);
        prop_assert!(whole.is_ok());
        let lazy = json_diff(&texts[0], &texts[1], &ignore, true);
        prop_assert_eq!(lazy, whole, "{} | {}", texts[0], texts[1]);
    }
}
