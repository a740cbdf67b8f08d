/* ring: the membership table, sorted by UUID, and each server's neighbour. */
#include <string.h>

#include "ring.h"

/* Copies what a member says about itself; liveness and times are not. */
static void
member_copy_info(struct member *dst, const struct member *src)
{
	if (dst != src) {
		memcpy(dst->name, src->name, sizeof(dst->name));
		memcpy(dst->addr, src->addr, sizeof(dst->addr));
	}
	/* a record from the network may lack its NUL */
	dst->name[sizeof(dst->name) - 1] = '\0';
	dst->addr[sizeof(dst->addr) - 1] = '\0';
	dst->port = src->port;
	dst->ctl_port = src->ctl_port;
}

/* The index of the first member whose UUID is not below u (n if none). */
static size_t
ring_lower_bound(const struct ring *r, const struct uuid *u)
{
	size_t lo = 0, hi = r->n, mid;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (uuid_cmp(&r->m[mid].uuid, u) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

void
ring_init(struct ring *r, const struct member *self)
{
	memset(r, 0, sizeof(*r));
	r->m[0] = *self;
	member_copy_info(&r->m[0], self);
	r->m[0].alive = true;
	r->n = 1;
	r->self = self->uuid;
}

int
ring_upsert(struct ring *r, const struct member *mb)
{
	struct member *m;
	size_t i;

	i = ring_lower_bound(r, &mb->uuid);
	if (i < r->n && uuid_cmp(&r->m[i].uuid, &mb->uuid) == 0) {
		m = &r->m[i];
		member_copy_info(m, mb);
		m->alive = true;
		return 0;
	}
	if (r->n == RING_MAX)
		return -1;
	memmove(&r->m[i + 1], &r->m[i], (r->n - i) * sizeof(r->m[0]));
	r->n++;
	m = &r->m[i];
	*m = *mb;
	member_copy_info(m, mb);
	m->alive = true;
	return 1;
}

struct member *
ring_find(struct ring *r, const struct uuid *u)
{
	size_t i;

	i = ring_lower_bound(r, u);
	if (i < r->n && uuid_cmp(&r->m[i].uuid, u) == 0)
		return &r->m[i];
	return NULL;
}

const struct member *
ring_find_const(const struct ring *r, const struct uuid *u)
{
	size_t i;

	i = ring_lower_bound(r, u);
	if (i < r->n && uuid_cmp(&r->m[i].uuid, u) == 0)
		return &r->m[i];
	return NULL;
}

int
ring_set_alive(struct ring *r, const struct uuid *u, bool alive)
{
	struct member *m;

	if ((m = ring_find(r, u)) == NULL)
		return -1;
	/* a server never believes itself dead */
	if (!alive && uuid_cmp(u, &r->self) == 0)
		return 0;
	if (m->alive == alive)
		return 0;
	m->alive = alive;
	return 1;
}

const struct member *
ring_next_live(const struct ring *r, const struct uuid *u)
{
	const struct member *m;
	size_t start, k;

	if (r->n == 0)
		return NULL;
	/* the first member above u; u itself need not be a member */
	start = ring_lower_bound(r, u);
	if (start < r->n && uuid_cmp(&r->m[start].uuid, u) == 0)
		start++;
	for (k = 0; k < r->n; k++) {
		m = &r->m[(start + k) % r->n];
		if (!m->alive || uuid_cmp(&m->uuid, u) == 0)
			continue;
		return m;
	}
	return NULL;
}

size_t
ring_live_count(const struct ring *r)
{
	size_t i, live = 0;

	for (i = 0; i < r->n; i++)
		if (r->m[i].alive)
			live++;
	return live;
}

const struct member *
ring_self(const struct ring *r)
{
	return ring_find_const(r, &r->self);
}

const struct member *
ring_highest_live(const struct ring *r)
{
	size_t i;

	for (i = r->n; i > 0; i--)
		if (r->m[i - 1].alive)
			return &r->m[i - 1];
	return NULL;
}
