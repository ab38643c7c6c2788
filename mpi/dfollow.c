/* Particle rounds of the distributed flow following (see dfollow.h). Each round, every rank
 * advances the particles queued for each of its blocks on that block's field window; finished
 * particles go to "fin" of the block of their end cell, stopped ones to the next round's queue
 * of the block of their stencil (whose window then holds the whole stencil, so every particle
 * moves at least one step per round). Particles bound for another rank's block travel in one
 * MPI_Alltoallv per round; an MPI_Allreduce of the number still travelling ends the loop.
 * Queues have a name per round parity ("fq0"/"fq1"), so a block never consumes in a round what
 * it received in that round. The particles queued for this rank's blocks (and the unsorted "fin"
 * particles) are held in memory up to a limit, beyond which all of them are spilled to the block
 * store (appended to the files of those names) and memory starts empty again: creating and
 * deleting one small file per block and round costs more than the following itself. */
#include "dfollow.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "agree.h"
#include "cp_err.h"
#include "exchange.h"
#include "follow.h"
#include "progress.h"

/* A growable array of particles (held for a block, or bound for a rank). */
typedef struct pbuf {
    cp_particle *p;
    int64_t n, cap;
} pbuf;

/* The rounds' state: the plane, the parameters, the names of the arrays, the particles held in
 * memory for this rank's blocks and those bound for other ranks. */
typedef struct rounds_ctx {
    const cp_dplane *d;
    int32_t steps;
    int interp;
    float threshold;
    char names[3][64];  /* "fin", "fq0", "fq1" (arrays ARR_FIN, ARR_QUEUE + parity) */
    int64_t b0, b1;     /* this rank's blocks */
    pbuf *held;         /* (b - b0) * 3 + array: in memory, not yet in the store */
    int64_t nheld, max_held;
    cp_outbox out;      /* particles bound for other ranks */
    cp_progress pr;     /* round 0's particles of the own blocks */
} rounds_ctx;

enum { ARR_FIN = 0, ARR_QUEUE = 1 };

static int pbuf_push(pbuf *b, const cp_particle *q, int64_t n, char *err)
{
    if (b->n + n > b->cap) {
        int64_t cap = b->cap ? 2 * b->cap : 1024;
        while (cap < b->n + n) cap *= 2;
        cp_particle *p = realloc(b->p, sizeof *p * (size_t)cap);
        if (!p)
            return cp_errf(err, CP_ENOMEM, "dfollow.c: out of memory for %lld held particles",
                           (long long)cap);
        b->p = p, b->cap = cap;
    }
    memcpy(b->p + b->n, q, sizeof *q * (size_t)n);
    b->n += n;
    return 0;
}

/* Appends everything held in memory to the store and frees it. */
static int spill(rounds_ctx *c, char *err)
{
    int rc = 0;
    for (int64_t i = 0; i < 3 * (c->b1 - c->b0); i++) {
        pbuf *h = &c->held[i];
        if (h->n && !rc)
            rc = cp_bstore_append(c->d->store, c->names[i % 3], c->b0 + i / 3, h->p,
                                  sizeof *h->p * (size_t)h->n, err);
        free(h->p);
        *h = (pbuf){0};
    }
    c->nheld = 0;
    return rc;
}

/* Adds q[0..n) to array arr of this rank's block b; spills all when over the limit. */
static int hold(rounds_ctx *c, int arr, int64_t b, const cp_particle *q, int64_t n, char *err)
{
    int rc = pbuf_push(&c->held[(b - c->b0) * 3 + arr], q, n, err);
    c->nheld += n;
    return rc ? rc : c->nheld > c->max_held ? spill(c, err) : 0;
}

/* Takes array arr of this rank's block b: what the store has (the file is deleted) then what
 * memory holds, into a malloc'ed *p (NULL if none) of *n particles. */
static int take(rounds_ctx *c, int arr, int64_t b, cp_particle **p, int64_t *n, char *err)
{
    const char *name = c->names[arr];
    pbuf *h = &c->held[(b - c->b0) * 3 + arr];
    void *data;
    size_t bytes;
    *p = NULL, *n = 0;
    int rc = cp_bstore_take(c->d->store, name, b, &data, &bytes, err);
    if (!rc && bytes % sizeof(cp_particle))
        rc = cp_errf(err, CP_EFORMAT, "dfollow.c: %s of block %lld: %zu bytes, not a whole "
                     "number of %zu-byte particles", name, (long long)b, bytes, sizeof(cp_particle));
    if (rc) {
        free(data);
        return rc;
    }
    const int64_t nf = (int64_t)(bytes / sizeof(cp_particle));
    cp_particle *all = data;
    if (h->n && nf == 0) {
        free(data);
        all = h->p;
    } else if (h->n) {
        all = realloc(data, sizeof *all * (size_t)(nf + h->n));
        if (!all) {
            free(data);
            return cp_errf(err, CP_ENOMEM, "dfollow.c: %s of block %lld: out of memory for %lld "
                           "particles", name, (long long)b, (long long)(nf + h->n));
        }
        memcpy(all + nf, h->p, sizeof *all * (size_t)h->n);
        free(h->p);
    }
    *p = all, *n = nf + h->n;
    c->nheld -= h->n;
    *h = (pbuf){0};
    return 0;
}

/* The cell coordinate of a position: follow.c's clamped truncation (NaN -> 0). Positions are
 * kept in [0, L-1] by follow.c, or are NaN. */
static int64_t cell_of(float v, int64_t L)
{
    return !(v > 0.0f) ? 0 : v >= (float)(L - 1) ? L - 1 : (int64_t)v;
}

/* Sort key of a particle: its destination block, twice, + 1 for a queue (0 for "fin"). */
typedef struct keyed {
    int64_t key;
    cp_particle p;
} keyed;

static int by_key(const void *a, const void *b)
{
    int64_t x = ((const keyed *)a)->key, y = ((const keyed *)b)->key;
    return (x > y) - (x < y);
}

/* Sends q[0..n) where it goes next: finished particles to "fin" of the block of their end cell,
 * the others to the next round's queue (array `next`) of the block of their stencil's top-left
 * cell. Blocks of this rank get them held (one hold per block), those of other ranks in the send
 * buffers when may_send (received particles must all be this rank's). q is scratch. */
static int route(rounds_ctx *c, int next, cp_particle *q, int64_t n, int may_send, char *err)
{
    const cp_grid *g = &c->d->grid;
    keyed *k = malloc(sizeof *k * (size_t)(n ? n : 1));
    if (!k) return cp_errf(err, CP_ENOMEM, "dfollow.c: out of memory for %lld particles", (long long)n);
    for (int64_t i = 0; i < n; i++) {
        int64_t b = cp_grid_block_at(g, cell_of(q[i].py, g->Ly), cell_of(q[i].px, g->Lx));
        k[i] = (keyed){2 * b + (q[i].steps < c->steps), q[i]};
    }
    qsort(k, (size_t)n, sizeof *k, by_key);
    for (int64_t i = 0; i < n; i++) q[i] = k[i].p;
    int rc = 0;
    for (int64_t i = 0, j; !rc && i < n; i = j) {
        for (j = i + 1; j < n && k[j].key == k[i].key; j++) continue;
        const int64_t b = k[i].key / 2;
        const int owner = cp_grid_owner(g, b);
        if (owner == c->d->rank)
            rc = hold(c, k[i].key % 2 ? next : ARR_FIN, b, q + i, j - i, err);
        else if (may_send)
            rc = cp_outbox_push(&c->out, owner, q + i, j - i)
                     ? cp_errf(err, CP_ENOMEM, "dfollow.c: out of memory for %lld outgoing "
                               "particles", (long long)(j - i))
                     : 0;
        else
            rc = cp_errf(err, CP_EMPI, "dfollow.c: received %lld particles of block %lld, owned by "
                         "rank %d", (long long)(j - i), (long long)b, owner);
    }
    free(k);
    return rc;
}

/* The seeds of block blk (its pixels with cellprob > threshold; cellprob on the window w),
 * written to q unless q is NULL; returns how many. */
static int64_t seeds(const cp_dplane *d, cp_rect blk, cp_rect w, const float *cellprob,
                     float threshold, cp_particle *q)
{
    int64_t n = 0;
    for (int64_t y = blk.y0; y < blk.y0 + blk.ny; y++)
        for (int64_t x = blk.x0; x < blk.x0 + blk.nx; x++)
            if (cellprob[(y - w.y0) * w.nx + x - w.x0] > threshold) {
                if (q) q[n] = (cp_particle){.src = y * d->grid.Lx + x, .py = (float)y, .px = (float)x};
                n++;
            }
    return n;
}

/* The seeds of this rank's blocks, counted for the progress line (only when it is shown: one
 * more read of each block). */
static int64_t own_seeds(const rounds_ctx *c)
{
    const cp_dplane *d = c->d;
    int64_t n = 0;
    char name[64], err[CP_ERR_LEN];
    for (int64_t b = c->b0; cp_progress_on() && b < c->b1; b++) {
        const cp_rect blk = cp_grid_block(&d->grid, b), w = cp_rect_grow(&d->grid, blk, 1);
        const int64_t npix = w.ny * w.nx;
        float *dp = malloc(sizeof(float) * (size_t)(3 * npix));
        if (dp && !cp_bstore_get(d->store, cp_dname(d, CP_SLOT_DP, name), b, dp,
                                 sizeof(float) * (size_t)(3 * npix), err))
            n += seeds(d, blk, w, dp + 2 * npix, c->threshold, NULL);
        free(dp); /* a failed read fails again, and is reported, in the round */
    }
    return n;
}

/* Advances the particles of block b for round r (in round 0, its seeds: the block's pixels with
 * cellprob > threshold), then routes them; *travelling += those not finished. */
static int advance_block(rounds_ctx *c, int64_t b, int64_t r, int64_t *travelling, char *err)
{
    const cp_dplane *d = c->d;
    cp_particle *q = NULL;
    int64_t nq = 0;
    int rc = take(c, ARR_QUEUE + (int)(r % 2), b, &q, &nq, err);
    if (rc || (r > 0 && nq == 0)) {
        free(q);
        return rc;
    }
    const cp_rect blk = cp_grid_block(&d->grid, b), w = cp_rect_grow(&d->grid, blk, 1);
    const int64_t npix = w.ny * w.nx;
    float *dp = malloc(sizeof(float) * (size_t)(3 * npix));
    float *f = malloc(sizeof(float) * (size_t)(2 * npix));
    char name[64];
    if (!dp || !f) {
        rc = cp_errf(err, CP_ENOMEM, "dfollow.c: block %lld: out of memory for its field",
                     (long long)b);
        goto done;
    }
    rc = cp_bstore_get(d->store, cp_dname(d, CP_SLOT_DP, name), b, dp, sizeof(float) * (size_t)(3 * npix),
                       err);
    if (rc) {
        char why[CP_ERR_LEN];
        memcpy(why, err, sizeof why);
        rc = cp_errf(err, rc, "dfollow.c: block %lld: %s", (long long)b, why);
        goto done;
    }
    const float *cellprob = dp + 2 * npix;
    if (r == 0) {
        int64_t nseed = seeds(d, blk, w, cellprob, c->threshold, NULL);
        cp_particle *all = realloc(q, sizeof *q * (size_t)(nq + nseed ? nq + nseed : 1));
        if (!all) {
            rc = cp_errf(err, CP_ENOMEM, "dfollow.c: block %lld: out of memory for %lld particles",
                         (long long)b, (long long)(nq + nseed));
            goto done;
        }
        q = all;
        nq += seeds(d, blk, w, cellprob, c->threshold, q + nq);
    }
    cp_follow_field(dp, cellprob, npix, c->threshold, f);
    const cp_field F = {.Ly = d->grid.Ly, .Lx = d->grid.Lx, .y0 = w.y0, .x0 = w.x0, .ny = w.ny,
                        .nx = w.nx, .f = f};
    *travelling += cp_follow_run_progress(&F, q, nq, c->steps, c->interp, r ? NULL : &c->pr);
    free(dp), dp = NULL;
    free(f), f = NULL;
    rc = route(c, ARR_QUEUE + (int)((r + 1) % 2), q, nq, 1, err);
done:
    free(dp);
    free(f);
    free(q);
    return rc;
}

/* Moves the particles bound for other ranks there (collective; a failed rank, rc != 0, sends
 * nothing; the status is agreed at each message) in messages of at most max_msg particles per rank
 * pair; received particles are routed to this rank's blocks (queue array `next` or "fin"). Returns
 * rc or the first failure. */
static int exchange(rounds_ctx *c, int next, int64_t max_msg, int rc, char *err)
{
    int64_t pieces = rc ? 0 : (cp_outbox_longest(&c->out) + max_msg - 1) / max_msg;
    MPI_Allreduce(MPI_IN_PLACE, &pieces, 1, MPI_INT64_T, MPI_MAX, c->d->comm);
    for (int64_t k = 0; k < pieces; k++) {
        cp_particle *rbuf;
        int64_t nr;
        rc = cp_exchange(&c->out, rc, max_msg, (void **)&rbuf, &nr, err);
        if (!rc) rc = route(c, next, rbuf, nr, 0, err);
        free(rbuf);
    }
    return rc;
}

/* Rewrites "fin" of block b sorted by src (an empty array if none). */
static int sort_fin(rounds_ctx *c, int64_t b, char *err)
{
    cp_particle *p = NULL;
    int64_t n = 0;
    int rc = take(c, ARR_FIN, b, &p, &n, err);
    if (!rc) {
        keyed *k = malloc(sizeof *k * (size_t)(n ? n : 1));
        if (!k) {
            free(p);
            return cp_errf(err, CP_ENOMEM, "dfollow.c: block %lld: out of memory to sort %lld "
                           "particles", (long long)b, (long long)n);
        }
        for (int64_t i = 0; i < n; i++) k[i] = (keyed){p[i].src, p[i]};
        qsort(k, (size_t)n, sizeof *k, by_key);
        for (int64_t i = 0; i < n; i++) p[i] = k[i].p;
        free(k);
        rc = cp_bstore_put(c->d->store, c->names[ARR_FIN], b, p, sizeof *p * (size_t)n, err);
    }
    free(p);
    return rc;
}

int cp_dfollow_run_opts(const cp_dplane *d, int32_t steps, int interp, float threshold,
                        int64_t max_msg, int64_t max_held, int64_t *rounds, char *err)
{
    rounds_ctx c = {.d = d, .steps = steps, .interp = interp, .threshold = threshold,
                    .max_held = max_held};
    cp_dname(d, CP_SLOT_FIN, c.names[ARR_FIN]);
    cp_dname(d, CP_SLOT_FQ0, c.names[ARR_QUEUE]);
    cp_dname(d, CP_SLOT_FQ1, c.names[ARR_QUEUE + 1]);
    cp_grid_range(&d->grid, d->rank, &c.b0, &c.b1);
    int rc = cp_outbox_init(&c.out, d->comm, sizeof(cp_particle), err);
    *rounds = 0;
    if (max_msg < 1 || max_held < 0)
        rc = cp_errf(err, CP_EPARAM, "dfollow.c: max_msg %lld, max_held %lld: need max_msg >= 1 "
                     "and max_held >= 0", (long long)max_msg, (long long)max_held);
    if (max_msg > INT_MAX / d->nranks) max_msg = INT_MAX / d->nranks;
    c.held = calloc((size_t)(3 * (c.b1 - c.b0) + 1), sizeof *c.held);
    if (!c.held && !rc)
        rc = cp_errf(err, CP_ENOMEM, "dfollow.c: out of memory for the particle buffers");
    rc = cp_agree(d->comm, rc, err);
    if (rc) {
        cp_outbox_free(&c.out);
        free(c.held);
        return rc;
    }
    for (int64_t b = c.b0; b < c.b1; b++)
        for (int a = 0; a < 3; a++) cp_bstore_remove(d->store, c.names[a], b);
    int64_t state[2]; /* summed over ranks: particles still travelling, ranks that failed */
    /* progress: the particles of round 0, where every particle starts and most finish (the later
     * rounds, particles crossing blocks, are in the elapsed time but not counted) */
    cp_progress_begin(&c.pr, "flow following", d->nranks > 1 ? "particles of rank 0" : "particles",
                      own_seeds(&c));
    do {
        const int64_t r = (*rounds)++;
        int64_t travelling = 0;
        for (int64_t b = c.b0; !rc && b < c.b1; b++) rc = advance_block(&c, b, r, &travelling, err);
        rc = exchange(&c, ARR_QUEUE + (int)((r + 1) % 2), max_msg, rc, err);
        state[0] = travelling, state[1] = rc != 0;
        MPI_Allreduce(MPI_IN_PLACE, state, 2, MPI_INT64_T, MPI_SUM, d->comm);
    } while (state[0] > 0 && state[1] == 0);
    if (state[1]) cp_progress_cancel(&c.pr); /* a failure somewhere: no 100% line */
    cp_progress_end(&c.pr);
    for (int64_t b = c.b0; !state[1] && !rc && b < c.b1; b++) rc = sort_fin(&c, b, err);
    for (int64_t b = c.b0; b < c.b1; b++) {
        cp_bstore_remove(d->store, c.names[ARR_QUEUE], b);
        cp_bstore_remove(d->store, c.names[ARR_QUEUE + 1], b);
    }
    cp_outbox_free(&c.out);
    for (int64_t i = 0; i < 3 * (c.b1 - c.b0); i++) free(c.held[i].p);
    free(c.held);
    return cp_agree(d->comm, rc, err);
}

int cp_dfollow_run(const cp_dplane *d, int32_t steps, int interp, float threshold, int64_t *rounds,
                   char *err)
{
    return cp_dfollow_run_opts(d, steps, interp, threshold, INT_MAX / d->nranks,
                               CP_DFOLLOW_MAX_HELD, rounds, err);
}
