/* The read side: each reader opens a connection of its own. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>
#include <glib/gstdio.h>
#include <sqlite3.h>

#include "db/db-private.h"
#include "core/part.h"
#include "core/shift.h"

/* ---- read side ---- */

/* The latest review of each inspection rides along with its row. */
static const char sql_select_inspections[] =
	"SELECT i.part_id, i.trigger_counter, i.seq, i.t_wall_us, i.verdict_code,"
	" i.defect_class, i.flags, i.score, i.vision_score, i.signal_score, i.latency_ms,"
	" i.infer_ms, i.model_version, i.image_path, i.id, r.decision, r.verdict, r.note,"
	" r.defect_type, r.mask_path, i.job, i.station"
	" FROM inspections i LEFT JOIN reviews r ON r.id ="
	" (SELECT max(id) FROM reviews WHERE inspection_id = i.id)";


/* One statement on a connection of its own: open, prepare, bind, step
 * through the rows, report, finalize, close - the steps every reader (and
 * db_review) share. Readers open read-only, so that tools can read while
 * vigild writes: in WAL mode readers and the writer do not block each
 * other. */
struct statement {
	const char *path;
	bool write;              /* a read-write connection (db_review) */
	bool current_schema;     /* refuse a log older than this build */
	const char *sql;
	const char *doing;       /* for messages: "read", "review in" */
	/* Binds the parameters; returns an SQLite code. NULL: none. */
	int (*bind)(sqlite3_stmt *st, void *data);
	/* Called per row; non-zero stops. NULL: rows are not expected. */
	int (*row)(sqlite3_stmt *st, void *data);
	void *data;
	int64_t rows, changes;   /* out */
};

static int run_statement(struct statement *s, char **err)
{
	sqlite3 *conn = NULL;
	sqlite3_stmt *st = NULL;
	int rc, ret = DB_ESQLITE;

	if (!s->path) {
		db__set_error(err, "cannot open (no path): no path given");
		return DB_ESQLITE;
	}
	rc = sqlite3_open_v2(s->path, &conn, s->write ? SQLITE_OPEN_READWRITE
						       : SQLITE_OPEN_READONLY, NULL);
	if (rc != SQLITE_OK) {
		db__set_error(err, "cannot open %s: %s", s->path, db__sqlite_message(conn, rc));
		goto out;
	}
	sqlite3_busy_timeout(conn, DB_BUSY_TIMEOUT_MS);
	if (s->current_schema) {
		int64_t version = 0;

		if (db__query_int(conn, "PRAGMA user_version", &version) == SQLITE_OK &&
		    version < db__schema_version()) {
			db__set_error(err, "cannot read %s: its schema version %" PRId64 " is older "
				  "than this build's %d; vigild upgrades it when it next opens it "
				  "(or run: vigilctl --db FILE upgrade)",
				  s->path, version, db__schema_version());
			goto out;
		}
	}
	if ((rc = sqlite3_prepare_v2(conn, s->sql, -1, &st, NULL)) != SQLITE_OK)
		goto sqlite_fail;
	if (s->bind && (rc = s->bind(st, s->data)) != SQLITE_OK)
		goto sqlite_fail;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		s->rows++;
		if (s->row && s->row(st, s->data) != 0) {
			rc = SQLITE_DONE;
			break;
		}
	}
	if (rc != SQLITE_DONE)
		goto sqlite_fail;
	s->changes = sqlite3_changes64(conn);
	ret = 0;
	goto out;

sqlite_fail:
	db__set_error(err, "cannot %s %s: %s", s->doing ? s->doing : "read", s->path,
		  sqlite3_errmsg(conn));
out:
	sqlite3_finalize(st);
	sqlite3_close(conn);
	return ret;
}

static double column_real(sqlite3_stmt *st, int i)
{
	return sqlite3_column_type(st, i) == SQLITE_NULL ? NAN : sqlite3_column_double(st, i);
}

static int verdict_code(const char *name)
{
	for (int v = VIGIL_VERDICT_ACCEPT; v <= VIGIL_VERDICT_MARGINAL; v++)
		if (name && strcmp(name, vigil_verdict_name((enum vigil_verdict)v)) == 0)
			return v;
	return 0;
}

struct query_ctx {
	const struct db_filter *f;
	const struct db_row_cb *cb;
	int64_t *count;   /* db_query_count: the count(*) goes here, cb is NULL */
	int64_t shift_start_us, shift_end_us;   /* f->shift's span */
	/* f->shift as a shift name alone: the local time of day it covers
	 * every day, "HH:MM", [from, to) (to <= from: past midnight). */
	bool shift_daily;
	char shift_from[8], shift_to[8];
	int64_t around_id, around_n;            /* db_neighbours */
};

/* Binding a number the statement does not use fails harmlessly
 * (SQLITE_RANGE); the ones it uses cannot fail. */
static int bind_filter(sqlite3_stmt *st, void *data)
{
	const struct db_filter *f = ((struct query_ctx *)data)->f;

	sqlite3_bind_int64(st, 1, f->since_us);
	sqlite3_bind_int64(st, 2, f->until_us);
	sqlite3_bind_text(st, 3, f->verdict, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, f->defect_class, -1, SQLITE_STATIC);
	sqlite3_bind_double(st, 5, f->min_score);
	sqlite3_bind_double(st, 6, f->max_score);
	sqlite3_bind_int64(st, 7, f->part_id);
	sqlite3_bind_int64(st, 8, f->limit);
	sqlite3_bind_int64(st, 9, f->job);
	sqlite3_bind_text(st, 10, f->model_version, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 11, f->station, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 12, ((struct query_ctx *)data)->shift_start_us);
	sqlite3_bind_int64(st, 13, ((struct query_ctx *)data)->shift_end_us);
	sqlite3_bind_text(st, 14, ((struct query_ctx *)data)->shift_from, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 15, ((struct query_ctx *)data)->shift_to, -1, SQLITE_STATIC);
	return SQLITE_OK;
}

static int inspection_row(sqlite3_stmt *st, void *data)
{
	const struct db_row_cb *cb = ((struct query_ctx *)data)->cb;
	struct db_inspection row = {
		.part_id = (uint32_t)sqlite3_column_int64(st, 0),
		.trigger_counter = (uint32_t)sqlite3_column_int64(st, 1),
		.seq = (uint64_t)sqlite3_column_int64(st, 2),
		.t_wall_us = sqlite3_column_int64(st, 3),
		.verdict = sqlite3_column_int(st, 4),
		.defect_class = db__class_from_name((const char *)sqlite3_column_text(st, 5)),
		.flags = (uint32_t)sqlite3_column_int64(st, 6),
		.score = column_real(st, 7),
		.vision_score = column_real(st, 8),
		.signal_score = column_real(st, 9),
		.latency_ms = column_real(st, 10),
		.infer_ms = column_real(st, 11),
		.model_version = (const char *)sqlite3_column_text(st, 12),
		.image_path = (const char *)sqlite3_column_text(st, 13),
		.id = sqlite3_column_int64(st, 14),
		.review = (const char *)sqlite3_column_text(st, 15),
		.review_verdict = verdict_code((const char *)sqlite3_column_text(st, 16)),
		.review_note = (const char *)sqlite3_column_text(st, 17),
		.review_defect_type = (const char *)sqlite3_column_text(st, 18),
		.review_mask = (const char *)sqlite3_column_text(st, 19),
		.job = sqlite3_column_type(st, 20) == SQLITE_NULL ? -1 : sqlite3_column_int(st, 20),
		.station = (const char *)sqlite3_column_text(st, 21),
	};

	return cb->fn(&row, cb->data);
}

/* The start of shift name and of the one after it ("HH:MM"), from the
 * plan's canonical text "early 06:00, late 14:00, night 22:00" (sorted by
 * start). False when the plan has no such shift. */
static bool shift_times(const shift_plan *plan, const char *name, char from[8], char to[8])
{
	char *text = shift_plan_to_string(plan);
	char **entries = g_strsplit(text, ", ", -1);
	guint n = g_strv_length(entries);
	bool found = false;

	for (guint i = 0; i < n && !found; i++) {
		const char *sp = strrchr(entries[i], ' ');
		const char *next = strrchr(entries[(i + 1) % n], ' ');

		if (!sp || !next || (size_t)(sp - entries[i]) != strlen(name) ||
		    strncmp(entries[i], name, strlen(name)) != 0)
			continue;
		g_strlcpy(from, sp + 1, 8);
		g_strlcpy(to, next + 1, 8);
		found = true;
	}
	g_strfreev(entries);
	g_free(text);
	return found;
}

/* The span of the shift occurrence label names under the plan the log
 * records; or, for a shift's name alone, its local hours on every day. */
static int resolve_shift(const char *path, const char *label, struct query_ctx *ctx,
			 char **err)
{
	char *spec, *why = NULL;
	shift_plan *plan;
	shift_span span;
	int rc;

	if (!(spec = db_shifts(path, err)))
		return DB_ESQLITE;
	plan = shift_plan_parse(spec, NULL, &why);
	free(spec);
	if (!plan) {
		/* The log's fault, not the label's: not -EINVAL, which the
		 * review API answers with this text (and the path). */
		db__set_error(err, "%s: the shift plan it records is not valid: %s", path, why);
		g_free(why);
		return -EIO;
	}
	if (strcmp(label, "current") != 0 && strcmp(label, "previous") != 0 &&
	    shift_times(plan, label, ctx->shift_from, ctx->shift_to)) {
		ctx->shift_daily = true;
		shift_plan_free(plan);
		return 0;
	}
	rc = shift_plan_find(plan, label, g_get_real_time(), &span, &why);
	shift_plan_free(plan);
	if (rc < 0) {
		db__set_error(err, "shift '%s': %s (or a shift's name for every day)", label, why);
		g_free(why);
		return -EINVAL;
	}
	ctx->shift_start_us = span.start_us;
	ctx->shift_end_us = span.end_us;
	return 0;
}

static int count_row(sqlite3_stmt *st, void *data)
{
	*((struct query_ctx *)data)->count = sqlite3_column_int64(st, 0);
	return 1;
}

/* db_query, or with count set db_query_count: the same WHERE either way,
 * so a filter added here counts as it lists. */
static int run_query(const char *path, const struct db_filter *f, const struct db_row_cb *cb,
		     int64_t *count, char **err)
{
	static const struct db_filter all = DB_FILTER_ALL;
	struct query_ctx ctx;
	struct statement s = { .path = path, .current_schema = true, .bind = bind_filter,
			       .row = count ? count_row : inspection_row, .data = &ctx };
	GString *sql;
	int rc;

	if (!count && (!cb || !cb->fn)) {
		db__set_error(err, "cannot read %s: no callback given", path ? path : "(no path)");
		return -EINVAL;
	}
	if (!f)
		f = &all;
	if (f->verdict && !verdict_code(f->verdict)) {
		db__set_error(err, "verdict '%s' is not accept, reject or marginal", f->verdict);
		return -EINVAL;
	}
	if (f->defect_class && db__class_from_name(f->defect_class) < 0) {
		db__set_error(err, "class '%s' is not none, surface, vibration or surface+vibration",
			  f->defect_class);
		return -EINVAL;
	}
	ctx = (struct query_ctx){ .f = f, .cb = cb, .count = count };
	if (f->shift && resolve_shift(path, f->shift, &ctx, err) < 0)
		return -EINVAL;
	/* Every value is a numbered parameter; the text only grows by fixed
	 * fragments, so no filter value can change the statement. */
	sql = g_string_new(count ? "SELECT count(*) FROM (" : "SELECT * FROM (");
	g_string_append(sql, sql_select_inspections);
	g_string_append(sql, " WHERE 1");
	if (f->since_us)
		g_string_append(sql, " AND i.t_wall_us >= ?1");
	if (f->until_us)
		g_string_append(sql, " AND i.t_wall_us < ?2");
	if (f->verdict)
		g_string_append(sql, " AND i.verdict = ?3");
	if (f->defect_class)
		g_string_append(sql, " AND i.defect_class = ?4");
	if (!isnan(f->min_score))
		g_string_append(sql, " AND i.score >= ?5");
	if (!isnan(f->max_score))
		g_string_append(sql, " AND i.score <= ?6");
	if (f->part_id >= 0)
		g_string_append(sql, " AND i.part_id = ?7");
	if (f->job >= 0)
		g_string_append(sql, " AND i.job = ?9");
	if (f->model_version)
		g_string_append(sql, " AND i.model_version = ?10");
	if (f->station)
		g_string_append(sql, " AND i.station = ?11");
	/* A shift's name alone: its local hours on every day, in the zone
	 * the plan is read in (the process's, as SQLite's 'localtime'). */
	if (f->shift && ctx.shift_daily)
		g_string_append(sql, " AND (CASE WHEN ?14 < ?15 THEN"
			" strftime('%H:%M', i.t_wall_us / 1000000, 'unixepoch', 'localtime') >= ?14"
			" AND strftime('%H:%M', i.t_wall_us / 1000000, 'unixepoch', 'localtime') < ?15"
			" ELSE strftime('%H:%M', i.t_wall_us / 1000000, 'unixepoch', 'localtime') >= ?14"
			" OR strftime('%H:%M', i.t_wall_us / 1000000, 'unixepoch', 'localtime') < ?15"
			" END)");
	else if (f->shift)
		g_string_append(sql, " AND i.t_wall_us >= ?12 AND i.t_wall_us < ?13");
	if (f->reviewed == 0)
		g_string_append(sql, " AND r.id IS NULL");
	else if (f->reviewed == 1)
		g_string_append(sql, " AND r.id IS NOT NULL");
	if (count) {
		g_string_append(sql, ")");
	} else {
		g_string_append(sql, " ORDER BY i.id DESC");
		if (f->limit > 0)
			g_string_append(sql, " LIMIT ?8");
		g_string_append(sql, ") ORDER BY 15");
	}
	s.sql = sql->str;
	rc = run_statement(&s, err);
	g_string_free(sql, TRUE);
	return rc;
}

int db_query(const char *path, const struct db_filter *f, const struct db_row_cb *cb,
	     char **err)
{
	return run_query(path, f, cb, NULL, err);
}

int64_t db_query_count(const char *path, const struct db_filter *f, char **err)
{
	int64_t count = 0;
	int rc = run_query(path, f, NULL, &count, err);

	return rc < 0 ? rc : count;
}

int db_read_inspections(const char *path, const struct db_row_cb *cb, char **err)
{
	return db_query(path, NULL, cb, err);
}

struct review_args {
	int64_t part_id, inspection_id;
	const char *decision, *verdict, *note, *reviewer;
	const char *defect_type, *mask_path;
};

static int bind_review(sqlite3_stmt *st, void *data)
{
	const struct review_args *a = data;
	int rc;

	if ((rc = sqlite3_bind_int64(st, 1, a->part_id)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int64(st, 2, g_get_real_time())) != SQLITE_OK ||
	    (rc = sqlite3_bind_text(st, 3, a->decision, -1, SQLITE_STATIC)) != SQLITE_OK ||
	    (rc = sqlite3_bind_text(st, 4, a->verdict, -1, SQLITE_STATIC)) != SQLITE_OK ||
	    (rc = db__bind_text_or_null(st, 5, a->note)) != SQLITE_OK ||
	    (rc = db__bind_text_or_null(st, 7, a->defect_type)) != SQLITE_OK ||
	    (rc = db__bind_text_or_null(st, 8, a->mask_path)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int64(st, 9, a->inspection_id)) != SQLITE_OK)
		return rc;
	return db__bind_text_or_null(st, 6, a->reviewer);
}

int db_review(const char *path, int64_t part_id, const char *decision, int verdict,
	      const char *note, const char *reviewer, char **err)
{
	return db_review_labeled(path, part_id, decision, verdict, note, reviewer, NULL, err);
}

/* The inspection a review names: its verdict as the line gave it, for the
 * message when a review was not written. */
struct target_ctx {
	const struct review_args *a;
	int verdict;                /* 0: no such inspection */
};

static int bind_target(sqlite3_stmt *st, void *data)
{
	const struct review_args *a = ((struct target_ctx *)data)->a;
	int rc = sqlite3_bind_int64(st, 1, a->part_id);

	return rc != SQLITE_OK ? rc : sqlite3_bind_int64(st, 2, a->inspection_id);
}

static int target_verdict(sqlite3_stmt *st, void *data)
{
	((struct target_ctx *)data)->verdict =
		verdict_code((const char *)sqlite3_column_text(st, 0));
	return 0;
}

int db_review_labeled(const char *path, int64_t part_id, const char *decision, int verdict,
		      const char *note, const char *reviewer,
		      const struct db_review_label *label, char **err)
{
	return db_review_at(path, part_id, -1, decision, verdict, note, reviewer, label, err);
}

int db_review_at(const char *path, int64_t part_id, int64_t inspection_id,
		 const char *decision, int verdict, const char *note, const char *reviewer,
		 const struct db_review_label *label, char **err)
{
	struct review_args a = { part_id, inspection_id, decision, NULL, note, reviewer,
				 label ? label->defect_type : NULL, label ? label->mask_path : NULL };
	/* One statement: the review goes to the inspection named, or the
	 * latest of the part, or nowhere when there is none (an inspection of
	 * another part is none) - nor when it overrules the line to the verdict
	 * the line gave: that changes nothing, yet would count as overruled
	 * (the shift report's share); agreeing is a confirm. */
	struct statement s = {
		.path = path, .write = true, .doing = "review in", .bind = bind_review, .data = &a,
		.sql = "INSERT INTO reviews (inspection_id, t_wall_us, decision, verdict, note,"
		       " reviewer, defect_type, mask_path) SELECT id, ?2, ?3, ?4, ?5, ?6, ?7, ?8"
		       " FROM (SELECT id, verdict FROM inspections"
		       " WHERE part_id = ?1 AND (?9 < 0 OR id = ?9) ORDER BY id DESC LIMIT 1)"
		       " WHERE ?3 = 'confirm' OR verdict IS NOT ?4",
	};
	struct target_ctx t = { &a, 0 };
	struct statement target = {
		.path = path, .doing = "read", .bind = bind_target, .row = target_verdict,
		.data = &t,
		.sql = "SELECT verdict FROM inspections WHERE part_id = ?1 AND (?2 < 0 OR id = ?2)"
		       " ORDER BY id DESC LIMIT 1",
	};
	int rc;

	if (!decision || (strcmp(decision, "confirm") != 0 && strcmp(decision, "overrule") != 0)) {
		db__set_error(err, "a review is 'confirm' or 'overrule', not '%s'",
			  decision ? decision : "(none)");
		return -EINVAL;
	}
	if (verdict < VIGIL_VERDICT_ACCEPT || verdict > VIGIL_VERDICT_MARGINAL) {
		db__set_error(err, "a review needs the right verdict: accept, reject or marginal");
		return -EINVAL;
	}
	a.verdict = vigil_verdict_name((enum vigil_verdict)verdict);
	if ((rc = run_statement(&s, err)) < 0)
		return rc;
	if (s.changes == 1)
		return 0;
	/* Nothing written: which of the two, for the message. The path is
	 * the caller's to add (the review API must not show it). */
	if ((rc = run_statement(&target, err)) < 0)
		return rc;
	if (!t.verdict) {
		if (inspection_id >= 0)
			db__set_error(err, "no inspection %" PRId64 " of part %" PRId64,
				      inspection_id, part_id);
		else
			db__set_error(err, "no inspection of part %" PRId64, part_id);
		return -ENOENT;
	}
	db__set_error(err, "part %" PRId64 ": the line judged it %s already; an overrule names "
		      "another verdict (to agree with the line, confirm)", part_id, a.verdict);
	return -EINVAL;
}

struct reviews_ctx {
	int64_t part_id;
	int (*fn)(const struct db_review_row *r, void *data);
	void *data;
};

static int bind_reviews(sqlite3_stmt *st, void *data)
{
	return sqlite3_bind_int64(st, 1, ((struct reviews_ctx *)data)->part_id);
}

static int review_row(sqlite3_stmt *st, void *data)
{
	struct reviews_ctx *c = data;
	struct db_review_row r = {
		.id = sqlite3_column_int64(st, 0),
		.inspection_id = sqlite3_column_int64(st, 1),
		.t_wall_us = sqlite3_column_int64(st, 2),
		.decision = (const char *)sqlite3_column_text(st, 3),
		.verdict = verdict_code((const char *)sqlite3_column_text(st, 4)),
		.note = (const char *)sqlite3_column_text(st, 5),
		.reviewer = (const char *)sqlite3_column_text(st, 6),
	};

	return c->fn(&r, c->data);
}

int db_read_reviews(const char *path, int64_t part_id,
		    int (*fn)(const struct db_review_row *r, void *data), void *data, char **err)
{
	struct reviews_ctx ctx = { part_id, fn, data };
	/* By row id, not time: the latest review is the one with the highest
	 * id (as db_query joins it), whatever the wall clock did. */
	struct statement s = {
		.path = path, .current_schema = true, .bind = bind_reviews, .row = review_row,
		.data = &ctx,
		.sql = "SELECT r.id, r.inspection_id, r.t_wall_us, r.decision, r.verdict, r.note,"
		       " r.reviewer FROM reviews r JOIN inspections i ON i.id = r.inspection_id"
		       " WHERE i.part_id = ?1 ORDER BY r.id DESC",
	};

	if (!fn) {
		db__set_error(err, "cannot read %s: no callback given", path ? path : "(no path)");
		return -EINVAL;
	}
	return run_statement(&s, err);
}

static int int64_row(sqlite3_stmt *st, void *data)
{
	*(int64_t *)data = sqlite3_column_int64(st, 0);
	return 1;
}

int64_t db_count_inspections(const char *path, char **err)
{
	int64_t count = 0;
	struct statement s = { .path = path, .sql = "SELECT count(*) FROM inspections",
			       .row = int64_row, .data = &count };
	int rc = run_statement(&s, err);

	return rc < 0 ? rc : count;
}

struct vibration_ctx {
	int64_t id;
	struct vigil_vibration *out;
};

static int bind_vibration(sqlite3_stmt *st, void *data)
{
	return sqlite3_bind_int64(st, 1, ((struct vibration_ctx *)data)->id);
}

static int vibration_row(sqlite3_stmt *st, void *data)
{
	const char *zone = (const char *)sqlite3_column_text(st, 1);

	*((struct vibration_ctx *)data)->out = (struct vigil_vibration){
		.rms_velocity_mm_s = column_real(st, 0),
		.iso_zone = zone && zone[0] >= 'A' && zone[0] <= 'D' ? zone[0] : 0,
		.rms_accel_g = column_real(st, 2),
		.hf_accel_g = column_real(st, 3),
		.peak_g = column_real(st, 4),
		.crest_factor = column_real(st, 5),
		.kurtosis = column_real(st, 6),
		.ftf_env = column_real(st, 7),
		.bpfo_env = column_real(st, 8),
		.bpfi_env = column_real(st, 9),
		.bsf_env = column_real(st, 10),
	};
	return 1;
}

int db_read_vibration(const char *path, int64_t inspection_id, struct vigil_vibration *out,
		      char **err)
{
	struct vibration_ctx ctx = { inspection_id, out };
	struct statement s = {
		.path = path, .bind = bind_vibration, .row = vibration_row, .data = &ctx,
		.sql = "SELECT rms_velocity_mm_s, iso_zone, rms_accel_g, hf_accel_g, peak_g,"
		       " crest_factor, kurtosis, ftf_env, bpfo_env, bpfi_env, bsf_env"
		       " FROM vibration WHERE inspection_id = ?1",
	};
	int rc;

	if (!out)
		return -EINVAL;
	if ((rc = run_statement(&s, err)) < 0)
		return rc;
	return s.rows ? 0 : -ENOENT;
}

struct media_ctx {
	int64_t inspection_id;
	int (*fn)(const struct db_media *m, void *data);
	void *data;
};

static int bind_media(sqlite3_stmt *st, void *data)
{
	return sqlite3_bind_int64(st, 1, ((struct media_ctx *)data)->inspection_id);
}

static int media_row(sqlite3_stmt *st, void *data)
{
	struct media_ctx *c = data;
	struct db_media m = {
		.id = sqlite3_column_int64(st, 0),
		.inspection_id = sqlite3_column_int64(st, 1),
		.camera = (const char *)sqlite3_column_text(st, 2),
		.kind = (const char *)sqlite3_column_text(st, 3),
		.path = (const char *)sqlite3_column_text(st, 4),
		.bytes = sqlite3_column_int64(st, 5),
		.recent = sqlite3_column_int(st, 6),
	};

	return c->fn(&m, c->data);
}

int db_read_media(const char *db_path, int64_t inspection_id,
		  int (*fn)(const struct db_media *m, void *data), void *data, char **err)
{
	struct media_ctx ctx = { inspection_id, fn, data };
	struct statement s = {
		.path = db_path, .current_schema = true, .bind = bind_media, .row = media_row,
		.data = &ctx,
		.sql = "SELECT id, inspection_id, camera, kind, path, bytes, recent FROM media"
		       " WHERE inspection_id = ?1 ORDER BY kind != 'image', id",
	};

	if (!fn) {
		db__set_error(err, "cannot read %s: no callback given", db_path ? db_path : "(no path)");
		return -EINVAL;
	}
	return run_statement(&s, err);
}

static int text_row(sqlite3_stmt *st, void *data)
{
	const char *v = (const char *)sqlite3_column_text(st, 0);

	*(char **)data = v ? strdup(v) : NULL;
	return 1;
}

/* A file that exists and is not db_path (another inode): then a log
 * recording OTHER.media was copied from OTHER, which still has its folder. */
static bool other_file(const char *other, const char *db_path)
{
	GStatBuf a, b;

	if (g_stat(other, &a) < 0 || !S_ISREG(a.st_mode))
		return false;
	return g_stat(db_path, &b) < 0 || a.st_dev != b.st_dev || a.st_ino != b.st_ino;
}

char *db__resolve_media_dir(const char *db_path, const char *recorded, char **copied_from)
{
	char *def = db__default_media_dir(db_path);
	char *beside = g_canonicalize_filename(def, NULL);
	size_t n = recorded ? strlen(recorded) : 0;

	g_free(def);
	if (copied_from)
		*copied_from = NULL;
	if (!recorded || strcmp(recorded, beside) == 0)
		return beside;
	if (n > 6 && strcmp(recorded + n - 6, ".media") == 0) {
		char *other = g_strndup(recorded, n - 6);

		if (other_file(other, db_path)) {
			if (copied_from)
				*copied_from = other;
			else
				g_free(other);
			return beside;
		}
		g_free(other);
	}
	/* Moved with its folder: the recorded one is gone, the one beside is
	 * there. A folder set by media_dir that is missing stays named. */
	if (!g_file_test(recorded, G_FILE_TEST_IS_DIR) && g_file_test(beside, G_FILE_TEST_IS_DIR))
		return beside;
	g_free(beside);
	return g_strdup(recorded);
}

char *db_shifts(const char *db_path, char **err)
{
	char *recorded = NULL;
	int64_t version = 0;
	struct statement probe = { .path = db_path, .sql = "PRAGMA user_version",
				   .row = int64_row, .data = &version };
	struct statement s = { .path = db_path, .row = text_row, .data = &recorded,
			       .sql = "SELECT value FROM meta WHERE key = 'shifts'" };

	if (run_statement(&probe, err) < 0)
		return NULL;
	if (version >= 4 && run_statement(&s, err) < 0)
		return NULL;
	return recorded ? recorded : strdup(SHIFT_PLAN_DEFAULT);
}

char *db_media_dir(const char *db_path, char **err)
{
	char *recorded = NULL, *dir, *copied_from = NULL;
	int64_t version = 0;
	struct statement probe = { .path = db_path, .sql = "PRAGMA user_version",
				   .row = int64_row, .data = &version };
	struct statement s = { .path = db_path, .row = text_row, .data = &recorded,
			       .sql = "SELECT value FROM meta WHERE key = 'media_dir'" };

	if (run_statement(&probe, err) < 0)
		return NULL;
	/* A log from before schema 4 has no meta table: the default holds. */
	if (version >= 4 && run_statement(&s, err) < 0)
		return NULL;
	dir = db__resolve_media_dir(db_path, recorded, &copied_from);
	if (!g_file_test(dir, G_FILE_TEST_IS_DIR)) {
		if (copied_from)
			db__set_error(err, "%s: no media folder %s (the log was copied from %s, whose "
				      "folder %s is not this log's: copy it beside as %s)", db_path,
				      dir, copied_from, recorded, dir);
		else
			db__set_error(err, "%s: no media folder %s (%s)", db_path, dir,
				      recorded && strcmp(recorded, dir) == 0 ?
				      "the one the log records" : "the default, beside the log");
		g_free(dir);
		dir = NULL;
	} else {
		char *d = strdup(dir);

		g_free(dir);
		dir = d;
	}
	free(recorded);
	g_free(copied_from);
	return dir;
}

struct events_ctx {
	int64_t since_us, until_us;
	int (*fn)(const struct db_event_row *e, void *data);
	void *data;
};

static int bind_events(sqlite3_stmt *st, void *data)
{
	struct events_ctx *c = data;
	int rc = sqlite3_bind_int64(st, 1, c->since_us);

	return rc != SQLITE_OK ? rc : sqlite3_bind_int64(st, 2, c->until_us ? c->until_us
									: INT64_MAX);
}

static int events_row(sqlite3_stmt *st, void *data)
{
	struct events_ctx *c = data;
	struct db_event_row e = {
		.id = sqlite3_column_int64(st, 0),
		.t_wall_us = sqlite3_column_int64(st, 1),
		.kind = (const char *)sqlite3_column_text(st, 2),
		.message = (const char *)sqlite3_column_text(st, 3),
	};

	return c->fn(&e, c->data);
}

int db_read_events(const char *db_path, int64_t since_us, int64_t until_us,
		   int (*fn)(const struct db_event_row *e, void *data), void *data, char **err)
{
	struct events_ctx ctx = { since_us, until_us, fn, data };
	struct statement s = {
		.path = db_path, .bind = bind_events, .row = events_row, .data = &ctx,
		.sql = "SELECT id, t_wall_us, kind, message FROM events"
		       " WHERE t_wall_us >= ?1 AND t_wall_us < ?2 ORDER BY t_wall_us, id",
	};

	if (!fn) {
		db__set_error(err, "cannot read %s: no callback given", db_path ? db_path : "(no path)");
		return -EINVAL;
	}
	return run_statement(&s, err);
}

/* ---- tracing: facets, neighbours, escapes ---- */

struct facet_ctx {
	int (*fn)(const char *value, int64_t rows, void *data);
	void *data;
};

static int facet_row(sqlite3_stmt *st, void *data)
{
	struct facet_ctx *c = data;

	return c->fn((const char *)sqlite3_column_text(st, 0), sqlite3_column_int64(st, 1),
		     c->data);
}

int db_facets(const char *path, const char *column,
	      int (*fn)(const char *value, int64_t rows, void *data), void *data, char **err)
{
	static const char *const columns[] = { "job", "model_version", "station" };
	struct facet_ctx ctx = { fn, data };
	struct statement s = { .path = path, .current_schema = true, .row = facet_row,
			       .data = &ctx };
	char *sql;
	int rc;

	if (!fn || !column) {
		db__set_error(err, "cannot read %s: no column or callback given",
			      path ? path : "(no path)");
		return -EINVAL;
	}
	/* The column name comes from the fixed list, never from the caller's
	 * text, so it may be pasted into the statement. */
	for (size_t i = 0; i < G_N_ELEMENTS(columns); i++)
		if (strcmp(column, columns[i]) == 0) {
			sql = g_strdup_printf("SELECT %s, count(*) FROM inspections WHERE %s IS NOT"
					      " NULL GROUP BY %s ORDER BY max(id) DESC",
					      columns[i], columns[i], columns[i]);
			s.sql = sql;
			rc = run_statement(&s, err);
			g_free(sql);
			return rc;
		}
	db__set_error(err, "no facet '%s' (job, model_version or station)", column);
	return -EINVAL;
}

static int bind_neighbours(sqlite3_stmt *st, void *data)
{
	const struct query_ctx *c = data;
	int rc;

	if ((rc = sqlite3_bind_int64(st, 1, c->around_id)) != SQLITE_OK)
		return rc;
	return sqlite3_bind_int64(st, 2, c->around_n);
}

int db_neighbours(const char *path, int64_t inspection_id, int n, const struct db_row_cb *cb,
		  char **err)
{
	struct query_ctx ctx = { .cb = cb, .around_id = inspection_id, .around_n = n };
	struct statement s = { .path = path, .current_schema = true, .bind = bind_neighbours,
			       .row = inspection_row, .data = &ctx };
	char *sql;
	int rc;

	if (!cb || !cb->fn || n < 0) {
		db__set_error(err, "cannot read %s: no callback given", path ? path : "(no path)");
		return -EINVAL;
	}
	/* Row ids grow in the order parts were written, which is the line's
	 * order on each station. */
	sql = g_strconcat(sql_select_inspections,
			  " WHERE i.id = ?1 OR i.id IN (SELECT id FROM inspections WHERE id < ?1"
			  " AND station IS (SELECT station FROM inspections WHERE id = ?1)"
			  " ORDER BY id DESC LIMIT ?2) OR i.id IN (SELECT id FROM inspections"
			  " WHERE id > ?1 AND station IS (SELECT station FROM inspections"
			  " WHERE id = ?1) ORDER BY id LIMIT ?2) ORDER BY i.id", NULL);
	s.sql = sql;
	rc = run_statement(&s, err);
	g_free(sql);
	return rc;
}

struct escape_args {
	int64_t part_id, inspection_id;
	const char *note, *reporter;
	int64_t id;   /* out */
};

static int bind_escape(sqlite3_stmt *st, void *data)
{
	const struct escape_args *a = data;
	int rc;

	if ((rc = sqlite3_bind_int64(st, 1, a->part_id)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int64(st, 2, g_get_real_time())) != SQLITE_OK ||
	    (rc = db__bind_text_or_null(st, 3, a->note)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int64(st, 5, a->inspection_id)) != SQLITE_OK)
		return rc;
	return db__bind_text_or_null(st, 4, a->reporter);
}

static int escape_id_row(sqlite3_stmt *st, void *data)
{
	((struct escape_args *)data)->id = sqlite3_column_int64(st, 0);
	return 0;   /* step on to SQLITE_DONE, which completes the insert */
}

int db_mark_escape(const char *path, int64_t part_id, const char *note, const char *reporter,
		   int64_t *id_out, char **err)
{
	return db_mark_escape_at(path, part_id, -1, note, reporter, id_out, err);
}

int db_mark_escape_at(const char *path, int64_t part_id, int64_t inspection_id,
		      const char *note, const char *reporter, int64_t *id_out, char **err)
{
	struct escape_args a = { part_id, inspection_id, note, reporter, 0 };
	/* One statement: the escape goes to the inspection named or the
	 * latest of the part, or nowhere when there is none (an inspection of
	 * another part is none). */
	struct statement s = {
		.path = path, .write = true, .current_schema = true, .doing = "mark an escape in",
		.bind = bind_escape, .row = escape_id_row, .data = &a,
		.sql = "INSERT INTO escapes (inspection_id, t_wall_us, note, reporter)"
		       " SELECT id, ?2, ?3, ?4 FROM inspections WHERE part_id = ?1"
		       " AND (?5 < 0 OR id = ?5) ORDER BY id DESC LIMIT 1 RETURNING id",
	};
	int rc;

	if ((rc = run_statement(&s, err)) < 0)
		return rc;
	if (s.rows == 0) {
		/* No path: the review API answers with this text. */
		if (inspection_id >= 0)
			db__set_error(err, "no inspection %" PRId64 " of part %" PRId64,
				      inspection_id, part_id);
		else
			db__set_error(err, "no inspection of part %" PRId64, part_id);
		return -ENOENT;
	}
	if (id_out)
		*id_out = a.id;
	return 0;
}

struct escapes_ctx {
	int (*fn)(const struct db_escape *e, void *data);
	void *data;
};

static int escape_row(sqlite3_stmt *st, void *data)
{
	struct escapes_ctx *c = data;
	struct db_escape e = {
		.id = sqlite3_column_int64(st, 0),
		.inspection_id = sqlite3_column_int64(st, 1),
		.t_wall_us = sqlite3_column_int64(st, 2),
		.note = (const char *)sqlite3_column_text(st, 3),
		.reporter = (const char *)sqlite3_column_text(st, 4),
		.part_id = (uint32_t)sqlite3_column_int64(st, 5),
		.t_part_us = sqlite3_column_int64(st, 6),
	};

	return c->fn(&e, c->data);
}

int db_read_escapes(const char *path, int (*fn)(const struct db_escape *e, void *data),
		    void *data, char **err)
{
	struct escapes_ctx ctx = { fn, data };
	struct statement s = {
		.path = path, .current_schema = true, .row = escape_row, .data = &ctx,
		.sql = "SELECT e.id, e.inspection_id, e.t_wall_us, e.note, e.reporter, i.part_id,"
		       " i.t_wall_us FROM escapes e JOIN inspections i ON i.id = e.inspection_id"
		       " ORDER BY e.id DESC",
	};

	if (!fn) {
		db__set_error(err, "cannot read %s: no callback given", path ? path : "(no path)");
		return -EINVAL;
	}
	return run_statement(&s, err);
}
