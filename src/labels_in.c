/* Reading /labels of a committed output back (see labels_in.h). */
#include "labels_in.h"

#include <stdlib.h>

#include "cp_err.h"

#define MAX_BLOCK 4096 /* largest side of a /labels block read at once */

/* Output rows [a, b) whose source rows lie in [r0, r1): a, b out (a == b: none). */
static void rows_in(const int64_t *src, int64_t on, int64_t r0, int64_t r1, int64_t *a, int64_t *b)
{
    int64_t i = 0;
    while (i < on && src[i] < r0) i++;
    *a = i;
    while (i < on && src[i] < r1) i++;
    *b = i;
}

/* Plane z of /labels at the picture's pixels into lab (oy, ox), one block of (at most) the
 * dataset's chunk at a time, so that every chunk is inflated once. */
int cp_labels_read(const cp_labels_in *li, int64_t z, const int64_t *sy, int64_t oy,
                   const int64_t *sx, int64_t ox, uint32_t *lab)
{
    const hid_t d = li->d;
    const int rank = li->rank;
    const int64_t ny = li->ny, nx = li->nx;
    hsize_t chunk[3] = {1, 1024, 1024};
    hid_t dcpl = H5Dget_create_plist(d);
    if (dcpl >= 0 && H5Pget_layout(dcpl) == H5D_CHUNKED) H5Pget_chunk(dcpl, rank, chunk);
    if (dcpl >= 0) H5Pclose(dcpl);
    int64_t cy = (int64_t)chunk[rank - 2], cx = (int64_t)chunk[rank - 1];
    cy = cy < 1 ? 1 : cy > MAX_BLOCK ? MAX_BLOCK : cy;
    cx = cx < 1 ? 1 : cx > MAX_BLOCK ? MAX_BLOCK : cx;
    uint32_t *buf = malloc(sizeof *buf * (size_t)(cy * cx));
    if (!buf) return -1;
    hid_t fs = H5Dget_space(d);
    int st = 0;
    for (int64_t r0 = 0; !st && r0 < ny; r0 += cy) {
        int64_t ya, yb;
        rows_in(sy, oy, r0, r0 + cy, &ya, &yb);
        if (ya == yb) continue;
        for (int64_t c0 = 0; !st && c0 < nx; c0 += cx) {
            int64_t xa, xb;
            rows_in(sx, ox, c0, c0 + cx, &xa, &xb);
            if (xa == xb) continue;
            int64_t y0 = sy[ya], x0 = sx[xa], h = sy[yb - 1] - y0 + 1, w = sx[xb - 1] - x0 + 1;
            hsize_t start[3] = {(hsize_t)z, (hsize_t)y0, (hsize_t)x0};
            hsize_t count[3] = {1, (hsize_t)h, (hsize_t)w};
            hid_t ms = H5Screate_simple(2, count + 1, NULL);
            st = H5Sselect_hyperslab(fs, H5S_SELECT_SET, start + 3 - rank, NULL, count + 3 - rank,
                                     NULL) < 0 ||
                 H5Dread(d, H5T_NATIVE_UINT32, ms, fs, H5P_DEFAULT, buf) < 0;
            H5Sclose(ms);
            for (int64_t i = ya; !st && i < yb; i++)
                for (int64_t j = xa; j < xb; j++)
                    lab[i * ox + j] = buf[(sy[i] - y0) * w + (sx[j] - x0)];
        }
    }
    H5Sclose(fs);
    free(buf);
    return st ? -1 : 0;
}

int cp_labels_open(const char *path, const char *purpose, cp_labels_in *li, char *err)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    li->f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (li->f < 0) return cp_errf(err, CP_EIO, "%s: cannot open %s", path, purpose);
    li->d = H5Dopen2(li->f, "labels", H5P_DEFAULT);
    hid_t s = li->d < 0 ? -1 : H5Dget_space(li->d);
    li->rank = s < 0 ? 0 : H5Sget_simple_extent_ndims(s);
    hsize_t dims[3] = {0, 0, 0};
    if (li->rank == 2 || li->rank == 3) H5Sget_simple_extent_dims(s, dims, NULL);
    if (s >= 0) H5Sclose(s);
    if (li->rank != 2 && li->rank != 3) {
        if (li->d >= 0) H5Dclose(li->d);
        H5Fclose(li->f);
        return cp_errf(err, CP_EFORMAT, "%s: no 2-D or 3-D /labels %s", path, purpose);
    }
    li->nz = li->rank == 3 ? (int64_t)dims[0] : 1;
    li->ny = (int64_t)dims[li->rank - 2];
    li->nx = (int64_t)dims[li->rank - 1];
    return 0;
}

void cp_labels_close(cp_labels_in *li)
{
    H5Dclose(li->d);
    H5Fclose(li->f);
}
