-- A commit group that is only one run's events, every batch fenced by the run's epoch (what
-- queued emits make), in one prepared statement instead of `apply_group`. `{s}` is the quoted
-- schema name. $1 task, $2 epoch, $3 key, $4 names, $5 payloads as JSON texts (a text cast to
-- `json` keeps a `\u0000` inside a string), $6 the notification channel, $7 the committing
-- process's owner id. Answers the key's last seq after the group, or NULL (and writes
-- nothing) when the run's epoch moved on or the run is gone. Notifies like `apply_group`:
-- {"o": owner, "k": key, "f": first seq, "l": last seq}.
WITH fence AS (
    SELECT id FROM {s}.runs WHERE id = $1 AND epoch = $2 FOR UPDATE
), counted AS (
    INSERT INTO {s}.keys AS k (ik, last_seq)
    SELECT $3::text, cardinality($4::text[]) FROM fence
    ON CONFLICT (ik) DO UPDATE SET last_seq = k.last_seq + EXCLUDED.last_seq
    RETURNING last_seq
), written AS (
    INSERT INTO {s}.events (ik, seq, task, name, data)
    SELECT $3::text, counted.last_seq - cardinality($4::text[]) + e.ord, $1, e.name, e.data::json
    FROM counted, unnest($4::text[], $5::text[]) WITH ORDINALITY AS e(name, data, ord)
    RETURNING seq
), notified AS (
    -- Referenced below, so it runs.
    SELECT pg_notify($6::text, json_build_object('o', $7::text, 'k', $3::text,
        'f', min(seq), 'l', max(seq))::text)
    FROM written HAVING count(*) > 0
)
SELECT (SELECT last_seq FROM counted), (SELECT count(*) FROM notified)
