//! The kernel matrix: which Debian kernels, fetched through the private APT, unpacked once into
//! `<target>/vm/kernels/<package>_<version>/`, and the modules the guest needs, decompressed.

use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{bail, Context, Result};

use super::apt::Apt;
use crate::cmd;

/// One entry of the matrix: a Debian release's cloud kernel.
#[derive(Debug, Clone, Copy)]
pub struct KernelSpec {
    /// What a user types (`cargo xtask vm-test 6.1`) and the summary shows.
    pub name: &'static str,
    /// The suites whose newest `linux-image-cloud-amd64` is taken.
    pub suites: &'static [&'static str],
    pub about: &'static str,
    /// In the default matrix.
    pub default: bool,
}

/// The metapackage that depends on a suite's current cloud kernel.
const META_PACKAGE: &str = "linux-image-cloud-amd64";

pub const MATRIX: &[KernelSpec] = &[
    KernelSpec {
        name: "5.10",
        suites: &["bullseye", "bullseye-updates", "bullseye-security"],
        about: "Debian 11; the oldest kernel the programs are tried on",
        default: true,
    },
    KernelSpec {
        name: "6.1",
        suites: &["bookworm", "bookworm-updates", "bookworm-security"],
        about: "Debian 12; no TCX, the daemon attaches through the clsact qdisc",
        default: true,
    },
    KernelSpec {
        name: "6.12",
        suites: &["trixie", "trixie-updates", "trixie-security"],
        about: "Debian 13; TCX",
        default: true,
    },
    KernelSpec {
        name: "newest",
        suites: &["trixie-backports"],
        about: "Debian 13 backports' newest kernel",
        default: true,
    },
];

/// Where busybox-static comes from (a static binary: any suite's works on any kernel).
pub const BUSYBOX_SUITES: &[&str] = &["bookworm", "bookworm-updates", "bookworm-security"];

pub fn spec(name: &str) -> Result<KernelSpec> {
    MATRIX
        .iter()
        .find(|s| s.name == name)
        .copied()
        .with_context(|| {
            let names: Vec<_> = MATRIX.iter().map(|s| s.name).collect();
            format!("unknown kernel {name:?}; known: {}", names.join(", "))
        })
}

/// A kernel unpacked on the host.
#[derive(Debug, Clone)]
pub struct Kernel {
    pub spec: KernelSpec,
    /// The image package and version (`linux-image-6.1.0-56-cloud-amd64 6.1.192-2`).
    pub package: String,
    pub version: String,
    pub dir: PathBuf,
    pub vmlinuz: PathBuf,
    /// `uname -r`.
    pub release: String,
    /// `<dir>/[usr/]lib/modules/<release>`.
    pub modules: PathBuf,
}

/// Resolves `spec` to its newest kernel, downloads and unpacks it unless already cached. With
/// no package lists to resolve it (offline), falls back to the last kernel unpacked for it.
pub fn fetch(apt: &Apt, spec: KernelSpec, vm_dir: &Path) -> Result<Kernel> {
    let kernels = vm_dir.join("kernels");
    fs::create_dir_all(&kernels)?;
    let last = kernels.join(format!("{}.last", spec.name));
    let Some(meta_version) = apt.newest(META_PACKAGE, spec.suites)? else {
        if let Ok(dir) = fs::read_to_string(&last) {
            let dir = kernels.join(dir.trim());
            if dir.join(".complete").exists() {
                eprintln!(
                    "vm: {}: not in the package lists; using the cached {}",
                    spec.name,
                    dir.display()
                );
                return unpacked(spec, &dir);
            }
        }
        bail!(
            "no {META_PACKAGE} in {} (are the package lists there?)",
            spec.suites.join(", ")
        );
    };

    // The metapackage pins the image; from 6.19 the image pins linux-binary-*/linux-modules-*.
    let meta = apt.show(META_PACKAGE, &meta_version)?;
    let mut queue: VecDeque<(String, String)> = meta
        .exact_depends()
        .into_iter()
        .filter(|(name, _)| name.starts_with("linux-image-"))
        .collect();
    let (package, version) = queue
        .front()
        .cloned()
        .with_context(|| format!("{META_PACKAGE} {meta_version} names no linux-image package"))?;
    let dir_name = format!("{package}_{version}");
    let dir = kernels.join(&dir_name);
    if !dir.join(".complete").exists() {
        let mut seen = BTreeSet::new();
        let mut debs = Vec::new();
        while let Some((name, version)) = queue.pop_front() {
            if !seen.insert(name.clone()) {
                continue;
            }
            let (deb, _) = apt.download(&name, &version, &vm_dir.join("debs"))?;
            debs.push(deb);
            for dep in apt.show(&name, &version)?.exact_depends() {
                if dep.0.starts_with("linux-") && !dep.0.starts_with("linux-base") {
                    queue.push_back(dep);
                }
            }
        }
        if dir.exists() {
            fs::remove_dir_all(&dir)?;
        }
        fs::create_dir_all(&dir)?;
        let started = Instant::now();
        for deb in &debs {
            cmd::run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(&dir))?;
        }
        fs::write(dir.join(".complete"), format!("{package} {version}\n"))?;
        eprintln!(
            "vm: {}: unpacked {package} {version} in {:.1} s",
            spec.name,
            started.elapsed().as_secs_f64()
        );
    } else {
        eprintln!("vm: {}: {package} {version} (cached)", spec.name);
    }
    fs::write(&last, &dir_name)?;
    unpacked(spec, &dir)
}

fn unpacked(spec: KernelSpec, dir: &Path) -> Result<Kernel> {
    let stamp = fs::read_to_string(dir.join(".complete"))?;
    let (package, version) = stamp
        .trim()
        .split_once(' ')
        .context("malformed .complete stamp")?;
    let (vmlinuz, release) = find_vmlinuz(dir)?;
    let modules = ["usr/lib/modules", "lib/modules"]
        .iter()
        .map(|m| dir.join(m).join(&release))
        .find(|m| m.is_dir())
        .with_context(|| format!("no modules for {release} in {}", dir.display()))?;
    Ok(Kernel {
        spec,
        package: package.to_owned(),
        version: version.to_owned(),
        dir: dir.to_path_buf(),
        vmlinuz,
        release,
        modules,
    })
}

/// The kernel image and its release (`uname -r`): `boot/vmlinuz-<release>`, or from 6.19's
/// split packages `usr/lib/modules/<release>/vmlinuz`.
fn find_vmlinuz(dir: &Path) -> Result<(PathBuf, String)> {
    let entries = |sub: &str| -> Vec<PathBuf> {
        fs::read_dir(dir.join(sub))
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default()
    };
    for path in entries("boot") {
        if let Some(release) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("vmlinuz-"))
        {
            return Ok((path.clone(), release.to_owned()));
        }
    }
    for modules in ["usr/lib/modules", "lib/modules"] {
        for path in entries(modules) {
            let vmlinuz = path.join("vmlinuz");
            if let (true, Some(release)) =
                (vmlinuz.is_file(), path.file_name().and_then(|n| n.to_str()))
            {
                return Ok((vmlinuz, release.to_owned()));
            }
        }
    }
    bail!(
        "no boot/vmlinuz-* nor usr/lib/modules/*/vmlinuz in {}",
        dir.display()
    )
}

/// Modules the tests need whichever subsystem asks: the pod veths, tc (clsact, cls_bpf,
/// act_bpf), and iptables/nftables (the harness blackholes a shadow with `iptables`). Modules a
/// kernel has built in are simply not found. Everything below these directories is included too,
/// so the kernel can load what a new test needs on demand.
pub const WANTED_MODULES: &[&str] = &["veth", "sch_ingress", "cls_bpf", "act_bpf"];
const WANTED_DIRS: &[&str] = &[
    "kernel/net/sched",
    "kernel/net/netfilter",
    "kernel/net/ipv4/netfilter",
    "kernel/net/ipv6/netfilter",
];
const EXTRA_MODULES: &[&str] = &["dummy"];

/// A module decompressed for the guest: its path relative to the modules directory (`.ko`).
pub struct GuestModule {
    pub relative: PathBuf,
    pub host: PathBuf,
}

/// The guest's modules, decompressed (cached under `<kernel dir>/guest-modules`), with their
/// dependencies.
pub fn guest_modules(kernel: &Kernel) -> Result<Vec<GuestModule>> {
    let all = index_modules(&kernel.modules)?;
    let mut wanted: Vec<String> = WANTED_MODULES
        .iter()
        .chain(EXTRA_MODULES)
        .map(|m| module_name(m))
        .filter(|m| all.contains_key(m))
        .collect();
    for (name, relative) in &all {
        if WANTED_DIRS.iter().any(|d| relative.starts_with(d)) {
            wanted.push(name.clone());
        }
    }
    let cache = kernel.dir.join("guest-modules");
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    while let Some(name) = wanted.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        let Some(relative) = all.get(&name) else {
            continue;
        };
        let plain = strip_compression(relative);
        let host = cache.join(&plain);
        if !host.is_file() {
            decompress(&kernel.modules.join(relative), &host)?;
        }
        let data = fs::read(&host)?;
        for dep in modinfo_field(&data, "depends") {
            wanted.extend(dep.split(',').filter(|d| !d.is_empty()).map(module_name));
        }
        out.push(GuestModule {
            relative: plain,
            host,
        });
    }
    out.sort_by(|a, b| a.relative.cmp(&b.relative));
    Ok(out)
}

/// Module name (as `depends=` spells it: `-` as `_`) → path relative to the modules directory.
fn index_modules(modules: &Path) -> Result<BTreeMap<String, PathBuf>> {
    let mut index = BTreeMap::new();
    let mut stack = vec![modules.join("kernel")];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Some(name) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.split_once(".ko"))
                .map(|(stem, _)| module_name(stem))
            {
                let relative = path.strip_prefix(modules)?.to_path_buf();
                index.insert(name, relative);
            }
        }
    }
    Ok(index)
}

fn module_name(name: &str) -> String {
    name.replace('-', "_")
}

fn strip_compression(path: &Path) -> PathBuf {
    let name = path.to_string_lossy();
    for suffix in [".xz", ".zst", ".gz"] {
        if let Some(plain) = name.strip_suffix(suffix) {
            return PathBuf::from(plain);
        }
    }
    path.to_path_buf()
}

fn decompress(source: &Path, dest: &Path) -> Result<()> {
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent)?;
    }
    let extension = source.extension().and_then(|e| e.to_str()).unwrap_or("");
    let tool = match extension {
        "xz" => "xz",
        "zst" => "zstd",
        "gz" => "gzip",
        _ => {
            fs::copy(source, dest)?;
            return Ok(());
        }
    };
    let output = Command::new(tool)
        .args(["-d", "-c"])
        .arg(source)
        .output()
        .with_context(|| format!("cannot run `{tool}` to decompress kernel modules"))?;
    if !output.status.success() {
        bail!(
            "`{tool} -d -c {}` failed: {}",
            source.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let partial = dest.with_extension("partial");
    fs::write(&partial, &output.stdout)?;
    fs::rename(&partial, dest)?;
    Ok(())
}

/// Values of `field=` in a module's `.modinfo` strings (NUL-separated `key=value` entries).
fn modinfo_field(module: &[u8], field: &str) -> Vec<String> {
    let needle = format!("{field}=");
    module
        .split(|b| *b == 0)
        .filter_map(|entry| entry.strip_prefix(needle.as_bytes()))
        .filter_map(|value| std::str::from_utf8(value).ok())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modinfo_depends_is_found_among_nul_separated_strings() {
        let data =
            b"\x7fELF...\0license=GPL\0depends=nf_tables,x_tables\0intree=Y\0name=nft_compat\0";
        assert_eq!(modinfo_field(data, "depends"), ["nf_tables,x_tables"]);
        assert_eq!(modinfo_field(data, "name"), ["nft_compat"]);
    }

    #[test]
    fn vmlinuz_is_found_in_boot_or_beside_the_modules() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("xtask-vmlinuz-{}", std::process::id()));
        let split = dir.join("split/usr/lib/modules/7.2.12+deb13-cloud-amd64");
        fs::create_dir_all(&split)?;
        fs::write(split.join("vmlinuz"), "")?;
        fs::create_dir_all(dir.join("classic/boot"))?;
        fs::write(dir.join("classic/boot/vmlinuz-6.1.0-56-cloud-amd64"), "")?;
        let (path, release) = find_vmlinuz(&dir.join("split"))?;
        assert_eq!(release, "7.2.12+deb13-cloud-amd64");
        assert_eq!(path, split.join("vmlinuz"));
        let (_, release) = find_vmlinuz(&dir.join("classic"))?;
        assert_eq!(release, "6.1.0-56-cloud-amd64");
        assert!(find_vmlinuz(&dir.join("missing")).is_err());
        fs::remove_dir_all(&dir)?;
        Ok(())
    }

    #[test]
    fn compression_suffixes_are_dropped() {
        assert_eq!(
            strip_compression(Path::new("kernel/drivers/net/veth.ko.xz")),
            PathBuf::from("kernel/drivers/net/veth.ko")
        );
        assert_eq!(
            strip_compression(Path::new("kernel/net/x.ko")),
            PathBuf::from("kernel/net/x.ko")
        );
    }

    #[test]
    fn the_default_matrix_runs_the_oldest_clsact_kernel_through_the_newest() {
        let defaults: Vec<_> = MATRIX
            .iter()
            .filter(|s| s.default)
            .map(|s| s.name)
            .collect();
        assert_eq!(defaults, ["5.10", "6.1", "6.12", "newest"]);
        assert!(spec("7.x").is_err());
    }
}
