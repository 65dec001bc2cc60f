//! nginx from Debian in three roles, each its own process in a namespace: the primary (a fixed
//! 1 KiB answer), the healthy shadow (a short answer, with `stub_status` to count the copies that
//! arrive), and the explicit proxy that mirrors with its `mirror` directive (the comparison).
//! Primary and shadow also listen for h2c with prior knowledge on ports of their own (`listen …
//! http2` on a plain port, nginx 1.22), with the same answers; `stub_status` counts HTTP/2
//! requests (streams) too.
//!
//! For the comparison scenarios both also serve the same ~1 KiB JSON document ([`json_document`])
//! on a port of their own, with one field nginx generates per answer (`$request_id`), as services
//! stamp their answers: the daemon then parses and compares both bodies as JSON (identical bytes
//! would take its byte-equality shortcut) and learns that field as noise.
//!
//! Every instance has its own prefix directory (config, pid file, temp paths) under the bench's
//! work directory, runs in the foreground (`daemon off`) and is stopped by its handle.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use mirror_tests::netns::Netns;
use mirror_tests::tcp::{self, ConnectOptions};

use super::procstat;

/// Size of the primary's answer body.
pub const BODY_BYTES: usize = 1024;
/// Where the shadow nginx serves its counters (inside the shadow namespace).
pub const STATUS_PATH: &str = "/__bench_status";
/// A request field the primary copies into its answer when a request carries it (nginx adds no
/// field for an empty value, so answers to other requests are unchanged): the restart bench
/// tags each wrk request with its send time and reads it back from the answer.
pub const ECHOED_FIELD: &str = "X-Sent-At";

/// Size of the JSON document's answers, once nginx has filled in its `$request_id` (32 hex digits).
pub const JSON_BYTES: usize = 1024;

/// The JSON document primary and shadow serve, as nginx's `return` text: an order with its items,
/// `$request_id` filled in by nginx, padded to [`JSON_BYTES`] once filled in. No `'`, `\\` or
/// other `$`: it goes between single quotes in the config.
pub fn json_document() -> String {
    let mut items = Vec::new();
    for n in 1..=6 {
        items.push(format!(
            "{{\"sku\":\"sku-{n:04}\",\"name\":\"item {n}\",\"quantity\":{n},\
             \"unit_price\":{}.{:02},\"tags\":[\"bench\",\"json\"]}}",
            n * 3,
            n * 7 % 100
        ));
    }
    let head = format!(
        "{{\"request_id\":\"$request_id\",\"order\":{{\"id\":\"ord-00042\",\
         \"status\":\"confirmed\",\"currency\":\"EUR\",\"total\":129.9,\
         \"customer\":{{\"id\":\"cus-7\",\"tier\":\"gold\"}}}},\"items\":[{}],\"note\":\"",
        items.join(",")
    );
    let tail = "\"}\n";
    // `$request_id` (11 characters) becomes 32.
    let filled = head.len() - "$request_id".len() + 32 + tail.len();
    let pad = JSON_BYTES.saturating_sub(filled);
    format!("{head}{}{tail}", "x".repeat(pad))
}

/// The server block serving [`json_document`] on `listen`.
fn json_server(listen: &[SocketAddr]) -> String {
    let mut text = String::from("  server {\n");
    for address in listen {
        let _ = writeln!(text, "    {}", listen_directive(*address));
    }
    let _ = writeln!(
        text,
        "    default_type application/json;\n    location / {{ return 200 '{}'; }}\n  }}",
        json_document()
    );
    text
}

/// A shadow the proxy mirrors to: the name of its nginx location and its address.
#[derive(Clone, Debug)]
pub struct MirrorTo {
    pub name: String,
    pub address: SocketAddr,
}

/// Settings the daemon's targets have too, so both sides give up on a shadow alike.
pub const MIRROR_CONNECT_TIMEOUT: &str = "1s";
pub const MIRROR_REQUEST_TIMEOUT: &str = "5s";

/// What the healthy shadow answers each copy (its JSON port aside).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShadowAnswer {
    /// `200` with a 10-byte text body. nginx's HTTP/2 writes the HEADERS and DATA frames of such
    /// an answer with a write each, so an HTTP/2 copy's answer arrives as two TCP segments where
    /// the HTTP/1.1 one is one.
    Text,
    /// `204`, no body: one segment for either protocol (HTTP/2: HEADERS with END_STREAM), so the
    /// two protocols' copies cost the daemon the same packets.
    Empty,
}

impl ShadowAnswer {
    pub fn parse(text: &str) -> Option<ShadowAnswer> {
        match text {
            "text" => Some(ShadowAnswer::Text),
            "empty" => Some(ShadowAnswer::Empty),
            _ => None,
        }
    }

    fn directive(self) -> &'static str {
        match self {
            ShadowAnswer::Text => "return 200 \"shadow ok\\n\";",
            ShadowAnswer::Empty => "return 204;",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            ShadowAnswer::Text => {
                "`200` with a 10-byte text body (nginx's HTTP/2 sends its HEADERS and DATA frames in two \
                 segments, its HTTP/1.1 the whole answer in one)"
            }
            ShadowAnswer::Empty => {
                "`204` without a body (one segment for HTTP/1.1 and HTTP/2 alike: \
                 `--shadow-answer empty`)"
            }
        }
    }
}

/// What one nginx instance does.
pub enum Role<'a> {
    Primary {
        listen: &'a [SocketAddr],
        /// h2c with prior knowledge.
        listen_h2: &'a [SocketAddr],
        /// The JSON document's.
        listen_json: &'a [SocketAddr],
    },
    Shadow {
        listen: SocketAddr,
        /// h2c with prior knowledge.
        listen_h2: Option<SocketAddr>,
        listen_json: Option<SocketAddr>,
        answer: ShadowAnswer,
    },
    Proxy {
        listen: SocketAddr,
        primary: SocketAddr,
        mirrors: &'a [MirrorTo],
        workers: usize,
    },
}

fn listen_directive(address: SocketAddr) -> String {
    // reuseport spreads connections over workers; backlog for bursts of new connections.
    format!("listen {address} backlog=4096;")
}

/// h2c with prior knowledge: nginx 1.22 speaks only HTTP/2 on a plain `http2` listener.
fn listen_h2_directive(address: SocketAddr) -> String {
    format!("listen {address} http2 backlog=4096;")
}

/// The configuration text of `role` with its files under `prefix`.
pub fn config(role: &Role<'_>, prefix: &Path) -> String {
    let prefix = prefix.display();
    let workers = match role {
        Role::Proxy { workers, .. } => *workers,
        _ => 1,
    };
    let mut text = format!(
        "daemon off;\nmaster_process on;\nuser root;\nworker_processes {workers};\n\
         pid {prefix}/nginx.pid;\nerror_log stderr error;\nworker_rlimit_nofile 65536;\n\
         events {{ worker_connections 16384; multi_accept on; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {prefix}/body;\n\
         proxy_temp_path {prefix}/proxy;\n  fastcgi_temp_path {prefix}/fastcgi;\n\
         uwsgi_temp_path {prefix}/uwsgi;\n  scgi_temp_path {prefix}/scgi;\n\
         keepalive_requests 100000000;\n  keepalive_timeout 120s;\n  server_tokens off;\n"
    );
    match role {
        Role::Primary {
            listen,
            listen_h2,
            listen_json,
        } => {
            text.push_str("  server {\n");
            for address in *listen {
                let _ = writeln!(text, "    {}", listen_directive(*address));
            }
            for address in *listen_h2 {
                let _ = writeln!(text, "    {}", listen_h2_directive(*address));
            }
            let body = "x".repeat(BODY_BYTES - 1);
            let variable = ECHOED_FIELD.to_ascii_lowercase().replace('-', "_");
            let _ = writeln!(
                text,
                "    default_type text/plain;\n    add_header {ECHOED_FIELD} $http_{variable};\n\
                 location / {{ return 200 \"{body}\\n\"; }}\n  }}"
            );
            if !listen_json.is_empty() {
                text.push_str(&json_server(listen_json));
            }
        }
        Role::Shadow {
            listen,
            listen_h2,
            listen_json,
            answer,
        } => {
            let _ = writeln!(text, "  server {{\n    {}", listen_directive(*listen));
            if let Some(address) = listen_h2 {
                let _ = writeln!(text, "    {}", listen_h2_directive(*address));
            }
            let _ = writeln!(
                text,
                "    default_type text/plain;\n\
                 location = {STATUS_PATH} {{ stub_status; }}\n\
                 location / {{ {} }}\n  }}",
                answer.directive()
            );
            // `stub_status` counts the requests of every server block of the process.
            if let Some(address) = listen_json {
                text.push_str(&json_server(&[*address]));
            }
        }
        Role::Proxy {
            listen,
            primary,
            mirrors,
            ..
        } => {
            let _ = writeln!(
                text,
                "  upstream primary {{ server {primary}; keepalive 256; }}"
            );
            for mirror in *mirrors {
                let _ = writeln!(
                    text,
                    "  upstream shadow_{} {{ server {}; keepalive 32; }}",
                    mirror.name, mirror.address
                );
            }
            let _ = writeln!(text, "  server {{\n    {}", listen_directive(*listen));
            text.push_str(
                "    proxy_http_version 1.1;\n    proxy_set_header Connection \"\";\n\
                 proxy_buffering on;\n    location / {\n",
            );
            for mirror in *mirrors {
                let _ = writeln!(text, "      mirror /__mirror_{};", mirror.name);
            }
            text.push_str(
                "      mirror_request_body on;\n      proxy_pass http://primary;\n    }\n",
            );
            for mirror in *mirrors {
                let _ = writeln!(
                    text,
                    "    location = /__mirror_{name} {{\n      internal;\n\
                     proxy_pass http://shadow_{name}$request_uri;\n\
                     proxy_set_header Host $host-shadow;\n\
                     proxy_connect_timeout {MIRROR_CONNECT_TIMEOUT};\n\
                     proxy_send_timeout {MIRROR_REQUEST_TIMEOUT};\n\
                     proxy_read_timeout {MIRROR_REQUEST_TIMEOUT};\n    }}",
                    name = mirror.name
                );
            }
            text.push_str("  }\n");
        }
    }
    text.push_str("}\n");
    text
}

/// A running nginx (master and workers), stopped on drop.
pub struct Nginx {
    child: Child,
    log: Arc<Mutex<String>>,
}

impl Nginx {
    /// Starts nginx as `role` in `netns`, pinned to `cpus` (a `taskset -c` list) when given, and
    /// waits until `probe` accepts connections.
    pub fn start(
        netns: &Netns,
        role: &Role<'_>,
        prefix: &Path,
        cpus: Option<&str>,
        probe: SocketAddr,
    ) -> Result<Nginx> {
        for dir in ["", "body", "proxy", "fastcgi", "uwsgi", "scgi"] {
            std::fs::create_dir_all(prefix.join(dir))?;
        }
        let conf = prefix.join("nginx.conf");
        std::fs::write(&conf, config(role, prefix))?;
        let mut command = Command::new("ip");
        command.args(["netns", "exec", netns.name()]);
        if let Some(cpus) = cpus {
            command.args(["taskset", "-c", cpus]);
        }
        command
            .arg("nginx")
            .arg("-p")
            .arg(prefix)
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg("stderr")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().context("cannot start nginx")?;
        let log = Arc::new(Mutex::new(String::new()));
        if let Some(mut stderr) = child.stderr.take() {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                let mut text = String::new();
                let _ = stderr.read_to_string(&mut text);
                log.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push_str(&text);
            });
        }
        let mut nginx = Nginx { child, log };
        nginx.wait_ready(netns, probe)?;
        Ok(nginx)
    }

    fn wait_ready(&mut self, netns: &Netns, probe: SocketAddr) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let options = ConnectOptions {
            connect_timeout: Duration::from_millis(500),
            ..ConnectOptions::default()
        };
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("nginx exited ({status}): {}", self.log());
            }
            // Ready once a worker is up too (the master alone accepts into the backlog).
            let connected = netns.run(|| tcp::connect(None, probe, &options))?.is_ok();
            if connected && !procstat::children(self.pid()).is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "nginx did not accept on {probe} within 10 s: {}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The master's pid (`ip netns exec` and `taskset` exec in place).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Master and workers.
    pub fn pids(&self) -> Vec<u32> {
        let mut pids = vec![self.pid()];
        pids.extend(procstat::children(self.pid()));
        pids
    }

    /// CPU seconds of master and workers so far.
    pub fn cpu_seconds(&self) -> f64 {
        procstat::cpu_seconds_of(&self.pids()).unwrap_or(f64::NAN)
    }

    /// Sum of the peak RSS of master and workers.
    pub fn peak_rss(&self) -> u64 {
        self.pids()
            .iter()
            .filter_map(|&pid| procstat::peak_rss(pid).ok())
            .sum()
    }

    pub fn log(&self) -> String {
        self.log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // Our own child, by its handle; SIGTERM is nginx's fast shutdown (workers follow).
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Requests the shadow nginx has answered so far (`stub_status`), not counting this query.
pub fn shadow_requests(netns: &Netns, address: SocketAddr) -> Result<u64> {
    let text = netns.run(|| -> Result<String> {
        let mut stream = tcp::connect(None, address, &ConnectOptions::default())?;
        write!(
            stream,
            "GET {STATUS_PATH} HTTP/1.1\r\nHost: status\r\nConnection: close\r\n\r\n"
        )?;
        let mut text = String::new();
        stream.read_to_string(&mut text)?;
        Ok(text)
    })??;
    // "... server accepts handled requests\n 1 1 1\n"
    let numbers = text
        .lines()
        .skip_while(|line| !line.contains("accepts handled requests"))
        .nth(1)
        .context("no counters in stub_status")?;
    let requests: u64 = numbers
        .split_whitespace()
        .nth(2)
        .context("no request count")?
        .parse()?;
    Ok(requests.saturating_sub(1))
}

/// `nginx -v`.
pub fn version() -> String {
    Command::new("nginx")
        .arg("-v")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stderr).trim().to_owned())
        .unwrap_or_else(|_| "nginx: not found".into())
        .replace("nginx version: ", "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shadow_counts_both_protocols_in_one_server() -> Result<()> {
        let text = config(
            &Role::Shadow {
                listen: "172.20.0.10:8080".parse()?,
                listen_h2: Some("172.20.0.10:8090".parse()?),
                listen_json: None,
                answer: ShadowAnswer::Text,
            },
            Path::new("/tmp/x"),
        );
        assert_eq!(text.matches("server {").count(), 1, "{text}");
        assert!(text.contains("listen 172.20.0.10:8090 http2 backlog=4096;"));
        assert!(text.contains(&format!("location = {STATUS_PATH} {{ stub_status; }}")));
        let plain = config(
            &Role::Shadow {
                listen: "172.20.0.10:8080".parse()?,
                listen_h2: None,
                listen_json: None,
                answer: ShadowAnswer::Text,
            },
            Path::new("/tmp/x"),
        );
        assert!(!plain.contains("http2"), "{plain}");
        Ok(())
    }

    #[test]
    fn the_shadow_answers_with_text_or_without_a_body() -> Result<()> {
        let shadow = |answer| -> Result<String> {
            Ok(config(
                &Role::Shadow {
                    listen: "172.20.0.10:8080".parse()?,
                    listen_h2: Some("172.20.0.10:8090".parse()?),
                    listen_json: None,
                    answer,
                },
                Path::new("/tmp/x"),
            ))
        };
        let text = shadow(ShadowAnswer::Text)?;
        assert!(
            text.contains("location / { return 200 \"shadow ok\\n\"; }"),
            "{text}"
        );
        let empty = shadow(ShadowAnswer::Empty)?;
        assert!(empty.contains("location / { return 204; }"), "{empty}");
        assert!(!empty.contains("shadow ok"), "{empty}");
        assert_eq!(ShadowAnswer::parse("empty"), Some(ShadowAnswer::Empty));
        assert_eq!(ShadowAnswer::parse("text"), Some(ShadowAnswer::Text));
        assert_eq!(ShadowAnswer::parse("204"), None);
        Ok(())
    }

    #[test]
    fn proxy_config_mirrors_to_every_shadow() -> Result<()> {
        let mirrors = [
            MirrorTo {
                name: "slow".into(),
                address: "172.20.0.10:8081".parse()?,
            },
            MirrorTo {
                name: "blackhole".into(),
                address: "172.20.0.10:8082".parse()?,
            },
        ];
        let text = config(
            &Role::Proxy {
                listen: "10.244.1.1:8888".parse()?,
                primary: "10.96.0.10:8080".parse()?,
                mirrors: &mirrors,
                workers: 2,
            },
            Path::new("/tmp/x"),
        );
        assert!(text.contains("mirror /__mirror_slow;"), "{text}");
        assert!(text.contains("mirror /__mirror_blackhole;"), "{text}");
        assert!(text.contains("upstream shadow_blackhole { server 172.20.0.10:8082;"));
        assert!(text.contains("proxy_set_header Host $host-shadow;"));
        Ok(())
    }

    #[test]
    fn primary_body_is_one_kib_over_both_protocols() {
        let text = config(
            &Role::Primary {
                listen: &["10.96.0.10:8080".parse().expect("address")],
                listen_h2: &["10.96.0.10:8090".parse().expect("address")],
                listen_json: &[],
            },
            Path::new("/tmp/x"),
        );
        // One server block: the same location answers both listeners.
        assert_eq!(text.matches("server {").count(), 1, "{text}");
        assert!(
            text.contains("listen 10.96.0.10:8080 backlog=4096;")
                && text.contains("listen 10.96.0.10:8090 http2 backlog=4096;"),
            "{text}"
        );
        let body = text
            .split("return 200 \"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_default();
        assert_eq!(body.replace("\\n", "\n").len(), BODY_BYTES);
        assert!(
            text.contains("add_header X-Sent-At $http_x_sent_at;"),
            "{text}"
        );
    }

    #[test]
    fn primary_and_shadow_serve_the_same_json_document_of_one_kib() -> Result<()> {
        let document = json_document();
        // As nginx sends it: `$request_id` is 32 hex digits.
        let sent = document.replace("$request_id", &"0f".repeat(16));
        assert_eq!(sent.len(), JSON_BYTES, "{sent}");
        let value: serde_json::Value = serde_json::from_str(&sent)?;
        assert_eq!(value["request_id"].as_str().map(str::len), Some(32));
        assert_eq!(value["items"].as_array().map(Vec::len), Some(6));
        // Single-quoted in the config: nothing that would end the string or interpolate.
        assert!(!document.contains('\'') && !document.contains('\\'));
        assert_eq!(document.matches('$').count(), 1);
        let server = format!("return 200 '{document}';");
        let primary = config(
            &Role::Primary {
                listen: &["10.96.0.10:8080".parse()?],
                listen_h2: &[],
                listen_json: &["10.96.0.10:8070".parse()?],
            },
            Path::new("/tmp/x"),
        );
        let shadow = config(
            &Role::Shadow {
                listen: "172.20.0.10:8080".parse()?,
                listen_h2: None,
                listen_json: Some("172.20.0.10:8070".parse()?),
                answer: ShadowAnswer::Text,
            },
            Path::new("/tmp/x"),
        );
        for (text, listen) in [
            (&primary, "listen 10.96.0.10:8070 backlog=4096;"),
            (&shadow, "listen 172.20.0.10:8070 backlog=4096;"),
        ] {
            assert_eq!(text.matches("server {").count(), 2, "{text}");
            assert!(text.contains(listen), "{text}");
            assert!(text.contains(&server), "{text}");
            assert!(text.contains("default_type application/json;"), "{text}");
        }
        Ok(())
    }
}
