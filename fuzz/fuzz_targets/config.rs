//! The config parser fed arbitrary text.
//!
//! Checks: no panic; an error is one line (no CR or LF in its message); a config that parses
//! prints (`toml::to_string_pretty`) to text that parses again and prints the same; what the
//! daemon builds from a valid config without further checks (mirror rules, copy edits) builds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mirror_daemon::{
    config::Config,
    mirror::{copy::Edits, rules::Rule},
};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let config = match Config::from_toml(text, "fuzz.toml") {
        Ok(config) => config,
        Err(error) => {
            let message = error.to_string();
            assert!(
                !message.contains(['\n', '\r']),
                "a config error spans lines: {message:?}"
            );
            return;
        }
    };
    let printed = toml::to_string_pretty(&config).expect("a valid config prints as TOML");
    let again = Config::from_toml(&printed, "printed.toml")
        .unwrap_or_else(|e| panic!("the printed config does not parse: {e}\n{printed}"));
    let reprinted = toml::to_string_pretty(&again).expect("prints");
    assert_eq!(printed, reprinted, "printing is not a fixed point");

    let mirror = &config.mirror;
    for (i, rule) in mirror.rules.iter().enumerate() {
        let rule = Rule::compile(i, rule, |name| {
            mirror.targets.iter().position(|t| t.name == name)
        })
        .unwrap_or_else(|e| panic!("a validated rule does not compile: {e}"));
        assert!(!rule.targets.is_empty());
    }
    for target in &mirror.targets {
        let _ = Edits::from_config(target);
    }
});
