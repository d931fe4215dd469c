//! Durations in config files: `90s`, `5m`, `2h`, `1d`, or a bare number of seconds.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, de};

/// A duration as written in a config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConfigDuration(pub(crate) Duration);

impl ConfigDuration {
    pub(crate) fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let number: u64 = number.parse().ok()?;
        let seconds = match unit.trim() {
            "" | "s" => number,
            "m" => number.checked_mul(60)?,
            "h" => number.checked_mul(3600)?,
            "d" => number.checked_mul(86_400)?,
            _ => return None,
        };
        Some(Self(Duration::from_secs(seconds)))
    }
}

impl fmt::Display for ConfigDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}s", self.0.as_secs())
    }
}

impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Seconds(u64),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Seconds(seconds) => Ok(Self(Duration::from_secs(seconds))),
            Raw::Text(text) => Self::parse(&text).ok_or_else(|| {
                de::Error::custom(format!(
                    "`{text}` is not a duration: write a number with s, m, h or d, like 300s or 2h"
                ))
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_bare_seconds() {
        assert_eq!(
            ConfigDuration::parse("300s").map(|d| d.0.as_secs()),
            Some(300)
        );
        assert_eq!(
            ConfigDuration::parse("2h").map(|d| d.0.as_secs()),
            Some(7200)
        );
        assert_eq!(
            ConfigDuration::parse("5m").map(|d| d.0.as_secs()),
            Some(300)
        );
        assert_eq!(
            ConfigDuration::parse("1d").map(|d| d.0.as_secs()),
            Some(86_400)
        );
        assert_eq!(ConfigDuration::parse("42").map(|d| d.0.as_secs()), Some(42));
    }

    #[test]
    fn rejects_unknown_units_and_garbage() {
        assert_eq!(ConfigDuration::parse("5w"), None);
        assert_eq!(ConfigDuration::parse("s"), None);
        assert_eq!(ConfigDuration::parse("-5s"), None);
    }
}
