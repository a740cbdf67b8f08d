/* wire: the datagram codec, kind@to@body@from[@key=value]..., escaped UTF-8. */
#ifndef RINGCHAT_WIRE_H
#define RINGCHAT_WIRE_H

#include <stddef.h>
#include <stdint.h>

/* One Ethernet frame of UDP payload: nothing we send ever fragments. */
#define WIRE_MAX     1472
#define WIRE_EXT_MAX 16 /* extension fields per datagram */
#define WIRE_KEY_MAX 15 /* bytes in an extension key */

/*
 * Every kind the protocol knows.  The decoder rejects any other with
 * WIRE_EKIND_UNKNOWN.  docs/PROTOCOL.md describes each.
 */
enum wire_kind {
	WK_NONE = 0,
	/* server to server, on the control port */
	WK_NEWS,     /* announcement of a server (discovery) */
	WK_MEMBER,   /* unicast answer to news: one member's record */
	WK_VOTING,   /* LCR election hop */
	WK_LEADER,   /* election result */
	WK_ACK,	     /* acknowledgement of a hop, a leader announcement, ... */
	WK_BEAT,     /* leader heartbeat */
	WK_BEATACK,  /* member's answer to a heartbeat */
	WK_PROBE,    /* failure-detector probe, direct or relayed */
	WK_PROBEACK, /* answer to a probe */
	WK_BYE,	     /* a server leaving on purpose */
	WK_REPL,     /* replication of a state change */
	WK_SNAP,     /* a chunk of a full snapshot */
	WK_NEED,     /* a backup asking for what it missed */
	/* client and server, on the data port (and where/vote on discovery) */
	WK_WHERE,  /* client asking who leads */
	WK_VOTE,   /* client (or operator) asking for an election */
	WK_NEWU,   /* register a user */
	WK_LOGIN,  /* log in */
	WK_LOGOUT, /* log out */
	WK_MSG,	   /* a chat message */
	WK_JOIN,   /* join a room */
	WK_PART,   /* leave a room */
	WK_ROOMS,  /* list rooms */
	WK_WHO,	   /* list a room's members */
	WK_USERS,  /* list users */
	WK_ALIVE,  /* client keepalive */
	WK_OK,	   /* positive answer */
	WK_ERR,	   /* negative answer; body says why */
	WK_COUNT
};

/* Distinct decoder errors; each one is counted by the daemon. */
enum wire_err {
	WIRE_OK = 0,
	WIRE_ETOOBIG,	     /* datagram or encoded result over WIRE_MAX */
	WIRE_EFIELDS,	     /* fewer than four '@'-separated fields */
	WIRE_EKIND_EMPTY,    /* empty kind */
	WIRE_EKIND_UNKNOWN,  /* kind not in the table */
	WIRE_EESCAPE,	     /* '%' not followed by two hex digits */
	WIRE_ENUL,	     /* raw or escaped NUL byte */
	WIRE_EUTF8,	     /* a field is not valid UTF-8 once unescaped */
	WIRE_EEXT_MALFORMED, /* extension without '=', empty or bad key */
	WIRE_EEXT_DUP,	     /* the same key twice */
	WIRE_EEXT_TOOMANY,   /* more than WIRE_EXT_MAX extensions */
	WIRE_EARG,	     /* NULL argument, bad kind or key, non-UTF-8 */
	WIRE_NERR
};

struct wire_ext {
	const char *key;
	const char *val;
};

/*
 * A datagram.  After wire_decode the pointers point into buf (decoding
 * only shrinks, so buf is big enough by construction).  When building a
 * message to send, the pointers are the caller's and must stay valid
 * until wire_encode; wire_add_u64 keeps its digits in num[].  Pointers
 * into buf and num[] do not follow a copy of the struct.
 */
struct wire_msg {
	enum wire_kind kind;
	const char *to;
	const char *body;
	const char *from;
	int next; /* number of extensions */
	struct wire_ext ext[WIRE_EXT_MAX];
	char num[WIRE_EXT_MAX][24];
	char buf[WIRE_MAX + 1];
};

/* Starts a message to send; to, body, from must not be NULL. */
void wire_init(struct wire_msg *, enum wire_kind, const char *to,
    const char *body, const char *from);
/*
 * Adds an extension (pointers kept, not copied); returns -1 when full,
 * when the key is invalid or already present, or val is NULL.
 */
int wire_add(struct wire_msg *, const char *key, const char *val);
int wire_add_u64(struct wire_msg *, const char *key, uint64_t val);

/*
 * Encodes into out (outsz bytes, no NUL written past *len).  Returns
 * WIRE_OK, WIRE_ETOOBIG when the datagram would exceed WIRE_MAX or outsz,
 * or WIRE_EARG (NULL field, kind not in the table, bad or repeated key,
 * a field or value that is not valid UTF-8: what the decoder would refuse).
 * On error out and *len are untouched.
 */
enum wire_err
wire_encode(const struct wire_msg *, char *out, size_t outsz, size_t *len);

/*
 * Decodes len bytes of data.  On error *m is unspecified but safe: kind
 * is WK_NONE, to, body and from are "" and there are no extensions.
 */
enum wire_err wire_decode(struct wire_msg *m, const void *data, size_t len);

/* Bytes the n bytes of s take in a field once escaped. */
size_t wire_escaped_len(const char *s, size_t n);

/* Extension lookup: NULL when absent. */
const char *wire_get(const struct wire_msg *, const char *key);
/* Strict decimal parse of an extension: -1 when absent or malformed. */
int wire_get_u64(const struct wire_msg *, const char *key, uint64_t *out);

/* Never NULL: "none" for WK_NONE, "?" out of range. */
const char *wire_kind_name(enum wire_kind);
/* Exact, case-sensitive; WK_NONE for anything not a kind (even "none"). */
enum wire_kind wire_kind_from_name(const char *);
const char *wire_strerror(enum wire_err);

#endif
