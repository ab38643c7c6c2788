/* Raw masks over owner blocks, of a plane (dmasks.h) or a volume (dmasks3.h): the distributed
 * form of cp_masks_raw and cp_masks3_raw, one code for both. A plane is the volume with Lz = 1:
 * its histogram is padded in Y and X only (no halo, window or seed box in z; the 5x5x5 box of
 * cp_masks_grid_seeds on a grid of depth 1 is the 5x5 window), a volume's in all three axes.
 *
 * Why the labels are exactly those of the whole plane (volume) (cells are pixels or voxels,
 * windows 5x5 / 11x11 or 5x5x5 / 11x11x11, raster order is C order (z, y, x)):
 * - The histogram cell of a particle is its end point truncated per axis (+20 in Cellpose's
 *   padded array); "fin" of block b holds exactly the particles whose end cell is in b, so b's
 *   counts are complete at b's owner. Cells outside the volume are padding: always 0, never
 *   seeds.
 * - The seed-region map M at a cell c is the label of the last seed, in the sorted order, whose
 *   grown region contains c. A grown region lies in the seed's 11-wide window, so only the seeds
 *   within Chebyshev distance GROW_R = 5 of c matter: for a block, those of the block grown by 5.
 * - Whether a cell is a seed reads h on its 5-wide box (SEED_R = 2 beyond it), growing a seed
 *   reads h on its 11-wide window (5 beyond): h is needed on the block grown by HALO = 10. Each
 *   block gets from the blocks around it their non-zero counts within 10 of it, and keeps the
 *   result as "mh", its extended histogram. The seeds used lie inside the volume, so their
 *   windows never reach the border of the 20-padded array: no window is truncated differently.
 * - The label of a seed is its position (+1) in the order of all seeds: each block's own seeds
 *   (raster index, count) go to rank 0, which lists them in raster order (Cellpose's row-major
 *   seed list, of the padded grid as of the volume), runs the same argsort emulation
 *   (cp_seed_argsort) and broadcasts the table raster index -> label, O(number of seeds).
 * - A block paints the seeds within 5 of it (its own and those of its neighbours, found again on
 *   its extended histogram) in increasing label order: the last writer is the largest label, as
 *   in the whole-volume loop.
 * - A particle's label is M at its end cell (in its block); it is sent to the owner of the source
 *   cell. Cell counts and the smallest raster index per label are summed / minimised over
 *   ranks: removal (count > Lz*Ly*Lx*fraction in f64, strict) and new ids by increasing smallest
 *   index are what cp_masks_finish's raster pass does.
 * Memory per rank: one block grown by 10, one block's particles and the records of one round in
 * flight (round_records plus one block's), plus tables of the number of seeds. What arrives for a
 * block is queued in the store until the block is processed. */
#include "dmasks.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agree.h"
#include "cp_err.h"
#include "dfollow3.h"
#include "dmasks3.h"
#include "exchange.h"
#include "follow3d.h"
#include "masks.h"
#include "masks3d.h"
#include "renumber.h"

enum {
    SEED_R = 2,        /* seeds: maximum of the 5x5 (5x5x5) window */
    GROW_R = 5,        /* growth: 11x11 (11x11x11) window */
    HALO = 2 * GROW_R, /* histogram cells a block needs beyond its own */
    REC = 3,           /* int64 per record in transit: target block, raster index, value */
};
_Static_assert(HALO >= GROW_R + SEED_R, "the halo must hold the seed test of every seed used");

/* Growable list of records (REC int64 each). */
typedef struct recs {
    int64_t *v;
    int64_t n, cap;
} recs;

static int recs_push(recs *r, int64_t a, int64_t b, int64_t c, char *err)
{
    if (r->n == r->cap) {
        int64_t cap = r->cap ? 2 * r->cap : 1024;
        int64_t *t = realloc(r->v, sizeof(int64_t) * (size_t)(REC * cap));
        if (!t)
            return cp_errf(err, CP_ENOMEM, "dmasks: cannot allocate %lld records", (long long)cap);
        r->v = t, r->cap = cap;
    }
    int64_t *e = r->v + REC * r->n++;
    e[0] = a, e[1] = b, e[2] = c;
    return 0;
}

/* Orders records (or any rows of int64) by their first field. */
static int cmp_first(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* The phase's context: plane or volume, own blocks, rounds, MPI count arrays, array names. nd is
 * 2 (a plane: the grid's Lz = 1, no halo and no window in z) or 3. */
typedef struct dm {
    MPI_Comm comm;
    int rank, nranks, nd;
    const cp_grid *g;
    const cp_bstore *store;
    int64_t b0, b1; /* own blocks */
    int *cnt;       /* 2 * nranks: receive counts, displacements of the seed gather */
    char fin[64], mh[64], mhq[64], mlq[64], m0[64];
} dm;

/* Seeds of the volume in raster order with their labels (the same on every rank). */
typedef struct seedtab {
    int64_t K;
    int64_t *idx;    /* raster index (z * Ly + y) * Lx + x, increasing */
    uint32_t *label; /* 1..K: position in Cellpose's seed order + 1 */
} seedtab;

/* A block grown by h[k] = HALO on every side of each axis (none in z for a plane), not clipped:
 * cells outside the volume stay 0. */
typedef struct ext {
    cp_box3 r;     /* the block */
    int64_t h[3];  /* halo per axis */
    int64_t e[3];  /* the window's size */
} ext;

static ext ext_of(const dm *m, int64_t b)
{
    ext e = {.r = cp_grid_box(m->g, b)};
    for (int k = 0; k < 3; k++)
        e.h[k] = k == 0 && m->nd == 2 ? 0 : HALO, e.e[k] = e.r.n[k] + 2 * e.h[k];
    return e;
}

static int64_t ext_cells(const ext *e) { return e->e[0] * e->e[1] * e->e[2]; }

/* Window index of volume cell c (z, y, x). */
static int64_t ext_at(const ext *e, const int64_t c[3])
{
    int64_t i = 0;
    for (int k = 0; k < 3; k++) i = i * e->e[k] + c[k] - e->r.o[k] + e->h[k];
    return i;
}

/* Window coordinates of window index i. */
static void ext_coords(const ext *e, int64_t i, int64_t w[3])
{
    w[2] = i % e->e[2], w[1] = i / e->e[2] % e->e[1], w[0] = i / (e->e[2] * e->e[1]);
}

/* Raster index of volume cell c, and back. */
static int64_t raster_of(const cp_grid *g, const int64_t c[3])
{
    return (c[0] * g->Ly + c[1]) * g->Lx + c[2];
}

static void raster_coords(const cp_grid *g, int64_t i, int64_t c[3])
{
    c[2] = i % g->Lx, c[1] = i / g->Lx % g->Ly, c[0] = i / (g->Lx * g->Ly);
}

/* Volume raster index of window index i. */
static int64_t ext_raster(const ext *e, const cp_grid *g, int64_t i)
{
    int64_t c[3];
    ext_coords(e, i, c);
    for (int k = 0; k < 3; k++) c[k] += e->r.o[k] - e->h[k];
    return raster_of(g, c);
}

/* Whether window coordinates w lie in the block grown by `by` (in the axes with a halo). */
static int ext_near(const ext *e, const int64_t w[3], int64_t by)
{
    for (int k = 0; k < 3; k++) {
        const int64_t d = e->h[k] ? by : 0;
        if (w[k] < e->h[k] - d || w[k] >= e->h[k] + e->r.n[k] + d) return 0;
    }
    return 1;
}

/* The blocks whose voxels intersect box r (clipped to the volume), in increasing order; returns
 * the count (list may be NULL). */
static int64_t blocks_touching(const cp_grid *g, cp_box3 r, int64_t *list)
{
    int64_t lo[3], hi[3], n = 0;
    for (int k = 0; k < 3; k++) {
        if (r.n[k] <= 0) return 0;
        lo[k] = r.o[k] / g->B, hi[k] = (r.o[k] + r.n[k] - 1) / g->B;
    }
    for (int64_t bz = lo[0]; bz <= hi[0]; bz++)
        for (int64_t by = lo[1]; by <= hi[1]; by++)
            for (int64_t bx = lo[2]; bx <= hi[2]; bx++, n++)
                if (list) list[n] = (bz * g->nby + by) * g->nbx + bx;
    return n;
}

/* A particle of "fin" / "fin3" with its end cell: cp_particle and cp_particle3 are converted in
 * place into this record of the same size. */
typedef struct endpt {
    int64_t src;
    int32_t c[3]; /* end cell (z, y, x) */
    int32_t pad_;
} endpt;
_Static_assert(sizeof(endpt) == sizeof(cp_particle) && sizeof(endpt) == sizeof(cp_particle3),
               "particles are converted in place");

static void endpt_cell(const endpt *p, int64_t c[3])
{
    for (int k = 0; k < 3; k++) c[k] = p->c[k];
}

/* Checks particle i of block b (end point f (z, y, x), f[0] = 0 for a plane; src) as
 * cp_masks_histogram / cp_masks3_histogram do (NaN fails), and its end cell inside block b. */
static int check_particle(const dm *m, int64_t b, int64_t i, const float f[3], int64_t src,
                          char *err)
{
    const cp_grid *g = m->g;
    const int64_t L[3] = {g->Lz, g->Ly, g->Lx};
    int out = 0;
    for (int k = 0; k < 3; k++) out |= !(f[k] >= 0.0f && f[k] <= (float)(L[k] - 1));
    if (out && m->nd == 2)
        return cp_errf(err, CP_EDATA,
                       "dmasks: block %lld: particle %lld: end point (%g, %g) outside the %lld x "
                       "%lld plane",
                       (long long)b, (long long)i, (double)f[1], (double)f[2], (long long)g->Ly,
                       (long long)g->Lx);
    if (out)
        return cp_errf(err, CP_EDATA,
                       "dmasks: block %lld: particle %lld: end point (%g, %g, %g) outside the "
                       "%lld x %lld x %lld volume",
                       (long long)b, (long long)i, (double)f[0], (double)f[1], (double)f[2],
                       (long long)L[0], (long long)L[1], (long long)L[2]);
    if ((src < 0 || src >= L[0] * L[1] * L[2]) && m->nd == 2)
        return cp_errf(err, CP_EDATA,
                       "dmasks: block %lld: particle %lld: source pixel %lld outside the %lld x "
                       "%lld plane",
                       (long long)b, (long long)i, (long long)src, (long long)g->Ly,
                       (long long)g->Lx);
    if (src < 0 || src >= L[0] * L[1] * L[2])
        return cp_errf(err, CP_EDATA,
                       "dmasks: block %lld: particle %lld: source voxel %lld outside the %lld x "
                       "%lld x %lld volume",
                       (long long)b, (long long)i, (long long)src, (long long)L[0],
                       (long long)L[1], (long long)L[2]);
    const cp_box3 r = cp_grid_box(g, b);
    const int64_t c[3] = {(int64_t)f[0], (int64_t)f[1], (int64_t)f[2]};
    if (cp_grid_block_at3(g, c[0], c[1], c[2]) == b) return 0;
    if (m->nd == 2)
        return cp_errf(err, CP_EDATA,
                       "dmasks: block %lld: particle %lld: end cell (%lld, %lld) outside the block "
                       "(rows %lld..%lld, columns %lld..%lld)",
                       (long long)b, (long long)i, (long long)c[1], (long long)c[2],
                       (long long)r.o[1], (long long)(r.o[1] + r.n[1] - 1), (long long)r.o[2],
                       (long long)(r.o[2] + r.n[2] - 1));
    return cp_errf(err, CP_EDATA,
                   "dmasks: block %lld: particle %lld: end cell (%lld, %lld, %lld) outside the "
                   "block (planes %lld..%lld, rows %lld..%lld, columns %lld..%lld)",
                   (long long)b, (long long)i, (long long)c[0], (long long)c[1], (long long)c[2],
                   (long long)r.o[0], (long long)(r.o[0] + r.n[0] - 1), (long long)r.o[1],
                   (long long)(r.o[1] + r.n[1] - 1), (long long)r.o[2],
                   (long long)(r.o[2] + r.n[2] - 1));
}

/* The particles of "fin" of block b (*p malloc'ed, NULL when none), checked (check_particle) and
 * converted to end cells. */
static int load_fin(const dm *m, int64_t b, endpt **p, int64_t *n, char *err)
{
    *p = NULL, *n = 0;
    int64_t bytes = cp_bstore_size(m->store, m->fin, b);
    if (bytes <= 0) return 0;
    if (bytes % (int64_t)sizeof(endpt))
        return cp_errf(err, CP_EFORMAT,
                       "dmasks: block %lld: \"%s\" has %lld bytes, not whole particle records",
                       (long long)b, m->fin, (long long)bytes);
    endpt *q = malloc((size_t)bytes);
    if (!q)
        return cp_errf(err, CP_ENOMEM,
                       "dmasks: block %lld: cannot allocate %lld bytes of particles", (long long)b,
                       (long long)bytes);
    int rc = cp_bstore_get(m->store, m->fin, b, q, (size_t)bytes, err);
    const int64_t nq = bytes / (int64_t)sizeof(endpt);
    for (int64_t i = 0; !rc && i < nq; i++) {
        float f[3];
        int64_t src;
        if (m->nd == 2) {
            cp_particle r;
            memcpy(&r, q + i, sizeof r);
            f[0] = 0.0f, f[1] = r.py, f[2] = r.px, src = r.src;
        } else {
            cp_particle3 r;
            memcpy(&r, q + i, sizeof r);
            memcpy(f, r.c, sizeof f), src = r.src;
        }
        rc = check_particle(m, b, i, f, src, err);
        if (!rc) q[i] = (endpt){src, {(int32_t)f[0], (int32_t)f[1], (int32_t)f[2]}, 0};
    }
    if (rc) {
        free(q);
        return rc;
    }
    *p = q, *n = nq;
    return 0;
}

/* Appends received records to queue `queue` of their target blocks (own blocks), one append per
 * block. Sorts rec. */
static int deliver(const dm *m, int64_t *rec, int64_t n, const char *queue, char *err)
{
    qsort(rec, (size_t)n, sizeof(int64_t) * REC, cmp_first);
    int rc = 0;
    for (int64_t i = 0, j; !rc && i < n; i = j) {
        j = i + 1;
        while (j < n && rec[REC * j] == rec[REC * i]) j++;
        rc = cp_bstore_append(m->store, queue, rec[REC * i], rec + REC * i,
                              sizeof(int64_t) * (size_t)(REC * (j - i)), err);
    }
    return rc;
}

/* Queues the record (target block, raster index, value) for the owner of the block. */
static int send_rec(const dm *m, cp_outbox *out, int64_t blk, int64_t idx, int64_t v, char *err)
{
    const int64_t rec[REC] = {blk, idx, v};
    if (cp_outbox_push(out, cp_grid_owner(m->g, blk), rec, 1))
        return cp_errf(err, CP_ENOMEM, "dmasks: cannot allocate %lld records to send",
                       (long long)out->queued + 1);
    return 0;
}

/* One round of all-to-all (collective): the records of out go to the owners of their target
 * blocks, which queue them (deliver). rc: this rank's status so far. Statuses are agreed on
 * before the data moves and after it is queued, so every rank returns the same status after the
 * same collectives (a failure anywhere: all ranks return it). Empties out. */
static int send_to_blocks(const dm *m, int rc, cp_outbox *out, const char *queue, char *err)
{
    int64_t *rec, n;
    if ((rc = cp_exchange(out, rc, INT64_MAX, (void **)&rec, &n, err)) != 0) return rc;
    rc = deliver(m, rec, n, queue, err);
    free(rec);
    return cp_agree(m->comm, rc, err);
}

/* What a rank sends in one round beyond the records of its last block: the records of two
 * blocks' cells, between 2^16 and 2^20, so that the memory of a round (24 bytes per record, sent
 * and received) follows the block while the rounds, each a few collectives, stay few. */
static int64_t round_records(const dm *m)
{
    int64_t cells = m->g->B * m->g->B * (m->nd == 3 ? m->g->B : 1);
    int64_t n = 2 * cells;
    return n < (1 << 16) ? 1 << 16 : n > (1 << 20) ? 1 << 20 : n;
}

/* Runs step(m, t, b, ...) on every own block in order and sends the records it produces, in
 * rounds: a rank steps through blocks until round_records are pending, then every rank exchanges
 * (send_to_blocks); rounds go on while any rank has blocks left. Collective; the returned status
 * is agreed. */
typedef int (*block_step)(const dm *m, const seedtab *t, int64_t b, cp_outbox *out, char *err);

static int rounds(const dm *m, const seedtab *t, cp_outbox *out, block_step step,
                  const char *queue, char *err)
{
    int rc = 0, more = 1;
    for (int64_t b = m->b0; !rc && more;) {
        int lrc = 0;
        while (!lrc && b < m->b1 && out->queued < round_records(m))
            lrc = step(m, t, b++, out, err);
        rc = send_to_blocks(m, lrc, out, queue, err);
        int mine = b < m->b1;
        if (!rc) MPI_Allreduce(&mine, &more, 1, MPI_INT, MPI_MAX, m->comm);
    }
    return rc;
}

/* ---- phase 1: histogram of own end points; the counts within HALO of other blocks sent ---- */

static int hist_block(const dm *m, const seedtab *t, int64_t b, cp_outbox *out, char *err)
{
    (void)t;
    const cp_grid *g = m->g;
    const ext e = ext_of(m, b);
    endpt *p;
    int64_t n, nb = 0, *nbrs = NULL, c[3];
    int rc = load_fin(m, b, &p, &n, err);
    if (rc) return rc;
    int32_t *h = calloc((size_t)ext_cells(&e), sizeof *h);
    if (!h) {
        free(p);
        return cp_errf(err, CP_ENOMEM, "dmasks: block %lld: cannot allocate the histogram",
                       (long long)b);
    }
    for (int64_t i = 0; i < n; i++) endpt_cell(&p[i], c), h[ext_at(&e, c)]++;
    free(p);
    rc = cp_bstore_put(m->store, m->mh, b, h, sizeof *h * (size_t)ext_cells(&e), err);
    /* block b2's extended window holds cell c iff c is within HALO of b2, i.e. b2 touches c's
     * HALO-neighbourhood: every such b2 touches b grown by HALO (clipped to the volume: in z for
     * a plane, that is z = 0) */
    const cp_box3 around = cp_box3_grow(g, e.r, HALO);
    if (!rc) {
        nb = blocks_touching(g, around, NULL);
        if (!(nbrs = malloc(sizeof *nbrs * (size_t)(nb + 1))))
            rc = cp_errf(err, CP_ENOMEM, "dmasks: block %lld: cannot allocate %lld neighbours",
                         (long long)b, (long long)nb);
        else
            blocks_touching(g, around, nbrs);
    }
    for (int64_t k = 0; !rc && k < nb; k++) {
        if (nbrs[k] == b) continue;
        const cp_box3 o = cp_box3_grow(g, cp_grid_box(g, nbrs[k]), HALO);
        int64_t lo[3], hi[3];
        for (int a = 0; a < 3; a++) {
            lo[a] = o.o[a] > e.r.o[a] ? o.o[a] : e.r.o[a];
            hi[a] = o.o[a] + o.n[a] < e.r.o[a] + e.r.n[a] ? o.o[a] + o.n[a] : e.r.o[a] + e.r.n[a];
        }
        for (c[0] = lo[0]; !rc && c[0] < hi[0]; c[0]++)
            for (c[1] = lo[1]; !rc && c[1] < hi[1]; c[1]++)
                for (c[2] = lo[2]; !rc && c[2] < hi[2]; c[2]++) {
                    int32_t v = h[ext_at(&e, c)];
                    if (v) rc = send_rec(m, out, nbrs[k], raster_of(g, c), v, err);
                }
    }
    free(nbrs);
    free(h);
    return rc;
}

/* ---- phase 2: extended histograms complete; seeds ---- */

/* The seeds of extended histogram h that can paint a cell of the block: those within GROW_R of
 * it, in window raster order (*s malloc'ed, the caller frees). cp_masks_grid_seeds reads the
 * window as a grid; cells within SEED_R of the window's border see a truncated window and may be
 * false seeds, but they are beyond GROW_R of the block and dropped (a plane has no window in z:
 * there the 5x5x5 box of a grid of depth 1 is the 5x5 window of 2-D). */
static int block_seeds(const ext *e, const int32_t *h, cp_seed **s, int64_t *n, char *err)
{
    int rc = cp_masks_grid_seeds(h, e->e, s, n, err);
    if (rc) return rc;
    int64_t k = 0, w[3];
    for (int64_t i = 0; i < *n; i++) {
        ext_coords(e, (*s)[i].idx, w);
        if (ext_near(e, w, GROW_R)) (*s)[k++] = (*s)[i];
    }
    *n = k;
    return 0;
}

/* Adds the queued counts of other blocks to "mh" of b, stores it, and appends the seeds inside
 * b to own as (raster index, count, b). */
static int seeds_block(const dm *m, int64_t b, recs *own, char *err)
{
    const ext e = ext_of(m, b);
    const size_t bytes = sizeof(int32_t) * (size_t)ext_cells(&e);
    int32_t *h = malloc(bytes);
    int64_t *q = NULL, nseeds = 0, c[3], w[3];
    size_t qbytes = 0;
    cp_seed *s = NULL;
    int rc = h ? cp_bstore_get(m->store, m->mh, b, h, bytes, err)
               : cp_errf(err, CP_ENOMEM, "dmasks: block %lld: cannot allocate the histogram",
                         (long long)b);
    if (!rc) rc = cp_bstore_take(m->store, m->mhq, b, (void **)&q, &qbytes, err);
    const int64_t nq = (int64_t)(qbytes / (sizeof(int64_t) * REC));
    for (int64_t i = 0; !rc && i < nq; i++) {
        raster_coords(m->g, q[REC * i + 1], c);
        h[ext_at(&e, c)] += (int32_t)q[REC * i + 2];
    }
    if (!rc) rc = cp_bstore_put(m->store, m->mh, b, h, bytes, err);
    if (!rc) rc = block_seeds(&e, h, &s, &nseeds, err);
    for (int64_t k = 0; !rc && k < nseeds; k++) {
        ext_coords(&e, s[k].idx, w);
        if (ext_near(&e, w, 0))
            rc = recs_push(own, ext_raster(&e, m->g, s[k].idx), s[k].count, b, err);
    }
    free(s);
    free(q);
    free(h);
    return rc;
}

/* Rank 0: the gathered seeds (REC int64 each) in raster order, their labels in Cellpose's seed
 * order, into t (rank 0's table). */
static int order_seeds(int64_t *all, int64_t K, seedtab *t, char *err)
{
    qsort(all, (size_t)K, sizeof(int64_t) * REC, cmp_first);
    int32_t *counts = malloc(sizeof *counts * (size_t)(K + 1));
    int64_t *order = malloc(sizeof *order * (size_t)(K + 1));
    int rc = 0;
    if (!counts || !order) {
        rc = cp_errf(err, CP_ENOMEM, "dmasks: cannot allocate the order of %lld seeds",
                     (long long)K);
    } else {
        for (int64_t k = 0; k < K; k++)
            t->idx[k] = all[REC * k], counts[k] = (int32_t)all[REC * k + 1];
        cp_seed_argsort(counts, K, order);
        for (int64_t k = 0; k < K; k++) t->label[order[k]] = (uint32_t)(k + 1);
    }
    free(counts);
    free(order);
    return rc;
}

/* Allocates t's arrays for t->K seeds. */
static int seedtab_alloc(seedtab *t, char *err)
{
    t->idx = malloc(sizeof *t->idx * (size_t)(t->K + 1));
    t->label = malloc(sizeof *t->label * (size_t)(t->K + 1));
    if (!t->idx || !t->label)
        return cp_errf(err, CP_ENOMEM, "dmasks: cannot allocate the table of %lld seeds",
                       (long long)t->K);
    return 0;
}

/* Collective: the seeds of every block, their global order, and the table on every rank. */
static int seeds_phase(const dm *m, seedtab *t, char *err)
{
    int *rcount = m->cnt, *rdispl = rcount + m->nranks;
    recs own = {0};
    int64_t *all = NULL, total = 0;
    int rc = 0;
    for (int64_t b = m->b0; !rc && b < m->b1; b++) rc = seeds_block(m, b, &own, err);
    if (!rc && own.n > INT_MAX / REC)
        rc = cp_errf(err, CP_EDATA, "dmasks: %lld seeds on one rank exceed MPI's int counts",
                     (long long)own.n);
    if ((rc = cp_agree(m->comm, rc, err))) goto done;
    int mine = (int)(REC * own.n);
    MPI_Gather(&mine, 1, MPI_INT, rcount, 1, MPI_INT, 0, m->comm);
    if (m->rank == 0) {
        for (int r = 0; r < m->nranks; r++) rdispl[r] = (int)total, total += rcount[r];
        t->K = total / REC;
        if (total > INT_MAX || t->K > (int64_t)UINT32_MAX - 1)
            rc = cp_errf(err, CP_EDATA,
                         "dmasks: %lld seeds exceed the uint32 label range or MPI's int counts",
                         (long long)t->K);
        else if (!(all = malloc(sizeof *all * (size_t)(total + 1))))
            rc = cp_errf(err, CP_ENOMEM, "dmasks: cannot allocate %lld seeds", (long long)t->K);
        else
            rc = seedtab_alloc(t, err);
    }
    if ((rc = cp_agree(m->comm, rc, err))) goto done;
    MPI_Gatherv(own.v, mine, MPI_INT64_T, all, rcount, rdispl, MPI_INT64_T, 0, m->comm);
    if (m->rank == 0) rc = order_seeds(all, t->K, t, err);
    if ((rc = cp_agree(m->comm, rc, err))) goto done;
    MPI_Bcast(&t->K, 1, MPI_INT64_T, 0, m->comm);
    if (m->rank != 0) rc = seedtab_alloc(t, err);
    if ((rc = cp_agree(m->comm, rc, err))) goto done;
    MPI_Bcast(t->idx, (int)t->K, MPI_INT64_T, 0, m->comm);
    MPI_Bcast(t->label, (int)t->K, MPI_UINT32_T, 0, m->comm);
done:
    free(own.v);
    free(all);
    return rc;
}

/* ---- phase 3: seed regions painted, particles labelled, labels sent to the sources ---- */

typedef struct lseed {
    int64_t label; /* first: cmp_first sorts by it */
    int64_t idx;   /* window index */
} lseed;

/* Grows seed s of window histogram h into M (cp_masks_grow / cp_masks3_grow on the window taken
 * as a padded grid). */
static void grow(const ext *e, int nd, const int32_t *h, int64_t idx, uint32_t label, uint32_t *M)
{
    const cp_seed s = {.idx = idx};
    if (nd == 2) {
        cp_masks_grow(h, e->e[2] - 2 * CP_RPAD, s, label, M);
    } else {
        const int64_t L[3] = {e->e[0] - 2 * CP_RPAD, e->e[1] - 2 * CP_RPAD, e->e[2] - 2 * CP_RPAD};
        cp_masks3_grow(h, L, s, label, M);
    }
}

/* M over the window of block b (*M malloc'ed): the seeds within GROW_R of the block grown in
 * increasing label order. */
static int paint_block(const dm *m, const seedtab *t, int64_t b, const ext *e, uint32_t **M,
                       char *err)
{
    const size_t cells = (size_t)ext_cells(e);
    int32_t *h = malloc(sizeof *h * cells);
    cp_seed *s = NULL;
    lseed *ls = NULL;
    int64_t n = 0;
    *M = calloc(cells, sizeof **M);
    int rc = h && *M ? cp_bstore_get(m->store, m->mh, b, h, sizeof *h * cells, err)
                     : cp_errf(err, CP_ENOMEM, "dmasks: block %lld: cannot allocate the seed map",
                               (long long)b);
    if (!rc) rc = block_seeds(e, h, &s, &n, err);
    if (!rc && !(ls = malloc(sizeof *ls * (size_t)(n + 1))))
        rc = cp_errf(err, CP_ENOMEM, "dmasks: block %lld: cannot allocate %lld seeds", (long long)b,
                     (long long)n);
    for (int64_t k = 0; !rc && k < n; k++) {
        int64_t gi = ext_raster(e, m->g, s[k].idx);
        const int64_t *at = bsearch(&gi, t->idx, (size_t)t->K, sizeof *t->idx, cmp_first);
        if (!at)
            rc = cp_errf(
                err, CP_EDATA,
                "dmasks: block %lld: seed at %s %lld is missing from the global seed list",
                (long long)b, m->nd == 2 ? "pixel" : "voxel", (long long)gi);
        else
            ls[k] = (lseed){t->label[at - t->idx], s[k].idx};
    }
    if (!rc) {
        qsort(ls, (size_t)n, sizeof *ls, cmp_first);
        for (int64_t k = 0; k < n; k++) grow(e, m->nd, h, ls[k].idx, (uint32_t)ls[k].label, *M);
    }
    free(h);
    free(s);
    free(ls);
    if (rc) {
        free(*M);
        *M = NULL;
    }
    return rc;
}

static int label_block(const dm *m, const seedtab *t, int64_t b, cp_outbox *out, char *err)
{
    const ext e = ext_of(m, b);
    uint32_t *M = NULL;
    endpt *p = NULL;
    int64_t n = 0, c[3];
    int rc = paint_block(m, t, b, &e, &M, err);
    if (!rc) rc = load_fin(m, b, &p, &n, err);
    for (int64_t i = 0; !rc && i < n; i++) {
        endpt_cell(&p[i], c);
        uint32_t v = M[ext_at(&e, c)];
        if (!v) continue; /* "m0" starts at 0: label 0 needs no message */
        raster_coords(m->g, p[i].src, c);
        rc = send_rec(m, out, cp_grid_block_at3(m->g, c[0], c[1], c[2]), p[i].src, v, err);
    }
    free(M);
    free(p);
    return rc;
}

/* ---- phase 4: labels at their pixels, counts and first raster index per label ---- */

static int64_t box_cells(const cp_box3 *r) { return r->n[0] * r->n[1] * r->n[2]; }

static int write_block(const dm *m, const seedtab *t, int64_t b, int64_t *count, int64_t *first,
                       char *err)
{
    const cp_box3 r = cp_grid_box(m->g, b);
    uint32_t *lab = calloc((size_t)box_cells(&r), sizeof *lab);
    int64_t *q = NULL, c[3];
    size_t qbytes = 0;
    int rc = lab ? cp_bstore_take(m->store, m->mlq, b, (void **)&q, &qbytes, err)
                 : cp_errf(err, CP_ENOMEM, "dmasks: block %lld: cannot allocate the labels",
                           (long long)b);
    const int64_t nq = (int64_t)(qbytes / (sizeof(int64_t) * REC));
    for (int64_t i = 0; !rc && i < nq; i++) {
        int64_t src = q[REC * i + 1], v = q[REC * i + 2];
        raster_coords(m->g, src, c);
        if (v < 1 || v > t->K || cp_grid_block_at3(m->g, c[0], c[1], c[2]) != b) {
            rc = cp_errf(err, CP_EDATA,
                         "dmasks: block %lld: label %lld for %s %lld does not belong here",
                         (long long)b, (long long)v, m->nd == 2 ? "pixel" : "voxel",
                         (long long)src);
            break;
        }
        lab[((c[0] - r.o[0]) * r.n[1] + c[1] - r.o[1]) * r.n[2] + c[2] - r.o[2]] = (uint32_t)v;
        count[v]++;
        first[v] = src < first[v] ? src : first[v];
    }
    if (!rc)
        rc = cp_bstore_put(m->store, m->m0, b, lab, sizeof *lab * (size_t)box_cells(&r), err);
    free(q);
    free(lab);
    return rc;
}

/* New ids (the same on every rank): the labels not too big (cp_masks_too_big) numbered 1..N by
 * first appearance (cp_renumber_ids), the others 0. *n gets N. */
static int renumber(const dm *m, double max_size_fraction, const int64_t *count,
                    const int64_t *first, int64_t K, uint32_t *to, int64_t *n, char *err)
{
    const int64_t nvox = m->g->Lz * m->g->Ly * m->g->Lx;
    for (int64_t v = 1; v <= K; v++)
        to[v] = !cp_masks_too_big(count[v], nvox, max_size_fraction);
    if ((*n = cp_renumber_ids(first, 1, K, to)) < 0)
        return cp_errf(err, CP_ENOMEM, "dmasks: cannot allocate the ids of %lld labels",
                       (long long)K);
    return 0;
}

/* Replaces "m0" of own block b by its new ids and drops its extended histogram. */
static int relabel_block(const dm *m, int64_t b, const uint32_t *to, int64_t K, char *err)
{
    const cp_box3 r = cp_grid_box(m->g, b);
    const int64_t nv = box_cells(&r);
    const size_t bytes = sizeof(uint32_t) * (size_t)nv;
    uint32_t *lab = malloc(bytes);
    int rc = lab ? cp_bstore_get(m->store, m->m0, b, lab, bytes, err)
                 : cp_errf(err, CP_ENOMEM, "dmasks: block %lld: cannot allocate the labels",
                           (long long)b);
    for (int64_t i = 0; !rc && i < nv; i++) {
        if (lab[i] > K) { /* ids read back index `to`: check them (issue 20) */
            char path[4200], where[80];
            cp_bstore_path(m->store, m->m0, b, path, sizeof path);
            rc = cp_errf(err, CP_EFORMAT, "%s: block %s array '%s': label %lu out of range [0, "
                         "%lld]", path, cp_grid_block_coords(m->g, b, where, sizeof where),
                         m->nd == 2 ? "m0" : CP_DMASKS3_OUT, (unsigned long)lab[i],
                         (long long)K);
            break;
        }
        lab[i] = to[lab[i]];
    }
    if (!rc) rc = cp_bstore_put(m->store, m->m0, b, lab, bytes, err);
    if (!rc) cp_bstore_remove(m->store, m->mh, b);
    free(lab);
    return rc;
}

/* ---- the phase ---- */

static int run(dm *m, double max_size_fraction, int64_t *nlabels, char *err)
{
    seedtab t = {0};
    cp_outbox out;
    int64_t *count = NULL, *first = NULL, n = 0;
    uint32_t *to = NULL;
    int rc = 0;
    *nlabels = 0;
    cp_grid_range(m->g, m->rank, &m->b0, &m->b1);
    /* queues left by an interrupted run (only this rank appends to its blocks' queues) */
    for (int64_t b = m->b0; b < m->b1; b++)
        cp_bstore_remove(m->store, m->mhq, b), cp_bstore_remove(m->store, m->mlq, b);
    rc = cp_outbox_init(&out, m->comm, sizeof(int64_t) * REC, err);
    if (!rc && !(m->cnt = malloc(sizeof *m->cnt * (size_t)(2 * m->nranks))))
        rc = cp_errf(err, CP_ENOMEM, "dmasks: cannot allocate the counts of %d ranks", m->nranks);
    if ((rc = cp_agree(m->comm, rc, err))) goto done;
    if ((rc = rounds(m, &t, &out, hist_block, m->mhq, err))) goto done;
    if ((rc = seeds_phase(m, &t, err))) goto done;
    if ((rc = rounds(m, &t, &out, label_block, m->mlq, err))) goto done;

    count = calloc((size_t)(t.K + 1), sizeof *count);
    first = malloc(sizeof *first * (size_t)(t.K + 1));
    to = malloc(sizeof *to * (size_t)(t.K + 1));
    if (!count || !first || !to)
        rc = cp_errf(err, CP_ENOMEM, "dmasks: cannot allocate the tables of %lld labels",
                     (long long)t.K);
    for (int64_t v = 0; !rc && v <= t.K; v++) first[v] = INT64_MAX;
    for (int64_t b = m->b0; !rc && b < m->b1; b++) rc = write_block(m, &t, b, count, first, err);
    if ((rc = cp_agree(m->comm, rc, err))) goto done;
    MPI_Allreduce(MPI_IN_PLACE, count, (int)(t.K + 1), MPI_INT64_T, MPI_SUM, m->comm);
    MPI_Allreduce(MPI_IN_PLACE, first, (int)(t.K + 1), MPI_INT64_T, MPI_MIN, m->comm);
    rc = renumber(m, max_size_fraction, count, first, t.K, to, &n, err);
    for (int64_t b = m->b0; !rc && b < m->b1; b++) rc = relabel_block(m, b, to, t.K, err);
    if ((rc = cp_agree(m->comm, rc, err))) goto done;
    *nlabels = n;
done:
    cp_outbox_free(&out);
    free(m->cnt);
    free(t.idx);
    free(t.label);
    free(count);
    free(first);
    free(to);
    return rc;
}

int cp_dmasks_run(const cp_dplane *d, double max_size_fraction, int64_t *nlabels, char *err)
{
    dm m = {.comm = d->comm, .rank = d->rank, .nranks = d->nranks, .nd = 2, .g = &d->grid,
            .store = d->store};
    cp_dname(d, CP_SLOT_FIN, m.fin), cp_dname(d, CP_SLOT_MH, m.mh), cp_dname(d, CP_SLOT_MHQ, m.mhq);
    cp_dname(d, CP_SLOT_MLQ, m.mlq), cp_dname(d, CP_SLOT_M0, m.m0);
    return run(&m, max_size_fraction, nlabels, err);
}

int cp_dmasks3_run(MPI_Comm comm, const cp_grid *g, const cp_bstore *store,
                   double max_size_fraction, int64_t *nlabels, char *err)
{
    dm m = {.comm = comm, .nd = 3, .g = g, .store = store};
    MPI_Comm_rank(comm, &m.rank);
    MPI_Comm_size(comm, &m.nranks);
    snprintf(m.fin, sizeof m.fin, "%s", CP_DFOLLOW3_FIN);
    snprintf(m.m0, sizeof m.m0, "%s", CP_DMASKS3_OUT);
    snprintf(m.mh, sizeof m.mh, "mh3"), snprintf(m.mhq, sizeof m.mhq, "mhq3");
    snprintf(m.mlq, sizeof m.mlq, "mlq3");
    return run(&m, max_size_fraction, nlabels, err);
}
