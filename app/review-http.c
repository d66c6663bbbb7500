/* The review server's HTTP side (review-private.h): replies, the
 * connections it accepts itself to cap them and time their requests,
 * the limits a request must keep before its body is read, the page's
 * files, and who a bearer token is (the shared token or a user of the
 * users file) and what that role may do. */
#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>

#include "app/review-private.h"

/* Request targets longer than these are refused before they are read:
 * nothing the page sends comes near them. */
#define REVIEW_MAX_PATH 512
#define REVIEW_MAX_QUERY 2048

#define RESOURCE_PREFIX "/org/vigil/review/"

/* ---- replies ---- */

static void common_headers(SoupServerMessage *msg)
{
	SoupMessageHeaders *h = soup_server_message_get_response_headers(msg);

	soup_message_headers_replace(h, "X-Content-Type-Options", "nosniff");
	/* blob: images: the page fetches a part's images with the bearer
	 * token (an <img> cannot send one) and shows what it fetched. */
	soup_message_headers_replace(h, "Content-Security-Policy",
				     "default-src 'self'; img-src 'self' blob:; "
				     "frame-ancestors 'none'");
	soup_message_headers_replace(h, "Cache-Control", "no-store");
}

void review__reply_bytes(SoupServerMessage *msg, int status, const char *type, GBytes *body)
{
	common_headers(msg);
	soup_server_message_set_status(msg, status, NULL);
	soup_server_message_set_response(msg, type, SOUP_MEMORY_COPY,
					 g_bytes_get_data(body, NULL), g_bytes_get_size(body));
}

void review__reply_text(SoupServerMessage *msg, int status, const char *type, GString *text)
{
	common_headers(msg);
	soup_server_message_set_status(msg, status, NULL);
	soup_server_message_set_response(msg, type, SOUP_MEMORY_COPY, text->str, text->len);
}

void review__reply_json(SoupServerMessage *msg, int status, JsonNode *root)
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

void review__reply_error(SoupServerMessage *msg, int status, const char *fmt, ...)
{
	va_list ap;
	char *text;

	va_start(ap, fmt);
	text = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	review__reply_json(msg, status, error_node(text));
	g_free(text);
}

void review__reply_db_error(SoupServerMessage *msg, int rc, const char *err)
{
	if (rc == -ENOENT || rc == -EINVAL) {
		review__reply_error(msg, rc == -ENOENT ? SOUP_STATUS_NOT_FOUND
						       : SOUP_STATUS_BAD_REQUEST,
				    "%s", err ? err : db_strerror(rc));
		return;
	}
	/* The reason names the log's path (and SQLite's words about it):
	 * the journal's, not the client's. */
	g_warning("review: %s", err ? err : db_strerror(rc));
	review__reply_error(msg, SOUP_STATUS_INTERNAL_SERVER_ERROR,
			    "the inspection log could not be read or written; vigild's log says "
			    "why");
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
void review__on_request_started(SoupServer *soup, SoupServerMessage *msg, gpointer data)
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
void review__on_request_read(SoupServer *soup, SoupServerMessage *msg, gpointer data)
{
	struct review_conn *c = conn_of(data, msg);

	(void)soup;
	soup_message_headers_replace(soup_server_message_get_response_headers(msg), "Connection",
				     "close");
	if (c)
		conn_disarm(c);
}

gboolean review__on_incoming(GSocketService *service, GSocketConnection *conn, GObject *source,
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

void review__drop_conns(review_server *s)
{
	while (s->open_conns.head) {
		struct review_conn *c = s->open_conns.head->data;

		g_queue_unlink(&s->open_conns, &c->link);
		g_object_weak_unref(G_OBJECT(c->conn), conn_gone, c);
		conn_free(c);
	}
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
void review__serve_asset(SoupServerMessage *msg, const char *dir, const char *name)
{
	GBytes *data = NULL;

	if (!asset_name_ok(name)) {
		review__reply_error(msg, SOUP_STATUS_BAD_REQUEST, "bad file name");
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
		review__reply_error(msg, SOUP_STATUS_NOT_FOUND, "no such file");
		return;
	}
	review__reply_bytes(msg, SOUP_STATUS_OK, content_type(name), data);
	g_bytes_unref(data);
}

/* ---- the token ---- */

void review__token_digest(const char *token, size_t len, guint8 out[32])
{
	GChecksum *c = g_checksum_new(G_CHECKSUM_SHA256);
	gsize n = 32;

	g_checksum_update(c, (const guchar *)token, (gssize)len);
	g_checksum_get_digest(c, out, &n);
	g_checksum_free(c);
}

/* The token of "Authorization: Bearer TOKEN", or NULL. */
static const char *bearer(SoupServerMessage *msg)
{
	const char *h = soup_message_headers_get_one(soup_server_message_get_request_headers(msg),
						     "Authorization");

	if (!h || g_ascii_strncasecmp(h, "Bearer ", 7) != 0)
		return NULL;
	return h + 7;
}

/* Compares digests so that the time taken tells nothing about the token,
 * not even its length. */
static gboolean shared_token(review_server *s, const char *token)
{
	guint8 given[32];
	guint8 diff = 0;

	review__token_digest(token, strlen(token), given);
	for (int i = 0; i < 32; i++)
		diff |= (guint8)(given[i] ^ s->token_sha256[i]);
	return diff == 0;
}

/* The role the token gives: 0 for none or an unknown one. */
static enum users_role token_role(review_server *s, const char *token, const char **name)
{
	const struct users_entry *e;

	*name = NULL;
	if (!token)
		return 0;
	if (s->users) {
		if (!(e = users_find_token(s->users, token, strlen(token))))
			return 0;
		*name = e->name;
		return e->role;
	}
	return s->have_token && shared_token(s, token) ? USERS_ROLE_ADMIN : 0;
}

/* 401 for a missing or unknown token; need names the role asked for. */
static void refuse_token(SoupServerMessage *msg, const char *token, enum users_role need)
{
	soup_message_headers_replace(soup_server_message_get_response_headers(msg),
				     "WWW-Authenticate", "Bearer realm=\"vigil\"");
	review__reply_error(msg, SOUP_STATUS_UNAUTHORIZED, token ?
			    "the token is not a known one (this needs the role %s)" :
			    "this needs the header Authorization: Bearer TOKEN (role %s)",
			    users_role_name(need));
}

gboolean review__authorized(review_server *s, SoupServerMessage *msg)
{
	const char *name;

	return token_role(s, bearer(msg), &name) >= USERS_ROLE_REVIEWER;
}

int review__require_role(review_server *s, SoupServerMessage *msg, enum users_role need,
			 struct review_caller *who)
{
	const char *token = bearer(msg), *name = NULL;
	enum users_role role;
	struct review_caller none = { 0 };

	if (!who)
		who = &none;
	*who = (struct review_caller){ 0 };
	if (need <= USERS_ROLE_VIEWER && !s->read_requires_token)
		return 0;
	if (!s->have_token && !s->users) {
		review__reply_error(msg, SOUP_STATUS_FORBIDDEN,
				    "this needs the role %s, and [review] has no users_file, token "
				    "or token_file: the server is read-only", users_role_name(need));
		return -EACCES;
	}
	role = token_role(s, token, &name);
	if (!role) {
		refuse_token(msg, token, need);
		return -EACCES;
	}
	if (role < need) {
		review__reply_error(msg, SOUP_STATUS_FORBIDDEN, "this needs the role %s; %s is a %s",
				    users_role_name(need), name, users_role_name(role));
		return -EACCES;
	}
	who->role = role;
	who->name = name;
	return 0;
}

void review__api_whoami(review_server *s, SoupServerMessage *msg)
{
	const char *token = bearer(msg), *name = NULL;
	enum users_role role = token_role(s, token, &name);
	JsonBuilder *b;

	/* No token is an answer (what the page needs to ask for); a wrong one
	 * is refused, so the page can say so at once. */
	if (token && !role) {
		refuse_token(msg, token, USERS_ROLE_VIEWER);
		return;
	}
	b = json_builder_new();
	json_builder_begin_object(b);
	json_builder_set_member_name(b, "signed_in");
	json_builder_add_boolean_value(b, role != 0);
	review__add_string(b, "name", name);
	review__add_string(b, "role", role ? users_role_name(role) : NULL);
	review__add_string(b, "auth", s->users ? "users" : s->have_token ? "token" : "none");
	json_builder_set_member_name(b, "read_requires_token");
	json_builder_add_boolean_value(b, s->read_requires_token);
	json_builder_end_object(b);
	review__reply_json(msg, SOUP_STATUS_OK, json_builder_get_root(b));
	g_object_unref(b);
}

/* ---- request limits ---- */

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
/* A review's body may carry a painted mask (review-labels.c). */
static gboolean is_review_path(const char *path)
{
	return g_str_has_prefix(path, "/api/parts/") && g_str_has_suffix(path, "/review");
}

void review__early_handler(SoupServer *server, SoupServerMessage *msg, const char *path,
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
	} else if (soup_message_headers_get_content_length(h) >
		   (is_review_path(raw_path) ? REVIEW_MAX_REVIEW_BODY : REVIEW_MAX_BODY)) {
		status = SOUP_STATUS_REQUEST_ENTITY_TOO_LARGE;
		why = "the body is too large";
	}
	g_free(decoded);
	if (!status)
		return;
	review__reply_error(msg, (int)status, "%s", why);
	if (body_follows(h) && (c = conn_of(s, msg))) {
		s->refused[REFUSED_BODY]++;
		conn_disarm(c);
		answer_on_socket(g_socket_connection_get_socket(c->conn), status, why);
	}
}

