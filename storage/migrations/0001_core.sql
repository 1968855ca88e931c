-- meterhub 0001: the core schema.
-- Forward-only; applied in one transaction by `meterhub db upgrade`.
-- Uses only what TimescaleDB's Apache edition offers (create_hypertable, chunks, time_bucket).

CREATE EXTENSION IF NOT EXISTS timescaledb;
CREATE EXTENSION IF NOT EXISTS btree_gist;

-- ---------------------------------------------------------------------------------------------
-- Vocabulary
-- ---------------------------------------------------------------------------------------------
CREATE TABLE quantity (
    id          smallint PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    unit        text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('register', 'interval', 'instant', 'status'))
);

INSERT INTO quantity (id, name, unit, kind) VALUES
    (1,  'forward_active_total_kwh', 'kWh', 'register'),
    (2,  'forward_active_t1_kwh', 'kWh', 'register'),
    (3,  'forward_active_t2_kwh', 'kWh', 'register'),
    (4,  'forward_active_t3_kwh', 'kWh', 'register'),
    (5,  'forward_active_t4_kwh', 'kWh', 'register'),
    (6,  'reverse_active_total_kwh', 'kWh', 'register'),
    (7,  'daily_frozen_forward_active_total_kwh', 'kWh', 'register'),
    (8,  'daily_frozen_reverse_active_total_kwh', 'kWh', 'register'),
    (20, 'interval_kwh', 'kWh', 'interval'),
    (21, 'interval_reverse_kwh', 'kWh', 'interval'),
    (40, 'voltage_a_v', 'V', 'instant'),
    (41, 'voltage_b_v', 'V', 'instant'),
    (42, 'voltage_c_v', 'V', 'instant'),
    (43, 'current_a_a', 'A', 'instant'),
    (44, 'current_b_a', 'A', 'instant'),
    (45, 'current_c_a', 'A', 'instant'),
    (46, 'active_power_total_kw', 'kW', 'instant'),
    (47, 'power_factor_total', '1', 'instant'),
    (48, 'frequency_hz', 'Hz', 'instant'),
    (60, 'status_word_3', '', 'status');

-- ---------------------------------------------------------------------------------------------
-- The archive (档案): areas, devices, meters, customers, accounts, tariffs
-- ---------------------------------------------------------------------------------------------
CREATE TABLE area (
    id              text PRIMARY KEY,
    name            text,
    loss_band_lo    double precision,         -- percent; NULL = the site default
    loss_band_hi    double precision,
    coverage_min    double precision,         -- percent
    estimated_max   double precision,         -- percent of sales
    low_energy_kwh  double precision,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (loss_band_lo IS NULL OR loss_band_hi IS NULL OR loss_band_lo <= loss_band_hi)
);

CREATE TABLE gateway (
    id          text PRIMARY KEY,
    url         text,
    mode        text NOT NULL DEFAULT 'connect' CHECK (mode IN ('connect', 'listen')),
    model       text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (mode = 'listen' OR url IS NOT NULL)
);

CREATE TABLE concentrator (
    id            text PRIMARY KEY,
    broker        text,
    username      text,
    password_ref  text,                        -- e.g. env:METERHUB_C001_PASSWORD; never a secret
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE customer (
    id                 text PRIMARY KEY,
    name               text,
    protected          boolean NOT NULL DEFAULT false,  -- important/vulnerable: never tripped
    protection_reason  text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE tariff (
    id              text NOT NULL,
    effective_from  timestamptz NOT NULL,
    effective_to    timestamptz,
    name            text,
    kind            text NOT NULL CHECK (kind IN ('flat', 'tiered', 'tou', 'tiered_tou')),
    currency        text NOT NULL DEFAULT 'CNY',
    definition      jsonb NOT NULL,            -- tiers / time-of-use periods, validated by meterhub
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (id, effective_from),
    CHECK (effective_to IS NULL OR effective_to > effective_from),
    EXCLUDE USING gist (id WITH =, tstzrange(effective_from, effective_to) WITH &&)
);

CREATE TABLE account (
    id              text PRIMARY KEY,
    customer_id     text NOT NULL REFERENCES customer (id),
    class           text NOT NULL DEFAULT 'residential',
    tariff_id       text,
    prepaid         boolean NOT NULL DEFAULT true,
    balance         numeric(14, 2) NOT NULL DEFAULT 0,   -- maintained with the ledger
    dispute_open    boolean NOT NULL DEFAULT false,       -- open complaint about the amount
    status          text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'closed')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE meter (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    number           text NOT NULL UNIQUE CHECK (number ~ '^[0-9]{12}$'),
    role             text NOT NULL DEFAULT 'customer' CHECK (role IN ('supply', 'customer')),
    protocol         text NOT NULL
                     CHECK (protocol IN ('dlt645-2007', 'dlt645-1997', 'modbus', 'mqtt', 'manual')),
    model            text,
    interval_min     integer CHECK (interval_min > 0 AND interval_min <= 1440),
    schedule         text,
    bidirectional    boolean NOT NULL DEFAULT false,
    ct               double precision NOT NULL DEFAULT 1 CHECK (ct > 0),
    pt               double precision NOT NULL DEFAULT 1 CHECK (pt > 0),
    rollover_kwh     double precision NOT NULL DEFAULT 1000000 CHECK (rollover_kwh > 0),
    gateway_id       text REFERENCES gateway (id),
    unit_id          integer CHECK (unit_id BETWEEN 0 AND 255),
    concentrator_id  text REFERENCES concentrator (id),
    installed_at     timestamptz,
    start_reading    double precision,
    removed_at       timestamptz,
    end_reading      double precision,
    customer_id      text REFERENCES customer (id),
    account_id       text REFERENCES account (id),
    protect          boolean NOT NULL DEFAULT false,      -- 保电: executes no trip
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CHECK (removed_at IS NULL OR installed_at IS NULL OR removed_at > installed_at),
    CHECK ((removed_at IS NULL) = (end_reading IS NULL))
);
CREATE INDEX meter_gateway_idx ON meter (gateway_id) WHERE gateway_id IS NOT NULL;
CREATE INDEX meter_concentrator_idx ON meter (concentrator_id) WHERE concentrator_id IS NOT NULL;
CREATE INDEX meter_account_idx ON meter (account_id) WHERE account_id IS NOT NULL;

-- 户变关系 with history: which area a meter belongs to, [valid_from, valid_to).
CREATE TABLE meter_area (
    meter_id    bigint NOT NULL REFERENCES meter (id),
    area_id     text NOT NULL REFERENCES area (id),
    valid_from  timestamptz,                  -- NULL = since ever
    valid_to    timestamptz,                  -- NULL = until further notice
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (valid_to IS NULL OR valid_from IS NULL OR valid_to > valid_from),
    EXCLUDE USING gist (meter_id WITH =, tstzrange(valid_from, valid_to) WITH &&)
);
CREATE INDEX meter_area_area_idx ON meter_area (area_id);

-- CT/PT multiplier history: the multipliers in force from valid_from on.
CREATE TABLE meter_multiplier (
    meter_id    bigint NOT NULL REFERENCES meter (id),
    valid_from  timestamptz NOT NULL,
    ct          double precision NOT NULL CHECK (ct > 0),
    pt          double precision NOT NULL CHECK (pt > 0),
    PRIMARY KEY (meter_id, valid_from)
);

-- ---------------------------------------------------------------------------------------------
-- Readings. Actual values are keyed by (meter, quantity, ts): an identical re-delivery is
-- dropped and counted, a different value goes to reading_conflict. Estimates, substitutions and
-- edits are versioned rows of reading_revision; none overwrites an actual.
-- Values are as the meter registers them (secondary side); multipliers are applied in analytics.
-- ---------------------------------------------------------------------------------------------
CREATE TABLE register_reading (
    meter_id     bigint NOT NULL,
    quantity_id  smallint NOT NULL,
    ts           timestamptz NOT NULL,        -- the schedule slot / freeze instant
    value        double precision NOT NULL,
    source       text NOT NULL,               -- e.g. mqtt:C001, dlt645:G001, import:FILE
    received_at  timestamptz NOT NULL DEFAULT now(),
    read_kind    text NOT NULL DEFAULT 'meter' CHECK (read_kind IN ('meter', 'manual')),
    reader       text,
    meter_ts     timestamptz,                 -- the meter's own clock, when reported
    PRIMARY KEY (meter_id, quantity_id, ts)
);
SELECT create_hypertable('register_reading', 'ts', chunk_time_interval => interval '1 day');

CREATE TABLE interval_reading (
    meter_id      bigint NOT NULL,
    quantity_id   smallint NOT NULL,
    ts            timestamptz NOT NULL,       -- the interval's end
    value         double precision NOT NULL,
    interval_min  smallint NOT NULL CHECK (interval_min > 0),
    source        text NOT NULL,
    received_at   timestamptz NOT NULL DEFAULT now(),
    derived       boolean NOT NULL DEFAULT false,  -- computed from consecutive registers
    PRIMARY KEY (meter_id, quantity_id, ts)
);
SELECT create_hypertable('interval_reading', 'ts', chunk_time_interval => interval '1 day');

CREATE TABLE reading_conflict (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    reading_table   text NOT NULL CHECK (reading_table IN ('register_reading', 'interval_reading')),
    meter_id        bigint NOT NULL,
    quantity_id     smallint NOT NULL,
    ts              timestamptz NOT NULL,
    stored_value    double precision NOT NULL,
    offered_value   double precision NOT NULL,
    source          text NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT now(),
    status          text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'accepted', 'rejected')),
    resolved_by     text,
    resolved_at     timestamptz,
    UNIQUE (reading_table, meter_id, quantity_id, ts, offered_value)
);
CREATE INDEX reading_conflict_meter_idx ON reading_conflict (meter_id, quantity_id, ts);

CREATE TABLE reading_revision (
    meter_id     bigint NOT NULL,
    quantity_id  smallint NOT NULL,
    ts           timestamptz NOT NULL,
    origin       text NOT NULL CHECK (origin IN ('estimated', 'substituted', 'edited')),
    version      integer NOT NULL DEFAULT 1 CHECK (version > 0),
    value        double precision NOT NULL,
    method       text,                         -- linear, like_day, profile, manual ...
    reason       text,                         -- comms_fault, outage, clock_reset ...
    created_by   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    note         text,
    PRIMARY KEY (meter_id, quantity_id, ts, origin, version)
);
SELECT create_hypertable('reading_revision', 'ts', chunk_time_interval => interval '7 days');

-- The best value per slot: edited > actual > substituted > estimated; newest version wins.
CREATE VIEW reading_best AS
WITH candidates AS (
    SELECT meter_id, quantity_id, ts, value, 'actual'::text AS origin, NULL::text AS method,
           NULL::text AS reason, source, received_at AS recorded_at, 2 AS rank, 0 AS version
    FROM register_reading
    UNION ALL
    SELECT meter_id, quantity_id, ts, value, 'actual', NULL, NULL, source, received_at, 2, 0
    FROM interval_reading
    UNION ALL
    SELECT meter_id, quantity_id, ts, value, origin, method, reason, created_by, created_at,
           CASE origin WHEN 'edited' THEN 1 WHEN 'substituted' THEN 3 ELSE 4 END, version
    FROM reading_revision
)
SELECT DISTINCT ON (meter_id, quantity_id, ts)
       meter_id, quantity_id, ts, value, origin, method, reason, source, recorded_at
FROM candidates
ORDER BY meter_id, quantity_id, ts, rank, version DESC;

-- One row per ingest call: what came in and what happened to it.
CREATE TABLE ingest_batch (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source       text NOT NULL,
    batch_ref    text,                         -- e.g. concentrator batch id, file checksum
    received_at  timestamptz NOT NULL DEFAULT now(),
    rows_in      integer NOT NULL,
    inserted     integer NOT NULL,
    duplicates   integer NOT NULL,
    conflicts    integer NOT NULL,
    quarantined  integer NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX ingest_batch_ref_idx ON ingest_batch (source, batch_ref)
    WHERE batch_ref IS NOT NULL;

CREATE TABLE meter_event (
    meter_id     bigint NOT NULL,
    ts           timestamptz NOT NULL,
    code         text NOT NULL,               -- power_loss, cover_open, relay_state, clock_reset ...
    detail       jsonb,
    source       text NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (meter_id, ts, code)
);
SELECT create_hypertable('meter_event', 'ts', chunk_time_interval => interval '30 days');

-- Input that could not be parsed or accepted: kept with its raw bytes, never dropped.
CREATE TABLE quarantine (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at    timestamptz NOT NULL DEFAULT now(),
    source         text NOT NULL,
    kind           text NOT NULL,              -- dlt645-frame, mqtt-payload, csv-row, modbus ...
    raw            bytea NOT NULL,
    reason         text NOT NULL,              -- machine-readable
    message        text NOT NULL,
    context        jsonb,                      -- topic, line number, file, meter ...
    status         text NOT NULL DEFAULT 'new' CHECK (status IN ('new', 'replayed', 'discarded')),
    replayed_at    timestamptz,
    replay_result  text
);
CREATE INDEX quarantine_status_idx ON quarantine (status, received_at);

-- ---------------------------------------------------------------------------------------------
-- Prepaid control: payments, the append-only ledger, notices, the command outbox, audit.
-- ---------------------------------------------------------------------------------------------
CREATE TABLE payment (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id   text NOT NULL REFERENCES account (id),
    channel      text NOT NULL,               -- bank, wechat, alipay, counter ...
    channel_ref  text NOT NULL,               -- the channel's own transaction id
    amount       numeric(14, 2) NOT NULL CHECK (amount > 0),
    paid_at      timestamptz NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (channel, channel_ref)             -- a re-sent payment is recorded once
);
CREATE INDEX payment_account_idx ON payment (account_id, paid_at);

CREATE TABLE ledger (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id     text NOT NULL REFERENCES account (id),
    ts             timestamptz NOT NULL,
    kind           text NOT NULL CHECK (kind IN ('payment', 'charge', 'adjustment', 'refund')),
    amount         numeric(14, 2) NOT NULL,    -- + credit, - debit
    balance_after  numeric(14, 2) NOT NULL,
    ref            text,                       -- payment id, charge period, ...
    created_at     timestamptz NOT NULL DEFAULT now(),
    created_by     text NOT NULL DEFAULT 'meterhub'
);
CREATE INDEX ledger_account_idx ON ledger (account_id, id);
CREATE UNIQUE INDEX ledger_charge_once_idx ON ledger (account_id, kind, ref)
    WHERE kind = 'charge' AND ref IS NOT NULL;

CREATE TABLE notice (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id  text NOT NULL REFERENCES account (id),
    kind        text NOT NULL,                 -- low_balance, disconnection, final, reconnected
    channel     text NOT NULL,                 -- sms, app, letter, ...
    served_at   timestamptz NOT NULL,
    due_at      timestamptz,                   -- the disconnection it announces
    content     text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX notice_account_idx ON notice (account_id, served_at);

CREATE TABLE control_command (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    idempotency_key  uuid NOT NULL UNIQUE,
    meter_id         bigint NOT NULL REFERENCES meter (id),
    account_id       text REFERENCES account (id),
    action           text NOT NULL CHECK (action IN ('trip', 'close', 'close_allowed', 'alarm',
                         'alarm_release', 'protect', 'protect_release', 'relay_read')),
    state            text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'acked',
                         'confirmed', 'retry_wait', 'escalated', 'superseded', 'failed')),
    reason           text NOT NULL,
    requested_by     text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    deadline         timestamptz,              -- confirmed by then, or escalated
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_error       text,
    confirmed_at     timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now()
);
-- At most one in-flight command per meter.
CREATE UNIQUE INDEX control_command_one_inflight ON control_command (meter_id)
    WHERE state IN ('pending', 'sent', 'acked', 'retry_wait');
CREATE INDEX control_command_due_idx ON control_command (next_attempt_at)
    WHERE state IN ('pending', 'retry_wait');

CREATE TABLE control_command_transition (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    command_id  bigint NOT NULL REFERENCES control_command (id),
    ts          timestamptz NOT NULL DEFAULT now(),
    from_state  text,
    to_state    text NOT NULL,
    event       text NOT NULL,
    detail      jsonb
);
CREATE INDEX control_command_transition_idx ON control_command_transition (command_id, id);

CREATE TABLE audit_log (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ts            timestamptz NOT NULL DEFAULT now(),
    actor         text NOT NULL,
    action        text NOT NULL,
    subject_type  text NOT NULL,
    subject_id    text NOT NULL,
    detail        jsonb
);
CREATE INDEX audit_log_subject_idx ON audit_log (subject_type, subject_id, ts);

-- The ledger and the audit log are append-only.
CREATE FUNCTION meterhub_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
END;
$$;
CREATE TRIGGER ledger_append_only BEFORE UPDATE OR DELETE ON ledger
    FOR EACH ROW EXECUTE FUNCTION meterhub_append_only();
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION meterhub_append_only();
CREATE TRIGGER ledger_no_truncate BEFORE TRUNCATE ON ledger
    FOR EACH STATEMENT EXECUTE FUNCTION meterhub_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION meterhub_append_only();
