/* Tests of mpi/dfollow.c (particle rounds over owner blocks), run under mpirun at several rank
 * counts:
 *   test_dfollow case <name> <B>  the oracle's dP/cellprob in "dp" blocks of side B; the gathered
 *       "fin" particles scattered into a p_final array must equal the oracle's p_final bit for bit;
 *   test_dfollow stress <B>  a conveyor-belt field (x5) along a long snake-shaped cell whose
 *       particles cross dozens of blocks in 2000 iterations (interp on and off; the exchange
 *       split into messages of 40 particles with the held particles spilled to the store now and
 *       then), and Cellpose's ideal flows of that snake, each bit-identical to cp_follow_run on
 *       the whole field; prints the time of both (the migration overhead);
 *   test_dfollow edges  0 steps, a bad message size, a missing "dp" block on the last rank (every
 *       rank returns that rank's error, no hang).
 * Every run also checks the contract of "fin": each block's array sorted by src, end cells inside
 * the block, all steps done, each source pixel exactly once. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#include "bstore.h"
#include "cp_err.h"
#include "dfollow.h"
#include "dplane.h"
#include "dtest.h"
#include "flows.h"
#include "follow.h"
#include "refcase.h"
#include "testutil.h"

static int rank_, nranks_;

static int by_src(const void *a, const void *b)
{
    int64_t x = ((const cp_particle *)a)->src, y = ((const cp_particle *)b)->src;
    return (x > y) - (x < y);
}

static int64_t cell(float v, int64_t L) { return !(v > 0.0f) ? 0 : v >= (float)(L - 1) ? L - 1 : (int64_t)v; }

/* Every "fin" particle on rank 0, sorted by src (*n its count; NULL on other ranks). Owners
 * first check their blocks' arrays: sorted by src, end cells in the block, all steps done. */
static cp_particle *gather_fin(const cp_dplane *d, int32_t steps, int64_t *n)
{
    char name[64];
    cp_dname(d, CP_SLOT_FIN, name);
    int64_t b0, b1, mine = 0, bad = 0;
    cp_grid_range(&d->grid, d->rank, &b0, &b1);
    for (int64_t b = b0; b < b1; b++) {
        int64_t s = cp_bstore_size(d->store, name, b);
        TU_CHECK(s >= 0 && s % (int64_t)sizeof(cp_particle) == 0, "block %lld: fin of %lld bytes",
                 (long long)b, (long long)s);
        mine += s > 0 ? s / (int64_t)sizeof(cp_particle) : 0;
    }
    cp_particle *p = malloc(sizeof *p * (size_t)(mine ? mine : 1));
    char err[CP_ERR_LEN] = "";
    for (int64_t b = b0, k = 0; b < b1; b++) {
        int64_t m = cp_bstore_size(d->store, name, b) / (int64_t)sizeof(cp_particle);
        if (m <= 0) continue;
        TU_CHECK(cp_bstore_get(d->store, name, b, p + k, sizeof *p * (size_t)m, err) == 0, "%s", err);
        cp_rect r = cp_grid_block(&d->grid, b);
        for (int64_t i = k; i < k + m; i++) {
            int64_t y = cell(p[i].py, d->grid.Ly), x = cell(p[i].px, d->grid.Lx);
            bad += (i > k && p[i].src <= p[i - 1].src) || p[i].steps != (steps > 0 ? steps : 0) ||
                   y < r.y0 || y >= r.y0 + r.ny || x < r.x0 || x >= r.x0 + r.nx;
        }
        k += m;
    }
    TU_CHECK(bad == 0, "rank %d: %lld fin particles unsorted, unfinished or outside their block",
             d->rank, (long long)bad);
    cp_particle *all = dtest_gather(d->comm, p, mine, sizeof *p, n);
    if (all) qsort(all, (size_t)*n, sizeof *all, by_src);
    free(p);
    return all;
}

/* Runs cp_dfollow_run_opts (max_msg 0: cp_dfollow_run) and returns the gathered particles on
 * rank 0; prints rounds and time. */
static cp_particle *run_dist(const cp_dplane *d, int32_t steps, int interp, float threshold,
                             int64_t max_msg, int64_t max_held, int64_t *n, double *seconds)
{
    char err[CP_ERR_LEN] = "";
    int64_t rounds = 0;
    MPI_Barrier(d->comm);
    double t0 = MPI_Wtime();
    int rc = max_msg ? cp_dfollow_run_opts(d, steps, interp, threshold, max_msg, max_held, &rounds, err)
                     : cp_dfollow_run(d, steps, interp, threshold, &rounds, err);
    *seconds = MPI_Wtime() - t0;
    TU_CHECK(rc == 0, "cp_dfollow_run: %s", err);
    if (rank_ == 0)
        printf("  %d ranks, B %lld (%lld blocks), interp %d, max_msg %lld, max_held %lld: %lld "
               "rounds, %.3f s\n", nranks_, (long long)d->grid.B, (long long)d->grid.nblocks, interp,
               (long long)(max_msg ? max_msg : INT_MAX / nranks_),
               (long long)(max_msg ? max_held : CP_DFOLLOW_MAX_HELD), (long long)rounds, *seconds);
    return gather_fin(d, steps, n);
}

/* Rank 0: the gathered particles are the plane's seeds, each exactly once (cellprob > threshold,
 * ascending src). Returns 1 if so. */
static int check_sources(const cp_particle *p, int64_t n, const float *cellprob, int64_t npix,
                         float threshold)
{
    int64_t k = 0, bad = 0;
    for (int64_t i = 0; i < npix; i++)
        if (cellprob[i] > threshold) bad += k >= n || p[k++].src != i;
    printf("  %lld particles gathered, %lld seeds expected, %lld mismatches\n", (long long)n,
           (long long)k, (long long)bad);
    TU_CHECK(bad == 0 && k == n, "sources: %lld gathered, %lld expected, %lld mismatches",
             (long long)n, (long long)k, (long long)bad);
    return bad == 0 && k == n;
}

static int test_case(const char *name, int64_t B)
{
    refcase c = refcase_load(name, "");
    const int64_t npix = c.Ly * c.Lx;
    if (rank_ == 0)
        printf("%s: %lld x %lld, niter %d, threshold %g, interp %d\n", name, (long long)c.Ly,
               (long long)c.Lx, c.niter, (double)c.threshold, c.interp);
    TU_CHECK(c.Z == 1 && c.p_final, "%s: a single plane with p_final expected", name);
    cp_bstore s;
    dtest_open_store(&s);
    cp_dplane d;
    cp_dplane_init(&d, MPI_COMM_WORLD, c.Ly, c.Lx, B, &s, 0);
    char err[CP_ERR_LEN] = "";
    TU_CHECK(cp_dplane_put_dp(&d, c.dP.f32, c.cellprob.f32, err) == 0, "put_dp: %s", err);
    int64_t n = 0;
    double t = 0;
    cp_particle *p = run_dist(&d, c.niter, c.interp, c.threshold, 0, 0, &n, &t);
    if (rank_ == 0 && check_sources(p, n, c.cellprob.f32, npix, c.threshold)) {
        tu_tiff pf = tu_read_tiff(c.p_final);
        float *mine = malloc(sizeof(float) * (size_t)(2 * npix));
        for (int64_t i = 0; i < npix; i++) mine[i] = (float)(i / c.Lx), mine[npix + i] = (float)(i % c.Lx);
        for (int64_t i = 0; i < n; i++) mine[p[i].src] = p[i].py, mine[npix + p[i].src] = p[i].px;
        int64_t diff = refcase_count_diff_bits(mine, pf.f32, 2 * npix), where;
        double worst = tu_maxabs(mine, pf.f32, 2 * npix, &where);
        printf("  p_final differing values %lld of %lld, max |diff| %g\n", (long long)diff,
               (long long)(2 * npix), worst);
        TU_CHECK(diff == 0, "%s: %lld p_final values differ (max %g)", name, (long long)diff, worst);
        free(mine);
        tu_tiff_free(&pf);
    }
    free(p);
    dtest_close_store(&s);
    refcase_free(&c);
    return tu_finish();
}

/* ---- a long snake ---- */

enum { SNAKE_H = 5, SNAKE_PITCH = 8, SNAKE_MARGIN = 4, SNAKE_END = 5 };

/* Strip k of the snake (rows y0..y0+SNAKE_H-1, columns SNAKE_MARGIN..Lx-SNAKE_MARGIN-1) runs
 * right for even k, left for odd k; the joint to strip k+1 is SNAKE_END columns wide at its
 * right (even k) or left end, in the rows between the strips. Calls fn(y, x, dy, dx) for every
 * pixel of the snake with the unit flow of a conveyor belt along it: along the strip, down in the
 * last SNAKE_END columns of a strip and in the joints. */
static void snake(int64_t Ly, int64_t Lx, void (*fn)(void *, int64_t, int64_t, float, float), void *arg)
{
    const int64_t x0 = SNAKE_MARGIN, x1 = Lx - SNAKE_MARGIN;
    for (int64_t y0 = SNAKE_MARGIN, k = 0; y0 + SNAKE_H <= Ly - SNAKE_MARGIN; y0 += SNAKE_PITCH, k++) {
        const int right = k % 2 == 0;
        const int64_t e0 = right ? x1 - SNAKE_END : x0, e1 = e0 + SNAKE_END; /* exit columns */
        const int last = y0 + SNAKE_PITCH + SNAKE_H > Ly - SNAKE_MARGIN;
        for (int64_t y = y0; y < y0 + (last ? SNAKE_H : SNAKE_PITCH); y++)
            for (int64_t x = x0; x < x1; x++) {
                const int exit = x >= e0 && x < e1;
                if (y < y0 + SNAKE_H) fn(arg, y, x, exit ? 1.0f : 0.0f, exit ? 0.0f : right ? 1.0f : -1.0f);
                else if (exit) fn(arg, y, x, 1.0f, 0.0f);
            }
    }
}

typedef struct plane_in {
    int64_t Lx, npix;
    uint32_t *lab;
    float *dP, *cellprob;
} plane_in;

static void put_label(void *arg, int64_t y, int64_t x, float dy, float dx)
{
    plane_in *P = arg;
    (void)dy, (void)dx;
    P->lab[y * P->Lx + x] = 1;
}

static void put_belt(void *arg, int64_t y, int64_t x, float dy, float dx)
{
    plane_in *P = arg;
    P->dP[y * P->Lx + x] = 5.0f * dy;
    P->dP[P->npix + y * P->Lx + x] = 5.0f * dx;
    P->cellprob[y * P->Lx + x] = 6.0f;
}

/* The snake's field: ideal == 1, Cellpose's ideal flows of the snake as one cell (x5, as in
 * training), else the conveyor belt (x5); cellprob +6 inside, -6 outside. */
static void snake_field(plane_in *P, int64_t Ly, int ideal)
{
    for (int64_t i = 0; i < 2 * P->npix; i++) P->dP[i] = 0.0f;
    for (int64_t i = 0; i < P->npix; i++) P->cellprob[i] = -6.0f;
    if (!ideal) {
        snake(Ly, P->Lx, put_belt, P);
        return;
    }
    memset(P->lab, 0, sizeof *P->lab * (size_t)P->npix);
    snake(Ly, P->Lx, put_label, P);
    double *mu = malloc(sizeof(double) * (size_t)(2 * P->npix));
    char err[CP_ERR_LEN] = "";
    TU_CHECK(cp_masks_to_flows(P->lab, Ly, P->Lx, mu, err) == 0, "masks_to_flows: %s", err);
    for (int64_t i = 0; i < 2 * P->npix; i++) P->dP[i] = (float)(5.0 * mu[i]);
    for (int64_t i = 0; i < P->npix; i++) P->cellprob[i] = P->lab[i] ? 6.0f : -6.0f;
    free(mu);
}

/* Compares the gathered particles with the whole-field ones (both by src); returns differences. */
static int64_t count_diff(const cp_particle *a, const cp_particle *b, int64_t n)
{
    int64_t d = 0;
    for (int64_t i = 0; i < n; i++)
        d += a[i].src != b[i].src || memcmp(&a[i].py, &b[i].py, 4) || memcmp(&a[i].px, &b[i].px, 4) ||
             a[i].steps != b[i].steps;
    return d;
}

static int test_stress(int64_t B)
{
    const int64_t Ly = 216, Lx = 216, npix = Ly * Lx;
    const int32_t niter = 2000;
    const float threshold = 0.0f;
    plane_in P = {.Lx = Lx, .npix = npix, .lab = malloc(sizeof(uint32_t) * (size_t)npix),
                  .dP = malloc(sizeof(float) * (size_t)(2 * npix)),
                  .cellprob = malloc(sizeof(float) * (size_t)npix)};
    float *f = malloc(sizeof(float) * (size_t)(2 * npix));
    cp_bstore s;
    dtest_open_store(&s);
    cp_dplane d;
    cp_dplane_init(&d, MPI_COMM_WORLD, Ly, Lx, B, &s, 0);
    /* the belt carries most particles over dozens of blocks; the ideal flows vanish (below
     * masks_to_flows' 1e-60 floor) a few hundred pixels from the centre along the thin snake */
    const struct { int ideal, interp; int64_t max_msg, max_held, min_far; } runs[4] = {
        {0, 1, 0, 0, 20000}, {0, 0, 0, 0, 20000}, {0, 1, 40, 3000, 20000},
        {1, 1, 0, 0, 200}};
    for (int k = 0; k < 4; k++) {
        char err[CP_ERR_LEN] = "";
        snake_field(&P, Ly, runs[k].ideal);
        TU_CHECK(cp_dplane_put_dp(&d, P.dP, P.cellprob, err) == 0, "put_dp: %s", err);
        const int64_t nseed = cp_follow_particles(P.cellprob, Ly, Lx, threshold, NULL);
        cp_particle *whole = malloc(sizeof *whole * (size_t)nseed);
        double tw = 0, td = 0;
        if (rank_ == 0) {
            printf("snake %lld x %lld, %s flows: %lld particles, niter %d\n", (long long)Ly,
                   (long long)Lx, runs[k].ideal ? "ideal" : "belt", (long long)nseed, niter);
            cp_follow_field(P.dP, P.cellprob, npix, threshold, f);
            const cp_field F = {.Ly = Ly, .Lx = Lx, .y0 = 0, .x0 = 0, .ny = Ly, .nx = Lx, .f = f};
            cp_follow_particles(P.cellprob, Ly, Lx, threshold, whole);
            double t0 = MPI_Wtime();
            cp_follow_run(&F, whole, nseed, niter, runs[k].interp);
            tw = MPI_Wtime() - t0;
        }
        int64_t n = 0;
        cp_particle *p = run_dist(&d, niter, runs[k].interp, threshold, runs[k].max_msg,
                                  runs[k].max_held, &n, &td);
        if (rank_ == 0 && check_sources(p, n, P.cellprob, npix, threshold)) {
            int64_t far = 0, diff = count_diff(p, whole, n);
            for (int64_t i = 0; i < n; i++) {
                int64_t y = p[i].src / Lx, x = p[i].src % Lx;
                far += labs(cell(p[i].py, Ly) - y) + labs(cell(p[i].px, Lx) - x) > 4 * B;
            }
            printf("  vs whole field: %lld of %lld particles differ; %lld ended more than %lld px "
                   "away; whole field %.3f s, distributed %.3f s (x%.2f)\n", (long long)diff,
                   (long long)n, (long long)far, (long long)(4 * B), tw, td, tw > 0 ? td / tw : 0.0);
            TU_CHECK(diff == 0, "snake %d: %lld particles differ", k, (long long)diff);
            TU_CHECK(far >= runs[k].min_far, "snake %d: only %lld particles travelled far", k,
                     (long long)far);
        }
        free(p);
        free(whole);
    }
    dtest_close_store(&s);
    free(f), free(P.lab), free(P.dP), free(P.cellprob);
    return tu_finish();
}

/* ---- edges and failures ---- */

static int test_edges(void)
{
    const int64_t Ly = 50, Lx = 70, npix = Ly * Lx, B = 16;
    float *dP = malloc(sizeof(float) * (size_t)(2 * npix)), *cellprob = malloc(sizeof(float) * (size_t)npix);
    uint64_t st = 12345;
    for (int64_t i = 0; i < 2 * npix; i++) {
        st = st * 6364136223846793005ULL + 1442695040888963407ULL;
        dP[i] = (float)((double)(st >> 40) / (double)(1 << 24) * 8.0 - 4.0);
        if (i < npix) cellprob[i] = (float)((double)(st >> 20 & 0xfffff) / (double)(1 << 20) * 2.0 - 1.0);
    }
    cp_bstore s;
    dtest_open_store(&s);
    cp_dplane d;
    cp_dplane_init(&d, MPI_COMM_WORLD, Ly, Lx, B, &s, 0);
    char err[CP_ERR_LEN] = "";
    TU_CHECK(cp_dplane_put_dp(&d, dP, cellprob, err) == 0, "put_dp: %s", err);

    /* 0 steps: every particle is finished where it starts, in one round */
    int64_t rounds = 0, n = 0;
    int rc = cp_dfollow_run(&d, 0, 1, 0.0f, &rounds, err);
    TU_CHECK(rc == 0 && rounds == 1, "0 steps: rc %d, %lld rounds: %s", rc, (long long)rounds, err);
    cp_particle *p = gather_fin(&d, 0, &n);
    if (rank_ == 0 && check_sources(p, n, cellprob, npix, 0.0f)) {
        int64_t moved = 0;
        for (int64_t i = 0; i < n; i++)
            moved += p[i].py != (float)(p[i].src / Lx) || p[i].px != (float)(p[i].src % Lx);
        printf("  0 steps: %lld rounds, %lld of %lld particles moved\n", (long long)rounds,
               (long long)moved, (long long)n);
        TU_CHECK(moved == 0, "0 steps: %lld particles moved", (long long)moved);
    }
    free(p);

    /* a message size below 1 */
    rc = cp_dfollow_run_opts(&d, 10, 1, 0.0f, 0, 100, &rounds, err);
    if (rank_ == 0) printf("  max_msg 0: %s\n", err);
    TU_CHECK(rc == CP_EPARAM && strcmp(err, "rank 0: dfollow.c: max_msg 0, max_held 100: need "
                                       "max_msg >= 1 and max_held >= 0") == 0,
             "max_msg 0: rc %d, %s", rc, err);

    /* the last rank loses its last "dp" block: every rank returns its error */
    int64_t b0, b1;
    cp_grid_range(&d.grid, nranks_ - 1, &b0, &b1);
    char name[64], path[4200], want[4400];
    cp_bstore_path(&s, cp_dname(&d, CP_SLOT_DP, name), b1 - 1, path, sizeof path);
    snprintf(want, sizeof want, "rank %d: dfollow.c: block %lld: %s: cannot open: No such file or "
             "directory", nranks_ - 1, (long long)(b1 - 1), path);
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank_ == nranks_ - 1) cp_bstore_remove(&s, name, b1 - 1);
    MPI_Barrier(MPI_COMM_WORLD);
    rc = cp_dfollow_run(&d, 100, 1, 0.0f, &rounds, err);
    if (rank_ == 0) printf("  missing dp: %s\n", err);
    TU_CHECK(rc == CP_EIO && strcmp(err, want) == 0, "missing dp: rc %d, '%s', want '%s'", rc, err, want);

    dtest_close_store(&s);
    free(dP), free(cellprob);
    return tu_finish();
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &nranks_);
    int rc = 2;
    if (argc == 4 && strcmp(argv[1], "case") == 0)
        rc = test_case(argv[2], atoll(argv[3]));
    else if (argc == 3 && strcmp(argv[1], "stress") == 0)
        rc = test_stress(atoll(argv[2]));
    else if (argc == 2 && strcmp(argv[1], "edges") == 0)
        rc = test_edges();
    else if (rank_ == 0)
        fprintf(stderr, "usage: test_dfollow case <name> <B> | stress <B> | edges\n");
    MPI_Finalize();
    return rc;
}
