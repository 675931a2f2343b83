//! A snapshot of the environment, so that loading is testable without touching the
//! process environment and a SIGHUP reload reads the variables the daemon started with.

use std::collections::BTreeMap;

/// A snapshot of the environment variables and the effective uid that loading depends on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Env {
    vars: BTreeMap<String, String>,
    uid: u32,
}

impl Env {
    /// The environment of this process (variables that are not UTF-8 are read lossily).
    pub fn from_process() -> Env {
        let vars = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.to_string_lossy().into_owned())))
            .collect();
        // The owner of /proc/self is the effective uid; it decides which directories we
        // may create (and needs no unsafe libc call).
        let uid = std::fs::metadata("/proc/self")
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
            .unwrap_or(u32::MAX);
        Env { vars, uid }
    }

    /// A made-up environment (tests, embedding).
    pub fn new<I, K, V>(vars: I, uid: u32) -> Env
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Env {
            vars: vars
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            uid,
        }
    }

    /// One variable.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    /// Every variable, by name.
    pub fn vars(&self) -> impl Iterator<Item = (&str, &str)> {
        self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The effective uid (0 = root).
    pub fn uid(&self) -> u32 {
        self.uid
    }
}
