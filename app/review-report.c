/* GET /report?shift=LABEL: the shift report (report/report.h), the same
 * document vigilctl report writes, its images linked to /api/parts/.../media
 * rather than embedded; with images=embed, embedded as vigilctl's are (the
 * page downloads that one when reads need a token, since a link to the
 * media would need one too). */
#include <errno.h>
#include <string.h>

#include "app/review-private.h"
#include "report/report.h"

void review__serve_report(review_server *s, SoupServerMessage *msg, GHashTable *query)
{
	const char *shift = query ? g_hash_table_lookup(query, "shift") : NULL;
	const char *images = query ? g_hash_table_lookup(query, "images") : NULL;
	char label[REPORT_LABEL_MAX] = "";
	struct report_request rq = { .db_path = s->db_path, .shift = shift ? shift : "current",
				     .images = REPORT_IMAGES_LINK, .label_out = label };
	GString *html = g_string_new(NULL);
	char *err = NULL, *csp, *name;
	GHashTable *params;
	int rc;

	if (images && strcmp(images, "embed") == 0) {
		rq.images = REPORT_IMAGES_EMBED;
	} else if (images && strcmp(images, "link") != 0) {
		review__reply_text(msg, SOUP_STATUS_BAD_REQUEST, "text/plain; charset=utf-8",
				   g_string_assign(html, "images is embed or link\n"));
		goto out;
	}
	rc = report_shift_html(&rq, html, &err);
	if (rc < 0) {
		/* -EINVAL: a shift the plan does not have, said to the client;
		 * anything else names the log's path, which is the journal's. */
		if (rc != -EINVAL)
			g_warning("review: report %s: %s", rq.shift, err ? err : "failed");
		g_string_assign(html, rc == -EINVAL && err ? err
				: "cannot make the report: the inspection log could not be read; "
				  "vigild's log says why");
		g_string_append_c(html, '\n');
		review__reply_text(msg, rc == -EINVAL ? SOUP_STATUS_BAD_REQUEST
						      : SOUP_STATUS_INTERNAL_SERVER_ERROR,
				   "text/plain; charset=utf-8", html);
		goto out;
	}
	review__reply_text(msg, SOUP_STATUS_OK, "text/html; charset=utf-8", html);
	/* The page's policy, plus the report's one inline style sheet by its
	 * hash: the report is one document so that the file vigilctl writes
	 * stands alone, and the served one is the same. */
	csp = g_strdup_printf("default-src 'self'; img-src 'self' data:; style-src %s; "
			      "frame-ancestors 'none'", report_style_source());
	soup_message_headers_replace(soup_server_message_get_response_headers(msg),
				     "Content-Security-Policy", csp);
	g_free(csp);
	/* Saved, it is named after the occurrence it reports, whatever it
	 * was asked as ("current"): shift-report-2026-12-07-early.html. The
	 * label is a date and a plan's name, letters, digits, '-' and '_'. */
	name = g_strdelimit(g_strdup_printf("shift-report-%s.html", label), " ", '-');
	params = g_hash_table_new(g_str_hash, g_str_equal);
	g_hash_table_insert(params, "filename", name);
	soup_message_headers_set_content_disposition(
		soup_server_message_get_response_headers(msg), "inline", params);
	g_hash_table_unref(params);
	g_free(name);
out:
	g_free(err);
	g_string_free(html, TRUE);
}
