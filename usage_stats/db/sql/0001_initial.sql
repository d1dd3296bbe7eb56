-- Counts of events. level: 1 base period, 2 day, 3 month, 4 month total of a category (event '<all>').
-- The primary key makes flushes additive upserts and serves the range scans of roll-ups and tables.
CREATE TABLE {schema}.counts (
    level smallint NOT NULL,
    start timestamptz NOT NULL,
    category text NOT NULL,
    event text NOT NULL,
    value bigint NOT NULL,
    PRIMARY KEY (level, start, category, event)
) WITH (fillfactor = 90);

-- Distinct users and visitors. level 2: distinct keys of one day; level 3: sum of a month's daily
-- distinct counts (divided by the month's live days when shown).
CREATE TABLE {schema}.distinct_counts (
    level smallint NOT NULL,
    start timestamptz NOT NULL,
    category text NOT NULL,
    value bigint NOT NULL,
    PRIMARY KEY (level, start, category)
);

-- The keys seen on days not yet processed by day-end maintenance: hashes, stand-ins, or (only in
-- the `database` scheme) real IDs. Deleted when their day is processed.
CREATE TABLE {schema}.seen_keys (
    day date NOT NULL,
    category text NOT NULL,
    key bytea NOT NULL,
    PRIMARY KEY (day, category, key)
);

-- The `hashed` scheme's random salt of each day, shared by every process; deleted with the day's keys.
CREATE TABLE {schema}.salts (
    day date PRIMARY KEY,
    salt bytea NOT NULL
);

CREATE TABLE {schema}.marks (
    id bigserial PRIMARY KEY,
    name text NOT NULL,
    category text NOT NULL,
    at timestamptz NOT NULL
);
CREATE UNIQUE INDEX marks_go_live ON {schema}.marks (name) WHERE name = 'go-live';
CREATE INDEX marks_at ON {schema}.marks (at);

-- One row: every day up to maintained_through has been processed by day-end maintenance.
CREATE TABLE {schema}.state (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    maintained_through date
);
INSERT INTO {schema}.state DEFAULT VALUES;
