-- meterhub 0006: stored results of `vee run`, `analyze suspects` and manual-read screening.
-- Estimates themselves are reading_revision rows (origin 'estimated'); these tables hold what
-- the commands found, for the API, the dashboard and the field crews.

-- One row per `vee run`: what it covered and what it wrote.
CREATE TABLE vee_run (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    d_from               date NOT NULL,
    d_to                 date NOT NULL,
    started_at           timestamptz NOT NULL DEFAULT now(),
    meters               integer NOT NULL DEFAULT 0,
    estimates_written    integer NOT NULL DEFAULT 0,   -- new estimate versions
    estimates_unchanged  integer NOT NULL DEFAULT 0,   -- same estimate already stored
    estimates_held       integer NOT NULL DEFAULT 0,   -- held for review (area loss step)
    created_by           text NOT NULL,
    CHECK (d_to >= d_from)
);

-- The `vee report` row of each meter for the window of a run (latest run wins).
CREATE TABLE vee_meter_result (
    meter_id       bigint NOT NULL REFERENCES meter (id),
    d_from         date NOT NULL,
    d_to           date NOT NULL,
    interval_min   integer NOT NULL,
    first_ts       timestamptz,
    last_ts        timestamptz,
    expected       integer NOT NULL,
    received       integer NOT NULL,
    missing        integer NOT NULL,
    gaps           integer NOT NULL,
    gap_slots_max  integer NOT NULL,
    duplicates     integer NOT NULL,
    estimated      integer NOT NULL,
    flags          jsonb NOT NULL,                 -- {rule id: count}
    run_id         bigint REFERENCES vee_run (id),
    computed_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (meter_id, d_from, d_to)
);

-- VEE flags per meter, local day and rule (slot rules counted per slot, daily rules once).
CREATE TABLE vee_flag (
    meter_id     bigint NOT NULL REFERENCES meter (id),
    day          date NOT NULL,
    rule         text NOT NULL CHECK (rule IN (
                     'gap', 'duplicate', 'clock_tolerance', 'time_reset', 'negative_consumption',
                     'rollover', 'spike', 'high_vs_history', 'low_vs_history', 'zero_consumption',
                     'zero_consumption_outage', 'register_vs_intervals', 'total_vs_tariffs',
                     'multiplier_change', 'read_after_removal')),
    count        integer NOT NULL CHECK (count > 0),
    run_id       bigint REFERENCES vee_run (id),
    computed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (meter_id, day, rule)
);
CREATE INDEX vee_flag_day_idx ON vee_flag (day, rule);

-- Estimates `vee run` did not write because the area balance shows a loss step on their day:
-- such an estimate would hide the step. The slot stays a gap until someone decides.
CREATE TABLE vee_estimate_review (
    meter_id       bigint NOT NULL REFERENCES meter (id),
    quantity_id    smallint NOT NULL,
    ts             timestamptz NOT NULL,
    value          double precision NOT NULL,
    method         text NOT NULL,
    reason         text,
    area_id        text NOT NULL REFERENCES area (id),
    day            date NOT NULL,
    rate           double precision NOT NULL,     -- the day's line-loss rate, percent
    baseline_rate  double precision NOT NULL,     -- median rate of the days before
    status         text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'approved', 'rejected')),
    run_id         bigint REFERENCES vee_run (id),
    created_at     timestamptz NOT NULL DEFAULT now(),
    resolved_by    text,
    resolved_at    timestamptz,
    PRIMARY KEY (meter_id, quantity_id, ts)
);
CREATE INDEX vee_estimate_review_open_idx ON vee_estimate_review (status, day);

-- `analyze suspects`: every meter the balance fit ranked, per area and window.
CREATE TABLE suspect (
    area_id         text NOT NULL REFERENCES area (id),
    d_from          date NOT NULL,
    d_to            date NOT NULL,
    meter_number    text NOT NULL,
    meter_id        bigint REFERENCES meter (id),
    rank            integer NOT NULL,              -- 1 = highest score in the area
    kind            text NOT NULL CHECK (kind IN ('meter_error', 'stopped_meter', 'reversed_meter',
                        'theft', 'wrong_area', 'pv_export_missing', 'supply_ratio')),
    score           double precision NOT NULL,
    alert           boolean NOT NULL,              -- score at or above the alert threshold
    error_estimate  double precision,              -- ε as a fraction
    uncertainty     double precision,
    since           timestamptz,
    evidence        jsonb NOT NULL,
    computed_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (area_id, d_from, d_to, meter_number, kind)
);
CREATE INDEX suspect_alert_idx ON suspect (d_to, area_id) WHERE alert;

-- Manual-read screening (估抄 / 漏抄 / 错抄): one row per meter and reading cycle.
CREATE TABLE manual_read_score (
    meter_id         bigint NOT NULL REFERENCES meter (id),
    cycle            date NOT NULL,                 -- the cycle's first local day
    ts               timestamptz,                   -- the read's timestamp; NULL when skipped
    reader           text,
    value            double precision,
    estimated_score  double precision NOT NULL,
    skipped_score    double precision NOT NULL,
    error_score      double precision NOT NULL,
    evidence         text[] NOT NULL DEFAULT '{}',
    computed_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (meter_id, cycle)
);

CREATE TABLE reader_score (
    reader       text NOT NULL,
    d_from       date NOT NULL,
    d_to         date NOT NULL,
    reads        integer NOT NULL,
    estimated    double precision NOT NULL,        -- mean 估抄 score of the reader's reads
    skipped      integer NOT NULL,
    errors       integer NOT NULL,
    score        double precision NOT NULL,
    computed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (reader, d_from, d_to)
);
