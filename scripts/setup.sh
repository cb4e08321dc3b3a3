#!/usr/bin/env bash
# Set up exitreplay on a fresh Debian/Ubuntu machine: the package with its test extras, plus the
# system tools the tests use as independent oracles (trace-cmd, perf) and for rendering checks (chromium).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v trace-cmd >/dev/null 2>&1 || need_apt+=(trace-cmd)
command -v perf >/dev/null 2>&1 || need_apt+=(linux-perf)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "setup: please install ${need_apt[*]} (tests that need them will be skipped)" >&2
  fi
fi

python3 -m pip install -q --upgrade pip >/dev/null 2>&1 || true
python3 -m pip install -q -e ".[test]"
