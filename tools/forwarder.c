/* forwarder: the simplest UDP relay, this machine's limit for ringchat's. */
#include <sys/socket.h>
#include <sys/types.h>

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "net.h"
#include "wire.h"

/*
 * Every datagram that arrives on --listen is sent on, unchanged, to --to:
 * one recvmmsg of up to --batch datagrams, one sendmmsg of the same
 * batch, nothing parsed.  Whatever ringchatd does per message beyond
 * that (decoding, the relay, replication, acknowledgements) is its cost;
 * loadgen --mode raw measures this with the same clients.
 */

#define FWD_BATCH_MAX 1024
#define FWD_RCVBUF    (8 << 20)

static volatile sig_atomic_t stop_flag;

static void
on_signal(int sig)
{
	(void)sig;
	stop_flag = 1;
}

static void __attribute__((noreturn)) usage(int code)
{
	fprintf(code == 0 ? stdout : stderr,
	    "usage: forwarder --listen ADDR:PORT --to ADDR:PORT [--batch N]\n"
	    "\n"
	    "  --listen ADDR:PORT  where datagrams arrive (127.0.0.0/8)\n"
	    "  --to ADDR:PORT      where every one of them is sent (127.0.0.0/8)\n"
	    "  --batch N           datagrams per recvmmsg and sendmmsg "
	    "(default 64)\n"
	    "\n"
	    "Runs until SIGINT or SIGTERM, then prints what it forwarded.\n");
	exit(code);
}

static void
parse(const char *opt, const char *s, struct sockaddr_in *sin)
{
	char ip[INET_ADDRSTRLEN];
	uint16_t port;

	if (net_parse_hostport(s, ip, sizeof(ip), &port) == -1 ||
	    net_sockaddr(sin, ip, port) == -1) {
		fprintf(
		    stderr, "forwarder: %s %s: expected ADDR:PORT\n", opt, s);
		exit(2);
	}
	if ((ntohl(sin->sin_addr.s_addr) >> 24) != 127) {
		fprintf(stderr, "forwarder: %s %s: only 127.0.0.0/8\n", opt, s);
		exit(2);
	}
}

int
main(int argc, char *argv[])
{
	static const struct option opts[] = {{"listen", 1, NULL, 'l'},
	    {"to", 1, NULL, 't'}, {"batch", 1, NULL, 'b'},
	    {"help", 0, NULL, 'h'}, {NULL, 0, NULL, 0}};
	static char buf[FWD_BATCH_MAX][WIRE_MAX + 1];
	static struct mmsghdr rx[FWD_BATCH_MAX], tx[FWD_BATCH_MAX];
	static struct iovec iov[FWD_BATCH_MAX], txiov[FWD_BATCH_MAX];
	struct sockaddr_in lsin, tsin;
	struct sigaction sa;
	bool have_l = false, have_t = false;
	uint64_t in = 0, out = 0, lost = 0, calls = 0;
	const char *errstr;
	int ch, rfd, sfd, batch = 64, i, rcvbuf = FWD_RCVBUF;

	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (ch) {
		case 'l':
			parse("--listen", optarg, &lsin);
			have_l = true;
			break;
		case 't':
			parse("--to", optarg, &tsin);
			have_t = true;
			break;
		case 'b':
			batch =
			    (int)strtonum(optarg, 1, FWD_BATCH_MAX, &errstr);
			if (errstr != NULL) {
				fprintf(stderr, "forwarder: --batch %s: %s\n",
				    optarg, errstr);
				exit(2);
			}
			break;
		case 'h':
			usage(0);
		default:
			usage(2);
		}
	}
	if (optind != argc || !have_l || !have_t)
		usage(2);
	/* Blocking: the loop sleeps in recvmmsg. */
	if ((rfd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0)) == -1 ||
	    bind(rfd, (struct sockaddr *)&lsin, sizeof(lsin)) == -1 ||
	    (sfd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0)) == -1 ||
	    connect(sfd, (struct sockaddr *)&tsin, sizeof(tsin)) == -1) {
		fprintf(stderr, "forwarder: socket: %s\n", strerror(errno));
		exit(1);
	}
	if (setsockopt(
		rfd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf)) == -1)
		(void)setsockopt(
		    rfd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal; /* no SA_RESTART: recvmmsg returns EINTR */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	for (i = 0; i < batch; i++) {
		iov[i].iov_base = buf[i];
		iov[i].iov_len = WIRE_MAX + 1;
		rx[i].msg_hdr.msg_iov = &iov[i];
		rx[i].msg_hdr.msg_iovlen = 1;
		tx[i].msg_hdr.msg_iov = &txiov[i];
		tx[i].msg_hdr.msg_iovlen = 1;
	}
	printf("forwarder: %s:%u -> ", inet_ntoa(lsin.sin_addr),
	    ntohs(lsin.sin_port));
	printf("%s:%u\n", inet_ntoa(tsin.sin_addr), ntohs(tsin.sin_port));
	fflush(stdout);
	while (!stop_flag) {
		int n =
		    recvmmsg(rfd, rx, (unsigned)batch, MSG_WAITFORONE, NULL);
		int done = 0;

		if (n == -1) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, "forwarder: recvmmsg: %s\n",
			    strerror(errno));
			exit(1);
		}
		calls++;
		in += (uint64_t)n;
		for (i = 0; i < n; i++) {
			txiov[i].iov_base = buf[i];
			txiov[i].iov_len = rx[i].msg_len;
		}
		while (done < n) {
			int k =
			    sendmmsg(sfd, tx + done, (unsigned)(n - done), 0);

			if (k == -1) {
				if (errno == EINTR)
					continue;
				lost += (uint64_t)(n - done); /* sink gone */
				break;
			}
			done += k;
		}
		out += (uint64_t)done;
	}
	printf("forwarder: %" PRIu64 " datagrams in, %" PRIu64 " out, %" PRIu64
	       " not sent, %.1f per recvmmsg\n",
	    in, out, lost, calls ? (double)in / (double)calls : 0.0);
	return 0;
}
