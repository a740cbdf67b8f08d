/* test_sess: unit tests for the leader's table of client sessions. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "auth.h"
#include "sess.h"
#include "wire.h"

/* 2026-11-21 08:00:00 UTC, and a monotonic clock far from zero. */
#define UNIX0 UINT64_C(1795248000000)
#define MONO0 INT64_C(1000000)

static struct auth_cluster cluster;

static int
setup(void **state)
{
	struct auth_key k;

	(void)state;
	memset(&k, 7, sizeof(k));
	return auth_cluster_init(&cluster, &k) == AUTH_OK ? 0 : -1;
}

/* A client's datagram carrying text, under epoch, at unix_ms. */
static size_t
client_seal(struct auth_session *c, uint64_t epoch, uint64_t unix_ms,
    const char *text, uint8_t *out)
{
	size_t len;

	sess_ctr_bump(c, unix_ms);
	assert_int_equal(auth_session_seal(
			     c, epoch, text, strlen(text), out, WIRE_MAX, &len),
	    AUTH_OK);
	return len;
}

static struct auth_session
new_client(void)
{
	struct auth_session c;

	assert_int_equal(auth_session_client(&c, cluster.kx_pk), AUTH_OK);
	return c;
}

static enum auth_err
server_open(struct sess_table *t, uint64_t epoch, uint64_t unix_ms, int64_t now,
    const uint8_t *d, size_t len, struct sess **e)
{
	char out[WIRE_MAX];
	size_t olen;

	return sess_open(t, &cluster, epoch, unix_ms, now, true, d, len, out,
	    sizeof(out), &olen, e);
}

static void
sessions_should_open_answer_and_find_by_address(void **state)
{
	struct auth_session c = new_client();
	struct sess_table t;
	struct sess *e, *again;
	uint8_t d[WIRE_MAX], r[WIRE_MAX];
	char out[WIRE_MAX];
	size_t len, olen, rlen;

	(void)state;
	assert_int_equal(sess_init(&t, 16), 0);
	len = client_seal(&c, 3, UNIX0, "login@@@alice", d);
	assert_int_equal(sess_open(&t, &cluster, 3, UNIX0, MONO0, true, d, len,
			     out, sizeof(out), &olen, &e),
	    AUTH_OK);
	assert_int_equal(olen, strlen("login@@@alice"));
	assert_memory_equal(out, "login@@@alice", olen);
	assert_int_equal(t.live, 1);
	sess_seen(&t, e, 0x0100007f, 5000, MONO0);
	assert_ptr_equal(sess_by_addr(&t, 0x0100007f, 5000), e);
	assert_null(sess_by_addr(&t, 0x0100007f, 5001));
	/* The answer, sealed by the server side, opens at the client. */
	sess_ctr_bump(&e->as, UNIX0);
	assert_int_equal(auth_session_seal(
			     &e->as, 3, "ok@alice@@s", 11, r, sizeof(r), &rlen),
	    AUTH_OK);
	assert_int_equal(
	    auth_session_open(&c, r, rlen, out, sizeof(out), &olen), AUTH_OK);
	/* A second datagram finds the same session: no new derivation. */
	len = client_seal(&c, 3, UNIX0 + 5, "alive@@@alice", d);
	assert_int_equal(sess_open(&t, &cluster, 3, UNIX0 + 5, MONO0 + 5, false,
			     d, len, out, sizeof(out), &olen, &again),
	    AUTH_OK);
	assert_ptr_equal(again, e);
	assert_int_equal(t.created, 1);
	sess_free(&t);
	auth_session_wipe(&c);
}

static void
forgeries_should_take_no_slot(void **state)
{
	struct auth_session c = new_client();
	struct sess_table t;
	struct sess *e;
	uint8_t d[WIRE_MAX];
	size_t len, i;

	(void)state;
	assert_int_equal(sess_init(&t, 16), 0);
	for (i = 0; i < 100; i++) {
		len = client_seal(&c, 1, UNIX0, "msg@bob@hi@alice", d);
		d[len - 1 - (i % 40)] ^= 1; /* tag or ciphertext */
		assert_int_equal(
		    server_open(&t, 1, UNIX0, MONO0, d, len, &e), AUTH_EBADMAC);
		assert_null(e);
	}
	assert_int_equal(t.live, 0);
	/* Truncated: malformed, before any work. */
	assert_int_equal(
	    server_open(&t, 1, UNIX0, MONO0, d, 50, &e), AUTH_EMALFORMED);
	/* No derivation allowed now: refused as busy, nothing kept. */
	len = client_seal(&c, 1, UNIX0, "msg@bob@hi@alice", d);
	{
		char out[WIRE_MAX];
		size_t olen;

		assert_int_equal(sess_open(&t, &cluster, 1, UNIX0, MONO0, false,
				     d, len, out, sizeof(out), &olen, &e),
		    AUTH_ETOOBIG);
	}
	assert_int_equal(t.live, 0);
	sess_free(&t);
	auth_session_wipe(&c);
}

static void
replays_should_be_refused_even_after_eviction(void **state)
{
	struct auth_session c = new_client();
	struct sess_table t;
	struct sess *e;
	uint8_t d[WIRE_MAX];
	size_t len;

	(void)state;
	assert_int_equal(sess_init(&t, 16), 0);
	len = client_seal(&c, 1, UNIX0, "msg@bob@hi@alice", d);
	assert_int_equal(server_open(&t, 1, UNIX0, MONO0, d, len, &e), AUTH_OK);
	assert_int_equal(
	    server_open(&t, 1, UNIX0, MONO0 + 1, d, len, &e), AUTH_EREPLAY);
	/* Idle long enough: dropped; the recording is older than the floor. */
	assert_int_equal(sess_expire(&t, MONO0 + SESS_IDLE_MS - 1), 0);
	assert_int_equal(sess_expire(&t, MONO0 + SESS_IDLE_MS), 1);
	assert_int_equal(t.live, 0);
	assert_int_equal(server_open(&t, 1, UNIX0 + SESS_IDLE_MS + 1000,
			     MONO0 + SESS_IDLE_MS + 1000, d, len, &e),
	    AUTH_ETOOOLD);
	assert_int_equal(t.live, 0);
	sess_free(&t);
	auth_session_wipe(&c);
}

static void
a_new_epoch_should_take_effect_only_once_authenticated(void **state)
{
	struct auth_session c = new_client();
	struct sess_table t;
	struct sess *e, *e2;
	uint8_t d[WIRE_MAX];
	size_t len;

	(void)state;
	assert_int_equal(sess_init(&t, 16), 0);
	len = client_seal(&c, 1, UNIX0, "alive@@@alice", d);
	assert_int_equal(server_open(&t, 1, UNIX0, MONO0, d, len, &e), AUTH_OK);
	/* The leader moved to epoch 2: an epoch-1 datagram is refused cheaply.
	 */
	len = client_seal(&c, 1, UNIX0, "alive@@@alice", d);
	assert_int_equal(
	    server_open(&t, 2, UNIX0, MONO0, d, len, &e2), AUTH_EEPOCH);
	assert_int_equal(e->epoch, 1);
	/* A forged epoch-2 datagram for this key does not move it. */
	len = client_seal(&c, 2, UNIX0, "alive@@@alice", d);
	d[len - 1] ^= 1;
	assert_int_equal(
	    server_open(&t, 2, UNIX0, MONO0, d, len, &e2), AUTH_EBADMAC);
	assert_int_equal(e->epoch, 1);
	len = client_seal(&c, 2, UNIX0, "alive@@@alice", d);
	assert_int_equal(
	    server_open(&t, 2, UNIX0, MONO0, d, len, &e2), AUTH_OK);
	assert_ptr_equal(e2, e);
	assert_int_equal(e->epoch, 2);
	assert_int_equal(t.live, 1);
	sess_free(&t);
	auth_session_wipe(&c);
}

static void
a_bound_session_should_seal_for_a_client_it_never_heard(void **state)
{
	struct auth_session c = new_client();
	struct sess_table t;
	struct sess *e;
	uint8_t r[WIRE_MAX];
	char out[WIRE_MAX];
	size_t rlen, olen;

	(void)state;
	assert_int_equal(sess_init(&t, 16), 0);
	/* A new leader knows the key from the replicated users only. */
	assert_int_equal(
	    sess_bind(&t, &cluster, c.client_pk, 9, UNIX0, MONO0, &e), AUTH_OK);
	sess_seen(&t, e, 0x0100007f, 6000, MONO0);
	sess_ctr_bump(&e->as, UNIX0);
	assert_int_equal(auth_session_seal(&e->as, 9, "leader@alice@s@s", 16, r,
			     sizeof(r), &rlen),
	    AUTH_OK);
	assert_int_equal(
	    auth_session_open(&c, r, rlen, out, sizeof(out), &olen), AUTH_OK);
	assert_int_equal(c.rx_epoch, 9);
	sess_free(&t);
	auth_session_wipe(&c);
}

static void
an_address_should_belong_to_one_session(void **state)
{
	struct auth_session a = new_client(), b = new_client();
	struct sess_table t;
	struct sess *ea, *eb;
	uint8_t d[WIRE_MAX];
	size_t len;

	(void)state;
	assert_int_equal(sess_init(&t, 16), 0);
	len = client_seal(&a, 1, UNIX0, "alive@@@alice", d);
	assert_int_equal(
	    server_open(&t, 1, UNIX0, MONO0, d, len, &ea), AUTH_OK);
	sess_seen(&t, ea, 0x0100007f, 7000, MONO0);
	/* A client restarted on the same port with a new key takes it. */
	len = client_seal(&b, 1, UNIX0, "alive@@@alice", d);
	assert_int_equal(
	    server_open(&t, 1, UNIX0, MONO0, d, len, &eb), AUTH_OK);
	sess_seen(&t, eb, 0x0100007f, 7000, MONO0);
	assert_ptr_equal(sess_by_addr(&t, 0x0100007f, 7000), eb);
	assert_false(ea->has_addr);
	/* And the first one moving elsewhere is found there. */
	sess_seen(&t, ea, 0x0200007f, 7000, MONO0);
	assert_ptr_equal(sess_by_addr(&t, 0x0200007f, 7000), ea);
	assert_ptr_equal(sess_by_addr(&t, 0x0100007f, 7000), eb);
	sess_free(&t);
	auth_session_wipe(&a);
	auth_session_wipe(&b);
}

static void
a_full_table_should_refuse_until_a_session_is_idle(void **state)
{
	struct auth_session c[4];
	struct sess_table t;
	struct sess *e;
	uint8_t d[WIRE_MAX];
	size_t len, i;

	(void)state;
	assert_int_equal(sess_init(&t, 3), 0);
	for (i = 0; i < 4; i++)
		c[i] = new_client();
	for (i = 0; i < 3; i++) {
		len = client_seal(&c[i], 1, UNIX0, "alive@@@u", d);
		assert_int_equal(
		    server_open(&t, 1, UNIX0, MONO0 + (int64_t)i, d, len, &e),
		    AUTH_OK);
	}
	len = client_seal(&c[3], 1, UNIX0, "alive@@@u", d);
	assert_int_equal(
	    server_open(&t, 1, UNIX0, MONO0 + 10, d, len, &e), AUTH_ETOOBIG);
	assert_int_equal(t.refused_full, 1);
	/* The oldest idle for SESS_IDLE_MS makes room. */
	len = client_seal(&c[3], 1, UNIX0 + SESS_IDLE_MS, "alive@@@u", d);
	assert_int_equal(server_open(&t, 1, UNIX0 + SESS_IDLE_MS,
			     MONO0 + SESS_IDLE_MS, d, len, &e),
	    AUTH_OK);
	assert_int_equal(t.live, 3);
	assert_null(sess_find(&t, c[0].client_pk));
	assert_non_null(sess_find(&t, c[3].client_pk));
	sess_free(&t);
	for (i = 0; i < 4; i++)
		auth_session_wipe(&c[i]);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(sessions_should_open_answer_and_find_by_address),
	    cmocka_unit_test(forgeries_should_take_no_slot),
	    cmocka_unit_test(replays_should_be_refused_even_after_eviction),
	    cmocka_unit_test(
		a_new_epoch_should_take_effect_only_once_authenticated),
	    cmocka_unit_test(
		a_bound_session_should_seal_for_a_client_it_never_heard),
	    cmocka_unit_test(an_address_should_belong_to_one_session),
	    cmocka_unit_test(
		a_full_table_should_refuse_until_a_session_is_idle),
	};

	return cmocka_run_group_tests(tests, setup, NULL);
}
