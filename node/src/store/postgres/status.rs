//! Statuses of cases filed here, as the handling region reports them, on PostgreSQL.
//! Applied only when newer (by sequence), so a replayed or out-of-order report cannot
//! set a case back — also when two replicas apply reports at once (the row's lock
//! orders them, and the later one compares with what the earlier wrote).

use sqlx::PgConnection;
use tongban_proto::v1::CaseStatus;

use super::{database::PgStore, database::signed};
use crate::db_error::StoreError;
use crate::instants::{now_ms, remote_ms};

impl PgStore {
    pub async fn apply_status(
        &self,
        case_number: String,
        status: CaseStatus,
    ) -> Result<bool, StoreError> {
        self.observed(async {
            let mut conn = self.pool.acquire().await?;
            apply_status_in(&mut conn, &case_number, &status).await
        })
        .await
    }
}

/// The update itself, on a connection or in an open transaction: a delivery's answer is
/// applied in the transaction that marks its outbox entry done.
pub(super) async fn apply_status_in(
    conn: &mut PgConnection,
    case_number: &str,
    status: &CaseStatus,
) -> Result<bool, StoreError> {
    let updated_ms = remote_ms(status.updated_at.as_ref(), now_ms());
    let changed = sqlx::query(
        "UPDATE applications SET stage = $2, status_detail = $3, status_seq = $4,
            status_updated_ms = $5
         WHERE case_number = $1 AND status_seq < $4",
    )
    .bind(case_number)
    .bind(status.stage)
    .bind(&status.detail)
    .bind(signed(status.sequence, "status sequence")?)
    .bind(updated_ms)
    .execute(conn)
    .await?;
    Ok(changed.rows_affected() > 0)
}
