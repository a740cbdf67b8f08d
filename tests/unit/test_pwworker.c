/* test_pwworker: unit tests for the password worker thread, src/pwworker.c. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <poll.h>
#include <stdio.h>
#include <string.h>

#include "pwworker.h"

/* A job for user with session key key; the password goes separately. */
static struct pw_job
job_for(enum pw_kind kind, const char *user, const char *key)
{
	struct pw_job j;

	memset(&j, 0, sizeof(j));
	j.kind = kind;
	j.gen = 7;
	strlcpy(j.user, user, sizeof(j.user));
	strlcpy(j.addr, "127.0.0.1", sizeof(j.addr));
	j.port = 4000;
	strlcpy(j.key, key, sizeof(j.key));
	return j;
}

/* Waits (at most 10 s) for the next finished job, as the loop would. */
static void
wait_result(struct pwworker *w, struct pw_job *out)
{
	struct pollfd p = {.fd = pwworker_fd(w), .events = POLLIN};
	int tries;

	for (tries = 0; tries < 100; tries++) {
		if (pwworker_result(w, out) == 1)
			return;
		assert_true(poll(&p, 1, 100) >= 0);
	}
	fail_msg("no result from the worker within 10 s");
}

static void
hash_then_verify_should_go_through_the_queue(void **state)
{
	struct pwworker *w;
	struct pw_job j, r;

	(void)state;
	assert_non_null(w = pwworker_start(4));
	assert_true(pwworker_fd(w) >= 0);
	j = job_for(PW_HASH, "alice", "");
	assert_int_equal(pwworker_submit(w, &j, "correct horse", 13), 0);
	wait_result(w, &r);
	assert_int_equal(r.kind, PW_HASH);
	assert_int_equal(r.result, AUTH_OK);
	/* the context comes back untouched */
	assert_int_equal(r.gen, 7);
	assert_string_equal(r.user, "alice");
	assert_string_equal(r.addr, "127.0.0.1");
	assert_int_equal(r.port, 4000);
	assert_int_equal(auth_pw_hash_check(r.hash), AUTH_OK);
	assert_int_equal(pwworker_pending(w), 0);

	j = job_for(PW_VERIFY, "alice", "");
	strlcpy(j.hash, r.hash, sizeof(j.hash));
	assert_int_equal(pwworker_submit(w, &j, "correct horse", 13), 0);
	wait_result(w, &r);
	assert_int_equal(r.kind, PW_VERIFY);
	assert_int_equal(r.result, AUTH_OK);
	/* nothing more to collect */
	assert_int_equal(pwworker_result(w, &r), 0);
	pwworker_stop(w);
}

static void
wrong_password_should_come_back_as_epw_wrong(void **state)
{
	char hash[AUTH_PWHASH_SIZE];
	struct pwworker *w;
	struct pw_job j, r;

	(void)state;
	assert_int_equal(auth_pw_hash("secret", 6, hash), AUTH_OK);
	assert_non_null(w = pwworker_start(4));
	j = job_for(PW_VERIFY, "bob", "");
	strlcpy(j.hash, hash, sizeof(j.hash));
	assert_int_equal(pwworker_submit(w, &j, "Secret", 6), 0);
	wait_result(w, &r);
	assert_int_equal(r.result, AUTH_EPW_WRONG);
	/* a stored hash that is no Argon2id string is an error, not a match */
	j = job_for(PW_VERIFY, "bob", "");
	strlcpy(
	    j.hash, "$argon2i$v=19$m=8,t=1,p=1$c2FsdA$aGFzaA", sizeof(j.hash));
	assert_int_equal(pwworker_submit(w, &j, "secret", 6), 0);
	wait_result(w, &r);
	assert_int_equal(r.result, AUTH_EPW_HASH);
	pwworker_stop(w);
}

static void
full_queue_should_refuse_a_job_until_one_is_collected(void **state)
{
	struct pwworker *w;
	struct pw_job j, r;

	(void)state;
	assert_non_null(w = pwworker_start(2));
	j = job_for(PW_HASH, "carol", "");
	assert_int_equal(pwworker_submit(w, &j, "pw1", 3), 0);
	assert_int_equal(pwworker_submit(w, &j, "pw2", 3), 0);
	/* finished or not, an uncollected job holds its slot */
	assert_int_equal(pwworker_submit(w, &j, "pw3", 3), -1);
	assert_int_equal(pwworker_pending(w), 2);
	wait_result(w, &r);
	assert_int_equal(pwworker_submit(w, &j, "pw3", 3), 0);
	wait_result(w, &r);
	wait_result(w, &r);
	assert_int_equal(pwworker_pending(w), 0);
	pwworker_stop(w);
}

static void
submit_should_refuse_passwords_out_of_range(void **state)
{
	char big[AUTH_PW_MAX + 1];
	struct pwworker *w;
	struct pw_job j = job_for(PW_HASH, "dave", "");

	(void)state;
	memset(big, 'x', sizeof(big));
	assert_null(pwworker_start(0));
	assert_null(pwworker_start(PWWORKER_QUEUE_MAX + 1));
	assert_non_null(w = pwworker_start(1));
	assert_int_equal(pwworker_submit(w, &j, "", 0), -1);
	assert_int_equal(pwworker_submit(w, &j, big, sizeof(big)), -1);
	assert_int_equal(pwworker_submit(w, NULL, "x", 1), -1);
	assert_int_equal(pwworker_pending(w), 0);
	/* the longest password is taken */
	assert_int_equal(pwworker_submit(w, &j, big, AUTH_PW_MAX), 0);
	pwworker_stop(w);
}

static void
count_should_tell_a_resend_by_user_and_key(void **state)
{
	const char *k1 = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
	const char *k2 = "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBA";
	struct pwworker *w;
	struct pw_job j;
	size_t same;

	(void)state;
	assert_non_null(w = pwworker_start(8));
	j = job_for(PW_VERIFY, "erin", k1);
	assert_int_equal(pwworker_submit(w, &j, "a", 1), 0);
	j = job_for(PW_HASH, "erin", k2);
	assert_int_equal(pwworker_submit(w, &j, "b", 1), 0);
	assert_int_equal(pwworker_count(w, PW_VERIFY, "erin", k1, &same), 1);
	assert_int_equal(same, 1);
	assert_int_equal(pwworker_count(w, PW_VERIFY, "erin", k2, &same), 1);
	assert_int_equal(same, 0);
	assert_int_equal(pwworker_count(w, PW_HASH, "erin", k2, &same), 1);
	assert_int_equal(same, 1);
	assert_int_equal(pwworker_count(w, PW_VERIFY, "frank", k1, &same), 0);
	assert_int_equal(same, 0);
	/* stopping with jobs queued or running drops them */
	pwworker_stop(w);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(hash_then_verify_should_go_through_the_queue),
	    cmocka_unit_test(wrong_password_should_come_back_as_epw_wrong),
	    cmocka_unit_test(
		full_queue_should_refuse_a_job_until_one_is_collected),
	    cmocka_unit_test(submit_should_refuse_passwords_out_of_range),
	    cmocka_unit_test(count_should_tell_a_resend_by_user_and_key),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
