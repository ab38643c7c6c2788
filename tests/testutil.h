/* Test support: where the shared oracle lives, an independent reader for the oracle's TIFF files,
 * its case.json, array comparisons that print the worst error, and a pass/fail tally.
 * The TIFF reader here is deliberately separate from src/tiff_io.c: the oracle is read by code
 * that is not under test. */
#ifndef CP_TESTUTIL_H
#define CP_TESTUTIL_H

#include <json-c/json.h>
#include <stddef.h>
#include <stdint.h>

/* The test data root: $CELLPOSE_MPI_SHARED if set; else the build's default (../shared of the
 * project, $CELLPOSE_MPI_SHARED_DEFAULT) if it holds reference/; else the data bundled with the
 * repository ($CP_TEST_DATA = tests/data, same layout, a subset of the cases). */
const char *tu_shared(void);
/* 1 when the root is the bundled tests/data: a file it lacks belongs to the extended suite. */
int tu_bundled(void);
/* 0 when `path` lies under the bundled root and is not there (the extended suite has it),
 * else 1 (with the full oracle a missing file stays an error for the caller to report). */
int tu_have(const char *path);
/* Returns path; when !tu_have(path), skips the test: one stderr line "skipped: <path relative
 * to the root> is in the extended parity suite (...)" and exit status 77 (ctest's
 * SKIP_RETURN_CODE). Under MPI every rank must take the same decision: MPI is finalized first. */
const char *tu_need(const char *path);
/* The skip itself (path as for tu_need). */
void tu_skip(const char *path) __attribute__((noreturn));
/* snprintf into a static ring of buffers: "%s/reference/%s/dP.tif" etc. Paths stay valid for the
 * next 16 calls. */
const char *tu_path(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The build directory (CP_BUILD_DIR from ctest), for finding the cellpose-mpi executable. */
const char *tu_build_dir(void);

/* A TIFF from the oracle: all pages, stacked. shape = (pages, ny, nx, spp). */
typedef struct tu_tiff {
    int64_t pages, ny, nx, spp;
    int64_t n; /* pages*ny*nx*spp */
    float *f32;    /* the values as float32 (uint32 above 2^24 would round: use u32) */
    uint32_t *u32; /* integer files only, else NULL */
} tu_tiff;
/* Reads path; aborts the test with a message if it cannot (the oracle must be there), or skips
 * it (tu_need) when the file is in the extended suite only. */
tu_tiff tu_read_tiff(const char *path);
void tu_tiff_free(tu_tiff *t);

/* case.json of reference case `name` (parsed; free with json_object_put); skips the test (tu_need)
 * when the case is in the extended suite only. */
json_object *tu_case_json(const char *name);
/* Dotted path lookup in a JSON object: tu_json_get(j, "niter.used"), also through keys that
 * contain dots ("files.dP.tif.path"); NULL if absent. */
json_object *tu_json_get(json_object *j, const char *dotted);

/* Tally: TU_CHECK records a pass or prints the failure with file:line. */
extern int tu_failed, tu_passed;
#define TU_CHECK(cond, ...)                                                                  \
    do {                                                                                     \
        if (cond) {                                                                          \
            tu_passed++;                                                                     \
        } else {                                                                             \
            tu_failed++;                                                                     \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                             \
            fprintf(stderr, __VA_ARGS__);                                                    \
            fputc('\n', stderr);                                                             \
        }                                                                                    \
    } while (0)
/* Prints "N passed, N failed" and returns the process exit status. */
int tu_finish(void);

/* Worst absolute difference of two float arrays (NaN against non-NaN counts as infinite);
 * *where gets the index (may be NULL). */
double tu_maxabs(const float *a, const float *b, int64_t n, int64_t *where);
/* Number of differing elements of two label arrays. */
int64_t tu_count_diff_u32(const uint32_t *a, const uint32_t *b, int64_t n);
/* 1 if a and b are the same partition up to renumbering (0 maps to 0). */
int tu_same_up_to_renumbering(const uint32_t *a, const uint32_t *b, int64_t n);

/* A whole dataset of an HDF5 file as float32 / uint32 (converted by HDF5); *n gets the element
 * count. NULL (with a message on stderr) if the file or dataset is missing (tu_need applies to
 * a path under the data root). */
float *tu_h5_read_f32(const char *path, const char *dset, int64_t *n);
uint32_t *tu_h5_read_u32(const char *path, const char *dset, int64_t *n);
/* A scalar numeric attribute of the root group as double, or NAN if absent. */
double tu_h5_attr(const char *path, const char *name);

/* Seconds on a monotonic clock (test timings). */
double tu_now(void);

/* The pids of the running cellpose-mpi processes (the ranks, not mpirun) whose command line
 * contains needle, in /proc order, at most max; returns how many. */
int tu_cellpose_pids(const char *needle, long *pids, int max);

/* Complete network blocks ("dp.z0.*" of a plane, "dp3.*" of a volume; not "*.tmp") in a --block
 * run's work folder. */
int tu_blocks_on_disk(const char *work);

/* Runs a shell command, returns its exit status (or -1), output to the test's stdout. */
int tu_run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* A fresh temporary directory for this test (removed by the caller's rm -rf, kept on failure). */
const char *tu_tmpdir(void);

#include <stdio.h>
#endif
