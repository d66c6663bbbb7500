/* The QA review web server (see review.h). Every request is answered from
 * the main loop; reads open their own read-only SQLite connection
 * (db_query), writes go through db_review, which takes its own connection,
 * so the line's writer thread and this server only meet in SQLite's WAL. */
#include <errno.h>
#include <gio/gio.h>
#include <inttypes.h>
#include <json-glib/json-glib.h>
#include <libsoup/soup.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "app/review.h"
#include "db/db.h"
#include "fusion/condition.h"

/* Requests longer than these are refused before they are read: nothing the
 * page sends comes near them. */
#define REVIEW_MAX_PATH 512
#define REVIEW_MAX_QUERY 2048
#define REVIEW_MAX_BODY (16 * 1024)
#define REVIEW_MAX_NOTE 2000
#define REVIEW_DEFAULT_LIMIT 200
#define REVIEW_MAX_LIMIT 10000
#define REVIEW_MIN_TOKEN 8
/* A media file larger than this is not served (an image or a vibration
 * window is far smaller), and a waveform is sent up to this many samples. */
#define REVIEW_MAX_MEDIA (64 * 1024 * 1024)
#define REVIEW_MAX_WAVEFORM 16384
/* The envelope spectrum is taken over at most this many samples. */
#define REVIEW_MAX_SPECTRUM (1 << 20)
/* Connections waiting to be accepted while the main loop is busy. */
#define REVIEW_LISTEN_BACKLOG 128

/* The line is sampled once a second; rates are measured over the last
 * RATE_SAMPLES samples (10 s), and HISTORY_SAMPLES (10 min) are kept for
 * the status charts. */
#define RATE_SAMPLES 11
#define HISTORY_SAMPLES 600

#define RESOURCE_PREFIX "/org/vigil/review/"

struct rate_sample {
	int64_t t_us, t_wall_us;
	uint64_t parts, accepted, latency_parts;
	double latency_sum_ms;
	uint64_t camera_frames[LINE_HEALTH_CAMERAS];
};

/* Why a client was answered before libsoup was done with it, for
 * /metrics. */
enum review_refusal {
	REFUSED_MAX_CONNECTIONS,  /* 503: max_connections already open */
	REFUSED_REQUEST_TIMEOUT,  /* 408: no whole request in request_timeout_s */
	REFUSED_BODY,             /* 400/411/413 on the headers, body never read */
	REFUSALS
};

static const char *const refusal_names[REFUSALS] = { "max_connections", "request_timeout",
						     "body" };

struct review_conn;

struct review_server {
	SoupServer *soup;
	/* The server accepts connections itself, to cap them and time their
	 * requests, and hands each to soup (soup_server_accept_iostream). */
	GSocketService *service;
	GHashTable *conns;       /* "ADDRESS:PORT" of the peer -> review_conn */
	GQueue open_conns;       /* every review_conn, by its link */
	int max_connections;
	int request_timeout_s;
	uint64_t refused[REFUSALS];
	line *line;
	char *db_path;
	char *static_dir;        /* NULL: the page built into the binary */
	char *charts_dir;        /* uPlot's dist folder; may lack the files */
	gboolean have_token;
	guint8 token_sha256[32]; /* compared, never the token itself */
	int port;
	int64_t started_us;
	/* The bearing of the [vibration.NAME] section, to mark its defect
	 * frequencies on a part's envelope spectrum. */
	gboolean have_bearing;
	double shaft_hz, hf_hz;
	struct bearing_freqs bearing;
	guint sampler;
	struct rate_sample samples[HISTORY_SAMPLES];
	int nsamples;            /* oldest first */
};

static const char *const review_keys[] = { "listen", "port", "token", "token_file",
					    "static_dir", "charts_dir", "max_connections",
					    "request_timeout_s", NULL };

/* The charting library's files (uPlot, from npm; never in git), served as
 * /vendor/NAME from charts_dir when they are there. */
static const char *const chart_files[] = { "uPlot.iife.min.js", "uPlot.min.css", NULL };

/* ---- replies ---- */

static void common_headers(SoupServerMessage *msg)
{
	SoupMessageHeaders *h = soup_server_message_get_response_headers(msg);

	soup_message_headers_replace(h, "X-Content-Type-Options", "nosniff");
	soup_message_headers_replace(h, "Content-Security-Policy",
				     "default-src 'self'; frame-ancestors 'none'");
	soup_message_headers_replace(h, "Cache-Control", "no-store");
}

static void reply_bytes(SoupServerMessage *msg, int status, const char *type, GBytes *body)
{
	common_headers(msg);
	soup_server_message_set_status(msg, status, NULL);
	soup_server_message_set_response(msg, type, SOUP_MEMORY_COPY,
					 g_bytes_get_data(body, NULL), g_bytes_get_size(body));
}

static void reply_text(SoupServerMessage *msg, int status, const char *type, GString *text)
{
	common_headers(msg);
	soup_server_message_set_status(msg, status, NULL);
	soup_server_message_set_response(msg, type, SOUP_MEMORY_COPY, text->str, text->len);
}

static void reply_json(SoupServerMessage *msg, int status, JsonNode *root)
{
	JsonGenerator *gen = json_generator_new();
	gsize len = 0;
	char *text;

	json_generator_set_root(gen, root);
	text = json_generator_to_data(gen, &len);
	common_headers(msg);
	soup_server_message_set_status(msg, status, NULL);
	soup_server_message_set_response(msg, "application/json", SOUP_MEMORY_TAKE, text, len);
	g_object_unref(gen);
	json_node_unref(root);
}

static void reply_error(SoupServerMessage *msg, int status, const char *fmt, ...)
	G_GNUC_PRINTF(3, 4);

/* {"error": text}; the caller owns the node. */
static JsonNode *error_node(const char *text)
{
	JsonBuilder *b = json_builder_new();
	JsonNode *root;

	json_builder_begin_object(b);
	json_builder_set_member_name(b, "error");
	json_builder_add_string_value(b, text);
	json_builder_end_object(b);
	root = json_builder_get_root(b);
	g_object_unref(b);
	return root;
}

static void reply_error(SoupServerMessage *msg, int status, const char *fmt, ...)
{
	va_list ap;
	char *text;

	va_start(ap, fmt);
	text = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	reply_json(msg, status, error_node(text));
	g_free(text);
}

/* ---- connections: the cap and the request timeout ---- */

/* One client connection, from its accept until libsoup lets go of it. */
struct review_conn {
	review_server *server;
	GSocketConnection *conn;  /* no reference: soup holds the connection */
	char *peer;               /* the key in server->conns */
	guint deadline;           /* the request timer; 0 while none runs */
	GList link;               /* in server->open_conns */
};

/* "ADDRESS:PORT" of a peer: soup_server_message_get_socket is NULL for a
 * connection handed over as a stream, so a message finds its connection by
 * the peer's address, which TCP keeps unique among open connections to one
 * listening port. NULL for an address that is not IP. */
static char *peer_key(GSocketAddress *addr)
{
	GInetSocketAddress *in;
	char *ip, *key;

	if (!addr || !G_IS_INET_SOCKET_ADDRESS(addr))
		return NULL;
	in = G_INET_SOCKET_ADDRESS(addr);
	ip = g_inet_address_to_string(g_inet_socket_address_get_address(in));
	key = g_strdup_printf("%s:%u", ip, g_inet_socket_address_get_port(in));
	g_free(ip);
	return key;
}

static struct review_conn *conn_of(review_server *s, SoupServerMessage *msg)
{
	char *key = peer_key(soup_server_message_get_remote_address(msg));
	struct review_conn *c = key ? g_hash_table_lookup(s->conns, key) : NULL;

	g_free(key);
	return c;
}

/* Answers status with {"error": text} straight on the socket and shuts it
 * both ways, so the client gets its answer now instead of after a body it
 * may never send. libsoup, blocked on reading, then reads end of file,
 * drops the request without writing anything and closes the connection.
 * The answer is a few hundred bytes on a socket that has sent nothing of
 * this request yet, so one non-blocking send takes it whole. */
static void answer_on_socket(GSocket *sock, guint status, const char *text)
{
	JsonGenerator *gen = json_generator_new();
	JsonNode *root = error_node(text);
	gsize body_len = 0;
	char *body;
	GString *out;

	json_generator_set_root(gen, root);
	body = json_generator_to_data(gen, &body_len);
	out = g_string_new(NULL);
	g_string_append_printf(out,
			       "HTTP/1.1 %u %s\r\nServer: vigild\r\n"
			       "Content-Type: application/json\r\nContent-Length: %" G_GSIZE_FORMAT
			       "\r\nConnection: close\r\nCache-Control: no-store\r\n"
			       "X-Content-Type-Options: nosniff\r\n\r\n%s",
			       status, soup_status_get_phrase(status), body_len, body);
	(void)g_socket_send_with_blocking(sock, out->str, out->len, FALSE, NULL, NULL);
	(void)g_socket_shutdown(sock, TRUE, TRUE, NULL);
	g_string_free(out, TRUE);
	g_free(body);
	json_node_unref(root);
	g_object_unref(gen);
}

static gboolean on_request_timeout(gpointer data)
{
	struct review_conn *c = data;
	char *text = g_strdup_printf("no whole request within %d s",
				     c->server->request_timeout_s);

	c->deadline = 0;
	c->server->refused[REFUSED_REQUEST_TIMEOUT]++;
	answer_on_socket(g_socket_connection_get_socket(c->conn), SOUP_STATUS_REQUEST_TIMEOUT,
			 text);
	g_free(text);
	return G_SOURCE_REMOVE;
}

static void conn_disarm(struct review_conn *c)
{
	if (c->deadline)
		g_source_remove(c->deadline);
	c->deadline = 0;
}

/* The client has request_timeout_s from now to send a whole request: this
 * bounds a slow sender, a short body and an idle connection alike. */
static void conn_arm(struct review_conn *c)
{
	conn_disarm(c);
	c->deadline = g_timeout_add((guint)c->server->request_timeout_s * 1000,
				    on_request_timeout, c);
}

static void conn_free(struct review_conn *c)
{
	conn_disarm(c);
	g_free(c->peer);
	g_free(c);
}

/* Weak notify: libsoup has closed and dropped the connection. */
static void conn_gone(gpointer data, GObject *where_it_was)
{
	struct review_conn *c = data;
	review_server *s = c->server;

	(void)where_it_was;
	if (g_hash_table_lookup(s->conns, c->peer) == c)
		g_hash_table_remove(s->conns, c->peer);
	g_queue_unlink(&s->open_conns, &c->link);
	conn_free(c);
}

/* soup emits request-started as soon as it waits for a request on a
 * connection. */
static void on_request_started(SoupServer *soup, SoupServerMessage *msg, gpointer data)
{
	struct review_conn *c = conn_of(data, msg);

	(void)soup;
	if (c)
		conn_arm(c);
}

/* libsoup keeps a connection alive only for connections it accepted
 * itself, so each one handed over here carries one request; saying so
 * keeps a client from sending a second request into the closing
 * connection. */
static void on_request_read(SoupServer *soup, SoupServerMessage *msg, gpointer data)
{
	struct review_conn *c = conn_of(data, msg);

	(void)soup;
	soup_message_headers_replace(soup_server_message_get_response_headers(msg), "Connection",
				     "close");
	if (c)
		conn_disarm(c);
}

static gboolean on_incoming(GSocketService *service, GSocketConnection *conn, GObject *source,
			    gpointer data)
{
	review_server *s = data;
	GSocket *sock = g_socket_connection_get_socket(conn);
	GSocketAddress *local = g_socket_connection_get_local_address(conn, NULL);
	GSocketAddress *remote = g_socket_connection_get_remote_address(conn, NULL);
	char *peer = peer_key(remote);
	struct review_conn *c;
	GError *gerr = NULL;

	(void)service;
	(void)source;
	if (!local || !peer) {
		g_io_stream_close(G_IO_STREAM(conn), NULL, NULL);
		goto out;
	}
	if (s->open_conns.length >= (guint)s->max_connections) {
		/* Refused before it is read: a client holding every slot with
		 * a trickle costs the others one answer, never a wait. */
		s->refused[REFUSED_MAX_CONNECTIONS]++;
		answer_on_socket(sock, SOUP_STATUS_SERVICE_UNAVAILABLE,
				 "too many connections; try again");
		g_io_stream_close(G_IO_STREAM(conn), NULL, NULL);
		goto out;
	}
	c = g_new0(struct review_conn, 1);
	c->server = s;
	c->conn = conn;
	c->peer = g_steal_pointer(&peer);
	c->link.data = c;
	/* replace, not insert: a connection still closing under the same
	 * peer keeps its own key until it is gone. */
	g_hash_table_replace(s->conns, c->peer, c);
	g_queue_push_tail_link(&s->open_conns, &c->link);
	g_object_weak_ref(G_OBJECT(conn), conn_gone, c);
	/* A backstop for what the request timer does not cover: a client that
	 * stops reading its reply. Longer than the request timeout, so that a
	 * slow request gets its 408 rather than a bare close. */
	g_socket_set_timeout(sock, 2 * (guint)s->request_timeout_s);
	conn_arm(c);
	if (!soup_server_accept_iostream(s->soup, G_IO_STREAM(conn), local, remote, &gerr)) {
		g_warning("review: cannot serve a connection: %s", gerr->message);
		g_error_free(gerr);
		g_io_stream_close(G_IO_STREAM(conn), NULL, NULL);
	}
out:
	g_free(peer);
	if (local)
		g_object_unref(local);
	if (remote)
		g_object_unref(remote);
	return TRUE;
}

/* ---- the page ---- */

static const char *content_type(const char *name)
{
	if (g_str_has_suffix(name, ".html"))
		return "text/html; charset=utf-8";
	if (g_str_has_suffix(name, ".js"))
		return "text/javascript; charset=utf-8";
	if (g_str_has_suffix(name, ".css"))
		return "text/css; charset=utf-8";
	if (g_str_has_suffix(name, ".svg"))
		return "image/svg+xml";
	if (g_str_has_suffix(name, ".png"))
		return "image/png";
	return "application/octet-stream";
}

/* A file name the page may ask for: one path segment of [A-Za-z0-9._-],
 * not starting with a dot. Anything else (a slash, "..", an escape) is
 * refused before it comes near a file system. */
static gboolean asset_name_ok(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > 64 || name[0] == '.')
		return FALSE;
	for (size_t i = 0; i < n; i++)
		if (!g_ascii_isalnum(name[i]) && name[i] != '.' && name[i] != '_' && name[i] != '-')
			return FALSE;
	return TRUE;
}

/* Serves name from dir, or from the page built into the binary when dir
 * is NULL. */
static void serve_asset(SoupServerMessage *msg, const char *dir, const char *name)
{
	GBytes *data = NULL;

	if (!asset_name_ok(name)) {
		reply_error(msg, SOUP_STATUS_BAD_REQUEST, "bad file name");
		return;
	}
	if (dir) {
		char *path = g_build_filename(dir, name, NULL);
		char *text = NULL;
		gsize len = 0;
		struct stat st;

		/* Only a regular file right in dir, never a link out of it. */
		if (lstat(path, &st) == 0 && S_ISREG(st.st_mode) &&
		    g_file_get_contents(path, &text, &len, NULL))
			data = g_bytes_new_take(text, len);
		g_free(path);
	} else {
		char *rpath = g_strconcat(RESOURCE_PREFIX, name, NULL);

		data = g_resources_lookup_data(rpath, G_RESOURCE_LOOKUP_FLAGS_NONE, NULL);
		g_free(rpath);
	}
	if (!data) {
		reply_error(msg, SOUP_STATUS_NOT_FOUND, "no such file");
		return;
	}
	reply_bytes(msg, SOUP_STATUS_OK, content_type(name), data);
	g_bytes_unref(data);
}

/* ---- query strings ---- */

/* Splits an application/x-www-form-urlencoded query into a table (last
 * value wins). Unlike soup_form_decode it refuses, rather than skips, a bad
 * escape, an escaped NUL or text that is not UTF-8. */
static GHashTable *parse_query(const char *query, char **why)
{
	GHashTable *t = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
	char **pairs;

	if (!query || !*query)
		return t;
	pairs = g_strsplit(query, "&", -1);
	for (int i = 0; pairs[i]; i++) {
		char *eq, *key, *value;

		if (!*pairs[i])
			continue;
		g_strdelimit(pairs[i], "+", ' ');
		eq = strchr(pairs[i], '=');
		if (eq)
			*eq = '\0';
		key = g_uri_unescape_string(pairs[i], NULL);
		value = g_uri_unescape_string(eq ? eq + 1 : "", NULL);
		if (!key || !value || !g_utf8_validate(key, -1, NULL) ||
		    !g_utf8_validate(value, -1, NULL)) {
			*why = g_strdup("the query string is not valid percent-encoded UTF-8");
			g_free(key);
			g_free(value);
			g_strfreev(pairs);
			g_hash_table_unref(t);
			return NULL;
		}
		g_hash_table_replace(t, key, value);
	}
	g_strfreev(pairs);
	return t;
}

static int parse_score(const char *text, double *out)
{
	char *end = NULL;
	double v;

	if (!*text || strlen(text) > 32)
		return -EINVAL;
	v = g_ascii_strtod(text, &end);
	if (*end || !isfinite(v) || v < 0.0 || v > 1.0)
		return -EINVAL;
	*out = v;
	return 0;
}

static int parse_uint(const char *text, guint64 max, guint64 *out)
{
	if (!*text || strlen(text) > 20 || !g_ascii_isdigit(text[0]))
		return -EINVAL;
	return g_ascii_string_to_unsigned(text, 10, 0, max, out, NULL) ? 0 : -EINVAL;
}

static const char *const verdicts[] = { "accept", "reject", "marginal", NULL };
static const char *const classes[] = { "none", "surface", "vibration", "surface+vibration",
				       NULL };

static gboolean one_of(const char *value, const char *const *choices)
{
	return g_strv_contains(choices, value);
}

/* Fills f from the query; on a bad value returns -EINVAL with *why set to a
 * message naming the parameter (g_free it). The values are only ever bound
 * as SQL parameters by db_query. */
static int read_filter(GHashTable *q, struct db_filter *f, char **why)
{
	static const char *const known[] = { "verdict", "class", "min_score", "max_score",
					      "part", "reviewed", "limit", NULL };
	GHashTableIter it;
	gpointer key, value;
	const char *v;
	guint64 n;

	g_hash_table_iter_init(&it, q);
	while (g_hash_table_iter_next(&it, &key, &value))
		if (!one_of(key, known)) {
			*why = g_strdup_printf("unknown parameter '%.40s' (known: verdict, class, "
					       "min_score, max_score, part, reviewed, limit)",
					       (const char *)key);
			return -EINVAL;
		}
	f->limit = REVIEW_DEFAULT_LIMIT;
	if ((v = g_hash_table_lookup(q, "verdict")) && *v) {
		if (!one_of(v, verdicts))
			goto bad_verdict;
		f->verdict = v;
	}
	if ((v = g_hash_table_lookup(q, "class")) && *v) {
		if (!one_of(v, classes)) {
			*why = g_strdup("class is none, surface, vibration or surface+vibration");
			return -EINVAL;
		}
		f->defect_class = v;
	}
	if ((v = g_hash_table_lookup(q, "min_score")) && *v && parse_score(v, &f->min_score) < 0) {
		*why = g_strdup("min_score is a number from 0 to 1");
		return -EINVAL;
	}
	if ((v = g_hash_table_lookup(q, "max_score")) && *v && parse_score(v, &f->max_score) < 0) {
		*why = g_strdup("max_score is a number from 0 to 1");
		return -EINVAL;
	}
	if ((v = g_hash_table_lookup(q, "part")) && *v) {
		if (parse_uint(v, G_MAXUINT32, &n) < 0) {
			*why = g_strdup("part is a part id, a whole number from 0 to 4294967295");
			return -EINVAL;
		}
		f->part_id = (int64_t)n;
	}
	if ((v = g_hash_table_lookup(q, "reviewed")) && *v) {
		if (strcmp(v, "yes") != 0 && strcmp(v, "no") != 0) {
			*why = g_strdup("reviewed is yes or no");
			return -EINVAL;
		}
		f->reviewed = strcmp(v, "yes") == 0;
	}
	if ((v = g_hash_table_lookup(q, "limit")) && *v) {
		if (parse_uint(v, REVIEW_MAX_LIMIT, &n) < 0 || n == 0) {
			*why = g_strdup_printf("limit is a whole number from 1 to %d",
					       REVIEW_MAX_LIMIT);
			return -EINVAL;
		}
		f->limit = (int64_t)n;
	}
	return 0;

bad_verdict:
	*why = g_strdup("verdict is accept, reject or marginal");
	return -EINVAL;
}

/* ---- JSON ---- */

static void add_number(JsonBuilder *b, const char *name, double v)
{
	json_builder_set_member_name(b, name);
	if (isfinite(v))
		json_builder_add_double_value(b, v);
	else
		json_builder_add_null_value(b);
}

static void add_string(JsonBuilder *b, const char *name, const char *v)
{
	json_builder_set_member_name(b, name);
	if (v)
		json_builder_add_string_value(b, v);
	else
		json_builder_add_null_value(b);
}

static void add_int(JsonBuilder *b, const char *name, int64_t v)
{
	json_builder_set_member_name(b, name);
	json_builder_add_int_value(b, v);
}

static void add_row(JsonBuilder *b, const struct db_inspection *r)
{
	GDateTime *t = g_date_time_new_from_unix_utc(r->t_wall_us / G_USEC_PER_SEC);
	char *iso = t ? g_date_time_format_iso8601(t) : NULL;

	json_builder_begin_object(b);
	add_int(b, "id", r->id);
	add_int(b, "part_id", r->part_id);
	add_int(b, "trigger_counter", r->trigger_counter);
	add_int(b, "seq", (int64_t)r->seq);
	add_int(b, "t_wall_us", r->t_wall_us);
	add_string(b, "time", iso);
	add_string(b, "verdict", vigil_verdict_name((enum vigil_verdict)r->verdict));
	add_string(b, "class", vigil_class_name((enum vigil_defect_class)r->defect_class));
	add_int(b, "flags", r->flags);
	json_builder_set_member_name(b, "failsafe");
	json_builder_add_boolean_value(b, (r->flags & VIGIL_FLAG_FAILSAFE) != 0);
	add_number(b, "score", r->score);
	add_number(b, "vision_score", r->vision_score);
	add_number(b, "signal_score", r->signal_score);
	add_number(b, "latency_ms", r->latency_ms);
	add_number(b, "infer_ms", r->infer_ms);
	add_string(b, "model_version", r->model_version);
	add_string(b, "review", r->review);
	add_string(b, "review_verdict",
		   r->review ? vigil_verdict_name((enum vigil_verdict)r->review_verdict) : NULL);
	add_string(b, "review_note", r->review_note);
	json_builder_end_object(b);
	g_free(iso);
	if (t)
		g_date_time_unref(t);
}

static int add_row_cb(const struct db_inspection *row, void *data)
{
	add_row(data, row);
	return 0;
}

/* ---- GET /api/inspections ---- */

static void api_inspections(review_server *s, SoupServerMessage *msg, const char *query)
{
	struct db_filter f = DB_FILTER_ALL;
	JsonBuilder *b;
	struct db_row_cb cb;
	GHashTable *q;
	char *why = NULL, *err = NULL;

	if (!(q = parse_query(query, &why)) || read_filter(q, &f, &why) < 0) {
		reply_error(msg, SOUP_STATUS_BAD_REQUEST, "%s", why);
		goto out;
	}
	b = json_builder_new();
	cb = (struct db_row_cb){ add_row_cb, b };
	json_builder_begin_object(b);
	json_builder_set_member_name(b, "inspections");
	json_builder_begin_array(b);
	if (db_query(s->db_path, &f, &cb, &err) < 0) {
		g_warning("review: %s", err);
		reply_error(msg, SOUP_STATUS_INTERNAL_SERVER_ERROR, "%s", err);
		free(err);
		g_object_unref(b);
		goto out;
	}
	json_builder_end_array(b);
	add_int(b, "limit", f.limit);
	json_builder_end_object(b);
	reply_json(msg, SOUP_STATUS_OK, json_builder_get_root(b));
	g_object_unref(b);
out:
	g_free(why);
	if (q)
		g_hash_table_unref(q);
}

/* ---- media: a part's image, heatmap and vibration window ---- */

static void add_bearing(review_server *s, JsonBuilder *b)
{
	json_builder_set_member_name(b, "bearing");
	if (!s->have_bearing) {
		json_builder_add_null_value(b);
		return;
	}
	json_builder_begin_object(b);
	add_number(b, "shaft_hz", s->shaft_hz);
	add_number(b, "ftf_hz", s->bearing.ftf);
	add_number(b, "bpfo_hz", s->bearing.bpfo);
	add_number(b, "bpfi_hz", s->bearing.bpfi);
	add_number(b, "bsf_hz", s->bearing.bsf);
	json_builder_end_object(b);
}

/* One row of table media, copied out of the db_read_media callback. */
struct media_row {
	int64_t id;
	char *camera, *kind, *path;
	int64_t bytes;
};

struct media_search {
	int64_t part_id;
	JsonBuilder *list;        /* add every row to this array, or */
	int64_t want_id;          /* find the row with this id (-1: none), or */
	const char *want_kind;    /* the first of this kind */
	struct media_row found;
};

static int media_cb(const struct db_media *m, void *data)
{
	struct media_search *q = data;

	if (q->list) {
		char *url = g_strdup_printf("/api/parts/%" PRId64 "/media/%" PRId64, q->part_id,
					    m->id);

		json_builder_begin_object(q->list);
		add_int(q->list, "id", m->id);
		add_string(q->list, "kind", m->kind);
		add_string(q->list, "camera", m->camera);
		add_int(q->list, "bytes", m->bytes);
		add_string(q->list, "url", url);
		json_builder_end_object(q->list);
		g_free(url);
		return 0;
	}
	if (m->id != q->want_id && !(q->want_kind && strcmp(m->kind, q->want_kind) == 0))
		return 0;
	q->found = (struct media_row){ m->id, g_strdup(m->camera), g_strdup(m->kind),
				       g_strdup(m->path), m->bytes };
	return 1;
}

static void media_row_clear(struct media_row *r)
{
	g_free(r->camera);
	g_free(r->kind);
	g_free(r->path);
	memset(r, 0, sizeof *r);
}

/* ---- GET /api/parts/ID ---- */

struct latest {
	JsonBuilder *b;
	int64_t id;
	int verdict;
};

static int latest_cb(const struct db_inspection *row, void *data)
{
	struct latest *l = data;

	l->id = row->id;
	l->verdict = row->verdict;
	if (l->b) {
		json_builder_set_member_name(l->b, "inspection");
		add_row(l->b, row);
	}
	return 0;
}

/* The latest inspection of part_id: 0, -ENOENT, or an error replied. */
static int find_latest(review_server *s, SoupServerMessage *msg, int64_t part_id,
		       struct latest *l)
{
	struct db_filter f = DB_FILTER_ALL;
	struct db_row_cb cb = { latest_cb, l };
	char *err = NULL;

	f.part_id = part_id;
	f.limit = 1;
	l->id = -1;
	if (db_query(s->db_path, &f, &cb, &err) < 0) {
		g_warning("review: %s", err);
		reply_error(msg, SOUP_STATUS_INTERNAL_SERVER_ERROR, "%s", err);
		free(err);
		return -EIO;
	}
	return l->id < 0 ? -ENOENT : 0;
}

static void api_part(review_server *s, SoupServerMessage *msg, int64_t part_id)
{
	JsonBuilder *b = json_builder_new();
	struct latest l = { .b = b };
	struct media_search q = { .part_id = part_id, .want_id = -1 };
	struct vigil_vibration v;
	char *err = NULL;
	int rc;

	json_builder_begin_object(b);
	if ((rc = find_latest(s, msg, part_id, &l)) < 0) {
		if (rc == -ENOENT)
			reply_error(msg, SOUP_STATUS_NOT_FOUND, "no inspection of part %" PRId64,
				    part_id);
		goto out;
	}
	json_builder_set_member_name(b, "vibration");
	rc = db_read_vibration(s->db_path, l.id, &v, &err);
	if (rc == 0) {
		char zone[2] = { v.iso_zone, '\0' };

		json_builder_begin_object(b);
		add_number(b, "rms_velocity_mm_s", v.rms_velocity_mm_s);
		add_string(b, "iso_zone", v.iso_zone ? zone : NULL);
		add_number(b, "rms_accel_g", v.rms_accel_g);
		add_number(b, "hf_accel_g", v.hf_accel_g);
		add_number(b, "peak_g", v.peak_g);
		add_number(b, "crest_factor", v.crest_factor);
		add_number(b, "kurtosis", v.kurtosis);
		add_number(b, "ftf_env", v.ftf_env);
		add_number(b, "bpfo_env", v.bpfo_env);
		add_number(b, "bpfi_env", v.bpfi_env);
		add_number(b, "bsf_env", v.bsf_env);
		json_builder_end_object(b);
	} else if (rc == -ENOENT) {
		json_builder_add_null_value(b);
	} else {
		g_warning("review: %s", err);
		reply_error(msg, SOUP_STATUS_INTERNAL_SERVER_ERROR, "%s", err);
		free(err);
		goto out;
	}
	add_bearing(s, b);
	json_builder_set_member_name(b, "media");
	json_builder_begin_array(b);
	q.list = b;
	if (db_read_media(s->db_path, l.id, media_cb, &q, &err) < 0) {
		g_warning("review: %s", err);
		reply_error(msg, SOUP_STATUS_INTERNAL_SERVER_ERROR, "%s", err);
		free(err);
		goto out;
	}
	json_builder_end_array(b);
	json_builder_end_object(b);
	reply_json(msg, SOUP_STATUS_OK, json_builder_get_root(b));
out:
	g_object_unref(b);
}

/* ---- media files ---- */

/* A path from table media that may be opened below the media folder: not
 * absolute, no empty, "." or ".." segment, no backslash. The row is
 * vigild's own, but the file is a plain SQLite file anyone with write
 * access can change, so it is checked like client input. */
static gboolean media_path_ok(const char *rel)
{
	gboolean ok = *rel && rel[0] != '/' && !strchr(rel, '\\');
	char **seg = ok ? g_strsplit(rel, "/", -1) : NULL;

	for (int i = 0; ok && seg[i]; i++)
		ok = *seg[i] && strcmp(seg[i], ".") != 0 && strcmp(seg[i], "..") != 0;
	g_strfreev(seg);
	return ok;
}

/* Reads the file of row r: 0 with *out; -EACCES when its path leads out of
 * the media folder (checked again after links are resolved), -ENOENT when
 * it is gone (retention removes files before rows), -EFBIG, or another
 * negative errno; *why says which for the log. */
static int media_read(review_server *s, const struct media_row *r, GBytes **out, char **why)
{
	char *dir = NULL, *full = NULL, *err = NULL, *text = NULL;
	char real_dir[PATH_MAX], real_full[PATH_MAX];
	size_t dlen;
	gsize len = 0;
	struct stat st;
	int rc = -EACCES;

	if (!media_path_ok(r->path)) {
		*why = g_strdup_printf("media %" PRId64 ": path '%s' leaves the media folder", r->id,
				       r->path);
		goto out;
	}
	if (!(dir = db_media_dir(s->db_path, &err))) {
		*why = g_strdup_printf("media folder: %s", err ? err : "unknown");
		rc = -EIO;
		goto out;
	}
	full = g_build_filename(dir, r->path, NULL);
	if (!realpath(dir, real_dir) || !realpath(full, real_full)) {
		rc = -errno;
		*why = g_strdup_printf("media %" PRId64 ": %s: %s", r->id, full, g_strerror(errno));
		goto out;
	}
	dlen = strlen(real_dir);
	if (strncmp(real_full, real_dir, dlen) != 0 || real_full[dlen] != '/') {
		*why = g_strdup_printf("media %" PRId64 ": %s leads out of %s", r->id, full, dir);
		goto out;
	}
	if (stat(real_full, &st) < 0 || !S_ISREG(st.st_mode)) {
		*why = g_strdup_printf("media %" PRId64 ": %s is not a file", r->id, full);
		rc = -ENOENT;
		goto out;
	}
	if (st.st_size > REVIEW_MAX_MEDIA) {
		*why = g_strdup_printf("media %" PRId64 ": %s is too large", r->id, full);
		rc = -EFBIG;
		goto out;
	}
	if (!g_file_get_contents(real_full, &text, &len, NULL)) {
		*why = g_strdup_printf("media %" PRId64 ": cannot read %s", r->id, full);
		rc = -EIO;
		goto out;
	}
	*out = g_bytes_new_take(text, len);
	rc = 0;
out:
	free(dir);
	free(err);
	g_free(full);
	return rc;
}

/* Finds the media row of part_id's latest inspection with id media_id (or
 * the first of kind) and reads its file; 0 with *row and *data, or an
 * error replied. */
static int media_find(review_server *s, SoupServerMessage *msg, int64_t part_id,
		      int64_t media_id, const char *kind, struct media_row *row, GBytes **data)
{
	struct latest l = { 0 };
	struct media_search q = { .part_id = part_id, .want_id = media_id, .want_kind = kind };
	char *err = NULL, *why = NULL;
	int rc;

	if ((rc = find_latest(s, msg, part_id, &l)) < 0) {
		if (rc == -ENOENT)
			reply_error(msg, SOUP_STATUS_NOT_FOUND, "no inspection of part %" PRId64,
				    part_id);
		return rc;
	}
	if (db_read_media(s->db_path, l.id, media_cb, &q, &err) < 0) {
		g_warning("review: %s", err);
		reply_error(msg, SOUP_STATUS_INTERNAL_SERVER_ERROR, "%s", err);
		free(err);
		return -EIO;
	}
	if (!q.found.path) {
		reply_error(msg, SOUP_STATUS_NOT_FOUND, "part %" PRId64 " has no such media",
			    part_id);
		return -ENOENT;
	}
	if ((rc = media_read(s, &q.found, data, &why)) < 0) {
		g_warning("review: %s", why);
		if (rc == -EACCES)
			reply_error(msg, SOUP_STATUS_FORBIDDEN, "the media file is outside the media folder");
		else if (rc == -ENOENT)
			reply_error(msg, SOUP_STATUS_NOT_FOUND, "the media file is gone (retention?)");
		else
			reply_error(msg, SOUP_STATUS_INTERNAL_SERVER_ERROR, "cannot read the media file");
		g_free(why);
		media_row_clear(&q.found);
		return rc;
	}
	*row = q.found;
	return 0;
}

/* GET /api/parts/ID/media/MEDIA_ID: the file, by the row's id only; the
 * client never names a path. */
static void api_media(review_server *s, SoupServerMessage *msg, int64_t part_id,
		      int64_t media_id)
{
	struct media_row r = { 0 };
	GBytes *data = NULL;

	if (media_find(s, msg, part_id, media_id, NULL, &r, &data) < 0)
		return;
	reply_bytes(msg, SOUP_STATUS_OK,
		    strcmp(r.kind, "vibration") == 0 ? "audio/wav" : "image/png", data);
	g_bytes_unref(data);
	media_row_clear(&r);
}

static uint32_t le32(const guint8 *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* The samples of a mono IEEE float 32-bit WAV (what the log keeps):
 * 0 with *x (g_free) and *n, *rate_hz; -EINVAL for anything else. */
static int wav_read(const guint8 *d, gsize len, float **x, size_t *n, double *rate_hz)
{
	gboolean have_fmt = FALSE;
	gsize at = 12;

	if (len < 12 || memcmp(d, "RIFF", 4) != 0 || memcmp(d + 8, "WAVE", 4) != 0)
		return -EINVAL;
	while (at + 8 <= len) {
		uint32_t size = le32(d + at + 4);
		const guint8 *body = d + at + 8;

		if (size > len - at - 8)
			return -EINVAL;
		if (memcmp(d + at, "fmt ", 4) == 0) {
			if (size < 16 || (body[0] | body[1] << 8) != 3 || (body[2] | body[3] << 8) != 1 ||
			    (body[14] | body[15] << 8) != 32 || le32(body + 4) == 0)
				return -EINVAL;
			*rate_hz = le32(body + 4);
			have_fmt = TRUE;
		} else if (memcmp(d + at, "data", 4) == 0) {
			if (!have_fmt || size % 4)
				return -EINVAL;
			*n = size / 4;
			*x = g_new(float, MAX(*n, 1));
			for (size_t i = 0; i < *n; i++) {
				uint32_t bits = le32(body + 4 * i);

				memcpy(&(*x)[i], &bits, 4);
			}
			return 0;
		}
		at += 8 + (gsize)size + (size & 1);
	}
	return -EINVAL;
}

/* GET /api/parts/ID/vibration: the part's logged vibration window, its
 * envelope spectrum (computed here by the same meter the line reads its
 * bearing lines with) and the bearing defect frequencies to mark on it. */
static void api_vibration(review_server *s, SoupServerMessage *msg, int64_t part_id)
{
	struct media_row r = { 0 };
	GBytes *data = NULL;
	JsonBuilder *b;
	condition_meter *meter = NULL;
	struct vigil_vibration fig;
	const double *env;
	float *x = NULL;
	size_t n = 0, nbins = 0;
	double rate = 0, df = 0;

	if (media_find(s, msg, part_id, -1, "vibration", &r, &data) < 0)
		return;
	if (wav_read(g_bytes_get_data(data, NULL), g_bytes_get_size(data), &x, &n, &rate) < 0) {
		g_warning("review: media %" PRId64 " (%s) is not a mono float32 WAV", r.id, r.path);
		reply_error(msg, SOUP_STATUS_INTERNAL_SERVER_ERROR,
			    "the vibration file is not a mono 32-bit float WAV");
		goto out;
	}
	b = json_builder_new();
	json_builder_begin_object(b);
	add_int(b, "media_id", r.id);
	add_string(b, "sensor", r.camera);
	add_number(b, "rate_hz", rate);
	add_int(b, "samples", (int64_t)n);
	json_builder_set_member_name(b, "waveform_g");
	json_builder_begin_array(b);
	for (size_t i = 0; i < n && i < REVIEW_MAX_WAVEFORM; i++)
		json_builder_add_double_value(b, isfinite(x[i]) ? x[i] : 0.0);
	json_builder_end_array(b);
	add_bearing(s, b);
	json_builder_set_member_name(b, "envelope");
	if (s->hf_hz < rate / 2 &&
	    (meter = condition_meter_new(MIN(n, REVIEW_MAX_SPECTRUM), rate, s->hf_hz)) &&
	    condition_measure(meter, x, ISO_CLASS_I, s->have_bearing ? &s->bearing : NULL,
			      &fig) == 0 &&
	    (env = condition_envelope(meter, &nbins, &df))) {
		json_builder_begin_object(b);
		add_number(b, "df_hz", df);
		add_number(b, "band_hz", s->hf_hz);
		/* Read off this spectrum as the line reads them: equal to the
		 * logged figures when the window and settings are the line's. */
		add_number(b, "ftf_env", fig.ftf_env);
		add_number(b, "bpfo_env", fig.bpfo_env);
		add_number(b, "bpfi_env", fig.bpfi_env);
		add_number(b, "bsf_env", fig.bsf_env);
		json_builder_set_member_name(b, "magnitude");
		json_builder_begin_array(b);
		for (size_t i = 0; i < nbins; i++)
			json_builder_add_double_value(b, isfinite(env[i]) ? env[i] : 0.0);
		json_builder_end_array(b);
		json_builder_end_object(b);
	} else {
		json_builder_add_null_value(b);  /* too short, or the band is above Nyquist */
	}
	json_builder_end_object(b);
	reply_json(msg, SOUP_STATUS_OK, json_builder_get_root(b));
	g_object_unref(b);
out:
	condition_meter_free(meter);
	g_free(x);
	g_bytes_unref(data);
	media_row_clear(&r);
}

/* ---- POST /api/parts/ID/review ---- */

static void token_digest(const char *token, size_t len, guint8 out[32])
{
	GChecksum *c = g_checksum_new(G_CHECKSUM_SHA256);
	gsize n = 32;

	g_checksum_update(c, (const guchar *)token, (gssize)len);
	g_checksum_get_digest(c, out, &n);
	g_checksum_free(c);
}

/* Compares digests so that the time taken tells nothing about the token,
 * not even its length. */
static gboolean authorized(review_server *s, SoupServerMessage *msg)
{
	const char *h = soup_message_headers_get_one(soup_server_message_get_request_headers(msg),
						     "Authorization");
	guint8 given[32];
	guint8 diff = 0;

	if (!h || g_ascii_strncasecmp(h, "Bearer ", 7) != 0)
		return FALSE;
	h += 7;
	token_digest(h, strlen(h), given);
	for (int i = 0; i < 32; i++)
		diff |= (guint8)(given[i] ^ s->token_sha256[i]);
	return diff == 0;
}

static const char *member_string(JsonObject *o, const char *name, gboolean *bad)
{
	JsonNode *n = json_object_get_member(o, name);

	if (!n || JSON_NODE_HOLDS_NULL(n))
		return NULL;
	if (!JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_STRING) {
		*bad = TRUE;
		return NULL;
	}
	return json_node_get_string(n);
}

static void api_review(review_server *s, SoupServerMessage *msg, int64_t part_id)
{
	SoupMessageBody *body = soup_server_message_get_request_body(msg);
	JsonParser *parser = NULL;
	JsonObject *o;
	GBytes *bytes = NULL;
	struct latest l = { 0 };
	const char *decision, *verdict_name, *note, *reviewer;
	gboolean bad = FALSE;
	char *err = NULL;
	int verdict = 0, rc;

	if (!s->have_token) {
		reply_error(msg, SOUP_STATUS_FORBIDDEN,
			    "reviews are disabled: [review] has no token or token_file");
		return;
	}
	if (!authorized(s, msg)) {
		soup_message_headers_replace(soup_server_message_get_response_headers(msg),
					     "WWW-Authenticate", "Bearer realm=\"vigil\"");
		reply_error(msg, SOUP_STATUS_UNAUTHORIZED,
			    "a review needs the header Authorization: Bearer TOKEN");
		return;
	}
	bytes = soup_message_body_flatten(body);
	if (g_bytes_get_size(bytes) > REVIEW_MAX_BODY) {
		reply_error(msg, SOUP_STATUS_REQUEST_ENTITY_TOO_LARGE, "the body is too large");
		goto out;
	}
	parser = json_parser_new();
	if (!json_parser_load_from_data(parser, g_bytes_get_data(bytes, NULL),
					(gssize)g_bytes_get_size(bytes), NULL) ||
	    !JSON_NODE_HOLDS_OBJECT(json_parser_get_root(parser))) {
		reply_error(msg, SOUP_STATUS_BAD_REQUEST,
			    "the body is a JSON object: {\"decision\": \"confirm\"|\"overrule\", "
			    "\"verdict\": ..., \"note\": ..., \"reviewer\": ...}");
		goto out;
	}
	o = json_node_get_object(json_parser_get_root(parser));
	decision = member_string(o, "decision", &bad);
	verdict_name = member_string(o, "verdict", &bad);
	note = member_string(o, "note", &bad);
	reviewer = member_string(o, "reviewer", &bad);
	if (bad || !decision ||
	    (strcmp(decision, "confirm") != 0 && strcmp(decision, "overrule") != 0)) {
		reply_error(msg, SOUP_STATUS_BAD_REQUEST,
			    "decision is \"confirm\" or \"overrule\"; verdict, note and reviewer "
			    "are strings");
		goto out;
	}
	if ((note && strlen(note) > REVIEW_MAX_NOTE) || (reviewer && strlen(reviewer) > 100)) {
		reply_error(msg, SOUP_STATUS_BAD_REQUEST,
			    "the note is at most %d bytes, the reviewer 100", REVIEW_MAX_NOTE);
		goto out;
	}
	if (strcmp(decision, "overrule") == 0) {
		for (int v = VIGIL_VERDICT_ACCEPT; v <= VIGIL_VERDICT_MARGINAL; v++)
			if (verdict_name &&
			    strcmp(verdict_name, vigil_verdict_name((enum vigil_verdict)v)) == 0)
				verdict = v;
		if (!verdict) {
			reply_error(msg, SOUP_STATUS_BAD_REQUEST,
				    "an overrule names the right verdict: accept, reject or marginal");
			goto out;
		}
	}
	if ((rc = find_latest(s, msg, part_id, &l)) < 0) {
		if (rc == -ENOENT)
			reply_error(msg, SOUP_STATUS_NOT_FOUND, "no inspection of part %" PRId64,
				    part_id);
		goto out;
	}
	if (!verdict)
		verdict = l.verdict;  /* confirming keeps the line's verdict */
	rc = db_review(s->db_path, part_id, decision, verdict, note && *note ? note : NULL,
		       reviewer && *reviewer ? reviewer : "web", &err);
	if (rc < 0) {
		g_warning("review: %s", err ? err : db_strerror(rc));
		reply_error(msg, rc == -ENOENT ? SOUP_STATUS_NOT_FOUND
					       : SOUP_STATUS_INTERNAL_SERVER_ERROR,
			    "%s", err ? err : db_strerror(rc));
		free(err);
		goto out;
	}
	g_message("review: part %" PRId64 " %s (%s) by %s", part_id,
		  strcmp(decision, "confirm") == 0 ? "confirmed" : "overruled",
		  vigil_verdict_name((enum vigil_verdict)verdict),
		  reviewer && *reviewer ? reviewer : "web");
	{
		JsonBuilder *b = json_builder_new();

		json_builder_begin_object(b);
		add_int(b, "part_id", part_id);
		add_string(b, "decision", decision);
		add_string(b, "verdict", vigil_verdict_name((enum vigil_verdict)verdict));
		json_builder_end_object(b);
		reply_json(msg, SOUP_STATUS_OK, json_builder_get_root(b));
		g_object_unref(b);
	}
out:
	if (parser)
		g_object_unref(parser);
	if (bytes)
		g_bytes_unref(bytes);
}

/* ---- status and metrics ---- */

static void take_sample(review_server *s, struct rate_sample *out)
{
	struct line_stats st;
	struct line_health h;
	uint64_t lat = 0;

	line_get_stats(s->line, &st);
	line_get_health(s->line, &h);
	for (int b = 0; b <= LINE_LATENCY_BUCKETS; b++)
		lat += st.latency_parts[b];
	*out = (struct rate_sample){
		.t_us = g_get_monotonic_time(),
		.t_wall_us = g_get_real_time(),
		.parts = st.results_written,
		.accepted = st.accepted,
		.latency_parts = lat,
		.latency_sum_ms = st.latency_sum_ms,
	};
	for (int i = 0; i < h.cameras && i < LINE_HEALTH_CAMERAS; i++)
		out->camera_frames[i] = h.camera[i].frames;
}

/* Rate, yield and mean latency from sample old to sample now; NAN where
 * there is nothing to measure. */
static void rates_between(const struct rate_sample *old, const struct rate_sample *now,
			  double *rate, double *yield, double *latency_ms)
{
	uint64_t parts = now->parts - old->parts;

	*rate = *yield = *latency_ms = NAN;
	if (now->t_us <= old->t_us + 500000)
		return;
	*rate = (double)parts * 60e6 / (double)(now->t_us - old->t_us);
	if (parts)
		*yield = (double)(now->accepted - old->accepted) / (double)parts;
	if (now->latency_parts > old->latency_parts)
		*latency_ms = (now->latency_sum_ms - old->latency_sum_ms) /
			      (double)(now->latency_parts - old->latency_parts);
}

/* The sample RATE_SAMPLES - 1 seconds before the newest one, or the oldest. */
static const struct rate_sample *rate_base(const review_server *s)
{
	return s->nsamples ? &s->samples[MAX(0, s->nsamples - RATE_SAMPLES)] : NULL;
}

static gboolean on_sample(gpointer data)
{
	review_server *s = data;

	if (s->nsamples == HISTORY_SAMPLES) {
		memmove(s->samples, s->samples + 1, sizeof s->samples[0] * (HISTORY_SAMPLES - 1));
		s->nsamples--;
	}
	take_sample(s, &s->samples[s->nsamples++]);
	return G_SOURCE_CONTINUE;
}

/* The smallest bucket bound that holds fraction q of the parts. */
static double latency_quantile_le(const struct line_stats *st, double q)
{
	uint64_t total = 0, seen = 0;

	for (int b = 0; b <= LINE_LATENCY_BUCKETS; b++)
		total += st->latency_parts[b];
	if (total == 0)
		return NAN;
	for (int b = 0; b < LINE_LATENCY_BUCKETS; b++) {
		seen += st->latency_parts[b];
		if ((double)seen >= q * (double)total)
			return line_latency_bounds_ms[b];
	}
	return INFINITY;
}

static void api_status(review_server *s, SoupServerMessage *msg)
{
	JsonBuilder *b = json_builder_new();

	json_builder_begin_object(b);
	add_number(b, "uptime_s", (double)(g_get_monotonic_time() - s->started_us) / 1e6);
	json_builder_set_member_name(b, "writes_enabled");
	json_builder_add_boolean_value(b, s->have_token);
	add_string(b, "database", s->db_path);
	json_builder_set_member_name(b, "line");
	json_builder_add_boolean_value(b, s->line != NULL);
	if (s->line) {
		struct line_stats st;
		struct line_health h;
		struct rate_sample now;
		const struct rate_sample *old = rate_base(s);
		double rate = NAN, recent_yield = NAN, recent_latency = NAN;

		line_get_stats(s->line, &st);
		line_get_health(s->line, &h);
		take_sample(s, &now);
		if (old)
			rates_between(old, &now, &rate, &recent_yield, &recent_latency);
		add_int(b, "parts", (int64_t)st.results_written);
		add_int(b, "accepted", (int64_t)st.accepted);
		add_int(b, "rejected", (int64_t)st.rejected);
		add_int(b, "marginal", (int64_t)st.marginal);
		add_int(b, "failsafe", (int64_t)st.failsafe);
		add_int(b, "missed_triggers", (int64_t)st.missed_triggers);
		add_number(b, "rate_per_min", rate);
		add_number(b, "yield", st.results_written
					       ? (double)st.accepted / (double)st.results_written
					       : NAN);
		add_number(b, "recent_yield", recent_yield);
		add_number(b, "recent_latency_ms", recent_latency);
		add_number(b, "latency_p50_le_ms", latency_quantile_le(&st, 0.5));
		add_number(b, "latency_p99_le_ms", latency_quantile_le(&st, 0.99));
		json_builder_set_member_name(b, "plc_connected");
		json_builder_add_boolean_value(b, h.plc_connected != 0);
		add_int(b, "cameras", h.cameras);
		add_int(b, "cameras_up", h.cameras_up);
		json_builder_set_member_name(b, "queues");
		json_builder_begin_object(b);
		add_int(b, "inspect", (int64_t)h.q_inspect);
		add_int(b, "results", (int64_t)h.q_results);
		add_int(b, "log", (int64_t)h.q_log);
		json_builder_end_object(b);
		add_int(b, "db_rows_written", (int64_t)h.db_rows_written);
		add_int(b, "db_rows_failed", (int64_t)h.db_rows_failed);
	} else {
		char *err = NULL;
		int64_t n = db_count_inspections(s->db_path, &err);

		add_int(b, "inspections", n < 0 ? -1 : n);
		free(err);
	}
	json_builder_end_object(b);
	reply_json(msg, SOUP_STATUS_OK, json_builder_get_root(b));
	g_object_unref(b);
}

/* GET /api/history: rate, yield and mean latency once a second over the
 * last HISTORY_SAMPLES seconds, each over the RATE_SAMPLES window before
 * it, for the status charts. Arrays of equal length; null where nothing
 * was measured. */
static void api_history(review_server *s, SoupServerMessage *msg)
{
	static const char *const names[] = { "rate_per_min", "yield", "latency_ms" };
	JsonBuilder *b = json_builder_new();

	json_builder_begin_object(b);
	json_builder_set_member_name(b, "line");
	json_builder_add_boolean_value(b, s->line != NULL);
	add_int(b, "window_s", RATE_SAMPLES - 1);
	json_builder_set_member_name(b, "t");
	json_builder_begin_array(b);
	for (int i = 1; s->line && i < s->nsamples; i++)
		json_builder_add_double_value(b, (double)s->samples[i].t_wall_us / 1e6);
	json_builder_end_array(b);
	for (int k = 0; k < 3; k++) {
		json_builder_set_member_name(b, names[k]);
		json_builder_begin_array(b);
		for (int i = 1; s->line && i < s->nsamples; i++) {
			double v[3];

			rates_between(&s->samples[MAX(0, i - (RATE_SAMPLES - 1))], &s->samples[i],
				      &v[0], &v[1], &v[2]);
			if (isfinite(v[k]))
				json_builder_add_double_value(b, v[k]);
			else
				json_builder_add_null_value(b);
		}
		json_builder_end_array(b);
	}
	json_builder_end_object(b);
	reply_json(msg, SOUP_STATUS_OK, json_builder_get_root(b));
	g_object_unref(b);
}

static void metric_head(GString *m, const char *name, const char *type, const char *help)
{
	g_string_append_printf(m, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void metric(GString *m, const char *name, const char *labels, double v)
{
	char num[G_ASCII_DTOSTR_BUF_SIZE];

	g_ascii_dtostr(num, sizeof num, v);
	g_string_append_printf(m, "%s%s %s\n", name, labels ? labels : "", num);
}

/* A camera's name as a label value: [camera.NAME] allows what the config
 * parser allows, so escape the three characters the format reserves. */
static void metric_camera(GString *m, const char *name, const char *camera, double v)
{
	GString *label = g_string_new("{camera=\"");

	for (const char *c = camera; *c; c++) {
		if (*c == '\\' || *c == '"')
			g_string_append_c(label, '\\');
		if (*c == '\n')
			g_string_append(label, "\\n");
		else
			g_string_append_c(label, *c);
	}
	g_string_append(label, "\"}");
	metric(m, name, label->str, v);
	g_string_free(label, TRUE);
}

/* Frames per second of camera i over the rate window, from the sampler. */
static double camera_fps(const review_server *s, int i, uint64_t frames_now)
{
	const struct rate_sample *old = rate_base(s);
	int64_t dt;

	if (!old || (dt = g_get_monotonic_time() - old->t_us) < 500000)
		return 0;
	return (double)(frames_now - old->camera_frames[i]) * 1e6 / (double)dt;
}

/* The samples of one Prometheus histogram from per-bucket (not
 * cumulative) counts; label is NULL or one label pair, e.g. stage="x". */
/* bounds and sum are in ms for a histogram of seconds (unit 1000), as
 * they are for a count (unit 1). */
static void metric_histogram_unit(GString *m, const char *name, const char *label,
				  const uint64_t *parts, const double *bounds_ms, int nbounds,
				  double sum_ms, double unit)
{
	char series[96], labels[160], num[G_ASCII_DTOSTR_BUF_SIZE];
	uint64_t cum = 0;

	g_snprintf(series, sizeof series, "%s_bucket", name);
	for (int b = 0; b <= nbounds; b++) {
		cum += parts[b];
		if (b < nbounds)
			g_ascii_dtostr(num, sizeof num, bounds_ms[b] / unit);
		g_snprintf(labels, sizeof labels, "{%s%sle=\"%s\"}", label ? label : "",
			   label ? "," : "", b < nbounds ? num : "+Inf");
		metric(m, series, labels, (double)cum);
	}
	g_snprintf(labels, sizeof labels, "{%s}", label ? label : "");
	g_snprintf(series, sizeof series, "%s_sum", name);
	metric(m, series, label ? labels : NULL, sum_ms / unit);
	g_snprintf(series, sizeof series, "%s_count", name);
	metric(m, series, label ? labels : NULL, (double)cum);
}

static void metric_histogram(GString *m, const char *name, const char *label,
			     const uint64_t *parts, const double *bounds_ms, int nbounds,
			     double sum_ms)
{
	metric_histogram_unit(m, name, label, parts, bounds_ms, nbounds, sum_ms, 1000.0);
}

/* Prometheus text exposition format 0.0.4. */
static void serve_metrics(review_server *s, SoupServerMessage *msg)
{
	GString *m = g_string_new(NULL);

	metric_head(m, "vigil_review_up", "gauge", "The review server answers.");
	metric(m, "vigil_review_up", NULL, 1);
	metric_head(m, "vigil_review_connections", "gauge",
		    "Connections open to the review server ([review] max_connections).");
	metric(m, "vigil_review_connections", NULL, s->open_conns.length);
	metric_head(m, "vigil_review_refused_total", "counter",
		    "Requests answered before they were read: max_connections (503), "
		    "request_timeout (408), body (400, 411 or 413 on the headers).");
	for (int i = 0; i < REFUSALS; i++) {
		char label[64];

		g_snprintf(label, sizeof label, "{reason=\"%s\"}", refusal_names[i]);
		metric(m, "vigil_review_refused_total", label, (double)s->refused[i]);
	}
	metric_head(m, "vigil_line_running", "gauge", "1 when this vigild runs the line.");
	metric(m, "vigil_line_running", NULL, s->line ? 1 : 0);
	if (s->line) {
		struct line_stats st;
		struct line_health h;

		line_get_stats(s->line, &st);
		line_get_health(s->line, &h);
		metric_head(m, "vigil_parts_total", "counter",
			    "Parts answered to the PLC, by verdict (fail-safe rejects included).");
		metric(m, "vigil_parts_total", "{verdict=\"accept\"}", (double)st.accepted);
		metric(m, "vigil_parts_total", "{verdict=\"reject\"}", (double)st.rejected);
		metric(m, "vigil_parts_total", "{verdict=\"marginal\"}", (double)st.marginal);
		metric_head(m, "vigil_failsafe_total", "counter",
			    "Fail-safe rejects by cause (overrun: never presented to the PLC).");
		for (int c = 0; c < LINE_FAILSAFE_CAUSES; c++) {
			char *label = g_strdup_printf("{cause=\"%s\"}",
						      line_failsafe_cause_names[c]);

			metric(m, "vigil_failsafe_total", label, (double)st.failsafe_by[c]);
			g_free(label);
		}
		metric_head(m, "vigil_triggers_total", "counter", "Triggers taken from the PLC.");
		metric(m, "vigil_triggers_total", NULL, (double)st.triggers);
		metric_head(m, "vigil_missed_triggers_total", "counter",
			    "Triggers the PLC counted that vigild never saw.");
		metric(m, "vigil_missed_triggers_total", NULL, (double)st.missed_triggers);
		metric_head(m, "vigil_inspected_total", "counter", "Parts run through the model.");
		metric(m, "vigil_inspected_total", NULL, (double)st.inspected);

		metric_head(m, "vigil_latency_seconds", "histogram",
			    "Trigger to PLC result, per logged part.");
		metric_histogram(m, "vigil_latency_seconds", NULL, st.latency_parts,
				 line_latency_bounds_ms, LINE_LATENCY_BUCKETS, st.latency_sum_ms);
		metric_head(m, "vigil_stage_seconds", "histogram",
			    "Time per stage: capture_wait (trigger to frames and vibration window "
			    "in hand), inference, plc_write (one result write), db_write (row "
			    "queued to its commit, which the result waits for).");
		for (int i = 0; i < LINE_STAGES; i++) {
			char label[64];

			g_snprintf(label, sizeof label, "stage=\"%s\"", line_stage_names[i]);
			metric_histogram(m, "vigil_stage_seconds", label, st.stage_parts[i],
					 line_stage_bounds_ms, LINE_STAGE_BUCKETS,
					 st.stage_sum_ms[i]);
		}

		metric_head(m, "vigil_infer_batch_size", "histogram",
			    "Parts judged by one model run ([model] max_batch; a batch "
			    "takes only parts already waiting).");
		metric_histogram_unit(m, "vigil_infer_batch_size", NULL, st.batch_parts,
				      line_batch_bounds, LINE_BATCH_BUCKETS, (double)st.batch_sum,
				      1.0);

		metric_head(m, "vigil_queue_depth", "gauge", "Parts waiting in each queue.");
		metric(m, "vigil_queue_depth", "{queue=\"inspect\"}", (double)h.q_inspect);
		metric(m, "vigil_queue_depth", "{queue=\"results\"}", (double)h.q_results);
		metric(m, "vigil_queue_depth", "{queue=\"log\"}", (double)h.q_log);
		metric_head(m, "vigil_plc_link_up", "gauge", "1 while the PLC link is up.");
		metric(m, "vigil_plc_link_up", NULL, h.plc_connected ? 1 : 0);
		metric_head(m, "vigil_cameras_up", "gauge", "Cameras delivering frames.");
		metric(m, "vigil_cameras_up", NULL, h.cameras_up);
		metric_head(m, "vigil_cameras", "gauge", "Cameras configured.");
		metric(m, "vigil_cameras", NULL, h.cameras);
		metric_head(m, "vigil_camera_up", "gauge", "1 while this camera delivers frames.");
		for (int i = 0; i < h.cameras; i++)
			metric_camera(m, "vigil_camera_up", h.camera[i].name, h.camera[i].up);
		metric_head(m, "vigil_camera_frames_total", "counter",
			    "Frames this camera delivered since vigild started.");
		for (int i = 0; i < h.cameras; i++)
			metric_camera(m, "vigil_camera_frames_total", h.camera[i].name,
				      (double)h.camera[i].frames);
		metric_head(m, "vigil_camera_fps", "gauge",
			    "Frames per second from this camera over the last 10 s.");
		for (int i = 0; i < h.cameras; i++)
			metric_camera(m, "vigil_camera_fps", h.camera[i].name,
				      camera_fps(s, i, h.camera[i].frames));
		metric_head(m, "vigil_db_rows_logged_total", "counter",
			    "Inspection rows handed to the database writer.");
		metric(m, "vigil_db_rows_logged_total", NULL, (double)st.rows_logged);
		metric_head(m, "vigil_db_rows_written_total", "counter",
			    "Rows of tables inspections, events and trend committed by the "
			    "database writer (what the file holds, less what retention removed).");
		metric(m, "vigil_db_rows_written_total", NULL, (double)h.db_rows_written);
		metric_head(m, "vigil_db_rows_failed_total", "counter",
			    "Rows (inspections, events, trend) given up for good: the sum of "
			    "vigil_db_rows_dropped_total, and rows the log could not even queue.");
		metric(m, "vigil_db_rows_failed_total", NULL,
		       (double)(h.db_rows_failed + st.rows_failed));
		metric_head(m, "vigil_db_rows_dropped_total", "counter",
			    "Rows the database writer gave up, by table and cause: spool_full "
			    "(writes failed longer than [database] spool_rows could hold), refused "
			    "(the database refused the row itself), closed (still spooled when "
			    "vigild stopped).");
		for (int t = 0; t < DB_NTABLES; t++)
			for (int c = 0; c < DB_NDROP_CAUSES; c++) {
				char labels[80];

				g_snprintf(labels, sizeof labels, "{table=\"%s\",cause=\"%s\"}",
					   db_table_name(t), db_drop_cause_name(c));
				metric(m, "vigil_db_rows_dropped_total", labels,
				       (double)h.db_rows_dropped[t][c]);
			}
		metric_head(m, "vigil_db_spool_rows", "gauge",
			    "Rows waiting in memory for the disk to take writes again.");
		metric(m, "vigil_db_spool_rows", NULL, (double)h.db_spool_depth);
		metric_head(m, "vigil_db_media_dropped_total", "counter",
			    "Parts whose files were not kept (media writer behind, the disk "
			    "refused them, or their row waited in the spool).");
		metric(m, "vigil_db_media_dropped_total", NULL, (double)h.db_media_dropped);
		metric_head(m, "vigil_db_ok", "gauge",
			    "0 while the database fault is raised (status word bit 6 clear): a "
			    "write failed, or results went to the PLC before their rows were "
			    "committed. Verdicts are not affected.");
		metric(m, "vigil_db_ok", NULL, h.db_ok);
		metric_head(m, "vigil_db_write_lag_seconds", "gauge",
			    "Queueing to commit of the oldest row in the database writer's last "
			    "batch.");
		metric(m, "vigil_db_write_lag_seconds", NULL, h.db_write_lag_ms / 1000.0);
		metric_head(m, "vigil_db_write_lag_max_seconds", "gauge",
			    "The longest queueing to commit the database writer has seen.");
		metric(m, "vigil_db_write_lag_max_seconds", NULL, h.db_write_lag_max_ms / 1000.0);
		metric_head(m, "vigil_db_queue_high_water", "gauge",
			    "The most rows that have waited for the database writer at once.");
		metric(m, "vigil_db_queue_high_water", NULL, (double)h.db_queue_high_water);
	}
	reply_text(msg, SOUP_STATUS_OK, "text/plain; version=0.0.4; charset=utf-8", m);
	g_string_free(m, TRUE);
}

/* ---- routing ---- */

enum part_route { ROUTE_PART, ROUTE_REVIEW, ROUTE_MEDIA, ROUTE_VIBRATION };

/* Reads a decimal id of 1 to 10 digits at *p (up to G_MAXUINT32), moving
 * *p past it; -1 when there is none. */
static int64_t read_id(const char **p)
{
	const char *end = *p;
	char digits[16];
	guint64 id;

	while (g_ascii_isdigit(*end))
		end++;
	if (end == *p || end - *p > 10)
		return -1;
	memcpy(digits, *p, (size_t)(end - *p));
	digits[end - *p] = '\0';
	if (parse_uint(digits, G_MAXUINT32, &id) < 0)
		return -1;
	*p = end;
	return (int64_t)id;
}

/* "/api/parts/ID", ".../review", ".../vibration" or ".../media/MEDIA_ID":
 * the part id, the route and (media) the media id; -1 for anything else. */
static int64_t part_route(const char *path, enum part_route *route, int64_t *media_id)
{
	const char *p = path + strlen("/api/parts/");
	int64_t id = read_id(&p);

	if (id < 0)
		return -1;
	if (!*p)
		*route = ROUTE_PART;
	else if (strcmp(p, "/review") == 0)
		*route = ROUTE_REVIEW;
	else if (strcmp(p, "/vibration") == 0)
		*route = ROUTE_VIBRATION;
	else if (g_str_has_prefix(p, "/media/")) {
		p += strlen("/media/");
		if ((*media_id = read_id(&p)) < 0 || *p)
			return -1;
		*route = ROUTE_MEDIA;
	} else
		return -1;
	return id;
}

/* A Content-Length that is not a plain count of bytes: libsoup reads
 * "-1" as 2^64 - 1 and would wait for that body. */
static gboolean bad_content_length(SoupMessageHeaders *h)
{
	const char *v = soup_message_headers_get_one(h, "Content-Length");

	if (!v)
		return FALSE;
	while (*v == ' ' || *v == '\t')
		v++;
	if (!g_ascii_isdigit(*v))
		return TRUE;
	while (g_ascii_isdigit(*v))
		v++;
	while (*v == ' ' || *v == '\t')
		v++;
	return *v != '\0';
}

/* Whether a body follows the headers, which libsoup would read (or wait
 * for) before it writes any answer. */
static gboolean body_follows(SoupMessageHeaders *h)
{
	switch (soup_message_headers_get_encoding(h)) {
	case SOUP_ENCODING_NONE:
		return FALSE;
	case SOUP_ENCODING_CONTENT_LENGTH:
		return soup_message_headers_get_content_length(h) != 0;
	default:
		return TRUE;
	}
}

/* Refuses what no page of this server would send, after the headers and
 * before the body is read: a long request target, a large, unsized or
 * malformed body length, and dot segments or escaped slashes in the path.
 * libsoup reads a declared body before it writes an answer, so a refused
 * request with a body is answered on the socket at once and the
 * connection closed (answer_on_socket); the status set here only keeps the
 * handler from acting on a body that had already arrived whole. */
static void early_handler(SoupServer *server, SoupServerMessage *msg, const char *path,
			  GHashTable *query, gpointer data)
{
	review_server *s = data;
	GUri *uri = soup_server_message_get_uri(msg);
	const char *raw_path = g_uri_get_path(uri);
	const char *raw_query = g_uri_get_query(uri);
	SoupMessageHeaders *h = soup_server_message_get_request_headers(msg);
	const char *why = NULL;
	guint status = 0;
	struct review_conn *c;
	char *decoded;

	(void)server;
	(void)path;
	(void)query;
	decoded = g_uri_unescape_string(raw_path, "/");
	if ((raw_query && strlen(raw_query) > REVIEW_MAX_QUERY) || strlen(raw_path) > REVIEW_MAX_PATH) {
		status = SOUP_STATUS_REQUEST_URI_TOO_LONG;
		why = "the request URI is too long";
	} else if (!decoded || strstr(decoded, "/../") || g_str_has_suffix(decoded, "/..") ||
		   strstr(decoded, "/./") || g_str_has_suffix(decoded, "/.") ||
		   strchr(decoded, '\\')) {
		status = SOUP_STATUS_BAD_REQUEST;
		why = "bad path";
	} else if (bad_content_length(h)) {
		status = SOUP_STATUS_BAD_REQUEST;
		why = "Content-Length is not a number of bytes";
	} else if (soup_message_headers_get_encoding(h) == SOUP_ENCODING_CHUNKED) {
		status = SOUP_STATUS_LENGTH_REQUIRED;
		why = "send a Content-Length";
	} else if (soup_message_headers_get_content_length(h) > REVIEW_MAX_BODY) {
		status = SOUP_STATUS_REQUEST_ENTITY_TOO_LARGE;
		why = "the body is too large";
	}
	g_free(decoded);
	if (!status)
		return;
	reply_error(msg, (int)status, "%s", why);
	if (body_follows(h) && (c = conn_of(s, msg))) {
		s->refused[REFUSED_BODY]++;
		conn_disarm(c);
		answer_on_socket(g_socket_connection_get_socket(c->conn), status, why);
	}
}

static void handler(SoupServer *server, SoupServerMessage *msg, const char *path,
		    GHashTable *query, gpointer data)
{
	review_server *s = data;
	const char *method = soup_server_message_get_method(msg);
	const char *raw_query = g_uri_get_query(soup_server_message_get_uri(msg));
	gboolean get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
	enum part_route route = ROUTE_PART;
	int64_t part, media_id = -1;

	(void)server;
	(void)query;
	if (soup_server_message_get_status(msg) != 0)
		return;  /* refused by the early handler */
	if (g_str_has_prefix(path, "/api/parts/") &&
	    (part = part_route(path, &route, &media_id)) >= 0) {
		if (route == ROUTE_REVIEW && strcmp(method, "POST") == 0)
			api_review(s, msg, part);
		else if (route == ROUTE_PART && get)
			api_part(s, msg, part);
		else if (route == ROUTE_MEDIA && get)
			api_media(s, msg, part, media_id);
		else if (route == ROUTE_VIBRATION && get)
			api_vibration(s, msg, part);
		else
			reply_error(msg, SOUP_STATUS_METHOD_NOT_ALLOWED, "method not allowed");
		return;
	}
	if (!get) {
		reply_error(msg, SOUP_STATUS_METHOD_NOT_ALLOWED, "method not allowed");
		return;
	}
	if (strcmp(path, "/") == 0 || strcmp(path, "/index.html") == 0)
		serve_asset(msg, s->static_dir, "index.html");
	else if (g_str_has_prefix(path, "/static/"))
		serve_asset(msg, s->static_dir, path + strlen("/static/"));
	else if (g_str_has_prefix(path, "/vendor/") && one_of(path + strlen("/vendor/"), chart_files)) {
		if (*s->charts_dir)
			serve_asset(msg, s->charts_dir, path + strlen("/vendor/"));
		else
			reply_error(msg, SOUP_STATUS_NOT_FOUND, "no charting library: charts_dir is empty");
	}
	else if (strcmp(path, "/api/inspections") == 0)
		api_inspections(s, msg, raw_query);
	else if (strcmp(path, "/api/status") == 0)
		api_status(s, msg);
	else if (strcmp(path, "/api/history") == 0)
		api_history(s, msg);
	else if (strcmp(path, "/metrics") == 0)
		serve_metrics(s, msg);
	else
		reply_error(msg, SOUP_STATUS_NOT_FOUND, "not found");
}

/* ---- set-up ---- */

/* The bearing of the first [vibration.NAME], read as the line reads it; a
 * section the line would refuse is left to the line to report, so here it
 * only means no marks on the spectrum. */
static void read_bearing(review_server *s, const config *cfg)
{
	char **groups = config_groups(cfg, "vibration.");
	struct bearing_geometry g = { 0 };
	char *err = NULL;

	s->hf_hz = 2000;
	if (groups[0] &&
	    config_get_double(cfg, groups[0], "hf_hz", 2000, 10, 1e6, &s->hf_hz, &err) == 0 &&
	    config_get_double(cfg, groups[0], "shaft_hz", 0, 0, 10000, &s->shaft_hz, &err) == 0 &&
	    config_get_double(cfg, groups[0], "bearing_balls", 0, 0, 1000, &g.balls, &err) == 0 &&
	    config_get_double(cfg, groups[0], "ball_diameter_mm", 0, 0, 1e4, &g.ball_diameter_mm,
			      &err) == 0 &&
	    config_get_double(cfg, groups[0], "pitch_diameter_mm", 0, 0, 1e5,
			      &g.pitch_diameter_mm, &err) == 0 &&
	    config_get_double(cfg, groups[0], "contact_angle_deg", 0, 0, 89, &g.contact_angle_deg,
			      &err) == 0 &&
	    s->shaft_hz > 0)
		s->have_bearing = condition_bearing_freqs(&g, s->shaft_hz, &s->bearing) == 0;
	g_free(err);
	g_strfreev(groups);
}

static int read_token(review_server *s, const config *cfg, char **err)
{
	char *token = NULL, *file = NULL, *text = NULL;
	GError *gerr = NULL;
	int rc = -EINVAL;

	if (config_get_string(cfg, "review", "token", "", &token, err) < 0 ||
	    config_get_string(cfg, "review", "token_file", "", &file, err) < 0)
		goto out;
	if (*token && *file) {
		*err = config_error(cfg, "review", "token_file", "give token or token_file, not both");
		goto out;
	}
	if (*file) {
		if (!g_file_get_contents(file, &text, NULL, &gerr)) {
			*err = config_error(cfg, "review", "token_file", "%s", gerr->message);
			g_error_free(gerr);
			goto out;
		}
		g_strstrip(text);
		g_free(token);
		token = text;
		text = NULL;
	}
	if (*token && strlen(token) < REVIEW_MIN_TOKEN) {
		*err = config_error(cfg, "review", *file ? "token_file" : "token",
				    "the token is shorter than %d characters", REVIEW_MIN_TOKEN);
		goto out;
	}
	if (*token && (strchr(token, '\n') || strchr(token, ' '))) {
		*err = config_error(cfg, "review", *file ? "token_file" : "token",
				    "the token is one word on one line");
		goto out;
	}
	s->have_token = *token != '\0';
	if (s->have_token)
		token_digest(token, strlen(token), s->token_sha256);
	rc = 0;
out:
	if (token)
		memset(token, 0, strlen(token));
	g_free(token);
	g_free(file);
	g_free(text);
	return rc;
}

static int listen_on(review_server *s, const config *cfg, char **err)
{
	char *listen = NULL;
	int port = 0, rc = -EINVAL;
	GInetAddress *addr = NULL;
	GSocketAddress *sa = NULL;
	GSocketAddress *bound = NULL;
	GError *gerr = NULL;

	if (config_get_string(cfg, "review", "listen", "127.0.0.1", &listen, err) < 0 ||
	    config_get_int(cfg, "review", "port", 8080, 0, 65535, &port, err) < 0)
		goto out;
	if (!(addr = g_inet_address_new_from_string(listen))) {
		*err = config_error(cfg, "review", "listen", "'%s' is not an IP address", listen);
		goto out;
	}
	sa = g_inet_socket_address_new(addr, (guint16)port);
	s->service = g_socket_service_new();
	g_socket_listener_set_backlog(G_SOCKET_LISTENER(s->service), REVIEW_LISTEN_BACKLOG);
	g_signal_connect(s->service, "incoming", G_CALLBACK(on_incoming), s);
	if (!g_socket_listener_add_address(G_SOCKET_LISTENER(s->service), sa,
					   G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_TCP, NULL,
					   &bound, &gerr)) {
		*err = config_error(cfg, "review", "port", "cannot listen on %s port %d: %s", listen,
				    port, gerr->message);
		rc = g_error_matches(gerr, G_IO_ERROR, G_IO_ERROR_ADDRESS_IN_USE) ? -EADDRINUSE
										  : -EIO;
		g_error_free(gerr);
		goto out;
	}
	s->port = g_inet_socket_address_get_port(G_INET_SOCKET_ADDRESS(bound));
	g_socket_service_start(s->service);
	g_message("review: serving http://%s%s%s:%d/ (%s)", strchr(listen, ':') ? "[" : "", listen,
		  strchr(listen, ':') ? "]" : "", s->port,
		  s->have_token ? "reviews need the token" : "read-only: no token configured");
	if (!g_inet_address_get_is_loopback(addr))
		g_warning("review: listening beyond this machine on %s; the page is plain HTTP",
			  listen);
	rc = 0;
out:
	if (bound)
		g_object_unref(bound);
	if (sa)
		g_object_unref(sa);
	if (addr)
		g_object_unref(addr);
	g_free(listen);
	return rc;
}

int review_server_new(const config *cfg, line *l, review_server **out, char **err)
{
	review_server *s = g_new0(review_server, 1);
	int rc = -EINVAL;

	*out = NULL;
	s->line = l;
	s->started_us = g_get_monotonic_time();
	s->conns = g_hash_table_new(g_str_hash, g_str_equal);
	if (config_check_keys(cfg, "review", review_keys, err) < 0 ||
	    config_get_string(cfg, "database", "path", NULL, &s->db_path, err) < 0 ||
	    config_get_string(cfg, "review", "static_dir", "", &s->static_dir, err) < 0 ||
	    config_get_string(cfg, "review", "charts_dir", VIGIL_CHARTS_DIR, &s->charts_dir,
			      err) < 0 ||
	    config_get_int(cfg, "review", "max_connections", 64, 1, 10000, &s->max_connections,
			   err) < 0 ||
	    config_get_int(cfg, "review", "request_timeout_s", 10, 1, 3600,
			   &s->request_timeout_s, err) < 0 ||
	    read_token(s, cfg, err) < 0)
		goto fail;
	read_bearing(s, cfg);
	if (!*s->static_dir) {
		g_clear_pointer(&s->static_dir, g_free);
	} else if (!g_file_test(s->static_dir, G_FILE_TEST_IS_DIR)) {
		*err = config_error(cfg, "review", "static_dir", "%s is not a folder", s->static_dir);
		goto fail;
	}
	s->soup = soup_server_new("server-header", "vigild", NULL);
	soup_server_add_early_handler(s->soup, NULL, early_handler, s, NULL);
	soup_server_add_handler(s->soup, NULL, handler, s, NULL);
	g_signal_connect(s->soup, "request-started", G_CALLBACK(on_request_started), s);
	g_signal_connect(s->soup, "request-read", G_CALLBACK(on_request_read), s);
	if ((rc = listen_on(s, cfg, err)) < 0)
		goto fail;
	if (l) {
		on_sample(s);
		s->sampler = g_timeout_add_seconds(1, on_sample, s);
	}
	*out = s;
	return 0;
fail:
	review_server_free(s);
	return rc;
}

int review_server_port(const review_server *s)
{
	return s->port;
}

void review_server_free(review_server *s)
{
	if (!s)
		return;
	if (s->sampler)
		g_source_remove(s->sampler);
	if (s->service) {
		g_socket_service_stop(s->service);
		g_socket_listener_close(G_SOCKET_LISTENER(s->service));
		g_object_unref(s->service);
	}
	if (s->soup)
		g_signal_handlers_disconnect_by_data(s->soup, s);
	/* Forget the connections before soup drops them, so that no weak
	 * notify reaches a freed server. */
	while (s->open_conns.head) {
		struct review_conn *c = s->open_conns.head->data;

		g_queue_unlink(&s->open_conns, &c->link);
		g_object_weak_unref(G_OBJECT(c->conn), conn_gone, c);
		conn_free(c);
	}
	if (s->conns)
		g_hash_table_unref(s->conns);
	if (s->soup) {
		soup_server_disconnect(s->soup);
		g_object_unref(s->soup);
	}
	g_free(s->db_path);
	g_free(s->static_dir);
	g_free(s->charts_dir);
	g_free(s);
}
