//! The configuration loader, `config::load`: a TOML file, and `IMLINK_*` variables from an
//! `Env` snapshot, as `imlinkd` reads them at start and on SIGHUP.
//!
//! Input: the file's text, then optionally a NUL byte and environment lines `NAME=value`.
//! Properties: nothing panics; an error's message has no control character but newlines
//! (values are shown escaped); a configuration that loads, rendered by `--check-config`
//! (`Loaded::to_toml`), loads back to the same values from the file alone.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use imlink::config::{self, Env, Overrides};
use libfuzzer_sys::fuzz_target;

fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("imlink-fuzz-config-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    })
}

fn load(text: &[u8], env: &Env) -> Result<config::Loaded, config::ConfigError> {
    let path = dir().join("imlinkd.toml");
    std::fs::write(&path, text).unwrap();
    let o = Overrides {
        config: Some(path),
        ..Overrides::default()
    };
    config::load(&o, env)
}

fuzz_target!(|data: &[u8]| {
    let (file, env_text) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let env_text = String::from_utf8_lossy(env_text);
    let vars = env_text
        .lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
    let env = Env::new(
        vars.chain([("HOME".to_owned(), "/home/fuzz".to_owned())]),
        1000,
    );
    match load(file, &env) {
        Err(e) => {
            let shown = e.to_string();
            assert!(
                !shown.chars().any(|c| c.is_control() && c != '\n'),
                "{shown:?}"
            );
        }
        Ok(loaded) => {
            let rendered = loaded.to_toml();
            let back = load(
                rendered.as_bytes(),
                &Env::new([("HOME", "/home/fuzz")], 1000),
            )
            .unwrap_or_else(|e| panic!("--check-config output does not load: {e}\n{rendered}"));
            assert_eq!(back.config, loaded.config, "\n{rendered}");
        }
    }
});
