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

#include "cp_err.h"

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
    int bad = write_all(f, data, bytes);
    bad |= fclose(f);
    if (bad || rename(tmp, path)) {
        int e = errno;
        unlink(tmp);
        return cp_errf(err, CP_EIO, "%s: cannot write %zu bytes: %s", path, bytes, strerror(e));
    }
    return 0;
}

int cp_bstore_get(const cp_bstore *s, const char *name, int64_t b, void *data, size_t bytes,
                  char *err)
{
    char path[4200];
    cp_bstore_path(s, name, b, path, sizeof path);
    FILE *f = fopen(path, "rb");
    if (!f) return cp_errf(err, CP_EIO, "%s: cannot open: %s", path, strerror(errno));
    size_t got = bytes ? fread(data, 1, bytes, f) : 0;
    fclose(f);
    if (got != bytes)
        return cp_errf(err, CP_EIO, "%s: %zu bytes where %zu were expected", path, got, bytes);
    return 0;
}

int64_t cp_bstore_size(const cp_bstore *s, const char *name, int64_t b)
{
    char path[4200];
    struct stat st;
    cp_bstore_path(s, name, b, path, sizeof path);
    return stat(path, &st) ? -1 : (int64_t)st.st_size;
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
    *data = NULL;
    *bytes = 0;
    int64_t n = cp_bstore_size(s, name, b);
    if (n < 0) return 0;
    void *buf = malloc(n ? (size_t)n : 1);
    if (!buf) return cp_errf(err, CP_ENOMEM, "%s: out of memory for %lld bytes", s->dir, (long long)n);
    int rc = cp_bstore_get(s, name, b, buf, (size_t)n, err);
    if (rc) {
        free(buf);
        return rc;
    }
    cp_bstore_remove(s, name, b);
    *data = buf;
    *bytes = (size_t)n;
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
