//! The Grafana dashboard and the alerting rules of `deploy/monitoring` against a real Prometheus
//! (Debian's `prometheus`) scraping the daemon on the simulated node: after traffic that gives
//! every panel something to show (copies to a healthy and to an unreachable shadow, a tunnelled
//! connection, a failed and a successful reload; every copy's answer compared with the
//! primary's), each of the dashboard's queries, with its
//! variables resolved the way Grafana resolves them, returns series carrying the labels its
//! legend shows, and the rules Prometheus evaluates raise exactly the alerts that traffic calls
//! for.
//!
//! Prometheus runs in the node's namespace (where the daemon's admin endpoint listens on
//! loopback), with its own data directory and a free port; it is killed and its directory
//! removed when the test ends, also on failure.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use mirror_tests::dashboard::{self, Dashboard};
use mirror_tests::environment::{require_daemon, require_program, workspace};
use mirror_tests::metrics::Metrics;
use mirror_tests::node::{Family, SHADOW_V4};
use mirror_tests::prometheus::{Prometheus, Series, JOB};
use mirror_tests::scenario::{Mirroring, PRIMARY_PORT, TARGET};
use mirror_tests::tcp::{self, first_difference, write_while_reading};
use mirror_tests::{wait, Behaviour, Client, MirrorRule, Request, Server, ShadowTarget};

const HOST: &str = "orders.prod:8080";
/// A shadow target where nothing listens: every copy to it fails to connect.
const UNREACHABLE_TARGET: &str = "unreachable";
/// An intercepted port with an echo server, for a connection that is tunnelled.
const TLS_PORT: u16 = 8443;
/// What the test puts for Grafana's `$__rate_interval` (Grafana's own value with the usual 15 s
/// scrape interval): the traffic below happens within it.
const RATE_INTERVAL: &str = "1m";
/// Enough for Prometheus (scraping every second) to catch up with the daemon, and for its rules
/// (evaluated every second) to react.
const CATCH_UP: Duration = Duration::from_secs(20);

/// `/api/` requests go to both targets; anything else matches no rule.
fn config() -> mirror_tests::DaemonConfig {
    let nowhere = SocketAddr::new(SHADOW_V4.into(), 9);
    mirror_tests::DaemonConfig::intercepting_primary(&[PRIMARY_PORT])
        .drain_timeout("2s")
        .intercept("10.96.0.0/24", &[TLS_PORT])
        .shadow_target(Mirroring::target())
        .shadow_target(
            ShadowTarget::new(UNREACHABLE_TARGET, nowhere)
                .connect_timeout("200ms")
                .request_timeout("500ms"),
        )
        .mirror_rule(
            MirrorRule::to(&[TARGET, UNREACHABLE_TARGET])
                .path_prefix("/api/")
                .compare(100),
        )
}

/// An alert as the test compares them: name, `target` label (empty for none), state.
type Raised = (String, String, String);

/// A sample of the daemon's own scrape, for comparing with what Prometheus holds.
fn daemon_value(metrics: &Metrics, name: &str, labels: &[(&str, &str)]) -> Result<f64> {
    metrics
        .get(name, labels)
        .with_context(|| format!("the daemon exposes no {name}{labels:?}"))
}

/// Prometheus' value of `selector` (one series), if it has one.
fn prometheus_value(prometheus: &Prometheus, selector: &str) -> Result<Option<f64>> {
    let series = prometheus.query(selector)?;
    Ok(match series.as_slice() {
        [one] => Some(one.value),
        _ => None,
    })
}

#[test]
fn every_dashboard_query_returns_series_with_its_legend_labels_from_a_real_prometheus() -> Result<()>
{
    let test = "every_dashboard_query_returns_series_with_its_legend_labels_from_a_real_prometheus";
    let Some(binary) = require_daemon(test) else {
        return Ok(());
    };
    let Some(prometheus_binary) = require_program(test, "prometheus", "prometheus") else {
        return Ok(());
    };
    let setup = Mirroring::start(&binary, Behaviour::Normal, &config())?;
    let primary_node = setup.node.primary();
    let tls_echo = Server::echo(
        primary_node.netns(),
        primary_node.addr(Family::V4, TLS_PORT),
    )?;
    let admin = setup.daemon.admin_address();
    let prometheus = Prometheus::start(
        &prometheus_binary,
        setup.node.netns(),
        admin,
        &[workspace().join("deploy/monitoring/alerts.yaml")],
    )?;
    let instance = admin.to_string();
    // Scraping before the traffic starts, so that rates cover it.
    wait::until("Prometheus to scrape the ready daemon", CATCH_UP, || {
        let ready = prometheus_value(
            &prometheus,
            &format!(r#"mirror_ready{{job="{JOB}", instance="{instance}"}}"#),
        )?;
        Ok(if ready == Some(1.0) {
            Ok(())
        } else {
            Err(ready)
        })
    })?;

    // Mirrored copies: 12 requests under /api/, each copied to both targets.
    let primary = setup.primary_address(Family::V4);
    let mut client = Client::connect(setup.pod(), primary)?;
    for n in 0..10 {
        client.exchange_checked(&Request::get(HOST, &format!("/api/orders/{n}")))?;
    }
    for n in 0..2 {
        client.exchange_checked(&Request::post(
            HOST,
            "/api/orders",
            format!("{{\"n\":{n}}}").as_bytes(),
        ))?;
    }
    // Requests no rule matches.
    for n in 0..3 {
        client.exchange_checked(&Request::get(HOST, &format!("/static/{n}")))?;
    }
    drop(client);
    // A tunnelled connection.
    let payload = Arc::new(tcp::tls_looking_stream(2048, b"")?);
    let echoed = write_while_reading(
        setup.pod().connect(tls_echo.address())?,
        Arc::clone(&payload),
    )?;
    ensure!(
        first_difference(&payload, &echoed).is_none(),
        "the tunnelled stream came back changed"
    );
    // A reload that fails, then one that succeeds (the file is watched).
    let config_path = setup
        .daemon
        .config_path()
        .context("the daemon runs a config file")?
        .to_path_buf();
    let good = std::fs::read_to_string(&config_path)?;
    std::fs::write(&config_path, "[relay]\nno_such_key = 1\n")?;
    wait::until("the daemon to count a failed reload", CATCH_UP, || {
        let failures = setup.daemon.metrics()?.config_reloads("failure")?;
        Ok(if failures >= 1 { Ok(()) } else { Err(failures) })
    })?;
    std::fs::write(
        &config_path,
        format!("# reloaded by the dashboard test\n{good}"),
    )?;
    wait::until("the daemon to count a successful reload", CATCH_UP, || {
        let successes = setup.daemon.metrics()?.config_reloads("success")?;
        Ok(if successes >= 1 {
            Ok(())
        } else {
            Err(successes)
        })
    })?;
    // Every copy has ended: answered by staging, failed for the unreachable target.
    wait::until("every copy to end", CATCH_UP, || {
        let metrics = setup.daemon.metrics()?;
        let answered = metrics.shadow_responses(TARGET, "2xx")?;
        let failed = metrics.shadow_errors(UNREACHABLE_TARGET, "connect")?
            + metrics.shadow_errors(UNREACHABLE_TARGET, "timeout")?;
        Ok(if answered == 12 && failed == 12 {
            Ok(())
        } else {
            Err((answered, failed))
        })
    })?;

    // Prometheus has caught up with the daemon's own counters.
    let settled = setup.daemon.metrics()?;
    let watched = [
        (
            "mirror_shadow_responses_total",
            vec![("target", TARGET), ("class", "2xx")],
        ),
        (
            "mirror_copies_total",
            vec![("target", UNREACHABLE_TARGET), ("outcome", "mirrored")],
        ),
        ("mirror_config_reloads_total", vec![("result", "success")]),
        (
            "mirror_tunnelled_connections_total",
            vec![("reason", "tls")],
        ),
        ("mirror_intercepted_connections_total", vec![]),
    ];
    for (name, labels) in &watched {
        let expected = daemon_value(&settled, name, labels)?;
        let selector = format!(
            "{name}{{instance=\"{instance}\"{}}}",
            labels
                .iter()
                .map(|(k, v)| format!(", {k}=\"{v}\""))
                .collect::<String>()
        );
        wait::until(
            &format!("Prometheus to see {selector} = {expected}"),
            CATCH_UP,
            || {
                let seen = prometheus_value(&prometheus, &selector)?;
                Ok(if seen == Some(expected) {
                    Ok(())
                } else {
                    Err(seen)
                })
            },
        )?;
    }

    // The variables, resolved by asking Prometheus as Grafana does.
    let dashboard = Dashboard::load(&dashboard::path())?;
    let mut values = vec![("__rate_interval".to_owned(), RATE_INTERVAL.to_owned())];
    for variable in dashboard.query_variables()? {
        let selector = dashboard::substitute(&variable.selector, &values);
        let found = prometheus.label_values(&variable.label, &selector)?;
        ensure!(
            !found.is_empty(),
            "variable {} (label_values({selector}, {})) lists nothing",
            variable.name,
            variable.label
        );
        values.push((variable.name.clone(), dashboard::regex_of(&found)));
    }
    assert!(
        values.contains(&(
            "instance".to_owned(),
            dashboard::regex_of(std::slice::from_ref(&instance))
        )),
        "the instance variable lists the daemon: {values:?}"
    );

    // Every query of every panel.
    let mut failures = Vec::new();
    let queries = dashboard.queries()?;
    for query in &queries {
        let expr = dashboard::substitute(&query.expr, &values);
        let series: Vec<Series> = match prometheus.query(&expr) {
            Ok(series) => series,
            Err(error) => {
                failures.push(format!("{:?}: {expr}: {error:#}", query.panel));
                continue;
            }
        };
        let legend = query.legend_labels();
        let unlabelled: Vec<&Series> = series
            .iter()
            .filter(|s| !legend.iter().all(|l| s.labels.contains_key(l)))
            .collect();
        if series.is_empty() {
            failures.push(format!("{:?}: no series for {expr}", query.panel));
        } else if !unlabelled.is_empty() {
            failures.push(format!(
                "{:?}: series without the legend's labels {legend:?}: {unlabelled:?} ({expr})",
                query.panel
            ));
        } else if !series.iter().any(|s| s.value.is_finite()) {
            failures.push(format!(
                "{:?}: only NaN or infinite values: {series:?} ({expr})",
                query.panel
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} dashboard queries failed:\n{}",
        failures.len(),
        queries.len(),
        failures.join("\n")
    );

    // The rules load, and raise what this traffic calls for: the unreachable target's errors
    // (pending for their 10 minutes) and the failed reload. Copies to the unreachable target
    // may also be dropped (a body with no connection to go to), so MirrorCopiesDropped may be
    // pending for it; nothing may concern the healthy target or the daemon itself.
    wait::until("every alerting rule to be evaluated", CATCH_UP, || {
        let rules = prometheus.alerting_rules()?;
        Ok(
            if !rules.is_empty() && rules.values().all(|(health, _)| health == "ok") {
                Ok(())
            } else {
                Err(rules)
            },
        )
    })?;
    let required: BTreeSet<Raised> = [
        ("MirrorShadowErrors", UNREACHABLE_TARGET, "pending"),
        ("MirrorConfigReloadFailed", "", "firing"),
    ]
    .iter()
    .map(|(a, t, s)| ((*a).to_owned(), (*t).to_owned(), (*s).to_owned()))
    .collect();
    let allowed = |(alert, target, state): &Raised| {
        required.contains(&(alert.clone(), target.clone(), state.clone()))
            || (alert == "MirrorCopiesDropped"
                && target == UNREACHABLE_TARGET
                && state == "pending")
    };
    let raised = wait::until("the expected alerts", CATCH_UP, || {
        let raised: BTreeSet<Raised> = prometheus
            .alerts()?
            .into_iter()
            .map(|alert| {
                let label = |k: &str| alert.labels.get(k).cloned().unwrap_or_default();
                (label("alertname"), label("target"), alert.state)
            })
            .collect();
        Ok(if raised.is_superset(&required) {
            Ok(raised)
        } else {
            Err(raised)
        })
    })?;
    let unexpected: Vec<&Raised> = raised.iter().filter(|r| !allowed(r)).collect();
    assert!(
        unexpected.is_empty(),
        "alerts this traffic does not call for: {unexpected:?} (all: {raised:?})"
    );
    Ok(())
}
