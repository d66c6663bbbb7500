/* The part record: one inspected part as it moves through vigild.
 * Owned by whichever stage holds it; stages hand it on through queues. */
#ifndef VIGIL_CORE_PART_H
#define VIGIL_CORE_PART_H

#include <stdint.h>

enum vigil_verdict {
	VIGIL_VERDICT_NONE = 0,
	VIGIL_VERDICT_ACCEPT = 1,
	VIGIL_VERDICT_REJECT = 2,
	VIGIL_VERDICT_MARGINAL = 3,
};

/* Defect class reported to the PLC and the log: which modality found it. */
enum vigil_defect_class {
	VIGIL_CLASS_NONE = 0,
	VIGIL_CLASS_SURFACE = 1,
	VIGIL_CLASS_VIBRATION = 2,
	VIGIL_CLASS_BOTH = 3,
};

/* Fault flags carried with a verdict (PLC result flags and database). */
enum vigil_part_flags {
	VIGIL_FLAG_VISION_DEFECT = 1 << 0,
	VIGIL_FLAG_SIGNAL_DEFECT = 1 << 1,
	VIGIL_FLAG_FAILSAFE = 1 << 2,     /* verdict forced by a fault or the deadline */
	VIGIL_FLAG_NO_FRAME = 1 << 3,
	VIGIL_FLAG_NO_VIBRATION = 1 << 4,
	VIGIL_FLAG_MODEL_ERROR = 1 << 5,
	VIGIL_FLAG_VIB_CLIPPED = 1 << 6,  /* the vibration window reached the clip level */
	VIGIL_FLAG_DEADLINE = 1 << 7,     /* fail-safe: no verdict by the deadline */
	VIGIL_FLAG_QUEUE_FULL = 1 << 8,   /* fail-safe: the inspection queue was full */
	/* Database only: the result never reached the PLC (its result buffer
	 * was full, the PLC program restarted, or vigild stopped first); the
	 * PLC's rule for a missing result applies, so the row says reject. */
	VIGIL_FLAG_NOT_SENT = 1 << 9,
	/* Fail-safe: triggered while vigild was down (found unanswered at
	 * start), so never inspected: its images are gone. */
	VIGIL_FLAG_NOT_INSPECTED = 1 << 10,
	/* Fail-safe: the vibration window was flat, its range below [vibration]
	 * flat_level: a dead sensor, whose window would pass for a quiet part. */
	VIGIL_FLAG_VIB_FLAT = 1 << 11,
	/* Fail-safe: a camera's frame was flat, its grey levels' standard
	 * deviation below [camera] flat_level: a lens cap, the light off, a
	 * blank or saturated sensor, whose picture would pass for a clean part. */
	VIGIL_FLAG_IMAGE_FLAT = 1 << 12,
};

/* The part's picture could not be judged (the camera's fault: "camera
 * ok" clears), and its vibration window could not (the sensor's: "sensor
 * ok" clears); either makes the part a fail-safe reject before the model. */
#define VIGIL_FLAGS_NO_PICTURE (VIGIL_FLAG_NO_FRAME | VIGIL_FLAG_IMAGE_FLAT)
#define VIGIL_FLAGS_NO_WINDOW (VIGIL_FLAG_NO_VIBRATION | VIGIL_FLAG_VIB_CLIPPED | \
			       VIGIL_FLAG_VIB_FLAT)

/* Why a fail-safe reject was forced, read from its flags by
 * vigil_failsafe_cause_of: one classification for /metrics, the failsafe
 * events and the shift report, so that they count a part alike. In the
 * order /metrics lists them. */
enum vigil_failsafe_cause {
	VIGIL_FAILSAFE_DEADLINE,
	VIGIL_FAILSAFE_NO_FRAME,
	VIGIL_FAILSAFE_NO_VIBRATION,
	VIGIL_FAILSAFE_MODEL_ERROR,
	VIGIL_FAILSAFE_QUEUE_FULL,
	VIGIL_FAILSAFE_OVERRUN,        /* the result never reached the PLC */
	VIGIL_FAILSAFE_FAULT,          /* none of the others */
	VIGIL_FAILSAFE_NOT_INSPECTED,  /* triggered while vigild was down */
	VIGIL_FAILSAFE_SENSOR_FLAT,    /* the window was flat: a dead sensor */
	VIGIL_FAILSAFE_IMAGE_FLAT,     /* a frame was flat: a lens cap, the light off */
	VIGIL_FAILSAFE_CAUSES
};

/* The cause of a fail-safe reject with these flags (VIGIL_FLAG_*): where
 * several are set, the first of not inspected, deadline, queue full, not
 * sent, no frame, image flat, sensor flat, no or clipped window, model
 * error; VIGIL_FAILSAFE_FAULT when none is. */
enum vigil_failsafe_cause vigil_failsafe_cause_of(uint32_t flags);

/* Condition figures of a part's vibration window (fusion/condition.h),
 * as vibration instruments report them. */
struct vigil_vibration {
	double rms_velocity_mm_s;  /* 10-1000 Hz */
	char iso_zone;             /* 'A'..'D' (ISO 10816), 0 when not measured */
	double rms_accel_g;        /* mean removed */
	double hf_accel_g;         /* RMS above the high-frequency band edge */
	double peak_g;
	double crest_factor;
	double kurtosis;
	/* Envelope spectrum lines at the bearing defect frequencies, relative
	 * to the spectrum's median (0 when no bearing is configured). */
	double ftf_env, bpfo_env, bpfi_env, bsf_env;
};

/* What a part holds of the Modbus vibration transmitter's reading. */
enum vigil_tx_state {
	VIGIL_TX_NONE = 0,     /* none: not configured, or nothing read yet */
	VIGIL_TX_CURRENT = 1,  /* a current reading */
	VIGIL_TX_STALE = 2,    /* the last reading of a transmitter that stopped answering */
};

struct vigil_part {
	uint32_t part_id;          /* from the PLC trigger */
	uint16_t trigger_counter;  /* the PLC's 16-bit trigger counter */
	uint64_t seq;              /* trigger sequence since start, unwrapped, from 0 */
	int64_t t_trigger_us;      /* monotonic clock, when vigild saw the trigger */
	int64_t t_wall_us;         /* wall clock at the trigger, for the log */
	int64_t t_verdict_us;      /* monotonic, verdict ready */
	int64_t t_plc_us;          /* monotonic, result written to the PLC */

	enum vigil_verdict verdict;  /* as the PLC gets it */
	/* The model's own verdict and fused score (NONE: no model ran), kept
	 * when a fault or the deadline overrides verdict. */
	enum vigil_verdict model_verdict;
	float model_score;
	enum vigil_defect_class defect_class;
	uint32_t flags;
	float score;               /* fused defect probability, 0..1 */
	float vision_score;
	float signal_score;
	double infer_ms;           /* features + model */
	/* Version of the model package that judged it; a string that lives as
	 * long as the process (g_intern_string), NULL if no model ran. */
	const char *model_version;
	uint16_t job;              /* the job (recipe) it was judged under */
	int has_vibration;
	struct vigil_vibration vibration;
	/* The Modbus vibration transmitter's newest reading when the part was
	 * inspected. */
	enum vigil_tx_state tx_state;
	int64_t t_tx_us;           /* monotonic time of that reading */
	double tx_velocity_mm_s, tx_accel_g, tx_temperature_c; /* NAN: not read */
};

const char *vigil_verdict_name(enum vigil_verdict v);
const char *vigil_class_name(enum vigil_defect_class c);

/* A defect type, as a review names it (the station's page, the Plant view,
 * vigilctl --central review), becomes a class name in a training CSV and
 * in train.py's sampling: so one plain word of 1 to VIGIL_DEFECT_TYPE_MAX
 * bytes, ASCII letters, digits, '_', '-' and '.'. Nonzero when t is one. */
#define VIGIL_DEFECT_TYPE_MAX 40
int vigil_defect_type_ok(const char *t);

/* Monotonic and wall clocks in microseconds (CLOCK_MONOTONIC, CLOCK_REALTIME). */
int64_t vigil_now_us(void);
int64_t vigil_wall_us(void);

#endif
