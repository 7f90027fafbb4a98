//! Disputes of wrong data on SQLite (see [`crate::store::disputes`]).

use prost::Message;
use rusqlite::{OptionalExtension, Row, params};
use tongban_proto::v1::{RaiseDisputeRequest, SettleDisputeRequest};

use super::{database::SqliteStore, outbox::insert_outbox};
use crate::db_error::StoreError;
use crate::store::{
    disputes::{
        Dispute, OpenDisputes, RAISED, RECEIVED, Settled, Settlement, columns, raise_key,
        settle_key,
    },
    outbox::OutboxKind,
};

fn dispute(r: &Row<'_>) -> rusqlite::Result<Dispute> {
    Ok(Dispute {
        dispute_id: r.get(0)?,
        role: r.get(1)?,
        case_number: r.get(2)?,
        counterpart: r.get(3)?,
        one_thing_id: r.get(4)?,
        subject: r.get(5)?,
        license_id: r.get(6)?,
        data: r.get(7)?,
        reason: r.get(8)?,
        raised_ms: r.get(9)?,
        outcome: r.get(10)?,
        note: r.get(11)?,
        corrected_license_id: r.get(12)?,
        settled_ms: r.get(13)?,
    })
}

fn insert(
    conn: &rusqlite::Connection,
    d: &Dispute,
    holder_hash: Option<&str>,
    received_ms: Option<i64>,
) -> Result<usize, StoreError> {
    Ok(conn.execute(
        "INSERT OR IGNORE INTO disputes (dispute_id, role, case_number, counterpart,
            one_thing_id, subject, license_id, data, reason, raised_ms, holder_hash,
            received_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        params![
            d.dispute_id,
            d.role,
            d.case_number,
            d.counterpart,
            d.one_thing_id,
            d.subject,
            d.license_id,
            d.data,
            d.reason,
            d.raised_ms,
            holder_hash,
            received_ms
        ],
    )?)
}

impl SqliteStore {
    pub async fn raise_dispute(
        &self,
        mut dispute: Dispute,
        mut request: RaiseDisputeRequest,
    ) -> Result<Dispute, StoreError> {
        self.db
            .call(move |conn| {
                let tx = conn.transaction()?;
                let earlier: i64 = tx.query_row(
                    "SELECT COUNT(*) FROM disputes WHERE role = ?1 AND case_number = ?2",
                    params![RAISED, dispute.case_number],
                    |r| r.get(0),
                )?;
                dispute.dispute_id = format!("{}:{}", dispute.case_number, earlier + 1);
                request.dispute_id = dispute.dispute_id.clone();
                insert(&tx, &dispute, None, None)?;
                insert_outbox(
                    &tx,
                    OutboxKind::Dispute,
                    &dispute.case_number,
                    &dispute.counterpart,
                    &dispute.one_thing_id,
                    &raise_key(&dispute.dispute_id),
                    &request.encode_to_vec(),
                    dispute.raised_ms,
                )?;
                tx.commit()?;
                Ok(dispute)
            })
            .await
    }

    pub async fn receive_dispute(
        &self,
        dispute: Dispute,
        holder_hash: String,
        received_ms: i64,
    ) -> Result<bool, StoreError> {
        self.db
            .call(move |conn| {
                Ok(insert(conn, &dispute, Some(&holder_hash), Some(received_ms))? == 1)
            })
            .await
    }

    pub async fn disputes(
        &self,
        role: &'static str,
        case_number: Option<String>,
    ) -> Result<Vec<Dispute>, StoreError> {
        self.db
            .call(move |conn| {
                let mut stmt = conn.prepare_cached(concat!(
                    "SELECT ",
                    columns!(),
                    " FROM disputes
                     WHERE role = ?1 AND (?2 IS NULL OR case_number = ?2)
                     ORDER BY outcome IS NOT NULL, raised_ms, dispute_id LIMIT 1000"
                ))?;
                let rows = stmt.query_map(params![role, case_number], dispute)?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await
    }

    pub async fn settle_dispute(
        &self,
        flagging_region: String,
        dispute_id: String,
        settlement: Settlement,
        mut request: SettleDisputeRequest,
    ) -> Result<Settled, StoreError> {
        self.db
            .call(move |conn| {
                let tx = conn.transaction()?;
                let found = tx
                    .query_row(
                        concat!(
                            "SELECT ",
                            columns!(),
                            " FROM disputes
                             WHERE role = ?1 AND counterpart = ?2 AND dispute_id = ?3"
                        ),
                        params![RECEIVED, flagging_region, dispute_id],
                        dispute,
                    )
                    .optional()?;
                let Some(mut found) = found else {
                    return Ok(Settled::Unknown);
                };
                if found.outcome.is_some() {
                    return Ok(Settled::Already(found));
                }
                tx.execute(
                    "UPDATE disputes SET outcome = ?4, note = ?5, corrected_license_id = ?6,
                        settled_ms = ?7
                     WHERE role = ?1 AND counterpart = ?2 AND dispute_id = ?3",
                    params![
                        RECEIVED,
                        flagging_region,
                        dispute_id,
                        settlement.outcome,
                        settlement.note,
                        settlement.corrected_license_id,
                        settlement.settled_ms
                    ],
                )?;
                request.dispute_id = dispute_id.clone();
                request.case_number = found.case_number.clone();
                insert_outbox(
                    &tx,
                    OutboxKind::Settle,
                    &found.case_number,
                    &flagging_region,
                    &found.one_thing_id,
                    &settle_key(&flagging_region, &dispute_id),
                    &request.encode_to_vec(),
                    settlement.settled_ms,
                )?;
                tx.commit()?;
                found.outcome = Some(settlement.outcome);
                found.note = Some(settlement.note);
                found.corrected_license_id = settlement.corrected_license_id;
                found.settled_ms = Some(settlement.settled_ms);
                Ok(Settled::Now(found))
            })
            .await
    }

    pub async fn apply_settlement(
        &self,
        dispute_id: String,
        settlement: Settlement,
    ) -> Result<Option<Dispute>, StoreError> {
        self.db
            .call(move |conn| {
                let tx = conn.transaction()?;
                let changed = tx.execute(
                    "UPDATE disputes SET outcome = ?3, note = ?4, corrected_license_id = ?5,
                        settled_ms = ?6
                     WHERE role = ?1 AND dispute_id = ?2 AND outcome IS NULL",
                    params![
                        RAISED,
                        dispute_id,
                        settlement.outcome,
                        settlement.note,
                        settlement.corrected_license_id,
                        settlement.settled_ms
                    ],
                )?;
                let row = if changed == 1 {
                    tx.query_row(
                        concat!(
                            "SELECT ",
                            columns!(),
                            " FROM disputes WHERE role = ?1 AND dispute_id = ?2"
                        ),
                        params![RAISED, dispute_id],
                        dispute,
                    )
                    .optional()?
                } else {
                    None
                };
                tx.commit()?;
                Ok(row)
            })
            .await
    }

    pub async fn open_disputes(&self) -> Result<Vec<OpenDisputes>, StoreError> {
        self.db
            .call(|conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT role, counterpart, data, COUNT(*) FROM disputes
                     WHERE outcome IS NULL GROUP BY role, counterpart, data",
                )?;
                let rows = stmt.query_map([], |r| {
                    Ok(OpenDisputes {
                        role: r.get(0)?,
                        counterpart: r.get(1)?,
                        data: r.get(2)?,
                        open: r.get(3)?,
                    })
                })?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await
    }
}
