/* ring: the membership table, sorted by UUID, and each server's neighbour. */
#ifndef RINGCHAT_RING_H
#define RINGCHAT_RING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "uuid.h"

#define RING_MAX      64 /* servers in one cluster */
#define RING_NAME_MAX 64 /* bytes of a server name, NUL included */
#define RING_ADDR_MAX 16 /* dotted IPv4, NUL included */

struct member {
	struct uuid uuid;
	char name[RING_NAME_MAX];
	char addr[RING_ADDR_MAX]; /* dotted IPv4 */
	uint16_t port;		  /* data port */
	uint16_t ctl_port;	  /* control port */
	bool alive;
	int64_t last_seen_ms;	/* monotonic; 0 = never heard */
	int64_t last_seen_wall; /* seconds since the epoch, for servers.json */
};

/* Members sorted by UUID ascending; self is always a member. */
struct ring {
	struct member m[RING_MAX];
	size_t n;
	struct uuid self;
};

void ring_init(struct ring *, const struct member *self);
/*
 * Adds or updates a member by UUID (address, ports, name; liveness is
 * set alive).  Returns 1 when it is new, 0 when known, -1 when full.
 */
int ring_upsert(struct ring *, const struct member *);
struct member *ring_find(struct ring *, const struct uuid *);
const struct member *ring_find_const(const struct ring *, const struct uuid *);
/* Returns 1 when liveness changed, 0 when not, -1 when unknown. */
int ring_set_alive(struct ring *, const struct uuid *, bool alive);
/*
 * The next live member after u in UUID order, wrapping around, skipping
 * dead ones and u itself.  NULL when no other member is alive.
 */
const struct member *ring_next_live(const struct ring *, const struct uuid *u);
/* Live members, self included. */
size_t ring_live_count(const struct ring *);
const struct member *ring_self(const struct ring *);
/* The highest live UUID (self included). */
const struct member *ring_highest_live(const struct ring *);

#endif
