//! What `deploy/monitoring` ships for operators, checked offline with Prometheus' own tool:
//! - `promtool check rules` accepts the alerting rules, in the plain file and in the
//!   `PrometheusRule` manifest, which holds the very same rules;
//! - `promtool test rules` (alerts-test.yaml) sees every alert fire and stay quiet, and fails
//!   when a threshold is broken, so a pass means something;
//! - the Grafana dashboard is importable (a Prometheus data source variable, every variable it
//!   uses defined) and has a panel for each family an operator opens first.
//!
//! No privileges needed. promtool comes from Debian's `prometheus` package, which `cargo xtask
//! setup` installs; without it these tests fail under `CI=true` and skip loudly otherwise. That
//! each dashboard query returns series from a real daemon is `operations_dashboard.rs`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use mirror_tests::command;
use mirror_tests::dashboard::{self, Dashboard, BUILT_IN_VARIABLES};
use mirror_tests::environment::{require_program, workspace};
use serde_norway::Value;

fn monitoring_dir() -> PathBuf {
    workspace().join("deploy/monitoring")
}

fn rules_file() -> PathBuf {
    monitoring_dir().join("alerts.yaml")
}

fn manifest_file() -> PathBuf {
    monitoring_dir().join("prometheus-rule.yaml")
}

fn rule_tests_file() -> PathBuf {
    monitoring_dir().join("alerts-test.yaml")
}

fn yaml(path: &Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_norway::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

fn promtool(test: &str) -> Option<String> {
    require_program(test, "promtool", "prometheus").map(|p| p.display().to_string())
}

/// A scratch directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Result<Self> {
        let path = std::env::temp_dir().join(format!(
            "mirror-monitoring-test-{}-{name}",
            std::process::id()
        ));
        std::fs::create_dir_all(&path)?;
        Ok(Self(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The alert names of a rules document (`groups: [{rules: [{alert: ...}]}]`).
fn alert_names(groups: &Value) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for group in groups.as_sequence().context("groups is not a list")? {
        for rule in group["rules"]
            .as_sequence()
            .context("rules is not a list")?
        {
            if let Some(name) = rule["alert"].as_str() {
                names.push(name.to_owned());
            }
        }
    }
    Ok(names)
}

#[test]
fn the_prometheus_rule_manifest_holds_exactly_the_plain_rules() -> Result<()> {
    let plain = yaml(&rules_file())?;
    let manifest = yaml(&manifest_file())?;
    assert_eq!(
        manifest["apiVersion"].as_str(),
        Some("monitoring.coreos.com/v1")
    );
    assert_eq!(manifest["kind"].as_str(), Some("PrometheusRule"));
    assert!(manifest["metadata"]["name"].as_str().is_some());
    // The same namespace as everything else in deploy/.
    let namespace: Value = yaml(&workspace().join("deploy/00-namespace.yaml"))?;
    assert_eq!(
        manifest["metadata"]["namespace"], namespace["metadata"]["name"],
        "the PrometheusRule's namespace"
    );
    let spec = manifest["spec"]
        .as_mapping()
        .context("the manifest has no spec")?;
    assert_eq!(
        spec.keys().filter_map(Value::as_str).collect::<Vec<_>>(),
        ["groups"],
        "the manifest's spec holds the groups and nothing else"
    );
    let plain_keys: Vec<&str> = plain
        .as_mapping()
        .context("alerts.yaml is not a mapping")?
        .keys()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(plain_keys, ["groups"]);
    assert!(
        manifest["spec"]["groups"] == plain["groups"],
        "deploy/monitoring/prometheus-rule.yaml's spec.groups differ from alerts.yaml's groups: \
         copy alerts.yaml's groups, indented by two spaces, under `spec:`"
    );
    Ok(())
}

#[test]
fn promtool_accepts_the_rules_in_both_files() -> Result<()> {
    let Some(promtool) = promtool("promtool_accepts_the_rules_in_both_files") else {
        return Ok(());
    };
    let alerts = alert_names(&yaml(&rules_file())?["groups"])?;
    ensure!(!alerts.is_empty(), "alerts.yaml has no alerting rule");
    // The manifest's spec as a rules file of its own: what the operator hands Prometheus.
    let scratch = TempDir::new("manifest-rules")?;
    let from_manifest = scratch.0.join("from-manifest.yaml");
    std::fs::write(
        &from_manifest,
        serde_norway::to_string(&yaml(&manifest_file())?["spec"])?,
    )?;
    for file in [rules_file(), from_manifest] {
        let output = command::output(&promtool, &["check", "rules", &file.display().to_string()])?;
        let said = format!("{}{}", output.stdout, output.stderr);
        assert!(
            output.success,
            "promtool check rules {}: {said}",
            file.display()
        );
        assert!(
            said.contains(&format!("SUCCESS: {} rules found", alerts.len())),
            "promtool found another number of rules than the {} alerts in {}: {said}",
            alerts.len(),
            file.display()
        );
    }
    Ok(())
}

/// Alert names each `alert_rule_test` of the rule tests expects to fire (non-empty `exp_alerts`)
/// and to be quiet (empty `exp_alerts`).
fn covered_both_ways(rule_tests: &Value) -> Result<(BTreeSet<String>, BTreeSet<String>)> {
    let (mut firing, mut quiet) = (BTreeSet::new(), BTreeSet::new());
    for test in rule_tests["tests"].as_sequence().context("no tests")? {
        for case in test["alert_rule_test"].as_sequence().into_iter().flatten() {
            let name = case["alertname"].as_str().context("alertname")?.to_owned();
            let expected = case["exp_alerts"].as_sequence().map_or(0, Vec::len);
            if expected > 0 {
                firing.insert(name);
            } else {
                quiet.insert(name);
            }
        }
    }
    Ok((firing, quiet))
}

#[test]
fn promtool_sees_every_alert_fire_and_stay_quiet() -> Result<()> {
    let Some(promtool) = promtool("promtool_sees_every_alert_fire_and_stay_quiet") else {
        return Ok(());
    };
    let alerts: BTreeSet<String> = alert_names(&yaml(&rules_file())?["groups"])?
        .into_iter()
        .collect();
    let rule_tests = yaml(&rule_tests_file())?;
    assert_eq!(
        rule_tests["rule_files"].as_sequence().map(|f| f.len()),
        Some(1)
    );
    assert_eq!(rule_tests["rule_files"][0].as_str(), Some("alerts.yaml"));
    let (firing, quiet) = covered_both_ways(&rule_tests)?;
    assert_eq!(firing, alerts, "alerts with a case where they fire");
    assert_eq!(quiet, alerts, "alerts with a case where they stay quiet");

    let output = command::output(
        &promtool,
        &["test", "rules", &rule_tests_file().display().to_string()],
    )?;
    let said = format!("{}{}", output.stdout, output.stderr);
    assert!(
        output.success && said.contains("SUCCESS"),
        "promtool test rules: {said}"
    );
    Ok(())
}

#[test]
fn promtool_rule_tests_fail_when_a_threshold_is_broken() -> Result<()> {
    let Some(promtool) = promtool("promtool_rule_tests_fail_when_a_threshold_is_broken") else {
        return Ok(());
    };
    // The drop share's bound raised tenfold: the case where 10 % of the copies are dropped must
    // now go unnoticed, and promtool must say so.
    let rules = std::fs::read_to_string(rules_file())?;
    let bound = "    > 0.05\n";
    ensure!(
        rules.matches(bound).count() >= 1,
        "alerts.yaml no longer has a `> 0.05` bound"
    );
    let scratch = TempDir::new("broken-rules")?;
    std::fs::write(
        scratch.0.join("alerts.yaml"),
        rules.replace(bound, "    > 0.5\n"),
    )?;
    let rule_tests = scratch.0.join("alerts-test.yaml");
    std::fs::copy(rule_tests_file(), &rule_tests)?;
    let output = command::output(
        &promtool,
        &["test", "rules", &rule_tests.display().to_string()],
    )?;
    let said = format!("{}{}", output.stdout, output.stderr);
    assert!(
        said.contains("FAILED") && said.contains("MirrorCopiesDropped"),
        "promtool test rules passed with a broken threshold: {said}"
    );
    Ok(())
}

#[test]
fn the_dashboard_is_importable_and_every_variable_it_uses_is_defined() -> Result<()> {
    let dashboard = Dashboard::load(&dashboard::path())?;
    let json = &dashboard.json;
    assert!(json["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(json["uid"].as_str().is_some_and(|u| !u.is_empty()));
    assert!(json["schemaVersion"].as_u64().is_some_and(|v| v >= 30));
    // No `id`: an imported dashboard gets one from the Grafana it lands in.
    assert!(json["id"].is_null(), "a dashboard to import carries no id");

    let variables = dashboard.variables();
    let datasource = variables
        .iter()
        .find(|v| v["type"] == "datasource")
        .context("no data source variable")?;
    assert_eq!(datasource["query"].as_str(), Some("prometheus"));
    let datasource_uid = format!("${{{}}}", datasource["name"].as_str().unwrap_or_default());
    let defined: BTreeSet<&str> = variables
        .iter()
        .filter_map(|v| v["name"].as_str())
        .chain(BUILT_IN_VARIABLES.iter().copied())
        .collect();

    let mut ids = BTreeSet::new();
    for panel in dashboard.panels() {
        let title = panel["title"].as_str().unwrap_or("?");
        assert!(
            ids.insert(panel["id"].as_u64().context("a panel without an id")?),
            "panel {title:?} reuses an id"
        );
        assert_eq!(
            panel["datasource"]["uid"].as_str(),
            Some(datasource_uid.as_str()),
            "panel {title:?} does not use the data source variable"
        );
        assert!(
            panel["description"].as_str().is_some_and(|d| !d.is_empty()),
            "panel {title:?} does not say what it shows"
        );
    }
    for query in dashboard.queries()? {
        for variable in query.variables() {
            assert!(
                defined.contains(variable.as_str()),
                "panel {:?} uses ${variable}, which the dashboard does not define",
                query.panel
            );
        }
        assert!(
            !query.legend.is_empty(),
            "a query of panel {:?} has no legend",
            query.panel
        );
    }
    for variable in dashboard.query_variables()? {
        assert!(
            dashboard::variables_in(&variable.selector)
                .iter()
                .all(|v| defined.contains(v.as_str())),
            "variable {} uses an undefined variable",
            variable.name
        );
    }
    Ok(())
}

#[test]
fn the_dashboard_shows_each_family_an_operator_opens_first() -> Result<()> {
    let queries = Dashboard::load(&dashboard::path())?.queries()?;
    let wanted = [
        "mirror_intercepted_connections_total",
        "mirror_relayed_bytes_total",
        "mirror_copies_total",
        "mirror_shadow_responses_total",
        "mirror_shadow_errors_total",
        "mirror_shadow_latency_seconds_bucket",
        "mirror_tunnelled_connections_total",
        "mirror_attached_interfaces",
        "mirror_config_reloads_total",
        "mirror_kernel_events_total",
        "mirror_ready",
        "mirror_comparisons_total",
        "mirror_answer_latency_seconds_bucket",
    ];
    let missing: Vec<&str> = wanted
        .iter()
        .copied()
        .filter(|family| {
            !queries
                .iter()
                .any(|q| q.expr.contains(&format!("{family}{{")))
        })
        .collect();
    assert!(missing.is_empty(), "no panel queries {missing:?}");
    // Copies by outcome and target, drops by cause, answers by class: the legends say which.
    let legend_of = |family: &str, labels: &[&str]| {
        queries.iter().any(|q| {
            q.expr.contains(family)
                && labels
                    .iter()
                    .all(|l| q.legend_labels().iter().any(|have| have == l))
        })
    };
    assert!(legend_of("mirror_copies_total", &["target", "outcome"]));
    assert!(legend_of(
        "mirror_shadow_responses_total",
        &["target", "class"]
    ));
    assert!(legend_of("mirror_shadow_errors_total", &["target", "kind"]));
    assert!(legend_of("mirror_tunnelled_connections_total", &["reason"]));
    assert!(legend_of("mirror_kernel_events_total", &["event"]));
    assert!(legend_of("mirror_config_reloads_total", &["result"]));
    assert!(legend_of(
        "mirror_comparisons_total",
        &["rule", "target", "verdict"]
    ));
    assert!(legend_of(
        "mirror_answer_latency_seconds_bucket",
        &["rule", "target", "side"]
    ));
    assert!(
        queries
            .iter()
            .any(|q| q.expr.starts_with("histogram_quantile(0.99, ")),
        "no p99 of the shadow latency"
    );
    Ok(())
}
