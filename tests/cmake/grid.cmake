# The block dealing of mpi/grid.c (tests/test_grid.c): ranges, owners, balance.
cp_add_test(NAME grid_dealing SOURCE test_grid.c LINK grid TIMEOUT 120)
