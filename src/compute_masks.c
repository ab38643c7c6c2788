/* The mask phase of one plane (see compute_masks.h). */
#include "compute_masks.h"

#include <stdlib.h>
#include <string.h>

#include "cp_err.h"
#include "follow.h"
#include "masks.h"
#include "post.h"
#include "progress.h"
#include "protrusions.h"
#include "resize.h"

/* One particle per pixel with cellprob > threshold, in row-major order. Returns the count, or -1
 * when out of memory. */
static int64_t make_particles(const float *cellprob, int64_t npix, float thr, cp_particle **out)
{
    int64_t n = 0;
    for (int64_t i = 0; i < npix; i++) n += cellprob[i] > thr;
    cp_particle *p = malloc(sizeof *p * (size_t)(n ? n : 1));
    if (!p) return -1;
    *out = p;
    return n;
}

static void place_particles(const float *cellprob, int64_t Ldy, int64_t Ldx, float thr,
                            cp_particle *p)
{
    int64_t k = 0;
    for (int64_t y = 0; y < Ldy; y++)
        for (int64_t x = 0; x < Ldx; x++)
            if (cellprob[y * Ldx + x] > thr)
                p[k++] = (cp_particle){.src = y * Ldx + x, .py = (float)y, .px = (float)x};
}

/* Flow following and raw masks at the dynamics scale into raw (Ldy, Ldx). */
static int raw_masks(const float *dP, const float *cellprob, int64_t Ldy, int64_t Ldx,
                     const cp_mask_params *mp, uint32_t *raw, cp_timing *tm, double *t0,
                     char *err)
{
    int64_t npix = Ldy * Ldx;
    cp_particle *p = NULL;
    int64_t n = make_particles(cellprob, npix, mp->cellprob_threshold, &p);
    float *f = malloc(sizeof(float) * (size_t)(2 * npix));
    if (n < 0 || !f) {
        free(p);
        free(f);
        return cp_errf(err, CP_ENOMEM, "dynamics: out of memory (%lld pixels)", (long long)npix);
    }
    place_particles(cellprob, Ldy, Ldx, mp->cellprob_threshold, p);
    cp_follow_field(dP, cellprob, npix, mp->cellprob_threshold, f);
    cp_field F = {.Ly = Ldy, .Lx = Ldx, .y0 = 0, .x0 = 0, .ny = Ldy, .nx = Ldx, .f = f};
    cp_progress pr;
    cp_progress_begin(&pr, "flow following", "particles", n);
    cp_follow_run_progress(&F, p, n, (int32_t)mp->steps, mp->interp, &pr);
    cp_progress_end(&pr);
    free(f);
    if (tm) cp_timing_lap(tm, CP_PH_FOLLOW, t0);
    int64_t nseeds;
    int rc = cp_masks_raw(p, n, Ldy, Ldx, mp->max_size_fraction, raw, &nseeds, err);
    free(p);
    if (tm) cp_timing_lap(tm, CP_PH_MASKS, t0);
    return rc;
}

/* Protrusion recovery on the final labels (Ly, Lx) given the masks before QC pre (Ldy, Ldx);
 * pre, dP and cellprob are resized with INTER_NEAREST (bit copies through the label resize) when
 * the scales differ. */
static int protrusions(const float *dP, const float *cellprob, uint32_t *pre, int64_t Ldy,
                       int64_t Ldx, const cp_mask_params *mp, int64_t Ly, int64_t Lx,
                       uint32_t *labels, char *err)
{
    if (Ldy == Ly && Ldx == Lx)
        return cp_protrusions_attach(labels, pre, dP, cellprob, Ly, Lx, mp->cellprob_threshold,
                                     mp->protrusion_max_len, err);
    int64_t ns = Ldy * Ldx, nd = Ly * Lx;
    uint32_t *src = malloc(sizeof *src * (size_t)ns), *dst = malloc(sizeof *dst * (size_t)nd);
    uint32_t *rawd = malloc(sizeof *rawd * (size_t)nd);
    float *f = malloc(sizeof *f * (size_t)(3 * nd));
    int rc = 0;
    if (!src || !dst || !rawd || !f) rc = cp_errf(err, CP_ENOMEM, "masks: out of memory");
    for (int c = 0; !rc && c < 3; c++) {
        memcpy(src, c < 2 ? dP + c * ns : cellprob, sizeof *src * (size_t)ns);
        cp_resize_nearest_u32(src, Ldy, Ldx, dst, Ly, Lx);
        memcpy(f + c * nd, dst, sizeof *dst * (size_t)nd);
    }
    if (!rc) {
        cp_resize_nearest_u32(pre, Ldy, Ldx, rawd, Ly, Lx);
        rc = cp_protrusions_attach(labels, rawd, f, f + 2 * nd, Ly, Lx, mp->cellprob_threshold,
                                   mp->protrusion_max_len, err);
    }
    free(src);
    free(dst);
    free(rawd);
    free(f);
    return rc;
}

int cp_compute_masks(const float *dP, const float *cellprob, int64_t Ldy, int64_t Ldx,
                     const cp_mask_params *mp, int64_t Ly, int64_t Lx, uint32_t *labels,
                     cp_timing *timing, char *err)
{
    double t0 = cp_now();
    int64_t nd = Ldy * Ldx;
    int resized = Ldy != Ly || Ldx != Lx;
    uint32_t *raw = resized ? malloc(sizeof(uint32_t) * (size_t)nd) : labels;
    uint32_t *pre = mp->protrusions ? malloc(sizeof(uint32_t) * (size_t)nd) : NULL;
    int rc = !raw || (mp->protrusions && !pre) ? cp_errf(err, CP_ENOMEM, "masks: out of memory")
                                               : raw_masks(dP, cellprob, Ldy, Ldx, mp, raw,
                                                           timing, &t0, err);
    int any = 0;
    for (int64_t i = 0; !rc && !any && i < nd; i++) any = raw[i] != 0;
    if (!rc && pre) memcpy(pre, raw, sizeof *pre * (size_t)nd);
    if (!rc && any && mp->flow_threshold > 0)
        rc = cp_post_flow_qc(raw, Ldy, Ldx, dP, mp->flow_threshold, NULL, err);
    if (!rc && resized) cp_resize_nearest_u32(raw, Ldy, Ldx, labels, Ly, Lx);
    if (resized) free(raw);
    if (!rc) rc = cp_post_fill_and_min_size(labels, 1, Ly, Lx, mp->min_size, err);
    if (!rc && pre)
        rc = protrusions(dP, cellprob, pre, Ldy, Ldx, mp, Ly, Lx, labels, err);
    free(pre);
    if (timing) cp_timing_lap(timing, CP_PH_POST, &t0);
    return rc;
}
