/* From 3-D end points to raw masks (CELLPOSE_ALGORITHM.md §8.8): get_masks one axis up. Histogram
 * of the end points on the grid padded by CP_RPAD on every side, seeds (5x5x5 local maxima with
 * count > 10, C order), Cellpose's unstable seed order (cp_seed_argsort, as in 2-D), growth in
 * 11x11x11 windows (5 dilations, 26-neighbourhood, count > 2), assignment, big-mask removal and
 * renumbering (cp_masks_finish, as in 2-D). */
#ifndef CP_MASKS3D_H
#define CP_MASKS3D_H

#include <stdint.h>

#include "follow3d.h"
#include "masks.h"

/* The pieces of cp_masks3_raw, for drivers that split the volume. The histogram h and the label
 * map M are (Lz+40) x (Ly+40) x (Lx+40) int32/uint32 arrays in C order; p are particles whose c
 * holds voxel end points (cp_follow3_to_voxels). cp_seed.idx indexes that grid. */

/* Adds every end point to h (zeroed by the caller): h[trunc(p_z)+20][trunc(p_y)+20][trunc(p_x)+20]
 * += 1. Errors (CP_EDATA): an end point outside [0, L-1] per axis or NaN, a src outside the
 * volume. */
int cp_masks3_histogram(const cp_particle3 *p, int64_t n, const int64_t L[3], int32_t *h,
                        char *err);

/* Seeds of h (cp_masks_grid_seeds on the padded grid): cells with count > 10 equal to the maximum
 * of their 5x5x5 box (clipped at the grid border), in C order; *seeds malloc'ed, NULL if none. */
int cp_masks3_seeds(const int32_t *h, const int64_t L[3], cp_seed **seeds, int64_t *nseeds,
                    char *err);

/* Grows seed s in h (11x11x11 window, 5 times: 3x3x3 dilation clipped to the window, then only
 * cells with count > 2) and writes `label` into M over the grown region. Calling it in
 * Cellpose's seed order with labels 1..K gives M. */
void cp_masks3_grow(const int32_t *h, const int64_t L[3], cp_seed s, uint32_t label, uint32_t *M);

/* Labels of a whole volume from M: labels[src] = M at the particle's end point (0 elsewhere),
 * then cp_masks_finish over the Lz*Ly*Lx voxels. nlabels: the largest value in M. */
int cp_masks3_assign(const cp_particle3 *p, int64_t n, const int64_t L[3], const uint32_t *M,
                     uint32_t nlabels, double max_size_fraction, uint32_t *labels, char *err);

/* Whole-volume raw masks: particles (voxel end points, any order) of a volume L -> labels
 * (Lz, Ly, Lx) uint32, 0 where no particle started, renumbered by first appearance after the
 * removal of masks larger than max_size_fraction * Lz*Ly*Lx. *nseeds gets the seed count. */
int cp_masks3_raw(const cp_particle3 *p, int64_t n, const int64_t L[3], double max_size_fraction,
                  uint32_t *labels, int64_t *nseeds, char *err);

#endif
