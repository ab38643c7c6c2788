/* TIFF input/output through libtiff (contract in tiff_io.h): opening and validating every page,
 * the tifffile-compatible array shape (ImageJ hyperstack and tifffile JSON metadata), windowed
 * reads that decode only the strips/tiles a window touches, and atomic deflate writers.
 * libtiff reports through per-open handlers into the open file's message buffer: it never prints
 * and no global state is touched. */
#include "tiff_io.h"

#include "cp_err.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <tiffio.h>
#include <unistd.h>

/* Largest page we accept (ny * nx * spp * bytes): anything above is a corrupt or hostile header. */
#define CP_TIFF_MAX_PAGE_BYTES ((uint64_t)1 << 40)

/* libtiff's first error since the last reset, its first warning that we treat as an error (see
 * warning_is_harmful), and the file they concern. */
typedef struct tiff_msg {
    const char *path;
    char text[256];
    char warning[256];
} tiff_msg;

struct cp_tiff {
    TIFF *tif;
    char *path;
    tiff_msg msg;
    cp_tiff_info info;
    int bytes;         /* bytes per sample */
    int64_t page;      /* page whose directory libtiff has loaded */
    int tiled, planar; /* layout of that page (pages may differ in layout, not in content) */
    int64_t bw, bh;    /* its block (tile, or strip of full width) size in pixels */
    unsigned char *buf; /* scratch: one decoded block */
    size_t bufsize;
    int64_t buf_page, buf_block; /* the block buf holds, -1 if none */
};

static const char *dtype_name(cp_dtype d)
{
    static const char *names[] = {"uint8", "uint16", "uint32", "float32"};
    return names[d];
}

/* libtiff's message as "module: text", without a repeated file name. */
static void format_msg(const tiff_msg *m, char *out, size_t n, const char *module,
                       const char *fmt, va_list ap)
{
    char body[200];
    vsnprintf(body, sizeof body, fmt, ap);
    const char *b = body;
    size_t lp = strlen(m->path);
    if (strncmp(b, m->path, lp) == 0 && b[lp] == ':') b += lp + 1 + (b[lp + 1] == ' ');
    if (module && strcmp(module, m->path) != 0)
        snprintf(out, n, "%s: %s", module, b);
    else
        snprintf(out, n, "%s", b);
}

/* Keeps libtiff's first message and stops libtiff from passing it on to its default stderr
 * handler. */
static int on_tiff_error(TIFF *tif, void *user, const char *module, const char *fmt, va_list ap)
{
    (void)tif;
    tiff_msg *m = user;
    if (!m->text[0]) format_msg(m, m->text, sizeof m->text, module, fmt, ap);
    return 1;
}

/* Whether a libtiff warning means that pixels would be missing or read other than the file means
 * them. libtiff warns and goes on where a strict reader would stop: a strip table shorter than the
 * image is padded with zeros, a bad StripByteCounts is replaced by a guess, a tag with a bad count
 * or type is dropped (and its default used), a packbits or LZW stream is cut short. Each of those
 * gives garbage or zero pixels with no error, so every warning is an error except:
 * - a problem with a tag that does not shape the pixels (resolution, software, colormap, private
 *   tags): libtiff names the tag in quotes, and only the tags below matter to what we read;
 * - warnings about metadata we never use: unknown (private) tags such as ImageJ's and
 *   microscope vendors', ASCII values not ending in NUL (the text is kept whole), tags out of
 *   order (libtiff sorts them), ExtraSamples not matching Photometric (we read every sample as
 *   stored), SMin/SMaxSampleValue or TransferFunction cancelled, ColorMap or TransferFunction
 *   ignored;
 * - forms libtiff decodes correctly: tiles not a multiple of 16, old-style LZW codes. */
static int warning_is_harmful(const char *text)
{
    static const char *const pixel_tags[] = {
        "ImageWidth", "ImageLength", "BitsPerSample", "Compression", "PhotometricInterpretation",
        "FillOrder", "StripOffsets", "SamplesPerPixel", "RowsPerStrip", "StripByteCounts",
        "PlanarConfiguration", "Predictor", "TileWidth", "TileLength", "TileOffsets",
        "TileByteCounts", "SampleFormat", "ImageDepth", "TileDepth", "JPEGTables",
        "ImageDescription", /* the shape of the series (ImageJ, tifffile metadata) */
        NULL};
    static const char *const harmless[] = {
        "does not end in null byte", "Unknown field with tag", "Registering anonymous field",
        "tags are not sorted in ascending order", "color channels and ExtraSamples",
        "Canceling it", "Ignoring ColorMap", "Ignoring TransferFunction", "Nonstandard tile",
        "Old-style LZW codes", NULL};
    for (int k = 0; harmless[k]; k++)
        if (strstr(text, harmless[k])) return 0;
    const char *q = strchr(text, '"'), *e = q ? strchr(q + 1, '"') : NULL;
    if (e) { /* a problem with the tag named in quotes */
        for (int k = 0; pixel_tags[k]; k++)
            if (strlen(pixel_tags[k]) == (size_t)(e - q - 1) &&
                !strncmp(q + 1, pixel_tags[k], (size_t)(e - q - 1)))
                return 1;
        return 0;
    }
    return 1;
}

/* Keeps libtiff's first harmful warning (the reader turns it into an error); the others are
 * dropped. */
static int on_tiff_warning(TIFF *tif, void *user, const char *module, const char *fmt, va_list ap)
{
    (void)tif;
    tiff_msg *m = user;
    char text[256];
    if (m->warning[0]) return 1;
    format_msg(m, text, sizeof text, module, fmt, ap);
    if (warning_is_harmful(text)) memcpy(m->warning, text, sizeof text);
    return 1;
}

/* An error "path: page P: damaged or truncated file (libtiff: <warning>)" if libtiff warned of
 * missing or misread pixels since the file was opened (the warning is kept: the file stays
 * unusable). */
static int check_warning(const cp_tiff *t, int64_t page, char *err)
{
    if (!t->msg.warning[0]) return 0;
    return cp_errf(err, CP_EFORMAT, "%s: page %lld: damaged or truncated file (libtiff: %s)",
                   t->path, (long long)page, t->msg.warning);
}

/* TIFFFdOpenExt with our handlers; the caller keeps fd if this fails. */
static TIFF *fd_open(int fd, const char *path, const char *mode, tiff_msg *m)
{
    TIFFOpenOptions *o = TIFFOpenOptionsAlloc();
    if (!o) return NULL;
    TIFFOpenOptionsSetErrorHandlerExtR(o, on_tiff_error, m);
    TIFFOpenOptionsSetWarningHandlerExtR(o, on_tiff_warning, m);
    TIFF *tif = TIFFFdOpenExt(fd, path, mode, o);
    TIFFOpenOptionsFree(o);
    return tif;
}

/* " (libtiff: ...)" when libtiff said something, else "". */
static const char *why(const tiff_msg *m, char *buf, size_t n)
{
    if (!m->text[0]) return "";
    snprintf(buf, n, " (libtiff: %s)", m->text);
    return buf;
}

/* The content of the current directory: size, sample type and count, checked against what we
 * support. Returns 0 or an error naming page p. */
static int page_content(cp_tiff *t, int64_t p, int64_t *ny, int64_t *nx, int *spp, cp_dtype *dt,
                        char *err)
{
    TIFF *tif = t->tif;
    uint32_t w = 0, h = 0;
    uint16_t s = 1, bits = 1, fmt = SAMPLEFORMAT_UINT, comp = COMPRESSION_NONE, photo = 0;
    if (!TIFFGetField(tif, TIFFTAG_IMAGEWIDTH, &w) || !TIFFGetField(tif, TIFFTAG_IMAGELENGTH, &h))
        return cp_errf(err, CP_EFORMAT, "%s: page %lld: no ImageWidth/ImageLength", t->path,
                       (long long)p);
    TIFFGetFieldDefaulted(tif, TIFFTAG_SAMPLESPERPIXEL, &s);
    TIFFGetFieldDefaulted(tif, TIFFTAG_BITSPERSAMPLE, &bits);
    TIFFGetFieldDefaulted(tif, TIFFTAG_SAMPLEFORMAT, &fmt);
    TIFFGetFieldDefaulted(tif, TIFFTAG_COMPRESSION, &comp);
    TIFFGetField(tif, TIFFTAG_PHOTOMETRIC, &photo);
    static const char *fmt_names[] = {"?", "unsigned integer", "signed integer", "float",
                                      "untyped", "complex integer", "complex float"};
    if (fmt == SAMPLEFORMAT_UINT && (bits == 8 || bits == 16 || bits == 32))
        *dt = bits == 8 ? CP_U8 : bits == 16 ? CP_U16 : CP_U32;
    else if (fmt == SAMPLEFORMAT_IEEEFP && bits == 32)
        *dt = CP_F32;
    else
        return cp_errf(err, CP_EUNSUPPORTED,
                       "%s: page %lld: unsupported SampleFormat %u (%s) with BitsPerSample %u; "
                       "supported: uint8, uint16, uint32, float32",
                       t->path, (long long)p, fmt, fmt < 7 ? fmt_names[fmt] : "unknown", bits);
    if (s < 1 || s > 4)
        return cp_errf(err, CP_EUNSUPPORTED,
                       "%s: page %lld: unsupported SamplesPerPixel %u; supported: 1 to 4",
                       t->path, (long long)p, s);
    if (photo == PHOTOMETRIC_YCBCR)
        return cp_errf(err, CP_EUNSUPPORTED, "%s: page %lld: unsupported Photometric YCbCr",
                       t->path, (long long)p);
    if (!TIFFIsCODECConfigured(comp))
        return cp_errf(err, CP_EUNSUPPORTED,
                       "%s: page %lld: unsupported Compression %u (no codec in this libtiff)",
                       t->path, (long long)p, comp);
    if (w == 0 || h == 0)
        return cp_errf(err, CP_EFORMAT, "%s: page %lld: zero-sized page (%u x %u pixels)",
                       t->path, (long long)p, h, w);
    /* h * w < 2^64 always; the product with s * bytes (<= 16) is compared without overflow */
    uint64_t px = (uint64_t)h * w;
    if (px > CP_TIFF_MAX_PAGE_BYTES / ((uint64_t)s * (bits / 8)))
        return cp_errf(err, CP_EFORMAT,
                       "%s: page %lld: absurd size %u x %u x %u samples of %u bits "
                       "(over 2^40 bytes)",
                       t->path, (long long)p, h, w, s, bits);
    *ny = h, *nx = w, *spp = s;
    return 0;
}

/* Loads directory `page` (if not loaded) and its block layout. */
static int select_page(cp_tiff *t, int64_t page, char *err)
{
    char b[300];
    if (t->page == page) return 0;
    t->msg.text[0] = 0;
    t->page = -1;
    if (!TIFFSetDirectory(t->tif, (tdir_t)page))
        return cp_errf(err, CP_EFORMAT, "%s: page %lld: cannot read its directory%s", t->path,
                       (long long)page, why(&t->msg, b, sizeof b));
    int rc = check_warning(t, page, err);
    if (rc) return rc;
    uint16_t planar = PLANARCONFIG_CONTIG;
    TIFFGetFieldDefaulted(t->tif, TIFFTAG_PLANARCONFIG, &planar);
    t->planar = planar == PLANARCONFIG_SEPARATE && t->info.spp > 1;
    t->tiled = TIFFIsTiled(t->tif);
    uint32_t bw = 0, bh = 0;
    if (t->tiled) {
        TIFFGetField(t->tif, TIFFTAG_TILEWIDTH, &bw);
        TIFFGetField(t->tif, TIFFTAG_TILELENGTH, &bh);
    } else {
        bw = (uint32_t)t->info.nx;
        TIFFGetFieldDefaulted(t->tif, TIFFTAG_ROWSPERSTRIP, &bh);
        if (bh > t->info.ny) bh = (uint32_t)t->info.ny;
    }
    /* libtiff's size of one block (one sample plane when planar), computed without overflow */
    uint64_t need = t->tiled ? TIFFTileSize64(t->tif) : TIFFStripSize64(t->tif);
    if (bw == 0 || bh == 0 || need == 0 || need > CP_TIFF_MAX_PAGE_BYTES)
        return cp_errf(err, CP_EFORMAT, "%s: page %lld: unusable %s size %u x %u%s", t->path,
                       (long long)page, t->tiled ? "tile" : "strip", bh, bw,
                       why(&t->msg, b, sizeof b));
    /* A strip is at most the page; a tile may overhang the page (a 512² tile on a 100² image)
     * but not by more than that: a tile over twice the page and over 64 MiB is a corrupt or
     * hostile header, refused before its buffer is allocated. */
    uint64_t page_bytes = (uint64_t)t->info.ny * (uint64_t)t->info.nx * (uint64_t)t->info.spp *
                          (uint64_t)t->bytes;
    if (t->tiled && need > 2 * page_bytes && need > ((uint64_t)1 << 26))
        return cp_errf(err, CP_EFORMAT,
                       "%s: page %lld: a tile of %u x %u pixels (%llu bytes) for a page of "
                       "%lld x %lld (%llu bytes): corrupt TileWidth/TileLength",
                       t->path, (long long)page, bh, bw, (unsigned long long)need,
                       (long long)t->info.ny, (long long)t->info.nx,
                       (unsigned long long)page_bytes);
    if (need > t->bufsize) {
        unsigned char *nb = realloc(t->buf, (size_t)need);
        if (!nb)
            return cp_errf(err, CP_ENOMEM, "%s: page %lld: one %s of %u x %u pixels (%.1f MiB "
                           "decoded) does not fit in memory", t->path, (long long)page,
                           t->tiled ? "tile" : "strip", bh, bw,
                           (double)need / (1024.0 * 1024));
        t->buf = nb, t->bufsize = (size_t)need;
    }
    t->bw = bw, t->bh = bh;
    t->buf_block = -1;
    t->page = page;
    return 0;
}

/* Parses ImageJ's "key=value" lines: images, channels, slices, frames (1 when absent). Returns 0
 * when a count is below 1 (tifffile then ignores the metadata, and so do we). */
static int imagej_counts(const char *desc, int64_t *images, int64_t *channels, int64_t *slices,
                         int64_t *frames)
{
    static const char *keys[] = {"images=", "channels=", "slices=", "frames="};
    int64_t *vals[] = {images, channels, slices, frames};
    for (int k = 0; k < 4; k++) *vals[k] = 1;
    for (const char *line = desc; line && *line;) {
        for (int k = 0; k < 4; k++)
            if (strncmp(line, keys[k], strlen(keys[k])) == 0)
                *vals[k] = strtoll(line + strlen(keys[k]), NULL, 10);
        line = strchr(line, '\n');
        if (line) line++;
    }
    for (int k = 0; k < 4; k++)
        if (*vals[k] < 1) return 0;
    return 1;
}

/* tifffile's leading JSON '{"shape": [a, b, ...]' (exactly as tifffile writes it); returns the
 * number of dims (0 if absent or over 6). */
static int tifffile_shape(const char *desc, int64_t shape[6])
{
    static const char head[] = "{\"shape\": [";
    if (strncmp(desc, head, sizeof head - 1) != 0) return 0;
    const char *s = desc + sizeof head - 1;
    int n = 0;
    while (n < 6) {
        char *end;
        long long v = strtoll(s, &end, 10);
        if (end == s || v < 1) return 0;
        shape[n++] = v;
        s = end;
        if (*s == ']') return n;
        if (*s != ',') return 0;
        s++;
    }
    return 0;
}

/* Sets info->ndim/shape to leading dims `lead` (size-1 ones dropped if squeeze) then (Y, X[, S]),
 * and info->npages to their product, which must not exceed the file's pages. */
static int set_shape(cp_tiff *t, const int64_t *lead, int nlead, int squeeze, int64_t file_pages,
                     const char *source, char *err)
{
    cp_tiff_info *in = &t->info;
    int64_t pages = 1;
    in->ndim = 0;
    int over = 0; /* the product does not fit: more pages than any file has */
    for (int i = 0; i < nlead; i++) {
        over |= __builtin_mul_overflow(pages, lead[i], &pages);
        if (lead[i] != 1 || !squeeze) in->shape[in->ndim++] = lead[i];
    }
    if (over)
        return cp_errf(err, CP_EUNSUPPORTED,
                       "%s: %s metadata declares more than 2^63 pages but the file has %lld",
                       t->path, source, (long long)file_pages);
    if (pages > file_pages)
        return cp_errf(err, CP_EUNSUPPORTED,
                       "%s: %s metadata declares %lld pages but the file has %lld (data stored "
                       "after the first page is not supported)",
                       t->path, source, (long long)pages, (long long)file_pages);
    in->shape[in->ndim++] = in->ny;
    in->shape[in->ndim++] = in->nx;
    if (in->spp > 1) in->shape[in->ndim++] = in->spp;
    in->npages = pages;
    return 0;
}

/* The array shape tifffile.imread gives (series 0), from page 0's ImageDescription:
 * - tifffile's JSON {"shape": [...]}: used as is (tifffile does not squeeze it) when it ends with
 *   (Y, X), or (Y, X, S) with samples; its leading dims count the pages of the series;
 * - ImageJ's images/channels/slices/frames: (I, T, Z, C), size-1 axes dropped, with tifffile's
 *   reading of the counts (channels that are really the samples are folded into S);
 * - else (P, Y, X[, S]), or (Y, X[, S]) for one page.
 * The series may use fewer pages than the file has (a multi-series file), never more: a series
 * whose data follows the first page without IFDs (ImageJ > 4 GiB, tifffile "contiguous") is
 * refused. Deviation: tifffile puts the samples of a planar (separate) page first, (S, Y, X);
 * we keep them last like every other layout, since the reads return interleaved samples. */
static int series_shape(cp_tiff *t, int64_t file_pages, char *err)
{
    cp_tiff_info *in = &t->info;
    char *desc = NULL;
    if (!TIFFGetField(t->tif, TIFFTAG_IMAGEDESCRIPTION, &desc) || !desc) desc = "";
    int64_t js[6];
    int nj = tifffile_shape(desc, js);
    int tail = in->spp > 1 ? 3 : 2;
    if (nj >= tail && js[nj - tail] == in->ny && js[nj - tail + 1] == in->nx &&
        (in->spp == 1 || js[nj - 1] == in->spp))
        return set_shape(t, js, nj - tail, 0, file_pages, "tifffile", err);
    int64_t images, channels, slices, frames;
    if (strncmp(desc, "ImageJ=", 7) == 0 &&
        imagej_counts(desc, &images, &channels, &slices, &frames)) {
        uint16_t planar = PLANARCONFIG_CONTIG;
        TIFFGetFieldDefaulted(t->tif, TIFFTAG_PLANARCONFIG, &planar);
        /* frames * slices * channels overflowing is more pages than any file has */
        int64_t fs, fsc;
        if (__builtin_mul_overflow(frames, slices, &fs) ||
            __builtin_mul_overflow(fs, channels, &fsc))
            return cp_errf(err, CP_EUNSUPPORTED,
                           "%s: ImageJ metadata declares %lld frames x %lld slices x %lld channels "
                           "(more than 2^63) but the file has %lld pages",
                           t->path, (long long)frames, (long long)slices, (long long)channels,
                           (long long)file_pages);
        /* tifffile's reading of the counts ("images" is not reliable) */
        if (channels == 1 || (planar == PLANARCONFIG_SEPARATE && channels == in->spp))
            images = fs, channels = 1; /* planar: the channels are our samples */
        else if (images == fs && channels == in->spp)
            channels = 1; /* RGB samples declared as channels */
        else
            images = fsc;
        if (images == 1 && file_pages > 1) images = file_pages;
        int64_t tzc = fs * channels;
        int64_t lead[4] = {images > tzc ? images / tzc : 1, frames, slices, channels};
        return set_shape(t, lead, 4, 1, file_pages, "ImageJ", err);
    }
    return set_shape(t, &file_pages, 1, 1, file_pages, "page", err);
}

/* Checks pages 1 .. npages-1 (read in sequence) against page 0. */
static int check_pages(cp_tiff *t, char *err)
{
    const cp_tiff_info *in = &t->info;
    char b[300];
    for (int64_t p = 1; p < in->npages; p++) {
        t->msg.text[0] = 0;
        if (!TIFFReadDirectory(t->tif))
            return cp_errf(err, CP_EFORMAT, "%s: page %lld: cannot read its directory%s",
                           t->path, (long long)p, why(&t->msg, b, sizeof b));
        t->page = p;
        int64_t ny, nx;
        int spp;
        cp_dtype dt;
        int rc = check_warning(t, p, err);
        if (!rc) rc = page_content(t, p, &ny, &nx, &spp, &dt, err);
        if (rc) return rc;
        if (ny != in->ny || nx != in->nx || spp != in->spp || dt != in->dtype)
            return cp_errf(err, CP_EFORMAT,
                           "%s: page %lld is %lld x %lld x %d %s but page 0 is %lld x %lld x %d "
                           "%s: every page must have the same size and type",
                           t->path, (long long)p, (long long)ny, (long long)nx, spp,
                           dtype_name(dt), (long long)in->ny, (long long)in->nx, in->spp,
                           dtype_name(in->dtype));
    }
    return 0;
}

int cp_tiff_open(const char *path, cp_tiff **out, cp_tiff_info *info, char *err)
{
    char b[300];
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return cp_errf(err, CP_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) == 0 && (S_ISDIR(st.st_mode) || (S_ISREG(st.st_mode) && st.st_size == 0))) {
        close(fd);
        return cp_errf(err, CP_EFORMAT, "%s: %s, not a TIFF", path,
                       S_ISDIR(st.st_mode) ? "a directory" : "empty file (0 bytes)");
    }
    cp_tiff *t = calloc(1, sizeof *t);
    char *pcopy = strdup(path);
    if (!t || !pcopy) {
        close(fd);
        free(t);
        free(pcopy);
        return cp_errf(err, CP_ENOMEM, "%s: out of memory", path);
    }
    t->path = pcopy;
    t->msg.path = t->path;
    t->page = t->buf_page = t->buf_block = -1;
    /* "m": no memory mapping, so a file shrinking under us is a read error, not SIGBUS */
    t->tif = fd_open(fd, path, "rm", &t->msg);
    if (!t->tif) {
        close(fd);
        int rc = cp_errf(err, CP_EFORMAT, "%s: not a readable TIFF%s", path,
                         why(&t->msg, b, sizeof b));
        cp_tiff_close(t);
        return rc;
    }
    t->msg.text[0] = 0;
    int64_t file_pages = TIFFNumberOfDirectories(t->tif);
    int rc = 0;
    if (t->msg.text[0])
        rc = cp_errf(err, CP_EFORMAT, "%s: corrupt chain of pages (after %lld)%s", path,
                     (long long)file_pages, why(&t->msg, b, sizeof b));
    t->page = 0;
    if (!rc) rc = page_content(t, 0, &t->info.ny, &t->info.nx, &t->info.spp, &t->info.dtype, err);
    if (!rc) rc = check_warning(t, 0, err); /* from page 0's directory, read by the open */
    if (!rc) {
        t->bytes = t->info.dtype == CP_U8 ? 1 : t->info.dtype == CP_U16 ? 2 : 4;
        rc = series_shape(t, file_pages, err);
    }
    if (!rc) rc = check_pages(t, err);
    if (rc) {
        cp_tiff_close(t);
        return rc;
    }
    t->page = -1; /* the block layout is loaded on first read */
    *info = t->info;
    *out = t;
    return 0;
}

/* Converts n samples (contiguous in src, dtype dt) to out[i * stride] as float32 or uint32. */
static void convert_run(const unsigned char *src, cp_dtype dt, int64_t n, int64_t stride,
                        float *of, uint32_t *ou)
{
    for (int64_t i = 0; i < n; i++) {
        uint32_t u;
        if (dt == CP_U8) {
            u = src[i];
        } else if (dt == CP_U16) {
            uint16_t v;
            memcpy(&v, src + 2 * i, 2);
            u = v;
        } else if (dt == CP_U32) {
            memcpy(&u, src + 4 * i, 4);
        } else {
            memcpy(&of[i * stride], src + 4 * i, 4);
            continue;
        }
        if (ou)
            ou[i * stride] = u;
        else
            of[i * stride] = (float)u;
    }
}

/* Decodes block `block` of the current page (rows [r0, r1) of the image) into t->buf. */
static int load_block(cp_tiff *t, uint32_t block, int64_t r0, int64_t r1, int64_t c0, int64_t c1,
                      char *err)
{
    char b[300];
    if (t->buf_page == t->page && t->buf_block == block) return 0;
    t->buf_block = -1;
    t->msg.text[0] = 0;
    int64_t rows = t->tiled ? t->bh : r1 - r0;
    tmsize_t need = (tmsize_t)(rows * t->bw * (t->planar ? 1 : t->info.spp) * t->bytes);
    tmsize_t got = t->tiled ? TIFFReadEncodedTile(t->tif, block, t->buf, need)
                            : TIFFReadEncodedStrip(t->tif, block, t->buf, need);
    int rc = check_warning(t, t->page, err);
    if (rc) return rc;
    if (got != need) {
        if (t->tiled)
            return cp_errf(err, CP_EFORMAT,
                           "%s: page %lld: rows %lld-%lld, columns %lld-%lld (tile %u): "
                           "truncated or corrupt data%s",
                           t->path, (long long)t->page, (long long)r0, (long long)r1 - 1,
                           (long long)c0, (long long)c1 - 1, block, why(&t->msg, b, sizeof b));
        return cp_errf(err, CP_EFORMAT,
                       "%s: page %lld: rows %lld-%lld (strip %u): truncated or corrupt data%s",
                       t->path, (long long)t->page, (long long)r0, (long long)r1 - 1, block,
                       why(&t->msg, b, sizeof b));
    }
    t->buf_page = t->page, t->buf_block = block;
    return 0;
}

/* The window reader behind cp_tiff_read_f32/u32 (exactly one of of, ou is non-NULL): visits the
 * blocks (tiles, or strips for each sample plane) that intersect the window, each decoded once. */
static int read_window(cp_tiff *t, int64_t page, int64_t y0, int64_t x0, int64_t ny, int64_t nx,
                       float *of, uint32_t *ou, char *err)
{
    const cp_tiff_info *in = &t->info;
    if (page < 0 || page >= in->npages || y0 < 0 || x0 < 0 || ny < 0 || nx < 0 ||
        y0 + ny > in->ny || x0 + nx > in->nx)
        return cp_errf(err, CP_EPARAM,
                       "%s: window page %lld rows %lld+%lld columns %lld+%lld is outside the "
                       "%lld pages of %lld x %lld",
                       t->path, (long long)page, (long long)y0, (long long)ny, (long long)x0,
                       (long long)nx, (long long)in->npages, (long long)in->ny,
                       (long long)in->nx);
    if (ou && in->dtype == CP_F32)
        return cp_errf(err, CP_EUNSUPPORTED, "%s: float32 data where integer labels are expected",
                       t->path);
    if (ny == 0 || nx == 0) return 0;
    int rc = select_page(t, page, err);
    if (rc) return rc;
    int spp = in->spp, planes = t->planar ? spp : 1, sppb = t->planar ? 1 : spp;
    for (int64_t by0 = y0 / t->bh * t->bh; by0 < y0 + ny; by0 += t->bh) {
        int64_t by1 = by0 + t->bh < in->ny ? by0 + t->bh : in->ny;
        int64_t r0 = by0 > y0 ? by0 : y0, r1 = by1 < y0 + ny ? by1 : y0 + ny;
        for (int64_t bx0 = x0 / t->bw * t->bw; bx0 < x0 + nx; bx0 += t->bw) {
            int64_t bx1 = bx0 + t->bw < in->nx ? bx0 + t->bw : in->nx;
            int64_t c0 = bx0 > x0 ? bx0 : x0, c1 = bx1 < x0 + nx ? bx1 : x0 + nx;
            for (int s = 0; s < planes; s++) {
                uint32_t block = t->tiled ? TIFFComputeTile(t->tif, (uint32_t)bx0, (uint32_t)by0,
                                                            0, (uint16_t)s)
                                          : TIFFComputeStrip(t->tif, (uint32_t)by0, (uint16_t)s);
                rc = load_block(t, block, by0, by1, bx0, bx1, err);
                if (rc) return rc;
                for (int64_t r = r0; r < r1; r++) {
                    const unsigned char *src =
                        t->buf + ((r - by0) * t->bw + (c0 - bx0)) * sppb * t->bytes;
                    int64_t at = ((r - y0) * nx + (c0 - x0)) * spp + s;
                    convert_run(src, in->dtype, (c1 - c0) * sppb, planes, of ? of + at : NULL,
                                ou ? ou + at : NULL);
                }
            }
        }
    }
    return 0;
}

int cp_tiff_read_f32(cp_tiff *t, int64_t page, int64_t y0, int64_t x0, int64_t ny, int64_t nx,
                     float *out, char *err)
{
    return read_window(t, page, y0, x0, ny, nx, out, NULL, err);
}

int cp_tiff_read_u32(cp_tiff *t, int64_t page, int64_t y0, int64_t x0, int64_t ny, int64_t nx,
                     uint32_t *out, char *err)
{
    return read_window(t, page, y0, x0, ny, nx, NULL, out, err);
}

void cp_tiff_close(cp_tiff *t)
{
    if (!t) return;
    if (t->tif) TIFFClose(t->tif);
    free(t->buf);
    free(t->path);
    free(t);
}

/* Writes the nz pages given by page (4-byte samples: uint32 or float32) to path.partial with
 * deflate, flushes it to disk and renames it to path; the partial file is removed on any
 * failure. */
static int write_pages(const char *path, cp_tiff_page_fn page, void *arg, int64_t nz, int64_t ny,
                       int64_t nx, int is_float, char *err)
{
    char b[300];
    if (nz < 1 || ny < 1 || nx < 1 || ny > UINT32_MAX || nx > UINT32_MAX)
        return cp_errf(err, CP_EPARAM, "%s: cannot write %lld pages of %lld x %lld", path,
                       (long long)nz, (long long)ny, (long long)nx);
    size_t lp = strlen(path);
    char *partial = malloc(lp + sizeof ".partial");
    if (!partial) return cp_errf(err, CP_ENOMEM, "%s: out of memory", path);
    memcpy(partial, path, lp);
    memcpy(partial + lp, ".partial", sizeof ".partial");
    tiff_msg m = {.path = partial};
    int fd = open(partial, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0) {
        int rc = cp_errf(err, CP_EIO, "%s: cannot create %s: %s", path, partial, strerror(errno));
        free(partial);
        return rc;
    }
    /* classic TIFF holds 4 GiB; above 2 GiB of raw data, BigTIFF (deflate may not shrink it) */
    uint64_t raw = (uint64_t)nz * (uint64_t)ny * (uint64_t)nx * 4;
    TIFF *tif = fd_open(fd, partial, raw > ((uint64_t)1 << 31) ? "w8" : "w", &m);
    int rc = 0;
    if (!tif) {
        close(fd);
        rc = cp_errf(err, CP_EIO, "%s: cannot start a TIFF in %s%s", path, partial,
                     why(&m, b, sizeof b));
    }
    uint32_t rps = (uint32_t)(nx >= 65536 ? 1 : 65536 / nx);
    for (int64_t z = 0; z < nz && !rc; z++) {
        const void *v = page(arg, z, err);
        if (!v) {
            rc = CP_EIO;
            break;
        }
        TIFFSetField(tif, TIFFTAG_IMAGEWIDTH, (uint32_t)nx);
        TIFFSetField(tif, TIFFTAG_IMAGELENGTH, (uint32_t)ny);
        TIFFSetField(tif, TIFFTAG_SAMPLESPERPIXEL, 1);
        TIFFSetField(tif, TIFFTAG_BITSPERSAMPLE, 32);
        TIFFSetField(tif, TIFFTAG_SAMPLEFORMAT, is_float ? SAMPLEFORMAT_IEEEFP : SAMPLEFORMAT_UINT);
        TIFFSetField(tif, TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_MINISBLACK);
        TIFFSetField(tif, TIFFTAG_PLANARCONFIG, PLANARCONFIG_CONTIG);
        TIFFSetField(tif, TIFFTAG_COMPRESSION, COMPRESSION_ADOBE_DEFLATE);
        TIFFSetField(tif, TIFFTAG_ROWSPERSTRIP, rps);
        for (int64_t y = 0; y < ny && !rc; y += rps) {
            int64_t rows = y + rps <= ny ? rps : ny - y;
            const unsigned char *src = (const unsigned char *)v + y * nx * 4;
            if (TIFFWriteEncodedStrip(tif, (uint32_t)(y / rps), (void *)src,
                                      (tmsize_t)(rows * nx * 4)) < 0)
                rc = cp_errf(err, CP_EIO, "%s: page %lld: cannot write rows %lld-%lld%s", path,
                             (long long)z, (long long)y, (long long)(y + rows - 1),
                             why(&m, b, sizeof b));
        }
        if (!rc && !TIFFWriteDirectory(tif))
            rc = cp_errf(err, CP_EIO, "%s: page %lld: cannot write its directory%s", path,
                         (long long)z, why(&m, b, sizeof b));
    }
    if (tif) {
        if (!rc && (!TIFFFlush(tif) || fsync(TIFFFileno(tif)) != 0))
            rc = cp_errf(err, CP_EIO, "%s: cannot flush %s: %s", path, partial,
                         m.text[0] ? m.text : strerror(errno));
        TIFFClose(tif);
    }
    if (!rc && rename(partial, path) != 0)
        rc = cp_errf(err, CP_EIO, "%s: cannot rename %s to it: %s", path, partial,
                     strerror(errno));
    if (rc) unlink(partial);
    free(partial);
    return rc;
}

/* cp_tiff_page_fn over pages held in memory, 4 bytes a sample. */
typedef struct mem_pages {
    const unsigned char *v;
    int64_t page_bytes;
} mem_pages;

static const void *mem_page(void *arg, int64_t z, char *err)
{
    (void)err;
    const mem_pages *m = arg;
    return m->v + z * m->page_bytes;
}

int cp_tiff_write_u32(const char *path, const uint32_t *v, int64_t nz, int64_t ny, int64_t nx,
                      char *err)
{
    mem_pages m = {(const unsigned char *)v, ny * nx * 4};
    return write_pages(path, mem_page, &m, nz, ny, nx, 0, err);
}

int cp_tiff_write_f32(const char *path, const float *v, int64_t nz, int64_t ny, int64_t nx,
                      char *err)
{
    mem_pages m = {(const unsigned char *)v, ny * nx * 4};
    return write_pages(path, mem_page, &m, nz, ny, nx, 1, err);
}

int cp_tiff_write_u32_pages(const char *path, cp_tiff_page_fn page, void *arg, int64_t nz,
                            int64_t ny, int64_t nx, char *err)
{
    return write_pages(path, page, arg, nz, ny, nx, 0, err);
}
