/* store: the state files (identity, servers.json, users.json) and all JSON. */
#include <sys/stat.h>
#include <sys/types.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cJSON.h>

#include "store.h"

/* A state file larger than this is refused rather than read. */
#define STORE_FILE_MAX (64 * 1024 * 1024)
/*
 * Nesting allowed in a state file.  Ours need four levels; the rest is
 * room for keys added later.  It also keeps cJSON's recursion shallow.
 */
#define JSON_DEPTH_MAX 64
/* cJSON copies a number into a 64-byte buffer before strtod. */
#define JSON_NUMBER_MAX 63
/* 9999-12-31T23:59:59Z, the last second a four-digit year can show. */
#define STORE_TIME_MAX INT64_C(253402300799)
#define STORE_TIME_LEN 20 /* "YYYY-MM-DDTHH:MM:SSZ" */

/* The text being parsed, for messages that point into it. */
struct doc {
	const char *name; /* file name in messages */
	const char *text; /* after any byte order mark */
	size_t len;
	struct store_error *err;
};

/* Where a value is: its JSON path and, when known, its offset. */
struct where {
	char path[96]; /* "servers[2].port"; "" for the top level */
	size_t off;
	bool has_off;
};

static int seterr(struct store_error *, const char *, ...)
    __attribute__((format(printf, 2, 3)));
static int doc_fail(const struct doc *, const struct where *, const char *, ...)
    __attribute__((format(printf, 3, 4)));
static void where_path(struct where *, const char *, ...)
    __attribute__((format(printf, 2, 3)));

static int
seterr(struct store_error *err, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL)
		return -1;
	va_start(ap, fmt);
	/* A message cut at 512 bytes still names the file and the problem. */
	(void)vsnprintf(err->text, sizeof(err->text), fmt, ap);
	va_end(ap);
	return -1;
}

/*
 * The offset of the first byte of s that does not begin a valid UTF-8
 * sequence (no overlong forms, no surrogates, nothing past U+10FFFF),
 * or len when all of it is valid.
 */
static size_t
utf8_check(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, k, n;
	uint32_t cp, min;

	while (i < len) {
		if (p[i] < 0x80) {
			i++;
			continue;
		}
		if ((p[i] & 0xe0) == 0xc0) {
			n = 1;
			cp = p[i] & 0x1f;
			min = 0x80;
		} else if ((p[i] & 0xf0) == 0xe0) {
			n = 2;
			cp = p[i] & 0x0f;
			min = 0x800;
		} else if ((p[i] & 0xf8) == 0xf0) {
			n = 3;
			cp = p[i] & 0x07;
			min = 0x10000;
		} else
			return i;
		if (len - i <= n)
			return i;
		for (k = 1; k <= n; k++) {
			if ((p[i + k] & 0xc0) != 0x80)
				return i;
			cp = cp << 6 | (p[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return i;
		i += n + 1;
	}
	return len;
}

/* 1-based line and column (in characters) of offset off. */
static void
doc_pos(const struct doc *d, size_t off, size_t *line, size_t *col)
{
	size_t i;

	*line = 1;
	*col = 1;
	for (i = 0; i < off && i < d->len; i++) {
		if (d->text[i] == '\n') {
			(*line)++;
			*col = 1;
		} else if (((unsigned char)d->text[i] & 0xc0) != 0x80)
			(*col)++;
	}
}

/* Sets "NAME:LINE:COL: PATH: message" and returns -1. */
static int
doc_fail(const struct doc *d, const struct where *w, const char *fmt, ...)
{
	char msg[256], pos[48] = "";
	size_t line, col;
	va_list ap;

	va_start(ap, fmt);
	(void)vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (w->has_off) {
		doc_pos(d, w->off, &line, &col);
		(void)snprintf(pos, sizeof(pos), ":%zu:%zu", line, col);
	}
	return seterr(d->err, "%s%s: %s%s%s", d->name, pos, w->path,
	    w->path[0] != '\0' ? ": " : "", msg);
}

static int
doc_fail_at(const struct doc *d, size_t off, const char *msg)
{
	struct where w;

	w.path[0] = '\0';
	w.off = off;
	w.has_off = true;
	return doc_fail(d, &w, "%s", msg);
}

static bool
is_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static size_t
skip_ws(const struct doc *d, size_t i)
{
	while (i < d->len && is_ws(d->text[i]))
		i++;
	return i;
}

/* Describes the byte at i for "expected X but found Y". */
static void
describe(const struct doc *d, size_t i, char *buf, size_t bufsz)
{
	unsigned char c;
	size_t n;

	if (i >= d->len) {
		(void)strlcpy(buf, "end of file", bufsz);
		return;
	}
	c = (unsigned char)d->text[i];
	if (c >= 0x21 && c < 0x7f)
		(void)snprintf(buf, bufsz, "'%c'", c);
	else if (c < 0x80)
		(void)snprintf(buf, bufsz, "control character 0x%02x", c);
	else if (utf8_check(d->text + i, d->len - i) != 0) {
		/* A valid character: show it, it is what the reader sees. */
		for (n = 1; n < 4 && i + n < d->len &&
		     ((unsigned char)d->text[i + n] & 0xc0) == 0x80;
		     n++)
			;
		(void)snprintf(buf, bufsz, "'%.*s'", (int)n, d->text + i);
	} else
		(void)snprintf(buf, bufsz, "invalid UTF-8 byte 0x%02x", c);
}

static int
expected(const struct doc *d, size_t i, const char *what)
{
	char found[48], msg[128];

	describe(d, i, found, sizeof(found));
	(void)snprintf(
	    msg, sizeof(msg), "expected %s but found %s", what, found);
	return doc_fail_at(d, i, msg);
}

static int
hex4(const char *s, uint32_t *v)
{
	int k;

	*v = 0;
	for (k = 0; k < 4; k++) {
		char c = s[k];

		*v <<= 4;
		if (c >= '0' && c <= '9')
			*v |= (uint32_t)(c - '0');
		else if (c >= 'a' && c <= 'f')
			*v |= (uint32_t)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			*v |= (uint32_t)(c - 'A' + 10);
		else
			return -1;
	}
	return 0;
}

/* Checks the string starting at the quote at *ip; leaves *ip past it. */
static int
check_string(const struct doc *d, size_t *ip)
{
	size_t start = *ip, i = *ip + 1, bad;
	uint32_t u, lo;
	unsigned char c;

	for (;;) {
		if (i >= d->len)
			return doc_fail_at(d, start, "unterminated string");
		c = (unsigned char)d->text[i];
		if (c == '"')
			break;
		if (c < 0x20)
			return doc_fail_at(d, i,
			    "control character in a string (write it as an "
			    "escape)");
		if (c >= 0x80) {
			bad = utf8_check(d->text + i, d->len - i);
			if (bad == 0)
				return doc_fail_at(d, i, "invalid UTF-8");
			/* Step over one character only. */
			for (i++; i < d->len &&
			     ((unsigned char)d->text[i] & 0xc0) == 0x80;
			     i++)
				;
			continue;
		}
		if (c != '\\') {
			i++;
			continue;
		}
		if (i + 1 >= d->len)
			return doc_fail_at(d, start, "unterminated string");
		c = (unsigned char)d->text[i + 1];
		if (c != 'u') {
			if (strchr("\"\\/bfnrt", c) == NULL || c == '\0')
				return doc_fail_at(d, i, "invalid escape");
			i += 2;
			continue;
		}
		if (d->len - i < 6 || hex4(d->text + i + 2, &u) == -1)
			return doc_fail_at(d, i, "invalid \\u escape");
		if (u == 0)
			return doc_fail_at(d, i, "\\u0000 (NUL) in a string");
		if (u >= 0xdc00 && u <= 0xdfff)
			return doc_fail_at(d, i, "unpaired UTF-16 surrogate");
		if (u >= 0xd800 && u <= 0xdbff) {
			if (d->len - i < 12 || d->text[i + 6] != '\\' ||
			    d->text[i + 7] != 'u' ||
			    hex4(d->text + i + 8, &lo) == -1 || lo < 0xdc00 ||
			    lo > 0xdfff)
				return doc_fail_at(
				    d, i, "unpaired UTF-16 surrogate");
			i += 6;
		}
		i += 6;
	}
	*ip = i + 1;
	return 0;
}

static bool
is_digit(const struct doc *d, size_t i)
{
	return i < d->len && d->text[i] >= '0' && d->text[i] <= '9';
}

/* RFC 8259 number: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? */
static int
check_number(const struct doc *d, size_t *ip)
{
	size_t start = *ip, i = *ip;

	if (d->text[i] == '-')
		i++;
	if (!is_digit(d, i))
		return doc_fail_at(d, start, "malformed number");
	if (d->text[i] == '0' && is_digit(d, i + 1))
		return doc_fail_at(d, start, "malformed number (leading zero)");
	while (is_digit(d, i))
		i++;
	if (i < d->len && d->text[i] == '.') {
		if (!is_digit(d, ++i))
			return doc_fail_at(d, start, "malformed number");
		while (is_digit(d, i))
			i++;
	}
	if (i < d->len && (d->text[i] == 'e' || d->text[i] == 'E')) {
		i++;
		if (i < d->len && (d->text[i] == '+' || d->text[i] == '-'))
			i++;
		if (!is_digit(d, i))
			return doc_fail_at(d, start, "malformed number");
		while (is_digit(d, i))
			i++;
	}
	if (i - start > JSON_NUMBER_MAX)
		return doc_fail_at(d, start, "number too long");
	*ip = i;
	return 0;
}

/*
 * A strict RFC 8259 syntax check of the whole text before cJSON sees
 * it: cJSON accepts some malformed input (leading zeros, raw control
 * characters, invalid UTF-8, "\u0000" that silently cuts a string) and
 * reports the position of an error only roughly.  After this check the
 * text is exactly what the locator below expects.
 */
static int
json_check(const struct doc *d)
{
	enum {
		S_VALUE,	/* a value is due */
		S_VALUE_OR_END, /* after '[' */
		S_KEY,		/* after ',' in an object */
		S_KEY_OR_END,	/* after '{' */
		S_AFTER		/* after a value */
	} st = S_VALUE;
	char stack[JSON_DEPTH_MAX];
	size_t depth = 0, i = 0;
	char c;

	for (;;) {
		i = skip_ws(d, i);
		if (i >= d->len && st == S_AFTER && depth == 0)
			return 0;
		c = i < d->len ? d->text[i] : '\0';
		if ((st == S_VALUE_OR_END && c == ']') ||
		    (st == S_KEY_OR_END && c == '}')) {
			depth--;
			i++;
			st = S_AFTER;
			continue;
		}
		switch (st) {
		case S_VALUE_OR_END:
		case S_VALUE:
			if (i >= d->len ||
			    strchr("{[\"-0123456789tfn", c) == NULL)
				return expected(d, i,
				    st == S_VALUE ? "a value"
						  : "a value or ']'");
			if (c == '{' || c == '[') {
				if (depth == JSON_DEPTH_MAX)
					return doc_fail_at(
					    d, i, "nested too deeply");
				stack[depth++] = c;
				st = c == '{' ? S_KEY_OR_END : S_VALUE_OR_END;
				i++;
				break;
			}
			st = S_AFTER;
			if (c == '"') {
				if (check_string(d, &i) == -1)
					return -1;
			} else if (c == '-' || (c >= '0' && c <= '9')) {
				if (check_number(d, &i) == -1)
					return -1;
			} else if (d->len - i >= 4 &&
			    memcmp(d->text + i, "true", 4) == 0)
				i += 4;
			else if (d->len - i >= 5 &&
			    memcmp(d->text + i, "false", 5) == 0)
				i += 5;
			else if (d->len - i >= 4 &&
			    memcmp(d->text + i, "null", 4) == 0)
				i += 4;
			else
				return expected(d, i, "a value");
			break;
		case S_KEY_OR_END:
		case S_KEY:
			if (i >= d->len || c != '"')
				return expected(d, i,
				    st == S_KEY ? "a string key"
						: "a string key or '}'");
			if (check_string(d, &i) == -1)
				return -1;
			i = skip_ws(d, i);
			if (i >= d->len || d->text[i] != ':')
				return expected(d, i, "':'");
			i++;
			st = S_VALUE;
			break;
		case S_AFTER:
			if (depth == 0)
				return expected(
				    d, i, "end of file after the value");
			if (c == ',') {
				st = stack[depth - 1] == '{' ? S_KEY : S_VALUE;
				i++;
			} else if (c == (stack[depth - 1] == '{' ? '}' : ']')) {
				depth--;
				i++;
			} else
				return expected(d, i,
				    stack[depth - 1] == '{' ? "',' or '}'"
							    : "',' or ']'");
			break;
		}
	}
}

/*
 * The locator: finds where a value of the cJSON tree is in the text, to
 * point messages at it and to read integers from their digits.  It only
 * runs on text json_check accepted.  cJSON keeps the children of an
 * object or array in text order, so a child's index in the tree is its
 * index in the text.
 */

/* Offset just past the value at i. */
static size_t
skip_value(const struct doc *d, size_t i)
{
	size_t depth = 0;
	bool instr = false;

	for (; i < d->len; i++) {
		char c = d->text[i];

		if (instr) {
			if (c == '\\')
				i++;
			else if (c == '"') {
				instr = false;
				if (depth == 0)
					return i + 1;
			}
			continue;
		}
		switch (c) {
		case '"':
			instr = true;
			break;
		case '{':
		case '[':
			depth++;
			break;
		case '}':
		case ']':
			if (depth == 0)
				return i;
			if (--depth == 0)
				return i + 1;
			break;
		case ',':
		case ' ':
		case '\t':
		case '\n':
		case '\r':
			if (depth == 0)
				return i;
			break;
		default:
			break;
		}
	}
	return i;
}

/* The offset of the value of child idx of the container at off. */
static int
locate_child(const struct doc *d, size_t off, size_t idx, size_t *out)
{
	size_t i, k;
	bool obj;

	if (off >= d->len || (d->text[off] != '{' && d->text[off] != '['))
		return -1;
	obj = d->text[off] == '{';
	i = off + 1;
	for (k = 0;; k++) {
		i = skip_ws(d, i);
		if (i >= d->len || d->text[i] == '}' || d->text[i] == ']')
			return -1;
		if (obj) {
			i = skip_ws(d, skip_value(d, i));
			if (i >= d->len || d->text[i] != ':')
				return -1;
			i = skip_ws(d, i + 1);
			if (i >= d->len)
				return -1;
		}
		if (k == idx) {
			*out = i;
			return 0;
		}
		i = skip_ws(d, skip_value(d, i));
		if (i >= d->len || d->text[i] != ',')
			return -1;
		i++;
	}
}

/*
 * Our deepest path, "users[18446744073709551615].rooms[15]", fits in
 * w->path: nothing is cut.
 */
static void
where_path(struct where *w, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	(void)vsnprintf(w->path, sizeof(w->path), fmt, ap);
	va_end(ap);
}

static void
where_root(const struct doc *d, struct where *w)
{
	w->path[0] = '\0';
	w->off = skip_ws(d, 0);
	w->has_off = w->off < d->len;
}

/* w becomes the member at index idx, named key, of the object at ow. */
static void
where_member(const struct doc *d, const struct where *ow, size_t idx,
    const char *key, struct where *w)
{
	where_path(w, "%s%s%s", ow->path, ow->path[0] != '\0' ? "." : "", key);
	w->has_off = ow->has_off && locate_child(d, ow->off, idx, &w->off) == 0;
}

/* w becomes element idx of the array at aw. */
static void
where_elem(
    const struct doc *d, const struct where *aw, size_t idx, struct where *w)
{
	where_path(w, "%s[%zu]", aw->path, idx);
	w->has_off = aw->has_off && locate_child(d, aw->off, idx, &w->off) == 0;
}

/*
 * w, element idx - 1 of the array at aw, becomes element idx: a walk of
 * the whole array stays linear in its length.
 */
static void
where_next(
    const struct doc *d, const struct where *aw, size_t idx, struct where *w)
{
	size_t i;

	if (idx == 0 || !w->has_off) {
		where_elem(d, aw, idx, w);
		return;
	}
	where_path(w, "%s[%zu]", aw->path, idx);
	i = skip_ws(d, skip_value(d, w->off));
	if (i < d->len && d->text[i] == ',') {
		w->off = skip_ws(d, i + 1);
		w->has_off = w->off < d->len;
	} else
		w->has_off = false;
}

/*
 * Parses the text into *rootp after the strict check.  An empty or
 * whitespace-only text is a syntax error like any other.
 */
static int
doc_parse(struct doc *d, const char *name, const char *text, size_t len,
    struct store_error *err, cJSON **rootp)
{
	const char *end = NULL;

	d->name = name;
	d->err = err;
	if (len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0) {
		/* RFC 8259 lets a parser ignore a byte order mark. */
		text += 3;
		len -= 3;
	}
	d->text = text;
	d->len = len;
	*rootp = NULL;
	if (len > STORE_FILE_MAX)
		return seterr(err, "%s: too large (%zu bytes, at most %d)",
		    name, len, STORE_FILE_MAX);
	if (json_check(d) == -1)
		return -1;
	*rootp = cJSON_ParseWithLengthOpts(text, len, &end, 0);
	if (*rootp == NULL) {
		/* The text is valid JSON: most likely out of memory. */
		return doc_fail_at(d,
		    end != NULL && end >= text ? (size_t)(end - text) : 0,
		    "cJSON could not parse this (out of memory?)");
	}
	return 0;
}

/* ---- values shared by readers and writers ---------------------------- */

/*
 * NULL when s (in a buffer of max bytes) is a usable name: non-empty,
 * NUL-terminated within max, valid UTF-8 without control characters.
 * Otherwise why not, possibly written into why.
 */
static const char *
check_name(const char *s, size_t max, char *why, size_t whysz)
{
	size_t n = strnlen(s, max), i;

	if (n == 0)
		return "expected a non-empty string";
	if (n == max) {
		(void)snprintf(
		    why, whysz, "too long (at most %zu bytes)", max - 1);
		return why;
	}
	if (utf8_check(s, n) != n)
		return "not valid UTF-8";
	for (i = 0; i < n; i++) {
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return "control character in a name";
	}
	return NULL;
}

static const char *
check_room(const char *s, char *why, size_t whysz)
{
	if (s[0] != '#')
		return "expected a room name starting with '#'";
	if (s[1] == '\0')
		return "expected a room name after '#'";
	return check_name(s, ROOM_NAME_MAX, why, whysz);
}

/* NULL when s is a usable password hash, else why not. */
static const char *
check_pwhash(const char *s)
{
	switch (strnlen(s, AUTH_PWHASH_SIZE) == AUTH_PWHASH_SIZE
		? AUTH_EPW_HASH
		: auth_pw_hash_check(s)) {
	case AUTH_OK:
		return NULL;
	case AUTH_EPW_HASH:
		return "expected an Argon2id password hash (\"$argon2id$v=19$"
		       "m=...,t=...,p=1$...\") within the cost bounds";
	default:
		return "password hashes cannot be checked (libsodium did not "
		       "initialise)";
	}
}

static const char *
check_addr(const char *s)
{
	struct in_addr a;

	if (strnlen(s, RING_ADDR_MAX) == RING_ADDR_MAX ||
	    inet_pton(AF_INET, s, &a) != 1)
		return "expected a dotted IPv4 address";
	return NULL;
}

/* "YYYY-MM-DDTHH:MM:SSZ" to seconds since the epoch; -1 if malformed. */
static int
time_parse(const char *s, int64_t *out)
{
	static const char pat[] = "dddd-dd-ddTdd:dd:ddZ";
	int v[6] = {0}, k = 0;
	struct tm tm, chk;
	time_t t;
	size_t i;

	if (strlen(s) != STORE_TIME_LEN)
		return -1;
	for (i = 0; i < STORE_TIME_LEN; i++) {
		if (pat[i] == 'd') {
			if (s[i] < '0' || s[i] > '9')
				return -1;
			v[k] = v[k] * 10 + (s[i] - '0');
		} else if (s[i] != pat[i])
			return -1;
		else
			k++;
	}
	if (v[0] < 1970)
		return -1;
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = v[0] - 1900;
	tm.tm_mon = v[1] - 1;
	tm.tm_mday = v[2];
	tm.tm_hour = v[3];
	tm.tm_min = v[4];
	tm.tm_sec = v[5];
	chk = tm;
	if ((t = timegm(&tm)) == (time_t)-1)
		return -1;
	/* timegm normalises 02-30 and 24:00; a real date comes back as is. */
	if (tm.tm_year != chk.tm_year || tm.tm_mon != chk.tm_mon ||
	    tm.tm_mday != chk.tm_mday || tm.tm_hour != chk.tm_hour ||
	    tm.tm_min != chk.tm_min || tm.tm_sec != chk.tm_sec)
		return -1;
	*out = (int64_t)t;
	return 0;
}

static int
time_format(int64_t t, char buf[STORE_TIME_LEN + 1])
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (t <= 0 || t > STORE_TIME_MAX || gmtime_r(&tt, &tm) == NULL ||
	    strftime(buf, STORE_TIME_LEN + 1, "%Y-%m-%dT%H:%M:%SZ", &tm) !=
		STORE_TIME_LEN)
		return -1;
	return 0;
}

static int
user_ptr_cmp(const void *a, const void *b)
{
	const struct user *ua = *(const struct user *const *)a;
	const struct user *ub = *(const struct user *const *)b;
	int c = strcmp(ua->name, ub->name);

	if (c != 0)
		return c;
	return ua < ub ? -1 : ua > ub;
}

/*
 * Finds the first user (in array order) whose name an earlier one
 * already has: 1 with *dup and *orig set, 0 when names are unique, -1
 * when out of memory.  Sorting keeps 100,000 users fast.
 */
static int
users_find_dup(const struct user *u, size_t n, size_t *dup, size_t *orig)
{
	const struct user **p;
	size_t i, run = 0;
	int found = 0;

	if (n < 2)
		return 0;
	if ((p = calloc(n, sizeof(*p))) == NULL)
		return -1;
	for (i = 0; i < n; i++)
		p[i] = &u[i];
	qsort(p, n, sizeof(*p), user_ptr_cmp);
	for (i = 1; i < n; i++) {
		if (strcmp(p[i]->name, p[i - 1]->name) != 0) {
			run = i;
			continue;
		}
		if (!found || (size_t)(p[i] - u) < *dup) {
			*dup = (size_t)(p[i] - u);
			*orig = (size_t)(p[run] - u);
			found = 1;
		}
	}
	free(p);
	return found;
}

/* ---- reading values from the tree ------------------------------------ */

/*
 * The member key of obj (at ow) into *item and w; *item is NULL when
 * absent, which is an error when required.  A key given twice is an
 * error: which one counts would be a guess.
 */
static int
get_member(const struct doc *d, const cJSON *obj, const struct where *ow,
    const char *key, bool required, const cJSON **item, struct where *w)
{
	const cJSON *c, *found = NULL;
	size_t i = 0, fi = 0;

	cJSON_ArrayForEach(c, obj)
	{
		if (c->string != NULL && strcmp(c->string, key) == 0) {
			if (found != NULL) {
				where_member(d, ow, i, key, w);
				return doc_fail(d, w, "duplicate key");
			}
			found = c;
			fi = i;
		}
		i++;
	}
	*item = found;
	if (found == NULL) {
		*w = *ow;
		if (required)
			return doc_fail(d, ow, "missing \"%s\"", key);
		return 0;
	}
	where_member(d, ow, fi, key, w);
	return 0;
}

/*
 * An integer min..max.  Its digits are read from the text: a double
 * holds only 53 bits, and 7.0 or 7e0 are not how an integer is written.
 */
static int
json_uint(const struct doc *d, const cJSON *it, const struct where *w,
    uint64_t min, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;
	size_t i;
	double x;

	if (!cJSON_IsNumber(it))
		goto bad;
	if (w->has_off) {
		i = w->off;
		if (!is_digit(d, i))
			goto bad;
		for (; is_digit(d, i); i++) {
			unsigned dig = (unsigned)(d->text[i] - '0');

			if (v > (UINT64_MAX - dig) / 10)
				goto bad;
			v = v * 10 + dig;
		}
		if (i < d->len &&
		    (d->text[i] == '.' || d->text[i] == 'e' ||
			d->text[i] == 'E'))
			goto bad;
	} else {
		/* Not located (cannot happen after json_check): be strict. */
		x = it->valuedouble;
		if (!(x >= 0 && x <= 9007199254740991.0) ||
		    x != (double)(uint64_t)x)
			goto bad;
		v = (uint64_t)x;
	}
	if (v < min || v > max)
		goto bad;
	*out = v;
	return 0;
bad:
	if (max == UINT64_MAX)
		return doc_fail(d, w, "expected an integer 0..%" PRIu64, max);
	return doc_fail(
	    d, w, "expected an integer %" PRIu64 "..%" PRIu64, min, max);
}

static int
json_port(
    const struct doc *d, const cJSON *it, const struct where *w, uint16_t *out)
{
	uint64_t v;

	if (json_uint(d, it, w, 1, UINT16_MAX, &v) == -1)
		return -1;
	*out = (uint16_t)v;
	return 0;
}

static int
json_bool(
    const struct doc *d, const cJSON *it, const struct where *w, bool *out)
{
	if (!cJSON_IsBool(it))
		return doc_fail(d, w, "expected true or false");
	*out = cJSON_IsTrue(it);
	return 0;
}

static int
json_name(const struct doc *d, const cJSON *it, const struct where *w,
    char *buf, size_t bufsz)
{
	const char *s, *why;
	char tmp[64];

	if (!cJSON_IsString(it))
		return doc_fail(d, w, "expected a string");
	s = it->valuestring;
	if ((why = check_name(s, bufsz, tmp, sizeof(tmp))) != NULL)
		return doc_fail(d, w, "%s", why);
	(void)strlcpy(buf, s, bufsz);
	return 0;
}

static int
json_room(const struct doc *d, const cJSON *it, const struct where *w,
    char buf[ROOM_NAME_MAX])
{
	const char *why;
	char tmp[64];

	if (!cJSON_IsString(it))
		return doc_fail(d, w, "expected a string");
	if ((why = check_room(it->valuestring, tmp, sizeof(tmp))) != NULL)
		return doc_fail(d, w, "%s", why);
	(void)strlcpy(buf, it->valuestring, ROOM_NAME_MAX);
	return 0;
}

static int
json_addr(const struct doc *d, const cJSON *it, const struct where *w,
    char buf[RING_ADDR_MAX])
{
	if (!cJSON_IsString(it) || check_addr(it->valuestring) != NULL)
		return doc_fail(d, w, "expected a dotted IPv4 address");
	(void)strlcpy(buf, it->valuestring, RING_ADDR_MAX);
	return 0;
}

/*
 * A password hash: an Argon2id string as auth_pw_hash writes it, within
 * the cost bounds of auth_pw_hash_check (a damaged or hostile file must
 * not make the leader spend gigabytes per login).
 */
static int
json_pwhash(const struct doc *d, const cJSON *it, const struct where *w,
    char buf[AUTH_PWHASH_SIZE])
{
	const char *why;

	if (!cJSON_IsString(it))
		return doc_fail(d, w, "expected an Argon2id password hash");
	if ((why = check_pwhash(it->valuestring)) != NULL)
		return doc_fail(d, w, "%s", why);
	(void)strlcpy(buf, it->valuestring, AUTH_PWHASH_SIZE);
	return 0;
}

static int
json_uuid(
    const struct doc *d, const cJSON *it, const struct where *w, struct uuid *u)
{
	if (!cJSON_IsString(it) || uuid_parse(u, it->valuestring) == -1)
		return doc_fail(
		    d, w, "expected a UUID (8-4-4-4-12 hex digits)");
	return 0;
}

static int
json_time(
    const struct doc *d, const cJSON *it, const struct where *w, int64_t *t)
{
	if (cJSON_IsNull(it)) {
		*t = 0;
		return 0;
	}
	if (!cJSON_IsString(it) || time_parse(it->valuestring, t) == -1)
		return doc_fail(d, w,
		    "expected null or a UTC time \"YYYY-MM-DDTHH:MM:SSZ\"");
	return 0;
}

static int
json_object(const struct doc *d, const cJSON *it, const struct where *w)
{
	if (!cJSON_IsObject(it))
		return doc_fail(d, w, "expected an object");
	return 0;
}

/* ---- servers.json ---------------------------------------------------- */

static int
member_from_json(const struct doc *d, const cJSON *o, const struct where *ow,
    struct member *m)
{
	const cJSON *it;
	struct where w;

	if (json_object(d, o, ow) == -1)
		return -1;
	if (get_member(d, o, ow, "uuid", true, &it, &w) == -1 ||
	    json_uuid(d, it, &w, &m->uuid) == -1)
		return -1;
	if (get_member(d, o, ow, "name", true, &it, &w) == -1 ||
	    json_name(d, it, &w, m->name, sizeof(m->name)) == -1)
		return -1;
	if (get_member(d, o, ow, "addr", true, &it, &w) == -1 ||
	    json_addr(d, it, &w, m->addr) == -1)
		return -1;
	if (get_member(d, o, ow, "port", true, &it, &w) == -1 ||
	    json_port(d, it, &w, &m->port) == -1)
		return -1;
	if (get_member(d, o, ow, "ctl_port", true, &it, &w) == -1 ||
	    json_port(d, it, &w, &m->ctl_port) == -1)
		return -1;
	if (get_member(d, o, ow, "alive", false, &it, &w) == -1 ||
	    (it != NULL && json_bool(d, it, &w, &m->alive) == -1))
		return -1;
	if (get_member(d, o, ow, "last_seen", false, &it, &w) == -1 ||
	    (it != NULL && json_time(d, it, &w, &m->last_seen_wall) == -1))
		return -1;
	return 0;
}

static int
servers_from_json(
    const struct doc *d, const cJSON *root, struct servers_state *s)
{
	const cJSON *it, *arr, *el;
	struct where rw, w, aw, ew;
	size_t i = 0, j;

	where_root(d, &rw);
	if (!cJSON_IsObject(root))
		return doc_fail(d, &rw, "expected an object at the top level");
	if (get_member(d, root, &rw, "version", true, &it, &w) == -1 ||
	    json_uint(d, it, &w, 0, UINT64_MAX, &s->version) == -1)
		return -1;
	if (get_member(d, root, &rw, "epoch", false, &it, &w) == -1 ||
	    (it != NULL &&
		json_uint(d, it, &w, 0, UINT64_MAX, &s->epoch) == -1))
		return -1;
	if (get_member(d, root, &rw, "leader", false, &it, &w) == -1)
		return -1;
	if (it != NULL && !cJSON_IsNull(it)) {
		if (!cJSON_IsString(it) ||
		    uuid_parse(&s->leader, it->valuestring) == -1)
			return doc_fail(d, &w, "expected null or a UUID");
		s->has_leader = true;
	}
	if (get_member(d, root, &rw, "servers", true, &arr, &aw) == -1)
		return -1;
	if (!cJSON_IsArray(arr))
		return doc_fail(d, &aw, "expected an array");
	ew.has_off = false;
	cJSON_ArrayForEach(el, arr)
	{
		where_next(d, &aw, i, &ew);
		if (i == RING_MAX)
			return doc_fail(
			    d, &ew, "more than %d servers", RING_MAX);
		if (member_from_json(d, el, &ew, &s->m[i]) == -1)
			return -1;
		for (j = 0; j < i; j++) {
			if (uuid_cmp(&s->m[j].uuid, &s->m[i].uuid) != 0)
				continue;
			(void)get_member(d, el, &ew, "uuid", true, &it, &w);
			return doc_fail(
			    d, &w, "duplicate of servers[%zu].uuid", j);
		}
		i++;
	}
	s->n = i;
	return 0;
}

int
store_parse_servers(const char *name, const char *text, size_t len,
    struct servers_state *out, struct store_error *err)
{
	struct servers_state tmp;
	cJSON *root = NULL;
	struct doc d;
	int rv = -1;

	memset(&tmp, 0, sizeof(tmp));
	if (doc_parse(&d, name, text, len, err, &root) == -1)
		goto out;
	if (servers_from_json(&d, root, &tmp) == -1)
		goto out;
	*out = tmp;
	rv = 0;
out:
	cJSON_Delete(root);
	return rv;
}

/* ---- users.json ------------------------------------------------------ */

static int
user_from_json(
    const struct doc *d, const cJSON *o, const struct where *ow, struct user *u)
{
	const cJSON *it, *r;
	struct where w, rw;
	size_t k = 0, j;

	if (json_object(d, o, ow) == -1)
		return -1;
	if (get_member(d, o, ow, "name", true, &it, &w) == -1 ||
	    json_name(d, it, &w, u->name, sizeof(u->name)) == -1)
		return -1;
	if (get_member(d, o, ow, "addr", true, &it, &w) == -1 ||
	    json_addr(d, it, &w, u->addr) == -1)
		return -1;
	if (get_member(d, o, ow, "port", true, &it, &w) == -1 ||
	    json_port(d, it, &w, &u->port) == -1)
		return -1;
	if (get_member(d, o, ow, "online", false, &it, &w) == -1 ||
	    (it != NULL && json_bool(d, it, &w, &u->online) == -1))
		return -1;
	if (get_member(d, o, ow, "last_seen", false, &it, &w) == -1 ||
	    (it != NULL && json_time(d, it, &w, &u->last_seen) == -1))
		return -1;
	if (get_member(d, o, ow, "password", false, &it, &w) == -1 ||
	    (it != NULL && json_pwhash(d, it, &w, u->password) == -1))
		return -1;
	if (get_member(d, o, ow, "rooms", false, &it, &w) == -1)
		return -1;
	if (it == NULL)
		return 0;
	if (!cJSON_IsArray(it))
		return doc_fail(d, &w, "expected an array of rooms");
	rw.has_off = false;
	cJSON_ArrayForEach(r, it)
	{
		where_next(d, &w, k, &rw);
		if (k == USER_ROOMS_MAX)
			return doc_fail(
			    d, &rw, "more than %d rooms", USER_ROOMS_MAX);
		if (json_room(d, r, &rw, u->rooms[k]) == -1)
			return -1;
		for (j = 0; j < k; j++) {
			if (strcmp(u->rooms[j], u->rooms[k]) == 0)
				return doc_fail(
				    d, &rw, "duplicate of rooms[%zu]", j);
		}
		k++;
	}
	u->nrooms = k;
	return 0;
}

static int
users_from_json(const struct doc *d, const cJSON *root, struct users_state *s)
{
	const cJSON *it, *arr, *el;
	struct where rw, w, aw, ew;
	struct user *u;
	size_t i = 0, dup = 0, orig = 0;
	int r;

	where_root(d, &rw);
	if (!cJSON_IsObject(root))
		return doc_fail(d, &rw, "expected an object at the top level");
	if (get_member(d, root, &rw, "version", true, &it, &w) == -1 ||
	    json_uint(d, it, &w, 0, UINT64_MAX, &s->version) == -1)
		return -1;
	if (get_member(d, root, &rw, "users", true, &arr, &aw) == -1)
		return -1;
	if (!cJSON_IsArray(arr))
		return doc_fail(d, &aw, "expected an array");
	ew.has_off = false;
	cJSON_ArrayForEach(el, arr)
	{
		where_next(d, &aw, i, &ew);
		if ((u = store_users_add(s)) == NULL)
			return seterr(d->err, "%s: out of memory at %s",
			    d->name, ew.path);
		if (user_from_json(d, el, &ew, u) == -1)
			return -1;
		i++;
	}
	if ((r = users_find_dup(s->u, s->n, &dup, &orig)) == -1)
		return seterr(d->err, "%s: out of memory", d->name);
	if (r == 1) {
		for (i = 0, el = arr->child; i < dup && el != NULL; i++)
			el = el->next;
		where_elem(d, &aw, dup, &ew);
		(void)get_member(d, el, &ew, "name", true, &it, &w);
		return doc_fail(d, &w, "duplicate of users[%zu].name", orig);
	}
	return 0;
}

void
store_users_init(struct users_state *s)
{
	memset(s, 0, sizeof(*s));
}

void
store_users_free(struct users_state *s)
{
	free(s->u);
	store_users_init(s);
}

struct user *
store_users_add(struct users_state *s)
{
	struct user *nu;
	size_t ncap;

	if (s->n == s->cap) {
		if (s->cap > SIZE_MAX / 2)
			return NULL;
		ncap = s->cap == 0 ? 16 : s->cap * 2;
		if ((nu = reallocarray(s->u, ncap, sizeof(*nu))) == NULL)
			return NULL;
		s->u = nu;
		s->cap = ncap;
	}
	nu = &s->u[s->n++];
	memset(nu, 0, sizeof(*nu));
	return nu;
}

struct user *
store_users_find(struct users_state *s, const char *name)
{
	size_t i;

	for (i = 0; i < s->n; i++) {
		if (strcmp(s->u[i].name, name) == 0)
			return &s->u[i];
	}
	return NULL;
}

int
store_parse_users(const char *name, const char *text, size_t len,
    struct users_state *out, struct store_error *err)
{
	struct users_state tmp;
	cJSON *root = NULL;
	struct doc d;
	int rv = -1;

	store_users_init(&tmp);
	if (doc_parse(&d, name, text, len, err, &root) == -1)
		goto out;
	if (users_from_json(&d, root, &tmp) == -1)
		goto out;
	store_users_free(out);
	*out = tmp;
	store_users_init(&tmp);
	rv = 0;
out:
	store_users_free(&tmp);
	cJSON_Delete(root);
	return rv;
}

/* ---- files ----------------------------------------------------------- */

/*
 * Reads a whole regular file into a NUL-terminated buffer.  1 when it
 * does not exist.
 */
static int
read_file(const char *path, char **bufp, size_t *lenp, struct store_error *err)
{
	char *buf = NULL, *nbuf;
	size_t len = 0, cap, ncap;
	struct stat st;
	ssize_t r;
	int fd, rv = -1;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1) {
		if (errno == ENOENT)
			return 1;
		return seterr(err, "%s: %s", path, strerror(errno));
	}
	if (fstat(fd, &st) == -1) {
		seterr(err, "%s: fstat: %s", path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		seterr(err, "%s: not a regular file", path);
		goto out;
	}
	if (st.st_size > STORE_FILE_MAX)
		goto toolarge;
	/* One spare byte, so a file that grew since fstat is noticed. */
	cap = (size_t)st.st_size + 2;
	if ((buf = malloc(cap)) == NULL) {
		seterr(err, "%s: out of memory", path);
		goto out;
	}
	for (;;) {
		if (len == cap - 1) {
			if (len > STORE_FILE_MAX)
				goto toolarge;
			ncap = cap * 2 > (size_t)STORE_FILE_MAX + 2
			    ? (size_t)STORE_FILE_MAX + 2
			    : cap * 2;
			if ((nbuf = realloc(buf, ncap)) == NULL) {
				seterr(err, "%s: out of memory", path);
				goto out;
			}
			buf = nbuf;
			cap = ncap;
		}
		r = read(fd, buf + len, cap - 1 - len);
		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1) {
			seterr(err, "%s: read: %s", path, strerror(errno));
			goto out;
		}
		if (r == 0)
			break;
		len += (size_t)r;
	}
	if (len > STORE_FILE_MAX)
		goto toolarge;
	buf[len] = '\0';
	*bufp = buf;
	*lenp = len;
	buf = NULL;
	rv = 0;
	goto out;
toolarge:
	seterr(err, "%s: too large (more than %d bytes)", path, STORE_FILE_MAX);
out:
	free(buf);
	(void)close(fd);
	return rv;
}

/*
 * Files that hold password hashes (users.json, the chat journal) are
 * for the server's user alone: an Argon2id hash still lets whoever
 * reads it guess offline.
 */
#define MODE_PUBLIC  0644
#define MODE_PRIVATE 0600

static int
write_atomic(const char *path, const void *data, size_t len, mode_t mode,
    struct store_error *err)
{
	char tmp[PATH_MAX], dir[PATH_MAX], *slash;
	const char *p = data, *what;
	size_t off = 0;
	ssize_t w;
	int fd, dfd, n, saved;

	n = snprintf(tmp, sizeof(tmp), "%s.tmpXXXXXX", path);
	if (n < 0 || (size_t)n >= sizeof(tmp))
		return seterr(err, "%s: path too long", path);
	(void)strlcpy(dir, path, sizeof(dir));
	if ((slash = strrchr(dir, '/')) == NULL)
		(void)strlcpy(dir, ".", sizeof(dir));
	else if (slash == dir)
		dir[1] = '\0';
	else
		*slash = '\0';

	if ((fd = mkostemp(tmp, O_CLOEXEC)) == -1)
		return seterr(err, "%s: cannot create a temporary file: %s",
		    path, strerror(errno));
	what = "fchmod";
	if (fchmod(fd, mode) == -1)
		goto fail;
	what = "write";
	while (off < len) {
		w = write(fd, p + off, len - off);
		if (w == -1 && errno == EINTR)
			continue;
		if (w == -1)
			goto fail;
		if (w == 0) {
			errno = EIO;
			goto fail;
		}
		off += (size_t)w;
	}
	what = "fsync";
	if (fsync(fd) == -1)
		goto fail;
	what = "close";
	n = close(fd);
	fd = -1;
	if (n == -1)
		goto fail;
	what = "rename";
	if (rename(tmp, path) == -1)
		goto fail;

	/*
	 * The new file is in place; fsync the directory so the rename
	 * survives a power cut.  Some file systems cannot fsync a
	 * directory (EINVAL): nothing more can be done there.
	 */
	if ((dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1)
		return seterr(err, "%s: written, but cannot open %s: %s", path,
		    dir, strerror(errno));
	if (fsync(dfd) == -1 && errno != EINVAL && errno != EBADF) {
		saved = errno;
		(void)close(dfd);
		return seterr(err, "%s: written, but fsync %s: %s", path, dir,
		    strerror(saved));
	}
	(void)close(dfd);
	return 0;

fail:
	saved = errno;
	if (fd != -1)
		(void)close(fd);
	(void)unlink(tmp);
	return seterr(err, "%s: %s %s: %s (file left unchanged)", path, what,
	    tmp, strerror(saved));
}

int
store_write_atomic(
    const char *path, const void *data, size_t len, struct store_error *err)
{
	return write_atomic(path, data, len, MODE_PUBLIC, err);
}

/* ---- chat journal ---------------------------------------------------- */

#define JOURNAL_LINE_MAX 4096
/*
 * A message may hold newlines; an op never holds this control byte, so
 * in chat.log a newline of an op is written as it, one line per op.
 */
#define JOURNAL_NL '\x1f'

uint64_t
store_fnv64(const void *data, size_t n)
{
	const unsigned char *p = data;
	uint64_t h = UINT64_C(14695981039346656037);
	size_t i;

	for (i = 0; i < n; i++) {
		h ^= p[i];
		h *= UINT64_C(1099511628211);
	}
	return h;
}

static int
journal_paths(const char *dir, char *logp, char *snapp, struct store_error *err)
{
	int a = snprintf(logp, PATH_MAX, "%s/chat.log", dir);
	int b = snprintf(snapp, PATH_MAX, "%s/chat.snap", dir);

	if (a < 0 || a >= PATH_MAX || b < 0 || b >= PATH_MAX)
		return seterr(err, "%s: state directory path too long", dir);
	return 0;
}

/* One line "HEX16 TEXT" checked: 0 and *text, *tlen set, or -1. */
static int
journal_line(const char *p, size_t n, const char **text, size_t *tlen)
{
	uint64_t want = 0;
	size_t i;

	if (n < 18 || n > JOURNAL_LINE_MAX || p[16] != ' ')
		return -1;
	for (i = 0; i < 16; i++) {
		char c = p[i];
		int v = c >= '0' && c <= '9' ? c - '0'
		    : c >= 'a' && c <= 'f'   ? c - 'a' + 10
					     : -1;

		if (v < 0)
			return -1;
		want = want << 4 | (uint64_t)v;
	}
	if (store_fnv64(p + 17, n - 17) != want)
		return -1;
	*text = p + 17;
	*tlen = n - 17;
	return 0;
}

/* Prefixes err->text with "FILE[:LINE]: ". */
static void
journal_where(struct store_error *err, const char *path, size_t line)
{
	char why[sizeof(err->text)];

	(void)strlcpy(why, err->text, sizeof(why));
	if (line > 0)
		seterr(err, "%s:%zu: %s", path, line, why);
	else
		seterr(err, "%s: %s", path, why);
}

int
store_journal_load(const char *dir, store_journal_cb snap_cb,
    store_journal_cb op_cb, void *arg, bool *torn, struct store_error *err)
{
	char logp[PATH_MAX], snapp[PATH_MAX], *log = NULL, *snap = NULL;
	const char *p, *end, *nl, *text;
	size_t loglen = 0, snaplen = 0, line = 0, tlen, i;
	int rs, rl, rv = -1;

	*torn = false;
	if (journal_paths(dir, logp, snapp, err) == -1)
		return -1;
	if ((rs = read_file(snapp, &snap, &snaplen, err)) == -1)
		return -1;
	if ((rl = read_file(logp, &log, &loglen, err)) == -1)
		goto out;
	if (rs == 1 && rl == 1) {
		rv = 1;
		goto out;
	}
	if (rs == 0 && snap_cb(arg, snap, snaplen, err) == -1) {
		journal_where(err, snapp, 0);
		goto out;
	}
	/* Without chat.log, log is NULL: no arithmetic on it. */
	end = rl == 0 ? log + loglen : NULL;
	for (p = log; rl == 0 && p < end; p = nl + 1) {
		line++;
		nl = memchr(p, '\n', (size_t)(end - p));
		if (journal_line(p,
			nl != NULL ? (size_t)(nl - p) : (size_t)(end - p),
			&text, &tlen) == -1) {
			if (nl == NULL || nl + 1 == end) {
				/* The last line, cut short by a crash. */
				*torn = true;
				break;
			}
			seterr(err,
			    "%s:%zu: checksum mismatch or malformed "
			    "line (the journal is damaged)",
			    logp, line);
			goto out;
		}
		if (nl == NULL) { /* whole but unterminated: cut short too */
			*torn = true;
			break;
		}
		for (i = (size_t)(text - log); i < (size_t)(text - log) + tlen;
		     i++)
			if (log[i] == JOURNAL_NL)
				log[i] = '\n';
		if (op_cb(arg, text, tlen, err) == -1) {
			journal_where(err, logp, line);
			goto out;
		}
	}
	rv = 0;
out:
	free(log);
	free(snap);
	return rv;
}

int
store_journal_open(struct store_journal *j, const char *dir, bool truncate_torn,
    struct store_error *err)
{
	char *buf = NULL;
	size_t len = 0, keep = 0;
	const char *p, *nl, *text;
	size_t tlen;
	struct stat st;
	int r;

	memset(j, 0, sizeof(*j));
	j->fd = -1;
	if (journal_paths(dir, j->log_path, j->snap_path, err) == -1)
		return -1;
	if (truncate_torn) {
		if ((r = read_file(j->log_path, &buf, &len, err)) == -1)
			return -1;
		for (p = buf; r == 0 && p < buf + len; p = nl + 1) {
			if ((nl = memchr(p, '\n', len - (size_t)(p - buf))) ==
				NULL ||
			    journal_line(p, (size_t)(nl - p), &text, &tlen) ==
				-1)
				break;
			keep = (size_t)(nl + 1 - buf);
			j->ops++;
		}
		free(buf);
		if (r == 0 && truncate(j->log_path, (off_t)keep) == -1)
			return seterr(err, "%s: truncate: %s", j->log_path,
			    strerror(errno));
	}
	if ((j->fd = open(j->log_path,
		 O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, MODE_PRIVATE)) ==
	    -1)
		return seterr(err, "%s: %s", j->log_path, strerror(errno));
	/* One written before it held password hashes is made private. */
	if (fstat(j->fd, &st) == -1 ||
	    ((st.st_mode & 0077) != 0 && fchmod(j->fd, MODE_PRIVATE) == -1)) {
		int saved = errno;

		(void)close(j->fd);
		j->fd = -1;
		return seterr(err, "%s: fstat or fchmod: %s", j->log_path,
		    strerror(saved));
	}
	j->bytes = (uint64_t)st.st_size;
	if (!truncate_torn) /* counted roughly: compaction is by bytes too */
		j->ops = j->bytes / 64;
	return 0;
}

static int
journal_write(struct store_journal *j, struct store_error *err)
{
	size_t off = 0;
	ssize_t w;

	while (off < j->wlen) {
		w = write(j->fd, j->wbuf + off, j->wlen - off);
		if (w == -1 && errno == EINTR)
			continue;
		if (w <= 0) {
			/* What was written stays; the rest goes next time. */
			memmove(j->wbuf, j->wbuf + off, j->wlen - off);
			j->wlen -= off;
			return seterr(err, "%s: write: %s", j->log_path,
			    w == 0 ? "short write" : strerror(errno));
		}
		off += (size_t)w;
	}
	j->wlen = 0;
	return 0;
}

int
store_journal_append(struct store_journal *j, const char *text, size_t len,
    struct store_error *err)
{
	char *line;
	size_t n = len + 18, i;

	if (j->fd == -1)
		return seterr(err, "chat journal: not open");
	if (len == 0 || n > JOURNAL_LINE_MAX || memchr(text, JOURNAL_NL, len))
		return seterr(err, "%s: op of %zu bytes cannot be journaled",
		    j->log_path, len);
	if (j->wlen + n > sizeof(j->wbuf) && journal_write(j, err) == -1)
		return -1;
	line = j->wbuf + j->wlen;
	memcpy(line + 17, text, len);
	for (i = 17; i < n - 1; i++)
		if (line[i] == '\n')
			line[i] = JOURNAL_NL;
	(void)snprintf(line, 17, "%016llx",
	    (unsigned long long)store_fnv64(line + 17, len));
	line[16] = ' ';
	line[n - 1] = '\n';
	j->wlen += n;
	j->ops++;
	j->bytes += n;
	j->dirty = true;
	return 0;
}

int
store_journal_flush(struct store_journal *j, struct store_error *err)
{
	if (j->fd == -1 || j->wlen == 0)
		return 0;
	return journal_write(j, err);
}

int
store_journal_sync(struct store_journal *j, struct store_error *err)
{
	struct timespec a, b;

	if (j->fd == -1 || !j->dirty)
		return 0;
	if (journal_write(j, err) == -1)
		return -1;
	(void)clock_gettime(CLOCK_MONOTONIC, &a);
	if (fdatasync(j->fd) == -1)
		return seterr(
		    err, "%s: fdatasync: %s", j->log_path, strerror(errno));
	(void)clock_gettime(CLOCK_MONOTONIC, &b);
	j->dirty = false;
	j->syncs++;
	j->sync_us += (uint64_t)((b.tv_sec - a.tv_sec) * 1000000 +
	    (b.tv_nsec - a.tv_nsec) / 1000);
	return 0;
}

int
store_journal_reset(struct store_journal *j, const char *snap, size_t len,
    struct store_error *err)
{
	if (j->fd == -1)
		return seterr(err, "chat journal: not open");
	if (write_atomic(j->snap_path, snap, len, MODE_PRIVATE, err) == -1)
		return -1;
	j->wlen = 0; /* the snapshot holds those ops */
	if (ftruncate(j->fd, 0) == -1 || fdatasync(j->fd) == -1)
		return seterr(
		    err, "%s: truncate: %s", j->log_path, strerror(errno));
	j->ops = 0;
	j->bytes = 0;
	j->dirty = false;
	j->compactions++;
	return 0;
}

void
store_journal_close(struct store_journal *j)
{
	struct store_error err;

	if (j->fd != -1) {
		(void)store_journal_flush(j, &err);
		(void)close(j->fd);
	}
	j->fd = -1;
}

/* ---- building JSON --------------------------------------------------- */

/* Integers as raw digits: cJSON would print large ones as 1e+15. */
static bool
add_u64(cJSON *o, const char *key, uint64_t v)
{
	char b[24];

	(void)snprintf(b, sizeof(b), "%" PRIu64, v);
	return cJSON_AddRawToObject(o, key, b) != NULL;
}

static bool
add_i64(cJSON *o, const char *key, int64_t v)
{
	char b[24];

	(void)snprintf(b, sizeof(b), "%" PRId64, v);
	return cJSON_AddRawToObject(o, key, b) != NULL;
}

static bool
add_str(cJSON *o, const char *key, const char *s)
{
	if (s == NULL)
		return cJSON_AddNullToObject(o, key) != NULL;
	return cJSON_AddStringToObject(o, key, s) != NULL;
}

static bool
add_bool(cJSON *o, const char *key, bool b)
{
	return cJSON_AddBoolToObject(o, key, b) != NULL;
}

static bool
add_uuid(cJSON *o, const char *key, const struct uuid *u)
{
	char b[UUID_STRLEN + 1];

	if (u == NULL)
		return cJSON_AddNullToObject(o, key) != NULL;
	return cJSON_AddStringToObject(o, key, uuid_format(u, b)) != NULL;
}

/* t was checked by the caller: 0 is null. */
static bool
add_time(cJSON *o, const char *key, int64_t t)
{
	char b[STORE_TIME_LEN + 1];

	if (t == 0 || time_format(t, b) == -1)
		return cJSON_AddNullToObject(o, key) != NULL;
	return cJSON_AddStringToObject(o, key, b) != NULL;
}

/* Pretty text with a final newline, malloc'd; NULL when out of memory. */
static char *
json_print(const cJSON *root, size_t *lenp)
{
	char *s, *out;
	size_t n;

	if ((s = cJSON_Print(root)) == NULL)
		return NULL;
	n = strlen(s);
	if ((out = malloc(n + 2)) != NULL) {
		memcpy(out, s, n);
		out[n] = '\n';
		out[n + 1] = '\0';
		*lenp = n + 1;
	}
	cJSON_free(s);
	return out;
}

static int
check_time(int64_t t)
{
	return t == 0 || (t > 0 && t <= STORE_TIME_MAX) ? 0 : -1;
}

/* The writer's side of the schema: never write what the reader refuses. */
static int
check_servers(const struct servers_state *s, struct store_error *err)
{
	const struct member *m;
	const char *why;
	char tmp[64];
	size_t i, j;

	if (s->n > RING_MAX)
		return seterr(err, "servers: more than %d servers", RING_MAX);
	for (i = 0; i < s->n; i++) {
		m = &s->m[i];
		if ((why = check_name(
			 m->name, sizeof(m->name), tmp, sizeof(tmp))) != NULL)
			return seterr(err, "servers[%zu].name: %s", i, why);
		if ((why = check_addr(m->addr)) != NULL)
			return seterr(err, "servers[%zu].addr: %s", i, why);
		if (m->port == 0)
			return seterr(err,
			    "servers[%zu].port: expected an integer 1..65535",
			    i);
		if (m->ctl_port == 0)
			return seterr(err,
			    "servers[%zu].ctl_port: expected an integer "
			    "1..65535",
			    i);
		if (check_time(m->last_seen_wall) == -1)
			return seterr(
			    err, "servers[%zu].last_seen: out of range", i);
		for (j = 0; j < i; j++) {
			if (uuid_cmp(&s->m[j].uuid, &m->uuid) == 0)
				return seterr(err,
				    "servers[%zu].uuid: duplicate of "
				    "servers[%zu].uuid",
				    i, j);
		}
	}
	return 0;
}

char *
store_format_servers(
    const struct servers_state *s, size_t *lenp, struct store_error *err)
{
	cJSON *root = NULL, *arr, *o;
	char *text = NULL;
	bool ok;
	size_t i;

	if (check_servers(s, err) == -1)
		return NULL;
	if ((root = cJSON_CreateObject()) == NULL)
		goto nomem;
	ok = add_u64(root, "version", s->version) &&
	    add_u64(root, "epoch", s->epoch) &&
	    add_uuid(root, "leader", s->has_leader ? &s->leader : NULL) &&
	    (arr = cJSON_AddArrayToObject(root, "servers")) != NULL;
	for (i = 0; ok && i < s->n; i++) {
		const struct member *m = &s->m[i];

		ok = (o = cJSON_CreateObject()) != NULL;
		if (ok && !cJSON_AddItemToArray(arr, o)) {
			cJSON_Delete(o);
			ok = false;
		}
		ok = ok && add_uuid(o, "uuid", &m->uuid) &&
		    add_str(o, "name", m->name) &&
		    add_str(o, "addr", m->addr) &&
		    add_u64(o, "port", m->port) &&
		    add_u64(o, "ctl_port", m->ctl_port) &&
		    add_bool(o, "alive", m->alive) &&
		    add_time(o, "last_seen", m->last_seen_wall);
	}
	if (ok && (text = json_print(root, lenp)) != NULL)
		goto out;
nomem:
	seterr(err, "out of memory");
out:
	cJSON_Delete(root);
	return text;
}

static int
check_users(const struct users_state *s, struct store_error *err)
{
	const struct user *u;
	const char *why;
	size_t i, k, j, dup = 0, orig = 0;
	char tmp[64];
	int r;

	for (i = 0; i < s->n; i++) {
		u = &s->u[i];
		if ((why = check_name(
			 u->name, sizeof(u->name), tmp, sizeof(tmp))) != NULL)
			return seterr(err, "users[%zu].name: %s", i, why);
		if ((why = check_addr(u->addr)) != NULL)
			return seterr(err, "users[%zu].addr: %s", i, why);
		if (u->port == 0)
			return seterr(err,
			    "users[%zu].port: expected an integer 1..65535", i);
		if (check_time(u->last_seen) == -1)
			return seterr(
			    err, "users[%zu].last_seen: out of range", i);
		if (u->password[0] != '\0' &&
		    (why = check_pwhash(u->password)) != NULL)
			return seterr(err, "users[%zu].password: %s", i, why);
		if (u->nrooms > USER_ROOMS_MAX)
			return seterr(err,
			    "users[%zu].rooms: more than %d rooms", i,
			    USER_ROOMS_MAX);
		for (k = 0; k < u->nrooms; k++) {
			if ((why = check_room(u->rooms[k], tmp, sizeof(tmp))) !=
			    NULL)
				return seterr(err, "users[%zu].rooms[%zu]: %s",
				    i, k, why);
			for (j = 0; j < k; j++) {
				if (strcmp(u->rooms[j], u->rooms[k]) == 0)
					return seterr(err,
					    "users[%zu].rooms[%zu]: duplicate "
					    "of rooms[%zu]",
					    i, k, j);
			}
		}
	}
	if ((r = users_find_dup(s->u, s->n, &dup, &orig)) == -1)
		return seterr(err, "out of memory");
	if (r == 1)
		return seterr(err,
		    "users[%zu].name: duplicate of users[%zu].name", dup, orig);
	return 0;
}

char *
store_format_users(
    const struct users_state *s, size_t *lenp, struct store_error *err)
{
	cJSON *root = NULL, *arr, *o, *rooms;
	char *text = NULL;
	size_t i, k;
	bool ok;

	if (check_users(s, err) == -1)
		return NULL;
	if ((root = cJSON_CreateObject()) == NULL)
		goto nomem;
	ok = add_u64(root, "version", s->version) &&
	    (arr = cJSON_AddArrayToObject(root, "users")) != NULL;
	for (i = 0; ok && i < s->n; i++) {
		const struct user *u = &s->u[i];

		ok = (o = cJSON_CreateObject()) != NULL;
		if (ok && !cJSON_AddItemToArray(arr, o)) {
			cJSON_Delete(o);
			ok = false;
		}
		ok = ok && add_str(o, "name", u->name) &&
		    add_str(o, "addr", u->addr) &&
		    add_u64(o, "port", u->port) &&
		    add_bool(o, "online", u->online) &&
		    (rooms = cJSON_AddArrayToObject(o, "rooms")) != NULL;
		for (k = 0; ok && k < u->nrooms; k++) {
			cJSON *r = cJSON_CreateString(u->rooms[k]);

			if (r == NULL || !cJSON_AddItemToArray(rooms, r)) {
				cJSON_Delete(r);
				ok = false;
			}
		}
		ok = ok && add_time(o, "last_seen", u->last_seen);
		if (ok && u->password[0] != '\0')
			ok = add_str(o, "password", u->password);
	}
	if (ok && (text = json_print(root, lenp)) != NULL)
		goto out;
nomem:
	seterr(err, "out of memory");
out:
	cJSON_Delete(root);
	return text;
}

/* ---- the files ------------------------------------------------------- */

/* Writes text (NULL: formatting failed) atomically and frees it. */
static int
write_text(const char *path, char *text, size_t len, mode_t mode,
    struct store_error *err)
{
	int rv;

	if (text == NULL) {
		char why[sizeof(err->text)];

		(void)strlcpy(why, err->text, sizeof(why));
		return seterr(err, "%s: %s (not written)", path, why);
	}
	rv = write_atomic(path, text, len, mode, err);
	free(text);
	return rv;
}

int
store_read_servers(
    const char *path, struct servers_state *s, struct store_error *err)
{
	char *buf = NULL;
	size_t len;
	int r;

	if ((r = read_file(path, &buf, &len, err)) == 1) {
		memset(s, 0, sizeof(*s));
		return 1;
	}
	if (r == 0)
		r = store_parse_servers(path, buf, len, s, err);
	free(buf);
	return r;
}

int
store_write_servers(
    const char *path, const struct servers_state *s, struct store_error *err)
{
	size_t len = 0;
	char *text;

	/* Two statements: the order of evaluation of arguments is unspecified.
	 */
	text = store_format_servers(s, &len, err);
	return write_text(path, text, len, MODE_PUBLIC, err);
}

int
store_read_users(
    const char *path, struct users_state *s, struct store_error *err)
{
	char *buf = NULL;
	size_t len;
	int r;

	if ((r = read_file(path, &buf, &len, err)) == 1) {
		store_users_free(s);
		return 1;
	}
	if (r == 0)
		r = store_parse_users(path, buf, len, s, err);
	free(buf);
	return r;
}

int
store_write_users(
    const char *path, const struct users_state *s, struct store_error *err)
{
	size_t len = 0;
	char *text;

	/* Two statements: the order of evaluation of arguments is unspecified.
	 */
	text = store_format_users(s, &len, err);
	return write_text(path, text, len, MODE_PRIVATE, err);
}

int
store_read_identity(const char *path, struct uuid *u, char *name, size_t namesz,
    struct store_error *err)
{
	const cJSON *it;
	struct where rw, w;
	struct uuid tu;
	char *buf = NULL, tname[RING_NAME_MAX];
	cJSON *root = NULL;
	struct doc d;
	size_t len;
	int rv;

	if ((rv = read_file(path, &buf, &len, err)) != 0)
		return rv;
	rv = -1;
	if (namesz > sizeof(tname))
		namesz = sizeof(tname);
	if (doc_parse(&d, path, buf, len, err, &root) == -1)
		goto out;
	where_root(&d, &rw);
	if (!cJSON_IsObject(root)) {
		doc_fail(&d, &rw, "expected an object at the top level");
		goto out;
	}
	if (get_member(&d, root, &rw, "uuid", true, &it, &w) == -1 ||
	    json_uuid(&d, it, &w, &tu) == -1)
		goto out;
	if (get_member(&d, root, &rw, "name", true, &it, &w) == -1 ||
	    json_name(&d, it, &w, tname, namesz) == -1)
		goto out;
	*u = tu;
	(void)strlcpy(name, tname, namesz);
	rv = 0;
out:
	cJSON_Delete(root);
	free(buf);
	return rv;
}

int
store_write_identity(const char *path, const struct uuid *u, const char *name,
    struct store_error *err)
{
	const char *why;
	cJSON *root;
	char tmp[64], *text = NULL;
	size_t len = 0;

	if ((why = check_name(name, RING_NAME_MAX, tmp, sizeof(tmp))) != NULL)
		return seterr(err, "%s: name: %s (not written)", path, why);
	if ((root = cJSON_CreateObject()) != NULL &&
	    add_uuid(root, "uuid", u) && add_str(root, "name", name))
		text = json_print(root, &len);
	cJSON_Delete(root);
	if (text == NULL)
		seterr(err, "out of memory");
	return write_text(path, text, len, MODE_PUBLIC, err);
}

/* ---- lines and status ------------------------------------------------ */

/* The object of a JSON line, or NULL (a NULL key, a string not UTF-8). */
static cJSON *
json_line_object(const struct store_kv *kv, size_t n)
{
	cJSON *o;
	size_t i;
	bool ok;

	if ((o = cJSON_CreateObject()) == NULL)
		return NULL;
	for (i = 0, ok = true; ok && i < n; i++) {
		if (kv[i].key == NULL) {
			ok = false;
			break;
		}
		switch (kv[i].type) {
		case KV_STR:
			ok = kv[i].s == NULL ||
			    utf8_check(kv[i].s, strlen(kv[i].s)) ==
				strlen(kv[i].s);
			ok = ok && add_str(o, kv[i].key, kv[i].s);
			break;
		case KV_INT:
			ok = add_i64(o, kv[i].key, kv[i].i);
			break;
		case KV_UINT:
			ok = add_u64(o, kv[i].key, kv[i].u);
			break;
		case KV_BOOL:
			ok = add_bool(o, kv[i].key, kv[i].b);
			break;
		default:
			ok = false;
			break;
		}
	}
	if (!ok) {
		cJSON_Delete(o);
		return NULL;
	}
	return o;
}

/* Prints o as one line into out; -1 when it does not fit.  Frees o. */
static int
json_line_print(cJSON *o, char *out, size_t outsz)
{
	char *s;
	size_t len;
	int rv = -1;

	if ((s = cJSON_PrintUnformatted(o)) != NULL) {
		len = strlen(s);
		if (outsz >= 2 && len <= outsz - 2) {
			memcpy(out, s, len);
			out[len] = '\n';
			out[len + 1] = '\0';
			rv = 0;
		}
	}
	cJSON_free(s);
	cJSON_Delete(o);
	return rv;
}

int
store_json_line(char *out, size_t outsz, const struct store_kv *kv, size_t n)
{
	cJSON *o;

	if ((o = json_line_object(kv, n)) == NULL)
		return -1;
	return json_line_print(o, out, outsz);
}

int
store_json_line_list(char *out, size_t outsz, const struct store_kv *kv,
    size_t n, const char *key, const char *const *items, size_t nitems)
{
	cJSON *o, *arr, *it;
	size_t i;

	if (key == NULL || (nitems > 0 && items == NULL) ||
	    (o = json_line_object(kv, n)) == NULL)
		return -1;
	if ((arr = cJSON_AddArrayToObject(o, key)) == NULL)
		goto fail;
	for (i = 0; i < nitems; i++) {
		if (items[i] == NULL ||
		    utf8_check(items[i], strlen(items[i])) !=
			strlen(items[i]) ||
		    (it = cJSON_CreateString(items[i])) == NULL)
			goto fail;
		if (!cJSON_AddItemToArray(arr, it)) {
			cJSON_Delete(it);
			goto fail;
		}
	}
	return json_line_print(o, out, outsz);
fail:
	cJSON_Delete(o);
	return -1;
}

char *
store_status_json(const struct store_status *st)
{
	const struct ring *ring = st->ring;
	cJSON *root, *arr, *o;
	char *s = NULL;
	size_t i;
	bool ok;

	if ((root = cJSON_CreateObject()) == NULL)
		return NULL;
	ok = add_str(root, "name", st->name) &&
	    add_uuid(root, "uuid", st->uuid) &&
	    add_str(root, "role", st->role) &&
	    add_u64(root, "epoch", st->epoch) &&
	    add_uuid(root, "leader", st->has_leader ? st->leader : NULL) &&
	    add_u64(root, "servers_version", st->servers_version) &&
	    add_u64(root, "users_version", st->users_version) &&
	    add_i64(root, "uptime_ms", st->uptime_ms) &&
	    add_u64(root, "bad_datagrams", st->bad_datagrams) &&
	    add_u64(root, "elections", st->elections) &&
	    (arr = cJSON_AddArrayToObject(root, "ring")) != NULL;
	for (i = 0; ok && ring != NULL && i < ring->n && i < RING_MAX; i++) {
		const struct member *m = &ring->m[i];

		ok = (o = cJSON_CreateObject()) != NULL;
		if (ok && !cJSON_AddItemToArray(arr, o)) {
			cJSON_Delete(o);
			ok = false;
		}
		ok = ok && add_uuid(o, "uuid", &m->uuid) &&
		    add_str(o, "name", m->name) &&
		    add_str(o, "addr", m->addr) &&
		    add_u64(o, "port", m->port) &&
		    add_u64(o, "ctl_port", m->ctl_port) &&
		    add_bool(o, "alive", m->alive) &&
		    add_bool(o, "self", uuid_cmp(&m->uuid, &ring->self) == 0) &&
		    add_bool(o, "leader",
			st->has_leader && st->leader != NULL &&
			    uuid_cmp(&m->uuid, st->leader) == 0);
	}
	if (ok)
		s = cJSON_PrintUnformatted(root);
	cJSON_Delete(root);
	return s;
}
