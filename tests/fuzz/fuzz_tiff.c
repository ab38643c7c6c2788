/* Fuzz target: TIFF images through src/tiff_io.c (cp_tiff_open, then windowed reads of a few
 * pages as float32 and as uint32), the path every input image and --flows dP.tif takes. Strips,
 * tiles, planar and contiguous samples, BigTIFF and the codecs come from the seed corpus
 * (tests/fuzz/make_corpus.py). Pages over 4 Mi samples are read as windows only, pages over 64 Mi
 * samples are opened but not read: the reader allocates one whole block (a strip can be the whole
 * page) and its own limit is 2^40 bytes, far above libFuzzer's -malloc_limit_mb. */
#include <stdlib.h>
#include <unistd.h>

#include "cp_err.h"
#include "fuzz_common.h"
#include "tiff_io.h"

#define WHOLE_PAGE_MAX ((int64_t)1 << 22) /* samples of a page read whole */
#define READ_MAX ((int64_t)1 << 26)       /* samples of a page read at all (64 Mi) */
#define PAGES_MAX 3                       /* pages read per input */

/* Reads rows [y0, y0+ny) x [x0, x0+nx) of page p as float32, or uint32 when ints. */
static void read_window(cp_tiff *t, const cp_tiff_info *in, int64_t p, int64_t y0, int64_t x0,
                        int64_t ny, int64_t nx, int ints)
{
    char err[CP_ERR_LEN];
    void *buf = malloc((size_t)(ny * nx * in->spp) * 4 + 4);
    if (!buf) return;
    int rc = ints ? cp_tiff_read_u32(t, p, y0, x0, ny, nx, buf, err)
                  : cp_tiff_read_f32(t, p, y0, x0, ny, nx, buf, err);
    cp_fuzz_note("read", rc, err);
    free(buf);
}

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64], err[CP_ERR_LEN];
    int fd = cp_fuzz_file(data, size, path, sizeof path);
    if (fd < 0) return 0;
    cp_tiff *t = NULL;
    cp_tiff_info in;
    if (cp_fuzz_note("open", cp_tiff_open(path, &t, &in, err), err) == 0) {
        int ints = in.dtype != CP_F32;
        int64_t pages = in.ny * in.nx * in.spp <= READ_MAX ? in.npages : 0;
        for (int64_t p = 0; p < pages && p < PAGES_MAX; p++) {
            if (in.ny * in.nx * in.spp <= WHOLE_PAGE_MAX) {
                read_window(t, &in, p, 0, 0, in.ny, in.nx, ints && (p & 1));
            } else { /* corners and an odd window in the middle */
                int64_t h = min64(in.ny, 48), w = min64(in.nx, 48);
                read_window(t, &in, p, 0, 0, h, w, 0);
                read_window(t, &in, p, in.ny - h, in.nx - w, h, w, ints);
                read_window(t, &in, p, in.ny / 3, in.nx / 3, min64(in.ny - in.ny / 3, 17),
                            min64(in.nx - in.nx / 3, 33), 0);
            }
        }
        /* a window outside the image must be refused, not read */
        if (pages) read_window(t, &in, 0, in.ny - 1, 0, 2, 1, 0);
        cp_tiff_close(t);
    }
    close(fd);
    return 0;
}
