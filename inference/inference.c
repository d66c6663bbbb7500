#include "inference/inference.h"

#include <errno.h>
#include <glib.h>
#include <limits.h>
#include <math.h>
#include <string.h>

#include "core/config.h"
#include "fusion/fusion.h"
#include "inference/infer-engine.h"
#include "inference/infer-private.h"
#ifdef VIGIL_HAVE_CUDA
#include "inference/cuda-prep.h"
#endif

enum { MOD_VISION, MOD_SIGNAL, MOD_DECISION, MOD_COUNT };

static const char *const module_group[MOD_COUNT] = { "vision", "signal", "decision" };

struct infer_model {
	const struct infer_backend *backend;
	int threads;               /* [model] threads, 0: the library's own */
	char *choice;              /* why this backend: "set in [model] backend" or
				    * "auto: ..." (infer_model_choice) */
	struct infer_quant *quant[MOD_COUNT];  /* int8 only, while loading */
	void *module[MOD_COUNT];
	struct infer_info info;
	struct fusion_image_spec image;  /* info.image points here */
	struct fusion_dark_spec dark;    /* info.dark_spec points here */
	int decision_in;
	char *heatmap_output;      /* [vision] heatmap_output, NULL when absent */
	char *anomaly_map_output;  /* [vision] anomaly_map_output, NULL when absent */
	/* Per-run buffers for up to batch_cap parts, grown by the first run
	 * of a larger batch: each module's outputs, part after part, and the
	 * decision input (each part's vision then signal outputs). */
	int batch_cap;
	float *vision_buf, *signal_buf, *decision_buf, *fused;
	float *heatmap;            /* heatmap_width * heatmap_height floats per part */
	float *anomaly_map;        /* the same, when anomaly_map_output is set */
	/* infer_model_run_raw on the CPU: features and inputs of raw_cap images */
	fusion_sigfeat *sigfeat;
	int raw_cap;
	float *raw_images, *raw_features;
#ifdef VIGIL_HAVE_CUDA
	cuda_prep *prep;           /* ... on the GPU, for prep_cap images */
	int prep_cap;
#endif
};

static const struct infer_backend *const backends[] = {
	&infer_backend_opencv,
	&infer_backend_reference,
#ifdef VIGIL_HAVE_CUDA
	&infer_backend_cuda,
#endif
#ifdef VIGIL_HAVE_ONEDNN
	&infer_backend_onednn,
#endif
	NULL,
};

const char *const infer_precision_names[] = { "fp32", "fp16", "bf16", "int8", NULL };
const char *const infer_vision_score_names[] = { "defect", "anomaly", "fused", NULL };

int infer_precision_parse(const char *name, enum infer_precision *p)
{
	for (int i = 0; i < INFER_PRECISION_COUNT; i++)
		if (strcmp(infer_precision_names[i], name) == 0) {
			*p = (enum infer_precision)i;
			return 0;
		}
	return -EINVAL;
}

int infer_backend_has_precision(const struct infer_backend *be, enum infer_precision p)
{
	return p == INFER_FP32 || (be->load_at && (be->precisions & (1u << p)));
}

char *infer_backend_precision_list(const struct infer_backend *be)
{
	GString *s = g_string_new(NULL);

	for (int i = 0; i < INFER_PRECISION_COUNT; i++)
		if (infer_backend_has_precision(be, (enum infer_precision)i))
			g_string_append_printf(s, "%s%s", s->len ? ", " : "",
					       infer_precision_names[i]);
	return g_string_free(s, FALSE);
}

const char *infer_strerror(int code)
{
	switch (code) {
	case INFER_EMANIFEST: return "model manifest missing or invalid";
	case INFER_ECHECKSUM: return "model file does not match its checksum";
	case INFER_EMODULE: return "model module failed to load or run";
	case INFER_ESHAPE: return "model output shape differs from its manifest";
	case INFER_EBACKEND: return "unknown inference backend";
	case INFER_EPRECISION: return "the inference backend does not run that precision";
	case INFER_ECALIB: return "int8 calibration missing, corrupt or for other modules";
	case INFER_EGATE: return "model held-out figures miss the configured minimums";
	}
	return g_strerror(-code);
}

void infer_model_free(infer_model *m)
{
	if (!m)
		return;
	for (int i = 0; i < MOD_COUNT; i++) {
		if (m->module[i])
			m->backend->free(m->module[i]);
		infer_quant_free(m->quant[i]);
	}
	g_free(m->choice);
	g_free(m->info.name);
	g_free(m->info.version);
	g_free(m->info.features);
	g_free(m->heatmap_output);
	g_free(m->anomaly_map_output);
	g_free(m->vision_buf);
	g_free(m->signal_buf);
	g_free(m->decision_buf);
	g_free(m->fused);
	g_free(m->heatmap);
	g_free(m->anomaly_map);
	fusion_sigfeat_free(m->sigfeat);
	g_free(m->raw_images);
	g_free(m->raw_features);
#ifdef VIGIL_HAVE_CUDA
	cuda_prep_free(m->prep);
#endif
	g_free(m);
}

int infer_file_sha256(const char *path, char **hex, char **err)
{
	char *data = NULL;
	gsize len = 0;
	GError *gerr = NULL;

	if (!g_file_get_contents(path, &data, &len, &gerr)) {
		*err = g_strdup_printf("%s", gerr->message);
		g_error_free(gerr);
		return -EIO;
	}
	*hex = g_compute_checksum_for_data(G_CHECKSUM_SHA256, (const guchar *)data, len);
	g_free(data);
	return 0;
}

/* Checks the module file against its checksum (and, in int8, against the
 * file its calibration was made for) and loads it. */
static int load_module(infer_model *m, const config *man, const char *dir, int which,
		       enum infer_precision p, char **err)
{
	const char *group = module_group[which];
	char *file = NULL, *sha = NULL, *path = NULL, *actual = NULL;
	int rc = INFER_EMANIFEST;

	if (config_get_string(man, group, "file", NULL, &file, err) < 0 ||
	    config_get_string(man, group, "sha256", NULL, &sha, err) < 0)
		goto out;
	if (strchr(file, '/')) {
		*err = config_error(man, group, "file", "must name a file inside the package");
		goto out;
	}
	path = g_build_filename(dir, file, NULL);
	if (infer_file_sha256(path, &actual, err) < 0) {
		rc = INFER_EMODULE;
		goto out;
	}
	if (g_ascii_strcasecmp(actual, sha) != 0) {
		*err = g_strdup_printf("%s: SHA-256 is %s but the manifest says %s "
				       "(corrupt or replaced file)", path, actual, sha);
		rc = INFER_ECHECKSUM;
		goto out;
	}
	if (m->quant[which] && (strcmp(m->quant[which]->file, file) != 0 ||
				g_ascii_strcasecmp(m->quant[which]->sha256, actual) != 0)) {
		*err = g_strdup_printf("%s/%s: [%s] was made for %s with SHA-256 %.12s..., not "
				       "this %s (%.12s...); run vigil-calibrate again",
				       dir, INFER_CALIB_FILE, group, m->quant[which]->file,
				       m->quant[which]->sha256, file, actual);
		rc = INFER_ECALIB;
		goto out;
	}
	if (p == INFER_FP32)
		m->module[which] = m->backend->load(path, err);
	else
		m->module[which] = m->backend->load_at(path, p, m->quant[which], err);
	/* infer_quant_node_for names the file when the calibration is at fault */
	rc = m->module[which] ? 0 : *err && strstr(*err, INFER_CALIB_FILE) ? INFER_ECALIB
	     : INFER_EMODULE;
out:
	g_free(file);
	g_free(sha);
	g_free(path);
	g_free(actual);
	return rc;
}

/* [metrics] is optional: packages trained without a held-out set have
 * none (or heldout_parts=0), and the gate decides what that means. */
static int read_metrics(struct infer_metrics *mt, const config *man, char **err)
{
	if (config_get_int(man, "metrics", "heldout_parts", 0, 0, INT_MAX, &mt->parts, err) < 0 ||
	    config_get_double(man, "metrics", "heldout_accuracy", NAN, 0, 1, &mt->accuracy,
			      err) < 0 ||
	    config_get_double(man, "metrics", "heldout_escape_rate", NAN, 0, 1,
			      &mt->escape_rate, err) < 0 ||
	    config_get_double(man, "metrics", "heldout_false_reject_rate", NAN, 0, 1,
			      &mt->false_reject_rate, err) < 0)
		return INFER_EMANIFEST;
	if (mt->parts == 0)
		mt->accuracy = mt->escape_rate = mt->false_reject_rate = NAN;
	return 0;
}

/* [dark]: the dark-residual score's settings and where it joins the
 * model's (infer_info.dark). 0 or -1 with *err naming the key. */
static int read_dark(infer_model *m, const config *man, char **err)
{
	static const char *const keys[] = {
		"side", "median", "box", "edge", "good_median", "good_scale", "vision_median",
		"vision_scale", "fused_median", "fused_scale", NULL,
	};
	struct infer_info *in = &m->info;
	double v[6];

	if (!config_has_group(man, "dark"))
		return 0;
	if (config_check_keys(man, "dark", keys, err) < 0 ||
	    config_get_int(man, "dark", "side", 320, 16, 8192, &m->dark.side, err) < 0 ||
	    config_get_int(man, "dark", "median", 21, 3, 255, &m->dark.median, err) < 0 ||
	    config_get_int(man, "dark", "box", 3, 1, 64, &m->dark.box, err) < 0 ||
	    config_get_int(man, "dark", "edge", 4, 0, 1024, &m->dark.edge, err) < 0)
		return -1;
	if (!(m->dark.median & 1)) {
		*err = config_error(man, "dark", "median", "%d is not odd", m->dark.median);
		return -1;
	}
	if (m->dark.side - 2 * m->dark.edge < m->dark.box) {
		*err = config_error(man, "dark", "edge",
				    "%d leaves no room for a box of %d in a side of %d",
				    m->dark.edge, m->dark.box, m->dark.side);
		return -1;
	}
	/* A good_scale of 0 measures the score without joining it; then the
	 * other figures are not needed. */
	for (int i = 0; i < 6; i++)
		if (config_get_double(man, "dark", keys[4 + i], 0, i % 2 ? 0 : -1e6, 1e6, &v[i],
				      err) < 0)
			return -1;
	if (v[1] > 0 && !(v[3] > 0 && v[5] > 0)) {
		*err = config_error(man, "dark", v[3] > 0 ? "fused_scale" : "vision_scale",
				    "must be above 0 when good_scale is");
		return -1;
	}
	in->dark = 1;
	in->dark_spec = &m->dark;
	in->dark_median = (float)v[0];
	in->dark_scale = (float)v[1];
	in->dark_vision_median = (float)v[2];
	in->dark_vision_scale = (float)v[3];
	in->dark_fused_median = (float)v[4];
	in->dark_fused_scale = (float)v[5];
	return 0;
}

static int read_info(infer_model *m, const config *man, char **err)
{
	struct infer_info *in = &m->info;
	int format = 0;
	double d;

	if (config_get_int(man, "package", "format", 0, 1, 1, &format, err) < 0 ||
	    config_get_string(man, "package", "name", NULL, &in->name, err) < 0 ||
	    config_get_string(man, "package", "version", NULL, &in->version, err) < 0 ||
	    config_get_int(man, "vision", "input_width", 0, 8, 4096, &in->input_width, err) < 0 ||
	    config_get_int(man, "vision", "input_height", 0, 8, 4096, &in->input_height, err) < 0 ||
	    config_get_double(man, "vision", "mean", 0.0, -10, 10, &d, err) < 0)
		return INFER_EMANIFEST;
	in->mean = (float)d;
	if (config_get_double(man, "vision", "std", 1.0, 1e-6, 100, &d, err) < 0)
		return INFER_EMANIFEST;
	in->std = (float)d;
	if (config_get_int(man, "vision", "output_dim", 0, 1, 65536, &in->vision_out, err) < 0 ||
	    config_get_string(man, "signal", "features", NULL, &in->features, err) < 0 ||
	    config_get_double(man, "signal", "rate_hz", 0, 1, 1e7, &in->rate_hz, err) < 0 ||
	    config_get_int(man, "signal", "window", 0, 16, 1 << 22, &in->window, err) < 0 ||
	    config_get_int(man, "signal", "input_dim", 0, 1, 65536, &in->signal_dim, err) < 0 ||
	    config_get_int(man, "signal", "output_dim", 0, 1, 65536, &in->signal_out, err) < 0 ||
	    config_get_int(man, "decision", "input_dim", 0, 1, 131072, &m->decision_in, err) < 0)
		return INFER_EMANIFEST;
	if (in->vision_out + in->signal_out != m->decision_in) {
		*err = config_error(man, "decision", "input_dim",
				    "%d is not vision output_dim + signal output_dim (%d)",
				    m->decision_in, in->vision_out + in->signal_out);
		return INFER_EMANIFEST;
	}
	if (config_get_double(man, "thresholds", "reject", 0.5, 0, 1, &d, err) < 0)
		return INFER_EMANIFEST;
	in->reject = (float)d;
	if (config_get_double(man, "thresholds", "marginal", in->reject, 0, in->reject, &d, err) < 0)
		return INFER_EMANIFEST;
	in->marginal = (float)d;
	if (config_get_double(man, "thresholds", "vision", 0.5, 0, 1, &d, err) < 0)
		return INFER_EMANIFEST;
	in->vision_threshold = (float)d;
	if (config_get_double(man, "thresholds", "signal", 0.5, 0, 1, &d, err) < 0)
		return INFER_EMANIFEST;
	in->signal_threshold = (float)d;
	{
		char *resize = NULL;

		if (config_get_string(man, "vision", "resize", "stretch", &resize, err) < 0)
			return INFER_EMANIFEST;
		if (fusion_resize_parse(resize, &m->image.resize) < 0) {
			*err = config_error(man, "vision", "resize",
					    "'%s' is not stretch or letterbox", resize);
			g_free(resize);
			return INFER_EMANIFEST;
		}
		g_free(resize);
	}
	m->image.width = in->input_width;
	m->image.height = in->input_height;
	m->image.mean = in->mean;
	m->image.std = in->std;
	in->image = &m->image;
	/* The defect map is optional: packages from before it, and vision
	 * modules without a segmentation map, have no heatmap_output. */
	if (config_get_string(man, "vision", "heatmap_output", "", &m->heatmap_output, err) < 0 ||
	    config_get_int(man, "vision", "heatmap_width", 0, 1, 4096, &in->heatmap_width, err) < 0 ||
	    config_get_int(man, "vision", "heatmap_height", 0, 1, 4096, &in->heatmap_height, err) < 0)
		return INFER_EMANIFEST;
	if (!m->heatmap_output[0]) {
		g_free(m->heatmap_output);
		m->heatmap_output = NULL;
		in->heatmap_width = in->heatmap_height = 0;
	} else if (!in->heatmap_width || !in->heatmap_height) {
		*err = config_error(man, "vision", "heatmap_output",
				    "needs heatmap_width and heatmap_height in [vision]");
		return INFER_EMANIFEST;
	}
	{
		int score;

		if (config_get_choice(man, "vision", "score", "defect", infer_vision_score_names,
				      &score, err) < 0)
			return INFER_EMANIFEST;
		in->vision_score = (enum infer_vision_score)score;
	}
	/* A fused package's second map, the good-only model's: the review
	 * page shows it beside the supervised one. Only a fused package has
	 * two models whose maps differ. */
	if (config_get_string(man, "vision", "anomaly_map_output", "", &m->anomaly_map_output,
			      err) < 0)
		return INFER_EMANIFEST;
	if (!m->anomaly_map_output[0]) {
		g_clear_pointer(&m->anomaly_map_output, g_free);
	} else if (!m->heatmap_output || in->vision_score != INFER_VISION_FUSED) {
		*err = config_error(man, "vision", "anomaly_map_output",
				    m->heatmap_output
				    ? "is for a fused package ([vision] score=fused)"
				    : "needs heatmap_output in [vision]");
		return INFER_EMANIFEST;
	} else {
		in->anomaly_map = 1;
	}
	if (read_dark(m, man, err) < 0)
		return INFER_EMANIFEST;
	return read_metrics(&in->metrics, man, err);
}

/* Runs one module and insists on the declared output sizes (each
 * tensor's cap). */
static int run_module_on(infer_model *m, int which, const float *in, int on_device,
			 const int *shape, int ndim, struct infer_tensor *out, int n_out, char **err)
{
	int rc = on_device ? m->backend->run_device(m->module[which], in, shape, ndim, out, n_out, err)
			   : m->backend->run(m->module[which], in, shape, ndim, out, n_out, err);

	for (int i = 0; i < n_out && (rc == 0 || rc == -EOVERFLOW); i++) {
		if (out[i].len == out[i].cap)
			continue;
		g_free(*err);
		*err = g_strdup_printf("%s module gives %zu outputs%s%s, the manifest says %zu",
				       module_group[which], out[i].len,
				       out[i].name ? " in " : "", out[i].name ? out[i].name : "",
				       out[i].cap);
		return INFER_ESHAPE;
	}
	return rc < 0 ? INFER_EMODULE : 0;
}

static int run_module(infer_model *m, int which, const float *in, const int *shape,
		      int ndim, struct infer_tensor *out, int n_out, char **err)
{
	return run_module_on(m, which, in, 0, shape, ndim, out, n_out, err);
}

infer_model *infer_model_load(const char *dir, const char *backend, char **err, int *code)
{
	return infer_model_load_at(dir, backend, INFER_FP32, err, code);
}

/* infer_model_open with one named backend; *err without the "model
 * package DIR refused: " that infer_model_open puts before it. */
static infer_model *load_one(const char *dir, const char *backend, enum infer_precision p,
			     int threads, char **err, int *code)
{
	infer_model *m = g_new0(infer_model, 1);
	char *man_path = g_build_filename(dir, "manifest.ini", NULL);
	config *man = NULL;
	float *img = NULL, *sig = NULL;
	struct infer_output probe;
	int rc = INFER_EBACKEND;

	m->threads = threads;
	m->backend = infer_backend_find(backend);
	if (!m->backend) {
		GString *names = g_string_new(NULL);

		for (int i = 0; backends[i]; i++)
			g_string_append_printf(names, "%s%s", i ? ", " : "", backends[i]->name);
		*err = g_strdup_printf("unknown inference backend '%s' (this build has: %s%s%s%s)",
				       backend, names->str,
				       g_str_has_prefix(backend, "cuda-")
				       ? "; the precision is [model] precision now" : "",
				       g_str_has_prefix(backend, "cuda")
				       ? "; cuda is built only when meson finds CUDA, "
					 "-Dcuda=enabled" : "",
				       strcmp(backend, "onednn") == 0
				       ? "; onednn is built only when meson finds oneDNN 2.x "
					 "(libdnnl-dev), -Donednn=enabled" : "");
		g_string_free(names, TRUE);
		goto fail;
	}
	if ((unsigned)p >= INFER_PRECISION_COUNT || !infer_backend_has_precision(m->backend, p)) {
		char *list = infer_backend_precision_list(m->backend);

		*err = g_strdup_printf("the %s backend does not run %s (it runs: %s)", backend,
				       (unsigned)p < INFER_PRECISION_COUNT
				       ? infer_precision_names[p] : "that precision", list);
		g_free(list);
		rc = INFER_EPRECISION;
		goto fail;
	}
	rc = INFER_EMANIFEST;
	man = config_load_file(man_path, err);
	if (!man || (rc = read_info(m, man, err)) < 0)
		goto fail;
	if (strcmp(m->info.features, "vigil-sigfeat-v1") != 0) {
		*err = config_error(man, "signal", "features",
				    "'%s' is not a feature layout this build computes",
				    m->info.features);
		rc = INFER_EMANIFEST;
		goto fail;
	}
	if (p == INFER_INT8) {
		char *calib = g_build_filename(dir, INFER_CALIB_FILE, NULL);

		rc = infer_quant_load(calib, module_group, MOD_COUNT, m->quant, err);
		g_free(calib);
		if (rc < 0)
			goto fail;
	}
	for (int i = 0; i < MOD_COUNT; i++)
		if ((rc = load_module(m, man, dir, i, p, err)) < 0)
			goto fail;
	for (int i = 0; i < MOD_COUNT; i++) {
		infer_quant_free(m->quant[i]);  /* the modules keep what they need */
		m->quant[i] = NULL;
	}
	/* A trial run on blank inputs proves the modules and the manifest agree. */
	img = g_new0(float, (gsize)m->info.input_width * m->info.input_height);
	sig = g_new0(float, m->info.signal_dim);
	if ((rc = infer_model_run(m, img, sig, &probe, err)) < 0)
		goto fail;
	g_free(img);
	g_free(sig);
	config_free(man);
	g_free(man_path);
	if (code)
		*code = 0;
	return m;
fail:
	if (code)
		*code = rc;
	if (!*err)
		*err = g_strdup(infer_strerror(rc));
	g_free(img);
	g_free(sig);
	config_free(man);
	g_free(man_path);
	infer_model_free(m);
	return NULL;
}

/* The backends backend=auto may choose for p: the CPU ones that run it
 * (never a GPU one: the default was opencv before auto, and a GPU is
 * asked for by name), the reference executor last and, in fp16 and bf16,
 * not at all: there it emulates a GPU's rounding, slowly. */
static int auto_candidates(enum infer_precision p, const struct infer_backend **out)
{
	int n = 0;

	for (int pass = 0; pass < 2; pass++)
		for (int i = 0; backends[i]; i++) {
			const struct infer_backend *be = backends[i];
			int is_ref = be == &infer_backend_reference;

			if (be->run_device || !infer_backend_has_precision(be, p) || is_ref != pass ||
			    (is_ref && (p == INFER_FP16 || p == INFER_BF16)))
				continue;
			out[n++] = be;
		}
	return n;
}

char *infer_auto_candidates(enum infer_precision p)
{
	const struct infer_backend *c[G_N_ELEMENTS(backends)];
	int n = auto_candidates(p, c);
	GString *s = g_string_new(NULL);

	for (int i = 0; i < n; i++)
		g_string_append_printf(s, "%s%s", i ? ", " : "", c[i]->name);
	return g_string_free(s, FALSE);
}

int infer_default_threads(void)
{
	return MAX(1, (int)g_get_num_processors() - 1);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* The median milliseconds of one part (batch 1) on m, over AUTO_RUNS runs
 * after AUTO_WARMUP, on a fixed synthetic input of the package's shape.
 * Stops early past AUTO_BUDGET_US, and when the backend is plainly slower
 * than the best so far (beat ms, 0: none yet): any one run, warm-up
 * included, over 4 x beat (that run's time is returned: the reference
 * executor takes 300 ms a real-v5 part, 50 times onednn), or the median
 * of 3 runs over 2 x beat. A negative value when a run fails. */
#define AUTO_WARMUP 3
#define AUTO_RUNS 10
#define AUTO_BUDGET_US 300000
static double time_model(infer_model *m, double beat)
{
	const struct infer_info *in = &m->info;
	size_t npix = (size_t)in->input_width * (size_t)in->input_height;
	float *img = g_new(float, npix), *sig = g_new(float, in->signal_dim);
	double ms[AUTO_RUNS], med = -1;
	struct infer_output out;
	char *err = NULL;
	gint64 t0;
	int n = 0;
	guint32 x = 2463534242u;

	/* xorshift: the same input for every backend, no zeros to skip */
	for (size_t i = 0; i < npix; i++) {
		x ^= x << 13, x ^= x >> 17, x ^= x << 5;
		img[i] = (float)(x % 2001u) / 1000.0f - 1.0f;
	}
	for (int i = 0; i < in->signal_dim; i++)
		sig[i] = (float)(i % 7) / 7.0f;
	for (int i = 0; i < AUTO_WARMUP; i++) {
		gint64 a = g_get_monotonic_time();
		double one;

		if (infer_model_run(m, img, sig, &out, &err) < 0)
			goto out;
		one = (double)(g_get_monotonic_time() - a) / 1000.0;
		if (beat > 0 && one > 4 * beat) {
			med = one;
			goto out;
		}
	}
	t0 = g_get_monotonic_time();
	while (n < AUTO_RUNS) {
		gint64 a = g_get_monotonic_time();

		if (infer_model_run(m, img, sig, &out, &err) < 0)
			goto out;
		ms[n++] = (double)(g_get_monotonic_time() - a) / 1000.0;
		if (g_get_monotonic_time() - t0 > AUTO_BUDGET_US || (beat > 0 && ms[n - 1] > 4 * beat))
			break;
		if (n >= 3 && beat > 0) {
			double tmp[AUTO_RUNS];

			memcpy(tmp, ms, sizeof(double) * (size_t)n);
			qsort(tmp, (size_t)n, sizeof(double), cmp_double);
			if (tmp[n / 2] > 2 * beat)
				break;
		}
	}
	qsort(ms, (size_t)n, sizeof(double), cmp_double);
	med = ms[n / 2];
out:
	g_free(err);
	g_free(img);
	g_free(sig);
	return med;
}

/* backend=auto: every candidate loaded and timed, the fastest kept; the
 * reference executor only when no other loads (it is the yardstick, 20 to
 * 60 times slower: loading and timing it would add 0.6 s to a real-v5
 * load to learn nothing). A
 * fault of the package itself (manifest, checksum, shapes) refuses it at
 * the first candidate; a backend that refuses the package (a module it
 * cannot run, bf16 on a CPU without it) leaves the others to choose
 * from, and its reason goes into the refusal when none is left. */
static infer_model *load_auto(const char *dir, enum infer_precision p, int threads, char **err,
			      int *code)
{
	const struct infer_backend *cand[G_N_ELEMENTS(backends)];
	int n = auto_candidates(p, cand), rc = INFER_EPRECISION;
	infer_model *best = NULL;
	double best_ms = -1;
	int timed = 0, ref_skipped = 0;
	GString *others = g_string_new(NULL), *refusals = g_string_new(NULL);

	for (int i = 0; i < n; i++) {
		char *e = NULL;
		infer_model *m;
		double ms;

		if (cand[i] == &infer_backend_reference && best) {
			ref_skipped = 1;
			continue;
		}
		m = load_one(dir, cand[i]->name, p, threads, &e, &rc);

		if (!m) {
			if (rc != INFER_EMODULE && rc != INFER_EPRECISION && rc != INFER_ECALIB) {
				g_free(*err);
				*err = e;
				infer_model_free(best);
				best = NULL;
				goto out;
			}
			g_string_append_printf(refusals, "%s%s refused it: %s",
					       refusals->len ? "; " : "", cand[i]->name, e);
			g_free(e);
			continue;
		}
		ms = time_model(m, best_ms);
		if (ms < 0) {
			g_string_append_printf(refusals, "%s%s failed its timing runs",
					       refusals->len ? "; " : "", cand[i]->name);
			infer_model_free(m);
			continue;
		}
		timed++;
		if (!best || ms < best_ms) {
			if (best)
				g_string_append_printf(others, ", %s %.1f ms", best->backend->name,
						       best_ms);
			infer_model_free(best);
			best = m;
			best_ms = ms;
		} else {
			g_string_append_printf(others, ", %s %.1f ms", m->backend->name, ms);
			infer_model_free(m);
		}
	}
	if (best) {
		rc = 0;
		if (ref_skipped)
			g_string_append(others, timed > 1 ? "; reference not timed"
						    : "; reference, the slow yardstick, not timed");
		best->choice = n == 1
			? g_strdup_printf("auto: the only CPU backend here that runs %s, %.1f ms a part",
					  infer_precision_names[p], best_ms)
			: g_strdup_printf("auto: %.1f ms a part%s%s%s", best_ms, others->str,
					  refusals->len ? "; " : "", refusals->str);
	} else if (n == 0) {
		*err = g_strdup_printf("backend auto: no CPU backend of this build runs %s; "
				       "name one in [model] backend", infer_precision_names[p]);
	} else {
		*err = g_strdup_printf("backend auto: no CPU backend runs %s here (%s)",
				       infer_precision_names[p], refusals->str);
	}
out:
	g_string_free(others, TRUE);
	g_string_free(refusals, TRUE);
	if (code)
		*code = rc;
	return best;
}

infer_model *infer_model_open(const char *dir, const char *backend, enum infer_precision p,
			      int threads, char **err, int *code)
{
	infer_model *m;
	int rc = 0;

	if (strcmp(backend, INFER_BACKEND_AUTO) == 0) {
		m = load_auto(dir, p, threads, err, &rc);
	} else {
		m = load_one(dir, backend, p, threads, err, &rc);
		if (m)
			m->choice = g_strdup("set in [model] backend");
	}
	if (code)
		*code = rc;
	if (!m) {
		char *full = g_strdup_printf("model package %s refused: %s", dir,
					     *err ? *err : infer_strerror(rc));

		g_free(*err);
		*err = full;
	}
	return m;
}

infer_model *infer_model_load_at(const char *dir, const char *backend, enum infer_precision p,
				 char **err, int *code)
{
	return infer_model_open(dir, backend, p, 0, err, code);
}

const char *infer_model_backend(const infer_model *m)
{
	return m->backend->name;
}

const char *infer_model_choice(const infer_model *m)
{
	return m->choice;
}

const struct infer_info *infer_model_info(const infer_model *m)
{
	return &m->info;
}

void *infer_model_module(infer_model *m, int which)
{
	return which >= 0 && which < MOD_COUNT ? m->module[which] : NULL;
}

static float sigmoid(float x)
{
	return 1.0f / (1.0f + expf(-x));
}

enum vigil_verdict infer_verdict(const struct infer_info *info, float p)
{
	if (p >= info->reject)
		return VIGIL_VERDICT_REJECT;
	if (p >= info->marginal && info->marginal < info->reject)
		return VIGIL_VERDICT_MARGINAL;
	return VIGIL_VERDICT_ACCEPT;
}

/* Room for n parts in the per-run buffers. */
static void reserve_batch(infer_model *m, int n)
{
	const struct infer_info *in = &m->info;
	gsize cells = (gsize)in->heatmap_width * (gsize)in->heatmap_height;

	if (n <= m->batch_cap)
		return;
	m->vision_buf = g_renew(float, m->vision_buf, (gsize)n * (gsize)in->vision_out);
	m->signal_buf = g_renew(float, m->signal_buf, (gsize)n * (gsize)in->signal_out);
	m->decision_buf = g_renew(float, m->decision_buf, (gsize)n * (gsize)m->decision_in);
	m->fused = g_renew(float, m->fused, (gsize)n);
	if (m->heatmap_output)
		m->heatmap = g_renew(float, m->heatmap, (gsize)n * cells);
	if (m->anomaly_map_output)
		m->anomaly_map = g_renew(float, m->anomaly_map, (gsize)n * cells);
	m->batch_cap = n;
}

static void settle(const struct infer_info *in, struct infer_output *out);

/* One part's result from its logits. */
static int judge(const infer_model *m, float vision_logit, float signal_logit, float fused,
		 const float *heatmap, const float *anomaly_map, struct infer_output *out,
		 char **err)
{
	const struct infer_info *in = &m->info;

	out->vision_score = sigmoid(vision_logit);
	out->signal_score = sigmoid(signal_logit);
	out->score = sigmoid(fused);
	if (!isfinite(out->score)) {
		*err = g_strdup("model gave a non-finite score");
		return INFER_EMODULE;
	}
	out->heatmap = heatmap;
	out->anomaly_map = anomaly_map;
	out->heatmap_w = in->heatmap_width;
	out->heatmap_h = in->heatmap_height;
	out->dark = NAN;
	settle(in, out);
	return 0;
}

/* The verdict, flags and class of out's scores. */
static void settle(const struct infer_info *in, struct infer_output *out)
{
	out->verdict = infer_verdict(in, out->score);
	out->flags = 0;
	if (out->vision_score >= in->vision_threshold)
		out->flags |= VIGIL_FLAG_VISION_DEFECT;
	if (out->signal_score >= in->signal_threshold)
		out->flags |= VIGIL_FLAG_SIGNAL_DEFECT;
	out->defect_class = VIGIL_CLASS_NONE;
	if (out->verdict != VIGIL_VERDICT_ACCEPT) {
		unsigned both = VIGIL_FLAG_VISION_DEFECT | VIGIL_FLAG_SIGNAL_DEFECT;

		if ((out->flags & both) == both)
			out->defect_class = VIGIL_CLASS_BOTH;
		else if (out->flags & VIGIL_FLAG_SIGNAL_DEFECT)
			out->defect_class = VIGIL_CLASS_VIBRATION;
		else if (out->flags & VIGIL_FLAG_VISION_DEFECT)
			out->defect_class = VIGIL_CLASS_SURFACE;
		else
			out->defect_class = out->vision_score >= out->signal_score
				? VIGIL_CLASS_SURFACE : VIGIL_CLASS_VIBRATION;
	}
}

int infer_model_dark(const infer_model *m, const struct infer_frame *f, float *dark)
{
	*dark = NAN;
	if (!m->info.dark)
		return 0;
	return fusion_dark_score(&m->dark, f->data, f->width, f->height, f->stride, dark) < 0
		       ? -EINVAL : 0;
}

void infer_model_join_dark(const infer_model *m, float dark, struct infer_output *out)
{
	const struct infer_info *in = &m->info;
	float z;

	out->dark = dark;
	if (!in->dark || !(in->dark_scale > 0) || !isfinite(dark))
		return;
	/* max of the logits = sigmoid of the max: the probabilities compare
	 * as the logits do. */
	z = (dark - in->dark_median) / in->dark_scale;
	out->vision_score = fmaxf(out->vision_score,
				  sigmoid(in->dark_vision_median + z * in->dark_vision_scale));
	out->score = fmaxf(out->score, sigmoid(in->dark_fused_median + z * in->dark_fused_scale));
	settle(in, out);
}

/* images and sigfeats in host memory, or (on_device) in GPU memory. */
static int run_batch(infer_model *m, int n, const float *images, const float *sigfeats,
		     int on_device, struct infer_output *out, char **err)
{
	const struct infer_info *in = &m->info;
	gsize cells = (gsize)in->heatmap_width * (gsize)in->heatmap_height;
	int vshape[4] = { n, 1, in->input_height, in->input_width };
	int sshape[2] = { n, in->signal_dim };
	int dshape[2] = { n, m->decision_in };
	struct infer_tensor vision[3], signal, decision;
	int nvision = 1;
	struct infer_output *res;
	int rc;

	if (n < 1 || !images || !sigfeats || !out) {
		*err = g_strdup_printf("a batch of %d parts cannot run", n);
		return -EINVAL;
	}
	/* Here, on the thread that runs the model: OpenMP keeps the count per
	 * thread, and the loader thread that timed the model is not the one
	 * that runs it on the line. */
	if (m->threads > 0 && m->backend->set_threads)
		m->backend->set_threads(m->threads);
	reserve_batch(m, n);
	vision[0] = (struct infer_tensor){ .data = m->vision_buf,
					   .cap = (size_t)n * (size_t)in->vision_out };
	if (m->heatmap_output)
		vision[nvision++] = (struct infer_tensor){ .name = m->heatmap_output,
							   .data = m->heatmap,
							   .cap = (size_t)n * cells };
	if (m->anomaly_map_output)
		vision[nvision++] = (struct infer_tensor){ .name = m->anomaly_map_output,
							   .data = m->anomaly_map,
							   .cap = (size_t)n * cells };
	signal = (struct infer_tensor){ .data = m->signal_buf,
					.cap = (size_t)n * (size_t)in->signal_out };
	decision = (struct infer_tensor){ .data = m->fused, .cap = (size_t)n };
	if ((rc = run_module_on(m, MOD_VISION, images, on_device, vshape, 4, vision,
				nvision, err)) < 0 ||
	    (rc = run_module_on(m, MOD_SIGNAL, sigfeats, on_device, sshape, 2, &signal, 1, err)) < 0)
		return rc;
	for (int i = 0; i < n; i++) {
		float *row = m->decision_buf + (size_t)i * (size_t)m->decision_in;

		memcpy(row, m->vision_buf + (size_t)i * (size_t)in->vision_out,
		       sizeof(float) * (size_t)in->vision_out);
		memcpy(row + in->vision_out, m->signal_buf + (size_t)i * (size_t)in->signal_out,
		       sizeof(float) * (size_t)in->signal_out);
	}
	if ((rc = run_module(m, MOD_DECISION, m->decision_buf, dshape, 2, &decision, 1, err)) < 0)
		return rc;
	/* Judge into a scratch array so a failure leaves out untouched. */
	res = g_new(struct infer_output, n);
	for (int i = 0; i < n && rc == 0; i++)
		rc = judge(m, m->vision_buf[(size_t)i * (size_t)in->vision_out],
			   m->signal_buf[(size_t)i * (size_t)in->signal_out], m->fused[i],
			   m->heatmap_output ? m->heatmap + (size_t)i * cells : NULL,
			   m->anomaly_map_output ? m->anomaly_map + (size_t)i * cells : NULL,
			   &res[i], err);
	if (rc == 0)
		memcpy(out, res, sizeof *out * (size_t)n);
	g_free(res);
	return rc;
}

int infer_model_run_batch(infer_model *m, int n, const float *images, const float *sigfeats,
			  struct infer_output *out, char **err)
{
	return run_batch(m, n, images, sigfeats, 0, out, err);
}

int infer_model_prepares_on_device(const infer_model *m)
{
	return m->backend->run_device != NULL;
}

#ifdef VIGIL_HAVE_CUDA
/* The raw inputs to the GPU once; model input and features computed
 * there, read in place by the vision and signal modules. */
static int run_raw_device(infer_model *m, int n, const struct infer_frame *frames,
			  const float *const *windows, struct infer_output *out, char **err)
{
	const struct infer_info *in = &m->info;
	int rc;

	if (n > m->prep_cap) {
		cuda_prep_free(m->prep);
		m->prep_cap = 0;
		m->prep = cuda_prep_new(in->input_width, in->input_height, in->mean, in->std,
					m->image.resize, (size_t)in->window, in->rate_hz, n, err);
		if (!m->prep)
			return INFER_EMODULE;
		m->prep_cap = n;
	}
	for (int i = 0; i < n; i++) {
		const struct infer_frame *f = &frames[i];

		/* The cameras of one part share their window: it goes up and is
		 * computed once, as on the CPU below. */
		if ((rc = cuda_prep_image(m->prep, i, f->data, f->width, f->height, f->stride,
					  err)) < 0 ||
		    (rc = i > 0 && windows[i] == windows[i - 1]
				  ? cuda_prep_copy_features(m->prep, i, i - 1, err)
				  : cuda_prep_features(m->prep, i, windows[i], err)) < 0)
			return rc == -EINVAL ? -EINVAL : INFER_EMODULE;
	}
	return run_batch(m, n, cuda_prep_images(m->prep), cuda_prep_feature_vectors(m->prep), 1,
			 out, err);
}
#endif

/* The raw path's modules, on the device or on the CPU. */
static int run_raw_modules(infer_model *m, int n, const struct infer_frame *frames,
			   const float *const *windows, struct infer_output *out, char **err)
{
	const struct infer_info *in = &m->info;
	size_t npix = (size_t)in->input_width * (size_t)in->input_height;
	size_t dim = (size_t)in->signal_dim;

#ifdef VIGIL_HAVE_CUDA
	if (m->backend->run_device)
		return run_raw_device(m, n, frames, windows, out, err);
#endif
	if (!m->sigfeat) {
		m->sigfeat = fusion_sigfeat_new((size_t)in->window, in->rate_hz);
		if (!m->sigfeat || fusion_sigfeat_dim(m->sigfeat) != dim) {
			*err = g_strdup_printf("no %s features of %zu values for %d samples at %g Hz",
					       in->features, dim, in->window, in->rate_hz);
			return INFER_EMODULE;
		}
	}
	if (n > m->raw_cap) {
		m->raw_images = g_renew(float, m->raw_images, (gsize)n * npix);
		m->raw_features = g_renew(float, m->raw_features, (gsize)n * dim);
		m->raw_cap = n;
	}
	for (int i = 0; i < n; i++) {
		const struct infer_frame *f = &frames[i];

		if (fusion_image_input(&m->image, f->data, f->width, f->height, f->stride,
				       m->raw_images + (size_t)i * npix) < 0) {
			*err = g_strdup_printf("image %d (%dx%d) cannot be prepared", i, f->width,
					       f->height);
			return -EINVAL;
		}
		/* The cameras of one part share their window: compute it once. */
		if (i > 0 && windows[i] == windows[i - 1])
			memcpy(m->raw_features + (size_t)i * dim, m->raw_features + (size_t)(i - 1) * dim,
			       dim * sizeof(float));
		else if (fusion_sigfeat_compute(m->sigfeat, windows[i],
						 m->raw_features + (size_t)i * dim) < 0) {
			*err = g_strdup_printf("vibration window %d is not finite", i);
			return -EINVAL;
		}
	}
	return run_batch(m, n, m->raw_images, m->raw_features, 0, out, err);
}

int infer_model_run_raw(infer_model *m, int n, const struct infer_frame *frames,
			const float *const *windows, struct infer_output *out, char **err)
{
	float *dark = NULL;
	int rc;

	if (n < 1 || !frames || !windows || !out) {
		*err = g_strdup_printf("a batch of %d parts cannot run", n);
		return -EINVAL;
	}
	/* The dark score on the CPU, before the run, so that a frame it
	 * cannot score fails the batch with out untouched. */
	if (m->info.dark) {
		dark = g_new(float, n);
		for (int i = 0; i < n; i++)
			if (infer_model_dark(m, &frames[i], &dark[i]) < 0) {
				*err = g_strdup_printf("image %d (%dx%d) cannot be scored for [dark]",
						       i, frames[i].width, frames[i].height);
				g_free(dark);
				return -EINVAL;
			}
	}
	rc = run_raw_modules(m, n, frames, windows, out, err);
	for (int i = 0; rc == 0 && dark && i < n; i++)
		infer_model_join_dark(m, dark[i], &out[i]);
	g_free(dark);
	return rc;
}

int infer_model_run(infer_model *m, const float *image, const float *sigfeat,
		    struct infer_output *out, char **err)
{
	return infer_model_run_batch(m, 1, image, sigfeat, out, err);
}

const struct infer_backend *infer_backend_find(const char *name)
{
	for (int i = 0; backends[i]; i++)
		if (strcmp(backends[i]->name, name) == 0)
			return backends[i];
	return NULL;
}

int infer_backend_run1(const struct infer_backend *be, void *module, const float *in,
		       const int *shape, int ndim, const char *name, float *out, size_t cap,
		       size_t *len, char **err)
{
	struct infer_tensor t = { .name = name, .data = out, .cap = cap };
	int rc = be->run(module, in, shape, ndim, &t, 1, err);

	*len = t.len;
	return rc;
}
