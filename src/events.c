/* events: one JSON line per significant server event, for timelines. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "events.h"
#include "loop.h"

#define EVENTS_KV_MAX 16

int
events_open(struct events *ev, const char *path, const struct uuid *self,
    const char *name)
{
	memset(ev, 0, sizeof(*ev));
	ev->fd = -1;
	uuid_format(self, ev->server);
	strlcpy(ev->name, name, sizeof(ev->name));
	if (path == NULL)
		return 0;
	ev->fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	return ev->fd == -1 ? -1 : 0;
}

void
events_close(struct events *ev)
{
	if (ev->fd != -1)
		close(ev->fd);
	ev->fd = -1;
}

void
events_emit(
    struct events *ev, const char *event, const struct store_kv *kv, size_t n)
{
	struct store_kv all[EVENTS_KV_MAX + 5];
	struct timespec ts;
	char wall[40], line[2048];
	struct tm tm;
	size_t i, k = 0;

	if (ev->fd == -1)
		return;
	if (n > EVENTS_KV_MAX) {
		ev->dropped++;
		return;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(wall, sizeof(wall), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(wall + strlen(wall), sizeof(wall) - strlen(wall), ".%06ldZ",
	    ts.tv_nsec / 1000);
	memset(all, 0, sizeof(all));
	all[k].key = "t_mono_us";
	all[k].type = KV_INT;
	all[k++].i = loop_now_us();
	all[k].key = "t_wall";
	all[k].type = KV_STR;
	all[k++].s = wall;
	all[k].key = "server";
	all[k].type = KV_STR;
	all[k++].s = ev->server;
	all[k].key = "name";
	all[k].type = KV_STR;
	all[k++].s = ev->name;
	all[k].key = "event";
	all[k].type = KV_STR;
	all[k++].s = event;
	for (i = 0; i < n; i++)
		all[k++] = kv[i];
	if (store_json_line(line, sizeof(line), all, k) == -1) {
		ev->dropped++;
		return;
	}
	if (write(ev->fd, line, strlen(line)) == -1)
		ev->dropped++;
}
