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

/* Whole-plane raw masks: particles (final positions, any order) of a Ly x Lx plane -> labels
 * (Ly, Lx) uint32: 0 where no particle started; renumbered by first appearance after the
 * removal of masks larger than max_size_fraction * Ly * Lx. *nseeds gets the seed count. */
int cp_masks_raw(const cp_particle *p, int64_t n, int64_t Ly, int64_t Lx,
                 double max_size_fraction, uint32_t *labels, int64_t *nseeds, char *err);

#endif
