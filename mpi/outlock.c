/* The lock file of an output (see outlock.h). */
#define _GNU_SOURCE /* timegm */
#include "outlock.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* What a lock file says about its holder; ok 0 when it cannot be parsed (empty, garbled). */
typedef struct holder {
    int ok;
    char host[256], started[64];
    long pid;
    char text[512]; /* the file as read, to recognise it again */
} holder;

static void read_holder(const char *path, holder *h)
{
    memset(h, 0, sizeof *h);
    FILE *f = fopen(path, "r");
    if (!f) return;
    size_t n = fread(h->text, 1, sizeof h->text - 1, f);
    fclose(f);
    h->text[n] = 0;
    int got = 0;
    for (char *line = h->text, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        size_t len = next ? (size_t)(next - line) : strlen(line);
        if (next) next++;
        char v[256];
        if (len >= sizeof v) continue;
        if (!strncmp(line, "host=", 5) && len > 5) {
            snprintf(h->host, sizeof h->host, "%.*s", (int)len - 5, line + 5);
            got |= 1;
        } else if (!strncmp(line, "pid=", 4) && len > 4) {
            snprintf(v, sizeof v, "%.*s", (int)len - 4, line + 4);
            char *end;
            h->pid = strtol(v, &end, 10);
            if (!*end && h->pid > 0) got |= 2;
        } else if (!strncmp(line, "started=", 8) && len > 8) {
            snprintf(h->started, sizeof h->started, "%.*s", (int)len - 8, line + 8);
            got |= 4;
        }
    }
    h->ok = got == 7;
}

/* Seconds since the epoch at which process pid started (from /proc), -1 if unknown; *zombie 1
 * if it has exited but is not yet reaped. */
static double proc_start(long pid, int *zombie)
{
    char path[64], buf[1024];
    *zombie = 0;
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')'), state = 0; /* the command name may hold spaces */
    unsigned long long ticks = 0;
    /* after ")": state (field 3) ... starttime (field 22) */
    if (!p || sscanf(p + 1, " %c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d "
                             "%*d %*d %*d %llu", &state, &ticks) != 2)
        return -1;
    *zombie = state == 'Z' || state == 'X';
    f = fopen("/proc/stat", "r");
    long long btime = -1;
    char line[256];
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "btime %lld", &btime) == 1) break;
    if (f) fclose(f);
    long hz = sysconf(_SC_CLK_TCK);
    return btime < 0 || hz <= 0 ? -1 : (double)btime + (double)ticks / (double)hz;
}

/* 1 if the holder's pid runs on this host and started no later than the lock (a pid that started
 * after it was reused by an unrelated process; a zombie has exited). */
static int alive_here(const holder *h)
{
    if (kill((pid_t)h->pid, 0) && errno == ESRCH) return 0;
    struct tm tm = {0};
    const char *end = strptime(h->started, "%Y-%m-%dT%H:%M:%SZ", &tm);
    int zombie;
    double t0 = proc_start(h->pid, &zombie), locked = end && !*end ? (double)timegm(&tm) : -1;
    return !zombie && !(t0 > 0 && locked > 0 && t0 > locked + 2);
}

/* alive_here, giving a holder that is being torn down (a rank killed with its job: mpirun may
 * return before every rank is gone) a few seconds to go. */
static int still_alive_here(const holder *h)
{
    for (int i = 0; i < 50; i++) {
        if (!alive_here(h)) return 0;
        nanosleep(&(struct timespec){0, 100000000}, NULL);
    }
    return 1;
}

static void describe(const holder *h, char *buf, size_t len)
{
    if (h->ok) snprintf(buf, len, "host %s pid %ld since %s", h->host, h->pid, h->started);
    else snprintf(buf, len, "a run whose lock file is empty or unreadable");
}

/* Creates the lock exclusively with our lines; 0, or errno. */
static int create(const char *path, const char *host)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) return errno;
    char started[64], text[512];
    time_t now = time(NULL);
    strftime(started, sizeof started, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    int n = snprintf(text, sizeof text, "host=%s\npid=%ld\nstarted=%s\n", host, (long)getpid(),
                     started);
    int e = write(fd, text, (size_t)n) == n ? 0 : errno ? errno : EIO;
    if (close(fd) && !e) e = errno;
    if (e) unlink(path);
    return e;
}

/* Moves a stale lock (as read: h) out of the way: renamed aside, then checked to be the file we
 * judged stale (another run may have replaced it meanwhile: then it goes back). 1 if removed. */
static int remove_stale(const char *path, const holder *h)
{
    char aside[CP_PATH_LEN + 64];
    snprintf(aside, sizeof aside, "%s.stale.%ld", path, (long)getpid());
    if (rename(path, aside)) return 0;
    holder again;
    read_holder(aside, &again);
    if (strcmp(again.text, h->text)) {
        if (link(aside, path) == 0) unlink(aside); /* not ours to remove: put it back */
        else unlink(aside);
        return 0;
    }
    unlink(aside);
    return 1;
}

static int take_rank0(const char *out, int takeover, cp_outlock *lk, char *err)
{
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    for (int attempt = 0; attempt < 2; attempt++) {
        int e = create(lk->path, host);
        if (!e) {
            lk->held = 1;
            return 0;
        }
        if (e != EEXIST)
            return cp_errf(err, CP_EIO, "%s: cannot create the lock %s: %s", out, lk->path,
                           strerror(e));
        holder h;
        char who[700];
        read_holder(lk->path, &h);
        describe(&h, who, sizeof who);
        if (!takeover)
            return cp_errf(err, CP_EIO, "%s: locked by %s (another run is writing it; if that run "
                           "is dead, rerun with --resume or remove %s)", out, who, lk->path);
        /* a holder on another host cannot be checked from here: --resume says it is gone */
        if (h.ok && !strcmp(h.host, host) && still_alive_here(&h))
            return cp_errf(err, CP_EIO, "%s: locked by %s (that process is still running on this "
                           "host: stop it first, or remove %s if it is not a cellpose-mpi run)",
                           out, who, lk->path);
        if (!remove_stale(lk->path, &h)) continue; /* someone else moved it: look again */
        if (h.ok) {
            char partial[CP_PATH_LEN + 64];
            snprintf(partial, sizeof partial, "%s.partial.%ld", out, h.pid);
            unlink(partial);
        }
        snprintf(lk->note, sizeof lk->note, "--resume: took over the lock of %.400s", who);
    }
    return cp_errf(err, CP_EIO, "%s: the lock %s keeps changing hands: another run is starting "
                   "on this output", out, lk->path);
}

static char taken[CP_PATH_LEN + 16]; /* the lock cp_outlock_take last gave this job */

void cp_outlock_remove_taken(void)
{
    if (taken[0]) unlink(taken);
    taken[0] = 0;
}

int cp_outlock_take(MPI_Comm comm, const char *out, int takeover, cp_outlock *lk, char *err)
{
    int rank;
    MPI_Comm_rank(comm, &rank);
    memset(lk, 0, sizeof *lk);
    int rc = 0;
    if (snprintf(lk->path, sizeof lk->path, "%s.lock", out) >= (int)sizeof lk->path)
        rc = cp_errf(err, CP_EPARAM, "%s: output path too long", out);
    else if (rank == 0)
        rc = take_rank0(out, takeover, lk, err);
    MPI_Bcast(&rc, 1, MPI_INT, 0, comm);
    if (rc) MPI_Bcast(err, CP_ERR_LEN, MPI_CHAR, 0, comm);
    else snprintf(taken, sizeof taken, "%s", lk->path);
    return rc;
}

void cp_outlock_release(cp_outlock *lk)
{
    if (lk->held) unlink(lk->path);
    lk->held = 0;
    if (!strcmp(taken, lk->path)) taken[0] = 0;
}
