/* The MPI-IO backend of the HDF5 writer (see h5par.h): the file access and collective transfers
 * of parallel HDF5, the agreement of the ranks, and the end of the job on a failed write. */
#include "h5par.h"

#include <stdio.h>
#include <unistd.h>

/* The output under on_mpiio_error (below): one output is written at a time. */
static struct {
    const char *path, *partial; /* NULL: none */
    MPI_Comm comm;
    int rank;
} guarded;
static void (*fatal_hook)(void);

static int par_all_ok(void *ctx, int ok)
{
    int all = ok;
    MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_MIN, *(MPI_Comm *)ctx);
    return all;
}

static void par_bcast(void *ctx, long *v) { MPI_Bcast(v, 1, MPI_LONG, 0, *(MPI_Comm *)ctx); }

static void par_offsets(void *ctx, int64_t n, int64_t *before, int64_t *total)
{
    MPI_Comm comm = *(MPI_Comm *)ctx;
    int rank;
    long long mine = n, b = 0, t = n;
    MPI_Comm_rank(comm, &rank);
    MPI_Exscan(&mine, &b, 1, MPI_LONG_LONG, MPI_SUM, comm);
    if (rank == 0) b = 0; /* Exscan leaves rank 0's result undefined */
    MPI_Allreduce(&mine, &t, 1, MPI_LONG_LONG, MPI_SUM, comm);
    *before = b, *total = t;
}

/* Under MPI-IO, a write that fails on one rank inside one of HDF5's collective calls (chunk
 * allocation, H5Dwrite, the flush) leaves the ranks on different collectives: HDF5 1.10.8 then
 * deadlocks, over ompio and ROMIO alike. So the MPI error handler of the file being written ends
 * the job at the first failed MPI-IO call: it names the file and the error in one line, removes
 * the .partial, runs the driver's hook (its lock) and calls MPI_Abort with exit status 1. The
 * previous output under the final name is never touched. */

void cp_h5par_on_fatal(void (*hook)(void)) { fatal_hook = hook; }

static void on_mpiio_error(MPI_File *fh, int *code, ...)
{
    (void)fh;
    char msg[MPI_MAX_ERROR_STRING] = "";
    int len = 0;
    MPI_Error_string(*code, msg, &len);
    if (guarded.path) {
        fprintf(stderr, "error: rank %d: %s: cannot write the output file (%s); parallel HDF5 "
                "cannot continue after a failed collective write, so the job stops\n",
                guarded.rank, guarded.path, msg);
        unlink(guarded.partial);
    }
    if (fatal_hook) fatal_hook();
    MPI_Abort(guarded.path ? guarded.comm : MPI_COMM_WORLD, 1);
}

/* Collective transfers, and the .partial opened through MPI-IO with on_mpiio_error as its error
 * handler (files take the handler of MPI_FILE_NULL when they are opened; it is put back after). */
static hid_t par_create(void *ctx, const char *path, const char *partial, hid_t dxpl)
{
    static MPI_Errhandler eh = MPI_ERRHANDLER_NULL;
    MPI_Comm comm = *(MPI_Comm *)ctx;
    H5Pset_dxpl_mpio(dxpl, H5FD_MPIO_COLLECTIVE);
    if (eh == MPI_ERRHANDLER_NULL) MPI_File_create_errhandler(on_mpiio_error, &eh);
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_fapl_mpio(fapl, comm, MPI_INFO_NULL);
    guarded.path = path, guarded.partial = partial, guarded.comm = comm;
    MPI_Comm_rank(comm, &guarded.rank);
    MPI_File_set_errhandler(MPI_FILE_NULL, eh);
    hid_t file = H5Fcreate(partial, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    MPI_File_set_errhandler(MPI_FILE_NULL, MPI_ERRORS_RETURN);
    H5Pclose(fapl);
    return file;
}

static void par_closed(void *ctx)
{
    (void)ctx;
    guarded.path = guarded.partial = NULL;
}

cp_h5_backend cp_h5par_backend(MPI_Comm *comm)
{
    cp_h5_backend be = {0, comm, par_all_ok, par_bcast, par_offsets, par_create, par_closed};
    MPI_Comm_rank(*comm, &be.rank);
    return be;
}
