//! Statuses of cases filed here, as the handling region reports them, on SQLite.
//! Applied only when newer (by sequence), so a replayed or out-of-order report cannot
//! set a case back.

use rusqlite::{Connection, params};
use tongban_proto::v1::CaseStatus;

use super::database::SqliteStore;
use crate::db_error::StoreError;
use crate::instants::{now_ms, remote_ms};

impl SqliteStore {
    pub async fn apply_status(
        &self,
        case_number: String,
        status: CaseStatus,
    ) -> Result<bool, StoreError> {
        self.db
            .call(move |conn| apply_status_tx(conn, &case_number, &status))
            .await
    }
}

/// The update itself, on a connection or an open transaction: a delivery's answer is
/// applied in the transaction that marks its outbox entry done.
pub(super) fn apply_status_tx(
    conn: &Connection,
    case_number: &str,
    status: &CaseStatus,
) -> Result<bool, StoreError> {
    let updated_ms = remote_ms(status.updated_at.as_ref(), now_ms());
    let changed = conn.execute(
        "UPDATE applications SET stage = ?2, status_detail = ?3, status_seq = ?4,
            status_updated_ms = ?5
         WHERE case_number = ?1 AND status_seq < ?4",
        params![
            case_number,
            status.stage,
            status.detail,
            status.sequence,
            updated_ms
        ],
    )?;
    Ok(changed > 0)
}
