/* MPI profiling wrappers that add up the time of communication calls (see commtime.h). */
#include "commtime.h"

#include <mpi.h>

static double spent;

double cp_comm_seconds(void) { return spent; }

void cp_comm_lap(cp_timing *tm, cp_phase ph, double *t0, double *c0)
{
    double now = PMPI_Wtime(), c = spent;
    tm->sec[ph] += now - *t0;
    tm->comm[ph] += c - *c0;
    *t0 = now, *c0 = c;
}

#define TIMED(call)                   \
    do {                              \
        double t0_ = PMPI_Wtime();    \
        int rc_ = (call);             \
        spent += PMPI_Wtime() - t0_;  \
        return rc_;                   \
    } while (0)

int MPI_Allreduce(const void *s, void *r, int n, MPI_Datatype t, MPI_Op op, MPI_Comm c)
{
    TIMED(PMPI_Allreduce(s, r, n, t, op, c));
}

int MPI_Alltoall(const void *s, int sn, MPI_Datatype st, void *r, int rn, MPI_Datatype rt,
                 MPI_Comm c)
{
    TIMED(PMPI_Alltoall(s, sn, st, r, rn, rt, c));
}

int MPI_Alltoallv(const void *s, const int *sn, const int *sd, MPI_Datatype st, void *r,
                  const int *rn, const int *rd, MPI_Datatype rt, MPI_Comm c)
{
    TIMED(PMPI_Alltoallv(s, sn, sd, st, r, rn, rd, rt, c));
}

int MPI_Bcast(void *b, int n, MPI_Datatype t, int root, MPI_Comm c)
{
    TIMED(PMPI_Bcast(b, n, t, root, c));
}

int MPI_Gather(const void *s, int sn, MPI_Datatype st, void *r, int rn, MPI_Datatype rt,
               int root, MPI_Comm c)
{
    TIMED(PMPI_Gather(s, sn, st, r, rn, rt, root, c));
}

int MPI_Gatherv(const void *s, int sn, MPI_Datatype st, void *r, const int *rn, const int *rd,
                MPI_Datatype rt, int root, MPI_Comm c)
{
    TIMED(PMPI_Gatherv(s, sn, st, r, rn, rd, rt, root, c));
}

int MPI_Allgather(const void *s, int sn, MPI_Datatype st, void *r, int rn, MPI_Datatype rt,
                  MPI_Comm c)
{
    TIMED(PMPI_Allgather(s, sn, st, r, rn, rt, c));
}

int MPI_Allgatherv(const void *s, int sn, MPI_Datatype st, void *r, const int *rn,
                   const int *rd, MPI_Datatype rt, MPI_Comm c)
{
    TIMED(PMPI_Allgatherv(s, sn, st, r, rn, rd, rt, c));
}

int MPI_Send(const void *b, int n, MPI_Datatype t, int dst, int tag, MPI_Comm c)
{
    TIMED(PMPI_Send(b, n, t, dst, tag, c));
}

int MPI_Recv(void *b, int n, MPI_Datatype t, int src, int tag, MPI_Comm c, MPI_Status *st)
{
    TIMED(PMPI_Recv(b, n, t, src, tag, c, st));
}

int MPI_Sendrecv(const void *sb, int sn, MPI_Datatype st, int dst, int stag, void *rb, int rn,
                 MPI_Datatype rt, int src, int rtag, MPI_Comm c, MPI_Status *s)
{
    TIMED(PMPI_Sendrecv(sb, sn, st, dst, stag, rb, rn, rt, src, rtag, c, s));
}

int MPI_Barrier(MPI_Comm c) { TIMED(PMPI_Barrier(c)); }

int MPI_Exscan(const void *s, void *r, int n, MPI_Datatype t, MPI_Op op, MPI_Comm c)
{
    TIMED(PMPI_Exscan(s, r, n, t, op, c));
}

int MPI_Reduce(const void *s, void *r, int n, MPI_Datatype t, MPI_Op op, int root, MPI_Comm c)
{
    TIMED(PMPI_Reduce(s, r, n, t, op, root, c));
}

int MPI_Waitall(int n, MPI_Request *req, MPI_Status *st) { TIMED(PMPI_Waitall(n, req, st)); }

int MPI_Wait(MPI_Request *req, MPI_Status *st) { TIMED(PMPI_Wait(req, st)); }
