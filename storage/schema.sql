CREATE EXTENSION IF NOT EXISTS timescaledb WITH SCHEMA public;

CREATE EXTENSION IF NOT EXISTS btree_gist WITH SCHEMA public;

CREATE FUNCTION public.meterhub_append_only() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TABLE public.account (
    id text NOT NULL,
    customer_id text NOT NULL,
    class text DEFAULT 'residential'::text NOT NULL,
    tariff_id text,
    prepaid boolean DEFAULT true NOT NULL,
    balance numeric(14,2) DEFAULT 0 NOT NULL,
    dispute_open boolean DEFAULT false NOT NULL,
    status text DEFAULT 'active'::text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT account_status_check CHECK ((status = ANY (ARRAY['active'::text, 'closed'::text])))
);

CREATE TABLE public.area (
    id text NOT NULL,
    name text,
    loss_band_lo double precision,
    loss_band_hi double precision,
    coverage_min double precision,
    estimated_max double precision,
    low_energy_kwh double precision,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT area_check CHECK (((loss_band_lo IS NULL) OR (loss_band_hi IS NULL) OR (loss_band_lo <= loss_band_hi)))
);

CREATE TABLE public.audit_log (
    id bigint NOT NULL,
    ts timestamp with time zone DEFAULT now() NOT NULL,
    actor text NOT NULL,
    action text NOT NULL,
    subject_type text NOT NULL,
    subject_id text NOT NULL,
    detail jsonb
);

ALTER TABLE public.audit_log ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.audit_log_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE public.command_ack (
    concentrator_id text NOT NULL,
    command text NOT NULL,
    result text NOT NULL,
    ts timestamp with time zone NOT NULL,
    meter_number text,
    meter_id bigint,
    relay text,
    status_word_3 integer,
    error_bits text[] DEFAULT '{}'::text[] NOT NULL,
    detail text,
    source text NOT NULL,
    received_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT command_ack_relay_check CHECK ((relay = ANY (ARRAY['open'::text, 'closed'::text]))),
    CONSTRAINT command_ack_result_check CHECK ((result = ANY (ARRAY['accepted'::text, 'done'::text, 'refused'::text, 'no_answer'::text, 'expired'::text, 'rejected'::text])))
);

CREATE TABLE public.concentrator (
    id text NOT NULL,
    broker text,
    username text,
    password_ref text,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL
);

CREATE TABLE public.concentrator_event (
    concentrator_id text NOT NULL,
    ts timestamp with time zone NOT NULL,
    code text NOT NULL,
    detail jsonb,
    source text NOT NULL,
    received_at timestamp with time zone DEFAULT now() NOT NULL
);

CREATE TABLE public.control_command (
    id bigint NOT NULL,
    idempotency_key uuid NOT NULL,
    meter_id bigint NOT NULL,
    account_id text,
    action text NOT NULL,
    state text DEFAULT 'pending'::text NOT NULL,
    reason text NOT NULL,
    requested_by text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    deadline timestamp with time zone,
    attempts integer DEFAULT 0 NOT NULL,
    next_attempt_at timestamp with time zone DEFAULT now() NOT NULL,
    last_error text,
    confirmed_at timestamp with time zone,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT control_command_action_check CHECK ((action = ANY (ARRAY['trip'::text, 'close'::text, 'close_allowed'::text, 'alarm'::text, 'alarm_release'::text, 'protect'::text, 'protect_release'::text, 'relay_read'::text]))),
    CONSTRAINT control_command_state_check CHECK ((state = ANY (ARRAY['pending'::text, 'sent'::text, 'acked'::text, 'confirmed'::text, 'retry_wait'::text, 'escalated'::text, 'superseded'::text, 'failed'::text])))
);

ALTER TABLE public.control_command ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.control_command_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE public.control_command_transition (
    id bigint NOT NULL,
    command_id bigint NOT NULL,
    ts timestamp with time zone DEFAULT now() NOT NULL,
    from_state text,
    to_state text NOT NULL,
    event text NOT NULL,
    detail jsonb
);

ALTER TABLE public.control_command_transition ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.control_command_transition_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE public.customer (
    id text NOT NULL,
    name text,
    protected boolean DEFAULT false NOT NULL,
    protection_reason text,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL
);

CREATE TABLE public.gateway (
    id text NOT NULL,
    url text,
    mode text DEFAULT 'connect'::text NOT NULL,
    model text,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT gateway_check CHECK (((mode = 'listen'::text) OR (url IS NOT NULL))),
    CONSTRAINT gateway_mode_check CHECK ((mode = ANY (ARRAY['connect'::text, 'listen'::text])))
);

CREATE TABLE public.ingest_batch (
    id bigint NOT NULL,
    source text NOT NULL,
    batch_ref text,
    received_at timestamp with time zone DEFAULT now() NOT NULL,
    rows_in integer NOT NULL,
    inserted integer NOT NULL,
    duplicates integer NOT NULL,
    conflicts integer NOT NULL,
    quarantined integer DEFAULT 0 NOT NULL
);

ALTER TABLE public.ingest_batch ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.ingest_batch_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE public.interval_reading (
    meter_id bigint NOT NULL,
    quantity_id smallint NOT NULL,
    ts timestamp with time zone NOT NULL,
    value double precision NOT NULL,
    interval_min smallint NOT NULL,
    source text NOT NULL,
    received_at timestamp with time zone DEFAULT now() NOT NULL,
    derived boolean DEFAULT false NOT NULL,
    CONSTRAINT interval_reading_interval_min_check CHECK ((interval_min > 0))
);

CREATE TABLE public.ledger (
    id bigint NOT NULL,
    account_id text NOT NULL,
    ts timestamp with time zone NOT NULL,
    kind text NOT NULL,
    amount numeric(14,2) NOT NULL,
    balance_after numeric(14,2) NOT NULL,
    ref text,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    created_by text DEFAULT 'meterhub'::text NOT NULL,
    CONSTRAINT ledger_kind_check CHECK ((kind = ANY (ARRAY['payment'::text, 'charge'::text, 'adjustment'::text, 'refund'::text])))
);

ALTER TABLE public.ledger ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.ledger_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE public.line_loss (
    area_id text NOT NULL,
    period text NOT NULL,
    label text NOT NULL,
    supply_kwh double precision,
    sales_kwh double precision,
    loss_kwh double precision,
    rate double precision,
    state text NOT NULL,
    coverage double precision NOT NULL,
    estimated_share double precision,
    computed_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT line_loss_period_check CHECK ((period = ANY (ARRAY['day'::text, 'month'::text]))),
    CONSTRAINT line_loss_state_check CHECK ((state = ANY (ARRAY['qualified'::text, 'high_loss'::text, 'negative_loss'::text, 'not_computable'::text, 'low_energy'::text])))
);

CREATE TABLE public.line_loss_blocker (
    area_id text NOT NULL,
    period text NOT NULL,
    label text NOT NULL,
    meter_id bigint NOT NULL,
    quantity_id smallint NOT NULL,
    boundary timestamp with time zone NOT NULL,
    role text NOT NULL,
    CONSTRAINT line_loss_blocker_role_check CHECK ((role = ANY (ARRAY['supply'::text, 'customer'::text])))
);

CREATE TABLE public.manual_read_score (
    meter_id bigint NOT NULL,
    cycle date NOT NULL,
    ts timestamp with time zone,
    reader text,
    value double precision,
    estimated_score double precision NOT NULL,
    skipped_score double precision NOT NULL,
    error_score double precision NOT NULL,
    evidence text[] DEFAULT '{}'::text[] NOT NULL,
    computed_at timestamp with time zone DEFAULT now() NOT NULL
);

CREATE TABLE public.meter (
    id bigint NOT NULL,
    number text NOT NULL,
    role text DEFAULT 'customer'::text NOT NULL,
    protocol text NOT NULL,
    model text,
    interval_min integer,
    schedule text,
    bidirectional boolean DEFAULT false NOT NULL,
    ct double precision DEFAULT 1 NOT NULL,
    pt double precision DEFAULT 1 NOT NULL,
    rollover_kwh double precision DEFAULT 1000000 NOT NULL,
    gateway_id text,
    unit_id integer,
    concentrator_id text,
    installed_at timestamp with time zone,
    start_reading double precision,
    removed_at timestamp with time zone,
    end_reading double precision,
    customer_id text,
    account_id text,
    protect boolean DEFAULT false NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT meter_check CHECK (((removed_at IS NULL) OR (installed_at IS NULL) OR (removed_at > installed_at))),
    CONSTRAINT meter_check1 CHECK (((removed_at IS NULL) = (end_reading IS NULL))),
    CONSTRAINT meter_ct_check CHECK ((ct > (0)::double precision)),
    CONSTRAINT meter_interval_min_check CHECK (((interval_min > 0) AND (interval_min <= 1440))),
    CONSTRAINT meter_number_check CHECK ((number ~ '^[0-9]{12}$'::text)),
    CONSTRAINT meter_protocol_check CHECK ((protocol = ANY (ARRAY['dlt645-2007'::text, 'dlt645-1997'::text, 'modbus'::text, 'mqtt'::text, 'manual'::text]))),
    CONSTRAINT meter_pt_check CHECK ((pt > (0)::double precision)),
    CONSTRAINT meter_role_check CHECK ((role = ANY (ARRAY['supply'::text, 'customer'::text]))),
    CONSTRAINT meter_rollover_kwh_check CHECK ((rollover_kwh > (0)::double precision)),
    CONSTRAINT meter_unit_id_check CHECK (((unit_id >= 0) AND (unit_id <= 255)))
);

CREATE TABLE public.meter_area (
    meter_id bigint NOT NULL,
    area_id text NOT NULL,
    valid_from timestamp with time zone,
    valid_to timestamp with time zone,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT meter_area_check CHECK (((valid_to IS NULL) OR (valid_from IS NULL) OR (valid_to > valid_from)))
);

CREATE TABLE public.meter_event (
    meter_id bigint NOT NULL,
    ts timestamp with time zone NOT NULL,
    code text NOT NULL,
    detail jsonb,
    source text NOT NULL,
    received_at timestamp with time zone DEFAULT now() NOT NULL
);

CREATE TABLE public.meter_exchange_reading (
    meter_id bigint NOT NULL,
    event text NOT NULL,
    quantity_id smallint NOT NULL,
    value double precision NOT NULL,
    CONSTRAINT meter_exchange_reading_event_check CHECK ((event = ANY (ARRAY['installed'::text, 'removed'::text]))),
    CONSTRAINT meter_exchange_reading_value_check CHECK ((value >= (0)::double precision))
);

ALTER TABLE public.meter ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.meter_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE public.meter_multiplier (
    meter_id bigint NOT NULL,
    valid_from timestamp with time zone NOT NULL,
    ct double precision NOT NULL,
    pt double precision NOT NULL,
    CONSTRAINT meter_multiplier_ct_check CHECK ((ct > (0)::double precision)),
    CONSTRAINT meter_multiplier_pt_check CHECK ((pt > (0)::double precision))
);

CREATE TABLE public.notice (
    id bigint NOT NULL,
    account_id text NOT NULL,
    kind text NOT NULL,
    channel text NOT NULL,
    served_at timestamp with time zone NOT NULL,
    due_at timestamp with time zone,
    content text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL
);

ALTER TABLE public.notice ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.notice_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE public.payment (
    id bigint NOT NULL,
    account_id text NOT NULL,
    channel text NOT NULL,
    channel_ref text NOT NULL,
    amount numeric(14,2) NOT NULL,
    paid_at timestamp with time zone NOT NULL,
    received_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT payment_amount_check CHECK ((amount > (0)::numeric))
);

ALTER TABLE public.payment ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.payment_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE public.quantity (
    id smallint NOT NULL,
    name text NOT NULL,
    unit text NOT NULL,
    kind text NOT NULL,
    CONSTRAINT quantity_kind_check CHECK ((kind = ANY (ARRAY['register'::text, 'interval'::text, 'instant'::text, 'status'::text])))
);

CREATE TABLE public.quarantine (
    id bigint NOT NULL,
    received_at timestamp with time zone DEFAULT now() NOT NULL,
    source text NOT NULL,
    kind text NOT NULL,
    raw bytea NOT NULL,
    reason text NOT NULL,
    message text NOT NULL,
    context jsonb,
    status text DEFAULT 'new'::text NOT NULL,
    replayed_at timestamp with time zone,
    replay_result text,
    CONSTRAINT quarantine_status_check CHECK ((status = ANY (ARRAY['new'::text, 'replayed'::text, 'discarded'::text])))
);

ALTER TABLE public.quarantine ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.quarantine_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE public.reader_score (
    reader text NOT NULL,
    d_from date NOT NULL,
    d_to date NOT NULL,
    reads integer NOT NULL,
    estimated double precision NOT NULL,
    skipped integer NOT NULL,
    errors integer NOT NULL,
    score double precision NOT NULL,
    computed_at timestamp with time zone DEFAULT now() NOT NULL
);

CREATE TABLE public.reading_revision (
    meter_id bigint NOT NULL,
    quantity_id smallint NOT NULL,
    ts timestamp with time zone NOT NULL,
    origin text NOT NULL,
    version integer DEFAULT 1 NOT NULL,
    value double precision NOT NULL,
    method text,
    reason text,
    created_by text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    note text,
    CONSTRAINT reading_revision_origin_check CHECK ((origin = ANY (ARRAY['estimated'::text, 'substituted'::text, 'edited'::text]))),
    CONSTRAINT reading_revision_version_check CHECK ((version > 0))
);

CREATE TABLE public.register_reading (
    meter_id bigint NOT NULL,
    quantity_id smallint NOT NULL,
    ts timestamp with time zone NOT NULL,
    value double precision NOT NULL,
    source text NOT NULL,
    received_at timestamp with time zone DEFAULT now() NOT NULL,
    read_kind text DEFAULT 'meter'::text NOT NULL,
    reader text,
    meter_ts timestamp with time zone,
    CONSTRAINT register_reading_read_kind_check CHECK ((read_kind = ANY (ARRAY['meter'::text, 'manual'::text])))
);

CREATE VIEW public.reading_best AS
 WITH candidates AS (
         SELECT register_reading.meter_id,
            register_reading.quantity_id,
            register_reading.ts,
            register_reading.value,
            'actual'::text AS origin,
            NULL::text AS method,
            NULL::text AS reason,
            register_reading.source,
            register_reading.received_at AS recorded_at,
            2 AS rank,
            0 AS version
           FROM public.register_reading
        UNION ALL
         SELECT interval_reading.meter_id,
            interval_reading.quantity_id,
            interval_reading.ts,
            interval_reading.value,
            'actual'::text,
            NULL::text,
            NULL::text,
            interval_reading.source,
            interval_reading.received_at,
            2,
            0
           FROM public.interval_reading
        UNION ALL
         SELECT reading_revision.meter_id,
            reading_revision.quantity_id,
            reading_revision.ts,
            reading_revision.value,
            reading_revision.origin,
            reading_revision.method,
            reading_revision.reason,
            reading_revision.created_by,
            reading_revision.created_at,
                CASE reading_revision.origin
                    WHEN 'edited'::text THEN 1
                    WHEN 'substituted'::text THEN 3
                    ELSE 4
                END AS "case",
            reading_revision.version
           FROM public.reading_revision
        )
 SELECT DISTINCT ON (meter_id, quantity_id, ts) meter_id,
    quantity_id,
    ts,
    value,
    origin,
    method,
    reason,
    source,
    recorded_at
   FROM candidates
  ORDER BY meter_id, quantity_id, ts, rank, version DESC;

CREATE TABLE public.reading_conflict (
    id bigint NOT NULL,
    reading_table text NOT NULL,
    meter_id bigint NOT NULL,
    quantity_id smallint NOT NULL,
    ts timestamp with time zone NOT NULL,
    stored_value double precision NOT NULL,
    offered_value double precision NOT NULL,
    source text NOT NULL,
    received_at timestamp with time zone DEFAULT now() NOT NULL,
    status text DEFAULT 'open'::text NOT NULL,
    resolved_by text,
    resolved_at timestamp with time zone,
    CONSTRAINT reading_conflict_reading_table_check CHECK ((reading_table = ANY (ARRAY['register_reading'::text, 'interval_reading'::text]))),
    CONSTRAINT reading_conflict_status_check CHECK ((status = ANY (ARRAY['open'::text, 'accepted'::text, 'rejected'::text])))
);

ALTER TABLE public.reading_conflict ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.reading_conflict_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE public.schema_migration (
    version integer NOT NULL,
    name text NOT NULL,
    checksum text NOT NULL,
    applied_at timestamp with time zone DEFAULT now() NOT NULL
);

CREATE TABLE public.suspect (
    area_id text NOT NULL,
    d_from date NOT NULL,
    d_to date NOT NULL,
    meter_number text NOT NULL,
    meter_id bigint,
    rank integer NOT NULL,
    kind text NOT NULL,
    score double precision NOT NULL,
    alert boolean NOT NULL,
    error_estimate double precision,
    uncertainty double precision,
    since timestamp with time zone,
    evidence jsonb NOT NULL,
    computed_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT suspect_kind_check CHECK ((kind = ANY (ARRAY['meter_error'::text, 'stopped_meter'::text, 'reversed_meter'::text, 'theft'::text, 'wrong_area'::text, 'pv_export_missing'::text, 'supply_ratio'::text])))
);

CREATE TABLE public.tariff (
    id text NOT NULL,
    effective_from timestamp with time zone NOT NULL,
    effective_to timestamp with time zone,
    name text,
    kind text NOT NULL,
    currency text DEFAULT 'CNY'::text NOT NULL,
    definition jsonb NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT tariff_check CHECK (((effective_to IS NULL) OR (effective_to > effective_from))),
    CONSTRAINT tariff_kind_check CHECK ((kind = ANY (ARRAY['flat'::text, 'tiered'::text, 'tou'::text, 'tiered_tou'::text])))
);

CREATE TABLE public.vee_estimate_review (
    meter_id bigint NOT NULL,
    quantity_id smallint NOT NULL,
    ts timestamp with time zone NOT NULL,
    value double precision NOT NULL,
    method text NOT NULL,
    reason text,
    area_id text NOT NULL,
    day date NOT NULL,
    rate double precision NOT NULL,
    baseline_rate double precision NOT NULL,
    status text DEFAULT 'open'::text NOT NULL,
    run_id bigint,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    resolved_by text,
    resolved_at timestamp with time zone,
    CONSTRAINT vee_estimate_review_status_check CHECK ((status = ANY (ARRAY['open'::text, 'approved'::text, 'rejected'::text])))
);

CREATE TABLE public.vee_flag (
    meter_id bigint NOT NULL,
    day date NOT NULL,
    rule text NOT NULL,
    count integer NOT NULL,
    run_id bigint,
    computed_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT vee_flag_count_check CHECK ((count > 0)),
    CONSTRAINT vee_flag_rule_check CHECK ((rule = ANY (ARRAY['gap'::text, 'duplicate'::text, 'clock_tolerance'::text, 'time_reset'::text, 'negative_consumption'::text, 'rollover'::text, 'spike'::text, 'high_vs_history'::text, 'low_vs_history'::text, 'zero_consumption'::text, 'zero_consumption_outage'::text, 'register_vs_intervals'::text, 'total_vs_tariffs'::text, 'multiplier_change'::text, 'read_after_removal'::text])))
);

CREATE TABLE public.vee_meter_result (
    meter_id bigint NOT NULL,
    d_from date NOT NULL,
    d_to date NOT NULL,
    interval_min integer NOT NULL,
    first_ts timestamp with time zone,
    last_ts timestamp with time zone,
    expected integer NOT NULL,
    received integer NOT NULL,
    missing integer NOT NULL,
    gaps integer NOT NULL,
    gap_slots_max integer NOT NULL,
    duplicates integer NOT NULL,
    estimated integer NOT NULL,
    flags jsonb NOT NULL,
    run_id bigint,
    computed_at timestamp with time zone DEFAULT now() NOT NULL
);

CREATE TABLE public.vee_run (
    id bigint NOT NULL,
    d_from date NOT NULL,
    d_to date NOT NULL,
    started_at timestamp with time zone DEFAULT now() NOT NULL,
    meters integer DEFAULT 0 NOT NULL,
    estimates_written integer DEFAULT 0 NOT NULL,
    estimates_unchanged integer DEFAULT 0 NOT NULL,
    estimates_held integer DEFAULT 0 NOT NULL,
    created_by text NOT NULL,
    CONSTRAINT vee_run_check CHECK ((d_to >= d_from))
);

ALTER TABLE public.vee_run ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.vee_run_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

ALTER TABLE ONLY public.account
    ADD CONSTRAINT account_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.area
    ADD CONSTRAINT area_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.audit_log
    ADD CONSTRAINT audit_log_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.command_ack
    ADD CONSTRAINT command_ack_pkey PRIMARY KEY (concentrator_id, command, result, ts);

ALTER TABLE ONLY public.concentrator_event
    ADD CONSTRAINT concentrator_event_pkey PRIMARY KEY (concentrator_id, ts, code);

ALTER TABLE ONLY public.concentrator
    ADD CONSTRAINT concentrator_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.control_command
    ADD CONSTRAINT control_command_idempotency_key_key UNIQUE (idempotency_key);

ALTER TABLE ONLY public.control_command
    ADD CONSTRAINT control_command_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.control_command_transition
    ADD CONSTRAINT control_command_transition_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.customer
    ADD CONSTRAINT customer_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.gateway
    ADD CONSTRAINT gateway_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.ingest_batch
    ADD CONSTRAINT ingest_batch_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.interval_reading
    ADD CONSTRAINT interval_reading_pkey PRIMARY KEY (meter_id, quantity_id, ts);

ALTER TABLE ONLY public.ledger
    ADD CONSTRAINT ledger_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.line_loss_blocker
    ADD CONSTRAINT line_loss_blocker_pkey PRIMARY KEY (area_id, period, label, meter_id, quantity_id, boundary);

ALTER TABLE ONLY public.line_loss
    ADD CONSTRAINT line_loss_pkey PRIMARY KEY (area_id, period, label);

ALTER TABLE ONLY public.manual_read_score
    ADD CONSTRAINT manual_read_score_pkey PRIMARY KEY (meter_id, cycle);

ALTER TABLE ONLY public.meter_area
    ADD CONSTRAINT meter_area_meter_id_tstzrange_excl EXCLUDE USING gist (meter_id WITH =, tstzrange(valid_from, valid_to) WITH &&);

ALTER TABLE ONLY public.meter_event
    ADD CONSTRAINT meter_event_pkey PRIMARY KEY (meter_id, ts, code);

ALTER TABLE ONLY public.meter_exchange_reading
    ADD CONSTRAINT meter_exchange_reading_pkey PRIMARY KEY (meter_id, event, quantity_id);

ALTER TABLE ONLY public.meter_multiplier
    ADD CONSTRAINT meter_multiplier_pkey PRIMARY KEY (meter_id, valid_from);

ALTER TABLE ONLY public.meter
    ADD CONSTRAINT meter_number_key UNIQUE (number);

ALTER TABLE ONLY public.meter
    ADD CONSTRAINT meter_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.notice
    ADD CONSTRAINT notice_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.payment
    ADD CONSTRAINT payment_channel_channel_ref_key UNIQUE (channel, channel_ref);

ALTER TABLE ONLY public.payment
    ADD CONSTRAINT payment_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.quantity
    ADD CONSTRAINT quantity_name_key UNIQUE (name);

ALTER TABLE ONLY public.quantity
    ADD CONSTRAINT quantity_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.quarantine
    ADD CONSTRAINT quarantine_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.reader_score
    ADD CONSTRAINT reader_score_pkey PRIMARY KEY (reader, d_from, d_to);

ALTER TABLE ONLY public.reading_conflict
    ADD CONSTRAINT reading_conflict_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.reading_conflict
    ADD CONSTRAINT reading_conflict_reading_table_meter_id_quantity_id_ts_offe_key UNIQUE (reading_table, meter_id, quantity_id, ts, offered_value);

ALTER TABLE ONLY public.reading_revision
    ADD CONSTRAINT reading_revision_pkey PRIMARY KEY (meter_id, quantity_id, ts, origin, version);

ALTER TABLE ONLY public.register_reading
    ADD CONSTRAINT register_reading_pkey PRIMARY KEY (meter_id, quantity_id, ts);

ALTER TABLE ONLY public.schema_migration
    ADD CONSTRAINT schema_migration_pkey PRIMARY KEY (version);

ALTER TABLE ONLY public.suspect
    ADD CONSTRAINT suspect_pkey PRIMARY KEY (area_id, d_from, d_to, meter_number, kind);

ALTER TABLE ONLY public.tariff
    ADD CONSTRAINT tariff_id_tstzrange_excl EXCLUDE USING gist (id WITH =, tstzrange(effective_from, effective_to) WITH &&);

ALTER TABLE ONLY public.tariff
    ADD CONSTRAINT tariff_pkey PRIMARY KEY (id, effective_from);

ALTER TABLE ONLY public.vee_estimate_review
    ADD CONSTRAINT vee_estimate_review_pkey PRIMARY KEY (meter_id, quantity_id, ts);

ALTER TABLE ONLY public.vee_flag
    ADD CONSTRAINT vee_flag_pkey PRIMARY KEY (meter_id, day, rule);

ALTER TABLE ONLY public.vee_meter_result
    ADD CONSTRAINT vee_meter_result_pkey PRIMARY KEY (meter_id, d_from, d_to);

ALTER TABLE ONLY public.vee_run
    ADD CONSTRAINT vee_run_pkey PRIMARY KEY (id);

CREATE INDEX audit_log_subject_idx ON public.audit_log USING btree (subject_type, subject_id, ts);

CREATE INDEX command_ack_command_idx ON public.command_ack USING btree (command, received_at);

CREATE INDEX control_command_due_idx ON public.control_command USING btree (next_attempt_at) WHERE (state = ANY (ARRAY['pending'::text, 'retry_wait'::text]));

CREATE UNIQUE INDEX control_command_one_inflight ON public.control_command USING btree (meter_id) WHERE (state = ANY (ARRAY['pending'::text, 'sent'::text, 'acked'::text, 'retry_wait'::text]));

CREATE INDEX control_command_transition_idx ON public.control_command_transition USING btree (command_id, id);

CREATE UNIQUE INDEX ingest_batch_ref_idx ON public.ingest_batch USING btree (source, batch_ref) WHERE (batch_ref IS NOT NULL);

CREATE INDEX interval_reading_ts_idx ON public.interval_reading USING btree (ts DESC);

CREATE INDEX ledger_account_idx ON public.ledger USING btree (account_id, id);

CREATE UNIQUE INDEX ledger_charge_once_idx ON public.ledger USING btree (account_id, kind, ref) WHERE ((kind = 'charge'::text) AND (ref IS NOT NULL));

CREATE INDEX line_loss_blocker_meter ON public.line_loss_blocker USING btree (meter_id, boundary);

CREATE INDEX meter_account_idx ON public.meter USING btree (account_id) WHERE (account_id IS NOT NULL);

CREATE INDEX meter_area_area_idx ON public.meter_area USING btree (area_id);

CREATE INDEX meter_concentrator_idx ON public.meter USING btree (concentrator_id) WHERE (concentrator_id IS NOT NULL);

CREATE INDEX meter_event_ts_idx ON public.meter_event USING btree (ts DESC);

CREATE INDEX meter_gateway_idx ON public.meter USING btree (gateway_id) WHERE (gateway_id IS NOT NULL);

CREATE INDEX notice_account_idx ON public.notice USING btree (account_id, served_at);

CREATE INDEX payment_account_idx ON public.payment USING btree (account_id, paid_at);

CREATE INDEX quarantine_dedupe_idx ON public.quarantine USING btree (source, kind, md5(raw));

CREATE INDEX quarantine_status_idx ON public.quarantine USING btree (status, received_at);

CREATE INDEX reading_conflict_meter_idx ON public.reading_conflict USING btree (meter_id, quantity_id, ts);

CREATE INDEX reading_revision_ts_idx ON public.reading_revision USING btree (ts DESC);

CREATE INDEX register_reading_ts_idx ON public.register_reading USING btree (ts DESC);

CREATE INDEX suspect_alert_idx ON public.suspect USING btree (d_to, area_id) WHERE alert;

CREATE INDEX vee_estimate_review_open_idx ON public.vee_estimate_review USING btree (status, day);

CREATE INDEX vee_flag_day_idx ON public.vee_flag USING btree (day, rule);

CREATE TRIGGER audit_log_append_only BEFORE DELETE OR UPDATE ON public.audit_log FOR EACH ROW EXECUTE FUNCTION public.meterhub_append_only();

CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON public.audit_log FOR EACH STATEMENT EXECUTE FUNCTION public.meterhub_append_only();

CREATE TRIGGER ledger_append_only BEFORE DELETE OR UPDATE ON public.ledger FOR EACH ROW EXECUTE FUNCTION public.meterhub_append_only();

CREATE TRIGGER ledger_no_truncate BEFORE TRUNCATE ON public.ledger FOR EACH STATEMENT EXECUTE FUNCTION public.meterhub_append_only();

CREATE TRIGGER ts_insert_blocker BEFORE INSERT ON public.interval_reading FOR EACH ROW EXECUTE FUNCTION _timescaledb_functions.insert_blocker();

CREATE TRIGGER ts_insert_blocker BEFORE INSERT ON public.meter_event FOR EACH ROW EXECUTE FUNCTION _timescaledb_functions.insert_blocker();

CREATE TRIGGER ts_insert_blocker BEFORE INSERT ON public.reading_revision FOR EACH ROW EXECUTE FUNCTION _timescaledb_functions.insert_blocker();

CREATE TRIGGER ts_insert_blocker BEFORE INSERT ON public.register_reading FOR EACH ROW EXECUTE FUNCTION _timescaledb_functions.insert_blocker();

ALTER TABLE ONLY public.account
    ADD CONSTRAINT account_customer_id_fkey FOREIGN KEY (customer_id) REFERENCES public.customer(id);

ALTER TABLE ONLY public.control_command
    ADD CONSTRAINT control_command_account_id_fkey FOREIGN KEY (account_id) REFERENCES public.account(id);

ALTER TABLE ONLY public.control_command
    ADD CONSTRAINT control_command_meter_id_fkey FOREIGN KEY (meter_id) REFERENCES public.meter(id);

ALTER TABLE ONLY public.control_command_transition
    ADD CONSTRAINT control_command_transition_command_id_fkey FOREIGN KEY (command_id) REFERENCES public.control_command(id);

ALTER TABLE ONLY public.ledger
    ADD CONSTRAINT ledger_account_id_fkey FOREIGN KEY (account_id) REFERENCES public.account(id);

ALTER TABLE ONLY public.line_loss
    ADD CONSTRAINT line_loss_area_id_fkey FOREIGN KEY (area_id) REFERENCES public.area(id);

ALTER TABLE ONLY public.line_loss_blocker
    ADD CONSTRAINT line_loss_blocker_area_id_period_label_fkey FOREIGN KEY (area_id, period, label) REFERENCES public.line_loss(area_id, period, label) ON DELETE CASCADE;

ALTER TABLE ONLY public.line_loss_blocker
    ADD CONSTRAINT line_loss_blocker_meter_id_fkey FOREIGN KEY (meter_id) REFERENCES public.meter(id);

ALTER TABLE ONLY public.line_loss_blocker
    ADD CONSTRAINT line_loss_blocker_quantity_id_fkey FOREIGN KEY (quantity_id) REFERENCES public.quantity(id);

ALTER TABLE ONLY public.manual_read_score
    ADD CONSTRAINT manual_read_score_meter_id_fkey FOREIGN KEY (meter_id) REFERENCES public.meter(id);

ALTER TABLE ONLY public.meter
    ADD CONSTRAINT meter_account_id_fkey FOREIGN KEY (account_id) REFERENCES public.account(id);

ALTER TABLE ONLY public.meter_area
    ADD CONSTRAINT meter_area_area_id_fkey FOREIGN KEY (area_id) REFERENCES public.area(id);

ALTER TABLE ONLY public.meter_area
    ADD CONSTRAINT meter_area_meter_id_fkey FOREIGN KEY (meter_id) REFERENCES public.meter(id);

ALTER TABLE ONLY public.meter
    ADD CONSTRAINT meter_concentrator_id_fkey FOREIGN KEY (concentrator_id) REFERENCES public.concentrator(id);

ALTER TABLE ONLY public.meter
    ADD CONSTRAINT meter_customer_id_fkey FOREIGN KEY (customer_id) REFERENCES public.customer(id);

ALTER TABLE ONLY public.meter_exchange_reading
    ADD CONSTRAINT meter_exchange_reading_meter_id_fkey FOREIGN KEY (meter_id) REFERENCES public.meter(id);

ALTER TABLE ONLY public.meter_exchange_reading
    ADD CONSTRAINT meter_exchange_reading_quantity_id_fkey FOREIGN KEY (quantity_id) REFERENCES public.quantity(id);

ALTER TABLE ONLY public.meter
    ADD CONSTRAINT meter_gateway_id_fkey FOREIGN KEY (gateway_id) REFERENCES public.gateway(id);

ALTER TABLE ONLY public.meter_multiplier
    ADD CONSTRAINT meter_multiplier_meter_id_fkey FOREIGN KEY (meter_id) REFERENCES public.meter(id);

ALTER TABLE ONLY public.notice
    ADD CONSTRAINT notice_account_id_fkey FOREIGN KEY (account_id) REFERENCES public.account(id);

ALTER TABLE ONLY public.payment
    ADD CONSTRAINT payment_account_id_fkey FOREIGN KEY (account_id) REFERENCES public.account(id);

ALTER TABLE ONLY public.suspect
    ADD CONSTRAINT suspect_area_id_fkey FOREIGN KEY (area_id) REFERENCES public.area(id);

ALTER TABLE ONLY public.suspect
    ADD CONSTRAINT suspect_meter_id_fkey FOREIGN KEY (meter_id) REFERENCES public.meter(id);

ALTER TABLE ONLY public.vee_estimate_review
    ADD CONSTRAINT vee_estimate_review_area_id_fkey FOREIGN KEY (area_id) REFERENCES public.area(id);

ALTER TABLE ONLY public.vee_estimate_review
    ADD CONSTRAINT vee_estimate_review_meter_id_fkey FOREIGN KEY (meter_id) REFERENCES public.meter(id);

ALTER TABLE ONLY public.vee_estimate_review
    ADD CONSTRAINT vee_estimate_review_run_id_fkey FOREIGN KEY (run_id) REFERENCES public.vee_run(id);

ALTER TABLE ONLY public.vee_flag
    ADD CONSTRAINT vee_flag_meter_id_fkey FOREIGN KEY (meter_id) REFERENCES public.meter(id);

ALTER TABLE ONLY public.vee_flag
    ADD CONSTRAINT vee_flag_run_id_fkey FOREIGN KEY (run_id) REFERENCES public.vee_run(id);

ALTER TABLE ONLY public.vee_meter_result
    ADD CONSTRAINT vee_meter_result_meter_id_fkey FOREIGN KEY (meter_id) REFERENCES public.meter(id);

ALTER TABLE ONLY public.vee_meter_result
    ADD CONSTRAINT vee_meter_result_run_id_fkey FOREIGN KEY (run_id) REFERENCES public.vee_run(id);
