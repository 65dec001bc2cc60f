//! The primary: an HTTP/1.1 server in the primary's namespace that records every request and
//! answers it deterministically, so a client can check its response byte for byte.
//!
//! - Keep-alive and pipelining: requests are read one after another off the same buffered
//!   stream and answered in order.
//! - Bodies: `Content-Length` or chunked (extensions and trailers kept in the recording).
//! - `Expect: 100-continue` gets `100 Continue` before the body is read.
//! - `Upgrade: …` with `Connection: Upgrade` gets `101 Switching Protocols`
//!   ([`UPGRADE_RESPONSE`]); from then on the connection echoes every byte until EOF.
//! - A target starting with `/chunked-response` is answered with a chunked body.
//! - `Connection: close` (or HTTP/1.0) is answered with `connection: close`, then FIN.

use std::net::SocketAddr;

use anyhow::Result;

use crate::netns::Netns;
use crate::recording::{self, Recording, Role};
use crate::tcp::Server;
use crate::wire::fnv1a;

pub use crate::recording::{CONTINUE_RESPONSE, UPGRADE_RESPONSE};

/// The primary's response to a request, exactly as it goes on the wire. A pure function of the
/// request, so the client can compute what it must receive.
pub fn expected_response(method: &str, target: &str, body: &[u8], close: bool) -> Vec<u8> {
    let text = format!(
        "primary saw {method} {target} with {} body bytes, fnv1a {:016x}\n",
        body.len(),
        fnv1a(body)
    );
    let mut head =
        String::from("HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nx-served-by: primary\r\n");
    if close {
        head.push_str("connection: close\r\n");
    }
    let head_only = method.eq_ignore_ascii_case("HEAD");
    if target.starts_with("/chunked-response") {
        head.push_str("transfer-encoding: chunked\r\n\r\n");
        let mut response = head.into_bytes();
        if !head_only {
            let (first, second) = text.split_at(text.len() / 2);
            for part in [first, second] {
                response.extend_from_slice(format!("{:x}\r\n{part}\r\n", part.len()).as_bytes());
            }
            response.extend_from_slice(b"0\r\n\r\n");
        }
        response
    } else {
        head.push_str(&format!("content-length: {}\r\n\r\n", text.len()));
        if !head_only {
            head.push_str(&text);
        }
        head.into_bytes()
    }
}

/// A recording primary on one or more addresses (one listener each, one shared recording).
pub struct PrimaryServer {
    servers: Vec<Server>,
    recording: Recording,
}

impl PrimaryServer {
    /// Listens on every address of `addresses` inside `netns`.
    pub fn start(netns: &Netns, addresses: &[SocketAddr]) -> Result<PrimaryServer> {
        let recording = Recording::default();
        let mut servers = Vec::new();
        for &address in addresses {
            let log = recording.clone();
            servers.push(Server::spawn(netns, address, move |stream| {
                let peer = stream.peer_addr()?;
                recording::serve(stream, peer, &log, &Role::Primary)
            })?);
        }
        Ok(PrimaryServer { servers, recording })
    }

    /// A primary on an already bound listener (for the harness's own tests on loopback).
    pub fn on_listener(listener: std::net::TcpListener) -> Result<PrimaryServer> {
        let recording = Recording::default();
        let log = recording.clone();
        let server = Server::from_listener(listener, move |stream| {
            let peer = stream.peer_addr()?;
            recording::serve(stream, peer, &log, &Role::Primary)
        })?;
        Ok(PrimaryServer {
            servers: vec![server],
            recording,
        })
    }

    /// The first address.
    pub fn address(&self) -> SocketAddr {
        self.servers[0].address()
    }

    /// Every address listened on.
    pub fn addresses(&self) -> Vec<SocketAddr> {
        self.servers.iter().map(Server::address).collect()
    }

    /// What arrived.
    pub fn recording(&self) -> &Recording {
        &self.recording
    }

    /// Connection handler errors (for diagnosis).
    pub fn errors(&self) -> Vec<String> {
        self.servers.iter().flat_map(Server::errors).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{Client, Request};
    use crate::tcp::{self, ConnectOptions};
    use crate::wire::{read_response, Reader};
    use std::io::{Read, Write};

    fn loopback() -> Result<(PrimaryServer, Client)> {
        let primary = PrimaryServer::on_listener(std::net::TcpListener::bind("127.0.0.1:0")?)?;
        let stream = tcp::connect(None, primary.address(), &ConnectOptions::default())?;
        Ok((primary, Client::from_stream(stream)))
    }

    #[test]
    fn keep_alive_pipelining_chunks_and_continue_on_loopback() -> Result<()> {
        let (primary, mut client) = loopback()?;
        let requests = [
            Request::get("a", "/one"),
            Request::new("POST", "/two")
                .header("Host", "a")
                .chunked(&[(b"abc", ";x=1"), (b"de", "")], &[("T", "1")]),
            Request::get("a", "/chunked-response/three"),
        ];
        let wire: Vec<u8> = requests.iter().flat_map(Request::to_bytes).collect();
        client.send(&wire)?;
        for request in &requests {
            assert_eq!(
                client.read_response(&request.method)?.raw(),
                request.expected_response()
            );
        }
        let expecting = Request::post("a", "/four", b"body").header("Expect", "100-continue");
        client.exchange_checked(&expecting)?;
        let recorded = primary
            .recording()
            .wait_for(4, std::time::Duration::from_secs(5))?;
        assert_eq!(recorded[1].body.data, b"abcde");
        assert_eq!(recorded[1].body.raw, requests[1].body_bytes());
        assert_eq!(
            recorded[1].body.trailers,
            vec![("T".to_owned(), "1".to_owned())]
        );
        assert_eq!(recorded[3].header("expect"), Some("100-continue"));
        assert!(recorded.iter().all(|r| r.connection == 0 && r.complete));
        Ok(())
    }

    #[test]
    fn an_upgrade_switches_to_echo_on_loopback() -> Result<()> {
        let (primary, mut client) = loopback()?;
        let upgrade = Request::get("a", "/ws")
            .header("Upgrade", "websocket")
            .header("Connection", "Upgrade");
        // Bytes right behind the head are echoed too.
        client.send(&[upgrade.to_bytes(), b"early".to_vec()].concat())?;
        assert_eq!(client.read_response("GET")?.raw(), UPGRADE_RESPONSE);
        let mut echoed = client.take_buffered();
        let stream = client.stream();
        stream.write_all(b" and late")?;
        stream.shutdown(std::net::Shutdown::Write)?;
        stream.read_to_end(&mut echoed)?;
        assert_eq!(echoed, b"early and late");
        assert_eq!(primary.recording().requests()[0].target(), "/ws");
        Ok(())
    }

    #[test]
    fn expected_responses_are_well_framed() -> std::io::Result<()> {
        let wire = [
            expected_response("GET", "/a", b"", false),
            expected_response("POST", "/chunked-response/b", b"xyz", false),
            expected_response("HEAD", "/c", b"", false),
            expected_response("GET", "/d", b"", true),
        ]
        .concat();
        let mut reader = Reader::new(wire.as_slice());
        let first = read_response(&mut reader, "GET")?;
        assert_eq!(
            first.body.data,
            format!(
                "primary saw GET /a with 0 body bytes, fnv1a {:016x}\n",
                fnv1a(b"")
            )
            .as_bytes()
        );
        let second = read_response(&mut reader, "POST")?;
        assert!(
            String::from_utf8_lossy(&second.body.data).contains("POST /chunked-response/b with 3")
        );
        assert!(read_response(&mut reader, "HEAD")?.body.raw.is_empty());
        assert_eq!(
            read_response(&mut reader, "GET")?.head.header("connection"),
            Some("close")
        );
        assert!(reader.buffered().is_empty());
        Ok(())
    }
}
