/* test_ring: unit tests for the membership table in src/ring.c. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "ring.h"

/* UUIDs ordered by their first byte, which is n. */
static struct uuid
id(int n)
{
	struct uuid u;

	memset(&u, 0, sizeof(u));
	u.b[0] = (uint8_t)n;
	u.b[15] = 0x11;
	return u;
}

static struct member
mem(int n)
{
	struct member m;

	memset(&m, 0, sizeof(m));
	m.uuid = id(n);
	snprintf(m.name, sizeof(m.name), "srv%d", n);
	snprintf(m.addr, sizeof(m.addr), "10.0.0.%d", n & 0xff);
	m.port = (uint16_t)(7000 + n);
	m.ctl_port = (uint16_t)(8000 + n);
	return m;
}

/* A ring of self and the given others, all alive. */
static void
ring_of(struct ring *r, int self, const int *others, size_t n)
{
	struct member m = mem(self);
	size_t i;

	ring_init(r, &m);
	for (i = 0; i < n; i++) {
		m = mem(others[i]);
		assert_int_equal(ring_upsert(r, &m), 1);
	}
}

static void
assert_is(const struct member *m, int n)
{
	struct uuid u = id(n);

	assert_non_null(m);
	assert_int_equal(uuid_cmp(&m->uuid, &u), 0);
}

static void
init_should_hold_only_self_alive(void **state)
{
	struct ring r;
	struct member self = mem(5);

	(void)state;
	ring_init(&r, &self);
	assert_int_equal(r.n, 1);
	assert_true(r.m[0].alive);
	assert_int_equal(uuid_cmp(&r.self, &self.uuid), 0);
	assert_is(ring_self(&r), 5);
	assert_string_equal(ring_self(&r)->name, "srv5");
	assert_int_equal(ring_live_count(&r), 1);
}

static void
upsert_should_keep_members_sorted_by_uuid(void **state)
{
	static const int others[] = {9, 1, 7, 3, 200, 0};
	struct ring r;
	size_t i;

	(void)state;
	ring_of(&r, 5, others, 6);
	assert_int_equal(r.n, 7);
	for (i = 1; i < r.n; i++)
		assert_true(uuid_cmp(&r.m[i - 1].uuid, &r.m[i].uuid) < 0);
	assert_is(&r.m[0], 0);
	assert_is(&r.m[6], 200);
}

static void
upsert_should_say_new_then_known_then_full(void **state)
{
	struct ring r;
	struct member m;
	int i;

	(void)state;
	m = mem(0);
	ring_init(&r, &m);
	for (i = 1; i < RING_MAX; i++) {
		m = mem(i);
		assert_int_equal(ring_upsert(&r, &m), 1);
	}
	m = mem(3);
	assert_int_equal(ring_upsert(&r, &m), 0);
	m = mem(RING_MAX + 1);
	assert_int_equal(ring_upsert(&r, &m), -1);
	assert_int_equal(r.n, RING_MAX);
	/* a known member is still updated when the ring is full */
	m = mem(3);
	m.port = 1;
	assert_int_equal(ring_upsert(&r, &m), 0);
	assert_int_equal(ring_find(&r, &m.uuid)->port, 1);
}

static void
upsert_should_update_info_and_revive_but_keep_last_seen(void **state)
{
	static const int others[] = {2};
	struct ring r;
	struct member m = mem(2), *p;

	(void)state;
	ring_of(&r, 1, others, 1);
	p = ring_find(&r, &m.uuid);
	p->last_seen_ms = 1234;
	p->last_seen_wall = 99;
	assert_int_equal(ring_set_alive(&r, &m.uuid, false), 1);

	strlcpy(m.name, "renamed", sizeof(m.name));
	strlcpy(m.addr, "192.168.1.9", sizeof(m.addr));
	m.port = 1;
	m.ctl_port = 2;
	m.last_seen_ms = 1;
	m.last_seen_wall = 1;
	assert_int_equal(ring_upsert(&r, &m), 0);
	p = ring_find(&r, &m.uuid);
	assert_true(p->alive);
	assert_string_equal(p->name, "renamed");
	assert_string_equal(p->addr, "192.168.1.9");
	assert_int_equal(p->port, 1);
	assert_int_equal(p->ctl_port, 2);
	assert_int_equal(p->last_seen_ms, 1234);
	assert_int_equal(p->last_seen_wall, 99);
}

static void
upsert_should_terminate_unterminated_strings(void **state)
{
	struct ring r;
	struct member m = mem(2), self = mem(1);
	const struct member *p;

	(void)state;
	ring_init(&r, &self);
	memset(m.name, 'x', sizeof(m.name));
	memset(m.addr, '9', sizeof(m.addr));
	assert_int_equal(ring_upsert(&r, &m), 1);
	p = ring_find_const(&r, &m.uuid);
	assert_int_equal(strlen(p->name), RING_NAME_MAX - 1);
	assert_int_equal(strlen(p->addr), RING_ADDR_MAX - 1);
}

static void
find_should_return_null_for_an_unknown_uuid(void **state)
{
	static const int others[] = {2, 4};
	struct ring r;
	struct uuid u = id(3);

	(void)state;
	ring_of(&r, 1, others, 2);
	assert_null(ring_find(&r, &u));
	assert_null(ring_find_const(&r, &u));
	u = id(4);
	assert_is(ring_find(&r, &u), 4);
}

static void
set_alive_should_report_changes_and_unknown_members(void **state)
{
	static const int others[] = {2};
	struct ring r;
	struct uuid two = id(2), nine = id(9);

	(void)state;
	ring_of(&r, 1, others, 1);
	assert_int_equal(ring_set_alive(&r, &two, true), 0);
	assert_int_equal(ring_set_alive(&r, &two, false), 1);
	assert_int_equal(ring_set_alive(&r, &two, false), 0);
	assert_false(ring_find(&r, &two)->alive);
	assert_int_equal(ring_set_alive(&r, &two, true), 1);
	assert_int_equal(ring_set_alive(&r, &nine, true), -1);
}

static void
set_alive_should_never_mark_self_dead(void **state)
{
	struct ring r;
	struct member self = mem(1);

	(void)state;
	ring_init(&r, &self);
	assert_int_equal(ring_set_alive(&r, &self.uuid, false), 0);
	assert_true(ring_self(&r)->alive);
}

static void
next_live_should_follow_uuid_order_and_wrap_around(void **state)
{
	static const int others[] = {1, 5, 9};
	struct ring r;
	struct uuid u;

	(void)state;
	ring_of(&r, 3, others, 3);
	u = id(3);
	assert_is(ring_next_live(&r, &u), 5);
	u = id(5);
	assert_is(ring_next_live(&r, &u), 9);
	u = id(9);
	assert_is(ring_next_live(&r, &u), 1);
	u = id(1);
	assert_is(ring_next_live(&r, &u), 3);
}

static void
next_live_should_skip_dead_members(void **state)
{
	static const int others[] = {1, 5, 9};
	struct ring r;
	struct uuid u = id(5), v = id(9), self = id(3);

	(void)state;
	ring_of(&r, 3, others, 3);
	ring_set_alive(&r, &u, false);
	ring_set_alive(&r, &v, false);
	assert_is(ring_next_live(&r, &self), 1);
	u = id(1);
	assert_is(ring_next_live(&r, &u), 3);
}

static void
next_live_should_work_from_a_uuid_that_is_not_a_member(void **state)
{
	static const int others[] = {1, 5, 9};
	struct ring r;
	struct uuid u;

	(void)state;
	ring_of(&r, 3, others, 3);
	u = id(4);
	assert_is(ring_next_live(&r, &u), 5);
	u = id(250);
	assert_is(ring_next_live(&r, &u), 1);
	u = id(0);
	assert_is(ring_next_live(&r, &u), 1);
}

static void
next_live_should_skip_u_even_when_it_is_the_only_other(void **state)
{
	static const int others[] = {7};
	struct ring r;
	struct uuid seven = id(7), self = id(3);

	(void)state;
	ring_of(&r, 3, others, 1);
	/* from a member, its neighbour is self */
	assert_is(ring_next_live(&r, &seven), 3);
	assert_is(ring_next_live(&r, &self), 7);
	ring_set_alive(&r, &seven, false);
	assert_null(ring_next_live(&r, &self));
}

static void
next_live_should_be_null_for_a_lone_server(void **state)
{
	struct ring r;
	struct member self = mem(3);

	(void)state;
	ring_init(&r, &self);
	assert_null(ring_next_live(&r, &self.uuid));
}

static void
live_count_and_highest_live_should_ignore_dead_members(void **state)
{
	static const int others[] = {1, 5, 9};
	struct ring r;
	struct uuid nine = id(9), five = id(5);

	(void)state;
	ring_of(&r, 3, others, 3);
	assert_int_equal(ring_live_count(&r), 4);
	assert_is(ring_highest_live(&r), 9);
	ring_set_alive(&r, &nine, false);
	assert_int_equal(ring_live_count(&r), 3);
	assert_is(ring_highest_live(&r), 5);
	ring_set_alive(&r, &five, false);
	/* self counts */
	assert_is(ring_highest_live(&r), 3);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(init_should_hold_only_self_alive),
	    cmocka_unit_test(upsert_should_keep_members_sorted_by_uuid),
	    cmocka_unit_test(upsert_should_say_new_then_known_then_full),
	    cmocka_unit_test(
		upsert_should_update_info_and_revive_but_keep_last_seen),
	    cmocka_unit_test(upsert_should_terminate_unterminated_strings),
	    cmocka_unit_test(find_should_return_null_for_an_unknown_uuid),
	    cmocka_unit_test(
		set_alive_should_report_changes_and_unknown_members),
	    cmocka_unit_test(set_alive_should_never_mark_self_dead),
	    cmocka_unit_test(
		next_live_should_follow_uuid_order_and_wrap_around),
	    cmocka_unit_test(next_live_should_skip_dead_members),
	    cmocka_unit_test(
		next_live_should_work_from_a_uuid_that_is_not_a_member),
	    cmocka_unit_test(
		next_live_should_skip_u_even_when_it_is_the_only_other),
	    cmocka_unit_test(next_live_should_be_null_for_a_lone_server),
	    cmocka_unit_test(
		live_count_and_highest_live_should_ignore_dead_members),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
