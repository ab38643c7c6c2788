# Bad input through the real CLI (tests/test_cli_errors.c).
cp_add_test(NAME cli_errors SOURCE test_cli_errors.c LINK tiff_io)
