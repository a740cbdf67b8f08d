/* uuid: 128-bit server identities, their text form and their order. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "uuid.h"

void
uuid_generate(struct uuid *u)
{
	arc4random_buf(u->b, sizeof(u->b));
}

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int
uuid_parse(struct uuid *u, const char *s)
{
	struct uuid tmp;
	size_t i, n = 0;

	if (s == NULL || strlen(s) != UUID_STRLEN)
		return -1;
	for (i = 0; i < UUID_STRLEN; i++) {
		int hi, lo;

		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return -1;
			continue;
		}
		hi = hexval(s[i]);
		lo = hexval(s[i + 1]);
		if (hi < 0 || lo < 0)
			return -1;
		tmp.b[n++] = (uint8_t)(hi << 4 | lo);
		i++;
	}
	*u = tmp;
	return 0;
}

char *
uuid_format(const struct uuid *u, char buf[UUID_STRLEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	size_t i, o = 0;

	for (i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			buf[o++] = '-';
		buf[o++] = hex[u->b[i] >> 4];
		buf[o++] = hex[u->b[i] & 0xf];
	}
	buf[o] = '\0';
	return buf;
}

int
uuid_cmp(const struct uuid *a, const struct uuid *b)
{
	return memcmp(a->b, b->b, sizeof(a->b));
}

bool
uuid_is_nil(const struct uuid *u)
{
	static const struct uuid nil;

	return uuid_cmp(u, &nil) == 0;
}
