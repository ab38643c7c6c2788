/* Job files (src/jobfile.c) and their use by the command line: every example of jobs/ parses and
 * validates, flags override the file wherever they stand, and every kind of bad file (syntax,
 * unknown key, wrong type, out of range, bad string, unreadable) gives a message with
 * file:line and the key, also through the real CLI (exit status 2).
 * Usage: test_jobfile JOBS_DIR */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cp_err.h"
#include "jobfile.h"
#include "testutil.h"

static char tmp[1024];

/* Writes text to <tmp>/name; returns the path (a static buffer: the next call overwrites it). */
static const char *write_job(const char *name, const char *text)
{
    static char path[2048];
    snprintf(path, sizeof path, "%s/%s", tmp, name);
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f)) fprintf(stderr, "cannot write %s\n", path), exit(2);
    return path;
}

/* Loads a bad job file; expects an error code and all the needles in the message. */
static void expect_bad(const char *name, const char *text, int code, const char *n1,
                       const char *n2, const char *n3)
{
    static cp_params p;
    char err[CP_ERR_LEN] = "";
    const char *path = write_job(name, text);
    cp_params_default(&p);
    int rc = cp_jobfile_load(path, &p, err);
    TU_CHECK(rc == code, "%s: rc %d, expected %d (%s)", name, rc, code, err);
    const char *needles[3] = {n1, n2, n3};
    for (int i = 0; i < 3; i++)
        if (needles[i])
            TU_CHECK(strstr(err, needles[i]) != NULL, "%s: message lacks '%s': %s", name,
                     needles[i], err);
    printf("ok  %-16s %s\n", name, err);
}

static void test_examples(const char *jobs)
{
    DIR *d = opendir(jobs);
    TU_CHECK(d != NULL, "cannot open %s", jobs);
    if (!d) return;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        size_t len = strlen(e->d_name);
        if (len < 5 || strcmp(e->d_name + len - 4, ".cfg")) continue;
        static cp_params p;
        char path[2048], err[CP_ERR_LEN] = "";
        snprintf(path, sizeof path, "%s/%s", jobs, e->d_name);
        char *argv[] = {"cellpose-mpi", "--job", path};
        int rc = cp_cli_parse(3, argv, &p, err);
        TU_CHECK(rc == CP_CLI_RUN, "%s: %s", path, err);
        TU_CHECK(!strcmp(p.job, path), "%s: job field '%s'", path, p.job);
        printf("ok  example %s parses and validates\n", e->d_name);
        n++;
    }
    closedir(d);
    TU_CHECK(n >= 3, "only %d examples in %s", n, jobs);
}

static void test_values_and_override(void)
{
    static cp_params p;
    char err[CP_ERR_LEN] = "", path[2048];
    snprintf(path, sizeof path, "%s",
             write_job("good.cfg", "# every type\n"
                                   "image_path = \"in.tif\";\n"
                                   "pretrained_model = \"m.pth\";\n"
                                   "niter = 2000;\n"
                                   "diameter = 17;          // an integer for a real key\n"
                                   "tile_overlap = 0.25;\n"
                                   "cellprob_threshold = -1.5;\n"
                                   "norm_percentile_lo = 2.0; norm_percentile_hi = 98;\n"
                                   "no_resample = true;\n"
                                   "save_tif = false;\n"
                                   "bsize = 512;\n"
                                   "block = 256;\n"
                                   "max_size_fraction = 1;\n"));
    char *a1[] = {"cellpose-mpi", "--job", path};
    int rc = cp_cli_parse(3, a1, &p, err);
    TU_CHECK(rc == CP_CLI_RUN, "good.cfg: %s", err);
    TU_CHECK(!strcmp(p.image_path, "in.tif") && !strcmp(p.pretrained_model, "m.pth"),
             "strings: '%s' '%s'", p.image_path, p.pretrained_model);
    TU_CHECK(p.niter == 2000 && p.bsize == 512 && p.block == 256, "ints: %lld %lld %lld",
             (long long)p.niter, (long long)p.bsize, (long long)p.block);
    TU_CHECK(p.diameter == 17.0 && p.tile_overlap == 0.25 && p.cellprob_threshold == -1.5 &&
                 p.norm_percentile_lo == 2.0 && p.norm_percentile_hi == 98.0 &&
                 p.max_size_fraction == 1.0,
             "reals: %g %g %g %g %g", p.diameter, p.tile_overlap, p.cellprob_threshold,
             p.norm_percentile_lo, p.norm_percentile_hi);
    TU_CHECK(p.no_resample == 1 && p.save_tif == 0 && p.min_size == 15 && p.flow_threshold == 0.4,
             "flags/defaults: %d %d %lld %g", p.no_resample, p.save_tif, (long long)p.min_size,
             p.flow_threshold);
    /* flags override the file, before or after --job */
    char *a2[] = {"cellpose-mpi", "--niter", "7",           "--job",     path,
                  "--diameter",   "40",      "--save_tif",  "--output",  "o.h5",
                  "--norm_percentile", "3",  "97"};
    rc = cp_cli_parse(13, a2, &p, err);
    TU_CHECK(rc == CP_CLI_RUN, "override: %s", err);
    TU_CHECK(p.niter == 7 && p.diameter == 40.0 && p.save_tif == 1 && !strcmp(p.output, "o.h5") &&
                 p.norm_percentile_lo == 3.0 && p.norm_percentile_hi == 97.0 &&
                 p.bsize == 512 && !strcmp(p.image_path, "in.tif"),
             "override: niter %lld diameter %g save_tif %d output '%s' pct %g %g bsize %lld",
             (long long)p.niter, p.diameter, p.save_tif, p.output, p.norm_percentile_lo,
             p.norm_percentile_hi, (long long)p.bsize);
    /* the file's value for an option that takes a value, not mistaken for --job */
    char *a3[] = {"cellpose-mpi", "--output", "--job", "--job", path};
    rc = cp_cli_parse(5, a3, &p, err);
    TU_CHECK(rc == CP_CLI_RUN && !strcmp(p.output, "--job") && p.niter == 2000,
             "--output --job: rc %d output '%s' (%s)", rc, p.output, err);
    /* a flag can replace the file's input: the cross checks see the merged result */
    char *a4[] = {"cellpose-mpi", "--job", path, "--dir", "folder"};
    rc = cp_cli_parse(5, a4, &p, err);
    TU_CHECK(rc == CP_EPARAM && strstr(err, "exactly one of --image_path"),
             "file image + flag dir: rc %d %s", rc, err);
    /* cross checks after the merge name the flag */
    char *a5[] = {"cellpose-mpi", "--job", path, "--bsize", "100"};
    rc = cp_cli_parse(5, a5, &p, err);
    TU_CHECK(rc == CP_EPARAM && strstr(err, "--bsize: 100 is not a multiple of 16"), "%s", err);
    printf("ok  values of every type, flags override (before and after --job)\n");
}

/* --do_3D and its parameters from a file; flow_threshold accepted with it; a flag over the file
 * that 3-D refuses is refused after the merge. */
static void test_volume(void)
{
    static cp_params p;
    char err[CP_ERR_LEN] = "", path[2048];
    snprintf(path, sizeof path, "%s",
             write_job("vol.cfg", "image_path = \"v.tif\";\npretrained_model = \"m.pth\";\n"
                                  "do_3D = true;\nanisotropy = 2.5;\nflow3D_smooth = 1;\n"
                                  "flow_threshold = 0.9;\n"));
    char *a1[] = {"cellpose-mpi", "--job", path};
    int rc = cp_cli_parse(3, a1, &p, err);
    TU_CHECK(rc == CP_CLI_RUN && p.do_3D == 1 && p.anisotropy == 2.5 && p.flow3D_smooth == 1.0 &&
                 p.flow_threshold == 0.9,
             "vol.cfg: rc %d (%s) do_3D %d anisotropy %g flow3D_smooth %g flow_threshold %g", rc,
             err, p.do_3D, p.anisotropy, p.flow3D_smooth, p.flow_threshold);
    char *a2[] = {"cellpose-mpi", "--job", path, "--stitch_threshold", "0.3"};
    rc = cp_cli_parse(5, a2, &p, err);
    TU_CHECK(rc == CP_EPARAM && strstr(err, "--stitch_threshold: not with --do_3D"), "%s", err);
    expect_bad("aniso_neg.cfg", "anisotropy = -1.0;\n", CP_EPARAM, "aniso_neg.cfg:1: key 'anisotropy'",
               "outside", NULL);
    printf("ok  --do_3D from a file, flow_threshold accepted, a refused flag over it\n");
}

static void test_errors(void)
{
    expect_bad("syntax.cfg", "niter = 20;\ndiameter = 30.0;\nbsize 224;\n", CP_EPARAM,
               "syntax.cfg:3: syntax error", NULL, NULL);
    expect_bad("quote.cfg", "image_path = \"a.tif;\nniter = 5;\n", CP_EPARAM, "quote.cfg:",
               "syntax error", NULL); /* libconfig reports it where the file ends */
    expect_bad("dup.cfg", "niter = 20;\nniter = 30;\n", CP_EPARAM, "dup.cfg:2: syntax error",
               "duplicate", NULL);
    expect_bad("unknown.cfg", "diameter = 30.0;\n\n# typo\nnitr = 20;\n", CP_EPARAM,
               "unknown.cfg:4: unknown key 'nitr'", NULL, NULL);
    expect_bad("group.cfg", "segmentation = { niter = 20; };\n", CP_EPARAM,
               "group.cfg:1: unknown key 'segmentation'", NULL, NULL);
    expect_bad("nested.cfg", "niter = 5;\njob = \"other.cfg\";\n", CP_EPARAM,
               "nested.cfg:2: key 'job'", "cannot name another", NULL);
    /* wrong types */
    expect_bad("float_int.cfg", "niter = 20.5;\n", CP_EPARAM, "float_int.cfg:1: key 'niter'",
               "must be an integer", NULL);
    expect_bad("str_int.cfg", "\nchan = \"1\";\n", CP_EPARAM, "str_int.cfg:2: key 'chan'",
               "must be an integer", NULL);
    expect_bad("str_real.cfg", "diameter = \"30\";\n", CP_EPARAM, "str_real.cfg:1: key 'diameter'",
               "must be a number", NULL);
    expect_bad("int_flag.cfg", "save_tif = 1;\n", CP_EPARAM, "int_flag.cfg:1: key 'save_tif'",
               "must be true or false", NULL);
    expect_bad("int_str.cfg", "output = 5;\n", CP_EPARAM, "int_str.cfg:1: key 'output'",
               "must be a string", NULL);
    expect_bad("list.cfg", "norm_percentile_lo = [1.0, 99.0];\n", CP_EPARAM,
               "list.cfg:1: key 'norm_percentile_lo'", "must be a number", NULL);
    /* out of range: the CLI's ranges */
    expect_bad("range_real.cfg", "\n\ntile_overlap = 0.9;\n", CP_EPARAM,
               "range_real.cfg:3: key 'tile_overlap'", "0.9 is outside [0.05, 0.5]", NULL);
    expect_bad("range_int.cfg", "chan = 7;\n", CP_EPARAM, "range_int.cfg:1: key 'chan'",
               "outside [0, 4]", NULL);
    expect_bad("range_neg.cfg", "niter = -1;\n", CP_EPARAM, "range_neg.cfg:1: key 'niter'",
               "outside", NULL);
    expect_bad("range_big.cfg", "niter = 4294967296L;\n", CP_EPARAM, "range_big.cfg:1: key 'niter'",
               "4294967296 is outside", NULL);
    /* integers beyond 32 bits: libconfig 1.5 keeps only the low 32 bits of an integer written
     * without L (4294967296 -> 0, 99999999999999999999 -> -1); the value as written counts */
    expect_bad("overflow.cfg", "niter = 99999999999999999999;\n", CP_EPARAM,
               "overflow.cfg:1: key 'niter'", "99999999999999999999", "64-bit");
    expect_bad("overflow_l.cfg", "niter = 99999999999999999999L;\n", CP_EPARAM,
               "overflow_l.cfg:1: key 'niter'", "99999999999999999999", "64-bit");
    expect_bad("big32.cfg", "\nniter = 4294967296;\n", CP_EPARAM, "big32.cfg:2: key 'niter'",
               "4294967296 is outside", NULL);
    expect_bad("instring.cfg", "output = \"niter = 5\"; niter = 4294967296;\n", CP_EPARAM,
               "instring.cfg:1: key 'niter'", "4294967296 is outside", NULL);
    expect_bad("neg32.cfg", "niter = -2147483649;\n", CP_EPARAM, "neg32.cfg:1: key 'niter'",
               "-2147483649 is outside", NULL);
    {
        static cp_params q;
        char e[CP_ERR_LEN] = "";
        cp_params_default(&q);
        int r = cp_jobfile_load(write_job("big_ok.cfg", "min_size = 5000000000; chan = 2;\n"), &q, e);
        TU_CHECK(r == 0 && q.min_size == 5000000000LL && q.chan == 2,
                 "big_ok.cfg: rc %d min_size %lld chan %lld (%s)", r, (long long)q.min_size,
                 (long long)q.chan, e);
    }
    /* a NUL in a string, escaped or as a byte: libconfig drops or cuts at it, changing the name */
    expect_bad("nul_escape.cfg", "image_path = \"a\\x00b.tif\";\n", CP_EPARAM,
               "nul_escape.cfg:1: key 'image_path'", "NUL", NULL);
    {
        const char *path = write_job("nul_byte.cfg", "");
        FILE *f = fopen(path, "wb");
        fwrite("output = \"a\0b.h5\";\n", 1, 19, f);
        fclose(f);
        static cp_params q;
        char e[CP_ERR_LEN] = "";
        cp_params_default(&q);
        int r = cp_jobfile_load(path, &q, e);
        TU_CHECK(r == CP_EPARAM && strstr(e, "nul_byte.cfg:1: ") && strstr(e, "NUL"),
                 "nul_byte.cfg: rc %d (%s), output '%s'", r, e, q.output);
        printf("ok  %-16s %s\n", "nul_byte.cfg", e);
    }
    /* wrong value for a string */
    expect_bad("empty_str.cfg", "pretrained_model = \"\";\n", CP_EPARAM,
               "empty_str.cfg:1: key 'pretrained_model'", "needs a value", NULL);
    /* unreadable */
    char missing[1100];
    snprintf(missing, sizeof missing, "%s/missing.cfg", tmp);
    static cp_params p;
    char err[CP_ERR_LEN] = "";
    cp_params_default(&p);
    int rc = cp_jobfile_load(missing, &p, err);
    TU_CHECK(rc == CP_EIO && strstr(err, "missing.cfg: cannot read the job file"), "rc %d %s", rc,
             err);
    printf("ok  missing file: %s\n", err);
}

/* The real program: a bad job file is exit status 2 with the file:line message on stderr. */
static void test_cli(void)
{
    char errf[1100], cmd[8192];
    snprintf(errf, sizeof errf, "%s/stderr.txt", tmp);
    struct {
        const char *name, *text, *needle;
    } cases[] = {
        {"cli_unknown.cfg", "pretrained_model = \"m.pth\";\nimage_path = \"x.tif\";\nnitr = 20;\n",
         "cli_unknown.cfg:3: unknown key 'nitr'"},
        {"cli_range.cfg", "bsize = 8;\n", "cli_range.cfg:1: key 'bsize': 8 is outside [16, 4096]"},
        {"cli_syntax.cfg", "niter = ;\n", "cli_syntax.cfg:1: syntax error"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const char *path = write_job(cases[i].name, cases[i].text);
        /* detect_leaks=0 for the child: under the sanitizers, LeakSanitizer's tracer crashes
         * at exit in an Open MPI program that used libconfig (newlocale/uselocale; no leak is
         * involved). ASan proper stays on, and this process checks jobfile.c for leaks. */
        snprintf(cmd, sizeof cmd,
                 "ASAN_OPTIONS=$ASAN_OPTIONS:detect_leaks=0 %s/cellpose-mpi --job %s --quiet "
                 "2>%s >/dev/null", tu_build_dir(), path, errf);
        int st = tu_run("%s", cmd);
        char msg[2048] = "";
        FILE *f = fopen(errf, "r");
        if (f) {
            size_t n = fread(msg, 1, sizeof msg - 1, f);
            msg[n] = 0;
            fclose(f);
        }
        TU_CHECK(st == 2, "%s: exit %d, expected 2 (%s)", cases[i].name, st, msg);
        TU_CHECK(strstr(msg, "cellpose-mpi: error: ") && strstr(msg, cases[i].needle),
                 "%s: stderr lacks '%s': %s", cases[i].name, cases[i].needle, msg);
        printf("ok  CLI exit %d: %s", st, msg);
    }
    /* a flag fixes what the file lacks: the run reaches the model loader (exit 1, not 2) */
    const char *path = write_job("cli_partial.cfg", "image_path = \"/nonexistent.tif\";\n");
    int st = tu_run("ASAN_OPTIONS=$ASAN_OPTIONS:detect_leaks=0 %s/cellpose-mpi --job %s "
                    "--pretrained_model /nonexistent.pth --quiet "
                    "2>/dev/null >/dev/null", tu_build_dir(), path);
    TU_CHECK(st == 1, "file + flag: exit %d, expected 1 (valid parameters, missing model)", st);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: test_jobfile JOBS_DIR\n");
        return 2;
    }
    snprintf(tmp, sizeof tmp, "%s", tu_tmpdir());
    test_examples(argv[1]);
    test_values_and_override();
    test_volume();
    test_errors();
    test_cli();
    int rc = tu_finish();
    if (!rc) tu_run("rm -rf %s", tmp);
    return rc;
}
