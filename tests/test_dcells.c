/* The /cells table of a distributed plane from its "lab" blocks (mpi/dcells.c), on the ranks of
 * mpirun: areas, centroids and boxes of labels that cross blocks and ranks; and label ids read
 * back from a block that exceed the plane's count (a damaged or foreign block file: issue 20)
 * give a clean error naming the file, block, label and range on every rank, not a crash.
 * usage: mpirun -n N test_dcells */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cp_err.h"
#include "dcells.h"
#include "testutil.h"

enum { L = 256, B = 128 };

/* Writes the own "lab" blocks of plane d from the whole plane lab. */
static void put_lab(const cp_dplane *d, const uint32_t *lab)
{
    int64_t b0, b1;
    char name[64], err[CP_ERR_LEN];
    cp_grid_range(&d->grid, d->rank, &b0, &b1);
    for (int64_t b = b0; b < b1; b++) {
        cp_rect q = cp_grid_block(&d->grid, b);
        uint32_t *v = malloc(sizeof *v * (size_t)(q.ny * q.nx));
        for (int64_t y = 0; y < q.ny; y++)
            memcpy(v + y * q.nx, lab + (q.y0 + y) * L + q.x0, sizeof *v * (size_t)q.nx);
        int rc = cp_bstore_put(d->store, cp_dname(d, CP_SLOT_LAB, name), b, v,
                               sizeof *v * (size_t)(q.ny * q.nx), err);
        TU_CHECK(rc == 0, "%s", err);
        free(v);
    }
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank, nranks;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &nranks);
    char err[CP_ERR_LEN] = "";
    cp_bstore store;
    /* each rank reads only its own blocks: a folder per rank will do */
    TU_CHECK(cp_bstore_open(&store, tu_path("%s/work", tu_tmpdir()), err) == 0, "%s", err);
    cp_dplane d;
    cp_dplane_init(&d, MPI_COMM_WORLD, L, L, B, &store, 0);
    uint32_t *lab = calloc(L * L, sizeof *lab);
    /* label 1: a square across the four blocks; 2: inside block 0; 3: a row across blocks 2, 3 */
    for (int y = 100; y < 160; y++)
        for (int x = 110; x < 150; x++) lab[y * L + x] = 1;
    for (int y = 10; y < 20; y++)
        for (int x = 5; x < 12; x++) lab[y * L + x] = 2;
    for (int x = 0; x < L; x++) lab[200 * L + x] = 3;
    put_lab(&d, lab);
    cp_cell *cells = NULL;
    int64_t n = 0;
    int rc = cp_dcells_plane(&d, 3, &cells, &n, err);
    TU_CHECK(rc == 0, "%s", err);
    if (rank == 0) {
        TU_CHECK(n == 3, "%lld cells, expected 3", (long long)n);
        const cp_cell want[3] = {
            {1, 0, 60 * 40, 129.5, 129.5, 100, 110, 160, 150, 0, 0, 0},
            {2, 0, 10 * 7, 14.5, 8.0, 10, 5, 20, 12, 0, 0, 0},
            {3, 0, L, 200.0, 127.5, 200, 0, 201, L, 0, 0, 0},
        };
        for (int64_t i = 0; i < n && i < 3; i++) {
            const cp_cell *c = cells + i, *w = want + i;
            TU_CHECK(c->id == w->id && c->area == w->area && c->cy == w->cy && c->cx == w->cx &&
                         c->y0 == w->y0 && c->x0 == w->x0 && c->y1 == w->y1 && c->x1 == w->x1,
                     "cell %lld: id %u area %llu centre (%g, %g) box [%lld,%lld)x[%lld,%lld)",
                     (long long)i, c->id, (unsigned long long)c->area, c->cy, c->cx,
                     (long long)c->y0, (long long)c->y1, (long long)c->x0, (long long)c->x1);
        }
    }
    free(cells);
    /* ids beyond the count, in the last block (the last rank's): just past it, and huge */
    const uint32_t bad[2] = {4, 50000000};
    for (int k = 0; k < 2; k++) {
        lab[230 * L + 240] = bad[k];
        put_lab(&d, lab);
        cells = NULL;
        rc = cp_dcells_plane(&d, 3, &cells, &n, err);
        if (rank == 0) printf("label %u in block (1,1): %s\n", bad[k], err);
        char want[256];
        snprintf(want, sizeof want, "/lab.z0.3: block (1,1) array 'lab': label %u out of range "
                 "[0, 3]", bad[k]);
        TU_CHECK(rc == CP_EFORMAT && strstr(err, want), "label %u: rc %d, message \"%s\"", bad[k],
                 rc, err);
        TU_CHECK(n == 0 && (cells == NULL || rank != 0), "a table despite the error");
        free(cells);
    }
    free(lab);
    cp_bstore_destroy(&store);
    if (!tu_failed) tu_run("rm -rf %s", tu_tmpdir());
    int failed = tu_failed, any;
    MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    int st = tu_finish();
    MPI_Finalize();
    return any ? 1 : st;
}
