# mirror-daemon's image: `docker build -t mirror-daemon:0.1.0 .` at the repository root.
# deploy/README.md says how it is used, and that it has not been built where it was written.

# Build: the steps `cargo xtask setup` takes on a fresh Debian 12 machine, in the same order and
# with the same packages and versions (xtask/src/setup/plan.rs), each in its own layer so that a
# source change rebuilds only the last one; then `cargo xtask build`, which finds the toolchain
# ready, builds the eBPF object and the daemon embedding it, and prints the daemon's path.
# The base image brings rustup and a stable Rust, which run xtask and build the daemon.
FROM rust:1.95-bookworm AS build
ENV DEBIAN_FRONTEND=noninteractive
# Debian's rustc 1.96 with its library sources (for -Z build-std=core on bpfel-unknown-none),
# and what bpf-linker links against (LLVM 22).
RUN apt-get update \
    && apt-get install -y rustc-web cargo-web rust-web-src \
        llvm-22-dev libpolly-22-dev libzstd-dev zlib1g-dev \
    && rm -rf /var/lib/apt/lists/*
RUN rustup toolchain link debian-bpf /usr
RUN LLVM_PREFIX=/usr/lib/llvm-22 LLVM_SYS_221_PREFIX=/usr/lib/llvm-22 \
    cargo install bpf-linker --version 0.13.0 --no-default-features --features llvm-22 --locked
WORKDIR /src
COPY . .
RUN daemon="$(cargo xtask build)" && cp "$daemon" /mirror-daemon

# Run: the daemon alone, on the Debian release it was built on (same glibc). It needs no
# CA bundle (the Mozilla roots are built in, or a target's `tls.ca_file` is mounted), and runs as
# root so that the capabilities the DaemonSet grants reach it. The init container in
# deploy/30-daemonset.yaml uses this image's `sh`.
FROM debian:bookworm-slim
COPY --from=build /mirror-daemon /usr/local/bin/mirror-daemon
EXPOSE 15090
ENTRYPOINT ["mirror-daemon"]
CMD ["run", "--config", "/etc/mirror/mirror.toml"]
