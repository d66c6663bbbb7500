/* The simulated line PLC: a Modbus TCP server (libmodbus) on its own thread,
 * holding the trigger, result and status blocks of plc/plc.h in holding
 * registers 0 .. the end of the highest block. It serves one client at a
 * time and accepts the next one when that client disconnects, as vigild
 * reconnects. Invalid requests get Modbus exception replies.
 *
 * All functions except sim_plc_free may be called from any thread,
 * including from the result callback. */
#ifndef VIGIL_TOOLS_SIM_PLC_H
#define VIGIL_TOOLS_SIM_PLC_H

#include <stdint.h>

#include "plc/plc.h"

typedef struct sim_plc sim_plc;

/* Listens on host:port (host an IPv4 address, NULL for 127.0.0.1; port 0
 * picks a free port, see sim_plc_port) and starts serving. unit_id is
 * reported in replies. On failure returns NULL and, if err is not NULL, sets
 * *err to a message owned by the caller (free with g_free). */
sim_plc *sim_plc_new(const char *host, int port, int unit_id, const struct plc_regmap *map,
		     char **err);

/* The TCP port actually listened on. */
int sim_plc_port(sim_plc *p);

/* Raises a trigger: writes part_id and advances the trigger counter
 * (plc_counter_next) in one step, so a client never reads a new counter with
 * an old id. Returns the new counter. */
uint16_t sim_plc_trigger(sim_plc *p, uint32_t part_id);

/* Waits until the status block's trigger_seen register (written by vigild
 * when it takes a trigger, docs/plc.md) equals counter, up to timeout_us.
 * Returns 0, or -ETIMEDOUT. Raising the next trigger only then is the
 * handshake's own pace: vigild sees every counter, none is missed. */
int sim_plc_wait_trigger_seen(sim_plc *p, uint16_t counter, int64_t timeout_us);

/* Waits until vigild has seen the acknowledge of the last result the sim
 * took: the result block shows that counter with results_valid 0, written
 * by vigild once it read the ack (docs/plc.md, the handshake), up to
 * timeout_us. Returns 0 (also when no result came), or -ETIMEDOUT. A
 * PLC that leaves before then leaves its last result unacknowledged as far
 * as vigild can tell. */
int sim_plc_wait_ack_seen(sim_plc *p, int64_t timeout_us);

/* fn is called on the server thread, without the sim's lock held, for each
 * new result block: after a client request that changed the result counter.
 * t_us is CLOCK_MONOTONIC microseconds (vigil_now_us) when the request was
 * served. After fn returns, the sim acknowledges by setting the trigger
 * block's ACK register to the result counter. fn may be NULL (results are
 * still acknowledged); data is not freed by the sim. */
void sim_plc_on_result(sim_plc *p, void (*fn)(const struct plc_result *r, int64_t t_us,
					      void *data),
		       void *data);

/* The status block: returns the status word and, if heartbeat is not NULL,
 * stores the heartbeat. */
uint16_t sim_plc_status_word(sim_plc *p, uint16_t *heartbeat);

/* Stops the server thread (within about 50 ms), closes the sockets and frees
 * p. Accepts NULL. Must not be called from the result callback. */
void sim_plc_free(sim_plc *p);

#endif
