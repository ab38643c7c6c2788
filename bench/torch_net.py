#!/usr/bin/env python3
"""PyTorch counterpart of bench_net: CPnet (CELLPOSE_ALGORITHM.md section 3.2) written with
torch.nn.functional from the .pth state dict (Cellpose itself is not needed), timed on the same
tile size at 1 and 2 threads. Prints seconds per tile; with --out it also writes the output of a
fixed input tile (raw float32) so that the C forward can be compared with it.

usage: torch_net.py [model.pth] [--tile 224] [--batch 2] [--repeats 2] [--threads t] [--input f]
                    [--out f]
"""
import argparse
import time

import torch
import torch.nn.functional as F


def bn(sd, p, x):
    return F.batch_norm(x, sd[p + ".running_mean"], sd[p + ".running_var"], sd[p + ".weight"],
                        sd[p + ".bias"], training=False, eps=1e-5)


def bc(sd, p, x):
    """BN -> ReLU -> conv (padding k//2)."""
    w = sd[p + ".2.weight"]
    return F.conv2d(F.relu(bn(sd, p + ".0", x)), w, sd[p + ".2.bias"], padding=w.shape[-1] // 2)


def bc0(sd, p, x):
    """BN -> conv 1x1 (projection)."""
    return F.conv2d(bn(sd, p + ".0", x), sd[p + ".1.weight"], sd[p + ".1.bias"])


def cpnet(sd, X):
    D, U = "downsample.down.res_down_", "upsample.up.res_up_"
    xd = []
    for n in range(4):
        y = X if n == 0 else F.max_pool2d(xd[-1], 2, 2)
        h = bc0(sd, f"{D}{n}.proj", y) + bc(sd, f"{D}{n}.conv.conv_1", bc(sd, f"{D}{n}.conv.conv_0", y))
        xd.append(h + bc(sd, f"{D}{n}.conv.conv_3", bc(sd, f"{D}{n}.conv.conv_2", h)))
    s = F.avg_pool2d(xd[3], kernel_size=xd[3].shape[-2:]).flatten(1)
    style = s / (s ** 2).sum(dim=1, keepdim=True) ** 0.5

    def bcs(p, x):
        f = F.linear(style, sd[p + ".full.weight"], sd[p + ".full.bias"])
        return bc(sd, p + ".conv", x + f[:, :, None, None])

    def resup(n, x, skip):
        p = f"{U}{n}.conv.conv_"
        a = bc(sd, p + "0", x)
        h = bc0(sd, f"{U}{n}.proj", x) + bcs(p + "1", a + skip)
        return h + bcs(p + "3", bcs(p + "2", h))

    x = resup(3, xd[3], xd[3])
    for n in (2, 1, 0):
        x = resup(n, F.interpolate(x, scale_factor=2, mode="nearest"), xd[n])
    return bc(sd, "output", x), style


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model", nargs="?", default="../shared/models/random_cp3_seed0.pth")
    ap.add_argument("--tile", type=int, default=224)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, help="measure this thread count only (default 1 and 2)")
    ap.add_argument("--input", help="raw float32 (batch, nchan, tile, tile) input instead of the "
                    "fixed pattern")
    ap.add_argument("--out", help="write the output of the input (raw float32) here")
    a = ap.parse_args()
    sd = {k: v.float() for k, v in torch.load(a.model, map_location="cpu").items()}
    nchan = sd["downsample.down.res_down_0.proj.1.weight"].shape[1]
    shape = (a.batch, nchan, a.tile, a.tile)
    if a.input:
        import numpy as np
        X = torch.from_numpy(np.fromfile(a.input, dtype=np.float32).reshape(shape))
    else:  # the same pattern as bench_net.c
        k = torch.arange(a.batch * nchan * a.tile * a.tile, dtype=torch.int64)
        X = ((k * 2654435761) % 1000).float().reshape(shape) / 500.0 - 1.0
    with torch.no_grad():
        if a.out:
            cpnet(sd, X)[0].numpy().tofile(a.out)
        for threads in ((a.threads,) if a.threads else (1, 2)):
            torch.set_num_threads(threads)
            cpnet(sd, X[:1])  # warm-up
            best = cpu = float("inf")
            for _ in range(a.repeats):
                t0, c0 = time.perf_counter(), time.process_time()
                cpnet(sd, X)
                best = min(best, (time.perf_counter() - t0) / a.batch)
                cpu = min(cpu, (time.process_time() - c0) / a.batch)
            print(f"torch {torch.__version__} threads {threads}, batch {a.batch}: "
                  f"{best:.3f} s/tile (mkldnn {torch.backends.mkldnn.enabled}) ({cpu:.3f} CPU s/tile)")


if __name__ == "__main__":
    main()
