-- Version 3: what a parked run waits for (`ctx.sleep`, ...), as the JSON taskflow wrote; NULL
-- (or JSON null) while it waits for nothing. A parked run holds no lease owner: its lease
-- expires when the wait is due, and whichever process is free then claims it.
ALTER TABLE {s}.runs ADD COLUMN waiting json;
-- What the cross-process concurrency count reads: runs executing under a live lease. Parked
-- runs (no lease owner) stay out of it, however many sleep.
CREATE INDEX runs_leased ON {s}.runs (lease_expires_at)
    WHERE status = 'running' AND lease_owner IS NOT NULL;
