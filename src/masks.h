/* From end points to raw masks (CELLPOSE_ALGORITHM.md §4.4-4.6): histogram of end points on the
 * padded grid, seeds (5x5 local maxima with count > 10), Cellpose's seed order (libstdc++
 * introsort emulation, spec/seed_argsort_emulation.py), growth in 11x11 windows, assignment of
 * every particle, big-mask removal and renumbering. */
#ifndef CP_MASKS_H
#define CP_MASKS_H

#include <stdint.h>

#include "follow.h"

#define CP_RPAD 20

/* Seeds of a histogram: position in the padded grid and count. */
typedef struct cp_seed {
    int64_t idx;       /* raster index in the (Ly+40) x (Lx+40) histogram */
    int32_t count;
} cp_seed;

/* Indices 0..n-1 ordering counts ascending exactly as torch.argsort (unstable, libstdc++
 * std::sort) does on Cellpose's reference platform. */
void cp_seed_argsort(const int32_t *counts, int64_t n, int64_t *order);

/* The pieces of cp_masks_raw, for drivers that split the plane (DESIGN.md §2.5). The histogram
 * h and the seed-label map M are (Ly+40) x (Lx+40) int32/uint32 arrays, row-major. */

/* Adds every end point to h (zeroed by the caller): h[trunc(py)+20][trunc(px)+20] += 1.
 * Errors (CP_EDATA): a position outside [0, Ly-1] x [0, Lx-1] or NaN, a src outside the plane. */
int cp_masks_histogram(const cp_particle *p, int64_t n, int64_t Ly, int64_t Lx, int32_t *h,
                       char *err);

/* Seeds of h: cells with count > 10 equal to the maximum of their 5x5 window, in row-major order.
 * *seeds is malloc'ed (NULL when there are none; the caller frees). */
int cp_masks_seeds(const int32_t *h, int64_t Ly, int64_t Lx, cp_seed **seeds, int64_t *nseeds,
                   char *err);

/* The seeds of a histogram grid G = (depth, rows, columns) in C order: cells with count > 10
 * equal to the maximum of their 5x5x5 box clipped at the grid border (depth 1: the 5x5 window of
 * 2-D), listed in C order. *seeds is malloc'ed as for cp_masks_seeds. Shared with masks3d.h. */
int cp_masks_grid_seeds(const int32_t *h, const int64_t G[3], cp_seed **seeds, int64_t *nseeds,
                        char *err);

/* Grows seed s in h (11x11 window, 5 dilations through cells with count > 2) and writes `label`
 * into M over the grown region. Calling it in Cellpose's seed order with labels 1..K gives M. */
void cp_masks_grow(const int32_t *h, int64_t Lx, cp_seed s, uint32_t label, uint32_t *M);

/* Labels of a whole plane from M: labels[src] = M at the particle's end point (0 elsewhere; the
 * particles as checked by cp_masks_histogram); then
 * labels with more than Ly*Lx*max_size_fraction pixels (f64) are set to 0 and the rest renumbered
 * 1..N by first appearance in row-major order. nlabels: the largest value in M (labels are
 * 1..nlabels). */
int cp_masks_assign(const cp_particle *p, int64_t n, int64_t Ly, int64_t Lx, const uint32_t *M,
                    uint32_t nlabels, double max_size_fraction, uint32_t *labels, char *err);

/* The end of get_masks on labels (npix values, every label value in 1..nlabels): labels that
 * are too big (cp_masks_too_big) are set to 0 and the rest renumbered 1..N by first appearance
 * in raster order. Shared by 2-D (cp_masks_assign) and 3-D (masks3d.h). */
int cp_masks_finish(uint32_t *labels, int64_t npix, uint32_t nlabels, double max_size_fraction,
                    char *err);
/* The big-mask rule: a mask of count pixels (or voxels) out of npix is removed when
 * count > npix * max_size_fraction (strict, in f64). */
int cp_masks_too_big(int64_t count, int64_t npix, double max_size_fraction);

/* Whole-plane raw masks: particles (final positions, any order) of a Ly x Lx plane -> labels
 * (Ly, Lx) uint32: 0 where no particle started; renumbered by first appearance after the
 * removal of masks larger than max_size_fraction * Ly * Lx. *nseeds gets the seed count. */
int cp_masks_raw(const cp_particle *p, int64_t n, int64_t Ly, int64_t Lx,
                 double max_size_fraction, uint32_t *labels, int64_t *nseeds, char *err);

#endif
