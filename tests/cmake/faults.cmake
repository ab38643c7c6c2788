# Failures on purpose (tests/test_faults.c): a full disk (a real 1 MiB tmpfs, root only) and I/O
# errors at each write phase through an LD_PRELOAD shim (tests/faultshim.c -> libcpfault.so);
# a rank that fails alone (MPMD mpirun); SIGTERM/SIGUSR1 without --block.
add_library(cpfault MODULE faultshim.c)
target_link_libraries(cpfault PRIVATE dl)
# LD_PRELOADed into sanitized executables too: the shim itself stays uninstrumented.
target_compile_options(cpfault PRIVATE -fno-sanitize=all)
target_link_options(cpfault PRIVATE -fno-sanitize=all)
set(CP_FAULT_ENV "CP_FAULT_SHIM=$<TARGET_FILE:cpfault>")
foreach(t io_1 io_2 full_disk rank_fails signal_single signal_dir_1 signal_dir_2)
  cp_add_test(NAME faults_${t} SOURCE test_faults.c ARGS ${t} TIMEOUT 600)
  set_property(TEST faults_${t} APPEND PROPERTY ENVIRONMENT "${CP_FAULT_ENV}")
  add_dependencies(test_faults cpfault)
endforeach()
set_tests_properties(faults_full_disk PROPERTIES SKIP_RETURN_CODE 77)
