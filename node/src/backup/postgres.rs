//! A PostgreSQL store dumped and restored with PostgreSQL's own tools: `pg_dump` in its
//! custom format (one consistent snapshot, taken while replicas keep writing) and
//! `pg_restore` in a single transaction into an empty database.

use std::path::{Path, PathBuf};

use tongban_runtime::postgres::config::PostgresConfig;

use super::error::BackupError;

/// Where `pg_dump` and `pg_restore` are.
#[derive(Clone, Debug, Default)]
pub struct PgTools {
    /// Their folder; `None` takes the newest of Debian's `/usr/lib/postgresql/<version>/bin`
    /// (a dump needs a `pg_dump` at least as new as the server), then PATH.
    pub bin_dir: Option<PathBuf>,
}

impl PgTools {
    fn tool(&self, name: &str) -> PathBuf {
        if let Some(dir) = &self.bin_dir {
            return dir.join(name);
        }
        let on_path = std::env::var_os("PATH")
            .into_iter()
            .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .map(|dir| dir.join(name))
            .find(|p| p.is_file());
        // Debian's /usr/bin ones are wrappers that want a local cluster's config; the
        // versioned folder's are the tools themselves. Newest by version, not by name
        // ("9.6" sorts after "15").
        let debian = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .filter_map(|e| {
                let version = version_of(&e.file_name().to_string_lossy())?;
                Some((version, e.path().join("bin").join(name)))
            })
            .filter(|(_, p)| p.is_file())
            .max()
            .map(|(_, p)| p);
        debian.or(on_path).unwrap_or_else(|| PathBuf::from(name))
    }

    /// Whether the database holds a Tongban schema (a node store, or another component's).
    pub(super) async fn holds_schema(&self, db: &PostgresConfig) -> Result<bool, BackupError> {
        let pool = db
            .pool("tongban-backup")
            .map_err(|e| BackupError::Tool(e.to_string()))?;
        let existing =
            sqlx::query_scalar("SELECT to_regclass('public.tongban_schema') IS NOT NULL")
                .fetch_one(&pool)
                .await
                .map_err(|e| BackupError::Tool(format!("{}: {e}", db.display_url())));
        pool.close().await;
        existing
    }

    /// Refuses a database that holds a Tongban schema already: a restore goes into an
    /// empty one.
    pub(super) async fn ensure_empty(&self, db: &PostgresConfig) -> Result<(), BackupError> {
        if self.holds_schema(db).await? {
            return Err(BackupError::Refused(format!(
                "{} already holds a Tongban schema; restore into an empty database",
                db.display_url()
            )));
        }
        Ok(())
    }

    /// Dumps the database to `file`.
    pub async fn dump(&self, db: &PostgresConfig, file: &Path) -> Result<(), BackupError> {
        let mut command = self.command("pg_dump", db)?;
        command
            .arg("--format=custom")
            .arg("--no-owner")
            .arg("--no-privileges")
            .arg(format!("--file={}", file.display()))
            .arg(format!("--dbname={}", db.url));
        run(command, "pg_dump").await
    }

    /// Restores `file` into the database, which must hold no node store yet.
    pub async fn restore(&self, db: &PostgresConfig, file: &Path) -> Result<(), BackupError> {
        self.ensure_empty(db).await?;
        let mut command = self.command("pg_restore", db)?;
        command
            .arg("--no-owner")
            .arg("--no-privileges")
            .arg("--exit-on-error")
            .arg("--single-transaction")
            .arg(format!("--dbname={}", db.url))
            .arg(file);
        run(command, "pg_restore").await
    }

    /// The tool with the connection's password and TLS in libpq's environment variables
    /// (never on its command line, where `ps` would show them).
    fn command(
        &self,
        name: &str,
        db: &PostgresConfig,
    ) -> Result<tokio::process::Command, BackupError> {
        let mut command = tokio::process::Command::new(self.tool(name));
        if let Some(path) = &db.password_file {
            let password = std::fs::read_to_string(path).map_err(super::error::io_error(path))?;
            command.env("PGPASSWORD", password.trim_end_matches(['\n', '\r']));
        }
        let tls = &db.tls;
        for (var, value) in [
            ("PGSSLMODE", tls.mode.as_ref().map(|m| m.into())),
            (
                "PGSSLROOTCERT",
                tls.ca.as_ref().map(|p| p.as_os_str().to_owned()),
            ),
            (
                "PGSSLCERT",
                tls.cert.as_ref().map(|p| p.as_os_str().to_owned()),
            ),
            (
                "PGSSLKEY",
                tls.key.as_ref().map(|p| p.as_os_str().to_owned()),
            ),
        ] {
            if let Some(value) = value {
                command.env(var, value);
            }
        }
        Ok(command)
    }
}

/// A version folder's name as numbers: "15" → [15], "9.6" → [9, 6].
fn version_of(name: &str) -> Option<Vec<u32>> {
    name.split('.').map(|part| part.parse().ok()).collect()
}

async fn run(mut command: tokio::process::Command, name: &str) -> Result<(), BackupError> {
    let output = command.output().await.map_err(|e| {
        BackupError::Tool(format!("{name}: {e} (is PostgreSQL's client installed?)"))
    })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(BackupError::Tool(format!(
            "{name} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::version_of;

    #[test]
    fn versions_compare_as_numbers() {
        assert!(version_of("15") > version_of("9.6"));
        assert!(version_of("16") > version_of("15"));
        assert_eq!(version_of("main"), None);
    }
}
