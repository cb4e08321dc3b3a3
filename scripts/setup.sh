#!/usr/bin/env bash
# Set up exitreplay in a virtual environment in the checkout (.venv), so a stock Debian/Ubuntu
# python3 (which refuses `pip install` outside one: externally-managed-environment) works as it is.
# The package is installed editable with its test and ray extras (the Ray engine's tests run on a
# local Ray instance); the user's pip is left as it is.
# As root on Debian/Ubuntu it also installs the system tools the tests use: trace-cmd (the
# independent oracle), chromium (HTML report rendering checks), perf (perf.data input) and tmux
# (drives `top` on a terminal).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v trace-cmd >/dev/null 2>&1 || need_apt+=(trace-cmd)
command -v perf >/dev/null 2>&1 || need_apt+=(linux-perf)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v tmux >/dev/null 2>&1 || need_apt+=(tmux)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need_apt[@]}" >/dev/null \
      || echo "setup: could not install ${need_apt[*]} (tests that need them will be skipped)" >&2
  else
    echo "setup: please install ${need_apt[*]} (tests that need them will be skipped)" >&2
  fi
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv || {
    echo "setup: python3 -m venv failed: install the venv module (apt-get install python3-venv)" >&2
    exit 1
  }
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test,ray]"
echo "setup: ready: .venv/bin/exitreplay --help; tests: .venv/bin/python -m pytest -q"
