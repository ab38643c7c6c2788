# Job files: the examples of jobs/, flags over the file, every kind of bad file (tests/test_jobfile.c).
cp_add_test(NAME jobfile SOURCE test_jobfile.c LINK cli jobfile params ARGS ${CMAKE_SOURCE_DIR}/jobs
            TIMEOUT 120)
