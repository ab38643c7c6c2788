/* `cellpose-mpi --version`: the tool's version, then each library it was built with and the one
 * it runs with (they differ when a module system or LD_LIBRARY_PATH swaps a shared library). */
#ifndef CP_VERSION_H
#define CP_VERSION_H

#include <stdio.h>

/* The MPI library, as the driver finds it (the engine does not use MPI). */
typedef struct cp_version_mpi {
    const char *library; /* the library's version text (MPI's "get library version") */
    int major, minor;    /* the MPI standard it implements */
    const char *built;   /* the MPI the program was compiled with */
} cp_version_mpi;

/* Prints to f: first line "cellpose-mpi X.Y.Z (Cellpose 3.1.1.3 inference)", then one line per
 * library, "  NAME  running-version (details) [built with compile-time-version]", for MPI
 * (the first line of mpi->library), HDF5 (and whether it is the parallel build), OpenBLAS (its
 * configuration and the kernel core in use), libtiff, libzip and libpng. */
void cp_version_print(FILE *f, const cp_version_mpi *mpi);

#endif
