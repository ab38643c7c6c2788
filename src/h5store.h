/* The HDF5 output file (DESIGN.md §5): /labels uint32 (Y,X) or (Z,Y,X), chunked and deflated;
 * optional /flows (2,Y,X)|(Z,2,Y,X) and /cellprob float32, or with --do_3D /flows (3,Z,Y,X) =
 * (dZ, dY, dX) and /cellprob (Z,Y,X); /cells (per mask: id, plane, area, centroid, box; with
 * --do_3D one row per 3-D mask with z in the centroid and the box instead of the plane); provenance attributes on the root (strings: variable-length UTF-8). Written to
 * <path>.partial.<pid> (rank 0's pid: two runs never share one) and renamed to <path> only by
 * cp_h5_commit, so a failed run never leaves a file under the final name. Also the
 * reader of saved flows for --flows FILE.h5.
 * One writer, two backends (cp_h5_backend): serial (NULL), or the ranks of a distributed run,
 * which write the file together through MPI-IO (mpi/h5par.h): every call below is then
 * collective (a rank with nothing to write passes an empty block), and the transfers are
 * collective, which parallel HDF5 requires for the deflate filter.
 * Serial, HDF5 writes into an anonymous memory file that cp_h5_commit copies into the .partial
 * with plain writes: a full disk or an I/O error is then an ordinary write error with its errno,
 * never a failure inside HDF5 (after a failed flush HDF5 1.10.8 can no longer close the file, and
 * crashes at exit closing it again). It costs memory equal to the output file's (compressed)
 * size. Under MPI-IO HDF5 writes the .partial itself, and a failed write there ends the job
 * (mpi/h5par.h). */
#ifndef CP_H5STORE_H
#define CP_H5STORE_H

#include <hdf5.h>
#include <stdint.h>

#include "params.h"

typedef struct cp_h5out cp_h5out;

typedef struct cp_cell {
    uint32_t id, plane;              /* plane: 2-D masks only */
    uint64_t area;                   /* pixels, or voxels of a 3-D mask */
    double cy, cx;                   /* centroid (row, column) */
    int64_t y0, x0, y1, x1;          /* bounding box, [y0, y1) x [x0, x1) */
    double cz;                       /* 3-D masks only: centroid plane, */
    int64_t z0, z1;                  /* and planes [z0, z1) of the box */
} cp_cell;

/* What the attributes record besides the parameters. */
typedef struct cp_provenance {
    const char *command_line;
    const char *input_file;          /* the image (or flows) file */
    int64_t input_bytes;
    const char *model_file;          /* "" without a model */
    const char *model_sha256;
    double rescale;
    int64_t niter_used;
    int64_t block_used;              /* the owner block side (0: the whole image or volume) */
    int64_t n_masks;
} cp_provenance;

/* What the writer asks of the processes that write one file together; each function gets ctx.
 * The serial backend (cp_h5_create with NULL) is one rank that agrees with itself. */
typedef struct cp_h5_backend {
    int rank;                          /* this process among the writers; rank 0 names, syncs
                                          and renames the file */
    void *ctx;
    /* Collective: 1 if ok is nonzero on every rank, else 0. */
    int (*all_ok)(void *ctx, int ok);
    /* Collective: *v becomes rank 0's value on every rank. */
    void (*bcast)(void *ctx, long *v);
    /* Collective: of n rows per rank, *before = those of the lower ranks, *total = all. */
    void (*offsets)(void *ctx, int64_t n, int64_t *before, int64_t *total);
    /* Collective: creates (truncates) the file partial, the output path being written, and sets
     * up dxpl, the transfer property list of every write; the HDF5 file or negative. */
    hid_t (*create)(void *ctx, const char *path, const char *partial, hid_t dxpl);
    /* The writer is done with the file of create (closed, or never made). */
    void (*closed)(void *ctx);
} cp_h5_backend;

/* The shape of /labels: one plane (Y,X); a stack of planes (Z,Y,X) chunked a plane at a time, as
 * they are written; a --do_3D volume (Z,Y,X) chunked in 3-D tiles of up to 32x128x128 (2 MiB of
 * uint32 before deflate: a cell's neighbourhood or a Z slab reads a few chunks, not whole
 * planes), written whole with cp_h5_write_labels3. */
enum { CP_H5_PLANE = 0, CP_H5_STACK = 1, CP_H5_VOLUME = 2 };

/* Creates <path>.partial.<pid> for labels of nz planes of ny x nx; kind: a CP_H5_* above (a plane
 * with nz > 1 is a stack). With flows (fny, fnx > 0): /flows and /cellprob of fny x fnx per plane (the dynamics
 * scale, which differs from the image size with --no_resample). be: the backend (copied; its
 * ctx must outlive the writer), NULL: serial. */
int cp_h5_create(const char *path, const cp_h5_backend *be, int64_t nz, int64_t ny, int64_t nx,
                 int kind, int64_t fny, int64_t fnx, cp_h5out **out, char *err);
/* Labels of rows [y0, y0+ny) x columns [x0, x0+nx) of plane z (ny or nx 0: nothing). */
int cp_h5_write_labels(cp_h5out *h, int64_t z, int64_t y0, int64_t x0, int64_t ny, int64_t nx,
                       const uint32_t *v, char *err);
/* Labels of the box start, count (z, y, x) of a CP_H5_VOLUME file (a count with a zero: nothing). */
int cp_h5_write_labels3(cp_h5out *h, const int64_t start[3], const int64_t count[3],
                        const uint32_t *v, char *err);
/* A block of dP (2, ny, nx) and cellprob (ny, nx) of plane z (only if created with flows). */
int cp_h5_write_flows(cp_h5out *h, int64_t z, int64_t y0, int64_t x0, int64_t ny, int64_t nx,
                      const float *dP, const float *cellprob, char *err);
/* --do_3D with --save_flows: adds /flows (3, n[0], n[1], n[2]) = (dZ, dY, dX) and /cellprob
 * (n[0], n[1], n[2]) to a file created without flows (fny = fnx = 0); n is the grid of the
 * dynamics (the network scale with --no_resample). */
int cp_h5_create_flows3(cp_h5out *h, const int64_t n[3], char *err);
/* A box of them: start and count (z, y, x); dP (3, count) channel-first, cellprob (count). A
 * count with a zero writes nothing (a rank with no block in a collective write). */
int cp_h5_write_flows3(cp_h5out *h, const int64_t start[3], const int64_t count[3],
                       const float *dP, const float *cellprob, char *err);
/* Each rank passes its rows of /cells; they are stored in rank order. volume: the rows are 3-D
 * masks (cp_cells_collect3): the columns are id, area, centroid_z/y/x, bbox_z0/y0/x0/z1/y1/x1;
 * else id, plane, area, centroid_y/x, bbox_y0/x0/y1/x1. */
int cp_h5_write_cells(cp_h5out *h, const cp_cell *cells, int64_t n, int volume, char *err);
int cp_h5_write_attrs(cp_h5out *h, const cp_params *p, const cp_provenance *pv, char *err);
/* Flushes and closes the partial file, syncs it to disk and renames it to <path>; frees h. On any
 * failure (a full disk, an I/O error) the partial file is removed and <path> is untouched (a
 * previous output stays). */
int cp_h5_commit(cp_h5out *h, char *err);
/* Closes and removes the partial file, discarding what HDF5 still had to write; frees h. NULL:
 * no-op. */
void cp_h5_abort(cp_h5out *h);

/* Reads /flows and /cellprob of a --save_flows file: sizes first (dP, cellprob NULL), then data
 * into dP (nz, 2, ny, nx) and cellprob (nz, ny, nx). */
int cp_h5_read_flows(const char *path, int64_t *nz, int64_t *ny, int64_t *nx, float *dP,
                     float *cellprob, char *err);

/* Reads /flows (3, Z, Y, X) = (dZ, dY, dX) and /cellprob (Z, Y, X) of a --do_3D --save_flows file:
 * sizes first into n (dP, cellprob NULL), then the data. A 2-D file is an error (and
 * cp_h5_read_flows refuses a 3-D one): each names the flag to give or leave out. */
int cp_h5_read_flows3(const char *path, int64_t n[3], float *dP, float *cellprob, char *err);

/* The box at o of n voxels of a --do_3D --save_flows file: dP (3, n) = (dZ, dY, dX) and
 * cellprob (n). Errors: cp_h5_read_flows3's, CP_EPARAM (the box outside the flows). */
int cp_h5_read_flows3_window(const char *path, const int64_t o[3], const int64_t n[3], float *dP,
                             float *cellprob, char *err);

/* A window of plane z of a --save_flows file: dP (2, ny, nx) and cellprob (ny, nx). */
int cp_h5_read_flows_window(const char *path, int64_t z, int64_t y0, int64_t x0, int64_t ny,
                            int64_t nx, float *dP, float *cellprob, char *err);

#endif
