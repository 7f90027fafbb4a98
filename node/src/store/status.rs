//! Statuses of cases filed here, as the handling region reports them. Applied only when
//! newer (by sequence), so a replayed or out-of-order report cannot set a case back.

use rusqlite::{Connection, params};
use tongban_proto::v1::CaseStatus;

use super::database::Store;
use crate::sqlite::StoreError;
use crate::sqlite::now_ms;

impl Store {
    /// Records a status from the handling region if it is newer than what is stored.
    /// Returns whether it was applied.
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

/// Unix milliseconds of a timestamp another region sent, or `now` when it has none or
/// one no honest clock gives (before 1970, more than a day ahead, or so large that
/// milliseconds overflow).
fn remote_ms(t: Option<&prost_types::Timestamp>, now: i64) -> i64 {
    const DAY_MS: i64 = 24 * 3600 * 1000;
    t.and_then(|t| {
        t.seconds
            .checked_mul(1000)?
            .checked_add(i64::from(t.nanos.clamp(0, 999_999_999)) / 1_000_000)
    })
    .filter(|ms| (0..=now.saturating_add(DAY_MS)).contains(ms))
    .unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use prost_types::Timestamp;

    use super::remote_ms;

    #[test]
    fn remote_timestamps_are_bounded() {
        let now = 1_764_650_000_000;
        let at = |seconds, nanos| Some(Timestamp { seconds, nanos });
        assert_eq!(
            remote_ms(at(1_764_649_000, 5_000_000).as_ref(), now),
            1_764_649_000_005
        );
        assert_eq!(remote_ms(None, now), now);
        assert_eq!(remote_ms(at(i64::MAX, 0).as_ref(), now), now, "overflow");
        assert_eq!(
            remote_ms(at(i64::MAX / 1000, 999_999_999).as_ref(), now),
            now
        );
        assert_eq!(remote_ms(at(-5, 0).as_ref(), now), now, "before 1970");
        assert_eq!(
            remote_ms(at(1_764_650_000 + 2 * 86_400, 0).as_ref(), now),
            now
        );
        assert_eq!(
            remote_ms(at(1_764_649_000, -7).as_ref(), now),
            1_764_649_000_000
        );
    }
}
