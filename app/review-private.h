/* Private to the review server (review.h): its state and what its files
 * share.
 *   review.c          set-up from [review], the routing table, start/stop
 *   review-http.c     replies, connections (the cap and the request
 *                     timeout), request limits, the page's files, the token,
 *                     users and their roles (review__require_role)
 *   review-parts.c    query strings, the inspection list, part detail,
 *                     the review POST
 *   review-trace.c    tracing escapes: the CSV of a view, shifts, facets,
 *                     escapes
 *   review-media.c    a part's files, images and vibration view
 *   review-metrics.c  rate sampling, status, history, Prometheus /metrics
 *   review-labels.c   a review's label: defect types, the painted mask
 *   review-report.c   the shift report (/report)
 *   review-plant.c    the Plant view over the plant's PostgreSQL
 *                     ([review] central, --review-only only)
 * Everything here runs on the main loop of the thread that made the
 * server, one request at a time; nothing is locked. */
#ifndef VIGIL_APP_REVIEW_PRIVATE_H
#define VIGIL_APP_REVIEW_PRIVATE_H

#include <gio/gio.h>
#include <json-glib/json-glib.h>
#include <libsoup/soup.h>
#include <stdint.h>

#include "app/review.h"
#include "core/users.h"
#include "db/db.h"
#include "fusion/condition.h"

/* A request body longer than this is refused before it is read: nothing
 * the page sends comes near it. */
#define REVIEW_MAX_BODY (16 * 1024)
/* A review may carry a painted mask as a PNG data URL (review-labels.c):
 * its body may be this much longer. A 0/255 mask of a camera image
 * compresses to a few kB; this leaves room for megapixel images. */
#define REVIEW_MAX_MASK_URL (1024 * 1024)
#define REVIEW_MAX_REVIEW_BODY (REVIEW_MAX_BODY + REVIEW_MAX_MASK_URL)

/* The line is sampled once a second; rates are measured over the last
 * RATE_SAMPLES samples (10 s), and HISTORY_SAMPLES (10 min) are kept for
 * the status charts. */
#define RATE_SAMPLES 11
#define HISTORY_SAMPLES 600

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
	/* [review] users_file, read at start (vigild does not reload its
	 * configuration): per-user tokens and roles. NULL without one; never
	 * together with the shared token. */
	users *users;
	gboolean read_requires_token;
	int port;
	int64_t started_us;
	/* The bearing of the [vibration.NAME] section, to mark its defect
	 * frequencies on a part's envelope spectrum. */
	gboolean have_bearing;
	double shaft_hz, hf_hz;
	struct bearing_freqs bearing;
	/* NAME of that section (NULL: none): the source of a kept vibration
	 * window whose media row names none, as the line logs them. */
	char *vibration_name;
	guint sampler;
	/* The defect types a review may name (review-labels.c), each a
	 * g_strdup'ed word: the packages' [classes] and [review] defect_types. */
	GPtrArray *label_surface, *label_vibration, *label_plant;
	/* [review] central: the plant's PostgreSQL (libpq conninfo) the Plant
	 * view reads (review-plant.c); NULL without one. */
	char *central;
	struct rate_sample samples[HISTORY_SAMPLES];
	int nsamples;            /* oldest first */
};

/* ---- review-http.c ---- */

/* Replies with the security and cache headers every answer carries.
 * reply_json takes root; the others copy what they are given. */
void review__reply_bytes(SoupServerMessage *msg, int status, const char *type, GBytes *body);
void review__reply_text(SoupServerMessage *msg, int status, const char *type, GString *text);
void review__reply_json(SoupServerMessage *msg, int status, JsonNode *root);
/* {"error": the formatted text}. */
void review__reply_error(SoupServerMessage *msg, int status, const char *fmt, ...)
	G_GNUC_PRINTF(3, 4);
/* A failure of the log (db.h, rc its code, err its message or NULL) as the
 * answer: -ENOENT 404 and -EINVAL 400 say err, which names what the request
 * got wrong and never a path; any other is the server's own, logged with
 * err and answered 500 without it, so that no file path (the log's, its
 * media folder's) reaches a client. Every db failure is answered here. */
void review__reply_db_error(SoupServerMessage *msg, int rc, const char *err);

/* The listening service's "incoming" handler (data: the server): caps the
 * connections, arms the request timer and hands the connection to soup. */
gboolean review__on_incoming(GSocketService *service, GSocketConnection *conn,
			     GObject *source, gpointer data);
/* soup's "request-started" and "request-read" (data: the server): the
 * request timer's start and stop. */
void review__on_request_started(SoupServer *soup, SoupServerMessage *msg, gpointer data);
void review__on_request_read(SoupServer *soup, SoupServerMessage *msg, gpointer data);
/* soup's early handler (data: the server): refuses an over-long or
 * malformed request after its headers, before its body is read; the
 * handler skips a message that already has a status. */
void review__early_handler(SoupServer *server, SoupServerMessage *msg, const char *path,
			   GHashTable *query, gpointer data);
/* Forgets every open connection (review_server_free, before soup drops
 * them), so that no notice of one reaches a freed server. */
void review__drop_conns(review_server *s);

/* Serves name from dir, or from the page built into the binary when dir
 * is NULL; a name that is not one plain file name is refused. */
void review__serve_asset(SoupServerMessage *msg, const char *dir, const char *name);

/* SHA-256 of the token, which is all the server keeps of it. */
void review__token_digest(const char *token, size_t len, guint8 out[32]);
/* Whether msg carries "Authorization: Bearer TOKEN" with the shared token
 * or the token of a user of role reviewer or above. Replies nothing. */
gboolean review__authorized(review_server *s, SoupServerMessage *msg);

/* Who sent a request. */
struct review_caller {
	enum users_role role;     /* 0: no token, or reads open to all */
	const char *name;         /* the user (owned by s), or NULL: the shared
				   * token or no token */
};
/* The check every handler makes before it acts: 0 when msg may do what
 * needs role, with *who (may be NULL) saying who sent it; otherwise -EACCES
 * with the answer replied: 401 for a missing or unknown token, 403 naming
 * the role needed for a user whose role is too low, 403 when [review] has
 * no token and no users at all. Reads (USERS_ROLE_VIEWER) pass without a
 * token unless [review] read_requires_token. The shared token may do
 * everything: it is the demo's one credential. */
int review__require_role(review_server *s, SoupServerMessage *msg, enum users_role need,
			 struct review_caller *who);
/* GET /api/whoami: the caller's name and role, and what the server needs. */
void review__api_whoami(review_server *s, SoupServerMessage *msg);

/* ---- review-parts.c ---- */

/* A decimal of up to 20 digits, no sign, at most max: 0 or -EINVAL. */
int review__parse_uint(const char *text, guint64 max, guint64 *out);

/* An application/x-www-form-urlencoded query as a table (g_hash_table_unref),
 * or NULL with *why (g_free) for text that is not valid percent-encoded
 * UTF-8. */
GHashTable *review__parse_query(const char *query, char **why);
/* Fills f (from DB_FILTER_ALL) from the query's filters, the list's own
 * (verdict, class, min_score, max_score, part, reviewed, limit) and the
 * tracing ones (since, until, shift, job, model, station); limit defaults
 * to 200. On a bad value or an unknown parameter -EINVAL with *why (g_free)
 * naming it. f's strings point into q. */
int review__read_filter(GHashTable *q, struct db_filter *f, char **why);
/* t (µs since 1970) as the station's local time with its offset, the one
 * zone every time the page and the API show is in (the date filters and
 * shifts read local time too): "2026-12-07T07:15:02+01:00", with
 * fraction its microseconds too (.123456). NULL for a time GLib cannot
 * represent; g_free. */
char *review__local_time(int64_t t, gboolean fraction);
/* One inspection as a JSON object, as GET /api/inspections lists it. */
void review__add_row(JsonBuilder *b, const struct db_inspection *r);

/* Object members; a number that is not finite and a NULL string are
 * written as null. */
void review__add_number(JsonBuilder *b, const char *name, double v);
void review__add_string(JsonBuilder *b, const char *name, const char *v);
/* A string member of a request body: NULL when absent or null; sets *bad
 * (and gives NULL) when it is there but not a string. Owned by o. */
const char *review__member_string(JsonObject *o, const char *name, gboolean *bad);
/* The request's body as a JSON object, or NULL with the reply sent: 413
 * over max bytes, 400 with usage when it is not a JSON object. The object
 * belongs to *parser, which the caller unrefs (also after NULL). Main
 * loop. */
JsonObject *review__body_object(SoupServerMessage *msg, gsize max, const char *usage,
				JsonParser **parser);
void review__add_int(JsonBuilder *b, const char *name, int64_t v);

/* The latest inspection of a part, or the one the request names with
 * ?inspection=ID (its row id: a part id the line used twice, its counter
 * having started over, names two inspections, and a client reviews the one
 * it shows); with b set, it is also added to b as member "inspection". */
struct review_latest {
	JsonBuilder *b;
	int64_t id;
	int verdict;
	int64_t part_id;  /* set by review__find_latest */
	int64_t chosen;   /* ?inspection=, or -1: the latest */
};
/* 0, -ENOENT (the part has none: the caller replies), or another negative
 * code with the error replied: -EIO, or -EINVAL for an ?inspection= that
 * is not a whole number (400) or not one of the part's (404). */
int review__find_latest(review_server *s, SoupServerMessage *msg, int64_t part_id,
			struct review_latest *l);

void review__api_inspections(review_server *s, SoupServerMessage *msg, const char *query);
void review__api_part(review_server *s, SoupServerMessage *msg, int64_t part_id);
void review__api_review(review_server *s, SoupServerMessage *msg, int64_t part_id);

/* ---- review-trace.c ---- */

/* Tracing escapes: GET /api/inspections.csv, /api/shifts, /api/facets,
 * /api/escapes and POST /api/parts/ID/escape. Returns TRUE when path is
 * one of these and msg has been answered, FALSE to let the caller route it. */
gboolean review__trace_route(review_server *s, SoupServerMessage *msg, const char *path,
			     const char *method, const char *query);

/* ---- review-media.c ---- */

/* Member "bearing": s's defect frequencies, or null without a bearing. */
void review__add_bearing(review_server *s, JsonBuilder *b);
/* Adds one object per media row of inspection_id to the array open in b,
 * each with its URL under part_id (with ?inspection=ID when chosen is not
 * -1: the request named that inspection). db_read_media's result and
 * *err. */
int review__media_list(review_server *s, int64_t part_id, int64_t inspection_id,
		       int64_t chosen, JsonBuilder *b, char **err);
void review__api_media(review_server *s, SoupServerMessage *msg, int64_t part_id,
		       int64_t media_id);
void review__api_vibration(review_server *s, SoupServerMessage *msg, int64_t part_id);
/* The newest accepted part (not overruled) with a kept image of camera
 * (NULL: any) among the recent ones: part_id and the image's url. */
void review__api_reference(review_server *s, SoupServerMessage *msg, const char *camera);

/* The latest inspection's first file of kind (e.g. "image") of part_id:
 * 0 with *data, or an error replied (404 when none is kept). */
int review__media_read_kind(review_server *s, SoupServerMessage *msg, int64_t part_id,
			    const char *kind, GBytes **data);

/* ---- review-labels.c ---- */

/* The defect types from [review] defect_types and the [classes] of the
 * configured packages; -EINVAL with *err naming file, line and key. */
int review__labels_read(review_server *s, const config *cfg, char **err);
void review__labels_clear(review_server *s);
void review__api_classes(review_server *s, SoupServerMessage *msg);
/* GET /api/parts/ID/mask: the mask of the part's latest review (PNG). */
void review__api_mask(review_server *s, SoupServerMessage *msg, int64_t part_id);

/* The label members of a review's JSON: defect_type borrows from the
 * JSON object; mask is malloc'ed 0/255 pixels (w x h, the part's image's
 * size), painted when any pixel is set. */
struct review_label_in {
	const char *defect_type;
	uint8_t *mask;
	int w, h;
	gboolean painted;
};
/* 0, or -EINVAL with a 400 (or the image's error) replied and nothing
 * kept. */
int review__label_parse(review_server *s, SoupServerMessage *msg, JsonObject *o,
			int64_t part_id, struct review_label_in *in);
void review__label_clear(struct review_label_in *in);
int review__label_save_mask(review_server *s, SoupServerMessage *msg, int64_t part_id,
			    const struct review_label_in *in, char **rel);
void review__label_drop_mask(review_server *s, const char *rel);

/* ---- review-metrics.c ---- */

/* The once-a-second sampler's timeout (data: the server); it also takes
 * the first sample when called directly. */
gboolean review__on_sample(gpointer data);
void review__api_status(review_server *s, SoupServerMessage *msg);
void review__api_history(review_server *s, SoupServerMessage *msg);
void review__serve_metrics(review_server *s, SoupServerMessage *msg);

/* ---- review-report.c ---- */

/* GET /report?shift=LABEL (current when absent)[&images=embed|link]: the
 * shift report as HTML; 400 naming the shift for one the log's plan does
 * not have. A read: the handler checks the viewer role first. */
void review__serve_report(review_server *s, SoupServerMessage *msg, GHashTable *query);
/* ---- review-plant.c ---- */

/* [review] central; with_line: a station's page, which refuses it. 0, or
 * -EINVAL with *err naming file, line and key. */
int review__plant_read(review_server *s, const config *cfg, gboolean with_line, char **err);
/* GET /api/plant ({"central": bool}), /api/plant/stations,
 * /api/plant/inspections and POST /api/plant/review: TRUE when path is
 * one of these (or under /api/plant/) and msg has been answered (404 below
 * /api/plant/ without [review] central), FALSE to let the caller route it. */
gboolean review__plant_route(review_server *s, SoupServerMessage *msg, const char *path,
			     const char *method, const char *raw_query);

/* ---- review-trends.c ---- */

/* GET /api/trends: per hour or shift counts and the p-chart, from the log. */
void review__api_trends(review_server *s, SoupServerMessage *msg, const char *query);

#endif
