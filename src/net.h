/* net: UDP sockets, the chosen interface and its broadcast address. */
#ifndef RINGCHAT_NET_H
#define RINGCHAT_NET_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define NET_IFNAME_MAX 16

struct net_iface {
	char name[NET_IFNAME_MAX];
	struct in_addr addr;
	struct in_addr mask;
	struct in_addr bcast; /* addr | ~mask, from getifaddrs */
	bool loopback;
};

/*
 * Finds the IPv4 address of interface `name` with getifaddrs and
 * computes its broadcast address from address and netmask.  On failure
 * returns -1 and writes why into err.
 */
int
net_iface_lookup(const char *name, struct net_iface *, char *err, size_t errsz);
/* The loopback interface's name ("lo" on Linux), or NULL. */
const char *net_loopback_name(void);

/*
 * A non-blocking UDP socket bound to addr:port.  reuse sets SO_REUSEADDR
 * (the shared discovery port); bcast sets SO_BROADCAST.  -1 on failure,
 * with errno set.  A port of 0 picks a free one.
 */
int net_udp_socket(struct in_addr addr, uint16_t port, bool reuse, bool bcast);
/* The port a socket is bound to, 0 on failure. */
uint16_t net_local_port(int fd);

/* Parses "a.b.c.d" and port into a sockaddr; -1 when malformed. */
int net_sockaddr(struct sockaddr_in *, const char *ip, uint16_t port);
/* Parses "HOST:PORT" (dotted IPv4 only); -1 when malformed. */
int net_parse_hostport(const char *, char *ip, size_t ipsz, uint16_t *port);
/* Sends one datagram; -1 on failure (errno), never blocks. */
ssize_t net_send(int fd, const struct sockaddr_in *, const void *, size_t);
/* Formats an address "a.b.c.d:port" for logs. */
const char *net_ntop(const struct sockaddr_in *, char *buf, size_t bufsz);

#endif
