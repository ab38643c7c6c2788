/* What the hole filling of masks over blocks (dpost_holes.c) and of stitched stacks over planes
 * (dfill3.c) share: label v "holds" u when a hole of v contains a pixel of u; labels linked by
 * holding form groups, each filled at one owner on a canvas. Here: the pixel records sent to an
 * owner, the edge list, and the groups of the edges of all ranks. */
#ifndef CP_HOLDING_H
#define CP_HOLDING_H

#include <mpi.h>
#include <stdint.h>

/* A pixel (raster index idx of the plane or volume, value v) sent for label or group `key`. */
typedef struct cp_kpix {
    int64_t idx;
    uint32_t key, v;
} cp_kpix;

/* qsort order of cp_kpix: key, then v, then idx. */
int cp_kpix_cmp(const void *a, const void *b);

/* Appends the edge (v, u) to the pair list *e (*n values, *cap allocated) unless it repeats the
 * last one (a hole holds many pixels of a label). 0, or CP_ENOMEM without a message. */
int cp_holding_push(uint32_t **e, int64_t *n, int64_t *cap, uint32_t v, uint32_t u);

/* Collective: the edges (pairs, ne values; sorted and deduplicated in place) of every rank
 * brought to all; root[l] (n + 1 entries) = the smallest label of l's group. Agreed status. */
int cp_holding_groups(MPI_Comm comm, uint32_t *e, int64_t ne, uint32_t *root, int64_t n,
                      char *err);

#endif
