# The engine in src/ uses no MPI (issue 18): no MPI header, call, type or link target there; the
# parallel HDF5 writer and the MPI library's version live in mpi/ (Debian's parallel hdf5.h still
# includes mpi.h itself, which is HDF5's business).
add_test(NAME src_no_mpi WORKING_DIRECTORY ${CMAKE_SOURCE_DIR}
         COMMAND sh -c "! grep -nwE 'mpi[.]h|MPI_[A-Za-z_]+' src/*.[ch] src/CMakeLists.txt")
