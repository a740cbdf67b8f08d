/* fuzz_store: libFuzzer target for the servers.json and users.json parsers. */
#include <arpa/inet.h>
#include <netinet/in.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

/* 9999-12-31T23:59:59Z, the latest time the schema can write. */
#define TIME_MAX INT64_C(253402300799)

/* Static: two servers states are too big to want on the fuzzer's stack. */
static struct servers_state s1, s2;

static void
fail(const char *what, const char *detail)
{
	fprintf(stderr, "fuzz_store: %s: %s\n", what, detail);
	abort();
}

/* A name is NUL-terminated in its buffer, non-empty, without controls. */
static void
check_name(const char *s, size_t max, const char *what)
{
	size_t n = strnlen(s, max), i;

	if (n == 0 || n == max)
		fail(what, "empty or not terminated");
	for (i = 0; i < n; i++) {
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			fail(what, "control character");
	}
}

static void
check_addr(const char *s, const char *what)
{
	struct in_addr a;

	if (strnlen(s, RING_ADDR_MAX) == RING_ADDR_MAX ||
	    inet_pton(AF_INET, s, &a) != 1)
		fail(what, s);
}

static void
check_time(int64_t t, const char *what)
{
	if (t < 0 || t > TIME_MAX)
		fail(what, "time out of range");
}

static void
check_error(const struct store_error *err)
{
	if (err->text[0] == '\0' || strchr(err->text, '\n') != NULL ||
	    strncmp(err->text, "fuzz", 4) != 0)
		fail("error message", err->text);
}

static void
check_servers(const struct servers_state *s)
{
	const struct member *m;
	size_t i, j;

	if (s->n > RING_MAX)
		fail("servers", "more than RING_MAX");
	for (i = 0; i < s->n; i++) {
		m = &s->m[i];
		check_name(m->name, sizeof(m->name), "server name");
		check_addr(m->addr, "server addr");
		if (m->port == 0 || m->ctl_port == 0)
			fail("server", "port 0");
		if (m->last_seen_ms != 0)
			fail("server", "monotonic time read from a file");
		check_time(m->last_seen_wall, "server last_seen");
		for (j = 0; j < i; j++) {
			if (uuid_cmp(&s->m[j].uuid, &m->uuid) == 0)
				fail("server", "duplicate uuid");
		}
	}
}

static void
check_users(const struct users_state *s)
{
	const struct user *u;
	size_t i, j, k;

	if (s->n > s->cap || (s->n > 0 && s->u == NULL))
		fail("users", "n, cap and u disagree");
	for (i = 0; i < s->n; i++) {
		u = &s->u[i];
		check_name(u->name, sizeof(u->name), "user name");
		check_addr(u->addr, "user addr");
		if (u->port == 0)
			fail("user", "port 0");
		check_time(u->last_seen, "user last_seen");
		if (u->nrooms > USER_ROOMS_MAX)
			fail("user", "too many rooms");
		for (k = 0; k < u->nrooms; k++) {
			check_name(u->rooms[k], ROOM_NAME_MAX, "room");
			if (u->rooms[k][0] != '#' || u->rooms[k][1] == '\0')
				fail("room", u->rooms[k]);
			for (j = 0; j < k; j++) {
				if (strcmp(u->rooms[j], u->rooms[k]) == 0)
					fail("room", "duplicate");
			}
		}
		for (j = 0; j < i; j++) {
			if (strcmp(s->u[j].name, u->name) == 0)
				fail("user", "duplicate name");
		}
	}
}

static void
same_servers(const struct servers_state *a, const struct servers_state *b)
{
	size_t i;

	if (a->version != b->version || a->epoch != b->epoch ||
	    a->has_leader != b->has_leader || a->n != b->n ||
	    (a->has_leader && uuid_cmp(&a->leader, &b->leader) != 0))
		fail("servers round trip", "header differs");
	for (i = 0; i < a->n; i++) {
		const struct member *x = &a->m[i], *y = &b->m[i];

		if (uuid_cmp(&x->uuid, &y->uuid) != 0 ||
		    strcmp(x->name, y->name) != 0 ||
		    strcmp(x->addr, y->addr) != 0 || x->port != y->port ||
		    x->ctl_port != y->ctl_port || x->alive != y->alive ||
		    x->last_seen_wall != y->last_seen_wall)
			fail("servers round trip", "member differs");
	}
}

static void
same_users(const struct users_state *a, const struct users_state *b)
{
	size_t i, k;

	if (a->version != b->version || a->n != b->n)
		fail("users round trip", "header differs");
	for (i = 0; i < a->n; i++) {
		const struct user *x = &a->u[i], *y = &b->u[i];

		if (strcmp(x->name, y->name) != 0 ||
		    strcmp(x->addr, y->addr) != 0 || x->port != y->port ||
		    x->online != y->online || x->last_seen != y->last_seen ||
		    x->nrooms != y->nrooms)
			fail("users round trip", "user differs");
		for (k = 0; k < x->nrooms; k++) {
			if (strcmp(x->rooms[k], y->rooms[k]) != 0)
				fail("users round trip", "room differs");
		}
	}
}

static void
fuzz_servers(const char *text, size_t len)
{
	struct store_error err;
	char *out, *again;
	size_t olen, alen;

	memset(&err, 0, sizeof(err));
	if (store_parse_servers("fuzz", text, len, &s1, &err) == -1) {
		check_error(&err);
		return;
	}
	check_servers(&s1);
	/* What was accepted must be written, and read back the same. */
	if ((out = store_format_servers(&s1, &olen, &err)) == NULL)
		fail("format servers", err.text);
	if (store_parse_servers("fuzz", out, olen, &s2, &err) == -1)
		fail("reparse servers", err.text);
	same_servers(&s1, &s2);
	if ((again = store_format_servers(&s2, &alen, &err)) == NULL)
		fail("format servers again", err.text);
	if (alen != olen || memcmp(out, again, olen) != 0)
		fail("servers", "formatting is not stable");
	free(out);
	free(again);
}

static void
fuzz_users(const char *text, size_t len)
{
	struct users_state u1, u2;
	struct store_error err;
	char *out;
	size_t olen;

	store_users_init(&u1);
	store_users_init(&u2);
	memset(&err, 0, sizeof(err));
	if (store_parse_users("fuzz", text, len, &u1, &err) == -1) {
		check_error(&err);
		if (u1.n != 0 || u1.u != NULL)
			fail("users", "half-filled after an error");
		return;
	}
	check_users(&u1);
	if ((out = store_format_users(&u1, &olen, &err)) == NULL)
		fail("format users", err.text);
	if (store_parse_users("fuzz", out, olen, &u2, &err) == -1)
		fail("reparse users", err.text);
	same_users(&u1, &u2);
	free(out);
	store_users_free(&u1);
	store_users_free(&u2);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_servers((const char *)data, size);
	fuzz_users((const char *)data, size);
	return 0;
}
