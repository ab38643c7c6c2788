/* cellpose-mpi entry point: parse the command line, load the model once, then segment one image,
 * every TIFF of a folder, or a set of saved flows, in one process or on the N ranks of
 * `mpirun -n N cellpose-mpi ...`, always through the one driver (mpi/dsegment.c: a plane over
 * owner blocks, planes of a stack, a volume in 3-D on one process), images of a folder spread
 * over ranks. Exit status: 0 success; 1 a segmentation failed (in a folder, the others were still
 * done; any rank's failure ends the job); 2 bad command line (on any rank, or ranks with
 * different parameters); 3 stopped by SIGTERM/SIGUSR1 with nothing half-written: a checkpoint in
 * <output>.work (a plane), the finished images of --dir, or nothing (a stack, a volume); run
 * again with --resume. */
#include <dirent.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <mpi.h>
#include <signal.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "agree.h"
#include "cli.h"
#include "cp_err.h"
#include "cpnet.h"
#include "dataset.h"
#include "dsegment.h"
#include "h5par.h"
#include "outlock.h"
#include "overlay.h"
#include "paths.h"
#include "progress.h"
#include "segment.h"
#include "stop.h"
#include "version.h"

/* OpenBLAS picks its kernels when the library loads, before main, and Debian's 0.3.21 does not
 * know recent CPUs: it falls back to SSE3 kernels, 3.4x slower here. So unless the user chose
 * (OPENBLAS_CORETYPE set), we choose from the CPU's features and start again once with it set.
 * A fixed kernel also keeps the network's bits the same on every node (DESIGN.md §2.10). */
static void pin_openblas_kernel(char **argv)
{
    if (getenv("OPENBLAS_CORETYPE")) return;
    __builtin_cpu_init();
    const char *core = __builtin_cpu_supports("avx512f") ? "SkylakeX"
                       : __builtin_cpu_supports("avx2")  ? "Haswell"
                                                         : NULL;
    if (!core) return;
    setenv("OPENBLAS_CORETYPE", core, 1);
    execv("/proc/self/exe", argv); /* returns only on failure: go on with the default kernels */
}

static void join_args(int argc, char **argv, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = 0;
    for (int i = 0; i < argc && used + 1 < len; i++)
        used += (size_t)snprintf(buf + used, len - used, "%s%s", i ? " " : "", argv[i]);
}

/* A .tif/.tiff name that is not one of our --save_tif outputs (<stem>_cp_masks.tif: Cellpose's
 * folder listing skips its mask files too); a rerun with --save_tif must not take them for
 * images, nor be refused because they are the outputs of other images. */
static int is_tiff_name(const char *name)
{
    const char *dot = strrchr(name, '.');
    static const char masks[] = "_cp_masks";
    size_t stem = dot ? (size_t)(dot - name) : 0, nm = sizeof masks - 1;
    if (stem >= nm && !strncmp(name + stem - nm, masks, nm)) return 0;
    return dot && (!strcasecmp(dot, ".tif") || !strcasecmp(dot, ".tiff"));
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The TIFF files of dir, sorted by name (malloc'ed list of malloc'ed paths). */
static int list_tiffs(const char *dir, char ***out, int *n, char *err)
{
    DIR *d = opendir(dir);
    if (!d) return cp_errf(err, CP_EIO, "%s: cannot open the folder", dir);
    char **v = NULL;
    int k = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (!is_tiff_name(e->d_name)) continue;
        char **grown = realloc(v, sizeof *v * (size_t)(k + 1));
        size_t len = strlen(dir) + strlen(e->d_name) + 2;
        if (!grown || !(grown[k] = malloc(len))) {
            free(grown ? grown : v);
            closedir(d);
            return cp_errf(err, CP_ENOMEM, "%s: out of memory", dir);
        }
        v = grown;
        snprintf(v[k++], len, "%s/%s", dir, e->d_name);
    }
    closedir(d);
    if (!k) return cp_errf(err, CP_EIO, "%s: no .tif/.tiff files", dir);
    qsort(v, (size_t)k, sizeof *v, by_name);
    *out = v, *n = k;
    return 0;
}

static void on_signal(int sig)
{
    (void)sig;
    cp_dsegment_request_stop(); /* a plane: checkpoint at the next block */
    cp_stop_request();          /* stacks, volumes and --dir: stop, nothing half-written */
}

/* SIGTERM (a SLURM time limit) and SIGUSR1 (SLURM's --signal) ask for a clean stop: at the next
 * block boundary with a checkpoint (a plane), at the next tile batch or plane of a stack or
 * volume (nothing written), after the image in hand in --dir. Exit status 3. */
static void catch_stop_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
}

/* Prints err once (rank 0 of a run whose failure all ranks agreed on). */
static void report(int rank, const char *err)
{
    if (rank) return;
    cp_progress_break();
    fprintf(stderr, "cellpose-mpi: error: %s\n", cp_agree_solo(MPI_COMM_WORLD, err));
}

/* The end of a run that did not succeed: its error, or where a stop left it (CP_EINTR). */
static void report_end(int rank, int rc, const char *err)
{
    if (rc == CP_EINTR && rank == 0)
        fprintf(stderr, "cellpose-mpi: %s\n", cp_agree_solo(MPI_COMM_WORLD, err));
    else if (rc && rc != CP_EINTR) report(rank, err);
}

/* The agreement of all ranks on rc (cp_agree); a single process keeps its own message. */
static int agree(int nranks, int rc, char *err)
{
    return nranks > 1 ? cp_agree(MPI_COMM_WORLD, rc, err) : rc;
}

/* Every rank lists the folder itself and the queue hands out indices: the lists must match. */
static int agree_listing(char **files, int n, char *err)
{
    size_t len = 0;
    for (int i = 0; i < n; i++) len += strlen(files[i]) + 1;
    char *all = malloc(len + 1), *q = all;
    for (int i = 0; all && i < n; i++) q += sprintf(q, "%s\n", files[i]);
    int rc = all ? cp_agree_same(MPI_COMM_WORLD, all, len, "the list of TIFF files of --dir "
                                 "(files added or removed while starting?)", err)
                 : cp_agree(MPI_COMM_WORLD, cp_errf(err, CP_ENOMEM, "out of memory"), err);
    free(all);
    return rc;
}

/* The lock of the output, before anything is written (outlock.h); --resume takes over a stale
 * one. */
static int take_lock(const cp_params *p, int rank, const char *out, cp_outlock *lk, char *err)
{
    int rc = cp_outlock_take(MPI_COMM_WORLD, out, p->resume, lk, err);
    if (!rc && rank == 0 && lk->note[0] && !p->quiet)
        fprintf(stderr, "cellpose-mpi: %s\n", lk->note);
    return rc;
}

/* --save_overlay of a committed output (image NULL: from saved flows): rank 0 reads it back, all
 * ranks agree on the result. */
static int save_overlay(const cp_params *p, int rank, const char *image, const char *out,
                        char *err)
{
    char png[CP_PATH_LEN + 64];
    cp_overlay_path(out, image ? image : p->flows, png, sizeof png);
    int rc = rank == 0 ? cp_overlay_save(out, image, p, png, err) : 0;
    rc = cp_agree(MPI_COMM_WORLD, rc, err);
    if (!rc) cp_say(p->quiet || rank, "wrote %s", png);
    return rc;
}

/* One image, or a folder of them; returns 0, CP_EINTR, CP_EPARAM (an output is an input), or
 * how many images failed (> 0). */
static int run_images(const cp_params *p, int rank, int nranks, const char *cmdline,
                      cp_timing *tm)
{
    char err[CP_ERR_LEN], model_path[CP_PATH_LEN];
    cp_model *m = NULL;
    int rc = cp_model_resolve(p->pretrained_model, model_path, sizeof model_path, err);
    if (!rc) rc = cp_model_load(model_path, &m, err);
    if (agree(nranks, rc, err)) { /* a model that fails on one rank fails the job */
        report(rank, err);
        cp_model_free(m);
        return 1;
    }
    int result;
    if (p->dir[0]) {
        char **files = NULL;
        int n = 0;
        rc = agree(nranks, list_tiffs(p->dir, &files, &n, err), err);
        if (!rc && nranks > 1) rc = agree_listing(files, n, err);
        if (rc) {
            report(rank, err);
            result = 1;
        } else if (agree(nranks, cp_paths_check(p, model_path, files, n, err), err)) {
            report(rank, err);
            result = CP_EPARAM;
        } else {
            result = cp_dataset_run(MPI_COMM_WORLD, p, m, model_path, files, n, cmdline, tm);
        }
        for (int i = 0; i < n; i++) free(files[i]);
        free(files);
    } else {
        char out[CP_PATH_LEN + 16];
        if (p->output[0]) snprintf(out, sizeof out, "%s", p->output);
        else cp_default_output(p->image_path, out, sizeof out);
        rc = agree(nranks, cp_paths_check(p, model_path, NULL, 0, err), err);
        if (rc) {
            report(rank, err);
            cp_model_free(m);
            return CP_EPARAM;
        }
        cp_outlock lk;
        if (!(rc = take_lock(p, rank, out, &lk, err)))
            rc = cp_dsegment_image(MPI_COMM_WORLD, p, m, model_path, p->image_path, out, cmdline,
                                   tm, err);
        if (!rc && p->save_overlay) rc = save_overlay(p, rank, p->image_path, out, err);
        cp_outlock_release(&lk);
        report_end(rank, rc, err);
        result = rc == CP_EINTR ? CP_EINTR : rc != 0;
    }
    cp_model_free(m);
    return result;
}

static int run_flows(const cp_params *p, int rank, int nranks, const char *cmdline,
                     cp_timing *tm)
{
    char err[CP_ERR_LEN], out[CP_PATH_LEN + 16];
    if (p->output[0]) snprintf(out, sizeof out, "%s", p->output);
    else cp_default_output(p->flows, out, sizeof out);
    int rc = agree(nranks, cp_paths_check(p, NULL, NULL, 0, err), err);
    if (rc) {
        report(rank, err);
        return CP_EPARAM;
    }
    cp_outlock lk;
    if (!(rc = take_lock(p, rank, out, &lk, err)))
        rc = cp_dsegment_flows(MPI_COMM_WORLD, p, out, cmdline, tm, err);
    if (!rc && p->save_overlay) rc = save_overlay(p, rank, NULL, out, err);
    cp_outlock_release(&lk);
    report_end(rank, rc, err);
    return rc == CP_EINTR ? CP_EINTR : rc != 0;
}

/* The per-phase summary of the slowest rank, printed by rank 0. */
static void print_timing(cp_timing *tm, int rank)
{
    MPI_Allreduce(MPI_IN_PLACE, tm->sec, CP_PH_COUNT, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    MPI_Allreduce(MPI_IN_PLACE, tm->comm, CP_PH_COUNT, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    if (rank == 0) cp_timing_print(tm, stderr);
}

#define STR_(x) #x
#define STR(x) STR_(x)

/* --version on stdout: version.h's text with the MPI library this process runs with. */
static void print_version(void)
{
#ifdef OMPI_MAJOR_VERSION
    const char *built = "Open MPI " STR(OMPI_MAJOR_VERSION) "." STR(OMPI_MINOR_VERSION) "."
                        STR(OMPI_RELEASE_VERSION);
#else
    const char *built = "MPI " STR(MPI_VERSION) "." STR(MPI_SUBVERSION);
#endif
    char library[MPI_MAX_LIBRARY_VERSION_STRING] = "";
    cp_version_mpi mpi = {library, 0, 0, built};
    int len = 0;
    MPI_Get_library_version(library, &len);
    MPI_Get_version(&mpi.major, &mpi.minor);
    cp_version_print(stdout, &mpi);
}

int main(int argc, char **argv)
{
    static cp_params p;
    char err[CP_ERR_LEN], cmdline[8192];
    pin_openblas_kernel(argv);
#ifdef __GLIBC__
    /* A fixed mmap threshold: buffers of 4 MiB and more are mapped and unmapped, so each phase's
     * peak memory is its own. glibc otherwise raises the threshold to the largest buffer freed
     * (the network's parts of a step), and the next phases' buffers below it go to the heap,
     * where their changing sizes fragment it: the 3-D run of bench/volume_blocks.py peaked at
     * 1.36-1.47x the smaller volume's per rank, 1.16x with this (docs/performance.md). */
    mallopt(M_MMAP_THRESHOLD, 4 << 20);
#endif
    int provided, rank, nranks;
    /* Open MPI's shared-memory file-pointer component names a POSIX semaphore after the output
     * file's base name only (/dev/shm/sem.OMPIO_<name>): one left by a run killed with -9 blocks
     * every later run writing a file of that name, on the whole node. We never use shared file
     * pointers, so leave that component out (unless the user chose). The same for its
     * "lockedfile" component, whose "<file>-<jobid>-<pid>.lock" beside the output's partial file
     * stays when the file cannot be created (a full disk, an I/O error). */
    setenv("OMPI_MCA_sharedfp", "^sm,lockedfile", 0);
    /* Open MPI's ompio ignores a failed write(2) (EIO, ENOSPC) in its collective writes, and
     * parallel HDF5 then deadlocks or, worse, goes on; ROMIO returns the error, which ends the
     * job cleanly (cp_h5par_on_fatal). So ROMIO, unless the user chose. */
    setenv("OMPI_MCA_io", "^ompio", 0);
    MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &nranks);
    if (rank && !freopen("/dev/null", "w", stdout)) return 1; /* --help, --version: once */
    join_args(argc, argv, cmdline, sizeof cmdline);
    int rc = cp_cli_parse(argc, argv, &p, err);
    if (rc == CP_CLI_VERSION) print_version();
    /* all ranks end together: one leaving alone would leave the others waiting in MPI */
    int help = rc == CP_CLI_EXIT || rc == CP_CLI_VERSION, bad = agree(nranks, rc < 0 ? rc : 0, err);
    if (nranks > 1) MPI_Allreduce(MPI_IN_PLACE, &help, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (!bad && !help && nranks > 1) bad = cp_agree_params(MPI_COMM_WORLD, &p, err);
    if (bad || help) {
        if (bad) report(rank, err);
        MPI_Finalize();
        return bad ? 2 : 0;
    }
    if (p.threads > 0) omp_set_num_threads((int)p.threads);
    catch_stop_signals();
    cp_h5par_on_fatal(cp_outlock_remove_taken); /* a failed MPI-IO write aborts: leave no lock */
    cp_progress_setup(stderr, p.quiet || rank ? CP_PROGRESS_OFF : cp_progress_detect(stderr));
    cp_timing tm = {0};
    int result = p.flows[0] ? run_flows(&p, rank, nranks, cmdline, &tm)
                            : run_images(&p, rank, nranks, cmdline, &tm);
    if (!p.quiet && !result) print_timing(&tm, rank);
    MPI_Finalize();
    return result == CP_EINTR ? 3 : result == CP_EPARAM ? 2 : result ? 1 : 0;
}
