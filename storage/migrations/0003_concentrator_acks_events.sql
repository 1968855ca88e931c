-- meterhub 0003: what concentrators report besides readings.
-- command_ack: the outcome of each downlink command (up/acks); a repeated command is acked again
-- with the same content, so the key (concentrator, command, result, ts) stores it once.
-- concentrator_event: events of a concentrator itself (no meter), idempotent on its key like
-- meter_event.
CREATE TABLE command_ack (
    concentrator_id  text NOT NULL,
    command          text NOT NULL,               -- the command id (idempotency key) answered
    result           text NOT NULL CHECK (result IN ('accepted', 'done', 'refused', 'no_answer',
                                                      'expired', 'rejected')),
    ts               timestamptz NOT NULL,         -- when the concentrator produced the ack
    meter_number     text,                         -- as reported; meter_id when in the archive
    meter_id         bigint,
    relay            text CHECK (relay IN ('open', 'closed')),
    status_word_3    integer,
    error_bits       text[] NOT NULL DEFAULT '{}',
    detail           text,
    source           text NOT NULL,
    received_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (concentrator_id, command, result, ts)
);
CREATE INDEX command_ack_command_idx ON command_ack (command, received_at);

CREATE TABLE concentrator_event (
    concentrator_id  text NOT NULL,
    ts               timestamptz NOT NULL,
    code             text NOT NULL,
    detail           jsonb,
    source           text NOT NULL,
    received_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (concentrator_id, ts, code)
);
