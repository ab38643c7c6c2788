/* Runs that must not give a silent wrong result (issue 20, defects 1, 2 and 9), through the CLI
 * under mpirun. Every race is forced, not hoped for: a lock is pre-created with a live pid, a run
 * is stopped with SIGSTOP once its partial file exists, or killed / stopped once its first network
 * blocks are on disk.
 *   lock_held       a lock held by a live process (this test): a second run, with or without
 *                   --block or --resume, is refused naming the holder; the holder's files untouched
 *   lock_stale      a lock from another host, of a reused pid, or empty: refused without
 *                   --resume, taken over with it (the dead holder's partial file removed)
 *   lock_nofilelock HDF5_USE_FILE_LOCKING=FALSE, no --block: the first run stopped after creating
 *                   its partial; a second run on the same output is refused; the first, continued,
 *                   writes the right labels
 *   kill_resume     kill -9 of every rank: the lock stays; a rerun without --resume is refused;
 *                   --resume takes the lock over and gives identical labels
 *   other_input     SIGTERM on image A, B of the same byte size put at the same path: --resume
 *                   refuses the checkpoint (another input); a fresh run gives B's labels
 *   corrupt_block   SIGTERM, then 40 KB overwritten in two "dp" blocks: --resume recomputes them,
 *                   says so, and the labels equal an uninterrupted run
 * usage: test_runsafe NAME */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <tiffio.h>

#include "testutil.h"

#define MPIRUN "mpirun --oversubscribe -x OMP_NUM_THREADS=1"

static char dir[1024], exe[2048];

static void sleep_ms(long ms)
{
    nanosleep(&(struct timespec){ms / 1000, ms % 1000 * 1000000}, NULL);
}

/* The arguments of a run on img writing out (blocks of 128 unless block is 0). */
static const char *args(const char *img, const char *out, int block)
{
    static char a[4][4096];
    static int k;
    k = (k + 1) % 4;
    snprintf(a[k], sizeof a[k], "--pretrained_model %s/models/synth_trained_nbase16.pth "
             "--image_path %s --chan 1 --chan2 2 --diameter 30 %s --output %s", tu_shared(), img,
             block ? "--block 128" : "", out);
    return a[k];
}

static const char *input512(void)
{
    return tu_path("%s/reference/random_cp3_seed0_synth512/input.tif", tu_shared());
}

static int same_labels(const char *a, const char *b)
{
    int64_t n, m;
    uint32_t *x = tu_h5_read_u32(a, "labels", &n), *y = tu_h5_read_u32(b, "labels", &m);
    int64_t diff = x && y && n == m ? tu_count_diff_u32(x, y, n) : -1;
    printf("%s vs %s: %lld pixels differ\n", a, b, (long long)diff);
    free(x), free(y);
    return diff == 0;
}

static int exists(const char *path) { return access(path, F_OK) == 0; }

/* Starts `sh -c "exec CMD"` in the background: the pid is that of CMD. */
static pid_t start(const char *cmd)
{
    pid_t pid = fork();
    if (pid == 0) {
        char full[8192];
        snprintf(full, sizeof full, "exec %s", cmd);
        execl("/bin/sh", "sh", "-c", full, (char *)NULL);
        _exit(127);
    }
    return pid;
}

static int exit_code(pid_t pid)
{
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* The pids of the cellpose-mpi processes whose command line names out (up to max). */
static int ranks_of(const char *out, pid_t *pids, int max)
{
    long found[64];
    int n = tu_cellpose_pids(tu_path("--output %s", out), found, max < 64 ? max : 64);
    for (int i = 0; i < n; i++) pids[i] = (pid_t)found[i];
    return n;
}

static void signal_ranks(const char *out, int sig)
{
    pid_t p[16];
    int n = ranks_of(out, p, 16);
    for (int i = 0; i < n; i++) kill(p[i], sig);
    printf("signal %d sent to %d rank(s)\n", sig, n);
}

/* Waits (up to 300 s) until `work` holds `blocks` network blocks; 0, or -1 if run ended first. */
static int wait_blocks(pid_t run, const char *work, int blocks)
{
    for (int i = 0; i < 60000; i++) {
        if (tu_blocks_on_disk(work) >= blocks) return 0;
        if (waitpid(run, NULL, WNOHANG) == run) return -1;
        sleep_ms(5);
    }
    return -1;
}

/* md5 sums of the files of dir matching glob `pattern` into `list`. */
static void snapshot(const char *pattern, const char *list)
{
    tu_run("cd %s && find %s -type f 2>/dev/null | sort | xargs -r md5sum > %s", dir, pattern,
           list);
}

static const char *hostname(void)
{
    static char h[256];
    gethostname(h, sizeof h - 1);
    return h;
}

/* The reference: an uninterrupted 2-rank run of img into out. */
static void reference(const char *img, const char *out)
{
    int st = tu_run(MPIRUN " -n 2 %s --quiet %s", exe, args(img, out, 1));
    TU_CHECK(st == 0, "uninterrupted run failed (%d)", st);
}

static void lock_held(void)
{
    const char *out = tu_path("%s/out.h5", dir);
    /* what a live run (this process) would have: its lock, its work directory, its partial */
    char started[64];
    time_t now = time(NULL);
    strftime(started, sizeof started, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    FILE *f = fopen(tu_path("%s.lock", out), "w");
    fprintf(f, "host=%s\npid=%ld\nstarted=%s\n", hostname(), (long)getpid(), started);
    fclose(f);
    tu_run("mkdir -p %s.work && echo manifest > %s.work/manifest && head -c 202800 /dev/urandom "
           "> %s.work/dp.z0.0 && echo partial > %s.partial.%ld", out, out, out, out,
           (long)getpid());
    snapshot("out.h5*", tu_path("%s/before.txt", dir));
    const char *how[] = {MPIRUN " -n 2 %s %s", MPIRUN " -n 2 %s %s --resume", "%s %s",
                         "%s %s --resume"};
    for (int k = 0; k < 4; k++) {
        char cmd[8192];
        snprintf(cmd, sizeof cmd, how[k], exe, args(input512(), out, k < 2));
        int st = tu_run("%s 2> %s/err.txt", cmd, dir);
        tu_run("cat %s/err.txt", dir);
        TU_CHECK(st == 1, "[%s] a run on a locked output must exit 1, got %d", how[k], st);
        TU_CHECK(tu_run("grep -q 'error: %s: locked by host %s pid %ld since %s (' %s/err.txt", out,
                        hostname(), (long)getpid(), started, dir) == 0,
                 "[%s] the message does not name the holder", how[k]);
        TU_CHECK(tu_run("test $(grep -c error %s/err.txt) -eq 1", dir) == 0,
                 "[%s] not exactly one error line", how[k]);
        TU_CHECK(!exists(out), "[%s] an output under the final name", how[k]);
        snapshot("out.h5*", tu_path("%s/after.txt", dir));
        TU_CHECK(tu_run("cmp -s %s/before.txt %s/after.txt", dir, dir) == 0,
                 "[%s] the holder's files were changed", how[k]);
    }
    /* without --resume the hint names both ways out; with it, the holder is alive: stop it first */
    TU_CHECK(tu_run("grep -q 'still running' %s/err.txt", dir) == 0,
             "--resume on a live holder does not say it is still running");
}

static void write_lock(const char *out, const char *text)
{
    FILE *f = fopen(tu_path("%s.lock", out), "w");
    fputs(text, f);
    fclose(f);
}

/* Locks whose holder is gone or unknown: refused without --resume, taken over with it. */
static void lock_stale(void)
{
    const char *out = tu_path("%s/out.h5", dir);
    char text[3][512];
    snprintf(text[0], sizeof text[0], "host=elsewhere.example\npid=1\n"
             "started=2026-01-01T00:00:00Z\n");
    /* this process started after 2000: the pid of the lock was reused, its holder is gone */
    snprintf(text[1], sizeof text[1], "host=%s\npid=%ld\nstarted=2000-01-01T00:00:00Z\n",
             hostname(), (long)getpid());
    text[2][0] = 0; /* a run killed between creating the lock and writing it */
    char who[3][512];
    snprintf(who[0], sizeof who[0], "host elsewhere.example pid 1 since 2026-01-01T00:00:00Z");
    snprintf(who[1], sizeof who[1], "host %s pid %ld since 2000-01-01T00:00:00Z", hostname(),
             (long)getpid());
    snprintf(who[2], sizeof who[2], "a run whose lock file is empty or unreadable");
    for (int k = 0; k < 3; k++) {
        tu_run("rm -f %s %s.partial*", out, out);
        write_lock(out, text[k]);
        tu_run("echo dead > %s.partial.%ld", out, k == 1 ? (long)getpid() : 1L);
        int st = tu_run("%s --quiet %s 2> %s/err.txt", exe, args(input512(), out, 0), dir);
        tu_run("cat %s/err.txt", dir);
        TU_CHECK(st == 1, "[%d] a stale lock without --resume must be refused, got %d", k, st);
        TU_CHECK(tu_run("grep -qF 'locked by %s (another run' %s/err.txt", who[k], dir) == 0,
                 "[%d] the message does not describe the holder", k);
        st = tu_run("%s %s --resume 2> %s/err.txt", exe, args(input512(), out, 0), dir);
        tu_run("grep -E 'lock|error' %s/err.txt", dir);
        TU_CHECK(st == 0, "[%d] --resume must take a stale lock over, got %d", k, st);
        TU_CHECK(tu_run("grep -qF -- '--resume: took over the lock of %s' %s/err.txt", who[k],
                        dir) == 0, "[%d] the takeover is not reported", k);
        TU_CHECK(exists(out) && !exists(tu_path("%s.lock", out)), "[%d] no output, or a lock left",
                 k);
        TU_CHECK((tu_run("ls %s.partial* > /dev/null 2>&1", out) != 0) == (k != 2),
                 "[%d] the dead holder's partial file must go, and only it", k);
    }
}

static void lock_nofilelock(void)
{
    setenv("HDF5_USE_FILE_LOCKING", "FALSE", 1);
    const char *ref = tu_path("%s/ref.h5", dir), *out = tu_path("%s/out.h5", dir);
    int st = tu_run("%s --quiet %s", exe, args(input512(), ref, 0));
    TU_CHECK(st == 0, "reference run failed (%d)", st);
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s %s > %s/run1.txt 2>&1", exe, args(input512(), out, 0), dir);
    /* The partial exists only while the output is written (tens of ms): the SIGSTOP can come
     * after the commit on a loaded machine. Such an attempt is started again (at most 5). */
    pid_t first = -1;
    int seen = 0;
    for (int attempt = 0; attempt < 5 && !seen; attempt++) {
        tu_run("rm -f %s %s.partial* %s.lock", out, out, out);
        first = start(cmd);
        int gone = 0, status = 0;
        for (int i = 0; i < 60000 && !seen && !gone; i++) {
            seen = tu_run("ls %s.partial* > /dev/null 2>&1", out) == 0;
            if (!seen) sleep_ms(2);
            gone = !seen && waitpid(first, &status, WNOHANG) == first;
        }
        if (!seen && status == 0 && exists(out)) { /* its partial came and went between polls */
            printf("attempt %d: the first run finished between two polls; again\n", attempt + 1);
            continue;
        }
        if (!seen) { /* the run ended without an output: a real failure */
            printf("attempt %d: the first run ended (wait status %d):\n", attempt + 1, status);
            tu_run("tail -5 %s/run1.txt", dir);
            break;
        }
        kill(first, SIGSTOP);
        if (tu_run("ls %s.partial* > /dev/null 2>&1", out) != 0) { /* committed meanwhile */
            printf("attempt %d: the first run committed before SIGSTOP; again\n", attempt + 1);
            kill(first, SIGCONT);
            exit_code(first);
            seen = 0;
        }
    }
    TU_CHECK(seen, "the first run never was stopped with its partial file on disk");
    if (!seen) return;
    printf("first run (pid %ld) stopped with its partial on disk\n", (long)first);
    snapshot("out.h5*", tu_path("%s/before.txt", dir));
    /* the second run: other parameters, so that its labels would differ */
    st = tu_run("%s %s --diameter 60 2> %s/err.txt", exe, args(input512(), out, 0), dir);
    tu_run("cat %s/err.txt", dir);
    TU_CHECK(st == 1, "the second run must be refused with exit 1, got %d", st);
    TU_CHECK(tu_run("grep -q 'locked by host %s pid %ld since' %s/err.txt", hostname(),
                    (long)first, dir) == 0, "the message does not name the first run");
    snapshot("out.h5*", tu_path("%s/after.txt", dir));
    TU_CHECK(tu_run("cmp -s %s/before.txt %s/after.txt", dir, dir) == 0,
             "the second run changed the first run's files");
    kill(first, SIGCONT);
    st = exit_code(first);
    tu_run("tail -3 %s/run1.txt", dir);
    TU_CHECK(st == 0, "the first run failed after SIGCONT (%d)", st);
    TU_CHECK(same_labels(ref, out), "the first run's labels are not its own");
    TU_CHECK(!exists(tu_path("%s.lock", out)), "the lock was not removed at the end");
    TU_CHECK(tu_run("ls %s.partial* > /dev/null 2>&1", out) != 0, "a partial file left behind");
}

/* Starts a 2-rank run of img into out and waits for `blocks` network blocks; its pid, or -1. */
static pid_t start_blocks(const char *img, const char *out, int blocks)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd, MPIRUN " -n 2 %s %s > %s/run1.txt 2>&1", exe, args(img, out, 1), dir);
    pid_t run = start(cmd);
    int rc = wait_blocks(run, tu_path("%s.work", out), blocks);
    TU_CHECK(rc == 0, "the run ended before it had %d blocks on disk", blocks);
    return rc ? -1 : run;
}

static void kill_resume(void)
{
    const char *ref = tu_path("%s/ref.h5", dir), *out = tu_path("%s/out.h5", dir);
    reference(input512(), ref);
    pid_t run = start_blocks(input512(), out, 3);
    if (run < 0) return;
    signal_ranks(out, SIGKILL);
    printf("killed run: exit %d\n", exit_code(run));
    TU_CHECK(exists(tu_path("%s.lock", out)), "kill -9 must leave the lock");
    TU_CHECK(!exists(out), "an output under the final name");
    int st = tu_run(MPIRUN " -n 2 %s %s 2> %s/err.txt", exe, args(input512(), out, 1), dir);
    tu_run("cat %s/err.txt", dir);
    TU_CHECK(st == 1, "a rerun without --resume must be refused, got %d", st);
    TU_CHECK(tu_run("grep -q 'locked by host %s pid [0-9]* since .*rerun with --resume or "
                    "remove %s.lock' %s/err.txt", hostname(), out, dir) == 0,
             "the message does not name the holder and the ways out");
    st = tu_run(MPIRUN " -n 2 %s %s --resume > %s/run2.txt 2>&1", exe, args(input512(), out, 1),
                dir);
    tu_run("grep -E 'lock|network|resum' %s/run2.txt", dir);
    TU_CHECK(st == 0, "--resume after kill -9 failed (%d)", st);
    TU_CHECK(tu_run("grep -Eq '[1-9][0-9]* reused' %s/run2.txt", dir) == 0, "no block reused");
    TU_CHECK(same_labels(ref, out), "resumed labels differ");
    TU_CHECK(!exists(tu_path("%s.lock", out)), "the lock was not removed at the end");
    TU_CHECK(tu_run("ls %s.partial* > /dev/null 2>&1", out) != 0, "a partial file left behind");
}

/* Stops a 2-rank run of img into out with SIGTERM once `blocks` network blocks are on disk;
 * 0 if it stopped with exit 3. */
static int stopped_run(const char *img, const char *out, int blocks)
{
    pid_t run = start_blocks(img, out, blocks);
    if (run < 0) return -1;
    signal_ranks(out, SIGTERM);
    int st = exit_code(run);
    printf("stopped run: exit %d, %d blocks on disk\n", st,
           tu_blocks_on_disk(tu_path("%s.work", out)));
    TU_CHECK(st == 3, "SIGTERM must checkpoint and exit 3, got %d", st);
    TU_CHECK(!exists(tu_path("%s.lock", out)), "the lock was not removed on exit 3");
    return st == 3 ? 0 : -1;
}

/* img as an uncompressed float TIFF of the same pages, rows reversed if flip: two such files
 * have exactly the same byte size. */
static void write_plain(const char *path, const tu_tiff *s, int flip)
{
    TIFF *t = TIFFOpen(path, "w");
    for (int64_t p = 0; p < s->pages; p++) {
        TIFFSetField(t, TIFFTAG_IMAGEWIDTH, (uint32_t)s->nx);
        TIFFSetField(t, TIFFTAG_IMAGELENGTH, (uint32_t)s->ny);
        TIFFSetField(t, TIFFTAG_SAMPLESPERPIXEL, (uint16_t)s->spp);
        TIFFSetField(t, TIFFTAG_BITSPERSAMPLE, 32);
        TIFFSetField(t, TIFFTAG_SAMPLEFORMAT, SAMPLEFORMAT_IEEEFP);
        TIFFSetField(t, TIFFTAG_PLANARCONFIG, PLANARCONFIG_CONTIG);
        TIFFSetField(t, TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_MINISBLACK);
        TIFFSetField(t, TIFFTAG_COMPRESSION, COMPRESSION_NONE);
        TIFFSetField(t, TIFFTAG_ROWSPERSTRIP, 16);
        for (int64_t y = 0; y < s->ny; y++) {
            int64_t sy = flip ? s->ny - 1 - y : y;
            TIFFWriteScanline(t, s->f32 + (p * s->ny + sy) * s->nx * s->spp, (uint32_t)y, 0);
        }
        TIFFWriteDirectory(t);
    }
    TIFFClose(t);
}

static int64_t size_of(const char *path)
{
    struct stat st;
    return stat(path, &st) ? -1 : (int64_t)st.st_size;
}

static void other_input(void)
{
    const char *a = tu_path("%s/a.tif", dir), *b = tu_path("%s/b.tif", dir);
    tu_tiff s = tu_read_tiff(input512());
    write_plain(a, &s, 0);
    write_plain(b, &s, 1);
    tu_tiff_free(&s);
    TU_CHECK(size_of(a) == size_of(b) && size_of(a) > 0, "A and B differ in size");
    const char *img = tu_path("%s/in.tif", dir), *out = tu_path("%s/out.h5", dir);
    const char *refb = tu_path("%s/ref_b.h5", dir);
    reference(b, refb);
    tu_run("cp %s %s", a, img);
    if (stopped_run(img, out, 3)) return;
    tu_run("cp %s %s", b, img);
    int st = tu_run(MPIRUN " -n 2 %s %s --resume > %s/run2.txt 2>&1", exe, args(img, out, 1), dir);
    tu_run("cat %s/run2.txt", dir);
    TU_CHECK(st == 1, "--resume on another input of the same size must be refused, got %d", st);
    TU_CHECK(tu_run("grep -q 'error: rank 0: /[^ ]*out.h5.work: .*another input.*in.tif.*sha256' "
                    "%s/run2.txt", dir) == 0, "the message does not say the input changed");
    TU_CHECK(tu_run("grep -Eq '[1-9][0-9]* reused' %s/run2.txt", dir) != 0, "blocks of A reused");
    TU_CHECK(!exists(out), "an output under the final name");
    st = tu_run(MPIRUN " -n 2 %s --quiet %s", exe, args(img, out, 1));
    TU_CHECK(st == 0, "a fresh run on B failed (%d)", st);
    TU_CHECK(same_labels(refb, out), "the labels are not B's");
}

/* Overwrites 40 KB in the middle of a block file. */
static void damage(const char *path)
{
    FILE *f = fopen(path, "r+b");
    char junk[40960];
    memset(junk, 0x41, sizeof junk);
    fseek(f, 60000, SEEK_SET);
    fwrite(junk, 1, sizeof junk, f);
    fclose(f);
}

static void corrupt_block(void)
{
    const char *ref = tu_path("%s/ref.h5", dir), *out = tu_path("%s/out.h5", dir);
    reference(input512(), ref);
    if (stopped_run(input512(), out, 4)) return;
    const char *work = tu_path("%s.work", out);
    int damaged = 0;
    for (int b = 0; b < 16 && damaged < 2; b++) {
        const char *p = tu_path("%s/dp.z0.%d", work, b);
        if (!exists(p)) continue;
        damage(p);
        printf("damaged %s\n", p);
        damaged++;
    }
    TU_CHECK(damaged == 2, "fewer than 2 blocks to damage");
    int st = tu_run(MPIRUN " -n 2 %s %s --resume > %s/run2.txt 2>&1", exe, args(input512(), out, 1),
                    dir);
    tu_run("grep -E 'resum|network|masks' %s/run2.txt", dir);
    TU_CHECK(st == 0, "--resume failed (%d)", st);
    TU_CHECK(tu_run("test $(grep -Ec 'resume: block \\([0-9]+,[0-9]+\\) .dp.: checksum mismatch, "
                    "recomputed' %s/run2.txt) -eq 2", dir) == 0,
             "the two damaged blocks are not reported");
    TU_CHECK(tu_run("grep -Eq '2 failed their checksum' %s/run2.txt", dir) == 0,
             "the summary does not count the damaged blocks");
    TU_CHECK(same_labels(ref, out), "resumed labels differ from an uninterrupted run");
}

int main(int argc, char **argv)
{
    snprintf(dir, sizeof dir, "%s", tu_tmpdir());
    snprintf(exe, sizeof exe, "%s/cellpose-mpi", tu_build_dir());
    const char *what = argc > 1 ? argv[1] : "";
    if (!strcmp(what, "lock_held")) lock_held();
    else if (!strcmp(what, "lock_stale")) lock_stale();
    else if (!strcmp(what, "lock_nofilelock")) lock_nofilelock();
    else if (!strcmp(what, "kill_resume")) kill_resume();
    else if (!strcmp(what, "other_input")) other_input();
    else if (!strcmp(what, "corrupt_block")) corrupt_block();
    else return fprintf(stderr, "usage: test_runsafe lock_held|lock_stale|lock_nofilelock|"
                                "kill_resume|other_input|corrupt_block\n"), 2;
    if (!tu_failed) tu_run("rm -rf %s", dir);
    return tu_finish();
}
