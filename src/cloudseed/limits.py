"""Named limits, each with the reason it has the value it has.

Inventory limits are Nova's (anchors §1.11), so anything Nova accepts we
accept and anything it refuses we refuse. Guest-facing limits bound what an
untrusted guest can make us hold in memory.
"""

from __future__ import annotations

# Nova quota `metadata_items`.
MAX_METADATA_ITEMS = 128
# Nova parameter_types: metadata keys `^[a-zA-Z0-9-_:. ]{1,255}$`.
METADATA_KEY_PATTERN = r"^[a-zA-Z0-9-_:. ]{1,255}$"
MAX_METADATA_KEY_CHARS = 255
# Nova parameter_types: metadata values up to 255 characters.
MAX_METADATA_VALUE_CHARS = 255
# Nova compute API: user_data is a base64 string of at most 65535 characters.
MAX_USER_DATA_BASE64_CHARS = 65535
# Nova quotas injected_files / injected_file_content_bytes / injected_file_path_length.
MAX_INJECTED_FILES = 5
MAX_INJECTED_FILE_BYTES = 10240
MAX_INJECTED_FILE_PATH_CHARS = 255
# Nova password.py: four system-metadata chunks of 255 characters.
PASSWORD_MAX_BYTES = 1020
# A phone-home POST: three host keys (an RSA-16384 public key is ~2.8 KB
# base64), a hostname and an fqdn fit easily; anything bigger is not cloud-init.
PHONE_HOME_MAX_BYTES = 16384
# One host public key line ("<type> <base64> [comment]").
PHONE_HOME_MAX_KEY_CHARS = 4096
# Guest attributes (GCE-style, guest-writable key/value pairs per server).
# Namespace and key: 1-64 of A-Z a-z 0-9 _ . -, not starting with . or -
# (GCE's own keys such as hostkeys/ssh-ed25519 fit; no "/", "..", NUL).
GUEST_ATTRIBUTE_NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$"
MAX_GUEST_ATTRIBUTE_NAME_CHARS = 64
# One value: an RSA-16384 host key line (~2.8 KB) fits; it also fits the
# proxies' 16 KiB body limit with room to spare.
MAX_GUEST_ATTRIBUTE_VALUE_BYTES = 4096
# Keys per server, over all namespaces: with the value limit, at most
# 128 KiB per server, so a million servers cannot fill the store.
MAX_GUEST_ATTRIBUTES = 32
# Guest writes (PUT and DELETE) per server: GCE allows 10 per minute with
# bursts; a token bucket of GUEST_ATTRIBUTE_WRITE_BURST writes refilled at
# GUEST_ATTRIBUTE_WRITES_PER_MINUTE, counted in the store so every worker and
# host shares one budget per server.
GUEST_ATTRIBUTE_WRITES_PER_MINUTE = 10
GUEST_ATTRIBUTE_WRITE_BURST = 10
# Control API long-polls (``GET /v1/servers/{id}/phone_home?wait=S``): the
# longest one wait, and how many may wait at once per control API process
# (each holds a connection and an asyncio event, no thread); more are 429.
MAX_CONTROL_WAIT_SECONDS = 300
MAX_CONTROL_WAITERS = 1000
# RFC 1123: a host name label is at most 63 octets, the whole name 253.
MAX_HOSTNAME_LABEL_CHARS = 63
MAX_HOSTNAME_CHARS = 253
# Names of networks, routers, servers, key pairs: what fits a CLI table and a
# Nova server name (255).
MAX_NAME_CHARS = 255
# An OpenSSH public key line; 16 KiB holds an RSA-16384 key with a comment.
MAX_PUBLIC_KEY_BYTES = 16384
# IMDSv2 token TTL range (AWS).
MIN_TOKEN_TTL_SECONDS = 1
MAX_TOKEN_TTL_SECONDS = 21600
# IP TTL / IPv6 hop limit of the token PUT's reply (AWS's
# ``http-put-response-hop-limit``): 1 reaches only the guest itself.
MIN_HOP_LIMIT = 1
MAX_HOP_LIMIT = 64
DEFAULT_HOP_LIMIT = 1
