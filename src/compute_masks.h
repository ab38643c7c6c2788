/* The mask phase of one plane (CELLPOSE_ALGORITHM.md §4.3-4.8): flow following from every
 * foreground pixel, seeds and raw masks, flow-error QC, nearest resize to the image size when the
 * dynamics ran at the network scale, hole filling and min_size. */
#ifndef CP_COMPUTE_MASKS_H
#define CP_COMPUTE_MASKS_H

#include <stdint.h>

#include "timing.h"

typedef struct cp_mask_params {
    int64_t steps;              /* dynamics iterations (cp_niter_steps) */
    int interp;
    float cellprob_threshold;   /* compared in float32 */
    double flow_threshold;      /* 0: no QC */
    double max_size_fraction;
    int64_t min_size;           /* <= 0: holes only (stitched stacks pass -1) */
    int protrusions;            /* 1: cp_protrusions_attach on the final labels (not Cellpose) */
    int64_t protrusion_max_len; /* its max_len */
} cp_mask_params;

/* dP (2, Ldy, Ldx) and cellprob (Ldy, Ldx) at the dynamics scale -> labels (Ly, Lx) uint32.
 * If (Ldy, Ldx) != (Ly, Lx) the masks are resized with INTER_NEAREST before hole filling.
 * With mp->protrusions the final labels then get protrusion recovery (protrusions.h), dP and
 * cellprob resized likewise with INTER_NEAREST when the scales differ.
 * timing (optional) gets the follow / masks / post phases. */
int cp_compute_masks(const float *dP, const float *cellprob, int64_t Ldy, int64_t Ldx,
                     const cp_mask_params *mp, int64_t Ly, int64_t Lx, uint32_t *labels,
                     cp_timing *timing, char *err);

#endif
