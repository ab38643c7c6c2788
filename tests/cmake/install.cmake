# --version and `cmake --install` into a temporary prefix, then the installed tree in use
# (tests/test_install.c).
cp_add_test(NAME version SOURCE test_install.c ARGS version TIMEOUT 120)
cp_add_test(NAME install SOURCE test_install.c ARGS install ${CMAKE_COMMAND} TIMEOUT 300)
