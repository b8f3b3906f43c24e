-- Version 4: the run that started a run with `ctx.start_child` (NULL for a run started from
-- outside). A child that ends wakes its parent; the parent finds its children through its own
-- recorded `$child#n` steps, so no index is needed.
ALTER TABLE {s}.runs ADD COLUMN parent bigint;
