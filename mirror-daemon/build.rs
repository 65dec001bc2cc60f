//! Embeds the eBPF object named by `MIRROR_EBPF_OBJECT` (set by `cargo xtask build`).
//!
//! Without it the daemon still builds (so `cargo build`/`cargo test` work without the BPF
//! toolchain), and `mirror-daemon run` fails at start with a message saying how to build it.
use std::{env, fs, path::PathBuf};

fn main() {
    println!("cargo:rerun-if-env-changed=MIRROR_EBPF_OBJECT");
    println!("cargo::rustc-check-cfg=cfg(ebpf_object)");
    let out =
        PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("mirror.bpf.o");
    match env::var_os("MIRROR_EBPF_OBJECT") {
        Some(path) if !path.is_empty() => {
            let path = PathBuf::from(path);
            println!("cargo:rerun-if-changed={}", path.display());
            let bytes = fs::read(&path)
                .unwrap_or_else(|e| panic!("MIRROR_EBPF_OBJECT={}: {e}", path.display()));
            fs::write(&out, bytes).expect("write OUT_DIR/mirror.bpf.o");
            println!("cargo:rustc-cfg=ebpf_object");
        }
        _ => fs::write(&out, []).expect("write OUT_DIR/mirror.bpf.o"),
    }
}
