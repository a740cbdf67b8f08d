/* flood: one host's fastest stream of bad datagrams, for tools/bench_flood. */
#include <sys/socket.h>
#include <sys/types.h>

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/udp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "net.h"
#include "wire.h"

/*
 * Sends, as fast as one thread can (sendmmsg of --batch datagrams), or
 * paced at --rate, one kind of datagram a ringchatd must refuse:
 *
 *   garbage  random bytes without '@': wire_decode fails
 *   badmac   a control datagram (beat) in the sealed format with a
 *            well-formed but wrong MAC, `from` a member's UUID (--as)
 *   news     a sealed-looking news with a wrong MAC: a stranger's news
 *            must be verified, so this is the MAC check a stranger can
 *            make a server do
 *   sealed   a client session datagram (0xff, version 1) of a random
 *            key with a wrong tag
 *
 * From an ordinary socket bound to --from (default 127.0.0.77), or with
 * --spoof ADDR:PORT from a raw socket that writes that source into the
 * IP header (a member's own control address: the worst case), or with
 * --spoof random, a new random 127.0.0.0/8 source for every datagram.
 * Raw sockets need CAP_NET_RAW: run inside `unshare -rn`.  Targets must
 * be on 127.0.0.0/8.  Prints one JSON line: datagrams sent, seconds,
 * rate, send errors.
 */

#define FL_BATCH_MAX 256
#define FL_TARGETS   8
#define FL_PKT_MAX   (WIRE_MAX + 28)
#define FL_POOL	     1024 /* payloads made in advance, sent in turn */

enum fl_kind { K_GARBAGE, K_BADMAC, K_NEWS, K_SEALED };

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
	    "usage: flood --to ADDR:PORT [--to ...] [--kind KIND] [--from ADDR]\n"
	    "             [--spoof ADDR:PORT|random] [--as UUID] [--size N]\n"
	    "             [--rate N|max] [--duration S] [--batch N] [--epoch N]\n"
	    "\n"
	    "  --to ADDR:PORT   a target (127.0.0.0/8), up to 8, in turn\n"
	    "  --kind KIND      garbage, badmac, news or sealed (default garbage)\n"
	    "  --from ADDR      source address to bind (default 127.0.0.77)\n"
	    "  --spoof SRC      raw socket: this ADDR:PORT as the source, or\n"
	    "                   random: a new 127.0.0.0/8 source each datagram\n"
	    "  --as UUID        the `from` of badmac and news (default random)\n"
	    "  --size N         garbage and sealed: bytes per datagram (default 64)\n"
	    "  --rate N|max     datagrams a second (default max)\n"
	    "  --duration S     seconds (default 5)\n"
	    "  --batch N        datagrams per sendmmsg (default 64)\n"
	    "  --epoch N        sealed: this leader epoch (default random)\n");
	exit(code);
}

static void
addr_arg(const char *opt, const char *s, struct sockaddr_in *sin)
{
	char ip[INET_ADDRSTRLEN];
	uint16_t port;

	if (net_parse_hostport(s, ip, sizeof(ip), &port) == -1 ||
	    net_sockaddr(sin, ip, port) == -1) {
		fprintf(stderr, "flood: %s %s: expected ADDR:PORT\n", opt, s);
		exit(2);
	}
	if ((ntohl(sin->sin_addr.s_addr) >> 24) != 127) {
		fprintf(stderr, "flood: %s %s: only 127.0.0.0/8\n", opt, s);
		exit(2);
	}
}

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
random_uuid(char out[37])
{
	uint8_t b[16];

	arc4random_buf(b, sizeof(b));
	b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
	b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
	snprintf(out, 37,
	    "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
	    "%02x%02x%02x%02x%02x%02x",
	    b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10],
	    b[11], b[12], b[13], b[14], b[15]);
}

/* 43 base64url characters that decode canonically: the HMAC is computed. */
static void
random_mac(char out[44])
{
	static const char b64[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstu"
	    "vwxyz0123456789-_";
	static const char last[] = "AEIMQUYcgkosw048";
	int i;

	for (i = 0; i < 42; i++)
		out[i] = b64[arc4random_uniform(64)];
	out[42] = last[arc4random_uniform(16)];
	out[43] = '\0';
}

/* One datagram of kind k into buf; its length. */
static size_t
make_payload(enum fl_kind k, const char *as, size_t size, int64_t epoch,
    uint64_t seq, char *buf, size_t bufsz)
{
	char mac[44], uuid[37];
	uint64_t ctr = ((uint64_t)time(NULL) << 20) + (seq & 0xfffff);
	size_t i;
	int n;

	switch (k) {
	case K_GARBAGE:
		for (i = 0; i < size; i++)
			buf[i] = (char)('a' + arc4random_uniform(26));
		return size;
	case K_SEALED:
		arc4random_buf(buf, size);
		buf[0] = (char)0xff;
		buf[1] = 1;
		if (epoch >= 0 && size >= 42)
			for (i = 0; i < 8; i++) /* after the key, big-endian */
				buf[34 + i] =
				    (char)((uint64_t)epoch >> (56 - 8 * i));
		return size;
	case K_BADMAC:
	case K_NEWS:
		break;
	}
	random_mac(mac);
	if (as == NULL) {
		random_uuid(uuid);
		as = uuid;
	}
	if (k == K_BADMAC)
		n = snprintf(buf, bufsz,
		    "beat@*@@%s@epoch=1@seq=%" PRIu64 "@sv=1@ctr=%" PRIu64
		    "@mac=%s",
		    as, seq, ctr, mac);
	else
		n = snprintf(buf, bufsz,
		    "news@*@evil@%s@addr=127.0.0.1@port=9@cport=10@role=leader"
		    "@epoch=999999@leader=%s@ctr=%" PRIu64 "@mac=%s",
		    as, as, ctr, mac);
	return n > 0 && (size_t)n < bufsz ? (size_t)n : 0;
}

static uint16_t
ip_csum(const void *p, size_t len)
{
	const uint8_t *b = p;
	uint32_t sum = 0;
	size_t i;

	for (i = 0; i + 1 < len; i += 2)
		sum += (uint32_t)(b[i] << 8 | b[i + 1]);
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return htons((uint16_t)~sum);
}

/* An IPv4 and UDP header in front of payload (UDP checksum 0: none). */
static size_t
make_raw(const struct sockaddr_in *src, const struct sockaddr_in *dst,
    const char *payload, size_t plen, char *out)
{
	struct iphdr ip;
	struct udphdr udp;

	memset(&ip, 0, sizeof(ip));
	ip.version = 4;
	ip.ihl = 5;
	ip.ttl = 64;
	ip.protocol = IPPROTO_UDP;
	ip.tot_len = htons((uint16_t)(sizeof(ip) + sizeof(udp) + plen));
	ip.saddr = src->sin_addr.s_addr;
	ip.daddr = dst->sin_addr.s_addr;
	ip.check = ip_csum(&ip, sizeof(ip));
	memset(&udp, 0, sizeof(udp));
	udp.source = src->sin_port;
	udp.dest = dst->sin_port;
	udp.len = htons((uint16_t)(sizeof(udp) + plen));
	memcpy(out, &ip, sizeof(ip));
	memcpy(out + sizeof(ip), &udp, sizeof(udp));
	memcpy(out + sizeof(ip) + sizeof(udp), payload, plen);
	return sizeof(ip) + sizeof(udp) + plen;
}

int
main(int argc, char *argv[])
{
	static const struct option opts[] = {{"to", 1, NULL, 't'},
	    {"kind", 1, NULL, 'k'}, {"from", 1, NULL, 'f'},
	    {"spoof", 1, NULL, 's'}, {"as", 1, NULL, 'a'},
	    {"size", 1, NULL, 'z'}, {"rate", 1, NULL, 'r'},
	    {"duration", 1, NULL, 'd'}, {"batch", 1, NULL, 'b'},
	    {"epoch", 1, NULL, 'e'}, {"help", 0, NULL, 'h'},
	    {NULL, 0, NULL, 0}};
	static char pkt[FL_BATCH_MAX][FL_PKT_MAX];
	static char pool[FL_POOL][WIRE_MAX + 1];
	static size_t poollen[FL_POOL];
	static struct mmsghdr mm[FL_BATCH_MAX];
	static struct iovec iov[FL_BATCH_MAX];
	struct sockaddr_in to[FL_TARGETS], from, spoof;
	struct sigaction sa;
	enum fl_kind kind = K_GARBAGE;
	const char *as = NULL, *errstr;
	bool raw = false, random_src = false;
	double rate = 0, duration = 5, t0, t, next;
	uint64_t sent = 0, errors = 0, seq = 0;
	size_t size = 64, batch = 64, nto = 0, i;
	int64_t epoch = -1;
	int ch, fd;

	net_sockaddr(&from, "127.0.0.77", 0);
	memset(&spoof, 0, sizeof(spoof));
	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (ch) {
		case 't':
			if (nto == FL_TARGETS)
				usage(2);
			addr_arg("--to", optarg, &to[nto++]);
			break;
		case 'k':
			if (strcmp(optarg, "garbage") == 0)
				kind = K_GARBAGE;
			else if (strcmp(optarg, "badmac") == 0)
				kind = K_BADMAC;
			else if (strcmp(optarg, "news") == 0)
				kind = K_NEWS;
			else if (strcmp(optarg, "sealed") == 0)
				kind = K_SEALED;
			else
				usage(2);
			break;
		case 'f':
			if (net_sockaddr(&from, optarg, 0) == -1 ||
			    (ntohl(from.sin_addr.s_addr) >> 24) != 127)
				usage(2);
			break;
		case 's':
			raw = true;
			if (strcmp(optarg, "random") == 0)
				random_src = true;
			else
				addr_arg("--spoof", optarg, &spoof);
			break;
		case 'a':
			as = optarg;
			break;
		case 'z':
			size = (size_t)strtonum(optarg, 2, WIRE_MAX, &errstr);
			if (errstr != NULL)
				usage(2);
			break;
		case 'r':
			if (strcmp(optarg, "max") != 0 &&
			    (rate = strtod(optarg, NULL)) <= 0)
				usage(2);
			break;
		case 'd':
			if ((duration = strtod(optarg, NULL)) <= 0 ||
			    duration > 3600)
				usage(2);
			break;
		case 'b':
			batch =
			    (size_t)strtonum(optarg, 1, FL_BATCH_MAX, &errstr);
			if (errstr != NULL)
				usage(2);
			break;
		case 'e':
			epoch =
			    (int64_t)strtonum(optarg, 0, INT64_MAX, &errstr);
			if (errstr != NULL)
				usage(2);
			break;
		case 'h':
			usage(0);
		default:
			usage(2);
		}
	}
	if (nto == 0 || optind != argc)
		usage(2);
	if (raw) {
		fd = socket(AF_INET, SOCK_RAW, IPPROTO_RAW);
		if (fd == -1) {
			fprintf(stderr,
			    "flood: raw socket: %s (run inside unshare -rn)\n",
			    strerror(errno));
			return 1;
		}
	} else if ((fd = socket(AF_INET, SOCK_DGRAM, 0)) == -1 ||
	    bind(fd, (struct sockaddr *)&from, sizeof(from)) == -1) {
		/* Blocking sends: the kernel paces us, nothing is lost here. */
		fprintf(stderr, "flood: bind: %s\n", strerror(errno));
		return 1;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	/* Made in advance: the sender's time goes into sending. */
	for (i = 0; i < FL_POOL; i++)
		poollen[i] =
		    make_payload(kind, as, size, epoch, i, pool[i], WIRE_MAX);
	t0 = now_s();
	next = t0;
	while (!stop_flag && (t = now_s()) < t0 + duration) {
		int n;

		if (rate > 0 && t < next) {
			struct timespec ts = {0, (long)((next - t) * 1e9)};

			nanosleep(&ts, NULL);
			continue;
		}
		for (i = 0; i < batch; i++) {
			const struct sockaddr_in *dst = &to[(seq + i) % nto];
			const char *payload = pool[(seq + i) % FL_POOL];
			size_t plen = poollen[(seq + i) % FL_POOL];

			if (raw) {
				struct sockaddr_in src = spoof;

				if (random_src) {
					src.sin_addr.s_addr =
					    htonl(0x7f000000U |
						(arc4random() & 0xffffff));
					src.sin_port = htons((uint16_t)(1024 +
					    arc4random_uniform(60000)));
				}
				iov[i].iov_len =
				    make_raw(&src, dst, payload, plen, pkt[i]);
				iov[i].iov_base = pkt[i];
			} else {
				iov[i].iov_base = (void *)(uintptr_t)payload;
				iov[i].iov_len = plen;
			}
			memset(&mm[i], 0, sizeof(mm[i]));
			mm[i].msg_hdr.msg_iov = &iov[i];
			mm[i].msg_hdr.msg_iovlen = 1;
			mm[i].msg_hdr.msg_name = (void *)(uintptr_t)dst;
			mm[i].msg_hdr.msg_namelen = sizeof(*dst);
		}
		seq += batch;
		n = sendmmsg(fd, mm, (unsigned)batch, 0);
		if (n < 0) {
			if (errno != EINTR)
				errors += batch;
			continue;
		}
		sent += (uint64_t)n;
		errors += batch - (size_t)n;
		if (rate > 0)
			next += (double)batch / rate;
	}
	t = now_s() - t0;
	printf("{\"kind\":\"%s\",\"sent\":%" PRIu64 ",\"seconds\":%.3f,"
	       "\"per_s\":%.0f,\"errors\":%" PRIu64 "}\n",
	    kind == K_GARBAGE	   ? "garbage"
		: kind == K_BADMAC ? "badmac"
		: kind == K_NEWS   ? "news"
				   : "sealed",
	    sent, t, (double)sent / t, errors);
	close(fd);
	return 0;
}
