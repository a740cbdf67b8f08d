/* log: the daemon's leveled log to stderr or syslog, and fatal exits. */
#ifndef RINGCHAT_LOG_H
#define RINGCHAT_LOG_H

#include <stdarg.h>
#include <stdint.h>

enum log_level { LOG_LVL_ERROR, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };

/* ident prefixes every line; to_syslog sends lines to syslog(3) instead. */
void log_init(const char *ident, enum log_level, int to_syslog);
void log_set_level(enum log_level);
enum log_level log_get_level(void);

/* One line at an explicit level. */
void log_emit(enum log_level, const char *, ...)
    __attribute__((format(printf, 2, 3)));
void log_warn(const char *, ...) __attribute__((format(printf, 1, 2)));
void log_warnx(const char *, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *, ...) __attribute__((format(printf, 1, 2)));
/* Broken internal invariants and start-up failures only. */
void fatal(const char *, ...) __attribute__((format(printf, 1, 2), noreturn));
void fatalx(const char *, ...) __attribute__((format(printf, 1, 2), noreturn));

/*
 * A rate limit for one class of complaint: at most one line per
 * interval, saying how many were suppressed since the last one.
 */
struct log_limit {
	int64_t next_ms; /* monotonic time the next line may be written */
	uint64_t suppressed;
};
void log_limited(struct log_limit *, int64_t now_ms, int64_t interval_ms,
    const char *, ...) __attribute__((format(printf, 4, 5)));

#endif
