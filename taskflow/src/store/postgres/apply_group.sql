-- `apply_group`, the one statement every commit group is (re)created by every migration
-- (`CREATE OR REPLACE`), so it always matches the newest tables. `{s}` is the quoted schema
-- name, `{c}` the notification channel as a string literal.

-- Applies a group of write batches in one statement, so one round trip commits many
-- batches. User data (inputs, outputs, errors, reasons, event data, step records) travels
-- as JSON texts in `d`, referenced from `g` by index: the json operators on `g` would refuse
-- a `\u0000` inside it, a JSON text cast to `json` keeps it. `g` is a JSON array of {"fence": {"task", "epoch"} | null, "writes": [...]};
-- the answer is an array with one element per batch: {"ok": [outcome, ...]} or
-- {"err": "fenced" | "key_taken" | "leased" | "busy"}. A refused batch writes nothing; the others
-- still commit. `me` is the committing process's owner id; `lease_ms` how long its leases
-- hold (by this database's clock). After the group, the function notifies the schema's
-- channel (delivered at commit): per key that got events {"o": me, "k": ik, "f": first seq,
-- "l": last seq}; per run whose epoch moved on {"o": me, "r": id}. Payloads stay far under
-- PostgreSQL's 8000 bytes: subscribers read the events themselves from the log.
CREATE OR REPLACE FUNCTION {s}.apply_group(g json, d text[], me text, lease_ms bigint) RETURNS json
LANGUAGE plpgsql AS $fn$
DECLARE
    b json;
    w json;
    r json;
    p json;
    outs json[] := '{}';
    res json[];
    ok boolean;
    cur bigint;
    last bigint;
    new_id bigint;
    seen_status text;
    seen_updated bigint;
    run_ik text;
    refusal text;
    holder text;
    held_until timestamptz;
    old_status text;
    lease interval := lease_ms * interval '1 millisecond';
    evs jsonb := '{}';
    bumped bigint[] := '{}';
    k text;
    v jsonb;
    bumped_id bigint;
    running bigint;
    run_owner text;
BEGIN
    FOR b IN SELECT * FROM json_array_elements(g) LOOP
        refusal := NULL;
        IF json_typeof(b->'fence') = 'object' THEN
            SELECT epoch INTO cur FROM {s}.runs WHERE id = (b->'fence'->>'task')::bigint FOR UPDATE;
            IF NOT FOUND OR cur <> (b->'fence'->>'epoch')::bigint THEN
                refusal := 'fenced';
            END IF;
        END IF;
        IF refusal IS NULL THEN
            FOR w IN SELECT * FROM json_array_elements(b->'writes') LOOP
                -- A step of the fenced run: the fence already found and locked the row.
                IF w->>'op' = 'step' AND json_typeof(b->'fence') = 'object'
                        AND w->>'task' = b->'fence'->>'task' THEN
                    CONTINUE;
                END IF;
                IF w->>'op' IN ('update', 'step', 'signal') THEN
                    SELECT lease_owner, lease_expires_at INTO holder, held_until
                        FROM {s}.runs WHERE id = (w->>'task')::bigint FOR UPDATE;
                    IF NOT FOUND THEN
                        refusal := 'fenced';
                        EXIT;
                    END IF;
                    IF (w->'patch'->>'claim')::boolean AND holder IS NOT NULL AND holder <> me
                            AND held_until > now() THEN
                        refusal := 'leased';
                        EXIT;
                    END IF;
                    IF (w->'patch'->>'claim')::boolean THEN
                        -- The limits hold across processes: claims take turns on this lock
                        -- (until commit), and count the runs executing under a live lease. The
                        -- lock class is the migration lock's + 1.
                        PERFORM pg_advisory_xact_lock(1952543596, hashtext({c}));
                        -- A parked run (no lease owner) holds no slot.
                        SELECT count(*) INTO running FROM {s}.runs
                            WHERE status = 'running' AND lease_owner IS NOT NULL
                            AND lease_expires_at > now() AND id <> (w->>'task')::bigint;
                        IF running >= (w->'patch'->>'max_running')::bigint THEN
                            refusal := 'busy';
                            EXIT;
                        END IF;
                        SELECT owner INTO run_owner FROM {s}.runs WHERE id = (w->>'task')::bigint;
                        IF run_owner IS NOT NULL THEN
                            SELECT count(*) INTO running FROM {s}.runs
                                WHERE status = 'running' AND lease_owner IS NOT NULL
                                AND lease_expires_at > now() AND owner = run_owner
                                AND id <> (w->>'task')::bigint;
                            IF running >= (w->'patch'->>'max_running_per_user')::bigint THEN
                                refusal := 'busy';
                                EXIT;
                            END IF;
                        END IF;
                    END IF;
                ELSIF w->>'op' = 'create' THEN
                    INSERT INTO {s}.keys (ik) VALUES (w->'record'->>'ik') ON CONFLICT (ik) DO NOTHING;
                    SELECT current_run INTO cur FROM {s}.keys WHERE ik = w->'record'->>'ik' FOR UPDATE;
                    IF cur IS DISTINCT FROM (w->>'replaces')::bigint THEN
                        refusal := 'key_taken';
                        EXIT;
                    END IF;
                END IF;
            END LOOP;
        END IF;
        IF refusal IS NOT NULL THEN
            outs := outs || json_build_object('err', refusal);
            CONTINUE;
        END IF;
        res := '{}';
        FOR w IN SELECT * FROM json_array_elements(b->'writes') LOOP
            CASE w->>'op'
            WHEN 'create' THEN
                r := w->'record';
                SELECT last_seq INTO last FROM {s}.keys WHERE ik = r->>'ik' FOR UPDATE;
                INSERT INTO {s}.runs (ik, name, owner, status, input, output, error, attempt,
                        failed_attempts, max_attempts, execute_mode, on_behalf_of, created_at,
                        updated_at, heartbeat_at, next_attempt_at, suspended_reason, first_seq,
                        epoch, disconnect_grace_ms, lease_owner, lease_expires_at, queued_since,
                        version, parent)
                    VALUES (r->>'ik', r->>'name', r->>'owner', r->>'status', d[(r->>'input')::integer]::json,
                        d[(r->>'output')::integer]::json, d[(r->>'error')::integer]::json, (r->>'attempt')::integer,
                        (r->>'failed_attempts')::integer, (r->>'max_attempts')::integer,
                        r->>'execute_mode', (r->>'on_behalf_of')::boolean,
                        (r->>'created_at')::bigint, (r->>'updated_at')::bigint,
                        (r->>'heartbeat_at')::bigint, (r->>'next_attempt_at')::bigint,
                        d[(r->>'suspended_reason')::integer]::json, last + 1, 1, (r->>'disconnect_grace_ms')::bigint,
                        me, now() + lease, now(), COALESCE((r->>'version')::integer, 1),
                        (r->>'parent')::bigint)
                    RETURNING id INTO new_id;
                UPDATE {s}.keys SET current_run = new_id WHERE ik = r->>'ik';
                res := res || json_build_object('run', json_build_object(
                    'id', new_id, 'epoch', 1, 'first_seq', last + 1));
            WHEN 'update' THEN
                p := w->'patch';
                SELECT status INTO old_status FROM {s}.runs WHERE id = (w->>'task')::bigint;
                UPDATE {s}.runs SET
                    status = coalesce(p->>'status', status),
                    attempt = coalesce((p->>'attempt')::integer, attempt),
                    failed_attempts = coalesce((p->>'failed_attempts')::integer, failed_attempts),
                    output = CASE WHEN p->'output' IS NULL THEN output ELSE d[(p->>'output')::integer]::json END,
                    error = CASE WHEN p->'error' IS NULL THEN error ELSE d[(p->>'error')::integer]::json END,
                    next_attempt_at = CASE WHEN p->'next_attempt_at' IS NULL THEN next_attempt_at
                        ELSE (p->>'next_attempt_at')::bigint END,
                    suspended_reason = CASE WHEN p->'suspended_reason' IS NULL THEN suspended_reason
                        ELSE d[(p->>'suspended_reason')::integer]::json END,
                    waiting = CASE WHEN p->'waiting' IS NULL THEN waiting
                        ELSE d[(p->>'waiting')::integer]::json END,
                    epoch = epoch + CASE WHEN (p->>'bump_epoch')::boolean THEN 1 ELSE 0 END,
                    heartbeat_at = CASE WHEN (p->>'heartbeat')::boolean THEN (p->>'now')::bigint
                        ELSE heartbeat_at END,
                    updated_at = (p->>'now')::bigint,
                    -- A claim takes the lease; a run that stops being in flight drops it; a
                    -- run that becomes in flight again (a resume) is this process's; a run
                    -- that parks in a wait is nobody's until the wait is due.
                    lease_owner = CASE
                        WHEN p->'park_ms' IS NOT NULL THEN NULL
                        WHEN (p->>'claim')::boolean THEN me
                        WHEN coalesce(p->>'status', status) NOT IN ('created', 'running') THEN NULL
                        WHEN old_status NOT IN ('created', 'running') THEN me
                        ELSE lease_owner END,
                    queued_since = CASE
                        WHEN coalesce(p->>'status', status) = 'created' AND old_status <> 'created'
                            THEN now()
                        ELSE queued_since END,
                    lease_expires_at = CASE
                        WHEN p->>'park_ms' = 'infinity' THEN 'infinity'::timestamptz
                        WHEN p->'park_ms' IS NOT NULL
                            THEN now() + (p->>'park_ms')::bigint * interval '1 millisecond'
                        WHEN (p->>'claim')::boolean THEN now() + lease
                        WHEN coalesce(p->>'status', status) NOT IN ('created', 'running') THEN NULL
                        WHEN old_status NOT IN ('created', 'running') THEN now() + lease
                        WHEN (p->>'heartbeat')::boolean AND lease_owner = me THEN now() + lease
                        ELSE lease_expires_at END
                WHERE id = (w->>'task')::bigint
                RETURNING epoch INTO cur;
                IF (p->>'bump_epoch')::boolean THEN
                    bumped := bumped || (w->>'task')::bigint;
                END IF;
                res := res || json_build_object('epoch', cur);
            WHEN 'event' THEN
                UPDATE {s}.keys SET last_seq = last_seq + 1 WHERE ik = w->>'ik'
                    RETURNING last_seq INTO last;
                IF NOT FOUND THEN
                    INSERT INTO {s}.keys (ik, last_seq) VALUES (w->>'ik', 1);
                    last := 1;
                END IF;
                INSERT INTO {s}.events (ik, seq, task, name, data)
                    VALUES (w->>'ik', last, (w->>'task')::bigint, w->>'name', d[(w->>'data')::integer]::json);
                IF evs ? (w->>'ik') THEN
                    evs := jsonb_set(evs, ARRAY[w->>'ik', '1'], to_jsonb(last));
                ELSE
                    evs := evs || jsonb_build_object(w->>'ik', jsonb_build_array(last, last));
                END IF;
                res := res || json_build_object('event', last);
            WHEN 'step' THEN
                INSERT INTO {s}.steps (task, key, record)
                    VALUES ((w->>'task')::bigint, w->>'key', d[(w->>'record')::integer]::json)
                    ON CONFLICT (task, key) DO UPDATE SET record = EXCLUDED.record;
                res := res || to_json('done'::text);
            WHEN 'signal' THEN
                -- The run's row is locked (above): signals of one run are numbered in turn,
                -- and a sender's key is looked up and written by one writer at a time.
                IF w->>'once' IS NOT NULL AND EXISTS (SELECT 1 FROM {s}.steps
                        WHERE task = (w->>'task')::bigint
                          AND key = '$signalonce:' || (w->>'once') || '#0') THEN
                    res := res || to_json('kept'::text);
                ELSE
                    SELECT count(*) INTO cur FROM {s}.steps WHERE task = (w->>'task')::bigint
                        AND starts_with(key, '$signal:' || (w->>'name') || '#');
                    INSERT INTO {s}.steps (task, key, record)
                        VALUES ((w->>'task')::bigint, '$signal:' || (w->>'name') || '#' || cur,
                            json_build_object('k', '$signal:' || (w->>'name') || '#' || cur,
                                'v', d[(w->>'payload')::integer]::json, 's', 'signal'));
                    IF w->>'once' IS NOT NULL THEN
                        INSERT INTO {s}.steps (task, key, record)
                            VALUES ((w->>'task')::bigint, '$signalonce:' || (w->>'once') || '#0',
                                json_build_object('k', '$signalonce:' || (w->>'once') || '#0',
                                    'v', '$signal:' || (w->>'name') || '#' || cur, 's', 'signal'));
                    END IF;
                    res := res || to_json('done'::text);
                END IF;
            WHEN 'delete' THEN
                SELECT ik, status, updated_at INTO run_ik, seen_status, seen_updated
                    FROM {s}.runs WHERE id = (w->>'task')::bigint FOR UPDATE;
                IF NOT FOUND OR (json_typeof(w->'if_unchanged') = 'array'
                        AND (seen_status <> w->'if_unchanged'->>0
                             OR seen_updated <> (w->'if_unchanged'->>1)::bigint)) THEN
                    res := res || to_json('kept'::text);
                ELSE
                    DELETE FROM {s}.steps WHERE task = (w->>'task')::bigint;
                    DELETE FROM {s}.events WHERE ik = run_ik AND task = (w->>'task')::bigint;
                    DELETE FROM {s}.runs WHERE id = (w->>'task')::bigint;
                    UPDATE {s}.keys SET current_run = NULL
                        WHERE ik = run_ik AND current_run = (w->>'task')::bigint;
                    res := res || to_json('done'::text);
                END IF;
            ELSE
                RAISE EXCEPTION 'taskflow: unknown write %', w->>'op';
            END CASE;
        END LOOP;
        outs := outs || json_build_object('ok', array_to_json(res));
    END LOOP;
    FOR k, v IN SELECT * FROM jsonb_each(evs) LOOP
        PERFORM pg_notify({c}, json_build_object('o', me, 'k', k, 'f', v->0, 'l', v->1)::text);
    END LOOP;
    FOREACH bumped_id IN ARRAY bumped LOOP
        PERFORM pg_notify({c}, json_build_object('o', me, 'r', bumped_id)::text);
    END LOOP;
    RETURN array_to_json(outs);
END
$fn$;
