//! Settings the [`crate::DaemonConfig`] builder has no method for (resource limits such as
//! `relay.max_connections`, `mirror.max_buffered_bytes`, `mirror.framing.*`), added to the TOML
//! text it renders.

use anyhow::{ensure, Result};

/// `text` (as rendered by [`crate::DaemonConfig::to_toml`]) with `lines` (`key = value`) added to
/// table `table` (`"relay"`, `"mirror"`, `"mirror.framing"`): after the table's header when the
/// text has one, else as a new table placed before `[admin]` (so ahead of the `[[mirror.…]]`
/// arrays the builder writes after it).
pub fn with_settings(text: &str, table: &str, lines: &[&str]) -> Result<String> {
    let header = format!("[{table}]\n");
    let body: String = lines.iter().map(|line| format!("{line}\n")).collect();
    if let Some(position) = find_header(text, &header) {
        let at = position + header.len();
        return Ok(format!("{}{body}{}", &text[..at], &text[at..]));
    }
    let admin = "\n[admin]\n";
    let at = text.find(admin);
    ensure!(
        at.is_some(),
        "no [{table}] and no [admin] table to put it before in:\n{text}"
    );
    let at = at.unwrap_or_default();
    Ok(format!("{}\n{header}{body}{}", &text[..at], &text[at..]))
}

/// Where the line `header` starts (at the start of the text or of a line).
fn find_header(text: &str, header: &str) -> Option<usize> {
    if text.starts_with(header) {
        return Some(0);
    }
    text.find(&format!("\n{header}")).map(|at| at + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DaemonConfig;

    #[test]
    fn settings_go_into_existing_and_new_tables() -> Result<()> {
        let base = DaemonConfig::intercepting_primary(&[8080]).to_toml();
        let text = with_settings(&base, "relay", &["max_connections = 50"])?;
        let text = with_settings(&text, "mirror", &["max_buffered_bytes = 8388608"])?;
        let text = with_settings(&text, "mirror.framing", &["max_header_bytes = 4096"])?;
        let text = with_settings(&text, "interception", &["watchdog_timeout = \"1s\""])?;
        let value: toml::Table = toml::from_str(&text)?;
        assert_eq!(value["relay"]["max_connections"].as_integer(), Some(50));
        assert_eq!(
            value["mirror"]["max_buffered_bytes"].as_integer(),
            Some(8 << 20)
        );
        assert_eq!(
            value["mirror"]["framing"]["max_header_bytes"].as_integer(),
            Some(4096)
        );
        assert_eq!(
            value["interception"]["watchdog_timeout"].as_str(),
            Some("1s")
        );
        assert_eq!(
            value["interception"]["rules"].as_array().map(Vec::len),
            Some(2)
        );
        Ok(())
    }
}
