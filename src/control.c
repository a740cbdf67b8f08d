/* control: operator commands, from stdin or the local control socket. */
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <ctype.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "control.h"

static const struct {
	const char *name;
	const char *arg; /* the one argument word accepted, or NULL */
	enum ctl_cmd cmd, with_arg;
	const char *help;
} ctl_table[] = {
    {"vote", NULL, CTL_VOTE, CTL_VOTE, "start an election now"},
    {"status", "json", CTL_STATUS, CTL_STATUS_JSON,
	"role, epoch, leader and the ring with liveness (json: one object)"},
    {"servers", NULL, CTL_SERVERS, CTL_SERVERS, "the member list"},
    {"users", NULL, CTL_USERS, CTL_USERS, "registered users"},
    {"rooms", NULL, CTL_ROOMS, CTL_ROOMS, "rooms and their members"},
    {"help", NULL, CTL_HELP, CTL_HELP, "this list"},
    {"quit", NULL, CTL_QUIT, CTL_QUIT,
	"leave the cluster (a leader hands over first)"},
};

enum ctl_cmd
control_parse(const char *line)
{
	char word[CTL_LINE_MAX], arg[CTL_LINE_MAX], extra[2];
	size_t i;
	int n;

	if (strlen(line) >= CTL_LINE_MAX)
		return CTL_UNKNOWN;
	n = sscanf(line, " %255s %255s %1s", word, arg, extra);
	if (n <= 0)
		return CTL_EMPTY;
	for (i = 0; i < sizeof(ctl_table) / sizeof(ctl_table[0]); i++) {
		if (strcmp(word, ctl_table[i].name) != 0)
			continue;
		if (n == 1)
			return ctl_table[i].cmd;
		if (n == 2 && ctl_table[i].arg != NULL &&
		    strcmp(arg, ctl_table[i].arg) == 0)
			return ctl_table[i].with_arg;
		return CTL_BADARG;
	}
	return CTL_UNKNOWN;
}

const char *
control_help(void)
{
	static char buf[1024];
	size_t i;

	if (buf[0] != '\0')
		return buf;
	for (i = 0; i < sizeof(ctl_table) / sizeof(ctl_table[0]); i++) {
		char line[160];

		snprintf(line, sizeof(line), "  %-7s %-5s %s\n",
		    ctl_table[i].name,
		    ctl_table[i].arg != NULL ? ctl_table[i].arg : "",
		    ctl_table[i].help);
		strlcat(buf, line, sizeof(buf));
	}
	return buf;
}

static int
control_sockaddr(struct sockaddr_un *sun, const char *path)
{
	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	if (strlcpy(sun->sun_path, path, sizeof(sun->sun_path)) >=
	    sizeof(sun->sun_path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return 0;
}

int
control_listen(const char *path)
{
	struct sockaddr_un sun;
	int fd, probe, saved;

	if (control_sockaddr(&sun, path) == -1)
		return -1;
	/* Something answering there is a live server: leave it alone. */
	probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (probe == -1)
		return -1;
	if (connect(probe, (struct sockaddr *)&sun, sizeof(sun)) == 0) {
		close(probe);
		errno = EADDRINUSE;
		return -1;
	}
	close(probe);
	if (unlink(path) == -1 && errno != ENOENT)
		return -1;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return -1;
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1 ||
	    listen(fd, 8) == -1) {
		saved = errno;
		close(fd);
		errno = saved;
		return -1;
	}
	return fd;
}

int
control_read_line(int fd, char *line, size_t *used)
{
	ssize_t n;
	char *nl;

	n = read(fd, line + *used, CTL_LINE_MAX - *used);
	if (n == -1)
		return (errno == EAGAIN || errno == EINTR) ? 0 : -1;
	*used += (size_t)n;
	nl = memchr(line, '\n', *used);
	if (nl != NULL) {
		*nl = '\0';
		return 1;
	}
	if (n == 0 && *used > 0) { /* EOF ends the line too */
		if (*used >= CTL_LINE_MAX)
			return -1;
		line[*used] = '\0';
		return 1;
	}
	if (n == 0 || *used >= CTL_LINE_MAX)
		return -1;
	return 0;
}

int
control_write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);

		if (n == -1) {
			struct pollfd p = {.fd = fd, .events = POLLOUT};

			if (errno == EINTR)
				continue;
			if (errno != EAGAIN || poll(&p, 1, 1000) != 1)
				return -1;
			continue;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

int
control_client(const char *path, const char *command)
{
	struct sockaddr_un sun;
	char buf[4096];
	ssize_t n;
	int fd;

	if (strlen(command) >= CTL_LINE_MAX - 1) {
		fprintf(stderr, "ringchatd ctl: command too long\n");
		return 1;
	}
	if (control_sockaddr(&sun, path) == -1) {
		fprintf(stderr, "ringchatd ctl: %s: path too long\n", path);
		return 1;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd == -1 ||
	    connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
		fprintf(stderr,
		    "ringchatd ctl: %s: %s (is the server running "
		    "with this --state-dir?)\n",
		    path, strerror(errno));
		if (fd != -1)
			close(fd);
		return 1;
	}
	if (control_write_all(fd, command, strlen(command)) == -1 ||
	    control_write_all(fd, "\n", 1) == -1) {
		fprintf(stderr, "ringchatd ctl: write: %s\n", strerror(errno));
		close(fd);
		return 1;
	}
	shutdown(fd, SHUT_WR);
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		fwrite(buf, 1, (size_t)n, stdout);
	close(fd);
	if (n == -1) {
		fprintf(stderr, "ringchatd ctl: read: %s\n", strerror(errno));
		return 1;
	}
	return 0;
}
