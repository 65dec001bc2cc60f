//! The head of a copy: the original request line and headers, in their order and spelling, with
//! the target's edits applied.
//!
//! Edits, in order:
//! - `Host`: the target's suffix is appended to the host name, before any port (as Envoy does:
//!   `orders:8080` -> `orders-shadow:8080`); or a literal host; or left as is. A request without
//!   Host gets the literal host when one is configured, and no Host otherwise.
//! - Hop-by-hop fields are not copied: `Connection` and every field it names, `Keep-Alive`,
//!   `Proxy-Connection`, and `Expect` (the copy's body is sent at once; waiting for
//!   `100 Continue` would only delay the shadow). The copy travels on the daemon's own
//!   keep-alive connection to the target.
//! - `remove_headers` are dropped; `add_headers` replace any field of the same name and are
//!   appended last.
//!
//! Framing fields (`Content-Length`, `Transfer-Encoding`) are kept: the body is copied as it was
//! framed on the wire.

use crate::{
    config,
    http::{h2, RequestHead},
};

use super::rules::split_port;

/// How the Host of a copy is derived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostRewrite {
    Suffix(String),
    Literal(String),
    Keep,
}

/// The edits one target applies to its copies.
#[derive(Debug, Clone)]
pub struct Edits {
    pub host: HostRewrite,
    /// Lowercase names.
    pub remove: Vec<String>,
    pub add: Vec<(String, String)>,
}

impl Edits {
    pub fn from_config(target: &config::Target) -> Self {
        let host = match (&target.host, target.keep_host) {
            (Some(literal), _) => HostRewrite::Literal(literal.clone()),
            (None, true) => HostRewrite::Keep,
            (None, false) => HostRewrite::Suffix(target.host_suffix.clone()),
        };
        Self {
            host,
            remove: target
                .remove_headers
                .iter()
                .chain(target.add_headers.keys())
                .map(|name| name.to_ascii_lowercase())
                .collect(),
            add: target
                .add_headers
                .iter()
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect(),
        }
    }
}

/// Builds the head of the copy of `head` under `edits`.
pub fn build_head(head: &RequestHead, edits: &Edits) -> Vec<u8> {
    let raw = head.raw();
    let request_line_end = raw
        .windows(2)
        .position(|w| w == b"\r\n")
        .map_or(raw.len(), |p| p + 2);
    let mut out = Vec::with_capacity(raw.len() + 64);
    out.extend_from_slice(&raw[..request_line_end]);

    let named_by_connection: Vec<String> = head
        .headers()
        .filter(|(name, _)| name.eq_ignore_ascii_case("connection"))
        .flat_map(|(_, value)| value.split(|b| *b == b','))
        .filter_map(|token| std::str::from_utf8(token).ok())
        .map(|token| token.trim().to_ascii_lowercase())
        // Framing fields stay whatever Connection says: dropping Content-Length or
        // Transfer-Encoding would make the body read as further requests on the shadow.
        .filter(|token| !token.is_empty() && !is_framing_field(token))
        .collect();
    let mut saw_host = false;
    for (name, value) in head.headers() {
        let lower = name.to_ascii_lowercase();
        if is_hop_by_hop(&lower)
            || named_by_connection.contains(&lower)
            || edits.remove.contains(&lower)
        {
            continue;
        }
        if lower == "host" {
            saw_host = true;
            put_field(&mut out, name, &rewrite_host(value, &edits.host));
            continue;
        }
        put_field(&mut out, name, value);
    }
    if let (false, HostRewrite::Literal(literal)) = (saw_host, &edits.host) {
        put_field(&mut out, "Host", literal.as_bytes());
    }
    for (name, value) in &edits.add {
        put_field(&mut out, name, value.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Builds the copy of an HTTP/2 request under `edits`: the same method, scheme and path, the
/// `:authority` (and a `host` field, if the client sent one) rewritten as a Host is, the fields
/// in their order less `remove_headers`, then `add_headers` (names in lower case, as HTTP/2
/// requires). HTTP/2 has no hop-by-hop fields to drop: RFC 9113 forbids them, and the decoder
/// skips requests that carry them. `None` when the edits make no valid request.
pub fn build_h2_head(
    head: &h2::RequestHead,
    edits: &Edits,
    authorities: &mut Authorities,
) -> Option<http::Request<()>> {
    let mut uri = http::uri::Parts::default();
    uri.scheme = Some(head.scheme().clone());
    uri.path_and_query = Some(head.path_and_query().clone());
    uri.authority = match (head.authority(), &edits.host) {
        (Some(authority), rewrite) => Some(authorities.rewrite(authority, rewrite)?),
        (None, HostRewrite::Literal(literal)) => Some(literal.parse().ok()?),
        (None, _) => None,
    };
    let mut request = http::Request::new(());
    *request.method_mut() = head.method().clone();
    *request.uri_mut() = http::Uri::from_parts(uri).ok()?;
    *request.version_mut() = http::Version::HTTP_2;
    let headers = request.headers_mut();
    headers.reserve(head.fields().len() + edits.add.len());
    for (name, value) in head.fields().iter() {
        if edits.remove.iter().any(|removed| removed == name.as_str()) {
            continue;
        }
        if name == http::header::HOST {
            let value = rewrite_host(value.to_str().ok()?.as_bytes(), &edits.host);
            headers.append(name.clone(), http::HeaderValue::from_bytes(&value).ok()?);
            continue;
        }
        headers.append(name.clone(), value.clone());
    }
    for (name, value) in &edits.add {
        headers.append(
            http::HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).ok()?,
            http::HeaderValue::from_str(value).ok()?,
        );
    }
    Some(request)
}

/// The `:authority` rewrites of one connection's copies. A gRPC channel sends the same
/// `:authority` on every stream, so each one is rewritten and parsed once per connection and
/// target rather than once per copy; at most [`Authorities::MAX`] are kept.
#[derive(Debug, Default)]
pub struct Authorities(Vec<(http::uri::Authority, HostRewrite, http::uri::Authority)>);

impl Authorities {
    const MAX: usize = 4;

    /// `authority` under `rewrite`; `None` when the result is not an authority.
    fn rewrite(
        &mut self,
        authority: &http::uri::Authority,
        rewrite: &HostRewrite,
    ) -> Option<http::uri::Authority> {
        let known = self.0.iter().find(|(original, known_rewrite, _)| {
            original.as_str() == authority.as_str() && known_rewrite == rewrite
        });
        if let Some((_, _, rewritten)) = known {
            return Some(rewritten.clone());
        }
        let rewritten = http::uri::Authority::from_maybe_shared(bytes::Bytes::from(rewrite_host(
            authority.as_str().as_bytes(),
            rewrite,
        )))
        .ok()?;
        if self.0.len() == Self::MAX {
            self.0.remove(0);
        }
        self.0
            .push((authority.clone(), rewrite.clone(), rewritten.clone()));
        Some(rewritten)
    }
}

fn is_framing_field(lower: &str) -> bool {
    matches!(lower, "content-length" | "transfer-encoding" | "host")
}

fn is_hop_by_hop(lower: &str) -> bool {
    matches!(
        lower,
        "connection" | "keep-alive" | "proxy-connection" | "expect"
    )
}

fn rewrite_host(value: &[u8], rewrite: &HostRewrite) -> Vec<u8> {
    match rewrite {
        HostRewrite::Keep => value.to_vec(),
        HostRewrite::Literal(literal) => literal.as_bytes().to_vec(),
        HostRewrite::Suffix(suffix) => match std::str::from_utf8(value) {
            Ok(text) => {
                let (host, port) = split_port(text.trim());
                format!("{host}{suffix}{port}").into_bytes()
            }
            Err(_) => value.to_vec(),
        },
    }
}

fn put_field(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{Frame, FramingLimits, RequestFramer};

    fn head(request: &str) -> RequestHead {
        let mut framer = RequestFramer::new(FramingLimits::default());
        let mut frames = Vec::new();
        framer.feed(request.as_bytes(), &mut frames);
        match frames.into_iter().next() {
            Some(Frame::Head(head)) => head,
            other => panic!("no head: {other:?}"),
        }
    }

    fn edits(host: HostRewrite) -> Edits {
        Edits {
            host,
            remove: vec![],
            add: vec![],
        }
    }

    fn copy(request: &str, edits: &Edits) -> String {
        String::from_utf8(build_head(&head(request), edits)).expect("utf8")
    }

    #[test]
    fn default_suffix_goes_before_the_port_and_the_rest_is_untouched() {
        let request = "POST /orders?id=7 HTTP/1.1\r\nHost: orders.prod:8080\r\nX-Case: KeepMe\r\nContent-Length: 2\r\n\r\n";
        assert_eq!(
            copy(request, &edits(HostRewrite::Suffix("-shadow".into()))),
            "POST /orders?id=7 HTTP/1.1\r\nHost: orders.prod-shadow:8080\r\nX-Case: KeepMe\r\nContent-Length: 2\r\n\r\n"
        );
    }

    #[test]
    fn literal_and_kept_hosts() {
        let request = "GET / HTTP/1.1\r\nhost: orders\r\n\r\n";
        assert_eq!(
            copy(
                request,
                &edits(HostRewrite::Literal("staging.example".into()))
            ),
            "GET / HTTP/1.1\r\nhost: staging.example\r\n\r\n"
        );
        assert_eq!(copy(request, &edits(HostRewrite::Keep)), request);
        assert_eq!(
            copy(
                "GET / HTTP/1.0\r\n\r\n",
                &edits(HostRewrite::Literal("s".into()))
            ),
            "GET / HTTP/1.0\r\nHost: s\r\n\r\n"
        );
    }

    #[test]
    fn hop_by_hop_fields_and_those_named_by_connection_are_dropped() {
        let request = "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nExpect: 100-continue\r\nX-End: 2\r\n\r\n";
        assert_eq!(
            copy(request, &edits(HostRewrite::Keep)),
            "GET / HTTP/1.1\r\nHost: a\r\nX-End: 2\r\n\r\n"
        );
    }

    #[test]
    fn added_headers_replace_and_removed_headers_go() {
        let edits = Edits {
            host: HostRewrite::Keep,
            remove: vec!["authorization".into(), "x-shadow".into()],
            add: vec![("x-shadow".into(), "true".into())],
        };
        let request = "GET / HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer s3cret\r\nX-Shadow: false\r\nCookie: c=1\r\n\r\n";
        assert_eq!(
            copy(request, &edits),
            "GET / HTTP/1.1\r\nHost: a\r\nCookie: c=1\r\nx-shadow: true\r\n\r\n"
        );
    }

    #[test]
    fn authorities_are_rewritten_per_rewrite_kept_and_bounded() {
        let mut authorities = Authorities::default();
        let suffix = HostRewrite::Suffix("-shadow".into());
        let literal = HostRewrite::Literal("staging:9000".into());
        let orders: http::uri::Authority = "orders.prod:8080".parse().expect("authority");
        let mut rewrite = |authority: &http::uri::Authority, rewrite: &HostRewrite| {
            authorities
                .rewrite(authority, rewrite)
                .map(|rewritten| rewritten.as_str().to_owned())
        };
        for _ in 0..2 {
            // The second time from what was kept.
            assert_eq!(
                rewrite(&orders, &suffix).as_deref(),
                Some("orders.prod-shadow:8080")
            );
            assert_eq!(rewrite(&orders, &literal).as_deref(), Some("staging:9000"));
            assert_eq!(
                rewrite(&orders, &HostRewrite::Keep).as_deref(),
                Some("orders.prod:8080")
            );
        }
        // A rewrite that makes no authority.
        assert_eq!(rewrite(&orders, &HostRewrite::Suffix("/x".into())), None);
        assert_eq!(authorities.0.len(), 3);
        for i in 0..10 {
            let service: http::uri::Authority = format!("svc-{i}:80").parse().expect("authority");
            assert_eq!(
                authorities
                    .rewrite(&service, &suffix)
                    .map(|rewritten| rewritten.as_str().to_owned()),
                Some(format!("svc-{i}-shadow:80"))
            );
        }
        assert_eq!(authorities.0.len(), Authorities::MAX);
    }
}
