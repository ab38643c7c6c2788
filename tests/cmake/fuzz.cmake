# The reproducers of what fuzzing found (tests/fuzz/regress/<target>/), replayed through each fuzz
# target's entry point by tests/fuzz/replay_main.c with this build's compiler (and sanitizers in
# scripts/test.sh --sanitize), each with the reader's message it must now give. The fuzzing itself
# is tests/fuzz/run.sh (clang + libFuzzer, docs/fuzzing.md), which replays them under clang's
# UBSan too (they are seeds of its corpora).
set(CP_FUZZ_DIR ${CMAKE_CURRENT_SOURCE_DIR}/fuzz)
foreach(spec tiff:tiff_io pth:pth jobfile:jobfile flows_h5:h5store)
  string(REPLACE ":" ";" parts ${spec})
  list(GET parts 0 target)
  list(GET parts 1 module)
  add_executable(fuzz_replay_${target} ${CP_FUZZ_DIR}/fuzz_${target}.c ${CP_FUZZ_DIR}/fuzz_common.c
                 ${CP_FUZZ_DIR}/replay_main.c)
  target_link_libraries(fuzz_replay_${target} PRIVATE cp_${module})
endforeach()

# target|reproducer|what the reader must say (CP_FUZZ_VERBOSE prints it)
foreach(spec
    "tiff|tile_larger_than_page.tif|page 0: a tile of 16 x 67108880 pixels .* corrupt TileWidth/TileLength"
    "tiff|imagej_last_line_ub.tif|open: .*: page 2: cannot read its directory"
    "flows_h5|plane_window_ub.h5|window: ok"
    "flows_h5|hdf5_dopen_leak.h5|sizes: .*: no dataset flows"
    "flows_h5|chunk_larger_than_dataset.h5|data: .*: /flows: corrupt layout \\(chunks larger than the dataset\\)"
    "flows_h5|chunk_over_dims_extendible.h5|data: .*: /flows: corrupt layout \\(chunks larger than the dataset\\)"
    "flows_h5|chunk_index_over_file.h5|data: .*: /cellprob: 4294901760 bytes stored in a 15958-byte file"
    "flows_h5|huge_dims.h5|sizes: .*: /flows of 1 x 2 x 2097152 x 2097152: empty or over 2\\^40 values"
    "jobfile|libconfig_string_leak.cfg|load: .*:1: syntax error"
    "pth|zip_size_over_file.pth|zip entry 'm/data/0': 4293918720 bytes stored in a 599-byte file"
    "pth|zero_stride_huge.pth|tensor 'w': 1073741824 elements from a storage of 1 \\(zero strides\\)")
  string(REPLACE "|" ";" parts "${spec}")
  list(GET parts 0 target)
  list(GET parts 1 file)
  list(GET parts 2 expect)
  get_filename_component(name ${file} NAME_WE)
  add_test(NAME fuzz_regress_${target}_${name}
           COMMAND fuzz_replay_${target} ${CP_FUZZ_DIR}/regress/${target}/${file})
  set_tests_properties(fuzz_regress_${target}_${name} PROPERTIES TIMEOUT 60
    ENVIRONMENT "${CP_TEST_ENV};CP_FUZZ_VERBOSE=1" PASS_REGULAR_EXPRESSION "${expect}"
    FAIL_REGULAR_EXPRESSION "runtime error|ERROR: AddressSanitizer|ERROR: LeakSanitizer")
endforeach()
