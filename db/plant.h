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

/* A static description of a code returned by this module. */
const char *plant_strerror(int code);

#endif
