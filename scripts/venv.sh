# Sourced by the other scripts: make .venv (once) and install the project with its test extras.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.installed-$(sha1sum pyproject.toml | cut -c1-12)
if [ ! -f "$stamp" ]; then
  echo "Installing invoiced-keap and its dependencies into .venv ..." >&2
  log=$(mktemp)
  if ! .venv/bin/python -m pip install -q -e '.[test]' >"$log" 2>&1; then
    cat "$log" >&2
    exit 1
  fi
  rm -f "$log" .venv/.installed-* && touch "$stamp"
fi
