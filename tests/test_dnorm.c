/* Tests of mpi/dnorm.c: the distributed percentiles are bit-identical, on every rank, to
 * cp_norm_compute_stack on the whole planes read in one piece on rank 0 (the single-process
 * engine, itself checked against Cellpose's values in test_prep), with the default chunks and
 * with small chunks spread over all ranks; failures are agreed by all ranks.
 * Usage (under mpirun): test_dnorm case <reference case> | big | deep | edge
 *   case: each plane alone and, for a stack, norm3D, at three percentile pairs;
 *   big:  3 generated float32 planes of 1900x2100 with negative values, heavy ties, huge and
 *         subnormal values: all planes (> 224^3 pixels: row/column strides 8, 9), planes 1-2;
 *   deep: 101 generated planes of 336x333: all (> 224^3: plane stride 2), planes 1-100;
 *   edge: constant and near-constant images, a NaN pixel, bad parameters. */
#include "dnorm.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cp_err.h"
#include "testutil.h"
#include "tiff_io.h"

static int rank, nranks;

/* One rank's outcome of a call, gathered on rank 0. */
typedef struct outcome {
    int rc;
    cp_norm n[2];
    double secs;
    char err[CP_ERR_LEN];
} outcome;

static int same_norm(const cp_norm *a, const cp_norm *b)
{
    return a->good == b->good && a->zero == b->zero && memcmp(&a->p1, &b->p1, sizeof a->p1) == 0 &&
           memcmp(&a->p99, &b->p99, sizeof a->p99) == 0;
}

/* Runs the collective call (chunk_rows 0: cp_dnorm_compute) and gathers every rank's outcome on
 * rank 0 (all: nranks entries there, NULL elsewhere; the caller frees). */
static outcome *run_dnorm(cp_image *im, int64_t z0, int64_t nz, int64_t chunk_rows, double q1,
                          double q99)
{
    outcome mine = {0};
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = MPI_Wtime();
    mine.rc = chunk_rows ? cp_dnorm_compute_rows(MPI_COMM_WORLD, im, z0, nz, chunk_rows, q1, q99,
                                                 mine.n, mine.err)
                         : cp_dnorm_compute(MPI_COMM_WORLD, im, z0, nz, q1, q99, mine.n, mine.err);
    mine.secs = MPI_Wtime() - t0;
    outcome *all = rank == 0 ? calloc((size_t)nranks, sizeof *all) : NULL;
    MPI_Gather(&mine, sizeof mine, MPI_BYTE, all, sizeof mine, MPI_BYTE, 0, MPI_COMM_WORLD);
    return all;
}

/* Rank 0: cp_norm_compute_stack of both channels over planes [z0, z0+nz) read whole. */
static void oracle(cp_image *im, int64_t z0, int64_t nz, double q1, double q99, cp_norm ref[2])
{
    char err[CP_ERR_LEN] = "";
    int64_t npix = im->layout.ny * im->layout.nx;
    float *x2 = malloc(sizeof(float) * (size_t)(2 * nz * npix));
    int rc = 0;
    for (int64_t z = 0; !rc && z < nz; z++)
        rc = cp_image_read(im, z0 + z, 0, 0, im->layout.ny, im->layout.nx, x2 + 2 * z * npix, err);
    for (int c = 0; !rc && c < 2; c++)
        rc = cp_norm_compute_stack(x2, nz, im->layout.ny, im->layout.nx, c, q1, q99, &ref[c], err);
    TU_CHECK(rc == 0, "oracle: %s", err);
    free(x2);
}

/* Compares the distributed result of planes [z0, z0+nz) (default chunks, then chunks of
 * chunk_rows rows) on every rank with the oracle, bit for bit. */
static void check_planes(cp_image *im, const char *what, int64_t z0, int64_t nz,
                         int64_t chunk_rows, double q1, double q99)
{
    cp_norm ref[2] = {{0}};
    if (rank == 0) oracle(im, z0, nz, q1, q99, ref);
    for (int pass = 0; pass < 2; pass++) {
        int64_t rows = pass ? chunk_rows : 0;
        outcome *all = run_dnorm(im, z0, nz, rows, q1, q99);
        if (rank != 0) continue;
        double worst = 0;
        for (int r = 0; r < nranks; r++) {
            TU_CHECK(all[r].rc == 0, "%s: rank %d: %s", what, r, all[r].err);
            for (int c = 0; c < 2; c++)
                TU_CHECK(same_norm(&all[r].n[c], &ref[c]),
                         "%s chunk rows %lld: rank %d channel %d: good %d zero %d p1 %.17g p99 "
                         "%.17g, oracle good %d zero %d p1 %.17g p99 %.17g", what,
                         (long long)rows, r, c, all[r].n[c].good, all[r].n[c].zero,
                         all[r].n[c].p1, all[r].n[c].p99, ref[c].good, ref[c].zero, ref[c].p1,
                         ref[c].p99);
            if (all[r].secs > worst) worst = all[r].secs;
        }
        printf("%s q %g %g, chunk rows %s%lld, %d ranks: ch0 good %d zero %d p1 %.17g p99 %.17g | "
               "ch1 good %d zero %d p1 %.17g p99 %.17g | oracle p1 %.17g %.17g p99 %.17g %.17g "
               "| %.3f s\n",
               what, q1, q99, rows ? "" : "default ", (long long)rows, nranks, all[0].n[0].good,
               all[0].n[0].zero, all[0].n[0].p1, all[0].n[0].p99, all[0].n[1].good,
               all[0].n[1].zero, all[0].n[1].p1, all[0].n[1].p99, ref[0].p1, ref[1].p1,
               ref[0].p99, ref[1].p99, worst);
        free(all);
    }
}

static void close_image(cp_image *im)
{
    free((void *)im->path);
    cp_image_close(im);
}

static int json_int(json_object *j, const char *key, int dflt)
{
    json_object *v = tu_json_get(j, key);
    return (v && !json_object_is_type(v, json_type_null)) ? json_object_get_int(v) : dflt;
}

/* A reference case's input with its eval parameters: every plane alone, and norm3D for a stack,
 * at the default percentiles and two others (the ends of the sample, and a pair off the grid). */
static void test_case(const char *name)
{
    json_object *j = tu_case_json(name);
    json_object *kw = tu_json_get(j, "call.eval_kwargs"), *p = tu_json_get(j, "input.path");
    json_object *chans = tu_json_get(kw, "channels");
    int chan = -1, chan2 = 0;
    if (chans && json_object_is_type(chans, json_type_array)) {
        chan = json_object_get_int(json_object_array_get_idx(chans, 0));
        chan2 = json_object_get_int(json_object_array_get_idx(chans, 1));
    }
    const char *s = p ? json_object_get_string(p) : NULL;
    const char *path = !s ? tu_path("%s/reference/%s/input.tif", tu_shared(), name)
                       : strncmp(s, "shared/", 7) == 0 ? tu_path("%s/%s", tu_shared(), s + 7)
                                                       : s;
    tu_need(path); /* every rank alike */
    int stitch = json_object_get_double(tu_json_get(kw, "stitch_threshold")) > 0;
    cp_image im;
    char err[CP_ERR_LEN] = "";
    int rc = cp_image_open(&im, strdup(path), json_int(kw, "z_axis", -1),
                           json_int(kw, "channel_axis", -1), stitch, chan, chan2, err);
    TU_CHECK(rc == 0, "%s: %s", name, err);
    if (rc) goto out;
    static const double qs[3][2] = {{1, 99}, {0, 100}, {2.5, 99.9}};
    int64_t nz = im.layout.nz;
    for (int q = 0; q < 3; q++) {
        for (int64_t z = 0; z < nz; z++)
            check_planes(&im, tu_path("%s plane %lld", name, (long long)z), z, 1, 7, qs[q][0],
                         qs[q][1]);
        if (nz > 1) check_planes(&im, tu_path("%s norm3D", name), 0, nz, 5, qs[q][0], qs[q][1]);
    }
    close_image(&im);
out:
    json_object_put(j);
}

/* splitmix64: a reproducible stream for the generated images. */
static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* Rank 0 writes nz generated planes of ny x nx float32 (kind 'b': negatives, ties, extremes;
 * continuous values; 'c': constant; 'n': within 2e-5 of 5; 'x': like 'b' with one NaN) into dir, all ranks open it
 * (z_axis 0 for a stack). */
static int make_image(cp_image *im, const char *dir, const char *file, char kind, int64_t nz,
                      int64_t ny, int64_t nx)
{
    char err[CP_ERR_LEN] = "";
    const char *path = tu_path("%s/%s", dir, file);
    int rc = 0;
    if (rank == 0) {
        int64_t n = nz * ny * nx;
        float *v = malloc(sizeof(float) * (size_t)n);
        for (int64_t i = 0; i < n; i++) {
            uint64_t h = mix((uint64_t)i);
            int64_t a = (int64_t)(h % 4001) - 2000;
            switch (kind) {
            case 'c': v[i] = 7.25f; break;
            case 'n': v[i] = 5.0f + (float)(h % 3) * 1e-5f; break;
            default:
                v[i] = (h >> 40) % 4 == 0    ? -3.5f                         /* heavy ties */
                       : (h >> 40) % 97 == 1 ? (a < 0 ? -1e30f : 1e30f)      /* huge */
                       : (h >> 40) % 89 == 2 ? (float)a * 1e-42f             /* subnormal */
                       : (h >> 40) % 2       ? (float)a * 0.125f - 40.0f     /* ties, < 0 */
                                             : (float)((double)(h >> 11) * 0x1p-53 * 500.0 - 300.0);
            }
        }
        if (kind == 'x') v[(nz - 1) * ny * nx + (ny * 2 / 3) * nx + nx / 2] = NAN;
        double t0 = MPI_Wtime();
        rc = cp_tiff_write_f32(path, v, nz, ny, nx, err);
        printf("%s: %lld x %lld x %lld written in %.2f s\n", file, (long long)nz, (long long)ny,
               (long long)nx, MPI_Wtime() - t0);
        free(v);
    }
    MPI_Bcast(&rc, 1, MPI_INT, 0, MPI_COMM_WORLD);
    TU_CHECK(rc == 0, "%s: %s", path, err);
    if (rc) return rc;
    rc = cp_image_open(im, strdup(path), nz > 1 ? 0 : -1, -1, nz > 1, 0, 0, err);
    TU_CHECK(rc == 0, "%s: %s", path, err);
    return rc;
}

/* The work directory: made by rank 0, its name broadcast. */
static const char *work_dir(void)
{
    static char dir[256];
    if (rank == 0) snprintf(dir, sizeof dir, "%s", tu_tmpdir());
    MPI_Bcast(dir, sizeof dir, MPI_CHAR, 0, MPI_COMM_WORLD);
    return dir;
}

static void remove_work_dir(const char *dir)
{
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank == 0 && tu_failed == 0) tu_run("rm -rf '%s'", dir);
}

static void test_big(void)
{
    const char *dir = work_dir();
    cp_image im;
    if (make_image(&im, dir, "big.tif", 'b', 3, 1900, 2100) == 0) {
        check_planes(&im, "big norm3D (subsampled 1,8,9)", 0, 3, 37, 1, 99);
        check_planes(&im, "big planes 1-2 (whole)", 1, 2, 64, 0.3, 97);
        close_image(&im);
    }
    remove_work_dir(dir);
}

static void test_deep(void)
{
    const char *dir = work_dir();
    cp_image im;
    if (make_image(&im, dir, "deep.tif", 'b', 101, 336, 333) == 0) {
        check_planes(&im, "deep norm3D (subsampled 2,1,1)", 0, 101, 100, 1, 99);
        check_planes(&im, "deep planes 1-100 (whole)", 1, 100, 200, 1, 99);
        close_image(&im);
    }
    remove_work_dir(dir);
}

/* Every rank got rc and the same message, containing `want`. */
static void check_failure(outcome *all, const char *what, int rc, const char *want)
{
    if (rank != 0) return;
    for (int r = 0; r < nranks; r++) {
        TU_CHECK(all[r].rc == rc && strstr(all[r].err, want) &&
                     strcmp(all[r].err, all[0].err) == 0 && !all[r].n[0].good &&
                     !all[r].n[1].good,
                 "%s: rank %d: rc %d (want %d) \"%s\" (want \"%s\", as rank 0)", what, r,
                 all[r].rc, rc, all[r].err, want);
    }
    printf("%s: rc %d on all %d ranks: %s\n", what, all[0].rc, nranks, all[0].err);
}

static void test_edge(void)
{
    const char *dir = work_dir();
    cp_image im;
    if (make_image(&im, dir, "const.tif", 'c', 1, 64, 48) == 0) {
        check_planes(&im, "constant", 0, 1, 3, 1, 99);
        close_image(&im);
    }
    if (make_image(&im, dir, "near.tif", 'n', 2, 64, 48) == 0) {
        check_planes(&im, "near-constant plane 0", 0, 1, 3, 1, 99);
        check_planes(&im, "near-constant norm3D", 0, 2, 5, 1, 99);
        if (rank == 0) {
            cp_norm ref[2];
            oracle(&im, 0, 2, 1, 99, ref);
            TU_CHECK(ref[0].good && ref[0].zero && ref[0].p99 - ref[0].p1 > 0 && !ref[1].good,
                     "near-constant: not the good-but-zero case: good %d zero %d %.17g %.17g",
                     ref[0].good, ref[0].zero, ref[0].p1, ref[0].p99);
        }
        /* bad parameters: the same CP_EPARAM on every rank */
        outcome *all = run_dnorm(&im, 0, 2, 3, 50, 50);
        check_failure(all, "q1 == q99", CP_EPARAM,
                      "dnorm: percentiles 50 50: need 0 <= low < high <= 100");
        free(all);
        all = run_dnorm(&im, 1, 2, 3, 1, 99);
        check_failure(all, "planes 1..2 of 2", CP_EPARAM,
                      "planes 1..2 in chunks of 3 rows: the image has planes 0..1");
        free(all);
        close_image(&im);
    }
    /* a NaN read by one rank (the last chunks): every rank fails with its message */
    if (make_image(&im, dir, "nan.tif", 'x', 2, 40, 30) == 0) {
        outcome *all = run_dnorm(&im, 0, 2, 2, 1, 99);
        check_failure(all, "NaN pixel", CP_EDATA,
                      tu_path("rank %d: %s: plane 1: 1 pixel values are NaN or Inf", nranks - 1,
                              im.path));
        free(all);
        close_image(&im);
    }
    remove_work_dir(dir);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &nranks);
    if (argc >= 3 && strcmp(argv[1], "case") == 0)
        test_case(argv[2]);
    else if (argc >= 2 && strcmp(argv[1], "big") == 0)
        test_big();
    else if (argc >= 2 && strcmp(argv[1], "deep") == 0)
        test_deep();
    else if (argc >= 2 && strcmp(argv[1], "edge") == 0)
        test_edge();
    else {
        if (rank == 0) fprintf(stderr, "usage: test_dnorm case <name> | big | deep | edge\n");
        MPI_Finalize();
        return 2;
    }
    /* every rank's checks count: sum the tallies on rank 0 */
    int mine[2] = {tu_passed, tu_failed}, sum[2];
    MPI_Reduce(mine, sum, 2, MPI_INT, MPI_SUM, 0, MPI_COMM_WORLD);
    int code = 0;
    if (rank == 0) {
        tu_passed = sum[0], tu_failed = sum[1];
        code = tu_finish();
    }
    MPI_Bcast(&code, 1, MPI_INT, 0, MPI_COMM_WORLD);
    MPI_Finalize();
    return code;
}
