/* heartbeat: the leader's beats and the backups' failure detector, pure. */
#ifndef RINGCHAT_HEARTBEAT_H
#define RINGCHAT_HEARTBEAT_H

#include <stdbool.h>
#include <stdint.h>

#include "ring.h"

/*
 * Backups count consecutive missed beats: after `misses` beat intervals
 * (and half an interval of grace) without one, the leader is suspect.
 * Suspicion is confirmed before death is declared, as SWIM does: the
 * backup probes the leader directly and through up to HB_INDIRECT other
 * members; any answer within the probe window clears the suspicion.
 * The caller reads the clock and does the sending.
 */

#define HB_INDIRECT 2

struct hb_cfg {
	int64_t interval_ms;	 /* leader beat period */
	int misses;		 /* missed beats before suspicion */
	int64_t probe_window_ms; /* time allowed for a probe answer */
	int probe_tries;	 /* probes sent within the window */
	int64_t dead_retry_ms;	 /* beat period to members thought dead */
};

enum hb_action {
	HB_NONE,
	HB_PROBE, /* send a probe (id hb->probe_id) to the leader, directly
		     and through other members */
	HB_DEAD	  /* the leader is dead: start an election */
};

enum hb_state { HB_IDLE, HB_OK, HB_SUSPECT };

struct hb_follower {
	struct hb_cfg cfg;
	enum hb_state state;
	int64_t last_beat_ms;
	int64_t suspect_since_ms;
	int64_t next_probe_ms;
	int probes_sent;
	uint64_t probe_id;   /* of the last suspicion, never 0; may be seeded
				after init */
	uint64_t suspicions; /* times the leader became suspect */
	uint64_t refuted;    /* suspicions cleared (a beat or a probe answer) */
};

void hb_follower_init(struct hb_follower *, const struct hb_cfg *);
/* Starts watching a (new) leader. */
void hb_follower_watch(struct hb_follower *, int64_t now_ms);
/* Stops watching (we are leader, or electing). */
void hb_follower_stop(struct hb_follower *);
void hb_follower_on_beat(struct hb_follower *, int64_t now_ms);
/* A probe answer for probe_id, direct or relayed; id 0 never refutes. */
void hb_follower_on_probeack(
    struct hb_follower *, int64_t now_ms, uint64_t probe_id);
enum hb_action hb_follower_tick(struct hb_follower *, int64_t now_ms);
int64_t hb_follower_next_deadline(const struct hb_follower *);
/* Whole beat intervals since the last beat: the missed-beat counter. */
int hb_follower_missed(const struct hb_follower *, int64_t now_ms);

/*
 * Leader side: when to send the next round of beats, and which members
 * have not answered for `misses` intervals (marked dead in the ring,
 * still beaten every dead_retry_ms so a healed partition is noticed).
 */
struct hb_leader {
	struct hb_cfg cfg;
	bool active;
	int64_t next_round_ms;
	int64_t next_dead_round_ms;
	int64_t started_ms; /* when hb_leader_start was called */
	uint64_t seq;	    /* live rounds since hb_leader_start */
};

void hb_leader_init(struct hb_leader *, const struct hb_cfg *);
void hb_leader_start(struct hb_leader *, int64_t now_ms);
void hb_leader_stop(struct hb_leader *);
/*
 * Returns a bit set: HB_ROUND_LIVE to beat live members now,
 * HB_ROUND_DEAD to beat members thought dead now.  Advances the deadlines.
 */
#define HB_ROUND_LIVE 1
#define HB_ROUND_DEAD 2
int hb_leader_tick(struct hb_leader *, int64_t now_ms);
int64_t hb_leader_next_deadline(const struct hb_leader *);
/*
 * Marks dead the live members (not self) silent for longer than
 * misses * interval (+ half an interval).  Fills dead[] with their
 * UUIDs (up to max) and returns how many changed.  Silence is counted
 * from last_seen_ms or from hb_leader_start, whichever is later, so a
 * new leader does not reap members it simply has not heard yet.  At most
 * max members are marked per call; the others are reaped by the next.
 */
size_t hb_leader_reap(const struct hb_leader *, struct ring *, int64_t now_ms,
    struct uuid *dead, size_t max);

/*
 * Every server that does not lead probes the members it believes dead
 * once per dead_retry_ms, as the leader beats them.  Liveness is learnt
 * only from datagrams a member sends, and backups talk only to their
 * leader, so without this a member that comes back (a healed partition,
 * a leader that was cut off) stays "down" for every backup, and they for
 * it.  A probe proves the prober alive to its target and the answer the
 * target to the prober: one round makes both views agree.
 */
struct hb_revive {
	struct hb_cfg cfg;
	bool active;
	int64_t next_round_ms;
	uint64_t rounds; /* rounds since init */
};

void hb_revive_init(struct hb_revive *, const struct hb_cfg *);
/*
 * Starts the rounds with one at once (a leader stepping down believes
 * many members dead); does nothing when they are already running, so
 * role changes cannot speed them up.
 */
void hb_revive_start(struct hb_revive *, int64_t now_ms);
void hb_revive_stop(struct hb_revive *);
/*
 * True when a round is due: the caller probes every member that
 * hb_revive_targets lists.  Advances the deadline, one round after a
 * stall, not a burst.
 */
bool hb_revive_tick(struct hb_revive *, int64_t now_ms);
int64_t hb_revive_next_deadline(const struct hb_revive *);
/* The members (never self) believed dead, up to max; returns how many. */
size_t hb_revive_targets(const struct ring *, struct uuid *out, size_t max);

#endif
