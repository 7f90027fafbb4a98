//! Typed configuration files: TOML, unknown keys rejected, errors that name the field.

use std::path::Path;

use serde::de::DeserializeOwned;

/// A config file that could not be used; the message names the file and the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config {path}: {message}")]
    Invalid { path: String, message: String },
}

impl ConfigError {
    /// A semantic error found after parsing (`field` is the dotted path).
    pub fn field(path: &Path, field: &str, problem: impl std::fmt::Display) -> Self {
        Self::Invalid {
            path: path.display().to_string(),
            message: format!("field `{field}`: {problem}"),
        }
    }
}

/// Reads and parses a TOML config file.
pub fn load<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse(&text, path)
}

/// Parses TOML text; `origin` only names the source in errors.
pub fn parse<T: DeserializeOwned>(text: &str, origin: &Path) -> Result<T, ConfigError> {
    let de = toml::Deserializer::parse(text).map_err(|e| ConfigError::Invalid {
        path: origin.display().to_string(),
        message: e.to_string(),
    })?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        ConfigError::Invalid {
            path: origin.display().to_string(),
            message: format!("field `{field}`: {}", e.into_inner().message().trim()),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        name: String,
        inner: Inner,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        port: u16,
    }

    #[test]
    fn errors_name_the_field() {
        let err = parse::<Outer>("name = \"x\"\n[inner]\nport = \"a\"\n", Path::new("t.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("inner.port"), "{err}");
        let err = parse::<Outer>(
            "name = \"x\"\n[inner]\nport = 1\nhost = 2\n",
            Path::new("t.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("host"), "{err}");
    }
}
