/* Outboxes and the all-to-all round of fixed-size records (see exchange.h). */
#include "exchange.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "agree.h"
#include "cp_err.h"

int cp_outbox_init(cp_outbox *o, MPI_Comm comm, size_t size, char *err)
{
    *o = (cp_outbox){.comm = comm, .size = size};
    MPI_Comm_size(comm, &o->nranks);
    o->q = calloc((size_t)o->nranks, sizeof *o->q);
    o->cnt = malloc(sizeof *o->cnt * 4 * (size_t)o->nranks);
    if (!o->q || !o->cnt)
        return cp_errf(err, CP_ENOMEM, "exchange.c: out of memory for the queues of %d ranks",
                       o->nranks);
    MPI_Type_contiguous((int)size, MPI_BYTE, &o->type);
    MPI_Type_commit(&o->type);
    return 0;
}

void cp_outbox_free(cp_outbox *o)
{
    for (int k = 0; o->q && k < o->nranks; k++) free(o->q[k].p);
    if (o->q && o->cnt) MPI_Type_free(&o->type); /* made by an init that succeeded */
    free(o->q);
    free(o->cnt);
    *o = (cp_outbox){0};
}

int cp_outbox_push(cp_outbox *o, int dst, const void *rec, int64_t n)
{
    cp_outq *q = &o->q[dst];
    if (q->n + n > q->cap) {
        int64_t cap = q->cap ? 2 * q->cap : 1024;
        while (cap < q->n + n) cap *= 2;
        char *p = realloc(q->p, o->size * (size_t)cap);
        if (!p) return CP_ENOMEM;
        q->p = p, q->cap = cap;
    }
    memcpy(q->p + o->size * (size_t)q->n, rec, o->size * (size_t)n);
    q->n += n;
    o->queued += n;
    return 0;
}

int64_t cp_outbox_longest(const cp_outbox *o)
{
    int64_t m = 0;
    for (int k = 0; k < o->nranks; k++) {
        int64_t left = o->q[k].n - o->q[k].head;
        m = left > m ? left : m;
    }
    return m;
}

/* Records leaving queue k in this round: up to max from its front. */
static int64_t to_send(const cp_outbox *o, int k, int64_t max)
{
    int64_t left = o->q[k].n - o->q[k].head;
    return left < max ? left : max;
}

int cp_exchange(cp_outbox *o, int rc, int64_t max, void **recv, int64_t *nrecv, char *err)
{
    const int P = o->nranks;
    int *sc = o->cnt, *sd = sc + P, *rn = sd + P, *rd = rn + P;
    int64_t ns = 0, nr = 0;
    char *sbuf = NULL;
    *recv = NULL, *nrecv = 0;
    for (int k = 0; !rc && k < P; k++) {
        int64_t m = to_send(o, k, max);
        if (m > INT_MAX - ns)
            rc = cp_errf(err, CP_EDATA, "exchange.c: %lld records to send to ranks 0..%d exceed "
                         "MPI's int counts", (long long)(ns + m), k);
        ns += m;
    }
    ns = 0;
    for (int k = 0; k < P; k++) {
        sc[k] = rc ? 0 : (int)to_send(o, k, max);
        sd[k] = (int)ns, ns += sc[k];
    }
    MPI_Alltoall(sc, 1, MPI_INT, rn, 1, MPI_INT, o->comm);
    for (int k = 0; k < P; k++) rd[k] = (int)(nr > INT_MAX ? 0 : nr), nr += rn[k];
    if (!rc && nr > INT_MAX)
        rc = cp_errf(err, CP_EDATA, "exchange.c: %lld records to receive exceed MPI's int counts",
                     (long long)nr);
    if (!rc) {
        *recv = malloc(o->size * (size_t)(nr ? nr : 1));
        sbuf = malloc(o->size * (size_t)(ns ? ns : 1));
        if (!*recv || !sbuf)
            rc = cp_errf(err, CP_ENOMEM, "exchange.c: out of memory for %lld records to send and "
                         "%lld to receive", (long long)ns, (long long)nr);
    }
    for (int k = 0; !rc && k < P; k++)
        if (sc[k])
            memcpy(sbuf + o->size * (size_t)sd[k], o->q[k].p + o->size * (size_t)o->q[k].head,
                   o->size * (size_t)sc[k]);
    if ((rc = cp_agree(o->comm, rc, err)) == 0) {
        MPI_Alltoallv(sbuf, sc, sd, o->type, *recv, rn, rd, o->type, o->comm);
        *nrecv = nr;
    }
    free(sbuf);
    for (int k = 0; k < P; k++) {
        cp_outq *q = &o->q[k];
        q->head += rc ? q->n - q->head : sc[k];
        if (q->head == q->n) q->head = q->n = 0;
    }
    o->queued = 0;
    for (int k = 0; k < P; k++) o->queued += o->q[k].n - o->q[k].head;
    if (rc) {
        free(*recv);
        *recv = NULL;
    }
    return rc;
}
