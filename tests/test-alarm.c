/* app/alarm: the quality alarms' rules on synthetic part streams (the
 * settings are the defaults: window 200, baseline 2000, surge_p 0.001,
 * model change factor 2). Streams are built part by part, so the result
 * depends only on the sequence. */
#include <glib.h>
#include <string.h>

#include "app/alarm.h"
#include "core/config.h"
#include "core/part.h"

struct feed {
	alarm_monitor *m;
	int64_t t;
	int raised[ALARM_KINDS], cleared[ALARM_KINDS];
	int64_t raised_at[ALARM_KINDS], cleared_at[ALARM_KINDS];  /* part number */
	int64_t parts;
	char last[ALARM_KINDS][256];
};

static void add(struct feed *f, int verdict, int cls, const char *version)
{
	struct alarm_change ch[ALARM_KINDS];
	int n = alarm_monitor_add(f->m, verdict, cls, version, f->t += 500000, ch);

	f->parts++;
	for (int i = 0; i < n; i++) {
		enum alarm_kind k = ch[i].kind;

		if (ch[i].raised) {
			f->raised[k]++;
			f->raised_at[k] = f->parts;
		} else {
			f->cleared[k]++;
			f->cleared_at[k] = f->parts;
		}
		memcpy(f->last[k], ch[i].message, sizeof f->last[k]);
	}
}

/* n parts with one reject of class cls in every 25 (4 %). */
static void in_control(struct feed *f, int n, int cls, const char *version)
{
	for (int i = 0; i < n; i++)
		add(f, i % 25 == 7 ? VIGIL_VERDICT_REJECT : VIGIL_VERDICT_ACCEPT,
		    i % 25 == 7 ? cls : VIGIL_CLASS_NONE, version);
}

static struct feed *feed_new(void)
{
	struct alarm_settings s = ALARM_SETTINGS_DEFAULT;
	struct feed *f = g_new0(struct feed, 1);

	f->m = alarm_monitor_new(&s);
	return f;
}

static void feed_free(struct feed *f)
{
	alarm_monitor_free(f->m);
	g_free(f);
}

static void test_in_control_raises_nothing(void)
{
	struct feed *f = feed_new();

	in_control(f, 10000, VIGIL_CLASS_SURFACE, "m1");
	for (int k = 0; k < ALARM_KINDS; k++)
		g_assert_cmpint(f->raised[k], ==, 0);
	g_assert_cmpuint(alarm_monitor_active(f->m), ==, 0);
	feed_free(f);
}

static void test_reject_burst_raises_then_clears(void)
{
	struct feed *f = feed_new();

	in_control(f, 3000, VIGIL_CLASS_SURFACE, "m1");
	/* 4 % in 200 parts: UCL = 4 + 3 * 1.39 = 8.2 %, i.e. 17 rejects. A
	 * burst of 30 rejects in a row takes the window over it. */
	for (int i = 0; i < 30; i++)
		add(f, VIGIL_VERDICT_REJECT, VIGIL_CLASS_SURFACE, "m1");
	g_assert_cmpint(f->raised[ALARM_YIELD], ==, 1);
	g_assert_true(alarm_monitor_active(f->m) & (1u << ALARM_YIELD));
	g_assert_cmpint(alarm_monitor_since(f->m, ALARM_YIELD), >, 0);
	g_assert_nonnull(strstr(f->last[ALARM_YIELD], "above the upper control limit"));
	g_assert_cmpint(f->cleared[ALARM_YIELD], ==, 0);
	/* Back to 4 %: clears once the burst has left the window, and not
	 * again raised by the frozen baseline. */
	in_control(f, 400, VIGIL_CLASS_SURFACE, "m1");
	g_assert_cmpint(f->cleared[ALARM_YIELD], ==, 1);
	g_assert_cmpint(f->cleared_at[ALARM_YIELD] - 3030, <=, 200);
	g_assert_cmpint(alarm_monitor_since(f->m, ALARM_YIELD), ==, 0);
	in_control(f, 3000, VIGIL_CLASS_SURFACE, "m1");
	g_assert_cmpint(f->raised[ALARM_YIELD], ==, 1);
	g_assert_false(alarm_monitor_active(f->m) & (1u << ALARM_YIELD));
	feed_free(f);
}

static void test_class_surge(void)
{
	struct feed *f = feed_new();

	in_control(f, 3000, VIGIL_CLASS_SURFACE, "m1");
	/* The same 4 % of rejects, now all vibration: the yield is in
	 * control, the vibration class (none in the baseline) is not. */
	in_control(f, 200, VIGIL_CLASS_VIBRATION, "m1");
	g_assert_cmpint(f->raised[ALARM_YIELD], ==, 0);
	g_assert_cmpint(f->raised[ALARM_CLASS_SURGE], ==, 1);
	g_assert_nonnull(strstr(f->last[ALARM_CLASS_SURGE], "vibration surging"));
	in_control(f, 400, VIGIL_CLASS_SURFACE, "m1");
	g_assert_cmpint(f->cleared[ALARM_CLASS_SURGE], ==, 1);
	g_assert_cmpuint(alarm_monitor_active(f->m), ==, 0);
	feed_free(f);
}

static void test_model_change_collapse(void)
{
	struct feed *f = feed_new();

	in_control(f, 3000, VIGIL_CLASS_SURFACE, "m1");
	/* Model m2 judges one part in five marginal (the rejects as before):
	 * the reject proportion (yield) stays in control, the reject +
	 * marginal proportion is 6x what it was. Judged on m2's first 200
	 * parts, exactly. */
	for (int i = 0; i < 600; i++)
		add(f, i % 5 == 1 ? VIGIL_VERDICT_MARGINAL
		     : i % 25 == 7 ? VIGIL_VERDICT_REJECT : VIGIL_VERDICT_ACCEPT,
		    i % 25 == 7 ? VIGIL_CLASS_SURFACE : VIGIL_CLASS_NONE, "m2");
	g_assert_cmpint(f->raised[ALARM_MODEL_CHANGE], ==, 1);
	g_assert_cmpint(f->raised_at[ALARM_MODEL_CHANGE], ==, 3200);
	g_assert_nonnull(strstr(f->last[ALARM_MODEL_CHANGE], "model m2"));
	g_assert_cmpint(f->raised[ALARM_YIELD], ==, 0);
	g_assert_cmpint(f->cleared[ALARM_MODEL_CHANGE], ==, 0);
	/* Back to m1: the alarm of m2 ends with it, and m1 raises nothing. */
	in_control(f, 600, VIGIL_CLASS_SURFACE, "m1");
	g_assert_cmpint(f->cleared[ALARM_MODEL_CHANGE], ==, 1);
	g_assert_cmpint(f->raised[ALARM_MODEL_CHANGE], ==, 1);
	feed_free(f);
}

static void test_model_change_that_works_raises_nothing(void)
{
	struct feed *f = feed_new();

	/* The first version seen (vigild starting) is no change; a new model
	 * with the same yield raises nothing. */
	in_control(f, 3000, VIGIL_CLASS_SURFACE, "m1");
	in_control(f, 3000, VIGIL_CLASS_SURFACE, "m2");
	g_assert_cmpuint(alarm_monitor_active(f->m), ==, 0);
	g_assert_cmpint(f->raised[ALARM_MODEL_CHANGE], ==, 0);
	feed_free(f);
}

static void test_disabled_raises_nothing(void)
{
	struct alarm_settings s = ALARM_SETTINGS_DEFAULT;
	struct feed f = { 0 };

	s.enabled = 0;
	f.m = alarm_monitor_new(&s);
	in_control(&f, 3000, VIGIL_CLASS_SURFACE, "m1");
	for (int i = 0; i < 300; i++)
		add(&f, VIGIL_VERDICT_REJECT, VIGIL_CLASS_VIBRATION, "m2");
	g_assert_cmpuint(alarm_monitor_active(f.m), ==, 0);
	alarm_monitor_free(f.m);
}

static void test_settings_errors_name_key(void)
{
	char *err = NULL;
	struct alarm_settings s;
	config *c = config_load_data("[alarm]\nwindow_parts = 500\nbaseline_parts = 100\n",
				     "line.conf", &err);

	g_assert_nonnull(c);
	g_assert_cmpint(alarm_settings_read(c, &s, &err), ==, -22);
	g_assert_nonnull(strstr(err, "line.conf"));
	g_assert_nonnull(strstr(err, "baseline_parts"));
	g_assert_nonnull(strstr(err, ":3"));
	g_free(err);
	config_free(c);
	c = config_load_data("[alarm]\nsurge_pp = 0.1\n", "line.conf", &err);
	g_assert_cmpint(alarm_settings_read(c, &s, &err), ==, -22);
	g_assert_nonnull(strstr(err, "surge_pp"));
	g_free(err);
	config_free(c);
	c = config_load_data("[alarm]\nenabled = false\nexpected_reject_rate = 0.02\n",
			     "line.conf", &err);
	g_assert_cmpint(alarm_settings_read(c, &s, &err), ==, 0);
	g_assert_cmpint(s.enabled, ==, 0);
	g_assert_cmpfloat(s.expected_reject_rate, ==, 0.02);
	config_free(c);
}

int main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/alarm/in-control-raises-nothing", test_in_control_raises_nothing);
	g_test_add_func("/alarm/reject-burst-raises-then-clears",
			test_reject_burst_raises_then_clears);
	g_test_add_func("/alarm/class-surge", test_class_surge);
	g_test_add_func("/alarm/model-change-collapse", test_model_change_collapse);
	g_test_add_func("/alarm/model-change-that-works-raises-nothing",
			test_model_change_that_works_raises_nothing);
	g_test_add_func("/alarm/disabled-raises-nothing", test_disabled_raises_nothing);
	g_test_add_func("/alarm/settings-errors-name-key", test_settings_errors_name_key);
	return g_test_run();
}
