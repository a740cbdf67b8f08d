/* control: operator commands, from stdin or the local control socket. */
#ifndef RINGCHAT_CONTROL_H
#define RINGCHAT_CONTROL_H

#include <stddef.h>

#define CTL_LINE_MAX 256

enum ctl_cmd {
	CTL_EMPTY,
	CTL_VOTE,	 /* start an election now */
	CTL_STATUS,	 /* role, epoch, leader, the ring with liveness */
	CTL_STATUS_JSON, /* the same as one JSON object */
	CTL_SERVERS,	 /* the member list */
	CTL_USERS,	 /* registered users */
	CTL_ROOMS,	 /* rooms and their members */
	CTL_HELP,
	CTL_QUIT,    /* leave; a leader hands over first */
	CTL_UNKNOWN, /* not a command: report, change nothing */
	CTL_BADARG   /* a command with arguments it does not take */
};

/* Parses one line (surrounding blanks ignored, case-sensitive). */
enum ctl_cmd control_parse(const char *line);
const char *control_help(void);

/*
 * The control socket: a Unix stream socket at path.  Returns the
 * listening fd or -1 (errno set; ENAMETOOLONG when path does not fit).
 * A stale socket file left by a killed server is replaced; a live one
 * (something answers) is not: errno is then EADDRINUSE.
 */
int control_listen(const char *path);
/*
 * Reads one command line from an accepted connection into line; returns
 * 1 when a full line is there, 0 when more must be read, -1 on error or
 * a line longer than CTL_LINE_MAX.  *used keeps the partial state.
 */
int control_read_line(int fd, char *line, size_t *used);
/* Writes all of buf to fd, blocking briefly when needed; -1 on error. */
int control_write_all(int fd, const char *buf, size_t len);
/*
 * `ringchatd ctl`: sends one command to the server at path and copies
 * its answer to stdout.  Returns an exit code (0 ok, 1 failure).
 */
int control_client(const char *path, const char *command);

#endif
