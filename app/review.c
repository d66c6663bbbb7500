/* The QA review web server (see review.h): its settings from [review],
 * the routing table, start and stop. What each route does lives in
 * review-http.c, review-parts.c, review-media.c and review-metrics.c
 * (review-private.h). Every request is answered from the main loop. */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "app/review-private.h"

#define REVIEW_MIN_TOKEN 8
/* Connections waiting to be accepted while the main loop is busy. */
#define REVIEW_LISTEN_BACKLOG 128

static const char *const review_keys[] = { "listen", "port", "token", "token_file",
					    "static_dir", "charts_dir", "max_connections",
					    "request_timeout_s", "users_file", "read_requires_token",
					    "defect_types", "central", NULL };

/* The charting library's files (uPlot, from npm; never in git), served as
 * /vendor/NAME from charts_dir when they are there. */
static const char *const chart_files[] = { "uPlot.iife.min.js", "uPlot.min.css", NULL };

/* Where charts_dir's files are: the folder itself, or, for the folder
 * `make web-deps` fills (an npm prefix) or uPlot's package folder, the dist
 * folder below it, as npm lays it out. NULL when none has both files as
 * regular files (review__serve_asset serves no link); *why says what the
 * folder itself lacks. */
static char *find_charts(const char *dir, char **why)
{
	static const char *const below[] = { "", "node_modules/uplot/dist", "dist", NULL };

	*why = NULL;
	for (int i = 0; below[i]; i++) {
		char *cand = g_build_filename(dir, below[i], NULL);
		gboolean all = TRUE;

		for (int k = 0; chart_files[k] && all; k++) {
			char *path = g_build_filename(cand, chart_files[k], NULL);
			struct stat st;

			if (lstat(path, &st) < 0)
				st.st_mode = 0;
			if (!S_ISREG(st.st_mode)) {
				all = FALSE;
				if (i == 0)
					*why = g_strdup_printf(S_ISLNK(st.st_mode) ? "%s is a link (only "
							       "a regular file is served)" : "no %s",
							       path);
			}
			g_free(path);
		}
		if (all) {
			g_free(*why);
			*why = NULL;
			return cand;
		}
		g_free(cand);
	}
	return NULL;
}

/* A charts_dir without the files leaves the page without charts; say so at
 * start, where the setting is, rather than as a 404 in a browser. An empty
 * charts_dir turns charts off on purpose. */
static void settle_charts_dir(review_server *s, const config *cfg)
{
	char *why = NULL, *found, *msg;

	if (!*s->charts_dir)
		return;
	found = find_charts(s->charts_dir, &why);
	if (found) {
		g_free(s->charts_dir);
		s->charts_dir = found;
		return;
	}
	msg = config_error(cfg, "review", "charts_dir", "%s, nor below it in node_modules/uplot/dist "
			   "or dist: the page shows no charts (make web-deps fetches uPlot into "
			   "build/web-vendor)", why);
	g_warning("%s", msg);
	g_free(msg);
	g_free(why);
}

/* ---- routing ---- */

enum part_route { ROUTE_PART, ROUTE_REVIEW, ROUTE_MEDIA, ROUTE_VIBRATION, ROUTE_MASK };

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
	if (review__parse_uint(digits, G_MAXUINT32, &id) < 0)
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
	else if (strcmp(p, "/mask") == 0)
		*route = ROUTE_MASK;  /* labels: review-labels.c */
	else if (g_str_has_prefix(p, "/media/")) {
		p += strlen("/media/");
		if ((*media_id = read_id(&p)) < 0 || *p)
			return -1;
		*route = ROUTE_MEDIA;
	} else
		return -1;
	return id;
}
/* A path under /api/parts/ that part_route (and the escape route) did not
 * take: a part or media id that is not one is the client's mistake, said
 * as such whatever the method, rather than "method not allowed" or "not
 * found"; anything else there is not found. */
static void refuse_part_path(SoupServerMessage *msg, const char *path)
{
	const char *p = path + strlen("/api/parts/"), *after = p;
	const char *what = "part";
	struct db_filter f = DB_FILTER_ALL;
	char *id;

	if (read_id(&after) >= 0 && *after == '/') {
		/* The part id is fine: a media id? */
		if (!g_str_has_prefix(after, "/media/")) {
			review__reply_error(msg, SOUP_STATUS_NOT_FOUND, "not found");
			return;
		}
		p = after + strlen("/media/");
		what = "media";
	}
	id = g_strndup(p, strcspn(p, "/"));
	if (db_filter_set(&f, DB_FILTER_PART, id) == 0)
		review__reply_error(msg, SOUP_STATUS_NOT_FOUND, "not found");
	else if (strlen(id) <= 40 && g_utf8_validate(id, -1, NULL))
		review__reply_error(msg, SOUP_STATUS_BAD_REQUEST,
				    "'%s' is not a %s id: a whole number from 0 to 4294967295", id,
				    what);
	else
		review__reply_error(msg, SOUP_STATUS_BAD_REQUEST,
				    "the %s id is not a whole number from 0 to 4294967295", what);
	g_free(id);
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
	if (soup_server_message_get_status(msg) != 0)
		return;  /* refused by the early handler */
	/* Reads of the log need a viewer's token only with read_requires_token;
	 * the page itself is served to all, so that a token can be entered. */
	if (get && (g_str_has_prefix(path, "/api/") || strcmp(path, "/metrics") == 0 ||
		    strcmp(path, "/report") == 0) &&
	    strcmp(path, "/api/whoami") != 0 &&
	    review__require_role(s, msg, USERS_ROLE_VIEWER, NULL) < 0)
		return;
	/* Tracing escapes (review-trace.c) routes its own paths. */
	if (review__trace_route(s, msg, path, method, raw_query))
		return;
	/* The Plant view over the central database (review-plant.c). */
	if (review__plant_route(s, msg, path, method, raw_query))
		return;
	if (g_str_has_prefix(path, "/api/parts/")) {
		if ((part = part_route(path, &route, &media_id)) < 0) {
			refuse_part_path(msg, path);
			return;
		}
		if (route == ROUTE_REVIEW && strcmp(method, "POST") == 0)
			review__api_review(s, msg, part);
		else if (route == ROUTE_PART && get)
			review__api_part(s, msg, part);
		else if (route == ROUTE_MEDIA && get)
			review__api_media(s, msg, part, media_id);
		else if (route == ROUTE_VIBRATION && get)
			review__api_vibration(s, msg, part);
		else if (route == ROUTE_MASK && get)
			review__api_mask(s, msg, part);
		else
			review__reply_error(msg, SOUP_STATUS_METHOD_NOT_ALLOWED,
					    "method not allowed");
		return;
	}
	if (!get) {
		review__reply_error(msg, SOUP_STATUS_METHOD_NOT_ALLOWED, "method not allowed");
		return;
	}
	if (strcmp(path, "/") == 0 || strcmp(path, "/index.html") == 0)
		review__serve_asset(msg, s->static_dir, "index.html");
	else if (strcmp(path, "/favicon.ico") == 0)
		/* No icon, said without an error: every browser asks for this,
		 * and a 404 is an error in the page's console. */
		soup_server_message_set_status(msg, SOUP_STATUS_NO_CONTENT, NULL);
	else if (g_str_has_prefix(path, "/static/"))
		review__serve_asset(msg, s->static_dir, path + strlen("/static/"));
	else if (g_str_has_prefix(path, "/vendor/") &&
		 g_strv_contains(chart_files, path + strlen("/vendor/"))) {
		if (*s->charts_dir)
			review__serve_asset(msg, s->charts_dir, path + strlen("/vendor/"));
		else
			review__reply_error(msg, SOUP_STATUS_NOT_FOUND,
					    "no charting library: charts_dir is empty");
	}
	else if (strcmp(path, "/api/inspections") == 0)
		review__api_inspections(s, msg, raw_query);
	else if (strcmp(path, "/api/whoami") == 0)
		review__api_whoami(s, msg);
	else if (strcmp(path, "/api/classes") == 0)
		review__api_classes(s, msg);  /* labels: review-labels.c */
	else if (strcmp(path, "/api/reference") == 0) {
		const char *camera = query ? g_hash_table_lookup(query, "camera") : NULL;

		if (camera && (!*camera || strlen(camera) > 100 || !g_utf8_validate(camera, -1, NULL)))
			review__reply_error(msg, SOUP_STATUS_BAD_REQUEST,
					    "camera is a camera's name, up to 100 bytes");
		else
			review__api_reference(s, msg, camera);
	}
	else if (strcmp(path, "/api/status") == 0)
		review__api_status(s, msg);
	else if (strcmp(path, "/api/trends") == 0)
		review__api_trends(s, msg, raw_query);
	else if (strcmp(path, "/api/history") == 0)
		review__api_history(s, msg);
	else if (strcmp(path, "/metrics") == 0)
		review__serve_metrics(s, msg);
	else if (strcmp(path, "/report") == 0)
		review__serve_report(s, msg, query);
	else
		review__reply_error(msg, SOUP_STATUS_NOT_FOUND, "not found");
}

/* ---- set-up ---- */

/* The bearing of the first [vibration.NAME], read as the line reads it
 * (condition_config_read); a section the line would refuse is left to the
 * line to report, so here it only means no marks on the spectrum. */
static void read_bearing(review_server *s, const config *cfg)
{
	char **groups = config_groups(cfg, "vibration.");
	struct condition_settings cs = { .hf_hz = 2000 };
	char *err = NULL;

	/* No rate here: the line checks hf_hz against the source's Nyquist. */
	if (groups[0] && condition_config_read(cfg, groups[0], 0, &cs, &err) < 0)
		cs.have_bearing = 0;
	s->hf_hz = cs.hf_hz;
	s->shaft_hz = cs.shaft_hz;
	s->have_bearing = cs.have_bearing;
	s->bearing = cs.bearing;
	if (groups[0])
		s->vibration_name = g_strdup(groups[0] + strlen("vibration."));
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
		review__token_digest(token, strlen(token), s->token_sha256);
	rc = 0;
out:
	if (token)
		memset(token, 0, strlen(token));
	g_free(token);
	g_free(file);
	g_free(text);
	return rc;
}

/* [review] users_file and read_requires_token. Per-user tokens and the
 * shared token are not mixed: a review by the shared token could not say
 * who made it, which is what the users file is for. */
static int read_users(review_server *s, const config *cfg, char **err)
{
	static const char *const no_yes[] = { "false", "true", NULL };
	char *file = NULL, *why = NULL;
	int rc = -EINVAL, requires = 0;

	if (config_get_string(cfg, "review", "users_file", "", &file, err) < 0 ||
	    config_get_choice(cfg, "review", "read_requires_token", "false", no_yes, &requires,
			      err) < 0)
		goto out;
	s->read_requires_token = requires;
	if (*file && s->have_token) {
		*err = config_error(cfg, "review", "users_file", "give users_file or token/"
				    "token_file, not both (the shared token would review as no "
				    "one in particular)");
		goto out;
	}
	if (*file && users_load(file, &s->users, &why) < 0) {
		*err = config_error(cfg, "review", "users_file", "%s", why);
		goto out;
	}
	if (s->read_requires_token && !s->have_token && !s->users) {
		*err = config_error(cfg, "review", "read_requires_token", "reads cannot need a "
				    "token: [review] has no users_file, token or token_file");
		goto out;
	}
	rc = 0;
out:
	g_free(why);
	g_free(file);
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
	g_signal_connect(s->service, "incoming", G_CALLBACK(review__on_incoming), s);
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
		  s->users ? "reviews need a reviewer's token" :
		  s->have_token ? "reviews need the token" : "read-only: no token configured");
	if (s->users)
		g_message("review: %zu users from the users file (read at start only)",
			  users_count(s->users));
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
	    read_token(s, cfg, err) < 0 || read_users(s, cfg, err) < 0 ||
	    review__labels_read(s, cfg, err) < 0 || review__plant_read(s, cfg, l != NULL, err) < 0)
		goto fail;
	read_bearing(s, cfg);
	settle_charts_dir(s, cfg);
	if (!*s->static_dir) {
		g_clear_pointer(&s->static_dir, g_free);
	} else if (!g_file_test(s->static_dir, G_FILE_TEST_IS_DIR)) {
		*err = config_error(cfg, "review", "static_dir", "%s is not a folder", s->static_dir);
		goto fail;
	}
	s->soup = soup_server_new("server-header", "vigild", NULL);
	soup_server_add_early_handler(s->soup, NULL, review__early_handler, s, NULL);
	soup_server_add_handler(s->soup, NULL, handler, s, NULL);
	g_signal_connect(s->soup, "request-started", G_CALLBACK(review__on_request_started), s);
	g_signal_connect(s->soup, "request-read", G_CALLBACK(review__on_request_read), s);
	if ((rc = listen_on(s, cfg, err)) < 0)
		goto fail;
	if (l) {
		review__on_sample(s);
		s->sampler = g_timeout_add_seconds(1, review__on_sample, s);
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
	review__drop_conns(s);
	if (s->conns)
		g_hash_table_unref(s->conns);
	if (s->soup) {
		soup_server_disconnect(s->soup);
		g_object_unref(s->soup);
	}
	review__labels_clear(s);
	g_free(s->central);
	g_free(s->db_path);
	g_free(s->static_dir);
	g_free(s->charts_dir);
	users_free(s->users);
	g_free(s->vibration_name);
	g_free(s);
}
