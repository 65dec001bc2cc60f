//! What of an answer may leave the daemon: short excerpts of differing values, never a credential.
//!
//! Reports and logs show a differing field as two excerpts of at most [`MAX_EXCERPT_CHARS`]
//! characters, rendered without ever rendering more (a differing 1 MiB array costs 120
//! characters). Header values named in [`ALWAYS_SECRET`] or removed from copies by the target are
//! shown as [`REDACTED`] (that they differ is still reported); query parameters that look like
//! credentials are redacted from request lines. Bodies appear only through these excerpts.

use std::fmt::{self, Write as _};

/// The longest excerpt of a value, in characters.
pub const MAX_EXCERPT_CHARS: usize = 120;

/// What a secret value is shown as.
pub const REDACTED: &str = "[redacted]";

/// Header fields whose values are never reported or logged, whatever the config says.
pub const ALWAYS_SECRET: [&str; 4] = [
    "authorization",
    "cookie",
    "set-cookie",
    "proxy-authorization",
];

/// Query parameter names (parts of them, case-insensitively) whose values are redacted.
const SECRET_QUERY_WORDS: [&str; 7] = [
    "token",
    "key",
    "secret",
    "password",
    "signature",
    "auth",
    "session",
];

/// Appends `text` cut to `max` characters to `out`, with `…` at the end when it was cut.
pub fn push_truncated(out: &mut String, text: &str, max: usize) {
    match text.char_indices().nth(max) {
        None => out.push_str(text),
        Some((end, _)) => {
            out.push_str(&text[..end]);
            out.push('…');
        }
    }
}

/// `path?query` with the values of credential-like query parameters replaced by [`REDACTED`].
pub fn redact_query(target: &str) -> std::borrow::Cow<'_, str> {
    let Some((path, query)) = target.split_once('?') else {
        return target.into();
    };
    let secret = |name: &str| {
        let name = name.to_ascii_lowercase();
        SECRET_QUERY_WORDS.iter().any(|word| name.contains(word))
    };
    if !query
        .split('&')
        .any(|pair| pair.split_once('=').is_some_and(|(name, _)| secret(name)))
    {
        return target.into();
    }
    let mut out = String::with_capacity(target.len());
    out.push_str(path);
    out.push('?');
    for (i, pair) in query.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        match pair.split_once('=') {
            Some((name, _)) if secret(name) => {
                out.push_str(name);
                out.push('=');
                out.push_str(REDACTED);
            }
            _ => out.push_str(pair),
        }
    }
    out.into()
}

/// A `fmt::Write` that keeps the first [`MAX_EXCERPT_CHARS`] characters and then refuses more,
/// so that rendering a large value stops early.
#[derive(Default)]
struct Bounded {
    out: String,
    chars: usize,
    cut: bool,
}

impl fmt::Write for Bounded {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            if self.chars == MAX_EXCERPT_CHARS {
                self.cut = true;
                return Err(fmt::Error);
            }
            self.out.push(c);
            self.chars += 1;
        }
        Ok(())
    }
}

impl Bounded {
    /// The excerpt, with `…` when it was cut.
    fn finish(mut self) -> String {
        if self.cut {
            self.out.push('…');
        }
        self.out
    }
}

/// Renders `display` to at most [`MAX_EXCERPT_CHARS`] characters (`…` when cut).
fn bounded(display: impl fmt::Display) -> String {
    let mut writer = Bounded::default();
    let _ = write!(writer, "{display}");
    writer.finish()
}

/// A JSON value as compact JSON text, cut.
pub(super) fn json(value: &super::document::Node<'_>) -> String {
    // Node's Display writes compact JSON and stops at the writer's first error.
    bounded(value)
}

/// Header values, joined with `, ` (as a list field would be), cut; `None` when there are none.
pub fn header_values<'a>(
    values: impl Iterator<Item = &'a bytes::Bytes>,
    secret: bool,
) -> Option<String> {
    let mut values = values.peekable();
    values.peek()?;
    if secret {
        return Some(REDACTED.to_string());
    }
    let mut writer = Bounded::default();
    for (i, value) in values.enumerate() {
        let separator = if i > 0 { ", " } else { "" };
        if write!(writer, "{separator}{}", String::from_utf8_lossy(value)).is_err() {
            break;
        }
    }
    Some(writer.finish())
}

/// A body compared byte for byte: where it first differs from the other side's, and the text
/// around that place (or its bytes in hex when it is not text).
pub fn body_bytes(body: &[u8], first_difference: usize) -> String {
    // A little context before the difference.
    let start = first_difference.saturating_sub(20).min(body.len());
    let end = body.len().min(start + MAX_EXCERPT_CHARS * 4);
    let window = &body[start..end];
    // A character the window's edges cut is not binary data: skip the continuation bytes it
    // left at the start, and drop what is left of it at the end.
    let skip = window
        .iter()
        .take(3)
        .take_while(|b| (**b & 0xc0) == 0x80)
        .count();
    let text = match std::str::from_utf8(&window[skip..]) {
        Ok(text) => Some(text),
        Err(e) if e.error_len().is_none() => {
            std::str::from_utf8(&window[skip..skip + e.valid_up_to()]).ok()
        }
        Err(_) => None,
    };
    let prefix = if start > 0 { "…" } else { "" };
    match text {
        Some(text) => bounded(format_args!(
            "byte {first_difference} of {}: {prefix}{}",
            body.len(),
            text.escape_debug()
        )),
        None => bounded(format_args!(
            "byte {first_difference} of {} (binary): {prefix}{}",
            body.len(),
            Hex(&window[..window.len().min(MAX_EXCERPT_CHARS / 3)])
        )),
    }
}

struct Hex<'a>(&'a [u8]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, byte) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_char(' ')?;
            }
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_values_are_cut_without_rendering_them_whole() {
        use super::super::document::Node;
        let items: Vec<Node> = (0..100_000u64).map(|i| Node::Number(i.into())).collect();
        let excerpt = json(&Node::Array(&items));
        assert_eq!(excerpt.chars().count(), MAX_EXCERPT_CHARS + 1);
        assert!(excerpt.starts_with("[0,1,2,"), "{excerpt}");
        assert!(excerpt.ends_with('…'));
        assert_eq!(json(&Node::String("12.50")), "\"12.50\"");
        let truncate = |text: &str, max: usize| {
            let mut out = String::from(">");
            push_truncated(&mut out, text, max);
            out
        };
        assert_eq!(truncate("héllo", 2), ">hé…");
        assert_eq!(truncate("hé", 2), ">hé");
    }

    #[test]
    fn credential_like_query_values_are_redacted() {
        assert_eq!(
            redact_query("/a?id=7&access_token=abc&API_KEY=x&sig=1"),
            "/a?id=7&access_token=[redacted]&API_KEY=[redacted]&sig=1"
        );
        assert_eq!(redact_query("/a?id=7"), "/a?id=7");
        assert_eq!(redact_query("/a"), "/a");
    }

    #[test]
    fn secret_header_values_are_never_shown() {
        let values = [bytes::Bytes::from_static(b"Bearer abc")];
        assert_eq!(
            header_values(values.iter(), true).as_deref(),
            Some(REDACTED)
        );
        let values = [
            bytes::Bytes::from_static(b"a"),
            bytes::Bytes::from_static(b"b"),
        ];
        assert_eq!(header_values(values.iter(), false).as_deref(), Some("a, b"));
        assert_eq!(header_values([].iter(), false), None);
    }

    #[test]
    fn body_excerpts_show_the_place_of_the_first_difference() {
        let body = format!("{}price=13.00;", "x".repeat(100));
        let excerpt = body_bytes(body.as_bytes(), 106);
        assert!(excerpt.starts_with("byte 106 of 112: …"), "{excerpt}");
        assert!(excerpt.ends_with("price=13.00;"), "{excerpt}");
        let binary = [0u8, 159, 146, 150, 1, 2];
        let excerpt = body_bytes(&binary, 1);
        assert_eq!(excerpt, "byte 1 of 6 (binary): 00 9f 92 96 01 02");
        // A multi-byte character cut by the window's start is still text.
        let body = format!("{}é{}", "a".repeat(19), "b".repeat(30));
        let excerpt = body_bytes(body.as_bytes(), 40);
        assert!(
            excerpt.ends_with(": …bbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"),
            "{excerpt}"
        );
    }
}
