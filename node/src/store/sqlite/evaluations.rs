//! Citizens' evaluations, given and received, on SQLite.

use prost::Message;
use rusqlite::{OptionalExtension, params};

use super::{database::SqliteStore, outbox::insert_outbox};
use crate::db_error::StoreError;
use crate::instants::now_ms;
use crate::store::{
    evaluations::{Evaluated, NewEvaluation, Received, ReceivedEvaluation, evaluation_key},
    outbox::OutboxKind,
};

impl SqliteStore {
    pub async fn evaluate(&self, evaluation: NewEvaluation) -> Result<Evaluated, StoreError> {
        self.db
            .call(move |conn| {
                let tx = conn.transaction()?;
                let request = &evaluation.request;
                let at = request
                    .evaluated_at
                    .as_ref()
                    .map_or_else(now_ms, |t| t.seconds * 1000);
                let inserted = tx.execute(
                    "INSERT OR IGNORE INTO evaluations (case_number, level, comment, evaluated_ms)
                     VALUES (?1, ?2, ?3, ?4)",
                    params![request.case_number, request.level, request.comment, at],
                )?;
                if inserted == 0 {
                    return Ok(Evaluated::AlreadyEvaluated);
                }
                if evaluation.forward {
                    insert_outbox(
                        &tx,
                        OutboxKind::Evaluate,
                        &request.case_number,
                        &evaluation.target_region,
                        &evaluation.one_thing_id,
                        &evaluation_key(&request.case_number),
                        &request.encode_to_vec(),
                        now_ms(),
                    )?;
                }
                tx.commit()?;
                Ok(Evaluated::Recorded)
            })
            .await
    }

    pub async fn evaluation_given(&self, case_number: String) -> Result<Option<i32>, StoreError> {
        self.db
            .call(move |conn| {
                Ok(conn
                    .query_row(
                        "SELECT level FROM evaluations WHERE case_number = ?1",
                        [case_number],
                        |r| r.get(0),
                    )
                    .optional()?)
            })
            .await
    }

    pub async fn receive_evaluation(
        &self,
        evaluation: ReceivedEvaluation,
    ) -> Result<Received, StoreError> {
        self.db
            .call(move |conn| {
                let tx = conn.transaction()?;
                let earlier: Option<(i32, String, Option<String>)> = tx
                    .query_row(
                        "SELECT level, comment, follow_up_due FROM evaluations_received
                         WHERE case_number = ?1",
                        [&evaluation.case_number],
                        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                    )
                    .optional()?;
                let received = match earlier {
                    Some((level, comment, due))
                        if (level, &comment) == (evaluation.level, &evaluation.comment) =>
                    {
                        Received::Repeat(due)
                    }
                    Some(_) => Received::Conflict,
                    None => {
                        tx.execute(
                            "INSERT INTO evaluations_received (case_number, origin_region,
                                one_thing_id, level, comment, evaluated_ms, received_ms,
                                follow_up_due)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                            params![
                                evaluation.case_number,
                                evaluation.origin_region,
                                evaluation.one_thing_id,
                                evaluation.level,
                                evaluation.comment,
                                evaluation.evaluated_ms,
                                now_ms(),
                                evaluation.follow_up_due,
                            ],
                        )?;
                        Received::New
                    }
                };
                tx.commit()?;
                Ok(received)
            })
            .await
    }

    pub async fn follow_ups(&self) -> Result<Vec<ReceivedEvaluation>, StoreError> {
        self.db
            .call(|conn| {
                let mut statement = conn.prepare_cached(
                    "SELECT case_number, origin_region, one_thing_id, level, comment,
                            evaluated_ms, follow_up_due
                     FROM evaluations_received WHERE follow_up_due IS NOT NULL
                     ORDER BY follow_up_due, case_number",
                )?;
                let rows = statement.query_map([], |r| {
                    Ok(ReceivedEvaluation {
                        case_number: r.get(0)?,
                        origin_region: r.get(1)?,
                        one_thing_id: r.get(2)?,
                        level: r.get(3)?,
                        comment: r.get(4)?,
                        evaluated_ms: r.get(5)?,
                        follow_up_due: r.get(6)?,
                    })
                })?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await
    }
}
