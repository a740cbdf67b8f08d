/* net: UDP sockets, the chosen interface and its broadcast address. */
#include <sys/types.h>
#include <sys/socket.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "net.h"

#define NET_RCVBUF (4 << 20)

int
net_iface_lookup(
    const char *name, struct net_iface *ifc, char *err, size_t errsz)
{
	struct ifaddrs *ifa, *p;
	bool seen = false;

	if (getifaddrs(&ifa) == -1) {
		snprintf(err, errsz, "getifaddrs: %s", strerror(errno));
		return -1;
	}
	for (p = ifa; p != NULL; p = p->ifa_next) {
		const struct sockaddr_in *a, *m;

		if (strcmp(p->ifa_name, name) != 0)
			continue;
		seen = true;
		if (p->ifa_addr == NULL || p->ifa_addr->sa_family != AF_INET ||
		    p->ifa_netmask == NULL)
			continue;
		a = (const struct sockaddr_in *)(const void *)p->ifa_addr;
		m = (const struct sockaddr_in *)(const void *)p->ifa_netmask;
		memset(ifc, 0, sizeof(*ifc));
		strlcpy(ifc->name, name, sizeof(ifc->name));
		ifc->addr = a->sin_addr;
		ifc->mask = m->sin_addr;
		ifc->bcast.s_addr = a->sin_addr.s_addr | ~m->sin_addr.s_addr;
		ifc->loopback = (p->ifa_flags & IFF_LOOPBACK) != 0;
		freeifaddrs(ifa);
		return 0;
	}
	freeifaddrs(ifa);
	if (seen)
		snprintf(err, errsz, "interface %s has no IPv4 address", name);
	else
		snprintf(err, errsz, "no interface named %s", name);
	return -1;
}

const char *
net_loopback_name(void)
{
	static char name[NET_IFNAME_MAX];
	struct ifaddrs *ifa, *p;

	if (getifaddrs(&ifa) == -1)
		return NULL;
	name[0] = '\0';
	for (p = ifa; p != NULL; p = p->ifa_next) {
		if ((p->ifa_flags & IFF_LOOPBACK) && p->ifa_addr != NULL &&
		    p->ifa_addr->sa_family == AF_INET) {
			strlcpy(name, p->ifa_name, sizeof(name));
			break;
		}
	}
	freeifaddrs(ifa);
	return name[0] != '\0' ? name : NULL;
}

int
net_udp_socket(struct in_addr addr, uint16_t port, bool reuse, bool bcast)
{
	struct sockaddr_in sin;
	int fd, on = 1, saved, rcvbuf = NET_RCVBUF;

	fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return -1;
	if (reuse &&
	    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) == -1)
		goto fail;
	if (bcast &&
	    setsockopt(fd, SOL_SOCKET, SO_BROADCAST, &on, sizeof(on)) == -1)
		goto fail;
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr = addr;
	sin.sin_port = htons(port);
	if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == -1)
		goto fail;
	/* Room for a burst from many clients; capped by rmem_max. */
	(void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	return fd;
fail:
	saved = errno;
	close(fd);
	errno = saved;
	return -1;
}

uint16_t
net_local_port(int fd)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);

	if (getsockname(fd, (struct sockaddr *)&sin, &len) == -1)
		return 0;
	return ntohs(sin.sin_port);
}

int
net_sockaddr(struct sockaddr_in *sin, const char *ip, uint16_t port)
{
	memset(sin, 0, sizeof(*sin));
	sin->sin_family = AF_INET;
	sin->sin_port = htons(port);
	if (inet_pton(AF_INET, ip, &sin->sin_addr) != 1)
		return -1;
	return 0;
}

int
net_parse_hostport(const char *s, char *ip, size_t ipsz, uint16_t *port)
{
	const char *colon = strrchr(s, ':');
	struct in_addr a;
	const char *errstr;
	char tmp[64];
	long long p;

	if (colon == NULL || (size_t)(colon - s) >= sizeof(tmp))
		return -1;
	memcpy(tmp, s, (size_t)(colon - s));
	tmp[colon - s] = '\0';
	if (inet_pton(AF_INET, tmp, &a) != 1)
		return -1;
	p = strtonum(colon + 1, 1, 65535, &errstr);
	if (errstr != NULL)
		return -1;
	if (strlcpy(ip, tmp, ipsz) >= ipsz)
		return -1;
	*port = (uint16_t)p;
	return 0;
}

ssize_t
net_send(int fd, const struct sockaddr_in *to, const void *buf, size_t len)
{
	ssize_t n;

	do {
		n = sendto(
		    fd, buf, len, 0, (const struct sockaddr *)to, sizeof(*to));
	} while (n == -1 && errno == EINTR);
	return n;
}

const char *
net_ntop(const struct sockaddr_in *sin, char *buf, size_t bufsz)
{
	char ip[INET_ADDRSTRLEN];

	if (inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof(ip)) == NULL)
		strlcpy(ip, "?", sizeof(ip));
	snprintf(buf, bufsz, "%s:%u", ip, ntohs(sin->sin_port));
	return buf;
}
