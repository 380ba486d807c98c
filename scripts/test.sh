#!/usr/bin/env bash
# Runs the whole test suite (unit, numeric-reference, end-to-end).
set -euo pipefail
cd "$(dirname "$0")/.."
export EARSHOT_TEST_PYTHON="${EARSHOT_TEST_PYTHON:-$PWD/.venv/bin/python}"
# The corpus recipe's own tests (Python, standard library only), then the Swift suites.
python3 corpus/tests/test_corpus.py
exec swift test "$@"
