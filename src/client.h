/* client: the chat client's session with the leader, as a pure state machine.
 */
#ifndef RINGCHAT_CLIENT_H
#define RINGCHAT_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ring.h"
#include "store.h"
#include "uuid.h"
#include "wire.h"

/*
 * Inputs are datagrams (decoded, with the address they came from), the
 * user's commands and the passage of time (now_ms, a monotonic clock the
 * caller reads); outputs are appended to c->out and handled by the
 * caller, who then calls client_drain.  No socket, clock or file call is
 * made here.  docs/RELAY.md describes the datagrams.
 *
 * The session: find the leader (`where`, broadcast or to --server, the
 * newest (epoch, leader) answer wins), log in (register first when the
 * relay does not know the name), keep it alive, send messages with
 * increasing cids and resend each until its `ok`, acknowledge and
 * de-duplicate deliveries.  A leader that leaves keepalives or a message
 * unanswered through every retry is given up: the client looks for the
 * new one, logs in again and resends what was not acknowledged with the
 * same cids, which the relay de-duplicates.  A new leader that says so
 * itself (an unasked `leader` from the address it names, with a newer
 * epoch) is followed the same way at once, without the search.
 */

/* Body bytes as encoded on the wire, as the relay's RELAY_BODY_MAX. */
#define CLIENT_BODY_MAX 1000
/*
 * Messages sent and not acknowledged at once: every cid in flight is
 * less than this above the lowest unacknowledged one, so a resend is
 * always within the relay's window of 16 accepted cids.
 */
#define CLIENT_INFLIGHT_MAX 8
#define CLIENT_QUEUE_MAX    256	 /* messages held, in flight included */
#define CLIENT_REQ_MAX	    32	 /* join, part, list requests queued */
#define CLIENT_STREAMS_MAX  1024 /* streams remembered for de-duplication */
#define CLIENT_ROOMS_MAX    USER_ROOMS_MAX
#define CLIENT_PARTS_MAX    4096 /* chunks of one list answer */
#define CLIENT_CODE_MAX	    32	 /* an error code, NUL included */
#define CLIENT_PW_MAX	    256	 /* bytes of a password, as AUTH_PW_MAX */
/*
 * Deliveries remembered per stream against repeats: the relay sends again
 * only what is still queued for us, at most its queue_max (128, all
 * streams together, docs/RELAY.md), or a room's history on a join (100).
 */
#define CLIENT_SEEN_MAX 128

enum client_state {
	CS_IDLE,      /* not started */
	CS_SEARCHING, /* asking who leads */
	CS_LOGIN,     /* login sent to the leader */
	CS_REGISTER,  /* newu sent: login said unknown_user */
	CS_ONLINE,    /* logged in */
	CS_LOGOUT,    /* logout sent */
	CS_DONE	      /* over: logged out, given up or refused */
};

struct client_cfg {
	int64_t alive_ms;     /* keepalive interval */
	int alive_misses;     /* keepalives unanswered: the leader is gone */
	int64_t retry_min_ms; /* first resend of a request or message */
	int64_t retry_max_ms; /* resend interval doubles up to this */
	int retries;	      /* resends unanswered: the leader is gone */
	int64_t where_min_ms; /* first repeat of `where` */
	int64_t where_max_ms; /* its interval doubles up to this */
	int64_t collect_ms;   /* after the first answer, wait for newer */
	int64_t search_ms;    /* no leader by then: CE_NO_SERVER; 0: never */
	int64_t vote_gap_ms;  /* at most one `vote` per this */
	bool where_only;      /* stop (CS_DONE) once the leader is known */
};

/* A leader as `where` answers name it. */
struct client_leader {
	bool known;
	uint64_t epoch;
	struct uuid uuid;
	char name[RING_NAME_MAX];
	char addr[RING_ADDR_MAX];
	uint16_t port;
};

enum client_out_type {
	CO_SEND, /* the datagram data[0 .. len-1] */
	CO_EVENT
};

enum client_event {
	CE_LEADER,	/* a leader to log in to: leader */
	CE_READY,	/* logged in for the first time */
	CE_RECONNECTED, /* logged in again; n: messages sent again */
	CE_LOST,	/* the leader stopped answering; text: why */
	CE_MESSAGE,	/* a delivery to show: id, seq, from, to, text */
	CE_SENT,	/* message cid to `to` has its cid and is on its way */
	CE_ACKED,	/* the relay accepted message cid as id */
	CE_ERROR,  /* code, text; cid when has_cid; fatal ends the session */
	CE_LIST,   /* what; to: the room (who); text: names, space-separated */
	CE_JOINED, /* to: the room */
	CE_PARTED, /* to: the room */
	CE_VOTE,   /* a server took the election request; text: its answer */
	CE_NO_SERVER, /* search_ms passed without a leader; text: why */
	CE_BYE	      /* the session is over (logged out or given up) */
};

struct client_out {
	enum client_out_type type;
	/* SEND: to the discovery destination, or to addr:port */
	bool discovery;
	char addr[RING_ADDR_MAX];
	uint16_t port;
	size_t len;
	char data[WIRE_MAX];
	/* EVENT */
	enum client_event ev;
	bool fatal;
	bool has_cid;
	uint64_t id, seq, cid, n;
	char from[USER_NAME_MAX];
	char to[ROOM_NAME_MAX];
	char code[CLIENT_CODE_MAX];
	const char *what; /* CE_LIST: "rooms", "who" or "users" */
	struct client_leader leader;
	char *text; /* malloc'd or NULL; released by client_drain */
};

/* A request's resends: after retry_min_ms, doubling up to retry_max_ms. */
struct client_retry {
	bool sent;    /* to the leader of this session */
	int attempts; /* sends to it */
	int64_t due;  /* the next resend */
	int64_t gap;
};

struct client_pending; /* a message until its ok */
struct client_req;     /* a join, part or list request */
struct client_stream;  /* the deliveries last shown per stream */

/* All state; the fields are private to client.c apart from cfg and out. */
struct client {
	struct client_cfg cfg;
	char user[USER_NAME_MAX];
	/* sent as `pw` with login and newu when set (inside a session) */
	char password[CLIENT_PW_MAX + 1];
	bool has_password;
	enum client_state state;
	bool ever_online; /* the next login is a reconnection */
	bool quitting;
	int64_t quit_deadline;

	struct client_leader leader; /* the one we talk to */
	struct client_leader best;   /* the newest answer while searching */
	struct client_leader dead;   /* the one given up, until replaced */
	int64_t search_start, where_due, where_gap, collect_due, vote_due;
	int64_t vote_until; /* bare ok answers are votes' until then */
	bool no_server_said;
	bool dead_named; /* answers named the leader given up on */
	int redirects;	 /* not_leader answers since the last login */

	struct client_retry sess; /* login, newu or logout */

	/* keepalive */
	int64_t alive_due;
	bool heard; /* anything from the leader since the last alive */
	int missed;

	/*
	 * Order of the user's commands: a message waits for the requests
	 * given before it, a request for the messages before it.
	 */
	uint64_t next_seq;

	/* messages by cid, ascending */
	uint64_t next_cid;
	struct client_pending *pend;
	size_t npend;

	/* other requests, first in flight */
	struct client_req *req;
	size_t nreq;
	char **parts; /* list chunks of the request in flight */
	uint32_t nparts, gotparts;

	struct client_stream *streams;
	size_t nstreams;

	/* joined or being joined; the last one is the current room */
	char rooms[CLIENT_ROOMS_MAX][ROOM_NAME_MAX];
	size_t nrooms;

	struct client_out *out;
	size_t nout, capout;

	/* counters */
	uint64_t acked, delivered, duplicates, resends, failovers, lost;
};

void client_cfg_defaults(struct client_cfg *);
/* -1 when user is not 1 to 31 bytes or cfg is out of range. */
int client_init(struct client *, const struct client_cfg *, const char *user);
void client_free(struct client *);
/* Releases the outputs out[0 .. nout-1]; call after handling them. */
void client_drain(struct client *);

/*
 * The password login and newu carry from now on (the caller sends them
 * only inside an encrypted session).  -1 when not 1 to CLIENT_PW_MAX
 * bytes or with a NUL; pw NULL forgets it.
 */
int client_set_password(struct client *, const char *pw, size_t len);
/* Starts looking for the leader. */
void client_start(struct client *, int64_t now_ms);
/* A datagram from addr:port (dotted IPv4); anything malformed is ignored. */
void client_on_datagram(struct client *, int64_t now_ms,
    const struct wire_msg *, const char *addr, uint16_t port);
/* Resends, keepalives, searching: whatever is due. */
void client_tick(struct client *, int64_t now_ms);
/* The earliest time client_tick has work; INT64_MAX when none. */
int64_t client_next_deadline(const struct client *);

/*
 * A message to a user, "#room" or "*".  0 when it is queued (CE_SENT
 * with its cid); -1 with a CE_ERROR when it is refused here: too long,
 * empty or not UTF-8, a bad destination, a full queue, not logged in
 * yet.  Nothing is ever truncated.
 */
int
client_send(struct client *, int64_t now_ms, const char *to, const char *body);
/* To the current room; -1 with CE_ERROR not_in_room when there is none. */
int client_say(struct client *, int64_t now_ms, const char *body);
int client_join(struct client *, int64_t now_ms, const char *room);
/* room NULL: the current room. */
int client_part(struct client *, int64_t now_ms, const char *room);
/* kind WK_ROOMS, WK_WHO (room NULL: the current one) or WK_USERS. */
int client_list(
    struct client *, int64_t now_ms, enum wire_kind kind, const char *room);
/* Asks the servers for an election (broadcast). */
void client_vote(struct client *, int64_t now_ms);
/*
 * Ends the session once every message is acknowledged, or at deadline
 * (absolute, INT64_MAX: never) with a CE_ERROR "unacknowledged"; then
 * logs out and emits CE_BYE.
 */
void client_quit(struct client *, int64_t now_ms, int64_t deadline_ms);

/* Messages not acknowledged yet (queued ones included). */
size_t client_unacked(const struct client *);
/* No room for another message: stop reading input for a while. */
bool client_queue_full(const struct client *);
/* The current room, NULL when none. */
const char *client_room(const struct client *);

/*
 * The local check of a body: NULL when it may be sent, else the relay's
 * code for it ("too_long", "bad_body").  *enclen: its encoded length.
 */
const char *client_body_check(const char *body, size_t *enclen);
/* Bytes of s as wire.c encodes them (an escaped byte counts 3). */
size_t client_encoded_len(const char *s);
/* Never NULL: a human sentence for an error code. */
const char *client_code_text(const char *code);
const char *client_state_name(enum client_state);

#endif
