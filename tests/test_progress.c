/* Progress lines (src/progress.h): the module on its own, then through the real CLI.
 *   unit     log mode: one line per tenth (10%, 20%, ... 90%) once each, then the 100% line with
 *            the elapsed time, no "\r"; the same from 4 OpenMP threads adding at once; a terminal:
 *            "\r" lines with "%" and "ETA", ended by a newline; nested phases and
 *            cp_progress_break start fresh lines; quiet, an empty phase, a cancelled phase;
 *            CELLPOSE_MPI_PROGRESS picks the mode
 *   tty      one process on a pseudo-terminal (script -qc): "\r"-updated network and flow
 *            following lines with "%" and "ETA", each phase's last line 100% with "in", the
 *            messages and the timing summary on lines of their own, labels as --quiet's
 *   log      stderr to a file: tenths once each, no "\r"; a stack: a planes line; a --dir of two
 *            images: an images line
 *   quiet    --quiet, on a pseudo-terminal and in a log: no progress at all
 *   mpi      2 ranks, --block 128, in a log and on a pseudo-terminal: each line once (rank 0
 *            only), counting rank 0's share
 * No timed assertions: what is checked is which lines appear, not when. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "progress.h"
#include "testutil.h"

#define MPIRUN "mpirun --oversubscribe -x OMP_NUM_THREADS=1"

static char dir[1024];

/* The whole of a file (malloc'ed, NUL-terminated; "" if missing). */
static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return strdup("");
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    for (size_t k; (k = fread(buf + n, 1, cap - n - 1, f)) > 0;) {
        n += k;
        if (n + 1 == cap) buf = realloc(buf, cap *= 2);
    }
    buf[n] = 0;
    fclose(f);
    return buf;
}

/* 1 if needle occurs in the line that starts at q (before its newline). */
static int in_line(const char *q, const char *needle)
{
    const char *hit = strstr(q, needle), *eol = strchr(q, '\n');
    return hit && (!eol || hit + strlen(needle) <= eol);
}

static int count(const char *s, const char *needle)
{
    int n = 0;
    for (const char *q = s; (q = strstr(q, needle)); q += strlen(needle)) n++;
    return n;
}

/* Checks the log-mode lines of phase `label` in text: percentages increasing, tenths 1..9 at most
 * once each and at least `tenths` of them, one 100% line with the elapsed time ("in"), last.
 * (Adds from several threads may cross two tenths while one line is written: one line then.) */
static void check_log_phase(const char *what, const char *text, const char *label, int tenths)
{
    int seen[11] = {0}, last = -1, lines = 0, final_last = 0;
    char head[64];
    snprintf(head, sizeof head, "cellpose-mpi: %-14s ", label);
    for (const char *q = text; (q = strstr(q, head)); q++) {
        int pct = atoi(q + strlen(head));
        int is_final = in_line(q, ")  in ");
        TU_CHECK(pct > last, "%s: %s at %d%% after %d%%", what, label, pct, last);
        TU_CHECK(pct <= 100, "%s: %s at %d%%", what, label, pct);
        if (pct >= 0 && pct <= 100) seen[pct / 10]++;
        TU_CHECK(is_final == (pct == 100), "%s: %s at %d%%: %s the elapsed time", what, label, pct,
                 is_final ? "with" : "without");
        TU_CHECK(pct == 100 || in_line(q, "ETA"),
                 "%s: %s at %d%% without an ETA", what, label, pct);
        long long a = -1, b = -1; /* the final count is the total (exact counts only) */
        const char *paren = strchr(q, '(');
        int exact = is_final && paren && sscanf(paren, "(%lld/%lld", &a, &b) == 2;
        TU_CHECK(!exact || a == b, "%s: %s: final count %lld of %lld", what, label, a, b);
        last = pct, lines++, final_last = is_final;
    }
    TU_CHECK(lines > 0 && final_last, "%s: no final 100%% line of %s", what, label);
    TU_CHECK(seen[10] == 1, "%s: %d lines at 100%% for %s", what, seen[10], label);
    int n = 0;
    for (int t = 1; t < 10; t++) {
        TU_CHECK(seen[t] <= 1, "%s: %s: %d lines in the %d0%%s", what, label, seen[t], t);
        n += seen[t] > 0;
    }
    TU_CHECK(n >= tenths, "%s: %s: lines in %d tenths, expected at least %d", what, label, n,
             tenths);
    printf("%s: %s: %d lines\n", what, label, lines);
}

/* ---- the module ---------------------------------------------------------------------------- */

static char *run_phase(cp_progress_mode mode, int64_t total, int64_t step, int threads)
{
    const char *path = tu_path("%s/unit.txt", dir);
    FILE *f = fopen(path, "w");
    cp_progress_setup(f, mode);
    cp_progress pr;
    cp_progress_begin(&pr, "phase", "units", total);
    if (threads > 1) {
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
        for (int64_t i = 0; i < total; i += step) cp_progress_add(&pr, step);
    } else {
        for (int64_t i = 0; i < total; i += step) cp_progress_add(&pr, step);
    }
    cp_progress_end(&pr);
    cp_progress_setup(NULL, CP_PROGRESS_OFF);
    fclose(f);
    return slurp(path);
}

static void unit(void)
{
    char *s = run_phase(CP_PROGRESS_LOG, 1000, 1, 1);
    TU_CHECK(!strchr(s, '\r'), "log mode wrote a \\r");
    TU_CHECK(count(s, "\n") == 10, "log mode: %d lines, expected 10:\n%s", count(s, "\n"), s);
    check_log_phase("log", s, "phase", 9);
    TU_CHECK(strstr(s, "cellpose-mpi: phase          100% (1000/1000 units)  in ") != NULL,
             "final line: %s", s);
    TU_CHECK(strstr(s, "cellpose-mpi: phase           10% (100/1000 units)  elapsed ") != NULL,
             "10%% line: %s", s);
    free(s);

    s = run_phase(CP_PROGRESS_LOG, 100, 35, 1); /* 35, 70, 105: one line per crossing */
    TU_CHECK(count(s, "\n") == 3 && strstr(s, " 35% ") && strstr(s, " 70% "), "jumps: %s", s);
    check_log_phase("log, jumps", s, "phase", 2);
    free(s);

    s = run_phase(CP_PROGRESS_LOG, 200000, 1, 4);
    check_log_phase("log, 4 threads", s, "phase", 1);
    TU_CHECK(strstr(s, "(200000/200000 units)") != NULL, "4 threads: the count is wrong: %s", s);
    free(s);

    s = run_phase(CP_PROGRESS_LOG, 3000000, 1000, 4);
    TU_CHECK(strstr(s, "(3.0M/3.0M units)") != NULL, "millions: %s", s);
    free(s);

    s = run_phase(CP_PROGRESS_TTY, 1000, 1, 2);
    TU_CHECK(s[0] == '\r', "terminal: the line does not start with \\r: %s", s);
    TU_CHECK(strstr(s, "\rcellpose-mpi: phase            0% (0/1000 units)  ETA -:--")
             != NULL, "terminal: no 0%% line: %s", s);
    TU_CHECK(count(s, "\n") == 1 && s[strlen(s) - 1] == '\n', "terminal: not one line ended by "
             "a newline: %s", s);
    TU_CHECK(strstr(s, "\rcellpose-mpi: phase          100% (1000/1000 units)  in ") != NULL,
             "terminal: final line: %s", s);
    free(s);

    s = run_phase(CP_PROGRESS_OFF, 1000, 1, 2);
    TU_CHECK(!s[0], "quiet: printed %s", s);
    free(s);
    s = run_phase(CP_PROGRESS_LOG, 0, 1, 1);
    TU_CHECK(!s[0], "an empty phase printed %s", s);
    free(s);

    /* nested phases, a message in the middle, a cancelled phase */
    const char *path = tu_path("%s/nested.txt", dir);
    FILE *f = fopen(path, "w");
    cp_progress_setup(f, CP_PROGRESS_TTY);
    cp_progress outer, inner;
    cp_progress_begin(&outer, "planes", "planes", 2);
    cp_progress_begin(&inner, "network", "tiles", 4);
    cp_progress_add(&inner, 4);
    cp_progress_end(&inner);
    cp_progress_add(&outer, 1);
    cp_progress_begin(&inner, "network", "tiles", 4);
    cp_progress_add(&inner, 1);
    cp_progress_break();
    fputs("message\n", f);
    cp_progress_cancel(&inner);
    cp_progress_end(&inner);
    cp_progress_end(&outer);
    cp_progress_setup(NULL, CP_PROGRESS_OFF);
    fclose(f);
    s = slurp(path);
    TU_CHECK(strstr(s, "ETA -:--\n\rcellpose-mpi: network          0%") != NULL,
             "nested: the inner phase does not start on a fresh line: %s", s);
    TU_CHECK(strstr(s, "\nmessage\n") != NULL, "nested: the message is not on its own line: %s", s);
    TU_CHECK(count(s, "100%") == 1 && strstr(s, "network        100% (4/4 tiles)  in "),
             "nested: 100%% lines: %s", s);
    TU_CHECK(count(s, "\n") == 4, "nested: %d newlines (expected 4): %s", count(s, "\n"), s);
    free(s);

    setenv("CELLPOSE_MPI_PROGRESS", "tty", 1);
    f = fopen(path, "w");
    TU_CHECK(cp_progress_detect(f) == CP_PROGRESS_TTY, "CELLPOSE_MPI_PROGRESS=tty ignored");
    setenv("CELLPOSE_MPI_PROGRESS", "off", 1);
    TU_CHECK(cp_progress_detect(f) == CP_PROGRESS_OFF, "CELLPOSE_MPI_PROGRESS=off ignored");
    unsetenv("CELLPOSE_MPI_PROGRESS");
    TU_CHECK(cp_progress_detect(f) == CP_PROGRESS_LOG, "a file is not a log");
    fclose(f);
}

/* ---- through the CLI ----------------------------------------------------------------------- */

static const char *exe(void) { return tu_path("%s/cellpose-mpi", tu_build_dir()); }

static const char *args(const char *out)
{
    return tu_path("--image_path %s/reference/random_cp3_seed0_synth512/input.tif "
                   "--pretrained_model %s/models/synth_trained_nbase16.pth --chan 1 --chan2 2 "
                   "--diameter 30 --output %s/%s",
                   tu_shared(), tu_shared(), dir, out);
}

/* Runs cmd on a pseudo-terminal (script -qc); returns what the terminal got. */
static char *on_tty(const char *cmd)
{
    const char *txt = tu_path("%s/tty.txt", dir);
    int st = tu_run("script -qec '%s' /dev/null > %s", cmd, txt);
    TU_CHECK(st == 0, "[%s] on a pseudo-terminal: exit %d", cmd, st);
    return slurp(txt);
}

static char *in_log(const char *cmd)
{
    const char *txt = tu_path("%s/log.txt", dir);
    int st = tu_run("%s 2> %s", cmd, txt);
    TU_CHECK(st == 0, "[%s] exit %d", cmd, st);
    return slurp(txt);
}

static int same_labels(const char *a, const char *b)
{
    int64_t na, nb;
    uint32_t *x = tu_h5_read_u32(a, "labels", &na), *y = tu_h5_read_u32(b, "labels", &nb);
    int same = x && y && na == nb && tu_count_diff_u32(x, y, na) == 0;
    free(x);
    free(y);
    return same;
}

/* How many final lines (100% with the elapsed time) phase `label` has in s. */
static int count_final(const char *s, const char *label)
{
    char fin[64];
    int n = 0;
    snprintf(fin, sizeof fin, "cellpose-mpi: %-14s 100%% (", label);
    for (const char *q = s; (q = strstr(q, fin)); q++) n += in_line(q, ")  in ");
    return n;
}

/* The terminal's text of a progress phase: "\r"-rewritten lines with "%" and "ETA", then one
 * 100% line with the elapsed time, ended by a newline. */
static void check_tty_phase(const char *what, const char *s, const char *label)
{
    char head[64];
    snprintf(head, sizeof head, "\rcellpose-mpi: %-14s ", label);
    const char *first = strstr(s, head);
    TU_CHECK(first != NULL, "%s: no \\r line of %s", what, label);
    TU_CHECK(first && in_line(first, "% (") && in_line(first, "ETA"),
             "%s: %s: no %% and ETA on its line", what, label);
    TU_CHECK(count_final(s, label) == 1, "%s: %d final lines of %s", what, count_final(s, label),
             label);
    printf("%s: %s: %d updates\n", what, label, count(s, head));
}

/* Every line that is not progress starts on a fresh line: "cellpose-mpi: wrote", the timing
 * summary, "cellpose-mpi: error". */
static void check_fresh_lines(const char *what, const char *s)
{
    const char *needles[] = {"cellpose-mpi: wrote", "timing summary", "cellpose-mpi: masks",
                             "cellpose-mpi: network: "};
    for (int k = 0; k < 4; k++)
        for (const char *q = s; (q = strstr(q, needles[k])); q++)
            TU_CHECK(q == s || q[-1] == '\n', "%s: '%s' does not start a line", what, needles[k]);
}

static void tty(void)
{
    char *s = on_tty(tu_path("%s %s", exe(), args("tty.h5")));
    check_tty_phase("tty", s, "network");
    check_tty_phase("tty", s, "flow following");
    check_fresh_lines("tty", s);
    free(s);
    TU_CHECK(tu_run("%s %s --quiet", exe(), args("quiet.h5")) == 0, "--quiet run failed");
    TU_CHECK(same_labels(tu_path("%s/tty.h5", dir), tu_path("%s/quiet.h5", dir)),
             "labels with progress differ from --quiet's");
}

static void log_mode(void)
{
    char *s = in_log(tu_path("%s %s", exe(), args("log.h5")));
    TU_CHECK(!strchr(s, '\r'), "log: a \\r in the log");
    check_log_phase("log", s, "network", 0);
    check_log_phase("log", s, "flow following", 5);
    check_fresh_lines("log", s);
    TU_CHECK(strstr(s, "timing summary") != NULL, "log: no timing summary");
    free(s);

    /* a stack: one planes phase */
    s = in_log(tu_path("%s --image_path %s/data/synthetic/synth_stack_3x256.tif --z_axis 0 "
                       "--pretrained_model %s/models/synth_trained_nbase16.pth --diameter 30 "
                       "--stitch_threshold 0.25 --output %s/stack.h5",
                       exe(), tu_shared(), tu_shared(), dir));
    check_log_phase("stack", s, "planes", 0);
    TU_CHECK(count_final(s, "network") == 3, "stack: %d network phases, not 3",
             count_final(s, "network"));
    free(s);

    /* a folder of two images: one images phase */
    tu_run("mkdir -p %s/set && cp %s/data/synthetic/synth_stack_3x256.tif %s/set/a.tif && "
           "cp %s/data/synthetic/synth_stack_3x256.tif %s/set/b.tif",
           dir, tu_shared(), dir, tu_shared(), dir);
    s = in_log(tu_path("%s --dir %s/set --z_axis 0 --pretrained_model "
                       "%s/models/tiny_random_nbase8_seed7.pth --niter 10",
                       exe(), dir, tu_shared()));
    check_log_phase("dir", s, "images", 0);
    TU_CHECK(strstr(s, "cellpose-mpi: images          50% (1/2 images)  elapsed ") != NULL,
             "dir: no 50%% line: %s", s);
    free(s);
}

static void quiet(void)
{
    char *s = on_tty(tu_path("%s %s --quiet", exe(), args("q1.h5")));
    TU_CHECK(!strstr(s, "%") && !strstr(s, "ETA") && !strchr(s, '\r'),
             "--quiet on a terminal printed: %s", s);
    free(s);
    s = in_log(tu_path("%s %s --quiet", exe(), args("q2.h5")));
    TU_CHECK(!s[0], "--quiet in a log printed: %s", s);
    free(s);
}

static void mpi(void)
{
    const char *cmd = tu_path(MPIRUN " -n 2 %s %s --block 128", exe(), args("mpi.h5"));
    char *s = in_log(cmd);
    TU_CHECK(!strchr(s, '\r'), "mpi log: a \\r in the log");
    check_log_phase("mpi log", s, "network", 0);
    check_log_phase("mpi log", s, "flow following", 0);
    TU_CHECK(strstr(s, " tiles of rank 0)") && strstr(s, " particles of rank 0)"),
             "mpi log: the lines do not say they count rank 0's share: %s", s);
    check_fresh_lines("mpi log", s);
    free(s);
    s = on_tty(cmd);
    check_tty_phase("mpi tty", s, "network");
    check_tty_phase("mpi tty", s, "flow following");
    check_fresh_lines("mpi tty", s);
    free(s);
    s = on_tty(tu_path("%s --quiet", cmd));
    TU_CHECK(!strstr(s, "%") && !strchr(s, '\r'), "mpi --quiet on a terminal printed: %s", s);
    free(s);
}

int main(int argc, char **argv)
{
    const char *what = argc > 1 ? argv[1] : "unit";
    snprintf(dir, sizeof dir, "%s", tu_tmpdir());
    if (!strcmp(what, "unit")) unit();
    else if (!strcmp(what, "tty")) tty();
    else if (!strcmp(what, "log")) log_mode();
    else if (!strcmp(what, "quiet")) quiet();
    else if (!strcmp(what, "mpi")) mpi();
    else TU_CHECK(0, "unknown test %s", what);
    if (!tu_failed) tu_run("rm -rf %s", dir);
    return tu_finish();
}
