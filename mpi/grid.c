/* Block decomposition of a plane or a volume (see grid.h). */
#include "grid.h"

#include <stdio.h>

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

void cp_grid_init3(cp_grid *g, int64_t Lz, int64_t Ly, int64_t Lx, int64_t B, int nranks)
{
    g->Lz = Lz, g->Ly = Ly, g->Lx = Lx, g->B = B, g->nranks = nranks;
    g->nbz = (Lz + B - 1) / B;
    g->nby = (Ly + B - 1) / B;
    g->nbx = (Lx + B - 1) / B;
    g->nblocks = g->nbz * g->nby * g->nbx;
}

void cp_grid_init(cp_grid *g, int64_t Ly, int64_t Lx, int64_t B, int nranks)
{
    cp_grid_init3(g, 1, Ly, Lx, B, nranks);
}

cp_box3 cp_grid_box(const cp_grid *g, int64_t b)
{
    const int64_t L[3] = {g->Lz, g->Ly, g->Lx};
    const int64_t i[3] = {b / (g->nby * g->nbx), b / g->nbx % g->nby, b % g->nbx};
    cp_box3 r;
    for (int k = 0; k < 3; k++) r.o[k] = i[k] * g->B, r.n[k] = min64(g->B, L[k] - r.o[k]);
    return r;
}

int64_t cp_grid_block_at3(const cp_grid *g, int64_t z, int64_t y, int64_t x)
{
    return ((z / g->B) * g->nby + y / g->B) * g->nbx + x / g->B;
}

cp_box3 cp_box3_grow(const cp_grid *g, cp_box3 r, int64_t h)
{
    const int64_t L[3] = {g->Lz, g->Ly, g->Lx};
    for (int k = 0; k < 3; k++) {
        const int64_t lo = max64(0, r.o[k] - h), hi = min64(L[k], r.o[k] + r.n[k] + h);
        r.o[k] = lo, r.n[k] = hi - lo;
    }
    return r;
}

const char *cp_grid_block_coords(const cp_grid *g, int64_t b, char *buf, size_t len)
{
    const long long z = b / (g->nby * g->nbx), y = b / g->nbx % g->nby, x = b % g->nbx;
    if (g->Lz == 1) snprintf(buf, len, "(%lld,%lld)", y, x);
    else snprintf(buf, len, "(%lld,%lld,%lld)", z, y, x);
    return buf;
}

cp_rect cp_grid_block(const cp_grid *g, int64_t b)
{
    int64_t by = b / g->nbx % g->nby, bx = b % g->nbx;
    cp_rect r = {by * g->B, bx * g->B, 0, 0};
    r.ny = min64(g->B, g->Ly - r.y0);
    r.nx = min64(g->B, g->Lx - r.x0);
    return r;
}

int64_t cp_grid_block_at(const cp_grid *g, int64_t y, int64_t x)
{
    return (y / g->B) * g->nbx + x / g->B;
}

/* Voxels of the blocks before b in C order: whole z-slabs, then whole rows of b's slab, then the
 * blocks before b in its row. */
static int64_t voxels_before(const cp_grid *g, cp_box3 r)
{
    return r.o[0] * g->Ly * g->Lx + r.n[0] * (r.o[1] * g->Lx + r.n[1] * r.o[2]);
}

int cp_grid_owner(const cp_grid *g, int64_t b)
{
    const int64_t n = g->nranks;
    if (g->nblocks <= n) return (int)b;
    /* the rank whose share of the voxels holds b's middle voxel, kept within [b - (nblocks - n), b]
     * so that every rank has a block where one block is not larger than a share */
    const cp_box3 r = cp_grid_box(g, b);
    const int64_t twice_mid = 2 * voxels_before(g, r) + cp_box3_voxels(r);
    const int64_t total = g->Lz * g->Ly * g->Lx;
    const int64_t raw = twice_mid * n / (2 * total); /* total * n < 2^62 on any volume we hold */
    return (int)max64(b - (g->nblocks - n), min64(b, min64(raw, n - 1)));
}

void cp_grid_range(const cp_grid *g, int rank, int64_t *b0, int64_t *b1)
{
    /* the owner is non-decreasing in b: the first block of each of rank and rank + 1 */
    int64_t first[2];
    for (int k = 0; k < 2; k++) {
        int64_t lo = 0, hi = g->nblocks;
        while (lo < hi) {
            const int64_t mid = lo + (hi - lo) / 2;
            if (cp_grid_owner(g, mid) < rank + k) lo = mid + 1;
            else hi = mid;
        }
        first[k] = lo;
    }
    *b0 = first[0], *b1 = first[1];
}

cp_rect cp_rect_grow(const cp_grid *g, cp_rect r, int64_t h)
{
    int64_t y0 = max64(0, r.y0 - h), x0 = max64(0, r.x0 - h);
    int64_t y1 = min64(g->Ly, r.y0 + r.ny + h), x1 = min64(g->Lx, r.x0 + r.nx + h);
    return (cp_rect){y0, x0, y1 - y0, x1 - x0};
}

int64_t cp_grid_blocks_touching(const cp_grid *g, cp_rect r, int64_t *list)
{
    int64_t y0 = max64(0, r.y0), x0 = max64(0, r.x0);
    int64_t y1 = min64(g->Ly, r.y0 + r.ny), x1 = min64(g->Lx, r.x0 + r.nx);
    if (y1 <= y0 || x1 <= x0) return 0;
    int64_t n = 0;
    for (int64_t by = y0 / g->B; by <= (y1 - 1) / g->B; by++)
        for (int64_t bx = x0 / g->B; bx <= (x1 - 1) / g->B; bx++) {
            if (list) list[n] = by * g->nbx + bx;
            n++;
        }
    return n;
}
