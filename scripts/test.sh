#!/usr/bin/env bash
# Everything CI checks, in the order a developer wants to hear about it:
# setup (idempotent), ruff lint, ruff format check, mypy (strict, on aif/), pytest.
#
# The four checks all run even when an earlier one fails, so one run reports every
# problem; the script exits non-zero if any of them failed. Extra arguments go to
# pytest, e.g. `scripts/test.sh tests/unit -k storage`.
#
# Usage: scripts/test.sh [pytest args...]        (AIF_VENV=/path to use another venv)
set -euo pipefail

cd "$(dirname "$0")/.."
VENV="${AIF_VENV:-.venv}"

say() { printf '\033[1m[test]\033[0m %s\n' "$*"; }

bash scripts/setup.sh

failed=()
run() {
    local name="$1"
    shift
    say "$name"
    if ! "$@"; then
        failed+=("$name")
    fi
}

run "ruff check" "$VENV/bin/ruff" check .
run "ruff format --check" "$VENV/bin/ruff" format --check .
run "mypy" "$VENV/bin/mypy"
run "pytest" "$VENV/bin/pytest" -q -p no:cacheprovider --durations=15 "$@"

if [ "${#failed[@]}" -gt 0 ]; then
    say "FAILED: ${failed[*]}"
    exit 1
fi
say "all checks passed"
