/* Progress lines on stderr (see progress.h): the per-process destination, the terminal's open
 * line, and the text of a line. */
#include "progress.h"

#include <fcntl.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static FILE *out;
static cp_progress_mode out_mode;
/* The phase whose line is open on the terminal (printed without its newline yet), or NULL. */
static _Atomic(cp_progress *) open_line;

#define TTY_INTERVAL 0.2 /* seconds between two lines on a terminal: at most 5 a second */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void cp_progress_setup(FILE *f, cp_progress_mode mode)
{
    out = f;
    out_mode = f ? mode : CP_PROGRESS_OFF;
    atomic_store(&open_line, NULL);
}

int cp_progress_on(void) { return out_mode != CP_PROGRESS_OFF; }

/* 1 if the stderr of this process's parent is a terminal (Linux /proc; 0 where unknown). */
static int parent_stderr_is_tty(void)
{
    char path[64];
    struct stat st;
    snprintf(path, sizeof path, "/proc/%ld/fd/2", (long)getppid());
    if (stat(path, &st) || !S_ISCHR(st.st_mode)) return 0; /* a file or a pipe: not a terminal */
    int fd = open(path, O_WRONLY | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) return 0;
    int tty = isatty(fd);
    close(fd);
    return tty;
}

cp_progress_mode cp_progress_detect(FILE *f)
{
    const char *want = getenv("CELLPOSE_MPI_PROGRESS");
    if (want && !strcasecmp(want, "tty")) return CP_PROGRESS_TTY;
    if (want && !strcasecmp(want, "log")) return CP_PROGRESS_LOG;
    if (want && !strcasecmp(want, "off")) return CP_PROGRESS_OFF;
    int fd = fileno(f);
    if (fd >= 0 && isatty(fd)) return CP_PROGRESS_TTY;
    /* mpirun (Open MPI, MPICH's hydra) hands a rank a pipe for stderr and copies it to its own:
     * a rank whose stderr is a pipe, started by a launcher on this node, is on a terminal when
     * the launcher's stderr is one (`mpirun ... 2>log` or `| tee` are not) */
    struct stat st;
    int launched = getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_RANK");
    if (launched && fd >= 0 && !fstat(fd, &st) && S_ISFIFO(st.st_mode) && parent_stderr_is_tty())
        return CP_PROGRESS_TTY;
    return CP_PROGRESS_LOG;
}

/* "12.3 s" below a minute, else "m:ss" or "h:mm:ss"; whole seconds unless `tenths`. */
static void fmt_time(double t, int tenths, char *buf, size_t len)
{
    if (!(t >= 0)) t = 0;
    if (tenths && t < 59.95) {
        snprintf(buf, len, "%.1f s", t);
        return;
    }
    long s = (long)(t + 0.5);
    if (s >= 3600) snprintf(buf, len, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
    else snprintf(buf, len, "%ld:%02ld", s / 60, s % 60);
}

/* "d/total" exact below a million, else both in millions with one decimal. */
static void fmt_counts(int64_t d, int64_t total, char *buf, size_t len)
{
    if (total < 1000000) snprintf(buf, len, "%lld/%lld", (long long)d, (long long)total);
    else snprintf(buf, len, "%.1fM/%.1fM", (double)d / 1e6, (double)total / 1e6);
}

/* The text of pr's line with d units done (no "\r", no newline); returns its length. */
static int line_text(const cp_progress *pr, int64_t d, int final, double now, char *buf,
                     size_t len)
{
    char counts[64], t1[32], t2[32];
    if (d > pr->total) d = pr->total; /* more than announced: shown as all */
    int pct = d >= pr->total ? 100 : (int)((double)d * 100.0 / (double)pr->total);
    double el = now - pr->t0;
    fmt_counts(d, pr->total, counts, sizeof counts);
    if (final) {
        fmt_time(el, 1, t1, sizeof t1);
        return snprintf(buf, len, "cellpose-mpi: %-14s %3d%% (%s %s)  in %s", pr->label, pct,
                        counts, pr->unit, t1);
    }
    fmt_time(el, 0, t1, sizeof t1);
    if (d > 0) fmt_time(el * (double)(pr->total - d) / (double)d, 0, t2, sizeof t2);
    else snprintf(t2, sizeof t2, "-:--");
    /* a terminal line stays under 80 columns (a wrapped line cannot be rewritten): no elapsed */
    if (pr->mode == CP_PROGRESS_TTY)
        return snprintf(buf, len, "cellpose-mpi: %-14s %3d%% (%s %s)  ETA %s", pr->label, pct,
                        counts, pr->unit, t2);
    return snprintf(buf, len, "cellpose-mpi: %-14s %3d%% (%s %s)  elapsed %s  ETA %s", pr->label,
                    pct, counts, pr->unit, t1, t2);
}

/* Writes pr's line: on a terminal over its previous one (or on a fresh line if another phase's
 * line is open), with a newline when final; in a log as a line. One fwrite, so that a line is
 * never cut by another thread's output. */
static void emit(cp_progress *pr, int64_t d, int final, double now)
{
    char text[256], buf[512];
    int n = line_text(pr, d, final, now, text, sizeof text);
    if (n < 0) return;
    if (n >= (int)sizeof text) n = (int)sizeof text - 1;
    int k;
    if (pr->mode == CP_PROGRESS_TTY) {
        cp_progress *o = atomic_load(&open_line);
        int same = o == pr, pad = same && pr->width > n ? pr->width - n : 0;
        k = snprintf(buf, sizeof buf, "%s\r%s%*s%s", o && !same ? "\n" : "", text, pad, "",
                     final ? "\n" : "");
        pr->width = n;
        atomic_store(&open_line, final ? NULL : pr);
    } else {
        k = snprintf(buf, sizeof buf, "%s\n", text);
    }
    if (k > (int)sizeof buf - 1) k = (int)sizeof buf - 1;
    fwrite(buf, 1, (size_t)k, out);
    fflush(out);
}

void cp_progress_begin(cp_progress *pr, const char *label, const char *unit, int64_t total)
{
    if (!pr) return;
    pr->mode = total > 0 ? out_mode : CP_PROGRESS_OFF;
    snprintf(pr->label, sizeof pr->label, "%s", label);
    snprintf(pr->unit, sizeof pr->unit, "%s", unit);
    pr->total = total;
    atomic_init(&pr->done, 0);
    atomic_flag_clear(&pr->busy);
    pr->t0 = pr->last = now_s();
    pr->tenth = 0;
    pr->width = 0;
    if (pr->mode == CP_PROGRESS_TTY) emit(pr, 0, 0, pr->t0);
}

void cp_progress_add(cp_progress *pr, int64_t n)
{
    if (!pr || pr->mode == CP_PROGRESS_OFF) return;
    int64_t d = atomic_fetch_add_explicit(&pr->done, n, memory_order_relaxed) + n;
    if (pr->mode == CP_PROGRESS_LOG) {
        /* a new tenth is printed for sure: its thread waits for the one printing (at most 9
         * waits a phase), else a printer descheduled on a busy node would swallow the tenths */
        if (d >= pr->total || d * 10 / pr->total <= atomic_load(&pr->tenth)) return;
        while (atomic_flag_test_and_set_explicit(&pr->busy, memory_order_acquire)) sched_yield();
    } else if (atomic_flag_test_and_set_explicit(&pr->busy, memory_order_acquire)) {
        return;
    }
    /* the count as it is now, not as this thread left it: lines never go backwards */
    d = atomic_load_explicit(&pr->done, memory_order_relaxed);
    if (d >= pr->total) {
        /* the 100% line is cp_progress_end's, with the elapsed time */
    } else if (pr->mode == CP_PROGRESS_TTY) {
        double now = now_s();
        if (now - pr->last >= TTY_INTERVAL) {
            pr->last = now;
            emit(pr, d, 0, now);
        }
    } else {
        int t = (int)(d * 10 / pr->total); /* tenths 1..9 */
        if (t > pr->tenth) {
            pr->tenth = t;
            emit(pr, d, 0, now_s());
        }
    }
    atomic_flag_clear_explicit(&pr->busy, memory_order_release);
}

void cp_progress_cancel(cp_progress *pr)
{
    if (!pr || pr->mode == CP_PROGRESS_OFF) return;
    cp_progress *me = pr;
    if (atomic_compare_exchange_strong(&open_line, &me, NULL)) {
        fputc('\n', out);
        fflush(out);
    }
    pr->mode = CP_PROGRESS_OFF;
}

void cp_progress_end(cp_progress *pr)
{
    if (!pr || pr->mode == CP_PROGRESS_OFF) return;
    int64_t d = atomic_load(&pr->done);
    if (d < pr->total) {
        cp_progress_cancel(pr);
        return;
    }
    emit(pr, d, 1, now_s());
    pr->mode = CP_PROGRESS_OFF;
}

void cp_progress_break(void)
{
    if (atomic_exchange(&open_line, NULL) && out) {
        fputc('\n', out);
        fflush(out);
    }
}
