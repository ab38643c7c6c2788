#!/usr/bin/env bash
# Line and branch coverage that the fuzz corpora reach in the readers (docs/fuzzing.md): builds
# the targets for llvm-cov in build-fuzz-cov/, replays build-fuzz/corpus/<target>/ (made and grown
# by tests/fuzz/run.sh) once, and prints llvm-cov's report of each target's own source file.
# Usage: tests/fuzz/coverage.sh [TARGET ...]
set -euo pipefail
cd "$(dirname "$0")/../.."
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(tiff pth jobfile flows_h5 blocks dynamics)
B=build-fuzz-cov
CC_FUZZ=${CC_FUZZ:-$(command -v clang-14 || command -v clang)}
V=${CC_FUZZ##*clang}     # "-14" or ""
cmake -S tests/fuzz -B $B -DCMAKE_C_COMPILER="$CC_FUZZ" -DCP_FUZZ_COVERAGE=ON >/dev/null
cmake --build $B -j "$(nproc)" >/dev/null
source_of() {
    case $1 in
    tiff) echo src/tiff_io.c ;; pth) echo src/pth.c ;; jobfile) echo "src/jobfile.c src/params.c" ;;
    flows_h5) echo src/h5store.c ;; blocks) echo mpi/bstore.c ;;
    dynamics) echo src/compute_masks.c src/follow.c src/masks.c src/post.c src/flows.c \
        src/resize.c src/protrusions.c ;;
    esac
}
for t in "${targets[@]}"; do
    [ -d build-fuzz/corpus/$t ] || { echo "no corpus build-fuzz/corpus/$t: run tests/fuzz/run.sh first" >&2; exit 1; }
    rm -f $B/$t.profraw
    LLVM_PROFILE_FILE=$B/$t.profraw HDF5_USE_FILE_LOCKING=FALSE \
        $B/fuzz_$t -runs=0 build-fuzz/corpus/$t >/dev/null 2>&1 || true
    llvm-profdata$V merge -sparse $B/$t.profraw -o $B/$t.profdata
    echo "== fuzz_$t (corpus: $(ls build-fuzz/corpus/$t | wc -l) inputs)"
    # shellcheck disable=SC2046
    llvm-cov$V report $B/fuzz_$t -instr-profile=$B/$t.profdata $(source_of $t) |
        sed -E 's#^/.*/(src|mpi)/#\1/#'
    if [ $t = flows_h5 ]; then # most of h5store.c is the writer: its readers alone
        echo "  the readers of h5store.c:"
        llvm-cov$V report -show-functions $B/fuzz_$t -instr-profile=$B/$t.profdata src/h5store.c |
            grep -E '^([a-z0-9_.]*:)?(read_f32|read_slab|check_storage|cp_h5_read|quiet_hdf5)' | awk '{printf "  %-26s regions %s/%s  lines %s/%s (%s)\n", $1, $2-$3, $2, $5-$6, $5, $7}'
    fi
done
