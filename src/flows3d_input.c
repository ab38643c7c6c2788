/* --flows with --do_3D (see flows3d_input.h): the 3-D flows read whole, the 3-D mask phase, the
 * output written by the driver's own writer (cp_write_output). */
#include "flows3d_input.h"

#include <stdlib.h>
#include <sys/stat.h>

#include "compute_masks3d.h"
#include "cp_err.h"
#include "h5store.h"
#include "segment.h"
#include "stop.h"
#include "tiff_io.h"

/* The TIFF pair's sizes: dP (3 x Z pages: dZ, dY, dX planes, channel-major) and cellprob (Z
 * pages) of one Y, X. */
static int tiff_pair_size(const char *dpath, const char *cpath, int64_t n[3], char *err)
{
    cp_tiff *td = NULL, *tc = NULL;
    cp_tiff_info id, ic;
    int rc = cp_tiff_open(dpath, &td, &id, err);
    if (!rc) rc = cp_tiff_open(cpath, &tc, &ic, err);
    if (!rc && (id.spp != 1 || ic.spp != 1 || id.npages != 3 * ic.npages || id.ny != ic.ny ||
                id.nx != ic.nx))
        rc = cp_errf(err, CP_EFORMAT, "%s: %lld page(s) of %lldx%lld with %d sample(s) beside %lld "
                     "of %lldx%lld in %s: --do_3D reads dP as (3, Z, Y, X) pages and cellprob as "
                     "(Z, Y, X) of the same Y, X", dpath, (long long)id.npages, (long long)id.ny,
                     (long long)id.nx, id.spp, (long long)ic.npages, (long long)ic.ny,
                     (long long)ic.nx, cpath);
    if (!rc) n[0] = ic.npages, n[1] = ic.ny, n[2] = ic.nx;
    if (td) cp_tiff_close(td);
    if (tc) cp_tiff_close(tc);
    return rc;
}

int cp_flows3_size(const cp_params *p, int64_t n[3], char *err)
{
    return p->cellprob_in[0] ? tiff_pair_size(p->flows, p->cellprob_in, n, err)
                             : cp_h5_read_flows3(p->flows, n, NULL, NULL, err);
}

/* The box b of the TIFF pair of nz planes into out4 (4, b.n), page window by page window. */
static int tiff_pair_window(const char *dpath, const char *cpath, int64_t nz, cp_box3 b,
                            float *out4, char *err)
{
    cp_tiff *td = NULL, *tc = NULL;
    cp_tiff_info id, ic;
    int rc = cp_tiff_open(dpath, &td, &id, err);
    if (!rc) rc = cp_tiff_open(cpath, &tc, &ic, err);
    const int64_t plane = b.n[1] * b.n[2];
    for (int c = 0; !rc && c < 4; c++) /* dZ, dY, dX pages, then cellprob's */
        for (int64_t z = 0; !rc && z < b.n[0]; z++)
            rc = cp_tiff_read_f32(c < 3 ? td : tc, (c < 3 ? c * nz : 0) + b.o[0] + z, b.o[1],
                                  b.o[2], b.n[1], b.n[2], out4 + (c * b.n[0] + z) * plane, err);
    if (td) cp_tiff_close(td);
    if (tc) cp_tiff_close(tc);
    return rc;
}

int cp_flows3_window(const cp_params *p, const int64_t n[3], cp_box3 b, float *out4, char *err)
{
    if (p->cellprob_in[0]) return tiff_pair_window(p->flows, p->cellprob_in, n[0], b, out4, err);
    return cp_h5_read_flows3_window(p->flows, b.o, b.n, out4,
                                    out4 + 3 * cp_box3_voxels(b), err);
}

/* The whole flows: dP (3, n) then cellprob (n) in one allocation *buf (NULL on error), the layout
 * cp_compute_masks3 reads. */
static int read_flows3(const cp_params *p, int64_t n[3], float **buf, char *err)
{
    *buf = NULL;
    int rc = cp_flows3_size(p, n, err);
    if (!rc && !(*buf = malloc(sizeof(float) * (size_t)(4 * n[0] * n[1] * n[2]))))
        rc = cp_err_nomem(err, p->flows, (int64_t[]){4, n[0], n[1], n[2]}, 4, "float32", 4,
                          "for the flows");
    if (!rc) rc = cp_flows3_window(p, n, (cp_box3){{0, 0, 0}, {n[0], n[1], n[2]}}, *buf, err);
    return rc;
}

int cp_segment_flows3(const cp_params *p, const char *out_path, const char *cmdline,
                      cp_timing *tm, char *err)
{
    double t0 = cp_now();
    int64_t n[3] = {0, 0, 0};
    float *buf;
    uint32_t *labels = NULL;
    cp_h5out *h = NULL;
    int rc = read_flows3(p, n, &buf, err);
    const int64_t nvox = n[0] * n[1] * n[2];
    if (!rc && !(labels = calloc((size_t)nvox, sizeof *labels)))
        rc = cp_err_nomem(err, p->flows, n, 3, "uint32", 4, "for the labels");
    if (!rc) rc = cp_h5_create(out_path, NULL, n[0], n[1], n[2], CP_H5_VOLUME, 0, 0, &h, err);
    if (!rc && p->save_flows && !(rc = cp_h5_create_flows3(h, n, err)))
        rc = cp_h5_write_flows3(h, (int64_t[]){0, 0, 0}, n, buf, buf + 3 * nvox, err);
    cp_timing_lap(tm, CP_PH_READ, &t0);
    cp_mask_params mp = { /* Cellpose's 3-D mask phase: no flow QC, no protrusions */
        .steps = p->niter > 0 ? p->niter : 200, .interp = !p->no_interp,
        .cellprob_threshold = (float)p->cellprob_threshold,
        .max_size_fraction = p->max_size_fraction, .min_size = p->min_size,
    };
    if (!rc) rc = cp_compute_masks3(buf, buf + 3 * nvox, n, &mp, n, labels, tm, err);
    free(buf);
    t0 = cp_now();
    if (!rc && cp_stop_requested())
        rc = cp_errf(err, CP_EINTR, "%s: stopped by a signal before writing the output: nothing "
                     "was written; run again", p->flows);
    if (!rc) {
        struct stat st;
        cp_provenance pv = {.command_line = cmdline, .input_file = p->flows,
                            .input_bytes = stat(p->flows, &st) ? -1 : (int64_t)st.st_size,
                            .model_file = "", .model_sha256 = "", .rescale = 1.0,
                            .niter_used = mp.steps};
        rc = cp_write_output(p, h, labels, n[0], n[1], n[2], &pv, out_path, err);
        h = NULL;
    }
    cp_h5_abort(h);
    cp_timing_lap(tm, CP_PH_WRITE, &t0);
    free(labels);
    return rc;
}
