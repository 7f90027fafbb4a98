//! Citizens' evaluations, given and received, on PostgreSQL (one per case, also when
//! two replicas take one at once: the primary keys decide).

use prost::Message;
use sqlx::Row;

use super::{
    database::PgStore,
    outbox::{NewEntry, insert_entry},
};
use crate::db_error::StoreError;
use crate::instants::now_ms;
use crate::store::{
    evaluations::{Evaluated, NewEvaluation, Received, ReceivedEvaluation, evaluation_key},
    outbox::OutboxKind,
};

impl PgStore {
    pub async fn evaluate(&self, evaluation: NewEvaluation) -> Result<Evaluated, StoreError> {
        self.transaction(async |tx| {
            let request = &evaluation.request;
            let at = request
                .evaluated_at
                .as_ref()
                .map_or_else(now_ms, |t| t.seconds * 1000);
            let inserted = sqlx::query(
                "INSERT INTO evaluations (case_number, level, comment, evaluated_ms)
                 VALUES ($1, $2, $3, $4) ON CONFLICT (case_number) DO NOTHING",
            )
            .bind(&request.case_number)
            .bind(request.level)
            .bind(&request.comment)
            .bind(at)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if inserted == 0 {
                return Ok(Evaluated::AlreadyEvaluated);
            }
            if evaluation.forward {
                let entry = NewEntry {
                    kind: OutboxKind::Evaluate,
                    case_number: &request.case_number,
                    target_region: &evaluation.target_region,
                    one_thing_id: &evaluation.one_thing_id,
                    key: &evaluation_key(&request.case_number),
                    payload: &request.encode_to_vec(),
                    gateway_endpoint: None,
                };
                insert_entry(tx, &entry, now_ms()).await?;
            }
            Ok(Evaluated::Recorded)
        })
        .await
    }

    pub async fn evaluation_given(&self, case_number: String) -> Result<Option<i32>, StoreError> {
        self.observed(async {
            let row = sqlx::query("SELECT level FROM evaluations WHERE case_number = $1")
                .bind(case_number)
                .fetch_optional(&self.pool)
                .await?;
            Ok(match row {
                Some(r) => Some(r.try_get(0)?),
                None => None,
            })
        })
        .await
    }

    pub async fn receive_evaluation(
        &self,
        evaluation: ReceivedEvaluation,
    ) -> Result<Received, StoreError> {
        self.transaction(async |tx| {
            let inserted = sqlx::query(
                "INSERT INTO evaluations_received (case_number, origin_region, one_thing_id,
                    level, comment, evaluated_ms, received_ms, follow_up_due)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 ON CONFLICT (case_number) DO NOTHING",
            )
            .bind(&evaluation.case_number)
            .bind(&evaluation.origin_region)
            .bind(&evaluation.one_thing_id)
            .bind(evaluation.level)
            .bind(&evaluation.comment)
            .bind(evaluation.evaluated_ms)
            .bind(now_ms())
            .bind(&evaluation.follow_up_due)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if inserted == 1 {
                return Ok(Received::New);
            }
            let seen = sqlx::query(
                "SELECT level, comment, follow_up_due FROM evaluations_received
                 WHERE case_number = $1",
            )
            .bind(&evaluation.case_number)
            .fetch_one(&mut *tx)
            .await?;
            let (level, comment): (i32, String) = (seen.try_get(0)?, seen.try_get(1)?);
            Ok(
                if (level, &comment) == (evaluation.level, &evaluation.comment) {
                    Received::Repeat(seen.try_get(2)?)
                } else {
                    Received::Conflict
                },
            )
        })
        .await
    }

    pub async fn follow_ups(&self) -> Result<Vec<ReceivedEvaluation>, StoreError> {
        self.observed(async {
            let rows = sqlx::query(
                "SELECT case_number, origin_region, one_thing_id, level, comment,
                        evaluated_ms, follow_up_due
                 FROM evaluations_received WHERE follow_up_due IS NOT NULL
                 ORDER BY follow_up_due, case_number",
            )
            .fetch_all(&self.pool)
            .await?;
            rows.iter()
                .map(|r| {
                    Ok(ReceivedEvaluation {
                        case_number: r.try_get(0)?,
                        origin_region: r.try_get(1)?,
                        one_thing_id: r.try_get(2)?,
                        level: r.try_get(3)?,
                        comment: r.try_get(4)?,
                        evaluated_ms: r.try_get(5)?,
                        follow_up_due: r.try_get(6)?,
                    })
                })
                .collect()
        })
        .await
    }
}
