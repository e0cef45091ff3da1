#!/usr/bin/env bash
# The reproduction report (docs/reproduction/README.md): every F and E claim the offline data allow
# (cases/test_fan.py, cases/test_crosscheck.py), at the reproduction scale of the smoke settings
# (VOLBENCH_REPRODUCE=1: twice the smoke's seeds, 10 to 20, and 128 directions; cases/_support.py), on two
# workers. Resumable: after a kill, run it again; the store (VOLBENCH_STORE, default
# ~/.cache/volbench/minima) serves every minimum and measurement already done.
#
#   tools/reproduce.sh                 # run, then publish into docs/reproduction/
#   tools/reproduce.sh --no-publish    # run only (the report stays under reports/reproduction/)
#   volbench compare reports/reproduction/latest docs/reproduction   # your run against the checked-in one
set -euo pipefail
cd "$(dirname "$0")/.."
publish=1
[ "${1:-}" = "--no-publish" ] && publish=0
root=reports/reproduction
start=$(date +%s)
set +e
VOLBENCH_REPRODUCE=1 VOLBENCH_REPORT_DIR=$root python -m pytest cases/test_fan.py cases/test_crosscheck.py -n 2
rc=$?
set -e
wall=$(( $(date +%s) - start ))
echo "[reproduce] ${wall} s wall (this invocation; a resumed run's earlier invocations are not counted)"
if [ "$rc" -ne 0 ]; then
  echo "[reproduce] pytest exited $rc: a case broke (verdicts never fail the run here); not publishing" >&2
  exit "$rc"
fi
if [ "$publish" = 1 ]; then
  python tools/publish_reproduction.py "$root/latest" docs/reproduction --wall-seconds "$wall"
fi
