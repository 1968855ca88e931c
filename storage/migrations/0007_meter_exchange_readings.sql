-- meterhub 0007: a meter's energy registers at installation and removal.
-- meter.start_reading / meter.end_reading stay the forward active total (CONTRACTS.md). A meter
-- exchange inside a period needs every register the balance uses — the reverse (exported)
-- energy of a bidirectional meter above all — so the archive's start_readings / end_readings
-- (keyed by quantity) are kept here, one row per meter, instant and register.
CREATE TABLE meter_exchange_reading (
    meter_id     bigint NOT NULL REFERENCES meter (id),
    event        text NOT NULL CHECK (event IN ('installed', 'removed')),
    quantity_id  smallint NOT NULL REFERENCES quantity (id),
    value        double precision NOT NULL CHECK (value >= 0),
    PRIMARY KEY (meter_id, event, quantity_id)
);
