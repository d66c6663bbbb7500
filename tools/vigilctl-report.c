/* vigilctl report: the shift report as one HTML file, the document vigild
 * serves at /report?shift=LABEL with each image embedded (report.h), so
 * the file can be mailed and printed on its own. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "report/report.h"
#include "tools/vigilctl-private.h"

int vigilctl__cmd_report(const struct opts *o)
{
	struct report_request rq = { .db_path = o->db, .shift = o->shift,
				     .images = REPORT_IMAGES_EMBED };
	GString *html;
	GError *gerr = NULL;
	char *err = NULL;
	int rc;

	if (!o->shift) {
		fprintf(stderr, "vigilctl report: --shift is required: \"YYYY-MM-DD NAME\", "
			"current or previous\n");
		return 2;
	}
	html = g_string_new(NULL);
	rc = report_shift_html(&rq, html, &err);
	if (rc < 0) {
		/* -EINVAL: a shift the plan does not have; err lists its shifts. */
		if (rc == -EINVAL)
			fprintf(stderr, "vigilctl report: --shift '%s': %s\n", o->shift,
				err ? err : "not a shift");
		else
			fprintf(stderr, "vigilctl report: %s\n", err ? err : "failed");
		g_free(err);
		g_string_free(html, TRUE);
		return rc == -EINVAL ? 2 : 1;
	}
	if (o->out) {
		if (!g_file_set_contents(o->out, html->str, (gssize)html->len, &gerr)) {
			fprintf(stderr, "vigilctl report: %s\n", gerr->message);
			g_error_free(gerr);
			rc = -EIO;
		}
	} else if (fwrite(html->str, 1, html->len, stdout) != html->len || fflush(stdout) != 0) {
		perror("vigilctl report: stdout");
		rc = -EIO;
	}
	g_string_free(html, TRUE);
	return rc < 0 ? 1 : 0;
}
