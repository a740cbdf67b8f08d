/* relay: the leader's chat relay and the backups' replica of it (pure). */
#ifndef RINGCHAT_RELAY_H
#define RINGCHAT_RELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth.h"
#include "ring.h"
#include "store.h"
#include "wire.h"

/*
 * Inputs are client requests (with the source address the daemon read),
 * replication ops, confirmations and the passage of time (now_ms, a
 * monotonic clock the caller reads); outputs are appended to r->out and
 * handled by the caller, who then calls relay_drain.  No socket, clock or
 * file call is made here.  docs/RELAY.md describes the datagrams.
 *
 * A leader validates a request, turns it into an op, applies the op and
 * emits it as RO_REPLICATE; a backup applies the same ops with
 * relay_apply and ends with the same replicated state.  Leader-local
 * state (retransmission timers, keepalive times, messages waiting for
 * the backups) is not replicated and is rebuilt by relay_become_leader.
 * Every replica must run with the same relay_cfg: the queue and history
 * bounds decide what an op does.
 *
 * Sessions and passwords.  In a keyed cluster every client datagram
 * comes inside an encrypted session named by the client's public key;
 * the daemon names it before each request (relay_set_source_key).
 * newu and login bind the user to that key (replicated), and every
 * other request must come from the same address, port and key.  A
 * user may have a password: the relay keeps only its Argon2id hash
 * (auth_pw_hash) and never hashes or verifies, which costs about 16 ms:
 * the daemon does that off the event loop and reports the verdict
 * (relay_on_newu_pw, relay_on_login_pw).  The delays after wrong
 * passwords are leader-local and kept here.
 */

/*
 * Body bytes as encoded on the wire (a byte wire.c escapes counts 3):
 * the longest delivery and the longest replication op still fit one
 * datagram with room for the daemon's own fields.  Never truncated.
 */
#define RELAY_BODY_MAX 1000
/*
 * A message's op, escaped for the wire, fits one authenticated repl
 * datagram (WIRE_MAX less its header, two UUIDs and the seal): only
 * sender and room names full of escaped bytes with a full body reach it
 * (too_long).
 */
#define RELAY_OP_WIRE_MAX 1260
/* Accepted client message ids remembered per sender (exactly-once). */
#define RELAY_CID_WINDOW 16
/* Encoded bytes of list text (rooms, who, users) per reply datagram. */
#define RELAY_LIST_MAX 1000
/* Bytes of a formatted op (relay_op_format), NUL excluded. */
#define RELAY_OP_TEXT_MAX 1200

enum relay_err {
	RELAY_OK = 0,
	RELAY_EARG,	       /* bad_request: NULL, bad address or field */
	RELAY_EBAD_NAME,       /* bad_name */
	RELAY_ENAME_TAKEN,     /* name_taken */
	RELAY_EUNKNOWN_USER,   /* unknown_user */
	RELAY_ENOT_LOGGED_IN,  /* not_logged_in */
	RELAY_EFORGED,	       /* forged_sender */
	RELAY_EBAD_ROOM,       /* bad_room: malformed room name */
	RELAY_ENOT_IN_ROOM,    /* not_in_room: unknown room or not a member */
	RELAY_ETOO_MANY_ROOMS, /* too_many_rooms */
	RELAY_ETOO_LONG,       /* too_long */
	RELAY_EBAD_BODY,       /* bad_body: empty, control characters */
	RELAY_EBAD_CID,	       /* bad_cid: missing or 0 */
	RELAY_ESTALE_CID,      /* stale_cid: older than the sender's window */
	RELAY_EFULL,	       /* full: a user, room, queue or memory limit */
	RELAY_ENOMEM,	       /* busy: out of memory, nothing changed */
	RELAY_EROLE,	       /* not_leader (or relay_apply on a leader) */
	RELAY_EUNKNOWN_ID,     /* ack or confirmation of nothing pending */
	RELAY_EOLD,	       /* op already applied (version too low) */
	RELAY_EGAP,	       /* op version skips one: ask for the missing */
	RELAY_EDIVERGED,       /* op does not fit this replica: resync */
	RELAY_ESNAPSHOT,       /* malformed or corrupt snapshot */
	RELAY_ERENAMED,	       /* renamed: name also registered elsewhere */
	RELAY_EBACKLOG, /* backlog: an online recipient's queue is full */
	RELAY_EORDER,	/* order: the sender's previous message comes first */
	RELAY_EPW_REQUIRED,  /* password_required: login or newu without pw */
	RELAY_EBAD_PASSWORD, /* bad_password: answered after a delay */
	RELAY_ESLOW_DOWN, /* slow_down: a delay runs; retry_ms says how long */
	RELAY_NERR
};

enum relay_op_type {
	ROP_NONE = 0,
	ROP_NEWU,    /* user registered at addr:port (key, pwhash) */
	ROP_LOGIN,   /* user online at addr:port (key) */
	ROP_LOGOUT,  /* user offline (logout or keepalive expiry) */
	ROP_JOIN,    /* user joined room dest */
	ROP_PART,    /* user left room dest */
	ROP_MSG,     /* message id, seq, cid from user to dest */
	ROP_ACK,     /* user acknowledged the delivery of message id */
	ROP_NEXT_ID, /* ids go on from id (relay_merge; no user) */
	ROP_COUNT
};

/* One replicated state change; version is 1 + the previous op's. */
struct relay_op {
	enum relay_op_type type;
	uint64_t version;
	char user[USER_NAME_MAX];
	char addr[RING_ADDR_MAX];
	uint16_t port;
	char dest[ROOM_NAME_MAX]; /* room, or a message's "*", #room, user */
	uint64_t id, seq, cid;
	const char *body; /* ROP_MSG: bodylen bytes, not NUL-terminated */
	size_t bodylen;
	/* ROP_NEWU: id is the registration's identity (relay_merge) */
	/* ROP_NEWU, ROP_LOGIN: the client's session key, "" for none */
	char key[AUTH_PK_TEXT];
	/* ROP_NEWU: the password's Argon2id hash, "" for none */
	char pwhash[AUTH_PWHASH_SIZE];
	/* set by the relay: the history digest once this op is applied */
	uint64_t hash;
};

enum relay_out_type {
	RO_REPLY,     /* ok or err to the client user at addr:port */
	RO_DELIVER,   /* message to recipient user at addr:port; wants an ack */
	RO_REPLICATE, /* op for the backups, in version order */
	RO_EVENT      /* for the log and the events file */
};

enum relay_event {
	REV_REGISTER,  /* user registered */
	REV_LOGIN,     /* user online at addr:port */
	REV_LOGOUT,    /* user logged out */
	REV_EXPIRE,    /* user silent too long: offline */
	REV_JOIN,      /* user joined dest */
	REV_PART,      /* user left dest */
	REV_ROOM_NEW,  /* room dest created */
	REV_ROOM_GONE, /* room dest empty: deleted with its history */
	REV_ACCEPT,    /* message id from user to dest accepted */
	REV_DUPLICATE, /* client resent cid: not accepted again */
	REV_CONFIRM,   /* backups have message id: sender acked */
	REV_ACKED,     /* recipient user acknowledged message id */
	REV_OVERFLOW,  /* user's queue full: message id not queued for it */
	REV_REJECT,    /* request refused; err says why */
	REV_ROLE,      /* became leader (detail "leader") or backup */
	REV_RESTORE    /* state loaded from a snapshot */
};

/*
 * An output.  Strings are copies; body and text stay valid until
 * relay_drain.  Fields not named for a type are zero.
 */
struct relay_out {
	enum relay_out_type type;
	/* REPLY, DELIVER: the client; EVENT: the user concerned */
	char user[USER_NAME_MAX]; /* "" when the request named no valid user */
	char addr[RING_ADDR_MAX];
	uint16_t port;
	/* REPLY */
	enum wire_kind re;  /* the request answered */
	enum relay_err err; /* RELAY_OK: ok; else err, code relay_err_code */
	bool has_cid;	    /* msg: the client's cid; login: highest accepted */
	bool has_id;	    /* msg ok: the message id */
	const char *text;   /* list replies: names, space-separated */
	uint32_t part;	    /* list replies: 1-based chunk number */
	uint32_t parts;	    /* list replies: number of chunks */
	uint32_t retry_ms;  /* slow_down: ms until the user may try again */
	/* DELIVER (id, cid also in REPLY, id, dest in EVENT) */
	char from[USER_NAME_MAX];
	char dest[ROOM_NAME_MAX]; /* "#room", "*", or the recipient's name */
	uint64_t id, seq, cid;
	const char *body;
	size_t bodylen;
	uint32_t attempt; /* 1 for the first send */
	/* REPLICATE */
	struct relay_op op;
	/* EVENT */
	enum relay_event ev;
	const char *detail; /* static string, may be NULL */
	/* private: what relay_drain releases */
	struct relay_msg *hold;
	char *owned;
};

struct relay_cfg {
	int64_t alive_ms;     /* the clients' keepalive interval */
	int alive_misses;     /* silent this many intervals: offline */
	int64_t retry_min_ms; /* first resend of an unacknowledged delivery */
	int64_t retry_max_ms; /* resend interval doubles up to this */
	uint32_t queue_max;   /* unacknowledged deliveries kept per user */
	uint32_t history_max; /* last messages of a room replayed to joiners */
	uint32_t
	    inflight_max;   /* deliveries sent and unacked at once, per user */
	uint32_t users_max; /* registered users */
	uint32_t rooms_max; /* rooms with members */
	size_t msg_bytes_max; /* message records held (bodies included) */
};

/* What relay_user_get and relay_online_get report. */
struct relay_user_info {
	char name[USER_NAME_MAX];
	char addr[RING_ADDR_MAX];
	uint16_t port;
	bool online;
	size_t nrooms;
	size_t queued;		/* deliveries not yet acknowledged */
	size_t inflight;	/* of those, sent and waiting for the ack */
	uint64_t cid_hi;	/* highest client message id accepted */
	uint64_t reg;		/* registration identity */
	char key[AUTH_PK_TEXT]; /* session key bound, "" for none */
	char pwhash[AUTH_PWHASH_SIZE]; /* password hash, "" for none */
};

struct relay_user;
struct relay_room;
struct relay_msg;
struct relay_kv;
struct relay_pending;
struct relay_pwwait;

/* All state; the fields are private to relay.c apart from cfg and out. */
struct relay {
	struct relay_cfg cfg;
	bool leader;

	/* replicated: identical on every replica after the same ops */
	uint64_t version; /* ops applied */
	uint64_t hash;	  /* digest of the history: op 1 .. version */
	uint64_t next_id; /* id of the next accepted message */
	uint64_t bcast_seq;
	uint32_t next_room_id;
	struct relay_user *users; /* by index; never removed */
	size_t nusers, capusers;
	uint32_t *uhash; /* name -> index + 1, open addressing */
	size_t uhcap;
	struct relay_room **rooms; /* in creation order */
	size_t nrooms, caprooms;
	struct relay_kv *kv; /* direct streams' seqs, ex-members' cursors */
	size_t nkv, nkvdead, kvcap;
	struct relay_msg *mhead, *mtail; /* messages in id order */
	size_t nmsgs, msg_bytes;

	/* derived from the replicated state */
	uint32_t *online; /* indices of online users, any order */
	size_t nonline, caponline;

	/* leader-local */
	uint64_t origin; /* the leader's identity: mixed into registrations */
	struct relay_pending *pend; /* accepted, waiting for the backups */
	size_t npend, cappend;
	int64_t deadline;
	uint32_t *scratch; /* recipients of the message being accepted */
	size_t capscratch;
	/* the session key of the requests that follow (relay_set_source_key) */
	char src_key[AUTH_PK_TEXT];
	bool src_bad;		  /* the daemon named a malformed key: refuse */
	struct relay_pwwait *pww; /* bad_password answers waiting */
	size_t npww, cappww;

	/* outputs of the last call(s), until relay_drain */
	struct relay_out *out;
	size_t nout, capout;

	/* bytes allocated (relay_memory) */
	size_t mem;

	/* counters */
	uint64_t accepted, duplicates, delivered, resends, overflows;
	uint64_t rejected, out_lost, pw_failures;
};

void relay_cfg_defaults(struct relay_cfg *);
/* RELAY_EARG when cfg is out of range.  The relay starts as a backup. */
enum relay_err relay_init(struct relay *, const struct relay_cfg *);
void relay_free(struct relay *);
/* Releases the outputs r->out[0 .. nout-1]; call after handling them. */
void relay_drain(struct relay *);

/*
 * Client requests, on the leader.  from is the wire `from` field, addr
 * (dotted IPv4) and port the datagram's source.  Each answers with an
 * RO_REPLY unless said otherwise and returns what it answered (RELAY_OK
 * for a request that was a duplicate and answered as the original).
 * Without a valid addr:port nothing is answered: RELAY_EARG.  Every
 * request but newu and login must come from the address and session key
 * the user logged in with (else forged_sender), and counts as a
 * keepalive.
 */
/*
 * The session key (base64url public key, AUTH_PK_TEXT - 1 characters)
 * the requests that follow came in, until the next call; "" or NULL for
 * a plain datagram (an open cluster).  Leader-local input context, not
 * replicated by itself: newu and login copy it into their ops.  -1 for
 * a malformed key, and the requests that follow are refused
 * (bad_request) until a valid one is named.
 */
int relay_set_source_key(struct relay *, const char *key);
/*
 * Registers without a password; does not log in.  A resend from the
 * same address and key: ok.  The user is bound to the source key.
 */
enum relay_err relay_on_newu(struct relay *, int64_t now_ms, const char *from,
    const char *addr, uint16_t port);
/*
 * The same with the hash of the user's password (auth_pw_hash output;
 * NULL or "": none).  A malformed hash: bad_request.
 */
enum relay_err relay_on_newu_pw(struct relay *, int64_t now_ms,
    const char *from, const char *addr, uint16_t port, const char *pwhash);
/*
 * Would relay_on_newu_pw register from now (a valid name, not taken,
 * below users_max)?  Only then is a password worth hashing: otherwise
 * relay_on_newu answers (ok for a resend, bad_name, name_taken, full).
 */
bool relay_newu_registers(const struct relay *, const char *from);
/*
 * Online at addr:port with the source key; the reply's cid is the
 * highest cid accepted.  A user with a password: password_required,
 * unless it is online at this address with this key already (a resend
 * of a login that was verified).
 */
enum relay_err relay_on_login(struct relay *, int64_t now_ms, const char *from,
    const char *addr, uint16_t port);
/*
 * Would relay_on_login answer password_required (the user has a
 * password and this is not a resend from its session)?
 */
bool relay_login_wants_pw(
    const struct relay *, const char *from, const char *addr, uint16_t port);
/*
 * The daemon verified the password of a login from addr:port and the
 * source key.  pw_ok: logs in as relay_on_login would without a
 * password, and the user's run of wrong passwords ends.  Otherwise the
 * run grows by one and bad_password is answered auth_pw_delay_ms(run)
 * from now (relay_tick); RELAY_EBAD_PASSWORD.
 */
enum relay_err relay_on_login_pw(struct relay *, int64_t now_ms,
    const char *from, const char *addr, uint16_t port, bool pw_ok);
/*
 * Ms until the delay after the user's last wrong password ends (0:
 * none; then logins are verified again).  *resend is set when the
 * bad_password answer still waiting is for addr:port and the source
 * key: the client sent the same login again, to be ignored.
 */
uint32_t relay_pw_wait(const struct relay *, int64_t now_ms, const char *from,
    const char *addr, uint16_t port, bool *resend);
/*
 * Answers a request with err as the relay answers its own refusals (a
 * reply, a reject event, the rejected counter), for the checks the
 * daemon makes around it (password_required, slow_down with retry_ms,
 * busy, bad_request).  Returns err; RELAY_EARG when there is no valid
 * addr:port, RELAY_EROLE (answered not_leader) on a backup.
 */
enum relay_err
relay_refuse(struct relay *, enum wire_kind re, enum relay_err err,
    const char *from, const char *addr, uint16_t port, uint32_t retry_ms);
enum relay_err relay_on_logout(struct relay *, int64_t now_ms, const char *from,
    const char *addr, uint16_t port);
enum relay_err relay_on_alive(struct relay *, int64_t now_ms, const char *from,
    const char *addr, uint16_t port);
/*
 * A chat message to `to` (a user, "#room" or "*"); cid is the client's
 * id for it (0: absent).  Accepted messages are answered only once the
 * daemon calls relay_on_replicated; a resend before that is ignored.
 */
enum relay_err
relay_on_msg(struct relay *, int64_t now_ms, const char *from, const char *addr,
    uint16_t port, const char *to, const char *body, uint64_t cid);
/*
 * The same, in the sender's order: `after` (0: none) is the cid of the
 * sender's previous message that is still to be delivered.  Until that
 * one is accepted this one is refused with order (nothing accepted: the
 * client sends it again), so a resend never lets a later message pass.
 */
enum relay_err relay_on_msg_after(struct relay *, int64_t now_ms,
    const char *from, const char *addr, uint16_t port, const char *to,
    const char *body, uint64_t cid, uint64_t after);
/* A recipient's ack of delivery id.  Never answered. */
enum relay_err relay_on_ack(struct relay *, int64_t now_ms, const char *from,
    const char *addr, uint16_t port, uint64_t id);
/* Creates the room when absent; replays its history as deliveries. */
enum relay_err relay_on_join(struct relay *, int64_t now_ms, const char *from,
    const char *addr, uint16_t port, const char *room);
enum relay_err relay_on_part(struct relay *, int64_t now_ms, const char *from,
    const char *addr, uint16_t port, const char *room);
/* Lists, answered in chunks of at most RELAY_LIST_MAX encoded bytes. */
enum relay_err relay_on_rooms(struct relay *, int64_t now_ms, const char *from,
    const char *addr, uint16_t port);
enum relay_err relay_on_who(struct relay *, int64_t now_ms, const char *from,
    const char *addr, uint16_t port, const char *room);
/* Online users. */
enum relay_err relay_on_users(struct relay *, int64_t now_ms, const char *from,
    const char *addr, uint16_t port);

/*
 * Every live backup has message id (with no backup, call it right after
 * the RO_REPLICATE): acks the sender and starts the deliveries.
 */
enum relay_err relay_on_replicated(struct relay *, int64_t now_ms, uint64_t id);
/* Resends, keepalive expiry, delayed answers.  Only a leader has work. */
void relay_tick(struct relay *, int64_t now_ms);
/* The earliest time relay_tick has work; INT64_MAX when none. */
int64_t relay_next_deadline(const struct relay *);

/*
 * A backup applies the leader's ops in version order.  RELAY_EOLD: an
 * op already applied (ignore it); RELAY_EGAP: one is missing (ask for
 * it); RELAY_EDIVERGED: the replica cannot take it (ask for a
 * snapshot).  On any error nothing changed.
 */
enum relay_err relay_apply(struct relay *, const struct relay_op *);
/*
 * Failover: every message known is taken as replicated, every
 * unacknowledged delivery to an online user is sent again (as many as
 * inflight_max allows, the rest as acks come), every online user gets a
 * full keepalive period from now.
 */
enum relay_err relay_become_leader(struct relay *, int64_t now_ms);
/*
 * Stepping down: forgets what waited for the backups, the timers and
 * the password delays.
 */
enum relay_err relay_become_backup(struct relay *);

/*
 * The replicated state as text (docs/RELAY.md), in *buf (malloc'd,
 * NUL-terminated, *len bytes without the NUL).  The caller frees it.
 * Two replicas with the same state give the same bytes.
 */
enum relay_err relay_snapshot(const struct relay *, char **buf, size_t *len);
/*
 * Replaces a backup's state with a snapshot's.  Everything is checked
 * first; on error r is unchanged.  The outbox is drained.
 */
enum relay_err relay_restore(struct relay *, const char *buf, size_t len);

/*
 * One op as a line of text for a WK_REPL body (no newline): at most
 * RELAY_OP_TEXT_MAX bytes.  Returns -1 when it does not fit or the op is
 * malformed.
 */
int
relay_op_format(const struct relay_op *, char *buf, size_t bufsz, size_t *len);
/* The reverse; op->body points into buf.  -1 when malformed. */
int relay_op_parse(struct relay_op *, const char *buf, size_t len);

/*
 * Partition heal and stale restarts (docs/RELAY.md, "Merge"): a leader
 * takes into its state what another replica's state `o` has and it has
 * not, as ordinary ops (RO_REPLICATE) the backups apply:
 * - users by registration identity: a user of o unknown here is
 *   registered (offline, with o's session key and password hash); a name
 * registered here and in o by two different registrations stays with this
 * leader's, o's user is registered as name~N (the first free N >= 2) and an
 * RO_REPLY err code renamed (text: the new name) goes to its last address;
 * - room memberships of o are added;
 * - every message o still holds (queued or in a room's history) that
 *   this leader has not accepted from the same sender and cid is
 *   accepted again, in o's id order, and queued for this leader's
 *   recipients except those o shows as having had it already.
 * Counts in *users, *msgs (may be NULL) what was added.  Idempotent.
 */
enum relay_err relay_merge(struct relay *, int64_t now_ms,
    const struct relay *o, size_t *users, size_t *msgs);

/* Same replicated state (leader-local state is not compared). */
bool relay_equal(const struct relay *, const struct relay *);
/* 0 and *info filled, or -1 when there is no such user. */
int relay_user_get(
    const struct relay *, const char *name, struct relay_user_info *);
/*
 * The users as users.json records, appended to st (emptied first): name,
 * address, online state, rooms and password hash.  last_seen is now_wall for
 * online users and kept from prev (by name) for the others.  -1 on memory
 * failure, with st emptied.
 */
int relay_export_users(const struct relay *, const struct users_state *prev,
    int64_t now_wall, struct users_state *st);
/* Rooms in creation order: their number, and the i-th's name. */
size_t relay_room_count(const struct relay *);
const char *relay_room_at(const struct relay *, size_t i, size_t *members);
/* Members of a room, 0 when it does not exist. */
size_t relay_room_members(const struct relay *, const char *room);
size_t relay_online_count(const struct relay *);
/*
 * The i-th online user, 0 <= i < relay_online_count, in no particular
 * order: 0 and *info filled, or -1 past the end.  Logins and logouts
 * reorder the list: walk it with no relay call in between.
 */
int relay_online_get(const struct relay *, size_t i, struct relay_user_info *);
/* Bytes the relay has allocated now (the outbox included). */
size_t relay_memory(const struct relay *);

/* Never NULL: the wire code ("name_taken", ...). */
const char *relay_err_code(enum relay_err);
const char *relay_event_name(enum relay_event);
const char *relay_op_name(enum relay_op_type);

#endif
