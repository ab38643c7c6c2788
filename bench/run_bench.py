#!/usr/bin/env python3
"""Benchmarks of the engine (not tests): prints tables with ratios to the references measured in
the same run.

1. Network: the C CPnet (bench_net) against the same CPnet in PyTorch (torch_net.py, where
   python3-torch is installed) on the same 224x224 tiles, 1 and 2 threads.
2. Whole engine through the CLI: seconds per megapixel of the network and of the dynamics at
   niter 200 and 2000, 1 and 2 threads, on synth_1024 and a real image.
3. Flow following alone (bench_follow): ns per particle-iteration against Cellpose's numba loop
   (11 ns, its published/measured figure on these CPUs; numba is not installed here).
4. --protrusions on synth_1024 (trained model): the protrusion metric (tests/test_protrusions.c)
   of Cellpose's own masks (default and the bsize 512 / niter 2000 recipe, from ../shared/reference)
   and of --protrusions, and its extra time relative to the mask phase (runs from saved flows,
   with and without the flag interleaved; best and median).

usage: python3 bench/run_bench.py [--build build] [--shared ../shared] [--quick]
"""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(cmd, env=None):
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode:
        sys.exit(f"bench: {' '.join(cmd)} failed:\n{r.stderr}")
    return r.stdout + r.stderr


def network(build, shared, env):
    model = os.path.join(shared, "models", "random_cp3_seed0.pth")
    print("\n## Network: CPnet full width (nbase 32..256), 224x224 tiles, batch 8")
    out = run([os.path.join(build, "bench", "bench_net"), model, "224", "8", "3"], env)
    c = {int(t): float(s) for t, s in re.findall(r"threads (\d+), batch \d+: ([0-9.]+) s/tile", out)}
    torch = {}
    py = "/usr/bin/python3"
    have_torch = subprocess.run([py, "-c", "import torch"], capture_output=True).returncode == 0
    if have_torch:
        out = run([py, os.path.join(ROOT, "bench", "torch_net.py"), model, "--batch", "8",
                   "--repeats", "3"], env)
        for t, s in re.findall(r"threads (\d+), batch \d+: ([0-9.]+) s/tile", out):
            torch[int(t)] = float(s)
    print("| threads | C s/tile | PyTorch s/tile | PyTorch / C |")
    print("|---|---|---|---|")
    for t in (1, 2):
        ts = torch.get(t)
        ratio = f"{ts / c[t]:.2f}" if ts else "torch not installed"
        print(f"| {t} | {c[t]:.3f} | {ts if ts else '-'} | {ratio} |")


PHASE = re.compile(r"^\s+(read|normalize|network|follow flows|seeds\+masks|qc\+holes\+min_size"
                   r"|write|total)\s+([0-9.]+) s", re.M)


def engine(build, shared, env, quick):
    exe = os.path.join(build, "cellpose-mpi")
    trained = os.path.join(shared, "models", "synth_trained_nbase16.pth")
    full = os.path.join(shared, "models", "random_cp3_seed0.pth")
    images = [
        ("synth_1024 (trained nbase16)", trained,
         os.path.join(shared, "data", "synthetic", "synth_1024.tif"), ["--chan", "1", "--chan2", "2"], 1.048576),
        ("neuron 512 real (trained nbase16)", trained,
         os.path.join(shared, "data", "real", "neubias_rat_hippocampal_neuron.tif"), [], 0.262144),
        ("synth_1024 (full-width random)", full,
         os.path.join(shared, "data", "synthetic", "synth_1024.tif"), ["--chan", "1", "--chan2", "2"], 1.048576),
    ]
    if quick:
        images = images[1:2]
    print("\n## Whole engine through the CLI, seconds per megapixel")
    print("| image | threads | niter | network s/Mpx | follow s/Mpx | masks+post s/Mpx | total s |")
    print("|---|---|---|---|---|---|---|")
    tmp = tempfile.mkdtemp()
    try:
        for name, model, img, flags, mpx in images:
            for t in (1, 2):
                for niter in (200, 2000):
                    out = run([exe, "--pretrained_model", model, "--image_path", img, "--threads",
                               str(t), "--niter", str(niter), "--output", os.path.join(tmp, "o.h5")]
                              + flags, env)
                    ph = {k: float(v) for k, v in PHASE.findall(out)}
                    post = ph["seeds+masks"] + ph["qc+holes+min_size"]
                    print(f"| {name} | {t} | {niter} | {ph['network'] / mpx:.3f} | "
                          f"{ph['follow flows'] / mpx:.3f} | {post / mpx:.3f} | {ph['total']:.2f} |")
    finally:
        shutil.rmtree(tmp)


def follow(build, shared, env):
    print("\n## Flow following alone (flows_protrusions_niter2000 ideal flows)")
    print(run([os.path.join(build, "bench", "bench_follow"), shared], env))


METRIC = re.compile(r"gt (\d+) pred \d+ matched (\d+) merges (\d+) protrusion_recall ([0-9.]+) wrong_cell ([0-9.]+) "
                    r"body_recall ([0-9.]+)")


def mask_phase(out):
    ph = {k: float(v) for k, v in PHASE.findall(out)}
    return ph["follow flows"] + ph["seeds+masks"] + ph["qc+holes+min_size"]


def protrusions(build, shared, env, quick):
    exe = os.path.join(build, "cellpose-mpi")
    ref = os.path.join(shared, "reference", "synth_trained_nbase16_synth1024")
    print("\n## --protrusions on synth_1024 (trained nbase16, --chan 1 --chan2 2 --diameter 30)")
    tmp = tempfile.mkdtemp()
    try:
        flows, on = os.path.join(tmp, "flows.h5"), os.path.join(tmp, "on.h5")
        run([exe, "--pretrained_model", os.path.join(shared, "models", "synth_trained_nbase16.pth"),
             "--image_path", os.path.join(shared, "data", "synthetic", "synth_1024.tif"), "--chan",
             "1", "--chan2", "2", "--diameter", "30", "--save_flows", "--output", flows], env)
        times = {False: [], True: []}
        for _ in range(3 if quick else 20):
            for flag in (False, True):
                out = run([exe, "--flows", flows, "--output", on if flag else os.path.join(tmp, "off.h5")]
                          + (["--protrusions"] if flag else []), env)
                times[flag].append(mask_phase(out))
        print("| masks | protrusion recall | wrong cell | body recall | matched | merges |")
        print("|---|---|---|---|---|---|")
        for name, path in (("Cellpose 3.1.1.3 default", os.path.join(ref, "masks.tif")),
                           ("Cellpose bsize 512 / niter 2000 recipe", os.path.join(ref, "masks_recipe.tif")),
                           ("cellpose-mpi --protrusions", on)):
            m = METRIC.search(run([os.path.join(build, "tests", "test_protrusions"), "metric", path], env))
            print(f"| {name} | {m[4]} | {m[5]} | {m[6]} | {m[2]} / {m[1]} | {m[3]} |")
        off, with_p = sorted(times[False]), sorted(times[True])
        med = statistics.median
        print(f"mask phase (follow + masks + post), {len(off)} runs each: without {off[0]:.3f} s best, "
              f"{med(off):.3f} s median; with --protrusions {with_p[0]:.3f} s best, {med(with_p):.3f} s "
              f"median: +{100 * (with_p[0] / off[0] - 1):.0f}% best, +{100 * (med(with_p) / med(off) - 1):.0f}% "
              "median (goal <= 20%)")
    finally:
        shutil.rmtree(tmp)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--shared", default=os.environ.get("CELLPOSE_MPI_SHARED",
                                                       os.path.join(ROOT, "..", "shared")))
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    env = dict(os.environ)
    if "OPENBLAS_CORETYPE" not in env:  # the choice cellpose-mpi itself makes (src/main.c)
        flags = open("/proc/cpuinfo").read()
        core = "SkylakeX" if " avx512f" in flags else "Haswell" if " avx2" in flags else None
        if core:
            env["OPENBLAS_CORETYPE"] = core
    print(f"# cellpose-mpi benchmarks ({os.cpu_count()} cores; OPENBLAS_CORETYPE "
          f"{env.get('OPENBLAS_CORETYPE', 'default')})")
    network(a.build, a.shared, env)
    engine(a.build, a.shared, env, a.quick)
    follow(a.build, a.shared, env)
    protrusions(a.build, a.shared, env, a.quick)


if __name__ == "__main__":
    main()
