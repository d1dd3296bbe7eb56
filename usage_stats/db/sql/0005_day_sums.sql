-- A derived cache, kept by day-end maintenance, so that a month table need not sum every day row
-- of its months (see usage_stats/db/day_sums.py). A month listed in day_sums_months is covered: for
-- each category and event, day_sums holds the exact (numeric, never saturated) sum of the month's
-- day rows (counts level 2) and how many day rows there are (a row goes when none are left). Only
-- maintenance writes day rows where the base period is shorter than a day, and it updates both in
-- the same transaction. A month not listed is summed from its day rows, as before; so is every
-- month while state.day_sums_through (below) differs from state.maintained_through. Never a source
-- of truth: `usage-stats settings` empties both when the time zone or the base period changes.
CREATE TABLE {schema}.day_sums_months (
    month timestamptz PRIMARY KEY
);
CREATE TABLE {schema}.day_sums (
    month timestamptz NOT NULL,
    category text NOT NULL,
    event text NOT NULL,
    value numeric NOT NULL,
    days bigint NOT NULL,
    PRIMARY KEY (month, category, event)
);
-- The last day whose maintenance kept the sums. A process of an older version maintains days
-- without them: then this lags behind maintained_through, reads sum the day rows, and the next
-- maintenance of this version builds the sums again from the day rows.
ALTER TABLE {schema}.state ADD COLUMN day_sums_through date;
