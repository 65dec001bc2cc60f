//! `cargo xtask demo`: build, then run the demo binary of `mirror-tests` against the built daemon.

use std::ffi::OsString;

use anyhow::Result;

use crate::{
    build::{self, Profile},
    cmd,
    setup::{self, Scope},
};

pub fn run(args: &[OsString]) -> Result<()> {
    let toolchain = setup::run(Scope::Demo, false)?;
    let built = build::all(&toolchain, Profile::Release)?;
    let mut cargo = build::harness_binary(&built, "demo");
    cargo.args(args);
    eprintln!("demo: {}", cmd::display(&cargo));
    cmd::run(&mut cargo)
}
