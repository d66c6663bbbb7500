/* Jobs (recipes): the PLC selects a job number, a job is a model package
 * and its thresholds ([job.N]).
 *
 *   PLC thread --request--> loader thread: load the package, check it
 *   (infer_model_load: manifest, SHA-256, trial run; line_model_fits;
 *   infer_gate_check: its held-out figures against [model]'s limits)
 *   loader --LINE_MSG_JOB in q_inspect--> inspection thread: swap between parts
 *   loader --report--> PLC thread: active_job, or the refusal's error code
 *
 * Loading takes seconds and must not hold up inspection or the PLC, so it
 * has its own thread; the inspection thread only exchanges two pointers.
 * The message travels through q_inspect behind the parts already waiting,
 * so those are judged by the job they were triggered under. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "app/line-private.h"

#define REQ_STOP GINT_TO_POINTER(-1)

struct job_report {
	int job, error;
};

struct line_jobs {
	line *l;
	struct line_msg msg;     /* LINE_MSG_JOB: the hand-over's message */
	GThread *thread;
	GAsyncQueue *requests;   /* GINT_TO_POINTER(job + 1), or REQ_STOP */
	GAsyncQueue *reports;    /* struct job_report *, for the PLC thread */

	/* The hand-over to the inspection thread. */
	GMutex lock;
	GCond taken;
	gboolean handed, stopping;
	infer_model *model;      /* handed: the new model (NULL: keep the running
				  * one); once taken: the one it replaced */
	int job;

	/* The loader's own view of what the inspection thread runs. */
	char *package;
	const char *version;     /* interned */
	int cur_job;
};

/* ---- the selection and the handshake kept across restarts ----
 *
 * state_file holds "key=value" lines: job (the PLC's selection), and
 * result_counter, trigger_counter and part_id (the last result presented
 * and the trigger it answered; docs/plc.md, restarts). A file of an older
 * vigild holds the job alone. */

int line_jobs_start_job(line *l)
{
	char *text = NULL;
	int job = l->set.plc.job;

	if (g_file_get_contents(l->set.plc_state_path, &text, NULL, NULL)) {
		char **lines = g_strsplit(text, "\n", -1);
		gboolean job_ok = FALSE, have_counter = FALSE, have_part = FALSE;
		unsigned trigger = 0;

		for (char **ln = lines; *ln; ln++) {
			unsigned v = 0;
			int n = 0;

			if (sscanf(*ln, "job=%d", &n) == 1 && n >= 0 && n <= LINE_MAX_JOBS &&
			    (n == 0 || l->set.jobs[n].number)) {
				job = n;
				job_ok = TRUE;
			} else if (sscanf(*ln, "result_counter=%u", &v) == 1 && v <= UINT16_MAX) {
				l->kept_plc.result_counter = (uint16_t)v;
			} else if (sscanf(*ln, "trigger_counter=%u", &v) == 1 && v <= UINT16_MAX) {
				trigger = v;
				have_counter = TRUE;
			} else if (sscanf(*ln, "part_id=%u", &v) == 1) {
				l->kept_plc.part_id = v;
				have_part = TRUE;
			}
		}
		if (have_counter && have_part) {
			l->kept_plc.have_trigger = 1;
			l->kept_plc.trigger_counter = (uint16_t)trigger;
		}
		if (!job_ok)
			g_warning("%s: no valid job selection, using job %d", l->set.plc_state_path, job);
		g_strfreev(lines);
		g_free(text);
	}
	l->kept_job = job;
	return job;
}

/* The state as state_file holds it, padded with spaces to STATE_RECORD
 * bytes: the per-result writes overwrite the file in place, so each has
 * the same length, and a reader (line_jobs_start_job) skips the padding,
 * which matches no key. */
#define STATE_RECORD 128

static GString *state_text(const line *l)
{
	GString *text = g_string_new(NULL);
	const struct plc_session_kept *k = &l->kept_plc;

	g_string_append_printf(text, "job=%d\n", l->kept_job);
	if (k->result_counter)
		g_string_append_printf(text, "result_counter=%u\n", k->result_counter);
	if (k->have_trigger)
		g_string_append_printf(text, "trigger_counter=%u\npart_id=%u\n",
				       k->trigger_counter, (unsigned)k->part_id);
	while (text->len < STATE_RECORD - 1)
		g_string_append_c(text, ' ');
	g_string_append_c(text, '\n');
	return text;
}

static void state_saved(line *l, const char *what)
{
	if (what && !l->kept_save_failed)
		g_warning("cannot keep the job selection and the PLC handshake in %s: %s",
			  l->set.plc_state_path, what);
	l->kept_save_failed = what != NULL;
}

/* The per-result write: the record overwritten in place through a file
 * descriptor kept open, no new file and no rename. Replacing the file for
 * each result (a new inode, then a rename) cost the PLC thread 0.1 ms a
 * result and up to 69 ms at times on this ext4 (docs/plc.md, restarts);
 * an overwrite in place is a copy to the page cache. A record this small
 * lies in one disk sector, so it is not torn either. The file is opened
 * again if it was replaced (line_jobs_save) or removed meanwhile. */
static int save_in_place(line *l, const GString *text)
{
	struct stat st;

	if (l->kept_fd >= 0 && (fstat(l->kept_fd, &st) < 0 || st.st_nlink == 0)) {
		close(l->kept_fd);
		l->kept_fd = -1;
	}
	if (l->kept_fd < 0) {
		l->kept_fd = open(l->set.plc_state_path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
		/* A file of an older vigild may be longer than one record. */
		if (l->kept_fd < 0 || ftruncate(l->kept_fd, (off_t)text->len) < 0)
			return -errno;
	}
	if (pwrite(l->kept_fd, text->str, text->len, 0) != (ssize_t)text->len)
		return errno ? -errno : -EIO;
	return 0;
}

/* Writes l's kept state to state_file: durable replaces the file by a
 * rename after a sync, so that a crash or a power cut leaves the old state
 * or the new one; otherwise the record is overwritten in place. */
static void save_state(line *l, gboolean durable)
{
	GString *text = state_text(l);
	GError *gerr = NULL;
	int rc;

	if (durable) {
		if (g_file_set_contents(l->set.plc_state_path, text->str, (gssize)text->len,
					&gerr)) {
			state_saved(l, NULL);
		} else {
			state_saved(l, gerr->message);
			g_error_free(gerr);
		}
		/* The descriptor kept is the replaced file's now. */
		if (l->kept_fd >= 0) {
			close(l->kept_fd);
			l->kept_fd = -1;
		}
	} else {
		errno = 0;
		rc = save_in_place(l, text);
		state_saved(l, rc < 0 ? g_strerror(-rc) : NULL);
	}
	g_string_free(text, TRUE);
}

void line_jobs_save(line *l, int job)
{
	l->kept_job = job;
	save_state(l, TRUE);
}

void line_state_save_result(line *l, uint16_t result_counter, uint16_t trigger_counter,
			    uint32_t part_id)
{
	l->kept_plc.result_counter = result_counter;
	l->kept_plc.have_trigger = 1;
	l->kept_plc.trigger_counter = trigger_counter;
	l->kept_plc.part_id = part_id;
	save_state(l, FALSE);
}

/* ---- loading and checking a package ---- */

int line_model_fits(line *l, const infer_model *m, const char **key, char **err)
{
	const struct infer_info *info = infer_model_info(m);
	gboolean rate_fits = fabs(info->rate_hz - l->set.vibration.cfg.rate_hz) <= 1e-6;

	if (!rate_fits || (int)l->set.vibration.cfg.window != info->window) {
		*err = g_strdup_printf("the vibration window is %zu samples at %g Hz but model %s "
				       "wants %d samples at %g Hz",
				       l->set.vibration.cfg.window, l->set.vibration.cfg.rate_hz,
				       info->version, info->window, info->rate_hz);
		*key = rate_fits ? "window" : "rate_hz";
		return -EINVAL;
	}
	if ((int)fusion_sigfeat_dim(l->sigfeat) != info->signal_dim) {
		*err = g_strdup_printf("model %s wants %d signal features; this build computes %zu",
				       info->version, info->signal_dim,
				       fusion_sigfeat_dim(l->sigfeat));
		*key = NULL;
		return -EINVAL;
	}
	return 0;
}

/* The package at dir, loaded and checked (its held-out figures too); NULL
 * with *err ("model package DIR refused: why") and *error (enum
 * plc_error_code: what the PLC is told) when refused, and *unfit_key as
 * line_model_fits when it does not fit. */
static infer_model *load_checked(line *l, const char *dir, char **err, int *error,
				 const char **unfit_key)
{
	char *manifest = g_build_filename(dir, "manifest.ini", NULL);
	gboolean present = g_file_test(manifest, G_FILE_TEST_IS_REGULAR);
	infer_model *m;
	char *why = NULL, *warning = NULL;

	g_free(manifest);
	m = infer_model_open(dir, l->set.model.backend, l->set.model.precision,
			     l->set.model.threads, err, NULL);
	if (!m) {
		*error = present ? PLC_ERR_JOB_PACKAGE_CORRUPT : PLC_ERR_JOB_PACKAGE_MISSING;
		return NULL;
	}
	/* Which engine judges the parts, and why: with backend = auto it may
	 * differ from one machine (or job) to the next. */
	g_message("model %s: backend %s %s (%s)", infer_model_info(m)->version,
		  infer_model_backend(m), infer_precision_names[l->set.model.precision],
		  infer_model_choice(m));
	if (line_model_fits(l, m, unfit_key, &why) < 0) {
		*err = g_strdup_printf("model package %s refused: %s", dir, why);
		g_free(why);
		infer_model_free(m);
		*error = PLC_ERR_JOB_PACKAGE_UNFIT;
		return NULL;
	}
	/* The package's own figures on parts it never saw: one that loads
	 * and fits can still judge every part wrong (docs/model.md, the gate). */
	if (infer_gate_check(&l->set.model.gate, infer_model_info(m), &why, &warning) < 0) {
		*err = g_strdup_printf("model package %s (model %s) refused: %s", dir,
				       infer_model_info(m)->version, why);
		g_free(why);
		infer_model_free(m);
		*error = PLC_ERR_JOB_PACKAGE_GATE;
		return NULL;
	}
	if (warning) {
		g_warning("%s (%s)", warning, dir);
		g_free(warning);
	}
	return m;
}

/* What the model-loaded event adds about a package's vision score
 * (docs/model.md, [vision] score). */
static const char *const vision_score_note[INFER_VISION_SCORE_COUNT] = {
	[INFER_VISION_DEFECT] = "",
	[INFER_VISION_ANOMALY] = "; its vision score is an anomaly score (trained on good parts "
				 "alone)",
	[INFER_VISION_FUSED] = "; its vision score is the higher of a defect score and an "
			       "anomaly score",
};

/* vision_score_note, and whether the package joins the frame's
 * dark-residual score ([dark]), for the model-loaded event. */
static const char *score_note(const infer_model *m)
{
	static const char *const dark[INFER_VISION_SCORE_COUNT] = {
		[INFER_VISION_DEFECT] = "; it joins the frame's dark-residual score ([dark])",
		[INFER_VISION_ANOMALY] = "; its vision score is an anomaly score (trained on good "
					 "parts alone) joined with the frame's dark-residual score "
					 "([dark])",
		[INFER_VISION_FUSED] = "; its vision score is the higher of a defect score and an "
				       "anomaly score, joined with the frame's dark-residual "
				       "score ([dark])",
	};
	const struct infer_info *in = infer_model_info(m);

	return (in->dark ? dark : vision_score_note)[in->vision_score];
}

int line_jobs_load_start(line *l, const config *cfg, char **err)
{
	int job = line_jobs_start_job(l), error = 0;
	const char *pkg = job ? l->set.jobs[job].package : l->set.model.package;
	const char *key = NULL;
	char *e = NULL;

	l->model = load_checked(l, pkg, &e, &error, &key);
	if (!l->model && job && strcmp(pkg, l->set.model.package) != 0) {
		/* Rather a known model than no line: the PLC sees the refusal. */
		g_warning("job %d: %s; starting on job 0, the [model] package %s", job, e,
			  l->set.model.package);
		line_post_event(l, "model-refused", "job %d: %s; starting on job 0", job, e);
		l->start_refused = job;
		l->start_error = error;
		g_free(e);
		e = NULL;
		job = 0;
		l->model = load_checked(l, l->set.model.package, &e, &error, &key);
	}
	if (!l->model) {
		/* An unfit package is a configuration that does not hold
		 * together: the vibration setting it does not fit, or, when it
		 * needs what this build does not compute, the package. */
		if (error == PLC_ERR_JOB_PACKAGE_UNFIT) {
			char *group = g_strconcat("vibration.", l->set.vibration.name, NULL);

			*err = key ? config_error(cfg, group, key, "%s", e)
				   : config_error(cfg, "model", "package", "%s", e);
			g_free(group);
		} else {
			*err = g_strdup(e);
		}
		g_free(e);
		return -EINVAL;
	}
	l->run_job = job;
	line_jobs_publish(l);
	/* model-loaded marks where a model began judging parts (at start and at
	 * each swap, change_job), for whoever compares the yield before and
	 * after; the message starts "model VERSION". */
	line_post_event(l, "model-loaded", "model %s (%s) runs job %d from the start on %s %s%s",
			l->run_version, job ? l->set.jobs[job].package : l->set.model.package, job,
			infer_model_backend(l->model),
			infer_precision_names[l->set.model.precision],
			score_note(l->model));
	return 0;
}

/* ---- the inspection thread's side ---- */

void line_jobs_publish(line *l)
{
	const struct infer_info *info = infer_model_info(l->model);

	l->run_version = g_intern_string(info->version);
	g_mutex_lock(&l->stats_lock);
	l->pub_version = l->run_version;
	l->pub_backend = infer_model_backend(l->model);
	l->pub_image = *info->image;
	l->pub_has_dark = info->dark;
	if (info->dark)
		l->pub_dark = *info->dark_spec;
	g_mutex_unlock(&l->stats_lock);
}

void line_jobs_swap(line *l)
{
	line_jobs *j = l->jobs_loader;

	g_mutex_lock(&j->lock);
	if (j->handed) {
		if (j->model) {
			infer_model *old = l->model;

			l->model = j->model;
			j->model = old;
			line_jobs_publish(l);
		}
		l->run_job = j->job;
		j->handed = FALSE;
		g_cond_signal(&j->taken);
	}
	g_mutex_unlock(&j->lock);
}

enum vigil_verdict line_jobs_verdict(line *l, float score, enum vigil_verdict model_verdict)
{
	const struct infer_info *info = infer_model_info(l->model);
	const struct line_job *jb = &l->set.jobs[l->run_job];
	double reject, marginal;

	if (l->run_job == 0 || (isnan(jb->reject) && isnan(jb->marginal)))
		return model_verdict;
	reject = isnan(jb->reject) ? info->reject : jb->reject;
	marginal = isnan(jb->marginal) ? info->marginal : jb->marginal;
	return score >= reject ? VIGIL_VERDICT_REJECT
	     : score >= marginal && marginal < reject ? VIGIL_VERDICT_MARGINAL
						      : VIGIL_VERDICT_ACCEPT;
}

/* ---- the loader thread ---- */

static void report(line_jobs *j, int job, int error)
{
	struct job_report *r = g_new(struct job_report, 1);

	r->job = job;
	r->error = error;
	g_async_queue_push(j->reports, r);
}

/* Loads job's package if it is not the running one, hands it over and
 * waits until the inspection thread took it. -1 when the line stops. */
static int change_job(line_jobs *j, int job)
{
	line *l = j->l;
	const char *pkg = job ? l->set.jobs[job].package : l->set.model.package;
	const char *version = j->version, *note = "";
	infer_model *m = NULL, *old;
	const char *unfit_key;
	char *err = NULL, *msg;
	int error = 0, rc;
	gboolean taken;

	if (strcmp(pkg, j->package) != 0) {
		m = load_checked(l, pkg, &err, &error, &unfit_key);
		if (!m) {
			msg = g_strdup_printf("job %d: %s; job %d (model %s) keeps running", job, err,
					      j->cur_job, j->version);
			g_warning("%s", msg);
			db_event(l->db, "model-refused", msg);
			report(j, job, error);
			g_free(msg);
			g_free(err);
			return 0;
		}
		version = g_intern_string(infer_model_info(m)->version);
		note = score_note(m);
	}

	g_mutex_lock(&j->lock);
	j->model = m;
	j->job = job;
	j->handed = TRUE;
	g_mutex_unlock(&j->lock);
	rc = bqueue_push(l->q_inspect, &j->msg, -1);
	g_mutex_lock(&j->lock);
	while (rc == 0 && j->handed && !j->stopping)
		g_cond_wait(&j->taken, &j->lock);
	taken = !j->handed;
	j->handed = FALSE;
	old = j->model;
	j->model = NULL;
	g_mutex_unlock(&j->lock);
	if (!taken) {
		infer_model_free(old); /* the new one, never run */
		return -1;
	}

	if (m) {
		g_free(j->package);
		j->package = g_strdup(pkg);
		msg = g_strdup_printf("model %s (%s) runs job %d on %s %s, replacing %s (job %d)%s",
				      version, pkg, job, infer_model_backend(m),
				      infer_precision_names[l->set.model.precision], j->version,
				      j->cur_job, note);
	} else {
		msg = g_strdup_printf("job %d: thresholds changed, model %s (%s) kept (was job %d)",
				      job, version, pkg, j->cur_job);
	}
	j->version = version;
	j->cur_job = job;
	g_message("%s", msg);
	db_event(l->db, m ? "model-loaded" : "job", msg);
	g_free(msg);
	/* Freed here, off the inspection thread. */
	infer_model_free(old);
	report(j, job, 0);
	return 0;
}

static gpointer loader_thread(gpointer data)
{
	line_jobs *j = data;

	for (;;) {
		gpointer req = g_async_queue_pop(j->requests), next;

		/* Only the latest selection matters; a stop beats them all. */
		while ((next = g_async_queue_try_pop(j->requests)))
			if (req != REQ_STOP)
				req = next;
		if (req == REQ_STOP || change_job(j, GPOINTER_TO_INT(req) - 1) < 0)
			break;
	}
	return NULL;
}

line_jobs *line_jobs_new(line *l)
{
	line_jobs *j = g_new0(line_jobs, 1);

	j->l = l;
	j->msg.kind = LINE_MSG_JOB;
	j->requests = g_async_queue_new();
	j->reports = g_async_queue_new_full(g_free);
	g_mutex_init(&j->lock);
	g_cond_init(&j->taken);
	/* Before line_start, so these are the inspection thread's. */
	j->package = g_strdup(l->run_job ? l->set.jobs[l->run_job].package : l->set.model.package);
	j->version = l->run_version;
	j->cur_job = l->run_job;
	j->thread = g_thread_new("jobs", loader_thread, j);
	return j;
}

void line_jobs_free(line_jobs *j)
{
	if (!j)
		return;
	g_async_queue_push(j->requests, REQ_STOP);
	g_mutex_lock(&j->lock);
	j->stopping = TRUE;
	g_cond_broadcast(&j->taken);
	g_mutex_unlock(&j->lock);
	g_thread_join(j->thread);
	g_async_queue_unref(j->requests);
	g_async_queue_unref(j->reports);
	g_mutex_clear(&j->lock);
	g_cond_clear(&j->taken);
	g_free(j->package);
	g_free(j);
}

void line_jobs_request(line_jobs *j, int job)
{
	g_async_queue_push(j->requests, GINT_TO_POINTER(job + 1));
}

int line_jobs_report(line_jobs *j, int *job, int *error)
{
	struct job_report *r = g_async_queue_try_pop(j->reports);

	if (!r)
		return -EAGAIN;
	*job = r->job;
	*error = r->error;
	g_free(r);
	return 0;
}
