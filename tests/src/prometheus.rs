//! A real Prometheus (Debian's `prometheus` package) for the tests: started inside a network
//! namespace, where the daemon's admin endpoint is, scraping it every second into a data
//! directory of its own, and queried through its HTTP API. Dropping it kills the process and
//! removes the directory (its log is printed when the test fails).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::netns::Netns;
use crate::tcp::{self, ConnectOptions};
use crate::{http, wait};

/// How often Prometheus scrapes the daemon and evaluates its rules.
pub const SCRAPE_INTERVAL: Duration = Duration::from_secs(1);
/// The scrape job's name (the `job` label of every series).
pub const JOB: &str = "mirror";
/// Prometheus 2.42 takes about a second to open its storage and serve.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// One series of an instant query's answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// One alert as `/api/v1/alerts` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Alert {
    pub labels: BTreeMap<String, String>,
    /// `pending` or `firing`.
    pub state: String,
}

/// A running Prometheus.
pub struct Prometheus {
    child: Child,
    netns: Netns,
    address: SocketAddr,
    dir: PathBuf,
    log: Arc<Mutex<String>>,
}

impl Prometheus {
    /// Starts `binary` in `netns`, scraping `/metrics` at `scraped` (an address in that
    /// namespace) every [`SCRAPE_INTERVAL`] and evaluating `rule_files`, and waits until it
    /// serves.
    pub fn start(
        binary: &Path,
        netns: &Netns,
        scraped: SocketAddr,
        rule_files: &[PathBuf],
    ) -> Result<Prometheus> {
        let dir = std::env::temp_dir().join(format!(
            "{}-prometheus-{}",
            netns.name(),
            crate::names::next_sequence()
        ));
        std::fs::create_dir_all(&dir)?;
        let started = Self::spawn(binary, netns, scraped, rule_files, &dir);
        let mut prometheus = match started {
            Ok(prometheus) => prometheus,
            Err(error) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(error);
            }
        };
        prometheus.wait_ready()?;
        Ok(prometheus)
    }

    fn spawn(
        binary: &Path,
        netns: &Netns,
        scraped: SocketAddr,
        rule_files: &[PathBuf],
        dir: &Path,
    ) -> Result<Prometheus> {
        let config = dir.join("prometheus.yml");
        std::fs::write(&config, config_text(scraped, rule_files))?;
        // A port free in the test's own namespace: nothing else binds there meanwhile.
        let port = netns
            .run(|| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).and_then(|l| l.local_addr()))??;
        let address = SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port.port());
        let mut child = Command::new("ip")
            .args(["netns", "exec", netns.name()])
            .arg(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={address}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot start `ip netns exec … prometheus`")?;
        let log = Arc::new(Mutex::new(String::new()));
        if let Some(stderr) = child.stderr.take() {
            let log = Arc::clone(&log);
            thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let mut log = log
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    log.push_str(&line);
                    log.push('\n');
                }
            });
        }
        Ok(Prometheus {
            child,
            netns: netns.clone(),
            address,
            dir: dir.to_path_buf(),
            log,
        })
    }

    fn wait_ready(&mut self) -> Result<()> {
        wait::until("Prometheus to serve", READY_TIMEOUT, || {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "prometheus exited ({status}) before it served; log:\n{}",
                    self.log()
                );
            }
            Ok(match self.get("/-/ready") {
                Ok(response) if response.status == 200 => Ok(()),
                Ok(response) => Err(format!("/-/ready answered {}", response.status)),
                Err(error) => Err(format!("{error:#}")),
            })
        })
    }

    /// Everything Prometheus logged so far.
    pub fn log(&self) -> String {
        self.log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// `GET path_and_query` on Prometheus' web address, from a socket in its namespace.
    pub fn get(&self, path_and_query: &str) -> Result<http::Response> {
        let address = self.address;
        let options = ConnectOptions {
            connect_timeout: Duration::from_secs(2),
            io_timeout: Duration::from_secs(10),
            ..ConnectOptions::default()
        };
        let mut stream = self.netns.run(|| tcp::connect(None, address, &options))??;
        http::get(&mut stream, &address.to_string(), path_and_query)
    }

    /// `GET /api/v1/<endpoint>`: the `data` of a `success` answer.
    fn api(&self, endpoint_and_query: &str) -> Result<Value> {
        let response = self.get(&format!("/api/v1/{endpoint_and_query}"))?;
        let body: Value = serde_json::from_slice(&response.body).with_context(|| {
            format!(
                "Prometheus answered /api/v1/{endpoint_and_query} with {} and no JSON: {}",
                response.status,
                response.text()
            )
        })?;
        if response.status != 200 || body["status"] != "success" {
            bail!(
                "Prometheus refused /api/v1/{endpoint_and_query} ({}): {} {}",
                response.status,
                body["errorType"],
                body["error"]
            );
        }
        Ok(body["data"].clone())
    }

    /// An instant query now; fails unless its result is a vector (or a scalar, as one series
    /// without labels).
    pub fn query(&self, promql: &str) -> Result<Vec<Series>> {
        let data = self.api(&format!("query?query={}", url_encode(promql)))?;
        parse_vector(&data).with_context(|| format!("the answer to {promql}"))
    }

    /// The values of `label` on series matching `selector`: what a Grafana variable's
    /// `label_values(selector, label)` lists.
    pub fn label_values(&self, label: &str, selector: &str) -> Result<Vec<String>> {
        let data = self.api(&format!(
            "label/{}/values?match[]={}",
            url_encode(label),
            url_encode(selector)
        ))?;
        data.as_array()
            .context("label values are not a list")?
            .iter()
            .map(|v| v.as_str().map(str::to_owned).context("a label value"))
            .collect()
    }

    /// Pending and firing alerts.
    pub fn alerts(&self) -> Result<Vec<Alert>> {
        let data = self.api("alerts")?;
        data["alerts"]
            .as_array()
            .context("no alert list")?
            .iter()
            .map(|alert| {
                Ok(Alert {
                    labels: string_map(&alert["labels"])?,
                    state: alert["state"].as_str().context("alert state")?.to_owned(),
                })
            })
            .collect()
    }

    /// Each alerting rule loaded, with its health (`ok`, `err`, `unknown`) and last error.
    pub fn alerting_rules(&self) -> Result<BTreeMap<String, (String, String)>> {
        let data = self.api("rules?type=alert")?;
        let mut rules = BTreeMap::new();
        for group in data["groups"].as_array().context("no rule groups")? {
            for rule in group["rules"].as_array().context("no rules")? {
                rules.insert(
                    rule["name"].as_str().context("rule name")?.to_owned(),
                    (
                        rule["health"].as_str().unwrap_or_default().to_owned(),
                        rule["lastError"].as_str().unwrap_or_default().to_owned(),
                    ),
                );
            }
        }
        Ok(rules)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        // `ip netns exec` execs Prometheus in place: the child is Prometheus itself.
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!(
                "---- prometheus log ----\n{}---- end of prometheus log ----",
                self.log()
            );
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// prometheus.yml: one job scraping `scraped` every [`SCRAPE_INTERVAL`], rules evaluated as often.
fn config_text(scraped: SocketAddr, rule_files: &[PathBuf]) -> String {
    let interval = format!("{}s", SCRAPE_INTERVAL.as_secs());
    let rules: String = rule_files
        .iter()
        .map(|file| format!("  - {}\n", yaml_string(&file.display().to_string())))
        .collect();
    format!(
        "global:\n  scrape_interval: {interval}\n  scrape_timeout: {interval}\n  \
         evaluation_interval: {interval}\nrule_files:\n{rules}scrape_configs:\n  \
         - job_name: {JOB}\n    static_configs:\n      - targets: [{}]\n",
        yaml_string(&scraped.to_string())
    )
}

/// A double-quoted YAML scalar.
fn yaml_string(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

/// `value` with every byte but RFC 3986's unreserved characters percent-encoded.
pub fn url_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

fn string_map(value: &Value) -> Result<BTreeMap<String, String>> {
    value
        .as_object()
        .context("not a label set")?
        .iter()
        .map(|(k, v)| Ok((k.clone(), v.as_str().context("a label value")?.to_owned())))
        .collect()
}

/// A sample's value as the API writes it: a string, which may be `NaN` or `+Inf`.
fn sample_value(pair: &Value) -> Result<f64> {
    let text = pair
        .get(1)
        .and_then(Value::as_str)
        .context("a sample without a value")?;
    text.parse()
        .with_context(|| format!("sample value {text:?}"))
}

fn parse_vector(data: &Value) -> Result<Vec<Series>> {
    match data["resultType"].as_str() {
        Some("vector") => data["result"]
            .as_array()
            .context("a vector without results")?
            .iter()
            .map(|series| {
                Ok(Series {
                    labels: string_map(&series["metric"])?,
                    value: sample_value(&series["value"])?,
                })
            })
            .collect(),
        Some("scalar") => Ok(vec![Series {
            labels: BTreeMap::new(),
            value: sample_value(&data["result"])?,
        }]),
        other => bail!("expected a vector, got {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_percent_encoded() {
        assert_eq!(
            url_encode(r#"sum by (le) (rate(x{a=~"b|c"}[1m]))"#),
            "sum%20by%20%28le%29%20%28rate%28x%7Ba%3D~%22b%7Cc%22%7D%5B1m%5D%29%29"
        );
    }

    #[test]
    fn the_config_scrapes_one_target_and_loads_the_rules() {
        let text = config_text(
            "127.0.0.1:15090".parse().expect("an address"),
            &[PathBuf::from("/w/deploy/monitoring/alerts.yaml")],
        );
        assert!(text.contains("  scrape_interval: 1s\n"));
        assert!(text.contains("rule_files:\n  - \"/w/deploy/monitoring/alerts.yaml\"\n"));
        assert!(text.contains("      - targets: [\"127.0.0.1:15090\"]\n"));
    }

    #[test]
    fn vectors_keep_labels_and_read_nan() -> Result<()> {
        let data: Value = serde_json::from_str(
            r#"{"resultType":"vector","result":[
                {"metric":{"target":"staging"},"value":[1.5,"0.25"]},
                {"metric":{},"value":[1.5,"NaN"]}]}"#,
        )?;
        let series = parse_vector(&data)?;
        assert_eq!(series[0].labels["target"], "staging");
        assert_eq!(series[0].value, 0.25);
        assert!(series[1].value.is_nan());
        let matrix: Value = serde_json::from_str(r#"{"resultType":"matrix","result":[]}"#)?;
        assert!(parse_vector(&matrix).is_err());
        Ok(())
    }
}
