//! A stream's response head, as decoded from the primary's HPACK and checked against RFC 9113
//! section 8 (what makes a response malformed) at least as far as the `h2` crate's client checks
//! it, so that a response reported here is one h2 would hand to its caller (the fuzz target
//! `h2_differential` holds us to it). Trailers are checked as a request's are
//! ([`TrailersBuilder`](super::request::TrailersBuilder)).

use http::StatusCode;

use super::request::{content_length, FieldList, Section, SkipReason};

/// A well-formed response head of one stream: final, or interim (1xx).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    status: StatusCode,
    fields: FieldList,
    content_length: Option<u64>,
}

impl ResponseHead {
    /// `:status`.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The regular fields in the order sent. A gRPC Trailers-Only response carries
    /// `grpc-status` here.
    pub fn fields(&self) -> &FieldList {
        &self.fields
    }

    /// The value of the first field called `name`.
    pub fn header(&self, name: &str) -> Option<&http::HeaderValue> {
        self.fields.get(name)
    }

    /// The Content-Length, when sent.
    pub fn content_length(&self) -> Option<u64> {
        self.content_length
    }
}

/// Collects a response head's decoded fields, checking them as they come.
#[derive(Debug)]
pub struct ResponseBuilder {
    status: Option<StatusCode>,
    section: Section,
}

impl ResponseBuilder {
    /// A builder for a field section of at most `max_list_size` bytes (32 + name + value each).
    pub fn new(max_list_size: usize) -> Self {
        Self {
            status: None,
            section: Section::new(max_list_size),
        }
    }

    /// Takes the next decoded field.
    pub fn field(&mut self, name: &[u8], value: &[u8]) {
        if self.section.admit(name, value) {
            if let Err(reason) = self.take(name, value) {
                self.section.fail(reason);
            }
        }
    }

    fn take(&mut self, name: &[u8], value: &[u8]) -> Result<(), SkipReason> {
        if !name.starts_with(b":") {
            return self.section.regular(name, value);
        }
        // The only response pseudo-header (RFC 9113 section 8.3.2), once, before the fields.
        if name != b":status" || self.status.is_some() || self.section.has_fields() {
            return Err(SkipReason::InvalidPseudoHeader);
        }
        // `StatusCode::from_bytes` takes exactly three digits from 100 to 999, as h2 does.
        let status = StatusCode::from_bytes(value).map_err(|_| SkipReason::InvalidStatus)?;
        self.status = Some(status);
        Ok(())
    }

    /// The response head, or why the response is not one to describe.
    pub fn finish(self) -> Result<ResponseHead, SkipReason> {
        let (fields, _) = self.section.finish()?;
        let status = self.status.ok_or(SkipReason::MissingPseudoHeader)?;
        let content_length = content_length(&fields)?;
        if status.is_informational() && content_length.is_some() {
            return Err(SkipReason::MalformedInterim);
        }
        Ok(ResponseHead {
            status,
            fields,
            content_length,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(fields: &[(&str, &[u8])]) -> Result<ResponseHead, SkipReason> {
        let mut builder = ResponseBuilder::new(4096);
        for (name, value) in fields {
            builder.field(name.as_bytes(), value);
        }
        builder.finish()
    }

    #[test]
    fn status_comes_first_once_and_is_three_digits() {
        let head = build(&[(":status", b"204"), ("x-a", b"1")]).expect("valid");
        assert_eq!(head.status(), StatusCode::NO_CONTENT);
        assert_eq!(head.header("x-a").map(|v| v.as_bytes()), Some(&b"1"[..]));
        for (fields, reason) in [
            (&[("x-a", &b"1"[..])][..], SkipReason::MissingPseudoHeader),
            (&[(":status", b"2000")], SkipReason::InvalidStatus),
            (&[(":status", b"099")], SkipReason::InvalidStatus),
            (&[(":status", b"20x")], SkipReason::InvalidStatus),
            (
                &[(":status", b"200"), (":status", b"200")],
                SkipReason::InvalidPseudoHeader,
            ),
            (
                &[("x-a", b"1"), (":status", b"200")],
                SkipReason::InvalidPseudoHeader,
            ),
            (
                &[(":status", b"200"), (":path", b"/")],
                SkipReason::InvalidPseudoHeader,
            ),
            (
                &[(":status", b"200"), ("connection", b"close")],
                SkipReason::ConnectionSpecificField,
            ),
            (
                &[
                    (":status", b"200"),
                    ("content-length", b"1"),
                    ("content-length", b"2"),
                ],
                SkipReason::InvalidContentLength,
            ),
            (
                &[(":status", b"100"), ("content-length", b"0")],
                SkipReason::MalformedInterim,
            ),
        ] {
            assert_eq!(build(fields), Err(reason), "{fields:?}");
        }
    }

    #[test]
    fn content_length_is_read() {
        let head = build(&[(":status", b"200"), ("content-length", b"42")]).expect("valid");
        assert_eq!(head.content_length(), Some(42));
    }
}
