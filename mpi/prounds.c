/* Particle rounds over owner blocks (see prounds.h). Queues have a name per round parity, so a
 * block never consumes in a round what it received in that round. The particles queued for this
 * rank's blocks (and the unsorted "fin" particles) are held in memory up to a limit, beyond which
 * all of them are spilled to the block store (appended to the files of those names) and memory
 * starts empty again: creating and deleting one small file per block and round costs more than
 * the following itself. */
#include "prounds.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "agree.h"
#include "cp_err.h"
#include "exchange.h"
#include "grid.h"

/* A growable array of records (held for a block). */
typedef struct pbuf {
    char *p;
    int64_t n, cap;
} pbuf;

/* The rounds' state: the run, the particles held in memory for this rank's blocks and those
 * bound for other ranks. */
typedef struct rounds_ctx {
    const cp_prounds *pr;
    size_t size;        /* bytes per record */
    const char *names[3]; /* ARR_FIN, ARR_QUEUE + parity */
    int64_t b0, b1;     /* this rank's blocks */
    pbuf *held;         /* (b - b0) * 3 + array: in memory, not yet in the store */
    int64_t nheld, max_held;
    cp_outbox out;      /* particles bound for other ranks */
    cp_progress prog;   /* round 0's particles of the own blocks */
} rounds_ctx;

enum { ARR_FIN = 0, ARR_QUEUE = 1 };

static int pbuf_push(rounds_ctx *c, pbuf *b, const char *q, int64_t n, char *err)
{
    if (b->n + n > b->cap) {
        int64_t cap = b->cap ? 2 * b->cap : 1024;
        while (cap < b->n + n) cap *= 2;
        char *p = realloc(b->p, c->size * (size_t)cap);
        if (!p)
            return cp_errf(err, CP_ENOMEM, "%s: out of memory for %lld held particles",
                           c->pr->what, (long long)cap);
        b->p = p, b->cap = cap;
    }
    memcpy(b->p + c->size * (size_t)b->n, q, c->size * (size_t)n);
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
            rc = cp_bstore_append(c->pr->store, c->names[i % 3], c->b0 + i / 3, h->p,
                                  c->size * (size_t)h->n, err);
        free(h->p);
        *h = (pbuf){0};
    }
    c->nheld = 0;
    return rc;
}

/* Adds q[0..n) to array arr of this rank's block b; spills all when over the limit. */
static int hold(rounds_ctx *c, int arr, int64_t b, const char *q, int64_t n, char *err)
{
    int rc = pbuf_push(c, &c->held[(b - c->b0) * 3 + arr], q, n, err);
    c->nheld += n;
    return rc ? rc : c->nheld > c->max_held ? spill(c, err) : 0;
}

/* Takes array arr of this rank's block b: what the store has (the file is deleted) then what
 * memory holds, into a malloc'ed *p (NULL if none) of *n records. */
static int take(rounds_ctx *c, int arr, int64_t b, void **p, int64_t *n, char *err)
{
    const char *name = c->names[arr];
    pbuf *h = &c->held[(b - c->b0) * 3 + arr];
    void *data;
    size_t bytes;
    *p = NULL, *n = 0;
    int rc = cp_bstore_take(c->pr->store, name, b, &data, &bytes, err);
    if (!rc && bytes % c->size)
        rc = cp_errf(err, CP_EFORMAT, "%s: %s of block %lld: %zu bytes, not a whole number of "
                     "%zu-byte particles", c->pr->what, name, (long long)b, bytes, c->size);
    if (rc) {
        free(data);
        return rc;
    }
    const int64_t nf = (int64_t)(bytes / c->size);
    char *all = data;
    if (h->n && nf == 0) {
        free(data);
        all = h->p;
    } else if (h->n) {
        all = realloc(data, c->size * (size_t)(nf + h->n));
        if (!all) {
            free(data);
            return cp_errf(err, CP_ENOMEM, "%s: %s of block %lld: out of memory for %lld "
                           "particles", c->pr->what, name, (long long)b, (long long)(nf + h->n));
        }
        memcpy(all + c->size * (size_t)nf, h->p, c->size * (size_t)h->n);
        free(h->p);
    }
    *p = all, *n = nf + h->n;
    c->nheld -= h->n;
    *h = (pbuf){0};
    return 0;
}

/* A sort key and the record's index (ties in index order: the same order on every run). */
typedef struct keyed {
    int64_t key, i;
} keyed;

static int by_key(const void *a, const void *b)
{
    const keyed *x = a, *y = b;
    return x->key != y->key ? (x->key > y->key) - (x->key < y->key) : (x->i > y->i) - (x->i < y->i);
}

/* Sorts the n records q by k[i].key (k filled by the caller, reordered); returns 0 or CP_ENOMEM
 * without a message. */
static int sort_records(rounds_ctx *c, char *q, keyed *k, int64_t n)
{
    if (n < 2) return 0; /* in order already (and q, k may be NULL) */
    char *tmp = malloc(c->size * (size_t)n);
    if (!tmp) return CP_ENOMEM;
    qsort(k, (size_t)n, sizeof *k, by_key);
    for (int64_t i = 0; i < n; i++)
        memcpy(tmp + c->size * (size_t)i, q + c->size * (size_t)k[i].i, c->size);
    memcpy(q, tmp, c->size * (size_t)n);
    free(tmp);
    return 0;
}

/* Sends q[0..n) where the operations say they go next: "fin" or the queue `next` of a block.
 * Blocks of this rank get them held (one hold per block), those of other ranks in the send
 * buffers when may_send (received particles must all be this rank's). q is scratch. */
static int route(rounds_ctx *c, int next, char *q, int64_t n, int may_send, char *err)
{
    const cp_prounds *pr = c->pr;
    keyed *k = malloc(sizeof *k * (size_t)(n ? n : 1));
    if (!k) return cp_errf(err, CP_ENOMEM, "%s: out of memory for %lld particles", pr->what, (long long)n);
    for (int64_t i = 0; i < n; i++) {
        int fin;
        const int64_t b = pr->ops->dest(pr->ctx, q + c->size * (size_t)i, &fin);
        k[i] = (keyed){2 * b + !fin, i};
    }
    int rc = sort_records(c, q, k, n)
                 ? cp_errf(err, CP_ENOMEM, "%s: out of memory to sort %lld particles", pr->what,
                           (long long)n)
                 : 0;
    for (int64_t i = 0, j; !rc && i < n; i = j) {
        for (j = i + 1; j < n && k[j].key == k[i].key; j++) continue;
        const int64_t b = k[i].key / 2;
        const int owner = cp_grid_owner(pr->grid, b);
        const char *qi = q + c->size * (size_t)i;
        if (owner == pr->rank)
            rc = hold(c, k[i].key % 2 ? next : ARR_FIN, b, qi, j - i, err);
        else if (may_send)
            rc = cp_outbox_push(&c->out, owner, qi, j - i)
                     ? cp_errf(err, CP_ENOMEM, "%s: out of memory for %lld outgoing particles",
                               pr->what, (long long)(j - i))
                     : 0;
        else
            rc = cp_errf(err, CP_EMPI, "%s: received %lld particles of block %lld, owned by "
                         "rank %d", pr->what, (long long)(j - i), (long long)b, owner);
    }
    free(k);
    return rc;
}

/* Advances the particles of block b for round r (the operations add the seeds in round 0), then
 * routes them; *travelling += those not finished. */
static int advance_block(rounds_ctx *c, int64_t b, int64_t r, int64_t *travelling, char *err)
{
    void *q = NULL;
    int64_t nq = 0;
    int rc = take(c, ARR_QUEUE + (int)(r % 2), b, &q, &nq, err);
    if (!rc && (r == 0 || nq > 0))
        rc = c->pr->ops->advance(c->pr->ctx, b, r, &q, &nq, r ? NULL : &c->prog, travelling, err);
    if (!rc && (r == 0 || nq > 0)) rc = route(c, ARR_QUEUE + (int)((r + 1) % 2), q, nq, 1, err);
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
    MPI_Allreduce(MPI_IN_PLACE, &pieces, 1, MPI_INT64_T, MPI_MAX, c->pr->comm);
    for (int64_t k = 0; k < pieces; k++) {
        void *rbuf;
        int64_t nr;
        rc = cp_exchange(&c->out, rc, max_msg, &rbuf, &nr, err);
        if (!rc) rc = route(c, next, rbuf, nr, 0, err);
        free(rbuf);
    }
    return rc;
}

/* Rewrites "fin" of block b sorted by src (an empty array if none). */
static int sort_fin(rounds_ctx *c, int64_t b, char *err)
{
    void *p = NULL;
    int64_t n = 0;
    int rc = take(c, ARR_FIN, b, &p, &n, err);
    if (!rc) {
        keyed *k = malloc(sizeof *k * (size_t)(n ? n : 1));
        for (int64_t i = 0; k && i < n; i++) {
            int64_t src;
            memcpy(&src, (char *)p + c->size * (size_t)i, sizeof src);
            k[i] = (keyed){src, i};
        }
        if (!k || sort_records(c, p, k, n))
            rc = cp_errf(err, CP_ENOMEM, "%s: block %lld: out of memory to sort %lld particles",
                         c->pr->what, (long long)b, (long long)n);
        free(k);
    }
    if (!rc) rc = cp_bstore_put(c->pr->store, c->names[ARR_FIN], b, p, c->size * (size_t)n, err);
    free(p);
    return rc;
}

/* The seeds of this rank's blocks, for the progress line (0 when it is not shown). */
static int64_t own_seeds(const rounds_ctx *c)
{
    int64_t n = 0;
    for (int64_t b = c->b0; cp_progress_on() && b < c->b1; b++)
        n += c->pr->ops->count_seeds(c->pr->ctx, b);
    return n;
}

int cp_prounds_run(const cp_prounds *pr, int64_t max_msg, int64_t max_held, int64_t *rounds,
                   char *err)
{
    rounds_ctx c = {.pr = pr, .size = pr->ops->size, .max_held = max_held,
                    .names = {pr->fin, pr->queue[0], pr->queue[1]}};
    cp_grid_range(pr->grid, pr->rank, &c.b0, &c.b1);
    int rc = cp_outbox_init(&c.out, pr->comm, c.size, err);
    *rounds = 0;
    if (max_msg < 1 || max_held < 0)
        rc = cp_errf(err, CP_EPARAM, "%s: max_msg %lld, max_held %lld: need max_msg >= 1 "
                     "and max_held >= 0", pr->what, (long long)max_msg, (long long)max_held);
    if (max_msg > INT_MAX / pr->grid->nranks) max_msg = INT_MAX / pr->grid->nranks;
    c.held = calloc((size_t)(3 * (c.b1 - c.b0) + 1), sizeof *c.held);
    if (!c.held && !rc)
        rc = cp_errf(err, CP_ENOMEM, "%s: out of memory for the particle buffers", pr->what);
    rc = cp_agree(pr->comm, rc, err);
    if (rc) {
        cp_outbox_free(&c.out);
        free(c.held);
        return rc;
    }
    for (int64_t b = c.b0; b < c.b1; b++)
        for (int a = 0; a < 3; a++) cp_bstore_remove(pr->store, c.names[a], b);
    int64_t state[2]; /* summed over ranks: particles still travelling, ranks that failed */
    /* progress: the particles of round 0, where every particle starts and most finish (the later
     * rounds, particles crossing blocks, are in the elapsed time but not counted) */
    cp_progress_begin(&c.prog, pr->progress_label,
                      pr->grid->nranks > 1 ? "particles of rank 0" : "particles", own_seeds(&c));
    do {
        const int64_t r = (*rounds)++;
        int64_t travelling = 0, b = c.b0;
        int more;
        do { /* the particles leaving the rank go out whenever max_held of them wait (and at the
              * round's end): received ones are the next round's either way, so the memory of a
              * round is bounded, not the share of the rank's particles leaving it */
            for (int64_t k = 0; !rc && b < c.b1 && (k == 0 || c.out.queued < max_held); k++, b++)
                rc = advance_block(&c, b, r, &travelling, err);
            more = !rc && b < c.b1;
            rc = exchange(&c, ARR_QUEUE + (int)((r + 1) % 2), max_msg, rc, err);
            MPI_Allreduce(MPI_IN_PLACE, &more, 1, MPI_INT, MPI_MAX, pr->comm);
        } while (more);
        state[0] = travelling, state[1] = rc != 0;
        MPI_Allreduce(MPI_IN_PLACE, state, 2, MPI_INT64_T, MPI_SUM, pr->comm);
    } while (state[0] > 0 && state[1] == 0);
    if (state[1]) cp_progress_cancel(&c.prog); /* a failure somewhere: no 100% line */
    cp_progress_end(&c.prog);
    for (int64_t b = c.b0; !state[1] && !rc && b < c.b1; b++) rc = sort_fin(&c, b, err);
    for (int64_t b = c.b0; b < c.b1; b++) {
        cp_bstore_remove(pr->store, c.names[ARR_QUEUE], b);
        cp_bstore_remove(pr->store, c.names[ARR_QUEUE + 1], b);
    }
    cp_outbox_free(&c.out);
    for (int64_t i = 0; i < 3 * (c.b1 - c.b0); i++) free(c.held[i].p);
    free(c.held);
    return cp_agree(pr->comm, rc, err);
}
