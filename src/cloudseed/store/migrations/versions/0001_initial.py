"""The initial schema: inventory tables, the revision row and the change feed.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ID = sa.String(64)
NAME = sa.String(255)
ADDRESS = sa.String(64)


def upgrade() -> None:
    op.create_table(
        "meta",
        sa.Column("id", sa.Integer, autoincrement=False, nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_meta"),
    )
    op.execute("INSERT INTO meta (id, revision) VALUES (1, 0)")
    op.create_table(
        "changes",
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("entity_id", NAME, nullable=False),
        sa.Column("op", sa.String(8), nullable=False),
        sa.PrimaryKeyConstraint("revision", "kind", "entity_id", name="pk_changes"),
    )
    op.create_table(
        "networks",
        sa.Column("id", ID, nullable=False),
        sa.Column("name", NAME, nullable=False),
        sa.Column("mtu", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_networks"),
        sa.UniqueConstraint("name", name="uq_networks_name"),
    )
    op.create_table(
        "subnets",
        sa.Column("id", ID, nullable=False),
        sa.Column("network_id", ID, nullable=False),
        sa.Column("name", NAME, nullable=False),
        sa.Column("cidr", ADDRESS, nullable=False),
        sa.Column("ip_version", sa.Integer, nullable=False),
        sa.Column("gateway_ip", ADDRESS, nullable=True),
        sa.Column("dns_nameservers", sa.Text, nullable=False),
        sa.Column("host_routes", sa.Text, nullable=False),
        sa.Column("enable_dhcp", sa.Boolean, nullable=False),
        sa.Column("ipv6_address_mode", sa.String(32), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_subnets"),
        sa.ForeignKeyConstraint(["network_id"], ["networks.id"], name="fk_subnets_network_id"),
    )
    op.create_index("ix_subnets_network_id", "subnets", ["network_id"])
    op.create_table(
        "routers",
        sa.Column("id", ID, nullable=False),
        sa.Column("name", NAME, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_routers"),
        sa.UniqueConstraint("name", name="uq_routers_name"),
    )
    op.create_table(
        "router_subnets",
        sa.Column("router_id", ID, nullable=False),
        sa.Column("subnet_id", ID, nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("router_id", "subnet_id", name="pk_router_subnets"),
        sa.ForeignKeyConstraint(
            ["router_id"], ["routers.id"], name="fk_router_subnets_router_id", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["subnet_id"], ["subnets.id"], name="fk_router_subnets_subnet_id"),
    )
    op.create_index("ix_router_subnets_subnet_id", "router_subnets", ["subnet_id"])
    op.create_table(
        "keypairs",
        sa.Column("name", NAME, nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("public_key", sa.Text, nullable=False),
        sa.Column("fingerprint", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_keypairs"),
    )
    op.create_table(
        "servers",
        sa.Column("id", ID, nullable=False),
        sa.Column("name", NAME, nullable=False),
        sa.Column("hostname", NAME, nullable=False),
        sa.Column("project_id", ID, nullable=False),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("ec2_id", sa.Integer, nullable=False),
        sa.Column("availability_zone", NAME, nullable=False),
        sa.Column("flavor_name", NAME, nullable=False),
        sa.Column("image_id", ID, nullable=False),
        sa.Column("launch_index", sa.Integer, nullable=False),
        sa.Column("reservation_id", ID, nullable=False),
        sa.Column("key_name", NAME, nullable=True),
        sa.Column("metadata", sa.Text, nullable=False),
        sa.Column("user_data", sa.LargeBinary, nullable=True),
        sa.Column("files", sa.Text, nullable=False),
        sa.Column("config_drive", sa.Boolean, nullable=False),
        sa.Column("imds_tokens", sa.String(16), nullable=False),
        sa.Column("imds_endpoint", sa.String(16), nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_servers"),
        sa.UniqueConstraint("name", name="uq_servers_name"),
        sa.UniqueConstraint("ec2_id", name="uq_servers_ec2_id"),
        sa.ForeignKeyConstraint(["key_name"], ["keypairs.name"], name="fk_servers_key_name"),
    )
    op.create_index("ix_servers_key_name", "servers", ["key_name"])
    op.create_table(
        "ports",
        sa.Column("id", ID, nullable=False),
        sa.Column("network_id", ID, nullable=False),
        sa.Column("name", NAME, nullable=False),
        sa.Column("mac_address", sa.String(64), nullable=False),
        sa.Column("floating_ip", ADDRESS, nullable=True),
        sa.Column("server_id", ID, nullable=True),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_ports"),
        sa.UniqueConstraint("mac_address", name="uq_ports_mac_address"),
        sa.ForeignKeyConstraint(["network_id"], ["networks.id"], name="fk_ports_network_id"),
        sa.ForeignKeyConstraint(["server_id"], ["servers.id"], name="fk_ports_server_id"),
    )
    op.create_index("ix_ports_network_id", "ports", ["network_id"])
    op.create_index("ix_ports_server_id", "ports", ["server_id"])
    op.create_index("ix_ports_floating_ip", "ports", ["floating_ip"])
    op.create_table(
        "port_fixed_ips",
        sa.Column("port_id", ID, nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("network_id", ID, nullable=False),
        sa.Column("subnet_id", ID, nullable=False),
        sa.Column("ip_address", ADDRESS, nullable=False),
        sa.PrimaryKeyConstraint("port_id", "position", name="pk_port_fixed_ips"),
        sa.UniqueConstraint(
            "network_id", "ip_address", name="uq_port_fixed_ips_network_id_ip_address"
        ),
        sa.ForeignKeyConstraint(
            ["port_id"], ["ports.id"], name="fk_port_fixed_ips_port_id", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["subnet_id"], ["subnets.id"], name="fk_port_fixed_ips_subnet_id"),
    )
    op.create_index("ix_port_fixed_ips_subnet_id", "port_fixed_ips", ["subnet_id"])
    op.create_index("ix_port_fixed_ips_ip_address", "port_fixed_ips", ["ip_address"])
    op.create_table(
        "passwords",
        sa.Column("server_id", ID, nullable=False),
        sa.Column("value", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("server_id", name="pk_passwords"),
        sa.ForeignKeyConstraint(
            ["server_id"], ["servers.id"], name="fk_passwords_server_id", ondelete="CASCADE"
        ),
    )


def downgrade() -> None:
    for table in (
        "passwords",
        "port_fixed_ips",
        "ports",
        "servers",
        "keypairs",
        "router_subnets",
        "routers",
        "subnets",
        "networks",
        "changes",
        "meta",
    ):
        op.drop_table(table)
