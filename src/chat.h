/* chat: ringchatd's chat service: client datagrams, relay, replication. */
#ifndef RINGCHAT_CHAT_H
#define RINGCHAT_CHAT_H

#include <netinet/in.h>
#include <stdio.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "log.h"
#include "relay.h"
#include "ring.h"
#include "store.h"
#include "wire.h"

/*
 * The leader runs the relay (src/relay.c) and replicates every op to
 * the live backups before a message is acknowledged to its sender:
 *
 *   leader --repl(v, n, ops)--> backup  n ops from version v, applied
 *                                       in version order
 *   leader <--need(have)--- backup      cumulative: "I have 1..have"
 *   leader --snap(off, total, chunk)--> a new, lagging or diverged
 *                                       backup (chunked, windowed)
 *
 * A backup that follows a new leader tells it its version and history
 * digest first (hello), so replicas never keep ops a new leader does
 * not have.  Ops are pipelined: each wake-up sends every backup the ops
 * it was not sent yet, batched, up to CHAT_PIPE_MAX beyond what it
 * acknowledged; no progress for CHAT_RESEND_MS sends again from the
 * acknowledged version (go-back-N).
 *
 * Passwords (docs/RELAY.md, "Passwords"): a newu or login with a `pw`
 * extension is hashed or verified on the password worker's thread
 * (src/pwworker.c, started at the first password), and the relay is
 * called with the outcome when the result comes back to the loop, in
 * the session (key) the request came in.  A result from before a
 * change of role is dropped: the client asks again.
 */

#define CHAT_LOG_MAX	 4096 /* ops kept to resend to a lagging backup */
#define CHAT_SNAP_CHUNK	 400  /* raw snapshot bytes per snap datagram */
#define CHAT_SNAP_WINDOW 64   /* chunks in flight per backup */
#define CHAT_RESEND_MS	 50   /* unacknowledged ops or chunks go again */
#define CHAT_OP_WINDOW	 256  /* ops sent again per resend */
#define CHAT_PIPE_MAX	 (CHAT_LOG_MAX / 2) /* ops in flight per backup */
/* Separates the ops of one repl datagram: never in an op's text. */
#define CHAT_REPL_SEP '\x1e'
/* Bytes of escaped ops per repl datagram: the rest of WIRE_MAX is the
 * kind, two UUIDs, the epoch, v and n fields and the seal (--cluster-key). */
#define CHAT_REPL_BYTES RELAY_OP_WIRE_MAX
#define CHAT_SNAP_MAX	(64u << 20)
/* Another login of the user is being checked: try again after this. */
#define CHAT_PW_BUSY_MS 100
/*
 * A new leader tells its online users at once that it leads, then again
 * CHAT_ANNOUNCE_MS later and twice that after (against loss).
 */
#define CHAT_ANNOUNCE_REPEATS 2
#define CHAT_ANNOUNCE_MS      100

struct server;
struct member;
struct pwworker;

struct chat_logent {
	uint64_t version;
	uint64_t hash; /* the history digest once it is applied */
	char *text;
	size_t len;
};

struct chat_peer {
	bool used;
	struct uuid uuid;
	uint64_t acked;	   /* the backup has ops 1..acked */
	uint64_t sent;	   /* ops acked+1..sent are on their way */
	int64_t resend_ms; /* when unacknowledged ops go again */
	bool snapping;	   /* a snapshot is on its way to it */
	char *snap;
	size_t snap_len, snap_acked, snap_sent;
	uint64_t snap_version;
	int64_t snap_ms;
	/* its history is known to be a prefix of ours: ops may go to it */
	bool verified;
	/* merge: its state, asked for because it diverged from ours */
	bool merging;
	char *mrx;
	size_t mrx_len, mrx_total, mrx_chunks;
	uint64_t mrx_version;
	int64_t mrx_ms;
	int mrx_tries;
};

struct chat_wait {
	uint64_t version; /* the op of the message */
	uint64_t id;	  /* the message */
};

struct chat {
	struct relay relay;
	bool leader;
	/* leader: the last CHAT_LOG_MAX ops, oldest at log_start */
	struct chat_logent log[CHAT_LOG_MAX];
	size_t log_start, log_n;
	struct chat_peer peers[RING_MAX];
	/* leader: accepted messages waiting for the backups, by version */
	struct chat_wait *wait;
	size_t wait_head, nwait, capwait;
	bool repl_pending; /* new ops for the backups: sent by chat_tick */
	/* leader: rounds of "we lead" to the online users still to go */
	int announce_left;
	int64_t announce_ms, announce_gap;
	/* backup: a new leader is told our version and digest (hello) */
	bool hello;
	bool ack_due; /* a need goes once the journal is synced */
	/* backup: our state as the leader asked for it (merge) */
	char *offer;
	size_t offer_len;
	uint64_t offer_version;
	/* backup: the snapshot being received */
	bool want_snap;
	int64_t need_ms;
	char *rx;
	size_t rx_len, rx_total, rx_chunks;
	uint64_t rx_version;
	/* users.json, rewritten soon after a change of users or rooms */
	struct users_state users;
	bool users_dirty;
	int64_t users_write_ms;
	/* the chat journal: chat.snap and chat.log in the state directory */
	struct store_journal journal;
	bool journal_broken; /* a write failed: logged once */
	/* leader: passwords hashed and verified off the loop (lazily) */
	struct pwworker *pw;
	uint64_t pw_gen; /* bumped by every change of role: older jobs drop */
	struct log_limit pw_limit;
	/* counters */
	uint64_t repl_sent, repl_resent, snaps_sent, snaps_received;
	uint64_t client_bad, merges, merged_users, merged_msgs;
	uint64_t pw_jobs, pw_resends, pw_busy, pw_dropped;
};

void chat_init(struct server *);
/*
 * Loads users.json and the chat journal from the state directory; a
 * corrupt file stops the server (or, with --recover, is moved aside and
 * the state comes from the leader).
 */
void chat_load(struct server *);
void chat_free(struct server *);
/* Role changes: a leader serves clients; a backup replicates. */
void chat_become_leader(struct server *, int64_t now_ms);
void chat_become_backup(struct server *, int64_t now_ms);
/* A backup now follows a different leader: resynchronise. */
void chat_leader_changed(struct server *, int64_t now_ms);
/* A client datagram on the data port. */
void chat_on_client(struct server *, const struct wire_msg *,
    const struct sockaddr_in *from, int64_t now_ms);
/* Replication datagrams on the control port, from an authentic member. */
void chat_on_repl(struct server *, const struct member *,
    const struct wire_msg *, int64_t now_ms);
void chat_on_snap(struct server *, const struct member *,
    const struct wire_msg *, int64_t now_ms);
void chat_on_need(struct server *, const struct member *,
    const struct wire_msg *, int64_t now_ms);
/* Liveness changed: messages may no longer wait for a dead backup. */
void chat_members_changed(struct server *, int64_t now_ms);
void chat_tick(struct server *, int64_t now_ms);
int64_t chat_next_deadline(const struct server *);
/* Operator listings (ctl users, rooms). */
void chat_print_users(struct server *, FILE *);
void chat_print_rooms(struct server *, FILE *);

#endif
