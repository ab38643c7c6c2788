/* The mask phase of a volume (see compute_masks3d.h). */
#include "compute_masks3d.h"

#include <stdlib.h>

#include "cp_err.h"
#include "follow3d.h"
#include "masks3d.h"
#include "post.h"
#include "resize.h"

void cp_masks3_out_shape(const int64_t Ld[3], const int64_t L[3], int64_t out[3])
{
    const int resized = Ld[0] != L[0] || Ld[1] != L[1];
    for (int k = 0; k < 3; k++) out[k] = resized ? L[k] : Ld[k];
}

void cp_masks3_resize_back(const uint32_t *src, const int64_t Ld[3], const int64_t L[3],
                           uint32_t *dst)
{
    int64_t out[3];
    cp_masks3_out_shape(Ld, L, out);
    /* per axis the source index of the composed resizes (cp_nearest_source(i, n, n) == i) */
#pragma omp parallel for schedule(static)
    for (int64_t z = 0; z < out[0]; z++) {
        const int64_t sz = cp_nearest_source(z, Ld[0], out[0]);
        for (int64_t y = 0; y < out[1]; y++) {
            const uint32_t *row = src + (sz * Ld[1] + cp_nearest_source(y, Ld[1], out[1])) * Ld[2];
            uint32_t *o = dst + (z * out[1] + y) * out[2];
            for (int64_t x = 0; x < out[2]; x++) o[x] = row[cp_nearest_source(x, Ld[2], out[2])];
        }
    }
}

/* Flow following and raw masks at the dynamics scale Ld into raw. */
static int raw_masks(const float *dP, const float *cellprob, const int64_t Ld[3],
                     const cp_mask_params *mp, uint32_t *raw, cp_timing *tm, double *t0, char *err)
{
    const int64_t nvox = Ld[0] * Ld[1] * Ld[2];
    const float thr = mp->cellprob_threshold;
    const int64_t n = cp_follow3_particles(cellprob, Ld, thr, mp->interp, NULL);
    cp_particle3 *p = malloc(sizeof *p * (size_t)(n ? n : 1));
    float *f = malloc(sizeof *f * (size_t)(3 * nvox));
    if (!p || !f) {
        free(p);
        free(f);
        return cp_err_nomem(err, "dynamics 3-D", Ld, 3, "float32 x 3", 12, "for the flow field");
    }
    cp_follow3_particles(cellprob, Ld, thr, mp->interp, p);
    cp_follow3_field(dP, cellprob, nvox, Ld, thr, mp->interp, f);
    const cp_field3 F = {.L = {Ld[0], Ld[1], Ld[2]}, .n = {Ld[0], Ld[1], Ld[2]},
                         .interp = mp->interp, .f = f};
    const int64_t stopped = cp_follow3_run(&F, p, n, (int32_t)mp->steps);
    free(f);
    if (tm) cp_timing_lap(tm, CP_PH_FOLLOW, t0);
    int rc = stopped ? cp_errf(err, CP_EDATA, "dynamics 3-D: %lld particles met NaN flows",
                               (long long)stopped)
                     : 0;
    int64_t nseeds;
    cp_follow3_to_voxels(p, n, Ld, mp->interp);
    if (!rc) rc = cp_masks3_raw(p, n, Ld, mp->max_size_fraction, raw, &nseeds, err);
    free(p);
    if (tm) cp_timing_lap(tm, CP_PH_MASKS, t0);
    return rc;
}

int cp_compute_masks3(const float *dP, const float *cellprob, const int64_t Ld[3],
                      const cp_mask_params *mp, const int64_t L[3], uint32_t *labels,
                      cp_timing *timing, char *err)
{
    int rc = cp_follow3_check(Ld, mp->interp, err);
    if (rc) return rc;
    if (mp->protrusions)
        return cp_errf(err, CP_EPARAM, "dynamics 3-D: protrusion recovery is 2-D only");
    if (mp->steps < 0 || mp->steps > INT32_MAX)
        return cp_errf(err, CP_EPARAM, "dynamics 3-D: %lld iterations out of range",
                       (long long)mp->steps);
    double t0 = cp_now();
    int64_t out[3];
    cp_masks3_out_shape(Ld, L, out);
    const int resized = out[0] != Ld[0] || out[1] != Ld[1] || out[2] != Ld[2];
    uint32_t *raw = resized ? malloc(sizeof *raw * (size_t)(Ld[0] * Ld[1] * Ld[2])) : labels;
    rc = raw ? raw_masks(dP, cellprob, Ld, mp, raw, timing, &t0, err)
             : cp_err_nomem(err, "dynamics 3-D", Ld, 3, "uint32", 4, "for the raw masks");
    if (!rc && resized) cp_masks3_resize_back(raw, Ld, L, labels);
    if (resized) free(raw);
    if (!rc) rc = cp_post_fill_and_min_size_3d(labels, out[0], out[1], out[2], mp->min_size, err);
    if (timing) cp_timing_lap(timing, CP_PH_POST, &t0);
    return rc;
}
