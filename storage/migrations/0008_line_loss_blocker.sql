-- meterhub 0008: what blocks what. For each line-loss result that is not computable, the
-- boundary readings that were missing (meter, register, instant), so operators see why and the
-- re-read queue can put the readings that unblock a result first.
CREATE TABLE line_loss_blocker (
    area_id      text NOT NULL,
    period       text NOT NULL,
    label        text NOT NULL,
    meter_id     bigint NOT NULL REFERENCES meter (id),
    quantity_id  smallint NOT NULL REFERENCES quantity (id),
    boundary     timestamptz NOT NULL,   -- the instant the missing register value belongs to
    role         text NOT NULL CHECK (role IN ('supply', 'customer')),
    PRIMARY KEY (area_id, period, label, meter_id, quantity_id, boundary),
    FOREIGN KEY (area_id, period, label) REFERENCES line_loss (area_id, period, label)
        ON DELETE CASCADE
);
CREATE INDEX line_loss_blocker_meter ON line_loss_blocker (meter_id, boundary);
