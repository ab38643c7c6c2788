#!/usr/bin/env python3
"""Issue 18's measurements (a benchmark, not a test):

1. Speed on one process: whole-image time of synth_1024 with the trained model on 2 threads, this
   tree's binary against the binary of commit 109c028 (built beside it in a temporary worktree),
   runs interleaved, best of --repeat each. Issue 18 asks for no more than 5% slower.
2. Memory of a stitched stack on 2 ranks: peak RSS of each rank for stacks of 8 and 64 planes of
   1024 x 1024 (synth_1024, each plane rolled by 8 pixels more than the one before, so that the
   IoU stitching has work), --stitch_threshold 0.25. Issue 18 asks for 64 planes within 25% of 8.

usage: /usr/bin/python3 bench/one_pipeline.py [--build build] [--repeat 3] [--tmp DIR]
           [--skip-speed] [--skip-stack]
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import tifffile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE = "109c028"
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMP_NUM_THREADS="2")
MODEL = os.path.join(ROOT, "examples", "synth_trained_nbase16.pth")
IMAGE = os.path.join(ROOT, "examples", "synth_1024.tif")


def build_base(tmp):
    """The binary of commit BASE, built in a temporary worktree (removed afterwards)."""
    tree = os.path.join(tmp, "base")
    subprocess.run(["git", "-C", ROOT, "worktree", "add", "--detach", tree, BASE], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run(["cmake", "-S", tree, "-B", os.path.join(tree, "build"),
                    "-DCMAKE_BUILD_TYPE=Release"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["cmake", "--build", os.path.join(tree, "build"), "-j2", "--target",
                    "cellpose-mpi"], check=True, stdout=subprocess.DEVNULL)
    return tree, os.path.join(tree, "build", "cellpose-mpi")


def timed_run(exe, out):
    t = time.perf_counter()
    subprocess.run([exe, "--quiet", "--pretrained_model", MODEL, "--image_path", IMAGE, "--chan",
                    "1", "--chan2", "2", "--diameter", "30", "--output", out], check=True,
                   env=ENV)
    return time.perf_counter() - t


def speed(new, tmp, repeat):
    tree, base = build_base(tmp)
    try:
        times = {"109c028": [], "this tree": []}
        for i in range(repeat):
            for name, exe in (("109c028", base), ("this tree", new)):
                out = os.path.join(tmp, "speed.h5")
                times[name].append(timed_run(exe, out))
                os.remove(out)
        best = {k: min(v) for k, v in times.items()}
        for k, v in times.items():
            print(f"  {k:10s} best {best[k]:.2f} s of {', '.join(f'{x:.2f}' for x in v)}")
        print(f"  this tree / 109c028: {best['this tree'] / best['109c028']:.3f} "
              "(issue 18: <= 1.05)")
    finally:
        subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force", tree], check=False)


def stack_file(n, tmp):
    img = tifffile.imread(IMAGE)  # (2, 1024, 1024)
    vol = np.stack([np.roll(img, 8 * z, axis=2) for z in range(n)])  # Z, C, Y, X
    path = os.path.join(tmp, f"stack{n}.tif")
    tifffile.imwrite(path, vol, imagej=True, metadata={"axes": "ZCYX"})
    return path


def stack_rss(exe, n, tmp):
    path, out = stack_file(n, tmp), os.path.join(tmp, f"stack{n}.h5")
    t = time.perf_counter()
    r = subprocess.run(["mpirun", "--oversubscribe", "-n", "2", "-x", "OMP_NUM_THREADS=1",
                        "/usr/bin/time", "-f", "rss_kb %M", exe, "--quiet", "--pretrained_model",
                        MODEL, "--image_path", path, "--z_axis", "0", "--channel_axis", "1",
                        "--chan", "1", "--chan2", "2", "--diameter", "30", "--stitch_threshold",
                        "0.25", "--output", out], env=ENV, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if r.returncode:
        sys.exit(f"stack of {n}: exit {r.returncode}\n{r.stderr}")
    rss = [int(l.split()[1]) for l in r.stderr.splitlines() if l.startswith("rss_kb ")]
    for f in (path, out):
        os.remove(f)
    return max(rss), rss, wall


def stacks(exe, tmp):
    r8, all8, w8 = stack_rss(exe, 8, tmp)
    r64, all64, w64 = stack_rss(exe, 64, tmp)
    print(f"  8 planes:  peak RSS per rank {[x // 1024 for x in all8]} MiB ({w8:.0f} s)")
    print(f"  64 planes: peak RSS per rank {[x // 1024 for x in all64]} MiB ({w64:.0f} s)")
    print(f"  64 / 8 planes, largest rank: {r64 / r8:.2f} (issue 18: <= 1.25)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--tmp", default=None)
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--skip-stack", action="store_true")
    a = ap.parse_args()
    exe = os.path.join(os.path.abspath(a.build), "cellpose-mpi")
    cpu = subprocess.run(["sh", "-c", "lscpu | sed -n 's/^Model name: *//p'"],
                         capture_output=True, text=True).stdout.strip()
    flags = open("/proc/cpuinfo").read()
    print(f"CPU: {cpu}, {'AVX-512' if 'avx512f' in flags else 'AVX2'}")
    with tempfile.TemporaryDirectory(dir=a.tmp) as tmp:
        if not a.skip_speed:
            print("1. one process, synth_1024, trained model, 2 threads:")
            speed(exe, tmp, a.repeat)
        if not a.skip_stack:
            print("2. stitched stack of 1024x1024 planes on 2 ranks (1 thread each):")
            stacks(exe, tmp)


if __name__ == "__main__":
    main()
