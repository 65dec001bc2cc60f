//! The shadow: a recording HTTP/1.1 server standing in for a remote cluster's ingress, in its own
//! namespace behind a non-CNI link of the node (see [`crate::node::Node::add_shadow`]).
//!
//! It records every request ([`crate::recording`]) and answers `200 OK` with a small body, after
//! an optional delay. It can also be made unreachable in the two ways real ingresses fail:
//! refusing connections (nothing listens: the SYN gets a RST) or blackholed (an `iptables` DROP of
//! SYNs to its port, inside the shadow's own namespace, so connects time out). Optionally it
//! speaks TLS (rustls, a certificate given as PEM files).
//!
//! Dropping it stops its listener and cuts delays short.

use std::fmt;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::netns::Netns;
use crate::recording::{self, Recording, Role};
use crate::tcp::{self, ConnectOptions, Server};

/// The body of the shadow's answers.
pub const SHADOW_BODY: &str = "shadow ok\n";

/// How the shadow behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// Answers at once.
    Normal,
    /// Reads the request, then answers after this long.
    Delay(Duration),
    /// Nothing listens: connections are refused (RST).
    Refuse,
    /// SYNs to the port are dropped: connections time out.
    Blackhole,
}

impl fmt::Display for Behaviour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Behaviour::Normal => f.write_str("answering at once"),
            Behaviour::Delay(delay) => write!(f, "answering after {delay:?}"),
            Behaviour::Refuse => f.write_str("refusing connections"),
            Behaviour::Blackhole => f.write_str("blackholed (SYNs dropped)"),
        }
    }
}

/// A running (or deliberately unreachable) shadow.
pub struct ShadowServer {
    address: SocketAddr,
    behaviour: Behaviour,
    recording: Recording,
    stop: Arc<AtomicBool>,
    server: Option<Server>,
}

impl ShadowServer {
    /// A plain-TCP shadow at `address` inside `netns`.
    pub fn start(netns: &Netns, address: SocketAddr, behaviour: Behaviour) -> Result<Self> {
        Self::start_with(netns, address, behaviour, None)
    }

    /// A TLS shadow presenting the certificate chain `cert_pem` with key `key_pem`.
    pub fn start_tls(
        netns: &Netns,
        address: SocketAddr,
        behaviour: Behaviour,
        cert_pem: &Path,
        key_pem: &Path,
    ) -> Result<Self> {
        let config = tls_config(cert_pem, key_pem)?;
        Self::start_with(netns, address, behaviour, Some(config))
    }

    /// A shadow on an already bound listener (in whatever namespace it was made): for the
    /// harness's own tests on loopback. `Refuse` and `Blackhole` make no sense here.
    pub fn on_listener(
        listener: TcpListener,
        behaviour: Behaviour,
        tls: Option<(&Path, &Path)>,
    ) -> Result<Self> {
        let tls = tls.map(|(cert, key)| tls_config(cert, key)).transpose()?;
        let address = listener.local_addr()?;
        let (recording, stop) = (Recording::default(), Arc::new(AtomicBool::new(false)));
        let handler = handler(&recording, behaviour, &stop, tls);
        Ok(ShadowServer {
            address,
            behaviour,
            recording,
            stop,
            server: Some(Server::from_listener(listener, handler)?),
        })
    }

    fn start_with(
        netns: &Netns,
        address: SocketAddr,
        behaviour: Behaviour,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Result<Self> {
        let recording = Recording::default();
        let stop = Arc::new(AtomicBool::new(false));
        let server = match behaviour {
            Behaviour::Refuse => None,
            Behaviour::Blackhole => {
                drop_syns(netns, address)?;
                None
            }
            Behaviour::Normal | Behaviour::Delay(_) => Some(Server::spawn(
                netns,
                address,
                handler(&recording, behaviour, &stop, tls),
            )?),
        };
        Ok(ShadowServer {
            address,
            behaviour,
            recording,
            stop,
            server,
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn behaviour(&self) -> Behaviour {
        self.behaviour
    }

    /// What arrived.
    pub fn recording(&self) -> &Recording {
        &self.recording
    }

    /// Connection handler errors (for diagnosis; a copy cut short shows up here).
    pub fn errors(&self) -> Vec<String> {
        self.server.as_ref().map(Server::errors).unwrap_or_default()
    }
}

impl Drop for ShadowServer {
    fn drop(&mut self) {
        // Delays end now; the listener stops when `server` drops right after.
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// The connection handler of a listening shadow.
fn handler(
    recording: &Recording,
    behaviour: Behaviour,
    stop: &Arc<AtomicBool>,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> impl Fn(TcpStream) -> std::io::Result<()> + Send + Sync + 'static {
    let log = recording.clone();
    let role = Role::Shadow {
        delay: match behaviour {
            Behaviour::Delay(delay) => delay,
            _ => Duration::ZERO,
        },
        body: SHADOW_BODY.to_owned(),
        stop: Arc::clone(stop),
    };
    move |stream| {
        let peer = stream.peer_addr()?;
        match &tls {
            None => recording::serve(stream, peer, &log, &role),
            Some(config) => {
                let connection = rustls::ServerConnection::new(Arc::clone(config))
                    .map_err(std::io::Error::other)?;
                let stream = rustls::StreamOwned::new(connection, stream);
                recording::serve(stream, peer, &log, &role)
            }
        }
    }
}

/// `iptables -A INPUT -p tcp --syn --dport <port> -d <address> -j DROP` inside `netns` (which
/// must be a namespace the test created; it goes away with the namespace).
pub(crate) fn drop_syns(netns: &Netns, address: SocketAddr) -> Result<()> {
    let program = if address.is_ipv6() {
        "ip6tables"
    } else {
        "iptables"
    };
    let port = address.port().to_string();
    let destination = address.ip().to_string();
    netns
        .exec(
            program,
            &[
                "-w",
                "-A",
                "INPUT",
                "-p",
                "tcp",
                "--syn",
                "-d",
                &destination,
                "--dport",
                &port,
                "-j",
                "DROP",
            ],
        )
        .with_context(|| format!("cannot blackhole {address} in {}", netns.name()))?;
    Ok(())
}

fn tls_config(cert_pem: &Path, key_pem: &Path) -> Result<Arc<rustls::ServerConfig>> {
    let certs = rustls_pemfile::certs(&mut std::io::BufReader::new(
        std::fs::File::open(cert_pem).with_context(|| format!("{}", cert_pem.display()))?,
    ))
    .collect::<Result<Vec<_>, _>>()
    .with_context(|| format!("certificates in {}", cert_pem.display()))?;
    let key = rustls_pemfile::private_key(&mut std::io::BufReader::new(
        std::fs::File::open(key_pem).with_context(|| format!("{}", key_pem.display()))?,
    ))
    .with_context(|| format!("key in {}", key_pem.display()))?
    .with_context(|| format!("no private key in {}", key_pem.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(Arc::new(config))
}

/// What a connection attempt to an address got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    Accepted,
    Refused,
    TimedOut,
    Other(std::io::ErrorKind),
}

/// Tries one connection to `address` from `netns` (the node, typically) with `timeout`; shows
/// that a refusing or blackholed shadow really is so before a test relies on it.
pub fn probe(netns: &Netns, address: SocketAddr, timeout: Duration) -> Result<Reach> {
    let options = ConnectOptions {
        connect_timeout: timeout,
        ..ConnectOptions::default()
    };
    let result: Result<TcpStream> = netns.run(|| tcp::connect(None, address, &options))?;
    Ok(match result {
        Ok(_) => Reach::Accepted,
        Err(error) => match error
            .downcast_ref::<std::io::Error>()
            .map(std::io::Error::kind)
        {
            Some(std::io::ErrorKind::ConnectionRefused) => Reach::Refused,
            Some(std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock) => Reach::TimedOut,
            Some(kind) => Reach::Other(kind),
            None => Reach::Other(std::io::ErrorKind::Other),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{Client, Request};
    use crate::environment::workspace;
    use crate::recording::shadow_response;
    use std::io::Write;
    use std::time::Instant;

    fn testdata(name: &str) -> std::path::PathBuf {
        workspace()
            .join("mirror-daemon/src/shadow/testdata")
            .join(name)
    }

    fn connect(shadow: &ShadowServer) -> Result<TcpStream> {
        tcp::connect(None, shadow.address(), &ConnectOptions::default())
    }

    #[test]
    fn answers_and_records_requests_and_keeps_incomplete_ones() -> Result<()> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let shadow = ShadowServer::on_listener(listener, Behaviour::Normal, None)?;
        let mut client = Client::from_stream(connect(&shadow)?);
        let request = Request::post("a-shadow", "/x", b"hello").header("X-Order", "kept");
        let (response, _) = client.exchange(&request)?;
        assert_eq!(response, shadow_response(SHADOW_BODY, false));
        // A second connection breaks off mid-body.
        let mut cut = connect(&shadow)?;
        cut.write_all(b"POST /cut HTTP/1.1\r\nContent-Length: 10\r\n\r\nhal")?;
        drop(cut);
        shadow.recording().wait_for(1, Duration::from_secs(5))?;
        crate::wait::until("the cut request", Duration::from_secs(5), || {
            Ok(if shadow.recording().incomplete_count() == 1 {
                Ok(())
            } else {
                Err(())
            })
        })?;
        let recorded = &shadow.recording().requests()[0];
        assert_eq!(recorded.raw(), request.to_bytes());
        assert_eq!(
            recorded.headers()[2],
            ("X-Order".to_owned(), "kept".to_owned())
        );
        let incomplete = &shadow.recording().incomplete()[0];
        assert_eq!(
            (incomplete.target(), incomplete.body.raw.as_slice()),
            ("/cut", &b"hal"[..])
        );
        assert_eq!(shadow.recording().connections(), 2);
        Ok(())
    }

    #[test]
    fn a_delay_is_cut_short_when_the_shadow_is_dropped() -> Result<()> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let shadow =
            ShadowServer::on_listener(listener, Behaviour::Delay(Duration::from_secs(60)), None)?;
        let mut client = Client::from_stream(connect(&shadow)?);
        client.send(&Request::get("a", "/slow").to_bytes())?;
        shadow.recording().wait_for(1, Duration::from_secs(5))?;
        let started = Instant::now();
        drop(shadow);
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        assert!(
            client.read_response("GET").is_err(),
            "no answer, the connection closed"
        );
        Ok(())
    }

    #[test]
    fn speaks_tls_with_the_daemons_test_certificate() -> Result<()> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let (cert, key) = (testdata("server.pem"), testdata("server.key"));
        let shadow = ShadowServer::on_listener(listener, Behaviour::Normal, Some((&cert, &key)))?;
        let mut roots = rustls::RootCertStore::empty();
        for ca in rustls_pemfile::certs(&mut std::io::BufReader::new(std::fs::File::open(
            testdata("ca.pem"),
        )?)) {
            roots.add(ca?)?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from("localhost")?;
        let connection = rustls::ClientConnection::new(Arc::new(config), name)?;
        let mut tls = rustls::StreamOwned::new(connection, connect(&shadow)?);
        tls.write_all(&Request::get("a-shadow", "/over-tls").to_bytes())?;
        let mut reader = crate::wire::Reader::new(tls);
        let response = crate::wire::read_response(&mut reader, "GET")?;
        assert_eq!(response.body.data, SHADOW_BODY.as_bytes());
        assert_eq!(shadow.recording().requests()[0].target(), "/over-tls");
        Ok(())
    }
}
