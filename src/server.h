/* server: ringchatd's state and the glue between sockets and protocol. */
#ifndef RINGCHAT_SERVER_H
#define RINGCHAT_SERVER_H

#include <limits.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>

#include "auth.h"
#include "chat.h"
#include "control.h"
#include "election.h"
#include "events.h"
#include "heartbeat.h"
#include "log.h"
#include "loop.h"
#include "net.h"
#include "ratelimit.h"
#include "ring.h"
#include "sess.h"
#include "store.h"
#include "wire.h"

#define SERVER_DEFAULT_PORT	 45961
#define SERVER_DEFAULT_DISC_PORT 45960
#define SERVER_CONNS_MAX	 4

struct server_cfg {
	char name[RING_NAME_MAX];
	bool uuid_given;
	struct uuid uuid;
	char iface[NET_IFNAME_MAX]; /* empty: loopback */
	uint16_t port, ctl_port, disc_port;
	char state_dir[PATH_MAX];
	char peers_file[PATH_MAX];  /* empty: none */
	char events_file[PATH_MAX]; /* empty: none */
	bool recover;
	bool use_stdin;
	bool no_fsync;		 /* --fsync off: write(2) only, no fdatasync */
	char key_file[PATH_MAX]; /* --cluster-key; empty: the cluster is open */
	struct hb_cfg hb;
	struct election_cfg el;
	int64_t discovery_ms;	 /* no leader heard by then: elect */
	struct ratelimit_cfg rl; /* --rate-limit, --rate-burst */
	/* --max-users, --max-rooms, --max-queue; 0: the relay's default */
	uint32_t users_max, rooms_max, queue_max;
};

/* A server's replay window for its authenticated datagrams. */
struct s2s_peer {
	bool used;
	char id[UUID_STRLEN + 1];
	struct auth_window w;
	int64_t last_ms;
};

struct ctl_conn {
	int fd; /* -1: free */
	char buf[CTL_LINE_MAX + 1];
	size_t used;
	int64_t deadline_ms;
};

/* Counted reasons a datagram was dropped (besides wire errors). */
enum server_drop {
	DROP_NONMEMBER, /* control datagram from an unknown server */
	DROP_FORGED,	/* sender address does not match the member */
	DROP_FIELDS,	/* a required extension missing or malformed */
	DROP_KIND,	/* a kind not accepted on this port */
	DROP_SELF,	/* our own broadcast coming back */
	DROP_NMAX
};

struct server {
	struct server_cfg cfg;
	struct net_iface ifc;
	int data_fd, ctl_fd, disc_fd, ctlsock_fd;
	struct sockaddr_in disc_bcast; /* broadcast address : discovery port */
	char ctlsock_path[PATH_MAX];
	struct ring ring;
	struct election el;
	struct hb_follower hbf;
	struct hb_leader hbl;
	struct hb_revive hbr; /* probing the members believed dead */
	struct events ev;
	struct loop loop;
	struct servers_state peers; /* --peers: contacted like broadcast */
	int64_t start_ms;

	/* discovery: news repeated with backoff until a leader is known */
	bool discovering;
	int64_t disc_next_ms, disc_interval_ms, disc_deadline_ms;

	/* servers.json: written soon after a change, last_seen now and then */
	uint64_t servers_version;
	bool servers_dirty;
	int64_t servers_write_ms;
	int64_t servers_refresh_ms;

	/* client-asked elections are rate-limited */
	int64_t client_vote_ok_ms;
	/* quit: a leader hands over, then leaves */
	bool quitting;
	int64_t quit_deadline_ms;
	volatile int *stop_flag;

	/*
	 * The leader whose death started this election, confirmed by
	 * probes: votes carry it so the ring skips it at once instead of
	 * paying retries to repair around it.
	 */
	bool dead_hint_set;
	struct uuid dead_hint;
	uint64_t dead_hint_epoch;

	uint64_t probe_seq;
	uint64_t elections;
	uint64_t wire_errors[WIRE_NERR];
	uint64_t drops[DROP_NMAX];
	/* --cluster-key: server datagrams sealed and checked (src/auth.c) */
	bool keyed;
	struct auth_cluster cluster;
	struct auth_ctr ctr;
	uint64_t ctr_floor; /* counters recorded long before our start */
	struct s2s_peer s2s[RING_MAX];
	uint64_t auth_drops[AUTH_NERR];
	/*
	 * The client session (public key, base64url) of the client datagram
	 * being handled; "" for a plain one (an open cluster).
	 */
	char req_key[AUTH_PK_TEXT];
	/* keyed: the leader's client sessions (src/sess.c) */
	struct sess_table sess;
	uint64_t sess_drops[AUTH_NERR]; /* session datagrams refused */
	uint64_t plain_refused;		/* plain client datagrams refused */
	uint64_t tx_nosess;   /* client datagrams not sent: no session */
	double derive_tokens; /* X25519 derivations allowed now */
	int64_t derive_ms;    /* when the tokens were counted */
	int64_t hint_ok_ms;   /* plain answers to sealed or plain datagrams */
	uint32_t hints;	      /* sent since hint_ok_ms */
	int64_t sess_expire_ms;
	char pk_text[AUTH_PK_TEXT]; /* the cluster's public key, for clients */
	struct log_limit bad_limit;
	/* sources whose failed datagrams exceed their budget (ratelimit.h) */
	struct ratelimit rl;
	struct log_limit rl_limit;
	uint64_t rl_gen; /* the held sources the socket filters drop */
	/* MAC checks of strangers' news and member records, all together */
	struct ratelimit_bucket strangers;
	/* beats heard from the leader we follow, for status: gaps between */
	struct uuid beat_from;
	int64_t beat_last_ms, beat_gap_max_ms;
	uint64_t beats, beats_late; /* late: more than two periods apart */
	uint64_t rx, tx, tx_errors;

	struct chat chat; /* the relay and its replication */

	char stdin_buf[CTL_LINE_MAX + 1];
	size_t stdin_used;
	struct ctl_conn conns[SERVER_CONNS_MAX];
};

void server_cfg_defaults(struct server_cfg *);
/*
 * Loads identity and state, opens the sockets and the control socket.
 * Exits with a message naming the file or socket on failure: these are
 * start-up errors the operator must fix.
 */
void server_init(struct server *, const struct server_cfg *);
/* Renames a corrupt state file to PATH.corrupt-TIME (--recover). */
void server_move_aside(const char *path);
/* Runs until quit or *stop (set by a signal handler). */
int server_run(struct server *, volatile int *stop);
void server_shutdown(struct server *);

/* Sending, for the modules of the daemon (chat.c). */
/*
 * The answer to `where` for user `to` (lb holds the leader's UUID text
 * the message points to): -1 while no leader is known.
 */
int server_leader_msg(struct server *, const char *to, char lb[UUID_STRLEN + 1],
    struct wire_msg *);
void server_send(struct server *, int fd, const struct sockaddr_in *,
    const struct wire_msg *);
/* To a member's control port; nothing when it is unknown. */
void
server_send_member(struct server *, const struct uuid *, struct wire_msg *);
/*
 * Keyed cluster: datagrams to addr:port are sealed for the client session
 * whose public key is key (base64url), as after a failover, when the new
 * leader knows a session from the replicated users only.  0, or -1 when
 * the key is malformed or the cluster is open.
 */
int server_session_bind(
    struct server *, const char *key, const char *addr, uint16_t port);
/* Our UUID as text (a static buffer). */
const char *server_self_id(struct server *);

#endif
