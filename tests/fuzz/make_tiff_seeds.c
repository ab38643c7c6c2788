/* Seed TIFFs for fuzz_tiff, written with libtiff (tifffile without imagecodecs cannot write LZW or
 * PackBits): small images in every layout src/tiff_io.c reads. Usage: make_tiff_seeds DIR.
 * Each file is a few hundred bytes, so that the fuzzer's mutations land in headers and codecs. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tiffio.h>

typedef struct layout {
    const char *name;
    int bits, fmt, spp, planar, tiled, big, pages;
    int comp;
    uint32_t ny, nx, rps; /* rps: rows per strip (strips) */
} layout;

static int write_one(const char *dir, const layout *l)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s.tif", dir, l->name);
    TIFF *t = TIFFOpen(path, l->big ? "w8" : "w");
    if (!t) return -1;
    int bytes = l->bits / 8;
    for (int p = 0; p < l->pages; p++) {
        TIFFSetField(t, TIFFTAG_IMAGEWIDTH, l->nx);
        TIFFSetField(t, TIFFTAG_IMAGELENGTH, l->ny);
        TIFFSetField(t, TIFFTAG_BITSPERSAMPLE, l->bits);
        TIFFSetField(t, TIFFTAG_SAMPLEFORMAT, l->fmt);
        TIFFSetField(t, TIFFTAG_SAMPLESPERPIXEL, l->spp);
        TIFFSetField(t, TIFFTAG_PLANARCONFIG, l->planar ? PLANARCONFIG_SEPARATE
                                                        : PLANARCONFIG_CONTIG);
        TIFFSetField(t, TIFFTAG_PHOTOMETRIC, l->spp == 3 && !l->planar ? PHOTOMETRIC_RGB
                                                                        : PHOTOMETRIC_MINISBLACK);
        if (l->spp == 2 || l->spp == 4) {
            uint16_t extra[3] = {EXTRASAMPLE_UNSPECIFIED, EXTRASAMPLE_UNSPECIFIED,
                                 EXTRASAMPLE_UNSPECIFIED};
            TIFFSetField(t, TIFFTAG_EXTRASAMPLES, l->spp - 1, extra);
        }
        TIFFSetField(t, TIFFTAG_COMPRESSION, l->comp);
        if (l->comp == COMPRESSION_LZW || l->comp == COMPRESSION_ADOBE_DEFLATE)
            TIFFSetField(t, TIFFTAG_PREDICTOR, l->fmt == SAMPLEFORMAT_IEEEFP ? 3 : 2);
        int planes = l->planar ? l->spp : 1, sppb = l->planar ? 1 : l->spp;
        if (l->tiled) {
            TIFFSetField(t, TIFFTAG_TILEWIDTH, 16);
            TIFFSetField(t, TIFFTAG_TILELENGTH, 16);
            tmsize_t ts = TIFFTileSize(t);
            unsigned char *buf = malloc((size_t)ts);
            for (int s = 0; s < planes; s++)
                for (uint32_t y = 0; y < l->ny; y += 16)
                    for (uint32_t x = 0; x < l->nx; x += 16) {
                        for (tmsize_t i = 0; i < ts; i++) buf[i] = (unsigned char)(i * 7 + x + y + s);
                        if (l->fmt == SAMPLEFORMAT_IEEEFP)
                            for (tmsize_t i = 0; i + 4 <= ts; i += 4) {
                                float f = (float)(i + y) * 0.25f;
                                memcpy(buf + i, &f, 4);
                            }
                        TIFFWriteEncodedTile(t, TIFFComputeTile(t, x, y, 0, (uint16_t)s), buf, ts);
                    }
            free(buf);
        } else {
            TIFFSetField(t, TIFFTAG_ROWSPERSTRIP, l->rps);
            tmsize_t row = (tmsize_t)l->nx * sppb * bytes;
            unsigned char *buf = malloc((size_t)(row * l->rps));
            for (int s = 0; s < planes; s++)
                for (uint32_t y = 0; y < l->ny; y += l->rps) {
                    uint32_t rows = y + l->rps <= l->ny ? l->rps : l->ny - y;
                    for (tmsize_t i = 0; i < row * rows; i++) buf[i] = (unsigned char)(i * 3 + y + p + s);
                    if (l->fmt == SAMPLEFORMAT_IEEEFP)
                        for (tmsize_t i = 0; i + 4 <= row * rows; i += 4) {
                            float f = (float)(i % 97) - 20.5f;
                            memcpy(buf + i, &f, 4);
                        }
                    TIFFWriteEncodedStrip(t, TIFFComputeStrip(t, y, (uint16_t)s), buf, row * rows);
                }
            free(buf);
        }
        if (!TIFFWriteDirectory(t)) {
            TIFFClose(t);
            return -1;
        }
    }
    TIFFClose(t);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    const int U = SAMPLEFORMAT_UINT, F = SAMPLEFORMAT_IEEEFP;
    const int NONE = COMPRESSION_NONE, LZW = COMPRESSION_LZW, ZIP = COMPRESSION_ADOBE_DEFLATE,
              PB = COMPRESSION_PACKBITS;
    const layout ls[] = {
        /* name                bits fmt spp pl ti big pg comp  ny  nx rps */
        {"u8_strips",             8, U, 1, 0, 0, 0, 1, NONE, 20, 24, 5},
        {"u8_one_strip_lzw",      8, U, 1, 0, 0, 0, 1, LZW, 20, 24, 20},
        {"u16_strips_deflate",   16, U, 1, 0, 0, 0, 1, ZIP, 21, 17, 4},
        {"u16_strips_packbits",  16, U, 1, 0, 0, 0, 1, PB, 19, 23, 3},
        {"u32_strips",           32, U, 1, 0, 0, 0, 1, NONE, 9, 11, 2},
        {"f32_strips_lzw",       32, F, 1, 0, 0, 0, 1, LZW, 12, 13, 4},
        {"f32_tiles_deflate",    32, F, 1, 0, 1, 0, 1, ZIP, 20, 35, 0},
        {"u8_tiles",              8, U, 1, 0, 1, 0, 1, NONE, 33, 17, 0},
        {"u16_tiles_lzw",        16, U, 1, 0, 1, 0, 1, LZW, 18, 18, 0},
        {"rgb_u8_contig",         8, U, 3, 0, 0, 0, 1, NONE, 10, 12, 3},
        {"rgb_u8_planar_lzw",     8, U, 3, 1, 0, 0, 1, LZW, 10, 12, 4},
        {"u16_2ch_planar_tiles", 16, U, 2, 1, 1, 0, 1, ZIP, 20, 20, 0},
        {"u8_4ch_contig_pb",      8, U, 4, 0, 0, 0, 1, PB, 8, 9, 8},
        {"u8_3pages",             8, U, 1, 0, 0, 0, 3, NONE, 12, 10, 4},
        {"u16_4pages_tiles",     16, U, 1, 0, 1, 0, 4, ZIP, 17, 16, 0},
        {"big_u8_strips",         8, U, 1, 0, 0, 1, 1, NONE, 20, 24, 6},
        {"big_f32_tiles_lzw",    32, F, 1, 0, 1, 1, 2, LZW, 16, 32, 0},
        {"big_u16_2ch_planar",   16, U, 2, 1, 0, 1, 1, PB, 11, 13, 5},
    };
    int bad = 0;
    for (size_t k = 0; k < sizeof ls / sizeof ls[0]; k++)
        if (write_one(argv[1], &ls[k])) {
            fprintf(stderr, "make_tiff_seeds: cannot write %s\n", ls[k].name);
            bad = 1;
        }
    return bad;
}
