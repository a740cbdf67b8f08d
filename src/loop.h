/* loop: one poll(2) loop; timers are absolute CLOCK_MONOTONIC deadlines. */
#ifndef RINGCHAT_LOOP_H
#define RINGCHAT_LOOP_H

#include <stdbool.h>
#include <stdint.h>

#define LOOP_FDS_MAX	32
#define LOOP_TIMERS_MAX 16
#define LOOP_STOP	(-1) /* a timer callback's answer: do not run again */

struct loop;
typedef void (*loop_fd_cb)(struct loop *, int fd, void *arg);
/* Returns the next interval in ms, or LOOP_STOP. */
typedef int64_t (*loop_timer_cb)(struct loop *, int64_t now_ms, void *arg);
/* The earliest deadline of an owner's own timers; INT64_MAX for none. */
typedef int64_t (*loop_deadline_cb)(void *arg);
/* Called after every wake-up, so owners run what is due. */
typedef void (*loop_tick_cb)(struct loop *, int64_t now_ms, void *arg);

struct loop_fd {
	int fd;
	loop_fd_cb cb;
	void *arg;
	int prio; /* lower runs first */
};

struct loop_timer {
	bool used;
	int64_t deadline_ms;
	loop_timer_cb cb;
	void *arg;
};

struct loop {
	struct loop_fd fds[LOOP_FDS_MAX];
	int nfds;
	struct loop_timer timers[LOOP_TIMERS_MAX];
	loop_deadline_cb deadline_cb;
	loop_tick_cb tick_cb;
	void *owner;
	volatile int stop;
};

int64_t loop_now_ms(void);
int64_t loop_now_us(void);

void loop_init(struct loop *);
/* Readable fds are served in prio order (control before data). */
int loop_add_fd(struct loop *, int fd, int prio, loop_fd_cb, void *arg);
void loop_del_fd(struct loop *, int fd);
/* A timer first due after `after_ms`; returns its id or -1 when full. */
int loop_add_timer(struct loop *, int64_t after_ms, loop_timer_cb, void *arg);
void loop_del_timer(struct loop *, int id);
/* Makes timer `id` due after `after_ms` from now. */
void loop_rearm_timer(struct loop *, int id, int64_t after_ms);
/* The owner's deadline and tick hooks: state machines keep their own. */
void loop_set_owner(struct loop *, loop_deadline_cb, loop_tick_cb, void *);
/*
 * Runs until loop_stop or *stop_flag (a signal handler's flag) is set.
 * Returns 0, or -1 when poll fails for a reason other than EINTR.
 */
int loop_run(struct loop *, volatile int *stop_flag);
void loop_stop(struct loop *);

#endif
