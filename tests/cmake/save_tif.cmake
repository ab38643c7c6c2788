# --save_tif (tests/test_save_tif.c): the masks TIFF equals /labels for a plane, a stitched stack
# on 2 ranks, a volume whole and over 3-D blocks, and saved 3-D flows over blocks.
foreach(t plane stack volume flows3)
  cp_add_test(NAME save_tif_${t} SOURCE test_save_tif.c ARGS ${t} TIMEOUT 600)
endforeach()
