/* Mono WAV files of float samples: the one reader and writer of the tree.
 *
 * Written: always the form the log stores (db/db-media.c) and vigil-sim
 * records: a 44-byte header (RIFF, WAVE, a 16-byte fmt chunk with
 * WAVE_FORMAT_IEEE_FLOAT = 3, one channel, the rate, 32 bits per sample),
 * then the data chunk of little-endian float32 samples.
 *
 * Read: RIFF/WAVE with a fmt chunk of one channel at a non-zero rate and a
 * data chunk; other chunks (fact, LIST, cue, ...) are skipped. What else
 * is taken depends on the caller:
 *  WAV_FLOAT32    IEEE float, 32 bits; the fmt chunk before the data chunk;
 *                 every chunk whole and the data a whole number of samples.
 *  WAV_RECORDING  also what a recorder leaves: 16-bit PCM (full scale
 *                 taken as 1.0), WAVE_FORMAT_EXTENSIBLE with either of the
 *                 two as sub-format, the fmt chunk after the data, and a
 *                 data chunk cut short (a header never finalised), read up
 *                 to the last whole sample.
 * Anything else is refused with -EINVAL and *err saying what is wrong.
 * Errors are g_strdup'ed (g_free them). No state: any thread. */
#ifndef VIGIL_CORE_WAV_H
#define VIGIL_CORE_WAV_H

#include <stddef.h>
#include <stdint.h>

enum wav_accept {
	WAV_FLOAT32,
	WAV_RECORDING,
};

struct wav {
	float *x;             /* n samples (g_free), never NULL after a read */
	size_t n;
	uint32_t rate_hz;
};

/* Parses a whole file held in memory (len bytes at data). 0 with *out
 * filled (the caller owns out->x), or -EINVAL with *err and *out zeroed. */
int wav_parse(const void *data, size_t len, enum wav_accept accept, struct wav *out,
	      char **err);

/* Reads and parses path; messages start with "PATH: ". -EINVAL for a file
 * that is not taken, another negative errno when it cannot be read. */
int wav_read_file(const char *path, enum wav_accept accept, struct wav *out, char **err);

/* Frees w->x and zeroes w; NULL ok. */
void wav_clear(struct wav *w);

/* Writes a whole file at once; as wav_writer_new, _append and _finish. */
int wav_write_file(const char *path, const float *x, size_t n, double rate_hz);

/* A file written in pieces, the sizes filled in by wav_writer_finish. One
 * thread at a time. */
typedef struct wav_writer wav_writer;

/* Creates (or truncates) path and writes the header for rate_hz (rounded
 * to whole Hz). 0 with *out (wav_writer_free), -EINVAL for a rate outside
 * 1 Hz .. 1 GHz, or -errno of the file. */
int wav_writer_new(const char *path, double rate_hz, wav_writer **out);
/* Appends n samples. -EFBIG past the 4 GiB the format's sizes can count,
 * -EIO when the write fails. */
int wav_writer_append(wav_writer *w, const float *x, size_t n);
/* Writes the sizes into the header and closes the file: 0, or -EIO or
 * -errno when the file could not be completed. The first error of
 * wav_writer_append is returned here again. */
int wav_writer_finish(wav_writer *w);
/* Closes (an unfinished file is left as it is) and frees; NULL ok. */
void wav_writer_free(wav_writer *w);

#endif
