/* client: the chat client's session with the leader (pure state machine). */
#include <arpa/inet.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"

/* A message until the relay's ok (or err) for its cid. */
struct client_pending {
	uint64_t seq; /* the order of the user's commands */
	uint64_t cid;
	char to[ROOM_NAME_MAX];
	char *body;
	struct client_retry r;
};

/* A join, part or list request; only the first one is in flight. */
struct client_req {
	uint64_t seq;
	enum wire_kind kind;
	char to[ROOM_NAME_MAX];
	struct client_retry r;
};

/* A delivery shown: its id and a digest of its sender and text. */
struct client_seen {
	uint64_t id, digest;
};

/*
 * A room, "*", or the other user of a direct conversation, with the last
 * CLIENT_SEEN_MAX deliveries shown in it.  A repeat is the same id with
 * the same sender and text.  The id alone is not enough: within one
 * leader's lineage ids only grow in a stream, but after a partition heals
 * the two sides' ids overlap, so a lower id than one shown may be a
 * message of the other side, never shown.
 */
struct client_stream {
	char key[ROOM_NAME_MAX];
	uint64_t used;		  /* c->delivered when it last showed one */
	struct client_seen *seen; /* grows to CLIENT_SEEN_MAX, then a ring */
	uint32_t nseen, cap, next;
};

static const char *const state_names[] = {
    [CS_IDLE] = "idle",
    [CS_SEARCHING] = "searching",
    [CS_LOGIN] = "logging in",
    [CS_REGISTER] = "registering",
    [CS_ONLINE] = "online",
    [CS_LOGOUT] = "logging out",
    [CS_DONE] = "done",
};

static const struct {
	const char *code, *text;
} code_texts[] = {
    {"bad_request", "the server did not understand the request"},
    {"bad_name",
	"not a valid user name (1 to 31 bytes without space, "
	"@, # or *)"},
    {"name_taken", "the name is registered from another address"},
    {"unknown_user", "no such user"},
    {"not_logged_in", "not logged in"},
    {"forged_sender", "another client has logged in with this name"},
    {"bad_room",
	"not a valid room name (# and 1 to 30 bytes without "
	"space, @, # or *)"},
    {"not_in_room", "not in that room"},
    {"too_many_rooms", "in too many rooms already"},
    {"too_long", "message too long: over 1000 bytes as encoded"},
    {"bad_body", "message empty, not UTF-8, or with control characters"},
    {"bad_cid", "the server refused the message id"},
    {"stale_cid", "message too old to be sent again"},
    {"full", "a limit of the server or this client was reached"},
    {"busy", "the server is short of memory: try again"},
    {"backlog", "a recipient is slow to acknowledge: sent again shortly"},
    {"order", "an earlier message goes first: sent again shortly"},
    {"renamed", "the name was taken twice across a partition: renamed"},
    {"not_leader", "the server is not the leader"},
    {"unsupported", "the server does not relay chat"},
    {"unacknowledged", "messages not acknowledged by the server"},
    {"password_required",
	"this user has a password: give it (RINGCHAT_PASSWORD, "
	"--password-file or at the prompt)"},
    {"bad_password", "wrong password"},
    {"slow_down", "too many wrong passwords: wait and try again"},
    {"sealed",
	"the cluster has a key: it refuses datagrams outside an encrypted "
	"session"},
};

static void set_state(struct client *, int64_t, enum client_state);
static void quit_check(struct client *, int64_t);

/* ---- outputs ------------------------------------------------------------ */

static struct client_out *
out_new(struct client *c, enum client_out_type type)
{
	struct client_out *o;

	if (c->nout == c->capout) {
		size_t cap = c->capout == 0 ? 16 : c->capout * 2;

		if ((o = reallocarray(c->out, cap, sizeof(*o))) == NULL)
			return NULL; /* lost: a timer sends again */
		c->out = o;
		c->capout = cap;
	}
	o = &c->out[c->nout++];
	memset(o, 0, sizeof(*o));
	o->type = type;
	return o;
}

static struct client_out *
emit(struct client *c, enum client_event ev, const char *text)
{
	struct client_out *o = out_new(c, CO_EVENT);

	if (o == NULL)
		return NULL;
	o->ev = ev;
	if (text != NULL)
		o->text = strdup(text);
	return o;
}

static void
emit_error(struct client *c, const char *code, const char *text,
    const struct client_pending *p, bool fatal)
{
	struct client_out *o;

	o = emit(c, CE_ERROR, text != NULL ? text : client_code_text(code));
	if (o == NULL)
		return;
	(void)strlcpy(o->code, code, sizeof(o->code));
	o->fatal = fatal;
	if (p != NULL) {
		o->has_cid = true;
		o->cid = p->cid;
		(void)strlcpy(o->to, p->to, sizeof(o->to));
	}
}

static int
emit_send(struct client *c, bool discovery, const char *addr, uint16_t port,
    const struct wire_msg *m)
{
	struct client_out *o = out_new(c, CO_SEND);

	if (o == NULL)
		return -1;
	if (wire_encode(m, o->data, sizeof(o->data), &o->len) != WIRE_OK) {
		c->nout--; /* checked before: never happens */
		return -1;
	}
	o->discovery = discovery;
	if (!discovery) {
		(void)strlcpy(o->addr, addr, sizeof(o->addr));
		o->port = port;
	}
	return 0;
}

static void
to_leader(struct client *c, const struct wire_msg *m)
{
	(void)emit_send(c, false, c->leader.addr, c->leader.port, m);
}

void
client_drain(struct client *c)
{
	size_t i;

	for (i = 0; i < c->nout; i++)
		free(c->out[i].text);
	c->nout = 0;
}

/* ---- helpers ------------------------------------------------------------ */

static void
retry_reset(const struct client *c, struct client_retry *r)
{
	r->sent = false;
	r->attempts = 0;
	r->gap = c->cfg.retry_min_ms;
}

/* One more send now: the next is due after the doubled gap. */
static void
retry_sent(const struct client *c, struct client_retry *r, int64_t now)
{
	r->sent = true;
	r->attempts++;
	r->due = now + r->gap;
	r->gap = r->gap >= c->cfg.retry_max_ms / 2 ? c->cfg.retry_max_ms
						   : r->gap * 2;
}

static bool
same_pair(const struct client_leader *a, const struct client_leader *b)
{
	return a->known && b->known && a->epoch == b->epoch &&
	    uuid_cmp(&a->uuid, &b->uuid) == 0;
}

static bool
from_leader(const struct client *c, const char *addr, uint16_t port)
{
	return c->leader.known && port == c->leader.port &&
	    strcmp(addr, c->leader.addr) == 0;
}

/* Copies a field that must fit; -1 (dst untouched) when it does not. */
static int
copy_field(char *dst, size_t dstsz, const char *src)
{
	size_t n = strlen(src);

	if (n == 0 || n >= dstsz)
		return -1;
	memcpy(dst, src, n + 1);
	return 0;
}

/* The leader a `leader` answer or a not_leader hint names; -1 if none. */
static int
parse_leader(const struct wire_msg *m, bool need_epoch, struct client_leader *l)
{
	const char *id = wire_get(m, "leader"), *addr = wire_get(m, "addr");
	struct in_addr ia;
	uint64_t port, epoch = 0;

	memset(l, 0, sizeof(*l));
	if (id == NULL || uuid_parse(&l->uuid, id) == -1 || addr == NULL ||
	    inet_pton(AF_INET, addr, &ia) != 1 ||
	    copy_field(l->addr, sizeof(l->addr), addr) == -1 ||
	    wire_get_u64(m, "port", &port) == -1 || port == 0 || port > 65535)
		return -1;
	if (wire_get_u64(m, "epoch", &epoch) == -1 && need_epoch)
		return -1;
	l->epoch = epoch;
	l->port = (uint16_t)port;
	if (m->kind == WK_LEADER)
		(void)strlcpy(l->name, m->body, sizeof(l->name));
	l->known = true;
	return 0;
}

static size_t
in_flight_end(const struct client *c)
{
	size_t i;

	for (i = 0; i < c->npend; i++)
		if (c->pend[i].cid >= c->pend[0].cid + CLIENT_INFLIGHT_MAX)
			break;
	return i;
}

static void
pend_remove(struct client *c, size_t i)
{
	free(c->pend[i].body);
	memmove(&c->pend[i], &c->pend[i + 1],
	    (c->npend - i - 1) * sizeof(c->pend[0]));
	c->npend--;
}

static void
parts_reset(struct client *c)
{
	uint32_t i;

	for (i = 0; i < c->nparts; i++)
		free(c->parts[i]);
	free(c->parts);
	c->parts = NULL;
	c->nparts = c->gotparts = 0;
}

static void
req_pop(struct client *c)
{
	parts_reset(c);
	if (c->nreq == 0)
		return;
	memmove(&c->req[0], &c->req[1], (c->nreq - 1) * sizeof(c->req[0]));
	c->nreq--;
}

/* Everything in flight goes again to the next leader, from scratch. */
static void
unsend_all(struct client *c)
{
	size_t i;

	for (i = 0; i < c->npend; i++)
		retry_reset(c, &c->pend[i].r);
	if (c->nreq > 0)
		retry_reset(c, &c->req[0].r);
	parts_reset(c);
}

static void
finish(struct client *c)
{
	c->state = CS_DONE;
	(void)emit(c, CE_BYE, NULL);
}

static void
fatal_error(struct client *c, const char *code, const char *text)
{
	emit_error(c, code, text, NULL, true);
	c->state = CS_DONE;
}

/* ---- sending ------------------------------------------------------------ */

static void
msg_send(struct client *c, int64_t now, struct client_pending *p)
{
	struct wire_msg m;

	wire_init(&m, WK_MSG, p->to, p->body, c->user);
	(void)wire_add_u64(&m, "cid", p->cid);
	/* The open message before it goes first (docs/RELAY.md). */
	if (p > c->pend)
		(void)wire_add_u64(&m, "after", p[-1].cid);
	to_leader(c, &m);
	if (p->r.attempts > 0)
		c->resends++;
	retry_sent(c, &p->r, now);
}

static void
req_send(struct client *c, int64_t now)
{
	struct client_req *r = &c->req[0];
	struct wire_msg m;

	parts_reset(c); /* a list starts over */
	wire_init(&m, r->kind, r->to, "", c->user);
	to_leader(c, &m);
	retry_sent(c, &r->r, now);
}

/*
 * Sends what may go now: the messages in the window, then the first
 * request, each once nothing the user gave before it is outstanding
 * (a message after /join goes to a room we are in by then).
 */
static void
pump(struct client *c, int64_t now)
{
	size_t i, end;

	if (c->state != CS_ONLINE)
		return;
	end = in_flight_end(c);
	for (i = 0; i < end; i++) {
		if (c->nreq > 0 && c->req[0].seq < c->pend[i].seq)
			break;
		if (!c->pend[i].r.sent)
			msg_send(c, now, &c->pend[i]);
	}
	if (c->nreq > 0 && !c->req[0].r.sent &&
	    (c->npend == 0 || c->pend[0].seq > c->req[0].seq))
		req_send(c, now);
}

static void
session_send(struct client *c, int64_t now)
{
	enum wire_kind k = c->state == CS_LOGIN ? WK_LOGIN
	    : c->state == CS_REGISTER		? WK_NEWU
						: WK_LOGOUT;
	struct wire_msg m;

	wire_init(&m, k, "", "", c->user);
	if (c->has_password && k != WK_LOGOUT)
		wire_add(&m, "pw", c->password);
	to_leader(c, &m);
	retry_sent(c, &c->sess, now);
}

static void
where_send(struct client *c, int64_t now)
{
	struct wire_msg m;

	wire_init(&m, WK_WHERE, "*", "", c->user);
	(void)emit_send(c, true, NULL, 0, &m);
	c->where_due = now + c->where_gap;
	c->where_gap = c->where_gap >= c->cfg.where_max_ms / 2
	    ? c->cfg.where_max_ms
	    : c->where_gap * 2;
}

static void
vote_send(struct client *c, int64_t now, const char *why)
{
	struct wire_msg m;

	wire_init(&m, WK_VOTE, "*", why, c->user);
	(void)emit_send(c, true, NULL, 0, &m);
	c->vote_due = now + c->cfg.vote_gap_ms;
}

/* ---- state -------------------------------------------------------------- */

/* Every state change goes through here, and arms the new state's timer. */
static void
set_state(struct client *c, int64_t now, enum client_state s)
{
	c->state = s;
	switch (s) {
	case CS_SEARCHING:
		c->leader.known = false;
		c->best.known = false;
		c->search_start = now;
		c->where_gap = c->cfg.where_min_ms;
		c->collect_due = 0;
		c->no_server_said = c->dead_named = false;
		where_send(c, now);
		break;
	case CS_LOGIN:
	case CS_REGISTER:
	case CS_LOGOUT:
		retry_reset(c, &c->sess);
		session_send(c, now);
		break;
	case CS_ONLINE:
		c->alive_due = now + c->cfg.alive_ms;
		c->heard = true;
		c->missed = 0;
		break;
	case CS_IDLE:
	case CS_DONE:
		break;
	}
}

/* A leader to log in to: the newest `where` answer, or a takeover's. */
static void
follow(struct client *c, int64_t now, const struct client_leader *l)
{
	struct client_out *o;

	c->leader = *l;
	c->redirects = 0;
	if ((o = emit(c, CE_LEADER, NULL)) != NULL)
		o->leader = c->leader;
	if (c->cfg.where_only) {
		c->state = CS_DONE;
		return;
	}
	set_state(c, now, CS_LOGIN);
}

/*
 * The leader is given up: it stopped answering, or `next` (NULL: none)
 * said it took over.  Log in to next or to whoever `where` names, and
 * send again what was not acknowledged, with the same cids.
 */
static void
lose_leader(struct client *c, int64_t now, const char *why,
    const struct client_leader *next)
{
	struct client_out *o;

	if (c->state == CS_LOGOUT) {
		finish(c); /* nobody to say goodbye to */
		return;
	}
	c->dead = c->leader;
	c->failovers++;
	if ((o = emit(c, CE_LOST, why)) != NULL)
		o->leader = c->leader;
	unsend_all(c);
	if (next != NULL)
		follow(c, now, next);
	else
		set_state(c, now, CS_SEARCHING);
}

/* Log in again: to `to`, or wherever `where` says when to is NULL. */
static void
relocate(struct client *c, int64_t now, const struct client_leader *to)
{
	struct client_leader l;
	struct client_out *o;

	unsend_all(c);
	if (to == NULL) {
		set_state(c, now, CS_SEARCHING);
		return;
	}
	l = *to;
	if (l.port != c->leader.port || strcmp(l.addr, c->leader.addr) != 0) {
		c->leader = l;
		if ((o = emit(c, CE_LEADER, NULL)) != NULL)
			o->leader = c->leader;
	}
	set_state(c, now, CS_LOGIN);
}

/* The end of a collection of `where` answers: go to the newest leader. */
static void
decide(struct client *c, int64_t now)
{
	c->collect_due = 0;
	if (!c->best.known)
		return;
	if (same_pair(&c->best, &c->dead)) {
		/* The servers still name the leader that does not answer. */
		c->dead_named = true;
		if (now >= c->vote_due)
			vote_send(c, now, "the leader does not answer");
		c->best.known = false;
		return;
	}
	follow(c, now, &c->best);
}

/* ---- input: datagrams --------------------------------------------------- */

/*
 * A new leader's word, unasked, that it took over (docs/PROTOCOL.md,
 * "Takeover"): from the address it names, with a newer epoch than the
 * leader we follow.  Go there now, as after giving that one up, rather
 * than wait for our resends to it to run out.  Anyone can send this
 * (until issue 8 authenticates it): a forged one sends the session to a
 * server that does not answer our login, and the normal failover comes
 * back; what was not acknowledged goes again with the same cids, so
 * nothing is lost or accepted twice.
 */
static void
on_takeover(struct client *c, int64_t now, const struct wire_msg *m,
    const char *addr, uint16_t port)
{
	struct client_leader l;
	char why[128];

	if ((c->state != CS_ONLINE && c->state != CS_LOGIN &&
		c->state != CS_REGISTER) ||
	    strcmp(m->to, c->user) != 0 || parse_leader(m, true, &l) == -1 ||
	    l.port != port || strcmp(l.addr, addr) != 0 ||
	    l.epoch <= c->leader.epoch ||
	    uuid_cmp(&l.uuid, &c->leader.uuid) == 0)
		return;
	(void)snprintf(why, sizeof(why), "%s took over at epoch %llu",
	    l.name[0] != '\0' ? l.name : "a new leader",
	    (unsigned long long)l.epoch);
	lose_leader(c, now, why, &l);
}

static void
on_leader(struct client *c, int64_t now, const struct wire_msg *m,
    const char *addr, uint16_t port)
{
	struct client_leader l;
	const struct client_leader *b = &c->best;

	if (c->state != CS_SEARCHING) {
		on_takeover(c, now, m, addr, port);
		return;
	}
	if (parse_leader(m, true, &l) == -1)
		return;
	if (!b->known || l.epoch > b->epoch ||
	    (l.epoch == b->epoch && uuid_cmp(&l.uuid, &b->uuid) > 0))
		c->best = l;
	if (c->collect_due == 0)
		c->collect_due = now + c->cfg.collect_ms;
	if (c->cfg.collect_ms == 0)
		decide(c, now);
}

static struct client_stream *
stream_get(struct client *c, const char *key)
{
	struct client_stream *s, *low = NULL;
	size_t i;

	for (i = 0; i < c->nstreams; i++) {
		s = &c->streams[i];
		if (strcmp(s->key, key) == 0)
			return s;
		if (low == NULL || s->used < low->used)
			low = s;
	}
	/* Full: forget the stream quiet for longest (its buffer is kept). */
	s = c->nstreams < CLIENT_STREAMS_MAX ? &c->streams[c->nstreams++] : low;
	(void)strlcpy(s->key, key, sizeof(s->key));
	s->used = c->delivered;
	s->nseen = s->next = 0;
	return s;
}

/* FNV-1a of the sender, a NUL and the text: what a repeat has the same. */
static uint64_t
delivery_digest(const char *from, const char *text)
{
	char buf[USER_NAME_MAX + WIRE_MAX + 1];
	size_t f = strlen(from) + 1, t = strlen(text);

	/* both come from one decoded datagram, checked by the caller */
	if (f > USER_NAME_MAX || t > WIRE_MAX)
		return 0;
	memcpy(buf, from, f);
	memcpy(buf + f, text, t);
	return store_fnv64(buf, f + t);
}

static bool
stream_has(const struct client_stream *s, uint64_t id, uint64_t digest)
{
	uint32_t i;

	for (i = 0; i < s->nseen; i++)
		if (s->seen[i].id == id && s->seen[i].digest == digest)
			return true;
	return false;
}

/*
 * Remembers a delivery shown; past CLIENT_SEEN_MAX it replaces the
 * oldest.  Short of memory it replaces the oldest sooner: a repeat may
 * then be shown twice, nothing is lost.
 */
static void
stream_remember(struct client_stream *s, uint64_t id, uint64_t digest)
{
	struct client_seen *p;
	uint32_t cap;

	if (s->nseen == s->cap && s->cap < CLIENT_SEEN_MAX) {
		cap = s->cap == 0 ? 8 : 2 * s->cap;
		if (cap > CLIENT_SEEN_MAX)
			cap = CLIENT_SEEN_MAX;
		if ((p = reallocarray(s->seen, cap, sizeof(*p))) != NULL) {
			s->seen = p;
			s->cap = cap;
		}
	}
	if (s->cap == 0)
		return;
	if (s->nseen < s->cap) {
		s->seen[s->nseen++] = (struct client_seen){id, digest};
		return;
	}
	s->seen[s->next] = (struct client_seen){id, digest};
	s->next = (s->next + 1) % s->cap;
}

static void
on_delivery(
    struct client *c, const struct wire_msg *m, const char *addr, uint16_t port)
{
	struct client_stream *s;
	struct client_out *o;
	struct wire_msg ack;
	uint64_t id, seq, digest;
	const char *key;

	/*
	 * After our logout any ack of ours comes too late: the relay keeps
	 * the message queued and the next session shows it, once.
	 */
	if (c->state == CS_IDLE || c->state == CS_LOGOUT ||
	    c->state == CS_DONE || wire_get_u64(m, "id", &id) == -1 ||
	    id == 0 || wire_get_u64(m, "seq", &seq) == -1 ||
	    m->from[0] == '\0' || strlen(m->from) >= USER_NAME_MAX ||
	    m->to[0] == '\0' || strlen(m->to) >= ROOM_NAME_MAX)
		return;
	if (from_leader(c, addr, port))
		c->heard = true;
	/* Always acknowledged: a repeat means our ack was lost. */
	wire_init(&ack, WK_ACK, "", "", c->user);
	(void)wire_add_u64(&ack, "id", id);
	(void)emit_send(c, false, addr, port, &ack);

	key = m->to[0] == '#' || strcmp(m->to, "*") == 0 ? m->to : m->from;
	s = stream_get(c, key);
	digest = delivery_digest(m->from, m->body);
	if (stream_has(s, id, digest)) {
		c->duplicates++;
		return;
	}
	stream_remember(s, id, digest);
	s->used = ++c->delivered;
	if ((o = emit(c, CE_MESSAGE, m->body)) == NULL)
		return;
	o->id = id;
	o->seq = seq;
	(void)strlcpy(o->from, m->from, sizeof(o->from));
	(void)strlcpy(o->to, m->to, sizeof(o->to));
}

/* The answer's text: the server's own words, unless they are the code. */
static const char *
answer_text(const struct wire_msg *m, const char *code)
{
	if (m->body[0] == '\0' || strcmp(m->body, code) == 0)
		return client_code_text(code);
	return m->body;
}

/*
 * Errors that are about the session, not the request: true when handled.
 * Only our leader's word counts: a late answer from an old one does not.
 */
static bool
on_session_error(struct client *c, int64_t now, enum wire_kind re,
    const char *code, const struct wire_msg *m, bool leader)
{
	struct client_leader hint;
	size_t i;

	if (strcmp(code, "busy") == 0 || strcmp(code, "backlog") == 0 ||
	    strcmp(code, "order") == 0) {
		/*
		 * Alive but short of memory, or a recipient is behind: not a
		 * reason to fail over; what is pending goes again.
		 */
		for (i = 0; i < c->npend; i++)
			c->pend[i].r.attempts = 0;
		c->sess.attempts = 0;
		if (c->nreq > 0)
			c->req[0].r.attempts = 0;
		return true;
	}
	if (!leader)
		return strcmp(code, "not_leader") == 0 ||
		    strcmp(code, "not_logged_in") == 0 ||
		    strcmp(code, "forged_sender") == 0 ||
		    strcmp(code, "unsupported") == 0;
	if (strcmp(code, "unsupported") == 0 ||
	    strcmp(code, "forged_sender") == 0) {
		fatal_error(c, code, answer_text(m, code));
		return true;
	}
	if (strcmp(code, "not_leader") == 0) {
		if (c->state == CS_LOGOUT) {
			finish(c);
		} else if (++c->redirects <= 3 &&
		    parse_leader(m, false, &hint) == 0 &&
		    !(hint.port == c->leader.port &&
			strcmp(hint.addr, c->leader.addr) == 0)) {
			hint.epoch = c->leader.epoch; /* not said: as good */
			relocate(c, now, &hint);
		} else {
			relocate(c, now, NULL);
		}
		return true;
	}
	if (strcmp(code, "not_logged_in") == 0 && re != WK_LOGIN &&
	    re != WK_NEWU) {
		if (c->state == CS_LOGOUT)
			finish(c);
		else if (c->state == CS_ONLINE)
			relocate(c, now, &c->leader); /* the relay expired us */
		return true;
	}
	return false;
}

static void
on_login_answer(
    struct client *c, int64_t now, const struct wire_msg *m, const char *code)
{
	struct client_out *o;
	uint64_t cid = 0;
	size_t n;

	if (c->state != CS_LOGIN)
		return; /* a late repeat */
	if (code != NULL) {
		if (strcmp(code, "unknown_user") == 0)
			set_state(c, now, CS_REGISTER);
		else
			fatal_error(c, code, answer_text(m, code));
		return;
	}
	/* The highest cid the relay accepted from us: continue above it. */
	if (wire_get_u64(m, "cid", &cid) == 0 && cid < UINT64_MAX &&
	    cid >= c->next_cid)
		c->next_cid = cid + 1;
	c->redirects = 0;
	n = in_flight_end(c);
	set_state(c, now, CS_ONLINE);
	if ((o = emit(c, c->ever_online ? CE_RECONNECTED : CE_READY, NULL)) !=
	    NULL) {
		o->leader = c->leader;
		o->n = n;
	}
	c->ever_online = true;
	pump(c, now);
}

static void
on_msg_answer(
    struct client *c, int64_t now, const struct wire_msg *m, const char *code)
{
	struct client_out *o;
	uint64_t cid, id = 0;
	size_t i;

	if (wire_get_u64(m, "cid", &cid) == -1)
		return;
	for (i = 0; i < c->npend && c->pend[i].cid != cid; i++)
		;
	if (i == c->npend)
		return; /* answered already */
	if (code != NULL) {
		emit_error(c, code, answer_text(m, code), &c->pend[i], false);
	} else {
		(void)wire_get_u64(m, "id", &id);
		c->acked++;
		if ((o = emit(c, CE_ACKED, NULL)) != NULL) {
			o->cid = cid;
			o->has_cid = true;
			o->id = id;
			(void)strlcpy(o->to, c->pend[i].to, sizeof(o->to));
		}
	}
	pend_remove(c, i);
	pump(c, now);
}

static void
room_remove(struct client *c, const char *room)
{
	size_t i;

	for (i = 0; i < c->nrooms; i++) {
		if (strcmp(c->rooms[i], room) != 0)
			continue;
		memmove(&c->rooms[i], &c->rooms[i + 1],
		    (c->nrooms - i - 1) * sizeof(c->rooms[0]));
		c->nrooms--;
		return;
	}
}

/* The room joined last is the current one. */
static void
room_add(struct client *c, const char *room)
{
	room_remove(c, room);
	if (c->nrooms == CLIENT_ROOMS_MAX)
		room_remove(c, c->rooms[0]);
	(void)strlcpy(c->rooms[c->nrooms++], room, sizeof(c->rooms[0]));
}

/* One chunk of a list; true when the list is complete. */
static bool
list_chunk(struct client *c, const struct wire_msg *m)
{
	uint64_t part = 1, parts = 1;

	if (wire_get(m, "part") != NULL &&
	    (wire_get_u64(m, "part", &part) == -1 ||
		wire_get_u64(m, "parts", &parts) == -1))
		return false;
	if (parts == 0 || parts > CLIENT_PARTS_MAX || part == 0 || part > parts)
		return false;
	if (c->parts != NULL && c->nparts != parts)
		parts_reset(c); /* the list changed between two answers */
	if (c->parts == NULL) {
		if ((c->parts = calloc(parts, sizeof(c->parts[0]))) == NULL)
			return false;
		c->nparts = (uint32_t)parts;
	}
	if (c->parts[part - 1] == NULL &&
	    (c->parts[part - 1] = strdup(m->body)) != NULL)
		c->gotparts++;
	return c->gotparts == c->nparts;
}

static char *
list_join(const struct client *c)
{
	size_t len = 1, i, n = 0;
	char *s;

	for (i = 0; i < c->nparts; i++)
		len += strlen(c->parts[i]) + 1;
	if ((s = malloc(len)) == NULL)
		return NULL;
	for (i = 0; i < c->nparts; i++) {
		size_t k = strlen(c->parts[i]);

		if (k == 0)
			continue;
		if (n > 0)
			s[n++] = ' ';
		memcpy(s + n, c->parts[i], k);
		n += k;
	}
	s[n] = '\0';
	return s;
}

static void
on_req_answer(struct client *c, int64_t now, enum wire_kind re,
    const struct wire_msg *m, const char *code)
{
	struct client_req *r = &c->req[0];
	struct client_out *o;

	if (c->nreq == 0 || !r->r.sent || r->kind != re)
		return;
	if (code != NULL) {
		if (re == WK_JOIN)
			room_remove(c, r->to); /* it was current too soon */
		emit_error(c, code, answer_text(m, code), NULL, false);
	} else if (re == WK_JOIN || re == WK_PART) {
		if ((o = emit(c, re == WK_JOIN ? CE_JOINED : CE_PARTED,
			 NULL)) != NULL)
			(void)strlcpy(o->to, r->to, sizeof(o->to));
	} else {
		if (!list_chunk(c, m))
			return;
		if ((o = emit(c, CE_LIST, NULL)) != NULL) {
			o->text = list_join(c);
			o->what = wire_kind_name(re);
			(void)strlcpy(o->to, r->to, sizeof(o->to));
		}
	}
	req_pop(c);
	pump(c, now);
}

/*
 * After a partition, our name was registered on both sides and the
 * other registration kept it (docs/RELAY.md, "Merge"): the leader that
 * merged the two says which name is ours now.  Log in with it there.
 * Only the leader we are logged in to, or logging in to, may rename us:
 * searching or logging out there is no session to rename, and another
 * address is not our leader's word (a late one from an old leader, or
 * anyone's).
 */
static void
on_renamed(struct client *c, int64_t now, const struct wire_msg *m, bool leader)
{
	const char *name = wire_get(m, "name");
	char text[160];

	/*
	 * Only in a session: searching, there is nothing to rename.  It may
	 * come from another server than ours: the leader that merged our
	 * side after a partition writes from its own address.
	 */
	if ((c->state != CS_ONLINE && c->state != CS_LOGIN &&
		c->state != CS_REGISTER) ||
	    name == NULL || name[0] == '\0' ||
	    strlen(name) >= sizeof(c->user) || strchr(name, '@') != NULL)
		return;
	(void)snprintf(text, sizeof(text),
	    "%s was also registered on the other side of a partition; you "
	    "are now %s",
	    c->user, name);
	(void)strlcpy(c->user, name, sizeof(c->user));
	emit_error(c, "renamed", text, NULL, false);
	/* From our leader: log in there again; else find who leads now. */
	relocate(c, now, leader ? &c->leader : NULL);
}

static void
on_answer(struct client *c, int64_t now, const struct wire_msg *m,
    const char *addr, uint16_t port)
{
	const char *rs = wire_get(m, "re"), *code = NULL;
	bool leader = from_leader(c, addr, port);
	enum wire_kind re;

	if (strcmp(m->to, c->user) != 0)
		return; /* not for us */
	if (leader)
		c->heard = true;
	if (m->kind == WK_ERR &&
	    ((code = wire_get(m, "code")) == NULL || code[0] == '\0' ||
		strlen(code) >= CLIENT_CODE_MAX))
		code = "bad_request";
	/* Without re=, the answer is to what we wait for. */
	re = rs != NULL		      ? wire_kind_from_name(rs)
	    : c->state == CS_LOGIN    ? WK_LOGIN
	    : c->state == CS_REGISTER ? WK_NEWU
	    : c->state == CS_LOGOUT   ? WK_LOGOUT
				      : WK_NONE;
	if ((rs == NULL || re == WK_VOTE) && m->kind == WK_OK &&
	    now < c->vote_until) {
		c->vote_until = 0; /* `vote` is answered by every server */
		(void)emit(c, CE_VOTE, m->body);
		return;
	}

	if (code != NULL && strcmp(code, "renamed") == 0) {
		on_renamed(c, now, m, leader);
		return;
	}
	if (code != NULL && on_session_error(c, now, re, code, m, leader))
		return;
	switch (re) {
	case WK_LOGIN:
		on_login_answer(c, now, m, code);
		break;
	case WK_NEWU:
		if (c->state != CS_REGISTER)
			break;
		if (code == NULL)
			set_state(c, now, CS_LOGIN);
		else
			fatal_error(c, code, answer_text(m, code));
		break;
	case WK_LOGOUT:
		if (c->state == CS_LOGOUT)
			finish(c);
		break;
	case WK_MSG:
		on_msg_answer(c, now, m, code);
		break;
	case WK_JOIN:
	case WK_PART:
	case WK_ROOMS:
	case WK_WHO:
	case WK_USERS:
		on_req_answer(c, now, re, m, code);
		break;
	default:
		break; /* alive, or nothing we asked */
	}
}

void
client_on_datagram(struct client *c, int64_t now, const struct wire_msg *m,
    const char *addr, uint16_t port)
{
	if (c->state == CS_DONE || addr == NULL)
		return;
	switch (m->kind) {
	case WK_LEADER:
		if (strcmp(m->to, c->user) == 0 || strcmp(m->to, "*") == 0)
			on_leader(c, now, m, addr, port);
		break;
	case WK_OK:
	case WK_ERR:
		on_answer(c, now, m, addr, port);
		break;
	case WK_MSG:
		on_delivery(c, m, addr, port);
		break;
	default:
		break;
	}
	quit_check(c, now);
}

/* ---- input: time -------------------------------------------------------- */

static void
quit_check(struct client *c, int64_t now)
{
	char text[96];
	size_t n = client_unacked(c);

	if (!c->quitting || c->state == CS_DONE || c->state == CS_LOGOUT)
		return;
	if (n > 0 && now >= c->quit_deadline) {
		c->lost = n;
		(void)snprintf(text, sizeof(text),
		    "%zu message%s not acknowledged", n, n == 1 ? "" : "s");
		emit_error(c, "unacknowledged", text, NULL, false);
	} else if (n > 0 || (c->nreq > 0 && now < c->quit_deadline)) {
		return;
	}
	if (c->state == CS_ONLINE)
		set_state(c, now, CS_LOGOUT);
	else
		finish(c); /* no leader: the relay lets the session expire */
}

/*
 * A resend is due: true when it may go, false when this was the last
 * one, unanswered, and the leader is given up (we are searching).
 */
static bool
retry_due(struct client *c, int64_t now, const struct client_retry *r,
    const char *what)
{
	char why[160];

	if (!r->sent || now < r->due)
		return false;
	if (r->attempts <= c->cfg.retries)
		return true;
	(void)snprintf(why, sizeof(why), "%s not answered after %d sends", what,
	    r->attempts);
	lose_leader(c, now, why, NULL);
	return false;
}

static void
online_tick(struct client *c, int64_t now)
{
	char why[96];
	struct wire_msg m;
	size_t i, end;

	if (now >= c->alive_due) {
		c->missed = c->heard ? 0 : c->missed + 1;
		c->heard = false;
		if (c->missed >= c->cfg.alive_misses) {
			(void)snprintf(why, sizeof(why),
			    "%d keepalives not answered", c->missed);
			lose_leader(c, now, why, NULL);
			return;
		}
		wire_init(&m, WK_ALIVE, "", "", c->user);
		to_leader(c, &m);
		c->alive_due = now + c->cfg.alive_ms;
	}
	end = in_flight_end(c);
	for (i = 0; i < end; i++) {
		struct client_pending *p = &c->pend[i];

		(void)snprintf(why, sizeof(why), "message %llu",
		    (unsigned long long)p->cid);
		if (retry_due(c, now, &p->r, why))
			msg_send(c, now, p);
		if (c->state != CS_ONLINE)
			return;
	}
	if (c->nreq > 0 &&
	    retry_due(c, now, &c->req[0].r, wire_kind_name(c->req[0].kind)))
		req_send(c, now);
}

void
client_tick(struct client *c, int64_t now)
{
	char why[128];
	struct client_out *o;

	switch (c->state) {
	case CS_SEARCHING:
		if (c->collect_due != 0 && now >= c->collect_due)
			decide(c, now);
		if (c->state != CS_SEARCHING)
			break;
		if (now >= c->where_due)
			where_send(c, now);
		if (c->cfg.search_ms > 0 && !c->no_server_said &&
		    now - c->search_start >= c->cfg.search_ms) {
			c->no_server_said = true;
			if (c->dead_named)
				(void)snprintf(why, sizeof(why),
				    "the servers still name leader %s, "
				    "which does not answer",
				    c->dead.name);
			else
				(void)snprintf(
				    why, sizeof(why), "no server answered");
			if ((o = emit(c, CE_NO_SERVER, why)) != NULL)
				o->n = (uint64_t)(now - c->search_start);
		}
		break;
	case CS_LOGIN:
	case CS_REGISTER:
	case CS_LOGOUT:
		if (retry_due(c, now, &c->sess,
			c->state == CS_REGISTER	   ? "newu"
			    : c->state == CS_LOGIN ? "login"
						   : "logout"))
			session_send(c, now);
		break;
	case CS_ONLINE:
		online_tick(c, now);
		break;
	case CS_IDLE:
	case CS_DONE:
		break;
	}
	quit_check(c, now);
}

static int64_t
min64(int64_t a, int64_t b)
{
	return a < b ? a : b;
}

int64_t
client_next_deadline(const struct client *c)
{
	int64_t next = INT64_MAX;
	size_t i, end;

	switch (c->state) {
	case CS_SEARCHING:
		next = c->where_due;
		if (c->collect_due != 0)
			next = min64(next, c->collect_due);
		if (c->cfg.search_ms > 0 && !c->no_server_said)
			next = min64(next, c->search_start + c->cfg.search_ms);
		break;
	case CS_LOGIN:
	case CS_REGISTER:
	case CS_LOGOUT:
		next = c->sess.due;
		break;
	case CS_ONLINE:
		next = c->alive_due;
		end = in_flight_end(c);
		for (i = 0; i < end; i++)
			if (c->pend[i].r.sent)
				next = min64(next, c->pend[i].r.due);
		if (c->nreq > 0 && c->req[0].r.sent)
			next = min64(next, c->req[0].r.due);
		break;
	case CS_IDLE:
	case CS_DONE:
		return INT64_MAX;
	}
	/* Logging out, the quit deadline has done its part (quit_check). */
	if (c->quitting && c->state != CS_LOGOUT)
		next = min64(next, c->quit_deadline);
	return next;
}

/* ---- input: the user ---------------------------------------------------- */

size_t
client_encoded_len(const char *s)
{
	return wire_escaped_len(s, strlen(s));
}

const char *
client_body_check(const char *body, size_t *enclen)
{
	const unsigned char *p;

	*enclen = client_encoded_len(body);
	if (body[0] == '\0')
		return "bad_body";
	if (*enclen > CLIENT_BODY_MAX)
		return "too_long";
	for (p = (const unsigned char *)body; *p != '\0'; p++)
		if ((*p < 0x20 && *p != '\t' && *p != '\n') || *p == 0x7f)
			return "bad_body";
	return NULL;
}

/* Refuses a request while there is no session to carry it. */
static bool
can_request(struct client *c)
{
	if (c->state == CS_DONE || c->state == CS_LOGOUT || c->quitting) {
		emit_error(
		    c, "not_logged_in", "the session is ending", NULL, false);
		return false;
	}
	if (!c->ever_online) {
		emit_error(
		    c, "not_logged_in", "not logged in yet", NULL, false);
		return false;
	}
	return true;
}

int
client_send(struct client *c, int64_t now, const char *to, const char *body)
{
	struct client_pending *p;
	struct client_out *o;
	struct wire_msg m;
	char buf[WIRE_MAX];
	const char *code;
	size_t len;
	char *copy;

	if (!can_request(c))
		return -1;
	if (to[0] == '\0' || strlen(to) >= ROOM_NAME_MAX) {
		emit_error(c, to[0] == '#' ? "bad_room" : "unknown_user", NULL,
		    NULL, false);
		return -1;
	}
	if ((code = client_body_check(body, &len)) != NULL) {
		emit_error(c, code, NULL, NULL, false);
		return -1;
	}
	if (c->npend == CLIENT_QUEUE_MAX) {
		emit_error(c, "full", "too many messages waiting", NULL, false);
		return -1;
	}
	/* The codec refuses what is not UTF-8: find out now, not later. */
	wire_init(&m, WK_MSG, to, body, c->user);
	(void)wire_add_u64(&m, "cid", c->next_cid);
	if (wire_encode(&m, buf, sizeof(buf), &len) != WIRE_OK) {
		emit_error(c, "bad_body", "not valid UTF-8", NULL, false);
		return -1;
	}
	if ((copy = strdup(body)) == NULL) {
		emit_error(c, "busy", "out of memory", NULL, false);
		return -1;
	}
	p = &c->pend[c->npend++];
	memset(p, 0, sizeof(*p));
	p->seq = c->next_seq++;
	p->cid = c->next_cid++;
	(void)strlcpy(p->to, to, sizeof(p->to));
	p->body = copy;
	retry_reset(c, &p->r);
	if ((o = emit(c, CE_SENT, NULL)) != NULL) {
		o->cid = p->cid;
		o->has_cid = true;
		(void)strlcpy(o->to, to, sizeof(o->to));
	}
	pump(c, now);
	return 0;
}

/* room, or else the current room; NULL (and an error) when none. */
static const char *
room_or_current(struct client *c, const char *room)
{
	if (room == NULL && (room = client_room(c)) == NULL)
		emit_error(c, "not_in_room", "not in a room", NULL, false);
	return room;
}

int
client_say(struct client *c, int64_t now, const char *body)
{
	const char *room = room_or_current(c, NULL);

	return room == NULL ? -1 : client_send(c, now, room, body);
}

static int
req_add(struct client *c, int64_t now, enum wire_kind kind, const char *to)
{
	struct client_req *r;

	if (!can_request(c))
		return -1;
	if (to != NULL &&
	    (to[0] != '#' || to[1] == '\0' || strlen(to) >= ROOM_NAME_MAX)) {
		emit_error(c, "bad_room", NULL, NULL, false);
		return -1;
	}
	if (c->nreq == CLIENT_REQ_MAX) {
		emit_error(c, "full", "too many requests waiting", NULL, false);
		return -1;
	}
	r = &c->req[c->nreq++];
	memset(r, 0, sizeof(*r));
	r->seq = c->next_seq++;
	r->kind = kind;
	if (to != NULL)
		(void)strlcpy(r->to, to, sizeof(r->to));
	retry_reset(c, &r->r);
	pump(c, now);
	return 0;
}

/* The room is current at once, so that what follows goes there. */
int
client_join(struct client *c, int64_t now, const char *room)
{
	if (req_add(c, now, WK_JOIN, room) == -1)
		return -1;
	room_add(c, room);
	return 0;
}

int
client_part(struct client *c, int64_t now, const char *room)
{
	char r[ROOM_NAME_MAX];

	if ((room = room_or_current(c, room)) == NULL)
		return -1;
	(void)strlcpy(r, room, sizeof(r)); /* room may be in c->rooms */
	if (req_add(c, now, WK_PART, r) == -1)
		return -1;
	room_remove(c, r);
	return 0;
}

int
client_list(
    struct client *c, int64_t now, enum wire_kind kind, const char *room)
{
	if (kind == WK_WHO)
		return (room = room_or_current(c, room)) == NULL
		    ? -1
		    : req_add(c, now, kind, room);
	if (kind != WK_ROOMS && kind != WK_USERS)
		return -1;
	return req_add(c, now, kind, NULL);
}

void
client_vote(struct client *c, int64_t now)
{
	vote_send(c, now, "asked by a user");
	c->vote_until = now + 2 * c->cfg.retry_max_ms + c->cfg.vote_gap_ms;
}

void
client_quit(struct client *c, int64_t now, int64_t deadline)
{
	if (c->state == CS_DONE)
		return;
	if (c->state == CS_IDLE) {
		finish(c);
		return;
	}
	if (!c->quitting) {
		c->quitting = true;
		c->quit_deadline = deadline;
	}
	quit_check(c, now);
}

void
client_start(struct client *c, int64_t now)
{
	if (c->state == CS_IDLE)
		set_state(c, now, CS_SEARCHING);
}

/* ---- queries and set-up ------------------------------------------------- */

size_t
client_unacked(const struct client *c)
{
	return c->npend;
}

bool
client_queue_full(const struct client *c)
{
	return c->npend == CLIENT_QUEUE_MAX || c->nreq == CLIENT_REQ_MAX;
}

const char *
client_room(const struct client *c)
{
	return c->nrooms > 0 ? c->rooms[c->nrooms - 1] : NULL;
}

const char *
client_code_text(const char *code)
{
	size_t i;

	for (i = 0; i < sizeof(code_texts) / sizeof(code_texts[0]); i++)
		if (strcmp(code_texts[i].code, code) == 0)
			return code_texts[i].text;
	return "refused by the server";
}

const char *
client_state_name(enum client_state s)
{
	if ((int)s < 0 || s > CS_DONE)
		return "?";
	return state_names[s];
}

void
client_cfg_defaults(struct client_cfg *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->alive_ms = 1000;
	cfg->alive_misses = 3;
	cfg->retry_min_ms = 100;
	cfg->retry_max_ms = 1000;
	cfg->retries = 4;
	cfg->where_min_ms = 50;
	cfg->where_max_ms = 1000;
	cfg->collect_ms = 200;
	cfg->search_ms = 10000;
	cfg->vote_gap_ms = 1000;
}

int
client_init(struct client *c, const struct client_cfg *cfg, const char *user)
{
	memset(c, 0, sizeof(*c));
	if (user == NULL || copy_field(c->user, sizeof(c->user), user) == -1)
		return -1;
	if (cfg->alive_ms <= 0 || cfg->alive_misses < 1 ||
	    cfg->retry_min_ms <= 0 || cfg->retry_max_ms < cfg->retry_min_ms ||
	    cfg->retries < 0 || cfg->where_min_ms <= 0 ||
	    cfg->where_max_ms < cfg->where_min_ms || cfg->collect_ms < 0 ||
	    cfg->search_ms < 0 || cfg->vote_gap_ms < 0)
		return -1;
	c->cfg = *cfg;
	c->next_cid = 1;
	c->pend = calloc(CLIENT_QUEUE_MAX, sizeof(c->pend[0]));
	c->req = calloc(CLIENT_REQ_MAX, sizeof(c->req[0]));
	c->streams = calloc(CLIENT_STREAMS_MAX, sizeof(c->streams[0]));
	if (c->pend == NULL || c->req == NULL || c->streams == NULL) {
		client_free(c);
		return -1;
	}
	return 0;
}

void
client_free(struct client *c)
{
	size_t i;

	for (i = 0; i < c->npend; i++)
		free(c->pend[i].body);
	parts_reset(c);
	client_drain(c);
	free(c->pend);
	free(c->req);
	for (i = 0; i < c->nstreams; i++)
		free(c->streams[i].seen);
	free(c->streams);
	free(c->out);
	explicit_bzero(c->password, sizeof(c->password));
	memset(c, 0, sizeof(*c));
}

int
client_set_password(struct client *c, const char *pw, size_t len)
{
	explicit_bzero(c->password, sizeof(c->password));
	c->has_password = false;
	if (pw == NULL)
		return 0;
	if (len == 0 || len > CLIENT_PW_MAX || memchr(pw, '\0', len) != NULL)
		return -1;
	memcpy(c->password, pw, len);
	c->password[len] = '\0';
	c->has_password = true;
	return 0;
}
