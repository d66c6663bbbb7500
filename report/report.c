/* The shift report (report.h): one HTML document per shift occurrence. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/part.h"
#include "report/report.h"

#define TOP_DEFECTS_DEFAULT 12
/* A shift with more events than this is cut, saying how many more: a
 * report of thousands of rows is not read, and would not print. */
#define EVENTS_MAX 200

/* Inline, so the file vigilctl writes stands alone; vigild allows exactly
 * this sheet by its hash (report_style_source). A4 portrait: the summary
 * on page one, the top defects and the events each from a new page. */
static const char report_css[] =
	"body{font:14px/1.4 system-ui,sans-serif;margin:0 auto;max-width:190mm;padding:8px;color:#111}"
	"h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;border-bottom:1px solid #888;margin:16px 0 6px}"
	"table{border-collapse:collapse;width:100%}"
	"th,td{border:1px solid #bbb;padding:2px 6px;text-align:left;vertical-align:top;"
	"overflow-wrap:anywhere}"
	"td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}"
	".meta{color:#444;margin:0}.alarm td{background:#fde2e2}"
	".defects{display:grid;grid-template-columns:repeat(auto-fill,minmax(42mm,1fr));gap:6px}"
	".defects figure{margin:0;border:1px solid #bbb;padding:4px;break-inside:avoid}"
	".defects img{display:block;width:100%;height:auto;max-height:60mm;object-fit:contain;"
	"background:#eee}"
	".defects figcaption{font-size:12px;overflow-wrap:anywhere}"
	"@page{size:A4;margin:12mm}"
	"@media print{body{max-width:none;padding:0;font-size:11px}"
	"section.page{break-before:page}tr,figure{break-inside:avoid}}";

const char *report_style_source(void)
{
	static char *source;

	if (!source) {
		GChecksum *c = g_checksum_new(G_CHECKSUM_SHA256);
		guint8 digest[32];
		gsize len = sizeof digest;
		char *b64;

		g_checksum_update(c, (const guchar *)report_css, (gssize)strlen(report_css));
		g_checksum_get_digest(c, digest, &len);
		b64 = g_base64_encode(digest, len);
		source = g_strdup_printf("'sha256-%s'", b64);
		g_free(b64);
		g_checksum_free(c);
	}
	return source;
}

/* ---- gathering ---- */

/* The fail-safe causes as the report names them (core/part.h's
 * classification, the one /metrics counts by), and the order it lists
 * them in. */
static const char *const failsafe_name[VIGIL_FAILSAFE_CAUSES] = {
	[VIGIL_FAILSAFE_DEADLINE] = "deadline",
	[VIGIL_FAILSAFE_QUEUE_FULL] = "queue full",
	[VIGIL_FAILSAFE_NO_FRAME] = "no frame",
	[VIGIL_FAILSAFE_MODEL_ERROR] = "model error",
	[VIGIL_FAILSAFE_OVERRUN] = "result not sent",
	[VIGIL_FAILSAFE_NOT_INSPECTED] = "not inspected (triggered while vigild was down)",
	[VIGIL_FAILSAFE_SENSOR_FLAT] = "vibration sensor flat (dead: cable, supply, ADC)",
	[VIGIL_FAILSAFE_IMAGE_FLAT] = "image flat (lens cap, light off, blank sensor)",
	[VIGIL_FAILSAFE_NO_VIBRATION] = "no vibration window (late, with a gap, or clipped)",
	[VIGIL_FAILSAFE_FAULT] = "other fault",
};
static const enum vigil_failsafe_cause failsafe_order[VIGIL_FAILSAFE_CAUSES] = {
	VIGIL_FAILSAFE_DEADLINE, VIGIL_FAILSAFE_QUEUE_FULL, VIGIL_FAILSAFE_NO_FRAME,
	VIGIL_FAILSAFE_MODEL_ERROR, VIGIL_FAILSAFE_OVERRUN, VIGIL_FAILSAFE_NOT_INSPECTED,
	VIGIL_FAILSAFE_SENSOR_FLAT, VIGIL_FAILSAFE_IMAGE_FLAT, VIGIL_FAILSAFE_NO_VIBRATION,
	VIGIL_FAILSAFE_FAULT,
};

struct top_defect {
	int64_t id, part_id, t_wall_us;
	double score, rank;      /* rank: the score, a missing one lowest */
	int defect_class;
	uint32_t flags;
	char *model_version, *review, *note;
};

struct model_seen {
	char *version;
	uint64_t parts;
	int64_t first_us, last_us;
};

struct gather {
	report_pareto *pareto;
	uint64_t parts, accepted, rejected, marginal, reviewed, overruled;
	uint64_t failsafe[VIGIL_FAILSAFE_CAUSES];
	GArray *top;             /* struct top_defect, best first, at most ntop */
	int ntop;
	GPtrArray *models;       /* struct model_seen, first seen first */
};

static void top_defect_clear(struct top_defect *d)
{
	g_free(d->model_version);
	g_free(d->review);
	g_free(d->note);
}

static void keep_top(struct gather *g, const struct db_inspection *r)
{
	struct top_defect d;
	guint at = g->top->len;
	double rank = isnan(r->score) ? -INFINITY : r->score;

	/* Insertion into a short sorted array: ntop is a dozen. */
	while (at > 0 && g_array_index(g->top, struct top_defect, at - 1).rank < rank)
		at--;
	if ((int)at >= g->ntop)
		return;
	d = (struct top_defect){
		.id = r->id, .part_id = r->part_id, .t_wall_us = r->t_wall_us, .score = r->score,
		.rank = rank,
		.defect_class = r->defect_class, .flags = r->flags,
		.model_version = g_strdup(r->model_version), .review = g_strdup(r->review),
		.note = g_strdup(r->review_note),
	};
	g_array_insert_val(g->top, at, d);
	if ((int)g->top->len > g->ntop) {
		top_defect_clear(&g_array_index(g->top, struct top_defect, g->top->len - 1));
		g_array_set_size(g->top, g->top->len - 1);
	}
}

static int gather_row(const struct db_inspection *r, void *data)
{
	struct gather *g = data;
	const char *version = r->model_version ? r->model_version : "";
	struct model_seen *m = NULL;

	report_pareto_add(r, g->pareto);
	g->parts++;
	if (r->verdict == VIGIL_VERDICT_ACCEPT)
		g->accepted++;
	else if (r->verdict == VIGIL_VERDICT_REJECT)
		g->rejected++;
	else if (r->verdict == VIGIL_VERDICT_MARGINAL)
		g->marginal++;
	if (r->review) {
		g->reviewed++;
		if (strcmp(r->review, "overrule") == 0)
			g->overruled++;
	}
	if (r->flags & (VIGIL_FLAG_FAILSAFE | VIGIL_FLAG_NOT_SENT))
		g->failsafe[vigil_failsafe_cause_of(r->flags)]++;
	if (r->verdict == VIGIL_VERDICT_REJECT)
		keep_top(g, r);
	for (guint i = 0; i < g->models->len && !m; i++) {
		struct model_seen *x = g_ptr_array_index(g->models, i);

		if (strcmp(x->version, version) == 0)
			m = x;
	}
	if (!m) {
		m = g_new0(struct model_seen, 1);
		m->version = g_strdup(version);
		m->first_us = r->t_wall_us;
		g_ptr_array_add(g->models, m);
	}
	m->parts++;
	m->last_us = r->t_wall_us;
	return 0;
}

static void model_seen_free(gpointer p)
{
	struct model_seen *m = p;

	g_free(m->version);
	g_free(m);
}

struct event_copy {
	int64_t t_wall_us;
	char *kind, *message;
};

struct events {
	int64_t start_us;
	GArray *in_shift;        /* struct event_copy */
	uint64_t more;           /* beyond EVENTS_MAX */
	/* The last job and model change before the shift: what was in force
	 * when it began. */
	struct event_copy job_before;
};

/* Events that say which model and job are in force: "model-loaded" (at
 * start and each switch), and "model-swap" / "job" of older logs. */
static gboolean model_or_job(const char *kind)
{
	return strcmp(kind, "job") == 0 || strcmp(kind, "model-swap") == 0 ||
	       strcmp(kind, "model-loaded") == 0;
}

static void event_copy_clear(struct event_copy *e)
{
	g_free(e->kind);
	g_free(e->message);
}

static int gather_event(const struct db_event_row *e, void *data)
{
	struct events *ev = data;
	struct event_copy c = { e->t_wall_us, g_strdup(e->kind ? e->kind : ""),
				g_strdup(e->message ? e->message : "") };

	if (e->t_wall_us < ev->start_us) {
		if (model_or_job(c.kind)) {
			event_copy_clear(&ev->job_before);
			ev->job_before = c;
		} else {
			event_copy_clear(&c);
		}
	} else if (ev->in_shift->len < EVENTS_MAX) {
		g_array_append_val(ev->in_shift, c);
	} else {
		ev->more++;
		event_copy_clear(&c);
	}
	return 0;
}

/* The operator's events, marked in the report; the rest are listed plain. */
static gboolean is_alarm(const char *kind)
{
	static const char *const kinds[] = { "failsafe", "camera-down", "db-fault", "model-swap",
					     "model-loaded", "job", "model-refused", NULL };

	return g_str_has_prefix(kind, "alarm-") || g_str_has_prefix(kind, "plc-") ||
	       g_strv_contains(kinds, kind);
}

/* ---- writing ---- */

static void put_text(GString *out, const char *s)
{
	char *e = g_markup_escape_text(s ? s : "", -1);

	g_string_append(out, e);
	g_free(e);
}

static void put_time(GString *out, int64_t us, const char *fmt)
{
	GDateTime *s = g_date_time_new_from_unix_local(us / G_USEC_PER_SEC);
	GDateTime *t = g_date_time_add(s, us % G_USEC_PER_SEC);
	char *text = g_date_time_format(t, fmt);

	put_text(out, text);
	g_free(text);
	g_date_time_unref(t);
	g_date_time_unref(s);
}

/* A time within the shift: the clock time, with the date where it is not
 * the day the shift began (a night shift runs past midnight). */
static void put_shift_time(GString *out, int64_t us, int64_t start_us)
{
	GDateTime *a = g_date_time_new_from_unix_local(us / G_USEC_PER_SEC);
	GDateTime *b = g_date_time_new_from_unix_local(start_us / G_USEC_PER_SEC);
	gboolean same = g_date_time_get_day_of_year(a) == g_date_time_get_day_of_year(b) &&
			g_date_time_get_year(a) == g_date_time_get_year(b);

	g_date_time_unref(a);
	g_date_time_unref(b);
	put_time(out, us, same ? "%H:%M:%S" : "%Y-%m-%d %H:%M:%S");
}

static void put_pct(GString *out, uint64_t n, uint64_t of)
{
	if (of)
		g_string_append_printf(out, "%.1f %%", 100.0 * (double)n / (double)of);
	else
		g_string_append(out, "–");
}

static void count_row(GString *out, const char *what, uint64_t n, uint64_t of)
{
	g_string_append(out, "<tr><th>");
	put_text(out, what);
	g_string_append_printf(out, "</th><td class=\"n\">%" G_GUINT64_FORMAT "</td><td class=\"n\">",
			       n);
	put_pct(out, n, of);
	g_string_append(out, "</td></tr>\n");
}

static void write_counts(GString *out, const struct gather *g)
{
	const struct report_bucket *b = report_pareto_bucket(g->pareto, 0);
	uint64_t fs = 0;

	g_string_append(out, "<section id=\"counts\"><h2>Counts</h2>\n<table>\n"
			"<tr><th></th><th class=\"n\">parts</th><th class=\"n\">share</th></tr>\n");
	count_row(out, "parts", g->parts, g->parts);
	count_row(out, "accepted (yield at the line)", g->accepted, g->parts);
	count_row(out, "rejected", g->rejected, g->parts);
	count_row(out, "marginal", g->marginal, g->parts);
	/* The pareto counts QA's verdict where there is one. */
	count_row(out, "good after QA review", b ? b->parts - b->rejected - b->marginal : 0,
		  g->parts);
	count_row(out, "reviewed", g->reviewed, g->parts);
	count_row(out, "overruled", g->overruled, g->reviewed);
	for (int i = 0; i < VIGIL_FAILSAFE_CAUSES; i++)
		fs += g->failsafe[i];
	count_row(out, "fail-safe rejects", fs, g->parts);
	for (int i = 0; i < VIGIL_FAILSAFE_CAUSES; i++) {
		enum vigil_failsafe_cause c = failsafe_order[i];
		char *what;

		if (!g->failsafe[c])
			continue;
		what = g_strdup_printf("fail-safe: %s", failsafe_name[c]);
		count_row(out, what, g->failsafe[c], fs);
		g_free(what);
	}
	g_string_append(out, "</table></section>\n");
}

static void write_pareto(GString *out, const struct gather *g)
{
	int order[4];
	uint64_t counts[4], run = 0;
	uint64_t total = report_pareto_causes(g->pareto, order, counts);

	g_string_append(out, "<section id=\"pareto\"><h2>Reject causes (Pareto)</h2>\n");
	if (!total) {
		g_string_append(out, "<p>No rejected or marginal parts.</p></section>\n");
		return;
	}
	g_string_append(out, "<table>\n<tr><th>class</th><th class=\"n\">rejects</th>"
			"<th class=\"n\">share</th><th class=\"n\">cumulative</th></tr>\n");
	for (int i = 0; i < 4; i++) {
		if (!counts[i])
			continue;
		run += counts[i];
		g_string_append(out, "<tr><td>");
		put_text(out, vigil_class_name((enum vigil_defect_class)order[i]));
		g_string_append_printf(out, "</td><td class=\"n\">%" G_GUINT64_FORMAT
				       "</td><td class=\"n\">", counts[i]);
		put_pct(out, counts[i], total);
		g_string_append(out, "</td><td class=\"n\">");
		put_pct(out, run, total);
		g_string_append(out, "</td></tr>\n");
	}
	g_string_append(out, "</table></section>\n");
}

struct image_ctx {
	const struct report_request *rq;
	const char *media_dir;   /* NULL: none readable */
	const struct top_defect *d;
	GString *out;
	int shown;
};

static int put_image(const struct db_media *m, void *data)
{
	struct image_ctx *c = data;

	if (strcmp(m->kind, "image") != 0)
		return 1;  /* images come first: the rest are no thumbnails */
	if (c->rq->images == REPORT_IMAGES_LINK) {
		g_string_append_printf(c->out, "<img src=\"/api/parts/%" G_GINT64_FORMAT
				       "/media/%" G_GINT64_FORMAT "\" alt=\"", c->d->part_id, m->id);
	} else {
		char *path, *bytes = NULL, *b64;
		gsize len = 0;

		if (!c->media_dir)
			return 1;
		path = g_build_filename(c->media_dir, m->path, NULL);
		if (!g_file_get_contents(path, &bytes, &len, NULL)) {
			g_free(path);
			return 0;  /* retention took it: the caption still names the part */
		}
		g_free(path);
		b64 = g_base64_encode((const guchar *)bytes, len);
		g_string_append_printf(c->out, "<img src=\"data:image/png;base64,%s\" alt=\"", b64);
		g_free(b64);
		g_free(bytes);
	}
	g_string_append_printf(c->out, "part %" G_GINT64_FORMAT " ", c->d->part_id);
	put_text(c->out, m->camera);
	g_string_append(c->out, "\">");
	c->shown++;
	return 0;
}

static void write_top(GString *out, const struct report_request *rq, const struct gather *g,
		      int64_t start_us)
{
	char *dir = NULL, *err = NULL;

	g_string_append(out, "<section id=\"top-defects\" class=\"page\"><h2>Top defects</h2>\n");
	if (!g->top->len) {
		g_string_append(out, "<p>No rejected parts.</p></section>\n");
		return;
	}
	g_string_append_printf(out, "<p class=\"meta\">The %u highest-scoring rejects of the "
			       "shift.</p>\n<div class=\"defects\">\n", g->top->len);
	if (rq->images == REPORT_IMAGES_EMBED)
		dir = db_media_dir(rq->db_path, &err);
	free(err);
	for (guint i = 0; i < g->top->len; i++) {
		const struct top_defect *d = &g_array_index(g->top, struct top_defect, i);
		struct image_ctx ic = { rq, dir, d, out, 0 };
		char *merr = NULL;

		g_string_append_printf(out, "<figure id=\"part-%" G_GINT64_FORMAT "\">", d->part_id);
		db_read_media(rq->db_path, d->id, put_image, &ic, &merr);
		free(merr);
		if (!ic.shown)
			g_string_append(out, "<p class=\"meta\">(no image kept)</p>");
		g_string_append_printf(out, "<figcaption><b>part %" G_GINT64_FORMAT "</b> ",
				       d->part_id);
		put_shift_time(out, d->t_wall_us, start_us);
		g_string_append(out, " · ");
		put_text(out, vigil_class_name((enum vigil_defect_class)d->defect_class));
		if (!isnan(d->score))
			g_string_append_printf(out, " · score %.3f", d->score);
		if (d->flags & (VIGIL_FLAG_FAILSAFE | VIGIL_FLAG_NOT_SENT)) {
			g_string_append(out, " · fail-safe: ");
			put_text(out, failsafe_name[vigil_failsafe_cause_of(d->flags)]);
		}
		if (d->model_version) {
			g_string_append(out, " · model ");
			put_text(out, d->model_version);
		}
		if (d->review) {
			g_string_append(out, "<br>QA: ");
			put_text(out, d->review);
			if (d->note && *d->note) {
				g_string_append(out, " – ");
				put_text(out, d->note);
			}
		}
		g_string_append(out, "</figcaption></figure>\n");
	}
	g_string_append(out, "</div></section>\n");
	free(dir);
}

static void write_events(GString *out, const struct events *ev)
{
	g_string_append(out, "<section id=\"events\" class=\"page\"><h2>Alarms and events</h2>\n");
	if (!ev->in_shift->len) {
		g_string_append(out, "<p>No events.</p></section>\n");
		return;
	}
	g_string_append(out, "<table>\n<tr><th>time</th><th>kind</th><th>message</th></tr>\n");
	for (guint i = 0; i < ev->in_shift->len; i++) {
		const struct event_copy *e = &g_array_index(ev->in_shift, struct event_copy, i);

		g_string_append(out, is_alarm(e->kind) ? "<tr class=\"alarm\"><td>" : "<tr><td>");
		put_shift_time(out, e->t_wall_us, ev->start_us);
		g_string_append(out, "</td><td>");
		put_text(out, e->kind);
		g_string_append(out, "</td><td>");
		put_text(out, e->message);
		g_string_append(out, "</td></tr>\n");
	}
	g_string_append(out, "</table>\n");
	if (ev->more)
		g_string_append_printf(out, "<p class=\"meta\">%" G_GUINT64_FORMAT " more events not "
				       "shown.</p>\n", ev->more);
	g_string_append(out, "</section>\n");
}

static void write_models(GString *out, const struct gather *g, const struct events *ev)
{
	gboolean any = FALSE;

	g_string_append(out, "<section id=\"models\"><h2>Model and job in force</h2>\n");
	if (ev->job_before.kind) {
		g_string_append(out, "<p>At the start of the shift (");
		put_text(out, ev->job_before.kind);
		g_string_append(out, ", ");
		put_time(out, ev->job_before.t_wall_us, "%Y-%m-%d %H:%M");
		g_string_append(out, "): ");
		put_text(out, ev->job_before.message);
		g_string_append(out, "</p>\n");
	}
	for (guint i = 0; i < ev->in_shift->len; i++) {
		const struct event_copy *e = &g_array_index(ev->in_shift, struct event_copy, i);

		if (!model_or_job(e->kind))
			continue;
		if (!any)
			g_string_append(out, "<p>Changes during the shift:</p>\n<ul>\n");
		any = TRUE;
		g_string_append(out, "<li>");
		put_shift_time(out, e->t_wall_us, ev->start_us);
		g_string_append(out, " ");
		put_text(out, e->message);
		g_string_append(out, "</li>\n");
	}
	if (any)
		g_string_append(out, "</ul>\n");
	if (!g->models->len) {
		g_string_append(out, "<p>No parts inspected.</p></section>\n");
		return;
	}
	g_string_append(out, "<table>\n<tr><th>model version</th><th class=\"n\">parts</th>"
			"<th>first</th><th>last</th></tr>\n");
	for (guint i = 0; i < g->models->len; i++) {
		const struct model_seen *m = g_ptr_array_index(g->models, i);

		g_string_append(out, "<tr><td>");
		put_text(out, *m->version ? m->version : "(none)");
		g_string_append_printf(out, "</td><td class=\"n\">%" G_GUINT64_FORMAT "</td><td>",
				       m->parts);
		put_shift_time(out, m->first_us, ev->start_us);
		g_string_append(out, "</td><td>");
		put_shift_time(out, m->last_us, ev->start_us);
		g_string_append(out, "</td></tr>\n");
	}
	g_string_append(out, "</table></section>\n");
}

int report_shift_html(const struct report_request *rq, GString *out, char **err)
{
	struct gather g = { 0 };
	struct events ev = { 0 };
	shift_plan *plan = NULL;
	shift_span span;
	struct db_filter f = DB_FILTER_ALL;
	char *spec, *dberr = NULL, *base;
	int64_t now = rq->now_us ? rq->now_us : g_get_real_time();
	int rc;

	if (!(spec = db_shifts(rq->db_path, &dberr))) {
		rc = DB_ESQLITE;
		goto db_fail;
	}
	plan = shift_plan_parse(spec, NULL, &dberr);
	free(spec);
	if (!plan) {
		/* The log's fault, not the shift's: not -EINVAL. */
		if (err)
			*err = g_strdup_printf("%s: the shift plan it records is not valid: %s",
					       rq->db_path, dberr);
		g_free(dberr);
		dberr = NULL;
		rc = -EIO;
		goto out;
	}
	if (shift_plan_find(plan, rq->shift ? rq->shift : "", now, &span, err) < 0) {
		rc = -EINVAL;
		goto out;
	}
	g.pareto = report_pareto_new(plan);
	g.ntop = rq->top_defects > 0 ? rq->top_defects : TOP_DEFECTS_DEFAULT;
	g.top = g_array_new(FALSE, FALSE, sizeof(struct top_defect));
	g.models = g_ptr_array_new_with_free_func(model_seen_free);
	if (rq->label_out)
		g_strlcpy(rq->label_out, span.label, REPORT_LABEL_MAX);
	ev.start_us = span.start_us;
	ev.in_shift = g_array_new(FALSE, FALSE, sizeof(struct event_copy));
	f.since_us = span.start_us;
	f.until_us = span.end_us;
	/* By the plan, every row of the shift falls in one bucket: the pareto
	 * of the whole shift, as vigilctl pareto over its start and end. */
	if ((rc = db_query(rq->db_path, &f, &(struct db_row_cb){ gather_row, &g }, &dberr)) < 0 ||
	    (rc = db_read_events(rq->db_path, 0, span.end_us, gather_event, &ev, &dberr)) < 0)
		goto db_fail;

	g_string_append(out, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
			"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
			"<title>Shift report ");
	put_text(out, span.label);
	g_string_append_printf(out, "</title>\n<style>%s</style>\n</head>\n<body>\n", report_css);
	g_string_append(out, "<header><h1>Shift report: ");
	put_text(out, span.label);
	g_string_append(out, "</h1>\n<p class=\"meta\">Station <b>");
	put_text(out, g_get_host_name());
	g_string_append(out, "</b> · from ");
	put_time(out, span.start_us, "%Y-%m-%d %H:%M %:z");
	g_string_append(out, " to ");
	put_time(out, span.end_us, "%Y-%m-%d %H:%M %:z");
	if (span.end_us > now)
		g_string_append(out, " (in progress)");
	g_string_append(out, " · generated <time id=\"generated\">");
	put_time(out, now, "%Y-%m-%d %H:%M:%S %:z");
	/* The file's name, not its path: vigild and vigilctl may reach one log
	 * by different paths, and write the same report. */
	base = g_path_get_basename(rq->db_path);
	g_string_append(out, "</time></p>\n<p class=\"meta\">Log ");
	put_text(out, base);
	g_free(base);
	g_string_append(out, "</p></header>\n<main>\n");
	write_counts(out, &g);
	write_pareto(out, &g);
	write_top(out, rq, &g, span.start_us);
	write_events(out, &ev);
	write_models(out, &g, &ev);
	g_string_append(out, "</main>\n</body>\n</html>\n");
	rc = 0;
	goto out;

db_fail:
	if (err)
		*err = g_strdup(dberr ? dberr : "cannot read the log");
out:
	free(dberr);
	if (g.top) {
		for (guint i = 0; i < g.top->len; i++)
			top_defect_clear(&g_array_index(g.top, struct top_defect, i));
		g_array_free(g.top, TRUE);
	}
	if (g.models)
		g_ptr_array_free(g.models, TRUE);
	if (ev.in_shift) {
		for (guint i = 0; i < ev.in_shift->len; i++)
			event_copy_clear(&g_array_index(ev.in_shift, struct event_copy, i));
		g_array_free(ev.in_shift, TRUE);
	}
	event_copy_clear(&ev.job_before);
	report_pareto_free(g.pareto);
	shift_plan_free(plan);
	return rc;
}
