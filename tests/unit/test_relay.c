/* test_relay: unit tests for the chat relay state machine in src/relay.c. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "relay.h"

#define A_ADDR "10.0.0.1"
#define B_ADDR "10.0.0.2"
#define C_ADDR "10.0.0.3"
#define PORT   4000

/* ---- helpers --------------------------------------------------------- */

static struct relay_cfg
cfg_default(void)
{
	struct relay_cfg c;

	relay_cfg_defaults(&c);
	return c;
}

static void
init_leader(struct relay *r, const struct relay_cfg *c)
{
	struct relay_cfg d = cfg_default();

	assert_int_equal(relay_init(r, c != NULL ? c : &d), RELAY_OK);
	assert_int_equal(relay_become_leader(r, 0), RELAY_OK);
	relay_drain(r);
}

static void
init_backup(struct relay *r, const struct relay_cfg *c)
{
	struct relay_cfg d = cfg_default();

	assert_int_equal(relay_init(r, c != NULL ? c : &d), RELAY_OK);
}

/* Registers and logs in name at addr:PORT; the outbox is drained. */
static void
user_up(struct relay *r, const char *name, const char *addr)
{
	assert_int_equal(relay_on_newu(r, 0, name, addr, PORT), RELAY_OK);
	assert_int_equal(relay_on_login(r, 0, name, addr, PORT), RELAY_OK);
	relay_drain(r);
}

static size_t
count_type(const struct relay *r, enum relay_out_type t)
{
	size_t i, n = 0;

	for (i = 0; i < r->nout; i++)
		if (r->out[i].type == t)
			n++;
	return n;
}

static const struct relay_out *
find_reply(const struct relay *r, const char *user)
{
	size_t i;

	for (i = 0; i < r->nout; i++)
		if (r->out[i].type == RO_REPLY &&
		    strcmp(r->out[i].user, user) == 0)
			return &r->out[i];
	return NULL;
}

static const struct relay_out *
find_deliver(const struct relay *r, const char *user)
{
	size_t i;

	for (i = 0; i < r->nout; i++)
		if (r->out[i].type == RO_DELIVER &&
		    strcmp(r->out[i].user, user) == 0)
			return &r->out[i];
	return NULL;
}

static size_t
count_deliver(const struct relay *r, const char *user)
{
	size_t i, n = 0;

	for (i = 0; i < r->nout; i++)
		if (r->out[i].type == RO_DELIVER &&
		    (user == NULL || strcmp(r->out[i].user, user) == 0))
			n++;
	return n;
}

static bool
has_event(const struct relay *r, enum relay_event ev)
{
	size_t i;

	for (i = 0; i < r->nout; i++)
		if (r->out[i].type == RO_EVENT && r->out[i].ev == ev)
			return true;
	return false;
}

/* The id of the message the last RO_REPLICATE of type msg carried. */
static uint64_t
last_msg_id(const struct relay *r)
{
	size_t i;

	for (i = r->nout; i-- > 0;)
		if (r->out[i].type == RO_REPLICATE &&
		    r->out[i].op.type == ROP_MSG)
			return r->out[i].op.id;
	return 0;
}

/*
 * Sends every op in L's outbox through text to B (when not NULL), as
 * the daemon would, and confirms L's messages (the backups have them).
 * L's outbox keeps the confirmations' outputs.
 */
static void
replicate(struct relay *L, struct relay *B, int64_t now)
{
	char text[RELAY_OP_TEXT_MAX + 1];
	uint64_t ids[4096];
	struct relay_op op;
	size_t i, n = 0, len, nout = L->nout;

	for (i = 0; i < nout; i++) {
		if (L->out[i].type != RO_REPLICATE)
			continue;
		assert_int_equal(
		    relay_op_format(&L->out[i].op, text, sizeof(text), &len),
		    0);
		assert_true(len <= RELAY_OP_TEXT_MAX);
		assert_int_equal(relay_op_parse(&op, text, len), 0);
		if (B != NULL) {
			assert_int_equal(relay_apply(B, &op), RELAY_OK);
			relay_drain(B);
		}
		if (op.type == ROP_MSG) {
			assert_true(n < 4096);
			ids[n++] = op.id;
		}
	}
	for (i = 0; i < n; i++)
		assert_int_equal(relay_on_replicated(L, now, ids[i]), RELAY_OK);
}

/* Acks every delivery in the outbox as its recipient would. */
static void
ack_all(struct relay *r, int64_t now)
{
	struct relay_out d[4096];
	size_t i, n = 0;

	for (i = 0; i < r->nout; i++)
		if (r->out[i].type == RO_DELIVER) {
			assert_true(n < 4096);
			d[n++] = r->out[i];
		}
	relay_drain(r);
	for (i = 0; i < n; i++)
		relay_on_ack(r, now, d[i].user, d[i].addr, d[i].port, d[i].id);
}

/* Leader with alice, bob and carol online. */
static void
trio(struct relay *r, const struct relay_cfg *c)
{
	init_leader(r, c);
	user_up(r, "alice", A_ADDR);
	user_up(r, "bob", B_ADDR);
	user_up(r, "carol", C_ADDR);
}

/* alice sends body to `to` with cid; replicated and confirmed. */
static uint64_t
send_ok(struct relay *r, int64_t now, const char *to, const char *body,
    uint64_t cid)
{
	uint64_t id;

	assert_int_equal(
	    relay_on_msg(r, now, "alice", A_ADDR, PORT, to, body, cid),
	    RELAY_OK);
	id = last_msg_id(r);
	assert_true(id != 0);
	assert_int_equal(relay_on_replicated(r, now, id), RELAY_OK);
	return id;
}

/* ---- merge ------------------------------------------------------------ */

/* A delivery of body to user in r's outbox. */
static bool
delivered(const struct relay *r, const char *user, const char *body)
{
	size_t i;

	for (i = 0; i < r->nout; i++)
		if (r->out[i].type == RO_DELIVER &&
		    strcmp(r->out[i].user, user) == 0 &&
		    r->out[i].bodylen == strlen(body) &&
		    memcmp(r->out[i].body, body, r->out[i].bodylen) == 0)
			return true;
	return false;
}

/*
 * L and O share a history, then are cut apart and each leads its own
 * side: the merge takes O's users (a name registered on both sides
 * renamed), its message, delivered only to who has not had it.
 */
static void
merge_should_take_the_other_sides_users_and_messages_once(void **state)
{
	struct relay L, O, B;
	const struct relay_out *o;
	size_t nu = 9, nm = 9, i;
	char *snap;
	size_t len;
	bool renamed = false;

	(void)state;
	trio(&L, NULL);
	L.origin = 1;
	for (i = 0; i < 3; i++) {
		static const char *const who[] = {"alice", "bob", "carol"};
		static const char *const at[] = {A_ADDR, B_ADDR, C_ADDR};

		assert_int_equal(
		    relay_on_join(&L, 0, who[i], at[i], PORT, "#lobby"),
		    RELAY_OK);
	}
	relay_drain(&L);
	init_backup(&B, NULL);
	assert_int_equal(relay_snapshot(&L, &snap, &len), RELAY_OK);
	assert_int_equal(relay_restore(&B, snap, len), RELAY_OK);
	init_backup(&O, NULL);
	assert_int_equal(relay_restore(&O, snap, len), RELAY_OK);
	free(snap);
	assert_int_equal(O.hash, L.hash);
	relay_drain(&B);
	relay_drain(&O);
	assert_int_equal(relay_become_leader(&O, 0), RELAY_OK);
	O.origin = 2;
	relay_drain(&O);

	/* L's side: dave registers, alice talks. */
	assert_int_equal(
	    relay_on_newu(&L, 0, "dave", "10.0.0.4", PORT), RELAY_OK);
	assert_int_equal(
	    relay_on_msg(&L, 0, "alice", A_ADDR, PORT, "#lobby", "from-L", 1),
	    RELAY_OK);
	replicate(&L, &B, 0);
	relay_drain(&L);
	/* O's side: erin, another dave; bob talks, carol has it there. */
	assert_int_equal(
	    relay_on_newu(&O, 0, "erin", "10.0.1.5", PORT), RELAY_OK);
	assert_int_equal(
	    relay_on_newu(&O, 0, "dave", "10.0.1.4", PORT), RELAY_OK);
	assert_int_equal(
	    relay_on_msg(&O, 0, "bob", B_ADDR, PORT, "#lobby", "from-O", 1),
	    RELAY_OK);
	assert_int_equal(relay_on_replicated(&O, 0, last_msg_id(&O)), RELAY_OK);
	o = find_deliver(&O, "carol");
	assert_non_null(o);
	{
		uint64_t id = o->id;

		relay_drain(&O);
		assert_int_equal(
		    relay_on_ack(&O, 0, "carol", C_ADDR, PORT, id), RELAY_OK);
	}
	relay_drain(&O);
	assert_true(O.hash != L.hash);

	/* Heal: L stays leader and takes O's state in. */
	assert_int_equal(relay_merge(&B, 0, &O, NULL, NULL), RELAY_EROLE);
	assert_int_equal(relay_merge(&L, 0, &O, &nu, &nm), RELAY_OK);
	assert_int_equal(nu, 2); /* erin, and dave~2 */
	assert_int_equal(nm, 1); /* from-O */
	for (i = 0; i < L.nout; i++) {
		o = &L.out[i];
		if (o->type == RO_REPLY && o->err == RELAY_ERENAMED) {
			assert_string_equal(o->user, "dave");
			assert_string_equal(o->addr, "10.0.1.4");
			assert_string_equal(o->text, "dave~2");
			renamed = true;
		}
	}
	assert_true(renamed);
	/* The ops go to the backup like any others; then confirmed. */
	replicate(&L, &B, 0);
	assert_true(relay_equal(&L, &B));
	assert_true(delivered(&L, "alice", "from-O"));
	assert_false(delivered(&L, "carol", "from-O")); /* had it */
	assert_false(delivered(&L, "bob", "from-O"));	/* sent it */
	{
		struct relay_user_info info;

		assert_int_equal(relay_user_get(&L, "dave", &info), 0);
		assert_string_equal(info.addr, "10.0.0.4");
		assert_int_equal(relay_user_get(&L, "dave~2", &info), 0);
		assert_string_equal(info.addr, "10.0.1.4");
		assert_false(info.online);
		assert_int_equal(relay_user_get(&L, "erin", &info), 0);
	}
	relay_drain(&L);
	/* Again (another backup of O's side): nothing new. */
	assert_int_equal(relay_merge(&L, 0, &O, &nu, &nm), RELAY_OK);
	assert_int_equal(nu, 0);
	assert_int_equal(nm, 0);
	assert_int_equal(count_type(&L, RO_REPLICATE), 0);
	relay_free(&L);
	relay_free(&O);
	relay_free(&B);
}

/*
 * A stale replica restarted as leader, the newer one merged in: what
 * the newer one had queued reaches the user, once.
 */
static void
merge_should_bring_a_stale_leader_up_to_date(void **state)
{
	struct relay N, S;
	struct relay_user_info info;
	size_t nu, nm;
	char *snap;
	size_t len;

	(void)state;
	init_leader(&N, NULL);
	user_up(&N, "alice", A_ADDR);
	assert_int_equal(relay_on_newu(&N, 0, "bob", B_ADDR, PORT), RELAY_OK);
	relay_drain(&N);
	assert_int_equal(relay_snapshot(&N, &snap, &len), RELAY_OK);
	init_backup(&S, NULL);
	assert_int_equal(relay_restore(&S, snap, len), RELAY_OK);
	free(snap);
	relay_drain(&S);
	/* bob is offline: alice's messages wait for him on N only. */
	send_ok(&N, 0, "bob", "one", 1);
	send_ok(&N, 0, "bob", "two", 2);
	relay_drain(&N);
	assert_int_equal(relay_become_leader(&S, 0), RELAY_OK);
	relay_drain(&S);
	assert_int_equal(relay_merge(&S, 0, &N, &nu, &nm), RELAY_OK);
	assert_int_equal(nu, 0);
	assert_int_equal(nm, 2);
	replicate(&S, NULL, 0);
	relay_drain(&S);
	assert_int_equal(relay_user_get(&S, "bob", &info), 0);
	assert_int_equal(info.queued, 2);
	assert_int_equal(relay_on_login(&S, 0, "bob", B_ADDR, PORT), RELAY_OK);
	assert_true(delivered(&S, "bob", "one"));
	relay_drain(&S);
	/* alice's client resends "two" (never saw its ok): a duplicate. */
	assert_int_equal(
	    relay_on_msg(&S, 0, "alice", A_ADDR, PORT, "bob", "two", 2),
	    RELAY_OK);
	assert_true(has_event(&S, REV_DUPLICATE));
	relay_free(&N);
	relay_free(&S);
}

/*
 * O's side gave out ids that L never saw, and none of its messages is
 * left to merge (all delivered): L still moves its ids past O's, and
 * says so in an op, so that a backup that takes over goes on from there
 * too (a client of O's side drops an id it has seen in a stream).
 */
static void
merge_should_replicate_the_move_of_next_id_without_a_message(void **state)
{
	struct relay L, O, B;
	size_t nu = 9, nm = 9, i;
	uint64_t id = 0;
	char *snap;
	size_t len;

	(void)state;
	init_leader(&L, NULL);
	user_up(&L, "alice", A_ADDR);
	user_up(&L, "bob", B_ADDR);
	assert_int_equal(relay_snapshot(&L, &snap, &len), RELAY_OK);
	init_backup(&B, NULL);
	assert_int_equal(relay_restore(&B, snap, len), RELAY_OK);
	init_backup(&O, NULL);
	assert_int_equal(relay_restore(&O, snap, len), RELAY_OK);
	free(snap);
	relay_drain(&B);
	relay_drain(&O);
	assert_int_equal(relay_become_leader(&O, 0), RELAY_OK);
	relay_drain(&O);
	/* O's side: alice sends bob three messages, bob has them all. */
	for (i = 1; i <= 3; i++) {
		assert_int_equal(relay_on_msg(&O, 0, "alice", A_ADDR, PORT,
				     "bob", "on O", i),
		    RELAY_OK);
		id = last_msg_id(&O);
		assert_int_equal(relay_on_replicated(&O, 0, id), RELAY_OK);
		relay_drain(&O);
		assert_int_equal(
		    relay_on_ack(&O, 0, "bob", B_ADDR, PORT, id), RELAY_OK);
		relay_drain(&O);
	}
	assert_int_equal(O.next_id, id + 1);
	assert_true(L.next_id < O.next_id);

	assert_int_equal(relay_merge(&L, 0, &O, &nu, &nm), RELAY_OK);
	assert_int_equal(nu, 0);
	assert_int_equal(nm, 0);
	assert_int_equal(L.next_id, O.next_id);
	assert_int_equal(count_type(&L, RO_REPLICATE), 1);
	replicate(&L, &B, 0);
	relay_drain(&L);
	assert_true(relay_equal(&L, &B));
	/* A second merge adds nothing, not even an op. */
	assert_int_equal(relay_merge(&L, 0, &O, &nu, &nm), RELAY_OK);
	assert_int_equal(count_type(&L, RO_REPLICATE), 0);
	/* L dies: B's first message comes after every id O gave out. */
	assert_int_equal(relay_become_leader(&B, 0), RELAY_OK);
	relay_drain(&B);
	assert_int_equal(
	    relay_on_msg(&B, 0, "alice", A_ADDR, PORT, "bob", "on B", 4),
	    RELAY_OK);
	assert_int_equal(last_msg_id(&B), O.next_id);
	relay_free(&L);
	relay_free(&O);
	relay_free(&B);
}

/* ---- configuration --------------------------------------------------- */

static void
init_should_refuse_an_out_of_range_configuration(void **state)
{
	struct relay_cfg c;
	struct relay r;

	(void)state;
	c = cfg_default();
	c.retry_max_ms = c.retry_min_ms - 1;
	assert_int_equal(relay_init(&r, &c), RELAY_EARG);
	c = cfg_default();
	c.queue_max = 0;
	assert_int_equal(relay_init(&r, &c), RELAY_EARG);
	c = cfg_default();
	c.alive_misses = 0;
	assert_int_equal(relay_init(&r, &c), RELAY_EARG);
	assert_int_equal(relay_init(&r, NULL), RELAY_EARG);
	c = cfg_default();
	assert_int_equal(relay_init(&r, &c), RELAY_OK);
	assert_false(r.leader);
	relay_free(&r);
}

static void
error_codes_should_be_distinct_wire_words(void **state)
{
	int i, j;

	(void)state;
	for (i = 0; i < RELAY_NERR; i++) {
		assert_non_null(relay_err_code((enum relay_err)i));
		for (j = 0; j < i; j++)
			assert_string_not_equal(
			    relay_err_code((enum relay_err)i),
			    relay_err_code((enum relay_err)j));
	}
	assert_string_equal(relay_err_code(RELAY_ENAME_TAKEN), "name_taken");
	assert_string_equal(relay_err_code(RELAY_EFORGED), "forged_sender");
	assert_string_equal(relay_err_code(RELAY_NERR), "bad_request");
	assert_string_equal(relay_op_name(ROP_COUNT), "?");
	assert_string_equal(relay_event_name((enum relay_event)99), "?");
}

/* ---- users and sessions ---------------------------------------------- */

static void
newu_should_register_a_valid_name_and_answer_ok(void **state)
{
	struct relay_user_info ui;
	const struct relay_out *o;
	struct relay r;

	(void)state;
	init_leader(&r, NULL);
	assert_int_equal(relay_on_newu(&r, 0, "alice", A_ADDR, PORT), RELAY_OK);
	o = find_reply(&r, "alice");
	assert_non_null(o);
	assert_int_equal(o->re, WK_NEWU);
	assert_int_equal(o->err, RELAY_OK);
	assert_int_equal(count_type(&r, RO_REPLICATE), 1);
	assert_true(has_event(&r, REV_REGISTER));
	assert_int_equal(relay_user_get(&r, "alice", &ui), 0);
	assert_false(ui.online);
	assert_int_equal(r.version, 1);
	/* printable UTF-8 is a name too */
	assert_int_equal(
	    relay_on_newu(&r, 0, "z\xc3\xa9ro%=", B_ADDR, PORT), RELAY_OK);
	relay_free(&r);
}

static void
newu_should_refuse_invalid_names_with_bad_name(void **state)
{
	static const char *const bad[] = {"", "a b", "a@b", "#room", "a*",
	    "tab\there", "del\x7f", "c1\xc2\x85", "bad\xff", "trunc\xc3",
	    "0123456789abcdef0123456789abcdef", "sur\xed\xa0\x80"};
	const struct relay_out *o;
	struct relay r;
	size_t i;

	(void)state;
	init_leader(&r, NULL);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(relay_on_newu(&r, 0, bad[i], A_ADDR, PORT),
		    RELAY_EBAD_NAME);
		assert_int_equal(r.nout > 0, 1);
		o = &r.out[0];
		assert_int_equal(o->type, RO_REPLY);
		assert_int_equal(o->err, RELAY_EBAD_NAME);
		assert_int_equal(count_type(&r, RO_REPLICATE), 0);
		relay_drain(&r);
	}
	assert_int_equal(
	    relay_on_newu(&r, 0, NULL, A_ADDR, PORT), RELAY_EBAD_NAME);
	assert_int_equal(r.version, 0);
	/* 31 bytes is the longest name */
	assert_int_equal(relay_on_newu(&r, 0, "0123456789abcdef0123456789abcde",
			     A_ADDR, PORT),
	    RELAY_OK);
	relay_free(&r);
}

static void
newu_should_refuse_a_taken_name_from_another_address(void **state)
{
	struct relay r;

	(void)state;
	init_leader(&r, NULL);
	assert_int_equal(relay_on_newu(&r, 0, "alice", A_ADDR, PORT), RELAY_OK);
	relay_drain(&r);
	assert_int_equal(
	    relay_on_newu(&r, 0, "alice", B_ADDR, PORT), RELAY_ENAME_TAKEN);
	assert_int_equal(find_reply(&r, "alice")->err, RELAY_ENAME_TAKEN);
	relay_drain(&r);
	assert_int_equal(
	    relay_on_newu(&r, 0, "alice", A_ADDR, PORT + 1), RELAY_ENAME_TAKEN);
	assert_int_equal(r.version, 1);
	relay_free(&r);
}

static void
newu_resent_from_the_same_address_should_be_answered_ok_again(void **state)
{
	struct relay r;

	(void)state;
	init_leader(&r, NULL);
	assert_int_equal(relay_on_newu(&r, 0, "alice", A_ADDR, PORT), RELAY_OK);
	relay_drain(&r);
	assert_int_equal(relay_on_newu(&r, 0, "alice", A_ADDR, PORT), RELAY_OK);
	assert_int_equal(find_reply(&r, "alice")->err, RELAY_OK);
	assert_int_equal(count_type(&r, RO_REPLICATE), 0);
	assert_int_equal(r.version, 1);
	relay_free(&r);
}

static void
newu_beyond_users_max_should_answer_full(void **state)
{
	struct relay_cfg c = cfg_default();
	struct relay r;

	(void)state;
	c.users_max = 2;
	init_leader(&r, &c);
	assert_int_equal(relay_on_newu(&r, 0, "a", A_ADDR, PORT), RELAY_OK);
	assert_int_equal(relay_on_newu(&r, 0, "b", A_ADDR, PORT), RELAY_OK);
	assert_int_equal(relay_on_newu(&r, 0, "c", A_ADDR, PORT), RELAY_EFULL);
	relay_free(&r);
}

static void
login_of_an_unknown_user_should_answer_unknown_user(void **state)
{
	struct relay r;

	(void)state;
	init_leader(&r, NULL);
	assert_int_equal(
	    relay_on_login(&r, 0, "nobody", A_ADDR, PORT), RELAY_EUNKNOWN_USER);
	assert_int_equal(find_reply(&r, "nobody")->err, RELAY_EUNKNOWN_USER);
	assert_int_equal(relay_online_count(&r), 0);
	relay_free(&r);
}

static void
login_should_record_the_address_and_report_the_highest_cid(void **state)
{
	struct relay_user_info ui;
	const struct relay_out *o;
	struct relay r;

	(void)state;
	trio(&r, NULL);
	send_ok(&r, 1, "bob", "one", 7);
	relay_drain(&r);
	/* alice moves to another port: the login follows her */
	assert_int_equal(
	    relay_on_login(&r, 2, "alice", A_ADDR, PORT + 9), RELAY_OK);
	o = find_reply(&r, "alice");
	assert_non_null(o);
	assert_true(o->has_cid);
	assert_int_equal(o->cid, 7);
	assert_int_equal(o->port, PORT + 9);
	assert_int_equal(relay_user_get(&r, "alice", &ui), 0);
	assert_true(ui.online);
	assert_int_equal(ui.port, PORT + 9);
	assert_string_equal(ui.addr, A_ADDR);
	assert_int_equal(ui.cid_hi, 7);
	relay_drain(&r);
	/* the old address is no longer hers */
	assert_int_equal(
	    relay_on_alive(&r, 3, "alice", A_ADDR, PORT), RELAY_EFORGED);
	relay_free(&r);
}

/*
 * A new leader walks its online users to tell them it leads: a backup's
 * replica lists the same sessions as the leader's, each once with its
 * address, and none of those logged out.
 */
static void
online_get_should_list_each_online_user_once_on_every_replica(void **state)
{
	static const char *const names[] = {"alice", "carol", "dave"};
	static const char *const addrs[] = {A_ADDR, C_ADDR, "10.0.0.4"};
	struct relay_user_info ui;
	struct relay L, B;
	const struct relay *rs[2] = {&L, &B};
	size_t i, k, r, seen[3];

	(void)state;
	init_leader(&L, NULL);
	init_backup(&B, NULL);
	assert_int_equal(relay_online_get(&L, 0, &ui), -1);
	for (i = 0; i < 3; i++) {
		assert_int_equal(
		    relay_on_newu(&L, 0, names[i], addrs[i], PORT), RELAY_OK);
		assert_int_equal(
		    relay_on_login(&L, 0, names[i], addrs[i], PORT), RELAY_OK);
	}
	assert_int_equal(relay_on_newu(&L, 0, "bob", B_ADDR, PORT), RELAY_OK);
	assert_int_equal(relay_on_login(&L, 0, "bob", B_ADDR, PORT), RELAY_OK);
	assert_int_equal(relay_on_logout(&L, 1, "bob", B_ADDR, PORT), RELAY_OK);
	/* eve registered, never logged in */
	assert_int_equal(relay_on_newu(&L, 1, "eve", B_ADDR, PORT), RELAY_OK);
	replicate(&L, &B, 1);
	relay_drain(&L);
	for (r = 0; r < 2; r++) {
		memset(seen, 0, sizeof(seen));
		assert_int_equal(relay_online_count(rs[r]), 3);
		for (i = 0; relay_online_get(rs[r], i, &ui) == 0; i++) {
			assert_true(ui.online);
			assert_int_equal(ui.port, PORT);
			for (k = 0; k < 3 && strcmp(ui.name, names[k]) != 0;
			     k++)
				;
			assert_true(k < 3);
			assert_string_equal(ui.addr, addrs[k]);
			seen[k]++;
		}
		assert_int_equal(i, 3);
		for (k = 0; k < 3; k++)
			assert_int_equal(seen[k], 1);
		assert_int_equal(relay_online_get(rs[r], 3, &ui), -1);
		assert_int_equal(relay_online_get(rs[r], SIZE_MAX, &ui), -1);
	}
	assert_int_equal(relay_online_get(NULL, 0, &ui), -1);
	assert_int_equal(relay_online_get(&L, 0, NULL), -1);
	relay_free(&L);
	relay_free(&B);
}

static void
logout_should_mark_offline_and_require_a_new_login(void **state)
{
	struct relay_user_info ui;
	struct relay r;

	(void)state;
	trio(&r, NULL);
	assert_int_equal(relay_on_logout(&r, 1, "bob", B_ADDR, PORT), RELAY_OK);
	assert_int_equal(find_reply(&r, "bob")->err, RELAY_OK);
	assert_true(has_event(&r, REV_LOGOUT));
	assert_int_equal(relay_user_get(&r, "bob", &ui), 0);
	assert_false(ui.online);
	assert_int_equal(relay_online_count(&r), 2);
	relay_drain(&r);
	assert_int_equal(
	    relay_on_alive(&r, 2, "bob", B_ADDR, PORT), RELAY_ENOT_LOGGED_IN);
	assert_int_equal(
	    relay_on_logout(&r, 2, "bob", B_ADDR, PORT), RELAY_ENOT_LOGGED_IN);
	relay_free(&r);
}

static void
requests_without_a_valid_source_address_should_not_be_answered(void **state)
{
	static const char *const bad[] = {"", "1.2.3", "1.2.3.4.5", "256.1.1.1",
	    "01.2.3.4", "1.2.3.4 ", "a.b.c.d", "1..2.3"};
	struct relay r;
	size_t i;

	(void)state;
	trio(&r, NULL);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(
		    relay_on_newu(&r, 0, "dave", bad[i], PORT), RELAY_EARG);
		assert_int_equal(
		    relay_on_msg(&r, 0, "alice", bad[i], PORT, "bob", "x", 1),
		    RELAY_EARG);
	}
	assert_int_equal(
	    relay_on_login(&r, 0, "alice", NULL, PORT), RELAY_EARG);
	assert_int_equal(relay_on_login(&r, 0, "alice", A_ADDR, 0), RELAY_EARG);
	assert_int_equal(r.nout, 0);
	assert_int_equal(
	    relay_on_login(NULL, 0, "alice", A_ADDR, PORT), RELAY_EARG);
	relay_free(&r);
}

static void
requests_to_a_backup_should_answer_not_leader(void **state)
{
	struct relay r;

	(void)state;
	init_backup(&r, NULL);
	assert_int_equal(
	    relay_on_newu(&r, 0, "alice", A_ADDR, PORT), RELAY_EROLE);
	assert_string_equal(
	    relay_err_code(find_reply(&r, "alice")->err), "not_leader");
	assert_int_equal(relay_on_replicated(&r, 0, 1), RELAY_EROLE);
	assert_int_equal(r.nusers, 0);
	assert_int_equal(relay_next_deadline(&r), INT64_MAX);
	relay_free(&r);
}

static void
silent_client_should_be_marked_offline_after_k_keepalive_intervals(void **state)
{
	struct relay_cfg c = cfg_default();
	struct relay_user_info ui;
	struct relay r;

	(void)state;
	c.alive_ms = 1000;
	c.alive_misses = 3;
	init_leader(&r, &c);
	user_up(&r, "alice", A_ADDR);
	user_up(&r, "bob", B_ADDR);
	assert_int_equal(relay_next_deadline(&r), 3000);
	/* alice keeps sending keepalives, bob does not */
	assert_int_equal(
	    relay_on_alive(&r, 1000, "alice", A_ADDR, PORT), RELAY_OK);
	assert_int_equal(find_reply(&r, "alice")->err, RELAY_OK);
	assert_int_equal(
	    relay_on_alive(&r, 2000, "alice", A_ADDR, PORT), RELAY_OK);
	relay_drain(&r);
	relay_tick(&r, 2999);
	assert_int_equal(relay_online_count(&r), 2);
	relay_tick(&r, 3000);
	assert_int_equal(relay_user_get(&r, "bob", &ui), 0);
	assert_false(ui.online);
	assert_int_equal(relay_user_get(&r, "alice", &ui), 0);
	assert_true(ui.online);
	assert_true(has_event(&r, REV_EXPIRE));
	/* the expiry is a state change the backups learn */
	assert_int_equal(count_type(&r, RO_REPLICATE), 1);
	assert_int_equal(r.out[0].op.type, ROP_LOGOUT);
	assert_string_equal(r.out[0].op.user, "bob");
	assert_int_equal(relay_next_deadline(&r), 5000);
	relay_drain(&r);
	relay_tick(&r, 5000);
	assert_int_equal(relay_online_count(&r), 0);
	assert_int_equal(relay_next_deadline(&r), INT64_MAX);
	relay_free(&r);
}

/* ---- sender checks --------------------------------------------------- */

static void
msg_from_a_user_not_logged_in_should_relay_nothing(void **state)
{
	struct relay r;

	(void)state;
	trio(&r, NULL);
	assert_int_equal(
	    relay_on_logout(&r, 0, "alice", A_ADDR, PORT), RELAY_OK);
	relay_drain(&r);
	assert_int_equal(
	    relay_on_msg(&r, 1, "alice", A_ADDR, PORT, "bob", "hi", 1),
	    RELAY_ENOT_LOGGED_IN);
	assert_int_equal(find_reply(&r, "alice")->err, RELAY_ENOT_LOGGED_IN);
	assert_int_equal(count_type(&r, RO_REPLICATE), 0);
	assert_int_equal(count_deliver(&r, NULL), 0);
	relay_drain(&r);
	assert_int_equal(
	    relay_on_msg(&r, 1, "mallory", A_ADDR, PORT, "bob", "hi", 1),
	    RELAY_EUNKNOWN_USER);
	assert_int_equal(count_type(&r, RO_REPLICATE), 0);
	relay_free(&r);
}

static void
msg_from_another_address_should_answer_forged_sender(void **state)
{
	struct relay_user_info ui;
	struct relay r;

	(void)state;
	trio(&r, NULL);
	/* carol's machine claims to be alice */
	assert_int_equal(
	    relay_on_msg(&r, 1, "alice", C_ADDR, PORT, "bob", "hi", 1),
	    RELAY_EFORGED);
	assert_int_equal(find_reply(&r, "alice")->err, RELAY_EFORGED);
	assert_string_equal(find_reply(&r, "alice")->addr, C_ADDR);
	assert_int_equal(count_type(&r, RO_REPLICATE), 0);
	relay_drain(&r);
	/* same host, other port: forged too */
	assert_int_equal(
	    relay_on_msg(&r, 1, "alice", A_ADDR, PORT + 1, "bob", "hi", 1),
	    RELAY_EFORGED);
	assert_int_equal(relay_user_get(&r, "alice", &ui), 0);
	assert_int_equal(ui.cid_hi, 0);
	assert_int_equal(r.accepted, 0);
	relay_free(&r);
}

static void
forged_ack_should_not_remove_a_delivery(void **state)
{
	struct relay_user_info ui;
	struct relay r;
	uint64_t id;

	(void)state;
	trio(&r, NULL);
	id = send_ok(&r, 1, "bob", "hi", 1);
	relay_drain(&r);
	assert_int_equal(
	    relay_on_ack(&r, 2, "bob", C_ADDR, PORT, id), RELAY_EFORGED);
	assert_int_equal(
	    relay_on_ack(&r, 2, "carol", C_ADDR, PORT, id), RELAY_EUNKNOWN_ID);
	assert_int_equal(count_type(&r, RO_REPLY), 0); /* acks: no answer */
	assert_int_equal(relay_user_get(&r, "bob", &ui), 0);
	assert_int_equal(ui.queued, 1);
	relay_free(&r);
}

/* ---- messages -------------------------------------------------------- */

static void
direct_msg_should_be_acked_only_after_replication_then_delivered(void **state)
{
	const struct relay_out *o;
	struct relay r;
	uint64_t id;

	(void)state;
	trio(&r, NULL);
	assert_int_equal(
	    relay_on_msg(&r, 1, "alice", A_ADDR, PORT, "bob", "hello", 5),
	    RELAY_OK);
	/* replicated, not answered, not delivered */
	assert_int_equal(count_type(&r, RO_REPLICATE), 1);
	assert_int_equal(r.out[0].op.type, ROP_MSG);
	assert_int_equal(r.out[0].op.bodylen, 5);
	assert_memory_equal(r.out[0].op.body, "hello", 5);
	assert_null(find_reply(&r, "alice"));
	assert_int_equal(count_deliver(&r, NULL), 0);
	id = last_msg_id(&r);
	relay_drain(&r);
	relay_tick(&r, 500);
	assert_int_equal(count_deliver(&r, NULL), 0);
	relay_drain(&r);
	assert_int_equal(
	    relay_on_replicated(&r, 600, id + 1), RELAY_EUNKNOWN_ID);
	assert_int_equal(relay_on_replicated(&r, 600, id), RELAY_OK);
	o = find_reply(&r, "alice");
	assert_non_null(o);
	assert_int_equal(o->re, WK_MSG);
	assert_int_equal(o->err, RELAY_OK);
	assert_true(o->has_cid && o->has_id);
	assert_int_equal(o->cid, 5);
	assert_int_equal(o->id, id);
	o = find_deliver(&r, "bob");
	assert_non_null(o);
	assert_string_equal(o->from, "alice");
	assert_string_equal(o->dest, "bob");
	assert_string_equal(o->addr, B_ADDR);
	assert_int_equal(o->id, id);
	assert_int_equal(o->seq, 1);
	assert_int_equal(o->attempt, 1);
	assert_int_equal(o->bodylen, 5);
	assert_memory_equal(o->body, "hello", 5);
	assert_int_equal(count_deliver(&r, NULL), 1);
	assert_int_equal(relay_on_replicated(&r, 600, id), RELAY_EUNKNOWN_ID);
	relay_free(&r);
}

static void
resent_cid_should_not_be_accepted_again_and_should_repeat_the_ack(void **state)
{
	const struct relay_out *o;
	struct relay r;
	uint64_t id;

	(void)state;
	trio(&r, NULL);
	id = send_ok(&r, 1, "bob", "once", 1);
	relay_drain(&r);
	assert_int_equal(
	    relay_on_msg(&r, 2, "alice", A_ADDR, PORT, "bob", "once", 1),
	    RELAY_OK);
	o = find_reply(&r, "alice");
	assert_non_null(o);
	assert_int_equal(o->err, RELAY_OK);
	assert_int_equal(o->cid, 1);
	assert_int_equal(o->id, id);
	assert_int_equal(count_type(&r, RO_REPLICATE), 0);
	assert_int_equal(count_deliver(&r, NULL), 0);
	assert_true(has_event(&r, REV_DUPLICATE));
	assert_int_equal(r.accepted, 1);
	assert_int_equal(r.duplicates, 1);
	relay_free(&r);
}

static void
resent_cid_before_replication_should_be_ignored(void **state)
{
	struct relay r;
	uint64_t id;

	(void)state;
	trio(&r, NULL);
	assert_int_equal(
	    relay_on_msg(&r, 1, "alice", A_ADDR, PORT, "bob", "x", 3),
	    RELAY_OK);
	id = last_msg_id(&r);
	relay_drain(&r);
	assert_int_equal(
	    relay_on_msg(&r, 2, "alice", A_ADDR, PORT, "bob", "x", 3),
	    RELAY_OK);
	assert_null(find_reply(&r, "alice"));
	assert_int_equal(count_type(&r, RO_REPLICATE), 0);
	relay_drain(&r);
	assert_int_equal(relay_on_replicated(&r, 3, id), RELAY_OK);
	assert_int_equal(find_reply(&r, "alice")->id, id);
	relay_free(&r);
}

static void
cids_out_of_order_within_the_window_should_each_be_accepted_once(void **state)
{
	struct relay_user_info ui;
	struct relay r;

	(void)state;
	trio(&r, NULL);
	send_ok(&r, 1, "bob", "five", 5);
	send_ok(&r, 1, "bob", "three", 3); /* overtaken on the way */
	send_ok(&r, 1, "bob", "four", 4);
	relay_drain(&r);
	assert_int_equal(
	    relay_on_msg(&r, 1, "alice", A_ADDR, PORT, "bob", "three", 3),
	    RELAY_OK);
	assert_int_equal(count_type(&r, RO_REPLICATE), 0);
	assert_int_equal(r.accepted, 3);
	assert_int_equal(relay_user_get(&r, "alice", &ui), 0);
	assert_int_equal(ui.cid_hi, 5);
	relay_free(&r);
}

static void
cid_missing_or_older_than_the_window_should_be_refused(void **state)
{
	const struct relay_out *o;
	struct relay r;

	(void)state;
	trio(&r, NULL);
	assert_int_equal(
	    relay_on_msg(&r, 1, "alice", A_ADDR, PORT, "bob", "x", 0),
	    RELAY_EBAD_CID);
	relay_drain(&r);
	send_ok(&r, 1, "bob", "x", 100);
	relay_drain(&r);
	/* 84 is within the window of 16 below 100, 84 - 0 is not */
	assert_int_equal(relay_on_msg(&r, 1, "alice", A_ADDR, PORT, "bob", "y",
			     100 - RELAY_CID_WINDOW),
	    RELAY_ESTALE_CID);
	o = find_reply(&r, "alice");
	assert_int_equal(o->err, RELAY_ESTALE_CID);
	assert_true(o->has_cid);
	assert_int_equal(o->cid, 100 - RELAY_CID_WINDOW);
	relay_drain(&r);
	assert_int_equal(relay_on_msg(&r, 1, "alice", A_ADDR, PORT, "bob", "y",
			     100 - RELAY_CID_WINDOW + 1),
	    RELAY_OK);
	assert_int_equal(count_type(&r, RO_REPLICATE), 1);
	relay_free(&r);
}

static void
msg_to_an_unknown_user_or_room_should_be_refused(void **state)
{
	struct relay r;

	(void)state;
	trio(&r, NULL);
	assert_int_equal(
	    relay_on_msg(&r, 1, "alice", A_ADDR, PORT, "nobody", "x", 1),
	    RELAY_EUNKNOWN_USER);
	assert_int_equal(relay_on_msg(&r, 1, "alice", A_ADDR, PORT, "", "x", 2),
	    RELAY_EUNKNOWN_USER);
	assert_int_equal(
	    relay_on_msg(&r, 1, "alice", A_ADDR, PORT, "#nowhere", "x", 3),
	    RELAY_ENOT_IN_ROOM);
	assert_int_equal(
	    relay_on_msg(&r, 1, "alice", A_ADDR, PORT, "#bad room", "x", 4),
	    RELAY_EBAD_ROOM);
	assert_int_equal(
	    relay_on_msg(&r, 1, "alice", A_ADDR, PORT, NULL, "x", 5),
	    RELAY_EARG);
	/* a room alice is not in */
	assert_int_equal(
	    relay_on_join(&r, 1, "bob", B_ADDR, PORT, "#bobs"), RELAY_OK);
	assert_int_equal(
	    relay_on_msg(&r, 1, "alice", A_ADDR, PORT, "#bobs", "x", 6),
	    RELAY_ENOT_IN_ROOM);
	assert_int_equal(r.accepted, 0);
	assert_int_equal(r.next_id, 1);
	relay_free(&r);
}

static void
body_over_the_limit_should_answer_too_long_and_never_be_truncated(void **state)
{
	char body[3 * RELAY_BODY_MAX + 2];
	const struct relay_out *o;
	struct relay r;
	uint64_t id;
	size_t k;

	(void)state;
	trio(&r, NULL);
	memset(body, 'a', RELAY_BODY_MAX + 1);
	body[RELAY_BODY_MAX + 1] = '\0';
	assert_int_equal(
	    relay_on_msg(&r, 1, "alice", A_ADDR, PORT, "bob", body, 1),
	    RELAY_ETOO_LONG);
	assert_int_equal(find_reply(&r, "alice")->err, RELAY_ETOO_LONG);
	relay_drain(&r);
	/* escaped bytes count three: 334 '%' encode to 1002 bytes */
	memset(body, '%', 334);
	body[334] = '\0';
	assert_int_equal(
	    relay_on_msg(&r, 1, "alice", A_ADDR, PORT, "bob", body, 2),
	    RELAY_ETOO_LONG);
	/* a long multibyte one is too long, not malformed */
	for (k = 0; k + 2 < sizeof(body); k += 2)
		memcpy(body + k, "\xc3\xa9", 2);
	body[k] = '\0';
	assert_int_equal(
	    relay_on_msg(&r, 1, "alice", A_ADDR, PORT, "bob", body, 5),
	    RELAY_ETOO_LONG);
	/* and a very long one */
	memset(body, 'b', sizeof(body) - 1);
	body[sizeof(body) - 1] = '\0';
	assert_int_equal(
	    relay_on_msg(&r, 1, "alice", A_ADDR, PORT, "bob", body, 3),
	    RELAY_ETOO_LONG);
	relay_drain(&r);
	assert_int_equal(r.accepted, 0);
	/* exactly at the limit: delivered whole */
	memset(body, 'c', RELAY_BODY_MAX);
	body[RELAY_BODY_MAX] = '\0';
	id = send_ok(&r, 1, "bob", body, 4);
	o = find_deliver(&r, "bob");
	assert_non_null(o);
	assert_int_equal(o->id, id);
	assert_int_equal(o->bodylen, RELAY_BODY_MAX);
	assert_memory_equal(o->body, body, RELAY_BODY_MAX);
	relay_free(&r);
}

static void
body_empty_or_with_control_characters_should_answer_bad_body(void **state)
{
	static const char *const bad[] = {
	    "", "bell\a", "esc\x1b[0m", "\x7f", "\xc2\x80", "\xff", "\xe2\x82"};
	struct relay r;
	size_t i;

	(void)state;
	trio(&r, NULL);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(relay_on_msg(&r, 1, "alice", A_ADDR, PORT,
				     "bob", bad[i], i + 1),
		    RELAY_EBAD_BODY);
	assert_int_equal(
	    relay_on_msg(&r, 1, "alice", A_ADDR, PORT, "bob", NULL, 50),
	    RELAY_EBAD_BODY);
	relay_drain(&r);
	/* tab, newline and every kind of text are fine */
	send_ok(&r, 1, "bob", "a\tb\nc @%= h\xc3\xa9 \xe2\x82\xac", 99);
	assert_int_equal(count_deliver(&r, "bob"), 1);
	relay_free(&r);
}

static void
ids_should_increase_and_seqs_should_count_per_stream(void **state)
{
	const struct relay_out *o;
	struct relay r;
	uint64_t id1, id2, id3, id4;

	(void)state;
	trio(&r, NULL);
	assert_int_equal(
	    relay_on_join(&r, 0, "alice", A_ADDR, PORT, "#r"), RELAY_OK);
	assert_int_equal(
	    relay_on_join(&r, 0, "bob", B_ADDR, PORT, "#r"), RELAY_OK);
	relay_drain(&r);
	id1 = send_ok(&r, 1, "bob", "d1", 1);
	assert_int_equal(find_deliver(&r, "bob")->seq, 1);
	ack_all(&r, 1);
	relay_drain(&r);
	id2 = send_ok(&r, 1, "#r", "r1", 2);
	assert_int_equal(find_deliver(&r, "bob")->seq, 1);
	ack_all(&r, 1);
	relay_drain(&r);
	id3 = send_ok(&r, 1, "*", "b1", 3);
	assert_int_equal(find_deliver(&r, "bob")->seq, 1);
	assert_int_equal(find_deliver(&r, "carol")->seq, 1);
	ack_all(&r, 1);
	relay_drain(&r);
	/* bob to alice is the same direct stream as alice to bob */
	assert_int_equal(
	    relay_on_msg(&r, 1, "bob", B_ADDR, PORT, "alice", "d2", 1),
	    RELAY_OK);
	id4 = last_msg_id(&r);
	assert_int_equal(relay_on_replicated(&r, 1, id4), RELAY_OK);
	o = find_deliver(&r, "alice");
	assert_non_null(o);
	assert_int_equal(o->seq, 2);
	assert_true(id1 < id2 && id2 < id3 && id3 < id4);
	relay_free(&r);
}

static void
broadcast_should_reach_everyone_online_but_the_sender(void **state)
{
	struct relay_user_info ui;
	struct relay r;

	(void)state;
	trio(&r, NULL);
	user_up(&r, "dave", "10.0.0.4");
	assert_int_equal(
	    relay_on_logout(&r, 0, "dave", "10.0.0.4", PORT), RELAY_OK);
	relay_drain(&r);
	send_ok(&r, 1, "*", "all", 1);
	assert_int_equal(count_deliver(&r, "bob"), 1);
	assert_int_equal(count_deliver(&r, "carol"), 1);
	assert_int_equal(count_deliver(&r, "alice"), 0);
	assert_int_equal(count_deliver(&r, "dave"), 0);
	assert_string_equal(find_deliver(&r, "bob")->dest, "*");
	relay_drain(&r);
	/* "everyone online": dave does not get it later either */
	assert_int_equal(
	    relay_on_login(&r, 2, "dave", "10.0.0.4", PORT), RELAY_OK);
	assert_int_equal(count_deliver(&r, "dave"), 0);
	assert_int_equal(relay_user_get(&r, "dave", &ui), 0);
	assert_int_equal(ui.queued, 0);
	relay_free(&r);
}

static void
delivery_should_be_resent_with_bounded_exponential_backoff(void **state)
{
	static const int64_t gaps[] = {50, 100, 200, 400, 800, 1000, 1000};
	const struct relay_out *o;
	struct relay r;
	int64_t t = 1;
	size_t i;

	(void)state;
	trio(&r, NULL);
	send_ok(&r, t, "bob", "hey", 1);
	relay_drain(&r);
	for (i = 0; i < sizeof(gaps) / sizeof(gaps[0]); i++) {
		relay_on_alive(&r, t, "bob", B_ADDR, PORT); /* stays online */
		relay_drain(&r);
		assert_int_equal(relay_next_deadline(&r), t + gaps[i]);
		relay_tick(&r, t + gaps[i] - 1);
		assert_int_equal(count_deliver(&r, "bob"), 0);
		relay_tick(&r, t + gaps[i]);
		o = find_deliver(&r, "bob");
		assert_non_null(o);
		assert_int_equal(o->attempt, i + 2);
		t += gaps[i];
		relay_drain(&r);
	}
	assert_int_equal(r.resends, sizeof(gaps) / sizeof(gaps[0]));
	relay_free(&r);
}

static void
acked_delivery_should_never_be_sent_again(void **state)
{
	struct relay_user_info ui;
	struct relay r;
	uint64_t id;
	int64_t t;

	(void)state;
	trio(&r, NULL);
	id = send_ok(&r, 1, "bob", "hey", 1);
	relay_drain(&r);
	assert_int_equal(
	    relay_on_ack(&r, 10, "bob", B_ADDR, PORT, id), RELAY_OK);
	assert_int_equal(count_type(&r, RO_REPLICATE), 1);
	assert_int_equal(r.out[0].op.type, ROP_ACK);
	assert_true(has_event(&r, REV_ACKED));
	relay_drain(&r);
	for (t = 20; t < 5000; t += 25) {
		relay_on_alive(&r, t, "bob", B_ADDR, PORT);
		relay_tick(&r, t);
		assert_int_equal(count_deliver(&r, NULL), 0);
		relay_drain(&r);
	}
	/* a resent ack is harmless */
	assert_int_equal(
	    relay_on_ack(&r, t, "bob", B_ADDR, PORT, id), RELAY_EUNKNOWN_ID);
	assert_int_equal(r.nout, 0);
	assert_int_equal(relay_user_get(&r, "bob", &ui), 0);
	assert_int_equal(ui.queued, 0);
	assert_int_equal(ui.inflight, 0);
	relay_free(&r);
}

static void
delivery_should_stop_when_the_recipient_goes_offline(void **state)
{
	struct relay_user_info ui;
	struct relay r;

	(void)state;
	trio(&r, NULL);
	send_ok(&r, 1, "bob", "hey", 1);
	relay_drain(&r);
	assert_int_equal(relay_on_logout(&r, 2, "bob", B_ADDR, PORT), RELAY_OK);
	relay_drain(&r);
	relay_tick(&r, 10000);
	assert_int_equal(count_deliver(&r, NULL), 0);
	assert_int_equal(relay_user_get(&r, "bob", &ui), 0);
	assert_int_equal(ui.queued, 1); /* kept for the next login */
	assert_int_equal(ui.inflight, 0);
	relay_free(&r);
}

static void
stream_should_be_delivered_one_at_a_time_in_seq_order(void **state)
{
	const struct relay_out *o;
	struct relay r;
	uint64_t i;

	(void)state;
	trio(&r, NULL);
	for (i = 1; i <= 3; i++)
		send_ok(&r, 1, "bob", "m", i);
	/* only the first is out; the next waits for its ack */
	assert_int_equal(count_deliver(&r, "bob"), 1);
	for (i = 1; i <= 3; i++) {
		o = find_deliver(&r, "bob");
		assert_non_null(o);
		assert_int_equal(o->seq, i);
		assert_int_equal(count_deliver(&r, "bob"), 1);
		ack_all(&r, 2);
	}
	assert_int_equal(count_deliver(&r, "bob"), 0);
	relay_free(&r);
}

static void
different_streams_should_be_in_flight_together_up_to_inflight_max(void **state)
{
	struct relay_cfg c = cfg_default();
	struct relay_user_info ui;
	struct relay r;
	char name[16];
	int i;

	(void)state;
	c.inflight_max = 3;
	init_leader(&r, &c);
	user_up(&r, "bob", B_ADDR);
	for (i = 0; i < 5; i++) {
		snprintf(name, sizeof(name), "s%d", i);
		/* each on its own port */
		assert_int_equal(relay_on_newu(&r, 0, name, "10.0.1.1",
				     (uint16_t)(PORT + 1 + i)),
		    RELAY_OK);
		assert_int_equal(relay_on_login(&r, 0, name, "10.0.1.1",
				     (uint16_t)(PORT + 1 + i)),
		    RELAY_OK);
	}
	relay_drain(&r);
	for (i = 0; i < 5; i++) {
		snprintf(name, sizeof(name), "s%d", i);
		assert_int_equal(relay_on_msg(&r, 1, name, "10.0.1.1",
				     (uint16_t)(PORT + 1 + i), "bob", "x", 1),
		    RELAY_OK);
		assert_int_equal(
		    relay_on_replicated(&r, 1, last_msg_id(&r)), RELAY_OK);
	}
	assert_int_equal(count_deliver(&r, "bob"), 3);
	assert_int_equal(relay_user_get(&r, "bob", &ui), 0);
	assert_int_equal(ui.queued, 5);
	assert_int_equal(ui.inflight, 3);
	ack_all(&r, 2);
	assert_int_equal(count_deliver(&r, "bob"), 2);
	relay_free(&r);
}

static void
offline_recipient_should_get_queued_messages_on_login_in_order(void **state)
{
	struct relay_out d[8];
	struct relay r;
	size_t i, n;

	(void)state;
	trio(&r, NULL);
	assert_int_equal(
	    relay_on_join(&r, 0, "alice", A_ADDR, PORT, "#r"), RELAY_OK);
	assert_int_equal(
	    relay_on_join(&r, 0, "bob", B_ADDR, PORT, "#r"), RELAY_OK);
	assert_int_equal(relay_on_logout(&r, 0, "bob", B_ADDR, PORT), RELAY_OK);
	relay_drain(&r);
	send_ok(&r, 1, "bob", "d1", 1);
	send_ok(&r, 1, "#r", "r1", 2);
	send_ok(&r, 1, "bob", "d2", 3);
	send_ok(&r, 1, "#r", "r2", 4);
	assert_int_equal(count_deliver(&r, NULL), 0);
	relay_drain(&r);
	assert_int_equal(relay_on_login(&r, 5, "bob", B_ADDR, PORT), RELAY_OK);
	/* the first of each stream at once, the rest after each ack */
	for (n = 0; n < 4;) {
		assert_true(count_deliver(&r, "bob") > 0);
		for (i = 0; i < r.nout; i++)
			if (r.out[i].type == RO_DELIVER)
				d[n++] = r.out[i];
		ack_all(&r, 6);
	}
	assert_int_equal(count_deliver(&r, "bob"), 0);
	assert_memory_equal(d[0].body, "d1", 2);
	assert_memory_equal(d[1].body, "r1", 2);
	assert_memory_equal(d[2].body, "d2", 2);
	assert_memory_equal(d[3].body, "r2", 2);
	assert_int_equal(d[2].seq, 2);
	assert_int_equal(d[3].seq, 2);
	relay_free(&r);
}

static void
queue_should_be_bounded_per_user(void **state)
{
	struct relay_cfg c = cfg_default();
	struct relay_user_info ui;
	struct relay r;
	uint64_t i;

	(void)state;
	c.queue_max = 4;
	trio(&r, &c);
	assert_int_equal(
	    relay_on_join(&r, 0, "alice", A_ADDR, PORT, "#r"), RELAY_OK);
	assert_int_equal(
	    relay_on_join(&r, 0, "bob", B_ADDR, PORT, "#r"), RELAY_OK);
	assert_int_equal(
	    relay_on_join(&r, 0, "carol", C_ADDR, PORT, "#r"), RELAY_OK);
	assert_int_equal(relay_on_logout(&r, 0, "bob", B_ADDR, PORT), RELAY_OK);
	relay_drain(&r);
	for (i = 1; i <= 4; i++) {
		send_ok(&r, 1, "#r", "m", i);
		ack_all(&r, 1); /* carol keeps up */
	}
	relay_drain(&r);
	/* bob's queue is full: a room message skips him, with an event */
	send_ok(&r, 1, "#r", "m", 5);
	assert_true(has_event(&r, REV_OVERFLOW));
	assert_int_equal(r.overflows, 1);
	relay_drain(&r);
	assert_int_equal(relay_user_get(&r, "bob", &ui), 0);
	assert_int_equal(ui.queued, 4);
	/* a direct message to him is refused instead */
	assert_int_equal(
	    relay_on_msg(&r, 1, "alice", A_ADDR, PORT, "bob", "x", 6),
	    RELAY_EFULL);
	assert_int_equal(find_reply(&r, "alice")->err, RELAY_EFULL);
	relay_free(&r);
}

static void
backlog_should_refuse_without_losing_then_accept_the_same_cid(void **state)
{
	struct relay_cfg c = cfg_default();
	struct relay_user_info ui;
	struct relay r;

	(void)state;
	c.queue_max = 2;
	trio(&r, &c);
	/* bob is online but does not acknowledge: his queue fills */
	send_ok(&r, 0, "bob", "one", 1);
	send_ok(&r, 0, "bob", "two", 2);
	relay_drain(&r);
	assert_int_equal(relay_user_get(&r, "bob", &ui), 0);
	assert_int_equal(ui.queued, 2);
	/* the third is told to come again: nothing accepted */
	assert_int_equal(
	    relay_on_msg(&r, 10, "alice", A_ADDR, PORT, "bob", "three", 3),
	    RELAY_EBACKLOG);
	assert_int_equal(find_reply(&r, "alice")->err, RELAY_EBACKLOG);
	assert_true(find_reply(&r, "alice")->has_cid);
	assert_int_equal(find_reply(&r, "alice")->cid, 3);
	assert_int_equal(count_type(&r, RO_REPLICATE), 0);
	relay_drain(&r);
	/* bob catches up: the same cid is accepted */
	assert_int_equal(
	    relay_on_ack(&r, 30, "bob", B_ADDR, PORT, 1), RELAY_OK);
	relay_drain(&r);
	send_ok(&r, 50, "bob", "three", 3);
	relay_free(&r);
}

static void
order_should_keep_a_later_message_from_passing_an_earlier_one(void **state)
{
	struct relay r;

	(void)state;
	trio(&r, NULL);
	send_ok(&r, 0, "bob", "one", 1);
	relay_drain(&r);
	/* 2 was lost on its way; 3 (after 2) must wait for it */
	assert_int_equal(relay_on_msg_after(&r, 10, "alice", A_ADDR, PORT,
			     "carol", "three", 3, 2),
	    RELAY_EORDER);
	assert_int_equal(find_reply(&r, "alice")->err, RELAY_EORDER);
	assert_int_equal(find_reply(&r, "alice")->cid, 3);
	assert_int_equal(count_type(&r, RO_REPLICATE), 0);
	relay_drain(&r);
	/* 2 arrives (after 1, accepted), then 3 again */
	assert_int_equal(relay_on_msg_after(
			     &r, 20, "alice", A_ADDR, PORT, "bob", "two", 2, 1),
	    RELAY_OK);
	relay_drain(&r);
	assert_int_equal(relay_on_msg_after(&r, 30, "alice", A_ADDR, PORT,
			     "carol", "three", 3, 2),
	    RELAY_OK);
	relay_drain(&r);
	/* after a cid refused for good, the client names an earlier one */
	assert_int_equal(relay_on_msg_after(&r, 40, "alice", A_ADDR, PORT,
			     "nobody", "four", 4, 3),
	    RELAY_EUNKNOWN_USER);
	relay_drain(&r);
	assert_int_equal(relay_on_msg_after(&r, 50, "alice", A_ADDR, PORT,
			     "bob", "five", 5, 3),
	    RELAY_OK);
	relay_drain(&r);
	/* after must be an earlier cid */
	assert_int_equal(relay_on_msg_after(
			     &r, 60, "alice", A_ADDR, PORT, "bob", "six", 6, 6),
	    RELAY_EBAD_CID);
	/* other senders are not held by alice's order */
	assert_int_equal(
	    relay_on_msg(&r, 70, "carol", C_ADDR, PORT, "alice", "hi", 1),
	    RELAY_OK);
	relay_free(&r);
}

static void
op_that_would_not_fit_a_sealed_datagram_should_be_too_long(void **state)
{
	char name[USER_NAME_MAX], peer[USER_NAME_MAX], body[RELAY_BODY_MAX + 1];
	struct relay r;

	(void)state;
	init_leader(&r, NULL);
	/* '%' and '=' are allowed in names and take 3 bytes escaped */
	memset(name, '%', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	memset(peer, '=', sizeof(peer) - 1);
	peer[sizeof(peer) - 1] = '\0';
	user_up(&r, name, A_ADDR);
	user_up(&r, peer, B_ADDR);
	memset(body, 'x', RELAY_BODY_MAX);
	body[RELAY_BODY_MAX] = '\0';
	assert_int_equal(relay_on_msg(&r, 0, name, A_ADDR, PORT, peer, body, 1),
	    RELAY_ETOO_LONG);
	relay_drain(&r);
	/* a shorter body between the same names fits */
	body[RELAY_BODY_MAX - 200] = '\0';
	assert_int_equal(
	    relay_on_msg(&r, 0, name, A_ADDR, PORT, peer, body, 2), RELAY_OK);
	relay_free(&r);
}

static void
message_memory_budget_should_answer_full(void **state)
{
	struct relay_cfg c = cfg_default();
	char body[RELAY_BODY_MAX + 1];
	struct relay r;
	uint64_t cid;
	enum relay_err e = RELAY_OK;

	(void)state;
	c.msg_bytes_max = 65536;
	c.queue_max = 1000;
	trio(&r, &c);
	assert_int_equal(relay_on_logout(&r, 0, "bob", B_ADDR, PORT), RELAY_OK);
	memset(body, 'x', RELAY_BODY_MAX);
	body[RELAY_BODY_MAX] = '\0';
	for (cid = 1; cid < 200 && e == RELAY_OK; cid++) {
		e = relay_on_msg(
		    &r, 1, "alice", A_ADDR, PORT, "bob", body, cid);
		relay_drain(&r);
	}
	assert_int_equal(e, RELAY_EFULL);
	assert_true(cid > 50);
	assert_true(r.msg_bytes <= c.msg_bytes_max);
	relay_free(&r);
}

/* ---- rooms ----------------------------------------------------------- */

static void
join_should_create_a_room_and_the_last_part_should_delete_it(void **state)
{
	struct relay_user_info ui;
	struct relay r;

	(void)state;
	trio(&r, NULL);
	assert_int_equal(
	    relay_on_join(&r, 0, "alice", A_ADDR, PORT, "#r"), RELAY_OK);
	assert_true(has_event(&r, REV_ROOM_NEW));
	assert_true(has_event(&r, REV_JOIN));
	assert_int_equal(find_reply(&r, "alice")->err, RELAY_OK);
	relay_drain(&r);
	assert_int_equal(
	    relay_on_join(&r, 0, "bob", B_ADDR, PORT, "#r"), RELAY_OK);
	assert_false(has_event(&r, REV_ROOM_NEW));
	relay_drain(&r);
	/* joining twice is fine and changes nothing */
	assert_int_equal(
	    relay_on_join(&r, 0, "bob", B_ADDR, PORT, "#r"), RELAY_OK);
	assert_int_equal(count_type(&r, RO_REPLICATE), 0);
	assert_int_equal(relay_room_members(&r, "#r"), 2);
	assert_int_equal(relay_user_get(&r, "bob", &ui), 0);
	assert_int_equal(ui.nrooms, 1);
	relay_drain(&r);
	assert_int_equal(
	    relay_on_part(&r, 0, "bob", B_ADDR, PORT, "#r"), RELAY_OK);
	assert_int_equal(relay_on_part(&r, 0, "bob", B_ADDR, PORT, "#r"),
	    RELAY_ENOT_IN_ROOM);
	relay_drain(&r);
	assert_int_equal(
	    relay_on_part(&r, 0, "alice", A_ADDR, PORT, "#r"), RELAY_OK);
	assert_true(has_event(&r, REV_ROOM_GONE));
	assert_int_equal(relay_room_members(&r, "#r"), 0);
	assert_int_equal(r.nrooms, 0);
	relay_free(&r);
}

static void
join_should_refuse_malformed_room_names(void **state)
{
	static const char *const bad[] = {"", "#", "room", "#a b", "#a@b",
	    "#a#b", "#a*", "#\x01", "##", "#0123456789abcdef0123456789abcde"};
	struct relay r;
	size_t i;

	(void)state;
	trio(&r, NULL);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(
		    relay_on_join(&r, 0, "alice", A_ADDR, PORT, bad[i]),
		    RELAY_EBAD_ROOM);
	assert_int_equal(
	    relay_on_join(&r, 0, "alice", A_ADDR, PORT, NULL), RELAY_EBAD_ROOM);
	assert_int_equal(relay_on_part(&r, 0, "alice", A_ADDR, PORT, "no_hash"),
	    RELAY_EBAD_ROOM);
	assert_int_equal(r.nrooms, 0);
	/* 30 bytes after '#' is the longest */
	assert_int_equal(relay_on_join(&r, 0, "alice", A_ADDR, PORT,
			     "#0123456789abcdef0123456789abcd"),
	    RELAY_OK);
	relay_free(&r);
}

static void
join_beyond_the_rooms_limits_should_be_refused(void **state)
{
	struct relay_cfg c = cfg_default();
	struct relay r;
	char room[16];
	int i;

	(void)state;
	c.rooms_max = USER_ROOMS_MAX + 1;
	trio(&r, &c);
	for (i = 0; i < USER_ROOMS_MAX; i++) {
		snprintf(room, sizeof(room), "#r%d", i);
		assert_int_equal(
		    relay_on_join(&r, 0, "alice", A_ADDR, PORT, room),
		    RELAY_OK);
	}
	assert_int_equal(relay_on_join(&r, 0, "alice", A_ADDR, PORT, "#more"),
	    RELAY_ETOO_MANY_ROOMS);
	assert_int_equal(
	    relay_on_join(&r, 0, "bob", B_ADDR, PORT, "#b1"), RELAY_OK);
	assert_int_equal(
	    relay_on_join(&r, 0, "bob", B_ADDR, PORT, "#b2"), RELAY_EFULL);
	/* an existing room can still be joined */
	assert_int_equal(
	    relay_on_join(&r, 0, "bob", B_ADDR, PORT, "#r0"), RELAY_OK);
	relay_free(&r);
}

static void
joiner_should_get_the_last_n_messages_replayed_as_deliveries(void **state)
{
	struct relay_cfg c = cfg_default();
	struct relay_out d[8];
	struct relay r;
	uint64_t i;
	size_t n = 0, k;

	(void)state;
	c.history_max = 3;
	trio(&r, &c);
	assert_int_equal(
	    relay_on_join(&r, 0, "alice", A_ADDR, PORT, "#r"), RELAY_OK);
	relay_drain(&r);
	for (i = 1; i <= 5; i++)
		send_ok(&r, 1, "#r", i % 2 ? "odd" : "even", i);
	relay_drain(&r);
	assert_int_equal(
	    relay_on_join(&r, 2, "bob", B_ADDR, PORT, "#r"), RELAY_OK);
	assert_int_equal(find_reply(&r, "bob")->err, RELAY_OK);
	while (count_deliver(&r, "bob") > 0) {
		for (k = 0; k < r.nout; k++)
			if (r.out[k].type == RO_DELIVER)
				d[n++] = r.out[k];
		ack_all(&r, 3);
	}
	assert_int_equal(n, 3);
	assert_int_equal(d[0].seq, 3);
	assert_int_equal(d[1].seq, 4);
	assert_int_equal(d[2].seq, 5);
	assert_string_equal(d[0].dest, "#r");
	assert_string_equal(d[0].from, "alice");
	relay_free(&r);
}

static void
rejoining_member_should_not_get_messages_it_already_had(void **state)
{
	struct relay r;

	(void)state;
	trio(&r, NULL);
	assert_int_equal(
	    relay_on_join(&r, 0, "alice", A_ADDR, PORT, "#r"), RELAY_OK);
	assert_int_equal(
	    relay_on_join(&r, 0, "bob", B_ADDR, PORT, "#r"), RELAY_OK);
	relay_drain(&r);
	send_ok(&r, 1, "#r", "seen", 1);
	ack_all(&r, 1);
	relay_drain(&r);
	assert_int_equal(
	    relay_on_part(&r, 2, "bob", B_ADDR, PORT, "#r"), RELAY_OK);
	relay_drain(&r);
	send_ok(&r, 3, "#r", "missed", 2);
	relay_drain(&r);
	assert_int_equal(
	    relay_on_join(&r, 4, "bob", B_ADDR, PORT, "#r"), RELAY_OK);
	assert_int_equal(count_deliver(&r, "bob"), 1);
	assert_int_equal(find_deliver(&r, "bob")->seq, 2);
	ack_all(&r, 5);
	assert_int_equal(count_deliver(&r, "bob"), 0);
	relay_free(&r);
}

static void
room_message_should_reach_offline_members_on_login(void **state)
{
	struct relay r;

	(void)state;
	trio(&r, NULL);
	assert_int_equal(
	    relay_on_join(&r, 0, "alice", A_ADDR, PORT, "#r"), RELAY_OK);
	assert_int_equal(
	    relay_on_join(&r, 0, "carol", C_ADDR, PORT, "#r"), RELAY_OK);
	assert_int_equal(
	    relay_on_logout(&r, 0, "carol", C_ADDR, PORT), RELAY_OK);
	relay_drain(&r);
	send_ok(&r, 1, "#r", "while you were out", 1);
	assert_int_equal(count_deliver(&r, NULL), 0);
	relay_drain(&r);
	assert_int_equal(
	    relay_on_login(&r, 2, "carol", C_ADDR, PORT), RELAY_OK);
	assert_int_equal(count_deliver(&r, "carol"), 1);
	assert_int_equal(find_deliver(&r, "carol")->bodylen, 18);
	relay_free(&r);
}

static void
lists_should_name_rooms_members_and_online_users_in_chunks(void **state)
{
	const struct relay_out *o;
	struct relay r;
	char name[32], all[65536];
	size_t i, enc, k;
	uint32_t parts;

	(void)state;
	trio(&r, NULL);
	assert_int_equal(
	    relay_on_join(&r, 0, "alice", A_ADDR, PORT, "#a"), RELAY_OK);
	assert_int_equal(
	    relay_on_join(&r, 0, "bob", B_ADDR, PORT, "#a"), RELAY_OK);
	assert_int_equal(
	    relay_on_join(&r, 0, "bob", B_ADDR, PORT, "#b"), RELAY_OK);
	relay_drain(&r);
	assert_int_equal(
	    relay_on_rooms(&r, 0, "carol", C_ADDR, PORT), RELAY_OK);
	o = find_reply(&r, "carol");
	assert_string_equal(o->text, "#a #b");
	assert_int_equal(o->part, 1);
	assert_int_equal(o->parts, 1);
	relay_drain(&r);
	assert_int_equal(
	    relay_on_who(&r, 0, "carol", C_ADDR, PORT, "#a"), RELAY_OK);
	assert_string_equal(find_reply(&r, "carol")->text, "alice bob");
	relay_drain(&r);
	assert_int_equal(relay_on_who(&r, 0, "carol", C_ADDR, PORT, "#zz"),
	    RELAY_ENOT_IN_ROOM);
	relay_drain(&r);
	/* many online users, names with escaped bytes: several chunks */
	for (i = 0; i < 300; i++) {
		snprintf(name, sizeof(name), "user%%%03zu=xxxxxxxx", i);
		user_up(&r, name, "10.0.2.1");
	}
	assert_int_equal(relay_on_logout(&r, 0, "bob", B_ADDR, PORT), RELAY_OK);
	relay_drain(&r);
	assert_int_equal(
	    relay_on_users(&r, 0, "carol", C_ADDR, PORT), RELAY_OK);
	parts = r.out[0].parts;
	assert_true(parts > 1);
	assert_int_equal(r.nout, parts);
	all[0] = '\0';
	for (i = 0; i < r.nout; i++) {
		o = &r.out[i];
		assert_int_equal(o->type, RO_REPLY);
		assert_int_equal(o->part, i + 1);
		assert_int_equal(o->parts, parts);
		for (k = 0, enc = 0; o->text[k] != '\0'; k++)
			enc += o->text[k] == '%' || o->text[k] == '=' ? 3 : 1;
		assert_true(enc <= RELAY_LIST_MAX);
		if (i > 0)
			strlcat(all, " ", sizeof(all));
		strlcat(all, o->text, sizeof(all));
	}
	assert_non_null(strstr(all, "alice carol user%000=xxxxxxxx "));
	assert_null(strstr(all, "bob"));
	assert_non_null(strstr(all, "user%299=xxxxxxxx"));
	relay_drain(&r);
	assert_int_equal(
	    relay_on_users(&r, 0, "bob", B_ADDR, PORT), RELAY_ENOT_LOGGED_IN);
	relay_free(&r);
}

/* ---- replication and failover ---------------------------------------- */

/* A mixed workload on L, every op replicated to B. */
static void
workload(struct relay *L, struct relay *B)
{
	static const char *const names[] = {
	    "alice", "bob", "carol", "dave", "eve", "frank"};
	char addr[16], body[64];
	uint64_t cid[6] = {0};
	unsigned seed = 7;
	unsigned i, j;
	int step;

	for (i = 0; i < 6; i++) {
		snprintf(addr, sizeof(addr), "10.0.3.%u", i + 1);
		assert_int_equal(
		    relay_on_newu(L, 0, names[i], addr, PORT), RELAY_OK);
		assert_int_equal(
		    relay_on_login(L, 0, names[i], addr, PORT), RELAY_OK);
		replicate(L, B, 0);
		relay_drain(L);
	}
	for (step = 1; step <= 600; step++) {
		seed = seed * 1103515245u + 12345u;
		i = (seed >> 8) % 6;
		j = (seed >> 16) % 6;
		snprintf(addr, sizeof(addr), "10.0.3.%u", i + 1);
		switch ((seed >> 24) % 20) {
		case 0:
		case 1:
		case 2:
			relay_on_join(L, step, names[i], addr, PORT,
			    j % 2 ? "#odd" : "#even");
			break;
		case 3:
			relay_on_part(L, step, names[i], addr, PORT,
			    j % 2 ? "#odd" : "#even");
			break;
		case 4:
			relay_on_logout(L, step, names[i], addr, PORT);
			break;
		case 5:
		case 6:
			relay_on_login(L, step, names[i], addr, PORT);
			break;
		case 7:
			snprintf(body, sizeof(body), "to all %d", step);
			relay_on_msg(
			    L, step, names[i], addr, PORT, "*", body, ++cid[i]);
			break;
		case 8:
			/* a client resending its last message */
			relay_on_msg(L, step, names[i], addr, PORT, "*",
			    "again", cid[i]);
			break;
		case 9:
		case 10:
		case 11:
		case 12:
			snprintf(body, sizeof(body), "room %d %%@=\n", step);
			relay_on_msg(L, step, names[i], addr, PORT,
			    j % 2 ? "#odd" : "#even", body, ++cid[i]);
			break;
		default:
			snprintf(
			    body, sizeof(body), "hi %s %d", names[j], step);
			relay_on_msg(L, step, names[i], addr, PORT, names[j],
			    body, ++cid[i]);
			break;
		}
		replicate(L, B, step);
		/* clients ack most deliveries, not all */
		if (step % 3 != 0) {
			ack_all(L, step);
			replicate(L, B, step);
		}
		relay_drain(L);
	}
}

static void
backup_applying_the_leaders_ops_should_end_identical(void **state)
{
	struct relay L, B, R;
	char *s1, *s2;
	size_t l1, l2;

	(void)state;
	init_leader(&L, NULL);
	init_backup(&B, NULL);
	workload(&L, &B);
	print_message(
	    "    %llu ops, %llu accepted, %llu refused, %llu resent\n",
	    (unsigned long long)L.version, (unsigned long long)L.accepted,
	    (unsigned long long)L.rejected, (unsigned long long)L.duplicates);
	assert_true(L.duplicates > 0 && L.rejected > 0 && L.delivered > 0);
	assert_true(L.version > 400);
	assert_int_equal(B.version, L.version);
	assert_true(relay_equal(&L, &B));
	assert_int_equal(relay_snapshot(&L, &s1, &l1), RELAY_OK);
	assert_int_equal(relay_snapshot(&B, &s2, &l2), RELAY_OK);
	assert_int_equal(l1, l2);
	assert_memory_equal(s1, s2, l1);
	/* and a snapshot restored elsewhere gives the same state */
	init_backup(&R, NULL);
	assert_int_equal(relay_restore(&R, s1, l1), RELAY_OK);
	assert_true(relay_equal(&L, &R));
	assert_int_equal(R.version, L.version);
	assert_int_equal(relay_online_count(&R), relay_online_count(&L));
	free(s2);
	assert_int_equal(relay_snapshot(&R, &s2, &l2), RELAY_OK);
	assert_int_equal(l1, l2);
	assert_memory_equal(s1, s2, l1);
	free(s1);
	free(s2);
	relay_free(&L);
	relay_free(&B);
	relay_free(&R);
}

static void
restored_backup_should_keep_applying_the_leaders_ops(void **state)
{
	struct relay L, R;
	char *s;
	size_t len;

	(void)state;
	init_leader(&L, NULL);
	workload(&L, NULL);
	assert_int_equal(relay_snapshot(&L, &s, &len), RELAY_OK);
	init_backup(&R, NULL);
	assert_int_equal(relay_restore(&R, s, len), RELAY_OK);
	free(s);
	relay_drain(&R);
	assert_int_equal(relay_on_msg(&L, 500, "alice", "10.0.3.1", PORT, "bob",
			     "after", 1000),
	    RELAY_OK);
	replicate(&L, &R, 500);
	relay_drain(&L);
	assert_true(relay_equal(&L, &R));
	relay_free(&L);
	relay_free(&R);
}

static void
apply_should_refuse_old_and_gapped_versions_without_change(void **state)
{
	struct relay_op op;
	struct relay B;

	(void)state;
	init_backup(&B, NULL);
	memset(&op, 0, sizeof(op));
	op.type = ROP_NEWU;
	op.version = 2;
	strlcpy(op.user, "alice", sizeof(op.user));
	strlcpy(op.addr, A_ADDR, sizeof(op.addr));
	op.port = PORT;
	assert_int_equal(relay_apply(&B, &op), RELAY_EGAP);
	op.version = 1;
	assert_int_equal(relay_apply(&B, &op), RELAY_OK);
	assert_int_equal(relay_apply(&B, &op), RELAY_EOLD);
	op.version = 0;
	assert_int_equal(relay_apply(&B, &op), RELAY_EOLD);
	assert_int_equal(B.version, 1);
	assert_int_equal(B.nusers, 1);
	assert_int_equal(relay_apply(&B, NULL), RELAY_EARG);
	relay_free(&B);
}

static void
apply_should_refuse_an_op_that_does_not_fit_as_diverged(void **state)
{
	struct relay B, C;
	struct relay_op op;

	(void)state;
	init_backup(&B, NULL);
	init_backup(&C, NULL);
	memset(&op, 0, sizeof(op));
	op.version = 1;
	op.type = ROP_LOGIN; /* of nobody */
	strlcpy(op.user, "ghost", sizeof(op.user));
	strlcpy(op.addr, A_ADDR, sizeof(op.addr));
	op.port = PORT;
	assert_int_equal(relay_apply(&B, &op), RELAY_EDIVERGED);
	op.type = ROP_MSG; /* from nobody */
	strlcpy(op.dest, "*", sizeof(op.dest));
	op.id = 1;
	op.seq = 1;
	op.cid = 1;
	op.body = "x";
	op.bodylen = 1;
	assert_int_equal(relay_apply(&B, &op), RELAY_EDIVERGED);
	op.type = ROP_NEWU;
	assert_int_equal(relay_apply(&B, &op), RELAY_OK);
	op.version = 2;
	op.type = ROP_MSG;
	op.seq = 2; /* the stream's next is 1 */
	assert_int_equal(relay_apply(&B, &op), RELAY_EDIVERGED);
	op.seq = 1;
	op.id = 0; /* below the next id, 1 (ids only go up; a merge may skip) */
	assert_int_equal(relay_apply(&B, &op), RELAY_EDIVERGED);
	op.id = 1;
	op.type = ROP_ACK; /* of nothing queued */
	assert_int_equal(relay_apply(&B, &op), RELAY_EDIVERGED);
	op.type = ROP_PART;
	strlcpy(op.dest, "#nope", sizeof(op.dest));
	assert_int_equal(relay_apply(&B, &op), RELAY_EDIVERGED);
	op.type = ROP_COUNT;
	assert_int_equal(relay_apply(&B, &op), RELAY_EDIVERGED);
	/* nothing of it stuck */
	assert_int_equal(B.version, 1);
	op.version = 1;
	op.type = ROP_NEWU;
	assert_int_equal(relay_apply(&C, &op), RELAY_OK);
	assert_true(relay_equal(&B, &C));
	/* and a leader takes no ops */
	assert_int_equal(relay_become_leader(&B, 0), RELAY_OK);
	op.version = 2;
	assert_int_equal(relay_apply(&B, &op), RELAY_EROLE);
	relay_free(&B);
	relay_free(&C);
}

static void
new_leader_should_resend_every_unacked_delivery(void **state)
{
	struct relay L, B;
	uint64_t id1, id2;

	(void)state;
	init_leader(&L, NULL);
	init_backup(&B, NULL);
	assert_int_equal(relay_on_newu(&L, 0, "alice", A_ADDR, PORT), RELAY_OK);
	assert_int_equal(relay_on_newu(&L, 0, "bob", B_ADDR, PORT), RELAY_OK);
	assert_int_equal(relay_on_newu(&L, 0, "carol", C_ADDR, PORT), RELAY_OK);
	assert_int_equal(
	    relay_on_login(&L, 0, "alice", A_ADDR, PORT), RELAY_OK);
	assert_int_equal(relay_on_login(&L, 0, "bob", B_ADDR, PORT), RELAY_OK);
	assert_int_equal(
	    relay_on_login(&L, 0, "carol", C_ADDR, PORT), RELAY_OK);
	replicate(&L, &B, 0);
	relay_drain(&L);
	assert_int_equal(
	    relay_on_msg(&L, 1, "alice", A_ADDR, PORT, "bob", "one", 1),
	    RELAY_OK);
	assert_int_equal(
	    relay_on_msg(&L, 1, "alice", A_ADDR, PORT, "carol", "two", 2),
	    RELAY_OK);
	replicate(&L, &B, 1);
	id1 = find_deliver(&L, "bob")->id;
	id2 = find_deliver(&L, "carol")->id;
	relay_drain(&L);
	/* bob's ack reaches the old leader and the backups */
	assert_int_equal(
	    relay_on_ack(&L, 2, "bob", B_ADDR, PORT, id1), RELAY_OK);
	replicate(&L, &B, 2);
	relay_drain(&L);
	/* the leader dies; B takes over */
	assert_int_equal(relay_become_leader(&B, 1000), RELAY_OK);
	assert_true(has_event(&B, REV_ROLE));
	assert_int_equal(count_deliver(&B, "bob"), 0); /* acked: never again */
	assert_int_equal(count_deliver(&B, "carol"), 1);
	assert_int_equal(find_deliver(&B, "carol")->id, id2);
	assert_int_equal(find_deliver(&B, "carol")->attempt, 1);
	assert_int_equal(relay_next_deadline(&B), 1000 + 50);
	relay_drain(&B);
	assert_int_equal(
	    relay_on_ack(&B, 1001, "carol", C_ADDR, PORT, id2), RELAY_OK);
	relay_drain(&B);
	relay_tick(&B, 3000);
	assert_int_equal(count_deliver(&B, NULL), 0);
	/* keepalives restart from the takeover */
	assert_int_equal(relay_online_count(&B), 3);
	relay_free(&L);
	relay_free(&B);
}

static void
client_resend_after_failover_should_be_recognised_by_cid(void **state)
{
	const struct relay_out *o;
	struct relay L, B;
	uint64_t id;

	(void)state;
	init_leader(&L, NULL);
	init_backup(&B, NULL);
	assert_int_equal(relay_on_newu(&L, 0, "alice", A_ADDR, PORT), RELAY_OK);
	assert_int_equal(relay_on_newu(&L, 0, "bob", B_ADDR, PORT), RELAY_OK);
	assert_int_equal(
	    relay_on_login(&L, 0, "alice", A_ADDR, PORT), RELAY_OK);
	assert_int_equal(relay_on_login(&L, 0, "bob", B_ADDR, PORT), RELAY_OK);
	assert_int_equal(
	    relay_on_msg(&L, 1, "alice", A_ADDR, PORT, "bob", "once", 9),
	    RELAY_OK);
	id = last_msg_id(&L);
	/* B got the op; the leader died before answering alice */
	replicate(&L, &B, 1);
	relay_free(&L);
	assert_int_equal(relay_become_leader(&B, 100), RELAY_OK);
	relay_drain(&B);
	assert_int_equal(
	    relay_on_msg(&B, 101, "alice", A_ADDR, PORT, "bob", "once", 9),
	    RELAY_OK);
	o = find_reply(&B, "alice");
	assert_non_null(o);
	assert_int_equal(o->err, RELAY_OK);
	assert_int_equal(o->id, id);
	assert_int_equal(count_type(&B, RO_REPLICATE), 0);
	assert_int_equal(B.accepted, 0);
	relay_free(&B);
}

static void
stepping_down_should_forget_timers_and_pending_answers(void **state)
{
	struct relay r;

	(void)state;
	trio(&r, NULL);
	send_ok(&r, 1, "bob", "x", 1);
	assert_int_equal(
	    relay_on_msg(&r, 1, "alice", A_ADDR, PORT, "bob", "y", 2),
	    RELAY_OK);
	relay_drain(&r);
	assert_int_equal(relay_become_backup(&r), RELAY_OK);
	assert_int_equal(r.npend, 0);
	assert_int_equal(relay_next_deadline(&r), INT64_MAX);
	relay_tick(&r, 100000);
	assert_int_equal(count_deliver(&r, NULL), 0);
	assert_int_equal(relay_on_replicated(&r, 2, 2), RELAY_EROLE);
	relay_free(&r);
}

/* ---- op text and snapshots ------------------------------------------- */

static void
op_text_should_round_trip(void **state)
{
	char text[RELAY_OP_TEXT_MAX + 1], body[RELAY_BODY_MAX];
	struct relay_op op, back;
	size_t len;

	(void)state;
	memset(&op, 0, sizeof(op));
	op.type = ROP_MSG;
	op.version = UINT64_MAX;
	strlcpy(op.user, "0123456789abcdef0123456789abcde", sizeof(op.user));
	strlcpy(op.dest, "#0123456789abcdef0123456789abc", sizeof(op.dest));
	op.seq = op.cid = UINT64_MAX;
	op.id = UINT64_MAX - 1; /* the last id that has a next */
	/* the longest body: RELAY_BODY_MAX encoded bytes */
	memset(body, ' ', sizeof(body));
	body[0] = '\n';
	body[1] = '@';
	op.body = body;
	op.bodylen = sizeof(body) - 4;
	assert_int_equal(relay_op_format(&op, text, sizeof(text), &len), 0);
	assert_true(len <= RELAY_OP_TEXT_MAX);
	assert_int_equal(relay_op_parse(&back, text, len), 0);
	assert_int_equal(back.type, ROP_MSG);
	assert_int_equal(back.version, UINT64_MAX);
	assert_string_equal(back.user, op.user);
	assert_string_equal(back.dest, op.dest);
	assert_int_equal(back.cid, UINT64_MAX);
	assert_int_equal(back.bodylen, sizeof(body) - 4);
	assert_memory_equal(back.body, body, sizeof(body) - 4);
	/* too small a buffer is refused, not truncated */
	assert_int_equal(relay_op_format(&op, text, 100, &len), -1);
	op.type = ROP_LOGIN;
	op.version = 3;
	strlcpy(op.addr, "10.177.100.200", sizeof(op.addr));
	op.port = 65535;
	assert_int_equal(relay_op_format(&op, text, sizeof(text), &len), 0);
	assert_string_equal(text,
	    "login 3 0123456789abcdef0123456789abcde 10.177.100.200 65535");
	assert_int_equal(relay_op_parse(&back, text, len), 0);
	assert_int_equal(back.port, 65535);
	assert_string_equal(back.addr, "10.177.100.200");
}

static void
op_parse_should_reject_malformed_lines(void **state)
{
	static const char *const bad[] = {"", "nope 1 a", "newu 1 a",
	    "newu 0 "
	    "a 1.2.3.4 5",
	    "newu 1 a 1.2.3.4 0", "newu 1 a 1.2.3.4 65536",
	    "newu 1 a 1.2.3.4 5 extra", "newu 1 a 1.2.3 5",
	    "newu 1 a@b "
	    "1.2.3.4 5",
	    "newu  1 a 1.2.3.4 5", "newu 1 a 1.2.3.4 5 ", "logout 1 a ",
	    "logout -1 a", "logout +1 a", "logout 1x a",
	    "logout 18446744073709551616 a", "join 1 a room", "join 1 a #",
	    "part 1 a", "ack 1 a 0", "ack 1 a", "msg 1 a b 1 1 1 3 hi",
	    "msg 1 a b 1 1 1 1 hi", "msg 1 a b 1 1 0 2 hi",
	    "msg 1 a b 0 1 1 2 hi", "msg 1 a #x y 1 1 1 2 hi",
	    "msg 1 a b 1 1 1 0 ", "msg 1 a b 1 1 1 2 \x01x",
	    "msg 1 a b c 1 1 1 2 hi", "msg 1 a b 1 1 1 2hi"};
	struct relay_op op;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (relay_op_parse(&op, bad[i], strlen(bad[i])) != -1)
			print_error("accepted \"%s\"\n", bad[i]);
		assert_int_equal(
		    relay_op_parse(&op, bad[i], strlen(bad[i])), -1);
	}
	assert_int_equal(relay_op_parse(&op, "logout 1 a\0", 11), -1);
	assert_int_equal(relay_op_parse(&op, "msg 1 a b 1 1 1 2 h\0", 20), -1);
	assert_int_equal(relay_op_parse(&op, "logout 1 a", 10), 0);
	assert_int_equal(relay_op_parse(&op, "msg 1 a * 1 1 1 2 h ", 20), 0);
	assert_int_equal(relay_op_parse(NULL, "logout 1 a", 10), -1);
}

/* A backup's op: NEWU of name, or MSG id from alice to bob with cid. */
static void
apply_newu(struct relay *B, const char *name, const char *addr)
{
	struct relay_op op;

	memset(&op, 0, sizeof(op));
	op.type = ROP_NEWU;
	op.version = B->version + 1;
	strlcpy(op.user, name, sizeof(op.user));
	strlcpy(op.addr, addr, sizeof(op.addr));
	op.port = PORT;
	assert_int_equal(relay_apply(B, &op), RELAY_OK);
	relay_drain(B);
}

static enum relay_err
apply_msg(struct relay *B, uint64_t id, uint64_t cid)
{
	struct relay_op op;
	enum relay_err e;

	memset(&op, 0, sizeof(op));
	op.type = ROP_MSG;
	op.version = B->version + 1;
	strlcpy(op.user, "alice", sizeof(op.user));
	strlcpy(op.dest, "bob", sizeof(op.dest));
	op.id = id;
	op.seq = 1;
	op.cid = cid;
	op.body = "hi";
	op.bodylen = 2;
	e = relay_apply(B, &op);
	relay_drain(B);
	return e;
}

/*
 * A client picks its cids: UINT64_MAX is one, and with the message's id
 * its window entry "CID:ID" is up to 41 characters in the snapshot.
 */
static void
snapshot_should_restore_window_entries_of_the_longest_cid_and_id(void **state)
{
	static const uint64_t ids[] = {100, UINT64_MAX - 1};
	struct relay B, R;
	char *s;
	size_t len, i;

	(void)state;
	for (i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
		init_backup(&B, NULL);
		apply_newu(&B, "alice", A_ADDR);
		apply_newu(&B, "bob", B_ADDR);
		assert_int_equal(apply_msg(&B, ids[i], UINT64_MAX), RELAY_OK);
		assert_int_equal(relay_snapshot(&B, &s, &len), RELAY_OK);
		init_backup(&R, NULL);
		assert_int_equal(relay_restore(&R, s, len), RELAY_OK);
		assert_true(relay_equal(&B, &R));
		free(s);
		relay_free(&B);
		relay_free(&R);
	}
}

/*
 * The id after a message's is where ids go on: a message of id
 * UINT64_MAX (only a forged op) would wrap them to 0.  A leader whose
 * ids ran out refuses messages as full.
 */
static void
message_id_with_no_successor_should_be_refused(void **state)
{
	char text[RELAY_OP_TEXT_MAX + 1];
	struct relay_op op;
	struct relay B, E;
	size_t len;

	(void)state;
	init_backup(&B, NULL);
	apply_newu(&B, "alice", A_ADDR);
	apply_newu(&B, "bob", B_ADDR);
	init_backup(&E, NULL);
	apply_newu(&E, "alice", A_ADDR);
	apply_newu(&E, "bob", B_ADDR);
	assert_int_equal(apply_msg(&B, UINT64_MAX, 1), RELAY_EDIVERGED);
	assert_true(relay_equal(&B, &E));
	assert_int_equal(B.next_id, 1);
	strlcpy(text, "msg 3 alice bob 18446744073709551615 1 1 2 hi",
	    sizeof(text));
	assert_int_equal(relay_op_parse(&op, text, strlen(text)), -1);
	/* ids moved to the last one (a merge's op): the leader is full */
	memset(&op, 0, sizeof(op));
	op.type = ROP_NEXT_ID;
	op.version = B.version + 1;
	op.id = UINT64_MAX;
	assert_int_equal(relay_op_format(&op, text, sizeof(text), &len), 0);
	assert_string_equal(text, "nextid 3 18446744073709551615");
	assert_int_equal(relay_op_parse(&op, text, len), 0);
	assert_int_equal(relay_apply(&B, &op), RELAY_OK);
	assert_int_equal(B.next_id, UINT64_MAX);
	assert_int_equal(relay_become_leader(&B, 0), RELAY_OK);
	assert_int_equal(
	    relay_on_login(&B, 0, "alice", A_ADDR, PORT), RELAY_OK);
	relay_drain(&B);
	assert_int_equal(
	    relay_on_msg(&B, 0, "alice", A_ADDR, PORT, "bob", "x", 1),
	    RELAY_EFULL);
	assert_int_equal(count_type(&B, RO_REPLICATE), 0);
	assert_int_equal(B.next_id, UINT64_MAX);
	relay_free(&B);
	relay_free(&E);
}

/* nextid names no user, and only moves ids up. */
static void
next_id_op_should_round_trip_and_only_move_ids_up(void **state)
{
	static const char *const bad[] = {"nextid 1", "nextid 1 0",
	    "nextid 1 alice 5", "nextid 1 5 ", "nextid 0 5", "nextid 1 -5",
	    "nextid 1 18446744073709551616"};
	char text[RELAY_OP_TEXT_MAX + 1];
	struct relay_op op;
	struct relay B;
	size_t len, i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (relay_op_parse(&op, bad[i], strlen(bad[i])) != -1)
			print_error("accepted \"%s\"\n", bad[i]);
		assert_int_equal(
		    relay_op_parse(&op, bad[i], strlen(bad[i])), -1);
	}
	assert_int_equal(relay_op_parse(&op, "nextid 1 7", 10), 0);
	assert_int_equal(op.type, ROP_NEXT_ID);
	assert_int_equal(op.version, 1);
	assert_int_equal(op.id, 7);
	assert_string_equal(op.user, "");
	assert_string_equal(relay_op_name(op.type), "nextid");
	assert_int_equal(relay_op_format(&op, text, sizeof(text), &len), 0);
	assert_string_equal(text, "nextid 1 7");
	/* a user on it does not format */
	strlcpy(op.user, "alice", sizeof(op.user));
	assert_int_equal(relay_op_format(&op, text, sizeof(text), &len), -1);
	op.user[0] = '\0';
	init_backup(&B, NULL);
	assert_int_equal(relay_apply(&B, &op), RELAY_OK);
	assert_int_equal(B.next_id, 7);
	op.version = 2;
	assert_int_equal(relay_apply(&B, &op), RELAY_EDIVERGED); /* not up */
	op.id = 6;
	assert_int_equal(relay_apply(&B, &op), RELAY_EDIVERGED);
	assert_int_equal(B.version, 1);
	assert_int_equal(B.next_id, 7);
	relay_free(&B);
}

static void
restore_should_refuse_a_corrupt_snapshot_and_change_nothing(void **state)
{
	struct relay L, R, E;
	char *s, *t;
	size_t len, i;
	unsigned seed = 1;

	(void)state;
	init_leader(&L, NULL);
	workload(&L, NULL);
	assert_int_equal(relay_snapshot(&L, &s, &len), RELAY_OK);
	init_backup(&R, NULL);
	init_backup(&E, NULL);
	assert_int_equal(relay_restore(&R, s, len - 1), RELAY_ESNAPSHOT);
	assert_int_equal(relay_restore(&R, s, 10), RELAY_ESNAPSHOT);
	assert_int_equal(relay_restore(&R, s, 0), RELAY_ESNAPSHOT);
	assert_true(relay_equal(&R, &E));
	/* any flipped byte: the checksum or the parser catches it */
	assert_non_null(t = malloc(len));
	for (i = 0; i < 300; i++) {
		memcpy(t, s, len);
		seed = seed * 1103515245u + 12345u;
		t[(seed >> 8) % len] ^= (char)(1u << ((seed >> 4) % 8));
		assert_int_equal(relay_restore(&R, t, len), RELAY_ESNAPSHOT);
	}
	free(t);
	assert_true(relay_equal(&R, &E));
	assert_int_equal(R.nusers, 0);
	/* a leader does not restore */
	assert_int_equal(relay_become_leader(&R, 0), RELAY_OK);
	assert_int_equal(relay_restore(&R, s, len), RELAY_EROLE);
	free(s);
	relay_free(&L);
	relay_free(&R);
	relay_free(&E);
}

/* Recomputes the end line after a change, so the parser is what judges. */
static size_t
reseal(char *s, size_t len)
{
	uint64_t h = UINT64_C(14695981039346656037);
	char *end;
	size_t i, body;

	s[len] = '\0';
	/* the last line: "end " after the last newline but one */
	end = memrchr(s, '\n', len - 1);
	assert_non_null(end);
	end++;
	assert_memory_equal(end, "end ", 4);
	body = (size_t)(end - s);
	for (i = 0; i < body; i++) {
		h ^= (unsigned char)s[i];
		h *= UINT64_C(1099511628211);
	}
	return body +
	    (size_t)sprintf(end, "end %016llx\n", (unsigned long long)h);
}

static void
restore_should_refuse_a_well_sealed_snapshot_that_breaks_the_rules(void **state)
{
	static const char *const bad[] = {
	    /* unknown user index in a room */
	    "ringchat-relay 1\nstate 1 1 0 2 1 0 1 0\n"
	    "u a 1.2.3.4 5 1 0 0\nr #x 1 0 1 7 0\n",
	    /* a room with no members */
	    "ringchat-relay 1\nstate 1 1 0 2 1 0 1 0\n"
	    "u a 1.2.3.4 5 1 0 0\nr #x 1 0 0 0\n",
	    /* the same name twice */
	    "ringchat-relay 1\nstate 2 1 0 1 2 0 0 0\n"
	    "u a 1.2.3.4 5 1 0 0\nu a 1.2.3.4 6 1 0 0\n",
	    /* a message nobody refers to */
	    "ringchat-relay 1\nstate 2 2 1 1 1 1 0 0\n"
	    "u a 1.2.3.4 5 1 1 1 1:1\nm 1 1 1 0 4611686018427387904 * hi\n",
	    /* a message from no user */
	    "ringchat-relay 1\nstate 2 2 1 1 0 1 0 0\n"
	    "m 1 1 1 0 4611686018427387904 * hi\nq 0 1 1\n",
	    /* a queue of an unknown message */
	    "ringchat-relay 1\nstate 1 2 0 1 1 0 0 0\n"
	    "u a 1.2.3.4 5 1 0 0\nq 0 1 1\n",
	    /* a window entry above cid_hi */
	    "ringchat-relay 1\nstate 1 2 0 1 1 0 0 0\n"
	    "u a 1.2.3.4 5 1 0 1 3:1\n",
	    /* a bad body escape */
	    "ringchat-relay 1\nstate 2 2 1 1 1 1 0 0\n"
	    "u a 1.2.3.4 5 1 1 1 1:1\nm 1 1 1 0 4611686018427387904 * %4\n"
	    "q 0 1 1\n",
	    /* trailing junk */
	    "ringchat-relay 1\nstate 0 1 0 1 0 0 0 0\nx\n",
	    /* another version */
	    "ringchat-relay 2\nstate 0 1 0 1 0 0 0 0\n",
	};
	char buf[512];
	struct relay R;
	size_t i, len;

	(void)state;
	init_backup(&R, NULL);
	strlcpy(buf, "ringchat-relay 1\nstate 0 1 0 1 0 0 0 0\nend x\n",
	    sizeof(buf));
	len = reseal(buf, strlen(buf));
	assert_int_equal(relay_restore(&R, buf, len), RELAY_OK);
	relay_drain(&R);
	strlcpy(buf,
	    "ringchat-relay 1\nstate 2 2 1 1 1 1 0 0\n"
	    "u a 1.2.3.4 5 1 1 1 1:1\nm 1 1 1 0 4611686018427387904 * h%20i\n"
	    "q 0 1 1\nend x\n",
	    sizeof(buf));
	len = reseal(buf, strlen(buf));
	assert_int_equal(relay_restore(&R, buf, len), RELAY_OK);
	assert_int_equal(relay_online_count(&R), 1);
	relay_drain(&R);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		strlcpy(buf, bad[i], sizeof(buf));
		strlcat(buf, "end x\n", sizeof(buf));
		len = reseal(buf, strlen(buf));
		if (relay_restore(&R, buf, len) != RELAY_ESNAPSHOT)
			print_error("accepted snapshot %zu\n", i);
		assert_int_equal(relay_restore(&R, buf, len), RELAY_ESNAPSHOT);
		assert_int_equal(R.nusers, 1);
	}
	relay_free(&R);
}

static void
snapshot_should_match_the_documented_example(void **state)
{
	static const char doc[] =
	    "ringchat-relay 1\n"
	    "state 7 2 0 2 2 1 1 0 2924258763629231521\n"
	    "u alice 10.0.0.1 4000 1 1 1 1:1 3296470888853968049\n"
	    "u bob 10.0.0.2 4000 1 0 0 10038753390568780797\n"
	    "m 1 1 1 0 9223372036854775809 #lobby hi%20there\n"
	    "r #lobby 1 1 2 0 1 1 1\n"
	    "q 1 1 1\n"
	    "end 20fc624ffd208265\n";
	struct relay r, R;
	char *s;
	size_t len;

	(void)state;
	init_leader(&r, NULL);
	user_up(&r, "alice", A_ADDR);
	user_up(&r, "bob", B_ADDR);
	assert_int_equal(
	    relay_on_join(&r, 0, "alice", A_ADDR, PORT, "#lobby"), RELAY_OK);
	assert_int_equal(
	    relay_on_join(&r, 0, "bob", B_ADDR, PORT, "#lobby"), RELAY_OK);
	relay_drain(&r);
	send_ok(&r, 0, "#lobby", "hi there", 1);
	assert_int_equal(relay_snapshot(&r, &s, &len), RELAY_OK);
	assert_int_equal(len, strlen(doc));
	assert_string_equal(s, doc);
	free(s);
	init_backup(&R, NULL);
	assert_int_equal(relay_restore(&R, doc, strlen(doc)), RELAY_OK);
	assert_true(relay_equal(&r, &R));
	relay_free(&r);
	relay_free(&R);
}

/* ---- hostile input --------------------------------------------------- */

static void
restore_of_resealed_random_mutations_should_never_crash(void **state)
{
	static const char junk[] = "0123456789 \n#*%:-abuqmrk";
	struct relay L, R;
	char *s, *t, *u;
	size_t len, tlen, i, k, at, n;
	unsigned seed = 5;
	int ok = 0;

	(void)state;
	init_leader(&L, NULL);
	workload(&L, NULL);
	assert_int_equal(relay_snapshot(&L, &s, &len), RELAY_OK);
	assert_non_null(t = malloc(len + 64));
	for (i = 0; i < 3000; i++) {
		memcpy(t, s, len);
		tlen = len - 21; /* without the end line */
		for (k = 0; k < 1 + i % 3; k++) {
			seed = seed * 1103515245u + 12345u;
			at = (seed >> 8) % tlen;
			seed = seed * 1103515245u + 12345u;
			switch ((seed >> 8) % 3) {
			case 0: /* replace a byte */
				t[at] = junk[(seed >> 12) % (sizeof(junk) - 1)];
				break;
			case 1: /* delete a byte */
				memmove(t + at, t + at + 1, tlen - at - 1);
				tlen--;
				break;
			default: /* duplicate a byte */
				memmove(t + at + 1, t + at, tlen - at);
				tlen++;
				break;
			}
		}
		memcpy(t + tlen, "end x\n", 7);
		tlen = reseal(t, tlen + 6);
		init_backup(&R, NULL);
		if (relay_restore(&R, t, tlen) == RELAY_OK) {
			/* whatever was accepted must hold up in use */
			ok++;
			assert_int_equal(relay_snapshot(&R, &u, &n), RELAY_OK);
			free(u);
			assert_int_equal(relay_become_leader(&R, 0), RELAY_OK);
			ack_all(&R, 1);
			relay_tick(&R, 100000);
			relay_drain(&R);
		} else
			assert_int_equal(R.nusers, 0);
		relay_free(&R);
	}
	print_message("    %d of 3000 mutations were still valid\n", ok);
	free(t);
	free(s);
	relay_free(&L);
}

static void
random_op_text_should_never_crash_the_parser(void **state)
{
	char text[RELAY_OP_TEXT_MAX + 1], buf[64];
	static const char alpha[] = "msg newu ack #*@ 0123456789abc.\n%";
	struct relay_op op;
	unsigned seed = 99;
	size_t len, i, k;

	(void)state;
	for (i = 0; i < 20000; i++) {
		seed = seed * 1103515245u + 12345u;
		len = (seed >> 8) % sizeof(buf);
		for (k = 0; k < len; k++) {
			seed = seed * 1103515245u + 12345u;
			buf[k] = alpha[(seed >> 8) % (sizeof(alpha) - 1)];
		}
		if (relay_op_parse(&op, buf, len) == 0) {
			/* whatever parses formats back to the same text */
			assert_int_equal(
			    relay_op_format(&op, text, sizeof(text), &k), 0);
			assert_int_equal(k, len);
			assert_memory_equal(text, buf, len);
		}
	}
}

static void
hostile_requests_should_change_nothing(void **state)
{
	struct relay r;
	char *before, *after;
	size_t l1, l2;

	(void)state;
	trio(&r, NULL);
	assert_int_equal(relay_snapshot(&r, &before, &l1), RELAY_OK);
	relay_on_msg(&r, 1, NULL, A_ADDR, PORT, "bob", "x", 1);
	relay_on_msg(&r, 1, "alice", A_ADDR, PORT, "bob", NULL, 1);
	relay_on_msg(&r, 1, "alice\xff", A_ADDR, PORT, "bob", "x", 1);
	relay_on_join(&r, 1, "alice", A_ADDR, PORT, "#\xc0\x80");
	relay_on_who(&r, 1, "alice", A_ADDR, PORT, NULL);
	relay_on_part(&r, 1, "alice", A_ADDR, PORT, NULL);
	relay_on_ack(&r, 1, "alice", A_ADDR, PORT, 0);
	relay_on_ack(&r, 1, "alice", A_ADDR, PORT, UINT64_MAX);
	relay_on_ack(&r, 1, NULL, NULL, 0, 1);
	relay_on_login(&r, 1, NULL, A_ADDR, PORT);
	relay_on_logout(&r, 1, "bob", A_ADDR, PORT);
	relay_on_rooms(&r, 1, "nobody", A_ADDR, PORT);
	relay_on_replicated(&r, 1, 0);
	relay_tick(NULL, 0);
	relay_drain(NULL);
	relay_free(NULL);
	assert_int_equal(relay_snapshot(&r, &after, &l2), RELAY_OK);
	assert_int_equal(l1, l2);
	assert_memory_equal(before, after, l1);
	assert_int_equal(r.accepted, 0);
	free(before);
	free(after);
	relay_free(&r);
}

/* ---- memory ---------------------------------------------------------- */

static void
memory_accounting_should_return_to_zero(void **state)
{
	struct relay L;

	(void)state;
	init_leader(&L, NULL);
	workload(&L, NULL);
	assert_true(relay_memory(&L) > 0);
	relay_free(&L);
	assert_int_equal(relay_memory(&L), 0);
}

static void
ten_thousand_online_users_should_fit_well_under_64_mb(void **state)
{
	struct relay_cfg c = cfg_default();
	struct mallinfo2 m0, m1;
	char name[32], addr[16], room[16];
	size_t mem, heap, i;
	struct relay r;

	(void)state;
	m0 = mallinfo2();
	c.users_max = 10000;
	init_leader(&r, &c);
	for (i = 0; i < 10000; i++) {
		snprintf(name, sizeof(name), "user%05zu", i);
		snprintf(addr, sizeof(addr), "10.%zu.%zu.%zu", i / 65536,
		    i / 256 % 256, i % 256 + 0);
		assert_int_equal(
		    relay_on_newu(&r, 0, name, addr, PORT), RELAY_OK);
		assert_int_equal(
		    relay_on_login(&r, 0, name, addr, PORT), RELAY_OK);
		snprintf(room, sizeof(room), "#room%zu", i % 100);
		assert_int_equal(
		    relay_on_join(&r, 0, name, addr, PORT, room), RELAY_OK);
		relay_drain(&r);
	}
	mem = relay_memory(&r);
	print_message("    10000 online users, 100 rooms: %zu bytes, %zu "
		      "per user\n",
	    mem, mem / 10000);
	assert_true(mem < 4 * 1024 * 1024);
	/*
	 * Load: each user sends one message to its room and one in four a
	 * direct one; five broadcasts.  Nobody acks: everything is queued
	 * and in flight.
	 */
	for (i = 0; i < 10000; i++) {
		snprintf(name, sizeof(name), "user%05zu", i);
		snprintf(addr, sizeof(addr), "10.%zu.%zu.%zu", i / 65536,
		    i / 256 % 256, i % 256 + 0);
		snprintf(room, sizeof(room), "#room%zu", i % 100);
		assert_int_equal(relay_on_msg(&r, 1, name, addr, PORT, room,
				     "a message of an ordinary length, "
				     "a sentence or two of chat text",
				     1),
		    RELAY_OK);
		replicate(&r, NULL, 1);
		relay_drain(&r);
		if (i % 4 == 0) {
			snprintf(
			    room, sizeof(room), "user%05zu", (i + 1) % 10000);
			assert_int_equal(relay_on_msg(&r, 1, name, addr, PORT,
					     room, "psst", 2),
			    RELAY_OK);
			replicate(&r, NULL, 1);
			relay_drain(&r);
		}
		if (i % 2000 == 0) {
			assert_int_equal(relay_on_msg(&r, 1, name, addr, PORT,
					     "*", "hello everyone", 3),
			    RELAY_OK);
			replicate(&r, NULL, 1);
			relay_drain(&r);
		}
	}
	mem = relay_memory(&r);
	m1 = mallinfo2();
	heap = m1.uordblks > m0.uordblks ? m1.uordblks - m0.uordblks : 0;
	print_message("    with %zu messages queued: %zu bytes counted, "
		      "%zu per user; heap grew %zu bytes\n",
	    r.nmsgs, mem, mem / 10000, heap);
	assert_true(mem < 32 * 1024 * 1024);
	/* the count is honest: the heap agrees (0 under a sanitizer) */
	if (heap > 0)
		assert_true(heap < mem + mem / 4 + 1024 * 1024);
	relay_free(&r);
}

/* ---- session keys and passwords ---------------------------------------- */

/* A valid session key (base64url of 32 bytes, all equal to b). */
static void
key_of(uint8_t b, char out[AUTH_PK_TEXT])
{
	uint8_t pk[AUTH_PK_BYTES];

	memset(pk, b, sizeof(pk));
	auth_pk_to_text(pk, out);
}

/* A password hash, computed once per password and kept. */
static const char *
hash_of(const char *pw)
{
	static char cache[2][AUTH_PWHASH_SIZE];
	static char pws[2][16];
	size_t i;

	for (i = 0; i < 2; i++)
		if (cache[i][0] != '\0' && strcmp(pws[i], pw) == 0)
			return cache[i];
	for (i = 0; i < 2 && cache[i][0] != '\0'; i++)
		;
	assert_true(i < 2);
	assert_int_equal(auth_pw_hash(pw, strlen(pw), cache[i]), AUTH_OK);
	strlcpy(pws[i], pw, sizeof(pws[i]));
	return cache[i];
}

/* The err of the reply to user in r's outbox, RELAY_NERR when none. */
static enum relay_err
reply_err(const struct relay *r, const char *user)
{
	const struct relay_out *o = find_reply(r, user);

	return o == NULL ? RELAY_NERR : o->err;
}

static void
requests_from_another_session_key_should_be_forged(void **state)
{
	char k1[AUTH_PK_TEXT], k2[AUTH_PK_TEXT];
	struct relay_user_info info;
	struct relay r;

	(void)state;
	key_of(1, k1);
	key_of(2, k2);
	init_leader(&r, NULL);
	assert_int_equal(relay_set_source_key(&r, k1), 0);
	user_up(&r, "alice", A_ADDR);
	assert_int_equal(relay_user_get(&r, "alice", &info), 0);
	assert_string_equal(info.key, k1);
	/* the same address and port in another session: forged */
	assert_int_equal(relay_set_source_key(&r, k2), 0);
	assert_int_equal(
	    relay_on_alive(&r, 0, "alice", A_ADDR, PORT), RELAY_EFORGED);
	assert_int_equal(reply_err(&r, "alice"), RELAY_EFORGED);
	relay_drain(&r);
	assert_int_equal(
	    relay_on_msg(&r, 0, "alice", A_ADDR, PORT, "alice", "hi", 1),
	    RELAY_EFORGED);
	relay_drain(&r);
	/* a plain datagram too */
	assert_int_equal(relay_set_source_key(&r, ""), 0);
	assert_int_equal(
	    relay_on_join(&r, 0, "alice", A_ADDR, PORT, "#x"), RELAY_EFORGED);
	relay_drain(&r);
	/* nor may another session take the name over by registering */
	assert_int_equal(relay_set_source_key(&r, k2), 0);
	assert_int_equal(
	    relay_on_newu(&r, 0, "alice", A_ADDR, PORT), RELAY_ENAME_TAKEN);
	relay_drain(&r);
	/* its own session goes on, and resends its newu */
	assert_int_equal(relay_set_source_key(&r, k1), 0);
	assert_int_equal(
	    relay_on_alive(&r, 0, "alice", A_ADDR, PORT), RELAY_OK);
	assert_int_equal(relay_on_newu(&r, 0, "alice", A_ADDR, PORT), RELAY_OK);
	relay_drain(&r);
	/* a malformed key refuses every request until a good one comes */
	assert_int_equal(relay_set_source_key(&r, "not-a-key"), -1);
	assert_int_equal(
	    relay_on_alive(&r, 0, "alice", A_ADDR, PORT), RELAY_EARG);
	assert_int_equal(reply_err(&r, "alice"), RELAY_EARG);
	relay_drain(&r);
	assert_int_equal(relay_set_source_key(&r, NULL), 0);
	assert_string_equal(r.src_key, "");
	relay_free(&r);
}

static void
login_from_a_new_key_should_rebind_the_user(void **state)
{
	char k1[AUTH_PK_TEXT], k2[AUTH_PK_TEXT];
	struct relay_user_info info;
	struct relay L, B;
	size_t i;
	bool op_seen = false;

	(void)state;
	key_of(1, k1);
	key_of(2, k2);
	init_leader(&L, NULL);
	init_backup(&B, NULL);
	assert_int_equal(relay_set_source_key(&L, k1), 0);
	assert_int_equal(relay_on_newu(&L, 0, "alice", A_ADDR, PORT), RELAY_OK);
	assert_int_equal(
	    relay_on_login(&L, 0, "alice", A_ADDR, PORT), RELAY_OK);
	replicate(&L, &B, 0);
	relay_drain(&L);
	/* the same address, a new session (a restarted client): rebound */
	assert_int_equal(relay_set_source_key(&L, k2), 0);
	assert_int_equal(
	    relay_on_login(&L, 0, "alice", A_ADDR, PORT), RELAY_OK);
	for (i = 0; i < L.nout; i++)
		if (L.out[i].type == RO_REPLICATE &&
		    L.out[i].op.type == ROP_LOGIN) {
			assert_string_equal(L.out[i].op.key, k2);
			op_seen = true;
		}
	assert_true(op_seen);
	replicate(&L, &B, 0);
	relay_drain(&L);
	assert_int_equal(relay_user_get(&B, "alice", &info), 0);
	assert_string_equal(info.key, k2);
	assert_true(relay_equal(&L, &B));
	assert_int_equal(
	    relay_on_alive(&L, 0, "alice", A_ADDR, PORT), RELAY_OK);
	relay_drain(&L);
	assert_int_equal(relay_set_source_key(&L, k1), 0);
	assert_int_equal(
	    relay_on_alive(&L, 0, "alice", A_ADDR, PORT), RELAY_EFORGED);
	relay_drain(&L);
	/* a resend of the login in the same session makes no op */
	assert_int_equal(relay_set_source_key(&L, k2), 0);
	assert_int_equal(
	    relay_on_login(&L, 0, "alice", A_ADDR, PORT), RELAY_OK);
	assert_int_equal(count_type(&L, RO_REPLICATE), 0);
	relay_free(&L);
	relay_free(&B);
}

static void
user_with_a_password_should_log_in_only_once_it_is_verified(void **state)
{
	char k1[AUTH_PK_TEXT];
	const char *h = hash_of("secret");
	struct relay_user_info info;
	struct relay L, B;

	(void)state;
	key_of(1, k1);
	init_leader(&L, NULL);
	init_backup(&B, NULL);
	assert_int_equal(relay_set_source_key(&L, k1), 0);
	assert_true(relay_newu_registers(&L, "alice"));
	assert_false(relay_newu_registers(&L, "bad name"));
	assert_int_equal(
	    relay_on_newu_pw(&L, 0, "alice", A_ADDR, PORT, "$x"), RELAY_EARG);
	relay_drain(&L);
	assert_int_equal(
	    relay_on_newu_pw(&L, 0, "alice", A_ADDR, PORT, h), RELAY_OK);
	assert_int_equal(reply_err(&L, "alice"), RELAY_OK);
	assert_false(relay_newu_registers(&L, "alice"));
	replicate(&L, &B, 0);
	relay_drain(&L);
	assert_int_equal(relay_user_get(&B, "alice", &info), 0);
	assert_string_equal(info.pwhash, h);
	assert_string_equal(info.key, k1);
	/* no verification: password_required, whatever the session */
	assert_true(relay_login_wants_pw(&L, "alice", A_ADDR, PORT));
	assert_int_equal(
	    relay_on_login(&L, 0, "alice", A_ADDR, PORT), RELAY_EPW_REQUIRED);
	assert_int_equal(reply_err(&L, "alice"), RELAY_EPW_REQUIRED);
	assert_int_equal(count_type(&L, RO_REPLICATE), 0);
	relay_drain(&L);
	/* verified: online */
	assert_int_equal(
	    relay_on_login_pw(&L, 0, "alice", A_ADDR, PORT, true), RELAY_OK);
	assert_int_equal(reply_err(&L, "alice"), RELAY_OK);
	replicate(&L, &B, 0);
	relay_drain(&L);
	assert_true(relay_equal(&L, &B));
	/* a resend of that login from its session needs no password */
	assert_false(relay_login_wants_pw(&L, "alice", A_ADDR, PORT));
	assert_int_equal(
	    relay_on_login(&L, 0, "alice", A_ADDR, PORT), RELAY_OK);
	relay_drain(&L);
	/* from elsewhere it does */
	assert_true(relay_login_wants_pw(&L, "alice", B_ADDR, PORT));
	assert_int_equal(
	    relay_on_login(&L, 0, "alice", B_ADDR, PORT), RELAY_EPW_REQUIRED);
	relay_drain(&L);
	/* users without a password are as before */
	assert_false(relay_login_wants_pw(&L, "nobody", A_ADDR, PORT));
	user_up(&L, "bob", B_ADDR);
	relay_free(&L);
	relay_free(&B);
}

static void
wrong_password_should_be_answered_after_a_growing_delay(void **state)
{
	char k1[AUTH_PK_TEXT], k2[AUTH_PK_TEXT];
	struct relay r;
	bool resend;

	(void)state;
	key_of(1, k1);
	key_of(2, k2);
	init_leader(&r, NULL);
	assert_int_equal(relay_set_source_key(&r, k1), 0);
	assert_int_equal(
	    relay_on_newu_pw(&r, 0, "alice", A_ADDR, PORT, hash_of("secret")),
	    RELAY_OK);
	relay_drain(&r);
	assert_int_equal(
	    relay_pw_wait(&r, 0, "alice", A_ADDR, PORT, &resend), 0);
	/* the first wrong password: answered 500 ms later, not before */
	assert_int_equal(
	    relay_on_login_pw(&r, 1000, "alice", A_ADDR, PORT, false),
	    RELAY_EBAD_PASSWORD);
	assert_null(find_reply(&r, "alice"));
	assert_int_equal(relay_next_deadline(&r), 1500);
	assert_int_equal(
	    relay_pw_wait(&r, 1100, "alice", A_ADDR, PORT, &resend), 400);
	assert_true(resend); /* the same client asking again */
	assert_int_equal(
	    relay_pw_wait(&r, 1100, "alice", B_ADDR, PORT, &resend), 400);
	assert_false(resend);
	assert_int_equal(relay_set_source_key(&r, k2), 0);
	assert_int_equal(
	    relay_pw_wait(&r, 1100, "alice", A_ADDR, PORT, &resend), 400);
	assert_false(resend); /* another session */
	assert_int_equal(relay_set_source_key(&r, k1), 0);
	relay_tick(&r, 1499);
	assert_null(find_reply(&r, "alice"));
	relay_tick(&r, 1500);
	assert_int_equal(reply_err(&r, "alice"), RELAY_EBAD_PASSWORD);
	assert_string_equal(find_reply(&r, "alice")->addr, A_ADDR);
	assert_int_equal(find_reply(&r, "alice")->re, WK_LOGIN);
	assert_true(has_event(&r, REV_REJECT));
	relay_drain(&r);
	assert_int_equal(
	    relay_pw_wait(&r, 1500, "alice", A_ADDR, PORT, &resend), 0);
	/* the second in a row: 1 s */
	assert_int_equal(
	    relay_on_login_pw(&r, 2000, "alice", A_ADDR, PORT, false),
	    RELAY_EBAD_PASSWORD);
	assert_int_equal(relay_next_deadline(&r), 3000);
	relay_tick(&r, 3000);
	assert_int_equal(reply_err(&r, "alice"), RELAY_EBAD_PASSWORD);
	relay_drain(&r);
	/* success ends the run: the next wrong one waits 500 ms again */
	assert_int_equal(
	    relay_on_login_pw(&r, 4000, "alice", A_ADDR, PORT, true), RELAY_OK);
	relay_drain(&r);
	assert_int_equal(
	    relay_on_login_pw(&r, 5000, "alice", B_ADDR, PORT, false),
	    RELAY_EBAD_PASSWORD);
	assert_int_equal(
	    relay_pw_wait(&r, 5000, "alice", B_ADDR, PORT, &resend), 500);
	/* stepping down forgets the delays and the answers waiting */
	assert_int_equal(relay_become_backup(&r), RELAY_OK);
	relay_drain(&r);
	assert_int_equal(
	    relay_pw_wait(&r, 5000, "alice", B_ADDR, PORT, &resend), 0);
	assert_int_equal(r.npww, 0);
	relay_free(&r);
}

static void
refuse_should_answer_as_the_relay_does_with_retry_ms(void **state)
{
	const struct relay_out *o;
	struct relay r;

	(void)state;
	init_leader(&r, NULL);
	assert_int_equal(relay_refuse(&r, WK_LOGIN, RELAY_ESLOW_DOWN, "alice",
			     A_ADDR, PORT, 1234),
	    RELAY_ESLOW_DOWN);
	assert_non_null(o = find_reply(&r, "alice"));
	assert_int_equal(o->err, RELAY_ESLOW_DOWN);
	assert_int_equal(o->re, WK_LOGIN);
	assert_int_equal(o->retry_ms, 1234);
	assert_string_equal(relay_err_code(o->err), "slow_down");
	assert_true(has_event(&r, REV_REJECT));
	relay_drain(&r);
	/* no address: nothing answered */
	assert_int_equal(relay_refuse(&r, WK_NEWU, RELAY_EPW_REQUIRED, "alice",
			     "nowhere", PORT, 0),
	    RELAY_EARG);
	assert_int_equal(r.nout, 0);
	assert_int_equal(
	    relay_refuse(&r, WK_NEWU, RELAY_OK, "alice", A_ADDR, PORT, 0),
	    RELAY_EARG);
	relay_free(&r);
	/* a backup answers not_leader */
	init_backup(&r, NULL);
	assert_int_equal(relay_refuse(&r, WK_NEWU, RELAY_EPW_REQUIRED, "alice",
			     A_ADDR, PORT, 0),
	    RELAY_EROLE);
	assert_int_equal(reply_err(&r, "alice"), RELAY_EROLE);
	relay_free(&r);
}

static void
ops_with_key_and_password_should_round_trip_and_fit(void **state)
{
	char text[RELAY_OP_TEXT_MAX + 1], k[AUTH_PK_TEXT], bad[300];
	const char *h = hash_of("secret");
	struct relay_op op, back;
	size_t len;

	(void)state;
	key_of(0xfb, k);
	memset(&op, 0, sizeof(op));
	op.type = ROP_NEWU;
	op.version = UINT64_MAX;
	op.id = UINT64_MAX;
	/* the worst case: a name of bytes wire.c escapes */
	memset(op.user, '=', sizeof(op.user) - 1);
	strlcpy(op.addr, "10.177.100.200", sizeof(op.addr));
	op.port = 65535;
	strlcpy(op.key, k, sizeof(op.key));
	strlcpy(op.pwhash, h, sizeof(op.pwhash));
	assert_int_equal(relay_op_format(&op, text, sizeof(text), &len), 0);
	print_message("    longest newu: %zu bytes, %zu escaped\n", len,
	    wire_escaped_len(text, len));
	assert_true(wire_escaped_len(text, len) <= RELAY_OP_WIRE_MAX);
	assert_int_equal(relay_op_parse(&back, text, len), 0);
	assert_int_equal(back.id, UINT64_MAX);
	assert_string_equal(back.key, k);
	assert_string_equal(back.pwhash, h);
	/* each is optional, in this order */
	op.id = 0;
	op.key[0] = '\0';
	assert_int_equal(relay_op_format(&op, text, sizeof(text), &len), 0);
	assert_int_equal(relay_op_parse(&back, text, len), 0);
	assert_int_equal(back.id, 0);
	assert_string_equal(back.key, "");
	assert_string_equal(back.pwhash, h);
	op.type = ROP_LOGIN;
	op.pwhash[0] = '\0';
	strlcpy(op.user, "alice", sizeof(op.user));
	strlcpy(op.key, k, sizeof(op.key));
	op.version = 3;
	assert_int_equal(relay_op_format(&op, text, sizeof(text), &len), 0);
	snprintf(
	    bad, sizeof(bad), "login 3 alice 10.177.100.200 65535 key=%s", k);
	assert_string_equal(text, bad);
	assert_int_equal(relay_op_parse(&back, text, len), 0);
	assert_string_equal(back.key, k);
	/* a login carries no password; keys and hashes are checked */
	strlcpy(op.pwhash, h, sizeof(op.pwhash));
	assert_int_equal(relay_op_format(&op, text, sizeof(text), &len), -1);
	snprintf(
	    bad, sizeof(bad), "login 3 alice 1.2.3.4 5 key=%s pw=%s", k, h);
	assert_int_equal(relay_op_parse(&back, bad, strlen(bad)), -1);
	snprintf(bad, sizeof(bad), "newu 3 alice 1.2.3.4 5 pw=%s key=%s", h, k);
	assert_int_equal(relay_op_parse(&back, bad, strlen(bad)), -1);
	snprintf(bad, sizeof(bad), "newu 3 alice 1.2.3.4 5 7 key=%.42s", k);
	assert_int_equal(relay_op_parse(&back, bad, strlen(bad)), -1);
	snprintf(bad, sizeof(bad), "newu 3 alice 1.2.3.4 5 key=");
	assert_int_equal(relay_op_parse(&back, bad, strlen(bad)), -1);
	snprintf(bad, sizeof(bad), "newu 3 alice 1.2.3.4 5 pw=$argon2i$x");
	assert_int_equal(relay_op_parse(&back, bad, strlen(bad)), -1);
	snprintf(bad, sizeof(bad), "newu 3 alice 1.2.3.4 5 7 pw=%s", h);
	assert_int_equal(relay_op_parse(&back, bad, strlen(bad)), 0);
	assert_int_equal(back.id, 7);
	assert_string_equal(back.key, "");
	assert_string_equal(back.pwhash, h);
}

static void
snapshot_should_keep_keys_and_passwords_and_check_them(void **state)
{
	char k1[AUTH_PK_TEXT], k2[AUTH_PK_TEXT], buf[1024];
	const char *h = hash_of("secret");
	struct relay_user_info info;
	struct relay L, B, R;
	char *snap;
	size_t len;

	(void)state;
	key_of(1, k1);
	key_of(2, k2);
	init_leader(&L, NULL);
	init_backup(&B, NULL);
	assert_int_equal(relay_set_source_key(&L, k1), 0);
	assert_int_equal(
	    relay_on_newu_pw(&L, 0, "alice", A_ADDR, PORT, h), RELAY_OK);
	assert_int_equal(
	    relay_on_login_pw(&L, 0, "alice", A_ADDR, PORT, true), RELAY_OK);
	assert_int_equal(relay_set_source_key(&L, k2), 0);
	assert_int_equal(relay_on_newu(&L, 0, "bob", B_ADDR, PORT), RELAY_OK);
	assert_int_equal(relay_on_login(&L, 0, "bob", B_ADDR, PORT), RELAY_OK);
	assert_int_equal(relay_set_source_key(&L, NULL), 0);
	assert_int_equal(relay_on_newu(&L, 0, "carol", C_ADDR, PORT), RELAY_OK);
	replicate(&L, &B, 0);
	relay_drain(&L);
	assert_true(relay_equal(&L, &B));
	assert_int_equal(B.hash, L.hash);
	assert_int_equal(relay_snapshot(&L, &snap, &len), RELAY_OK);
	snprintf(buf, sizeof(buf), " key=%s pw=%s\n", k1, h);
	assert_non_null(strstr(snap, buf));
	init_backup(&R, NULL);
	assert_int_equal(relay_restore(&R, snap, len), RELAY_OK);
	free(snap);
	assert_true(relay_equal(&L, &R));
	assert_int_equal(relay_user_get(&R, "alice", &info), 0);
	assert_string_equal(info.key, k1);
	assert_string_equal(info.pwhash, h);
	assert_int_equal(relay_user_get(&R, "bob", &info), 0);
	assert_string_equal(info.key, k2);
	assert_string_equal(info.pwhash, "");
	assert_int_equal(relay_user_get(&R, "carol", &info), 0);
	assert_string_equal(info.key, "");
	relay_drain(&R);
	/* a damaged key or hash is a bad snapshot */
	snprintf(buf, sizeof(buf),
	    "ringchat-relay 1\nstate 1 1 0 1 1 0 0 0\n"
	    "u a 1.2.3.4 5 1 0 0 key=%.42s\nend x\n",
	    k1);
	len = reseal(buf, strlen(buf));
	assert_int_equal(relay_restore(&R, buf, len), RELAY_ESNAPSHOT);
	snprintf(buf, sizeof(buf),
	    "ringchat-relay 1\nstate 1 1 0 1 1 0 0 0\n"
	    "u a 1.2.3.4 5 1 0 0 9 pw=%.40s\nend x\n",
	    h);
	len = reseal(buf, strlen(buf));
	assert_int_equal(relay_restore(&R, buf, len), RELAY_ESNAPSHOT);
	snprintf(buf, sizeof(buf),
	    "ringchat-relay 1\nstate 1 1 0 1 1 0 0 0\n"
	    "u a 1.2.3.4 5 1 0 0 9 pw=%s key=%s\nend x\n",
	    h, k1);
	len = reseal(buf, strlen(buf));
	assert_int_equal(relay_restore(&R, buf, len), RELAY_ESNAPSHOT);
	assert_int_equal(R.nusers, 3);
	/* a well-formed one loads */
	snprintf(buf, sizeof(buf),
	    "ringchat-relay 1\nstate 1 1 0 1 1 0 0 0\n"
	    "u a 1.2.3.4 5 1 0 0 9 key=%s pw=%s\nend x\n",
	    k1, h);
	len = reseal(buf, strlen(buf));
	assert_int_equal(relay_restore(&R, buf, len), RELAY_OK);
	assert_int_equal(relay_user_get(&R, "a", &info), 0);
	assert_int_equal(info.reg, 9);
	assert_string_equal(info.key, k1);
	assert_string_equal(info.pwhash, h);
	relay_free(&L);
	relay_free(&B);
	relay_free(&R);
}

static void
merge_should_keep_the_key_and_password_of_a_user_taken_over(void **state)
{
	char k1[AUTH_PK_TEXT], k2[AUTH_PK_TEXT];
	const char *h = hash_of("secret"), *h2 = hash_of("other");
	struct relay_user_info info;
	struct relay L, O, B;
	size_t nu, nm;

	(void)state;
	key_of(1, k1);
	key_of(2, k2);
	init_leader(&L, NULL);
	L.origin = 1;
	init_backup(&B, NULL);
	init_leader(&O, NULL);
	O.origin = 2;
	/* L has its own dave; O has erin and another dave */
	assert_int_equal(relay_set_source_key(&L, k1), 0);
	assert_int_equal(
	    relay_on_newu_pw(&L, 0, "dave", "10.0.0.4", PORT, h2), RELAY_OK);
	replicate(&L, &B, 0);
	relay_drain(&L);
	assert_int_equal(relay_set_source_key(&O, k2), 0);
	assert_int_equal(
	    relay_on_newu_pw(&O, 0, "erin", "10.0.1.5", PORT, h), RELAY_OK);
	assert_int_equal(
	    relay_on_newu_pw(&O, 0, "dave", "10.0.1.4", PORT, h), RELAY_OK);
	relay_drain(&O);
	assert_int_equal(relay_merge(&L, 0, &O, &nu, &nm), RELAY_OK);
	assert_int_equal(nu, 2);
	replicate(&L, &B, 0);
	relay_drain(&L);
	assert_true(relay_equal(&L, &B));
	assert_int_equal(relay_user_get(&B, "erin", &info), 0);
	assert_string_equal(info.key, k2);
	assert_string_equal(info.pwhash, h);
	assert_int_equal(relay_user_get(&B, "dave~2", &info), 0);
	assert_string_equal(info.key, k2);
	assert_string_equal(info.pwhash, h);
	/* L's dave keeps L's */
	assert_int_equal(relay_user_get(&B, "dave", &info), 0);
	assert_string_equal(info.key, k1);
	assert_string_equal(info.pwhash, h2);
	relay_free(&L);
	relay_free(&O);
	relay_free(&B);
}

static void
export_should_write_the_password_hash(void **state)
{
	const char *h = hash_of("secret");
	struct users_state st;
	struct relay r;

	(void)state;
	init_leader(&r, NULL);
	assert_int_equal(
	    relay_on_newu_pw(&r, 0, "alice", A_ADDR, PORT, h), RELAY_OK);
	assert_int_equal(relay_on_newu(&r, 0, "bob", B_ADDR, PORT), RELAY_OK);
	relay_drain(&r);
	store_users_init(&st);
	assert_int_equal(relay_export_users(&r, NULL, 0, &st), 0);
	assert_int_equal(st.n, 2);
	assert_string_equal(st.u[0].password, h);
	assert_string_equal(st.u[1].password, "");
	store_users_free(&st);
	relay_free(&r);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(init_should_refuse_an_out_of_range_configuration),
	    cmocka_unit_test(error_codes_should_be_distinct_wire_words),
	    cmocka_unit_test(newu_should_register_a_valid_name_and_answer_ok),
	    cmocka_unit_test(newu_should_refuse_invalid_names_with_bad_name),
	    cmocka_unit_test(
		newu_should_refuse_a_taken_name_from_another_address),
	    cmocka_unit_test(
		newu_resent_from_the_same_address_should_be_answered_ok_again),
	    cmocka_unit_test(newu_beyond_users_max_should_answer_full),
	    cmocka_unit_test(
		login_of_an_unknown_user_should_answer_unknown_user),
	    cmocka_unit_test(
		login_should_record_the_address_and_report_the_highest_cid),
	    cmocka_unit_test(
		logout_should_mark_offline_and_require_a_new_login),
	    cmocka_unit_test(
		online_get_should_list_each_online_user_once_on_every_replica),
	    cmocka_unit_test(
		requests_without_a_valid_source_address_should_not_be_answered),
	    cmocka_unit_test(requests_to_a_backup_should_answer_not_leader),
	    cmocka_unit_test(
		silent_client_should_be_marked_offline_after_k_keepalive_intervals),
	    cmocka_unit_test(
		msg_from_a_user_not_logged_in_should_relay_nothing),
	    cmocka_unit_test(
		msg_from_another_address_should_answer_forged_sender),
	    cmocka_unit_test(forged_ack_should_not_remove_a_delivery),
	    cmocka_unit_test(
		direct_msg_should_be_acked_only_after_replication_then_delivered),
	    cmocka_unit_test(
		resent_cid_should_not_be_accepted_again_and_should_repeat_the_ack),
	    cmocka_unit_test(resent_cid_before_replication_should_be_ignored),
	    cmocka_unit_test(
		cids_out_of_order_within_the_window_should_each_be_accepted_once),
	    cmocka_unit_test(
		cid_missing_or_older_than_the_window_should_be_refused),
	    cmocka_unit_test(msg_to_an_unknown_user_or_room_should_be_refused),
	    cmocka_unit_test(
		body_over_the_limit_should_answer_too_long_and_never_be_truncated),
	    cmocka_unit_test(
		body_empty_or_with_control_characters_should_answer_bad_body),
	    cmocka_unit_test(
		ids_should_increase_and_seqs_should_count_per_stream),
	    cmocka_unit_test(
		broadcast_should_reach_everyone_online_but_the_sender),
	    cmocka_unit_test(
		delivery_should_be_resent_with_bounded_exponential_backoff),
	    cmocka_unit_test(acked_delivery_should_never_be_sent_again),
	    cmocka_unit_test(
		delivery_should_stop_when_the_recipient_goes_offline),
	    cmocka_unit_test(
		stream_should_be_delivered_one_at_a_time_in_seq_order),
	    cmocka_unit_test(
		different_streams_should_be_in_flight_together_up_to_inflight_max),
	    cmocka_unit_test(
		offline_recipient_should_get_queued_messages_on_login_in_order),
	    cmocka_unit_test(queue_should_be_bounded_per_user),
	    cmocka_unit_test(
		backlog_should_refuse_without_losing_then_accept_the_same_cid),
	    cmocka_unit_test(
		order_should_keep_a_later_message_from_passing_an_earlier_one),
	    cmocka_unit_test(
		op_that_would_not_fit_a_sealed_datagram_should_be_too_long),
	    cmocka_unit_test(message_memory_budget_should_answer_full),
	    cmocka_unit_test(
		join_should_create_a_room_and_the_last_part_should_delete_it),
	    cmocka_unit_test(join_should_refuse_malformed_room_names),
	    cmocka_unit_test(join_beyond_the_rooms_limits_should_be_refused),
	    cmocka_unit_test(
		joiner_should_get_the_last_n_messages_replayed_as_deliveries),
	    cmocka_unit_test(
		rejoining_member_should_not_get_messages_it_already_had),
	    cmocka_unit_test(
		room_message_should_reach_offline_members_on_login),
	    cmocka_unit_test(
		lists_should_name_rooms_members_and_online_users_in_chunks),
	    cmocka_unit_test(
		backup_applying_the_leaders_ops_should_end_identical),
	    cmocka_unit_test(
		restored_backup_should_keep_applying_the_leaders_ops),
	    cmocka_unit_test(
		apply_should_refuse_old_and_gapped_versions_without_change),
	    cmocka_unit_test(
		apply_should_refuse_an_op_that_does_not_fit_as_diverged),
	    cmocka_unit_test(new_leader_should_resend_every_unacked_delivery),
	    cmocka_unit_test(
		client_resend_after_failover_should_be_recognised_by_cid),
	    cmocka_unit_test(
		stepping_down_should_forget_timers_and_pending_answers),
	    cmocka_unit_test(
		merge_should_take_the_other_sides_users_and_messages_once),
	    cmocka_unit_test(merge_should_bring_a_stale_leader_up_to_date),
	    cmocka_unit_test(
		merge_should_replicate_the_move_of_next_id_without_a_message),
	    cmocka_unit_test(op_text_should_round_trip),
	    cmocka_unit_test(op_parse_should_reject_malformed_lines),
	    cmocka_unit_test(
		snapshot_should_restore_window_entries_of_the_longest_cid_and_id),
	    cmocka_unit_test(message_id_with_no_successor_should_be_refused),
	    cmocka_unit_test(next_id_op_should_round_trip_and_only_move_ids_up),
	    cmocka_unit_test(
		restore_should_refuse_a_corrupt_snapshot_and_change_nothing),
	    cmocka_unit_test(
		restore_should_refuse_a_well_sealed_snapshot_that_breaks_the_rules),
	    cmocka_unit_test(snapshot_should_match_the_documented_example),
	    cmocka_unit_test(
		restore_of_resealed_random_mutations_should_never_crash),
	    cmocka_unit_test(random_op_text_should_never_crash_the_parser),
	    cmocka_unit_test(hostile_requests_should_change_nothing),
	    cmocka_unit_test(memory_accounting_should_return_to_zero),
	    cmocka_unit_test(
		ten_thousand_online_users_should_fit_well_under_64_mb),
	    cmocka_unit_test(
		requests_from_another_session_key_should_be_forged),
	    cmocka_unit_test(login_from_a_new_key_should_rebind_the_user),
	    cmocka_unit_test(
		user_with_a_password_should_log_in_only_once_it_is_verified),
	    cmocka_unit_test(
		wrong_password_should_be_answered_after_a_growing_delay),
	    cmocka_unit_test(
		refuse_should_answer_as_the_relay_does_with_retry_ms),
	    cmocka_unit_test(
		ops_with_key_and_password_should_round_trip_and_fit),
	    cmocka_unit_test(
		snapshot_should_keep_keys_and_passwords_and_check_them),
	    cmocka_unit_test(
		merge_should_keep_the_key_and_password_of_a_user_taken_over),
	    cmocka_unit_test(export_should_write_the_password_hash),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
