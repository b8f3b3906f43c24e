#!/bin/bash
# kill -9 at scale: the crash test's main part with N SIGKILLs (default 1000) of a child
# process running one durable task, then the burst part. Prints one line per life.
# Usage: scripts/kill9-cycles.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
TASKFLOW_CRASH_KILLS="${1:-1000}" cargo test -p taskflow-tests --all-features --release --test crash
