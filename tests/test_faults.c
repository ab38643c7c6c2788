/* Failures on purpose, through the real CLI (issue 20, defects 3-5 and fault injection):
 *   io_1, io_2     an I/O error (EIO) and a full disk (ENOSPC) at each write phase — network blocks
 *                  in <output>.work, dynamics blocks, the final file (.partial), its fsync and its
 *                  rename — on one process and on 2 ranks, through tests/faultshim.c (LD_PRELOAD).
 *                  Each: exit 1, one error line, no file under the final name, no .partial, the
 *                  previous output under the final name byte for byte intact, no crash.
 *   full_disk      a real 1 MiB tmpfs (root only, else skipped with 77): --save_flows without and
 *                  with --block, on 1 process and 2 ranks; the same checks.
 *   rank_fails     one rank fails alone (MPMD mpirun: a bad model, a bad flag, other parameters):
 *                  the job ends with `error: rank R: ...` and a non-zero exit instead of hanging.
 *   signal_single  SIGTERM / SIGUSR1 on one process: exit 3, nothing under the final name, no
 *                  .partial, the checkpoint kept and a message saying to --resume; the rerun with
 *                  --resume completes.
 *   signal_dir_1, signal_dir_2   SIGTERM in --dir on 1 and 2 ranks while the second of three
 *                  images is in hand: exit 3, the first output kept, no output for the others; a
 *                  rerun with --resume skips the first and does the rest. */
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

#define MPIRUN "timeout 300 mpirun --oversubscribe"

static char dir[1024], exe[2048], img[2048], tiny[2048], trained[2048];

/* A copy of a tu_path() result that outlives tu_path's ring of 16 (a small static pool). */
static const char *keep(const char *s)
{
    static char pool[16][4096];
    static int next;
    char *k = pool[next++ % 16];
    snprintf(k, sizeof pool[0], "%s", s);
    return k;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    static char buf[1 << 16];
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    buf[n] = 0;
    if (f) fclose(f);
    return buf;
}

static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *q = hay; (q = strstr(q, needle)); q++) n++;
    return n;
}

static const char *previous = "previous output, must survive\n";

static void put_previous(const char *out)
{
    FILE *f = fopen(out, "w");
    fputs(previous, f);
    fclose(f);
}

/* The checks every failed run shares: exit status `want`, one error line holding needle, the
 * previous output (if prev) intact under the final name or else nothing there, no .partial. */
static void check_failed(const char *what, int st, int want, const char *needle, const char *out,
                         int prev, const char *errf)
{
    int failed = tu_failed;
    char *all = slurp(errf);
    TU_CHECK(st == want, "[%s] exit %d, expected %d; stderr:\n%s", what, st, want, all);
    TU_CHECK(count(all, "error: ") == 1, "[%s] expected one error line:\n%s", what, all);
    char *msg = strstr(all, "error: ");
    char line[2048] = "";
    if (msg) snprintf(line, sizeof line, "%.*s", (int)strcspn(msg, "\n"), msg);
    TU_CHECK(needle == NULL || strstr(line, needle), "[%s] message lacks '%s': %s", what, needle,
             line);
    if (prev)
        TU_CHECK(!strcmp(slurp(out), previous), "[%s] the previous output was not kept", what);
    else
        TU_CHECK(access(out, F_OK) != 0, "[%s] a file under the final name", what);
    TU_CHECK(tu_run("ls -d %s.partial* 2> /dev/null", out) != 0, "[%s] a .partial left behind",
             what);
    TU_CHECK(tu_run("ls %s.lock 2> /dev/null", out) != 0, "[%s] the lock left behind", what);
    printf("%s %-44s exit %d  %s\n", tu_failed == failed ? "ok " : "BAD", what, st, line);
}

/* ---- I/O errors at each phase (shim) ------------------------------------------------------- */

typedef struct fault {
    const char *name, *op, *path, *args, *needle;
    int rank;  /* -1: every rank */
    int after; /* selected calls that succeed before the first failure */
} fault;

static void io_phases(int np)
{
    const char *shim = getenv("CP_FAULT_SHIM");
    TU_CHECK(shim && access(shim, R_OK) == 0, "CP_FAULT_SHIM (libcpfault.so) not set or missing");
    if (!shim) return;
    /* On 2 ranks the blocks fail on rank 1 only (a rank failing alone); the final file, written
     * through MPI-IO, fails on every rank, on rank 1 alone, at its first write (the chunk
     * allocation of H5Dcreate) or a later one (H5Dwrite, the flush); rank 0 renames. */
    const fault cases[] = {
        {"network blocks", "write", "/dp.", "--block 256", "dp.", 1, 0},
        {"dynamics blocks", "write", "/fin.", "--block 256", "fin.", 1, 0},
        {"final file", "write", ".partial", "", "out.h5", -1, 0},
        {"final file, a later write", "write", ".partial", "", "out.h5", -1, 2},
        {"final file, rank 1 alone", "write", ".partial", "", "out.h5", 1, 0},
        {"final file, rank 1 alone, later", "write", ".partial", "", "out.h5", 1, 3},
        {"final file, blocks", "write", ".partial", "--block 256", "out.h5", -1, 0},
        {"final file fsync", "fsync", ".partial", "", "out.h5", -1, 0},
        {"partial rename", "rename", ".partial", "", "rename", -1, 0},
        {"partial rename, blocks", "rename", ".partial", "--block 256", "rename", -1, 0},
    };
    const char *errnos[] = {"EIO", "ENOSPC"};
    const char *out = keep(tu_path("%s/out.h5", dir)), *errf = keep(tu_path("%s/err.txt", dir));
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        for (int e = 0; e < 2; e++) {
            const fault *c = &cases[i];
            if (np == 1 && c->rank == 1 && strstr(c->args, "--block") == NULL) continue;
            tu_run("rm -rf %s.work %s.partial*", out, out);
            put_previous(out);
            char env[4096], what[256];
            snprintf(env, sizeof env,
                     "CP_FAULT_PATH=%s CP_FAULT_OP=%s CP_FAULT_ERRNO=%s CP_FAULT_RANK=%s "
                     "CP_FAULT_AFTER=%d CP_FAULT_LOG=1 LD_PRELOAD=%s ASAN_OPTIONS=$ASAN_OPTIONS:verify_asan_link_order=0",
                     /* the whole path: Open MPI keeps "<file>_cid-N.sm" beside it in /tmp */
                     c->path[0] == '.' ? tu_path("%s%s", out, c->path) : c->path, c->op,
                     errnos[e], np > 1 && c->rank >= 0 ? "1" : "", c->after, shim);
            snprintf(what, sizeof what, "%s, %s, %d rank(s)", c->name, errnos[e], np);
            const char *launch = np > 1 ? MPIRUN " -n 2 -x LD_PRELOAD -x CP_FAULT_PATH -x "
                                          "CP_FAULT_OP -x CP_FAULT_ERRNO -x CP_FAULT_RANK -x "
                                          "CP_FAULT_AFTER -x CP_FAULT_LOG"
                                        : "timeout 300";
            int st = tu_run("env %s %s %s --quiet --pretrained_model %s --image_path %s --chan 1 "
                            "--chan2 2 --save_flows %s --output %s > /dev/null 2> %s",
                            env, launch, exe, tiny, img, c->args, out, errf);
            TU_CHECK(strstr(slurp(errf), "faultshim: ") != NULL, "[%s] no fault was injected",
                     what);
            check_failed(what, st, 1, c->needle, out, 1, errf);
        }
    tu_run("rm -rf %s.work", out);
}

/* ---- a real full disk ----------------------------------------------------------------------- */

static void full_disk(void)
{
    if (geteuid() != 0) {
        printf("SKIP: mounting a tmpfs needs root\n");
        exit(77);
    }
    const char *fs = keep(tu_path("%s/full", dir));
    mkdir(fs, 0755);
    if (mount("tmpfs", fs, "tmpfs", 0, "size=1m")) {
        printf("SKIP: cannot mount a tmpfs (needs root)\n");
        exit(77);
    }
    const char *out = keep(tu_path("%s/out.h5", fs)), *errf = keep(tu_path("%s/err.txt", dir));
    const struct {
        const char *name, *launch, *args;
    } cases[] = {
        {"whole plane, 1 process", "timeout 300", ""},
        {"blocks, 1 process", "timeout 300", "--block 256"},
        {"2 ranks", MPIRUN " -n 2", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        for (int prev = 0; prev < 2; prev++) {
            tu_run("rm -rf %s/*", fs);
            if (prev) put_previous(out);
            char what[256];
            snprintf(what, sizeof what, "full disk, %s%s", cases[i].name,
                     prev ? ", previous output" : "");
            int st = tu_run("%s %s --quiet --pretrained_model %s --image_path %s --chan 1 --chan2 2 "
                            "--diameter 30 --save_flows %s --output %s > /dev/null 2> %s",
                            cases[i].launch, exe, trained, img, cases[i].args, out, errf);
            check_failed(what, st, 1, NULL, out, prev, errf);
        }
    umount(fs);
}

/* ---- one rank fails alone -------------------------------------------------------------------- */

static void rank_fails(void)
{
    const char *errf = keep(tu_path("%s/err.txt", dir)), *out = keep(tu_path("%s/out.h5", dir));
    /* the same command line, but "m.pth" is a good model in good/ and garbage in bad/ (-wdir per
     * rank): what a node-local path that differs between nodes does */
    tu_run("mkdir -p %s/good %s/bad && cp %s %s/good/m.pth && echo 'not a model' > %s/bad/m.pth",
           dir, dir, tiny, dir, dir);
    char common[4096];
    snprintf(common, sizeof common, "--quiet --image_path %s --chan 1 --chan2 2 --output %s", img,
             out);
    const struct {
        const char *name, *wdir0, *wdir1, *a0, *a1, *needle;
        int want;
    } cases[] = {
        {"bad model on rank 1", "good", "bad", "", "", "rank 1: ", 1},
        {"bad model on rank 0", "bad", "good", "", "", "rank 0: ", 1},
        {"bad flag on rank 1", "good", "good", "", "--diameter x", "rank 1: --diameter", 2},
        {"other parameters on rank 1", "good", "good", "--diameter 30", "--diameter 31",
         "rank 1: --diameter", 2},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int st = tu_run("timeout 120 mpirun --oversubscribe -n 1 -wdir %s/%s %s --pretrained_model "
                        "m.pth %s %s : -n 1 -wdir %s/%s %s --pretrained_model m.pth %s %s "
                        "> /dev/null 2> %s", dir, cases[i].wdir0, exe, common, cases[i].a0, dir,
                        cases[i].wdir1, exe, common, cases[i].a1, errf);
        TU_CHECK(st != 124, "[%s] the job hung (killed by timeout)", cases[i].name);
        check_failed(cases[i].name, st, cases[i].want, cases[i].needle, out, 0, errf);
        if (cases[i].want == 1)
            TU_CHECK(strstr(slurp(errf), "m.pth: ") != NULL,
                     "[%s] the message does not name the model", cases[i].name);
    }
}

/* ---- signals ---------------------------------------------------------------------------------- */

/* Starts `sh -c cmd` in the background (exec'ed: the pid is the command's). */
static pid_t start(const char *cmd)
{
    pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* Waits up to 300 s for `needle` in file; 0 once there, -1 if pid ended first. */
static int wait_line(pid_t pid, const char *file, const char *needle)
{
    for (int i = 0; i < 6000; i++) {
        if (strstr(slurp(file), needle)) return 0;
        if (waitpid(pid, NULL, WNOHANG) == pid) return -1;
        nanosleep(&(struct timespec){0, 50000000}, NULL);
    }
    return -1;
}

static int wait_exit(pid_t pid)
{
    int status;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Sends sig to every cellpose-mpi process whose command line names needle (the ranks: what SLURM
 * does at a time limit). */
static int signal_ranks(const char *needle, int sig)
{
    long pids[64];
    int n = 0, k = tu_cellpose_pids(needle, pids, 64);
    for (int i = 0; i < k; i++) n += kill((pid_t)pids[i], sig) == 0;
    return n;
}

static void signal_single(void)
{
    const char *out = keep(tu_path("%s/out.h5", dir)), *errf = keep(tu_path("%s/err.txt", dir));
    const int sigs[] = {SIGTERM, SIGUSR1};
    for (int k = 0; k < 2; k++) {
        for (int prev = 0; prev < 2; prev++) {
            tu_run("rm -rf %s %s.partial* %s.work", out, out, out);
            if (prev) put_previous(out);
            unlink(errf); /* wait_line must not read the previous run's lines */
            char cmd[8192];
            snprintf(cmd, sizeof cmd, "exec %s --pretrained_model %s --image_path %s --chan 1 "
                     "--chan2 2 --diameter 30 --output %s > /dev/null 2> %s", exe, trained, img,
                     out, errf);
            pid_t pid = start(cmd);
            int started = wait_line(pid, errf, "on 1 rank(s)"); /* the network is next */
            TU_CHECK(started == 0, "the run ended before the signal: %s", slurp(errf));
            if (started) return;
            kill(pid, sigs[k]);
            int st = wait_exit(pid);
            char *all = slurp(errf);
            const char *name = k ? "SIGUSR1" : "SIGTERM";
            TU_CHECK(st == 3, "[%s] exit %d, expected 3:\n%s", name, st, all);
            TU_CHECK(count(all, "error: ") == 0, "[%s] an error line:\n%s", name, all);
            TU_CHECK(strstr(all, " kept in ") && strstr(all, "--resume"),
                     "[%s] the message must say the checkpoint is kept and mention --resume:\n%s",
                     name, all);
            TU_CHECK(tu_run("test -d %s.work", out) == 0, "[%s] no checkpoint folder", name);
            if (prev)
                TU_CHECK(!strcmp(slurp(out), previous), "[%s] the previous output was not kept",
                         name);
            else
                TU_CHECK(access(out, F_OK) != 0, "[%s] a file under the final name", name);
            TU_CHECK(tu_run("ls %s.partial* > /dev/null 2>&1", out) != 0, "[%s] .partial left",
                     name);
            printf("ok  %s, one process%s: exit %d\n", name, prev ? ", previous output" : "", st);
        }
    }
    int st = tu_run("%s --quiet --pretrained_model %s --image_path %s --chan 1 --chan2 2 "
                    "--diameter 30 --output %s --resume", exe, trained, img, out);
    TU_CHECK(st == 0 && tu_h5_attr(out, "n_masks") > 0, "the rerun failed (%d)", st);
    TU_CHECK(tu_run("test -e %s.work", out) != 0, "the checkpoint stayed after the rerun");
}

static time_t mtime_ns(const char *path, long *ns)
{
    struct stat s;
    if (stat(path, &s)) return *ns = -1, -1;
    *ns = s.st_mtim.tv_nsec;
    return s.st_mtime;
}

/* --dir with 3 copies of the image on np ranks; SIGTERM once the first is written. */
static void signal_dir(int np)
{
    const char *d = keep(tu_path("%s/imgs", dir)), *errf = keep(tu_path("%s/err.txt", dir));
    tu_run("mkdir -p %s && cp %s %s/a.tif && cp %s %s/b.tif && cp %s %s/c.tif", d, img, d, img, d,
           img, d);
    char launch[256], cmd[8192];
    snprintf(launch, sizeof launch, np > 1 ? "timeout 300 mpirun --oversubscribe -n %d " : "",
             np);
    snprintf(cmd, sizeof cmd, "exec %s%s --pretrained_model %s --dir %s --chan 1 --chan2 2 "
             "> /dev/null 2> %s", launch, exe, tiny, d, errf);
    unlink(errf);
    pid_t pid = start(cmd);
    int started = wait_line(pid, errf, "a_seg.h5");
    TU_CHECK(started == 0, "the run ended before the signal: %s", slurp(errf));
    if (started) return;
    if (np == 1) kill(pid, SIGTERM);
    else TU_CHECK(signal_ranks(d, SIGTERM) == np, "could not signal the %d ranks", np);
    int st = wait_exit(pid);
    char *all = slurp(errf);
    TU_CHECK(st == 3, "[--dir, %d rank(s)] exit %d, expected 3:\n%s", np, st, all);
    TU_CHECK(count(all, "error: ") == 0, "an error line:\n%s", all);
    TU_CHECK(strstr(all, "--resume") != NULL, "no hint to rerun with --resume:\n%s", all);
    TU_CHECK(access(tu_path("%s/a_seg.h5", d), F_OK) == 0, "the finished image was not kept");
    TU_CHECK(access(tu_path("%s/b_seg.h5", d), F_OK) != 0, "an output for the stopped image");
    TU_CHECK(access(tu_path("%s/c_seg.h5", d), F_OK) != 0, "an output for an image not started");
    TU_CHECK(tu_run("ls %s | grep -q partial", d) != 0, "a .partial left behind");
    printf("ok  --dir on %d rank(s), SIGTERM in the second image: exit %d\n", np, st);
    long ns0, ns1;
    time_t t0 = mtime_ns(tu_path("%s/a_seg.h5", d), &ns0);
    st = tu_run("%s%s --pretrained_model %s --dir %s --chan 1 --chan2 2 --resume 2> %s", launch,
                exe, tiny, d, errf);
    all = slurp(errf);
    time_t t1 = mtime_ns(tu_path("%s/a_seg.h5", d), &ns1);
    TU_CHECK(st == 0, "the rerun with --resume failed (%d):\n%s", st, all);
    TU_CHECK(t0 == t1 && ns0 == ns1, "the finished output was rewritten instead of skipped");
    TU_CHECK(strstr(all, "a.tif") && strstr(all, "skipped"), "the rerun does not say it skipped "
             "a.tif:\n%s", all);
    TU_CHECK(access(tu_path("%s/b_seg.h5", d), F_OK) == 0 &&
             access(tu_path("%s/c_seg.h5", d), F_OK) == 0, "the rerun did not do the rest");
    int64_t na, nb;
    uint32_t *la = tu_h5_read_u32(tu_path("%s/a_seg.h5", d), "labels", &na);
    uint32_t *lb = tu_h5_read_u32(tu_path("%s/b_seg.h5", d), "labels", &nb);
    TU_CHECK(la && lb && na == nb && tu_count_diff_u32(la, lb, na) == 0,
             "the same image gave different labels before and after the stop");
    free(la);
    free(lb);
    printf("ok  --dir rerun with --resume: a.tif skipped, b.tif and c.tif done\n");
}

int main(int argc, char **argv)
{
    snprintf(dir, sizeof dir, "%s", tu_tmpdir());
    snprintf(exe, sizeof exe, "%s/cellpose-mpi", tu_build_dir());
    snprintf(img, sizeof img, "%s/reference/random_cp3_seed0_synth512/input.tif", tu_shared());
    snprintf(tiny, sizeof tiny, "%s/models/tiny_random_nbase8_seed7.pth", tu_shared());
    snprintf(trained, sizeof trained, "%s/models/synth_trained_nbase16.pth", tu_shared());
    const char *what = argc > 1 ? argv[1] : "";
    if (!strcmp(what, "io_1")) io_phases(1);
    else if (!strcmp(what, "io_2")) io_phases(2);
    else if (!strcmp(what, "full_disk")) full_disk();
    else if (!strcmp(what, "rank_fails")) rank_fails();
    else if (!strcmp(what, "signal_single")) signal_single();
    else if (!strcmp(what, "signal_dir_1")) signal_dir(1);
    else if (!strcmp(what, "signal_dir_2")) signal_dir(2);
    else return fprintf(stderr, "usage: test_faults io_1|io_2|full_disk|rank_fails|"
                                "signal_single|signal_dir_1|signal_dir_2\n"), 2;
    if (!tu_failed) tu_run("rm -rf %s", dir);
    return tu_finish();
}
