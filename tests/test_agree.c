/* cp_agree (mpi/agree.c) on 2 ranks: the lowest failing rank's message reaches every rank with
 * one "rank R: " prefix, also when a phase agrees again on an already agreed failure (it used to
 * read "rank 0: rank 0: ..."). */
#include <mpi.h>
#include <stdio.h>
#include <string.h>

#include "agree.h"
#include "cp_err.h"
#include "testutil.h"

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    for (int failing = 0; failing < 2; failing++) {
        char err[CP_ERR_LEN] = "", want[CP_ERR_LEN];
        int rc = rank == failing ? cp_errf(err, CP_EFORMAT, "x.tif: page 0: bad") : 0;
        rc = cp_agree(MPI_COMM_WORLD, rc, err);
        rc = cp_agree(MPI_COMM_WORLD, rc, err); /* a second phase boundary */
        snprintf(want, sizeof want, "rank %d: x.tif: page 0: bad", failing);
        TU_CHECK(rc == CP_EFORMAT && !strcmp(err, want), "rank %d: got %d '%s', expected '%s'",
                 rank, rc, err, want);
    }
    char ok[CP_ERR_LEN] = "";
    TU_CHECK(cp_agree(MPI_COMM_WORLD, 0, ok) == 0 && !ok[0], "success changed the message");
    int failed = tu_finish();
    MPI_Finalize();
    return failed;
}
