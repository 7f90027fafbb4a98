//! Typed configuration files: TOML, unknown keys rejected, errors that name the field,
//! and the one rule for the paths they hold.
//!
//! **Paths.** A relative path written inside a config file is relative to the folder of
//! that file; a path given on the command line (`--config`, `--dir`) is relative to the
//! working directory. [`load_resolved`] applies both rules and makes every path
//! absolute, once: an absolute path is left as it is, so loading a config that was
//! already resolved (or resolving twice) changes nothing.

use std::path::{Path, PathBuf};

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

/// A config type whose fields name files. [`load_resolved`] resolves each of them.
pub trait FilePaths {
    /// Every path field of the config (optional ones only when set).
    fn file_paths(&mut self) -> Vec<&mut PathBuf>;
}

/// `path` as an absolute path, relative paths taken from the working directory (for
/// paths given on the command line).
pub fn absolute(path: &Path) -> Result<PathBuf, ConfigError> {
    std::path::absolute(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// Resolves `path` against `base` (an absolute folder) unless it is absolute already.
pub fn resolve_against(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_owned()
    } else {
        base.join(path)
    }
}

/// Reads a config file named on the command line and makes every path in it absolute:
/// relative paths in the file are taken from the file's folder. See the module docs.
pub fn load_resolved<T: DeserializeOwned + FilePaths>(path: &Path) -> Result<T, ConfigError> {
    let mut config: T = load(path)?;
    let file = absolute(path)?;
    let base = file.parent().unwrap_or(Path::new("/"));
    resolve_paths(&mut config, base);
    Ok(config)
}

/// Makes every relative path of `config` relative to `base` (absolute). Idempotent.
pub fn resolve_paths<T: FilePaths>(config: &mut T, base: &Path) {
    for p in config.file_paths() {
        *p = resolve_against(base, p);
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

    #[derive(Debug, serde::Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct WithPaths {
        a: PathBuf,
        b: Option<PathBuf>,
    }

    impl FilePaths for WithPaths {
        fn file_paths(&mut self) -> Vec<&mut PathBuf> {
            let mut v = vec![&mut self.a];
            v.extend(self.b.as_mut());
            v
        }
    }

    #[test]
    fn file_paths_resolve_against_the_file_folder_once() {
        let dir = tempdir("resolve");
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        let file = dir.join("sub/c.toml");
        std::fs::write(&file, "a = \"pki/ca.pem\"\nb = \"/etc/abs.pem\"\n").unwrap();
        let once: WithPaths = load_resolved(&file).unwrap();
        assert_eq!(once.a, dir.join("sub/pki/ca.pem"));
        assert_eq!(once.b.as_deref(), Some(Path::new("/etc/abs.pem")));
        // Loading again, or resolving what was resolved, gives the same paths.
        let again: WithPaths = load_resolved(&file).unwrap();
        assert_eq!(again, once);
        let mut twice = again;
        resolve_paths(&mut twice, &dir.join("elsewhere"));
        assert_eq!(twice, once);
    }

    fn tempdir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("tongban-config-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

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
