/* loop: one poll(2) loop; timers are absolute CLOCK_MONOTONIC deadlines. */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "loop.h"

int64_t
loop_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
loop_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void
loop_init(struct loop *l)
{
	memset(l, 0, sizeof(*l));
}

int
loop_add_fd(struct loop *l, int fd, int prio, loop_fd_cb cb, void *arg)
{
	int i;

	if (l->nfds == LOOP_FDS_MAX)
		return -1;
	/* Keep the array sorted by priority so poll order is service order. */
	for (i = l->nfds; i > 0 && l->fds[i - 1].prio > prio; i--)
		l->fds[i] = l->fds[i - 1];
	l->fds[i].fd = fd;
	l->fds[i].prio = prio;
	l->fds[i].cb = cb;
	l->fds[i].arg = arg;
	l->nfds++;
	return 0;
}

void
loop_del_fd(struct loop *l, int fd)
{
	int i;

	for (i = 0; i < l->nfds; i++) {
		if (l->fds[i].fd != fd)
			continue;
		memmove(&l->fds[i], &l->fds[i + 1],
		    (size_t)(l->nfds - i - 1) * sizeof(l->fds[0]));
		l->nfds--;
		return;
	}
}

int
loop_add_timer(struct loop *l, int64_t after_ms, loop_timer_cb cb, void *arg)
{
	int i;

	for (i = 0; i < LOOP_TIMERS_MAX; i++) {
		if (l->timers[i].used)
			continue;
		l->timers[i].used = true;
		l->timers[i].deadline_ms = loop_now_ms() + after_ms;
		l->timers[i].cb = cb;
		l->timers[i].arg = arg;
		return i;
	}
	return -1;
}

void
loop_del_timer(struct loop *l, int id)
{
	if (id >= 0 && id < LOOP_TIMERS_MAX)
		l->timers[id].used = false;
}

void
loop_rearm_timer(struct loop *l, int id, int64_t after_ms)
{
	if (id >= 0 && id < LOOP_TIMERS_MAX && l->timers[id].used)
		l->timers[id].deadline_ms = loop_now_ms() + after_ms;
}

void
loop_set_owner(struct loop *l, loop_deadline_cb d, loop_tick_cb t, void *arg)
{
	l->deadline_cb = d;
	l->tick_cb = t;
	l->owner = arg;
}

void
loop_stop(struct loop *l)
{
	l->stop = 1;
}

/* An fd removed by an earlier callback of this round is not served. */
static bool
loop_has_fd(const struct loop *l, const struct loop_fd *f)
{
	int i;

	for (i = 0; i < l->nfds; i++)
		if (l->fds[i].fd == f->fd && l->fds[i].cb == f->cb)
			return true;
	return false;
}

static int64_t
loop_next_deadline(struct loop *l)
{
	int64_t next = INT64_MAX;
	int i;

	for (i = 0; i < LOOP_TIMERS_MAX; i++)
		if (l->timers[i].used && l->timers[i].deadline_ms < next)
			next = l->timers[i].deadline_ms;
	if (l->deadline_cb != NULL) {
		int64_t d = l->deadline_cb(l->owner);

		if (d < next)
			next = d;
	}
	return next;
}

static void
loop_run_timers(struct loop *l, int64_t now)
{
	int i;

	for (i = 0; i < LOOP_TIMERS_MAX; i++) {
		struct loop_timer *t = &l->timers[i];
		int64_t next;

		if (!t->used || t->deadline_ms > now)
			continue;
		next = t->cb(l, now, t->arg);
		if (!t->used)
			continue; /* the callback deleted it */
		if (next == LOOP_STOP)
			t->used = false;
		else
			t->deadline_ms = now + next;
	}
}

int
loop_run(struct loop *l, volatile int *stop_flag)
{
	struct pollfd pfd[LOOP_FDS_MAX];
	struct loop_fd snap[LOOP_FDS_MAX];

	while (!l->stop && (stop_flag == NULL || !*stop_flag)) {
		int64_t now = loop_now_ms(), next = loop_next_deadline(l);
		int i, n, nfds = l->nfds, timeout;

		if (next == INT64_MAX)
			timeout = 1000;
		else if (next <= now)
			timeout = 0;
		else if (next - now > 1000)
			timeout = 1000;
		else
			timeout = (int)(next - now);
		/* A callback may add or remove fds: serve a snapshot. */
		memcpy(snap, l->fds, (size_t)nfds * sizeof(snap[0]));
		for (i = 0; i < nfds; i++) {
			pfd[i].fd = snap[i].fd;
			pfd[i].events = POLLIN;
			pfd[i].revents = 0;
		}
		n = poll(pfd, (nfds_t)nfds, timeout);
		if (n == -1 && errno != EINTR) {
			log_warn("poll");
			return -1;
		}
		now = loop_now_ms();
		loop_run_timers(l, now);
		if (l->tick_cb != NULL)
			l->tick_cb(l, now, l->owner);
		for (i = 0; n > 0 && i < nfds; i++) {
			if (pfd[i].revents == 0 || !loop_has_fd(l, &snap[i]))
				continue;
			snap[i].cb(l, snap[i].fd, snap[i].arg);
			/*
			 * Timers first again after each fd: a flood on one
			 * socket never starves the heartbeat deadlines.
			 */
			now = loop_now_ms();
			loop_run_timers(l, now);
			if (l->tick_cb != NULL)
				l->tick_cb(l, now, l->owner);
		}
	}
	return 0;
}
