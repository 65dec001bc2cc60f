//! A private APT for fetching Debian packages without installing them and without touching the
//! system's configuration: its own sources list, lists, cache and (empty) dpkg status under
//! `<target>/vm/apt`, given to every `apt-get`/`apt-cache` call with `-c`.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant, SystemTime},
};

use anyhow::{bail, Context, Result};

use crate::cmd;

pub const DEBIAN_MIRROR: &str = "http://deb.debian.org/debian";
pub const DEBIAN_SECURITY_MIRROR: &str = "http://deb.debian.org/debian-security";
/// Package lists older than this are refreshed.
const LISTS_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

pub struct Apt {
    root: PathBuf,
    config: PathBuf,
}

/// The one line of `sources.list` for `suite`.
pub fn source_line(suite: &str) -> String {
    let mirror = if suite.ends_with("-security") {
        DEBIAN_SECURITY_MIRROR
    } else {
        DEBIAN_MIRROR
    };
    format!("deb {mirror} {suite} main\n")
}

impl Apt {
    /// Prepares the private configuration at `root` for `suites`.
    pub fn new(root: &Path, suites: &[&str]) -> Result<Self> {
        for dir in [
            "lists/partial",
            "cache/archives/partial",
            "sources.list.d",
            "preferences.d",
        ] {
            fs::create_dir_all(root.join(dir))?;
        }
        let status = root.join("status");
        if !status.exists() {
            fs::write(&status, "")?;
        }
        let mut suites: Vec<&str> = suites.to_vec();
        suites.sort_unstable();
        suites.dedup();
        let sources: String = suites.iter().map(|s| source_line(s)).collect();
        write_if_changed(&root.join("sources.list"), &sources)?;
        let r = root.display();
        let config = format!(
            "// Written by cargo xtask vm-test: a private APT that never touches the system's.\n\
             Dir::Etc::SourceList \"{r}/sources.list\";\n\
             Dir::Etc::SourceParts \"{r}/sources.list.d\";\n\
             Dir::Etc::Preferences \"{r}/preferences\";\n\
             Dir::Etc::PreferencesParts \"{r}/preferences.d\";\n\
             Dir::State::Lists \"{r}/lists\";\n\
             Dir::State::status \"{r}/status\";\n\
             Dir::Cache \"{r}/cache\";\n\
             Dir::Cache::pkgcache \"\";\n\
             Dir::Cache::srcpkgcache \"\";\n\
             APT::Architecture \"amd64\";\n\
             APT::Architectures {{ \"amd64\"; }};\n\
             APT::Sandbox::User \"root\";\n\
             Acquire::Languages \"none\";\n\
             Acquire::IndexTargets::deb::DEP-11::DefaultEnabled \"false\";\n\
             Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled \"false\";\n\
             Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled \"false\";\n\
             Acquire::IndexTargets::deb::DEP-11-icons-hidpi::DefaultEnabled \"false\";\n\
             Acquire::IndexTargets::deb::CNF::DefaultEnabled \"false\";\n"
        );
        let config_path = root.join("apt.conf");
        write_if_changed(&config_path, &config)?;
        Ok(Self {
            root: root.to_path_buf(),
            config: config_path,
        })
    }

    /// Where apt's own output goes; the console gets one line per update or download.
    fn log(&self) -> PathBuf {
        self.root.join("apt.log")
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command
            .arg("-c")
            .arg(&self.config)
            .env("DEBIAN_FRONTEND", "noninteractive");
        command
    }

    /// Refreshes the package lists when they are missing, older than a day, or were made for
    /// other suites (or always, with `force`). When refreshing fails but lists exist, warns and
    /// goes on with them.
    pub fn update(&self, force: bool) -> Result<()> {
        let stamp = self.root.join("lists.stamp");
        let sources = fs::read_to_string(self.root.join("sources.list"))?;
        let fresh = fs::read_to_string(&stamp).is_ok_and(|s| s == sources)
            && stamp
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .is_some_and(|age| age < LISTS_MAX_AGE);
        if fresh && !force {
            eprintln!("vm: package lists are less than a day old (--refresh to update them)");
            return Ok(());
        }
        let started = Instant::now();
        let mut update = self.command("apt-get");
        update.args(["-q", "update"]);
        eprintln!(
            "vm: updating the kernels' package lists (output in {})",
            self.log().display()
        );
        match cmd::run_logged(&mut update, &self.log()) {
            Ok(()) => {
                fs::write(&stamp, sources)?;
                eprintln!(
                    "vm: package lists updated in {:.1} s",
                    started.elapsed().as_secs_f64()
                );
                Ok(())
            }
            Err(error) if stamp.exists() => {
                eprintln!(
                    "vm: warning: refreshing the kernels' package lists failed; the kernels \
                     resolved last time are used, so the run is valid but may miss a kernel \
                     Debian published since (retry with --refresh): {error:#}"
                );
                Ok(())
            }
            Err(error) => Err(error),
        }
    }

    /// The newest version of `package` in one of `suites`.
    pub fn newest(&self, package: &str, suites: &[&str]) -> Result<Option<String>> {
        let mut madison = self.command("apt-cache");
        madison.args(["madison", package]);
        let output = cmd::probe(&mut madison).unwrap_or_default();
        Ok(newest_in_suites(&output, suites))
    }

    /// `apt-cache show package=version`: the stanza's fields.
    pub fn show(&self, package: &str, version: &str) -> Result<Stanza> {
        let mut show = self.command("apt-cache");
        show.args(["show", &format!("{package}={version}")]);
        let output = cmd::probe(&mut show)
            .with_context(|| format!("apt-cache knows no {package}={version}"))?;
        Ok(Stanza::parse(&output))
    }

    /// Downloads `package=version` into `dir` unless it is there; returns the file and whether
    /// it was downloaded now.
    pub fn download(&self, package: &str, version: &str, dir: &Path) -> Result<(PathBuf, bool)> {
        let stanza = self.show(package, version)?;
        let arch = stanza.get("Architecture").unwrap_or("amd64");
        let file = dir.join(deb_file_name(package, version, arch));
        if file.is_file() {
            return Ok((file, false));
        }
        fs::create_dir_all(dir)?;
        let size = stanza
            .get("Size")
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0);
        let started = Instant::now();
        let mut download = self.command("apt-get");
        download
            .args(["-q", "download", &format!("{package}={version}")])
            .current_dir(dir);
        cmd::run_logged(&mut download, &self.log())?;
        if !file.is_file() {
            bail!(
                "apt-get download succeeded but {} is missing",
                file.display()
            );
        }
        eprintln!(
            "vm: downloaded {package} {version}: {:.1} MB in {:.1} s",
            size as f64 / 1e6,
            started.elapsed().as_secs_f64()
        );
        Ok((file, true))
    }
}

fn write_if_changed(path: &Path, contents: &str) -> Result<()> {
    if fs::read_to_string(path).ok().as_deref() != Some(contents) {
        fs::write(path, contents).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// The name `apt-get download` gives a package's file (an epoch's `:` becomes `%3a`).
pub fn deb_file_name(package: &str, version: &str, arch: &str) -> String {
    format!("{package}_{}_{arch}.deb", version.replace(':', "%3a"))
}

/// From `apt-cache madison` output (newest first), the first version served by one of `suites`.
pub fn newest_in_suites(madison: &str, suites: &[&str]) -> Option<String> {
    madison.lines().find_map(|line| {
        let mut fields = line.split('|').map(str::trim);
        let (_package, version, source) = (fields.next()?, fields.next()?, fields.next()?);
        // "http://deb.debian.org/debian bookworm/main amd64 Packages"
        let suite = source.split_whitespace().nth(1)?.split('/').next()?;
        suites.contains(&suite).then(|| version.to_owned())
    })
}

/// One `apt-cache show` stanza (the first, when several are printed).
pub struct Stanza {
    fields: Vec<(String, String)>,
}

impl Stanza {
    pub fn parse(text: &str) -> Self {
        let mut fields: Vec<(String, String)> = Vec::new();
        for line in text.lines() {
            if line.is_empty() {
                break;
            }
            if line.starts_with([' ', '\t']) {
                if let Some((_, value)) = fields.last_mut() {
                    value.push('\n');
                    value.push_str(line.trim());
                }
            } else if let Some((key, value)) = line.split_once(':') {
                fields.push((key.to_owned(), value.trim().to_owned()));
            }
        }
        Self { fields }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Dependencies pinned to one version (`name (= version)`), from Depends.
    pub fn exact_depends(&self) -> Vec<(String, String)> {
        let Some(depends) = self.get("Depends") else {
            return Vec::new();
        };
        depends
            .split(',')
            .filter(|d| !d.contains('|'))
            .filter_map(|d| {
                let (name, rest) = d.trim().split_once(' ')?;
                let version = rest.trim().strip_prefix("(=")?.strip_suffix(')')?.trim();
                Some((name.to_owned(), version.to_owned()))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MADISON: &str = "\
linux-image-cloud-amd64 | 7.2.12-1~bpo13+1 | http://deb.debian.org/debian trixie-backports/main amd64 Packages
linux-image-cloud-amd64 | 6.12.117-1 | http://deb.debian.org/debian-security trixie-security/main amd64 Packages
linux-image-cloud-amd64 | 6.12.107-1 | http://deb.debian.org/debian trixie/main amd64 Packages
linux-image-cloud-amd64 |  6.1.192-2 | http://deb.debian.org/debian-security bookworm-security/main amd64 Packages
linux-image-cloud-amd64 |  6.1.176-1 | http://deb.debian.org/debian bookworm/main amd64 Packages
";

    #[test]
    fn newest_version_is_taken_from_the_wanted_suites_only() {
        assert_eq!(
            newest_in_suites(MADISON, &["bookworm", "bookworm-security"]).as_deref(),
            Some("6.1.192-2")
        );
        assert_eq!(
            newest_in_suites(MADISON, &["trixie", "trixie-security"]).as_deref(),
            Some("6.12.117-1")
        );
        assert_eq!(newest_in_suites(MADISON, &["bullseye"]), None);
    }

    #[test]
    fn exact_dependencies_are_read_from_the_first_stanza() {
        let stanza = Stanza::parse(
            "Package: linux-image-7.2.12+deb13-cloud-amd64\nVersion: 7.2.12-1~bpo13+1\n\
             Depends: dracut | initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool, \
             linux-binary-7.2.12+deb13-cloud-amd64 (= 7.2.12-1~bpo13+1), kmod, \
             linux-modules-7.2.12+deb13-cloud-amd64 (= 7.2.12-1~bpo13+1)\nSize: 1924\n\n\
             Package: other\nVersion: 1\n",
        );
        assert_eq!(stanza.get("Size"), Some("1924"));
        assert_eq!(
            stanza.exact_depends(),
            vec![
                (
                    "linux-binary-7.2.12+deb13-cloud-amd64".to_owned(),
                    "7.2.12-1~bpo13+1".to_owned()
                ),
                (
                    "linux-modules-7.2.12+deb13-cloud-amd64".to_owned(),
                    "7.2.12-1~bpo13+1".to_owned()
                ),
            ]
        );
    }

    #[test]
    fn file_names_escape_the_epoch() {
        assert_eq!(
            deb_file_name("busybox-static", "1:1.35.0-4+deb12u1+b1", "amd64"),
            "busybox-static_1%3a1.35.0-4+deb12u1+b1_amd64.deb"
        );
        assert_eq!(
            source_line("bookworm-security"),
            "deb http://deb.debian.org/debian-security bookworm-security main\n"
        );
    }
}
