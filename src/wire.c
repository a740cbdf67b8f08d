/* wire: the datagram codec, kind@to@body@from[@key=value]..., escaped UTF-8. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "wire.h"

#define WIRE_STR(x)  #x
#define WIRE_XSTR(x) WIRE_STR(x)

/* Indexed by enum wire_kind; "none" is never accepted on the wire. */
static const char *const kind_names[] = {
    [WK_NONE] = "none",
    [WK_NEWS] = "news",
    [WK_MEMBER] = "member",
    [WK_VOTING] = "voting",
    [WK_LEADER] = "leader",
    [WK_ACK] = "ack",
    [WK_BEAT] = "beat",
    [WK_BEATACK] = "beatack",
    [WK_PROBE] = "probe",
    [WK_PROBEACK] = "probeack",
    [WK_BYE] = "bye",
    [WK_REPL] = "repl",
    [WK_SNAP] = "snap",
    [WK_NEED] = "need",
    [WK_WHERE] = "where",
    [WK_VOTE] = "vote",
    [WK_NEWU] = "newu",
    [WK_LOGIN] = "login",
    [WK_LOGOUT] = "logout",
    [WK_MSG] = "msg",
    [WK_JOIN] = "join",
    [WK_PART] = "part",
    [WK_ROOMS] = "rooms",
    [WK_WHO] = "who",
    [WK_USERS] = "users",
    [WK_ALIVE] = "alive",
    [WK_OK] = "ok",
    [WK_ERR] = "err",
};
_Static_assert(sizeof(kind_names) / sizeof(kind_names[0]) == WK_COUNT,
    "kind_names must name every enum wire_kind");

static const char *const err_texts[] = {
    [WIRE_OK] = "no error",
    [WIRE_ETOOBIG] = "datagram longer than " WIRE_XSTR(WIRE_MAX) " bytes",
    [WIRE_EFIELDS] = "fewer than four '@'-separated fields",
    [WIRE_EKIND_EMPTY] = "empty kind",
    [WIRE_EKIND_UNKNOWN] = "unknown kind",
    [WIRE_EESCAPE] = "'%' not followed by two hex digits",
    [WIRE_ENUL] = "NUL byte, raw or escaped",
    [WIRE_EUTF8] = "field is not valid UTF-8",
    [WIRE_EEXT_MALFORMED] = "extension without '=' or with a bad key",
    [WIRE_EEXT_DUP] = "extension key repeated",
    [WIRE_EEXT_TOOMANY] = "more than " WIRE_XSTR(WIRE_EXT_MAX) " extensions",
    [WIRE_EARG] = "invalid argument to the encoder",
};
_Static_assert(sizeof(err_texts) / sizeof(err_texts[0]) == WIRE_NERR,
    "err_texts must describe every enum wire_err");

/* Output cursor; with buf NULL it only measures. */
struct wbuf {
	char *buf;
	size_t len;
	size_t cap;
};

static int
hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static int
must_escape(unsigned char c)
{
	return c < 0x20 || c == 0x7f || c == '%' || c == '@' || c == '=';
}

/* Keys are 1..WIRE_KEY_MAX bytes of [a-z0-9_]; n is the key's length. */
static int
key_valid(const char *k, size_t n)
{
	size_t i;

	if (n == 0 || n > WIRE_KEY_MAX)
		return 0;
	for (i = 0; i < n; i++) {
		if (!((k[i] >= 'a' && k[i] <= 'z') ||
			(k[i] >= '0' && k[i] <= '9') || k[i] == '_'))
			return 0;
	}
	return 1;
}

/*
 * RFC 3629 well-formed UTF-8: no overlongs, no surrogates, nothing past
 * U+10FFFF, no stray or missing continuation bytes.
 */
static int
utf8_valid(const char *str, size_t n)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0, k, need;
	unsigned char lo, hi;

	while (i < n) {
		if (s[i] < 0x80) {
			i++;
			continue;
		}
		lo = 0x80;
		hi = 0xbf;
		if (s[i] >= 0xc2 && s[i] <= 0xdf)
			need = 1;
		else if (s[i] == 0xe0) {
			need = 2;
			lo = 0xa0;
		} else if (s[i] >= 0xe1 && s[i] <= 0xec)
			need = 2;
		else if (s[i] == 0xed) {
			need = 2;
			hi = 0x9f;
		} else if (s[i] >= 0xee && s[i] <= 0xef)
			need = 2;
		else if (s[i] == 0xf0) {
			need = 3;
			lo = 0x90;
		} else if (s[i] >= 0xf1 && s[i] <= 0xf3)
			need = 3;
		else if (s[i] == 0xf4) {
			need = 3;
			hi = 0x8f;
		} else
			return 0;
		if (n - i - 1 < need)
			return 0;
		if (s[i + 1] < lo || s[i + 1] > hi)
			return 0;
		for (k = 2; k <= need; k++)
			if (s[i + k] < 0x80 || s[i + k] > 0xbf)
				return 0;
		i += need + 1;
	}
	return 1;
}

/*
 * Unescapes the n bytes at s in place and NUL-terminates them (s[n] must
 * be writable).  The checks run one class at a time over the whole field,
 * so a field with several faults always reports the same one.
 */
static enum wire_err
field_decode(char *s, size_t n)
{
	size_t i, o;
	int c;

	for (i = 0; i < n; i++) {
		if (s[i] != '%')
			continue;
		if (n - i < 3 || hexval((unsigned char)s[i + 1]) < 0 ||
		    hexval((unsigned char)s[i + 2]) < 0)
			return WIRE_EESCAPE;
		i += 2;
	}
	for (i = 0, o = 0; i < n; i++) {
		if (s[i] != '%') {
			s[o++] = s[i];
			continue;
		}
		c = hexval((unsigned char)s[i + 1]) << 4 |
		    hexval((unsigned char)s[i + 2]);
		if (c == 0)
			return WIRE_ENUL;
		s[o++] = (char)c;
		i += 2;
	}
	s[o] = '\0';
	if (!utf8_valid(s, o))
		return WIRE_EUTF8;
	return WIRE_OK;
}

/*
 * The structural verdict on extension number i (key, with eq its '=' or
 * NULL), given the i valid ones before it in m->ext.
 */
static enum wire_err
ext_check(const struct wire_msg *m, int i, const char *key, const char *eq)
{
	int j;

	if (eq == NULL || !key_valid(key, (size_t)(eq - key)))
		return WIRE_EEXT_MALFORMED;
	for (j = 0; j < i; j++)
		if (strcmp(m->ext[j].key, key) == 0)
			return WIRE_EEXT_DUP;
	if (i >= WIRE_EXT_MAX)
		return WIRE_EEXT_TOOMANY;
	return WIRE_OK;
}

void
wire_init(struct wire_msg *m, enum wire_kind kind, const char *to,
    const char *body, const char *from)
{
	m->kind = kind;
	m->to = to;
	m->body = body;
	m->from = from;
	m->next = 0;
}

int
wire_add(struct wire_msg *m, const char *key, const char *val)
{
	if (m == NULL || key == NULL || val == NULL)
		return -1;
	if (m->next < 0 || m->next >= WIRE_EXT_MAX)
		return -1;
	if (!key_valid(key, strnlen(key, WIRE_KEY_MAX + 1)))
		return -1;
	if (wire_get(m, key) != NULL)
		return -1;
	m->ext[m->next].key = key;
	m->ext[m->next].val = val;
	m->next++;
	return 0;
}

int
wire_add_u64(struct wire_msg *m, const char *key, uint64_t val)
{
	int r;

	if (m == NULL || m->next < 0 || m->next >= WIRE_EXT_MAX)
		return -1;
	r = snprintf(m->num[m->next], sizeof(m->num[0]), "%" PRIu64, val);
	if (r < 0 || (size_t)r >= sizeof(m->num[0]))
		return -1;
	return wire_add(m, key, m->num[m->next]);
}

static void
wbuf_byte(struct wbuf *w, char c)
{
	if (w->buf != NULL && w->len < w->cap)
		w->buf[w->len] = c;
	w->len++;
}

/* Appends s, escaped if asked; stops early once past the capacity. */
static void
wbuf_str(struct wbuf *w, const char *s, int escape)
{
	static const char hex[] = "0123456789ABCDEF";
	unsigned char c;

	for (; *s != '\0' && w->len <= w->cap; s++) {
		c = (unsigned char)*s;
		if (escape && must_escape(c)) {
			wbuf_byte(w, '%');
			wbuf_byte(w, hex[c >> 4]);
			wbuf_byte(w, hex[c & 0xf]);
		} else
			wbuf_byte(w, (char)c);
	}
}

size_t
wire_escaped_len(const char *s, size_t n)
{
	size_t i, len = 0;

	for (i = 0; i < n; i++)
		len += must_escape((unsigned char)s[i]) ? 3 : 1;
	return len;
}

static void
wbuf_msg(struct wbuf *w, const struct wire_msg *m)
{
	int i;

	wbuf_str(w, kind_names[m->kind], 0);
	wbuf_byte(w, '@');
	wbuf_str(w, m->to, 1);
	wbuf_byte(w, '@');
	wbuf_str(w, m->body, 1);
	wbuf_byte(w, '@');
	wbuf_str(w, m->from, 1);
	for (i = 0; i < m->next; i++) {
		wbuf_byte(w, '@');
		wbuf_str(w, m->ext[i].key, 0);
		wbuf_byte(w, '=');
		wbuf_str(w, m->ext[i].val, 1);
	}
}

/* Would the decoder accept this message's contents?  Sizes aside. */
static int
msg_valid(const struct wire_msg *m)
{
	int i, j;

	if (m->kind <= WK_NONE || m->kind >= WK_COUNT)
		return 0;
	if (m->to == NULL || m->body == NULL || m->from == NULL)
		return 0;
	if (!utf8_valid(m->to, strlen(m->to)) ||
	    !utf8_valid(m->body, strlen(m->body)) ||
	    !utf8_valid(m->from, strlen(m->from)))
		return 0;
	if (m->next < 0 || m->next > WIRE_EXT_MAX)
		return 0;
	for (i = 0; i < m->next; i++) {
		if (m->ext[i].key == NULL || m->ext[i].val == NULL)
			return 0;
		if (!key_valid(m->ext[i].key,
			strnlen(m->ext[i].key, WIRE_KEY_MAX + 1)))
			return 0;
		if (!utf8_valid(m->ext[i].val, strlen(m->ext[i].val)))
			return 0;
		for (j = 0; j < i; j++)
			if (strcmp(m->ext[j].key, m->ext[i].key) == 0)
				return 0;
	}
	return 1;
}

/*
 * Measures first and writes only when everything fits, so on error out
 * and *len are untouched.
 */
enum wire_err
wire_encode(const struct wire_msg *m, char *out, size_t outsz, size_t *len)
{
	struct wbuf w;
	size_t cap;

	if (m == NULL || out == NULL || len == NULL || !msg_valid(m))
		return WIRE_EARG;
	cap = outsz < WIRE_MAX ? outsz : WIRE_MAX;
	w.buf = NULL;
	w.len = 0;
	w.cap = cap;
	wbuf_msg(&w, m);
	if (w.len > cap)
		return WIRE_ETOOBIG;
	w.buf = out;
	w.len = 0;
	wbuf_msg(&w, m);
	*len = w.len;
	return WIRE_OK;
}

/*
 * Copies the datagram into m->buf, splits it at the '@'s and unescapes
 * each field in place.  Errors are checked in the documented order: size,
 * raw NUL, field count, kind, then field by field (to, body, from, each
 * extension value) escape, escaped NUL, UTF-8, and last the structure of
 * the extensions.  *m is filled only on success.
 */
enum wire_err
wire_decode(struct wire_msg *m, const void *data, size_t len)
{
	char *field[4], *p, *at, *eq, *end;
	size_t flen[4];
	enum wire_err err, exterr = WIRE_OK;
	enum wire_kind kind;
	int i, next = 0, more = 1;

	if (m == NULL)
		return WIRE_EARG;
	m->kind = WK_NONE;
	m->to = m->body = m->from = "";
	m->next = 0;
	if (data == NULL && len > 0)
		return WIRE_EARG;
	if (len > WIRE_MAX)
		return WIRE_ETOOBIG;
	if (len > 0 && memchr(data, '\0', len) != NULL)
		return WIRE_ENUL;
	if (len > 0)
		memcpy(m->buf, data, len);
	m->buf[len] = '\0';
	end = m->buf + len;

	p = m->buf;
	for (i = 0; i < 4; i++) {
		at = memchr(p, '@', (size_t)(end - p));
		if (at == NULL) {
			if (i < 3)
				return WIRE_EFIELDS;
			at = end;
			more = 0;
		}
		*at = '\0';
		field[i] = p;
		flen[i] = (size_t)(at - p);
		if (more)
			p = at + 1;
	}

	if (flen[0] == 0)
		return WIRE_EKIND_EMPTY;
	if ((kind = wire_kind_from_name(field[0])) == WK_NONE)
		return WIRE_EKIND_UNKNOWN;

	for (i = 1; i < 4; i++)
		if ((err = field_decode(field[i], flen[i])) != WIRE_OK)
			return err;

	/*
	 * Extensions: a value's own faults outrank any structural fault,
	 * wherever they are, so keep the first structural one for the end.
	 */
	while (more) {
		at = memchr(p, '@', (size_t)(end - p));
		if (at == NULL) {
			at = end;
			more = 0;
		}
		*at = '\0';
		eq = memchr(p, '=', (size_t)(at - p));
		if (eq != NULL) {
			*eq = '\0';
			err = field_decode(eq + 1, (size_t)(at - eq - 1));
			if (err != WIRE_OK)
				return err;
		}
		if (exterr == WIRE_OK) {
			exterr = ext_check(m, next, p, eq);
			if (exterr == WIRE_OK) {
				m->ext[next].key = p;
				m->ext[next].val = eq + 1;
				next++;
			}
		}
		if (more)
			p = at + 1;
	}
	if (exterr != WIRE_OK)
		return exterr;

	m->kind = kind;
	m->to = field[1];
	m->body = field[2];
	m->from = field[3];
	m->next = next;
	return WIRE_OK;
}

const char *
wire_get(const struct wire_msg *m, const char *key)
{
	int i;

	if (m == NULL || key == NULL || m->next < 0 || m->next > WIRE_EXT_MAX)
		return NULL;
	for (i = 0; i < m->next; i++)
		if (m->ext[i].key != NULL && strcmp(m->ext[i].key, key) == 0)
			return m->ext[i].val;
	return NULL;
}

int
wire_get_u64(const struct wire_msg *m, const char *key, uint64_t *out)
{
	const char *s;
	uint64_t v = 0, d;

	if (out == NULL || (s = wire_get(m, key)) == NULL || *s == '\0')
		return -1;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		d = (uint64_t)(*s - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	*out = v;
	return 0;
}

const char *
wire_kind_name(enum wire_kind k)
{
	if (k < WK_NONE || k >= WK_COUNT)
		return "?";
	return kind_names[k];
}

enum wire_kind
wire_kind_from_name(const char *name)
{
	int k;

	if (name == NULL)
		return WK_NONE;
	for (k = WK_NONE + 1; k < WK_COUNT; k++)
		if (strcmp(kind_names[k], name) == 0)
			return (enum wire_kind)k;
	return WK_NONE;
}

const char *
wire_strerror(enum wire_err e)
{
	if (e < WIRE_OK || e >= WIRE_NERR)
		return "unknown wire error";
	return err_texts[e];
}
