/* The --save_tif masks from a committed output (see masks_tif.h). */
#include "masks_tif.h"

#include <stdlib.h>

#include "cp_err.h"
#include "labels_in.h"
#include "tiff_io.h"

/* cp_tiff_page_fn: plane z of /labels, every row and column. */
typedef struct planes {
    const char *h5_path;
    cp_labels_in li;
    int64_t *rows, *cols;
    uint32_t *plane;
} planes;

static const void *read_plane(void *arg, int64_t z, char *err)
{
    planes *s = arg;
    if (cp_labels_read(&s->li, z, s->rows, s->li.ny, s->cols, s->li.nx, s->plane)) {
        cp_errf(err, CP_EIO, "%s: cannot read plane %lld of /labels for --save_tif", s->h5_path,
                (long long)z);
        return NULL;
    }
    return s->plane;
}

int cp_masks_tif_save(const char *h5_path, const char *tif, char *err)
{
    planes s = {.h5_path = h5_path};
    int rc = cp_labels_open(h5_path, "to write the --save_tif masks", &s.li, err);
    if (rc) return rc;
    const int64_t ny = s.li.ny, nx = s.li.nx;
    s.rows = malloc(sizeof *s.rows * (size_t)ny);
    s.cols = malloc(sizeof *s.cols * (size_t)nx);
    s.plane = malloc(sizeof *s.plane * (size_t)(ny * nx));
    if (!s.rows || !s.cols || !s.plane)
        rc = cp_errf(err, CP_ENOMEM, "%s: out of memory for a plane of %lldx%lld", tif,
                     (long long)ny, (long long)nx);
    for (int64_t i = 0; !rc && i < ny; i++) s.rows[i] = i;
    for (int64_t j = 0; !rc && j < nx; j++) s.cols[j] = j;
    if (!rc) rc = cp_tiff_write_u32_pages(tif, read_plane, &s, s.li.nz, ny, nx, err);
    cp_labels_close(&s.li);
    free(s.rows);
    free(s.cols);
    free(s.plane);
    return rc;
}
