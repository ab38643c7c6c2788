/* The dataset work queue (see dataset.h). */
#include "dataset.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "agree.h"
#include "cp_err.h"
#include "dsegment.h"
#include "outlock.h"
#include "overlay.h"
#include "progress.h"
#include "segment.h"
#include "stop.h"

enum { TAG_RESULT = 11, TAG_JOB = 12 };
enum { SKIPPED = 1 }; /* segment_one: the output exists and --resume keeps it */

/* A worker's report of its last image (index -1: none yet) and its request for the next. */
typedef struct result {
    int index, rc;
    char err[CP_ERR_LEN];
} result;

/* Segments files[i] into <image>_seg.h5. With --resume an existing output is a finished one (the
 * final name appears only by the rename of a complete file): SKIPPED. A stop requested before the
 * image starts gives CP_EINTR without touching it; during it, the driver stops (CP_EINTR) with
 * its checkpoint in <output>.work, which a rerun with --resume takes up. Each image is the one
 * driver on a communicator of this process alone. */
static int segment_one(const cp_params *p, const cp_model *m, const char *model_path,
                       const char *image, const char *cmdline, cp_timing *tm, char *err)
{
    char out[CP_PATH_LEN + 16];
    cp_default_output(image, out, sizeof out);
    if (p->resume && access(out, F_OK) == 0) return cp_errf(err, SKIPPED, "%s", out);
    if (cp_stop_requested()) return cp_errf(err, CP_EINTR, "%s: not started", image);
    cp_outlock lk; /* this process alone writes the image's output */
    int rc = cp_outlock_take(MPI_COMM_SELF, out, p->resume, &lk, err);
    if (!rc) rc = cp_dsegment_image(MPI_COMM_SELF, p, m, model_path, image, out, cmdline, tm, err);
    if (rc) { /* the rank that matters is this one, which the queue names */
        const char *body = cp_agree_solo(MPI_COMM_SELF, err);
        memmove(err, body, strlen(body) + 1);
    }
    if (!rc && p->save_overlay) {
        char png[CP_PATH_LEN + 64];
        cp_overlay_path(out, image, png, sizeof png);
        if (!(rc = cp_overlay_save(out, image, p, png, err))) cp_say(p->quiet, "wrote %s", png);
    }
    cp_outlock_release(&lk);
    return rc;
}

/* Rank 0's line about one image's outcome (errors always, the rest unless quiet). */
static void tell(int rc, const char *image, const char *err, int rank, int done, int n, int quiet)
{
    if (rc == SKIPPED) {
        if (!quiet)
            fprintf(stderr, "cellpose-mpi: [%d/%d] %s skipped: %s exists (--resume)\n", done, n,
                    image, err);
    } else if (rc && rc != CP_EINTR) {
        if (rank >= 0) fprintf(stderr, "cellpose-mpi: error: rank %d: %s\n", rank, err);
        else fprintf(stderr, "cellpose-mpi: error: %s\n", err);
    } else if (!rc && !quiet) {
        if (rank >= 0)
            fprintf(stderr, "cellpose-mpi: [%d/%d] %s done by rank %d\n", done, n, image, rank);
    }
}

/* Rank 0's work queue. Stops handing out images once a stop was requested here or a worker
 * reports one (CP_EINTR); *stopped says so. Returns the number of failed images. */
static int dispatch(MPI_Comm comm, int nranks, char **files, int n, int quiet, int *stopped,
                    int *finished)
{
    int next = 0, busy = nranks - 1, failed = 0, done = 0;
    cp_progress pr;
    cp_progress_begin(&pr, "images", "images", n);
    while (busy) {
        result res;
        MPI_Status st;
        MPI_Recv(&res, sizeof res, MPI_BYTE, MPI_ANY_SOURCE, TAG_RESULT, comm, &st);
        if (res.index >= 0) {
            if (res.rc == CP_EINTR) *stopped = 1;
            else done++;
            failed += res.rc < 0 && res.rc != CP_EINTR;
            *finished += res.rc == 0 || res.rc == SKIPPED;
            cp_progress_break();
            tell(res.rc, files[res.index], res.err, st.MPI_SOURCE, done, n, quiet);
            cp_progress_add(&pr, res.rc != CP_EINTR);
        }
        *stopped |= cp_stop_requested();
        int job = next < n && !*stopped ? next++ : -1;
        busy -= job < 0;
        MPI_Send(&job, 1, MPI_INT, st.MPI_SOURCE, TAG_JOB, comm);
    }
    cp_progress_end(&pr);
    return failed;
}

static void work(MPI_Comm comm, const cp_params *p, const cp_model *m, const char *model_path,
                 char **files, const char *cmdline, cp_timing *tm)
{
    result res = {.index = -1};
    for (;;) {
        MPI_Send(&res, sizeof res, MPI_BYTE, 0, TAG_RESULT, comm);
        int job;
        MPI_Recv(&job, 1, MPI_INT, 0, TAG_JOB, comm, MPI_STATUS_IGNORE);
        if (job < 0) return;
        res.index = job;
        res.err[0] = 0;
        res.rc = segment_one(p, m, model_path, files[job], cmdline, tm, res.err);
    }
}

int cp_dataset_run(MPI_Comm comm, const cp_params *p, const cp_model *m, const char *model_path,
                   char **files, int n, const char *cmdline, cp_timing *tm)
{
    int rank, nranks, st[3] = {0, 0, 0}; /* failed, stopped, finished */
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &nranks);
    if (nranks == 1) {
        cp_progress pr;
        cp_progress_begin(&pr, "images", "images", n > 1 ? n : 0);
        for (int i = 0; i < n && !st[1]; i++) {
            char err[CP_ERR_LEN];
            int rc = segment_one(p, m, model_path, files[i], cmdline, tm, err);
            st[0] += rc < 0 && rc != CP_EINTR;
            st[1] = rc == CP_EINTR;
            st[2] += rc == 0 || rc == SKIPPED;
            cp_progress_break();
            tell(rc, files[i], err, -1, i + 1, n, p->quiet);
            cp_progress_add(&pr, rc != CP_EINTR);
        }
        cp_progress_end(&pr);
    } else if (rank == 0) {
        st[0] = dispatch(comm, nranks, files, n, p->quiet, &st[1], &st[2]);
    } else {
        work(comm, p, m, model_path, files, cmdline, tm);
    }
    MPI_Bcast(st, 3, MPI_INT, 0, comm);
    if (rank == 0 && n > 1 && st[0])
        fprintf(stderr, "cellpose-mpi: %d of %d images failed\n", st[0], n);
    if (rank == 0 && st[1])
        fprintf(stderr, "cellpose-mpi: stopped by a signal: %d of %d images done; the image in "
                "hand and the rest have no output; run again with --resume to do them (finished "
                "outputs are skipped)\n", st[2], n);
    return st[1] ? CP_EINTR : st[0];
}
