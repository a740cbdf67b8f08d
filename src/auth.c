/* auth: cluster key, datagram MACs, replay windows, passwords, sessions. */
#include <sys/stat.h>
#include <sys/types.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "auth.h"
#include "wire.h"

/* The sizes the header promises are libsodium's. */
_Static_assert(AUTH_KEY_BYTES == crypto_kdf_KEYBYTES, "kdf key size");
_Static_assert(AUTH_KEY_BYTES == crypto_auth_hmacsha512256_KEYBYTES, "mac");
_Static_assert(AUTH_KEY_BYTES == crypto_auth_hmacsha512256_BYTES, "tag");
_Static_assert(AUTH_KEY_BYTES == crypto_kx_SEEDBYTES, "kx seed size");
_Static_assert(AUTH_KEY_BYTES == crypto_kx_SECRETKEYBYTES, "kx sk size");
_Static_assert(AUTH_KEY_BYTES == crypto_kx_SESSIONKEYBYTES, "kx session");
_Static_assert(AUTH_PK_BYTES == crypto_kx_PUBLICKEYBYTES, "kx pk size");
_Static_assert(AUTH_KEY_BYTES == crypto_aead_xchacha20poly1305_ietf_KEYBYTES,
    "aead key size");
_Static_assert(AUTH_PWHASH_SIZE == crypto_pwhash_STRBYTES, "pwhash string");
_Static_assert(AUTH_PW_OPSLIMIT >= crypto_pwhash_argon2id_OPSLIMIT_MIN, "ops");
_Static_assert(AUTH_PW_MEMLIMIT >= crypto_pwhash_argon2id_MEMLIMIT_MIN, "mem");
_Static_assert(AUTH_WINDOW_BITS % 64 == 0, "window in whole words");

#define B64	   sodium_base64_VARIANT_URLSAFE_NO_PADDING
#define B64_LEN(n) (sodium_base64_ENCODED_LEN((n), B64) - 1) /* no NUL */

/* crypto_kdf contexts (8 bytes) and subkey ids under the cluster key. */
#define KDF_CLUSTER   "ringchat"
#define KDF_EPOCH     "rcepoch1"
#define KDF_ID_MAC    1
#define KDF_ID_KXSEED 2
#define KDF_ID_FIELD  3

/* Key file: one line, a versioned prefix and the key in base64url. */
#define KEY_PREFIX     "ringchat-cluster-key-v1 "
#define KEY_PREFIX_LEN (sizeof(KEY_PREFIX) - 1)
#define KEY_B64_LEN    43
_Static_assert(B64_LEN(AUTH_KEY_BYTES) == KEY_B64_LEN, "key text length");
_Static_assert(B64_LEN(AUTH_PK_BYTES) + 1 == AUTH_PK_TEXT, "pk text length");
_Static_assert(KEY_PREFIX_LEN + KEY_B64_LEN + 2 == AUTH_KEY_TEXT, "key line");

/* Server-to-server trailer: "@ctr=<1..20 digits>@mac=<43 base64url>". */
#define CTR_TAG	    "@ctr="
#define MAC_TAG	    "@mac="
#define TAG_LEN	    5
#define CTR_DIGITS  20
#define MAC_TRAILER (TAG_LEN + KEY_B64_LEN)
#define SENDER_MAX  255
_Static_assert(
    TAG_LEN + CTR_DIGITS + MAC_TRAILER == AUTH_S2S_OVERHEAD, "s2s overhead");
/* The MAC's input begins with this label and its NUL. */
static const char s2s_label[] = "ringchat-s2s-v1";

/* Session datagram layout; see auth.h. */
#define SESS_MAGIC   0xff
#define SESS_VERSION 0x01
#define SESS_PK	     2
#define SESS_EPOCH   (SESS_PK + AUTH_PK_BYTES)
#define SESS_NONCE   (SESS_EPOCH + 8)
#define SESS_RANDOM  16
#define SESS_CTR     (SESS_NONCE + SESS_RANDOM)
#define SESS_AD	     SESS_NONCE /* bytes of associated data */
#define SESS_HEADER  (SESS_NONCE + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES)
_Static_assert(SESS_CTR + 8 == SESS_HEADER, "nonce = random || counter");
_Static_assert(SESS_HEADER + crypto_aead_xchacha20poly1305_ietf_ABYTES ==
	AUTH_SESSION_OVERHEAD,
    "session overhead");
_Static_assert(crypto_aead_xchacha20poly1305_ietf_NPUBBYTES +
	    crypto_aead_xchacha20poly1305_ietf_ABYTES ==
	AUTH_FIELD_OVERHEAD,
    "field overhead");

#define PIN_FILE_MAX  (64 * 1024)
#define PIN_LABEL_MAX 64
static const char pin_header[] =
    "# ringchat known clusters: label, space, the cluster's public key.\n";

static const char *const err_texts[] = {
    [AUTH_OK] = "no error",
    [AUTH_EINIT] = "libsodium could not be initialised",
    [AUTH_EARG] = "invalid argument",
    [AUTH_ENOMEM] = "out of memory",
    [AUTH_ETOOBIG] = "result larger than a datagram or the buffer",
    [AUTH_ENOMAC] = "no mac field",
    [AUTH_EMALFORMED] = "malformed authentication fields",
    [AUTH_EBADMAC] = "authentication tag does not verify",
    [AUTH_EREPLAY] = "replayed counter",
    [AUTH_ETOOOLD] = "counter too old",
    [AUTH_EEXHAUSTED] = "counter exhausted",
    [AUTH_EEPOCH] = "session datagram for another leader epoch",
    [AUTH_ESESSION] = "session datagram for another client key",
    [AUTH_EKX] = "key exchange refused the peer's public key",
    [AUTH_EEXISTS] = "file exists; not overwritten",
    [AUTH_EIO] = "file cannot be read or written",
    [AUTH_EPERM] = "key file is accessible to others or owned by another user",
    [AUTH_EFORMAT] = "file has the wrong size or content",
    [AUTH_EPIN_MISMATCH] = "cluster key differs from the pinned one",
    [AUTH_EPW_LENGTH] = "password empty or too long",
    [AUTH_EPW_WRONG] = "wrong password",
    [AUTH_EPW_HASH] = "stored password hash malformed or too costly",
};
_Static_assert(sizeof(err_texts) / sizeof(err_texts[0]) == AUTH_NERR,
    "err_texts must describe every enum auth_err");

static enum auth_err seterr(struct auth_error *, enum auth_err, const char *,
    ...) __attribute__((format(printf, 3, 4)));

static enum auth_err
seterr(struct auth_error *err, enum auth_err code, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL)
		return code;
	va_start(ap, fmt);
	(void)vsnprintf(err->text, sizeof(err->text), fmt, ap);
	va_end(ap);
	return code;
}

/*
 * sodium_init is idempotent and thread-safe; calling it on every entry
 * keeps this module free of state of its own.
 */
static enum auth_err
ready(void)
{
	return sodium_init() < 0 ? AUTH_EINIT : AUTH_OK;
}

enum auth_err
auth_init(void)
{
	return ready();
}

const char *
auth_strerror(enum auth_err e)
{
	if (e < AUTH_OK || e >= AUTH_NERR)
		return "unknown auth error";
	return err_texts[e];
}

static void
put_be64(uint8_t *p, uint64_t v)
{
	int i;

	for (i = 7; i >= 0; i--) {
		p[i] = (uint8_t)v;
		v >>= 8;
	}
}

static uint64_t
get_be64(const uint8_t *p)
{
	uint64_t v = 0;
	int i;

	for (i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

/*
 * Strict base64url: exactly binlen bytes and the canonical spelling (the
 * unused low bits zero), so one value has one text.  bin is written only
 * on success.
 */
static int
b64_decode(uint8_t *bin, size_t binlen, const char *text, size_t textlen)
{
	uint8_t tmp[WIRE_MAX];
	char check[WIRE_MAX * 4 / 3 + 4];
	size_t got;
	int rv = -1;

	if (binlen > sizeof(tmp) || textlen != B64_LEN(binlen))
		return -1;
	if (sodium_base642bin(
		tmp, binlen, text, textlen, NULL, &got, NULL, B64) != 0 ||
	    got != binlen)
		goto out;
	(void)sodium_bin2base64(check, sizeof(check), tmp, binlen, B64);
	if (memcmp(check, text, textlen) != 0)
		goto out;
	memcpy(bin, tmp, binlen);
	rv = 0;
out:
	sodium_memzero(tmp, sizeof(tmp));
	sodium_memzero(check, sizeof(check));
	return rv;
}

/* The cluster key. */

enum auth_err
auth_key_generate(struct auth_key *key)
{
	enum auth_err e;

	if (key == NULL)
		return AUTH_EARG;
	if ((e = ready()) != AUTH_OK)
		return e;
	randombytes_buf(key->k, sizeof(key->k));
	return AUTH_OK;
}

void
auth_key_wipe(struct auth_key *key)
{
	if (key != NULL)
		sodium_memzero(key, sizeof(*key));
}

/* The key file's line, newline included; NUL-terminated. */
static size_t
key_format(const struct auth_key *key, char out[AUTH_KEY_TEXT])
{
	memcpy(out, KEY_PREFIX, KEY_PREFIX_LEN);
	(void)sodium_bin2base64(out + KEY_PREFIX_LEN,
	    AUTH_KEY_TEXT - KEY_PREFIX_LEN, key->k, sizeof(key->k), B64);
	out[AUTH_KEY_TEXT - 2] = '\n';
	out[AUTH_KEY_TEXT - 1] = '\0';
	return AUTH_KEY_TEXT - 1;
}

enum auth_err
auth_key_parse(const char *text, size_t len, struct auth_key *key)
{
	enum auth_err e;

	if ((text == NULL && len > 0) || key == NULL)
		return AUTH_EARG;
	if ((e = ready()) != AUTH_OK)
		return e;
	/* The newline is optional: an editor may have dropped it. */
	if (len > 0 && text[len - 1] == '\n')
		len--;
	if (len != KEY_PREFIX_LEN + KEY_B64_LEN ||
	    memcmp(text, KEY_PREFIX, KEY_PREFIX_LEN) != 0)
		return AUTH_EFORMAT;
	if (b64_decode(key->k, sizeof(key->k), text + KEY_PREFIX_LEN,
		KEY_B64_LEN) == -1)
		return AUTH_EFORMAT;
	return AUTH_OK;
}

/* The directory part of path, for fsync after a rename or link. */
static void
dir_of(const char *path, char *dir, size_t dirsz)
{
	char *slash;

	if (strlen(path) >= dirsz) {
		(void)snprintf(dir, dirsz, ".");
		return;
	}
	(void)snprintf(dir, dirsz, "%s", path);
	if ((slash = strrchr(dir, '/')) == NULL)
		(void)snprintf(dir, dirsz, ".");
	else if (slash == dir)
		dir[1] = '\0';
	else
		*slash = '\0';
}

/*
 * Writes data to path atomically with the given mode: mkstemp in the
 * same directory, write, fsync, then rename over path (replace) or link
 * to it, which fails when path exists (so a key is never overwritten,
 * even by a racing writer), and fsync the directory.
 */
static enum auth_err
file_write(const char *path, const void *data, size_t len, mode_t mode,
    bool replace, struct auth_error *err)
{
	char tmp[PATH_MAX], dir[PATH_MAX];
	const char *p = data, *what;
	size_t off = 0;
	ssize_t w;
	int fd, dfd, n, saved;

	n = snprintf(tmp, sizeof(tmp), "%s.tmpXXXXXX", path);
	if (n < 0 || (size_t)n >= sizeof(tmp))
		return seterr(err, AUTH_EIO, "%s: path too long", path);
	dir_of(path, dir, sizeof(dir));
	if ((fd = mkostemp(tmp, O_CLOEXEC)) == -1)
		return seterr(err, AUTH_EIO,
		    "%s: cannot create a temporary file: %s", path,
		    strerror(errno));
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
	if (replace) {
		what = "rename";
		if (rename(tmp, path) == -1)
			goto fail;
	} else {
		what = "link";
		n = link(tmp, path);
		/* File systems without hard links may still rename safely. */
		if (n == -1 && (errno == EPERM || errno == EOPNOTSUPP))
			n = renameat2(
			    AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE);
		if (n == -1) {
			saved = errno;
			(void)unlink(tmp);
			if (saved == EEXIST)
				return seterr(err, AUTH_EEXISTS,
				    "%s: already exists; not overwritten",
				    path);
			return seterr(err, AUTH_EIO, "%s: %s: %s", path, what,
			    strerror(saved));
		}
		(void)unlink(tmp);
	}
	/* Some file systems cannot fsync a directory (EINVAL): fine. */
	if ((dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1)
		return seterr(err, AUTH_EIO,
		    "%s: written, but cannot open %s: %s", path, dir,
		    strerror(errno));
	if (fsync(dfd) == -1 && errno != EINVAL && errno != EBADF) {
		saved = errno;
		(void)close(dfd);
		return seterr(err, AUTH_EIO, "%s: written, but fsync %s: %s",
		    path, dir, strerror(saved));
	}
	(void)close(dfd);
	return AUTH_OK;

fail:
	saved = errno;
	if (fd != -1)
		(void)close(fd);
	(void)unlink(tmp);
	return seterr(err, AUTH_EIO, "%s: %s: %s", path, what, strerror(saved));
}

enum auth_err
auth_key_write(
    const char *path, const struct auth_key *key, struct auth_error *err)
{
	char text[AUTH_KEY_TEXT];
	struct stat st;
	enum auth_err e;
	size_t len;

	if (path == NULL || key == NULL)
		return seterr(err, AUTH_EARG, "auth_key_write: NULL argument");
	if ((e = ready()) != AUTH_OK)
		return seterr(err, e, "%s: %s", path, auth_strerror(e));
	/* Refused early for a clear message; link() decides under a race. */
	if (lstat(path, &st) == 0)
		return seterr(err, AUTH_EEXISTS,
		    "%s: already exists; not overwritten", path);
	len = key_format(key, text);
	e = file_write(path, text, len, 0600, false, err);
	sodium_memzero(text, sizeof(text));
	return e;
}

/*
 * Reads a small file whole into buf (bufsz - 1 bytes at most, then NUL).
 * With private, refuses one that group or others can access or that
 * belongs to someone other than us or root, as ssh does for its keys.
 * With absent non-NULL, a missing file is *absent and AUTH_OK.
 */
static enum auth_err
file_read(const char *path, char *buf, size_t bufsz, size_t *lenp, bool private,
    bool *absent, struct auth_error *err)
{
	struct stat st;
	enum auth_err e = AUTH_EIO;
	size_t len = 0;
	ssize_t r;
	int fd;

	if (absent != NULL)
		*absent = false;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) == -1) {
		if (errno == ENOENT && absent != NULL) {
			*absent = true;
			*lenp = 0;
			buf[0] = '\0';
			return AUTH_OK;
		}
		return seterr(err, AUTH_EIO, "%s: cannot open: %s", path,
		    strerror(errno));
	}
	if (fstat(fd, &st) == -1) {
		seterr(err, AUTH_EIO, "%s: fstat: %s", path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		seterr(err, AUTH_EIO, "%s: not a regular file", path);
		goto out;
	}
	if (private && (st.st_mode & 077) != 0) {
		e = seterr(err, AUTH_EPERM,
		    "%s: permissions %04o are too open: only its owner may "
		    "read a key file (chmod 600 %s)",
		    path, (unsigned)(st.st_mode & 07777), path);
		goto out;
	}
	if (private && st.st_uid != geteuid() && st.st_uid != 0) {
		e = seterr(err, AUTH_EPERM,
		    "%s: owned by uid %u, neither this user (%u) nor root",
		    path, (unsigned)st.st_uid, (unsigned)geteuid());
		goto out;
	}
	for (;;) {
		r = read(fd, buf + len, bufsz - len);
		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1) {
			seterr(err, AUTH_EIO, "%s: read: %s", path,
			    strerror(errno));
			goto out;
		}
		if (r == 0)
			break;
		len += (size_t)r;
		if (len == bufsz) {
			e = seterr(err, AUTH_EFORMAT,
			    "%s: too large (over %zu bytes)", path, bufsz - 1);
			goto out;
		}
	}
	buf[len] = '\0';
	*lenp = len;
	e = AUTH_OK;
out:
	(void)close(fd);
	if (e != AUTH_OK)
		sodium_memzero(buf, bufsz);
	return e;
}

enum auth_err
auth_key_read(const char *path, struct auth_key *key, struct auth_error *err)
{
	char buf[AUTH_KEY_TEXT + 64];
	enum auth_err e;
	size_t len;

	if (path == NULL || key == NULL)
		return seterr(err, AUTH_EARG, "auth_key_read: NULL argument");
	if ((e = ready()) != AUTH_OK)
		return seterr(err, e, "%s: %s", path, auth_strerror(e));
	e = file_read(path, buf, sizeof(buf), &len, true, NULL, err);
	if (e == AUTH_EFORMAT ||
	    (e == AUTH_OK && len != AUTH_KEY_TEXT - 1 &&
		len != AUTH_KEY_TEXT - 2)) {
		e = seterr(err, AUTH_EFORMAT,
		    "%s: wrong size: a cluster key file is one line of %d "
		    "bytes",
		    path, AUTH_KEY_TEXT - 1);
		goto out;
	}
	if (e != AUTH_OK)
		goto out;
	if ((e = auth_key_parse(buf, len, key)) != AUTH_OK)
		e = seterr(err, AUTH_EFORMAT,
		    "%s: not a ringchat cluster key (want \"%s\" and %d "
		    "base64url characters)",
		    path, KEY_PREFIX, KEY_B64_LEN);
out:
	sodium_memzero(buf, sizeof(buf));
	return e;
}

enum auth_err
auth_cluster_init(struct auth_cluster *c, const struct auth_key *key)
{
	struct auth_cluster tmp;
	uint8_t seed[crypto_kx_SEEDBYTES];
	enum auth_err e;

	if (c == NULL || key == NULL)
		return AUTH_EARG;
	if ((e = ready()) != AUTH_OK)
		return e;
	/*
	 * One subkey per purpose, so a MAC key is never an encryption key:
	 * and the kx keypair is a function of the cluster key alone, the
	 * same on every server.
	 */
	if (crypto_kdf_derive_from_key(tmp.mac_key, sizeof(tmp.mac_key),
		KDF_ID_MAC, KDF_CLUSTER, key->k) != 0 ||
	    crypto_kdf_derive_from_key(tmp.field_key, sizeof(tmp.field_key),
		KDF_ID_FIELD, KDF_CLUSTER, key->k) != 0 ||
	    crypto_kdf_derive_from_key(
		seed, sizeof(seed), KDF_ID_KXSEED, KDF_CLUSTER, key->k) != 0 ||
	    crypto_kx_seed_keypair(tmp.kx_pk, tmp.kx_sk, seed) != 0) {
		e = AUTH_EINIT;
		goto out;
	}
	memcpy(c, &tmp, sizeof(*c));
out:
	sodium_memzero(&tmp, sizeof(tmp));
	sodium_memzero(seed, sizeof(seed));
	return e;
}

void
auth_cluster_wipe(struct auth_cluster *c)
{
	if (c != NULL)
		sodium_memzero(c, sizeof(*c));
}

void
auth_pk_to_text(const uint8_t pk[AUTH_PK_BYTES], char out[AUTH_PK_TEXT])
{
	(void)sodium_bin2base64(out, AUTH_PK_TEXT, pk, AUTH_PK_BYTES, B64);
}

enum auth_err
auth_pk_from_text(const char *text, uint8_t pk[AUTH_PK_BYTES])
{
	enum auth_err e;

	if (text == NULL || pk == NULL)
		return AUTH_EARG;
	if ((e = ready()) != AUTH_OK)
		return e;
	if (b64_decode(pk, AUTH_PK_BYTES, text, strnlen(text, AUTH_PK_TEXT)) ==
	    -1)
		return AUTH_EFORMAT;
	return AUTH_OK;
}

void
auth_fingerprint(const uint8_t pk[AUTH_PK_BYTES], char out[AUTH_FP_SIZE])
{
	static const char hex[] = "0123456789abcdef";
	uint8_t h[16];
	size_t i, o = 0;

	/* BLAKE2b-128 of the raw key: `b2sum -l 128` computes the same. */
	(void)crypto_generichash(h, sizeof(h), pk, AUTH_PK_BYTES, NULL, 0);
	for (i = 0; i < sizeof(h); i++) {
		if (i > 0 && i % 2 == 0)
			out[o++] = ':';
		out[o++] = hex[h[i] >> 4];
		out[o++] = hex[h[i] & 0xf];
	}
	out[o] = '\0';
}

/* Server-to-server datagrams. */

static void
s2s_mac(const struct auth_cluster *c, const char *sender, size_t slen,
    const void *data, size_t len, uint8_t mac[AUTH_KEY_BYTES])
{
	crypto_auth_hmacsha512256_state st;
	uint8_t sl = (uint8_t)slen;

	(void)crypto_auth_hmacsha512256_init(
	    &st, c->mac_key, sizeof(c->mac_key));
	(void)crypto_auth_hmacsha512256_update(
	    &st, (const uint8_t *)s2s_label, sizeof(s2s_label));
	(void)crypto_auth_hmacsha512256_update(&st, &sl, 1);
	(void)crypto_auth_hmacsha512256_update(
	    &st, (const uint8_t *)sender, slen);
	(void)crypto_auth_hmacsha512256_update(&st, data, len);
	(void)crypto_auth_hmacsha512256_final(&st, mac);
	sodium_memzero(&st, sizeof(st));
}

static size_t
count_byte(const char *s, size_t len, char c)
{
	size_t i, n = 0;

	for (i = 0; i < len; i++)
		if (s[i] == c)
			n++;
	return n;
}

enum auth_err
auth_s2s_seal(const struct auth_cluster *c, const char *sender, uint64_t ctr,
    const void *dgram, size_t len, char *out, size_t outsz, size_t *outlen)
{
	const char *d = dgram;
	char num[CTR_DIGITS + 1], b64[KEY_B64_LEN + 1];
	uint8_t mac[AUTH_KEY_BYTES];
	size_t slen, nlen, total, ats;
	enum auth_err e;
	int r;

	if (c == NULL || sender == NULL || (dgram == NULL && len > 0) ||
	    out == NULL || outlen == NULL)
		return AUTH_EARG;
	slen = strnlen(sender, SENDER_MAX + 1);
	if (slen == 0 || slen > SENDER_MAX)
		return AUTH_EARG;
	if ((e = ready()) != AUTH_OK)
		return e;
	/*
	 * The input must be a whole datagram without its own ctr or mac,
	 * so that the result still decodes: four fields, and two free
	 * extension slots.
	 */
	if (len == 0 || memchr(d, '\0', len) != NULL ||
	    memmem(d, len, CTR_TAG, TAG_LEN) != NULL ||
	    memmem(d, len, MAC_TAG, TAG_LEN) != NULL)
		return AUTH_EARG;
	if ((ats = count_byte(d, len, '@')) < 3)
		return AUTH_EARG;
	if (ats - 3 + 2 > WIRE_EXT_MAX)
		return AUTH_ETOOBIG;
	r = snprintf(num, sizeof(num), "%" PRIu64, ctr);
	if (r < 0 || (size_t)r >= sizeof(num))
		return AUTH_EARG;
	nlen = (size_t)r;
	total = len + TAG_LEN + nlen + MAC_TRAILER;
	if (total > WIRE_MAX || total > outsz)
		return AUTH_ETOOBIG;

	memmove(out, d, len);
	memcpy(out + len, CTR_TAG, TAG_LEN);
	memcpy(out + len + TAG_LEN, num, nlen);
	s2s_mac(c, sender, slen, out, len + TAG_LEN + nlen, mac);
	(void)sodium_bin2base64(b64, sizeof(b64), mac, sizeof(mac), B64);
	memcpy(out + len + TAG_LEN + nlen, MAC_TAG, TAG_LEN);
	memcpy(out + len + TAG_LEN + nlen + TAG_LEN, b64, KEY_B64_LEN);
	*outlen = total;
	return AUTH_OK;
}

enum auth_err
auth_s2s_verify(const struct auth_cluster *c, const char *sender,
    const void *data, size_t len, uint64_t *ctrp, size_t *plenp)
{
	const char *d = data;
	uint8_t mac[AUTH_KEY_BYTES], want[AUTH_KEY_BYTES];
	size_t slen, macoff, plen, i;
	uint64_t ctr = 0, digit;
	enum auth_err e;

	if (c == NULL || sender == NULL || (data == NULL && len > 0) ||
	    ctrp == NULL || plenp == NULL)
		return AUTH_EARG;
	slen = strnlen(sender, SENDER_MAX + 1);
	if (slen == 0 || slen > SENDER_MAX)
		return AUTH_EARG;
	if ((e = ready()) != AUTH_OK)
		return e;
	if (len > WIRE_MAX)
		return AUTH_ETOOBIG;

	/* The mac is the last field, always 43 characters. */
	if (len < MAC_TRAILER ||
	    memcmp(d + len - MAC_TRAILER, MAC_TAG, TAG_LEN) != 0)
		return len > 0 && memmem(d, len, MAC_TAG, TAG_LEN) != NULL
		    ? AUTH_EMALFORMED
		    : AUTH_ENOMAC;
	macoff = len - MAC_TRAILER;
	if (b64_decode(mac, sizeof(mac), d + macoff + TAG_LEN, KEY_B64_LEN) ==
	    -1)
		return AUTH_EMALFORMED;

	/* Right before it, "@ctr=" and 1 to 20 digits. */
	for (i = macoff; i > 0 && macoff - i <= CTR_DIGITS && d[i - 1] >= '0' &&
	     d[i - 1] <= '9';
	     i--)
		;
	if (i == macoff || macoff - i > CTR_DIGITS || i < TAG_LEN ||
	    memcmp(d + i - TAG_LEN, CTR_TAG, TAG_LEN) != 0)
		return AUTH_EMALFORMED;
	plen = i - TAG_LEN;
	for (; i < macoff; i++) {
		digit = (uint64_t)(d[i] - '0');
		if (ctr > (UINT64_MAX - digit) / 10)
			return AUTH_EMALFORMED;
		ctr = ctr * 10 + digit;
	}

	s2s_mac(c, sender, slen, d, macoff, want);
	e = sodium_memcmp(want, mac, sizeof(mac)) == 0 ? AUTH_OK : AUTH_EBADMAC;
	sodium_memzero(want, sizeof(want));
	if (e != AUTH_OK)
		return e;
	*ctrp = ctr;
	*plenp = plen;
	return AUTH_OK;
}

enum auth_err
auth_s2s_open(const struct auth_cluster *c, const char *sender,
    struct auth_window *w, uint64_t floor, const void *data, size_t len,
    size_t *plenp)
{
	uint64_t ctr;
	size_t plen;
	enum auth_err e;

	if (w == NULL || plenp == NULL)
		return AUTH_EARG;
	if ((e = auth_s2s_verify(c, sender, data, len, &ctr, &plen)) != AUTH_OK)
		return e;
	if ((e = auth_window_check(w, ctr, floor)) != AUTH_OK)
		return e;
	auth_window_update(w, ctr);
	*plenp = plen;
	return AUTH_OK;
}

/* Counters and the replay window. */

#define CTR_SEC_MAX (UINT64_MAX >> AUTH_CTR_SHIFT)

static uint64_t
ctr_of_second(uint64_t unix_ms)
{
	uint64_t s = unix_ms / 1000;

	return (s > CTR_SEC_MAX ? CTR_SEC_MAX : s) << AUTH_CTR_SHIFT;
}

void
auth_ctr_init(struct auth_ctr *c, uint64_t unix_ms)
{
	/*
	 * (ms + 1) * 1024 is at most 1024000, inside the second's 2^20: a
	 * run that starts a millisecond after another died is above it.
	 */
	c->next = ctr_of_second(unix_ms) + (unix_ms % 1000 + 1) * 1024;
}

enum auth_err
auth_ctr_next(struct auth_ctr *c, uint64_t unix_ms, uint64_t *out)
{
	uint64_t v;

	if (c == NULL || out == NULL)
		return AUTH_EARG;
	v = ctr_of_second(unix_ms);
	if (v < c->next)
		v = c->next;
	if (v == UINT64_MAX)
		return AUTH_EEXHAUSTED;
	c->next = v + 1;
	*out = v;
	return AUTH_OK;
}

uint64_t
auth_ctr_floor(uint64_t unix_ms, uint64_t skew_ms)
{
	if (unix_ms <= skew_ms)
		return 0;
	return ctr_of_second(unix_ms - skew_ms);
}

void
auth_window_init(struct auth_window *w)
{
	memset(w, 0, sizeof(*w));
}

static bool
window_bit(const struct auth_window *w, uint64_t ctr)
{
	uint64_t i = ctr % AUTH_WINDOW_BITS;

	return (w->bits[i / 64] >> (i % 64)) & 1;
}

enum auth_err
auth_window_check(const struct auth_window *w, uint64_t ctr, uint64_t floor)
{
	if (w == NULL)
		return AUTH_EARG;
	if (ctr < floor)
		return AUTH_ETOOOLD;
	if (!w->any || ctr > w->top)
		return AUTH_OK;
	if (w->top - ctr >= AUTH_WINDOW_BITS)
		return AUTH_ETOOOLD;
	if (window_bit(w, ctr))
		return AUTH_EREPLAY;
	return AUTH_OK;
}

void
auth_window_update(struct auth_window *w, uint64_t ctr)
{
	uint64_t i, c;

	if (w == NULL)
		return;
	if (!w->any) {
		memset(w->bits, 0, sizeof(w->bits));
		w->top = ctr;
		w->any = true;
	} else if (ctr > w->top) {
		/* The bits of the counters skipped now stand for newer ones. */
		if (ctr - w->top >= AUTH_WINDOW_BITS)
			memset(w->bits, 0, sizeof(w->bits));
		else
			for (c = w->top + 1; c < ctr; c++) {
				i = c % AUTH_WINDOW_BITS;
				w->bits[i / 64] &= ~(UINT64_C(1) << (i % 64));
			}
		w->top = ctr;
	} else if (w->top - ctr >= AUTH_WINDOW_BITS)
		return; /* outside the window: its bit is another counter's */
	i = ctr % AUTH_WINDOW_BITS;
	w->bits[i / 64] |= UINT64_C(1) << (i % 64);
}

/* Encrypted fields between servers. */

#define BOX_MAGIC   0xfe
#define BOX_VERSION 0x01
#define BOX_SENDER  2
#define BOX_NONCE   (BOX_SENDER + 16)
#define BOX_RANDOM  16
#define BOX_CTR	    (BOX_NONCE + BOX_RANDOM)
#define BOX_HEADER  (BOX_NONCE + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES)
_Static_assert(BOX_CTR + 8 == BOX_HEADER, "box nonce = random || counter");
_Static_assert(
    BOX_HEADER + crypto_aead_xchacha20poly1305_ietf_ABYTES == AUTH_BOX_OVERHEAD,
    "AUTH_BOX_OVERHEAD");

enum auth_err
auth_s2s_box(const struct auth_cluster *c, const uint8_t sender[16],
    uint64_t ctr, const void *dgram, size_t len, void *out, size_t outsz,
    size_t *outlen)
{
	uint8_t buf[WIRE_MAX];
	unsigned long long clen;
	enum auth_err e;

	if (c == NULL || sender == NULL || (dgram == NULL && len > 0) ||
	    out == NULL || outlen == NULL)
		return AUTH_EARG;
	if ((e = ready()) != AUTH_OK)
		return e;
	if (len > WIRE_MAX - AUTH_BOX_OVERHEAD ||
	    len + AUTH_BOX_OVERHEAD > outsz)
		return AUTH_ETOOBIG;
	buf[0] = BOX_MAGIC;
	buf[1] = BOX_VERSION;
	memcpy(buf + BOX_SENDER, sender, 16);
	randombytes_buf(buf + BOX_NONCE, BOX_RANDOM);
	put_be64(buf + BOX_CTR, ctr);
	/* The header (nonce included) is the associated data. */
	(void)crypto_aead_xchacha20poly1305_ietf_encrypt(buf + BOX_HEADER,
	    &clen, dgram, len, buf, BOX_HEADER, NULL, buf + BOX_NONCE,
	    c->field_key);
	memcpy(out, buf, BOX_HEADER + (size_t)clen);
	*outlen = BOX_HEADER + (size_t)clen;
	return AUTH_OK;
}

bool
auth_s2s_is_boxed(const void *data, size_t len)
{
	return data != NULL && len > 0 &&
	    ((const uint8_t *)data)[0] == BOX_MAGIC;
}

enum auth_err
auth_s2s_unbox(const struct auth_cluster *c, const void *data, size_t len,
    uint8_t sender[16], uint64_t *ctr, void *out, size_t outsz, size_t *outlen)
{
	const uint8_t *d = data;
	uint8_t pt[WIRE_MAX];
	unsigned long long plen;
	enum auth_err e;

	if (c == NULL || (data == NULL && len > 0) || sender == NULL ||
	    ctr == NULL || (out == NULL && outsz > 0) || outlen == NULL)
		return AUTH_EARG;
	if ((e = ready()) != AUTH_OK)
		return e;
	if (len < AUTH_BOX_OVERHEAD || len > WIRE_MAX || d[0] != BOX_MAGIC ||
	    d[1] != BOX_VERSION)
		return AUTH_EMALFORMED;
	if (len - AUTH_BOX_OVERHEAD > outsz)
		return AUTH_ETOOBIG;
	if (crypto_aead_xchacha20poly1305_ietf_decrypt(pt, &plen, NULL,
		d + BOX_HEADER, len - BOX_HEADER, d, BOX_HEADER, d + BOX_NONCE,
		c->field_key) != 0) {
		sodium_memzero(pt, sizeof(pt));
		return AUTH_EBADMAC;
	}
	memcpy(sender, d + BOX_SENDER, 16);
	*ctr = get_be64(d + BOX_CTR);
	if (plen > 0)
		memcpy(out, pt, (size_t)plen);
	*outlen = (size_t)plen;
	sodium_memzero(pt, sizeof(pt));
	return AUTH_OK;
}

enum auth_err
auth_field_seal(const struct auth_cluster *c, const void *ad, size_t adlen,
    const void *pt, size_t ptlen, char *out, size_t outsz, size_t *outlen)
{
	uint8_t bin[WIRE_MAX + AUTH_FIELD_OVERHEAD];
	unsigned long long clen;
	size_t textlen;
	enum auth_err e;

	if (c == NULL || (ad == NULL && adlen > 0) ||
	    (pt == NULL && ptlen > 0) || out == NULL || outlen == NULL)
		return AUTH_EARG;
	if ((e = ready()) != AUTH_OK)
		return e;
	if (ptlen > WIRE_MAX)
		return AUTH_ETOOBIG;
	textlen = B64_LEN(ptlen + AUTH_FIELD_OVERHEAD);
	if (textlen > WIRE_MAX || textlen >= outsz)
		return AUTH_ETOOBIG;
	randombytes_buf(bin, crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
	(void)crypto_aead_xchacha20poly1305_ietf_encrypt(
	    bin + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES, &clen, pt,
	    ptlen, ad, adlen, NULL, bin, c->field_key);
	(void)sodium_bin2base64(out, outsz, bin,
	    crypto_aead_xchacha20poly1305_ietf_NPUBBYTES + (size_t)clen, B64);
	*outlen = textlen;
	return AUTH_OK;
}

enum auth_err
auth_field_open(const struct auth_cluster *c, const void *ad, size_t adlen,
    const char *text, size_t textlen, void *out, size_t outsz, size_t *outlen)
{
	uint8_t bin[WIRE_MAX], pt[WIRE_MAX];
	unsigned long long plen;
	size_t binlen;
	enum auth_err e;

	if (c == NULL || (ad == NULL && adlen > 0) ||
	    (text == NULL && textlen > 0) || (out == NULL && outsz > 0) ||
	    outlen == NULL)
		return AUTH_EARG;
	if ((e = ready()) != AUTH_OK)
		return e;
	if (textlen > WIRE_MAX)
		return AUTH_EMALFORMED;
	binlen = textlen * 3 / 4;
	if (binlen < AUTH_FIELD_OVERHEAD ||
	    b64_decode(bin, binlen, text, textlen) == -1)
		return AUTH_EMALFORMED;
	if (binlen - AUTH_FIELD_OVERHEAD > outsz)
		return AUTH_ETOOBIG;
	if (crypto_aead_xchacha20poly1305_ietf_decrypt(pt, &plen, NULL,
		bin + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES,
		binlen - crypto_aead_xchacha20poly1305_ietf_NPUBBYTES, ad,
		adlen, bin, c->field_key) != 0) {
		e = AUTH_EBADMAC;
		goto out;
	}
	if (plen > 0)
		memcpy(out, pt, (size_t)plen);
	*outlen = (size_t)plen;
out:
	sodium_memzero(pt, sizeof(pt));
	return e;
}

/* Passwords. */

enum auth_err
auth_pw_hash(const char *pw, size_t pwlen, char out[AUTH_PWHASH_SIZE])
{
	char tmp[AUTH_PWHASH_SIZE];
	enum auth_err e;

	if (pw == NULL || out == NULL)
		return AUTH_EARG;
	if (pwlen == 0 || pwlen > AUTH_PW_MAX)
		return AUTH_EPW_LENGTH;
	if ((e = ready()) != AUTH_OK)
		return e;
	if (crypto_pwhash_str_alg(tmp, pw, pwlen, AUTH_PW_OPSLIMIT,
		AUTH_PW_MEMLIMIT, crypto_pwhash_ALG_ARGON2ID13) != 0)
		return AUTH_ENOMEM;
	memcpy(out, tmp, sizeof(tmp));
	return AUTH_OK;
}

/* Reads 1 to 10 decimal digits at *sp, then the byte end. */
static int
pw_param(const char **sp, char end, uint64_t *v)
{
	const char *s = *sp;
	int n = 0;

	*v = 0;
	while (*s >= '0' && *s <= '9' && n < 10) {
		*v = *v * 10 + (uint64_t)(*s - '0');
		s++;
		n++;
	}
	if (n == 0 || *s != end)
		return -1;
	*sp = s + 1;
	return 0;
}

enum auth_err
auth_pw_hash_check(const char *hash)
{
	static const char prefix[] = "$argon2id$v=19$m=";
	const char *s;
	uint64_t m, t, p;
	enum auth_err e;

	if (hash == NULL)
		return AUTH_EARG;
	if ((e = ready()) != AUTH_OK)
		return e;
	if (strnlen(hash, AUTH_PWHASH_SIZE) == AUTH_PWHASH_SIZE ||
	    strncmp(hash, prefix, sizeof(prefix) - 1) != 0)
		return AUTH_EPW_HASH;
	/*
	 * The cost is read from the stored string: bound it before
	 * libsodium allocates it, so that a corrupt or hostile users.json
	 * cannot make the leader allocate gigabytes per login.
	 */
	s = hash + sizeof(prefix) - 1;
	if (pw_param(&s, ',', &m) == -1 || strncmp(s, "t=", 2) != 0)
		return AUTH_EPW_HASH;
	s += 2;
	if (pw_param(&s, ',', &t) == -1 || strncmp(s, "p=", 2) != 0)
		return AUTH_EPW_HASH;
	s += 2;
	if (pw_param(&s, '$', &p) == -1)
		return AUTH_EPW_HASH;
	if (m > AUTH_PW_MEMLIMIT_MAX / 1024 || t == 0 ||
	    t > AUTH_PW_OPSLIMIT_MAX || p != 1)
		return AUTH_EPW_HASH;
	if (crypto_pwhash_str_needs_rehash(
		hash, AUTH_PW_OPSLIMIT, AUTH_PW_MEMLIMIT) == -1)
		return AUTH_EPW_HASH;
	return AUTH_OK;
}

enum auth_err
auth_pw_verify(const char *hash, const char *pw, size_t pwlen)
{
	enum auth_err e;

	if (hash == NULL || pw == NULL)
		return AUTH_EARG;
	if ((e = auth_pw_hash_check(hash)) != AUTH_OK)
		return e;
	if (pwlen == 0 || pwlen > AUTH_PW_MAX)
		return AUTH_EPW_LENGTH;
	errno = 0;
	if (crypto_pwhash_str_verify(hash, pw, pwlen) == 0)
		return AUTH_OK;
	/* libsodium says EINVAL for a mismatch, ENOMEM when it cannot try. */
	return errno == ENOMEM ? AUTH_ENOMEM : AUTH_EPW_WRONG;
}

bool
auth_pw_needs_rehash(const char *hash)
{
	if (auth_pw_hash_check(hash) != AUTH_OK)
		return true;
	return crypto_pwhash_str_needs_rehash(
		   hash, AUTH_PW_OPSLIMIT, AUTH_PW_MEMLIMIT) != 0;
}

uint32_t
auth_pw_delay_ms(uint32_t failures)
{
	uint64_t d;

	if (failures == 0)
		return 0;
	if (failures > 32)
		return AUTH_DELAY_MAX_MS;
	d = (uint64_t)AUTH_DELAY_BASE_MS << (failures - 1);
	return d > AUTH_DELAY_MAX_MS ? AUTH_DELAY_MAX_MS : (uint32_t)d;
}

/* Sessions. */

/* The key of one direction for one leader epoch. */
static void
epoch_key(const uint8_t dir[AUTH_KEY_BYTES], uint64_t epoch,
    uint8_t out[AUTH_KEY_BYTES])
{
	(void)crypto_kdf_derive_from_key(
	    out, AUTH_KEY_BYTES, epoch, KDF_EPOCH, dir);
}

enum auth_err
auth_session_client(
    struct auth_session *s, const uint8_t server_pk[AUTH_PK_BYTES])
{
	struct auth_session tmp;
	uint8_t sk[crypto_kx_SECRETKEYBYTES];
	enum auth_err e;

	if (s == NULL || server_pk == NULL)
		return AUTH_EARG;
	if ((e = ready()) != AUTH_OK)
		return e;
	memset(&tmp, 0, sizeof(tmp));
	/* Ephemeral: the secret half lives only for this exchange. */
	if (crypto_kx_keypair(tmp.client_pk, sk) != 0) {
		e = AUTH_EINIT;
		goto out;
	}
	if (crypto_kx_client_session_keys(
		tmp.kx_rx, tmp.kx_tx, tmp.client_pk, sk, server_pk) != 0) {
		e = AUTH_EKX;
		goto out;
	}
	auth_window_init(&tmp.rx_win);
	memcpy(s, &tmp, sizeof(*s));
out:
	sodium_memzero(sk, sizeof(sk));
	sodium_memzero(&tmp, sizeof(tmp));
	return e;
}

enum auth_err
auth_session_server(struct auth_session *s, const struct auth_cluster *c,
    const uint8_t client_pk[AUTH_PK_BYTES], uint64_t epoch)
{
	struct auth_session tmp;
	enum auth_err e;

	if (s == NULL || c == NULL || client_pk == NULL)
		return AUTH_EARG;
	if ((e = ready()) != AUTH_OK)
		return e;
	memset(&tmp, 0, sizeof(tmp));
	tmp.server = true;
	memcpy(tmp.client_pk, client_pk, AUTH_PK_BYTES);
	if (crypto_kx_server_session_keys(
		tmp.kx_rx, tmp.kx_tx, c->kx_pk, c->kx_sk, client_pk) != 0) {
		e = AUTH_EKX;
		goto out;
	}
	tmp.rx_set = tmp.tx_set = true;
	tmp.rx_epoch = tmp.tx_epoch = epoch;
	epoch_key(tmp.kx_rx, epoch, tmp.rx_key);
	epoch_key(tmp.kx_tx, epoch, tmp.tx_key);
	auth_window_init(&tmp.rx_win);
	memcpy(s, &tmp, sizeof(*s));
out:
	sodium_memzero(&tmp, sizeof(tmp));
	return e;
}

void
auth_session_wipe(struct auth_session *s)
{
	if (s != NULL)
		sodium_memzero(s, sizeof(*s));
}

bool
auth_session_is_sealed(const void *data, size_t len)
{
	return data != NULL && len > 0 &&
	    ((const uint8_t *)data)[0] == SESS_MAGIC;
}

enum auth_err
auth_session_peek(const void *data, size_t len,
    uint8_t client_pk[AUTH_PK_BYTES], uint64_t *epoch)
{
	const uint8_t *d = data;

	if ((data == NULL && len > 0) || client_pk == NULL || epoch == NULL)
		return AUTH_EARG;
	if (len < AUTH_SESSION_OVERHEAD || len > WIRE_MAX ||
	    d[0] != SESS_MAGIC || d[1] != SESS_VERSION)
		return AUTH_EMALFORMED;
	memcpy(client_pk, d + SESS_PK, AUTH_PK_BYTES);
	*epoch = get_be64(d + SESS_EPOCH);
	return AUTH_OK;
}

enum auth_err
auth_session_seal(struct auth_session *s, uint64_t epoch, const void *pt,
    size_t ptlen, void *out, size_t outsz, size_t *outlen)
{
	uint8_t buf[WIRE_MAX];
	unsigned long long clen;
	enum auth_err e;

	if (s == NULL || (pt == NULL && ptlen > 0) || out == NULL ||
	    outlen == NULL)
		return AUTH_EARG;
	if ((e = ready()) != AUTH_OK)
		return e;
	/*
	 * The server speaks only in its own epoch; a client never goes
	 * back below an epoch the cluster has proved to it.
	 */
	if (s->server ? epoch != s->rx_epoch
		      : (s->rx_set && epoch < s->rx_epoch))
		return AUTH_EEPOCH;
	if (s->tx_ctr == UINT64_MAX)
		return AUTH_EEXHAUSTED;
	if (ptlen > WIRE_MAX - AUTH_SESSION_OVERHEAD ||
	    ptlen + AUTH_SESSION_OVERHEAD > outsz)
		return AUTH_ETOOBIG;
	if (!s->tx_set || s->tx_epoch != epoch) {
		epoch_key(s->kx_tx, epoch, s->tx_key);
		s->tx_epoch = epoch;
		s->tx_set = true;
	}
	buf[0] = SESS_MAGIC;
	buf[1] = SESS_VERSION;
	memcpy(buf + SESS_PK, s->client_pk, AUTH_PK_BYTES);
	put_be64(buf + SESS_EPOCH, epoch);
	/*
	 * The counter alone would be a unique nonce under this key; the
	 * random half keeps it unique even if a bug or a restored state
	 * ever repeated a counter.
	 */
	randombytes_buf(buf + SESS_NONCE, SESS_RANDOM);
	put_be64(buf + SESS_CTR, s->tx_ctr);
	(void)crypto_aead_xchacha20poly1305_ietf_encrypt(buf + SESS_HEADER,
	    &clen, pt, ptlen, buf, SESS_AD, NULL, buf + SESS_NONCE, s->tx_key);
	memcpy(out, buf, SESS_HEADER + (size_t)clen);
	*outlen = SESS_HEADER + (size_t)clen;
	s->tx_ctr++;
	return AUTH_OK;
}

enum auth_err
auth_session_open(struct auth_session *s, const void *data, size_t len,
    void *out, size_t outsz, size_t *outlen)
{
	const uint8_t *d = data;
	uint8_t pt[WIRE_MAX], key[AUTH_KEY_BYTES];
	struct auth_window fresh, *win;
	unsigned long long plen;
	uint64_t epoch, ctr;
	bool newepoch;
	enum auth_err e;

	if (s == NULL || (data == NULL && len > 0) ||
	    (out == NULL && outsz > 0) || outlen == NULL)
		return AUTH_EARG;
	if ((e = ready()) != AUTH_OK)
		return e;
	if (len < AUTH_SESSION_OVERHEAD || len > WIRE_MAX ||
	    d[0] != SESS_MAGIC || d[1] != SESS_VERSION)
		return AUTH_EMALFORMED;
	if (memcmp(d + SESS_PK, s->client_pk, AUTH_PK_BYTES) != 0)
		return AUTH_ESESSION;
	epoch = get_be64(d + SESS_EPOCH);
	ctr = get_be64(d + SESS_CTR);
	if (s->server ? epoch != s->rx_epoch
		      : (s->rx_set && epoch < s->rx_epoch))
		return AUTH_EEPOCH;

	/*
	 * A newer epoch (a new leader) gets its own key and an empty
	 * window, adopted only once a datagram of it authenticates: an
	 * unauthenticated "leader" answer cannot move the client.
	 */
	newepoch = !s->rx_set || epoch != s->rx_epoch;
	if (newepoch) {
		auth_window_init(&fresh);
		win = &fresh;
		epoch_key(s->kx_rx, epoch, key);
	} else {
		win = &s->rx_win;
		memcpy(key, s->rx_key, sizeof(key));
	}
	if ((e = auth_window_check(win, ctr, 0)) != AUTH_OK)
		goto out;
	if (len - AUTH_SESSION_OVERHEAD > outsz) {
		e = AUTH_ETOOBIG;
		goto out;
	}
	if (crypto_aead_xchacha20poly1305_ietf_decrypt(pt, &plen, NULL,
		d + SESS_HEADER, len - SESS_HEADER, d, SESS_AD, d + SESS_NONCE,
		key) != 0) {
		e = AUTH_EBADMAC;
		goto out;
	}
	if (newepoch) {
		s->rx_set = true;
		s->rx_epoch = epoch;
		memcpy(s->rx_key, key, sizeof(key));
		s->rx_win = fresh;
	}
	auth_window_update(&s->rx_win, ctr);
	if (plen > 0)
		memcpy(out, pt, (size_t)plen);
	*outlen = (size_t)plen;
out:
	sodium_memzero(pt, sizeof(pt));
	sodium_memzero(key, sizeof(key));
	return e;
}

/* Trust on first use. */

static bool
label_valid(const char *s, size_t n)
{
	size_t i;

	if (n == 0 || n > PIN_LABEL_MAX)
		return false;
	for (i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') ||
			(s[i] >= 'A' && s[i] <= 'Z') ||
			(s[i] >= '0' && s[i] <= '9') || s[i] == '.' ||
			s[i] == '_' || s[i] == ':' || s[i] == '-'))
			return false;
	return true;
}

enum auth_err
auth_pin_find(const char *text, size_t len, const char *label,
    uint8_t pk[AUTH_PK_BYTES], bool *found, size_t *line)
{
	uint8_t key[AUTH_PK_BYTES], have[AUTH_PK_BYTES];
	const char *p, *end, *nl, *sp;
	size_t n, lineno = 0, llen;
	bool got = false;
	enum auth_err e;

	if ((text == NULL && len > 0) || label == NULL || pk == NULL ||
	    found == NULL || line == NULL)
		return AUTH_EARG;
	llen = strnlen(label, PIN_LABEL_MAX + 1);
	if (!label_valid(label, llen))
		return AUTH_EARG;
	if ((e = ready()) != AUTH_OK)
		return e;
	if (text == NULL)
		text = ""; /* len is 0: no arithmetic on a NULL pointer */
	if (memchr(text, '\0', len) != NULL) {
		*line = 0;
		return AUTH_EFORMAT;
	}
	/*
	 * Every line is checked, not just up to the one wanted, so that a
	 * damaged file is noticed the first time it is read.
	 */
	for (p = text, end = text + len; p < end; p = nl + 1) {
		lineno++;
		if ((nl = memchr(p, '\n', (size_t)(end - p))) == NULL)
			nl = end;
		n = (size_t)(nl - p);
		if (n == 0 || p[0] == '#')
			continue;
		if ((sp = memchr(p, ' ', n)) == NULL ||
		    !label_valid(p, (size_t)(sp - p)) ||
		    b64_decode(
			key, sizeof(key), sp + 1, (size_t)(nl - sp - 1)) == -1)
			goto bad;
		if ((size_t)(sp - p) != llen || memcmp(p, label, llen) != 0)
			continue;
		if (got)
			goto bad; /* the same cluster twice */
		memcpy(have, key, sizeof(have));
		got = true;
	}
	if (got)
		memcpy(pk, have, sizeof(have));
	*found = got;
	*line = 0;
	return AUTH_OK;
bad:
	*line = lineno;
	return AUTH_EFORMAT;
}

enum auth_err
auth_pin_check(const char *path, const char *label,
    const uint8_t pk[AUTH_PK_BYTES], bool *pinned, struct auth_error *err)
{
	char *buf = NULL, *nbuf = NULL, pktext[AUTH_PK_TEXT];
	char fp_have[AUTH_FP_SIZE], fp_got[AUTH_FP_SIZE];
	uint8_t have[AUTH_PK_BYTES];
	size_t len, line, nlen, off;
	bool absent, found;
	enum auth_err e;
	int r;

	if (path == NULL || label == NULL || pk == NULL || pinned == NULL)
		return seterr(err, AUTH_EARG, "auth_pin_check: NULL argument");
	if (!label_valid(label, strnlen(label, PIN_LABEL_MAX + 1)))
		return seterr(
		    err, AUTH_EARG, "auth_pin_check: invalid cluster label");
	if ((buf = malloc(PIN_FILE_MAX + 1)) == NULL)
		return seterr(err, AUTH_ENOMEM, "%s: out of memory", path);
	e = file_read(path, buf, PIN_FILE_MAX + 1, &len, false, &absent, err);
	if (e != AUTH_OK)
		goto out;
	if ((e = auth_pin_find(buf, len, label, have, &found, &line)) !=
	    AUTH_OK) {
		e = seterr(err, e,
		    "%s:%zu: not a \"label base64url-key\" line, or a label "
		    "given twice",
		    path, line);
		goto out;
	}
	if (found) {
		if (memcmp(have, pk, AUTH_PK_BYTES) == 0) {
			*pinned = false;
			goto out;
		}
		auth_fingerprint(have, fp_have);
		auth_fingerprint(pk, fp_got);
		e = seterr(err, AUTH_EPIN_MISMATCH,
		    "%s: the servers of cluster \"%s\" now present the key "
		    "%s, not the pinned %s: someone may be impersonating "
		    "them; if the cluster key was replaced on purpose, "
		    "remove its line",
		    path, label, fp_got, fp_have);
		goto out;
	}

	/* First use: the file as it was, one line more. */
	auth_pk_to_text(pk, pktext);
	nlen = (absent ? sizeof(pin_header) - 1 : len) + 1 + strlen(label) + 1 +
	    AUTH_PK_TEXT;
	if ((nbuf = malloc(nlen + 1)) == NULL) {
		e = seterr(err, AUTH_ENOMEM, "%s: out of memory", path);
		goto out;
	}
	if (absent)
		off = (size_t)snprintf(nbuf, nlen + 1, "%s", pin_header);
	else {
		memcpy(nbuf, buf, len);
		off = len;
		if (len > 0 && buf[len - 1] != '\n')
			nbuf[off++] = '\n';
	}
	r = snprintf(nbuf + off, nlen + 1 - off, "%s %s\n", label, pktext);
	if (r < 0 || (size_t)r >= nlen + 1 - off) {
		e = seterr(err, AUTH_EARG, "%s: internal size error", path);
		goto out;
	}
	if ((e = file_write(path, nbuf, off + (size_t)r, 0644, true, err)) ==
	    AUTH_OK)
		*pinned = true;
out:
	free(buf);
	free(nbuf);
	return e;
}
