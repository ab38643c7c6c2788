/* Reading /labels of a committed output back (the --save_overlay picture, the --save_tif masks):
 * one plane at a time, at chosen rows and columns, one chunk-sized block per HDF5 read so that
 * every chunk is inflated once per plane. */
#ifndef CP_LABELS_IN_H
#define CP_LABELS_IN_H

#include <hdf5.h>
#include <stdint.h>

typedef struct cp_labels_in {
    hid_t f, d;
    int rank;              /* 2: (Y, X), 3: (Z, Y, X) */
    int64_t nz, ny, nx;    /* nz 1 for a plane */
} cp_labels_in;

/* Opens /labels of path; purpose ends the messages ("to draw the overlay"). Errors: CP_EIO (not
 * an HDF5 file), CP_EFORMAT (no 2-D or 3-D /labels). */
int cp_labels_open(const char *path, const char *purpose, cp_labels_in *li, char *err);

/* Plane z at rows sy[0..oy) and columns sx[0..ox) (increasing) into lab (oy, ox); -1 when HDF5
 * fails, else 0. */
int cp_labels_read(const cp_labels_in *li, int64_t z, const int64_t *sy, int64_t oy,
                   const int64_t *sx, int64_t ox, uint32_t *lab);

void cp_labels_close(cp_labels_in *li);

#endif
