#!/usr/bin/env bash
# Fill .whl/ (git-ignored) with what the GPU machine's python3 lacks, for benchmarks/device_check.sh.
#
# The H200 machines reach no package registry; their python3 (3.12, x86-64) has torch, nvidia-ml-py, psutil,
# prometheus-client and rich but not textual or py-spy. This downloads, HERE, the wheels optitop needs at the
# versions this checkout's .venv tests with (pure-Python or manylinux x86-64 for CPython 3.12), and builds
# optitop's own wheel from the tree. The `run` tool's carry brings the folder along (it counts towards the
# 64 MiB a call may send; this set is ~6 MiB).
#
#     scripts/device_wheels.sh            # then: run(command="benchmarks/device_check.sh", carry=[".whl"])
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
DEST=.whl
# name==version from the .venv, so the device runs what the tests ran
PACKAGES=(textual textual-plotext plotext py-spy psutil nvidia-ml-py prometheus-client rich markdown-it-py mdurl
  mdit-py-plugins platformdirs pygments typing-extensions)
pins=()
for name in "${PACKAGES[@]}"; do
  # optional extras (linkify) are left out when the .venv has none
  if version=$("$PY" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$name" 2>/dev/null); then
    pins+=("$name==$version")
  fi
done
rm -rf "$DEST"
mkdir -p "$DEST"
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux_2_12_x86_64 --platform manylinux_2_5_x86_64 \
  --platform manylinux1_x86_64 --platform any -d "$DEST" "${pins[@]}"
"$PY" -m pip wheel -q --no-deps --no-build-isolation -w "$DEST" .
du -sh "$DEST"
ls "$DEST"
