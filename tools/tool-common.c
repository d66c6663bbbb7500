/* The tools' shared opening (tool-common.h). */
#include <errno.h>
#include <stdio.h>

#include "tools/tool-common.h"

int tool_options_parse(GOptionContext *ctx, const GOptionEntry *entries, const char *prog,
		       int *argc, char ***argv)
{
	GError *gerr = NULL;

	g_option_context_add_main_entries(ctx, entries, NULL);
	if (!g_option_context_parse(ctx, argc, argv, &gerr)) {
		fprintf(stderr, "%s: %s\n", prog, gerr->message);
		g_error_free(gerr);
		return -EINVAL;
	}
	return 0;
}
