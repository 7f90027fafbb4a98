//! The PostgreSQL store's schema: the same tables as the SQLite store's final schema,
//! plus the leases by which replicas share the outbox.

/// The component name the schema's version is kept under (see
/// [`tongban_runtime::postgres::migrate`]).
pub(super) const COMPONENT: &str = "node_store";

/// The schema history, oldest first. Append a step to change the schema; never edit one:
/// databases in the field have run the old ones.
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
];

/// Step 1: the tables of the SQLite store's step 4, and the outbox's leases: the replica
/// that claimed a pending entry (`lease_owner`) has it to itself until `lease_until_ms`
/// (the database's clock), then any replica may claim it again.
const MIGRATION_1: &str = r#"
CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value BYTEA NOT NULL
);
CREATE TABLE case_counter (
    day  TEXT PRIMARY KEY,
    next BIGINT NOT NULL
);
-- Applications filed at this node (the origin side).
CREATE TABLE applications (
    case_number        TEXT PRIMARY KEY,
    one_thing_id       TEXT NOT NULL,
    origin_region      TEXT NOT NULL,
    target_region      TEXT NOT NULL,
    applicant_hash     TEXT NOT NULL,
    applicant_masked   TEXT NOT NULL,
    payload            BYTEA NOT NULL,
    receipt            TEXT NOT NULL,
    stage              INTEGER NOT NULL,
    status_detail      TEXT NOT NULL,
    status_seq         BIGINT NOT NULL,
    status_updated_ms  BIGINT NOT NULL,
    handling_reference TEXT,
    created_ms         BIGINT NOT NULL,
    -- The portal client's Idempotency-Key and a digest of its request, if it sent one.
    client_key         TEXT UNIQUE,
    client_request_sha TEXT,
    trace_parent       TEXT
);
-- Calls this node owes to other regions: deliveries, status pushes, revocations.
CREATE TABLE outbox (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind             TEXT NOT NULL,
    case_number      TEXT NOT NULL,
    target_region    TEXT NOT NULL,
    one_thing_id     TEXT NOT NULL,
    idempotency_key  TEXT NOT NULL UNIQUE,
    payload          BYTEA NOT NULL,
    state            TEXT NOT NULL DEFAULT 'pending',
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms  BIGINT NOT NULL,
    last_error       TEXT,
    created_ms       BIGINT NOT NULL,
    done_ms          BIGINT,
    gateway_endpoint TEXT,
    retry_class      TEXT,
    closed_reason    TEXT,
    replays          INTEGER NOT NULL DEFAULT 0,
    lease_owner      TEXT,
    lease_until_ms   BIGINT
);
-- Due scans go province by province (see `outbox::due_outbox`), oldest first.
CREATE INDEX outbox_due ON outbox (substr(target_region, 1, 2), next_attempt_ms, id)
    WHERE state = 'pending';
CREATE INDEX outbox_finished ON outbox (state, done_ms);
-- Deliveries received from other regions, once per (origin, idempotency key).
CREATE TABLE inbound (
    origin_prefix   TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    case_number     TEXT NOT NULL,
    payload_sha256  TEXT NOT NULL,
    trace_id        TEXT NOT NULL,
    response        BYTEA NOT NULL,
    received_ms     BIGINT NOT NULL,
    trace_parent    TEXT,
    applicant_home  TEXT,
    PRIMARY KEY (origin_prefix, idempotency_key)
);
CREATE INDEX inbound_case ON inbound (case_number);
CREATE INDEX inbound_received ON inbound (received_ms);
-- Lookups of this region's persons' data by other regions (each person may read their
-- own).
CREATE TABLE access_log (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    holder_hash      TEXT NOT NULL,
    kind             TEXT NOT NULL,
    license_id       TEXT,
    requester_region TEXT NOT NULL,
    one_thing_id     TEXT NOT NULL,
    case_number      TEXT NOT NULL,
    at_ms            BIGINT NOT NULL
);
CREATE INDEX access_log_holder ON access_log (holder_hash, at_ms);
"#;

/// Step 2 (the SQLite store's step 5): lookups the gateway answered from its cache,
/// reported here, recorded once each.
const MIGRATION_2: &str = r#"
ALTER TABLE access_log ADD COLUMN report_id TEXT;
CREATE UNIQUE INDEX access_log_report ON access_log (report_id);
"#;

/// Step 3 (the SQLite store's step 6): when an operator last replayed a dead letter.
const MIGRATION_3: &str = r#"
ALTER TABLE outbox ADD COLUMN replayed_ms BIGINT;
"#;

/// Step 4 (the SQLite store's step 7): signed messages kept with their cases.
const MIGRATION_4: &str = r#"
CREATE TABLE signed_messages (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    case_number     TEXT NOT NULL,
    method          TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    target_region   TEXT NOT NULL,
    signer_region   TEXT NOT NULL,
    key_id          TEXT NOT NULL,
    signed_at       BIGINT NOT NULL,
    signature       TEXT NOT NULL,
    message         BYTEA NOT NULL,
    received_ms     BIGINT NOT NULL
);
CREATE UNIQUE INDEX signed_messages_call ON signed_messages (method, idempotency_key);
CREATE INDEX signed_messages_case ON signed_messages (case_number);
"#;

/// Step 5 (the SQLite store's step 8): open cases read by stage at every scrape.
const MIGRATION_5: &str = r#"
CREATE INDEX applications_stage ON applications (stage);
"#;

/// Step 6 (the SQLite store's step 9): citizens' evaluations, given and received.
const MIGRATION_6: &str = r#"
CREATE TABLE evaluations (
    case_number  TEXT PRIMARY KEY,
    level        INTEGER NOT NULL,
    comment      TEXT NOT NULL,
    evaluated_ms BIGINT NOT NULL
);
CREATE TABLE evaluations_received (
    case_number   TEXT PRIMARY KEY,
    origin_region TEXT NOT NULL,
    one_thing_id  TEXT NOT NULL,
    level         INTEGER NOT NULL,
    comment       TEXT NOT NULL,
    evaluated_ms  BIGINT NOT NULL,
    received_ms   BIGINT NOT NULL,
    follow_up_due TEXT
);
"#;

/// Step 7 (the SQLite store's step 10): a joint case's parts, with the application.
const MIGRATION_7: &str = r#"
ALTER TABLE applications ADD COLUMN parts TEXT;
"#;

/// Step 8 (the SQLite store's step 11): the applicant's request with each lookup.
const MIGRATION_8: &str = r#"
ALTER TABLE access_log ADD COLUMN consent_channel TEXT;
ALTER TABLE access_log ADD COLUMN consent_ms BIGINT;
"#;

/// Step 9 (the SQLite store's step 12): disputes of wrong data, both sides by role.
const MIGRATION_9: &str = r#"
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
    raised_ms            BIGINT NOT NULL,
    holder_hash          TEXT,
    received_ms          BIGINT,
    outcome              TEXT,
    note                 TEXT,
    corrected_license_id TEXT,
    settled_ms           BIGINT,
    PRIMARY KEY (role, counterpart, dispute_id)
);
CREATE INDEX disputes_case ON disputes (role, case_number);
CREATE INDEX disputes_open ON disputes (outcome, role);
"#;
