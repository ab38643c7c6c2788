# The sbatch scripts of slurm/ on a real one-node SLURM cluster started by the test
# (tests/slurm/test_slurm.sh: dataset array, scaling study, large image, time limit -> requeue ->
# resume). Skipped (exit 77) only where the daemons cannot run (not root); on CI a skip fails.
add_test(NAME slurm COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/slurm/test_slurm.sh
         ${CMAKE_BINARY_DIR} ${CMAKE_SOURCE_DIR} ${CP_SHARED_DEFAULT})
set_tests_properties(slurm PROPERTIES TIMEOUT 1200 SKIP_RETURN_CODE 77 RUN_SERIAL TRUE LABELS heavy
                     ENVIRONMENT "CELLPOSE_MPI_SHARED_DEFAULT=${CP_SHARED_DEFAULT};CP_TEST_DATA=${CP_TEST_DATA}")
