/* server: ringchatd's state and the glue between sockets and protocol. */
#include <sys/stat.h>
#include <sys/types.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <linux/sock_diag.h>

#include "server.h"

#define PRIO_CTL	       0 /* heartbeats and votes first */
#define PRIO_DISC	       1
#define PRIO_OPER	       2
#define PRIO_DATA	       3
#define RX_BURST	       64 /* datagrams read per wake-up from one socket */
#define STRANGER_MACS_PER_S    1000 /* non-members' news verified, at most */
#define SERVERS_WRITE_DELAY_MS 20
#define SERVERS_REFRESH_MS     5000
#define DISC_FIRST_MS	       50
#define DISC_MAX_MS	       2000
#define CLIENT_VOTE_GAP_MS     1000
#define QUIT_GRACE_MS	       1500
/* Keyed: new client sessions (one X25519 each) per second, at most. */
#define DERIVE_PER_S 2000
/* Keyed: plain answers (leader hints, "sealed") per second, at most. */
#define HINTS_PER_S 200

static const char *drop_names[DROP_NMAX] = {"from a non-member",
    "forged sender address", "missing field", "kind not accepted here",
    "own broadcast"};

static void server_apply_election(struct server *, int64_t now);
static void server_send_news(struct server *, const struct sockaddr_in *);

/* ---- small helpers ---------------------------------------------------- */

const char *
server_self_id(struct server *s)
{
	static char buf[UUID_STRLEN + 1];

	return uuid_format(&s->ring.self, buf);
}

static void
servers_changed(struct server *s)
{
	s->servers_version++;
	if (!s->servers_dirty) {
		s->servers_dirty = true;
		s->servers_write_ms = loop_now_ms() + SERVERS_WRITE_DELAY_MS;
	}
}

static int
state_path(const struct server *s, const char *file, char *buf, size_t bufsz)
{
	int n = snprintf(buf, bufsz, "%s/%s", s->cfg.state_dir, file);

	return (n < 0 || (size_t)n >= bufsz) ? -1 : 0;
}

static void
emit(struct server *s, const char *event, const struct store_kv *kv, size_t n)
{
	events_emit(&s->ev, event, kv, n);
}

static void
emit_uuid(struct server *s, const char *event, const char *key,
    const struct uuid *u, uint64_t epoch)
{
	char buf[UUID_STRLEN + 1];
	struct store_kv kv[2] = {
	    {.key = key, .type = KV_STR, .s = uuid_format(u, buf)},
	    {.key = "epoch", .type = KV_UINT, .u = epoch}};

	emit(s, event, kv, 2);
}

static int64_t
wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Server to server: everything on the control port, and announcements
 * on the discovery port.  Clients' where and vote are never sealed.
 */
static bool
is_s2s(const struct server *s, int fd, enum wire_kind k)
{
	return fd == s->ctl_fd || (fd == s->disc_fd && k == WK_NEWS);
}

/*
 * Keyed: a datagram to a client leaves sealed in its session (the
 * leader's, of this epoch), or in clear when sess_plain_ok, or not at
 * all (counted).  buf holds *len encoded bytes and room for WIRE_MAX.
 */
static int
seal_for_client(struct server *s, const struct sockaddr_in *to,
    const struct wire_msg *m, char *buf, size_t *len)
{
	char out[WIRE_MAX];
	struct sess *e = NULL;
	size_t olen;

	if (s->chat.leader)
		e = sess_by_addr(
		    &s->sess, to->sin_addr.s_addr, ntohs(to->sin_port));
	if (e != NULL && e->epoch == s->el.epoch) {
		sess_ctr_bump(&e->as, (uint64_t)wall_ms());
		if (auth_session_seal(&e->as, e->epoch, buf, *len, out,
			sizeof(out), &olen) != AUTH_OK) {
			s->tx_nosess++; /* over WIRE_MAX: none of ours is */
			return -1;
		}
		memcpy(buf, out, olen);
		*len = olen;
		return 0;
	}
	if (sess_plain_ok(m))
		return 0;
	s->tx_nosess++;
	return -1;
}

int
server_session_bind(
    struct server *s, const char *key, const char *addr, uint16_t port)
{
	uint8_t pk[AUTH_PK_BYTES];
	struct sockaddr_in sin;
	struct sess *e;
	int64_t now = loop_now_ms();

	if (!s->keyed || key == NULL || auth_pk_from_text(key, pk) != AUTH_OK ||
	    net_sockaddr(&sin, addr, port) == -1 ||
	    sess_bind(&s->sess, &s->cluster, pk, s->el.epoch,
		(uint64_t)wall_ms(), now, &e) != AUTH_OK)
		return -1;
	sess_seen(&s->sess, e, sin.sin_addr.s_addr, port, now);
	return 0;
}

/*
 * Keyed: the server datagrams that carry chat text and user records travel
 * encrypted (auth_s2s_box); the others are sealed with a MAC.
 */
static bool
boxed_kind(enum wire_kind k)
{
	return k == WK_REPL || k == WK_SNAP;
}

/* Encodes and sends; a failure is counted, never fatal (UDP is lossy). */
void
server_send(struct server *s, int fd, const struct sockaddr_in *to,
    const struct wire_msg *m)
{
	char buf[WIRE_MAX], box[WIRE_MAX];
	size_t len;
	enum wire_err e;
	enum auth_err ae;
	uint64_t ctr;

	e = wire_encode(m, buf, sizeof(buf), &len);
	if (e != WIRE_OK) {
		/* Only our own fields go in: a bug, not hostile input. */
		fatalx(
		    "encode %s: %s", wire_kind_name(m->kind), wire_strerror(e));
	}
	if (s->keyed && is_s2s(s, fd, m->kind) &&
	    ((ae = auth_ctr_next(&s->ctr, (uint64_t)wall_ms(), &ctr)) !=
		    AUTH_OK ||
		(ae = boxed_kind(m->kind)
			? auth_s2s_box(&s->cluster, s->ring.self.b, ctr, buf,
			      len, box, sizeof(box), &len)
			: auth_s2s_seal(&s->cluster, server_self_id(s), ctr,
			      buf, len, buf, sizeof(buf), &len)) != AUTH_OK)) {
		/* Our datagrams leave room for the seal: a bug. */
		fatalx(
		    "seal %s: %s", wire_kind_name(m->kind), auth_strerror(ae));
	}
	if (s->keyed && is_s2s(s, fd, m->kind) && boxed_kind(m->kind))
		memcpy(buf, box, len);
	if (s->keyed && fd == s->data_fd &&
	    seal_for_client(s, to, m, buf, &len) == -1)
		return;
	if (net_send(fd, to, buf, len) == -1)
		s->tx_errors++;
	else
		s->tx++;
}

static int
member_ctl_addr(const struct member *m, struct sockaddr_in *sin)
{
	return net_sockaddr(sin, m->addr, m->ctl_port);
}

void
server_send_member(struct server *s, const struct uuid *to, struct wire_msg *m)
{
	const struct member *mb = ring_find_const(&s->ring, to);
	struct sockaddr_in sin;

	if (mb == NULL || member_ctl_addr(mb, &sin) == -1)
		return;
	server_send(s, s->ctl_fd, &sin, m);
}

static void
add_leader_view(struct server *s, struct wire_msg *m, char *lbuf)
{
	wire_add_u64(m, "epoch", s->el.epoch);
	if (s->el.has_leader)
		wire_add(m, "leader", uuid_format(&s->el.leader, lbuf));
}

/* ---- persistence ------------------------------------------------------ */

static void
servers_snapshot(const struct server *s, struct servers_state *st)
{
	memset(st, 0, sizeof(*st));
	st->version = s->servers_version;
	st->epoch = s->el.epoch;
	st->has_leader = s->el.has_leader;
	st->leader = s->el.leader;
	memcpy(st->m, s->ring.m, s->ring.n * sizeof(st->m[0]));
	st->n = s->ring.n;
}

static void
servers_write(struct server *s)
{
	struct servers_state *st;
	struct store_error err;
	char path[PATH_MAX];

	if ((st = calloc(1, sizeof(*st))) == NULL) {
		log_warn("servers.json snapshot");
		return;
	}
	servers_snapshot(s, st);
	if (state_path(s, "servers.json", path, sizeof(path)) == -1)
		log_warnx("%s/servers.json: path too long", s->cfg.state_dir);
	else if (store_write_servers(path, st, &err) == -1)
		log_warnx("%s", err.text);
	free(st);
	s->servers_dirty = false;
}

static void
wall_now(struct member *m)
{
	m->last_seen_wall = (int64_t)time(NULL);
}

/* Any authenticated datagram from a member proves it alive. */
static void
member_heard(struct server *s, struct member *m, int64_t now)
{
	m->last_seen_ms = now;
	wall_now(m);
	if (!m->alive) {
		ring_set_alive(&s->ring, &m->uuid, true);
		log_info("member %s (%s) is up", m->name, m->addr);
		emit_uuid(s, "member_up", "member", &m->uuid, s->el.epoch);
		servers_changed(s);
	}
}

static void
member_down(struct server *s, const struct uuid *u, const char *why)
{
	const struct member *m = ring_find_const(&s->ring, u);

	if (m == NULL)
		return;
	if (ring_set_alive(&s->ring, u, false) == 1) {
		char buf[UUID_STRLEN + 1];
		struct store_kv kv[2] = {
		    {.key = "member", .type = KV_STR, .s = uuid_format(u, buf)},
		    {.key = "why", .type = KV_STR, .s = why}};

		log_info("member %s (%s) is down: %s", m->name, m->addr, why);
		emit(s, "member_down", kv, 2);
		servers_changed(s);
		chat_members_changed(s, loop_now_ms());
	}
}

/* ---- roles ------------------------------------------------------------ */

static void
role_changed(struct server *s, enum election_role old, enum election_role nw,
    int64_t now)
{
	struct store_kv kv[3] = {
	    {.key = "from", .type = KV_STR, .s = election_role_name(old)},
	    {.key = "to", .type = KV_STR, .s = election_role_name(nw)},
	    {.key = "epoch", .type = KV_UINT, .u = s->el.epoch}};

	log_info("role %s -> %s (epoch %llu)", election_role_name(old),
	    election_role_name(nw), (unsigned long long)s->el.epoch);
	emit(s, "role", kv, 3);
	hb_follower_stop(&s->hbf);
	hb_leader_stop(&s->hbl);
	if (nw == ROLE_BACKUP)
		hb_follower_watch(&s->hbf, now);
	else if (nw == ROLE_LEADER)
		hb_leader_start(&s->hbl, now);
	/* The leader's beats to the dead do what the probes do. */
	if (nw == ROLE_LEADER)
		hb_revive_stop(&s->hbr);
	else
		hb_revive_start(&s->hbr, now);
	if (nw == ROLE_LEADER)
		chat_become_leader(s, now);
	else if (old == ROLE_LEADER || nw == ROLE_BACKUP)
		chat_become_backup(s, now);
	if (nw == ROLE_BACKUP || nw == ROLE_LEADER)
		s->discovering = false;
	servers_changed(s);
}

static void
start_election(struct server *s, int64_t now, const char *reason, bool abstain)
{
	s->elections++;
	election_start(&s->el, &s->ring, now, reason, abstain);
	server_apply_election(s, now);
}

/* ---- election output -------------------------------------------------- */

static void
send_leader_msg(struct server *s, const struct el_out *o, bool bcast)
{
	const struct member *lm = ring_find_const(&s->ring, &o->candidate);
	char to[UUID_STRLEN + 1], lb[UUID_STRLEN + 1];
	struct wire_msg m;

	wire_init(&m, WK_LEADER, bcast ? "*" : uuid_format(&o->to, to),
	    lm != NULL ? lm->name : "", server_self_id(s));
	wire_add_u64(&m, "epoch", o->epoch);
	wire_add(&m, "leader", uuid_format(&o->candidate, lb));
	if (lm != NULL) {
		wire_add(&m, "addr", lm->addr);
		wire_add_u64(&m, "port", lm->port);
	}
	if (bcast) {
		server_send(s, s->ctl_fd, &s->disc_bcast, &m);
		return;
	}
	wire_add_u64(&m, "hop", o->hop);
	server_send_member(s, &o->to, &m);
}

static void
log_election_event(struct server *s, const struct el_out *o, int64_t now)
{
	char a[UUID_STRLEN + 1], b[UUID_STRLEN + 1];
	const char *name = election_event_name(o->ev);
	/* For vote handling the subject is the member the vote came from. */
	bool from = o->ev == EL_EV_FORWARD || o->ev == EL_EV_REPLACE ||
	    o->ev == EL_EV_DROP || o->ev == EL_EV_STALE;
	struct store_kv kv[4] = {
	    {.key = "epoch", .type = KV_UINT, .u = o->epoch},
	    {.key = from ? "from" : "to",
		.type = KV_STR,
		.s = uuid_format(&o->to, a)},
	    {.key = "candidate",
		.type = KV_STR,
		.s = uuid_format(&o->candidate, b)},
	    {.key = "detail",
		.type = KV_STR,
		.s = o->detail != NULL ? o->detail : ""}};

	switch (o->ev) {
	case EL_EV_ROLE:
		role_changed(s, o->old_role, o->new_role, now);
		return;
	case EL_EV_MEMBER_DEAD:
		member_down(s, &o->to, "no acknowledgement");
		return;
	case EL_EV_START:
		log_info("election started, epoch %llu: %s",
		    (unsigned long long)o->epoch,
		    o->detail != NULL ? o->detail : "");
		break;
	case EL_EV_WIN:
		log_info("elected leader of epoch %llu",
		    (unsigned long long)o->epoch);
		break;
	case EL_EV_ADOPT:
		log_info("leader is %s, epoch %llu", b,
		    (unsigned long long)o->epoch);
		/* A new leader to watch, even without a role change. */
		if (s->el.role == ROLE_BACKUP) {
			hb_follower_watch(&s->hbf, now);
			chat_leader_changed(s, now);
		}
		servers_changed(s);
		break;
	case EL_EV_STEP_DOWN:
		log_info("stepping down: a newer leader exists (epoch %llu)",
		    (unsigned long long)o->epoch);
		break;
	case EL_EV_TIMEOUT:
		log_info("election of epoch %llu did not end in time",
		    (unsigned long long)o->epoch);
		break;
	case EL_EV_STALE:
		log_debug("ignored a message of old epoch %llu",
		    (unsigned long long)o->epoch);
		break;
	case EL_EV_FORWARD:
	case EL_EV_REPLACE:
	case EL_EV_DROP:
		log_debug("election %s: candidate %s epoch %llu", name, b,
		    (unsigned long long)o->epoch);
		break;
	}
	emit(s, name, kv, 4);
}

/* Carries out what the election state machine asked for. */
static void
server_apply_election(struct server *s, int64_t now)
{
	size_t i;

	for (i = 0; i < s->el.nout; i++) {
		const struct el_out *o = &s->el.out[i];
		char to[UUID_STRLEN + 1], c[UUID_STRLEN + 1];
		char dead[UUID_STRLEN + 1];
		struct wire_msg m;

		switch (o->type) {
		case EL_SEND_VOTING:
			wire_init(&m, WK_VOTING, uuid_format(&o->to, to), "",
			    server_self_id(s));
			wire_add_u64(&m, "epoch", o->epoch);
			wire_add(&m, "cand", uuid_format(&o->candidate, c));
			wire_add_u64(&m, "hop", o->hop);
			if (s->dead_hint_set && s->dead_hint_epoch == o->epoch)
				wire_add(&m, "dead",
				    uuid_format(&s->dead_hint, dead));
			server_send_member(s, &o->to, &m);
			break;
		case EL_SEND_ACK:
			wire_init(&m, WK_ACK, uuid_format(&o->to, to), "",
			    server_self_id(s));
			wire_add_u64(&m, "epoch", o->epoch);
			wire_add_u64(&m, "hop", o->hop);
			server_send_member(s, &o->to, &m);
			break;
		case EL_SEND_LEADER:
			send_leader_msg(s, o, false);
			break;
		case EL_BCAST_LEADER:
			send_leader_msg(s, o, true);
			break;
		case EL_EVENT:
			log_election_event(s, o, now);
			break;
		}
	}
	election_drain(&s->el);
}

/* ---- receiving -------------------------------------------------------- */

/*
 * A member's control address (ourselves included) is never rate-limited:
 * a flooder spoofing it must not cut the member off (docs/SECURITY.md).
 */
static bool
member_source(const struct server *s, const struct sockaddr_in *from)
{
	struct sockaddr_in sin;
	size_t i;

	for (i = 0; i < s->ring.n; i++)
		if (s->ring.m[i].ctl_port == ntohs(from->sin_port) &&
		    member_ctl_addr(&s->ring.m[i], &sin) == 0 &&
		    sin.sin_addr.s_addr == from->sin_addr.s_addr)
			return true;
	return false;
}

/* The datagram's sender UUID is a member's (wherever it came from). */
static bool
member_uuid(struct server *s, const struct wire_msg *m)
{
	struct uuid u;

	return uuid_parse(&u, m->from) == 0 && ring_find(&s->ring, &u) != NULL;
}

/* A datagram that failed a check: charged to its source's budget. */
static void
flood_charge(struct server *s, const struct sockaddr_in *from, int64_t now)
{
	char a[INET_ADDRSTRLEN];

	if (member_source(s, from) ||
	    ratelimit_charge(&s->rl, from->sin_addr.s_addr, now) != 1)
		return;
	log_limited(&s->rl_limit, now, 1000,
	    "rate limit: %s sent more than %u bad datagrams (budget %u a "
	    "second): all its datagrams are dropped until it slows down",
	    inet_ntop(AF_INET, &from->sin_addr, a, sizeof(a)), s->rl.cfg.burst,
	    s->rl.cfg.rate);
}

/*
 * While held, sources over their budget are dropped by the kernel too (a
 * socket filter), so their datagrams wake nobody; the control and
 * discovery sockets still take every member's own address and port.
 */
static void
flood_filter(struct server *s)
{
	static struct sock_filter prog[RATELIMIT_FILTER_MAX];
	struct ratelimit_keep keep[RING_MAX];
	uint32_t held[RATELIMIT_HELD_MAX];
	const int fds[3] = {s->ctl_fd, s->disc_fd, s->data_fd};
	struct sockaddr_in sin;
	struct sock_fprog fp;
	size_t i, nh, nk = 0;
	int n, r, off = 0;

	s->rl_gen = s->rl.gen;
	nh = ratelimit_held(&s->rl, held, RATELIMIT_HELD_MAX);
	for (i = 0; i < s->ring.n; i++)
		if (member_ctl_addr(&s->ring.m[i], &sin) == 0) {
			keep[nk].addr = sin.sin_addr.s_addr;
			keep[nk++].port = sin.sin_port;
		}
	for (i = 0; i < 3; i++) {
		if (nh == 0) {
			(void)setsockopt(fds[i], SOL_SOCKET, SO_DETACH_FILTER,
			    &off, sizeof(off));
			continue;
		}
		n = ratelimit_filter(held, nh, keep,
		    fds[i] == s->data_fd ? 0 : nk, prog, RATELIMIT_FILTER_MAX);
		fp.len = (unsigned short)n;
		fp.filter = prog;
		r = n == -1 ? -1
			    : setsockopt(fds[i], SOL_SOCKET, SO_ATTACH_FILTER,
				  &fp, sizeof(fp));
		if (r == -1)
			log_limited(&s->rl_limit, loop_now_ms(), 1000,
			    "rate limit: no socket filter (%s): sources over "
			    "their budget are dropped unread instead",
			    n == -1 ? "too many sources" : strerror(errno));
	}
}

/* Datagrams the kernel dropped: a socket filter, or a full buffer. */
static uint64_t
kernel_drops(const struct server *s)
{
	const int fds[3] = {s->ctl_fd, s->disc_fd, s->data_fd};
	uint32_t mi[SK_MEMINFO_VARS];
	uint64_t n = 0;
	size_t i;

	for (i = 0; i < 3; i++) {
		socklen_t len = sizeof(mi);

		if (getsockopt(fds[i], SOL_SOCKET, SO_MEMINFO, mi, &len) == 0 &&
		    len > SK_MEMINFO_DROPS * sizeof(mi[0]))
			n += mi[SK_MEMINFO_DROPS];
	}
	return n;
}

static void
drop(struct server *s, enum server_drop why, const struct sockaddr_in *from,
    const char *kind)
{
	int64_t now = loop_now_ms();
	char a[64];

	s->drops[why]++;
	flood_charge(s, from, now);
	if (now < s->bad_limit.next_ms) {
		s->bad_limit.suppressed++; /* no line due: nothing to format */
		return;
	}
	log_limited(&s->bad_limit, now, 1000, "dropped %s datagram from %s: %s",
	    kind, net_ntop(from, a, sizeof(a)), drop_names[why]);
}

static int
get_uuid(const struct wire_msg *m, const char *key, struct uuid *u)
{
	const char *v = wire_get(m, key);

	return v == NULL ? -1 : uuid_parse(u, v);
}

/* The sending member, checked against the address it sent from. */
static struct member *
authentic_member(
    struct server *s, const struct wire_msg *m, const struct sockaddr_in *from)
{
	struct sockaddr_in want;
	struct member *mb;
	struct uuid u;

	if (uuid_parse(&u, m->from) == -1) {
		drop(s, DROP_FIELDS, from, wire_kind_name(m->kind));
		return NULL;
	}
	if ((mb = ring_find(&s->ring, &u)) == NULL) {
		drop(s, DROP_NONMEMBER, from, wire_kind_name(m->kind));
		return NULL;
	}
	if (uuid_cmp(&u, &s->ring.self) == 0) {
		drop(s, DROP_SELF, from, wire_kind_name(m->kind));
		return NULL;
	}
	if (member_ctl_addr(mb, &want) == -1 ||
	    want.sin_addr.s_addr != from->sin_addr.s_addr ||
	    want.sin_port != from->sin_port) {
		drop(s, DROP_FORGED, from, wire_kind_name(m->kind));
		return NULL;
	}
	return mb;
}

/*
 * A member record from news or member: the described server's UUID, name
 * and endpoints.  -1 when a field is missing or malformed.
 */
static int
parse_member(
    const struct wire_msg *m, const char *uuid_text, struct member *out)
{
	uint64_t port, cport;
	struct sockaddr_in sin;
	const char *addr = wire_get(m, "addr");

	memset(out, 0, sizeof(*out));
	if (uuid_parse(&out->uuid, uuid_text) == -1 || addr == NULL ||
	    wire_get_u64(m, "port", &port) == -1 ||
	    wire_get_u64(m, "cport", &cport) == -1 || port == 0 ||
	    port > 65535 || cport == 0 || cport > 65535 ||
	    net_sockaddr(&sin, addr, (uint16_t)cport) == -1 ||
	    m->body[0] == '\0' ||
	    strlcpy(out->name, m->body, sizeof(out->name)) >=
		sizeof(out->name) ||
	    strlcpy(out->addr, addr, sizeof(out->addr)) >= sizeof(out->addr))
		return -1;
	out->port = (uint16_t)port;
	out->ctl_port = (uint16_t)cport;
	out->alive = true;
	return 0;
}

/* Epoch and leader a datagram reports, if any; 1 when it names one. */
static int
leader_view(const struct wire_msg *m, uint64_t *epoch, struct uuid *leader)
{
	if (wire_get_u64(m, "epoch", epoch) == -1)
		return -1;
	if (wire_get(m, "leader") == NULL)
		return 0;
	return get_uuid(m, "leader", leader) == -1 ? -1 : 1;
}

static void
send_member_record(struct server *s, const struct member *about,
    const struct sockaddr_in *to, const char *to_id)
{
	char u[UUID_STRLEN + 1], lb[UUID_STRLEN + 1];
	struct wire_msg m;

	wire_init(&m, WK_MEMBER, to_id, about->name, server_self_id(s));
	wire_add(&m, "uuid", uuid_format(&about->uuid, u));
	wire_add(&m, "addr", about->addr);
	wire_add_u64(&m, "port", about->port);
	wire_add_u64(&m, "cport", about->ctl_port);
	wire_add_u64(&m, "alive", about->alive ? 1 : 0);
	add_leader_view(s, &m, lb);
	server_send(s, s->ctl_fd, to, &m);
}

static void
on_news(struct server *s, const struct wire_msg *m,
    const struct sockaddr_in *from, int64_t now)
{
	struct member nm, *mb;
	struct sockaddr_in ctl;
	uint64_t epoch;
	struct uuid leader;
	int r, view;
	size_t i;

	if (parse_member(m, m->from, &nm) == -1) {
		drop(s, DROP_FIELDS, from, "news");
		return;
	}
	if (uuid_cmp(&nm.uuid, &s->ring.self) == 0)
		return; /* our own broadcast */
	member_ctl_addr(&nm, &ctl);
	if (ctl.sin_addr.s_addr != from->sin_addr.s_addr ||
	    ctl.sin_port != from->sin_port) {
		drop(s, DROP_FORGED, from, "news");
		return;
	}
	view = leader_view(m, &epoch, &leader);
	if ((r = ring_upsert(&s->ring, &nm)) == -1) {
		log_limited(&s->bad_limit, now, 1000,
		    "membership full (%d servers): ignoring %s", RING_MAX,
		    nm.name);
		return;
	}
	mb = ring_find(&s->ring, &nm.uuid);
	mb->last_seen_ms = now;
	wall_now(mb);
	if (r == 1) {
		log_info("new member %s (%s:%u)", nm.name, nm.addr, nm.port);
		emit_uuid(s, "member_up", "member", &nm.uuid, s->el.epoch);
		servers_changed(s);
	}
	/* Answer by unicast: our record, and the leader tells all it knows. */
	send_member_record(s, ring_self(&s->ring), &ctl, m->from);
	if (s->el.role == ROLE_LEADER)
		for (i = 0; i < s->ring.n; i++)
			if (uuid_cmp(&s->ring.m[i].uuid, &nm.uuid) != 0 &&
			    uuid_cmp(&s->ring.m[i].uuid, &s->ring.self) != 0)
				send_member_record(
				    s, &s->ring.m[i], &ctl, m->from);
	/* A leader announcing itself (a healed partition) is compared too. */
	if (view == 1) {
		election_observe_leader(&s->el, &s->ring, now, epoch, &leader);
		server_apply_election(s, now);
	}
}

static void
on_member(struct server *s, const struct wire_msg *m,
    const struct sockaddr_in *from, int64_t now)
{
	struct member nm, *sender, *mb;
	const char *about = wire_get(m, "uuid");
	struct sockaddr_in ctl;
	uint64_t epoch, alive = 1;
	struct uuid leader;
	struct uuid fu;
	int r, view;

	if (about == NULL || parse_member(m, about, &nm) == -1 ||
	    uuid_parse(&fu, m->from) == -1) {
		drop(s, DROP_FIELDS, from, "member");
		return;
	}
	wire_get_u64(m, "alive", &alive);
	if (uuid_cmp(&fu, &nm.uuid) == 0) {
		/* A server describing itself must send from its own port. */
		member_ctl_addr(&nm, &ctl);
		if (ctl.sin_addr.s_addr != from->sin_addr.s_addr ||
		    ctl.sin_port != from->sin_port) {
			drop(s, DROP_FORGED, from, "member");
			return;
		}
	} else if (authentic_member(s, m, from) == NULL) {
		return; /* third-party records only from known members */
	}
	if (uuid_cmp(&nm.uuid, &s->ring.self) == 0)
		return;
	nm.alive = alive != 0;
	if ((r = ring_upsert(&s->ring, &nm)) == -1)
		return;
	mb = ring_find(&s->ring, &nm.uuid);
	if (r == 1) {
		log_info(
		    "learned of member %s (%s:%u)", nm.name, nm.addr, nm.port);
		servers_changed(s);
		if (!nm.alive)
			ring_set_alive(&s->ring, &nm.uuid, false);
	}
	if ((sender = ring_find(&s->ring, &fu)) != NULL)
		member_heard(s, sender, now);
	(void)mb;
	view = leader_view(m, &epoch, &leader);
	if (view == 1 && uuid_cmp(&fu, &nm.uuid) == 0) {
		election_observe_leader(&s->el, &s->ring, now, epoch, &leader);
		server_apply_election(s, now);
	}
}

static void
on_voting(struct server *s, struct member *mb, const struct wire_msg *m,
    const struct sockaddr_in *from, int64_t now)
{
	uint64_t epoch, hop;
	struct uuid cand, dead;

	if (wire_get_u64(m, "epoch", &epoch) == -1 ||
	    wire_get_u64(m, "hop", &hop) == -1 ||
	    get_uuid(m, "cand", &cand) == -1 ||
	    (wire_get(m, "dead") != NULL && get_uuid(m, "dead", &dead) == -1)) {
		drop(s, DROP_FIELDS, from, "voting");
		return;
	}
	if (epoch > s->el.epoch)
		s->elections++;
	if (epoch >= s->el.epoch && get_uuid(m, "dead", &dead) == 0 &&
	    uuid_cmp(&dead, &s->ring.self) != 0 &&
	    ring_find(&s->ring, &dead) != NULL) {
		member_down(s, &dead, "reported dead by the election");
		s->dead_hint_set = true;
		s->dead_hint = dead;
		s->dead_hint_epoch = epoch;
	}
	election_on_voting(&s->el, &s->ring, now, &mb->uuid, epoch, &cand, hop);
	server_apply_election(s, now);
}

static void
on_ack(struct server *s, struct member *mb, const struct wire_msg *m,
    const struct sockaddr_in *from, int64_t now)
{
	uint64_t epoch, hop;

	if (wire_get_u64(m, "epoch", &epoch) == -1 ||
	    wire_get_u64(m, "hop", &hop) == -1) {
		drop(s, DROP_FIELDS, from, "ack");
		return;
	}
	election_on_ack(&s->el, &s->ring, now, &mb->uuid, epoch, hop);
	server_apply_election(s, now);
}

static void
on_leader(struct server *s, struct member *mb, const struct wire_msg *m,
    const struct sockaddr_in *from, int64_t now)
{
	uint64_t epoch, hop;
	struct uuid leader;

	if (wire_get_u64(m, "epoch", &epoch) == -1 ||
	    wire_get_u64(m, "hop", &hop) == -1 ||
	    get_uuid(m, "leader", &leader) == -1) {
		drop(s, DROP_FIELDS, from, "leader");
		return;
	}
	election_on_leader(
	    &s->el, &s->ring, now, &mb->uuid, epoch, &leader, hop);
	server_apply_election(s, now);
}

static void
send_beatack(struct server *s, const struct member *to, uint64_t seq)
{
	char id[UUID_STRLEN + 1], lb[UUID_STRLEN + 1];
	struct wire_msg m;

	wire_init(
	    &m, WK_BEATACK, uuid_format(&to->uuid, id), "", server_self_id(s));
	add_leader_view(s, &m, lb);
	wire_add_u64(&m, "seq", seq);
	server_send_member(s, &to->uuid, &m);
}

/* Gaps between the beats of one leader, for status (floods). */
static void
beat_heard(struct server *s, const struct member *mb, int64_t now)
{
	int64_t gap = now - s->beat_last_ms;

	if (s->beats > 0 && uuid_cmp(&s->beat_from, &mb->uuid) == 0) {
		if (gap > s->beat_gap_max_ms)
			s->beat_gap_max_ms = gap;
		if (gap > 2 * s->cfg.hb.interval_ms)
			s->beats_late++;
	}
	s->beat_from = mb->uuid;
	s->beat_last_ms = now;
	s->beats++;
}

static void
on_beat(struct server *s, struct member *mb, const struct wire_msg *m,
    const struct sockaddr_in *from, int64_t now)
{
	uint64_t epoch, seq;

	if (wire_get_u64(m, "epoch", &epoch) == -1 ||
	    wire_get_u64(m, "seq", &seq) == -1) {
		drop(s, DROP_FIELDS, from, "beat");
		return;
	}
	if (election_observe_leader(&s->el, &s->ring, now, epoch, &mb->uuid) ==
	    1) {
		server_apply_election(s, now);
		if (s->el.role == ROLE_BACKUP &&
		    uuid_cmp(&s->el.leader, &mb->uuid) == 0) {
			hb_follower_on_beat(&s->hbf, now);
			beat_heard(s, mb, now);
		}
	} else {
		server_apply_election(s, now);
	}
	/* The answer carries our view, so a stale leader learns it. */
	send_beatack(s, mb, seq);
}

static void
on_beatack(struct server *s, const struct wire_msg *m,
    const struct sockaddr_in *from, int64_t now)
{
	uint64_t epoch;
	struct uuid leader;

	if (leader_view(m, &epoch, &leader) == 1) {
		election_observe_leader(&s->el, &s->ring, now, epoch, &leader);
		server_apply_election(s, now);
	} else if (wire_get(m, "epoch") == NULL) {
		drop(s, DROP_FIELDS, from, "beatack");
	}
}

static void
on_probe(struct server *s, struct member *mb, const struct wire_msg *m,
    const struct sockaddr_in *from)
{
	char lb[UUID_STRLEN + 1];
	struct uuid target, origin;
	const char *id = wire_get(m, "id");
	struct wire_msg r;

	if (id == NULL || uuid_parse(&target, m->to) == -1 ||
	    get_uuid(m, "origin", &origin) == -1) {
		drop(s, DROP_FIELDS, from, "probe");
		return;
	}
	if (uuid_cmp(&target, &s->ring.self) == 0) {
		wire_init(&r, WK_PROBEACK, wire_get(m, "origin"), "",
		    server_self_id(s));
		wire_add(&r, "id", id);
		wire_add(&r, "origin", wire_get(m, "origin"));
		wire_add(&r, "target", server_self_id(s));
		add_leader_view(s, &r, lb);
		server_send_member(s, &mb->uuid, &r);
		return;
	}
	/* Asked to probe on another member's behalf (SWIM's indirect). */
	if (ring_find(&s->ring, &target) == NULL)
		return;
	wire_init(&r, WK_PROBE, m->to, "", server_self_id(s));
	wire_add(&r, "id", id);
	wire_add(&r, "origin", wire_get(m, "origin"));
	server_send_member(s, &target, &r);
}

static void
on_probeack(struct server *s, const struct wire_msg *m,
    const struct sockaddr_in *from, int64_t now)
{
	struct uuid origin, target, leader;
	uint64_t id, epoch;
	struct wire_msg r;

	if (wire_get_u64(m, "id", &id) == -1 ||
	    get_uuid(m, "origin", &origin) == -1 ||
	    get_uuid(m, "target", &target) == -1) {
		drop(s, DROP_FIELDS, from, "probeack");
		return;
	}
	if (uuid_cmp(&origin, &s->ring.self) != 0) {
		/* Relay the answer back to the member that asked us. */
		wire_init(&r, WK_PROBEACK, m->to, "", server_self_id(s));
		wire_add(&r, "id", wire_get(m, "id"));
		wire_add(&r, "origin", wire_get(m, "origin"));
		wire_add(&r, "target", wire_get(m, "target"));
		if (wire_get(m, "epoch") != NULL)
			wire_add(&r, "epoch", wire_get(m, "epoch"));
		if (wire_get(m, "leader") != NULL)
			wire_add(&r, "leader", wire_get(m, "leader"));
		server_send_member(s, &origin, &r);
		return;
	}
	/*
	 * The answer refutes a suspicion only when the target still leads
	 * the (epoch, leader) we follow; otherwise its view may be newer.
	 */
	if (leader_view(m, &epoch, &leader) == 1 &&
	    (epoch != s->el.epoch || uuid_cmp(&leader, &target) != 0)) {
		election_observe_leader(&s->el, &s->ring, now, epoch, &leader);
		server_apply_election(s, now);
		return;
	}
	if (s->el.has_leader && uuid_cmp(&target, &s->el.leader) == 0) {
		if (s->hbf.state == HB_SUSPECT && s->hbf.probe_id == id) {
			log_info("leader answered a probe: suspicion refuted");
			emit_uuid(s, "suspicion_refuted", "leader", &target,
			    s->el.epoch);
		}
		hb_follower_on_probeack(&s->hbf, now, id);
	}
}

static void
on_bye(struct server *s, struct member *mb, int64_t now)
{
	bool was_leader =
	    s->el.has_leader && uuid_cmp(&mb->uuid, &s->el.leader) == 0;

	member_down(s, &mb->uuid, "left the cluster");
	if (was_leader && s->el.role == ROLE_BACKUP)
		start_election(s, now, "leader left", false);
}

static void
handle_ctl_datagram(struct server *s, const struct wire_msg *m,
    const struct sockaddr_in *from, int64_t now)
{
	struct member *mb;

	if (m->kind == WK_NEWS) {
		on_news(s, m, from, now);
		return;
	}
	if (m->kind == WK_MEMBER) {
		on_member(s, m, from, now);
		return;
	}
	switch (m->kind) {
	case WK_VOTING:
	case WK_ACK:
	case WK_LEADER:
	case WK_BEAT:
	case WK_BEATACK:
	case WK_PROBE:
	case WK_PROBEACK:
	case WK_BYE:
	case WK_REPL:
	case WK_SNAP:
	case WK_NEED:
		break;
	default:
		drop(s, DROP_KIND, from, wire_kind_name(m->kind));
		return;
	}
	if ((mb = authentic_member(s, m, from)) == NULL)
		return;
	member_heard(s, mb, now);
	switch (m->kind) {
	case WK_VOTING:
		on_voting(s, mb, m, from, now);
		break;
	case WK_ACK:
		on_ack(s, mb, m, from, now);
		break;
	case WK_LEADER:
		on_leader(s, mb, m, from, now);
		break;
	case WK_BEAT:
		on_beat(s, mb, m, from, now);
		break;
	case WK_BEATACK:
		on_beatack(s, m, from, now);
		break;
	case WK_PROBE:
		on_probe(s, mb, m, from);
		break;
	case WK_PROBEACK:
		on_probeack(s, m, from, now);
		break;
	case WK_BYE:
		on_bye(s, mb, now);
		break;
	case WK_REPL:
		chat_on_repl(s, mb, m, now);
		break;
	case WK_SNAP:
		chat_on_snap(s, mb, m, now);
		break;
	case WK_NEED:
		chat_on_need(s, mb, m, now);
		break;
	default:
		break;
	}
}

int
server_leader_msg(struct server *s, const char *to, char lb[UUID_STRLEN + 1],
    struct wire_msg *r)
{
	const struct member *lm;

	if (!s->el.has_leader ||
	    (lm = ring_find_const(&s->ring, &s->el.leader)) == NULL)
		return -1;
	wire_init(r, WK_LEADER, to, lm->name, server_self_id(s));
	wire_add_u64(r, "epoch", s->el.epoch);
	wire_add(r, "leader", uuid_format(&lm->uuid, lb));
	wire_add(r, "addr", lm->addr);
	wire_add_u64(r, "port", lm->port);
	if (s->keyed) {
		/* The cluster's public key: the client pins it, then seals. */
		auth_pk_to_text(s->cluster.kx_pk, s->pk_text);
		wire_add(r, "pk", s->pk_text);
	}
	return 0;
}

/* A client (or anyone on the LAN) asking who leads: answer by unicast. */
static void
on_where(struct server *s, int fd, const struct wire_msg *m,
    const struct sockaddr_in *from)
{
	char lb[UUID_STRLEN + 1];
	struct wire_msg r;

	if (server_leader_msg(s, m->from, lb, &r) == -1)
		return; /* nothing useful to say yet; the client retries */
	server_send(s, fd, from, &r);
}

static void
on_client_vote(struct server *s, int fd, const struct wire_msg *m,
    const struct sockaddr_in *from, int64_t now)
{
	struct wire_msg r;

	if (s->el.role == ROLE_ELECTING || now < s->client_vote_ok_ms) {
		wire_init(&r, WK_OK, m->from, "election already under way",
		    server_self_id(s));
	} else {
		s->client_vote_ok_ms = now + CLIENT_VOTE_GAP_MS;
		log_info("client %s asked for an election", m->from);
		wire_init(
		    &r, WK_OK, m->from, "election started", server_self_id(s));
		start_election(s, now, "asked by a client", false);
	}
	server_send(s, fd, from, &r);
}

static void
handle_client_datagram(struct server *s, int fd, const struct wire_msg *m,
    const struct sockaddr_in *from, int64_t now)
{
	/* Answers leave from the data port, never the broadcast socket. */
	switch (m->kind) {
	case WK_WHERE:
		on_where(s, s->data_fd, m, from);
		break;
	case WK_VOTE:
		on_client_vote(s, s->data_fd, m, from, now);
		break;
	case WK_NEWS:
		/* Broadcast announcements arrive on the discovery port. */
		if (fd == s->disc_fd)
			on_news(s, m, from, now);
		else
			drop(s, DROP_KIND, from, "news");
		break;
	case WK_LEADER:
		/* Our own or another leader's broadcast for clients. */
		break;
	default:
		if (fd == s->disc_fd) {
			drop(s, DROP_KIND, from, wire_kind_name(m->kind));
			break;
		}
		chat_on_client(s, m, from, now);
		break;
	}
}

/* The replay window of sender id: found, or a slot taken for it. */
static struct s2s_peer *
s2s_peer(struct server *s, const char *id)
{
	struct s2s_peer *p, *old = NULL;
	size_t i;

	for (i = 0; i < RING_MAX; i++) {
		p = &s->s2s[i];
		if (p->used && strcmp(p->id, id) == 0)
			return p;
		if (old == NULL || !p->used ||
		    (old->used && p->last_ms < old->last_ms))
			old = p;
	}
	/* Full: a server silent for longest starts a new window. */
	memset(old, 0, sizeof(*old));
	old->used = true;
	(void)strlcpy(old->id, id, sizeof(old->id));
	auth_window_init(&old->w);
	return old;
}

/*
 * A server datagram under --cluster-key: its MAC must verify (sender,
 * every byte) and its counter be new for that sender.  -1: dropped and
 * counted.  Only a verified sender gets a replay window.
 */
static int
s2s_open(struct server *s, const char *buf, size_t n, const struct wire_msg *m,
    const struct sockaddr_in *from, int64_t now)
{
	struct s2s_peer *p = NULL;
	enum auth_err e;
	uint64_t ctr;
	size_t plen;
	char a[64];

	e = auth_s2s_verify(&s->cluster, m->from, buf, n, &ctr, &plen);
	if (e == AUTH_OK && boxed_kind(m->kind))
		e = AUTH_EMALFORMED; /* chat in clear: must come boxed */
	if (e == AUTH_OK) {
		p = s2s_peer(s, m->from);
		e = auth_window_check(&p->w, ctr, s->ctr_floor);
	}
	if (e != AUTH_OK) {
		s->auth_drops[e]++;
		flood_charge(s, from, now);
		log_limited(&s->bad_limit, now, 1000,
		    "dropped %s datagram from %s: %s", wire_kind_name(m->kind),
		    net_ntop(from, a, sizeof(a)), auth_strerror(e));
		return -1;
	}
	auth_window_update(&p->w, ctr);
	p->last_ms = now;
	return 0;
}

/* Keyed: a server datagram in a box (repl, snap): opened, then checked. */
static void
on_boxed(struct server *s, const char *buf, size_t n,
    const struct sockaddr_in *from, int64_t now)
{
	char pt[WIRE_MAX], id[UUID_STRLEN + 1], a[64];
	struct s2s_peer *p = NULL;
	struct uuid sender;
	struct wire_msg m;
	uint64_t ctr;
	size_t plen;
	enum auth_err e;

	e = auth_s2s_unbox(
	    &s->cluster, buf, n, sender.b, &ctr, pt, sizeof(pt), &plen);
	/* Inside, a repl or snap whose sender is the box's. */
	if (e == AUTH_OK &&
	    (wire_decode(&m, pt, plen) != WIRE_OK || !boxed_kind(m.kind) ||
		strcmp(m.from, uuid_format(&sender, id)) != 0))
		e = AUTH_EMALFORMED;
	if (e == AUTH_OK) {
		p = s2s_peer(s, id);
		e = auth_window_check(&p->w, ctr, s->ctr_floor);
	}
	if (e != AUTH_OK) {
		s->auth_drops[e]++;
		flood_charge(s, from, now);
		log_limited(&s->bad_limit, now, 1000,
		    "dropped boxed datagram from %s: %s",
		    net_ntop(from, a, sizeof(a)), auth_strerror(e));
		return;
	}
	auth_window_update(&p->w, ctr);
	p->last_ms = now;
	handle_ctl_datagram(s, &m, from, now);
}

/* At most HINTS_PER_S plain answers a second, to anyone. */
static bool
hint_ok(struct server *s, int64_t now)
{
	if (now - s->hint_ok_ms >= 1000) {
		s->hint_ok_ms = now;
		s->hints = 0;
	}
	return s->hints++ < HINTS_PER_S;
}

/* Where the leader is, in clear: a sealed datagram reached a non-leader. */
static void
send_hint(struct server *s, const struct sockaddr_in *to, int64_t now)
{
	char lb[UUID_STRLEN + 1];
	struct wire_msg r;

	if (hint_ok(s, now) && server_leader_msg(s, "?", lb, &r) == 0)
		server_send(s, s->data_fd, to, &r);
}

/* A token for one X25519: DERIVE_PER_S a second, a tenth as burst. */
static bool
derive_ok(struct server *s, int64_t now)
{
	s->derive_tokens += (double)(now - s->derive_ms) * DERIVE_PER_S / 1000;
	s->derive_ms = now;
	if (s->derive_tokens > DERIVE_PER_S / 10)
		s->derive_tokens = DERIVE_PER_S / 10;
	if (s->derive_tokens < 1)
		return false;
	s->derive_tokens -= 1;
	return true;
}

/*
 * Keyed: a client datagram in its session.  Only the leader holds
 * sessions; it opens the datagram (a new key costs an X25519 from the
 * budget), then handles the inner datagram as a plain one, with
 * s->req_key naming the session for the relay.
 */
static void
on_sealed(struct server *s, const char *buf, size_t n,
    const struct sockaddr_in *from, int64_t now)
{
	uint8_t pk[AUTH_PK_BYTES];
	char pt[WIRE_MAX], a[64];
	const struct sess *known;
	struct sess *e;
	struct wire_msg m;
	uint64_t epoch;
	size_t plen;
	bool may;
	enum auth_err ae;
	enum wire_err we;

	if (!s->chat.leader) {
		send_hint(s, from, now);
		return;
	}
	if ((ae = auth_session_peek(buf, n, pk, &epoch)) == AUTH_OK) {
		known = sess_find(&s->sess, pk);
		may = (known != NULL && known->epoch == s->el.epoch) ||
		    epoch != s->el.epoch || derive_ok(s, now);
		ae = sess_open(&s->sess, &s->cluster, s->el.epoch,
		    (uint64_t)wall_ms(), now, may, buf, n, pt, sizeof(pt),
		    &plen, &e);
	}
	if (ae != AUTH_OK) {
		s->sess_drops[ae]++;
		if (ae == AUTH_EEPOCH) {
			/* A client still on an older leader: say who leads. */
			if (epoch > s->el.epoch)
				flood_charge(s, from, now); /* none is newer */
			send_hint(s, from, now);
			return;
		}
		flood_charge(s, from, now);
		log_limited(&s->bad_limit, now, 1000,
		    "dropped session datagram from %s: %s",
		    net_ntop(from, a, sizeof(a)), auth_strerror(ae));
		return;
	}
	sess_seen(
	    &s->sess, e, from->sin_addr.s_addr, ntohs(from->sin_port), now);
	if ((we = wire_decode(&m, pt, plen)) != WIRE_OK) {
		s->wire_errors[we]++;
		log_limited(&s->bad_limit, now, 1000,
		    "bad datagram in the session of %s: %s",
		    net_ntop(from, a, sizeof(a)), wire_strerror(we));
		return;
	}
	strlcpy(s->req_key, e->key, sizeof(s->req_key));
	handle_client_datagram(s, s->data_fd, &m, from, now);
	s->req_key[0] = '\0';
}

/* Keyed: a plain client datagram that needs a session. */
static bool
plain_refused(struct server *s, int fd, const struct wire_msg *m,
    const struct sockaddr_in *from, int64_t now)
{
	struct wire_msg r;
	char a[64];

	if (fd != s->data_fd || m->kind == WK_WHERE || m->kind == WK_VOTE ||
	    m->kind == WK_LEADER)
		return false;
	s->plain_refused++;
	log_limited(&s->bad_limit, now, 1000,
	    "refused plain %s datagram from %s: the cluster has a key",
	    wire_kind_name(m->kind), net_ntop(from, a, sizeof(a)));
	if (hint_ok(s, now)) {
		wire_init(&r, WK_ERR, m->from,
		    "this cluster has a key: plain datagrams are refused, "
		    "speak in an encrypted session (docs/SECURITY.md)",
		    server_self_id(s));
		wire_add(&r, "code", "sealed");
		wire_add(&r, "re", wire_kind_name(m->kind));
		server_send(s, s->data_fd, from, &r);
	}
	return true;
}

static void
on_readable(struct loop *l, int fd, void *arg)
{
	/* One byte more than allowed, so oversize is seen, not cut. */
	static char bufs[RX_BURST][WIRE_MAX + 1];
	static struct sockaddr_in froms[RX_BURST];
	static struct mmsghdr mm[RX_BURST];
	static struct iovec iov[RX_BURST];
	struct server *s = arg;
	struct sockaddr_in from;
	struct wire_msg m;
	int64_t now;
	int i, got;

	(void)l;
	/* One system call for up to RX_BURST: a flood is drained faster. */
	for (i = 0; i < RX_BURST; i++) {
		iov[i].iov_base = bufs[i];
		iov[i].iov_len = sizeof(bufs[i]);
		memset(&mm[i].msg_hdr, 0, sizeof(mm[i].msg_hdr));
		mm[i].msg_hdr.msg_name = &froms[i];
		mm[i].msg_hdr.msg_namelen = sizeof(froms[i]);
		mm[i].msg_hdr.msg_iov = &iov[i];
		mm[i].msg_hdr.msg_iovlen = 1;
	}
	got = recvmmsg(fd, mm, RX_BURST, MSG_TRUNC, NULL);
	now = loop_now_ms(); /* once a batch: a clock read costs a flood */
	for (i = 0; i < got; i++) {
		const char *buf = bufs[i];
		size_t n = mm[i].msg_len; /* MSG_TRUNC: the whole length */
		enum wire_err e;

		from = froms[i];
		s->rx++;
		/* The cheapest check first: a source over its budget. */
		if (ratelimit_find(&s->rl, from.sin_addr.s_addr) != NULL &&
		    (fd == s->data_fd || !member_source(s, &from)) &&
		    ratelimit_over(&s->rl, from.sin_addr.s_addr, now))
			continue;
		if (s->keyed && fd == s->data_fd && (size_t)n <= WIRE_MAX &&
		    auth_session_is_sealed(buf, (size_t)n)) {
			on_sealed(s, buf, (size_t)n, &from, now);
			continue;
		}
		if (s->keyed && fd == s->ctl_fd && (size_t)n <= WIRE_MAX &&
		    auth_s2s_is_boxed(buf, (size_t)n)) {
			on_boxed(s, buf, (size_t)n, &from, now);
			continue;
		}
		e = (size_t)n > WIRE_MAX ? WIRE_ETOOBIG
					 : wire_decode(&m, buf, (size_t)n);
		if (e != WIRE_OK) {
			char a[64];

			s->wire_errors[e]++;
			flood_charge(s, &from, now);
			if (now < s->bad_limit.next_ms) {
				s->bad_limit
				    .suppressed++; /* nothing to format */
				continue;
			}
			log_limited(&s->bad_limit, now, 1000,
			    "bad datagram from %s: %s",
			    net_ntop(&from, a, sizeof(a)), wire_strerror(e));
			continue;
		}
		/*
		 * A sealed server datagram from a stranger (no member's control
		 * address): from a UUID no member has, dropped before its
		 * HMAC; else (a new server's news or member record, a member's
		 * datagram replayed from elsewhere) verified, but strangers
		 * together get STRANGER_MACS_PER_S, so sources new every
		 * datagram, which no per-source budget catches, cannot spend
		 * the CPU on HMACs.
		 */
		if (s->keyed && is_s2s(s, fd, m.kind) &&
		    !member_source(s, &from) && wire_get(&m, "mac") != NULL) {
			if (m.kind != WK_NEWS && m.kind != WK_MEMBER &&
			    !member_uuid(s, &m)) {
				(void)authentic_member(
				    s, &m, &from); /* counts */
				continue;
			}
			if (!ratelimit_bucket_take(&s->strangers, now))
				continue;
		}
		if (s->keyed && is_s2s(s, fd, m.kind) &&
		    s2s_open(s, buf, (size_t)n, &m, &from, now) == -1)
			continue;
		if (s->keyed && plain_refused(s, fd, &m, &from, now)) {
			flood_charge(s, &from, now);
			continue;
		}
		if (fd == s->ctl_fd)
			handle_ctl_datagram(s, &m, &from, now);
		else
			handle_client_datagram(s, fd, &m, &from, now);
	}
}

/* ---- periodic work ---------------------------------------------------- */

static void
server_send_news(struct server *s, const struct sockaddr_in *to)
{
	const struct member *me = ring_self(&s->ring);
	char lb[UUID_STRLEN + 1];
	struct wire_msg m;

	wire_init(&m, WK_NEWS, "*", me->name, server_self_id(s));
	wire_add(&m, "addr", me->addr);
	wire_add_u64(&m, "port", me->port);
	wire_add_u64(&m, "cport", me->ctl_port);
	wire_add(&m, "role", election_role_name(s->el.role));
	add_leader_view(s, &m, lb);
	server_send(s, s->ctl_fd, to, &m);
}

static void
discovery_round(struct server *s)
{
	size_t i;

	server_send_news(s, &s->disc_bcast);
	for (i = 0; i < s->peers.n; i++) {
		struct sockaddr_in sin;

		if (uuid_cmp(&s->peers.m[i].uuid, &s->ring.self) == 0 ||
		    member_ctl_addr(&s->peers.m[i], &sin) == -1)
			continue;
		server_send_news(s, &sin);
	}
}

static void
send_beats(struct server *s, int rounds)
{
	size_t i;

	s->hbl.seq++;
	for (i = 0; i < s->ring.n; i++) {
		const struct member *mb = &s->ring.m[i];
		char id[UUID_STRLEN + 1];
		struct wire_msg m;

		if (uuid_cmp(&mb->uuid, &s->ring.self) == 0)
			continue;
		if (mb->alive ? !(rounds & HB_ROUND_LIVE)
			      : !(rounds & HB_ROUND_DEAD))
			continue;
		wire_init(&m, WK_BEAT, uuid_format(&mb->uuid, id), "",
		    server_self_id(s));
		wire_add_u64(&m, "epoch", s->el.epoch);
		wire_add_u64(&m, "seq", s->hbl.seq);
		wire_add_u64(&m, "sv", s->servers_version);
		server_send_member(s, &mb->uuid, &m);
	}
}

/* Probes the leader directly and through up to HB_INDIRECT members. */
static void
send_probes(struct server *s)
{
	char lid[UUID_STRLEN + 1];
	size_t i, sent = 0, start;
	struct wire_msg m;

	uuid_format(&s->el.leader, lid);
	wire_init(&m, WK_PROBE, lid, "", server_self_id(s));
	wire_add_u64(&m, "id", s->hbf.probe_id);
	wire_add(&m, "origin", server_self_id(s));
	server_send_member(s, &s->el.leader, &m);
	if (s->ring.n == 0)
		return;
	start = (size_t)arc4random_uniform((uint32_t)s->ring.n);
	for (i = 0; i < s->ring.n && sent < HB_INDIRECT; i++) {
		const struct member *mb = &s->ring.m[(start + i) % s->ring.n];

		if (!mb->alive || uuid_cmp(&mb->uuid, &s->ring.self) == 0 ||
		    uuid_cmp(&mb->uuid, &s->el.leader) == 0)
			continue;
		server_send_member(s, &mb->uuid, &m);
		sent++;
	}
}

/*
 * Probes every member we believe dead (id 0: no suspicion to refute).
 * The probe proves us alive to it, its answer proves it alive to us, and
 * the answer's leader view is compared as any other.
 */
static void
revive_round(struct server *s)
{
	struct uuid dead[RING_MAX];
	char id[UUID_STRLEN + 1];
	struct wire_msg m;
	size_t i, n;

	n = hb_revive_targets(&s->ring, dead, RING_MAX);
	for (i = 0; i < n; i++) {
		wire_init(&m, WK_PROBE, uuid_format(&dead[i], id), "",
		    server_self_id(s));
		wire_add_u64(&m, "id", 0);
		wire_add(&m, "origin", server_self_id(s));
		server_send_member(s, &dead[i], &m);
	}
}

static void
follower_tick(struct server *s, int64_t now)
{
	int missed = hb_follower_missed(&s->hbf, now);
	enum hb_action a = hb_follower_tick(&s->hbf, now);

	if (a == HB_PROBE && s->hbf.probes_sent == 1) {
		log_info("leader suspect: %d beats missed, probing", missed);
		emit_uuid(s, "suspect", "leader", &s->el.leader, s->el.epoch);
	}
	if (a == HB_PROBE) {
		send_probes(s);
	} else if (a == HB_DEAD) {
		struct uuid dead = s->el.leader;

		log_info("leader declared dead after %d missed beats and "
			 "unanswered probes",
		    missed);
		emit_uuid(s, "heartbeat_timeout", "leader", &dead, s->el.epoch);
		member_down(s, &dead, "missed heartbeats");
		s->dead_hint_set = true;
		s->dead_hint = dead;
		s->dead_hint_epoch = s->el.epoch + 1;
		start_election(s, now, "leader dead", false);
	}
}

static void
leader_tick(struct server *s, int64_t now)
{
	struct uuid dead[RING_MAX];
	size_t i, n;
	int rounds = hb_leader_tick(&s->hbl, now);

	if (rounds != 0)
		send_beats(s, rounds);
	n = hb_leader_reap(&s->hbl, &s->ring, now, dead, RING_MAX);
	for (i = 0; i < n; i++) {
		const struct member *mb = ring_find_const(&s->ring, &dead[i]);
		char buf[UUID_STRLEN + 1];
		struct store_kv kv[2] = {{.key = "member",
					     .type = KV_STR,
					     .s = uuid_format(&dead[i], buf)},
		    {.key = "why", .type = KV_STR, .s = "no beat answers"}};

		log_info("member %s is down: no beat answers",
		    mb != NULL ? mb->name : buf);
		emit(s, "member_down", kv, 2);
		servers_changed(s);
	}
	if (n > 0)
		chat_members_changed(s, now);
}

static void
quit_now(struct server *s)
{
	size_t i;

	for (i = 0; i < s->ring.n; i++) {
		char id[UUID_STRLEN + 1];
		struct wire_msg m;

		if (uuid_cmp(&s->ring.m[i].uuid, &s->ring.self) == 0)
			continue;
		wire_init(&m, WK_BYE, uuid_format(&s->ring.m[i].uuid, id), "",
		    server_self_id(s));
		server_send_member(s, &s->ring.m[i].uuid, &m);
	}
	emit(s, "quit", NULL, 0);
	loop_stop(&s->loop);
}

static void conn_close(struct server *, struct ctl_conn *);

/* A control client that never finishes its line loses its slot. */
static void
conns_expire(struct server *s, int64_t now)
{
	size_t i;

	for (i = 0; i < SERVER_CONNS_MAX; i++)
		if (s->conns[i].fd != -1 && now >= s->conns[i].deadline_ms)
			conn_close(s, &s->conns[i]);
}

static void
server_tick(struct loop *l, int64_t now, void *arg)
{
	struct server *s = arg;

	(void)l;
	ratelimit_tick(&s->rl, now);
	if (s->rl.gen != s->rl_gen)
		flood_filter(s);
	election_tick(&s->el, &s->ring, now);
	server_apply_election(s, now);
	if (s->el.role == ROLE_BACKUP)
		follower_tick(s, now);
	else if (s->el.role == ROLE_LEADER)
		leader_tick(s, now);
	if (hb_revive_tick(&s->hbr, now))
		revive_round(s);
	if (s->discovering && now >= s->disc_next_ms) {
		discovery_round(s);
		s->disc_interval_ms = s->disc_interval_ms * 2 > DISC_MAX_MS
		    ? DISC_MAX_MS
		    : s->disc_interval_ms * 2;
		s->disc_next_ms = now + s->disc_interval_ms;
	}
	if (s->el.role == ROLE_STARTING && now >= s->disc_deadline_ms) {
		log_info("no leader heard in %lld ms: starting an election",
		    (long long)s->cfg.discovery_ms);
		start_election(s, now, "no leader found", false);
	}
	if (s->quitting &&
	    (now >= s->quit_deadline_ms ||
		(s->el.role == ROLE_BACKUP && s->el.has_leader)))
		quit_now(s);
	if (now >= s->servers_refresh_ms) {
		s->servers_refresh_ms = now + SERVERS_REFRESH_MS;
		s->servers_dirty = true; /* last_seen times */
		s->servers_write_ms = now;
	}
	if (s->servers_dirty && now >= s->servers_write_ms)
		servers_write(s);
	chat_tick(s, now);
	conns_expire(s, now);
	if (s->keyed && now >= s->sess_expire_ms) {
		sess_expire(&s->sess, now);
		s->sess_expire_ms = now + 1000;
	}
}

static int64_t
server_deadline(void *arg)
{
	struct server *s = arg;
	int64_t d = election_next_deadline(&s->el), x;

	if (s->el.role == ROLE_BACKUP &&
	    (x = hb_follower_next_deadline(&s->hbf)) < d)
		d = x;
	if (s->el.role == ROLE_LEADER &&
	    (x = hb_leader_next_deadline(&s->hbl)) < d)
		d = x;
	if ((x = hb_revive_next_deadline(&s->hbr)) < d)
		d = x;
	if (s->discovering && s->disc_next_ms < d)
		d = s->disc_next_ms;
	if (s->el.role == ROLE_STARTING && s->disc_deadline_ms < d)
		d = s->disc_deadline_ms;
	if (s->servers_dirty && s->servers_write_ms < d)
		d = s->servers_write_ms;
	if (s->quitting && s->quit_deadline_ms < d)
		d = s->quit_deadline_ms;
	if (s->servers_refresh_ms < d)
		d = s->servers_refresh_ms;
	if ((x = chat_next_deadline(s)) < d)
		d = x;
	return d;
}

/* ---- operator commands ------------------------------------------------ */

static void
print_ring(struct server *s, FILE *f)
{
	const struct member *start = ring_self(&s->ring);
	size_t i, idx = 0;

	/* In ring order starting from ourselves, as the votes travel. */
	for (i = 0; i < s->ring.n; i++)
		if (&s->ring.m[i] == start)
			idx = i;
	for (i = 0; i < s->ring.n; i++) {
		const struct member *mb = &s->ring.m[(idx + i) % s->ring.n];
		char id[UUID_STRLEN + 1];
		bool is_self = uuid_cmp(&mb->uuid, &s->ring.self) == 0;
		bool is_leader =
		    s->el.has_leader && uuid_cmp(&mb->uuid, &s->el.leader) == 0;
		int64_t ago = mb->last_seen_ms == 0
		    ? -1
		    : loop_now_ms() - mb->last_seen_ms;

		fprintf(f, "  %s %-16s %s:%u/%u %-5s%s%s",
		    uuid_format(&mb->uuid, id), mb->name, mb->addr, mb->port,
		    mb->ctl_port, mb->alive ? "up" : "down",
		    is_self ? " self" : "", is_leader ? " leader" : "");
		if (!is_self && ago >= 0)
			fprintf(f, " (seen %lld ms ago)", (long long)ago);
		fputc('\n', f);
	}
}

static void
print_status(struct server *s, FILE *f)
{
	const struct member *me = ring_self(&s->ring);
	const struct member *lm =
	    s->el.has_leader ? ring_find_const(&s->ring, &s->el.leader) : NULL;
	uint64_t bad = 0;
	char fp[AUTH_FP_SIZE];
	size_t i;

	for (i = 1; i < WIRE_NERR; i++)
		bad += s->wire_errors[i];
	for (i = 0; i < DROP_NMAX; i++)
		bad += s->drops[i];
	for (i = 1; i < AUTH_NERR; i++)
		bad += s->auth_drops[i];
	bad += s->rl.dropped;
	fprintf(f,
	    "server %s (%s) on %s, data %s:%u, control %u, discovery %u\n",
	    me->name, server_self_id(s), s->ifc.name, me->addr, me->port,
	    me->ctl_port, s->cfg.disc_port);
	fprintf(f, "role %s, epoch %llu, leader %s\n",
	    election_role_name(s->el.role), (unsigned long long)s->el.epoch,
	    lm != NULL ? lm->name : "(none)");
	fprintf(f, "ring (%zu members, %zu up):\n", s->ring.n,
	    ring_live_count(&s->ring));
	print_ring(s, f);
	fprintf(f, "elections %llu, datagrams in %llu out %llu, dropped %llu\n",
	    (unsigned long long)s->elections, (unsigned long long)s->rx,
	    (unsigned long long)s->tx, (unsigned long long)bad);
	if (s->beats > 0)
		fprintf(f,
		    "beats from the leader %llu, largest gap %lld ms, "
		    "%llu more than two periods apart\n",
		    (unsigned long long)s->beats, (long long)s->beat_gap_max_ms,
		    (unsigned long long)s->beats_late);
	if (s->rl.cfg.rate == 0)
		fprintf(f, "rate limit: off\n");
	else
		fprintf(f,
		    "rate limit: %u bad datagrams a second per source, "
		    "burst %u; %zu sources over it now, %llu times in all; "
		    "dropped unread %llu; kernel drops (socket filter or "
		    "full buffer) %llu; strangers' MAC checks over %d a "
		    "second %llu\n",
		    s->rl.cfg.rate, s->rl.cfg.burst,
		    ratelimit_count_over(&s->rl, loop_now_ms()),
		    (unsigned long long)s->rl.episodes,
		    (unsigned long long)s->rl.dropped,
		    (unsigned long long)kernel_drops(s), STRANGER_MACS_PER_S,
		    (unsigned long long)s->strangers.refused);
	if (!s->keyed) {
		fprintf(f, "cluster key: none (open)\n");
		return;
	}
	fprintf(f,
	    "cluster key: %s; refused: bad mac %llu, no mac %llu, "
	    "malformed %llu, replayed %llu, too old %llu\n",
	    s->cfg.key_file, (unsigned long long)s->auth_drops[AUTH_EBADMAC],
	    (unsigned long long)s->auth_drops[AUTH_ENOMAC],
	    (unsigned long long)(s->auth_drops[AUTH_EMALFORMED] +
		s->auth_drops[AUTH_ETOOBIG]),
	    (unsigned long long)s->auth_drops[AUTH_EREPLAY],
	    (unsigned long long)s->auth_drops[AUTH_ETOOOLD]);
	auth_fingerprint(s->cluster.kx_pk, fp);
	fprintf(f,
	    "cluster fingerprint: %s (ringchat shows it when it pins the key)\n",
	    fp);
	fprintf(f,
	    "client sessions: %zu live, %llu created; refused: plain %llu, "
	    "bad tag %llu, replayed %llu, too old %llu, old epoch %llu, "
	    "malformed %llu, busy %llu; unsent without a session %llu\n",
	    s->sess.live, (unsigned long long)s->sess.created,
	    (unsigned long long)s->plain_refused,
	    (unsigned long long)s->sess_drops[AUTH_EBADMAC],
	    (unsigned long long)s->sess_drops[AUTH_EREPLAY],
	    (unsigned long long)s->sess_drops[AUTH_ETOOOLD],
	    (unsigned long long)s->sess_drops[AUTH_EEPOCH],
	    (unsigned long long)(s->sess_drops[AUTH_EMALFORMED] +
		s->sess_drops[AUTH_ESESSION] + s->sess_drops[AUTH_EKX]),
	    (unsigned long long)(s->sess_drops[AUTH_ETOOBIG] +
		s->sess_drops[AUTH_ENOMEM]),
	    (unsigned long long)s->tx_nosess);
}

static void
print_status_json(struct server *s, FILE *f)
{
	struct store_status st;
	uint64_t bad = 0;
	char *j;
	size_t i;

	for (i = 1; i < WIRE_NERR; i++)
		bad += s->wire_errors[i];
	for (i = 0; i < DROP_NMAX; i++)
		bad += s->drops[i];
	for (i = 1; i < AUTH_NERR; i++)
		bad += s->auth_drops[i];
	bad += s->rl.dropped;
	memset(&st, 0, sizeof(st));
	st.name = ring_self(&s->ring)->name;
	st.uuid = &s->ring.self;
	st.role = election_role_name(s->el.role);
	st.epoch = s->el.epoch;
	st.has_leader = s->el.has_leader;
	st.leader = &s->el.leader;
	st.ring = &s->ring;
	st.servers_version = s->servers_version;
	st.uptime_ms = loop_now_ms() - s->start_ms;
	st.bad_datagrams = bad;
	st.elections = s->elections;
	if ((j = store_status_json(&st)) == NULL) {
		fprintf(f, "error: out of memory\n");
		return;
	}
	fprintf(f, "%s\n", j);
	free(j);
}

/* Runs one operator command; the answer goes to f. */
static void
server_command(struct server *s, const char *line, FILE *f)
{
	int64_t now = loop_now_ms();

	switch (control_parse(line)) {
	case CTL_EMPTY:
		break;
	case CTL_VOTE:
		log_info("operator asked for an election");
		fprintf(f, "starting an election (epoch %llu)\n",
		    (unsigned long long)s->el.epoch + 1);
		start_election(s, now, "asked by the operator", false);
		break;
	case CTL_STATUS:
		print_status(s, f);
		break;
	case CTL_STATUS_JSON:
		print_status_json(s, f);
		break;
	case CTL_SERVERS:
		print_ring(s, f);
		break;
	case CTL_USERS:
		chat_print_users(s, f);
		break;
	case CTL_ROOMS:
		chat_print_rooms(s, f);
		break;
	case CTL_HELP:
		fprintf(f, "commands:\n%s", control_help());
		break;
	case CTL_QUIT:
		if (s->quitting)
			break;
		s->quitting = true;
		s->quit_deadline_ms = now + QUIT_GRACE_MS;
		if (s->el.role == ROLE_LEADER &&
		    ring_live_count(&s->ring) > 1) {
			fprintf(f, "handing over leadership, then leaving\n");
			start_election(s, now, "leader quits", true);
		} else {
			fprintf(f, "leaving\n");
			quit_now(s);
		}
		break;
	case CTL_UNKNOWN:
		fprintf(f, "unknown command (try help)\n");
		break;
	case CTL_BADARG:
		fprintf(f, "that command takes no such argument (try help)\n");
		break;
	}
}

static char *
command_output(struct server *s, const char *line, size_t *len)
{
	char *buf = NULL;
	FILE *f = open_memstream(&buf, len);

	if (f == NULL)
		return NULL;
	server_command(s, line, f);
	if (fclose(f) != 0) {
		free(buf);
		return NULL;
	}
	return buf;
}

static void
on_stdin(struct loop *l, int fd, void *arg)
{
	struct server *s = arg;
	ssize_t n;
	char *nl;

	n = read(
	    fd, s->stdin_buf + s->stdin_used, CTL_LINE_MAX - s->stdin_used);
	if (n <= 0) {
		if (n == 0 || (errno != EAGAIN && errno != EINTR))
			loop_del_fd(l, fd); /* stdin closed: keep serving */
		return;
	}
	s->stdin_used += (size_t)n;
	while ((nl = memchr(s->stdin_buf, '\n', s->stdin_used)) != NULL) {
		size_t linelen = (size_t)(nl - s->stdin_buf), olen;
		char *out;

		*nl = '\0';
		if ((out = command_output(s, s->stdin_buf, &olen)) != NULL) {
			fwrite(out, 1, olen, stdout);
			fflush(stdout);
			free(out);
		}
		memmove(s->stdin_buf, nl + 1, s->stdin_used - linelen - 1);
		s->stdin_used -= linelen + 1;
	}
	if (s->stdin_used == CTL_LINE_MAX) {
		printf("line too long: ignored\n");
		fflush(stdout);
		s->stdin_used = 0;
	}
}

static void
conn_close(struct server *s, struct ctl_conn *c)
{
	loop_del_fd(&s->loop, c->fd);
	close(c->fd);
	c->fd = -1;
}

static void
on_conn(struct loop *l, int fd, void *arg)
{
	struct server *s = arg;
	struct ctl_conn *c = NULL;
	size_t i, olen;
	char *out;
	int r;

	(void)l;
	for (i = 0; i < SERVER_CONNS_MAX; i++)
		if (s->conns[i].fd == fd)
			c = &s->conns[i];
	if (c == NULL)
		return;
	r = control_read_line(fd, c->buf, &c->used);
	if (r == 0)
		return;
	if (r == 1 && (out = command_output(s, c->buf, &olen)) != NULL) {
		control_write_all(fd, out, olen);
		free(out);
	}
	conn_close(s, c);
}

static void
on_accept(struct loop *l, int fd, void *arg)
{
	struct server *s = arg;
	size_t i;
	int c;

	if ((c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) == -1)
		return;
	for (i = 0; i < SERVER_CONNS_MAX; i++) {
		if (s->conns[i].fd != -1)
			continue;
		s->conns[i].fd = c;
		s->conns[i].used = 0;
		s->conns[i].deadline_ms = loop_now_ms() + 2000;
		if (loop_add_fd(l, c, PRIO_OPER, on_conn, s) == -1)
			break;
		return;
	}
	if (i < SERVER_CONNS_MAX)
		s->conns[i].fd = -1;
	control_write_all(c, "busy: too many control connections\n", 36);
	close(c);
}

/* ---- start-up --------------------------------------------------------- */

void
server_cfg_defaults(struct server_cfg *c)
{
	memset(c, 0, sizeof(*c));
	c->port = SERVER_DEFAULT_PORT;
	c->disc_port = SERVER_DEFAULT_DISC_PORT;
	strlcpy(c->state_dir, ".", sizeof(c->state_dir));
	c->hb.interval_ms = 20;
	c->hb.misses = 3;
	c->hb.probe_window_ms = 30;
	c->hb.probe_tries = 3;
	c->hb.dead_retry_ms = 1000;
	c->el.retry_ms = 15;
	c->el.retries = 3;
	c->el.timeout_ms = 1000;
	c->discovery_ms = 600;
	ratelimit_cfg_defaults(&c->rl);
}

static void
load_identity(struct server *s, struct member *me)
{
	struct store_error err;
	char path[PATH_MAX], name[RING_NAME_MAX];
	struct uuid u;
	int r;

	if (state_path(s, "identity.json", path, sizeof(path)) == -1)
		fatalx("%s: state directory path too long", s->cfg.state_dir);
	r = store_read_identity(path, &u, name, sizeof(name), &err);
	if (r == -1)
		fatalx("%s (the file is kept as it is; fix or remove it)",
		    err.text);
	if (s->cfg.uuid_given)
		u = s->cfg.uuid;
	else if (r == 1)
		uuid_generate(&u);
	me->uuid = u;
	if (r == 1 || s->cfg.uuid_given) {
		if (store_write_identity(path, &u, me->name, &err) == -1)
			fatalx("%s", err.text);
	}
}

void
server_move_aside(const char *path)
{
	char dst[PATH_MAX];
	int n = snprintf(
	    dst, sizeof(dst), "%s.corrupt-%lld", path, (long long)time(NULL));

	if (n < 0 || (size_t)n >= sizeof(dst) || rename(path, dst) == -1)
		fatal("cannot move %s aside", path);
	log_warnx(
	    "moved corrupt %s to %s; state comes from the leader", path, dst);
}

static void
load_servers(struct server *s)
{
	struct servers_state *st;
	struct store_error err;
	char path[PATH_MAX];
	size_t i;
	int r;

	if ((st = calloc(1, sizeof(*st))) == NULL)
		fatal("calloc");
	if (state_path(s, "servers.json", path, sizeof(path)) == -1)
		fatalx("%s: state directory path too long", s->cfg.state_dir);
	r = store_read_servers(path, st, &err);
	if (r == -1 && s->cfg.recover) {
		log_warnx("%s", err.text);
		server_move_aside(path);
		r = 1;
	} else if (r == -1) {
		fatalx("%s (the file is kept; fix it, or start with --recover "
		       "to move it aside and fetch the state from the leader)",
		    err.text);
	}
	if (r == 0) {
		/* Known servers, not known to be alive until heard from. */
		for (i = 0; i < st->n; i++) {
			if (uuid_cmp(&st->m[i].uuid, &s->ring.self) == 0)
				continue;
			if (ring_upsert(&s->ring, &st->m[i]) == -1)
				break;
			ring_set_alive(&s->ring, &st->m[i].uuid, false);
			ring_find(&s->ring, &st->m[i].uuid)->last_seen_wall =
			    st->m[i].last_seen_wall;
		}
		s->servers_version = st->version;
		/* Epochs only grow, even across restarts. */
		s->el.epoch = st->epoch;
	}
	free(st);
}

static void
load_peers(struct server *s)
{
	struct store_error err;
	int r;

	if (s->cfg.peers_file[0] == '\0')
		return;
	r = store_read_servers(s->cfg.peers_file, &s->peers, &err);
	if (r == 1)
		fatalx("--peers %s: no such file", s->cfg.peers_file);
	if (r == -1)
		fatalx("--peers: %s", err.text);
}

static void
open_sockets(struct server *s, struct member *me)
{
	char err[256], b[INET_ADDRSTRLEN];

	if (net_iface_lookup(s->cfg.iface, &s->ifc, err, sizeof(err)) == -1)
		fatalx("--iface %s: %s", s->cfg.iface, err);
	inet_ntop(AF_INET, &s->ifc.addr, me->addr, sizeof(me->addr));
	s->data_fd = net_udp_socket(s->ifc.addr, s->cfg.port, false, true);
	if (s->data_fd == -1)
		fatal("data port %s:%u", me->addr, s->cfg.port);
	s->ctl_fd = net_udp_socket(s->ifc.addr, s->cfg.ctl_port, false, true);
	if (s->ctl_fd == -1)
		fatal("control port %s:%u", me->addr, s->cfg.ctl_port);
	/*
	 * Bound to the broadcast address, the shared discovery socket gets
	 * the subnet's broadcasts and nothing else; SO_REUSEADDR lets every
	 * server and client on this host have one.
	 */
	s->disc_fd = net_udp_socket(s->ifc.bcast, s->cfg.disc_port, true, true);
	if (s->disc_fd == -1)
		fatal("discovery port %s:%u",
		    inet_ntop(AF_INET, &s->ifc.bcast, b, sizeof(b)),
		    s->cfg.disc_port);
	memset(&s->disc_bcast, 0, sizeof(s->disc_bcast));
	s->disc_bcast.sin_family = AF_INET;
	s->disc_bcast.sin_addr = s->ifc.bcast;
	s->disc_bcast.sin_port = htons(s->cfg.disc_port);
	me->port = s->cfg.port;
	me->ctl_port = s->cfg.ctl_port;
}

static void
open_control_socket(struct server *s)
{
	if (state_path(s, "ringchatd.sock", s->ctlsock_path,
		sizeof(s->ctlsock_path)) == -1)
		fatalx("%s: state directory path too long", s->cfg.state_dir);
	s->ctlsock_fd = control_listen(s->ctlsock_path);
	if (s->ctlsock_fd == -1 && errno == EADDRINUSE)
		fatalx("%s: another ringchatd runs with this state directory",
		    s->ctlsock_path);
	if (s->ctlsock_fd == -1)
		fatal("control socket %s", s->ctlsock_path);
}

/* --cluster-key: every server datagram sealed and checked. */
static void
server_key_load(struct server *s)
{
	struct auth_error err;
	struct auth_key key;
	char fp[AUTH_FP_SIZE];
	enum auth_err e;
	int64_t now = wall_ms();

	if (s->cfg.key_file[0] == '\0') {
		log_warnx(
		    "no --cluster-key: the cluster runs open (any host on "
		    "the LAN can speak as a server; docs/SECURITY.md)");
		return;
	}
	if (auth_key_read(s->cfg.key_file, &key, &err) != AUTH_OK)
		fatalx("%s", err.text);
	e = auth_cluster_init(&s->cluster, &key);
	auth_key_wipe(&key);
	if (e != AUTH_OK)
		fatalx("%s: %s", s->cfg.key_file, auth_strerror(e));
	auth_ctr_init(&s->ctr, (uint64_t)now);
	s->ctr_floor = auth_ctr_floor((uint64_t)now, AUTH_SKEW_MS);
	s->keyed = true;
	if (sess_init(&s->sess, SESS_MAX) == -1)
		fatalx("client sessions: out of memory");
	auth_fingerprint(s->cluster.kx_pk, fp);
	log_info("cluster key %s: server datagrams authenticated (cluster "
		 "fingerprint %s)",
	    s->cfg.key_file, fp);
}

void
server_init(struct server *s, const struct server_cfg *cfg)
{
	struct member me;
	char b[INET_ADDRSTRLEN], id[UUID_STRLEN + 1];
	size_t i;
	struct store_kv kv[4];

	memset(s, 0, sizeof(*s));
	s->cfg = *cfg;
	s->data_fd = s->ctl_fd = s->disc_fd = s->ctlsock_fd = -1;
	for (i = 0; i < SERVER_CONNS_MAX; i++)
		s->conns[i].fd = -1;
	if (s->cfg.ctl_port == 0)
		s->cfg.ctl_port = (uint16_t)(s->cfg.port + 1);
	if (s->cfg.iface[0] == '\0') {
		const char *lo = net_loopback_name();

		if (lo == NULL)
			fatalx("no loopback interface with an IPv4 address");
		strlcpy(s->cfg.iface, lo, sizeof(s->cfg.iface));
	}
	if (mkdir(s->cfg.state_dir, 0755) == -1 && errno != EEXIST)
		fatal("state directory %s", s->cfg.state_dir);

	memset(&me, 0, sizeof(me));
	strlcpy(me.name, s->cfg.name, sizeof(me.name));
	me.alive = true;
	open_sockets(s, &me);
	load_identity(s, &me);
	ring_init(&s->ring, &me);
	election_init(&s->el, &me.uuid, &s->cfg.el, 0);
	chat_init(s);
	hb_follower_init(&s->hbf, &s->cfg.hb);
	hb_leader_init(&s->hbl, &s->cfg.hb);
	hb_revive_init(&s->hbr, &s->cfg.hb);
	/* A restarted server must not reuse the hop and probe ids of its
	 * previous life: acks still in flight would match them. */
	s->el.next_hop = ((uint64_t)arc4random() << 20) + 1;
	s->hbf.probe_id = (uint64_t)arc4random() << 20;
	load_servers(s);
	load_peers(s);
	chat_load(s);
	/* Limits: the same on every server (docs/RELAY.md). */
	if (s->cfg.users_max != 0)
		s->chat.relay.cfg.users_max = s->cfg.users_max;
	if (s->cfg.rooms_max != 0)
		s->chat.relay.cfg.rooms_max = s->cfg.rooms_max;
	if (s->cfg.queue_max != 0)
		s->chat.relay.cfg.queue_max = s->cfg.queue_max;
	if (ratelimit_init(&s->rl, &s->cfg.rl, arc4random()) == -1)
		fatalx("rate limit %u a second, burst %u: out of range",
		    s->cfg.rl.rate, s->cfg.rl.burst);
	ratelimit_bucket_init(&s->strangers, STRANGER_MACS_PER_S,
	    STRANGER_MACS_PER_S, loop_now_ms());
	open_control_socket(s);
	if (s->cfg.events_file[0] != '\0') {
		if (events_open(
			&s->ev, s->cfg.events_file, &me.uuid, me.name) == -1)
			fatal("--events %s", s->cfg.events_file);
	} else {
		events_open(&s->ev, NULL, &me.uuid, me.name);
	}

	loop_init(&s->loop);
	loop_set_owner(&s->loop, server_deadline, server_tick, s);
	loop_add_fd(&s->loop, s->ctl_fd, PRIO_CTL, on_readable, s);
	loop_add_fd(&s->loop, s->disc_fd, PRIO_DISC, on_readable, s);
	loop_add_fd(&s->loop, s->ctlsock_fd, PRIO_OPER, on_accept, s);
	loop_add_fd(&s->loop, s->data_fd, PRIO_DATA, on_readable, s);
	if (s->cfg.use_stdin)
		loop_add_fd(&s->loop, STDIN_FILENO, PRIO_OPER, on_stdin, s);

	s->start_ms = loop_now_ms();
	/* Members loaded from servers.json are probed, not trusted. */
	hb_revive_start(&s->hbr, s->start_ms);
	s->discovering = true;
	s->disc_interval_ms = DISC_FIRST_MS;
	s->disc_next_ms = s->start_ms;
	s->disc_deadline_ms = s->start_ms + s->cfg.discovery_ms;
	s->servers_refresh_ms = s->start_ms + SERVERS_REFRESH_MS;
	servers_changed(s);

	server_key_load(s);
	log_info("server %s (%s) on %s %s: data %u, control %u, discovery "
		 "%u, broadcast %s",
	    me.name, uuid_format(&me.uuid, id), s->ifc.name, me.addr, me.port,
	    me.ctl_port, s->cfg.disc_port,
	    inet_ntop(AF_INET, &s->ifc.bcast, b, sizeof(b)));
	if (s->ifc.loopback)
		log_info("listening on loopback only: to reach a LAN, start "
			 "with --iface IF (e.g. --iface eth0)");
	memset(kv, 0, sizeof(kv));
	kv[0].key = "addr";
	kv[0].type = KV_STR;
	kv[0].s = me.addr;
	kv[1].key = "port";
	kv[1].type = KV_UINT;
	kv[1].u = me.port;
	kv[2].key = "ctl_port";
	kv[2].type = KV_UINT;
	kv[2].u = me.ctl_port;
	kv[3].key = "epoch";
	kv[3].type = KV_UINT;
	kv[3].u = s->el.epoch;
	emit(s, "start", kv, 4);
}

int
server_run(struct server *s, volatile int *stop)
{
	s->stop_flag = stop;
	return loop_run(&s->loop, stop);
}

void
server_shutdown(struct server *s)
{
	size_t i;

	if (s->servers_dirty)
		servers_write(s);
	for (i = 0; i < SERVER_CONNS_MAX; i++)
		if (s->conns[i].fd != -1)
			close(s->conns[i].fd);
	if (s->ctlsock_fd != -1) {
		close(s->ctlsock_fd);
		unlink(s->ctlsock_path);
	}
	if (s->data_fd != -1)
		close(s->data_fd);
	if (s->ctl_fd != -1)
		close(s->ctl_fd);
	if (s->disc_fd != -1)
		close(s->disc_fd);
	chat_free(s);
	events_close(&s->ev);
	sess_free(&s->sess);
	auth_cluster_wipe(&s->cluster);
}
