/* fuzz_relay: libFuzzer target for replication ops: parse, format, apply. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "relay.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

/*
 * The input is a repl body: ops separated by 0x1e (CHAT_REPL_SEP), each
 * parsed as a backup does and applied to one small replica in turn.  An
 * op whose version does not follow is applied a second time renumbered,
 * so that the fuzzer reaches deep states without guessing versions.
 */
#define SEP	 '\x1e'
#define OPS_MAX	 64
#define OP_BUF	 (RELAY_OP_TEXT_MAX + 64)
#define SENTINEL UINT64_C(0x5a5a5a5a5a5a5a5a)

static struct relay_cfg cfg;
static bool ready;
static char text1[OP_BUF], text2[OP_BUF];

static void
fail(const char *what, const char *detail)
{
	fprintf(stderr, "fuzz_relay: %s: %s\n", what, detail);
	abort();
}

/* Small limits, so that full queues and histories are reached. */
static void
setup(void)
{
	relay_cfg_defaults(&cfg);
	cfg.queue_max = 3;
	cfg.history_max = 2;
	cfg.inflight_max = 2;
	cfg.users_max = 8;
	cfg.rooms_max = 4;
	cfg.msg_bytes_max = 65536;
	ready = true;
}

static char *
snap(const struct relay *r, size_t *len)
{
	char *buf;

	if (relay_snapshot(r, &buf, len) != RELAY_OK)
		fail("snapshot", "refused a replica's state");
	return buf;
}

/* Whatever state ops build, its snapshot restores to the same state. */
static void
check_restores(const struct relay *r, const char *s, size_t len)
{
	struct relay t;
	enum relay_err e;
	char *again;
	size_t alen;

	if (relay_init(&t, &cfg) != RELAY_OK)
		fail("init", "configuration refused");
	if ((e = relay_restore(&t, s, len)) != RELAY_OK) {
		fprintf(stderr, "%.*s", (int)len, s);
		fail("own snapshot does not restore", relay_err_code(e));
	}
	again = snap(&t, &alen);
	if (alen != len || memcmp(again, s, len) != 0)
		fail("snapshot", "restored state writes other bytes");
	if (t.version != r->version || t.hash != r->hash ||
	    t.next_id != r->next_id)
		fail("restore", "version, digest or next id differ");
	free(again);
	relay_free(&t);
}

static bool
same_op(const struct relay_op *a, const struct relay_op *b)
{
	return a->type == b->type && a->version == b->version &&
	    strcmp(a->user, b->user) == 0 && strcmp(a->addr, b->addr) == 0 &&
	    a->port == b->port && strcmp(a->dest, b->dest) == 0 &&
	    a->id == b->id && a->seq == b->seq && a->cid == b->cid &&
	    a->bodylen == b->bodylen &&
	    (a->bodylen == 0 || memcmp(a->body, b->body, a->bodylen) == 0);
}

/* parse -> format -> parse gives the same op, and formatting is stable. */
static void
check_text(const struct relay_op *op, const char *in, size_t inlen)
{
	struct relay_op op2;
	size_t l1, l2;

	/* Every op but nextid names a user. */
	if (op->version == 0 ||
	    (op->user[0] == '\0') != (op->type == ROP_NEXT_ID) ||
	    op->type <= ROP_NONE || op->type >= ROP_COUNT)
		fail("parse", "accepted an op without version, user or type");
	if (op->type == ROP_MSG &&
	    (op->body < in || op->body + op->bodylen != in + inlen))
		fail("parse", "body does not point to the end of the text");
	if (relay_op_format(op, text1, sizeof(text1), &l1) == -1)
		fail("format", "a parsed op does not format");
	if (l1 > RELAY_OP_TEXT_MAX || l1 > inlen || text1[l1] != '\0')
		fail("format", "longer than the text it came from");
	if (relay_op_parse(&op2, text1, l1) == -1)
		fail("parse", "own format refused");
	if (!same_op(op, &op2))
		fail("round trip", "the op changed");
	if (relay_op_format(&op2, text2, sizeof(text2), &l2) == -1 ||
	    l1 != l2 || memcmp(text1, text2, l1) != 0)
		fail("format", "not canonical");
	/* Leading zeros aside, what parses is what the format writes. */
	if (l1 == inlen && memcmp(text1, in, inlen) != 0)
		fail("format", "same length, other bytes");
}

/* Applies op; nothing may change unless it is accepted. */
static enum relay_err
apply(struct relay *r, const struct relay_op *op)
{
	uint64_t v = r->version;
	enum relay_err e;
	char *before, *after;
	size_t blen, alen;

	before = snap(r, &blen);
	e = relay_apply(r, op);
	relay_drain(r);
	if ((e == RELAY_EOLD) != (op->version <= v) ||
	    (e == RELAY_EGAP) != (op->version > v + 1))
		fail("apply", "version check");
	after = snap(r, &alen);
	switch (e) {
	case RELAY_OK:
		if (r->version != op->version)
			fail("apply", "version not moved to the op's");
		if (alen == blen && memcmp(before, after, blen) == 0)
			fail("apply", "accepted without a change");
		check_restores(r, after, alen);
		break;
	case RELAY_EOLD:
	case RELAY_EGAP:
	case RELAY_EDIVERGED:
	case RELAY_ENOMEM:
		if (alen != blen || memcmp(before, after, blen) != 0)
			fail("apply", "refused but changed the state");
		break;
	default:
		fail("apply", relay_err_code(e));
	}
	free(before);
	free(after);
	return e;
}

/*
 * The leader's RO_REPLICATE outputs, formatted and parsed as a backup
 * receives them, bring a backup restored from snapshot s to its state.
 */
static void
check_replicated(const struct relay *l, const char *s, size_t len)
{
	struct relay_op op;
	struct relay b;
	enum relay_err e;
	size_t i, n;

	if (relay_init(&b, &cfg) != RELAY_OK ||
	    relay_restore(&b, s, len) != RELAY_OK)
		fail("backup", "cannot start from the snapshot");
	for (i = 0; i < l->nout; i++) {
		if (l->out[i].type != RO_REPLICATE)
			continue;
		if (relay_op_format(&l->out[i].op, text1, sizeof(text1), &n) ==
		    -1)
			fail("leader", "emitted an op that does not format");
		if (relay_op_parse(&op, text1, n) == -1)
			fail("leader", "emitted an op that does not parse");
		if ((e = relay_apply(&b, &op)) != RELAY_OK)
			fail("backup refused the leader's op",
			    relay_err_code(e));
		relay_drain(&b);
	}
	if (!relay_equal(l, &b))
		fail("backup", "differs from the leader after its ops");
	relay_free(&b);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data, *end = p + size, *sep;
	struct relay_op op;
	struct relay r;
	enum relay_err e;
	size_t n, k;
	char *s1, *s2;
	size_t l1, l2;

	if (!ready)
		setup();
	if (relay_init(&r, &cfg) != RELAY_OK)
		fail("init", "configuration refused");
	for (k = 0; k < OPS_MAX && p < end; k++, p = sep + 1) {
		if ((sep = memchr(p, SEP, (size_t)(end - p))) == NULL)
			sep = end;
		n = (size_t)(sep - p);
		memset(&op, 0, sizeof(op));
		op.version = SENTINEL;
		if (relay_op_parse(&op, p, n) == -1) {
			if (op.version != SENTINEL)
				fail("parse", "refused, but wrote the op");
			continue;
		}
		check_text(&op, p, n);
		e = apply(&r, &op);
		if (e == RELAY_EOLD || e == RELAY_EGAP) {
			op.version = r.version + 1;
			(void)apply(&r, &op);
		}
	}

	/*
	 * A failover changes no replicated state; the new leader's expiry
	 * of silent users comes out as ops a backup of it applies.
	 */
	s1 = snap(&r, &l1);
	if (relay_become_leader(&r, 0) != RELAY_OK)
		fail("become leader", "refused");
	relay_drain(&r);
	s2 = snap(&r, &l2);
	if (l1 != l2 || memcmp(s1, s2, l1) != 0)
		fail("become leader", "changed the replicated state");
	free(s2);
	relay_tick(&r, 60000);
	check_replicated(&r, s1, l1);
	relay_drain(&r);
	free(s1);
	relay_free(&r);
	return 0;
}
