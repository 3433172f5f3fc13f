//! Value types of `pipelines.toml` and how each parses: [`EnvString`] (with `${VAR}`
//! expanded by `env`), [`HumanDuration`], [`ByteSize`] and a plugin's
//! [`ConfigValue`]. A bad value fails the parse with a message showing the format.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::env;

/// A string with `${VAR}` / `${VAR:-default}` expanded from the environment while
/// parsing, so an unset variable is reported at its line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvString(pub String);

impl<'de> Deserialize<'de> for EnvString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        env::expand(&raw, &|name| std::env::var(name).ok())
            .map(EnvString)
            .map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for EnvString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A humantime duration: `200ms`, `15m`, `7d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        humantime::parse_duration(&raw)
            .map(HumanDuration)
            .map_err(|e| {
                serde::de::Error::custom(format!(
                    "{e} in {raw:?} (write durations like \"200ms\", \"15m\", \"7d\")"
                ))
            })
    }
}

/// A size: `64MiB`, `512KiB`, or a plain number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => Ok(ByteSize(n)),
            Raw::Text(text) => text
                .parse::<bytesize::ByteSize>()
                .map(|b| ByteSize(b.as_u64()))
                .map_err(|e| {
                    serde::de::Error::custom(format!(
                        "{e} in {text:?} (write sizes like \"64MiB\")"
                    ))
                }),
        }
    }
}

/// A plugin config value: strings as they are, numbers and booleans rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigValue(pub String);

impl<'de> Deserialize<'de> for ConfigValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = match toml::Value::deserialize(d)? {
            toml::Value::String(s) => env::expand(&s, &|name| std::env::var(name).ok())
                .map_err(serde::de::Error::custom)?,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Datetime(d) => d.to_string(),
            other => {
                return Err(serde::de::Error::custom(format!(
                    "plugin config values must be strings, numbers or booleans, got a {}",
                    other.type_str()
                )));
            }
        };
        Ok(ConfigValue(text))
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{GOOD, parse};

    #[test]
    fn unset_variable_is_reported_at_its_line() {
        let text = GOOD.replace(
            "${WEIR_TEST_SURELY_UNSET:-embedded}",
            "${WEIR_TEST_SURELY_UNSET}",
        );
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.starts_with("pipelines.toml:3:"), "{err}");
        assert!(err.contains("WEIR_TEST_SURELY_UNSET is not set"), "{err}");
    }

    #[test]
    fn bad_durations_and_sizes_explain_the_format() {
        let err = parse(&GOOD.replace("\"150ms\"", "\"fast\""))
            .unwrap_err()
            .to_string();
        assert!(err.contains("200ms"), "{err}");
        let err = parse(&GOOD.replace("\"32MiB\"", "\"lots\""))
            .unwrap_err()
            .to_string();
        assert!(err.contains("64MiB"), "{err}");
    }
}
