/* test_uuid: unit tests for server identities in src/uuid.c. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "uuid.h"

static const char canon[] = "0123abcd-4567-89ef-a0b1-c2d3e4f56789";
static const uint8_t canon_bytes[16] = {0x01, 0x23, 0xab, 0xcd, 0x45, 0x67,
    0x89, 0xef, 0xa0, 0xb1, 0xc2, 0xd3, 0xe4, 0xf5, 0x67, 0x89};

static void
assert_parse_fails(const char *s)
{
	struct uuid u;

	memset(u.b, 0x5a, sizeof(u.b));
	if (uuid_parse(&u, s) != -1)
		print_error("accepted \"%s\"\n", s != NULL ? s : "(null)");
	assert_int_equal(uuid_parse(&u, s), -1);
	/* a failed parse leaves the target alone */
	assert_int_equal(u.b[0], 0x5a);
	assert_int_equal(u.b[15], 0x5a);
}

static void
parse_should_read_the_canonical_form(void **state)
{
	struct uuid u;

	(void)state;
	assert_int_equal(uuid_parse(&u, canon), 0);
	assert_memory_equal(u.b, canon_bytes, sizeof(u.b));
}

static void
parse_then_format_should_round_trip(void **state)
{
	struct uuid u;
	char buf[UUID_STRLEN + 1];

	(void)state;
	assert_int_equal(uuid_parse(&u, canon), 0);
	assert_ptr_equal(uuid_format(&u, buf), buf);
	assert_string_equal(buf, canon);
}

static void
format_then_parse_should_round_trip_random_uuids(void **state)
{
	struct uuid u, v;
	char buf[UUID_STRLEN + 1];
	int i;

	(void)state;
	for (i = 0; i < 1000; i++) {
		uuid_generate(&u);
		uuid_format(&u, buf);
		assert_int_equal(strlen(buf), UUID_STRLEN);
		assert_int_equal(uuid_parse(&v, buf), 0);
		assert_int_equal(uuid_cmp(&u, &v), 0);
	}
}

static void
parse_should_accept_uppercase_and_format_should_give_lowercase(void **state)
{
	struct uuid u;
	char buf[UUID_STRLEN + 1];

	(void)state;
	assert_int_equal(
	    uuid_parse(&u, "0123ABCD-4567-89EF-A0B1-C2D3E4F56789"), 0);
	assert_memory_equal(u.b, canon_bytes, sizeof(u.b));
	assert_string_equal(uuid_format(&u, buf), canon);
}

static void
parse_should_reject_wrong_length(void **state)
{
	(void)state;
	assert_parse_fails("");
	assert_parse_fails("0123abcd-4567-89ef-a0b1-c2d3e4f5678");
	assert_parse_fails("0123abcd-4567-89ef-a0b1-c2d3e4f567890");
	assert_parse_fails("0123abcd-4567-89ef-a0b1-c2d3e4f56789 ");
	assert_parse_fails("{0123abcd-4567-89ef-a0b1-c2d3e4f56789}");
	assert_parse_fails("0123abcd456789efa0b1c2d3e4f56789");
	assert_parse_fails(NULL);
}

static void
parse_should_reject_missing_or_misplaced_dashes(void **state)
{
	(void)state;
	assert_parse_fails("0123abcd04567-89ef-a0b1-c2d3e4f56789");
	assert_parse_fails("0123abcd-4567089ef-a0b1-c2d3e4f56789");
	assert_parse_fails("0123abcd-4567-89ef0a0b1-c2d3e4f56789");
	assert_parse_fails("0123abcd-4567-89ef-a0b10c2d3e4f56789");
	assert_parse_fails("0123abc-d4567-89ef-a0b1-c2d3e4f56789");
	assert_parse_fails("0123abcd-4567-89ef-a0b1c-2d3e4f56789");
	assert_parse_fails("0123abcd456789efa0b1c2d3e4f56789----");
	assert_parse_fails("0123abcd:4567:89ef:a0b1:c2d3e4f56789");
}

static void
parse_should_reject_non_hex_digits(void **state)
{
	(void)state;
	assert_parse_fails("g123abcd-4567-89ef-a0b1-c2d3e4f56789");
	assert_parse_fails("0123abcd-4567-89ef-a0b1-c2d3e4f5678z");
	assert_parse_fails("0123abcd-45 7-89ef-a0b1-c2d3e4f56789");
	assert_parse_fails("0123abcd-4567-89ef-a0b1--2d3e4f56789");
	assert_parse_fails("0123abcd-4567-+9ef-a0b1-c2d3e4f56789");
	assert_parse_fails("0x23abcd-4567-89ef-a0b1-c2d3e4f56789");
	assert_parse_fails("0123abcd-4567-89ef-a0b1-c2d3e4f5678\xc3");
}

static void
cmp_should_order_by_bytes_from_the_first(void **state)
{
	struct uuid a, b, c;

	(void)state;
	assert_int_equal(
	    uuid_parse(&a, "00000000-0000-0000-0000-0000000000ff"), 0);
	assert_int_equal(
	    uuid_parse(&b, "00000000-0000-0000-0000-000000000100"), 0);
	assert_int_equal(
	    uuid_parse(&c, "ff000000-0000-0000-0000-000000000000"), 0);
	assert_true(uuid_cmp(&a, &b) < 0);
	assert_true(uuid_cmp(&b, &a) > 0);
	assert_true(uuid_cmp(&b, &c) < 0);
	assert_true(uuid_cmp(&a, &c) < 0);
	assert_int_equal(uuid_cmp(&a, &a), 0);
}

static void
cmp_should_agree_with_the_order_of_the_text_form(void **state)
{
	struct uuid u, v;
	char su[UUID_STRLEN + 1], sv[UUID_STRLEN + 1];
	int i, bc, sc;

	(void)state;
	for (i = 0; i < 1000; i++) {
		uuid_generate(&u);
		uuid_generate(&v);
		if (i % 10 == 0)
			memcpy(v.b, u.b, 8 + (size_t)(i % 8));
		uuid_format(&u, su);
		uuid_format(&v, sv);
		bc = uuid_cmp(&u, &v);
		sc = strcmp(su, sv);
		assert_true((bc < 0) == (sc < 0));
		assert_true((bc > 0) == (sc > 0));
	}
}

static void
is_nil_should_be_true_only_for_all_zero(void **state)
{
	struct uuid u;
	int i;

	(void)state;
	memset(&u, 0, sizeof(u));
	assert_true(uuid_is_nil(&u));
	assert_int_equal(
	    uuid_parse(&u, "00000000-0000-0000-0000-000000000000"), 0);
	assert_true(uuid_is_nil(&u));
	for (i = 0; i < 16; i++) {
		memset(&u, 0, sizeof(u));
		u.b[i] = 1;
		assert_false(uuid_is_nil(&u));
	}
}

static void
generate_should_give_distinct_non_nil_uuids(void **state)
{
	struct uuid a, b;

	(void)state;
	uuid_generate(&a);
	uuid_generate(&b);
	assert_false(uuid_is_nil(&a));
	assert_false(uuid_is_nil(&b));
	assert_int_not_equal(uuid_cmp(&a, &b), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(parse_should_read_the_canonical_form),
	    cmocka_unit_test(parse_then_format_should_round_trip),
	    cmocka_unit_test(format_then_parse_should_round_trip_random_uuids),
	    cmocka_unit_test(
		parse_should_accept_uppercase_and_format_should_give_lowercase),
	    cmocka_unit_test(parse_should_reject_wrong_length),
	    cmocka_unit_test(parse_should_reject_missing_or_misplaced_dashes),
	    cmocka_unit_test(parse_should_reject_non_hex_digits),
	    cmocka_unit_test(cmp_should_order_by_bytes_from_the_first),
	    cmocka_unit_test(cmp_should_agree_with_the_order_of_the_text_form),
	    cmocka_unit_test(is_nil_should_be_true_only_for_all_zero),
	    cmocka_unit_test(generate_should_give_distinct_non_nil_uuids),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
