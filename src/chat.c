/* chat: ringchatd's chat service: client datagrams, relay, replication. */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pwworker.h"
#include "server.h"

#define USERS_WRITE_DELAY_MS 50
#define NEED_INTERVAL_MS     100
#define MERGE_RESEND_MS	     100
#define MERGE_TRIES	     3
/* chat.log beyond this: a snapshot replaces it (chat.snap). */
#define JOURNAL_COMPACT_BYTES (16u << 20)
/* The password worker's results are client work: the data port's rank. */
#define PW_PRIO	  3
#define PW_LOG_MS 10000

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
	free(p->mrx);
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
log_append(struct chat *c, uint64_t version, uint64_t hash, const char *text,
    size_t len)
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
	e->hash = hash;
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

/* ---- the journal -------------------------------------------------- */

static void
journal_failed(struct chat *c, const struct store_error *err)
{
	if (!c->journal_broken)
		log_warnx("%s: messages are no longer kept on disk here "
			  "(the backups still have them)",
		    err->text);
	c->journal_broken = true;
}

static void
journal_op(struct chat *c, const char *text, size_t len)
{
	struct store_error err;

	if (c->journal.fd != -1 &&
	    store_journal_append(&c->journal, text, len, &err) == -1)
		journal_failed(c, &err);
}

/* Makes what was written durable: before any acknowledgement leaves. */
static void
journal_sync(struct server *s)
{
	struct store_error err;

	if ((s->cfg.no_fsync
		    ? store_journal_flush(&s->chat.journal, &err)
		    : store_journal_sync(&s->chat.journal, &err)) == -1)
		journal_failed(&s->chat, &err);
}

/* The journal starts again from the state as it is now. */
static void
journal_reset(struct chat *c)
{
	struct store_error err;
	char *buf;
	size_t len;

	if (c->journal.fd == -1)
		return;
	if (relay_snapshot(&c->relay, &buf, &len) != RELAY_OK) {
		log_warnx("chat journal: out of memory for a snapshot");
		return;
	}
	if (store_journal_reset(&c->journal, buf, len, &err) == -1)
		journal_failed(c, &err);
	else
		c->journal_broken = false;
	free(buf);
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

/*
 * Sends ops first..last (all in the log) to a backup, as many to a repl
 * datagram as fit, separated by CHAT_REPL_SEP.  Returns the last version
 * sent.
 */
static uint64_t
send_ops(
    struct server *s, const struct member *to, uint64_t first, uint64_t last)
{
	char id[UUID_STRLEN + 1], body[CHAT_REPL_BYTES + RELAY_OP_TEXT_MAX + 1];
	uint64_t v = first;

	uuid_format(&to->uuid, id);
	while (v <= last) {
		const struct chat_logent *e;
		size_t used = 0, enc = 0, n = 0, el;
		uint64_t start = v;
		struct wire_msg m;

		for (; v <= last && (e = log_find(&s->chat, v)) != NULL; v++) {
			el =
			    wire_escaped_len(e->text, e->len) + (n > 0 ? 3 : 0);
			if (n > 0 && enc + el > CHAT_REPL_BYTES)
				break;
			if (n > 0)
				body[used++] = CHAT_REPL_SEP;
			memcpy(body + used, e->text, e->len);
			used += e->len;
			enc += el;
			n++;
		}
		if (n == 0)
			break;
		body[used] = '\0';
		wire_init(&m, WK_REPL, id, body, server_self_id(s));
		wire_add_u64(&m, "epoch", s->el.epoch);
		wire_add_u64(&m, "v", start);
		wire_add_u64(&m, "n", n);
		server_send_member(s, &to->uuid, &m);
		s->chat.repl_sent++;
	}
	return v - 1;
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
 * Sends the chunks of buf (len bytes, snapshot version v) from off up
 * to limit to server `to` as snap datagrams (merge: a backup's state for
 * its leader).  Returns the offset reached.
 */
static size_t
send_chunks(struct server *s, const struct uuid *to, const char *buf,
    size_t len, uint64_t v, size_t off, size_t limit, bool merge)
{
	char id[UUID_STRLEN + 1], chunk[CHAT_SNAP_CHUNK + 1];

	uuid_format(to, id);
	while (off < len && off < limit) {
		size_t end = chunk_end(buf, len, off);
		struct wire_msg m;

		memcpy(chunk, buf + off, end - off);
		chunk[end - off] = '\0';
		wire_init(&m, WK_SNAP, id, chunk, server_self_id(s));
		wire_add_u64(&m, "epoch", s->el.epoch);
		if (merge)
			wire_add_u64(&m, "merge", 1);
		wire_add_u64(&m, "v", v);
		wire_add_u64(&m, "off", off);
		wire_add_u64(&m, "total", len);
		server_send_member(s, to, &m);
		off = end;
	}
	return off;
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
	size_t off = resend || p->snap_sent < p->snap_acked ? p->snap_acked
							    : p->snap_sent;
	size_t limit = p->snap_acked + CHAT_SNAP_WINDOW * CHAT_SNAP_CHUNK;

	off = send_chunks(s, &to->uuid, p->snap, p->snap_len, p->snap_version,
	    off, limit, false);
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
	uint64_t last;

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
	/* Go-back-N: the backup drops every op after a lost one. */
	last = c->relay.version;
	if (last > p->acked + CHAT_OP_WINDOW)
		last = p->acked + CHAT_OP_WINDOW;
	p->sent = send_ops(s, to, p->acked + 1, last);
	c->repl_resent++;
	p->resend_ms = now + CHAT_RESEND_MS;
}

/*
 * Sends every verified backup the ops it was not sent yet, batched, up
 * to CHAT_PIPE_MAX beyond what it acknowledged: a pipeline, not one op
 * per round trip.  A lost datagram shows as no progress for
 * CHAT_RESEND_MS (catch_up).
 */
static void
flush_repl(struct server *s, int64_t now)
{
	struct chat *c = &s->chat;
	const struct member *m;
	struct chat_peer *p;
	uint64_t last;
	size_t i = 0;

	c->repl_pending = false;
	while ((p = next_backup(s, &i, &m)) != NULL) {
		if (p->snapping || p->merging || !p->verified)
			continue; /* ops go once it has caught up */
		if (p->sent < p->acked)
			p->sent = p->acked;
		last = c->relay.version;
		if (last > p->acked + CHAT_PIPE_MAX)
			last = p->acked + CHAT_PIPE_MAX;
		if (p->sent >= last)
			continue;
		if (p->sent == p->acked)
			p->resend_ms = now + CHAT_RESEND_MS;
		p->sent = send_ops(s, m, p->sent + 1, last);
	}
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

/* Which limit a `full` answer to request re met, in words. */
static void
full_text(const struct server *s, enum wire_kind re, char *buf, size_t sz)
{
	const struct relay_cfg *cfg = &s->chat.relay.cfg;

	if (re == WK_NEWU)
		(void)snprintf(buf, sz,
		    "the server's limit of %u registered users is reached "
		    "(--max-users)",
		    cfg->users_max);
	else if (re == WK_JOIN)
		(void)snprintf(buf, sz,
		    "the server's limit of %u rooms is reached (--max-rooms)",
		    cfg->rooms_max);
	else if (re == WK_MSG)
		(void)snprintf(buf, sz,
		    "the recipient is offline with %u messages waiting "
		    "(--max-queue), or the server's message memory is full",
		    cfg->queue_max);
	else
		(void)snprintf(buf, sz, "a limit of the server is reached");
}

static void
send_reply(struct server *s, const struct relay_out *o)
{
	struct sockaddr_in to;
	struct wire_msg m;
	const char *text = o->text != NULL ? o->text : "";
	char why[160];

	if (net_sockaddr(&to, o->addr, o->port) == -1)
		return;
	if (o->err == RELAY_OK) {
		wire_init(&m, WK_OK, o->user, text, server_self_id(s));
	} else if (o->err == RELAY_EFULL) {
		full_text(s, o->re, why, sizeof(why));
		wire_init(&m, WK_ERR, o->user, why, server_self_id(s));
	} else {
		wire_init(&m, WK_ERR, o->user, relay_err_code(o->err),
		    server_self_id(s));
	}
	if (o->err != RELAY_OK) {
		wire_add(&m, "code", relay_err_code(o->err));
		if (o->err == RELAY_ERENAMED && o->text != NULL) {
			struct relay_user_info u;

			wire_add(&m, "name", o->text);
			/*
			 * A merged user's session may be unknown here: it
			 * came with the user (relay_merge).
			 */
			if (relay_user_get(&s->chat.relay, o->text, &u) == 0 &&
			    u.key[0] != '\0')
				(void)server_session_bind(
				    s, u.key, o->addr, o->port);
		}
		if (o->err == RELAY_ESLOW_DOWN)
			wire_add_u64(&m, "retry_ms", o->retry_ms);
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
	size_t len;

	if (relay_op_format(op, text, sizeof(text), &len) == -1)
		fatalx("relay op %s v%llu does not format",
		    relay_op_name(op->type), (unsigned long long)op->version);
	journal_op(c, text, len);
	if (log_append(c, op->version, op->hash, text, len) == -1 ||
	    (op->type == ROP_MSG && wait_push(c, op->version, op->id) == -1))
		fatalx("replication log: out of memory");
	if (op->type != ROP_MSG && op->type != ROP_ACK)
		users_changed(c, now);
	/* Batched with the other ops of this wake-up (chat_tick). */
	c->repl_pending = true;
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
			if (c->nwait > 0)
				journal_sync(s); /* alone: our disk is all */
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

/* ---- passwords ---------------------------------------------------- */

/* A result of the password worker, in the session it was asked in. */
static void
pw_done(struct server *s, const struct pw_job *j, int64_t now)
{
	struct chat *c = &s->chat;
	struct relay *r = &c->relay;
	struct relay_user_info u;

	if (!c->leader || j->gen != c->pw_gen) {
		c->pw_dropped++; /* asked of another leadership */
		return;
	}
	(void)relay_set_source_key(r, j->key);
	if (j->result == AUTH_ENOMEM) {
		relay_refuse(r, j->kind == PW_HASH ? WK_NEWU : WK_LOGIN,
		    RELAY_ENOMEM, j->user, j->addr, j->port, 0);
	} else if (j->kind == PW_HASH) {
		if (j->result == AUTH_OK)
			relay_on_newu_pw(
			    r, now, j->user, j->addr, j->port, j->hash);
		else
			relay_refuse(r, WK_NEWU, RELAY_EARG, j->user, j->addr,
			    j->port, 0);
	} else if (relay_user_get(r, j->user, &u) == -1 ||
	    strcmp(u.pwhash, j->hash) != 0) {
		c->pw_dropped++; /* checked against what is no longer there */
	} else if (j->result == AUTH_OK || j->result == AUTH_EPW_WRONG) {
		relay_on_login_pw(
		    r, now, j->user, j->addr, j->port, j->result == AUTH_OK);
	} else {
		/* users.json and the journal check hashes: not expected. */
		log_limited(&c->pw_limit, now, PW_LOG_MS,
		    "user %s: the stored password hash cannot be used (%s)",
		    j->user, auth_strerror(j->result));
		relay_refuse(
		    r, WK_LOGIN, RELAY_EARG, j->user, j->addr, j->port, 0);
	}
	(void)relay_set_source_key(r, NULL);
}

static void
pw_readable(struct loop *l, int fd, void *arg)
{
	struct server *s = arg;
	int64_t now = loop_now_ms();
	struct pw_job j;
	bool any = false;

	(void)l;
	(void)fd;
	while (s->chat.pw != NULL && pwworker_result(s->chat.pw, &j) == 1) {
		pw_done(s, &j, now);
		any = true;
	}
	if (any)
		chat_flush(s, now);
}

/* The password worker, started (and registered with the loop) lazily. */
static struct pwworker *
pw_worker(struct server *s, int64_t now)
{
	struct chat *c = &s->chat;

	if (c->pw != NULL)
		return c->pw;
	if ((c->pw = pwworker_start(PWWORKER_QUEUE_MAX)) == NULL) {
		log_limited(&c->pw_limit, now, PW_LOG_MS,
		    "password worker: %s: passwords answered busy",
		    strerror(errno));
		return NULL;
	}
	if (loop_add_fd(
		&s->loop, pwworker_fd(c->pw), PW_PRIO, pw_readable, s) == -1) {
		log_limited(&c->pw_limit, now, PW_LOG_MS,
		    "password worker: no room in the loop: passwords answered "
		    "busy");
		pwworker_stop(c->pw);
		c->pw = NULL;
		return NULL;
	}
	log_info("password worker started");
	return c->pw;
}

/*
 * Hands a password to the worker: hashed for a newu (PW_HASH), checked
 * against hash for a login (PW_VERIFY).  A resend (same user and key)
 * while its job waits is ignored, the job answers it; another login of
 * the user meanwhile is told to slow down, so that guesses cannot run
 * in parallel past the delays.
 */
static void
pw_submit(struct server *s, enum pw_kind kind, const char *user,
    const char *addr, uint16_t port, const char *pw, const char *hash,
    int64_t now)
{
	enum wire_kind re = kind == PW_HASH ? WK_NEWU : WK_LOGIN;
	struct chat *c = &s->chat;
	struct relay *r = &c->relay;
	size_t len = strlen(pw), same = 0;
	struct pwworker *w;
	struct pw_job job;

	if (len == 0 || len > AUTH_PW_MAX) {
		relay_refuse(r, re, RELAY_EARG, user, addr, port, 0);
		return;
	}
	if ((w = pw_worker(s, now)) == NULL) {
		relay_refuse(r, re, RELAY_ENOMEM, user, addr, port, 0);
		return;
	}
	if (pwworker_count(w, kind, user, s->req_key, &same) > 0) {
		if (same > 0) {
			c->pw_resends++;
			return;
		}
		if (kind == PW_VERIFY) {
			relay_refuse(r, re, RELAY_ESLOW_DOWN, user, addr, port,
			    CHAT_PW_BUSY_MS);
			return;
		}
	}
	memset(&job, 0, sizeof(job));
	job.kind = kind;
	job.gen = c->pw_gen;
	strlcpy(job.user, user, sizeof(job.user));
	strlcpy(job.addr, addr, sizeof(job.addr));
	job.port = port;
	strlcpy(job.key, s->req_key, sizeof(job.key));
	if (hash != NULL)
		strlcpy(job.hash, hash, sizeof(job.hash));
	if (pwworker_submit(w, &job, pw, len) == -1) {
		c->pw_busy++;
		relay_refuse(r, re, RELAY_ENOMEM, user, addr, port, 0);
		return;
	}
	c->pw_jobs++;
}

/* newu, with a password (wire extension pw) or, in an open cluster, none. */
static void
client_newu(struct server *s, const struct wire_msg *m, const char *addr,
    uint16_t port, int64_t now)
{
	struct relay *r = &s->chat.relay;
	const char *pw = wire_get(m, "pw");

	if (!relay_newu_registers(r, m->from))
		relay_on_newu(r, now, m->from, addr, port); /* no hash needed */
	else if (pw != NULL)
		pw_submit(s, PW_HASH, m->from, addr, port, pw, NULL, now);
	else if (s->keyed)
		relay_refuse(
		    r, WK_NEWU, RELAY_EPW_REQUIRED, m->from, addr, port, 0);
	else
		relay_on_newu(r, now, m->from, addr, port);
}

/* login: a user with a password has it verified off the loop first. */
static void
client_login(struct server *s, const struct wire_msg *m, const char *addr,
    uint16_t port, int64_t now)
{
	struct relay *r = &s->chat.relay;
	const char *pw = wire_get(m, "pw");
	struct relay_user_info u;
	bool resend;
	uint32_t wait;

	/* No password needed, or none given (password_required). */
	if (pw == NULL || !relay_login_wants_pw(r, m->from, addr, port) ||
	    relay_user_get(r, m->from, &u) == -1) {
		relay_on_login(r, now, m->from, addr, port);
		return;
	}
	if ((wait = relay_pw_wait(r, now, m->from, addr, port, &resend)) > 0) {
		/* The same login again: its bad_password is on its way. */
		if (!resend)
			relay_refuse(r, WK_LOGIN, RELAY_ESLOW_DOWN, m->from,
			    addr, port, wait);
		return;
	}
	pw_submit(s, PW_VERIFY, m->from, addr, port, pw, u.pwhash, now);
}

/* ---- client datagrams: the rest --------------------------------------- */

void
chat_on_client(struct server *s, const struct wire_msg *m,
    const struct sockaddr_in *from, int64_t now)
{
	struct chat *c = &s->chat;
	struct relay *r = &c->relay;
	char addr[INET_ADDRSTRLEN];
	uint16_t port = ntohs(from->sin_port);
	uint64_t n = 0, after = 0;

	/* The session the request came in binds (newu, login) or checks. */
	(void)relay_set_source_key(r, s->req_key);
	if (!c->leader) {
		reply_not_leader(s, m, from);
		return;
	}
	if (inet_ntop(AF_INET, &from->sin_addr, addr, sizeof(addr)) == NULL)
		return;
	switch (m->kind) {
	case WK_NEWU:
		client_newu(s, m, addr, port, now);
		break;
	case WK_LOGIN:
		client_login(s, m, addr, port, now);
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
		/* after: the sender's previous open message (0: none). */
		if (wire_get(m, "after") != NULL &&
		    wire_get_u64(m, "after", &after) == -1)
			after = n; /* malformed: bad_cid */
		relay_on_msg_after(
		    r, now, m->from, addr, port, m->to, m->body, n, after);
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

/*
 * "I have ops 1..have, digest hash": the cumulative ack of ops, the
 * hello to a new leader, and the snapshot's progress.
 */
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
	wire_add_u64(&m, "hash", c->relay.hash);
	if (c->hello)
		wire_add_u64(&m, "hello", 1);
	if (c->want_snap) {
		wire_add_u64(&m, "snap", 1);
		wire_add_u64(&m, "snapv", c->rx_version);
		wire_add_u64(&m, "snapoff", c->rx_len);
	}
	server_send_member(s, &s->el.leader, &m);
	c->need_ms = now + NEED_INTERVAL_MS;
	c->ack_due = false;
}

/*
 * Applies one replicated op.  Returns false when the ops after it in
 * the same datagram cannot follow (a gap, a divergence, garbage).
 */
static bool
repl_apply(struct server *s, const char *text, size_t len, int64_t now)
{
	struct chat *c = &s->chat;
	struct relay_op op;
	enum relay_err e;

	if (relay_op_parse(&op, text, len) == -1) {
		c->client_bad++;
		return false;
	}
	e = relay_apply(&c->relay, &op);
	relay_drain(&c->relay);
	switch (e) {
	case RELAY_OK:
		journal_op(c, text, len);
		if (log_append(c, op.version, c->relay.hash, text, len) == -1)
			log_clear(c); /* out of memory: the log is a cache */
		if (op.type != ROP_MSG && op.type != ROP_ACK)
			users_changed(c, now);
		return true;
	case RELAY_EOLD:
		return true; /* sent again: had it */
	case RELAY_EDIVERGED:
		log_warnx("replica diverged at op %llu: asking for a snapshot",
		    (unsigned long long)op.version);
		c->want_snap = true;
		return false;
	default:
		return false; /* a gap: our need says where we are */
	}
}

void
chat_on_repl(struct server *s, const struct member *from,
    const struct wire_msg *m, int64_t now)
{
	struct chat *c = &s->chat;
	const char *op = m->body, *sep;
	uint64_t n = 1, k;

	if (!from_leader(s, from, m))
		return;
	/* Ops come only once the leader knows our history fits its own. */
	c->hello = false;
	if (c->want_snap) {
		if (now >= c->need_ms)
			send_need(s, now);
		return;
	}
	/* n ops separated by CHAT_REPL_SEP; no n: one op (older leaders). */
	if (wire_get(m, "n") != NULL &&
	    (wire_get_u64(m, "n", &n) == -1 || n == 0)) {
		c->client_bad++;
		return;
	}
	for (k = 0; k < n; k++) {
		sep = strchr(op, CHAT_REPL_SEP);
		if ((sep == NULL) != (k == n - 1)) {
			c->client_bad++; /* not n ops */
			break;
		}
		if (!repl_apply(s, op,
			sep != NULL ? (size_t)(sep - op) : strlen(op), now))
			break;
		op = sep + 1;
	}
	/* Acknowledged once the journal is synced (chat_tick). */
	c->ack_due = true;
}

/* A snapshot chunk for us (backup) from the leader. */
static void
snap_rx(struct server *s, const struct wire_msg *m, uint64_t v, uint64_t off,
    uint64_t total, int64_t now)
{
	struct chat *c = &s->chat;
	size_t blen = strlen(m->body);

	c->hello = false;
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
		free(c->offer); /* merged already, or not wanted */
		c->offer = NULL;
	}
	/*
	 * rx holds rx_total bytes: a chunk that says another total for the
	 * same snapshot could run past it (chat_on_snap checked off + blen
	 * against its own total only).  Not the leader's: refused.
	 */
	if (c->rx != NULL && v == c->rx_version && total != c->rx_total) {
		c->client_bad++;
		return;
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
			log_clear(c);
			users_changed(c, now);
			journal_reset(c);
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

/* ---- merge: a backup's diverged state taken in by the leader ---------- */

static void
send_merge_request(
    struct server *s, const struct member *to, struct chat_peer *p, int64_t now)
{
	char id[UUID_STRLEN + 1];
	struct wire_msg m;

	wire_init(
	    &m, WK_NEED, uuid_format(&to->uuid, id), "", server_self_id(s));
	wire_add_u64(&m, "epoch", s->el.epoch);
	wire_add_u64(&m, "merge", 1);
	wire_add_u64(&m, "off", p->mrx_len);
	server_send_member(s, &to->uuid, &m);
	p->mrx_ms = now + MERGE_RESEND_MS;
}

static void
merge_start(
    struct server *s, const struct member *to, struct chat_peer *p, int64_t now)
{
	char id[UUID_STRLEN + 1];

	if (!p->merging) {
		log_info("backup %s has a history this leader lacks: asking "
			 "for its state to merge it",
		    uuid_format(&to->uuid, id));
		p->mrx_tries = 0;
	}
	p->merging = true;
	p->verified = false;
	free(p->mrx);
	p->mrx = NULL;
	p->mrx_len = p->mrx_total = p->mrx_chunks = 0;
	send_merge_request(s, to, p, now);
}

/* The merge is over (or given up): the backup takes our state. */
static void
merge_done(
    struct server *s, const struct member *to, struct chat_peer *p, int64_t now)
{
	free(p->mrx);
	p->mrx = NULL;
	p->mrx_len = p->mrx_total = 0;
	p->merging = false;
	p->verified = true;
	start_snapshot(s, p, now);
	if (p->snapping)
		send_snapshot_window(s, to, p, false, now);
}

static void
merge_apply(
    struct server *s, const struct member *to, struct chat_peer *p, int64_t now)
{
	struct chat *c = &s->chat;
	char id[UUID_STRLEN + 1];
	struct relay other;
	size_t nu = 0, nm = 0;
	enum relay_err e;

	uuid_format(&to->uuid, id);
	if (relay_init(&other, &c->relay.cfg) != RELAY_OK)
		fatalx("relay configuration out of range");
	if ((e = relay_restore(&other, p->mrx, p->mrx_len)) != RELAY_OK) {
		relay_free(&other);
		log_warnx("state of %s to merge is %s", id, relay_err_code(e));
		if (++p->mrx_tries < MERGE_TRIES) {
			merge_start(s, to, p, now);
			return;
		}
		log_warnx("giving up the merge of %s's state", id);
		merge_done(s, to, p, now);
		return;
	}
	e = relay_merge(&c->relay, now, &other, &nu, &nm);
	relay_free(&other);
	chat_flush(s, now);
	c->merges++;
	c->merged_users += nu;
	c->merged_msgs += nm;
	if (e != RELAY_OK)
		log_warnx(
		    "merge of %s's state stopped: %s", id, relay_err_code(e));
	log_info("merged the state of %s: %zu users and %zu messages new here",
	    id, nu, nm);
	{
		struct store_kv kv[3] = {
		    {.key = "server", .type = KV_STR, .s = id},
		    {.key = "users", .type = KV_UINT, .u = nu},
		    {.key = "messages", .type = KV_UINT, .u = nm}};

		events_emit(&s->ev, "merge", kv, 3);
	}
	merge_done(s, to, p, now);
}

/* A chunk of a backup's state for the merge (we lead). */
static void
merge_rx(struct server *s, const struct member *from, const struct wire_msg *m,
    uint64_t v, uint64_t off, uint64_t total, int64_t now)
{
	struct chat *c = &s->chat;
	struct chat_peer *p = peer_get(c, &from->uuid);
	size_t blen = strlen(m->body);
	uint64_t epoch;

	if (!c->leader || p == NULL || !p->merging ||
	    wire_get_u64(m, "epoch", &epoch) == -1 || epoch != s->el.epoch)
		return;
	if (off == 0 && p->mrx == NULL) {
		if ((p->mrx = malloc(total + 1)) == NULL) {
			log_warnx("state of %llu bytes to merge: out of memory",
			    (unsigned long long)total);
			return;
		}
		p->mrx_len = p->mrx_chunks = 0;
		p->mrx_total = total;
		p->mrx_version = v;
	}
	if (p->mrx == NULL || v != p->mrx_version || total != p->mrx_total ||
	    off != p->mrx_len) {
		if (now >= p->mrx_ms)
			send_merge_request(s, from, p, now);
		return;
	}
	memcpy(p->mrx + p->mrx_len, m->body, blen);
	p->mrx_len += blen;
	p->mrx_chunks++;
	if (p->mrx_len == p->mrx_total) {
		p->mrx[p->mrx_len] = '\0';
		merge_apply(s, from, p, now);
	} else if (p->mrx_chunks % 8 == 0) {
		send_merge_request(s, from, p, now);
	}
}

/* The leader asks for our state from offset off (we are a backup). */
static void
offer_send(struct server *s, uint64_t off)
{
	struct chat *c = &s->chat;
	size_t limit;

	if (c->offer == NULL || off == 0) {
		free(c->offer);
		c->offer = NULL;
		if (relay_snapshot(&c->relay, &c->offer, &c->offer_len) !=
		    RELAY_OK) {
			c->offer = NULL;
			log_warnx("state for the merge: out of memory");
			return;
		}
		c->offer_version = c->relay.version;
		log_info("the leader merges our state: sending %zu bytes",
		    c->offer_len);
	}
	if (off > c->offer_len)
		return;
	limit = off + CHAT_SNAP_WINDOW / 8 * CHAT_SNAP_CHUNK;
	(void)send_chunks(s, &s->el.leader, c->offer, c->offer_len,
	    c->offer_version, off, limit, true);
}

void
chat_on_snap(struct server *s, const struct member *from,
    const struct wire_msg *m, int64_t now)
{
	struct chat *c = &s->chat;
	uint64_t v, off, total, merge = 0;
	size_t blen = strlen(m->body);

	if (wire_get_u64(m, "v", &v) == -1 ||
	    wire_get_u64(m, "off", &off) == -1 ||
	    wire_get_u64(m, "total", &total) == -1 || total > CHAT_SNAP_MAX ||
	    off > total || blen > total - off) {
		c->client_bad++;
		return;
	}
	(void)wire_get_u64(m, "merge", &merge);
	if (merge)
		merge_rx(s, from, m, v, off, total, now);
	else if (from_leader(s, from, m))
		snap_rx(s, m, v, off, total, now);
}

/* ---- leader side of acknowledgements ------------------------------------ */

/* Whether a backup's history (have, hash) is a prefix of ours. */
static bool
history_fits(const struct chat *c, uint64_t have, uint64_t hash)
{
	const struct chat_logent *e;

	if (have == 0)
		return true;
	if (have == c->relay.version)
		return hash == c->relay.hash;
	if (have > c->relay.version || (e = log_find(c, have)) == NULL)
		return false;
	return e->hash == hash;
}

void
chat_on_need(struct server *s, const struct member *from,
    const struct wire_msg *m, int64_t now)
{
	struct chat *c = &s->chat;
	uint64_t epoch, have, hash = 0, snap = 0, snapv = 0, snapoff = 0;
	uint64_t merge = 0, off = 0;
	struct chat_peer *p;

	(void)wire_get_u64(m, "merge", &merge);
	if (merge) {
		/* The leader asks a backup for its state. */
		if (from_leader(s, from, m) &&
		    wire_get_u64(m, "off", &off) == 0)
			offer_send(s, off);
		return;
	}
	if (!c->leader || wire_get_u64(m, "epoch", &epoch) == -1 ||
	    epoch != s->el.epoch || wire_get_u64(m, "have", &have) == -1 ||
	    (p = peer_get(c, &from->uuid)) == NULL) {
		c->client_bad++;
		return;
	}
	(void)wire_get_u64(m, "hash", &hash);
	(void)wire_get_u64(m, "snap", &snap);
	(void)wire_get_u64(m, "snapv", &snapv);
	(void)wire_get_u64(m, "snapoff", &snapoff);
	if (p->merging) {
		if (now >= p->mrx_ms)
			send_merge_request(s, from, p, now);
		return;
	}
	if (p->snapping) {
		if (snap && snapv == p->snap_version &&
		    snapoff > p->snap_acked && snapoff <= p->snap_len)
			p->snap_acked = snapoff;
		if (!snap && have == p->snap_version) { /* restored */
			free(p->snap);
			p->snap = NULL;
			p->snapping = false;
			p->acked = have;
		} else if (!snap) {
			/* A hello or an ack from before: the chunks go on. */
			send_snapshot_window(s, from, p, false, now);
			return;
		} else if (snapv == p->snap_version) {
			send_snapshot_window(s, from, p, false, now);
			return;
		} else {
			/* The backup lost track (restart): start over. */
			send_snapshot_window(s, from, p, true, now);
			return;
		}
	} else if (!p->verified) {
		if (!history_fits(c, have, hash)) {
			merge_start(s, from, p, now);
			return;
		}
		p->verified = true;
		p->acked = have;
		if (snap) {
			/* It wants a snapshot (it diverged, or restarts). */
			start_snapshot(s, p, now);
			if (p->snapping)
				send_snapshot_window(s, from, p, false, now);
			return;
		}
		p->resend_ms = now; /* catch up now */
	} else if (snap) {
		start_snapshot(s, p, now);
		if (p->snapping)
			send_snapshot_window(s, from, p, false, now);
		return;
	} else if (have > p->acked) {
		/* Progress: the resend clock starts again. */
		p->resend_ms = now + CHAT_RESEND_MS;
		p->acked = have;
		c->repl_pending = true; /* the pipeline may move on */
	} else if (have < p->acked) {
		p->acked = p->sent = have; /* it restarted with less */
	}
	release_waits(s, now);
	if (p->acked < c->relay.version && now >= p->resend_ms)
		catch_up(s, from, p, now);
}

/* ---- roles, liveness, time ------------------------------------------------
 */

/*
 * Tells every session the relay has online that we lead now: the answer
 * a `where` gets, unasked, from our data port, so that a client comes at
 * once instead of after its resends to the dead leader run out.  Sent
 * again CHAT_ANNOUNCE_REPEATS times (chat_tick) against loss; a client
 * already with us ignores it (docs/PROTOCOL.md, "Takeover").
 */
static void
announce(struct server *s, int64_t now)
{
	struct chat *c = &s->chat;
	struct relay_user_info u;
	char lb[UUID_STRLEN + 1];
	struct sockaddr_in to;
	struct wire_msg m;
	size_t i, n = 0;

	for (i = 0; relay_online_get(&c->relay, i, &u) == 0; i++) {
		if (net_sockaddr(&to, u.addr, u.port) == -1 ||
		    server_leader_msg(s, u.name, lb, &m) == -1)
			continue;
		/* Its session is known from the replicated user only. */
		if (u.key[0] != '\0')
			(void)server_session_bind(s, u.key, u.addr, u.port);
		server_send(s, s->data_fd, &to, &m);
		n++;
	}
	if (c->announce_left == 1 + CHAT_ANNOUNCE_REPEATS)
		log_info("told %zu online users that we lead", n);
	c->announce_left--;
	c->announce_ms = now + c->announce_gap;
	c->announce_gap *= 2;
}

void
chat_become_leader(struct server *s, int64_t now)
{
	struct chat *c = &s->chat;
	uint64_t origin = 0;
	size_t i;

	for (i = 0; i < RING_MAX; i++)
		peer_reset(&c->peers[i]);
	/* The log stays: backups' histories are checked against it. */
	c->nwait = c->wait_head = 0;
	c->want_snap = false;
	c->hello = false;
	c->ack_due = false;
	free(c->rx);
	c->rx = NULL;
	c->rx_len = c->rx_total = 0;
	free(c->offer);
	c->offer = NULL;
	for (i = 0; i < 8; i++)
		origin = origin << 8 |
		    (uint64_t)(s->ring.self.b[i] ^ s->ring.self.b[i + 8]);
	c->relay.origin = origin;
	c->leader = true;
	c->pw_gen++; /* password results asked before are dropped */
	relay_become_leader(&c->relay, now);
	/* Before the deliveries sent again: the clients come sooner. */
	c->announce_left = 1 + CHAT_ANNOUNCE_REPEATS;
	c->announce_gap = CHAT_ANNOUNCE_MS;
	announce(s, now);
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
	c->pw_gen++;
	for (i = 0; i < RING_MAX; i++)
		peer_reset(&c->peers[i]);
	c->nwait = c->wait_head = 0;
	chat_leader_changed(s, now);
}

void
chat_leader_changed(struct server *s, int64_t now)
{
	struct chat *c = &s->chat;

	if (c->leader)
		return;
	/*
	 * Tell the new leader our version and digest: it sends the ops we
	 * lack, a snapshot, or (our history is not a prefix of its own)
	 * asks for our state to merge it first.
	 */
	c->hello = true;
	c->want_snap = false;
	free(c->rx);
	c->rx = NULL;
	c->rx_len = c->rx_total = 0;
	c->rx_version = 0;
	free(c->offer);
	c->offer = NULL;
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
	struct store_error err;
	struct chat_peer *p;
	size_t i;

	/*
	 * Group commit: a backup syncs what this wake-up wrote, once, before
	 * its acknowledgement leaves.  A leader with backups does not wait
	 * for its own disk: every acknowledged message is synced on every
	 * live backup (alone, it syncs before answering: chat_flush).
	 */
	if (!c->leader && c->ack_due)
		journal_sync(s);
	if (c->leader) {
		/* Only when due: relay_tick walks every online user. */
		if (now >= relay_next_deadline(&c->relay)) {
			relay_tick(&c->relay, now);
			chat_flush(s, now);
		}
		if (c->announce_left > 0 && now >= c->announce_ms)
			announce(s, now);
		if (c->repl_pending)
			flush_repl(s, now);
		i = 0;
		while ((p = next_backup(s, &i, &m)) != NULL) {
			if (p->merging) {
				if (now >= p->mrx_ms)
					send_merge_request(s, m, p, now);
			} else if (p->snapping
				? now >= p->snap_ms
				: (p->verified && p->acked < c->relay.version &&
				      now >= p->resend_ms))
				catch_up(s, m, p, now);
		}
	} else if (s->el.role == ROLE_BACKUP &&
	    (c->ack_due || ((c->want_snap || c->hello) && now >= c->need_ms))) {
		send_need(s, now);
	}
	if (c->users_dirty && now >= c->users_write_ms)
		users_write(s);
	/* This wake-up's ops in one write (a backup's are synced above). */
	if (store_journal_flush(&c->journal, &err) == -1)
		journal_failed(c, &err);
	if (c->journal.fd != -1 && c->journal.bytes > JOURNAL_COMPACT_BYTES &&
	    !c->want_snap)
		journal_reset(c);
}

int64_t
chat_next_deadline(const struct server *s)
{
	const struct chat *c = &s->chat;
	int64_t d = INT64_MAX, x;
	size_t i;

	if (c->leader) {
		if (c->repl_pending)
			return 0; /* at once */
		if ((x = relay_next_deadline(&c->relay)) < d)
			d = x;
		if (c->announce_left > 0 && c->announce_ms < d)
			d = c->announce_ms;
		for (i = 0; i < RING_MAX; i++) {
			const struct chat_peer *p = &c->peers[i];

			if (!p->used)
				continue;
			if (p->merging && p->mrx_ms < d)
				d = p->mrx_ms;
			else if (p->snapping && p->snap_ms < d)
				d = p->snap_ms;
			else if (!p->snapping && p->verified &&
			    p->acked < c->relay.version && p->resend_ms < d)
				d = p->resend_ms;
		}
	} else if ((c->want_snap || c->hello) && s->el.role == ROLE_BACKUP &&
	    c->need_ms < d) {
		d = c->need_ms;
	}
	if (c->users_dirty && c->users_write_ms < d)
		d = c->users_write_ms;
	return d;
}

/* ---- start, stop, listings ------------------------------------------------
 */

static void
chat_relay_init(struct chat *c)
{
	struct relay_cfg cfg;

	relay_cfg_defaults(&cfg);
	if (relay_init(&c->relay, &cfg) != RELAY_OK)
		fatalx("relay configuration out of range");
}

void
chat_init(struct server *s)
{
	struct chat *c = &s->chat;

	memset(c, 0, sizeof(*c));
	c->journal.fd = -1;
	chat_relay_init(c);
	store_users_init(&c->users);
}

static int
load_snap(void *arg, const char *text, size_t len, struct store_error *err)
{
	struct chat *c = arg;
	enum relay_err e = relay_restore(&c->relay, text, len);

	relay_drain(&c->relay);
	if (e != RELAY_OK) {
		snprintf(err->text, sizeof(err->text),
		    "not a valid snapshot (%s)", relay_err_code(e));
		return -1;
	}
	return 0;
}

static int
load_op(void *arg, const char *text, size_t len, struct store_error *err)
{
	struct chat *c = arg;
	struct relay_op op;
	enum relay_err e;

	if (relay_op_parse(&op, text, len) == -1) {
		snprintf(err->text, sizeof(err->text), "malformed op");
		return -1;
	}
	e = relay_apply(&c->relay, &op);
	relay_drain(&c->relay);
	if (e == RELAY_EOLD)
		return 0; /* in the snapshot already */
	if (e != RELAY_OK) {
		snprintf(err->text, sizeof(err->text),
		    "op %llu does not follow the state before it (version "
		    "%llu): %s",
		    (unsigned long long)op.version,
		    (unsigned long long)c->relay.version, relay_err_code(e));
		return -1;
	}
	if (log_append(c, op.version, c->relay.hash, text, len) == -1)
		log_clear(c);
	return 0;
}

/*
 * No journal yet: the users of users.json (an operator's list, or a
 * state directory from before the journal) become the first ops.
 */
static void
seed_from_users(struct server *s)
{
	struct chat *c = &s->chat;
	struct relay_op op;
	size_t i, k, n = 0;

	for (i = 0; i < c->users.n; i++) {
		const struct user *u = &c->users.u[i];

		memset(&op, 0, sizeof(op));
		op.type = ROP_NEWU;
		op.version = c->relay.version + 1;
		strlcpy(op.user, u->name, sizeof(op.user));
		strlcpy(op.addr, u->addr, sizeof(op.addr));
		op.port = u->port;
		strlcpy(op.pwhash, u->password, sizeof(op.pwhash));
		if (relay_apply(&c->relay, &op) != RELAY_OK) {
			log_warnx("users.json: user %s (%s:%u) cannot be "
				  "registered: left out",
			    u->name, u->addr, u->port);
			continue;
		}
		n++;
		for (k = 0; k < u->nrooms; k++) {
			op.type = ROP_JOIN;
			op.version = c->relay.version + 1;
			strlcpy(op.dest, u->rooms[k], sizeof(op.dest));
			(void)relay_apply(&c->relay, &op);
		}
	}
	relay_drain(&c->relay);
	if (n > 0)
		log_info("%zu users from users.json registered", n);
}

void
chat_load(struct server *s)
{
	struct chat *c = &s->chat;
	char path[PATH_MAX];
	struct store_error err;
	bool torn = false;
	int r, n;

	n = snprintf(path, sizeof(path), "%s/users.json", s->cfg.state_dir);
	if (n < 0 || (size_t)n >= sizeof(path))
		fatalx("%s: state directory path too long", s->cfg.state_dir);
	if ((r = store_read_users(path, &c->users, &err)) == -1) {
		store_users_free(&c->users);
		store_users_init(&c->users);
		if (!s->cfg.recover)
			fatalx("%s (the file is kept; fix it, or start with "
			       "--recover to move it aside and fetch the "
			       "state from the leader)",
			    err.text);
		log_warnx("%s", err.text);
		server_move_aside(path);
	}
	r = store_journal_load(
	    s->cfg.state_dir, load_snap, load_op, c, &torn, &err);
	if (r == -1) {
		if (!s->cfg.recover)
			fatalx("%s (the file is kept; fix it, or start with "
			       "--recover to move it aside and fetch the "
			       "state from the leader)",
			    err.text);
		log_warnx("%s", err.text);
		relay_free(&c->relay);
		chat_relay_init(c);
		log_clear(c);
		n = snprintf(
		    path, sizeof(path), "%s/chat.snap", s->cfg.state_dir);
		if (n > 0 && (size_t)n < sizeof(path) &&
		    access(path, F_OK) == 0)
			server_move_aside(path);
		n = snprintf(
		    path, sizeof(path), "%s/chat.log", s->cfg.state_dir);
		if (n > 0 && (size_t)n < sizeof(path) &&
		    access(path, F_OK) == 0)
			server_move_aside(path);
	}
	if (torn)
		log_warnx("%s/chat.log: the last op was cut short by a crash "
			  "(never acknowledged): dropped",
		    s->cfg.state_dir);
	if (store_journal_open(&c->journal, s->cfg.state_dir, torn, &err) == -1)
		fatalx("%s", err.text);
	if (r == 1 && c->users.n > 0)
		seed_from_users(s);
	if (r != 0)
		journal_reset(c);
	if (c->relay.version > 0) {
		log_info("chat state loaded: version %llu, %zu users, %zu "
			 "messages kept",
		    (unsigned long long)c->relay.version, c->relay.nusers,
		    c->relay.nmsgs);
		users_changed(c, 0);
	}
}

void
chat_free(struct server *s)
{
	struct chat *c = &s->chat;
	size_t i;

	if (c->pw != NULL) {
		loop_del_fd(&s->loop, pwworker_fd(c->pw));
		pwworker_stop(c->pw); /* joins; queued passwords are wiped */
		c->pw = NULL;
	}
	if (c->users_dirty)
		users_write(s);
	journal_sync(s);
	store_journal_close(&c->journal);
	free(c->offer);
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
