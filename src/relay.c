/* relay: users, rooms, exactly-once message relay and its replication. */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "relay.h"
#include "store.h"

/*
 * Memory: every allocation goes through mem_*, which count the bytes
 * asked for plus MEM_OVERHEAD (what malloc keeps per block) in r->mem.
 */
#define MEM_OVERHEAD 16
/* Outputs kept allocated between drains; a bigger outbox is released. */
#define OUT_KEEP 256
/* Outputs reserved before a state change, so that its replies exist. */
#define OUT_RESERVE 8
/* Distinct streams the delivery pump looks at per user and call. */
#define PUMP_STREAMS 32

/*
 * Stream keys.  Every message belongs to one stream and carries that
 * stream's next seq; a recipient is sent a stream's messages one at a
 * time, in order.  Direct: the ordered pair of user indices; room: the
 * room's id (a room recreated is a new stream); broadcast: STREAM_BCAST.
 * The same keys, with KV_CURSOR, name an ex-member's place in a room.
 */
#define STREAM_BCAST UINT64_C(0x4000000000000000)
#define STREAM_ROOM  UINT64_C(0x8000000000000000)
#define KV_CURSOR    UINT64_C(0x8000000000000000)
#define KV_EMPTY     UINT64_C(0)
#define KV_DEAD	     UINT64_MAX
#define IDX_MAX	     UINT32_C(0x3fffffff) /* users and room ids */

/* One accepted client message id and the message id it became. */
struct relay_cident {
	uint64_t cid, id;
};

/* A delivery sent and not yet acknowledged (leader-local). */
struct relay_slot {
	struct relay_msg *m;
	int64_t due;
	uint32_t attempt;
};

struct relay_user {
	char name[USER_NAME_MAX];
	char addr[RING_ADDR_MAX];
	uint16_t port;
	bool online;
	uint8_t nrooms;
	uint32_t onpos; /* index in r->online while online */
	uint64_t reg;	/* registration identity (relay_merge), 0: none */
	char key[AUTH_PK_TEXT]; /* session key bound by newu, login; "" none */
	char *pw; /* password hash (Argon2id string), NULL: none */
	uint64_t cid_hi;
	/* slot cid % RELAY_CID_WINDOW; allocated by the first message */
	struct relay_cident *win;
	/* unacknowledged deliveries in the order they are due */
	struct relay_msg **q;
	uint32_t nq, capq;
	/* leader-local */
	struct relay_slot *slots; /* cfg.inflight_max, while needed */
	uint32_t nslots;
	uint32_t pw_run;  /* wrong passwords in a row */
	int64_t pw_until; /* no verification before (the delay of the run) */
	int64_t last_alive;
};

struct relay_room {
	char name[ROOM_NAME_MAX];
	uint32_t id;
	uint64_t seq;
	uint32_t *members; /* user indices, ascending */
	size_t nmem, capmem;
	struct relay_msg **hist; /* ring of cfg.history_max, oldest at hhead */
	uint32_t hhead, hn;
};

struct relay_kv {
	uint64_t key; /* KV_EMPTY, KV_DEAD or the key + 1 */
	uint64_t val;
};

struct relay_msg {
	struct relay_msg *prev, *next; /* r->mhead .. r->mtail, id order */
	uint64_t id, seq, cid, stream;
	uint32_t from;	/* user index */
	uint32_t refs;	/* queue and history entries: replicated */
	uint32_t holds; /* outputs and pending replies: leader-local */
	uint16_t bodylen;
	bool confirmed; /* the backups have it: it may be delivered */
	char dest[ROOM_NAME_MAX];
	char body[]; /* bodylen bytes and a NUL */
};

/* A bad_password answer waiting for its delay (leader-local). */
struct relay_pwwait {
	uint32_t ui;
	int64_t due;
	char addr[RING_ADDR_MAX];
	uint16_t port;
	char key[AUTH_PK_TEXT];
};

/* An accepted message waiting for relay_on_replicated. */
struct relay_pending {
	struct relay_msg *m; /* held */
	uint32_t sender;
	uint32_t *rcpt; /* recipients to start delivering to */
	size_t nrcpt;
};

static const char *const err_codes[RELAY_NERR] = {
    [RELAY_OK] = "ok",
    [RELAY_EARG] = "bad_request",
    [RELAY_EBAD_NAME] = "bad_name",
    [RELAY_ENAME_TAKEN] = "name_taken",
    [RELAY_EUNKNOWN_USER] = "unknown_user",
    [RELAY_ENOT_LOGGED_IN] = "not_logged_in",
    [RELAY_EFORGED] = "forged_sender",
    [RELAY_EBAD_ROOM] = "bad_room",
    [RELAY_ENOT_IN_ROOM] = "not_in_room",
    [RELAY_ETOO_MANY_ROOMS] = "too_many_rooms",
    [RELAY_ETOO_LONG] = "too_long",
    [RELAY_EBAD_BODY] = "bad_body",
    [RELAY_EBAD_CID] = "bad_cid",
    [RELAY_ESTALE_CID] = "stale_cid",
    [RELAY_EFULL] = "full",
    [RELAY_ENOMEM] = "busy",
    [RELAY_EROLE] = "not_leader",
    [RELAY_EUNKNOWN_ID] = "unknown_id",
    [RELAY_EOLD] = "old_op",
    [RELAY_EGAP] = "op_gap",
    [RELAY_EDIVERGED] = "diverged",
    [RELAY_ESNAPSHOT] = "bad_snapshot",
    [RELAY_ERENAMED] = "renamed",
    [RELAY_EBACKLOG] = "backlog",
    [RELAY_EORDER] = "order",
    [RELAY_EPW_REQUIRED] = "password_required",
    [RELAY_EBAD_PASSWORD] = "bad_password",
    [RELAY_ESLOW_DOWN] = "slow_down",
};

static const char *const event_names[] = {
    [REV_REGISTER] = "register",
    [REV_LOGIN] = "login",
    [REV_LOGOUT] = "logout",
    [REV_EXPIRE] = "expire",
    [REV_JOIN] = "join",
    [REV_PART] = "part",
    [REV_ROOM_NEW] = "room_new",
    [REV_ROOM_GONE] = "room_gone",
    [REV_ACCEPT] = "accept",
    [REV_DUPLICATE] = "duplicate",
    [REV_CONFIRM] = "confirm",
    [REV_ACKED] = "acked",
    [REV_OVERFLOW] = "overflow",
    [REV_REJECT] = "reject",
    [REV_ROLE] = "role",
    [REV_RESTORE] = "restore",
};

static const char *const op_names[ROP_COUNT] = {
    [ROP_NONE] = "none",
    [ROP_NEWU] = "newu",
    [ROP_LOGIN] = "login",
    [ROP_LOGOUT] = "logout",
    [ROP_JOIN] = "join",
    [ROP_PART] = "part",
    [ROP_MSG] = "msg",
    [ROP_ACK] = "ack",
    [ROP_NEXT_ID] = "nextid",
};

/* ---- memory ---------------------------------------------------------- */

static uint64_t
fnv64(const char *s, size_t n)
{
	return store_fnv64(s, n);
}

static void *
mem_calloc(struct relay *r, size_t n, size_t size)
{
	void *p;

	if (n == 0 || size == 0)
		return NULL;
	if ((p = calloc(n, size)) != NULL)
		r->mem += n * size + MEM_OVERHEAD;
	return p;
}

/* Grows p from oldn to newn elements; the new ones are zeroed. */
static void *
mem_grow(struct relay *r, void *p, size_t oldn, size_t newn, size_t size)
{
	char *np;

	if (newn <= oldn)
		return p;
	if ((np = reallocarray(p, newn, size)) == NULL)
		return NULL;
	memset(np + oldn * size, 0, (newn - oldn) * size);
	if (p != NULL)
		r->mem -= oldn * size + MEM_OVERHEAD;
	r->mem += newn * size + MEM_OVERHEAD;
	return np;
}

static void
mem_free(struct relay *r, void *p, size_t bytes)
{
	if (p == NULL)
		return;
	free(p);
	r->mem -= bytes + MEM_OVERHEAD;
}

/* Makes room for want elements in an array of *cap (doubling). */
static int
mem_reserve(struct relay *r, void **p, size_t *cap, size_t want, size_t size,
    size_t min)
{
	size_t ncap;
	void *np;

	if (want <= *cap)
		return 0;
	ncap = *cap < min ? min : *cap;
	while (ncap < want) {
		if (ncap > SIZE_MAX / 2)
			return -1;
		ncap *= 2;
	}
	if ((np = mem_grow(r, *p, *cap, ncap, size)) == NULL)
		return -1;
	*p = np;
	*cap = ncap;
	return 0;
}

/* ---- validation ------------------------------------------------------ */

/* Length of the UTF-8 sequence at s (n bytes left), 0 when malformed. */
static size_t
utf8_seq(const unsigned char *s, size_t n, uint32_t *cp)
{
	uint32_t c;
	size_t len, i;

	if (s[0] < 0x80) {
		*cp = s[0];
		return 1;
	}
	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		len = 2;
		c = s[0] & 0x1f;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		len = 3;
		c = s[0] & 0x0f;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		len = 4;
		c = s[0] & 0x07;
	} else
		return 0;
	if (len > n)
		return 0;
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		c = (c << 6) | (s[i] & 0x3f);
	}
	if ((len == 3 && c < 0x800) || (len == 4 && c < 0x10000) ||
	    c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		return 0;
	*cp = c;
	return len;
}

/* Bytes wire.c writes for a byte of a field: escaped ones count 3. */
static size_t
enc_byte(unsigned char c)
{
	return c == '%' || c == '@' || c == '=' || c < 0x20 || c == 0x7f ? 3
									 : 1;
}

static size_t
enc_len(const char *s, size_t n)
{
	size_t i, len = 0;

	for (i = 0; i < n; i++)
		len += enc_byte((unsigned char)s[i]);
	return len;
}

/*
 * A name: 1 .. max-1 bytes of printable UTF-8 (no C0 or C1 control, no
 * DEL), without space, '@', '#' or '*'.  The first byte is skipped when
 * skip is set (a room's '#').
 */
static bool
token_ok(const char *s, size_t max, size_t skip)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n, i, k;
	uint32_t cp;

	if (s == NULL)
		return false;
	n = strnlen(s, max);
	if (n <= skip || n >= max)
		return false;
	for (i = skip; i < n; i += k) {
		if ((k = utf8_seq(p + i, n - i, &cp)) == 0)
			return false;
		if (cp <= 0x20 || cp == 0x7f || (cp >= 0x80 && cp <= 0x9f) ||
		    cp == '@' || cp == '#' || cp == '*')
			return false;
	}
	return true;
}

static bool
name_ok(const char *s)
{
	return token_ok(s, USER_NAME_MAX, 0);
}

static bool
room_ok(const char *s)
{
	return s != NULL && s[0] == '#' && token_ok(s, ROOM_NAME_MAX, 1);
}

/* Dotted-quad IPv4, four decimal octets without leading zeros. */
static bool
addr_ok(const char *s)
{
	size_t n, i = 0;
	int part, digits, val;

	if (s == NULL || (n = strnlen(s, RING_ADDR_MAX)) >= RING_ADDR_MAX)
		return false;
	for (part = 0; part < 4; part++) {
		if (part > 0 && s[i++] != '.')
			return false;
		for (digits = 0, val = 0; s[i] >= '0' && s[i] <= '9'; i++) {
			if (digits > 0 && val == 0)
				return false;
			val = val * 10 + (s[i] - '0');
			if (++digits > 3 || val > 255)
				return false;
		}
		if (digits == 0)
			return false;
	}
	return i == n;
}

/* A session key: "" (none) or a public key as auth_pk_to_text writes it. */
static bool
key_ok(const char *s)
{
	uint8_t pk[AUTH_PK_BYTES];
	size_t n;

	if (s == NULL || (n = strnlen(s, AUTH_PK_TEXT)) == AUTH_PK_TEXT)
		return false;
	return n == 0 ||
	    (n == AUTH_PK_TEXT - 1 && auth_pk_from_text(s, pk) == AUTH_OK);
}

/*
 * A password hash: "" (none) or an Argon2id string within the cost
 * bounds (auth_pw_hash_check).  Such a string has no space, '%' or
 * control byte, so it goes raw into op text and snapshots.
 */
static bool
pwhash_ok(const char *s)
{
	size_t n, i;

	if (s == NULL || (n = strnlen(s, AUTH_PWHASH_SIZE)) == AUTH_PWHASH_SIZE)
		return false;
	if (n == 0)
		return true;
	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] <= ' ' || s[i] == '%' ||
		    (unsigned char)s[i] >= 0x7f)
			return false;
	return auth_pw_hash_check(s) == AUTH_OK;
}

/*
 * A message body: 1 .. RELAY_BODY_MAX encoded bytes of UTF-8 without
 * NUL or other control characters but tab and newline.
 */
static enum relay_err
body_check(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i, k;
	uint32_t cp;

	if (s == NULL || n == 0)
		return RELAY_EBAD_BODY;
	if (n > RELAY_BODY_MAX)
		return RELAY_ETOO_LONG;
	for (i = 0; i < n; i += k) {
		if ((k = utf8_seq(p + i, n - i, &cp)) == 0)
			return RELAY_EBAD_BODY;
		if ((cp < 0x20 && cp != '\t' && cp != '\n') || cp == 0x7f ||
		    (cp >= 0x80 && cp <= 0x9f))
			return RELAY_EBAD_BODY;
	}
	if (enc_len(s, n) > RELAY_BODY_MAX)
		return RELAY_ETOO_LONG;
	return RELAY_OK;
}

/* ---- outputs --------------------------------------------------------- */

static int
out_reserve(struct relay *r, size_t n)
{
	return mem_reserve(
	    r, (void **)&r->out, &r->capout, r->nout + n, sizeof(*r->out), 16);
}

/* A zeroed output at the end of the outbox, NULL when out of memory. */
static struct relay_out *
out_push(struct relay *r, enum relay_out_type type)
{
	struct relay_out *o;

	if (out_reserve(r, 1) == -1) {
		r->out_lost++;
		return NULL;
	}
	o = &r->out[r->nout++];
	memset(o, 0, sizeof(*o));
	o->type = type;
	return o;
}

static void
event(struct relay *r, enum relay_event ev, const char *user, const char *dest,
    uint64_t id, enum relay_err err, const char *detail)
{
	struct relay_out *o;

	if ((o = out_push(r, RO_EVENT)) == NULL)
		return;
	o->ev = ev;
	if (user != NULL)
		strlcpy(o->user, user, sizeof(o->user));
	if (dest != NULL)
		strlcpy(o->dest, dest, sizeof(o->dest));
	o->id = id;
	o->err = err;
	o->detail = detail;
}

/* ---- users ----------------------------------------------------------- */

static uint32_t
hash_name(const char *s)
{
	uint32_t h = 2166136261u;

	for (; *s != '\0'; s++) {
		h ^= (unsigned char)*s;
		h *= 16777619u;
	}
	return h;
}

/* The index of user name, -1 when unknown. */
static int64_t
user_find(const struct relay *r, const char *name)
{
	size_t mask, i;
	uint32_t v;

	if (r->uhcap == 0 || name == NULL ||
	    strnlen(name, USER_NAME_MAX) >= USER_NAME_MAX)
		return -1;
	mask = r->uhcap - 1;
	for (i = hash_name(name) & mask; (v = r->uhash[i]) != 0;
	     i = (i + 1) & mask)
		if (strcmp(r->users[v - 1].name, name) == 0)
			return v - 1;
	return -1;
}

static void
uhash_put(uint32_t *tab, size_t cap, const char *name, uint32_t idx)
{
	size_t mask = cap - 1, i;

	for (i = hash_name(name) & mask; tab[i] != 0; i = (i + 1) & mask)
		;
	tab[i] = idx + 1;
}

/* Room for one more user in every per-user array. */
static int
users_reserve(struct relay *r)
{
	uint32_t *tab;
	size_t cap, i, want = r->nusers + 1;

	if (mem_reserve(r, (void **)&r->users, &r->capusers, want,
		sizeof(*r->users), 16) == -1 ||
	    mem_reserve(r, (void **)&r->online, &r->caponline, want,
		sizeof(*r->online), 16) == -1)
		return -1;
	if (want * 2 <= r->uhcap)
		return 0;
	cap = r->uhcap == 0 ? 64 : r->uhcap * 2;
	if ((tab = mem_calloc(r, cap, sizeof(*tab))) == NULL)
		return -1;
	for (i = 0; i < r->nusers; i++)
		uhash_put(tab, cap, r->users[i].name, (uint32_t)i);
	mem_free(r, r->uhash, r->uhcap * sizeof(*r->uhash));
	r->uhash = tab;
	r->uhcap = cap;
	return 0;
}

static void
online_add(struct relay *r, uint32_t ui)
{
	struct relay_user *u = &r->users[ui];

	u->online = true;
	u->onpos = (uint32_t)r->nonline;
	r->online[r->nonline++] = ui;
}

static void
online_remove(struct relay *r, uint32_t ui)
{
	struct relay_user *u = &r->users[ui];
	uint32_t last;

	u->online = false;
	last = r->online[--r->nonline];
	r->online[u->onpos] = last;
	r->users[last].onpos = u->onpos;
	u->onpos = 0;
}

static void
slots_free(struct relay *r, struct relay_user *u)
{
	mem_free(r, u->slots, r->cfg.inflight_max * sizeof(*u->slots));
	u->slots = NULL;
	u->nslots = 0;
}

/* ---- deadlines ----------------------------------------------------- */

static int64_t
alive_period(const struct relay *r)
{
	return r->cfg.alive_ms * r->cfg.alive_misses;
}

static void
deadline_at(struct relay *r, int64_t t)
{
	if (t < r->deadline)
		r->deadline = t;
}

/* ---- configuration and life cycle ------------------------------------ */

void
relay_cfg_defaults(struct relay_cfg *c)
{
	memset(c, 0, sizeof(*c));
	c->alive_ms = 2000;
	c->alive_misses = 3;
	c->retry_min_ms = 50;
	c->retry_max_ms = 1000;
	c->queue_max = 128;
	c->history_max = 100;
	c->inflight_max = 8;
	c->users_max = 100000;
	c->rooms_max = 1024;
	c->msg_bytes_max = (size_t)16 << 20;
}

static bool
cfg_ok(const struct relay_cfg *c)
{
	return c->alive_ms >= 1 && c->alive_ms <= 3600000 &&
	    c->alive_misses >= 1 && c->alive_misses <= 1000 &&
	    c->retry_min_ms >= 1 && c->retry_max_ms >= c->retry_min_ms &&
	    c->retry_max_ms <= 3600000 && c->queue_max >= 1 &&
	    c->queue_max <= 65536 && c->history_max <= 65536 &&
	    c->inflight_max >= 1 && c->inflight_max <= 1024 &&
	    c->users_max >= 1 && c->users_max <= IDX_MAX && c->rooms_max >= 1 &&
	    c->rooms_max <= IDX_MAX && c->msg_bytes_max >= 65536;
}

enum relay_err
relay_init(struct relay *r, const struct relay_cfg *cfg)
{
	if (r == NULL || cfg == NULL || !cfg_ok(cfg))
		return RELAY_EARG;
	memset(r, 0, sizeof(*r));
	r->cfg = *cfg;
	r->next_id = 1;
	r->next_room_id = 1;
	r->deadline = INT64_MAX;
	return RELAY_OK;
}

/* ---- messages -------------------------------------------------------- */

static size_t
msg_size(const struct relay_msg *m)
{
	return sizeof(*m) + m->bodylen + 1;
}

static void
msg_destroy(struct relay *r, struct relay_msg *m)
{
	if (m->prev != NULL)
		m->prev->next = m->next;
	else
		r->mhead = m->next;
	if (m->next != NULL)
		m->next->prev = m->prev;
	else
		r->mtail = m->prev;
	r->nmsgs--;
	r->msg_bytes -= msg_size(m);
	mem_free(r, m, msg_size(m));
}

static void
msg_unref(struct relay *r, struct relay_msg *m)
{
	if (--m->refs == 0 && m->holds == 0)
		msg_destroy(r, m);
}

static void
msg_unhold(struct relay *r, struct relay_msg *m)
{
	if (--m->holds == 0 && m->refs == 0)
		msg_destroy(r, m);
}

/* ---- teardown -------------------------------------------------------- */

static void
room_destroy(struct relay *r, struct relay_room *rm)
{
	uint32_t i;

	if (rm->hist != NULL) {
		for (i = 0; i < rm->hn; i++)
			msg_unref(
			    r, rm->hist[(rm->hhead + i) % r->cfg.history_max]);
		mem_free(r, rm->hist, r->cfg.history_max * sizeof(*rm->hist));
	}
	mem_free(r, rm->members, rm->capmem * sizeof(*rm->members));
	mem_free(r, rm, sizeof(*rm));
}

static void
pending_release(struct relay *r, struct relay_pending *p)
{
	mem_free(r, p->rcpt, p->nrcpt * sizeof(*p->rcpt));
	msg_unhold(r, p->m);
	memset(p, 0, sizeof(*p));
}

void
relay_drain(struct relay *r)
{
	struct relay_out *o;
	size_t i;

	if (r == NULL)
		return;
	for (i = 0; i < r->nout; i++) {
		o = &r->out[i];
		if (o->hold != NULL)
			msg_unhold(r, o->hold);
		if (o->owned != NULL)
			mem_free(r, o->owned, strlen(o->owned) + 1);
		o->hold = NULL;
		o->owned = NULL;
	}
	r->nout = 0;
	if (r->capout > OUT_KEEP) {
		mem_free(r, r->out, r->capout * sizeof(*r->out));
		r->out = NULL;
		r->capout = 0;
	}
}

/* Frees the whole state but the configuration and the counters. */
static void
state_free(struct relay *r)
{
	struct relay_user *u;
	struct relay_msg *m;
	size_t i;

	relay_drain(r);
	for (i = 0; i < r->npend; i++)
		pending_release(r, &r->pend[i]);
	r->npend = 0;
	for (i = 0; i < r->nrooms; i++)
		room_destroy(r, r->rooms[i]);
	for (i = 0; i < r->nusers; i++) {
		u = &r->users[i];
		while (u->nq > 0)
			msg_unref(r, u->q[--u->nq]);
		mem_free(r, u->q, u->capq * sizeof(*u->q));
		mem_free(r, u->win, RELAY_CID_WINDOW * sizeof(*u->win));
		if (u->pw != NULL)
			mem_free(r, u->pw, strlen(u->pw) + 1);
		slots_free(r, u);
	}
	/* Only held messages of a broken invariant would be left. */
	while ((m = r->mhead) != NULL)
		msg_destroy(r, m);
	mem_free(r, r->rooms, r->caprooms * sizeof(*r->rooms));
	mem_free(r, r->users, r->capusers * sizeof(*r->users));
	mem_free(r, r->uhash, r->uhcap * sizeof(*r->uhash));
	mem_free(r, r->online, r->caponline * sizeof(*r->online));
	mem_free(r, r->kv, r->kvcap * sizeof(*r->kv));
	mem_free(r, r->pend, r->cappend * sizeof(*r->pend));
	mem_free(r, r->pww, r->cappww * sizeof(*r->pww));
	mem_free(r, r->scratch, r->capscratch * sizeof(*r->scratch));
	mem_free(r, r->out, r->capout * sizeof(*r->out));
	r->rooms = NULL;
	r->users = NULL;
	r->uhash = NULL;
	r->online = NULL;
	r->kv = NULL;
	r->pend = NULL;
	r->pww = NULL;
	r->scratch = NULL;
	r->out = NULL;
	r->nrooms = r->caprooms = r->nusers = r->capusers = r->uhcap = 0;
	r->nonline = r->caponline = r->nkv = r->nkvdead = r->kvcap = 0;
	r->cappend = r->capscratch = r->nout = r->capout = 0;
	r->npww = r->cappww = 0;
	r->version = 0;
	r->hash = 0;
	r->next_id = 1;
	r->bcast_seq = 0;
	r->next_room_id = 1;
	r->deadline = INT64_MAX;
}

void
relay_free(struct relay *r)
{
	if (r == NULL)
		return;
	state_free(r);
	memset(r, 0, sizeof(*r));
}

/* ---- ops: users and sessions ----------------------------------------- */

/* A counted copy of a password hash; NULL for "" or out of memory. */
static char *
pw_dup(struct relay *r, const char *hash)
{
	size_t n = strlen(hash);
	char *p;

	if (n == 0 || (p = mem_calloc(r, 1, n + 1)) == NULL)
		return NULL;
	memcpy(p, hash, n + 1);
	return p;
}

static enum relay_err
op_newu(struct relay *r, const struct relay_op *op)
{
	struct relay_user *u;
	char *pw = NULL;

	if (!name_ok(op->user) || !addr_ok(op->addr) || op->port == 0 ||
	    !key_ok(op->key) || !pwhash_ok(op->pwhash) ||
	    user_find(r, op->user) != -1 || r->nusers >= IDX_MAX)
		return RELAY_EDIVERGED;
	if (op->pwhash[0] != '\0' && (pw = pw_dup(r, op->pwhash)) == NULL)
		return RELAY_ENOMEM;
	if (users_reserve(r) == -1) {
		if (pw != NULL)
			mem_free(r, pw, strlen(pw) + 1);
		return RELAY_ENOMEM;
	}
	u = &r->users[r->nusers];
	memset(u, 0, sizeof(*u));
	strlcpy(u->name, op->user, sizeof(u->name));
	strlcpy(u->addr, op->addr, sizeof(u->addr));
	u->port = op->port;
	u->reg = op->id;
	strlcpy(u->key, op->key, sizeof(u->key));
	u->pw = pw;
	uhash_put(r->uhash, r->uhcap, u->name, (uint32_t)r->nusers);
	r->nusers++;
	return RELAY_OK;
}

static enum relay_err
op_login(struct relay *r, const struct relay_op *op)
{
	struct relay_user *u;
	int64_t ui;

	if ((ui = user_find(r, op->user)) == -1 || !addr_ok(op->addr) ||
	    op->port == 0 || !key_ok(op->key))
		return RELAY_EDIVERGED;
	u = &r->users[ui];
	strlcpy(u->addr, op->addr, sizeof(u->addr));
	u->port = op->port;
	strlcpy(u->key, op->key, sizeof(u->key));
	if (!u->online)
		online_add(r, (uint32_t)ui);
	/* A new session: whatever was in flight is sent again. */
	slots_free(r, u);
	return RELAY_OK;
}

static enum relay_err
op_logout(struct relay *r, const struct relay_op *op)
{
	int64_t ui;

	if ((ui = user_find(r, op->user)) == -1 || !r->users[ui].online)
		return RELAY_EDIVERGED;
	online_remove(r, (uint32_t)ui);
	slots_free(r, &r->users[ui]);
	return RELAY_OK;
}

/* ---- key/value table: direct streams' seqs, ex-members' cursors ------ */

static uint64_t
kv_hash(uint64_t k)
{
	k ^= k >> 33;
	k *= UINT64_C(0xff51afd7ed558ccd);
	k ^= k >> 33;
	return k;
}

static struct relay_kv *
kv_find(const struct relay *r, uint64_t key)
{
	size_t mask, i;
	uint64_t k = key + 1;

	if (r->kvcap == 0)
		return NULL;
	mask = r->kvcap - 1;
	for (i = kv_hash(k) & mask; r->kv[i].key != KV_EMPTY;
	     i = (i + 1) & mask)
		if (r->kv[i].key == k)
			return &r->kv[i];
	return NULL;
}

/* Room for n more keys; a rehash also drops the dead ones. */
static int
kv_reserve(struct relay *r, size_t n)
{
	struct relay_kv *tab;
	size_t cap, i, j, mask;

	if ((r->nkv + r->nkvdead + n) * 4 <= r->kvcap * 3)
		return 0;
	for (cap = 64; cap < (r->nkv + n) * 2; cap *= 2)
		;
	if ((tab = mem_calloc(r, cap, sizeof(*tab))) == NULL)
		return -1;
	mask = cap - 1;
	for (i = 0; i < r->kvcap; i++) {
		if (r->kv[i].key == KV_EMPTY || r->kv[i].key == KV_DEAD)
			continue;
		for (j = kv_hash(r->kv[i].key) & mask; tab[j].key != KV_EMPTY;
		     j = (j + 1) & mask)
			;
		tab[j] = r->kv[i];
	}
	mem_free(r, r->kv, r->kvcap * sizeof(*r->kv));
	r->kv = tab;
	r->kvcap = cap;
	r->nkvdead = 0;
	return 0;
}

/* Sets key to val; kv_reserve made room. */
static void
kv_put(struct relay *r, uint64_t key, uint64_t val)
{
	struct relay_kv *e;
	size_t mask, i;

	if ((e = kv_find(r, key)) != NULL) {
		e->val = val;
		return;
	}
	mask = r->kvcap - 1;
	for (i = kv_hash(key + 1) & mask;
	     r->kv[i].key != KV_EMPTY && r->kv[i].key != KV_DEAD;
	     i = (i + 1) & mask)
		;
	if (r->kv[i].key == KV_DEAD)
		r->nkvdead--;
	r->kv[i].key = key + 1;
	r->kv[i].val = val;
	r->nkv++;
}

static void
kv_del(struct relay *r, uint64_t key)
{
	struct relay_kv *e;

	if ((e = kv_find(r, key)) == NULL)
		return;
	e->key = KV_DEAD;
	r->nkv--;
	r->nkvdead++;
}

/* ---- streams and queues ---------------------------------------------- */

static uint64_t
direct_key(uint32_t a, uint32_t b)
{
	return a < b ? (uint64_t)a << 32 | b : (uint64_t)b << 32 | a;
}

static uint64_t
cursor_key(uint32_t room_id, uint32_t ui)
{
	return KV_CURSOR | (uint64_t)room_id << 32 | ui;
}

static struct relay_room *
room_find(const struct relay *r, const char *name, size_t *idx)
{
	size_t i;

	for (i = 0; i < r->nrooms; i++)
		if (strcmp(r->rooms[i]->name, name) == 0) {
			if (idx != NULL)
				*idx = i;
			return r->rooms[i];
		}
	return NULL;
}

/* Where ui is (or would go) in the room's ascending member list. */
static size_t
room_pos(const struct relay_room *rm, uint32_t ui)
{
	size_t lo = 0, hi = rm->nmem, mid;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (rm->members[mid] < ui)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static bool
room_has(const struct relay_room *rm, uint32_t ui)
{
	size_t i = room_pos(rm, ui);

	return i < rm->nmem && rm->members[i] == ui;
}

/* Where a message goes: its stream, its seq there, its recipients. */
struct target {
	uint64_t stream, seq;
	struct relay_room *room; /* a room's message */
	int64_t rcpt;		 /* a direct message's recipient, else -1 */
	bool bcast;
};

static enum relay_err
target_of(
    const struct relay *r, uint32_t sender, const char *to, struct target *t)
{
	struct relay_kv *e;
	int64_t ui;

	memset(t, 0, sizeof(*t));
	t->rcpt = -1;
	if (to == NULL)
		return RELAY_EARG;
	if (strcmp(to, "*") == 0) {
		t->bcast = true;
		t->stream = STREAM_BCAST;
		t->seq = r->bcast_seq + 1;
		return RELAY_OK;
	}
	if (to[0] == '#') {
		if (!room_ok(to))
			return RELAY_EBAD_ROOM;
		if ((t->room = room_find(r, to, NULL)) == NULL ||
		    !room_has(t->room, sender))
			return RELAY_ENOT_IN_ROOM;
		t->stream = STREAM_ROOM | t->room->id;
		t->seq = t->room->seq + 1;
		return RELAY_OK;
	}
	if ((ui = user_find(r, to)) == -1)
		return RELAY_EUNKNOWN_USER;
	t->rcpt = ui;
	t->stream = direct_key(sender, (uint32_t)ui);
	e = kv_find(r, t->stream);
	t->seq = (e != NULL ? e->val : 0) + 1;
	return RELAY_OK;
}

/*
 * The recipients into r->scratch: a room's members and everyone online
 * but the sender, or a direct message's recipient (the sender too).
 */
static int
rcpt_collect(
    struct relay *r, uint32_t sender, const struct target *t, size_t *np)
{
	size_t i, n = 0, want;

	want = t->rcpt != -1 ? 1 : t->room != NULL ? t->room->nmem : r->nonline;
	if (want > 0 &&
	    mem_reserve(r, (void **)&r->scratch, &r->capscratch, want,
		sizeof(*r->scratch), 16) == -1)
		return -1;
	if (t->rcpt != -1)
		r->scratch[n++] = (uint32_t)t->rcpt;
	else if (t->room != NULL) {
		for (i = 0; i < t->room->nmem; i++)
			if (t->room->members[i] != sender)
				r->scratch[n++] = t->room->members[i];
	} else {
		for (i = 0; i < r->nonline; i++)
			if (r->online[i] != sender)
				r->scratch[n++] = r->online[i];
	}
	*np = n;
	return 0;
}

/* Room in u's queue for n more entries (up to the bound). */
static int
queue_reserve(struct relay *r, struct relay_user *u, size_t n)
{
	size_t cap = u->capq, want = u->nq + n;

	if (want > r->cfg.queue_max)
		want = r->cfg.queue_max;
	if (mem_reserve(r, (void **)&u->q, &cap, want, sizeof(*u->q), 4) == -1)
		return -1;
	u->capq = (uint32_t)cap;
	return 0;
}

/* Appends m to u's queue (reserved); false when the queue is full. */
static bool
enqueue(struct relay *r, uint32_t ui, struct relay_msg *m)
{
	struct relay_user *u = &r->users[ui];

	if (u->nq >= r->cfg.queue_max) {
		r->overflows++;
		if (r->leader)
			event(r, REV_OVERFLOW, u->name, m->dest, m->id,
			    RELAY_EFULL, NULL);
		return false;
	}
	u->q[u->nq++] = m;
	m->refs++;
	return true;
}

static size_t
queue_index(const struct relay_user *u, uint64_t id)
{
	size_t i;

	for (i = 0; i < u->nq; i++)
		if (u->q[i]->id == id)
			return i;
	return SIZE_MAX;
}

enum cid_state { CID_NEW, CID_DUP, CID_STALE };

/*
 * The window remembers the accepted cids in (cid_hi - W, cid_hi], each
 * in slot cid % W: a cid below it cannot be told from a duplicate.
 */
static enum cid_state
cid_state(const struct relay_user *u, uint64_t cid, uint64_t *id)
{
	const struct relay_cident *c;

	if (u->cid_hi >= RELAY_CID_WINDOW &&
	    cid <= u->cid_hi - RELAY_CID_WINDOW)
		return CID_STALE;
	if (u->win != NULL) {
		c = &u->win[cid % RELAY_CID_WINDOW];
		if (c->cid == cid) {
			*id = c->id;
			return CID_DUP;
		}
	}
	return CID_NEW;
}

/* ---- delivery (leader) ----------------------------------------------- */

static int64_t
backoff(const struct relay *r, uint32_t attempt)
{
	int64_t d = r->cfg.retry_min_ms;

	while (--attempt > 0 && d < r->cfg.retry_max_ms)
		d *= 2;
	return d < r->cfg.retry_max_ms ? d : r->cfg.retry_max_ms;
}

static uint32_t
slot_find(const struct relay_user *u, const struct relay_msg *m)
{
	uint32_t i;

	for (i = 0; i < u->nslots; i++)
		if (u->slots[i].m == m)
			return i;
	return UINT32_MAX;
}

static void
deliver(struct relay *r, uint32_t ui, const struct relay_slot *sl)
{
	const struct relay_user *u = &r->users[ui];
	struct relay_msg *m = sl->m;
	struct relay_out *o;

	if ((o = out_push(r, RO_DELIVER)) == NULL)
		return; /* the resend timer covers it */
	strlcpy(o->user, u->name, sizeof(o->user));
	strlcpy(o->addr, u->addr, sizeof(o->addr));
	o->port = u->port;
	strlcpy(o->from, r->users[m->from].name, sizeof(o->from));
	strlcpy(o->dest, m->dest, sizeof(o->dest));
	o->id = m->id;
	o->seq = m->seq;
	o->body = m->body;
	o->bodylen = m->bodylen;
	o->attempt = sl->attempt;
	o->hold = m;
	m->holds++;
}

/*
 * Sends what u may be sent now: per stream only the first message
 * waiting (the next once it is acknowledged), at most inflight_max in
 * all, and nothing the backups do not have yet.
 */
static void
pump(struct relay *r, uint32_t ui, int64_t now)
{
	struct relay_user *u = &r->users[ui];
	uint64_t seen[PUMP_STREAMS];
	struct relay_slot *sl;
	struct relay_msg *m;
	size_t nseen = 0, i, j;

	if (!r->leader || !u->online)
		return;
	for (i = 0; i < u->nq && u->nslots < r->cfg.inflight_max; i++) {
		m = u->q[i];
		for (j = 0; j < nseen && seen[j] != m->stream; j++)
			;
		if (j < nseen)
			continue; /* behind one of its stream */
		if (nseen == PUMP_STREAMS)
			break;
		seen[nseen++] = m->stream;
		if (!m->confirmed || slot_find(u, m) != UINT32_MAX)
			continue;
		if (u->slots == NULL &&
		    (u->slots = mem_calloc(
			 r, r->cfg.inflight_max, sizeof(*u->slots))) == NULL)
			return; /* relay_tick tries again */
		sl = &u->slots[u->nslots++];
		sl->m = m;
		sl->attempt = 1;
		sl->due = now + backoff(r, 1);
		deliver(r, ui, sl);
		deadline_at(r, sl->due);
	}
}

/* ---- ops: messages --------------------------------------------------- */

static enum relay_err
op_msg(struct relay *r, const struct relay_op *op, struct relay_msg **made)
{
	struct relay_pending *p;
	struct relay_user *s, *u;
	struct relay_msg *m;
	struct target t;
	uint32_t *rcpt = NULL, ui;
	size_t n, i, nlive = 0;
	uint64_t dupid;
	int64_t si;

	if ((si = user_find(r, op->user)) == -1 || op->cid == 0 ||
	    op->id < r->next_id || op->id == UINT64_MAX ||
	    op->bodylen > RELAY_BODY_MAX ||
	    body_check(op->body, op->bodylen) != RELAY_OK ||
	    target_of(r, (uint32_t)si, op->dest, &t) != RELAY_OK ||
	    op->seq != t.seq ||
	    cid_state(&r->users[si], op->cid, &dupid) != CID_NEW)
		return RELAY_EDIVERGED;
	/* Reserve everything first: from here on nothing can fail. */
	if (rcpt_collect(r, (uint32_t)si, &t, &n) == -1)
		return RELAY_ENOMEM;
	for (i = 0; i < n; i++) {
		u = &r->users[r->scratch[i]];
		if (u->nq < r->cfg.queue_max && queue_reserve(r, u, 1) == -1)
			return RELAY_ENOMEM;
		if (u->nq < r->cfg.queue_max && u->online)
			nlive++;
	}
	s = &r->users[si];
	if (s->win == NULL &&
	    (s->win = mem_calloc(r, RELAY_CID_WINDOW, sizeof(*s->win))) == NULL)
		return RELAY_ENOMEM;
	if (t.rcpt != -1 && kv_find(r, t.stream) == NULL &&
	    kv_reserve(r, 1) == -1)
		return RELAY_ENOMEM;
	if (t.room != NULL && r->cfg.history_max > 0 && t.room->hist == NULL &&
	    (t.room->hist = mem_calloc(
		 r, r->cfg.history_max, sizeof(*t.room->hist))) == NULL)
		return RELAY_ENOMEM;
	if (made != NULL &&
	    (mem_reserve(r, (void **)&r->pend, &r->cappend, r->npend + 1,
		 sizeof(*r->pend), 16) == -1 ||
		(nlive > 0 &&
		    (rcpt = mem_calloc(r, nlive, sizeof(*rcpt))) == NULL)))
		return RELAY_ENOMEM;
	if ((m = mem_calloc(r, 1, sizeof(*m) + op->bodylen + 1)) == NULL) {
		mem_free(r, rcpt, nlive * sizeof(*rcpt));
		return RELAY_ENOMEM;
	}

	m->id = op->id;
	m->seq = op->seq;
	m->cid = op->cid;
	m->stream = t.stream;
	m->from = (uint32_t)si;
	m->bodylen = (uint16_t)op->bodylen;
	memcpy(m->body, op->body, op->bodylen);
	strlcpy(m->dest, op->dest, sizeof(m->dest));
	m->prev = r->mtail;
	if (r->mtail != NULL)
		r->mtail->next = m;
	else
		r->mhead = m;
	r->mtail = m;
	r->nmsgs++;
	r->msg_bytes += msg_size(m);
	r->next_id = op->id + 1;

	s->win[op->cid % RELAY_CID_WINDOW].cid = op->cid;
	s->win[op->cid % RELAY_CID_WINDOW].id = op->id;
	if (op->cid > s->cid_hi)
		s->cid_hi = op->cid;
	if (t.bcast)
		r->bcast_seq = op->seq;
	else if (t.room != NULL)
		t.room->seq = op->seq;
	else
		kv_put(r, t.stream, op->seq);

	for (i = 0, nlive = 0; i < n; i++) {
		ui = r->scratch[i];
		if (enqueue(r, ui, m) && r->users[ui].online && rcpt != NULL)
			rcpt[nlive++] = ui;
	}
	if (t.room != NULL && r->cfg.history_max > 0) {
		struct relay_room *rm = t.room;
		struct relay_msg *old;

		m->refs++;
		if (rm->hn == r->cfg.history_max) {
			old = rm->hist[rm->hhead];
			rm->hist[rm->hhead] = m;
			rm->hhead = (rm->hhead + 1) % r->cfg.history_max;
			msg_unref(r, old);
		} else
			rm->hist[(rm->hhead + rm->hn++) % r->cfg.history_max] =
			    m;
	}
	if (made != NULL) {
		p = &r->pend[r->npend++];
		memset(p, 0, sizeof(*p));
		p->m = m;
		p->sender = (uint32_t)si;
		p->rcpt = rcpt;
		p->nrcpt = nlive;
		m->holds++;
		*made = m;
	}
	if (r->leader) {
		r->accepted++;
		event(r, REV_ACCEPT, s->name, m->dest, m->id, RELAY_OK, NULL);
	}
	if (m->refs == 0 && m->holds == 0)
		msg_destroy(r, m);
	return RELAY_OK;
}

static enum relay_err
op_ack(struct relay *r, const struct relay_op *op)
{
	struct relay_user *u;
	struct relay_msg *m;
	uint32_t j;
	size_t i;
	int64_t ui;

	if ((ui = user_find(r, op->user)) == -1 ||
	    (i = queue_index(&r->users[ui], op->id)) == SIZE_MAX)
		return RELAY_EDIVERGED;
	u = &r->users[ui];
	m = u->q[i];
	memmove(&u->q[i], &u->q[i + 1], (u->nq - i - 1) * sizeof(*u->q));
	u->nq--;
	if ((j = slot_find(u, m)) != UINT32_MAX)
		u->slots[j] = u->slots[--u->nslots];
	msg_unref(r, m);
	if (u->nq == 0) {
		mem_free(r, u->q, u->capq * sizeof(*u->q));
		u->q = NULL;
		u->capq = 0;
		slots_free(r, u);
	}
	return RELAY_OK;
}

/* Ids only go up: a merge moves them past the other side's (relay_merge). */
static enum relay_err
op_next_id(struct relay *r, const struct relay_op *op)
{
	if (op->id <= r->next_id)
		return RELAY_EDIVERGED;
	r->next_id = op->id;
	return RELAY_OK;
}

/* ---- ops: rooms ------------------------------------------------------ */

/* Where history messages start that a joiner has not had yet. */
static uint64_t
room_cursor(const struct relay *r, const struct relay_room *rm, uint32_t ui)
{
	const struct relay_kv *e;

	e = kv_find(r, cursor_key(rm->id, ui));
	return e != NULL ? e->val : 0;
}

static struct relay_msg *
room_hist(const struct relay *r, const struct relay_room *rm, uint32_t i)
{
	return rm->hist[(rm->hhead + i) % r->cfg.history_max];
}

static enum relay_err
op_join(struct relay *r, const struct relay_op *op)
{
	struct relay_room *rm, *nrm = NULL;
	struct relay_user *u;
	uint64_t cur = 0;
	uint32_t i, nrep = 0;
	size_t pos;
	int64_t ui;

	if ((ui = user_find(r, op->user)) == -1 || !room_ok(op->dest) ||
	    r->users[ui].nrooms >= USER_ROOMS_MAX)
		return RELAY_EDIVERGED;
	u = &r->users[ui];
	if ((rm = room_find(r, op->dest, NULL)) != NULL) {
		if (room_has(rm, (uint32_t)ui))
			return RELAY_EDIVERGED;
		cur = room_cursor(r, rm, (uint32_t)ui);
		for (i = 0; i < rm->hn; i++)
			if (room_hist(r, rm, i)->seq > cur)
				nrep++;
		if (mem_reserve(r, (void **)&rm->members, &rm->capmem,
			rm->nmem + 1, sizeof(*rm->members), 4) == -1 ||
		    (nrep > 0 && queue_reserve(r, u, nrep) == -1))
			return RELAY_ENOMEM;
	} else {
		if (r->next_room_id > IDX_MAX)
			return RELAY_EDIVERGED;
		if (mem_reserve(r, (void **)&r->rooms, &r->caprooms,
			r->nrooms + 1, sizeof(*r->rooms), 16) == -1 ||
		    (nrm = mem_calloc(r, 1, sizeof(*nrm))) == NULL)
			return RELAY_ENOMEM;
		if ((nrm->members = mem_calloc(r, 4, sizeof(*nrm->members))) ==
		    NULL) {
			mem_free(r, nrm, sizeof(*nrm));
			return RELAY_ENOMEM;
		}
		nrm->capmem = 4;
		strlcpy(nrm->name, op->dest, sizeof(nrm->name));
		nrm->id = r->next_room_id++;
		r->rooms[r->nrooms++] = rm = nrm;
		if (r->leader)
			event(r, REV_ROOM_NEW, op->user, rm->name, 0, RELAY_OK,
			    NULL);
	}
	pos = room_pos(rm, (uint32_t)ui);
	memmove(&rm->members[pos + 1], &rm->members[pos],
	    (rm->nmem - pos) * sizeof(*rm->members));
	rm->members[pos] = (uint32_t)ui;
	rm->nmem++;
	u->nrooms++;
	kv_del(r, cursor_key(rm->id, (uint32_t)ui));
	/* The history it has not had, in order, as deliveries. */
	for (i = 0; i < rm->hn; i++)
		if (room_hist(r, rm, i)->seq > cur)
			enqueue(r, (uint32_t)ui, room_hist(r, rm, i));
	return RELAY_OK;
}

static enum relay_err
op_part(struct relay *r, const struct relay_op *op)
{
	struct relay_room *rm;
	struct relay_user *u;
	size_t pos, idx, i;
	int64_t ui;

	if ((ui = user_find(r, op->user)) == -1 || !room_ok(op->dest) ||
	    (rm = room_find(r, op->dest, &idx)) == NULL ||
	    !room_has(rm, (uint32_t)ui))
		return RELAY_EDIVERGED;
	if (rm->nmem > 1 && kv_reserve(r, 1) == -1)
		return RELAY_ENOMEM;
	u = &r->users[ui];
	pos = room_pos(rm, (uint32_t)ui);
	memmove(&rm->members[pos], &rm->members[pos + 1],
	    (rm->nmem - pos - 1) * sizeof(*rm->members));
	rm->nmem--;
	u->nrooms--;
	if (rm->nmem > 0) {
		/* Had everything up to here: a rejoin replays only what
		 * follows. */
		kv_put(r, cursor_key(rm->id, (uint32_t)ui), rm->seq);
		return RELAY_OK;
	}
	/* Empty: gone with its history and its ex-members' cursors. */
	for (i = 0; i < r->kvcap && r->nkv > 0; i++)
		if (r->kv[i].key != KV_EMPTY && r->kv[i].key != KV_DEAD &&
		    ((r->kv[i].key - 1) & KV_CURSOR) != 0 &&
		    (uint32_t)(((r->kv[i].key - 1) & ~KV_CURSOR) >> 32) ==
			rm->id) {
			r->kv[i].key = KV_DEAD;
			r->nkv--;
			r->nkvdead++;
		}
	memmove(&r->rooms[idx], &r->rooms[idx + 1],
	    (r->nrooms - idx - 1) * sizeof(*r->rooms));
	r->nrooms--;
	if (r->leader)
		event(r, REV_ROOM_GONE, op->user, rm->name, 0, RELAY_OK, NULL);
	room_destroy(r, rm);
	return RELAY_OK;
}

static uint64_t
mix64(uint64_t h, uint64_t v)
{
	h ^= v + UINT64_C(0x9e3779b97f4a7c15) + (h << 6) + (h >> 2);
	h ^= h >> 31;
	h *= UINT64_C(0xbf58476d1ce4e5b9);
	return h ^ (h >> 29);
}

static uint64_t
mix_str(uint64_t h, const char *s, size_t n)
{
	return mix64(h, fnv64(s, n) ^ n);
}

/*
 * The history digest after op: two replicas with the same digest at
 * the same version applied the same ops (not a MAC: docs/RELAY.md).
 */
static uint64_t
op_digest(uint64_t h, const struct relay_op *op)
{
	/* The fields the op's text carries (relay_op_format), no others. */
	h = mix64(h, ((uint64_t)op->type << 56) ^ op->version);
	h = mix_str(h, op->user, strlen(op->user));
	switch (op->type) {
	case ROP_NEWU:
	case ROP_LOGIN:
		if (op->type == ROP_NEWU)
			h = mix64(h, op->id);
		h = mix_str(h, op->addr, strlen(op->addr));
		h = mix64(h, op->port);
		/* Only when present: older histories keep their digest. */
		if (op->key[0] != '\0')
			h = mix_str(mix64(h, 1), op->key, strlen(op->key));
		if (op->type == ROP_NEWU && op->pwhash[0] != '\0')
			h = mix_str(
			    mix64(h, 2), op->pwhash, strlen(op->pwhash));
		return h;
	case ROP_JOIN:
	case ROP_PART:
		return mix_str(h, op->dest, strlen(op->dest));
	case ROP_MSG:
		h = mix_str(h, op->dest, strlen(op->dest));
		h = mix64(mix64(mix64(h, op->id), op->seq), op->cid);
		return mix_str(h, op->body, op->bodylen);
	case ROP_ACK:
	case ROP_NEXT_ID:
		return mix64(h, op->id);
	default:
		return h;
	}
}

/*
 * Checks op against the state, reserves what it needs, then changes the
 * state: on error nothing changed.  *made (leader) gets the message a
 * ROP_MSG created, held.
 */
static enum relay_err
op_apply(struct relay *r, const struct relay_op *op, struct relay_msg **made)
{
	enum relay_err e;

	switch (op->type) {
	case ROP_NEWU:
		e = op_newu(r, op);
		break;
	case ROP_LOGIN:
		e = op_login(r, op);
		break;
	case ROP_LOGOUT:
		e = op_logout(r, op);
		break;
	case ROP_JOIN:
		e = op_join(r, op);
		break;
	case ROP_PART:
		e = op_part(r, op);
		break;
	case ROP_MSG:
		e = op_msg(r, op, made);
		break;
	case ROP_ACK:
		e = op_ack(r, op);
		break;
	case ROP_NEXT_ID:
		e = op_next_id(r, op);
		break;
	default:
		e = RELAY_EDIVERGED;
		break;
	}
	if (e == RELAY_OK) {
		r->version = op->version;
		r->hash = op_digest(r->hash, op);
	}
	return e;
}

enum relay_err
relay_apply(struct relay *r, const struct relay_op *op)
{
	if (r == NULL || op == NULL)
		return RELAY_EARG;
	if (r->leader)
		return RELAY_EROLE;
	if (op->version <= r->version)
		return RELAY_EOLD;
	if (op->version != r->version + 1)
		return RELAY_EGAP;
	return op_apply(r, op, NULL);
}

/* ---- requests: common ------------------------------------------------ */

static struct relay_out *
reply(struct relay *r, enum wire_kind re, enum relay_err err, const char *user,
    const char *addr, uint16_t port)
{
	struct relay_out *o;

	if ((o = out_push(r, RO_REPLY)) == NULL)
		return NULL;
	o->re = re;
	o->err = err;
	if (name_ok(user))
		strlcpy(o->user, user, sizeof(o->user));
	strlcpy(o->addr, addr, sizeof(o->addr));
	o->port = port;
	return o;
}

/* The requests' kinds, for events (wire.c is not needed here). */
static const char *
kind_name(enum wire_kind k)
{
	switch (k) {
	case WK_NEWU:
		return "newu";
	case WK_LOGIN:
		return "login";
	case WK_LOGOUT:
		return "logout";
	case WK_MSG:
		return "msg";
	case WK_ACK:
		return "ack";
	case WK_JOIN:
		return "join";
	case WK_PART:
		return "part";
	case WK_ROOMS:
		return "rooms";
	case WK_WHO:
		return "who";
	case WK_USERS:
		return "users";
	case WK_ALIVE:
		return "alive";
	default:
		return "?";
	}
}

/* Answers err to a request and returns err. */
static enum relay_err
refuse(struct relay *r, enum wire_kind re, enum relay_err err, const char *user,
    const char *addr, uint16_t port)
{
	r->rejected++;
	if (re != WK_ACK) /* acks are never answered */
		reply(r, re, err, user, addr, port);
	event(r, REV_REJECT, name_ok(user) ? user : NULL, NULL, 0, err,
	    kind_name(re));
	return err;
}

/* Where a request can be answered, and whether this relay may. */
static enum relay_err
req_begin(struct relay *r, enum wire_kind re, const char *from,
    const char *addr, uint16_t port)
{
	if (r == NULL)
		return RELAY_EARG;
	if (!addr_ok(addr) || port == 0) {
		r->rejected++;
		return RELAY_EARG;
	}
	if (!r->leader)
		return refuse(r, re, RELAY_EROLE, from, addr, port);
	if (r->src_bad)
		return refuse(r, re, RELAY_EARG, from, addr, port);
	return RELAY_OK;
}

/* Is user u's session addr:port with the source key? */
static bool
same_session(const struct relay *r, const struct relay_user *u,
    const char *addr, uint16_t port)
{
	return strcmp(u->addr, addr) == 0 && u->port == port &&
	    strcmp(u->key, r->src_key) == 0;
}

/* The user logged in at addr:port as from, and that it is alive. */
static enum relay_err
req_auth(struct relay *r, int64_t now, enum wire_kind re, const char *from,
    const char *addr, uint16_t port, uint32_t *uip)
{
	struct relay_user *u;
	int64_t ui;

	if ((ui = user_find(r, from)) == -1)
		return refuse(r, re, RELAY_EUNKNOWN_USER, from, addr, port);
	u = &r->users[ui];
	if (!u->online)
		return refuse(r, re, RELAY_ENOT_LOGGED_IN, from, addr, port);
	if (!same_session(r, u, addr, port))
		return refuse(r, re, RELAY_EFORGED, from, addr, port);
	u->last_alive = now;
	*uip = (uint32_t)ui;
	return RELAY_OK;
}

/*
 * Applies an op of the leader's and queues it for the backups (the
 * RO_REPLICATE goes first, so that nothing the op emits can crowd it
 * out of the outbox).  On error nothing changed and nothing is queued.
 */
static enum relay_err
leader_apply(struct relay *r, struct relay_op *op, struct relay_msg **made)
{
	struct relay_out *o;
	enum relay_err e;
	size_t at;

	if (out_reserve(r, OUT_RESERVE) == -1)
		return RELAY_ENOMEM;
	op->version = r->version + 1;
	at = r->nout;
	o = out_push(r, RO_REPLICATE);
	o->op = *op;
	o->op.body = NULL;
	if ((e = op_apply(r, op, made)) != RELAY_OK) {
		r->nout = at;
		return e;
	}
	r->out[at].op.hash = r->hash;
	if (made != NULL && *made != NULL) {
		o = &r->out[at];
		o->op.body = (*made)->body;
		o->hold = *made;
		(*made)->holds++;
	}
	return RELAY_OK;
}

/* A registration identity: unique per leader and version, never 0. */
static uint64_t
reg_make(const struct relay *r)
{
	uint64_t g = mix64(mix64(r->origin, r->version + 1), r->nusers);

	return g != 0 ? g : 1;
}

static void
op_init(struct relay_op *op, enum relay_op_type type, const char *user)
{
	memset(op, 0, sizeof(*op));
	op->type = type;
	strlcpy(op->user, user, sizeof(op->user));
}

/* ---- requests: users and sessions ------------------------------------ */

int
relay_set_source_key(struct relay *r, const char *key)
{
	if (r == NULL)
		return -1;
	r->src_key[0] = '\0';
	r->src_bad = false;
	if (key == NULL)
		return 0;
	if (!key_ok(key)) {
		r->src_bad = true;
		return -1;
	}
	strlcpy(r->src_key, key, sizeof(r->src_key));
	return 0;
}

bool
relay_newu_registers(const struct relay *r, const char *from)
{
	return r != NULL && name_ok(from) && user_find(r, from) == -1 &&
	    r->nusers < r->cfg.users_max;
}

enum relay_err
relay_on_newu(struct relay *r, int64_t now, const char *from, const char *addr,
    uint16_t port)
{
	return relay_on_newu_pw(r, now, from, addr, port, NULL);
}

enum relay_err
relay_on_newu_pw(struct relay *r, int64_t now, const char *from,
    const char *addr, uint16_t port, const char *pwhash)
{
	struct relay_op op;
	struct relay_user *u;
	enum relay_err e;
	int64_t ui;

	(void)now;
	if ((e = req_begin(r, WK_NEWU, from, addr, port)) != RELAY_OK)
		return e;
	if (!name_ok(from))
		return refuse(r, WK_NEWU, RELAY_EBAD_NAME, from, addr, port);
	if ((ui = user_find(r, from)) != -1) {
		u = &r->users[ui];
		/* The same client resending: answer as the first time. */
		if (same_session(r, u, addr, port)) {
			reply(r, WK_NEWU, RELAY_OK, from, addr, port);
			return RELAY_OK;
		}
		return refuse(r, WK_NEWU, RELAY_ENAME_TAKEN, from, addr, port);
	}
	if (r->nusers >= r->cfg.users_max)
		return refuse(r, WK_NEWU, RELAY_EFULL, from, addr, port);
	if (pwhash == NULL)
		pwhash = "";
	if (!pwhash_ok(pwhash))
		return refuse(r, WK_NEWU, RELAY_EARG, from, addr, port);
	op_init(&op, ROP_NEWU, from);
	strlcpy(op.addr, addr, sizeof(op.addr));
	op.port = port;
	op.id = reg_make(r);
	strlcpy(op.key, r->src_key, sizeof(op.key));
	strlcpy(op.pwhash, pwhash, sizeof(op.pwhash));
	if ((e = leader_apply(r, &op, NULL)) != RELAY_OK)
		return refuse(r, WK_NEWU, e, from, addr, port);
	event(r, REV_REGISTER, from, NULL, 0, RELAY_OK, NULL);
	reply(r, WK_NEWU, RELAY_OK, from, addr, port);
	return RELAY_OK;
}

/* Logs user ui in at addr:port with the source key (checks done). */
static enum relay_err
login_do(
    struct relay *r, int64_t now, uint32_t ui, const char *addr, uint16_t port)
{
	struct relay_user *u = &r->users[ui];
	const char *from = u->name;
	struct relay_op op;
	struct relay_out *o;
	enum relay_err e;

	if (u->online && same_session(r, u, addr, port)) {
		/* Logged in already: a resend, or a restarted client. */
		slots_free(r, u);
	} else {
		/* A new address or key: the binding moves (replicated). */
		op_init(&op, ROP_LOGIN, from);
		strlcpy(op.addr, addr, sizeof(op.addr));
		op.port = port;
		strlcpy(op.key, r->src_key, sizeof(op.key));
		if ((e = leader_apply(r, &op, NULL)) != RELAY_OK)
			return refuse(r, WK_LOGIN, e, op.user, addr, port);
		u = &r->users[ui];
		from = u->name;
		event(r, REV_LOGIN, from, NULL, 0, RELAY_OK, NULL);
	}
	u->last_alive = now;
	deadline_at(r, now + alive_period(r));
	if ((o = reply(r, WK_LOGIN, RELAY_OK, from, addr, port)) != NULL) {
		o->has_cid = true;
		o->cid = u->cid_hi;
	}
	pump(r, ui, now); /* what waited while it was away */
	return RELAY_OK;
}

/* Does a login of user u from addr:port need the password checked? */
static bool
wants_pw(const struct relay *r, const struct relay_user *u, const char *addr,
    uint16_t port)
{
	return u->pw != NULL && !(u->online && same_session(r, u, addr, port));
}

bool
relay_login_wants_pw(
    const struct relay *r, const char *from, const char *addr, uint16_t port)
{
	int64_t ui;

	if (r == NULL || (ui = user_find(r, from)) == -1)
		return false;
	return wants_pw(r, &r->users[ui], addr, port);
}

enum relay_err
relay_on_login(struct relay *r, int64_t now, const char *from, const char *addr,
    uint16_t port)
{
	enum relay_err e;
	int64_t ui;

	if ((e = req_begin(r, WK_LOGIN, from, addr, port)) != RELAY_OK)
		return e;
	if ((ui = user_find(r, from)) == -1)
		return refuse(
		    r, WK_LOGIN, RELAY_EUNKNOWN_USER, from, addr, port);
	if (wants_pw(r, &r->users[ui], addr, port))
		return refuse(
		    r, WK_LOGIN, RELAY_EPW_REQUIRED, from, addr, port);
	return login_do(r, now, (uint32_t)ui, addr, port);
}

enum relay_err
relay_on_login_pw(struct relay *r, int64_t now, const char *from,
    const char *addr, uint16_t port, bool pw_ok)
{
	struct relay_pwwait *w;
	struct relay_user *u;
	enum relay_err e;
	int64_t ui;

	if ((e = req_begin(r, WK_LOGIN, from, addr, port)) != RELAY_OK)
		return e;
	if ((ui = user_find(r, from)) == -1)
		return refuse(
		    r, WK_LOGIN, RELAY_EUNKNOWN_USER, from, addr, port);
	u = &r->users[ui];
	if (pw_ok) {
		u->pw_run = 0;
		u->pw_until = 0;
		return login_do(r, now, (uint32_t)ui, addr, port);
	}
	r->pw_failures++;
	if (u->pw_run < UINT32_MAX)
		u->pw_run++;
	u->pw_until = now + auth_pw_delay_ms(u->pw_run);
	/* One answer waits per user: an earlier one goes now. */
	for (w = r->pww; w < r->pww + r->npww && w->ui != (uint32_t)ui; w++)
		;
	if (w < r->pww + r->npww) {
		refuse(
		    r, WK_LOGIN, RELAY_EBAD_PASSWORD, from, w->addr, w->port);
	} else {
		if (mem_reserve(r, (void **)&r->pww, &r->cappww, r->npww + 1,
			sizeof(*r->pww), 8) == -1)
			return refuse(r, WK_LOGIN, RELAY_EBAD_PASSWORD, from,
			    addr, port); /* unable to wait: answer now */
		w = &r->pww[r->npww++];
	}
	memset(w, 0, sizeof(*w));
	w->ui = (uint32_t)ui;
	w->due = u->pw_until;
	strlcpy(w->addr, addr, sizeof(w->addr));
	w->port = port;
	strlcpy(w->key, r->src_key, sizeof(w->key));
	deadline_at(r, w->due);
	return RELAY_EBAD_PASSWORD;
}

uint32_t
relay_pw_wait(const struct relay *r, int64_t now, const char *from,
    const char *addr, uint16_t port, bool *resend)
{
	const struct relay_user *u;
	size_t i;
	int64_t ui;

	if (resend != NULL)
		*resend = false;
	if (r == NULL || (ui = user_find(r, from)) == -1)
		return 0;
	u = &r->users[ui];
	if (u->pw_until <= now)
		return 0;
	for (i = 0; resend != NULL && addr != NULL && i < r->npww; i++)
		if (r->pww[i].ui == (uint32_t)ui &&
		    strcmp(r->pww[i].addr, addr) == 0 &&
		    r->pww[i].port == port &&
		    strcmp(r->pww[i].key, r->src_key) == 0)
			*resend = true;
	return u->pw_until - now > UINT32_MAX ? UINT32_MAX
					      : (uint32_t)(u->pw_until - now);
}

enum relay_err
relay_refuse(struct relay *r, enum wire_kind re, enum relay_err err,
    const char *from, const char *addr, uint16_t port, uint32_t retry_ms)
{
	size_t at;

	if (r == NULL || err == RELAY_OK || (int)err < 0 || err >= RELAY_NERR)
		return RELAY_EARG;
	if (!addr_ok(addr) || port == 0) {
		r->rejected++;
		return RELAY_EARG;
	}
	if (!r->leader)
		return refuse(r, re, RELAY_EROLE, from, addr, port);
	at = r->nout;
	refuse(r, re, err, from, addr, port);
	if (at < r->nout && r->out[at].type == RO_REPLY)
		r->out[at].retry_ms = retry_ms;
	return err;
}

enum relay_err
relay_on_logout(struct relay *r, int64_t now, const char *from,
    const char *addr, uint16_t port)
{
	struct relay_op op;
	enum relay_err e;
	uint32_t ui;

	if ((e = req_begin(r, WK_LOGOUT, from, addr, port)) != RELAY_OK ||
	    (e = req_auth(r, now, WK_LOGOUT, from, addr, port, &ui)) !=
		RELAY_OK)
		return e;
	op_init(&op, ROP_LOGOUT, from);
	if ((e = leader_apply(r, &op, NULL)) != RELAY_OK)
		return refuse(r, WK_LOGOUT, e, from, addr, port);
	event(r, REV_LOGOUT, from, NULL, 0, RELAY_OK, NULL);
	reply(r, WK_LOGOUT, RELAY_OK, from, addr, port);
	return RELAY_OK;
}

enum relay_err
relay_on_alive(struct relay *r, int64_t now, const char *from, const char *addr,
    uint16_t port)
{
	enum relay_err e;
	uint32_t ui;

	if ((e = req_begin(r, WK_ALIVE, from, addr, port)) != RELAY_OK ||
	    (e = req_auth(r, now, WK_ALIVE, from, addr, port, &ui)) != RELAY_OK)
		return e;
	reply(r, WK_ALIVE, RELAY_OK, from, addr, port);
	return RELAY_OK;
}

/* ---- requests: messages ---------------------------------------------- */

static enum relay_err
msg_refuse(struct relay *r, enum relay_err err, const char *from,
    const char *addr, uint16_t port, uint64_t cid)
{
	struct relay_out *o;

	r->rejected++;
	if ((o = reply(r, WK_MSG, err, from, addr, port)) != NULL && cid != 0) {
		o->has_cid = true;
		o->cid = cid;
	}
	event(r, REV_REJECT, name_ok(from) ? from : NULL, NULL, 0, err,
	    kind_name(WK_MSG));
	return err;
}

static bool
is_pending(const struct relay *r, uint32_t sender, uint64_t cid)
{
	size_t i;

	for (i = 0; i < r->npend; i++)
		if (r->pend[i].sender == sender && r->pend[i].m->cid == cid)
			return true;
	return false;
}

/* Whether an online recipient of a room or everyone has a full queue. */
static bool
backlogged(const struct relay *r, uint32_t sender, const struct target *t)
{
	const struct relay_user *u;
	size_t i, n = t->room != NULL ? t->room->nmem : r->nonline;

	for (i = 0; i < n; i++) {
		uint32_t ui =
		    t->room != NULL ? t->room->members[i] : r->online[i];

		u = &r->users[ui];
		if (ui != sender && u->online && u->nq >= r->cfg.queue_max)
			return true;
	}
	return false;
}

enum relay_err
relay_on_msg(struct relay *r, int64_t now, const char *from, const char *addr,
    uint16_t port, const char *to, const char *body, uint64_t cid)
{
	return relay_on_msg_after(r, now, from, addr, port, to, body, cid, 0);
}

enum relay_err
relay_on_msg_after(struct relay *r, int64_t now, const char *from,
    const char *addr, uint16_t port, const char *to, const char *body,
    uint64_t cid, uint64_t after)
{
	struct relay_msg *m = NULL;
	struct relay_user *s;
	struct relay_out *o;
	struct relay_op op;
	struct target t;
	enum relay_err e;
	uint64_t dupid;
	size_t bodylen;
	uint32_t si;

	if ((e = req_begin(r, WK_MSG, from, addr, port)) != RELAY_OK ||
	    (e = req_auth(r, now, WK_MSG, from, addr, port, &si)) != RELAY_OK)
		return e;
	s = &r->users[si];
	if (cid == 0 || after >= cid)
		return msg_refuse(r, RELAY_EBAD_CID, from, addr, port, cid);
	switch (cid_state(s, cid, &dupid)) {
	case CID_STALE:
		return msg_refuse(r, RELAY_ESTALE_CID, from, addr, port, cid);
	case CID_DUP:
		r->duplicates++;
		event(r, REV_DUPLICATE, from, NULL, dupid, RELAY_OK, NULL);
		/* Not confirmed yet: the answer comes with the confirmation. */
		if (is_pending(r, si, cid))
			return RELAY_OK;
		if ((o = reply(r, WK_MSG, RELAY_OK, from, addr, port)) !=
		    NULL) {
			o->has_cid = o->has_id = true;
			o->cid = cid;
			o->id = dupid;
		}
		return RELAY_OK;
	case CID_NEW:
		break;
	}
	/*
	 * Sender order: its previous message first.  Below the window it
	 * was accepted long ago (a client keeps fewer open than the window).
	 */
	if (after != 0 && cid_state(s, after, &dupid) == CID_NEW)
		return msg_refuse(r, RELAY_EORDER, from, addr, port, cid);
	/* strnlen stops one past the limit: longer is too long either way. */
	bodylen = body == NULL ? 0 : strnlen(body, RELAY_BODY_MAX + 1);
	if ((e = body_check(body, bodylen)) != RELAY_OK)
		return msg_refuse(r, e, from, addr, port, cid);
	/* "msg V FROM TO ID SEQ CID LEN BODY": numbers at most 20 digits */
	if (to != NULL &&
	    enc_len(from, strlen(from)) + enc_len(to, strlen(to)) +
		    enc_len(body, bodylen) + 3 + 8 + 5 * 20 + 4 >
		RELAY_OP_WIRE_MAX)
		return msg_refuse(r, RELAY_ETOO_LONG, from, addr, port, cid);
	if ((e = target_of(r, si, to, &t)) != RELAY_OK)
		return msg_refuse(r, e, from, addr, port, cid);
	/*
	 * An online recipient that has queue_max deliveries waiting is slow
	 * to acknowledge: the sender is told busy and resends the same cid
	 * later (backpressure), rather than the recipient losing it.  An
	 * offline one keeps queue_max; beyond, a direct message is refused
	 * as full and a room's or everyone's is not queued for it.
	 */
	if (t.rcpt != -1 && r->users[t.rcpt].nq >= r->cfg.queue_max)
		return msg_refuse(r,
		    r->users[t.rcpt].online ? RELAY_EBACKLOG : RELAY_EFULL,
		    from, addr, port, cid);
	if (t.rcpt == -1 && backlogged(r, si, &t))
		return msg_refuse(r, RELAY_EBACKLOG, from, addr, port, cid);
	/* Ids run out (a merge of a forged state could get there). */
	if (r->msg_bytes + sizeof(struct relay_msg) + bodylen + 1 >
		r->cfg.msg_bytes_max ||
	    r->next_id == UINT64_MAX)
		return msg_refuse(r, RELAY_EFULL, from, addr, port, cid);
	op_init(&op, ROP_MSG, from);
	strlcpy(op.dest, to, sizeof(op.dest));
	op.id = r->next_id;
	op.seq = t.seq;
	op.cid = cid;
	op.body = body;
	op.bodylen = bodylen;
	if ((e = leader_apply(r, &op, &m)) != RELAY_OK)
		return msg_refuse(r, e, from, addr, port, cid);
	return RELAY_OK;
}

enum relay_err
relay_on_replicated(struct relay *r, int64_t now, uint64_t id)
{
	struct relay_pending p;
	struct relay_user *s;
	struct relay_out *o;
	size_t i;

	if (r == NULL)
		return RELAY_EARG;
	if (!r->leader)
		return RELAY_EROLE;
	for (i = 0; i < r->npend && r->pend[i].m->id != id; i++)
		;
	if (i == r->npend)
		return RELAY_EUNKNOWN_ID;
	p = r->pend[i];
	memmove(&r->pend[i], &r->pend[i + 1],
	    (r->npend - i - 1) * sizeof(*r->pend));
	r->npend--;
	p.m->confirmed = true;
	s = &r->users[p.sender];
	event(r, REV_CONFIRM, s->name, p.m->dest, id, RELAY_OK, NULL);
	if ((o = reply(r, WK_MSG, RELAY_OK, s->name, s->addr, s->port)) !=
	    NULL) {
		o->has_cid = o->has_id = true;
		o->cid = p.m->cid;
		o->id = id;
	}
	for (i = 0; i < p.nrcpt; i++)
		pump(r, p.rcpt[i], now);
	pending_release(r, &p);
	return RELAY_OK;
}

enum relay_err
relay_on_ack(struct relay *r, int64_t now, const char *from, const char *addr,
    uint16_t port, uint64_t id)
{
	struct relay_op op;
	enum relay_err e;
	uint32_t ui;

	if ((e = req_begin(r, WK_ACK, from, addr, port)) != RELAY_OK ||
	    (e = req_auth(r, now, WK_ACK, from, addr, port, &ui)) != RELAY_OK)
		return e;
	if (queue_index(&r->users[ui], id) == SIZE_MAX)
		return RELAY_EUNKNOWN_ID; /* a resent ack: already done */
	op_init(&op, ROP_ACK, from);
	op.id = id;
	if ((e = leader_apply(r, &op, NULL)) != RELAY_OK)
		return e;
	r->delivered++;
	event(r, REV_ACKED, from, NULL, id, RELAY_OK, NULL);
	pump(r, ui, now);
	return RELAY_OK;
}

/* ---- requests: rooms and lists --------------------------------------- */

enum relay_err
relay_on_join(struct relay *r, int64_t now, const char *from, const char *addr,
    uint16_t port, const char *room)
{
	struct relay_room *rm;
	struct relay_op op;
	enum relay_err e;
	uint32_t ui;

	if ((e = req_begin(r, WK_JOIN, from, addr, port)) != RELAY_OK ||
	    (e = req_auth(r, now, WK_JOIN, from, addr, port, &ui)) != RELAY_OK)
		return e;
	if (!room_ok(room))
		return refuse(r, WK_JOIN, RELAY_EBAD_ROOM, from, addr, port);
	if ((rm = room_find(r, room, NULL)) != NULL && room_has(rm, ui)) {
		reply(r, WK_JOIN, RELAY_OK, from, addr, port);
		return RELAY_OK;
	}
	if (r->users[ui].nrooms >= USER_ROOMS_MAX)
		return refuse(
		    r, WK_JOIN, RELAY_ETOO_MANY_ROOMS, from, addr, port);
	if (rm == NULL && r->nrooms >= r->cfg.rooms_max)
		return refuse(r, WK_JOIN, RELAY_EFULL, from, addr, port);
	op_init(&op, ROP_JOIN, from);
	strlcpy(op.dest, room, sizeof(op.dest));
	if ((e = leader_apply(r, &op, NULL)) != RELAY_OK)
		return refuse(r, WK_JOIN, e, from, addr, port);
	event(r, REV_JOIN, from, room, 0, RELAY_OK, NULL);
	reply(r, WK_JOIN, RELAY_OK, from, addr, port);
	pump(r, ui, now); /* the history replay */
	return RELAY_OK;
}

enum relay_err
relay_on_part(struct relay *r, int64_t now, const char *from, const char *addr,
    uint16_t port, const char *room)
{
	struct relay_room *rm;
	struct relay_op op;
	enum relay_err e;
	uint32_t ui;

	if ((e = req_begin(r, WK_PART, from, addr, port)) != RELAY_OK ||
	    (e = req_auth(r, now, WK_PART, from, addr, port, &ui)) != RELAY_OK)
		return e;
	if (!room_ok(room))
		return refuse(r, WK_PART, RELAY_EBAD_ROOM, from, addr, port);
	if ((rm = room_find(r, room, NULL)) == NULL || !room_has(rm, ui))
		return refuse(r, WK_PART, RELAY_ENOT_IN_ROOM, from, addr, port);
	op_init(&op, ROP_PART, from);
	strlcpy(op.dest, room, sizeof(op.dest));
	if ((e = leader_apply(r, &op, NULL)) != RELAY_OK)
		return refuse(r, WK_PART, e, from, addr, port);
	event(r, REV_PART, from, room, 0, RELAY_OK, NULL);
	reply(r, WK_PART, RELAY_OK, from, addr, port);
	return RELAY_OK;
}

/* What a list holds: item i, "" to skip it, NULL past the end. */
struct list {
	enum wire_kind re;
	const struct relay_room *room; /* who */
};

static const char *
list_item(const struct relay *r, const struct list *l, size_t i)
{
	switch (l->re) {
	case WK_ROOMS:
		return i < r->nrooms ? r->rooms[i]->name : NULL;
	case WK_WHO:
		return i < l->room->nmem ? r->users[l->room->members[i]].name
					 : NULL;
	default:
		if (i >= r->nusers)
			return NULL;
		return r->users[i].online ? r->users[i].name : "";
	}
}

/*
 * Answers a list in chunks of at most RELAY_LIST_MAX encoded bytes of
 * space-separated names, all or none.
 */
static enum relay_err
list_reply(struct relay *r, const struct list *l, const char *from,
    const char *addr, uint16_t port)
{
	char buf[RELAY_LIST_MAX + 1];
	struct relay_out *o;
	const char *name;
	size_t i, enc, len, nlen, elen, at = r->nout;
	uint32_t parts = 1, part = 0;

	for (i = 0, enc = 0; (name = list_item(r, l, i)) != NULL; i++) {
		if (name[0] == '\0')
			continue;
		elen = enc_len(name, strlen(name));
		if (enc > 0 && enc + 1 + elen > RELAY_LIST_MAX) {
			parts++;
			enc = 0;
		}
		enc += (enc > 0 ? 1 : 0) + elen;
	}
	if (out_reserve(r, parts + 1) == -1)
		return refuse(r, l->re, RELAY_ENOMEM, from, addr, port);
	len = enc = 0;
	for (i = 0;; i++) {
		name = list_item(r, l, i);
		if (name != NULL && name[0] == '\0')
			continue;
		if (name != NULL) {
			nlen = strlen(name);
			elen = enc_len(name, nlen);
		} else
			nlen = elen = 0;
		if (name == NULL ||
		    (enc > 0 && enc + 1 + elen > RELAY_LIST_MAX)) {
			o = reply(r, l->re, RELAY_OK, from, addr, port);
			o->part = ++part;
			o->parts = parts;
			o->text = "";
			if (len > 0) {
				if ((o->owned = mem_calloc(r, 1, len + 1)) ==
				    NULL)
					goto fail;
				memcpy(o->owned, buf, len);
				o->text = o->owned;
			}
			len = enc = 0;
		}
		if (name == NULL)
			break;
		if (len > 0)
			buf[len++] = ' ';
		memcpy(buf + len, name, nlen);
		len += nlen;
		enc += (enc > 0 ? 1 : 0) + elen;
	}
	return RELAY_OK;
fail:
	while (r->nout > at) {
		o = &r->out[--r->nout];
		mem_free(
		    r, o->owned, o->owned == NULL ? 0 : strlen(o->owned) + 1);
	}
	return refuse(r, l->re, RELAY_ENOMEM, from, addr, port);
}

enum relay_err
relay_on_rooms(struct relay *r, int64_t now, const char *from, const char *addr,
    uint16_t port)
{
	struct list l = {WK_ROOMS, NULL};
	enum relay_err e;
	uint32_t ui;

	if ((e = req_begin(r, WK_ROOMS, from, addr, port)) != RELAY_OK ||
	    (e = req_auth(r, now, WK_ROOMS, from, addr, port, &ui)) != RELAY_OK)
		return e;
	return list_reply(r, &l, from, addr, port);
}

enum relay_err
relay_on_who(struct relay *r, int64_t now, const char *from, const char *addr,
    uint16_t port, const char *room)
{
	struct list l = {WK_WHO, NULL};
	enum relay_err e;
	uint32_t ui;

	if ((e = req_begin(r, WK_WHO, from, addr, port)) != RELAY_OK ||
	    (e = req_auth(r, now, WK_WHO, from, addr, port, &ui)) != RELAY_OK)
		return e;
	if (!room_ok(room))
		return refuse(r, WK_WHO, RELAY_EBAD_ROOM, from, addr, port);
	if ((l.room = room_find(r, room, NULL)) == NULL)
		return refuse(r, WK_WHO, RELAY_ENOT_IN_ROOM, from, addr, port);
	return list_reply(r, &l, from, addr, port);
}

enum relay_err
relay_on_users(struct relay *r, int64_t now, const char *from, const char *addr,
    uint16_t port)
{
	struct list l = {WK_USERS, NULL};
	enum relay_err e;
	uint32_t ui;

	if ((e = req_begin(r, WK_USERS, from, addr, port)) != RELAY_OK ||
	    (e = req_auth(r, now, WK_USERS, from, addr, port, &ui)) != RELAY_OK)
		return e;
	return list_reply(r, &l, from, addr, port);
}

size_t
relay_room_members(const struct relay *r, const char *room)
{
	const struct relay_room *rm;

	if (r == NULL || !room_ok(room) ||
	    (rm = room_find(r, room, NULL)) == NULL)
		return 0;
	return rm->nmem;
}

/* ---- time ------------------------------------------------------------ */

void
relay_tick(struct relay *r, int64_t now)
{
	struct relay_user *u;
	struct relay_slot *sl;
	struct relay_op op;
	int64_t period;
	uint32_t ui, j;
	size_t i;

	if (r == NULL || !r->leader)
		return;
	period = alive_period(r);
	r->deadline = INT64_MAX;
	/* Backwards: a logout moves the last online user into slot i. */
	for (i = r->nonline; i-- > 0;) {
		ui = r->online[i];
		u = &r->users[ui];
		if (now - u->last_alive >= period) {
			op_init(&op, ROP_LOGOUT, u->name);
			if (leader_apply(r, &op, NULL) == RELAY_OK) {
				event(r, REV_EXPIRE, op.user, NULL, 0, RELAY_OK,
				    NULL);
				continue;
			}
			/* Out of memory: try again soon. */
			deadline_at(r, now + r->cfg.retry_max_ms);
			continue;
		}
		deadline_at(r, u->last_alive + period);
		for (j = 0; j < u->nslots; j++) {
			sl = &u->slots[j];
			if (sl->due <= now) {
				sl->attempt++;
				sl->due = now + backoff(r, sl->attempt);
				r->resends++;
				deliver(r, ui, sl);
			}
			deadline_at(r, sl->due);
		}
		/* Nothing in flight but something queued: a pump failed. */
		if (u->nslots == 0 && u->nq > 0)
			pump(r, ui, now);
	}
	/* Wrong passwords are answered once their delay has run. */
	for (i = 0; i < r->npww;) {
		struct relay_pwwait w = r->pww[i];

		if (w.due > now) {
			deadline_at(r, w.due);
			i++;
			continue;
		}
		r->pww[i] = r->pww[--r->npww];
		refuse(r, WK_LOGIN, RELAY_EBAD_PASSWORD, r->users[w.ui].name,
		    w.addr, w.port);
	}
}

int64_t
relay_next_deadline(const struct relay *r)
{
	return r == NULL || !r->leader ? INT64_MAX : r->deadline;
}

/* ---- roles ----------------------------------------------------------- */

enum relay_err
relay_become_leader(struct relay *r, int64_t now)
{
	struct relay_msg *m;
	size_t i;

	if (r == NULL)
		return RELAY_EARG;
	if (r->leader)
		return RELAY_OK;
	r->leader = true;
	for (m = r->mhead; m != NULL; m = m->next)
		m->confirmed = true;
	r->deadline = INT64_MAX;
	event(r, REV_ROLE, NULL, NULL, 0, RELAY_OK, "leader");
	for (i = 0; i < r->nonline; i++) {
		r->users[r->online[i]].last_alive = now;
		slots_free(r, &r->users[r->online[i]]);
		pump(r, r->online[i], now);
	}
	if (r->nonline > 0)
		deadline_at(r, now + alive_period(r));
	return RELAY_OK;
}

enum relay_err
relay_become_backup(struct relay *r)
{
	size_t i;

	if (r == NULL)
		return RELAY_EARG;
	if (!r->leader)
		return RELAY_OK;
	r->leader = false;
	for (i = 0; i < r->npend; i++)
		pending_release(r, &r->pend[i]);
	r->npend = 0;
	for (i = 0; i < r->nusers; i++) {
		slots_free(r, &r->users[i]);
		r->users[i].pw_run = 0;
		r->users[i].pw_until = 0;
	}
	r->npww = 0; /* unanswered: the client asks the new leader */
	r->deadline = INT64_MAX;
	event(r, REV_ROLE, NULL, NULL, 0, RELAY_OK, "backup");
	return RELAY_OK;
}

/* ---- text: numbers, tokens, escapes ---------------------------------- */

/* Strict decimal: digits only, at most UINT64_MAX. */
static bool
parse_u64(const char *s, size_t n, uint64_t *out)
{
	uint64_t v = 0;
	size_t i;

	if (n == 0 || n > 20)
		return false;
	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		if (v > (UINT64_MAX - (uint64_t)(s[i] - '0')) / 10)
			return false;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	*out = v;
	return true;
}

/* A cursor over one line: tokens separated by exactly one space. */
struct cur {
	const char *p, *end;
	bool bad;
};

/* The next token, copied NUL-terminated into out (outsz bytes). */
static bool
tok_str(struct cur *c, char *out, size_t outsz)
{
	const char *s = c->p;
	size_t n;

	if (c->bad || c->p >= c->end)
		return !(c->bad = true);
	while (c->p < c->end && *c->p != ' ')
		c->p++;
	n = (size_t)(c->p - s);
	if (c->p < c->end)
		c->p++; /* the separator */
	if (n == 0 || n >= outsz || memchr(s, '\0', n) != NULL)
		return !(c->bad = true);
	memcpy(out, s, n);
	out[n] = '\0';
	return true;
}

static uint64_t
tok_u64(struct cur *c, uint64_t min, uint64_t max)
{
	char buf[24];
	uint64_t v;

	if (!tok_str(c, buf, sizeof(buf)) || !parse_u64(buf, strlen(buf), &v) ||
	    v < min || v > max) {
		c->bad = true;
		return 0;
	}
	return v;
}

static bool
tok_end(const struct cur *c)
{
	return !c->bad && c->p == c->end && (c->p == NULL || c->p[-1] != ' ');
}

/* Is there another token? */
static bool
tok_more(const struct cur *c)
{
	return !c->bad && c->p < c->end;
}

/* Does the next token start with tag? */
static bool
tok_tagged(const struct cur *c, const char *tag)
{
	size_t n = strlen(tag);

	return tok_more(c) && (size_t)(c->end - c->p) >= n &&
	    memcmp(c->p, tag, n) == 0;
}

/*
 * An optional "TAG=VALUE" token: its value into out (outsz bytes, NUL
 * included; an empty or too long value is malformed), or out emptied
 * when the next token is not tagged so.
 */
static void
tok_opt(struct cur *c, const char *tag, char *out, size_t outsz)
{
	char buf[8 + AUTH_PWHASH_SIZE];
	size_t n = strlen(tag);

	out[0] = '\0';
	if (!tok_tagged(c, tag))
		return;
	if (!tok_str(c, buf, sizeof(buf)) || buf[n] == '\0' ||
	    strlcpy(out, buf + n, outsz) >= outsz)
		c->bad = true;
}

/* ---- op text --------------------------------------------------------- */

static bool
dest_ok(const char *s)
{
	return strcmp(s, "*") == 0 || room_ok(s) || name_ok(s);
}

static bool
op_ok(const struct relay_op *op)
{
	if (op->version == 0)
		return false;
	if (op->type == ROP_NEXT_ID)
		return op->user[0] == '\0' && op->id != 0;
	if (!name_ok(op->user))
		return false;
	switch (op->type) {
	case ROP_NEWU:
		return addr_ok(op->addr) && op->port != 0 && key_ok(op->key) &&
		    pwhash_ok(op->pwhash);
	case ROP_LOGIN:
		return addr_ok(op->addr) && op->port != 0 && key_ok(op->key) &&
		    op->pwhash[0] == '\0';
	case ROP_LOGOUT:
		return true;
	case ROP_JOIN:
	case ROP_PART:
		return room_ok(op->dest);
	case ROP_MSG:
		/* next_id is one past the id: UINT64_MAX has none. */
		return strnlen(op->dest, sizeof(op->dest)) < sizeof(op->dest) &&
		    dest_ok(op->dest) && op->id != 0 && op->id != UINT64_MAX &&
		    op->seq != 0 && op->cid != 0 &&
		    op->bodylen <= RELAY_BODY_MAX &&
		    body_check(op->body, op->bodylen) == RELAY_OK;
	case ROP_ACK:
		return op->id != 0;
	default:
		return false;
	}
}

/*
 * The optional fields of newu and login, each " TAG=VALUE", nothing when
 * empty (a session key, a password hash; tokens never hold a space).
 */
#define TAG_KEY "key="
#define TAG_PW	"pw="

static int
fmt_tagged(char *buf, size_t bufsz, const char *tag, const char *val)
{
	return val[0] == '\0' ? snprintf(buf, bufsz, "%s", "")
			      : snprintf(buf, bufsz, " %s%s", tag, val);
}

int
relay_op_format(const struct relay_op *op, char *buf, size_t bufsz, size_t *len)
{
	char reg[24] = "", key[8 + AUTH_PK_TEXT], pw[8 + AUTH_PWHASH_SIZE];
	unsigned long long v;
	int n;

	if (op == NULL || buf == NULL || len == NULL || !op_ok(op))
		return -1;
	v = op->version;
	switch (op->type) {
	case ROP_NEWU:
	case ROP_LOGIN:
		/* The registration identity is optional (0: none). */
		if (op->type == ROP_NEWU && op->id != 0)
			(void)snprintf(reg, sizeof(reg), " %llu",
			    (unsigned long long)op->id);
		(void)fmt_tagged(key, sizeof(key), TAG_KEY, op->key);
		(void)fmt_tagged(pw, sizeof(pw), TAG_PW, op->pwhash);
		n = snprintf(buf, bufsz, "%s %llu %s %s %u%s%s%s",
		    op_names[op->type], v, op->user, op->addr, op->port, reg,
		    key, pw);
		break;
	case ROP_LOGOUT:
		n = snprintf(
		    buf, bufsz, "%s %llu %s", op_names[op->type], v, op->user);
		break;
	case ROP_JOIN:
	case ROP_PART:
		n = snprintf(buf, bufsz, "%s %llu %s %s", op_names[op->type], v,
		    op->user, op->dest);
		break;
	case ROP_MSG:
		n = snprintf(buf, bufsz, "%s %llu %s %s %llu %llu %llu %zu ",
		    op_names[op->type], v, op->user, op->dest,
		    (unsigned long long)op->id, (unsigned long long)op->seq,
		    (unsigned long long)op->cid, op->bodylen);
		break;
	case ROP_ACK:
		n = snprintf(buf, bufsz, "%s %llu %s %llu", op_names[op->type],
		    v, op->user, (unsigned long long)op->id);
		break;
	case ROP_NEXT_ID:
		n = snprintf(buf, bufsz, "%s %llu %llu", op_names[op->type], v,
		    (unsigned long long)op->id);
		break;
	default:
		return -1;
	}
	if (n < 0 || (size_t)n >= bufsz)
		return -1;
	if (op->type == ROP_MSG) {
		if ((size_t)n + op->bodylen >= bufsz)
			return -1;
		memcpy(buf + n, op->body, op->bodylen);
		n += (int)op->bodylen;
		buf[n] = '\0';
	}
	if ((size_t)n > RELAY_OP_TEXT_MAX)
		return -1;
	*len = (size_t)n;
	return 0;
}

int
relay_op_parse(struct relay_op *out, const char *buf, size_t len)
{
	struct relay_op op;
	struct cur c;
	char name[8];
	const char *sp;
	uint64_t blen;
	int t;

	if (out == NULL || buf == NULL || len == 0 || len > RELAY_OP_TEXT_MAX)
		return -1;
	memset(&op, 0, sizeof(op));
	c.p = buf;
	c.end = buf + len;
	c.bad = false;
	if (!tok_str(&c, name, sizeof(name)))
		return -1;
	for (t = ROP_NEWU; t < ROP_COUNT && strcmp(name, op_names[t]) != 0; t++)
		;
	if (t == ROP_COUNT)
		return -1;
	op.type = (enum relay_op_type)t;
	op.version = tok_u64(&c, 1, UINT64_MAX);
	if (op.type != ROP_NEXT_ID)
		tok_str(&c, op.user, sizeof(op.user));
	switch (op.type) {
	case ROP_NEWU:
	case ROP_LOGIN:
		tok_str(&c, op.addr, sizeof(op.addr));
		op.port = (uint16_t)tok_u64(&c, 1, 65535);
		if (op.type == ROP_NEWU && tok_more(&c) &&
		    !tok_tagged(&c, TAG_KEY) && !tok_tagged(&c, TAG_PW))
			op.id = tok_u64(&c, 1, UINT64_MAX);
		tok_opt(&c, TAG_KEY, op.key, sizeof(op.key));
		if (op.type == ROP_NEWU)
			tok_opt(&c, TAG_PW, op.pwhash, sizeof(op.pwhash));
		break;
	case ROP_LOGOUT:
		break;
	case ROP_JOIN:
	case ROP_PART:
		tok_str(&c, op.dest, sizeof(op.dest));
		break;
	case ROP_MSG:
		tok_str(&c, op.dest, sizeof(op.dest));
		op.id = tok_u64(&c, 1, UINT64_MAX);
		op.seq = tok_u64(&c, 1, UINT64_MAX);
		op.cid = tok_u64(&c, 1, UINT64_MAX);
		/* The length, one space, then the body's bytes to the end. */
		if (c.bad ||
		    (sp = memchr(c.p, ' ', (size_t)(c.end - c.p))) == NULL ||
		    !parse_u64(c.p, (size_t)(sp - c.p), &blen) ||
		    blen != (uint64_t)(c.end - sp - 1))
			return -1;
		op.body = sp + 1;
		op.bodylen = (size_t)blen;
		c.p = c.end;
		break;
	case ROP_ACK:
	case ROP_NEXT_ID:
		op.id = tok_u64(&c, 1, UINT64_MAX);
		break;
	default:
		return -1;
	}
	if (c.bad || (op.type != ROP_MSG && !tok_end(&c)) || !op_ok(&op))
		return -1;
	*out = op;
	return 0;
}

/* ---- snapshot -------------------------------------------------------- */

#define SNAP_MAGIC "ringchat-relay 1"

struct sbuf {
	char *p;
	size_t len, cap;
	bool fail;
};

static void __attribute__((format(printf, 2, 3)))
sb_printf(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;
	size_t ncap;
	char *np;
	int n;

	if (b->fail)
		return;
	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(b->p == NULL ? NULL : b->p + b->len,
		    b->cap - b->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->fail = true;
			return;
		}
		if ((size_t)n < b->cap - b->len) {
			b->len += (size_t)n;
			return;
		}
		ncap = b->cap == 0 ? 4096 : b->cap;
		while (ncap - b->len <= (size_t)n) {
			if (ncap > SIZE_MAX / 2) {
				b->fail = true;
				return;
			}
			ncap *= 2;
		}
		if ((np = realloc(b->p, ncap)) == NULL) {
			b->fail = true;
			return;
		}
		b->p = np;
		b->cap = ncap;
	}
}

/* Bytes a snapshot token cannot hold raw: '%', space, controls. */
static bool
snap_escaped(unsigned char c)
{
	return c == '%' || c <= 0x20 || c == 0x7f;
}

static void
sb_escaped(struct sbuf *b, const char *s, size_t n)
{
	size_t i, j;

	for (i = 0; i < n; i = j) {
		for (j = i; j < n && !snap_escaped((unsigned char)s[j]); j++)
			;
		if (j > i)
			sb_printf(b, "%.*s", (int)(j - i), s + i);
		if (j < n)
			sb_printf(b, "%%%02X", (unsigned char)s[j++]);
	}
}

static int
kv_cmp(const void *a, const void *b)
{
	const struct relay_kv *x = a, *y = b;

	return x->key < y->key ? -1 : x->key > y->key;
}

static int
cident_cmp(const void *a, const void *b)
{
	const struct relay_cident *x = a, *y = b;

	return x->cid < y->cid ? -1 : x->cid > y->cid;
}

/* The window's live entries, ascending. */
static size_t
win_live(const struct relay_user *u, struct relay_cident *out)
{
	size_t i, n = 0;

	if (u->win == NULL)
		return 0;
	for (i = 0; i < RELAY_CID_WINDOW; i++)
		if (u->win[i].cid != 0 &&
		    (u->cid_hi < RELAY_CID_WINDOW ||
			u->win[i].cid > u->cid_hi - RELAY_CID_WINDOW))
			out[n++] = u->win[i];
	qsort(out, n, sizeof(*out), cident_cmp);
	return n;
}

enum relay_err
relay_snapshot(const struct relay *r, char **bufp, size_t *lenp)
{
	struct relay_cident win[RELAY_CID_WINDOW];
	const struct relay_room *rm;
	const struct relay_user *u;
	const struct relay_msg *m;
	struct relay_kv *kv = NULL;
	struct sbuf b = {NULL, 0, 0, false};
	size_t i, j, n, nm = 0, nkv = 0;

	if (r == NULL || bufp == NULL || lenp == NULL)
		return RELAY_EARG;
	for (m = r->mhead; m != NULL; m = m->next)
		if (m->refs > 0)
			nm++;
	if (r->nkv > 0 && (kv = calloc(r->nkv, sizeof(*kv))) == NULL)
		return RELAY_ENOMEM;
	for (i = 0; i < r->kvcap; i++)
		if (r->kv[i].key != KV_EMPTY && r->kv[i].key != KV_DEAD) {
			kv[nkv] = r->kv[i];
			kv[nkv++].key--;
		}
	if (nkv > 0)
		qsort(kv, nkv, sizeof(*kv), kv_cmp);

	sb_printf(&b, SNAP_MAGIC "\n");
	sb_printf(&b, "state %llu %llu %llu %u %zu %zu %zu %zu %llu\n",
	    (unsigned long long)r->version, (unsigned long long)r->next_id,
	    (unsigned long long)r->bcast_seq, r->next_room_id, r->nusers, nm,
	    r->nrooms, nkv, (unsigned long long)r->hash);
	for (i = 0; i < r->nusers; i++) {
		u = &r->users[i];
		n = win_live(u, win);
		sb_printf(&b, "u %s %s %u %d %llu %zu", u->name, u->addr,
		    u->port, u->online ? 1 : 0, (unsigned long long)u->cid_hi,
		    n);
		for (j = 0; j < n; j++)
			sb_printf(&b, " %llu:%llu",
			    (unsigned long long)win[j].cid,
			    (unsigned long long)win[j].id);
		if (u->reg != 0)
			sb_printf(&b, " %llu", (unsigned long long)u->reg);
		if (u->key[0] != '\0')
			sb_printf(&b, " " TAG_KEY "%s", u->key);
		if (u->pw != NULL)
			sb_printf(&b, " " TAG_PW "%s", u->pw);
		sb_printf(&b, "\n");
	}
	for (m = r->mhead; m != NULL; m = m->next) {
		if (m->refs == 0)
			continue;
		sb_printf(&b, "m %llu %llu %llu %u %llu %s ",
		    (unsigned long long)m->id, (unsigned long long)m->seq,
		    (unsigned long long)m->cid, m->from,
		    (unsigned long long)m->stream, m->dest);
		sb_escaped(&b, m->body, m->bodylen);
		sb_printf(&b, "\n");
	}
	for (i = 0; i < r->nrooms; i++) {
		rm = r->rooms[i];
		sb_printf(&b, "r %s %u %llu %zu", rm->name, rm->id,
		    (unsigned long long)rm->seq, rm->nmem);
		for (j = 0; j < rm->nmem; j++)
			sb_printf(&b, " %u", rm->members[j]);
		sb_printf(&b, " %u", rm->hn);
		for (j = 0; j < rm->hn; j++)
			sb_printf(&b, " %llu",
			    (unsigned long long)room_hist(r, rm, (uint32_t)j)
				->id);
		sb_printf(&b, "\n");
	}
	for (i = 0; i < nkv; i++)
		sb_printf(&b, "k %llu %llu\n", (unsigned long long)kv[i].key,
		    (unsigned long long)kv[i].val);
	free(kv);
	for (i = 0; i < r->nusers; i++) {
		u = &r->users[i];
		if (u->nq == 0)
			continue;
		sb_printf(&b, "q %zu %u", i, u->nq);
		for (j = 0; j < u->nq; j++)
			sb_printf(&b, " %llu", (unsigned long long)u->q[j]->id);
		sb_printf(&b, "\n");
	}
	if (!b.fail)
		sb_printf(
		    &b, "end %016llx\n", (unsigned long long)fnv64(b.p, b.len));
	if (b.fail) {
		free(b.p);
		return RELAY_ENOMEM;
	}
	*bufp = b.p;
	*lenp = b.len;
	return RELAY_OK;
}

bool
relay_equal(const struct relay *a, const struct relay *b)
{
	char *sa = NULL, *sb = NULL;
	size_t la, lb;
	bool eq;

	if (a == NULL || b == NULL || relay_snapshot(a, &sa, &la) != RELAY_OK ||
	    relay_snapshot(b, &sb, &lb) != RELAY_OK) {
		free(sa);
		return false;
	}
	eq = la == lb && memcmp(sa, sb, la) == 0;
	free(sa);
	free(sb);
	return eq;
}

/* ---- restore --------------------------------------------------------- */

/* A line of the snapshot without its newline; false at the end. */
static bool
snap_line(const char **p, const char *end, struct cur *c)
{
	const char *nl;

	if (*p >= end || (nl = memchr(*p, '\n', (size_t)(end - *p))) == NULL)
		return false;
	c->p = *p;
	c->end = nl;
	c->bad = false;
	*p = nl + 1;
	return true;
}

static bool
tok_is(struct cur *c, const char *word)
{
	char buf[8];

	return tok_str(c, buf, sizeof(buf)) && strcmp(buf, word) == 0;
}

static int
hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* The last token of a line, unescaped into out (at most outsz). */
static bool
tok_unescape(struct cur *c, char *out, size_t outsz, size_t *n)
{
	size_t k = 0;
	int hi, lo;

	if (c->bad || c->p >= c->end)
		return !(c->bad = true);
	while (c->p < c->end) {
		if (k == outsz || *c->p == ' ' || *c->p == '\0')
			return !(c->bad = true);
		if (*c->p != '%') {
			if (snap_escaped((unsigned char)*c->p))
				return !(c->bad = true);
			out[k++] = *c->p++;
			continue;
		}
		if (c->end - c->p < 3 || (hi = hexval(c->p[1])) < 0 ||
		    (lo = hexval(c->p[2])) < 0 ||
		    !snap_escaped((unsigned char)(hi << 4 | lo)))
			return !(c->bad = true);
		out[k++] = (char)(hi << 4 | lo);
		c->p += 3;
	}
	*n = k;
	return true;
}

static struct relay_msg *
msg_by_id(struct relay_msg **byid, size_t n, uint64_t id)
{
	size_t lo = 0, hi = n, mid;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (byid[mid]->id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < n && byid[lo]->id == id ? byid[lo] : NULL;
}

/* Is stream s with dest what message m of user from could be? */
static bool
snap_stream_ok(
    const struct relay *n, uint64_t s, uint32_t from, const char *dest)
{
	uint32_t lo, hi;
	int64_t ui;

	if (s == STREAM_BCAST)
		return strcmp(dest, "*") == 0;
	if ((s & STREAM_ROOM) != 0)
		return (s & ~STREAM_ROOM) > 0 &&
		    (s & ~STREAM_ROOM) < n->next_room_id && room_ok(dest);
	lo = (uint32_t)(s >> 32);
	hi = (uint32_t)s;
	if ((s >> 62) != 0 || lo > hi || hi >= n->nusers ||
	    (ui = user_find(n, dest)) == -1)
		return false;
	return (from == lo && (uint32_t)ui == hi) ||
	    (from == hi && (uint32_t)ui == lo);
}

/* Builds state from a snapshot into n (initialised, empty). */
static enum relay_err
snap_load(struct relay *n, const char *buf, size_t len)
{
	/* hex: the end line's checksum, or a window entry "CID:ID" */
	char dest[ROOM_NAME_MAX], body[RELAY_BODY_MAX], hex[2 * 20 + 2], *endp;
	struct relay_msg **byid = NULL, *m;
	uint64_t nusers, nmsgs, nrooms, nkv, i, j, cnt, cid, id, key, pkey = 0;
	struct relay_room *rm;
	struct relay_user *u;
	const char *p = buf, *end = buf + len, *tail;
	struct relay_op op;
	struct cur c;
	size_t bodylen;
	int64_t prev;
	enum relay_err e = RELAY_ESNAPSHOT;

	/* The checksum covers everything before the end line. */
	if (len < 2 || buf[len - 1] != '\n' ||
	    (tail = memrchr(buf, '\n', len - 1)) == NULL)
		return RELAY_ESNAPSHOT;
	tail++;
	if (end - tail != 4 + 16 + 1 || memcmp(tail, "end ", 4) != 0)
		return RELAY_ESNAPSHOT;
	memcpy(hex, tail + 4, 16);
	hex[16] = '\0';
	if (strtoull(hex, &endp, 16) != fnv64(buf, (size_t)(tail - buf)) ||
	    *endp != '\0' || hex[0] == '-' || hex[0] == '+')
		return RELAY_ESNAPSHOT;
	end = tail;

	if (!snap_line(&p, end, &c) ||
	    (size_t)(c.end - c.p) != strlen(SNAP_MAGIC) ||
	    memcmp(c.p, SNAP_MAGIC, strlen(SNAP_MAGIC)) != 0)
		return RELAY_ESNAPSHOT;
	if (!snap_line(&p, end, &c) || !tok_is(&c, "state"))
		return RELAY_ESNAPSHOT;
	n->version = tok_u64(&c, 0, UINT64_MAX);
	n->next_id = tok_u64(&c, 1, UINT64_MAX);
	n->bcast_seq = tok_u64(&c, 0, UINT64_MAX);
	n->next_room_id = (uint32_t)tok_u64(&c, 1, (uint64_t)IDX_MAX + 1);
	nusers = tok_u64(&c, 0, IDX_MAX);
	nmsgs = tok_u64(&c, 0, n->next_id - 1);
	nrooms = tok_u64(&c, 0, IDX_MAX);
	nkv = tok_u64(&c, 0, UINT64_MAX);
	if (!c.bad && c.p < c.end) /* optional: the history digest */
		n->hash = tok_u64(&c, 0, UINT64_MAX);
	if (!tok_end(&c))
		return RELAY_ESNAPSHOT;

	for (i = 0; i < nusers; i++) {
		if (!snap_line(&p, end, &c) || !tok_is(&c, "u"))
			return RELAY_ESNAPSHOT;
		op_init(&op, ROP_NEWU, "");
		tok_str(&c, op.user, sizeof(op.user));
		tok_str(&c, op.addr, sizeof(op.addr));
		op.port = (uint16_t)tok_u64(&c, 1, 65535);
		if (c.bad)
			return RELAY_ESNAPSHOT;
		if ((e = op_newu(n, &op)) != RELAY_OK)
			return e == RELAY_ENOMEM ? e : RELAY_ESNAPSHOT;
		u = &n->users[i];
		if (tok_u64(&c, 0, 1) == 1)
			online_add(n, (uint32_t)i);
		u->cid_hi = tok_u64(&c, 0, UINT64_MAX);
		cnt = tok_u64(&c, 0, RELAY_CID_WINDOW);
		if (c.bad)
			return RELAY_ESNAPSHOT;
		if (cnt > 0 &&
		    (u->win = mem_calloc(
			 n, RELAY_CID_WINDOW, sizeof(*u->win))) == NULL)
			return RELAY_ENOMEM;
		for (j = 0, pkey = 0; j < cnt; j++) {
			if (!tok_str(&c, hex, sizeof(hex)) ||
			    (endp = strchr(hex, ':')) == NULL ||
			    !parse_u64(hex, (size_t)(endp - hex), &cid) ||
			    !parse_u64(endp + 1, strlen(endp + 1), &id) ||
			    cid == 0 || cid > u->cid_hi ||
			    (u->cid_hi >= RELAY_CID_WINDOW &&
				cid <= u->cid_hi - RELAY_CID_WINDOW) ||
			    cid <= pkey || id == 0 || id >= n->next_id)
				return RELAY_ESNAPSHOT;
			pkey = cid;
			u->win[cid % RELAY_CID_WINDOW].cid = cid;
			u->win[cid % RELAY_CID_WINDOW].id = id;
		}
		/* optional: registration, session key, password hash */
		if (tok_more(&c) && !tok_tagged(&c, TAG_KEY) &&
		    !tok_tagged(&c, TAG_PW))
			u->reg = tok_u64(&c, 1, UINT64_MAX);
		tok_opt(&c, TAG_KEY, op.key, sizeof(op.key));
		tok_opt(&c, TAG_PW, op.pwhash, sizeof(op.pwhash));
		if (!tok_end(&c) || !key_ok(op.key) || !pwhash_ok(op.pwhash))
			return RELAY_ESNAPSHOT;
		strlcpy(u->key, op.key, sizeof(u->key));
		if (op.pwhash[0] != '\0' &&
		    (u->pw = pw_dup(n, op.pwhash)) == NULL)
			return RELAY_ENOMEM;
	}

	if (nmsgs > 0 && (byid = calloc(nmsgs, sizeof(*byid))) == NULL)
		return RELAY_ENOMEM;
	for (i = 0; i < nmsgs; i++) {
		e = RELAY_ESNAPSHOT;
		if (!snap_line(&p, end, &c) || !tok_is(&c, "m"))
			goto out;
		id = tok_u64(&c, 1, n->next_id - 1);
		op.seq = tok_u64(&c, 1, UINT64_MAX);
		op.cid = tok_u64(&c, 1, UINT64_MAX);
		op.id = tok_u64(&c, 0, nusers == 0 ? 0 : nusers - 1);
		key = tok_u64(&c, 0, UINT64_MAX);
		tok_str(&c, dest, sizeof(dest));
		if (c.bad || op.id >= nusers ||
		    (i > 0 && id <= byid[i - 1]->id) ||
		    !tok_unescape(&c, body, sizeof(body), &bodylen) ||
		    body_check(body, bodylen) != RELAY_OK ||
		    !snap_stream_ok(n, key, (uint32_t)op.id, dest))
			goto out;
		e = RELAY_ENOMEM;
		if ((m = mem_calloc(n, 1, sizeof(*m) + bodylen + 1)) == NULL)
			goto out;
		m->id = id;
		m->seq = op.seq;
		m->cid = op.cid;
		m->from = (uint32_t)op.id;
		m->stream = key;
		m->bodylen = (uint16_t)bodylen;
		memcpy(m->body, body, bodylen);
		strlcpy(m->dest, dest, sizeof(m->dest));
		m->prev = n->mtail;
		if (n->mtail != NULL)
			n->mtail->next = m;
		else
			n->mhead = m;
		n->mtail = m;
		n->nmsgs++;
		n->msg_bytes += msg_size(m);
		byid[i] = m;
	}

	for (i = 0; i < nrooms; i++) {
		e = RELAY_ESNAPSHOT;
		if (!snap_line(&p, end, &c) || !tok_is(&c, "r") ||
		    !tok_str(&c, dest, sizeof(dest)) || !room_ok(dest) ||
		    room_find(n, dest, NULL) != NULL)
			goto out;
		op_init(&op, ROP_JOIN, "");
		op.id = tok_u64(&c, 1, n->next_room_id - 1);
		op.seq = tok_u64(&c, 0, UINT64_MAX);
		cnt = tok_u64(&c, 1, nusers);
		if (c.bad)
			goto out;
		for (j = 0; j < n->nrooms; j++)
			if (n->rooms[j]->id == op.id)
				goto out;
		e = RELAY_ENOMEM;
		if (mem_reserve(n, (void **)&n->rooms, &n->caprooms,
			n->nrooms + 1, sizeof(*n->rooms), 16) == -1 ||
		    (rm = mem_calloc(n, 1, sizeof(*rm))) == NULL)
			goto out;
		n->rooms[n->nrooms++] = rm;
		strlcpy(rm->name, dest, sizeof(rm->name));
		rm->id = (uint32_t)op.id;
		rm->seq = op.seq;
		if ((rm->members = mem_calloc(n, cnt, sizeof(*rm->members))) ==
		    NULL)
			goto out;
		rm->capmem = cnt;
		e = RELAY_ESNAPSHOT;
		for (j = 0; j < cnt; j++) {
			key = tok_u64(&c, 0, nusers == 0 ? 0 : nusers - 1);
			if (c.bad || key >= nusers ||
			    (j > 0 && key <= rm->members[j - 1]) ||
			    n->users[key].nrooms >= USER_ROOMS_MAX)
				goto out;
			rm->members[rm->nmem++] = (uint32_t)key;
			n->users[key].nrooms++;
		}
		cnt = tok_u64(&c, 0, n->cfg.history_max);
		if (c.bad)
			goto out;
		if (cnt > 0 &&
		    (rm->hist = mem_calloc(
			 n, n->cfg.history_max, sizeof(*rm->hist))) == NULL) {
			e = RELAY_ENOMEM;
			goto out;
		}
		for (j = 0; j < cnt; j++) {
			id = tok_u64(&c, 1, UINT64_MAX);
			if (c.bad ||
			    (m = msg_by_id(byid, (size_t)nmsgs, id)) == NULL ||
			    m->stream != (STREAM_ROOM | rm->id) ||
			    m->seq > rm->seq ||
			    (j > 0 && m->seq <= rm->hist[j - 1]->seq))
				goto out;
			rm->hist[rm->hn++] = m;
			m->refs++;
		}
		if (!tok_end(&c))
			goto out;
	}

	for (i = 0; i < nkv; i++) {
		e = RELAY_ESNAPSHOT;
		if (!snap_line(&p, end, &c) || !tok_is(&c, "k"))
			goto out;
		key = tok_u64(&c, 0, KV_DEAD - 2);
		id = tok_u64(&c, 0, UINT64_MAX);
		if (!tok_end(&c) || (i > 0 && key <= pkey))
			goto out;
		pkey = key;
		if ((key & KV_CURSOR) != 0) {
			j = (key & ~KV_CURSOR) >> 32;
			for (cnt = 0; cnt < n->nrooms; cnt++)
				if (n->rooms[cnt]->id == j)
					break;
			if (cnt == n->nrooms || (uint32_t)key >= nusers ||
			    room_has(n->rooms[cnt], (uint32_t)key) ||
			    id > n->rooms[cnt]->seq)
				goto out;
		} else if ((key >> 62) != 0 ||
		    (uint32_t)(key >> 32) > (uint32_t)key ||
		    (uint32_t)key >= nusers)
			goto out;
		e = RELAY_ENOMEM;
		if (kv_reserve(n, 1) == -1)
			goto out;
		kv_put(n, key, id);
	}

	for (prev = -1; snap_line(&p, end, &c);) {
		e = RELAY_ESNAPSHOT;
		if (!tok_is(&c, "q"))
			goto out;
		key = tok_u64(&c, 0, nusers == 0 ? 0 : nusers - 1);
		cnt = tok_u64(&c, 1, n->cfg.queue_max);
		if (c.bad || key >= nusers || (int64_t)key <= prev)
			goto out;
		prev = (int64_t)key;
		u = &n->users[key];
		e = RELAY_ENOMEM;
		if (queue_reserve(n, u, cnt) == -1)
			goto out;
		e = RELAY_ESNAPSHOT;
		for (j = 0; j < cnt; j++) {
			id = tok_u64(&c, 1, UINT64_MAX);
			if (c.bad ||
			    (m = msg_by_id(byid, (size_t)nmsgs, id)) == NULL)
				goto out;
			u->q[u->nq++] = m;
			m->refs++;
		}
		if (!tok_end(&c))
			goto out;
	}
	e = RELAY_ESNAPSHOT;
	if (p != end)
		goto out;
	/* A snapshot holds only messages something refers to. */
	for (m = n->mhead; m != NULL; m = m->next)
		if (m->refs == 0)
			goto out;
	e = RELAY_OK;
out:
	free(byid);
	return e;
}

enum relay_err
relay_restore(struct relay *r, const char *buf, size_t len)
{
	struct relay n;
	enum relay_err e;
	size_t mem;

	if (r == NULL || buf == NULL)
		return RELAY_EARG;
	if (r->leader)
		return RELAY_EROLE;
	if (relay_init(&n, &r->cfg) != RELAY_OK)
		return RELAY_EARG;
	if ((e = snap_load(&n, buf, len)) != RELAY_OK) {
		state_free(&n);
		return e;
	}
	state_free(r);
	mem = r->mem;
	r->version = n.version;
	r->hash = n.hash;
	r->next_id = n.next_id;
	r->bcast_seq = n.bcast_seq;
	r->next_room_id = n.next_room_id;
	r->users = n.users;
	r->nusers = n.nusers;
	r->capusers = n.capusers;
	r->uhash = n.uhash;
	r->uhcap = n.uhcap;
	r->rooms = n.rooms;
	r->nrooms = n.nrooms;
	r->caprooms = n.caprooms;
	r->kv = n.kv;
	r->nkv = n.nkv;
	r->nkvdead = n.nkvdead;
	r->kvcap = n.kvcap;
	r->mhead = n.mhead;
	r->mtail = n.mtail;
	r->nmsgs = n.nmsgs;
	r->msg_bytes = n.msg_bytes;
	r->online = n.online;
	r->nonline = n.nonline;
	r->caponline = n.caponline;
	r->scratch = n.scratch;
	r->capscratch = n.capscratch;
	r->mem = mem + n.mem;
	event(r, REV_RESTORE, NULL, NULL, r->version, RELAY_OK, NULL);
	return RELAY_OK;
}

/* ---- merge ----------------------------------------------------------- */

/* The user of r with registration g, -1 when none. */
static int64_t
user_by_reg(const struct relay *r, uint64_t g)
{
	size_t i;

	for (i = 0; g != 0 && i < r->nusers; i++)
		if (r->users[i].reg == g)
			return (int64_t)i;
	return -1;
}

/* name~N for the first free N >= 2, cut at a character boundary. */
static bool
free_alias(const struct relay *r, const char *name, char *out, size_t outsz)
{
	char suffix[16];
	size_t base, k;
	unsigned n;

	for (n = 2; n < 100000; n++) {
		k = (size_t)snprintf(suffix, sizeof(suffix), "~%u", n);
		base = strlen(name);
		if (base + k >= outsz)
			base = outsz - k - 1;
		while (base > 0 && ((unsigned char)name[base] & 0xc0) == 0x80)
			base--;
		memcpy(out, name, base);
		memcpy(out + base, suffix, k + 1);
		if (name_ok(out) && user_find(r, out) == -1)
			return true;
	}
	return false;
}

/* The user of o that o's message m was addressed to, -1 when none. */
static int64_t
merge_direct_rcpt(const struct relay *o, const struct relay_msg *m)
{
	if (m->dest[0] == '#' || strcmp(m->dest, "*") == 0)
		return -1;
	return user_find(o, m->dest);
}

/*
 * Whether user oj of o has had o's message m already: it was one of its
 * recipients there and no longer has it queued.
 */
static bool
merge_had(const struct relay *o, int64_t oj, const struct relay_msg *m)
{
	const struct relay_room *orm;

	if (oj < 0 || queue_index(&o->users[oj], m->id) != SIZE_MAX)
		return false;
	if ((uint32_t)oj == m->from)
		return true;
	if (m->dest[0] == '#')
		return (orm = room_find(o, m->dest, NULL)) != NULL &&
		    room_has(orm, (uint32_t)oj);
	if (strcmp(m->dest, "*") == 0)
		return o->users[oj].online;
	return merge_direct_rcpt(o, m) == oj;
}

static enum relay_err
merge_users(
    struct relay *r, const struct relay *o, uint32_t *map, size_t *added)
{
	char alias[USER_NAME_MAX];
	const struct relay_user *ou;
	struct relay_out *rep;
	struct relay_op op;
	enum relay_err e;
	const char *name;
	int64_t ui;
	size_t i;

	for (i = 0; i < o->nusers; i++) {
		ou = &o->users[i];
		map[i] = UINT32_MAX;
		name = ou->name;
		if ((ui = user_find(r, ou->name)) != -1 &&
		    (r->users[ui].reg == ou->reg || ou->reg == 0 ||
			r->users[ui].reg == 0)) {
			map[i] = (uint32_t)ui;
			continue;
		}
		if (ui != -1) {
			/* Two registrations of one name: this side keeps it. */
			if ((ui = user_by_reg(r, ou->reg)) != -1) {
				map[i] = (uint32_t)ui;
				continue;
			}
			if (!free_alias(r, ou->name, alias, sizeof(alias)))
				continue;
			name = alias;
		}
		if (r->nusers >= r->cfg.users_max) {
			r->rejected++;
			event(r, REV_REJECT, ou->name, NULL, 0, RELAY_EFULL,
			    "merge");
			continue;
		}
		op_init(&op, ROP_NEWU, name);
		strlcpy(op.addr, ou->addr, sizeof(op.addr));
		op.port = ou->port;
		op.id = ou->reg != 0 ? ou->reg : reg_make(r);
		/* Its session and password come with it. */
		strlcpy(op.key, ou->key, sizeof(op.key));
		if (ou->pw != NULL)
			strlcpy(op.pwhash, ou->pw, sizeof(op.pwhash));
		if ((e = leader_apply(r, &op, NULL)) != RELAY_OK)
			return e;
		map[i] = (uint32_t)(r->nusers - 1);
		(*added)++;
		event(r, REV_REGISTER, name, NULL, 0, RELAY_OK, "merge");
		if (name == alias &&
		    (rep = reply(r, WK_NEWU, RELAY_ERENAMED, ou->name, ou->addr,
			 ou->port)) != NULL &&
		    (rep->owned = mem_calloc(r, 1, strlen(alias) + 1)) !=
			NULL) {
			memcpy(rep->owned, alias, strlen(alias) + 1);
			rep->text = rep->owned;
		}
	}
	return RELAY_OK;
}

static enum relay_err
merge_rooms(
    struct relay *r, int64_t now, const struct relay *o, const uint32_t *map)
{
	const struct relay_room *orm;
	struct relay_room *rm;
	struct relay_op op;
	enum relay_err e;
	uint32_t ui;
	size_t i, j;

	for (i = 0; i < o->nrooms; i++) {
		orm = o->rooms[i];
		for (j = 0; j < orm->nmem; j++) {
			if ((ui = map[orm->members[j]]) == UINT32_MAX ||
			    r->users[ui].nrooms >= USER_ROOMS_MAX)
				continue;
			rm = room_find(r, orm->name, NULL);
			if (rm != NULL ? room_has(rm, ui)
				       : r->nrooms >= r->cfg.rooms_max)
				continue;
			op_init(&op, ROP_JOIN, r->users[ui].name);
			strlcpy(op.dest, orm->name, sizeof(op.dest));
			if ((e = leader_apply(r, &op, NULL)) != RELAY_OK)
				return e;
			event(r, REV_JOIN, op.user, op.dest, 0, RELAY_OK,
			    "merge");
			pump(r, ui, now);
		}
	}
	return RELAY_OK;
}

/* Accepts o's message m here unless it has it; *added says whether. */
static enum relay_err
merge_msg(struct relay *r, const struct relay *o, const uint32_t *map,
    const int64_t *rmap, const struct relay_msg *m, bool *added)
{
	struct relay_msg *made = NULL;
	struct relay_op op;
	struct target t;
	enum relay_err e;
	uint32_t si = map[m->from];
	uint64_t dupid;
	int64_t oj;
	size_t i, n;

	*added = false;
	if (si == UINT32_MAX || r->next_id == UINT64_MAX ||
	    cid_state(&r->users[si], m->cid, &dupid) != CID_NEW ||
	    r->msg_bytes + sizeof(struct relay_msg) + m->bodylen + 1 >
		r->cfg.msg_bytes_max)
		return RELAY_OK;
	op_init(&op, ROP_MSG, r->users[si].name);
	if ((oj = merge_direct_rcpt(o, m)) != -1) {
		if (map[oj] == UINT32_MAX)
			return RELAY_OK;
		strlcpy(op.dest, r->users[map[oj]].name, sizeof(op.dest));
	} else
		strlcpy(op.dest, m->dest, sizeof(op.dest));
	/*
	 * A room message whose sender has left the room on the other side
	 * (or a room emptied and gone there) is not taken: a room message
	 * comes from a member.  docs/RELAY.md says so.
	 */
	if (target_of(r, si, op.dest, &t) != RELAY_OK)
		return RELAY_OK;
	op.id = r->next_id;
	op.seq = t.seq;
	op.cid = m->cid;
	op.body = m->body;
	op.bodylen = m->bodylen;
	if ((e = leader_apply(r, &op, &made)) != RELAY_OK)
		return e;
	*added = true;
	/* Who had it on the other side is not sent it again. */
	if (rcpt_collect(r, si, &t, &n) == -1)
		return RELAY_ENOMEM;
	for (i = 0; i < n; i++) {
		uint32_t ui = r->scratch[i];
		struct relay_op ack;

		if (ui >= o->nusers + r->nusers || rmap[ui] < 0 ||
		    !merge_had(o, rmap[ui], m) ||
		    queue_index(&r->users[ui], made->id) == SIZE_MAX)
			continue;
		op_init(&ack, ROP_ACK, r->users[ui].name);
		ack.id = made->id;
		if ((e = leader_apply(r, &ack, NULL)) != RELAY_OK)
			return e;
	}
	return RELAY_OK;
}

enum relay_err
relay_merge(struct relay *r, int64_t now, const struct relay *o, size_t *users,
    size_t *msgs)
{
	const struct relay_msg *m;
	struct relay_op op;
	uint32_t *map = NULL;
	int64_t *rmap = NULL;
	size_t nu = 0, nm = 0, i;
	enum relay_err e = RELAY_ENOMEM;
	bool added;

	if (r == NULL || o == NULL || r == o)
		return RELAY_EARG;
	if (!r->leader)
		return RELAY_EROLE;
	if (o->nusers > 0 && (map = calloc(o->nusers, sizeof(*map))) == NULL)
		goto out;
	if ((e = merge_users(r, o, map, &nu)) != RELAY_OK)
		goto out;
	e = RELAY_ENOMEM;
	if (r->nusers > 0 && (rmap = calloc(r->nusers, sizeof(*rmap))) == NULL)
		goto out;
	for (i = 0; i < r->nusers; i++)
		rmap[i] = -1;
	for (i = 0; i < o->nusers; i++)
		if (map[i] != UINT32_MAX)
			rmap[map[i]] = (int64_t)i;
	if ((e = merge_rooms(r, now, o, map)) != RELAY_OK)
		goto out;
	/*
	 * Clients drop a delivery whose id is not above the highest they
	 * have shown in its stream: what this leader sends from now on must
	 * come after every id either side gave out, merged or not.  An op,
	 * so that a backup that takes over goes on from there too.
	 */
	if (o->next_id > r->next_id) {
		op_init(&op, ROP_NEXT_ID, "");
		op.id = o->next_id;
		if ((e = leader_apply(r, &op, NULL)) != RELAY_OK)
			goto out;
	}
	for (m = o->mhead; m != NULL; m = m->next) {
		if (m->refs == 0)
			continue;
		if ((e = merge_msg(r, o, map, rmap, m, &added)) != RELAY_OK)
			goto out;
		if (added)
			nm++;
	}
	e = RELAY_OK;
out:
	free(map);
	free(rmap);
	if (users != NULL)
		*users = nu;
	if (msgs != NULL)
		*msgs = nm;
	return e;
}

/* ---- queries --------------------------------------------------------- */

static void
user_info(const struct relay_user *u, struct relay_user_info *info)
{
	memset(info, 0, sizeof(*info));
	strlcpy(info->name, u->name, sizeof(info->name));
	strlcpy(info->addr, u->addr, sizeof(info->addr));
	info->port = u->port;
	info->online = u->online;
	info->nrooms = u->nrooms;
	info->queued = u->nq;
	info->inflight = u->nslots;
	info->cid_hi = u->cid_hi;
	info->reg = u->reg;
	strlcpy(info->key, u->key, sizeof(info->key));
	if (u->pw != NULL)
		strlcpy(info->pwhash, u->pw, sizeof(info->pwhash));
}

int
relay_user_get(
    const struct relay *r, const char *name, struct relay_user_info *info)
{
	int64_t ui;

	if (r == NULL || info == NULL || (ui = user_find(r, name)) == -1)
		return -1;
	user_info(&r->users[ui], info);
	return 0;
}

int
relay_online_get(const struct relay *r, size_t i, struct relay_user_info *info)
{
	if (r == NULL || info == NULL || i >= r->nonline)
		return -1;
	user_info(&r->users[r->online[i]], info);
	return 0;
}

size_t
relay_online_count(const struct relay *r)
{
	return r == NULL ? 0 : r->nonline;
}

size_t
relay_memory(const struct relay *r)
{
	return r == NULL ? 0 : r->mem;
}

const char *
relay_err_code(enum relay_err e)
{
	if ((int)e < 0 || e >= RELAY_NERR || err_codes[e] == NULL)
		return "bad_request";
	return err_codes[e];
}

const char *
relay_event_name(enum relay_event ev)
{
	if ((int)ev < 0 ||
	    (size_t)ev >= sizeof(event_names) / sizeof(event_names[0]) ||
	    event_names[ev] == NULL)
		return "?";
	return event_names[ev];
}

const char *
relay_op_name(enum relay_op_type t)
{
	if ((int)t < 0 || t >= ROP_COUNT)
		return "?";
	return op_names[t];
}

int
relay_export_users(const struct relay *r, const struct users_state *prev,
    int64_t now_wall, struct users_state *st)
{
	size_t i, k;

	store_users_free(st);
	store_users_init(st);
	st->version = r->version;
	for (i = 0; i < r->nusers; i++) {
		const struct relay_user *u = &r->users[i];
		const struct user *old;
		struct user *nu;

		if ((nu = store_users_add(st)) == NULL) {
			store_users_free(st);
			store_users_init(st);
			return -1;
		}
		strlcpy(nu->name, u->name, sizeof(nu->name));
		strlcpy(nu->addr, u->addr, sizeof(nu->addr));
		nu->port = u->port;
		nu->online = u->online;
		if (u->pw != NULL)
			strlcpy(nu->password, u->pw, sizeof(nu->password));
		/* Users are never removed: the last export lines up by index.
		 */
		old = prev != NULL && i < prev->n &&
			strcmp(prev->u[i].name, u->name) == 0
		    ? &prev->u[i]
		    : NULL;
		nu->last_seen = u->online ? now_wall
		    : old != NULL	  ? old->last_seen
					  : 0;
		for (k = 0; k < r->nrooms && nu->nrooms < USER_ROOMS_MAX; k++) {
			const struct relay_room *rm = r->rooms[k];
			size_t m;

			for (m = 0; m < rm->nmem; m++)
				if (rm->members[m] == i)
					break;
			if (m < rm->nmem)
				strlcpy(nu->rooms[nu->nrooms++], rm->name,
				    ROOM_NAME_MAX);
		}
	}
	return 0;
}

size_t
relay_room_count(const struct relay *r)
{
	return r->nrooms;
}

const char *
relay_room_at(const struct relay *r, size_t i, size_t *members)
{
	if (i >= r->nrooms) {
		*members = 0;
		return "";
	}
	*members = r->rooms[i]->nmem;
	return r->rooms[i]->name;
}
