/* loadgen: many chat clients in one process: throughput, latency, loss. */
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/types.h>

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "net.h"
#include "wire.h"

/*
 * Every simulated user has its own UDP socket: the relay knows a session
 * by the address and port it logged in from, and a room or `*` delivery
 * does not name its recipient, so users cannot share a port.  One thread
 * serves them all with epoll; each ready socket is read with one
 * recvmmsg and answered (acknowledgements, the next messages) with one
 * sendmmsg.  A timerfd paces the offered rate and runs the resends.
 *
 * A message's body is "gN xxx...": N is its index in msgs[], so a
 * delivery finds its record whatever the relay's id, and the recipient
 * checks where it should have gone.  Each user behaves as ringchat does:
 * increasing cids, the same cid again until its `ok`, every delivery
 * acknowledged and de-duplicated by id within its stream, a keepalive
 * when otherwise silent, a logout at the end.  Latency is from the first
 * send of a message to its delivery at each recipient.
 */

#define LG_BATCH	   64 /* datagrams per recvmmsg or sendmmsg */
#define LG_CID_SLOTS	   16 /* the relay's cid window */
#define LG_WINDOW_MAX	   15 /* open messages per user: under the cid window */
#define LG_STREAMS	   4  /* streams remembered per recipient */
#define LG_SETUP_MAX	   128	/* newu, login, join requests in flight */
#define LG_RETRY_MS	   100	/* first resend, as ringchat's client */
#define LG_RETRY_MAX	   1000 /* resends double up to this */
#define LG_ALIVE_MS	   1000 /* keepalive of an otherwise silent user */
#define LG_SCAN_MS	   10	/* resend and keepalive scan */
#define LG_LOGOUT_S	   1  /* logouts answered by then, or left to expire */
#define LG_SETUP_S	   20 /* every user logged in by then, or give up */
#define LG_NAME_MAX	   32
#define LG_USERS_PER_ADDR  10000 /* sockets bound per 127.0.0.x address */
#define LG_ORDER_USERS_MAX 2048	 /* per-sender order checked up to this */
#define LG_PREFIX_MAX	   16
#define LG_RCVBUF	   (1 << 20)
#define LG_SINK_RCVBUF	   (8 << 20)

/* Latency histogram: 1 us buckets to 10 ms, then 1 ms buckets to 10 s. */
#define H_FINE	 10000
#define H_COARSE 10000

#define NS_PER_MS 1000000LL
#define NS_PER_S  1000000000LL

enum lg_mode { M_DIRECT, M_ROOM, M_BCAST, M_RAW };

enum lg_ustate { U_IDLE, U_NEWU, U_LOGIN, U_JOIN, U_READY, U_LOGOUT };

enum lg_phase { P_SETUP, P_SEND, P_DRAIN, P_LOGOUT, P_DONE };

struct hist {
	uint64_t n;
	int64_t max_us;
	double sum_us;
	uint64_t b[H_FINE + H_COARSE + 1];
};

/* One message: its index is the N in its body. */
struct lg_msg {
	int64_t t_send; /* first send, ns */
	uint64_t id;	/* the relay's, from the ok or the first delivery */
	uint32_t sender;
	uint32_t sseq;	 /* the sender's n-th message */
	uint16_t expect; /* recipients */
	uint16_t got;	 /* distinct deliveries */
	bool acked;
	bool failed;
	bool complete;
	bool measured; /* sent after the warm-up: its latency counts */
};

/* A message sent and not acknowledged yet, by cid % LG_CID_SLOTS. */
struct lg_slot {
	bool used;
	uint32_t g;
	uint64_t cid;
	int64_t due; /* next resend, ns */
	int64_t gap;
};

struct lg_stream {
	uint64_t key;
	uint64_t last_id;
};

struct lg_user {
	int fd;
	char name[LG_NAME_MAX];
	enum lg_ustate state;
	uint32_t room;
	int64_t sess_due, sess_gap;
	uint64_t next_cid, base_cid; /* base: the lowest unacknowledged */
	int unacked;
	int open; /* sent and not yet acknowledged and delivered */
	int64_t last_tx;
	bool kicked;
	uint32_t next_sseq;
	uint32_t *last_from; /* by sender: the last sseq delivered, or NULL */
	struct lg_slot slot[LG_CID_SLOTS];
	struct lg_stream stream[LG_STREAMS];
	int nstreams;
};

struct lg_err {
	char code[24];
	uint64_t n;
};

/* Everything, one file-static instance. */
static struct lg {
	/* options */
	enum lg_mode mode;
	struct sockaddr_in server, sink;
	int nusers, nsenders, room_size, window, body_size;
	double rate; /* 0: as fast as the window allows */
	double duration, drain, warmup;
	int64_t tick_us;
	char prefix[LG_PREFIX_MAX];
	bool verbose;
	bool ack_window; /* the window holds unacknowledged messages only */

	struct lg_user *u;
	struct lg_msg *msg;
	size_t nmsg, capmsg, ncomplete;
	uint32_t *kick;
	size_t nkick;
	int ep, tfd, sinkfd;
	enum lg_phase phase;
	bool drain_timeout; /* messages still open when the drain ended */
	size_t rr;	    /* round robin for paced sends */
	int setup_flight;   /* session requests in flight */
	int setup_next;	    /* the next user to start */
	int nlogout;	    /* logouts not answered yet */
	int nready;

	int64_t t_setup, t0, t_measure, t_stop, t_end, next_scan;

	/* counters */
	/* *_window: what happened between the warm-up and the stop */
	uint64_t sent, sent_window, acked, acked_window, failed;
	uint64_t delivered, delivered_window, dup_retx, dup_accept;
	uint64_t misrouted, over_delivered, foreign, resends, alives;
	uint64_t expired, behind_ticks, rx, tx, tx_err, decode_err;
	uint64_t session_err, retried, reordered;
	struct lg_err errs[16];
	size_t nerrs;
	struct hist lat, oklat;

	/* a batch of datagrams to one socket */
	struct mmsghdr out[LG_BATCH];
	struct iovec outiov[LG_BATCH];
	char outbuf[LG_BATCH][WIRE_MAX];
	int nout;
	int outfd;
} g;

static volatile sig_atomic_t stop_flag;

static void __attribute__((noreturn)) usage(int code)
{
	FILE *f = code == 0 ? stdout : stderr;

	fprintf(f,
	    "usage: loadgen --server ADDR:PORT [--mode direct|room|bcast|raw]\n"
	    "               [--users N] [--senders N] [--room-size N]\n"
	    "               [--rate N|max] [--duration S] [--warmup S]\n"
	    "               [--drain S] [--window N] [--body N] [--tick-us US]\n"
	    "               [--ack-window] [--sink ADDR:PORT] [--prefix NAME] [-v]\n"
	    "\n"
	    "  --server ADDR:PORT  the leader's data port (raw: the forwarder)\n"
	    "  --mode MODE         direct: user i to user i+1; room: rooms of\n"
	    "                      --room-size; bcast: `*` to every user online;\n"
	    "                      raw: datagrams through a forwarder to --sink\n"
	    "  --users N           simulated users, one socket each (default 100)\n"
	    "  --senders N         the first N users send; all receive (default all)\n"
	    "  --room-size N       members per room (default 10)\n"
	    "  --rate N|max        messages offered per second, or a closed loop\n"
	    "                      limited by --window (default max)\n"
	    "  --duration S        seconds of sending (default 5)\n"
	    "  --warmup S          first seconds not measured (default 0.2)\n"
	    "  --drain S           wait this long for the last deliveries (default 5)\n"
	    "  --window N          open messages per user: sent and not yet\n"
	    "                      acknowledged and delivered (default 8, max 15)\n"
	    "  --ack-window        count only messages not yet acknowledged, as\n"
	    "                      ringchat does: deliveries may queue up\n"
	    "  --body N            body bytes (default 32)\n"
	    "  --tick-us US        pacing period (default 200)\n"
	    "  --sink ADDR:PORT    raw mode: where the forwarder sends\n"
	    "  --prefix NAME       user names NAME0, NAME1, ... (default lgPID)\n"
	    "\n"
	    "Prints one JSON line of results; exits 1 when an acknowledged\n"
	    "message was not delivered exactly once to every recipient, when\n"
	    "one reached a recipient after a later one from the same sender,\n"
	    "or when a message was still unacknowledged at the end.\n");
	exit(code);
}

static void
die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void
die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "loadgen: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(2);
}

static void
on_signal(int sig)
{
	(void)sig;
	stop_flag = stop_flag + 1;
}

static int64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

/* ---- histogram -------------------------------------------------------- */

static void
hist_add(struct hist *h, int64_t ns)
{
	int64_t us = ns < 0 ? 0 : ns / 1000;
	size_t i;

	if (us < H_FINE)
		i = (size_t)us;
	else if ((us - H_FINE) / 1000 < H_COARSE)
		i = H_FINE + (size_t)((us - H_FINE) / 1000);
	else
		i = H_FINE + H_COARSE;
	h->b[i]++;
	h->n++;
	h->sum_us += (double)us;
	if (us > h->max_us)
		h->max_us = us;
}

/* The p-quantile in microseconds: the bucket's lower bound. */
static double
hist_pct(const struct hist *h, double p)
{
	uint64_t rank, seen = 0;
	size_t i;

	if (h->n == 0)
		return 0;
	rank = (uint64_t)(p * (double)h->n);
	if (rank >= h->n)
		rank = h->n - 1;
	for (i = 0; i <= H_FINE + H_COARSE; i++) {
		seen += h->b[i];
		if (seen > rank)
			return i < H_FINE
			    ? (double)i
			    : (double)(H_FINE + (i - H_FINE) * 1000);
	}
	return (double)h->max_us;
}

/* Counted in the rates: after the warm-up, before the stop. */
static bool
in_window(int64_t now)
{
	return g.phase == P_SEND && now >= g.t_measure;
}

/* ---- sending ---------------------------------------------------------- */

static void
flush_out(void)
{
	int done = 0;

	while (done < g.nout) {
		int n = sendmmsg(g.outfd, g.out + done,
		    (unsigned)(g.nout - done), MSG_DONTWAIT);

		if (n == -1) {
			if (errno == EINTR)
				continue;
			/* A full socket buffer or a refusal: UDP loses it. */
			g.tx_err += (uint64_t)(g.nout - done);
			break;
		}
		g.tx += (uint64_t)n;
		done += n;
	}
	g.nout = 0;
}

/* Encodes m into the batch for fd; flushes first when fd changes. */
static void
queue_msg(int fd, const struct wire_msg *m)
{
	size_t len;
	enum wire_err e;

	if (g.nout > 0 && (g.outfd != fd || g.nout == LG_BATCH))
		flush_out();
	e = wire_encode(m, g.outbuf[g.nout], WIRE_MAX, &len);
	if (e != WIRE_OK)
		die("encode %s: %s", wire_kind_name(m->kind), wire_strerror(e));
	g.outfd = fd;
	g.outiov[g.nout].iov_base = g.outbuf[g.nout];
	g.outiov[g.nout].iov_len = len;
	memset(&g.out[g.nout], 0, sizeof(g.out[g.nout]));
	g.out[g.nout].msg_hdr.msg_iov = &g.outiov[g.nout];
	g.out[g.nout].msg_hdr.msg_iovlen = 1;
	g.nout++;
}

static void
send_session(struct lg_user *u, enum wire_kind kind, int64_t now)
{
	struct wire_msg m;
	char room[LG_NAME_MAX];

	if (kind == WK_JOIN) {
		snprintf(room, sizeof(room), "#%sr%u", g.prefix, u->room);
		wire_init(&m, kind, room, "", u->name);
	} else {
		wire_init(&m, kind, "", "", u->name);
	}
	queue_msg(u->fd, &m);
	u->last_tx = now;
}

/* The request a session state waits on an answer to. */
static enum wire_kind
session_kind(enum lg_ustate st)
{
	switch (st) {
	case U_NEWU:
		return WK_NEWU;
	case U_LOGIN:
		return WK_LOGIN;
	case U_JOIN:
		return WK_JOIN;
	case U_LOGOUT:
		return WK_LOGOUT;
	case U_IDLE:
	case U_READY:
		break;
	}
	return WK_NONE;
}

static void
session_next(struct lg_user *u, enum lg_ustate st, int64_t now)
{
	u->state = st;
	u->sess_gap = 2 * LG_RETRY_MS * NS_PER_MS;
	u->sess_due = now + u->sess_gap;
	switch (st) {
	case U_NEWU:
		send_session(u, WK_NEWU, now);
		break;
	case U_LOGIN:
		send_session(u, WK_LOGIN, now);
		break;
	case U_JOIN:
		send_session(u, WK_JOIN, now);
		break;
	case U_READY:
		g.setup_flight--;
		g.nready++;
		break;
	case U_LOGOUT:
		send_session(u, WK_LOGOUT, now);
		g.nlogout++;
		break;
	case U_IDLE:
		break;
	}
}

static uint16_t
recipients(const struct lg_user *u)
{
	uint32_t first, last;

	switch (g.mode) {
	case M_DIRECT:
	case M_RAW:
		return 1;
	case M_ROOM:
		first = u->room * (uint32_t)g.room_size;
		last = first + (uint32_t)g.room_size;
		if (last > (uint32_t)g.nusers)
			last = (uint32_t)g.nusers;
		return (uint16_t)(last - first - 1);
	case M_BCAST:
		return (uint16_t)(g.nusers - 1);
	}
	return 0;
}

static uint32_t
msg_new(uint32_t sender, int64_t now)
{
	struct lg_msg *m;

	if (g.nmsg == g.capmsg) {
		size_t ncap = g.capmsg ? g.capmsg * 2 : 65536;
		struct lg_msg *nm = reallocarray(g.msg, ncap, sizeof(*nm));

		if (nm == NULL || ncap > UINT32_MAX)
			die("out of memory for %zu messages", ncap);
		g.msg = nm;
		g.capmsg = ncap;
	}
	m = &g.msg[g.nmsg];
	memset(m, 0, sizeof(*m));
	m->t_send = now;
	m->sender = sender;
	m->sseq = ++g.u[sender].next_sseq;
	m->expect = recipients(&g.u[sender]);
	m->measured = now >= g.t_measure;
	return (uint32_t)g.nmsg++;
}

static void
put_msg(struct lg_user *u, const struct lg_slot *s, int64_t now)
{
	char body[WIRE_MAX], to[LG_NAME_MAX];
	size_t idx = (size_t)(u - g.u), n;
	struct wire_msg m;
	uint64_t a;

	n = (size_t)snprintf(body, sizeof(body), "g%u ", s->g);
	if ((int)n < g.body_size) {
		memset(body + n, 'x', (size_t)g.body_size - n);
		n = (size_t)g.body_size;
	}
	body[n] = '\0';
	switch (g.mode) {
	case M_DIRECT:
		snprintf(to, sizeof(to), "%s",
		    g.u[(idx + 1) % (size_t)g.nusers].name);
		break;
	case M_ROOM:
		snprintf(to, sizeof(to), "#%sr%u", g.prefix, u->room);
		break;
	case M_BCAST:
		snprintf(to, sizeof(to), "*");
		break;
	case M_RAW:
		snprintf(to, sizeof(to), "sink");
		break;
	}
	wire_init(&m, WK_MSG, to, body, u->name);
	wire_add_u64(&m, "cid", s->cid);
	/* As ringchat: the previous open message must be accepted first. */
	for (a = s->cid; g.mode != M_RAW && a-- > u->base_cid;) {
		const struct lg_slot *p = &u->slot[a % LG_CID_SLOTS];

		if (p->used && p->cid == a) {
			wire_add_u64(&m, "after", a);
			break;
		}
	}
	queue_msg(u->fd, &m);
	u->last_tx = now;
}

/* A new message from u; false when its window is full. */
static bool
send_new(struct lg_user *u, int64_t now)
{
	struct lg_slot *s, raw;

	if (u->state != U_READY || u - g.u >= g.nsenders ||
	    (u->open >= g.window && !g.ack_window) ||
	    u->next_cid >= u->base_cid + (uint64_t)g.window)
		return false;
	if (g.mode == M_RAW) {
		/* Nothing answers: no slot, no resend. */
		s = &raw;
		memset(s, 0, sizeof(*s));
		s->cid = u->next_cid++;
		u->base_cid = u->next_cid;
	} else {
		s = &u->slot[u->next_cid % LG_CID_SLOTS];
		if (s->used)
			return false;
		s->used = true;
		s->cid = u->next_cid++;
		s->gap = LG_RETRY_MS * NS_PER_MS;
		s->due = now + s->gap;
		u->unacked++;
	}
	s->g = msg_new((uint32_t)(u - g.u), now);
	u->open++;
	g.sent++;
	if (in_window(now))
		g.sent_window++;
	put_msg(u, s, now);
	return true;
}

/* Closed loop: fill u's window. */
static void
top_up(struct lg_user *u, int64_t now)
{
	if (g.phase != P_SEND || g.rate > 0)
		return;
	while (send_new(u, now))
		;
}

static void
kick(struct lg_user *u)
{
	if (!u->kicked && g.rate <= 0) {
		u->kicked = true;
		g.kick[g.nkick++] = (uint32_t)(u - g.u);
	}
}

/* ---- receiving -------------------------------------------------------- */

static void
count_err(const char *code)
{
	size_t i;

	for (i = 0; i < g.nerrs; i++)
		if (strcmp(g.errs[i].code, code) == 0)
			break;
	if (i == g.nerrs) {
		if (g.nerrs == sizeof(g.errs) / sizeof(g.errs[0]))
			i = g.nerrs - 1; /* the last one collects the rest */
		else {
			char *p = g.errs[g.nerrs++].code;
			size_t k;

			/* Only [a-z0-9_]: it goes into JSON as it is. */
			for (k = 0;
			     code[k] != '\0' && k + 1 < sizeof(g.errs[0].code);
			     k++)
				p[k] = (code[k] >= 'a' && code[k] <= 'z') ||
					(code[k] >= '0' && code[k] <= '9')
				    ? code[k]
				    : '_';
			p[k] = '\0';
		}
	}
	g.errs[i].n++;
}

static void
msg_progress(struct lg_msg *m, int64_t now)
{
	(void)now;
	if (m->complete || !(m->acked || m->failed) ||
	    (m->acked && m->got < m->expect))
		return;
	m->complete = true;
	g.ncomplete++;
	g.u[m->sender].open--;
	kick(&g.u[m->sender]);
}

static void
release_slot(struct lg_user *u, struct lg_slot *s)
{
	s->used = false;
	u->unacked--;
	while (u->base_cid < u->next_cid &&
	    !u->slot[u->base_cid % LG_CID_SLOTS].used)
		u->base_cid++;
}

static void
on_msg_answer(struct lg_user *u, const struct wire_msg *m, bool ok,
    const char *code, int64_t now)
{
	uint64_t cid, id;
	struct lg_slot *s;
	struct lg_msg *r;

	if (wire_get_u64(m, "cid", &cid) == -1) {
		g.foreign++;
		return;
	}
	s = &u->slot[cid % LG_CID_SLOTS];
	if (!s->used || s->cid != cid)
		return; /* an answer to a resend already answered */
	r = &g.msg[s->g];
	if (!ok &&
	    (strcmp(code, "backlog") == 0 || strcmp(code, "busy") == 0 ||
		strcmp(code, "order") == 0)) {
		/* Nothing accepted: the same cid again shortly, as ringchat. */
		g.retried++;
		s->gap = LG_RETRY_MS * NS_PER_MS;
		s->due = now + s->gap;
		return;
	}
	release_slot(u, s);
	if (!ok) {
		count_err(code);
		r->failed = true;
		g.failed++;
		msg_progress(r, now);
		return;
	}
	if (wire_get_u64(m, "id", &id) == 0) {
		if (r->id == 0)
			r->id = id;
		else if (r->id != id)
			g.dup_accept++;
	}
	r->acked = true;
	g.acked++;
	if (in_window(now))
		g.acked_window++;
	if (r->measured)
		hist_add(&g.oklat, now - r->t_send);
	msg_progress(r, now);
}

static void
on_answer(struct lg_user *u, const struct wire_msg *m, int64_t now)
{
	const char *re = wire_get(m, "re"), *code = wire_get(m, "code");
	bool ok = m->kind == WK_OK;

	if (re == NULL) {
		g.foreign++;
		return;
	}
	if (!ok && code != NULL && strcmp(code, "not_leader") == 0)
		die("%s:%u is not the leader (re %s)",
		    inet_ntoa(g.server.sin_addr), ntohs(g.server.sin_port), re);
	if (strcmp(re, "msg") == 0) {
		on_msg_answer(u, m, ok, code != NULL ? code : "?", now);
	} else if (strcmp(re, "newu") == 0 && u->state == U_NEWU) {
		if (!ok) {
			g.session_err++;
			die("newu %s: %s", u->name, code != NULL ? code : "?");
		}
		session_next(u, U_LOGIN, now);
	} else if (strcmp(re, "login") == 0 && u->state == U_LOGIN) {
		if (!ok)
			session_next(u, U_NEWU, now);
		else
			session_next(
			    u, g.mode == M_ROOM ? U_JOIN : U_READY, now);
	} else if (strcmp(re, "join") == 0 && u->state == U_JOIN) {
		if (!ok)
			die("join %s: %s", u->name, code != NULL ? code : "?");
		session_next(u, U_READY, now);
	} else if (strcmp(re, "logout") == 0 && u->state == U_LOGOUT) {
		u->state = U_IDLE;
		g.nlogout--;
	} else if (strcmp(re, "alive") == 0 && !ok) {
		g.expired++;
	}
}

static uint64_t
stream_key(const struct wire_msg *m)
{
	const unsigned char *p = (const unsigned char *)m->to;
	uint64_t h = 1469598103934665603ULL;

	if (m->to[0] != '#' && m->to[0] != '*') {
		/* a direct message: the stream is the pair, keyed by sender */
		h ^= '@';
		h *= 1099511628211ULL;
		p = (const unsigned char *)m->from;
	}
	for (; *p != '\0'; p++) {
		h ^= *p;
		h *= 1099511628211ULL;
	}
	return h;
}

/* Was recipient ui meant to get message r? */
static bool
meant_for(uint32_t ui, const struct lg_msg *r)
{
	switch (g.mode) {
	case M_DIRECT:
		return ui == (r->sender + 1) % (uint32_t)g.nusers;
	case M_ROOM:
		return ui != r->sender && g.u[ui].room == g.u[r->sender].room;
	case M_BCAST:
		return ui != r->sender;
	case M_RAW:
		return true;
	}
	return false;
}

/* A body "gN ...": N, or -1 when it is not one of ours. */
static int64_t
body_index(const char *body)
{
	char *end;
	unsigned long long n;

	if (body[0] != 'g')
		return -1;
	errno = 0;
	n = strtoull(body + 1, &end, 10);
	if (errno != 0 || end == body + 1 || *end != ' ' || n >= g.nmsg)
		return -1;
	return (int64_t)n;
}

static void
count_delivery(uint32_t ui, struct lg_msg *r, uint64_t id, int64_t now)
{
	if (id != 0) {
		if (r->id == 0)
			r->id = id;
		else if (r->id != id) {
			g.dup_accept++; /* accepted twice: two ids */
			return;
		}
	}
	if (!meant_for(ui, r)) {
		g.misrouted++;
		return;
	}
	if (r->got == r->expect) {
		g.over_delivered++;
		return;
	}
	if (g.u[ui].last_from != NULL) {
		uint32_t *last = &g.u[ui].last_from[r->sender];

		if (r->sseq < *last)
			g.reordered++; /* after a later one from its sender */
		else
			*last = r->sseq;
	}
	r->got++;
	g.delivered++;
	if (in_window(now))
		g.delivered_window++;
	if (r->measured)
		hist_add(&g.lat, now - r->t_send);
	if (g.mode == M_RAW && !r->acked) {
		r->acked = true;
		g.acked++;
		if (in_window(now))
			g.acked_window++;
	}
	msg_progress(r, now);
}

static void
on_delivery(struct lg_user *u, const struct wire_msg *m, int64_t now)
{
	uint64_t id, key = stream_key(m);
	struct lg_stream *st = NULL;
	struct wire_msg a;
	int64_t gi;
	int i;

	if (wire_get_u64(m, "id", &id) == -1) {
		g.foreign++;
		return;
	}
	/* Acknowledge every copy, as the client does: the ack may be lost. */
	wire_init(&a, WK_ACK, "", "", u->name);
	wire_add_u64(&a, "id", id);
	queue_msg(u->fd, &a);
	u->last_tx = now;
	for (i = 0; i < u->nstreams; i++)
		if (u->stream[i].key == key)
			st = &u->stream[i];
	if (st == NULL) {
		if (u->nstreams == LG_STREAMS) {
			g.foreign++;
			return;
		}
		st = &u->stream[u->nstreams++];
		st->key = key;
		st->last_id = 0;
	}
	if (id <= st->last_id) {
		g.dup_retx++;
		return;
	}
	st->last_id = id;
	if ((gi = body_index(m->body)) == -1) {
		g.foreign++;
		return;
	}
	count_delivery((uint32_t)(u - g.u), &g.msg[gi], id, now);
}

static void
on_datagram(struct lg_user *u, const char *buf, size_t len, int64_t now)
{
	struct wire_msg m;

	g.rx++;
	if (wire_decode(&m, buf, len) != WIRE_OK) {
		g.decode_err++;
		return;
	}
	switch (m.kind) {
	case WK_MSG:
		on_delivery(u, &m, now);
		break;
	case WK_OK:
	case WK_ERR:
		on_answer(u, &m, now);
		break;
	default:
		g.foreign++;
		break;
	}
}

static char rxbuf[LG_BATCH][WIRE_MAX + 1];
static struct mmsghdr rxmsg[LG_BATCH];
static struct iovec rxiov[LG_BATCH];

static void
rx_prepare(void)
{
	int i;

	for (i = 0; i < LG_BATCH; i++) {
		rxiov[i].iov_base = rxbuf[i];
		rxiov[i].iov_len = WIRE_MAX;
		memset(&rxmsg[i], 0, sizeof(rxmsg[i]));
		rxmsg[i].msg_hdr.msg_iov = &rxiov[i];
		rxmsg[i].msg_hdr.msg_iovlen = 1;
	}
}

/* Reads one batch; the count, 0 when nothing was waiting. */
static int
rx_batch(int fd)
{
	int n, i;

	for (i = 0; i < LG_BATCH; i++)
		rxmsg[i].msg_hdr.msg_flags = 0;
	n = recvmmsg(fd, rxmsg, LG_BATCH, MSG_DONTWAIT, NULL);
	return n < 0 ? 0 : n;
}

static void
drain_user(struct lg_user *u)
{
	int64_t now;
	int n, i;

	do {
		n = rx_batch(u->fd);
		now = now_ns();
		for (i = 0; i < n; i++) {
			if (rxmsg[i].msg_hdr.msg_flags & MSG_TRUNC) {
				g.decode_err++;
				continue;
			}
			on_datagram(u, rxbuf[i], rxmsg[i].msg_len, now);
		}
	} while (n == LG_BATCH);
	top_up(u, now);
	flush_out();
}

static void
drain_sink(void)
{
	struct wire_msg m;
	int64_t now, gi;
	int n, i;

	do {
		n = rx_batch(g.sinkfd);
		now = now_ns();
		for (i = 0; i < n; i++) {
			g.rx++;
			if (wire_decode(&m, rxbuf[i], rxmsg[i].msg_len) !=
				WIRE_OK ||
			    m.kind != WK_MSG ||
			    (gi = body_index(m.body)) == -1) {
				g.foreign++;
				continue;
			}
			count_delivery(0, &g.msg[gi], 0, now);
		}
	} while (n == LG_BATCH);
}

/* ---- time ------------------------------------------------------------- */

static void
scan(int64_t now)
{
	int i, k;

	for (i = 0; i < g.nusers; i++) {
		struct lg_user *u = &g.u[i];

		if (u->state != U_READY && u->state != U_IDLE &&
		    now >= u->sess_due) {
			u->sess_gap *= 2;
			if (u->sess_gap > LG_RETRY_MAX * NS_PER_MS)
				u->sess_gap = LG_RETRY_MAX * NS_PER_MS;
			u->sess_due = now + u->sess_gap;
			send_session(u, session_kind(u->state), now);
			g.resends++;
		}
		for (k = 0; u->unacked > 0 && k < LG_CID_SLOTS; k++) {
			struct lg_slot *s = &u->slot[k];

			if (!s->used || now < s->due)
				continue;
			s->gap *= 2;
			if (s->gap > LG_RETRY_MAX * NS_PER_MS)
				s->gap = LG_RETRY_MAX * NS_PER_MS;
			s->due = now + s->gap;
			put_msg(u, s, now);
			g.resends++;
		}
		if (u->state == U_READY && g.mode != M_RAW &&
		    now - u->last_tx >= LG_ALIVE_MS * NS_PER_MS) {
			struct wire_msg m;

			wire_init(&m, WK_ALIVE, "", "", u->name);
			queue_msg(u->fd, &m);
			u->last_tx = now;
			g.alives++;
		}
		flush_out();
	}
}

/* Paced: the messages due since t0 at the offered rate. */
static void
paced_sends(int64_t now)
{
	double want = g.rate * (double)(now - g.t0) / (double)NS_PER_S;
	uint64_t due = want > (double)g.sent ? (uint64_t)want - g.sent : 0;
	uint64_t cap = due / (uint64_t)g.nsenders + 1;
	size_t tried;

	for (tried = 0; due > 0 && tried < (size_t)g.nsenders; tried++) {
		struct lg_user *u = &g.u[g.rr];
		uint64_t k = 0;

		g.rr = (g.rr + 1) % (size_t)g.nsenders;
		while (k < cap && due > 0 && send_new(u, now)) {
			k++;
			due--;
		}
		flush_out();
	}
	if (due > 0)
		g.behind_ticks++;
}

static void
on_tick(int64_t now)
{
	uint64_t expirations;
	int i;

	if (read(g.tfd, &expirations, sizeof(expirations)) == -1 &&
	    errno != EAGAIN)
		die("timerfd: %s", strerror(errno));
	switch (g.phase) {
	case P_SETUP:
		while (
		    g.setup_next < g.nusers && g.setup_flight < LG_SETUP_MAX) {
			g.setup_flight++;
			session_next(&g.u[g.setup_next++], U_NEWU, now);
			flush_out();
		}
		if (g.nready == g.nusers) {
			g.phase = P_SEND;
			g.t0 = now;
			g.t_measure = now + (int64_t)(g.warmup * NS_PER_S);
			g.t_stop = now + (int64_t)(g.duration * NS_PER_S);
			if (g.verbose)
				fprintf(stderr,
				    "loadgen: %d users ready in %.2f s\n",
				    g.nusers,
				    (double)(now - g.t_setup) / NS_PER_S);
			for (i = 0; i < g.nusers; i++) {
				g.u[i].kicked = false;
				kick(&g.u[i]);
			}
		} else if (now - g.t_setup > LG_SETUP_S * NS_PER_S) {
			die("only %d of %d users logged in after %d s",
			    g.nready, g.nusers, LG_SETUP_S);
		}
		break;
	case P_SEND:
		if (now >= g.t_stop || stop_flag) {
			g.phase = P_DRAIN;
			g.t_stop = now;
			break;
		}
		if (g.rate > 0)
			paced_sends(now);
		break;
	case P_DRAIN:
		if (now - g.t_stop >= (int64_t)(g.drain * NS_PER_S) ||
		    stop_flag > 1 || g.ncomplete == g.nmsg) {
			g.drain_timeout = g.ncomplete != g.nmsg;
			g.phase = P_LOGOUT;
			g.t_end = now;
			/* As a client quits: no stale sessions for the next
			 * run. */
			for (i = 0; i < g.nusers && g.mode != M_RAW; i++) {
				if (g.u[i].state == U_READY) {
					session_next(&g.u[i], U_LOGOUT, now);
					flush_out();
				}
			}
		}
		break;
	case P_LOGOUT:
		if (g.nlogout == 0 || stop_flag > 1 ||
		    now - g.t_end >= LG_LOGOUT_S * NS_PER_S)
			g.phase = P_DONE;
		break;
	case P_DONE:
		break;
	}
	if (now >= g.next_scan) {
		scan(now);
		g.next_scan = now + LG_SCAN_MS * NS_PER_MS;
	}
}

/* ---- set-up ----------------------------------------------------------- */

static int
udp_socket(int i, int rcvbuf)
{
	struct in_addr lo;
	int fd;

	/* 127.0.0.1, .2, ...: ephemeral ports run out before users do. */
	lo.s_addr = htonl(INADDR_LOOPBACK + (uint32_t)(i / LG_USERS_PER_ADDR));
	if ((fd = net_udp_socket(lo, 0, false, false)) == -1)
		die("socket: %s", strerror(errno));
	if (setsockopt(
		fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf)) == -1)
		(void)setsockopt(
		    fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	return fd;
}

static void
epoll_add(int fd, uint32_t data)
{
	struct epoll_event ev;

	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLIN;
	ev.data.u32 = data;
	if (epoll_ctl(g.ep, EPOLL_CTL_ADD, fd, &ev) == -1)
		die("epoll_ctl: %s", strerror(errno));
}

static void
setup(void)
{
	struct itimerspec its;
	struct rlimit rl;
	int i;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
	if ((g.u = calloc((size_t)g.nusers, sizeof(*g.u))) == NULL ||
	    (g.kick = calloc((size_t)g.nusers, sizeof(*g.kick))) == NULL)
		die("out of memory");
	if ((g.ep = epoll_create1(EPOLL_CLOEXEC)) == -1)
		die("epoll_create1: %s", strerror(errno));
	/* The sink first: the users' ephemeral ports must not take it. */
	g.sinkfd = -1;
	if (g.mode == M_RAW) {
		struct in_addr a = g.sink.sin_addr;

		g.nready = g.setup_next = g.nusers; /* no sessions */
		if ((g.sinkfd = net_udp_socket(
			 a, ntohs(g.sink.sin_port), false, false)) == -1)
			die("sink %s:%u: %s", inet_ntoa(a),
			    ntohs(g.sink.sin_port), strerror(errno));
		i = LG_SINK_RCVBUF;
		if (setsockopt(g.sinkfd, SOL_SOCKET, SO_RCVBUFFORCE, &i,
			sizeof(i)) == -1)
			(void)setsockopt(
			    g.sinkfd, SOL_SOCKET, SO_RCVBUF, &i, sizeof(i));
		epoll_add(g.sinkfd, (uint32_t)g.nusers);
	}
	for (i = 0; i < g.nusers; i++) {
		struct lg_user *u = &g.u[i];

		u->fd = udp_socket(i, LG_RCVBUF);
		if (connect(u->fd, (struct sockaddr *)&g.server,
			sizeof(g.server)) == -1)
			die("connect: %s", strerror(errno));
		snprintf(u->name, sizeof(u->name), "%s%d", g.prefix, i);
		u->room = (uint32_t)(i / g.room_size);
		u->next_cid = u->base_cid = 1;
		u->state = g.mode == M_RAW ? U_READY : U_IDLE;
		/* Per-sender order is checked while it costs little memory. */
		if (g.nusers <= LG_ORDER_USERS_MAX && g.mode != M_RAW &&
		    (u->last_from = calloc(
			 (size_t)g.nusers, sizeof(*u->last_from))) == NULL)
			die("out of memory");
		epoll_add(u->fd, (uint32_t)i);
	}
	if ((g.tfd = timerfd_create(
		 CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)) == -1)
		die("timerfd_create: %s", strerror(errno));
	memset(&its, 0, sizeof(its));
	its.it_interval.tv_nsec = (long)(g.tick_us * 1000);
	its.it_value = its.it_interval;
	if (timerfd_settime(g.tfd, 0, &its, NULL) == -1)
		die("timerfd_settime: %s", strerror(errno));
	epoll_add(g.tfd, UINT32_MAX);
	rx_prepare();
}

static void
run(void)
{
	struct epoll_event evs[256];
	int n, i;

	g.t_setup = now_ns();
	g.next_scan = g.t_setup;
	while (g.phase != P_DONE) {
		n = epoll_wait(g.ep, evs, 256, 100);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			die("epoll_wait: %s", strerror(errno));
		}
		for (i = 0; i < n; i++) {
			uint32_t d = evs[i].data.u32;

			if (d == UINT32_MAX)
				on_tick(now_ns());
			else if (d == (uint32_t)g.nusers)
				drain_sink();
			else
				drain_user(&g.u[d]);
		}
		/* Closed loop: senders whose messages completed elsewhere. */
		for (i = 0; i < (int)g.nkick; i++) {
			struct lg_user *u = &g.u[g.kick[i]];

			u->kicked = false;
			top_up(u, now_ns());
			flush_out();
		}
		g.nkick = 0;
	}
}

/* ---- results ---------------------------------------------------------- */

static const char *
mode_name(enum lg_mode m)
{
	static const char *names[] = {"direct", "room", "bcast", "raw"};

	return names[m];
}

static void
print_hist(const char *name, const struct hist *h)
{
	printf("\"%s\":{\"n\":%" PRIu64 ",\"mean\":%.1f,\"p50\":%.0f,"
	       "\"p90\":%.0f,\"p99\":%.0f,\"p999\":%.0f,\"max\":%" PRId64 "}",
	    name, h->n, h->n ? h->sum_us / (double)h->n : 0.0,
	    hist_pct(h, 0.50), hist_pct(h, 0.90), hist_pct(h, 0.99),
	    hist_pct(h, 0.999), h->max_us);
}

static int
report(void)
{
	double window = (double)(g.t_stop - g.t_measure) / NS_PER_S;
	uint64_t lost = 0, lost_msgs = 0, unacked = 0, expected = 0;
	struct rusage ru;
	double cpu = 0;
	size_t i;
	bool zero_loss;

	for (i = 0; i < g.nmsg; i++) {
		const struct lg_msg *m = &g.msg[i];

		if (!m->acked) {
			if (!m->failed)
				unacked++;
			continue;
		}
		expected += m->expect;
		if (m->got < m->expect) {
			lost += (uint64_t)(m->expect - m->got);
			lost_msgs++;
		}
	}
	if (getrusage(RUSAGE_SELF, &ru) == 0)
		cpu = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
		    (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
	zero_loss = lost == 0 && g.dup_accept == 0 && g.misrouted == 0 &&
	    g.over_delivered == 0;
	if (window <= 0)
		window = 1e-9;
	printf("{\"mode\":\"%s\",\"users\":%d,\"senders\":%d,"
	       "\"room_size\":%d,\"window\":%d,\"body\":%d,",
	    mode_name(g.mode), g.nusers, g.nsenders,
	    g.mode == M_ROOM ? g.room_size : 0, g.window, g.body_size);
	if (g.rate > 0)
		printf("\"rate\":%.0f,", g.rate);
	else
		printf("\"rate\":\"max\",");
	printf("\"duration_s\":%.3f,\"measured_s\":%.3f,"
	       "\"sent\":%zu,\"acked\":%" PRIu64 ",\"failed\":%" PRIu64
	       ",\"unacked\":%" PRIu64 ",\"expected\":%" PRIu64
	       ",\"delivered\":%" PRIu64 ",\"lost\":%" PRIu64
	       ",\"lost_msgs\":%" PRIu64 ",\"dup_accept\":%" PRIu64
	       ",\"misrouted\":%" PRIu64 ",\"over_delivered\":%" PRIu64
	       ",\"dup_retx\":%" PRIu64 ",\"resends\":%" PRIu64
	       ",\"alives\":%" PRIu64 ",\"expired\":%" PRIu64
	       ",\"foreign\":%" PRIu64 ",\"decode_err\":%" PRIu64
	       ",\"tx\":%" PRIu64 ",\"tx_err\":%" PRIu64 ",\"rx\":%" PRIu64
	       ",\"behind_ticks\":%" PRIu64 ",\"retried\":%" PRIu64
	       ",\"reordered\":%" PRIu64 ",\"order_checked\":%s,",
	    (double)(g.t_stop - g.t0) / NS_PER_S, window, g.nmsg, g.acked,
	    g.failed, unacked, expected, g.delivered, lost, lost_msgs,
	    g.dup_accept, g.misrouted, g.over_delivered, g.dup_retx, g.resends,
	    g.alives, g.expired, g.foreign, g.decode_err, g.tx, g.tx_err, g.rx,
	    g.behind_ticks, g.retried, g.reordered,
	    g.u[0].last_from != NULL ? "true" : "false");
	printf("\"errors\":{");
	for (i = 0; i < g.nerrs; i++)
		printf("%s\"%s\":%" PRIu64, i ? "," : "", g.errs[i].code,
		    g.errs[i].n);
	printf("},\"offered_per_s\":%.1f,\"msg_per_s\":%.1f,"
	       "\"deliveries_per_s\":%.1f,",
	    (double)g.sent_window / window, (double)g.acked_window / window,
	    (double)g.delivered_window / window);
	print_hist("latency_us", &g.lat);
	printf(",");
	print_hist("ok_latency_us", &g.oklat);
	printf(",\"drain_s\":%.3f,\"drain_timeout\":%s,\"cpu_s\":%.3f,"
	       "\"zero_loss\":%s}\n",
	    (double)(g.t_end - g.t_stop) / NS_PER_S,
	    g.drain_timeout ? "true" : "false", cpu,
	    zero_loss ? "true" : "false");
	fflush(stdout);
	return zero_loss && unacked == 0 && g.reordered == 0 ? 0 : 1;
}

/* ---- options ---------------------------------------------------------- */

static double
num(const char *opt, const char *s, double lo, double hi)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
		die("%s %s: expected a number from %g to %g", opt, s, lo, hi);
	return v;
}

static void
hostport(const char *opt, const char *s, struct sockaddr_in *sin)
{
	char ip[INET_ADDRSTRLEN];
	uint16_t port;

	if (net_parse_hostport(s, ip, sizeof(ip), &port) == -1 ||
	    net_sockaddr(sin, ip, port) == -1)
		die("%s %s: expected ADDR:PORT", opt, s);
	/* Benchmarks stay on this host. */
	if ((ntohl(sin->sin_addr.s_addr) >> 24) != 127)
		die("%s %s: only 127.0.0.0/8 addresses", opt, s);
}

int
main(int argc, char *argv[])
{
	static const struct option opts[] = {{"server", 1, NULL, 's'},
	    {"mode", 1, NULL, 'm'}, {"users", 1, NULL, 'u'},
	    {"senders", 1, NULL, 'S'}, {"room-size", 1, NULL, 'R'},
	    {"rate", 1, NULL, 'r'}, {"duration", 1, NULL, 'd'},
	    {"warmup", 1, NULL, 'w'}, {"drain", 1, NULL, 'D'},
	    {"window", 1, NULL, 'W'}, {"body", 1, NULL, 'b'},
	    {"tick-us", 1, NULL, 't'}, {"sink", 1, NULL, 'k'},
	    {"prefix", 1, NULL, 'p'}, {"ack-window", 0, NULL, 'a'},
	    {"verbose", 0, NULL, 'v'}, {"help", 0, NULL, 'h'},
	    {NULL, 0, NULL, 0}};
	struct sigaction sa;
	bool have_server = false, have_sink = false;
	int ch;

	g.mode = M_DIRECT;
	g.nusers = 100;
	g.room_size = 10;
	g.window = 8;
	g.body_size = 32;
	g.duration = 5;
	g.warmup = 0.2;
	g.drain = 5;
	g.tick_us = 200;
	snprintf(g.prefix, sizeof(g.prefix), "lg%ld", (long)getpid());
	while ((ch = getopt_long(argc, argv, "vh", opts, NULL)) != -1) {
		switch (ch) {
		case 's':
			hostport("--server", optarg, &g.server);
			have_server = true;
			break;
		case 'm':
			if (strcmp(optarg, "direct") == 0)
				g.mode = M_DIRECT;
			else if (strcmp(optarg, "room") == 0)
				g.mode = M_ROOM;
			else if (strcmp(optarg, "bcast") == 0)
				g.mode = M_BCAST;
			else if (strcmp(optarg, "raw") == 0)
				g.mode = M_RAW;
			else
				usage(2);
			break;
		case 'u':
			g.nusers = (int)num("--users", optarg, 2, 60000);
			break;
		case 'S':
			g.nsenders = (int)num("--senders", optarg, 1, 60000);
			break;
		case 'R':
			g.room_size = (int)num("--room-size", optarg, 2, 60000);
			break;
		case 'r':
			g.rate = strcmp(optarg, "max") == 0
			    ? 0
			    : num("--rate", optarg, 1, 1e8);
			break;
		case 'd':
			g.duration = num("--duration", optarg, 0.01, 86400);
			break;
		case 'w':
			g.warmup = num("--warmup", optarg, 0, 86400);
			break;
		case 'D':
			g.drain = num("--drain", optarg, 0, 3600);
			break;
		case 'W':
			g.window =
			    (int)num("--window", optarg, 1, LG_WINDOW_MAX);
			break;
		case 'b':
			g.body_size = (int)num("--body", optarg, 1, 900);
			break;
		case 't':
			g.tick_us =
			    (int64_t)num("--tick-us", optarg, 10, 999999);
			break;
		case 'k':
			hostport("--sink", optarg, &g.sink);
			have_sink = true;
			break;
		case 'p':
			if (strlen(optarg) < 1 ||
			    strlen(optarg) >= LG_PREFIX_MAX)
				die("--prefix: 1 to %d bytes",
				    LG_PREFIX_MAX - 1);
			snprintf(g.prefix, sizeof(g.prefix), "%s", optarg);
			break;
		case 'a':
			g.ack_window = true;
			break;
		case 'v':
			g.verbose = true;
			break;
		case 'h':
			usage(0);
		default:
			usage(2);
		}
	}
	if (optind != argc || !have_server || (g.mode == M_RAW && !have_sink))
		usage(2);
	if (g.warmup >= g.duration)
		g.warmup = 0;
	if (g.nsenders == 0 || g.nsenders > g.nusers)
		g.nsenders = g.nusers;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	setup();
	run();
	return report();
}
