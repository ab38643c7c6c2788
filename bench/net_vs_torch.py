#!/usr/bin/env python3
"""The network against PyTorch, and the whole engine before/after, in one run (issue 21).

1. CPnet full width (random_cp3_seed0, nbase 32..256) on 224x224 tiles: our seconds per tile
   (bench_net, batch 8) and PyTorch's (torch_net.py, best of batch 2 and 8), at 1 and 2 threads,
   interleaved over --rounds rounds; prints every round, the median ratio PyTorch / ours, the CPU
   model, the kernel path (OpenBLAS core, Winograd or im2col), and the effective GFLOP/s (the direct
   convolution's multiply-adds x 2 per second) against the FP32 FMA peak of the cores used.
2. Whole engine (cellpose-mpi) on synth_1024 with the trained nbase16 model (--chan 1 --chan2 2
   --diameter 30): seconds per megapixel, total and network phase, of --baseline (a build of main)
   and of this build, interleaved, medians.

The machine may be shared: every figure is a median of interleaved runs; say how loaded it was.

usage: python3 bench/net_vs_torch.py [--build build] [--baseline path/to/main/cellpose-mpi]
                                     [--shared ../shared] [--rounds 3] [--threads 1,2]
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = "/usr/bin/python3"


def run(cmd, env=None):
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode:
        sys.exit(f"bench: {' '.join(cmd)} failed:\n{r.stdout}{r.stderr}")
    return r.stdout + r.stderr


def cpu(env):
    """CPU model and features, FP32 flops per cycle per core of the sgemm kernel in use (2 FMA
    pipes x lanes x 2: AVX-512 with OPENBLAS_CORETYPE SkylakeX and the like, AVX2 with Haswell /
    Zen), GHz."""
    info = open("/proc/cpuinfo").read()
    model = re.search(r"model name\s*:\s*(.*)", info)
    flags = re.search(r"flags\s*:\s*(.*)", info)[1].split()
    fam = re.search(r"cpu family\s*:\s*(\d+)", info)
    mhz = float(re.search(r"cpu MHz\s*:\s*([0-9.]+)", info)[1])
    has = "AVX-512" if "avx512f" in flags else "AVX2+FMA" if "avx2" in flags else "SSE"
    core = env.get("OPENBLAS_CORETYPE", "")
    lanes = (16 if core.lower() in ("skylakex", "cooperlake", "sapphirerapids") else
             8 if core else 16 if has == "AVX-512" else 8 if has == "AVX2+FMA" else 4)
    name = f"{model[1] if model else 'unknown'} (family {fam[1] if fam else '?'}; has {has})"
    return name, "AVX-512" if lanes == 16 else "AVX2" if lanes == 8 else "SSE", 2 * lanes * 2, \
        mhz / 1000


def network(a, env):
    model = os.path.join(a.shared, "models", "random_cp3_seed0.pth")
    name, isa, fpc, ghz = cpu(env)
    threads = [int(t) for t in a.threads.split(",")]
    ours, torch = {t: [] for t in threads}, {t: [] for t in threads}
    ours_cpu, torch_cpu = [], []  # 1 thread: CPU seconds per tile, robust to a loaded machine
    head, gflop = "", 0
    for r in range(a.rounds):
        for t in threads:
            out = run([os.path.join(a.build, "bench", "bench_net"), model, "224", "8", "1", str(t)],
                      env)
            head = out.splitlines()[0]
            gflop = float(re.search(r"([0-9.]+) GFLOP/tile", out)[1])
            ours[t].append(float(re.search(r"batch \d+: ([0-9.]+) s/tile", out)[1]))
            if t == 1:
                ours_cpu.append(float(re.search(r"\(([0-9.]+) CPU s/tile", out)[1]))
            best = bcpu = float("inf")
            for batch in (2, 8):
                o = run([PY, os.path.join(ROOT, "bench", "torch_net.py"), model, "--batch",
                         str(batch), "--repeats", "1" if batch == 8 else "3", "--threads", str(t)],
                        env)
                best = min(best, float(re.search(r"batch \d+: ([0-9.]+) s/tile", o)[1]))
                bcpu = min(bcpu, float(re.search(r"\(([0-9.]+) CPU s/tile", o)[1]))
                tv = re.search(r"torch (\S+) ", o)[1]
            torch[t].append(best)
            if t == 1:
                torch_cpu.append(bcpu)
            print(f"round {r + 1}, {t} thread{'s' if t > 1 else ''}: ours {ours[t][-1]:.3f} s/tile, "
                  f"PyTorch {tv} {best:.3f} s/tile (best of batch 2 and 8), ratio "
                  f"{best / ours[t][-1]:.2f}", flush=True)
    print(f"\n## Network: CPnet full width, 224x224 tiles, {a.rounds} interleaved rounds")
    print(f"CPU: {name}, {ghz:.2f} GHz; sgemm kernel {isa} (OPENBLAS_CORETYPE "
          f"{env.get('OPENBLAS_CORETYPE', 'default')}): FP32 FMA peak {fpc * ghz:.0f} GFLOP/s per core")
    print(f"path: {head}")
    print("| threads | ours s/tile (median) | PyTorch s/tile (median) | PyTorch / ours (median of "
          "rounds) | ours effective GFLOP/s | % of FP32 FMA peak |")
    print("|---|---|---|---|---|---|")
    for t in threads:
        mo, mt = statistics.median(ours[t]), statistics.median(torch[t])
        ratio = statistics.median(tt / oo for tt, oo in zip(torch[t], ours[t]))
        eff = gflop / mo
        print(f"| {t} | {mo:.3f} | {mt:.3f} | {ratio:.2f} | {eff:.0f} | "
              f"{100 * eff / (fpc * ghz * t):.0f}% |")
    print("(effective GFLOP/s: the direct convolution's flops per second; Winograd does fewer, so "
          "above 100% is possible)")
    if ours_cpu and torch_cpu:
        r = statistics.median(tc / oc for tc, oc in zip(torch_cpu, ours_cpu))
        print(f"1 thread, CPU seconds per tile (what a loaded machine inflates least): ours "
              f"{statistics.median(ours_cpu):.3f}, PyTorch {statistics.median(torch_cpu):.3f}, "
              f"ratio {r:.2f} (median of rounds)")


PHASE = re.compile(r"^\s+(network|total)\s+([0-9.]+) s", re.M)


def engine(a, env):
    if not a.baseline:
        print("\n(whole engine: no --baseline given, skipped)")
        return
    img = os.path.join(a.shared, "data", "synthetic", "synth_1024.tif")
    model = os.path.join(a.shared, "models", "synth_trained_nbase16.pth")
    mpx = 1024 * 1024 / 1e6
    exes = {"before (main)": a.baseline, "after": os.path.join(a.build, "cellpose-mpi")}
    threads = [int(t) for t in a.threads.split(",")]
    res = {(k, t): [] for k in exes for t in threads}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(a.rounds):
            for t in threads:
                for k, exe in exes.items():
                    out = run([exe, "--pretrained_model", model, "--image_path", img, "--chan", "1",
                               "--chan2", "2", "--diameter", "30", "--threads", str(t), "--output",
                               os.path.join(tmp, "o.h5")], env)
                    ph = dict(PHASE.findall(out))
                    res[(k, t)].append((float(ph["total"]), float(ph["network"])))
    print(f"\n## Whole engine: synth_1024, trained nbase16, --diameter 30, {a.rounds} interleaved "
          "rounds, medians")
    print("| build | threads | total s/Mpx | network s/Mpx |")
    print("|---|---|---|---|")
    for t in threads:
        for k in exes:
            v = res[(k, t)]
            print(f"| {k} | {t} | {statistics.median(x[0] for x in v) / mpx:.3f} | "
                  f"{statistics.median(x[1] for x in v) / mpx:.3f} |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--baseline", help="cellpose-mpi built from main, for the engine before/after")
    ap.add_argument("--shared", default=os.environ.get("CELLPOSE_MPI_SHARED",
                                                       os.path.join(ROOT, "..", "shared")))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--skip-network", action="store_true")
    a = ap.parse_args()
    env = dict(os.environ)
    if "OPENBLAS_CORETYPE" not in env:  # the choice cellpose-mpi itself makes (run_bench.py)
        flags = open("/proc/cpuinfo").read()
        core = "SkylakeX" if " avx512f" in flags else "Haswell" if " avx2" in flags else None
        if core:
            env["OPENBLAS_CORETYPE"] = core
    load = os.getloadavg()
    print(f"load average at start: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} "
          "CPUs")
    if not a.skip_network:
        network(a, env)
    engine(a, env)
    load = os.getloadavg()
    print(f"load average at end: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")


if __name__ == "__main__":
    main()
