#!/usr/bin/env bash
# Run the test suite on a cgroup v2 host (e.g. the device machine), as root.
# Test servers share the runner's cgroup on v1; on v2 each needs a cgroup of
# its own to delegate controllers to its sandboxes, so this script makes a
# delegated parent, moves itself into a leaf of it, and tells tests/helpers.py
# (FAAS_TEST_CGROUP_PARENT) to start every server in a fresh child.
# Wheels for packages the host lacks may be put in .whl/ (pip download
# --python-version 3.12 --only-binary=:all: -d .whl ...).
set -u
cd "$(dirname "$0")/.."
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site:$PWD
else
    export PYTHONPATH=$PWD
fi
[ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ] || { echo "not a cgroup v2 host" >&2; exit 2; }
parent=/sys/fs/cgroup/faas-ci
mkdir -p "$parent/runner"
for c in cpu memory pids; do
    echo "+$c" >/sys/fs/cgroup/cgroup.subtree_control
    echo "+$c" >"$parent/cgroup.subtree_control"
done
echo $$ >"$parent/runner/cgroup.procs"
export FAAS_TEST_CGROUP_PARENT=$parent
python3 -m pytest -q -p no:cacheprovider tests \
    --ignore=tests/e2e/test_fuzz.py --ignore=tests/e2e/test_prometheus.py "$@"
