/* Time spent in MPI calls, measured through the MPI profiling interface: this module defines the
 * MPI functions the driver uses, each timing the real PMPI_ call. Linked into the cellpose-mpi
 * executable only. The counter is process-wide by nature of that interface. */
#ifndef CP_COMMTIME_H
#define CP_COMMTIME_H

/* Seconds spent inside MPI communication calls by this process so far. */
double cp_comm_seconds(void);

#endif
