/* Tests of cp_dmasks3_run (mpi/dmasks.c on a volume, dmasks3.h) at several rank counts:
 *   test_dmasks3 case <name> <B>...  the oracle's dP/cellprob through cp_dfollow3_put,
 *       cp_dfollow3_run and cp_dmasks3_run with blocks of side B (0: one block): the gathered
 *       "m03" must equal the oracle's masks_raw label for label and cp_masks3_raw of the whole
 *       volume (end points of cp_follow3_run on the whole volume) bit for bit;
 *   test_dmasks3 crafted  end-point clusters written to "fin3" (seeds at block corners and on
 *       faces, seeds within 5 of a face on both sides, tied counts, random sets, masks removed
 *       by max_size_fraction, an empty volume, a thin volume, one block) against cp_masks3_raw;
 *   test_dmasks3 bad  an end point outside the volume or NaN, an end voxel outside its block, a
 *       source outside the volume, a short "fin3": every rank returns the failing rank's
 *       CP_EDATA / CP_EFORMAT message, and the next run on the same ranks works.
 * Rank 0 prints the number of mismatching voxels of every run (must be 0). */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#include "agree.h"
#include "bstore.h"
#include "cp_err.h"
#include "dfollow.h"
#include "dfollow3.h"
#include "dmasks3.h"
#include "dtest.h"
#include "follow3d.h"
#include "masks3d.h"
#include "refcase.h"
#include "testutil.h"

static int rank_, nranks_;

static int64_t vox(const int64_t L[3]) { return L[0] * L[1] * L[2]; }

/* Every rank writes "fin3" of its own blocks: the particles p (all of the volume, held by every
 * rank) whose end voxel lies in the block, sorted by src (as cp_dfollow3_run writes them). */
static int put_fin3(const cp_grid *g, const cp_bstore *s, const cp_particle3 *p, int64_t n,
                    char *err)
{
    int64_t b0, b1;
    cp_grid_range(g, rank_, &b0, &b1);
    cp_particle3 *q = malloc(sizeof *q * (size_t)(n + 1));
    int rc = 0;
    for (int64_t b = b0; !rc && b < b1; b++) {
        int64_t m = 0;
        for (int64_t i = 0; i < n; i++) /* p is sorted by src */
            if (cp_grid_block_at3(g, (int64_t)p[i].c[0], (int64_t)p[i].c[1],
                                  (int64_t)p[i].c[2]) == b)
                q[m++] = p[i];
        rc = cp_bstore_put(s, CP_DFOLLOW3_FIN, b, q, sizeof *q * (size_t)m, err);
    }
    free(q);
    return cp_agree(MPI_COMM_WORLD, rc, err);
}

/* "m03" of every block into whole (rank 0; the store is shared). */
static int gather_m03(const cp_grid *g, const cp_bstore *s, uint32_t *whole, char *err)
{
    MPI_Barrier(MPI_COMM_WORLD);
    int rc = 0;
    for (int64_t b = 0; rank_ == 0 && !rc && b < g->nblocks; b++) {
        const cp_box3 r = cp_grid_box(g, b);
        const int64_t nv = r.n[0] * r.n[1] * r.n[2];
        uint32_t *lab = malloc(sizeof *lab * (size_t)nv);
        rc = cp_bstore_get(s, CP_DMASKS3_OUT, b, lab, sizeof *lab * (size_t)nv, err);
        for (int64_t z = 0, i = 0; !rc && z < r.n[0]; z++)
            for (int64_t y = 0; y < r.n[1]; y++)
                for (int64_t x = 0; x < r.n[2]; x++, i++)
                    whole[((r.o[0] + z) * g->Ly + r.o[1] + y) * g->Lx + r.o[2] + x] = lab[i];
        free(lab);
    }
    return cp_agree(MPI_COMM_WORLD, rc, err);
}

static uint32_t max_u32(const uint32_t *v, int64_t n)
{
    uint32_t m = 0;
    for (int64_t i = 0; i < n; i++) m = v[i] > m ? v[i] : m;
    return m;
}

/* The side of one block holding the volume. */
static int64_t one_block(const int64_t L[3])
{
    int64_t B = L[0];
    for (int k = 1; k < 3; k++) B = L[k] > B ? L[k] : B;
    return B;
}

/* ---- oracle cases through the 3-D flow following ---- */

static int test_case(const char *name, int nb, char **bs)
{
    refcase c = refcase_load(name, "");
    const int64_t L[3] = {c.Z, c.Ly, c.Lx}, nv = vox(L);
    TU_CHECK(c.dP.n == 3 * nv, "%s: dP of %lld values for a volume of %lld", name,
             (long long)c.dP.n, (long long)nv);
    tu_tiff ref = tu_read_tiff(c.masks_raw);
    TU_CHECK(ref.n == nv && ref.u32, "%s: masks_raw of %lld values", name, (long long)ref.n);
    uint32_t *whole = NULL, *dist = NULL;
    char err[CP_ERR_LEN] = "";
    if (rank_ == 0) { /* the whole volume, in one process */
        const int64_t n = cp_follow3_particles(c.cellprob.f32, L, c.threshold, c.interp, NULL);
        cp_particle3 *p = malloc(sizeof *p * (size_t)(n + 1));
        float *f = malloc(sizeof *f * (size_t)(3 * nv));
        cp_follow3_particles(c.cellprob.f32, L, c.threshold, c.interp, p);
        cp_follow3_field(c.dP.f32, c.cellprob.f32, nv, L, c.threshold, c.interp, f);
        const cp_field3 F = {.L = {L[0], L[1], L[2]}, .n = {L[0], L[1], L[2]},
                             .interp = c.interp, .f = f};
        TU_CHECK(cp_follow3_run(&F, p, n, c.niter) == 0, "%s: particles left", name);
        cp_follow3_to_voxels(p, n, L, c.interp);
        whole = malloc(sizeof *whole * (size_t)nv), dist = malloc(sizeof *dist * (size_t)nv);
        int64_t K = 0;
        TU_CHECK(cp_masks3_raw(p, n, L, c.max_size_fraction, whole, &K, err) == 0, "%s", err);
        printf("%s: %lld x %lld x %lld, %lld particles, %lld seeds, %u labels; whole volume vs "
               "oracle masks_raw: %lld voxels differ\n",
               name, (long long)L[0], (long long)L[1], (long long)L[2], (long long)n, (long long)K,
               max_u32(whole, nv), (long long)tu_count_diff_u32(whole, ref.u32, nv));
        free(p), free(f);
    }
    for (int i = 0; i < nb; i++) {
        int64_t B = atoll(bs[i]), rounds = 0, nlab = -1;
        if (B <= 0) B = one_block(L);
        cp_bstore s;
        dtest_open_store(&s);
        cp_grid g;
        cp_grid_init3(&g, L[0], L[1], L[2], B, nranks_);
        int rc = cp_dfollow3_put(MPI_COMM_WORLD, &g, &s, c.dP.f32, c.cellprob.f32, err);
        if (!rc)
            rc = cp_dfollow3_run(MPI_COMM_WORLD, &g, &s, c.niter, c.interp, c.threshold, INT_MAX,
                                 CP_DFOLLOW_MAX_HELD, &rounds, err);
        MPI_Barrier(MPI_COMM_WORLD);
        const double t0 = MPI_Wtime();
        if (!rc) rc = cp_dmasks3_run(MPI_COMM_WORLD, &g, &s, c.max_size_fraction, &nlab, err);
        const double dt = MPI_Wtime() - t0;
        TU_CHECK(rc == 0, "%s B %lld: %s", name, (long long)B, err);
        if (!rc) rc = gather_m03(&g, &s, dist, err);
        TU_CHECK(rc == 0, "%s B %lld: gather: %s", name, (long long)B, err);
        if (rank_ == 0 && !rc) {
            const int64_t vw = tu_count_diff_u32(dist, whole, nv),
                          vo = tu_count_diff_u32(dist, ref.u32, nv);
            printf("  %d ranks, B %lld (%lld blocks): dmasks3 %.3f s, %lld labels; voxels "
                   "differing from cp_masks3_raw %lld, from the oracle %lld\n",
                   nranks_, (long long)B, (long long)g.nblocks, dt, (long long)nlab,
                   (long long)vw, (long long)vo);
            TU_CHECK(vw == 0 && vo == 0 && nlab == (int64_t)max_u32(whole, nv),
                     "%s B %lld: %lld / %lld voxels differ, %lld labels", name, (long long)B,
                     (long long)vw, (long long)vo, (long long)nlab);
        }
        dtest_close_store(&s);
    }
    free(whole), free(dist);
    tu_tiff_free(&ref);
    refcase_free(&c);
    return tu_finish();
}

/* ---- crafted end points ---- */

static uint64_t rng_ = 88172645463325252ull;
static uint64_t rnd(void) /* xorshift64 */
{
    rng_ ^= rng_ << 13, rng_ ^= rng_ >> 7, rng_ ^= rng_ << 17;
    return rng_;
}
static int64_t rnd_in(int64_t lo, int64_t hi)
{
    return lo + (int64_t)(rnd() % (uint64_t)(hi - lo + 1));
}

/* A set of end points under construction: particles at voxels, sources distinct voxels taken
 * from a shuffled list. */
typedef struct pset {
    int64_t L[3];
    cp_particle3 *p;
    int64_t n, cap, *srcs;
} pset;

static void pset_init(pset *s, int64_t Lz, int64_t Ly, int64_t Lx)
{
    *s = (pset){.L = {Lz, Ly, Lx}};
    const int64_t nv = vox(s->L);
    s->srcs = malloc(sizeof *s->srcs * (size_t)nv);
    for (int64_t i = 0; i < nv; i++) s->srcs[i] = i;
    for (int64_t i = nv - 1; i > 0; i--) {
        int64_t j = rnd_in(0, i), t = s->srcs[i];
        s->srcs[i] = s->srcs[j], s->srcs[j] = t;
    }
}

/* k particles ending in voxel v (inside the volume; nothing when the sources run out), at random
 * points of the voxel (its far faces excluded, but the last voxel of an axis ends at L-1 itself
 * half the time). */
static void put_at(pset *s, const int64_t v[3], int64_t k)
{
    for (int a = 0; a < 3; a++)
        if (v[a] < 0 || v[a] >= s->L[a]) return;
    for (int64_t j = 0; j < k && s->n < vox(s->L); j++) {
        if (s->n == s->cap) {
            s->cap = s->cap ? 2 * s->cap : 1024;
            s->p = realloc(s->p, sizeof *s->p * (size_t)s->cap);
        }
        cp_particle3 *q = &s->p[s->n];
        *q = (cp_particle3){.src = s->srcs[s->n]};
        s->n++;
        for (int a = 0; a < 3; a++) {
            float f = (float)(rnd() % 1000) / 1000.0f;
            q->c[a] = v[a] == s->L[a] - 1 && rnd() % 2 ? (float)v[a] : (float)v[a] + f;
            if (q->c[a] > (float)(s->L[a] - 1)) q->c[a] = (float)(s->L[a] - 1);
        }
    }
}

/* A cell: `peak` particles at the centre c, 3..5 at each voxel within radius r (Chebyshev),
 * so the seed grows over the ball. */
static void cell(pset *s, int64_t cz, int64_t cy, int64_t cx, int64_t peak, int64_t r)
{
    for (int64_t z = -r; z <= r; z++)
        for (int64_t y = -r; y <= r; y++)
            for (int64_t x = -r; x <= r; x++) {
                const int64_t v[3] = {cz + z, cy + y, cx + x};
                put_at(s, v, z || y || x ? rnd_in(3, 5) : peak);
            }
}

static int cmp_src(const void *a, const void *b)
{
    int64_t x = ((const cp_particle3 *)a)->src, y = ((const cp_particle3 *)b)->src;
    return (x > y) - (x < y);
}

/* One run of set s with blocks of side B against cp_masks3_raw: returns the mismatches. */
static int64_t run_set(const char *what, const pset *s, int64_t B, double fraction)
{
    const int64_t nv = vox(s->L);
    char err[CP_ERR_LEN] = "";
    uint32_t *whole = malloc(sizeof *whole * (size_t)nv), *dist = malloc(sizeof *dist * (size_t)nv);
    int64_t K = 0, nlab = -1, bad = 0;
    TU_CHECK(cp_masks3_raw(s->p, s->n, s->L, fraction, whole, &K, err) == 0, "%s", err);
    cp_bstore st;
    dtest_open_store(&st);
    cp_grid g;
    cp_grid_init3(&g, s->L[0], s->L[1], s->L[2], B ? B : one_block(s->L), nranks_);
    int rc = put_fin3(&g, &st, s->p, s->n, err);
    if (!rc) rc = cp_dmasks3_run(MPI_COMM_WORLD, &g, &st, fraction, &nlab, err);
    TU_CHECK(rc == 0, "%s B %lld: %s", what, (long long)B, err);
    if (!rc) rc = gather_m03(&g, &st, dist, err);
    if (rank_ == 0 && !rc) {
        bad = tu_count_diff_u32(dist, whole, nv);
        const uint32_t kept = max_u32(whole, nv);
        printf("  %s: %lld x %lld x %lld, B %lld (%lld blocks), %lld particles, %lld seeds, %u "
               "kept (fraction %g): %lld voxels differ\n",
               what, (long long)s->L[0], (long long)s->L[1], (long long)s->L[2],
               (long long)g.B, (long long)g.nblocks, (long long)s->n, (long long)K, kept,
               fraction, (long long)bad);
        TU_CHECK(bad == 0 && nlab == (int64_t)kept, "%s B %lld: %lld voxels differ, %lld labels "
                 "for %u", what, (long long)B, (long long)bad, (long long)nlab, kept);
    }
    dtest_close_store(&st);
    free(whole), free(dist);
    return bad;
}

/* Runs s (sorted by src first) through blocks Bs at fraction 0.4 and at `small`. */
static void sweep(const char *what, pset *s, const int64_t *Bs, int nB, double small)
{
    if (s->n > 1) qsort(s->p, (size_t)s->n, sizeof *s->p, cmp_src); /* p is NULL when empty */
    for (int i = 0; i < nB; i++) {
        run_set(what, s, Bs[i], 0.4);
        if (small > 0) run_set(what, s, Bs[i], small);
    }
    free(s->p), free(s->srcs);
}

static int test_crafted(void)
{
    const int64_t Bs[] = {4, 5, 8, 16, 0};
    pset s;
    /* seeds on block corners and faces of blocks of 4 and 8 (and 5: off the corners), counts tied
     * in pairs */
    pset_init(&s, 18, 20, 22);
    for (int64_t z = 0; z <= 16; z += 8)
        for (int64_t y = 0; y <= 16; y += 8)
            for (int64_t x = 0; x <= 20; x += 8) cell(&s, z, y, x, 12 + (z + y + x) / 8 % 3, 1);
    cell(&s, 4, 12, 3, 20, 1), cell(&s, 11, 3, 12, 20, 2), cell(&s, 17, 19, 21, 14, 1);
    sweep("corners", &s, Bs, 5, 100.0 / (18 * 20 * 22));
    /* clusters of seeds within 5 of a face, on both sides (growth windows across seams), some at
     * distance 3..6 of each other (overlapping growth: the label order decides), tied counts */
    pset_init(&s, 16, 17, 24);
    for (int k = 0; k < 14; k++) {
        const int64_t face = 8 * rnd_in(1, 2), a = rnd_in(0, 2), off = rnd_in(-5, 4);
        int64_t v[3] = {rnd_in(0, 15), rnd_in(0, 16), rnd_in(0, 23)};
        v[a] = face + off;
        cell(&s, v[0], v[1], v[2], rnd_in(11, 14), rnd_in(0, 1));
        v[a] = face + off + rnd_in(3, 6) * (off < 0 ? 1 : -1);
        cell(&s, v[0], v[1], v[2], rnd_in(11, 14), 1);
    }
    sweep("faces", &s, Bs, 5, 60.0 / (16 * 17 * 24));
    /* random clusters, dense: many ties, peaks merging, masks over several blocks */
    pset_init(&s, 17, 30, 23);
    for (int k = 0; k < 40; k++)
        cell(&s, rnd_in(0, 16), rnd_in(0, 29), rnd_in(0, 22), rnd_in(8, 16), rnd_in(0, 2));
    sweep("random", &s, Bs, 5, 150.0 / (17 * 30 * 23));
    /* a thin volume (2 planes: windows leave it in z) and a single plane */
    pset_init(&s, 2, 40, 37);
    for (int k = 0; k < 10; k++)
        cell(&s, rnd_in(0, 1), rnd_in(0, 39), rnd_in(0, 36), rnd_in(11, 30), 2);
    sweep("thin", &s, Bs, 5, 0);
    pset_init(&s, 1, 21, 60);
    for (int k = 0; k < 8; k++) cell(&s, 0, rnd_in(0, 20), rnd_in(0, 59), rnd_in(11, 30), 1);
    sweep("plane", &s, Bs, 3, 0);
    /* an empty volume; particles without any seed; one voxel */
    pset_init(&s, 7, 6, 9);
    sweep("empty", &s, Bs, 5, 0);
    pset_init(&s, 7, 6, 9);
    cell(&s, 3, 3, 3, 9, 2);
    sweep("no seed", &s, Bs, 2, 0);
    pset_init(&s, 1, 1, 1);
    put_at(&s, (int64_t[3]){0, 0, 0}, 1);
    sweep("one voxel", &s, Bs + 4, 1, 0);
    return tu_finish();
}

/* ---- bad "fin3" ---- */

static void expect_bad(const char *kind, int64_t blk, cp_particle3 q, size_t bytes, int want_rc,
                       const char *msg)
{
    pset s;
    pset_init(&s, 8, 8, 8);
    cell(&s, 2, 2, 2, 15, 1);
    qsort(s.p, (size_t)s.n, sizeof *s.p, cmp_src);
    cp_bstore st;
    dtest_open_store(&st);
    cp_grid g;
    cp_grid_init3(&g, 8, 8, 8, 4, nranks_);
    char err[CP_ERR_LEN] = "";
    int64_t nlab = -1;
    int rc = put_fin3(&g, &st, s.p, s.n, err);
    TU_CHECK(rc == 0, "%s", err);
    if (rank_ == 0) cp_bstore_put(&st, CP_DFOLLOW3_FIN, blk, &q, bytes, err);
    MPI_Barrier(MPI_COMM_WORLD);
    rc = cp_dmasks3_run(MPI_COMM_WORLD, &g, &st, 0.4, &nlab, err);
    if (rank_ == 0) printf("  bad %s -> %d \"%s\"\n", kind, rc, err);
    TU_CHECK(rc == want_rc && strcmp(err, msg) == 0, "%s: rc %d \"%s\", expected %d \"%s\"", kind,
             rc, err, want_rc, msg);
    dtest_close_store(&st);
    free(s.p), free(s.srcs);
}

static int test_bad(void)
{
    cp_grid g;
    cp_grid_init3(&g, 8, 8, 8, 4, nranks_);
    const int last = cp_grid_owner(&g, 7);
    expect_bad("nan", 0, (cp_particle3){.src = 1, .c = {NAN, 1, 1}}, sizeof(cp_particle3),
               CP_EDATA,
               "rank 0: dmasks: block 0: particle 0: end point (nan, 1, 1) outside the 8 x 8 x 8 "
               "volume");
    expect_bad("outside", 7, (cp_particle3){.src = 1, .c = {8, 5, 5}}, sizeof(cp_particle3),
               CP_EDATA,
               tu_path("rank %d: dmasks: block 7: particle 0: end point (8, 5, 5) outside the 8 "
                       "x 8 x 8 volume", last));
    expect_bad("negative", 7, (cp_particle3){.src = 1, .c = {5, -0.5f, 5}},
               sizeof(cp_particle3), CP_EDATA,
               tu_path("rank %d: dmasks: block 7: particle 0: end point (5, -0.5, 5) outside the "
                       "8 x 8 x 8 volume", last));
    expect_bad("cell", 7, (cp_particle3){.src = 1, .c = {0, 5, 5}}, sizeof(cp_particle3),
               CP_EDATA,
               tu_path("rank %d: dmasks: block 7: particle 0: end cell (0, 5, 5) outside the "
                       "block (planes 4..7, rows 4..7, columns 4..7)", last));
    expect_bad("src", 0, (cp_particle3){.src = 512, .c = {1, 1, 1}}, sizeof(cp_particle3),
               CP_EDATA,
               "rank 0: dmasks: block 0: particle 0: source voxel 512 outside the 8 x 8 x 8 "
               "volume");
    expect_bad("short", 7, (cp_particle3){.src = 1}, 10, CP_EFORMAT,
               tu_path("rank %d: dmasks: block 7: \"fin3\" has 10 bytes, not whole particle "
                       "records", last));
    /* the ranks are still in step */
    pset s;
    pset_init(&s, 8, 8, 8);
    cell(&s, 2, 2, 2, 15, 1), cell(&s, 6, 5, 4, 12, 1);
    const int64_t B = 4;
    sweep("after the errors", &s, &B, 1, 0);
    return tu_finish();
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &nranks_);
    int rc = 2;
    if (argc >= 4 && strcmp(argv[1], "case") == 0)
        rc = test_case(argv[2], argc - 3, argv + 3);
    else if (argc == 2 && strcmp(argv[1], "crafted") == 0)
        rc = test_crafted();
    else if (argc == 2 && strcmp(argv[1], "bad") == 0)
        rc = test_bad();
    else if (rank_ == 0)
        fprintf(stderr, "usage: test_dmasks3 case <name> <B>... | crafted | bad\n");
    MPI_Finalize();
    return rc;
}
