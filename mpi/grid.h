/* The block decomposition of a plane or a volume (DESIGN.md §4): owner blocks of side B in every
 * axis at the dynamics scale, numbered in C order (z, y, x), owned by ranks in contiguous ranges
 * of about equal voxel counts (the blocks at the far edges are smaller), so that ranks finish
 * together.
 * Blocks are the unit of ownership, memory and checkpointing. A plane is the volume with Lz = 1
 * (one block in Z): the 2-D functions (cp_rect) see only y and x. */
#ifndef CP_GRID_H
#define CP_GRID_H

#include <stddef.h>
#include <stdint.h>

typedef struct cp_rect {
    int64_t y0, x0, ny, nx;
} cp_rect;

#include "box.h" /* cp_box3: a box of a volume, origin and size in (z, y, x) */

typedef struct cp_grid {
    int64_t Ly, Lx;        /* the plane */
    int64_t B;             /* block side */
    int64_t nby, nbx, nblocks;
    int nranks;
    int64_t Lz, nbz;       /* 1 for a plane */
} cp_grid;

void cp_grid_init(cp_grid *g, int64_t Ly, int64_t Lx, int64_t B, int nranks);
/* A volume Lz x Ly x Lx in cubic blocks of side B. */
void cp_grid_init3(cp_grid *g, int64_t Lz, int64_t Ly, int64_t Lx, int64_t B, int nranks);
/* The voxels of block b. */
cp_box3 cp_grid_box(const cp_grid *g, int64_t b);
/* The block holding voxel (z, y, x) (inside the volume). */
int64_t cp_grid_block_at3(const cp_grid *g, int64_t z, int64_t y, int64_t x);
/* r grown by h voxels on every side, clipped to the volume. */
cp_box3 cp_box3_grow(const cp_grid *g, cp_box3 r, int64_t h);
/* "(by,bx)" of block b of a plane, "(bz,by,bx)" of a volume, into buf (messages). */
const char *cp_grid_block_coords(const cp_grid *g, int64_t b, char *buf, size_t len);
/* The pixels (y, x) of block b. */
cp_rect cp_grid_block(const cp_grid *g, int64_t b);
/* The block holding pixel (y, x) (inside the plane). */
int64_t cp_grid_block_at(const cp_grid *g, int64_t y, int64_t x);
/* Rank owning block b, and the blocks [*b0, *b1) of a rank: the rank whose share of the voxels
 * holds b's middle voxel, non-decreasing in b. With nblocks <= nranks block b is rank b's. With
 * more blocks every rank has one unless a block is larger than a rank's share of the voxels. */
int cp_grid_owner(const cp_grid *g, int64_t b);
void cp_grid_range(const cp_grid *g, int rank, int64_t *b0, int64_t *b1);
/* r grown by h pixels on every side, clipped to the plane. */
cp_rect cp_rect_grow(const cp_grid *g, cp_rect r, int64_t h);
/* Blocks whose pixels intersect r (clipped to the plane), in increasing order; returns the
 * count (list may be NULL to count only). */
int64_t cp_grid_blocks_touching(const cp_grid *g, cp_rect r, int64_t *list);

#endif
