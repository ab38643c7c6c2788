/* Tests of mpi/dpost3.c (hole filling and min_size of a volume over 3-D owner blocks), run under
 * mpirun at several rank counts:
 *   test_dpost3 random <seeds> <B>...  seeded random label volumes (seeds: N for 1..N, or A-B;
 *       9x20x23 and 16x33x40: shells holding nested labels or only background, shells with an
 *       opening, a shell whose box is the whole volume, nested shells, small blobs below
 *       min_size, labels in shuffled order with gaps) through blocks of side B (0: one block),
 *       min_size -1, 0, 15: the gathered "lab3" must equal cp_post_fill_and_min_size_3d of the
 *       whole volume voxel for voxel, and the count returned its largest label;
 *   test_dpost3 case <name> <B>...  the oracle's masks_raw of a 3-D reference case with its
 *       min_size: "lab3" must equal the whole-volume function and the oracle's masks label for
 *       label (where masks has the shape of masks_raw);
 *   test_dpost3 holes <seeds> <B>...  the same random volumes: cp_dholes3 over blocks of side B
 *       for every label, its map on each block against cp_post_hole_map on the label's whole
 *       box, voxel for voxel;
 *   test_dpost3 edges  an empty volume, one label filling it, a wall around a cavity that is
 *       exactly one block, and a missing "m03" block on the last rank (every rank returns the
 *       same error). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#include "bstore.h"
#include "cp_err.h"
#include "dholes3.h"
#include "dpost3.h"
#include "dtest.h"
#include "grid.h"
#include "holding.h"
#include "post.h"
#include "refcase.h"
#include "testutil.h"

static int rank_, nranks_;
static uint64_t rng_state;

static uint32_t rnd(uint32_t n)
{
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)((rng_state >> 33) % (n ? n : 1));
}

/* Writes "m03" of the own blocks from the whole volume vol. */
static void put_blocks(const cp_grid *g, const cp_bstore *s, const uint32_t *vol)
{
    int64_t b0, b1;
    char err[CP_ERR_LEN] = "";
    cp_grid_range(g, rank_, &b0, &b1);
    for (int64_t b = b0; b < b1; b++) {
        cp_box3 r = cp_grid_box(g, b);
        uint32_t *a = malloc(sizeof *a * (size_t)(r.n[0] * r.n[1] * r.n[2]));
        for (int64_t z = 0, q = 0; z < r.n[0]; z++)
            for (int64_t y = 0; y < r.n[1]; y++)
                for (int64_t x = 0; x < r.n[2]; x++, q++)
                    a[q] = vol[((r.o[0] + z) * g->Ly + r.o[1] + y) * g->Lx + r.o[2] + x];
        size_t bytes = sizeof *a * (size_t)(r.n[0] * r.n[1] * r.n[2]);
        int rc = cp_bstore_put(s, CP_DPOST3_IN, b, a, bytes, err);
        TU_CHECK(rc == 0, "put block %lld: %s", (long long)b, err);
        free(a);
    }
}

/* "lab3" of every block into vol on rank 0 (collective). */
static void gather_blocks(const cp_grid *g, const cp_bstore *s, uint32_t *vol)
{
    int64_t b0, b1, n = g->Lz * g->Ly * g->Lx;
    char err[CP_ERR_LEN] = "";
    memset(vol, 0, sizeof *vol * (size_t)n);
    cp_grid_range(g, rank_, &b0, &b1);
    for (int64_t b = b0; b < b1; b++) {
        cp_box3 r = cp_grid_box(g, b);
        int64_t nv = r.n[0] * r.n[1] * r.n[2];
        uint32_t *a = malloc(sizeof *a * (size_t)nv);
        int rc = cp_bstore_get(s, CP_DPOST3_OUT, b, a, sizeof *a * (size_t)nv, err);
        TU_CHECK(rc == 0, "get block %lld: %s", (long long)b, err);
        for (int64_t z = 0, q = 0; !rc && z < r.n[0]; z++)
            for (int64_t y = 0; y < r.n[1]; y++)
                for (int64_t x = 0; x < r.n[2]; x++, q++)
                    vol[((r.o[0] + z) * g->Ly + r.o[1] + y) * g->Lx + r.o[2] + x] = a[q];
        free(a);
        cp_bstore_remove(s, CP_DPOST3_OUT, b);
        cp_bstore_remove(s, CP_DPOST3_IN, b);
    }
    MPI_Allreduce(MPI_IN_PLACE, vol, (int)n, MPI_UINT32_T, MPI_MAX, MPI_COMM_WORLD);
}

static uint32_t max_u32(const uint32_t *a, int64_t n)
{
    uint32_t m = 0;
    for (int64_t i = 0; i < n; i++) m = a[i] > m ? a[i] : m;
    return m;
}

/* vol (nz, ny, nx) through blocks of side B (0: one block) with min_size, against want (the
 * whole-volume result), and the count returned against want's largest label. Returns the
 * mismatching voxels. */
static int64_t check(const cp_bstore *s, const uint32_t *vol, int64_t nz, int64_t ny, int64_t nx,
                     int64_t B, int64_t min_size, const uint32_t *want, const char *what)
{
    cp_grid g;
    int64_t n = nz * ny * nx, nl = -1;
    cp_grid_init3(&g, nz, ny, nx, B ? B : (nz > ny ? (nz > nx ? nz : nx) : (ny > nx ? ny : nx)),
                  nranks_);
    put_blocks(&g, s, vol);
    char err[CP_ERR_LEN] = "";
    int rc = cp_dpost3_run(MPI_COMM_WORLD, &g, s, min_size, &nl, err);
    TU_CHECK(rc == 0, "%s: cp_dpost3_run: %s", what, err);
    uint32_t *got = malloc(sizeof *got * (size_t)n);
    gather_blocks(&g, s, got);
    int64_t d = tu_count_diff_u32(got, want, n);
    if (rank_ == 0)
        printf("  %s B %lld min_size %lld (%lld blocks): %lld labels (whole %u), mismatches %lld\n",
               what, (long long)B, (long long)min_size, (long long)g.nblocks, (long long)nl,
               max_u32(want, n), (long long)d);
    TU_CHECK(d == 0 && nl == (int64_t)max_u32(want, n), "%s B %lld min_size %lld: %lld voxels "
             "differ, %lld labels", what, (long long)B, (long long)min_size, (long long)d,
             (long long)nl);
    free(got);
    return d;
}

/* Paints label l on the voxels of the ellipsoid shell around (cz, cy, cx) of radii r (outer)
 * and thickness t; inner: value written inside the shell (UINT32_MAX: leave as is); open: a
 * tunnel along x through one side. */
static void shell(uint32_t *v, int64_t nz, int64_t ny, int64_t nx, const int64_t c[3],
                  const int64_t r[3], double t, uint32_t l, uint32_t inner, int open)
{
    for (int64_t z = c[0] - r[0]; z <= c[0] + r[0]; z++)
        for (int64_t y = c[1] - r[1]; y <= c[1] + r[1]; y++)
            for (int64_t x = c[2] - r[2]; x <= c[2] + r[2]; x++) {
                if (z < 0 || y < 0 || x < 0 || z >= nz || y >= ny || x >= nx) continue;
                double dz = (double)(z - c[0]) / (double)r[0];
                double dy = (double)(y - c[1]) / (double)r[1];
                double dx = (double)(x - c[2]) / (double)r[2];
                double d = dz * dz + dy * dy + dx * dx;
                double rin = 1.0 - t / (double)(r[0] < r[1] ? (r[0] < r[2] ? r[0] : r[2])
                                                            : (r[1] < r[2] ? r[1] : r[2]));
                uint32_t *p = &v[(z * ny + y) * nx + x];
                if (d > 1.0) continue;
                if (open && z == c[0] && y == c[1] && x > c[2]) *p = 0;
                else if (d > rin * rin) *p = l;
                else if (inner != UINT32_MAX) *p = inner;
            }
}

/* Label l on the faces of the cuboid at o of size sz (every size >= 3), inner inside it. */
static void cuboid(uint32_t *v, int64_t ny, int64_t nx, const int64_t o[3], const int64_t sz[3],
                   uint32_t l, uint32_t inner)
{
    for (int64_t z = 0; z < sz[0]; z++)
        for (int64_t y = 0; y < sz[1]; y++)
            for (int64_t x = 0; x < sz[2]; x++) {
                int wall = z == 0 || y == 0 || x == 0 || z == sz[0] - 1 || y == sz[1] - 1 ||
                           x == sz[2] - 1;
                v[((o[0] + z) * ny + o[1] + y) * nx + o[2] + x] = wall ? l : inner;
            }
}

/* A random blob of about `size` voxels of label l (a random walk from a random voxel). */
static void blob(uint32_t *v, int64_t nz, int64_t ny, int64_t nx, uint32_t l, int size)
{
    int64_t p[3] = {rnd((uint32_t)nz), rnd((uint32_t)ny), rnd((uint32_t)nx)}, L[3] = {nz, ny, nx};
    for (int k = 0; k < size; k++) {
        v[(p[0] * ny + p[1]) * nx + p[2]] = l;
        int a = (int)rnd(3);
        p[a] += rnd(2) ? 1 : -1;
        p[a] = p[a] < 0 ? 0 : p[a] >= L[a] ? L[a] - 1 : p[a];
    }
}

/* A random label volume (see the head of the file); whole: with a shell whose box is the
 * volume. */
static void random_volume(uint32_t *v, int64_t nz, int64_t ny, int64_t nx, int whole)
{
    int64_t n = nz * ny * nx;
    uint32_t l = 0;
    memset(v, 0, sizeof *v * (size_t)n);
    if (whole) { /* a shell whose box is the volume, holding the rest (unless open) */
        int64_t c[3] = {nz / 2, ny / 2, nx / 2}, r[3] = {nz / 2, ny / 2, nx / 2};
        shell(v, nz, ny, nx, c, r, 1.5, ++l, UINT32_MAX, rnd(3) == 0);
    }
    int nsh = 3 + (int)rnd(5);
    for (int k = 0; k < nsh; k++) {
        int64_t L[3] = {nz, ny, nx}, r[3], c[3];
        for (int a = 0; a < 3; a++) { /* mostly inside the volume, some cut by its faces */
            r[a] = 3 + rnd((uint32_t)(L[a] / 2 - 3 < 9 ? L[a] / 2 - 3 : 9));
            c[a] = r[a] - 1 + rnd((uint32_t)(L[a] - 2 * r[a] + 3));
        }
        uint32_t s = ++l;
        uint32_t inner = rnd(4) == 0 ? UINT32_MAX : 0;
        shell(v, nz, ny, nx, c, r, 1.5 + 0.5 * rnd(2), s, inner, rnd(5) == 0);
        if (rnd(3) && r[0] > 3 && r[1] > 3 && r[2] > 3) { /* something inside */
            int64_t r2[3] = {r[0] / 2, r[1] / 2, r[2] / 2};
            if (rnd(2)) {
                uint32_t l2 = ++l, in2 = rnd(2) ? 0 : ++l;
                shell(v, nz, ny, nx, c, r2, 1.5, l2, in2, 0);
            } else {
                v[(c[0] * ny + c[1]) * nx + c[2]] = ++l;
            }
        }
    }
    int nb = 4 + (int)rnd(12);
    for (int k = 0; k < nb; k++) blob(v, nz, ny, nx, ++l, 1 + (int)rnd(40));
    { /* nested cuboids: A holds B (which holds C) and a pocket of background */
        int64_t L[3] = {nz, ny, nx}, o[3], sz[3], o2[3], sz2[3];
        for (int a = 0; a < 3; a++) {
            sz[a] = 7 + rnd((uint32_t)(L[a] - 6));
            o[a] = rnd((uint32_t)(L[a] - sz[a] + 1));
            sz2[a] = 3 + rnd((uint32_t)(sz[a] - 6));
            o2[a] = o[a] + 1 + rnd((uint32_t)(sz[a] - sz2[a] - 1));
        }
        uint32_t A = ++l, B = ++l, C = ++l;
        cuboid(v, ny, nx, o, sz, A, 0);
        cuboid(v, ny, nx, o2, sz2, B, C);
    }
    /* shuffled labels with gaps: label order is not the order of first appearance */
    uint32_t *perm = malloc(sizeof *perm * ((size_t)l + 1));
    for (uint32_t i = 0; i <= l; i++) perm[i] = i;
    for (uint32_t i = l; i > 1; i--) {
        uint32_t j = 1 + rnd(i), t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
    uint32_t gap = rnd(2);
    for (int64_t i = 0; i < n; i++)
        v[i] = v[i] ? perm[v[i]] + (gap && perm[v[i]] > l / 2 ? 3 : 0) : 0;
    free(perm);
}

/* Seeds "N" (1..N) or "A-B" into [*first, *last]. */
static void parse_seeds(const char *s, int *first, int *last)
{
    if (sscanf(s, "%d-%d", first, last) != 2) {
        *first = 1;
        *last = atoi(s);
    }
}

static int test_random(const char *seeds, int nb, char **bs)
{
    cp_bstore st;
    dtest_open_store(&st);
    static const int64_t dims[][3] = {{9, 20, 23}, {16, 33, 40}};
    static const int64_t ms[] = {-1, 0, 15};
    int64_t bad = 0;
    int first, last;
    parse_seeds(seeds, &first, &last);
    for (int d = 0; d < 2; d++)
        for (int seed = first; seed <= last; seed++) {
            int64_t nz = dims[d][0], ny = dims[d][1], nx = dims[d][2], n = nz * ny * nx;
            uint32_t *vol = malloc(sizeof *vol * (size_t)n);
            uint32_t *want = malloc(sizeof *want * (size_t)n);
            rng_state = (uint64_t)seed * 7919 + (uint64_t)d;
            random_volume(vol, nz, ny, nx, (seed + d) % 2);
            memcpy(want, vol, sizeof *vol * (size_t)n);
            char err0[CP_ERR_LEN] = "";
            TU_CHECK(cp_post_fill_and_min_size_3d(want, nz, ny, nx, -1, err0) == 0, "%s", err0);
            if (rank_ == 0) { /* what the fill does here: holes of background, labels swallowed */
                int64_t holes = 0, swallowed = 0;
                uint32_t m = max_u32(vol, n), j = 0, *jm = calloc((size_t)m + 1, sizeof *jm);
                for (int64_t i = 0; i < n; i++) jm[vol[i]] = 1;
                for (uint32_t v = 1; v <= m; v++) jm[v] = jm[v] ? ++j : 0;
                for (int64_t i = 0; i < n; i++) holes += !vol[i] && want[i];
                for (int64_t i = 0; i < n; i++) swallowed += vol[i] && want[i] != jm[vol[i]];
                free(jm);
                printf("random %lldx%lldx%lld seed %d: %u raw labels, fill: %lld background "
                       "voxels filled, %lld labelled voxels swallowed\n", (long long)nz,
                       (long long)ny, (long long)nx, seed, max_u32(vol, n), (long long)holes,
                       (long long)swallowed);
            }
            for (int m = 0; m < 3; m++) {
                char err[CP_ERR_LEN] = "", what[96];
                memcpy(want, vol, sizeof *vol * (size_t)n);
                int rc = cp_post_fill_and_min_size_3d(want, nz, ny, nx, ms[m], err);
                TU_CHECK(rc == 0, "%s", err);
                snprintf(what, sizeof what, "random %lldx%lldx%lld seed %d", (long long)nz,
                         (long long)ny, (long long)nx, seed);
                for (int k = 0; k < nb; k++)
                    bad += check(&st, vol, nz, ny, nx, atoll(bs[k]), ms[m], want, what);
            }
            free(vol);
            free(want);
        }
    if (rank_ == 0) printf("random: %lld mismatching voxels in all\n", (long long)bad);
    dtest_close_store(&st);
    return tu_finish();
}

/* The whole volume of test_holes, for cp_dholes3's reads of a block. */
struct whole {
    const cp_grid *g;
    const uint32_t *vol;
    uint32_t *blk;
};

static int get_block(void *ctx, int64_t b, const uint32_t **vox, cp_box *bb)
{
    struct whole *w = ctx;
    cp_box3 r = cp_grid_box(w->g, b);
    *bb = (cp_box){r.o[0], r.o[0] + r.n[0], r.o[1], r.o[1] + r.n[1], r.o[2], r.o[2] + r.n[2]};
    for (int64_t z = 0, q = 0; z < r.n[0]; z++)
        for (int64_t y = 0; y < r.n[1]; y++)
            for (int64_t x = 0; x < r.n[2]; x++, q++)
                w->blk[q] = w->vol[((r.o[0] + z) * w->g->Ly + r.o[1] + y) * w->g->Lx + r.o[2] + x];
    *vox = w->blk;
    return 0;
}

/* The maps of every label of vol on the own blocks against cp_post_hole_map on its whole box;
 * returns the voxels that differ (all ranks). */
static int64_t holes_vs_whole(const uint32_t *vol, int64_t nz, int64_t ny, int64_t nx, int64_t B)
{
    cp_grid g;
    cp_grid_init3(&g, nz, ny, nx, B, nranks_);
    int64_t n = nz * ny * nx, bad = 0, nl = 0, b0, b1, bmax = B * B * B;
    uint32_t m = max_u32(vol, n), *l = malloc(sizeof *l * ((size_t)m + 1));
    cp_box *box = malloc(sizeof *box * ((size_t)m + 1));
    for (uint32_t v = 1; v <= m; v++) box[v] = (cp_box){nz, 0, ny, 0, nx, 0};
    for (int64_t z = 0, i = 0; z < nz; z++)
        for (int64_t y = 0; y < ny; y++)
            for (int64_t x = 0; x < nx; x++, i++) {
                cp_box *b = &box[vol[i]];
                if (!vol[i]) continue;
                b->z0 = z < b->z0 ? z : b->z0, b->z1 = z + 1 > b->z1 ? z + 1 : b->z1;
                b->y0 = y < b->y0 ? y : b->y0, b->y1 = y + 1 > b->y1 ? y + 1 : b->y1;
                b->x0 = x < b->x0 ? x : b->x0, b->x1 = x + 1 > b->x1 ? x + 1 : b->x1;
            }
    for (uint32_t v = 1; v <= m; v++)
        if (box[v].z1 > 0) l[nl] = v, box[nl++] = box[v];
    struct whole w = {&g, vol, malloc(sizeof(uint32_t) * (size_t)bmax)};
    unsigned char *st = malloc((size_t)bmax), *ws = malloc((size_t)n);
    int64_t *stack = malloc(sizeof *stack * (size_t)n);
    cp_dholes3 h;
    char err[CP_ERR_LEN] = "";
    int rc = cp_dholes3_init(&h, MPI_COMM_WORLD, &g, bmax, get_block, &w, err);
    if (!rc) rc = cp_dholes3_find(&h, l, box, nl);
    TU_CHECK(rc == 0, "cp_dholes3_find: %s", err);
    cp_grid_range(&g, rank_, &b0, &b1);
    for (int64_t k = 0; !rc && k < nl; k++) {
        cp_box lb = box[k];
        int64_t sy = lb.y1 - lb.y0, sx = lb.x1 - lb.x0;
        cp_post_hole_map(vol, ny, nx, 1, l[k], &lb, ws, stack);
        for (int64_t b = b0; b < b1; b++) {
            const uint32_t *blk;
            cp_box bb;
            get_block(&w, b, &blk, &bb);
            cp_box s = cp_box_meet(lb, bb);
            if (cp_box_empty(s)) continue;
            cp_dholes3_map(&h, b, blk, bb, l[k], lb, st);
            for (int64_t z = s.z0, q = 0; z < s.z1; z++)
                for (int64_t y = s.y0; y < s.y1; y++)
                    for (int64_t x = s.x0; x < s.x1; x++, q++)
                        bad += st[q] != ws[((z - lb.z0) * sy + y - lb.y0) * sx + x - lb.x0];
        }
    }
    cp_dholes3_free(&h);
    MPI_Allreduce(MPI_IN_PLACE, &bad, 1, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);
    free(l);
    free(box);
    free(w.blk);
    free(st);
    free(ws);
    free(stack);
    return bad;
}

static int test_holes(const char *seeds, int nb, char **bs)
{
    static const int64_t dims[][3] = {{9, 20, 23}, {16, 33, 40}};
    int64_t bad = 0, nholes = 0;
    int first, last;
    parse_seeds(seeds, &first, &last);
    for (int d = 0; d < 2; d++)
        for (int seed = first; seed <= last; seed++) {
            int64_t nz = dims[d][0], ny = dims[d][1], nx = dims[d][2], n = nz * ny * nx;
            uint32_t *vol = malloc(sizeof *vol * (size_t)n), *f = malloc(sizeof *f * (size_t)n);
            rng_state = (uint64_t)seed * 7919 + (uint64_t)d;
            random_volume(vol, nz, ny, nx, (seed + d) % 2);
            memcpy(f, vol, sizeof *f * (size_t)n);
            char err[CP_ERR_LEN] = "";
            TU_CHECK(cp_post_fill_and_min_size_3d(f, nz, ny, nx, -1, err) == 0, "%s", err);
            for (int64_t i = 0; i < n; i++) nholes += !vol[i] && f[i];
            for (int k = 0; k < nb; k++) {
                int64_t db = holes_vs_whole(vol, nz, ny, nx, atoll(bs[k]));
                if (rank_ == 0)
                    printf("  random %lldx%lldx%lld seed %d B %s: %lld voxels differ\n",
                           (long long)nz, (long long)ny, (long long)nx, seed, bs[k], (long long)db);
                TU_CHECK(db == 0, "seed %d B %s: %lld voxels differ", seed, bs[k], (long long)db);
                bad += db;
            }
            free(vol);
            free(f);
        }
    if (rank_ == 0)
        printf("holes: %lld background voxels in holes in all, %lld map voxels differ\n",
               (long long)nholes, (long long)bad);
    TU_CHECK(nholes > 0, "the random volumes have holes");
    return tu_finish();
}

static int test_case(const char *name, int nb, char **bs)
{
    json_object *j = tu_case_json(name);
    tu_tiff raw = tu_read_tiff(refcase_file(j, name, "masks_raw.tif"));
    tu_tiff mk = tu_read_tiff(refcase_file(j, name, "masks.tif"));
    json_object *mo = refcase_param(j, "", "min_size");
    int64_t min_size = mo ? json_object_get_int64(mo) : 15;
    int64_t nz = raw.pages, ny = raw.ny, nx = raw.nx, n = nz * ny * nx;
    uint32_t *want = malloc(sizeof *want * (size_t)n);
    char err[CP_ERR_LEN] = "";
    memcpy(want, raw.u32, sizeof *want * (size_t)n);
    TU_CHECK(cp_post_fill_and_min_size_3d(want, nz, ny, nx, min_size, err) == 0, "%s", err);
    int same = mk.pages == nz && mk.ny == ny && mk.nx == nx;
    if (rank_ == 0) {
        printf("%s: %lldx%lldx%lld, %u raw labels, min_size %lld\n", name, (long long)nz,
               (long long)ny, (long long)nx, max_u32(raw.u32, n), (long long)min_size);
        if (same)
            printf("  whole volume vs oracle masks: %lld voxels differ (%u vs %u labels)\n",
                   (long long)tu_count_diff_u32(want, mk.u32, n), max_u32(want, n),
                   max_u32(mk.u32, n));
        else
            printf("  oracle masks %lldx%lldx%lld (resized): compared with the whole-volume "
                   "function only\n", (long long)mk.pages, (long long)mk.ny, (long long)mk.nx);
    }
    if (same) TU_CHECK(tu_count_diff_u32(want, mk.u32, n) == 0, "%s: whole volume vs masks", name);
    cp_bstore st;
    dtest_open_store(&st);
    for (int k = 0; k < nb; k++)
        check(&st, raw.u32, nz, ny, nx, atoll(bs[k]), min_size, want, name);
    dtest_close_store(&st);
    free(want);
    tu_tiff_free(&raw);
    tu_tiff_free(&mk);
    json_object_put(j);
    return tu_finish();
}

/* A missing "m03" block of the last rank: the same error on every rank. */
static int test_edges(void)
{
    cp_bstore st;
    dtest_open_store(&st);
    int64_t nz = 6, ny = 7, nx = 9, n = nz * ny * nx, nl = 0;
    uint32_t *vol = malloc(sizeof *vol * (size_t)n), *want = malloc(sizeof *want * (size_t)n);
    char err[CP_ERR_LEN] = "";
    /* an all-background volume */
    memset(vol, 0, sizeof *vol * (size_t)n);
    memset(want, 0, sizeof *want * (size_t)n);
    check(&st, vol, nz, ny, nx, 3, 15, want, "empty");
    /* one label everywhere */
    for (int64_t i = 0; i < n; i++) vol[i] = want[i] = 1;
    check(&st, vol, nz, ny, nx, 4, 15, want, "full");
    /* a wall around a cavity that is exactly one block: the block holds no voxel of the wall's
     * label, every other block only its voxels */
    {
        int64_t m = 12, nm = m * m * m;
        uint32_t *cv = calloc((size_t)nm, sizeof *cv), *cw = calloc((size_t)nm, sizeof *cw);
        for (int64_t z = 3; z < 9; z++)
            for (int64_t y = 3; y < 9; y++)
                for (int64_t x = 3; x < 9; x++) {
                    int in = z >= 4 && z < 8 && y >= 4 && y < 8 && x >= 4 && x < 8;
                    cv[(z * m + y) * m + x] = in ? 0 : 1;
                    cw[(z * m + y) * m + x] = 1;
                }
        check(&st, cv, m, m, m, 4, 15, cw, "cavity of one block");
        check(&st, cv, m, m, m, 0, 15, cw, "cavity of one block");
        free(cv);
        free(cw);
    }
    /* a missing block */
    cp_grid g;
    cp_grid_init3(&g, nz, ny, nx, 3, nranks_);
    put_blocks(&g, &st, vol);
    int64_t b0, b1;
    cp_grid_range(&g, nranks_ - 1, &b0, &b1);
    if (rank_ == nranks_ - 1) cp_bstore_remove(&st, CP_DPOST3_IN, b1 - 1);
    int rc = cp_dpost3_run(MPI_COMM_WORLD, &g, &st, 15, &nl, err);
    int rcs[2] = {rc, -rc};
    MPI_Allreduce(MPI_IN_PLACE, rcs, 2, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    TU_CHECK(rc != 0 && rcs[0] == -rcs[1], "missing block: rc %d on rank %d (%s)", rc, rank_, err);
    free(vol);
    free(want);
    dtest_close_store(&st);
    return tu_finish();
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &nranks_);
    int rc = 2;
    if (argc >= 4 && strcmp(argv[1], "random") == 0)
        rc = test_random(argv[2], argc - 3, argv + 3);
    else if (argc >= 4 && strcmp(argv[1], "holes") == 0)
        rc = test_holes(argv[2], argc - 3, argv + 3);
    else if (argc >= 4 && strcmp(argv[1], "case") == 0)
        rc = test_case(argv[2], argc - 3, argv + 3);
    else if (argc == 2 && strcmp(argv[1], "edges") == 0)
        rc = test_edges();
    else if (rank_ == 0)
        fprintf(stderr, "usage: test_dpost3 random|holes <N|A-B> <B>... | case <name> <B>... | "
                        "edges\n");
    int failed = tu_failed;
    MPI_Allreduce(MPI_IN_PLACE, &failed, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    MPI_Finalize();
    return rc ? rc : failed ? 1 : 0;
}
