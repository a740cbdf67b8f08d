/* test_client: unit tests for the client session state machine in src/client.c.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "wire.h"

#define ME	  "alice"
#define L1_ADDR	  "10.0.0.1"
#define L2_ADDR	  "10.0.0.2"
#define L_PORT	  45961
#define L1_UUID	  "00000000-0000-4000-8000-000000000001"
#define L2_UUID	  "00000000-0000-4000-8000-000000000002"
#define L3_UUID	  "00000000-0000-4000-8000-000000000003"
#define NO_CID	  UINT64_MAX
#define MAX_SENDS 64

/* ---- helpers --------------------------------------------------------- */

/* What one call produced, decoded, so that tests read like the wire. */
struct seen {
	struct wire_msg sends[MAX_SENDS];
	bool discovery[MAX_SENDS];
	char addr[MAX_SENDS][RING_ADDR_MAX];
	size_t nsends;
	struct client_out ev[MAX_SENDS];
	char text[MAX_SENDS][2048];
	size_t nev;
};

static struct seen seen;

/* Decodes and drains c's outputs into `seen` (replacing what was there). */
static void
collect(struct client *c)
{
	size_t i;

	memset(&seen, 0, sizeof(seen));
	for (i = 0; i < c->nout; i++) {
		const struct client_out *o = &c->out[i];

		if (o->type == CO_SEND) {
			assert_true(seen.nsends < MAX_SENDS);
			assert_int_equal(wire_decode(&seen.sends[seen.nsends],
					     o->data, o->len),
			    WIRE_OK);
			seen.discovery[seen.nsends] = o->discovery;
			strlcpy(seen.addr[seen.nsends], o->addr,
			    sizeof(seen.addr[0]));
			seen.nsends++;
		} else {
			assert_true(seen.nev < MAX_SENDS);
			seen.ev[seen.nev] = *o;
			seen.ev[seen.nev].text = NULL;
			if (o->text != NULL)
				strlcpy(seen.text[seen.nev], o->text,
				    sizeof(seen.text[0]));
			seen.nev++;
		}
	}
	client_drain(c);
}

static size_t
count_sent(enum wire_kind k)
{
	size_t i, n = 0;

	for (i = 0; i < seen.nsends; i++)
		n += seen.sends[i].kind == k;
	return n;
}

/* The i-th datagram of kind k sent, or NULL. */
static const struct wire_msg *
sent(enum wire_kind k, size_t i)
{
	size_t j;

	for (j = 0; j < seen.nsends; j++)
		if (seen.sends[j].kind == k && i-- == 0)
			return &seen.sends[j];
	return NULL;
}

static uint64_t
cid_of(const struct wire_msg *m)
{
	uint64_t cid = NO_CID;

	assert_non_null(m);
	assert_int_equal(wire_get_u64(m, "cid", &cid), 0);
	return cid;
}

static const struct client_out *
event(enum client_event ev, size_t i)
{
	size_t j;

	for (j = 0; j < seen.nev; j++)
		if (seen.ev[j].ev == ev && i-- == 0)
			return &seen.ev[j];
	return NULL;
}

static size_t
count_events(enum client_event ev)
{
	size_t j, n = 0;

	for (j = 0; j < seen.nev; j++)
		n += seen.ev[j].ev == ev;
	return n;
}

/* Feeds m to the client as it would arrive: encoded, then decoded. */
static void
feed(struct client *c, int64_t now, const struct wire_msg *m, const char *addr)
{
	char buf[WIRE_MAX];
	struct wire_msg d;
	size_t len;

	assert_int_equal(wire_encode(m, buf, sizeof(buf), &len), WIRE_OK);
	assert_int_equal(wire_decode(&d, buf, len), WIRE_OK);
	client_on_datagram(c, now, &d, addr, L_PORT);
	collect(c);
}

/* A `leader` datagram naming uuid at addr:L_PORT, sent from src. */
static void
leader_from(struct client *c, int64_t now, uint64_t epoch, const char *uuid,
    const char *addr, const char *src)
{
	struct wire_msg m;

	wire_init(&m, WK_LEADER, ME, "srv", uuid);
	wire_add_u64(&m, "epoch", epoch);
	wire_add(&m, "leader", uuid);
	wire_add(&m, "addr", addr);
	wire_add_u64(&m, "port", L_PORT);
	feed(c, now, &m, src);
}

static void
answer_where(struct client *c, int64_t now, uint64_t epoch, const char *uuid,
    const char *addr)
{
	leader_from(c, now, epoch, uuid, addr, addr);
}

/* A new leader's unasked word that it leads: from its own address. */
static void
takeover(struct client *c, int64_t now, uint64_t epoch, const char *uuid,
    const char *addr)
{
	leader_from(c, now, epoch, uuid, addr, addr);
}

/* ok re=KIND from addr, with cid (NO_CID: none) and id (0: none). */
static void
answer_ok(struct client *c, int64_t now, const char *addr, enum wire_kind re,
    uint64_t cid, uint64_t id)
{
	struct wire_msg m;

	wire_init(&m, WK_OK, ME, "", L1_UUID);
	wire_add(&m, "re", wire_kind_name(re));
	if (cid != NO_CID)
		wire_add_u64(&m, "cid", cid);
	if (id != 0)
		wire_add_u64(&m, "id", id);
	feed(c, now, &m, addr);
}

static void
answer_err(struct client *c, int64_t now, const char *addr, enum wire_kind re,
    const char *code, uint64_t cid)
{
	struct wire_msg m;

	wire_init(&m, WK_ERR, ME, code, L1_UUID);
	wire_add(&m, "code", code);
	wire_add(&m, "re", wire_kind_name(re));
	if (cid != NO_CID)
		wire_add_u64(&m, "cid", cid);
	feed(c, now, &m, addr);
}

static void
deliver_text(struct client *c, int64_t now, const char *dest, const char *from,
    uint64_t id, uint64_t seq, const char *text)
{
	struct wire_msg m;

	wire_init(&m, WK_MSG, dest, text, from);
	wire_add_u64(&m, "id", id);
	wire_add_u64(&m, "seq", seq);
	feed(c, now, &m, L1_ADDR);
}

static void
deliver(struct client *c, int64_t now, const char *dest, const char *from,
    uint64_t id, uint64_t seq)
{
	deliver_text(c, now, dest, from, id, seq, "hello");
}

static void
tick(struct client *c, int64_t now)
{
	client_tick(c, now);
	collect(c);
}

static struct client_cfg
cfg_test(void)
{
	struct client_cfg cfg;

	client_cfg_defaults(&cfg);
	cfg.collect_ms = 0; /* the first answer decides: one server */
	return cfg;
}

/*
 * A client logged in to leader 1 (at addr, epoch) at time 0, the relay
 * knowing cid_hi.
 */
static void
online_in_epoch(
    struct client *c, const char *addr, uint64_t cid_hi, uint64_t epoch)
{
	struct client_cfg cfg = cfg_test();

	assert_int_equal(client_init(c, &cfg, ME), 0);
	client_start(c, 0);
	collect(c);
	assert_int_equal(count_sent(WK_WHERE), 1);
	assert_true(seen.discovery[0]);
	answer_where(c, 0, epoch, L1_UUID, addr);
	assert_non_null(sent(WK_LOGIN, 0));
	answer_ok(c, 0, addr, WK_LOGIN, cid_hi, 0);
	assert_int_equal(c->state, CS_ONLINE);
	assert_non_null(event(CE_READY, 0));
}

static void
online_at(struct client *c, const char *addr, uint64_t cid_hi)
{
	online_in_epoch(c, addr, cid_hi, 1);
}

/* Time passes with every keepalive answered, up to `until`. */
static void
keep_alive(struct client *c, int64_t from, int64_t until)
{
	int64_t t;

	for (t = from; t <= until; t += 100) {
		tick(c, t);
		if (count_sent(WK_ALIVE) > 0)
			answer_ok(c, t, L1_ADDR, WK_ALIVE, NO_CID, 0);
	}
}

/* err code=renamed naming our new name, sent from addr. */
static void
renamed_from(struct client *c, int64_t now, const char *to, const char *addr)
{
	struct wire_msg m;

	wire_init(&m, WK_ERR, to, "renamed", L1_UUID);
	wire_add(&m, "code", "renamed");
	wire_add(&m, "re", "newu");
	wire_add(&m, "name", "alice~2");
	feed(c, now, &m, addr);
}

/*
 * After a partition's heal the leader says our name is now alice~2
 * (docs/RELAY.md, "Merge"): we log in again under it, to that leader.
 * From another address, or with no session to rename (searching,
 * logging out), it is nobody's word and changes nothing.
 */
static void
renamed_should_be_taken_only_from_our_leader_in_a_session(void **state)
{
	struct client c;

	(void)state;
	/* Searching: no leader yet, nobody to log in to. */
	{
		struct client_cfg cfg = cfg_test();

		assert_int_equal(client_init(&c, &cfg, ME), 0);
	}
	client_start(&c, 0);
	collect(&c);
	renamed_from(&c, 1, ME, L1_ADDR);
	assert_int_equal(seen.nsends + seen.nev, 0);
	assert_int_equal(c.state, CS_SEARCHING);
	assert_string_equal(c.user, ME);
	client_free(&c);

	/*
	 * Online, from another server (the leader that merged our side
	 * after a partition): the new name, and a search for the leader.
	 */
	online_at(&c, L1_ADDR, 0);
	renamed_from(&c, 1, ME, L2_ADDR);
	assert_string_equal(c.user, "alice~2");
	assert_string_equal(event(CE_ERROR, 0)->code, "renamed");
	assert_int_equal(c.state, CS_SEARCHING);
	assert_non_null(sent(WK_WHERE, 0));
	client_free(&c);
	/* From our leader: the new name, and a login there. */
	online_at(&c, L1_ADDR, 0);
	renamed_from(&c, 2, ME, L1_ADDR);
	assert_string_equal(c.user, "alice~2");
	assert_string_equal(event(CE_ERROR, 0)->code, "renamed");
	assert_int_equal(count_events(CE_LEADER), 0);
	assert_int_equal(c.state, CS_LOGIN);
	assert_non_null(sent(WK_LOGIN, 0));
	assert_string_equal(sent(WK_LOGIN, 0)->from, "alice~2");
	assert_string_equal(seen.addr[0], L1_ADDR);
	{
		struct wire_msg m;

		wire_init(&m, WK_OK, "alice~2", "", L1_UUID);
		wire_add(&m, "re", "login");
		feed(&c, 3, &m, L1_ADDR);
	}
	assert_int_equal(c.state, CS_ONLINE);
	/* Logging out: nothing to rename. */
	client_quit(&c, 4, 5000);
	collect(&c);
	assert_int_equal(c.state, CS_LOGOUT);
	renamed_from(&c, 5, "alice~2", L1_ADDR);
	assert_int_equal(seen.nsends + seen.nev, 0);
	assert_string_equal(c.user, "alice~2");
	assert_int_equal(c.state, CS_LOGOUT);
	client_free(&c);
}

/* ---- de-duplication -------------------------------------------------- */

static void
delivery_should_be_acked_every_time_and_shown_once_per_id(void **state)
{
	struct client c;
	uint64_t id = 0;

	(void)state;
	online_at(&c, L1_ADDR, 0);
	deliver(&c, 10, "#lobby", "bob", 5, 1);
	assert_int_equal(count_events(CE_MESSAGE), 1);
	assert_int_equal(count_sent(WK_ACK), 1);
	assert_int_equal(wire_get_u64(sent(WK_ACK, 0), "id", &id), 0);
	assert_int_equal(id, 5);
	assert_string_equal(seen.addr[0], L1_ADDR);
	/* Our ack was lost: the same delivery again is acknowledged, not
	 * shown, and again after later ones of the stream. */
	deliver(&c, 20, "#lobby", "bob", 5, 1);
	assert_int_equal(count_events(CE_MESSAGE), 0);
	assert_int_equal(count_sent(WK_ACK), 1);
	deliver(&c, 25, "#lobby", "bob", 6, 2);
	assert_int_equal(count_events(CE_MESSAGE), 1);
	deliver(&c, 30, "#lobby", "bob", 5, 1);
	assert_int_equal(count_events(CE_MESSAGE), 0);
	assert_int_equal(count_sent(WK_ACK), 1);
	assert_int_equal(c.duplicates, 2);
	assert_int_equal(c.delivered, 2);
	client_free(&c);
}

/*
 * After a partition heals, the winning side's messages reach the other
 * side's users with ids that side has used too: same or lower ids than
 * those shown, other senders or texts.  They are new.
 */
static void
dedup_should_show_another_lineages_message_with_an_id_already_used(void **state)
{
	struct client c;
	const struct client_out *o;

	(void)state;
	online_at(&c, L1_ADDR, 0);
	deliver_text(&c, 10, "#lobby", "alice", 1, 1, "before");
	deliver_text(&c, 11, "#lobby", "alice", 2, 2, "a0");
	deliver_text(&c, 12, "#lobby", "alice", 3, 3, "a1");
	assert_int_equal(count_events(CE_MESSAGE), 1);
	/* The same id, another sender and text: shown. */
	deliver_text(&c, 20, "#lobby", "bob", 2, 2, "b0");
	assert_int_equal(count_events(CE_MESSAGE), 1);
	o = event(CE_MESSAGE, 0);
	assert_int_equal(o->id, 2);
	assert_string_equal(o->from, "bob");
	assert_string_equal(seen.text[0], "b0");
	/* The same id and sender, another text: shown. */
	deliver_text(&c, 21, "#lobby", "alice", 3, 3, "a1 on the other side");
	assert_int_equal(count_events(CE_MESSAGE), 1);
	/* The same id and text, another sender: shown. */
	deliver_text(&c, 22, "#lobby", "carol", 3, 3, "a1");
	assert_int_equal(count_events(CE_MESSAGE), 1);
	/* A message both sides had before the split: not shown again. */
	deliver_text(&c, 23, "#lobby", "alice", 1, 1, "before");
	assert_int_equal(count_events(CE_MESSAGE), 0);
	assert_int_equal(count_sent(WK_ACK), 1);
	/* Nor a repeat of the other side's message. */
	deliver_text(&c, 24, "#lobby", "bob", 2, 2, "b0");
	assert_int_equal(count_events(CE_MESSAGE), 0);
	assert_int_equal(c.delivered, 6);
	assert_int_equal(c.duplicates, 2);
	client_free(&c);
}

/*
 * A new leader sends again everything still queued for us, up to the
 * relay's queue of 128: the whole window is recognised, in any order.
 */
static void
dedup_should_recognise_a_whole_queue_sent_again(void **state)
{
	struct client c;
	char text[32];
	uint64_t i;

	(void)state;
	online_at(&c, L1_ADDR, 0);
	for (i = 1; i <= CLIENT_SEEN_MAX; i++) {
		snprintf(text, sizeof(text), "m%llu", (unsigned long long)i);
		deliver_text(&c, 10, "#lobby", "bob", 100 + i, i, text);
		assert_int_equal(count_events(CE_MESSAGE), 1);
	}
	for (i = CLIENT_SEEN_MAX; i >= 1; i--) {
		snprintf(text, sizeof(text), "m%llu", (unsigned long long)i);
		deliver_text(&c, 20, "#lobby", "bob", 100 + i, i, text);
		assert_int_equal(count_events(CE_MESSAGE), 0);
		assert_int_equal(count_sent(WK_ACK), 1);
	}
	assert_int_equal(c.duplicates, CLIENT_SEEN_MAX);
	client_free(&c);
}

/* Past CLIENT_STREAMS_MAX streams, the one quiet for longest is forgotten. */
static void
dedup_should_forget_the_stream_quiet_for_longest(void **state)
{
	struct client c;
	char room[32];
	int i;

	(void)state;
	online_at(&c, L1_ADDR, 0);
	deliver_text(&c, 1, "#first", "bob", 1, 1, "f1");
	for (i = 1; i < CLIENT_STREAMS_MAX; i++) {
		snprintf(room, sizeof(room), "#s%d", i);
		deliver_text(&c, 2, room, "bob", 10 + (uint64_t)i, 1, "x");
	}
	/* #first shows again: now #s1 is the quiet one */
	deliver_text(&c, 3, "#first", "bob", 5000, 2, "f2");
	assert_int_equal(count_events(CE_MESSAGE), 1);
	deliver_text(&c, 4, "#new", "bob", 5001, 1, "n");
	assert_int_equal(count_events(CE_MESSAGE), 1);
	deliver_text(&c, 5, "#first", "bob", 1, 1, "f1");
	assert_int_equal(count_events(CE_MESSAGE), 0);
	deliver_text(&c, 6, "#s2", "bob", 12, 1, "x");
	assert_int_equal(count_events(CE_MESSAGE), 0);
	deliver_text(&c, 7, "#s1", "bob", 11, 1, "x");
	assert_int_equal(count_events(CE_MESSAGE), 1);
	client_free(&c);
}

/*
 * The memory is bounded: a stream remembers its last CLIENT_SEEN_MAX
 * deliveries, so the one before them, were it sent again, would be shown
 * again (the relay never keeps that many for us), and the others still
 * are not.  Another stream's deliveries do not push a stream's out.
 */
static void
dedup_window_should_hold_the_last_seen_max_per_stream(void **state)
{
	struct client c;
	char text[32];
	uint64_t i;

	(void)state;
	online_at(&c, L1_ADDR, 0);
	deliver_text(&c, 5, "#quiet", "carol", 1, 1, "q");
	for (i = 1; i <= CLIENT_SEEN_MAX + 1; i++) {
		snprintf(text, sizeof(text), "m%llu", (unsigned long long)i);
		deliver_text(&c, 10, "#lobby", "bob", 1 + i, i, text);
		assert_int_equal(count_events(CE_MESSAGE), 1);
	}
	/* the oldest of #lobby is forgotten, the next one is not */
	deliver_text(&c, 20, "#lobby", "bob", 2, 1, "m1");
	assert_int_equal(count_events(CE_MESSAGE), 1);
	deliver_text(&c, 21, "#lobby", "bob", 4, 3, "m3");
	assert_int_equal(count_events(CE_MESSAGE), 0);
	/* #quiet still knows its one delivery */
	deliver_text(&c, 22, "#quiet", "carol", 1, 1, "q");
	assert_int_equal(count_events(CE_MESSAGE), 0);
	client_free(&c);
}

static void
dedup_should_remember_each_stream_apart(void **state)
{
	struct client c;
	const struct client_out *o;

	(void)state;
	online_at(&c, L1_ADDR, 0);
	deliver(&c, 10, "#lobby", "bob", 9, 3);
	/* Lower ids in other streams are new there. */
	deliver(&c, 11, "#random", "bob", 4, 1);
	assert_int_equal(count_events(CE_MESSAGE), 1);
	deliver(&c, 12, "*", "carol", 5, 1);
	assert_int_equal(count_events(CE_MESSAGE), 1);
	/* Direct messages: one stream per correspondent. */
	deliver(&c, 13, ME, "bob", 6, 1);
	assert_int_equal(count_events(CE_MESSAGE), 1);
	o = event(CE_MESSAGE, 0);
	assert_string_equal(o->from, "bob");
	assert_string_equal(o->to, ME);
	assert_int_equal(o->id, 6);
	assert_int_equal(o->seq, 1);
	assert_string_equal(seen.text[0], "hello");
	deliver(&c, 14, ME, "carol", 6, 1);
	assert_int_equal(count_events(CE_MESSAGE), 1);
	deliver(&c, 15, ME, "bob", 6, 1);
	assert_int_equal(count_events(CE_MESSAGE), 0);
	deliver(&c, 16, "#lobby", "bob", 10, 4);
	assert_int_equal(count_events(CE_MESSAGE), 1);
	client_free(&c);
}

static void
dedup_should_survive_a_failover(void **state)
{
	struct client c;
	int64_t t;

	(void)state;
	online_at(&c, L1_ADDR, 0);
	deliver(&c, 10, "#lobby", "bob", 7, 1);
	/* The leader dies before our ack reached the backups. */
	for (t = 100; c.state == CS_ONLINE && t < 10000; t += 100)
		tick(&c, t);
	assert_int_equal(c.state, CS_SEARCHING);
	answer_where(&c, t, 2, L2_UUID, L2_ADDR);
	answer_ok(&c, t, L2_ADDR, WK_LOGIN, 0, 0);
	/* The new leader sends the unacknowledged delivery again. */
	deliver(&c, t + 10, "#lobby", "bob", 7, 1);
	assert_int_equal(count_events(CE_MESSAGE), 0);
	assert_int_equal(count_sent(WK_ACK), 1);
	client_free(&c);
}

/* ---- resending ------------------------------------------------------- */

static void
message_should_be_resent_after_100_200_400_800_ms_with_the_same_cid(
    void **state)
{
	static const int64_t at[] = {100, 300, 700, 1500};
	struct client c;
	size_t i;

	(void)state;
	online_at(&c, L1_ADDR, 0);
	assert_int_equal(client_send(&c, 0, "bob", "hi"), 0);
	collect(&c);
	assert_int_equal(count_sent(WK_MSG), 1);
	assert_int_equal(cid_of(sent(WK_MSG, 0)), 1);
	assert_int_equal(event(CE_SENT, 0)->cid, 1);
	for (i = 0; i < sizeof(at) / sizeof(at[0]); i++) {
		tick(&c, at[i] - 1);
		assert_int_equal(count_sent(WK_MSG), 0);
		tick(&c, at[i]);
		assert_int_equal(count_sent(WK_MSG), 1);
		assert_int_equal(cid_of(sent(WK_MSG, 0)), 1);
		assert_string_equal(sent(WK_MSG, 0)->body, "hi");
		assert_string_equal(sent(WK_MSG, 0)->to, "bob");
	}
	assert_int_equal(c.resends, 4);
	/* The ok ends it: nothing more goes. */
	answer_ok(&c, 1600, L1_ADDR, WK_MSG, 1, 42);
	assert_int_equal(event(CE_ACKED, 0)->id, 42);
	assert_int_equal(event(CE_ACKED, 0)->cid, 1);
	assert_int_equal(client_unacked(&c), 0);
	tick(&c, 2600);
	assert_int_equal(count_sent(WK_MSG), 0);
	client_free(&c);
}

static void
resend_interval_should_stop_doubling_at_one_second(void **state)
{
	struct client c;
	struct client_cfg cfg = cfg_test();
	int64_t t, last = 0;
	int n = 0;

	(void)state;
	cfg.retries = 10;
	online_at(&c, L1_ADDR, 0);
	c.cfg.retries = cfg.retries;
	assert_int_equal(client_send(&c, 0, "bob", "hi"), 0);
	collect(&c);
	for (t = 10; t <= 6000; t += 10) {
		tick(&c, t);
		if (count_sent(WK_ALIVE) > 0)
			answer_ok(&c, t, L1_ADDR, WK_ALIVE, NO_CID, 0);
		if (count_sent(WK_MSG) == 0)
			continue;
		n++;
		if (n >= 5)
			assert_int_equal(t - last, 1000);
		last = t;
	}
	assert_true(n >= 7);
	client_free(&c);
}

static void
only_eight_messages_should_be_in_flight_within_the_relay_cid_window(
    void **state)
{
	struct client c;
	char body[16];
	int i;

	(void)state;
	online_at(&c, L1_ADDR, 0);
	for (i = 0; i < 20; i++) {
		snprintf(body, sizeof(body), "m%d", i);
		assert_int_equal(client_send(&c, 0, "bob", body), 0);
	}
	collect(&c);
	assert_int_equal(count_events(CE_SENT), 20);
	assert_int_equal(count_sent(WK_MSG), CLIENT_INFLIGHT_MAX);
	/* An ok for a later cid does not open the window... */
	answer_ok(&c, 10, L1_ADDR, WK_MSG, 5, 105);
	assert_int_equal(count_sent(WK_MSG), 0);
	/* ...the lowest one does: everything stays below 2 + 8. */
	answer_ok(&c, 10, L1_ADDR, WK_MSG, 1, 101);
	assert_int_equal(count_sent(WK_MSG), 1);
	assert_int_equal(cid_of(sent(WK_MSG, 0)), 9);
	answer_ok(&c, 10, L1_ADDR, WK_MSG, 2, 102);
	assert_int_equal(count_sent(WK_MSG), 1);
	assert_int_equal(cid_of(sent(WK_MSG, 0)), 10);
	assert_int_equal(client_unacked(&c), 17);
	client_free(&c);
}

static void
message_after_join_should_wait_for_the_join_answer(void **state)
{
	struct client c;

	(void)state;
	online_at(&c, L1_ADDR, 0);
	assert_int_equal(client_join(&c, 0, "#lobby"), 0);
	/* The room is current at once... */
	assert_string_equal(client_room(&c), "#lobby");
	assert_int_equal(client_say(&c, 0, "hi all"), 0);
	collect(&c);
	/* ...but the message goes only after the relay has us in it. */
	assert_int_equal(count_sent(WK_JOIN), 1);
	assert_int_equal(count_sent(WK_MSG), 0);
	answer_ok(&c, 5, L1_ADDR, WK_JOIN, NO_CID, 0);
	assert_string_equal(event(CE_JOINED, 0)->to, "#lobby");
	assert_int_equal(count_sent(WK_MSG), 1);
	assert_string_equal(sent(WK_MSG, 0)->to, "#lobby");
	/* And a part waits for the message before it. */
	assert_int_equal(client_part(&c, 6, NULL), 0);
	collect(&c);
	assert_null(client_room(&c));
	assert_int_equal(count_sent(WK_PART), 0);
	answer_ok(&c, 7, L1_ADDR, WK_MSG, 1, 1);
	assert_int_equal(count_sent(WK_PART), 1);
	client_free(&c);
}

/* ---- failover -------------------------------------------------------- */

static void
three_unanswered_keepalives_should_mean_the_leader_is_gone(void **state)
{
	struct client c;

	(void)state;
	online_at(&c, L1_ADDR, 0);
	tick(&c, 999);
	assert_int_equal(count_sent(WK_ALIVE), 0);
	tick(&c, 1000);
	assert_int_equal(count_sent(WK_ALIVE), 1);
	assert_string_equal(seen.addr[0], L1_ADDR);
	tick(&c, 2000);
	assert_int_equal(count_sent(WK_ALIVE), 1);
	tick(&c, 3000);
	assert_int_equal(count_sent(WK_ALIVE), 1);
	assert_int_equal(c.state, CS_ONLINE);
	tick(&c, 4000);
	assert_int_equal(count_sent(WK_ALIVE), 0);
	assert_int_equal(c.state, CS_SEARCHING);
	assert_non_null(event(CE_LOST, 0));
	assert_int_equal(count_sent(WK_WHERE), 1);
	assert_true(seen.discovery[0]);
	assert_int_equal(c.failovers, 1);
	client_free(&c);
}

static void
answered_keepalives_should_keep_the_leader(void **state)
{
	struct client c;

	(void)state;
	online_at(&c, L1_ADDR, 0);
	keep_alive(&c, 100, 20000);
	assert_int_equal(c.state, CS_ONLINE);
	assert_int_equal(c.failovers, 0);
	client_free(&c);
}

static void
message_unacknowledged_through_every_retry_should_mean_the_leader_is_gone(
    void **state)
{
	struct client c;

	(void)state;
	online_at(&c, L1_ADDR, 0);
	assert_int_equal(client_send(&c, 0, "bob", "hi"), 0);
	collect(&c);
	/* Keepalives are answered (say, by a half-dead leader)... */
	keep_alive(&c, 100, 2400);
	assert_int_equal(c.state, CS_ONLINE);
	/* ...but the fifth send (at 1500) goes unanswered through 2500. */
	tick(&c, 2500);
	assert_int_equal(c.state, CS_SEARCHING);
	assert_non_null(event(CE_LOST, 0));
	assert_non_null(strstr(seen.text[0], "message 1 not answered"));
	client_free(&c);
}

static void
unacked_messages_should_go_to_the_new_leader_with_the_same_cids(void **state)
{
	struct client c;
	const struct client_out *o;
	int64_t t;

	(void)state;
	online_at(&c, L1_ADDR, 0);
	assert_int_equal(client_send(&c, 0, "bob", "one"), 0);
	assert_int_equal(client_send(&c, 0, "bob", "two"), 0);
	assert_int_equal(client_send(&c, 0, "#lobby", "three"), 0);
	collect(&c);
	answer_ok(&c, 5, L1_ADDR, WK_MSG, 1, 11);
	/* The leader dies; two messages were never acknowledged. */
	for (t = 100; c.state == CS_ONLINE; t += 100)
		tick(&c, t);
	assert_int_equal(count_sent(WK_MSG), 0);
	answer_where(&c, t, 2, L2_UUID, L2_ADDR);
	assert_non_null(event(CE_LEADER, 0));
	assert_int_equal(count_sent(WK_LOGIN), 1);
	assert_string_equal(seen.addr[0], L2_ADDR);
	/* The relay had accepted cid 2 (its ok was lost with the leader). */
	answer_ok(&c, t + 1, L2_ADDR, WK_LOGIN, 2, 0);
	o = event(CE_RECONNECTED, 0);
	assert_non_null(o);
	assert_int_equal(o->n, 2);
	assert_string_equal(o->leader.addr, L2_ADDR);
	assert_int_equal(count_sent(WK_MSG), 2);
	assert_int_equal(cid_of(sent(WK_MSG, 0)), 2);
	assert_string_equal(sent(WK_MSG, 0)->body, "two");
	assert_int_equal(cid_of(sent(WK_MSG, 1)), 3);
	assert_string_equal(sent(WK_MSG, 1)->to, "#lobby");
	assert_string_equal(seen.addr[1], L2_ADDR);
	/* New messages continue above every cid used. */
	assert_int_equal(client_send(&c, t + 2, "bob", "four"), 0);
	collect(&c);
	assert_int_equal(cid_of(sent(WK_MSG, 0)), 4);
	client_free(&c);
}

static void
messages_given_during_a_failover_should_wait_for_the_new_leader(void **state)
{
	struct client c;
	int64_t t;

	(void)state;
	online_at(&c, L1_ADDR, 0);
	for (t = 100; c.state == CS_ONLINE; t += 100)
		tick(&c, t);
	assert_int_equal(client_send(&c, t, "bob", "while away"), 0);
	collect(&c);
	assert_int_equal(count_events(CE_SENT), 1);
	assert_int_equal(count_sent(WK_MSG), 0);
	answer_where(&c, t, 2, L2_UUID, L2_ADDR);
	answer_ok(&c, t, L2_ADDR, WK_LOGIN, 0, 0);
	assert_int_equal(count_sent(WK_MSG), 1);
	assert_string_equal(seen.addr[0], L2_ADDR);
	client_free(&c);
}

static void
login_answer_cid_should_set_where_new_cids_start(void **state)
{
	struct client c;

	(void)state;
	online_at(&c, L1_ADDR, 41);
	assert_int_equal(client_send(&c, 0, "bob", "hi"), 0);
	collect(&c);
	assert_int_equal(cid_of(sent(WK_MSG, 0)), 42);
	client_free(&c);
}

static void
search_should_go_to_the_newest_epoch_and_uuid(void **state)
{
	struct client c;
	struct client_cfg cfg;

	(void)state;
	client_cfg_defaults(&cfg); /* collects for 200 ms */
	assert_int_equal(client_init(&c, &cfg, ME), 0);
	client_start(&c, 0);
	collect(&c);
	answer_where(&c, 10, 5, L2_UUID, L2_ADDR);
	answer_where(&c, 20, 3, L3_UUID, L1_ADDR);
	answer_where(&c, 30, 5, L1_UUID, L1_ADDR);
	assert_int_equal(count_sent(WK_LOGIN), 0);
	tick(&c, 209);
	assert_int_equal(count_sent(WK_LOGIN), 0);
	tick(&c, 210);
	assert_int_equal(count_sent(WK_LOGIN), 1);
	assert_string_equal(seen.addr[0], L2_ADDR);
	assert_int_equal(event(CE_LEADER, 0)->leader.epoch, 5);
	client_free(&c);
}

static void
servers_naming_the_dead_leader_should_be_asked_to_vote(void **state)
{
	struct client c;
	int64_t t;

	(void)state;
	online_at(&c, L1_ADDR, 0);
	for (t = 100; c.state == CS_ONLINE; t += 100)
		tick(&c, t);
	/* The servers have not noticed yet: they still name it. */
	answer_where(&c, t, 1, L1_UUID, L1_ADDR);
	assert_int_equal(count_sent(WK_LOGIN), 0);
	assert_int_equal(count_sent(WK_VOTE), 1);
	assert_true(seen.discovery[0]);
	/* Not more than one vote a second. */
	answer_where(&c, t + 50, 1, L1_UUID, L1_ADDR);
	assert_int_equal(count_sent(WK_VOTE), 0);
	/* The election's result: the same server, a newer epoch, is fine. */
	answer_where(&c, t + 100, 2, L1_UUID, L1_ADDR);
	assert_int_equal(count_sent(WK_LOGIN), 1);
	client_free(&c);
}

static void
not_leader_with_a_hint_should_take_the_login_to_the_named_leader(void **state)
{
	struct client c;
	struct client_cfg cfg = cfg_test();
	struct wire_msg m;

	(void)state;
	assert_int_equal(client_init(&c, &cfg, ME), 0);
	client_start(&c, 0);
	answer_where(&c, 0, 1, L1_UUID, L1_ADDR);
	wire_init(&m, WK_ERR, ME, "not_leader", L1_UUID);
	wire_add(&m, "code", "not_leader");
	wire_add(&m, "re", "login");
	wire_add(&m, "leader", L2_UUID);
	wire_add(&m, "addr", L2_ADDR);
	wire_add_u64(&m, "port", L_PORT);
	feed(&c, 5, &m, L1_ADDR);
	assert_int_equal(count_sent(WK_LOGIN), 1);
	assert_string_equal(seen.addr[0], L2_ADDR);
	/* Without a hint: ask where again. */
	answer_err(&c, 6, L2_ADDR, WK_LOGIN, "not_leader", NO_CID);
	assert_int_equal(c.state, CS_SEARCHING);
	assert_int_equal(count_sent(WK_WHERE), 1);
	client_free(&c);
}

static void
late_answers_from_an_old_leader_should_not_move_the_session(void **state)
{
	struct client c;

	(void)state;
	online_at(&c, L1_ADDR, 0);
	answer_err(&c, 5, L2_ADDR, WK_ALIVE, "not_leader", NO_CID);
	answer_err(&c, 5, L2_ADDR, WK_ALIVE, "not_logged_in", NO_CID);
	assert_int_equal(c.state, CS_ONLINE);
	assert_int_equal(seen.nsends, 0);
	client_free(&c);
}

/* ---- takeover: a new leader says it leads ----------------------------- */

static void
takeover_should_log_in_there_at_once_and_resend_with_the_same_cids(void **state)
{
	struct client c;
	const struct client_out *o;

	(void)state;
	online_at(&c, L1_ADDR, 0);
	assert_int_equal(client_send(&c, 0, "bob", "one"), 0);
	assert_int_equal(client_send(&c, 0, "bob", "two"), 0);
	assert_int_equal(client_send(&c, 0, "#lobby", "three"), 0);
	collect(&c);
	answer_ok(&c, 5, L1_ADDR, WK_MSG, 1, 11);
	/* Leader 1 died; the new one says so long before our resends end. */
	takeover(&c, 90, 2, L2_UUID, L2_ADDR);
	assert_int_equal(c.state, CS_LOGIN);
	assert_int_equal(c.failovers, 1);
	o = event(CE_LOST, 0);
	assert_non_null(o);
	assert_string_equal(o->leader.addr, L1_ADDR);
	assert_non_null(strstr(seen.text[0], "took over at epoch 2"));
	o = event(CE_LEADER, 0);
	assert_non_null(o);
	assert_int_equal(o->leader.epoch, 2);
	assert_string_equal(o->leader.addr, L2_ADDR);
	/* No search: the login goes straight there, and nothing else. */
	assert_int_equal(seen.nsends, 1);
	assert_int_equal(count_sent(WK_LOGIN), 1);
	assert_string_equal(seen.addr[0], L2_ADDR);
	/* The relay had accepted cid 2 (its ok was lost with the leader). */
	answer_ok(&c, 95, L2_ADDR, WK_LOGIN, 2, 0);
	o = event(CE_RECONNECTED, 0);
	assert_non_null(o);
	assert_int_equal(o->n, 2);
	assert_string_equal(o->leader.addr, L2_ADDR);
	assert_int_equal(count_sent(WK_MSG), 2);
	assert_int_equal(cid_of(sent(WK_MSG, 0)), 2);
	assert_string_equal(sent(WK_MSG, 0)->body, "two");
	assert_int_equal(cid_of(sent(WK_MSG, 1)), 3);
	assert_string_equal(sent(WK_MSG, 1)->body, "three");
	assert_string_equal(seen.addr[0], L2_ADDR);
	assert_string_equal(seen.addr[1], L2_ADDR);
	/* Its repeats (against loss) change nothing. */
	takeover(&c, 190, 2, L2_UUID, L2_ADDR);
	assert_int_equal(seen.nsends + seen.nev, 0);
	answer_ok(&c, 200, L2_ADDR, WK_MSG, 2, 12);
	answer_ok(&c, 200, L2_ADDR, WK_MSG, 3, 13);
	assert_int_equal(client_unacked(&c), 0);
	assert_int_equal(c.acked, 3);
	assert_int_equal(c.failovers, 1);
	/* New messages continue above every cid used. */
	assert_int_equal(client_send(&c, 300, "bob", "four"), 0);
	collect(&c);
	assert_int_equal(cid_of(sent(WK_MSG, 0)), 4);
	client_free(&c);
}

static void
takeover_while_logging_in_should_take_the_login_there(void **state)
{
	struct client c;
	struct client_cfg cfg = cfg_test();

	(void)state;
	assert_int_equal(client_init(&c, &cfg, ME), 0);
	client_start(&c, 0);
	answer_where(&c, 0, 1, L1_UUID, L1_ADDR);
	assert_int_equal(c.state, CS_LOGIN);
	takeover(&c, 50, 2, L2_UUID, L2_ADDR);
	assert_int_equal(c.state, CS_LOGIN);
	assert_int_equal(count_sent(WK_LOGIN), 1);
	assert_string_equal(seen.addr[0], L2_ADDR);
	answer_ok(&c, 60, L2_ADDR, WK_LOGIN, 0, 0);
	assert_int_equal(c.state, CS_ONLINE);
	assert_non_null(event(CE_READY, 0));
	assert_string_equal(c.leader.addr, L2_ADDR);
	client_free(&c);
}

/* Nothing but a newer epoch from another leader, from its own address. */
static void
takeover_should_ignore_older_same_malformed_or_misaddressed_words(void **state)
{
	struct client c;
	struct wire_msg m;
	int i;

	(void)state;
	online_in_epoch(&c, L1_ADDR, 0, 5);
	assert_int_equal(client_send(&c, 0, "bob", "hi"), 0);
	collect(&c);
	takeover(&c, 1, 4, L2_UUID, L2_ADDR); /* older */
	assert_int_equal(seen.nsends + seen.nev, 0);
	takeover(&c, 2, 5, L2_UUID, L2_ADDR); /* the same epoch */
	assert_int_equal(seen.nsends + seen.nev, 0);
	takeover(&c, 3, 6, L1_UUID, L1_ADDR); /* the leader we follow */
	assert_int_equal(seen.nsends + seen.nev, 0);
	/* From another address than the one it names. */
	leader_from(&c, 4, 6, L2_UUID, L2_ADDR, L1_ADDR);
	assert_int_equal(seen.nsends + seen.nev, 0);
	/* To someone else, or to everyone. */
	for (i = 0; i < 2; i++) {
		wire_init(&m, WK_LEADER, i == 0 ? "bob" : "*", "srv", L2_UUID);
		wire_add_u64(&m, "epoch", 6);
		wire_add(&m, "leader", L2_UUID);
		wire_add(&m, "addr", L2_ADDR);
		wire_add_u64(&m, "port", L_PORT);
		feed(&c, 5, &m, L2_ADDR);
		assert_int_equal(seen.nsends + seen.nev, 0);
	}
	/* Malformed: each lacks or spoils one field. */
	for (i = 0; i < 7; i++) {
		wire_init(&m, WK_LEADER, ME, "srv", L2_UUID);
		if (i != 0)
			wire_add(&m, "epoch", i == 1 ? "6x" : "6");
		if (i != 2)
			wire_add(&m, "leader", i == 3 ? "not-a-uuid" : L2_UUID);
		if (i != 4)
			wire_add(&m, "addr", i == 5 ? "10.0.0.256" : L2_ADDR);
		wire_add(&m, "port", i == 6 ? "0" : "45961");
		feed(&c, 6, &m, L2_ADDR);
		assert_int_equal(seen.nsends + seen.nev, 0);
	}
	assert_int_equal(c.state, CS_ONLINE);
	assert_string_equal(c.leader.addr, L1_ADDR);
	assert_int_equal(c.leader.epoch, 5);
	assert_int_equal(c.failovers, 0);
	/* Logging out: nobody to move to. */
	answer_ok(&c, 7, L1_ADDR, WK_MSG, 1, 1);
	client_quit(&c, 8, 5000);
	collect(&c);
	assert_int_equal(c.state, CS_LOGOUT);
	takeover(&c, 9, 6, L2_UUID, L2_ADDR);
	assert_int_equal(seen.nsends + seen.nev, 0);
	assert_int_equal(c.state, CS_LOGOUT);
	client_free(&c);
}

/*
 * Anyone can send one (until issue 8): a rogue naming itself with a huge
 * epoch, that then says nothing, costs the login's resends and a search;
 * the session comes back to the real leader with the same cids, and a
 * real takeover still works after it (the epoch is not poisoned).
 */
static void
forged_takeover_nobody_answers_should_end_in_the_normal_failover(void **state)
{
	static const char *rogue = "10.0.0.66";
	struct client c;
	int64_t t;
	size_t i;

	(void)state;
	online_at(&c, L1_ADDR, 0);
	assert_int_equal(client_send(&c, 0, "bob", "one"), 0);
	assert_int_equal(client_send(&c, 0, "bob", "two"), 0);
	collect(&c);
	takeover(&c, 10, UINT64_MAX, L3_UUID, rogue);
	assert_int_equal(c.state, CS_LOGIN);
	assert_int_equal(count_sent(WK_LOGIN), 1);
	assert_string_equal(seen.addr[0], rogue);
	/* Only logins go to it, never a message; then it is given up. */
	for (t = 20; c.state == CS_LOGIN && t < 10000; t += 10) {
		tick(&c, t);
		assert_int_equal(count_sent(WK_MSG), 0);
		for (i = 0; i < seen.nsends; i++)
			if (seen.sends[i].kind == WK_LOGIN)
				assert_string_equal(seen.addr[i], rogue);
	}
	assert_int_equal(c.state, CS_SEARCHING);
	assert_true(t < 2600);
	assert_non_null(event(CE_LOST, 0));
	assert_int_equal(count_sent(WK_WHERE), 1);
	/* The servers name leader 1, alive all along. */
	answer_where(&c, t, 1, L1_UUID, L1_ADDR);
	assert_int_equal(count_sent(WK_LOGIN), 1);
	assert_string_equal(seen.addr[0], L1_ADDR);
	answer_ok(&c, t + 1, L1_ADDR, WK_LOGIN, 0, 0);
	assert_non_null(event(CE_RECONNECTED, 0));
	assert_int_equal(count_sent(WK_MSG), 2);
	assert_int_equal(cid_of(sent(WK_MSG, 0)), 1);
	assert_int_equal(cid_of(sent(WK_MSG, 1)), 2);
	assert_int_equal(c.leader.epoch, 1);
	answer_ok(&c, t + 2, L1_ADDR, WK_MSG, 1, 11);
	answer_ok(&c, t + 2, L1_ADDR, WK_MSG, 2, 12);
	assert_int_equal(client_unacked(&c), 0);
	assert_int_equal(c.acked, 2);
	/* A real takeover afterwards is followed. */
	takeover(&c, t + 3, 2, L2_UUID, L2_ADDR);
	assert_int_equal(count_sent(WK_LOGIN), 1);
	assert_string_equal(seen.addr[0], L2_ADDR);
	client_free(&c);
}

/* ---- log-in ---------------------------------------------------------- */

static void
unknown_user_should_register_then_log_in(void **state)
{
	struct client c;
	struct client_cfg cfg = cfg_test();

	(void)state;
	assert_int_equal(client_init(&c, &cfg, ME), 0);
	client_start(&c, 0);
	answer_where(&c, 0, 1, L1_UUID, L1_ADDR);
	answer_err(&c, 1, L1_ADDR, WK_LOGIN, "unknown_user", NO_CID);
	assert_int_equal(count_sent(WK_NEWU), 1);
	assert_string_equal(sent(WK_NEWU, 0)->from, ME);
	answer_ok(&c, 2, L1_ADDR, WK_NEWU, NO_CID, 0);
	assert_int_equal(count_sent(WK_LOGIN), 1);
	answer_ok(&c, 3, L1_ADDR, WK_LOGIN, 0, 0);
	assert_non_null(event(CE_READY, 0));
	client_free(&c);
}

static void
name_taken_should_end_the_session_with_a_fatal_error(void **state)
{
	struct client c;
	struct client_cfg cfg = cfg_test();
	const struct client_out *o;

	(void)state;
	assert_int_equal(client_init(&c, &cfg, ME), 0);
	client_start(&c, 0);
	answer_where(&c, 0, 1, L1_UUID, L1_ADDR);
	answer_err(&c, 1, L1_ADDR, WK_LOGIN, "unknown_user", NO_CID);
	answer_err(&c, 2, L1_ADDR, WK_NEWU, "name_taken", NO_CID);
	o = event(CE_ERROR, 0);
	assert_non_null(o);
	assert_true(o->fatal);
	assert_string_equal(o->code, "name_taken");
	assert_int_equal(c.state, CS_DONE);
	assert_int_equal(client_next_deadline(&c), INT64_MAX);
	client_free(&c);
}

static void
a_server_without_the_relay_should_be_a_fatal_error(void **state)
{
	struct client c;
	struct client_cfg cfg = cfg_test();
	struct wire_msg m;

	(void)state;
	assert_int_equal(client_init(&c, &cfg, ME), 0);
	client_start(&c, 0);
	answer_where(&c, 0, 1, L1_UUID, L1_ADDR);
	/* What a server answered before the relay: no re=. */
	wire_init(
	    &m, WK_ERR, ME, "this server does not relay chat yet", L1_UUID);
	wire_add(&m, "code", "unsupported");
	feed(&c, 1, &m, L1_ADDR);
	assert_true(event(CE_ERROR, 0)->fatal);
	assert_string_equal(
	    seen.text[0], "this server does not relay chat yet");
	assert_int_equal(c.state, CS_DONE);
	client_free(&c);
}

static void
no_answer_should_be_reported_after_search_ms_and_where_repeated(void **state)
{
	struct client c;
	struct client_cfg cfg = cfg_test();
	int64_t t, gaps[16];
	size_t n = 0;

	(void)state;
	cfg.search_ms = 3000;
	assert_int_equal(client_init(&c, &cfg, ME), 0);
	client_start(&c, 0);
	collect(&c);
	gaps[n++] = 0;
	for (t = 1; t <= 3000 && n < 16; t++) {
		tick(&c, t);
		if (count_sent(WK_WHERE) > 0)
			gaps[n++] = t;
		if (t < 3000)
			assert_int_equal(count_events(CE_NO_SERVER), 0);
	}
	assert_int_equal(count_events(CE_NO_SERVER), 1);
	/* 50, 100, 200, 400, 800, then every second. */
	assert_true(n >= 7);
	assert_int_equal(gaps[1], 50);
	assert_int_equal(gaps[2], 150);
	assert_int_equal(gaps[3], 350);
	assert_int_equal(gaps[6], 2550);
	/* Said once; it keeps looking and connects when a server comes. */
	tick(&c, 9000);
	assert_int_equal(count_events(CE_NO_SERVER), 0);
	answer_where(&c, 9001, 1, L1_UUID, L1_ADDR);
	assert_int_equal(count_sent(WK_LOGIN), 1);
	client_free(&c);
}

/* ---- local checks ---------------------------------------------------- */

static void
body_over_1000_encoded_bytes_should_be_refused_before_sending(void **state)
{
	struct client c;
	char body[1400];
	size_t len;

	(void)state;
	online_at(&c, L1_ADDR, 0);
	memset(body, 'a', 1000);
	body[1000] = '\0';
	assert_null(client_body_check(body, &len));
	assert_int_equal(len, 1000);
	assert_int_equal(client_send(&c, 0, "bob", body), 0);
	collect(&c);
	assert_int_equal(count_sent(WK_MSG), 1);
	/* One more byte: refused here, whole; nothing is sent or cut. */
	body[1000] = 'a';
	body[1001] = '\0';
	assert_int_equal(client_send(&c, 0, "bob", body), -1);
	collect(&c);
	assert_int_equal(seen.nsends, 0);
	assert_string_equal(event(CE_ERROR, 0)->code, "too_long");
	assert_false(event(CE_ERROR, 0)->fatal);
	/* Escaped bytes count three: 334 '@' are 1002 bytes encoded. */
	memset(body, '@', 334);
	body[334] = '\0';
	assert_string_equal(client_body_check(body, &len), "too_long");
	assert_int_equal(len, 1002);
	body[333] = 'a';
	assert_null(client_body_check(body, &len));
	assert_int_equal(len, 1000);
	/* Multi-byte UTF-8 counts its bytes, raw. */
	assert_int_equal(client_encoded_len("h\xc3\xa9%\n"), 9);
	assert_int_equal(client_unacked(&c), 1);
	client_free(&c);
}

static void
empty_control_and_non_utf8_bodies_should_be_refused(void **state)
{
	struct client c;
	size_t len;

	(void)state;
	online_at(&c, L1_ADDR, 0);
	assert_string_equal(client_body_check("", &len), "bad_body");
	assert_string_equal(client_body_check("a\033[2J", &len), "bad_body");
	assert_null(client_body_check("tab\tand\nnewline", &len));
	assert_int_equal(client_send(&c, 0, "bob", "\xc3("), -1);
	collect(&c);
	assert_string_equal(event(CE_ERROR, 0)->code, "bad_body");
	assert_int_equal(seen.nsends, 0);
	assert_int_equal(
	    client_send(&c, 0, "#this-room-name-is-far-far-too-long", "hi"),
	    -1);
	collect(&c);
	assert_string_equal(event(CE_ERROR, 0)->code, "bad_room");
	client_free(&c);
}

static void
plain_text_without_a_room_should_be_an_error(void **state)
{
	struct client c;

	(void)state;
	online_at(&c, L1_ADDR, 0);
	assert_int_equal(client_say(&c, 0, "anyone?"), -1);
	collect(&c);
	assert_string_equal(event(CE_ERROR, 0)->code, "not_in_room");
	assert_string_equal(seen.text[0], "not in a room");
	assert_int_equal(seen.nsends, 0);
	client_free(&c);
}

/* ---- answers --------------------------------------------------------- */

static void
list_chunks_should_be_joined_in_part_order(void **state)
{
	struct client c;
	struct wire_msg m;
	static const char *const chunk[] = {"a b", "c", "d e"};
	static const int order[] = {2, 0, 2, 1};
	size_t i;

	(void)state;
	online_at(&c, L1_ADDR, 0);
	assert_int_equal(client_list(&c, 0, WK_USERS, NULL), 0);
	collect(&c);
	assert_int_equal(count_sent(WK_USERS), 1);
	for (i = 0; i < 4; i++) {
		wire_init(&m, WK_OK, ME, chunk[order[i]], L1_UUID);
		wire_add(&m, "re", "users");
		wire_add_u64(&m, "part", (uint64_t)order[i] + 1);
		wire_add_u64(&m, "parts", 3);
		feed(&c, 1, &m, L1_ADDR);
		assert_int_equal(count_events(CE_LIST), i == 3 ? 1 : 0);
	}
	assert_string_equal(seen.text[0], "a b c d e");
	assert_string_equal(event(CE_LIST, 0)->what, "users");
	client_free(&c);
}

static void
quit_should_wait_for_acks_then_log_out(void **state)
{
	struct client c;

	(void)state;
	online_at(&c, L1_ADDR, 0);
	assert_int_equal(client_send(&c, 0, "bob", "last words"), 0);
	client_quit(&c, 0, 5000);
	collect(&c);
	assert_int_equal(count_sent(WK_LOGOUT), 0);
	answer_ok(&c, 50, L1_ADDR, WK_MSG, 1, 9);
	assert_int_equal(count_sent(WK_LOGOUT), 1);
	answer_ok(&c, 60, L1_ADDR, WK_LOGOUT, NO_CID, 0);
	assert_non_null(event(CE_BYE, 0));
	assert_int_equal(c.state, CS_DONE);
	assert_int_equal(c.lost, 0);
	client_free(&c);
}

static void
quit_deadline_should_report_what_was_never_acknowledged(void **state)
{
	struct client c;
	int64_t t;

	(void)state;
	online_at(&c, L1_ADDR, 0);
	assert_int_equal(client_send(&c, 0, "bob", "lost"), 0);
	client_quit(&c, 0, 800);
	collect(&c);
	for (t = 100; t < 800; t += 100) {
		tick(&c, t);
		assert_int_equal(count_events(CE_ERROR), 0);
	}
	tick(&c, 800);
	assert_string_equal(event(CE_ERROR, 0)->code, "unacknowledged");
	assert_int_equal(count_sent(WK_LOGOUT), 1);
	assert_int_equal(c.lost, 1);
	client_free(&c);
}

/*
 * Past the quit deadline the logout goes; its resends are what is due
 * next, not the deadline behind us (a caller's loop would spin).
 */
static void
logout_after_the_quit_deadline_should_wait_for_its_resend(void **state)
{
	struct client c;
	int64_t next, t;

	(void)state;
	online_at(&c, L1_ADDR, 0);
	assert_int_equal(client_send(&c, 0, "bob", "lost"), 0);
	client_quit(&c, 0, 800);
	collect(&c);
	for (t = 100; t <= 800; t += 100)
		tick(&c, t);
	assert_int_equal(c.state, CS_LOGOUT);
	assert_int_equal(c.lost, 1);
	next = client_next_deadline(&c);
	assert_true(next > 800);
	/* and the logout unanswered ends the session, no tick wasted */
	for (t = 0; t < 20 && c.state != CS_DONE; t++) {
		next = client_next_deadline(&c);
		assert_true(next != INT64_MAX);
		tick(&c, next);
		assert_true(
		    c.state == CS_DONE || client_next_deadline(&c) > next);
	}
	assert_int_equal(c.state, CS_DONE);
	assert_non_null(event(CE_BYE, 0));
	assert_int_equal(client_next_deadline(&c), INT64_MAX);
	client_free(&c);
}

static void
deliveries_after_logout_should_be_left_for_the_next_session(void **state)
{
	struct client c;

	(void)state;
	online_at(&c, L1_ADDR, 0);
	client_quit(&c, 0, 5000);
	collect(&c);
	assert_int_equal(count_sent(WK_LOGOUT), 1);
	/* In flight when the relay took our logout: our ack would be late. */
	deliver(&c, 1, ME, "bob", 3, 1);
	assert_int_equal(seen.nsends + seen.nev, 0);
	answer_ok(&c, 2, L1_ADDR, WK_LOGOUT, NO_CID, 0);
	assert_non_null(event(CE_BYE, 0));
	deliver(&c, 3, ME, "bob", 3, 1);
	assert_int_equal(seen.nsends + seen.nev, 0);
	client_free(&c);
}

static void
hostile_datagrams_should_change_nothing(void **state)
{
	struct client c;
	struct wire_msg m;
	char junk[64];
	int i;

	(void)state;
	online_at(&c, L1_ADDR, 0);
	/* A delivery without id, with id 0, with an oversize destination. */
	wire_init(&m, WK_MSG, "#lobby", "x", "bob");
	feed(&c, 1, &m, L1_ADDR);
	wire_add_u64(&m, "id", 0);
	wire_add_u64(&m, "seq", 1);
	feed(&c, 1, &m, L1_ADDR);
	wire_init(
	    &m, WK_MSG, "#aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "x", "b");
	wire_add_u64(&m, "id", 3);
	wire_add_u64(&m, "seq", 1);
	feed(&c, 1, &m, L1_ADDR);
	assert_int_equal(seen.nsends + seen.nev, 0);
	/* Answers to nothing, a list of absurd size, a stray leader. */
	answer_ok(&c, 2, L1_ADDR, WK_MSG, 77, 1);
	answer_ok(&c, 2, L1_ADDR, WK_JOIN, NO_CID, 0);
	wire_init(&m, WK_OK, ME, "x", L1_UUID);
	wire_add(&m, "re", "users");
	wire_add(&m, "part", "1");
	wire_add(&m, "parts", "99999999999");
	feed(&c, 3, &m, L1_ADDR);
	leader_from(&c, 4, 99, L2_UUID, L2_ADDR, "10.0.0.66");
	wire_init(&m, WK_LEADER, ME, "x", L2_UUID);
	wire_add(&m, "leader", "not-a-uuid");
	wire_add(&m, "addr", "999.1.1.1");
	wire_add(&m, "port", "70000");
	feed(&c, 5, &m, L1_ADDR);
	/* Answers addressed to someone else. */
	wire_init(&m, WK_ERR, "mallory", "", L1_UUID);
	wire_add(&m, "code", "forged_sender");
	feed(&c, 6, &m, L1_ADDR);
	for (i = 0; i < 100; i++) {
		snprintf(junk, sizeof(junk), "%d", i * 7919);
		wire_init(&m, i % 2 ? WK_OK : WK_ERR, ME, junk, junk);
		wire_add(
		    &m, "re", wire_kind_name((enum wire_kind)(i % WK_COUNT)));
		wire_add(&m, "cid", junk);
		feed(&c, 7, &m, L2_ADDR);
	}
	assert_int_equal(c.state, CS_ONLINE);
	assert_string_equal(c.leader.addr, L1_ADDR);
	client_free(&c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(
		delivery_should_be_acked_every_time_and_shown_once_per_id),
	    cmocka_unit_test(dedup_should_remember_each_stream_apart),
	    cmocka_unit_test(dedup_should_survive_a_failover),
	    cmocka_unit_test(
		dedup_should_show_another_lineages_message_with_an_id_already_used),
	    cmocka_unit_test(dedup_should_recognise_a_whole_queue_sent_again),
	    cmocka_unit_test(dedup_should_forget_the_stream_quiet_for_longest),
	    cmocka_unit_test(
		dedup_window_should_hold_the_last_seen_max_per_stream),
	    cmocka_unit_test(
		message_should_be_resent_after_100_200_400_800_ms_with_the_same_cid),
	    cmocka_unit_test(
		resend_interval_should_stop_doubling_at_one_second),
	    cmocka_unit_test(
		only_eight_messages_should_be_in_flight_within_the_relay_cid_window),
	    cmocka_unit_test(
		message_after_join_should_wait_for_the_join_answer),
	    cmocka_unit_test(
		three_unanswered_keepalives_should_mean_the_leader_is_gone),
	    cmocka_unit_test(answered_keepalives_should_keep_the_leader),
	    cmocka_unit_test(
		message_unacknowledged_through_every_retry_should_mean_the_leader_is_gone),
	    cmocka_unit_test(
		unacked_messages_should_go_to_the_new_leader_with_the_same_cids),
	    cmocka_unit_test(
		messages_given_during_a_failover_should_wait_for_the_new_leader),
	    cmocka_unit_test(login_answer_cid_should_set_where_new_cids_start),
	    cmocka_unit_test(search_should_go_to_the_newest_epoch_and_uuid),
	    cmocka_unit_test(
		servers_naming_the_dead_leader_should_be_asked_to_vote),
	    cmocka_unit_test(
		not_leader_with_a_hint_should_take_the_login_to_the_named_leader),
	    cmocka_unit_test(
		late_answers_from_an_old_leader_should_not_move_the_session),
	    cmocka_unit_test(
		takeover_should_log_in_there_at_once_and_resend_with_the_same_cids),
	    cmocka_unit_test(
		takeover_while_logging_in_should_take_the_login_there),
	    cmocka_unit_test(
		takeover_should_ignore_older_same_malformed_or_misaddressed_words),
	    cmocka_unit_test(
		forged_takeover_nobody_answers_should_end_in_the_normal_failover),
	    cmocka_unit_test(unknown_user_should_register_then_log_in),
	    cmocka_unit_test(
		name_taken_should_end_the_session_with_a_fatal_error),
	    cmocka_unit_test(
		a_server_without_the_relay_should_be_a_fatal_error),
	    cmocka_unit_test(
		no_answer_should_be_reported_after_search_ms_and_where_repeated),
	    cmocka_unit_test(
		body_over_1000_encoded_bytes_should_be_refused_before_sending),
	    cmocka_unit_test(
		empty_control_and_non_utf8_bodies_should_be_refused),
	    cmocka_unit_test(plain_text_without_a_room_should_be_an_error),
	    cmocka_unit_test(list_chunks_should_be_joined_in_part_order),
	    cmocka_unit_test(quit_should_wait_for_acks_then_log_out),
	    cmocka_unit_test(
		quit_deadline_should_report_what_was_never_acknowledged),
	    cmocka_unit_test(
		logout_after_the_quit_deadline_should_wait_for_its_resend),
	    cmocka_unit_test(
		renamed_should_be_taken_only_from_our_leader_in_a_session),
	    cmocka_unit_test(
		deliveries_after_logout_should_be_left_for_the_next_session),
	    cmocka_unit_test(hostile_datagrams_should_change_nothing),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
