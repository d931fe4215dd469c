//! A YAML mapping whose keys must be unique.
//!
//! YAML parsers let the last of two equal keys win, so a fleet config that lists
//! `web01.example.org` twice under `allow:` or a certificate twice under `certs:` would
//! silently lose the first entry. [`UniqueMap`] refuses the second one instead, naming it.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};

/// A mapping read from YAML that names each key at most once.
#[derive(Debug)]
pub(super) struct UniqueMap<V>(pub(super) BTreeMap<String, V>);

impl<V> Default for UniqueMap<V> {
    fn default() -> Self {
        Self(BTreeMap::new())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for UniqueMap<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct UniqueVisitor<V>(PhantomData<V>);

        impl<'de, V: Deserialize<'de>> Visitor<'de> for UniqueVisitor<V> {
            type Value = UniqueMap<V>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = BTreeMap::new();
                while let Some(key) = map.next_key::<String>()? {
                    if entries.contains_key(&key) {
                        return Err(de::Error::custom(format!(
                            "`{key}` is given twice in one mapping: give it once (the YAML \
                             rule would silently drop the first)"
                        )));
                    }
                    let value = map.next_value()?;
                    entries.insert(key, value);
                }
                Ok(UniqueMap(entries))
            }
        }

        deserializer.deserialize_map(UniqueVisitor(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_given_twice_is_refused() {
        let ok: UniqueMap<u32> = serde_yaml::from_str("a: 1\nb: 2\n").expect("unique");
        assert_eq!(ok.0.len(), 2);
        let err = serde_yaml::from_str::<UniqueMap<u32>>("a: 1\na: 2\n")
            .expect_err("duplicate")
            .to_string();
        assert!(err.contains("`a` is given twice"), "{err}");
    }
}
