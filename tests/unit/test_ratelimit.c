/* test_ratelimit: unit tests for the per-source budgets in src/ratelimit.c. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "ratelimit.h"

/* 100 failures a second, 20 at once: a token every 10 ms. */
static const struct ratelimit_cfg cfg = {.rate = 100, .burst = 20};

#define T0	  1000000
#define FLOODER	  0x4d00007fU /* 127.0.0.77 in network order */
#define BYSTANDER 0x0100007fU /* 127.0.0.1 */

static struct ratelimit *
fresh(void)
{
	static struct ratelimit rl;

	assert_int_equal(ratelimit_init(&rl, &cfg, 0x5eed), 0);
	return &rl;
}

/* Charges n failures at now; the number that reported going over. */
static int
fail_n(struct ratelimit *rl, uint32_t addr, int n, int64_t now)
{
	int i, went = 0;

	for (i = 0; i < n; i++)
		went += ratelimit_charge(rl, addr, now);
	return went;
}

static void
defaults_should_be_accepted(void **state)
{
	static struct ratelimit rl;
	struct ratelimit_cfg c;

	(void)state;
	ratelimit_cfg_defaults(&c);
	assert_true(c.rate > 0 && c.burst >= c.rate);
	assert_int_equal(ratelimit_init(&rl, &c, 1), 0);
}

static void
init_should_refuse_a_configuration_out_of_range(void **state)
{
	static struct ratelimit rl;
	struct ratelimit_cfg c = {.rate = 10, .burst = 0};

	(void)state;
	assert_int_equal(ratelimit_init(&rl, &c, 1), -1);
	c.burst = RATELIMIT_MAX + 1;
	assert_int_equal(ratelimit_init(&rl, &c, 1), -1);
	c.rate = RATELIMIT_MAX + 1;
	c.burst = 10;
	assert_int_equal(ratelimit_init(&rl, &c, 1), -1);
	c.rate = 0; /* off: the burst does not matter */
	c.burst = 0;
	assert_int_equal(ratelimit_init(&rl, &c, 1), 0);
}

static void
unknown_source_should_never_be_over(void **state)
{
	struct ratelimit *rl = fresh();

	(void)state;
	assert_false(ratelimit_over(rl, FLOODER, T0));
	assert_null(ratelimit_find(rl, FLOODER));
	assert_int_equal(rl->dropped, 0);
}

static void
source_should_go_over_with_the_last_failure_of_its_burst(void **state)
{
	struct ratelimit *rl = fresh();

	(void)state;
	assert_int_equal(fail_n(rl, FLOODER, 19, T0), 0);
	assert_false(ratelimit_over(rl, FLOODER, T0));
	assert_int_equal(ratelimit_charge(rl, FLOODER, T0), 1);
	assert_true(ratelimit_over(rl, FLOODER, T0));
	assert_int_equal(rl->charged, 20);
	assert_int_equal(rl->episodes, 1);
	assert_int_equal(ratelimit_count_over(rl, T0), 1);
}

static void
over_source_should_be_dropped_and_counted_others_not(void **state)
{
	struct ratelimit *rl = fresh();
	int i;

	(void)state;
	fail_n(rl, FLOODER, 20, T0);
	for (i = 0; i < 1000; i++)
		assert_true(ratelimit_over(rl, FLOODER, T0));
	assert_false(ratelimit_over(rl, BYSTANDER, T0));
	assert_int_equal(rl->dropped, 1000);
	assert_int_equal(ratelimit_find(rl, FLOODER)->dropped, 1000);
}

static void
flooder_should_stay_over_while_it_sends_faster_than_the_rate(void **state)
{
	struct ratelimit *rl = fresh();
	int64_t t;

	(void)state;
	fail_n(rl, FLOODER, 20, T0);
	/* One datagram every 9 ms for 10 s: never a whole token between. */
	for (t = T0; t < T0 + 10000; t += 9)
		assert_true(ratelimit_over(rl, FLOODER, t));
	assert_int_equal(rl->episodes, 1);
}

static void
source_should_be_heard_again_once_it_slows_to_its_rate(void **state)
{
	struct ratelimit *rl = fresh();

	(void)state;
	fail_n(rl, FLOODER, 20, T0);
	assert_true(ratelimit_over(rl, FLOODER, T0 + 5));
	/* 10 ms later a token is back: the next datagram is read. */
	assert_false(ratelimit_over(rl, FLOODER, T0 + 15));
	assert_int_equal(ratelimit_find(rl, FLOODER)->dropped, 0);
	/* Another failure spends it: over again, a second episode. */
	assert_int_equal(ratelimit_charge(rl, FLOODER, T0 + 15), 1);
	assert_true(ratelimit_over(rl, FLOODER, T0 + 16));
	assert_int_equal(rl->episodes, 2);
}

static void
bucket_should_refill_at_the_rate_up_to_the_burst(void **state)
{
	struct ratelimit *rl = fresh();

	(void)state;
	assert_int_equal(fail_n(rl, FLOODER, 10, T0), 0);
	/* 100 ms: 10 tokens back, 20 in all (the burst, not more). */
	assert_int_equal(fail_n(rl, FLOODER, 19, T0 + 100), 0);
	assert_int_equal(ratelimit_charge(rl, FLOODER, T0 + 100), 1);
	/* An hour later the bucket is full again, never fuller. */
	assert_false(ratelimit_over(rl, FLOODER, T0 + 3600000));
	assert_int_equal(fail_n(rl, FLOODER, 19, T0 + 3600000), 0);
	assert_int_equal(ratelimit_charge(rl, FLOODER, T0 + 3600000), 1);
}

static void
source_failing_at_its_rate_should_never_be_over(void **state)
{
	struct ratelimit *rl = fresh();
	int64_t t;

	(void)state;
	for (t = T0; t < T0 + 60000; t += 10) {
		assert_false(ratelimit_over(rl, FLOODER, t));
		assert_int_equal(ratelimit_charge(rl, FLOODER, t), 0);
	}
	assert_int_equal(rl->episodes, 0);
}

static void
count_over_should_forget_a_source_that_stopped(void **state)
{
	struct ratelimit *rl = fresh();
	int64_t end = T0 + RATELIMIT_HOLD_MS;

	(void)state;
	fail_n(rl, FLOODER, 20, T0);
	/* Held (unseen), then released with nothing earned meanwhile. */
	assert_int_equal(ratelimit_count_over(rl, end - 1), 1);
	ratelimit_tick(rl, end);
	assert_int_equal(ratelimit_count_over(rl, end + 9), 1);
	assert_int_equal(ratelimit_count_over(rl, end + 10), 0);
}

static void
going_over_should_hold_the_source_for_the_kernel_filter(void **state)
{
	struct ratelimit *rl = fresh();
	uint32_t held[4];
	uint64_t gen = rl->gen;

	(void)state;
	fail_n(rl, FLOODER, 19, T0);
	assert_int_equal(ratelimit_held(rl, held, 4), 0);
	assert_int_equal(rl->gen, gen);
	ratelimit_charge(rl, FLOODER, T0);
	assert_true(rl->gen != gen);
	assert_int_equal(ratelimit_held(rl, held, 4), 1);
	assert_int_equal(held[0], FLOODER);
}

static void
hold_should_end_on_time_and_earn_nothing(void **state)
{
	struct ratelimit *rl = fresh();
	int64_t end = T0 + RATELIMIT_HOLD_MS;
	uint32_t held[4];
	uint64_t gen;

	(void)state;
	fail_n(rl, FLOODER, 20, T0);
	gen = rl->gen;
	ratelimit_tick(rl, end - 1);
	assert_int_equal(rl->gen, gen);
	ratelimit_tick(rl, end);
	assert_true(rl->gen != gen);
	assert_int_equal(ratelimit_held(rl, held, 4), 0);
	/* Still flooding right after: over at once, and held again. */
	gen = rl->gen;
	assert_true(ratelimit_over(rl, FLOODER, end + 1));
	assert_true(rl->gen != gen);
	assert_int_equal(ratelimit_held(rl, held, 4), 1);
	assert_int_equal(rl->episodes, 1);
}

static void
source_that_stopped_should_be_heard_after_its_hold(void **state)
{
	struct ratelimit *rl = fresh();
	int64_t end = T0 + RATELIMIT_HOLD_MS;

	(void)state;
	fail_n(rl, FLOODER, 20, T0);
	ratelimit_tick(rl, end);
	assert_false(ratelimit_over(rl, FLOODER, end + 500));
	assert_int_equal(ratelimit_count_over(rl, end + 500), 0);
}

/*
 * A classic BPF interpreter for what ratelimit_filter emits, over a
 * datagram reduced to its source address and port (network order).
 */
static uint32_t
run_filter(const struct sock_filter *p, int n, uint32_t saddr, uint16_t sport)
{
	uint32_t a = 0;
	int pc = 0;

	while (pc < n) {
		const struct sock_filter *f = &p[pc];

		switch (f->code) {
		case BPF_LD | BPF_W | BPF_ABS:
			assert_int_equal(f->k, (uint32_t)(SKF_NET_OFF + 12));
			a = ntohl(saddr);
			pc++;
			break;
		case BPF_LD | BPF_H | BPF_ABS:
			assert_int_equal(f->k, 0); /* the UDP source port */
			a = ntohs(sport);
			pc++;
			break;
		case BPF_JMP | BPF_JEQ | BPF_K:
			pc += 1 + (a == f->k ? f->jt : f->jf);
			break;
		case BPF_RET | BPF_K:
			return f->k;
		default:
			fail_msg("unexpected BPF code %#x", f->code);
		}
	}
	fail_msg("the filter ran off its end");
	return 0;
}

static void
filter_should_drop_held_sources_and_keep_members_ports(void **state)
{
	static struct sock_filter prog[RATELIMIT_FILTER_MAX];
	const uint32_t held[] = {FLOODER, BYSTANDER, 0x0200000aU};
	const struct ratelimit_keep keep[] = {{BYSTANDER, htons(21005)},
	    {BYSTANDER, htons(21007)}, {0x0300000aU, htons(9)}};
	int n;

	(void)state;
	n = ratelimit_filter(held, 3, keep, 3, prog, RATELIMIT_FILTER_MAX);
	assert_true(n > 0);
	assert_int_equal(run_filter(prog, n, FLOODER, htons(4000)), 0);
	assert_int_equal(run_filter(prog, n, 0x0200000aU, htons(9)), 0);
	/* A member's own address and port pass; another port does not. */
	assert_int_not_equal(run_filter(prog, n, BYSTANDER, htons(21005)), 0);
	assert_int_not_equal(run_filter(prog, n, BYSTANDER, htons(21007)), 0);
	assert_int_equal(run_filter(prog, n, BYSTANDER, htons(21006)), 0);
	/* Sources not held pass, whatever their port. */
	assert_int_not_equal(run_filter(prog, n, 0x0300000aU, htons(1)), 0);
	assert_int_not_equal(run_filter(prog, n, 0x0900000aU, htons(1)), 0);
}

static void
filter_should_refuse_what_does_not_fit(void **state)
{
	static struct sock_filter prog[RATELIMIT_FILTER_MAX];
	static uint32_t held[RATELIMIT_FILTER_MAX];
	size_t i;
	int n;

	(void)state;
	for (i = 0; i < RATELIMIT_FILTER_MAX; i++)
		held[i] = htonl(0x0a000000U + (uint32_t)i);
	assert_int_equal(ratelimit_filter(held, RATELIMIT_FILTER_MAX, NULL, 0,
			     prog, RATELIMIT_FILTER_MAX),
	    -1);
	n = ratelimit_filter(
	    held, RATELIMIT_HELD_MAX, NULL, 0, prog, RATELIMIT_FILTER_MAX);
	assert_true(n > 0 && n <= RATELIMIT_FILTER_MAX);
	assert_int_equal(
	    run_filter(prog, n, held[RATELIMIT_HELD_MAX - 1], 1), 0);
	assert_int_not_equal(
	    run_filter(prog, n, held[RATELIMIT_HELD_MAX], 1), 0);
	/* Nothing held: a filter that accepts everything. */
	n = ratelimit_filter(held, 0, NULL, 0, prog, RATELIMIT_FILTER_MAX);
	assert_int_not_equal(run_filter(prog, n, held[0], 1), 0);
}

static void
limit_off_should_never_drop_or_remember(void **state)
{
	static struct ratelimit rl;
	struct ratelimit_cfg off = {.rate = 0, .burst = 0};

	(void)state;
	assert_int_equal(ratelimit_init(&rl, &off, 1), 0);
	assert_int_equal(fail_n(&rl, FLOODER, 100000, T0), 0);
	assert_false(ratelimit_over(&rl, FLOODER, T0));
	assert_null(ratelimit_find(&rl, FLOODER));
	assert_int_equal(ratelimit_count_over(&rl, T0), 0);
}

static void
table_should_stay_bounded_when_every_source_is_new(void **state)
{
	struct ratelimit *rl = fresh();
	uint32_t a;

	(void)state;
	/* 50,000 sources each over its budget: 4,096 remembered at most. */
	for (a = 1; a <= 50000; a++)
		fail_n(rl, a, 20, T0);
	assert_true(ratelimit_count_over(rl, T0) <= RATELIMIT_SLOTS);
	assert_true(ratelimit_count_over(rl, T0) > RATELIMIT_SLOTS / 2);
	assert_true(rl->evicted > 0);
	assert_int_equal(rl->episodes, 50000);
}

static void
flooder_should_outlive_a_spray_of_one_failure_sources(void **state)
{
	struct ratelimit *rl = fresh();
	uint32_t a;

	(void)state;
	fail_n(rl, FLOODER, 20, T0);
	/*
	 * A million spoofed sources, one failure each: they fill the table,
	 * but a source under its budget gives way before one over it.
	 */
	for (a = 0; a < 1000000; a++) {
		uint32_t src = 0x0a000000U + a * 7919U;

		if (src == FLOODER)
			continue;
		ratelimit_charge(rl, src, T0 + 1);
	}
	assert_true(ratelimit_over(rl, FLOODER, T0 + 2));
	assert_true(rl->evicted > 0);
}

static void
quiet_sources_should_give_way_before_recent_ones(void **state)
{
	struct ratelimit *rl = fresh();
	uint64_t before;
	uint32_t a;
	int kept = 0;

	(void)state;
	/* 4,096 sources long ago, each with a full bucket again by now. */
	for (a = 1; a <= RATELIMIT_SLOTS; a++)
		ratelimit_charge(rl, 0x0b000000U + a, T0);
	before = rl->evicted;
	fail_n(rl, FLOODER, 20, T0 + 100000);
	for (a = 1; a <= 2000; a++)
		ratelimit_charge(rl, 0x0c000000U + a, T0 + 100000);
	/* Forgetting a full bucket forgets nothing: hardly ever counted. */
	assert_true(rl->evicted - before < 50);
	assert_true(ratelimit_over(rl, FLOODER, T0 + 100001));
	for (a = 1; a <= 2000; a++)
		kept += ratelimit_find(rl, 0x0c000000U + a) != NULL;
	assert_true(kept > 1900);
}

static void
shared_bucket_should_allow_its_burst_then_its_rate(void **state)
{
	struct ratelimit_bucket b;
	int i, ok = 0;

	(void)state;
	ratelimit_bucket_init(&b, 1000, 100, T0);
	for (i = 0; i < 150; i++)
		ok += ratelimit_bucket_take(&b, T0);
	assert_int_equal(ok, 100);
	assert_int_equal(b.refused, 50);
	/* 1,000 a second: one a millisecond, never more than the burst. */
	ok = 0;
	for (i = 0; i < 1000; i++)
		ok += ratelimit_bucket_take(&b, T0 + 1 + i);
	assert_int_equal(ok, 1000);
	ok = 0;
	for (i = 0; i < 1000; i++)
		ok += ratelimit_bucket_take(&b, T0 + 3600000);
	assert_int_equal(ok, 100);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(defaults_should_be_accepted),
	    cmocka_unit_test(init_should_refuse_a_configuration_out_of_range),
	    cmocka_unit_test(unknown_source_should_never_be_over),
	    cmocka_unit_test(
		source_should_go_over_with_the_last_failure_of_its_burst),
	    cmocka_unit_test(
		over_source_should_be_dropped_and_counted_others_not),
	    cmocka_unit_test(
		flooder_should_stay_over_while_it_sends_faster_than_the_rate),
	    cmocka_unit_test(
		source_should_be_heard_again_once_it_slows_to_its_rate),
	    cmocka_unit_test(bucket_should_refill_at_the_rate_up_to_the_burst),
	    cmocka_unit_test(source_failing_at_its_rate_should_never_be_over),
	    cmocka_unit_test(count_over_should_forget_a_source_that_stopped),
	    cmocka_unit_test(
		going_over_should_hold_the_source_for_the_kernel_filter),
	    cmocka_unit_test(hold_should_end_on_time_and_earn_nothing),
	    cmocka_unit_test(
		source_that_stopped_should_be_heard_after_its_hold),
	    cmocka_unit_test(
		filter_should_drop_held_sources_and_keep_members_ports),
	    cmocka_unit_test(filter_should_refuse_what_does_not_fit),
	    cmocka_unit_test(
		shared_bucket_should_allow_its_burst_then_its_rate),
	    cmocka_unit_test(limit_off_should_never_drop_or_remember),
	    cmocka_unit_test(
		table_should_stay_bounded_when_every_source_is_new),
	    cmocka_unit_test(
		flooder_should_outlive_a_spray_of_one_failure_sources),
	    cmocka_unit_test(quiet_sources_should_give_way_before_recent_ones),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
