/* The input as a file (see fuzz_common.h): a memfd, so nothing touches the disk and two fuzzing
 * processes never share a name. */
#define _GNU_SOURCE
#include "fuzz_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int cp_fuzz_file(const uint8_t *data, size_t size, char *path, size_t len)
{
    int fd = memfd_create("cp_fuzz", MFD_CLOEXEC);
    if (fd < 0) return -1;
    size_t done = 0;
    while (done < size) {
        ssize_t w = write(fd, data + done, size - done);
        if (w <= 0) {
            close(fd);
            return -1;
        }
        done += (size_t)w;
    }
    snprintf(path, len, "/proc/self/fd/%d", fd);
    return fd;
}

static char named[256];

static void remove_named(void) { unlink(named); }

int cp_fuzz_named_file(const uint8_t *data, size_t size, char *path, size_t len)
{
    if (!named[0]) {
        struct stat st;
        const char *tmp = getenv("TMPDIR");
        const char *dir = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) ? "/dev/shm"
                          : tmp                                              ? tmp
                                                                             : "/tmp";
        snprintf(named, sizeof named, "%s/cp_fuzz_%d.bin", dir, (int)getpid());
        atexit(remove_named);
    }
    FILE *f = fopen(named, "wb");
    if (!f) return -1;
    int bad = size && fwrite(data, 1, size, f) != size;
    bad |= fclose(f) != 0;
    snprintf(path, len, "%s", named);
    return bad ? -1 : 0;
}

int cp_fuzz_note(const char *what, int rc, const char *err)
{
    static int verbose = -1;
    if (verbose < 0) verbose = getenv("CP_FUZZ_VERBOSE") != NULL;
    if (verbose) fprintf(stderr, "%s: %s\n", what, rc ? err : "ok");
    return rc;
}
