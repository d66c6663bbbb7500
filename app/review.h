/* The QA review web server inside vigild (libsoup 3): live status, the
 * inspection log with filters, part detail, confirm/overrule reviews and
 * Prometheus /metrics. It runs on the GMainContext of the thread that makes
 * it (vigild's main loop) and reads the log on its own read-only SQLite
 * connection per request, so it never waits on, or holds up, the line's
 * threads.
 *
 * Configured by [review]: listen (default 127.0.0.1), port (default 8080;
 * 0 picks a free one and logs it), token or token_file (the shared bearer
 * token that every write needs; without one the server is read-only), or
 * instead users_file (per-user tokens with roles viewer, reviewer, admin,
 * core/users.h; read at start) and read_requires_token (reads need a
 * viewer's token too), and
 * static_dir (serve the page from a folder instead of the copy built into
 * the binary) and charts_dir (the charting library's files, uPlot from npm,
 * served as /vendor/NAME; default: where `make web-deps` puts them in the
 * build folder; the page works without them, with no charts),
 * max_connections (default 64; one more gets 503 at once) and
 * request_timeout_s (default 10: a client that has not sent its whole
 * request by then gets 408 and is closed), and central (the plant's
 * PostgreSQL for the Plant view; --review-only only, refused with a line).
 * The log is the [database] path. */
#ifndef VIGIL_APP_REVIEW_H
#define VIGIL_APP_REVIEW_H

#include "app/line.h"
#include "core/config.h"

typedef struct review_server review_server;

/* Reads [review] and [database] path from cfg and starts listening; *out
 * is the server (owned by the caller, review_server_free). l is the line
 * whose status and metrics are served, or NULL to serve only the log
 * (vigild --review-only); l must outlive the server. Returns 0; -EINVAL on
 * a configuration error, or another negative errno when it cannot listen
 * (-EADDRINUSE: the port is taken), both with *err set (g_free it) and
 * *out NULL. */
int review_server_new(const config *cfg, line *l, review_server **out, char **err);

/* The TCP port the server listens on (the chosen one when port = 0). */
int review_server_port(const review_server *s);

/* Stops listening and frees s; NULL ok. Call it before line_stop. */
void review_server_free(review_server *s);

#endif
