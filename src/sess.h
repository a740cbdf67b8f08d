/* sess: the leader's encrypted client sessions, by key and by address. */
#ifndef RINGCHAT_SESS_H
#define RINGCHAT_SESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth.h"
#include "wire.h"

/*
 * A keyed cluster's leader keeps one struct auth_session per client
 * public key (docs/SECURITY.md, "Client sessions").  The table finds a
 * session by the key a datagram names and by the address a reply goes
 * to; it holds no socket and reads no clock: times are arguments (now_ms
 * monotonic for idleness, unix_ms for counters).
 *
 * Replay protection survives the loss of a session: a session created
 * for a key (new, evicted, or of an older epoch) refuses every counter
 * below auth_ctr_floor(unix_ms, AUTH_SKEW_MS), and a session is evicted
 * only after SESS_IDLE_MS without a datagram, so nothing it accepted
 * before can be replayed into its successor.  Counters in both
 * directions are never below the current second << AUTH_CTR_SHIFT
 * (sess_ctr_bump), as the server-to-server ones.
 */

#define SESS_MAX     32768 /* sessions at once */
#define SESS_IDLE_MS AUTH_SKEW_MS

struct sess {
	bool used;
	uint8_t pk[AUTH_PK_BYTES];
	char key[AUTH_PK_TEXT]; /* pk as base64url text */
	struct auth_session as; /* for epoch */
	uint64_t epoch;
	bool has_addr; /* the last address a datagram came from */
	uint32_t ip;   /* network byte order */
	uint16_t port; /* host byte order */
	int64_t last_ms;
	uint32_t pk_next, ad_next; /* bucket chains: index + 1, 0 ends */
};

struct sess_table {
	struct sess *s;
	size_t n, cap, max;	     /* slots used up to n; cap allocated */
	uint32_t *pk_head, *ad_head; /* buckets: index + 1 */
	size_t nbuckets;	     /* a power of two */
	size_t live;
	uint32_t free_head; /* freed slots: index + 1, chained by pk_next */
	uint64_t created, evicted, refused_full;
};

/* -1 when max is 0 or above SESS_MAX, or out of memory. */
int sess_init(struct sess_table *, size_t max);
/* Wipes every session's keys. */
void sess_free(struct sess_table *);

/*
 * Opens a session datagram for the leader of epoch: *found is the session
 * and out the inner datagram.  A key new here (or known only from an
 * older epoch) costs one X25519 (about 35 us), spent only when
 * may_derive, and enters the table only once the datagram
 * authenticates, so forgeries take no slot.  Errors: AUTH_EEPOCH (the
 * datagram's epoch is not ours: checked first, for free), AUTH_ETOOBIG
 * (a derivation not allowed now, or the table full of sessions active
 * in the last SESS_IDLE_MS), and those of auth_session_peek and
 * auth_session_open.
 */
enum auth_err
sess_open(struct sess_table *, const struct auth_cluster *, uint64_t epoch,
    uint64_t unix_ms, int64_t now_ms, bool may_derive, const void *data,
    size_t len, void *out, size_t outsz, size_t *outlen, struct sess **found);
/*
 * The session of pk for epoch, created without a datagram: for a key the
 * replicated users name (a new leader's announcement to its sessions).
 */
enum auth_err sess_bind(struct sess_table *, const struct auth_cluster *,
    const uint8_t pk[AUTH_PK_BYTES], uint64_t epoch, uint64_t unix_ms,
    int64_t now_ms, struct sess **found);
/* The session of pk, whatever its epoch; NULL when none. */
struct sess *sess_find(struct sess_table *, const uint8_t pk[AUTH_PK_BYTES]);
/* The session replies to ip:port go to; NULL when none. */
struct sess *sess_by_addr(struct sess_table *, uint32_t ip, uint16_t port);
/* A datagram of e came from ip:port at now_ms: replies go there now. */
void sess_seen(struct sess_table *, struct sess *e, uint32_t ip, uint16_t port,
    int64_t now_ms);
/* Sessions silent for SESS_IDLE_MS are wiped; returns how many. */
size_t sess_expire(struct sess_table *, int64_t now_ms);

/*
 * What may travel in clear between a keyed cluster and a client besides
 * discovery: leader hints, not_leader and sealed errors, answers to vote.
 * Nothing of a chat.  The leader sends nothing else without a session;
 * the client takes nothing else in clear.
 */
bool sess_plain_ok(const struct wire_msg *);

/* Before sealing with a session: its counter not below the second's. */
void sess_ctr_bump(struct auth_session *, uint64_t unix_ms);

#endif
