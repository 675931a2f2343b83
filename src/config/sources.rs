//! The sources — built-in defaults, the TOML file, `IMLINK_<SECTION>__<KEY>` variables,
//! flags — each read into a [`Tree`] of values as written, every one with its origin.
//! Nothing is checked here: [`super::de`] deserialises a tree into [`Config`], whose own
//! types check the values.

use std::collections::BTreeMap;
use std::path::Path;

use super::args::Overrides;
use super::env::Env;
use super::error::{printable, ConfigError, Origin};
use super::file::read_regular_file;
use super::limits::MAX_CONFIG_FILE_BYTES;
use super::Config;

/// A value as written.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Raw {
    /// Text from an environment variable or a flag; the field's type decides how it is
    /// read.
    Text(String),
    /// A typed value from the TOML file (or from the serialised defaults).
    Toml(toml::Value),
}

impl Raw {
    /// The value for a message: bare text, or TOML syntax, made printable.
    pub(super) fn shown(&self) -> String {
        match self {
            Raw::Text(s) => printable(s),
            Raw::Toml(v) => printable(&v.to_string()),
        }
    }
}

/// A value and where it was written.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Entry {
    pub raw: Raw,
    pub origin: Origin,
}

/// What a name at the top level holds.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Node {
    /// A section: key → value.
    Table {
        /// Where the section was written.
        origin: Origin,
        keys: BTreeMap<String, Entry>,
    },
    /// A value outside any section (only a file can have one; it is refused).
    Value(Entry),
}

/// The values of one source, or of several merged: top-level name → section or value.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Tree(pub BTreeMap<String, Node>);

impl Tree {
    fn from_toml(table: toml::Table, origin: &Origin) -> Tree {
        let entry = |v| Entry {
            raw: Raw::Toml(v),
            origin: origin.clone(),
        };
        Tree(
            table
                .into_iter()
                .map(|(name, v)| {
                    let node = match v {
                        toml::Value::Table(t) => Node::Table {
                            origin: origin.clone(),
                            keys: t.into_iter().map(|(k, v)| (k, entry(v))).collect(),
                        },
                        v => Node::Value(entry(v)),
                    };
                    (name, node)
                })
                .collect(),
        )
    }

    fn set(&mut self, section: &str, key: &str, raw: Raw, origin: Origin) {
        let node = self
            .0
            .entry(section.to_owned())
            .or_insert_with(|| Node::Table {
                origin: origin.clone(),
                keys: BTreeMap::new(),
            });
        if let Node::Table { keys, .. } = node {
            keys.insert(key.to_owned(), Entry { raw, origin });
        }
    }

    /// Lays `top` over this tree: its values replace these, key by key.
    pub(super) fn overlay(&mut self, top: &Tree) {
        for (name, node) in &top.0 {
            match (self.0.get_mut(name), node) {
                (Some(Node::Table { keys, .. }), Node::Table { keys: new, .. }) => {
                    keys.extend(new.iter().map(|(k, e)| (k.clone(), e.clone())));
                }
                _ => {
                    self.0.insert(name.clone(), node.clone());
                }
            }
        }
    }

    /// Where the value of a dotted key came from, if this tree has it.
    pub(super) fn origin(&self, key: &str) -> Option<&Origin> {
        let (section, name) = key.split_once('.')?;
        match self.0.get(section)? {
            Node::Table { keys, .. } => keys.get(name).map(|e| &e.origin),
            Node::Value(_) => None,
        }
    }
}

/// The built-in defaults for `env`, as the struct serialises them.
pub(super) fn defaults(env: &Env) -> Result<Tree, ConfigError> {
    match toml::Value::try_from(Config::defaults_in(env)) {
        Ok(toml::Value::Table(t)) => Ok(Tree::from_toml(t, &Origin::Default)),
        Ok(_) => Err(ConfigError::Inconsistent {
            message: "internal error: the defaults do not serialise to a table".into(),
        }),
        Err(e) => Err(ConfigError::Inconsistent {
            message: format!("internal error: the defaults do not serialise: {e}"),
        }),
    }
}

/// The TOML file: a regular file of at most 1 MiB (see [`read_regular_file`]).
pub(super) fn file(path: &Path) -> Result<Tree, ConfigError> {
    let error = |message: String| ConfigError::File {
        path: path.to_path_buf(),
        message,
    };
    let bytes = read_regular_file(path, MAX_CONFIG_FILE_BYTES)
        .map_err(|e| error(format!("cannot read: {e}")))?;
    let text = String::from_utf8(bytes).map_err(|_| error("cannot read: not UTF-8 text".into()))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| error(toml_problem(&text, &e)))?;
    Ok(Tree::from_toml(table, &Origin::File(path.to_path_buf())))
}

/// A TOML syntax error on one line: where, and what (without the echo of the file's line).
fn toml_problem(text: &str, e: &toml::de::Error) -> String {
    let what = printable(&e.message().trim().replace('\n', "; "));
    match e.span().and_then(|s| text.get(..s.start)) {
        Some(before) => {
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("invalid TOML at line {line}, column {column}: {what}")
        }
        None => format!("invalid TOML: {what}"),
    }
}

/// `IMLINK_<SECTION>__<KEY>` variables. Names without `__` (like `imlinkctl`'s
/// `IMLINK_SOCKET`) are not configuration keys and are left alone.
pub(super) fn environment(env: &Env) -> Tree {
    let mut tree = Tree::default();
    for (name, value) in env.vars() {
        let Some((section, key)) = name
            .strip_prefix("IMLINK_")
            .and_then(|rest| rest.split_once("__"))
        else {
            continue;
        };
        tree.set(
            &section.to_ascii_lowercase(),
            &key.to_ascii_lowercase(),
            Raw::Text(value.to_owned()),
            Origin::Env(name.to_owned()),
        );
    }
    tree
}

/// The flags that set keys, as text (the flags' own parser has checked their types).
pub(super) fn flags(o: &Overrides) -> Result<Tree, ConfigError> {
    let mut tree = Tree::default();
    let mut set = |key: &str, flag: &'static str, text: String| {
        let (section, name) = key.split_once('.').unwrap_or(("", key));
        tree.set(section, name, Raw::Text(text), Origin::Flag(flag));
    };
    if let Some(n) = o.sdk_app_id {
        set("sdk.app_id", "--sdk-app-id", n.to_string());
    }
    if let Some(l) = o.log_level {
        set("sdk.log_level", "--log-level", l.short_name().into());
    }
    if let Some(url) = &o.server {
        set("server.url", "--server", url.clone());
    }
    for (key, flag, path) in [
        ("api.socket", "--socket", &o.socket),
        ("state.dir", "--state-dir", &o.state_dir),
    ] {
        if let Some(p) = path {
            let Some(text) = p.to_str() else {
                return Err(ConfigError::BadValue {
                    key: key.into(),
                    value: printable(&p.to_string_lossy()),
                    origin: Origin::Flag(flag),
                    problem: "must be valid UTF-8".into(),
                });
            };
            set(key, flag, text.to_owned());
        }
    }
    Ok(tree)
}
