#!/usr/bin/env bash
# The GPU path's check on a real GPU machine, as one run (benchmarks/device_check.py does the work).
#
# On the H200 machine (no package registry there): the wheels in .whl/ (scripts/device_wheels.sh, run here
# first) are installed with no network into a scratch folder put first on PYTHONPATH, optitop included; then
# device_check.py writes everything under $OUT (./device_out when unset).
#
#     scripts/device_wheels.sh                                  # here, once per change of the tree
#     run(command="benchmarks/device_check.sh", carry=[".whl"], timeout_s=540)   # the device tool
#     benchmarks/device_check.sh --sim [--quick]                # here: the simulated NVML, CPU workloads
#
# Without .whl/ the current environment is used as it is (the rehearsal in the tests does that).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/device_out}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
exec > >(tee -a "$OUT/log.txt") 2>&1  # everything below, and device_check.py's output, also lands in log.txt
echo "# device_check.sh $(date -u +%FT%TZ) on $(uname -n) ($(uname -m)); python: $($PY --version 2>&1)"
if compgen -G ".whl/*.whl" >/dev/null; then
  SITE=$(mktemp -d /tmp/optitop-site.XXXXXX)
  # --no-deps: .whl holds every package optitop needs beside what the machine's python3 has (torch)
  if $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" .whl/*.whl; then
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}" PATH="$SITE/bin:$PATH"
    echo "installed $(ls .whl | wc -l) wheels into $SITE with no network"
  else
    echo "wheel install FAILED: continuing with the machine's own packages"
  fi
else
  echo "no .whl/ folder: using the current environment (scripts/device_wheels.sh fills it)"
fi
$PY benchmarks/device_check.py --out "$OUT" "$@"
rc=$?
echo "# device_check.sh done: exit $rc"
exit $rc
