/* Trends: counts of inspections per time bucket, for yield and defect-rate
 * charts over days and weeks. SQLite does the counting: each bucket is one
 * range of the time index, so the cost is one pass over the rows in range
 * and the memory is one struct per bucket, whatever the log holds. */
#include <errno.h>
#include <string.h>

#include <sqlite3.h>

#include "db/db-private.h"
#include "core/part.h"

static const char sql_bucket[] =
	"SELECT verdict_code, defect_class, count(*) FROM inspections"
	" WHERE t_wall_us >= ?1 AND t_wall_us < ?2 GROUP BY verdict_code, defect_class";

int db_count_buckets(const char *path, const int64_t *edges, size_t nbuckets,
		     struct db_bucket_counts *out, char **err)
{
	sqlite3 *conn = NULL;
	sqlite3_stmt *st = NULL;
	int rc, ret = DB_ESQLITE;

	if (!path || !edges || (nbuckets && !out)) {
		db__set_error(err, "count buckets: no path or buckets given");
		return -EINVAL;
	}
	for (size_t i = 0; i < nbuckets; i++)
		if (edges[i + 1] < edges[i]) {
			db__set_error(err, "count buckets: bucket %zu ends before it starts", i);
			return -EINVAL;
		}
	memset(out, 0, nbuckets * sizeof *out);
	rc = sqlite3_open_v2(path, &conn, SQLITE_OPEN_READONLY, NULL);
	if (rc != SQLITE_OK) {
		db__set_error(err, "cannot open %s: %s", path, db__sqlite_message(conn, rc));
		goto out;
	}
	sqlite3_busy_timeout(conn, DB_BUSY_TIMEOUT_MS);
	/* One read transaction for all buckets: a writer adding rows meanwhile
	 * does not make the buckets disagree with one another. */
	if ((rc = sqlite3_exec(conn, "BEGIN", NULL, NULL, NULL)) != SQLITE_OK ||
	    (rc = sqlite3_prepare_v2(conn, sql_bucket, -1, &st, NULL)) != SQLITE_OK)
		goto sqlite_fail;
	for (size_t i = 0; i < nbuckets; i++) {
		struct db_bucket_counts *b = &out[i];

		b->start_us = edges[i];
		b->end_us = edges[i + 1];
		sqlite3_reset(st);
		sqlite3_bind_int64(st, 1, edges[i]);
		sqlite3_bind_int64(st, 2, edges[i + 1]);
		while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
			int v = sqlite3_column_int(st, 0);
			int c = db__class_from_name((const char *)sqlite3_column_text(st, 1));
			int64_t n = sqlite3_column_int64(st, 2);

			b->parts += n;
			if (v == VIGIL_VERDICT_ACCEPT)
				b->accepted += n;
			else if (v == VIGIL_VERDICT_REJECT)
				b->rejected += n;
			else if (v == VIGIL_VERDICT_MARGINAL)
				b->marginal += n;
			if (c >= 0)
				b->by_class[c] += n;
		}
		if (rc != SQLITE_DONE)
			goto sqlite_fail;
	}
	ret = 0;
	goto out;

sqlite_fail:
	db__set_error(err, "cannot read %s: %s", path, sqlite3_errmsg(conn));
out:
	sqlite3_finalize(st);
	if (conn)
		sqlite3_exec(conn, "COMMIT", NULL, NULL, NULL);
	sqlite3_close(conn);
	return ret;
}
