//! Statuses of cases filed here, as the handling region reports them, on SQLite.
//! Applied only when newer (by sequence), so a replayed or out-of-order report cannot
//! set a case back. A joint case's report applies to its part, and the part's
//! approval hands over the parts that waited for it in the same transaction.

use rusqlite::{Connection, OptionalExtension, params};

use super::{database::SqliteStore, filing::insert_hand_over};
use crate::db_error::StoreError;
use crate::instants::{now_ms, remote_ms};
use crate::store::filing::{StatusApplied, StatusReport, apply_joint};

impl SqliteStore {
    pub async fn apply_status(&self, report: StatusReport) -> Result<StatusApplied, StoreError> {
        self.db
            .call(move |conn| {
                let tx = conn.transaction()?;
                let applied = apply_status_tx(&tx, &report)?;
                tx.commit()?;
                Ok(applied)
            })
            .await
    }

    /// Marks an outbox entry done; a delivery's answer is applied in the same
    /// transaction.
    pub async fn outbox_done(
        &self,
        id: i64,
        delivered: Option<StatusReport>,
    ) -> Result<(), StoreError> {
        self.db
            .call(move |conn| {
                let tx = conn.transaction()?;
                tx.execute(
                    "UPDATE outbox SET state = 'done', done_ms = ?2, attempts = attempts + 1
                     WHERE id = ?1",
                    params![id, now_ms()],
                )?;
                if let Some(report) = delivered {
                    apply_status_tx(&tx, &report)?;
                }
                tx.commit()?;
                Ok(())
            })
            .await
    }
}

/// The update itself, in an open transaction: a delivery's answer is applied in the
/// transaction that marks its outbox entry done.
pub(super) fn apply_status_tx(
    conn: &Connection,
    report: &StatusReport,
) -> Result<StatusApplied, StoreError> {
    let case: Option<(Option<String>, Vec<u8>, i32)> = conn
        .query_row(
            "SELECT parts, payload, stage FROM applications WHERE case_number = ?1",
            [&report.case_number],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let Some((parts, payload, stage_before)) = case else {
        return Ok(StatusApplied::default());
    };
    let now = now_ms();
    let Some(parts) = parts else {
        return apply_whole(conn, report, now);
    };
    let Some(update) = apply_joint(&parts, &payload, stage_before, report)? else {
        return Ok(StatusApplied::default());
    };
    conn.execute(
        "UPDATE applications SET parts = ?2, stage = ?3, status_detail = ?4, status_seq = ?5,
            status_updated_ms = ?6
         WHERE case_number = ?1",
        params![
            report.case_number,
            update.parts,
            update.combined.stage,
            update.combined.detail,
            update.combined.sequence,
            remote_ms(report.status.updated_at.as_ref(), now),
        ],
    )?;
    for (kind, key, application) in &update.hand_overs {
        insert_hand_over(conn, *kind, key, application, now)?;
    }
    Ok(update.applied)
}

/// A case one region handles: its status, if newer.
fn apply_whole(
    conn: &Connection,
    report: &StatusReport,
    now: i64,
) -> Result<StatusApplied, StoreError> {
    let status = &report.status;
    if let Some(reference) = &report.reference {
        conn.execute(
            "UPDATE applications SET handling_reference = ?2 WHERE case_number = ?1",
            params![report.case_number, reference],
        )?;
    }
    let changed = conn.execute(
        "UPDATE applications SET stage = ?2, status_detail = ?3, status_seq = ?4,
            status_updated_ms = ?5
         WHERE case_number = ?1 AND status_seq < ?4",
        params![
            report.case_number,
            status.stage,
            status.detail,
            status.sequence,
            remote_ms(status.updated_at.as_ref(), now)
        ],
    )?;
    Ok(StatusApplied::whole(changed > 0, status.stage))
}
