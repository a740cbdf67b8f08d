/* fuzz_wire: libFuzzer target for wire_decode and the encode round trip. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

/* Static: three messages are too big to want on the fuzzer's stack. */
static struct wire_msg m1, m2, m3;
static char out1[WIRE_MAX], out2[WIRE_MAX];

static void
fail(const char *what, enum wire_err err)
{
	fprintf(stderr, "fuzz_wire: %s: %s\n", what, wire_strerror(err));
	abort();
}

static void
check_same(const struct wire_msg *a, const struct wire_msg *b)
{
	int i;

	if (a->kind != b->kind || strcmp(a->to, b->to) != 0 ||
	    strcmp(a->body, b->body) != 0 || strcmp(a->from, b->from) != 0 ||
	    a->next != b->next)
		fail("fields differ after the round trip", WIRE_OK);
	for (i = 0; i < a->next; i++)
		if (strcmp(a->ext[i].key, b->ext[i].key) != 0 ||
		    strcmp(a->ext[i].val, b->ext[i].val) != 0)
			fail("extensions differ after the round trip", WIRE_OK);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	enum wire_err err;
	size_t len1, len2;
	uint64_t v;
	int i;

	err = wire_decode(&m1, data, size);
	if (err < WIRE_OK || err >= WIRE_NERR || err == WIRE_EARG)
		fail("decode returned no known error", err);
	if (err != WIRE_OK) {
		if (m1.kind != WK_NONE || m1.next != 0 || *m1.to != '\0' ||
		    *m1.body != '\0' || *m1.from != '\0')
			fail("decode left a partial result", err);
		return 0;
	}
	if (size > WIRE_MAX)
		fail("decode accepted an oversized datagram", err);

	/* The getters must agree with the array and never misbehave. */
	for (i = 0; i < m1.next; i++) {
		if (wire_get(&m1, m1.ext[i].key) != m1.ext[i].val)
			fail("wire_get missed a key", WIRE_OK);
		(void)wire_get_u64(&m1, m1.ext[i].key, &v);
	}

	/*
	 * Raw '=' or control bytes in the input come out escaped, so the
	 * re-encoding may legitimately outgrow WIRE_MAX.
	 */
	err = wire_encode(&m1, out1, sizeof(out1), &len1);
	if (err == WIRE_ETOOBIG)
		return 0;
	if (err != WIRE_OK)
		fail("re-encoding a decoded message", err);
	if (len1 > WIRE_MAX)
		fail("encoded past WIRE_MAX", err);

	if ((err = wire_decode(&m2, out1, len1)) != WIRE_OK)
		fail("decoding our own encoding", err);
	check_same(&m1, &m2);

	/* The encoder's output is canonical: a second trip is identical. */
	if ((err = wire_encode(&m2, out2, sizeof(out2), &len2)) != WIRE_OK)
		fail("re-encoding our own encoding", err);
	if (len1 != len2 || memcmp(out1, out2, len1) != 0)
		fail("encoding is not canonical", WIRE_OK);
	if ((err = wire_decode(&m3, out2, len2)) != WIRE_OK)
		fail("third decode", err);
	check_same(&m2, &m3);
	return 0;
}
