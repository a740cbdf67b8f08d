/* uuid: 128-bit server identities, their text form and their order. */
#ifndef RINGCHAT_UUID_H
#define RINGCHAT_UUID_H

#include <stdbool.h>
#include <stdint.h>

#define UUID_STRLEN 36 /* 8-4-4-4-12 lowercase hex, without the NUL */

struct uuid {
	uint8_t b[16];
};

/* 128 random bits from arc4random_buf. */
void uuid_generate(struct uuid *);
/* Parses the canonical 36-character form (either case); -1 if malformed. */
int uuid_parse(struct uuid *, const char *);
/* Writes the canonical lowercase form; buf holds UUID_STRLEN + 1 bytes. */
char *uuid_format(const struct uuid *, char buf[UUID_STRLEN + 1]);
/* memcmp order: the ring and the election compare UUIDs with this. */
int uuid_cmp(const struct uuid *, const struct uuid *);
bool uuid_is_nil(const struct uuid *);

#endif
