//! `imlinkd --check-config`: the effective configuration as TOML, rendered from the struct
//! (its serde serialisation, in the schema's key order) with the origin of every value.
//! The configuration holds no secret: `server.url` cannot carry a user name or password.

use super::error::escaped;
use super::keys::schema;
use super::{Loaded, DEFAULT_CONFIG_PATH};

impl Loaded {
    /// The effective configuration as TOML that [`super::load`] reads back to the same
    /// values, each key followed by a comment saying where its value came from.
    pub fn to_toml(&self) -> String {
        let mut out = String::from("# Effective configuration of imlinkd\n");
        match &self.file {
            Some(p) => out.push_str(&format!("# file: {}\n", escaped(&p.to_string_lossy()))),
            None => out.push_str(&format!(
                "# file: none ({DEFAULT_CONFIG_PATH} does not exist)\n"
            )),
        }
        let table = match toml::Value::try_from(&self.config) {
            Ok(toml::Value::Table(t)) => t,
            Ok(_) => toml::Table::new(),
            Err(e) => {
                out.push_str(&format!("# cannot render the configuration: {e}\n"));
                return out;
            }
        };
        for (section, names) in &schema().sections {
            out.push_str(&format!("\n[{section}]\n"));
            let values = table.get(*section).and_then(toml::Value::as_table);
            for name in names.iter() {
                let origin = self.origin(&format!("{section}.{name}"));
                match values.and_then(|t| t.get(*name)) {
                    Some(v) => out.push_str(&format!("{name} = {v}  # {origin}\n")),
                    None => out.push_str(&format!("# {name} is unset  # {origin}\n")),
                }
            }
        }
        out
    }
}
