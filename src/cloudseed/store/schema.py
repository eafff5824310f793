"""The store's tables, as SQLAlchemy Core metadata.

This is the schema the code reads and writes; the migrations in
``migrations/versions`` build the same schema step by step, and a test checks
that the two never drift apart.

Constraint names are explicit because ``integrity.py`` turns a violated
constraint back into a ``Conflict`` naming the field, and PostgreSQL reports
violations by constraint name.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from cloudseed.limits import MAX_NAME_CHARS

# Long enough for a UUID or any id an importer brings along.
ID_CHARS = 64
# An IPv6 address in its longest text form, or a CIDR.
ADDRESS_CHARS = 64
# "aa:bb:cc:dd:ee:ff", with room for InfiniBand-style 20-octet addresses.
MAC_CHARS = 64

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# The single row holding the current revision. Writers lock it first, which
# serialises them and makes revisions follow commit order.
meta = Table(
    "meta",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("revision", Integer, nullable=False),
    # Random, made by migration 0008: tells this store from another one made
    # at the same path or URL (caches of it compare it).
    Column("store_id", String(36), nullable=True),
    # Random, made by migration 0009: the IMDSv2 token key when api.token_key
    # is unset. A secret: read only by token_key(), never listed or exported.
    Column("token_key", String(64), nullable=True),
)

changes = Table(
    "changes",
    metadata,
    Column("revision", Integer, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("entity_id", String(MAX_NAME_CHARS), nullable=False),
    Column("op", String(8), nullable=False),
    PrimaryKeyConstraint("revision", "kind", "entity_id"),
)

networks = Table(
    "networks",
    metadata,
    Column("id", String(ID_CHARS), primary_key=True),
    Column("name", String(MAX_NAME_CHARS), nullable=False),
    Column("mtu", Integer, nullable=False),
    UniqueConstraint("name"),
)

subnets = Table(
    "subnets",
    metadata,
    Column("id", String(ID_CHARS), primary_key=True),
    Column("network_id", String(ID_CHARS), ForeignKey("networks.id"), nullable=False),
    Column("name", String(MAX_NAME_CHARS), nullable=False),
    Column("cidr", String(ADDRESS_CHARS), nullable=False),
    Column("ip_version", Integer, nullable=False),
    Column("gateway_ip", String(ADDRESS_CHARS), nullable=True),
    Column("dns_nameservers", Text, nullable=False),  # JSON list of strings
    Column("host_routes", Text, nullable=False),  # JSON list of {destination, nexthop}
    Column("enable_dhcp", Boolean, nullable=False),
    Column("ipv6_address_mode", String(32), nullable=True),
    Index(None, "network_id"),
)

routers = Table(
    "routers",
    metadata,
    Column("id", String(ID_CHARS), primary_key=True),
    Column("name", String(MAX_NAME_CHARS), nullable=False),
    UniqueConstraint("name"),
)

router_subnets = Table(
    "router_subnets",
    metadata,
    Column(
        "router_id", String(ID_CHARS), ForeignKey("routers.id", ondelete="CASCADE"), nullable=False
    ),
    Column("subnet_id", String(ID_CHARS), ForeignKey("subnets.id"), nullable=False),
    # Keeps Router.subnet_ids in the order the operator gave.
    Column("position", Integer, nullable=False),
    PrimaryKeyConstraint("router_id", "subnet_id"),
    Index(None, "subnet_id"),
)

keypairs = Table(
    "keypairs",
    metadata,
    Column("name", String(MAX_NAME_CHARS), primary_key=True),
    Column("type", String(16), nullable=False),
    Column("public_key", Text, nullable=False),
    Column("fingerprint", String(128), nullable=False),
)

servers = Table(
    "servers",
    metadata,
    Column("id", String(ID_CHARS), primary_key=True),
    Column("name", String(MAX_NAME_CHARS), nullable=False),
    Column("hostname", String(MAX_NAME_CHARS), nullable=False),
    Column("project_id", String(ID_CHARS), nullable=False),
    Column("user_id", String(ID_CHARS), nullable=False),
    Column("ec2_id", Integer, nullable=False),
    Column("availability_zone", String(MAX_NAME_CHARS), nullable=False),
    Column("flavor_name", String(MAX_NAME_CHARS), nullable=False),
    Column("root_gb", Integer, nullable=False, server_default="0"),
    Column("ephemeral_gb", Integer, nullable=False, server_default="0"),
    Column("swap_mb", Integer, nullable=False, server_default="0"),
    Column("image_id", String(ID_CHARS), nullable=False),
    Column("launch_index", Integer, nullable=False),
    Column("reservation_id", String(ID_CHARS), nullable=False),
    Column("key_name", String(MAX_NAME_CHARS), ForeignKey("keypairs.name"), nullable=True),
    Column("metadata", Text, nullable=False),  # JSON object of strings
    Column("user_data", LargeBinary, nullable=True),
    Column("files", Text, nullable=False),  # JSON list of {path, content (base64)}
    Column("config_drive", Boolean, nullable=False),
    Column("imds_tokens", String(16), nullable=False),
    Column("imds_endpoint", String(16), nullable=False),
    Column("imds_hop_limit", Integer, nullable=False, server_default="1"),
    Column("imds_tags", Boolean, nullable=False, server_default="0"),
    Column("created_at", String(40), nullable=False),
    UniqueConstraint("name"),
    UniqueConstraint("ec2_id"),
    Index(None, "key_name"),
)

ports = Table(
    "ports",
    metadata,
    Column("id", String(ID_CHARS), primary_key=True),
    Column("network_id", String(ID_CHARS), ForeignKey("networks.id"), nullable=False),
    Column("name", String(MAX_NAME_CHARS), nullable=False),
    Column("mac_address", String(MAC_CHARS), nullable=False),
    Column("floating_ip", String(ADDRESS_CHARS), nullable=True),
    Column("server_id", String(ID_CHARS), ForeignKey("servers.id"), nullable=True),
    Column("tag", String(MAX_NAME_CHARS), nullable=True),
    # Creation order, assigned by the store: a server's ports (its NICs) are
    # listed in this order, so the first port created is eth0.
    Column("seq", Integer, nullable=False),
    UniqueConstraint("mac_address"),
    Index(None, "network_id"),
    Index(None, "server_id"),
    Index(None, "floating_ip"),
)

port_fixed_ips = Table(
    "port_fixed_ips",
    metadata,
    Column("port_id", String(ID_CHARS), ForeignKey("ports.id", ondelete="CASCADE"), nullable=False),
    Column("position", Integer, nullable=False),
    # Copied from the port so that the database itself keeps one IP per network.
    Column("network_id", String(ID_CHARS), nullable=False),
    Column("subnet_id", String(ID_CHARS), ForeignKey("subnets.id"), nullable=False),
    Column("ip_address", String(ADDRESS_CHARS), nullable=False),
    PrimaryKeyConstraint("port_id", "position"),
    UniqueConstraint("network_id", "ip_address"),
    Index(None, "subnet_id"),
    Index(None, "ip_address"),
)

passwords = Table(
    "passwords",
    metadata,
    Column(
        "server_id",
        String(ID_CHARS),
        ForeignKey("servers.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("value", Text, nullable=False),
)

# What the guest reported at the end of boot (cloud-init phone_home): one row
# per server, written once per boot; the operator clears it (or deleting the
# server removes it) so the next boot can report again.
phone_homes = Table(
    "phone_homes",
    metadata,
    Column(
        "server_id",
        String(ID_CHARS),
        ForeignKey("servers.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("booted_at", String(40), nullable=False),
    Column("hostname", Text, nullable=False),
    Column("fqdn", Text, nullable=False),
    Column("pub_key_rsa", Text, nullable=False),
    Column("pub_key_ecdsa", Text, nullable=False),
    Column("pub_key_ed25519", Text, nullable=False),
)

# Keys that sign instance identity documents and tokens, newest signing; the
# one before it stays published so what it signed still verifies.
identity_keys = Table(
    "identity_keys",
    metadata,
    Column("kid", String(64), primary_key=True),
    Column("private_key_pem", Text, nullable=False),
    Column("certificate_pem", Text, nullable=False),
    Column("created_at", String(40), nullable=False),
)

# Guest attributes: what the guest itself wrote (GCE-style), per server,
# namespace and key; deleting the server deletes them.
guest_attributes = Table(
    "guest_attributes",
    metadata,
    Column("server_id", String(ID_CHARS), ForeignKey("servers.id", ondelete="CASCADE"),
           nullable=False),
    Column("namespace", String(64), nullable=False),
    Column("key", String(64), nullable=False),
    Column("value", Text, nullable=False),
    Column("updated_at", String(40), nullable=False),
    PrimaryKeyConstraint("server_id", "namespace", "key"),
)

# Each server's guest-write budget (a token bucket, limits.py): kept in the
# store so that every API worker on every host spends the same budget.
guest_attribute_budgets = Table(
    "guest_attribute_budgets",
    metadata,
    Column("server_id", String(ID_CHARS), ForeignKey("servers.id", ondelete="CASCADE"),
           primary_key=True),
    Column("tokens", Float, nullable=False),
    Column("refilled_at", Float, nullable=False),
)

# The access audit (issue #16): one row per sensitive read or guest write,
# appended in batches by API workers outside the inventory's revisions (it
# is a log, not inventory), pruned by count per server and by age. No
# foreign key: a batch must not fail because its server was just deleted.
access_audit = Table(
    "access_audit",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
           autoincrement=True),
    Column("server_id", String(ID_CHARS), nullable=False),
    Column("at", String(32), nullable=False),
    Column("document", String(255), nullable=False),
    Column("method", String(8), nullable=False),
    Column("status", Integer, nullable=False),
    Column("source", String(64), nullable=False),
    Column("tier", String(16), nullable=False),
    Column("host", String(255), nullable=False),
    Index("ix_access_audit_server_id", "server_id", "id"),
    Index("ix_access_audit_at", "at"),
)
