/* Synthetic inspected parts with ground truth, for vigil-sim and training.
 *
 * sim_generate writes into out_dir (created if missing):
 *   parts.csv      header "part_id,split,image,mask,image_class,vibration,
 *                  vib_start,vib_len,vib_class,defect", one row a part, paths
 *                  relative to out_dir: the line manifest format that real
 *                  data uses too.
 *   images/part-NNNNN.png  SIM_IMAGE_SIZE square 8-bit grayscale surface.
 *   masks/part-NNNNN.png   255 on defective pixels, all black for a good part.
 *   vibration.wav  mono IEEE float32 WAV at SIM_RATE_HZ, in g; part i's
 *                  window is samples [i*SIM_WINDOW, (i+1)*SIM_WINDOW).
 * image_class is free, scratch, pit, crack or stain; vib_class is normal,
 * outer_race, inner_race or ball; defect is 1 when either is not free/normal.
 *
 * Output depends only on the options: the same seed gives byte-identical
 * files, and part i is the same whatever the number of parts. */
#ifndef VIGIL_TOOLS_SIM_SYNTH_H
#define VIGIL_TOOLS_SIM_SYNTH_H

#include <stdint.h>

#define SIM_IMAGE_SIZE 192
#define SIM_RATE_HZ 12000
#define SIM_WINDOW 2048
#define SIM_SHAFT_HZ 29.95   /* 1797 rpm */

struct sim_gen_opts {
	const char *out_dir;
	unsigned parts;
	uint64_t seed;
	const char *split;     /* written into the split column */
	double p_surface;      /* probability of a surface defect, 0..1 */
	double p_vibration;    /* probability of a bearing fault, 0..1 */
};

/* Returns 0 or a negative errno code; on failure *err (when err is not
 * NULL) receives a message the caller frees with g_free. */
int sim_generate(const struct sim_gen_opts *o, char **err);

#endif
