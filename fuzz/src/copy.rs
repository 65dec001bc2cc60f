//! What the daemon would mirror must be unambiguous: the copy of a request (the head from
//! `mirror::copy::build_head`, then the original's body bytes as they came, see
//! `shadow::write`) is checked to be exactly one request that every reading frames alike.

use mirror_daemon::{
    config::Config,
    http::{BodyKind, RequestHead},
    mirror::copy::Edits,
};

use crate::reference::{self, find, trim_ows};

/// Checks the copy `copy_head` + `body` of `original`, whose body bytes are `body`.
pub fn check(original: &RequestHead, copy_head: &[u8], body: &[u8]) {
    let show = || {
        format!(
            "original head {:?}\ncopy head {:?}",
            String::from_utf8_lossy(original.raw()),
            String::from_utf8_lossy(copy_head)
        )
    };
    let line_end = find(original.raw(), b"\r\n").expect("a request line") + 2;
    assert_eq!(
        copy_head.get(..line_end),
        Some(&original.raw()[..line_end]),
        "the copy's request line differs\n{}",
        show()
    );

    // The strict reading: the reference framer, without limits.
    let wire = [copy_head, body].concat();
    let parse = reference::parse_copy(&wire);
    assert_eq!(
        parse.end,
        reference::End::Clean,
        "the copy is not one clean request\n{}",
        show()
    );
    assert_eq!(
        parse.requests.len(),
        1,
        "the copy is not one request\n{}",
        show()
    );
    let request = &parse.requests[0];
    assert_eq!(request.head.end, copy_head.len(), "head length\n{}", show());
    assert_eq!(
        request.kind,
        original.body(),
        "the copy's framing fields say another body length than the one sent\n{}",
        show()
    );

    // The lenient reading (httparse's defaults) must see the same fields.
    let mut headers = vec![httparse::EMPTY_HEADER; request.fields.len()];
    let mut lenient = httparse::Request::new(&mut headers);
    match lenient.parse(copy_head) {
        Ok(httparse::Status::Complete(len)) if len == copy_head.len() => {}
        other => panic!("httparse reads the copy's head as {other:?}\n{}", show()),
    }
    let lenient_fields: Vec<(&[u8], &[u8])> = lenient
        .headers
        .iter()
        .map(|h| (h.name.as_bytes(), trim_ows(h.value)))
        .collect();
    let strict_fields: Vec<(&[u8], &[u8])> = request
        .fields
        .iter()
        .map(|(n, v)| (n.as_slice(), v.as_slice()))
        .collect();
    assert_eq!(lenient_fields, strict_fields, "fields\n{}", show());

    // A proxy in front of the shadow drops what a Connection field names: that must not be a
    // framing field or Host.
    for (name, value) in &request.fields {
        if name.eq_ignore_ascii_case(b"connection") {
            for option in value.split(|b| *b == b',').map(trim_ows) {
                for framing in [&b"content-length"[..], b"transfer-encoding", b"host"] {
                    assert!(
                        !option.eq_ignore_ascii_case(framing),
                        "the copy's Connection field names {}\n{}",
                        String::from_utf8_lossy(framing),
                        show()
                    );
                }
            }
        }
    }
    if original.body() == BodyKind::None {
        assert!(body.is_empty());
    }
}

/// One `[[mirror.targets]]` entry's edits, as TOML values (already quoted).
#[derive(Debug, Clone, Default)]
pub struct TargetToml {
    pub host_suffix: Option<String>,
    pub host: Option<String>,
    pub keep_host: bool,
    pub add_headers: Vec<(String, String)>,
    pub remove_headers: Vec<String>,
}

impl TargetToml {
    /// The edits the daemon derives from this target, if the config accepts it.
    pub fn edits(&self) -> Option<Edits> {
        let quote = |s: &str| toml::Value::String(s.to_owned()).to_string();
        let mut text = String::from("[[mirror.targets]]\nname = \"t\"\naddress = \"t:80\"\n");
        if let Some(suffix) = &self.host_suffix {
            text += &format!("host_suffix = {}\n", quote(suffix));
        }
        if let Some(host) = &self.host {
            text += &format!("host = {}\n", quote(host));
        }
        text += &format!("keep_host = {}\n", self.keep_host);
        let removed: Vec<String> = self.remove_headers.iter().map(|n| quote(n)).collect();
        text += &format!("remove_headers = [{}]\n", removed.join(", "));
        let added: Vec<String> = self
            .add_headers
            .iter()
            .map(|(n, v)| format!("{} = {}", quote(n), quote(v)))
            .collect();
        text += &format!("add_headers = {{ {} }}\n", added.join(", "));
        let config = Config::from_toml(&text, "fuzz.toml").ok()?;
        Some(Edits::from_config(&config.mirror.targets[0]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mirror_daemon::{
        http::{Frame, FramingLimits, RequestFramer},
        mirror::copy::build_head,
    };

    fn head(request: &[u8]) -> RequestHead {
        let mut frames = Vec::new();
        RequestFramer::new(FramingLimits::default()).feed(request, &mut frames);
        match frames.into_iter().next() {
            Some(Frame::Head(head)) => head,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_plain_copy_passes() {
        let edits = TargetToml {
            add_headers: vec![("x-shadow".into(), "true".into())],
            remove_headers: vec!["cookie".into()],
            ..TargetToml::default()
        }
        .edits()
        .expect("valid target");
        let original =
            head(b"POST / HTTP/1.1\r\nHost: a:80\r\nCookie: c\r\nContent-Length: 2\r\n\r\n");
        check(&original, &build_head(&original, &edits), b"ok");
    }

    #[test]
    fn invalid_targets_give_no_edits() {
        let target = TargetToml {
            host: Some("a".into()),
            keep_host: true,
            ..TargetToml::default()
        };
        assert!(target.edits().is_none());
    }
}
