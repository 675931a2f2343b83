//! The keys, read off [`Config`] itself: serde hands every deserializer the field names of
//! the struct it builds, so one walk over `Config` gives the sections and their keys in
//! declaration order. Nothing here lists a key by hand.

use serde::de::{self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, Visitor};
use serde::Deserialize;
use std::cell::RefCell;
use std::sync::OnceLock;

use super::Config;

/// The sections and their keys.
#[derive(Debug)]
pub(super) struct Schema {
    /// Every section and its keys, in declaration order.
    pub sections: Vec<(&'static str, &'static [&'static str])>,
    /// Every key, dotted (`server.url`).
    dotted: Vec<String>,
}

/// The schema of [`Config`], worked out once.
pub(super) fn schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let found = RefCell::new(Vec::new());
        // Only the field names matter; the `Config` built from the defaults is dropped.
        let _ = Config::deserialize(Walker {
            found: &found,
            section: None,
        });
        let sections = found.into_inner();
        let dotted = sections
            .iter()
            .flat_map(|(s, keys)| keys.iter().map(move |k| format!("{s}.{k}")))
            .collect();
        Schema { sections, dotted }
    })
}

/// Every key of the configuration, dotted (`server.url`), in file order.
pub fn keys() -> impl Iterator<Item = &'static str> {
    schema().dotted.iter().map(String::as_str)
}

/// The environment variable that sets `key` (`server.url` → `IMLINK_SERVER__URL`).
pub fn env_var_for(key: &str) -> String {
    format!("IMLINK_{}", key.replace('.', "__").to_ascii_uppercase())
}

/// The known key (or section) closest to an unknown one, if it is close: at most three
/// edits away, and fewer than half its length. A key of a known section is compared with
/// that section's keys; one outside any section with the sections and with every key's
/// name, so `log_level` at the top of a file suggests `sdk.log_level`.
pub(super) fn suggest(unknown: &str) -> Option<&'static str> {
    let mut best: Option<(usize, &'static str)> = None;
    let mut consider = |written: &str, against: &str, suggestion: &'static str| {
        let d = strsim::levenshtein(written, against);
        let close = d <= 3 && d * 2 < written.chars().count().max(2);
        if close && best.is_none_or(|(b, _)| d < b) {
            best = Some((d, suggestion));
        }
    };
    let sections = &schema().sections;
    match unknown.split_once('.') {
        Some((section, name)) => match sections.iter().find(|(s, _)| *s == section) {
            Some(_) => {
                for key in keys().filter(|k| k.split_once('.').is_some_and(|(s, _)| s == section)) {
                    consider(name, &key[section.len() + 1..], key);
                }
            }
            None => {
                for key in keys() {
                    consider(unknown, key, key);
                }
            }
        },
        None => {
            for (section, _) in sections {
                consider(unknown, section, section);
            }
            for key in keys() {
                if let Some((_, name)) = key.split_once('.') {
                    consider(unknown, name, key);
                }
            }
        }
    }
    best.map(|(_, s)| s)
}

/// A deserializer that records the field names of `Config` (the sections) and of each
/// section (the keys), and builds every section from its defaults.
struct Walker<'a> {
    found: &'a RefCell<Vec<(&'static str, &'static [&'static str])>>,
    /// The section being walked; `None` at the top.
    section: Option<&'static str>,
}

impl<'de> Deserializer<'de> for Walker<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom(
            "the configuration is a struct of section structs",
        ))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        match self.section {
            None => visitor.visit_map(Sections {
                found: self.found,
                names: fields.iter(),
                current: None,
            }),
            Some(section) => {
                self.found.borrow_mut().push((section, fields));
                visitor.visit_map(de::value::MapDeserializer::<_, Self::Error>::new(
                    std::iter::empty::<(&str, &str)>(),
                ))
            }
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

/// The top level of the walk: each section name, then a [`Walker`] for the section.
struct Sections<'a> {
    found: &'a RefCell<Vec<(&'static str, &'static [&'static str])>>,
    names: std::slice::Iter<'static, &'static str>,
    current: Option<&'static str>,
}

impl<'de> MapAccess<'de> for Sections<'_> {
    type Error = de::value::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        let Some(&name) = self.names.next() else {
            return Ok(None);
        };
        self.current = Some(name);
        seed.deserialize(name.into_deserializer()).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, Self::Error> {
        let section = self
            .current
            .take()
            .ok_or_else(|| de::Error::custom("a value without a key"))?;
        seed.deserialize(Walker {
            found: self.found,
            section: Some(section),
        })
    }
}
