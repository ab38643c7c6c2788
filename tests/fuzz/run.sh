#!/usr/bin/env bash
# Builds the fuzz targets (clang, libFuzzer + ASan + UBSan) in build-fuzz/, makes the seed corpora
# and runs each target for SECONDS (default 20: the CI smoke run). See docs/fuzzing.md.
# Usage: tests/fuzz/run.sh [SECONDS] [TARGET ...]     TARGET: tiff pth jobfile flows_h5 blocks
#   long run, one target after the other (e.g. an hour each):  tests/fuzz/run.sh 3600
# The corpus grows in build-fuzz/corpus/<target>/ (kept between runs); crashes, leaks and
# timeouts are written to build-fuzz/findings/<target>/ and make the script exit 1 after the
# other targets have run. Summary per target: build-fuzz/logs/summary.txt.
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-20}
[ $# -gt 0 ] && shift
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(tiff pth jobfile flows_h5 blocks)
B=build-fuzz
PY=${PYTHON:-/usr/bin/python3}

cmake -S tests/fuzz -B $B -DCMAKE_C_COMPILER=${CC_FUZZ:-clang} >/dev/null
cmake --build $B -j "$(nproc)" >/dev/null
$PY tests/fuzz/make_corpus.py $B $B/corpus
mkdir -p $B/logs

# Largest input each target is given: a little above its largest seed (the model files excepted:
# the tiny model is 1.7 MB and its mutations exercise the storage reads).
max_len() {
    case $1 in
    tiff) echo 16384 ;; pth) echo 2000000 ;; jobfile) echo 4096 ;; flows_h5) echo 32768 ;;
    blocks) echo 8192 ;;
    esac
}

status=0
: >$B/logs/summary.txt
for t in "${targets[@]}"; do
    mkdir -p $B/findings/$t
    log=$B/logs/$t.log
    echo "== fuzz_$t: $secs s"
    rc=0
    ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 \
    LSAN_OPTIONS=suppressions=$PWD/tests/fuzz/lsan.supp:print_suppressions=0 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        $B/fuzz_$t $B/corpus/$t -max_total_time="$secs" -max_len="$(max_len $t)" \
        -rss_limit_mb=2048 -malloc_limit_mb=2048 -timeout=10 -print_final_stats=1 \
        -artifact_prefix=$B/findings/$t/ >"$log" 2>&1 || rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
    last=$(grep -E '^#[0-9]+' "$log" | tail -1 | grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+/[^ ]+' || true)
    line="fuzz_$t: ${execs:-?} executions, ${speed:-?}/s, $last, exit $rc"
    echo "$line" | tee -a $B/logs/summary.txt
    if [ $rc -ne 0 ]; then
        status=1
        grep -E 'ERROR|runtime error|SUMMARY|Test unit written' "$log" | head -5 || true
    fi
done
exit $status
