/* chat: ringchatd's chat service: client datagrams, relay, replication. */
#include <arpa/inet.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server.h"

#define USERS_WRITE_DELAY_MS 50
#define NEED_INTERVAL_MS     100

static void chat_flush(struct server *, int64_t now);

/* ---- helpers ---------------------------------------------------------- */

static struct chat_peer *
peer_get(struct chat *c, const struct uuid *u)
{
	struct chat_peer *free_slot = NULL;
	size_t i;

	for (i = 0; i < RING_MAX; i++) {
		if (c->peers[i].used && uuid_cmp(&c->peers[i].uuid, u) == 0)
			return &c->peers[i];
		if (!c->peers[i].used && free_slot == NULL)
			free_slot = &c->peers[i];
	}
	if (free_slot != NULL) {
		memset(free_slot, 0, sizeof(*free_slot));
		free_slot->used = true;
		free_slot->uuid = *u;
	}
	return free_slot;
}

static void
peer_reset(struct chat_peer *p)
{
	free(p->snap);
	memset(p, 0, sizeof(*p));
}

static void
log_clear(struct chat *c)
{
	size_t i;

	for (i = 0; i < c->log_n; i++) {
		struct chat_logent *e =
		    &c->log[(c->log_start + i) % CHAT_LOG_MAX];

		free(e->text);
		e->text = NULL;
	}
	c->log_start = 0;
	c->log_n = 0;
}

/* The logged op of `version`, NULL when it is no longer (or not) kept. */
static const struct chat_logent *
log_find(const struct chat *c, uint64_t version)
{
	const struct chat_logent *first;
	uint64_t off;

	if (c->log_n == 0)
		return NULL;
	first = &c->log[c->log_start];
	if (version < first->version)
		return NULL;
	off = version - first->version;
	if (off >= c->log_n)
		return NULL;
	return &c->log[(c->log_start + off) % CHAT_LOG_MAX];
}

static int
log_append(struct chat *c, uint64_t version, const char *text, size_t len)
{
	struct chat_logent *e;
	char *copy;

	if ((copy = malloc(len + 1)) == NULL)
		return -1;
	memcpy(copy, text, len);
	copy[len] = '\0';
	if (c->log_n == CHAT_LOG_MAX) {
		free(c->log[c->log_start].text);
		c->log[c->log_start].text = NULL;
		c->log_start = (c->log_start + 1) % CHAT_LOG_MAX;
		c->log_n--;
	}
	e = &c->log[(c->log_start + c->log_n) % CHAT_LOG_MAX];
	e->version = version;
	e->text = copy;
	e->len = len;
	c->log_n++;
	return 0;
}

static void
users_changed(struct chat *c, int64_t now)
{
	if (!c->users_dirty) {
		c->users_dirty = true;
		c->users_write_ms = now + USERS_WRITE_DELAY_MS;
	}
}

static void
users_write(struct server *s)
{
	struct chat *c = &s->chat;
	struct users_state fresh;
	struct store_error err;
	char path[PATH_MAX];
	int n;

	c->users_dirty = false;
	store_users_init(&fresh);
	if (relay_export_users(
		&c->relay, &c->users, (int64_t)time(NULL), &fresh) == -1) {
		log_warnx("users.json: out of memory");
		return;
	}
	store_users_free(&c->users);
	c->users = fresh;
	n = snprintf(path, sizeof(path), "%s/users.json", s->cfg.state_dir);
	if (n < 0 || (size_t)n >= sizeof(path))
		log_warnx("%s/users.json: path too long", s->cfg.state_dir);
	else if (store_write_users(path, &c->users, &err) == -1)
		log_warnx("%s", err.text);
}

static bool
is_live_backup(const struct server *s, const struct member *m)
{
	return m->alive && uuid_cmp(&m->uuid, &s->ring.self) != 0;
}

/*
 * Iterates over the live backups and their replication state: start
 * with *i = 0; NULL at the end.
 */
static struct chat_peer *
next_backup(struct server *s, size_t *i, const struct member **m)
{
	struct chat_peer *p;

	for (; *i < s->ring.n; (*i)++) {
		*m = &s->ring.m[*i];
		if (!is_live_backup(s, *m) ||
		    (p = peer_get(&s->chat, &(*m)->uuid)) == NULL)
			continue;
		(*i)++;
		return p;
	}
	return NULL;
}

/* ---- leader: sending ops and snapshots ---------------------------------- */

static void
send_op(struct server *s, const struct member *to, const struct chat_logent *e)
{
	char id[UUID_STRLEN + 1];
	struct wire_msg m;

	wire_init(&m, WK_REPL, uuid_format(&to->uuid, id), e->text,
	    server_self_id(s));
	wire_add_u64(&m, "epoch", s->el.epoch);
	wire_add_u64(&m, "v", e->version);
	server_send_member(s, &to->uuid, &m);
}

static void
start_snapshot(struct server *s, struct chat_peer *p, int64_t now)
{
	char *buf;
	size_t len;

	if (relay_snapshot(&s->chat.relay, &buf, &len) != RELAY_OK) {
		log_warnx("snapshot: out of memory");
		return;
	}
	free(p->snap);
	p->snap = buf;
	p->snap_len = len;
	p->snap_acked = 0;
	p->snap_sent = 0;
	p->snap_version = s->chat.relay.version;
	p->snapping = true;
	p->snap_ms = now;
	s->chat.snaps_sent++;
}

/* The end of the chunk starting at off: never inside a UTF-8 sequence. */
static size_t
chunk_end(const char *buf, size_t len, size_t off)
{
	size_t end = off + CHAT_SNAP_CHUNK;

	if (end >= len)
		return len;
	while (end > off && ((unsigned char)buf[end] & 0xc0) == 0x80)
		end--;
	return end;
}

/*
 * Sends the chunks after the last one sent, up to a window beyond what
 * the backup acknowledged; with resend, from the acknowledged offset
 * again (a chunk was lost).
 */
static void
send_snapshot_window(struct server *s, const struct member *to,
    struct chat_peer *p, bool resend, int64_t now)
{
	char id[UUID_STRLEN + 1], chunk[CHAT_SNAP_CHUNK + 1];
	size_t off = resend || p->snap_sent < p->snap_acked ? p->snap_acked
							    : p->snap_sent;
	size_t limit = p->snap_acked + CHAT_SNAP_WINDOW * CHAT_SNAP_CHUNK;

	uuid_format(&to->uuid, id);
	while (off < p->snap_len && off < limit) {
		size_t end = chunk_end(p->snap, p->snap_len, off);
		struct wire_msg m;

		memcpy(chunk, p->snap + off, end - off);
		chunk[end - off] = '\0';
		wire_init(&m, WK_SNAP, id, chunk, server_self_id(s));
		wire_add_u64(&m, "epoch", s->el.epoch);
		wire_add_u64(&m, "v", p->snap_version);
		wire_add_u64(&m, "off", off);
		wire_add_u64(&m, "total", p->snap_len);
		server_send_member(s, &to->uuid, &m);
		off = end;
	}
	if (off > p->snap_sent)
		p->snap_sent = off;
	p->snap_ms = now + CHAT_RESEND_MS;
}

/* Sends the ops a backup lacks, or a snapshot when they are gone. */
static void
catch_up(
    struct server *s, const struct member *to, struct chat_peer *p, int64_t now)
{
	struct chat *c = &s->chat;
	uint64_t v;
	int n = 0;

	if (p->snapping) {
		send_snapshot_window(s, to, p, true, now);
		return;
	}
	if (p->acked >= c->relay.version)
		return;
	if (log_find(c, p->acked + 1) == NULL) {
		start_snapshot(s, p, now);
		if (p->snapping)
			send_snapshot_window(s, to, p, false, now);
		return;
	}
	for (v = p->acked + 1; v <= c->relay.version && n < CHAT_OP_WINDOW;
	     v++, n++) {
		const struct chat_logent *e = log_find(c, v);

		if (e == NULL)
			break;
		send_op(s, to, e);
		c->repl_resent++;
	}
	p->resend_ms = now + CHAT_RESEND_MS;
}

/*
 * Messages every live backup now has are confirmed to the relay: their
 * senders get their ok and the deliveries start.
 */
static void
release_waits(struct server *s, int64_t now)
{
	struct chat *c = &s->chat;
	uint64_t min = UINT64_MAX;
	const struct member *m;
	struct chat_peer *p;
	bool any = false;
	size_t i;

	if (!c->leader)
		return;
	i = 0;
	while ((p = next_backup(s, &i, &m)) != NULL)
		if (p->acked < min)
			min = p->acked;
	while (c->nwait > 0) {
		struct chat_wait *w = &c->wait[c->wait_head];

		if (w->version > min)
			break;
		relay_on_replicated(&c->relay, now, w->id);
		c->wait_head = (c->wait_head + 1) % c->capwait;
		c->nwait--;
		any = true;
	}
	if (any)
		chat_flush(s, now);
}

static int
wait_push(struct chat *c, uint64_t version, uint64_t id)
{
	if (c->nwait == c->capwait) {
		size_t ncap = c->capwait ? c->capwait * 2 : 256, i;
		struct chat_wait *nw = reallocarray(NULL, ncap, sizeof(*nw));

		if (nw == NULL)
			return -1;
		for (i = 0; i < c->nwait; i++)
			nw[i] = c->wait[(c->wait_head + i) % c->capwait];
		free(c->wait);
		c->wait = nw;
		c->capwait = ncap;
		c->wait_head = 0;
	}
	c->wait[(c->wait_head + c->nwait) % c->capwait] =
	    (struct chat_wait){.version = version, .id = id};
	c->nwait++;
	return 0;
}

/* ---- relay outputs to the wire ----------------------------------------- */

static void
send_reply(struct server *s, const struct relay_out *o)
{
	struct sockaddr_in to;
	struct wire_msg m;
	const char *text = o->text != NULL ? o->text : "";

	if (net_sockaddr(&to, o->addr, o->port) == -1)
		return;
	if (o->err == RELAY_OK) {
		wire_init(&m, WK_OK, o->user, text, server_self_id(s));
	} else {
		wire_init(&m, WK_ERR, o->user, relay_err_code(o->err),
		    server_self_id(s));
		wire_add(&m, "code", relay_err_code(o->err));
	}
	wire_add(&m, "re", wire_kind_name(o->re));
	if (o->has_cid)
		wire_add_u64(&m, "cid", o->cid);
	if (o->has_id)
		wire_add_u64(&m, "id", o->id);
	if (o->parts > 0) {
		wire_add_u64(&m, "part", o->part);
		wire_add_u64(&m, "parts", o->parts);
	}
	server_send(s, s->data_fd, &to, &m);
}

static void
send_delivery(struct server *s, const struct relay_out *o)
{
	char body[WIRE_MAX + 1];
	struct sockaddr_in to;
	struct wire_msg m;

	if (o->bodylen >= sizeof(body) ||
	    net_sockaddr(&to, o->addr, o->port) == -1)
		return;
	memcpy(body, o->body, o->bodylen);
	body[o->bodylen] = '\0';
	wire_init(&m, WK_MSG, o->dest, body, o->from);
	wire_add_u64(&m, "id", o->id);
	wire_add_u64(&m, "seq", o->seq);
	server_send(s, s->data_fd, &to, &m);
}

static void
replicate(struct server *s, const struct relay_op *op, int64_t now)
{
	struct chat *c = &s->chat;
	char text[RELAY_OP_TEXT_MAX + 1];
	const struct chat_logent *e;
	const struct member *m;
	struct chat_peer *p;
	size_t len, i;

	if (relay_op_format(op, text, sizeof(text), &len) == -1)
		fatalx("relay op %s v%llu does not format",
		    relay_op_name(op->type), (unsigned long long)op->version);
	if (log_append(c, op->version, text, len) == -1 ||
	    (op->type == ROP_MSG && wait_push(c, op->version, op->id) == -1))
		fatalx("replication log: out of memory");
	if (op->type != ROP_MSG && op->type != ROP_ACK)
		users_changed(c, now);
	e = log_find(c, op->version);
	i = 0;
	while ((p = next_backup(s, &i, &m)) != NULL) {
		/* In order only: a lagging backup catches up on its own. */
		if (p->snapping || p->acked + 1 != op->version)
			continue;
		send_op(s, m, e);
		c->repl_sent++;
		p->resend_ms = now + CHAT_RESEND_MS;
	}
}

static void
relay_event(struct server *s, const struct relay_out *o)
{
	struct store_kv kv[4] = {{.key = "user", .type = KV_STR, .s = o->user},
	    {.key = "dest", .type = KV_STR, .s = o->dest},
	    {.key = "id", .type = KV_UINT, .u = o->id},
	    {.key = "detail",
		.type = KV_STR,
		.s = o->detail != NULL ? o->detail : ""}};

	char name[64];

	/* Prefixed: the relay's names must not collide with the election's. */
	snprintf(name, sizeof(name), "relay_%s", relay_event_name(o->ev));
	log_debug("relay %s user %s dest %s id %llu", relay_event_name(o->ev),
	    o->user, o->dest, (unsigned long long)o->id);
	events_emit(&s->ev, name, kv, 4);
}

/* Carries out the relay's outputs; a confirmation may make more. */
static void
chat_flush(struct server *s, int64_t now)
{
	struct chat *c = &s->chat;
	bool no_backups;
	size_t i;

	do {
		uint64_t release[64];
		size_t nrel = 0, k;

		no_backups = true;
		for (i = 0; i < s->ring.n; i++)
			if (is_live_backup(s, &s->ring.m[i]))
				no_backups = false;
		for (i = 0; i < c->relay.nout; i++) {
			const struct relay_out *o = &c->relay.out[i];

			switch (o->type) {
			case RO_REPLY:
				send_reply(s, o);
				break;
			case RO_DELIVER:
				send_delivery(s, o);
				break;
			case RO_REPLICATE:
				replicate(s, &o->op, now);
				break;
			case RO_EVENT:
				relay_event(s, o);
				break;
			}
		}
		relay_drain(&c->relay);
		/* Alone: nobody to wait for, the message is as safe as it gets.
		 */
		if (no_backups && c->leader) {
			while (c->nwait > 0 && nrel < 64) {
				release[nrel++] = c->wait[c->wait_head].id;
				c->wait_head = (c->wait_head + 1) % c->capwait;
				c->nwait--;
			}
			for (k = 0; k < nrel; k++)
				relay_on_replicated(&c->relay, now, release[k]);
		}
	} while (c->relay.nout > 0);
}

/* ---- client datagrams ------------------------------------------------- */

static void
reply_not_leader(
    struct server *s, const struct wire_msg *m, const struct sockaddr_in *from)
{
	const struct member *lm =
	    s->el.has_leader ? ring_find_const(&s->ring, &s->el.leader) : NULL;
	char lb[UUID_STRLEN + 1];
	struct wire_msg r;

	wire_init(&r, WK_ERR, m->from, "not_leader", server_self_id(s));
	wire_add(&r, "code", "not_leader");
	wire_add(&r, "re", wire_kind_name(m->kind));
	if (lm != NULL && uuid_cmp(&lm->uuid, &s->ring.self) != 0) {
		wire_add(&r, "leader", uuid_format(&lm->uuid, lb));
		wire_add(&r, "addr", lm->addr);
		wire_add_u64(&r, "port", lm->port);
	}
	server_send(s, s->data_fd, from, &r);
}

void
chat_on_client(struct server *s, const struct wire_msg *m,
    const struct sockaddr_in *from, int64_t now)
{
	struct chat *c = &s->chat;
	struct relay *r = &c->relay;
	char addr[INET_ADDRSTRLEN];
	uint16_t port = ntohs(from->sin_port);
	uint64_t n = 0;

	if (!c->leader) {
		reply_not_leader(s, m, from);
		return;
	}
	if (inet_ntop(AF_INET, &from->sin_addr, addr, sizeof(addr)) == NULL)
		return;
	switch (m->kind) {
	case WK_NEWU:
		relay_on_newu(r, now, m->from, addr, port);
		break;
	case WK_LOGIN:
		relay_on_login(r, now, m->from, addr, port);
		break;
	case WK_LOGOUT:
		relay_on_logout(r, now, m->from, addr, port);
		break;
	case WK_ALIVE:
		relay_on_alive(r, now, m->from, addr, port);
		break;
	case WK_MSG:
		/* A missing or malformed cid is the relay's bad_cid (0). */
		if (wire_get_u64(m, "cid", &n) == -1)
			n = 0;
		relay_on_msg(r, now, m->from, addr, port, m->to, m->body, n);
		break;
	case WK_ACK:
		if (wire_get_u64(m, "id", &n) == -1) {
			c->client_bad++;
			return;
		}
		relay_on_ack(r, now, m->from, addr, port, n);
		break;
	case WK_JOIN:
		relay_on_join(r, now, m->from, addr, port, m->to);
		break;
	case WK_PART:
		relay_on_part(r, now, m->from, addr, port, m->to);
		break;
	case WK_ROOMS:
		relay_on_rooms(r, now, m->from, addr, port);
		break;
	case WK_WHO:
		relay_on_who(r, now, m->from, addr, port, m->to);
		break;
	case WK_USERS:
		relay_on_users(r, now, m->from, addr, port);
		break;
	default:
		c->client_bad++;
		return;
	}
	chat_flush(s, now);
}

/* ---- backup side ------------------------------------------------------ */

static bool
from_leader(
    const struct server *s, const struct member *from, const struct wire_msg *m)
{
	uint64_t epoch;

	return !s->chat.leader && s->el.has_leader &&
	    uuid_cmp(&from->uuid, &s->el.leader) == 0 &&
	    wire_get_u64(m, "epoch", &epoch) == 0 && epoch == s->el.epoch;
}

static void
send_need(struct server *s, int64_t now)
{
	struct chat *c = &s->chat;
	char id[UUID_STRLEN + 1];
	struct wire_msg m;

	if (!s->el.has_leader || c->leader)
		return;
	wire_init(
	    &m, WK_NEED, uuid_format(&s->el.leader, id), "", server_self_id(s));
	wire_add_u64(&m, "epoch", s->el.epoch);
	wire_add_u64(&m, "have", c->relay.version);
	if (c->want_snap) {
		wire_add_u64(&m, "snap", 1);
		wire_add_u64(&m, "snapv", c->rx_version);
		wire_add_u64(&m, "snapoff", c->rx_len);
	}
	server_send_member(s, &s->el.leader, &m);
	c->need_ms = now + NEED_INTERVAL_MS;
}

void
chat_on_repl(struct server *s, const struct member *from,
    const struct wire_msg *m, int64_t now)
{
	struct chat *c = &s->chat;
	struct relay_op op;
	enum relay_err e;

	if (!from_leader(s, from, m))
		return;
	if (c->want_snap) {
		if (now >= c->need_ms)
			send_need(s, now);
		return;
	}
	if (relay_op_parse(&op, m->body, strlen(m->body)) == -1) {
		c->client_bad++;
		return;
	}
	e = relay_apply(&c->relay, &op);
	relay_drain(&c->relay);
	if (e == RELAY_OK && op.type != ROP_MSG && op.type != ROP_ACK)
		users_changed(c, now);
	if (e == RELAY_EDIVERGED) {
		log_warnx("replica diverged at op %llu: asking for a snapshot",
		    (unsigned long long)op.version);
		c->want_snap = true;
	}
	send_need(s, now);
}

void
chat_on_snap(struct server *s, const struct member *from,
    const struct wire_msg *m, int64_t now)
{
	struct chat *c = &s->chat;
	uint64_t v, off, total;
	size_t blen = strlen(m->body);

	if (!from_leader(s, from, m) || wire_get_u64(m, "v", &v) == -1 ||
	    wire_get_u64(m, "off", &off) == -1 ||
	    wire_get_u64(m, "total", &total) == -1 || total > CHAT_SNAP_MAX ||
	    off + blen > total) {
		c->client_bad++;
		return;
	}
	if (off == 0 &&
	    (c->rx == NULL || c->rx_version != v || c->rx_total != total)) {
		char *buf = malloc(total + 1);

		if (buf == NULL) {
			log_warnx("snapshot of %llu bytes: out of memory",
			    (unsigned long long)total);
			return;
		}
		free(c->rx);
		c->rx = buf;
		c->rx_len = 0;
		c->rx_chunks = 0;
		c->rx_total = total;
		c->rx_version = v;
		c->want_snap = true;
	}
	if (c->rx == NULL || v != c->rx_version || off != c->rx_len) {
		if (now >= c->need_ms)
			send_need(s, now); /* out of order: say where we are */
		return;
	}
	memcpy(c->rx + c->rx_len, m->body, blen);
	c->rx_len += blen;
	c->rx_chunks++;
	if (c->rx_len == c->rx_total) {
		c->rx[c->rx_len] = '\0';
		if (relay_restore(&c->relay, c->rx, c->rx_len) == RELAY_OK) {
			log_info("snapshot of %zu bytes restored: version %llu",
			    c->rx_len, (unsigned long long)c->relay.version);
			c->want_snap = false;
			c->snaps_received++;
			users_changed(c, now);
		} else {
			log_warnx("snapshot from the leader is corrupt: asking "
				  "again");
		}
		free(c->rx);
		c->rx = NULL;
		c->rx_len = c->rx_total = 0;
	}
	/* Ack every few chunks and at the end, so the window moves. */
	if (!c->want_snap || c->rx_chunks % 8 == 0)
		send_need(s, now);
}

/* ---- leader side of acknowledgements ------------------------------------ */

void
chat_on_need(struct server *s, const struct member *from,
    const struct wire_msg *m, int64_t now)
{
	struct chat *c = &s->chat;
	uint64_t epoch, have, snap = 0, snapv = 0, snapoff = 0;
	struct chat_peer *p;

	if (!c->leader || wire_get_u64(m, "epoch", &epoch) == -1 ||
	    epoch != s->el.epoch || wire_get_u64(m, "have", &have) == -1 ||
	    (p = peer_get(c, &from->uuid)) == NULL) {
		c->client_bad++;
		return;
	}
	wire_get_u64(m, "snap", &snap);
	wire_get_u64(m, "snapv", &snapv);
	wire_get_u64(m, "snapoff", &snapoff);
	if (p->snapping) {
		if (snap && snapv == p->snap_version &&
		    snapoff > p->snap_acked && snapoff <= p->snap_len)
			p->snap_acked = snapoff;
		if (!snap) { /* restored */
			free(p->snap);
			p->snap = NULL;
			p->snapping = false;
			p->acked = have;
		} else if (snapv == p->snap_version) {
			send_snapshot_window(s, from, p, false, now);
			return;
		} else {
			/* The backup lost track (restart): start over. */
			send_snapshot_window(s, from, p, true, now);
			return;
		}
	} else if (snap) {
		start_snapshot(s, p, now);
		if (p->snapping)
			send_snapshot_window(s, from, p, false, now);
		return;
	} else {
		p->acked = have;
	}
	release_waits(s, now);
	if (p->acked < c->relay.version && now >= p->resend_ms)
		catch_up(s, from, p, now);
}

/* ---- roles, liveness, time ------------------------------------------------
 */

void
chat_become_leader(struct server *s, int64_t now)
{
	struct chat *c = &s->chat;
	size_t i;

	for (i = 0; i < RING_MAX; i++)
		peer_reset(&c->peers[i]);
	log_clear(c);
	c->nwait = c->wait_head = 0;
	c->want_snap = false;
	free(c->rx);
	c->rx = NULL;
	c->rx_len = c->rx_total = 0;
	c->leader = true;
	relay_become_leader(&c->relay, now);
	chat_flush(s, now);
}

void
chat_become_backup(struct server *s, int64_t now)
{
	struct chat *c = &s->chat;
	size_t i;

	if (c->leader)
		relay_become_backup(&c->relay);
	relay_drain(&c->relay);
	c->leader = false;
	for (i = 0; i < RING_MAX; i++)
		peer_reset(&c->peers[i]);
	log_clear(c);
	c->nwait = c->wait_head = 0;
	chat_leader_changed(s, now);
}

void
chat_leader_changed(struct server *s, int64_t now)
{
	struct chat *c = &s->chat;

	if (c->leader)
		return;
	/* Ops of the old leader the new one lacks must not linger here. */
	c->want_snap = true;
	free(c->rx);
	c->rx = NULL;
	c->rx_len = c->rx_total = 0;
	c->rx_version = 0;
	c->need_ms = now;
}

void
chat_members_changed(struct server *s, int64_t now)
{
	release_waits(s, now);
}

void
chat_tick(struct server *s, int64_t now)
{
	struct chat *c = &s->chat;
	const struct member *m;
	struct chat_peer *p;
	size_t i;

	if (c->leader) {
		relay_tick(&c->relay, now);
		chat_flush(s, now);
		i = 0;
		while ((p = next_backup(s, &i, &m)) != NULL) {
			if (p->snapping ? now >= p->snap_ms
					: (p->acked < c->relay.version &&
					      now >= p->resend_ms))
				catch_up(s, m, p, now);
		}
	} else if (c->want_snap && s->el.role == ROLE_BACKUP &&
	    now >= c->need_ms) {
		send_need(s, now);
	}
	if (c->users_dirty && now >= c->users_write_ms)
		users_write(s);
}

int64_t
chat_next_deadline(const struct server *s)
{
	const struct chat *c = &s->chat;
	int64_t d = INT64_MAX, x;
	size_t i;

	if (c->leader) {
		if ((x = relay_next_deadline(&c->relay)) < d)
			d = x;
		for (i = 0; i < RING_MAX; i++) {
			const struct chat_peer *p = &c->peers[i];

			if (!p->used)
				continue;
			if (p->snapping && p->snap_ms < d)
				d = p->snap_ms;
			else if (!p->snapping && p->acked < c->relay.version &&
			    p->resend_ms < d)
				d = p->resend_ms;
		}
	} else if (c->want_snap && s->el.role == ROLE_BACKUP &&
	    c->need_ms < d) {
		d = c->need_ms;
	}
	if (c->users_dirty && c->users_write_ms < d)
		d = c->users_write_ms;
	return d;
}

/* ---- start, stop, listings ------------------------------------------------
 */

void
chat_init(struct server *s)
{
	struct chat *c = &s->chat;
	struct relay_cfg cfg;

	memset(c, 0, sizeof(*c));
	relay_cfg_defaults(&cfg);
	if (relay_init(&c->relay, &cfg) != RELAY_OK)
		fatalx("relay configuration out of range");
	store_users_init(&c->users);
}

void
chat_free(struct server *s)
{
	struct chat *c = &s->chat;
	size_t i;

	if (c->users_dirty)
		users_write(s);
	for (i = 0; i < RING_MAX; i++)
		peer_reset(&c->peers[i]);
	log_clear(c);
	free(c->wait);
	free(c->rx);
	relay_free(&c->relay);
	store_users_free(&c->users);
}

void
chat_print_users(struct server *s, FILE *f)
{
	struct users_state st;
	size_t i;

	store_users_init(&st);
	if (relay_export_users(&s->chat.relay, &s->chat.users,
		(int64_t)time(NULL), &st) == -1) {
		fprintf(f, "error: out of memory\n");
		return;
	}
	fprintf(f, "%zu users, %zu online (relay version %llu)\n", st.n,
	    relay_online_count(&s->chat.relay),
	    (unsigned long long)s->chat.relay.version);
	for (i = 0; i < st.n; i++) {
		const struct user *u = &st.u[i];
		size_t k;

		struct relay_user_info info;

		fprintf(f, "  %-20s %-7s %s:%u", u->name,
		    u->online ? "online" : "offline", u->addr, u->port);
		if (relay_user_get(&s->chat.relay, u->name, &info) == 0 &&
		    s->chat.leader)
			fprintf(f, " queued %zu in-flight %zu", info.queued,
			    info.inflight);
		for (k = 0; k < u->nrooms; k++)
			fprintf(f, " %s", u->rooms[k]);
		fputc('\n', f);
	}
	store_users_free(&st);
}

void
chat_print_rooms(struct server *s, FILE *f)
{
	size_t i, n = relay_room_count(&s->chat.relay);

	fprintf(f, "%zu rooms\n", n);
	for (i = 0; i < n; i++) {
		size_t members = 0;
		const char *name = relay_room_at(&s->chat.relay, i, &members);

		fprintf(f, "  %-20s %zu members\n", name, members);
	}
}
