# Agreement on a phase's status over ranks (tests/test_agree.c).
cp_add_mpi_test(NAME agree_np2 SOURCE test_agree.c NP 2 LINK agree TIMEOUT 60)
