//! A replica's turn at a job that one replica at a time should do (see
//! `postgres/turn.rs`). A SQLite store has one process: its turn is always held.

use super::postgres::PgTurn;

/// Held while this replica does the job; dropping it hands the job on.
pub enum Turn {
    /// The only process (SQLite).
    Alone,
    Shared(PgTurn),
}

impl Turn {
    /// Whether the turn is still this replica's; once `false`, drop it and take the
    /// turn again (another replica may have it now).
    pub async fn still_held(&mut self) -> bool {
        match self {
            Self::Alone => true,
            Self::Shared(turn) => turn.still_held().await,
        }
    }
}
