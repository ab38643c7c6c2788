/* The dataset work queue (see dataset.h). */
#include "dataset.h"

#include <stdio.h>
#include <string.h>

#include "cp_err.h"
#include "overlay.h"
#include "progress.h"
#include "segment.h"

enum { TAG_RESULT = 11, TAG_JOB = 12 };

/* A worker's report of its last image (index -1: none yet) and its request for the next. */
typedef struct result {
    int index, rc;
    char err[CP_ERR_LEN];
} result;

static int segment_one(const cp_params *p, const cp_model *m, const char *model_path,
                       const char *image, const char *cmdline, cp_timing *tm, char *err)
{
    char out[CP_PATH_LEN + 16];
    cp_default_output(image, out, sizeof out);
    int rc = cp_segment_image(p, m, model_path, image, out, cmdline, tm, err);
    if (rc || !p->save_overlay) return rc;
    char png[CP_PATH_LEN + 64];
    cp_overlay_path(out, image, png, sizeof png);
    if ((rc = cp_overlay_save(out, image, p, png, err))) return rc;
    cp_say(p->quiet, "wrote %s", png);
    return 0;
}

static int dispatch(MPI_Comm comm, int nranks, char **files, int n, int quiet)
{
    int next = 0, busy = nranks - 1, failed = 0, done = 0;
    cp_progress pr;
    cp_progress_begin(&pr, "images", "images", n);
    while (busy) {
        result res;
        MPI_Status st;
        MPI_Recv(&res, sizeof res, MPI_BYTE, MPI_ANY_SOURCE, TAG_RESULT, comm, &st);
        if (res.index >= 0) {
            done++;
            cp_progress_break();
            if (res.rc) {
                failed++;
                fprintf(stderr, "cellpose-mpi: error: rank %d: %s\n", st.MPI_SOURCE, res.err);
            } else if (!quiet) {
                fprintf(stderr, "cellpose-mpi: [%d/%d] %s done by rank %d\n", done, n,
                        files[res.index], st.MPI_SOURCE);
            }
            cp_progress_add(&pr, 1);
        }
        int job = next < n ? next++ : -1;
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
    int rank, nranks, failed = 0;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &nranks);
    if (nranks == 1) {
        cp_progress pr;
        cp_progress_begin(&pr, "images", "images", n > 1 ? n : 0);
        for (int i = 0; i < n; i++) {
            char err[CP_ERR_LEN];
            if (segment_one(p, m, model_path, files[i], cmdline, tm, err)) {
                cp_progress_break();
                fprintf(stderr, "cellpose-mpi: error: %s\n", err);
                failed++;
            }
            cp_progress_add(&pr, 1);
        }
        cp_progress_end(&pr);
    } else if (rank == 0) {
        failed = dispatch(comm, nranks, files, n, p->quiet);
    } else {
        work(comm, p, m, model_path, files, cmdline, tm);
    }
    MPI_Bcast(&failed, 1, MPI_INT, 0, comm);
    if (rank == 0 && n > 1 && failed)
        fprintf(stderr, "cellpose-mpi: %d of %d images failed\n", failed, n);
    return failed;
}
