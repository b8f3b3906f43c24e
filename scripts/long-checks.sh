#!/bin/bash
# The long versions of the reliability checks (issue 11), each printing its count:
#   - fuzzing: 100,000 cases per property (request bodies, identity headers, Last-Event-ID,
#     stored records; the SSE client's capped at 20,000), then each cargo-fuzz target with
#     libFuzzer for FUZZ_SECONDS (default 300) each (cargo-fuzz is installed if missing; the
#     socket targets run ~70 and ~1,600 inputs/s, the others faster);
#   - streams cut anywhere: 10,000 SSE sessions through a cutting proxy, a restart mid-way;
#   - power loss: 400 random cuts of each kind per crash point (CI: 75), 4 of each kind
#     recovered by a flow (CI: two per point, their kinds rotating);
#   - the EIO matrix runs every operation index in CI already (no longer version).
#   - durable sleep: 10,000 sleeping runs on PostgreSQL too (CI: 1,000 there, 10,000 on redb).
# Usage: scripts/long-checks.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PROPTEST_CASES="${PROPTEST_CASES:-100000}" cargo test -p taskflow-tests --all-features --release --test bridge -- fuzz:: --nocapture
TASKFLOW_CUT_SESSIONS="${TASKFLOW_CUT_SESSIONS:-10000}" cargo test -p taskflow-tests --all-features --release --test bridge -- cut:: --nocapture
TASKFLOW_POWER_CUTS_PER_KIND="${TASKFLOW_POWER_CUTS_PER_KIND:-400}" TASKFLOW_POWER_RECOVERIES_PER_KIND="${TASKFLOW_POWER_RECOVERIES_PER_KIND:-4}" cargo test -p taskflow-tests --all-features --release --test engine -- power_loss:: --nocapture
TASKFLOW_SLEEPING_RUNS="${TASKFLOW_SLEEPING_RUNS:-10000}" TASKFLOW_TEST_STORE=postgres cargo test -p taskflow-tests --all-features --release --test engine -- waits::ten --nocapture
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
for target in last_event_id stored_record sse_client request_body; do
  log="$(mktemp)"
  if ! (cd fuzz && cargo fuzz run --sanitizer=none "$target" -- -max_total_time="${FUZZ_SECONDS:-300}" -max_len=4096) > "$log" 2>&1; then
    tail -40 "$log"; echo "fuzz target $target failed (its input is under fuzz/artifacts/$target)"; exit 1
  fi
  echo "fuzz target $target: $(grep -E '^Done [0-9]+ runs' "$log" | tail -1)"
done
