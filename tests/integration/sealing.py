"""A client session as docs/SECURITY.md specifies it, in Python over
libsodium (ctypes): what a rogue client with its own key can do, and a
check of the format from outside the C code.  Not a second implementation
to ship: only tests use it."""

import base64
import ctypes
import ctypes.util
import os
import time

_lib = ctypes.CDLL(ctypes.util.find_library("sodium") or "libsodium.so.23")
assert _lib.sodium_init() >= 0
_P, _ULL = ctypes.c_char_p, ctypes.c_ulonglong
_lib.crypto_kdf_derive_from_key.argtypes = [_P, ctypes.c_size_t, ctypes.c_uint64, _P, _P]
_lib.crypto_kx_keypair.argtypes = [_P, _P]
_lib.crypto_kx_client_session_keys.argtypes = [_P, _P, _P, _P, _P]
_lib.crypto_aead_xchacha20poly1305_ietf_encrypt.argtypes = [
    _P, ctypes.POINTER(_ULL), _P, _ULL, _P, _ULL, _P, _P, _P]
_lib.crypto_aead_xchacha20poly1305_ietf_decrypt.argtypes = [
    _P, ctypes.POINTER(_ULL), _P, _P, _ULL, _P, _ULL, _P, _P]

MAGIC, VERSION = 0xFF, 0x01
AD_LEN = 2 + 32 + 8            # magic, version, client key, epoch
HEADER_LEN = AD_LEN + 24       # then the nonce: 16 random bytes, counter


def pk_from_text(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _buf(n):
    return ctypes.create_string_buffer(n)


class Session:
    """The client side of a session with a cluster whose public key is
    server_pk (32 bytes)."""

    def __init__(self, server_pk):
        pk, sk = _buf(32), _buf(32)
        assert _lib.crypto_kx_keypair(pk, sk) == 0
        rx, tx = _buf(32), _buf(32)
        assert _lib.crypto_kx_client_session_keys(rx, tx, pk, sk, server_pk) == 0
        self.pk, self.rx, self.tx = pk.raw, rx.raw, tx.raw
        self.ctr = int(time.time()) << 20

    @staticmethod
    def _epoch_key(base, epoch):
        out = _buf(32)
        assert _lib.crypto_kdf_derive_from_key(out, 32, epoch, b"rcepoch1", base) == 0
        return out.raw

    def seal(self, plain, epoch):
        """One datagram carrying plain (bytes) under the leader's epoch."""
        ad = bytes([MAGIC, VERSION]) + self.pk + epoch.to_bytes(8, "big")
        nonce = os.urandom(16) + self.ctr.to_bytes(8, "big")
        self.ctr += 1
        c = _buf(len(plain) + 16)
        clen = ctypes.c_ulonglong()
        assert _lib.crypto_aead_xchacha20poly1305_ietf_encrypt(
            c, ctypes.byref(clen), plain, len(plain), ad, len(ad), None, nonce,
            self._epoch_key(self.tx, epoch)) == 0
        return ad + nonce + c.raw[:clen.value]

    def open(self, data):
        """The plaintext of a datagram from the cluster, or None."""
        if len(data) < HEADER_LEN + 16 or data[0] != MAGIC or data[2:34] != self.pk:
            return None
        epoch = int.from_bytes(data[34:42], "big")
        m = _buf(len(data))
        mlen = ctypes.c_ulonglong()
        if _lib.crypto_aead_xchacha20poly1305_ietf_decrypt(
                m, ctypes.byref(mlen), None, data[HEADER_LEN:], len(data) - HEADER_LEN,
                data[:AD_LEN], AD_LEN, data[AD_LEN:HEADER_LEN],
                self._epoch_key(self.rx, epoch)) != 0:
            return None
        return m.raw[:mlen.value]
