/* test_election: unit tests for the LCR election state machine in
 * src/election.c. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "election.h"
#include "ring.h"

static const struct election_cfg cfg = {
    .retry_ms = 100,
    .retries = 2,
    .timeout_ms = 5000,
};

/* UUIDs ordered by their first byte, which is n. */
static struct uuid
id(int n)
{
	struct uuid u;

	memset(&u, 0, sizeof(u));
	u.b[0] = (uint8_t)n;
	u.b[15] = 0x42;
	return u;
}

static void
assert_is(const struct uuid *u, int n)
{
	struct uuid v = id(n);

	assert_int_equal(uuid_cmp(u, &v), 0);
}

/* Self and the other members, all alive; the election at `epoch`. */
static void
setup(struct ring *r, struct election *e, int self, const int *others, size_t n,
    uint64_t epoch)
{
	struct member m;
	struct uuid me = id(self);
	size_t i;

	memset(&m, 0, sizeof(m));
	m.uuid = me;
	ring_init(r, &m);
	for (i = 0; i < n; i++) {
		m.uuid = id(others[i]);
		assert_int_equal(ring_upsert(r, &m), 1);
	}
	election_init(e, &me, &cfg, epoch);
}

static void
kill(struct ring *r, int n)
{
	struct uuid u = id(n);

	assert_int_equal(ring_set_alive(r, &u, false), 1);
}

/* The nth output of a type (0 = first), NULL when there are fewer. */
static const struct el_out *
out_of(const struct election *e, enum el_out_type t, size_t nth)
{
	size_t i;

	for (i = 0; i < e->nout; i++)
		if (e->out[i].type == t && nth-- == 0)
			return &e->out[i];
	return NULL;
}

static size_t
count_of(const struct election *e, enum el_out_type t)
{
	size_t i, k = 0;

	for (i = 0; i < e->nout; i++)
		if (e->out[i].type == t)
			k++;
	return k;
}

static const struct el_out *
event_of(const struct election *e, enum el_event ev)
{
	size_t i;

	for (i = 0; i < e->nout; i++)
		if (e->out[i].type == EL_EVENT && e->out[i].ev == ev)
			return &e->out[i];
	return NULL;
}

static void
voting(struct election *e, struct ring *r, int64_t now, int from,
    uint64_t epoch, int cand, uint64_t hop)
{
	struct uuid f = id(from), c = id(cand);

	election_on_voting(e, r, now, &f, epoch, &c, hop);
}

static void
leader(struct election *e, struct ring *r, int64_t now, int from,
    uint64_t epoch, int l, uint64_t hop)
{
	struct uuid f = id(from), u = id(l);

	election_on_leader(e, r, now, &f, epoch, &u, hop);
}

static int
observe(struct election *e, struct ring *r, int64_t now, uint64_t epoch, int l)
{
	struct uuid u = id(l);

	return election_observe_leader(e, r, now, epoch, &u);
}

static size_t
pending_count(const struct election *e)
{
	size_t i, k = 0;

	for (i = 0; i < EL_PENDING_MAX; i++)
		if (e->pending[i].used)
			k++;
	return k;
}

static void
init_should_start_without_leader_or_deadline(void **state)
{
	struct ring r;
	struct election e;

	(void)state;
	setup(&r, &e, 5, NULL, 0, 7);
	assert_int_equal(e.role, ROLE_STARTING);
	assert_int_equal(e.epoch, 7);
	assert_false(e.has_leader);
	assert_int_equal(e.deadline_ms, INT64_MAX);
	assert_int_equal(election_next_deadline(&e), INT64_MAX);
	assert_int_equal(e.nout, 0);
	/* nothing to do, however late */
	election_tick(&e, &r, INT64_MAX - 1);
	assert_int_equal(e.nout, 0);
}

static void
start_should_send_own_uuid_to_the_next_live_member(void **state)
{
	static const int others[] = {1, 7, 9};
	struct ring r;
	struct election e;
	const struct el_out *o;

	(void)state;
	setup(&r, &e, 5, others, 3, 4);
	kill(&r, 7);
	election_start(&e, &r, 1000, "test", false);
	assert_int_equal(e.epoch, 5);
	assert_int_equal(e.role, ROLE_ELECTING);
	assert_true(e.participant);
	assert_false(e.has_leader);
	assert_int_equal(e.deadline_ms, 1000 + cfg.timeout_ms);
	assert_int_equal(count_of(&e, EL_SEND_VOTING), 1);
	o = out_of(&e, EL_SEND_VOTING, 0);
	assert_is(&o->to, 9);
	assert_is(&o->candidate, 5);
	assert_int_equal(o->epoch, 5);
	assert_int_equal(e.votes_sent, 1);
	assert_int_equal(election_next_deadline(&e), 1000 + cfg.retry_ms);
}

static void
start_should_report_the_role_change_and_the_reason(void **state)
{
	static const int others[] = {9};
	struct ring r;
	struct election e;
	const struct el_out *o;

	(void)state;
	setup(&r, &e, 5, others, 1, 0);
	election_start(&e, &r, 0, "leader dead", false);
	o = event_of(&e, EL_EV_ROLE);
	assert_non_null(o);
	assert_int_equal(o->old_role, ROLE_STARTING);
	assert_int_equal(o->new_role, ROLE_ELECTING);
	o = event_of(&e, EL_EV_START);
	assert_non_null(o);
	assert_string_equal(o->detail, "leader dead");
	assert_int_equal(o->epoch, 1);
	/* starting again while electing: no role change to report */
	election_drain(&e);
	election_start(&e, &r, 10, "again", false);
	assert_null(event_of(&e, EL_EV_ROLE));
	assert_int_equal(e.epoch, 2);
}

static void
start_alone_should_win_at_once(void **state)
{
	static const int others[] = {9};
	struct ring r;
	struct election e;

	(void)state;
	setup(&r, &e, 5, others, 1, 0);
	kill(&r, 9);
	election_start(&e, &r, 0, "test", false);
	assert_int_equal(e.role, ROLE_LEADER);
	assert_true(e.has_leader);
	assert_is(&e.leader, 5);
	assert_int_equal(e.deadline_ms, INT64_MAX);
	assert_non_null(event_of(&e, EL_EV_WIN));
	assert_int_equal(count_of(&e, EL_SEND_VOTING), 0);
	/* the presumed dead are told too */
	assert_int_equal(count_of(&e, EL_SEND_LEADER), 1);
	assert_int_equal(count_of(&e, EL_BCAST_LEADER), 1);
}

static void
start_with_abstain_should_send_the_nil_candidate(void **state)
{
	static const int others[] = {1, 9};
	struct ring r;
	struct election e;
	const struct el_out *o;

	(void)state;
	setup(&r, &e, 5, others, 2, 3);
	election_start(&e, &r, 0, "quit", true);
	assert_true(e.abstain);
	o = out_of(&e, EL_SEND_VOTING, 0);
	assert_non_null(o);
	assert_is(&o->to, 9);
	assert_true(uuid_is_nil(&o->candidate));
}

static void
start_with_abstain_alone_should_not_win(void **state)
{
	struct ring r;
	struct election e;

	(void)state;
	setup(&r, &e, 5, NULL, 0, 3);
	election_start(&e, &r, 0, "quit", true);
	assert_int_equal(e.role, ROLE_ELECTING);
	assert_null(event_of(&e, EL_EV_WIN));
	assert_int_equal(count_of(&e, EL_SEND_VOTING), 0);
}

static void
voting_should_be_acknowledged_before_anything_else(void **state)
{
	static const int others[] = {1, 9};
	struct ring r;
	struct election e;
	const struct el_out *o;

	(void)state;
	setup(&r, &e, 5, others, 2, 0);
	voting(&e, &r, 0, 1, 1, 3, 77);
	o = &e.out[0];
	assert_int_equal(o->type, EL_SEND_ACK);
	assert_is(&o->to, 1);
	assert_int_equal(o->epoch, 1);
	assert_int_equal(o->hop, 77);
}

static void
voting_with_larger_candidate_should_be_forwarded(void **state)
{
	static const int others[] = {1, 9};
	struct ring r;
	struct election e;
	const struct el_out *o;

	(void)state;
	setup(&r, &e, 5, others, 2, 0);
	voting(&e, &r, 0, 1, 1, 9, 1);
	assert_non_null(event_of(&e, EL_EV_FORWARD));
	o = out_of(&e, EL_SEND_VOTING, 0);
	assert_non_null(o);
	assert_is(&o->candidate, 9);
	assert_is(&o->to, 9);
	assert_int_equal(o->epoch, 1);
	assert_true(e.participant);
	assert_int_equal(e.role, ROLE_ELECTING);
}

static void
smaller_candidate_should_be_replaced_by_a_non_participant(void **state)
{
	static const int others[] = {1, 9};
	struct ring r;
	struct election e;
	const struct el_out *o;

	(void)state;
	setup(&r, &e, 5, others, 2, 0);
	voting(&e, &r, 0, 1, 1, 1, 1);
	assert_non_null(event_of(&e, EL_EV_REPLACE));
	o = out_of(&e, EL_SEND_VOTING, 0);
	assert_non_null(o);
	assert_is(&o->candidate, 5);
	assert_true(e.participant);
}

static void
smaller_candidate_should_be_dropped_by_a_participant(void **state)
{
	static const int others[] = {1, 9};
	struct ring r;
	struct election e;

	(void)state;
	setup(&r, &e, 5, others, 2, 0);
	election_start(&e, &r, 0, "test", false);
	election_drain(&e);
	voting(&e, &r, 1, 1, 1, 1, 1);
	assert_non_null(event_of(&e, EL_EV_DROP));
	assert_int_equal(count_of(&e, EL_SEND_VOTING), 0);
	assert_int_equal(count_of(&e, EL_SEND_ACK), 1);
}

static void
voting_with_own_uuid_should_win_and_announce_to_every_member(void **state)
{
	static const int others[] = {1, 3, 5};
	struct ring r;
	struct election e;
	const struct el_out *o;
	size_t i;

	(void)state;
	setup(&r, &e, 9, others, 3, 0);
	kill(&r, 3);
	election_start(&e, &r, 0, "test", false);
	election_drain(&e);
	voting(&e, &r, 50, 1, 1, 9, 4);
	assert_non_null(event_of(&e, EL_EV_WIN));
	assert_int_equal(e.role, ROLE_LEADER);
	assert_is(&e.leader, 9);
	assert_int_equal(e.deadline_ms, INT64_MAX);
	/* to all, 3 too: it is thought dead but may be back */
	assert_int_equal(count_of(&e, EL_SEND_LEADER), 3);
	for (i = 0; i < 3; i++) {
		o = out_of(&e, EL_SEND_LEADER, i);
		assert_is(&o->candidate, 9);
		assert_int_equal(o->epoch, 1);
	}
	assert_is(&out_of(&e, EL_SEND_LEADER, 0)->to, 1);
	assert_is(&out_of(&e, EL_SEND_LEADER, 1)->to, 3);
	assert_is(&out_of(&e, EL_SEND_LEADER, 2)->to, 5);
	assert_int_equal(count_of(&e, EL_BCAST_LEADER), 1);
	assert_int_equal(e.leaders_sent, 3);
	/* the vote is no longer wanted; only the announcements are pending */
	assert_int_equal(pending_count(&e), 3);
}

static void
voting_of_an_older_epoch_should_be_acked_and_ignored(void **state)
{
	static const int others[] = {1, 9};
	struct ring r;
	struct election e;

	(void)state;
	setup(&r, &e, 5, others, 2, 6);
	voting(&e, &r, 0, 1, 5, 9, 1);
	assert_int_equal(count_of(&e, EL_SEND_ACK), 1);
	assert_non_null(event_of(&e, EL_EV_STALE));
	assert_int_equal(count_of(&e, EL_SEND_VOTING), 0);
	assert_int_equal(e.epoch, 6);
	assert_int_equal(e.role, ROLE_STARTING);
}

static void
voting_of_a_newer_epoch_should_join_it_afresh(void **state)
{
	static const int others[] = {1, 9};
	struct ring r;
	struct election e;

	(void)state;
	setup(&r, &e, 5, others, 2, 0);
	election_start(&e, &r, 0, "test", false); /* epoch 1, participant */
	election_drain(&e);
	voting(&e, &r, 100, 1, 4, 1, 1);
	assert_int_equal(e.epoch, 4);
	assert_int_equal(e.deadline_ms, 100 + cfg.timeout_ms);
	/* not a participant of epoch 4 yet: the smaller one is replaced */
	assert_non_null(event_of(&e, EL_EV_REPLACE));
	assert_int_equal(out_of(&e, EL_SEND_VOTING, 0)->epoch, 4);
}

static void
leader_receiving_voting_of_a_newer_epoch_should_step_down(void **state)
{
	static const int others[] = {1, 9};
	struct ring r;
	struct election e;
	const struct el_out *o;

	(void)state;
	setup(&r, &e, 5, others, 2, 2);
	assert_int_equal(observe(&e, &r, 0, 2, 5), 1);
	assert_int_equal(e.role, ROLE_LEADER);
	election_drain(&e);
	voting(&e, &r, 10, 1, 3, 9, 1);
	assert_non_null(event_of(&e, EL_EV_STEP_DOWN));
	o = event_of(&e, EL_EV_ROLE);
	assert_int_equal(o->old_role, ROLE_LEADER);
	assert_int_equal(o->new_role, ROLE_ELECTING);
	assert_false(e.has_leader);
	assert_int_equal(e.epoch, 3);
	assert_non_null(out_of(&e, EL_SEND_VOTING, 0));
}

static void
duplicate_hop_should_be_acked_but_not_processed_again(void **state)
{
	static const int others[] = {1, 9};
	struct ring r;
	struct election e;

	(void)state;
	setup(&r, &e, 5, others, 2, 0);
	voting(&e, &r, 0, 1, 1, 9, 42);
	assert_int_equal(count_of(&e, EL_SEND_VOTING), 1);
	election_drain(&e);
	voting(&e, &r, 5, 1, 1, 9, 42);
	assert_int_equal(e.nout, 1);
	assert_int_equal(e.out[0].type, EL_SEND_ACK);
	assert_int_equal(e.out[0].hop, 42);
	assert_int_equal(e.dups, 1);
	assert_int_equal(e.votes_sent, 1);
}

static void
same_hop_id_from_another_sender_or_epoch_should_be_processed(void **state)
{
	static const int others[] = {1, 3, 9};
	struct ring r;
	struct election e;

	(void)state;
	setup(&r, &e, 5, others, 3, 0);
	voting(&e, &r, 0, 1, 1, 9, 42);
	election_drain(&e);
	voting(&e, &r, 0, 3, 1, 9, 42);
	assert_int_equal(e.dups, 0);
	assert_non_null(event_of(&e, EL_EV_FORWARD));
	election_drain(&e);
	voting(&e, &r, 0, 1, 2, 9, 42);
	assert_int_equal(e.dups, 0);
	assert_int_equal(e.epoch, 2);
	assert_non_null(event_of(&e, EL_EV_FORWARD));
}

static void
duplicate_leader_message_should_be_acked_and_ignored(void **state)
{
	static const int others[] = {1, 9};
	struct ring r;
	struct election e;

	(void)state;
	setup(&r, &e, 5, others, 2, 0);
	leader(&e, &r, 0, 9, 1, 9, 8);
	assert_non_null(event_of(&e, EL_EV_ADOPT));
	election_drain(&e);
	leader(&e, &r, 0, 9, 1, 9, 8);
	assert_int_equal(e.nout, 1);
	assert_int_equal(e.out[0].type, EL_SEND_ACK);
	assert_int_equal(e.dups, 1);
}

static void
voting_in_an_epoch_with_a_known_leader_should_be_dropped(void **state)
{
	static const int others[] = {1, 9};
	struct ring r;
	struct election e;

	(void)state;
	setup(&r, &e, 5, others, 2, 0);
	assert_int_equal(observe(&e, &r, 0, 3, 1), 1);
	election_drain(&e);
	/* a second winner of epoch 3 would be a split brain */
	voting(&e, &r, 0, 1, 3, 9, 1);
	assert_int_equal(count_of(&e, EL_SEND_ACK), 1);
	assert_non_null(event_of(&e, EL_EV_DROP));
	assert_int_equal(count_of(&e, EL_SEND_VOTING), 0);
	assert_int_equal(e.role, ROLE_BACKUP);
	assert_is(&e.leader, 1);
}

static void
own_uuid_back_after_a_larger_candidate_passed_should_not_win(void **state)
{
	static const int others[] = {1, 9};
	struct ring r;
	struct election e;

	(void)state;
	setup(&r, &e, 5, others, 2, 0);
	election_start(&e, &r, 0, "test", false);
	voting(&e, &r, 1, 1, 1, 9, 1); /* 9 goes past us */
	election_drain(&e);
	voting(&e, &r, 2, 1, 1, 5, 2); /* then our own comes back */
	assert_null(event_of(&e, EL_EV_WIN));
	assert_non_null(event_of(&e, EL_EV_DROP));
	assert_int_equal(e.role, ROLE_ELECTING);
}

static void
restarted_server_should_not_win_the_vote_of_its_previous_life(void **state)
{
	static const int others[] = {1, 5};
	struct ring r;
	struct election e;

	(void)state;
	/* it stood in epoch 3, crashed, and came back with epoch 3 */
	setup(&r, &e, 9, others, 2, 3);
	voting(&e, &r, 0, 5, 3, 9, 1);
	assert_null(event_of(&e, EL_EV_WIN));
	assert_non_null(event_of(&e, EL_EV_DROP));
	assert_int_equal(e.role, ROLE_ELECTING);
	assert_int_equal(e.deadline_ms, cfg.timeout_ms);
}

static void
candidate_below_one_already_passed_on_should_be_dropped(void **state)
{
	static const int others[] = {1, 7, 9};
	struct ring r;
	struct election e;

	(void)state;
	setup(&r, &e, 3, others, 3, 0);
	voting(&e, &r, 0, 1, 1, 9, 1);
	election_drain(&e);
	voting(&e, &r, 0, 1, 1, 7, 2);
	assert_non_null(event_of(&e, EL_EV_DROP));
	assert_int_equal(count_of(&e, EL_SEND_VOTING), 0);
}

static void
vote_should_reach_a_candidate_believed_dead_not_skip_it(void **state)
{
	static const int others[] = {3, 5, 9};
	struct ring r;
	struct election e;
	const struct el_out *o;

	(void)state;
	setup(&r, &e, 7, others, 3, 0);
	kill(&r, 9);
	/* 9 stood, so it lives; passing it would circle the ring forever */
	voting(&e, &r, 0, 5, 1, 9, 1);
	o = out_of(&e, EL_SEND_VOTING, 0);
	assert_non_null(o);
	assert_is(&o->to, 9);
	/* a candidate further round the ring is not a detour */
	election_drain(&e);
	voting(&e, &r, 0, 5, 2, 8, 1);
	assert_is(&out_of(&e, EL_SEND_VOTING, 0)->to, 3);
}

static void
ack_should_clear_only_the_matching_pending_hop(void **state)
{
	static const int others[] = {1, 9};
	struct ring r;
	struct election e;
	struct uuid nine = id(9), one = id(1);
	uint64_t hop;

	(void)state;
	setup(&r, &e, 5, others, 2, 0);
	election_start(&e, &r, 0, "test", false);
	hop = out_of(&e, EL_SEND_VOTING, 0)->hop;
	election_on_ack(&e, &r, 1, &one, 1, hop);      /* wrong sender */
	election_on_ack(&e, &r, 1, &nine, 1, hop + 1); /* wrong hop */
	election_on_ack(&e, &r, 1, &nine, 0, hop);     /* wrong epoch */
	assert_int_equal(pending_count(&e), 1);
	election_on_ack(&e, &r, 1, &nine, 1, hop);
	assert_int_equal(pending_count(&e), 0);
	assert_int_equal(election_next_deadline(&e), cfg.timeout_ms);
}

static void
unacked_hop_should_be_resent_every_retry_period(void **state)
{
	static const int others[] = {1, 9};
	struct ring r;
	struct election e;
	uint64_t hop;

	(void)state;
	setup(&r, &e, 5, others, 2, 0);
	election_start(&e, &r, 0, "test", false);
	hop = out_of(&e, EL_SEND_VOTING, 0)->hop;
	election_drain(&e);
	election_tick(&e, &r, 99);
	assert_int_equal(count_of(&e, EL_SEND_VOTING), 0);
	election_tick(&e, &r, 100);
	assert_int_equal(count_of(&e, EL_SEND_VOTING), 1);
	assert_int_equal(out_of(&e, EL_SEND_VOTING, 0)->hop, hop);
	assert_int_equal(election_next_deadline(&e), 200);
	assert_int_equal(e.votes_sent, 2);
}

static void
unacked_vote_should_mark_the_neighbour_dead_and_go_round_it(void **state)
{
	static const int others[] = {1, 9};
	struct ring r;
	struct election e;
	const struct el_out *o;
	struct uuid nine = id(9);
	uint64_t hop;

	(void)state;
	setup(&r, &e, 5, others, 2, 0);
	election_start(&e, &r, 0, "test", false);
	hop = out_of(&e, EL_SEND_VOTING, 0)->hop;
	election_tick(&e, &r, 100);
	election_tick(&e, &r, 200);
	election_drain(&e);
	election_tick(&e, &r, 300); /* two resends unanswered */
	o = event_of(&e, EL_EV_MEMBER_DEAD);
	assert_non_null(o);
	assert_is(&o->to, 9);
	assert_false(ring_find(&r, &nine)->alive);
	o = out_of(&e, EL_SEND_VOTING, 0);
	assert_non_null(o);
	assert_is(&o->to, 1);
	assert_is(&o->candidate, 5);
	assert_int_not_equal(o->hop, hop);
	assert_int_equal(e.votes_sent, 4);
}

static void
ring_repair_with_no_live_member_left_should_win(void **state)
{
	static const int others[] = {9};
	struct ring r;
	struct election e;

	(void)state;
	setup(&r, &e, 5, others, 1, 0);
	election_start(&e, &r, 0, "test", false);
	election_tick(&e, &r, 100);
	election_tick(&e, &r, 200);
	election_tick(&e, &r, 300);
	assert_non_null(event_of(&e, EL_EV_MEMBER_DEAD));
	assert_non_null(event_of(&e, EL_EV_WIN));
	assert_int_equal(e.role, ROLE_LEADER);
}

static void
ring_repair_while_abstaining_should_never_win(void **state)
{
	static const int others[] = {9};
	struct ring r;
	struct election e;

	(void)state;
	setup(&r, &e, 5, others, 1, 0);
	election_start(&e, &r, 0, "quit", true);
	election_tick(&e, &r, 100);
	election_tick(&e, &r, 200);
	election_tick(&e, &r, 300);
	assert_non_null(event_of(&e, EL_EV_MEMBER_DEAD));
	assert_null(event_of(&e, EL_EV_WIN));
	assert_int_equal(e.role, ROLE_ELECTING);
}

static void
vote_whose_candidate_died_should_not_go_round_the_ring_again(void **state)
{
	static const int others[] = {1, 9};
	struct ring r;
	struct election e;

	(void)state;
	setup(&r, &e, 5, others, 2, 0);
	voting(&e, &r, 0, 1, 1, 9, 1); /* forwarded to 9 itself */
	assert_is(&out_of(&e, EL_SEND_VOTING, 0)->to, 9);
	election_tick(&e, &r, 100);
	election_tick(&e, &r, 200);
	election_drain(&e);
	election_tick(&e, &r, 300);
	assert_non_null(event_of(&e, EL_EV_MEMBER_DEAD));
	assert_int_equal(count_of(&e, EL_SEND_VOTING), 0);
	assert_null(event_of(&e, EL_EV_WIN));
	/* the election timeout restarts it */
	election_drain(&e);
	election_tick(&e, &r, cfg.timeout_ms);
	assert_non_null(event_of(&e, EL_EV_TIMEOUT));
	assert_int_equal(e.epoch, 2);
}

static void
unacked_leader_announcement_should_be_dropped_after_retries(void **state)
{
	static const int others[] = {1, 2};
	struct ring r;
	struct election e;
	struct uuid one = id(1), two = id(2);
	uint64_t hop1;

	(void)state;
	setup(&r, &e, 9, others, 2, 0);
	kill(&r, 1);
	kill(&r, 2);
	election_start(&e, &r, 0, "test", false); /* alone: wins */
	assert_int_equal(e.role, ROLE_LEADER);
	hop1 = out_of(&e, EL_SEND_LEADER, 0)->hop;
	ring_set_alive(&r, &one, true); /* 1 is back and answers */
	election_on_ack(&e, &r, 10, &one, 1, hop1);
	election_tick(&e, &r, 100);
	election_tick(&e, &r, 200);
	assert_int_equal(e.leaders_sent, 4);
	election_drain(&e);
	election_tick(&e, &r, 300);
	/* 2 was already thought dead: nothing new to report, nothing sent */
	assert_null(event_of(&e, EL_EV_MEMBER_DEAD));
	assert_int_equal(e.nout, 0);
	assert_int_equal(pending_count(&e), 0);
	assert_false(ring_find(&r, &two)->alive);
	assert_int_equal(e.role, ROLE_LEADER);
}

static void
leader_message_of_a_newer_epoch_should_be_acked_and_adopted(void **state)
{
	static const int others[] = {1, 9};
	struct ring r;
	struct election e;
	const struct el_out *o;

	(void)state;
	setup(&r, &e, 5, others, 2, 1);
	leader(&e, &r, 0, 1, 4, 1, 17);
	o = &e.out[0];
	assert_int_equal(o->type, EL_SEND_ACK);
	assert_int_equal(o->hop, 17);
	assert_is(&o->to, 1);
	o = event_of(&e, EL_EV_ADOPT);
	assert_non_null(o);
	assert_is(&o->candidate, 1);
	assert_int_equal(e.epoch, 4);
	assert_int_equal(e.role, ROLE_BACKUP);
	assert_is(&e.leader, 1);
	assert_false(e.participant);
	assert_int_equal(e.deadline_ms, INT64_MAX);
}

static void
leader_of_the_same_epoch_should_be_adopted_when_none_is_known(void **state)
{
	static const int others[] = {1, 9};
	struct ring r;
	struct election e;

	(void)state;
	setup(&r, &e, 5, others, 2, 0);
	election_start(&e, &r, 0, "test", false);
	election_drain(&e);
	/* a smaller winner whose vote went round us: take it */
	leader(&e, &r, 10, 1, 1, 1, 3);
	assert_non_null(event_of(&e, EL_EV_ADOPT));
	assert_int_equal(e.role, ROLE_BACKUP);
	assert_is(&e.leader, 1);
	/* and our own vote, no longer wanted, is not resent */
	assert_int_equal(pending_count(&e), 0);
}

static void
partition_heal_should_keep_the_higher_epoch_and_uuid_pair(void **state)
{
	static const int others[] = {1, 9};
	struct ring r;
	struct election e;

	(void)state;
	setup(&r, &e, 5, others, 2, 0);
	leader(&e, &r, 0, 1, 3, 1, 1);
	election_drain(&e);
	leader(&e, &r, 0, 9, 3, 9, 1);
	assert_non_null(event_of(&e, EL_EV_ADOPT));
	assert_is(&e.leader, 9);
	election_drain(&e);
	leader(&e, &r, 0, 1, 3, 1, 2);
	assert_non_null(event_of(&e, EL_EV_STALE));
	assert_is(&e.leader, 9);
	election_drain(&e);
	leader(&e, &r, 0, 1, 2, 1, 3);
	assert_int_equal(count_of(&e, EL_SEND_ACK), 1);
	assert_non_null(event_of(&e, EL_EV_STALE));
	assert_int_equal(e.epoch, 3);
	/* a newer epoch wins even with a smaller UUID */
	election_drain(&e);
	leader(&e, &r, 0, 1, 4, 1, 4);
	assert_is(&e.leader, 1);
	assert_int_equal(e.epoch, 4);
}

static void
leader_adopting_a_newer_leader_should_step_down(void **state)
{
	static const int others[] = {1, 9};
	struct ring r;
	struct election e;
	const struct el_out *o;

	(void)state;
	setup(&r, &e, 5, others, 2, 2);
	assert_int_equal(observe(&e, &r, 0, 2, 5), 1);
	election_drain(&e);
	leader(&e, &r, 0, 9, 2, 9, 1);
	assert_non_null(event_of(&e, EL_EV_STEP_DOWN));
	o = event_of(&e, EL_EV_ROLE);
	assert_int_equal(o->old_role, ROLE_LEADER);
	assert_int_equal(o->new_role, ROLE_BACKUP);
}

static void
adopting_should_cancel_the_votes_of_older_epochs(void **state)
{
	static const int others[] = {1, 9};
	struct ring r;
	struct election e;

	(void)state;
	setup(&r, &e, 5, others, 2, 0);
	election_start(&e, &r, 0, "test", false);
	assert_int_equal(pending_count(&e), 1);
	leader(&e, &r, 10, 9, 2, 9, 1);
	assert_int_equal(pending_count(&e), 0);
	election_drain(&e);
	election_tick(&e, &r, 1000);
	assert_int_equal(count_of(&e, EL_SEND_VOTING), 0);
}

static void
observe_leader_should_adopt_without_ack_and_tell_if_current(void **state)
{
	static const int others[] = {1, 9};
	struct ring r;
	struct election e;

	(void)state;
	setup(&r, &e, 5, others, 2, 2);
	assert_int_equal(observe(&e, &r, 0, 2, 9), 1);
	assert_int_equal(count_of(&e, EL_SEND_ACK), 0);
	assert_non_null(event_of(&e, EL_EV_ADOPT));
	assert_int_equal(e.role, ROLE_BACKUP);
	election_drain(&e);
	assert_int_equal(observe(&e, &r, 0, 2, 9), 1);
	assert_int_equal(e.nout, 0);
	assert_int_equal(observe(&e, &r, 0, 2, 1), 0);
	assert_int_equal(observe(&e, &r, 0, 1, 9), 0);
	assert_is(&e.leader, 9);
}

static void
observe_leader_naming_self_should_make_this_server_leader(void **state)
{
	static const int others[] = {1, 9};
	struct ring r;
	struct election e;

	(void)state;
	setup(&r, &e, 5, others, 2, 2);
	assert_int_equal(observe(&e, &r, 0, 3, 5), 1);
	assert_int_equal(e.role, ROLE_LEADER);
	assert_is(&e.leader, 5);
	assert_null(event_of(&e, EL_EV_STEP_DOWN));
}

static void
election_should_time_out_and_restart_with_the_next_epoch(void **state)
{
	static const int others[] = {1, 9};
	struct ring r;
	struct election e;
	struct uuid nine = id(9);
	const struct el_out *o;

	(void)state;
	setup(&r, &e, 5, others, 2, 0);
	election_start(&e, &r, 0, "test", false);
	election_on_ack(
	    &e, &r, 1, &nine, 1, out_of(&e, EL_SEND_VOTING, 0)->hop);
	election_drain(&e);
	assert_int_equal(election_next_deadline(&e), cfg.timeout_ms);
	election_tick(&e, &r, cfg.timeout_ms - 1);
	assert_int_equal(e.nout, 0);
	election_tick(&e, &r, cfg.timeout_ms);
	assert_non_null(event_of(&e, EL_EV_TIMEOUT));
	o = event_of(&e, EL_EV_START);
	assert_non_null(o);
	assert_int_equal(o->epoch, 2);
	assert_int_equal(e.epoch, 2);
	assert_int_equal(out_of(&e, EL_SEND_VOTING, 0)->epoch, 2);
	assert_int_equal(e.deadline_ms, 2 * cfg.timeout_ms);
}

static void
joined_election_should_time_out_too(void **state)
{
	static const int others[] = {1, 9};
	struct ring r;
	struct election e;

	(void)state;
	setup(&r, &e, 5, others, 2, 0);
	voting(&e, &r, 1000, 1, 6, 9, 1);
	election_drain(&e);
	election_tick(&e, &r, 1000 + cfg.timeout_ms);
	assert_non_null(event_of(&e, EL_EV_TIMEOUT));
	assert_int_equal(e.epoch, 7);
}

static void
starting_server_should_elect_when_discovery_finds_no_leader(void **state)
{
	static const int others[] = {1, 9};
	struct ring r;
	struct election e;

	(void)state;
	setup(&r, &e, 5, others, 2, 3);
	election_discover(&e, 100, 1000);
	assert_int_equal(election_next_deadline(&e), 1100);
	election_tick(&e, &r, 1099);
	assert_int_equal(e.nout, 0);
	election_tick(&e, &r, 1100);
	assert_non_null(event_of(&e, EL_EV_TIMEOUT));
	assert_int_equal(e.role, ROLE_ELECTING);
	assert_int_equal(e.epoch, 4);
}

static void
starting_server_that_learns_a_leader_should_not_elect(void **state)
{
	static const int others[] = {1, 9};
	struct ring r;
	struct election e;

	(void)state;
	setup(&r, &e, 5, others, 2, 3);
	election_discover(&e, 0, 1000);
	assert_int_equal(observe(&e, &r, 500, 3, 9), 1);
	election_drain(&e);
	election_tick(&e, &r, 5000);
	assert_int_equal(e.nout, 0);
	assert_int_equal(e.role, ROLE_BACKUP);
	/* and discovery means nothing outside ROLE_STARTING */
	election_discover(&e, 5000, 10);
	assert_int_equal(election_next_deadline(&e), INT64_MAX);
}

static void
outbox_should_hold_a_win_in_a_full_ring_and_count_overflow(void **state)
{
	int others[RING_MAX - 1];
	struct ring r;
	struct election e;
	size_t i;

	(void)state;
	for (i = 0; i < RING_MAX - 1; i++)
		others[i] = (int)i + 1;
	setup(&r, &e, 200, others, RING_MAX - 1, 0);
	for (i = 0; i < RING_MAX - 1; i++)
		kill(&r, (int)i + 1);
	election_start(&e, &r, 0, "test", false);
	assert_int_equal(count_of(&e, EL_SEND_LEADER), RING_MAX - 1);
	assert_int_equal(e.out_overflow, 0);
	assert_int_equal(e.pending_overflow, 0);
	/* never drained: the outbox stops at its size and counts the rest */
	for (i = 0; i < EL_OUT_MAX; i++)
		voting(&e, &r, 0, 1, 0, 1, i);
	assert_int_equal(e.nout, EL_OUT_MAX);
	assert_true(e.out_overflow > 0);
}

static void
names_should_exist_for_every_role_and_event(void **state)
{
	int i;

	(void)state;
	for (i = ROLE_STARTING; i <= ROLE_LEADER; i++)
		assert_string_not_equal(
		    election_role_name((enum election_role)i), "unknown");
	for (i = EL_EV_START; i <= EL_EV_STALE; i++)
		assert_string_not_equal(
		    election_event_name((enum el_event)i), "unknown");
	assert_string_equal(election_role_name(ROLE_BACKUP), "backup");
}

/*
 * A few servers wired together in the test: every datagram is delivered
 * at once, in order, to servers that are up.
 */
#define NET_MAX 8

struct net {
	int n;
	int ids[NET_MAX];
	bool down[NET_MAX];
	struct ring r[NET_MAX];
	struct election e[NET_MAX];
};

static void
net_init(struct net *net, const int *ids, int n)
{
	int i, j, k;
	int others[NET_MAX];

	memset(net, 0, sizeof(*net));
	net->n = n;
	for (i = 0; i < n; i++) {
		net->ids[i] = ids[i];
		for (j = 0, k = 0; j < n; j++)
			if (j != i)
				others[k++] = ids[j];
		setup(&net->r[i], &net->e[i], ids[i], others, (size_t)k, 0);
	}
}

static int
net_index(const struct net *net, const struct uuid *u)
{
	int i;

	for (i = 0; i < net->n; i++) {
		struct uuid v = id(net->ids[i]);

		if (uuid_cmp(&v, u) == 0)
			return i;
	}
	fail_msg("datagram to a stranger");
	return -1;
}

/* Delivers until nobody has anything left to say. */
static void
net_run(struct net *net, int64_t now)
{
	struct el_out q[1024];
	int from[1024];
	size_t head = 0, tail = 0, k;
	struct uuid f;
	int i, to;
	bool more = true;

	while (more || head < tail) {
		more = false;
		for (i = 0; i < net->n; i++) {
			for (k = 0; k < net->e[i].nout; k++) {
				if (net->e[i].out[k].type == EL_EVENT ||
				    net->e[i].out[k].type == EL_BCAST_LEADER)
					continue;
				assert_true(tail < 1024);
				from[tail] = i;
				q[tail++] = net->e[i].out[k];
			}
			election_drain(&net->e[i]);
		}
		if (head == tail)
			break;
		to = net_index(net, &q[head].to);
		f = id(net->ids[from[head]]);
		if (!net->down[to]) {
			if (q[head].type == EL_SEND_VOTING)
				election_on_voting(&net->e[to], &net->r[to],
				    now, &f, q[head].epoch, &q[head].candidate,
				    q[head].hop);
			else if (q[head].type == EL_SEND_LEADER)
				election_on_leader(&net->e[to], &net->r[to],
				    now, &f, q[head].epoch, &q[head].candidate,
				    q[head].hop);
			else
				election_on_ack(&net->e[to], &net->r[to], now,
				    &f, q[head].epoch, q[head].hop);
		}
		head++;
		more = true;
	}
}

static uint64_t
net_votes(const struct net *net)
{
	uint64_t v = 0;
	int i;

	for (i = 0; i < net->n; i++)
		v += net->e[i].votes_sent;
	return v;
}

static void
assert_all_follow(const struct net *net, int lead, uint64_t epoch)
{
	int i;

	for (i = 0; i < net->n; i++) {
		if (net->down[i])
			continue;
		assert_int_equal(net->e[i].role,
		    net->ids[i] == lead ? ROLE_LEADER : ROLE_BACKUP);
		assert_is(&net->e[i].leader, lead);
		assert_int_equal(net->e[i].epoch, epoch);
	}
}

static void
one_initiator_should_elect_the_highest_in_2n_minus_1_votes(void **state)
{
	static const int ids[] = {10, 20, 30, 40, 50, 60};
	struct net net;
	uint64_t leaders = 0;
	int i;

	(void)state;
	net_init(&net, ids, 6);
	election_start(&net.e[1], &net.r[1], 0, "test", false);
	net_run(&net, 0);
	assert_all_follow(&net, 60, 1);
	/* 20 -> 30 -> 40 -> 50 -> 60 replaced, then 60 once round */
	assert_int_equal(net_votes(&net), 4 + 6);
	assert_true(net_votes(&net) <= 2 * 6 - 1);
	for (i = 0; i < net.n; i++)
		leaders += net.e[i].leaders_sent;
	assert_int_equal(leaders, 5);
}

static void
all_initiating_at_once_should_elect_the_highest(void **state)
{
	static const int ids[] = {10, 20, 30, 40, 50};
	struct net net;
	int i;

	(void)state;
	net_init(&net, ids, 5);
	for (i = 0; i < net.n; i++)
		election_start(&net.e[i], &net.r[i], 0, "test", false);
	net_run(&net, 0);
	assert_all_follow(&net, 50, 1);
	assert_true(net_votes(&net) <= 5 * 6 / 2);
}

static void
abstaining_leader_should_hand_over_to_the_highest_other(void **state)
{
	static const int ids[] = {10, 20, 30, 40};
	struct net net;
	int i;

	(void)state;
	net_init(&net, ids, 4);
	election_start(&net.e[0], &net.r[0], 0, "test", false);
	net_run(&net, 0);
	assert_all_follow(&net, 40, 1);
	election_start(&net.e[3], &net.r[3], 10, "quit", true);
	net_run(&net, 10);
	assert_all_follow(&net, 30, 2);
	for (i = 0; i < net.n; i++)
		assert_false(net.e[i].role == ROLE_LEADER && i == 3);
}

static void
dead_neighbour_should_be_routed_around_to_finish_the_election(void **state)
{
	static const int ids[] = {10, 20, 30, 40};
	struct net net;
	int i;

	(void)state;
	net_init(&net, ids, 4);
	net.down[3] = true; /* 40, the highest, is gone */
	election_start(&net.e[0], &net.r[0], 0, "leader dead", false);
	net_run(&net, 0);
	/* 30 cannot hand its vote to 40: retries, then round it */
	for (i = 1; i <= 3; i++) {
		election_tick(&net.e[2], &net.r[2], 100 * i);
		net_run(&net, 100 * i);
	}
	assert_int_equal(net.e[2].role, ROLE_LEADER);
	assert_all_follow(&net, 30, 1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(init_should_start_without_leader_or_deadline),
	    cmocka_unit_test(
		start_should_send_own_uuid_to_the_next_live_member),
	    cmocka_unit_test(
		start_should_report_the_role_change_and_the_reason),
	    cmocka_unit_test(start_alone_should_win_at_once),
	    cmocka_unit_test(start_with_abstain_should_send_the_nil_candidate),
	    cmocka_unit_test(start_with_abstain_alone_should_not_win),
	    cmocka_unit_test(
		voting_should_be_acknowledged_before_anything_else),
	    cmocka_unit_test(voting_with_larger_candidate_should_be_forwarded),
	    cmocka_unit_test(
		smaller_candidate_should_be_replaced_by_a_non_participant),
	    cmocka_unit_test(
		smaller_candidate_should_be_dropped_by_a_participant),
	    cmocka_unit_test(
		voting_with_own_uuid_should_win_and_announce_to_every_member),
	    cmocka_unit_test(
		voting_of_an_older_epoch_should_be_acked_and_ignored),
	    cmocka_unit_test(voting_of_a_newer_epoch_should_join_it_afresh),
	    cmocka_unit_test(
		leader_receiving_voting_of_a_newer_epoch_should_step_down),
	    cmocka_unit_test(
		duplicate_hop_should_be_acked_but_not_processed_again),
	    cmocka_unit_test(
		same_hop_id_from_another_sender_or_epoch_should_be_processed),
	    cmocka_unit_test(
		duplicate_leader_message_should_be_acked_and_ignored),
	    cmocka_unit_test(
		voting_in_an_epoch_with_a_known_leader_should_be_dropped),
	    cmocka_unit_test(
		own_uuid_back_after_a_larger_candidate_passed_should_not_win),
	    cmocka_unit_test(
		restarted_server_should_not_win_the_vote_of_its_previous_life),
	    cmocka_unit_test(
		candidate_below_one_already_passed_on_should_be_dropped),
	    cmocka_unit_test(
		vote_should_reach_a_candidate_believed_dead_not_skip_it),
	    cmocka_unit_test(ack_should_clear_only_the_matching_pending_hop),
	    cmocka_unit_test(unacked_hop_should_be_resent_every_retry_period),
	    cmocka_unit_test(
		unacked_vote_should_mark_the_neighbour_dead_and_go_round_it),
	    cmocka_unit_test(ring_repair_with_no_live_member_left_should_win),
	    cmocka_unit_test(ring_repair_while_abstaining_should_never_win),
	    cmocka_unit_test(
		vote_whose_candidate_died_should_not_go_round_the_ring_again),
	    cmocka_unit_test(
		unacked_leader_announcement_should_be_dropped_after_retries),
	    cmocka_unit_test(
		leader_message_of_a_newer_epoch_should_be_acked_and_adopted),
	    cmocka_unit_test(
		leader_of_the_same_epoch_should_be_adopted_when_none_is_known),
	    cmocka_unit_test(
		partition_heal_should_keep_the_higher_epoch_and_uuid_pair),
	    cmocka_unit_test(leader_adopting_a_newer_leader_should_step_down),
	    cmocka_unit_test(adopting_should_cancel_the_votes_of_older_epochs),
	    cmocka_unit_test(
		observe_leader_should_adopt_without_ack_and_tell_if_current),
	    cmocka_unit_test(
		observe_leader_naming_self_should_make_this_server_leader),
	    cmocka_unit_test(
		election_should_time_out_and_restart_with_the_next_epoch),
	    cmocka_unit_test(joined_election_should_time_out_too),
	    cmocka_unit_test(
		starting_server_should_elect_when_discovery_finds_no_leader),
	    cmocka_unit_test(
		starting_server_that_learns_a_leader_should_not_elect),
	    cmocka_unit_test(
		outbox_should_hold_a_win_in_a_full_ring_and_count_overflow),
	    cmocka_unit_test(names_should_exist_for_every_role_and_event),
	    cmocka_unit_test(
		one_initiator_should_elect_the_highest_in_2n_minus_1_votes),
	    cmocka_unit_test(all_initiating_at_once_should_elect_the_highest),
	    cmocka_unit_test(
		abstaining_leader_should_hand_over_to_the_highest_other),
	    cmocka_unit_test(
		dead_neighbour_should_be_routed_around_to_finish_the_election),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
