/* Synthetic parts: a machined metal surface image and the vibration of a
 * rolling-element bearing test, each with injected defects (sim-synth.h).
 *
 * Images are SIM_IMAGE_SIZE (192) pixels square: large enough that the
 * smallest pit (radius 2 px) is still a 4 px dark spot, and a model can
 * learn from a 2x or 1.5x area-averaged reduction; small enough that
 * thousands of parts generate and train in minutes on two cores.
 *
 * The surface: a base brightness that varies part to part, a smooth
 * illumination gradient and vignetting, brushing streaks along one axis,
 * faint full-length machining marks, single-pixel grain and sensor noise.
 * None of these is a defect. Defects are thin long scratches (bright or
 * dark), pits (dark discs of radius 2-5 px with a lit rim), cracks (dark
 * jagged random walks, sometimes branched) and stains (soft irregular
 * blobs of changed brightness). The mask marks pixels where a defect
 * changes the surface by at least a third of its contrast.
 *
 * The vibration: a shaft at ~1797 rpm with random harmonics, white noise,
 * a structural resonance excited by that noise, sometimes a gear-mesh tone
 * with shaft sidebands and, in healthy parts too, an occasional isolated
 * knock. A bearing fault adds impacts at its defect frequency (BPFO, BPFI
 * modulated by the shaft's load zone, or BSF modulated at the cage rate),
 * with timing jitter; each impact rings a damped resonance at 2.5-4 kHz.
 * Impact peaks are 4-9 times the white noise level but short, so a fault
 * adds little to the RMS (which varies more from part to part) and shows
 * in the envelope spectrum and the high-band kurtosis. Bearing geometry ratios are those of a 6205 deep-groove bearing. */
#include <errno.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/wav.h"
#include "cvwrap/cvwrap.h"
#include "tools/sim-synth.h"

#define W SIM_IMAGE_SIZE
#define H SIM_IMAGE_SIZE
#define BPFO_RATIO 3.585
#define BPFI_RATIO 5.415
#define BSF_RATIO 2.357
#define FTF_RATIO 0.3983

enum { STREAM_LABELS = 1, STREAM_IMAGE = 2, STREAM_VIBRATION = 3 };

static const char *const image_classes[] = { "free", "scratch", "pit", "crack", "stain" };
static const char *const vib_classes[] = { "normal", "outer_race", "inner_race", "ball" };

/* xoshiro256** seeded through splitmix64 (Blackman and Vigna): small, fast
 * and the same on every platform, unlike rand(). */
struct rng {
	uint64_t s[4];
};

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9E3779B97F4A7C15ULL);

	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	return z ^ (z >> 31);
}

/* One independent stream per (seed, part, purpose), so a part does not
 * depend on the parts before it or on how the other stream was used. */
static void rng_init(struct rng *r, uint64_t seed, uint64_t part, uint64_t stream)
{
	uint64_t k = seed;
	uint64_t key = splitmix64(&k);

	k = part * 16 + stream;
	key ^= splitmix64(&k);
	for (int i = 0; i < 4; i++)
		r->s[i] = splitmix64(&key);
}

static uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(struct rng *r)
{
	uint64_t *s = r->s;
	uint64_t result = rotl(s[1] * 5, 7) * 9;
	uint64_t t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return result;
}

/* Uniform in (0, 1). */
static double uniform(struct rng *r)
{
	return ((double)(rng_next(r) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

static double urange(struct rng *r, double lo, double hi)
{
	return lo + (hi - lo) * uniform(r);
}

static unsigned below(struct rng *r, unsigned n)
{
	return (unsigned)(uniform(r) * n) % n;
}

static double normal(struct rng *r)
{
	return sqrt(-2.0 * log(uniform(r))) * cos(2.0 * G_PI * uniform(r));
}

static double sign(struct rng *r)
{
	return uniform(r) < 0.5 ? -1.0 : 1.0;
}

/* ---- surface images ---- */

struct surface {
	float px[H * W];       /* rendered brightness, 0..255 scale */
	float layer[H * W];    /* one defect being drawn */
	uint8_t mask[H * W];
};

struct polyline {
	double x[256], y[256];
	int n;
};

static double seg_dist2(double px, double py, double ax, double ay, double bx, double by)
{
	double dx = bx - ax, dy = by - ay, l2 = dx * dx + dy * dy, t = 0;

	if (l2 > 0) {
		t = ((px - ax) * dx + (py - ay) * dy) / l2;
		t = t < 0 ? 0 : t > 1 ? 1 : t;
	}
	dx = px - (ax + t * dx);
	dy = py - (ay + t * dy);
	return dx * dx + dy * dy;
}

/* Adds a line of Gaussian cross-profile (sigma px) and peak contrast c along
 * the polyline into layer; the contrast fades over the last `fade` points at
 * both ends so scratches taper. */
static void draw_polyline(float *layer, const struct polyline *p, double sigma, double c,
			  int fade)
{
	double reach = 3.5 * sigma + 1;

	for (int s = 0; s + 1 < p->n; s++) {
		double ax = p->x[s], ay = p->y[s], bx = p->x[s + 1], by = p->y[s + 1];
		int x0 = (int)floor(fmin(ax, bx) - reach), x1 = (int)ceil(fmax(ax, bx) + reach);
		int y0 = (int)floor(fmin(ay, by) - reach), y1 = (int)ceil(fmax(ay, by) + reach);
		int from_end = MIN(s, p->n - 2 - s);
		double k = (fade > 0 && from_end < fade) ? 0.35 + 0.65 * from_end / fade : 1.0;

		for (int y = MAX(y0, 0); y <= MIN(y1, H - 1); y++)
			for (int x = MAX(x0, 0); x <= MIN(x1, W - 1); x++) {
				double d2 = seg_dist2(x, y, ax, ay, bx, by);
				float v = (float)(k * c * exp(-d2 / (2 * sigma * sigma)));
				float *o = &layer[y * W + x];

				/* Overlapping segments take the strongest, not the sum. */
				if (fabsf(v) > fabsf(*o))
					*o = v;
			}
	}
}

/* Moves the finished defect layer into the image and the mask. */
static void commit_layer(struct surface *s, double contrast)
{
	float thr = (float)(fabs(contrast) / 3.0);

	for (int i = 0; i < W * H; i++) {
		s->px[i] += s->layer[i];
		if (fabsf(s->layer[i]) >= thr)
			s->mask[i] = 255;
		s->layer[i] = 0;
	}
}

static void add_scratch(struct surface *s, struct rng *r)
{
	struct polyline p;
	double len = urange(r, 40, 140), ang = urange(r, 0, G_PI);
	double curve = normal(r) * 0.004, step = 2.0;
	double c = sign(r) * urange(r, 20, 55), sigma = urange(r, 0.55, 1.1);

	p.n = (int)(len / step) + 1;
	p.x[0] = urange(r, 20, W - 20);
	p.y[0] = urange(r, 20, H - 20);
	for (int i = 1; i < p.n; i++) {
		ang += curve * step;
		p.x[i] = p.x[i - 1] + step * cos(ang);
		p.y[i] = p.y[i - 1] + step * sin(ang);
	}
	draw_polyline(s->layer, &p, sigma, c, 4);
	commit_layer(s, c);
}

static void add_pits(struct surface *s, struct rng *r)
{
	int count = 1 + (int)below(r, 3);
	double light = urange(r, 0, 2 * G_PI);

	for (int k = 0; k < count; k++) {
		double cx = urange(r, 8, W - 8), cy = urange(r, 8, H - 8);
		double rad = urange(r, 2.0, 5.0), depth = urange(r, 35, 90);

		for (int y = MAX((int)(cy - rad - 4), 0); y <= MIN((int)(cy + rad + 4), H - 1); y++)
			for (int x = MAX((int)(cx - rad - 4), 0); x <= MIN((int)(cx + rad + 4), W - 1);
			     x++) {
				double dx = x - cx, dy = y - cy, d = sqrt(dx * dx + dy * dy);
				double disc = 1.0 / (1.0 + exp((d - rad) / 0.45));
				double facing = d > 0 ? (dx * cos(light) + dy * sin(light)) / d : 0;
				double rim = 0.35 * depth * exp(-(d - rad - 0.8) * (d - rad - 0.8) / 1.2) *
					     (facing > 0 ? facing : 0);

				s->layer[y * W + x] += (float)(-depth * disc + rim);
			}
		commit_layer(s, depth);
	}
}

static void random_walk(struct polyline *p, struct rng *r, double x, double y, double ang,
			double len)
{
	double dir = ang;

	p->n = 1;
	p->x[0] = x;
	p->y[0] = y;
	for (double done = 0; done < len && p->n < 256; p->n++) {
		double step = urange(r, 1.5, 4.0);

		/* Jagged: a random turn every step, pulled back to the main
		 * direction so the crack runs on instead of curling up. */
		dir += normal(r) * 0.55 + 0.25 * (ang - dir);
		p->x[p->n] = p->x[p->n - 1] + step * cos(dir);
		p->y[p->n] = p->y[p->n - 1] + step * sin(dir);
		done += step;
	}
}

static void add_crack(struct surface *s, struct rng *r)
{
	struct polyline p, b;
	double c = -urange(r, 35, 80), sigma = urange(r, 0.5, 0.85);
	double ang = urange(r, 0, 2 * G_PI);

	random_walk(&p, r, urange(r, 40, W - 40), urange(r, 40, H - 40), ang, urange(r, 35, 110));
	draw_polyline(s->layer, &p, sigma, c, 2);
	if (uniform(r) < 0.4 && p.n > 6) {
		int at = p.n / 3 + (int)below(r, (unsigned)(p.n / 3));

		random_walk(&b, r, p.x[at], p.y[at], ang + sign(r) * urange(r, 0.5, 1.2),
			    urange(r, 15, 45));
		draw_polyline(s->layer, &b, sigma * 0.9, c * 0.8, 2);
	}
	commit_layer(s, c);
}

static void add_stain(struct surface *s, struct rng *r)
{
	double c = sign(r) * urange(r, 18, 40);
	double cx = urange(r, 30, W - 30), cy = urange(r, 30, H - 30);
	int blobs = 2 + (int)below(r, 3);

	for (int k = 0; k < blobs; k++) {
		double bx = cx + normal(r) * 8, by = cy + normal(r) * 8;
		double sx = urange(r, 5, 16), sy = urange(r, 5, 16), th = urange(r, 0, G_PI);
		double amp = c * urange(r, 0.6, 1.0), ct = cos(th), st = sin(th);

		for (int y = 0; y < H; y++)
			for (int x = 0; x < W; x++) {
				double dx = x - bx, dy = y - by;
				double u = (dx * ct + dy * st) / sx, v = (-dx * st + dy * ct) / sy;
				double e = u * u + v * v;
				float val;

				if (e > 16)
					continue;
				val = (float)(amp * exp(-0.5 * e));
				if (fabsf(val) > fabsf(s->layer[y * W + x]))
					s->layer[y * W + x] = val;
			}
	}
	commit_layer(s, c);
}

static void render_background(struct surface *s, struct rng *r)
{
	double base = urange(r, 85, 175);
	double gang = urange(r, 0, 2 * G_PI), gamp = urange(r, 10, 45) / W;
	double vign = urange(r, 0, 25);
	double streak = urange(r, 2.5, 6.0);
	int blen = 9 + (int)below(r, 17), vertical = uniform(r) < 0.5;
	float *noise = s->layer;   /* scratch space, cleared below */
	int marks = (int)below(r, 4), grains = 20 + (int)below(r, 60);

	for (int i = 0; i < W * H; i++)
		noise[i] = (float)normal(r);
	for (int y = 0; y < H; y++)
		for (int x = 0; x < W; x++) {
			double dx = x - W / 2.0, dy = y - H / 2.0;
			double acc = 0;

			/* Brushing: noise averaged along the brushing axis. */
			for (int k = -blen / 2; k <= blen / 2; k++) {
				int xx = vertical ? x : (x + k + W) % W;
				int yy = vertical ? (y + k + H) % H : y;

				acc += noise[yy * W + xx];
			}
			s->px[y * W + x] = (float)(base + gamp * (dx * cos(gang) + dy * sin(gang)) -
						   vign * (dx * dx + dy * dy) / (W * W / 2.0) +
						   streak * acc / sqrt(blen + 1.0));
		}
	memset(s->layer, 0, sizeof s->layer);
	/* Machining marks: faint, full length, along the brushing axis. */
	for (int m = 0; m < marks; m++) {
		double at = urange(r, 0, vertical ? W : H), c = sign(r) * urange(r, 3, 8);

		for (int y = 0; y < H; y++)
			for (int x = 0; x < W; x++) {
				double d = (vertical ? x : y) - at;

				s->px[y * W + x] += (float)(c * exp(-d * d / 1.5));
			}
	}
	for (int g = 0; g < grains; g++)
		s->px[below(r, H) * W + below(r, W)] += (float)(sign(r) * urange(r, 8, 22));
}

static int render_image(struct rng *r, const char *cls, uint8_t *img, uint8_t *mask)
{
	struct surface *s = g_new0(struct surface, 1);
	double sensor = urange(r, 1.5, 3.5);
	int rc;

	render_background(s, r);
	if (strcmp(cls, "scratch") == 0) {
		add_scratch(s, r);
		if (uniform(r) < 0.25)
			add_scratch(s, r);
	} else if (strcmp(cls, "pit") == 0) {
		add_pits(s, r);
	} else if (strcmp(cls, "crack") == 0) {
		add_crack(s, r);
	} else if (strcmp(cls, "stain") == 0) {
		add_stain(s, r);
	}
	for (int i = 0; i < W * H; i++) {
		double v = s->px[i];

		img[i] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : lround(v));
	}
	/* Optics blur, then sensor noise on the blurred image. */
	rc = cvw_blur_gray(img, W, H, W, 0.6);
	for (int i = 0; rc == 0 && i < W * H; i++) {
		double v = img[i] + sensor * normal(r);

		img[i] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : lround(v));
	}
	memcpy(mask, s->mask, sizeof s->mask);
	g_free(s);
	return rc;
}

/* ---- vibration ---- */

/* A damped ring at f_hz (time constant tau_s) starting at t0_s. */
static void add_ring(float *x, double t0_s, double amp, double f_hz, double tau_s)
{
	long i0 = (long)ceil(t0_s * SIM_RATE_HZ);

	if (i0 < 0)
		i0 = 0;
	for (long i = i0; i < SIM_WINDOW; i++) {
		double t = (double)i / SIM_RATE_HZ - t0_s;

		if (t > 8 * tau_s)
			break;
		x[i] += (float)(amp * exp(-t / tau_s) * sin(2 * G_PI * f_hz * t));
	}
}

static void render_vibration(struct rng *r, const char *cls, float *x)
{
	double shaft = SIM_SHAFT_HZ * (1 + 0.003 * normal(r));
	double noise_g = urange(r, 0.03, 0.07);
	double a1 = urange(r, 0.03, 0.10);
	double dt = 1.0 / SIM_RATE_HZ;

	/* Shaft harmonics and white noise. */
	for (int h = 1; h <= 6; h++) {
		double a = h == 1 ? a1 : a1 * urange(r, 0.1, 0.6) / pow(h, 0.7);
		double ph = urange(r, 0, 2 * G_PI);

		for (int i = 0; i < SIM_WINDOW; i++)
			x[i] += (float)(a * sin(2 * G_PI * h * shaft * i * dt + ph));
	}
	for (int i = 0; i < SIM_WINDOW; i++)
		x[i] += (float)(noise_g * normal(r));

	/* A structure resonance excited by broadband forcing: healthy machines
	 * have high-band energy too. Two-pole resonator, settled before the
	 * window starts. */
	{
		double fr = urange(r, 2000, 4500), zeta = urange(r, 0.02, 0.06);
		double w = 2 * G_PI * fr * dt, rad = exp(-zeta * w);
		double a1r = 2 * rad * cos(w), a2r = -rad * rad;
		double level = urange(r, 0.2, 0.7) * noise_g, y1 = 0, y2 = 0;
		/* Steady-state gain of the resonator to unit white noise. */
		double gain = sqrt((1 + rad * rad) / ((1 - rad * rad) *
				   ((1 + rad * rad) * (1 + rad * rad) - a1r * a1r)));

		for (int i = -1024; i < SIM_WINDOW; i++) {
			double y = a1r * y1 + a2r * y2 + normal(r);

			y2 = y1;
			y1 = y;
			if (i >= 0)
				x[i] += (float)(level * y / gain);
		}
	}

	if (uniform(r) < 0.5) {
		double fg = shaft * urange(r, 18, 40), ag = urange(r, 0.01, 0.05);
		double m = urange(r, 0, 0.4), ph = urange(r, 0, 2 * G_PI);

		for (int i = 0; i < SIM_WINDOW; i++) {
			double t = i * dt;

			x[i] += (float)(ag * (1 + m * cos(2 * G_PI * shaft * t)) *
					sin(2 * G_PI * fg * t + ph));
		}
	}
	if (uniform(r) < 0.2) {
		/* An isolated knock: impulsive, but not periodic. */
		int knocks = 1 + (int)below(r, 2);

		for (int k = 0; k < knocks; k++)
			add_ring(x, urange(r, 0, SIM_WINDOW * dt), noise_g * urange(r, 2, 6),
				 urange(r, 1500, 4500), urange(r, 0.0004, 0.0015));
	}

	if (strcmp(cls, "normal") != 0) {
		double ratio = strcmp(cls, "outer_race") == 0 ? BPFO_RATIO
			       : strcmp(cls, "inner_race") == 0 ? BPFI_RATIO : BSF_RATIO;
		double period = 1.0 / (ratio * shaft);
		double fr = urange(r, 2500, 4000), zeta = urange(r, 0.03, 0.08);
		double tau = 1.0 / (2 * G_PI * fr * zeta);
		double amp = noise_g * urange(r, 4.0, 9.0);
		double jitter = urange(r, 0.003, 0.015) * period;
		double depth = urange(r, 0.3, 0.8), ph = urange(r, 0, 2 * G_PI);
		int ball = strcmp(cls, "ball") == 0, inner = strcmp(cls, "inner_race") == 0;

		/* Start before the window so the first ring may be half-seen. */
		for (double t = -urange(r, 0, period); t < SIM_WINDOW * dt; t += period) {
			double a = amp * urange(r, 0.85, 1.15);
			double tt = t + jitter * normal(r);

			if (inner)   /* the defect passes through the load zone once a turn */
				a *= 1 - depth + depth * (0.5 + 0.5 * cos(2 * G_PI * shaft * tt + ph));
			else if (ball)   /* the ball goes round with the cage */
				a *= (1 - 0.6 * depth + 0.6 * depth *
				      (0.5 + 0.5 * cos(2 * G_PI * FTF_RATIO * shaft * tt + ph))) *
				     urange(r, 0.85, 1.15);
			add_ring(x, tt, a, fr, tau);
		}
	}
}

/* ---- files ---- */

static void set_err(char **err, char *msg)
{
	if (err)
		*err = msg;
	else
		g_free(msg);
}

int sim_generate(const struct sim_gen_opts *o, char **err)
{
	char *csv_path = NULL, *wav_path = NULL, *img_dir = NULL, *mask_dir = NULL;
	FILE *csv = NULL;
	wav_writer *wav = NULL;
	uint8_t *img = NULL, *mask = NULL;
	float *vib = NULL;
	int rc = -EINVAL;

	if (err)
		*err = NULL;
	if (!o || !o->out_dir || !o->split || o->parts == 0 ||
	    !(o->p_surface >= 0 && o->p_surface <= 1) ||
	    !(o->p_vibration >= 0 && o->p_vibration <= 1)) {
		set_err(err, g_strdup("invalid options: out_dir, split and a positive part "
				      "count are required, defect rates lie in 0..1"));
		return -EINVAL;
	}
	if (strpbrk(o->split, ",\"\r\n")) {
		set_err(err, g_strdup_printf("split name '%s' cannot go into a CSV column",
					     o->split));
		return -EINVAL;
	}
	/* The WAV's 32-bit sizes bound the number of windows. */
	if (o->parts > (UINT32_MAX - 64) / (4u * SIM_WINDOW)) {
		set_err(err, g_strdup_printf("%u parts do not fit in one WAV file", o->parts));
		return -EFBIG;
	}

	img_dir = g_build_filename(o->out_dir, "images", NULL);
	mask_dir = g_build_filename(o->out_dir, "masks", NULL);
	csv_path = g_build_filename(o->out_dir, "parts.csv", NULL);
	wav_path = g_build_filename(o->out_dir, "vibration.wav", NULL);
	if (g_mkdir_with_parents(img_dir, 0755) < 0 || g_mkdir_with_parents(mask_dir, 0755) < 0) {
		rc = -errno;
		set_err(err, g_strdup_printf("cannot create %s: %s", img_dir, g_strerror(errno)));
		goto out;
	}
	csv = fopen(csv_path, "w");
	if (!csv) {
		rc = -errno;
		set_err(err, g_strdup_printf("cannot write %s: %s", csv_path, g_strerror(errno)));
		goto out;
	}
	if ((rc = wav_writer_new(wav_path, SIM_RATE_HZ, &wav)) < 0) {
		set_err(err, g_strdup_printf("cannot write %s: %s", wav_path, g_strerror(-rc)));
		goto out;
	}
	fprintf(csv, "part_id,split,image,mask,image_class,vibration,vib_start,vib_len,"
		"vib_class,defect\n");

	img = g_malloc(W * H);
	mask = g_malloc(W * H);
	vib = g_new(float, SIM_WINDOW);
	for (unsigned i = 0; i < o->parts; i++) {
		struct rng lr, ir, vr;
		const char *icls = "free", *vcls = "normal";
		char name[64], *path;

		rng_init(&lr, o->seed, i, STREAM_LABELS);
		rng_init(&ir, o->seed, i, STREAM_IMAGE);
		rng_init(&vr, o->seed, i, STREAM_VIBRATION);
		if (uniform(&lr) < o->p_surface)
			icls = image_classes[1 + below(&lr, 4)];
		if (uniform(&lr) < o->p_vibration)
			vcls = vib_classes[1 + below(&lr, 3)];

		if ((rc = render_image(&ir, icls, img, mask)) < 0) {
			set_err(err, g_strdup_printf("part %u: image rendering failed", i));
			goto out;
		}
		snprintf(name, sizeof name, "part-%05u.png", i);
		path = g_build_filename(img_dir, name, NULL);
		rc = cvw_imwrite_gray(path, img, W, H, W);
		if (rc == 0) {
			g_free(path);
			path = g_build_filename(mask_dir, name, NULL);
			rc = cvw_imwrite_gray(path, mask, W, H, W);
		}
		if (rc < 0) {
			set_err(err, g_strdup_printf("cannot write %s", path));
			g_free(path);
			goto out;
		}
		g_free(path);

		memset(vib, 0, sizeof(float) * SIM_WINDOW);
		render_vibration(&vr, vcls, vib);
		if ((rc = wav_writer_append(wav, vib, SIM_WINDOW)) < 0) {
			set_err(err, g_strdup_printf("writing %s failed", wav_path));
			goto out;
		}
		fprintf(csv, "P%05u,%s,images/%s,masks/%s,%s,vibration.wav,%u,%d,%s,%d\n", i,
			o->split, name, name, icls, i * SIM_WINDOW, SIM_WINDOW, vcls,
			strcmp(icls, "free") != 0 || strcmp(vcls, "normal") != 0);
	}
	rc = 0;
out:
	if (csv && fclose(csv) != 0 && rc == 0) {
		rc = -EIO;
		set_err(err, g_strdup_printf("writing %s failed", csv_path));
	}
	if (wav && rc == 0 && wav_writer_finish(wav) < 0) {
		rc = -EIO;
		set_err(err, g_strdup_printf("writing %s failed", wav_path));
	}
	wav_writer_free(wav);
	g_free(img);
	g_free(mask);
	g_free(vib);
	g_free(csv_path);
	g_free(wav_path);
	g_free(img_dir);
	g_free(mask_dir);
	return rc;
}
