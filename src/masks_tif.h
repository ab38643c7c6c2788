/* The --save_tif masks: <stem>_cp_masks.tif, uint32 pages, written from the /labels of a
 * committed output, one plane at a time (the same code for a plane, a stack and a volume, on one
 * process or after a run over blocks). */
#ifndef CP_MASKS_TIF_H
#define CP_MASKS_TIF_H

/* Writes the /labels planes of h5_path as the pages of tif (through tif.partial, renamed when
 * complete: no half-written file under the final name). Memory: one plane. Errors: those of
 * cp_labels_open and cp_tiff_write_u32_pages, CP_ENOMEM. */
int cp_masks_tif_save(const char *h5_path, const char *tif, char *err);

#endif
