#!/usr/bin/env python3
"""What a 3-D block costs in memory (a benchmark, not a test): the peak RSS per rank of --do_3D
over blocks of several sides on one volume (tiled from synth_vol_17x61x80, tiny model, 2 ranks of
1 thread): the growth per block voxel c between the smallest and the largest block, and the
least-squares fit peak = base + c * B^3. The default block of a volume (mpi/plan.h) is the largest
power of two B whose BLOCK3_BYTES * B^3 fits BLOCK3_BUDGET per rank; BLOCK3_BYTES is the first c.

usage: /usr/bin/python3 bench/block_memory.py [--build build] [--tmp DIR] [--shape Z Y X]
                                              [--blocks 64 96 128]
"""
import argparse
import os
import tempfile

import numpy as np

from volume_blocks import MODEL, print_machine, run, tiled

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--tmp", default=None)
    ap.add_argument("--shape", type=int, nargs=3, default=[128, 256, 256])
    ap.add_argument("--blocks", type=int, nargs="+", default=[64, 96, 128])
    a = ap.parse_args()
    exe = os.path.join(a.build, "cellpose-mpi")
    tmp = a.tmp or tempfile.mkdtemp(prefix="cp_blockmem_")
    print_machine()
    name = "x".join(map(str, a.shape))
    image = os.path.join(tmp, f"v{name}.tif")
    tiled(tuple(a.shape), image)
    sides, peaks = [], []
    for B in a.blocks:
        args = ["--pretrained_model", MODEL, "--image_path", image, "--z_axis", "0", "--do_3D",
                "--diameter", "30", "--block", str(B), "--output", os.path.join(tmp, f"b{B}.h5")]
        dt, rss, net, tiles = run(["mpirun", "--oversubscribe", "-n", "2", "-x",
                                   "OMP_NUM_THREADS=1", "/usr/bin/time", "-f", "rss %M", exe] + args)
        sides.append(B)
        peaks.append(max(rss))
        print(f"{name}, 2 ranks, blocks of {B}: {dt:.1f} s (network {net:.1f} s), peak RSS per "
              f"rank {[round(r) for r in rss]} MiB; {tiles[0]} tile evaluations for the "
              f"volume's {tiles[1]} tiles")
    cube = np.array(sides, dtype=float) ** 3
    i, j = int(np.argmin(cube)), int(np.argmax(cube))
    print(f"growth per block voxel, blocks of {sides[i]} to {sides[j]}: "
          f"{(peaks[j] - peaks[i]) * 2**20 / (cube[j] - cube[i]):.0f} bytes")
    c, base = np.polyfit(cube, np.array(peaks) * 2**20, 1)
    print(f"fit: peak RSS per rank = {base / 2**20:.0f} MiB + {c:.0f} bytes x B^3")
    for B, p in zip(sides, peaks):
        print(f"  B = {B}: measured {p:.0f} MiB, fit {(base + c * B**3) / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
