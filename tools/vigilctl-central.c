/* vigilctl --central: the same QA questions over the plant's central
 * PostgreSQL (docs/plant-schema.md), where every station's forwarder
 * copies its log. One connection per run, one thread.
 *
 *   vigilctl --central CONNINFO list     [filters] [--site S] [--line L] [--station ST]
 *   vigilctl --central CONNINFO show     SITE/LINE/STATION/LOCAL_ID
 *   vigilctl --central CONNINFO review   SITE/LINE/STATION/LOCAL_ID
 *                                        (--confirm | --overrule V) [--note] [--reviewer]
 *                                        [--defect-type T]
 *   vigilctl --central CONNINFO export   [filters] [--out CSV]
 *   vigilctl --central CONNINFO stations [--site S] [--line L] [--station ST]
 *   vigilctl --central CONNINFO upgrade  applies the central schema's migrations
 *
 * A row is named by its station's ids and its id in that station's log,
 * the key the forwarder writes it under; list prints that name first.
 * Every libpq failure is said once, here, as one line naming the server
 * (host, port, database, user) and never the password. */
#include <errno.h>
#include <glib.h>
#include <json-glib/json-glib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "db/plant.h"
#include "tools/vigilctl-private.h"

/* Says why a libpq call failed, on one line: which server, and msg (NULL:
 * libpq's message) with its newlines folded (a connection failure lists
 * one line per address tried). */
static void central_fail(PGconn *conn, const char *msg, const char *what)
{
	const char *host = conn ? PQhost(conn) : NULL;
	const char *port = conn ? PQport(conn) : NULL;
	const char *db = conn ? PQdb(conn) : NULL;
	const char *user = conn ? PQuser(conn) : NULL;
	char *line;

	if (!msg || !*msg)
		msg = conn ? PQerrorMessage(conn) : "out of memory";
	line = g_strstrip(g_strdelimit(g_strdup(msg), "\n\t", ' '));
	fprintf(stderr, "vigilctl: the plant database (host %s port %s database %s user %s): "
		"%s: %s\n", host && *host ? host : "(default)", port && *port ? port : "(default)",
		db && *db ? db : "(default)", user && *user ? user : "(default)", what, line);
	g_free(line);
}

/* Runs one statement with text parameters (NULL: SQL NULL); the result, or
 * NULL with the failure said. The caller PQclear()s it. */
static PGresult *central_query(PGconn *conn, const char *sql, int n, const char *const *params,
			       const char *what)
{
	PGresult *res = PQexecParams(conn, sql, n, NULL, params, NULL, NULL, 0);
	ExecStatusType st = PQresultStatus(res);

	if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
		/* The server's primary message alone: its detail lines ("LINE
		 * 1:" and a caret under the statement) mean nothing folded. */
		central_fail(conn, PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY), what);
		PQclear(res);
		return NULL;
	}
	return res;
}

/* Connects and checks the database holds a central schema this vigilctl
 * can read: the connection, or NULL with the reason said. */
static PGconn *central_connect(const char *conninfo)
{
	PGconn *conn = PQconnectdb(conninfo);
	PGresult *res;
	long version;

	if (PQstatus(conn) != CONNECTION_OK) {
		central_fail(conn, NULL, "cannot connect");
		PQfinish(conn);
		return NULL;
	}
	/* Two statements: a query naming a missing table fails as a whole. */
	res = central_query(conn, "SELECT to_regclass('vigil_schema') IS NOT NULL", 0, NULL,
			    "cannot read the central schema version");
	if (res && strcmp(PQgetvalue(res, 0, 0), "t") == 0) {
		PQclear(res);
		res = central_query(conn, "SELECT coalesce(max(version), 0) FROM vigil_schema", 0,
				    NULL, "cannot read the central schema version");
		version = res ? strtol(PQgetvalue(res, 0, 0), NULL, 10) : 0;
	} else {
		version = 0;
	}
	if (!res) {
		PQfinish(conn);
		return NULL;
	}
	PQclear(res);
	if (version == 0) {
		central_fail(conn, NULL, "no Vigil central schema here (no station has forwarded "
			     "to it yet; `vigilctl --central CONNINFO upgrade` creates it)");
		PQfinish(conn);
		return NULL;
	}
	if (version > plant_schema_version()) {
		fprintf(stderr, "vigilctl: the central schema version %ld is newer than the version "
			"%d this vigilctl knows: upgrade Vigil here\n", version,
			plant_schema_version());
		PQfinish(conn);
		return NULL;
	}
	return conn;
}

/* ---- filters ---- */

/* The query's parameters, as text (NULL: no condition), in the order the
 * WHERE clause of INSPECTIONS_WHERE numbers them. */
enum { P_SITE, P_LINE, P_STATION, P_SINCE, P_UNTIL, P_VERDICT, P_CLASS, P_PART, P_MODEL, P_JOB,
       P_MIN, P_MAX, P_REVIEWED, P_LIMIT, P_COUNT };

struct central_filter {
	char *p[P_COUNT];
};

static void central_filter_clear(struct central_filter *cf)
{
	for (int i = 0; i < P_COUNT; i++)
		g_free(cf->p[i]);
}

/* The options into query parameters, checked as for the local log (and
 * through the same vigilctl__build_filter for times and numbers); -1 with
 * a message on stderr. */
static int central_filter_build(const struct opts *o, struct central_filter *cf)
{
	struct db_filter f;

	memset(cf, 0, sizeof(*cf));
	if (o->shift) {
		/* A shift plan is a station's (its log records it): the plant
		 * has none of its own. */
		fprintf(stderr, "vigilctl --central: --shift names a station's shift; give --since "
			"and --until\n");
		return -1;
	}
	/* The same rules as for a station's log (db_filter_set). */
	if (vigilctl__build_filter(o, &f) < 0)
		return -1;
	if ((o->site && !*o->site) || (o->line && !*o->line)) {
		fprintf(stderr, "vigilctl: --%s is empty\n", o->site && !*o->site ? "site" : "line");
		return -1;
	}
	cf->p[P_SITE] = g_strdup(o->site);
	cf->p[P_LINE] = g_strdup(o->line);
	cf->p[P_STATION] = g_strdup(f.station);
	if (o->since)
		cf->p[P_SINCE] = g_strdup_printf("%" G_GINT64_FORMAT, f.since_us);
	if (o->until)
		cf->p[P_UNTIL] = g_strdup_printf("%" G_GINT64_FORMAT, f.until_us);
	cf->p[P_VERDICT] = g_strdup(f.verdict);
	cf->p[P_CLASS] = g_strdup(f.defect_class);
	if (f.part_id >= 0)
		cf->p[P_PART] = g_strdup_printf("%" G_GINT64_FORMAT, f.part_id);
	cf->p[P_MODEL] = g_strdup(f.model_version);
	if (f.job >= 0)
		cf->p[P_JOB] = g_strdup_printf("%" G_GINT64_FORMAT, f.job);
	if (!isnan(f.min_score))
		cf->p[P_MIN] = g_strdup_printf("%.17g", f.min_score);
	if (!isnan(f.max_score))
		cf->p[P_MAX] = g_strdup_printf("%.17g", f.max_score);
	if (f.reviewed >= 0)
		cf->p[P_REVIEWED] = g_strdup(f.reviewed ? "true" : "false");
	if (f.limit > 0)
		cf->p[P_LIMIT] = g_strdup_printf("%" G_GINT64_FORMAT, f.limit);
	return 0;
}

/* Each inspection with its latest review (station's or central), newest
 * `limit` first, then put back oldest first as the local list is. */
static const char list_sql[] =
	"SELECT * FROM (SELECT i.site, i.line, i.station, i.local_id, " PLANT_T_TO_US("i.t") " AS t_us,"
	"  i.part_id, i.verdict, i.defect_class, i.flags, i.score, i.vision_score,"
	"  i.signal_score, i.latency_ms, i.model_version, i.job, r.decision, r.verdict,"
	"  r.note, r.reviewer, r.origin, r.defect_type, i.t"
	" FROM inspections i"
	PLANT_SQL_LATEST_REVIEW("decision, verdict, note, reviewer, origin, defect_type")
	" WHERE ($1::text IS NULL OR i.site = $1) AND ($2::text IS NULL OR i.line = $2)"
	"  AND ($3::text IS NULL OR i.station = $3)"
	"  AND ($4::bigint IS NULL OR i.t >= " PLANT_US_TO_T("$4") ")"
	"  AND ($5::bigint IS NULL OR i.t < " PLANT_US_TO_T("$5") ")"
	"  AND ($6::text IS NULL OR i.verdict = $6) AND ($7::text IS NULL OR i.defect_class = $7)"
	"  AND ($8::bigint IS NULL OR i.part_id = $8)"
	"  AND ($9::text IS NULL OR i.model_version = $9) AND ($10::integer IS NULL OR i.job = $10)"
	"  AND ($11::float8 IS NULL OR i.score >= $11) AND ($12::float8 IS NULL OR i.score <= $12)"
	"  AND ($13::boolean IS NULL OR (r.decision IS NOT NULL) = $13)"
	" ORDER BY i.t DESC, i.site, i.line, i.station, i.local_id DESC LIMIT $14::bigint) x"
	" ORDER BY x.t, x.site, x.line, x.station, x.local_id";

enum { L_SITE, L_LINE, L_STATION, L_LOCAL_ID, L_T, L_PART, L_VERDICT, L_CLASS, L_FLAGS, L_SCORE,
       L_VISION, L_SIGNAL, L_LATENCY, L_MODEL, L_JOB, L_REVIEW, L_REVIEW_VERDICT, L_NOTE,
       L_REVIEWER, L_ORIGIN, L_DEFECT_TYPE };

/* The CSV and JSON names of the columns above, in order. */
static const char *const list_names[] = {
	"site", "line", "station", "local_id", "time", "part_id", "verdict", "class", "flags",
	"score", "vision_score", "signal_score", "latency_ms", "model_version", "job", "review",
	"review_verdict", "review_note", "reviewer", "review_origin", "defect_type", NULL
};
/* Which of them are numbers in JSON (the others strings). */
static gboolean list_is_number(int col)
{
	return col == L_LOCAL_ID || col == L_PART || col == L_FLAGS || col == L_JOB ||
	       (col >= L_SCORE && col <= L_LATENCY);
}

static const char *value(const PGresult *res, int row, int col)
{
	return PQgetisnull(res, row, col) ? NULL : PQgetvalue(res, row, col);
}

static double number(const PGresult *res, int row, int col)
{
	return PQgetisnull(res, row, col) ? NAN : g_ascii_strtod(PQgetvalue(res, row, col), NULL);
}

static char *row_time(const PGresult *res, int row, int col)
{
	return vigilctl__wall_text(g_ascii_strtoll(PQgetvalue(res, row, col), NULL, 10));
}

static void print_list_json(FILE *out, const PGresult *res)
{
	JsonBuilder *b = json_builder_new();
	JsonGenerator *gen = json_generator_new();
	int n = PQntuples(res);

	fputs("[", out);
	for (int i = 0; i < n; i++) {
		JsonNode *root;
		char *text, *when = row_time(res, i, L_T);

		json_builder_begin_object(b);
		for (int c = 0; list_names[c]; c++) {
			if (c == L_T)
				vigilctl__add_string(b, list_names[c], when);
			else if (!list_is_number(c))
				vigilctl__add_string(b, list_names[c], value(res, i, c));
			else if (c == L_LOCAL_ID || c == L_PART || c == L_FLAGS || c == L_JOB) {
				json_builder_set_member_name(b, list_names[c]);
				if (PQgetisnull(res, i, c))
					json_builder_add_null_value(b);
				else
					json_builder_add_int_value(b, g_ascii_strtoll(PQgetvalue(res, i, c),
										     NULL, 10));
			} else {
				vigilctl__add_number(b, list_names[c], number(res, i, c));
			}
		}
		json_builder_end_object(b);
		root = json_builder_get_root(b);
		json_builder_reset(b);
		json_generator_set_root(gen, root);
		text = json_generator_to_data(gen, NULL);
		fprintf(out, "%s\n  %s", i ? "," : "", text);
		g_free(text);
		g_free(when);
		json_node_unref(root);
	}
	fputs(n ? "\n]\n" : "]\n", out);
	g_object_unref(gen);
	g_object_unref(b);
}

static void print_list_csv(FILE *out, const PGresult *res)
{
	for (int c = 0; list_names[c]; c++)
		fprintf(out, "%s%s", c ? "," : "", list_names[c]);
	fputc('\n', out);
	for (int i = 0; i < PQntuples(res); i++) {
		for (int c = 0; list_names[c]; c++) {
			if (c)
				fputc(',', out);
			if (c == L_T) {
				char *when = row_time(res, i, L_T);

				fputs(when, out);
				g_free(when);
			} else {
				vigilctl__csv_field(out, value(res, i, c));
			}
		}
		fputc('\n', out);
	}
}

static void print_list_table(FILE *out, const PGresult *res)
{
	fprintf(out, "%-30s %-8s %-32s %-9s %-18s %6s %s\n", "site/line/station/id", "part", "time",
		"verdict", "class", "score", "review");
	for (int i = 0; i < PQntuples(res); i++) {
		char *key = g_strdup_printf("%s/%s/%s/%s", PQgetvalue(res, i, L_SITE),
					    PQgetvalue(res, i, L_LINE), PQgetvalue(res, i, L_STATION),
					    PQgetvalue(res, i, L_LOCAL_ID));
		char *when = row_time(res, i, L_T);
		const char *review = value(res, i, L_REVIEW);

		fprintf(out, "%-30s %-8s %-32s %-9s %-18s %6.3f %s%s%s%s%s\n", key,
			PQgetvalue(res, i, L_PART), when, PQgetvalue(res, i, L_VERDICT),
			PQgetvalue(res, i, L_CLASS), number(res, i, L_SCORE), review ? review : "",
			review ? " -> " : "", review ? PQgetvalue(res, i, L_REVIEW_VERDICT) : "",
			review ? " by " : "", review ? PQgetvalue(res, i, L_ORIGIN) : "");
		g_free(key);
		g_free(when);
	}
	fprintf(out, "%d inspection(s)\n", PQntuples(res));
}

/* list's and export's options, read before connecting so that a bad value
 * is refused (2) whatever the server does; cf cleared by the caller. */
static int list_options(const struct opts *o, gboolean export, enum format *fmt,
			struct central_filter *cf)
{
	memset(cf, 0, sizeof(*cf));
	*fmt = FMT_CSV;
	if (!export && vigilctl__parse_format("list", o->format, fmt) < 0)
		return -EINVAL;
	if (export && o->format && strcmp(o->format, "csv") != 0) {
		fprintf(stderr, "vigilctl export: --central exports CSV only\n");
		return -EINVAL;
	}
	return central_filter_build(o, cf) < 0 ? -EINVAL : 0;
}

static int cmd_list(PGconn *conn, const struct opts *o, gboolean export, enum format fmt,
		    const struct central_filter *cf)
{
	PGresult *res;
	FILE *out = stdout;
	int rc = 1;

	res = central_query(conn, list_sql, P_COUNT, (const char *const *)cf->p,
			    "cannot list the inspections");
	if (!res)
		return 1;
	if (export && o->out && !(out = fopen(o->out, "w"))) {
		fprintf(stderr, "vigilctl export: cannot write %s: %s\n", o->out, g_strerror(errno));
		PQclear(res);
		return 1;
	}
	if (fmt == FMT_TABLE)
		print_list_table(out, res);
	else if (fmt == FMT_CSV)
		print_list_csv(out, res);
	else
		print_list_json(out, res);
	rc = fflush(out) == 0 ? 0 : 1;
	if (out != stdout && fclose(out) != 0)
		rc = 1;
	if (rc)
		fprintf(stderr, "vigilctl: write failed: %s\n", g_strerror(errno));
	else if (export)
		fprintf(stderr, "vigilctl export: %d inspection(s)%s%s\n", PQntuples(res),
			o->out ? " to " : "", o->out ? o->out : "");
	PQclear(res);
	return rc;
}

/* ---- show and review: one row by its name ---- */

/* SITE/LINE/STATION/LOCAL_ID into key[0..3]; the site may hold '/', the
 * other ids are cut from the right. FALSE with a message on stderr. */
static gboolean parse_key(const char *cmd, const char *text, char *key[4])
{
	char *copy = g_strdup(text), *p;
	guint64 id;

	memset(key, 0, 4 * sizeof(*key));
	for (int i = 3; i > 0; i--) {
		if (!(p = strrchr(copy, '/')) || !p[1])
			goto bad;
		key[i] = g_strdup(p + 1);
		*p = '\0';
	}
	if (!*copy || !g_ascii_string_to_unsigned(key[3], 10, 0, G_MAXINT64, &id, NULL))
		goto bad;
	key[0] = copy;
	return TRUE;
bad:
	fprintf(stderr, "vigilctl %s: '%s' is not SITE/LINE/STATION/LOCAL_ID (the first column of "
		"`vigilctl --central ... list`)\n", cmd, text);
	g_free(copy);
	for (int i = 0; i < 4; i++)
		g_clear_pointer(&key[i], g_free);
	return FALSE;
}

static void key_clear(char *key[4])
{
	for (int i = 0; i < 4; i++)
		g_free(key[i]);
}

static int cmd_show(PGconn *conn, const char *id)
{
	static const char row_sql[] =
		"SELECT " PLANT_T_TO_US("t") " AS t_us, * FROM inspections"
		" WHERE site = $1 AND line = $2 AND station = $3 AND local_id = $4::bigint";
	static const char reviews_sql[] =
		"SELECT id, origin, " PLANT_T_TO_US("t") ", decision, verdict, reviewer, defect_type, note"
		" FROM reviews WHERE site = $1 AND line = $2 AND station = $3"
		" AND inspection_local_id = $4::bigint ORDER BY t, id";
	char *key[4];
	PGresult *res;

	if (!parse_key("show", id, key))
		return 2;
	res = central_query(conn, row_sql, 4, (const char *const *)key, "cannot read the inspection");
	if (res && PQntuples(res) == 0) {
		fprintf(stderr, "vigilctl show: no inspection %s in the plant database\n", id);
		PQclear(res);
		key_clear(key);
		return 1;
	}
	if (!res) {
		key_clear(key);
		return 1;
	}
	for (int c = 1; c < PQnfields(res); c++) {
		char *when = NULL;
		const char *v = value(res, 0, c);

		if (strcmp(PQfname(res, c), "t") == 0)
			v = when = row_time(res, 0, 0);
		printf("%-20s %s\n", PQfname(res, c), v ? v : "-");
		g_free(when);
	}
	PQclear(res);
	res = central_query(conn, reviews_sql, 4, (const char *const *)key, "cannot read its reviews");
	key_clear(key);
	if (!res)
		return 1;
	printf("reviews              %d\n", PQntuples(res));
	for (int i = 0; i < PQntuples(res); i++) {
		char *when = row_time(res, i, 2);
		const char *who = value(res, i, 5), *type = value(res, i, 6), *note = value(res, i, 7);

		printf("  #%s %s %s %s -> %s by %s%s%s%s%s\n", PQgetvalue(res, i, 0),
		       PQgetvalue(res, i, 1), when, PQgetvalue(res, i, 3), PQgetvalue(res, i, 4),
		       who ? who : "-", type ? " type " : "", type ? type : "", note ? ": " : "",
		       note ? note : "");
		g_free(when);
	}
	PQclear(res);
	return 0;
}

/* A central review (origin 'central', no local id) of one inspection; the
 * station's forwarder pulls it into its own log. */
static int cmd_review(PGconn *conn, const struct opts *o, const char *id)
{
	struct plant_review r = { 0 };
	struct plant_review_saved saved;
	char *key[4], *err = NULL;
	int rc;

	if (o->confirm == (o->overrule != NULL)) {
		fprintf(stderr, "vigilctl review: give SITE/LINE/STATION/LOCAL_ID and either "
			"--confirm or --overrule accept|reject|marginal\n");
		return 2;
	}
	if (!parse_key("review", id, key))
		return 2;
	r.site = key[0];
	r.line = key[1];
	r.station = key[2];
	r.local_id = g_ascii_strtoll(key[3], NULL, 10);
	r.decision = o->confirm ? "confirm" : "overrule";
	r.verdict = o->overrule;
	r.note = o->note;
	r.reviewer = o->reviewer ? o->reviewer : g_get_user_name();
	r.defect_type = o->defect_type;
	rc = plant_review_insert(conn, &r, &saved, &err);
	key_clear(key);
	if (rc == -EINVAL || rc == -ENOENT)
		fprintf(stderr, "vigilctl review: %s\n", err ? err : "out of memory");
	else if (rc < 0)
		central_fail(conn, err, "cannot save the review");
	else
		printf("%s (part %" G_GINT64_FORMAT "): %s (%s), central review %" G_GINT64_FORMAT
		       "\n", id, saved.part_id, o->confirm ? "confirmed" : "overruled", saved.verdict,
		       saved.id);
	free(err);
	return rc == 0 ? 0 : rc == -EINVAL ? 2 : 1;
}

/* ---- stations ---- */

/* plant_stations_list's columns, named as vigilctl prints them. */
enum { S_SITE = PLANT_STATION_SITE, S_LINE = PLANT_STATION_LINE,
       S_STATION = PLANT_STATION_STATION, S_HOST = PLANT_STATION_HOST,
       S_LAST_SEEN = PLANT_STATION_LAST_SEEN_US, S_BACKLOG = PLANT_STATION_BACKLOG,
       S_LAG = PLANT_STATION_LAG_S, S_MODEL = PLANT_STATION_MODEL_VERSION,
       S_ROWS = PLANT_STATION_ROWS_TODAY, S_YIELD = PLANT_STATION_YIELD_TODAY };
static const char *const station_names[] = {
	"site", "line", "station", "host", "last_seen", "backlog", "lag_s", "model_version",
	"rows_today", "yield_today", NULL
};

static int cmd_stations(PGconn *conn, const struct opts *o, enum format fmt)
{
	PGresult *res = NULL;
	JsonBuilder *b = NULL;
	char *err = NULL;
	int rc;

	if ((rc = plant_stations_list(conn, o->site, o->line, o->station, &res, &err)) < 0) {
		if (rc == -EINVAL)
			fprintf(stderr, "vigilctl stations: %s\n", err ? err : "out of memory");
		else
			central_fail(conn, err, "cannot list the stations");
		rc = rc == -EINVAL ? 2 : 1;
		goto out;
	}
	if (fmt == FMT_TABLE)
		printf("%-24s %-12s %-32s %8s %8s %-16s %6s %7s\n", "site/line/station", "host",
		       "last_seen", "backlog", "lag_s", "model", "today", "yield");
	else if (fmt == FMT_CSV)
		for (int c = 0; station_names[c]; c++)
			printf("%s%s", c ? "," : "", station_names[c]);
	else
		b = json_builder_new();
	if (fmt == FMT_CSV)
		putchar('\n');
	if (b)
		json_builder_begin_array(b);
	for (int i = 0; i < PQntuples(res); i++) {
		char *seen = row_time(res, i, S_LAST_SEEN);

		if (fmt == FMT_TABLE) {
			char *key = g_strdup_printf("%s/%s/%s", PQgetvalue(res, i, S_SITE),
						    PQgetvalue(res, i, S_LINE),
						    PQgetvalue(res, i, S_STATION));
			const char *backlog = value(res, i, S_BACKLOG), *host = value(res, i, S_HOST);
			const char *model = value(res, i, S_MODEL);
			char yield[16] = "-", lag[24] = "-";

			if (!PQgetisnull(res, i, S_YIELD))
				g_snprintf(yield, sizeof(yield), "%.1f%%", 100 * number(res, i, S_YIELD));
			if (!PQgetisnull(res, i, S_LAG))
				g_snprintf(lag, sizeof(lag), "%.1f", number(res, i, S_LAG));
			printf("%-24s %-12s %-32s %8s %8s %-16s %6s %7s\n", key, host ? host : "-",
			       seen, backlog ? backlog : "-", lag,
			       model ? model : "-", PQgetvalue(res, i, S_ROWS), yield);
			g_free(key);
		} else if (fmt == FMT_CSV) {
			for (int c = 0; station_names[c]; c++) {
				if (c)
					putchar(',');
				vigilctl__csv_field(stdout, c == S_LAST_SEEN ? seen : value(res, i, c));
			}
			putchar('\n');
		} else {
			json_builder_begin_object(b);
			for (int c = 0; station_names[c]; c++) {
				if (c == S_LAST_SEEN)
					vigilctl__add_string(b, station_names[c], seen);
				else if (c < S_LAST_SEEN || c == S_MODEL)
					vigilctl__add_string(b, station_names[c], value(res, i, c));
				else
					vigilctl__add_number(b, station_names[c], number(res, i, c));
			}
			json_builder_end_object(b);
		}
		g_free(seen);
	}
	if (b) {
		json_builder_end_array(b);
		vigilctl__print_json(b);
		g_object_unref(b);
	} else if (fmt == FMT_TABLE) {
		printf("%d station(s)\n", PQntuples(res));
	}
	rc = 0;
out:
	PQclear(res);
	free(err);
	return rc;
}

/* ---- upgrade ---- */

static int cmd_upgrade(const char *conninfo)
{
	char *err = NULL;

	if (plant_migrate(conninfo, &err) < 0) {
		fprintf(stderr, "vigilctl: %s\n", err ? err : "cannot migrate the central schema");
		free(err);
		return 1;
	}
	printf("the plant database: central schema at version %d\n", plant_schema_version());
	return 0;
}

int vigilctl__main_central(const struct opts *o, int argc, char **argv)
{
	static const char usage[] =
		"usage: vigilctl --central CONNINFO list|export|stations|upgrade [options]\n"
		"       vigilctl --central CONNINFO show|review SITE/LINE/STATION/LOCAL_ID [options]\n";
	const char *cmd = argc >= 2 ? argv[1] : NULL;
	gboolean with_id = cmd && (strcmp(cmd, "show") == 0 || strcmp(cmd, "review") == 0);
	struct central_filter cf = { 0 };
	enum format fmt = FMT_CSV;
	PGconn *conn;
	int rc;

	if (!cmd || argc != (with_id ? 3 : 2)) {
		fputs(usage, stderr);
		return 2;
	}
	if (o->db) {
		fprintf(stderr, "vigilctl: --db and --central name two different logs: give one\n");
		return 2;
	}
	if (strcmp(cmd, "upgrade") == 0)
		return cmd_upgrade(o->central);
	if (!with_id && strcmp(cmd, "list") != 0 && strcmp(cmd, "export") != 0 &&
	    strcmp(cmd, "stations") != 0) {
		fprintf(stderr, "vigilctl --central: unknown command '%s' (list, show, review, export, "
			"stations, upgrade)\n", cmd);
		return 2;
	}
	/* Every value is read before connecting: a bad one is a usage error
	 * (2), not hidden behind a server that cannot be reached (1). */
	if (strcmp(cmd, "list") == 0 || strcmp(cmd, "export") == 0) {
		if (list_options(o, strcmp(cmd, "export") == 0, &fmt, &cf) < 0) {
			central_filter_clear(&cf);
			return 2;
		}
	} else if (strcmp(cmd, "stations") == 0) {
		if (vigilctl__parse_format("stations", o->format, &fmt) < 0)
			return 2;
		if ((o->site && !*o->site) || (o->line && !*o->line) ||
		    (o->station && !*o->station)) {
			/* Not "every station", which is leaving it out. */
			fprintf(stderr, "vigilctl: --%s is empty\n", o->site && !*o->site ? "site"
				: o->line && !*o->line ? "line" : "station");
			return 2;
		}
	} else {
		char *key[4];

		if (strcmp(cmd, "review") == 0 && o->confirm == (o->overrule != NULL)) {
			fprintf(stderr, "vigilctl review: give SITE/LINE/STATION/LOCAL_ID and "
				"either --confirm or --overrule accept|reject|marginal\n");
			return 2;
		}
		if (!parse_key(cmd, argv[2], key))
			return 2;
		key_clear(key);
	}
	if (!(conn = central_connect(o->central))) {
		central_filter_clear(&cf);
		return 1;
	}
	if (strcmp(cmd, "list") == 0)
		rc = cmd_list(conn, o, FALSE, fmt, &cf);
	else if (strcmp(cmd, "export") == 0)
		rc = cmd_list(conn, o, TRUE, fmt, &cf);
	else if (strcmp(cmd, "stations") == 0)
		rc = cmd_stations(conn, o, fmt);
	else if (strcmp(cmd, "show") == 0)
		rc = cmd_show(conn, argv[2]);
	else
		rc = cmd_review(conn, o, argv[2]);
	PQfinish(conn);
	central_filter_clear(&cf);
	return rc;
}
