/* ringchat: the client; finds the leader by broadcast and talks to it. */
#include <sys/socket.h>
#include <sys/types.h>

#include <arpa/inet.h>
#include <err.h>
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "loop.h"
#include "net.h"
#include "store.h"
#include "uuid.h"
#include "wire.h"

#define DEFAULT_DISC_PORT 45960
#define WHERE_FIRST_MS	  50
#define WHERE_MAX_MS	  1000

/* Exit codes, as ringchat(1) documents them. */
enum {
	EXIT_OK = 0,
	EXIT_FAIL = 1, /* the server refused (body of its error) */
	EXIT_USAGE = 2,
	EXIT_NOSERVER = 3 /* no server answered in time */
};

struct client {
	char user[USER_NAME_MAX];
	struct net_iface ifc;
	uint16_t disc_port;
	int fd;
	struct sockaddr_in bcast;
	bool json;
	bool have_server;
	struct sockaddr_in server; /* --server, or the leader found */
	/* the best leader heard: highest (epoch, uuid) */
	bool have_leader;
	uint64_t epoch;
	struct uuid leader;
	char leader_name[64];
	char leader_addr[16];
	uint16_t leader_port;
};

static void __attribute__((noreturn)) usage(int code)
{
	fprintf(code == 0 ? stdout : stderr,
	    "usage: ringchat --user NAME [--iface IF] [--discovery-port PORT]\n"
	    "                [--server HOST:PORT] [--timeout SEC] [--json]\n"
	    "                [--where | --vote]\n"
	    "\n"
	    "  --user NAME            your user name\n"
	    "  --iface IF             interface to look for servers on (default: loopback)\n"
	    "  --discovery-port PORT  the servers' broadcast port (default %u)\n"
	    "  --server HOST:PORT     ask this server instead of broadcasting\n"
	    "  --timeout SEC          give up when no server answers by then (default 10)\n"
	    "  --json                 one JSON line per event (script mode)\n"
	    "  --where                print the leader and exit\n"
	    "  --vote                 ask the servers to elect a leader now\n"
	    "  -h, --help             this text\n",
	    DEFAULT_DISC_PORT);
	exit(code);
}

static void
say(struct client *c, const char *event, const struct store_kv *kv, size_t n,
    const char *human)
{
	char line[2048];
	struct store_kv all[8];
	size_t i;

	if (!c->json) {
		printf("%s\n", human);
		return;
	}
	memset(all, 0, sizeof(all));
	all[0].key = "event";
	all[0].type = KV_STR;
	all[0].s = event;
	for (i = 0; i < n && i < 7; i++)
		all[i + 1] = kv[i];
	if (store_json_line(line, sizeof(line), all, i + 1) == -1)
		errx(EXIT_FAIL, "event too large to print");
	fputs(line, stdout);
}

static void
send_datagram(
    struct client *c, const struct sockaddr_in *to, const struct wire_msg *m)
{
	char buf[WIRE_MAX];
	size_t len;
	enum wire_err e = wire_encode(m, buf, sizeof(buf), &len);

	if (e != WIRE_OK)
		errx(EXIT_FAIL, "cannot send %s: %s", wire_kind_name(m->kind),
		    wire_strerror(e));
	if (net_send(c->fd, to, buf, len) == -1)
		warn("send");
}

/* A leader answer: kept when its (epoch, leader) is the newest heard. */
static void
consider_leader(struct client *c, const struct wire_msg *m)
{
	uint64_t epoch, port;
	const char *addr = wire_get(m, "addr"), *lid = wire_get(m, "leader");
	struct uuid u;

	if (wire_get_u64(m, "epoch", &epoch) == -1 || lid == NULL ||
	    uuid_parse(&u, lid) == -1 || addr == NULL ||
	    wire_get_u64(m, "port", &port) == -1 || port == 0 || port > 65535)
		return;
	if (c->have_leader &&
	    (epoch < c->epoch ||
		(epoch == c->epoch && uuid_cmp(&u, &c->leader) <= 0)))
		return;
	if (strlcpy(c->leader_addr, addr, sizeof(c->leader_addr)) >=
	    sizeof(c->leader_addr))
		return;
	c->have_leader = true;
	c->epoch = epoch;
	c->leader = u;
	c->leader_port = (uint16_t)port;
	strlcpy(c->leader_name, m->body, sizeof(c->leader_name));
}

/*
 * Waits up to timeout_ms for datagrams, calling on_msg for each valid
 * one; returns when on_msg returns true.  -1 on timeout.
 */
static int
receive_until(struct client *c, int64_t timeout_ms,
    bool (*on_msg)(struct client *, const struct wire_msg *), bool resend_where)
{
	int64_t deadline = loop_now_ms() + timeout_ms, next = 0,
		gap = WHERE_FIRST_MS;
	struct wire_msg where;

	wire_init(&where, WK_WHERE, "*", "", c->user);
	for (;;) {
		int64_t now = loop_now_ms(), wait;
		struct pollfd p = {.fd = c->fd, .events = POLLIN};
		char buf[WIRE_MAX + 1];
		struct wire_msg m;
		ssize_t n;

		if (now >= deadline)
			return -1;
		if (resend_where && now >= next) {
			send_datagram(
			    c, c->have_server ? &c->server : &c->bcast, &where);
			next = now + gap;
			gap = gap * 2 > WHERE_MAX_MS ? WHERE_MAX_MS : gap * 2;
		}
		wait = (resend_where ? next : deadline) - now;
		if (wait > deadline - now)
			wait = deadline - now;
		if (poll(&p, 1, (int)wait) <= 0)
			continue;
		n = recv(c->fd, buf, sizeof(buf), MSG_TRUNC);
		if (n <= 0 || (size_t)n > WIRE_MAX ||
		    wire_decode(&m, buf, (size_t)n) != WIRE_OK)
			continue; /* not for us, or garbage: ignore */
		if (on_msg(c, &m))
			return 0;
	}
}

static bool
on_where_answer(struct client *c, const struct wire_msg *m)
{
	if (m->kind == WK_LEADER)
		consider_leader(c, m);
	/* One answer is enough when we asked one server; else collect. */
	return c->have_leader && c->have_server;
}

static int
find_leader(struct client *c, int64_t timeout_ms)
{
	char b[INET_ADDRSTRLEN];

	receive_until(
	    c, c->have_server ? timeout_ms : 300, on_where_answer, true);
	if (!c->have_leader && !c->have_server)
		receive_until(c, timeout_ms - 300, on_where_answer, true);
	if (!c->have_leader) {
		if (c->have_server)
			warnx("no answer from %s:%u after %lld s",
			    inet_ntop(
				AF_INET, &c->server.sin_addr, b, sizeof(b)),
			    ntohs(c->server.sin_port),
			    (long long)timeout_ms / 1000);
		else
			warnx("no server answered on %s (broadcast %s, "
			      "discovery port %u) after %lld s",
			    c->ifc.name,
			    inet_ntop(
				AF_INET, &c->bcast.sin_addr, b, sizeof(b)),
			    c->disc_port, (long long)timeout_ms / 1000);
		return -1;
	}
	return 0;
}

static bool
on_vote_answer(struct client *c, const struct wire_msg *m)
{
	(void)c;
	return m->kind == WK_OK || m->kind == WK_ERR;
}

static void
report_leader(struct client *c)
{
	char id[UUID_STRLEN + 1], human[256];
	struct store_kv kv[5];

	memset(kv, 0, sizeof(kv));
	kv[0].key = "leader";
	kv[0].type = KV_STR;
	kv[0].s = uuid_format(&c->leader, id);
	kv[1].key = "name";
	kv[1].type = KV_STR;
	kv[1].s = c->leader_name;
	kv[2].key = "addr";
	kv[2].type = KV_STR;
	kv[2].s = c->leader_addr;
	kv[3].key = "port";
	kv[3].type = KV_UINT;
	kv[3].u = c->leader_port;
	kv[4].key = "epoch";
	kv[4].type = KV_UINT;
	kv[4].u = c->epoch;
	snprintf(human, sizeof(human), "leader %s (%s) at %s:%u, epoch %llu",
	    c->leader_name, id, c->leader_addr, c->leader_port,
	    (unsigned long long)c->epoch);
	say(c, "leader", kv, 5, human);
}

static int
ask_vote(struct client *c, int64_t timeout_ms)
{
	struct sockaddr_in to;
	struct wire_msg m;

	/* Ask the leader's peers, whoever answers: broadcast, or --server. */
	wire_init(&m, WK_VOTE, "*", "leader does not answer", c->user);
	to = c->have_server ? c->server : c->bcast;
	send_datagram(c, &to, &m);
	if (receive_until(c, timeout_ms, on_vote_answer, false) == -1) {
		warnx("no server acknowledged the election request");
		return EXIT_NOSERVER;
	}
	say(c, "vote", NULL, 0, "election requested");
	return EXIT_OK;
}

static bool
on_reply(struct client *c, const struct wire_msg *m)
{
	(void)c;
	return m->kind == WK_OK || m->kind == WK_ERR;
}

/* Registers or logs in, as the relay protocol says. */
static int
join_chat(struct client *c, int64_t timeout_ms)
{
	struct sockaddr_in leader;
	struct wire_msg m;
	struct pollfd p;
	char buf[WIRE_MAX + 1];
	ssize_t n;

	if (net_sockaddr(&leader, c->leader_addr, c->leader_port) == -1)
		errx(EXIT_FAIL, "leader address %s is malformed",
		    c->leader_addr);
	wire_init(&m, WK_LOGIN, "", "", c->user);
	send_datagram(c, &leader, &m);
	p.fd = c->fd;
	p.events = POLLIN;
	while (poll(&p, 1, (int)timeout_ms) == 1) {
		n = recv(c->fd, buf, sizeof(buf), MSG_TRUNC);
		if (n <= 0 || (size_t)n > WIRE_MAX ||
		    wire_decode(&m, buf, (size_t)n) != WIRE_OK ||
		    !on_reply(c, &m))
			continue;
		if (m.kind == WK_ERR) {
			warnx("%s: %s", c->leader_name, m.body);
			return EXIT_FAIL;
		}
		return EXIT_OK;
	}
	warnx("leader %s did not answer the login", c->leader_name);
	return EXIT_NOSERVER;
}

int
main(int argc, char *argv[])
{
	static const struct option longopts[] = {
	    {"user", required_argument, NULL, 'u'},
	    {"iface", required_argument, NULL, 'i'},
	    {"discovery-port", required_argument, NULL, 'd'},
	    {"server", required_argument, NULL, 's'},
	    {"timeout", required_argument, NULL, 't'},
	    {"json", no_argument, NULL, 'j'}, {"where", no_argument, NULL, 'w'},
	    {"vote", no_argument, NULL, 'V'}, {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0}};
	struct client c;
	const char *iface = NULL, *errstr;
	char errbuf[256], ip[INET_ADDRSTRLEN];
	int64_t timeout_ms = 10000;
	bool where = false, vote = false;
	uint16_t sport;
	int ch;

	memset(&c, 0, sizeof(c));
	c.disc_port = DEFAULT_DISC_PORT;
	while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (ch) {
		case 'u':
			if (optarg[0] == '\0' ||
			    strlcpy(c.user, optarg, sizeof(c.user)) >=
				sizeof(c.user))
				errx(EXIT_USAGE, "--user: 1 to %zu bytes",
				    sizeof(c.user) - 1);
			break;
		case 'i':
			iface = optarg;
			break;
		case 'd':
			c.disc_port =
			    (uint16_t)strtonum(optarg, 1, 65535, &errstr);
			if (errstr != NULL)
				errx(EXIT_USAGE, "--discovery-port %s: %s",
				    optarg, errstr);
			break;
		case 's':
			if (net_parse_hostport(
				optarg, ip, sizeof(ip), &sport) == -1 ||
			    net_sockaddr(&c.server, ip, sport) == -1)
				errx(EXIT_USAGE,
				    "--server %s: expected A.B.C.D:PORT",
				    optarg);
			c.have_server = true;
			break;
		case 't':
			timeout_ms = strtonum(optarg, 1, 3600, &errstr) * 1000;
			if (errstr != NULL)
				errx(EXIT_USAGE, "--timeout %s: %s", optarg,
				    errstr);
			break;
		case 'j':
			c.json = true;
			break;
		case 'w':
			where = true;
			break;
		case 'V':
			vote = true;
			break;
		case 'h':
			usage(EXIT_OK);
		default:
			usage(EXIT_USAGE);
		}
	}
	if (optind != argc || c.user[0] == '\0' || (where && vote))
		usage(EXIT_USAGE);
	if (!isatty(STDIN_FILENO))
		c.json = true; /* script mode: one JSON line per event */
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (iface == NULL && (iface = net_loopback_name()) == NULL)
		errx(EXIT_FAIL, "no loopback interface with an IPv4 address");
	if (net_iface_lookup(iface, &c.ifc, errbuf, sizeof(errbuf)) == -1)
		errx(EXIT_USAGE, "--iface %s: %s", iface, errbuf);
	c.fd = net_udp_socket(c.ifc.addr, 0, false, true);
	if (c.fd == -1)
		err(EXIT_FAIL, "socket on %s", c.ifc.name);
	memset(&c.bcast, 0, sizeof(c.bcast));
	c.bcast.sin_family = AF_INET;
	c.bcast.sin_addr = c.ifc.bcast;
	c.bcast.sin_port = htons(c.disc_port);

	if (vote)
		return ask_vote(&c, timeout_ms);
	if (find_leader(&c, timeout_ms) == -1)
		return EXIT_NOSERVER;
	report_leader(&c);
	if (where)
		return EXIT_OK;
	return join_chat(&c, timeout_ms);
}
