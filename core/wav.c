/* Mono WAV files of float samples (wav.h). */
#include "core/wav.h"

#include <errno.h>
#include <glib.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define WAV_HEADER_BYTES 44
#define WAV_FORMAT_PCM 1
#define WAV_FORMAT_IEEE_FLOAT 3
#define WAV_FORMAT_EXTENSIBLE 0xFFFE
/* The RIFF size counts everything after its own 8 bytes, so the data
 * chunk may hold at most this much. */
#define WAV_MAX_DATA ((uint64_t)UINT32_MAX - (WAV_HEADER_BYTES - 8))

static uint32_t le16(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8;
}

static uint32_t le32(const uint8_t *p)
{
	return le16(p) | le16(p + 2) << 16;
}

static void put_le16(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put_le32(uint8_t *p, uint32_t v)
{
	put_le16(p, v & 0xFFFF);
	put_le16(p + 2, v >> 16);
}

void wav_clear(struct wav *w)
{
	if (!w)
		return;
	g_free(w->x);
	memset(w, 0, sizeof *w);
}

static int refuse(char **err, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

static int refuse(char **err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	*err = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	return -EINVAL;
}

int wav_parse(const void *data, size_t len, enum wav_accept accept, struct wav *out,
	      char **err)
{
	const uint8_t *b = data, *fmt = NULL, *samples = NULL;
	size_t at = 12, fmt_len = 0, data_len = 0;
	gboolean strict = accept == WAV_FLOAT32;
	unsigned tag, channels, bits;

	memset(out, 0, sizeof *out);
	if (len < 12 || memcmp(b, "RIFF", 4) != 0 || memcmp(b + 8, "WAVE", 4) != 0)
		return refuse(err, "not a RIFF/WAVE file");
	while (at + 8 <= len && !(fmt && samples)) {
		size_t size = le32(b + at + 4), avail = len - at - 8;
		const uint8_t *body = b + at + 8;

		if (size > avail && strict)
			return refuse(err, "the '%.4s' chunk claims %zu bytes; the file holds %zu",
				      (const char *)(b + at), size, avail);
		if (memcmp(b + at, "fmt ", 4) == 0 && !fmt) {
			fmt = body;
			fmt_len = MIN(size, avail);
		} else if (memcmp(b + at, "data", 4) == 0 && !samples) {
			if (strict && !fmt)
				return refuse(err, "the data chunk comes before the fmt chunk");
			samples = body;
			data_len = MIN(size, avail);
		}
		if (size > avail)
			break;   /* a recorder's header never finalised: take what is there */
		at += 8 + size + (size & 1);
	}
	if (!fmt || fmt_len < 16)
		return refuse(err, "no fmt chunk");
	if (!samples)
		return refuse(err, "no data chunk");
	tag = le16(fmt);
	channels = le16(fmt + 2);
	bits = le16(fmt + 14);
	if (tag == WAV_FORMAT_EXTENSIBLE && fmt_len >= 26 && !strict)
		tag = le16(fmt + 24);   /* the first two bytes of the sub-format GUID */
	if (channels != 1)
		return refuse(err, "%u channels, expected mono", channels);
	if (le32(fmt + 4) == 0)
		return refuse(err, "the sample rate is 0");
	if (tag == WAV_FORMAT_IEEE_FLOAT && bits == 32) {
		if (strict && data_len % 4)
			return refuse(err,
				      "the data chunk holds %zu bytes, not whole 4-byte samples",
				      data_len);
		out->n = data_len / 4;
		out->x = g_new(float, MAX(out->n, 1));
		for (size_t i = 0; i < out->n; i++) {
			uint32_t u = le32(samples + 4 * i);

			memcpy(&out->x[i], &u, 4);
		}
	} else if (tag == WAV_FORMAT_PCM && bits == 16 && !strict) {
		out->n = data_len / 2;
		out->x = g_new(float, MAX(out->n, 1));
		for (size_t i = 0; i < out->n; i++)
			out->x[i] = (float)(int16_t)le16(samples + 2 * i) / 32768.0f;
	} else {
		return refuse(err,
			      "format tag %u with %u bits per sample; expected IEEE float32 (3)%s",
			      tag, bits, strict ? "" : " or 16-bit PCM (1)");
	}
	out->rate_hz = le32(fmt + 4);
	return 0;
}

int wav_read_file(const char *path, enum wav_accept accept, struct wav *out, char **err)
{
	char *raw = NULL, *why = NULL;
	gsize len = 0;
	GError *gerr = NULL;
	int rc;

	memset(out, 0, sizeof *out);
	if (!g_file_get_contents(path, &raw, &len, &gerr)) {
		/* GLib's message names the file already. */
		rc = gerr->domain == G_FILE_ERROR && gerr->code == G_FILE_ERROR_NOENT ? -ENOENT
										   : -EIO;
		*err = g_strdup(gerr->message);
		g_error_free(gerr);
		return rc;
	}
	rc = wav_parse(raw, len, accept, out, &why);
	if (rc < 0) {
		*err = g_strdup_printf("%s: %s", path, why);
		g_free(why);
	}
	g_free(raw);
	return rc;
}

/* ---- writing ---- */

struct wav_writer {
	FILE *f;
	uint64_t data_bytes;
	int rc;               /* the first error, returned again by finish */
};

static void header(uint8_t h[WAV_HEADER_BYTES], uint32_t rate, uint32_t data_bytes)
{
	memcpy(h, "RIFF", 4);
	put_le32(h + 4, WAV_HEADER_BYTES - 8 + data_bytes);
	memcpy(h + 8, "WAVEfmt ", 8);
	put_le32(h + 16, 16);                  /* fmt chunk size */
	put_le16(h + 20, WAV_FORMAT_IEEE_FLOAT);
	put_le16(h + 22, 1);                   /* mono */
	put_le32(h + 24, rate);
	put_le32(h + 28, rate * 4);            /* bytes per second */
	put_le16(h + 32, 4);                   /* block align */
	put_le16(h + 34, 32);                  /* bits per sample */
	memcpy(h + 36, "data", 4);
	put_le32(h + 40, data_bytes);
}

int wav_writer_new(const char *path, double rate_hz, wav_writer **out)
{
	uint8_t h[WAV_HEADER_BYTES];
	wav_writer *w;

	*out = NULL;
	if (!(rate_hz >= 0.5 && rate_hz <= 1e9))
		return -EINVAL;
	w = g_new0(wav_writer, 1);
	if (!(w->f = fopen(path, "wb"))) {
		int rc = -errno;

		g_free(w);
		return rc;
	}
	/* The sizes stay 0 until finish: a file cut short says so. */
	header(h, (uint32_t)lrint(rate_hz), 0);
	if (fwrite(h, sizeof h, 1, w->f) != 1)
		w->rc = -EIO;
	*out = w;
	return 0;
}

int wav_writer_append(wav_writer *w, const float *x, size_t n)
{
	uint8_t buf[4096];

	if (w->rc < 0)
		return w->rc;
	if (n > (WAV_MAX_DATA - w->data_bytes) / 4)
		return w->rc = -EFBIG;
	while (n > 0) {
		size_t k = MIN(n, sizeof buf / 4);

		for (size_t i = 0; i < k; i++) {
			uint32_t u;

			memcpy(&u, &x[i], 4);
			put_le32(buf + 4 * i, u);
		}
		if (fwrite(buf, 4, k, w->f) != k)
			return w->rc = -EIO;
		w->data_bytes += 4 * k;
		x += k;
		n -= k;
	}
	return 0;
}

int wav_writer_finish(wav_writer *w)
{
	uint8_t size[4];
	int rc = w->rc;

	if (rc == 0) {
		put_le32(size, (uint32_t)(WAV_HEADER_BYTES - 8 + w->data_bytes));
		if (fseek(w->f, 4, SEEK_SET) != 0 || fwrite(size, 4, 1, w->f) != 1)
			rc = -EIO;
		put_le32(size, (uint32_t)w->data_bytes);
		if (rc == 0 && (fseek(w->f, 40, SEEK_SET) != 0 || fwrite(size, 4, 1, w->f) != 1))
			rc = -EIO;
	}
	if (fclose(w->f) != 0 && rc == 0)
		rc = -errno;
	w->f = NULL;
	return w->rc = rc;
}

void wav_writer_free(wav_writer *w)
{
	if (!w)
		return;
	if (w->f)
		fclose(w->f);
	g_free(w);
}

int wav_write_file(const char *path, const float *x, size_t n, double rate_hz)
{
	wav_writer *w = NULL;
	int rc;

	if ((rc = wav_writer_new(path, rate_hz, &w)) < 0)
		return rc;
	(void)wav_writer_append(w, x, n);   /* finish returns its error again */
	rc = wav_writer_finish(w);
	wav_writer_free(w);
	return rc;
}
