/* Tests of mpi/dresize3.c (the nearest resize of a label volume over 3-D blocks, --no_resample
 * with --do_3D), run under mpirun at several rank counts:
 *   test_dresize3 <B>...  random label volumes resized up, down and mixed per axis (and to the
 *       same size) through blocks of side B of both grids: the gathered result must equal
 *       cp_masks3_resize_back of the whole volume voxel for voxel; then a missing source block on
 *       the last rank: every rank returns the same error. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#include "bstore.h"
#include "compute_masks3d.h"
#include "cp_err.h"
#include "dresize3.h"
#include "dtest.h"
#include "grid.h"
#include "testutil.h"

#define NAME "m03"

static int rank_, nranks_;

/* Array NAME of the own blocks of g: from vol (put) or into vol (get: gathered on every rank). */
static void blocks(const cp_grid *g, const cp_bstore *s, uint32_t *vol, int put)
{
    int64_t b0, b1, n = g->Lz * g->Ly * g->Lx;
    char err[CP_ERR_LEN] = "";
    if (!put) memset(vol, 0, sizeof *vol * (size_t)n);
    cp_grid_range(g, rank_, &b0, &b1);
    for (int64_t b = b0; b < b1; b++) {
        cp_box3 r = cp_grid_box(g, b);
        int64_t nv = r.n[0] * r.n[1] * r.n[2];
        uint32_t *a = malloc(sizeof *a * (size_t)nv);
        int rc = put ? 0 : cp_bstore_get(s, NAME, b, a, sizeof *a * (size_t)nv, err);
        TU_CHECK(rc == 0, "get block %lld: %s", (long long)b, err);
        for (int64_t z = 0, q = 0; !rc && z < r.n[0]; z++)
            for (int64_t y = 0; y < r.n[1]; y++)
                for (int64_t x = 0; x < r.n[2]; x++, q++) {
                    uint32_t *v = &vol[((r.o[0] + z) * g->Ly + r.o[1] + y) * g->Lx + r.o[2] + x];
                    if (put) a[q] = *v;
                    else *v = a[q];
                }
        if (put) TU_CHECK(cp_bstore_put(s, NAME, b, a, sizeof *a * (size_t)nv, err) == 0, "%s", err);
        free(a);
    }
    if (!put) MPI_Allreduce(MPI_IN_PLACE, vol, (int)n, MPI_UINT32_T, MPI_MAX, MPI_COMM_WORLD);
}

/* A volume Ls of labels (blobs of random runs) resized to Ld through blocks of side B, against
 * the whole-volume function; returns the voxels that differ. */
static int64_t check(const int64_t Ls[3], const int64_t Ld[3], int64_t B, const cp_bstore *s,
                     const cp_bstore *d)
{
    int64_t ns = Ls[0] * Ls[1] * Ls[2], nd = Ld[0] * Ld[1] * Ld[2], out[3];
    cp_masks3_out_shape(Ls, Ld, out);
    TU_CHECK(out[0] * out[1] * out[2] == nd, "the output shape is Ld");
    uint32_t *src = malloc(sizeof *src * (size_t)ns), *want = malloc(sizeof *want * (size_t)nd);
    uint32_t *got = malloc(sizeof *got * (size_t)nd);
    uint64_t r = 88172645463325252ULL + (uint64_t)(ns * 31 + nd);
    for (int64_t i = 0; i < ns; i++) { /* runs of labels: identity shows in the output */
        if (i % 7 == 0) r ^= r << 13, r ^= r >> 7, r ^= r << 17;
        src[i] = (uint32_t)(r % 50);
    }
    cp_masks3_resize_back(src, Ls, Ld, want);
    cp_grid gs, gd;
    cp_grid_init3(&gs, Ls[0], Ls[1], Ls[2], B, nranks_);
    cp_grid_init3(&gd, Ld[0], Ld[1], Ld[2], B, nranks_);
    blocks(&gs, s, src, 1);
    char err[CP_ERR_LEN] = "";
    int rc = cp_dresize3_nearest(MPI_COMM_WORLD, &gs, s, &gd, d, NAME, err);
    TU_CHECK(rc == 0, "cp_dresize3_nearest: %s", err);
    blocks(&gd, d, got, 0);
    int64_t diff = tu_count_diff_u32(got, want, nd);
    if (rank_ == 0)
        printf("  %lldx%lldx%lld -> %lldx%lldx%lld, blocks of %lld (%lld -> %lld blocks): %lld "
               "voxels differ\n", (long long)Ls[0], (long long)Ls[1], (long long)Ls[2],
               (long long)Ld[0], (long long)Ld[1], (long long)Ld[2], (long long)B,
               (long long)gs.nblocks, (long long)gd.nblocks, (long long)diff);
    TU_CHECK(diff == 0, "%lld voxels differ", (long long)diff);
    free(src);
    free(want);
    free(got);
    return diff;
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &nranks_);
    if (argc < 2) {
        if (rank_ == 0) fprintf(stderr, "usage: test_dresize3 <B>...\n");
        MPI_Finalize();
        return 2;
    }
    cp_bstore s, d;
    dtest_open_store(&s);
    char dir[sizeof d.dir + 16], err[CP_ERR_LEN] = "";
    snprintf(dir, sizeof dir, "%s/image_scale", s.dir);
    TU_CHECK(cp_bstore_open(&d, dir, err) == 0, "%s", err);
    static const int64_t shapes[][2][3] = {
        {{18, 60, 66}, {12, 80, 88}}, /* the aniso case: Z down, Y and X up */
        {{9, 21, 17}, {20, 13, 40}},  /* Z up, Y down, X up */
        {{15, 31, 33}, {15, 31, 33}}, /* the same size */
        {{7, 40, 9}, {7, 19, 23}},    /* Z unchanged */
    };
    int64_t bad = 0;
    for (int k = 1; k < argc; k++)
        for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++)
            bad += check(shapes[i][0], shapes[i][1], atoll(argv[k]), &s, &d);
    /* a missing source block on the last rank: the same error everywhere */
    const int64_t Ls[3] = {9, 21, 17}, Ld[3] = {20, 13, 40};
    cp_grid gs, gd;
    cp_grid_init3(&gs, Ls[0], Ls[1], Ls[2], 8, nranks_);
    cp_grid_init3(&gd, Ld[0], Ld[1], Ld[2], 8, nranks_);
    uint32_t *src = calloc((size_t)(Ls[0] * Ls[1] * Ls[2]), sizeof *src);
    blocks(&gs, &s, src, 1);
    int64_t b0, b1;
    cp_grid_range(&gs, nranks_ - 1, &b0, &b1);
    if (rank_ == nranks_ - 1) cp_bstore_remove(&s, NAME, b1 - 1);
    int rc = cp_dresize3_nearest(MPI_COMM_WORLD, &gs, &s, &gd, &d, NAME, err);
    int rcs[2] = {rc, -rc};
    MPI_Allreduce(MPI_IN_PLACE, rcs, 2, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    TU_CHECK(rc != 0 && rcs[0] == -rcs[1], "missing block: rc %d on rank %d (%s)", rc, rank_, err);
    if (rank_ == 0) printf("missing source block: %s\nresize: %lld voxels differ in all\n", err,
                           (long long)bad);
    free(src);
    dtest_close_store(&s);
    int failed = tu_failed;
    MPI_Allreduce(MPI_IN_PLACE, &failed, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    MPI_Finalize();
    return failed ? 1 : 0;
}
