/* vigild: the inspection daemon. Reads its configuration (a file, or the
 * embedded default that runs the simulated line of `make demo`), starts the
 * line and runs until SIGINT or SIGTERM, then finishes the parts in flight.
 * SIGHUP does not reload (nothing does: a changed configuration needs a
 * restart); it is logged and the line goes on. SIGPIPE is ignored.
 * With a [review] section it also serves the QA review page (app/review.h)
 * from its main loop; --review-only serves the page over an existing log
 * without running the line. Under systemd it reports ready, its status and
 * its watchdog pings (app/notify.h). */
#include <errno.h>
#include <signal.h>
#include <glib.h>
#include <glib-unix.h>
#include <gst/gst.h>
#include <stdio.h>
#include <stdlib.h>

#include "app/line.h"
#include "app/notify.h"
#include "app/review.h"
#include "default-conf.h"

static gboolean on_signal(gpointer data)
{
	g_main_loop_quit(data);
	return G_SOURCE_REMOVE;
}

/* SIGHUP is the usual reflex for "reload", and its default action kills:
 * the line would stop with the PLC still seeing it ready, and systemd
 * counts a death by SIGHUP as a clean exit, so Restart=on-failure would
 * not bring it back. vigild has no reload; it says so, in its log and in
 * the events table, and goes on. *lp is the line once it exists (main
 * thread only). */
static gboolean on_hangup(gpointer data)
{
	line **lp = data;
	const char *msg = "SIGHUP: vigild does not reload its configuration; the line goes on "
			  "as started (restart vigild to apply a change)";

	g_warning("%s", msg);
	if (*lp)
		line_event(*lp, "signal", msg);
	return G_SOURCE_CONTINUE;
}

int main(int argc, char **argv)
{
	char *config_path = NULL;
	gboolean print_default = FALSE, review_only = FALSE;
	int grace_ms = 5000;
	GOptionEntry entries[] = {
		{ "config", 'c', 0, G_OPTION_ARG_FILENAME, &config_path,
		  "Configuration file (default: the embedded demo configuration)", "FILE" },
		{ "print-default-config", 0, 0, G_OPTION_ARG_NONE, &print_default,
		  "Print the embedded default configuration and exit", NULL },
		{ "grace-ms", 0, 0, G_OPTION_ARG_INT, &grace_ms,
		  "On stop, time allowed for parts in flight (default 5000)", "MS" },
		{ "review-only", 0, 0, G_OPTION_ARG_NONE, &review_only,
		  "Serve the [review] page over the [database] log; do not run the line", NULL },
		{ NULL, 0, 0, 0, NULL, NULL, NULL },
	};
	GOptionContext *ctx = g_option_context_new("- Vigil inspection daemon");
	GError *gerr = NULL;
	char *err = NULL;
	config *cfg = NULL;
	line *l = NULL;
	review_server *review = NULL;
	notify *sd = NULL;
	GMainLoop *loop = NULL;
	struct line_stats st;
	int rc = 1, review_rc;

	/* A write to a closed pipe or socket (stdout piped to a reader that
	 * went away, a peer gone mid-reply) fails with EPIPE where it is
	 * made; its default signal would kill the line, and, like SIGHUP,
	 * look to systemd like a clean exit that needs no restart. */
	signal(SIGPIPE, SIG_IGN);
	g_option_context_add_main_entries(ctx, entries, NULL);
	g_option_context_add_group(ctx, gst_init_get_option_group());
	if (!g_option_context_parse(ctx, &argc, &argv, &gerr)) {
		fprintf(stderr, "vigild: %s\n", gerr->message);
		g_error_free(gerr);
		goto out;
	}
	if (print_default) {
		fputs(vigild_default_conf, stdout);
		rc = 0;
		goto out;
	}
	/* SIGTERM handled from here on: a stop asked for while the line starts
	 * (the PLC may already see it ready) is a clean stop once it has
	 * started, never the default action's kill. */
	loop = g_main_loop_new(NULL, FALSE);
	g_unix_signal_add(SIGINT, on_signal, loop);
	g_unix_signal_add(SIGTERM, on_signal, loop);
	g_unix_signal_add(SIGHUP, on_hangup, &l);
	sd = notify_new();
	cfg = config_path ? config_load_file(config_path, &err)
			  : config_load_data(vigild_default_conf, "<embedded default config>", &err);
	if (review_only) {
		if (!cfg || !config_has_group(cfg, "review")) {
			fprintf(stderr, "vigild: %s\n",
				err ? err : "--review-only needs a [review] section");
			goto out;
		}
		if (review_server_new(cfg, NULL, &review, &err) < 0) {
			fprintf(stderr, "vigild: %s\n", err);
			goto out;
		}
		notify_start(sd, NULL);
		g_main_loop_run(loop);
		notify_stopping(sd);
		rc = 0;
		goto out;
	}
	if (!cfg || !(l = line_new(cfg, &err))) {
		fprintf(stderr, "vigild: %s\n", err ? err : "start-up failed");
		goto out;
	}
	/* A bad [review] section stops vigild like any bad setting; a port that
	 * is taken only costs the page, never the line. */
	if (config_has_group(cfg, "review") &&
	    (review_rc = review_server_new(cfg, l, &review, &err)) < 0) {
		if (review_rc == -EINVAL) {
			fprintf(stderr, "vigild: %s\n", err);
			goto out;
		}
		g_warning("%s; running without the review page", err);
		g_clear_pointer(&err, g_free);
	}
	if (line_start(l, &err) < 0) {
		fprintf(stderr, "vigild: %s\n", err ? err : "start-up failed");
		goto out;
	}
	g_message("vigild running (config %s)", config_name(cfg));
	notify_start(sd, l);
	g_main_loop_run(loop);

	g_message("stopping: finishing parts in flight");
	notify_stopping(sd);
	g_clear_pointer(&review, review_server_free);
	line_stop(l, grace_ms);
	line_get_stats(l, &st);
	printf("vigild: %" G_GUINT64_FORMAT " triggers, %" G_GUINT64_FORMAT " inspected, %"
	       G_GUINT64_FORMAT " results to the PLC (%" G_GUINT64_FORMAT " accept, %"
	       G_GUINT64_FORMAT " reject, %" G_GUINT64_FORMAT " marginal, %" G_GUINT64_FORMAT
	       " fail-safe), %" G_GUINT64_FORMAT " rows logged, %" G_GUINT64_FORMAT
	       " missed triggers\n",
	       st.triggers, st.inspected, st.results_written, st.accepted, st.rejected,
	       st.marginal, st.failsafe, st.rows_logged, st.missed_triggers);
	if (st.failsafe) {
		printf("vigild: fail-safe rejects by cause:");
		for (int c = 0; c < VIGIL_FAILSAFE_CAUSES; c++)
			if (st.failsafe_by[c])
				printf(" %s %" G_GUINT64_FORMAT, line_failsafe_cause_names[c],
				       st.failsafe_by[c]);
		printf("\n");
	}
	rc = 0;
out:
	notify_free(sd);
	review_server_free(review);
	if (loop)
		g_main_loop_unref(loop);
	line_free(l);
	config_free(cfg);
	g_free(err);
	g_free(config_path);
	g_option_context_free(ctx);
	return rc;
}
