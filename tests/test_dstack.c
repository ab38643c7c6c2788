/* Tests of mpi/dstitch.c and mpi/dfill3.c (a stack's label planes stitched, hole-filled in 3-D
 * and min_size'd where they are, in the block store): on any number of ranks the planes must
 * equal, voxel for voxel, cp_post_stitch and then cp_post_fill_and_min_size on the whole volume.
 * Volumes: a crafted one (first plane empty, an empty plane inside, equal-IoU merges and ties
 * between two columns decided by id order, a hollow shell swallowing a label in its 3-D hole, a
 * shell with an empty hole, a tube open at both ends (2-D holes, no 3-D hole), masks below
 * min_size, label gaps, a column through every plane and so across every rank boundary) and
 * random blobs and shells over 6-12 planes of 64x80, and over 2-3 planes (ranks without planes);
 * a missing plane and labels out of range fail on every rank with one message.
 * Usage: test_dstack */
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "bstore.h"
#include "cp_err.h"
#include "dstitch.h"
#include "post.h"
#include "dtest.h"
#include "testutil.h"

#define NY 64
#define NX 80

static int rank;

static uint64_t rng_state;
static uint32_t rnd(uint32_t n)
{
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)(rng_state >> 33) % n;
}

static void box(uint32_t *vol, int64_t z0, int64_t z1, int64_t y0, int64_t y1, int64_t x0,
                int64_t x1, uint32_t v)
{
    for (int64_t z = z0; z < z1; z++)
        for (int64_t y = y0; y < y1; y++)
            for (int64_t x = x0; x < x1; x++) vol[(z * NY + y) * NX + x] = v;
}

/* A hollow box: faces of thickness 1 around [z0, z1) x [y0, y1) x [x0, x1) (open: no z faces,
 * a tube). */
static void shell(uint32_t *vol, int64_t z0, int64_t z1, int64_t y0, int64_t y1, int64_t x0,
                  int64_t x1, uint32_t v, int open)
{
    for (int64_t z = z0; z < z1; z++)
        for (int64_t y = y0; y < y1; y++)
            for (int64_t x = x0; x < x1; x++) {
                int face = y == y0 || y == y1 - 1 || x == x0 || x == x1 - 1 ||
                           (!open && (z == z0 || z == z1 - 1));
                if (face) vol[(z * NY + y) * NX + x] = v;
            }
}

static void ellipsoid(uint32_t *vol, int64_t nz, double cz, double cy, double cx, double rz,
                      double ry, double rx, uint32_t v)
{
    for (int64_t z = 0; z < nz; z++)
        for (int64_t y = 0; y < NY; y++)
            for (int64_t x = 0; x < NX; x++) {
                double d = (z - cz) * (z - cz) / (rz * rz) + (y - cy) * (y - cy) / (ry * ry) +
                           (x - cx) * (x - cx) / (rx * rx);
                if (d <= 1) vol[(z * NY + y) * NX + x] = v;
            }
}

/* Object ids to per-plane labels as a segmentation gives them: each plane numbered on its own,
 * objects in a shuffled order, with a gap (an unused value) now and then. */
static void per_plane(uint32_t *vol, int64_t nz, uint32_t nobj)
{
    uint32_t *to = malloc(sizeof *to * (nobj + 1));
    for (int64_t z = 0; z < nz; z++) {
        uint32_t *pl = vol + z * NY * NX;
        for (uint32_t o = 0; o <= nobj; o++) to[o] = 0;
        for (int64_t i = 0; i < NY * NX; i++) to[pl[i]] = 1;
        uint32_t next = 1;
        for (uint32_t k = 0; k < 4 * nobj; k++) { /* shuffled: a random walk over the objects */
            uint32_t o = 1 + rnd(nobj);
            if (to[o] != 1) continue;
            next += rnd(5) == 0; /* a gap: a value no pixel has */
            to[o] = 1000000 + next++;
        }
        for (uint32_t o = 1; o <= nobj; o++)
            if (to[o] == 1) to[o] = 1000000 + next++;
        for (uint32_t o = 1; o <= nobj; o++)
            if (to[o]) to[o] -= 1000000;
        to[0] = 0;
        for (int64_t i = 0; i < NY * NX; i++) pl[i] = to[pl[i]];
    }
    free(to);
}

static void crafted(uint32_t *vol, int64_t nz)
{
    memset(vol, 0, sizeof *vol * (size_t)(nz * NY * NX));
    /* plane 0 empty */
    box(vol, 1, nz, 2, 6, 2, 6, 1); /* a column through every plane */
    /* equal-IoU merge: one label on plane 1, two halves on plane 2 */
    box(vol, 1, 2, 10, 20, 10, 20, 2);
    box(vol, 2, 3, 10, 20, 10, 15, 3);
    box(vol, 2, 3, 10, 20, 15, 20, 4);
    /* a tie between two columns: two labels on plane 1, one across both on plane 2; the ids of
     * the two columns come in the opposite order of their original labels */
    box(vol, 1, 2, 30, 40, 10, 20, 6);
    box(vol, 1, 2, 30, 40, 20, 30, 5);
    box(vol, 2, 3, 30, 40, 15, 25, 7);
    /* a hollow shell swallowing a label in its 3-D hole, another with an empty hole */
    shell(vol, 1, 5, 10, 22, 40, 52, 8, 0);
    box(vol, 2, 4, 13, 18, 43, 48, 9);
    shell(vol, 1, 5, 40, 50, 40, 50, 10, 0);
    /* a tube open at both ends: 2-D holes, none in 3-D */
    shell(vol, 1, nz - 1, 26, 36, 56, 66, 11, 1);
    /* masks below min_size */
    box(vol, 3, 4, 55, 58, 5, 8, 12);
    box(vol, 3, 5, 55, 57, 20, 22, 13);
    /* a label from plane 3 on */
    box(vol, 3, nz, 50, 60, 60, 75, 14);
    /* the last plane holds the column alone */
    for (int64_t i = 0; i < NY * NX; i++)
        if (vol[(nz - 1) * NY * NX + i] != 1) vol[(nz - 1) * NY * NX + i] = 0;
    per_plane(vol, nz, 14);
}

static void random_blobs(uint32_t *vol, int64_t nz)
{
    memset(vol, 0, sizeof *vol * (size_t)(nz * NY * NX));
    uint32_t nobj = 10 + rnd(15), o = 0;
    while (o < nobj) {
        o++;
        double cz = rnd((uint32_t)nz), cy = rnd(NY), cx = rnd(NX);
        double rz = 1 + rnd(4), ry = 3 + rnd(10), rx = 3 + rnd(10);
        if (nz >= 3 && rnd(6) == 0 && o + 1 < nobj) { /* a shell with a label inside */
            int64_t z0 = rnd((uint32_t)(nz - 2)), y0 = rnd(NY - 12), x0 = rnd(NX - 12);
            int64_t dz = 3 + rnd((uint32_t)(nz - z0 - 2)), d = 6 + rnd(6);
            if (z0 + dz > nz) dz = nz - z0;
            shell(vol, z0, z0 + dz, y0, y0 + d, x0, x0 + d, o, rnd(3) == 0);
            if (dz > 2 && rnd(2)) box(vol, z0 + 1, z0 + dz - 1, y0 + 2, y0 + d - 2, x0 + 2,
                                      x0 + d - 2, ++o);
            continue;
        }
        ellipsoid(vol, nz, cz, cy, cx, rz, ry, rx, o);
    }
    if (rnd(3) == 0) memset(vol, 0, sizeof *vol * NY * NX); /* first plane empty */
    if (rnd(3) == 0) {
        int64_t z = rnd((uint32_t)nz);
        memset(vol + z * NY * NX, 0, sizeof *vol * NY * NX);
    }
    per_plane(vol, nz, o);
}

/* Every rank's own planes of the volume into the store. */
static void put_planes(const cp_dvol *v, const uint32_t *vol)
{
    char err[CP_ERR_LEN] = "";
    for (int64_t z = v->z0; z < v->z1; z++) {
        int rc = cp_dvol_put(v, z, vol + z * NY * NX, err);
        TU_CHECK(rc == 0, "put plane %lld: %s", (long long)z, err);
    }
}

/* The planes from the store onto rank 0 (out). */
static void gather_planes(const cp_dvol *v, uint32_t *out)
{
    char err[CP_ERR_LEN] = "";
    uint32_t *pl = malloc(sizeof *pl * NY * NX);
    for (int64_t z = 0; z < v->nz; z++) {
        int owner = cp_dvol_owner(v, z);
        if (rank == owner) {
            int rc = cp_dvol_get(v, z, pl, err);
            TU_CHECK(rc == 0, "get plane %lld: %s", (long long)z, err);
            if (rank == 0) memcpy(out + z * NY * NX, pl, sizeof *pl * NY * NX);
            else MPI_Send(pl, NY * NX, MPI_UINT32_T, 0, 5, v->comm);
        } else if (rank == 0) {
            MPI_Recv(out + z * NY * NX, NY * NX, MPI_UINT32_T, owner, 5, v->comm,
                     MPI_STATUS_IGNORE);
        }
    }
    free(pl);
    MPI_Barrier(v->comm); /* the next volume may give plane z to another rank, which rewrites it */
}

static uint32_t vmax(const uint32_t *a, int64_t n)
{
    uint32_t m = 0;
    for (int64_t i = 0; i < n; i++) m = a[i] > m ? a[i] : m;
    return m;
}

/* One volume, stitched and filled both ways; counts differing voxels. */
static void check(const cp_bstore *st, const uint32_t *vol, int64_t nz, double thr,
                  int64_t min_size, const char *what)
{
    int64_t n = nz * NY * NX;
    char err[CP_ERR_LEN] = "";
    uint32_t *want = malloc(sizeof *want * (size_t)n), *got = malloc(sizeof *got * (size_t)n);
    memcpy(want, vol, sizeof *want * (size_t)n);
    cp_dvol v;
    cp_dvol_init(&v, MPI_COMM_WORLD, st, "lab", nz, NY, NX);
    put_planes(&v, vol);
    int64_t nl = 0, nf = 0;
    int rc = cp_dstitch_planes(&v, thr, &nl, err);
    TU_CHECK(rc == 0, "%s: stitch: %s", what, err);
    gather_planes(&v, got);
    if (rank == 0) {
        rc = cp_post_stitch(want, nz, NY, NX, thr, err);
        TU_CHECK(rc == 0, "%s: cp_post_stitch: %s", what, err);
        int64_t d = tu_count_diff_u32(want, got, n);
        TU_CHECK(d == 0, "%s thr %g: stitched: %lld voxels differ", what, thr, (long long)d);
        TU_CHECK(nl >= vmax(want, n), "%s: %lld ids given, %u present", what, (long long)nl,
                 vmax(want, n));
    }
    rc = cp_dfill3_run(&v, nl, min_size, &nf, err);
    TU_CHECK(rc == 0, "%s: fill: %s", what, err);
    gather_planes(&v, got);
    if (rank == 0) {
        rc = cp_post_fill_and_min_size(want, nz, NY, NX, min_size, err);
        TU_CHECK(rc == 0, "%s: cp_post_fill_and_min_size: %s", what, err);
        int64_t d = tu_count_diff_u32(want, got, n);
        TU_CHECK(d == 0, "%s thr %g min_size %lld: filled: %lld voxels differ", what, thr,
                 (long long)min_size, (long long)d);
        TU_CHECK(nf == vmax(want, n), "%s: largest final id %lld, want %u", what, (long long)nf,
                 vmax(want, n));
    }
    free(want);
    free(got);
}

/* The crafted volume changes as expected under the reference too (the test is not vacuous):
 * the swallowed label is gone, the empty hole filled, the small masks removed. */
static void crafted_sanity(const uint32_t *vol, int64_t nz)
{
    int64_t n = nz * NY * NX;
    uint32_t *w = malloc(sizeof *w * (size_t)n);
    char err[CP_ERR_LEN];
    memcpy(w, vol, sizeof *w * (size_t)n);
    cp_post_stitch(w, nz, NY, NX, 0.25, err);
    uint32_t inner = w[(3 * NY + 15) * NX + 45], sh = w[(1 * NY + 10) * NX + 40];
    uint32_t merged = w[(2 * NY + 12) * NX + 12] == w[(2 * NY + 12) * NX + 17];
    uint32_t tie = w[(2 * NY + 35) * NX + 20], left = w[(1 * NY + 35) * NX + 12];
    uint32_t right = w[(1 * NY + 35) * NX + 25];
    cp_post_fill_and_min_size(w, nz, NY, NX, 15, err);
    TU_CHECK(inner != sh && w[(3 * NY + 15) * NX + 45] == w[(1 * NY + 10) * NX + 40],
             "crafted: the shell swallows the label in its hole");
    TU_CHECK(w[(3 * NY + 45) * NX + 45] && w[(3 * NY + 45) * NX + 45] == w[(1 * NY + 40) * NX + 40],
             "crafted: the empty hole of a shell is filled");
    TU_CHECK(w[(3 * NY + 56) * NX + 6] == 0 && w[(4 * NY + 56) * NX + 21] == 0,
             "crafted: the masks below min_size are removed");
    TU_CHECK(w[(3 * NY + 30) * NX + 60] == 0, "crafted: the open tube is not filled");
    TU_CHECK(merged, "crafted: the two halves of equal IoU merge");
    TU_CHECK(left != right && tie == (left < right ? left : right),
             "crafted: the tie goes to the column of the smaller id");
    free(w);
}

/* Failures are agreed, never hangs: a plane missing from the store stops the stitching on every
 * rank with the store's message; a label above the ids the stitching gave stops the filling with
 * "out of range". */
static void failures(const cp_bstore *st)
{
    const int64_t nz = 6, n = nz * NY * NX;
    uint32_t *vol = malloc(sizeof *vol * (size_t)n);
    char err[CP_ERR_LEN] = "";
    rng_state = 99;
    crafted(vol, nz);
    cp_dvol v;
    cp_dvol_init(&v, MPI_COMM_WORLD, st, "bad", nz, NY, NX);
    put_planes(&v, vol);
    if (v.z0 <= nz - 1 && nz - 1 < v.z1) cp_bstore_remove(st, "bad", nz - 1);
    int64_t nl = 0, nf = 0;
    int rc = cp_dstitch_planes(&v, 0.25, &nl, err);
    TU_CHECK(rc == CP_EIO && strstr(err, "bad.5"), "missing plane: rc %d, message '%s'", rc, err);
    put_planes(&v, vol);
    rc = cp_dfill3_run(&v, 1, 15, &nf, err);
    TU_CHECK(rc == CP_EFORMAT && strstr(err, "out of range [0, 1]"),
             "labels beyond the ids: rc %d, message '%s'", rc, err);
    free(vol);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    cp_bstore st;
    dtest_open_store(&st);
    static const double thr[] = {0.1, 0.25, 0.5};
    static const int64_t ms[] = {-1, 15, 40};
    for (int64_t nz = 6; nz <= 12; nz += 3) {
        uint32_t *vol = malloc(sizeof *vol * (size_t)(nz * NY * NX));
        rng_state = (uint64_t)nz;
        crafted(vol, nz);
        if (rank == 0 && nz == 6) crafted_sanity(vol, nz);
        char what[64];
        for (int t = 0; t < 3; t++)
            for (int m = 0; m < 3; m++) {
                snprintf(what, sizeof what, "crafted nz %lld", (long long)nz);
                check(&st, vol, nz, thr[t], ms[m], what);
            }
        for (int seed = 1; seed <= 12; seed++) {
            rng_state = (uint64_t)seed * 1000 + (uint64_t)nz;
            random_blobs(vol, nz);
            snprintf(what, sizeof what, "random seed %d nz %lld", seed, (long long)nz);
            check(&st, vol, nz, thr[seed % 3], ms[seed % 3], what);
        }
        free(vol);
    }
    failures(&st);
    for (int64_t nz = 2; nz <= 3; nz++) { /* fewer planes than ranks: ranks without planes */
        uint32_t *vol = malloc(sizeof *vol * (size_t)(nz * NY * NX));
        char what[64];
        for (int seed = 1; seed <= 4; seed++) {
            rng_state = (uint64_t)seed * 7000 + (uint64_t)nz;
            random_blobs(vol, nz);
            snprintf(what, sizeof what, "random seed %d nz %lld", seed, (long long)nz);
            check(&st, vol, nz, thr[seed % 3], ms[seed % 3], what);
        }
        free(vol);
    }
    (void)argv;
    MPI_Barrier(MPI_COMM_WORLD);
    int failed = tu_failed;
    MPI_Allreduce(MPI_IN_PLACE, &failed, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (rank == 0) {
        if (!failed) cp_bstore_destroy(&st);
        tu_run("rmdir %s 2>/dev/null", tu_tmpdir());
    }
    tu_failed = failed;
    int rc = rank == 0 ? tu_finish() : (failed ? 1 : 0);
    MPI_Finalize();
    return rc;
}

