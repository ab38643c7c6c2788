#!/usr/bin/env python3
"""Strong and weak scaling of cellpose-mpi over a grid of ranks x threads.

Runs the program once per grid point through srun (inside a SLURM allocation) or mpirun, reads
the timing summary it prints on stderr (one line per phase, `  network   6.377 s  76.8%   MPI
0.378 s`, and `  total ...`), and writes scaling.csv and scaling.png (time, speed-up and parallel
efficiency against ranks, one line per thread count) into --out.

With --repeat N each point runs N times and the fastest run counts.

Strong scaling: the same image at every point; speed-up T(1 rank, 1 thread) / T(ranks, threads),
efficiency = speed-up / (ranks x threads). Weak scaling: an image of `ranks` copies of the input
stacked along y (written into --out), so that the pixels per rank stay fixed; efficiency =
T(1 rank, t threads) / T(ranks, t threads).

  python3 slurm/scaling_study.py --bin build/cellpose-mpi --model M.pth --image I.tif \
      --ranks 1 2 4 --threads 1 2 --out docs/scaling -- --chan 1 --chan2 2

A volume in 3-D: give its axes and --do_3D after `--`, and a block side for cubic blocks (weak
scaling stacks the volume along Y):

  python3 slurm/scaling_study.py --model M.pth --image vol.tif --block 64 --ranks 1 2 4 \
      --threads 1 --out docs/scaling3d -- --do_3D --z_axis 0 --diameter 30
"""
import argparse
import csv
import glob
import os
import re
import subprocess
import sys
import time

PHASE = re.compile(r"^  (\S.*?)\s+([0-9.]+) s(?:\s+[0-9.]+%)?(?:\s+MPI\s+([0-9.]+) s)?\s*$")


def parse_timing(text):
    """{phase: (seconds, mpi seconds)} from the program's timing summary."""
    out, inside = {}, False
    for line in text.splitlines():
        if line.startswith("timing summary"):
            inside, out = True, {}
            continue
        m = PHASE.match(line) if inside else None
        if m:
            out[m.group(1)] = (float(m.group(2)), float(m.group(3) or 0.0))
        elif inside and not line.startswith("  "):
            inside = False
    return out


def launcher_cmd(kind, ranks, threads, extra):
    if kind == "srun":
        return ["srun", "--mpi=pmix", "-n", str(ranks), "-c", str(threads)] + extra
    return ["mpirun", "-n", str(ranks), "--oversubscribe", "--bind-to", "none",
            "-x", "OMP_NUM_THREADS"] + extra


def weak_image(src, ranks, outdir):
    """src stacked `ranks` times along y (the last axis but one), as a TIFF in outdir."""
    import numpy as np
    import tifffile
    path = os.path.join(outdir, "weak_x%d.tif" % ranks)
    if not os.path.exists(path):
        a = tifffile.imread(src)
        tifffile.imwrite(path, np.concatenate([a] * ranks, axis=-2))
    return path


def run_point(args, mode, ranks, threads, image):
    out = os.path.join(args.out, "run_%s_r%d_t%d.h5" % (mode, ranks, threads))
    cmd = launcher_cmd(args.launcher, ranks, threads, args.launcher_arg) + [
        args.bin, "--pretrained_model", args.model, "--image_path", image, "--output", out,
        "--block", str(args.block)] + args.flags
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    t0 = time.time()
    p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wall = time.time() - t0
    with open(os.path.join(args.out, "logs", "%s_r%d_t%d.log" % (mode, ranks, threads)), "w") as f:
        f.write(" ".join(cmd) + "\n" + p.stdout)
    for path in [out, out + ".lock"] + glob.glob(out + ".partial*"):
        if os.path.exists(path):
            os.remove(path)
    t = parse_timing(p.stdout)
    if p.returncode or "total" not in t:
        print("%s r=%d t=%d failed (exit %d): %s" % (mode, ranks, threads, p.returncode,
                                                    p.stdout.strip().splitlines()[-1:]),
              file=sys.stderr)
        return None
    row = {"mode": mode, "ranks": ranks, "threads": threads, "cores": ranks * threads,
           "image": os.path.basename(image), "wall_s": round(wall, 3),
           "total_s": t["total"][0], "mpi_s": t["total"][1]}
    for name, (sec, _) in t.items():
        if name != "total":
            row[re.sub(r"[^a-z0-9]+", "_", name).strip("_") + "_s"] = sec
    print("%-6s ranks %d threads %d: total %.3f s (network %.3f s, MPI %.3f s)" % (
        mode, ranks, threads, row["total_s"], row.get("network_s", 0), row["mpi_s"]), flush=True)
    return row


def add_ratios(rows):
    for r in rows:
        if r["mode"] == "strong":
            base = [b for b in rows if b["mode"] == "strong" and b["ranks"] == 1 and b["threads"] == 1]
            if base:
                r["speedup"] = base[0]["total_s"] / r["total_s"]
                r["efficiency"] = r["speedup"] / r["cores"]
        else:
            base = [b for b in rows if b["mode"] == "weak" and b["ranks"] == 1 and b["threads"] == r["threads"]]
            if base:
                r["speedup"] = r["ranks"] * base[0]["total_s"] / r["total_s"]
                r["efficiency"] = base[0]["total_s"] / r["total_s"]


def plot(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    modes = [m for m in ("strong", "weak") if any(r["mode"] == m for r in rows)]
    fig, axes = plt.subplots(len(modes), 3, figsize=(12, 3.6 * len(modes)), squeeze=False)
    for i, mode in enumerate(modes):
        sel = [r for r in rows if r["mode"] == mode]
        for threads in sorted({r["threads"] for r in sel}):
            pts = sorted((r for r in sel if r["threads"] == threads), key=lambda r: r["ranks"])
            x = [r["ranks"] for r in pts]
            for j, key in enumerate(("total_s", "speedup", "efficiency")):
                y = [r.get(key, float("nan")) for r in pts]
                axes[i][j].plot(x, y, "o-", label="%d thread%s" % (threads, "s" * (threads > 1)))
        ranks = sorted({r["ranks"] for r in sel})
        for j, (key, label) in enumerate((("total_s", "time (s)"), ("speedup", "speed-up"),
                                          ("efficiency", "parallel efficiency"))):
            ax = axes[i][j]
            ax.set_xlabel("MPI ranks")
            ax.set_ylabel(label)
            ax.set_xticks(ranks)
            ax.set_title("%s scaling: %s" % (mode, label))
            ax.grid(alpha=0.3)
            if key == "efficiency":
                ax.set_ylim(0, 1.1)
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default="build/cellpose-mpi")
    ap.add_argument("--model", required=True)
    ap.add_argument("--image", required=True)
    ap.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--block", type=int, default=512, help="owner-block side (--block)")
    ap.add_argument("--modes", nargs="+", default=["strong", "weak"], choices=["strong", "weak"])
    ap.add_argument("--launcher", choices=["srun", "mpirun", "auto"], default="auto")
    ap.add_argument("--launcher-arg", action="append", default=[],
                    help="extra launcher argument (repeatable), e.g. --overcommit")
    ap.add_argument("--repeat", type=int, default=1,
                    help="runs per point; the fastest counts (for shared, noisy machines)")
    ap.add_argument("--out", default="scaling")
    ap.add_argument("flags", nargs="*", help="more cellpose-mpi flags (after --)")
    args = ap.parse_args()
    if args.launcher == "auto":
        args.launcher = "srun" if os.environ.get("SLURM_JOB_ID") else "mpirun"
    os.makedirs(os.path.join(args.out, "logs"), exist_ok=True)
    rows, failed = [], 0
    for mode in args.modes:
        for threads in args.threads:
            for ranks in args.ranks:
                image = args.image if mode == "strong" else weak_image(args.image, ranks, args.out)
                runs = [run_point(args, mode, ranks, threads, image) for _ in range(args.repeat)]
                runs = [r for r in runs if r]
                row = min(runs, key=lambda r: r["total_s"]) if runs else None
                failed += row is None
                if row:
                    rows.append(row)
    add_ratios(rows)
    keys = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    with open(os.path.join(args.out, "scaling.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow({k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()})
    if rows:
        plot(rows, os.path.join(args.out, "scaling.png"))
    for name in os.listdir(args.out):
        if name.startswith("weak_x"):
            os.remove(os.path.join(args.out, name))
    print("wrote %s/scaling.csv and scaling.png (%d points, %d failed)" % (args.out, len(rows), failed))
    return 1 if failed or not rows else 0


if __name__ == "__main__":
    sys.exit(main())
