/* sess: the leader's encrypted client sessions, by key and by address. */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "sess.h"

#define SESS_FIRST_CAP 64

/* Chains hashed with a secret (SipHash), so no sender picks collisions. */
static uint8_t hash_key[crypto_shorthash_KEYBYTES];
static bool hash_key_set;

static size_t
bucket(const struct sess_table *t, const void *data, size_t len)
{
	uint8_t h[crypto_shorthash_BYTES];
	uint64_t v;

	crypto_shorthash(h, data, len, hash_key);
	memcpy(&v, h, sizeof(v));
	return (size_t)(v & (t->nbuckets - 1));
}

static size_t
pk_bucket(const struct sess_table *t, const uint8_t pk[AUTH_PK_BYTES])
{
	return bucket(t, pk, AUTH_PK_BYTES);
}

static size_t
ad_bucket(const struct sess_table *t, uint32_t ip, uint16_t port)
{
	uint8_t b[6];

	memcpy(b, &ip, 4);
	memcpy(b + 4, &port, 2);
	return bucket(t, b, sizeof(b));
}

int
sess_init(struct sess_table *t, size_t max)
{
	memset(t, 0, sizeof(*t));
	if (max == 0 || max > SESS_MAX || sodium_init() == -1)
		return -1;
	if (!hash_key_set) {
		crypto_shorthash_keygen(hash_key);
		hash_key_set = true;
	}
	t->max = max;
	/* Twice the sessions, a power of two: chains stay short. */
	for (t->nbuckets = 64; t->nbuckets < 2 * max; t->nbuckets *= 2)
		;
	t->pk_head = calloc(t->nbuckets, sizeof(*t->pk_head));
	t->ad_head = calloc(t->nbuckets, sizeof(*t->ad_head));
	if (t->pk_head == NULL || t->ad_head == NULL) {
		sess_free(t);
		return -1;
	}
	return 0;
}

void
sess_free(struct sess_table *t)
{
	size_t i;

	for (i = 0; i < t->n; i++)
		if (t->s[i].used)
			auth_session_wipe(&t->s[i].as);
	free(t->s);
	free(t->pk_head);
	free(t->ad_head);
	memset(t, 0, sizeof(*t));
}

/* Unlinks slot i from the chain starting at *head, linked by next(). */
static void
unlink_pk(struct sess_table *t, uint32_t i)
{
	uint32_t *p = &t->pk_head[pk_bucket(t, t->s[i].pk)];

	while (*p != 0 && *p != i + 1)
		p = &t->s[*p - 1].pk_next;
	if (*p == i + 1)
		*p = t->s[i].pk_next;
	t->s[i].pk_next = 0;
}

static void
unlink_ad(struct sess_table *t, uint32_t i)
{
	struct sess *e = &t->s[i];
	uint32_t *p;

	if (!e->has_addr)
		return;
	p = &t->ad_head[ad_bucket(t, e->ip, e->port)];
	while (*p != 0 && *p != i + 1)
		p = &t->s[*p - 1].ad_next;
	if (*p == i + 1)
		*p = e->ad_next;
	e->ad_next = 0;
	e->has_addr = false;
}

static void
drop(struct sess_table *t, uint32_t i)
{
	struct sess *e = &t->s[i];

	unlink_pk(t, i);
	unlink_ad(t, i);
	auth_session_wipe(&e->as);
	memset(e, 0, sizeof(*e));
	e->pk_next = t->free_head;
	t->free_head = i + 1;
	t->live--;
	t->evicted++;
}

struct sess *
sess_find(struct sess_table *t, const uint8_t pk[AUTH_PK_BYTES])
{
	uint32_t i;

	if (t->pk_head == NULL)
		return NULL;
	for (i = t->pk_head[pk_bucket(t, pk)]; i != 0; i = t->s[i - 1].pk_next)
		if (sodium_memcmp(t->s[i - 1].pk, pk, AUTH_PK_BYTES) == 0)
			return &t->s[i - 1];
	return NULL;
}

struct sess *
sess_by_addr(struct sess_table *t, uint32_t ip, uint16_t port)
{
	uint32_t i;

	if (t->ad_head == NULL)
		return NULL;
	for (i = t->ad_head[ad_bucket(t, ip, port)]; i != 0;
	     i = t->s[i - 1].ad_next) {
		struct sess *e = &t->s[i - 1];

		if (e->ip == ip && e->port == port)
			return e;
	}
	return NULL;
}

/* A free slot: a freed one, a new one, or the longest idle one. */
static enum auth_err
take_slot(struct sess_table *t, int64_t now_ms, uint32_t *out)
{
	struct sess *ns;
	size_t i, cap, oldest = SIZE_MAX;

	if (t->free_head != 0) {
		*out = t->free_head - 1;
		t->free_head = t->s[*out].pk_next;
		t->s[*out].pk_next = 0;
		return AUTH_OK;
	}
	if (t->n < t->max) {
		if (t->n == t->cap) {
			cap = t->cap == 0 ? SESS_FIRST_CAP : t->cap * 2;
			if (cap > t->max)
				cap = t->max;
			ns = realloc(t->s, cap * sizeof(*ns));
			if (ns == NULL)
				return AUTH_ENOMEM;
			memset(ns + t->cap, 0, (cap - t->cap) * sizeof(*ns));
			t->s = ns;
			t->cap = cap;
		}
		*out = (uint32_t)t->n++;
		return AUTH_OK;
	}
	for (i = 0; i < t->n; i++)
		if (t->s[i].used &&
		    (oldest == SIZE_MAX ||
			t->s[i].last_ms < t->s[oldest].last_ms))
			oldest = i;
	if (oldest == SIZE_MAX || now_ms - t->s[oldest].last_ms < SESS_IDLE_MS)
		return AUTH_ETOOBIG;
	drop(t, (uint32_t)oldest);
	return take_slot(t, now_ms, out);
}

/* A fresh session for pk: refuses counters older than the floor. */
static enum auth_err
derive(struct auth_session *as, const struct auth_cluster *c,
    const uint8_t pk[AUTH_PK_BYTES], uint64_t epoch, uint64_t unix_ms)
{
	struct auth_ctr ctr;
	enum auth_err err;

	if ((err = auth_session_server(as, c, pk, epoch)) != AUTH_OK)
		return err;
	/*
	 * Every counter up to the floor counts as seen: a recording made
	 * before this session existed (its predecessor was silent at least
	 * SESS_IDLE_MS before being dropped) is refused.
	 */
	as->rx_win.any = true;
	as->rx_win.top = auth_ctr_floor(unix_ms, AUTH_SKEW_MS);
	memset(as->rx_win.bits, 0xff, sizeof(as->rx_win.bits));
	auth_ctr_init(&ctr, unix_ms);
	as->tx_ctr = ctr.next;
	return AUTH_OK;
}

/* Takes a slot for pk with session as (moved in, then wiped in *as). */
static enum auth_err
insert(struct sess_table *t, const uint8_t pk[AUTH_PK_BYTES],
    struct auth_session *as, uint64_t epoch, int64_t now_ms, struct sess **out)
{
	struct sess *e;
	enum auth_err err;
	uint32_t i;
	size_t b;

	if ((err = take_slot(t, now_ms, &i)) != AUTH_OK) {
		if (err == AUTH_ETOOBIG)
			t->refused_full++;
		return err;
	}
	e = &t->s[i];
	memset(e, 0, sizeof(*e));
	memcpy(e->pk, pk, AUTH_PK_BYTES);
	auth_pk_to_text(pk, e->key);
	e->as = *as;
	sodium_memzero(as, sizeof(*as));
	e->epoch = epoch;
	e->used = true;
	e->last_ms = now_ms;
	b = pk_bucket(t, pk);
	e->pk_next = t->pk_head[b];
	t->pk_head[b] = i + 1;
	t->live++;
	t->created++;
	*out = e;
	return AUTH_OK;
}

/*
 * A fresh session *as for pk: replaces e's (a key known from another
 * epoch) or takes a slot; *as is wiped either way.
 */
static enum auth_err
keep(struct sess_table *t, struct sess *e, const uint8_t pk[AUTH_PK_BYTES],
    struct auth_session *as, uint64_t epoch, int64_t now_ms,
    struct sess **found)
{
	enum auth_err err;

	if (e != NULL) {
		auth_session_wipe(&e->as);
		e->as = *as;
		e->epoch = epoch;
		sodium_memzero(as, sizeof(*as));
		*found = e;
		return AUTH_OK;
	}
	if ((err = insert(t, pk, as, epoch, now_ms, found)) != AUTH_OK)
		auth_session_wipe(as);
	return err;
}

enum auth_err
sess_open(struct sess_table *t, const struct auth_cluster *c, uint64_t epoch,
    uint64_t unix_ms, int64_t now_ms, bool may_derive, const void *data,
    size_t len, void *out, size_t outsz, size_t *outlen, struct sess **found)
{
	uint8_t pk[AUTH_PK_BYTES];
	struct auth_session as;
	struct sess *e;
	uint64_t depoch;
	enum auth_err err;

	*found = NULL;
	if (t->pk_head == NULL)
		return AUTH_EARG;
	if ((err = auth_session_peek(data, len, pk, &depoch)) != AUTH_OK)
		return err;
	if (depoch != epoch)
		return AUTH_EEPOCH; /* before any work: the client is behind */
	e = sess_find(t, pk);
	if (e != NULL && e->epoch == epoch) {
		if ((err = auth_session_open(
			 &e->as, data, len, out, outsz, outlen)) != AUTH_OK)
			return err;
		*found = e;
		return AUTH_OK;
	}
	/* A key new here, or from an older epoch: one X25519 on trial. */
	if (!may_derive)
		return AUTH_ETOOBIG;
	memset(&as, 0, sizeof(as));
	if ((err = derive(&as, c, pk, epoch, unix_ms)) != AUTH_OK)
		return err;
	if ((err = auth_session_open(&as, data, len, out, outsz, outlen)) !=
	    AUTH_OK) {
		auth_session_wipe(&as);
		return err;
	}
	/* Only once a datagram of the new epoch authenticates. */
	return keep(t, e, pk, &as, epoch, now_ms, found);
}

enum auth_err
sess_bind(struct sess_table *t, const struct auth_cluster *c,
    const uint8_t pk[AUTH_PK_BYTES], uint64_t epoch, uint64_t unix_ms,
    int64_t now_ms, struct sess **found)
{
	struct auth_session as;
	struct sess *e;
	enum auth_err err;

	*found = NULL;
	if (t->pk_head == NULL)
		return AUTH_EARG;
	if ((e = sess_find(t, pk)) != NULL && e->epoch == epoch) {
		*found = e;
		return AUTH_OK;
	}
	memset(&as, 0, sizeof(as));
	if ((err = derive(&as, c, pk, epoch, unix_ms)) != AUTH_OK)
		return err;
	return keep(t, e, pk, &as, epoch, now_ms, found);
}

void
sess_seen(struct sess_table *t, struct sess *e, uint32_t ip, uint16_t port,
    int64_t now_ms)
{
	uint32_t i = (uint32_t)(e - t->s);
	struct sess *other;
	size_t b;

	e->last_ms = now_ms;
	if (e->has_addr && e->ip == ip && e->port == port)
		return;
	unlink_ad(t, i);
	/* One session per address: a newer key there takes it over. */
	if ((other = sess_by_addr(t, ip, port)) != NULL)
		unlink_ad(t, (uint32_t)(other - t->s));
	e->ip = ip;
	e->port = port;
	e->has_addr = true;
	b = ad_bucket(t, ip, port);
	e->ad_next = t->ad_head[b];
	t->ad_head[b] = i + 1;
}

size_t
sess_expire(struct sess_table *t, int64_t now_ms)
{
	size_t i, n = 0;

	for (i = 0; i < t->n; i++)
		if (t->s[i].used && now_ms - t->s[i].last_ms >= SESS_IDLE_MS) {
			drop(t, (uint32_t)i);
			n++;
		}
	return n;
}

void
sess_ctr_bump(struct auth_session *as, uint64_t unix_ms)
{
	uint64_t sec = auth_ctr_floor(unix_ms, 0);

	if (as->tx_ctr < sec)
		as->tx_ctr = sec;
}

bool
sess_plain_ok(const struct wire_msg *m)
{
	const char *code = wire_get(m, "code");

	switch (m->kind) {
	case WK_LEADER:
		return true;
	case WK_ERR:
		return code != NULL &&
		    (strcmp(code, "not_leader") == 0 ||
			strcmp(code, "sealed") == 0);
	case WK_OK:
		return wire_get(m, "re") == NULL; /* a vote's answer */
	default:
		return false;
	}
}
