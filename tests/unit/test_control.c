/* Unit tests for control: operator command parsing and the socket helpers. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "control.h"

static void
parse_should_recognise_every_command(void **state)
{
	(void)state;
	assert_int_equal(control_parse("vote"), CTL_VOTE);
	assert_int_equal(control_parse("status"), CTL_STATUS);
	assert_int_equal(control_parse("status json"), CTL_STATUS_JSON);
	assert_int_equal(control_parse("servers"), CTL_SERVERS);
	assert_int_equal(control_parse("users"), CTL_USERS);
	assert_int_equal(control_parse("rooms"), CTL_ROOMS);
	assert_int_equal(control_parse("help"), CTL_HELP);
	assert_int_equal(control_parse("quit"), CTL_QUIT);
}

static void
parse_should_ignore_surrounding_blanks(void **state)
{
	(void)state;
	assert_int_equal(control_parse("  vote \t"), CTL_VOTE);
	assert_int_equal(control_parse("\tstatus   json  "), CTL_STATUS_JSON);
	assert_int_equal(control_parse(""), CTL_EMPTY);
	assert_int_equal(control_parse("   "), CTL_EMPTY);
}

static void
parse_should_reject_unknown_words_and_extra_arguments(void **state)
{
	(void)state;
	assert_int_equal(control_parse("VOTE"), CTL_UNKNOWN);
	assert_int_equal(control_parse("votes"), CTL_UNKNOWN);
	assert_int_equal(control_parse("vote now"), CTL_BADARG);
	assert_int_equal(control_parse("status xml"), CTL_BADARG);
	assert_int_equal(control_parse("status json extra"), CTL_BADARG);
}

static void
parse_should_refuse_an_overlong_line(void **state)
{
	char line[CTL_LINE_MAX + 10];

	(void)state;
	memset(line, 'a', sizeof(line) - 1);
	line[sizeof(line) - 1] = '\0';
	assert_int_equal(control_parse(line), CTL_UNKNOWN);
	memcpy(line, "vote", 4);
	line[4] = ' ';
	assert_int_not_equal(control_parse(line), CTL_VOTE);
}

static void
help_should_list_every_command(void **state)
{
	const char *h = control_help();

	(void)state;
	assert_non_null(strstr(h, "vote"));
	assert_non_null(strstr(h, "status"));
	assert_non_null(strstr(h, "json"));
	assert_non_null(strstr(h, "servers"));
	assert_non_null(strstr(h, "users"));
	assert_non_null(strstr(h, "rooms"));
	assert_non_null(strstr(h, "quit"));
	assert_ptr_equal(h, control_help()); /* built once */
}

static void
read_line_should_assemble_a_line_from_pieces(void **state)
{
	char line[CTL_LINE_MAX + 1];
	size_t used = 0;
	int sv[2];

	(void)state;
	assert_int_equal(
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	assert_int_equal(write(sv[1], "sta", 3), 3);
	assert_int_equal(control_read_line(sv[0], line, &used), 0);
	assert_int_equal(write(sv[1], "tus\n", 4), 4);
	assert_int_equal(control_read_line(sv[0], line, &used), 1);
	assert_string_equal(line, "status");
	close(sv[0]);
	close(sv[1]);
}

static void
read_line_should_take_eof_as_the_end_of_a_line(void **state)
{
	char line[CTL_LINE_MAX + 1];
	size_t used = 0;
	int sv[2];

	(void)state;
	assert_int_equal(
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	assert_int_equal(write(sv[1], "vote", 4), 4);
	shutdown(sv[1], SHUT_WR);
	assert_int_equal(control_read_line(sv[0], line, &used), 0);
	assert_int_equal(control_read_line(sv[0], line, &used), 1);
	assert_string_equal(line, "vote");
	close(sv[0]);
	close(sv[1]);
}

static void
read_line_should_reject_a_line_longer_than_the_limit(void **state)
{
	char line[CTL_LINE_MAX + 1], junk[CTL_LINE_MAX + 8];
	size_t used = 0;
	int sv[2], r;

	(void)state;
	memset(junk, 'x', sizeof(junk));
	assert_int_equal(
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	assert_int_equal(
	    write(sv[1], junk, sizeof(junk)), (ssize_t)sizeof(junk));
	do
		r = control_read_line(sv[0], line, &used);
	while (r == 0);
	assert_int_equal(r, -1);
	close(sv[0]);
	close(sv[1]);
}

static void
listen_should_refuse_a_path_too_long_for_a_unix_socket(void **state)
{
	char path[300];

	(void)state;
	memset(path, 'p', sizeof(path) - 1);
	path[0] = '/';
	path[sizeof(path) - 1] = '\0';
	assert_int_equal(control_listen(path), -1);
	assert_int_equal(errno, ENAMETOOLONG);
}

static void
listen_should_replace_a_stale_socket_but_not_a_live_one(void **state)
{
	char dir[] = "/tmp/rc-control-XXXXXX", path[128];
	int fd, fd2;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/s.sock", dir);
	fd = control_listen(path);
	assert_true(fd >= 0);
	/* Live: something listens there. */
	assert_int_equal(control_listen(path), -1);
	assert_int_equal(errno, EADDRINUSE);
	close(fd); /* the file stays: stale, as after kill -9 */
	fd2 = control_listen(path);
	assert_true(fd2 >= 0);
	close(fd2);
	unlink(path);
	rmdir(dir);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(parse_should_recognise_every_command),
	    cmocka_unit_test(parse_should_ignore_surrounding_blanks),
	    cmocka_unit_test(
		parse_should_reject_unknown_words_and_extra_arguments),
	    cmocka_unit_test(parse_should_refuse_an_overlong_line),
	    cmocka_unit_test(help_should_list_every_command),
	    cmocka_unit_test(read_line_should_assemble_a_line_from_pieces),
	    cmocka_unit_test(read_line_should_take_eof_as_the_end_of_a_line),
	    cmocka_unit_test(
		read_line_should_reject_a_line_longer_than_the_limit),
	    cmocka_unit_test(
		listen_should_refuse_a_path_too_long_for_a_unix_socket),
	    cmocka_unit_test(
		listen_should_replace_a_stale_socket_but_not_a_live_one),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
