/* Renumbering by first appearance (Cellpose's ids, DESIGN.md §2.7), written once for the
 * whole-plane phases (masks.c, post.c) and the distributed ones (mpi/dmasks.c, mpi/dpost*.c):
 * the kept labels get ids 1..N in increasing order of the raster index of their first pixel.
 * Where the first indices come from (a pass over a plane, or a reduction over ranks) is the
 * caller's business; the rule is cp_renumber_ids. */
#ifndef CP_RENUMBER_H
#define CP_RENUMBER_H

#include <stdint.h>

/* Labels 0..n. On entry to[v] != 0 marks label v as kept if it is present (first[v * stride],
 * the raster index of its first pixel, < INT64_MAX; labels never have the same first pixel). On
 * return to[v] = its new id for a kept label (1 + the number of kept labels that appear before
 * it), 0 for the others and for v = 0. Returns the number kept, or CP_ENOMEM (negative; to
 * unchanged) if the sort array cannot be allocated. */
int64_t cp_renumber_ids(const int64_t *first, int64_t stride, int64_t n, uint32_t *to);

/* cp_renumber_ids over the labels of an array: labels[0..n) with values 0..m (m: the largest),
 * to (m+1 entries) marks the kept labels on entry; every pixel gets the new id of its label (0
 * for a label not kept). Returns the number kept, or CP_ENOMEM (labels unchanged). */
int64_t cp_renumber_array(uint32_t *labels, int64_t n, uint32_t m, uint32_t *to);

/* Renumbers labels (n values) in order of first appearance, in place, keeping every label;
 * returns the new maximum, or CP_ENOMEM (negative, labels unchanged) if the tables of
 * max_label+1 entries cannot be had. */
int64_t cp_renumber(uint32_t *labels, int64_t n);

#endif
