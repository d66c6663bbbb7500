#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>

#include "app/line-private.h"
#include "core/ring.h"

struct line_event {
	char *kind, *message;
};

static void line_event_free(gpointer data)
{
	struct line_event *e = data;

	g_free(e->kind);
	g_free(e->message);
	g_free(e);
}

void line_free(line *l)
{
	if (!l)
		return;
	for (int i = 0; i < l->ncameras; i++) {
		capture_camera_free(l->cameras[i].cam);
		g_free(l->cameras[i].name);
		g_free(l->cameras[i].pipeline);
	}
	sensor_source_free(l->sensor);
	line_jobs_free(l->jobs_loader);
	sensor_transmitter_free(l->transmitter);
	g_free(l->tx_name);
	g_free(l->tx_host);
	g_free(l->tx_device);
	infer_model_free(l->model);
	fusion_sigfeat_free(l->sigfeat);
	condition_meter_free(l->condition);
	plc_link_free(l->plc);
	if (l->events)
		g_async_queue_unref(l->events);
	db_close(l->db);
	bqueue_free(l->q_inspect);
	bqueue_free(l->q_ready);
	bqueue_free(l->q_results);
	bqueue_free(l->q_log);
	g_free(l->model_dir);
	g_free(l->backend);
	g_free(l->db_path);
	g_free(l->db_media_dir);
	plc_settings_clear(&l->plc_set);
	g_free(l->plc_state_path);
	for (size_t i = 0; i < G_N_ELEMENTS(l->jobs); i++)
		g_free(l->jobs[i].package);
	g_free(l->sen_name);
	g_free(l->sen_pipeline);
	g_free(l->sen_iio_uri);
	g_free(l->sen_iio_device);
	g_free(l->sen_iio_channel);
	g_mutex_clear(&l->stats_lock);
	g_free(l);
}

line *line_new(const config *cfg, char **err)
{
	line *l = g_new0(line, 1);
	const struct infer_info *info;
	char *why = NULL, *dberr = NULL, *sen_group = NULL;

	g_mutex_init(&l->stats_lock);
	l->events = g_async_queue_new_full(line_event_free);
	if (line_read_config(l, cfg, err) < 0)
		goto fail;
	/* The stages below say what is wrong with a setting; here, where the
	 * settings came from, the error gets the file, line and key. */
	sen_group = g_strconcat("vibration.", l->sen_name, NULL);
	l->sigfeat = fusion_sigfeat_new(l->sen_cfg.window, l->sen_cfg.rate_hz);
	if (!l->sigfeat) {
		*err = config_error(cfg, sen_group, "window", "no signal features for %zu samples "
				    "at %g Hz", l->sen_cfg.window, l->sen_cfg.rate_hz);
		goto fail;
	}
	/* The job the PLC selected last runs from the start (line-jobs.c). */
	if (line_jobs_load_start(l, cfg, err) < 0)
		goto fail;
	info = infer_model_info(l->model);
	/* Every job runs on the same backend: a GPU one takes raw parts. */
	l->device_prep = infer_model_prepares_on_device(l->model);
	l->condition = condition_meter_new((size_t)info->window, info->rate_hz, l->hf_hz);
	if (!l->condition) {
		*err = config_error(cfg, sen_group, "window", "cannot measure a %d-sample window "
				    "at %g Hz", info->window, info->rate_hz);
		goto fail;
	}
	for (int i = 0; i < l->ncameras; i++) {
		if (!(l->cameras[i].cam = capture_camera_new(&l->cameras[i].cfg, &why))) {
			char *group = g_strconcat("camera.", l->cameras[i].name, NULL);

			*err = config_error(cfg, group, "pipeline", "%s", why);
			g_free(group);
			goto fail;
		}
	}
	if (!(l->sensor = sensor_source_new(&l->sen_cfg, &why))) {
		*err = config_error(cfg, sen_group, *l->sen_iio_uri ? "iio_uri" : "pipeline", "%s",
				    why);
		goto fail;
	}
	if (l->tx_name && !(l->transmitter = sensor_transmitter_new(&l->tx_cfg, err)))
		goto fail;
	if (!(l->plc = plc_link_new(&l->plc_set.link))) {
		*err = config_error(cfg, "plc", NULL, "invalid endpoint");
		goto fail;
	}
	l->db = db_open_with(l->db_path, &l->db_opt, &dberr);
	if (!l->db) {
		*err = config_error(cfg, "database", "path", "%s", dberr ? dberr : "cannot open");
		free(dberr);
		goto fail;
	}
	l->q_inspect = bqueue_new(QUEUE_PARTS);
	/* Parts in hand wait here with their frames: room for two batches. */
	l->q_ready = bqueue_new((size_t)l->max_batch * 2);
	l->q_results = bqueue_new(QUEUE_PARTS);
	l->q_log = bqueue_new(QUEUE_PARTS * 16);
	g_free(sen_group);
	return l;
fail:
	g_free(why);
	g_free(sen_group);
	line_free(l);
	return NULL;
}

const double line_latency_bounds_ms[LINE_LATENCY_BUCKETS] = {
	1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000,
};

static void count_latency(line *l, double ms)
{
	int b = 0;

	while (b < LINE_LATENCY_BUCKETS && ms > line_latency_bounds_ms[b])
		b++;
	g_mutex_lock(&l->stats_lock);
	l->st.latency_parts[b]++;
	l->st.latency_sum_ms += ms;
	g_mutex_unlock(&l->stats_lock);
}

const char *const line_failsafe_cause_names[LINE_FAILSAFE_CAUSES] = {
	"deadline", "no_frame", "no_vibration", "model_error", "queue_full", "overrun", "fault",
};

const char *const line_stage_names[LINE_STAGES] = {
	"capture_wait", "inference", "plc_write", "db_write",
};

const double line_stage_bounds_ms[LINE_STAGE_BUCKETS] = {
	0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000,
};

const double line_batch_bounds[LINE_BATCH_BUCKETS] = { 1, 2, 4, 8, 16, 32, 64, 128 };

void line_count_stage(line *l, enum line_stage stage, double ms)
{
	int b = 0;

	while (b < LINE_STAGE_BUCKETS && ms > line_stage_bounds_ms[b])
		b++;
	g_mutex_lock(&l->stats_lock);
	l->st.stage_parts[stage][b]++;
	l->st.stage_sum_ms[stage] += ms;
	g_mutex_unlock(&l->stats_lock);
}

void line_count(line *l, uint64_t *field, uint64_t n)
{
	g_mutex_lock(&l->stats_lock);
	*field += n;
	g_mutex_unlock(&l->stats_lock);
}

/* ---- part records ---- */

struct vigil_part *line_part_new(void)
{
	struct line_part *lp = g_new0(struct line_part, 1);

	return &lp->p;
}

void line_part_free(struct vigil_part *p)
{
	if (!p)
		return;
	db_media_set_free(((struct line_part *)p)->media);
	g_free(p);
}

/* ---- inspection: frame + vibration window -> features -> model ---- */

/* Copies what the log may keep of a part - every camera's frame, the
 * defect map, the vibration window - before the frames go back. Whether
 * they are kept is the log's decision once the verdict is final. */
static struct db_media_set *copy_media(line *l, struct capture_frame **frames,
				       const float *win, size_t win_len)
{
	struct db_media_set *m = g_new0(struct db_media_set, 1);

	for (int i = 0; i < l->ncameras && i < DB_MEDIA_MAX_IMAGES; i++) {
		struct capture_frame *f = frames[i];

		if (!f)
			continue;
		m->images[m->nimages].camera = g_strdup(l->cameras[i].name);
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
		m->rate_hz = l->sen_cfg.rate_hz;
	}
	return m;
}

/* A part between the acquire and inspect threads: its frames and
 * features, ready for the model. */
struct ready_part {
	struct vigil_part *p;
	struct capture_frame *frames[LINE_MAX_CAMERAS];
	float *feat;               /* the window's features, signal_dim floats */
	float *window;             /* instead, the window itself (l->device_prep) */
	double features_ms;        /* condition figures and features */
	gboolean failsafe;         /* no model run: a frame or the window is missing */
};

static void ready_part_free(struct ready_part *r)
{
	for (int i = 0; i < LINE_MAX_CAMERAS; i++)
		capture_frame_free(r->frames[i]);
	g_free(r->feat);
	g_free(r->window);
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

/* Camera c's frame for p, waiting as wait_left_us allows. */
static int frame_for(line *l, const struct line_camera *c, const struct vigil_part *p,
		     struct capture_frame **frame)
{
	/* A free-running camera's timeout is a tolerance after the trigger
	 * already; a sequence wait is counted from the part's trigger too,
	 * so parts queued behind a stall time out at their own deadlines
	 * rather than one timeout each. */
	if (c->cfg.mode == CAPTURE_TIMESTAMP)
		return capture_frame_for(c->cam, p->seq, p->t_trigger_us,
					 (int64_t)c->frame_timeout_ms * 1000, frame);
	for (;;) {
		int64_t left = wait_left_us(l, p, c->frame_timeout_ms);
		int rc = capture_frame_for(c->cam, p->seq, p->t_trigger_us,
					   MIN(left, WAIT_SLICE_US), frame);

		if (rc != -ETIMEDOUT || left <= WAIT_SLICE_US)
			return rc;
	}
}

/* p's vibration window, waiting as wait_left_us allows. */
static int window_for(line *l, const struct vigil_part *p, float *win, unsigned *flags,
		      int64_t *t_first_ns)
{
	for (;;) {
		int64_t left = wait_left_us(l, p, l->window_timeout_ms), t0 = vigil_now_us();
		int rc = sensor_window_for(l->sensor, p->seq, p->t_trigger_us,
					   MIN(left, WAIT_SLICE_US), win, flags, t_first_ns);

		/* A clock-mode source without a sample yet says so at once. */
		if (rc != -ETIMEDOUT || left <= WAIT_SLICE_US || vigil_now_us() - t0 < WAIT_SLICE_US)
			return rc;
	}
}

/* Waits for the part's frames and vibration window and computes what the
 * model needs that does not depend on the model: the window's condition
 * figures and features (the line's window and rate, which every job's
 * package must fit, line_model_fits). */
static struct ready_part *acquire_part(line *l, struct vigil_part *p, float *win, size_t feat_dim)
{
	struct ready_part *r = g_new0(struct ready_part, 1);
	struct line_part *lp = (struct line_part *)p;
	unsigned wflags = 0;
	GString *trace = NULL;
	int64_t t0, t_window_ns = -1;
	int rc;

	r->p = p;
	for (int i = 0; i < l->ncameras; i++) {
		struct line_camera *c = &l->cameras[i];

		rc = frame_for(l, c, p, &r->frames[i]);
		if (rc < 0) {
			g_warning("part %u: no frame from camera %s: %s", p->part_id, c->name,
				  rc == -ENOTCONN ? "camera down" : g_strerror(-rc));
			p->flags |= VIGIL_FLAG_NO_FRAME;
		}
	}
	rc = window_for(l, p, win, &wflags, &t_window_ns);
	if (rc < 0 || (wflags & RING_GAP)) {
		g_warning("part %u: no complete vibration window from %s: %s", p->part_id,
			  l->sen_name, rc < 0 ? g_strerror(-rc) : "gap in the samples");
		p->flags |= VIGIL_FLAG_NO_VIBRATION;
	} else if (wflags & RING_CLIPPED) {
		/* Figures from a saturated sensor would be made up. */
		g_warning("part %u: vibration window from %s reached the clip level", p->part_id,
			  l->sen_name);
		p->flags |= VIGIL_FLAG_VIB_CLIPPED;
	}
	line_count_stage(l, LINE_STAGE_CAPTURE_WAIT,
			 (double)(vigil_now_us() - p->t_trigger_us) / 1000.0);
	lp->media = copy_media(l, r->frames, p->flags & VIGIL_FLAG_NO_VIBRATION ? NULL : win,
			       l->sen_cfg.window);
	/* The pairing trace (docs/architecture.md, "One clock"): each frame's
	 * arrival and stamped time and the window's first sample, relative to
	 * the trigger, in microseconds. */
	if (g_log_writer_default_would_drop(G_LOG_LEVEL_DEBUG, G_LOG_DOMAIN) == FALSE) {
		trace = g_string_new(NULL);
		for (int i = 0; i < l->ncameras; i++) {
			if (!r->frames[i])
				continue;
			g_string_append_printf(trace, " %s=%" G_GUINT64_FORMAT ":%" G_GINT64_FORMAT,
					       l->cameras[i].name, r->frames[i]->seq,
					       r->frames[i]->t_us - p->t_trigger_us);
			if (r->frames[i]->t_pts_us >= 0)
				g_string_append_printf(trace, ":%" G_GINT64_FORMAT,
						       r->frames[i]->t_pts_us - p->t_trigger_us);
		}
		if (t_window_ns >= 0)
			g_string_append_printf(trace, " window=%.1f",
					       (double)(t_window_ns - p->t_trigger_us * 1000) / 1e3 -
					       l->sen_cfg.offset_ms * 1e3);
		g_debug("pairing part %u trigger %" G_GINT64_FORMAT "%s", p->part_id,
			p->t_trigger_us, trace->str);
		g_string_free(trace, TRUE);
	}
	if (l->transmitter) {
		struct transmitter_reading tr;

		rc = sensor_transmitter_latest(l->transmitter, &tr);
		if (rc == 0 || rc == -ESTALE) {
			p->tx_state = rc == 0 ? 1 : 2;
			p->t_tx_us = tr.t_us;
			p->tx_velocity_mm_s = tr.value[TRANSMITTER_VELOCITY];
			p->tx_accel_g = tr.value[TRANSMITTER_ACCELERATION];
			p->tx_temperature_c = tr.value[TRANSMITTER_TEMPERATURE];
		}
	}
	if (p->flags & (VIGIL_FLAG_NO_FRAME | VIGIL_FLAG_NO_VIBRATION | VIGIL_FLAG_VIB_CLIPPED)) {
		r->failsafe = TRUE;
		return r;
	}
	t0 = vigil_now_us();
	if (condition_measure(l->condition, win, l->iso_class,
			      l->have_bearing ? &l->bearing : NULL, &p->vibration) == 0)
		p->has_vibration = 1;
	if (l->device_prep) {
		/* The model computes the features on the GPU from the window. */
		for (size_t i = 0; i < l->sen_cfg.window && !r->failsafe; i++)
			r->failsafe = !isfinite(win[i]);
		if (!r->failsafe)
			r->window = g_memdup2(win, l->sen_cfg.window * sizeof *win);
	} else {
		r->feat = g_new(float, feat_dim);
		r->failsafe = fusion_sigfeat_compute(l->sigfeat, win, r->feat) < 0;
	}
	if (r->failsafe) {
		g_warning("part %u: vibration window is not finite", p->part_id);
		p->flags |= VIGIL_FLAG_MODEL_ERROR;
	}
	r->features_ms = (double)(vigil_now_us() - t0) / 1000.0;
	return r;
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
			images += l->ncameras;
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
		bi->windows = g_renew(const float *, bi->windows, images);
		bi->cap = images;
	}
	for (int j = 0; j < n; j++) {
		struct ready_part *r = ready[j];
		int first = k;

		if (r->failsafe)
			continue;
		for (int i = 0; i < l->ncameras && !r->failsafe; i++, k++) {
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
				bad = fusion_image_prepare_resize(f->data, f->width, f->height,
								  f->stride, info->input_width,
								  info->input_height, info->mean,
								  info->std, info->resize,
								  bi->img + (size_t)k * npix) < 0;
			}
			if (bad) {
				g_warning("part %u: model failed on camera %s: bad image",
					  r->p->part_id, l->cameras[i].name);
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
		for (int i = 0; i < l->ncameras; i++, k++) {
			const struct infer_output *out = &bi->out[k];

			flags |= out->flags;
			if (i == 0 || out->score > worst.score) {
				worst = *out;
				/* The worst camera's defect map is the part's; the
				 * model reuses its buffer on the next run. */
				g_clear_pointer(&lp->media->heatmap, g_free);
				if (out->heatmap && out->heatmap_w > 0 && out->heatmap_h > 0) {
					lp->media->heatmap = g_memdup2(out->heatmap,
								       (gsize)out->heatmap_w *
								       (gsize)out->heatmap_h *
								       sizeof(float));
					lp->media->heatmap_w = out->heatmap_w;
					lp->media->heatmap_h = out->heatmap_h;
				}
			}
			worst.vision_score = MAX(worst.vision_score, out->vision_score);
		}
		/* What the part waited for: its features and the batch's run. */
		p->infer_ms = r->features_ms + run_ms;
		line_count_stage(l, LINE_STAGE_INFERENCE, p->infer_ms);
		p->verdict = line_jobs_verdict(l, worst.score, worst.verdict);
		p->model_verdict = p->verdict;
		p->model_score = worst.score;
		p->defect_class = worst.defect_class;
		p->flags |= flags;
		p->score = worst.score;
		p->vision_score = worst.vision_score;
		p->signal_score = worst.signal_score;
	}
}

void line_camera_stats(line *l, struct capture_stats *st)
{
	memset(st, 0, sizeof *st);
	st->up = 1;
	for (int i = 0; i < l->ncameras; i++) {
		struct capture_stats one;

		capture_camera_stats(l->cameras[i].cam, &one);
		st->frames += one.frames;
		st->dropped += one.dropped;
		st->restarts += one.restarts;
		st->failed |= one.failed;
		st->up &= one.up;
	}
}

/* The acquire thread: parts from the PLC thread, in trigger order, with
 * their frames and window in hand, to the inspect thread; job changes pass
 * through in their place. */
static gpointer acquire_thread(gpointer data)
{
	line *l = data;
	float *win = g_new(float, l->sen_cfg.window);
	size_t feat_dim = fusion_sigfeat_dim(l->sigfeat);
	void *item;

	while (bqueue_pop(l->q_inspect, &item, -1) == 0) {
		if (!line_jobs_is_swap(l, item))
			item = acquire_part(l, item, win, feat_dim);
		bqueue_push(l->q_ready, item, -1);
	}
	bqueue_close(l->q_ready);
	g_free(win);
	return NULL;
}

/* The inspect thread: one model run for the first ready part and those
 * already waiting behind it, up to [model] max_batch; it never waits for
 * a batch to fill, so a part alone on the line is judged at once. Each
 * part's verdict goes to the PLC thread on its own. */
static gpointer inspect_thread(gpointer data)
{
	line *l = data;
	struct ready_part **batch = g_new(struct ready_part *, l->max_batch);
	struct batch_inputs bi = { 0 };
	void *item;

	while (bqueue_pop(l->q_ready, &item, -1) == 0) {
		void *swap = NULL;
		int n = 0;

		if (line_jobs_is_swap(l, item)) {
			/* Another job, between parts. */
			line_jobs_swap(l);
			continue;
		}
		batch[n++] = item;
		while (n < l->max_batch && bqueue_pop(l->q_ready, &item, 0) == 0) {
			if (line_jobs_is_swap(l, item)) {
				swap = item;  /* after this batch, before the next part */
				break;
			}
			batch[n++] = item;
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
	g_free(bi.windows);
	g_free(batch);
	return NULL;
}

/* ---- logging: the only thread that may wait on the database ---- */

static void make_row(const struct vigil_part *p, struct db_inspection *row)
{
	*row = (struct db_inspection){
		.part_id = p->part_id,
		.trigger_counter = p->trigger_counter,
		.seq = p->seq,
		.t_wall_us = p->t_wall_us,
		.verdict = p->verdict,
		.defect_class = p->defect_class,
		.flags = p->flags,
		.score = p->score,
		.vision_score = p->vision_score,
		.signal_score = p->signal_score,
		.latency_ms = p->t_plc_us ? (double)(p->t_plc_us - p->t_trigger_us) / 1000.0 : NAN,
		.infer_ms = p->infer_ms,
		.model_version = p->model_version,
		.model_verdict = p->model_verdict,
		.model_score = p->model_score,
		.has_vibration = p->has_vibration,
		.vibration = p->vibration,
	};
}

/* Queues row (and media, taken over) for r without waiting. */
static void queue_row(line *l, const struct db_inspection *row, struct db_media_set *media,
		      uint32_t part_id, struct line_row *r)
{
	uint64_t ticket = 0;

	if (db_submit_media(l->db, row, media, 0, &ticket) == 0) {
		r->ticket = ticket;
		r->t_queued_us = vigil_now_us();
		line_count(l, &l->st.rows_logged, 1);
		/* After a row that could not be queued early, the fault lasts
		 * until the writer has caught up with this one. */
		if (l->db_late_ticket == UINT64_MAX)
			l->db_late_ticket = ticket;
	} else {
		/* The queue is full: the log thread queues the row after the
		 * result went out; the database is in fault meanwhile. */
		if (!l->db_late_ticket)
			g_warning("part %u: the database queue is full: its result goes to the "
				  "PLC before its row is written; database fault raised", part_id);
		l->db_late_ticket = UINT64_MAX;
	}
}

/* The row goes to the writer before the result goes to the PLC, so that a
 * result the PLC has seen is in the database (docs/operations.md, crash
 * safety). Its latency is not known yet: the log thread adds it. */
void line_log_early(line *l, struct vigil_part *p)
{
	struct line_part *lp = (struct line_part *)p;
	struct db_inspection row;

	make_row(p, &row);
	queue_row(l, &row, lp->media, p->part_id, &lp->row);
	lp->media = NULL;   /* taken by db_submit_media, even on error */
}

void line_log_failsafe(line *l, struct vigil_part *p, struct line_row *r)
{
	struct db_inspection row = {
		.part_id = p->part_id,
		.trigger_counter = p->trigger_counter,
		.seq = p->seq,
		.t_wall_us = p->t_wall_us,
		.verdict = VIGIL_VERDICT_REJECT,
		.defect_class = VIGIL_CLASS_NONE,
		.flags = VIGIL_FLAG_FAILSAFE | VIGIL_FLAG_DEADLINE,
		.score = 1.0,
		.vision_score = NAN,
		.signal_score = NAN,
		.latency_ms = NAN,
		.infer_ms = NAN,
	};

	queue_row(l, &row, NULL, p->part_id, r);
	/* The part is still being inspected: the log thread stores its
	 * model verdict beside this row when it comes. */
	if (r->ticket)
		atomic_store(&((struct line_part *)p)->failsafe_ticket, r->ticket);
}

void line_log_not_sent(line *l, struct vigil_part *p)
{
	struct line_part *lp = (struct line_part *)p;
	struct db_inspection row;

	p->flags |= VIGIL_FLAG_NOT_SENT | VIGIL_FLAG_FAILSAFE;
	p->verdict = VIGIL_VERDICT_REJECT;
	p->score = 1.0f;
	if (!lp->row.ticket)
		return;  /* its row is written by the log thread, as it is now */
	make_row(p, &row);
	db_set_late(l->db, lp->row.ticket, &row, NULL);
}

gboolean line_row_committed(line *l, struct line_row *r, uint32_t part_id, int64_t now_us)
{
	if (!r->ticket)
		return TRUE;
	if (db_settled(l->db) >= r->ticket) {
		if (!r->commit_seen)
			line_count_stage(l, LINE_STAGE_DB_WRITE,
					 (double)(now_us - r->t_queued_us) / 1000.0);
		r->commit_seen = TRUE;
		return TRUE;
	}
	if (!db_ok(l->db) || line_db_fault(l) ||
	    now_us - r->t_queued_us > (int64_t)l->db_commit_timeout_ms * 1000) {
		if (!line_db_fault(l))
			g_warning("part %u: its row is not committed after %d ms: result sent to the "
				  "PLC anyway, database fault raised", part_id,
				  l->db_commit_timeout_ms);
		l->db_late_ticket = MAX(l->db_late_ticket, r->ticket);
		return TRUE;
	}
	return FALSE;
}

/* db_late_ticket is the PLC thread's alone. */
gboolean line_db_fault(line *l)
{
	if (l->db_late_ticket && l->db_late_ticket != UINT64_MAX &&
	    db_settled(l->db) >= l->db_late_ticket)
		l->db_late_ticket = 0;
	return !db_ok(l->db) || l->db_late_ticket != 0;
}

/* What the log thread last wrote to the events table about the devices. */
struct device_watch {
	gboolean cam_down[LINE_MAX_CAMERAS];
	uint64_t cam_restarts[LINE_MAX_CAMERAS];
	gboolean sensor_failed, window_fault;
	gboolean tx_away;
	gboolean db_fault, db_slow; /* db_slow: a fault this thread logged */
	uint64_t failsafe_seen[LINE_FAILSAFE_CAUSES]; /* as of the last failsafe event */
	int64_t next_failsafe_event_us;
};

/* Transmitter readings as trend rows, stamped on the wall clock. */
static void log_trend(line *l, const struct transmitter_reading *r, int64_t part_id, int stale)
{
	struct db_trend row = {
		.source = l->tx_name,
		.t_wall_us = vigil_wall_us() - (vigil_now_us() - r->t_us),
		.part_id = part_id,
		.velocity_mm_s = r->value[TRANSMITTER_VELOCITY],
		.accel_g = r->value[TRANSMITTER_ACCELERATION],
		.temperature_c = r->value[TRANSMITTER_TEMPERATURE],
		.stale = stale,
	};

	db_trend(l->db, &row);
}

static void event(line *l, const char *kind, const char *fmt, ...) G_GNUC_PRINTF(3, 4);
static void event(line *l, const char *kind, const char *fmt, ...)
{
	va_list ap;
	char *msg;

	va_start(ap, fmt);
	msg = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	db_event(l->db, kind, msg);
	g_free(msg);
}

void line_post_event(line *l, const char *kind, const char *fmt, ...)
{
	struct line_event *e = g_new(struct line_event, 1);
	va_list ap;

	va_start(ap, fmt);
	e->kind = g_strdup(kind);
	e->message = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	g_async_queue_push(l->events, e);
}

/* Camera down/up and pipeline faults as rows in the events table. Polled,
 * so a restart quicker than one poll still shows as down then up (the
 * restart counter moved). */
static void watch_devices(line *l, struct device_watch *w)
{
	struct sensor_stats ss;
	struct line_event *e;

	while ((e = g_async_queue_try_pop(l->events))) {
		db_event(l->db, e->kind, e->message);
		line_event_free(e);
	}
	for (int i = 0; i < l->ncameras; i++) {
		struct capture_stats cs;
		const char *name = l->cameras[i].name;

		capture_camera_stats(l->cameras[i].cam, &cs);
		if ((!cs.up || cs.restarts > w->cam_restarts[i]) && !w->cam_down[i]) {
			event(l, "camera-down", "camera %s down; restarting with back-off", name);
			w->cam_down[i] = TRUE;
		}
		if (cs.up && w->cam_down[i]) {
			event(l, "camera-up", "camera %s up again (%" G_GUINT64_FORMAT
			      " restarts so far)", name, cs.restarts);
			w->cam_down[i] = FALSE;
		}
		w->cam_restarts[i] = cs.restarts;
	}
	/* A database that fails writes logs its own db-fault and db-ok once
	 * it writes again (db/db.h); a slow one (rows not committed within
	 * commit_timeout_ms, or the row queue full) is logged here. */
	if (g_atomic_int_get(&l->db_fault_up) != w->db_fault) {
		w->db_fault = !w->db_fault;
		if (w->db_fault && db_ok(l->db)) {
			event(l, "db-fault", "rows not committed within %d ms: results go to the "
			      "PLC without waiting for their rows (verdicts unaffected)",
			      l->db_commit_timeout_ms);
			w->db_slow = TRUE;
		} else if (!w->db_fault && w->db_slow) {
			event(l, "db-ok", "the database caught up: results wait for their rows "
			      "again");
			w->db_slow = FALSE;
		}
	}
	sensor_source_stats(l->sensor, &ss);
	if (ss.failed && !w->sensor_failed) {
		event(l, "sensor-fault", "vibration %s: pipeline failed", l->sen_name);
		w->sensor_failed = TRUE;
	}
	if (l->transmitter) {
		struct transmitter_reading r[64];
		struct transmitter_stats ts;
		size_t n;

		while ((n = sensor_transmitter_take_trend(l->transmitter, r, G_N_ELEMENTS(r))))
			for (size_t i = 0; i < n; i++)
				log_trend(l, &r[i], -1, 0);
		sensor_transmitter_stats(l->transmitter, &ts);
		if (!ts.connected && ts.failures && !w->tx_away) {
			event(l, "sensor-fault", "transmitter %s: not answering", l->tx_name);
			w->tx_away = TRUE;
		} else if (ts.connected && w->tx_away) {
			event(l, "sensor-ok", "transmitter %s: answering again", l->tx_name);
			w->tx_away = FALSE;
		}
	}
}

/* Fail-safe rejects as events: the first at once, then what came since at
 * most every 10 s (a stalled source makes one every part), and the rest
 * when the line stops (final). */
static void watch_failsafe(line *l, struct device_watch *w, gboolean final)
{
	struct line_stats st;
	int64_t now = vigil_now_us();
	uint64_t n = 0;
	GString *msg;

	line_get_stats(l, &st);
	for (int c = 0; c < LINE_FAILSAFE_CAUSES; c++)
		n += st.failsafe_by[c] - w->failsafe_seen[c];
	if (!n || (!final && now < w->next_failsafe_event_us))
		return;
	msg = g_string_new(NULL);
	g_string_printf(msg, "%" G_GUINT64_FORMAT " fail-safe reject(s), by cause:", n);
	for (int c = 0; c < LINE_FAILSAFE_CAUSES; c++)
		if (st.failsafe_by[c] > w->failsafe_seen[c])
			g_string_append_printf(msg, " %s %" G_GUINT64_FORMAT,
					       line_failsafe_cause_names[c],
					       st.failsafe_by[c] - w->failsafe_seen[c]);
	event(l, "failsafe", "%s", msg->str);
	g_string_free(msg, TRUE);
	memcpy(w->failsafe_seen, st.failsafe_by, sizeof w->failsafe_seen);
	w->next_failsafe_event_us = now + 10 * G_USEC_PER_SEC;
}

/* A part's window fault opens a sensor-fault event; the next good window
 * closes it with sensor-ok. */
static void watch_window(line *l, struct device_watch *w, const struct vigil_part *p)
{
	uint32_t bad = p->flags & (VIGIL_FLAG_NO_VIBRATION | VIGIL_FLAG_VIB_CLIPPED);

	if (bad && !w->window_fault) {
		event(l, "sensor-fault", "vibration %s: part %u: %s", l->sen_name, p->part_id,
		      bad & VIGIL_FLAG_NO_VIBRATION ? "no complete window (late or with a gap)"
						    : "window reached the clip level");
		w->window_fault = TRUE;
	} else if (!bad && w->window_fault) {
		event(l, "sensor-ok", "vibration %s: part %u: complete window again", l->sen_name,
		      p->part_id);
		w->window_fault = FALSE;
	}
}

static gpointer log_thread(gpointer data)
{
	line *l = data;
	struct device_watch watch = { 0 };
	void *item;
	int rc;

	while ((rc = bqueue_pop(l->q_log, &item, 200000)) != -EPIPE) {
		struct vigil_part *p = item;
		struct line_part *lp = item;
		struct db_inspection row;
		uint64_t fs_ticket;

		watch_devices(l, &watch);
		watch_failsafe(l, &watch, FALSE);
		if (rc < 0)
			continue;
		watch_window(l, &watch, p);
		if (p->tx_state) {
			struct transmitter_reading r = {
				.t_us = p->t_tx_us,
				.value = { p->tx_velocity_mm_s, p->tx_accel_g, p->tx_temperature_c },
			};

			log_trend(l, &r, p->part_id, p->tx_state == 2);
		}

		if ((fs_ticket = atomic_load(&lp->failsafe_ticket))) {
			/* The PLC got a fail-safe reject at the deadline, and
			 * its row is written: the model's verdict goes beside. */
			p->verdict = VIGIL_VERDICT_REJECT;
			p->flags |= VIGIL_FLAG_FAILSAFE | VIGIL_FLAG_DEADLINE;
			p->score = 1.0f;
		}
		make_row(p, &row);
		if (!isnan(row.latency_ms))
			count_latency(l, row.latency_ms);
		if (lp->row.ticket) {
			/* Queued before the PLC got the result; now the latency. */
			if (p->t_plc_us)
				db_set_latency(l->db, lp->row.ticket, row.latency_ms);
		} else if (fs_ticket) {
			db_set_late(l->db, fs_ticket, &row, lp->media);
		} else if (db_submit_media(l->db, &row, lp->media, -1, NULL) == 0) {
			line_count(l, &l->st.rows_logged, 1);
		} else {
			line_count(l, &l->st.rows_failed, 1);
		}
		lp->media = NULL;
		line_part_free(p);
	}
	/* What changed since the last look (a fault that cleared as the line
	 * stopped) is logged before the database closes. */
	watch_devices(l, &watch);
	watch_failsafe(l, &watch, TRUE);
	return NULL;
}

int line_start(line *l, char **err)
{
	int rc;

	for (int i = 0; i < l->ncameras; i++)
		if ((rc = capture_camera_start(l->cameras[i].cam, err)) < 0)
			return rc;
	if ((rc = sensor_source_start(l->sensor, err)) < 0)
		return rc;
	l->jobs_loader = line_jobs_new(l);
	if (l->transmitter && (rc = sensor_transmitter_start(l->transmitter, err)) < 0)
		return rc;
	l->t_log = g_thread_new("log", log_thread, l);
	l->t_acquire = g_thread_new("acquire", acquire_thread, l);
	l->t_inspect = g_thread_new("inspect", inspect_thread, l);
	l->t_plc = g_thread_new("plc", line_plc_thread, l);
	return 0;
}

void line_stop(line *l, int grace_ms)
{
	if (!l->t_plc)
		return;
	g_atomic_int_set(&l->stop_triggers, 1);
	l->grace_end_us = vigil_now_us() + (int64_t)grace_ms * 1000;
	g_atomic_int_set(&l->stop_all, 1);
	g_thread_join(l->t_plc);
	l->t_plc = NULL;
	bqueue_close(l->q_inspect);
	g_thread_join(l->t_acquire);  /* it closes q_ready */
	g_thread_join(l->t_inspect);
	line_jobs_free(l->jobs_loader); /* it may log an event */
	l->jobs_loader = NULL;
	/* Verdicts that came after the PLC thread ended are still logged,
	 * as never presented unless a fail-safe reject went out for them. */
	{
		void *item;

		while (bqueue_pop(l->q_results, &item, 0) == 0) {
			if (!atomic_load(&((struct line_part *)item)->failsafe_ticket))
				line_log_not_sent(l, item);
			bqueue_push(l->q_log, item, -1);
		}
	}
	bqueue_close(l->q_log);
	g_thread_join(l->t_log);
	db_close(l->db);
	l->db = NULL;
}

void line_get_stats(line *l, struct line_stats *st)
{
	g_mutex_lock(&l->stats_lock);
	*st = l->st;
	g_mutex_unlock(&l->stats_lock);
}

void line_get_health(line *l, struct line_health *h)
{
	*h = (struct line_health){
		.q_inspect = bqueue_depth(l->q_inspect) + bqueue_depth(l->q_ready),
		.q_results = bqueue_depth(l->q_results),
		.q_log = bqueue_depth(l->q_log),
		/* The link itself belongs to the PLC thread; it publishes
		 * its state once per poll. */
		.plc_connected = g_atomic_int_get(&l->plc_up),
		.cameras = l->ncameras,
		.db_rows_written = db_rows_written(l->db),
		.db_rows_failed = db_rows_failed(l->db),
		.db_ok = !g_atomic_int_get(&l->db_fault_up),
		.db_write_lag_ms = db_write_lag_ms(l->db),
		.db_write_lag_max_ms = db_write_lag_max_ms(l->db),
		.db_queue_high_water = db_queue_high_water(l->db),
		.db_media_written = db_media_written(l->db),
		.db_media_dropped = db_media_dropped(l->db),
	};
	for (int i = 0; i < l->ncameras; i++) {
		struct capture_stats one;

		capture_camera_stats(l->cameras[i].cam, &one);
		h->cameras_up += one.up ? 1 : 0;
		h->camera[i].name = l->cameras[i].name;
		h->camera[i].frames = one.frames;
		h->camera[i].up = one.up;
	}
	for (int t = 0; t < DB_NTABLES; t++)
		for (int c = 0; c < DB_NDROP_CAUSES; c++)
			h->db_rows_dropped[t][c] = db_rows_dropped(l->db, t, c);
	h->db_spool_depth = db_spool_depth(l->db);
}
