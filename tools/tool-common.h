/* What every C tool in tools/ does the same way at its start. */
#ifndef VIGIL_TOOLS_TOOL_COMMON_H
#define VIGIL_TOOLS_TOOL_COMMON_H

#include <glib.h>

/* Adds entries to ctx's main group, after any options already there (the
 * order --help lists them in), and parses the command line, removing the
 * options from argc/argv. A malformed command line is said on stderr as
 * "prog: why"; --help and its kin print and exit 0 inside GLib. Returns 0,
 * or -EINVAL: the caller picks its exit code. entries are borrowed for the
 * context's life; ctx stays the caller's. */
int tool_options_parse(GOptionContext *ctx, const GOptionEntry *entries, const char *prog,
		       int *argc, char ***argv);

#endif
