/* The forwarder thread: store and forward from the station's SQLite log
 * to the plant's PostgreSQL (db/plant.h).
 *
 * Exactly once, without bookkeeping that a crash could tear: each table's
 * high-water mark (the highest local id already central) is read from the
 * central database at every connect, each batch is one central
 * transaction of INSERT ... ON CONFLICT DO NOTHING keyed by (site, line,
 * station, local_id), and the mark moves only after its COMMIT. A batch
 * whose COMMIT reached the server but whose answer did not is sent again
 * after the reconnect, and its rows are no-ops.
 *
 * local_id is the station's row number: the local id plus a base kept in
 * the local meta table (0 for the first log a station forwards). A log
 * the plant has not heard from before (a fresh file after db-recovered, a
 * replaced disk) carries an identity of its own (meta plant_log_id, and
 * stations.log_id centrally); its rows continue after the station's last
 * ones instead of colliding with them, and so do the rows of a table that
 * retention emptied, since SQLite then numbers from 1 again. */
#include "db/plant.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>
#include <libpq-fe.h>
#include <sqlite3.h>

#include "core/part.h"
#include "db/plant-private.h"

#define LOCAL_BUSY_MS 5000
#define POLL_MS 1000            /* looks for new local rows this often */

/* One local table and where its rows go. The local SELECT returns id,
 * then t_wall_us where has_time, then the columns named by central_cols
 * in that order; it takes ?1 = the high-water mark, ?2 = the limit. */
struct table_desc {
	const char *name;
	bool has_time;
	const char *local_sql;
	const char *count_sql;   /* rows above ?1 */
	const char *central_cols;
	int ncentral;            /* columns in central_cols */
	const char *extra_col, *extra_val;
	int insp_col;            /* local column holding an inspection id (-1: none) */
};

/* An inspection with its vibration figures, in the column order of
 * tables[PLANT_INSPECTIONS].central_cols. */
#define INSPECTION_SELECT \
	"SELECT i.id, i.t_wall_us, i.part_id, i.trigger_counter, i.seq, i.verdict," \
	" i.verdict_code, i.defect_class, i.flags, i.score, i.vision_score, i.signal_score," \
	" i.latency_ms, i.infer_ms, i.model_version, i.image_path, i.model_verdict," \
	" i.model_score, i.job, i.station, v.rms_velocity_mm_s, v.iso_zone, v.rms_accel_g," \
	" v.hf_accel_g, v.peak_g, v.crest_factor, v.kurtosis, v.ftf_env, v.bpfo_env," \
	" v.bpfi_env, v.bsf_env" \
	" FROM inspections i LEFT JOIN vibration v ON v.inspection_id = i.id"

static const struct table_desc tables[PLANT_NTABLES] = {
	[PLANT_INSPECTIONS] = {
		"inspections", true,
		INSPECTION_SELECT " WHERE i.id > ?1 ORDER BY i.id LIMIT ?2",
		"SELECT count(*) FROM inspections WHERE id > ?1",
		"part_id, trigger_counter, seq, verdict, verdict_code, defect_class, flags, score,"
		" vision_score, signal_score, latency_ms, infer_ms, model_version, image_path,"
		" model_verdict, model_score, job, local_station, rms_velocity_mm_s, iso_zone,"
		" rms_accel_g, hf_accel_g, peak_g, crest_factor, kurtosis, ftf_env, bpfo_env,"
		" bpfi_env, bsf_env", 29, NULL, NULL, -1,
	},
	[PLANT_EVENTS] = {
		"events", true,
		"SELECT id, t_wall_us, kind, message FROM events WHERE id > ?1 ORDER BY id LIMIT ?2",
		"SELECT count(*) FROM events WHERE id > ?1",
		"kind, message", 2, NULL, NULL, -1,
	},
	/* Reviews pulled from the central database carry their central id and
	 * are not sent back. */
	[PLANT_REVIEWS] = {
		"reviews", true,
		"SELECT r.id, r.t_wall_us, r.inspection_id, i.part_id, r.decision, r.verdict, r.note,"
		" r.reviewer, r.defect_type, r.mask_path"
		" FROM reviews r LEFT JOIN inspections i ON i.id = r.inspection_id"
		" WHERE r.id > ?1 AND r.central_id IS NULL ORDER BY r.id LIMIT ?2",
		"SELECT count(*) FROM reviews WHERE id > ?1 AND central_id IS NULL",
		"inspection_local_id, part_id, decision, verdict, note, reviewer, defect_type,"
		" mask_path", 8, "origin", "'station'", 2,
	},
	[PLANT_ESCAPES] = {
		"escapes", true,
		"SELECT id, t_wall_us, inspection_id, note, reporter FROM escapes"
		" WHERE id > ?1 ORDER BY id LIMIT ?2",
		"SELECT count(*) FROM escapes WHERE id > ?1",
		"inspection_local_id, note, reporter", 3, NULL, NULL, 2,
	},
	/* Files of the recent ring go within hours: only kept files. */
	[PLANT_MEDIA] = {
		"media", false,
		"SELECT id, inspection_id, camera, kind, path, bytes FROM media"
		" WHERE id > ?1 AND recent = 0 ORDER BY id LIMIT ?2",
		"SELECT count(*) FROM media WHERE id > ?1 AND recent = 0",
		"inspection_local_id, camera, kind, path, bytes", 5, NULL, NULL, 1,
	},
};

const char *plant_table_name(enum plant_table t)
{
	return t < PLANT_NTABLES ? tables[t].name : "unknown";
}

/* One local row as the central INSERT's parameters: site, line, station,
 * then the local columns (text, NULL for NULL). */
struct row {
	int n;
	char **vals;
	int64_t id, t_wall_us;
};

struct plant_forwarder {
	char *db_path;
	struct plant_options opt;     /* its strings are the copies below */
	char *conninfo, *passfile, *site, *line, *station, *masked;
	GThread *thread;

	GMutex lock;                  /* guards what follows, to the thread's own */
	GCond wake;
	bool stop, drain;
	struct plant_stats stats;

	/* The thread's own. */
	sqlite3 *rd, *wr;             /* the local log: reading; events and pulled reviews */
	PGconn *pg;
	int64_t hw[PLANT_NTABLES];    /* highest local id the central database holds */
	bool hw_known;
	char *log_id;                 /* this log's identity (meta plant_log_id) */
	int64_t base[PLANT_NTABLES];  /* central local_id = local id + base (meta) */
	int64_t central_review_hw;    /* highest central review id pulled */
	int64_t read_upto;            /* meta plant_read_upto as last written */
	bool outage_logged, newer_logged, partition_warned, local_warned;
	int64_t outage_since_us;
	GHashTable *months;           /* months whose partitions this connection made */
	char *model_version;          /* of the latest inspection forwarded */
};

/* ---- the local log ---- */

/* An event in the local log, like the line's faults (and forwarded in
 * its turn); also to the journal. Never fatal: the log is the line's. */
static void local_event(plant_forwarder *f, const char *kind, const char *fmt, ...)
	G_GNUC_PRINTF(3, 4);
static void local_event(plant_forwarder *f, const char *kind, const char *fmt, ...)
{
	sqlite3_stmt *st = NULL;
	va_list ap;
	char *msg;

	va_start(ap, fmt);
	msg = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	if (strcmp(kind, "plant-link-up") == 0)
		g_message("%s: %s", kind, msg);
	else
		g_warning("%s: %s", kind, msg);
	if (sqlite3_prepare_v2(f->wr, "INSERT INTO events (t_wall_us, kind, message)"
			       " VALUES (?1, ?2, ?3)", -1, &st, NULL) == SQLITE_OK) {
		sqlite3_bind_int64(st, 1, vigil_wall_us());
		sqlite3_bind_text(st, 2, kind, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 3, msg, -1, SQLITE_STATIC);
		if (sqlite3_step(st) != SQLITE_DONE)
			g_warning("plant: cannot log event %s in %s: %s", kind, f->db_path,
				  sqlite3_errmsg(f->wr));
	}
	sqlite3_finalize(st);
	g_free(msg);
}

/* The first column of sql's first row (NULL: 0), arg bound to ?1 if sql
 * has it. An SQLite code. */
static int local_int(sqlite3 *conn, const char *sql, int64_t arg, int64_t *out)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(conn, sql, -1, &st, NULL);

	if (rc == SQLITE_OK) {
		if (sqlite3_bind_parameter_count(st) > 0)
			sqlite3_bind_int64(st, 1, arg);
		rc = sqlite3_step(st);
	}
	if (rc == SQLITE_ROW) {
		*out = sqlite3_column_type(st, 0) == SQLITE_NULL ? 0 : sqlite3_column_int64(st, 0);
		rc = SQLITE_OK;
	}
	sqlite3_finalize(st);
	return rc;
}

static void row_free(gpointer p)
{
	struct row *r = p;

	for (int i = 0; i < r->n; i++)
		g_free(r->vals[i]);
	g_free(r->vals);
	g_free(r);
}

/* The next rows of table t above its high-water mark, into rows: at most
 * opt.batch, and with settled_only no inspection younger than settle_s
 * (nor any after it, so that the mark never passes a row not sent); one
 * stamped ahead of now is not young.
 * SQLite code. */
/* The row st stands on (a row of table t) as the central statement's
 * parameters. */
static struct row *row_from_stmt(plant_forwarder *f, enum plant_table t, sqlite3_stmt *st)
{
	const struct table_desc *d = &tables[t];
	int ncols = sqlite3_column_count(st);
	struct row *r = g_new0(struct row, 1);

	r->n = 3 + ncols;
	r->vals = g_new0(char *, r->n);
	r->vals[0] = g_strdup(f->site);
	r->vals[1] = g_strdup(f->line);
	r->vals[2] = g_strdup(f->station);
	r->id = sqlite3_column_int64(st, 0);
	r->t_wall_us = d->has_time ? sqlite3_column_int64(st, 1) : 0;
	for (int c = 0; c < ncols; c++) {
		char **v = &r->vals[3 + c];

		switch (sqlite3_column_type(st, c)) {
		case SQLITE_NULL:
			break;
		case SQLITE_INTEGER:
			*v = g_strdup_printf("%" PRId64, (int64_t)sqlite3_column_int64(st, c));
			break;
		case SQLITE_FLOAT:
			/* 17 digits: the central double is the local one,
			 * bit for bit (SQLite's own text has 15). */
			*v = g_strdup_printf("%.17g", sqlite3_column_double(st, c));
			break;
		default:
			*v = g_strdup((const char *)sqlite3_column_text(st, c));
			break;
		}
	}
	g_free(r->vals[3]);
	r->vals[3] = g_strdup_printf("%" PRId64, r->id + f->base[t]);
	if (d->insp_col >= 0 && r->vals[3 + d->insp_col]) {
		int64_t insp = g_ascii_strtoll(r->vals[3 + d->insp_col], NULL, 10);

		g_free(r->vals[3 + d->insp_col]);
		r->vals[3 + d->insp_col] = g_strdup_printf("%" PRId64,
							   insp + f->base[PLANT_INSPECTIONS]);
	}
	if (t == PLANT_INSPECTIONS) {
		g_free(f->model_version);
		f->model_version = g_strdup(r->vals[3 + 14]);
	}
	return r;
}

static int read_rows(plant_forwarder *f, enum plant_table t, bool settled_only, GPtrArray *rows)
{
	const struct table_desc *d = &tables[t];
	int64_t now = vigil_wall_us(), cutoff = now - (int64_t)f->opt.settle_s * 1000000;
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(f->rd, d->local_sql, -1, &st, NULL);

	if (rc != SQLITE_OK)
		return rc;
	sqlite3_bind_int64(st, 1, f->hw[t]);
	sqlite3_bind_int(st, 2, f->opt.batch);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		/* A stamp ahead of now was made before the wall clock
		 * stepped back (db-clock.c): not young, however far ahead -
		 * waiting for it would hold every row after it for as long. */
		if (t == PLANT_INSPECTIONS && settled_only && sqlite3_column_int64(st, 1) > cutoff &&
		    sqlite3_column_int64(st, 1) <= now)
			break;
		g_ptr_array_add(rows, row_from_stmt(f, t, st));
	}
	sqlite3_finalize(st);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static int meta_set(plant_forwarder *f, const char *key, const char *value)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(f->wr, "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
				    -1, &st, NULL);

	if (rc == SQLITE_OK) {
		sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, value, -1, SQLITE_STATIC);
		rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : sqlite3_errcode(f->wr);
	}
	sqlite3_finalize(st);
	return rc;
}

/* The value of meta key, or NULL (g_free it). */
static char *meta_get(sqlite3 *conn, const char *key)
{
	sqlite3_stmt *st = NULL;
	char *v = NULL;

	if (sqlite3_prepare_v2(conn, "SELECT value FROM meta WHERE key = ?1", -1, &st, NULL) ==
	    SQLITE_OK) {
		sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
		if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
			v = g_strdup((const char *)sqlite3_column_text(st, 0));
	}
	sqlite3_finalize(st);
	return v;
}

/* Sets table t's base so that its rows continue after central_max, the
 * station's highest local_id there, and keeps it in meta before any row
 * goes up with it. 0 or an SQLite code. */
static int rebase(plant_forwarder *f, enum plant_table t, int64_t central_max)
{
	char key[48], value[24];

	snprintf(key, sizeof(key), "plant_base_%s", tables[t].name);
	snprintf(value, sizeof(value), "%" PRId64, central_max);
	f->base[t] = central_max;
	f->hw[t] = 0;
	return meta_set(f, key, value);
}

/* SQLite numbers a table's rows from max(id) + 1: once retention has
 * emptied a table, its ids start again below the mark, and every row
 * then in it is new (retention removes the oldest first, so no old row
 * is left below a new one). */
static int check_restart(plant_forwarder *f, enum plant_table t)
{
	char sql[64];
	int64_t max_id = 0;

	if (!f->hw_known || f->hw[t] == 0)
		return 0;
	snprintf(sql, sizeof(sql), "SELECT max(id) FROM %s", tables[t].name);
	if (local_int(f->rd, sql, 0, &max_id) != SQLITE_OK || max_id >= f->hw[t])
		return 0;
	g_warning("plant: %s ids start again at %" PRId64 " (retention emptied the table); they "
		  "continue after local_id %" PRId64 " in the plant database", tables[t].name,
		  max_id, f->hw[t] + f->base[t]);
	return rebase(f, t, f->hw[t] + f->base[t]);
}

/* Local retention removes the oldest rows; those it removed above the
 * mark were never forwarded: counted as lost, and the mark moves past
 * them. Only once the mark is known (a station that never forwarded
 * has lost nothing it was meant to send). */
static void count_lost(plant_forwarder *f, enum plant_table t)
{
	char sql[96];
	int64_t min_id = 0;

	if (!f->hw_known || f->hw[t] == 0 || (t != PLANT_INSPECTIONS && t != PLANT_EVENTS))
		return;
	snprintf(sql, sizeof(sql), "SELECT min(id) FROM %s WHERE id > ?1", tables[t].name);
	if (local_int(f->rd, sql, f->hw[t], &min_id) != SQLITE_OK || min_id <= f->hw[t] + 1)
		return;
	g_mutex_lock(&f->lock);
	f->stats.lost[t] += (uint64_t)(min_id - f->hw[t] - 1);
	g_mutex_unlock(&f->lock);
	g_warning("plant: %" PRId64 " %s rows were removed by retention before they were "
		  "forwarded", min_id - f->hw[t] - 1, tables[t].name);
	f->hw[t] = min_id - 1;
}

/* Backlog and lag from the local log, for the counters. */
static void refresh_backlog(plant_forwarder *f)
{
	int64_t backlog[PLANT_NTABLES] = { 0 }, oldest = 0;

	for (int t = 0; t < PLANT_NTABLES; t++) {
		if (t == PLANT_MEDIA && !f->opt.media)
			continue;
		if (local_int(f->rd, tables[t].count_sql, f->hw[t], &backlog[t]) != SQLITE_OK)
			return;
	}
	for (int t = PLANT_INSPECTIONS; t <= PLANT_EVENTS; t++) {
		char sql[96];
		int64_t first = 0;

		snprintf(sql, sizeof(sql), "SELECT t_wall_us FROM %s WHERE id > ?1 ORDER BY id LIMIT 1",
			 tables[t].name);
		if (local_int(f->rd, sql, f->hw[t], &first) == SQLITE_OK && first &&
		    (!oldest || first < oldest))
			oldest = first;
	}
	g_mutex_lock(&f->lock);
	memcpy(f->stats.backlog, backlog, sizeof backlog);
	f->stats.oldest_unforwarded_us = oldest;
	g_mutex_unlock(&f->lock);
}

/* ---- the central database ---- */

static void set_last_error(plant_forwarder *f, const char *msg)
{
	g_mutex_lock(&f->lock);
	g_strlcpy(f->stats.last_error, msg ? msg : "", sizeof f->stats.last_error);
	g_mutex_unlock(&f->lock);
}

static int fail_res(plant_forwarder *f, PGresult *res, const char *what, char **err)
{
	db__set_error(err, "%s: %s", what, plant__pg_message(f->pg, res));
	PQclear(res);
	return PQstatus(f->pg) == CONNECTION_OK ? PLANT_ESQL : PLANT_ELINK;
}

static int read_high_water(plant_forwarder *f, char **err)
{
	const char *params[3] = { f->site, f->line, f->station };
	int64_t central[PLANT_NTABLES];
	bool new_log;
	PGresult *res;

	/* Which log the plant last heard from this station: none yet, this
	 * one, or another. */
	res = PQexecParams(f->pg, "SELECT log_id FROM stations WHERE site = $1 AND line = $2"
			   " AND station = $3", 3, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		return fail_res(f, res, "cannot read this station's row", err);
	new_log = PQntuples(res) == 1 && !PQgetisnull(res, 0, 0) &&
		  strcmp(PQgetvalue(res, 0, 0), f->log_id) != 0;
	PQclear(res);
	for (int t = 0; t < PLANT_NTABLES; t++) {
		char sql[256];
		PGresult *res;

		snprintf(sql, sizeof(sql), "SELECT coalesce(max(local_id), 0) FROM %s"
			 " WHERE site = $1 AND line = $2 AND station = $3%s", tables[t].name,
			 t == PLANT_REVIEWS ? " AND origin = 'station'" : "");
		res = PQexecParams(f->pg, sql, 3, NULL, params, NULL, NULL, 0);
		if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
			return fail_res(f, res, "cannot read where forwarding stopped", err);
		central[t] = g_ascii_strtoll(PQgetvalue(res, 0, 0), NULL, 10);
		PQclear(res);
	}
	for (int t = 0; t < PLANT_NTABLES; t++) {
		if (new_log) {
			if (rebase(f, t, central[t]) != SQLITE_OK) {
				db__set_error(err, "cannot keep the id base in %s: %s", f->db_path,
					      sqlite3_errmsg(f->wr));
				return PLANT_ESQL;
			}
		} else {
			f->hw[t] = MAX(central[t] - f->base[t], 0);
		}
	}
	if (new_log)
		local_event(f, "plant-new-log", "the plant database last heard from another log "
			    "of this station (a fresh or recovered file): this log's rows continue "
			    "after local_id %" PRId64, central[PLANT_INSPECTIONS]);
	f->hw_known = true;
	return 0;
}

/* "$from, $from+1, ..., $from+n-1" */
static void append_placeholders(GString *s, int from, int n)
{
	for (int i = 0; i < n; i++)
		g_string_append_printf(s, "%s$%d", i ? ", " : "", from + i);
}

static int prepare_inserts(plant_forwarder *f, char **err)
{
	for (int t = 0; t < PLANT_NTABLES; t++) {
		const struct table_desc *d = &tables[t];
		GString *sql = g_string_new(NULL);
		char name[16];
		PGresult *res;

		g_string_append_printf(sql, "INSERT INTO %s (site, line, station, local_id%s, %s%s%s)"
				       " VALUES ($1, $2, $3, $4%s, ", d->name,
				       d->has_time ? ", t" : "", d->central_cols,
				       d->extra_col ? ", " : "", d->extra_col ? d->extra_col : "",
				       /* Exact to the microsecond; to_timestamp()
					* goes through a double. */
				       d->has_time ? ", timestamptz 'epoch' + $5::bigint"
						     " * interval '1 microsecond'" : "");
		append_placeholders(sql, d->has_time ? 6 : 5, d->ncentral);
		g_string_append_printf(sql, "%s%s) ON CONFLICT DO NOTHING",
				       d->extra_val ? ", " : "", d->extra_val ? d->extra_val : "");
		snprintf(name, sizeof(name), "ins_%d", t);
		res = PQprepare(f->pg, name, sql->str, 0, NULL);
		if (PQresultStatus(res) != PGRES_COMMAND_OK) {
			g_string_free(sql, TRUE);
			return fail_res(f, res, "cannot prepare the central inserts", err);
		}
		PQclear(res);
		/* An inspection sent again after the writer completed it
		 * (forward_changes): the same row, its columns overwritten. */
		if (t == PLANT_INSPECTIONS) {
			char **cols = g_strsplit(d->central_cols, ",", -1);

			g_string_truncate(sql, sql->len - strlen(" DO NOTHING"));
			g_string_append(sql, " (site, line, station, local_id, t) DO UPDATE SET ");
			for (int c = 0; cols[c]; c++) {
				char *col = g_strstrip(cols[c]);

				g_string_append_printf(sql, "%s%s = EXCLUDED.%s", c ? ", " : "", col,
						       col);
			}
			g_strfreev(cols);
			res = PQprepare(f->pg, "upd_inspections", sql->str, 0, NULL);
			if (PQresultStatus(res) != PGRES_COMMAND_OK) {
				g_string_free(sql, TRUE);
				return fail_res(f, res, "cannot prepare the central inserts", err);
			}
			PQclear(res);
		}
		g_string_free(sql, TRUE);
	}
	return 0;
}

/* This station's row in stations: at each connect and in each batch. */
static int touch_station(plant_forwarder *f, bool batch, char **err)
{
	char backlog[3][24], lag[32];
	const char *params[11];
	struct plant_stats s;
	PGresult *res;

	plant_forwarder_get_stats(f, &s);
	for (int i = 0; i < 3; i++)
		snprintf(backlog[i], sizeof backlog[i], "%" PRId64, s.backlog[i]);
	snprintf(lag, sizeof(lag), "%.3f", s.oldest_unforwarded_us
		 ? MAX(vigil_wall_us() - s.oldest_unforwarded_us, 0) / 1e6 : 0.0);
	params[0] = f->site;
	params[1] = f->line;
	params[2] = f->station;
	params[3] = g_get_host_name();
	params[4] = f->model_version;
	params[5] = batch ? "t" : "f";
	params[6] = backlog[0];
	params[7] = backlog[1];
	params[8] = backlog[2];
	params[9] = lag;
	params[10] = f->log_id;
	res = PQexecParams(f->pg,
			   "INSERT INTO stations (site, line, station, host, model_version, last_batch,"
			   " backlog_inspections, backlog_events, backlog_reviews, lag_s, log_id)"
			   " VALUES ($1, $2, $3, $4, $5, CASE WHEN $6::boolean THEN now() END,"
			   " $7, $8, $9, $10, $11)"
			   " ON CONFLICT (site, line, station) DO UPDATE SET host = EXCLUDED.host,"
			   " log_id = EXCLUDED.log_id,"
			   " model_version = coalesce(EXCLUDED.model_version, stations.model_version),"
			   " last_seen = now(),"
			   " last_batch = coalesce(EXCLUDED.last_batch, stations.last_batch),"
			   " backlog_inspections = EXCLUDED.backlog_inspections,"
			   " backlog_events = EXCLUDED.backlog_events,"
			   " backlog_reviews = EXCLUDED.backlog_reviews, lag_s = EXCLUDED.lag_s",
			   11, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		return fail_res(f, res, "cannot update this station's row", err);
	PQclear(res);
	return 0;
}

static void ignore_notice(void *data, const char *message)
{
	(void)data;
	(void)message;
}

static int connect_central(plant_forwarder *f, char **err)
{
	/* Later keywords override earlier ones, and dbname expands into the
	 * whole conninfo: the defaults go first, the passfile key last. */
	const char *keys[] = { "connect_timeout", "application_name", "keepalives_idle",
			       "keepalives_interval", "keepalives_count", "dbname", "passfile", NULL };
	const char *vals[] = { "10", "vigild", "10", "5", "3", f->conninfo, f->passfile, NULL };
	int ret;

	if (!f->passfile)
		keys[6] = NULL;
	f->pg = PQconnectdbParams(keys, vals, 1);
	if (PQstatus(f->pg) != CONNECTION_OK) {
		db__set_error(err, "cannot connect to the plant database (%s): %s", f->masked,
			      plant__pg_message(f->pg, NULL));
		return PLANT_ELINK;
	}
	PQsetNoticeProcessor(f->pg, ignore_notice, NULL);
	if ((ret = plant__prepare_schema(f->pg, err)) < 0 ||
	    (ret = read_high_water(f, err)) < 0 ||
	    (ret = prepare_inserts(f, err)) < 0 ||
	    (ret = touch_station(f, false, err)) < 0)
		return ret;
	return 0;
}

static int64_t month_of(int64_t t_wall_us)
{
	time_t t = (time_t)(t_wall_us / 1000000);
	struct tm tm;

	gmtime_r(&t, &tm);
	return (int64_t)(tm.tm_year + 1900) * 12 + tm.tm_mon;
}

/* The monthly partitions the rows need, made before the batch. A role
 * that may not create them only costs the partitioning: the rows go to
 * the DEFAULT partition, and a warning says so once. */
static int ensure_months(plant_forwarder *f, GPtrArray *rows, char **err)
{
	for (guint i = 0; i < rows->len; i++) {
		struct row *r = g_ptr_array_index(rows, i);
		int64_t month = month_of(r->t_wall_us);
		char *why = NULL;

		if (g_hash_table_contains(f->months, &month))
			continue;
		if (plant__ensure_month(f->pg, r->t_wall_us, &why) < 0) {
			if (PQstatus(f->pg) != CONNECTION_OK) {
				*err = why;
				return PLANT_ELINK;
			}
			if (!f->partition_warned)
				g_warning("plant: %s; rows go to the DEFAULT partitions", why);
			f->partition_warned = true;
			free(why);
		}
		g_hash_table_add(f->months, g_memdup2(&month, sizeof month));
	}
	return 0;
}

/* Before inspections are read: every inspection there is now may be
 * sent in this round, so the local log's trigger (schema step 11) records
 * in plant_changed any later change to one of them, for forward_changes.
 * Written only when it moves. SQLite code. */
static int mark_read_upto(plant_forwarder *f)
{
	int64_t max_id = 0;
	char v[24];
	int rc = local_int(f->rd, "SELECT max(id) FROM inspections", 0, &max_id);

	if (rc != SQLITE_OK || max_id <= f->read_upto)
		return rc;
	snprintf(v, sizeof(v), "%" PRId64, max_id);
	if ((rc = meta_set(f, "plant_read_upto", v)) == SQLITE_OK)
		f->read_upto = max_id;
	return rc;
}

/* Inspections the writer changed after they may have been read (the
 * image path once the media thread has written the image, the latency,
 * the model's late verdict; schema step 11) are sent again, whole, with
 * an upsert on their key: still one central row per local row. Changes
 * to rows not yet forwarded are dropped from the list, since those rows
 * will be read as they are now. The number of rows sent again, or a
 * negative code with *err. */
static int forward_changes(plant_forwarder *f, char **err)
{
	GPtrArray *rows = g_ptr_array_new_with_free_func(row_free);
	sqlite3_stmt *ids = NULL, *one = NULL;
	int64_t upto = 0;
	int ret = 0, rc;

	rc = sqlite3_prepare_v2(f->rd, "SELECT id, inspection_id FROM plant_changed"
				" ORDER BY id LIMIT ?1", -1, &ids, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v2(f->rd, INSPECTION_SELECT " WHERE i.id = ?1", -1, &one,
					NULL);
	if (rc != SQLITE_OK)
		goto local_fail;
	sqlite3_bind_int(ids, 1, f->opt.batch);
	while ((rc = sqlite3_step(ids)) == SQLITE_ROW) {
		int64_t insp = sqlite3_column_int64(ids, 1);
		bool seen = false;

		upto = sqlite3_column_int64(ids, 0);
		if (insp > f->hw[PLANT_INSPECTIONS])
			continue;
		for (guint i = 0; i < rows->len && !seen; i++)
			seen = ((struct row *)g_ptr_array_index(rows, i))->id == insp;
		if (seen)
			continue;
		sqlite3_reset(one);
		sqlite3_bind_int64(one, 1, insp);
		if ((rc = sqlite3_step(one)) == SQLITE_ROW)
			g_ptr_array_add(rows, row_from_stmt(f, PLANT_INSPECTIONS, one));
		else if (rc != SQLITE_DONE)  /* SQLITE_DONE: removed by retention since */
			break;
	}
	if (rc != SQLITE_DONE && rc != SQLITE_ROW)
		goto local_fail;
	if (!upto)
		goto out;
	if (rows->len) {
		if ((ret = ensure_months(f, rows, err)) < 0 ||
		    (ret = plant__exec(f->pg, "BEGIN", "cannot forward changed inspections",
				       err)) < 0)
			goto out;
		for (guint i = 0; i < rows->len; i++) {
			struct row *r = g_ptr_array_index(rows, i);
			PGresult *res = PQexecPrepared(f->pg, "upd_inspections", r->n,
						       (const char *const *)r->vals, NULL, NULL, 0);

			if (PQresultStatus(res) != PGRES_COMMAND_OK) {
				ret = fail_res(f, res, "cannot forward a changed inspection", err);
				PQclear(PQexec(f->pg, "ROLLBACK"));
				goto out;
			}
			PQclear(res);
		}
		if ((ret = plant__exec(f->pg, "COMMIT", "cannot commit changed inspections",
				       err)) < 0)
			goto out;
	}
	/* Sent: now the entries may go (a change recorded since has a
	 * higher id and stays). */
	{
		char *sql = g_strdup_printf("DELETE FROM plant_changed WHERE id <= %" PRId64, upto);

		rc = sqlite3_exec(f->wr, sql, NULL, NULL, NULL);
		g_free(sql);
		if (rc != SQLITE_OK && !f->local_warned) {
			g_warning("plant: cannot clear sent changes in %s: %s (they go again)",
				  f->db_path, sqlite3_errmsg(f->wr));
			f->local_warned = true;
		}
	}
	g_mutex_lock(&f->lock);
	f->stats.refreshed += rows->len;
	g_mutex_unlock(&f->lock);
	ret = (int)rows->len;
	goto out;
local_fail:
	/* The line's log, busy or failing: try again next round. */
	if (!f->local_warned)
		g_warning("plant: cannot read changed inspections from %s: %s", f->db_path,
			  sqlite3_errstr(rc));
	f->local_warned = true;
	ret = 0;
out:
	sqlite3_finalize(ids);
	sqlite3_finalize(one);
	g_ptr_array_unref(rows);
	return ret;
}

/* One batch: up to opt.batch rows of each table, in one central
 * transaction. The number of rows sent, or a negative code with *err. */
static int forward_batch(plant_forwarder *f, bool settled_only, char **err)
{
	GPtrArray *rows[PLANT_NTABLES] = { 0 };
	int64_t last[PLANT_NTABLES];
	bool in_transaction = false;
	int total = 0, ret = 0, rc;

	for (int t = 0; t < PLANT_NTABLES; t++) {
		rows[t] = g_ptr_array_new_with_free_func(row_free);
		last[t] = f->hw[t];
		if (t == PLANT_MEDIA && !f->opt.media)
			continue;
		if (check_restart(f, t) != SQLITE_OK) {
			g_warning("plant: cannot keep the id base of %s in %s: %s", tables[t].name,
				  f->db_path, sqlite3_errmsg(f->wr));
			continue;
		}
		count_lost(f, t);
		last[t] = f->hw[t];
		if (t == PLANT_INSPECTIONS && (rc = mark_read_upto(f)) != SQLITE_OK) {
			if (!f->local_warned)
				g_warning("plant: cannot mark %s's inspections as being forwarded: %s",
					  f->db_path, sqlite3_errstr(rc));
			f->local_warned = true;
			continue;
		}
		rc = read_rows(f, t, settled_only, rows[t]);
		if (rc != SQLITE_OK) {
			/* The line's log, busy or failing: its own fault
			 * handling reports that; try again next round. */
			if (!f->local_warned)
				g_warning("plant: cannot read %s from %s: %s", tables[t].name,
					  f->db_path, sqlite3_errstr(rc));
			f->local_warned = true;
			g_ptr_array_set_size(rows[t], 0);
			continue;
		}
		total += (int)rows[t]->len;
		if (rows[t]->len)
			last[t] = ((struct row *)g_ptr_array_index(rows[t], rows[t]->len - 1))->id;
	}
	if (total == 0)
		goto out;
	if ((ret = ensure_months(f, rows[PLANT_INSPECTIONS], err)) < 0 ||
	    (ret = ensure_months(f, rows[PLANT_EVENTS], err)) < 0)
		goto out;
	if ((ret = plant__exec(f->pg, "BEGIN", "cannot forward a batch", err)) < 0)
		goto out;
	in_transaction = true;
	for (int t = 0; t < PLANT_NTABLES; t++) {
		char name[16];

		snprintf(name, sizeof(name), "ins_%d", t);
		for (guint i = 0; i < rows[t]->len; i++) {
			struct row *r = g_ptr_array_index(rows[t], i);
			PGresult *res = PQexecPrepared(f->pg, name, r->n, (const char *const *)r->vals,
						       NULL, NULL, 0);

			if (PQresultStatus(res) != PGRES_COMMAND_OK) {
				char what[96];

				snprintf(what, sizeof(what), "cannot forward %s row %" PRId64,
					 tables[t].name, r->id);
				ret = fail_res(f, res, what, err);
				goto out;
			}
			PQclear(res);
		}
	}
	if ((ret = touch_station(f, true, err)) < 0 ||
	    (ret = plant__exec(f->pg, "COMMIT", "cannot commit a batch", err)) < 0)
		goto out;
	in_transaction = false;
	/* Committed: only now do the marks move. */
	g_mutex_lock(&f->lock);
	for (int t = 0; t < PLANT_NTABLES; t++) {
		f->hw[t] = last[t];
		f->stats.forwarded[t] += rows[t]->len;
	}
	f->stats.batches++;
	f->stats.last_batch_us = vigil_wall_us();
	g_mutex_unlock(&f->lock);
	ret = total;
out:
	if (in_transaction && PQstatus(f->pg) == CONNECTION_OK)
		PQclear(PQexec(f->pg, "ROLLBACK"));
	for (int t = 0; t < PLANT_NTABLES; t++)
		g_ptr_array_unref(rows[t]);
	return ret;
}

/* Reviews made centrally for this station's inspections come down into
 * the local reviews table, marked with their central id (unique there, so
 * a review pulled twice is stored once, and never sent back up). A
 * review of an inspection the local log no longer has is skipped. */
static int pull_reviews(plant_forwarder *f, char **err)
{
	char hw[24], limit[16];
	const char *params[5] = { f->site, f->line, f->station, hw, limit };
	sqlite3_stmt *st = NULL;
	PGresult *res;
	int n, pulled = 0;

	snprintf(hw, sizeof(hw), "%" PRId64, f->central_review_hw);
	snprintf(limit, sizeof(limit), "%d", f->opt.batch);
	res = PQexecParams(f->pg,
			   "SELECT id, inspection_local_id,"
			   " (extract(epoch FROM t) * 1000000)::bigint, decision, verdict, note,"
			   " reviewer, defect_type, mask_path FROM reviews"
			   " WHERE site = $1 AND line = $2 AND station = $3 AND origin = 'central'"
			   " AND id > $4 ORDER BY id LIMIT $5", 5, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		return fail_res(f, res, "cannot read the central reviews", err);
	n = PQntuples(res);
	if (n == 0)
		goto done;
	if (sqlite3_exec(f->wr, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(f->wr,
			       "INSERT OR IGNORE INTO reviews (inspection_id, t_wall_us, decision,"
			       " verdict, note, reviewer, defect_type, mask_path, central_id)"
			       " SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9"
			       " WHERE EXISTS (SELECT 1 FROM inspections WHERE id = ?1)",
			       -1, &st, NULL) != SQLITE_OK) {
		g_warning("plant: cannot store central reviews in %s: %s", f->db_path,
			  sqlite3_errmsg(f->wr));
		goto rollback;
	}
	for (int i = 0; i < n; i++) {
		sqlite3_reset(st);
		sqlite3_bind_int64(st, 1, g_ascii_strtoll(PQgetvalue(res, i, 1), NULL, 10) -
					  f->base[PLANT_INSPECTIONS]);
		sqlite3_bind_int64(st, 2, g_ascii_strtoll(PQgetvalue(res, i, 2), NULL, 10));
		for (int c = 3; c <= 8; c++) {
			if (PQgetisnull(res, i, c))
				sqlite3_bind_null(st, c);
			else
				sqlite3_bind_text(st, c, PQgetvalue(res, i, c), -1, SQLITE_TRANSIENT);
		}
		sqlite3_bind_int64(st, 9, g_ascii_strtoll(PQgetvalue(res, i, 0), NULL, 10));
		if (sqlite3_step(st) != SQLITE_DONE) {
			g_warning("plant: cannot store central review %s in %s: %s",
				  PQgetvalue(res, i, 0), f->db_path, sqlite3_errmsg(f->wr));
			goto rollback;
		}
		pulled += sqlite3_changes(f->wr);
	}
	if (sqlite3_exec(f->wr, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		goto rollback;
	f->central_review_hw = g_ascii_strtoll(PQgetvalue(res, n - 1, 0), NULL, 10);
	g_mutex_lock(&f->lock);
	f->stats.reviews_pulled += (uint64_t)pulled;
	g_mutex_unlock(&f->lock);
	goto done;
rollback:
	sqlite3_exec(f->wr, "ROLLBACK", NULL, NULL, NULL);
done:
	sqlite3_finalize(st);
	PQclear(res);
	return n;
}

/* Opens the local log's two connections at db_path and reads what the
 * forwarder keeps there: the central reviews already pulled, the log's
 * identity (made the first time it is forwarded), the id bases, the
 * inspections marked as read. 0, or -1 with *err set and nothing open. */
static int open_local(plant_forwarder *f, char **err)
{
	int64_t pulled = 0;
	char *v;

	if (sqlite3_open_v2(f->db_path, &f->rd, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
	    sqlite3_open_v2(f->db_path, &f->wr, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
		db__set_error(err, "cannot open %s for forwarding: %s", f->db_path,
			      sqlite3_errmsg(f->rd && !f->wr ? f->rd : f->wr));
		goto fail;
	}
	sqlite3_busy_timeout(f->rd, LOCAL_BUSY_MS);
	sqlite3_busy_timeout(f->wr, LOCAL_BUSY_MS);
	if (local_int(f->rd, "SELECT max(central_id) FROM reviews", 0, &pulled) != SQLITE_OK) {
		db__set_error(err, "cannot read %s for forwarding: %s", f->db_path,
			      sqlite3_errmsg(f->rd));
		goto fail;
	}
	f->central_review_hw = pulled;
	g_free(f->log_id);
	f->log_id = meta_get(f->rd, "plant_log_id");
	if (!f->log_id) {
		f->log_id = g_uuid_string_random();
		if (meta_set(f, "plant_log_id", f->log_id) != SQLITE_OK) {
			db__set_error(err, "cannot write %s: %s", f->db_path, sqlite3_errmsg(f->wr));
			goto fail;
		}
	}
	for (int t = 0; t < PLANT_NTABLES; t++) {
		char key[48];

		snprintf(key, sizeof(key), "plant_base_%s", tables[t].name);
		v = meta_get(f->rd, key);
		f->base[t] = v ? g_ascii_strtoll(v, NULL, 10) : 0;
		g_free(v);
	}
	v = meta_get(f->rd, "plant_read_upto");
	f->read_upto = v ? g_ascii_strtoll(v, NULL, 10) : 0;
	g_free(v);
	return 0;
fail:
	sqlite3_close(f->rd);
	sqlite3_close(f->wr);
	f->rd = f->wr = NULL;
	return -1;
}

/* ---- the thread ---- */

static void link_lost(plant_forwarder *f, int code, const char *why)
{
	PQfinish(f->pg);
	f->pg = NULL;
	g_hash_table_remove_all(f->months);
	set_last_error(f, why);
	g_mutex_lock(&f->lock);
	f->stats.connected = 0;
	f->stats.link_failures++;
	f->stats.schema_newer = code == PLANT_ENEWER;
	g_mutex_unlock(&f->lock);
	/* Once per outage, however many attempts it takes. */
	if (code == PLANT_ENEWER) {
		if (!f->newer_logged)
			local_event(f, "plant-schema-newer", "%s", why);
		f->newer_logged = true;
	} else if (!f->outage_logged) {
		local_event(f, "plant-link-down", "not forwarding to the plant database until it "
			    "answers again; rows wait in the local log: %s", why);
		f->outage_logged = true;
		f->outage_since_us = vigil_wall_us();
	}
}

static void link_up(plant_forwarder *f)
{
	g_mutex_lock(&f->lock);
	f->stats.connected = 1;
	f->stats.schema_newer = 0;
	g_mutex_unlock(&f->lock);
	if (f->outage_logged || f->newer_logged)
		local_event(f, "plant-link-up", "forwarding to the plant database again (%s) after "
			    "%.0f s", f->masked, (vigil_wall_us() - f->outage_since_us) / 1e6);
	else
		g_message("plant: forwarding to %s as %s/%s/%s", f->masked, f->site, f->line,
			  f->station);
	f->outage_logged = f->newer_logged = false;
}

/* Waits up to ms for a stop; true when asked to stop. */
static bool wait_stop(plant_forwarder *f, int64_t ms)
{
	int64_t end = g_get_monotonic_time() + ms * 1000;
	bool stop;

	g_mutex_lock(&f->lock);
	while (!f->stop && g_cond_wait_until(&f->wake, &f->lock, end))
		;
	stop = f->stop;
	g_mutex_unlock(&f->lock);
	return stop;
}

/* vigild's writer follows the log's path when its file is deleted or
 * moved (db/db.h, db_check_path); the forwarder's connections follow it
 * too, or they would read a file no longer written and write into one
 * nobody reads. They move once a log is ready at the path (its schema
 * made, so the writer is in it):
 *   - the same log written back after a delete (the same plant_log_id):
 *     taken up where the forwarder was. Inspections it sent after the copy
 *     was made may have changed in the copy since without the change being
 *     recorded (the copy's plant_read_upto is older): they are recorded as
 *     changed, to go up again;
 *   - another log (a fresh one after a move): first every row of the moved
 *     file goes up (with the link up; meanwhile the fresh log's rows wait),
 *     then the fresh log is forwarded as a log the plant has not heard from
 *     (read_high_water: its rows continue after the station's). */
static void follow_local(plant_forwarder *f)
{
	sqlite3 *old_rd = f->rd, *old_wr = f->wr, *probe = NULL;
	int64_t version = 0, old_base[PLANT_NTABLES];
	char *old_id = NULL, *id = NULL, *err = NULL;
	bool same;
	int moved = 0, rc;

	if (sqlite3_file_control(f->rd, "main", SQLITE_FCNTL_HAS_MOVED, &moved) != SQLITE_OK ||
	    !moved)
		return;
	if (sqlite3_open_v2(f->db_path, &probe, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
	    local_int(probe, "PRAGMA user_version", 0, &version) != SQLITE_OK ||
	    version != db__schema_version())
		goto out;   /* not ready yet: the writer follows within a second or so */
	id = meta_get(probe, "plant_log_id");
	same = id && strcmp(id, f->log_id) == 0;
	if (!same) {
		if (!f->pg)
			goto out;
		rc = forward_batch(f, false, &err);
		if (rc == 0)
			rc = forward_changes(f, &err);
		if (rc < 0)
			link_lost(f, rc, err);
		if (rc != 0)
			goto out;   /* more of the moved file to send, or the link away */
	}
	old_id = g_strdup(f->log_id);
	memcpy(old_base, f->base, sizeof old_base);
	f->rd = f->wr = NULL;
	if (open_local(f, &err) < 0) {
		f->rd = old_rd;
		f->wr = old_wr;
		g_free(f->log_id);
		f->log_id = g_steal_pointer(&old_id);
		memcpy(f->base, old_base, sizeof old_base);
		if (!f->local_warned)
			g_warning("plant: cannot follow %s to its new file: %s", f->db_path, err);
		f->local_warned = true;
		goto out;
	}
	sqlite3_close(old_rd);
	sqlite3_close(old_wr);
	if (same) {
		char *sql = g_strdup_printf("INSERT INTO plant_changed (inspection_id) SELECT id FROM"
					    " inspections WHERE id > %" PRId64 " AND id <= %" PRId64,
					    f->read_upto, f->hw[PLANT_INSPECTIONS]);

		if (f->hw_known && f->hw[PLANT_INSPECTIONS] > f->read_upto)
			sqlite3_exec(f->wr, sql, NULL, NULL, NULL);
		g_free(sql);
		g_message("plant: %s was written back after a delete; forwarding goes on in it",
			  f->db_path);
	} else {
		f->hw_known = false;
		memset(f->hw, 0, sizeof f->hw);
		if (f->pg && (rc = read_high_water(f, &err)) < 0)
			link_lost(f, rc, err);
		g_message("plant: every row of the moved log went up; forwarding goes on in the "
			  "fresh log at %s", f->db_path);
	}
out:
	sqlite3_close(probe);
	g_free(id);
	g_free(old_id);
	free(err);
}

static gpointer forward_thread(gpointer data)
{
	plant_forwarder *f = data;
	int64_t next_try_us = 0, drain_end_us = 0;
	int backoff_s = 1;

	for (;;) {
		bool stop, drain;
		int64_t now = g_get_monotonic_time();
		int sent = 0;
		char *err = NULL;

		g_mutex_lock(&f->lock);
		stop = f->stop;
		drain = f->drain;
		g_mutex_unlock(&f->lock);
		if (stop) {
			if (!drain)
				break;
			if (!drain_end_us)
				drain_end_us = now + (int64_t)f->opt.drain_s * G_USEC_PER_SEC;
			if (now >= drain_end_us) {
				g_warning("plant: stopping with rows not forwarded (drain_s %d "
					  "ran out); they go at the next start", f->opt.drain_s);
				break;
			}
		}
		if (!f->pg && (now >= next_try_us || stop)) {
			int rc = connect_central(f, &err);

			if (rc < 0) {
				link_lost(f, rc, err);
				next_try_us = now + (int64_t)backoff_s * G_USEC_PER_SEC;
				backoff_s = MIN(backoff_s * 2, f->opt.retry_max_s);
			} else {
				backoff_s = 1;
				link_up(f);
			}
			g_clear_pointer(&err, free);
		}
		follow_local(f);
		if (f->pg) {
			sent = forward_batch(f, !stop, &err);
			if (sent >= 0 && forward_changes(f, &err) < 0)
				sent = PLANT_ELINK;
			if (sent >= 0 && pull_reviews(f, &err) < 0)
				sent = PLANT_ELINK;
			if (sent < 0) {
				link_lost(f, sent, err);
				next_try_us = now + (int64_t)backoff_s * G_USEC_PER_SEC;
				backoff_s = MIN(backoff_s * 2, f->opt.retry_max_s);
			}
			g_clear_pointer(&err, free);
		}
		refresh_backlog(f);
		if (stop && f->pg && sent == 0)
			break;          /* drained */
		/* Draining with the link down (one attempt failed, now or at
		 * the stop): the rows wait for the next start rather than
		 * keeping vigild from stopping. */
		if (stop && !f->pg) {
			g_message("plant: the plant database is away; rows not forwarded go at the "
				  "next start");
			break;
		}
		if (sent > 0)
			continue;
		if (f->pg)
			wait_stop(f, POLL_MS);
		else
			wait_stop(f, MIN(POLL_MS, MAX((next_try_us - now) / 1000, 1)));
	}
	return NULL;
}

/* ---- life cycle ---- */

static void forwarder_destroy(plant_forwarder *f)
{
	PQfinish(f->pg);
	sqlite3_close(f->rd);
	sqlite3_close(f->wr);
	if (f->months)
		g_hash_table_destroy(f->months);
	g_mutex_clear(&f->lock);
	g_cond_clear(&f->wake);
	g_free(f->db_path);
	g_free(f->conninfo);
	g_free(f->passfile);
	g_free(f->site);
	g_free(f->line);
	g_free(f->station);
	free(f->masked);
	g_free(f->model_version);
	g_free(f->log_id);
	g_free(f);
}

plant_forwarder *plant_forwarder_new(const char *db_path, const struct plant_options *opt,
				     char **err)
{
	plant_forwarder *f;

	if (!db_path || !opt || !opt->conninfo || !opt->site || !opt->line || !opt->station) {
		db__set_error(err, "plant forwarder: missing settings");
		return NULL;
	}
	f = g_new0(plant_forwarder, 1);
	g_mutex_init(&f->lock);
	g_cond_init(&f->wake);
	f->db_path = g_strdup(db_path);
	f->opt = *opt;
	f->opt.conninfo = f->conninfo = g_strdup(opt->conninfo);
	f->opt.passfile = f->passfile = g_strdup(opt->passfile);
	f->opt.site = f->site = g_strdup(opt->site);
	f->opt.line = f->line = g_strdup(opt->line);
	f->opt.station = f->station = g_strdup(opt->station);
	if (f->opt.batch <= 0)
		f->opt.batch = 500;
	if (f->opt.retry_max_s <= 0)
		f->opt.retry_max_s = 30;
	f->masked = plant_mask_conninfo(opt->conninfo);
	f->months = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, NULL);
	if (open_local(f, err) < 0)
		goto fail;
	refresh_backlog(f);
	f->thread = g_thread_new("plant", forward_thread, f);
	return f;
fail:
	forwarder_destroy(f);
	return NULL;
}

void plant_forwarder_get_stats(plant_forwarder *f, struct plant_stats *out)
{
	if (!f) {
		memset(out, 0, sizeof *out);
		return;
	}
	g_mutex_lock(&f->lock);
	*out = f->stats;
	g_mutex_unlock(&f->lock);
}

void plant_forwarder_free(plant_forwarder *f, int drain)
{
	if (!f)
		return;
	g_mutex_lock(&f->lock);
	f->stop = true;
	f->drain = drain && f->opt.drain_s > 0;
	g_cond_signal(&f->wake);
	g_mutex_unlock(&f->lock);
	g_thread_join(f->thread);
	forwarder_destroy(f);
}
