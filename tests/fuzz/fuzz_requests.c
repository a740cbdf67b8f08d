/* fuzz_requests: libFuzzer target for client requests on the leader's relay. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "relay.h"
#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

/*
 * The input is a script, one step per line; the first byte says what:
 *
 *   a DATAGRAM, b DATAGRAM, c DATAGRAM
 *              a client datagram from 10.77.0.1, .2 or .3, port 4000,
 *              decoded and handed to the relay as chat.c does
 *   t MS       time passes (at most 65535 ms), then relay_tick
 *   h          hold: the backups stop confirming messages
 *   r          the backups confirm everything held
 *   f          failover: the backup takes over as leader
 *
 * any other line is a datagram from 10.77.0.1.  Every op the leader
 * emits is formatted, parsed and applied to a backup, which must then
 * be in the leader's replicated state; the same client message id is
 * always answered with the same message id.
 */
#define PORT  4000
#define STEPS 128
#define SEEN  256

/* An accepted (user, cid) and the id it was given. */
struct accepted {
	char user[USER_NAME_MAX];
	uint64_t cid, id;
};

static struct relay_cfg cfg;
static bool ready;
static struct wire_msg msg;
static struct accepted seen[SEEN];
static size_t nseen;
static uint64_t held[STEPS * 8];
static size_t nheld;
static char text[RELAY_OP_TEXT_MAX + 1];

static void
fail(const char *what, const char *detail)
{
	fprintf(stderr, "fuzz_requests: %s: %s\n", what, detail);
	abort();
}

static void
setup(void)
{
	relay_cfg_defaults(&cfg);
	cfg.queue_max = 4;
	cfg.history_max = 3;
	cfg.inflight_max = 2;
	cfg.users_max = 6;
	cfg.rooms_max = 4;
	cfg.msg_bytes_max = 65536;
	cfg.alive_ms = 1000;
	ready = true;
}

static void
check_reply(const struct relay_out *o)
{
	size_t i;

	if (o->port == 0 || o->addr[0] == '\0')
		fail("reply", "to no address");
	if (o->err < RELAY_OK || o->err >= RELAY_NERR)
		fail("reply", "unknown error");
	if (o->re != WK_MSG || o->err != RELAY_OK || !o->has_id)
		return;
	if (!o->has_cid || o->id == 0)
		fail("reply", "msg ok without cid or id");
	for (i = 0; i < nseen; i++)
		if (strcmp(seen[i].user, o->user) == 0 &&
		    seen[i].cid == o->cid) {
			if (seen[i].id != o->id)
				fail("exactly once", "one cid, two ids");
			return;
		}
	if (nseen < SEEN) {
		(void)strlcpy(seen[nseen].user, o->user, USER_NAME_MAX);
		seen[nseen].cid = o->cid;
		seen[nseen++].id = o->id;
	}
}

static void
check_deliver(const struct relay_out *o)
{
	if (o->port == 0 || o->addr[0] == '\0' || o->user[0] == '\0')
		fail("delivery", "to nobody");
	if (o->id == 0 || o->seq == 0 || o->attempt == 0 ||
	    o->from[0] == '\0' || o->dest[0] == '\0')
		fail("delivery", "without id, seq, attempt, sender or dest");
	if (o->body == NULL || o->bodylen == 0 || o->bodylen > RELAY_BODY_MAX ||
	    memchr(o->body, '\0', o->bodylen) != NULL)
		fail("delivery", "body");
}

/*
 * Checks the leader's outputs, feeds its ops to the backup, confirms
 * the messages (unless held), until nothing more comes out.
 */
static void
settle(struct relay *l, struct relay *b, bool hold, int64_t now)
{
	struct relay_op op;
	uint64_t ids[64];
	size_t i, n, nids;
	enum relay_err e;

	do {
		nids = 0;
		for (i = 0; i < l->nout; i++) {
			const struct relay_out *o = &l->out[i];

			switch (o->type) {
			case RO_REPLY:
				check_reply(o);
				break;
			case RO_DELIVER:
				check_deliver(o);
				break;
			case RO_REPLICATE:
				if (relay_op_format(
					&o->op, text, sizeof(text), &n) == -1)
					fail("leader", "op does not format");
				if (relay_op_parse(&op, text, n) == -1)
					fail("leader", "op does not parse");
				if ((e = relay_apply(b, &op)) != RELAY_OK) {
					fprintf(stderr, "op: %s\n", text);
					fail("backup refused the leader's op",
					    relay_err_code(e));
				}
				relay_drain(b);
				if (op.type != ROP_MSG)
					break;
				if (hold &&
				    nheld < sizeof(held) / sizeof(*held))
					held[nheld++] = op.id;
				else if (nids < sizeof(ids) / sizeof(*ids))
					ids[nids++] = op.id;
				break;
			case RO_EVENT:
				break;
			default:
				fail("output", "unknown type");
			}
		}
		relay_drain(l);
		for (i = 0; i < nids; i++)
			(void)relay_on_replicated(l, now, ids[i]);
	} while (l->nout > 0);
	if (!relay_equal(l, b))
		fail("backup", "differs from the leader after its ops");
}

/* The state the requests built restores from its snapshot. */
static void
check_restores(const struct relay *l)
{
	struct relay t;
	enum relay_err e;
	char *s;
	size_t len;

	if (relay_snapshot(l, &s, &len) != RELAY_OK)
		fail("snapshot", "refused");
	if (relay_init(&t, &cfg) != RELAY_OK)
		fail("init", "refused");
	if ((e = relay_restore(&t, s, len)) != RELAY_OK) {
		fprintf(stderr, "%.*s", (int)len, s);
		fail("own snapshot does not restore", relay_err_code(e));
	}
	if (!relay_equal(l, &t))
		fail("restore", "another state");
	free(s);
	relay_free(&t);
}

/* A decoded client datagram, handed over as chat_on_client does. */
static void
request(struct relay *l, int64_t now, const char *addr)
{
	uint64_t n = 0, after = 0;
	const char *from = msg.from;

	switch (msg.kind) {
	case WK_NEWU:
		(void)relay_on_newu(l, now, from, addr, PORT);
		break;
	case WK_LOGIN:
		(void)relay_on_login(l, now, from, addr, PORT);
		break;
	case WK_LOGOUT:
		(void)relay_on_logout(l, now, from, addr, PORT);
		break;
	case WK_ALIVE:
		(void)relay_on_alive(l, now, from, addr, PORT);
		break;
	case WK_MSG:
		if (wire_get_u64(&msg, "cid", &n) == -1)
			n = 0;
		if (wire_get(&msg, "after") != NULL &&
		    wire_get_u64(&msg, "after", &after) == -1)
			after = n;
		(void)relay_on_msg_after(
		    l, now, from, addr, PORT, msg.to, msg.body, n, after);
		break;
	case WK_ACK:
		if (wire_get_u64(&msg, "id", &n) == 0)
			(void)relay_on_ack(l, now, from, addr, PORT, n);
		break;
	case WK_JOIN:
		(void)relay_on_join(l, now, from, addr, PORT, msg.to);
		break;
	case WK_PART:
		(void)relay_on_part(l, now, from, addr, PORT, msg.to);
		break;
	case WK_ROOMS:
		(void)relay_on_rooms(l, now, from, addr, PORT);
		break;
	case WK_WHO:
		(void)relay_on_who(l, now, from, addr, PORT, msg.to);
		break;
	case WK_USERS:
		(void)relay_on_users(l, now, from, addr, PORT);
		break;
	default:
		break;
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data, *end = p + size, *nl, *addr;
	struct relay r1, r2, *l = &r1, *b = &r2, *t;
	int64_t now = 1000;
	bool hold = false;
	unsigned long ms;
	size_t n, k, i;
	char num[8];

	if (!ready)
		setup();
	nseen = nheld = 0;
	if (relay_init(l, &cfg) != RELAY_OK ||
	    relay_init(b, &cfg) != RELAY_OK ||
	    relay_become_leader(l, now) != RELAY_OK)
		fail("init", "refused");
	relay_drain(l);
	for (k = 0; k < STEPS && p < end; k++, p = nl + 1) {
		if ((nl = memchr(p, '\n', (size_t)(end - p))) == NULL)
			nl = end;
		n = (size_t)(nl - p);
		if (n == 0)
			continue;
		switch (p[0]) {
		case 't':
			n = n - 1 < sizeof(num) - 1 ? n - 1 : sizeof(num) - 1;
			memcpy(num, p + 1, n);
			num[n] = '\0';
			ms = strtoul(num, NULL, 10);
			now += (int64_t)(ms > 65535 ? 65535 : ms);
			relay_tick(l, now);
			settle(l, b, hold, now);
			if (relay_next_deadline(l) <= now)
				fail("deadline",
				    "due again at once after a tick");
			continue;
		case 'h':
			hold = true;
			continue;
		case 'r':
			hold = false;
			for (i = 0; i < nheld; i++)
				(void)relay_on_replicated(l, now, held[i]);
			nheld = 0;
			settle(l, b, hold, now);
			continue;
		case 'f':
			/* The backup leads; the old leader follows it. */
			nheld = 0;
			if (relay_become_backup(l) != RELAY_OK ||
			    relay_become_leader(b, now) != RELAY_OK)
				fail("failover", "refused");
			relay_drain(l);
			t = l;
			l = b;
			b = t;
			settle(l, b, hold, now);
			continue;
		case 'b':
			addr = "10.77.0.2";
			break;
		case 'c':
			addr = "10.77.0.3";
			break;
		default:
			addr = "10.77.0.1";
			break;
		}
		if (p[0] == 'a' || p[0] == 'b' || p[0] == 'c') {
			p++;
			n--;
		}
		if (wire_decode(&msg, p, n) != WIRE_OK)
			continue;
		request(l, now, addr);
		settle(l, b, hold, now);
	}
	check_restores(l);
	relay_free(l);
	relay_free(b);
	return 0;
}
