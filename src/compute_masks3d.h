/* The mask phase of a volume (CELLPOSE_ALGORITHM.md §8.7-8.9): 3-D flow following from every
 * voxel with cellprob > threshold, raw masks (no flow-error QC in 3-D), Cellpose's nearest resize
 * back when the dynamics ran at the network scale, then hole filling (6-connected, the volume rule
 * also for one plane: cp_post_fill_and_min_size_3d) and min_size. */
#ifndef CP_COMPUTE_MASKS3D_H
#define CP_COMPUTE_MASKS3D_H

#include <stdint.h>

#include "compute_masks.h"
#include "timing.h"

/* Shape of the masks Cellpose returns for dynamics at Ld = (Z', Y', X') and a volume L: L when
 * Z' != Lz or Y' != Ly (then resized), else Ld, so that a difference in X alone stays
 * (resize_and_compute_masks never resizes X alone). */
void cp_masks3_out_shape(const int64_t Ld[3], const int64_t L[3], int64_t out[3]);

/* INTER_NEAREST resize of labels src (Ld) to dst (out = cp_masks3_out_shape(Ld, L)) as Cellpose
 * does it: every Z' plane (Y', X') -> (Ly, Lx) if Y' != Ly, then every Y plane (Z', X) -> (Lz, Lx)
 * if Z' != Lz; each axis by cp_nearest_source (resize.h), so it is one gather. */
void cp_masks3_resize_back(const uint32_t *src, const int64_t Ld[3], const int64_t L[3],
                           uint32_t *dst);

/* dP (3, Z', Y', X') channel-first (dZ, dY, dX) and cellprob (Z', Y', X') at the dynamics scale
 * Ld -> labels at cp_masks3_out_shape(Ld, L) (the caller allocates that many uint32). Uses
 * mp->steps, interp, cellprob_threshold, max_size_fraction and min_size; flow_threshold is
 * ignored (Cellpose has no QC in 3-D); protrusions are not available in 3-D (CP_EPARAM).
 * Errors: CP_EPARAM (an axis below 2 with interp, see cp_follow3_check), CP_ENOMEM, CP_EDATA
 * (NaN flows: a particle cannot be followed). timing (optional) gets the follow / masks / post
 * phases. */
int cp_compute_masks3(const float *dP, const float *cellprob, const int64_t Ld[3],
                      const cp_mask_params *mp, const int64_t L[3], uint32_t *labels,
                      cp_timing *timing, char *err);

#endif
