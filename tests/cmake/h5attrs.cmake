# The output's string attributes read back with h5py as str (tests/test_h5attrs.c).
foreach(t one mpi)
  cp_add_test(NAME h5attrs_utf8_${t} SOURCE test_h5attrs.c ARGS ${t} TIMEOUT 300)
endforeach()
