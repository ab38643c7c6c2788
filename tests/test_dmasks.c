/* Tests of mpi/dmasks.c on N ranks (CELLPOSE_ALGORITHM.md §4.4-4.6, DESIGN.md §2.5, §2.7):
 *   test_dmasks case <name> [niter200|stitch025]  Cellpose's masks_raw from the oracle's own end
 *       points (p_final; for niter200, flow following of the oracle's dP for 200 steps), every
 *       plane, blocks of 32, 45, 64 and 128 (seams through seeds and growth windows): 0 pixels
 *       may differ;
 *   test_dmasks stress  hand-placed end-point clusters with tied counts on and near block seams
 *       (blocks of 8, 13, 32: halos spanning several blocks) against cp_masks_raw of the whole
 *       plane, and big-mask removal at the f64 limit;
 *   test_dmasks bad     bad "fin" content: every rank returns the failing rank's message, and the
 *       next run on the same ranks works. */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agree.h"
#include "bstore.h"
#include "cp_err.h"
#include "dmasks.h"
#include "dplane.h"
#include "follow.h"
#include "masks.h"
#include "refcase.h"
#include "testutil.h"

static int rank_, nranks_;

/* The test's work directory: rank 0's temporary directory, known to every rank. */
static const char *workdir(void)
{
    static char dir[256];
    if (!dir[0]) {
        if (rank_ == 0) snprintf(dir, sizeof dir, "%s", tu_tmpdir());
        MPI_Bcast(dir, sizeof dir, MPI_CHAR, 0, MPI_COMM_WORLD);
    }
    return dir;
}

/* Every rank writes "fin" of its own blocks: the particles (all of the plane, held by every rank)
 * whose end cell (trunc py, trunc px) lies in the block. */
static int put_fin(const cp_dplane *d, const cp_particle *p, int64_t n, char *err)
{
    const cp_grid *g = &d->grid;
    int64_t b0, b1;
    cp_grid_range(g, d->rank, &b0, &b1);
    int64_t *blk = malloc(sizeof *blk * (size_t)(n + 1)),
            *start = calloc((size_t)(g->nblocks + 1), sizeof *start);
    cp_particle *sorted = malloc(sizeof *sorted * (size_t)(n + 1));
    for (int64_t i = 0; i < n; i++) {
        blk[i] = cp_grid_block_at(g, (int64_t)p[i].py, (int64_t)p[i].px);
        start[blk[i] + 1]++;
    }
    for (int64_t b = 0; b < g->nblocks; b++) start[b + 1] += start[b];
    for (int64_t i = 0; i < n; i++)
        sorted[start[blk[i]]++] = p[i]; /* start[b]: end of block b now */
    char name[64];
    int rc = 0;
    for (int64_t b = b0; !rc && b < b1; b++) {
        int64_t s = b ? start[b - 1] : 0, e = start[b];
        if (e > s)
            rc = cp_bstore_put(d->store, cp_dname(d, CP_SLOT_FIN, name), b, sorted + s,
                               sizeof *sorted * (size_t)(e - s), err);
    }
    free(blk);
    free(start);
    free(sorted);
    return rc;
}

/* Runs cp_dmasks_run on the particles of a Ly x Lx plane (every rank holds all of them) with
 * blocks of side B in a fresh store; "m0" gathered into whole on rank 0. fin_hook, if set, may
 * overwrite "fin" arrays before the run. Returns the agreed status. */
typedef void (*fin_hook)(const cp_dplane *d);

static int run_plane(const cp_particle *p, int64_t n, int64_t Ly, int64_t Lx, int64_t B, int64_t z,
                     double fraction, fin_hook hook, uint32_t *whole, int64_t *nlabels,
                     double *seconds, char *err)
{
    static int runs;
    cp_bstore store;
    cp_dplane d;
    int rc = cp_bstore_open(&store, tu_path("%s/run%d", workdir(), runs++), err);
    cp_dplane_init(&d, MPI_COMM_WORLD, Ly, Lx, B, &store, z);
    if (!rc) rc = put_fin(&d, p, n, err);
    if ((rc = cp_agree(MPI_COMM_WORLD, rc, err))) return rc;
    if (hook) hook(&d);
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = tu_now();
    rc = cp_dmasks_run(&d, fraction, nlabels, err);
    *seconds = tu_now() - t0;
    if (!rc) rc = cp_dplane_gather_u32(&d, CP_SLOT_M0, whole, err);
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank_ == 0) cp_bstore_destroy(&store);
    return rc;
}

static uint32_t max_u32(const uint32_t *v, int64_t n)
{
    uint32_t m = 0;
    for (int64_t i = 0; i < n; i++) m = v[i] > m ? v[i] : m;
    return m;
}

/* ---- oracle parity ---- */

/* End points of plane z: the oracle's p_final, or (niter200) flow following on rank 0. */
static cp_particle *case_particles(const refcase *c, const tu_tiff *pf, int64_t z, int64_t *n)
{
    const int64_t npix = c->Ly * c->Lx;
    const float *cp = c->cellprob.f32 + z * npix;
    *n = cp_follow_particles(cp, c->Ly, c->Lx, c->threshold, NULL);
    cp_particle *p = malloc(sizeof *p * (size_t)(*n + 1));
    cp_follow_particles(cp, c->Ly, c->Lx, c->threshold, p);
    if (pf) {
        for (int64_t i = 0; i < *n; i++)
            p[i].py = pf->f32[z * npix + p[i].src], p[i].px = pf->f32[(c->Z + z) * npix + p[i].src];
        return p;
    }
    float *pos = malloc(sizeof *pos * (size_t)(2 * *n + 1));
    if (rank_ == 0) {
        float *dP = malloc(sizeof(float) * (size_t)(2 * npix)),
              *f = malloc(sizeof(float) * (size_t)(2 * npix));
        memcpy(dP, c->dP.f32 + z * npix, sizeof(float) * (size_t)npix);
        memcpy(dP + npix, c->dP.f32 + (c->Z + z) * npix, sizeof(float) * (size_t)npix);
        cp_follow_field(dP, cp, npix, c->threshold, f);
        cp_field F = {.Ly = c->Ly, .Lx = c->Lx, .ny = c->Ly, .nx = c->Lx, .f = f};
        TU_CHECK(cp_follow_run(&F, p, *n, c->niter, c->interp) == 0,
                 "flow following stopped early");
        for (int64_t i = 0; i < *n; i++) pos[2 * i] = p[i].py, pos[2 * i + 1] = p[i].px;
        free(dP);
        free(f);
    }
    MPI_Bcast(pos, (int)(2 * *n), MPI_FLOAT, 0, MPI_COMM_WORLD);
    for (int64_t i = 0; i < *n; i++) p[i].py = pos[2 * i], p[i].px = pos[2 * i + 1];
    free(pos);
    return p;
}

static int test_case(const char *name, const char *variant)
{
    static const int64_t blocks[] = {32, 45, 64, 128};
    refcase c = refcase_load(name, variant);
    const int64_t npix = c.Ly * c.Lx;
    tu_tiff pf = {0}, mr = tu_read_tiff(c.masks_raw);
    if (c.p_final) pf = tu_read_tiff(c.p_final);
    uint32_t *whole = malloc(sizeof *whole * (size_t)npix);
    int64_t worst = 0;
    for (int64_t z = 0; z < c.Z; z++) {
        int64_t n;
        cp_particle *p = case_particles(&c, c.p_final ? &pf : NULL, z, &n);
        const uint32_t *ref = mr.u32 + z * npix;
        for (size_t k = 0; k < sizeof blocks / sizeof *blocks; k++) {
            char err[CP_ERR_LEN] = "";
            int64_t nlab = -1;
            double dt = 0;
            int rc = run_plane(p, n, c.Ly, c.Lx, blocks[k], z, c.max_size_fraction, NULL, whole,
                               &nlab, &dt, err);
            TU_CHECK(rc == 0, "plane %lld block %lld: %s", (long long)z, (long long)blocks[k], err);
            if (rank_ != 0 || rc) continue;
            int64_t diff = tu_count_diff_u32(whole, ref, npix);
            worst = diff > worst ? diff : worst;
            printf(
                "%s %s plane %lld, %d ranks, block %lld: %lld particles, %lld labels (oracle %u), "
                "%.3f s, differing pixels %lld\n",
                name, variant, (long long)z, nranks_, (long long)blocks[k], (long long)n,
                (long long)nlab, max_u32(ref, npix), dt, (long long)diff);
            TU_CHECK(diff == 0 && nlab == (int64_t)max_u32(ref, npix),
                     "plane %lld block %lld: %lld pixels differ, %lld labels", (long long)z,
                     (long long)blocks[k], (long long)diff, (long long)nlab);
        }
        free(p);
    }
    if (rank_ == 0) printf("%s %s: worst differing pixels %lld\n", name, variant, (long long)worst);
    free(whole);
    tu_tiff_free(&pf);
    tu_tiff_free(&mr);
    refcase_free(&c);
    return 0;
}

/* ---- synthetic planes against cp_masks_raw ---- */

static uint32_t rnd(uint64_t *s)
{
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)(*s >> 33);
}

/* Particles ending in the cells of histogram h (Ly x Lx, counts), at random sub-cell positions,
 * from distinct random source pixels (the same on every rank). */
static cp_particle *particles_of(const int32_t *h, int64_t Ly, int64_t Lx, uint64_t seed,
                                 int64_t *n)
{
    int64_t total = 0, k = 0;
    for (int64_t i = 0; i < Ly * Lx; i++) total += h[i];
    int64_t *perm = malloc(sizeof *perm * (size_t)(Ly * Lx));
    for (int64_t i = 0; i < Ly * Lx; i++) perm[i] = i;
    for (int64_t i = Ly * Lx - 1; i > 0; i--) {
        int64_t j = rnd(&seed) % (uint64_t)(i + 1), t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
    cp_particle *p = malloc(sizeof *p * (size_t)(total + 1));
    for (int64_t i = 0; i < Ly * Lx; i++)
        for (int32_t c = 0; c < h[i]; c++) {
            int64_t y = i / Lx, x = i % Lx;
            float fy = y < Ly - 1 ? (float)(rnd(&seed) % 1000) / 1000.0f : 0.0f;
            float fx = x < Lx - 1 ? (float)(rnd(&seed) % 1000) / 1000.0f : 0.0f;
            p[k] = (cp_particle){.src = perm[k], .py = (float)y + fy, .px = (float)x + fx};
            k++;
        }
    free(perm);
    *n = total;
    return p;
}

/* Runs p on blocks of side B and compares with cp_masks_raw of the whole plane (0 differences,
 * the same number of labels). */
static void compare_whole(const char *what, const cp_particle *p, int64_t n, int64_t Ly, int64_t Lx,
                          int64_t B, double fraction, uint32_t *expect_nlabels)
{
    char err[CP_ERR_LEN] = "";
    uint32_t *whole = malloc(sizeof *whole * (size_t)(Ly * Lx)),
             *ref = malloc(sizeof *ref * (size_t)(Ly * Lx));
    int64_t nlab = -1, K = 0;
    double dt = 0;
    int rc = run_plane(p, n, Ly, Lx, B, 0, fraction, NULL, whole, &nlab, &dt, err);
    TU_CHECK(rc == 0, "%s block %lld: %s", what, (long long)B, err);
    if (rank_ == 0 && rc == 0) {
        rc = cp_masks_raw(p, n, Ly, Lx, fraction, ref, &K, err);
        TU_CHECK(rc == 0, "%s: cp_masks_raw: %s", what, err);
        int64_t diff = tu_count_diff_u32(whole, ref, Ly * Lx);
        printf(
            "%s, %d ranks, block %lld: %lld particles, %lld seeds, %lld labels (whole plane %u), "
            "%.3f s, differing pixels %lld\n",
            what, nranks_, (long long)B, (long long)n, (long long)K, (long long)nlab,
            max_u32(ref, Ly * Lx), dt, (long long)diff);
        TU_CHECK(diff == 0 && nlab == (int64_t)max_u32(ref, Ly * Lx),
                 "%s block %lld: %lld pixels differ", what, (long long)B, (long long)diff);
        if (expect_nlabels)
            TU_CHECK(nlab == (int64_t)*expect_nlabels, "%s: %lld labels, expected %u", what,
                     (long long)nlab, *expect_nlabels);
    }
    free(whole);
    free(ref);
}

/* Statistics of the seeds of the whole plane: how many, how many within 5 of a seam of blocks of
 * side B, and how many pairs of equal counts within growth reach (Chebyshev <= 10) lie in
 * different blocks (their overlap is decided by the global sort). */
static void seed_stats(const cp_particle *p, int64_t n, int64_t Ly, int64_t Lx, int64_t B,
                       int64_t *K, int64_t *near_seam, int64_t *tied_pairs)
{
    const int64_t W = Lx + 2 * CP_RPAD;
    int32_t *h = calloc((size_t)((Ly + 2 * CP_RPAD) * W), sizeof *h);
    cp_seed *s = NULL;
    char err[CP_ERR_LEN];
    cp_masks_histogram(p, n, Ly, Lx, h, err);
    cp_masks_seeds(h, Ly, Lx, &s, K, err);
    *near_seam = *tied_pairs = 0;
    for (int64_t i = 0; i < *K; i++) {
        int64_t y = s[i].idx / W - CP_RPAD, x = s[i].idx % W - CP_RPAD;
        int64_t dy = y % B < B - 1 - y % B ? y % B : B - 1 - y % B;
        int64_t dx = x % B < B - 1 - x % B ? x % B : B - 1 - x % B;
        *near_seam += (dy < 5 && y >= B) || (dx < 5 && x >= B);
        for (int64_t j = i + 1; j < *K; j++) {
            int64_t y2 = s[j].idx / W - CP_RPAD, x2 = s[j].idx % W - CP_RPAD;
            if (s[j].count == s[i].count && llabs(y2 - y) <= 10 && llabs(x2 - x) <= 10 &&
                (y / B != y2 / B || x / B != x2 / B))
                ++*tied_pairs;
        }
    }
    free(s);
    free(h);
}

static void stress_seams(void)
{
    enum { LY = 157, LX = 181 };
    int32_t *h = calloc(LY * LX, sizeof *h);
    uint64_t seed = 12345;
    /* clusters centred within 5 pixels of the seams of blocks of 32 (and by chance of 13 and 8),
     * counts 11..13 (ties), each with a few cells of count 3..5 around it that growth can cross */
    for (int k = 0; k < 90; k++) {
        int64_t y = 32 * (1 + (int64_t)(rnd(&seed) % 4)) + (int64_t)(rnd(&seed) % 11) - 5;
        int64_t x = k % 3 ? 32 * (1 + (int64_t)(rnd(&seed) % 5)) + (int64_t)(rnd(&seed) % 11) - 5
                          : (int64_t)(rnd(&seed) % LX);
        h[y * LX + x] = 11 + (int32_t)(rnd(&seed) % 3);
        for (int j = 0; j < 6; j++) {
            int64_t yy = y + (int64_t)(rnd(&seed) % 9) - 4, xx = x + (int64_t)(rnd(&seed) % 9) - 4;
            if (yy >= 0 && yy < LY && xx >= 0 && xx < LX && h[yy * LX + xx] < 3)
                h[yy * LX + xx] = 3 + (int32_t)(rnd(&seed) % 3);
        }
    }
    /* tied pairs across seams of 32 (also seams of 8), joined by a path of cells of count 3..5:
     * the cells within 5 steps of both go to the seed that comes later in Cellpose's unstable
     * order, so the labels depend on the global order of the ties */
    for (int k = 0; k < 24; k++) {
        int64_t s = 32 * (1 + (int64_t)(rnd(&seed) % 4)) - 1 - (int64_t)(rnd(&seed) % 5);
        int64_t len = 4 + (int64_t)(rnd(&seed) % 6), across = 5 + (int64_t)(rnd(&seed) % (LY - 10));
        int32_t count = 11 + (int32_t)(rnd(&seed) % 2);
        for (int64_t i = 0; i <= len; i++) {
            int64_t at = k % 2 ? across * LX + s + i : (s + i) * LX + across % LX;
            h[at] = i == 0 || i == len ? count : 3 + (int32_t)(rnd(&seed) % 3);
        }
    }
    /* clusters on the plane's edges and corners (the extended windows leave the plane) */
    const int64_t edge[][2] = {{0, 0},           {0, LX - 1}, {LY - 1, 0},
                               {LY - 1, LX - 1}, {0, 90},     {80, LX - 1}};
    for (size_t k = 0; k < sizeof edge / sizeof *edge; k++) h[edge[k][0] * LX + edge[k][1]] = 12;
    int64_t n, K, near, tied;
    cp_particle *p = particles_of(h, LY, LX, 99, &n);
    seed_stats(p, n, LY, LX, 32, &K, &near, &tied);
    if (rank_ == 0)
        printf(
            "stress plane %d x %d: %lld seeds, %lld within 5 px of a seam of 32, %lld tied pairs "
            "within reach across seams\n",
            LY, LX, (long long)K, (long long)near, (long long)tied);
    TU_CHECK(K > 16 && near > 10 && tied > 5,
             "the stress plane is not stressful: %lld seeds, %lld "
             "near seams, %lld tied pairs",
             (long long)K, (long long)near, (long long)tied);
    static const int64_t blocks[] = {8, 13, 32, 45};
    for (size_t k = 0; k < sizeof blocks / sizeof *blocks; k++)
        compare_whole("stress seams", p, n, LY, LX, blocks[k], 0.4, NULL);
    free(p);
    free(h);
}

/* Three masks on a 60 x 70 plane with fraction 0.1 (limit 4200 * 0.1 = 420 in f64): A (421
 * pixels, across a seam of blocks of 16) is removed, B (420, not strictly above) and C kept. */
static void stress_big(void)
{
    enum { LY = 60, LX = 70 };
    int32_t *h = calloc(LY * LX, sizeof *h);
    h[15 * LX + 15] = 301, h[15 * LX + 16] = 40, h[16 * LX + 15] = 40, h[16 * LX + 16] = 40;
    h[40 * LX + 47] = 300, h[40 * LX + 48] = 40, h[41 * LX + 47] = 40, h[41 * LX + 48] = 40;
    h[5 * LX + 60] = 12;
    int64_t n;
    cp_particle *p = particles_of(h, LY, LX, 7, &n);
    TU_CHECK((double)(LY * LX) * 0.1 == 420.0, "the f64 limit is not 420");
    uint32_t two = 2, three = 3;
    static const int64_t blocks[] = {16, 32};
    for (size_t k = 0; k < sizeof blocks / sizeof *blocks; k++) {
        compare_whole("big masks 0.1", p, n, LY, LX, blocks[k], 0.1, &two);
        compare_whole("big masks 0.4", p, n, LY, LX, blocks[k], 0.4, &three);
    }
    compare_whole("big masks 0.002 (all removed)", p, n, LY, LX, 16, 0.002, &(uint32_t){0});
    free(p);
    free(h);
}

static int test_stress(void)
{
    stress_seams();
    stress_big();
    /* no particle at all: no seeds, zeros */
    compare_whole("empty plane", NULL, 0, 50, 40, 16, 0.4, &(uint32_t){0});
    return 0;
}

/* ---- bad input ---- */

static const char *bad_kind;

/* Overwrites "fin" of a block of the last rank (the last block) or of rank 0 (block 0). */
static void put_bad(const cp_dplane *d)
{
    char name[64], err[CP_ERR_LEN];
    cp_dname(d, CP_SLOT_FIN, name);
    int64_t b = strcmp(bad_kind, "outside") == 0 || strcmp(bad_kind, "short") == 0
                    ? d->grid.nblocks - 1
                    : 0;
    if (cp_grid_owner(&d->grid, b) != d->rank) return;
    cp_particle q = {.src = 5, .py = 0.5f, .px = 1.0f};
    if (strcmp(bad_kind, "nan") == 0) q.py = NAN;
    if (strcmp(bad_kind, "src") == 0) q.src = d->grid.Ly * d->grid.Lx;
    cp_bstore_put(d->store, name, b, &q, strcmp(bad_kind, "short") == 0 ? 10 : sizeof q, err);
}

static void expect_bad(const char *kind, const char *msg)
{
    enum { L = 40 };
    int32_t h[L * L] = {0};
    h[20 * L + 20] = 15, h[3 * L + 3] = 12;
    int64_t n, nlab = -1;
    cp_particle *p = particles_of(h, L, L, 3, &n);
    char err[CP_ERR_LEN] = "";
    uint32_t whole[L * L];
    double dt;
    bad_kind = kind;
    int rc = run_plane(p, n, L, L, 16, 0, 0.4, put_bad, whole, &nlab, &dt, err);
    if (rank_ == 0) printf("bad %s -> %d \"%s\"\n", kind, rc, err);
    TU_CHECK(rc == CP_EDATA || rc == CP_EFORMAT, "%s: status %d", kind, rc);
    TU_CHECK(strcmp(err, msg) == 0, "%s: got \"%s\", expected \"%s\"", kind, err, msg);
    free(p);
}

static int test_bad(void)
{
    cp_grid g; /* the plane of expect_bad: 40 x 40 in blocks of 16 */
    cp_grid_init(&g, 40, 40, 16, nranks_);
    const int last = cp_grid_owner(&g, 8);
    expect_bad("outside",
               tu_path("rank %d: dmasks: block 8: particle 0: end cell (0, 1) outside the "
                       "block (rows 32..39, columns 32..39)",
                       last));
    expect_bad("nan",
               "rank 0: dmasks: block 0: particle 0: end point (nan, 1) outside the 40 x 40 plane");
    expect_bad("src",
               "rank 0: dmasks: block 0: particle 0: source pixel 1600 outside the 40 x 40 plane");
    expect_bad("short",
               tu_path("rank %d: dmasks: block 8: \"fin.z0\" has 10 bytes, not whole particle "
                       "records",
                       last));
    /* the ranks are still in step: a good plane next */
    uint32_t two = 2;
    int32_t h[40 * 40] = {0};
    h[20 * 40 + 20] = 15, h[3 * 40 + 3] = 12;
    int64_t n;
    cp_particle *p = particles_of(h, 40, 40, 3, &n);
    compare_whole("after the errors", p, n, 40, 40, 16, 0.4, &two);
    free(p);
    return 0;
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &nranks_);
    setvbuf(stdout, NULL, _IOLBF, 0);
    int usage = 0;
    workdir();
    if (argc >= 3 && strcmp(argv[1], "case") == 0)
        test_case(argv[2], argc > 3 ? argv[3] : "");
    else if (argc == 2 && strcmp(argv[1], "stress") == 0)
        test_stress();
    else if (argc == 2 && strcmp(argv[1], "bad") == 0)
        test_bad();
    else
        usage = 1;
    if (usage && rank_ == 0)
        fprintf(stderr, "usage: test_dmasks case <name> [niter200|stitch025] | stress | bad\n");
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank_ == 0 && !usage) tu_run("rm -rf %s", workdir());
    int failed = tu_failed;
    MPI_Allreduce(MPI_IN_PLACE, &failed, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    int code = usage ? 2 : 0;
    if (rank_ == 0 && !usage) {
        tu_failed = failed;
        code = tu_finish();
    }
    MPI_Finalize();
    return rank_ == 0 ? code : 0;
}
