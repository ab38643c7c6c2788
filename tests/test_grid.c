/* The block dealing of mpi/grid.c: for planes and volumes of many shapes, block sides and rank
 * counts, cp_grid_range's ranges partition the blocks in order, agree with cp_grid_owner, leave no
 * rank without a block when blocks are no larger than a share, and balance the voxels: no rank
 * holds more than its share plus one block (the count rule it replaced gave a rank of edge
 * blocks far less than that). */
#include <stdio.h>

#include "grid.h"
#include "testutil.h"

static int64_t box_voxels(cp_box3 r) { return r.n[0] * r.n[1] * r.n[2]; }

static void check(int64_t Lz, int64_t Ly, int64_t Lx, int64_t B, int nranks, double *worst)
{
    cp_grid g;
    cp_grid_init3(&g, Lz, Ly, Lx, B, nranks);
    const int64_t total = Lz * Ly * Lx;
    int64_t next = 0, biggest = 0;
    for (int64_t b = 0; b < g.nblocks; b++)
        if (box_voxels(cp_grid_box(&g, b)) > biggest) biggest = box_voxels(cp_grid_box(&g, b));
    int empty = 0;
    for (int r = 0; r < nranks; r++) {
        int64_t b0, b1, load = 0;
        cp_grid_range(&g, r, &b0, &b1);
        TU_CHECK(b0 == next && b1 >= b0, "%lldx%lldx%lld B %lld, %d ranks: rank %d [%lld, %lld), "
                 "expected to start at %lld", (long long)Lz, (long long)Ly, (long long)Lx,
                 (long long)B, nranks, r, (long long)b0, (long long)b1, (long long)next);
        for (int64_t b = b0; b < b1; b++) {
            load += box_voxels(cp_grid_box(&g, b));
            if (cp_grid_owner(&g, b) != r) {
                TU_CHECK(0, "block %lld: owner %d, in the range of %d", (long long)b,
                         cp_grid_owner(&g, b), r);
                return;
            }
        }
        empty += b1 == b0;
        next = b1;
        const double share = (double)total / nranks;
        TU_CHECK(load <= share + biggest, "%lldx%lldx%lld B %lld, %d ranks: rank %d holds %lld "
                 "voxels, share %.0f + largest block %lld", (long long)Lz, (long long)Ly,
                 (long long)Lx, (long long)B, nranks, r, (long long)load, share, (long long)biggest);
        if (4 * biggest <= share && load / share > *worst) *worst = load / share;
    }
    TU_CHECK(next == g.nblocks, "the ranges end at %lld of %lld blocks", (long long)next,
             (long long)g.nblocks);
    if (g.nblocks >= nranks && biggest <= total / nranks)
        TU_CHECK(empty == 0, "%lldx%lldx%lld B %lld, %d ranks: %d ranks without a block",
                 (long long)Lz, (long long)Ly, (long long)Lx, (long long)B, nranks, empty);
}

int main(void)
{
    double worst = 0;
    const int64_t sides[] = {1, 7, 40, 256, 300, 2100, 3000, 5000};
    const int64_t blocks[] = {4, 16, 64, 256, 2048};
    for (int z = 0; z < 3; z++)
        for (int y = 0; y < 8; y++)
            for (int x = 0; x < 8; x++)
                for (int k = 0; k < 5; k++)
                    for (int n = 1; n <= 9; n++) {
                        const int64_t Lz = (int64_t[]){1, 12, 130}[z];
                        if (Lz > 1 && (sides[y] > 300 || sides[x] > 300)) continue;
                        check(Lz, sides[y], sides[x], blocks[k], n, &worst);
                    }
    /* the edge blocks: 3000 x 3000 in blocks of 2048 on 2 ranks; the count rule gave rank 0
     * 2.15x the voxels of rank 1 */
    cp_grid g;
    cp_grid_init(&g, 3000, 3000, 2048, 2);
    int64_t b0, b1;
    cp_grid_range(&g, 0, &b0, &b1);
    TU_CHECK(b0 == 0 && b1 == 1, "3000 x 3000 / 2048 on 2 ranks: rank 0 has [%lld, %lld), "
             "expected the big block alone", (long long)b0, (long long)b1);
    printf("largest rank load over its share, blocks of at most a quarter share: %.3f\n", worst);
    return tu_finish();
}
