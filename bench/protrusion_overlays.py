#!/usr/bin/python3
"""The README's protrusion pictures (docs/protrusions/*.png): the image, Cellpose's masks
(cellpose-mpi without --protrusions, identical to Cellpose 3.1.1.3) and --protrusions, side by side.

Usage: python3 bench/protrusion_overlays.py [--build build] [--shared ../shared] [--out docs/protrusions]
Needs the build (cellpose-mpi), python3-h5py, python3-matplotlib, python3-tifffile.
"""
import argparse
import os
import subprocess
import tempfile

import h5py
import matplotlib
import numpy as np
import tifffile

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def labels(exe, args, out):
    subprocess.run([exe, "--quiet", *args, "--output", out], check=True)
    with h5py.File(out, "r") as f:
        return f["labels"][...]


def overlay(ax, img, lab, title):
    g = img.astype(np.float64)
    lo, hi = np.percentile(g, [1, 99.5])
    g = np.clip((g - lo) / max(hi - lo, 1e-9), 0, 1)
    rgb = np.stack([g, g, g], -1)
    colors = np.random.default_rng(7).uniform(0.3, 1.0, (int(lab.max()) + 1, 3))
    m = lab > 0
    rgb[m] = 0.45 * rgb[m] + 0.55 * colors[lab[m]]
    ax.imshow(rgb)
    ax.set_title(title, fontsize=9)
    ax.axis("off")


def figure(exe, model, image, flags, crop, path, tmp):
    img = tifffile.imread(image)
    img = img[0] if img.ndim == 3 and img.shape[0] <= 4 else img
    base = ["--pretrained_model", model, "--image_path", image, *flags]
    cp = labels(exe, base, os.path.join(tmp, "cp.h5"))
    pr = labels(exe, base + ["--protrusions"], os.path.join(tmp, "pr.h5"))
    y0, x0, h, w = crop
    sl = (slice(y0, y0 + h), slice(x0, x0 + w))
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.2), dpi=110)
    axes[0].imshow(img[sl], cmap="gray")
    axes[0].set_title("image", fontsize=9)
    axes[0].axis("off")
    overlay(axes[1], img[sl], cp[sl], "Cellpose 3.1.1.3 (default)")
    overlay(axes[2], img[sl], pr[sl], "--protrusions")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    print(f"wrote {path}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--shared", default=os.environ.get("CELLPOSE_MPI_SHARED",
                                                       os.path.join(ROOT, "..", "shared")))
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "protrusions"))
    a = ap.parse_args()
    exe = os.path.join(a.build, "cellpose-mpi")
    model = os.path.join(a.shared, "models", "synth_trained_nbase16.pth")
    os.makedirs(a.out, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        figure(exe, model, os.path.join(a.shared, "data", "real", "neubias_rat_hippocampal_neuron.tif"),
               ["--chan", "0", "--chan2", "0", "--diameter", "30"], (0, 0, 512, 512),
               os.path.join(a.out, "neuron.png"), tmp)
        figure(exe, model, os.path.join(a.shared, "data", "synthetic", "synth_1024.tif"),
               ["--chan", "1", "--chan2", "2", "--diameter", "30"], (0, 0, 320, 320),
               os.path.join(a.out, "synth_crop.png"), tmp)


if __name__ == "__main__":
    main()
