/* Real parts staged for the simulated line: vigil-sim stage.
 *
 * sim_stage reads a line manifest (tools/manifest.h: real parts, images of
 * any size and format, windows of WAV recordings) and writes into out_dir
 * the folder `vigil-sim generate` writes (sim-synth.h), so that `vigil-sim
 * run` and vigild's file pipelines replay real parts as they replay
 * synthetic ones:
 *   parts.csv      the line manifest header; part i's row keeps the
 *                  source's part_id, split, image_class, vib_class and
 *                  defect (the truth run scores against), its paths point
 *                  into out_dir and vib_start is i * window.
 *   images/part-NNNNN.png  the source image decoded to 8-bit gray as the
 *                  offline tools decode it (cvw_imread_gray) at its own
 *                  size: vigild resizes it as it resizes a camera frame,
 *                  so the model sees what vigil-eval feeds it.
 *   masks/part-NNNNN.png   the source's mask, 8-bit gray, where it has one.
 *   vibration.wav  mono IEEE float32 at rate_hz; part i's window is
 *                  samples [i * window, (i + 1) * window), what a
 *                  `mode = sequence` vibration source with window = stride
 *                  hands to part i.
 * Every part must have the same window length (vib_len), recordings must
 * already be at rate_hz (no resampling) and the manifest needs its defect
 * column. parts.csv is written last: a staging that fails leaves none. */
#ifndef VIGIL_TOOLS_SIM_STAGE_H
#define VIGIL_TOOLS_SIM_STAGE_H

/* The strings are borrowed for the call. */
struct sim_stage_opts {
	const char *manifest;      /* line manifest CSV */
	const char *data_root;     /* its paths are relative to this; NULL: the manifest's folder */
	const char *out_dir;       /* created if missing */
	const char *split;         /* only rows of this split; NULL: all */
	unsigned limit;            /* stage the first limit rows; 0: all */
	double rate_hz;            /* the recordings' and the staged WAV's rate */
};

/* Returns 0 with *staged the parts written, or a negative errno code with
 * *err (g_free) naming the manifest's file, line and column for a bad row,
 * the file for a write that failed. */
int sim_stage(const struct sim_stage_opts *o, unsigned *staged, char **err);

#endif
