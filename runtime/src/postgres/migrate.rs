//! Schema steps for a PostgreSQL database that several processes open at once.
//!
//! As with the SQLite databases, a schema is an ordered list of steps, each run once;
//! the version reached is kept per component in `tongban_schema`. Replicas starting
//! together serialise on a transaction-scoped advisory lock per component, so exactly
//! one runs each step and the others find it done. A step commits with its version
//! (PostgreSQL's DDL is transactional): a crash leaves the last complete version.

use sqlx::{Connection, PgPool, Postgres, Transaction};

/// A migration failed.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("{component}: migrating to schema version {version}: {source}")]
    Step {
        component: &'static str,
        version: usize,
        source: sqlx::Error,
    },
    #[error("{component}: {source}")]
    Database {
        component: &'static str,
        source: sqlx::Error,
    },
    /// A newer build migrated the database; this one could misread what it means.
    #[error("{component} has schema version {found}; this build knows versions up to {known}")]
    TooNew {
        component: &'static str,
        found: i64,
        known: usize,
    },
}

const SCHEMA_TABLE: &str = "CREATE TABLE IF NOT EXISTS tongban_schema (
    component TEXT PRIMARY KEY,
    version   BIGINT NOT NULL
)";

/// Brings `component`'s schema up to `steps.len()`; returns the version found before.
pub async fn migrate(
    pool: &PgPool,
    component: &'static str,
    steps: &[&'static str],
) -> Result<usize, MigrateError> {
    let db = |source| MigrateError::Database { component, source };
    let mut conn = pool.acquire().await.map_err(db)?;
    let mut found = None;
    for (index, step) in steps.iter().enumerate() {
        let version = index + 1;
        let fail = |source| MigrateError::Step {
            component,
            version,
            source,
        };
        let mut tx = conn.begin().await.map_err(fail)?;
        let current = locked_version(&mut tx, component).await.map_err(fail)?;
        found.get_or_insert(current);
        if current > steps.len() as i64 {
            return Err(MigrateError::TooNew {
                component,
                found: current,
                known: steps.len(),
            });
        }
        if current >= version as i64 {
            continue;
        }
        sqlx::raw_sql(*step).execute(&mut *tx).await.map_err(fail)?;
        sqlx::query(
            "INSERT INTO tongban_schema (component, version) VALUES ($1, $2)
             ON CONFLICT (component) DO UPDATE SET version = excluded.version",
        )
        .bind(component)
        .bind(version as i64)
        .execute(&mut *tx)
        .await
        .map_err(fail)?;
        tx.commit().await.map_err(fail)?;
        tracing::debug!(component, version, "database schema migrated");
    }
    Ok(found.unwrap_or(0).max(0) as usize)
}

/// The component's version, read under its advisory lock (held to the end of `tx`).
async fn locked_version(
    tx: &mut Transaction<'_, Postgres>,
    component: &'static str,
) -> Result<i64, sqlx::Error> {
    // The schema table itself is made under a lock every component shares: two
    // processes' `CREATE TABLE IF NOT EXISTS` can otherwise race on the catalog.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('tongban_schema'))")
        .execute(&mut **tx)
        .await?;
    sqlx::raw_sql(SCHEMA_TABLE).execute(&mut **tx).await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
        .bind(component)
        .execute(&mut **tx)
        .await?;
    let version: Option<i64> =
        sqlx::query_scalar("SELECT version FROM tongban_schema WHERE component = $1")
            .bind(component)
            .fetch_optional(&mut **tx)
            .await?;
    Ok(version.unwrap_or(0))
}
