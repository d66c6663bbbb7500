#include "core/part.h"

#include <string.h>
#include <time.h>

const char *vigil_verdict_name(enum vigil_verdict v)
{
	switch (v) {
	case VIGIL_VERDICT_ACCEPT: return "accept";
	case VIGIL_VERDICT_REJECT: return "reject";
	case VIGIL_VERDICT_MARGINAL: return "marginal";
	case VIGIL_VERDICT_NONE: break;
	}
	return "none";
}

const char *vigil_class_name(enum vigil_defect_class c)
{
	switch (c) {
	case VIGIL_CLASS_SURFACE: return "surface";
	case VIGIL_CLASS_VIBRATION: return "vibration";
	case VIGIL_CLASS_BOTH: return "surface+vibration";
	case VIGIL_CLASS_NONE: break;
	}
	return "none";
}

int vigil_defect_type_ok(const char *t)
{
	size_t n = strlen(t);

	if (!n || n > VIGIL_DEFECT_TYPE_MAX)
		return 0;
	/* Spelled out rather than isalnum(): the locale must not widen it. */
	for (size_t i = 0; i < n; i++)
		if (!((t[i] >= 'a' && t[i] <= 'z') || (t[i] >= 'A' && t[i] <= 'Z') ||
		      (t[i] >= '0' && t[i] <= '9') || t[i] == '_' || t[i] == '-' || t[i] == '.'))
			return 0;
	return 1;
}

static int64_t clock_us(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t vigil_now_us(void) { return clock_us(CLOCK_MONOTONIC); }
int64_t vigil_wall_us(void) { return clock_us(CLOCK_REALTIME); }

enum vigil_failsafe_cause vigil_failsafe_cause_of(uint32_t flags)
{
	return flags & VIGIL_FLAG_NOT_INSPECTED ? VIGIL_FAILSAFE_NOT_INSPECTED
	       : flags & VIGIL_FLAG_DEADLINE     ? VIGIL_FAILSAFE_DEADLINE
	       : flags & VIGIL_FLAG_QUEUE_FULL   ? VIGIL_FAILSAFE_QUEUE_FULL
	       : flags & VIGIL_FLAG_NOT_SENT     ? VIGIL_FAILSAFE_OVERRUN
	       : flags & VIGIL_FLAG_NO_FRAME     ? VIGIL_FAILSAFE_NO_FRAME
	       : flags & VIGIL_FLAG_IMAGE_FLAT   ? VIGIL_FAILSAFE_IMAGE_FLAT
	       : flags & VIGIL_FLAG_VIB_FLAT     ? VIGIL_FAILSAFE_SENSOR_FLAT
	       : flags & (VIGIL_FLAG_NO_VIBRATION | VIGIL_FLAG_VIB_CLIPPED)
		       ? VIGIL_FAILSAFE_NO_VIBRATION
	       : flags & VIGIL_FLAG_MODEL_ERROR  ? VIGIL_FAILSAFE_MODEL_ERROR
						 : VIGIL_FAILSAFE_FAULT;
}
