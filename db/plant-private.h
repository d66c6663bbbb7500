/* Private to db/plant*.c: what the central schema and the forwarder share.
 *   plant-schema.c   the central schema's migrations (vigil_schema) and
 *                    the monthly partitions
 *   plant-forward.c  the forwarder thread */
#ifndef VIGIL_DB_PLANT_PRIVATE_H
#define VIGIL_DB_PLANT_PRIVATE_H

#include <stdint.h>

#include <libpq-fe.h>

#include "db/db-private.h"
#include "db/plant.h"

/* Messages for *err are made with db__set_error (db-private.h): malloc'ed,
 * as plant.h promises. */

/* The server's message for the last failure on conn (or of res when not
 * NULL), without its trailing newline; valid until conn or res changes. */
const char *plant__pg_message(PGconn *conn, const PGresult *res);

/* Runs sql (no parameters) and checks it succeeded: 0, or PLANT_ESQL (or
 * PLANT_ELINK when the connection is gone) with *err = "what: message". */
int plant__exec(PGconn *conn, const char *sql, const char *what, char **err);

/* Connects to conninfo, notices silenced: the connection, or NULL with
 * *err naming the conninfo (password masked) and libpq's reason. The
 * caller closes it with PQfinish. */
PGconn *plant__connect(const char *conninfo, char **err);

/* Brings the central schema on conn to plant_schema_version() (see
 * plant_migrate). conn is connected and outside any transaction. */
int plant__prepare_schema(PGconn *conn, char **err);

/* Makes sure the monthly partitions of inspections and events for the
 * month holding t_wall_us exist (CREATE TABLE IF NOT EXISTS ... PARTITION
 * OF), in a transaction of its own under an advisory lock. 0 or a negative
 * code with *err. */
int plant__ensure_month(PGconn *conn, int64_t t_wall_us, char **err);

#endif
