/* Store and forward to the plant's central PostgreSQL: the central schema
 * and its migrations, and the forwarder thread that copies a station's
 * local SQLite log (db/db.h) there, exactly once per local row.
 *
 * The second public header of db/ (as fusion/condition.h is of fusion/):
 * it is the only one that needs libpq, and only vigild and the tools that
 * talk to the central database link it.
 *
 * Strings handed to the caller (err messages) are allocated with malloc()
 * and freed by the caller with free(). */
#ifndef VIGIL_DB_PLANT_H
#define VIGIL_DB_PLANT_H

#include <stdint.h>

#include <libpq-fe.h>

#include "core/config.h"

/* Project error codes, below -PLANT_ENOBASE; others are negative errno. */
#define PLANT_ENOBASE 31000
#define PLANT_ELINK (-(PLANT_ENOBASE + 1))    /* cannot connect, or the link broke */
#define PLANT_ESQL (-(PLANT_ENOBASE + 2))     /* the server refused a statement */
#define PLANT_ENEWER (-(PLANT_ENOBASE + 3))   /* central schema newer than this build */

/* The central schema version this build writes (docs/plant-schema.md). */
int plant_schema_version(void);

/* Connects to conninfo (a libpq key=value string or URI) and brings the
 * central schema to plant_schema_version(): every missing step in one
 * transaction, under an advisory lock, so that many stations starting at
 * once apply each step once. A schema newer than this build is refused
 * untouched (PLANT_ENEWER, the message names both versions). 0, or a
 * negative code with *err set (the password masked). */
int plant_migrate(const char *conninfo, char **err);

/* conninfo with any password replaced by "***", for logs and messages.
 * The caller frees it with free(). */
char *plant_mask_conninfo(const char *conninfo);

/* ---- the forwarder ---- */

/* How a station forwards (the [plant] section). Strings are borrowed. */
struct plant_options {
	const char *conninfo;     /* libpq key=value string or URI */
	const char *passfile;     /* libpq passfile; NULL: libpq's (PGPASSFILE) */
	const char *site, *line, *station;  /* this station's ids in the plant */
	int batch;                /* local rows per central transaction (500) */
	int retry_max_s;          /* longest wait between connection attempts (30) */
	int media;                /* also forward references to kept media files */
	/* Inspection rows younger than this (wall clock) wait: the writer
	 * usually completes them within it (image path, latency, a late model
	 * verdict); one completed later is sent again, whole (5). */
	int settle_s;
	int drain_s;              /* at plant_forwarder_free: up to this long to
				   * forward what is left (10; 0: none) */
};

/* The [plant] section as plant_options_read reads it; the settings own
 * the strings opt points to. configured is 0 without a [plant] section. */
struct plant_settings {
	int configured;
	struct plant_options opt;
	char *conninfo, *passfile, *site, *line, *station;
};
/* Reads [plant] of cfg into *s, which it overwrites (station defaults to
 * default_station): 0 (also without the section), or -EINVAL with *err
 * (g_free it) naming the file, line and key. *s owns what it holds even
 * on failure: free it with plant_settings_clear (NULL ok). */
int plant_options_read(const config *cfg, const char *default_station, struct plant_settings *s,
		       char **err);
void plant_settings_clear(struct plant_settings *s);

/* The local tables forwarded, as /metrics labels them. */
enum plant_table {
	PLANT_INSPECTIONS, PLANT_EVENTS, PLANT_REVIEWS, PLANT_ESCAPES, PLANT_MEDIA, PLANT_NTABLES
};
const char *plant_table_name(enum plant_table t);

/* What the forwarder counts, for /metrics and /api/status. */
struct plant_stats {
	int connected;            /* the link to the central database is up */
	int schema_newer;         /* refused: the central schema is newer */
	/* Local rows not yet in the central database, per table (until the
	 * first connect, every local row counts), and forwarded / lost
	 * (removed by local retention before they were forwarded). */
	int64_t backlog[PLANT_NTABLES];
	uint64_t forwarded[PLANT_NTABLES], lost[PLANT_NTABLES];
	int64_t oldest_unforwarded_us;  /* wall clock of the oldest unforwarded row, 0: none */
	int64_t last_batch_us;          /* wall clock of the last committed batch, 0: none */
	uint64_t batches, link_failures, reviews_pulled;
	/* Inspections sent again because the writer completed them after
	 * they went up (image path, latency, a late model verdict). */
	uint64_t refreshed;
	char last_error[256];           /* the latest failure (no password), "" if none */
};

typedef struct plant_forwarder plant_forwarder;

/* Starts the forwarder thread for the local log at db_path (which must
 * exist: vigild opens it first). It never blocks its caller on the
 * central database: connecting, forwarding and retrying all happen on its
 * thread, which keeps its own connections to the local file (one
 * read-only to read the rows; one to write its events, plant-link-down /
 * plant-link-up / plant-schema-newer / plant-new-log, the reviews made
 * centrally, and its meta keys plant_log_id and plant_base_TABLE). opt
 * and its strings are copied. NULL with *err (free()) on failure. */
plant_forwarder *plant_forwarder_new(const char *db_path, const struct plant_options *opt,
				     char **err);
/* Any thread: a copy of the counts (zeros for f NULL). */
void plant_forwarder_get_stats(plant_forwarder *f, struct plant_stats *out);
/* Stops the thread and frees f. With drain, first forwards what is left,
 * settled or not (call it once the line's writer has closed the log), for
 * at most opt.drain_s. NULL ok. */
void plant_forwarder_free(plant_forwarder *f, int drain);

/* ---- what people do in the central database ----
 * For the review page's Plant view and vigilctl --central: conn is the
 * caller's connection (PQconnectdb), used on the caller's thread only
 * for the call; these functions neither close nor keep it. A failure is
 * a negative code with *err (free()) saying why on one line, without the
 * server's name (the caller names it, as it says it elsewhere) and never
 * a password: -EINVAL for what the caller asked, PLANT_ESQL when the
 * server refused, PLANT_ELINK when the link broke. */

/* The longest site, line or station id, and a central review's note. */
#define PLANT_MAX_ID 64
#define PLANT_MAX_NOTE 2000

/* Times cross as µs since the epoch, added to the epoch as an interval:
 * exact, where to_timestamp(double) would lose the last microsecond. */
#define PLANT_US_TO_T(p) "(timestamptz 'epoch' + " p "::bigint * interval '1 microsecond')"
#define PLANT_T_TO_US(c) "(extract(epoch FROM " c ") * 1000000)::bigint"

/* SQL joining each row i of inspections to its latest review r (the
 * station's or a central one, by time, then id), with the columns cols
 * of reviews; NULLs where none: what the Plant view and vigilctl
 * --central list both show as "the review". */
#define PLANT_SQL_LATEST_REVIEW(cols) \
	" LEFT JOIN LATERAL (SELECT " cols " FROM reviews r WHERE r.site = i.site" \
	" AND r.line = i.line AND r.station = i.station" \
	" AND r.inspection_local_id = i.local_id ORDER BY r.t DESC, r.id DESC LIMIT 1) r" \
	" ON true"

/* A review made centrally of the inspection (site, line, station,
 * local_id). Strings are borrowed for the call; NULL or "" note and
 * defect_type are none. */
struct plant_review {
	const char *site, *line, *station;
	int64_t local_id;          /* the row's id in the station's log */
	const char *decision;      /* "confirm" or "overrule" */
	const char *verdict;       /* overrule: the right verdict; ignored on confirm */
	const char *note, *reviewer, *defect_type;
};
struct plant_review_saved {
	int64_t id;                /* reviews.id in the central database */
	char verdict[16];          /* the verdict it stands for (the line's, on confirm) */
	int64_t part_id;
};
/* Whether r may be saved (ids, decision, verdict, note, reviewer,
 * vigil_defect_type_ok), before any connection: 0, or -EINVAL with *err. */
int plant_review_check(const struct plant_review *r, char **err);
/* Checks r as plant_review_check and inserts it with origin 'central',
 * the row the station's forwarder pulls into its own log. 0 with *out;
 * -ENOENT (with *err) when the central database holds no such
 * inspection; -EINVAL (with *err) for an overrule to the verdict the line
 * gave (a confirm agrees), nothing inserted; else as above. */
int plant_review_insert(PGconn *conn, const struct plant_review *r,
			struct plant_review_saved *out, char **err);

/* The columns of plant_stations_list's rows, in order, named as here. */
enum plant_station_column {
	PLANT_STATION_SITE, PLANT_STATION_LINE, PLANT_STATION_STATION, PLANT_STATION_HOST,
	PLANT_STATION_LAST_SEEN_US, PLANT_STATION_BACKLOG, PLANT_STATION_LAG_S,
	PLANT_STATION_MODEL_VERSION, PLANT_STATION_ROWS_TODAY, PLANT_STATION_YIELD_TODAY
};
/* Every station as its forwarder last reported it (site, line, station,
 * host, last_seen_us, backlog, lag_s, model_version), with rows_today and
 * yield_today (NULL without rows) counted since the caller's local
 * midnight; a NULL or "" id is no filter. 0 with *rows (the caller
 * PQclear()s it), or else as above with *rows NULL. */
int plant_stations_list(PGconn *conn, const char *site, const char *line, const char *station,
			PGresult **rows, char **err);

/* A message of libpq's or the server's as vigild shows it, in events and
 * API answers: on one line (newlines and tabs as spaces, trimmed), and a
 * quoted absolute path in it (the Unix socket libpq tried: connection to
 * server on socket "/run/postgresql/.s.PGSQL.5432" failed) as "(a local
 * path)", since no answer names a path of the server's. g_free it. */
char *plant_pg_text(const char *msg);

/* A static description of a code returned by this module. */
const char *plant_strerror(int code);

#endif
