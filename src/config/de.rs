//! Deserialising [`Config`] from a [`Tree`], so that the struct's own serde code — its
//! field names, `deny_unknown_fields` and `deserialize_with` checks — is the only schema.
//!
//! Each value is handed to its field as it was written: a TOML value as it is, text from
//! the environment or a flag through [`Text`], which reads whatever type the field asks for.
//! Whatever fails is located on the way out — the dotted key, the value as written and its
//! origin — and becomes a [`ConfigError`].

use serde::de::{
    self, DeserializeSeed, Deserializer, Error as _, IntoDeserializer, MapAccess, SeqAccess,
    Visitor,
};
use serde::Deserialize;
use std::collections::{btree_map, BTreeMap};
use std::fmt;

use super::error::{ConfigError, Origin};
use super::keys::suggest;
use super::sources::{Entry, Node, Raw, Tree};
use super::Config;

/// Deserialises the configuration from `tree`.
pub(super) fn config(tree: &Tree) -> Result<Config, ConfigError> {
    Config::deserialize(TreeDe(tree)).map_err(DeError::into_config_error)
}

/// Why deserialising failed, and — once known — where.
#[derive(Debug)]
pub(super) struct DeError {
    /// `deny_unknown_fields` refused the key.
    unknown: bool,
    /// What the value must be (the field's check says), or what went wrong.
    problem: String,
    /// The dotted key, the value as written (printable) and its origin.
    at: Option<(String, String, Origin)>,
}

impl DeError {
    /// Records where the error happened, unless a deeper level already did.
    fn at(mut self, key: impl FnOnce() -> String, entry: &Entry) -> DeError {
        if self.at.is_none() {
            self.at = Some((key(), entry.raw.shown(), entry.origin.clone()));
        }
        self
    }

    fn into_config_error(self) -> ConfigError {
        match self.at {
            Some((key, _, origin)) if self.unknown => ConfigError::UnknownKey {
                suggestion: suggest(&key),
                key,
                origin,
            },
            Some((key, value, origin)) => ConfigError::BadValue {
                key,
                value,
                origin,
                problem: self.problem,
            },
            // Every value is located on its way out; this is only a safety net.
            None => ConfigError::Inconsistent {
                message: format!("configuration: {}", self.problem),
            },
        }
    }
}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> DeError {
        DeError {
            unknown: false,
            problem: msg.to_string(),
            at: None,
        }
    }

    fn unknown_field(field: &str, _expected: &'static [&'static str]) -> DeError {
        DeError {
            unknown: true,
            problem: format!("unknown key {field}"),
            at: None,
        }
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.problem)
    }
}

impl std::error::Error for DeError {}

/// The top level: each name of the tree, then its section.
struct TreeDe<'a>(&'a Tree);

impl<'de> Deserializer<'de> for TreeDe<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_map(Sections {
            iter: self.0 .0.iter(),
            current: None,
        })
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct enum
        identifier ignored_any
    }
}

struct Sections<'a> {
    iter: btree_map::Iter<'a, String, Node>,
    current: Option<(&'a String, &'a Node)>,
}

/// Where to report a problem with a whole top-level name: its first key (so an unknown
/// section from the environment reads `nope.url`), else the name itself.
fn locate_node(e: DeError, name: &str, node: &Node) -> DeError {
    match node {
        Node::Table { keys, origin } => match keys.iter().next() {
            Some((k, entry)) => e.at(|| format!("{name}.{k}"), entry),
            None => {
                let entry = Entry {
                    raw: Raw::Text(String::new()),
                    origin: origin.clone(),
                };
                e.at(|| name.to_owned(), &entry)
            }
        },
        Node::Value(entry) => e.at(|| name.to_owned(), entry),
    }
}

impl<'de> MapAccess<'de> for Sections<'_> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let Some((name, node)) = self.iter.next() else {
            return Ok(None);
        };
        self.current = Some((name, node));
        seed.deserialize(name.as_str().into_deserializer())
            .map(Some)
            .map_err(|e: DeError| locate_node(e, name, node))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let Some((name, node)) = self.current.take() else {
            return Err(DeError::custom("a value without a key"));
        };
        match node {
            Node::Table { keys, .. } => seed.deserialize(SectionDe {
                section: name,
                keys,
            }),
            Node::Value(_) => Err(locate_node(
                DeError::custom(format!("must be a section, [{name}]")),
                name,
                node,
            )),
        }
    }
}

/// One section: each key, then its value.
struct SectionDe<'a> {
    section: &'a str,
    keys: &'a BTreeMap<String, Entry>,
}

impl<'de> Deserializer<'de> for SectionDe<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_map(Keys {
            section: self.section,
            iter: self.keys.iter(),
            current: None,
        })
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct enum
        identifier ignored_any
    }
}

struct Keys<'a> {
    section: &'a str,
    iter: btree_map::Iter<'a, String, Entry>,
    current: Option<(&'a String, &'a Entry)>,
}

impl<'de> MapAccess<'de> for Keys<'_> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let Some((key, entry)) = self.iter.next() else {
            return Ok(None);
        };
        self.current = Some((key, entry));
        let section = self.section;
        seed.deserialize(key.as_str().into_deserializer())
            .map(Some)
            .map_err(|e: DeError| e.at(|| format!("{section}.{key}"), entry))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let Some((key, entry)) = self.current.take() else {
            return Err(DeError::custom("a value without a key"));
        };
        let value = match &entry.raw {
            Raw::Toml(v) => seed
                .deserialize(v.clone())
                .map_err(|e| DeError::custom(e.message())),
            Raw::Text(s) => seed.deserialize(Text(s)),
        };
        let section = self.section;
        value.map_err(|e| e.at(|| format!("{section}.{key}"), entry))
    }
}

/// Text from an environment variable or a flag, read as the type the field asks for:
/// numbers and booleans (`true`/`false`, `yes`/`no`, `on`/`off`, `1`/`0`) are parsed,
/// a list is comma-separated, and empty text is an unset optional value. Anything else
/// (a string, or a field's own parsing) gets the text as it is.
struct Text<'a>(&'a str);

impl Text<'_> {
    fn parse<T: std::str::FromStr>(&self) -> Result<T, DeError> {
        self.0
            .trim()
            .parse()
            .map_err(|_| DeError::custom("not a number"))
    }
}

/// `deserialize_x => visit_y(T)`: the text parsed as `T`, handed to `visit_y` (the
/// visitor checks the range of narrower types).
macro_rules! parsed {
    ($de:lifetime; $($method:ident => $visit:ident($ty:ty)),* $(,)?) => {$(
        fn $method<V: Visitor<$de>>(self, visitor: V) -> Result<V::Value, DeError> {
            visitor.$visit(self.parse::<$ty>()?)
        }
    )*};
}

impl<'de> Deserializer<'de> for Text<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_str(self.0)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.0.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => visitor.visit_bool(true),
            "false" | "no" | "off" | "0" => visitor.visit_bool(false),
            _ => Err(DeError::custom("not a boolean")),
        }
    }

    parsed! { 'de;
        deserialize_u8 => visit_u64(u64), deserialize_u16 => visit_u64(u64),
        deserialize_u32 => visit_u64(u64), deserialize_u64 => visit_u64(u64),
        deserialize_i8 => visit_i64(i64), deserialize_i16 => visit_i64(i64),
        deserialize_i32 => visit_i64(i64), deserialize_i64 => visit_i64(i64),
        deserialize_f32 => visit_f64(f64), deserialize_f64 => visit_f64(f64),
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if self.0.trim().is_empty() {
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_seq(TextList(self.0.split(',')))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        i128 u128 char str string bytes byte_buf unit unit_struct tuple tuple_struct map
        struct enum identifier ignored_any
    }
}

/// The items of a comma-separated list; empty items are skipped.
struct TextList<'a>(std::str::Split<'a, char>);

impl<'de> SeqAccess<'de> for TextList<'_> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        for item in self.0.by_ref() {
            let item = item.trim();
            if !item.is_empty() {
                return seed.deserialize(Text(item)).map(Some);
            }
        }
        Ok(None)
    }
}
