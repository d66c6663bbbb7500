/* The writer's prepared statements and how one queued item is bound to
 * them (db/db-private.h). */
#include "db/db.h"

#include <stdint.h>
#include <string.h>

#include <glib.h>
#include <sqlite3.h>

#include "core/part.h"
#include "db/db-private.h"

static const char sql_insert_inspection[] =
	"INSERT INTO inspections (part_id, trigger_counter, seq, t_wall_us,"
	" verdict, verdict_code, defect_class, flags, score, vision_score,"
	" signal_score, latency_ms, infer_ms, model_version, image_path, model_verdict,"
	" model_score, job, station)"
	" VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,"
	" ?18, ?19)";

/* The model's late judgement of a part whose fail-safe row was written at
 * the deadline: beside the verdict the PLC got, never in its place. */
static const char sql_set_late[] =
	"UPDATE inspections SET flags = flags | ?1, vision_score = ?2, signal_score = ?3,"
	" infer_ms = ?4, model_version = ?5, model_verdict = ?6, model_score = ?7,"
	" verdict = ?9, verdict_code = ?10, score = ?11, job = coalesce(?12, job)"
	" WHERE id = ?8";

static const char sql_insert_vibration[] =
	"INSERT OR REPLACE INTO vibration (inspection_id, rms_velocity_mm_s, iso_zone, rms_accel_g,"
	" hf_accel_g, peak_g, crest_factor, kurtosis, ftf_env, bpfo_env, bpfi_env, bsf_env)"
	" VALUES (?12, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)";

static const char sql_insert_event[] =
	"INSERT INTO events (t_wall_us, kind, message) VALUES (?1, ?2, ?3)";

static const char sql_insert_trend[] =
	"INSERT INTO trend (source, t_wall_us, part_id, velocity_mm_s, accel_g, temperature_c,"
	" stale) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";

static const char sql_insert_media[] =
	"INSERT INTO media (inspection_id, camera, kind, path, bytes, recent)"
	" VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

/* The first camera's image is also the row's image_path. */
static const char sql_set_image_path[] =
	"UPDATE inspections SET image_path = ?1 WHERE id = ?2 AND image_path IS NULL";

static const char sql_set_latency[] = "UPDATE inspections SET latency_ms = ?1 WHERE id = ?2";

static int64_t ticket_rowid(db_log *db, uint64_t ticket)
{
	size_t slot = ticket % DB_TICKET_RING;

	return db->tickets[slot].ticket == ticket ? db->tickets[slot].rowid : 0;
}

/* A failed bind leaves the previous row's value in place, so every bind is
 * checked rather than letting the step write stale data. Returns the
 * SQLite code; SQLITE_DONE on success. The statement is reset by the
 * caller after it has read the error message. */
static int bind_model_verdict(sqlite3_stmt *st, int col, const struct db_inspection *r);
static int insert_vibration(db_log *db, struct db_item *it, sqlite3_stmt **used);

static int bind_job(sqlite3_stmt *st, int col, const struct db_inspection *r)
{
	return r->job < 0 ? sqlite3_bind_null(st, col) : sqlite3_bind_int(st, col, r->job);
}

int db__insert_item(db_log *db, struct db_item *it, sqlite3_stmt **used)
{
	sqlite3_stmt *st;
	int rc;

	switch (it->kind) {
	case DB_ITEM_EVENT:
		st = db->st.insert_event;
		*used = st;
		if ((rc = sqlite3_bind_int64(st, 1, it->event.t_wall_us)) != SQLITE_OK ||
		    (rc = db__bind_text_or_null(st, 2, it->str1)) != SQLITE_OK ||
		    (rc = db__bind_text_or_null(st, 3, it->str2)) != SQLITE_OK)
			return rc;
		return sqlite3_step(st);
	case DB_ITEM_TREND: {
		const struct db_trend *t = &it->trend;

		st = db->st.insert_trend;
		*used = st;
		if ((rc = db__bind_text_or_null(st, 1, it->str1)) != SQLITE_OK ||
		    (rc = sqlite3_bind_int64(st, 2, t->t_wall_us)) != SQLITE_OK ||
		    (rc = t->part_id < 0 ? sqlite3_bind_null(st, 3)
					 : sqlite3_bind_int64(st, 3, t->part_id)) != SQLITE_OK ||
		    (rc = sqlite3_bind_double(st, 4, t->velocity_mm_s)) != SQLITE_OK ||
		    (rc = sqlite3_bind_double(st, 5, t->accel_g)) != SQLITE_OK ||
		    (rc = sqlite3_bind_double(st, 6, t->temperature_c)) != SQLITE_OK ||
		    (rc = sqlite3_bind_int(st, 7, t->stale ? 1 : 0)) != SQLITE_OK)
			return rc;
		return sqlite3_step(st);
	}
	case DB_ITEM_MEDIA:
		for (int i = 0; i < it->media.nfiles; i++) {
			const struct media_file *f = &it->media.files[i];

			st = db->st.insert_media;
			*used = st;
			if ((rc = sqlite3_bind_int64(st, 1, it->media.inspection_id)) != SQLITE_OK ||
			    (rc = db__bind_text_or_null(st, 2, f->camera)) != SQLITE_OK ||
			    (rc = db__bind_text_or_null(st, 3, f->kind)) != SQLITE_OK ||
			    (rc = db__bind_text_or_null(st, 4, f->path)) != SQLITE_OK ||
			    (rc = sqlite3_bind_int64(st, 5, f->bytes)) != SQLITE_OK ||
			    (rc = sqlite3_bind_int(st, 6, it->recent ? 1 : 0)) != SQLITE_OK)
				return rc;
			if ((rc = sqlite3_step(st)) != SQLITE_DONE)
				return rc;
			sqlite3_reset(st);
			/* image_path names the long-term image only: a ring file
			 * goes within the window, and the row would outlive it. */
			if (strcmp(f->kind, "image") != 0 || it->recent)
				continue;
			st = db->st.set_image_path;
			*used = st;
			if ((rc = db__bind_text_or_null(st, 1, f->path)) != SQLITE_OK ||
			    (rc = sqlite3_bind_int64(st, 2, it->media.inspection_id)) != SQLITE_OK)
				return rc;
			if ((rc = sqlite3_step(st)) != SQLITE_DONE)
				return rc;
			sqlite3_reset(st);
		}
		*used = NULL;
		return SQLITE_DONE;
	case DB_ITEM_LATENCY: {
		int64_t rowid = ticket_rowid(db, it->latency.ticket);

		*used = NULL;
		if (!rowid)
			return SQLITE_DONE;   /* its row failed, or is long gone */
		st = db->st.set_latency;
		*used = st;
		if ((rc = sqlite3_bind_double(st, 1, it->latency.ms)) != SQLITE_OK ||
		    (rc = sqlite3_bind_int64(st, 2, rowid)) != SQLITE_OK)
			return rc;
		return sqlite3_step(st);
	}
	case DB_ITEM_RETAIN:
	case DB_ITEM_SYNC:
	case DB_ITEM_CHECK_PATH:
		*used = NULL;
		return SQLITE_DONE;
	case DB_ITEM_LATE:
		if (!(it->rowid = ticket_rowid(db, it->late_ticket))) {
			/* The fail-safe row itself failed (or is long gone):
			 * this becomes the part's row, with the verdict the PLC
			 * got, as if no row had been queued at the deadline. */
			it->kind = DB_ITEM_INSPECTION;
			break;
		}
		st = db->st.set_late;
		*used = st;
		if ((rc = sqlite3_bind_int64(st, 1, it->row.flags)) != SQLITE_OK ||
		    (rc = sqlite3_bind_double(st, 2, it->row.vision_score)) != SQLITE_OK ||
		    (rc = sqlite3_bind_double(st, 3, it->row.signal_score)) != SQLITE_OK ||
		    (rc = sqlite3_bind_double(st, 4, it->row.infer_ms)) != SQLITE_OK ||
		    (rc = db__bind_text_or_null(st, 5, it->row.model_version)) != SQLITE_OK ||
		    (rc = bind_model_verdict(st, 6, &it->row)) != SQLITE_OK ||
		    (rc = sqlite3_bind_int64(st, 8, it->rowid)) != SQLITE_OK ||
		    (rc = db__bind_text_or_null(st, 9, vigil_verdict_name(
						(enum vigil_verdict)it->row.verdict))) != SQLITE_OK ||
		    (rc = sqlite3_bind_int(st, 10, it->row.verdict)) != SQLITE_OK ||
		    (rc = sqlite3_bind_double(st, 11, it->row.score)) != SQLITE_OK ||
		    (rc = bind_job(st, 12, &it->row)) != SQLITE_OK)
			return rc;
		if ((rc = sqlite3_step(st)) != SQLITE_DONE)
			return rc;
		return insert_vibration(db, it, used);
	case DB_ITEM_INSPECTION:
		break;
	}

	const struct db_inspection *r = &it->row;

	st = db->st.insert_inspection;
	*used = st;
	/* A NaN double is bound as NULL by SQLite; the read side turns it
	 * back into NaN. seq is stored as its int64 bit pattern. */
	if ((rc = sqlite3_bind_int64(st, 1, r->part_id)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int64(st, 2, r->trigger_counter)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int64(st, 3, (sqlite3_int64)r->seq)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int64(st, 4, r->t_wall_us)) != SQLITE_OK ||
	    (rc = db__bind_text_or_null(st, 5, vigil_verdict_name((enum vigil_verdict)r->verdict))) != SQLITE_OK ||
	    (rc = sqlite3_bind_int(st, 6, r->verdict)) != SQLITE_OK ||
	    (rc = db__bind_text_or_null(st, 7, vigil_class_name((enum vigil_defect_class)r->defect_class))) != SQLITE_OK ||
	    (rc = sqlite3_bind_int64(st, 8, r->flags)) != SQLITE_OK ||
	    (rc = sqlite3_bind_double(st, 9, r->score)) != SQLITE_OK ||
	    (rc = sqlite3_bind_double(st, 10, r->vision_score)) != SQLITE_OK ||
	    (rc = sqlite3_bind_double(st, 11, r->signal_score)) != SQLITE_OK ||
	    (rc = sqlite3_bind_double(st, 12, r->latency_ms)) != SQLITE_OK ||
	    (rc = sqlite3_bind_double(st, 13, r->infer_ms)) != SQLITE_OK ||
	    (rc = db__bind_text_or_null(st, 14, r->model_version)) != SQLITE_OK ||
	    (rc = db__bind_text_or_null(st, 15, r->image_path)) != SQLITE_OK ||
	    (rc = bind_model_verdict(st, 16, r)) != SQLITE_OK ||
	    (rc = bind_job(st, 18, r)) != SQLITE_OK ||
	    (rc = db__bind_text_or_null(st, 19, r->station ? r->station : db->station)) != SQLITE_OK)
		return rc;
	rc = sqlite3_step(st);
	if (rc != SQLITE_DONE)
		return rc;
	it->rowid = sqlite3_last_insert_rowid(db->conn);
	return insert_vibration(db, it, used);
}

/* The model's verdict and score at column col and col + 1; NULL when no
 * model judged the part. */
static int bind_model_verdict(sqlite3_stmt *st, int col, const struct db_inspection *r)
{
	int rc;

	if (!db__verdict_valid(r->model_verdict)) {
		if ((rc = sqlite3_bind_null(st, col)) != SQLITE_OK)
			return rc;
		return sqlite3_bind_null(st, col + 1);
	}
	if ((rc = sqlite3_bind_text(st, col,
				    vigil_verdict_name((enum vigil_verdict)r->model_verdict), -1,
				    SQLITE_STATIC)) != SQLITE_OK)
		return rc;
	return sqlite3_bind_double(st, col + 1, r->model_score);
}

/* The part's condition figures, for the inspection row it->rowid. */
static int insert_vibration(db_log *db, struct db_item *it, sqlite3_stmt **used)
{
	const struct db_inspection *r = &it->row;
	sqlite3_stmt *st;
	int rc;

	if (!r->has_vibration)
		return SQLITE_DONE;
	if (*used)
		sqlite3_reset(*used);

	const struct vigil_vibration *v = &r->vibration;
	char zone[2] = { v->iso_zone, '\0' };

	st = db->st.insert_vibration;
	*used = st;
	if ((rc = sqlite3_bind_int64(st, 12, it->rowid)) != SQLITE_OK ||
	    (rc = sqlite3_bind_double(st, 1, v->rms_velocity_mm_s)) != SQLITE_OK ||
	    (rc = db__bind_text_or_null(st, 2, v->iso_zone ? zone : NULL)) != SQLITE_OK ||
	    (rc = sqlite3_bind_double(st, 3, v->rms_accel_g)) != SQLITE_OK ||
	    (rc = sqlite3_bind_double(st, 4, v->hf_accel_g)) != SQLITE_OK ||
	    (rc = sqlite3_bind_double(st, 5, v->peak_g)) != SQLITE_OK ||
	    (rc = sqlite3_bind_double(st, 6, v->crest_factor)) != SQLITE_OK ||
	    (rc = sqlite3_bind_double(st, 7, v->kurtosis)) != SQLITE_OK ||
	    (rc = sqlite3_bind_double(st, 8, v->ftf_env)) != SQLITE_OK ||
	    (rc = sqlite3_bind_double(st, 9, v->bpfo_env)) != SQLITE_OK ||
	    (rc = sqlite3_bind_double(st, 10, v->bpfi_env)) != SQLITE_OK ||
	    (rc = sqlite3_bind_double(st, 11, v->bsf_env)) != SQLITE_OK)
		return rc;
	rc = sqlite3_step(st);
	if (rc != SQLITE_DONE)
		it->rowid = 0;
	return rc;
}

int db__prepare_statements(db_log *db)
{
	struct {
		const char *sql;
		sqlite3_stmt **st;
	} all[] = {
		{ sql_insert_inspection, &db->st.insert_inspection },
		{ sql_insert_vibration, &db->st.insert_vibration },
		{ sql_insert_event, &db->st.insert_event },
		{ sql_insert_trend, &db->st.insert_trend },
		{ sql_insert_media, &db->st.insert_media },
		{ sql_set_image_path, &db->st.set_image_path },
		{ sql_set_latency, &db->st.set_latency },
		{ sql_set_late, &db->st.set_late },
	};

	for (size_t i = 0; i < G_N_ELEMENTS(all); i++)
		if (sqlite3_prepare_v3(db->conn, all[i].sql, -1, SQLITE_PREPARE_PERSISTENT,
				       all[i].st, NULL) != SQLITE_OK)
			return DB_ESQLITE;
	return 0;
}

void db__finalize_statements(struct db_statements *st)
{
	sqlite3_finalize(st->insert_inspection);
	sqlite3_finalize(st->insert_vibration);
	sqlite3_finalize(st->insert_event);
	sqlite3_finalize(st->insert_trend);
	sqlite3_finalize(st->insert_media);
	sqlite3_finalize(st->set_image_path);
	sqlite3_finalize(st->set_latency);
	sqlite3_finalize(st->set_late);
	*st = (struct db_statements){ 0 };
}
