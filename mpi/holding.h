/* What the hole filling of masks over blocks (dpost_holes.c) and of stitched stacks over planes
 * (dfill3.c) share: label v "holds" u when a hole of v contains a pixel of u; labels linked by
 * holding form groups, each filled at one owner on a canvas. Here: the pixel records sent to an
 * owner, the edge list, and the groups of the edges of all ranks. */
#ifndef CP_HOLDING_H
#define CP_HOLDING_H

#include <mpi.h>
#include <stdint.h>

#include "exchange.h"
#include "grid.h"
#include "post.h"

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

/* ---- volumes (dfill3.c over planes, dpost3.c over 3-D blocks) ------------------------------ */

/* Per-label tables of a volume (labels 1..n): voxel count, and mn[7v..7v+6] = first raster
 * index, z0, y0, x0, -z1, -y1, -x1 of the box, so one MIN reduction gives them all. init: area
 * 0, mn INT64_MAX; free: also of tables zeroed and never initialized. */
typedef struct cp_vstats {
    int64_t n;
    int64_t *area, *mn;
} cp_vstats;

int cp_vstats_init(cp_vstats *s, int64_t n, char *err);
void cp_vstats_free(cp_vstats *s);
/* Counts voxel (z, y, x), raster index idx, of label l (1..n). */
void cp_vstats_add(cp_vstats *s, uint32_t l, int64_t idx, int64_t z, int64_t y, int64_t x);
/* Collective: the tables of all ranks combined. */
void cp_vstats_reduce(MPI_Comm comm, cp_vstats *s);
cp_box cp_vstats_box(const cp_vstats *s, uint32_t l);
int64_t cp_box_vol(cp_box b);
/* The intersection of a and b (cp_box_empty when they do not meet). */
cp_box cp_box_meet(cp_box a, cp_box b);
int cp_box_empty(cp_box b);
/* Block b of grid g as a cp_box. */
cp_box cp_grid_bounds(const cp_grid *g, int64_t b);
/* The corrected min_size rule on the tables: map (n + 1) gets the kept labels' ids by first
 * appearance (0: removed); *kept: their count. */
int cp_vstats_min_size(const cp_vstats *s, int64_t min_size, uint32_t *map, int64_t *kept,
                       char *err);

/* Collective, step (a) of the fill of a volume: the tables s of the raw labels (this rank's
 * voxels, reduced here over comm); map (s->n + 1) = each label's id after the min_size rule
 * (min_size <= 0: the identity); a (initialized here) = the tables of those ids. Agreed status. */
int cp_vstats_step_a(MPI_Comm comm, cp_vstats *s, int64_t min_size, uint32_t *map, cp_vstats *a,
                     char *err);

/* The end of the batch of boxes box[i..): boxes adding up to at most budget voxels, at least
 * one; *span: the box holding them all. */
int64_t cp_holding_batch(const cp_box *box, int64_t i, int64_t n, int64_t budget, cp_box *span);

/* A pass over boxes in batches (cp_holding_batch with budget): for each batch box[i..e) (their
 * union: span), send queues in o the records of their voxels, keyed, which are exchanged and
 * sorted by (key, v, idx); each gets the records of every key received here; after (NULL: none;
 * collective) ends the batch, given the status so far. */
typedef struct cp_pass {
    MPI_Comm comm;
    int64_t budget;
    int (*send)(void *ctx, cp_outbox *o, int64_t i, int64_t e, cp_box span);
    int (*each)(void *ctx, const cp_kpix *px, int64_t n);
    int (*after)(void *ctx, int rc);
    void *ctx;
    char *err;
} cp_pass;

/* Collective: the pass p over the n boxes box. Agreed status. */
int cp_holding_pass(const cp_pass *p, const cp_box *box, int64_t n);

/* A canvas of box b (zeroed) with the n records px (raster indices of a volume of planes ny x
 * nx) written in, and box-sized scratch for cp_post_hole_map. */
int cp_holding_canvas(cp_box b, const cp_kpix *px, int64_t n, int64_t ny, int64_t nx,
                      uint32_t **canvas, unsigned char **state, int64_t **stack, char *err);

/* The 3-D holes of label w in its box b, from the n records px of the nonzero voxels of b: the
 * edges (w, u) of the labels u in them appended to *e (*ne values, *cap allocated); *hole = 1
 * when w has a hole at all (else unchanged). */
int cp_holding_edges3(cp_box b, uint32_t w, const cp_kpix *px, int64_t n, int64_t ny, int64_t nx,
                      uint32_t **e, int64_t *ne, int64_t *cap, int *hole, char *err);

/* The groups (root[l]: the smallest label of l's group) of the labels marked in sel, numbered
 * 1..ng in the order of their first marked label: gidx[root] = its number (n + 1 entries, 0 for
 * a root of no such group), gl[g - 1] = the root of group g, gbox[g] = the box holding the boxes
 * of all its labels (gbox[0] unused). */
typedef struct cp_groups {
    int64_t ng;
    uint32_t *gidx, *gl;
    cp_box *gbox;
} cp_groups;

int cp_groups_make(cp_groups *G, const cp_vstats *a, const unsigned char *sel,
                   const uint32_t *root, char *err);
void cp_groups_free(cp_groups *G);

/* Where a group's fill changes a voxel: fn(ctx, z, y, x, new value); nonzero stops with it. */
typedef int (*cp_edit_fn)(void *ctx, int64_t z, int64_t y, int64_t x, uint32_t v);

/* Fills one group, whose voxels are the n records px (sorted by label), on a canvas of its box b
 * with cp_post_fill_and_min_size_3d (Cellpose's order and swallowing), and calls fn for every
 * voxel whose final value (jmap of the filled label) differs from jmap of its value before. */
int cp_holding_fill3(cp_box b, const cp_kpix *px, int64_t n, int64_t ny, int64_t nx,
                     const uint32_t *jmap, cp_edit_fn fn, void *ctx, char *err);

#endif
