/* ratelimit: per-source budgets for datagrams that fail a check (pure). */
#ifndef RINGCHAT_RATELIMIT_H
#define RINGCHAT_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <linux/filter.h>

/*
 * One token bucket per IPv4 source address, spent only by datagrams that
 * failed a check (undecodable, a bad or missing MAC, a non-member on the
 * control port...).  A source that spent its bucket is "over": every
 * datagram it sends is then dropped unread, after one table look-up, and
 * still costs it a token, so it stays over for as long as it sends
 * faster than the rate, and comes back one token after it slows down.
 * Sources that never fail are never in the table and cost one look-up.
 *
 * The table is bounded (RATELIMIT_SLOTS, open addressing over
 * RATELIMIT_PROBE slots from a seeded hash) and entered only on a
 * failure; when a source's slots are all taken, the one that forgets the
 * least gives way: a bucket full again (nothing to remember), else the
 * longest quiet source under its budget, else the longest quiet one over.
 *
 * A source going over is also "held" for RATELIMIT_HOLD_MS: the caller
 * puts the held sources into a kernel socket filter (ratelimit_filter),
 * so that their datagrams no longer wake the daemon at all.  Time held
 * earns no tokens: a source still flooding when its hold ends is over
 * at its first datagram and held again; one that stopped is heard again.
 * Pure: no clock, no socket; now_ms is the caller's monotonic clock.
 */

#define RATELIMIT_SLOTS 4096	/* sources remembered, a power of two */
#define RATELIMIT_PROBE 8	/* slots a source may take from its hash */
#define RATELIMIT_MAX	1000000 /* highest rate or burst accepted */
#define RATELIMIT_HOLD_MS                                                      \
	1000		       /* in the kernel filter, then looked at again   \
				*/
#define RATELIMIT_HELD_MAX 256 /* sources in the kernel filter at most */
/* Instructions of a filter: held sources, and members' ports kept. */
#define RATELIMIT_FILTER_MAX BPF_MAXINSNS

struct ratelimit_cfg {
	uint32_t rate;	/* failed datagrams a second per source; 0: off */
	uint32_t burst; /* failed datagrams at once, from a full bucket */
};

struct ratelimit_src {
	bool used;
	bool over;	 /* spent its bucket; dropped unread until refilled */
	uint32_t addr;	 /* IPv4, network byte order */
	int64_t last_ms; /* tokens counted up to this time */
	int64_t milli;	 /* tokens x 1000 */
	int64_t held_until; /* in the kernel filter until then; 0: not */
	uint64_t dropped;   /* dropped unread in the current episode */
};

/* An address and port a filter never drops (a member's control port). */
struct ratelimit_keep {
	uint32_t addr; /* network byte order */
	uint16_t port; /* network byte order */
};

struct ratelimit {
	struct ratelimit_cfg cfg;
	uint32_t seed;
	struct ratelimit_src tab[RATELIMIT_SLOTS];
	/* counters since init */
	uint64_t charged;  /* failures counted against a source */
	uint64_t dropped;  /* datagrams dropped unread, every source */
	uint64_t episodes; /* times a source went over its budget */
	uint64_t evicted;  /* sources forgotten with something to remember */
	/* held sources: gen changes whenever the set does */
	uint64_t gen;
	int64_t next_release_ms; /* the earliest hold ending; 0: none */
};

/*
 * One token bucket on its own: work allowed to everyone together (the
 * MAC checks of strangers' datagrams, which no per-source limit bounds
 * when every datagram has a new source).
 */
struct ratelimit_bucket {
	uint32_t rate, burst; /* tokens a second, at most */
	int64_t milli;	      /* tokens x 1000 */
	int64_t last_ms;
	uint64_t refused; /* takes refused */
};

/* A full bucket; rate and burst as in ratelimit_cfg (burst >= 1). */
void ratelimit_bucket_init(
    struct ratelimit_bucket *, uint32_t rate, uint32_t burst, int64_t now_ms);
/* true and one token less, or false (counted) when none is left. */
bool ratelimit_bucket_take(struct ratelimit_bucket *, int64_t now_ms);

/* 100 failures a second, 200 at once. */
void ratelimit_cfg_defaults(struct ratelimit_cfg *);
/*
 * An empty table; seed (random) keeps sources from choosing their
 * slots.  -1 when cfg is out of range: a rate above RATELIMIT_MAX, or a
 * burst of 0 or above RATELIMIT_MAX with a rate.
 */
int
ratelimit_init(struct ratelimit *, const struct ratelimit_cfg *, uint32_t seed);
/*
 * Before any other work on a datagram from addr: true when the source is
 * over its budget, so the datagram is to be dropped unread (counted, and
 * charged to the source).  false for a source under its budget or
 * unknown, and always when the limit is off.
 */
bool ratelimit_over(struct ratelimit *, uint32_t addr, int64_t now_ms);
/*
 * A datagram from addr failed a check: one token.  Returns 1 when this
 * put the source over its budget (the caller logs the episode once),
 * else 0.
 */
int ratelimit_charge(struct ratelimit *, uint32_t addr, int64_t now_ms);
/*
 * Ends the holds due by now_ms (cheap when none is): call now and then,
 * and rebuild the filter when gen changed.
 */
void ratelimit_tick(struct ratelimit *, int64_t now_ms);
/* The held sources, at most max of them (the filter's list); how many. */
size_t ratelimit_held(const struct ratelimit *, uint32_t *addrs, size_t max);
/*
 * A classic BPF socket filter (SO_ATTACH_FILTER) for an IPv4 UDP socket:
 * drops a datagram whose source address is one of held[0..nheld-1],
 * unless its address and port are one of keep[0..nkeep-1]; accepts the
 * rest.  Writes at most max instructions into prog; returns how many,
 * or -1 when they do not fit (fewer held sources then).
 */
int ratelimit_filter(const uint32_t *held, size_t nheld,
    const struct ratelimit_keep *keep, size_t nkeep, struct sock_filter *prog,
    size_t max);
/* Sources over their budget at now_ms (a scan of the table). */
size_t ratelimit_count_over(const struct ratelimit *, int64_t now_ms);
/* The entry of addr, NULL when it is not remembered (for reports). */
const struct ratelimit_src *
ratelimit_find(const struct ratelimit *, uint32_t addr);

#endif
