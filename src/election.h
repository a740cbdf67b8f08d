/* election: LeLann-Chang-Roberts leader election as a pure state machine. */
#ifndef RINGCHAT_ELECTION_H
#define RINGCHAT_ELECTION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ring.h"
#include "uuid.h"

/*
 * Inputs are received messages and the passage of time (now_ms, a
 * monotonic clock the caller reads); outputs are appended to e->out and
 * drained by the caller after every call.  No socket, clock or file call
 * is made here, so the simulator in tests/sim drives it directly.
 *
 * Epochs order elections: a server ignores votes, leader announcements
 * and heartbeats of an epoch older than its own.  Leaders compare as the
 * pair (epoch, uuid).
 */

enum election_role {
	ROLE_STARTING, /* just started, looking for a leader (discovery) */
	ROLE_ELECTING, /* an election is under way, no leader known */
	ROLE_BACKUP,   /* follows a leader */
	ROLE_LEADER
};

enum el_out_type {
	EL_SEND_VOTING,	 /* to: hop of (epoch, candidate), needs an ack */
	EL_SEND_ACK,	 /* to: acknowledges hop `hop` of epoch */
	EL_SEND_LEADER,	 /* to: announces (epoch, leader), needs an ack */
	EL_BCAST_LEADER, /* broadcast (epoch, leader) for clients */
	EL_EVENT	 /* something to log / put in the event file */
};

enum el_event {
	EL_EV_START,	   /* election started: epoch, detail = reason */
	EL_EV_FORWARD,	   /* forwarded candidate to `to` */
	EL_EV_REPLACE,	   /* replaced a smaller candidate with self */
	EL_EV_DROP,	   /* dropped a smaller candidate (already voted) */
	EL_EV_WIN,	   /* own UUID came back: elected */
	EL_EV_ADOPT,	   /* adopted leader `candidate` of epoch */
	EL_EV_STEP_DOWN,   /* was leader, a newer leader exists */
	EL_EV_MEMBER_DEAD, /* `to` did not acknowledge after retries */
	EL_EV_TIMEOUT,	   /* election did not end in time: restarting */
	EL_EV_ROLE,	   /* role changed: old_role -> new_role */
	EL_EV_STALE	   /* ignored a message of an older epoch */
};

struct el_out {
	enum el_out_type type;
	struct uuid to; /* destination (SEND_*) or subject (events) */
	uint64_t epoch;
	struct uuid candidate; /* voting: candidate; leader: the leader */
	uint64_t hop;	       /* hop id: echoed by the ack */
	enum el_event ev;
	enum election_role old_role, new_role;
	const char *detail; /* static string, may be NULL */
};

struct election_cfg {
	int64_t retry_ms;   /* resend an unacknowledged hop after this */
	int retries;	    /* resends before the neighbour is marked dead */
	int64_t timeout_ms; /* an election not over by then restarts */
};

#define EL_PENDING_MAX (RING_MAX + 8)
#define EL_OUT_MAX     (4 * RING_MAX + 32)
#define EL_SEEN_MAX    (2 * RING_MAX) /* hops remembered against duplicates */

struct el_pending {
	bool used;
	bool is_leader_msg; /* EL_SEND_LEADER, else EL_SEND_VOTING */
	struct uuid to;
	uint64_t epoch;
	struct uuid candidate;
	uint64_t hop;
	int tries;
	int64_t next_ms;
};

/* A voting or leader hop already processed: a duplicate is only acked. */
struct el_seen {
	bool used;
	bool is_leader_msg;
	struct uuid from;
	uint64_t epoch;
	uint64_t hop;
	struct uuid candidate; /* a restarted sender may reuse hop ids */
};

struct election {
	struct election_cfg cfg;
	struct uuid self;
	enum election_role role;
	uint64_t epoch;	 /* highest epoch seen */
	bool has_leader; /* leader known for `epoch` */
	struct uuid leader;
	bool participant;    /* sent or forwarded a vote in `epoch` */
	bool abstain;	     /* handing over: never a candidate */
	int64_t deadline_ms; /* election timeout, INT64_MAX when none */
	/*
	 * Hop ids start at 1; the caller may seed next_hop after
	 * election_init (arc4random) so that a restarted server does not
	 * reuse the ids of its previous life.
	 */
	uint64_t next_hop;
	struct el_pending pending[EL_PENDING_MAX];
	struct el_out out[EL_OUT_MAX];
	size_t nout;
	uint64_t votes_sent;   /* voting datagrams sent, resends included */
	uint64_t leaders_sent; /* leader datagrams sent, resends included */
	uint64_t out_overflow; /* outputs lost to a full outbox (a bug) */
	/*
	 * Added to the first contract.  best: the highest candidate sent or
	 * passed on in `epoch`, nil when none; a server wins only when its
	 * UUID comes back and best is itself.
	 */
	struct uuid best;
	struct el_seen seen[EL_SEEN_MAX];
	size_t seen_next;	   /* ring buffer cursor into seen[] */
	uint64_t dups;		   /* duplicate hops acked and ignored */
	uint64_t pending_overflow; /* hops sent untracked: table full (a bug) */
};

void election_init(struct election *, const struct uuid *self,
    const struct election_cfg *, uint64_t epoch);
/*
 * Starts an election of epoch max(seen)+1.  reason is a static string
 * for the log.  With abstain the server hands over: it sends the nil
 * UUID as candidate and never wins (a leader that quits).
 */
void election_start(struct election *, struct ring *, int64_t now_ms,
    const char *reason, bool abstain);
void election_on_voting(struct election *, struct ring *, int64_t now_ms,
    const struct uuid *from, uint64_t epoch, const struct uuid *candidate,
    uint64_t hop);
void election_on_ack(struct election *, struct ring *, int64_t now_ms,
    const struct uuid *from, uint64_t epoch, uint64_t hop);
void election_on_leader(struct election *, struct ring *, int64_t now_ms,
    const struct uuid *from, uint64_t epoch, const struct uuid *leader,
    uint64_t hop);
/*
 * A leader seen some other way (heartbeat, discovery answer, a member's
 * beatack naming its leader).  Adopts it when (epoch, leader) is newer
 * than what is known; a leader steps down for a newer one.  Returns 1
 * when adopted or already current, 0 when stale (ignored).
 */
int election_observe_leader(struct election *, struct ring *, int64_t now_ms,
    uint64_t epoch, const struct uuid *leader);
/*
 * Arms the discovery deadline of a server in ROLE_STARTING: when no
 * leader has been learnt by now + wait_ms, election_tick starts an
 * election.  Does nothing in another role.
 */
void election_discover(struct election *, int64_t now_ms, int64_t wait_ms);
/* Resends, ring repair, election timeout. */
void election_tick(struct election *, struct ring *, int64_t now_ms);
/* The earliest time election_tick has work; INT64_MAX when none. */
int64_t election_next_deadline(const struct election *);
/* Forgets the outbox (call after handling e->out[0 .. nout-1]). */
void election_drain(struct election *);

const char *election_role_name(enum election_role);
/* The event's name in the --events file (docs/PROTOCOL.md). */
const char *election_event_name(enum el_event);

#endif
