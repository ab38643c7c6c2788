/* Test support shared by the MPI tests of the phases over blocks (test_dfollow.c,
 * test_dfollow3.c, test_dpost.c, test_dstack.c): a block store shared by the ranks, and the
 * gather of every rank's records on rank 0. */
#ifndef CP_TEST_DTEST_H
#define CP_TEST_DTEST_H

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <mpi.h>

#include "bstore.h"
#include "cp_err.h"
#include "testutil.h"

/* A work directory made by rank 0 and shared by all (under tu_tmpdir()). Collective. */
static inline void dtest_open_store(cp_bstore *s)
{
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    char dir[4096] = "";
    if (rank == 0) snprintf(dir, sizeof dir, "%s/work", tu_tmpdir());
    MPI_Bcast(dir, sizeof dir, MPI_CHAR, 0, MPI_COMM_WORLD);
    char err[CP_ERR_LEN] = "";
    if (cp_bstore_open(s, dir, err)) {
        fprintf(stderr, "%s\n", err);
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    MPI_Barrier(MPI_COMM_WORLD);
}

/* Deletes it (collective). */
static inline void dtest_close_store(cp_bstore *s)
{
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank == 0) {
        cp_bstore_destroy(s);
        rmdir(tu_tmpdir());
    }
}

/* The n records of size bytes p of every rank, in rank order, into a malloc'ed array on rank 0
 * (*total records; NULL elsewhere). Collective over comm. */
static inline void *dtest_gather(MPI_Comm comm, const void *p, int64_t n, size_t size,
                                 int64_t *total)
{
    int rank, nranks;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &nranks);
    int64_t *counts = malloc(sizeof *counts * (size_t)nranks);
    MPI_Gather(&n, 1, MPI_INT64_T, counts, 1, MPI_INT64_T, 0, comm);
    int *bytes = malloc(sizeof *bytes * (size_t)nranks), *displs = malloc(sizeof *displs * (size_t)nranks);
    char *all = NULL;
    *total = 0;
    if (rank == 0) {
        for (int j = 0; j < nranks; j++) {
            displs[j] = (int)(*total * (int64_t)size);
            bytes[j] = (int)(counts[j] * (int64_t)size);
            *total += counts[j];
        }
        if (*total * (int64_t)size > INT_MAX) {
            fprintf(stderr, "too many records to gather\n");
            MPI_Abort(comm, 2);
        }
        all = malloc(size * (size_t)(*total ? *total : 1));
    }
    MPI_Gatherv(p, (int)(n * (int64_t)size), MPI_BYTE, all, bytes, displs, MPI_BYTE, 0, comm);
    free(counts), free(bytes), free(displs);
    return all;
}

#endif
