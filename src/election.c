/* election: LeLann-Chang-Roberts leader election as a pure state machine. */
#include <string.h>

#include "election.h"

/*
 * docs/ELECTION.md gives the design.  In short: candidates travel the
 * ring in UUID order; every hop is acknowledged and resent, and a
 * neighbour that never acknowledges is marked dead and routed around.
 * Beyond textbook LCR, two rules keep one winner per epoch when views
 * of the ring disagree: a server wins only with its own candidacy of
 * this life and epoch, and only when no larger candidate has passed it
 * (best == self); a voting of an epoch whose leader is known is dropped.
 */

static const struct uuid nil_uuid;

static void
el_emit(struct election *e, const struct el_out *o)
{
	if (e->nout >= EL_OUT_MAX) {
		e->out_overflow++;
		return;
	}
	e->out[e->nout++] = *o;
}

static void
el_event(struct election *e, enum el_event ev, const struct uuid *to,
    const struct uuid *cand, const char *detail)
{
	struct el_out o;

	memset(&o, 0, sizeof(o));
	o.type = EL_EVENT;
	o.ev = ev;
	o.epoch = e->epoch;
	o.old_role = o.new_role = e->role;
	if (to != NULL)
		o.to = *to;
	if (cand != NULL)
		o.candidate = *cand;
	o.detail = detail;
	el_emit(e, &o);
}

/* Every role change goes through here, so it is always reported. */
static void
el_set_role(struct election *e, enum election_role role)
{
	struct el_out o;

	if (e->role == role)
		return;
	memset(&o, 0, sizeof(o));
	o.type = EL_EVENT;
	o.ev = EL_EV_ROLE;
	o.epoch = e->epoch;
	o.old_role = e->role;
	o.new_role = role;
	o.to = e->self;
	e->role = role;
	el_emit(e, &o);
}

static void
el_send(struct election *e, enum el_out_type type, const struct uuid *to,
    uint64_t epoch, const struct uuid *cand, uint64_t hop)
{
	struct el_out o;

	memset(&o, 0, sizeof(o));
	o.type = type;
	o.to = *to;
	o.epoch = epoch;
	if (cand != NULL)
		o.candidate = *cand;
	o.hop = hop;
	if (type == EL_SEND_VOTING)
		e->votes_sent++;
	else if (type == EL_SEND_LEADER)
		e->leaders_sent++;
	el_emit(e, &o);
}

/* Sends a hop that needs an ack and remembers it for resending. */
static void
el_send_tracked(struct election *e, bool is_leader, const struct uuid *to,
    const struct uuid *cand, int64_t now_ms)
{
	struct el_pending *p;
	uint64_t hop = e->next_hop++;
	size_t i;

	el_send(e, is_leader ? EL_SEND_LEADER : EL_SEND_VOTING, to, e->epoch,
	    cand, hop);
	for (i = 0; i < EL_PENDING_MAX; i++)
		if (!e->pending[i].used)
			break;
	if (i == EL_PENDING_MAX) {
		/* sized for one hop per member and a few votes: a bug */
		e->pending_overflow++;
		return;
	}
	p = &e->pending[i];
	p->used = true;
	p->is_leader_msg = is_leader;
	p->to = *to;
	p->epoch = e->epoch;
	p->candidate = *cand;
	p->hop = hop;
	p->tries = 0;
	p->next_ms = now_ms + e->cfg.retry_ms;
}

/* Forgets hops of older epochs; with votes_too, this epoch's votes. */
static void
el_cancel_pending(struct election *e, bool votes_too)
{
	struct el_pending *p;
	size_t i;

	for (i = 0; i < EL_PENDING_MAX; i++) {
		p = &e->pending[i];
		if (!p->used)
			continue;
		if (p->epoch < e->epoch || (votes_too && !p->is_leader_msg))
			p->used = false;
	}
}

/* Moves to a newer epoch: nothing of the old one is carried over. */
static void
el_enter_epoch(struct election *e, uint64_t epoch)
{
	if (epoch <= e->epoch)
		return;
	e->epoch = epoch;
	e->has_leader = false;
	e->participant = false;
	e->best = nil_uuid;
	el_cancel_pending(e, false);
}

/* Whether x lies strictly between a and b going up the ring from a. */
static bool
el_between(const struct uuid *a, const struct uuid *x, const struct uuid *b)
{
	int ax = uuid_cmp(a, x), xb = uuid_cmp(x, b), ab = uuid_cmp(a, b);

	if (ab < 0)
		return ax < 0 && xb < 0;
	/* the interval wraps past the highest UUID (or is the whole ring) */
	return ax < 0 || xb < 0;
}

/*
 * Where a voting for cand goes: the next live member, unless the walk
 * to it skips over the candidate itself.  A candidate we believe dead
 * has just proved otherwise by standing, so it is tried: without this a
 * candidate marked dead by a stale view would circle the ring forever.
 */
static const struct member *
el_vote_target(
    const struct election *e, const struct ring *r, const struct uuid *cand)
{
	const struct member *next, *c;

	next = ring_next_live(r, &e->self);
	if (uuid_cmp(cand, &e->self) == 0 ||
	    (c = ring_find_const(r, cand)) == NULL)
		return next;
	if (next == NULL || el_between(&e->self, cand, &next->uuid))
		return c;
	return next;
}

static void el_win(struct election *, struct ring *, int64_t);

/* Sends cand on; alone on the ring, a server that may win wins. */
static void
el_send_vote(
    struct election *e, struct ring *r, int64_t now_ms, const struct uuid *cand)
{
	const struct member *to;

	if ((to = el_vote_target(e, r, cand)) != NULL) {
		el_send_tracked(e, false, &to->uuid, cand, now_ms);
		return;
	}
	if (!e->abstain)
		el_win(e, r, now_ms);
}

static void
el_win(struct election *e, struct ring *r, int64_t now_ms)
{
	size_t i;

	e->has_leader = true;
	e->leader = e->self;
	e->participant = false;
	e->deadline_ms = INT64_MAX;
	el_cancel_pending(e, true);
	el_set_role(e, ROLE_LEADER);
	el_event(e, EL_EV_WIN, &e->self, &e->self, NULL);
	/* the presumed dead too: they may be back, and retries are cheap */
	for (i = 0; i < r->n; i++)
		if (uuid_cmp(&r->m[i].uuid, &e->self) != 0)
			el_send_tracked(
			    e, true, &r->m[i].uuid, &e->self, now_ms);
	el_send(e, EL_BCAST_LEADER, &nil_uuid, e->epoch, &e->self, 0);
}

/*
 * The adoption rule shared by leader announcements and leaders seen in
 * heartbeats: (epoch, leader) pairs only move forward.  Returns 1 when
 * adopted or already current, 0 when stale.
 */
static int
el_adopt(struct election *e, int64_t now_ms, uint64_t epoch,
    const struct uuid *leader)
{
	enum election_role role;
	int c;

	(void)now_ms;
	if (epoch < e->epoch)
		return 0;
	if (epoch == e->epoch && e->has_leader) {
		c = uuid_cmp(leader, &e->leader);
		if (c == 0)
			return 1;
		if (c < 0)
			return 0;
	}
	el_enter_epoch(e, epoch);
	/* whatever this epoch's votes were doing, its election is over */
	el_cancel_pending(e, true);
	e->has_leader = true;
	e->leader = *leader;
	e->participant = false;
	e->deadline_ms = INT64_MAX;
	role = uuid_cmp(leader, &e->self) == 0 ? ROLE_LEADER : ROLE_BACKUP;
	if (e->role == ROLE_LEADER && role != ROLE_LEADER)
		el_event(e, EL_EV_STEP_DOWN, leader, leader, NULL);
	el_set_role(e, role);
	el_event(e, EL_EV_ADOPT, leader, leader, NULL);
	return 1;
}

/* Whether this hop was processed already; remembers it if not. */
static bool
el_seen_before(struct election *e, bool is_leader, const struct uuid *from,
    uint64_t epoch, const struct uuid *cand, uint64_t hop)
{
	struct el_seen *s;
	size_t i;

	for (i = 0; i < EL_SEEN_MAX; i++) {
		s = &e->seen[i];
		if (s->used && s->is_leader_msg == is_leader && s->hop == hop &&
		    s->epoch == epoch && uuid_cmp(&s->from, from) == 0 &&
		    uuid_cmp(&s->candidate, cand) == 0)
			return true;
	}
	s = &e->seen[e->seen_next];
	e->seen_next = (e->seen_next + 1) % EL_SEEN_MAX;
	s->used = true;
	s->is_leader_msg = is_leader;
	s->from = *from;
	s->epoch = epoch;
	s->candidate = *cand;
	s->hop = hop;
	return false;
}

void
election_init(struct election *e, const struct uuid *self,
    const struct election_cfg *cfg, uint64_t epoch)
{
	memset(e, 0, sizeof(*e));
	e->cfg = *cfg;
	/* a zero retry period would resend within the same tick forever */
	if (e->cfg.retry_ms < 1)
		e->cfg.retry_ms = 1;
	if (e->cfg.retries < 0)
		e->cfg.retries = 0;
	if (e->cfg.timeout_ms < 1)
		e->cfg.timeout_ms = 1;
	e->self = *self;
	e->role = ROLE_STARTING;
	e->epoch = epoch;
	e->deadline_ms = INT64_MAX;
	e->next_hop = 1;
}

void
election_start(struct election *e, struct ring *r, int64_t now_ms,
    const char *reason, bool abstain)
{
	struct uuid cand;

	el_enter_epoch(e, e->epoch + 1);
	e->abstain = abstain;
	el_set_role(e, ROLE_ELECTING);
	el_event(e, EL_EV_START, &e->self, NULL, reason);
	e->participant = true;
	e->deadline_ms = now_ms + e->cfg.timeout_ms;
	if (abstain) {
		cand = nil_uuid;
	} else {
		cand = e->self;
		e->best = e->self;
	}
	el_send_vote(e, r, now_ms, &cand);
}

void
election_on_voting(struct election *e, struct ring *r, int64_t now_ms,
    const struct uuid *from, uint64_t epoch, const struct uuid *cand,
    uint64_t hop)
{
	bool was_leader;
	int c;

	/* even a stale hop is acked: the sender must not think us dead */
	el_send(e, EL_SEND_ACK, from, epoch, NULL, hop);
	if (epoch < e->epoch) {
		el_event(e, EL_EV_STALE, from, cand, "voting");
		return;
	}
	if (el_seen_before(e, false, from, epoch, cand, hop)) {
		e->dups++;
		return;
	}
	if (epoch > e->epoch) {
		was_leader = e->role == ROLE_LEADER;
		el_enter_epoch(e, epoch);
		if (was_leader)
			el_event(e, EL_EV_STEP_DOWN, from, cand, "new epoch");
		el_set_role(e, ROLE_ELECTING);
		e->deadline_ms = now_ms + e->cfg.timeout_ms;
	} else if (e->has_leader) {
		/* this epoch has its leader; a late candidate would be a second
		 */
		el_event(e, EL_EV_DROP, from, cand, "leader known");
		return;
	} else if (e->role == ROLE_STARTING) {
		el_set_role(e, ROLE_ELECTING);
		e->deadline_ms = now_ms + e->cfg.timeout_ms;
	}

	c = uuid_cmp(cand, &e->self);
	if (c == 0) {
		/*
		 * Our UUID back: a win only if this incarnation stood in this
		 * epoch and no larger candidate went past us meanwhile, which
		 * is best == self (best starts nil in each epoch and each
		 * life, so a restarted server never wins its old vote).
		 */
		if (e->abstain || uuid_cmp(&e->best, &e->self) != 0) {
			el_event(
			    e, EL_EV_DROP, from, cand, "own, not standing");
			return;
		}
		el_win(e, r, now_ms);
		return;
	}
	if (c > 0 || e->abstain) {
		/* a candidate below one already passed on cannot win */
		if (e->participant && uuid_cmp(cand, &e->best) < 0) {
			el_event(e, EL_EV_DROP, from, cand, "below best");
			return;
		}
		e->participant = true;
		if (uuid_cmp(cand, &e->best) > 0)
			e->best = *cand;
		el_event(e, EL_EV_FORWARD, from, cand, NULL);
		el_send_vote(e, r, now_ms, cand);
		return;
	}
	if (e->participant) {
		el_event(e, EL_EV_DROP, from, cand, NULL);
		return;
	}
	e->participant = true;
	e->best = e->self;
	el_event(e, EL_EV_REPLACE, from, cand, NULL);
	el_send_vote(e, r, now_ms, &e->self);
}

void
election_on_ack(struct election *e, struct ring *r, int64_t now_ms,
    const struct uuid *from, uint64_t epoch, uint64_t hop)
{
	struct el_pending *p;
	size_t i;

	(void)r;
	(void)now_ms;
	for (i = 0; i < EL_PENDING_MAX; i++) {
		p = &e->pending[i];
		if (p->used && p->hop == hop && p->epoch == epoch &&
		    uuid_cmp(&p->to, from) == 0) {
			p->used = false;
			return;
		}
	}
}

void
election_on_leader(struct election *e, struct ring *r, int64_t now_ms,
    const struct uuid *from, uint64_t epoch, const struct uuid *leader,
    uint64_t hop)
{
	(void)r;
	el_send(e, EL_SEND_ACK, from, epoch, NULL, hop);
	if (el_seen_before(e, true, from, epoch, leader, hop)) {
		e->dups++;
		return;
	}
	if (el_adopt(e, now_ms, epoch, leader) == 0)
		el_event(e, EL_EV_STALE, from, leader, "leader");
}

int
election_observe_leader(struct election *e, struct ring *r, int64_t now_ms,
    uint64_t epoch, const struct uuid *leader)
{
	(void)r;
	return el_adopt(e, now_ms, epoch, leader);
}

void
election_discover(struct election *e, int64_t now_ms, int64_t wait_ms)
{
	if (e->role == ROLE_STARTING)
		e->deadline_ms = now_ms + wait_ms;
}

/* A hop that was never acknowledged: its destination is presumed dead. */
static void
el_give_up(struct election *e, struct ring *r, int64_t now_ms,
    const struct el_pending *p)
{
	if (ring_set_alive(r, &p->to, false) == 1)
		el_event(e, EL_EV_MEMBER_DEAD, &p->to, &p->candidate,
		    p->is_leader_msg ? "leader" : "voting");
	/* a leader announcement to the dead is dropped; so is an old vote */
	if (p->is_leader_msg || p->epoch != e->epoch || e->has_leader)
		return;
	/*
	 * Ring repair: the vote goes on to the next live member.  When
	 * the dead one was the candidate itself the vote is void; only a
	 * server left alone then wins (one that abstains never does).
	 */
	if (uuid_cmp(&p->to, &p->candidate) == 0) {
		if (ring_next_live(r, &e->self) == NULL && !e->abstain)
			el_win(e, r, now_ms);
		return;
	}
	el_send_vote(e, r, now_ms, &p->candidate);
}

void
election_tick(struct election *e, struct ring *r, int64_t now_ms)
{
	struct el_pending *p, gone;
	size_t i;

	for (i = 0; i < EL_PENDING_MAX; i++) {
		p = &e->pending[i];
		if (!p->used || now_ms < p->next_ms)
			continue;
		if (p->tries < e->cfg.retries) {
			p->tries++;
			p->next_ms = now_ms + e->cfg.retry_ms;
			el_send(e,
			    p->is_leader_msg ? EL_SEND_LEADER : EL_SEND_VOTING,
			    &p->to, p->epoch, &p->candidate, p->hop);
			continue;
		}
		gone = *p;
		p->used = false;
		el_give_up(e, r, now_ms, &gone);
	}
	if ((e->role == ROLE_ELECTING || e->role == ROLE_STARTING) &&
	    now_ms >= e->deadline_ms) {
		el_event(e, EL_EV_TIMEOUT, &e->self, NULL,
		    e->role == ROLE_STARTING ? "no leader found"
					     : "election not over");
		election_start(e, r, now_ms,
		    e->role == ROLE_STARTING ? "discovery timeout"
					     : "election timeout",
		    e->abstain);
	}
}

int64_t
election_next_deadline(const struct election *e)
{
	int64_t t = e->deadline_ms;
	size_t i;

	for (i = 0; i < EL_PENDING_MAX; i++)
		if (e->pending[i].used && e->pending[i].next_ms < t)
			t = e->pending[i].next_ms;
	return t;
}

void
election_drain(struct election *e)
{
	e->nout = 0;
}

const char *
election_role_name(enum election_role role)
{
	switch (role) {
	case ROLE_STARTING:
		return "starting";
	case ROLE_ELECTING:
		return "electing";
	case ROLE_BACKUP:
		return "backup";
	case ROLE_LEADER:
		return "leader";
	}
	return "unknown";
}

const char *
election_event_name(enum el_event ev)
{
	switch (ev) {
	case EL_EV_START:
		return "election_start";
	case EL_EV_FORWARD:
		return "forward";
	case EL_EV_REPLACE:
		return "replace";
	case EL_EV_DROP:
		return "drop";
	case EL_EV_WIN:
		return "win";
	case EL_EV_ADOPT:
		return "adopt";
	case EL_EV_STEP_DOWN:
		return "step_down";
	case EL_EV_MEMBER_DEAD:
		return "member_down";
	case EL_EV_TIMEOUT:
		return "election_timeout";
	case EL_EV_ROLE:
		return "role";
	case EL_EV_STALE:
		return "stale";
	}
	return "unknown";
}
