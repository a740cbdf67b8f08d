/* pwworker: password hashing and verification on a thread of its own. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "pwworker.h"

/* A queued job and its password (wiped once the job has run). */
struct pw_slot {
	struct pw_job job;
	char pw[AUTH_PW_MAX];
	size_t pwlen;
};

/*
 * The queue is a ring of cap slots in submission order, with three
 * counters that only grow: head (the oldest job not collected) <= work
 * (the job the thread runs or runs next) <= tail (the next free slot).
 * Slots head..work-1 are finished, work..tail-1 wait (work runs), so the
 * thread touches only slot work, the owner only the others: the mutex
 * guards the counters and the stop flag, never a slot being worked on.
 */
struct pwworker {
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stop;
	struct pw_slot *slots;
	size_t cap;
	uint64_t head, work, tail;
	int rfd, wfd; /* pipe: one byte per finished job */
};

static void
run_job(struct pw_slot *sl)
{
	struct pw_job *j = &sl->job;

	if (j->kind == PW_HASH)
		j->result = auth_pw_hash(sl->pw, sl->pwlen, j->hash);
	else
		j->result = auth_pw_verify(j->hash, sl->pw, sl->pwlen);
	sodium_memzero(sl->pw, sizeof(sl->pw));
	sl->pwlen = 0;
}

static void *
worker_main(void *arg)
{
	struct pwworker *w = arg;
	struct pw_slot *sl;
	ssize_t n;

	pthread_mutex_lock(&w->mu);
	for (;;) {
		while (!w->stop && w->work == w->tail)
			pthread_cond_wait(&w->cv, &w->mu);
		if (w->stop)
			break;
		sl = &w->slots[w->work % w->cap];
		pthread_mutex_unlock(&w->mu);
		run_job(sl);
		pthread_mutex_lock(&w->mu);
		w->work++;
		/* A full pipe is readable already: the owner collects all. */
		do
			n = write(w->wfd, "", 1);
		while (n == -1 && errno == EINTR);
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

struct pwworker *
pwworker_start(size_t queue_max)
{
	struct pwworker *w;
	sigset_t all, old;
	int fds[2], e;

	if (queue_max == 0 || queue_max > PWWORKER_QUEUE_MAX) {
		errno = EINVAL;
		return NULL;
	}
	if (auth_init() != AUTH_OK) {
		errno = ENOSYS;
		return NULL;
	}
	if ((w = calloc(1, sizeof(*w))) == NULL)
		return NULL;
	if ((w->slots = calloc(queue_max, sizeof(*w->slots))) == NULL) {
		free(w);
		return NULL;
	}
	w->cap = queue_max;
	if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) == -1) {
		e = errno;
		free(w->slots);
		free(w);
		errno = e;
		return NULL;
	}
	w->rfd = fds[0];
	w->wfd = fds[1];
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cv, NULL);
	/* Signals stay with the main thread: its handlers set the flags. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	e = pthread_create(&w->thread, NULL, worker_main, w);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (e != 0) {
		pthread_cond_destroy(&w->cv);
		pthread_mutex_destroy(&w->mu);
		close(w->rfd);
		close(w->wfd);
		free(w->slots);
		free(w);
		errno = e;
		return NULL;
	}
	return w;
}

void
pwworker_stop(struct pwworker *w)
{
	if (w == NULL)
		return;
	pthread_mutex_lock(&w->mu);
	w->stop = true;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
	pthread_join(w->thread, NULL);
	pthread_cond_destroy(&w->cv);
	pthread_mutex_destroy(&w->mu);
	sodium_memzero(w->slots, w->cap * sizeof(*w->slots));
	close(w->rfd);
	close(w->wfd);
	free(w->slots);
	free(w);
}

int
pwworker_fd(const struct pwworker *w)
{
	return w == NULL ? -1 : w->rfd;
}

int
pwworker_submit(
    struct pwworker *w, const struct pw_job *job, const char *pw, size_t pwlen)
{
	struct pw_slot *sl;

	if (w == NULL || job == NULL || pw == NULL || pwlen == 0 ||
	    pwlen > AUTH_PW_MAX)
		return -1;
	pthread_mutex_lock(&w->mu);
	if (w->tail - w->head == w->cap) {
		pthread_mutex_unlock(&w->mu);
		return -1;
	}
	/* Slot tail is no one's until tail moves past it. */
	sl = &w->slots[w->tail % w->cap];
	sl->job = *job;
	sl->job.result = AUTH_OK;
	if (job->kind == PW_HASH)
		memset(sl->job.hash, 0, sizeof(sl->job.hash));
	memcpy(sl->pw, pw, pwlen);
	sl->pwlen = pwlen;
	w->tail++;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
	return 0;
}

int
pwworker_result(struct pwworker *w, struct pw_job *out)
{
	char buf[64];
	ssize_t n;
	int got = 0;

	if (w == NULL || out == NULL)
		return 0;
	/*
	 * Empty the pipe before looking: a job finished after this has its
	 * byte written after it too, so the fd is readable again for it.
	 */
	do
		n = read(w->rfd, buf, sizeof(buf));
	while (n > 0 || (n == -1 && errno == EINTR));
	pthread_mutex_lock(&w->mu);
	if (w->head < w->work) {
		*out = w->slots[w->head % w->cap].job;
		w->head++;
		got = 1;
	}
	pthread_mutex_unlock(&w->mu);
	return got;
}

size_t
pwworker_count(struct pwworker *w, enum pw_kind kind, const char *user,
    const char *key, size_t *same)
{
	const struct pw_job *j;
	size_t n = 0, s = 0;
	uint64_t i;

	if (same != NULL)
		*same = 0;
	if (w == NULL || user == NULL)
		return 0;
	if (key == NULL)
		key = "";
	/* These fields are written by pwworker_submit only. */
	pthread_mutex_lock(&w->mu);
	for (i = w->head; i < w->tail; i++) {
		j = &w->slots[i % w->cap].job;
		if (j->kind != kind || strcmp(j->user, user) != 0)
			continue;
		n++;
		if (strcmp(j->key, key) == 0)
			s++;
	}
	pthread_mutex_unlock(&w->mu);
	if (same != NULL)
		*same = s;
	return n;
}

size_t
pwworker_pending(struct pwworker *w)
{
	size_t n;

	if (w == NULL)
		return 0;
	pthread_mutex_lock(&w->mu);
	n = (size_t)(w->tail - w->head);
	pthread_mutex_unlock(&w->mu);
	return n;
}
