//! gRPC in a comparison: which answers are gRPC answers, and the `grpc-status` code they ended
//! with, read the same way from the primary's answer and the shadow's.
//!
//! A gRPC answer is one whose `content-type` is `application/grpc` or `application/grpc+...`
//! (`+proto`, `+json`: gRPC's own framing either way). Its status is in the trailers, or, for a
//! Trailers-Only answer (an error without a message), in the head. A value that is not a decimal
//! number is read as UNKNOWN (2), as gRPC clients read it; a gRPC answer without any
//! `grpc-status` has none (`None`), which differs from every code. Other answers have none
//! either, whatever fields they carry.

use bytes::Bytes;

/// The gRPC status a value that does not parse stands for: UNKNOWN.
const UNKNOWN: u32 = 2;

/// Whether a `content-type` value says gRPC.
pub fn is_grpc(content_type: &[u8]) -> bool {
    let media_type = content_type
        .split(|b| *b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    let prefix = b"application/grpc";
    media_type.len() >= prefix.len()
        && media_type[..prefix.len()].eq_ignore_ascii_case(prefix)
        && matches!(media_type.get(prefix.len()), None | Some(b'+'))
}

/// The `grpc-status` of an answer whose kept `headers` and `trailers` (lower-case names) are
/// given: `None` unless the answer is gRPC; the trailers' code, else the head's.
pub fn status(headers: &[(String, Bytes)], trailers: &[(String, Bytes)]) -> Option<u32> {
    let first = |fields: &[(String, Bytes)], name: &str| {
        fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, value)| value.clone())
    };
    if !first(headers, "content-type").is_some_and(|value| is_grpc(&value)) {
        return None;
    }
    let value = first(trailers, "grpc-status").or_else(|| first(headers, "grpc-status"))?;
    Some(
        std::str::from_utf8(&value)
            .ok()
            .and_then(|text| text.trim().parse::<u32>().ok())
            .unwrap_or(UNKNOWN),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(list: &[(&str, &str)]) -> Vec<(String, Bytes)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), Bytes::copy_from_slice(v.as_bytes())))
            .collect()
    }

    #[test]
    fn grpc_content_types_are_told_apart() {
        for yes in [
            "application/grpc",
            "application/grpc+proto",
            "Application/GRPC+json; charset=utf-8",
        ] {
            assert!(is_grpc(yes.as_bytes()), "{yes}");
        }
        for no in ["application/json", "application/grpc-web", "text/plain", ""] {
            assert!(!is_grpc(no.as_bytes()), "{no}");
        }
    }

    #[test]
    fn the_status_comes_from_the_trailers_else_the_head_and_only_for_grpc() {
        let grpc = fields(&[("content-type", "application/grpc")]);
        let trailers = fields(&[("grpc-status", "5"), ("grpc-message", "gone")]);
        assert_eq!(status(&grpc, &trailers), Some(5));
        // Trailers-Only: the status is among the head's fields.
        let only = fields(&[("content-type", "application/grpc"), ("grpc-status", "14")]);
        assert_eq!(status(&only, &[]), Some(14));
        assert_eq!(status(&grpc, &[]), None);
        assert_eq!(status(&grpc, &fields(&[("grpc-status", "x")])), Some(2));
        let json = fields(&[("content-type", "application/json")]);
        assert_eq!(status(&json, &trailers), None);
        assert_eq!(status(&[], &trailers), None);
    }
}
