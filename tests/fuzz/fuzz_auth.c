/* fuzz_auth: libFuzzer target for every auth decoder of outside input. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

#define SENDER "1b4e28ba-2fa1-4d3b-a3f5-ef19b5a7633b"
/* The seeds in tests/fuzz/corpus/auth are sealed under this key. */
#define KEY_BYTE 0x42

static struct auth_cluster cluster;
static struct auth_session server, client;
static bool ready;
/* Static: messages and buffers too big to want on the fuzzer's stack. */
static struct wire_msg m1, m2;
static char text[WIRE_MAX + 1], sealed[WIRE_MAX], out[WIRE_MAX];

static void
fail(const char *what, enum auth_err e)
{
	fprintf(stderr, "fuzz_auth: %s: %s\n", what, auth_strerror(e));
	abort();
}

static void
check_code(const char *what, enum auth_err e)
{
	if (e < AUTH_OK || e >= AUTH_NERR || e == AUTH_EARG || e == AUTH_EINIT)
		fail(what, e);
}

static void
setup(void)
{
	struct auth_key key;
	uint8_t pk[AUTH_PK_BYTES];

	if (auth_init() != AUTH_OK)
		fail("init", AUTH_EINIT);
	memset(key.k, KEY_BYTE, sizeof(key.k));
	if (auth_cluster_init(&cluster, &key) != AUTH_OK)
		fail("cluster", AUTH_EINIT);
	/* A fixed client key, so that seeds can name its session. */
	memset(pk, 9, sizeof(pk));
	if (auth_session_server(&server, &cluster, pk, 7) != AUTH_OK)
		fail("server session", AUTH_EKX);
	if (auth_session_client(&client, cluster.kx_pk) != AUTH_OK)
		fail("client session", AUTH_EKX);
	ready = true;
}

/* Server-to-server: verify, open, and seal/verify round trips. */
static void
fuzz_s2s(const uint8_t *data, size_t size)
{
	struct auth_window w;
	enum auth_err e;
	uint64_t ctr = 0;
	size_t plen = 0, slen, p2;

	e = auth_s2s_verify(&cluster, SENDER, data, size, &ctr, &plen);
	check_code("s2s verify", e);
	/* At least "@ctr=", one digit, "@mac=" and 43 characters follow. */
	if (e == AUTH_OK && (plen > size || size - plen < 54))
		fail("s2s verify: payload length out of range", e);
	auth_window_init(&w);
	e = auth_s2s_open(&cluster, SENDER, &w, 0, data, size, &p2);
	check_code("s2s open", e);
	if (e == AUTH_OK) {
		if (p2 != plen || !w.any || w.top != ctr)
			fail("s2s open disagrees with verify", e);
		if (auth_s2s_open(&cluster, SENDER, &w, 0, data, size, &p2) !=
		    AUTH_EREPLAY)
			fail("s2s open accepted a replay", e);
	}

	/* Any datagram we can decode, sealed, must verify and decode. */
	if (wire_decode(&m1, data, size) != WIRE_OK)
		return;
	e = auth_s2s_seal(
	    &cluster, SENDER, size, data, size, sealed, sizeof(sealed), &slen);
	if (e == AUTH_EARG || e == AUTH_ETOOBIG)
		return;
	if (e != AUTH_OK)
		fail("s2s seal", e);
	if (wire_decode(&m2, sealed, slen) != WIRE_OK)
		fail("sealed datagram does not decode", e);
	if (m2.kind != m1.kind || strcmp(m2.from, m1.from) != 0 ||
	    m2.next != m1.next + 2)
		fail("sealing changed the datagram", e);
	if ((e = auth_s2s_verify(
		 &cluster, SENDER, sealed, slen, &ctr, &plen)) != AUTH_OK)
		fail("own seal does not verify", e);
	if (ctr != size || plen != size || memcmp(sealed, data, size) != 0)
		fail("verify returned other values", e);
	sealed[size % slen] ^= 1;
	if (auth_s2s_verify(&cluster, SENDER, sealed, slen, &ctr, &plen) ==
	    AUTH_OK)
		fail("a flipped bit verified", e);
}

static void
fuzz_session(const uint8_t *data, size_t size)
{
	uint8_t pk[AUTH_PK_BYTES];
	struct auth_session s;
	uint64_t epoch;
	size_t olen;
	enum auth_err e;

	e = auth_session_peek(data, size, pk, &epoch);
	check_code("session peek", e);
	if (e == AUTH_OK &&
	    (size < AUTH_SESSION_OVERHEAD || size > WIRE_MAX ||
		!auth_session_is_sealed(data, size)))
		fail("peek accepted what is no session datagram", e);
	s = server;
	e = auth_session_open(&s, data, size, out, sizeof(out), &olen);
	check_code("server open", e);
	if (e == AUTH_OK && olen + AUTH_SESSION_OVERHEAD != size)
		fail("server open: length", e);
	s = client;
	e = auth_session_open(&s, data, size, out, sizeof(out), &olen);
	check_code("client open", e);
	auth_session_wipe(&s);
}

static void
fuzz_texts(const uint8_t *data, size_t size)
{
	char pktext[AUTH_PK_TEXT];
	uint8_t pk[AUTH_PK_BYTES];
	struct auth_key key;
	size_t n, line, olen;
	bool found;
	enum auth_err e;

	/* A key file's content; what parses is canonical. */
	e = auth_key_parse((const char *)data, size, &key);
	check_code("key parse", e);
	if (e == AUTH_OK) {
		auth_pk_to_text(key.k, pktext);
		if (memcmp((const char *)data + 24, pktext, 43) != 0)
			fail("key text is not canonical", e);
	}
	e = auth_pin_find(
	    (const char *)data, size, "lan:45960", pk, &found, &line);
	check_code("pin find", e);
	e = auth_field_open(&cluster, "repl", 4, (const char *)data, size, out,
	    sizeof(out), &olen);
	check_code("field open", e);

	/* The NUL-terminated parsers. */
	n = size < WIRE_MAX ? size : WIRE_MAX;
	memcpy(text, data, n);
	text[n] = '\0';
	check_code("pk from text", auth_pk_from_text(text, pk));
	check_code("pw hash check", auth_pw_hash_check(text));
	(void)auth_pw_needs_rehash(text);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!ready)
		setup();
	fuzz_s2s(data, size);
	fuzz_session(data, size);
	fuzz_texts(data, size);
	return 0;
}
