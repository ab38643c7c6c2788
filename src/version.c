/* The --version text (see version.h). */
#include "version.h"

#include <cblas.h>
#include <hdf5.h>
#include <png.h>
#include <string.h>
#include <tiffio.h>
#include <zip.h>

#define STR_(x) #x
#define STR(x) STR_(x)

/* The first line of s into buf, without surrounding blanks. */
static const char *first_line(const char *s, char *buf, size_t len)
{
    while (*s == ' ' || *s == '\t') s++;
    size_t n = strcspn(s, "\r\n");
    if (n >= len) n = len - 1;
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == ',')) n--;
    memcpy(buf, s, n);
    buf[n] = 0;
    return buf;
}

void cp_version_print(FILE *f, const cp_version_mpi *mpi)
{
    char line[512];
    unsigned hmaj = 0, hmin = 0, hrel = 0;
    H5get_libversion(&hmaj, &hmin, &hrel);
#ifdef H5_HAVE_PARALLEL
    const char *parallel = "parallel";
#else
    const char *parallel = "serial";
#endif
#ifdef TIFFLIB_MAJOR_VERSION
    const char *tiff_built = STR(TIFFLIB_MAJOR_VERSION) "." STR(TIFFLIB_MINOR_VERSION) "."
                             STR(TIFFLIB_MICRO_VERSION);
#else
    const char *tiff_built = STR(TIFFLIB_VERSION);
#endif
    fprintf(f, "cellpose-mpi %s (Cellpose 3.1.1.3 inference)\n", CP_VERSION);
    fprintf(f, "libraries (running version [built with]):\n");
    fprintf(f, "  MPI       %s (MPI standard %d.%d) [built with %s]\n",
            first_line(mpi->library, line, sizeof line), mpi->major, mpi->minor, mpi->built);
    fprintf(f, "  HDF5      %u.%u.%u (%s) [built with %d.%d.%d]\n", hmaj, hmin, hrel, parallel,
            H5_VERS_MAJOR, H5_VERS_MINOR, H5_VERS_RELEASE);
    fprintf(f, "  OpenBLAS  %s (core %s)\n", first_line(openblas_get_config(), line, sizeof line),
            openblas_get_corename());
    fprintf(f, "  libtiff   %s [built with %s]\n", first_line(TIFFGetVersion(), line, sizeof line),
            tiff_built);
    fprintf(f, "  libzip    %s [built with %s]\n", zip_libzip_version(), LIBZIP_VERSION);
    fprintf(f, "  libpng    %s [built with %s]\n", png_get_libpng_ver(NULL),
            PNG_LIBPNG_VER_STRING);
}
