//! Building the eBPF object (its own crate, target and toolchain, output under
//! `<target>/ebpf`) and the daemon that embeds it through `MIRROR_EBPF_OBJECT`.

use std::{
    env,
    ffi::OsString,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{ensure, Result};

use crate::{cmd, toolchain::Toolchain};

const EBPF_TARGET: &str = "bpfel-unknown-none";
/// The eBPF crate's binary name, hence the object's file name.
const EBPF_BIN: &str = "mirror";
/// BTF lets the loader relocate against the running kernel (what aya-build passes too).
const EBPF_RUSTFLAGS: &str = "-C debuginfo=2 -C link-arg=--btf";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    Release,
    Debug,
}

impl Profile {
    pub fn from_debug_flag(debug: bool) -> Self {
        if debug {
            Self::Debug
        } else {
            Self::Release
        }
    }

    /// The cargo flag selecting this profile, if any.
    fn flag(self) -> Option<&'static str> {
        match self {
            Self::Release => Some("--release"),
            Self::Debug => None,
        }
    }

    /// The directory cargo puts this profile's output in.
    fn dir(self) -> &'static str {
        match self {
            Self::Release => "release",
            Self::Debug => "debug",
        }
    }
}

/// The workspace root (this crate's parent directory).
pub fn workspace_root() -> PathBuf {
    let xtask = Path::new(env!("CARGO_MANIFEST_DIR"));
    xtask.parent().unwrap_or(xtask).to_path_buf()
}

/// The workspace's target directory: `$CARGO_TARGET_DIR` when set (as cargo does), else
/// `<root>/target`. xtask passes it explicitly to every build so the paths it prints are right.
pub fn target_dir() -> PathBuf {
    match env::var_os("CARGO_TARGET_DIR").filter(|v| !v.is_empty()) {
        Some(dir) => env::current_dir()
            .map(|cwd| cwd.join(&dir))
            .unwrap_or_else(|_| dir.into()),
        None => workspace_root().join("target"),
    }
}

/// A cargo for the workspace: the same one that runs xtask (so `cargo +toolchain xtask` holds).
pub fn workspace_cargo() -> Command {
    let mut cmd = Command::new(env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo")));
    cmd.current_dir(workspace_root());
    // Keep the host layout (<target>/<profile>/...) whatever the caller's default target is.
    cmd.env_remove("CARGO_BUILD_TARGET");
    cmd
}

/// `cargo run --release` of a binary of the `mirror-tests` package (the demo, the bench) against
/// what `built` holds; the caller adds the binary's arguments.
pub fn harness_binary(built: &Built, name: &str) -> Command {
    let mut cargo = workspace_cargo();
    cargo
        .envs(built.env())
        .args([
            "run",
            "--release",
            "--package",
            "mirror-tests",
            "--bin",
            name,
        ])
        .arg("--target-dir")
        .arg(target_dir())
        .arg("--");
    cargo
}

/// Builds the eBPF crate; returns the object's absolute path.
pub fn ebpf(toolchain: &Toolchain, profile: Profile) -> Result<PathBuf> {
    let target_dir = target_dir().join("ebpf");
    let mut cargo = toolchain.ebpf_cargo();
    cargo
        .current_dir(workspace_root().join("mirror-ebpf"))
        .env("RUSTFLAGS", EBPF_RUSTFLAGS)
        .args(["build", "--target", EBPF_TARGET, "-Z", "build-std=core"])
        .args(profile.flag())
        .arg("--target-dir")
        .arg(&target_dir);
    eprintln!("build: eBPF object ({})", cmd::display(&cargo));
    cmd::run(&mut cargo)?;

    let object = target_dir
        .join(EBPF_TARGET)
        .join(profile.dir())
        .join(EBPF_BIN);
    ensure!(
        object.is_file(),
        "the eBPF build succeeded but {} is missing",
        object.display()
    );
    Ok(object)
}

/// What `cargo xtask build` produced.
pub struct Built {
    pub object: PathBuf,
    pub daemon: PathBuf,
}

impl Built {
    /// The variables that tell the daemon's build script and the tests where the artifacts are.
    pub fn env(&self) -> [(&'static str, &Path); 2] {
        [
            ("MIRROR_EBPF_OBJECT", &self.object),
            ("MIRROR_DAEMON_BIN", &self.daemon),
        ]
    }
}

/// Builds the eBPF object, then the daemon embedding it.
pub fn all(toolchain: &Toolchain, profile: Profile) -> Result<Built> {
    let object = ebpf(toolchain, profile)?;
    let mut cargo = workspace_cargo();
    cargo
        .args(["build", "--package", "mirror-daemon"])
        .args(profile.flag())
        .arg("--target-dir")
        .arg(target_dir())
        .env("MIRROR_EBPF_OBJECT", &object);
    eprintln!("build: daemon ({})", cmd::display(&cargo));
    cmd::run(&mut cargo)?;

    let daemon = target_dir().join(profile.dir()).join("mirror-daemon");
    ensure!(
        daemon.is_file(),
        "the daemon build succeeded but {} is missing",
        daemon.display()
    );
    Ok(Built { object, daemon })
}
