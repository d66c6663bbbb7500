/* Inspection: the acquire thread waits for each part's frames and
 * vibration window and computes its features and model images; the inspect
 * thread runs the model on the parts waiting in q_ready, up to [model]
 * max_batch at once. So on a CPU the model's thread does nothing but run
 * the model, and the next part is prepared on another core meanwhile.
 * Both pass job changes on in their place among the parts (line-jobs.c). */
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "app/line-private.h"
#include "core/ring.h"

/* ---- inspection: frame + vibration window -> features -> model ---- */

/* The worst camera's maps are the part's, copied (the model reuses its
 * buffers on the next run) and carried back onto that camera's frame
 * (fusion_map_to_frame): the review page stretches them over the kept
 * image, and a letterboxed, turned model input would otherwise put a
 * defect's heat beside the defect. A good-only package's one map is an
 * anomaly map, and is kept as one, so that the page names it so. */
static void keep_maps(line *l, struct db_media_set *m, int camera,
		      const struct infer_output *out)
{
	const struct infer_info *info = infer_model_info(l->model);
	const struct fusion_image_spec *spec = info->image;
	const char *name = l->set.cameras[camera].name;
	int fw = 0, fh = 0, w, h;

	g_clear_pointer(&m->heatmap, g_free);
	g_clear_pointer(&m->anomaly_map, g_free);
	if (!out->heatmap || out->heatmap_w <= 0 || out->heatmap_h <= 0)
		return;
	for (int i = 0; i < m->nimages; i++) {
		if (strcmp(m->images[i].camera, name) == 0) {
			fw = m->images[i].width;
			fh = m->images[i].height;
			break;
		}
	}
	if (fw <= 0 || fh <= 0)
		return;   /* no frame of that camera: nothing to lay a map over */
	m->heatmap = fusion_map_to_frame(spec, fw, fh, out->heatmap, out->heatmap_w,
					 out->heatmap_h, &m->heatmap_w, &m->heatmap_h);
	if (m->heatmap && out->anomaly_map)
		m->anomaly_map = fusion_map_to_frame(spec, fw, fh, out->anomaly_map,
						     out->heatmap_w, out->heatmap_h, &w, &h);
	if (info->vision_score == INFER_VISION_ANOMALY) {
		m->anomaly_map = m->heatmap;
		m->heatmap = NULL;
	}
}

/* Copies what the log may keep of a part - every camera's frame, the
 * defect map, the vibration window - before the frames go back. Whether
 * they are kept is the log's decision once the verdict is final. */
static struct db_media_set *copy_media(line *l, struct capture_frame **frames,
				       const float *win, size_t win_len)
{
	struct db_media_set *m = g_new0(struct db_media_set, 1);

	for (int i = 0; i < l->set.ncameras && i < DB_MEDIA_MAX_IMAGES; i++) {
		struct capture_frame *f = frames[i];

		if (!f)
			continue;
		m->images[m->nimages].camera = g_strdup(l->set.cameras[i].name);
		m->images[m->nimages].width = f->width;
		m->images[m->nimages].height = f->height;
		m->images[m->nimages].gray = g_malloc((gsize)f->width * (gsize)f->height);
		for (int y = 0; y < f->height; y++)
			memcpy(m->images[m->nimages].gray + (size_t)y * (size_t)f->width,
			       f->data + (size_t)y * (size_t)f->stride, (size_t)f->width);
		m->nimages++;
	}
	if (win) {
		m->vibration = g_memdup2(win, win_len * sizeof *win);
		m->vibration_len = win_len;
		m->rate_hz = l->set.vibration.cfg.rate_hz;
	}
	return m;
}

/* A part between the acquire and inspect threads: its frames and
 * features, ready for the model. */
struct ready_part {
	struct line_msg msg;       /* first: LINE_MSG_READY, for q_ready */
	struct vigil_part *p;
	struct capture_frame *frames[LINE_MAX_CAMERAS];
	float *feat;               /* the window's features, signal_dim floats */
	float *window;             /* instead, the window itself (l->device_prep) */
	/* Every camera's model image, prepared for img_spec (the running
	 * model's input as the acquire thread last saw it; a swap in between
	 * makes judge_batch prepare them again). NULL: judge_batch prepares
	 * them (l->device_prep, or a frame this could not prepare). */
	float *img;
	struct fusion_image_spec img_spec;
	/* With img, for a package with [dark] (has_dark): every camera's
	 * frame scored under dark_spec, which judge_batch uses when the
	 * running model's is the same. */
	float dark[LINE_MAX_CAMERAS];
	struct fusion_dark_spec dark_spec;
	int has_dark;
	double prep_ms;            /* condition figures, features and images */
	gboolean failsafe;         /* no model run: a frame or the window is missing */
};

/* The part m (LINE_MSG_PART) stands for. */
static struct vigil_part *part_of(struct line_msg *m)
{
	g_assert(m->kind == LINE_MSG_PART);
	return &((struct line_part *)((char *)m - offsetof(struct line_part, msg)))->p;
}

/* The ready part m (LINE_MSG_READY) stands for. */
static struct ready_part *ready_of(struct line_msg *m)
{
	g_assert(m->kind == LINE_MSG_READY);
	return (struct ready_part *)m;  /* msg is its first member */
}

static void ready_part_free(struct ready_part *r)
{
	for (int i = 0; i < LINE_MAX_CAMERAS; i++)
		capture_frame_free(r->frames[i]);
	g_free(r->feat);
	g_free(r->window);
	g_free(r->img);
	g_free(r);
}

/* What is left of a wait of timeout_ms counted from p's trigger (0: look
 * once, do not wait); once stopping, no wait reaches past the grace, so
 * vigild ends within it. */
static int64_t wait_left_us(line *l, const struct vigil_part *p, int timeout_ms)
{
	int64_t end = p->t_trigger_us + (int64_t)timeout_ms * 1000;

	if (g_atomic_int_get(&l->stop_all))
		end = MIN(end, l->grace_end_us);
	return MAX(end - vigil_now_us(), 0);
}

/* A stop cannot wake a wait already under way, so the waits go in slices
 * of at most this, each bounded again by wait_left_us. */
#define WAIT_SLICE_US 100000

/* Camera i's frame for p, waiting as wait_left_us allows. */
static int frame_for(line *l, int i, const struct vigil_part *p, struct capture_frame **frame)
{
	const struct capture_settings *c = &l->set.cameras[i];

	/* A free-running camera's timeout is a tolerance after the trigger
	 * already; a sequence wait is counted from the part's trigger too,
	 * so parts queued behind a stall time out at their own deadlines
	 * rather than one timeout each. */
	if (c->cfg.mode == CAPTURE_TIMESTAMP)
		return capture_frame_for(l->cameras[i], p->seq, p->t_trigger_us,
					 (int64_t)c->frame_timeout_ms * 1000, frame);
	for (;;) {
		int64_t left = wait_left_us(l, p, c->frame_timeout_ms);
		int rc = capture_frame_for(l->cameras[i], p->seq, p->t_trigger_us,
					   MIN(left, WAIT_SLICE_US), frame);

		if (rc == -ETIMEDOUT && left <= WAIT_SLICE_US) {
			/* The count may be off by the missing frame: the camera
			 * re-aligns it for the next part (capture.h). */
			capture_frame_missed(l->cameras[i], p->seq);
			return rc;
		}
		if (rc != -ETIMEDOUT)
			return rc;
	}
}

/* p's vibration window, waiting as wait_left_us allows. */
static int window_for(line *l, const struct vigil_part *p, float *win, unsigned *flags,
		      int64_t *t_first_ns)
{
	for (;;) {
		int64_t left = wait_left_us(l, p, l->set.vibration.timeout_ms), t0 = vigil_now_us();
		int rc = sensor_window_for(l->sensor, p->seq, p->t_trigger_us,
					   MIN(left, WAIT_SLICE_US), win, flags, t_first_ns);

		/* A clock-mode source without a sample yet says so at once. */
		if (rc != -ETIMEDOUT || left <= WAIT_SLICE_US || vigil_now_us() - t0 < WAIT_SLICE_US)
			return rc;
	}
}

/* The range (max - min) of a window's finite samples; NAN if none is. */
static float window_range(const float *win, size_t n)
{
	float lo = INFINITY, hi = -INFINITY;

	for (size_t i = 0; i < n; i++) {
		if (win[i] < lo)
			lo = win[i];
		if (win[i] > hi)
			hi = win[i];
	}
	return hi >= lo ? hi - lo : NAN;
}

/* A dead sensor or a capped lens makes every part flat, for as long as
 * nobody mends it: its warning comes at once, then at most once a period
 * with the number held back, so that a shift of dead parts costs a line
 * every 10 s rather than one a part; the first part that is not flat
 * again says how many were held back since (held_over). Every part is
 * still flagged, counted (/metrics, the failsafe event) and logged.
 * Acquire thread only. */
#define FLAT_WARNING_PERIOD_US (10 * G_USEC_PER_SEC)

/* Whether the warning is due now; if so, held (size n) says what was held
 * back since the last one, in a clause starting with a space, or is "". */
static gboolean warning_due(struct held_warning *w, const char *what, char *held, size_t n)
{
	int64_t now = vigil_now_us();

	held[0] = 0;
	if (now < w->next_us) {
		w->held++;
		return FALSE;
	}
	if (w->held)
		g_snprintf(held, n, " (and %" G_GUINT64_FORMAT " more %s in the last %d s)",
			   w->held, what, (int)(FLAT_WARNING_PERIOD_US / G_USEC_PER_SEC));
	w->held = 0;
	w->next_us = now + FLAT_WARNING_PERIOD_US;
	return TRUE;
}

/* The first part that is not flat again: the count held back since the
 * last warning, if any. */
static void held_over(struct held_warning *w, const struct vigil_part *p, const char *what,
		      const char *fault, const char *things)
{
	if (!w->held)
		return;
	g_message("part %u: %s is not %s again; %" G_GUINT64_FORMAT " more %s %s since the last "
		  "warning", p->part_id, what, fault, w->held, fault, things);
	w->held = 0;
}

/* Camera i's frame of p, when it is flat: a picture of nothing (a lens
 * cap, the light off, a blank or saturated sensor) would be judged a
 * clean part, so the part fails safe instead. */
static void check_frame(line *l, struct vigil_part *p, int i, const struct capture_frame *f)
{
	struct line_part *lp = (struct line_part *)p;
	const struct capture_settings *c = &l->set.cameras[i];
	char what[96], held[96];
	double contrast;

	if (c->flat_level <= 0)
		return;
	contrast = capture_frame_contrast(f);
	g_snprintf(what, sizeof what, "image from camera %s", c->name);
	if (contrast >= c->flat_level) {
		held_over(&l->flat_frame[i], p, what, "flat", "frames");
		return;
	}
	p->flags |= VIGIL_FLAG_IMAGE_FLAT;
	lp->flat_cameras |= 1u << i;
	lp->flat_contrast[i] = (float)contrast;
	if (warning_due(&l->flat_frame[i], "flat frames", held, sizeof held))
		g_warning("part %u: %s is flat: its grey levels' standard deviation is %.2f, below "
			  "flat_level %g; a lens cap, the light off or a blank sensor: fail-safe "
			  "reject%s", p->part_id, what, contrast, c->flat_level, held);
}

/* A complete window of p that reached the clip level or is flat: figures
 * from a saturated sensor would be made up, and a dead sensor's window
 * would be judged a quiet, good part (a bearing fault would pass). A gain
 * set too high clips every part as a dead sensor flattens it: both
 * warnings are held back. */
static void check_window(line *l, struct vigil_part *p, unsigned wflags, const float *win)
{
	struct line_part *lp = (struct line_part *)p;
	const struct sensor_settings *v = &l->set.vibration;
	char what[96], held[96];

	g_snprintf(what, sizeof what, "vibration window from %s", v->name);
	if (wflags & RING_CLIPPED) {
		if (warning_due(&l->clipped_window, "clipped windows", held, sizeof held))
			g_warning("part %u: %s reached the clip level %g: fail-safe reject%s",
				  p->part_id, what, v->cfg.clip_level, held);
		p->flags |= VIGIL_FLAG_VIB_CLIPPED;
	} else {
		held_over(&l->clipped_window, p, what, "clipped", "windows");
	}
	if (wflags & RING_FLAT) {
		lp->flat_range = window_range(win, v->cfg.window);
		if (warning_due(&l->flat_window, "flat windows", held, sizeof held))
			g_warning("part %u: %s is flat: its range is %.3g over %zu samples, below "
				  "flat_level %g; the sensor looks dead (cable, supply, ADC): "
				  "fail-safe reject%s", p->part_id, what, lp->flat_range,
				  v->cfg.window, v->cfg.flat_level, held);
		p->flags |= VIGIL_FLAG_VIB_FLAT;
	} else {
		held_over(&l->flat_window, p, what, "flat", "windows");
	}
}

/* Every camera's image of r for the running model's input, into r->img;
 * left NULL if a frame cannot be prepared, for judge_batch to name. */
static void prepare_images(line *l, struct ready_part *r)
{
	size_t npix;

	g_mutex_lock(&l->stats_lock);
	r->img_spec = l->pub_image;
	r->has_dark = l->pub_has_dark;
	r->dark_spec = l->pub_dark;
	g_mutex_unlock(&l->stats_lock);
	npix = (size_t)r->img_spec.width * (size_t)r->img_spec.height;
	r->img = g_new(float, (size_t)l->set.ncameras * npix);
	for (int i = 0; i < l->set.ncameras; i++) {
		struct capture_frame *f = r->frames[i];

		if (fusion_image_input(&r->img_spec, f->data, f->width, f->height, f->stride,
				       r->img + (size_t)i * npix) < 0 ||
		    (r->has_dark && fusion_dark_score(&r->dark_spec, f->data, f->width, f->height,
						      f->stride, &r->dark[i]) < 0)) {
			g_clear_pointer(&r->img, g_free);
			return;
		}
	}
}

static gboolean same_dark(const struct ready_part *r, const struct infer_info *info)
{
	const struct fusion_dark_spec *a = &r->dark_spec, *b = info->dark_spec;

	return r->has_dark == info->dark &&
	       (!info->dark || (a->side == b->side && a->median == b->median &&
				a->box == b->box && a->edge == b->edge));
}

/* Waits for the part's frames and vibration window and computes what the
 * model needs: the window's condition figures and features (the line's
 * window and rate, which every job's package must fit, line_model_fits)
 * and, on the CPU, each frame fitted to the model's image input. */
static struct ready_part *acquire_part(line *l, struct vigil_part *p, float *win, size_t feat_dim)
{
	struct ready_part *r = g_new0(struct ready_part, 1);
	struct line_part *lp = (struct line_part *)p;
	unsigned wflags = 0;
	GString *trace = NULL;
	int64_t t0, t_window_ns = -1;
	int rc;

	r->msg.kind = LINE_MSG_READY;
	r->p = p;
	for (int i = 0; i < l->set.ncameras; i++) {
		rc = frame_for(l, i, p, &r->frames[i]);
		if (rc < 0) {
			g_warning("part %u: no frame from camera %s: %s", p->part_id,
				  l->set.cameras[i].name,
				  rc == -ENOTCONN ? "camera down" : g_strerror(-rc));
			p->flags |= VIGIL_FLAG_NO_FRAME;
		} else {
			check_frame(l, p, i, r->frames[i]);
		}
	}
	rc = window_for(l, p, win, &wflags, &t_window_ns);
	if (rc < 0 || (wflags & RING_GAP)) {
		g_warning("part %u: no complete vibration window from %s: %s", p->part_id,
			  l->set.vibration.name, rc < 0 ? g_strerror(-rc) : "gap in the samples");
		p->flags |= VIGIL_FLAG_NO_VIBRATION;
	} else {
		check_window(l, p, wflags, win);
	}
	line_count_stage(l, LINE_STAGE_CAPTURE_WAIT,
			 (double)(vigil_now_us() - p->t_trigger_us) / 1000.0);
	lp->media = copy_media(l, r->frames, p->flags & VIGIL_FLAG_NO_VIBRATION ? NULL : win,
			       l->set.vibration.cfg.window);
	/* The pairing trace (docs/architecture.md, "One clock"): each frame's
	 * arrival and stamped time and the window's first sample, relative to
	 * the trigger, in microseconds. */
	if (g_log_writer_default_would_drop(G_LOG_LEVEL_DEBUG, G_LOG_DOMAIN) == FALSE) {
		trace = g_string_new(NULL);
		for (int i = 0; i < l->set.ncameras; i++) {
			if (!r->frames[i])
				continue;
			g_string_append_printf(trace, " %s=%" G_GUINT64_FORMAT ":%" G_GINT64_FORMAT,
					       l->set.cameras[i].name, r->frames[i]->seq,
					       r->frames[i]->t_us - p->t_trigger_us);
			if (r->frames[i]->t_pts_us >= 0)
				g_string_append_printf(trace, ":%" G_GINT64_FORMAT,
						       r->frames[i]->t_pts_us - p->t_trigger_us);
		}
		if (t_window_ns >= 0)
			g_string_append_printf(trace, " window=%.1f",
					       (double)(t_window_ns - p->t_trigger_us * 1000) / 1e3 -
					       l->set.vibration.cfg.offset_ms * 1e3);
		g_debug("pairing part %u trigger %" G_GINT64_FORMAT "%s", p->part_id,
			p->t_trigger_us, trace->str);
		g_string_free(trace, TRUE);
	}
	if (l->transmitter) {
		struct transmitter_reading tr;

		rc = sensor_transmitter_latest(l->transmitter, &tr);
		if (rc == 0 || rc == -ESTALE) {
			p->tx_state = rc == 0 ? VIGIL_TX_CURRENT : VIGIL_TX_STALE;
			p->t_tx_us = tr.t_us;
			p->tx_velocity_mm_s = tr.value[TRANSMITTER_VELOCITY];
			p->tx_accel_g = tr.value[TRANSMITTER_ACCELERATION];
			p->tx_temperature_c = tr.value[TRANSMITTER_TEMPERATURE];
		}
	}
	if (p->flags & (VIGIL_FLAGS_NO_PICTURE | VIGIL_FLAGS_NO_WINDOW)) {
		r->failsafe = TRUE;
		return r;
	}
	t0 = vigil_now_us();
	if (condition_measure(l->condition, win, l->set.condition.iso_class,
			      l->set.condition.have_bearing ? &l->set.condition.bearing : NULL,
			      &p->vibration) == 0)
		p->has_vibration = 1;
	if (l->device_prep) {
		/* The model computes the features on the GPU from the window. */
		for (size_t i = 0; i < l->set.vibration.cfg.window && !r->failsafe; i++)
			r->failsafe = !isfinite(win[i]);
		if (!r->failsafe)
			r->window = g_memdup2(win, l->set.vibration.cfg.window * sizeof *win);
	} else {
		r->feat = g_new(float, feat_dim);
		r->failsafe = fusion_sigfeat_compute(l->sigfeat, win, r->feat) < 0;
		if (!r->failsafe)
			prepare_images(l, r);
	}
	if (r->failsafe) {
		g_warning("part %u: vibration window is not finite", p->part_id);
		p->flags |= VIGIL_FLAG_MODEL_ERROR;
	}
	r->prep_ms = (double)(vigil_now_us() - t0) / 1000.0;
	return r;
}

static gboolean same_spec(const struct fusion_image_spec *a, const struct fusion_image_spec *b)
{
	return a->width == b->width && a->height == b->height && a->mean == b->mean &&
	       a->std == b->std && a->resize == b->resize;
}

static void set_failsafe(struct vigil_part *p)
{
	p->verdict = VIGIL_VERDICT_REJECT;
	p->flags |= VIGIL_FLAG_FAILSAFE;
	p->score = 1.0f;
}

/* The model's inputs of a batch (the acquire thread's parts, which may
 * include failsafe ones the model does not see): every camera's image of
 * every part, each with its part's features. */
struct batch_inputs {
	float *img, *feat;
	struct infer_frame *frames;    /* l->device_prep: the raw inputs */
	float *dark;                   /* on the CPU: each image's [dark] score */
	const float **windows;
	struct infer_output *out;
	int cap;                   /* images frames, windows and out hold */
	size_t img_cap, feat_cap;  /* floats img and feat hold (a job's input size) */
};

/* Judges n ready parts with one model run: every camera's frame is judged
 * with the part's vibration and the part takes the worst camera's result,
 * so a defect seen from any side rejects it. A failed run fails every
 * part of the batch safe; each part's verdict is its own otherwise. */
static void judge_batch(line *l, struct ready_part **ready, int n, struct batch_inputs *bi)
{
	const struct infer_info *info = infer_model_info(l->model);
	size_t npix = (size_t)info->input_width * (size_t)info->input_height;
	size_t dim = (size_t)info->signal_dim;
	int images = 0, k = 0, rc = 0, parts = 0;  /* images: an upper bound, then the count */
	char *err = NULL;
	int64_t t0 = vigil_now_us();
	double run_ms;

	for (int j = 0; j < n; j++) {
		ready[j]->p->model_version = l->run_version;
		ready[j]->p->job = (uint16_t)l->run_job;
		if (!ready[j]->failsafe)
			images += l->set.ncameras;
	}
	/* Another job's model may take another image size. */
	if ((size_t)images * npix > bi->img_cap) {
		bi->img_cap = (size_t)images * npix;
		bi->img = g_renew(float, bi->img, bi->img_cap);
	}
	if ((size_t)images * dim > bi->feat_cap) {
		bi->feat_cap = (size_t)images * dim;
		bi->feat = g_renew(float, bi->feat, bi->feat_cap);
	}
	if (images > bi->cap) {
		bi->out = g_renew(struct infer_output, bi->out, images);
		bi->frames = g_renew(struct infer_frame, bi->frames, images);
		bi->dark = g_renew(float, bi->dark, images);
		bi->windows = g_renew(const float *, bi->windows, images);
		bi->cap = images;
	}
	for (int j = 0; j < n; j++) {
		struct ready_part *r = ready[j];
		int first = k;

		if (r->failsafe)
			continue;
		for (int i = 0; i < l->set.ncameras && !r->failsafe; i++, k++) {
			struct capture_frame *f = r->frames[i];
			int bad;

			if (l->device_prep) {
				/* Raw to the GPU: only the frame's shape can be wrong here. */
				bi->frames[k] = (struct infer_frame){ f->data, f->width, f->height,
								      f->stride };
				bi->windows[k] = r->window;
				bad = f->width <= 0 || f->height <= 0 || f->stride < f->width;
			} else {
				memcpy(bi->feat + (size_t)k * dim, r->feat, dim * sizeof(float));
				bad = 0;
				/* What the acquire thread prepared, unless a swap
				 * since brought other settings (infer_model_run_raw
				 * scores the frames itself). */
				if (r->img && same_spec(&r->img_spec, info->image) &&
				    same_dark(r, info)) {
					memcpy(bi->img + (size_t)k * npix, r->img + (size_t)i * npix,
					       npix * sizeof(float));
					bi->dark[k] = r->has_dark ? r->dark[i] : NAN;
				} else {
					bad = fusion_image_input(info->image, f->data, f->width,
								 f->height, f->stride,
								 bi->img + (size_t)k * npix) < 0 ||
					      infer_model_dark(l->model,
							       &(struct infer_frame){
								       f->data, f->width,
								       f->height, f->stride },
							       &bi->dark[k]) < 0;
				}
			}
			if (bad) {
				g_warning("part %u: model failed on camera %s: bad image",
					  r->p->part_id, l->set.cameras[i].name);
				r->p->flags |= VIGIL_FLAG_MODEL_ERROR;
				r->failsafe = TRUE;  /* this part alone */
			}
		}
		if (r->failsafe)
			k = first;
		else
			parts++;
	}
	images = k;
	if (images > 0 &&
	    (rc = l->device_prep
		  ? infer_model_run_raw(l->model, images, bi->frames, bi->windows, bi->out, &err)
		  : infer_model_run_batch(l->model, images, bi->img, bi->feat, bi->out, &err)) < 0) {
		g_warning("model failed on a batch of %d parts (%d images): %s", parts, images,
			  err ? err : "no reason");
		g_free(err);
	} else if (!l->device_prep) {
		for (k = 0; k < images; k++)
			infer_model_join_dark(l->model, bi->dark[k], &bi->out[k]);
	}
	run_ms = (double)(vigil_now_us() - t0) / 1000.0;
	if (parts > 0) {
		int b = 0;

		while (b < LINE_BATCH_BUCKETS && parts > line_batch_bounds[b])
			b++;
		g_mutex_lock(&l->stats_lock);
		l->st.batch_parts[b]++;
		l->st.batch_sum += (uint64_t)parts;
		g_mutex_unlock(&l->stats_lock);
	}
	k = 0;
	for (int j = 0; j < n; j++) {
		struct ready_part *r = ready[j];
		struct vigil_part *p = r->p;
		struct line_part *lp = (struct line_part *)p;
		struct infer_output worst = { 0 };
		int worst_cam = 0;
		unsigned flags = 0;

		if (r->failsafe) {
			set_failsafe(p);
			continue;
		}
		if (rc < 0) {
			p->flags |= VIGIL_FLAG_MODEL_ERROR;
			set_failsafe(p);
			continue;
		}
		for (int i = 0; i < l->set.ncameras; i++, k++) {
			const struct infer_output *out = &bi->out[k];

			flags |= out->flags;
			if (i == 0 || out->score > worst.score) {
				worst = *out;
				worst_cam = i;
			}
			worst.vision_score = MAX(worst.vision_score, out->vision_score);
		}
		/* worst's maps still point into the model's buffers (this
		 * batch's run): carried onto the frame once, for the camera
		 * that decided. */
		keep_maps(l, lp->media, worst_cam, &worst);
		/* What the part waited for: its preparation and the batch's run. */
		p->infer_ms = r->prep_ms + run_ms;
		line_count_stage(l, LINE_STAGE_INFERENCE, p->infer_ms);
		p->model_verdict = line_jobs_verdict(l, worst.score, worst.verdict);
		/* Learning mode: the parts are known good and the model is not
		 * trained for them yet, so its verdict is only logged. Parts
		 * it could not judge stay fail-safe rejects (above): the line
		 * is never told a part is good that the station did not see. */
		p->verdict = l->set.learn ? VIGIL_VERDICT_ACCEPT : p->model_verdict;
		p->model_score = worst.score;
		p->defect_class = worst.defect_class;
		p->flags |= flags;
		p->score = worst.score;
		p->vision_score = worst.vision_score;
		p->signal_score = worst.signal_score;
	}
}

int line_inspect_push(line *l, struct vigil_part *p, int64_t timeout_us)
{
	struct line_part *lp = (struct line_part *)p;

	lp->msg.kind = LINE_MSG_PART;
	return bqueue_push(l->q_inspect, &lp->msg, timeout_us);
}

/* The longest an idle acquire or inspect thread waits for its queue
 * before it turns again (line_get_progress). */
#define IDLE_TURN_US ((int64_t)LINE_IDLE_TURN_MS * 1000)

/* The acquire thread: parts from the PLC thread, in trigger order, with
 * their frames and window in hand, to the inspect thread; job changes pass
 * through in their place. */
gpointer line_acquire_thread(gpointer data)
{
	line *l = data;
	float *win = g_new(float, l->set.vibration.cfg.window);
	size_t feat_dim = fusion_sigfeat_dim(l->sigfeat);
	void *item;
	int rc;

	while ((rc = bqueue_pop(l->q_inspect, &item, IDLE_TURN_US)) != -EPIPE) {
		struct line_msg *m = item;

		line_beat(l, LINE_THREAD_ACQUIRE);
		if (rc < 0)
			continue;
		if (m->kind == LINE_MSG_PART) {
			m = &acquire_part(l, part_of(m), win, feat_dim)->msg;
		}
		bqueue_push(l->q_ready, m, -1);
	}
	bqueue_close(l->q_ready);
	g_free(win);
	return NULL;
}

/* The inspect thread: one model run for the first ready part and those
 * already waiting behind it, up to [model] max_batch; it never waits for
 * a batch to fill, so a part alone on the line is judged at once. Each
 * part's verdict goes to the PLC thread on its own. */
gpointer line_inspect_thread(gpointer data)
{
	line *l = data;
	int max_batch = l->set.model.max_batch;
	struct ready_part **batch = g_new(struct ready_part *, max_batch);
	struct batch_inputs bi = { 0 };
	void *item;
	int rc;

	while ((rc = bqueue_pop(l->q_ready, &item, IDLE_TURN_US)) != -EPIPE) {
		struct line_msg *m = item;
		gboolean swap = FALSE;
		int n = 0;

		line_beat(l, LINE_THREAD_INSPECT);
		if (rc < 0)
			continue;
		if (m->kind == LINE_MSG_JOB) {
			/* Another job, between parts. */
			line_jobs_swap(l);
			continue;
		}
		batch[n++] = ready_of(m);
		while (n < max_batch && bqueue_pop(l->q_ready, &item, 0) == 0) {
			m = item;
			if (m->kind == LINE_MSG_JOB) {
				swap = TRUE;  /* after this batch, before the next part */
				break;
			}
			batch[n++] = ready_of(m);
		}
		judge_batch(l, batch, n, &bi);
		for (int j = 0; j < n; j++) {
			struct vigil_part *p = batch[j]->p;

			ready_part_free(batch[j]);
			p->t_verdict_us = vigil_now_us();
			line_count(l, &l->st.inspected, 1);
			bqueue_push(l->q_results, p, -1);
		}
		if (swap)
			line_jobs_swap(l);
	}
	g_free(bi.img);
	g_free(bi.feat);
	g_free(bi.out);
	g_free(bi.frames);
	g_free(bi.dark);
	g_free(bi.windows);
	g_free(batch);
	return NULL;
}
