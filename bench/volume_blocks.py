#!/usr/bin/env python3
"""Issue 19's memory check of --do_3D over 3-D blocks (a benchmark, not a test): peak RSS per rank
of a 64x256x256 volume and of a 128x512x512 one (8x the voxels; both tiled from
synth_vol_17x61x80), tiny model, --block 64, 2 ranks of 1 thread. The issue asks for the two
within 25% of each other. Also, for the smaller volume, the same run on one process without
--block (the whole-volume engine) for its time and RSS, and a check that the labels are identical.

usage: /usr/bin/python3 bench/volume_blocks.py [--build build] [--tmp DIR] [--skip-large]
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np
import tifffile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("CELLPOSE_MPI_SHARED", os.path.join(ROOT, "..", "shared"))
VOLUME = os.path.join(SHARED, "data", "synthetic", "synth_vol_17x61x80.tif")
MODEL = os.path.join(SHARED, "models", "tiny_random_nbase8_seed7.pth")
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMP_NUM_THREADS="1")


def tiled(shape, path):
    x = tifffile.imread(VOLUME)
    reps = [-(-s // t) for s, t in zip(shape, x.shape)]
    tifffile.imwrite(path, np.tile(x, reps)[:shape[0], :shape[1], :shape[2]])


def run(cmd):
    """Runs cmd; returns (seconds, [peak RSS MiB of each process], the network seconds, the
    summary's "<n> tile evaluations for <m> tiles" as (n, m), or None on one process)."""
    t = time.perf_counter()
    r = subprocess.run(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    dt = time.perf_counter() - t
    if r.returncode:
        sys.exit("failed: " + " ".join(cmd) + "\n" + r.stdout[-3000:])
    rss = [int(k) / 1024 for k in re.findall(r"^rss (\d+)", r.stdout, re.M)]
    net = re.search(r"^\s+network\s+([\d.]+) s", r.stdout, re.M)
    tiles = re.search(r"(\d+) tile evaluations for (\d+) tiles", r.stdout)
    return (dt, rss, float(net.group(1)) if net else float("nan"),
            (int(tiles.group(1)), int(tiles.group(2))) if tiles else None)


def print_machine():
    cpu = subprocess.run(["lscpu"], stdout=subprocess.PIPE, text=True).stdout
    model = re.search(r"Model name:\s*(.*)", cpu)
    print("CPU:", model.group(1) if model else "?", "| load average", os.getloadavg())


def segment(exe, image, out, ranks):
    args = ["--pretrained_model", MODEL, "--image_path", image, "--z_axis", "0", "--do_3D",
            "--diameter", "30", "--output", out]
    timed = ["/usr/bin/time", "-f", "rss %M", exe] + args
    if ranks == 0:  # one process, the whole-volume engine
        return run(timed)
    return run(["mpirun", "--oversubscribe", "-n", str(ranks), "-x", "OMP_NUM_THREADS=1"] +
               timed + ["--block", "64"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--tmp", default=None)
    ap.add_argument("--skip-large", action="store_true")
    a = ap.parse_args()
    exe = os.path.join(a.build, "cellpose-mpi")
    tmp = a.tmp or tempfile.mkdtemp(prefix="cp_volblocks_")
    print_machine()
    shapes = [(64, 256, 256)] + ([] if a.skip_large else [(128, 512, 512)])
    peaks = []
    for shape in shapes:
        name = "x".join(map(str, shape))
        image = os.path.join(tmp, f"v{name}.tif")
        tiled(shape, image)
        dt, rss, net, tiles = segment(exe, image, os.path.join(tmp, f"b{name}.h5"), 2)
        peaks.append(max(rss))
        print(f"{name}, 2 ranks, blocks of 64: {dt:.1f} s (network {net:.1f} s), peak RSS per "
              f"rank {[round(r) for r in rss]} MiB; {tiles[0]} tile evaluations for the "
              f"volume's {tiles[1]} tiles ({tiles[0] / tiles[1]:.2f}x)")
        if shape == shapes[0]:
            dt1, rss1, net1, _ = segment(exe, image, os.path.join(tmp, f"w{name}.h5"), 0)
            print(f"{name}, one process, whole volume: {dt1:.1f} s (network {net1:.1f} s), "
                  f"peak RSS {round(rss1[0])} MiB")
            import h5py
            same = (h5py.File(os.path.join(tmp, f"b{name}.h5"))["labels"][...] ==
                    h5py.File(os.path.join(tmp, f"w{name}.h5"))["labels"][...]).all()
            print("  labels identical to the whole-volume run:", bool(same))
            print(f"  network time over blocks of 64 (2 ranks, summed) / whole volume (1 process):"
                  f" {2 * net / net1:.1f}x")
    if len(peaks) == 2:
        print(f"peak RSS per rank, 128x512x512 / 64x256x256: {peaks[1] / peaks[0]:.2f} "
              f"(issue 19: within 25%)")


if __name__ == "__main__":
    main()
