/* What people do in the central database (db/plant.h), shared by the
 * review page's Plant view (app/review-plant.c) and vigilctl --central
 * (tools/vigilctl-central.c): a central review of one inspection, and the
 * stations listing. Each front end reads its own input and says a failure
 * its own way; the statements and the checks are here, once. */
#include "db/plant.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>
#include <libpq-fe.h>

#include "core/part.h"
#include "db/plant-private.h"

/* The server's primary message (or libpq's), on one line: the detail
 * lines ("LINE 1:" and a caret under the statement) mean nothing folded. */
static void set_pg_error(char **err, PGconn *conn, const PGresult *res)
{
	const char *m = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	char *line;

	if (!m || !*m)
		m = PQerrorMessage(conn);
	line = plant_pg_text(m);
	db__set_error(err, "%s", line);
	g_free(line);
}

/* Runs sql with text parameters: the rows, or NULL with *err and *code. */
static PGresult *query(PGconn *conn, const char *sql, int n, const char *const *params,
		       int *code, char **err)
{
	PGresult *res = PQexecParams(conn, sql, n, NULL, params, NULL, NULL, 0);
	ExecStatusType st = PQresultStatus(res);

	if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)
		return res;
	set_pg_error(err, conn, res);
	*code = PQstatus(conn) == CONNECTION_OK ? PLANT_ESQL : PLANT_ELINK;
	PQclear(res);
	return NULL;
}

static int id_ok(const char *v)
{
	return v && *v && strlen(v) <= PLANT_MAX_ID;
}

static int verdict_ok(const char *v)
{
	return v && (strcmp(v, "accept") == 0 || strcmp(v, "reject") == 0 ||
		     strcmp(v, "marginal") == 0);
}

int plant_review_check(const struct plant_review *r, char **err)
{
	int confirm = r->decision && strcmp(r->decision, "confirm") == 0;
	const char *note = r->note && *r->note ? r->note : NULL;
	const char *type = r->defect_type && *r->defect_type ? r->defect_type : NULL;

	if (!id_ok(r->site) || !id_ok(r->line) || !id_ok(r->station)) {
		db__set_error(err, "site, line and station are the station's ids (1 to %d bytes)",
			      PLANT_MAX_ID);
		return -EINVAL;
	}
	if (r->local_id < 0) {
		db__set_error(err, "the local id is the row's id in the station's log, not %" PRId64,
			      r->local_id);
		return -EINVAL;
	}
	if (!confirm && (!r->decision || strcmp(r->decision, "overrule") != 0)) {
		db__set_error(err, "a review's decision is confirm or overrule");
		return -EINVAL;
	}
	if (!confirm && !verdict_ok(r->verdict)) {
		db__set_error(err, "an overrule's verdict is accept, reject or marginal");
		return -EINVAL;
	}
	if (note && strlen(note) > PLANT_MAX_NOTE) {
		db__set_error(err, "a review's note is up to %d bytes", PLANT_MAX_NOTE);
		return -EINVAL;
	}
	if (type && !vigil_defect_type_ok(type)) {
		db__set_error(err, "the defect type '%s' is not one plain word (letters, digits, "
			      "_ - ., up to %d)", type, VIGIL_DEFECT_TYPE_MAX);
		return -EINVAL;
	}
	if (!r->reviewer || !*r->reviewer) {
		db__set_error(err, "a review names its reviewer");
		return -EINVAL;
	}
	return 0;
}

int plant_review_insert(PGconn *conn, const struct plant_review *r, struct plant_review_saved *out,
			char **err)
{
	/* Confirming keeps the line's verdict, read in the same statement. An
	 * overrule to the line's own verdict is no review at all (it would
	 * count as overruled, here and in the station's log it is pulled
	 * into): nothing is inserted, as for no such row. */
	static const char sql[] =
		"INSERT INTO reviews (site, line, station, origin, inspection_local_id, part_id,"
		"  decision, verdict, note, reviewer, defect_type)"
		" SELECT site, line, station, 'central', local_id, part_id, $5, coalesce($6, verdict),"
		"  $7, $8, $9 FROM inspections"
		" WHERE site = $1 AND line = $2 AND station = $3 AND local_id = $4::bigint"
		"  AND ($6::text IS NULL OR verdict IS DISTINCT FROM $6)"
		" RETURNING id, verdict, part_id";
	static const char line_sql[] =
		"SELECT verdict FROM inspections"
		" WHERE site = $1 AND line = $2 AND station = $3 AND local_id = $4::bigint";
	int confirm = r->decision && strcmp(r->decision, "confirm") == 0;
	const char *note = r->note && *r->note ? r->note : NULL;
	const char *type = r->defect_type && *r->defect_type ? r->defect_type : NULL;
	char local_id[24];
	const char *params[9];
	PGresult *res;
	int code = 0;

	memset(out, 0, sizeof(*out));
	if ((code = plant_review_check(r, err)) < 0)
		return code;
	snprintf(local_id, sizeof(local_id), "%" PRId64, r->local_id);
	params[0] = r->site;
	params[1] = r->line;
	params[2] = r->station;
	params[3] = local_id;
	params[4] = confirm ? "confirm" : "overrule";
	params[5] = confirm ? NULL : r->verdict;
	params[6] = note;
	params[7] = r->reviewer;
	params[8] = type;
	if (!(res = query(conn, sql, 9, params, &code, err)))
		return code;
	if (PQntuples(res) == 0) {
		/* Which of the two, for the message. */
		PQclear(res);
		if (!(res = query(conn, line_sql, 4, params, &code, err)))
			return code;
		if (PQntuples(res) == 0) {
			db__set_error(err, "no inspection %s/%s/%s/%s in the plant database",
				      r->site, r->line, r->station, local_id);
			code = -ENOENT;
		} else {
			db__set_error(err, "%s/%s/%s/%s: the line judged it %s already; an "
				      "overrule names another verdict (to agree with the line, "
				      "confirm)", r->site, r->line, r->station, local_id,
				      PQgetvalue(res, 0, 0));
			code = -EINVAL;
		}
		PQclear(res);
		return code;
	}
	out->id = g_ascii_strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	g_strlcpy(out->verdict, PQgetvalue(res, 0, 1), sizeof(out->verdict));
	out->part_id = g_ascii_strtoll(PQgetvalue(res, 0, 2), NULL, 10);
	PQclear(res);
	return 0;
}

int plant_stations_list(PGconn *conn, const char *site, const char *line, const char *station,
			PGresult **rows, char **err)
{
	/* Today is since the local midnight of whoever asks (the office's
	 * zone, or the shell's). */
	static const char sql[] =
		"SELECT s.site, s.line, s.station, s.host, " PLANT_T_TO_US("s.last_seen")
		"  AS last_seen_us,"
		"  s.backlog_inspections + s.backlog_events + s.backlog_reviews AS backlog,"
		"  s.lag_s, s.model_version, d.n AS rows_today,"
		"  CASE WHEN d.n > 0 THEN d.accepted::float8 / d.n END AS yield_today"
		" FROM stations s CROSS JOIN LATERAL (SELECT count(*) AS n,"
		"   count(*) FILTER (WHERE verdict = 'accept') AS accepted FROM inspections i"
		"   WHERE i.site = s.site AND i.line = s.line AND i.station = s.station"
		"   AND i.t >= " PLANT_US_TO_T("$4") ") d"
		" WHERE ($1::text IS NULL OR s.site = $1) AND ($2::text IS NULL OR s.line = $2)"
		"  AND ($3::text IS NULL OR s.station = $3)"
		" ORDER BY s.site, s.line, s.station";
	GDateTime *now = g_date_time_new_now_local();
	GDateTime *midnight = g_date_time_new_local(g_date_time_get_year(now),
						    g_date_time_get_month(now),
						    g_date_time_get_day_of_month(now), 0, 0, 0);
	char since[24];
	const char *params[4] = { site && *site ? site : NULL, line && *line ? line : NULL,
				  station && *station ? station : NULL, since };
	int code = 0;

	snprintf(since, sizeof(since), "%" PRId64,
		 (int64_t)g_date_time_to_unix(midnight) * G_USEC_PER_SEC);
	g_date_time_unref(midnight);
	g_date_time_unref(now);
	*rows = NULL;
	for (int i = 0; i < 3; i++)
		if (params[i] && strlen(params[i]) > PLANT_MAX_ID) {
			db__set_error(err, "%s is an id of up to %d bytes",
				      i == 0 ? "site" : i == 1 ? "line" : "station", PLANT_MAX_ID);
			return -EINVAL;
		}
	*rows = query(conn, sql, 4, params, &code, err);
	return *rows ? 0 : code;
}
