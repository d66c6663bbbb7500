/* Model packages and the backends that run them.
 *
 * A package is a directory with manifest.ini and three ONNX modules
 * (docs/model.md): vision (image -> [surface logit, embedding], and
 * optionally a second output, the defect map), signal
 * (spectral features -> [vibration logit, embedding]) and decision
 * (concatenated vision and signal outputs -> fused logit). The manifest
 * carries each file's SHA-256; a package whose files do not match, whose
 * modules do not load, or whose shapes disagree with the manifest is
 * refused whole, so a model that is running is never replaced by a broken
 * one. */
#ifndef VIGIL_INFERENCE_INFERENCE_H
#define VIGIL_INFERENCE_INFERENCE_H

#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "core/part.h"

struct fusion_image_spec;     /* fusion/fusion.h */
struct fusion_dark_spec;

#define INFER_ENOBASE 40000
#define INFER_EMANIFEST (-(INFER_ENOBASE + 1))  /* manifest missing or invalid */
#define INFER_ECHECKSUM (-(INFER_ENOBASE + 2))  /* a module's SHA-256 differs */
#define INFER_EMODULE (-(INFER_ENOBASE + 3))    /* a module failed to load or run */
#define INFER_ESHAPE (-(INFER_ENOBASE + 4))     /* output size differs from the manifest */
#define INFER_EBACKEND (-(INFER_ENOBASE + 5))   /* unknown backend name */
#define INFER_EPRECISION (-(INFER_ENOBASE + 6)) /* the backend does not run that precision */
#define INFER_ECALIB (-(INFER_ENOBASE + 7))     /* int8 calibration missing, corrupt or
						 * made for other modules */
#define INFER_EGATE (-(INFER_ENOBASE + 8))      /* held-out figures miss the [model]
						 * minimums (infer_gate_check) */

/* The arithmetic a package runs in ([model] precision). */
enum infer_precision {
	INFER_FP32,                /* float32 throughout */
	INFER_FP16,                /* half weights and activations, float accumulation */
	INFER_BF16,                /* bfloat16 likewise */
	INFER_INT8,                /* Conv and Gemm in int8 (weights per output channel,
				    * inputs per tensor), int32 accumulation; the rest in
				    * float32; needs the package's INFER_CALIB_FILE */
	INFER_PRECISION_COUNT
};

/* "fp32", "fp16", "bf16", "int8" in enum order, NULL-terminated (for
 * config_get_choice). */
extern const char *const infer_precision_names[];
/* 0, or -EINVAL when name is none of infer_precision_names. */
int infer_precision_parse(const char *name, enum infer_precision *p);

/* What a package's vision score means ([vision] score): the probability
 * of a defect of the kinds it was shown (a supervised package), or how
 * far the part departs from the good parts it was trained on alone
 * (tools/train.py --good-only); its map means the same. */
enum infer_vision_score {
	INFER_VISION_DEFECT,
	INFER_VISION_ANOMALY,
	INFER_VISION_FUSED,        /* the higher of the two (tools/fuse.py) */
	INFER_VISION_SCORE_COUNT
};

/* "defect", "anomaly", "fused" in enum order, NULL-terminated. */
extern const char *const infer_vision_score_names[];

/* The gate a package's held-out figures ([metrics]) must pass before
 * vigild runs it: [model] min_heldout_parts, min_heldout_accuracy,
 * max_heldout_escape_rate, max_heldout_false_reject_rate, in this order. */
enum infer_gate_limit {
	INFER_GATE_PARTS,
	INFER_GATE_ACCURACY,
	INFER_GATE_ESCAPE_RATE,
	INFER_GATE_FALSE_REJECT_RATE,
	INFER_GATE_LIMITS
};
struct infer_gate {
	double limit[INFER_GATE_LIMITS];
	/* "FILE:LINE: [model] KEY" where the configuration sets that limit,
	 * NULL where it is the default. A limit that is set demands its
	 * figure: a package without it is refused. */
	char *where[INFER_GATE_LIMITS];
};

/* [model] as infer_options_read reads it (infer-config.c); the settings own
 * their strings. */
#define INFER_DEFAULT_MAX_BATCH 1  /* max_batch's default */
#define INFER_MAX_BATCH 64         /* and its largest value */
struct infer_settings {
	char *package;             /* package: the model package's directory, required */
	char *backend;             /* backend (INFER_BACKEND_AUTO); an unknown one is
				    * refused by infer_model_open, naming what this
				    * build has */
	enum infer_precision precision; /* precision (fp32), one backend runs */
	int threads;               /* threads (infer_default_threads()): of a model
				    * run, 0 for the library's own default */
	int max_batch;             /* parts one model run may take */
	struct infer_gate gate;    /* what a package's [metrics] must show */
};
/* Reads [model] of cfg into *s, which it overwrites: 0, or -EINVAL with
 * *err (g_free it) naming the file, line and key. *s owns what it holds
 * even on failure: free it with infer_settings_clear (NULL ok). */
int infer_options_read(const config *cfg, struct infer_settings *s, char **err);
void infer_settings_clear(struct infer_settings *s);

/* The int8 calibration beside a package's manifest (docs/inference-engine.md). */
#define INFER_CALIB_FILE "calibration-int8.ini"

/* [metrics] of a package: its own figures on parts it never saw
 * (docs/model.md). parts 0 (no [metrics], or heldout_parts=0): it has
 * none, and the rates are NAN; so is a rate the manifest leaves out. */
struct infer_metrics {
	int parts;                 /* heldout_parts */
	double accuracy;           /* heldout_accuracy */
	double escape_rate;        /* heldout_escape_rate */
	double false_reject_rate;  /* heldout_false_reject_rate */
};

/* What a package declares about its inputs and operating point. */
struct infer_info {
	char *name;
	char *version;
	int input_width, input_height;
	float mean, std;
	char *features;            /* signal feature layout, e.g. vigil-sigfeat-v1 */
	double rate_hz;
	int window;
	int signal_dim;
	int vision_out, signal_out;
	float reject, marginal;    /* on the fused probability */
	float vision_threshold, signal_threshold;
	/* The same input size, mean and std with [vision] resize (how the
	 * frame is fitted; stretch when the key is absent), in the form
	 * fusion_image_input takes; owned by the model. */
	const struct fusion_image_spec *image;
	/* [vision] heatmap_width/_height: the defect map's size, 0 when the
	 * package has no heatmap_output. */
	int heatmap_width, heatmap_height;
	/* [vision] anomaly_map_output set: a fused package (tools/fuse.py)
	 * whose vision module also gives the good-only model's anomaly map,
	 * of the heatmap's size, beside the supervised defect map. */
	int anomaly_map;
	/* [vision] score: what vision_score means, which decides how QA reads
	 * it and its map (infer_vision_score_names). */
	enum infer_vision_score vision_score;
	struct infer_metrics metrics;
	/* [dark], when dark is set: the package's dark-residual score
	 * (fusion_dark_score; docs/model.md), computed on the frame on the
	 * CPU in every path. It joins the model's scores in units of the
	 * calibration's good parts, where each score's upper tail lies:
	 * z = (score - dark_median) / dark_scale (the scale: their 90th
	 * percentile less their median), and the vision and the fused logit
	 * each become the higher of their own and their good parts' median +
	 * z x scale (dark_vision_*, dark_fused_*). The maximum then flags a
	 * part where either score stands as far into the good parts' tail.
	 * dark_scale 0: the score is measured, not joined (what
	 * tools/recalibrate.py --dark reads to choose the rest). */
	int dark;
	const struct fusion_dark_spec *dark_spec;  /* owned by the model */
	float dark_median, dark_scale;
	float dark_vision_median, dark_vision_scale;
	float dark_fused_median, dark_fused_scale;
};

/* Whether info's held-out figures pass gate: 0, or INFER_EGATE with *err
 * (g_free) naming the figure, its value, the limit and where the limit
 * comes from (the configuration's FILE:LINE, or the default). A package
 * without a figure passes a limit left at its default, with *warning
 * (g_free; NULL when there is nothing to warn of) saying what went
 * unchecked, and is refused by a limit the configuration sets. */
int infer_gate_check(const struct infer_gate *gate, const struct infer_info *info,
		     char **err, char **warning);

struct infer_output {
	float score;               /* fused defect probability */
	float vision_score;
	float signal_score;
	enum vigil_verdict verdict;
	enum vigil_defect_class defect_class;
	unsigned flags;            /* VIGIL_FLAG_VISION_DEFECT / _SIGNAL_DEFECT */
	/* The vision module's defect map for the image just run: row-major,
	 * heatmap_w x heatmap_h values in [0, 1] over the model's input
	 * (after resize). NULL when the package has none. Owned by the model,
	 * valid until its next infer_model_run. */
	const float *heatmap;
	int heatmap_w, heatmap_h;
	/* A fused package's anomaly map (infer_info.anomaly_map), the good-only
	 * model's, heatmap_w x heatmap_h in [0, 1]; heatmap is then the
	 * supervised model's. NULL otherwise. Owned as heatmap is. */
	const float *anomaly_map;
	/* The frame's dark-residual score (infer_info.dark), joined into the
	 * scores above; NAN when the package has none or it was not computed
	 * (infer_model_run_batch: see infer_model_join_dark). */
	float dark;
};

/* A backend: the engine that runs a package's modules (opencv,
 * reference, cuda), chosen by name; its table is private to inference/. */
struct infer_backend;

/* The backend this build has under name, or NULL. */
const struct infer_backend *infer_backend_find(const char *name);

/* Whether be runs precision p (float32 always). */
int infer_backend_has_precision(const struct infer_backend *be, enum infer_precision p);
/* The precisions be runs, e.g. "fp32, int8"; owned by the caller (g_free). */
char *infer_backend_precision_list(const struct infer_backend *be);

typedef struct infer_model infer_model;

/* [model] backend = auto: infer_model_open loads the package on every CPU
 * backend that runs the precision (infer_auto_candidates), times each on
 * a synthetic part and keeps the fastest. */
#define INFER_BACKEND_AUTO "auto"

/* The backends auto chooses among for p, e.g. "opencv, onednn, reference";
 * "" when none (owned by the caller, g_free). GPU backends are never
 * among them; the reference executor is, last, in fp32 and int8 only,
 * and is loaded only when none before it loads. */
char *infer_auto_candidates(enum infer_precision p);

/* [model] threads' default: the CPUs less one, at least 1, so that the
 * line's other threads keep a core (docs/inference-engine.md). */
int infer_default_threads(void);

/* Loads and checks a package (as infer_model_load_at) on backend, a name
 * or INFER_BACKEND_AUTO, at precision p, its runs on threads threads (0:
 * the library's default; applied by each run on the thread that runs it:
 * OpenMP's count for onednn, OpenCV's process-wide one for opencv). auto
 * costs a load and up to 13 runs (0.3 s of timed runs at most) per
 * candidate timed. NULL with *err (g_free) and *code (may be NULL) when
 * refused; with auto, also when no candidate can run it, each one's
 * reason in *err. */
infer_model *infer_model_open(const char *dir, const char *backend, enum infer_precision p,
			      int threads, char **err, int *code);

/* The backend m runs on ("onednn"), and why, for the log: "set in [model]
 * backend" or, with auto, "auto: 5.9 ms a part, opencv 13.1 ms" (the
 * others' times as measured). Owned by m. */
const char *infer_model_backend(const infer_model *m);
const char *infer_model_choice(const infer_model *m);

/* Loads and checks a package (checksums, module loading, a trial run of
 * each module to confirm the declared shapes). NULL with *err (g_free) and
 * *code (an INFER_E* value, may be NULL) when refused. */
infer_model *infer_model_load(const char *dir, const char *backend, char **err, int *code);
/* The same at precision p (backend may be INFER_BACKEND_AUTO, as
 * infer_model_open with the library's threads): INFER_EPRECISION when the
 * backend does not run
 * it; for INFER_INT8, INFER_ECALIB when the package's INFER_CALIB_FILE is
 * missing, fails its checksum or was made for other module files. */
infer_model *infer_model_load_at(const char *dir, const char *backend, enum infer_precision p,
				 char **err, int *code);
void infer_model_free(infer_model *m);

const struct infer_info *infer_model_info(const infer_model *m);

/* Runs the three modules on one part. image: input_width*input_height
 * floats (fusion_image_input with the info's image);
 * sigfeat: signal_dim floats. Not thread-safe per model. */
int infer_model_run(infer_model *m, const float *image, const float *sigfeat,
		    struct infer_output *out, char **err);

/* infer_model_run on n >= 1 parts in one forward pass of each module:
 * images holds n images one after another, sigfeats n feature vectors,
 * and out[i] is part i's result, as infer_model_run would give it (to
 * float rounding: a backend may sum in another order at another batch).
 * out[i].heatmap points into the model's buffer, valid until the next run.
 * On failure no out[i] is set and the whole batch has failed. */
int infer_model_run_batch(infer_model *m, int n, const float *images, const float *sigfeats,
			  struct infer_output *out, char **err);

/* One camera frame of a part as the line has it: 8-bit gray, row-major. */
struct infer_frame {
	const uint8_t *data;
	int width, height, stride;
};

/* infer_model_run_batch from a part's raw data: n images, frames[i]
 * judged with the features of windows[i] (the package's window samples,
 * in g; the cameras of one part share a pointer). A backend that runs on
 * the GPU gets frame and window there once: the model input and features
 * are computed on the device (fusion/'s arithmetic, cuda-prep.h) and the
 * modules read them in place. Others compute them with fusion/ on the CPU
 * (fusion_image_input, fusion_sigfeat_compute). A frame that
 * cannot be prepared or a non-finite window fails the batch (-EINVAL). */
int infer_model_run_raw(infer_model *m, int n, const struct infer_frame *frames,
			const float *const *windows, struct infer_output *out, char **err);

/* A package with [dark] scores each frame as well as running its
 * modules. infer_model_run_raw does both; a caller of
 * infer_model_run_batch that has the frames computes the score with
 * infer_model_dark (any thread: it reads only the package's settings,
 * so the line computes it where it prepares the image) and joins it into
 * the frame's result with infer_model_join_dark, which sets dark, raises
 * the vision and fused scores, and judges the verdict, flags and class
 * again. *dark is NAN, and the join changes nothing, for a package
 * without [dark]. infer_model_dark: 0, or -EINVAL when the frame cannot
 * be scored (too small, bad stride). */
int infer_model_dark(const infer_model *m, const struct infer_frame *f, float *dark);
void infer_model_join_dark(const infer_model *m, float dark, struct infer_output *out);

/* Whether infer_model_run_raw computes the inputs on the device, so a
 * caller need not compute features for it. */
int infer_model_prepares_on_device(const infer_model *m);

/* Verdict from a fused probability and the package's thresholds. */
enum vigil_verdict infer_verdict(const struct infer_info *info, float p);

const char *infer_strerror(int code);

/* INT8 calibration (docs/inference-engine.md): the package's modules run in
 * float32 on the reference executor over calibration parts; each Conv and
 * Gemm gets its input's range (per tensor) and its weights' scales (per
 * output channel), or is kept in float32 where int8 measures too coarse,
 * written to DIR/INFER_CALIB_FILE with the module files' SHA-256 and a
 * checksum of its own. */
enum infer_range {
	INFER_RANGE_MAX,           /* the largest |x| seen */
	INFER_RANGE_PERCENTILE,    /* that percentile of |x| over every value seen */
};

typedef struct infer_calibrator infer_calibrator;

/* NULL with *err (g_free) when the package does not load. */
infer_calibrator *infer_calibrator_new(const char *dir, enum infer_range range,
				       double percentile, char **err);
void infer_calibrator_free(infer_calibrator *c);
/* One calibration part, inputs as for infer_model_run (copied). */
int infer_calibrator_add(infer_calibrator *c, const float *image, const float *sigfeat,
			 char **err);
/* Measures the parts added and writes the file (atomically); note is one
 * line recorded in it (e.g. the command). 0 or a negative code with *err. */
int infer_calibrator_write(infer_calibrator *c, const char *note, char **err);

#endif
