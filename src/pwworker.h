/* pwworker: password hashing and verification on a thread of its own. */
#ifndef RINGCHAT_PWWORKER_H
#define RINGCHAT_PWWORKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth.h"
#include "ring.h"
#include "store.h"

/*
 * An Argon2id hash or verification costs about 16 ms (docs/SECURITY.md):
 * never on the event loop.  One POSIX thread works through a bounded
 * queue of jobs in order; a finished job makes the notification fd
 * readable (a pipe the owner registers with its loop) and is collected
 * with pwworker_result.  A job counts against the bound from
 * pwworker_submit until it is collected, so memory is fixed at start.
 *
 * Passwords are copied into the queue by pwworker_submit and wiped
 * (sodium_memzero) as soon as the job has run, or when the worker stops.
 * The thread touches nothing but its queue: no socket, file or log.
 */

#define PWWORKER_QUEUE_MAX 256 /* the daemon's bound */

enum pw_kind {
	PW_HASH,  /* hash the password: job.hash is the result */
	PW_VERIFY /* verify the password against job.hash */
};

/* A job: the owner's context travels with it, untouched. */
struct pw_job {
	enum pw_kind kind;
	uint64_t gen; /* the owner's: which leadership asked */
	char user[USER_NAME_MAX];
	char addr[RING_ADDR_MAX];
	uint16_t port;
	char key[AUTH_PK_TEXT]; /* the session key the request came with */
	/* PW_HASH: the result; PW_VERIFY: the stored hash to check against */
	char hash[AUTH_PWHASH_SIZE];
	/*
	 * The outcome: AUTH_OK, or auth_pw_hash's or auth_pw_verify's error
	 * (AUTH_EPW_WRONG: a wrong password).
	 */
	enum auth_err result;
};

struct pwworker;

/*
 * Starts the thread with room for queue_max jobs (1 ..
 * PWWORKER_QUEUE_MAX).  NULL with errno set when it cannot.
 */
struct pwworker *pwworker_start(size_t queue_max);
/*
 * Stops and joins the thread (a job running is finished first, the
 * queued ones are dropped), wipes the queue, closes the fd, frees.
 */
void pwworker_stop(struct pwworker *);
/* Readable when a finished job waits: for the owner's poll loop. */
int pwworker_fd(const struct pwworker *);
/*
 * Queues a copy of job (its result fields are ignored) with the pwlen
 * bytes of pw (1 .. AUTH_PW_MAX).  0, or -1 when the queue is full or
 * pwlen is out of range: nothing was queued.  The caller still owns and
 * wipes its own copy of the password.
 */
int pwworker_submit(
    struct pwworker *, const struct pw_job *job, const char *pw, size_t pwlen);
/*
 * The oldest finished job, copied into *out and removed: 1, or 0 when
 * the oldest job is not finished yet (or there is none).  Also empties
 * the notification fd: call until 0 whenever it is readable.
 */
int pwworker_result(struct pwworker *, struct pw_job *out);
/*
 * Jobs of kind for user not collected yet (queued, running or
 * finished); *same (may be NULL) counts those of them with session key
 * key: a client's resend is recognised by user and key.
 */
size_t pwworker_count(struct pwworker *, enum pw_kind, const char *user,
    const char *key, size_t *same);
/* Jobs not collected yet. */
size_t pwworker_pending(struct pwworker *);

#endif
