/* test_heartbeat: unit tests for beats and the failure detector in
 * src/heartbeat.c. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "heartbeat.h"
#include "ring.h"

/* Beats every 100 ms; suspect after 3 missed (350 ms); 2 probes in 200. */
static const struct hb_cfg cfg = {
    .interval_ms = 100,
    .misses = 3,
    .probe_window_ms = 200,
    .probe_tries = 2,
    .dead_retry_ms = 1000,
};

#define T0	   10000 /* watching starts here */
#define SUSPECT_AT (T0 + 350)

static struct uuid
id(int n)
{
	struct uuid u;

	memset(&u, 0, sizeof(u));
	u.b[0] = (uint8_t)n;
	return u;
}

static void
ring_of(struct ring *r, int self, int n_others)
{
	struct member m;
	int i;

	memset(&m, 0, sizeof(m));
	m.uuid = id(self);
	ring_init(r, &m);
	for (i = 1; i <= n_others; i++) {
		m.uuid = id(self + i);
		assert_int_equal(ring_upsert(r, &m), 1);
	}
}

static void
watching(struct hb_follower *f)
{
	hb_follower_init(f, &cfg);
	hb_follower_watch(f, T0);
}

static void
follower_should_start_idle_and_never_act(void **state)
{
	struct hb_follower f;

	(void)state;
	hb_follower_init(&f, &cfg);
	assert_int_equal(f.state, HB_IDLE);
	assert_int_equal(hb_follower_tick(&f, 1000000), HB_NONE);
	assert_int_equal(hb_follower_next_deadline(&f), INT64_MAX);
	assert_int_equal(hb_follower_missed(&f, 1000000), 0);
	/* a beat while idle starts nothing */
	hb_follower_on_beat(&f, 5);
	assert_int_equal(f.state, HB_IDLE);
}

static void
follower_should_not_suspect_before_k_missed_beats_and_a_half(void **state)
{
	struct hb_follower f;

	(void)state;
	watching(&f);
	assert_int_equal(f.state, HB_OK);
	assert_int_equal(hb_follower_next_deadline(&f), SUSPECT_AT);
	assert_int_equal(hb_follower_tick(&f, T0 + 300), HB_NONE);
	assert_int_equal(hb_follower_tick(&f, SUSPECT_AT - 1), HB_NONE);
	assert_int_equal(f.state, HB_OK);
	assert_int_equal(f.suspicions, 0);
}

static void
follower_should_suspect_after_k_missed_beats_and_probe(void **state)
{
	struct hb_follower f;
	uint64_t id0;

	(void)state;
	watching(&f);
	id0 = f.probe_id;
	assert_int_equal(hb_follower_tick(&f, SUSPECT_AT), HB_PROBE);
	assert_int_equal(f.state, HB_SUSPECT);
	assert_int_equal(f.suspect_since_ms, SUSPECT_AT);
	assert_int_equal(f.suspicions, 1);
	assert_int_not_equal(f.probe_id, id0);
	assert_int_equal(f.probes_sent, 1);
}

static void
beats_should_keep_the_follower_from_suspecting(void **state)
{
	struct hb_follower f;
	int64_t t;

	(void)state;
	watching(&f);
	for (t = T0 + 100; t < T0 + 5000; t += 100) {
		assert_int_equal(hb_follower_tick(&f, t), HB_NONE);
		hb_follower_on_beat(&f, t);
	}
	assert_int_equal(f.suspicions, 0);
	assert_int_equal(hb_follower_next_deadline(&f), T0 + 4900 + 350);
}

static void
missed_should_count_whole_intervals_since_the_last_beat(void **state)
{
	struct hb_follower f;

	(void)state;
	watching(&f);
	assert_int_equal(hb_follower_missed(&f, T0), 0);
	assert_int_equal(hb_follower_missed(&f, T0 + 99), 0);
	assert_int_equal(hb_follower_missed(&f, T0 + 100), 1);
	assert_int_equal(hb_follower_missed(&f, T0 + 349), 3);
	hb_follower_on_beat(&f, T0 + 349);
	assert_int_equal(hb_follower_missed(&f, T0 + 400), 0);
	/* a clock that seems to go back does not count negative */
	assert_int_equal(hb_follower_missed(&f, T0), 0);
}

static void
probe_should_be_resent_within_the_window_with_the_same_id(void **state)
{
	struct hb_follower f;
	uint64_t pid;

	(void)state;
	watching(&f);
	assert_int_equal(hb_follower_tick(&f, SUSPECT_AT), HB_PROBE);
	pid = f.probe_id;
	/* 200 ms window, 2 tries: the second probe 100 ms later */
	assert_int_equal(hb_follower_next_deadline(&f), SUSPECT_AT + 100);
	assert_int_equal(hb_follower_tick(&f, SUSPECT_AT + 99), HB_NONE);
	assert_int_equal(hb_follower_tick(&f, SUSPECT_AT + 100), HB_PROBE);
	assert_int_equal(f.probe_id, pid);
	assert_int_equal(f.probes_sent, 2);
	/* no third probe: the next deadline is the end of the window */
	assert_int_equal(hb_follower_next_deadline(&f), SUSPECT_AT + 200);
	assert_int_equal(hb_follower_tick(&f, SUSPECT_AT + 150), HB_NONE);
}

static void
probeack_should_refute_the_suspicion(void **state)
{
	struct hb_follower f;

	(void)state;
	watching(&f);
	assert_int_equal(hb_follower_tick(&f, SUSPECT_AT), HB_PROBE);
	hb_follower_on_probeack(&f, SUSPECT_AT + 30, f.probe_id);
	assert_int_equal(f.state, HB_OK);
	assert_int_equal(f.last_beat_ms, SUSPECT_AT + 30);
	assert_int_equal(f.refuted, 1);
	assert_int_equal(hb_follower_tick(&f, SUSPECT_AT + 200), HB_NONE);
	assert_int_equal(hb_follower_next_deadline(&f), SUSPECT_AT + 30 + 350);
}

static void
probeack_for_another_probe_should_be_ignored(void **state)
{
	struct hb_follower f;

	(void)state;
	watching(&f);
	assert_int_equal(hb_follower_tick(&f, SUSPECT_AT), HB_PROBE);
	hb_follower_on_probeack(&f, SUSPECT_AT + 30, f.probe_id + 1);
	assert_int_equal(f.state, HB_SUSPECT);
	assert_int_equal(f.refuted, 0);
	/* nor does an answer count when nothing is suspected */
	hb_follower_watch(&f, T0);
	hb_follower_on_probeack(&f, T0 + 10, f.probe_id);
	assert_int_equal(f.last_beat_ms, T0);
	assert_int_equal(f.refuted, 0);
}

static void
beat_during_suspicion_should_refute_it(void **state)
{
	struct hb_follower f;

	(void)state;
	watching(&f);
	assert_int_equal(hb_follower_tick(&f, SUSPECT_AT), HB_PROBE);
	hb_follower_on_beat(&f, SUSPECT_AT + 50);
	assert_int_equal(f.state, HB_OK);
	assert_int_equal(f.refuted, 1);
	assert_int_equal(hb_follower_tick(&f, SUSPECT_AT + 200), HB_NONE);
}

static void
follower_should_declare_death_once_when_the_window_ends(void **state)
{
	struct hb_follower f;

	(void)state;
	watching(&f);
	assert_int_equal(hb_follower_tick(&f, SUSPECT_AT), HB_PROBE);
	assert_int_equal(hb_follower_tick(&f, SUSPECT_AT + 100), HB_PROBE);
	assert_int_equal(hb_follower_tick(&f, SUSPECT_AT + 199), HB_NONE);
	assert_int_equal(hb_follower_tick(&f, SUSPECT_AT + 200), HB_DEAD);
	assert_int_equal(f.state, HB_IDLE);
	assert_int_equal(hb_follower_tick(&f, SUSPECT_AT + 201), HB_NONE);
	assert_int_equal(hb_follower_tick(&f, SUSPECT_AT + 9999), HB_NONE);
	assert_int_equal(hb_follower_next_deadline(&f), INT64_MAX);
	/* a late answer does not bring the dead back */
	hb_follower_on_probeack(&f, SUSPECT_AT + 250, f.probe_id);
	assert_int_equal(f.state, HB_IDLE);
}

static void
late_tick_should_declare_death_without_probing_again(void **state)
{
	struct hb_follower f;

	(void)state;
	watching(&f);
	assert_int_equal(hb_follower_tick(&f, SUSPECT_AT), HB_PROBE);
	assert_int_equal(hb_follower_tick(&f, SUSPECT_AT + 5000), HB_DEAD);
}

static void
watching_again_after_death_should_use_a_new_probe_id(void **state)
{
	struct hb_follower f;
	uint64_t first;

	(void)state;
	watching(&f);
	assert_int_equal(hb_follower_tick(&f, SUSPECT_AT), HB_PROBE);
	first = f.probe_id;
	assert_int_equal(hb_follower_tick(&f, SUSPECT_AT + 200), HB_DEAD);
	hb_follower_watch(&f, 20000);
	assert_int_equal(f.state, HB_OK);
	assert_int_equal(hb_follower_tick(&f, 20349), HB_NONE);
	assert_int_equal(hb_follower_tick(&f, 20350), HB_PROBE);
	assert_int_not_equal(f.probe_id, first);
	assert_int_equal(f.suspicions, 2);
}

static void
stop_should_make_the_follower_idle(void **state)
{
	struct hb_follower f;

	(void)state;
	watching(&f);
	assert_int_equal(hb_follower_tick(&f, SUSPECT_AT), HB_PROBE);
	hb_follower_stop(&f);
	assert_int_equal(f.state, HB_IDLE);
	assert_int_equal(hb_follower_tick(&f, SUSPECT_AT + 500), HB_NONE);
	assert_int_equal(hb_follower_next_deadline(&f), INT64_MAX);
}

static void
leader_should_beat_at_once_then_every_interval(void **state)
{
	struct hb_leader l;

	(void)state;
	hb_leader_init(&l, &cfg);
	assert_false(l.active);
	assert_int_equal(hb_leader_tick(&l, 0), 0);
	assert_int_equal(hb_leader_next_deadline(&l), INT64_MAX);
	hb_leader_start(&l, 500);
	assert_int_equal(hb_leader_next_deadline(&l), 500);
	assert_int_equal(
	    hb_leader_tick(&l, 500), HB_ROUND_LIVE | HB_ROUND_DEAD);
	assert_int_equal(hb_leader_next_deadline(&l), 600);
	assert_int_equal(hb_leader_tick(&l, 599), 0);
	assert_int_equal(hb_leader_tick(&l, 600), HB_ROUND_LIVE);
	assert_int_equal(hb_leader_tick(&l, 700), HB_ROUND_LIVE);
	assert_int_equal(l.seq, 3);
}

static void
leader_should_beat_the_presumed_dead_every_dead_retry(void **state)
{
	struct hb_leader l;
	int64_t t;
	int dead_rounds = 0;

	(void)state;
	hb_leader_init(&l, &cfg);
	hb_leader_start(&l, 0);
	for (t = 0; t <= 3000; t += 100)
		if (hb_leader_tick(&l, t) & HB_ROUND_DEAD)
			dead_rounds++;
	/* at 0, 1000, 2000 and 3000 */
	assert_int_equal(dead_rounds, 4);
}

static void
leader_late_tick_should_not_send_a_burst_of_rounds(void **state)
{
	struct hb_leader l;

	(void)state;
	hb_leader_init(&l, &cfg);
	hb_leader_start(&l, 0);
	assert_int_not_equal(hb_leader_tick(&l, 0), 0);
	/* the loop stalled for a second: one round, then on schedule */
	assert_int_equal(
	    hb_leader_tick(&l, 1050) & HB_ROUND_LIVE, HB_ROUND_LIVE);
	assert_int_equal(hb_leader_tick(&l, 1051) & HB_ROUND_LIVE, 0);
	assert_int_equal(hb_leader_next_deadline(&l), 1150);
}

static void
stopped_leader_should_do_nothing(void **state)
{
	struct hb_leader l;
	struct ring r;
	struct uuid dead[4];

	(void)state;
	ring_of(&r, 1, 3);
	hb_leader_init(&l, &cfg);
	hb_leader_start(&l, 0);
	hb_leader_stop(&l);
	assert_int_equal(hb_leader_tick(&l, 100000), 0);
	assert_int_equal(hb_leader_next_deadline(&l), INT64_MAX);
	assert_int_equal(hb_leader_reap(&l, &r, 100000, dead, 4), 0);
	assert_int_equal(ring_live_count(&r), 4);
}

static void
reap_should_mark_silent_members_dead_but_never_self(void **state)
{
	struct hb_leader l;
	struct ring r;
	struct uuid dead[8], two = id(2), three = id(3);

	(void)state;
	ring_of(&r, 1, 3); /* self 1, members 2, 3, 4 */
	hb_leader_init(&l, &cfg);
	hb_leader_start(&l, 1000);
	ring_find(&r, &two)->last_seen_ms = 5000;
	ring_find(&r, &three)->last_seen_ms = 5300;
	/* at 5351, 2 has been silent 351 ms > 350; 4 since the start */
	assert_int_equal(hb_leader_reap(&l, &r, 5351, dead, 8), 2);
	assert_int_equal(uuid_cmp(&dead[0], &two), 0);
	assert_int_equal(dead[1].b[0], 4);
	assert_false(ring_find(&r, &two)->alive);
	assert_true(ring_find(&r, &three)->alive);
	assert_true(ring_self(&r)->alive);
	/* the dead are not reaped twice */
	assert_int_equal(hb_leader_reap(&l, &r, 5352, dead, 8), 0);
}

static void
reap_should_wait_the_full_limit(void **state)
{
	struct hb_leader l;
	struct ring r;
	struct uuid dead[8], two = id(2);

	(void)state;
	ring_of(&r, 1, 1);
	hb_leader_init(&l, &cfg);
	hb_leader_start(&l, 0);
	ring_find(&r, &two)->last_seen_ms = 1000;
	assert_int_equal(hb_leader_reap(&l, &r, 1350, dead, 8), 0);
	assert_int_equal(hb_leader_reap(&l, &r, 1351, dead, 8), 1);
}

static void
reap_should_count_silence_from_the_leader_start(void **state)
{
	struct hb_leader l;
	struct ring r;
	struct uuid dead[8], two = id(2);

	(void)state;
	ring_of(&r, 1, 2);
	/* 2 was heard long ago, 3 never: a new leader gives both time */
	ring_find(&r, &two)->last_seen_ms = 100;
	hb_leader_init(&l, &cfg);
	hb_leader_start(&l, 50000);
	assert_int_equal(hb_leader_reap(&l, &r, 50000, dead, 8), 0);
	assert_int_equal(hb_leader_reap(&l, &r, 50350, dead, 8), 0);
	assert_int_equal(hb_leader_reap(&l, &r, 50351, dead, 8), 2);
}

static void
reap_should_mark_no_more_than_it_can_report(void **state)
{
	struct hb_leader l;
	struct ring r;
	struct uuid dead[2];

	(void)state;
	ring_of(&r, 1, 5);
	hb_leader_init(&l, &cfg);
	hb_leader_start(&l, 0);
	assert_int_equal(hb_leader_reap(&l, &r, 10000, dead, 2), 2);
	assert_int_equal(ring_live_count(&r), 4);
	assert_int_equal(hb_leader_reap(&l, &r, 10000, dead, 2), 2);
	assert_int_equal(hb_leader_reap(&l, &r, 10000, dead, 2), 1);
	assert_int_equal(ring_live_count(&r), 1);
	assert_int_equal(hb_leader_reap(&l, &r, 10000, dead, 0), 0);
}

/* ---- probing the members believed dead ------------------------------ */

static void
revive_should_probe_at_once_then_every_dead_retry(void **state)
{
	struct hb_revive v;

	(void)state;
	hb_revive_init(&v, &cfg);
	assert_false(hb_revive_tick(&v, 5000));
	assert_int_equal(hb_revive_next_deadline(&v), INT64_MAX);
	hb_revive_start(&v, 5000);
	assert_int_equal(hb_revive_next_deadline(&v), 5000);
	assert_true(hb_revive_tick(&v, 5000));
	assert_false(hb_revive_tick(&v, 5000));
	assert_false(hb_revive_tick(&v, 5999));
	assert_int_equal(hb_revive_next_deadline(&v), 6000);
	assert_true(hb_revive_tick(&v, 6000));
	assert_int_equal(v.rounds, 2);
}

static void
revive_start_again_should_not_hasten_the_next_round(void **state)
{
	struct hb_revive v;

	(void)state;
	hb_revive_init(&v, &cfg);
	hb_revive_start(&v, 0);
	assert_true(hb_revive_tick(&v, 0));
	/* a backup becoming candidate, then backup again: no extra round */
	hb_revive_start(&v, 300);
	hb_revive_start(&v, 600);
	assert_false(hb_revive_tick(&v, 600));
	assert_int_equal(hb_revive_next_deadline(&v), 1000);
	/* stopped (it leads), then started (it stepped down): at once */
	hb_revive_stop(&v);
	assert_false(hb_revive_tick(&v, 1000));
	assert_int_equal(hb_revive_next_deadline(&v), INT64_MAX);
	hb_revive_start(&v, 1500);
	assert_true(hb_revive_tick(&v, 1500));
}

static void
revive_late_tick_should_not_send_a_burst_of_rounds(void **state)
{
	struct hb_revive v;

	(void)state;
	hb_revive_init(&v, &cfg);
	hb_revive_start(&v, 0);
	assert_true(hb_revive_tick(&v, 0));
	assert_true(hb_revive_tick(&v, 9500));
	assert_false(hb_revive_tick(&v, 9500));
	assert_int_equal(hb_revive_next_deadline(&v), 10500);
}

static void
revive_targets_should_be_the_dead_members_never_self(void **state)
{
	struct uuid out[RING_MAX], self = id(3), a = id(1), b = id(5);
	struct ring r;
	struct member m;

	(void)state;
	memset(&m, 0, sizeof(m));
	m.uuid = self;
	ring_init(&r, &m);
	assert_int_equal(hb_revive_targets(&r, out, RING_MAX), 0);
	m.uuid = a;
	assert_int_equal(ring_upsert(&r, &m), 1);
	m.uuid = b;
	assert_int_equal(ring_upsert(&r, &m), 1);
	m.uuid = id(4);
	assert_int_equal(ring_upsert(&r, &m), 1);
	assert_int_equal(hb_revive_targets(&r, out, RING_MAX), 0);
	assert_int_equal(ring_set_alive(&r, &b, false), 1);
	assert_int_equal(ring_set_alive(&r, &a, false), 1);
	/* self cannot be marked dead, and is never probed */
	assert_int_equal(ring_set_alive(&r, &self, false), 0);
	assert_int_equal(hb_revive_targets(&r, out, RING_MAX), 2);
	assert_int_equal(uuid_cmp(&out[0], &a), 0);
	assert_int_equal(uuid_cmp(&out[1], &b), 0);
	assert_int_equal(hb_revive_targets(&r, out, 1), 1);
	assert_int_equal(uuid_cmp(&out[0], &a), 0);
	/* heard again: no longer a target */
	assert_int_equal(ring_set_alive(&r, &a, true), 1);
	assert_int_equal(hb_revive_targets(&r, out, RING_MAX), 1);
	assert_int_equal(uuid_cmp(&out[0], &b), 0);
}

/* A liveness probe's answer carries id 0: it must never refute. */
static void
probeack_with_id_zero_should_never_refute(void **state)
{
	struct hb_follower f;

	(void)state;
	watching(&f);
	f.probe_id = UINT64_MAX; /* seeded so that the next one wraps */
	assert_int_equal(hb_follower_tick(&f, SUSPECT_AT), HB_PROBE);
	assert_int_equal(f.probe_id, 1);
	hb_follower_on_probeack(&f, SUSPECT_AT + 10, 0);
	assert_int_equal(f.state, HB_SUSPECT);
	assert_int_equal(f.refuted, 0);
	hb_follower_on_probeack(&f, SUSPECT_AT + 20, 1);
	assert_int_equal(f.state, HB_OK);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(follower_should_start_idle_and_never_act),
	    cmocka_unit_test(
		follower_should_not_suspect_before_k_missed_beats_and_a_half),
	    cmocka_unit_test(
		follower_should_suspect_after_k_missed_beats_and_probe),
	    cmocka_unit_test(beats_should_keep_the_follower_from_suspecting),
	    cmocka_unit_test(
		missed_should_count_whole_intervals_since_the_last_beat),
	    cmocka_unit_test(
		probe_should_be_resent_within_the_window_with_the_same_id),
	    cmocka_unit_test(probeack_should_refute_the_suspicion),
	    cmocka_unit_test(probeack_for_another_probe_should_be_ignored),
	    cmocka_unit_test(beat_during_suspicion_should_refute_it),
	    cmocka_unit_test(
		follower_should_declare_death_once_when_the_window_ends),
	    cmocka_unit_test(
		late_tick_should_declare_death_without_probing_again),
	    cmocka_unit_test(
		watching_again_after_death_should_use_a_new_probe_id),
	    cmocka_unit_test(stop_should_make_the_follower_idle),
	    cmocka_unit_test(leader_should_beat_at_once_then_every_interval),
	    cmocka_unit_test(
		leader_should_beat_the_presumed_dead_every_dead_retry),
	    cmocka_unit_test(
		leader_late_tick_should_not_send_a_burst_of_rounds),
	    cmocka_unit_test(stopped_leader_should_do_nothing),
	    cmocka_unit_test(
		reap_should_mark_silent_members_dead_but_never_self),
	    cmocka_unit_test(reap_should_wait_the_full_limit),
	    cmocka_unit_test(reap_should_count_silence_from_the_leader_start),
	    cmocka_unit_test(reap_should_mark_no_more_than_it_can_report),
	    cmocka_unit_test(revive_should_probe_at_once_then_every_dead_retry),
	    cmocka_unit_test(
		revive_start_again_should_not_hasten_the_next_round),
	    cmocka_unit_test(
		revive_late_tick_should_not_send_a_burst_of_rounds),
	    cmocka_unit_test(
		revive_targets_should_be_the_dead_members_never_self),
	    cmocka_unit_test(probeack_with_id_zero_should_never_refute),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
