/* vigilctl: the QA engineer's command line over vigild's SQLite log.
 *
 *   vigilctl --db FILE list    [filters] [--format table|csv|json]
 *   vigilctl --db FILE pareto  [filters] [--by hour|shift] [--format table|csv|json]
 *   vigilctl --db FILE review  --part ID [--inspection ID]
 *                              (--confirm | --overrule VERDICT)
 *                              [--note TEXT] [--reviewer NAME]
 *   vigilctl --db FILE upgrade  creates the file or brings its schema up to
 *                               this version (what vigild does at start)
 *   vigilctl --db FILE export  [filters] [--split NAME] [--out CSV]
 *                              [--accepted-as-good]
 *                               reviewed parts as a training manifest; with
 *                               --accepted-as-good also the accepted parts
 *                               nobody reviewed, as good ones
 *   vigilctl --db FILE report  --shift "YYYY-MM-DD NAME"|current|previous
 *                              [--out HTML]  the shift report
 *   vigilctl user add NAME --role ROLE --users FILE | list | remove NAME
 *                               the review server's users (vigilctl-user.c)
 *   vigilctl --central CONNINFO list|show|review|export|stations|upgrade
 *                               the same over the plant's PostgreSQL, with
 *                               --site/--line/--station (vigilctl-central.c)
 *   vigilctl --db FILE escapes [--mark --part ID [--inspection ID] --note TEXT
 *                              [--reviewer NAME]]
 *                              [--neighbours N] [--format table|csv|json]
 *                               parts found defective after the line passed them
 *
 * Filters: --since/--until (ISO 8601: a date alone is local midnight; a time
 * to the minute or second, local unless it ends in Z or an offset), --shift
 * LABEL ("2026-12-06 night", current, previous, or "night" for every day's), --job N, --model VERSION,
 * --station NAME, --verdict, --class, --min-score, --max-score, --part,
 * --reviewed yes|no, --limit N.
 * Every value is read before a command writes anything, the filters by the
 * rules the review API reads its query by (db_filter_set): a bad one, or an
 * option the command does not read, exits 2 naming it, stdout empty.
 * Reads run on their own connection while vigild writes (WAL). */
#include <errno.h>
#include <glib.h>
#include <json-glib/json-glib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/part.h"
#include "core/shift.h"
#include "db/db.h"
#include "tools/tool-common.h"
#include "tools/vigilctl-private.h"

/* --shift names an occurrence of the log's shift plan, or one of its shifts
 * on every day: checked here, so that a label the plan lacks is a usage
 * error (exit 2) naming the option. */
static int check_shift(const char *db_path, const char *label)
{
	char *err = NULL, *spec;
	shift_plan *plan;
	shift_span span;
	int rc = -EINVAL;

	if (!(spec = db_shifts(db_path, &err))) {
		fprintf(stderr, "vigilctl: %s\n", err);
		free(err);
		return -EIO;
	}
	if (!(plan = shift_plan_parse(spec, NULL, &err))) {
		fprintf(stderr, "vigilctl: %s: the shift plan it records is not valid: %s\n",
			db_path, err);
		g_free(err);
		free(spec);
		return -EIO;
	}
	for (size_t i = 0; i < shift_plan_count(plan); i++)
		if (strcmp(label, shift_plan_name(plan, i)) == 0)
			rc = 0;   /* a shift's name alone: every day's */
	if (rc == 0) {
		/* found by name */
	} else if (shift_plan_find(plan, label, g_get_real_time(), &span, &err) < 0) {
		/* err lists the plan's shifts. */
		fprintf(stderr, "vigilctl: --shift '%s': %s; or a shift's name alone (every "
			"day's)\n", label, err);
		g_free(err);
	} else {
		rc = 0;
	}
	shift_plan_free(plan);
	free(spec);
	return rc;
}

/* A refusal of a bad value: the option, the value and what it must be. */
static int bad_value(const char *option, const char *value, const char *rule)
{
	fprintf(stderr, "vigilctl: --%s is %s, not '%s'\n", option, rule, value);
	return -EINVAL;
}

int vigilctl__build_filter(const struct opts *o, struct db_filter *f)
{
	/* The review API reads its query by the same rules (db_filter_set). */
	const struct {
		const char *option, *value;
		enum db_filter_field field;
	} given[] = {
		{ "since", o->since, DB_FILTER_SINCE }, { "until", o->until, DB_FILTER_UNTIL },
		{ "job", o->job, DB_FILTER_JOB }, { "model", o->model, DB_FILTER_MODEL },
		{ "station", o->station, DB_FILTER_STATION },
		{ "verdict", o->verdict, DB_FILTER_VERDICT }, { "class", o->cls, DB_FILTER_CLASS },
		{ "min-score", o->min_score, DB_FILTER_MIN_SCORE },
		{ "max-score", o->max_score, DB_FILTER_MAX_SCORE },
		{ "reviewed", o->reviewed, DB_FILTER_REVIEWED },
		{ "limit", o->limit, DB_FILTER_LIMIT },
	};

	*f = (struct db_filter)DB_FILTER_ALL;
	for (size_t i = 0; i < G_N_ELEMENTS(given); i++)
		if (given[i].value && db_filter_set(f, given[i].field, given[i].value) < 0)
			return bad_value(given[i].option, given[i].value,
					 db_filter_rule(given[i].field));
	switch (db_filter_empty_range(f)) {
	case DB_FILTER_SINCE:
		fprintf(stderr, "vigilctl: --since '%s' is not before --until '%s': no part is in "
			"that time range\n", o->since, o->until);
		return -EINVAL;
	case DB_FILTER_MIN_SCORE:
		fprintf(stderr, "vigilctl: --min-score '%s' is above --max-score '%s': no part is "
			"in that score range\n", o->min_score, o->max_score);
		return -EINVAL;
	default:
		break;
	}
	f->part_id = o->part;
	if (o->shift) {
		int rc = check_shift(o->db, o->shift);

		if (rc < 0)
			return rc;   /* -EIO: the log could not be read */
		f->shift = o->shift;
	}
	return 0;
}

/* Local time of a wall-clock timestamp in microseconds. */
GDateTime *vigilctl__local_time(int64_t us)
{
	GDateTime *s = g_date_time_new_from_unix_local(us / G_USEC_PER_SEC);
	GDateTime *t = g_date_time_add(s, us % G_USEC_PER_SEC);

	g_date_time_unref(s);
	return t;
}

char *vigilctl__wall_text(int64_t us)
{
	GDateTime *t = vigilctl__local_time(us);
	char *s = g_date_time_format(t, "%Y-%m-%dT%H:%M:%S.%f%:z");

	g_date_time_unref(t);
	return s;
}

/* CSV field quoting (RFC 4180): QA data may hold commas and quotes in notes. */
void vigilctl__csv_field(FILE *out, const char *s)
{
	if (!s)
		return;
	if (!strpbrk(s, ",\"\n\r")) {
		fputs(s, out);
		return;
	}
	fputc('"', out);
	for (; *s; s++) {
		if (*s == '"')
			fputc('"', out);
		fputc(*s, out);
	}
	fputc('"', out);
}

void vigilctl__add_string(JsonBuilder *b, const char *name, const char *s)
{
	json_builder_set_member_name(b, name);
	if (s)
		json_builder_add_string_value(b, s);
	else
		json_builder_add_null_value(b);
}

/* JSON has no NaN or infinity: those are null. */
void vigilctl__add_number(JsonBuilder *b, const char *name, double x)
{
	json_builder_set_member_name(b, name);
	if (isfinite(x))
		json_builder_add_double_value(b, x);
	else
		json_builder_add_null_value(b);
}

void vigilctl__print_json(JsonBuilder *b)
{
	JsonGenerator *gen = json_generator_new();
	JsonNode *root = json_builder_get_root(b);
	char *text;

	json_generator_set_root(gen, root);
	json_generator_set_pretty(gen, TRUE);
	text = json_generator_to_data(gen, NULL);
	printf("%s\n", text);
	g_free(text);
	json_node_unref(root);
	g_object_unref(gen);
}

static void add_uint(JsonBuilder *b, const char *name, uint32_t x)
{
	json_builder_set_member_name(b, name);
	json_builder_add_int_value(b, x);
}

/* list and pareto print any of the three; the other commands have one
 * output of their own and refuse --format rather than ignore it. */
int vigilctl__parse_format(const char *cmd, const char *text, enum format *fmt)
{
	if (!text || strcmp(text, "table") == 0)
		*fmt = FMT_TABLE;
	else if (strcmp(text, "csv") == 0)
		*fmt = FMT_CSV;
	else if (strcmp(text, "json") == 0)
		*fmt = FMT_JSON;
	else {
		fprintf(stderr, "vigilctl %s: --format is table, csv or json, not '%s'\n", cmd, text);
		return -EINVAL;
	}
	return 0;
}

struct list_ctx {
	enum format fmt;
	FILE *out;
	uint64_t n;
	JsonBuilder *json;         /* FMT_JSON: one row's object at a time */
	JsonGenerator *gen;
};

/* The table's or the CSV's header line, or the JSON array's opening: written
 * with the first row, or after a query that found none, so that a log that
 * cannot be read leaves nothing on stdout that looks like a result. */
static void list_begin(struct list_ctx *c)
{
	if (c->fmt == FMT_TABLE)
		fprintf(c->out, "%-8s %-32s %-9s %-18s %6s %6s %6s %7s %s\n", "part", "time",
			"verdict", "class", "score", "vision", "signal", "lat_ms", "review");
	else if (c->fmt == FMT_CSV)
		fputs("part_id,time,verdict,class,flags,score,vision_score,signal_score,"
		      "latency_ms,model_version,review,review_verdict,review_note,job,station\n",
		      c->out);
	else
		fputs("[", c->out);
}

/* Writes one row of the JSON array, its values as strings, numbers or null
 * (the review server's /api/inspections gives the same for the same
 * columns). The array is written a row at a time, one row a line, so that
 * a list of the whole log does not sit in memory first. */
static void list_row_json(struct list_ctx *c, const struct db_inspection *r, const char *when,
			  const char *verdict, const char *cls, const char *review_verdict)
{
	JsonNode *root;
	char *text;

	json_builder_begin_object(c->json);
	add_uint(c->json, "part_id", r->part_id);
	vigilctl__add_string(c->json, "time", when);
	vigilctl__add_string(c->json, "verdict", verdict);
	vigilctl__add_string(c->json, "class", cls);
	add_uint(c->json, "flags", r->flags);
	vigilctl__add_number(c->json, "score", r->score);
	vigilctl__add_number(c->json, "vision_score", r->vision_score);
	vigilctl__add_number(c->json, "signal_score", r->signal_score);
	vigilctl__add_number(c->json, "latency_ms", r->latency_ms);
	vigilctl__add_string(c->json, "model_version", r->model_version);
	vigilctl__add_string(c->json, "review", r->review);
	vigilctl__add_string(c->json, "review_verdict", review_verdict);
	vigilctl__add_string(c->json, "review_note", r->review_note);
	json_builder_set_member_name(c->json, "job");
	if (r->job >= 0)
		json_builder_add_int_value(c->json, r->job);
	else
		json_builder_add_null_value(c->json);
	vigilctl__add_string(c->json, "station", r->station);
	json_builder_end_object(c->json);
	root = json_builder_get_root(c->json);
	json_builder_reset(c->json);
	json_generator_set_root(c->gen, root);
	text = json_generator_to_data(c->gen, NULL);
	fprintf(c->out, "%s\n  %s", c->n ? "," : "", text);
	g_free(text);
	json_node_unref(root);
}

static int list_row(const struct db_inspection *r, void *data)
{
	struct list_ctx *c = data;
	char *when = vigilctl__wall_text(r->t_wall_us);
	const char *verdict = vigil_verdict_name((enum vigil_verdict)r->verdict);
	const char *cls = vigil_class_name((enum vigil_defect_class)r->defect_class);
	const char *rv = r->review ? vigil_verdict_name((enum vigil_verdict)r->review_verdict) : NULL;

	if (c->n == 0)
		list_begin(c);
	switch (c->fmt) {
	case FMT_TABLE:
		fprintf(c->out, "%-8u %-32s %-9s %-18s %6.3f %6.3f %6.3f %7.2f %s%s%s\n",
			r->part_id, when, verdict, cls, r->score, r->vision_score, r->signal_score,
			r->latency_ms, r->review ? r->review : "", r->review ? " -> " : "",
			rv ? rv : "");
		break;
	case FMT_CSV:
		fprintf(c->out, "%u,%s,%s,%s,%u,%.6g,%.6g,%.6g,%.3f,%s,%s,", r->part_id, when,
			verdict, cls, r->flags, r->score, r->vision_score, r->signal_score,
			r->latency_ms, r->model_version ? r->model_version : "",
			r->review ? r->review : "");
		fprintf(c->out, "%s,", rv ? rv : "");
		vigilctl__csv_field(c->out, r->review_note);
		fputc(',', c->out);
		if (r->job >= 0)
			fprintf(c->out, "%d", r->job);
		fputc(',', c->out);
		vigilctl__csv_field(c->out, r->station);
		fputc('\n', c->out);
		break;
	case FMT_JSON:
		list_row_json(c, r, when, verdict, cls, rv);
		break;
	}
	c->n++;
	g_free(when);
	return 0;
}

static int cmd_list(const struct opts *o)
{
	struct list_ctx c = { FMT_TABLE, stdout, 0, NULL, NULL };
	struct db_filter f;
	struct db_row_cb cb = { list_row, &c };
	char *err = NULL;
	int rc;

	if (vigilctl__parse_format("list", o->format, &c.fmt) < 0)
		return 2;
	if ((rc = vigilctl__build_filter(o, &f)) < 0)
		return rc == -EINVAL ? 2 : 1;
	if (c.fmt == FMT_JSON) {
		c.json = json_builder_new();
		c.gen = json_generator_new();
	}
	rc = db_query(o->db, &f, &cb, &err);
	if (rc == 0 && c.n == 0)
		list_begin(&c);
	if (c.fmt == FMT_JSON) {
		/* A read that failed part way leaves the array open: no
		 * parser takes what came for the whole answer. */
		if (rc == 0)
			fputs(c.n ? "\n]\n" : "]\n", stdout);
		g_object_unref(c.gen);
		g_object_unref(c.json);
	}
	if (rc < 0) {
		fprintf(stderr, "vigilctl: %s\n", err ? err : "query failed");
		free(err);
		return 1;
	}
	if (c.fmt == FMT_TABLE)
		printf("%" G_GUINT64_FORMAT " inspection(s)\n", c.n);
	return 0;
}

static int cmd_upgrade(const struct opts *o)
{
	char *err = NULL;
	db_log *db = db_open(o->db, 16, &err);

	if (!db) {
		fprintf(stderr, "vigilctl: %s\n", err ? err : "cannot open");
		free(err);
		return 1;
	}
	db_close(db);
	printf("%s: schema up to date\n", o->db);
	return 0;
}

struct line_verdict_ctx {
	int64_t part_id;
	int verdict;
};

static int line_verdict(const struct db_inspection *r, void *data)
{
	struct line_verdict_ctx *c = data;

	if (r->part_id == c->part_id)   /* --inspection may name another part's */
		c->verdict = r->verdict;
	return 0;
}

static int cmd_review(const struct opts *o)
{
	char *err = NULL;
	int verdict = 0, rc;

	if (o->part < 0 || (o->confirm == (o->overrule != NULL))) {
		fprintf(stderr, "vigilctl review: give --part ID and either --confirm or "
			"--overrule accept|reject|marginal\n");
		return 2;
	}
	if (o->reviewer && !*o->reviewer) {
		fprintf(stderr, "vigilctl: --reviewer is a name, not ''\n");
		return 2;
	}
	if (o->overrule) {
		for (int v = VIGIL_VERDICT_ACCEPT; v <= VIGIL_VERDICT_MARGINAL; v++)
			if (strcmp(o->overrule, vigil_verdict_name((enum vigil_verdict)v)) == 0)
				verdict = v;
		if (!verdict) {
			fprintf(stderr, "vigilctl: --overrule is %s, not '%s'\n",
				db_filter_rule(DB_FILTER_VERDICT), o->overrule);
			return 2;
		}
	} else {
		/* Confirming keeps the line's verdict: look it up (the row
		 * itself for --inspection, without its neighbours). */
		struct db_filter f = DB_FILTER_ALL;
		struct line_verdict_ctx c = { o->part, 0 };
		struct db_row_cb cb = { line_verdict, &c };

		f.part_id = o->part;
		f.limit = 1;
		if ((o->inspection >= 0 ? db_neighbours(o->db, o->inspection, 0, &cb, &err)
					: db_query(o->db, &f, &cb, &err)) < 0) {
			fprintf(stderr, "vigilctl: %s\n", err);
			free(err);
			return 1;
		}
		if (!(verdict = c.verdict)) {
			if (o->inspection >= 0)
				fprintf(stderr, "vigilctl: %s: no inspection %" G_GINT64_FORMAT
					" of part %" G_GINT64_FORMAT "\n", o->db, o->inspection,
					o->part);
			else
				fprintf(stderr, "vigilctl: %s: no inspection of part %"
					G_GINT64_FORMAT "\n", o->db, o->part);
			return 1;
		}
	}
	rc = db_review_at(o->db, o->part, o->inspection, o->confirm ? "confirm" : "overrule",
			  verdict, o->note, o->reviewer ? o->reviewer : g_get_user_name(), NULL,
			  &err);
	if (rc < 0) {
		/* -EINVAL: --overrule to the line's own verdict (a usage
		 * error: nothing was written); -ENOENT: no such part. */
		if (rc == -EINVAL)
			fprintf(stderr, "vigilctl: --overrule %s: %s\n", o->overrule,
				err ? err : "refused");
		else if (rc == -ENOENT)
			fprintf(stderr, "vigilctl: %s: %s\n", o->db, err ? err : "no such part");
		else
			fprintf(stderr, "vigilctl: %s\n", err ? err : "review failed");
		free(err);
		return rc == -EINVAL ? 2 : 1;
	}
	printf("part %" G_GINT64_FORMAT ": %s (%s)\n", o->part, o->confirm ? "confirmed" : "overruled",
	       vigil_verdict_name((enum vigil_verdict)verdict));
	return 0;
}

/* ---- export: reviewed parts as a training manifest ---- */

struct reviewed {
	int64_t id;
	uint32_t part_id;
	gboolean reviewed;    /* FALSE: accepted and never reviewed, taken as good */
	int verdict;          /* QA's; accept for a part taken as good */
	int line_class;       /* what the model named */
	char *defect_type;    /* QA's, NULL if none named */
	char *mask;           /* QA's painted mask (media-relative), NULL if none */
};

/* A reviewed part with QA's label; with --accepted-as-good, a part the
 * line accepted that nobody reviewed as a good one (learning mode, issue
 * 21: the line ran known-good parts only). Rejected and marginal parts
 * nobody reviewed say nothing sure, so they are never exported. */
static int collect_reviewed(const struct db_inspection *r, void *data)
{
	struct reviewed one = { r->id, r->part_id, TRUE, r->review_verdict, r->defect_class,
				g_strdup(r->review_defect_type), g_strdup(r->review_mask) };

	if (!r->review) {
		if (r->verdict != VIGIL_VERDICT_ACCEPT)
			return 0;
		one.reviewed = FALSE;
		one.verdict = VIGIL_VERDICT_ACCEPT;
	}
	g_array_append_val((GArray *)data, one);
	return 0;
}

static void reviewed_clear(gpointer p)
{
	struct reviewed *r = p;

	g_free(r->defect_type);
	g_free(r->mask);
}

struct part_files {
	char *image;          /* the first camera's image */
	char *vibration;
	int64_t vib_bytes;
};

static int find_files(const struct db_media *m, void *data)
{
	struct part_files *f = data;

	if (strcmp(m->kind, "image") == 0 && !f->image)
		f->image = g_strdup(m->path);
	else if (strcmp(m->kind, "vibration") == 0 && !f->vibration) {
		f->vibration = g_strdup(m->path);
		f->vib_bytes = m->bytes;
	}
	return 0;
}

/* Writes the reviewed parts in the manifest format of the line data set
 * (docs/model.md: part_id,split,image,mask,image_class,vibration,vib_start,
 * vib_len,vib_class,defect), paths relative to the log's media directory,
 * which it names on stderr: train with --data-root that directory. The
 * label is QA's verdict. The classes say which head a defect teaches: the
 * modality the line's model named, and the surface when it named none (an
 * escape QA found by looking at the image); a painted mask makes it a
 * surface defect. QA's defect type, when named, replaces the generic class
 * of that head (image_class "defect", or vib_class "fault" for a part the
 * line named vibration only and QA painted nothing on), and QA's mask goes
 * in the mask column, relative to the same root as the image, so that
 * training (vigil-features --masks-out) learns where the defect is. With
 * --accepted-as-good, the accepted parts nobody reviewed are good parts
 * (free, normal, no mask, defect 0). Parts whose image or vibration file
 * is not kept (accepted parts not sampled, retention) are left out,
 * counted. */
static int cmd_export(const struct opts *o)
{
	struct db_filter f;
	struct db_row_cb cb;
	GArray *parts = g_array_new(FALSE, FALSE, sizeof(struct reviewed));
	char *err = NULL, *media = NULL;
	FILE *out = stdout;
	int written = 0, written_good = 0, skipped = 0, rc = 1;

	g_array_set_clear_func(parts, reviewed_clear);
	if (o->format && strcmp(o->format, "csv") != 0) {
		fprintf(stderr, "vigilctl export: --format is csv, what export always writes (a "
			"training manifest), not '%s'\n", o->format);
		rc = 2;
		goto out;
	}
	if ((rc = vigilctl__build_filter(o, &f)) < 0) {
		rc = rc == -EINVAL ? 2 : 1;
		goto out;
	}
	rc = 1;
	if (o->reviewed && f.reviewed != 1 && !o->accepted_as_good) {
		fprintf(stderr, "vigilctl export: exports reviewed parts only (--reviewed yes), "
			"and with --accepted-as-good the accepted parts nobody reviewed\n");
		rc = 2;
		goto out;
	}
	if (o->split && (!*o->split || strpbrk(o->split, ",\"\n\r"))) {
		fprintf(stderr, "vigilctl export: --split '%s' is not a plain name\n", o->split);
		rc = 2;
		goto out;
	}
	/* --reviewed narrows --accepted-as-good to either kind. */
	if (!o->accepted_as_good)
		f.reviewed = 1;
	cb = (struct db_row_cb){ collect_reviewed, parts };
	if (db_query(o->db, &f, &cb, &err) < 0 || !(media = db_media_dir(o->db, &err))) {
		fprintf(stderr, "vigilctl: %s\n", err ? err : "cannot read");
		goto out;
	}
	if (o->out && !(out = fopen(o->out, "w"))) {
		fprintf(stderr, "vigilctl export: cannot write %s: %s\n", o->out, g_strerror(errno));
		out = stdout;
		goto out;
	}
	fprintf(out, "part_id,split,image,mask,image_class,vibration,vib_start,vib_len,vib_class,"
		"defect\n");
	for (guint i = 0; i < parts->len; i++) {
		const struct reviewed *p = &g_array_index(parts, struct reviewed, i);
		struct part_files files = { 0 };
		gboolean defect = p->verdict != VIGIL_VERDICT_ACCEPT;
		gboolean surface = defect && (p->line_class != VIGIL_CLASS_VIBRATION || p->mask);
		gboolean vibration = defect && (p->line_class == VIGIL_CLASS_VIBRATION ||
						p->line_class == VIGIL_CLASS_BOTH);
		/* One part in five to validation, by row id: stable across exports. */
		const char *split = o->split ? o->split : p->id % 5 == 0 ? "val" : "train";

		if (db_read_media(o->db, p->id, find_files, &files, &err) < 0) {
			fprintf(stderr, "vigilctl: %s\n", err);
			g_free(files.image);
			g_free(files.vibration);
			goto out;
		}
		if (!files.image || !files.vibration || files.vib_bytes < 44 + 4) {
			skipped++;
		} else {
			fprintf(out, "L%" G_GINT64_FORMAT "-%u,%s,", p->id, p->part_id, split);
			vigilctl__csv_field(out, files.image);
			fputc(',', out);
			/* A mask only teaches where a defect is on a defective part. */
			if (defect && p->mask)
				vigilctl__csv_field(out, p->mask);
			fprintf(out, ",%s,", !surface ? "free" : p->defect_type ? p->defect_type
										   : "defect");
			vigilctl__csv_field(out, files.vibration);
			/* float32 mono after the 44-byte header. */
			fprintf(out, ",0,%" G_GINT64_FORMAT ",%s,%d\n", (files.vib_bytes - 44) / 4,
				!vibration ? "normal" : p->defect_type && !surface ? p->defect_type
										 : "fault",
				defect ? 1 : 0);
			if (p->reviewed)
				written++;
			else
				written_good++;
		}
		g_free(files.image);
		g_free(files.vibration);
	}
	if (fflush(out) != 0) {
		fprintf(stderr, "vigilctl export: write failed: %s\n", g_strerror(errno));
		goto out;
	}
	fprintf(stderr, "vigilctl export: %d reviewed part(s)", written);
	if (o->accepted_as_good)
		fprintf(stderr, " and %d accepted part(s) nobody reviewed, as good,", written_good);
	fprintf(stderr, "%s%s, %d left out (image or vibration file not kept); paths are relative "
		"to the data root %s (train.py --data-root)\n",
		o->out ? " to " : "", o->out ? o->out : "", skipped, media);
	rc = 0;
out:
	if (out != stdout && fclose(out) != 0 && rc == 0) {
		fprintf(stderr, "vigilctl export: cannot write %s\n", o->out);
		rc = 1;
	}
	free(err);
	free(media);
	g_array_free(parts, TRUE);
	return rc;
}

/* ---- which options each command reads ---- */

enum {
	OPT_SINCE, OPT_UNTIL, OPT_VERDICT, OPT_CLASS, OPT_MIN_SCORE, OPT_MAX_SCORE, OPT_PART,
	OPT_REVIEWED, OPT_LIMIT, OPT_SHIFT, OPT_JOB, OPT_MODEL, OPT_STATION, OPT_FORMAT, OPT_BY,
	OPT_CONFIRM, OPT_OVERRULE, OPT_NOTE, OPT_REVIEWER, OPT_SPLIT, OPT_OUT,
	OPT_ACCEPTED_AS_GOOD, OPT_MARK, OPT_NEIGHBOURS, OPT_SITE, OPT_LINE, OPT_DEFECT_TYPE,
	OPT_INSPECTION, OPTS
};

static const char *const opt_names[OPTS] = {
	"since", "until", "verdict", "class", "min-score", "max-score", "part", "reviewed",
	"limit", "shift", "job", "model", "station", "format", "by", "confirm", "overrule",
	"note", "reviewer", "split", "out", "accepted-as-good", "mark", "neighbours", "site",
	"line", "defect-type", "inspection",
};

#define BIT(opt) (1u << (opt))
#define FILTERS (BIT(OPT_SINCE) | BIT(OPT_UNTIL) | BIT(OPT_VERDICT) | BIT(OPT_CLASS) | \
		 BIT(OPT_MIN_SCORE) | BIT(OPT_MAX_SCORE) | BIT(OPT_PART) | BIT(OPT_REVIEWED) | \
		 BIT(OPT_LIMIT) | BIT(OPT_SHIFT) | BIT(OPT_JOB) | BIT(OPT_MODEL) | \
		 BIT(OPT_STATION))
#define REVIEW (BIT(OPT_PART) | BIT(OPT_CONFIRM) | BIT(OPT_OVERRULE) | BIT(OPT_NOTE) | \
		BIT(OPT_REVIEWER))

/* An option a command does not read is refused, not ignored: `report
 * --verdict reject` would otherwise print the whole shift as if filtered.
 * The central commands' filters include --shift for vigilctl-central.c to
 * say why the plant has none. */
static const struct {
	const char *name;
	gboolean central;
	guint32 takes;
} commands[] = {
	{ "list", FALSE, FILTERS | BIT(OPT_FORMAT) },
	{ "pareto", FALSE, FILTERS | BIT(OPT_FORMAT) | BIT(OPT_BY) },
	{ "review", FALSE, REVIEW | BIT(OPT_INSPECTION) },
	{ "upgrade", FALSE, 0 },
	{ "export", FALSE, FILTERS | BIT(OPT_FORMAT) | BIT(OPT_SPLIT) | BIT(OPT_OUT) |
			   BIT(OPT_ACCEPTED_AS_GOOD) },
	{ "report", FALSE, BIT(OPT_SHIFT) | BIT(OPT_OUT) },
	{ "escapes", FALSE, BIT(OPT_FORMAT) | BIT(OPT_NEIGHBOURS) | BIT(OPT_MARK) | BIT(OPT_PART) |
			    BIT(OPT_NOTE) | BIT(OPT_REVIEWER) | BIT(OPT_INSPECTION) },
	{ "list", TRUE, FILTERS | BIT(OPT_FORMAT) | BIT(OPT_SITE) | BIT(OPT_LINE) },
	{ "export", TRUE, FILTERS | BIT(OPT_FORMAT) | BIT(OPT_OUT) | BIT(OPT_SITE) |
			  BIT(OPT_LINE) },
	{ "stations", TRUE, BIT(OPT_FORMAT) | BIT(OPT_SITE) | BIT(OPT_LINE) | BIT(OPT_STATION) },
	{ "show", TRUE, 0 },
	{ "review", TRUE, (REVIEW & ~BIT(OPT_PART)) | BIT(OPT_DEFECT_TYPE) },
	{ "upgrade", TRUE, 0 },
};

static guint32 given_options(const struct opts *o)
{
	const void *value[OPTS] = {
		o->since, o->until, o->verdict, o->cls, o->min_score, o->max_score, o->part_text,
		o->reviewed, o->limit, o->shift, o->job, o->model, o->station, o->format, o->by,
		o->confirm ? o : NULL, o->overrule, o->note, o->reviewer, o->split, o->out,
		o->accepted_as_good ? o : NULL, o->mark ? o : NULL, o->neighbours_text, o->site,
		o->line, o->defect_type, o->inspection_text,
	};
	guint32 given = 0;

	for (int i = 0; i < OPTS; i++)
		if (value[i])
			given |= BIT(i);
	return given;
}

/* "list, pareto and --central list": the commands that take opt. */
static char *commands_taking(int opt)
{
	GPtrArray *names = g_ptr_array_new_with_free_func(g_free);
	GString *text = g_string_new(NULL);

	for (size_t i = 0; i < G_N_ELEMENTS(commands); i++)
		if (commands[i].takes & BIT(opt))
			g_ptr_array_add(names, g_strconcat(commands[i].central ? "--central " : "",
							   commands[i].name, NULL));
	for (guint i = 0; i < names->len; i++)
		g_string_append_printf(text, "%s%s", i == 0 ? "" : i + 1 == names->len ? " and "
								      : ", ",
				       (char *)names->pdata[i]);
	g_ptr_array_free(names, TRUE);
	return g_string_free(text, FALSE);
}

/* 0 when every option given is one cmd reads; else -EINVAL, having said
 * which commands read the first that it does not. */
static int check_command_options(const struct opts *o, const char *cmd, gboolean central)
{
	guint32 given = given_options(o), takes = 0;
	gboolean known = FALSE;

	for (size_t i = 0; i < G_N_ELEMENTS(commands); i++)
		if (commands[i].central == central && strcmp(commands[i].name, cmd) == 0) {
			takes = commands[i].takes;
			known = TRUE;
		}
	if (!known)
		return 0;   /* the unknown command is refused where it is dispatched */
	for (int opt = 0; opt < OPTS; opt++) {
		char *where;

		if (!(given & BIT(opt)) || (takes & BIT(opt)))
			continue;
		where = commands_taking(opt);
		fprintf(stderr, "vigilctl %s%s: --%s is for %s, not %s\n",
			central ? "--central " : "", cmd, opt_names[opt], where, cmd);
		g_free(where);
		return -EINVAL;
	}
	return 0;
}

/* --part and --neighbours, the numbers commands other than the filters
 * read, into o; -EINVAL after naming the option and its value. */
static int read_numbers(struct opts *o)
{
	struct db_filter f = DB_FILTER_ALL;
	guint64 n;

	if (o->part_text) {
		if (db_filter_set(&f, DB_FILTER_PART, o->part_text) < 0)
			return bad_value("part", o->part_text, db_filter_rule(DB_FILTER_PART));
		o->part = f.part_id;
	}
	if (o->neighbours_text) {
		if (!g_ascii_isdigit(o->neighbours_text[0]) ||
		    !g_ascii_string_to_unsigned(o->neighbours_text, 10, 0, VIGILCTL_MAX_NEIGHBOURS,
						&n, NULL))
			return bad_value("neighbours", o->neighbours_text, "a whole number from 0 "
					 "to " G_STRINGIFY(VIGILCTL_MAX_NEIGHBOURS));
		o->neighbours = (gint64)n;
	}
	if (o->inspection_text) {
		if (!g_ascii_isdigit(o->inspection_text[0]) ||
		    !g_ascii_string_to_unsigned(o->inspection_text, 10, 1, G_MAXINT64, &n, NULL))
			return bad_value("inspection", o->inspection_text, "an inspection's id (the "
					 "id column of list --format csv or json), a whole number");
		o->inspection = (gint64)n;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct opts o = { .part = -1, .inspection = -1 };
	GOptionEntry entries[] = {
		{ "db", 0, 0, G_OPTION_ARG_FILENAME, &o.db, "vigild's SQLite log", "FILE" },
		{ "central", 0, 0, G_OPTION_ARG_STRING, &o.central,
		  "The plant's PostgreSQL instead (libpq conninfo; \"\": PG* variables)", "CONNINFO" },
		{ "site", 0, 0, G_OPTION_ARG_STRING, &o.site, "--central: at this site", "SITE" },
		{ "line", 0, 0, G_OPTION_ARG_STRING, &o.line, "--central: on this line", "LINE" },
		{ "since", 0, 0, G_OPTION_ARG_STRING, &o.since, "From this time (ISO 8601)", "TIME" },
		{ "until", 0, 0, G_OPTION_ARG_STRING, &o.until, "Before this time", "TIME" },
		{ "verdict", 0, 0, G_OPTION_ARG_STRING, &o.verdict, "accept, reject or marginal", "V" },
		{ "class", 0, 0, G_OPTION_ARG_STRING, &o.cls,
		  "none, surface, vibration, surface+vibration", "C" },
		{ "min-score", 0, 0, G_OPTION_ARG_STRING, &o.min_score,
		  "Fused score at least (0 to 1)", "X" },
		{ "max-score", 0, 0, G_OPTION_ARG_STRING, &o.max_score,
		  "Fused score at most (0 to 1)", "X" },
		{ "part", 0, 0, G_OPTION_ARG_STRING, &o.part_text, "This part id", "ID" },
		{ "inspection", 0, 0, G_OPTION_ARG_STRING, &o.inspection_text,
		  "review, escapes --mark: this inspection of --part, not its latest (a part id "
		  "the line used twice)", "ID" },
		{ "reviewed", 0, 0, G_OPTION_ARG_STRING, &o.reviewed, "yes or no", "R" },
		{ "limit", 0, 0, G_OPTION_ARG_STRING, &o.limit,
		  "The newest N only (1 to " G_STRINGIFY(DB_FILTER_MAX_LIMIT) ")", "N" },
		{ "shift", 0, 0, G_OPTION_ARG_STRING, &o.shift,
		  "In this shift: \"2026-12-06 night\", current, previous, or night (every day's); "
		  "report: the shift to report (not a name alone)",
		  "LABEL" },
		{ "job", 0, 0, G_OPTION_ARG_STRING, &o.job, "Judged under this job number", "N" },
		{ "model", 0, 0, G_OPTION_ARG_STRING, &o.model, "By this model version", "VERSION" },
		{ "station", 0, 0, G_OPTION_ARG_STRING, &o.station, "At this station", "NAME" },
		{ "mark", 0, 0, G_OPTION_ARG_NONE, &o.mark,
		  "escapes: mark --part as an escape, with --note", NULL },
		{ "neighbours", 0, 0, G_OPTION_ARG_STRING, &o.neighbours_text,
		  "escapes: the N parts before and after each (0 to "
		  G_STRINGIFY(VIGILCTL_MAX_NEIGHBOURS) ", default 0)", "N" },
		{ "format", 0, 0, G_OPTION_ARG_STRING, &o.format, "list, pareto: table, csv or json", "F" },
		{ "by", 0, 0, G_OPTION_ARG_STRING, &o.by, "pareto: hour or shift", "B" },
		{ "confirm", 0, 0, G_OPTION_ARG_NONE, &o.confirm, "review: the verdict stands", NULL },
		{ "overrule", 0, 0, G_OPTION_ARG_STRING, &o.overrule, "review: the right verdict", "V" },
		{ "note", 0, 0, G_OPTION_ARG_STRING, &o.note, "review: why", "TEXT" },
		{ "reviewer", 0, 0, G_OPTION_ARG_STRING, &o.reviewer, "review: who (default: user)", "NAME" },
		{ "defect-type", 0, 0, G_OPTION_ARG_STRING, &o.defect_type,
		  "--central review: QA's defect type", "TYPE" },
		{ "split", 0, 0, G_OPTION_ARG_STRING, &o.split,
		  "export: this split for every part (default: 1 in 5 val, the rest train)", "NAME" },
		{ "out", 0, 0, G_OPTION_ARG_FILENAME, &o.out, "export, report: write here (default: stdout)",
		  "FILE" },
		{ "accepted-as-good", 0, 0, G_OPTION_ARG_NONE, &o.accepted_as_good,
		  "export: also every accepted part nobody reviewed, as a good part (learning mode)",
		  NULL },
		{ NULL, 0, 0, 0, NULL, NULL, NULL },
	};
	GOptionContext *ctx = g_option_context_new("list|pareto|review|upgrade|export|report|escapes - "
						   "QA over vigild's log");
	int rc = 2;

	/* user works on the users file, with options of its own. */
	if (argc >= 2 && strcmp(argv[1], "user") == 0) {
		rc = vigilctl__main_user(argc, argv);
		goto out;
	}
	if (tool_options_parse(ctx, entries, "vigilctl", &argc, &argv) < 0)
		goto out;
	/* Every value is read before a command runs, so that a bad one is
	 * refused (2) with nothing on stdout. */
	if (argc >= 2 && (check_command_options(&o, argv[1], o.central != NULL) < 0 ||
			  read_numbers(&o) < 0))
		goto out;
	if (o.central) {
		rc = vigilctl__main_central(&o, argc, argv);
		goto out;
	}
	if (!o.db || argc != 2) {
		fprintf(stderr, "usage: vigilctl --db FILE list|pareto|review|upgrade|export|report|"
			"escapes [options] (see --help)\n"
			"       vigilctl --central CONNINFO list|show|review|export|stations|upgrade "
			"[options]\n"
			"       vigilctl user add|list|remove ... (see vigilctl user --help)\n");
	} else if (strcmp(argv[1], "list") == 0) {
		rc = cmd_list(&o);
	} else if (strcmp(argv[1], "pareto") == 0) {
		rc = vigilctl__cmd_pareto(&o);
	} else if (strcmp(argv[1], "review") == 0) {
		rc = cmd_review(&o);
	} else if (strcmp(argv[1], "upgrade") == 0) {
		rc = cmd_upgrade(&o);
	} else if (strcmp(argv[1], "export") == 0) {
		rc = cmd_export(&o);
	} else if (strcmp(argv[1], "report") == 0) {
		rc = vigilctl__cmd_report(&o);
	} else if (strcmp(argv[1], "escapes") == 0) {
		rc = vigilctl__cmd_escapes(&o);
	} else {
		fprintf(stderr, "vigilctl: unknown command '%s' (list, pareto, review, upgrade, "
			"export, report, escapes)\n", argv[1]);
	}
out:
	g_option_context_free(ctx);
	g_free(o.db);
	g_free(o.since);
	g_free(o.until);
	g_free(o.verdict);
	g_free(o.cls);
	g_free(o.format);
	g_free(o.by);
	g_free(o.reviewed);
	g_free(o.overrule);
	g_free(o.note);
	g_free(o.reviewer);
	g_free(o.split);
	g_free(o.out);
	g_free(o.shift);
	g_free(o.job);
	g_free(o.model);
	g_free(o.station);
	g_free(o.central);
	g_free(o.site);
	g_free(o.line);
	g_free(o.defect_type);
	g_free(o.min_score);
	g_free(o.max_score);
	g_free(o.limit);
	g_free(o.part_text);
	g_free(o.inspection_text);
	g_free(o.neighbours_text);
	return rc;
}
