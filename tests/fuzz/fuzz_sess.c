/*
 * fuzz_sess: libFuzzer target for the leader's decoders of sealed input:
 * session datagrams through the session table (sess_open) and server
 * boxes (auth_s2s_unbox).  Raw input is opened as it comes; it is also
 * sealed by a real client, or boxed by a real server, then changed at one
 * place the input chooses, or replayed: nothing changed may open, nothing
 * unchanged may fail, and only an authenticated datagram takes a slot.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "sess.h"
#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

#define EPOCH	 5
#define UNIX0	 UINT64_C(1795248000000)
#define MAX_SESS 8

static struct auth_cluster cluster;
static struct auth_session client;
static struct sess_table table;
static bool ready;
static int64_t now = 1000000;
static uint8_t buf[WIRE_MAX], sealed[WIRE_MAX];
static char out[WIRE_MAX];

static void
fail(const char *what, enum auth_err e)
{
	fprintf(stderr, "fuzz_sess: %s: %s\n", what, auth_strerror(e));
	abort();
}

static void
setup(void)
{
	struct auth_key key;

	memset(key.k, 0x42, sizeof(key.k));
	if (auth_cluster_init(&cluster, &key) != AUTH_OK)
		fail("cluster", AUTH_EINIT);
	if (auth_session_client(&client, cluster.kx_pk) != AUTH_OK)
		fail("client", AUTH_EKX);
	if (sess_init(&table, MAX_SESS) == -1)
		fail("table", AUTH_ENOMEM);
	ready = true;
}

/* The table's invariants after any call. */
static void
check_table(void)
{
	size_t i, live = 0;

	for (i = 0; i < table.n; i++)
		if (table.s[i].used) {
			live++;
			if (sess_find(&table, table.s[i].pk) != &table.s[i])
				fail("a session not found by its key", AUTH_OK);
			if (table.s[i].has_addr &&
			    sess_by_addr(&table, table.s[i].ip,
				table.s[i].port) != &table.s[i])
				fail("a session not found by its address",
				    AUTH_OK);
		}
	if (live != table.live || live > MAX_SESS)
		fail("live count", AUTH_OK);
}

static void
fuzz_raw(const uint8_t *data, size_t size)
{
	size_t before = table.live, olen;
	struct sess *e;
	enum auth_err r;

	r = sess_open(&table, &cluster, EPOCH, UNIX0, now, true, data, size,
	    out, sizeof(out), &olen, &e);
	/* Nobody can forge the client's tag: raw input never opens. */
	if (r == AUTH_OK || table.live != before)
		fail("raw input opened a session", r);
	check_table();
}

static void
fuzz_sealed(const uint8_t *data, size_t size)
{
	size_t len, olen, at;
	uint8_t how;
	struct sess *e;
	enum auth_err r;

	if (size < 3)
		return;
	how = data[0];
	at = (size_t)data[1] << 8 | data[2];
	data += 3;
	size -= 3;
	if (how & 4) {
		/* Another client: the table fills with several keys. */
		auth_session_wipe(&client);
		if (auth_session_client(&client, cluster.kx_pk) != AUTH_OK)
			fail("client", AUTH_EKX);
	}
	sess_ctr_bump(&client, UNIX0);
	r = auth_session_seal(
	    &client, EPOCH, data, size, sealed, sizeof(sealed), &len);
	if (r != AUTH_OK) {
		if (r != AUTH_ETOOBIG ||
		    size <= WIRE_MAX - AUTH_SESSION_OVERHEAD)
			fail("seal", r);
		return;
	}
	memcpy(buf, sealed, len);
	if (how & 1) {
		buf[at % len] ^= (uint8_t)(how | 1); /* one byte changed */
		r = sess_open(&table, &cluster, EPOCH, UNIX0, now, true, buf,
		    len, out, sizeof(out), &olen, &e);
		if (r == AUTH_OK)
			fail("a changed datagram opened", r);
	} else {
		r = sess_open(&table, &cluster, EPOCH, UNIX0, now, true, buf,
		    len, out, sizeof(out), &olen, &e);
		if (r == AUTH_ETOOBIG && table.live == MAX_SESS)
			return; /* full of others: refused, not opened */
		if (r != AUTH_OK || olen != size ||
		    (size > 0 && memcmp(out, data, size) != 0))
			fail("an intact datagram", r);
		sess_seen(&table, e, 0x0100007f, (uint16_t)(at | 1), now);
		if (how & 2) {
			r = sess_open(&table, &cluster, EPOCH, UNIX0, now, true,
			    buf, len, out, sizeof(out), &olen, &e);
			if (r != AUTH_EREPLAY)
				fail("a replay", r);
		}
	}
	check_table();
}

static void
fuzz_box(const uint8_t *data, size_t size)
{
	uint8_t sender[16], got[16];
	uint64_t ctr;
	size_t len, olen;
	enum auth_err r;

	r = auth_s2s_unbox(
	    &cluster, data, size, got, &ctr, out, sizeof(out), &olen);
	if (r == AUTH_OK)
		fail("raw input unboxed", r);
	memset(sender, 0x11, sizeof(sender));
	r = auth_s2s_box(
	    &cluster, sender, size, data, size, sealed, sizeof(sealed), &len);
	if (r != AUTH_OK) {
		if (size <= WIRE_MAX - AUTH_BOX_OVERHEAD)
			fail("box", r);
		return;
	}
	r = auth_s2s_unbox(
	    &cluster, sealed, len, got, &ctr, out, sizeof(out), &olen);
	if (r != AUTH_OK || ctr != size || memcmp(got, sender, 16) != 0 ||
	    olen != size || (size > 0 && memcmp(out, data, size) != 0))
		fail("box round trip", r);
	if (size > 0) {
		sealed[size % len] ^= 0x40;
		if (auth_s2s_unbox(&cluster, sealed, len, got, &ctr, out,
			sizeof(out), &olen) == AUTH_OK)
			fail("a changed box opened", AUTH_OK);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!ready)
		setup();
	now += 7;
	if (size == 0)
		return 0;
	switch (data[0] % 3) {
	case 0:
		fuzz_raw(data + 1, size - 1);
		break;
	case 1:
		fuzz_sealed(data + 1, size - 1);
		break;
	default:
		fuzz_box(data + 1, size - 1);
		break;
	}
	/* Now and then the clock jumps past the idle limit: slots free up. */
	if (size > 2 && data[size - 1] == 0xee) {
		now += SESS_IDLE_MS;
		(void)sess_expire(&table, now);
		check_table();
	}
	return 0;
}
