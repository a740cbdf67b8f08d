/* sim_election: the election and failure detector under faults, simulated. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "election.h"
#include "heartbeat.h"
#include "ring.h"
#include "uuid.h"

/*
 * Every seed is one world: N servers, each with its own ring, election
 * and heartbeat state, exchanging simulated datagrams over a network
 * with loss, duplication and delay (hence reordering), on a virtual
 * clock in milliseconds.  Servers crash and restart (keeping UUID and
 * epoch), leaders hand over and quit, and the network splits and heals.
 * Then the faults stop and the cluster must settle.  Three more worlds
 * per seed run with no fault at all, to count messages.  All randomness
 * comes from PRNGs seeded by the seed (one per world), so `--seed S`
 * replays a seed exactly, verbosely.
 *
 * What is checked, and why it is stated so, is in check_instant(),
 * note_win(), srv_sync(), check_settled() and run_nofault();
 * docs/ELECTION.md explains it too.
 */

#define SIM_MAXN 9
#define SIM_MINN 2

#define T_FAULTS_MIN 6000 /* length of the fault phase */
#define T_FAULTS_MAX 15000
#define T_SETTLE     10000   /* liveness bound after the last fault */
#define T_STABLE     3000    /* and nothing may change for this long */
#define T_QUIT_MAX   1500    /* a quitting leader leaves by then */
#define T_NOFAULT    4000    /* length of a no-fault scenario */
#define EVENTS_MAX   4000000 /* a world that runs longer is stuck */

/*
 * Timings.  Each seed draws one profile: the daemon's defaults (see
 * server.c) on a LAN, or everything five times slower with delays up to
 * 30 ms.  In both, a round trip fits in one retry period.
 */
struct profile {
	const char *name;
	struct election_cfg el;
	struct hb_cfg hb;
	int64_t discovery_ms; /* a STARTING server waits this for a leader */
	int64_t delay_max;    /* worst one-way delay */
};

static const struct profile profiles[] = {
    {
	.name = "daemon",
	.el = {.retry_ms = 15, .retries = 3, .timeout_ms = 1000},
	.hb = {.interval_ms = 20,
	    .misses = 3,
	    .probe_window_ms = 30,
	    .probe_tries = 3,
	    .dead_retry_ms = 1000},
	.discovery_ms = 600,
	.delay_max = 6,
    },
    {
	.name = "slow",
	.el = {.retry_ms = 80, .retries = 3, .timeout_ms = 3000},
	.hb = {.interval_ms = 100,
	    .misses = 3,
	    .probe_window_ms = 200,
	    .probe_tries = 2,
	    .dead_retry_ms = 500},
	.discovery_ms = 1500,
	.delay_max = 30,
    },
};

struct rng {
	uint64_t s;
};

enum mkind {
	MK_VOTING,
	MK_LEADER,
	MK_ACK,
	MK_BEAT,
	MK_BEATACK,
	MK_PROBE,    /* to the leader, for `origin` */
	MK_PROBEREQ, /* to a relay: probe the leader `who` for me */
	MK_PROBEACK  /* from the leader, via the relay when origin differs */
};

static const char *const mkind_name[] = {"voting", "leader", "ack", "beat",
    "beatack", "probe", "probereq", "probeack"};

struct msg {
	int64_t at;
	uint64_t seq;
	enum mkind kind;
	int from, to, origin;
	uint64_t epoch;
	uint64_t hop;	 /* election hop, or probe id */
	struct uuid who; /* candidate or leader */
	bool has;	 /* beatack, probeack: the sender knows a leader */
	bool leading;	 /* probeack: the sender is that leader */
};

struct server {
	int idx;
	bool up;
	struct uuid id;
	struct ring ring;
	struct election el;
	struct hb_follower hf;
	struct hb_leader hl;
	struct hb_revive hv; /* probing the members believed dead */
	uint64_t disk_epoch; /* what the daemon would have persisted */
	int64_t up_since;
	bool watching;
	uint64_t watch_epoch;
	struct uuid watch_leader;
	bool quitting;
	int64_t quit_at;
	int64_t restart_at; /* down: a quick bounce brings it back then */
	bool touched;	    /* next_at must be recomputed */
	int64_t next_at;    /* srv_next(), cached */
	/* what the checks saw last, this incarnation */
	uint64_t seen_epoch;
	bool seen_has;
	struct uuid seen_leader;
	enum election_role seen_role;
	/* this incarnation in epoch track_epoch: what justifies a win */
	uint64_t track_epoch;
	bool stood;	     /* sent its own UUID as candidate */
	struct uuid max_fwd; /* largest candidate it forwarded */
};

/* Ground truth about one epoch, kept by the simulator only. */
struct erec {
	bool used;
	int64_t t_first; /* first server to enter the epoch */
	bool won;
	uint32_t alive_and; /* members every voting sender believed alive */
	/* servers up at the time that a hop carrying candidate k skipped */
	uint32_t skipped[SIM_MAXN];
	bool dual; /* two leaders of this epoch coexisted */
};

struct win {
	uint64_t epoch;
	struct uuid who;
};

struct world {
	uint64_t seed;
	const struct profile *p;
	struct rng rng;
	int verbose;
	int n;
	struct server s[SIM_MAXN];
	int order[SIM_MAXN]; /* server indexes by ascending UUID */
	int rank[SIM_MAXN];
	int64_t now;
	uint64_t events;
	/* network */
	struct msg *q;
	size_t nq, capq;
	uint64_t mseq;
	bool lossy;
	double drop, dup;
	int64_t dmax;
	bool split;
	int group[SIM_MAXN];
	/* faults */
	bool chaos; /* crash-heavy: short gaps, aimed at elections */
	int64_t t_next_fault, t_end_faults, fault_gap_max;
	/* ground truth */
	struct erec *ep;
	size_t nep;
	struct win *wins;
	size_t nwins, capwins;
	uint64_t starts;
	int64_t t_last_change;
	/* outcome */
	bool failed;
	char why[512];
};

struct totals {
	uint64_t seeds, passed, failed, elections;
	uint64_t dual_epochs, highest_checked, highest_skipped;
	uint64_t crashes, partitions, quits, suspicions, refuted, dups;
	uint64_t msgs, dropped;
	int64_t worst_settle;
};

static struct totals tot;

/* splitmix64: small, fast and good enough for a simulator. */
static uint64_t
rng_next(struct rng *r)
{
	uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static int64_t
rng_range(struct rng *r, int64_t lo, int64_t hi)
{
	if (hi < lo) {
		fprintf(stderr,
		    "sim_election: rng_range(%" PRId64 ", %" PRId64 ")\n", lo,
		    hi);
		abort();
	}
	return lo + (int64_t)(rng_next(r) % (uint64_t)(hi - lo + 1));
}

static bool
rng_chance(struct rng *r, double p)
{
	return (double)(rng_next(r) >> 11) * 0x1.0p-53 < p;
}

static void
fail(struct world *, const char *, ...) __attribute__((format(printf, 2, 3)));
static void trace(struct world *, int, const char *, ...)
    __attribute__((format(printf, 3, 4)));

static void
fail(struct world *w, const char *fmt, ...)
{
	va_list ap;

	if (w->failed)
		return;
	w->failed = true;
	va_start(ap, fmt);
	vsnprintf(w->why, sizeof(w->why), fmt, ap);
	va_end(ap);
}

static void
trace(struct world *w, int level, const char *fmt, ...)
{
	va_list ap;

	if (w->verbose < level)
		return;
	printf("%8" PRId64 " ", w->now);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
}

/* A short name for logs: index and the first UUID byte. */
static const char *
sname(const struct world *w, int i, char buf[16])
{
	snprintf(buf, 16, "s%d/%02x", i, w->s[i].id.b[0]);
	return buf;
}

static int
idx_of(const struct world *w, const struct uuid *u)
{
	int i;

	for (i = 0; i < w->n; i++)
		if (uuid_cmp(&w->s[i].id, u) == 0)
			return i;
	return -1;
}

static struct erec *
erec_get(struct world *w, uint64_t epoch)
{
	struct erec *p;
	size_t n;

	if (epoch >= 1u << 20) {
		fail(w, "epoch %" PRIu64 " ran away", epoch);
		return NULL;
	}
	if (epoch >= w->nep) {
		n = epoch + 64;
		if ((p = reallocarray(w->ep, n, sizeof(*p))) == NULL) {
			perror("reallocarray");
			exit(2);
		}
		memset(p + w->nep, 0, (n - w->nep) * sizeof(*p));
		w->ep = p;
		w->nep = n;
	}
	p = &w->ep[epoch];
	if (!p->used) {
		p->used = true;
		p->t_first = w->now;
		p->alive_and = UINT32_MAX;
	}
	return p;
}

/* Members a server's ring holds alive, as a bit set of indexes. */
static uint32_t
live_mask(const struct world *w, const struct server *sv)
{
	uint32_t mask = 0;
	size_t i;
	int k;

	for (i = 0; i < sv->ring.n; i++)
		if (sv->ring.m[i].alive &&
		    (k = idx_of(w, &sv->ring.m[i].uuid)) >= 0)
			mask |= 1u << k;
	return mask;
}

/* The servers up now strictly between a and b going up the ring. */
static uint32_t
skipped_up(const struct world *w, int a, int b)
{
	uint32_t mask = 0;
	int k;

	for (k = (w->rank[a] + 1) % w->n; w->order[k] != b;
	     k = (k + 1) % w->n) {
		if (w->order[k] == a)
			break; /* b == -1: the whole ring */
		if (w->s[w->order[k]].up)
			mask |= 1u << w->order[k];
	}
	return mask;
}

/* The message queue: a binary heap ordered by (at, seq). */
static bool
msg_before(const struct msg *a, const struct msg *b)
{
	return a->at < b->at || (a->at == b->at && a->seq < b->seq);
}

static void
q_push(struct world *w, const struct msg *m)
{
	struct msg *p, t;
	size_t i;

	if (w->nq == w->capq) {
		w->capq = w->capq ? 2 * w->capq : 256;
		if ((p = reallocarray(w->q, w->capq, sizeof(*p))) == NULL) {
			perror("reallocarray");
			exit(2);
		}
		w->q = p;
	}
	i = w->nq++;
	w->q[i] = *m;
	while (i > 0 && msg_before(&w->q[i], &w->q[(i - 1) / 2])) {
		t = w->q[i];
		w->q[i] = w->q[(i - 1) / 2];
		w->q[(i - 1) / 2] = t;
		i = (i - 1) / 2;
	}
}

static void
q_pop(struct world *w, struct msg *out)
{
	struct msg t;
	size_t i = 0, l, m;

	*out = w->q[0];
	w->q[0] = w->q[--w->nq];
	for (;;) {
		l = 2 * i + 1;
		m = i;
		if (l < w->nq && msg_before(&w->q[l], &w->q[m]))
			m = l;
		if (l + 1 < w->nq && msg_before(&w->q[l + 1], &w->q[m]))
			m = l + 1;
		if (m == i)
			break;
		t = w->q[i];
		w->q[i] = w->q[m];
		w->q[m] = t;
		i = m;
	}
}

static void
net_send(struct world *w, const struct msg *tmpl)
{
	struct msg m = *tmpl;
	char a[16], b[16];

	tot.msgs++;
	if (m.to < 0 || m.to >= w->n || m.to == m.from) {
		fail(w, "%s sent a %s to a bad destination",
		    sname(w, m.from, a), mkind_name[m.kind]);
		return;
	}
	trace(w, 2, "send %s %s -> %s e=%" PRIu64 " hop=%" PRIu64,
	    mkind_name[m.kind], sname(w, m.from, a), sname(w, m.to, b), m.epoch,
	    m.hop);
	if (w->lossy && rng_chance(&w->rng, w->drop)) {
		tot.dropped++;
		return;
	}
	m.at = w->now + rng_range(&w->rng, 0, w->dmax);
	m.seq = w->mseq++;
	q_push(w, &m);
	if (rng_chance(&w->rng, w->dup)) {
		m.at = w->now + rng_range(&w->rng, 0, w->dmax);
		m.seq = w->mseq++;
		q_push(w, &m);
	}
}

static void
send_simple(struct world *w, enum mkind kind, int from, int to, uint64_t epoch,
    const struct uuid *who, uint64_t hop)
{
	struct msg m;

	memset(&m, 0, sizeof(m));
	m.kind = kind;
	m.from = from;
	m.to = to;
	m.origin = from;
	m.epoch = epoch;
	m.hop = hop;
	if (who != NULL)
		m.who = *who;
	net_send(w, &m);
}

/* Forgets what justified a win when the server moves to another epoch. */
static void
track_epoch(struct server *sv)
{
	if (sv->track_epoch == sv->el.epoch)
		return;
	sv->track_epoch = sv->el.epoch;
	sv->stood = false;
	memset(&sv->max_fwd, 0, sizeof(sv->max_fwd));
}

/* Ground truth kept about every voting hop: who it skipped, who it saw. */
static void
note_vote(struct world *w, struct server *sv, int to, uint64_t epoch,
    const struct uuid *cand)
{
	struct erec *er;
	int k;

	if ((er = erec_get(w, epoch)) == NULL)
		return;
	if ((k = idx_of(w, cand)) >= 0)
		er->skipped[k] |= skipped_up(w, sv->idx, to);
	if (!er->won)
		er->alive_and &= live_mask(w, sv);
	track_epoch(sv);
	if (k == sv->idx && epoch == sv->el.epoch)
		sv->stood = true;
}

static void
note_win(struct world *w, struct server *sv, uint64_t epoch)
{
	struct erec *er;
	struct win *p;
	char a[16];

	if ((er = erec_get(w, epoch)) == NULL)
		return;
	track_epoch(sv);
	if (ring_next_live(&sv->ring, &sv->id) == NULL) {
		/* alone on its ring: every other server was skipped */
		er->skipped[sv->idx] |= skipped_up(w, sv->idx, -1);
	} else {
		/*
		 * A win by a vote that came back: it must be this
		 * incarnation's own candidacy of this epoch, and no larger
		 * candidate may have passed through here before it.
		 */
		if (!sv->stood)
			fail(w,
			    "s%d won epoch %" PRIu64 " without standing "
			    "in it",
			    sv->idx, epoch);
		if (uuid_cmp(&sv->max_fwd, &sv->id) > 0)
			fail(w,
			    "s%d won epoch %" PRIu64 " after passing on "
			    "a larger candidate",
			    sv->idx, epoch);
	}
	if (!er->won) {
		er->won = true;
		er->alive_and &= live_mask(w, sv);
	}
	if (w->nwins == w->capwins) {
		w->capwins = w->capwins ? 2 * w->capwins : 64;
		if ((p = reallocarray(w->wins, w->capwins, sizeof(*p))) ==
		    NULL) {
			perror("reallocarray");
			exit(2);
		}
		w->wins = p;
	}
	w->wins[w->nwins].epoch = epoch;
	w->wins[w->nwins].who = sv->id;
	w->nwins++;
	tot.elections++;
	trace(w, 1, "%s WINS epoch %" PRIu64, sname(w, sv->idx, a), epoch);
}

static bool
was_won(const struct world *w, uint64_t epoch, const struct uuid *who)
{
	size_t i;

	for (i = 0; i < w->nwins; i++)
		if (w->wins[i].epoch == epoch &&
		    uuid_cmp(&w->wins[i].who, who) == 0)
			return true;
	return false;
}

static void
on_event(struct world *w, struct server *sv, const struct el_out *o)
{
	char a[16], b[16];
	int k;

	switch (o->ev) {
	case EL_EV_WIN:
		note_win(w, sv, o->epoch);
		return;
	case EL_EV_FORWARD:
		track_epoch(sv);
		if (uuid_cmp(&o->candidate, &sv->max_fwd) > 0)
			sv->max_fwd = o->candidate;
		break;
	case EL_EV_START:
		w->starts++;
		break;
	default:
		break;
	}
	if (w->verbose < 1)
		return;
	k = idx_of(w, &o->to);
	if (o->ev == EL_EV_ROLE)
		trace(w, 1, "%s role %s -> %s (epoch %" PRIu64 ")",
		    sname(w, sv->idx, a), election_role_name(o->old_role),
		    election_role_name(o->new_role), o->epoch);
	else
		trace(w, 1, "%s %s epoch %" PRIu64 " %s %s",
		    sname(w, sv->idx, a), election_event_name(o->ev), o->epoch,
		    k >= 0 ? sname(w, k, b) : "-",
		    o->detail != NULL ? o->detail : "");
}

static void srv_sync(struct world *, struct server *);

/* Hands the election's outbox to the network and the checks. */
static void
srv_flush(struct world *w, struct server *sv)
{
	struct election *e = &sv->el;
	const struct el_out *o;
	struct msg m;
	size_t i;
	int to;

	for (i = 0; i < e->nout; i++) {
		o = &e->out[i];
		if (o->type == EL_EVENT) {
			on_event(w, sv, o);
			continue;
		}
		if (o->type == EL_BCAST_LEADER)
			continue; /* for clients; nothing here listens */
		if ((to = idx_of(w, &o->to)) < 0) {
			fail(w, "s%d addressed a non-member", sv->idx);
			continue;
		}
		memset(&m, 0, sizeof(m));
		m.from = m.origin = sv->idx;
		m.to = to;
		m.epoch = o->epoch;
		m.hop = o->hop;
		m.who = o->candidate;
		switch (o->type) {
		case EL_SEND_VOTING:
			m.kind = MK_VOTING;
			note_vote(w, sv, to, o->epoch, &o->candidate);
			break;
		case EL_SEND_LEADER:
			m.kind = MK_LEADER;
			break;
		default:
			m.kind = MK_ACK;
			break;
		}
		net_send(w, &m);
	}
	election_drain(e);
	srv_sync(w, sv);
}

/*
 * After every step of a server: the per-server safety checks, then the
 * glue a daemon has between the election and the heartbeat modules.
 */
static void
srv_sync(struct world *w, struct server *sv)
{
	struct election *e = &sv->el;
	bool changed;

	sv->touched = true;
	if (e->out_overflow != 0 || e->pending_overflow != 0)
		fail(w, "s%d overflowed its outbox or pending table", sv->idx);
	if (e->role == ROLE_LEADER &&
	    (!e->has_leader || uuid_cmp(&e->leader, &e->self) != 0))
		fail(w, "s%d is leader without naming itself", sv->idx);
	if (e->role == ROLE_BACKUP &&
	    (!e->has_leader || uuid_cmp(&e->leader, &e->self) == 0))
		fail(w, "s%d is backup without another leader", sv->idx);
	if ((e->role == ROLE_ELECTING || e->role == ROLE_STARTING) &&
	    e->has_leader)
		fail(w, "s%d is %s with a leader", sv->idx,
		    election_role_name(e->role));
	/* (epoch, leader) only moves forward */
	if (e->epoch < sv->seen_epoch)
		fail(w, "s%d went back from epoch %" PRIu64 " to %" PRIu64,
		    sv->idx, sv->seen_epoch, e->epoch);
	if (e->epoch == sv->seen_epoch && sv->seen_has &&
	    (!e->has_leader || uuid_cmp(&e->leader, &sv->seen_leader) < 0))
		fail(w, "s%d went back to an older leader in epoch %" PRIu64,
		    sv->idx, e->epoch);
	changed = e->epoch != sv->seen_epoch || e->has_leader != sv->seen_has ||
	    e->role != sv->seen_role ||
	    (e->has_leader && uuid_cmp(&e->leader, &sv->seen_leader) != 0);
	if (changed) {
		w->t_last_change = w->now;
		if (e->epoch != sv->seen_epoch)
			(void)erec_get(w, e->epoch);
		/* no one follows a leader that did not win that epoch */
		if (e->has_leader && !was_won(w, e->epoch, &e->leader))
			fail(w,
			    "s%d follows a leader that never won epoch "
			    "%" PRIu64,
			    sv->idx, e->epoch);
	}
	sv->seen_epoch = e->epoch;
	sv->seen_has = e->has_leader;
	sv->seen_leader = e->leader;
	sv->seen_role = e->role;
	sv->disk_epoch = e->epoch;

	if (e->role == ROLE_BACKUP) {
		if (!sv->watching || sv->watch_epoch != e->epoch ||
		    uuid_cmp(&sv->watch_leader, &e->leader) != 0) {
			hb_follower_watch(&sv->hf, w->now);
			sv->watching = true;
			sv->watch_epoch = e->epoch;
			sv->watch_leader = e->leader;
		}
	} else if (sv->watching) {
		hb_follower_stop(&sv->hf);
		sv->watching = false;
	}
	if (e->role == ROLE_LEADER && !sv->hl.active)
		hb_leader_start(&sv->hl, w->now);
	else if (e->role != ROLE_LEADER && sv->hl.active)
		hb_leader_stop(&sv->hl);
	/* the leader's beats to the dead do what the probes do */
	if (e->role == ROLE_LEADER)
		hb_revive_stop(&sv->hv);
	else
		hb_revive_start(&sv->hv, w->now);
	/* a leader that handed over leaves once the new one is known */
	if (sv->quitting && e->role == ROLE_BACKUP && sv->quit_at > w->now)
		sv->quit_at = w->now;
}

static void
member_fill(const struct world *w, int i, struct member *me)
{
	memset(me, 0, sizeof(*me));
	me->uuid = w->s[i].id;
	snprintf(me->name, sizeof(me->name), "s%u", (unsigned)(uint8_t)i);
	snprintf(me->addr, sizeof(me->addr), "10.0.0.%u",
	    (unsigned)(uint8_t)(i + 1));
	me->port = 7000;
	me->ctl_port = 7001;
}

static void
srv_start(struct world *w, struct server *sv, int64_t discovery_ms)
{
	struct member me;
	char a[16];
	int i;

	member_fill(w, sv->idx, &me);
	ring_init(&sv->ring, &me);
	/* every member known, as after discovery */
	for (i = 0; i < w->n; i++) {
		if (i == sv->idx)
			continue;
		member_fill(w, i, &me);
		if (ring_upsert(&sv->ring, &me) != 1)
			fail(w, "ring_upsert of a new member did not say new");
	}
	election_init(&sv->el, &sv->id, &w->p->el, sv->disk_epoch);
	/* half the restarts reuse hop ids from 1, as a naive daemon would */
	if (rng_chance(&w->rng, 0.5))
		sv->el.next_hop = rng_next(&w->rng) >> 16 | 1;
	hb_follower_init(&sv->hf, &w->p->hb);
	sv->hf.probe_id = rng_next(&w->rng) >> 16;
	hb_leader_init(&sv->hl, &w->p->hb);
	hb_revive_init(&sv->hv, &w->p->hb);
	hb_revive_start(&sv->hv, w->now);
	if (discovery_ms != INT64_MAX)
		election_discover(&sv->el, w->now, discovery_ms);
	sv->up = true;
	sv->touched = true;
	sv->up_since = w->now;
	sv->restart_at = INT64_MAX;
	sv->watching = false;
	sv->quitting = false;
	sv->quit_at = INT64_MAX;
	sv->seen_epoch = sv->disk_epoch;
	sv->seen_has = false;
	sv->seen_role = ROLE_STARTING;
	memset(&sv->seen_leader, 0, sizeof(sv->seen_leader));
	sv->track_epoch = sv->el.epoch;
	sv->stood = false;
	memset(&sv->max_fwd, 0, sizeof(sv->max_fwd));
	trace(w, 1, "%s starts (epoch %" PRIu64 ")", sname(w, sv->idx, a),
	    sv->disk_epoch);
}

static void
srv_crash(struct world *w, struct server *sv, const char *why)
{
	char a[16];

	sv->up = false;
	sv->touched = true;
	sv->watching = false;
	sv->restart_at = INT64_MAX;
	tot.suspicions += sv->hf.suspicions;
	tot.refuted += sv->hf.refuted;
	tot.dups += sv->el.dups;
	trace(w, 1, "%s goes down (%s)", sname(w, sv->idx, a), why);
}

static void
mark_heard(struct world *w, struct server *sv, int from)
{
	struct member *mb;

	ring_set_alive(&sv->ring, &w->s[from].id, true);
	if ((mb = ring_find(&sv->ring, &w->s[from].id)) != NULL)
		mb->last_seen_ms = w->now;
}

static void
send_pair(struct world *w, struct server *sv, enum mkind kind, int to,
    int origin, uint64_t id)
{
	struct msg m;

	memset(&m, 0, sizeof(m));
	m.kind = kind;
	m.from = sv->idx;
	m.to = to;
	m.origin = origin;
	m.hop = id;
	m.has = sv->el.has_leader;
	m.leading = sv->el.role == ROLE_LEADER;
	m.epoch = sv->el.epoch;
	m.who = sv->el.leader;
	net_send(w, &m);
}

static void
deliver(struct world *w, const struct msg *m)
{
	struct server *sv = &w->s[m->to];
	struct msg f;
	int k;

	if (!sv->up || (w->split && w->group[m->from] != w->group[m->to]))
		return;
	sv->touched = true;
	mark_heard(w, sv, m->from);
	switch (m->kind) {
	case MK_VOTING:
		election_on_voting(&sv->el, &sv->ring, w->now,
		    &w->s[m->from].id, m->epoch, &m->who, m->hop);
		break;
	case MK_LEADER:
		election_on_leader(&sv->el, &sv->ring, w->now,
		    &w->s[m->from].id, m->epoch, &m->who, m->hop);
		break;
	case MK_ACK:
		election_on_ack(&sv->el, &sv->ring, w->now, &w->s[m->from].id,
		    m->epoch, m->hop);
		break;
	case MK_BEAT:
		/* a restarted server learns its leader here (discovery) */
		election_observe_leader(
		    &sv->el, &sv->ring, w->now, m->epoch, &m->who);
		srv_flush(w, sv);
		if (sv->el.role == ROLE_BACKUP && sv->el.epoch == m->epoch &&
		    uuid_cmp(&sv->el.leader, &m->who) == 0)
			hb_follower_on_beat(&sv->hf, w->now);
		/* the answer names our leader: an outdated one steps down */
		send_pair(w, sv, MK_BEATACK, m->from, sv->idx, m->hop);
		break;
	case MK_BEATACK:
		if (m->has)
			election_observe_leader(
			    &sv->el, &sv->ring, w->now, m->epoch, &m->who);
		break;
	case MK_PROBE:
		send_pair(w, sv, MK_PROBEACK, m->from, m->origin, m->hop);
		break;
	case MK_PROBEREQ:
		if ((k = idx_of(w, &m->who)) >= 0 && k != sv->idx) {
			f = *m;
			f.kind = MK_PROBE;
			f.from = sv->idx;
			f.to = k;
			net_send(w, &f);
		}
		break;
	case MK_PROBEACK:
		if (m->origin != sv->idx) {
			f = *m;
			f.from = sv->idx;
			f.to = m->origin;
			net_send(w, &f);
			break;
		}
		/* only the leader we follow, still leading, refutes */
		if (m->leading && sv->el.role == ROLE_BACKUP &&
		    m->epoch == sv->el.epoch &&
		    uuid_cmp(&m->who, &sv->el.leader) == 0)
			hb_follower_on_probeack(&sv->hf, w->now, m->hop);
		else if (m->has)
			election_observe_leader(
			    &sv->el, &sv->ring, w->now, m->epoch, &m->who);
		break;
	}
	srv_flush(w, sv);
}

static void
send_probes(struct world *w, struct server *sv)
{
	const struct member *mb;
	struct msg m;
	int leader, k, sent = 0, start, i;

	if ((leader = idx_of(w, &sv->el.leader)) < 0)
		return;
	send_simple(
	    w, MK_PROBE, sv->idx, leader, sv->el.epoch, NULL, sv->hf.probe_id);
	/* and through up to HB_INDIRECT others, in case only our path is bad */
	start = (int)rng_range(&w->rng, 0, w->n - 1);
	for (i = 0; i < w->n && sent < HB_INDIRECT; i++) {
		k = (start + i) % w->n;
		if (k == sv->idx || k == leader)
			continue;
		mb = ring_find_const(&sv->ring, &w->s[k].id);
		if (mb == NULL || !mb->alive)
			continue;
		memset(&m, 0, sizeof(m));
		m.kind = MK_PROBEREQ;
		m.from = m.origin = sv->idx;
		m.to = k;
		m.who = sv->el.leader;
		m.hop = sv->hf.probe_id;
		net_send(w, &m);
		sent++;
	}
}

static void
send_beats(struct world *w, struct server *sv, bool live)
{
	const struct member *mb;
	size_t i;
	int k;

	for (i = 0; i < sv->ring.n; i++) {
		mb = &sv->ring.m[i];
		if (mb->alive != live || uuid_cmp(&mb->uuid, &sv->id) == 0)
			continue;
		if ((k = idx_of(w, &mb->uuid)) >= 0)
			send_simple(w, MK_BEAT, sv->idx, k, sv->el.epoch,
			    &sv->id, sv->hl.seq);
	}
}

static int64_t
srv_next(const struct server *sv)
{
	int64_t t, u;

	if (!sv->up)
		return sv->restart_at;
	t = election_next_deadline(&sv->el);
	if ((u = hb_follower_next_deadline(&sv->hf)) < t)
		t = u;
	if ((u = hb_leader_next_deadline(&sv->hl)) < t)
		t = u;
	if ((u = hb_revive_next_deadline(&sv->hv)) < t)
		t = u;
	if (sv->quitting && sv->quit_at < t)
		t = sv->quit_at;
	return t;
}

static void
srv_timers(struct world *w, struct server *sv)
{
	struct uuid dead[RING_MAX], leader;
	size_t nd, i;
	int bits, k;
	char a[16];

	sv->touched = true;
	if (!sv->up) {
		srv_start(w, sv, w->p->discovery_ms);
		return;
	}
	if (sv->quitting && w->now >= sv->quit_at) {
		srv_crash(w, sv, "quit");
		return;
	}
	if (election_next_deadline(&sv->el) <= w->now) {
		election_tick(&sv->el, &sv->ring, w->now);
		srv_flush(w, sv);
	}
	if (hb_follower_next_deadline(&sv->hf) <= w->now) {
		switch (hb_follower_tick(&sv->hf, w->now)) {
		case HB_PROBE:
			trace(w, 1, "%s probes its leader (probe %" PRIu64 ")",
			    sname(w, sv->idx, a), sv->hf.probe_id);
			send_probes(w, sv);
			break;
		case HB_DEAD:
			leader = sv->el.leader;
			ring_set_alive(&sv->ring, &leader, false);
			election_start(
			    &sv->el, &sv->ring, w->now, "leader dead", false);
			srv_flush(w, sv);
			break;
		case HB_NONE:
			break;
		}
	}
	if (hb_leader_next_deadline(&sv->hl) <= w->now) {
		bits = hb_leader_tick(&sv->hl, w->now);
		if (bits & HB_ROUND_LIVE) {
			nd = hb_leader_reap(
			    &sv->hl, &sv->ring, w->now, dead, RING_MAX);
			for (i = 0; i < nd; i++)
				trace(w, 1, "%s reaps s%d",
				    sname(w, sv->idx, a), idx_of(w, &dead[i]));
			send_beats(w, sv, true);
		}
		if (bits & HB_ROUND_DEAD)
			send_beats(w, sv, false);
	}
	if (hb_revive_tick(&sv->hv, w->now)) {
		/* id 0: answers prove liveness, they refute nothing */
		nd = hb_revive_targets(&sv->ring, dead, RING_MAX);
		for (i = 0; i < nd; i++)
			if ((k = idx_of(w, &dead[i])) >= 0)
				send_simple(w, MK_PROBE, sv->idx, k,
				    sv->el.epoch, NULL, 0);
	}
}

static int
count_up(const struct world *w)
{
	int i, k = 0;

	for (i = 0; i < w->n; i++)
		if (w->s[i].up)
			k++;
	return k;
}

/* Picks a server that is up (want_up) or down; -1 if there is none. */
static int
pick(struct world *w, bool want_up)
{
	int i, k, start = (int)rng_range(&w->rng, 0, w->n - 1);

	for (i = 0; i < w->n; i++) {
		k = (start + i) % w->n;
		if (w->s[k].up == want_up)
			return k;
	}
	return -1;
}

static void
end_faults(struct world *w)
{
	int i;

	w->lossy = false;
	w->split = false;
	w->t_next_fault = INT64_MAX;
	trace(w, 1, "faults end: network whole, no loss");
	/* some of the dead come back now: they rejoin a settled cluster */
	for (i = 0; i < w->n; i++)
		if (!w->s[i].up &&
		    (w->s[i].restart_at != INT64_MAX ||
			rng_chance(&w->rng, 0.5)))
			srv_start(w, &w->s[i], w->p->discovery_ms);
	if (count_up(w) == 0)
		srv_start(w, &w->s[pick(w, false)], w->p->discovery_ms);
}

static void
do_fault(struct world *w)
{
	struct server *sv;
	int64_t r;
	int i, k, g0;

	if (w->now >= w->t_end_faults) {
		end_faults(w);
		return;
	}
	w->t_next_fault = w->now + rng_range(&w->rng, 50, w->fault_gap_max);
	if (w->t_next_fault > w->t_end_faults)
		w->t_next_fault = w->t_end_faults;
	r = rng_range(&w->rng, 0, 99);
	if (r < 25) {
		k = pick(w, true);
		/* chaos: hit a server while it has an election to do */
		for (i = 0; w->chaos && i < w->n; i++)
			if (w->s[i].up && w->s[i].el.role != ROLE_BACKUP &&
			    rng_chance(&w->rng, 0.5)) {
				k = i;
				break;
			}
		if (k >= 0) {
			tot.crashes++;
			srv_crash(w, &w->s[k], "crash");
			/* a bounce: back before its last vote is done */
			if (rng_chance(&w->rng, w->chaos ? 0.5 : 0.1))
				w->s[k].restart_at = w->now +
				    rng_range(&w->rng, 1, 4 * w->dmax + 20);
		}
	} else if (r < 50) {
		if ((k = pick(w, false)) >= 0)
			srv_start(w, &w->s[k], w->p->discovery_ms);
	} else if (r < 65) {
		if (w->split || w->n < 2)
			return;
		do {
			g0 = 0;
			for (i = 0; i < w->n; i++)
				g0 += (w->group[i] = rng_chance(&w->rng, 0.5));
		} while (g0 == 0 || g0 == w->n);
		w->split = true;
		tot.partitions++;
		trace(w, 1, "network splits");
	} else if (r < 80) {
		if (w->split)
			trace(w, 1, "network heals");
		w->split = false;
	} else if (r < 85) {
		/* a leader hands over and leaves, some time before the end */
		if (w->t_end_faults - w->now < 3 * T_QUIT_MAX)
			return;
		for (i = 0; i < w->n; i++) {
			sv = &w->s[i];
			if (!sv->up || sv->quitting ||
			    sv->el.role != ROLE_LEADER)
				continue;
			tot.quits++;
			trace(w, 1, "s%d quits", i);
			sv->quitting = true;
			sv->quit_at = w->now + T_QUIT_MAX;
			election_start(
			    &sv->el, &sv->ring, w->now, "quit", true);
			srv_flush(w, sv);
			break;
		}
	}
}

/*
 * (a) Safety, at every instant.  The brief asks that no two servers lead
 * the same epoch at once.  No election without a quorum can promise that
 * across a partition: two halves that lost their leader each elect one,
 * and both start from the same epoch.  The same holds when a server is
 * merely believed dead (its acks were lost, or it restarted and a peer
 * has not heard from it since): a hop skips it, and its side of the
 * ring can finish an election of its own.  What the protocol does
 * promise: if W1 < W2 both win epoch E, a vote carrying one of them
 * skipped the other while it was up.  (W1's vote cannot pass W2, which
 * drops or replaces it; W2's vote cannot pass W1 before W1 wins, since
 * W1 then never wins, nor after, since W1 then drops it.)  So two
 * leaders of one epoch are a failure unless the simulator's ground
 * truth shows such a skip, whatever its cause.  Explained splits are
 * counted, and the liveness check below requires them to be resolved.
 * Each win is also checked to be justified (note_win), and roles,
 * monotonic (epoch, leader) and validity are checked in srv_sync.
 */
static void
check_instant(struct world *w)
{
	struct erec *er;
	int i, j;

	for (i = 0; i < w->n; i++) {
		if (!w->s[i].up || w->s[i].el.role != ROLE_LEADER)
			continue;
		for (j = i + 1; j < w->n; j++) {
			if (!w->s[j].up || w->s[j].el.role != ROLE_LEADER ||
			    w->s[j].el.epoch != w->s[i].el.epoch)
				continue;
			if ((er = erec_get(w, w->s[i].el.epoch)) == NULL)
				return;
			if (!(er->skipped[i] & 1u << j) &&
			    !(er->skipped[j] & 1u << i)) {
				fail(w,
				    "safety: s%d and s%d both lead epoch "
				    "%" PRIu64 " and neither's vote skipped "
				    "the other",
				    i, j, w->s[i].el.epoch);
				return;
			}
			if (!er->dual) {
				er->dual = true;
				tot.dual_epochs++;
			}
		}
	}
}

/*
 * Every server that is up holds every other one that is up alive in its
 * ring.  Only the alive direction converges: a backup hears nothing from
 * a crashed backup and keeps it alive until an election hop to it fails.
 */
static int
check_views(struct world *w, const char *what)
{
	const struct member *mb;
	int i, j;

	for (i = 0; i < w->n; i++) {
		if (!w->s[i].up)
			continue;
		for (j = 0; j < w->n; j++) {
			if (j == i || !w->s[j].up)
				continue;
			mb = ring_find_const(&w->s[i].ring, &w->s[j].id);
			if (mb == NULL || !mb->alive) {
				fail(
				    w, "%s: s%d believes s%d dead", what, i, j);
				return -1;
			}
		}
	}
	return 0;
}

/*
 * (b) Liveness, T_SETTLE after the last fault, with the network whole:
 * exactly one leader, and every server that is up names the same
 * (epoch, leader), as backup or as that leader.
 *
 * Which leader?  LCR elects the highest UUID among the servers the
 * votes visit.  A server that comes up after the election (or is still
 * believed dead by a peer) joins as a backup without disturbing the
 * leader, so "the leader is the highest live UUID" holds only when the
 * winning election could see everyone: every server up now was up
 * (this incarnation) from the moment the first server entered the
 * leader's epoch until its win, and every voting sender of that epoch
 * held all of them alive in its ring.  When that holds the leader must
 * be the highest live UUID; when not, the check says so in the stats.
 */
static void
check_settled(struct world *w)
{
	struct server *lead = NULL, *sv;
	struct erec *er;
	uint32_t upmask = 0;
	int i, best = -1;

	for (i = 0; i < w->n; i++) {
		sv = &w->s[i];
		if (!sv->up)
			continue;
		upmask |= 1u << i;
		if (best < 0 || uuid_cmp(&sv->id, &w->s[best].id) > 0)
			best = i;
		if (sv->el.role == ROLE_LEADER) {
			if (lead != NULL) {
				fail(w,
				    "liveness: s%d and s%d both lead %d ms "
				    "after the faults",
				    lead->idx, i, T_SETTLE);
				return;
			}
			lead = sv;
		}
	}
	if (lead == NULL) {
		fail(w, "liveness: no leader %d ms after the faults", T_SETTLE);
		return;
	}
	for (i = 0; i < w->n; i++) {
		sv = &w->s[i];
		if (!sv->up || sv == lead)
			continue;
		if (sv->el.role != ROLE_BACKUP ||
		    sv->el.epoch != lead->el.epoch ||
		    uuid_cmp(&sv->el.leader, &lead->id) != 0) {
			fail(w,
			    "liveness: s%d is %s in epoch %" PRIu64
			    ", not a backup of s%d in epoch %" PRIu64,
			    i, election_role_name(sv->el.role), sv->el.epoch,
			    lead->idx, lead->el.epoch);
			return;
		}
	}
	if (check_views(w, "liveness") == -1)
		return;
	if ((er = erec_get(w, lead->el.epoch)) == NULL)
		return;
	for (i = 0; i < w->n; i++)
		if (w->s[i].up && w->s[i].up_since > er->t_first)
			break;
	if (i < w->n || (er->alive_and & upmask) != upmask) {
		tot.highest_skipped++;
		return;
	}
	tot.highest_checked++;
	if (best != lead->idx)
		fail(w,
		    "liveness: s%d leads epoch %" PRIu64 " but s%d is "
		    "higher and took part in that whole election",
		    lead->idx, lead->el.epoch, best);
}

static void
run_until(struct world *w, int64_t t_stop)
{
	struct msg m;
	int64_t tq, ts, t, u;
	int i, who;

	while (!w->failed) {
		tq = w->nq > 0 ? w->q[0].at : INT64_MAX;
		ts = INT64_MAX;
		who = -1;
		for (i = 0; i < w->n; i++) {
			if (w->s[i].touched) {
				w->s[i].next_at = srv_next(&w->s[i]);
				w->s[i].touched = false;
			}
			if ((u = w->s[i].next_at) < ts) {
				ts = u;
				who = i;
			}
		}
		t = tq < ts ? tq : ts;
		if (w->t_next_fault < t)
			t = w->t_next_fault;
		if (t > t_stop) {
			w->now = t_stop;
			return;
		}
		if (t < w->now) {
			fail(w, "time went back to %" PRId64, t);
			return;
		}
		w->now = t;
		if (++w->events > EVENTS_MAX) {
			fail(w, "no progress: over %d events", EVENTS_MAX);
			return;
		}
		if (w->t_next_fault == t)
			do_fault(w);
		else if (tq == t) {
			q_pop(w, &m);
			deliver(w, &m);
		} else
			srv_timers(w, &w->s[who]);
		check_instant(w);
	}
}

static void
world_free(struct world *w)
{
	free(w->q);
	free(w->ep);
	free(w->wins);
	w->q = NULL;
	w->ep = NULL;
	w->wins = NULL;
}

/* Same seed, same servers: draws the UUIDs and their ring order. */
static void
world_init(struct world *w, uint64_t seed, int verbose, uint64_t stream)
{
	int i, j, t;

	memset(w, 0, sizeof(*w));
	w->seed = seed;
	w->verbose = verbose;
	w->rng.s = seed * 0x2545f4914f6cdd1dULL;
	w->n = (int)rng_range(&w->rng, SIM_MINN, SIM_MAXN);
	for (i = 0; i < w->n; i++) {
		w->s[i].idx = i;
		w->s[i].restart_at = INT64_MAX;
		w->s[i].touched = true;
		do {
			for (j = 0; j < 16; j++)
				w->s[i].id.b[j] = (uint8_t)rng_next(&w->rng);
			/* some seeds: UUIDs that differ only at the end */
			if (seed % 7 == 0)
				memset(w->s[i].id.b, 0xab, 15);
			for (j = 0; j < i; j++)
				if (uuid_cmp(&w->s[i].id, &w->s[j].id) == 0)
					break;
		} while (j < i);
		w->order[i] = i;
	}
	for (i = 1; i < w->n; i++)
		for (j = i; j > 0 &&
		     uuid_cmp(
			 &w->s[w->order[j]].id, &w->s[w->order[j - 1]].id) < 0;
		     j--) {
			t = w->order[j];
			w->order[j] = w->order[j - 1];
			w->order[j - 1] = t;
		}
	for (i = 0; i < w->n; i++)
		w->rank[w->order[i]] = i;
	/* each scenario its own stream, all from the one seed */
	w->rng.s ^= stream * 0x9e3779b97f4a7c15ULL;
	w->t_next_fault = INT64_MAX;
	w->p = &profiles[rng_range(&w->rng, 0, 1)];
	w->dmax = rng_range(&w->rng, 0, w->p->delay_max);
}

static int
run_faults(uint64_t seed, int verbose)
{
	struct world w;
	struct server *sv;
	struct {
		enum election_role role;
		uint64_t epoch;
		struct uuid leader;
	} snap[SIM_MAXN];
	uint64_t starts;
	int i;

	world_init(&w, seed, verbose, 1);
	w.drop = (double)rng_range(&w.rng, 0, 200) / 1000.0;
	w.dup = (double)rng_range(&w.rng, 0, 100) / 1000.0;
	w.lossy = true;
	w.t_end_faults = rng_range(&w.rng, T_FAULTS_MIN, T_FAULTS_MAX);
	w.chaos = rng_chance(&w.rng, 0.25);
	w.fault_gap_max =
	    w.chaos ? rng_range(&w.rng, 60, 400) : rng_range(&w.rng, 300, 3000);
	w.t_next_fault = rng_range(&w.rng, 50, w.fault_gap_max);
	trace(&w, 1,
	    "seed %" PRIu64 ": %d servers, drop %.3f, dup %.3f, "
	    "delay 0..%" PRId64 " ms, faults until %" PRId64 "%s, %s timing",
	    seed, w.n, w.drop, w.dup, w.dmax, w.t_end_faults,
	    w.chaos ? ", chaos" : "", w.p->name);
	for (i = 0; i < w.n; i++)
		srv_start(
		    &w, &w.s[i], rng_range(&w.rng, 50, w.p->discovery_ms));

	run_until(&w, w.t_end_faults + T_SETTLE);
	if (!w.failed)
		check_settled(&w);
	if (!w.failed && w.t_last_change > w.t_end_faults &&
	    w.t_last_change - w.t_end_faults > tot.worst_settle)
		tot.worst_settle = w.t_last_change - w.t_end_faults;
	/* quiescence: nothing changes any more */
	for (i = 0; i < w.n; i++) {
		snap[i].role = w.s[i].el.role;
		snap[i].epoch = w.s[i].el.epoch;
		snap[i].leader = w.s[i].el.leader;
	}
	starts = w.starts;
	if (!w.failed)
		run_until(&w, w.now + T_STABLE);
	for (i = 0; i < w.n && !w.failed; i++) {
		sv = &w.s[i];
		if (sv->up &&
		    (sv->el.role != snap[i].role ||
			sv->el.epoch != snap[i].epoch ||
			uuid_cmp(&sv->el.leader, &snap[i].leader)))
			fail(&w, "quiescence: s%d changed after settling", i);
	}
	if (!w.failed && w.starts != starts)
		fail(&w, "quiescence: an election started after settling");
	if (!w.failed)
		(void)check_views(&w, "quiescence");
	for (i = 0; i < w.n; i++)
		if (w.s[i].up)
			srv_crash(&w, &w.s[i], "end");
	if (w.failed)
		printf("sim_election: seed %" PRIu64 " failed at %" PRId64
		       " ms: %s (replay: sim_election --seed %" PRIu64 ")\n",
		    seed, w.now, w.why, seed);
	world_free(&w);
	return w.failed ? -1 : 0;
}

/*
 * (c) Message complexity with nothing failing.  One initiator: its vote
 * is replaced up to the highest UUID, which then goes once round, so at
 * most 2n - 1 votes.  All at once: LCR's worst case n(n+1)/2.  Exactly
 * n - 1 leader announcements (acked, so never resent).
 */
static int
run_nofault(uint64_t seed, int verbose, int mode)
{
	static const char *const mname[] = {"one initiator",
	    "all initiate at once", "all initiate within a few delays"};
	struct world w;
	uint64_t votes = 0, leaders = 0, bound;
	int64_t when[SIM_MAXN];
	int seq[SIM_MAXN];
	int i, k, t, top, init;

	world_init(&w, seed, verbose, 2 + (uint64_t)mode);
	w.t_next_fault = INT64_MAX;
	/* duplicates are no failure: they must not add a single vote */
	w.dup = (double)rng_range(&w.rng, 0, 100) / 1000.0;
	trace(&w, 1, "seed %" PRIu64 ": no faults, %s, %d servers", seed,
	    mname[mode], w.n);
	for (i = 0; i < w.n; i++)
		srv_start(&w, &w.s[i], INT64_MAX);
	top = w.order[w.n - 1];
	init = (int)rng_range(&w.rng, 0, w.n - 1);
	for (i = 0; i < w.n; i++) {
		when[i] = mode == 2 ? rng_range(&w.rng, 0, 3 * w.dmax) : 0;
		seq[i] = i;
	}
	if (mode == 0) {
		election_start(
		    &w.s[init].el, &w.s[init].ring, 0, "test", false);
		srv_flush(&w, &w.s[init]);
	} else if (mode == 1) {
		for (i = 0; i < w.n; i++) {
			election_start(
			    &w.s[i].el, &w.s[i].ring, 0, "test", false);
			srv_flush(&w, &w.s[i]);
		}
	} else {
		/* in order of their start times: time never goes back */
		for (i = 1; i < w.n; i++)
			for (k = i; k > 0 && when[seq[k]] < when[seq[k - 1]];
			     k--) {
				t = seq[k];
				seq[k] = seq[k - 1];
				seq[k - 1] = t;
			}
		for (k = 0; k < w.n; k++) {
			i = seq[k];
			run_until(&w, when[i]);
			/* one that joined meanwhile does not start another */
			if (w.s[i].el.role != ROLE_STARTING)
				continue;
			election_start(
			    &w.s[i].el, &w.s[i].ring, w.now, "test", false);
			srv_flush(&w, &w.s[i]);
		}
	}
	run_until(&w, T_NOFAULT);
	for (i = 0; i < w.n; i++) {
		votes += w.s[i].el.votes_sent;
		leaders += w.s[i].el.leaders_sent;
	}
	bound = mode == 0 ? 2 * (uint64_t)w.n - 1
			  : (uint64_t)w.n * ((uint64_t)w.n + 1) / 2;
	if (w.failed)
		;
	else if (w.nwins != 1)
		fail(&w, "no faults, %s: %zu wins", mname[mode], w.nwins);
	else if (uuid_cmp(&w.wins[0].who, &w.s[top].id) != 0)
		fail(&w, "no faults, %s: s%d won, not the highest s%d",
		    mname[mode], idx_of(&w, &w.wins[0].who), top);
	else if (votes > bound)
		fail(&w, "no faults, %s: %" PRIu64 " votes > %" PRIu64,
		    mname[mode], votes, bound);
	else if (leaders != (uint64_t)w.n - 1)
		fail(&w, "no faults, %s: %" PRIu64 " leader messages, not %d",
		    mname[mode], leaders, w.n - 1);
	if (!w.failed)
		(void)check_views(&w, "no faults");
	for (i = 0; i < w.n && !w.failed; i++)
		if (i != top &&
		    (w.s[i].el.role != ROLE_BACKUP ||
			uuid_cmp(&w.s[i].el.leader, &w.s[top].id) != 0))
			fail(&w, "no faults, %s: s%d does not follow s%d",
			    mname[mode], i, top);
	for (i = 0; i < w.n; i++)
		srv_crash(&w, &w.s[i], "end");
	trace(&w, 1, "%s: %" PRIu64 " votes, %" PRIu64 " leader messages",
	    mname[mode], votes, leaders);
	if (w.failed)
		printf("sim_election: seed %" PRIu64 " failed: %s (replay: "
		       "sim_election --seed %" PRIu64 ")\n",
		    seed, w.why, seed);
	world_free(&w);
	return w.failed ? -1 : 0;
}

static int
run_seed(uint64_t seed, int verbose)
{
	int bad = 0, mode;

	if (run_faults(seed, verbose) == -1)
		bad = 1;
	for (mode = 0; mode < 3; mode++)
		if (run_nofault(seed, verbose, mode) == -1)
			bad = 1;
	return bad ? -1 : 0;
}

static void __attribute__((noreturn)) usage(void)
{
	fprintf(stderr,
	    "usage: sim_election [--seeds n] [--from seed] "
	    "[--seed seed] [--verbose] [--stats]\n");
	exit(2);
}

static uint64_t
parse_u64(const char *s)
{
	char *end;
	unsigned long long v;

	if (s == NULL || *s == '\0' || *s == '-')
		usage();
	v = strtoull(s, &end, 10);
	if (*end != '\0')
		usage();
	return v;
}

int
main(int argc, char *argv[])
{
	uint64_t seeds = 100, from = 1, seed;
	int i, verbose = 0, one = 0, stats = 0;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--seeds") == 0 && i + 1 < argc)
			seeds = parse_u64(argv[++i]);
		else if (strcmp(argv[i], "--from") == 0 && i + 1 < argc)
			from = parse_u64(argv[++i]);
		else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc) {
			from = parse_u64(argv[++i]);
			seeds = 1;
			one = 1;
		} else if (strcmp(argv[i], "--verbose") == 0)
			verbose++;
		else if (strcmp(argv[i], "--stats") == 0)
			stats = 1;
		else
			usage();
	}
	if (one && verbose == 0)
		verbose = 1;
	for (seed = from; seed < from + seeds; seed++) {
		tot.seeds++;
		if (run_seed(seed, verbose) == 0)
			tot.passed++;
		else
			tot.failed++;
	}
	if (stats)
		printf("sim_election: stats: %" PRIu64 " messages (%" PRIu64
		       " lost), %" PRIu64 " crashes, %" PRIu64 " partitions, "
		       "%" PRIu64 " handovers, %" PRIu64 " suspicions "
		       "(%" PRIu64 " refuted), %" PRIu64 " duplicate hops, "
		       "%" PRIu64 " epochs with two leaders (all explained), "
		       "highest-UUID check applied %" PRIu64 " times, "
		       "not applicable %" PRIu64 ", worst settle %" PRId64
		       " ms\n",
		    tot.msgs, tot.dropped, tot.crashes, tot.partitions,
		    tot.quits, tot.suspicions, tot.refuted, tot.dups,
		    tot.dual_epochs, tot.highest_checked, tot.highest_skipped,
		    tot.worst_settle);
	printf("sim_election: %" PRIu64 " seeds, %" PRIu64 " elections, "
	       "%" PRIu64 " failed\n",
	    tot.seeds, tot.elections, tot.failed);
	printf(
	    "%" PRIu64 " passed, %" PRIu64 " failed\n", tot.passed, tot.failed);
	return tot.failed == 0 ? 0 : 1;
}
