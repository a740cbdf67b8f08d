/* ratelimit: per-source budgets for datagrams that fail a check (pure). */
#include <arpa/inet.h>
#include <string.h>

#include "ratelimit.h"

#define MILLI 1000 /* a token, in the thousandths the buckets count */

void
ratelimit_cfg_defaults(struct ratelimit_cfg *c)
{
	c->rate = 100;
	c->burst = 200;
}

int
ratelimit_init(
    struct ratelimit *rl, const struct ratelimit_cfg *cfg, uint32_t seed)
{
	if (cfg->rate > RATELIMIT_MAX ||
	    (cfg->rate > 0 && (cfg->burst == 0 || cfg->burst > RATELIMIT_MAX)))
		return -1;
	memset(rl, 0, sizeof(*rl));
	rl->cfg = *cfg;
	rl->seed = seed;
	return 0;
}

/* murmur3's finaliser: every bit of the address moves every bit. */
static size_t
slot_of(const struct ratelimit *rl, uint32_t addr)
{
	uint32_t h = addr ^ rl->seed;

	h ^= h >> 16;
	h *= 0x85ebca6bU;
	h ^= h >> 13;
	h *= 0xc2b2ae35U;
	h ^= h >> 16;
	return h & (RATELIMIT_SLOTS - 1);
}

static int64_t
cap_milli(const struct ratelimit *rl)
{
	return (int64_t)rl->cfg.burst * MILLI;
}

/* The tokens a source has at now, refilled since it was last counted. */
static int64_t
avail(const struct ratelimit *rl, const struct ratelimit_src *e, int64_t now)
{
	int64_t dt = now - e->last_ms, cap = cap_milli(rl);

	if (dt <= 0)
		return e->milli;
	if (dt >= cap) /* at least one milli-token a ms: full by then */
		return cap;
	return e->milli + dt * rl->cfg.rate >= cap
	    ? cap
	    : e->milli + dt * rl->cfg.rate;
}

static void
refill(const struct ratelimit *rl, struct ratelimit_src *e, int64_t now)
{
	e->milli = avail(rl, e, now);
	if (now > e->last_ms)
		e->last_ms = now;
}

/* The slot of addr, or -1 when it is not remembered. */
static long
lookup(const struct ratelimit *rl, uint32_t addr)
{
	size_t i, h = slot_of(rl, addr);

	/* Nothing is ever removed, only replaced: an empty slot ends it. */
	for (i = 0; i < RATELIMIT_PROBE; i++) {
		size_t k = (h + i) & (RATELIMIT_SLOTS - 1);

		if (!rl->tab[k].used)
			return -1;
		if (rl->tab[k].addr == addr)
			return (long)k;
	}
	return -1;
}

const struct ratelimit_src *
ratelimit_find(const struct ratelimit *rl, uint32_t addr)
{
	long k = lookup(rl, addr);

	return k == -1 ? NULL : &rl->tab[k];
}

/* Is a better victim than b: forgets less. */
static bool
better_victim(const struct ratelimit *rl, const struct ratelimit_src *a,
    const struct ratelimit_src *b, int64_t now)
{
	bool afull = a->held_until == 0 && avail(rl, a, now) == cap_milli(rl);
	bool bfull = b->held_until == 0 && avail(rl, b, now) == cap_milli(rl);

	if (afull != bfull)
		return afull;
	if (afull)
		return false; /* both forget nothing: keep the first */
	if ((a->held_until != 0) != (b->held_until != 0))
		return a->held_until == 0;
	if (a->over != b->over)
		return !a->over;
	return a->last_ms < b->last_ms;
}

/* Into the kernel filter for RATELIMIT_HOLD_MS. */
static void
hold(struct ratelimit *rl, struct ratelimit_src *e, int64_t now)
{
	e->held_until = now + RATELIMIT_HOLD_MS;
	if (rl->next_release_ms == 0 || e->held_until < rl->next_release_ms)
		rl->next_release_ms = e->held_until;
	rl->gen++;
}

/* The entry of addr, made (with a full bucket) when it is new. */
static struct ratelimit_src *
enter(struct ratelimit *rl, uint32_t addr, int64_t now)
{
	struct ratelimit_src *e, *victim = NULL;
	size_t i, h = slot_of(rl, addr);

	for (i = 0; i < RATELIMIT_PROBE; i++) {
		e = &rl->tab[(h + i) & (RATELIMIT_SLOTS - 1)];
		if (!e->used) {
			victim = e;
			break;
		}
		if (e->addr == addr)
			return e;
		if (victim == NULL || better_victim(rl, e, victim, now))
			victim = e;
	}
	if (victim->used && avail(rl, victim, now) < cap_milli(rl))
		rl->evicted++;
	if (victim->used && victim->held_until != 0)
		rl->gen++; /* leaves the filter */
	memset(victim, 0, sizeof(*victim));
	victim->used = true;
	victim->addr = addr;
	victim->last_ms = now;
	victim->milli = cap_milli(rl);
	return victim;
}

bool
ratelimit_over(struct ratelimit *rl, uint32_t addr, int64_t now_ms)
{
	struct ratelimit_src *e;
	long k;

	if (rl->cfg.rate == 0 || (k = lookup(rl, addr)) == -1)
		return false;
	e = &rl->tab[k];
	if (!e->over)
		return false;
	refill(rl, e, now_ms);
	if (e->milli >= MILLI) {
		/* Slowed down to its rate: heard again, episode over. */
		e->over = false;
		e->dropped = 0;
		return false;
	}
	/* Each dropped datagram costs what refilled: flooding keeps it out. */
	e->milli = 0;
	e->dropped++;
	rl->dropped++;
	if (e->held_until == 0)
		hold(rl, e, now_ms); /* still flooding after its hold */
	return true;
}

int
ratelimit_charge(struct ratelimit *rl, uint32_t addr, int64_t now_ms)
{
	struct ratelimit_src *e;

	if (rl->cfg.rate == 0)
		return 0;
	e = enter(rl, addr, now_ms);
	refill(rl, e, now_ms);
	rl->charged++;
	e->milli = e->milli >= MILLI ? e->milli - MILLI : 0;
	if (e->milli >= MILLI || e->over)
		return 0;
	e->over = true;
	e->dropped = 0;
	rl->episodes++;
	hold(rl, e, now_ms);
	return 1;
}

void
ratelimit_tick(struct ratelimit *rl, int64_t now_ms)
{
	size_t i;

	if (rl->next_release_ms == 0 || now_ms < rl->next_release_ms)
		return;
	rl->next_release_ms = 0;
	for (i = 0; i < RATELIMIT_SLOTS; i++) {
		struct ratelimit_src *e = &rl->tab[i];

		if (!e->used || e->held_until == 0)
			continue;
		if (e->held_until > now_ms) {
			if (rl->next_release_ms == 0 ||
			    e->held_until < rl->next_release_ms)
				rl->next_release_ms = e->held_until;
			continue;
		}
		/* Unseen while held: that time earns it nothing. */
		e->held_until = 0;
		if (e->last_ms < now_ms)
			e->last_ms = now_ms;
		rl->gen++;
	}
}

size_t
ratelimit_held(const struct ratelimit *rl, uint32_t *addrs, size_t max)
{
	size_t i, n = 0;

	for (i = 0; i < RATELIMIT_SLOTS && n < max; i++)
		if (rl->tab[i].used && rl->tab[i].held_until != 0)
			addrs[n++] = rl->tab[i].addr;
	return n;
}

int
ratelimit_filter(const uint32_t *held, size_t nheld,
    const struct ratelimit_keep *keep, size_t nkeep, struct sock_filter *prog,
    size_t max)
{
	size_t i, j, k, n = 0;

	/* A = the source address (the IP header, before the UDP one). */
	if (max < 2)
		return -1;
	prog[n++] = (struct sock_filter)BPF_STMT(
	    BPF_LD | BPF_W | BPF_ABS, (uint32_t)(SKF_NET_OFF + 12));
	for (i = 0; i < nheld; i++) {
		size_t m = 0;

		for (j = 0; j < nkeep; j++)
			m += keep[j].addr == held[i];
		/* jeq, then a drop, or the port checks: all jumps forward. */
		if (m + 3 > 255 || n + 1 + (m == 0 ? 1 : m + 3) + 1 > max)
			return -1;
		if (m == 0) {
			prog[n++] = (struct sock_filter)BPF_JUMP(
			    BPF_JMP | BPF_JEQ | BPF_K, ntohl(held[i]), 0, 1);
			prog[n++] =
			    (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, 0);
			continue;
		}
		prog[n++] =
		    (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K,
			ntohl(held[i]), 0, (uint8_t)(m + 3));
		/* A member at that address: its own port still gets through. */
		prog[n++] =
		    (struct sock_filter)BPF_STMT(BPF_LD | BPF_H | BPF_ABS, 0);
		for (j = 0, k = 0; j < nkeep; j++) {
			if (keep[j].addr != held[i])
				continue;
			prog[n++] = (struct sock_filter)BPF_JUMP(
			    BPF_JMP | BPF_JEQ | BPF_K, ntohs(keep[j].port),
			    (uint8_t)(m - k), 0);
			k++;
		}
		prog[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, 0);
		prog[n++] =
		    (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, 0xffffffffU);
	}
	prog[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, 0xffffffffU);
	return (int)n;
}

size_t
ratelimit_count_over(const struct ratelimit *rl, int64_t now_ms)
{
	size_t i, n = 0;

	if (rl->cfg.rate == 0)
		return 0;
	for (i = 0; i < RATELIMIT_SLOTS; i++) {
		const struct ratelimit_src *e = &rl->tab[i];

		if (e->used && e->over &&
		    (e->held_until > now_ms || avail(rl, e, now_ms) < MILLI))
			n++;
	}
	return n;
}

void
ratelimit_bucket_init(
    struct ratelimit_bucket *b, uint32_t rate, uint32_t burst, int64_t now_ms)
{
	memset(b, 0, sizeof(*b));
	b->rate = rate;
	b->burst = burst;
	b->milli = (int64_t)burst * MILLI;
	b->last_ms = now_ms;
}

bool
ratelimit_bucket_take(struct ratelimit_bucket *b, int64_t now_ms)
{
	int64_t cap = (int64_t)b->burst * MILLI, dt = now_ms - b->last_ms;

	if (dt > 0) {
		b->milli = dt >= cap || b->milli + dt * b->rate >= cap
		    ? cap
		    : b->milli + dt * b->rate;
		b->last_ms = now_ms;
	}
	if (b->milli < MILLI) {
		b->refused++;
		return false;
	}
	b->milli -= MILLI;
	return true;
}
