/* fuzz_snapshot: libFuzzer target for relay_restore and the merge of a state.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "relay.h"
#include "store.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

/*
 * A snapshot comes from another server: the leader's to a backup (snap),
 * a backup's to the leader to merge, or chat.snap at start.  Each input
 * is restored twice: as it is, then with its end line's checksum made
 * right, so that the fuzzer gets past the checksum to the lines.  What
 * restores is then merged into a small leader the way a partition heals.
 */
#define ADDR "10.77.0.1"
#define PORT 4000

static struct relay_cfg cfg;
static char *home; /* the leader's state before each merge */
static size_t homelen;
static char *fixed;
static size_t fixedcap;

static void
fail(const char *what, const char *detail)
{
	fprintf(stderr, "fuzz_snapshot: %s: %s\n", what, detail);
	abort();
}

static char *
snap(const struct relay *r, size_t *len)
{
	char *buf;

	if (relay_snapshot(r, &buf, len) != RELAY_OK)
		fail("snapshot", "refused a replica's state");
	return buf;
}

static void
dump(const char *what, const struct relay *r)
{
	char *s;
	size_t len;

	s = snap(r, &len);
	fprintf(stderr, "%s:\n%.*s", what, (int)len, s);
	free(s);
}

static void
must(enum relay_err e, const char *what)
{
	if (e != RELAY_OK)
		fail(what, relay_err_code(e));
}

/*
 * The leader: alice and bob online in #lobby, carol registered offline,
 * a message to the room that bob has not acknowledged.
 */
static void
setup(void)
{
	struct relay l;
	size_t i;

	relay_cfg_defaults(&cfg);
	cfg.queue_max = 4;
	cfg.history_max = 3;
	cfg.inflight_max = 2;
	cfg.users_max = 16;
	cfg.rooms_max = 8;
	cfg.msg_bytes_max = 65536;
	must(relay_init(&l, &cfg), "init");
	must(relay_become_leader(&l, 0), "leader");
	must(relay_on_newu(&l, 0, "alice", ADDR, PORT), "newu");
	must(relay_on_login(&l, 0, "alice", ADDR, PORT), "login");
	must(relay_on_newu(&l, 0, "bob", "10.77.0.2", PORT), "newu");
	must(relay_on_login(&l, 0, "bob", "10.77.0.2", PORT), "login");
	must(relay_on_newu(&l, 0, "carol", "10.77.0.3", PORT), "newu");
	must(relay_on_join(&l, 0, "alice", ADDR, PORT, "#lobby"), "join");
	must(relay_on_join(&l, 0, "bob", "10.77.0.2", PORT, "#lobby"), "join");
	must(
	    relay_on_msg(&l, 0, "alice", ADDR, PORT, "#lobby", "hi", 1), "msg");
	for (i = 0; i < l.nout; i++)
		if (l.out[i].type == RO_REPLICATE &&
		    l.out[i].op.type == ROP_MSG)
			must(relay_on_replicated(&l, 0, l.out[i].op.id),
			    "replicated");
	relay_drain(&l);
	home = snap(&l, &homelen);
	relay_free(&l);
}

/* The input with a right checksum: its end line replaced or added. */
static size_t
fix_checksum(const char *in, size_t len)
{
	const char *tail;
	size_t body = len, need;
	int n;

	if (len >= 21 && in[len - 1] == '\n') {
		tail = in + len - 21;
		if (memcmp(tail, "end ", 4) == 0 &&
		    (tail == in || tail[-1] == '\n'))
			body = len - 21;
	}
	need = body + 22;
	if (need > fixedcap) {
		free(fixed);
		if ((fixed = malloc(need)) == NULL)
			fail("malloc", "out of memory");
		fixedcap = need;
	}
	memcpy(fixed, in, body);
	n = snprintf(fixed + body, 22, "end %016llx\n",
	    (unsigned long long)store_fnv64(in, body));
	if (n != 21)
		fail("snprintf", "end line");
	return body + 21;
}

/* A replica a restore may not touch when it refuses: the leader's state. */
static void
restore_into_busy(const char *buf, size_t len, enum relay_err want)
{
	struct relay b;
	enum relay_err e;
	char *after;
	size_t alen;

	must(relay_init(&b, &cfg), "init");
	must(relay_restore(&b, home, homelen), "restore the leader's state");
	relay_drain(&b);
	e = relay_restore(&b, buf, len);
	if (e != want)
		fail("restore", "another answer on a busy replica");
	/* One restore event when it took the state, nothing otherwise. */
	if (e == RELAY_OK ? b.nout != 1 || b.out[0].type != RO_EVENT ||
		    b.out[0].ev != REV_RESTORE
			  : b.nout != 0)
		fail("restore", "outputs");
	if (e != RELAY_OK) {
		after = snap(&b, &alen);
		if (alen != homelen || memcmp(after, home, alen) != 0)
			fail("restore", "refused but changed the replica");
		free(after);
	}
	relay_free(&b);
}

/* Every user the relay holds can be written to users.json and read back. */
static void
check_export(const struct relay *r)
{
	struct users_state st, back;
	struct store_error err;
	struct relay_user_info info;
	char *text;
	size_t len, i;

	store_users_init(&st);
	store_users_init(&back);
	if (relay_export_users(r, NULL, 1700000000, &st) == -1)
		fail("export users", "out of memory");
	if ((text = store_format_users(&st, &len, &err)) == NULL)
		fail("users.json refuses a restored user", err.text);
	if (store_parse_users("fuzz", text, len, &back, &err) == -1)
		fail("users.json written does not parse", err.text);
	if (back.n != st.n)
		fail("users.json", "users lost");
	for (i = 0; i < st.n; i++)
		if (relay_user_get(r, st.u[i].name, &info) == -1 ||
		    strcmp(info.name, st.u[i].name) != 0)
			fail("export users", "a user exported is not found");
	for (i = 0; i < relay_online_count(r); i++)
		if (relay_online_get(r, i, &info) == -1 || !info.online)
			fail("online users", "list and state disagree");
	free(text);
	store_users_free(&st);
	store_users_free(&back);
}

/*
 * Merges o into the leader; its ops, as a backup receives them, bring
 * the leader's backup to the same state.  A second merge adds nothing.
 */
static void
check_merge(const struct relay *o)
{
	struct relay l, b;
	struct relay_op op;
	char text[RELAY_OP_TEXT_MAX + 1];
	size_t nu, nm, i, n;
	enum relay_err e;

	must(relay_init(&l, &cfg), "init");
	must(relay_init(&b, &cfg), "init");
	must(relay_restore(&l, home, homelen), "restore the leader");
	must(relay_restore(&b, home, homelen), "restore the backup");
	must(relay_become_leader(&l, 0), "leader");
	relay_drain(&l);
	e = relay_merge(&l, 0, o, &nu, &nm);
	if (e != RELAY_OK && e != RELAY_EFULL && e != RELAY_ENOMEM)
		fail("merge", relay_err_code(e));
	for (i = 0; i < l.nout; i++) {
		if (l.out[i].type != RO_REPLICATE)
			continue;
		if (relay_op_format(&l.out[i].op, text, sizeof(text), &n) == -1)
			fail("merge", "made an op that does not format");
		if (relay_op_parse(&op, text, n) == -1)
			fail("merge", "made an op that does not parse");
		if ((e = relay_apply(&b, &op)) != RELAY_OK) {
			fprintf(stderr, "op: %s\n", text);
			fail("backup refused a merge op", relay_err_code(e));
		}
		relay_drain(&b);
	}
	relay_drain(&l);
	if (!relay_equal(&l, &b)) {
		dump("leader", &l);
		dump("backup", &b);
		fail("merge", "backup differs from the leader after its ops");
	}
	if (e == RELAY_OK &&
	    (relay_merge(&l, 0, o, &nu, &nm) != RELAY_OK || nu != 0 || nm != 0))
		fail("merge", "not idempotent");
	relay_free(&l);
	relay_free(&b);
}

static void
restored(const char *buf, size_t len)
{
	struct relay r, t;
	char *s1, *s2;
	size_t l1, l2;

	must(relay_init(&r, &cfg), "init");
	must(relay_restore(&r, buf, len), "restore");
	/* Canonical after one trip: snapshot, restore, snapshot. */
	s1 = snap(&r, &l1);
	must(relay_init(&t, &cfg), "init");
	if (relay_restore(&t, s1, l1) != RELAY_OK) {
		fprintf(stderr, "%.*s", (int)l1, s1);
		fail("restore", "own snapshot refused");
	}
	s2 = snap(&t, &l2);
	if (l1 != l2 || memcmp(s1, s2, l1) != 0)
		fail("snapshot", "not stable after a restore");
	free(s1);
	free(s2);
	relay_free(&t);
	check_export(&r);
	check_merge(&r);
	/* A backup restored this way can take over. */
	must(relay_become_leader(&r, 0), "become leader");
	relay_tick(&r, 60000);
	relay_drain(&r);
	relay_free(&r);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *in = (const char *)data;
	struct relay r;
	enum relay_err e, e2;
	size_t flen;

	if (home == NULL)
		setup();
	must(relay_init(&r, &cfg), "init");
	e = relay_restore(&r, in, size);
	if (e != RELAY_OK && e != RELAY_ESNAPSHOT && e != RELAY_ENOMEM)
		fail("restore", relay_err_code(e));
	relay_free(&r);
	if (e == RELAY_OK)
		restored(in, size);

	flen = fix_checksum(in, size);
	must(relay_init(&r, &cfg), "init");
	e2 = relay_restore(&r, fixed, flen);
	relay_free(&r);
	if (e == RELAY_OK && (e2 != RELAY_OK || flen != size))
		fail("checksum", "a valid end line was not kept");
	restore_into_busy(fixed, flen, e2);
	if (e2 == RELAY_OK && e != RELAY_OK)
		restored(fixed, flen);
	return 0;
}
