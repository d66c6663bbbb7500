/* The review page's Plant view (review-private.h): the plant's central
 * PostgreSQL (docs/plant-schema.md) read from the page of the plant
 * office's `vigild --review-only` with [review] central = CONNINFO.
 *
 *   GET  /api/plant              {"central": true|false}: whether the view is here
 *   GET  /api/plant/stations     every station, as `vigilctl --central stations`
 *   GET  /api/plant/inspections  ?site=&line=&station=&since=&until=&verdict=&limit=
 *   POST /api/plant/review       {"site","line","station","local_id","decision",
 *                                 "verdict","note","defect_type"}: a central review
 *
 * Each request opens its own connection and closes it: the page is read
 * by a few people, and a server that restarts costs no reconnect logic.
 * libpq blocks the main loop while it works, which is why the key is for
 * --review-only (a station's own page must never wait on the plant's
 * database: its status and metrics are served from the same loop). A
 * failure is answered 502 with one line naming the server, never the
 * password. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "app/review-private.h"
#include "db/plant.h"

#define PLANT_DEFAULT_LIMIT 200
#define PLANT_MAX_LIMIT 10000

int review__plant_read(review_server *s, const config *cfg, gboolean with_line, char **err)
{
	PQconninfoOption *parsed;
	char *why = NULL;

	if (config_get_string(cfg, "review", "central", "", &s->central, err) < 0)
		return -EINVAL;
	if (!*s->central) {
		g_clear_pointer(&s->central, g_free);
		return 0;
	}
	if (with_line) {
		*err = config_error(cfg, "review", "central", "is for vigild --review-only (the plant "
				    "office's page): a station's page shows its own log and never "
				    "waits on the plant's database");
		return -EINVAL;
	}
	/* What libpq cannot parse it would refuse at every request. Its
	 * message quotes no value, so no password. */
	parsed = PQconninfoParse(s->central, &why);
	if (!parsed) {
		*err = config_error(cfg, "review", "central", "not a libpq connection string: %s",
				    why ? g_strstrip(why) : "out of memory");
		PQfreemem(why);
		return -EINVAL;
	}
	PQconninfoFree(parsed);
	return 0;
}

/* 502 naming the server and why (NULL: libpq's message), on one line. */
static void reply_pg_error(SoupServerMessage *msg, PGconn *conn, const char *m, const char *what)
{
	const char *host = PQhost(conn), *db = PQdb(conn);
	char *line;

	/* A socket's folder is a path of the server's: not in an answer. */
	if (host && host[0] == '/')
		host = "a local socket";

	if (!m || !*m)
		m = PQerrorMessage(conn);
	line = plant_pg_text(m);
	review__reply_error(msg, SOUP_STATUS_BAD_GATEWAY,
			    "the plant database (host %s, database %s): %s: %s",
			    host && *host ? host : "(default)", db && *db ? db : "(default)", what,
			    line);
	g_message("review: plant database (host %s, database %s): %s: %s",
		  host && *host ? host : "(default)", db && *db ? db : "(default)", what, line);
	g_free(line);
}

/* A connection, or NULL with the 502 replied. */
static PGconn *plant_connect(review_server *s, SoupServerMessage *msg)
{
	PGconn *conn = PQconnectdb(s->central);

	if (PQstatus(conn) != CONNECTION_OK) {
		reply_pg_error(msg, conn, NULL, "cannot connect");
		PQfinish(conn);
		return NULL;
	}
	return conn;
}

/* One statement with text parameters; the rows, or NULL with 502 replied. */
static PGresult *plant_query(SoupServerMessage *msg, PGconn *conn, const char *sql, int n,
			     const char *const *params, const char *what)
{
	PGresult *res = PQexecParams(conn, sql, n, NULL, params, NULL, NULL, 0);
	ExecStatusType st = PQresultStatus(res);

	if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
		reply_pg_error(msg, conn, PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY), what);
		PQclear(res);
		return NULL;
	}
	return res;
}

/* The rows of res as a JSON array of objects, a column's name its member:
 * numbers for the numeric types, text otherwise, null for NULL. */
static JsonNode *rows_json(const PGresult *res)
{
	/* PostgreSQL's type oids (pg_type.h), fixed since 7.x. */
	enum { INT8 = 20, INT2 = 21, INT4 = 23, FLOAT4 = 700, FLOAT8 = 701, NUMERIC = 1700 };
	JsonBuilder *b = json_builder_new();
	JsonNode *root;

	json_builder_begin_array(b);
	for (int i = 0; i < PQntuples(res); i++) {
		json_builder_begin_object(b);
		for (int c = 0; c < PQnfields(res); c++) {
			const char *name = PQfname(res, c), *v = PQgetvalue(res, i, c);
			Oid type = PQftype(res, c);

			if (PQgetisnull(res, i, c))
				review__add_string(b, name, NULL);
			else if (type == INT8 || type == INT2 || type == INT4)
				review__add_int(b, name, g_ascii_strtoll(v, NULL, 10));
			else if (type == FLOAT4 || type == FLOAT8 || type == NUMERIC)
				review__add_number(b, name, g_ascii_strtod(v, NULL));
			else
				review__add_string(b, name, v);
		}
		json_builder_end_object(b);
	}
	json_builder_end_array(b);
	root = json_builder_get_root(b);
	g_object_unref(b);
	return root;
}

/* {"NAME": rows} */
static void reply_rows(SoupServerMessage *msg, const char *name, const PGresult *res)
{
	JsonObject *o = json_object_new();
	JsonNode *root = json_node_new(JSON_NODE_OBJECT);

	json_object_set_member(o, name, rows_json(res));
	json_node_take_object(root, o);
	review__reply_json(msg, SOUP_STATUS_OK, root);
}

/* An id filter: absent or empty is none; else 1 to PLANT_MAX_ID bytes. */
static gboolean id_ok(const char *v)
{
	return !v || strlen(v) <= PLANT_MAX_ID;
}

static const char *nonempty(GHashTable *q, const char *key)
{
	const char *v = g_hash_table_lookup(q, key);

	return v && *v ? v : NULL;
}

static void api_stations(review_server *s, SoupServerMessage *msg, GHashTable *q)
{
	static const char *const ids[] = { "site", "line", "station", NULL };
	GHashTableIter it;
	gpointer key;
	PGconn *conn;
	PGresult *res;
	char *err = NULL;
	int rc;

	g_hash_table_iter_init(&it, q);
	while (g_hash_table_iter_next(&it, &key, NULL))
		if (!g_strv_contains(ids, key)) {
			review__reply_error(msg, SOUP_STATUS_BAD_REQUEST, "unknown parameter '%s' "
					    "(site, line, station)", (const char *)key);
			return;
		}
	for (int i = 0; i < 3; i++)
		if (!id_ok(nonempty(q, ids[i]))) {
			review__reply_error(msg, SOUP_STATUS_BAD_REQUEST, "%s is an id of up to %d "
					    "bytes", ids[i], PLANT_MAX_ID);
			return;
		}
	if (!(conn = plant_connect(s, msg)))
		return;
	rc = plant_stations_list(conn, nonempty(q, "site"), nonempty(q, "line"),
				 nonempty(q, "station"), &res, &err);
	if (rc == 0)
		reply_rows(msg, "stations", res);
	else
		reply_pg_error(msg, conn, err, "cannot list the stations");
	PQclear(res);
	free(err);
	PQfinish(conn);
}

static void api_inspections(review_server *s, SoupServerMessage *msg, GHashTable *q)
{
	static const char *const known[] = { "site", "line", "station", "since", "until", "verdict",
					     "limit", NULL };
	/* Each inspection with its latest review; the newest `limit`, newest
	 * first as the page lists them. Times go in and out as µs since the
	 * epoch: the page shows them in the browser's zone. */
	static const char sql[] =
		"SELECT i.site, i.line, i.station, i.local_id, " PLANT_T_TO_US("i.t") " AS t_us,"
		"  i.part_id, i.verdict, i.defect_class AS class, i.score, i.model_version,"
		"  r.decision AS review, r.verdict AS review_verdict, r.origin AS review_origin,"
		"  r.reviewer, r.note AS review_note"
		" FROM inspections i"
		PLANT_SQL_LATEST_REVIEW("decision, verdict, origin, reviewer, note")
		" WHERE ($1::text IS NULL OR i.site = $1) AND ($2::text IS NULL OR i.line = $2)"
		"  AND ($3::text IS NULL OR i.station = $3)"
		"  AND ($4::bigint IS NULL OR i.t >= " PLANT_US_TO_T("$4") ")"
		"  AND ($5::bigint IS NULL OR i.t < " PLANT_US_TO_T("$5") ")"
		"  AND ($6::text IS NULL OR i.verdict = $6)"
		" ORDER BY i.t DESC, i.site, i.line, i.station, i.local_id DESC LIMIT $7::bigint";
	const char *params[7];
	char limit[24];
	GHashTableIter it;
	gpointer key;
	guint64 n = PLANT_DEFAULT_LIMIT;
	PGconn *conn;
	PGresult *res;

	g_hash_table_iter_init(&it, q);
	while (g_hash_table_iter_next(&it, &key, NULL))
		if (!g_strv_contains(known, key)) {
			review__reply_error(msg, SOUP_STATUS_BAD_REQUEST, "unknown parameter '%s' "
					    "(site, line, station, since, until, verdict, limit)",
					    (const char *)key);
			return;
		}
	for (int i = 0; i < 3; i++)
		if (!id_ok(params[i] = nonempty(q, known[i]))) {
			review__reply_error(msg, SOUP_STATUS_BAD_REQUEST, "%s is an id of up to %d "
					    "bytes", known[i], PLANT_MAX_ID);
			return;
		}
	for (int i = 3; i < 5; i++) {
		guint64 us;

		params[i] = nonempty(q, known[i]);
		if (params[i] && review__parse_uint(params[i], G_MAXINT64, &us) < 0) {
			review__reply_error(msg, SOUP_STATUS_BAD_REQUEST, "%s is a time in "
					    "microseconds since 1970 (UTC)", known[i]);
			return;
		}
	}
	params[5] = nonempty(q, "verdict");
	if (params[5] && strcmp(params[5], "accept") != 0 && strcmp(params[5], "reject") != 0 &&
	    strcmp(params[5], "marginal") != 0) {
		review__reply_error(msg, SOUP_STATUS_BAD_REQUEST,
				    "verdict is accept, reject or marginal");
		return;
	}
	if (nonempty(q, "limit") &&
	    (review__parse_uint(nonempty(q, "limit"), PLANT_MAX_LIMIT, &n) < 0 || n == 0)) {
		review__reply_error(msg, SOUP_STATUS_BAD_REQUEST, "limit is 1 to %d",
				    PLANT_MAX_LIMIT);
		return;
	}
	g_snprintf(limit, sizeof(limit), "%" G_GUINT64_FORMAT, n);
	params[6] = limit;
	if (!(conn = plant_connect(s, msg)))
		return;
	res = plant_query(msg, conn, sql, 7, params, "cannot list the inspections");
	if (res)
		reply_rows(msg, "inspections", res);
	PQclear(res);
	PQfinish(conn);
}

/* The members of a review's JSON body into *r, borrowed from it, and
 * checked by plant_review_check: 0, or -EINVAL with a 400 replied. */
static int parse_review(SoupServerMessage *msg, JsonObject *o, struct plant_review *r)
{
	gboolean bad = FALSE;
	JsonNode *id = json_object_get_member(o, "local_id");
	char *why = NULL;

	r->site = review__member_string(o, "site", &bad);
	r->line = review__member_string(o, "line", &bad);
	r->station = review__member_string(o, "station", &bad);
	r->decision = review__member_string(o, "decision", &bad);
	r->verdict = review__member_string(o, "verdict", &bad);
	r->note = review__member_string(o, "note", &bad);
	r->defect_type = review__member_string(o, "defect_type", &bad);
	if (bad) {
		review__reply_error(msg, SOUP_STATUS_BAD_REQUEST, "site, line, station, decision, "
				    "verdict, note and defect_type are strings");
		return -EINVAL;
	}
	if (!id || !JSON_NODE_HOLDS_VALUE(id) || json_node_get_value_type(id) != G_TYPE_INT64 ||
	    json_node_get_int(id) < 0) {
		review__reply_error(msg, SOUP_STATUS_BAD_REQUEST, "local_id is the row's id in the "
				    "station's log (a number)");
		return -EINVAL;
	}
	r->local_id = json_node_get_int(id);
	if (plant_review_check(r, &why) < 0) {
		review__reply_error(msg, SOUP_STATUS_BAD_REQUEST, "%s", why ? why : "out of memory");
		free(why);
		return -EINVAL;
	}
	return 0;
}

/* A central review, which the station's forwarder pulls into its own log. */
static void api_review(review_server *s, SoupServerMessage *msg)
{
	struct review_caller who;
	struct plant_review in = { 0 };
	struct plant_review_saved saved;
	JsonParser *parser = NULL;
	JsonObject *o;
	PGconn *conn = NULL;
	char *err = NULL;
	int rc;

	if (review__require_role(s, msg, USERS_ROLE_REVIEWER, &who) < 0)
		return;
	/* The HTTP layer has refused bodies over REVIEW_MAX_BODY already. */
	if (!(o = review__body_object(msg, REVIEW_MAX_BODY, "the body is a JSON object", &parser)))
		goto out;
	in.reviewer = who.name ? who.name : "review page";
	if (parse_review(msg, o, &in) < 0)
		goto out;
	if (!(conn = plant_connect(s, msg)))
		goto out;
	rc = plant_review_insert(conn, &in, &saved, &err);
	if (rc == -ENOENT || rc == -EINVAL) {
		/* -EINVAL: an overrule to the line's own verdict. */
		review__reply_error(msg, rc == -ENOENT ? SOUP_STATUS_NOT_FOUND
						       : SOUP_STATUS_BAD_REQUEST, "%s", err);
		goto out;
	}
	if (rc < 0) {
		reply_pg_error(msg, conn, err, "cannot save the review");
		goto out;
	}
	{
		JsonBuilder *b = json_builder_new();

		json_builder_begin_object(b);
		review__add_int(b, "id", saved.id);
		review__add_string(b, "origin", "central");
		review__add_string(b, "decision", in.decision);
		review__add_string(b, "verdict", saved.verdict);
		review__add_string(b, "reviewer", in.reviewer);
		json_builder_end_object(b);
		review__reply_json(msg, SOUP_STATUS_OK, json_builder_get_root(b));
		g_object_unref(b);
	}
	g_message("review: central review %" G_GINT64_FORMAT " of %s/%s/%s/%" G_GINT64_FORMAT
		  " by %s: %s", saved.id, in.site, in.line, in.station, in.local_id, in.reviewer,
		  in.decision);
out:
	free(err);
	if (conn)
		PQfinish(conn);
	if (parser)
		g_object_unref(parser);
}

gboolean review__plant_route(review_server *s, SoupServerMessage *msg, const char *path,
			     const char *method, const char *raw_query)
{
	gboolean get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
	GHashTable *q;
	char *why = NULL;

	if (strcmp(path, "/api/plant") == 0) {
		/* What the page asks first, so that a station's page (no
		 * central) gets no 404 for a view it does not have. */
		JsonBuilder *b;

		if (!get) {
			review__reply_error(msg, SOUP_STATUS_METHOD_NOT_ALLOWED, "method not allowed");
			return TRUE;
		}
		b = json_builder_new();
		json_builder_begin_object(b);
		json_builder_set_member_name(b, "central");
		json_builder_add_boolean_value(b, s->central != NULL);
		json_builder_end_object(b);
		review__reply_json(msg, SOUP_STATUS_OK, json_builder_get_root(b));
		g_object_unref(b);
		return TRUE;
	}
	if (!g_str_has_prefix(path, "/api/plant/"))
		return FALSE;
	if (!s->central) {
		review__reply_error(msg, SOUP_STATUS_NOT_FOUND, "no plant database: [review] "
				    "central is not set");
		return TRUE;
	}
	if (strcmp(path, "/api/plant/review") == 0) {
		if (strcmp(method, "POST") == 0)
			api_review(s, msg);
		else
			review__reply_error(msg, SOUP_STATUS_METHOD_NOT_ALLOWED, "method not allowed");
		return TRUE;
	}
	if (strcmp(path, "/api/plant/stations") != 0 && strcmp(path, "/api/plant/inspections") != 0) {
		review__reply_error(msg, SOUP_STATUS_NOT_FOUND, "not found");
		return TRUE;
	}
	if (!get) {
		review__reply_error(msg, SOUP_STATUS_METHOD_NOT_ALLOWED, "method not allowed");
		return TRUE;
	}
	if (!(q = review__parse_query(raw_query, &why))) {
		review__reply_error(msg, SOUP_STATUS_BAD_REQUEST, "%s", why);
		g_free(why);
		return TRUE;
	}
	if (strcmp(path, "/api/plant/stations") == 0)
		api_stations(s, msg, q);
	else
		api_inspections(s, msg, q);
	g_hash_table_unref(q);
	return TRUE;
}
