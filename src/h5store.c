/* HDF5 output and saved-flows input (see h5store.h), with the serial backend. Serial HDF5 calls
 * of the parallel library; the distributed driver's backend (mpi/h5par.c) adds the MPI-IO file
 * access on top of the same layout. */
#define _GNU_SOURCE /* memfd_create */
#include "h5store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cp_err.h"

#define CHUNK 1024
static const hsize_t VOLUME_CHUNK[3] = {32, 128, 128}; /* see CP_H5_VOLUME */
#define DEFLATE_LEVEL 4

struct cp_h5out {
    char path[CP_PATH_LEN], partial[CP_PATH_LEN + 32];
    cp_h5_backend be;
    int serial;          /* be is the serial backend */
    hid_t file, labels, flows, cellprob, dxpl;
    int64_t nz, ny, nx, fny, fnx;
    int stack;
    dev_t dev;           /* the file HDF5 writes, as this rank opened it (ino 0: none) */
    ino_t ino;
    int mem, part;       /* serial: HDF5 writes the memory file mem, which commit copies into
                            the .partial (part); -1: HDF5 writes the .partial itself */
};

static void quiet_hdf5(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* A chunked, deflated dataset of rank `rank`: chunked `tile` clipped to dims, or with tile NULL
 * the last two dimensions CHUNK² and the others 1. */
static hid_t create_dataset(hid_t file, const char *name, hid_t type, int rank,
                            const hsize_t *dims, const hsize_t *tile)
{
    hsize_t chunk[4];
    for (int i = 0; i < rank; i++)
        chunk[i] = tile ? (dims[i] < tile[i] ? dims[i] : tile[i])
                        : i < rank - 2 ? 1 : (hsize_t)min64((int64_t)dims[i], CHUNK);
    hid_t space = H5Screate_simple(rank, dims, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, rank, chunk);
    H5Pset_deflate(dcpl, DEFLATE_LEVEL);
    if (type == H5T_NATIVE_UINT32) {
        uint32_t zero = 0;
        H5Pset_fill_value(dcpl, type, &zero);
    }
    hid_t d = H5Dcreate2(file, name, type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    H5Pclose(dcpl);
    H5Sclose(space);
    return d;
}

/* Closes every handle, once: after a failed close HDF5 keeps a half-closed file that it closes
 * again when the library shuts down (when MPI finalizes), which crashes in H5F__close_cb; so a
 * handle is forgotten whatever its close returned. Returns 0, or -1 if a close failed. */
static int close_all(cp_h5out *h)
{
    int bad = 0;
    if (h->dxpl >= 0) bad |= H5Pclose(h->dxpl) < 0;
    if (h->cellprob >= 0) bad |= H5Dclose(h->cellprob) < 0;
    if (h->flows >= 0) bad |= H5Dclose(h->flows) < 0;
    if (h->labels >= 0) bad |= H5Dclose(h->labels) < 0;
    if (h->file >= 0) bad |= H5Fclose(h->file) < 0;
    h->be.closed(h->be.ctx);
    h->file = h->labels = h->flows = h->cellprob = h->dxpl = -1;
    return bad ? -1 : 0;
}

/* Once a write of the .partial has failed (disk full, I/O error) its content is lost anyway, but
 * HDF5 must still flush its caches before it lets go of the file, and that flush fails the same
 * way, so the closes fail and HDF5 crashes at exit (see close_all). Here every descriptor of this
 * process open on the .partial (the sec2 driver's, or Open MPI's under MPI-IO) is pointed at an
 * anonymous memory file: what HDF5 still writes goes nowhere, and the closes succeed. Only ever
 * called on a file about to be removed. */
static void discard_writes(const cp_h5out *h)
{
    if (!h->ino) return;
    int sink = memfd_create("cp-h5-discard", MFD_CLOEXEC);
    DIR *d = sink < 0 ? NULL : opendir("/proc/self/fd");
    for (struct dirent *e; d && (e = readdir(d));) {
        int fd = atoi(e->d_name);
        struct stat st;
        if (e->d_name[0] == '.' || fd == sink || fd == dirfd(d) || fstat(fd, &st)) continue;
        if (st.st_dev == h->dev && st.st_ino == h->ino) dup2(sink, fd);
    }
    if (d) closedir(d);
    if (sink >= 0) close(sink);
}

/* Copies fd's bytes [0, size) to the same offsets of out; 0 or errno. */
static int copy_fd(int in, int out, off_t size)
{
    enum { CHUNK_BYTES = 1 << 20 };
    char *buf = malloc(CHUNK_BYTES);
    int e = buf ? 0 : ENOMEM;
    for (off_t off = 0; !e && off < size;) {
        ssize_t n = pread(in, buf, CHUNK_BYTES, off);
        if (n <= 0) {
            e = n < 0 ? errno : EIO;
            break;
        }
        for (ssize_t done = 0; !e && done < n;) {
            ssize_t w = pwrite(out, buf + done, (size_t)(n - done), off + done);
            if (w < 0) e = errno;
            else done += w;
        }
        off += n;
    }
    free(buf);
    return e;
}

/* Serial (see h5store.h): the .partial HDF5 just created moves into an anonymous memory file —
 * its bytes so far are copied there and HDF5's descriptor is pointed at it — and the .partial is
 * reopened, empty, for cp_h5_commit to copy the finished file into. On any failure HDF5 keeps
 * writing the .partial itself (h->mem -1); h->part < 0 only if the .partial cannot be reopened. */
static void move_to_memory(cp_h5out *h)
{
    struct stat st;
    int mem = memfd_create("cp-h5-out", MFD_CLOEXEC), moved = 0;
    int src = mem < 0 ? -1 : open(h->partial, O_RDONLY | O_CLOEXEC);
    if (src >= 0 && !fstat(src, &st) && !copy_fd(src, mem, st.st_size)) {
        close(src);
        src = -1;
        DIR *d = opendir("/proc/self/fd");
        for (struct dirent *e; d && (e = readdir(d));) {
            int fd = atoi(e->d_name);
            struct stat fs;
            if (e->d_name[0] == '.' || fd == mem || fd == dirfd(d) || fstat(fd, &fs)) continue;
            if (fs.st_dev == h->dev && fs.st_ino == h->ino) moved += dup2(mem, fd) >= 0;
        }
        if (d) closedir(d);
    }
    if (src >= 0) close(src);
    if (moved && !fstat(mem, &st)) {
        h->mem = mem, h->dev = st.st_dev, h->ino = st.st_ino;
    } else if (mem >= 0) {
        close(mem);
    }
    h->part = open(h->partial, O_WRONLY | O_CLOEXEC | (h->mem >= 0 ? O_TRUNC : 0));
}

/* The serial backend: one rank, HDF5's default file driver. */
static int serial_all_ok(void *ctx, int ok) { return (void)ctx, ok; }
static void serial_bcast(void *ctx, long *v) { (void)ctx, (void)v; }

static void serial_offsets(void *ctx, int64_t n, int64_t *before, int64_t *total)
{
    (void)ctx;
    *before = 0, *total = n;
}

static hid_t serial_create(void *ctx, const char *path, const char *partial, hid_t dxpl)
{
    (void)ctx, (void)path, (void)dxpl;
    return H5Fcreate(partial, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
}

static void serial_closed(void *ctx) { (void)ctx; }

static const cp_h5_backend serial = {0, NULL, serial_all_ok, serial_bcast, serial_offsets,
                                     serial_create, serial_closed};

/* All ranks agree that every rank succeeded. */
static int all_ok(const cp_h5out *h, int ok) { return h->be.all_ok(h->be.ctx, ok); }

int cp_h5_create(const char *path, const cp_h5_backend *be, int64_t nz, int64_t ny, int64_t nx,
                 int kind, int64_t fny, int64_t fnx, cp_h5out **out, char *err)
{
    quiet_hdf5();
    cp_h5out *h = calloc(1, sizeof *h);
    if (!h) return cp_errf(err, CP_ENOMEM, "%s: out of memory", path);
    h->file = h->labels = h->flows = h->cellprob = h->dxpl = -1;
    h->mem = h->part = -1;
    h->serial = !be;
    h->be = be ? *be : serial;
    snprintf(h->path, sizeof h->path, "%s", path);
    long pid = (long)getpid(); /* one partial name per run: rank 0's pid */
    h->be.bcast(h->be.ctx, &pid);
    snprintf(h->partial, sizeof h->partial, "%s.partial.%ld", path, pid);
    h->nz = nz, h->ny = ny, h->nx = nx, h->fny = fny, h->fnx = fnx;
    h->stack = kind != CP_H5_PLANE || nz > 1;
    int with_flows = fny > 0 && fnx > 0;
    h->dxpl = H5Pcreate(H5P_DATASET_XFER);
    h->file = h->be.create(h->be.ctx, h->path, h->partial, h->dxpl);
    struct stat st;
    int made = !stat(h->partial, &st); /* HDF5 writes at once: a full disk can fail here */
    if (h->file >= 0 && made) h->dev = st.st_dev, h->ino = st.st_ino;
    if (h->file >= 0 && h->serial) move_to_memory(h);
    if (!all_ok(h, h->file >= 0 && (!h->serial || h->part >= 0))) {
        cp_h5_abort(h);
        return cp_errf(err, CP_EIO, "%s: cannot create the output file (%s)", path,
                       made ? "disk full or I/O error?" : "directory missing or not writable?");
    }
    hsize_t d3[3] = {(hsize_t)nz, (hsize_t)ny, (hsize_t)nx};
    h->labels = h->stack ? create_dataset(h->file, "labels", H5T_NATIVE_UINT32, 3, d3,
                                          kind == CP_H5_VOLUME ? VOLUME_CHUNK : NULL)
                         : create_dataset(h->file, "labels", H5T_NATIVE_UINT32, 2, d3 + 1, NULL);
    if (with_flows) {
        hsize_t f4[4] = {(hsize_t)nz, 2, (hsize_t)fny, (hsize_t)fnx};
        hsize_t c3[3] = {(hsize_t)nz, (hsize_t)fny, (hsize_t)fnx};
        int r = h->stack ? 4 : 3;
        h->flows = create_dataset(h->file, "flows", H5T_NATIVE_FLOAT, r, f4 + 4 - r, NULL);
        h->cellprob = create_dataset(h->file, "cellprob", H5T_NATIVE_FLOAT, r - 1, c3 + 4 - r,
                                     NULL);
    }
    if (!all_ok(h, h->labels >= 0 && (!with_flows || (h->flows >= 0 && h->cellprob >= 0)))) {
        cp_h5_abort(h);
        return cp_errf(err, CP_EIO, "%s: cannot create datasets", path);
    }
    *out = h;
    return 0;
}

/* Writes a block of `count` elements starting at `start` (the dataset's rank); a count with a
 * zero selects nothing (a rank taking part in a collective write with no data). */
static int write_block(cp_h5out *h, hid_t d, hid_t type, int rank, const hsize_t *start,
                       const hsize_t *count, const void *buf, const char *what, char *err)
{
    hid_t fs = H5Dget_space(d);
    hid_t ms = H5Screate_simple(rank, count, NULL);
    hsize_t n = 1;
    for (int i = 0; i < rank; i++) n *= count[i];
    if (n) {
        H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL);
    } else {
        H5Sselect_none(fs);
        H5Sselect_none(ms);
    }
    herr_t st = H5Dwrite(d, type, ms, fs, h->dxpl, buf);
    H5Sclose(ms);
    H5Sclose(fs);
    if (!all_ok(h, st >= 0))
        return cp_errf(err, CP_EIO, "%s: cannot write %s (disk full?)", h->path, what);
    return 0;
}

int cp_h5_write_labels(cp_h5out *h, int64_t z, int64_t y0, int64_t x0, int64_t ny, int64_t nx,
                       const uint32_t *v, char *err)
{
    hsize_t start[3] = {(hsize_t)z, (hsize_t)y0, (hsize_t)x0};
    hsize_t count[3] = {ny && nx, (hsize_t)ny, (hsize_t)nx};
    int r = h->stack ? 3 : 2;
    return write_block(h, h->labels, H5T_NATIVE_UINT32, r, start + 3 - r, count + 3 - r, v,
                       "/labels", err);
}

int cp_h5_write_labels3(cp_h5out *h, const int64_t start[3], const int64_t count[3],
                        const uint32_t *v, char *err)
{
    hsize_t s3[3] = {(hsize_t)start[0], (hsize_t)start[1], (hsize_t)start[2]};
    hsize_t c3[3] = {(hsize_t)count[0], (hsize_t)count[1], (hsize_t)count[2]};
    return write_block(h, h->labels, H5T_NATIVE_UINT32, 3, s3, c3, v, "/labels", err);
}

int cp_h5_write_flows(cp_h5out *h, int64_t z, int64_t y0, int64_t x0, int64_t ny, int64_t nx,
                      const float *dP, const float *cellprob, char *err)
{
    hsize_t any = ny && nx;
    hsize_t s4[4] = {(hsize_t)z, 0, (hsize_t)y0, (hsize_t)x0};
    hsize_t c4[4] = {any, 2 * any, (hsize_t)ny, (hsize_t)nx};
    hsize_t s3[3] = {(hsize_t)z, (hsize_t)y0, (hsize_t)x0}, c3[3] = {any, (hsize_t)ny, (hsize_t)nx};
    int r = h->stack ? 4 : 3, rc;
    if ((rc = write_block(h, h->flows, H5T_NATIVE_FLOAT, r, s4 + 4 - r, c4 + 4 - r, dP,
                          "/flows", err)))
        return rc;
    return write_block(h, h->cellprob, H5T_NATIVE_FLOAT, r - 1, s3 + 4 - r, c3 + 4 - r,
                       cellprob, "/cellprob", err);
}

int cp_h5_create_flows3(cp_h5out *h, const int64_t n[3], char *err)
{
    hsize_t f4[4] = {3, (hsize_t)n[0], (hsize_t)n[1], (hsize_t)n[2]};
    h->flows = create_dataset(h->file, "flows", H5T_NATIVE_FLOAT, 4, f4, NULL);
    h->cellprob = create_dataset(h->file, "cellprob", H5T_NATIVE_FLOAT, 3, f4 + 1, NULL);
    if (!all_ok(h, h->flows >= 0 && h->cellprob >= 0))
        return cp_errf(err, CP_EIO, "%s: cannot create /flows and /cellprob", h->path);
    return 0;
}

int cp_h5_write_flows3(cp_h5out *h, const int64_t start[3], const int64_t count[3],
                       const float *dP, const float *cellprob, char *err)
{
    hsize_t any = count[0] && count[1] && count[2];
    hsize_t s4[4] = {0, (hsize_t)start[0], (hsize_t)start[1], (hsize_t)start[2]};
    hsize_t c4[4] = {3 * any, (hsize_t)count[0], (hsize_t)count[1], (hsize_t)count[2]};
    int rc = write_block(h, h->flows, H5T_NATIVE_FLOAT, 4, s4, c4, dP, "/flows", err);
    return rc ? rc
              : write_block(h, h->cellprob, H5T_NATIVE_FLOAT, 3, s4 + 1, c4 + 1, cellprob,
                            "/cellprob", err);
}

int cp_h5_write_cells(cp_h5out *h, const cp_cell *cells, int64_t n, int volume, char *err)
{
    hid_t t = H5Tcreate(H5T_COMPOUND, sizeof(cp_cell));
    H5Tinsert(t, "id", HOFFSET(cp_cell, id), H5T_NATIVE_UINT32);
    if (!volume) H5Tinsert(t, "plane", HOFFSET(cp_cell, plane), H5T_NATIVE_UINT32);
    H5Tinsert(t, "area", HOFFSET(cp_cell, area), H5T_NATIVE_UINT64);
    if (volume) H5Tinsert(t, "centroid_z", HOFFSET(cp_cell, cz), H5T_NATIVE_DOUBLE);
    H5Tinsert(t, "centroid_y", HOFFSET(cp_cell, cy), H5T_NATIVE_DOUBLE);
    H5Tinsert(t, "centroid_x", HOFFSET(cp_cell, cx), H5T_NATIVE_DOUBLE);
    if (volume) H5Tinsert(t, "bbox_z0", HOFFSET(cp_cell, z0), H5T_NATIVE_INT64);
    H5Tinsert(t, "bbox_y0", HOFFSET(cp_cell, y0), H5T_NATIVE_INT64);
    H5Tinsert(t, "bbox_x0", HOFFSET(cp_cell, x0), H5T_NATIVE_INT64);
    if (volume) H5Tinsert(t, "bbox_z1", HOFFSET(cp_cell, z1), H5T_NATIVE_INT64);
    H5Tinsert(t, "bbox_y1", HOFFSET(cp_cell, y1), H5T_NATIVE_INT64);
    H5Tinsert(t, "bbox_x1", HOFFSET(cp_cell, x1), H5T_NATIVE_INT64);
    int64_t before, total;
    h->be.offsets(h->be.ctx, n, &before, &total);
    hsize_t dim = (hsize_t)total, start = (hsize_t)before, count = (hsize_t)n;
    hid_t space = H5Screate_simple(1, &dim, NULL);
    hid_t d = H5Dcreate2(h->file, "cells", t, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    herr_t st = -1;
    if (d >= 0) {
        hid_t fs = H5Dget_space(d), ms = H5Screate_simple(1, &count, NULL);
        if (n) H5Sselect_hyperslab(fs, H5S_SELECT_SET, &start, NULL, &count, NULL);
        else H5Sselect_none(fs), H5Sselect_none(ms);
        st = total ? H5Dwrite(d, t, ms, fs, h->dxpl, cells) : 0;
        H5Sclose(ms);
        H5Sclose(fs);
        H5Dclose(d);
    }
    H5Sclose(space);
    H5Tclose(t);
    return all_ok(h, st >= 0) ? 0 : cp_errf(err, CP_EIO, "%s: cannot write /cells", h->path);
}

static int attr_write(hid_t file, const char *name, hid_t type, const void *value)
{
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(file, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    herr_t st = a < 0 ? -1 : H5Awrite(a, type, value);
    if (a >= 0) H5Aclose(a);
    H5Sclose(space);
    return st < 0 ? -1 : 0;
}

/* A string attribute as variable-length UTF-8, the type h5py reads as str (fixed-length ASCII
 * would come back as bytes). The value is passed as a pointer to the string. */
static int attr_str(hid_t file, const char *name, const char *s)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    int st = attr_write(file, name, t, &s);
    H5Tclose(t);
    return st;
}

int cp_h5_write_attrs(cp_h5out *h, const cp_params *p, const cp_provenance *pv, char *err)
{
    int bad = 0;
    for (const cp_param_def *d = cp_param_defs; d->name; d++) {
        const char *field = (const char *)p + d->offset;
        switch (d->type) {
        case CP_PT_STR: bad |= attr_str(h->file, d->name, field); break;
        case CP_PT_INT: bad |= attr_write(h->file, d->name, H5T_NATIVE_INT64, field); break;
        case CP_PT_REAL: bad |= attr_write(h->file, d->name, H5T_NATIVE_DOUBLE, field); break;
        case CP_PT_FLAG: bad |= attr_write(h->file, d->name, H5T_NATIVE_INT, field); break;
        }
    }
    bad |= attr_str(h->file, "tool_version", "cellpose-mpi " CP_VERSION);
    bad |= attr_str(h->file, "reproduces", "Cellpose 3.1.1.3");
    bad |= attr_str(h->file, "command_line", pv->command_line ? pv->command_line : "");
    bad |= attr_str(h->file, "input_file", pv->input_file ? pv->input_file : "");
    bad |= attr_write(h->file, "input_bytes", H5T_NATIVE_INT64, &pv->input_bytes);
    bad |= attr_str(h->file, "model_file", pv->model_file ? pv->model_file : "");
    bad |= attr_str(h->file, "model_sha256", pv->model_sha256 ? pv->model_sha256 : "");
    bad |= attr_write(h->file, "rescale", H5T_NATIVE_DOUBLE, &pv->rescale);
    bad |= attr_write(h->file, "niter_used", H5T_NATIVE_INT64, &pv->niter_used);
    bad |= attr_write(h->file, "block_used", H5T_NATIVE_INT64, &pv->block_used);
    bad |= attr_write(h->file, "n_masks", H5T_NATIVE_INT64, &pv->n_masks);
    if (p->do_3D) /* accepted for Cellpose's command lines, but there is no flow QC in 3-D */
        bad |= attr_str(h->file, "unused_parameters", "flow_threshold (no flow-error QC in 3-D)");
    return all_ok(h, !bad) ? 0 : cp_errf(err, CP_EIO, "%s: cannot write attributes", h->path);
}

/* Serial: the memory file's bytes into the .partial, then its fd closed; 0 or errno. */
static int copy_out(cp_h5out *h)
{
    struct stat st;
    int e = fstat(h->mem, &st) ? errno : copy_fd(h->mem, h->part, st.st_size);
    if (!e && fsync(h->part)) e = errno;
    if (close(h->part) && !e) e = errno;
    h->part = -1;
    return e;
}

/* The closed .partial onto the disk (fsync) and under the final name, by rank 0 (or the serial
 * writer); every rank gets 0 or rank 0's errno. */
static int sync_and_rename(cp_h5out *h)
{
    int e = 0;
    if (h->mem >= 0) {
        e = copy_out(h);
    } else if (h->be.rank == 0) {
        int fd = open(h->partial, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || fsync(fd)) e = errno ? errno : EIO;
        if (fd >= 0) close(fd);
    }
    if (!e && h->be.rank == 0 && rename(h->partial, h->path)) e = errno ? errno : EIO;
    long all = e;
    h->be.bcast(h->be.ctx, &all);
    return (int)all;
}

static void close_fds(cp_h5out *h)
{
    if (h->mem >= 0) close(h->mem);
    if (h->part >= 0) close(h->part);
    h->mem = h->part = -1;
}

int cp_h5_commit(cp_h5out *h, char *err)
{
    int rc = 0, e;
    /* no H5Fflush first: a failed write ends the job under MPI-IO (mpi/h5par.c), none fails
     * in the memory file, and the flush's file sync on every rank would only repeat the fsync
     * below */
    if (!all_ok(h, close_all(h) == 0)) {
        rc = cp_errf(err, CP_EIO, "%s: cannot close the output file (disk full or I/O error?)",
                     h->path);
    } else if ((e = sync_and_rename(h))) {
        rc = cp_errf(err, CP_EIO, "%s: cannot write, sync or rename %s into place: %s",
                     h->path, h->partial, strerror(e));
    }
    close_fds(h);
    if (rc && h->be.rank == 0) unlink(h->partial);
    free(h);
    return rc;
}

void cp_h5_abort(cp_h5out *h)
{
    if (!h) return;
    discard_writes(h);
    close_all(h);
    close_fds(h);
    if (h->be.rank == 0) unlink(h->partial);
    free(h);
}

/* Before reading dataset d: refuses what libhdf5 1.10 reads out of bounds or allocates without
 * limit (found by tests/fuzz, docs/fuzzing.md): chunks larger than the dataset (our writer and
 * h5py make them at most its size; libhdf5 allows more only for extendible dimensions), and a
 * dataset that stores more bytes than the file holds (a corrupt chunk index). */
static int check_storage(hid_t d, const char *path, const char *name, char *err)
{
    hsize_t dims[H5S_MAX_RANK], maxd[H5S_MAX_RANK], chunk[H5S_MAX_RANK];
    hid_t s = H5Dget_space(d), pl = H5Dget_create_plist(d);
    int rank = s < 0 ? -1 : H5Sget_simple_extent_dims(s, dims, maxd);
    int bad = rank < 0 || pl < 0;
    if (!bad && H5Pget_layout(pl) == H5D_CHUNKED) {
        bad = H5Pget_chunk(pl, H5S_MAX_RANK, chunk) != rank;
        for (int i = 0; !bad && i < rank; i++)
            bad = chunk[i] == 0 || chunk[i] > dims[i] || chunk[i] > maxd[i];
    }
    hsize_t stored = bad ? 0 : H5Dget_storage_size(d);
    if (s >= 0) H5Sclose(s);
    if (pl >= 0) H5Pclose(pl);
    if (bad)
        return cp_errf(err, CP_EFORMAT, "%s: /%s: corrupt layout (chunks larger than the dataset)",
                       path, name);
    struct stat st;
    if (stat(path, &st) == 0 && stored > (hsize_t)st.st_size)
        return cp_errf(err, CP_EFORMAT, "%s: /%s: %llu bytes stored in a %lld-byte file (corrupt "
                       "chunk index)", path, name, (unsigned long long)stored,
                       (long long)st.st_size);
    return 0;
}

/* Reads a float dataset whole into buf (if not NULL) after checking its rank; dims out. */
static int read_f32(hid_t f, const char *path, const char *name, int *rank, hsize_t *dims,
                    float *buf, char *err)
{
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    if (d < 0) return cp_errf(err, CP_EFORMAT, "%s: no dataset %s (not a --save_flows output?)",
                              path, name);
    hid_t s = H5Dget_space(d);
    *rank = H5Sget_simple_extent_ndims(s);
    if (*rank < 2 || *rank > 4) {
        H5Sclose(s);
        H5Dclose(d);
        return cp_errf(err, CP_EFORMAT, "%s: %s has rank %d", path, name, *rank);
    }
    H5Sget_simple_extent_dims(s, dims, NULL);
    H5Sclose(s);
    int rc = buf ? check_storage(d, path, name, err) : 0;
    herr_t st = buf && !rc ? H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) : 0;
    H5Dclose(d);
    return rc ? rc : st < 0 ? cp_errf(err, CP_EFORMAT, "%s: cannot read %s", path, name) : 0;
}

/* Reads the ranks and dims of /flows and /cellprob of path, and their data where dP and cellprob
 * are not NULL. */
static int read_pair(const char *path, int *rf, hsize_t *df, int *rc_, hsize_t *dc, float *dP,
                     float *cellprob, char *err)
{
    quiet_hdf5();
    if (access(path, R_OK)) return cp_errf(err, CP_EIO, "%s: cannot open (missing?)", path);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return cp_errf(err, CP_EFORMAT, "%s: not an HDF5 file", path);
    int rc = read_f32(f, path, "flows", rf, df, dP, err);
    if (!rc) rc = read_f32(f, path, "cellprob", rc_, dc, cellprob, err);
    H5Fclose(f);
    return rc;
}

/* /flows (3, Z, Y, X) beside /cellprob (Z, Y, X): a --do_3D file. A stack's (Z, 2, Y, X) beside
 * (Z, Y, X) can never pass for one: its cellprob would have to start with both Z and 2. */
static int is_volume(int rf, const hsize_t *df, int rc_, const hsize_t *dc)
{
    return rf == 4 && rc_ == 3 && df[0] == 3 && dc[0] == df[1] && dc[1] == df[2] &&
           dc[2] == df[3];
}

/* The callers allocate c z y x floats: no empty axis, at most 2^40 values (a corrupt header must
 * not make that product wrap around). The message gives /flows' shape: (c, Z, Y, X) for a volume,
 * else (Z, c, Y, X). */
static int check_count(const char *path, int volume, hsize_t c, hsize_t z, hsize_t y, hsize_t x,
                       char *err)
{
    const hsize_t lim = (hsize_t)1 << 40;
    if (z == 0 || y == 0 || x == 0 || z > lim / y || z * y > lim / c / x)
        return cp_errf(err, CP_EFORMAT, "%s: /flows of %llu x %llu x %llu x %llu: empty or over "
                       "2^40 values", path, (unsigned long long)(volume ? c : z),
                       (unsigned long long)(volume ? z : c), (unsigned long long)y,
                       (unsigned long long)x);
    return 0;
}

int cp_h5_read_flows(const char *path, int64_t *nz, int64_t *ny, int64_t *nx, float *dP,
                     float *cellprob, char *err)
{
    int rf, rc_, rc;
    hsize_t df[4], dc[4];
    if ((rc = read_pair(path, &rf, df, &rc_, dc, dP, cellprob, err))) return rc;
    if (is_volume(rf, df, rc_, dc))
        return cp_errf(err, CP_EFORMAT, "%s: 3-D flows (/flows of 3 x %llu x %llu x %llu, a "
                       "--do_3D output): give --do_3D", path, (unsigned long long)df[1],
                       (unsigned long long)df[2], (unsigned long long)df[3]);
    int stack = rf == 4;
    if (rc_ != rf - 1 || df[rf - 3] != 2 || (stack && df[0] != dc[0]) ||
        df[rf - 2] != dc[rc_ - 2] || df[rf - 1] != dc[rc_ - 1])
        return cp_errf(err, CP_EFORMAT, "%s: /flows and /cellprob shapes do not match", path);
    const hsize_t z = stack ? df[0] : 1, y = df[rf - 2], x = df[rf - 1];
    if ((rc = check_count(path, 0, 2, z, y, x, err))) return rc;
    *nz = (int64_t)z, *ny = (int64_t)y, *nx = (int64_t)x;
    return 0;
}

int cp_h5_read_flows3(const char *path, int64_t n[3], float *dP, float *cellprob, char *err)
{
    int rf, rc_, rc;
    hsize_t df[4], dc[4];
    if ((rc = read_pair(path, &rf, df, &rc_, dc, dP, cellprob, err))) return rc;
    if (!is_volume(rf, df, rc_, dc) && (rf == 3 || (rf == 4 && df[1] == 2)))
        return cp_errf(err, CP_EFORMAT, "%s: 2-D flows (/flows of rank %d with 2 flow channels, "
                       "not (3, Z, Y, X)): leave out --do_3D", path, rf);
    if (!is_volume(rf, df, rc_, dc))
        return cp_errf(err, CP_EFORMAT, "%s: /flows and /cellprob are not 3-D flows ((3, Z, Y, X) "
                       "and (Z, Y, X))", path);
    if ((rc = check_count(path, 1, 3, df[1], df[2], df[3], err))) return rc;
    for (int i = 0; i < 3; i++) n[i] = (int64_t)df[i + 1];
    return 0;
}

/* Reads the hyperslab start/count of dataset name into buf. */
static int read_slab(hid_t f, const char *path, const char *name, int rank, const hsize_t *start,
                     const hsize_t *count, float *buf, char *err)
{
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    if (d < 0) return cp_errf(err, CP_EFORMAT, "%s: no dataset %s", path, name);
    hid_t fs = H5Dget_space(d), ms = H5Screate_simple(rank, count, NULL);
    herr_t st = H5Sget_simple_extent_ndims(fs) == rank
                    ? H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL)
                    : -1;
    int rc = st >= 0 ? check_storage(d, path, name, err) : 0;
    if (st >= 0 && !rc) st = H5Dread(d, H5T_NATIVE_FLOAT, ms, fs, H5P_DEFAULT, buf);
    H5Sclose(ms);
    H5Sclose(fs);
    H5Dclose(d);
    return rc ? rc
           : st < 0 ? cp_errf(err, CP_EFORMAT, "%s: cannot read a window of %s", path, name)
                    : 0;
}

int cp_h5_read_flows_window(const char *path, int64_t z, int64_t y0, int64_t x0, int64_t ny,
                            int64_t nx, float *dP, float *cellprob, char *err)
{
    quiet_hdf5();
    int64_t nz, Ly, Lx;
    int rc = cp_h5_read_flows(path, &nz, &Ly, &Lx, NULL, NULL, err);
    if (rc) return rc;
    if (z < 0 || z >= nz || y0 < 0 || x0 < 0 || ny < 0 || nx < 0 || y0 + ny > Ly || x0 + nx > Lx)
        return cp_errf(err, CP_EPARAM, "%s: window outside the saved flows", path);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return cp_errf(err, CP_EFORMAT, "%s: not an HDF5 file", path);
    hid_t d = H5Dopen2(f, "flows", H5P_DEFAULT), sp = d < 0 ? -1 : H5Dget_space(d);
    int r = sp < 0 ? -1 : H5Sget_simple_extent_ndims(sp); /* 3: (2,Y,X), 4: (Z,2,Y,X) */
    if (sp >= 0) H5Sclose(sp);
    if (d >= 0) H5Dclose(d);
    if (r != 3 && r != 4) {
        H5Fclose(f);
        return cp_errf(err, CP_EFORMAT, "%s: /flows changed while it was read", path);
    }
    /* the last r (flows) or r - 1 (cellprob) entries of the 4-D and 3-D starts and counts */
    hsize_t s4[4] = {(hsize_t)z, 0, (hsize_t)y0, (hsize_t)x0}, c4[4] = {1, 2, (hsize_t)ny, (hsize_t)nx};
    hsize_t s3[3] = {(hsize_t)z, (hsize_t)y0, (hsize_t)x0}, c3[3] = {1, (hsize_t)ny, (hsize_t)nx};
    rc = read_slab(f, path, "flows", r, s4 + (4 - r), c4 + (4 - r), dP, err);
    if (!rc) rc = read_slab(f, path, "cellprob", r - 1, s3 + (4 - r), c3 + (4 - r), cellprob, err);
    H5Fclose(f);
    return rc;
}

int cp_h5_read_flows3_window(const char *path, const int64_t o[3], const int64_t n[3], float *dP,
                             float *cellprob, char *err)
{
    int64_t L[3];
    int rc = cp_h5_read_flows3(path, L, NULL, NULL, err);
    for (int a = 0; !rc && a < 3; a++)
        if (o[a] < 0 || n[a] < 0 || o[a] + n[a] > L[a])
            rc = cp_errf(err, CP_EPARAM, "%s: window outside the saved 3-D flows", path);
    if (rc) return rc;
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return cp_errf(err, CP_EFORMAT, "%s: not an HDF5 file", path);
    const hsize_t s4[4] = {0, (hsize_t)o[0], (hsize_t)o[1], (hsize_t)o[2]},
                  c4[4] = {3, (hsize_t)n[0], (hsize_t)n[1], (hsize_t)n[2]};
    rc = read_slab(f, path, "flows", 4, s4, c4, dP, err);
    if (!rc) rc = read_slab(f, path, "cellprob", 3, s4 + 1, c4 + 1, cellprob, err);
    H5Fclose(f);
    return rc;
}
