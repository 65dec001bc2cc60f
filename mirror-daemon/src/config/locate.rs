//! Pointing at the place in a TOML document that a config error is about: line and column of a
//! key path such as `mirror.targets[0].percent`.

use std::ops::Range;

use toml_edit::{ImDocument, Item, Table, TableLike, Value};

/// 1-based line and column of the byte `offset` in `text`.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |nl| before.len() - nl - 1)
        + 1;
    (line, column)
}

/// The span of the key (or array element) that `path` names, or of its nearest existing parent.
pub fn span_of(text: &str, path: &str) -> Option<Range<usize>> {
    let document = ImDocument::parse(text).ok()?;
    let mut cursor = Cursor::Item(document.as_item());
    let mut best = None;
    for segment in segments(path) {
        let Some((span, next)) = step(cursor, segment) else {
            break;
        };
        best = span.or(best);
        cursor = next;
    }
    best
}

/// Where the walk through the document stands.
#[derive(Clone, Copy)]
enum Cursor<'a> {
    Item(&'a Item),
    Value(&'a Value),
    Table(&'a Table),
}

fn step<'a>(
    cursor: Cursor<'a>,
    segment: Segment<'_>,
) -> Option<(Option<Range<usize>>, Cursor<'a>)> {
    match segment {
        Segment::Key(key) => {
            let table: &dyn TableLike = match cursor {
                Cursor::Item(item) => item.as_table_like()?,
                Cursor::Value(value) => value.as_inline_table()?,
                Cursor::Table(table) => table,
            };
            let (key, item) = table.get_key_value(key)?;
            Some((key.span(), Cursor::Item(item)))
        }
        Segment::Index(index) => match cursor {
            Cursor::Item(Item::ArrayOfTables(array)) => {
                let table = array.get(index)?;
                Some((table.span(), Cursor::Table(table)))
            }
            Cursor::Item(Item::Value(Value::Array(array))) | Cursor::Value(Value::Array(array)) => {
                let value = array.get(index)?;
                Some((value.span(), Cursor::Value(value)))
            }
            _ => None,
        },
    }
}

#[derive(Clone, Copy)]
enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

/// `a.b[2].c` -> Key(a), Key(b), Index(2), Key(c).
fn segments(path: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (key, indices) = part
            .split_once('[')
            .map_or((part, ""), |(k, rest)| (k, rest));
        if !key.is_empty() {
            out.push(Segment::Key(key));
        }
        for index in indices.split('[') {
            if let Ok(i) = index.trim_end_matches(']').parse() {
                out.push(Segment::Index(i));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "[relay]\nbuffer_size = 10\n\n[[mirror.targets]]\nname = \"a\"\n\n[[mirror.targets]]\nname = \"b\"\npercent = 200\nadd_headers = { \"x\" = \"y\" }\n";

    fn at(path: &str) -> Option<(usize, usize)> {
        span_of(TEXT, path).map(|span| line_column(TEXT, span.start))
    }

    #[test]
    fn keys_in_tables_and_arrays_of_tables_are_found() {
        assert_eq!(at("relay.buffer_size"), Some((2, 1)));
        assert_eq!(at("mirror.targets[1].percent"), Some((9, 1)));
        assert_eq!(at("mirror.targets[1].add_headers.x"), Some((10, 17)));
    }

    #[test]
    fn a_missing_key_points_at_its_nearest_parent() {
        assert_eq!(at("mirror.targets[0].percent"), Some((4, 1)));
        assert_eq!(at("admin.address"), None);
    }
}
