/* Per-block arrays as files of a work directory (see bstore.h). */
#define _XOPEN_SOURCE 700 /* nftw */
#include "bstore.h"

#include <errno.h>
#include <dirent.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "cp_err.h"

/* The header of an array file: magic, crc32 (zlib) of the data, data bytes. Native byte order:
 * a work directory is read back only by the run that wrote it or its --resume. */
typedef struct block_header {
    char magic[4];
    uint32_t crc;
    uint64_t bytes;
} block_header;

static const char MAGIC[4] = {'C', 'P', 'B', '1'};

static uint32_t crc_of(uint32_t crc, const void *data, size_t bytes)
{
    return (uint32_t)crc32_z(crc, data, bytes);
}

static int mkdir_p(const char *dir)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", dir);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            if (mkdir(tmp, 0755) && errno != EEXIST) return -1;
            *p = '/';
        }
    return (mkdir(tmp, 0755) && errno != EEXIST) ? -1 : 0;
}

int cp_bstore_open(cp_bstore *s, const char *dir, char *err)
{
    if (snprintf(s->dir, sizeof s->dir, "%s", dir) >= (int)sizeof s->dir)
        return cp_errf(err, CP_EPARAM, "%s: work directory path too long", dir);
    if (mkdir_p(dir))
        return cp_errf(err, CP_EIO, "%s: cannot create the work directory: %s", dir,
                       strerror(errno));
    return 0;
}

void cp_bstore_path(const cp_bstore *s, const char *name, int64_t b, char *path, size_t len)
{
    snprintf(path, len, "%s/%s.%lld", s->dir, name, (long long)b);
}

static int write_all(FILE *f, const void *data, size_t bytes)
{
    return bytes == 0 || fwrite(data, 1, bytes, f) == bytes ? 0 : -1;
}

int cp_bstore_put(const cp_bstore *s, const char *name, int64_t b, const void *data, size_t bytes,
                  char *err)
{
    char path[4200], tmp[4300];
    cp_bstore_path(s, name, b, path, sizeof path);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) return cp_errf(err, CP_EIO, "%s: cannot create: %s", tmp, strerror(errno));
    block_header h = {.crc = crc_of(crc_of(0, NULL, 0), data, bytes), .bytes = bytes};
    memcpy(h.magic, MAGIC, sizeof MAGIC);
    int bad = write_all(f, &h, sizeof h) | write_all(f, data, bytes);
    bad |= fclose(f);
    if (bad || rename(tmp, path)) {
        int e = errno;
        unlink(tmp);
        return cp_errf(err, CP_EIO, "%s: cannot write %zu bytes: %s", path, bytes, strerror(e));
    }
    return 0;
}

/* Opens the array file of (name, b) and checks its header against the expected data bytes. */
static int open_array(const cp_bstore *s, const char *name, int64_t b, size_t bytes, char *path,
                      size_t len, FILE **f, block_header *h, char *err)
{
    cp_bstore_path(s, name, b, path, len);
    *f = fopen(path, "rb");
    if (!*f) return cp_errf(err, CP_EIO, "%s: cannot open: %s", path, strerror(errno));
    int rc = 0;
    if (fread(h, sizeof *h, 1, *f) != 1 || memcmp(h->magic, MAGIC, sizeof MAGIC))
        rc = cp_errf(err, CP_EFORMAT, "%s: not a checkpoint block (no valid header)", path);
    else if (h->bytes != (uint64_t)bytes)
        rc = cp_errf(err, CP_EFORMAT, "%s: %llu bytes where %zu were expected", path,
                     (unsigned long long)h->bytes, bytes);
    if (rc) fclose(*f), *f = NULL;
    return rc;
}

/* The end of an array file: no byte past the data, and the data's crc32 as the header says. */
static int check_end(FILE *f, const char *path, size_t got, size_t bytes, uint32_t crc,
                     const block_header *h, char *err)
{
    int extra = fgetc(f) != EOF;
    fclose(f);
    if (got != bytes)
        return cp_errf(err, CP_EFORMAT, "%s: %zu bytes where %zu were expected (truncated)", path,
                       got, bytes);
    if (extra) return cp_errf(err, CP_EFORMAT, "%s: longer than its %zu bytes", path, bytes);
    if (crc != h->crc)
        return cp_errf(err, CP_EFORMAT, "%s: checksum mismatch (crc32 %08x stored, %08x of the "
                       "data)", path, (unsigned)h->crc, (unsigned)crc);
    return 0;
}

int cp_bstore_get(const cp_bstore *s, const char *name, int64_t b, void *data, size_t bytes,
                  char *err)
{
    char path[4200];
    FILE *f;
    block_header h;
    int rc = open_array(s, name, b, bytes, path, sizeof path, &f, &h, err);
    if (rc) return rc;
    size_t got = bytes ? fread(data, 1, bytes, f) : 0;
    return check_end(f, path, got, bytes, crc_of(crc_of(0, NULL, 0), data, got), &h, err);
}

int cp_bstore_verify(const cp_bstore *s, const char *name, int64_t b, size_t bytes, char *err)
{
    char path[4200];
    FILE *f;
    block_header h;
    int rc = open_array(s, name, b, bytes, path, sizeof path, &f, &h, err);
    if (rc) return rc;
    static _Thread_local unsigned char buf[1 << 16];
    uint32_t crc = crc_of(0, NULL, 0);
    size_t got = 0;
    while (got < bytes) {
        size_t want = bytes - got < sizeof buf ? bytes - got : sizeof buf;
        size_t n = fread(buf, 1, want, f);
        crc = crc_of(crc, buf, n);
        got += n;
        if (n < want) break;
    }
    return check_end(f, path, got, bytes, crc, &h, err);
}

int64_t cp_bstore_size(const cp_bstore *s, const char *name, int64_t b)
{
    char path[4200];
    struct stat st;
    cp_bstore_path(s, name, b, path, sizeof path);
    if (stat(path, &st) || st.st_size < (off_t)sizeof(block_header)) return -1;
    return (int64_t)st.st_size - (int64_t)sizeof(block_header);
}

int cp_bstore_append(const cp_bstore *s, const char *name, int64_t b, const void *data,
                     size_t bytes, char *err)
{
    char path[4200];
    cp_bstore_path(s, name, b, path, sizeof path);
    FILE *f = fopen(path, "ab");
    if (!f) return cp_errf(err, CP_EIO, "%s: cannot open for append: %s", path, strerror(errno));
    int bad = write_all(f, data, bytes);
    bad |= fclose(f);
    return bad ? cp_errf(err, CP_EIO, "%s: cannot append %zu bytes: %s", path, bytes,
                         strerror(errno))
               : 0;
}

int cp_bstore_take(const cp_bstore *s, const char *name, int64_t b, void **data, size_t *bytes,
                   char *err)
{
    char path[4200];
    struct stat st;
    *data = NULL;
    *bytes = 0;
    cp_bstore_path(s, name, b, path, sizeof path);
    if (stat(path, &st)) return 0;
    size_t n = (size_t)st.st_size;
    void *buf = malloc(n ? n : 1);
    if (!buf) return cp_errf(err, CP_ENOMEM, "%s: out of memory for %zu bytes", path, n);
    FILE *f = fopen(path, "rb");
    size_t got = f && n ? fread(buf, 1, n, f) : 0;
    if (f) fclose(f);
    if (!f || got != n) {
        free(buf);
        return cp_errf(err, CP_EIO, "%s: %zu bytes where %zu were expected", path, got, n);
    }
    cp_bstore_remove(s, name, b);
    *data = buf;
    *bytes = n;
    return 0;
}

void cp_bstore_remove(const cp_bstore *s, const char *name, int64_t b)
{
    char path[4200];
    cp_bstore_path(s, name, b, path, sizeof path);
    unlink(path);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

void cp_bstore_destroy(cp_bstore *s)
{
    nftw(s->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int cp_bstore_check_ours(const char *dir, const char *marker, char *err)
{
    struct stat st;
    if (lstat(dir, &st)) {
        if (errno == ENOENT) return 0;
        return cp_errf(err, CP_EIO, "%s: cannot inspect the work folder: %s", dir,
                       strerror(errno));
    }
    if (!S_ISDIR(st.st_mode))
        return cp_errf(err, CP_EIO, "%s: exists and is not a folder (not removing it: rename it, "
                       "or choose another --output)", dir);
    DIR *d = opendir(dir);
    if (!d) return cp_errf(err, CP_EIO, "%s: cannot read the work folder: %s", dir, strerror(errno));
    int entries = 0, ours = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        entries++;
        ours |= !strcmp(e->d_name, marker);
    }
    closedir(d);
    if (entries && !ours)
        return cp_errf(err, CP_EIO, "%s: a folder with no %s, not a work folder of cellpose-mpi "
                       "(not emptying it: rename it, or choose another --output)", dir, marker);
    return 0;
}
