# Progress lines: the module, then the real CLI on a pseudo-terminal, in a log, with --quiet and
# on 2 ranks (tests/test_progress.c).
cp_add_test(NAME progress_unit SOURCE test_progress.c LINK progress OpenMP::OpenMP_C ARGS unit)
foreach(t tty log quiet mpi)
  cp_add_test(NAME progress_${t} SOURCE test_progress.c ARGS ${t})
endforeach()
