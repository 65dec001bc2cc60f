//! A directory for a test's files (a server's recording, a tool's output, a document root),
//! named after the namespace it serves and removed on drop.

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
        let path = std::env::temp_dir().join(format!(
            "{}-{label}-{}",
            netns.name(),
            crate::names::next_sequence()
        ));
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
