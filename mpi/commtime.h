/* Time spent in MPI calls, measured through the MPI profiling interface: this module defines the
 * MPI functions the driver uses, each timing the real PMPI_ call. Linked into the cellpose-mpi
 * executable only. The counter is process-wide by nature of that interface. */
#ifndef CP_COMMTIME_H
#define CP_COMMTIME_H

#include "timing.h"

/* Seconds spent inside MPI communication calls by this process so far. */
double cp_comm_seconds(void);

/* Closes phase ph of tm, begun at wall time *t0 with *c0 MPI seconds spent: adds the wall and
 * MPI seconds since, and starts the next phase now. */
void cp_comm_lap(cp_timing *tm, cp_phase ph, double *t0, double *c0);

#endif
