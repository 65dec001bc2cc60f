//! What rules and sampling see of a request, whichever protocol carried it: an HTTP/1.1 head
//! ([`crate::http::RequestHead`]) or an HTTP/2 stream's ([`crate::http::h2::RequestHead`], whose
//! `:authority` stands for Host and `:path` for the request target).

use crate::http::{h2, RequestHead};

pub trait RequestView {
    fn method(&self) -> &str;
    /// The Host (HTTP/1.1) or `:authority` (HTTP/2), port included.
    fn host(&self) -> Option<&[u8]>;
    /// The path, without the query.
    fn path(&self) -> &str;
    /// The value of the first field called `name`.
    fn header(&self, name: &str) -> Option<&[u8]>;
    /// Whether some field satisfies `wanted(name, value)`.
    fn any_field(&self, wanted: &mut dyn FnMut(&str, &[u8]) -> bool) -> bool;
}

impl RequestView for RequestHead {
    fn method(&self) -> &str {
        RequestHead::method(self)
    }

    fn host(&self) -> Option<&[u8]> {
        RequestHead::host(self)
    }

    fn path(&self) -> &str {
        RequestHead::path(self)
    }

    fn header(&self, name: &str) -> Option<&[u8]> {
        RequestHead::header(self, name)
    }

    fn any_field(&self, wanted: &mut dyn FnMut(&str, &[u8]) -> bool) -> bool {
        self.headers().any(|(name, value)| wanted(name, value))
    }
}

impl RequestView for h2::RequestHead {
    fn method(&self) -> &str {
        h2::RequestHead::method(self).as_str()
    }

    fn host(&self) -> Option<&[u8]> {
        h2::RequestHead::host(self).map(str::as_bytes)
    }

    fn path(&self) -> &str {
        h2::RequestHead::path(self)
    }

    fn header(&self, name: &str) -> Option<&[u8]> {
        h2::RequestHead::header(self, name).map(http::HeaderValue::as_bytes)
    }

    fn any_field(&self, wanted: &mut dyn FnMut(&str, &[u8]) -> bool) -> bool {
        self.fields()
            .iter()
            .any(|(name, value)| wanted(name.as_str(), value.as_bytes()))
    }
}
