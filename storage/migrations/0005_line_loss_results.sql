-- meterhub 0005: stored analytics results, read by the API and the dashboard.
CREATE TABLE line_loss (
    area_id          text NOT NULL REFERENCES area (id),
    period           text NOT NULL CHECK (period IN ('day', 'month')),
    label            text NOT NULL,           -- local date YYYY-MM-DD or month YYYY-MM
    supply_kwh       double precision,
    sales_kwh        double precision,
    loss_kwh         double precision,
    rate             double precision,        -- percent, unrounded; NULL when not computable
    state            text NOT NULL CHECK (state IN ('qualified', 'high_loss', 'negative_loss',
                                                    'not_computable', 'low_energy')),
    coverage         double precision NOT NULL,
    estimated_share  double precision,
    computed_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (area_id, period, label)
);
