/* Shared by the fuzz targets: the input bytes as a file our path-based readers can open. */
#ifndef CP_FUZZ_COMMON_H
#define CP_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>

/* Puts data into a fresh anonymous in-memory file (memfd) and writes "/proc/self/fd/N" into
 * path. Returns the descriptor (the caller closes it, which frees the file), or -1. */
int cp_fuzz_file(const uint8_t *data, size_t size, char *path, size_t len);

/* The same as a named file (libhdf5 resolves the real path of what it opens, which a memfd has
 * not): one file per process in /dev/shm (else $TMPDIR or /tmp), rewritten for each input and
 * removed at exit. Returns 0 or -1. */
int cp_fuzz_named_file(const uint8_t *data, size_t size, char *path, size_t len);

/* With CP_FUZZ_VERBOSE set, prints "what: ok" or "what: <err>" (to check that seeds parse:
 * CP_FUZZ_VERBOSE=1 build-fuzz/fuzz_tiff build-fuzz/corpus/tiff/x.tif); returns rc. */
int cp_fuzz_note(const char *what, int rc, const char *err);

#endif
