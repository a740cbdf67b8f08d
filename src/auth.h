/* auth: cluster key, datagram MACs, replay windows, passwords, sessions. */
#ifndef RINGCHAT_AUTH_H
#define RINGCHAT_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Every primitive is libsodium's; nothing here is cryptography written
 * by hand, only the framing around it.  No socket and no clock is used:
 * times are the caller's arguments.  The only files touched are the
 * cluster key file and the client's pin file, on explicit calls.
 * docs/SECURITY.md gives the design, the formats and the threat model.
 *
 * Every function that can fail returns an enum auth_err; on failure its
 * outputs are untouched (never a partial result) and any secret it held
 * on the stack is wiped.  The file functions also fill a struct
 * auth_error (which may be NULL) with one line naming the file.
 */

#define AUTH_KEY_BYTES	 32 /* the cluster key and every derived key */
#define AUTH_PK_BYTES	 32 /* a key-exchange public key */
#define AUTH_PK_TEXT	 44 /* base64url without padding, NUL included */
#define AUTH_KEY_TEXT	 69 /* a key file's line, newline and NUL incl. */
#define AUTH_FP_SIZE	 40 /* "xxxx:xxxx:...:xxxx", 8 groups, NUL incl. */
#define AUTH_WINDOW_BITS 1024
#define AUTH_CTR_SHIFT	 20 /* counter = unix seconds << 20 | position */
/*
 * Bytes auth_s2s_seal appends: "@ctr=", up to 20 digits, "@mac=" and 43
 * base64url characters.  A datagram to be sealed must leave this room
 * below WIRE_MAX (and two free extension slots).
 */
#define AUTH_S2S_OVERHEAD 73
/* Bytes a session datagram adds to its plaintext: header and tag. */
#define AUTH_SESSION_OVERHEAD 82
/* Bytes auth_field_seal adds before base64url: nonce and tag. */
#define AUTH_FIELD_OVERHEAD 40
#define AUTH_PWHASH_SIZE    128 /* an encoded hash, NUL included */
#define AUTH_PW_MAX	    256 /* bytes of a password */
/*
 * Argon2id cost: OWASP's recommended minimum (19 MiB, 2 passes, 1 lane),
 * about 15 ms per hash, rather than libsodium's "interactive" 64 MiB
 * (about 60 ms): see docs/SECURITY.md for the measurements.  The cost is
 * stored in each hash, so it can be raised later (auth_pw_needs_rehash).
 */
#define AUTH_PW_OPSLIMIT 2
#define AUTH_PW_MEMLIMIT (19 * 1024 * 1024)
/* A stored hash asking for more than this is refused, not computed. */
#define AUTH_PW_OPSLIMIT_MAX 16
#define AUTH_PW_MEMLIMIT_MAX (256 * 1024 * 1024)
/* Delay after the n-th wrong password: 500 ms doubling, at most 30 s. */
#define AUTH_DELAY_BASE_MS 500
#define AUTH_DELAY_MAX_MS  30000

enum auth_err {
	AUTH_OK = 0,
	AUTH_EINIT,	 /* libsodium did not initialise */
	AUTH_EARG,	 /* programming error: NULL, bad length or label */
	AUTH_ENOMEM,	 /* out of memory (password hashing) */
	AUTH_ETOOBIG,	 /* the result would not fit WIRE_MAX or the buffer */
	AUTH_ENOMAC,	 /* a server datagram without "@mac=" */
	AUTH_EMALFORMED, /* bad mac/ctr trailer or session header */
	AUTH_EBADMAC,	 /* MAC or AEAD tag does not verify */
	AUTH_EREPLAY,	 /* counter already accepted */
	AUTH_ETOOOLD,	 /* counter below the window or the floor */
	AUTH_EEXHAUSTED, /* counter at its maximum: rekey */
	AUTH_EEPOCH,	 /* session datagram for another leader epoch */
	AUTH_ESESSION,	 /* session datagram for another client key */
	AUTH_EKX,	 /* key exchange refused the peer's public key */
	AUTH_EEXISTS,	 /* key file exists: never overwritten */
	AUTH_EIO,	 /* a file cannot be opened, read or written */
	AUTH_EPERM,	 /* key file readable by others, or foreign owner */
	AUTH_EFORMAT,	 /* key or pin file: wrong size or content */
	AUTH_EPIN_MISMATCH, /* the cluster's key is not the pinned one */
	AUTH_EPW_LENGTH,    /* password empty or over AUTH_PW_MAX */
	AUTH_EPW_WRONG,	    /* password does not match */
	AUTH_EPW_HASH,	    /* stored hash malformed or too costly */
	AUTH_NERR
};

/* One line naming the file and what is wrong with it. */
struct auth_error {
	char text[512];
};

/* The cluster secret: every server of a cluster has the same. */
struct auth_key {
	uint8_t k[AUTH_KEY_BYTES];
};

/*
 * Keys derived from the cluster key (crypto_kdf, context "ringchat"):
 * the server-to-server MAC key, the field encryption key and the
 * cluster's key-exchange keypair, identical on every server so that any
 * leader can continue a client's session.
 */
struct auth_cluster {
	uint8_t mac_key[AUTH_KEY_BYTES];
	uint8_t field_key[AUTH_KEY_BYTES];
	uint8_t kx_pk[AUTH_PK_BYTES];
	uint8_t kx_sk[AUTH_KEY_BYTES];
};

/*
 * Sliding replay window over 64-bit counters (RFC 4303 / WireGuard):
 * accepts each counter once, any order, within the AUTH_WINDOW_BITS
 * counters up to the highest accepted.  Pure; one per sender (servers)
 * or per session direction.
 */
struct auth_window {
	uint64_t top; /* highest counter accepted, when any */
	bool any;
	uint64_t bits[AUTH_WINDOW_BITS / 64]; /* bit ctr % BITS: seen */
};

/* A sender's counter: monotonic, and above any earlier run's. */
struct auth_ctr {
	uint64_t next;
};

/*
 * A client session: both directions of one client key exchange, with
 * per-epoch keys (a new leader uses the keys of its own epoch, so no
 * counter is ever reused under a key).  Create with auth_session_client
 * or auth_session_server; wipe with auth_session_wipe.
 */
struct auth_session {
	bool server; /* the cluster's side */
	uint8_t client_pk[AUTH_PK_BYTES];
	uint8_t kx_rx[AUTH_KEY_BYTES], kx_tx[AUTH_KEY_BYTES];
	bool rx_set; /* rx_epoch is known (always, on the server side) */
	uint64_t rx_epoch;
	uint8_t rx_key[AUTH_KEY_BYTES];
	struct auth_window rx_win;
	bool tx_set;
	uint64_t tx_epoch;
	uint8_t tx_key[AUTH_KEY_BYTES];
	uint64_t tx_ctr; /* next counter to send */
};

/* Initialises libsodium; every function does too, this fails early. */
enum auth_err auth_init(void);
/* Never NULL: a short distinct text per code. */
const char *auth_strerror(enum auth_err);

/* Cluster key. */
enum auth_err auth_key_generate(struct auth_key *);
/*
 * Writes the key to path (mode 0600) atomically: a temporary file in the
 * same directory, fsync, link into place (refused with AUTH_EEXISTS when
 * path exists), fsync the directory.  Never overwrites.
 */
enum auth_err
auth_key_write(const char *path, const struct auth_key *, struct auth_error *);
/*
 * Reads a key file: AUTH_EIO when it cannot be read or is not a regular
 * file, AUTH_EPERM when group or others have any access or it belongs to
 * another user (not root), AUTH_EFORMAT for a wrong size or content.
 */
enum auth_err
auth_key_read(const char *path, struct auth_key *, struct auth_error *);
/* The key file's text "ringchat-cluster-key-v1 <base64url>\n" parsed. */
enum auth_err auth_key_parse(const char *text, size_t len, struct auth_key *);
void auth_key_wipe(struct auth_key *);

enum auth_err auth_cluster_init(struct auth_cluster *, const struct auth_key *);
void auth_cluster_wipe(struct auth_cluster *);

/* Public keys as text (base64url, 43 characters) and fingerprints. */
void auth_pk_to_text(const uint8_t pk[AUTH_PK_BYTES], char out[AUTH_PK_TEXT]);
enum auth_err auth_pk_from_text(const char *text, uint8_t pk[AUTH_PK_BYTES]);
/* BLAKE2b-128 of the key as 8 colon-separated groups of 4 hex digits. */
void auth_fingerprint(const uint8_t pk[AUTH_PK_BYTES], char out[AUTH_FP_SIZE]);

/*
 * Server-to-server datagrams.  auth_s2s_seal appends "@ctr=N@mac=M" to
 * an encoded wire datagram (the result still decodes with wire_decode:
 * ctr and mac are two more extensions).  M is HMAC-SHA512-256 under the
 * cluster's MAC key of a label, the sender's id and every byte before
 * "@mac=".  out may be the input buffer.
 */
enum auth_err
auth_s2s_seal(const struct auth_cluster *, const char *sender, uint64_t ctr,
    const void *dgram, size_t len, char *out, size_t outsz, size_t *outlen);
/*
 * Checks the MAC only (constant time): AUTH_ETOOBIG (over WIRE_MAX),
 * AUTH_ENOMAC, AUTH_EMALFORMED, AUTH_EBADMAC, in that order.  On success
 * *ctr is the counter and *plen the length of the datagram as it was
 * before sealing.
 */
enum auth_err auth_s2s_verify(const struct auth_cluster *, const char *sender,
    const void *data, size_t len, uint64_t *ctr, size_t *plen);
/*
 * auth_s2s_verify, then the sender's window (auth_window_check with
 * floor), updated only when everything passed.
 */
enum auth_err auth_s2s_open(const struct auth_cluster *, const char *sender,
    struct auth_window *, uint64_t floor, const void *data, size_t len,
    size_t *plen);

/*
 * A sender's counter starts at (ms within its start second + 1) * 1024
 * into that second and is never below the current second << 20: so it
 * stays above an earlier run's as long as that run sent fewer than 1024
 * datagrams per millisecond and the clock did not step back.
 */
void auth_ctr_init(struct auth_ctr *, uint64_t unix_ms);
enum auth_err auth_ctr_next(struct auth_ctr *, uint64_t unix_ms, uint64_t *);
/* The lowest counter a sender whose clock is skew_ms behind may use. */
uint64_t auth_ctr_floor(uint64_t unix_ms, uint64_t skew_ms);
/*
 * The skew a receiver tolerates when it sets its floor once, at start:
 * auth_ctr_floor(start, AUTH_SKEW_MS) refuses datagrams recorded more
 * than this before it started (docs/SECURITY.md).
 */
#define AUTH_SKEW_MS (10 * 60 * 1000)

void auth_window_init(struct auth_window *);
/*
 * Would ctr be accepted?  AUTH_ETOOOLD below floor or below the window,
 * AUTH_EREPLAY when seen.  Changes nothing.
 */
enum auth_err
auth_window_check(const struct auth_window *, uint64_t ctr, uint64_t floor);
/* Records ctr; call only after the MAC verified and the check passed. */
void auth_window_update(struct auth_window *, uint64_t ctr);

/*
 * Confidential fields between servers (replicated chat text): XChaCha20-
 * Poly1305 under the cluster's field key, random nonce, written as
 * base64url (NUL-terminated; no byte wire.c escapes).  ad, which may be
 * empty, is authenticated.  Freshness comes from the datagram's MAC.
 */
enum auth_err
auth_field_seal(const struct auth_cluster *, const void *ad, size_t adlen,
    const void *pt, size_t ptlen, char *out, size_t outsz, size_t *outlen);
enum auth_err
auth_field_open(const struct auth_cluster *, const void *ad, size_t adlen,
    const char *text, size_t textlen, void *out, size_t outsz, size_t *outlen);

/*
 * Confidential server datagrams (repl and snap carry chat text and user
 * records): the whole encoded datagram encrypted and authenticated with
 * XChaCha20-Poly1305 under the cluster's field key, in a binary box
 *
 *   0xfe 0x01 | sender UUID (16) | nonce (24: 16 random, then the
 *   counter, 8 BE) | ciphertext and tag (16)
 *
 * with the 42-byte header as associated data: AUTH_BOX_OVERHEAD bytes in
 * all, fewer than the MAC trailer's.  0xfe never begins a wire datagram.
 * The receiver checks the counter against the sender's window, as for
 * sealed datagrams, and that the inner datagram's `from` is the sender.
 */
#define AUTH_BOX_OVERHEAD 58
enum auth_err auth_s2s_box(const struct auth_cluster *,
    const uint8_t sender[16], uint64_t ctr, const void *dgram, size_t len,
    void *out, size_t outsz, size_t *outlen);
/* True when data looks like a box (its first byte). */
bool auth_s2s_is_boxed(const void *data, size_t len);
/*
 * AUTH_EMALFORMED (too short, another magic or version), AUTH_ETOOBIG
 * (out too small), AUTH_EBADMAC; on success the sender, the counter and
 * the inner datagram.
 */
enum auth_err
auth_s2s_unbox(const struct auth_cluster *, const void *data, size_t len,
    uint8_t sender[16], uint64_t *ctr, void *out, size_t outsz, size_t *outlen);

/* Passwords: Argon2id strings as crypto_pwhash_str writes them. */
enum auth_err
auth_pw_hash(const char *pw, size_t pwlen, char out[AUTH_PWHASH_SIZE]);
/* AUTH_OK, AUTH_EPW_WRONG, AUTH_EPW_LENGTH or AUTH_EPW_HASH. */
enum auth_err auth_pw_verify(const char *hash, const char *pw, size_t pwlen);
/* Is hash a well-formed Argon2id string within the cost bounds?  Pure. */
enum auth_err auth_pw_hash_check(const char *hash);
/* True when hash was made with another cost than ours (or is invalid). */
bool auth_pw_needs_rehash(const char *hash);
/* Delay before answering after the failures-th wrong password in a row. */
uint32_t auth_pw_delay_ms(uint32_t failures);

/*
 * Sessions.  The client makes an ephemeral keypair against the cluster's
 * public key; the server side is derived from the cluster's keypair and
 * the client's public key alone, so any server can create it.  Datagram:
 *
 *   0xff 0x01 | client pk (32) | epoch (8, BE) | nonce (24: 16 random,
 *   counter 8 BE) | XChaCha20-Poly1305 ciphertext and tag (16)
 *
 * with the first 42 bytes as associated data.  0xff never begins a wire
 * datagram.  The server side has one epoch, its own; the client sends
 * under the epoch of the leader it believes in and accepts datagrams of
 * any epoch not older than the last one authenticated.
 */
enum auth_err auth_session_client(
    struct auth_session *, const uint8_t server_pk[AUTH_PK_BYTES]);
enum auth_err
auth_session_server(struct auth_session *, const struct auth_cluster *,
    const uint8_t client_pk[AUTH_PK_BYTES], uint64_t epoch);
/* True when data looks like a session datagram (its first byte). */
bool auth_session_is_sealed(const void *data, size_t len);
/* The client key and epoch of a session datagram, to find its session. */
enum auth_err auth_session_peek(const void *data, size_t len,
    uint8_t client_pk[AUTH_PK_BYTES], uint64_t *epoch);
enum auth_err auth_session_seal(struct auth_session *, uint64_t epoch,
    const void *pt, size_t ptlen, void *out, size_t outsz, size_t *outlen);
/*
 * AUTH_EMALFORMED, AUTH_ESESSION, AUTH_EEPOCH, AUTH_ETOOOLD/AUTH_EREPLAY,
 * AUTH_ETOOBIG (out too small), AUTH_EBADMAC, in that order.
 */
enum auth_err auth_session_open(struct auth_session *, const void *data,
    size_t len, void *out, size_t outsz, size_t *outlen);
void auth_session_wipe(struct auth_session *);

/*
 * Trust on first use: path holds "label base64url-key" lines (the
 * client's known clusters).  A label not there is added (*pinned set);
 * a different key is AUTH_EPIN_MISMATCH with both fingerprints in err.
 * Labels are 1 to 64 bytes of [A-Za-z0-9._:-].
 */
enum auth_err auth_pin_check(const char *path, const char *label,
    const uint8_t pk[AUTH_PK_BYTES], bool *pinned, struct auth_error *);
/*
 * The pin file's text parsed (pure): *found and pk when label is there.
 * AUTH_EFORMAT with *line the offending line.
 */
enum auth_err auth_pin_find(const char *text, size_t len, const char *label,
    uint8_t pk[AUTH_PK_BYTES], bool *found, size_t *line);

#endif
