/* The central schema in the plant's PostgreSQL: its migrations, kept in
 * vigil_schema(version), and the monthly partitions of the two time series
 * (db/plant-private.h). docs/plant-schema.md describes every table. */
#include "db/plant.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <glib.h>
#include <libpq-fe.h>

#include "db/plant-private.h"

/* Advisory lock keys (pg_advisory_xact_lock takes one bigint), "Vigil"
 * followed by a number so that they stay clear of other applications'. */
#define PLANT_LOCK_SCHEMA INT64_C(0x566967696c000001)
#define PLANT_LOCK_PARTITIONS INT64_C(0x566967696c000002)

/* Central migrations: migrations[i] takes the central database from
 * version i to i + 1, inside the transaction that records the version.
 * Append a step for each new version; never edit a step that has shipped,
 * since plants have run it. Every station's rows carry (site, line,
 * station, local_id): local_id is the row's id in the station's SQLite
 * log, so a row sent twice is the same row (INSERT ... ON CONFLICT DO
 * NOTHING), which is what makes forwarding exactly once. */
static const char *const migrations[] = {
	/* 1: the stations, their inspections and events (partitioned by
	 * month on t, with a DEFAULT partition so that an insert never fails
	 * for a month whose partition is missing), reviews (made at the
	 * station or centrally), escapes and kept media references. The
	 * partition column t is in the primary keys as PostgreSQL requires;
	 * a local row's time never changes, so the key is still one per
	 * local row. */
	"CREATE TABLE stations ("
	"  site text NOT NULL,"
	"  line text NOT NULL,"
	"  station text NOT NULL,"
	"  host text,"
	"  model_version text,"
	"  first_seen timestamptz NOT NULL DEFAULT now(),"
	"  last_seen timestamptz NOT NULL DEFAULT now(),"
	"  last_batch timestamptz,"
	"  backlog_inspections bigint,"
	"  backlog_events bigint,"
	"  backlog_reviews bigint,"
	"  lag_s double precision,"
	"  log_id text,"
	"  PRIMARY KEY (site, line, station)"
	");"
	"CREATE TABLE inspections ("
	"  site text NOT NULL,"
	"  line text NOT NULL,"
	"  station text NOT NULL,"
	"  local_id bigint NOT NULL,"
	"  t timestamptz NOT NULL,"
	"  part_id bigint NOT NULL,"
	"  trigger_counter bigint NOT NULL,"
	"  seq bigint NOT NULL,"
	"  verdict text NOT NULL CHECK (verdict IN ('accept', 'reject', 'marginal')),"
	"  verdict_code integer NOT NULL,"
	"  defect_class text NOT NULL,"
	"  flags bigint NOT NULL,"
	"  score double precision,"
	"  vision_score double precision,"
	"  signal_score double precision,"
	"  latency_ms double precision,"
	"  infer_ms double precision,"
	"  model_version text,"
	"  image_path text,"
	"  model_verdict text,"
	"  model_score double precision,"
	"  job integer,"
	"  local_station text,"
	"  rms_velocity_mm_s double precision,"
	"  iso_zone text,"
	"  rms_accel_g double precision,"
	"  hf_accel_g double precision,"
	"  peak_g double precision,"
	"  crest_factor double precision,"
	"  kurtosis double precision,"
	"  ftf_env double precision,"
	"  bpfo_env double precision,"
	"  bpfi_env double precision,"
	"  bsf_env double precision,"
	"  PRIMARY KEY (site, line, station, local_id, t)"
	") PARTITION BY RANGE (t);"
	"CREATE TABLE inspections_default PARTITION OF inspections DEFAULT;"
	"CREATE INDEX inspections_station_t ON inspections (site, line, station, t);"
	"CREATE INDEX inspections_t ON inspections (t);"
	"CREATE INDEX inspections_part ON inspections (part_id);"
	"CREATE TABLE events ("
	"  site text NOT NULL,"
	"  line text NOT NULL,"
	"  station text NOT NULL,"
	"  local_id bigint NOT NULL,"
	"  t timestamptz NOT NULL,"
	"  kind text NOT NULL,"
	"  message text NOT NULL,"
	"  PRIMARY KEY (site, line, station, local_id, t)"
	") PARTITION BY RANGE (t);"
	"CREATE TABLE events_default PARTITION OF events DEFAULT;"
	"CREATE INDEX events_station_t ON events (site, line, station, t);"
	"CREATE TABLE reviews ("
	"  id bigserial PRIMARY KEY,"
	"  site text NOT NULL,"
	"  line text NOT NULL,"
	"  station text NOT NULL,"
	"  local_id bigint,"
	"  origin text NOT NULL CHECK (origin IN ('station', 'central')),"
	"  inspection_local_id bigint NOT NULL,"
	"  part_id bigint,"
	"  t timestamptz NOT NULL DEFAULT now(),"
	"  decision text NOT NULL CHECK (decision IN ('confirm', 'overrule')),"
	"  verdict text NOT NULL CHECK (verdict IN ('accept', 'reject', 'marginal')),"
	"  note text,"
	"  reviewer text,"
	"  defect_type text,"
	"  mask_path text,"
	"  CHECK ((origin = 'station') = (local_id IS NOT NULL)),"
	"  UNIQUE (site, line, station, local_id)"
	");"
	"CREATE INDEX reviews_inspection ON reviews (site, line, station, inspection_local_id);"
	"CREATE INDEX reviews_central ON reviews (site, line, station, id) WHERE origin = 'central';"
	"CREATE TABLE escapes ("
	"  site text NOT NULL,"
	"  line text NOT NULL,"
	"  station text NOT NULL,"
	"  local_id bigint NOT NULL,"
	"  inspection_local_id bigint NOT NULL,"
	"  t timestamptz NOT NULL,"
	"  note text,"
	"  reporter text,"
	"  PRIMARY KEY (site, line, station, local_id)"
	");"
	"CREATE INDEX escapes_inspection ON escapes (site, line, station, inspection_local_id);"
	"CREATE TABLE media ("
	"  site text NOT NULL,"
	"  line text NOT NULL,"
	"  station text NOT NULL,"
	"  local_id bigint NOT NULL,"
	"  inspection_local_id bigint NOT NULL,"
	"  camera text,"
	"  kind text NOT NULL,"
	"  path text NOT NULL,"
	"  bytes bigint,"
	"  PRIMARY KEY (site, line, station, local_id)"
	");"
	"CREATE INDEX media_inspection ON media (site, line, station, inspection_local_id);",
};

#define PLANT_SCHEMA_VERSION ((int)G_N_ELEMENTS(migrations))

int plant_schema_version(void)
{
	return PLANT_SCHEMA_VERSION;
}

char *plant_pg_text(const char *msg)
{
	GString *out = g_string_new(NULL);

	for (const char *p = msg ? msg : ""; *p; p++) {
		const char *end;

		/* A quoted absolute path: libpq names the socket it tried. */
		if (p[0] == '"' && p[1] == '/' && (end = strchr(p + 1, '"'))) {
			g_string_append(out, "\"(a local path)\"");
			p = end;
		} else {
			g_string_append_c(out, *p == '\n' || *p == '\t' ? ' ' : *p);
		}
	}
	return g_strstrip(g_string_free(out, FALSE));
}

const char *plant__pg_message(PGconn *conn, const PGresult *res)
{
	static _Thread_local char buf[512];
	const char *msg = res ? PQresultErrorMessage(res) : NULL;
	char *text;

	if (!msg || !*msg)
		msg = conn ? PQerrorMessage(conn) : "out of memory";
	/* libpq ends its messages with a newline, and a connection failure
	 * may list one line per address tried: keep them, on one line. */
	text = plant_pg_text(msg);
	g_strlcpy(buf, text, sizeof(buf));
	g_free(text);
	return buf;
}

static int result_code(PGconn *conn)
{
	return PQstatus(conn) == CONNECTION_OK ? PLANT_ESQL : PLANT_ELINK;
}

int plant__exec(PGconn *conn, const char *sql, const char *what, char **err)
{
	PGresult *res = PQexec(conn, sql);
	ExecStatusType st = PQresultStatus(res);
	int ret = 0;

	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
		db__set_error(err, "%s: %s", what, plant__pg_message(conn, res));
		ret = result_code(conn);
	}
	PQclear(res);
	return ret;
}

/* The version vigil_schema records: 0 when the table is missing or empty,
 * or a negative code. */
static int read_version(PGconn *conn, int64_t *version, char **err)
{
	PGresult *res = PQexec(conn, "SELECT to_regclass('vigil_schema') IS NOT NULL");
	int ret = 0;

	*version = 0;
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		db__set_error(err, "cannot read the central schema version: %s",
			      plant__pg_message(conn, res));
		ret = result_code(conn);
		goto out;
	}
	if (strcmp(PQgetvalue(res, 0, 0), "t") != 0)
		goto out;
	PQclear(res);
	res = PQexec(conn, "SELECT coalesce(max(version), 0) FROM vigil_schema");
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		db__set_error(err, "cannot read the central schema version: %s",
			      plant__pg_message(conn, res));
		ret = result_code(conn);
		goto out;
	}
	*version = g_ascii_strtoll(PQgetvalue(res, 0, 0), NULL, 10);
out:
	PQclear(res);
	return ret;
}

static int refuse_newer(int64_t version, char **err)
{
	db__set_error(err, "the central schema version %" PRId64
		      " is newer than the version %d this build knows; not forwarding "
		      "(upgrade this station's Vigil)", version, PLANT_SCHEMA_VERSION);
	return PLANT_ENEWER;
}

int plant__prepare_schema(PGconn *conn, char **err)
{
	int64_t version = 0;
	bool in_transaction = false;
	char sql[160];
	int ret;

	/* The common case, a schema already current, needs no lock and no
	 * CREATE privilege. */
	ret = read_version(conn, &version, err);
	if (ret < 0)
		return ret;
	if (version > PLANT_SCHEMA_VERSION)
		return refuse_newer(version, err);
	if (version == PLANT_SCHEMA_VERSION)
		return 0;

	ret = plant__exec(conn, "BEGIN", "cannot migrate the central schema", err);
	if (ret < 0)
		goto out;
	in_transaction = true;
	/* Stations started at once queue here; each reads the version again
	 * once it holds the lock, so a step is applied by the first only. The
	 * transaction-scoped lock goes with the COMMIT or ROLLBACK. */
	snprintf(sql, sizeof(sql), "SELECT pg_advisory_xact_lock(%" PRId64 ")", PLANT_LOCK_SCHEMA);
	ret = plant__exec(conn, sql, "cannot lock the central schema", err);
	if (ret < 0)
		goto out;
	ret = plant__exec(conn, "CREATE TABLE IF NOT EXISTS vigil_schema (version integer NOT NULL)",
			  "cannot create vigil_schema", err);
	if (ret < 0)
		goto out;
	ret = read_version(conn, &version, err);
	if (ret < 0)
		goto out;
	if (version > PLANT_SCHEMA_VERSION) {
		ret = refuse_newer(version, err);
		goto out;
	}
	for (int64_t v = version; v < PLANT_SCHEMA_VERSION; v++) {
		char what[96];

		snprintf(what, sizeof(what), "cannot migrate the central schema to version %" PRId64,
			 v + 1);
		ret = plant__exec(conn, migrations[v], what, err);
		if (ret < 0)
			goto out;
	}
	snprintf(sql, sizeof(sql),
		 "DELETE FROM vigil_schema; INSERT INTO vigil_schema (version) VALUES (%d)",
		 PLANT_SCHEMA_VERSION);
	ret = plant__exec(conn, sql, "cannot record the central schema version", err);
	if (ret < 0)
		goto out;
	ret = plant__exec(conn, "COMMIT", "cannot migrate the central schema", err);
	in_transaction = false;
out:
	if (in_transaction)
		PQclear(PQexec(conn, "ROLLBACK"));
	return ret;
}

/* The first instant of the UTC month holding t_wall_us, and of the next. */
static void month_bounds(int64_t t_wall_us, struct tm *from, struct tm *to)
{
	time_t t = (time_t)(t_wall_us / 1000000);

	gmtime_r(&t, from);
	*to = *from;
	to->tm_mon++;
	if (to->tm_mon == 12) {
		to->tm_mon = 0;
		to->tm_year++;
	}
}

int plant__ensure_month(PGconn *conn, int64_t t_wall_us, char **err)
{
	static const char *const tables[] = { "inspections", "events" };
	struct tm from, to;
	char sql[512];
	int ret;

	month_bounds(t_wall_us, &from, &to);
	ret = plant__exec(conn, "BEGIN", "cannot create a monthly partition", err);
	if (ret < 0)
		return ret;
	/* CREATE TABLE IF NOT EXISTS is not safe against a concurrent
	 * CREATE of the same name (the loser fails on pg_type's unique
	 * index): stations take turns. */
	snprintf(sql, sizeof(sql), "SELECT pg_advisory_xact_lock(%" PRId64 ")",
		 PLANT_LOCK_PARTITIONS);
	ret = plant__exec(conn, sql, "cannot lock the partitions", err);
	for (size_t i = 0; i < G_N_ELEMENTS(tables) && ret == 0; i++) {
		snprintf(sql, sizeof(sql),
			 "CREATE TABLE IF NOT EXISTS %s_y%04dm%02d PARTITION OF %s"
			 " FOR VALUES FROM ('%04d-%02d-01 00:00:00+00') TO ('%04d-%02d-01 00:00:00+00')",
			 tables[i], from.tm_year + 1900, from.tm_mon + 1, tables[i],
			 from.tm_year + 1900, from.tm_mon + 1, to.tm_year + 1900, to.tm_mon + 1);
		ret = plant__exec(conn, sql, "cannot create a monthly partition", err);
	}
	if (ret == 0)
		return plant__exec(conn, "COMMIT", "cannot create a monthly partition", err);
	PQclear(PQexec(conn, "ROLLBACK"));
	return ret;
}

char *plant_mask_conninfo(const char *conninfo)
{
	PQconninfoOption *opts;
	GString *out;
	char *errmsg = NULL;

	if (!conninfo)
		return strdup("");
	/* PQconninfoParse reads both forms (key=value and URI); what it
	 * cannot parse is shown as nothing rather than risk a password. */
	opts = PQconninfoParse(conninfo, &errmsg);
	if (!opts) {
		PQfreemem(errmsg);
		return strdup("(unparsable conninfo)");
	}
	out = g_string_new(NULL);
	for (PQconninfoOption *o = opts; o->keyword; o++) {
		if (!o->val)
			continue;
		if (out->len)
			g_string_append_c(out, ' ');
		if (strcmp(o->keyword, "password") == 0)
			g_string_append_printf(out, "%s=***", o->keyword);
		else
			g_string_append_printf(out, "%s=%s", o->keyword, o->val);
	}
	PQconninfoFree(opts);
	char *s = strdup(out->str);
	g_string_free(out, TRUE);
	return s;
}

/* Notices ("relation already exists, skipping") are expected; the
 * server's errors come back with the results. */
static void ignore_notice(void *data, const char *message)
{
	(void)data;
	(void)message;
}

PGconn *plant__connect(const char *conninfo, char **err)
{
	PGconn *conn = PQconnectdb(conninfo);

	if (PQstatus(conn) != CONNECTION_OK) {
		char *masked = plant_mask_conninfo(conninfo);

		db__set_error(err, "cannot connect to the plant database (%s): %s", masked,
			      plant__pg_message(conn, NULL));
		free(masked);
		PQfinish(conn);
		return NULL;
	}
	PQsetNoticeProcessor(conn, ignore_notice, NULL);
	return conn;
}

int plant_migrate(const char *conninfo, char **err)
{
	PGconn *conn = plant__connect(conninfo, err);
	int ret;

	if (!conn)
		return PLANT_ELINK;
	ret = plant__prepare_schema(conn, err);
	PQfinish(conn);
	return ret;
}

const char *plant_strerror(int code)
{
	switch (code) {
	case 0:
		return "success";
	case PLANT_ELINK:
		return "cannot reach the plant database";
	case PLANT_ESQL:
		return "the plant database refused a statement";
	case PLANT_ENEWER:
		return "the central schema is newer than this build";
	default:
		return code < 0 ? g_strerror(-code) : "unknown error";
	}
}
