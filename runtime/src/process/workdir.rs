//! Working folders that tools create and wipe (the demo's, the benchmark's).
//!
//! A tool wipes a folder only if it made it: the folder carries a marker file naming the
//! tool, and a folder without the marker is wiped only when it is empty. Anything else
//! is refused, so `--dir .` or `--dir $HOME` can never delete a user's files.

use std::path::{Path, PathBuf};

/// Name of the marker file in a tool's working folder.
pub const MARKER: &str = ".tongban-workdir";

/// Why a working folder could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum WorkDirError {
    #[error(
        "{path} is not empty and was not created by `{tool}` (no {MARKER} file in it); \
         refusing to wipe it. Choose a new or empty folder with --dir."
    )]
    NotOurs { path: String, tool: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// Makes `dir` an empty working folder of `tool` and returns its absolute path: created
/// if missing, wiped if it holds `tool`'s marker (or nothing), refused otherwise.
pub fn prepare(dir: &Path, tool: &str) -> Result<PathBuf, WorkDirError> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| WorkDirError::Io { path, source }
    };
    let dir = std::path::absolute(dir).map_err(io(dir))?;
    if dir.exists() {
        let marker = dir.join(MARKER);
        let ours = std::fs::read_to_string(&marker).is_ok_and(|owner| owner.trim() == tool);
        let empty = std::fs::read_dir(&dir).map_err(io(&dir))?.next().is_none();
        if !ours && !empty {
            return Err(WorkDirError::NotOurs {
                path: dir.display().to_string(),
                tool: tool.to_owned(),
            });
        }
        if ours {
            std::fs::remove_dir_all(&dir).map_err(io(&dir))?;
        }
    }
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    std::fs::write(dir.join(MARKER), format!("{tool}\n")).map_err(io(&dir))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("tongban-workdir-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_folder_is_wiped_only_when_the_tool_made_it() {
        let dir = scratch("own");
        let made = prepare(&dir, "demo").unwrap();
        assert!(made.is_absolute());
        std::fs::write(made.join("state.db"), "x").unwrap();
        // Ours: wiped and marked again.
        prepare(&dir, "demo").unwrap();
        assert!(!made.join("state.db").exists());
        assert!(made.join(MARKER).exists());
        // Another tool's folder is not ours.
        std::fs::write(made.join("state.db"), "x").unwrap();
        let err = prepare(&dir, "bench").unwrap_err().to_string();
        assert!(err.contains("refusing"), "{err}");
        assert!(made.join("state.db").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_foreign_folder_is_refused_and_left_alone() {
        let dir = scratch("foreign");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("precious.txt"), "keep me").unwrap();
        assert!(matches!(
            prepare(&dir, "demo"),
            Err(WorkDirError::NotOurs { .. })
        ));
        assert_eq!(
            std::fs::read_to_string(dir.join("precious.txt")).unwrap(),
            "keep me"
        );
        // An empty folder is fine.
        std::fs::remove_file(dir.join("precious.txt")).unwrap();
        prepare(&dir, "demo").unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
