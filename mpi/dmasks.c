/* Raw masks over owner blocks (see dmasks.h): the distributed form of cp_masks_raw.
 *
 * Why the labels are exactly those of cp_masks_raw on the whole plane:
 * - The histogram cell of a particle is (trunc py, trunc px) (+20 in Cellpose's padded array);
 *   "fin" of block b holds exactly the particles whose end cell is in b, so b's counts are
 *   complete at b's owner. Cells outside the plane are padding: always 0, never seeds.
 * - The seed-region map M at a cell c is the label of the last seed, in the sorted order, whose
 *   grown region contains c. A grown region lies in the seed's 11x11 window, so only the seeds
 *   within Chebyshev distance GROW_R = 5 of c matter: for a block, those of the block grown by 5.
 * - Whether a cell is a seed reads h on its 5x5 window (SEED_R = 2 beyond it), growing a seed
 *   reads h on its 11x11 window (5 beyond): h is needed on the block grown by HALO = 10. Each
 *   block gets from the blocks around it their non-zero counts within 10 of it, and keeps the
 *   result as "mh", its extended histogram. The seeds used lie inside the plane, so their windows
 *   never reach the border of the 20-padded array: no window is truncated differently.
 * - The label of a seed is its position (+1) in the order of all seeds of the plane: each block's
 *   own seeds (raster index, count) go to rank 0, which lists them in raster order (Cellpose's
 *   row-major seed list), runs the same argsort emulation (cp_seed_argsort) and broadcasts the
 *   table raster index -> label, O(number of seeds).
 * - A block paints the seeds within 5 of it (its own and those of its neighbours, found again on
 *   its extended histogram) in increasing label order: the last writer is the largest label, as
 *   in the whole-plane loop.
 * - A particle's label is M at its end cell (in its block); it is sent to the owner of the source
 *   pixel. Pixel counts and the smallest raster index per label are summed / minimised over
 *   ranks: removal (count > Ly*Lx*fraction in f64, strict) and new ids by increasing smallest
 *   index are what cp_masks_assign's raster pass does.
 * Memory per rank: one block grown by 10, one block's particles and the records of one round in
 * flight (ROUND_RECORDS plus one block's), plus tables of the number of seeds. What arrives for a
 * block is queued in the store until the block is processed. */
#include "dmasks.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "agree.h"
#include "cp_err.h"
#include "exchange.h"
#include "masks.h"
#include "renumber.h"

enum {
    SEED_R = 2,        /* seeds: maximum of the 5x5 window */
    GROW_R = 5,        /* growth: 11x11 window */
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

/* The phase's context: plane, own blocks, rounds, MPI count arrays, array names. */
typedef struct dm {
    const cp_dplane *d;
    const cp_grid *g;
    int64_t b0, b1; /* own blocks */
    int *cnt;       /* 2 * nranks: receive counts, displacements of the seed gather */
    char fin[64], mh[64], mhq[64], mlq[64], m0[64];
} dm;

/* Seeds of the plane in raster order with their labels (the same on every rank). */
typedef struct seedtab {
    int64_t K;
    int64_t *idx;    /* plane raster index y * Lx + x, increasing */
    uint32_t *label; /* 1..K: position in Cellpose's seed order + 1 */
} seedtab;

/* A block grown by HALO on every side, not clipped: cells outside the plane stay 0. */
typedef struct ext {
    cp_rect r;      /* the block */
    int64_t ey, ex; /* the window's size */
} ext;

static ext ext_of(const cp_grid *g, int64_t b)
{
    cp_rect r = cp_grid_block(g, b);
    return (ext){r, r.ny + 2 * HALO, r.nx + 2 * HALO};
}

/* Window index of plane cell (y, x). */
static int64_t ext_at(const ext *e, int64_t y, int64_t x)
{
    return (y - e->r.y0 + HALO) * e->ex + x - e->r.x0 + HALO;
}

/* Plane raster index of window index i. */
static int64_t ext_raster(const ext *e, int64_t Lx, int64_t i)
{
    return (e->r.y0 - HALO + i / e->ex) * Lx + e->r.x0 - HALO + i % e->ex;
}

/* The particles of "fin" of block b (*p malloc'ed, NULL when none), checked: end point inside the
 * plane (as cp_masks_histogram checks it, NaN fails), end cell inside block b, source inside the
 * plane. */
static int load_fin(const dm *m, int64_t b, cp_particle **p, int64_t *n, char *err)
{
    const cp_grid *g = m->g;
    *p = NULL, *n = 0;
    int64_t bytes = cp_bstore_size(m->d->store, m->fin, b);
    if (bytes <= 0) return 0;
    if (bytes % (int64_t)sizeof(cp_particle))
        return cp_errf(err, CP_EFORMAT,
                       "dmasks: block %lld: \"%s\" has %lld bytes, not whole particle records",
                       (long long)b, m->fin, (long long)bytes);
    cp_particle *q = malloc((size_t)bytes);
    if (!q)
        return cp_errf(err, CP_ENOMEM,
                       "dmasks: block %lld: cannot allocate %lld bytes of particles", (long long)b,
                       (long long)bytes);
    int rc = cp_bstore_get(m->d->store, m->fin, b, q, (size_t)bytes, err);
    const int64_t nq = bytes / (int64_t)sizeof(cp_particle);
    const cp_rect r = cp_grid_block(g, b);
    for (int64_t i = 0; !rc && i < nq; i++) {
        float py = q[i].py, px = q[i].px;
        if (!(py >= 0.0f && py <= (float)(g->Ly - 1) && px >= 0.0f && px <= (float)(g->Lx - 1)))
            rc = cp_errf(err, CP_EDATA,
                         "dmasks: block %lld: particle %lld: end point (%g, %g) outside the %lld x "
                         "%lld plane",
                         (long long)b, (long long)i, (double)py, (double)px, (long long)g->Ly,
                         (long long)g->Lx);
        else if (q[i].src < 0 || q[i].src >= g->Ly * g->Lx)
            rc = cp_errf(err, CP_EDATA,
                         "dmasks: block %lld: particle %lld: source pixel %lld outside the %lld x "
                         "%lld plane",
                         (long long)b, (long long)i, (long long)q[i].src, (long long)g->Ly,
                         (long long)g->Lx);
        else if (cp_grid_block_at(g, (int64_t)py, (int64_t)px) != b)
            rc = cp_errf(
                err, CP_EDATA,
                "dmasks: block %lld: particle %lld: end cell (%lld, %lld) outside the block "
                "(rows %lld..%lld, columns %lld..%lld)",
                (long long)b, (long long)i, (long long)py, (long long)px, (long long)r.y0,
                (long long)(r.y0 + r.ny - 1), (long long)r.x0, (long long)(r.x0 + r.nx - 1));
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
        rc = cp_bstore_append(m->d->store, queue, rec[REC * i], rec + REC * i,
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
    return cp_agree(m->d->comm, rc, err);
}

/* What a rank sends in one round beyond the records of its last block: bounds the memory of a
 * round (24 bytes per record) while keeping the number of rounds, each a few collectives, small. */
enum { ROUND_RECORDS = 1 << 20 };

/* Runs step(m, t, b, ...) on every own block in order and sends the records it produces, in
 * rounds: a rank steps through blocks until ROUND_RECORDS are pending, then every rank exchanges
 * (send_to_blocks); rounds go on while any rank has blocks left. Collective; the returned status
 * is agreed. */
typedef int (*block_step)(const dm *m, const seedtab *t, int64_t b, cp_outbox *out, char *err);

static int rounds(const dm *m, const seedtab *t, cp_outbox *out, block_step step,
                  const char *queue, char *err)
{
    int rc = 0, more = 1;
    for (int64_t b = m->b0; !rc && more;) {
        int lrc = 0;
        while (!lrc && b < m->b1 && out->queued < ROUND_RECORDS) lrc = step(m, t, b++, out, err);
        rc = send_to_blocks(m, lrc, out, queue, err);
        int mine = b < m->b1;
        if (!rc) MPI_Allreduce(&mine, &more, 1, MPI_INT, MPI_MAX, m->d->comm);
    }
    return rc;
}

/* ---- phase 1: histogram of own end points; the counts within HALO of other blocks sent ---- */

static int hist_block(const dm *m, const seedtab *t, int64_t b, cp_outbox *out, char *err)
{
    (void)t;
    const cp_grid *g = m->g;
    const ext e = ext_of(g, b);
    cp_particle *p;
    int64_t n, nb = 0, *nbrs = NULL;
    int rc = load_fin(m, b, &p, &n, err);
    if (rc) return rc;
    int32_t *h = calloc((size_t)(e.ey * e.ex), sizeof *h);
    if (!h) {
        free(p);
        return cp_errf(err, CP_ENOMEM, "dmasks: block %lld: cannot allocate the histogram",
                       (long long)b);
    }
    for (int64_t i = 0; i < n; i++) h[ext_at(&e, (int64_t)p[i].py, (int64_t)p[i].px)]++;
    free(p);
    rc = cp_bstore_put(m->d->store, m->mh, b, h, sizeof *h * (size_t)(e.ey * e.ex), err);
    /* block b2's extended window holds cell c iff c is within HALO of b2, i.e. b2 touches c's
     * HALO-neighbourhood: every such b2 touches b grown by HALO */
    const cp_rect around = cp_rect_grow(g, e.r, HALO);
    if (!rc) {
        nb = cp_grid_blocks_touching(g, around, NULL);
        if (!(nbrs = malloc(sizeof *nbrs * (size_t)nb)))
            rc = cp_errf(err, CP_ENOMEM, "dmasks: block %lld: cannot allocate %lld neighbours",
                         (long long)b, (long long)nb);
        else
            cp_grid_blocks_touching(g, around, nbrs);
    }
    for (int64_t k = 0; !rc && k < nb; k++) {
        if (nbrs[k] == b) continue;
        const cp_rect o = cp_rect_grow(g, cp_grid_block(g, nbrs[k]), HALO);
        const int64_t y0 = o.y0 > e.r.y0 ? o.y0 : e.r.y0, x0 = o.x0 > e.r.x0 ? o.x0 : e.r.x0;
        const int64_t y1 = o.y0 + o.ny < e.r.y0 + e.r.ny ? o.y0 + o.ny : e.r.y0 + e.r.ny;
        const int64_t x1 = o.x0 + o.nx < e.r.x0 + e.r.nx ? o.x0 + o.nx : e.r.x0 + e.r.nx;
        for (int64_t y = y0; !rc && y < y1; y++)
            for (int64_t x = x0; !rc && x < x1; x++) {
                int32_t v = h[ext_at(&e, y, x)];
                if (v) rc = send_rec(m, out, nbrs[k], y * g->Lx + x, v, err);
            }
    }
    free(nbrs);
    free(h);
    return rc;
}

/* ---- phase 2: extended histograms complete; seeds ---- */

/* The seeds of extended histogram h that can paint a cell of the block: those within GROW_R of
 * it, in window raster order (*s malloc'ed, the caller frees). cp_masks_seeds reads a
 * (Ly+40) x (Lx+40) grid and is given the window as one; cells within SEED_R of the window's
 * border see a truncated 5x5 window and may be false seeds, but they are beyond GROW_R of the
 * block and dropped. */
static int block_seeds(const ext *e, const int32_t *h, cp_seed **s, int64_t *n, char *err)
{
    int rc = cp_masks_seeds(h, e->ey - 2 * CP_RPAD, e->ex - 2 * CP_RPAD, s, n, err);
    if (rc) return rc;
    int64_t k = 0;
    for (int64_t i = 0; i < *n; i++) {
        int64_t ly = (*s)[i].idx / e->ex, lx = (*s)[i].idx % e->ex;
        if (ly >= HALO - GROW_R && ly < HALO + e->r.ny + GROW_R && lx >= HALO - GROW_R &&
            lx < HALO + e->r.nx + GROW_R)
            (*s)[k++] = (*s)[i];
    }
    *n = k;
    return 0;
}

/* Adds the queued counts of other blocks to "mh" of b, stores it, and appends the seeds inside
 * b to own as (raster index, count, b). */
static int seeds_block(const dm *m, int64_t b, recs *own, char *err)
{
    const ext e = ext_of(m->g, b);
    const size_t bytes = sizeof(int32_t) * (size_t)(e.ey * e.ex);
    int32_t *h = malloc(bytes);
    int64_t *q = NULL, nseeds = 0;
    size_t qbytes = 0;
    cp_seed *s = NULL;
    int rc = h ? cp_bstore_get(m->d->store, m->mh, b, h, bytes, err)
               : cp_errf(err, CP_ENOMEM, "dmasks: block %lld: cannot allocate the histogram",
                         (long long)b);
    if (!rc) rc = cp_bstore_take(m->d->store, m->mhq, b, (void **)&q, &qbytes, err);
    const int64_t nq = (int64_t)(qbytes / (sizeof(int64_t) * REC));
    for (int64_t i = 0; !rc && i < nq; i++) {
        int64_t y = q[REC * i + 1] / m->g->Lx, x = q[REC * i + 1] % m->g->Lx;
        h[ext_at(&e, y, x)] += (int32_t)q[REC * i + 2];
    }
    if (!rc) rc = cp_bstore_put(m->d->store, m->mh, b, h, bytes, err);
    if (!rc) rc = block_seeds(&e, h, &s, &nseeds, err);
    for (int64_t k = 0; !rc && k < nseeds; k++) {
        int64_t ly = s[k].idx / e.ex, lx = s[k].idx % e.ex;
        if (ly >= HALO && ly < HALO + e.r.ny && lx >= HALO && lx < HALO + e.r.nx)
            rc = recs_push(own, ext_raster(&e, m->g->Lx, s[k].idx), s[k].count, b, err);
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
    const cp_dplane *d = m->d;
    int *rcount = m->cnt, *rdispl = rcount + d->nranks;
    recs own = {0};
    int64_t *all = NULL, total = 0;
    int rc = 0;
    for (int64_t b = m->b0; !rc && b < m->b1; b++) rc = seeds_block(m, b, &own, err);
    if (!rc && own.n > INT_MAX / REC)
        rc = cp_errf(err, CP_EDATA, "dmasks: %lld seeds on one rank exceed MPI's int counts",
                     (long long)own.n);
    if ((rc = cp_agree(d->comm, rc, err))) goto done;
    int mine = (int)(REC * own.n);
    MPI_Gather(&mine, 1, MPI_INT, rcount, 1, MPI_INT, 0, d->comm);
    if (d->rank == 0) {
        for (int r = 0; r < d->nranks; r++) rdispl[r] = (int)total, total += rcount[r];
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
    if ((rc = cp_agree(d->comm, rc, err))) goto done;
    MPI_Gatherv(own.v, mine, MPI_INT64_T, all, rcount, rdispl, MPI_INT64_T, 0, d->comm);
    if (d->rank == 0) rc = order_seeds(all, t->K, t, err);
    if ((rc = cp_agree(d->comm, rc, err))) goto done;
    MPI_Bcast(&t->K, 1, MPI_INT64_T, 0, d->comm);
    if (d->rank != 0) rc = seedtab_alloc(t, err);
    if ((rc = cp_agree(d->comm, rc, err))) goto done;
    MPI_Bcast(t->idx, (int)t->K, MPI_INT64_T, 0, d->comm);
    MPI_Bcast(t->label, (int)t->K, MPI_UINT32_T, 0, d->comm);
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

/* M over the window of block b (*M malloc'ed): the seeds within GROW_R of the block grown in
 * increasing label order. */
static int paint_block(const dm *m, const seedtab *t, int64_t b, const ext *e, uint32_t **M,
                       char *err)
{
    const size_t cells = (size_t)(e->ey * e->ex);
    int32_t *h = malloc(sizeof *h * cells);
    cp_seed *s = NULL;
    lseed *ls = NULL;
    int64_t n = 0;
    *M = calloc(cells, sizeof **M);
    int rc = h && *M ? cp_bstore_get(m->d->store, m->mh, b, h, sizeof *h * cells, err)
                     : cp_errf(err, CP_ENOMEM, "dmasks: block %lld: cannot allocate the seed map",
                               (long long)b);
    if (!rc) rc = block_seeds(e, h, &s, &n, err);
    if (!rc && !(ls = malloc(sizeof *ls * (size_t)(n + 1))))
        rc = cp_errf(err, CP_ENOMEM, "dmasks: block %lld: cannot allocate %lld seeds", (long long)b,
                     (long long)n);
    for (int64_t k = 0; !rc && k < n; k++) {
        int64_t gi = ext_raster(e, m->g->Lx, s[k].idx);
        const int64_t *at = bsearch(&gi, t->idx, (size_t)t->K, sizeof *t->idx, cmp_first);
        if (!at)
            rc = cp_errf(
                err, CP_EDATA,
                "dmasks: block %lld: seed at pixel %lld is missing from the global seed list",
                (long long)b, (long long)gi);
        else
            ls[k] = (lseed){t->label[at - t->idx], s[k].idx};
    }
    if (!rc) {
        qsort(ls, (size_t)n, sizeof *ls, cmp_first);
        for (int64_t k = 0; k < n; k++)
            cp_masks_grow(h, e->ex - 2 * CP_RPAD, (cp_seed){.idx = ls[k].idx},
                          (uint32_t)ls[k].label, *M);
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
    const ext e = ext_of(m->g, b);
    uint32_t *M = NULL;
    cp_particle *p = NULL;
    int64_t n = 0;
    int rc = paint_block(m, t, b, &e, &M, err);
    if (!rc) rc = load_fin(m, b, &p, &n, err);
    for (int64_t i = 0; !rc && i < n; i++) {
        uint32_t v = M[ext_at(&e, (int64_t)p[i].py, (int64_t)p[i].px)];
        if (v) /* "m0" starts at 0: label 0 needs no message */
            rc = send_rec(m, out, cp_grid_block_at(m->g, p[i].src / m->g->Lx, p[i].src % m->g->Lx),
                          p[i].src, v, err);
    }
    free(M);
    free(p);
    return rc;
}

/* ---- phase 4: labels at their pixels, counts and first raster index per label ---- */

static int write_block(const dm *m, const seedtab *t, int64_t b, int64_t *count, int64_t *first,
                       char *err)
{
    const cp_rect r = cp_grid_block(m->g, b);
    const int64_t Lx = m->g->Lx;
    uint32_t *lab = calloc((size_t)(r.ny * r.nx), sizeof *lab);
    int64_t *q = NULL;
    size_t qbytes = 0;
    int rc = lab ? cp_bstore_take(m->d->store, m->mlq, b, (void **)&q, &qbytes, err)
                 : cp_errf(err, CP_ENOMEM, "dmasks: block %lld: cannot allocate the labels",
                           (long long)b);
    const int64_t nq = (int64_t)(qbytes / (sizeof(int64_t) * REC));
    for (int64_t i = 0; !rc && i < nq; i++) {
        int64_t src = q[REC * i + 1], v = q[REC * i + 2], y = src / Lx, x = src % Lx;
        if (v < 1 || v > t->K || cp_grid_block_at(m->g, y, x) != b) {
            rc = cp_errf(err, CP_EDATA,
                         "dmasks: block %lld: label %lld for pixel %lld does not belong here",
                         (long long)b, (long long)v, (long long)src);
            break;
        }
        lab[(y - r.y0) * r.nx + x - r.x0] = (uint32_t)v;
        count[v]++;
        first[v] = src < first[v] ? src : first[v];
    }
    if (!rc)
        rc = cp_bstore_put(m->d->store, m->m0, b, lab, sizeof *lab * (size_t)(r.ny * r.nx), err);
    free(q);
    free(lab);
    return rc;
}

/* New ids (the same on every rank): the labels not too big (cp_masks_too_big) numbered 1..N by
 * first appearance (cp_renumber_ids), the others 0. *n gets N. */
static int renumber(const dm *m, double max_size_fraction, const int64_t *count,
                    const int64_t *first, int64_t K, uint32_t *to, int64_t *n, char *err)
{
    for (int64_t v = 1; v <= K; v++)
        to[v] = !cp_masks_too_big(count[v], m->g->Ly * m->g->Lx, max_size_fraction);
    if ((*n = cp_renumber_ids(first, 1, K, to)) < 0)
        return cp_errf(err, CP_ENOMEM, "dmasks: cannot allocate the ids of %lld labels",
                       (long long)K);
    return 0;
}

/* Replaces "m0" of own block b by its new ids and drops its extended histogram. */
static int relabel_block(const dm *m, int64_t b, const uint32_t *to, int64_t K, char *err)
{
    const cp_rect r = cp_grid_block(m->g, b);
    const size_t bytes = sizeof(uint32_t) * (size_t)(r.ny * r.nx);
    uint32_t *lab = malloc(bytes);
    int rc = lab ? cp_bstore_get(m->d->store, m->m0, b, lab, bytes, err)
                 : cp_errf(err, CP_ENOMEM, "dmasks: block %lld: cannot allocate the labels",
                           (long long)b);
    for (int64_t i = 0; !rc && i < r.ny * r.nx; i++) {
        if (lab[i] > K) { /* ids read back index `to`: check them (issue 20) */
            char path[4200];
            cp_bstore_path(m->d->store, m->m0, b, path, sizeof path);
            rc = cp_errf(err, CP_EFORMAT, "%s: block (%lld,%lld) array 'm0': label %lu out of "
                         "range [0, %lld]", path, (long long)(b / m->g->nbx),
                         (long long)(b % m->g->nbx), (unsigned long)lab[i], (long long)K);
            break;
        }
        lab[i] = to[lab[i]];
    }
    if (!rc) rc = cp_bstore_put(m->d->store, m->m0, b, lab, bytes, err);
    if (!rc) cp_bstore_remove(m->d->store, m->mh, b);
    free(lab);
    return rc;
}

/* ---- the phase ---- */

int cp_dmasks_run(const cp_dplane *d, double max_size_fraction, int64_t *nlabels, char *err)
{
    dm m = {.d = d, .g = &d->grid};
    seedtab t = {0};
    cp_outbox out;
    int64_t *count = NULL, *first = NULL, n = 0;
    uint32_t *to = NULL;
    int rc = 0;
    *nlabels = 0;
    cp_grid_range(m.g, d->rank, &m.b0, &m.b1);
    cp_dname(d, CP_SLOT_FIN, m.fin), cp_dname(d, CP_SLOT_MH, m.mh), cp_dname(d, CP_SLOT_MHQ, m.mhq);
    cp_dname(d, CP_SLOT_MLQ, m.mlq), cp_dname(d, CP_SLOT_M0, m.m0);
    /* queues left by an interrupted run (only this rank appends to its blocks' queues) */
    for (int64_t b = m.b0; b < m.b1; b++)
        cp_bstore_remove(d->store, m.mhq, b), cp_bstore_remove(d->store, m.mlq, b);
    rc = cp_outbox_init(&out, d->comm, sizeof(int64_t) * REC, err);
    if (!rc && !(m.cnt = malloc(sizeof *m.cnt * (size_t)(2 * d->nranks))))
        rc = cp_errf(err, CP_ENOMEM, "dmasks: cannot allocate the counts of %d ranks", d->nranks);
    if ((rc = cp_agree(d->comm, rc, err))) goto done;
    if ((rc = rounds(&m, &t, &out, hist_block, m.mhq, err))) goto done;
    if ((rc = seeds_phase(&m, &t, err))) goto done;
    if ((rc = rounds(&m, &t, &out, label_block, m.mlq, err))) goto done;

    count = calloc((size_t)(t.K + 1), sizeof *count);
    first = malloc(sizeof *first * (size_t)(t.K + 1));
    to = malloc(sizeof *to * (size_t)(t.K + 1));
    if (!count || !first || !to)
        rc = cp_errf(err, CP_ENOMEM, "dmasks: cannot allocate the tables of %lld labels",
                     (long long)t.K);
    for (int64_t v = 0; !rc && v <= t.K; v++) first[v] = INT64_MAX;
    for (int64_t b = m.b0; !rc && b < m.b1; b++) rc = write_block(&m, &t, b, count, first, err);
    if ((rc = cp_agree(d->comm, rc, err))) goto done;
    MPI_Allreduce(MPI_IN_PLACE, count, (int)(t.K + 1), MPI_INT64_T, MPI_SUM, d->comm);
    MPI_Allreduce(MPI_IN_PLACE, first, (int)(t.K + 1), MPI_INT64_T, MPI_MIN, d->comm);
    rc = renumber(&m, max_size_fraction, count, first, t.K, to, &n, err);
    for (int64_t b = m.b0; !rc && b < m.b1; b++) rc = relabel_block(&m, b, to, t.K, err);
    if ((rc = cp_agree(d->comm, rc, err))) goto done;
    *nlabels = n;
done:
    cp_outbox_free(&out);
    free(m.cnt);
    free(t.idx);
    free(t.label);
    free(count);
    free(first);
    free(to);
    return rc;
}
