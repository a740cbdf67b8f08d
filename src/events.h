/* events: one JSON line per significant server event, for timelines. */
#ifndef RINGCHAT_EVENTS_H
#define RINGCHAT_EVENTS_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

struct events {
	int fd; /* -1: events are off */
	char server[UUID_STRLEN + 1];
	char name[RING_NAME_MAX];
	uint64_t dropped; /* lines that did not fit or failed to write */
};

/* Opens path for appending (created 0644); -1 with errno on failure. */
int events_open(
    struct events *, const char *path, const struct uuid *, const char *name);
void events_close(struct events *);
/*
 * Appends {"t_mono_us":..,"t_wall":"..","server":"..","name":"..",
 * "event":"<event>", kv...} as one line with a single write(2), so lines
 * from concurrent writers never interleave.
 */
void events_emit(
    struct events *, const char *event, const struct store_kv *, size_t n);

#endif
