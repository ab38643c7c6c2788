#!/bin/bash
# The sbatch scripts of slurm/ on a real one-node SLURM cluster started for the test (cluster.sh):
#  1. dataset_array.sbatch, 2 array tasks over 3 crops with a job file: 3 outputs, each with the
#     labels of a direct single-process run;
#  2. scaling_study.sbatch, ranks 1 2 x 1 thread, strong and weak: CSV with 4 rows and a PNG;
#  3. large_image.sbatch, 2 ranks over an 8192x3072 image (trained model, --augment): about 80 s
#     on 2 idle cores, longer when they are shared;
#  4. the same with --time=1 --signal=B:USR1@20: USR1 -> checkpoint -> exit 3 -> requeue ->
#     --resume, finishing with labels identical to run 3. slurmctld checks time limits every
#     ~30 s, so with a 1-minute limit the signal comes at its first check, 0-30 s into each run
#     (whatever the @ lead time): the run must be longer than that, and each run does that much;
#  5. large_image.sbatch with a job file for a volume in 3-D (do_3D, blocks of 32) on 2 ranks:
#     labels identical to one process holding the whole volume;
#  6. a job step that fails to launch (srun exits 0 then): the job fails, with no output.
# Usage: test_slurm.sh BUILD_DIR SOURCE_DIR SHARED_DIR (CELLPOSE_MPI_SHARED overrides the last;
# where SHARED_DIR has no reference/, the data bundled in tests/data ($CP_TEST_DATA), which holds
# every file used here).
# Exit 0 pass, 1 fail, 77 skipped (not root, or slurm-wlm/munge cannot be installed); on CI
# (CI=true) a skip is a failure. Takes about 6 minutes on 2 cores (the requeue loop).
set -u
shared=${CELLPOSE_MPI_SHARED:-$3}
if [ -z "${CELLPOSE_MPI_SHARED:-}" ] && [ ! -d "$shared/reference" ] && [ -n "${CP_TEST_DATA:-}" ]; then
    shared=$CP_TEST_DATA
fi
build=$(realpath "$1") src=$(realpath "$2") shared=$(realpath "$shared")
py=/usr/bin/python3
here=$(dirname "$(realpath "$0")")
t_start=$(date +%s)

skip() {
    if [ "${CI:-}" = true ]; then echo "FAIL: cannot run SLURM here, and CI=true: $*"; exit 1; fi
    echo "SKIP: cannot run SLURM daemons here: $*"
    exit 77
}
failures=0
check() { # check DESCRIPTION COMMAND...: runs the command, counts a failure
    local what=$1; shift
    if "$@"; then echo "ok    $what"; else echo "FAIL  $what"; failures=$((failures + 1)); fi
}
elapsed() { echo $(( $(date +%s) - t_start )); }

[ "$(id -u)" -eq 0 ] || skip "not root (munged/slurmctld/slurmd need it in this setup)"
. "$here/cluster.sh"
cluster_install || skip "slurm-wlm and munge are not installed and cannot be"
[ -x "$build/cellpose-mpi" ] || { echo "FAIL: $build/cellpose-mpi missing"; exit 1; }
$py -c "import h5py, tifffile, numpy, matplotlib" || { echo "FAIL: $py lacks h5py/tifffile/matplotlib"; exit 1; }

T=$(mktemp -d /tmp/cpslurm.XXXXXX)
finish() {
    cluster_stop "$T"
    if [ $failures -eq 0 ]; then rm -rf "$T"; else echo "kept $T for the logs"; fi
}
trap finish EXIT
cluster_start "$T" || { failures=1; echo "FAIL: the cluster did not start"; exit 1; }
echo "cluster up after $(elapsed) s: $(sinfo -h -o '%P %t %c CPUs')"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 CP_BIN=$build/cellpose-mpi
tiny=$shared/models/tiny_random_nbase8_seed7.pth
trained=$shared/models/synth_trained_nbase16.pth
cd "$T" || exit 1

# Inputs: three 256x256 crops and an 8192x3072 mosaic of synth_1024 (2 channels).
mkdir -p data data_out
$py - "$shared/data/synthetic/synth_1024.tif" <<'PY' || exit 1
import sys, numpy as np, tifffile
a = tifffile.imread(sys.argv[1])
for name, (y, x) in {"a": (0, 0), "b": (300, 500), "c": (700, 200)}.items():
    tifffile.imwrite("data/crop_%s.tif" % name, a[:, y:y + 256, x:x + 256])
row = np.concatenate([a, a[..., ::-1], a], axis=-1)
tifffile.imwrite("big.tif", np.concatenate([row, row[..., ::-1, :]] * 4, axis=-2))
PY

# Waits until every job (or array task) of id has ended; prints one "state exit" per task.
wait_job() {
    local id=$1 limit=$2 i states
    for i in $(seq "$limit"); do
        states=$(scontrol -o show job "$id" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | sort -u)
        if [ -n "$states" ] && ! echo "$states" | grep -qvE 'COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY|BOOT_FAIL|DEADLINE'; then
            scontrol -o show job "$id" | grep -o 'JobState=[A-Z_]* .*ExitCode=[0-9:]*' |
                sed 's/ .*ExitCode=/ exit /'
            return 0
        fi
        sleep 1
    done
    echo "job $id still not done after $limit s: $(scontrol -o show job "$id" | grep -o 'JobState=[A-Z_]*')"
    return 1
}
all_completed() { ! echo "$1" | grep -qv '^JobState=COMPLETED exit 0:0$'; }
same_labels() { # same_labels A.h5 B.h5: identical /labels with masks in them
    $py - "$1" "$2" <<'PY'
import sys, h5py, numpy as np
a, b = (h5py.File(p, "r")["labels"][...] for p in sys.argv[1:3])
same = a.shape == b.shape and np.array_equal(a, b)
print("      %s vs %s: %s, %d masks, %d pixels differ" % (sys.argv[1], sys.argv[2], a.shape,
      a.max(), -1 if a.shape != b.shape else int((a != b).sum())))
sys.exit(0 if same and a.max() > 0 else 1)
PY
}

# 1. dataset array with a job file
cat > dataset.cfg <<CFG
dir = "data";
pretrained_model = "$trained";
chan = 1;
chan2 = 2;
diameter = 30;
CFG
t0=$(elapsed)
jid=$(CP_JOB=dataset.cfg CP_OUT_DIR=data_out sbatch --parsable --array=0-1 -n 1 -c 1 \
      --time=5 "$src/slurm/dataset_array.sbatch") || exit 1
st=$(wait_job "$jid" 300)
echo "$st"
check "dataset array: both tasks COMPLETED with exit 0 ($(( $(elapsed) - t0 )) s)" all_completed "$st"
for c in a b c; do
    "$CP_BIN" --pretrained_model "$trained" --chan 1 --chan2 2 --diameter 30 --quiet \
        --image_path "data/crop_$c.tif" --output "direct_$c.h5" 2>/dev/null || true
    check "dataset array: crop_$c labels = a direct run" same_labels "data_out/crop_${c}_seg.h5" "direct_$c.h5"
done
check "dataset array: no slice folder left" test -z "$(ls -A data_out | grep -v _seg.h5)"
grep -h "array task" cellpose-dataset-*.out | sed 's/^/      /'

# 2. scaling study
t0=$(elapsed)
jid=$(CP_MODEL=$tiny CP_IMAGE=data/crop_a.tif CP_RANKS="1 2" CP_THREADS=1 CP_BLOCK=128 \
      CP_OUT=scaling CP_HELPER=$src/slurm/scaling_study.py CP_PYTHON=$py \
      sbatch --parsable -n 2 -c 1 --time=5 "$src/slurm/scaling_study.sbatch" --chan 1 --chan2 2) || exit 1
st=$(wait_job "$jid" 300)
echo "$st"
check "scaling study: COMPLETED with exit 0 ($(( $(elapsed) - t0 )) s)" all_completed "$st"
check "scaling study: 4 rows (strong + weak, 1 and 2 ranks) in scaling.csv" \
    test "$(tail -n +2 scaling/scaling.csv 2>/dev/null | wc -l)" -eq 4
check "scaling study: scaling.png written" test -s scaling/scaling.png
sed 's/^/      /' scaling/scaling.csv

# 3. one large image over 2 ranks, uninterrupted
cat > big.cfg <<CFG
image_path = "big.tif";
pretrained_model = "$trained";
chan = 1;
chan2 = 2;
augment = true;
block = 256;
CFG
t0=$(elapsed)
jid=$(CP_JOB=big.cfg CP_OUTPUT=big_ref.h5 sbatch --parsable -n 2 -c 1 --time=10 \
      "$src/slurm/large_image.sbatch") || exit 1
st=$(wait_job "$jid" 600)
echo "$st"
t_ref=$(( $(elapsed) - t0 ))
check "large image: COMPLETED with exit 0 ($t_ref s)" all_completed "$st"
grep -h "^  total\|^  network\|^== " "cellpose-large-$jid.out" | sed 's/^/      /'

# 4. the same with a 1-minute limit: USR1, checkpoint, requeue, resume
t0=$(elapsed)
jid=$(CP_JOB=big.cfg CP_OUTPUT=big_requeue.h5 sbatch --parsable -n 2 -c 1 --time=1 \
      --signal=B:USR1@20 "$src/slurm/large_image.sbatch") || exit 1
# each 1-minute run computes ~40 s minus its start: allow 3x the uninterrupted run plus the
# requeue delays (more than 720 s only on a loaded machine, where t_ref grows too)
budget=$(( 3 * t_ref + 300 > 720 ? 3 * t_ref + 300 : 720 ))
st=$(wait_job "$jid" "$budget")
echo "$st"
restarts=$(scontrol -o show job "$jid" | grep -o 'Restarts=[0-9]*' | cut -d= -f2)
log=cellpose-large-$jid.out
grep -h "^== \|stop requested\|resuming\|reused" "$log" | sed 's/^/      /'
check "time limit: COMPLETED with exit 0 after $restarts requeue(s) ($(( $(elapsed) - t0 )) s)" \
    all_completed "$st"
check "time limit: requeued at least once (Restarts=$restarts)" test "${restarts:-0}" -ge 1
check "time limit: USR1 reached the program, which exited 3" \
    grep -q "cellpose-mpi exit status 3" "$log"
check "time limit: the next run resumed from the checkpoint" grep -q -- "--resume" "$log"
check "time limit: labels identical to the uninterrupted run" same_labels big_requeue.h5 big_ref.h5
check "time limit: no checkpoint left (big_requeue.h5.work)" test ! -e big_requeue.h5.work

# 5. a volume in 3-D over 2 ranks in cubic blocks, through the same script and a job file
cat > vol.cfg <<CFG
image_path = "$shared/data/synthetic/synth_vol_17x61x80.tif";
pretrained_model = "$tiny";
do_3D = true;
z_axis = 0;
diameter = 30.0;
block = 32;
CFG
t0=$(elapsed)
"$build/cellpose-mpi" --quiet --job vol.cfg --block 0 --output vol_one.h5 || \
    echo "FAIL: the single-process volume run"
jid=$(CP_JOB=vol.cfg CP_OUTPUT=vol_blocks.h5 sbatch --parsable -n 2 -c 1 --time=5 \
      "$src/slurm/large_image.sbatch") || exit 1
st=$(wait_job "$jid" 300)
echo "$st"
grep -h "in 3-D on\|^  total\|^== " "cellpose-large-$jid.out" | sed 's/^/      /'
check "volume: COMPLETED with exit 0 ($(( $(elapsed) - t0 )) s)" all_completed "$st"
check "volume: labels identical to one process holding the whole volume" \
    same_labels vol_blocks.h5 vol_one.h5

# 6. a job step whose tasks fail to launch (srun then exits 0): the job fails, nothing written.
# PMIx refuses to launch a step whose folder exists already: one is made before the job runs.
jid=$(CP_JOB=vol.cfg CP_OUTPUT=never.h5 sbatch --parsable --hold -n 2 -c 1 --time=5 \
      "$src/slurm/large_image.sbatch") || exit 1
mkdir -p "$T/pmix/spmix_appdir_$(id -u)_$jid.0"
scontrol release "$jid"
st=$(wait_job "$jid" 120)
echo "$st"
grep -h "did not start\|^== .*exit status" "cellpose-large-$jid.out" | sed 's/^/      /'
check "launch failure: the job FAILED with exit 1" test "$st" = "JobState=FAILED exit 1:0"
check "launch failure: the log says the step did not start" \
    grep -q "the job step did not start" "cellpose-large-$jid.out"
check "launch failure: no output, no step marker left" \
    test ! -e never.h5 -a -z "$(ls -A | grep '^\.cellpose-step')"

cd /
echo "total $(elapsed) s; $failures failure(s)"
[ $failures -eq 0 ]
