/* vigil-plant-bench: how fast one station's forwarder copies its log into
 * the plant's PostgreSQL, and what a part costs there, for docs/plant.md.
 *
 *   vigil-plant-bench CONNINFO [ROWS] [BATCH]
 *
 * Makes a local log of ROWS inspections (with their vibration figures and
 * one event per hundred parts) in a temporary folder, starts the real
 * forwarder (db/plant.h) on it and times the copy; then reads from the
 * central database the bytes per inspection (heap, TOAST and indexes of
 * every partition) and the WAL written per inspection. The central
 * database should be empty of this station ("bench"/"bench"/"bench"). */
#include <glib.h>
#include <libpq-fe.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/part.h"
#include "db/db.h"
#include "db/plant.h"

static int64_t pg_int(PGconn *c, const char *sql)
{
	PGresult *r = PQexec(c, sql);
	int64_t v = -1;

	if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 && !PQgetisnull(r, 0, 0))
		v = g_ascii_strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	else
		fprintf(stderr, "vigil-plant-bench: %s: %s", sql, PQerrorMessage(c));
	PQclear(r);
	return v;
}

/* ROWS inspections a part every 50 ms, ending now, as the writer stores
 * them (one transaction: this is the local side, not what is measured). */
static int fill(const char *path, int rows, char **err)
{
	sqlite3 *s = NULL;
	char *sql;
	int64_t now = vigil_wall_us();
	int rc;

	if (sqlite3_open(path, &s) != SQLITE_OK) {
		*err = g_strdup_printf("%s: %s", path, sqlite3_errmsg(s));
		sqlite3_close(s);
		return -1;
	}
	sql = g_strdup_printf(
		"BEGIN;"
		"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < %d)"
		" INSERT INTO inspections (id, part_id, trigger_counter, seq, t_wall_us, verdict,"
		"  verdict_code, defect_class, flags, score, vision_score, signal_score, latency_ms,"
		"  infer_ms, model_version, image_path, model_verdict, model_score, job, station)"
		" SELECT i, 1000000 + i, i %% 65536, i, %" G_GINT64_FORMAT " - (%d - i) * 50000,"
		"  CASE WHEN i %% 50 = 0 THEN 'reject' ELSE 'accept' END,"
		"  CASE WHEN i %% 50 = 0 THEN 2 ELSE 1 END,"
		"  CASE WHEN i %% 50 = 0 THEN 'crack' ELSE 'none' END, 0,"
		"  0.01 + (i %% 97) / 1000.0, 0.02, 0.004, 12.6, 8.9, 'real-v5',"
		"  CASE WHEN i %% 50 = 0 THEN printf('2026-12-06/%%08d.png', i) END,"
		"  CASE WHEN i %% 50 = 0 THEN 'reject' ELSE 'accept' END, 0.01, 3, 'bench' FROM n;"
		"INSERT INTO vibration (inspection_id, rms_velocity_mm_s, iso_zone, rms_accel_g,"
		"  hf_accel_g, peak_g, crest_factor, kurtosis, ftf_env, bpfo_env, bpfi_env, bsf_env)"
		" SELECT id, 1.2, 'A', 0.3, 0.1, 1.1, 3.2, 3.0, 1.1, 1.3, 1.2, 1.0 FROM inspections;"
		"INSERT INTO events (t_wall_us, kind, message) SELECT t_wall_us, 'bench',"
		"  'an event as the line logs it, about sixty bytes of text' FROM inspections"
		"  WHERE id %% 100 = 0;"
		"COMMIT;",
		rows, now, rows);
	rc = sqlite3_exec(s, sql, NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		*err = g_strdup_printf("%s: %s", path, sqlite3_errmsg(s));
	g_free(sql);
	sqlite3_close(s);
	return rc == SQLITE_OK ? 0 : -1;
}

int main(int argc, char **argv)
{
	const char *conninfo = argc > 1 ? argv[1] : NULL;
	int rows = argc > 2 ? atoi(argv[2]) : 100000;
	int batch = argc > 3 ? atoi(argv[3]) : 500;
	char *dir = NULL, *path = NULL, *gerr = NULL, *perr = NULL;
	db_log *db;
	plant_forwarder *f;
	struct plant_stats st;
	PGconn *pg = NULL;
	int64_t wal0, wal1, bytes, t0, t1;
	int rc = 1;

	if (!conninfo || rows < 1 || batch < 1) {
		fprintf(stderr, "usage: vigil-plant-bench CONNINFO [ROWS] [BATCH]\n");
		return 2;
	}
	dir = g_dir_make_tmp("vigil-plant-bench-XXXXXX", NULL);
	path = g_build_filename(dir, "vigil.db", NULL);
	if (!(db = db_open(path, 64, &gerr))) {
		fprintf(stderr, "vigil-plant-bench: %s\n", gerr);
		goto out;
	}
	db_close(db);
	if (fill(path, rows, &gerr) < 0) {
		fprintf(stderr, "vigil-plant-bench: %s\n", gerr);
		goto out;
	}
	pg = PQconnectdb(conninfo);
	if (PQstatus(pg) != CONNECTION_OK) {
		fprintf(stderr, "vigil-plant-bench: %s", PQerrorMessage(pg));
		goto out;
	}
	if (plant_migrate(conninfo, &perr) < 0) {
		fprintf(stderr, "vigil-plant-bench: %s\n", perr);
		goto out;
	}
	wal0 = pg_int(pg, "SELECT pg_current_wal_lsn() - '0/0'");
	struct plant_options opt = {
		.conninfo = conninfo, .site = "bench", .line = "bench", .station = "bench",
		.batch = batch, .retry_max_s = 1, .settle_s = 0, .drain_s = 0,
	};
	t0 = g_get_monotonic_time();
	if (!(f = plant_forwarder_new(path, &opt, &perr))) {
		fprintf(stderr, "vigil-plant-bench: %s\n", perr);
		goto out;
	}
	for (;;) {
		g_usleep(20000);
		plant_forwarder_get_stats(f, &st);
		if (st.connected && st.backlog[PLANT_INSPECTIONS] == 0 && st.backlog[PLANT_EVENTS] == 0)
			break;
		if (g_get_monotonic_time() - t0 > (int64_t)3600 * G_USEC_PER_SEC) {
			fprintf(stderr, "vigil-plant-bench: not done after an hour: %s\n", st.last_error);
			plant_forwarder_free(f, 0);
			goto out;
		}
	}
	t1 = g_get_monotonic_time();
	plant_forwarder_free(f, 0);
	wal1 = pg_int(pg, "SELECT pg_current_wal_lsn() - '0/0'");
	bytes = pg_int(pg, "SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree('inspections')");
	printf("forwarded %d inspections (+%d events) in batches of %d: %.1f s, %.0f inspections/s\n",
	       rows, rows / 100, batch, (t1 - t0) / 1e6, rows / ((t1 - t0) / 1e6));
	printf("central inspections, heap + indexes: %.0f bytes a part\n", (double)bytes / rows);
	printf("WAL written: %.0f bytes a part\n", (double)(wal1 - wal0) / rows);
	rc = 0;
out:
	PQfinish(pg);
	if (dir) {
		char *argv_rm[] = { "rm", "-rf", dir, NULL };
		g_spawn_sync(NULL, argv_rm, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, NULL, NULL,
			     NULL, NULL);
	}
	g_free(dir);
	g_free(path);
	g_free(gerr);
	free(perr);
	return rc;
}
