-- Version 3: what a parked run waits for (`ctx.sleep`, ...), as the JSON taskflow wrote; NULL
-- (or JSON null) while it waits for nothing. A parked run holds no lease owner: its lease
-- expires when the wait is due, and whichever process is free then claims it.
ALTER TABLE {s}.runs ADD COLUMN waiting json;
