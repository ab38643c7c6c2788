/* The program as an HPC site sees it:
 *   version  `cellpose-mpi --version`: the first line as always, then MPI, HDF5 (parallel),
 *            OpenBLAS, libtiff, libzip and libpng, each with a version; once under mpirun -n 2
 *   install  `cmake --install BUILD --prefix TMP`: bin/cellpose-mpi, the sbatch scripts, the
 *            scaling-study helper and the job files are there; the installed program runs from
 *            PATH (--version, a segmentation), and so does slurm/large_image.sbatch from a folder
 *            without build/ (it falls back to PATH); scaling_study.sbatch finds its installed
 *            helper
 * Arguments: version | install CMAKE_COMMAND. */
#include <hdf5.h>
#include <regex.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <tiffio.h>
#include <unistd.h>

#include "testutil.h"

#define MPIRUN "mpirun --oversubscribe -x OMP_NUM_THREADS=1"

static char dir[1024];

static char *slurp(const char *path)
{
    static char buf[65536];
    FILE *f = fopen(path, "rb");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    buf[n] = 0;
    if (f) fclose(f);
    return buf;
}

static int matches(const char *text, const char *pattern)
{
    regex_t re;
    if (regcomp(&re, pattern, REG_EXTENDED | REG_NEWLINE | REG_NOSUB)) return 0;
    int ok = regexec(&re, text, 0, NULL, 0) == 0;
    regfree(&re);
    return ok;
}

static int count(const char *text, const char *needle)
{
    int n = 0;
    for (const char *q = text; (q = strstr(q, needle)); q++) n++;
    return n;
}

/* Checks the --version text of the program `exe` (a path, or a name found on PATH). */
static void check_version(const char *exe, const char *env)
{
    /* stdout only: a sanitizer build may add its report to stderr at exit */
    int st = tu_run("%s %s --version > %s/v.txt 2> %s/v.err", env, exe, dir, dir);
    const char *v = slurp(tu_path("%s/v.txt", dir));
    printf("%s", v);
    TU_CHECK(st == 0, "%s --version: exit %d", exe, st);
    const char *first = "cellpose-mpi " CP_VERSION " (Cellpose 3.1.1.3 inference)\n";
    TU_CHECK(!strncmp(v, first, strlen(first)), "first line is not '%.*s'", (int)strlen(first) - 1,
             first);
    static const char *const libs[] = {"MPI", "HDF5", "OpenBLAS", "libtiff", "libzip", "libpng"};
    for (size_t k = 0; k < sizeof libs / sizeof libs[0]; k++)
        TU_CHECK(matches(v, tu_path("^  %s +[^\n]*[0-9]+\\.[0-9]+", libs[k])),
                 "no line '  %s <version>'", libs[k]);
    unsigned a, b, c;
    H5get_libversion(&a, &b, &c);
    TU_CHECK(matches(v, tu_path("^  HDF5 +%u\\.%u\\.%u \\(parallel\\)", a, b, c)),
             "HDF5 line lacks the running version %u.%u.%u (parallel)", a, b, c);
    char tiff[128];
    snprintf(tiff, sizeof tiff, "%s", TIFFGetVersion());
    tiff[strcspn(tiff, "\n")] = 0;
    TU_CHECK(strstr(v, tiff) != NULL, "libtiff line lacks '%s'", tiff);
    TU_CHECK(matches(v, "^  MPI +Open MPI v[0-9]") || matches(v, "^  MPI +[A-Za-z]"),
             "MPI line does not start with the library's name");
    TU_CHECK(matches(v, "^  OpenBLAS +OpenBLAS [0-9][^\n]*\\(core [A-Za-z0-9]+\\)"),
             "OpenBLAS line lacks its configuration or core");
}

static void version(void)
{
    const char *exe = tu_path("%s/cellpose-mpi", tu_build_dir());
    check_version(exe, "");
    int st = tu_run(MPIRUN " -n 2 %s --version > %s/v2.txt 2> %s/v2.err", exe, dir, dir);
    const char *v = slurp(tu_path("%s/v2.txt", dir));
    TU_CHECK(st == 0 && count(v, "cellpose-mpi ") == 1 && count(v, "  libpng ") == 1,
             "under mpirun -n 2: exit %d, printed %d times", st, count(v, "cellpose-mpi "));
}

static int is_file(const char *path, int executable)
{
    struct stat s;
    return !stat(path, &s) && S_ISREG(s.st_mode) && (!executable || (s.st_mode & S_IXUSR));
}

static void install(const char *cmake)
{
    char prefix[2048], model[4096], img[4096]; /* tu_path's buffers are reused */
    snprintf(prefix, sizeof prefix, "%s/prefix", dir);
    int st = tu_run("%s --install %s --prefix %s > %s/install.txt 2>&1", cmake, tu_build_dir(),
                    prefix, dir);
    TU_CHECK(st == 0, "cmake --install failed (%d): %s", st, slurp(tu_path("%s/install.txt", dir)));
    static const char *const files[] = {
        "bin/cellpose-mpi", "share/cellpose-mpi/slurm/large_image.sbatch",
        "share/cellpose-mpi/slurm/dataset_array.sbatch",
        "share/cellpose-mpi/slurm/scaling_study.sbatch",
        "share/cellpose-mpi/slurm/scaling_study.py", "share/cellpose-mpi/jobs/whole_slide.cfg",
        "share/cellpose-mpi/jobs/dataset.cfg", "share/cellpose-mpi/jobs/protrusions.cfg",
        "share/doc/cellpose-mpi/README.md"};
    for (size_t k = 0; k < sizeof files / sizeof files[0]; k++) {
        int exec = !strncmp(files[k], "bin/", 4) || strstr(files[k], ".sbatch") ||
                   strstr(files[k], ".py");
        TU_CHECK(is_file(tu_path("%s/%s", prefix, files[k]), exec), "%s%s is not installed",
                 files[k], exec ? " (executable)" : "");
    }
    /* from PATH, in a folder with no build/ */
    char env[8192];
    snprintf(env, sizeof env, "cd %s && PATH=%s/bin:$PATH", dir, prefix);
    check_version("cellpose-mpi", env);
    snprintf(model, sizeof model, "%s/models/tiny_random_nbase8_seed7.pth", tu_shared());
    snprintf(img, sizeof img, "%s/reference/random_cp3_seed0_synth512/input.tif", tu_shared());
    st = tu_run("%s cellpose-mpi --quiet --pretrained_model %s --image_path %s --chan 1 --chan2 2 "
                "--output %s/installed.h5", env, model, img, dir);
    int64_t n = 0;
    uint32_t *lab = tu_h5_read_u32(tu_path("%s/installed.h5", dir), "labels", &n);
    TU_CHECK(st == 0 && lab && n == 512 * 512, "installed program: exit %d, %lld labels", st,
             (long long)n);
    free(lab);
    /* the sbatch script outside SLURM (mpirun launcher), program found on PATH */
    st = tu_run("%s CP_LAUNCHER=mpirun CP_MODEL=%s CP_IMAGE=%s CP_OUTPUT=%s/sbatch.h5 bash "
                "%s/share/cellpose-mpi/slurm/large_image.sbatch --quiet --chan 1 --chan2 2 "
                "> %s/sbatch.txt 2>&1", env, model, img, dir, prefix, dir);
    const char *log = slurp(tu_path("%s/sbatch.txt", dir));
    TU_CHECK(st == 0 && is_file(tu_path("%s/sbatch.h5", dir), 0) &&
                 strstr(log, ": cellpose-mpi --pretrained_model"),
             "large_image.sbatch with the installed program on PATH: exit %d\n%s", st, log);
    /* scaling_study.sbatch finds the installed helper (a stand-in python checks the path) */
    FILE *f = fopen(tu_path("%s/fakepy", dir), "w");
    fputs("#!/bin/sh\ntest -f \"$1\" && echo \"helper $1\"\n", f);
    fclose(f);
    tu_run("chmod +x %s/fakepy", dir);
    st = tu_run("%s CP_PYTHON=%s/fakepy bash %s/share/cellpose-mpi/slurm/scaling_study.sbatch "
                "> %s/scaling.txt 2>&1", env, dir, prefix, dir);
    log = slurp(tu_path("%s/scaling.txt", dir));
    TU_CHECK(st == 0 && strstr(log, "helper ") &&
                 strstr(log, "/share/cellpose-mpi/slurm/scaling_study.py"),
             "scaling_study.sbatch did not find its installed helper: exit %d\n%s", st, log);
}

int main(int argc, char **argv)
{
    snprintf(dir, sizeof dir, "%s", tu_tmpdir());
    if (argc == 2 && !strcmp(argv[1], "version")) version();
    else if (argc == 3 && !strcmp(argv[1], "install")) install(argv[2]);
    else return fprintf(stderr, "usage: test_install version | install CMAKE_COMMAND\n"), 2;
    if (!tu_failed) tu_run("rm -rf %s", dir);
    return tu_finish();
}
