/* vigil-sim: the simulated line.
 *
 *   vigil-sim generate --out DIR --parts N [--seed S] [--split NAME]
 *       writes synthetic parts with ground truth (tools/sim-synth.h).
 *   vigil-sim stage --manifest CSV --out DIR [--data-root DIR] [--split NAME]
 *                   [--limit N] [--rate-hz HZ]
 *       writes real parts of a line manifest into the same folder layout,
 *       truth kept, for run and vigild to replay (tools/sim-stage.h).
 *   vigil-sim run --parts-dir DIR [--port P] [--rate PER_MIN] [--burst N]
 *                 [--count N] [--results CSV] [--summary JSON] [--db FILE]
 *       is the PLC: a Modbus TCP server on loopback that waits for vigild to
 *       report ready, raises one trigger per part at the set rate (each
 *       once vigild has taken the one before, as docs/plc.md asks of a PLC,
 *       so a busy host delays triggers instead of losing them), collects
 *       the results through the handshake and scores them against the
 *       ground truth: escapes, false rejects, missed deadlines, lost and
 *       duplicated results, latency from trigger to result. With --db it
 *       also checks vigild's SQLite log against what the PLC received.
 *       With --burst N the parts come in bursts of N, each trigger as soon
 *       as vigild has taken the one before (status trigger_seen): the
 *       burst's triggers follow at the pace of vigild's PLC polling, not of
 *       a clock, so how they fall against the model's runs does not hang on
 *       the machine's speed. A burst starts once the previous one has all
 *       its results, and no sooner than --rate allows. */
#include <glib.h>
#include <stdio.h>
#include <string.h>

#include "tools/manifest.h"
#include "tools/sim-run.h"
#include "tools/sim-stage.h"
#include "tools/sim-synth.h"
#include "tools/tool-common.h"

static int cmd_run(int argc, char **argv)
{
	char *dir = NULL, *results_path = NULL, *summary_path = NULL, *db_path = NULL;
	char *host = g_strdup("127.0.0.1");
	int port = 1502, count = 0, burst = 0, ready_timeout_s = 120, drain_timeout_s = 20;
	double rate = 600;
	GOptionEntry entries[] = {
		{ "parts-dir", 0, 0, G_OPTION_ARG_FILENAME, &dir, "Generated or staged parts (parts.csv)", "DIR" },
		{ "host", 0, 0, G_OPTION_ARG_STRING, &host, "Listen address (127.0.0.1)", "ADDR" },
		{ "port", 0, 0, G_OPTION_ARG_INT, &port, "Modbus TCP port (1502)", "PORT" },
		{ "rate", 0, 0, G_OPTION_ARG_DOUBLE, &rate, "Parts per minute (600)", "N" },
		{ "burst", 0, 0, G_OPTION_ARG_INT, &burst,
		  "Trigger in bursts of N parts, each as soon as vigild took the one before; "
		  "a burst waits for the previous one's results (0: one part at a time)", "N" },
		{ "count", 0, 0, G_OPTION_ARG_INT, &count, "Parts to run (all)", "N" },
		{ "ready-timeout-s", 0, 0, G_OPTION_ARG_INT, &ready_timeout_s,
		  "Wait this long for vigild to report ready (120)", "S" },
		{ "drain-timeout-s", 0, 0, G_OPTION_ARG_INT, &drain_timeout_s,
		  "Wait this long for the last results, for vigild to take each trigger, and "
		  "with --burst for each burst's results (20)", "S" },
		{ "results", 0, 0, G_OPTION_ARG_FILENAME, &results_path, "Per-part results CSV", "FILE" },
		{ "summary", 0, 0, G_OPTION_ARG_FILENAME, &summary_path, "Summary JSON", "FILE" },
		{ "db", 0, 0, G_OPTION_ARG_FILENAME, &db_path, "vigild's SQLite log to check", "FILE" },
		{ NULL, 0, 0, 0, NULL, NULL, NULL },
	};
	GOptionContext *ctx = g_option_context_new("run - be the PLC of a simulated line");
	int rc = 1;

	if (tool_options_parse(ctx, entries, "vigil-sim run", &argc, &argv) < 0)
		goto out;
	if (!dir) {
		fprintf(stderr, "vigil-sim run: --parts-dir is required\n");
		goto out;
	}
	if (!(rate > 0)) {
		fprintf(stderr, "vigil-sim run: --rate must be positive\n");
		goto out;
	}
	if (burst < 0) {
		fprintf(stderr, "vigil-sim run: --burst must be 0 or more\n");
		goto out;
	}
	{
		struct sim_run_opts o = {
			.parts_dir = dir, .host = host, .port = port, .rate = rate,
			.burst = burst, .count = count, .ready_timeout_s = ready_timeout_s,
			.drain_timeout_s = drain_timeout_s, .results_path = results_path,
			.summary_path = summary_path, .db_path = db_path,
		};

		rc = sim_run(&o);
	}
out:
	g_free(dir);
	g_free(host);
	g_free(results_path);
	g_free(summary_path);
	g_free(db_path);
	g_option_context_free(ctx);
	return rc;
}

static int cmd_generate(int argc, char **argv)
{
	char *out = NULL, *split = g_strdup("train"), *err = NULL;
	int parts = 0;
	gint64 seed = 1;
	double p_surface = 0.25, p_vibration = 0.25;
	GOptionEntry entries[] = {
		{ "out", 0, 0, G_OPTION_ARG_FILENAME, &out, "Output directory", "DIR" },
		{ "parts", 0, 0, G_OPTION_ARG_INT, &parts, "Number of parts", "N" },
		{ "seed", 0, 0, G_OPTION_ARG_INT64, &seed, "Random seed (1)", "S" },
		{ "split", 0, 0, G_OPTION_ARG_STRING, &split, "Split column value (train)", "NAME" },
		{ "p-surface", 0, 0, G_OPTION_ARG_DOUBLE, &p_surface, "Surface defect rate (0.25)", "P" },
		{ "p-vibration", 0, 0, G_OPTION_ARG_DOUBLE, &p_vibration,
		  "Bearing fault rate (0.25)", "P" },
		{ NULL, 0, 0, 0, NULL, NULL, NULL },
	};
	GOptionContext *ctx = g_option_context_new("generate - write synthetic parts");
	int rc = 1;

	if (tool_options_parse(ctx, entries, "vigil-sim generate", &argc, &argv) < 0)
		goto out;
	if (!out || parts <= 0) {
		fprintf(stderr, "vigil-sim generate: --out and a positive --parts are required\n");
		goto out;
	}
	{
		struct sim_gen_opts o = { .out_dir = out, .parts = (unsigned)parts,
					  .seed = (uint64_t)seed, .split = split,
					  .p_surface = p_surface, .p_vibration = p_vibration };

		if (sim_generate(&o, &err) < 0) {
			fprintf(stderr, "vigil-sim generate: %s\n", err ? err : "failed");
			goto out;
		}
	}
	fprintf(stderr, "vigil-sim: %d parts written to %s\n", parts, out);
	rc = 0;
out:
	g_free(err);
	g_free(out);
	g_free(split);
	g_option_context_free(ctx);
	return rc;
}

static int cmd_stage(int argc, char **argv)
{
	char *manifest = NULL, *root = NULL, *split = NULL, *out = NULL, *err = NULL;
	int limit = 0;
	double rate_hz = SIM_RATE_HZ;
	unsigned staged = 0;
	GOptionEntry entries[] = {
		{ "out", 0, 0, G_OPTION_ARG_FILENAME, &out, "Output directory", "DIR" },
		{ "limit", 0, 0, G_OPTION_ARG_INT, &limit, "Stage the first N parts (all)", "N" },
		{ "rate-hz", 0, 0, G_OPTION_ARG_DOUBLE, &rate_hz,
		  "Sample rate of the recordings and of the staged WAV; no resampling (12000)", "HZ" },
		{ NULL, 0, 0, 0, NULL, NULL, NULL },
	};
	GOptionContext *ctx = g_option_context_new("stage - real parts of a line manifest for run");
	int rc = 1;

	manifest_add_options(ctx, &manifest, &root, &split);
	if (tool_options_parse(ctx, entries, "vigil-sim stage", &argc, &argv) < 0)
		goto out;
	if (!manifest || !out) {
		fprintf(stderr, "vigil-sim stage: --manifest and --out are required\n");
		goto out;
	}
	if (limit < 0 || !(rate_hz > 0)) {
		fprintf(stderr, "vigil-sim stage: --limit must be 0 or more, --rate-hz positive\n");
		goto out;
	}
	{
		struct sim_stage_opts o = { .manifest = manifest, .data_root = root,
					    .out_dir = out, .split = split,
					    .limit = (unsigned)limit, .rate_hz = rate_hz };

		if (sim_stage(&o, &staged, &err) < 0) {
			fprintf(stderr, "vigil-sim stage: %s\n", err ? err : "failed");
			goto out;
		}
	}
	fprintf(stderr, "vigil-sim: %u parts staged in %s\n", staged, out);
	rc = 0;
out:
	g_free(err);
	g_free(manifest);
	g_free(root);
	g_free(split);
	g_free(out);
	g_option_context_free(ctx);
	return rc;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "generate") == 0)
		return cmd_generate(argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "stage") == 0)
		return cmd_stage(argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "run") == 0)
		return cmd_run(argc - 1, argv + 1);
	fprintf(stderr, "usage: vigil-sim generate --out DIR --parts N [--seed S]\n"
			"       vigil-sim stage --manifest CSV --out DIR [--data-root DIR] [--split NAME]\n"
			"       vigil-sim run --parts-dir DIR [--port P] [--rate N] [--burst N] [--db FILE]\n"
			"see --help of each command\n");
	return argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) ? 0 : 1;
}
