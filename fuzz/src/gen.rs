//! A structure-aware generator for `framer_differential`: pipelines of mostly valid requests,
//! written with the framing fields, whitespace, chunk and trailer variants that smuggling lives
//! on, then mutated at a few byte positions. `arbitrary` draws the structure from the fuzzer's
//! bytes, so libFuzzer's mutations move through requests rather than through raw bytes.

use arbitrary::{Arbitrary, Unstructured};

use crate::copy::TargetToml;

/// One input of `framer_differential`.
#[derive(Debug, Arbitrary)]
pub struct Case {
    pub requests: Vec<Request>,
    /// Raw bytes after the last request.
    pub trailing: Vec<u8>,
    pub mutations: Vec<Mutation>,
    /// Chunk lengths for feeding the stream (see `input::chunks`).
    pub schedule: Vec<u8>,
    /// `max_header_bytes = 128 + 4 * .0`, `max_headers = 1 + .1 % 16`; default limits if `None`.
    pub small_limits: Option<(u8, u8)>,
    pub target: Target,
}

#[derive(Debug, Arbitrary)]
pub struct Request {
    pub method: Method,
    pub target: RequestTarget,
    pub version: Version,
    pub fields: Vec<Field>,
    pub body: Body,
}

#[derive(Debug, Arbitrary)]
pub enum Method {
    Get,
    Post,
    Put,
    Head,
    Delete,
    Options,
    Patch,
    Connect,
    Lowercase,
    Other(Token),
}

#[derive(Debug, Arbitrary)]
pub enum RequestTarget {
    Root,
    Path(Token),
    Query(Token, Token),
    Absolute(Token),
    Asterisk,
    Raw(Vec<u8>),
}

#[derive(Debug, Arbitrary)]
pub enum Version {
    Http11,
    Http10,
    Other(u8, u8),
}

/// A token drawn from a small alphabet, so that names collide often.
#[derive(Debug, Clone)]
pub struct Token(pub String);

impl<'a> Arbitrary<'a> for Token {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        const ALPHABET: &[u8] = b"abcAB-_.~!1";
        let len = u.int_in_range(1..=6)?;
        let mut token = String::new();
        for _ in 0..len {
            token.push(char::from(*u.choose(ALPHABET)?));
        }
        Ok(Self(token))
    }
}

#[derive(Debug, Arbitrary)]
pub struct Field {
    pub name: Name,
    pub value: Value,
    pub before: Whitespace,
    pub after: Whitespace,
}

#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum Whitespace {
    None,
    Space,
    Tab,
    Spaces,
}

impl Whitespace {
    fn text(self) -> &'static str {
        match self {
            Self::None => "",
            Self::Space => " ",
            Self::Tab => "\t",
            Self::Spaces => " \t ",
        }
    }
}

/// Field names; the framing-relevant ones in the spellings that matter.
#[derive(Debug, Clone, Arbitrary)]
pub enum Name {
    Host,
    ContentLength,
    TransferEncoding,
    Connection,
    KeepAlive,
    Expect,
    Upgrade,
    Te,
    ProxyConnection,
    ContentLengthUpper,
    TransferEncodingMixed,
    ContentLengthUnderscore,
    TransferEncodingUnderscore,
    XShadow,
    Cookie,
    Other(Token),
}

impl Name {
    pub fn text(&self) -> String {
        match self {
            Self::Host => "Host".into(),
            Self::ContentLength => "Content-Length".into(),
            Self::TransferEncoding => "Transfer-Encoding".into(),
            Self::Connection => "Connection".into(),
            Self::KeepAlive => "Keep-Alive".into(),
            Self::Expect => "Expect".into(),
            Self::Upgrade => "Upgrade".into(),
            Self::Te => "TE".into(),
            Self::ProxyConnection => "Proxy-Connection".into(),
            Self::ContentLengthUpper => "CONTENT-LENGTH".into(),
            Self::TransferEncodingMixed => "transfer-Encoding".into(),
            Self::ContentLengthUnderscore => "Content_Length".into(),
            Self::TransferEncodingUnderscore => "Transfer_Encoding".into(),
            Self::XShadow => "X-Shadow".into(),
            Self::Cookie => "Cookie".into(),
            Self::Other(token) => token.0.clone(),
        }
    }
}

#[derive(Debug, Arbitrary)]
pub enum Value {
    /// The length of this request's body as written.
    Length,
    /// The length of this request's body as written, off by this much.
    LengthOff(i8),
    /// A number with leading zeros.
    Padded(u8, u16),
    /// `chunked` in some case.
    Chunked(u8),
    /// A list of codings or options from the table below.
    List(Vec<u8>),
    HostName(Token),
    Raw(Vec<u8>),
}

/// Elements for [`Value::List`]: codings, connection options, odd numbers.
const LIST_ITEMS: &[&str] = &[
    "chunked",
    "Chunked",
    "gzip",
    "identity",
    "close",
    "keep-alive",
    "Content-Length",
    "transfer-encoding",
    "host",
    "x-a",
    "",
    " ",
    "\"chunked\"",
    "chunked;q=1",
    "0",
    "+5",
    "-1",
    "0x5",
    "18446744073709551616",
];

#[derive(Debug, Arbitrary)]
pub enum Body {
    None,
    Bytes(Vec<u8>),
    Chunked(Chunked),
}

#[derive(Debug, Arbitrary)]
pub struct Chunked {
    pub chunks: Vec<Chunk>,
    pub last_zeros: u8,
    pub last_extension: Option<Token>,
    pub trailers: Vec<(Name, Vec<u8>)>,
}

#[derive(Debug, Arbitrary)]
pub struct Chunk {
    pub data: Vec<u8>,
    pub zeros: u8,
    pub upper: bool,
    pub extension: Option<Token>,
    /// Declared size minus actual size (0 almost always wins in the generator's eyes).
    pub size_off: i8,
}

#[derive(Debug, Arbitrary)]
pub struct Mutation {
    pub at: u16,
    pub kind: MutationKind,
}

#[derive(Debug, Arbitrary)]
pub enum MutationKind {
    Insert(u8),
    Delete,
    Replace(u8),
    InsertText(u8),
}

/// Texts for [`MutationKind::InsertText`].
const INSERTS: &[&[u8]] = &[
    b"\r\n",
    b"\n",
    b"\r",
    b" ",
    b"\t",
    b":",
    b"\r\n\r\n",
    b"\r\n ",
    b"0\r\n\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"Content-Length: 0\r\n",
    b"Connection: close\r\n",
    b"GET / HTTP/1.1\r\n\r\n",
    b"\x00",
    b"\x7f",
    b"\xff",
];

/// The edits of the target the copies go to: a config `[[mirror.targets]]` entry.
#[derive(Debug, Arbitrary)]
pub struct Target {
    pub host: HostEdit,
    pub remove: Vec<Name>,
    pub add: Vec<(Name, Vec<u8>)>,
}

#[derive(Debug, Arbitrary)]
pub enum HostEdit {
    DefaultSuffix,
    Suffix(Token),
    Literal(Token),
    Keep,
}

impl Target {
    pub fn toml(&self) -> TargetToml {
        let mut toml = TargetToml::default();
        match &self.host {
            HostEdit::DefaultSuffix => {}
            HostEdit::Suffix(token) => toml.host_suffix = Some(token.0.clone()),
            HostEdit::Literal(token) => toml.host = Some(token.0.clone()),
            HostEdit::Keep => toml.keep_host = true,
        }
        toml.remove_headers = self.remove.iter().map(Name::text).collect();
        toml.add_headers = self
            .add
            .iter()
            .map(|(name, value)| (name.text(), String::from_utf8_lossy(value).into_owned()))
            .collect();
        toml
    }
}

impl Case {
    /// The stream: every request written out, the trailing bytes, then the mutations applied.
    pub fn stream(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for request in &self.requests {
            request.write(&mut out);
        }
        out.extend_from_slice(&self.trailing);
        apply(&self.mutations, &mut out);
        out
    }
}

/// Applies `mutations` to `out` in order (positions wrap around its length).
pub fn apply(mutations: &[Mutation], out: &mut Vec<u8>) {
    for mutation in mutations {
        if out.is_empty() {
            break;
        }
        let at = usize::from(mutation.at) % (out.len() + 1);
        match mutation.kind {
            MutationKind::Insert(byte) => out.insert(at, byte),
            MutationKind::Delete if at < out.len() => {
                out.remove(at);
            }
            MutationKind::Delete => {
                out.pop();
            }
            MutationKind::Replace(byte) if at < out.len() => out[at] = byte,
            MutationKind::Replace(byte) => out.push(byte),
            MutationKind::InsertText(i) => {
                let text = INSERTS[usize::from(i) % INSERTS.len()];
                out.splice(at..at, text.iter().copied());
            }
        }
    }
}

impl Request {
    fn write(&self, out: &mut Vec<u8>) {
        let body = self.body.bytes();
        let method = match &self.method {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Head => "HEAD",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
            Method::Patch => "PATCH",
            Method::Connect => "CONNECT",
            Method::Lowercase => "get",
            Method::Other(token) => &token.0,
        };
        out.extend_from_slice(method.as_bytes());
        out.push(b' ');
        match &self.target {
            RequestTarget::Root => out.push(b'/'),
            RequestTarget::Path(p) => out.extend_from_slice(format!("/{}", p.0).as_bytes()),
            RequestTarget::Query(p, q) => {
                out.extend_from_slice(format!("/{}?{}", p.0, q.0).as_bytes())
            }
            RequestTarget::Absolute(h) => {
                out.extend_from_slice(format!("http://{}/x", h.0).as_bytes())
            }
            RequestTarget::Asterisk => out.push(b'*'),
            RequestTarget::Raw(raw) => out.extend_from_slice(raw),
        }
        let version = match self.version {
            Version::Http11 => "HTTP/1.1".to_owned(),
            Version::Http10 => "HTTP/1.0".to_owned(),
            Version::Other(major, minor) => format!("HTTP/{}.{}", major % 10, minor % 10),
        };
        out.extend_from_slice(format!(" {version}\r\n").as_bytes());
        for field in &self.fields {
            field.write(body.len(), out);
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&body);
    }
}

impl Field {
    /// Writes the field line; a [`Value::Length`] is `body_len`.
    pub fn write(&self, body_len: usize, out: &mut Vec<u8>) {
        out.extend_from_slice(self.name.text().as_bytes());
        out.push(b':');
        out.extend_from_slice(self.before.text().as_bytes());
        match &self.value {
            Value::Length => out.extend_from_slice(body_len.to_string().as_bytes()),
            Value::LengthOff(off) => {
                let length = body_len as i64 + i64::from(*off);
                out.extend_from_slice(length.to_string().as_bytes());
            }
            Value::Padded(zeros, n) => {
                let zeros = "0".repeat(usize::from(zeros % 4));
                out.extend_from_slice(format!("{zeros}{n}").as_bytes());
            }
            Value::Chunked(case) => {
                let text: String = "chunked"
                    .chars()
                    .enumerate()
                    .map(|(i, c)| {
                        if case >> (i % 8) & 1 == 1 {
                            c.to_ascii_uppercase()
                        } else {
                            c
                        }
                    })
                    .collect();
                out.extend_from_slice(text.as_bytes());
            }
            Value::List(items) => {
                let items: Vec<&str> = items
                    .iter()
                    .take(4)
                    .map(|i| LIST_ITEMS[usize::from(*i) % LIST_ITEMS.len()])
                    .collect();
                out.extend_from_slice(items.join(", ").as_bytes());
            }
            Value::HostName(token) => out.extend_from_slice(token.0.as_bytes()),
            Value::Raw(raw) => out.extend_from_slice(raw),
        }
        out.extend_from_slice(self.after.text().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

impl Body {
    /// The body as written: raw bytes, or chunked with its sizes, extensions and trailers.
    pub fn bytes(&self) -> Vec<u8> {
        match self {
            Body::None => Vec::new(),
            Body::Bytes(bytes) => bytes.clone(),
            Body::Chunked(chunked) => {
                let mut out = Vec::new();
                for chunk in &chunked.chunks {
                    let size = (chunk.data.len() as i64 + i64::from(chunk.size_off)).max(0);
                    let zeros = "0".repeat(usize::from(chunk.zeros % 3));
                    let size = if chunk.upper {
                        format!("{zeros}{size:X}")
                    } else {
                        format!("{zeros}{size:x}")
                    };
                    out.extend_from_slice(size.as_bytes());
                    if let Some(extension) = &chunk.extension {
                        out.extend_from_slice(format!(";{}", extension.0).as_bytes());
                    }
                    out.extend_from_slice(b"\r\n");
                    out.extend_from_slice(&chunk.data);
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(
                    "0".repeat(1 + usize::from(chunked.last_zeros % 3))
                        .as_bytes(),
                );
                if let Some(extension) = &chunked.last_extension {
                    out.extend_from_slice(format!(";{}", extension.0).as_bytes());
                }
                out.extend_from_slice(b"\r\n");
                for (name, value) in &chunked.trailers {
                    out.extend_from_slice(name.text().as_bytes());
                    out.extend_from_slice(b": ");
                    out.extend_from_slice(value);
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b"\r\n");
                out
            }
        }
    }
}
