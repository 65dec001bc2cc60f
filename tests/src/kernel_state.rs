//! A snapshot of everything the daemon may add to the node's kernel state, for before/after
//! comparison: qdiscs, tc filters, TCX and sk_lookup attachments, policy rules, routes, bpffs pins,
//! and `mirror_*` programs that no process holds any more.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

use anyhow::Result;

use crate::bpf;
use crate::command;
use crate::netns::Netns;
use crate::node::parse_links;

/// Where bpffs is commonly mounted.
const BPFFS_ROOTS: [&str; 2] = ["/sys/fs/bpf", "/bpf"];

/// Section holding [`WATCHED_SYSCTLS`].
pub const SYSCTLS: &str = "sysctls";

/// Node sysctls that interception could plausibly touch.
const WATCHED_SYSCTLS: [&str; 10] = [
    "net.ipv4.tcp_early_demux",
    "net.ipv4.ip_early_demux",
    "net.ipv4.ip_forward",
    "net.ipv6.conf.all.forwarding",
    "net.ipv4.conf.all.src_valid_mark",
    "net.ipv4.tcp_fwmark_accept",
    "net.ipv4.conf.all.route_localnet",
    "net.ipv4.conf.all.rp_filter",
    "net.ipv4.ip_nonlocal_bind",
    "net.ipv6.ip_nonlocal_bind",
];

/// Named sections of text, each the output of one query.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelState {
    sections: BTreeMap<String, String>,
}

impl KernelState {
    /// Captures the state of the `node` namespace (plus the machine-wide bpffs and orphaned
    /// programs, which have no namespace).
    pub fn capture(node: &Netns) -> Result<KernelState> {
        let mut state = KernelState::default();
        let links = parse_links(&node.ip(&["-o", "link", "show"])?)?;
        state.add("links", node.ip(&["-o", "link", "show"])?);
        state.add("qdiscs", capture_tc(node, &["qdisc", "show"])?);
        for link in &links {
            for direction in ["ingress", "egress"] {
                state.add(
                    &format!("tc filters {} {direction}", link.name),
                    capture_tc(node, &["filter", "show", "dev", &link.name, direction])?,
                );
            }
        }
        let tcx = node.run(|| {
            let mut sections = Vec::new();
            for link in &links {
                for (direction, attach_type) in [
                    ("ingress", bpf::ATTACH_TCX_INGRESS),
                    ("egress", bpf::ATTACH_TCX_EGRESS),
                ] {
                    let text = match bpf::query_tcx(link.index, attach_type) {
                        Ok(attached) => format!("{attached:?}"),
                        Err(error) => format!("query failed: {error}"),
                    };
                    sections.push((format!("tcx {} {direction}", link.name), text));
                }
            }
            sections
        })?;
        for (name, text) in tcx {
            state.add(&name, text);
        }
        state.add(
            "sk_lookup",
            match bpf::query_sk_lookup(&node.path()) {
                Ok(attached) => format!("{attached:?}"),
                Err(error) => format!("query failed: {error}"),
            },
        );
        state.add("bpftool net", node.exec("bpftool", &["net", "show"])?);
        state.add("rules v4", node.ip(&["-4", "rule", "show"])?);
        state.add("rules v6", node.ip(&["-6", "rule", "show"])?);
        state.add(
            "routes v4",
            node.ip(&["-4", "route", "show", "table", "all"])?,
        );
        state.add(
            "routes v6",
            node.ip(&["-6", "route", "show", "table", "all"])?,
        );
        for root in BPFFS_ROOTS {
            state.add(&format!("files {root}"), list_files(Path::new(root)));
        }
        state.add(
            "orphaned mirror programs",
            orphaned_mirror_programs(
                &command::run("bpftool", &["prog", "show"])?,
                &programs_held_by_processes(),
            )
            .join("\n"),
        );
        let sysctls: Vec<String> = node.run(|| {
            WATCHED_SYSCTLS
                .iter()
                .map(|key| {
                    let path = Path::new("/proc/sys").join(key.replace('.', "/"));
                    let value = std::fs::read_to_string(path)
                        .map_or_else(|error| format!("({error})"), |v| v.trim().to_owned());
                    format!("{key} = {value}")
                })
                .collect()
        })?;
        state.add(SYSCTLS, sysctls.join("\n"));
        Ok(state)
    }

    fn add(&mut self, name: &str, text: String) {
        self.sections.insert(name.to_owned(), text);
    }

    /// The text of one section.
    pub fn section(&self, name: &str) -> Option<&str> {
        self.sections.get(name).map(String::as_str)
    }

    /// What differs from `before` (`self` being the later state): per section, lines that
    /// appeared and lines that disappeared.
    pub fn diff(&self, before: &KernelState) -> StateDiff {
        let mut sections = Vec::new();
        let names: BTreeSet<&String> = self.sections.keys().chain(before.sections.keys()).collect();
        for name in names {
            let old = before.sections.get(name).map(String::as_str).unwrap_or("");
            let new = self.sections.get(name).map(String::as_str).unwrap_or("");
            if old == new {
                continue;
            }
            let old_lines: Vec<&str> = old.lines().collect();
            let new_lines: Vec<&str> = new.lines().collect();
            sections.push(SectionDiff {
                section: name.clone(),
                added: new_lines
                    .iter()
                    .filter(|line| !old_lines.contains(line))
                    .map(|line| (*line).to_owned())
                    .collect(),
                removed: old_lines
                    .iter()
                    .filter(|line| !new_lines.contains(line))
                    .map(|line| (*line).to_owned())
                    .collect(),
            });
        }
        StateDiff { sections }
    }
}

impl fmt::Display for KernelState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, text) in &self.sections {
            writeln!(f, "== {name}")?;
            for line in text.lines() {
                writeln!(f, "   {line}")?;
            }
        }
        Ok(())
    }
}

/// Differences between two snapshots.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StateDiff {
    pub sections: Vec<SectionDiff>,
}

/// Differences in one section. A section that only changed line order has both lists empty.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SectionDiff {
    pub section: String,
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

impl StateDiff {
    /// Whether the snapshots were identical.
    pub fn is_empty(&self) -> bool {
        self.sections.is_empty()
    }

    /// The same differences minus one section.
    pub fn without(mut self, section: &str) -> StateDiff {
        self.sections.retain(|diff| diff.section != section);
        self
    }

    /// Whether the named section differs.
    pub fn touches(&self, section: &str) -> bool {
        self.sections.iter().any(|diff| diff.section == section)
    }
}

impl fmt::Display for StateDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.sections.is_empty() {
            return writeln!(f, "(no difference)");
        }
        for diff in &self.sections {
            writeln!(f, "== {}", diff.section)?;
            for line in &diff.added {
                writeln!(f, " + {line}")?;
            }
            for line in &diff.removed {
                writeln!(f, " - {line}")?;
            }
        }
        Ok(())
    }
}

/// `tc -n <ns> args...`; its stderr is kept in the snapshot rather than failing it (a link without
/// a clsact qdisc answers some queries with an error, which is state too).
fn capture_tc(node: &Netns, args: &[&str]) -> Result<String> {
    let mut full = vec!["-n", node.name()];
    full.extend_from_slice(args);
    let output = command::output("tc", &full)?;
    Ok(if output.success {
        output.stdout
    } else {
        format!("error: {}", output.stderr.trim())
    })
}

/// Every path under `root`, sorted, or a note that there is no such directory.
fn list_files(root: &Path) -> String {
    if !root.is_dir() {
        return "(absent)".to_owned();
    }
    let mut paths = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(directory) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&directory) else {
            paths.push(format!("{} (unreadable)", directory.display()));
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                pending.push(path.clone());
            }
            paths.push(path.display().to_string());
        }
    }
    paths.sort();
    paths.join("\n")
}

/// Ids of the BPF programs some process holds: through a program fd or a link fd, both of whose
/// `/proc/<pid>/fdinfo` entries carry `prog_id:`. (This `bpftool` may lack the `pids` feature.)
pub fn programs_held_by_processes() -> BTreeSet<u32> {
    let mut held = BTreeSet::new();
    let Ok(processes) = std::fs::read_dir("/proc") else {
        return held;
    };
    for process in processes.flatten() {
        if !process
            .file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit())
        {
            continue;
        }
        // Processes come and go while we look: whatever cannot be read is skipped.
        let Ok(fds) = std::fs::read_dir(process.path().join("fdinfo")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(info) = std::fs::read_to_string(fd.path()) {
                held.extend(
                    info.lines()
                        .filter_map(|line| line.strip_prefix("prog_id:"))
                        .filter_map(|id| id.trim().parse::<u32>().ok()),
                );
            }
        }
    }
    held
}

/// The `mirror_*` programs in `bpftool prog show` output that no process holds: after the daemon
/// has exited, those are leaks (a netlink filter or a pin keeps them). Programs a live process
/// holds are skipped, so a daemon some other run has running does not count against this one.
pub fn orphaned_mirror_programs(bpftool_prog_show: &str, held: &BTreeSet<u32>) -> Vec<String> {
    bpftool_prog_show
        .lines()
        .filter_map(|line| {
            let (id, rest) = line.split_once(':')?;
            let id: u32 = id.parse().ok()?;
            let is_mirror = rest
                .split_whitespace()
                .skip_while(|word| *word != "name")
                .nth(1)
                .is_some_and(|name| name.starts_with("mirror_"));
            (is_mirror && !held.contains(&id)).then(|| line.trim().to_owned())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROG_SHOW: &str = "\
12: sched_cls  name mirror_tc_ingre  tag 0123456789abcdef  gpl
\tloaded_at 2026-01-01T00:00:00+0000  uid 0
\txlated 512B  jited 300B  memlock 4096B  map_ids 3,4
\tpids mirror-daemon(4242)
13: sk_lookup  name mirror_sk_looku  tag 0123456789abcdef  gpl
\tloaded_at 2026-01-01T00:00:00+0000  uid 0
14: cgroup_skb  name other_prog  tag 0123456789abcdef  gpl
15: sched_cls  name mirror_tc_ingre  tag 0123456789abcdef  gpl
";

    #[test]
    fn only_unheld_mirror_programs_are_orphans() {
        let held = BTreeSet::from([12, 14]);
        let orphans = orphaned_mirror_programs(PROG_SHOW, &held);
        assert_eq!(orphans.len(), 2, "{orphans:?}");
        assert!(orphans[0].starts_with("13: sk_lookup"));
        assert!(orphans[1].starts_with("15: sched_cls"));
    }

    #[test]
    fn diff_names_added_and_removed_lines() {
        let mut before = KernelState::default();
        before.add(
            "rules v4",
            "0: from all lookup local\n32766: from all lookup main".into(),
        );
        before.add("qdiscs", "qdisc noqueue 0: dev lo root".into());
        let mut after = before.clone();
        after.add(
            "rules v4",
            "0: from all lookup local\n100: from all fwmark 0x1/0x1 lookup 100".into(),
        );
        let diff = after.diff(&before);
        assert!(diff.touches("rules v4"));
        assert!(!diff.touches("qdiscs"));
        assert_eq!(
            diff.sections[0].added,
            vec!["100: from all fwmark 0x1/0x1 lookup 100"]
        );
        assert_eq!(
            diff.sections[0].removed,
            vec!["32766: from all lookup main"]
        );
        assert!(before.diff(&before).is_empty());
        assert!(diff.to_string().contains("+ 100: from all fwmark"));
    }
}
