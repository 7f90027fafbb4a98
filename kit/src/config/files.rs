//! Writing a config file, and how a config names the files it refers to.

use std::path::{Path, PathBuf};

use crate::error::{KitError, io_err};

/// Writes `value` as TOML to `path`, after the comment line(s) `header`.
pub fn write_toml(
    path: &Path,
    value: &impl serde::Serialize,
    header: &str,
) -> Result<(), KitError> {
    let text = toml::to_string_pretty(value).map_err(|e| KitError::Other(e.to_string()))?;
    std::fs::write(path, format!("{header}\n{text}")).map_err(io_err(path))
}

/// `path` as a config inside `dir` should name it: relative to `dir` when it lies
/// inside, else absolute.
pub fn file_relative(dir: &Path, path: &Path) -> PathBuf {
    match path.strip_prefix(dir) {
        Ok(inside) => inside.to_owned(),
        Err(_) => std::path::absolute(path).unwrap_or_else(|_| path.to_owned()),
    }
}
