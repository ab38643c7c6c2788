/* What the driver (mpi/dsegment.c; see segment.h) has below it in src/: a volume in 3-D
 * (--do_3D) on one process, its output, and the paths and messages every driver shares. */
#include "segment.h"

#include <libgen.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cells.h"
#include "compute_masks.h"
#include "compute_masks3d.h"
#include "cp_err.h"
#include "h5store.h"
#include "image.h"
#include "net3d.h"
#include "prep.h"
#include "progress.h"
#include "run_net.h"
#include "stop.h"
#include "tiff_io.h"

void cp_default_output(const char *input, char *out, size_t len)
{
    const char *slash = strrchr(input, '/');
    const char *dot = strrchr(input, '.');
    size_t stem = (dot && (!slash || dot > slash)) ? (size_t)(dot - input) : strlen(input);
    snprintf(out, len, "%.*s_seg.h5", (int)stem, input);
}

void cp_sibling_path(const char *out_path, const char *input, const char *suffix, char *buf,
                     size_t len)
{
    char o[CP_PATH_LEN], in[CP_PATH_LEN];
    snprintf(o, sizeof o, "%s", out_path);
    snprintf(in, sizeof in, "%s", input);
    const char *base = basename(in);
    const char *dot = strrchr(base, '.');
    int stem = dot ? (int)(dot - base) : (int)strlen(base);
    snprintf(buf, len, "%s/%.*s%s", dirname(o), stem, base, suffix);
}

void cp_masks_tif_path(const char *out_path, const char *input, char *buf, size_t len)
{
    cp_sibling_path(out_path, input, "_cp_masks.tif", buf, len);
}

static int64_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) ? -1 : (int64_t)st.st_size;
}

void cp_say(int quiet, const char *fmt, ...)
{
    if (quiet) return;
    cp_progress_break();
    va_list ap;
    va_start(ap, fmt);
    fputs("cellpose-mpi: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* Planes [z0, z0+nz) of im whole into x2 (nz, ny, nx, 2). */
static int read_planes(cp_image *im, int64_t z0, int64_t nz, float *x2, char *err)
{
    int64_t npix = im->layout.ny * im->layout.nx;
    int rc = 0;
    for (int64_t z = 0; !rc && z < nz; z++)
        rc = cp_image_read(im, z0 + z, 0, 0, im->layout.ny, im->layout.nx, x2 + z * npix * 2, err);
    return rc;
}

/* The mask parameters of a volume (the niter rule, thresholds, big masks; no flow QC, no
 * protrusions in 3-D). */
static cp_mask_params mask_params(const cp_params *p, double rescale)
{
    return (cp_mask_params){
        .steps = cp_niter_steps(p->niter, rescale, !p->no_resample),
        .interp = !p->no_interp,
        .cellprob_threshold = (float)p->cellprob_threshold,
        .max_size_fraction = p->max_size_fraction,
        .min_size = p->min_size,
    };
}

/* The normalization constants of both channels of the volume x2 (nz, ny, nx, 2). */
static int norm_planes(const float *x2, int64_t nz, int64_t ny, int64_t nx, const cp_params *p,
                       cp_norm norm[2], char *err)
{
    int rc = 0;
    for (int c = 0; !rc && c < 2; c++)
        rc = cp_norm_compute_stack(x2, nz, ny, nx, c, p->norm_percentile_lo,
                                   p->norm_percentile_hi, &norm[c], err);
    return rc;
}

/* Labels, cells and attributes into the open output, then commit (the --save_tif masks are
 * written from the committed file by the driver: masks_tif.h). */
int cp_write_output(const cp_params *p, cp_h5out *h, const uint32_t *labels, int64_t nz,
                    int64_t ny, int64_t nx, cp_provenance *pv, const char *out_path, char *err)
{
    cp_cell *cells = NULL;
    int64_t ncells = 0;
    /* one write: plane by plane would rewrite each 3-D chunk once per plane */
    int rc = cp_h5_write_labels3(h, (int64_t[]){0, 0, 0}, (int64_t[]){nz, ny, nx}, labels, err);
    if (!rc) rc = cp_cells_collect3(labels, nz, ny, nx, &cells, &ncells, err);
    pv->n_masks = ncells;
    if (!rc) rc = cp_h5_write_cells(h, cells, ncells, 1, err);
    free(cells);
    if (!rc) rc = cp_h5_write_attrs(h, p, pv, err);
    if (rc) {
        cp_h5_abort(h);
        return rc;
    }
    if ((rc = cp_h5_commit(h, err))) return rc;
    cp_say(p->quiet, "wrote %s (%lld masks)", out_path, (long long)ncells);
    return rc;
}

/* The message of a run stopped by SIGTERM/SIGUSR1 (err holds where it stopped): this path keeps
 * nothing, so the user must know that the rerun starts over and how to get a checkpoint. */
static void stopped_message(const char *input, char *err)
{
    char where[CP_ERR_LEN];
    snprintf(where, sizeof where, "%s", err);
    cp_errf(err, CP_EINTR, "%s: stopped by a signal %s: nothing was written (a --do_3D run keeps "
            "no checkpoint); run again", input, where);
}

int cp_volume_grids(const cp_params *p, const int64_t L[3], double rescale, int64_t Ld[3],
                    int64_t Lm[3], char *err)
{
    int rc = cp_net3d_scale(L, rescale, p->anisotropy, Ld, err);
    if (rc) return rc;
    if (!p->no_resample) memcpy(Ld, L, 3 * sizeof *Ld);
    cp_masks3_out_shape(Ld, L, Lm);
    return 0;
}

/* --do_3D (§8): the volume read whole, normalized over all its voxels (§8.3), the three network
 * passes summed (cp_run_net3d), the 3-D mask phase (cp_compute_masks3) -> labels at the grid of
 * cp_volume_grids; with --save_flows the flows of the dynamics into h. */
static int segment_volume(const cp_params *p, const cp_model *m, cp_image *im, double rescale,
                          cp_h5out *h, uint32_t *labels, cp_timing *tm, char *err)
{
    const cp_layout *L = &im->layout;
    const int64_t Lv[3] = {L->nz, L->ny, L->nx}, nvox = L->nz * L->ny * L->nx;
    double t0 = cp_now();
    float *x = malloc(sizeof(float) * (size_t)(nvox * 2));
    if (!x)
        return cp_err_nomem(err, im->path, (int64_t[]){L->nz, L->ny, L->nx, 2}, 4, "float32", 4,
                            "for the volume");
    int rc = read_planes(im, 0, L->nz, x, err);
    cp_timing_lap(tm, CP_PH_READ, &t0);
    cp_norm norm[2];
    if (!rc && !p->no_norm && !(rc = norm_planes(x, L->nz, L->ny, L->nx, p, norm, err))) {
        cp_norm_apply(x, nvox, norm, 0);
        cp_norm_invert(x, nvox, (int[]){p->invert && norm[0].good, p->invert && norm[1].good});
    }
    cp_timing_lap(tm, CP_PH_PREP, &t0);
    cp_net3d_params np = {
        .rescale = rescale, .anisotropy = p->anisotropy, .resample = !p->no_resample,
        .tile_overlap = p->tile_overlap, .augment = p->augment, .batch_size = p->batch_size,
        .smooth = p->flow3D_smooth,
    };
    cp_net3d_out no = {0};
    if (!rc) rc = cp_run_net3d(m, x, Lv, &np, &no, err);
    free(x);
    cp_timing_lap(tm, CP_PH_NET, &t0);
    if (!rc && cp_stop_requested()) rc = cp_errf(err, CP_EINTR, "after the network phase");
    cp_mask_params mp = mask_params(p, rescale); /* 3-D: no flow QC, no protrusions */
    const int64_t Ld[3] = {no.nz, no.ny, no.nx};
    if (!rc) rc = cp_compute_masks3(no.dP, no.cellprob, Ld, &mp, Lv, labels, tm, err);
    t0 = cp_now();
    if (!rc && p->save_flows)
        rc = cp_h5_write_flows3(h, (int64_t[]){0, 0, 0}, Ld, no.dP, no.cellprob, err);
    cp_timing_lap(tm, CP_PH_WRITE, &t0);
    cp_net3d_out_free(&no);
    return rc;
}

int cp_volume_check(const char *image, const cp_layout *L, char *err)
{
    if (L->nz >= 2) return 0;
    return cp_errf(err, CP_EPARAM, "%s: --do_3D needs a volume of at least 2 planes, the image "
                   "has %lld (give --z_axis?)", image, (long long)L->nz);
}

int cp_segment_volume(const cp_params *p, const cp_model *m, const char *model_path,
                      const char *image, const char *out_path, const char *cmdline, cp_timing *tm,
                      char *err)
{
    const cp_model_info *mi = cp_model_get_info(m);
    double t0 = cp_now();
    cp_image im;
    int rc = cp_image_open(&im, image, (int)p->z_axis, (int)p->channel_axis, 1, (int)p->chan,
                           (int)p->chan2, err);
    if (rc) return rc;
    const cp_layout L = im.layout;
    if (mi->nchan != 2)
        rc = cp_errf(err, CP_EPARAM, "%s: the model has %d input channels; cellpose-mpi feeds "
                     "the 2 channels of --chan/--chan2", model_path, mi->nchan);
    else
        rc = cp_volume_check(image, &L, err);
    double rescale = cp_rescale(p->diameter, mi->diam_mean, mi->diam_labels);
    /* the labels' grid Lm, and the flows' Lf (the dynamics scale) */
    const int64_t Lv[3] = {L.nz, L.ny, L.nx};
    int64_t Lm[3], Lf[3];
    if (!rc) rc = cp_volume_grids(p, Lv, rescale, Lf, Lm, err);
    if (rc) {
        cp_image_close(&im);
        return rc;
    }
    cp_say(p->quiet, "%s: %lld plane(s) of %lldx%lld, %d channel(s), in 3-D; rescale %.6g, "
           "%lld steps", image, (long long)L.nz, (long long)L.ny, (long long)L.nx, L.nc, rescale,
           (long long)cp_niter_steps(p->niter, rescale, !p->no_resample));
    cp_h5out *h = NULL;
    uint32_t *labels = calloc((size_t)(Lm[0] * Lm[1] * Lm[2]), sizeof *labels);
    if (!labels)
        rc = cp_err_nomem(err, image, Lm, 3, "uint32", 4, "for the labels");
    if (!rc) rc = cp_h5_create(out_path, NULL, Lm[0], Lm[1], Lm[2], CP_H5_VOLUME, 0, 0, &h, err);
    if (!rc && p->save_flows) rc = cp_h5_create_flows3(h, Lf, err);
    cp_timing_lap(tm, CP_PH_READ, &t0);
    if (!rc) rc = segment_volume(p, m, &im, rescale, h, labels, tm, err);
    cp_image_close(&im);
    if (!rc && cp_stop_requested()) rc = cp_errf(err, CP_EINTR, "before writing the output");
    if (rc) {
        cp_h5_abort(h);
        free(labels);
        if (rc == CP_EINTR) stopped_message(image, err);
        return rc;
    }
    t0 = cp_now();
    cp_provenance pv = {
        .command_line = cmdline, .input_file = image, .input_bytes = file_size(image),
        .model_file = model_path, .model_sha256 = mi->sha256, .rescale = rescale,
        .niter_used = cp_niter_steps(p->niter, rescale, !p->no_resample),
    };
    rc = cp_write_output(p, h, labels, Lm[0], Lm[1], Lm[2], &pv, out_path, err);
    cp_timing_lap(tm, CP_PH_WRITE, &t0);
    free(labels);
    return rc;
}
