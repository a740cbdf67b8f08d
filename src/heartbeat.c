/* heartbeat: the leader's beats and the backups' failure detector, pure. */
#include <string.h>

#include "heartbeat.h"

/* Keeps a bad configuration from dividing by zero or spinning. */
static void
hb_cfg_sanitize(struct hb_cfg *c)
{
	if (c->interval_ms < 1)
		c->interval_ms = 1;
	if (c->misses < 1)
		c->misses = 1;
	if (c->probe_window_ms < 1)
		c->probe_window_ms = 1;
	if (c->probe_tries < 1)
		c->probe_tries = 1;
	if (c->dead_retry_ms < 1)
		c->dead_retry_ms = 1;
}

/* Silence tolerated before suspicion: K missed beats and half a beat. */
static int64_t
hb_silence_limit(const struct hb_cfg *c)
{
	return (int64_t)c->misses * c->interval_ms + c->interval_ms / 2;
}

static int64_t
hb_probe_step(const struct hb_cfg *c)
{
	int64_t step = c->probe_window_ms / c->probe_tries;

	return step > 0 ? step : 1;
}

void
hb_follower_init(struct hb_follower *f, const struct hb_cfg *cfg)
{
	memset(f, 0, sizeof(*f));
	f->cfg = *cfg;
	hb_cfg_sanitize(&f->cfg);
	f->state = HB_IDLE;
}

void
hb_follower_watch(struct hb_follower *f, int64_t now_ms)
{
	f->state = HB_OK;
	f->last_beat_ms = now_ms;
	f->probes_sent = 0;
}

void
hb_follower_stop(struct hb_follower *f)
{
	f->state = HB_IDLE;
	f->probes_sent = 0;
}

/* Any sign of the leader's life: a suspicion it ends is refuted. */
static void
hb_follower_alive(struct hb_follower *f, int64_t now_ms)
{
	if (f->state == HB_SUSPECT)
		f->refuted++;
	f->state = HB_OK;
	f->last_beat_ms = now_ms;
	f->probes_sent = 0;
}

void
hb_follower_on_beat(struct hb_follower *f, int64_t now_ms)
{
	if (f->state == HB_IDLE)
		return;
	hb_follower_alive(f, now_ms);
}

void
hb_follower_on_probeack(
    struct hb_follower *f, int64_t now_ms, uint64_t probe_id)
{
	/*
	 * A late answer to an old probe proves nothing about now; id 0 is
	 * never a suspicion's (it answers a liveness probe, hb_revive).
	 */
	if (f->state != HB_SUSPECT || probe_id == 0 || probe_id != f->probe_id)
		return;
	hb_follower_alive(f, now_ms);
}

enum hb_action
hb_follower_tick(struct hb_follower *f, int64_t now_ms)
{
	int64_t step = hb_probe_step(&f->cfg);

	switch (f->state) {
	case HB_IDLE:
		return HB_NONE;
	case HB_OK:
		if (now_ms < f->last_beat_ms + hb_silence_limit(&f->cfg))
			return HB_NONE;
		f->state = HB_SUSPECT;
		f->suspect_since_ms = now_ms;
		f->suspicions++;
		if (++f->probe_id == 0) /* 0 is the liveness probes' id */
			f->probe_id = 1;
		f->probes_sent = 1;
		f->next_probe_ms = now_ms + step;
		return HB_PROBE;
	case HB_SUSPECT:
		if (now_ms >= f->suspect_since_ms + f->cfg.probe_window_ms) {
			/* reported once; watching again takes a new leader */
			f->state = HB_IDLE;
			f->probes_sent = 0;
			return HB_DEAD;
		}
		if (f->probes_sent >= f->cfg.probe_tries ||
		    now_ms < f->next_probe_ms)
			return HB_NONE;
		f->probes_sent++;
		/* a late tick sends one probe, not the ones it missed */
		do
			f->next_probe_ms += step;
		while (f->next_probe_ms <= now_ms);
		return HB_PROBE;
	}
	return HB_NONE;
}

int64_t
hb_follower_next_deadline(const struct hb_follower *f)
{
	int64_t end;

	switch (f->state) {
	case HB_IDLE:
		return INT64_MAX;
	case HB_OK:
		return f->last_beat_ms + hb_silence_limit(&f->cfg);
	case HB_SUSPECT:
		end = f->suspect_since_ms + f->cfg.probe_window_ms;
		if (f->probes_sent < f->cfg.probe_tries &&
		    f->next_probe_ms < end)
			return f->next_probe_ms;
		return end;
	}
	return INT64_MAX;
}

int
hb_follower_missed(const struct hb_follower *f, int64_t now_ms)
{
	int64_t d;

	if (f->state == HB_IDLE || now_ms <= f->last_beat_ms)
		return 0;
	d = (now_ms - f->last_beat_ms) / f->cfg.interval_ms;
	return d > INT32_MAX ? INT32_MAX : (int)d;
}

void
hb_leader_init(struct hb_leader *l, const struct hb_cfg *cfg)
{
	memset(l, 0, sizeof(*l));
	l->cfg = *cfg;
	hb_cfg_sanitize(&l->cfg);
	l->active = false;
	l->next_round_ms = INT64_MAX;
	l->next_dead_round_ms = INT64_MAX;
}

void
hb_leader_start(struct hb_leader *l, int64_t now_ms)
{
	/* a new leader beats everyone at once, the presumed dead included */
	l->active = true;
	l->next_round_ms = now_ms;
	l->next_dead_round_ms = now_ms;
	l->started_ms = now_ms;
	l->seq = 0;
}

void
hb_leader_stop(struct hb_leader *l)
{
	l->active = false;
	l->next_round_ms = INT64_MAX;
	l->next_dead_round_ms = INT64_MAX;
}

/* Advances a periodic deadline past now without bursts after a stall. */
static void
hb_advance(int64_t *next, int64_t period, int64_t now_ms)
{
	*next += period;
	if (*next <= now_ms)
		*next = now_ms + period;
}

int
hb_leader_tick(struct hb_leader *l, int64_t now_ms)
{
	int bits = 0;

	if (!l->active)
		return 0;
	if (now_ms >= l->next_round_ms) {
		bits |= HB_ROUND_LIVE;
		l->seq++;
		hb_advance(&l->next_round_ms, l->cfg.interval_ms, now_ms);
	}
	if (now_ms >= l->next_dead_round_ms) {
		bits |= HB_ROUND_DEAD;
		hb_advance(
		    &l->next_dead_round_ms, l->cfg.dead_retry_ms, now_ms);
	}
	return bits;
}

int64_t
hb_leader_next_deadline(const struct hb_leader *l)
{
	if (!l->active)
		return INT64_MAX;
	return l->next_round_ms < l->next_dead_round_ms ? l->next_round_ms
							: l->next_dead_round_ms;
}

size_t
hb_leader_reap(const struct hb_leader *l, struct ring *r, int64_t now_ms,
    struct uuid *dead, size_t max)
{
	int64_t limit = hb_silence_limit(&l->cfg), since;
	struct member *m;
	size_t i, k = 0;

	/* only a leader beating its members knows who stopped answering */
	if (!l->active)
		return 0;
	for (i = 0; i < r->n && k < max; i++) {
		m = &r->m[i];
		if (!m->alive || uuid_cmp(&m->uuid, &r->self) == 0)
			continue;
		since = m->last_seen_ms > l->started_ms ? m->last_seen_ms
							: l->started_ms;
		if (since >= now_ms - limit)
			continue;
		if (ring_set_alive(r, &m->uuid, false) == 1)
			dead[k++] = m->uuid;
	}
	return k;
}

void
hb_revive_init(struct hb_revive *v, const struct hb_cfg *cfg)
{
	memset(v, 0, sizeof(*v));
	v->cfg = *cfg;
	hb_cfg_sanitize(&v->cfg);
	v->active = false;
	v->next_round_ms = INT64_MAX;
}

void
hb_revive_start(struct hb_revive *v, int64_t now_ms)
{
	if (v->active)
		return;
	v->active = true;
	v->next_round_ms = now_ms;
}

void
hb_revive_stop(struct hb_revive *v)
{
	v->active = false;
	v->next_round_ms = INT64_MAX;
}

bool
hb_revive_tick(struct hb_revive *v, int64_t now_ms)
{
	if (!v->active || now_ms < v->next_round_ms)
		return false;
	hb_advance(&v->next_round_ms, v->cfg.dead_retry_ms, now_ms);
	v->rounds++;
	return true;
}

int64_t
hb_revive_next_deadline(const struct hb_revive *v)
{
	return v->active ? v->next_round_ms : INT64_MAX;
}

size_t
hb_revive_targets(const struct ring *r, struct uuid *out, size_t max)
{
	size_t i, k = 0;

	for (i = 0; i < r->n && k < max; i++)
		if (!r->m[i].alive && uuid_cmp(&r->m[i].uuid, &r->self) != 0)
			out[k++] = r->m[i].uuid;
	return k;
}
