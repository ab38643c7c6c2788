#!/usr/bin/env bash
# Builds the fuzz targets (clang, libFuzzer + ASan + UBSan) in build-fuzz/, makes the seed corpora
# and runs each target for SECONDS (default 20: the CI smoke run). See docs/fuzzing.md.
# Usage: tests/fuzz/run.sh [SECONDS] [TARGET ...]     TARGET: tiff pth jobfile flows_h5 blocks dynamics
#   long run, one target after the other (e.g. an hour each):  tests/fuzz/run.sh 3600
# The corpus grows in build-fuzz/corpus/<target>/ (kept between runs). libFuzzer runs in fork
# mode and goes on after a crash, leak or timeout: each input it writes to build-fuzz/findings/
# <target>/ is replayed and triaged by its stack. A failure in our code (src/, mpi/, tests/fuzz/)
# makes the script exit 1 after the other targets have run; one inside a library (libhdf5,
# libtiff, libzip, libconfig) is moved to findings/<target>/library/ and reported, with the
# known ones kept in tests/fuzz/known/ (docs/fuzzing.md). Summary: build-fuzz/logs/summary.txt.
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-20}
[ $# -gt 0 ] && shift
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(tiff pth jobfile flows_h5 blocks dynamics)
B=build-fuzz
PY=${PYTHON:-/usr/bin/python3}
CC_FUZZ=${CC_FUZZ:-$(command -v clang-14 || command -v clang)}

cmake -S tests/fuzz -B $B -DCMAKE_C_COMPILER="$CC_FUZZ" -DCP_WERROR=ON >/dev/null
cmake --build $B -j "$(nproc)" >/dev/null
$PY tests/fuzz/make_corpus.py $B $B/corpus
mkdir -p $B/logs

export ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1
export LSAN_OPTIONS=suppressions=$PWD/tests/fuzz/lsan.supp:print_suppressions=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export HDF5_USE_FILE_LOCKING=FALSE

# Largest input each target is given: a little above its largest seed (the model files excepted:
# the tiny model is 1.7 MB and its mutations exercise the storage reads).
max_len() {
    case $1 in
    tiff) echo 16384 ;; pth) echo 2000000 ;; jobfile) echo 4096 ;; flows_h5) echo 32768 ;;
    blocks) echo 8192 ;; dynamics) echo 12296 ;;
    esac
}
opts=(-rss_limit_mb=2048 -malloc_limit_mb=2048 -timeout=10)

# "fixed" (the input no longer fails), "ours" or "library <lib>": where the first frame of the
# replayed input's report that is not libc, the sanitizers or libFuzzer lies.
triage() {
    local frame out
    out=$($B/fuzz_$1 "${opts[@]}" "$2" 2>&1) && { echo fixed; return; }
    frame=$(echo "$out" | grep -E '^ +#[0-9]+ 0x' |
        grep -vE 'libc\.so|sysdeps|__interceptor|__sanitizer|__asan|__lsan|__ubsan|fuzzer::|libclang_rt|in (malloc|calloc|realloc|free|abort)\b|in __libc' |
        head -1 || true)
    if [[ $frame =~ (lib(hdf5|tiff|zip|config|z|jbig|jpeg|deflate|lzma|zstd|webp)[a-z_]*\.so) ]]; then
        echo "library ${BASH_REMATCH[1]}"
    else
        echo ours
    fi
}

status=0
: >$B/logs/summary.txt
for t in "${targets[@]}"; do
    F=$B/findings/$t
    mkdir -p $F/library
    log=$B/logs/$t.log
    echo "== fuzz_$t: $secs s"
    rc=0
    $B/fuzz_$t $B/corpus/$t -max_total_time="$secs" -max_len="$(max_len $t)" "${opts[@]}" \
        -fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 -artifact_prefix=$F/ \
        >"$log" 2>&1 || rc=$?
    last=$(grep -E '^#[0-9]+: cov' "$log" | tail -1)
    execs=$(echo "$last" | sed -n 's/^#\([0-9]*\):.*/\1/p')
    cov=$(echo "$last" | grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+' || true)
    ours=0 lib=0
    for f in "$F"/crash-* "$F"/leak-* "$F"/timeout-* "$F"/oom-*; do
        [ -e "$f" ] || continue
        where=$(triage $t "$f")
        if [ "$where" = fixed ]; then
            echo "  no longer fails: $(basename "$f") (removed)"
            rm -f "$f"
        elif [ "$where" = ours ]; then
            ours=$((ours + 1))
            echo "  in our code: $f (replay: $B/fuzz_$t $f)"
        else
            lib=$((lib + 1))
            echo "  ${where}: $(basename "$f") -> $F/library/"
            mv "$f" $F/library/
        fi
    done
    line="fuzz_$t: ${execs:-?} executions in $secs s ($(( ${execs:-0} / (secs > 0 ? secs : 1) ))/s), $cov, findings: $ours in our code, $lib in libraries, exit $rc"
    echo "$line" | tee -a $B/logs/summary.txt
    # libFuzzer exits non-zero after any finding: only ours, or a failure without one, fail
    if [ $ours -ne 0 ] || { [ $rc -ne 0 ] && [ $lib -eq 0 ]; }; then status=1; fi
done
# A fork-mode child killed on a timeout or an OOM leaves its named input (fuzz_common.c,
# cp_fuzz_<pid>.bin) behind: remove those whose process is gone.
for f in /dev/shm/cp_fuzz_*.bin "${TMPDIR:-/tmp}"/cp_fuzz_*.bin; do
    [ -e "$f" ] || continue
    pid=${f##*_}
    kill -0 "${pid%.bin}" 2>/dev/null || rm -f "$f"
done
exit $status
