/* The MPI-IO backend of the HDF5 writer (h5store.h): the ranks of a communicator write one output
 * file together through parallel HDF5, with collective transfers, agreeing after each step. */
#ifndef CP_H5PAR_H
#define CP_H5PAR_H

#include <mpi.h>

#include "h5store.h"

/* The backend for cp_h5_create over *comm (collective calls; *comm must outlive every writer
 * created with it). */
cp_h5_backend cp_h5par_backend(MPI_Comm *comm);

/* Under MPI-IO, HDF5 cannot go on after a write of the file fails on one rank (its ranks would
 * wait on different collectives), so the first failed MPI-IO call of an output being written
 * prints "error: rank R: <path>: cannot write the output file (...)", removes the .partial, calls
 * hook (the driver's cleanup, e.g. its lock file; NULL: none) and ends the job with MPI_Abort,
 * exit status 1. */
void cp_h5par_on_fatal(void (*hook)(void));

#endif
