/* fuzz_client: libFuzzer target for the client session fed with datagrams. */
#include <arpa/inet.h>
#include <netinet/in.h>

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

/*
 * The input is a script, one step per line; the first byte says what:
 *
 *   d DATAGRAM   from the leader's address (10.77.0.1:45961)
 *   e DATAGRAM   from another server (10.77.0.2:45961)
 *   t MS         time passes (at most 65535 ms), then client_tick
 *   s TO BODY    the user sends a message
 *   y BODY       the user says something in the current room
 *   j ROOM, p ROOM, l rooms|who|users, v (vote), q (quit)
 *
 * any other line is a datagram from the leader.  Datagrams go through
 * wire_decode first, as in ringchat.  After every step the client's
 * outputs are checked and drained.
 */
#define ME	"alice"
#define L1_ADDR "10.77.0.1"
#define L2_ADDR "10.77.0.2"
#define L_PORT	45961
#define STEPS	128
#define SHOWN	STEPS

/* A delivery shown: the same one must never be shown twice. */
struct shown {
	char key[ROOM_NAME_MAX];
	char from[USER_NAME_MAX];
	uint64_t id;
	uint64_t digest;
};

static struct client_cfg cfg;
static struct wire_msg msg, out;
static char line[WIRE_MAX + 1];
static struct shown shown[SHOWN];
static size_t nshown;

static void
fail(const char *what, const char *detail)
{
	fprintf(stderr, "fuzz_client: %s: %s\n", what, detail);
	abort();
}

static uint64_t
digest(const char *s)
{
	uint64_t h = UINT64_C(14695981039346656037);

	for (; *s != '\0'; s++) {
		h ^= (unsigned char)*s;
		h *= UINT64_C(1099511628211);
	}
	return h;
}

static void
check_string(const char *s, size_t max, const char *what)
{
	if (strnlen(s, max) == max)
		fail(what, "not terminated");
}

static void
check_shown(const struct client_out *o)
{
	struct shown sh;
	size_t i;

	memset(&sh, 0, sizeof(sh));
	(void)strlcpy(sh.key,
	    o->to[0] == '#' || strcmp(o->to, "*") == 0 ? o->to : o->from,
	    sizeof(sh.key));
	(void)strlcpy(sh.from, o->from, sizeof(sh.from));
	sh.id = o->id;
	sh.digest = digest(o->text != NULL ? o->text : "");
	for (i = 0; i < nshown; i++)
		if (strcmp(shown[i].key, sh.key) == 0 &&
		    strcmp(shown[i].from, sh.from) == 0 &&
		    shown[i].id == sh.id && shown[i].digest == sh.digest)
			fail("delivery", "the same message shown twice");
	if (nshown < SHOWN)
		shown[nshown++] = sh;
}

static void
check_send(const struct client *c, const struct client_out *o)
{
	struct in_addr a;

	if (o->len == 0 || o->len > WIRE_MAX)
		fail("send", "length out of range");
	if (wire_decode(&out, o->data, o->len) != WIRE_OK)
		fail("send", "the client's datagram does not decode");
	if (strcmp(out.from, c->user) != 0)
		fail("send", "not from the user");
	if (!o->discovery &&
	    (inet_pton(AF_INET, o->addr, &a) != 1 || o->port == 0))
		fail("send", "to no address");
}

static void
check_event(const struct client_out *o)
{
	if (o->ev < CE_LEADER || o->ev > CE_BYE)
		fail("event", "unknown");
	check_string(o->from, sizeof(o->from), "event from");
	check_string(o->to, sizeof(o->to), "event to");
	check_string(o->code, sizeof(o->code), "event code");
	if (o->text != NULL)
		(void)strlen(o->text);
	switch (o->ev) {
	case CE_MESSAGE:
		if (o->id == 0 || o->from[0] == '\0' || o->to[0] == '\0')
			fail("message", "without id, sender or destination");
		check_shown(o);
		break;
	case CE_LIST:
		if (o->what == NULL)
			fail("list", "of nothing");
		break;
	case CE_LEADER:
		if (!o->leader.known || o->leader.port == 0)
			fail("leader", "names none");
		break;
	default:
		break;
	}
}

/* Outputs, state and deadline after a step at now. */
static void
check(struct client *c, int64_t now, enum client_state was, bool ticked)
{
	size_t i;

	for (i = 0; i < c->nout; i++) {
		if (c->out[i].type == CO_SEND)
			check_send(c, &c->out[i]);
		else if (c->out[i].type == CO_EVENT)
			check_event(&c->out[i]);
		else
			fail("output", "unknown type");
	}
	client_drain(c);
	if (c->nout != 0)
		fail("drain", "outputs left");
	if (c->state < CS_IDLE || c->state > CS_DONE)
		fail("state", "unknown");
	if (was == CS_DONE && c->state != CS_DONE)
		fail("state", "came back from done");
	if (client_unacked(c) > CLIENT_QUEUE_MAX)
		fail("queue", "over CLIENT_QUEUE_MAX");
	/* Nothing still due right after a tick: no busy loop. */
	if (ticked && client_next_deadline(c) <= now)
		fail("deadline", "due again at once after a tick");
}

/* The rest of a step's line, NUL-terminated; false when it holds a NUL. */
static bool
arg(const char *p, size_t n)
{
	if (n > WIRE_MAX || memchr(p, '\0', n) != NULL)
		return false;
	memcpy(line, p, n);
	line[n] = '\0';
	return true;
}

static void
step(struct client *c, int64_t *now, const char *p, size_t n)
{
	enum client_state was = c->state;
	const char *addr = L1_ADDR, *sp;
	unsigned long ms;
	bool ticked = false;
	char *endp;

	if (n == 0)
		return;
	if (p[0] == '\0' || strchr("tsyjplvq", p[0]) == NULL) {
		if (p[0] == 'd' || p[0] == 'e') {
			addr = p[0] == 'e' ? L2_ADDR : L1_ADDR;
			p++;
			n--;
		}
		if (wire_decode(&msg, p, n) == WIRE_OK)
			client_on_datagram(c, *now, &msg, addr, L_PORT);
		check(c, *now, was, false);
		return;
	}
	switch (p[0]) {
	case 't':
		if (!arg(p + 1, n - 1))
			return;
		ms = strtoul(line, &endp, 10);
		*now += (int64_t)(ms > 65535 ? 65535 : ms);
		client_tick(c, *now);
		ticked = true;
		break;
	case 's':
		if (!arg(p + 1, n - 1) || (sp = strchr(line, ' ')) == NULL)
			return;
		line[sp - line] = '\0';
		(void)client_send(c, *now, line, sp + 1);
		break;
	case 'y':
		if (arg(p + 1, n - 1))
			(void)client_say(c, *now, line);
		break;
	case 'j':
		if (arg(p + 1, n - 1))
			(void)client_join(c, *now, line);
		break;
	case 'p':
		if (arg(p + 1, n - 1))
			(void)client_part(c, *now, n > 1 ? line : NULL);
		break;
	case 'l':
		if (!arg(p + 1, n - 1))
			return;
		(void)client_list(c, *now,
		    strcmp(line, "rooms") == 0	     ? WK_ROOMS
			: strcmp(line, "users") == 0 ? WK_USERS
						     : WK_WHO,
		    line[0] == '#' ? line : NULL);
		break;
	case 'v':
		client_vote(c, *now);
		break;
	case 'q':
		client_quit(c, *now, *now + 5000);
		break;
	}
	check(c, *now, was, ticked);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data, *end = p + size, *nl;
	struct client c;
	int64_t now = 1000, next;
	size_t k;

	if (cfg.alive_ms == 0) {
		client_cfg_defaults(&cfg);
		cfg.collect_ms = 0; /* the first answer decides */
	}
	if (client_init(&c, &cfg, ME) == -1)
		fail("init", "refused");
	nshown = 0;
	client_start(&c, now);
	check(&c, now, CS_IDLE, false);
	for (k = 0; k < STEPS && p < end; k++, p = nl + 1) {
		if ((nl = memchr(p, '\n', (size_t)(end - p))) == NULL)
			nl = end;
		step(&c, &now, p, (size_t)(nl - p));
	}
	/* However it ended, the session winds down. */
	client_quit(&c, now, now + 5000);
	check(&c, now, c.state, false);
	/* Ticks when due (at least 10 ms apart, as a poll loop would). */
	for (k = 0; k < 2000 && client_next_deadline(&c) != INT64_MAX; k++) {
		next = client_next_deadline(&c);
		now = next > now ? next : now + 10;
		client_tick(&c, now);
		check(&c, now, c.state, true);
	}
	if (c.state != CS_DONE)
		fail("quit", "the session did not end");
	client_free(&c);
	return 0;
}
