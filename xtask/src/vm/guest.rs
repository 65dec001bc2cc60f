//! What goes into the guest's initramfs: busybox for `/init`, the commands the tests run with
//! their shared libraries, the test binaries and the daemon at their host paths, the workspace
//! files the tests read, the kernel's modules, and the `/init` script that runs the suite and
//! reports on the second serial port.

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};

use super::{cpio::Archive, kernel};
use crate::cmd;

/// Where busybox and its applet links live in the guest (last on `PATH`, so Debian's `ip` and
/// `tc` win over busybox's).
pub const BUSYBOX_DIR: &str = "/busybox";
/// The serial port the results go to (the first is the console).
pub const RESULTS_TTY: &str = "/dev/ttyS1";
/// Lines the guest writes around each test binary's output.
pub const MARK: &str = "@@vm-test";
pub const GUEST_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/busybox";

/// A test binary as the guest runs it.
#[derive(Debug, Clone)]
pub struct TestBinary {
    /// The integration test's name (`interception`).
    pub name: String,
    /// Its path on the host, which is also its path in the guest.
    pub path: PathBuf,
}

/// Everything the guest runs, as the host built it.
pub struct Payload {
    pub workspace: PathBuf,
    /// The test package's directory: the tests' working directory, as under `cargo test`.
    pub tests_dir: PathBuf,
    pub binaries: Vec<TestBinary>,
    pub daemon: PathBuf,
    /// Environment of every test binary (`CI=true`, `MIRROR_DAEMON_BIN`).
    pub env: Vec<(String, String)>,
    /// Arguments of every test binary (`--test-threads=1`, filters, `--skip`s).
    pub args: Vec<String>,
    pub busybox: PathBuf,
    /// Commands the tests run (`ip`, `tc`, `bpftool`, `iptables`), found on the host.
    pub commands: Vec<PathBuf>,
    /// The host's `RLIMIT_NOFILE` (soft, hard), given to the guest's tests as they have it on
    /// the host (a bare init has 1024/4096).
    pub nofile: Option<(String, String)>,
}

/// (soft, hard) `Max open files` from `/proc/<pid>/limits` text.
pub fn parse_nofile(limits: &str) -> Option<(String, String)> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let mut fields = line["Max open files".len()..].split_whitespace();
    Some((fields.next()?.to_owned(), fields.next()?.to_owned()))
}

/// The part of the initramfs that is the same for every kernel. Binaries are copied with their
/// debug info stripped (to `stripped_dir`): the code is the host's, byte for byte, but a guest
/// with 1 GiB could not hold 30 MB of DWARF per test binary in its RAM-backed root.
pub fn common_archive(payload: &Payload, stripped_dir: &Path) -> Result<Archive> {
    let mut archive = Archive::new();
    for dir in [
        "proc", "sys", "dev", "tmp", "run", "root", "bpf", "etc", "var/tmp",
    ] {
        archive.dir(dir)?;
    }
    archive.host_file(format!("{BUSYBOX_DIR}/busybox"), &payload.busybox)?;

    let mut elves: Vec<PathBuf> = Vec::new();
    for command in &payload.commands {
        let real = archive.host_path(command)?;
        if real
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("xtables"))
        {
            for dir in XTABLES_DIRS.iter().map(Path::new).filter(|d| d.is_dir()) {
                for entry in fs::read_dir(dir)? {
                    let path = entry?.path();
                    archive.host_path(&path)?;
                    elves.push(path);
                }
            }
        }
        elves.push(real);
    }
    for (path, source) in payload
        .binaries
        .iter()
        .map(|b| &b.path)
        .chain([&payload.daemon])
        .map(|p| (p, strip(p, stripped_dir)))
    {
        let source = source?;
        archive.host_file(path, &source)?;
        elves.push(source);
    }
    for library in shared_libraries(&elves)? {
        archive.host_path(&library)?;
    }

    // Read now (they are small): a snapshot, whatever happens to the work tree while the
    // kernels boot. A file gone since git listed it is left out.
    for file in workspace_files(&payload.workspace)? {
        use std::os::unix::fs::PermissionsExt;
        if let (Ok(data), Ok(meta)) = (fs::read(&file), file.metadata()) {
            archive.bytes(&file, data, meta.permissions().mode() & 0o7777)?;
        }
    }
    archive.dir(&payload.tests_dir)?;

    for etc in [
        "/etc/iproute2",
        "/etc/protocols",
        "/etc/services",
        "/usr/share/iproute2",
    ] {
        let path = Path::new(etc);
        if path.exists() {
            copy_tree(&mut archive, path)?;
        }
    }
    archive.bytes(
        "etc/hosts",
        "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n",
        0o644,
    )?;
    archive.bytes("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n", 0o644)?;
    archive.bytes("etc/group", "root:x:0:\n", 0o644)?;
    archive.bytes("etc/hostname", "vm\n", 0o644)?;
    Ok(archive)
}

/// The common archive plus `kernel`'s modules and the `/init` that loads them and runs the suite.
pub fn kernel_archive(
    common: &Archive,
    kernel: &kernel::Kernel,
    payload: &Payload,
) -> Result<Archive> {
    let mut archive = common.clone();
    let modules_dir = Path::new("lib/modules").join(&kernel.release);
    let mut loaded = Vec::new();
    for module in kernel::guest_modules(kernel)? {
        archive.host_file(modules_dir.join(&module.relative), &module.host)?;
        let name = module
            .relative
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .replace('-', "_");
        if kernel::WANTED_MODULES.contains(&name.as_str()) {
            loaded.push(name);
        }
    }
    for file in [
        "modules.builtin",
        "modules.builtin.modinfo",
        "modules.order",
    ] {
        let path = kernel.modules.join(file);
        if path.is_file() {
            archive.host_file(modules_dir.join(file), &path)?;
        }
    }
    archive.bytes("init", init_script(payload, &loaded), 0o755)?;
    Ok(archive)
}

const XTABLES_DIRS: &[&str] = &["/usr/lib/x86_64-linux-gnu/xtables", "/usr/lib/xtables"];

/// `path` with its debug info removed, under `dir` (redone when `path` is newer).
fn strip(path: &Path, dir: &Path) -> Result<PathBuf> {
    fs::create_dir_all(dir)?;
    let name = path.file_name().context("binary without a file name")?;
    let out = dir.join(name);
    let newer = |a: &Path, b: &Path| -> bool {
        match (
            a.metadata().and_then(|m| m.modified()),
            b.metadata().and_then(|m| m.modified()),
        ) {
            (Ok(a), Ok(b)) => a > b,
            _ => true,
        }
    };
    if out.is_file() && !newer(path, &out) {
        return Ok(out);
    }
    let status = Command::new("objcopy")
        .arg("--strip-debug")
        .arg(path)
        .arg(&out)
        .status();
    match status {
        Ok(status) if status.success() => Ok(out),
        _ => {
            eprintln!(
                "vm: warning: `objcopy --strip-debug {}` failed; copying it whole (harmless: \
                 the initramfs is larger and takes a little longer to load)",
                path.display()
            );
            fs::copy(path, &out)?;
            Ok(out)
        }
    }
}

/// Shared libraries (and the ELF interpreter) of `elves`, as `ldd` resolves them on the host.
fn shared_libraries(elves: &[PathBuf]) -> Result<BTreeSet<PathBuf>> {
    let mut libraries = BTreeSet::new();
    for elf in elves {
        if !elf.is_file() {
            continue;
        }
        let output = Command::new("ldd")
            .arg(elf)
            .output()
            .context("cannot run ldd")?;
        // "not a dynamic executable" (scripts, static binaries) exits non-zero: nothing to copy.
        libraries.extend(parse_ldd(&String::from_utf8_lossy(&output.stdout)));
    }
    Ok(libraries)
}

fn parse_ldd(text: &str) -> Vec<PathBuf> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            let path = match line.split_once("=>") {
                Some((_, rest)) => rest.trim(),
                None => line,
            };
            let path = path.split(" (").next()?.trim();
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

fn copy_tree(archive: &mut Archive, path: &Path) -> Result<()> {
    if path.is_dir() && !path.is_symlink() {
        archive.dir(path)?;
        for entry in fs::read_dir(path)? {
            copy_tree(archive, &entry?.path())?;
        }
        Ok(())
    } else {
        archive.host_path(path).map(drop)
    }
}

/// The workspace's files as git sees them (tracked and new, not ignored): the tests read some
/// (`examples/mirror.toml`, test certificates) through paths compiled into them.
fn workspace_files(workspace: &Path) -> Result<Vec<PathBuf>> {
    let output = Command::new("git")
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .current_dir(workspace)
        .output()
        .context("cannot run git ls-files")?;
    if !output.status.success() {
        bail!(
            "git ls-files failed in {}: {}",
            workspace.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(output
        .stdout
        .split(|b| *b == 0)
        .filter(|name| !name.is_empty())
        .map(|name| workspace.join(String::from_utf8_lossy(name).as_ref()))
        // Deleted but still tracked, or a symlink: skip.
        .filter(|path| path.is_file() && !path.is_symlink())
        .filter(|path| path.metadata().is_ok_and(|m| m.len() <= 1 << 20))
        .collect())
}

/// Commands the test package's sources name as a program to run: the string literal right after
/// `Command::new(`, `command::run(`, `command::output(` or `.exec(`. Left out: `src/bin` and
/// `src/bench` (the demo's and the bench's, which the guest never runs) and the test files of
/// `skipped_binaries` (not run in the guest either).
pub fn commands_in_sources(package: &Path, skipped_binaries: &[&str]) -> Result<BTreeSet<String>> {
    let mut names = BTreeSet::new();
    let skipped_dirs = [
        package.join("src").join("bin"),
        package.join("src").join("bench"),
    ];
    let skipped_files: Vec<PathBuf> = skipped_binaries
        .iter()
        .map(|name| package.join("tests").join(format!("{name}.rs")))
        .collect();
    let mut stack = vec![package.join("src"), package.join("tests")];
    while let Some(dir) = stack.pop() {
        if skipped_dirs.contains(&dir) || !dir.is_dir() {
            continue;
        }
        for entry in fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") && !skipped_files.contains(&path)
            {
                names.extend(commands_in_source(&fs::read_to_string(&path)?));
            }
        }
    }
    Ok(names)
}

fn commands_in_source(source: &str) -> Vec<String> {
    let mut names = Vec::new();
    for call in [
        "Command::new(\"",
        "command::run(\"",
        "command::output(\"",
        ".exec(\"",
    ] {
        for (at, _) in source.match_indices(call) {
            let rest = &source[at + call.len()..];
            if let Some(end) = rest.find('"') {
                let name = &rest[..end];
                if !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                {
                    names.push(name.to_owned());
                }
            }
        }
    }
    names
}

/// Finds `names` on the host: the ones found, and the ones missing.
pub fn find_commands(names: &BTreeSet<String>) -> (Vec<PathBuf>, Vec<String>) {
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for name in names {
        match cmd::find_program(name, &cmd::system_dirs()) {
            Some(path) => found.push(path),
            None => missing.push(name.clone()),
        }
    }
    (found, missing)
}

fn quote(word: &str) -> String {
    if !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
    {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// Where `/init` mounts file systems: a workspace below one of them would be hidden in the guest.
pub const MOUNT_POINTS: &[&str] = &[
    "/proc",
    "/sys",
    "/dev",
    "/dev/pts",
    "/dev/shm",
    "/run",
    "/sys/fs/bpf",
    "/bpf",
    "/sys/fs/cgroup",
    "/sys/kernel/tracing",
];

/// The mount point of [`MOUNT_POINTS`] that would hide `path` in the guest, if any.
pub fn hidden_by_mount(path: &Path) -> Option<&'static str> {
    MOUNT_POINTS
        .iter()
        .copied()
        .find(|point| path.starts_with(point))
}

/// `/init`: mounts what the tests need, loads `modules`, runs each test binary with the host's
/// arguments and environment, bracketing its output with [`MARK`] lines on [`RESULTS_TTY`],
/// then powers off.
pub fn init_script(payload: &Payload, modules: &[String]) -> String {
    let bb = BUSYBOX_DIR;
    let r = RESULTS_TTY;
    let mut s = format!(
        "#!{bb}/busybox sh\n\
         # Written by cargo xtask vm-test.\n\
         {bb}/busybox --install -s {bb}\n\
         export PATH={GUEST_PATH}\n\
         export HOME=/root\n\
         {bb}/mount -t proc proc /proc\n\
         {bb}/mount -t sysfs sysfs /sys\n\
         {bb}/mount -t devtmpfs devtmpfs /dev\n\
         {bb}/mkdir -p /dev/pts /dev/shm\n\
         {bb}/mount -t devpts devpts /dev/pts\n\
         {bb}/mount -t tmpfs -o mode=1777 tmpfs /dev/shm\n\
         # No tmpfs over /tmp: the workspace may live there (a clone under /tmp), and the\n\
         # initramfs root is writable memory already.\n\
         {bb}/chmod 1777 /tmp\n\
         {bb}/mount -t tmpfs -o mode=755 tmpfs /run\n\
         {bb}/mkdir -p /run/netns\n\
         {bb}/mount -t bpf bpf /sys/fs/bpf\n\
         # A second bpffs: `ip netns exec` remounts /sys and hides the first.\n\
         {bb}/mount -t bpf bpf /bpf\n\
         {bb}/mount -t cgroup2 cgroup2 /sys/fs/cgroup\n\
         {bb}/mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null\n\
         {bb}/hostname vm\n\
         echo {bb}/modprobe > /proc/sys/kernel/modprobe\n\
         {bb}/depmod\n"
    );
    for module in modules {
        s.push_str(&format!(
            "{bb}/modprobe {module} || echo 'vm: modprobe {module} failed'\n"
        ));
    }
    if let Some((soft, hard)) = &payload.nofile {
        s.push_str(&format!("ulimit -H -n {hard}\nulimit -S -n {soft}\n"));
    }
    s.push_str(&format!(
        "/usr/sbin/ip link set lo up 2>/dev/null || {bb}/ip link set lo up\n\
         R={r}\n\
         echo \"{MARK} kernel $({bb}/uname -r) $({bb}/nproc) CPUs $({bb}/awk '/MemTotal/ {{print $2}}' /proc/meminfo) kB, memlock limit $(ulimit -l) kB, open files $(ulimit -n)\" > $R\n\
         cd {}\n",
        quote(&payload.tests_dir.to_string_lossy())
    ));
    let env: String = payload
        .env
        .iter()
        .map(|(k, v)| format!(" {}", quote(&format!("{k}={v}"))))
        .collect();
    let args: String = payload
        .args
        .iter()
        .map(|a| format!(" {}", quote(a)))
        .collect();
    for binary in &payload.binaries {
        let name = quote(&binary.name);
        s.push_str(&format!(
            "echo \"{MARK} begin {name}\" > $R\n\
             {bb}/env{env} {}{args} < /dev/null > $R 2>&1\n\
             echo \"{MARK} end {name} $?\" > $R\n",
            quote(&binary.path.to_string_lossy()),
        ));
    }
    s.push_str(&format!(
        "echo \"{MARK} done\" > $R\n\
         # The kernel's whole log (the console shows only errors while the tests run).\n\
         echo '--- dmesg ---' > /dev/ttyS0\n\
         {bb}/dmesg > /dev/ttyS0\n\
         {bb}/sync\n\
         {bb}/poweroff -f\n"
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_gives_library_and_interpreter_paths() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                    \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f3d)\n\
                    \t/lib64/ld-linux-x86-64.so.2 (0x00007f3d2a8a9000)\n\
                    \tlibmissing.so => not found\n";
        assert_eq!(
            parse_ldd(text),
            [
                PathBuf::from("/lib/x86_64-linux-gnu/libgcc_s.so.1"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2")
            ]
        );
    }

    #[test]
    fn open_files_limits_are_read_from_proc_limits() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max locked memory         8388608              8388608              bytes\n\
                      Max open files            20000                20000                files\n";
        assert_eq!(
            parse_nofile(limits),
            Some(("20000".to_owned(), "20000".to_owned()))
        );
        assert_eq!(parse_nofile(""), None);
    }

    #[test]
    fn commands_are_found_where_the_harness_runs_them() {
        let source = r#"
            let mut child = Command::new("ip").args(&args);
            command::run("tc", &full)?;
            command::output(program, args);
            node.exec("bpftool", &["net", "show"])?;
            Command::new(env::var("X")?);
            let s = "iptables";
        "#;
        let mut names = commands_in_source(source);
        names.sort();
        assert_eq!(names, ["bpftool", "ip", "tc"]);
    }

    #[test]
    fn commands_of_the_bench_the_demo_and_skipped_binaries_are_not_wanted_in_the_guest(
    ) -> Result<()> {
        let package = std::env::temp_dir().join(format!("xtask-guest-scan-{}", std::process::id()));
        for (file, program) in [
            ("src/node.rs", "ip"),
            ("src/bench/nginx.rs", "nginx"),
            ("src/bin/demo.rs", "sh"),
            ("tests/interception.rs", "tc"),
            ("tests/operations_dashboard.rs", "prometheus"),
        ] {
            let path = package.join(file);
            fs::create_dir_all(path.parent().unwrap_or(&package))?;
            fs::write(&path, format!("Command::new(\"{program}\")"))?;
        }
        let names = commands_in_sources(&package, &["operations_dashboard"]);
        fs::remove_dir_all(&package)?;
        assert_eq!(names?.into_iter().collect::<Vec<_>>(), ["ip", "tc"]);
        Ok(())
    }

    #[test]
    fn init_runs_every_binary_between_marks_with_the_same_arguments() {
        let payload = Payload {
            workspace: "/w".into(),
            tests_dir: "/w/tests".into(),
            binaries: vec![TestBinary {
                name: "interception".into(),
                path: "/w/target/debug/deps/interception-0123".into(),
            }],
            daemon: "/w/target/release/mirror-daemon".into(),
            env: vec![("CI".into(), "true".into())],
            args: vec!["--test-threads=1".into(), "--skip".into(), "it's".into()],
            busybox: "/x/busybox".into(),
            commands: vec![],
            nofile: Some(("20000".into(), "20000".into())),
        };
        let init = init_script(&payload, &["veth".to_owned()]);
        assert!(init.starts_with("#!/busybox/busybox sh\n"));
        assert!(init.contains("/busybox/modprobe veth ||"));
        assert!(init.contains("ulimit -H -n 20000\nulimit -S -n 20000\n"));
        assert!(init.contains("cd /w/tests\n"));
        assert!(init.contains(
            "echo \"@@vm-test begin interception\" > $R\n\
             /busybox/env CI=true /w/target/debug/deps/interception-0123 --test-threads=1 \
             --skip 'it'\\''s' < /dev/null > $R 2>&1\n\
             echo \"@@vm-test end interception $?\" > $R\n"
        ));
        assert!(init.ends_with("/busybox/poweroff -f\n"));
    }

    /// Directories `/init` mounts something on.
    fn mount_points(init: &str) -> Vec<&str> {
        init.lines()
            .filter(|line| line.contains("/mount -t "))
            .filter_map(|line| {
                line.split_whitespace()
                    .rfind(|word| !word.starts_with("2>"))
            })
            .collect()
    }

    #[test]
    fn init_mounts_only_the_documented_points_and_they_hide_no_usual_workspace() {
        let payload = Payload {
            workspace: "/tmp/ci-clone".into(),
            tests_dir: "/tmp/ci-clone/tests".into(),
            binaries: vec![],
            daemon: "/tmp/ci-clone/target/release/mirror-daemon".into(),
            env: vec![],
            args: vec![],
            busybox: "/x/busybox".into(),
            commands: vec![],
            nofile: None,
        };
        let init = init_script(&payload, &[]);
        let mounts = mount_points(&init);
        assert!(mounts.contains(&"/proc"), "{mounts:?}");
        for point in &mounts {
            assert!(
                MOUNT_POINTS.contains(point),
                "/init mounts {point}, which MOUNT_POINTS does not list"
            );
        }
        for workspace in [
            "/tmp/ci-clone",
            "/root/src/mirror",
            "/work/main",
            "/home/u/w",
        ] {
            assert_eq!(hidden_by_mount(Path::new(workspace)), None, "{workspace}");
        }
        assert_eq!(
            hidden_by_mount(Path::new("/run/user/0/mirror")),
            Some("/run")
        );
    }
}
