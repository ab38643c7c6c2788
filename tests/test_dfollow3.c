/* Tests of mpi/dfollow3.c (3-D particle rounds over owner blocks, on mpi/prounds.c), run under
 * mpirun at several rank counts:
 *   test_dfollow3 case <name> <variant> <B>...  the oracle's dP/cellprob (variant "" or
 *       "nointerp") in "dp3" blocks of side B (0: one block holding the volume); the gathered
 *       "fin3" end points must equal the oracle's p_final and cp_follow3_run on the whole volume
 *       bit for bit; the first B also runs with the exchange split into messages of 5 particles
 *       and the held particles spilled to the store every 64;
 *   test_dfollow3 edges  0 and 20 steps of a uniform flow, bad parameters, NaN flows and a
 *       missing "dp3" block on the last rank: every rank returns the same error, no hang.
 * Every run also checks the contract of "fin3": each block's array sorted by src, end voxels
 * inside the block, all steps done, each seed voxel exactly once. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#include "bstore.h"
#include "cp_err.h"
#include "dfollow.h"
#include "dfollow3.h"
#include "dtest.h"
#include "follow3d.h"
#include "refcase.h"
#include "testutil.h"

static int rank_, nranks_;

/* Every "fin3" particle on rank 0 in block order (*n its count; NULL on other ranks). Owners
 * first check their blocks' arrays: sorted by src, end voxels in the block, all steps done. */
static cp_particle3 *gather_fin(const cp_grid *g, const cp_bstore *s, int32_t steps, int64_t *n)
{
    int64_t b0, b1, mine = 0, bad = 0;
    cp_grid_range(g, rank_, &b0, &b1);
    for (int64_t b = b0; b < b1; b++) {
        int64_t sz = cp_bstore_size(s, CP_DFOLLOW3_FIN, b);
        TU_CHECK(sz >= 0 && sz % (int64_t)sizeof(cp_particle3) == 0, "block %lld: fin3 of %lld bytes",
                 (long long)b, (long long)sz);
        mine += sz > 0 ? sz / (int64_t)sizeof(cp_particle3) : 0;
    }
    cp_particle3 *p = malloc(sizeof *p * (size_t)(mine ? mine : 1));
    char err[CP_ERR_LEN] = "";
    const int64_t L[3] = {g->Lz, g->Ly, g->Lx};
    for (int64_t b = b0, k = 0; b < b1; b++) {
        int64_t m = cp_bstore_size(s, CP_DFOLLOW3_FIN, b) / (int64_t)sizeof(cp_particle3);
        if (m <= 0) continue;
        TU_CHECK(cp_bstore_get(s, CP_DFOLLOW3_FIN, b, p + k, sizeof *p * (size_t)m, err) == 0, "%s", err);
        const cp_box3 r = cp_grid_box(g, b);
        for (int64_t i = k; i < k + m; i++) {
            int64_t v[3];
            cp_follow3_cell(&p[i], L, 0, v);
            int out = 0;
            for (int a = 0; a < 3; a++) out |= v[a] < r.o[a] || v[a] >= r.o[a] + r.n[a];
            bad += (i > k && p[i].src <= p[i - 1].src) || p[i].steps != steps || out;
        }
        k += m;
    }
    TU_CHECK(bad == 0, "rank %d: %lld fin3 particles unsorted, unfinished or outside their block",
             rank_, (long long)bad);
    cp_particle3 *all = dtest_gather(MPI_COMM_WORLD, p, mine, sizeof *p, n);
    free(p);
    return all;
}

/* p_final of n particles: (3, L) with the particles' end points at their source voxels, the
 * others at their own voxel (as the oracle writes it). */
static float *p_final(const cp_particle3 *p, int64_t n, const int64_t L[3])
{
    const int64_t nv = L[0] * L[1] * L[2];
    float *f = malloc(sizeof *f * (size_t)(3 * nv));
    for (int64_t i = 0; i < nv; i++)
        f[i] = (float)(i / (L[1] * L[2])), f[nv + i] = (float)(i / L[2] % L[1]), f[2 * nv + i] = (float)(i % L[2]);
    for (int64_t i = 0; i < n; i++)
        for (int k = 0; k < 3; k++) f[k * nv + p[i].src] = p[i].c[k];
    return f;
}

/* One distributed run with blocks of side B: rank 0 compares the gathered end points, in source
 * order, with the whole-volume run `whole` (n particles) and the oracle's `ref` p_final. */
static void run_blocks(const refcase *c, const int64_t L[3], int64_t B, int64_t max_msg,
                       int64_t max_held, const cp_particle3 *whole, int64_t n, const float *ref)
{
    cp_bstore s;
    dtest_open_store(&s);
    cp_grid g;
    cp_grid_init3(&g, L[0], L[1], L[2], B, nranks_);
    char err[CP_ERR_LEN] = "";
    TU_CHECK(cp_dfollow3_put(MPI_COMM_WORLD, &g, &s, c->dP.f32, c->cellprob.f32, err) == 0,
             "put: %s", err);
    int64_t rounds = 0, m = 0;
    MPI_Barrier(MPI_COMM_WORLD);
    const double t0 = MPI_Wtime();
    int rc = cp_dfollow3_run(MPI_COMM_WORLD, &g, &s, c->niter, c->interp, c->threshold, max_msg,
                             max_held, &rounds, err);
    const double dt = MPI_Wtime() - t0;
    TU_CHECK(rc == 0, "cp_dfollow3_run: %s", err);
    cp_particle3 *p = gather_fin(&g, &s, c->niter, &m);
    if (rank_ == 0) {
        /* block order -> source order: the sources are the seeds, each once */
        cp_particle3 *q = calloc((size_t)(n ? n : 1), sizeof *q);
        int64_t *at = malloc(sizeof *at * (size_t)(L[0] * L[1] * L[2]));
        for (int64_t i = 0; i < L[0] * L[1] * L[2]; i++) at[i] = -1;
        for (int64_t i = 0; i < n; i++) at[whole[i].src] = i;
        int64_t lost = m != n, vs_whole = 0;
        for (int64_t i = 0; i < m; i++) {
            const int64_t k = at[p[i].src];
            if (k < 0) {
                lost++;
                continue;
            }
            at[p[i].src] = -1, q[k] = p[i];
        }
        for (int64_t i = 0; i < n; i++)
            vs_whole += memcmp(q[i].c, whole[i].c, sizeof q[i].c) != 0 || q[i].src != whole[i].src;
        float *mine = p_final(q, n, L);
        const int64_t vs_oracle = refcase_count_diff_bits(mine, ref, 3 * L[0] * L[1] * L[2]);
        printf("  %d ranks, B %lld (%lld blocks), max_msg %lld, max_held %lld: %lld rounds, "
               "%.3f s; %lld particles (%lld lost or extra), %lld differ from the whole volume, "
               "p_final values differing from the oracle %lld\n", nranks_, (long long)B,
               (long long)g.nblocks, (long long)max_msg, (long long)max_held, (long long)rounds, dt,
               (long long)m, (long long)lost, (long long)vs_whole, (long long)vs_oracle);
        TU_CHECK(lost == 0 && vs_whole == 0 && vs_oracle == 0,
                 "B %lld: %lld lost, %lld differ from the whole volume, %lld from the oracle",
                 (long long)B, (long long)lost, (long long)vs_whole, (long long)vs_oracle);
        free(mine), free(at), free(q);
    }
    free(p);
    dtest_close_store(&s);
}

static int test_case(const char *name, const char *variant, int nb, char **bs)
{
    refcase c = refcase_load(name, variant);
    const int64_t L[3] = {c.Z, c.Ly, c.Lx}, nv = c.Z * c.Ly * c.Lx;
    TU_CHECK(c.dP.n == 3 * nv, "%s: dP of %lld values for a volume of %lld", name,
             (long long)c.dP.n, (long long)nv);
    /* the whole volume, in one process */
    const int64_t n = cp_follow3_particles(c.cellprob.f32, L, c.threshold, c.interp, NULL);
    cp_particle3 *whole = malloc(sizeof *whole * (size_t)(n ? n : 1));
    float *f = malloc(sizeof *f * (size_t)(3 * nv));
    cp_follow3_particles(c.cellprob.f32, L, c.threshold, c.interp, whole);
    cp_follow3_field(c.dP.f32, c.cellprob.f32, nv, L, c.threshold, c.interp, f);
    const cp_field3 F = {.L = {L[0], L[1], L[2]}, .n = {L[0], L[1], L[2]}, .interp = c.interp, .f = f};
    TU_CHECK(cp_follow3_run(&F, whole, n, c.niter) == 0, "%s: particles left on the whole volume", name);
    cp_follow3_to_voxels(whole, n, L, c.interp);
    free(f);
    tu_tiff ref = tu_read_tiff(c.p_final);
    TU_CHECK(ref.n == 3 * nv, "%s: p_final of %lld values", name, (long long)ref.n);
    if (rank_ == 0) {
        float *w = p_final(whole, n, L);
        printf("%s%s%s: %lld x %lld x %lld, niter %d, threshold %g, interp %d, %lld particles; "
               "whole volume vs oracle: %lld p_final values differ\n", name, *variant ? " " : "",
               variant, (long long)L[0], (long long)L[1], (long long)L[2], c.niter,
               (double)c.threshold, c.interp, (long long)n,
               (long long)refcase_count_diff_bits(w, ref.f32, 3 * nv));
        free(w);
    }
    for (int i = 0; i < nb; i++) {
        int64_t B = atoll(bs[i]);
        if (B <= 0) B = L[0] > L[1] ? (L[0] > L[2] ? L[0] : L[2]) : (L[1] > L[2] ? L[1] : L[2]);
        run_blocks(&c, L, B, INT_MAX, CP_DFOLLOW_MAX_HELD, whole, n, ref.f32);
        if (i == 0) run_blocks(&c, L, B, 5, 64, whole, n, ref.f32);
    }
    tu_tiff_free(&ref);
    free(whole);
    refcase_free(&c);
    return tu_finish();
}

/* Every rank got rc and the message want. */
static void expect(const char *what, int rc, const char *err, int want_rc, const char *want)
{
    if (rank_ == 0) printf("  %s: %s\n", what, err);
    TU_CHECK(rc == want_rc && strcmp(err, want) == 0, "%s: rc %d, '%s', want %d '%s'", what, rc,
             err, want_rc, want);
}

static int test_edges(void)
{
    cp_bstore s;
    dtest_open_store(&s);
    const int64_t L[3] = {6, 7, 9}, nv = L[0] * L[1] * L[2];
    float *dP = calloc((size_t)(3 * nv), sizeof *dP), *cellprob = malloc(sizeof *cellprob * (size_t)nv);
    for (int64_t i = 0; i < nv; i++) cellprob[i] = 1.0f, dP[i] = 5.0f; /* everything flows up in Z, 1 voxel a step */
    cp_grid g;
    cp_grid_init3(&g, L[0], L[1], L[2], 2, nranks_);
    char err[CP_ERR_LEN] = "", want[4400];
    int64_t rounds = 0;
    TU_CHECK(cp_dfollow3_put(MPI_COMM_WORLD, &g, &s, dP, cellprob, err) == 0, "put: %s", err);

    int rc = cp_dfollow3_run(MPI_COMM_WORLD, &g, &s, -1, 1, 0.0f, INT_MAX, 100, &rounds, err);
    expect("-1 steps", rc, err, CP_EPARAM, "rank 0: dfollow3.c: -1 steps: need 0 or more");
    rc = cp_dfollow3_run(MPI_COMM_WORLD, &g, &s, 10, 1, 0.0f, 0, 100, &rounds, err);
    expect("max_msg 0", rc, err, CP_EPARAM,
           "rank 0: dfollow3.c: max_msg 0, max_held 100: need max_msg >= 1 and max_held >= 0");
    cp_grid flat;
    cp_grid_init3(&flat, 1, L[1], L[2], 2, nranks_);
    rc = cp_dfollow3_run(MPI_COMM_WORLD, &flat, &s, 10, 1, 0.0f, INT_MAX, 100, &rounds, err);
    expect("interp on one plane", rc, err, CP_EPARAM,
           "rank 0: follow3d: volume 1 x 7 x 9: axis Z must have 2 to 2^31-1 voxels "
           "(interpolated 3-D dynamics divide by L - 1)");

    /* the run itself: 20 steps up in Z end on the top plane (0 steps: where they start) */
    for (int32_t steps = 0; steps <= 20; steps += 20) {
        rc = cp_dfollow3_run(MPI_COMM_WORLD, &g, &s, steps, 0, 0.0f, INT_MAX, 100, &rounds, err);
        TU_CHECK(rc == 0, "%d steps: %s", steps, err);
        int64_t n = 0, bad = 0;
        cp_particle3 *p = gather_fin(&g, &s, steps, &n);
        for (int64_t i = 0; rank_ == 0 && i < n; i++) {
            const int64_t z = p[i].src / (L[1] * L[2]);
            bad += p[i].c[0] != (float)(steps ? L[0] - 1 : z);
        }
        if (rank_ == 0) printf("  %d steps: %lld particles, %lld rounds, %lld misplaced\n", steps,
                               (long long)n, (long long)rounds, (long long)bad);
        TU_CHECK(rank_ != 0 || (n == nv && bad == 0), "%d steps: %lld particles, %lld misplaced",
                 steps, (long long)n, (long long)bad);
        free(p);
    }

    /* NaN dZ flow at voxel (2, 3, 4): the particles starting at z 0 and 1 of that column step
     * onto it in round 0 within block 7 (z 0-1, y 2-3, x 4-5) and end at z NaN; NaN truncates
     * to 0, so their stencil voxel is still in block 7, where they cannot move: every rank
     * returns the error of block 7's owner (rank 0 at every rank count here) */
    dP[(2 * L[1] + 3) * L[2] + 4] = NAN;
    TU_CHECK(cp_dfollow3_put(MPI_COMM_WORLD, &g, &s, dP, cellprob, err) == 0, "put: %s", err);
    rc = cp_dfollow3_run(MPI_COMM_WORLD, &g, &s, 20, 0, 0.0f, INT_MAX, 100, &rounds, err);
    expect("NaN flows", rc, err, CP_EDATA, "rank 0: dfollow3.c: block 7: 2 particles met NaN flows");
    dP[(2 * L[1] + 3) * L[2] + 4] = 5.0f;
    TU_CHECK(cp_dfollow3_put(MPI_COMM_WORLD, &g, &s, dP, cellprob, err) == 0, "put: %s", err);

    /* the last rank loses its last "dp3" block: every rank returns its error */
    int64_t b0, b1;
    cp_grid_range(&g, nranks_ - 1, &b0, &b1);
    char path[4200];
    cp_bstore_path(&s, CP_DFOLLOW3_FIELD, b1 - 1, path, sizeof path);
    snprintf(want, sizeof want, "rank %d: dfollow3.c: block %lld: %s: cannot open: No such file or "
             "directory", nranks_ - 1, (long long)(b1 - 1), path);
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank_ == nranks_ - 1) cp_bstore_remove(&s, CP_DFOLLOW3_FIELD, b1 - 1);
    MPI_Barrier(MPI_COMM_WORLD);
    rc = cp_dfollow3_run(MPI_COMM_WORLD, &g, &s, 10, 1, 0.0f, INT_MAX, 100, &rounds, err);
    expect("missing dp3", rc, err, CP_EIO, want);

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
    if (argc >= 5 && strcmp(argv[1], "case") == 0)
        rc = test_case(argv[2], strcmp(argv[3], "interp") == 0 ? "" : argv[3], argc - 4, argv + 4);
    else if (argc == 2 && strcmp(argv[1], "edges") == 0)
        rc = test_edges();
    else if (rank_ == 0)
        fprintf(stderr, "usage: test_dfollow3 case <name> interp|nointerp <B>... | edges\n");
    MPI_Finalize();
    return rc;
}
