//! The SQLite store's schema: the migrations that make a node's database.

/// The store's schema history, oldest first (see [`crate::sqlite`]). Append a step to
/// change the schema; never edit one. Step 1 is the schema from before versioning,
/// verbatim: `IF NOT EXISTS` lets it adopt databases made then (tables present,
/// user_version 0).
pub(super) const MIGRATIONS: &[&str] = &[
    MIGRATION_1,
    MIGRATION_2,
    MIGRATION_3,
    MIGRATION_4,
    MIGRATION_5,
    MIGRATION_6,
    MIGRATION_7,
    MIGRATION_8,
    MIGRATION_9,
    MIGRATION_10,
    MIGRATION_11,
    MIGRATION_12,
];

const MIGRATION_1: &str = r#"
CREATE TABLE IF NOT EXISTS settings (
    name  TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS case_counter (
    day  TEXT PRIMARY KEY,
    next INTEGER NOT NULL
);
-- Applications filed at this node (the origin side).
CREATE TABLE IF NOT EXISTS applications (
    case_number        TEXT PRIMARY KEY,
    one_thing_id       TEXT NOT NULL,
    origin_region      TEXT NOT NULL,
    target_region      TEXT NOT NULL,
    applicant_hash     TEXT NOT NULL,
    applicant_masked   TEXT NOT NULL,
    payload            BLOB NOT NULL,
    receipt            TEXT NOT NULL,
    stage              INTEGER NOT NULL,
    status_detail      TEXT NOT NULL,
    status_seq         INTEGER NOT NULL,
    status_updated_ms  INTEGER NOT NULL,
    handling_reference TEXT,
    created_ms         INTEGER NOT NULL,
    -- The portal client's Idempotency-Key and a digest of its request, if it sent one.
    client_key         TEXT UNIQUE,
    client_request_sha TEXT
);
-- Calls this node owes to other regions: deliveries and status pushes.
CREATE TABLE IF NOT EXISTS outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    kind            TEXT NOT NULL,
    case_number     TEXT NOT NULL,
    target_region   TEXT NOT NULL,
    one_thing_id    TEXT NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,
    payload         BLOB NOT NULL,
    state           TEXT NOT NULL DEFAULT 'pending',
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL,
    last_error      TEXT,
    created_ms      INTEGER NOT NULL,
    done_ms         INTEGER
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (state, next_attempt_ms);
-- Deliveries received from other regions, once per (origin, idempotency key).
CREATE TABLE IF NOT EXISTS inbound (
    origin_prefix   TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    case_number     TEXT NOT NULL,
    payload_sha256  TEXT NOT NULL,
    trace_id        TEXT NOT NULL,
    response        BLOB NOT NULL,
    received_ms     INTEGER NOT NULL,
    PRIMARY KEY (origin_prefix, idempotency_key)
);
"#;

/// Step 2: mutual recognition. The access log of lookups of this region's persons'
/// data by other regions (each person may read their own); revocations published to a
/// named gateway replica through the outbox.
const MIGRATION_2: &str = r#"
CREATE TABLE access_log (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    holder_hash      TEXT NOT NULL,
    kind             TEXT NOT NULL,
    license_id       TEXT,
    requester_region TEXT NOT NULL,
    one_thing_id     TEXT NOT NULL,
    case_number      TEXT NOT NULL,
    at_ms            INTEGER NOT NULL
);
CREATE INDEX access_log_holder ON access_log (holder_hash, at_ms);
ALTER TABLE outbox ADD COLUMN gateway_endpoint TEXT;
"#;

/// Step 3: traces and counts. Each case keeps the trace context its calls are made
/// under: the filing's span at the origin (deliveries, retries, live status queries),
/// the delivery's span at the handling region (status pushes). Rows from before keep
/// NULL and fall back to the trace derived from the case number. A received delivery
/// keeps its applicant's home province, which its status pushes name for the gateway's
/// counts by home region.
const MIGRATION_3: &str = r#"
ALTER TABLE applications ADD COLUMN trace_parent TEXT;
ALTER TABLE inbound ADD COLUMN trace_parent TEXT;
ALTER TABLE inbound ADD COLUMN applicant_home TEXT;
CREATE INDEX inbound_case ON inbound (case_number);
"#;

/// Step 4: an honest outbox. A refused entry is a dead letter an operator replays or
/// closes (with a reason the citizen sees), no longer `failed` for good; each entry
/// keeps the retry class of its last failure, so entries held by a configuration
/// refusal are counted apart from passing trouble. Delivered rows and received keys
/// are pruned by age (indexes for that).
const MIGRATION_4: &str = r#"
UPDATE outbox SET state = 'dead' WHERE state = 'failed';
ALTER TABLE outbox ADD COLUMN retry_class TEXT;
ALTER TABLE outbox ADD COLUMN closed_reason TEXT;
ALTER TABLE outbox ADD COLUMN replays INTEGER NOT NULL DEFAULT 0;
CREATE INDEX outbox_finished ON outbox (state, done_ms);
CREATE INDEX inbound_received ON inbound (received_ms);
"#;

/// Step 5: lookups the gateway answered from its cache, reported to the region that holds
/// the person's data, are recorded once each however often a report is delivered.
const MIGRATION_5: &str = r#"
ALTER TABLE access_log ADD COLUMN report_id TEXT;
CREATE UNIQUE INDEX access_log_report ON access_log (report_id);
"#;

/// Step 6: when an operator last replayed a dead letter: a replayed pre-review gets its
/// deadline again from then.
const MIGRATION_6: &str = r#"
ALTER TABLE outbox ADD COLUMN replayed_ms INTEGER;
"#;

/// Step 7: what other regions signed and sent about a case (deliveries, status pushes),
/// kept as evidence: the signature as it arrived and the message bytes it covers, the
/// first per call.
const MIGRATION_7: &str = r#"
CREATE TABLE signed_messages (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    case_number     TEXT NOT NULL,
    method          TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    target_region   TEXT NOT NULL,
    signer_region   TEXT NOT NULL,
    key_id          TEXT NOT NULL,
    signed_at       INTEGER NOT NULL,
    signature       TEXT NOT NULL,
    message         BLOB NOT NULL,
    received_ms     INTEGER NOT NULL
);
CREATE UNIQUE INDEX signed_messages_call ON signed_messages (method, idempotency_key);
CREATE INDEX signed_messages_case ON signed_messages (case_number);
"#;

/// Step 8: open cases are read by stage at every scrape (their time limits), without
/// reading the decided ones.
const MIGRATION_8: &str = r#"
CREATE INDEX applications_stage ON applications (stage);
"#;

/// Step 9: citizens' evaluations (好差评): those given at this node's portal, one per
/// case; those received as the handling region, with a poor one's follow-up deadline.
const MIGRATION_9: &str = r#"
CREATE TABLE evaluations (
    case_number  TEXT PRIMARY KEY,
    level        INTEGER NOT NULL,
    comment      TEXT NOT NULL,
    evaluated_ms INTEGER NOT NULL
);
CREATE TABLE evaluations_received (
    case_number   TEXT PRIMARY KEY,
    origin_region TEXT NOT NULL,
    one_thing_id  TEXT NOT NULL,
    level         INTEGER NOT NULL,
    comment       TEXT NOT NULL,
    evaluated_ms  INTEGER NOT NULL,
    received_ms   INTEGER NOT NULL,
    follow_up_due TEXT
);
"#;

/// Step 10: 多地联办. A joint case keeps its parts (JSON of `crate::joint::JointCase`:
/// each part's region, state and promise) with the application; NULL for a case one
/// region handles.
const MIGRATION_10: &str = r#"
ALTER TABLE applications ADD COLUMN parts TEXT;
"#;

/// Step 11: every lookup carries the applicant's explicit request (when and where they
/// asked for their data to be fetched); the access log keeps it. Older rows keep NULL.
const MIGRATION_11: &str = r#"
ALTER TABLE access_log ADD COLUMN consent_channel TEXT;
ALTER TABLE access_log ADD COLUMN consent_ms INTEGER;
"#;

/// Step 12: disputes of wrong data (异议处理), both sides by role: raised at this
/// node's window (counterpart: the issuing region) or received as the issuer
/// (counterpart: the flagging region, with the holder's keyed hash).
const MIGRATION_12: &str = r#"
CREATE TABLE disputes (
    dispute_id           TEXT NOT NULL,
    role                 TEXT NOT NULL,
    case_number          TEXT NOT NULL,
    counterpart          TEXT NOT NULL,
    one_thing_id         TEXT NOT NULL,
    subject              TEXT NOT NULL,
    license_id           TEXT,
    data                 TEXT NOT NULL,
    reason               TEXT NOT NULL,
    raised_ms            INTEGER NOT NULL,
    holder_hash          TEXT,
    received_ms          INTEGER,
    outcome              TEXT,
    note                 TEXT,
    corrected_license_id TEXT,
    settled_ms           INTEGER,
    PRIMARY KEY (role, counterpart, dispute_id)
);
CREATE INDEX disputes_case ON disputes (role, case_number);
CREATE INDEX disputes_open ON disputes (outcome, role);
"#;
