//! Disputes of wrong data on PostgreSQL (see [`crate::store::disputes`]). Replicas
//! numbering disputes of one case at once take turns on the case's row lock; a
//! settlement locks its dispute's row, so two operators settle it once.

use prost::Message;
use sqlx::{PgConnection, Row, postgres::PgRow};
use tongban_proto::v1::{RaiseDisputeRequest, SettleDisputeRequest};

use super::{
    database::PgStore,
    outbox::{NewEntry, insert_entry},
};
use crate::db_error::StoreError;
use crate::store::{
    disputes::{
        Dispute, OpenDisputes, RAISED, RECEIVED, Settled, Settlement, columns, raise_key,
        settle_key,
    },
    outbox::OutboxKind,
};

fn dispute(r: &PgRow) -> Result<Dispute, sqlx::Error> {
    Ok(Dispute {
        dispute_id: r.try_get(0)?,
        role: r.try_get(1)?,
        case_number: r.try_get(2)?,
        counterpart: r.try_get(3)?,
        one_thing_id: r.try_get(4)?,
        subject: r.try_get(5)?,
        license_id: r.try_get(6)?,
        data: r.try_get(7)?,
        reason: r.try_get(8)?,
        raised_ms: r.try_get(9)?,
        outcome: r.try_get(10)?,
        note: r.try_get(11)?,
        corrected_license_id: r.try_get(12)?,
        settled_ms: r.try_get(13)?,
    })
}

async fn insert(
    conn: &mut PgConnection,
    d: &Dispute,
    holder_hash: Option<&str>,
    received_ms: Option<i64>,
) -> Result<bool, StoreError> {
    let inserted = sqlx::query(
        "INSERT INTO disputes (dispute_id, role, case_number, counterpart, one_thing_id,
            subject, license_id, data, reason, raised_ms, holder_hash, received_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
         ON CONFLICT DO NOTHING",
    )
    .bind(&d.dispute_id)
    .bind(&d.role)
    .bind(&d.case_number)
    .bind(&d.counterpart)
    .bind(&d.one_thing_id)
    .bind(&d.subject)
    .bind(&d.license_id)
    .bind(&d.data)
    .bind(&d.reason)
    .bind(d.raised_ms)
    .bind(holder_hash)
    .bind(received_ms)
    .execute(conn)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

impl PgStore {
    pub async fn raise_dispute(
        &self,
        mut dispute: Dispute,
        mut request: RaiseDisputeRequest,
    ) -> Result<Dispute, StoreError> {
        self.transaction(async |tx| {
            // The case's row, locked: disputes of one case are numbered one at a time.
            sqlx::query("SELECT 1 FROM applications WHERE case_number = $1 FOR UPDATE")
                .bind(&dispute.case_number)
                .fetch_optional(&mut *tx)
                .await?;
            let earlier: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM disputes WHERE role = $1 AND case_number = $2",
            )
            .bind(RAISED)
            .bind(&dispute.case_number)
            .fetch_one(&mut *tx)
            .await?;
            dispute.dispute_id = format!("{}:{}", dispute.case_number, earlier + 1);
            request.dispute_id = dispute.dispute_id.clone();
            insert(tx, &dispute, None, None).await?;
            let entry = NewEntry {
                kind: OutboxKind::Dispute,
                case_number: &dispute.case_number,
                target_region: &dispute.counterpart,
                one_thing_id: &dispute.one_thing_id,
                key: &raise_key(&dispute.dispute_id),
                payload: &request.encode_to_vec(),
                gateway_endpoint: None,
            };
            insert_entry(tx, &entry, dispute.raised_ms).await?;
            Ok(dispute.clone())
        })
        .await
    }

    pub async fn receive_dispute(
        &self,
        dispute: Dispute,
        holder_hash: String,
        received_ms: i64,
    ) -> Result<bool, StoreError> {
        self.observed(async {
            let mut conn = self.pool.acquire().await?;
            insert(&mut conn, &dispute, Some(&holder_hash), Some(received_ms)).await
        })
        .await
    }

    pub async fn disputes(
        &self,
        role: &'static str,
        case_number: Option<String>,
    ) -> Result<Vec<Dispute>, StoreError> {
        self.observed(async {
            let rows = sqlx::query(concat!(
                "SELECT ",
                columns!(),
                " FROM disputes
                 WHERE role = $1 AND ($2::TEXT IS NULL OR case_number = $2)
                 ORDER BY outcome IS NOT NULL, raised_ms, dispute_id LIMIT 1000"
            ))
            .bind(role)
            .bind(case_number)
            .fetch_all(&self.pool)
            .await?;
            Ok(rows.iter().map(dispute).collect::<Result<Vec<_>, _>>()?)
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
        self.transaction(async |tx| {
            let found = sqlx::query(concat!(
                "SELECT ",
                columns!(),
                " FROM disputes
                 WHERE role = $1 AND counterpart = $2 AND dispute_id = $3 FOR UPDATE"
            ))
            .bind(RECEIVED)
            .bind(&flagging_region)
            .bind(&dispute_id)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(found) = found else {
                return Ok(Settled::Unknown);
            };
            let mut found = dispute(&found)?;
            if found.outcome.is_some() {
                return Ok(Settled::Already(found));
            }
            sqlx::query(
                "UPDATE disputes SET outcome = $4, note = $5, corrected_license_id = $6,
                    settled_ms = $7
                 WHERE role = $1 AND counterpart = $2 AND dispute_id = $3",
            )
            .bind(RECEIVED)
            .bind(&flagging_region)
            .bind(&dispute_id)
            .bind(&settlement.outcome)
            .bind(&settlement.note)
            .bind(&settlement.corrected_license_id)
            .bind(settlement.settled_ms)
            .execute(&mut *tx)
            .await?;
            request.dispute_id = dispute_id.clone();
            request.case_number = found.case_number.clone();
            let entry = NewEntry {
                kind: OutboxKind::Settle,
                case_number: &found.case_number,
                target_region: &flagging_region,
                one_thing_id: &found.one_thing_id,
                key: &settle_key(&flagging_region, &dispute_id),
                payload: &request.encode_to_vec(),
                gateway_endpoint: None,
            };
            insert_entry(tx, &entry, settlement.settled_ms).await?;
            found.outcome = Some(settlement.outcome.clone());
            found.note = Some(settlement.note.clone());
            found.corrected_license_id = settlement.corrected_license_id.clone();
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
        self.transaction(async |tx| {
            let row = sqlx::query(concat!(
                "UPDATE disputes SET outcome = $3, note = $4, corrected_license_id = $5,
                    settled_ms = $6
                 WHERE role = $1 AND dispute_id = $2 AND outcome IS NULL
                 RETURNING ",
                columns!(),
                ""
            ))
            .bind(RAISED)
            .bind(&dispute_id)
            .bind(&settlement.outcome)
            .bind(&settlement.note)
            .bind(&settlement.corrected_license_id)
            .bind(settlement.settled_ms)
            .fetch_optional(&mut *tx)
            .await?;
            Ok(row.as_ref().map(dispute).transpose()?)
        })
        .await
    }

    pub async fn open_disputes(&self) -> Result<Vec<OpenDisputes>, StoreError> {
        self.observed(async {
            let rows = sqlx::query(
                "SELECT role, counterpart, data, COUNT(*) FROM disputes
                 WHERE outcome IS NULL GROUP BY role, counterpart, data",
            )
            .fetch_all(&self.pool)
            .await?;
            let open = |r: &PgRow| -> Result<OpenDisputes, sqlx::Error> {
                Ok(OpenDisputes {
                    role: r.try_get(0)?,
                    counterpart: r.try_get(1)?,
                    data: r.try_get(2)?,
                    open: r.try_get(3)?,
                })
            };
            Ok(rows.iter().map(open).collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }
}
