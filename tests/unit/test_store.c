/* test_store: unit tests for the state files and JSON in src/store.c. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <sys/resource.h>
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cJSON.h>

#include "store.h"

#define U1 "1b4e28ba-2fa1-4d3b-a3f5-ef19b5a7633b"
#define U2 "6fa459ea-ee8a-4ca4-894e-db77e160355e"
#define U3 "c9bf9e57-1685-4c89-bafb-ff5af830be8a"

/* One valid server object with x spliced in before its closing brace. */
#define SRV(u, x)                                                              \
	"{\"uuid\":\"" u "\",\"name\":\"a\",\"addr\":\"10.0.0.1\","            \
	"\"port\":1,\"ctl_port\":2" x "}"
#define SERVERS(elems) "{\"version\":1,\"servers\":[" elems "]}"
/* One valid user object with x spliced in before its closing brace. */
#define USR(n, x)    "{\"name\":\"" n "\",\"addr\":\"10.0.0.9\",\"port\":9" x "}"
#define USERS(elems) "{\"version\":1,\"users\":[" elems "]}"

static char tmpdir[64];

static int
rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int
setup(void **state)
{
	(void)state;
	strlcpy(tmpdir, "/tmp/test_store.XXXXXX", sizeof(tmpdir));
	return mkdtemp(tmpdir) == NULL ? -1 : 0;
}

static int
teardown(void **state)
{
	(void)state;
	return nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* A fresh path in the test directory. */
static const char *
tpath(char *buf, const char *name)
{
	int n = snprintf(buf, PATH_MAX, "%s/%s", tmpdir, name);

	assert_true(n > 0 && n < PATH_MAX);
	unlink(buf);
	return buf;
}

static void
put_file(const char *path, const char *text, size_t len)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	assert_int_equal(fwrite(text, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

static char *
get_file(const char *path, size_t *lenp)
{
	FILE *f = fopen(path, "r");
	char *buf;
	long n;

	assert_non_null(f);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	assert_true(n >= 0);
	rewind(f);
	buf = calloc(1, (size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	if (lenp != NULL)
		*lenp = (size_t)n;
	return buf;
}

/* Entries of dir whose name has ".tmp" in it: leftovers of a write. */
static int
count_temps(const char *dir)
{
	struct dirent *e;
	DIR *d = opendir(dir);
	int n = 0;

	assert_non_null(d);
	while ((e = readdir(d)) != NULL) {
		if (strstr(e->d_name, ".tmp") != NULL)
			n++;
	}
	closedir(d);
	return n;
}

static void
assert_contains(const char *text, const char *want)
{
	if (strstr(text, want) == NULL)
		fail_msg("\"%s\" does not contain \"%s\"", text, want);
}

/* Parses text as servers.json, expects failure, returns the message. */
static const char *
servers_error(const char *text, size_t len, struct store_error *err)
{
	struct servers_state *s = calloc(1, sizeof(*s));

	assert_non_null(s);
	if (store_parse_servers("servers.json", text, len, s, err) != -1)
		fail_msg("accepted: %s", text);
	free(s);
	return err->text;
}

static const char *
users_error(const char *text, size_t len, struct store_error *err)
{
	struct users_state us;

	store_users_init(&us);
	if (store_parse_users("users.json", text, len, &us, err) != -1)
		fail_msg("accepted: %s", text);
	assert_int_equal(us.n, 0);
	store_users_free(&us);
	return err->text;
}

static void
fill_member(struct member *m, const char *uuid, const char *name,
    const char *addr, uint16_t port, uint16_t ctl_port)
{
	memset(m, 0, sizeof(*m));
	assert_int_equal(uuid_parse(&m->uuid, uuid), 0);
	strlcpy(m->name, name, sizeof(m->name));
	strlcpy(m->addr, addr, sizeof(m->addr));
	m->port = port;
	m->ctl_port = ctl_port;
}

static void
assert_same_member(const struct member *a, const struct member *b)
{
	assert_int_equal(uuid_cmp(&a->uuid, &b->uuid), 0);
	assert_string_equal(a->name, b->name);
	assert_string_equal(a->addr, b->addr);
	assert_int_equal(a->port, b->port);
	assert_int_equal(a->ctl_port, b->ctl_port);
	assert_int_equal(a->alive, b->alive);
	assert_int_equal(a->last_seen_wall, b->last_seen_wall);
}

static void
assert_same_user(const struct user *a, const struct user *b)
{
	size_t k;

	assert_string_equal(a->name, b->name);
	assert_string_equal(a->addr, b->addr);
	assert_int_equal(a->port, b->port);
	assert_int_equal(a->online, b->online);
	assert_int_equal(a->last_seen, b->last_seen);
	assert_int_equal(a->nrooms, b->nrooms);
	for (k = 0; k < a->nrooms; k++)
		assert_string_equal(a->rooms[k], b->rooms[k]);
	assert_string_equal(a->password, b->password);
}

/* ---- round trips ----------------------------------------------------- */

static void
write_then_read_servers_should_give_back_the_same_state(void **state)
{
	struct servers_state *in, *out;
	struct store_error err;
	char path[PATH_MAX], *text;
	struct stat st;
	size_t i, len;

	(void)state;
	in = calloc(1, sizeof(*in));
	out = calloc(1, sizeof(*out));
	assert_non_null(in);
	assert_non_null(out);
	in->version = UINT64_MAX;
	in->epoch = 1000000000000000ULL; /* cJSON alone would print 1e+15 */
	in->has_leader = true;
	assert_int_equal(uuid_parse(&in->leader, U3), 0);
	fill_member(&in->m[0], U1, "alpha", "192.168.56.11", 45961, 45962);
	fill_member(
	    &in->m[1], U2, "Zürich ☃ \"quoted\" \\", "10.0.0.2", 1, 65535);
	fill_member(&in->m[2], U3, "charlie", "255.255.255.255", 65535, 1);
	in->m[0].alive = true;
	in->m[0].last_seen_wall = 1795236600;
	in->m[2].last_seen_wall = 253402300799; /* 9999-12-31T23:59:59Z */
	in->n = 3;

	assert_int_equal(
	    store_write_servers(tpath(path, "servers.json"), in, &err), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0644);
	text = get_file(path, &len);
	assert_true(len > 0 && text[len - 1] == '\n');
	assert_contains(text, "\"version\":\t18446744073709551615");
	assert_contains(text, "\"epoch\":\t1000000000000000");
	assert_contains(text, "\"last_seen\":\t\"2026-11-21T04:50:00Z\"");
	assert_contains(text, "\"last_seen\":\tnull");
	free(text);

	memset(out, 0x5a, sizeof(*out));
	assert_int_equal(store_read_servers(path, out, &err), 0);
	assert_int_equal(out->version, in->version);
	assert_int_equal(out->epoch, in->epoch);
	assert_true(out->has_leader);
	assert_int_equal(uuid_cmp(&out->leader, &in->leader), 0);
	assert_int_equal(out->n, 3);
	for (i = 0; i < 3; i++) {
		assert_same_member(&out->m[i], &in->m[i]);
		assert_int_equal(out->m[i].last_seen_ms, 0);
	}
	free(in);
	free(out);
}

static void
write_then_read_servers_should_hold_ring_max_servers(void **state)
{
	struct servers_state *in, *out;
	struct store_error err;
	char path[PATH_MAX], name[RING_NAME_MAX];
	size_t i;

	(void)state;
	in = calloc(1, sizeof(*in));
	out = calloc(1, sizeof(*out));
	assert_non_null(in);
	assert_non_null(out);
	for (i = 0; i < RING_MAX; i++) {
		/* The longest name that fits: RING_NAME_MAX - 1 bytes. */
		memset(name, 'a' + (int)(i % 26), sizeof(name) - 1);
		name[sizeof(name) - 1] = '\0';
		fill_member(&in->m[i], U1, name, "10.1.2.3", 1000, 1001);
		in->m[i].uuid.b[15] = (uint8_t)i;
	}
	in->n = RING_MAX;
	assert_int_equal(
	    store_write_servers(tpath(path, "ring.json"), in, &err), 0);
	assert_int_equal(store_read_servers(path, out, &err), 0);
	assert_int_equal(out->n, RING_MAX);
	for (i = 0; i < RING_MAX; i++)
		assert_same_member(&out->m[i], &in->m[i]);
	assert_false(out->has_leader);
	free(in);
	free(out);
}

static void
write_then_read_users_should_give_back_ten_thousand_unicode_users(void **state)
{
	struct users_state in, out;
	struct store_error err;
	char path[PATH_MAX];
	struct user *u;
	size_t i, k;

	(void)state;
	store_users_init(&in);
	store_users_init(&out);
	for (i = 0; i < 10000; i++) {
		u = store_users_add(&in);
		assert_non_null(u);
		snprintf(u->name, sizeof(u->name), "ユーザー%05zu", i);
		snprintf(u->addr, sizeof(u->addr), "192.168.%zu.%zu", i / 250,
		    i % 250 + 1);
		u->port = (uint16_t)(1024 + i);
		u->online = i % 3 == 0;
		u->nrooms = i % (USER_ROOMS_MAX + 1);
		for (k = 0; k < u->nrooms; k++)
			snprintf(
			    u->rooms[k], sizeof(u->rooms[k]), "#r%zu-é", k);
		u->last_seen = i % 2 ? 1700000000 + (int64_t)i : 0;
	}
	assert_int_equal(in.n, 10000);
	assert_true(in.cap >= in.n);
	in.version = 12;
	assert_int_equal(
	    store_write_users(tpath(path, "users.json"), &in, &err), 0);
	assert_int_equal(store_read_users(path, &out, &err), 0);
	assert_int_equal(out.version, 12);
	assert_int_equal(out.n, in.n);
	for (i = 0; i < in.n; i++)
		assert_same_user(&out.u[i], &in.u[i]);
	assert_ptr_equal(store_users_find(&out, "ユーザー09999"), &out.u[9999]);
	assert_null(store_users_find(&out, "nobody"));
	store_users_free(&in);
	store_users_free(&out);
}

static void
read_users_should_replace_what_the_state_held(void **state)
{
	struct users_state us;
	struct store_error err;
	char path[PATH_MAX];
	const char *text = USERS(USR("x", ""));

	(void)state;
	store_users_init(&us);
	assert_non_null(store_users_add(&us));
	assert_non_null(store_users_add(&us));
	put_file(tpath(path, "u.json"), text, strlen(text));
	assert_int_equal(store_read_users(path, &us, &err), 0);
	assert_int_equal(us.n, 1);
	assert_string_equal(us.u[0].name, "x");
	store_users_free(&us);
	assert_null(us.u);
	assert_int_equal(us.n, 0);
	assert_int_equal(us.cap, 0);
}

static void
identity_should_round_trip(void **state)
{
	struct store_error err;
	char path[PATH_MAX], name[RING_NAME_MAX];
	struct uuid u, v;

	(void)state;
	uuid_generate(&u);
	assert_int_equal(store_write_identity(
			     tpath(path, "identity.json"), &u, "alpha-ß", &err),
	    0);
	assert_int_equal(
	    store_read_identity(path, &v, name, sizeof(name), &err), 0);
	assert_int_equal(uuid_cmp(&u, &v), 0);
	assert_string_equal(name, "alpha-ß");
}

static void
read_identity_should_refuse_a_name_longer_than_the_buffer(void **state)
{
	struct store_error err;
	char path[PATH_MAX], name[6] = "keep";
	const char *text = "{\"uuid\":\"" U1 "\",\"name\":\"abcdef\"}";
	struct uuid u;

	(void)state;
	put_file(tpath(path, "identity.json"), text, strlen(text));
	assert_int_equal(
	    store_read_identity(path, &u, name, sizeof(name), &err), -1);
	assert_contains(err.text, "name: too long (at most 5 bytes)");
	assert_string_equal(name, "keep");
}

static void
read_identity_should_check_the_uuid(void **state)
{
	struct store_error err;
	char path[PATH_MAX], name[RING_NAME_MAX];
	const char *text =
	    "{\n  \"uuid\": \"not-a-uuid\",\n  \"name\": \"a\"\n}";
	struct uuid u;

	(void)state;
	put_file(tpath(path, "identity.json"), text, strlen(text));
	assert_int_equal(
	    store_read_identity(path, &u, name, sizeof(name), &err), -1);
	assert_contains(err.text,
	    "identity.json:2:11: uuid: expected a UUID (8-4-4-4-12 hex "
	    "digits)");
}

static void
write_identity_should_refuse_an_empty_name(void **state)
{
	struct store_error err;
	char path[PATH_MAX];
	struct uuid u;

	(void)state;
	uuid_generate(&u);
	assert_int_equal(
	    store_write_identity(tpath(path, "identity.json"), &u, "", &err),
	    -1);
	assert_contains(err.text, "name: expected a non-empty string");
	assert_int_equal(access(path, F_OK), -1);
}

/* ---- absent files ---------------------------------------------------- */

static void
readers_should_return_1_and_empty_state_when_the_file_is_absent(void **state)
{
	struct servers_state *s = calloc(1, sizeof(*s));
	struct users_state us;
	struct store_error err;
	char path[PATH_MAX], name[RING_NAME_MAX];
	struct uuid u;

	(void)state;
	assert_non_null(s);
	s->n = 5;
	s->version = 9;
	assert_int_equal(
	    store_read_servers(tpath(path, "none.json"), s, &err), 1);
	assert_int_equal(s->n, 0);
	assert_int_equal(s->version, 0);
	store_users_init(&us);
	assert_non_null(store_users_add(&us));
	assert_int_equal(store_read_users(path, &us, &err), 1);
	assert_int_equal(us.n, 0);
	assert_int_equal(
	    store_read_identity(path, &u, name, sizeof(name), &err), 1);
	store_users_free(&us);
	free(s);
}

static void
readers_should_refuse_a_directory(void **state)
{
	struct servers_state *s = calloc(1, sizeof(*s));
	struct store_error err;

	(void)state;
	assert_non_null(s);
	assert_int_equal(store_read_servers(tmpdir, s, &err), -1);
	assert_contains(err.text, "not a regular file");
	free(s);
}

static void
readers_should_refuse_a_file_over_64_mib(void **state)
{
	struct servers_state *s = calloc(1, sizeof(*s));
	struct store_error err;
	char path[PATH_MAX];
	int fd;

	(void)state;
	assert_non_null(s);
	fd = open(tpath(path, "huge.json"), O_WRONLY | O_CREAT, 0644);
	assert_true(fd >= 0);
	/* Sparse: no disk is used. */
	assert_int_equal(ftruncate(fd, 64 * 1024 * 1024 + 1), 0);
	close(fd);
	assert_int_equal(store_read_servers(path, s, &err), -1);
	assert_contains(err.text, "too large");
	unlink(path);
	free(s);
}

/* ---- syntax errors --------------------------------------------------- */

static void
read_servers_should_name_line_and_column_of_a_syntax_error(void **state)
{
	static const char text[] =
	    "{\n"
	    "  \"version\": 1,\n"
	    "  \"servers\": [\n"
	    "    {\"uuid\": \"" U1 "\", \"name\": \"a\",\n"
	    "     \"addr\": \"10.0.0.1\", \"port\": 1, \"ctl_port\": 2}\n"
	    "    {\"uuid\": \"" U2 "\", \"name\": \"b\",\n"
	    "     \"addr\": \"10.0.0.2\", \"port\": 1, \"ctl_port\": 2}\n"
	    "  ]\n"
	    "}\n";
	struct servers_state *s = calloc(1, sizeof(*s));
	struct store_error err;
	char path[PATH_MAX], want[PATH_MAX + 64];

	(void)state;
	assert_non_null(s);
	put_file(tpath(path, "servers.json"), text, strlen(text));
	assert_int_equal(store_read_servers(path, s, &err), -1);
	snprintf(want, sizeof(want),
	    "%s:6:5: expected ',' or ']' but found '{'", path);
	assert_string_equal(err.text, want);
	free(s);
}

static void
syntax_error_columns_should_count_characters_not_bytes(void **state)
{
	static const char text[] = "{\"név\":\"é\" x}";
	struct store_error err;

	(void)state;
	assert_string_equal(servers_error(text, strlen(text), &err),
	    "servers.json:1:12: expected ',' or '}' but found 'x'");
}

static void
parse_should_refuse_every_truncation_of_a_valid_file(void **state)
{
	struct store_error err;
	char *text, *copy;
	size_t len, end, cut;
	const char *top = getenv("RINGCHAT_TOP");
	char path[PATH_MAX];

	(void)state;
	snprintf(
	    path, sizeof(path), "%s/servers.json", top != NULL ? top : ".");
	text = get_file(path, &len);
	end = (size_t)(strrchr(text, '}') - text);
	for (cut = 0; cut <= end; cut++) {
		/* A copy of exactly cut bytes, so ASan sees any over-read. */
		copy = malloc(cut + 1);
		assert_non_null(copy);
		memcpy(copy, text, cut);
		servers_error(copy, cut, &err);
		free(copy);
	}
	free(text);
}

static void
parse_should_say_end_of_file_for_a_truncated_file(void **state)
{
	static const char text[] = "{\n  \"version\": 1,\n  \"servers\": [\n";
	struct store_error err;

	(void)state;
	assert_string_equal(servers_error(text, strlen(text), &err),
	    "servers.json:4:1: expected a value or ']' but found end of "
	    "file");
	assert_string_equal(servers_error("", 0, &err),
	    "servers.json:1:1: expected a value but found end of file");
	assert_string_equal(servers_error("{\"a\":\"xyz", 9, &err),
	    "servers.json:1:6: unterminated string");
}

static void
parse_should_refuse_bytes_that_are_not_utf8(void **state)
{
	static const struct {
		const char *text;
		const char *want;
	} cases[] = {
	    {"{\"a\":\"al\xffha\"}", "servers.json:1:9: invalid UTF-8"},
	    /* overlong '/' */
	    {"{\"a\":\"\xc0\xaf\"}", "servers.json:1:7: invalid UTF-8"},
	    /* a UTF-16 surrogate encoded in UTF-8 */
	    {"{\"a\":\"\xed\xa0\x80\"}", "servers.json:1:7: invalid UTF-8"},
	    /* past U+10FFFF */
	    {"{\"a\":\"\xf4\x90\x80\x80\"}", "servers.json:1:7: invalid UTF-8"},
	    /* cut short at the end of the text */
	    {"{\"a\":\"\xe2\x98", "servers.json:1:7: invalid UTF-8"},
	    {"{\"a\":1,\xfe}",
		"servers.json:1:8: expected a string key but found invalid "
		"UTF-8 byte 0xfe"},
	};
	struct store_error err;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		assert_string_equal(
		    servers_error(cases[i].text, strlen(cases[i].text), &err),
		    cases[i].want);
}

static void
parse_should_refuse_what_json_forbids_even_where_cjson_is_lax(void **state)
{
	static const struct {
		const char *text;
		const char *want;
	} cases[] = {
	    {"{\"a\":01}", "1:6: malformed number (leading zero)"},
	    {"{\"a\":1.}", "1:6: malformed number"},
	    {"{\"a\":-}", "1:6: malformed number"},
	    {"{\"a\":1e}", "1:6: malformed number"},
	    {"{\"a\":+1}", "1:6: expected a value but found '+'"},
	    {"{\"a\":\"x\ty\"}", "1:8: control character in a string"},
	    {"{\"a\":\"x\ny\"}", "1:8: control character in a string"},
	    {"{\"a\":\"x\\u0000y\"}", "1:8: \\u0000 (NUL) in a string"},
	    {"{\"a\":\"\\ud800\"}", "1:7: unpaired UTF-16 surrogate"},
	    {"{\"a\":\"\\udc00\"}", "1:7: unpaired UTF-16 surrogate"},
	    {"{\"a\":\"\\u12\"}", "1:7: invalid \\u escape"},
	    {"{\"a\":\"\\q\"}", "1:7: invalid escape"},
	    {"{\"a\":1,}", "1:8: expected a string key but found '}'"},
	    {"[1,]", "1:4: expected a value but found ']'"},
	    {"{\"a\" 1}", "1:6: expected ':' but found '1'"},
	    {"{\"a\":1}x",
		"1:8: expected end of file after the value but found 'x'"},
	    {"{\"a\":1} {}",
		"1:9: expected end of file after the value but found '{'"},
	    {"{\"a\":tru}", "1:6: expected a value but found 't'"},
	    {"{\x01}",
		"1:2: expected a string key or '}' but found control "
		"character 0x01"},
	    {"{\"a\":"
	     "1234567890123456789012345678901234567890123456789012345678901234"
	     "}",
		"1:6: number too long"},
	};
	struct store_error err;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_contains(
		    servers_error(cases[i].text, strlen(cases[i].text), &err),
		    cases[i].want);
	}
	/* A NUL byte, which strlen would hide. */
	assert_contains(servers_error("{\"a\":1\0}", 8, &err),
	    "1:7: expected ',' or '}' but found control character 0x00");
}

static void
parse_should_refuse_nesting_deeper_than_64(void **state)
{
	char text[200];
	struct store_error err;
	size_t i;

	(void)state;
	for (i = 0; i < 65; i++)
		text[i] = '[';
	for (; i < 130; i++)
		text[i] = ']';
	assert_contains(servers_error(text, 130, &err),
	    "servers.json:1:65: nested too deeply");
}

static void
parse_should_skip_a_byte_order_mark(void **state)
{
	static const char text[] = "\xef\xbb\xbf" SERVERS(SRV(U1, ""));
	struct servers_state *s = calloc(1, sizeof(*s));
	struct store_error err;

	(void)state;
	assert_non_null(s);
	assert_int_equal(
	    store_parse_servers("servers.json", text, strlen(text), s, &err),
	    0);
	assert_int_equal(s->n, 1);
	free(s);
}

/* ---- schema errors --------------------------------------------------- */

struct schema_case {
	const char *text;
	const char *want;
};

static const struct schema_case servers_cases[] = {
    /* the top level */
    {"[]", "servers.json:1:1: expected an object at the top level"},
    {"7", "servers.json:1:1: expected an object at the top level"},
    {"{\"servers\":[]}", "servers.json:1:1: missing \"version\""},
    {"{\"version\":1}", "servers.json:1:1: missing \"servers\""},
    {"{\"version\":1,\"servers\":{}}",
	"servers.json:1:24: servers: expected an array"},
    {"{\"version\":1,\"version\":2,\"servers\":[]}",
	"servers.json:1:24: version: duplicate key"},
    /* integers: exact, non-negative, no fraction or exponent */
    {"{\"version\":-1,\"servers\":[]}",
	"servers.json:1:12: version: expected an integer "
	"0..18446744073709551615"},
    {"{\"version\":1.5,\"servers\":[]}", "1:12: version: expected an integer"},
    {"{\"version\":7.0,\"servers\":[]}", "1:12: version: expected an integer"},
    {"{\"version\":1e3,\"servers\":[]}", "1:12: version: expected an integer"},
    {"{\"version\":\"7\",\"servers\":[]}",
	"1:12: version: expected an integer"},
    {"{\"version\":null,\"servers\":[]}", "version: expected an integer"},
    {"{\"version\":18446744073709551616,\"servers\":[]}",
	"version: expected an integer"},
    {"{\"version\":1,\"epoch\":-3,\"servers\":[]}",
	"1:22: epoch: expected an integer"},
    {"{\"version\":1,\"epoch\":2.5,\"servers\":[]}",
	"epoch: expected an integer"},
    {"{\"version\":1,\"leader\":\"nope\",\"servers\":[]}",
	"1:23: leader: expected null or a UUID"},
    {"{\"version\":1,\"leader\":5,\"servers\":[]}",
	"leader: expected null or a UUID"},
    /* the elements */
    {SERVERS("1"), "1:25: servers[0]: expected an object"},
    {SERVERS(SRV(U1, "") ",[]"), "1:124: servers[1]: expected an object"},
    {SERVERS(
	 "{\"name\":\"a\",\"addr\":\"10.0.0.1\",\"port\":1,\"ctl_port\":2}"),
	"1:25: servers[0]: missing \"uuid\""},
    {SERVERS(SRV("1b4e28ba2fa14d3ba3f5ef19b5a7633b", "")),
	"1:33: servers[0].uuid: expected a UUID (8-4-4-4-12 hex digits)"},
    {SERVERS(SRV("1b4e28ba-2fa1-4d3b-a3f5-ef19b5a7633g", "")),
	"servers[0].uuid: expected a UUID"},
    {SERVERS("{\"uuid\":7}"), "servers[0].uuid: expected a UUID"},
    {SERVERS(SRV(U1, "") "," SRV(U2, "") "," SRV(U1, "")),
	"servers[2].uuid: duplicate of servers[0].uuid"},
    {SERVERS(SRV(U1, ",\"port\":3")), "servers[0].port: duplicate key"},
    {SERVERS("{\"uuid\":\"" U1 "\",\"name\":\"\",\"addr\":\"10.0.0.1\","
	     "\"port\":1,\"ctl_port\":2}"),
	"servers[0].name: expected a non-empty string"},
    {SERVERS("{\"uuid\":\"" U1 "\",\"name\":\""
	     "1234567890123456789012345678901234567890123456789012345678901234"
	     "\",\"addr\":\"10.0.0.1\",\"port\":1,\"ctl_port\":2}"),
	"servers[0].name: too long (at most 63 bytes)"},
    {SERVERS("{\"uuid\":\"" U1 "\",\"name\":5,\"addr\":\"10.0.0.1\","
	     "\"port\":1,\"ctl_port\":2}"),
	"servers[0].name: expected a string"},
    {SERVERS("{\"uuid\":\"" U1 "\",\"name\":\"a\\u0001b\",\"addr\":"
	     "\"10.0.0.1\",\"port\":1,\"ctl_port\":2}"),
	"servers[0].name: control character in a name"},
    {SERVERS("{\"uuid\":\"" U1 "\",\"name\":\"a\",\"addr\":\"256.1.1.1\","
	     "\"port\":1,\"ctl_port\":2}"),
	"servers[0].addr: expected a dotted IPv4 address"},
    {SERVERS("{\"uuid\":\"" U1 "\",\"name\":\"a\",\"addr\":\"localhost\","
	     "\"port\":1,\"ctl_port\":2}"),
	"servers[0].addr: expected a dotted IPv4 address"},
    {SERVERS("{\"uuid\":\"" U1 "\",\"name\":\"a\",\"addr\":\"10.0.0\","
	     "\"port\":1,\"ctl_port\":2}"),
	"servers[0].addr: expected a dotted IPv4 address"},
    {SERVERS("{\"uuid\":\"" U1 "\",\"name\":\"a\",\"addr\":\"::1\","
	     "\"port\":1,\"ctl_port\":2}"),
	"servers[0].addr: expected a dotted IPv4 address"},
    {SERVERS("{\"uuid\":\"" U1 "\",\"name\":\"a\",\"addr\":167772161,"
	     "\"port\":1,\"ctl_port\":2}"),
	"servers[0].addr: expected a dotted IPv4 address"},
    {SERVERS("{\"uuid\":\"" U1 "\",\"name\":\"a\",\"addr\":\"10.0.0.1\","
	     "\"port\":0,\"ctl_port\":2}"),
	"servers[0].port: expected an integer 1..65535"},
    {SERVERS("{\"uuid\":\"" U1 "\",\"name\":\"a\",\"addr\":\"10.0.0.1\","
	     "\"port\":65536,\"ctl_port\":2}"),
	"servers[0].port: expected an integer 1..65535"},
    {SERVERS("{\"uuid\":\"" U1 "\",\"name\":\"a\",\"addr\":\"10.0.0.1\","
	     "\"port\":-80,\"ctl_port\":2}"),
	"servers[0].port: expected an integer 1..65535"},
    {SERVERS("{\"uuid\":\"" U1 "\",\"name\":\"a\",\"addr\":\"10.0.0.1\","
	     "\"port\":80.5,\"ctl_port\":2}"),
	"servers[0].port: expected an integer 1..65535"},
    {SERVERS("{\"uuid\":\"" U1 "\",\"name\":\"a\",\"addr\":\"10.0.0.1\","
	     "\"port\":\"80\",\"ctl_port\":2}"),
	"servers[0].port: expected an integer 1..65535"},
    {SERVERS("{\"uuid\":\"" U1 "\",\"name\":\"a\",\"addr\":\"10.0.0.1\","
	     "\"port\":1}"),
	"servers[0]: missing \"ctl_port\""},
    {SERVERS("{\"uuid\":\"" U1 "\",\"name\":\"a\",\"addr\":\"10.0.0.1\","
	     "\"port\":1,\"ctl_port\":70000}"),
	"servers[0].ctl_port: expected an integer 1..65535"},
    {SERVERS(SRV(U1, ",\"alive\":\"yes\"")),
	"servers[0].alive: expected true or false"},
    {SERVERS(SRV(U1, ",\"alive\":1")),
	"servers[0].alive: expected true or false"},
    {SERVERS(SRV(U1, ",\"last_seen\":\"2026-02-30T00:00:00Z\"")),
	"servers[0].last_seen: expected null or a UTC time "
	"\"YYYY-MM-DDTHH:MM:SSZ\""},
    {SERVERS(SRV(U1, ",\"last_seen\":\"2026-11-21 04:50:00Z\"")),
	"servers[0].last_seen: expected null or a UTC time"},
    {SERVERS(SRV(U1, ",\"last_seen\":\"2026-11-21T04:50:00+00:00\"")),
	"servers[0].last_seen: expected null or a UTC time"},
    {SERVERS(SRV(U1, ",\"last_seen\":\"2026-11-21T24:00:00Z\"")),
	"servers[0].last_seen: expected null or a UTC time"},
    {SERVERS(SRV(U1, ",\"last_seen\":\"2026-11-21T04:50:60Z\"")),
	"servers[0].last_seen: expected null or a UTC time"},
    {SERVERS(SRV(U1, ",\"last_seen\":\"1969-12-31T23:59:59Z\"")),
	"servers[0].last_seen: expected null or a UTC time"},
    {SERVERS(SRV(U1, ",\"last_seen\":\"2026-11-21T04:50:00.5Z\"")),
	"servers[0].last_seen: expected null or a UTC time"},
    {SERVERS(SRV(U1, ",\"last_seen\":1795236600")),
	"servers[0].last_seen: expected null or a UTC time"},
};

static const struct schema_case users_cases[] = {
    {"{\"version\":1}", "users.json:1:1: missing \"users\""},
    {"{\"version\":1,\"users\":null}", "1:22: users: expected an array"},
    {"{\"users\":[]}", "users.json:1:1: missing \"version\""},
    {USERS("\"alice\""), "1:23: users[0]: expected an object"},
    {USERS("{\"addr\":\"10.0.0.9\",\"port\":9}"), "users[0]: missing \"name\""},
    {USERS(USR("12345678901234567890123456789012", "")),
	"users[0].name: too long (at most 31 bytes)"},
    {USERS(USR("", "")), "users[0].name: expected a non-empty string"},
    {USERS("{\"name\":\"a\",\"addr\":\"10.0.0.256\",\"port\":9}"),
	"users[0].addr: expected a dotted IPv4 address"},
    {USERS("{\"name\":\"a\",\"addr\":\"10.0.0.9\",\"port\":0}"),
	"users[0].port: expected an integer 1..65535"},
    {USERS("{\"name\":\"a\",\"addr\":\"10.0.0.9\"}"),
	"users[0]: missing \"port\""},
    {USERS(USR("a", ",\"online\":\"no\"")),
	"users[0].online: expected true or false"},
    {USERS(USR("a", ",\"last_seen\":\"yesterday\"")),
	"users[0].last_seen: expected null or a UTC time"},
    {USERS(USR("a", ",\"rooms\":\"#general\"")),
	"users[0].rooms: expected an array of rooms"},
    {USERS(USR("a", ",\"rooms\":[\"general\"]")),
	"users[0].rooms[0]: expected a room name starting with '#'"},
    {USERS(USR("a", ",\"rooms\":[\"#ok\",\"#\"]")),
	"users[0].rooms[1]: expected a room name after '#'"},
    {USERS(USR("a", ",\"rooms\":[5]")), "users[0].rooms[0]: expected a string"},
    {USERS(USR("a", ",\"rooms\":[\"#2345678901234567890123456789012\"]")),
	"users[0].rooms[0]: too long (at most 31 bytes)"},
    {USERS(USR("a", ",\"rooms\":[\"#a\\tb\"]")),
	"users[0].rooms[0]: control character in a name"},
    {USERS(USR("a", ",\"rooms\":[\"#a\",\"#b\",\"#a\"]")),
	"users[0].rooms[2]: duplicate of rooms[0]"},
    {USERS(USR("a",
	 ",\"rooms\":[\"#1\",\"#2\",\"#3\",\"#4\",\"#5\",\"#6\","
	 "\"#7\",\"#8\",\"#9\",\"#10\",\"#11\",\"#12\",\"#13\","
	 "\"#14\",\"#15\",\"#16\",\"#17\"]")),
	"users[0].rooms[16]: more than 16 rooms"},
    {USERS(USR("bob", "") "," USR("carol", "") "," USR("dave", "") "," USR(
	 "carol", "") "," USR("bob", "")),
	"users[3].name: duplicate of users[1].name"},
    {USERS(USR("a", ",\"name\":\"b\"")), "users[0].name: duplicate key"},
};

static void
parse_servers_should_name_the_path_of_each_schema_error(void **state)
{
	struct store_error err;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(servers_cases) / sizeof(servers_cases[0]); i++) {
		servers_error(
		    servers_cases[i].text, strlen(servers_cases[i].text), &err);
		assert_contains(err.text, servers_cases[i].want);
		/* And always where: "servers.json:LINE:COL: ". */
		assert_true(strncmp(err.text, "servers.json:1:", 15) == 0);
	}
}

static void
parse_users_should_name_the_path_of_each_schema_error(void **state)
{
	struct store_error err;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(users_cases) / sizeof(users_cases[0]); i++) {
		users_error(
		    users_cases[i].text, strlen(users_cases[i].text), &err);
		assert_contains(err.text, users_cases[i].want);
		assert_true(strncmp(err.text, "users.json:1:", 13) == 0);
	}
}

static void
parse_servers_should_refuse_more_than_ring_max_servers(void **state)
{
	char *text, *p;
	struct store_error err;
	size_t i, sz = 64 + (RING_MAX + 1) * 160;

	(void)state;
	text = calloc(1, sz);
	assert_non_null(text);
	p = text + sprintf(text, "{\"version\":1,\"servers\":[");
	for (i = 0; i <= RING_MAX; i++)
		p += sprintf(p,
		    "%s{\"uuid\":\"00000000-0000-0000-0000-%012zx\","
		    "\"name\":\"s\",\"addr\":\"10.0.0.1\",\"port\":1,"
		    "\"ctl_port\":2}",
		    i ? ",\n" : "", i);
	strcpy(p, "]}");
	assert_contains(servers_error(text, strlen(text), &err),
	    "servers.json:65:1: servers[64]: more than 64 servers");
	free(text);
}

static void
schema_errors_should_point_at_the_line_and_column_of_the_value(void **state)
{
	static const char text[] =
	    "{\n"
	    "    \"version\": 1,\n"
	    "    \"servers\": [\n"
	    "        {\"uuid\": \"" U1 "\", \"name\": \"a\", \"addr\": "
	    "\"10.0.0.1\", \"port\": 1, \"ctl_port\": 2},\n"
	    "        {\"uuid\": \"" U2 "\", \"name\": \"b\", \"addr\": "
	    "\"10.0.0.2\",\n"
	    "         \"port\": 70000, \"ctl_port\": 2}\n"
	    "    ]\n"
	    "}\n";
	struct store_error err;

	(void)state;
	assert_string_equal(servers_error(text, strlen(text), &err),
	    "servers.json:6:18: servers[1].port: expected an integer "
	    "1..65535");
}

static void
schema_errors_should_be_located_past_tricky_strings_and_keys(void **state)
{
	/*
	 * Brackets, commas and escaped quotes inside strings, an escaped
	 * key, nested unknown keys: none of them may mislead the locator.
	 */
	static const char text[] =
	    "{\"x\":{\"a\":[\"]}\\\"\",{\"b\":\"}\"}]},\"v\\u0065rsion\":1,"
	    "\"servers\":[{\"note\":\"a,b]}\\\\\",\"uuid\":\"zz\"}]}";
	struct store_error err;
	char want[128];

	(void)state;
	snprintf(want, sizeof(want),
	    "servers.json:1:%zu: servers[0].uuid: expected a UUID",
	    (size_t)(strstr(text, "\"zz\"") - text) + 1);
	assert_contains(servers_error(text, strlen(text), &err), want);
}

static void
a_failed_parse_should_leave_the_output_untouched(void **state)
{
	static const char text[] =
	    SERVERS(SRV(U1, "") "," SRV(U2, "") "," SRV(U3, ",\"port\":0"));
	static const char utext[] =
	    USERS(USR("x", "") "," USR("y", ",\"rooms\":[\"bad\"]"));
	struct servers_state *s = malloc(sizeof(*s)), *before;
	struct users_state us;
	struct store_error err;
	struct user *keep;

	(void)state;
	before = malloc(sizeof(*before));
	assert_non_null(s);
	assert_non_null(before);
	memset(s, 0x5a, sizeof(*s));
	memcpy(before, s, sizeof(*s));
	assert_int_equal(
	    store_parse_servers("servers.json", text, strlen(text), s, &err),
	    -1);
	assert_memory_equal(s, before, sizeof(*s));

	store_users_init(&us);
	keep = store_users_add(&us);
	assert_non_null(keep);
	strlcpy(keep->name, "kept", sizeof(keep->name));
	assert_int_equal(
	    store_parse_users("users.json", utext, strlen(utext), &us, &err),
	    -1);
	assert_int_equal(us.n, 1);
	assert_ptr_equal(us.u, keep);
	assert_string_equal(us.u[0].name, "kept");
	store_users_free(&us);
	free(s);
	free(before);
}

static void
parse_should_ignore_unknown_keys_and_default_optional_ones(void **state)
{
	static const char text[] =
	    "{\"format\":{\"future\":[1,2,{\"x\":null}]},\"version\":3,"
	    "\"servers\":[{\"zone\":\"b\",\"uuid\":\"" U1 "\",\"name\":\"a\","
	    "\"addr\":\"10.0.0.1\",\"port\":1,\"ctl_port\":2,\"w\":1.5e300}],"
	    "\"extra\":true}";
	static const char utext[] =
	    "{\"version\":0,\"users\":[{\"name\":\"a\",\"addr\":\"10.0.0.1\","
	    "\"port\":5,\"avatar\":\"x\"}],\"motd\":\"hi\"}";
	struct servers_state *s = calloc(1, sizeof(*s));
	struct users_state us;
	struct store_error err;

	(void)state;
	assert_non_null(s);
	assert_int_equal(
	    store_parse_servers("servers.json", text, strlen(text), s, &err),
	    0);
	assert_int_equal(s->version, 3);
	assert_int_equal(s->epoch, 0);
	assert_false(s->has_leader);
	assert_int_equal(s->n, 1);
	assert_false(s->m[0].alive);
	assert_int_equal(s->m[0].last_seen_wall, 0);
	store_users_init(&us);
	assert_int_equal(
	    store_parse_users("users.json", utext, strlen(utext), &us, &err),
	    0);
	assert_int_equal(us.n, 1);
	assert_false(us.u[0].online);
	assert_int_equal(us.u[0].nrooms, 0);
	assert_int_equal(us.u[0].last_seen, 0);
	store_users_free(&us);
	free(s);
}

static void
parse_should_read_rfc3339_utc_times_as_seconds(void **state)
{
	static const struct {
		const char *t;
		int64_t want;
	} cases[] = {
	    {"\"1970-01-01T00:00:00Z\"", 0},
	    {"\"2000-01-01T00:00:00Z\"", 946684800},
	    {"\"2024-02-29T12:00:00Z\"", 1709208000},
	    {"\"2026-11-21T04:50:00Z\"", 1795236600},
	    {"\"9999-12-31T23:59:59Z\"", INT64_C(253402300799)},
	    {"null", 0},
	};
	struct servers_state *s = calloc(1, sizeof(*s));
	struct store_error err;
	char text[512];
	size_t i;

	(void)state;
	assert_non_null(s);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(text, sizeof(text),
		    "{\"version\":1,\"servers\":[{\"uuid\":\"" U1
		    "\",\"name\":\"a\",\"addr\":\"10.0.0.1\",\"port\":1,"
		    "\"ctl_port\":2,\"last_seen\":%s}]}",
		    cases[i].t);
		assert_int_equal(
		    store_parse_servers("s", text, strlen(text), s, &err), 0);
		assert_int_equal(s->m[0].last_seen_wall, cases[i].want);
	}
	free(s);
}

static void
parse_should_accept_the_largest_version(void **state)
{
	static const char text[] =
	    "{\"version\":18446744073709551615,\"epoch\":0,\"leader\":null,"
	    "\"servers\":[]}";
	struct servers_state *s = calloc(1, sizeof(*s));
	struct store_error err;

	(void)state;
	assert_non_null(s);
	assert_int_equal(
	    store_parse_servers("s", text, strlen(text), s, &err), 0);
	assert_int_equal(s->version, UINT64_MAX);
	assert_int_equal(s->n, 0);
	free(s);
}

static void
readers_should_accept_the_example_files(void **state)
{
	struct servers_state *s = calloc(1, sizeof(*s));
	struct users_state us;
	struct store_error err;
	const char *top = getenv("RINGCHAT_TOP");
	char path[PATH_MAX], b[UUID_STRLEN + 1];
	size_t i;

	(void)state;
	assert_non_null(s);
	if (top == NULL)
		top = ".";
	snprintf(path, sizeof(path), "%s/servers.json", top);
	if (store_read_servers(path, s, &err) != 0)
		fail_msg("%s", err.text);
	assert_int_equal(s->n, 3);
	assert_true(s->has_leader);
	assert_string_equal(uuid_format(&s->leader, b), U3);
	for (i = 0; i < s->n; i++) {
		assert_int_equal(s->m[i].port, 45961);
		assert_int_equal(s->m[i].ctl_port, 45962);
	}
	assert_string_equal(s->m[0].addr, "192.168.56.11");
	assert_int_equal(s->m[0].last_seen_wall, 1795236600);
	snprintf(path, sizeof(path), "%s/users.json", top);
	store_users_init(&us);
	if (store_read_users(path, &us, &err) != 0)
		fail_msg("%s", err.text);
	assert_int_equal(us.n, 3);
	assert_string_equal(us.u[0].name, "alice");
	assert_string_equal(us.u[1].name, "bob");
	assert_string_equal(us.u[2].name, "carol");
	assert_int_equal(us.u[0].nrooms, 2);
	assert_string_equal(us.u[0].rooms[0], "#general");
	assert_int_equal(us.u[2].last_seen, 0);
	/* alice's password is "correct horse battery staple" */
	assert_int_equal(auth_pw_verify(us.u[0].password,
			     "correct horse battery staple", 28),
	    AUTH_OK);
	assert_string_equal(us.u[1].password, "");
	store_users_free(&us);
	free(s);
}

/* ---- writers --------------------------------------------------------- */

static void
write_atomic_should_replace_the_file_and_leave_no_temporary_file(void **state)
{
	struct store_error err;
	char path[PATH_MAX], *got;
	size_t len;

	(void)state;
	tpath(path, "atomic.txt");
	put_file(path, "old\n", 4);
	assert_int_equal(
	    store_write_atomic(path, "new content\n", 12, &err), 0);
	got = get_file(path, &len);
	assert_int_equal(len, 12);
	assert_memory_equal(got, "new content\n", 12);
	free(got);
	assert_int_equal(store_write_atomic(path, "", 0, &err), 0);
	got = get_file(path, &len);
	assert_int_equal(len, 0);
	free(got);
	assert_int_equal(count_temps(tmpdir), 0);
}

static void
write_atomic_should_fail_without_a_trace_in_a_missing_directory(void **state)
{
	struct store_error err;
	char path[PATH_MAX];

	(void)state;
	snprintf(path, sizeof(path), "%s/missing/servers.json", tmpdir);
	assert_int_equal(store_write_atomic(path, "x", 1, &err), -1);
	assert_contains(err.text, path);
	assert_contains(err.text, "No such file or directory");
	assert_int_equal(count_temps(tmpdir), 0);
}

static void
write_atomic_should_keep_the_old_file_when_the_rename_fails(void **state)
{
	struct store_error err;
	char dir[PATH_MAX], path[PATH_MAX], inner[PATH_MAX + 16];
	struct stat st;

	(void)state;
	/* Root may write anywhere, but cannot rename a file over a
	 * non-empty directory. */
	snprintf(dir, sizeof(dir), "%s/d", tmpdir);
	assert_int_equal(mkdir(dir, 0755), 0);
	snprintf(path, sizeof(path), "%s/d/servers.json", tmpdir);
	assert_int_equal(mkdir(path, 0755), 0);
	snprintf(inner, sizeof(inner), "%s/keep", path);
	put_file(inner, "k", 1);
	assert_int_equal(store_write_atomic(path, "{}\n", 3, &err), -1);
	assert_contains(err.text, "rename");
	assert_contains(err.text, "file left unchanged");
	assert_int_equal(stat(path, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(count_temps(dir), 0);
}

static void
write_atomic_should_keep_the_old_file_when_a_write_fails(void **state)
{
	struct store_error err;
	char path[PATH_MAX], *big, *got;
	struct rlimit old, lim;
	void (*oldsig)(int);
	size_t len;

	(void)state;
	tpath(path, "servers.json");
	put_file(path, "old\n", 4);
	big = malloc(100000);
	assert_non_null(big);
	memset(big, 'x', 100000);
	/* A file size limit makes write(2) stop short, then fail. */
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	oldsig = signal(SIGXFSZ, SIG_IGN);
	lim = old;
	lim.rlim_cur = 4096;
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
	assert_int_equal(store_write_atomic(path, big, 100000, &err), -1);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	signal(SIGXFSZ, oldsig);
	assert_contains(err.text, "write");
	assert_contains(err.text, "File too large");
	got = get_file(path, &len);
	assert_int_equal(len, 4);
	assert_memory_equal(got, "old\n", 4);
	free(got);
	free(big);
	assert_int_equal(count_temps(tmpdir), 0);
}

static void
write_servers_should_refuse_what_a_reader_would_refuse(void **state)
{
	struct servers_state *s = calloc(1, sizeof(*s));
	struct store_error err;
	char path[PATH_MAX], *got;
	size_t len;

	(void)state;
	assert_non_null(s);
	tpath(path, "servers.json");
	put_file(path, "old\n", 4);
	fill_member(&s->m[0], U1, "a", "10.0.0.1", 1, 2);
	fill_member(&s->m[1], U1, "b", "10.0.0.2", 1, 2);
	s->n = 2;
	assert_int_equal(store_write_servers(path, s, &err), -1);
	assert_contains(err.text,
	    "servers[1].uuid: duplicate of servers[0].uuid (not written)");
	s->m[1].uuid.b[0] ^= 1;
	s->m[1].name[0] = '\0';
	assert_int_equal(store_write_servers(path, s, &err), -1);
	assert_contains(err.text, "servers[1].name: expected a non-empty");
	strlcpy(s->m[1].name, "b", sizeof(s->m[1].name));
	strlcpy(s->m[1].addr, "10.0.0", sizeof(s->m[1].addr));
	assert_int_equal(store_write_servers(path, s, &err), -1);
	assert_contains(err.text, "servers[1].addr: expected a dotted IPv4");
	strlcpy(s->m[1].addr, "10.0.0.2", sizeof(s->m[1].addr));
	s->m[1].ctl_port = 0;
	assert_int_equal(store_write_servers(path, s, &err), -1);
	assert_contains(err.text, "servers[1].ctl_port: expected an integer");
	s->m[1].ctl_port = 2;
	s->m[1].last_seen_wall = -5;
	assert_int_equal(store_write_servers(path, s, &err), -1);
	assert_contains(err.text, "servers[1].last_seen: out of range");
	s->n = RING_MAX + 1;
	assert_int_equal(store_write_servers(path, s, &err), -1);
	assert_contains(err.text, "more than 64 servers");
	got = get_file(path, &len);
	assert_int_equal(len, 4);
	assert_memory_equal(got, "old\n", 4);
	free(got);
	assert_int_equal(count_temps(tmpdir), 0);
	free(s);
}

static void
write_users_should_refuse_duplicate_names_and_bad_rooms(void **state)
{
	struct users_state us;
	struct store_error err;
	char path[PATH_MAX];
	struct user *u;
	size_t i;

	(void)state;
	store_users_init(&us);
	for (i = 0; i < 3; i++) {
		u = store_users_add(&us);
		assert_non_null(u);
		snprintf(u->name, sizeof(u->name), "u%zu", i);
		strlcpy(u->addr, "10.0.0.1", sizeof(u->addr));
		u->port = 7;
	}
	strlcpy(us.u[2].name, "u0", sizeof(us.u[2].name));
	assert_int_equal(
	    store_write_users(tpath(path, "users.json"), &us, &err), -1);
	assert_contains(err.text, "users[2].name: duplicate of users[0].name");
	strlcpy(us.u[2].name, "u2", sizeof(us.u[2].name));
	us.u[1].nrooms = 2;
	strlcpy(us.u[1].rooms[0], "#a", sizeof(us.u[1].rooms[0]));
	strlcpy(us.u[1].rooms[1], "b", sizeof(us.u[1].rooms[1]));
	assert_int_equal(store_write_users(path, &us, &err), -1);
	assert_contains(err.text, "users[1].rooms[1]: expected a room name");
	strlcpy(us.u[1].rooms[1], "#a", sizeof(us.u[1].rooms[1]));
	assert_int_equal(store_write_users(path, &us, &err), -1);
	assert_contains(err.text, "users[1].rooms[1]: duplicate of rooms[0]");
	us.u[1].nrooms = USER_ROOMS_MAX + 1;
	assert_int_equal(store_write_users(path, &us, &err), -1);
	assert_contains(err.text, "users[1].rooms: more than 16 rooms");
	us.u[1].nrooms = 0;
	memset(us.u[0].name, 'n', sizeof(us.u[0].name)); /* no NUL */
	assert_int_equal(store_write_users(path, &us, &err), -1);
	assert_contains(err.text, "users[0].name: too long");
	assert_int_equal(access(path, F_OK), -1);
	strlcpy(us.u[0].name, "u0", sizeof(us.u[0].name));
	assert_int_equal(store_write_users(path, &us, &err), 0);
	assert_int_equal(count_temps(tmpdir), 0);
	store_users_free(&us);
}

static void
format_should_give_the_text_the_writer_writes(void **state)
{
	struct servers_state *s = calloc(1, sizeof(*s)), *back;
	struct store_error err;
	char *text;
	size_t len = 0;

	(void)state;
	back = calloc(1, sizeof(*back));
	assert_non_null(s);
	assert_non_null(back);
	fill_member(&s->m[0], U2, "b", "10.0.0.2", 3, 4);
	s->n = 1;
	s->version = 2;
	text = store_format_servers(s, &len, &err);
	assert_non_null(text);
	assert_int_equal(strlen(text), len);
	assert_int_equal(text[len - 1], '\n');
	assert_contains(text, "\"leader\":\tnull");
	assert_int_equal(store_parse_servers("mem", text, len, back, &err), 0);
	assert_same_member(&back->m[0], &s->m[0]);
	free(text);
	free(s);
	free(back);
}

/* ---- JSON lines and status ------------------------------------------- */

static void
json_line_should_write_one_flat_object_and_a_newline(void **state)
{
	struct store_kv kv[] = {
	    {.key = "event", .type = KV_STR, .s = "say \"hi\"\\\n\té"},
	    {.key = "n", .type = KV_INT, .i = INT64_MIN},
	    {.key = "u", .type = KV_UINT, .u = UINT64_MAX},
	    {.key = "ok", .type = KV_BOOL, .b = true},
	    {.key = "none", .type = KV_STR, .s = NULL},
	};
	char out[512];
	cJSON *o;
	size_t len;

	(void)state;
	assert_int_equal(store_json_line(out, sizeof(out), kv, 5), 0);
	len = strlen(out);
	assert_int_equal(out[len - 1], '\n');
	assert_null(memchr(out, '\n', len - 1));
	assert_contains(out, "\"n\":-9223372036854775808");
	assert_contains(out, "\"u\":18446744073709551615");
	o = cJSON_Parse(out);
	assert_non_null(o);
	assert_string_equal(
	    cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "event")),
	    "say \"hi\"\\\n\té");
	assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "ok")));
	assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(o, "none")));
	cJSON_Delete(o);
	assert_int_equal(store_json_line(out, sizeof(out), kv, 0), 0);
	assert_string_equal(out, "{}\n");
}

static void
json_line_should_fail_rather_than_truncate(void **state)
{
	struct store_kv kv[] = {
	    {.key = "event", .type = KV_STR, .s = "elected"},
	    {.key = "epoch", .type = KV_UINT, .u = 42},
	};
	static const char want[] = "{\"event\":\"elected\",\"epoch\":42}\n";
	char out[64];

	(void)state;
	/* Exactly enough: the text, its newline and the NUL. */
	assert_int_equal(store_json_line(out, sizeof(want), kv, 2), 0);
	assert_string_equal(out, want);
	memset(out, 'x', sizeof(out));
	assert_int_equal(store_json_line(out, sizeof(want) - 1, kv, 2), -1);
	assert_int_equal(out[0], 'x');
	assert_int_equal(store_json_line(out, 0, kv, 2), -1);
}

static void
json_line_should_refuse_a_null_key_or_invalid_utf8(void **state)
{
	struct store_kv nokey = {.key = NULL, .type = KV_BOOL};
	struct store_kv bad = {.key = "k", .type = KV_STR, .s = "a\xff"};
	char out[64];

	(void)state;
	assert_int_equal(store_json_line(out, sizeof(out), &nokey, 1), -1);
	assert_int_equal(store_json_line(out, sizeof(out), &bad, 1), -1);
}

static void
json_line_list_should_end_with_an_array_of_strings(void **state)
{
	struct store_kv kv[] = {
	    {.key = "event", .type = KV_STR, .s = "list"},
	    {.key = "what", .type = KV_STR, .s = "users"},
	};
	const char *names[] = {"alice", "b\"o\\b", "\xc3\xa9"};
	const char *bad[] = {"ok", "a\xff"};
	char out[128];

	(void)state;
	assert_int_equal(
	    store_json_line_list(out, sizeof(out), kv, 2, "names", names, 3),
	    0);
	assert_string_equal(out,
	    "{\"event\":\"list\",\"what\":\"users\","
	    "\"names\":[\"alice\",\"b\\\"o\\\\b\",\"\xc3\xa9\"]}\n");
	assert_int_equal(
	    store_json_line_list(out, sizeof(out), kv, 1, "names", NULL, 0), 0);
	assert_string_equal(out, "{\"event\":\"list\",\"names\":[]}\n");
	assert_int_equal(
	    store_json_line_list(out, sizeof(out), kv, 2, "names", bad, 2), -1);
	assert_int_equal(
	    store_json_line_list(out, 20, kv, 2, "names", names, 3), -1);
}

static const cJSON *
member_of(const cJSON *o, const char *key)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);

	if (it == NULL)
		fail_msg("no \"%s\"", key);
	return it;
}

static void
status_json_should_parse_back_with_the_expected_fields(void **state)
{
	struct ring *r = calloc(1, sizeof(*r));
	struct store_status st;
	struct uuid self, leader;
	const cJSON *ring, *e;
	char *j;
	cJSON *o;

	(void)state;
	assert_non_null(r);
	fill_member(&r->m[0], U1, "alpha", "192.168.56.11", 45961, 45962);
	fill_member(&r->m[1], U2, "bravo", "192.168.56.12", 45961, 45962);
	fill_member(&r->m[2], U3, "charlie", "192.168.56.13", 45961, 45962);
	r->m[0].alive = r->m[1].alive = true;
	r->n = 3;
	uuid_parse(&self, U2);
	uuid_parse(&leader, U1);
	r->self = self;
	memset(&st, 0, sizeof(st));
	st.name = "bravo";
	st.uuid = &self;
	st.role = "backup";
	st.epoch = 3;
	st.has_leader = true;
	st.leader = &leader;
	st.ring = r;
	st.servers_version = 7;
	st.users_version = 12;
	st.uptime_ms = 123456;
	st.bad_datagrams = 5;
	st.elections = 2;

	j = store_status_json(&st);
	assert_non_null(j);
	assert_null(strchr(j, '\n'));
	o = cJSON_Parse(j);
	assert_non_null(o);
	assert_string_equal(member_of(o, "name")->valuestring, "bravo");
	assert_string_equal(member_of(o, "uuid")->valuestring, U2);
	assert_string_equal(member_of(o, "role")->valuestring, "backup");
	assert_true(member_of(o, "epoch")->valuedouble == 3);
	assert_string_equal(member_of(o, "leader")->valuestring, U1);
	assert_true(member_of(o, "servers_version")->valuedouble == 7);
	assert_true(member_of(o, "users_version")->valuedouble == 12);
	assert_true(member_of(o, "uptime_ms")->valuedouble == 123456);
	assert_true(member_of(o, "bad_datagrams")->valuedouble == 5);
	assert_true(member_of(o, "elections")->valuedouble == 2);
	ring = member_of(o, "ring");
	assert_true(cJSON_IsArray(ring));
	assert_int_equal(cJSON_GetArraySize(ring), 3);
	e = cJSON_GetArrayItem(ring, 0);
	assert_string_equal(member_of(e, "uuid")->valuestring, U1);
	assert_string_equal(member_of(e, "name")->valuestring, "alpha");
	assert_string_equal(member_of(e, "addr")->valuestring, "192.168.56.11");
	assert_true(member_of(e, "port")->valuedouble == 45961);
	assert_true(member_of(e, "ctl_port")->valuedouble == 45962);
	assert_true(cJSON_IsTrue(member_of(e, "alive")));
	assert_true(cJSON_IsFalse(member_of(e, "self")));
	assert_true(cJSON_IsTrue(member_of(e, "leader")));
	e = cJSON_GetArrayItem(ring, 1);
	assert_string_equal(member_of(e, "name")->valuestring, "bravo");
	assert_true(cJSON_IsTrue(member_of(e, "self")));
	assert_true(cJSON_IsFalse(member_of(e, "leader")));
	e = cJSON_GetArrayItem(ring, 2);
	assert_string_equal(member_of(e, "name")->valuestring, "charlie");
	assert_true(cJSON_IsFalse(member_of(e, "alive")));
	cJSON_Delete(o);
	free(j);

	st.has_leader = false;
	j = store_status_json(&st);
	assert_non_null(j);
	o = cJSON_Parse(j);
	assert_non_null(o);
	assert_true(cJSON_IsNull(member_of(o, "leader")));
	cJSON_ArrayForEach(e, member_of(o, "ring"))
	    assert_true(cJSON_IsFalse(member_of(e, "leader")));
	cJSON_Delete(o);
	free(j);
	free(r);
}

/* ---- chat journal ----------------------------------------------------- */

struct jload {
	char snap[256];
	char ops[16][64];
	size_t nops;
	int fail_at; /* op number that the callback refuses, 0: none */
};

static int
jl_snap(void *arg, const char *text, size_t len, struct store_error *err)
{
	struct jload *j = arg;

	(void)err;
	assert_true(len < sizeof(j->snap));
	memcpy(j->snap, text, len);
	j->snap[len] = '\0';
	return 0;
}

static int
jl_op(void *arg, const char *text, size_t len, struct store_error *err)
{
	struct jload *j = arg;

	if ((int)j->nops + 1 == j->fail_at) {
		snprintf(err->text, sizeof(err->text), "refused");
		return -1;
	}
	assert_true(j->nops < 16 && len < 64);
	memcpy(j->ops[j->nops], text, len);
	j->ops[j->nops++][len] = '\0';
	return 0;
}

static const char *
jdir(char *buf, const char *name)
{
	tpath(buf, name);
	assert_int_equal(mkdir(buf, 0755), 0);
	return buf;
}

static void
journal_should_give_back_the_snapshot_then_the_ops_in_order(void **state)
{
	char dir[PATH_MAX], path[PATH_MAX + 16];
	struct store_journal jn;
	struct stat st;
	struct store_error err;
	struct jload j;
	bool torn = true;

	(void)state;
	jdir(dir, "j1");
	memset(&j, 0, sizeof(j));
	assert_int_equal(
	    store_journal_load(dir, jl_snap, jl_op, &j, &torn, &err), 1);
	assert_int_equal(store_journal_open(&jn, dir, false, &err), 0);
	assert_int_equal(store_journal_append(&jn, "newu 1 a", 8, &err), 0);
	assert_int_equal(store_journal_reset(&jn, "SNAP", 4, &err), 0);
	assert_int_equal(store_journal_append(&jn, "op two", 6, &err), 0);
	assert_int_equal(store_journal_append(&jn, "op three", 8, &err), 0);
	assert_int_equal(store_journal_sync(&jn, &err), 0);
	assert_int_equal(jn.syncs, 1);
	assert_int_equal(jn.ops, 2);
	/* a message's newlines stay inside its op's one line */
	assert_int_equal(store_journal_append(&jn, "msg a\nb\n", 8, &err), 0);
	/* the byte that stands for them cannot be in an op */
	assert_int_equal(store_journal_append(&jn,
			     "a\x1f"
			     "b",
			     3, &err),
	    -1);
	store_journal_close(&jn);
	assert_int_equal(
	    store_journal_load(dir, jl_snap, jl_op, &j, &torn, &err), 0);
	assert_false(torn);
	assert_string_equal(j.snap, "SNAP");
	assert_int_equal(j.nops, 3);
	assert_string_equal(j.ops[0], "op two");
	assert_string_equal(j.ops[1], "op three");
	assert_string_equal(j.ops[2], "msg a\nb\n");
	assert_int_equal(count_temps(dir), 0);
	/* both files hold password hashes: the server's user's alone */
	snprintf(path, sizeof(path), "%s/chat.snap", dir);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	snprintf(path, sizeof(path), "%s/chat.log", dir);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	/* one from before is made private when opened */
	assert_int_equal(chmod(path, 0644), 0);
	assert_int_equal(store_journal_open(&jn, dir, false, &err), 0);
	store_journal_close(&jn);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
}

static void
journal_should_drop_a_last_line_cut_short_and_nothing_else(void **state)
{
	char dir[PATH_MAX], path[PATH_MAX], *text;
	struct store_journal jn;
	struct store_error err;
	struct jload j;
	size_t len;
	bool torn = false;

	(void)state;
	jdir(dir, "j2");
	assert_int_equal(store_journal_open(&jn, dir, false, &err), 0);
	assert_int_equal(store_journal_append(&jn, "one", 3, &err), 0);
	assert_int_equal(store_journal_append(&jn, "two", 3, &err), 0);
	store_journal_close(&jn);
	/* A crash in the middle of the third write. */
	assert_true(
	    snprintf(path, sizeof(path), "%s/chat.log", dir) < PATH_MAX);
	text = get_file(path, &len);
	assert_non_null(text);
	{
		char buf[256];

		memcpy(buf, text, len);
		memcpy(buf + len, "0123456789abcdef th", 19);
		put_file(path, buf, len + 19);
	}
	memset(&j, 0, sizeof(j));
	assert_int_equal(
	    store_journal_load(dir, jl_snap, jl_op, &j, &torn, &err), 0);
	assert_true(torn);
	assert_int_equal(j.nops, 2);
	/* Opening cuts it back; appends follow the whole lines. */
	assert_int_equal(store_journal_open(&jn, dir, true, &err), 0);
	assert_int_equal(jn.ops, 2);
	assert_int_equal(store_journal_append(&jn, "three", 5, &err), 0);
	store_journal_close(&jn);
	memset(&j, 0, sizeof(j));
	assert_int_equal(
	    store_journal_load(dir, jl_snap, jl_op, &j, &torn, &err), 0);
	assert_false(torn);
	assert_int_equal(j.nops, 3);
	assert_string_equal(j.ops[2], "three");
	free(text);
}

static void
journal_with_a_damaged_line_inside_should_name_the_file_and_line(void **state)
{
	char dir[PATH_MAX], path[PATH_MAX], *text;
	struct store_journal jn;
	struct store_error err;
	struct jload j;
	size_t len;
	bool torn = false;

	(void)state;
	jdir(dir, "j3");
	assert_int_equal(store_journal_open(&jn, dir, false, &err), 0);
	assert_int_equal(store_journal_append(&jn, "one", 3, &err), 0);
	assert_int_equal(store_journal_append(&jn, "two", 3, &err), 0);
	assert_int_equal(store_journal_append(&jn, "six", 3, &err), 0);
	store_journal_close(&jn);
	assert_true(
	    snprintf(path, sizeof(path), "%s/chat.log", dir) < PATH_MAX);
	text = get_file(path, &len);
	assert_non_null(text);
	text[17 + 3 + 1 + 17] = 'T'; /* "two" -> "Two": checksum fails */
	put_file(path, text, len);
	memset(&j, 0, sizeof(j));
	assert_int_equal(
	    store_journal_load(dir, jl_snap, jl_op, &j, &torn, &err), -1);
	assert_contains(err.text, "chat.log:2:");
	assert_contains(err.text, "checksum");
	/* the file is left as it was */
	free(text);
	text = get_file(path, &len);
	assert_int_equal(len, 3 * 21);
	free(text);
	/* A callback's refusal is named the same way. */
	put_file(path, "", 0);
	assert_int_equal(store_journal_open(&jn, dir, false, &err), 0);
	assert_int_equal(store_journal_append(&jn, "one", 3, &err), 0);
	assert_int_equal(store_journal_append(&jn, "two", 3, &err), 0);
	store_journal_close(&jn);
	memset(&j, 0, sizeof(j));
	j.fail_at = 2;
	assert_int_equal(
	    store_journal_load(dir, jl_snap, jl_op, &j, &torn, &err), -1);
	assert_contains(err.text, "chat.log:2: refused");
}

/*
 * A journal reset to a snapshot and not appended to since, its chat.log
 * lost: the snapshot alone, with nothing read from the missing log (no
 * arithmetic on its NULL buffer, which UBSan in `make sanitize` and the
 * fuzz targets turns into an abort).
 */
static void
journal_with_a_snapshot_and_no_log_should_give_back_the_snapshot(void **state)
{
	char dir[PATH_MAX], path[PATH_MAX + 16];
	struct store_error err;
	struct jload j;
	bool torn = true;

	(void)state;
	jdir(dir, "j4");
	snprintf(path, sizeof(path), "%s/chat.snap", dir);
	put_file(path, "SNAP", 4);
	memset(&j, 0, sizeof(j));
	assert_int_equal(
	    store_journal_load(dir, jl_snap, jl_op, &j, &torn, &err), 0);
	assert_false(torn);
	assert_string_equal(j.snap, "SNAP");
	assert_int_equal(j.nops, 0);
}

/* ---- passwords --------------------------------------------------------- */

/* A hash (of "correct horse battery staple"), as users.json holds it. */
#define PW_HASH                                                                 \
	"$argon2id$v=19$m=19456,t=2,p=1$A82OkmDiVHEm+p/CnCJZGw$a7pI/2+gneUJZVR" \
	"mUA5u6AsgsIYlBVM2dP2pKwYR8WM"

static void
password_should_round_trip_and_be_left_out_when_absent(void **state)
{
	struct users_state in, out;
	struct store_error err;
	char path[PATH_MAX], *text;
	struct user *u;
	struct stat st;
	size_t len;

	(void)state;
	store_users_init(&in);
	store_users_init(&out);
	assert_non_null(u = store_users_add(&in));
	strlcpy(u->name, "alice", sizeof(u->name));
	strlcpy(u->addr, "10.0.0.1", sizeof(u->addr));
	u->port = 5;
	assert_int_equal(auth_pw_hash("secret", 6, u->password), AUTH_OK);
	assert_non_null(u = store_users_add(&in));
	strlcpy(u->name, "bob", sizeof(u->name));
	strlcpy(u->addr, "10.0.0.2", sizeof(u->addr));
	u->port = 6;
	assert_non_null(text = store_format_users(&in, &len, &err));
	/* one "password" key: bob has none */
	assert_non_null(strstr(text, "\"password\""));
	assert_null(strstr(strstr(text, "\"password\"") + 1, "\"password\""));
	free(text);
	assert_int_equal(
	    store_write_users(tpath(path, "users.json"), &in, &err), 0);
	/* for the server's user alone: a hash can be guessed offline */
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(store_read_users(path, &out, &err), 0);
	assert_int_equal(out.n, 2);
	assert_same_user(&out.u[0], &in.u[0]);
	assert_same_user(&out.u[1], &in.u[1]);
	assert_int_equal(
	    auth_pw_verify(out.u[0].password, "secret", 6), AUTH_OK);
	/* a writer refuses a hash a reader would refuse */
	strlcpy(
	    in.u[1].password, "$argon2id$v=19$bad", sizeof(in.u[1].password));
	assert_int_equal(
	    store_write_users(tpath(path, "users.json"), &in, &err), -1);
	assert_non_null(strstr(err.text,
	    "users[1].password: expected an "
	    "Argon2id password hash"));
	assert_non_null(strstr(err.text, "(not written)"));
	store_users_free(&in);
	store_users_free(&out);
}

static void
malformed_password_hash_should_be_refused_naming_the_line(void **state)
{
	static const struct {
		const char *pw, *where;
	} bad[] = {
	    /* not a string */
	    {"5", "users.json:5:18: users[0].password: expected an Argon2id"},
	    /* another algorithm */
	    {"\"$argon2i$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA\"",
		"users.json:5:18: users[0].password: expected an Argon2id"},
	    /* truncated */
	    {"\"$argon2id$v=19$m=19456,t=2,p=1$c2FsdA\"",
		"users.json:5:18: users[0].password: expected an Argon2id"},
	    /* a cost the leader would not pay: 2 GiB */
	    {"\"$argon2id$v=19$m=2097152,t=2,p=1$A82OkmDiVHEm+p/CnCJZGw$"
	     "a7pI/2+gneUJZVRmUA5u6AsgsIYlBVM2dP2pKwYR8WM\"",
		"users.json:5:18: users[0].password: expected an Argon2id"},
	    /* empty */
	    {"\"\"",
		"users.json:5:18: users[0].password: expected an Argon2id"},
	};
	char text[512];
	struct users_state us;
	struct store_error err;
	size_t i;

	(void)state;
	store_users_init(&us);
	snprintf(text, sizeof(text),
	    "{\"version\": 1, \"users\": [\n"
	    "    {\"name\": \"alice\",\n"
	    "     \"addr\": \"10.0.0.1\",\n"
	    "     \"port\": 5,\n"
	    "     \"password\": \"%s\"}]}\n",
	    PW_HASH);
	if (store_parse_users("users.json", text, strlen(text), &us, &err) != 0)
		fail_msg("%s", err.text);
	assert_string_equal(us.u[0].password, PW_HASH);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(text, sizeof(text),
		    "{\"version\": 1, \"users\": [\n"
		    "    {\"name\": \"alice\",\n"
		    "     \"addr\": \"10.0.0.1\",\n"
		    "     \"port\": 5,\n"
		    "     \"password\": %s}]}\n",
		    bad[i].pw);
		assert_int_equal(store_parse_users("users.json", text,
				     strlen(text), &us, &err),
		    -1);
		if (strncmp(err.text, bad[i].where, strlen(bad[i].where)) != 0)
			fail_msg("%zu: %s", i, err.text);
		/* the state is untouched */
		assert_int_equal(us.n, 1);
		assert_string_equal(us.u[0].password, PW_HASH);
	}
	store_users_free(&us);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(
		write_then_read_servers_should_give_back_the_same_state),
	    cmocka_unit_test(
		write_then_read_servers_should_hold_ring_max_servers),
	    cmocka_unit_test(
		write_then_read_users_should_give_back_ten_thousand_unicode_users),
	    cmocka_unit_test(read_users_should_replace_what_the_state_held),
	    cmocka_unit_test(identity_should_round_trip),
	    cmocka_unit_test(
		read_identity_should_refuse_a_name_longer_than_the_buffer),
	    cmocka_unit_test(read_identity_should_check_the_uuid),
	    cmocka_unit_test(write_identity_should_refuse_an_empty_name),
	    cmocka_unit_test(
		readers_should_return_1_and_empty_state_when_the_file_is_absent),
	    cmocka_unit_test(readers_should_refuse_a_directory),
	    cmocka_unit_test(readers_should_refuse_a_file_over_64_mib),
	    cmocka_unit_test(
		read_servers_should_name_line_and_column_of_a_syntax_error),
	    cmocka_unit_test(
		syntax_error_columns_should_count_characters_not_bytes),
	    cmocka_unit_test(
		parse_should_refuse_every_truncation_of_a_valid_file),
	    cmocka_unit_test(parse_should_say_end_of_file_for_a_truncated_file),
	    cmocka_unit_test(parse_should_refuse_bytes_that_are_not_utf8),
	    cmocka_unit_test(
		parse_should_refuse_what_json_forbids_even_where_cjson_is_lax),
	    cmocka_unit_test(parse_should_refuse_nesting_deeper_than_64),
	    cmocka_unit_test(parse_should_skip_a_byte_order_mark),
	    cmocka_unit_test(
		parse_servers_should_name_the_path_of_each_schema_error),
	    cmocka_unit_test(
		parse_users_should_name_the_path_of_each_schema_error),
	    cmocka_unit_test(
		parse_servers_should_refuse_more_than_ring_max_servers),
	    cmocka_unit_test(
		schema_errors_should_point_at_the_line_and_column_of_the_value),
	    cmocka_unit_test(
		schema_errors_should_be_located_past_tricky_strings_and_keys),
	    cmocka_unit_test(a_failed_parse_should_leave_the_output_untouched),
	    cmocka_unit_test(
		parse_should_ignore_unknown_keys_and_default_optional_ones),
	    cmocka_unit_test(parse_should_read_rfc3339_utc_times_as_seconds),
	    cmocka_unit_test(parse_should_accept_the_largest_version),
	    cmocka_unit_test(readers_should_accept_the_example_files),
	    cmocka_unit_test(
		password_should_round_trip_and_be_left_out_when_absent),
	    cmocka_unit_test(
		malformed_password_hash_should_be_refused_naming_the_line),
	    cmocka_unit_test(
		write_atomic_should_replace_the_file_and_leave_no_temporary_file),
	    cmocka_unit_test(
		write_atomic_should_fail_without_a_trace_in_a_missing_directory),
	    cmocka_unit_test(
		write_atomic_should_keep_the_old_file_when_the_rename_fails),
	    cmocka_unit_test(
		write_atomic_should_keep_the_old_file_when_a_write_fails),
	    cmocka_unit_test(
		write_servers_should_refuse_what_a_reader_would_refuse),
	    cmocka_unit_test(
		write_users_should_refuse_duplicate_names_and_bad_rooms),
	    cmocka_unit_test(format_should_give_the_text_the_writer_writes),
	    cmocka_unit_test(
		json_line_should_write_one_flat_object_and_a_newline),
	    cmocka_unit_test(json_line_should_fail_rather_than_truncate),
	    cmocka_unit_test(
		json_line_should_refuse_a_null_key_or_invalid_utf8),
	    cmocka_unit_test(
		json_line_list_should_end_with_an_array_of_strings),
	    cmocka_unit_test(
		status_json_should_parse_back_with_the_expected_fields),
	    cmocka_unit_test(
		journal_should_give_back_the_snapshot_then_the_ops_in_order),
	    cmocka_unit_test(
		journal_should_drop_a_last_line_cut_short_and_nothing_else),
	    cmocka_unit_test(
		journal_with_a_damaged_line_inside_should_name_the_file_and_line),
	    cmocka_unit_test(
		journal_with_a_snapshot_and_no_log_should_give_back_the_snapshot),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
