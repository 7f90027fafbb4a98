//! [`Store`]: the handle every caller holds, the same whichever database is beneath.
//! Each method hands the call to the backend's method of the same name.

use std::{future::Future, path::Path, sync::Arc, time::Duration};

use tokio::sync::Notify;
use tongban_proto::{
    contract::retry::Retry,
    v1::{
        Application, PublishRevocationRequest, PushStatusRequest, RaiseDisputeRequest,
        SettleDisputeRequest,
    },
};
use tongban_runtime::{
    observability::trace_context::TraceParent, postgres::config::PostgresConfig,
    process::shutdown::ShutdownSignal,
};

use super::{
    access_log::{AccessEntry, NewAccess, ReportedAccess},
    disputes::{Dispute, OpenDisputes, Settled, Settlement},
    evaluations::{Evaluated, NewEvaluation, Received, ReceivedEvaluation},
    evidence::SignedEvidence,
    filing::{ApplicationRecord, Filed, NewFiling, OpenPromise, StatusApplied, StatusReport},
    outbox::{BacklogRow, DeadLetter, DeadLetterAction, OutboxEntry},
    postgres::PgStore,
    sqlite::SqliteStore,
    turn::Turn,
};
use crate::db_error::StoreError;
use crate::joint::JointCase;

/// The node's store: a SQLite file for one node process, or a PostgreSQL database
/// several replicas of the node share. Cheap to clone; clones share the database.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

/// Calls the backend's method of the same name with the same arguments.
macro_rules! dispatch {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {
        match &$self.backend {
            Backend::Sqlite(store) => store.$method($($arg),*).await,
            Backend::Postgres(store) => store.$method($($arg),*).await,
        }
    };
}

impl Store {
    /// Opens or creates the store in a SQLite file.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Ok(Self {
            backend: Backend::Sqlite(SqliteStore::open(path)?),
        })
    }

    /// Opens the store in PostgreSQL as replica `replica` (the name its connections
    /// and outbox leases carry; each replica needs its own), bringing the schema up to
    /// date. An outbox entry this replica claims is its own for `lease`, which must
    /// outlast one attempt. Fails if the database cannot be reached now.
    pub async fn open_postgres(
        config: &PostgresConfig,
        replica: &str,
        lease: Duration,
    ) -> Result<Self, StoreError> {
        Ok(Self {
            backend: Backend::Postgres(PgStore::open(config, replica, lease).await?),
        })
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn kind(&self) -> &'static str {
        match &self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// This replica's name, when the store is shared by replicas.
    pub fn replica(&self) -> Option<&str> {
        match &self.backend {
            Backend::Sqlite(_) => None,
            Backend::Postgres(store) => Some(store.replica()),
        }
    }

    /// `Err` with the reason while the store's database is failing: the node then
    /// reports itself not ready.
    pub fn health(&self) -> Result<(), String> {
        match &self.backend {
            Backend::Sqlite(store) => store.health(),
            Backend::Postgres(store) => store.health(),
        }
    }

    /// A task that wakes `wake` whenever any replica writes to the outbox, until
    /// shutdown; to be spawned. `None` for SQLite, where only this process writes and
    /// the writer wakes the forwarder itself. A wake-up only hastens the next scan: it
    /// may be lost (a dropped connection), and the forwarder polls anyway.
    pub fn wake_ups(
        &self,
        wake: Arc<Notify>,
        shutdown: ShutdownSignal,
    ) -> Option<impl Future<Output = ()> + Send + 'static> {
        match &self.backend {
            Backend::Sqlite(_) => None,
            Backend::Postgres(store) => Some(store.wake_ups(wake, shutdown)),
        }
    }

    /// Takes this replica's turn at `job`, a job one replica at a time should do (the
    /// platform's feeds: every replica reading them would double the platform's load
    /// and race on the cursor); `None` while another replica holds it. Always granted
    /// on SQLite.
    pub async fn take_turn(&self, job: &'static str) -> Result<Option<Turn>, StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(Some(Turn::Alone)),
            Backend::Postgres(store) => Ok(store.take_turn(job).await?.map(Turn::Shared)),
        }
    }

    /// The PostgreSQL pool, when the store is there (backups, tests).
    pub fn postgres_pool(&self) -> Option<&sqlx::PgPool> {
        match &self.backend {
            Backend::Sqlite(_) => None,
            Backend::Postgres(store) => Some(store.pool()),
        }
    }

    // Settings.

    /// The node's secret for keyed hashes of ID numbers; created on first use (one for
    /// all replicas).
    pub async fn id_hash_key(&self) -> Result<Vec<u8>, StoreError> {
        dispatch!(self.id_hash_key())
    }

    /// A stored setting.
    pub async fn setting(&self, name: &'static str) -> Result<Option<Vec<u8>>, StoreError> {
        dispatch!(self.setting(name))
    }

    /// Stores a setting.
    pub async fn set_setting(&self, name: &'static str, value: Vec<u8>) -> Result<(), StoreError> {
        dispatch!(self.set_setting(name, value))
    }

    // The access log.

    /// Records one lookup of a person's data this region answered.
    pub async fn record_access(&self, access: NewAccess) -> Result<(), StoreError> {
        dispatch!(self.record_access(access))
    }

    /// Records lookups reported by the gateway (answered from its cache); returns how
    /// many were new (a report delivered again is recorded once).
    pub async fn record_reported_accesses(
        &self,
        reports: Vec<ReportedAccess>,
    ) -> Result<u64, StoreError> {
        dispatch!(self.record_reported_accesses(reports))
    }

    /// The person's access log, newest first (at most `limit` entries).
    pub async fn access_log(
        &self,
        holder_hash: String,
        limit: u32,
    ) -> Result<Vec<AccessEntry>, StoreError> {
        dispatch!(self.access_log(holder_hash, limit))
    }

    /// How many lookups of this person's data were recorded (tests count issuer calls).
    pub async fn access_count(&self, holder_hash: String) -> Result<u64, StoreError> {
        dispatch!(self.access_count(holder_hash, false))
    }

    /// How many of them this region answered itself, the gateway's reports of what it
    /// answered from its cache apart (tests count the calls that reached the issuer).
    pub async fn answered_count(&self, holder_hash: String) -> Result<u64, StoreError> {
        dispatch!(self.access_count(holder_hash, true))
    }

    // Filing.

    /// Files an application: assigns its case number, and stores it with its receipt
    /// and its outbox entry in one transaction. Returns the application as filed and
    /// its receipt; a retry under the same client key gets the first filing back
    /// ([`Filed::replayed`]), a different request under it [`StoreError::KeyReused`].
    pub async fn file(&self, filing: NewFiling) -> Result<Filed, StoreError> {
        dispatch!(self.file(filing))
    }

    /// The earlier filing under a client's idempotency key, if any (refused when the key
    /// was used for a different request).
    pub async fn client_replay(
        &self,
        key: String,
        sha: String,
    ) -> Result<Option<Filed>, StoreError> {
        dispatch!(self.client_replay(key, sha))
    }

    /// Reserves the next case number of `origin_region` for the business day of
    /// `filed_at`: pre-review names the case in its lookups before it is filed. A
    /// filing refused afterwards leaves a gap in the numbers, never a reuse.
    pub async fn reserve_case_number(
        &self,
        origin_region: String,
        filed_at: Option<prost_types::Timestamp>,
    ) -> Result<String, StoreError> {
        dispatch!(self.reserve_case_number(origin_region, filed_at))
    }

    /// Ends the pre-review of a waiting case: its application and receipt as verified
    /// now, its hand-over queued, its verification entry done, in one transaction.
    pub async fn complete_verification(
        &self,
        outbox_id: i64,
        application: Application,
        receipt: String,
        forward: bool,
        joint: Option<JointCase>,
    ) -> Result<(), StoreError> {
        dispatch!(self.complete_verification(outbox_id, application, receipt, forward, joint))
    }

    /// Ends the pre-review of a waiting case with a refusal the citizen sees.
    pub async fn refuse_after_verification(
        &self,
        outbox_id: i64,
        case_number: String,
        reason: String,
    ) -> Result<(), StoreError> {
        dispatch!(self.refuse_after_verification(outbox_id, case_number, reason))
    }

    /// The open cases filed here (submitted to more-materials-needed) with their
    /// promised dates.
    pub async fn open_promises(&self) -> Result<Vec<OpenPromise>, StoreError> {
        dispatch!(self.open_promises())
    }

    // Evaluations (好差评).

    /// A citizen's evaluation of a case filed here, with its delivery to the handling
    /// region (when `forward`), in one transaction; one per case.
    pub async fn evaluate(&self, evaluation: NewEvaluation) -> Result<Evaluated, StoreError> {
        dispatch!(self.evaluate(evaluation))
    }

    /// The level a case filed here was evaluated at, if it was.
    pub async fn evaluation_given(&self, case_number: String) -> Result<Option<i32>, StoreError> {
        dispatch!(self.evaluation_given(case_number))
    }

    // Disputes of wrong data.

    /// Raises a dispute about a case filed here: numbered within the case, kept, and
    /// its delivery to the issuer queued in one transaction; the dispute as kept.
    pub async fn raise_dispute(
        &self,
        dispute: Dispute,
        request: RaiseDisputeRequest,
    ) -> Result<Dispute, StoreError> {
        dispatch!(self.raise_dispute(dispute, request))
    }

    /// Keeps a dispute about data issued here, once (false: a retry).
    pub async fn receive_dispute(
        &self,
        dispute: Dispute,
        holder_hash: String,
        received_ms: i64,
    ) -> Result<bool, StoreError> {
        dispatch!(self.receive_dispute(dispute, holder_hash, received_ms))
    }

    /// Disputes of `role`, of one case or all (open first, oldest first; at most 1,000).
    pub async fn disputes(
        &self,
        role: &'static str,
        case_number: Option<String>,
    ) -> Result<Vec<Dispute>, StoreError> {
        dispatch!(self.disputes(role, case_number))
    }

    /// Settles a dispute received here and queues the settlement's return to the
    /// flagging region, in one transaction.
    pub async fn settle_dispute(
        &self,
        flagging_region: String,
        dispute_id: String,
        settlement: Settlement,
        request: SettleDisputeRequest,
    ) -> Result<Settled, StoreError> {
        dispatch!(self.settle_dispute(flagging_region, dispute_id, settlement, request))
    }

    /// Records the issuer's settlement of a dispute raised here; the dispute if it was
    /// open until now.
    pub async fn apply_settlement(
        &self,
        dispute_id: String,
        settlement: Settlement,
    ) -> Result<Option<Dispute>, StoreError> {
        dispatch!(self.apply_settlement(dispute_id, settlement))
    }

    /// Open disputes by role, counterpart and data.
    pub async fn open_disputes(&self) -> Result<Vec<OpenDisputes>, StoreError> {
        dispatch!(self.open_disputes())
    }

    /// An evaluation of a case handled here, kept once (a repeat is recognized, another
    /// evaluation of the same case is a conflict).
    pub async fn receive_evaluation(
        &self,
        evaluation: ReceivedEvaluation,
    ) -> Result<Received, StoreError> {
        dispatch!(self.receive_evaluation(evaluation))
    }

    /// The follow-ups poor evaluations opened here, soonest due first.
    pub async fn follow_ups(&self) -> Result<Vec<ReceivedEvaluation>, StoreError> {
        dispatch!(self.follow_ups())
    }

    /// An application filed here.
    pub async fn application(
        &self,
        case_number: String,
    ) -> Result<Option<ApplicationRecord>, StoreError> {
        dispatch!(self.application(case_number))
    }

    // Deliveries received.

    /// The earlier delivery with this key, if any: its case number, the SHA-256 of its
    /// application (hex) and the stored answer.
    pub async fn inbound(
        &self,
        origin_prefix: String,
        key: String,
    ) -> Result<Option<(String, String, Vec<u8>)>, StoreError> {
        dispatch!(self.inbound(origin_prefix, key))
    }

    /// Remembers the answer to a delivery, with the trace it came in; the first answer
    /// for a key wins.
    #[allow(clippy::too_many_arguments)]
    pub async fn remember_inbound(
        &self,
        origin_prefix: String,
        key: String,
        case_number: String,
        payload_sha256: String,
        trace: Option<TraceParent>,
        applicant_home: String,
        response: Vec<u8>,
    ) -> Result<(), StoreError> {
        dispatch!(self.remember_inbound(
            origin_prefix,
            key,
            case_number,
            payload_sha256,
            trace,
            applicant_home,
            response
        ))
    }

    // Evidence.

    /// Keeps a signed message received about a case; the first per method and
    /// idempotency key is kept.
    pub async fn keep_signed(&self, evidence: SignedEvidence) -> Result<(), StoreError> {
        dispatch!(self.keep_signed(evidence))
    }

    /// The signed messages kept for a case, oldest first.
    pub async fn signed_messages(
        &self,
        case_number: String,
    ) -> Result<Vec<SignedEvidence>, StoreError> {
        dispatch!(self.signed_messages(case_number))
    }

    // Statuses returned.

    /// Records a status from the handling region if it is newer than what is stored
    /// (for a joint case, its part's; the parts that waited for its approval are handed
    /// over in the same transaction). Says whether it was applied and decided the case.
    pub async fn apply_status(&self, report: StatusReport) -> Result<StatusApplied, StoreError> {
        dispatch!(self.apply_status(report))
    }

    // The outbox.

    /// Queues a status push to the origin region of a case handled here.
    pub async fn enqueue_push(
        &self,
        case_number: String,
        origin_region: String,
        one_thing_id: String,
        request: PushStatusRequest,
    ) -> Result<(), StoreError> {
        dispatch!(self.enqueue_push(case_number, origin_region, one_thing_id, request))
    }

    /// A revocation is in the gateways' shared log, which every replica follows: its
    /// publications still pending (one per configured gateway endpoint) are done. How
    /// many were closed.
    pub async fn revocation_published(&self, license_id: String) -> Result<u64, StoreError> {
        dispatch!(self.revocation_published(license_id))
    }

    /// Queues the publication of a revocation to every gateway replica in `endpoints`.
    pub async fn enqueue_revocation(
        &self,
        request: PublishRevocationRequest,
        endpoints: Vec<String>,
    ) -> Result<(), StoreError> {
        dispatch!(self.enqueue_revocation(request, endpoints))
    }

    /// Pending outbox entries whose next attempt is due, oldest first, at most
    /// `per_target` per target province, leaving out those in `in_flight` (being
    /// attempted now). On PostgreSQL they are claimed for this replica (leased; see
    /// [`Store::open_postgres`]), so the other replicas leave them out too.
    pub async fn due_outbox(
        &self,
        per_target: u32,
        in_flight: Vec<i64>,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        dispatch!(self.due_outbox(per_target, in_flight))
    }

    /// Hands back entries [`Store::due_outbox`] returned that this replica will not
    /// attempt now (no free slot, or shutting down): other replicas may claim them at
    /// once instead of after the lease. Nothing to do on SQLite, which leases nothing.
    pub async fn release_outbox(&self, ids: Vec<i64>) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(()),
            Backend::Postgres(store) => store.release_outbox(ids).await,
        }
    }

    /// Extends this replica's claims on the entries it is attempting (see
    /// [`Store::lease`]): called well within each lease, so a slow attempt keeps its
    /// entry and only a replica that stopped loses its claims.
    pub async fn renew_outbox_leases(&self, ids: Vec<i64>) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(()),
            Backend::Postgres(store) => store.renew_outbox_leases(ids).await,
        }
    }

    /// How long this replica's claim on an outbox entry lasts; `None` on SQLite.
    pub fn lease(&self) -> Option<std::time::Duration> {
        match &self.backend {
            Backend::Sqlite(_) => None,
            Backend::Postgres(store) => Some(store.lease()),
        }
    }

    /// Pending, blocked and dead entries per target region ever owed anything (zeros
    /// included, so the series stay; pruning delivered rows may drop a region), with the
    /// oldest pending one.
    pub async fn outbox_backlog(&self) -> Result<Vec<BacklogRow>, StoreError> {
        dispatch!(self.outbox_backlog())
    }

    /// Number of outbox entries not yet delivered.
    pub async fn pending_outbox(&self) -> Result<u64, StoreError> {
        dispatch!(self.pending_outbox())
    }

    /// Marks an entry delivered; for a delivery, records the handling region's answer on
    /// the application in the same transaction.
    pub async fn outbox_done(
        &self,
        id: i64,
        delivered: Option<StatusReport>,
    ) -> Result<(), StoreError> {
        dispatch!(self.outbox_done(id, delivered))
    }

    /// Schedules another attempt, keeping the class of this failure.
    pub async fn outbox_retry(
        &self,
        id: i64,
        next_attempt_ms: i64,
        error: String,
        class: Retry,
    ) -> Result<(), StoreError> {
        dispatch!(self.outbox_retry(id, next_attempt_ms, error, class))
    }

    /// Makes an entry the receiver refused for good a dead letter. Its case stays
    /// where it was (a receipt is not taken back by a machine): the citizen reads that
    /// staff are reviewing it, until an operator replays or closes it.
    pub async fn outbox_dead(&self, id: i64, error: String) -> Result<(), StoreError> {
        dispatch!(self.outbox_dead(id, error))
    }

    /// Dead letters, oldest first.
    pub async fn dead_letters(&self, limit: u32) -> Result<Vec<DeadLetter>, StoreError> {
        dispatch!(self.dead_letters(limit))
    }

    /// An operator sends a dead letter again (after fixing what refused it): it is
    /// pending and due now, with its idempotency key unchanged.
    pub async fn replay_dead_letter(&self, id: i64) -> Result<DeadLetterAction, StoreError> {
        dispatch!(self.dead_letter_action(id, None))
    }

    /// An operator closes a dead letter for good; a delivery's case is rejected with
    /// `reason`, which the citizen reads.
    pub async fn close_dead_letter(
        &self,
        id: i64,
        reason: String,
    ) -> Result<DeadLetterAction, StoreError> {
        dispatch!(self.dead_letter_action(id, Some(reason)))
    }

    /// Deletes delivered and closed entries finished before `before_ms`, and the keys
    /// of deliveries received before then, at most `limit` rows of each per call.
    /// Returns the rows deleted; `(0, 0)` on a replica while another one prunes.
    pub async fn prune(&self, before_ms: i64, limit: u32) -> Result<(usize, usize), StoreError> {
        dispatch!(self.prune(before_ms, limit))
    }
}
