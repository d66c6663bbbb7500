/* The register map (docs/plc.md; plc.h is its single source of truth):
 * encoding and decoding the three blocks, the counters' wrap, and the check
 * that the blocks fit and do not overlap. Pure functions, any thread. */
#include "plc/plc.h"

#include <errno.h>

/* A 32-bit value in two registers, high word first (docs/plc.md). */
static void put_u32(uint16_t *hi_lo, uint32_t v)
{
	hi_lo[0] = (uint16_t)(v >> 16);
	hi_lo[1] = (uint16_t)(v & 0xffff);
}

static uint32_t get_u32(const uint16_t *hi_lo)
{
	return (uint32_t)hi_lo[0] << 16 | hi_lo[1];
}

void plc_encode_result(const struct plc_result *r, uint16_t regs[PLC_RES_REGS])
{
	regs[PLC_RES_COUNTER] = r->counter;
	put_u32(regs + PLC_RES_PART_ID_HI, r->part_id);
	regs[PLC_RES_TRIGGER_ECHO] = r->trigger_counter;
	regs[PLC_RES_VERDICT] = r->verdict;
	regs[PLC_RES_CLASS] = r->defect_class;
	regs[PLC_RES_SCORE] = r->score_milli;
	regs[PLC_RES_FLAGS] = r->flags;
	regs[PLC_RES_VALID] = r->valid;
	regs[PLC_RES_JOB] = r->job;
}

void plc_decode_result(const uint16_t regs[PLC_RES_REGS], struct plc_result *r)
{
	r->counter = regs[PLC_RES_COUNTER];
	r->part_id = get_u32(regs + PLC_RES_PART_ID_HI);
	r->trigger_counter = regs[PLC_RES_TRIGGER_ECHO];
	r->verdict = regs[PLC_RES_VERDICT];
	r->defect_class = regs[PLC_RES_CLASS];
	r->score_milli = regs[PLC_RES_SCORE];
	r->flags = regs[PLC_RES_FLAGS];
	r->valid = regs[PLC_RES_VALID];
	r->job = regs[PLC_RES_JOB];
}

void plc_encode_trigger(const struct plc_trigger *t, uint16_t regs[PLC_TRIG_REGS])
{
	regs[PLC_TRIG_COUNTER] = t->counter;
	put_u32(regs + PLC_TRIG_PART_ID_HI, t->part_id);
	regs[PLC_TRIG_ACK] = t->ack;
	regs[PLC_TRIG_JOB] = t->job;
}

void plc_decode_trigger(const uint16_t regs[PLC_TRIG_REGS], struct plc_trigger *t)
{
	t->counter = regs[PLC_TRIG_COUNTER];
	t->part_id = get_u32(regs + PLC_TRIG_PART_ID_HI);
	t->ack = regs[PLC_TRIG_ACK];
	t->job = regs[PLC_TRIG_JOB];
}

void plc_encode_status(const struct plc_status *s, uint16_t regs[PLC_STAT_REGS])
{
	regs[PLC_STAT_HEARTBEAT] = s->heartbeat;
	regs[PLC_STAT_WORD] = s->word;
	regs[PLC_STAT_ERROR] = s->error;
	regs[PLC_STAT_JOB] = s->job;
	regs[PLC_STAT_TRIGGER_SEEN] = s->trigger_seen;
	regs[PLC_STAT_BUFFERED] = s->buffered;
	regs[PLC_STAT_CAPACITY] = s->capacity;
	regs[PLC_STAT_OVERRUNS] = s->overruns;
	regs[PLC_STAT_MAP_VERSION] = PLC_MAP_VERSION;
}

void plc_decode_status(const uint16_t regs[PLC_STAT_REGS], struct plc_status *s)
{
	s->heartbeat = regs[PLC_STAT_HEARTBEAT];
	s->word = regs[PLC_STAT_WORD];
	s->error = regs[PLC_STAT_ERROR];
	s->job = regs[PLC_STAT_JOB];
	s->trigger_seen = regs[PLC_STAT_TRIGGER_SEEN];
	s->buffered = regs[PLC_STAT_BUFFERED];
	s->capacity = regs[PLC_STAT_CAPACITY];
	s->overruns = regs[PLC_STAT_OVERRUNS];
}

uint16_t plc_counter_next(uint16_t c)
{
	return c == UINT16_MAX ? 1 : (uint16_t)(c + 1);
}

/* A block must lie inside the 16-bit protocol address space. */
static int block_fits(int base, int nregs)
{
	return base >= 0 && base <= 65536 - nregs;
}

static int blocks_overlap(int a, int na, int b, int nb)
{
	return a < b + nb && b < a + na;
}

int plc_regmap_check(const struct plc_regmap *m)
{
	if (!block_fits(m->trigger_base, PLC_TRIG_REGS) ||
	    !block_fits(m->result_base, PLC_RES_REGS) ||
	    !block_fits(m->status_base, PLC_STAT_REGS))
		return -EINVAL;
	/* Overlapping blocks would have vigild overwrite the PLC's trigger or
	 * its own result with the heartbeat. */
	if (blocks_overlap(m->trigger_base, PLC_TRIG_REGS, m->result_base, PLC_RES_REGS) ||
	    blocks_overlap(m->trigger_base, PLC_TRIG_REGS, m->status_base, PLC_STAT_REGS) ||
	    blocks_overlap(m->result_base, PLC_RES_REGS, m->status_base, PLC_STAT_REGS))
		return -EINVAL;
	return 0;
}
