/* Windows of an input image for every driver: any rectangle of any plane, read from the
 * TIFF through the layout Cellpose's rules decided, reduced to the network's two channels
 * (CELLPOSE_ALGORITHM.md §2.1). Non-finite pixels are refused. A rank reads exactly the windows
 * it needs, so no rank ever holds the whole image. */
#ifndef CP_IMAGE_H
#define CP_IMAGE_H

#include <stdint.h>

#include "prep.h"
#include "tiff_io.h"

typedef struct cp_image {
    const char *path;
    cp_tiff *tif;
    cp_tiff_info info;
    cp_layout layout;
    int chan, chan2;
    float *page;          /* scratch: one page window */
    int64_t page_cap;
} cp_image;

/* Opens path and decides its layout (z_axis/channel_axis -1 = automatic). */
int cp_image_open(cp_image *im, const char *path, int z_axis, int channel_axis, int stitch,
                   int chan, int chan2, char *err);
void cp_image_close(cp_image *im);

/* Rows [y0, y0+ny) x columns [x0, x0+nx) of plane z as x2 (ny, nx, 2) interleaved. */
int cp_image_read(cp_image *im, int64_t z, int64_t y0, int64_t x0, int64_t ny, int64_t nx,
                   float *x2, char *err);

#endif
