#!/usr/bin/env bash
# Create the benchmark environment: .venv-bench at the repo root.
#
# cleanlab is only ever installed here, never as a labelqa dependency.
# --system-site-packages reuses the numpy/pandas/pyarrow/scikit-learn already
# installed for the project, so the comparison runs on the same libraries.
#
# Usage: bash benchmarks/setup_env.sh [PYTHON]   (default: python3)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${1:-python3}"
VENV="$ROOT/.venv-bench"

if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv --system-site-packages "$VENV"
fi
"$VENV/bin/python" -m pip install -q -e "$ROOT"
"$VENV/bin/python" -m pip install -q "cleanlab==2.9.*"
"$VENV/bin/python" - <<'PY'
import cleanlab, numpy, pyarrow, sklearn
print(f"cleanlab {cleanlab.__version__}, numpy {numpy.__version__}, "
      f"pyarrow {pyarrow.__version__}, scikit-learn {sklearn.__version__}")
PY
echo "ready: $VENV  (run benchmarks with $VENV/bin/python benchmarks/...)"
