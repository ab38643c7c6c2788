#!/usr/bin/python3
"""Seed corpora for the fuzz targets (docs/fuzzing.md), generated into OUT/<target>/ from the
project's own test data: small TIFFs of every layout (make_tiff_seeds for codecs, tifffile for the
ImageJ and tifffile shape metadata), the tiny .pth of the shared data plus truncated and
hand-pickled small models, the job files of jobs/, --save_flows style HDF5 files, and block files.
Usage: make_corpus.py BUILD_DIR OUT_DIR [SHARED_DIR]   (nothing here is committed)."""
import os
import struct
import subprocess
import sys
import zipfile

import h5py
import numpy as np
import tifffile

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


def tiff(build, out):
    subprocess.run([os.path.join(build, "make_tiff_seeds"), out], check=True)
    rng = np.random.default_rng(1)
    v = rng.integers(0, 255, (2, 3, 8, 9), dtype=np.uint8)
    tifffile.imwrite(f"{out}/imagej_tzyx.tif", v, imagej=True, metadata={"axes": "TZYX"})
    tifffile.imwrite(f"{out}/imagej_zcyx.tif", v.astype(np.uint16), imagej=True,
                     metadata={"axes": "ZCYX"})
    tifffile.imwrite(f"{out}/tifffile_shape_2x3.tif", v.astype(np.float32))
    tifffile.imwrite(f"{out}/tifffile_rgb_2pages.tif",
                     rng.integers(0, 255, (2, 6, 7, 3), dtype=np.uint8), photometric="rgb")
    tifffile.imwrite(f"{out}/tifffile_planar.tif",
                     rng.integers(0, 999, (3, 6, 7), dtype=np.uint16), photometric="rgb",
                     planarconfig="separate")
    tifffile.imwrite(f"{out}/tifffile_zlib_tiles.tif",
                     rng.random((20, 40), dtype=np.float32), tile=(16, 16), compression="zlib")
    tifffile.imwrite(f"{out}/tifffile_bigtiff_u32.tif",
                     rng.integers(0, 9, (5, 6), dtype=np.uint32), bigtiff=True)


# ---- .pth: a state dict pickled as torch.save writes it (protocol 2, persistent storages) ----

def _str(s):
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def _int(v):
    return b"K" + bytes([v]) if 0 <= v < 256 else b"J" + struct.pack("<i", v)


def _tuple(items):
    if len(items) == 0:
        return b")"
    if len(items) <= 3:
        return b"".join(items) + bytes([0x84 + len(items)])
    return b"(" + b"".join(items) + b"t"


def pickle_state(tensors):
    """tensors: list of (name, storage class, key, numel, offset, size, stride)."""
    p = b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01("
    for name, cls, key, numel, off, size, stride in tensors:
        pid = b"(" + _str("storage") + b"ctorch\n" + cls.encode() + b"\n" + _str(key) + \
            _str("cpu") + _int(numel) + b"tQ"
        p += _str(name) + b"ctorch._utils\n_rebuild_tensor_v2\n(" + pid + _int(off) + \
            _tuple([_int(s) for s in size]) + _tuple([_int(s) for s in stride]) + b"\x89" + \
            b"ccollections\nOrderedDict\n)R" + b"tR"
    return p + b"u."


def write_pth(path, tensors, storages, folder="archive"):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr(f"{folder}/data.pkl", pickle_state(tensors))
        z.writestr(f"{folder}/byteorder", "little")
        for key, data in storages.items():
            z.writestr(f"{folder}/data/{key}", data)
        z.writestr(f"{folder}/version", "3\n")


def pth(shared, out):
    tiny = os.path.join(shared, "models", "tiny_random_nbase8_seed7.pth")
    if os.path.exists(tiny):
        data = open(tiny, "rb").read()
        open(f"{out}/tiny_model.pth", "wb").write(data)
        open(f"{out}/tiny_model_truncated.pth", "wb").write(data[: len(data) * 3 // 5])
    rng = np.random.default_rng(2)
    st = {
        "0": rng.random(6, dtype=np.float32).tobytes(),
        "1": rng.random(10).astype(np.float16).tobytes(),
        "2": rng.random(12).tobytes(),
        "3": np.arange(5, dtype=np.int64).tobytes(),
        "4": np.arange(4, dtype=np.int32).tobytes(),
    }
    write_pth(f"{out}/small_dtypes.pth", [
        ("a.weight", "FloatStorage", "0", 6, 0, [2, 3], [3, 1]),
        ("b.half", "HalfStorage", "1", 10, 2, [2, 4], [4, 1]),
        ("c.double_t", "DoubleStorage", "2", 12, 0, [3, 4], [1, 3]),
        ("d.long", "LongStorage", "3", 5, 1, [4], [1]),
        ("e.int_scalar", "IntStorage", "4", 4, 3, [], []),
    ], st)
    write_pth(f"{out}/one_tensor.pth", [("w", "FloatStorage", "0", 6, 0, [6], [1])],
              {"0": st["0"]}, folder="m")
    write_pth(f"{out}/shared_storage.pth", [
        ("x", "FloatStorage", "0", 6, 0, [2, 2], [2, 1]),
        ("y", "FloatStorage", "0", 6, 2, [2, 2], [1, 2]),
    ], {"0": st["0"]})


def jobfile(out):
    jobs = os.path.join(ROOT, "jobs")
    for f in sorted(os.listdir(jobs)):
        if f.endswith(".cfg"):
            open(f"{out}/{f}", "wb").write(open(os.path.join(jobs, f), "rb").read())
    samples = {
        "all_types.cfg": 'diameter = 30.0;\nniter = 200;\nflow_threshold = 0.4;\n'
                         'save_flows = true;\nresume = false;\noutput = "out.h5";\n',
        "int64.cfg": "niter = 9223372036854775807L;\nblock = 0x40;\n",
        "groups.cfg": 'a = { b = [1, 2, 3]; c = ("x", 1.5); };\n',
        "bad_key.cfg": "nitr = 10;\n",
        "include.cfg": '@include "other.cfg"\n',
        "comments.cfg": "# c\n// d\n/* e */ diameter = 1e3;\n",
    }
    for name, text in samples.items():
        open(f"{out}/{name}", "w").write(text)


def flows_h5(out):
    rng = np.random.default_rng(3)

    def save(name, dp, cp, **kw):
        with h5py.File(f"{out}/{name}", "w") as f:
            f.create_dataset("labels", data=np.zeros(cp.shape, np.uint32), **kw)
            f.create_dataset("flows", data=dp, **kw)
            f.create_dataset("cellprob", data=cp, **kw)

    save("plane_deflate.h5", rng.standard_normal((2, 20, 24), np.float32),
         rng.standard_normal((20, 24), np.float32), chunks=True, compression="gzip")
    save("stack.h5", rng.standard_normal((3, 2, 9, 10), np.float32),
         rng.standard_normal((3, 9, 10), np.float32))
    save("plane_f64.h5", rng.standard_normal((2, 7, 5)), rng.standard_normal((7, 5)))
    save("mismatch.h5", rng.standard_normal((2, 7, 5), np.float32),
         rng.standard_normal((6, 5), np.float32))
    # --do_3D --save_flows: /flows (3, Z, Y, X) beside /cellprob (Z, Y, X)
    save("volume_deflate.h5", rng.standard_normal((3, 4, 9, 10), np.float32),
         rng.standard_normal((4, 9, 10), np.float32), chunks=True, compression="gzip")
    with h5py.File(f"{out}/shuffle_chunks.h5", "w") as f:
        f.create_dataset("flows", data=rng.standard_normal((2, 40, 33), np.float32),
                         chunks=(1, 16, 16), shuffle=True, compression="gzip")
        f.create_dataset("cellprob", data=rng.standard_normal((40, 33), np.float32),
                         chunks=(16, 16), compression="gzip")


def blocks(out):
    rng = np.random.default_rng(4)
    open(f"{out}/empty", "wb").close()
    open(f"{out}/dp_floats", "wb").write(rng.standard_normal(3 * 8 * 8, np.float32).tobytes())
    open(f"{out}/lab_u32", "wb").write(rng.integers(0, 50, 8 * 8, dtype=np.uint32).tobytes())
    open(f"{out}/odd", "wb").write(b"\x07" * 13)


def dynamics(out):
    """Flows of round cells in fuzz_dynamics' layout (see its header comment)."""
    def cells(ly, lx, centres, r):
        yy, xx = np.mgrid[0:ly, 0:lx].astype(np.float32)
        dp = np.zeros((2, ly, lx), np.float32)
        cp = np.full((ly, lx), -4.0, np.float32)
        for cy, cx in centres:
            d = np.hypot(yy - cy, xx - cx)
            inside = d < r
            dp[0][inside] = ((cy - yy) / np.maximum(d, 1))[inside] * 4
            dp[1][inside] = ((cx - xx) / np.maximum(d, 1))[inside] * 4
            cp[inside] = 3.0
        return dp, cp

    def save(name, ly, lx, oly, olx, steps, flags, thr, min_size, dp, cp):
        head = bytes([ly - 1, lx - 1, oly - 1, olx - 1, steps, flags, thr & 255, min_size & 255])
        v = np.concatenate([dp.ravel(), cp.ravel()])
        body = v.astype("<f4").tobytes() if flags & 8 else \
            np.clip(np.round(v * 8), -128, 127).astype(np.int8).tobytes()
        open(f"{out}/{name}", "wb").write(head + body)

    dp, cp = cells(24, 24, [(7, 7), (15, 16)], 5)
    save("two_cells_int8", 24, 24, 24, 24, 200, 2, 0, 0, dp, cp)
    save("two_cells_interp_protrusions", 24, 24, 24, 24, 200, 1 | 2 | 4, 0, 3, dp, cp)
    save("two_cells_raw_resized", 24, 24, 40, 36, 120, 8 | 2, -8, 15, dp, cp)
    dp, cp = cells(16, 30, [(8, 5), (8, 14), (8, 23)], 4)
    save("three_cells_raw", 16, 30, 16, 30, 60, 8 | 1, 0, -1, dp, cp)


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    build, out = sys.argv[1], sys.argv[2]
    shared = sys.argv[3] if len(sys.argv) > 3 else os.environ.get(
        "CELLPOSE_MPI_SHARED", os.path.join(ROOT, "..", "shared"))
    for name, make in [("tiff", lambda d: tiff(build, d)), ("pth", lambda d: pth(shared, d)),
                       ("jobfile", jobfile), ("flows_h5", flows_h5), ("blocks", blocks),
                       ("dynamics", dynamics)]:
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        make(d)
        # the reproducers of fixed bugs are seeds too (not tests/fuzz/known/: library crashes)
        reg = os.path.join(ROOT, "tests", "fuzz", "regress", name)
        if os.path.isdir(reg):
            for f in sorted(os.listdir(reg)):
                if not f.endswith(".md"):
                    open(os.path.join(d, "regress_" + f), "wb").write(
                        open(os.path.join(reg, f), "rb").read())
        print(f"{name}: {len(os.listdir(d))} seeds in {d}")


if __name__ == "__main__":
    main()
