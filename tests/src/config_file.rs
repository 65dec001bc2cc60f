//! A daemon config file the test changes while the daemon runs, laid out either as a plain file
//! or the way the kubelet mounts a ConfigMap:
//!
//! ```text
//!   <dir>/mirror.toml -> ..data/mirror.toml         (what the daemon is given)
//!   <dir>/..data -> ..2026_01_01_00_00_00.000000001
//!   <dir>/..2026_01_01_00_00_00.000000001/mirror.toml
//! ```
//!
//! [`ConfigFile::rewrite`] replaces the file the path resolves to (a new file renamed over it, so
//! a reader never sees it half-written); [`ConfigFile::swap`] updates a ConfigMap layout the
//! kubelet's way: a new timestamped directory, a new `..data_tmp` symlink to it renamed over
//! `..data` (one atomic step), then the old directory removed. Dropping it removes the directory.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};

use crate::names;

/// The file name the daemon is given.
pub const FILE_NAME: &str = "mirror.toml";
const DATA: &str = "..data";

/// How the file is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// `<dir>/mirror.toml`, a regular file.
    Plain,
    /// The kubelet's ConfigMap volume (see the module documentation).
    ConfigMap,
}

/// A config file in its own directory under the system's temp dir.
#[derive(Debug)]
pub struct ConfigFile {
    dir: PathBuf,
    layout: Layout,
    /// Timestamped directories made so far (ConfigMap layout), for unique names.
    versions: u32,
}

impl ConfigFile {
    /// A regular file holding `text`.
    pub fn plain(text: &str) -> Result<ConfigFile> {
        let config = ConfigFile::create_dir(Layout::Plain)?;
        std::fs::write(config.path(), text)
            .with_context(|| format!("writing {}", config.path().display()))?;
        Ok(config)
    }

    /// A ConfigMap volume whose `mirror.toml` holds `text`.
    pub fn config_map(text: &str) -> Result<ConfigFile> {
        let mut config = ConfigFile::create_dir(Layout::ConfigMap)?;
        let version = config.new_version(text)?;
        symlink(&version, config.dir.join(DATA)).context("creating ..data")?;
        symlink(Path::new(DATA).join(FILE_NAME), config.path())
            .with_context(|| format!("creating {}", config.path().display()))?;
        Ok(config)
    }

    fn create_dir(layout: Layout) -> Result<ConfigFile> {
        let dir = std::env::temp_dir().join(format!("{}-config", names::node_id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(ConfigFile {
            dir,
            layout,
            versions: 0,
        })
    }

    /// Makes the next timestamped directory holding `text`; returns its name (relative).
    fn new_version(&mut self, text: &str) -> Result<PathBuf> {
        self.versions += 1;
        let name = PathBuf::from(format!("..2026_01_01_00_00_00.{:09}", self.versions));
        let dir = self.dir.join(&name);
        std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::write(dir.join(FILE_NAME), text)
            .with_context(|| format!("writing {}", dir.display()))?;
        Ok(name)
    }

    /// The path the daemon is given (`<dir>/mirror.toml`).
    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// What the path reads now.
    pub fn text(&self) -> Result<String> {
        std::fs::read_to_string(self.path())
            .with_context(|| format!("reading {}", self.path().display()))
    }

    /// Replaces the file the path resolves to with one holding `text`: written beside it, then
    /// renamed over it.
    pub fn rewrite(&self, text: &str) -> Result<()> {
        let real = std::fs::canonicalize(self.path())
            .with_context(|| format!("resolving {}", self.path().display()))?;
        let parent = real.parent().context("the config file has no directory")?;
        let temporary = parent.join(format!(".{FILE_NAME}.tmp"));
        std::fs::write(&temporary, text)
            .with_context(|| format!("writing {}", temporary.display()))?;
        std::fs::rename(&temporary, &real)
            .with_context(|| format!("renaming over {}", real.display()))
    }

    /// The kubelet's ConfigMap update: `text` in a new timestamped directory, `..data` switched to
    /// it in one rename, the old directory removed.
    pub fn swap(&mut self, text: &str) -> Result<()> {
        ensure!(
            self.layout == Layout::ConfigMap,
            "swap needs the ConfigMap layout"
        );
        let data = self.dir.join(DATA);
        let old = std::fs::read_link(&data).context("reading ..data")?;
        let version = self.new_version(text)?;
        let data_tmp = self.dir.join("..data_tmp");
        symlink(&version, &data_tmp).context("creating ..data_tmp")?;
        std::fs::rename(&data_tmp, &data).context("renaming ..data_tmp over ..data")?;
        std::fs::remove_dir_all(self.dir.join(old)).context("removing the old version")
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_file_is_rewritten_in_one_rename() -> Result<()> {
        let config = ConfigFile::plain("a = 1\n")?;
        assert_eq!(config.text()?, "a = 1\n");
        config.rewrite("a = 2\n")?;
        assert_eq!(config.text()?, "a = 2\n");
        assert!(!config.path().is_symlink());
        let entries = std::fs::read_dir(&config.dir)?.count();
        assert_eq!(entries, 1, "no temporary file left behind");
        Ok(())
    }

    #[test]
    fn a_config_map_swaps_its_data_link_and_drops_the_old_version() -> Result<()> {
        let mut config = ConfigFile::config_map("a = 1\n")?;
        assert!(config.path().is_symlink());
        assert_eq!(
            std::fs::read_link(config.path())?,
            Path::new("..data/mirror.toml")
        );
        let first = std::fs::read_link(config.dir.join(DATA))?;
        config.swap("a = 2\n")?;
        assert_eq!(config.text()?, "a = 2\n");
        let second = std::fs::read_link(config.dir.join(DATA))?;
        assert_ne!(first, second);
        assert!(!config.dir.join(&first).exists(), "old version removed");
        assert!(!config.dir.join("..data_tmp").exists());
        // A rewrite goes to the file inside the current version; the links stay.
        config.rewrite("a = 3\n")?;
        assert_eq!(config.text()?, "a = 3\n");
        assert_eq!(std::fs::read_link(config.dir.join(DATA))?, second);
        let dir = config.dir.clone();
        drop(config);
        assert!(!dir.exists(), "removed on drop");
        Ok(())
    }

    #[test]
    fn a_plain_file_cannot_be_swapped() -> Result<()> {
        let mut config = ConfigFile::plain("")?;
        assert!(config.swap("a = 1\n").is_err());
        Ok(())
    }
}
