//! The Grafana dashboard of `deploy/monitoring/dashboard.json` as the tests read it: its panels'
//! queries and legends, its template variables, and the substitution Grafana makes before it
//! sends a query to Prometheus.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;

/// Where the dashboard lives in the workspace.
pub fn path() -> PathBuf {
    crate::environment::workspace().join("deploy/monitoring/dashboard.json")
}

/// Grafana's own variables a query may use: they are not defined in the dashboard.
pub const BUILT_IN_VARIABLES: &[&str] = &["__rate_interval", "__interval", "__range"];

/// One query of one panel.
#[derive(Clone, Debug)]
pub struct PanelQuery {
    pub panel: String,
    pub expr: String,
    pub legend: String,
}

impl PanelQuery {
    /// The labels the legend shows: `{{target}} {{outcome}}` -> target, outcome.
    pub fn legend_labels(&self) -> Vec<String> {
        let mut labels = Vec::new();
        let mut rest = self.legend.as_str();
        while let Some(start) = rest.find("{{") {
            let after = &rest[start + 2..];
            let Some(end) = after.find("}}") else { break };
            labels.push(after[..end].trim().to_owned());
            rest = &after[end + 2..];
        }
        labels
    }

    /// The `$name` and `${name}` variables the query uses.
    pub fn variables(&self) -> BTreeSet<String> {
        variables_in(&self.expr)
    }
}

/// A query variable: `label_values(selector, label)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryVariable {
    pub name: String,
    pub selector: String,
    pub label: String,
}

/// The dashboard, parsed.
#[derive(Debug)]
pub struct Dashboard {
    pub json: Value,
}

impl Dashboard {
    pub fn load(path: &Path) -> Result<Dashboard> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Ok(Dashboard {
            json: serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", path.display()))?,
        })
    }

    /// Every panel that is not a row (rows' nested panels included).
    pub fn panels(&self) -> Vec<&Value> {
        fn walk<'a>(panels: &'a Value, out: &mut Vec<&'a Value>) {
            for panel in panels.as_array().into_iter().flatten() {
                if panel["type"] == "row" {
                    walk(&panel["panels"], out);
                } else {
                    out.push(panel);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.json["panels"], &mut out);
        out
    }

    /// Every query of every panel.
    pub fn queries(&self) -> Result<Vec<PanelQuery>> {
        let mut queries = Vec::new();
        for panel in self.panels() {
            let title = panel["title"].as_str().context("a panel without a title")?;
            let targets = panel["targets"]
                .as_array()
                .with_context(|| format!("panel {title:?} has no targets"))?;
            for target in targets {
                queries.push(PanelQuery {
                    panel: title.to_owned(),
                    expr: target["expr"]
                        .as_str()
                        .with_context(|| format!("a query of panel {title:?} has no expr"))?
                        .to_owned(),
                    legend: target["legendFormat"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                });
            }
        }
        ensure!(!queries.is_empty(), "the dashboard has no queries");
        Ok(queries)
    }

    /// The template variables, in the order Grafana resolves them.
    pub fn variables(&self) -> Vec<&Value> {
        self.json["templating"]["list"]
            .as_array()
            .map(|list| list.iter().collect())
            .unwrap_or_default()
    }

    /// The `label_values(...)` variables, in order.
    pub fn query_variables(&self) -> Result<Vec<QueryVariable>> {
        self.variables()
            .into_iter()
            .filter(|v| v["type"] == "query")
            .map(|v| {
                let name = v["name"].as_str().context("a variable without a name")?;
                let query = v["query"]["query"]
                    .as_str()
                    .or_else(|| v["query"].as_str())
                    .with_context(|| format!("variable {name} has no query"))?;
                let (selector, label) = parse_label_values(query)
                    .with_context(|| format!("variable {name}: {query}"))?;
                Ok(QueryVariable {
                    name: name.to_owned(),
                    selector,
                    label,
                })
            })
            .collect()
    }
}

/// `label_values(selector, label)` taken apart.
fn parse_label_values(query: &str) -> Result<(String, String)> {
    let inner = query
        .trim()
        .strip_prefix("label_values(")
        .and_then(|rest| rest.strip_suffix(')'))
        .context("not label_values(selector, label)")?;
    let Some((selector, label)) = inner.rsplit_once(',') else {
        bail!("label_values without a selector");
    };
    Ok((selector.trim().to_owned(), label.trim().to_owned()))
}

/// The `$name` and `${name}` variables in `text`.
pub fn variables_in(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        rest = &rest[at + 1..];
        let (name, after) = match rest.strip_prefix('{') {
            Some(braced) => match braced.find('}') {
                Some(end) => (&braced[..end], &braced[end + 1..]),
                None => break,
            },
            None => {
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                (&rest[..end], &rest[end..])
            }
        };
        if !name.is_empty() {
            names.insert(name.to_owned());
        }
        rest = after;
    }
    names
}

/// `text` with `$name` and `${name}` replaced by `value`. Longer names go first, so `$target`
/// is not taken for `$t` followed by `arget`.
pub fn substitute(text: &str, values: &[(String, String)]) -> String {
    let mut ordered: Vec<&(String, String)> = values.iter().collect();
    ordered.sort_by_key(|(name, _)| std::cmp::Reverse(name.len()));
    let mut out = text.to_owned();
    for (name, value) in ordered {
        out = out
            .replace(&format!("${{{name}}}"), value)
            .replace(&format!("${name}"), value);
    }
    out
}

/// A multi-value variable as Grafana writes it into a Prometheus regex matcher: `(a|b)`, each
/// value regex-escaped.
pub fn regex_of(values: &[String]) -> String {
    let escaped: Vec<String> = values.iter().map(|v| regex_escape(v)).collect();
    if escaped.len() == 1 {
        escaped[0].clone()
    } else {
        format!("({})", escaped.join("|"))
    }
}

fn regex_escape(value: &str) -> String {
    let mut out = String::new();
    for c in value.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            // In a PromQL string a backslash is itself escaped.
            out.push_str("\\\\");
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legends_name_their_labels() {
        let query = PanelQuery {
            panel: "p".into(),
            expr: String::new(),
            legend: "{{target}} {{ outcome }} p99".into(),
        };
        assert_eq!(query.legend_labels(), ["target", "outcome"]);
    }

    #[test]
    fn variables_are_found_and_substituted_in_both_spellings() {
        let expr = r#"rate(x{instance=~"$instance", target=~"${target}"}[$__rate_interval])"#;
        assert_eq!(
            variables_in(expr).into_iter().collect::<Vec<_>>(),
            ["__rate_interval", "instance", "target"]
        );
        let values = [
            ("instance".to_owned(), "a".to_owned()),
            ("target".to_owned(), "(b|c)".to_owned()),
            ("__rate_interval".to_owned(), "1m".to_owned()),
        ];
        assert_eq!(
            substitute(expr, &values),
            r#"rate(x{instance=~"a", target=~"(b|c)"}[1m])"#
        );
    }

    #[test]
    fn label_values_queries_are_taken_apart() -> Result<()> {
        assert_eq!(
            parse_label_values(
                r#"label_values(mirror_copies_total{instance=~"$instance"}, target)"#
            )?,
            (
                r#"mirror_copies_total{instance=~"$instance"}"#.to_owned(),
                "target".to_owned()
            )
        );
        assert!(parse_label_values("query_result(up)").is_err());
        Ok(())
    }

    #[test]
    fn multiple_values_become_an_escaped_alternation() {
        assert_eq!(
            regex_of(&["10.0.0.1:15090".to_owned(), "b".to_owned()]),
            r"(10\\.0\\.0\\.1:15090|b)"
        );
        assert_eq!(regex_of(&["staging".to_owned()]), "staging");
    }
}
