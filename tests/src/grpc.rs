//! Real gRPC for the HTTP/2 tests: the Python `grpcio` server of `tests/h2/grpc_server.py` as
//! primary or shadow ([`GrpcServer`], recording every call it receives) and the scripted client
//! of `tests/h2/grpc_client.py` run from a pod ([`run_client`]): all four kinds of call on one
//! channel, hence one HTTP/2 connection, with custom metadata (`-bin` included) and deadlines.
//!
//! The server answers as a pure function of the call; [`Call::expected`] recomputes that answer
//! here, independently of the Python code, so a test can check answers direct, and then compare
//! answers through the daemon with answers direct ([`ClientRun::answers`]).
//!
//! Messages are raw bytes (no protobuf, no generated code): the client sends text or
//! [`pattern`] bytes, and both sides describe a message as its length, its FNV-1a 64 and, when
//! short, its text ([`Described`]).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};

use crate::netns::Netns;
use crate::python::{self, PythonServer};
use crate::wire::fnv1a;

/// The test service's methods (see `tests/h2/grpc_server.py`).
pub const UNARY: &str = "/mirror.test.Echo/Unary";
/// Client streaming: one answer summing up every message.
pub const COLLECT: &str = "/mirror.test.Echo/Collect";
/// Server streaming: `<count>` answers of `<bytes>` each.
pub const EXPAND: &str = "/mirror.test.Echo/Expand";
/// Bidirectional: each message answered at once.
pub const CHAT: &str = "/mirror.test.Echo/Chat";
/// The longest message described with its text as well.
pub const TEXT_LIMIT: usize = 200;
/// Initial metadata entries with this key prefix come back in the answer's initial metadata.
pub const ECHO_PREFIX: &str = "x-echo-";
/// The trailer the server counts the request messages in.
pub const MESSAGES_RECEIVED: &str = "x-messages-received";

/// `len` bytes, byte `j` being `(seed * 131 + j) % 251`: what `harness.pattern` makes in Python.
/// Not periodic at any power of two, so a frame or window boundary never lines up with a
/// repetition.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let start = (seed % 251) * 131 % 251;
    (0..len as u64)
        .map(|j| u8::try_from((start + j % 251) % 251).unwrap_or(0))
        .collect()
}

/// A message or body as recorded and as the client reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Described {
    pub len: usize,
    /// FNV-1a 64 as 16 lowercase hex digits.
    pub fnv1a64: String,
    /// The text, for messages of at most [`TEXT_LIMIT`] bytes of UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

impl Described {
    /// How `bytes` are described.
    pub fn of(bytes: &[u8]) -> Described {
        Described {
            len: bytes.len(),
            fnv1a64: format!("{:016x}", fnv1a(bytes)),
            text: (bytes.len() <= TEXT_LIMIT)
                .then(|| std::str::from_utf8(bytes).ok().map(str::to_owned))
                .flatten(),
        }
    }
}

/// A request message of a script.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Message {
    Text { text: String },
    Pattern { seed: u64, len: usize },
}

impl Message {
    /// A UTF-8 message.
    pub fn text(text: &str) -> Message {
        Message::Text {
            text: text.to_owned(),
        }
    }

    /// `len` bytes of [`pattern`]`(seed, len)`.
    pub fn pattern(seed: u64, len: usize) -> Message {
        Message::Pattern { seed, len }
    }

    /// The bytes the client sends.
    pub fn bytes(&self) -> Vec<u8> {
        match self {
            Message::Text { text } => text.as_bytes().to_vec(),
            Message::Pattern { seed, len } => pattern(*seed, *len),
        }
    }
}

/// The four kinds of gRPC call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Unary,
    ClientStreaming,
    ServerStreaming,
    Bidi,
}

/// One call of a [`Script`].
#[derive(Clone, Debug, Serialize)]
pub struct Call {
    pub name: String,
    pub kind: Kind,
    pub method: String,
    /// In order; `-bin` values as lowercase hex.
    pub metadata: Vec<(String, String)>,
    /// Seconds, sent as `grpc-timeout`.
    pub timeout: Option<f64>,
    pub messages: Vec<Message>,
    /// Seconds the client waits before starting the call (on the same channel).
    pub pause_before: Option<f64>,
}

impl Call {
    fn new(name: &str, kind: Kind, method: &str, messages: Vec<Message>) -> Call {
        Call {
            name: name.to_owned(),
            kind,
            method: method.to_owned(),
            metadata: Vec::new(),
            timeout: None,
            messages,
            pause_before: None,
        }
    }

    /// A unary call of [`UNARY`].
    pub fn unary(name: &str, message: Message) -> Call {
        Call::new(name, Kind::Unary, UNARY, vec![message])
    }

    /// A client-streaming call of [`COLLECT`].
    pub fn client_streaming(name: &str, messages: Vec<Message>) -> Call {
        Call::new(name, Kind::ClientStreaming, COLLECT, messages)
    }

    /// A server-streaming call of [`EXPAND`] asking for `count` answers of `bytes` each.
    pub fn server_streaming(name: &str, count: usize, bytes: usize) -> Call {
        let request = Message::text(&format!("{count} {bytes}"));
        Call::new(name, Kind::ServerStreaming, EXPAND, vec![request])
    }

    /// A bidirectional call of [`CHAT`]: each message is sent once the answer to the one before
    /// has arrived.
    pub fn bidi(name: &str, messages: Vec<Message>) -> Call {
        Call::new(name, Kind::Bidi, CHAT, messages)
    }

    /// Another method path (of the same kind), e.g. one the server does not implement.
    pub fn method(mut self, method: &str) -> Call {
        self.method = method.to_owned();
        self
    }

    /// Adds an ASCII metadata entry.
    pub fn metadata(mut self, key: &str, value: &str) -> Call {
        self.metadata.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Adds a binary metadata entry; `key` must end in `-bin`.
    pub fn binary_metadata(mut self, key: &str, value: &[u8]) -> Call {
        assert!(
            key.ends_with("-bin"),
            "binary metadata keys end in -bin: {key}"
        );
        let hex: String = value.iter().map(|byte| format!("{byte:02x}")).collect();
        self.metadata.push((key.to_owned(), hex));
        self
    }

    /// Sets the deadline (sent as `grpc-timeout`).
    pub fn timeout(mut self, timeout: Duration) -> Call {
        self.timeout = Some(timeout.as_secs_f64());
        self
    }

    /// Has the client wait `pause` before starting the call: the channel's connection is idle
    /// meanwhile (after the calls before it, in a sequential script).
    pub fn after_pause(mut self, pause: Duration) -> Call {
        self.pause_before = Some(pause.as_secs_f64());
        self
    }

    /// The answer the test server gives to this call, computed here from the rules in
    /// `tests/h2/grpc_server.py`.
    pub fn expected(&self) -> Answer {
        let messages: Vec<Vec<u8>> = self.messages.iter().map(Message::bytes).collect();
        let responses: Vec<Vec<u8>> = match self.method.as_str() {
            UNARY => messages
                .iter()
                .map(|m| [b"unary:", &m[..]].concat())
                .collect(),
            COLLECT => {
                let joined = messages.concat();
                vec![format!(
                    "collect:{}:{}:{:016x}",
                    messages.len(),
                    joined.len(),
                    fnv1a(&joined)
                )
                .into_bytes()]
            }
            EXPAND => match expand_request(messages.first().map(Vec::as_slice)) {
                Some((count, bytes)) => (0..count).map(|i| pattern(i as u64, bytes)).collect(),
                None => return Answer::status("INVALID_ARGUMENT"),
            },
            CHAT => messages
                .iter()
                .map(|m| [b"chat:", &m[..]].concat())
                .collect(),
            _ => return Answer::status("UNIMPLEMENTED"),
        };
        Answer {
            code: "OK".to_owned(),
            initial_metadata: self
                .metadata
                .iter()
                .filter(|(key, _)| key.starts_with(ECHO_PREFIX))
                .cloned()
                .collect(),
            trailing_metadata: vec![(MESSAGES_RECEIVED.to_owned(), messages.len().to_string())],
            responses: responses.iter().map(|r| Described::of(r)).collect(),
        }
    }
}

/// `"<count> <bytes>"`.
fn expand_request(message: Option<&[u8]>) -> Option<(usize, usize)> {
    let text = std::str::from_utf8(message?).ok()?;
    let mut fields = text.split_whitespace().map(str::parse::<usize>);
    match (fields.next(), fields.next(), fields.next()) {
        (Some(Ok(count)), Some(Ok(bytes)), None) => Some((count, bytes)),
        _ => None,
    }
}

/// What the client runs: calls on one channel, all at once or one after another.
#[derive(Clone, Debug, Serialize)]
pub struct Script {
    /// The channel's `:authority` (default: the target address).
    pub authority: Option<String>,
    pub parallel: bool,
    /// Seconds to wait for the channel to connect.
    pub connect_timeout: f64,
    pub calls: Vec<Call>,
}

impl Script {
    /// `calls` started all at once on one channel.
    pub fn new(calls: Vec<Call>) -> Script {
        Script {
            authority: None,
            parallel: true,
            connect_timeout: 10.0,
            calls,
        }
    }

    /// One call after the other (still one channel).
    pub fn sequential(mut self) -> Script {
        self.parallel = false;
        self
    }

    /// How long the client waits for the channel to connect.
    pub fn connect_timeout(mut self, timeout: Duration) -> Script {
        self.connect_timeout = timeout.as_secs_f64();
        self
    }

    /// The `:authority` of every call (`orders.prod:8080`).
    pub fn authority(mut self, authority: &str) -> Script {
        self.authority = Some(authority.to_owned());
        self
    }

    /// A call by name.
    pub fn call(&self, name: &str) -> Option<&Call> {
        self.calls.iter().find(|call| call.name == name)
    }
}

/// What a call got back, without timings: equal for equal answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// `OK` or the status code's name (`UNAVAILABLE`).
    pub code: String,
    pub initial_metadata: Vec<(String, String)>,
    pub trailing_metadata: Vec<(String, String)>,
    pub responses: Vec<Described>,
}

impl Answer {
    fn status(code: &str) -> Answer {
        Answer {
            code: code.to_owned(),
            initial_metadata: Vec::new(),
            trailing_metadata: Vec::new(),
            responses: Vec::new(),
        }
    }
}

/// One call as the client reports it.
#[derive(Clone, Debug, Deserialize)]
pub struct CallResult {
    pub name: String,
    pub kind: Kind,
    pub method: String,
    pub code: String,
    pub details: String,
    pub initial_metadata: Vec<(String, String)>,
    pub trailing_metadata: Vec<(String, String)>,
    pub responses: Vec<Described>,
    pub elapsed_ms: f64,
}

impl CallResult {
    /// The answer, without timings and `details` (a status's text).
    pub fn answer(&self) -> Answer {
        Answer {
            code: self.code.clone(),
            initial_metadata: self.initial_metadata.clone(),
            trailing_metadata: self.trailing_metadata.clone(),
            responses: self.responses.clone(),
        }
    }

    /// Fails, saying where, unless this is exactly [`Call::expected`] of `call`. Only `code`
    /// is compared for a call that ended with an error status (its metadata is the server's
    /// business).
    pub fn check(&self, call: &Call) -> Result<()> {
        let expected = call.expected();
        let answer = self.answer();
        ensure!(
            answer.code == expected.code,
            "call {}: status {} ({}), expected {}",
            self.name,
            answer.code,
            self.details,
            expected.code
        );
        if expected.code != "OK" {
            return Ok(());
        }
        ensure!(
            answer.responses.len() == expected.responses.len(),
            "call {}: {} answers, expected {}",
            self.name,
            answer.responses.len(),
            expected.responses.len()
        );
        if let Some(at) =
            (0..answer.responses.len()).find(|&i| answer.responses[i] != expected.responses[i])
        {
            bail!(
                "call {}: answer {at} is {:?}, expected {:?}",
                self.name,
                answer.responses[at],
                expected.responses[at]
            );
        }
        ensure!(
            answer.initial_metadata == expected.initial_metadata,
            "call {}: initial metadata {:?}, expected {:?}",
            self.name,
            answer.initial_metadata,
            expected.initial_metadata
        );
        ensure!(
            answer.trailing_metadata == expected.trailing_metadata,
            "call {}: trailing metadata {:?}, expected {:?}",
            self.name,
            answer.trailing_metadata,
            expected.trailing_metadata
        );
        Ok(())
    }
}

/// What the client printed.
#[derive(Clone, Debug, Deserialize)]
pub struct ClientRun {
    pub calls: Vec<CallResult>,
    pub elapsed_ms: f64,
}

impl ClientRun {
    /// A call's result by name.
    pub fn call(&self, name: &str) -> Result<&CallResult> {
        self.calls
            .iter()
            .find(|call| call.name == name)
            .with_context(|| format!("the client reported no call {name}"))
    }

    /// Every call's answer by name, in script order: compare a run through the daemon with a
    /// run direct.
    pub fn answers(&self) -> Vec<(String, Answer)> {
        self.calls
            .iter()
            .map(|call| (call.name.clone(), call.answer()))
            .collect()
    }

    /// [`CallResult::check`] for every call of `script`.
    pub fn check(&self, script: &Script) -> Result<()> {
        ensure!(
            self.calls.len() == script.calls.len(),
            "the client reported {} calls of {}",
            self.calls.len(),
            script.calls.len()
        );
        for call in &script.calls {
            self.call(&call.name)?.check(call)?;
        }
        Ok(())
    }
}

/// How long a client run may take at most (then it is killed and the test fails).
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `script` with the gRPC client inside `netns` (a pod's) against `target`; fails when the
/// client cannot run or connect (with what it printed), not when calls end with an error
/// status (those are results).
pub fn run_client(netns: &Netns, target: SocketAddr, script: &Script) -> Result<ClientRun> {
    let json = serde_json::to_vec(script)?;
    let target = target.to_string();
    let output = python::run(
        netns,
        "grpc_client.py",
        &["--target", &target, "--script", "-"],
        Some(&json),
        CLIENT_TIMEOUT,
    )
    .context("gRPC client (pod side)")?;
    ensure!(
        output.success,
        "gRPC client (pod side) against {target} failed: {}",
        output.stderr.trim()
    );
    serde_json::from_str(output.stdout.trim()).with_context(|| {
        format!(
            "gRPC client: unreadable output {:?} (stderr: {})",
            output.stdout,
            output.stderr.trim()
        )
    })
}

/// When a failing server gives its status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailWhen {
    /// At once, without a message: a Trailers-Only response.
    AtOnce,
    /// After the normal answer, in the trailers.
    AfterAnswer,
}

/// How a gRPC server behaves (the shadow's failure modes; the primary is `Normal`).
#[derive(Clone, Debug, PartialEq)]
pub enum GrpcBehaviour {
    Normal,
    /// Holds every answer this long (cut short when the client cancels).
    Delay(Duration),
    /// Ends the calls to `methods` (empty: every method) with `status` (`"UNAVAILABLE"`): every
    /// `every`th of them in order of arrival (1: all), the others answered normally.
    Fail {
        status: String,
        methods: Vec<String>,
        when: FailWhen,
        every: u32,
    },
    /// Not started: connections are refused.
    Refuse,
    /// Not started, and SYNs to its address dropped: connections time out.
    Blackhole,
}

/// One call as the server recorded it (`tests/h2/grpc_server.py`).
#[derive(Clone, Debug, Deserialize)]
pub struct RecordedCall {
    /// The `--name` of the server.
    pub server: String,
    /// Arrival order at this server, from 0.
    pub call: u64,
    pub method: String,
    /// The `:authority` the call arrived with.
    pub authority: String,
    /// grpcio's peer: `ipv4:10.244.1.2:40000` or `ipv6:[fd00:244:1::2]:40000`.
    pub peer: String,
    /// Every metadata entry in order as grpcio passed it (`-bin` values as lowercase hex;
    /// grpcio keeps `grpc-timeout`, `te` and `content-type` to itself).
    pub metadata: Vec<(String, String)>,
    /// Seconds of deadline left when the call arrived (from `grpc-timeout`).
    pub deadline_s: Option<f64>,
    /// Each request message received.
    pub requests: Vec<Described>,
    /// `OK` or the status name it ended with.
    pub status: String,
    /// The client went away (RST_STREAM, deadline) before the call ended.
    pub cancelled: bool,
    /// Unix times (seconds).
    pub started: f64,
    pub ended: f64,
}

impl RecordedCall {
    /// The first value of metadata `key`.
    pub fn metadata_value(&self, key: &str) -> Option<&str> {
        self.metadata
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value.as_str())
    }

    /// The peer's socket address (the client's, or the daemon's for a relayed connection).
    pub fn peer_address(&self) -> Result<SocketAddr> {
        let address = self
            .peer
            .split_once(':')
            .map(|(_, rest)| rest)
            .unwrap_or_default()
            .replace("%5B", "[")
            .replace("%5D", "]");
        address
            .parse()
            .with_context(|| format!("unreadable gRPC peer {:?}", self.peer))
    }
}

/// A recording gRPC server inside a namespace (or, for `Refuse` and `Blackhole`, the absence of
/// one). Killed on drop.
pub struct GrpcServer {
    addresses: Vec<SocketAddr>,
    behaviour: GrpcBehaviour,
    server: Option<PythonServer>,
}

impl GrpcServer {
    /// Starts the server on `addresses` inside `netns`; `name` ("primary", "shadow") is recorded
    /// with each call and names the server in errors.
    pub fn start(
        name: &str,
        netns: &Netns,
        addresses: &[SocketAddr],
        behaviour: GrpcBehaviour,
    ) -> Result<GrpcServer> {
        ensure!(!addresses.is_empty(), "a gRPC server needs an address");
        let mut args: Vec<String> = vec!["--name".into(), name.into()];
        for address in addresses {
            args.extend(["--listen".into(), address.to_string()]);
        }
        match &behaviour {
            GrpcBehaviour::Normal => {}
            GrpcBehaviour::Delay(delay) => {
                args.extend(["--delay".into(), delay.as_secs_f64().to_string()]);
            }
            GrpcBehaviour::Fail {
                status,
                methods,
                when,
                every,
            } => {
                args.extend(["--status".into(), status.clone()]);
                args.extend(["--status-methods".into(), methods.join(",")]);
                args.extend(["--status-every".into(), every.to_string()]);
                let when = match when {
                    FailWhen::AtOnce => "first",
                    FailWhen::AfterAnswer => "last",
                };
                args.extend(["--status-when".into(), when.into()]);
            }
            GrpcBehaviour::Refuse => {}
            GrpcBehaviour::Blackhole => {
                for address in addresses {
                    crate::shadow::drop_syns(netns, *address)?;
                }
            }
        }
        let server = match behaviour {
            GrpcBehaviour::Refuse | GrpcBehaviour::Blackhole => None,
            _ => Some(PythonServer::start(
                &format!("{name} gRPC server"),
                netns,
                "grpc_server.py",
                args,
            )?),
        };
        Ok(GrpcServer {
            addresses: addresses.to_vec(),
            behaviour,
            server,
        })
    }

    /// The first address it listens on.
    pub fn address(&self) -> SocketAddr {
        self.addresses[0]
    }

    /// Every address it listens on.
    pub fn addresses(&self) -> &[SocketAddr] {
        &self.addresses
    }

    /// How it behaves.
    pub fn behaviour(&self) -> &GrpcBehaviour {
        &self.behaviour
    }

    /// The calls that have ended so far, in arrival order.
    pub fn calls(&self) -> Result<Vec<RecordedCall>> {
        let Some(server) = &self.server else {
            return Ok(Vec::new());
        };
        let mut calls: Vec<RecordedCall> = server.records()?;
        calls.sort_by_key(|call| call.call);
        Ok(calls)
    }

    /// Waits until at least `count` calls have ended; returns them all, in arrival order.
    pub fn wait_for(&self, count: usize, timeout: Duration) -> Result<Vec<RecordedCall>> {
        let Some(server) = &self.server else {
            bail!("the gRPC server was not started ({:?})", self.behaviour);
        };
        server.wait_for_records::<RecordedCall>(
            &format!("{count} calls at the gRPC server"),
            timeout,
            |calls| calls.len() >= count,
        )?;
        self.calls()
    }

    /// What the server printed.
    pub fn log(&self) -> String {
        self.server
            .as_ref()
            .map(PythonServer::log)
            .unwrap_or_default()
    }

    /// The server's process (`None` for `Refuse` and `Blackhole`).
    pub fn pid(&self) -> Option<u32> {
        self.server.as_ref().map(PythonServer::pid)
    }
}

/// Every kind of call, messages larger than a frame (16 KiB) and than the initial window
/// (64 KiB), binary and echoed metadata, deadlines, an unknown method, and 50 concurrent unary
/// calls, all on one channel. Each call carries its name as `x-call`.
pub fn every_kind_script(authority: &str) -> Script {
    let mut calls = vec![
        Call::unary("unary", Message::text("hello"))
            .metadata("x-echo-tenant", "acme")
            .binary_metadata("x-trace-bin", &[0, 1, 0xfe, 0xff])
            .binary_metadata("x-echo-blob-bin", &[0x80; 5])
            .timeout(Duration::from_secs(20)),
        Call::unary("unary-over-window", Message::pattern(1, 100_000)),
        Call::client_streaming(
            "collect",
            vec![
                Message::text("first"),
                Message::pattern(2, 70_000),
                Message::pattern(3, 17_000),
            ],
        ),
        Call::server_streaming("expand", 4, 70_000).timeout(Duration::from_secs(20)),
        Call::bidi(
            "chat",
            vec![
                Message::text("ping"),
                Message::pattern(4, 20_000),
                Message::text("bye"),
            ],
        ),
        Call::unary("unimplemented", Message::text("?")).method("/mirror.test.Echo/Missing"),
    ];
    calls.extend((0..50u64).map(|i| {
        Call::unary(
            &format!("concurrent-{i}"),
            Message::pattern(100 + i, 1000 + 37 * i as usize),
        )
    }));
    let calls = calls
        .into_iter()
        .map(|call| {
            let name = call.name.clone();
            call.metadata("x-call", &name)
        })
        .collect();
    Script::new(calls).authority(authority)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_matches_the_python_rule() {
        assert_eq!(pattern(0, 4), [0, 1, 2, 3]);
        // 131 % 251 = 131; the sequence wraps at 251, not 256.
        assert_eq!(pattern(1, 3), [131, 132, 133]);
        let long = pattern(2, 600);
        assert_eq!(long[0], 11);
        assert_eq!(long[240], 0);
        assert_eq!(long[251], long[0]);
        assert_eq!(pattern(251 + 2, 600), long);
    }

    #[test]
    fn messages_are_described_like_the_python_side() {
        let short = Described::of(b"hello");
        assert_eq!(short.len, 5);
        assert_eq!(short.fnv1a64, "a430d84680aabd0b");
        assert_eq!(short.text.as_deref(), Some("hello"));
        assert_eq!(Described::of(&[0xff]).text, None);
        assert_eq!(Described::of(&pattern(0, 201)).text, None);
    }

    #[test]
    fn expected_answers_follow_the_server_rules() {
        let unary = Call::unary("u", Message::text("hi")).metadata("x-echo-a", "1");
        let answer = unary.expected();
        assert_eq!(answer.responses, [Described::of(b"unary:hi")]);
        assert_eq!(answer.initial_metadata, [("x-echo-a".into(), "1".into())]);
        assert_eq!(
            answer.trailing_metadata,
            [(MESSAGES_RECEIVED.into(), "1".into())]
        );

        let collect = Call::client_streaming("c", vec![Message::text("ab"), Message::text("c")]);
        let expected = format!("collect:2:3:{:016x}", fnv1a(b"abc"));
        assert_eq!(
            collect.expected().responses,
            [Described::of(expected.as_bytes())]
        );

        let expand = Call::server_streaming("s", 3, 70_000).expected();
        assert_eq!(expand.responses.len(), 3);
        assert_eq!(expand.responses[2], Described::of(&pattern(2, 70_000)));

        let chat = Call::bidi("b", vec![Message::text("x"), Message::text("y")]).expected();
        assert_eq!(
            chat.responses,
            [Described::of(b"chat:x"), Described::of(b"chat:y")]
        );

        let unknown = Call::unary("n", Message::text("x")).method("/mirror.test.Echo/Nope");
        assert_eq!(unknown.expected().code, "UNIMPLEMENTED");
    }

    #[test]
    fn scripts_serialize_as_the_client_reads_them() -> Result<()> {
        let script = Script::new(vec![Call::unary("u", Message::pattern(1, 10))
            .binary_metadata("x-trace-bin", &[0, 0xff])
            .timeout(Duration::from_millis(1500))])
        .authority("orders:50051");
        let json: serde_json::Value = serde_json::to_value(&script)?;
        assert_eq!(json["authority"], "orders:50051");
        assert_eq!(json["calls"][0]["kind"], "unary");
        assert_eq!(json["calls"][0]["messages"][0]["seed"], 1);
        assert_eq!(json["calls"][0]["metadata"][0][1], "00ff");
        assert_eq!(json["calls"][0]["timeout"], 1.5);
        Ok(())
    }

    #[test]
    fn peers_of_both_families_are_read() -> Result<()> {
        let mut call: RecordedCall = serde_json::from_str(
            r#"{"server":"p","call":0,"method":"/m","authority":"a","peer":"ipv4:10.0.0.1:5",
            "metadata":[["k","v"]],"deadline_s":null,"requests":[],"status":"OK",
            "cancelled":false,"started":1.0,"ended":2.0,"seq":0}"#,
        )?;
        assert_eq!(call.peer_address()?, "10.0.0.1:5".parse()?);
        assert_eq!(call.metadata_value("k"), Some("v"));
        call.peer = "ipv6:%5Bfd00::2%5D:7".into();
        assert_eq!(call.peer_address()?, "[fd00::2]:7".parse()?);
        Ok(())
    }
}
