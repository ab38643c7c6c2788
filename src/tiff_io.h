/* TIFF images through libtiff: open any layout we support, read a window of one page as float32
 * (or uint32 for label images), write uint32 label volumes and float32 arrays atomically.
 * Supported: uint8/uint16/uint32/float32 samples, 1-4 samples per pixel (contiguous or planar),
 * many pages, strips and tiles, BigTIFF, none/LZW/deflate/packbits compression. */
#ifndef CP_TIFF_IO_H
#define CP_TIFF_IO_H

#include <stdint.h>

typedef enum cp_dtype { CP_U8, CP_U16, CP_U32, CP_F32 } cp_dtype;

typedef struct cp_tiff cp_tiff; /* an open file (opaque) */

typedef struct cp_tiff_info {
    int64_t npages;  /* pages (IFDs); every page has the same size, type and samples */
    int64_t ny, nx;  /* rows, columns of a page */
    int spp;         /* samples per pixel, 1..4 */
    cp_dtype dtype;
    /* The array shape tifffile.imread gives for this file (CELLPOSE_ALGORITHM.md §2.1 works on
     * it): (Y,X), (Y,X,S), (P,Y,X) or (P,Y,X,S); ImageJ hyperstack metadata (images=, channels=,
     * slices=, frames=) splits P into its axes in ImageJ's TZC order (size-1 axes dropped), and
     * tifffile's JSON ImageDescription {"shape": [...]} is used as written (e.g. (2,3,Y,X) for 6
     * pages). Samples are always last (tifffile gives (S,Y,X) for planar pages). npages is the
     * product of the leading dims: a multi-series file's later series are not part of it. */
    int ndim;
    int64_t shape[6];
} cp_tiff_info;

/* Opens path and checks every page (same size/type/spp, supported sample format).
 * Errors name the file and the problem: "x.tif: page 3: unsupported SampleFormat 3 with
 * BitsPerSample 16". A libtiff warning that means pixels would be missing or misread (a strip or
 * tile table of the wrong length, a bad byte count, a pixel-shaping tag dropped, a cut codec
 * stream) is an error here and in the reads: "x.tif: page 0: damaged or truncated file (libtiff:
 * TIFFFetchStripThing: Incorrect count for "StripOffsets"; tag ignored)"; warnings about metadata
 * we do not use (unknown private tags, ...) are ignored. */
int cp_tiff_open(const char *path, cp_tiff **out, cp_tiff_info *info, char *err);

/* Reads rows [y0, y0+ny) x columns [x0, x0+nx) of `page`, all samples, into out as float32
 * (ny, nx, spp) interleaved. Truncated/corrupt data is an error naming file, page and row. */
int cp_tiff_read_f32(cp_tiff *t, int64_t page, int64_t y0, int64_t x0, int64_t ny, int64_t nx,
                     float *out, char *err);
/* Same for integer images (label files), exact values; float files are an error. */
int cp_tiff_read_u32(cp_tiff *t, int64_t page, int64_t y0, int64_t x0, int64_t ny, int64_t nx,
                     uint32_t *out, char *err);

void cp_tiff_close(cp_tiff *t);

/* Writes nz pages of ny x nx (deflate) to path.partial, then renames it to path: a reader never
 * sees a half-written file under the final name. */
int cp_tiff_write_u32(const char *path, const uint32_t *v, int64_t nz, int64_t ny, int64_t nx,
                      char *err);
int cp_tiff_write_f32(const char *path, const float *v, int64_t nz, int64_t ny, int64_t nx,
                      char *err);

/* Page z (ny x nx samples of 4 bytes), valid until the next call; NULL on failure (err set). */
typedef const void *(*cp_tiff_page_fn)(void *arg, int64_t z, char *err);

/* cp_tiff_write_u32 with the pages given one at a time by page (memory: one page). */
int cp_tiff_write_u32_pages(const char *path, cp_tiff_page_fn page, void *arg, int64_t nz,
                            int64_t ny, int64_t nx, char *err);

#endif
