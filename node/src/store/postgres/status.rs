//! Statuses of cases filed here, as the handling region reports them, on PostgreSQL.
//! Applied only when newer (by sequence), so a replayed or out-of-order report cannot
//! set a case back — also when two replicas apply reports at once (the row's lock
//! orders them, and the later one compares with what the earlier wrote). A joint
//! case's report applies to its part, and the part's approval hands over the parts
//! that waited for it in the same transaction.

use sqlx::{PgConnection, Row};

use super::{database::PgStore, database::signed, filing::insert_hand_overs};
use crate::db_error::StoreError;
use crate::instants::{now_ms, remote_ms};
use crate::store::filing::{StatusApplied, StatusReport, apply_joint};

impl PgStore {
    pub async fn apply_status(&self, report: StatusReport) -> Result<StatusApplied, StoreError> {
        self.transaction(async |tx| apply_status_in(tx, &report).await)
            .await
    }

    /// Marks an entry delivered, whoever holds its lease now (the receiver answered);
    /// for a delivery, records the handling region's answer on the application in the
    /// same transaction. Nothing happens when the entry is no longer pending: it was
    /// settled already, by a replica that claimed it after this one's lease ended.
    pub async fn outbox_done(
        &self,
        id: i64,
        delivered: Option<StatusReport>,
    ) -> Result<(), StoreError> {
        self.transaction(async |tx| {
            let done = sqlx::query(
                "UPDATE outbox SET state = 'done', done_ms = $2, attempts = attempts + 1,
                    lease_owner = NULL, lease_until_ms = NULL
                 WHERE id = $1 AND state = 'pending'",
            )
            .bind(id)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                return Ok(());
            }
            if let Some(report) = delivered {
                apply_status_in(tx, &report).await?;
            }
            Ok(())
        })
        .await
    }
}

/// The update itself, in an open transaction: a delivery's answer is applied in the
/// transaction that marks its outbox entry done.
pub(super) async fn apply_status_in(
    conn: &mut PgConnection,
    report: &StatusReport,
) -> Result<StatusApplied, StoreError> {
    // Locked: two replicas applying two parts' reports at once take turns.
    let row = sqlx::query(
        "SELECT parts, payload, stage FROM applications WHERE case_number = $1 FOR UPDATE",
    )
    .bind(&report.case_number)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        return Ok(StatusApplied::default());
    };
    let now = now_ms();
    let parts: Option<String> = row.try_get(0)?;
    let Some(parts) = parts else {
        return apply_whole(conn, report, now).await;
    };
    let payload: Vec<u8> = row.try_get(1)?;
    let Some(update) = apply_joint(&parts, &payload, row.try_get(2)?, report)? else {
        return Ok(StatusApplied::default());
    };
    sqlx::query(
        "UPDATE applications SET parts = $2, stage = $3, status_detail = $4, status_seq = $5,
            status_updated_ms = $6
         WHERE case_number = $1",
    )
    .bind(&report.case_number)
    .bind(&update.parts)
    .bind(update.combined.stage)
    .bind(&update.combined.detail)
    .bind(signed(update.combined.sequence, "status sequence")?)
    .bind(remote_ms(report.status.updated_at.as_ref(), now))
    .execute(&mut *conn)
    .await?;
    insert_hand_overs(conn, &update.hand_overs, now).await?;
    Ok(update.applied)
}

/// A case one region handles: its status, if newer.
async fn apply_whole(
    conn: &mut PgConnection,
    report: &StatusReport,
    now: i64,
) -> Result<StatusApplied, StoreError> {
    let status = &report.status;
    if let Some(reference) = &report.reference {
        sqlx::query("UPDATE applications SET handling_reference = $2 WHERE case_number = $1")
            .bind(&report.case_number)
            .bind(reference)
            .execute(&mut *conn)
            .await?;
    }
    let changed = sqlx::query(
        "UPDATE applications SET stage = $2, status_detail = $3, status_seq = $4,
            status_updated_ms = $5
         WHERE case_number = $1 AND status_seq < $4",
    )
    .bind(&report.case_number)
    .bind(status.stage)
    .bind(&status.detail)
    .bind(signed(status.sequence, "status sequence")?)
    .bind(remote_ms(status.updated_at.as_ref(), now))
    .execute(conn)
    .await?;
    Ok(StatusApplied::whole(
        changed.rows_affected() > 0,
        status.stage,
    ))
}
