//! Mirror rules, compiled: which requests are copied, and to which targets.
//!
//! A rule's destination and port conditions depend only on the connection, so they are checked
//! once per connection ([`Rule::may_match_connection`]); the rest per request
//! ([`Rule::matches_request`]). The first rule that matches a request wins.

use std::net::SocketAddr;

use ipnet::IpNet;
use regex::Regex;

use super::request::RequestView;
use crate::config;

/// A rule ready for matching.
#[derive(Debug)]
pub struct Rule {
    pub name: String,
    destination: Option<IpNet>,
    ports: Vec<u16>,
    host: Option<HostMatch>,
    path_prefix: Option<String>,
    path_regex: Option<Regex>,
    methods: Vec<String>,
    headers: Vec<config::HeaderMatch>,
    /// Indices into the engine's target list.
    pub targets: Vec<usize>,
}

#[derive(Debug, PartialEq, Eq)]
enum HostMatch {
    Exact(String),
    /// `*.example.com` matches any name ending in `.example.com`, at any depth.
    Suffix(String),
}

impl Rule {
    /// Compiles `rule`; `target_index` maps a target name to its index (validated beforehand).
    pub fn compile(
        index: usize,
        rule: &config::MirrorRule,
        target_index: impl Fn(&str) -> Option<usize>,
    ) -> Result<Self, regex::Error> {
        let m = &rule.matches;
        Ok(Self {
            name: rule.name.clone().unwrap_or_else(|| format!("rule-{index}")),
            destination: m.destination,
            ports: m.ports.clone(),
            host: m.host.as_deref().map(|host| {
                let host = host.to_ascii_lowercase();
                match host.strip_prefix('*') {
                    Some(suffix) => HostMatch::Suffix(suffix.to_string()),
                    None => HostMatch::Exact(host),
                }
            }),
            path_prefix: m.path_prefix.clone(),
            path_regex: m.path_regex.as_deref().map(Regex::new).transpose()?,
            methods: m.methods.clone(),
            headers: m.headers.clone(),
            targets: rule
                .targets
                .iter()
                .filter_map(|name| target_index(name))
                .collect(),
        })
    }

    /// Whether requests on a connection to `orig_dst` can match at all.
    pub fn may_match_connection(&self, orig_dst: SocketAddr) -> bool {
        self.destination
            .is_none_or(|cidr| cidr.contains(&orig_dst.ip()))
            && (self.ports.is_empty() || self.ports.contains(&orig_dst.port()))
    }

    /// Whether `head` matches the per-request conditions.
    pub fn matches_request(&self, head: &impl RequestView) -> bool {
        if !self.methods.is_empty() && !self.methods.iter().any(|m| m == head.method()) {
            return false;
        }
        if let Some(expected) = &self.host {
            let Some(host) = head.host().and_then(|h| std::str::from_utf8(h).ok()) else {
                return false;
            };
            let host = host_without_port(host.trim()).to_ascii_lowercase();
            let matched = match expected {
                HostMatch::Exact(name) => host == *name,
                HostMatch::Suffix(suffix) => host.len() > suffix.len() && host.ends_with(suffix),
            };
            if !matched {
                return false;
            }
        }
        let path = head.path();
        if let Some(prefix) = &self.path_prefix {
            if !path.starts_with(prefix.as_str()) {
                return false;
            }
        }
        if let Some(regex) = &self.path_regex {
            if !regex.is_match(path) {
                return false;
            }
        }
        self.headers.iter().all(|wanted| {
            head.any_field(&mut |name, value| {
                name.eq_ignore_ascii_case(&wanted.name)
                    && wanted
                        .value
                        .as_ref()
                        .is_none_or(|v| v.as_bytes() == trim_ows(value))
            })
        })
    }
}

/// The host part of a Host header value (`name`, `name:port`, `[v6]:port`).
pub fn host_without_port(host: &str) -> &str {
    split_port(host).0
}

/// Splits a Host header value into host and `:port` suffix (possibly empty).
pub fn split_port(host: &str) -> (&str, &str) {
    if let Some(end) = host.strip_prefix('[').and_then(|_| host.find(']')) {
        return host.split_at(end + 1);
    }
    match host.rfind(':') {
        Some(colon) if host[colon + 1..].bytes().all(|b| b.is_ascii_digit()) => {
            host.split_at(colon)
        }
        _ => (host, ""),
    }
}

fn trim_ows(value: &[u8]) -> &[u8] {
    let start = value
        .iter()
        .position(|b| !b" \t".contains(b))
        .unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !b" \t".contains(b))
        .map_or(start, |e| e + 1);
    &value[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::RequestHead;
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

    fn rule(toml_match: &str) -> Rule {
        let text = format!(
            "[[mirror.targets]]\nname = \"t\"\naddress = \"shadow:80\"\n[[mirror.rules]]\ntargets = [\"t\"]\n[mirror.rules.match]\n{toml_match}\n"
        );
        let config = crate::config::Config::from_toml(&text, "test").expect("valid rule");
        Rule::compile(0, &config.mirror.rules[0], |_| Some(0)).expect("compiles")
    }

    #[test]
    fn wildcard_host_matches_subdomains_at_any_depth_but_not_the_apex() {
        let rule = rule("host = \"*.prod.svc\"");
        assert!(rule.matches_request(&head(
            "GET / HTTP/1.1\r\nHost: orders.prod.svc:8080\r\n\r\n"
        )));
        assert!(rule.matches_request(&head("GET / HTTP/1.1\r\nHost: a.b.PROD.svc\r\n\r\n")));
        assert!(!rule.matches_request(&head("GET / HTTP/1.1\r\nHost: prod.svc\r\n\r\n")));
        assert!(!rule.matches_request(&head("GET / HTTP/1.1\r\n\r\n")));
    }

    #[test]
    fn path_prefix_and_regex_ignore_the_query() {
        let rule = rule("path_prefix = \"/api/\"\npath_regex = \"^/api/v[0-9]+/\"");
        assert!(rule.matches_request(&head("GET /api/v2/orders?x=/y HTTP/1.1\r\nHost: a\r\n\r\n")));
        assert!(!rule.matches_request(&head("GET /api/beta/orders HTTP/1.1\r\nHost: a\r\n\r\n")));
        assert!(!rule.matches_request(&head("GET /x?/api/v2/ HTTP/1.1\r\nHost: a\r\n\r\n")));
    }

    #[test]
    fn methods_and_headers_must_all_hold() {
        let rule = rule(
            "methods = [\"GET\"]\nheaders = [{ name = \"x-env\", value = \"prod\" }, { name = \"x-trace\" }]",
        );
        assert!(rule.matches_request(&head(
            "GET / HTTP/1.1\r\nX-Env:  prod \r\nx-trace: 1\r\n\r\n"
        )));
        assert!(!rule.matches_request(&head("GET / HTTP/1.1\r\nx-env: prod\r\n\r\n")));
        assert!(!rule.matches_request(&head(
            "GET / HTTP/1.1\r\nx-env: staging\r\nx-trace: 1\r\n\r\n"
        )));
        assert!(!rule.matches_request(&head(
            "POST / HTTP/1.1\r\nx-env: prod\r\nx-trace: 1\r\ncontent-length: 0\r\n\r\n"
        )));
    }

    #[test]
    fn destination_and_port_are_decided_per_connection() {
        let rule = rule("destination = \"10.96.0.0/12\"\nports = [8080]");
        assert!(rule.may_match_connection("10.96.0.10:8080".parse().expect("addr")));
        assert!(!rule.may_match_connection("10.96.0.10:80".parse().expect("addr")));
        assert!(!rule.may_match_connection("10.0.0.1:8080".parse().expect("addr")));
    }

    #[test]
    fn host_port_split_handles_ipv6_literals() {
        assert_eq!(split_port("orders:8080"), ("orders", ":8080"));
        assert_eq!(split_port("[fd00::1]:80"), ("[fd00::1]", ":80"));
        assert_eq!(split_port("[fd00::1]"), ("[fd00::1]", ""));
        assert_eq!(split_port("orders"), ("orders", ""));
    }
}
