-- The settings that shape stored rows, one row, recorded by the first process or `usage-stats migrate`
-- that finds it empty (see usage_stats/db/settings.py). Every later process must agree with it;
-- `usage-stats settings` changes it, and only while no stored row depends on the old value.
CREATE TABLE {schema}.settings (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    timezone text NOT NULL,
    base_period interval NOT NULL,
    user_ids text NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
