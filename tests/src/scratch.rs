//! A directory for a test's files (a server's recording, a tool's output, a document root, a
//! bench's copy of the daemon), named in the harness's scheme (`mt<pid>-…`) and removed on drop;
//! and the sweep of those a killed run left behind.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::netns::Netns;

/// An owned directory under the system's temporary directory.
#[derive(Debug)]
pub struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    /// Creates `<tmp>/<namespace>-<label>-<sequence>`.
    pub fn new(netns: &Netns, label: &str) -> Result<ScratchDir> {
        Self::create(&format!(
            "{}-{label}-{}",
            netns.name(),
            crate::names::next_sequence()
        ))
    }

    /// Creates `<tmp>/mt<pid>-<label>`: one per process and label (a bench's or restart
    /// bench's work directory).
    pub fn for_process(label: &str) -> Result<ScratchDir> {
        Self::create(&format!(
            "{}{}-{label}",
            crate::names::NAMESPACE_PREFIX,
            std::process::id()
        ))
    }

    /// Creates `<tmp>/<name>`.
    fn create(name: &str) -> Result<ScratchDir> {
        let path = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(ScratchDir { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A path inside it.
    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Removes the directories under the system's temporary directory that runs of the harness left
/// behind when they were killed (their pid, in the name, is gone): a bench's work directory holds
/// a copy of the daemon, some 80 MB. Only names of the harness's own scheme are touched.
pub fn remove_stale_dirs() -> Result<()> {
    let tmp = std::env::temp_dir();
    let entries =
        std::fs::read_dir(&tmp).with_context(|| format!("cannot list {}", tmp.display()))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = crate::names::left_by_dead_run(&name) else {
            continue;
        };
        if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            eprintln!("mirror-tests: removing {name} left by dead process {pid}");
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    Ok(())
}
