//! Findings already reported and not fixed yet.
//!
//! A fuzzer stops at its first failure, so a finding that is hit often hides every other one
//! until it is fixed. With `MIRROR_FUZZ_SKIP_KNOWN=1` (`cargo xtask fuzz --skip-known`), the
//! targets step around the inputs that show one of the findings below; without it they fail on
//! them like on anything else. Each finding has a regression test in
//! `mirror-daemon/tests/fuzz_regressions.rs`; remove its entry here once it is fixed.

use std::sync::OnceLock;

use crate::copy::TargetToml;

/// Whether known findings are skipped (`MIRROR_FUZZ_SKIP_KNOWN=1`).
pub fn skipping() -> bool {
    static SKIP: OnceLock<bool> = OnceLock::new();
    *SKIP.get_or_init(|| std::env::var_os("MIRROR_FUZZ_SKIP_KNOWN").is_some_and(|v| v == "1"))
}

/// Finding 1: the config accepts `add_headers` / `remove_headers` that touch the copy's
/// framing fields or Host (`Content-Length`, `Transfer-Encoding`, their `_` aliases, `Host`,
/// a `Connection` field), and `add_headers` values with control bytes; copies made with such a
/// target are ambiguous or malformed. `framer_differential` then uses the default edits.
pub fn edits_finding(target: &TargetToml) -> bool {
    let touches = |name: &str| {
        let name = name.to_ascii_lowercase().replace('_', "-");
        ["content-length", "transfer-encoding", "host", "connection"].contains(&name.as_str())
    };
    target.remove_headers.iter().any(|name| touches(name))
        || target.add_headers.iter().any(|(name, value)| {
            touches(name) || value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f)
        })
}

/// Finding 2: `build_head` drops every field the client's `Connection` field names, framing
/// fields included: `Connection: Content-Length` (or `Transfer-Encoding`) takes the framing
/// field out of the copy while the body still follows it, so the shadow reads the body as the
/// next request.
pub fn copy_finding(head: &mirror_daemon::http::RequestHead) -> bool {
    head.headers()
        .filter(|(name, _)| name.eq_ignore_ascii_case("connection"))
        .flat_map(|(_, value)| value.split(|b| *b == b','))
        .map(crate::reference::trim_ows)
        .any(|option| {
            option.eq_ignore_ascii_case(b"content-length")
                || option.eq_ignore_ascii_case(b"transfer-encoding")
        })
}

/// Finding 3: a config error prints the key path as it is, so a quoted key holding a newline
/// (`add_headers = { "a\nb" = 1 }`) splits the one-line error.
pub fn config_error_finding(error: &mirror_daemon::config::Error) -> bool {
    matches!(error, mirror_daemon::config::Error::Invalid { key, .. } if key.contains(['\n', '\r']))
}

// Finding 4 (no predicate): the shadow response reader parses the head anew after every read, so
// a shadow that sends a 64 KiB head a byte at a time costs about half a second of CPU per
// response. `shadow_response` never reads a long (repeating) stream in pieces under 256 bytes.
