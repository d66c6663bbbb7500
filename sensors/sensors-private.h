/* Private to sensors/: the IIO capture behind an IIO vibration source. */
#ifndef VIGIL_SENSORS_SENSORS_PRIVATE_H
#define VIGIL_SENSORS_SENSORS_PRIVATE_H

#include <stdint.h>
#include <sys/types.h>

#include "sensors/sensors.h"

struct iio_capture;

/* Opens cfg's IIO channel and a buffer on it; NULL with *err. */
struct iio_capture *sensor_iio_open(const struct sensor_config *cfg, char **err);
/* Waits for the next buffer: up to max samples into x, the first at *t_ns
 * (CLOCK_MONOTONIC). Returns the count or a negative errno. */
ssize_t sensor_iio_read(struct iio_capture *c, float *x, size_t max, int64_t *t_ns);
/* Wakes a sensor_iio_read in another thread (it returns an error). */
void sensor_iio_cancel(struct iio_capture *c);
void sensor_iio_close(struct iio_capture *c);

#endif
