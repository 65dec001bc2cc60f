//! The Kubernetes deployment (`deploy/`) and the image (`Dockerfile`), checked offline:
//! - every manifest is valid against the Kubernetes API schemas (`kubernetes-validate --strict`,
//!   schemas bundled), and the validator rejects a broken copy, so a pass means something;
//! - the daemon accepts the ConfigMap's `mirror.toml` (`mirror-daemon check`);
//! - the pieces agree: grace period and drain deadline, probes and admin address, capabilities
//!   and `deploy/README.md`, names and images across files, the Dockerfile's build steps and
//!   xtask's setup.
//!
//! No privileges needed. The validator comes from `cargo xtask setup` (`$MIRROR_KUBE_VALIDATE`,
//! else `<target>/tools/venv`); without it the schema tests fail under `CI=true` and skip loudly
//! otherwise, like the rest of this crate's tests.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use mirror_tests::command;
use mirror_tests::environment::{in_ci, require_daemon_binary, tools_dir, workspace};
use serde_norway::Value;

/// The API versions whose schemas the manifests must satisfy: the oldest supported, the newest
/// the validator bundles.
const KUBERNETES_VERSIONS: &[&str] = &["1.29.0", "1.37.0"];
const VALIDATOR_ENV: &str = "MIRROR_KUBE_VALIDATE";
const DAEMON_CONTAINER: &str = "mirror-daemon";
const CONFIG_KEY: &str = "mirror.toml";
/// After the drain deadline the daemon still resets what is left (≤ 2 s), gives shadow copies
/// 1 s and removes its kernel state: the grace period must leave at least this much.
const GRACE_MARGIN: Duration = Duration::from_secs(5);

fn deploy_dir() -> PathBuf {
    workspace().join("deploy")
}

/// The manifests, in the order `kubectl apply -f deploy/` takes them.
fn manifest_files() -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(deploy_dir())
        .context("reading deploy/")?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    files.retain(|p| {
        p.extension()
            .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
    });
    files.sort();
    ensure!(!files.is_empty(), "no manifests in deploy/");
    Ok(files)
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// The YAML documents of a file that hold something (not only comments).
fn split_documents(text: &str) -> Vec<String> {
    let mut documents = vec![String::new()];
    for line in text.lines() {
        if line.trim_end() == "---" {
            documents.push(String::new());
        } else if let Some(last) = documents.last_mut() {
            last.push_str(line);
            last.push('\n');
        }
    }
    documents.retain(|d| {
        d.lines()
            .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
    });
    documents
}

/// Every YAML document of every manifest.
fn documents() -> Result<Vec<Value>> {
    let mut documents = Vec::new();
    for file in manifest_files()? {
        for document in split_documents(&read(&file)?) {
            documents.push(
                serde_norway::from_str(&document)
                    .with_context(|| format!("parsing {}", file.display()))?,
            );
        }
    }
    Ok(documents)
}

/// The one object of `kind`.
fn object(kind: &str) -> Result<Value> {
    let mut found: Vec<Value> = documents()?
        .into_iter()
        .filter(|d| d["kind"].as_str() == Some(kind))
        .collect();
    ensure!(
        found.len() == 1,
        "expected one {kind} in deploy/, found {}",
        found.len()
    );
    Ok(found.remove(0))
}

fn str_at<'a>(value: &'a Value, what: &str) -> Result<&'a str> {
    value
        .as_str()
        .with_context(|| format!("{what} is not a string: {value:?}"))
}

fn seq_at<'a>(value: &'a Value, what: &str) -> Result<&'a Vec<Value>> {
    value
        .as_sequence()
        .with_context(|| format!("{what} is not a list: {value:?}"))
}

fn pod_spec(daemonset: &Value) -> &Value {
    &daemonset["spec"]["template"]["spec"]
}

fn container<'a>(pod: &'a Value, list: &str, name: &str) -> Result<&'a Value> {
    seq_at(&pod[list], list)?
        .iter()
        .find(|c| c["name"].as_str() == Some(name))
        .with_context(|| format!("no {list} entry named {name}"))
}

/// All containers of the pod, init containers included.
fn all_containers(pod: &Value) -> Vec<&Value> {
    ["initContainers", "containers"]
        .iter()
        .filter_map(|list| pod[*list].as_sequence())
        .flatten()
        .collect()
}

/// The daemon's config as the ConfigMap holds it.
fn configmap_toml() -> Result<String> {
    let configmap = object("ConfigMap")?;
    Ok(str_at(
        &configmap["data"][CONFIG_KEY],
        "the ConfigMap's mirror.toml",
    )?
    .to_owned())
}

fn configmap_config() -> Result<toml::Table> {
    configmap_toml()?
        .parse()
        .context("the ConfigMap's mirror.toml is not TOML")
}

/// A scratch file, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, contents: &str) -> Result<Self> {
        let path = std::env::temp_dir().join(format!(
            "mirror-deploy-test-{}-{}",
            std::process::id(),
            name
        ));
        std::fs::write(&path, contents)?;
        Ok(Self(path))
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap_or_default()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

// ---------------------------------------------------------------------------------------------
// Schemas

/// The validator: `$MIRROR_KUBE_VALIDATE`, else where `cargo xtask setup` installs it.
fn validator_path() -> PathBuf {
    if let Some(path) = std::env::var_os(VALIDATOR_ENV).filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    tools_dir().join("venv/bin/kubernetes-validate")
}

/// The validator when it runs; otherwise fails under CI and skips loudly outside it.
fn require_validator(test: &str) -> Option<String> {
    let path = validator_path();
    let works = path.is_file()
        && command::output(&path.display().to_string(), &["--version"]).is_ok_and(|o| o.success);
    if works {
        return Some(path.display().to_string());
    }
    let reason = format!(
        "no working kubernetes-validate at {} (install it with `cargo xtask setup`, or set \
         {VALIDATOR_ENV})",
        path.display()
    );
    if in_ci() {
        panic!("{test}: cannot run under CI: {reason}");
    }
    let bar = "!".repeat(80);
    let message = format!("\n{bar}\n!!! SKIPPED {test}: {reason}\n{bar}\n");
    // Past the test runner's capture, so the skip is seen.
    let _ = std::io::stderr().write_all(message.as_bytes());
    None
}

fn validate(validator: &str, version: &str, file: &str) -> Result<command::Output> {
    command::output(
        validator,
        &["--kubernetes-version", version, "--strict", file],
    )
}

#[test]
fn every_manifest_is_valid_against_the_kubernetes_api_schemas() -> Result<()> {
    let Some(validator) =
        require_validator("every_manifest_is_valid_against_the_kubernetes_api_schemas")
    else {
        return Ok(());
    };
    let files = manifest_files()?;
    let mut failures = Vec::new();
    for version in KUBERNETES_VERSIONS {
        for file in &files {
            let output = validate(&validator, version, &file.display().to_string())?;
            // One "passed" line per object; an object it could not check would print none.
            let documents = split_documents(&read(file)?).len();
            let passed = output.stdout.matches(" passed for resource ").count()
                + output.stderr.matches(" passed for resource ").count();
            if !output.success || passed != documents {
                failures.push(format!(
                    "{} against {version}: {}{}",
                    file.display(),
                    output.stdout,
                    output.stderr
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    Ok(())
}

#[test]
fn the_validator_rejects_a_manifest_with_a_misspelt_field() -> Result<()> {
    let Some(validator) =
        require_validator("the_validator_rejects_a_manifest_with_a_misspelt_field")
    else {
        return Ok(());
    };
    let text = read(&deploy_dir().join("30-daemonset.yaml"))?;
    let from = "terminationGracePeriodSeconds:";
    ensure!(
        text.matches(from).count() == 1,
        "the DaemonSet no longer has {from} once"
    );
    let broken = TempFile::new(
        "broken-daemonset.yaml",
        &text.replace(from, "terminationGracePeriodSecond:"),
    )?;
    for version in KUBERNETES_VERSIONS {
        let output = validate(&validator, version, broken.path())?;
        let said = format!("{}{}", output.stdout, output.stderr);
        assert!(
            !output.success && said.contains("terminationGracePeriodSecond"),
            "the validator accepted a DaemonSet with an unknown field against {version}: {said}"
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The daemon's config

#[test]
fn the_daemon_accepts_the_configmaps_config() -> Result<()> {
    let Some(binary) = require_daemon_binary("the_daemon_accepts_the_configmaps_config") else {
        return Ok(());
    };
    let config = TempFile::new("mirror.toml", &configmap_toml()?)?;
    let output = command::output(
        &binary.display().to_string(),
        &["check", "--config", config.path()],
    )?;
    assert!(
        output.success,
        "`mirror-daemon check` rejects the ConfigMap's mirror.toml: {}",
        output.stderr
    );
    Ok(())
}

/// A duration as the config writes it: "20s", "1m 30s", "500ms".
fn parse_duration(text: &str) -> Result<Duration> {
    let mut total = Duration::ZERO;
    for part in text.split_whitespace() {
        let split = part
            .find(|c: char| !c.is_ascii_digit())
            .with_context(|| format!("no unit in {text:?}"))?;
        let (number, unit) = part.split_at(split);
        let number: u64 = number.parse().with_context(|| format!("in {text:?}"))?;
        total += match unit {
            "ms" => Duration::from_millis(number),
            "s" => Duration::from_secs(number),
            "m" | "min" => Duration::from_secs(number * 60),
            "h" => Duration::from_secs(number * 3600),
            _ => bail!("unknown unit {unit:?} in {text:?}"),
        };
    }
    Ok(total)
}

#[test]
fn the_grace_period_covers_the_drain_deadline() -> Result<()> {
    let config = configmap_config()?;
    // The daemon's default, when the ConfigMap leaves it out.
    let drain = match config.get("shutdown").and_then(|s| s.get("drain_timeout")) {
        Some(value) => parse_duration(value.as_str().context("drain_timeout is a string")?)?,
        None => Duration::from_secs(20),
    };
    let daemonset = object("DaemonSet")?;
    let grace = pod_spec(&daemonset)["terminationGracePeriodSeconds"]
        .as_u64()
        .context("the DaemonSet sets terminationGracePeriodSeconds")?;
    assert!(
        Duration::from_secs(grace) >= drain + GRACE_MARGIN,
        "terminationGracePeriodSeconds {grace} leaves less than {GRACE_MARGIN:?} after \
         drain_timeout {drain:?}: the kubelet would SIGKILL the daemon before it cleans up"
    );
    Ok(())
}

#[test]
fn the_probes_reach_the_admin_endpoint() -> Result<()> {
    let config = configmap_config()?;
    let address: std::net::SocketAddr = config
        .get("admin")
        .and_then(|a| a.get("address"))
        .and_then(|a| a.as_str())
        .context("the ConfigMap sets [admin] address")?
        .parse()
        .context("[admin] address")?;
    let daemonset = object("DaemonSet")?;
    let pod = pod_spec(&daemonset);
    assert_eq!(pod["hostNetwork"].as_bool(), Some(true), "hostNetwork");
    let daemon = container(pod, "containers", DAEMON_CONTAINER)?;
    let ports = seq_at(&daemon["ports"], "the daemon's ports")?;
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let get = &daemon[probe]["httpGet"];
        assert_eq!(get["path"].as_str(), Some(path), "{probe} path");
        let port = match &get["port"] {
            Value::Number(n) => n.as_u64().context("probe port")?,
            Value::String(name) => ports
                .iter()
                .find(|p| p["name"].as_str() == Some(name))
                .and_then(|p| p["containerPort"].as_u64())
                .with_context(|| format!("{probe} names port {name:?}, which is not declared"))?,
            other => bail!("{probe} port is {other:?}"),
        };
        assert_eq!(
            port,
            u64::from(address.port()),
            "{probe} probes port {port}, the admin endpoint listens on {address}"
        );
        match get["host"].as_str() {
            // The kubelet connects from the node's network namespace, which the pod shares.
            Some(host) => assert!(
                host.parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip == address.ip() || address.ip().is_unspecified()),
                "{probe} connects to {host}, the admin endpoint listens on {address}"
            ),
            // Without a host the kubelet connects to the pod IP, i.e. the node's IP: only a
            // wildcard address is sure to be listening there.
            None => assert!(
                address.ip().is_unspecified(),
                "{probe} connects to the node's IP, the admin endpoint listens on {address} only"
            ),
        }
    }
    let annotations = &daemonset["spec"]["template"]["metadata"]["annotations"];
    if let Some(port) = annotations["prometheus.io/port"].as_str() {
        assert_eq!(port, address.port().to_string(), "prometheus.io/port");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Security context

/// The capabilities listed between the markers of deploy/README.md's table.
fn documented_capabilities() -> Result<Vec<String>> {
    let readme = read(&deploy_dir().join("README.md"))?;
    let (_, rest) = readme
        .split_once("<!-- capabilities: begin -->")
        .context("deploy/README.md has no capabilities table marker")?;
    let (table, _) = rest
        .split_once("<!-- capabilities: end -->")
        .context("deploy/README.md's capabilities table has no end marker")?;
    let mut capabilities: Vec<String> = table
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|line| line.split_once('`').map(|(name, _)| name.to_owned()))
        .collect();
    capabilities.sort();
    ensure!(
        !capabilities.is_empty(),
        "deploy/README.md's capabilities table is empty"
    );
    Ok(capabilities)
}

fn added_capabilities(container: &Value) -> Result<Vec<String>> {
    let mut added: Vec<String> =
        match container["securityContext"]["capabilities"]["add"].as_sequence() {
            Some(list) => list
                .iter()
                .map(|c| str_at(c, "a capability").map(|c| c.trim_start_matches("CAP_").to_owned()))
                .collect::<Result<_>>()?,
            None => Vec::new(),
        };
    added.sort();
    Ok(added)
}

fn drops_all(container: &Value) -> bool {
    container["securityContext"]["capabilities"]["drop"]
        .as_sequence()
        .is_some_and(|d| d.iter().any(|c| c.as_str() == Some("ALL")))
}

#[test]
fn the_daemon_gets_exactly_the_documented_capabilities() -> Result<()> {
    let daemonset = object("DaemonSet")?;
    let daemon = container(pod_spec(&daemonset), "containers", DAEMON_CONTAINER)?;
    assert!(
        drops_all(daemon),
        "the daemon container must drop ALL first"
    );
    assert_eq!(
        added_capabilities(daemon)?,
        documented_capabilities()?,
        "the daemon's added capabilities differ from deploy/README.md's table"
    );
    Ok(())
}

#[test]
fn no_container_is_privileged_or_escalates() -> Result<()> {
    let daemonset = object("DaemonSet")?;
    let pod = pod_spec(&daemonset);
    assert!(!pod["hostPID"].as_bool().unwrap_or(false), "hostPID");
    assert!(!pod["hostIPC"].as_bool().unwrap_or(false), "hostIPC");
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"].as_str(),
        Some("RuntimeDefault"),
        "the pod's seccomp profile"
    );
    let containers = all_containers(pod);
    assert!(containers.len() >= 2, "an init container and the daemon");
    for c in containers {
        let name = c["name"].as_str().unwrap_or("?");
        let context = &c["securityContext"];
        assert_ne!(
            context["privileged"].as_bool(),
            Some(true),
            "{name} is privileged"
        );
        assert_eq!(
            context["allowPrivilegeEscalation"].as_bool(),
            Some(false),
            "{name}: allowPrivilegeEscalation"
        );
        assert_eq!(
            context["readOnlyRootFilesystem"].as_bool(),
            Some(true),
            "{name}: readOnlyRootFilesystem"
        );
        assert!(drops_all(c), "{name} must drop ALL capabilities");
        if name != DAEMON_CONTAINER {
            assert_eq!(
                added_capabilities(c)?,
                Vec::<String>::new(),
                "{name} adds capabilities"
            );
        }
    }
    Ok(())
}

#[test]
fn names_images_and_mounts_agree_across_the_manifests() -> Result<()> {
    let namespace = object("Namespace")?;
    let namespace = str_at(&namespace["metadata"]["name"], "the namespace's name")?.to_owned();
    for document in documents()? {
        if document["kind"].as_str() != Some("Namespace") {
            assert_eq!(
                document["metadata"]["namespace"].as_str(),
                Some(namespace.as_str()),
                "{:?} {:?} is not in namespace {namespace}",
                document["kind"],
                document["metadata"]["name"]
            );
        }
    }

    let daemonset = object("DaemonSet")?;
    let pod = pod_spec(&daemonset);
    let account = object("ServiceAccount")?;
    assert_eq!(
        pod["serviceAccountName"].as_str(),
        account["metadata"]["name"].as_str(),
        "serviceAccountName"
    );
    assert_eq!(
        account["automountServiceAccountToken"].as_bool(),
        Some(false)
    );
    assert_eq!(pod["automountServiceAccountToken"].as_bool(), Some(false));

    // Both containers run the one image (the init container uses its shell).
    let images: Vec<&str> = all_containers(pod)
        .iter()
        .map(|c| str_at(&c["image"], "image"))
        .collect::<Result<_>>()?;
    assert!(
        images.windows(2).all(|w| w[0] == w[1]),
        "images differ: {images:?}"
    );

    // The daemon reads the ConfigMap's key where the volume puts it.
    let configmap = object("ConfigMap")?;
    let configmap_name = str_at(&configmap["metadata"]["name"], "the ConfigMap's name")?;
    let volume = seq_at(&pod["volumes"], "volumes")?
        .iter()
        .find(|v| v["configMap"]["name"].as_str() == Some(configmap_name))
        .context("no volume holds the ConfigMap")?;
    let daemon = container(pod, "containers", DAEMON_CONTAINER)?;
    let mount = seq_at(&daemon["volumeMounts"], "the daemon's volumeMounts")?
        .iter()
        .find(|m| m["name"] == volume["name"])
        .context("the daemon does not mount the ConfigMap")?;
    assert!(
        mount["subPath"].is_null(),
        "a subPath mount never sees ConfigMap updates"
    );
    let config_path = format!(
        "{}/{CONFIG_KEY}",
        str_at(&mount["mountPath"], "mountPath")?.trim_end_matches('/')
    );
    let args: Vec<&str> = seq_at(&daemon["args"], "the daemon's args")?
        .iter()
        .map(|a| str_at(a, "an argument"))
        .collect::<Result<_>>()?;
    assert!(
        args.windows(2)
            .any(|w| w == ["--config", config_path.as_str()]),
        "the daemon is not run with --config {config_path}: {args:?}"
    );

    // A rolling update, one node at a time (the node's new flows go direct while its daemon
    // drains), and never two daemons on one node (admin port, routing table, attachments).
    let strategy = &daemonset["spec"]["updateStrategy"];
    assert_eq!(
        strategy["type"].as_str(),
        Some("RollingUpdate"),
        "the DaemonSet's updateStrategy must be RollingUpdate: {strategy:?}"
    );
    let rolling = &strategy["rollingUpdate"];
    assert_eq!(
        rolling["maxUnavailable"].as_u64(),
        Some(1),
        "maxUnavailable must be stated, and 1: {:?}",
        rolling["maxUnavailable"]
    );
    assert!(
        matches!(rolling["maxSurge"].as_u64(), None | Some(0)),
        "maxSurge must be 0: {:?}",
        rolling["maxSurge"]
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The image

/// The string literals of `const NAME: &[&str] = &[...]` or `const NAME: &str = "..."` in Rust
/// source (xtask's setup plan states its packages and versions this way).
fn rust_const_strings(source: &str, name: &str) -> Result<Vec<String>> {
    let start = source
        .find(&format!("const {name}:"))
        .with_context(|| format!("no const {name}"))?;
    let rest = &source[start..];
    let end = rest.find(';').context("unterminated const")?;
    let strings: Vec<String> = rest[..end]
        .split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect();
    ensure!(!strings.is_empty(), "const {name} holds no string");
    Ok(strings)
}

#[test]
fn the_dockerfile_takes_the_setup_steps_and_runs_cargo_xtask_build() -> Result<()> {
    let dockerfile = read(&workspace().join("Dockerfile"))?;
    let plan_path = workspace().join("xtask/src/setup/plan.rs");
    let plan = read(&plan_path)?;
    let toolchain = read(&workspace().join("xtask/src/toolchain.rs"))?;
    let mut expected: Vec<String> = Vec::new();
    for name in ["DEBIAN_RUST_PACKAGES", "BPF_LINKER_BUILD_PACKAGES"] {
        expected.extend(
            rust_const_strings(&plan, name).with_context(|| plan_path.display().to_string())?,
        );
    }
    let linker = rust_const_strings(&plan, "BPF_LINKER_VERSION")?.remove(0);
    let llvm = rust_const_strings(&plan, "LLVM_PREFIX")?.remove(0);
    let debian_toolchain = rust_const_strings(&toolchain, "DEBIAN_TOOLCHAIN")?.remove(0);
    expected.extend([
        format!("rustup toolchain link {debian_toolchain} /usr"),
        format!("LLVM_PREFIX={llvm}"),
        format!("LLVM_SYS_221_PREFIX={llvm}"),
        format!("cargo install bpf-linker --version {linker}"),
        "--no-default-features --features llvm-22 --locked".to_owned(),
        "cargo xtask build".to_owned(),
    ]);
    // Continuation lines joined, as the shell sees them.
    let joined = dockerfile
        .replace("\\\n", " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let missing: Vec<&String> = expected
        .iter()
        .filter(|e| !joined.contains(e.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "the Dockerfile lacks xtask setup's {missing:?}"
    );

    // Built and run on one Debian release (glibc); the entry point runs the mounted config.
    let stages: Vec<&str> = dockerfile
        .lines()
        .filter_map(|l| l.strip_prefix("FROM "))
        .collect();
    assert_eq!(stages.len(), 2, "a build stage and a run stage: {stages:?}");
    assert!(stages.iter().all(|s| s.contains("bookworm")), "{stages:?}");
    assert!(dockerfile.contains(r#"ENTRYPOINT ["mirror-daemon"]"#));
    assert!(dockerfile.contains(r#"CMD ["run", "--config", "/etc/mirror/mirror.toml"]"#));
    Ok(())
}

#[test]
fn durations_parse_as_the_config_writes_them() -> Result<()> {
    assert_eq!(parse_duration("20s")?, Duration::from_secs(20));
    assert_eq!(parse_duration("1m 30s")?, Duration::from_secs(90));
    assert_eq!(parse_duration("500ms")?, Duration::from_millis(500));
    assert!(parse_duration("20").is_err());
    Ok(())
}
