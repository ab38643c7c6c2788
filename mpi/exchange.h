/* The all-to-all round of the distributed driver, written once: records of one fixed size are
 * queued per destination rank in an outbox, and cp_exchange moves them (counts by MPI_Alltoall,
 * displacements, one MPI_Alltoallv) into one receive buffer. The particle rounds (prounds.c), the
 * records of the raw masks (dmasks.c) and the per-mask steps (dpost*.c) all move their data
 * through it. Records travel as bytes: callers memset records with padding before filling them. */
#ifndef CP_EXCHANGE_H
#define CP_EXCHANGE_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

/* The records bound for one rank: [head, n) are queued, [0, head) already sent. */
typedef struct cp_outq {
    char *p;
    int64_t head, n, cap;
} cp_outq;

/* One outbox per kind of record. */
typedef struct cp_outbox {
    MPI_Comm comm;
    int nranks;
    size_t size;       /* bytes per record */
    MPI_Datatype type; /* one record as bytes */
    cp_outq *q;        /* per destination rank */
    int64_t queued;    /* records queued for all ranks */
    int *cnt;          /* 4 * nranks: send counts, displacements, receive counts, displacements */
} cp_outbox;

/* An empty outbox for records of size bytes (not collective). 0, or CP_ENOMEM with a message. */
int cp_outbox_init(cp_outbox *o, MPI_Comm comm, size_t size, char *err);

/* Frees what o holds (also after a failed init, or when o is zero-initialized). */
void cp_outbox_free(cp_outbox *o);

/* Queues n records rec[0..n) for rank dst: 0, or CP_ENOMEM without a message (the caller says
 * what it was sending). */
int cp_outbox_push(cp_outbox *o, int dst, const void *rec, int64_t n);

/* The most records queued for one rank. */
int64_t cp_outbox_longest(const cp_outbox *o);

/* Collective over o->comm. rc: this rank's status so far (a failed rank sends nothing). Sends
 * up to max (>= 1) records from the front of each queue to its rank, every rank taking part
 * with its own max; *recv (malloc'ed, at least one record long, the caller frees it) gets what
 * every rank sent here, in source-rank order and in each source's queue order, *nrecv records.
 * Counts in records beyond MPI's int range (for one rank pair, or in all sent or received by a
 * rank) are CP_EDATA, an allocation failure CP_ENOMEM. The status is agreed (cp_agree) before
 * the data moves: unless every rank succeeded, every rank returns the failure, with *recv NULL
 * and nothing moved, and every queue is emptied. Records sent leave their queue; the others stay
 * (max smaller than a queue: the caller exchanges again, as often as the longest queue of any
 * rank needs). */
int cp_exchange(cp_outbox *o, int rc, int64_t max, void **recv, int64_t *nrecv, char *err);

#endif
