/* A fault injector for the tests (LD_PRELOAD=libcpfault.so): makes writes, renames or syncs of
 * chosen files fail with EIO or ENOSPC, as a failing or full disk does, without root or a real
 * device. Nothing happens unless CP_FAULT_PATH is set.
 *   CP_FAULT_PATH   substring of the path that selects the file (the file an fd or FILE* is open
 *                   on, read from /proc/self/fd; for rename, the source path)
 *   CP_FAULT_OP     write (default): write, pwrite, writev, pwritev(2), fwrite and the final
 *                   flush of fclose; rename: rename, renameat(2); fsync: fsync, fdatasync
 *   CP_FAULT_AFTER  let this many selected calls succeed first (default 0)
 *   CP_FAULT_ERRNO  EIO (default) or ENOSPC
 *   CP_FAULT_RANK   only in the MPI rank of this number (OMPI_COMM_WORLD_RANK / PMI_RANK)
 * Once a call has failed every later selected call fails too: a disk does not heal mid-run.
 * CP_FAULT_LOG=1 prints each failed call to stderr. HDF5's sec2 driver writes with pwrite, Open
 * MPI's ompio with pwrite/pwritev/write, the block store with fwrite: all are covered here. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

static int selected_calls;

#define REAL(ret, name, ...)                                                                 \
    static ret (*real_##name)(__VA_ARGS__);                                                  \
    if (!real_##name) *(void **)&real_##name = dlsym(RTLD_NEXT, #name)

/* The shim's own messages, around the write() below. */
static void log_stderr(const char *msg, int n)
{
    REAL(ssize_t, write, int, const void *, size_t);
    if (n > 0 && real_write(2, msg, (size_t)n) < 0) return;
}

static const char *rank_env(void)
{
    const char *r = getenv("OMPI_COMM_WORLD_RANK");
    return r ? r : getenv("PMI_RANK");
}

/* 1 if operation op on path must fail now (and counts the call). */
static int must_fail(const char *op, const char *path)
{
    const char *want = getenv("CP_FAULT_PATH"), *wop = getenv("CP_FAULT_OP");
    const char *wrank = getenv("CP_FAULT_RANK");
    if (!want || !*want || !path || !strstr(path, want)) return 0;
    if (strcmp(wop && *wop ? wop : "write", op)) return 0;
    if (wrank && *wrank) {
        const char *r = rank_env();
        if (!r || atoi(r) != atoi(wrank)) return 0;
    }
    const char *after = getenv("CP_FAULT_AFTER");
    if (selected_calls++ < (after ? atoi(after) : 0)) return 0;
    const char *e = getenv("CP_FAULT_ERRNO");
    errno = e && !strcmp(e, "ENOSPC") ? ENOSPC : EIO;
    if (getenv("CP_FAULT_LOG")) {
        int saved = errno;
        char msg[4400];
        int n = snprintf(msg, sizeof msg, "faultshim: %s %s -> %s\n", op, path, strerror(saved));
        log_stderr(msg, n);
        errno = saved;
    }
    return 1;
}

/* The path an fd is open on ("" if unknown). */
static const char *fd_path(int fd, char *buf, size_t len)
{
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, buf, len - 1);
    buf[n > 0 ? n : 0] = 0;
    return buf;
}

static int fd_fails(const char *op, int fd)
{
    if (!getenv("CP_FAULT_PATH")) return 0;
    char path[4096];
    return must_fail(op, fd_path(fd, path, sizeof path));
}

ssize_t write(int fd, const void *buf, size_t n)
{
    REAL(ssize_t, write, int, const void *, size_t);
    if (fd > 2 && fd_fails("write", fd)) return -1;
    return real_write(fd, buf, n);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
    REAL(ssize_t, pwrite, int, const void *, size_t, off_t);
    if (fd_fails("write", fd)) return -1;
    return real_pwrite(fd, buf, n, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off64_t off)
{
    REAL(ssize_t, pwrite64, int, const void *, size_t, off64_t);
    if (fd_fails("write", fd)) return -1;
    return real_pwrite64(fd, buf, n, off);
}

ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
    REAL(ssize_t, writev, int, const struct iovec *, int);
    if (fd > 2 && fd_fails("write", fd)) return -1;
    return real_writev(fd, iov, cnt);
}

ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
    REAL(ssize_t, pwritev, int, const struct iovec *, int, off_t);
    if (fd_fails("write", fd)) return -1;
    return real_pwritev(fd, iov, cnt, off);
}

ssize_t pwritev64(int fd, const struct iovec *iov, int cnt, off64_t off)
{
    REAL(ssize_t, pwritev64, int, const struct iovec *, int, off64_t);
    if (fd_fails("write", fd)) return -1;
    return real_pwritev64(fd, iov, cnt, off);
}

ssize_t pwritev2(int fd, const struct iovec *iov, int cnt, off_t off, int flags)
{
    REAL(ssize_t, pwritev2, int, const struct iovec *, int, off_t, int);
    if (fd_fails("write", fd)) return -1;
    return real_pwritev2(fd, iov, cnt, off, flags);
}

size_t fwrite(const void *buf, size_t size, size_t n, FILE *f)
{
    REAL(size_t, fwrite, const void *, size_t, size_t, FILE *);
    if (fd_fails("write", fileno(f))) return 0;
    return real_fwrite(buf, size, n, f);
}

/* glibc flushes a stream's buffer inside fclose without going through write(): a stream open for
 * writing on a selected file fails here (closed all the same). */
int fclose(FILE *f)
{
    REAL(int, fclose, FILE *);
    int fd = fileno(f), fail = 0;
    if (fd >= 0 && getenv("CP_FAULT_PATH")) {
        int fl = fcntl(fd, F_GETFL);
        fail = fl >= 0 && (fl & O_ACCMODE) != O_RDONLY && fd_fails("write", fd);
    }
    int saved = errno, rc = real_fclose(f);
    if (fail) {
        errno = saved;
        return EOF;
    }
    return rc;
}

int rename(const char *from, const char *to)
{
    REAL(int, rename, const char *, const char *);
    if (must_fail("rename", from)) return -1;
    return real_rename(from, to);
}

int renameat(int dfd, const char *from, int tfd, const char *to)
{
    REAL(int, renameat, int, const char *, int, const char *);
    if (must_fail("rename", from)) return -1;
    return real_renameat(dfd, from, tfd, to);
}

int renameat2(int dfd, const char *from, int tfd, const char *to, unsigned flags)
{
    REAL(int, renameat2, int, const char *, int, const char *, unsigned);
    if (must_fail("rename", from)) return -1;
    return real_renameat2(dfd, from, tfd, to, flags);
}

int fsync(int fd)
{
    REAL(int, fsync, int);
    if (fd_fails("fsync", fd)) return -1;
    return real_fsync(fd);
}

int fdatasync(int fd)
{
    REAL(int, fdatasync, int);
    if (fd_fails("fsync", fd)) return -1;
    return real_fdatasync(fd);
}
