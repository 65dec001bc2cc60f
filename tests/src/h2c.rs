//! Plain HTTP/2 (h2c with prior knowledge) for the HTTP/2 tests: a recording server
//! ([`H2Server`], `tests/h2/h2_server.py` on the `h2` package), Debian's `nghttpd` as a fast
//! static server ([`Nghttpd`], for load), and the clients `curl --http2-prior-knowledge`
//! ([`curl`]) and `nghttp` ([`nghttp`]), run from a pod's namespace with parsed results.
//! (`h2load` is in [`crate::h2load`].)
//!
//! The recording server answers as a pure function of the request; [`expected_response`]
//! recomputes it here, independently of the Python code.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use serde::Deserialize;

use crate::background::Background;
use crate::grpc::{pattern, Described};
use crate::netns::Netns;
use crate::python::PythonServer;
use crate::scratch::ScratchDir;
use crate::shadow::{self, Reach};
use crate::wire::fnv1a;

/// How long one curl or nghttp run may take at most.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

/// Settings and behaviour of the recording server.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct H2Options {
    /// Holds every answer this long.
    pub delay: Option<Duration>,
    /// Answers with this status instead of 200.
    pub status: Option<u16>,
    /// The server's SETTINGS (h2's names: `header_table_size`, `initial_window_size`,
    /// `max_frame_size`, `max_concurrent_streams`, ...).
    pub settings: Vec<(String, u32)>,
    /// SETTINGS sent again after the first answer of each connection (changed mid-connection).
    pub update_settings: Vec<(String, u32)>,
}

impl H2Options {
    /// Holds every answer for `delay`.
    pub fn delay(mut self, delay: Duration) -> H2Options {
        self.delay = Some(delay);
        self
    }

    /// Answers every request with `status`.
    pub fn status(mut self, status: u16) -> H2Options {
        self.status = Some(status);
        self
    }

    /// Announces `name = value` in the server's first SETTINGS.
    pub fn setting(mut self, name: &str, value: u32) -> H2Options {
        self.settings.push((name.to_owned(), value));
        self
    }

    /// Sends `name = value` in a new SETTINGS frame after the first answer of each connection.
    pub fn update_setting(mut self, name: &str, value: u32) -> H2Options {
        self.update_settings.push((name.to_owned(), value));
        self
    }

    fn args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(delay) = self.delay {
            args.extend(["--delay".into(), delay.as_secs_f64().to_string()]);
        }
        if let Some(status) = self.status {
            args.extend(["--status".into(), status.to_string()]);
        }
        let list = |settings: &[(String, u32)]| {
            settings
                .iter()
                .map(|(name, value)| format!("{name}={value}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        if !self.settings.is_empty() {
            args.extend(["--settings".into(), list(&self.settings)]);
        }
        if !self.update_settings.is_empty() {
            args.extend(["--update-settings".into(), list(&self.update_settings)]);
        }
        args
    }
}

/// One request as the recording server saw it.
#[derive(Clone, Debug, Deserialize)]
pub struct RecordedH2Request {
    /// The `--name` of the server.
    pub server: String,
    /// Connection number at this server, from 0 in accept order.
    pub connection: u64,
    /// The client's (or the daemon's) address.
    pub peer: String,
    pub stream: u32,
    /// Every header field in order, pseudo-headers first, as HPACK decoded them.
    pub headers: Vec<(String, String)>,
    pub body: Described,
    pub trailers: Option<Vec<(String, String)>>,
    /// The stream ended with END_STREAM (`false`: reset, or the connection closed first).
    pub complete: bool,
}

impl RecordedH2Request {
    /// The first value of header `name` (pseudo-headers too: `":path"`).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// `:method`.
    pub fn method(&self) -> &str {
        self.header(":method").unwrap_or_default()
    }

    /// `:path`.
    pub fn path(&self) -> &str {
        self.header(":path").unwrap_or_default()
    }

    /// `:authority`.
    pub fn authority(&self) -> &str {
        self.header(":authority").unwrap_or_default()
    }

    /// The peer's socket address.
    pub fn peer_address(&self) -> Result<SocketAddr> {
        let (host, port) = self
            .peer
            .rsplit_once(':')
            .with_context(|| format!("unreadable peer {:?}", self.peer))?;
        let ip = host.trim_matches(|c| c == '[' || c == ']').parse()?;
        Ok(SocketAddr::new(ip, port.parse()?))
    }
}

/// The recording h2c server's answer to a request, computed here from the rules in
/// `tests/h2/h2_server.py`: (status, body, trailers).
pub fn expected_response(
    status: u16,
    method: &str,
    path: &str,
    body: &[u8],
    te_trailers: bool,
) -> (u16, Vec<u8>, Vec<(String, String)>) {
    let digest = format!("{:016x}", fnv1a(body));
    let size = path
        .strip_prefix("/bytes/")
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|n| n.parse::<usize>().ok());
    let content = match size {
        Some(size) if method == "GET" => pattern(0, size),
        _ => format!("{method} {path} {} {digest}\n", body.len()).into_bytes(),
    };
    let trailers = if te_trailers {
        vec![("x-body-fnv1a64".to_owned(), digest)]
    } else {
        Vec::new()
    };
    (status, content, trailers)
}

/// The recording h2c server inside a namespace. Killed on drop.
pub struct H2Server {
    addresses: Vec<SocketAddr>,
    server: PythonServer,
}

impl H2Server {
    /// Starts the server on `addresses` inside `netns`; `name` ("primary", "shadow") is recorded
    /// with each request and names the server in errors.
    pub fn start(
        name: &str,
        netns: &Netns,
        addresses: &[SocketAddr],
        options: &H2Options,
    ) -> Result<H2Server> {
        ensure!(!addresses.is_empty(), "an h2c server needs an address");
        let mut args: Vec<String> = vec!["--name".into(), name.into()];
        for address in addresses {
            args.extend(["--listen".into(), address.to_string()]);
        }
        args.extend(options.args());
        let server =
            PythonServer::start(&format!("{name} h2c server"), netns, "h2_server.py", args)?;
        Ok(H2Server {
            addresses: addresses.to_vec(),
            server,
        })
    }

    /// The first address it listens on.
    pub fn address(&self) -> SocketAddr {
        self.addresses[0]
    }

    /// `http://<address><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address())
    }

    /// The requests whose stream has ended so far (or was reset), in the order they ended.
    pub fn requests(&self) -> Result<Vec<RecordedH2Request>> {
        self.server.records()
    }

    /// Waits until at least `count` requests were recorded; returns them all.
    pub fn wait_for(&self, count: usize, timeout: Duration) -> Result<Vec<RecordedH2Request>> {
        self.server.wait_for_records(
            &format!("{count} requests at the h2c server"),
            timeout,
            |requests: &[RecordedH2Request]| requests.len() >= count,
        )
    }

    /// What the server printed.
    pub fn log(&self) -> String {
        self.server.log()
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.server.pid()
    }
}

/// A request for [`curl`].
#[derive(Clone, Debug)]
pub struct CurlRequest {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
}

impl CurlRequest {
    /// `GET url`.
    pub fn get(url: &str) -> CurlRequest {
        CurlRequest {
            method: "GET".into(),
            url: url.to_owned(),
            headers: Vec::new(),
            body: None,
        }
    }

    /// `POST url` with `body`.
    pub fn post(url: &str, body: &[u8]) -> CurlRequest {
        CurlRequest {
            method: "POST".into(),
            body: Some(body.to_vec()),
            ..CurlRequest::get(url)
        }
    }

    /// Adds a request header.
    pub fn header(mut self, name: &str, value: &str) -> CurlRequest {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
}

/// What curl got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CurlResponse {
    /// `2` for HTTP/2.
    pub version: String,
    pub status: u16,
    /// Response header fields in order, names as sent (lowercase in HTTP/2).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl CurlResponse {
    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// Runs `curl --http2-prior-knowledge` for `request` inside `netns` (a pod's). Fails when curl
/// does (connection refused, reset, timeout), with its message.
pub fn curl(netns: &Netns, request: &CurlRequest) -> Result<CurlResponse> {
    let dir = ScratchDir::new(netns, "curl")?;
    let (head, body) = (dir.join("head"), dir.join("body"));
    let timeout = CLIENT_TIMEOUT.as_secs().to_string();
    let mut args: Vec<String> = vec![
        "--http2-prior-knowledge".into(),
        "--silent".into(),
        "--show-error".into(),
        // Never through a proxy named in the environment.
        "--noproxy".into(),
        "*".into(),
        "--max-time".into(),
        timeout,
        "--request".into(),
        request.method.clone(),
        "--dump-header".into(),
        head.display().to_string(),
        "--output".into(),
        body.display().to_string(),
    ];
    for (name, value) in &request.headers {
        args.extend(["--header".into(), format!("{name}: {value}")]);
    }
    if let Some(upload) = &request.body {
        let file = dir.join("upload");
        std::fs::write(&file, upload)?;
        args.extend(["--data-binary".into(), format!("@{}", file.display())]);
    }
    args.push(request.url.clone());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = netns.exec_output("curl", &args, None, CLIENT_TIMEOUT + Duration::from_secs(5))?;
    ensure!(
        output.success,
        "curl (pod side) {} {} failed: {}",
        request.method,
        request.url,
        output.stderr.trim()
    );
    let head = std::fs::read_to_string(&head).context("curl wrote no response head")?;
    Ok(CurlResponse {
        body: std::fs::read(&body).unwrap_or_default(),
        ..parse_curl_head(&head)?
    })
}

/// `HTTP/2 200` and the fields after it, from curl's `--dump-header` file (body left empty).
fn parse_curl_head(text: &str) -> Result<CurlResponse> {
    let mut lines = text.lines().map(|line| line.trim_end_matches('\r'));
    let status_line = lines.next().context("curl dumped an empty head")?;
    let mut words = status_line.split_whitespace();
    let version = words
        .next()
        .and_then(|word| word.strip_prefix("HTTP/"))
        .with_context(|| format!("not a status line: {status_line:?}"))?;
    let status = words
        .next()
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("no status code in {status_line:?}"))?;
    let headers = lines
        .take_while(|line| !line.is_empty())
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
        .collect();
    Ok(CurlResponse {
        version: version.to_owned(),
        status,
        headers,
        body: Vec::new(),
    })
}

/// What [`nghttp`] sends: every URL on one connection, at once.
#[derive(Clone, Debug, Default)]
pub struct NghttpRequest {
    pub urls: Vec<String>,
    pub headers: Vec<(String, String)>,
    /// A body for every request (nghttp then sends POST).
    pub data: Option<Vec<u8>>,
    /// Request trailers (sent only with a body).
    pub trailers: Vec<(String, String)>,
    /// `-m`: request each URL this many times.
    pub multiply: Option<u32>,
    /// `-c`: the client's HPACK decoder table size (the server's encoder follows).
    pub header_table_size: Option<u32>,
    /// `--encoder-header-table-size`: the client's HPACK encoder table size.
    pub encoder_header_table_size: Option<u32>,
    /// `-w`: stream window 2^N-1.
    pub window_bits: Option<u8>,
    /// `-v`: keep nghttp's frame log ([`NghttpRun::frames`]).
    pub verbose: bool,
}

impl NghttpRequest {
    /// Every URL of `urls`, once, on one connection.
    pub fn urls(urls: &[String]) -> NghttpRequest {
        NghttpRequest {
            urls: urls.to_vec(),
            ..NghttpRequest::default()
        }
    }

    /// Adds a request header.
    pub fn header(mut self, name: &str, value: &str) -> NghttpRequest {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sends `data` as every request's body.
    pub fn data(mut self, data: &[u8]) -> NghttpRequest {
        self.data = Some(data.to_vec());
        self
    }

    /// Adds a request trailer (needs [`NghttpRequest::data`]).
    pub fn trailer(mut self, name: &str, value: &str) -> NghttpRequest {
        self.trailers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Requests each URL `times` times.
    pub fn multiply(mut self, times: u32) -> NghttpRequest {
        self.multiply = Some(times);
        self
    }

    /// Keeps nghttp's log of every frame sent and received.
    pub fn verbose(mut self) -> NghttpRequest {
        self.verbose = true;
        self
    }
}

/// What nghttp got.
#[derive(Clone, Debug)]
pub struct NghttpRun {
    /// Each response, in the order they completed.
    pub responses: Vec<NghttpResponse>,
    /// nghttp's frame log (`-v`), or empty.
    pub frames: String,
}

impl NghttpRun {
    /// The frame log's lines announcing a received frame of `frame_type` (`"SETTINGS"`) that
    /// is not an acknowledgement.
    pub fn received_frames(&self, frame_type: &str) -> usize {
        let marker = format!("recv {frame_type} frame");
        let lines: Vec<&str> = self.frames.lines().collect();
        lines
            .iter()
            .enumerate()
            .filter(|(_, line)| line.contains(&marker))
            .filter(|(at, _)| lines.get(at + 1).is_none_or(|next| next.trim() != "; ACK"))
            .count()
    }
}

/// One response nghttp got (from its HAR output).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NghttpResponse {
    pub url: String,
    pub method: String,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// Body bytes received.
    pub size: u64,
}

/// Runs `nghttp` for `request` inside `netns` (a pod's): every URL on one h2c connection with
/// prior knowledge, bodies discarded, each response's status, headers and size returned in the
/// order they completed. Fails when nghttp does.
pub fn nghttp(netns: &Netns, request: &NghttpRequest) -> Result<NghttpRun> {
    ensure!(!request.urls.is_empty(), "nghttp needs a URL");
    let dir = ScratchDir::new(netns, "nghttp")?;
    let har = dir.join("har.json");
    let timeout = CLIENT_TIMEOUT.as_secs().to_string();
    let mut args: Vec<String> = vec![
        "--null-out".into(),
        format!("--har={}", har.display()),
        format!("--timeout={timeout}"),
    ];
    args.extend(header_and_data_args(
        &dir,
        &request.headers,
        request.data.as_deref(),
    )?);
    for (name, value) in &request.trailers {
        args.push(format!("--trailer={name}: {value}"));
    }
    if let Some(times) = request.multiply {
        args.push(format!("--multiply={times}"));
    }
    if let Some(size) = request.header_table_size {
        args.push(format!("--header-table-size={size}"));
    }
    if let Some(size) = request.encoder_header_table_size {
        args.push(format!("--encoder-header-table-size={size}"));
    }
    if let Some(bits) = request.window_bits {
        args.push(format!("--window-bits={bits}"));
    }
    if request.verbose {
        args.push("--verbose".into());
    }
    args.extend(request.urls.iter().cloned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = netns.exec_output(
        "nghttp",
        &args,
        None,
        CLIENT_TIMEOUT + Duration::from_secs(5),
    )?;
    ensure!(
        output.success,
        "nghttp (pod side) {:?} failed: {}{}",
        request.urls,
        output.stderr.trim(),
        output.stdout.trim()
    );
    let text = std::fs::read_to_string(&har).context("nghttp wrote no HAR file")?;
    Ok(NghttpRun {
        responses: parse_har(&text)?,
        frames: if request.verbose {
            output.stdout
        } else {
            String::new()
        },
    })
}

/// `--header=` and `--data=` (from a file in `dir`), as nghttp and h2load both take them.
pub(crate) fn header_and_data_args(
    dir: &ScratchDir,
    headers: &[(String, String)],
    data: Option<&[u8]>,
) -> Result<Vec<String>> {
    let mut args: Vec<String> = headers
        .iter()
        .map(|(name, value)| format!("--header={name}: {value}"))
        .collect();
    if let Some(data) = data {
        let file = dir.join("data");
        std::fs::write(&file, data)?;
        args.push(format!("--data={}", file.display()));
    }
    Ok(args)
}

#[derive(Deserialize)]
struct Har {
    log: HarLog,
}

#[derive(Deserialize)]
struct HarLog {
    entries: Vec<HarEntry>,
}

#[derive(Deserialize)]
struct HarEntry {
    request: HarRequest,
    response: HarResponse,
}

#[derive(Deserialize)]
struct HarRequest {
    method: String,
    url: String,
}

#[derive(Deserialize)]
struct HarResponse {
    status: u16,
    headers: Vec<HarHeader>,
    content: HarContent,
}

#[derive(Deserialize)]
struct HarHeader {
    name: String,
    value: String,
}

#[derive(Deserialize)]
struct HarContent {
    size: u64,
}

fn parse_har(text: &str) -> Result<Vec<NghttpResponse>> {
    let har: Har = serde_json::from_str(text).context("unreadable HAR from nghttp")?;
    Ok(har
        .log
        .entries
        .into_iter()
        .map(|entry| NghttpResponse {
            url: entry.request.url,
            method: entry.request.method,
            status: entry.response.status,
            headers: entry
                .response
                .headers
                .into_iter()
                .map(|h| (h.name, h.value))
                .collect(),
            size: entry.response.content.size,
        })
        .collect())
}

/// Debian's `nghttpd` serving a directory over h2c (no TLS) inside a namespace: a fast, real
/// HTTP/2 server for load (it records nothing). Killed on drop.
pub struct Nghttpd {
    address: SocketAddr,
    docroot: ScratchDir,
    _process: Background,
}

impl Nghttpd {
    /// Serves `files` (name, content) at `address` inside `netns` and waits until it accepts
    /// connections.
    pub fn start(netns: &Netns, address: SocketAddr, files: &[(&str, &[u8])]) -> Result<Nghttpd> {
        let docroot = ScratchDir::new(netns, "nghttpd")?;
        for (name, content) in files {
            std::fs::write(docroot.join(name), content)?;
        }
        let args = vec![
            "--no-tls".into(),
            format!("--address={}", address.ip()),
            format!("--htdocs={}", docroot.path().display()),
            address.port().to_string(),
        ];
        let mut process = Background::spawn("nghttpd", netns, "nghttpd", &args)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if !process.is_running() {
                bail!("nghttpd exited at start:\n{}", process.log());
            }
            if shadow::probe(netns, address, Duration::from_millis(500))? == Reach::Accepted {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "nghttpd did not listen on {address} within 10 s:\n{}",
                    process.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Nghttpd {
            address,
            docroot,
            _process: process,
        })
    }

    /// Where it listens.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// `http://<address>/<name>`.
    pub fn url(&self, name: &str) -> String {
        format!("http://{}/{name}", self.address)
    }

    /// The directory it serves.
    pub fn docroot(&self) -> &Path {
        self.docroot.path()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_follow_the_server_rules() {
        let (status, body, trailers) = expected_response(200, "GET", "/hello", b"", false);
        assert_eq!(status, 200);
        assert_eq!(body, b"GET /hello 0 cbf29ce484222325\n");
        assert!(trailers.is_empty());
        let (_, body, _) = expected_response(200, "GET", "/bytes/70000", b"", false);
        assert_eq!(body, pattern(0, 70_000));
        let (_, body, trailers) = expected_response(503, "POST", "/bytes/3", b"abc", true);
        assert_eq!(
            body,
            format!("POST /bytes/3 3 {:016x}\n", fnv1a(b"abc")).into_bytes()
        );
        assert_eq!(trailers[0].0, "x-body-fnv1a64");
    }

    #[test]
    fn curl_heads_are_read() -> Result<()> {
        let head = parse_curl_head(
            "HTTP/2 200 \r\ncontent-type: text/plain\r\nx-request-body-bytes: 0\r\n\r\n",
        )?;
        assert_eq!((head.version.as_str(), head.status), ("2", 200));
        assert_eq!(head.header("X-Request-Body-Bytes"), Some("0"));
        assert!(parse_curl_head("").is_err());
        Ok(())
    }

    #[test]
    fn har_entries_are_read() -> Result<()> {
        let text = r#"{"log":{"version":"1.2","entries":[{"request":{"method":"GET",
            "url":"http://10.96.0.10:8080/a","headers":[]},"response":{"status":200,
            "headers":[{"name":":status","value":"200"}],"content":{"size":26}}}]}}"#;
        let responses = parse_har(text)?;
        assert_eq!(responses.len(), 1);
        assert_eq!(responses[0].status, 200);
        assert_eq!(responses[0].size, 26);
        assert_eq!(responses[0].url, "http://10.96.0.10:8080/a");
        Ok(())
    }

    #[test]
    fn received_frames_leave_acknowledgements_out() {
        let run = NghttpRun {
            responses: Vec::new(),
            frames: "[  0.001] recv SETTINGS frame <length=6, flags=0x00, stream_id=0>\n\
                     \x20         (niv=1)\n\
                     [  0.002] recv SETTINGS frame <length=0, flags=0x01, stream_id=0>\n\
                     \x20         ; ACK\n\
                     [  0.003] recv SETTINGS frame <length=6, flags=0x00, stream_id=0>\n"
                .into(),
        };
        assert_eq!(run.received_frames("SETTINGS"), 2);
        assert_eq!(run.received_frames("GOAWAY"), 0);
    }

    #[test]
    fn options_become_server_arguments() {
        let args = H2Options::default()
            .delay(Duration::from_millis(1500))
            .status(503)
            .setting("header_table_size", 0)
            .setting("initial_window_size", 100)
            .update_setting("header_table_size", 4096)
            .args();
        assert_eq!(
            args,
            [
                "--delay",
                "1.5",
                "--status",
                "503",
                "--settings",
                "header_table_size=0,initial_window_size=100",
                "--update-settings",
                "header_table_size=4096"
            ]
        );
    }
}
