-- Version 2: the task's code version that created each run (`#[task(version = N)]`); runs
-- from before it are version 1. A process claims only runs of the versions it has.
ALTER TABLE {s}.runs ADD COLUMN version integer NOT NULL DEFAULT 1;
