"""libnftables through ctypes: ``nft``'s own library, run in the calling thread's namespace.

``nft`` is a thin command line over libnftables, so a command given here
prints the same text and applies the same transaction as ``nft`` would —
without a process start, and (unlike ``ip netns exec nft``) in whatever
namespace the calling thread has entered. The data plane lists its table in
every router namespace on every sync and applies it in every new one, so at
thousands of namespaces the process starts were most of the cost.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

from cloudseed.errors import CloudseedError, ConfigError

NFT_CTX_DEFAULT = 0


class NftError(CloudseedError):
    """A command libnftables refused; the message is nft's own error text."""


class Libnftables:
    def __init__(self, lib: ctypes.CDLL) -> None:
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        for fn in (lib.nft_ctx_buffer_output, lib.nft_ctx_buffer_error, lib.nft_ctx_free):
            fn.argtypes = [ctypes.c_void_p]
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        for fn in (lib.nft_ctx_get_output_buffer, lib.nft_ctx_get_error_buffer):
            fn.restype = ctypes.c_char_p
            fn.argtypes = [ctypes.c_void_p]
        self.lib = lib

    def run(self, command: str) -> str:
        """The command's output; ``NftError`` with nft's message when it fails."""
        ctx = self.lib.nft_ctx_new(NFT_CTX_DEFAULT)
        if not ctx:
            raise MemoryError("nft_ctx_new")
        try:
            # Buffered, so neither output nor errors reach our stdio.
            self.lib.nft_ctx_buffer_output(ctx)
            self.lib.nft_ctx_buffer_error(ctx)
            if self.lib.nft_run_cmd_from_buffer(ctx, command.encode()) != 0:
                error: bytes | None = self.lib.nft_ctx_get_error_buffer(ctx)
                raise NftError((error or b"nft failed").decode(errors="replace").strip())
            out: bytes | None = self.lib.nft_ctx_get_output_buffer(ctx)
            return (out or b"").decode()
        finally:
            self.lib.nft_ctx_free(ctx)

    def listing(self, family: str, table: str) -> str | None:
        """``nft list table``'s text; None when the table does not exist."""
        try:
            return self.run(f"list table {family} {table}")
        except NftError:
            return None


@functools.cache
def load() -> Libnftables:
    path = ctypes.util.find_library("nftables") or "libnftables.so.1"
    try:
        return Libnftables(ctypes.CDLL(path))
    except OSError as exc:
        raise ConfigError(f"cannot load libnftables ({exc}): install the nftables package "
                          "(it ships nft and libnftables.so.1)") from None
