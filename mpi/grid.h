/* The block decomposition of a plane (DESIGN.md §4): square owner blocks of side B at the
 * dynamics scale, numbered row-major, owned by ranks in contiguous ranges. Blocks are the unit of
 * ownership, memory and checkpointing. */
#ifndef CP_GRID_H
#define CP_GRID_H

#include <stdint.h>

typedef struct cp_rect {
    int64_t y0, x0, ny, nx;
} cp_rect;

typedef struct cp_grid {
    int64_t Ly, Lx;        /* the plane */
    int64_t B;             /* block side */
    int64_t nby, nbx, nblocks;
    int nranks;
} cp_grid;

void cp_grid_init(cp_grid *g, int64_t Ly, int64_t Lx, int64_t B, int nranks);
/* The pixels of block b. */
cp_rect cp_grid_block(const cp_grid *g, int64_t b);
/* The block holding pixel (y, x) (inside the plane). */
int64_t cp_grid_block_at(const cp_grid *g, int64_t y, int64_t x);
/* Rank owning block b, and the blocks [*b0, *b1) of a rank. */
int cp_grid_owner(const cp_grid *g, int64_t b);
void cp_grid_range(const cp_grid *g, int rank, int64_t *b0, int64_t *b1);
/* r grown by h pixels on every side, clipped to the plane. */
cp_rect cp_rect_grow(const cp_grid *g, cp_rect r, int64_t h);
/* Blocks whose pixels intersect r (clipped to the plane), in increasing order; returns the
 * count (list may be NULL to count only). */
int64_t cp_grid_blocks_touching(const cp_grid *g, cp_rect r, int64_t *list);

#endif
