#!/usr/bin/env bash
# A new user's first hour, checked: clones the committed repository (HEAD of the repository this
# script lives in) into an empty temporary folder, so that there is no ../shared beside it, with
# CELLPOSE_MPI_SHARED unset, and runs the first two ```sh blocks of the clone's README.md exactly
# as written there (read out of README.md, so that the README cannot drift from what is tested):
#   block 1: install, build, segment an example image -> the .h5 named by its --output must hold
#            /labels with at least one mask (checked with h5py);
#   block 2: install, build, run the whole test suite -> it must pass, on the bundled test data,
#            and end with the one-line report "extended parity suite: N tests not run" (N > 0).
# Prints the wall time of each block. Removes the folder on success, keeps it on failure.
# Usage: tests/fresh_clone.sh            (slow: a full build and the whole suite)
set -euo pipefail
src=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
unset CELLPOSE_MPI_SHARED
tmp=$(mktemp -d "${TMPDIR:-/tmp}/cpfresh.XXXXXX")
clone=$tmp/cellpose-mpi
fail() {
    echo "fresh_clone: FAIL: $*" >&2
    echo "fresh_clone: kept $tmp" >&2
    exit 1
}
git clone -q "$src" "$clone" || fail "git clone $src"
cd "$clone"
echo "fresh_clone: $(git log -1 --format='%h %s') in $clone"
[ ! -e "$tmp/shared" ] || fail "$tmp/shared exists"

# The n-th ```sh block of README.md (the lines between the fence and the closing ```).
block() {
    awk -v want="$1" '/^```sh[[:space:]]*$/ { n++; inside = 1; next }
                      /^```[[:space:]]*$/ && inside { inside = 0; next }
                      inside && n == want { print }' README.md
}
b1=$(block 1) b2=$(block 2)
[ -n "$b1" ] && [ -n "$b2" ] || fail "README.md has fewer than two \`\`\`sh blocks"

run_block() { # run_block N TEXT: runs it in the clone, output to the terminal and block<N>.log
    local t0 t1 rc=0
    echo "fresh_clone: block $1:"
    printf '%s\n' "$2" | sed 's/^/    /'
    t0=$(date +%s)
    set +e
    bash -o pipefail -c "$2" 2>&1 | tee "$tmp/block$1.log"
    rc=${PIPESTATUS[0]}
    set -e
    t1=$(date +%s)
    echo "fresh_clone: block $1 took $((t1 - t0)) s (exit $rc)"
    eval "time$1=$((t1 - t0))"
    return $rc
}

run_block 1 "$b1" || fail "README block 1 failed"
out=$(printf '%s\n' "$b1" | grep -o -- '--output [^ ;&|]*' | tail -1 | cut -d' ' -f2)
[ -n "$out" ] || fail "README block 1 names no --output"
/usr/bin/python3 - "$out" <<'PY' || fail "block 1 output $out: no /labels with masks"
import sys, h5py
with h5py.File(sys.argv[1], "r") as f:
    n = int(f["labels"][...].max())
    print(f"fresh_clone: {sys.argv[1]}: /labels {f['labels'].shape}, {n} masks")
    sys.exit(0 if n > 0 else 1)
PY

run_block 2 "$b2" || fail "README block 2 (the test suite) failed"
report=$(grep -E '^extended parity suite: [0-9]+ tests not run' "$tmp/block2.log" | tail -1)
n=$(printf '%s\n' "$report" | awk '{ print $4 }')
[ -n "$report" ] && [ "${n:-0}" -gt 0 ] ||
    fail "block 2 does not report extended cases not run (no ../shared here)"
echo "fresh_clone: $report"
echo "fresh_clone: ok: block 1 ${time1} s, block 2 ${time2} s"
cd /
rm -rf "$tmp"
