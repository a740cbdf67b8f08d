/* fuzz_control: libFuzzer target for operator lines, HOST:PORT and UUIDs. */
#include <arpa/inet.h>
#include <netinet/in.h>

#include <ctype.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "control.h"
#include "net.h"
#include "uuid.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

/*
 * The first byte of an input says where the bytes after it are cut in
 * two writes.  Those bytes go three ways: as what a control client writes
 * (control_read_line, then control_parse, as the daemon does), as a
 * --server HOST:PORT argument, and as a UUID text (wire `from` fields,
 * --uuid, identity.json).  Each result is checked against what the
 * documented grammar says.
 */
static const struct {
	const char *name;
	enum ctl_cmd cmd;
	bool json; /* takes the argument "json" */
} words[] = {
    {"vote", CTL_VOTE, false},
    {"status", CTL_STATUS, true},
    {"servers", CTL_SERVERS, false},
    {"users", CTL_USERS, false},
    {"rooms", CTL_ROOMS, false},
    {"help", CTL_HELP, false},
    {"quit", CTL_QUIT, false},
};

static char text[2048];

static void
fail(const char *what, const char *detail)
{
	fprintf(stderr, "fuzz_control: %s: %s\n", what, detail);
	abort();
}

/* The grammar: words separated by blanks, one command, maybe "json". */
static enum ctl_cmd
expect(const char *line)
{
	const char *w[3] = {NULL, NULL, NULL}, *p = line;
	size_t wl[3] = {0, 0, 0}, n = 0, i;

	if (strlen(line) >= CTL_LINE_MAX)
		return CTL_UNKNOWN;
	while (*p != '\0' && n < 3) {
		while (isspace((unsigned char)*p))
			p++;
		if (*p == '\0')
			break;
		w[n] = p;
		while (*p != '\0' && !isspace((unsigned char)*p))
			p++;
		wl[n] = (size_t)(p - w[n]);
		n++;
	}
	if (n == 0)
		return CTL_EMPTY;
	for (i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
		if (strlen(words[i].name) != wl[0] ||
		    memcmp(words[i].name, w[0], wl[0]) != 0)
			continue;
		if (n == 1)
			return words[i].cmd;
		if (n == 2 && words[i].json && wl[1] == 4 &&
		    memcmp(w[1], "json", 4) == 0)
			return CTL_STATUS_JSON;
		return CTL_BADARG;
	}
	return CTL_UNKNOWN;
}

static void
check_parse(const char *line)
{
	enum ctl_cmd got = control_parse(line), want = expect(line);
	char padded[CTL_LINE_MAX];

	if (got < CTL_EMPTY || got > CTL_BADARG)
		fail("parse", "no known command");
	if (got != want) {
		fprintf(stderr, "line \"%s\": %d, want %d\n", line, got, want);
		fail("parse", "disagrees with the grammar");
	}
	/* Surrounding blanks are ignored. */
	if (strlen(line) + 2 < sizeof(padded)) {
		snprintf(padded, sizeof(padded), " %s\t", line);
		if (control_parse(padded) != got)
			fail("parse", "blanks changed the command");
	}
}

/*
 * The bytes arrive in two writes (the first byte says where to cut),
 * then the client closes; the daemon reads as server.c does.
 */
static void
check_read_line(const uint8_t *data, size_t size)
{
	char line[CTL_LINE_MAX + 1];
	size_t used = 0, cut, n, want;
	const uint8_t *nl;
	int fds[2], r;

	if (size == 0)
		return;
	cut = 1 + data[0] % size;
	if (pipe(fds) == -1)
		fail("pipe", "cannot make one");
	if (write(fds[1], data + 1, cut - 1) != (ssize_t)(cut - 1))
		fail("write", "short");
	r = cut - 1 > 0 ? control_read_line(fds[0], line, &used) : 0;
	if (r == 0) {
		if (write(fds[1], data + cut, size - cut) !=
		    (ssize_t)(size - cut))
			fail("write", "short");
		close(fds[1]);
		fds[1] = -1;
		while ((r = control_read_line(fds[0], line, &used)) == 0)
			;
	}
	if (fds[1] != -1)
		close(fds[1]);
	close(fds[0]);

	/* The line is what comes before the first newline, if it fits. */
	n = size - 1;
	nl = memchr(data + 1, '\n', n < CTL_LINE_MAX ? n : CTL_LINE_MAX);
	if (nl != NULL)
		want = (size_t)(nl - (data + 1));
	else if (n > 0 && n < CTL_LINE_MAX)
		want = n;
	else {
		if (r != -1)
			fail("read line", "took a line too long or empty");
		return;
	}
	if (r != 1)
		fail("read line", "refused a line");
	if (memcmp(line, data + 1, want) != 0 || line[want] != '\0')
		fail("read line", "not the bytes before the newline");
	check_parse(line);
}

static void
check_hostport(const char *s)
{
	char ip[INET_ADDRSTRLEN], ip2[INET_ADDRSTRLEN], again[64];
	const char *colon = strrchr(s, ':');
	struct in_addr a;
	uint16_t port = 0, port2;

	if (net_parse_hostport(s, ip, sizeof(ip), &port) == -1)
		return;
	if (colon == NULL || inet_pton(AF_INET, ip, &a) != 1 || port == 0)
		fail("host:port", "accepted a bad address or port 0");
	if ((size_t)(colon - s) != strlen(ip) || memcmp(s, ip, strlen(ip)) != 0)
		fail("host:port", "address is not the text before the colon");
	snprintf(again, sizeof(again), "%s:%u", ip, port);
	if (net_parse_hostport(again, ip2, sizeof(ip2), &port2) == -1 ||
	    strcmp(ip, ip2) != 0 || port != port2)
		fail("host:port", "does not parse what it gave");
}

static void
check_uuid(const char *s)
{
	char out[UUID_STRLEN + 1];
	struct uuid u, v;
	size_t i;

	memset(&u, 0xa5, sizeof(u));
	v = u;
	if (uuid_parse(&u, s) == -1) {
		if (memcmp(&u, &v, sizeof(u)) != 0)
			fail("uuid", "refused, but wrote");
		return;
	}
	uuid_format(&u, out);
	/* Canonical: the input, lowercased. */
	if (strlen(s) != UUID_STRLEN)
		fail("uuid", "length");
	for (i = 0; i < UUID_STRLEN; i++)
		if (tolower((unsigned char)s[i]) != out[i])
			fail("uuid", "format is not the input lowercased");
	if (uuid_parse(&v, out) == -1 || uuid_cmp(&u, &v) != 0)
		fail("uuid", "round trip");
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t n;

	if (size == 0)
		return 0;
	check_read_line(data, size);
	/* The NUL-terminated parsers see the same bytes as a C string. */
	n = size - 1 < sizeof(text) - 1 ? size - 1 : sizeof(text) - 1;
	memcpy(text, data + 1, n);
	text[n] = '\0';
	check_parse(text);
	check_hostport(text);
	check_uuid(text);
	return 0;
}
