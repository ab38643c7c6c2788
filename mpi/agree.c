/* Agreement on the status of a phase (see agree.h). */
#include "agree.h"

#include <stdio.h>
#include <string.h>

#include "cp_err.h"

int cp_agree(MPI_Comm comm, int rc, char *err)
{
    int rank, size;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    int mine = rc ? rank : size, first;
    MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, comm);
    if (first == size) return 0;
    int code = rc;
    char msg[CP_ERR_LEN];
    int r, agreed = 0; /* "rank R: ..." already: a failure agreed on at an earlier boundary */
    if (rank == first && sscanf(err, "rank %d: %n", &r, &agreed) == 1 && agreed > 0)
        snprintf(msg, sizeof msg, "%s", err);
    else if (rank == first)
        snprintf(msg, sizeof msg, "rank %d: %s", rank, err);
    MPI_Bcast(&code, 1, MPI_INT, first, comm);
    MPI_Bcast(msg, CP_ERR_LEN, MPI_CHAR, first, comm);
    memcpy(err, msg, CP_ERR_LEN);
    return code ? code : CP_EMPI;
}
