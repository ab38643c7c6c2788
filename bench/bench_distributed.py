#!/usr/bin/env python3
"""Distributed benchmarks (not tests), issue 3:

1. Memory follows the block: peak RSS of every rank for a synthetic image of >= 200 megapixels
   (the tiny model, so it runs in minutes) against the same run at 1/4 of the size. The image is
   synth_1024's first channel mirrored to N x N, written as a tiled, deflated uint16 TIFF.
2. Strong scaling on this machine: 1 and 2 ranks (1 thread each) on synth_1024 with the trained
   model, time per phase and time in MPI from the program's own summary.

usage: /usr/bin/python3 bench/bench_distributed.py [--build build] [--shared ../shared]
           [--sizes 7168 14336] [--block 1024] [--tmp DIR]
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile

import numpy as np
import tifffile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
PHASE = re.compile(r"^\s+(read|normalize|network|follow flows|seeds\+masks|qc\+holes\+min_size"
                   r"|write|total)\s+([0-9.]+) s.*?(?:MPI\s+([0-9.]+) s)?$", re.M)


def mirrored(src, n):
    reps = -(-n // src.shape[0])
    tile = np.block([[src, src[:, ::-1]], [src[::-1, :], src[::-1, ::-1]]])
    big = np.tile(tile, (reps // 2 + 1, reps // 2 + 1))
    return np.ascontiguousarray(big[:n, :n])


def run(np_, args):
    cmd = ["mpirun", "--oversubscribe", "-n", str(np_), "-x", "OMP_NUM_THREADS=1",
           "/usr/bin/time", "-f", "maxrss_kb %M"] + args
    r = subprocess.run(cmd, capture_output=True, text=True, env=ENV)
    if r.returncode:
        sys.exit(f"bench: {' '.join(cmd)} failed:\n{r.stderr[-3000:]}")
    out = r.stdout + r.stderr
    rss = [int(v) for v in re.findall(r"maxrss_kb (\d+)", out)]
    phases = {m[0]: (float(m[1]), float(m[2]) if m[2] else 0.0) for m in PHASE.findall(out)}
    return rss, phases


def memory(a, exe, tmp):
    src = tifffile.imread(os.path.join(a.shared, "data", "synthetic", "synth_1024.tif"))[0]
    model = os.path.join(a.shared, "models", "tiny_random_nbase8_seed7.pth")
    print(f"\n## Peak memory per rank (tiny model, 2 ranks, --block {a.block})")
    print("| image | megapixels | max RSS rank 0 (MiB) | max RSS rank 1 (MiB) | total s |")
    print("|---|---|---|---|---|")
    for n in a.sizes:
        img = os.path.join(tmp, f"big_{n}.tif")
        tifffile.imwrite(img, mirrored(src, n), tile=(512, 512), compression="zlib")
        rss, ph = run(2, [exe, "--pretrained_model", model, "--image_path", img, "--block",
                          str(a.block), "--output", os.path.join(tmp, "o.h5")])
        os.remove(img)
        print(f"| {n}x{n} | {n * n / 1e6:.0f} | " + " | ".join(f"{k / 1024:.0f}" for k in rss)
              + f" | {ph['total'][0]:.0f} |", flush=True)


def scaling(a, exe, tmp):
    model = os.path.join(a.shared, "models", "synth_trained_nbase16.pth")
    img = os.path.join(a.shared, "data", "synthetic", "synth_1024.tif")
    print("\n## Strong scaling, synth_1024, trained model, blocks of 256, 1 thread per rank")
    names = ["read", "normalize", "network", "follow flows", "seeds+masks", "qc+holes+min_size",
             "write", "total"]
    rows = {}
    for np_ in (1, 2):
        _, ph = run(np_, [exe, "--pretrained_model", model, "--image_path", img, "--chan", "1",
                          "--chan2", "2", "--block", "256", "--output", os.path.join(tmp, "s.h5")])
        rows[np_] = ph
    print("| phase | 1 rank s | 2 ranks s (MPI s) | speed-up |")
    print("|---|---|---|---|")
    for k in names:
        t1, t2 = rows[1][k][0], rows[2][k][0]
        print(f"| {k} | {t1:.2f} | {t2:.2f} ({rows[2][k][1]:.2f}) | "
              f"{t1 / t2 if t2 > 0 else 0:.2f} |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--shared", default=os.environ.get("CELLPOSE_MPI_SHARED",
                                                       os.path.join(ROOT, "..", "shared")))
    ap.add_argument("--sizes", type=int, nargs="+", default=[7168, 14336])
    ap.add_argument("--block", type=int, default=1024)
    ap.add_argument("--tmp", default=None)
    a = ap.parse_args()
    exe = os.path.join(a.build, "cellpose-mpi")
    with tempfile.TemporaryDirectory(dir=a.tmp) as tmp:
        scaling(a, exe, tmp)
        memory(a, exe, tmp)


if __name__ == "__main__":
    main()
