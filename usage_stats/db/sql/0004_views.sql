-- The start of every day and month in the configured zone, computed in Python and written by
-- usage_stats/db/calendar_table.py (at start-up and by day-end maintenance) from a month before the
-- oldest stored row to three months after today. PostgreSQL never interprets the zone: it reads some
-- zone names as fixed offsets and picks the later of two midnights where one repeats (see
-- usage_stats/db/periodkeys.py). [start, stop) is the period; local_date and local_start are its first
-- day and first local wall-clock time.
CREATE TABLE {schema}.calendar (
    period text NOT NULL CHECK (period IN ('day', 'month')),
    start timestamptz NOT NULL,
    stop timestamptz NOT NULL,
    local_date date NOT NULL,
    local_start timestamp NOT NULL,
    zone text NOT NULL,
    PRIMARY KEY (period, start),
    UNIQUE (period, local_date)
);

-- The day table of `UsageStats.table("day")`, one row per figure: counts (rows not rolled up yet summed
-- per day, saturating at the bounds of bigint as table() does), and the distinct counts of closed days
-- and, from the stored keys, of the days maintenance has not closed yet (today included). A row that
-- falls outside the calendar (which start-up and maintenance keep filled) shows start NULL rather
-- than in a wrong day.
CREATE VIEW {schema}.day_table AS
WITH cal AS (
    SELECT array_agg(start ORDER BY start) AS starts, array_agg(stop ORDER BY start) AS stops
    FROM {schema}.calendar WHERE period = 'day'
),
rows AS (
    SELECT k.level, CASE WHEN k.start < cal.stops[b.i] THEN cal.starts[b.i] END AS p, k.category, k.event, k.value
    FROM {schema}.counts AS k CROSS JOIN cal CROSS JOIN LATERAL (SELECT width_bucket(k.start, cal.starts) AS i) AS b
    WHERE k.level IN (1, 2)
),
figures AS (
    SELECT p, category, event, 'count'::text AS kind, sum(value) AS value
    FROM (
        SELECT p, category, event, value::numeric AS value FROM rows WHERE level = 2
        UNION ALL
        SELECT p, category, event,
               least(greatest(sum(value), -9223372036854775808), 9223372036854775807)
        FROM rows WHERE level = 1 GROUP BY p, category, event
    ) AS u
    GROUP BY p, category, event
    UNION ALL
    SELECT d.start, 'seen', d.category, 'distinct', d.value::numeric
    FROM {schema}.distinct_counts AS d WHERE d.level = 2
    UNION ALL
    SELECT c.start, 'seen', k.category, 'distinct', k.n::numeric
    FROM (
        SELECT day, category, count(*) AS n FROM {schema}.seen_keys
        WHERE day > coalesce((SELECT maintained_through FROM {schema}.state), '-infinity'::date)
        GROUP BY day, category
    ) AS k
    LEFT JOIN {schema}.calendar AS c ON c.period = 'day' AND c.local_date = k.day
)
SELECT f.p AS start, c.local_start, c.local_date, f.category, f.event, f.kind, f.value
FROM figures AS f LEFT JOIN {schema}.calendar AS c ON c.period = 'day' AND c.start = f.p;

-- The month table of `UsageStats.table("month")`: counts of months (rows not rolled up yet summed per
-- month), category totals of months whose events were merged (event '<all>', kind 'total'), and the
-- average daily distinct count of each month: closed days' counts plus the stored keys of days before
-- today, divided by the month's live days (from the go-live day to yesterday or the month's end).
-- "Today" is the day holding now(), or the setting usage_stats.now where a session sets one.
CREATE VIEW {schema}.month_table AS
WITH cal AS (
    SELECT array_agg(start ORDER BY start) FILTER (WHERE period = 'month') AS starts,
           array_agg(stop ORDER BY start) FILTER (WHERE period = 'month') AS stops,
           array_agg(start ORDER BY start) FILTER (WHERE period = 'day') AS day_starts,
           array_agg(stop ORDER BY start) FILTER (WHERE period = 'day') AS day_stops,
           array_agg(local_date ORDER BY start) FILTER (WHERE period = 'day') AS day_dates
    FROM {schema}.calendar
),
moment AS (
    SELECT coalesce(nullif(current_setting('usage_stats.now', true), '')::timestamptz, now()) AS now,
           (SELECT at FROM {schema}.marks WHERE name = 'go-live') AS go_live
),
days AS (  -- the local dates of today and of the go-live day
    SELECT CASE WHEN m.now < cal.day_stops[t.i] THEN cal.day_dates[t.i] END AS today,
           CASE WHEN m.go_live < cal.day_stops[g.i] THEN cal.day_dates[g.i] END AS go_live
    FROM cal CROSS JOIN moment AS m
    CROSS JOIN LATERAL (SELECT width_bucket(m.now, cal.day_starts) AS i) AS t
    CROSS JOIN LATERAL (SELECT width_bucket(m.go_live, cal.day_starts) AS i) AS g
),
rows AS (
    SELECT k.level, CASE WHEN k.start < cal.stops[b.i] THEN cal.starts[b.i] END AS p, k.category, k.event, k.value
    FROM {schema}.counts AS k CROSS JOIN cal CROSS JOIN LATERAL (SELECT width_bucket(k.start, cal.starts) AS i) AS b
),
seen AS (  -- distinct counts summed per month: stored ones of every level, and keys of days before today
    SELECT CASE WHEN d.start < cal.stops[b.i] THEN cal.starts[b.i] END AS p, d.category, d.value::numeric AS value
    FROM {schema}.distinct_counts AS d CROSS JOIN cal
    CROSS JOIN LATERAL (SELECT width_bucket(d.start, cal.starts) AS i) AS b
    UNION ALL
    SELECT c.start, k.category, k.n
    FROM (
        SELECT day - (extract(day FROM day)::integer - 1) AS month, category, count(*)::numeric AS n
        FROM {schema}.seen_keys
        WHERE day > coalesce((SELECT maintained_through FROM {schema}.state), '-infinity'::date)
          AND day < (SELECT today FROM days)
        GROUP BY day, category
    ) AS k
    LEFT JOIN {schema}.calendar AS c ON c.period = 'month' AND c.local_date = k.month
),
averages AS (
    SELECT s.p, s.category, s.total, greatest(0,
               least((c.local_date + interval '1 month')::date, days.today) - greatest(c.local_date, days.go_live)
           ) AS live
    FROM (SELECT p, category, sum(value) AS total FROM seen GROUP BY p, category) AS s
    CROSS JOIN days
    LEFT JOIN {schema}.calendar AS c ON c.period = 'month' AND c.start = s.p
    WHERE days.go_live IS NOT NULL
),
figures AS (
    SELECT p, category, event, kind, sum(value) AS value
    FROM (
        SELECT p, category, CASE WHEN level = 4 THEN '<all>' ELSE event END AS event,
               CASE WHEN level = 4 THEN 'total' ELSE 'count' END AS kind, value::numeric AS value
        FROM rows WHERE level IN (3, 4)
        UNION ALL
        SELECT p, category, event, 'count',
               least(greatest(sum(value), -9223372036854775808), 9223372036854775807)
        FROM rows WHERE level IN (1, 2) GROUP BY p, category, event
    ) AS u
    GROUP BY p, category, event, kind
    UNION ALL
    -- scale 20 before dividing, so the quotient is exact to every digit a float shows
    SELECT p, 'seen', category, 'average', round(total, 20) / live FROM averages WHERE live > 0
)
SELECT f.p AS start, c.local_start, c.local_date, f.category, f.event, f.kind, f.value
FROM figures AS f LEFT JOIN {schema}.calendar AS c ON c.period = 'month' AND c.start = f.p;
