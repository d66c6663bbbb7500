/* [camera.NAME]: one camera's settings. The keys, their defaults and their
 * ranges live here, beside the camera that uses them; vigild only hands
 * each [camera.NAME] section to capture_config_read. */
#include <errno.h>
#include <string.h>

#include <glib.h>

#include "capture/capture.h"

static const char *const camera_keys[] = {
	"pipeline", "trigger", "frame_timeout_ms", "queue_frames", "restart", "restart_min_ms",
	"restart_max_ms", "watchdog_ms", "slack_ms", "flat_level", NULL };

int capture_config_read(const config *cfg, const char *group, struct capture_settings *s,
			char **err)
{
	static const char *const cam_modes[] = { "sequence", "timestamp", NULL };
	static const char *const restarts[] = { "auto", "always", "never", NULL };
	int mode = 0, queue = 0, restart = 0;

	*s = (struct capture_settings){ 0 };
	if (config_check_keys(cfg, group, camera_keys, err) < 0)
		return -EINVAL;
	s->name = g_strdup(g_str_has_prefix(group, "camera.") ? group + strlen("camera.") : group);
	if (config_get_string(cfg, group, "pipeline", NULL, &s->pipeline, err) < 0 ||
	    config_get_choice(cfg, group, "trigger", "sequence", cam_modes, &mode, err) < 0 ||
	    config_get_int(cfg, group, "frame_timeout_ms", 2000, 1, 600000,
			   &s->frame_timeout_ms, err) < 0 ||
	    config_get_int(cfg, group, "queue_frames", 8, 1, 1024, &queue, err) < 0 ||
	    config_get_choice(cfg, group, "restart", "auto", restarts, &restart, err) < 0)
		return -EINVAL;
	s->cfg = (struct capture_config){ .name = s->name, .pipeline = s->pipeline,
		.mode = (enum capture_mode)mode, .queue_frames = queue,
		.restart = (enum capture_restart)restart };
	if (config_get_int(cfg, group, "restart_min_ms", 500, 10, 600000,
			   &s->cfg.restart_min_ms, err) < 0 ||
	    config_get_int(cfg, group, "restart_max_ms", 10000, 10, 3600000,
			   &s->cfg.restart_max_ms, err) < 0 ||
	    config_get_int(cfg, group, "watchdog_ms", 0, 0, 3600000,
			   &s->cfg.watchdog_ms, err) < 0 ||
	    config_get_int(cfg, group, "slack_ms", 20, 1, 60000, &s->cfg.slack_ms, err) < 0 ||
	    config_get_double(cfg, group, "flat_level", 2, 0, 100, &s->flat_level, err) < 0)
		return -EINVAL;
	return 0;
}

void capture_settings_clear(struct capture_settings *s)
{
	if (!s)
		return;
	g_free(s->name);
	g_free(s->pipeline);
	*s = (struct capture_settings){ 0 };
}
