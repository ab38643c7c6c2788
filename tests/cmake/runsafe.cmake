# Concurrent runs, stale locks, resumed runs on another input or on damaged checkpoint blocks
# (tests/test_runsafe.c, issue 20) and label ids read back from blocks (tests/test_dcells.c).
foreach(t lock_held lock_stale lock_nofilelock kill_resume other_input corrupt_block)
  cp_add_test(NAME runsafe_${t} SOURCE test_runsafe.c LINK PkgConfig::TIFF ARGS ${t})
endforeach()
foreach(np 2 3)
  cp_add_mpi_test(NAME dcells_np${np} SOURCE test_dcells.c NP ${np} LINK dcells)
endforeach()
