/* test_wire: unit tests for the datagram codec in src/wire.c. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "wire.h"

#define ROUNDTRIP_ITERATIONS 5000

/* Decodes a C string (without its NUL). */
static enum wire_err
decode_str(struct wire_msg *m, const char *s)
{
	return wire_decode(m, s, strlen(s));
}

static void
assert_decode_err(const char *s, enum wire_err want)
{
	struct wire_msg m;
	enum wire_err got;

	got = decode_str(&m, s);
	if (got != want)
		print_error("input \"%s\": got %s, want %s\n", s,
		    wire_strerror(got), wire_strerror(want));
	assert_int_equal(got, want);
}

/* "msg@a@b@c" followed by n extensions k0=v, k1=v, ... */
static void
make_exts(char *buf, size_t sz, int n, const char *last)
{
	size_t off;
	int i, r;

	r = snprintf(buf, sz, "msg@a@b@c");
	assert_true(r > 0 && (size_t)r < sz);
	off = (size_t)r;
	for (i = 0; i < n; i++) {
		r = snprintf(buf + off, sz - off, "@k%d=v", i);
		assert_true(r > 0 && (size_t)r < sz - off);
		off += (size_t)r;
	}
	if (last != NULL) {
		r = snprintf(buf + off, sz - off, "@%s", last);
		assert_true(r > 0 && (size_t)r < sz - off);
	}
}

/* A message "msg@bob@<body>@alice" of exactly total bytes, body of c. */
static size_t
make_sized(char *buf, size_t total, char c)
{
	size_t head = strlen("msg@bob@"), tail = strlen("@alice");

	assert_true(total >= head + tail);
	memcpy(buf, "msg@bob@", head);
	memset(buf + head, c, total - head - tail);
	memcpy(buf + total - tail, "@alice", tail);
	return total;
}

/*
 * The plain form and what the decoder accepts.
 */

static void
decode_should_parse_plain_message(void **state)
{
	struct wire_msg m;

	(void)state;
	assert_int_equal(decode_str(&m, "msg@bob@hello@alice"), WIRE_OK);
	assert_int_equal(m.kind, WK_MSG);
	assert_string_equal(m.to, "bob");
	assert_string_equal(m.body, "hello");
	assert_string_equal(m.from, "alice");
	assert_int_equal(m.next, 0);
}

static void
decode_should_accept_empty_to_body_and_from(void **state)
{
	struct wire_msg m;

	(void)state;
	assert_int_equal(decode_str(&m, "where@@@alice"), WIRE_OK);
	assert_int_equal(m.kind, WK_WHERE);
	assert_string_equal(m.to, "");
	assert_string_equal(m.body, "");
	assert_string_equal(m.from, "alice");
	assert_int_equal(decode_str(&m, "where@@@"), WIRE_OK);
	assert_string_equal(m.from, "");
}

static void
decode_should_recognise_every_kind(void **state)
{
	struct wire_msg m;
	char buf[64];
	int k;

	(void)state;
	for (k = WK_NONE + 1; k < WK_COUNT; k++) {
		snprintf(buf, sizeof(buf), "%s@@@x",
		    wire_kind_name((enum wire_kind)k));
		assert_int_equal(decode_str(&m, buf), WIRE_OK);
		assert_int_equal(m.kind, k);
	}
}

static void
decode_should_unescape_either_case_of_hex(void **state)
{
	struct wire_msg m;

	(void)state;
	assert_int_equal(
	    decode_str(&m, "msg@b%40b@100%25 %3d%3D%0a%0D%7f%7F%41@%c3%A9"),
	    WIRE_OK);
	assert_string_equal(m.to, "b@b");
	assert_string_equal(m.body,
	    "100% ==\n\r\x7f\x7f"
	    "A");
	assert_string_equal(m.from, "\xc3\xa9");
}

static void
decode_should_accept_raw_non_ascii_utf8(void **state)
{
	struct wire_msg m;

	(void)state;
	assert_int_equal(decode_str(&m,
			     "msg@b\xc3\xb6"
			     "b@\xe2\x82\xac \xf0\x9d\x84\x9e@\xe6\x97\xa5"),
	    WIRE_OK);
	assert_string_equal(m.to,
	    "b\xc3\xb6"
	    "b");
	assert_string_equal(m.body, "\xe2\x82\xac \xf0\x9d\x84\x9e");
	assert_string_equal(m.from, "\xe6\x97\xa5");
}

/* Old clients send '=' and control bytes raw; they are harmless. */
static void
decode_should_accept_raw_equals_and_controls_in_fields(void **state)
{
	struct wire_msg m;

	(void)state;
	assert_int_equal(
	    decode_str(&m, "msg@bob@1+1=2\tok\n\x7f@alice"), WIRE_OK);
	assert_string_equal(m.body, "1+1=2\tok\n\x7f");
	assert_int_equal(m.next, 0);
}

static void
decode_should_accept_utf8_boundaries(void **state)
{
	static const char *const ok[] = {
	    "\x7f",		/* U+007F */
	    "\xc2\x80",		/* U+0080 */
	    "\xdf\xbf",		/* U+07FF */
	    "\xe0\xa0\x80",	/* U+0800 */
	    "\xed\x9f\xbf",	/* U+D7FF */
	    "\xee\x80\x80",	/* U+E000 */
	    "\xef\xbf\xbf",	/* U+FFFF */
	    "\xf0\x90\x80\x80", /* U+10000 */
	    "\xf4\x8f\xbf\xbf", /* U+10FFFF */
	    "%F4%8F%BF%BF",	/* the same, escaped */
	    "%C3\xa9",		/* half escaped */
	};
	struct wire_msg m;
	char buf[64];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		snprintf(buf, sizeof(buf), "msg@@%s@", ok[i]);
		assert_decode_err(buf, WIRE_OK);
		(void)decode_str(&m, buf);
		assert_true(strlen(m.body) >= 1);
	}
}

static void
decode_should_split_extension_at_first_equals(void **state)
{
	struct wire_msg m;

	(void)state;
	assert_int_equal(
	    decode_str(&m, "repl@@@s1@k=a=b@e=@x_1=%3D%40%25"), WIRE_OK);
	assert_int_equal(m.next, 3);
	assert_string_equal(m.ext[0].key, "k");
	assert_string_equal(m.ext[0].val, "a=b");
	assert_string_equal(wire_get(&m, "e"), "");
	assert_string_equal(wire_get(&m, "x_1"), "=@%");
	assert_string_equal(m.from, "s1");
}

static void
decode_should_accept_longest_key_and_most_extensions(void **state)
{
	struct wire_msg m;
	char buf[512];

	(void)state;
	assert_int_equal(decode_str(&m, "beat@@@l@abcdefghijklmno=1"), WIRE_OK);
	assert_string_equal(wire_get(&m, "abcdefghijklmno"), "1");
	make_exts(buf, sizeof(buf), WIRE_EXT_MAX, NULL);
	assert_int_equal(decode_str(&m, buf), WIRE_OK);
	assert_int_equal(m.next, WIRE_EXT_MAX);
	assert_string_equal(wire_get(&m, "k15"), "v");
}

static void
decode_should_accept_exactly_wire_max_bytes(void **state)
{
	struct wire_msg m;
	char buf[WIRE_MAX + 1];
	size_t n;

	(void)state;
	n = make_sized(buf, WIRE_MAX, 'x');
	assert_int_equal(wire_decode(&m, buf, n), WIRE_OK);
	assert_int_equal(strlen(m.body), WIRE_MAX - strlen("msg@bob@@alice"));
	assert_string_equal(m.from, "alice");
}

static void
decode_should_read_no_further_than_len(void **state)
{
	struct wire_msg m;
	const char data[] = "msg@a@b@c@k=v";

	(void)state;
	assert_int_equal(wire_decode(&m, data, strlen("msg@a@b@c")), WIRE_OK);
	assert_string_equal(m.from, "c");
	assert_int_equal(m.next, 0);
	assert_int_equal(
	    wire_decode(&m, data, strlen("msg@a@b")), WIRE_EFIELDS);
}

/*
 * One minimal example of every error class.
 */

static void
decode_should_reject_datagram_longer_than_wire_max(void **state)
{
	struct wire_msg m;
	char buf[WIRE_MAX + 1];
	size_t n;

	(void)state;
	n = make_sized(buf, WIRE_MAX + 1, 'x');
	assert_int_equal(wire_decode(&m, buf, n), WIRE_ETOOBIG);
}

static void
decode_should_reject_raw_nul(void **state)
{
	struct wire_msg m;

	(void)state;
	assert_int_equal(wire_decode(&m, "msg@bob@hi\0x@alice", 18), WIRE_ENUL);
	assert_int_equal(wire_decode(&m, "msg@bob@hi@alice\0", 17), WIRE_ENUL);
}

static void
decode_should_reject_fewer_than_four_fields(void **state)
{
	struct wire_msg m;

	(void)state;
	assert_decode_err("msg@bob@hello", WIRE_EFIELDS);
	assert_decode_err("msg", WIRE_EFIELDS);
	assert_decode_err("@@", WIRE_EFIELDS);
	assert_int_equal(wire_decode(&m, "", 0), WIRE_EFIELDS);
	assert_int_equal(wire_decode(&m, NULL, 0), WIRE_EFIELDS);
}

static void
decode_should_reject_empty_kind(void **state)
{
	(void)state;
	assert_decode_err("@bob@hello@alice", WIRE_EKIND_EMPTY);
	assert_decode_err("@@@", WIRE_EKIND_EMPTY);
}

static void
decode_should_reject_unknown_kind(void **state)
{
	(void)state;
	assert_decode_err("chat@bob@hello@alice", WIRE_EKIND_UNKNOWN);
	assert_decode_err("MSG@bob@hello@alice", WIRE_EKIND_UNKNOWN);
	assert_decode_err("none@bob@hello@alice", WIRE_EKIND_UNKNOWN);
	assert_decode_err("m%73g@bob@hello@alice", WIRE_EKIND_UNKNOWN);
	assert_decode_err("msg @bob@hello@alice", WIRE_EKIND_UNKNOWN);
}

static void
decode_should_reject_unescaped_percent(void **state)
{
	(void)state;
	assert_decode_err("msg@bob@100%@alice", WIRE_EESCAPE);
	assert_decode_err("msg@bob@100% sure@alice", WIRE_EESCAPE);
	assert_decode_err("msg@%@@", WIRE_EESCAPE);
}

static void
decode_should_reject_truncated_or_non_hex_escape(void **state)
{
	(void)state;
	assert_decode_err("msg@bob@%4@alice", WIRE_EESCAPE);
	assert_decode_err("msg@bob@hi@alice%4", WIRE_EESCAPE);
	assert_decode_err("msg@bob@%zz@alice", WIRE_EESCAPE);
	assert_decode_err("msg@bob@%4g@alice", WIRE_EESCAPE);
	assert_decode_err("msg@bob@%g4@alice", WIRE_EESCAPE);
	assert_decode_err("msg@bob@% 4@alice", WIRE_EESCAPE);
	assert_decode_err("msg@bob@hi@alice@k=%x", WIRE_EESCAPE);
}

static void
decode_should_reject_escaped_nul(void **state)
{
	(void)state;
	assert_decode_err("msg@bob@a%00b@alice", WIRE_ENUL);
	assert_decode_err("msg@%00@@", WIRE_ENUL);
	assert_decode_err("msg@@@@k=%00", WIRE_ENUL);
}

static void
decode_should_reject_invalid_utf8(void **state)
{
	static const char *const bad[] = {
	    "\x80",		    /* stray continuation */
	    "\xbf",		    /* stray continuation */
	    "\xc0\x80",		    /* overlong NUL */
	    "\xc1\xbf",		    /* overlong */
	    "\xe0\x80\x80",	    /* overlong */
	    "\xe0\x9f\xbf",	    /* overlong U+07FF */
	    "\xf0\x80\x80\x80",	    /* overlong */
	    "\xf0\x8f\xbf\xbf",	    /* overlong U+FFFF */
	    "\xed\xa0\x80",	    /* surrogate U+D800 */
	    "\xed\xbf\xbf",	    /* surrogate U+DFFF */
	    "\xf4\x90\x80\x80",	    /* U+110000 */
	    "\xf5\x80\x80\x80",	    /* beyond any plane */
	    "\xfe", "\xff", "\xc3", /* truncated */
	    "\xe2\x82",		    /* truncated */
	    "\xf0\x9d\x84",	    /* truncated */
	    "\xc3"
	    "a", /* continuation missing */
	    "\xe2\x82"
	    "a",		/* continuation missing */
	    "\xe2\x82\xc3\xa9", /* lead byte where continuation due */
	    "\xf0\x9f\x98\xc0", /* lead byte where continuation due */
	    "\xc3\xc3\xa9",	/* lead byte where continuation due */
	    "%C3",		/* escaped and truncated */
	    "%ED%A0%80",	/* escaped surrogate */
	    "%C0%80",		/* escaped overlong */
	};
	char buf[64];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(buf, sizeof(buf), "msg@bob@%s@alice", bad[i]);
		assert_decode_err(buf, WIRE_EUTF8);
		snprintf(buf, sizeof(buf), "msg@@@@k=%s", bad[i]);
		assert_decode_err(buf, WIRE_EUTF8);
	}
}

static void
decode_should_reject_extension_without_equals(void **state)
{
	(void)state;
	assert_decode_err("msg@bob@hi@alice@seq", WIRE_EEXT_MALFORMED);
	assert_decode_err("msg@bob@hi@alice@", WIRE_EEXT_MALFORMED);
	assert_decode_err("msg@bob@hi@alice@k=1@", WIRE_EEXT_MALFORMED);
}

static void
decode_should_reject_extension_with_empty_key(void **state)
{
	(void)state;
	assert_decode_err("msg@bob@hi@alice@=1", WIRE_EEXT_MALFORMED);
	assert_decode_err("msg@bob@hi@alice@=", WIRE_EEXT_MALFORMED);
}

static void
decode_should_reject_extension_with_bad_key(void **state)
{
	(void)state;
	assert_decode_err("msg@bob@hi@alice@Seq=1", WIRE_EEXT_MALFORMED);
	assert_decode_err("msg@bob@hi@alice@s-q=1", WIRE_EEXT_MALFORMED);
	assert_decode_err("msg@bob@hi@alice@s q=1", WIRE_EEXT_MALFORMED);
	assert_decode_err("msg@bob@hi@alice@s%71=1", WIRE_EEXT_MALFORMED);
	assert_decode_err("msg@bob@hi@alice@\xc3\xa9=1", WIRE_EEXT_MALFORMED);
	assert_decode_err(
	    "msg@bob@hi@alice@abcdefghijklmnop=1", WIRE_EEXT_MALFORMED);
}

static void
decode_should_reject_repeated_extension_key(void **state)
{
	(void)state;
	assert_decode_err("msg@bob@hi@alice@seq=1@seq=1", WIRE_EEXT_DUP);
	assert_decode_err("msg@bob@hi@alice@seq=1@t=2@seq=", WIRE_EEXT_DUP);
}

static void
decode_should_reject_more_than_ext_max_extensions(void **state)
{
	char buf[512];

	(void)state;
	make_exts(buf, sizeof(buf), WIRE_EXT_MAX, "extra=1");
	assert_decode_err(buf, WIRE_EEXT_TOOMANY);
	make_exts(buf, sizeof(buf), WIRE_EXT_MAX + 5, NULL);
	assert_decode_err(buf, WIRE_EEXT_TOOMANY);
}

/* Several faults at once: the documented order decides which is reported. */
static void
decode_should_report_errors_in_documented_order(void **state)
{
	static const struct {
		const char *in;
		enum wire_err want;
	} cases[] = {
	    {"msg@%zz", WIRE_EFIELDS}, {"@a@%zz", WIRE_EFIELDS},
	    {"@a@b@%zz", WIRE_EKIND_EMPTY},
	    {"bogus@%zz@%00@\xff@=", WIRE_EKIND_UNKNOWN},
	    {"msg@%00%zz@b@c", WIRE_EESCAPE},	   /* escape before NUL */
	    {"msg@%ff%00@b@c", WIRE_ENUL},	   /* NUL before UTF-8 */
	    {"msg@%00@%zz@c", WIRE_ENUL},	   /* to before body */
	    {"msg@%ff@%zz@c", WIRE_EUTF8},	   /* to before body */
	    {"msg@a@b@%zz@k=%00", WIRE_EESCAPE},   /* from before ext */
	    {"msg@a@b@c@bad@k=%zz", WIRE_EESCAPE}, /* value before shape */
	    {"msg@a@b@c@k=1@k=2@Bad=%ff", WIRE_EUTF8},
	    {"msg@a@b@c@k=1@k=2@x", WIRE_EEXT_DUP}, /* first shape fault */
	    {"msg@a@b@c@x@k=1@k=1", WIRE_EEXT_MALFORMED},
	    {"msg@a@b@c@noeq%zz", WIRE_EEXT_MALFORMED}, /* no value */
	};
	char buf[512];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		assert_decode_err(cases[i].in, cases[i].want);

	/* The 17th extension: its own fault, else too many. */
	make_exts(buf, sizeof(buf), WIRE_EXT_MAX, "k0=v");
	assert_decode_err(buf, WIRE_EEXT_DUP);
	make_exts(buf, sizeof(buf), WIRE_EXT_MAX, "K=v");
	assert_decode_err(buf, WIRE_EEXT_MALFORMED);
	make_exts(buf, sizeof(buf), WIRE_EXT_MAX + 1, "k=%zz");
	assert_decode_err(buf, WIRE_EESCAPE);
}

static void
decode_should_check_size_before_anything_else(void **state)
{
	struct wire_msg m;
	char buf[WIRE_MAX + 1];

	(void)state;
	memset(buf, 0, sizeof(buf));
	assert_int_equal(wire_decode(&m, buf, sizeof(buf)), WIRE_ETOOBIG);
	assert_int_equal(wire_decode(&m, buf, 4), WIRE_ENUL);
}

static void
decode_should_leave_an_empty_message_on_error(void **state)
{
	struct wire_msg m;

	(void)state;
	assert_int_equal(decode_str(&m, "msg@bob@hi@alice@k=1"), WIRE_OK);
	assert_int_equal(
	    decode_str(&m, "msg@bob@hi@alice@k=1@k=2"), WIRE_EEXT_DUP);
	assert_int_equal(m.kind, WK_NONE);
	assert_int_equal(m.next, 0);
	assert_string_equal(m.to, "");
	assert_string_equal(m.body, "");
	assert_string_equal(m.from, "");
	assert_null(wire_get(&m, "k"));
}

static void
decode_should_reject_null_arguments(void **state)
{
	struct wire_msg m;

	(void)state;
	assert_int_equal(wire_decode(NULL, "msg@@@", 6), WIRE_EARG);
	assert_int_equal(wire_decode(&m, NULL, 6), WIRE_EARG);
}

/*
 * The encoder.
 */

static void
encode_should_produce_the_plain_form_for_plain_fields(void **state)
{
	struct wire_msg m;
	char out[WIRE_MAX];
	size_t len = 0;

	(void)state;
	wire_init(&m, WK_MSG, "bob", "hello", "alice");
	assert_int_equal(wire_encode(&m, out, sizeof(out), &len), WIRE_OK);
	assert_int_equal(len, strlen("msg@bob@hello@alice"));
	assert_memory_equal(out, "msg@bob@hello@alice", len);
}

static void
encode_should_escape_exactly_the_reserved_bytes(void **state)
{
	static const char want[] = "msg@b%40b@%25 %3D%0A%01%1F%7F ~\xc3\xa9"
				   "@a@k=%3D@n=a b";
	struct wire_msg m;
	char out[WIRE_MAX];
	size_t len = 0;

	(void)state;
	wire_init(&m, WK_MSG, "b@b", "% =\n\x01\x1f\x7f ~\xc3\xa9", "a");
	assert_int_equal(wire_add(&m, "k", "="), 0);
	assert_int_equal(wire_add(&m, "n", "a b"), 0);
	assert_int_equal(wire_encode(&m, out, sizeof(out), &len), WIRE_OK);
	assert_int_equal(len, strlen(want));
	assert_memory_equal(out, want, len);
}

static void
encode_should_accept_exactly_wire_max_and_refuse_one_more(void **state)
{
	struct wire_msg m;
	char body[WIRE_MAX + 1], out[WIRE_MAX + 8];
	size_t n = WIRE_MAX - strlen("msg@bob@@alice"), len = 0;
	struct wire_msg d;

	(void)state;
	memset(body, 'x', n);
	body[n] = '\0';
	wire_init(&m, WK_MSG, "bob", body, "alice");
	assert_int_equal(wire_encode(&m, out, sizeof(out), &len), WIRE_OK);
	assert_int_equal(len, WIRE_MAX);
	assert_int_equal(wire_decode(&d, out, len), WIRE_OK);
	assert_string_equal(d.body, body);

	body[n] = 'x';
	body[n + 1] = '\0';
	len = 0;
	assert_int_equal(wire_encode(&m, out, sizeof(out), &len), WIRE_ETOOBIG);
	assert_int_equal(len, 0);

	/* An escape ending exactly at the limit fits; one byte later not. */
	memset(body, 'x', n);
	body[n - 3] = '@';
	body[n - 2] = '\0';
	assert_int_equal(wire_encode(&m, out, sizeof(out), &len), WIRE_OK);
	assert_int_equal(len, WIRE_MAX);
	assert_memory_equal(out + WIRE_MAX - strlen("%40@alice"), "%40@alice",
	    strlen("%40@alice"));
	body[n - 3] = 'x';
	body[n - 2] = '@';
	body[n - 1] = '\0';
	assert_int_equal(wire_encode(&m, out, sizeof(out), &len), WIRE_ETOOBIG);
}

static void
encode_should_respect_a_small_output_buffer(void **state)
{
	struct wire_msg m;
	char out[32];
	size_t n = strlen("msg@bob@hello@alice"), len = 0;

	(void)state;
	wire_init(&m, WK_MSG, "bob", "hello", "alice");
	memset(out, 'Z', sizeof(out));
	assert_int_equal(wire_encode(&m, out, n - 1, &len), WIRE_ETOOBIG);
	assert_int_equal(len, 0);
	assert_int_equal(out[0], 'Z');
	assert_int_equal(wire_encode(&m, out, 0, &len), WIRE_ETOOBIG);
	assert_int_equal(wire_encode(&m, out, n, &len), WIRE_OK);
	assert_int_equal(len, n);
	assert_int_equal(out[n], 'Z');
}

static void
encode_should_write_nothing_past_len(void **state)
{
	struct wire_msg m;
	char out[WIRE_MAX + 16];
	size_t len = 0, i;

	(void)state;
	memset(out, 'Z', sizeof(out));
	wire_init(&m, WK_OK, "", "", "srv");
	assert_int_equal(wire_add_u64(&m, "seq", 7), 0);
	assert_int_equal(wire_encode(&m, out, sizeof(out), &len), WIRE_OK);
	assert_memory_equal(out, "ok@@@srv@seq=7", len);
	for (i = len; i < sizeof(out); i++)
		assert_int_equal(out[i], 'Z');
}

static void
encode_should_refuse_null_fields(void **state)
{
	struct wire_msg m;
	char out[WIRE_MAX];
	size_t len;

	(void)state;
	wire_init(&m, WK_MSG, NULL, "b", "c");
	assert_int_equal(wire_encode(&m, out, sizeof(out), &len), WIRE_EARG);
	wire_init(&m, WK_MSG, "a", NULL, "c");
	assert_int_equal(wire_encode(&m, out, sizeof(out), &len), WIRE_EARG);
	wire_init(&m, WK_MSG, "a", "b", NULL);
	assert_int_equal(wire_encode(&m, out, sizeof(out), &len), WIRE_EARG);
	wire_init(&m, WK_MSG, "a", "b", "c");
	assert_int_equal(wire_encode(NULL, out, sizeof(out), &len), WIRE_EARG);
	assert_int_equal(wire_encode(&m, NULL, sizeof(out), &len), WIRE_EARG);
	assert_int_equal(wire_encode(&m, out, sizeof(out), NULL), WIRE_EARG);
	m.ext[0].key = "k";
	m.ext[0].val = NULL;
	m.next = 1;
	assert_int_equal(wire_encode(&m, out, sizeof(out), &len), WIRE_EARG);
}

static void
encode_should_refuse_a_kind_not_in_the_table(void **state)
{
	struct wire_msg m;
	char out[WIRE_MAX];
	size_t len;

	(void)state;
	wire_init(&m, WK_NONE, "a", "b", "c");
	assert_int_equal(wire_encode(&m, out, sizeof(out), &len), WIRE_EARG);
	wire_init(&m, WK_COUNT, "a", "b", "c");
	assert_int_equal(wire_encode(&m, out, sizeof(out), &len), WIRE_EARG);
}

/* Keys set behind wire_add's back are checked again. */
static void
encode_should_refuse_invalid_or_repeated_keys(void **state)
{
	static const char *const bad[] = {
	    "", "A", "a-b", "a=b", "a@b", "abcdefghijklmnop"};
	struct wire_msg m;
	char out[WIRE_MAX];
	size_t len, i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		wire_init(&m, WK_MSG, "a", "b", "c");
		m.ext[0].key = bad[i];
		m.ext[0].val = "v";
		m.next = 1;
		assert_int_equal(
		    wire_encode(&m, out, sizeof(out), &len), WIRE_EARG);
	}
	wire_init(&m, WK_MSG, "a", "b", "c");
	m.ext[0].key = m.ext[1].key = "k";
	m.ext[0].val = m.ext[1].val = "v";
	m.next = 2;
	assert_int_equal(wire_encode(&m, out, sizeof(out), &len), WIRE_EARG);
	m.ext[1].key = NULL;
	assert_int_equal(wire_encode(&m, out, sizeof(out), &len), WIRE_EARG);
	m.next = WIRE_EXT_MAX + 1;
	assert_int_equal(wire_encode(&m, out, sizeof(out), &len), WIRE_EARG);
	m.next = -1;
	assert_int_equal(wire_encode(&m, out, sizeof(out), &len), WIRE_EARG);
}

/* What the decoder would refuse, the encoder does not send. */
static void
encode_should_refuse_invalid_utf8(void **state)
{
	struct wire_msg m;
	char out[WIRE_MAX];
	size_t len;

	(void)state;
	wire_init(&m, WK_MSG, "a", "caf\xe9", "c");
	assert_int_equal(wire_encode(&m, out, sizeof(out), &len), WIRE_EARG);
	wire_init(&m, WK_MSG, "\xed\xa0\x80", "b", "c");
	assert_int_equal(wire_encode(&m, out, sizeof(out), &len), WIRE_EARG);
	wire_init(&m, WK_MSG, "a", "b", "\xc3");
	assert_int_equal(wire_encode(&m, out, sizeof(out), &len), WIRE_EARG);
	wire_init(&m, WK_MSG, "a", "b", "c");
	assert_int_equal(wire_add(&m, "k", "\xff"), 0);
	assert_int_equal(wire_encode(&m, out, sizeof(out), &len), WIRE_EARG);
}

/*
 * Round trip over random fields.
 */

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

/* xorshift64*: fixed seed, so a failure reproduces. */
static uint64_t
rng_next(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dULL;
}

static size_t
rng_below(size_t n)
{
	return (size_t)(rng_next() % n);
}

/* Random valid UTF-8 with plenty of reserved bytes; NUL-terminated. */
static void
rng_text(char *buf, size_t sz, size_t maxpieces)
{
	static const char *const pieces[] = {"@", "%", "=", "\n", "\r", "\t",
	    "\x01", "\x1f", "\x7f", " ", "a", "Z", "0", "~", "%41", "%zz", "@@",
	    "==", "k=v", "\xc3\xa9", "\xdf\xbf", "\xe2\x82\xac", "\xed\x9f\xbf",
	    "\xee\x80\x80", "\xef\xbf\xbf", "\xf0\x9f\x98\x80",
	    "\xf4\x8f\xbf\xbf"};
	size_t n = rng_below(maxpieces + 1), i, off = 0, pl;
	const char *p;

	for (i = 0; i < n; i++) {
		if (rng_below(4) == 0) {
			/* any printable ASCII byte */
			p = NULL;
			pl = 1;
		} else {
			p = pieces[rng_below(
			    sizeof(pieces) / sizeof(pieces[0]))];
			pl = strlen(p);
		}
		if (off + pl >= sz)
			break;
		if (p == NULL)
			buf[off] = (char)(0x20 + rng_below(0x5f));
		else
			memcpy(buf + off, p, pl);
		off += pl;
	}
	buf[off] = '\0';
}

static void
rng_key(char *buf)
{
	static const char alpha[] = "abcdefghijklmnopqrstuvwxyz0123456789_";
	size_t n = 1 + rng_below(WIRE_KEY_MAX), i;

	for (i = 0; i < n; i++)
		buf[i] = alpha[rng_below(sizeof(alpha) - 1)];
	buf[n] = '\0';
}

/* An independent encoder to compare against, byte for byte. */
static void
ref_append(char *out, size_t sz, size_t *len, const char *s, int escape)
{
	const unsigned char *p;
	int r;

	for (p = (const unsigned char *)s; *p != '\0'; p++) {
		if (escape &&
		    (*p < 0x20 || *p == 0x7f || *p == '%' || *p == '@' ||
			*p == '='))
			r = snprintf(out + *len, sz - *len, "%%%02X", *p);
		else
			r = snprintf(out + *len, sz - *len, "%c", *p);
		assert_true(r > 0 && (size_t)r < sz - *len);
		*len += (size_t)r;
	}
}

static size_t
ref_encode(const struct wire_msg *m, char *out, size_t sz)
{
	size_t len = 0;
	int i;

	ref_append(out, sz, &len, wire_kind_name(m->kind), 0);
	ref_append(out, sz, &len, "@", 0);
	ref_append(out, sz, &len, m->to, 1);
	ref_append(out, sz, &len, "@", 0);
	ref_append(out, sz, &len, m->body, 1);
	ref_append(out, sz, &len, "@", 0);
	ref_append(out, sz, &len, m->from, 1);
	for (i = 0; i < m->next; i++) {
		ref_append(out, sz, &len, "@", 0);
		ref_append(out, sz, &len, m->ext[i].key, 0);
		ref_append(out, sz, &len, "=", 0);
		ref_append(out, sz, &len, m->ext[i].val, 1);
	}
	return len;
}

static void
roundtrip_should_preserve_random_fields_and_extensions(void **state)
{
	static char to[256], body[2048], from[256];
	static char keys[WIRE_EXT_MAX][WIRE_KEY_MAX + 1],
	    vals[WIRE_EXT_MAX][128];
	static char out[WIRE_MAX], ref[4 * WIRE_MAX * 4];
	struct wire_msg m, d;
	size_t len, rlen;
	int iter, i, n, ok = 0, big = 0;
	enum wire_err err;

	(void)state;
	for (iter = 0; iter < ROUNDTRIP_ITERATIONS; iter++) {
		rng_text(to, sizeof(to), 8);
		/* now and then a body long enough to hit the limit */
		rng_text(body, sizeof(body), rng_below(8) == 0 ? 600 : 60);
		rng_text(from, sizeof(from), 8);
		wire_init(&m, (enum wire_kind)(1 + rng_below(WK_COUNT - 1)), to,
		    body, from);
		n = (int)rng_below(WIRE_EXT_MAX + 1);
		for (i = 0; i < n; i++) {
			do
				rng_key(keys[i]);
			while (wire_get(&m, keys[i]) != NULL);
			rng_text(vals[i], sizeof(vals[i]), 6);
			if (rng_below(3) == 0)
				assert_int_equal(
				    wire_add_u64(&m, keys[i],
					rng_next() >> rng_below(64)),
				    0);
			else
				assert_int_equal(
				    wire_add(&m, keys[i], vals[i]), 0);
		}
		rlen = ref_encode(&m, ref, sizeof(ref));
		err = wire_encode(&m, out, sizeof(out), &len);
		if (rlen > WIRE_MAX) {
			assert_int_equal(err, WIRE_ETOOBIG);
			big++;
			continue;
		}
		assert_int_equal(err, WIRE_OK);
		assert_int_equal(len, rlen);
		assert_memory_equal(out, ref, len);

		assert_int_equal(wire_decode(&d, out, len), WIRE_OK);
		assert_int_equal(d.kind, m.kind);
		assert_string_equal(d.to, m.to);
		assert_string_equal(d.body, m.body);
		assert_string_equal(d.from, m.from);
		assert_int_equal(d.next, m.next);
		for (i = 0; i < m.next; i++) {
			assert_string_equal(d.ext[i].key, m.ext[i].key);
			assert_string_equal(d.ext[i].val, m.ext[i].val);
		}
		ok++;
	}
	/* Both outcomes must really have been exercised. */
	assert_true(ok > ROUNDTRIP_ITERATIONS / 2);
	assert_true(big > 0);
}

/*
 * Building messages and reading extensions.
 */

static void
wire_add_should_refuse_more_than_ext_max(void **state)
{
	struct wire_msg m;
	char keys[WIRE_EXT_MAX][WIRE_KEY_MAX + 1];
	int i, r;

	(void)state;
	wire_init(&m, WK_REPL, "", "", "s");
	for (i = 0; i < WIRE_EXT_MAX; i++) {
		r = snprintf(keys[i], sizeof(keys[i]), "k%d", i);
		assert_true(r > 0 && (size_t)r < sizeof(keys[i]));
		assert_int_equal(wire_add(&m, keys[i], "v"), 0);
	}
	assert_int_equal(wire_add(&m, "extra", "v"), -1);
	assert_int_equal(wire_add_u64(&m, "extra", 1), -1);
	assert_int_equal(m.next, WIRE_EXT_MAX);
}

static void
wire_add_should_refuse_invalid_keys(void **state)
{
	static const char *const bad[] = {"", "A", "a-b", "a=b", "a@b", "a%b",
	    " a", "\xc3\xa9", "abcdefghijklmnop"};
	struct wire_msg m;
	size_t i;

	(void)state;
	wire_init(&m, WK_REPL, "", "", "s");
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(wire_add(&m, bad[i], "v"), -1);
		assert_int_equal(wire_add_u64(&m, bad[i], 1), -1);
	}
	assert_int_equal(wire_add(&m, NULL, "v"), -1);
	assert_int_equal(wire_add(&m, "k", NULL), -1);
	assert_int_equal(wire_add(NULL, "k", "v"), -1);
	assert_int_equal(m.next, 0);
	assert_int_equal(wire_add(&m, "abcdefghijklmno", "v"), 0);
	assert_int_equal(wire_add(&m, "a_0", "v"), 0);
	assert_int_equal(m.next, 2);
}

static void
wire_add_should_refuse_a_key_already_present(void **state)
{
	struct wire_msg m;

	(void)state;
	wire_init(&m, WK_REPL, "", "", "s");
	assert_int_equal(wire_add(&m, "seq", "1"), 0);
	assert_int_equal(wire_add(&m, "seq", "2"), -1);
	assert_int_equal(wire_add_u64(&m, "seq", 2), -1);
	assert_int_equal(m.next, 1);
	assert_string_equal(wire_get(&m, "seq"), "1");
}

static void
wire_add_u64_should_keep_its_digits_in_the_message(void **state)
{
	struct wire_msg m, d;
	char out[WIRE_MAX];
	size_t len;
	uint64_t v;

	(void)state;
	wire_init(&m, WK_BEAT, "", "", "leader");
	assert_int_equal(wire_add_u64(&m, "zero", 0), 0);
	assert_int_equal(wire_add_u64(&m, "max", UINT64_MAX), 0);
	assert_int_equal(wire_add(&m, "s", "x"), 0);
	assert_int_equal(wire_add_u64(&m, "ten", 10), 0);
	assert_string_equal(wire_get(&m, "zero"), "0");
	assert_string_equal(wire_get(&m, "max"), "18446744073709551615");
	assert_string_equal(wire_get(&m, "ten"), "10");
	assert_int_equal(wire_encode(&m, out, sizeof(out), &len), WIRE_OK);
	assert_memory_equal(out,
	    "beat@@@leader@zero=0@max=18446744073709551615@s=x@ten=10", len);
	assert_int_equal(wire_decode(&d, out, len), WIRE_OK);
	assert_int_equal(wire_get_u64(&d, "max", &v), 0);
	assert_true(v == UINT64_MAX);
	assert_int_equal(wire_get_u64(&d, "ten", &v), 0);
	assert_true(v == 10);
}

static void
wire_get_should_return_null_when_absent(void **state)
{
	struct wire_msg m;

	(void)state;
	assert_int_equal(decode_str(&m, "ack@@@s@a=1@b=2"), WIRE_OK);
	assert_string_equal(wire_get(&m, "a"), "1");
	assert_string_equal(wire_get(&m, "b"), "2");
	assert_null(wire_get(&m, "c"));
	assert_null(wire_get(&m, "A"));
	assert_null(wire_get(&m, ""));
	assert_null(wire_get(&m, NULL));
	assert_null(wire_get(NULL, "a"));
}

static void
wire_get_u64_should_parse_strict_decimal_only(void **state)
{
	static const struct {
		const char *val;
		int ok;
		uint64_t want;
	} cases[] = {
	    {"0", 1, 0}, {"7", 1, 7}, {"007", 1, 7},
	    {"00000000000000000000000000042", 1, 42},
	    {"4294967296", 1, 4294967296ULL},
	    {"18446744073709551615", 1, UINT64_MAX},
	    {"018446744073709551615", 1, UINT64_MAX},
	    {"18446744073709551616", 0, 0}, {"18446744073709551620", 0, 0},
	    {"99999999999999999999", 0, 0}, {"184467440737095516150", 0, 0},
	    {"", 0, 0}, {"-1", 0, 0}, {"-0", 0, 0}, {"%2B1", 0, 0},
	    {"%201", 0, 0}, {"1%20", 0, 0}, {"1%0A", 0, 0}, {"0x10", 0, 0},
	    {"1e3", 0, 0}, {"1.0", 0, 0},
	    {"\xd9\xa1", 0, 0}, /* ARABIC-INDIC DIGIT ONE */
	};
	struct wire_msg m;
	char buf[128];
	uint64_t v;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(buf, sizeof(buf), "beat@@@l@n=%s", cases[i].val);
		assert_int_equal(decode_str(&m, buf), WIRE_OK);
		v = 12345;
		if (cases[i].ok) {
			assert_int_equal(wire_get_u64(&m, "n", &v), 0);
			assert_true(v == cases[i].want);
		} else {
			if (wire_get_u64(&m, "n", &v) != -1)
				print_error("accepted \"%s\"\n", cases[i].val);
			assert_int_equal(wire_get_u64(&m, "n", &v), -1);
			assert_true(v == 12345);
		}
	}
	assert_int_equal(wire_get_u64(&m, "absent", &v), -1);
	assert_int_equal(wire_get_u64(&m, "n", NULL), -1);
}

/*
 * Names and texts.
 */

static void
kind_names_should_follow_the_enum_order(void **state)
{
	static const char *const names[] = {"news", "member", "voting",
	    "leader", "ack", "beat", "beatack", "probe", "probeack", "bye",
	    "repl", "snap", "need", "where", "vote", "newu", "login", "logout",
	    "msg", "join", "part", "rooms", "who", "users", "alive", "ok",
	    "err"};
	int k;

	(void)state;
	assert_int_equal(sizeof(names) / sizeof(names[0]), WK_COUNT - 1);
	for (k = WK_NONE + 1; k < WK_COUNT; k++) {
		assert_string_equal(
		    wire_kind_name((enum wire_kind)k), names[k - 1]);
		assert_int_equal(wire_kind_from_name(names[k - 1]), k);
	}
}

static void
kind_from_name_should_return_none_for_unknown(void **state)
{
	(void)state;
	assert_int_equal(wire_kind_from_name("none"), WK_NONE);
	assert_int_equal(wire_kind_from_name("MSG"), WK_NONE);
	assert_int_equal(wire_kind_from_name("msg "), WK_NONE);
	assert_int_equal(wire_kind_from_name("ms"), WK_NONE);
	assert_int_equal(wire_kind_from_name(""), WK_NONE);
	assert_int_equal(wire_kind_from_name(NULL), WK_NONE);
	assert_string_equal(wire_kind_name(WK_NONE), "none");
	assert_string_equal(wire_kind_name(WK_COUNT), "?");
}

static void
strerror_should_give_a_distinct_text_per_error(void **state)
{
	int i, j;

	(void)state;
	for (i = 0; i < WIRE_NERR; i++) {
		assert_non_null(wire_strerror((enum wire_err)i));
		assert_true(strlen(wire_strerror((enum wire_err)i)) > 0);
		for (j = 0; j < i; j++)
			assert_string_not_equal(wire_strerror((enum wire_err)i),
			    wire_strerror((enum wire_err)j));
	}
	assert_string_equal(
	    wire_strerror(WIRE_ETOOBIG), "datagram longer than 1472 bytes");
	assert_non_null(wire_strerror(WIRE_NERR));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(decode_should_parse_plain_message),
	    cmocka_unit_test(decode_should_accept_empty_to_body_and_from),
	    cmocka_unit_test(decode_should_recognise_every_kind),
	    cmocka_unit_test(decode_should_unescape_either_case_of_hex),
	    cmocka_unit_test(decode_should_accept_raw_non_ascii_utf8),
	    cmocka_unit_test(
		decode_should_accept_raw_equals_and_controls_in_fields),
	    cmocka_unit_test(decode_should_accept_utf8_boundaries),
	    cmocka_unit_test(decode_should_split_extension_at_first_equals),
	    cmocka_unit_test(
		decode_should_accept_longest_key_and_most_extensions),
	    cmocka_unit_test(decode_should_accept_exactly_wire_max_bytes),
	    cmocka_unit_test(decode_should_read_no_further_than_len),
	    cmocka_unit_test(
		decode_should_reject_datagram_longer_than_wire_max),
	    cmocka_unit_test(decode_should_reject_raw_nul),
	    cmocka_unit_test(decode_should_reject_fewer_than_four_fields),
	    cmocka_unit_test(decode_should_reject_empty_kind),
	    cmocka_unit_test(decode_should_reject_unknown_kind),
	    cmocka_unit_test(decode_should_reject_unescaped_percent),
	    cmocka_unit_test(decode_should_reject_truncated_or_non_hex_escape),
	    cmocka_unit_test(decode_should_reject_escaped_nul),
	    cmocka_unit_test(decode_should_reject_invalid_utf8),
	    cmocka_unit_test(decode_should_reject_extension_without_equals),
	    cmocka_unit_test(decode_should_reject_extension_with_empty_key),
	    cmocka_unit_test(decode_should_reject_extension_with_bad_key),
	    cmocka_unit_test(decode_should_reject_repeated_extension_key),
	    cmocka_unit_test(decode_should_reject_more_than_ext_max_extensions),
	    cmocka_unit_test(decode_should_report_errors_in_documented_order),
	    cmocka_unit_test(decode_should_check_size_before_anything_else),
	    cmocka_unit_test(decode_should_leave_an_empty_message_on_error),
	    cmocka_unit_test(decode_should_reject_null_arguments),
	    cmocka_unit_test(
		encode_should_produce_the_plain_form_for_plain_fields),
	    cmocka_unit_test(encode_should_escape_exactly_the_reserved_bytes),
	    cmocka_unit_test(
		encode_should_accept_exactly_wire_max_and_refuse_one_more),
	    cmocka_unit_test(encode_should_respect_a_small_output_buffer),
	    cmocka_unit_test(encode_should_write_nothing_past_len),
	    cmocka_unit_test(encode_should_refuse_null_fields),
	    cmocka_unit_test(encode_should_refuse_a_kind_not_in_the_table),
	    cmocka_unit_test(encode_should_refuse_invalid_or_repeated_keys),
	    cmocka_unit_test(encode_should_refuse_invalid_utf8),
	    cmocka_unit_test(
		roundtrip_should_preserve_random_fields_and_extensions),
	    cmocka_unit_test(wire_add_should_refuse_more_than_ext_max),
	    cmocka_unit_test(wire_add_should_refuse_invalid_keys),
	    cmocka_unit_test(wire_add_should_refuse_a_key_already_present),
	    cmocka_unit_test(
		wire_add_u64_should_keep_its_digits_in_the_message),
	    cmocka_unit_test(wire_get_should_return_null_when_absent),
	    cmocka_unit_test(wire_get_u64_should_parse_strict_decimal_only),
	    cmocka_unit_test(kind_names_should_follow_the_enum_order),
	    cmocka_unit_test(kind_from_name_should_return_none_for_unknown),
	    cmocka_unit_test(strerror_should_give_a_distinct_text_per_error),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
