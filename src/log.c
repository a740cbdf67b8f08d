/* log: the daemon's leveled log to stderr or syslog, and fatal exits. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#include "log.h"

static const char *log_ident = "ringchat";
static enum log_level log_lvl = LOG_LVL_INFO;
static int log_syslog;

static void vlog(enum log_level, const char *, va_list)
    __attribute__((format(printf, 2, 0)));
static void vlog_errno(enum log_level, const char *, va_list)
    __attribute__((format(printf, 2, 0)));

void
log_init(const char *ident, enum log_level lvl, int to_syslog)
{
	log_ident = ident;
	log_lvl = lvl;
	log_syslog = to_syslog;
	if (to_syslog)
		openlog(ident, LOG_PID | LOG_NDELAY, LOG_DAEMON);
}

void
log_set_level(enum log_level lvl)
{
	log_lvl = lvl;
}

enum log_level
log_get_level(void)
{
	return log_lvl;
}

static void
vlog(enum log_level lvl, const char *fmt, va_list ap)
{
	static const int prio[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
	static const char *tag[] = {"error", "warning", "info", "debug"};
	struct timespec ts;
	struct tm tm;
	char stamp[32];
	int saved = errno;

	if (lvl > log_lvl)
		return;
	if (log_syslog) {
		vsyslog(prio[lvl], fmt, ap);
		errno = saved;
		return;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%H:%M:%S", &tm);
	fprintf(stderr, "%s.%03ld %s %s: ", stamp, ts.tv_nsec / 1000000,
	    log_ident, tag[lvl]);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	fflush(stderr);
	errno = saved;
}

/* Appends ": strerror(errno)" the way warn(3) does. */
static void
vlog_errno(enum log_level lvl, const char *fmt, va_list ap)
{
	char buf[1024];
	int saved = errno;

	if (vsnprintf(buf, sizeof(buf), fmt, ap) < 0)
		buf[0] = '\0';
	log_emit(lvl, "%s: %s", buf, strerror(saved));
}

void
log_emit(enum log_level lvl, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(lvl, fmt, ap);
	va_end(ap);
}

void
log_warn(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog_errno(LOG_LVL_WARN, fmt, ap);
	va_end(ap);
}

void
log_warnx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(LOG_LVL_WARN, fmt, ap);
	va_end(ap);
}

void
log_info(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(LOG_LVL_INFO, fmt, ap);
	va_end(ap);
}

void
log_debug(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(LOG_LVL_DEBUG, fmt, ap);
	va_end(ap);
}

void
fatal(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog_errno(LOG_LVL_ERROR, fmt, ap);
	va_end(ap);
	exit(1);
}

void
fatalx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(LOG_LVL_ERROR, fmt, ap);
	va_end(ap);
	exit(1);
}

void
log_limited(struct log_limit *l, int64_t now_ms, int64_t interval_ms,
    const char *fmt, ...)
{
	char buf[1024];
	va_list ap;

	if (now_ms < l->next_ms) {
		l->suppressed++;
		return;
	}
	va_start(ap, fmt);
	if (vsnprintf(buf, sizeof(buf), fmt, ap) < 0)
		buf[0] = '\0';
	va_end(ap);
	if (l->suppressed > 0)
		log_warnx("%s (and %llu more like it)", buf,
		    (unsigned long long)l->suppressed);
	else
		log_warnx("%s", buf);
	l->suppressed = 0;
	l->next_ms = now_ms + interval_ms;
}
