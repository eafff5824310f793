"""Make the host match the plan: observe, diff, apply, then check it converged.

``observe`` reads the kernel (namespaces, links, addresses, nft tables) and
the state directory (files, firewall records, supervised processes).
``diff`` is pure: it turns (desired, observed) into an ordered list of
``Action`` values, each naming its subject and what it will do, so ``sync``
can print them, ``status`` can show them without doing them, and a second
``sync`` that finds nothing to do says so. ``sync`` applies the actions, then
observes again and fails if anything is still off, as Neutron's
``iptables_manager`` re-reads the tables after an apply.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cloudseed.dataplane import firewall, netns, supervise
from cloudseed.dataplane.desired import (
    OUTER_LINK_PREFIXES,
    DesiredState,
    FirewallTable,
    Leg,
    Names,
    ProcessSpec,
)
from cloudseed.dataplane.netlink import LinkState
from cloudseed.dataplane.observe import (
    Context,
    Observed,
    TableRecord,
    load_inventory,
    observe,
    records_dir,
)
from cloudseed.dataplane.runner import Runner
from cloudseed.errors import CloudseedError

__all__ = [
    "Action", "Context", "NotConverged", "Observed", "TableRecord", "apply", "diff",
    "load_inventory", "observe", "sync", "teardown",
]

ROOT_MARKER = "root-netns-created"
INNER_LINK_PREFIXES = ("qr-", "ns-")


class NotConverged(CloudseedError):
    pass


@dataclass(frozen=True, slots=True)
class Action:
    subject: str  # "bridge csb-…", "namespace …", "process proxy-router-…"
    description: str
    apply: Callable[[Runner], None] = field(compare=False, repr=False)


def _call(fn: Callable[..., None], *args: Any) -> Callable[[Runner], None]:
    """An action body: ``fn(runner, *args)``, with the arguments bound now."""
    return lambda runner: fn(runner, *args)


def _plain(fn: Callable[..., None], *args: Any) -> Callable[[Runner], None]:
    """An action body that needs no runner (files in the state directory).

    It runs after the kernel changes queued before it are made: a file (the
    front's listeners, dnsmasq's hosts) may name links and addresses.
    """
    def body(runner: Runner) -> None:
        runner.flush()
        fn(*args)

    return body


# -- the diff (pure) ------------------------------------------------------------


def diff(desired: DesiredState, observed: Observed, context: Context) -> list[Action]:
    names = Names(context.root_netns)
    actions: list[Action] = []
    actions += _diff_stale_processes(desired, observed, context)
    actions += _diff_root(observed, context)
    desired_ns = {n.name for n in desired.namespaces}
    for name in sorted(n for n in observed.namespaces if names.is_ours(n) and n not in desired_ns):
        actions.append(Action(f"namespace {name}", "delete stale namespace",
                              _call(netns.delete_namespace, name)))
    actions += _diff_bridges(desired, observed, context)
    for namespace in desired.namespaces:
        if namespace.name not in observed.namespaces:
            actions.append(Action(f"namespace {namespace.name}", "create",
                                  _call(netns.ensure_namespace, namespace.name)))
        elif not _link_up(observed.ns_links.get(namespace.name, {}), "lo"):
            actions.append(Action(f"namespace {namespace.name}", "set lo up",
                                  _call(netns.set_loopback_up, namespace.name)))
    actions += _diff_legs(desired, observed, context)
    actions += _diff_tables(desired, observed, context)
    actions += _diff_files(desired, observed)
    actions += _diff_processes(desired, observed, context)
    return actions


def _link_up(links: dict[str, LinkState], name: str) -> bool:
    link = links.get(name)
    return link is not None and link.is_up


def _diff_root(observed: Observed, context: Context) -> list[Action]:
    root = context.root_netns
    if not root or observed.root_exists:
        return []

    def create(runner: Runner) -> None:
        netns.ensure_namespace(runner, root)
        Path(context.state_dir).mkdir(parents=True, exist_ok=True)
        (Path(context.state_dir) / ROOT_MARKER).write_text(root + "\n")

    return [Action(f"namespace {root}", "create the parent namespace", create)]


def _diff_bridges(desired: DesiredState, observed: Observed, context: Context) -> list[Action]:
    root = context.root_netns
    actions: list[Action] = []
    wanted = {b.name for b in desired.bridges}
    wanted_outer = wanted | {leg.outer for leg in desired.legs}
    for name, link in sorted(observed.root_links.items()):
        stale_bridge = name.startswith(OUTER_LINK_PREFIXES[0]) and name not in wanted
        stale_leg = name.startswith(OUTER_LINK_PREFIXES[1:3]) and name not in wanted_outer
        if stale_bridge or stale_leg:
            kind = "bridge" if stale_bridge else "link"
            actions.append(Action(f"{kind} {name}", f"delete stale {link.kind or kind}",
                                  _call(netns.delete_link, root, name)))
    for bridge in desired.bridges:
        current = observed.root_links.get(bridge.name)
        if current is None:
            actions.append(Action(f"bridge {bridge.name}", f"create for network "
                                  f"{bridge.network_id}",
                                  _call(netns.add_bridge, root, bridge)))
        elif not current.is_up:
            actions.append(Action(f"bridge {bridge.name}", "set up",
                                  _call(netns.set_link_up, root, bridge.name)))
    return actions


def _diff_legs(desired: DesiredState, observed: Observed, context: Context) -> list[Action]:
    root = context.root_netns
    actions: list[Action] = []
    wanted_inner: dict[str, set[str]] = {}
    for leg in desired.legs:
        wanted_inner.setdefault(leg.namespace, set()).add(leg.inner)
        subject = f"leg {leg.namespace}/{leg.inner}"
        outer = observed.root_links.get(leg.outer)
        inner = observed.ns_links.get(leg.namespace, {}).get(leg.inner)
        if outer is None or inner is None:
            actions.append(Action(subject, f"create veth {leg.outer} <-> {leg.inner} on "
                                  f"{leg.bridge} ({', '.join(leg.addresses) or 'no address'})",
                                  _call(_recreate_leg, root, leg, outer is not None)))
            continue
        if outer.master != leg.bridge or not outer.is_up:
            actions.append(Action(subject, f"attach {leg.outer} to {leg.bridge}",
                                  _call(netns.attach, root, leg.outer, leg.bridge)))
        if inner.mac != leg.mac:
            actions.append(Action(subject, f"set MAC {leg.mac}",
                                  _call(netns.set_mac, leg.namespace, leg.inner, leg.mac)))
        if not inner.is_up:
            actions.append(Action(subject, "set up",
                                  _call(netns.set_link_up, leg.namespace, leg.inner)))
        for address in leg.addresses:
            if address not in inner.addresses:
                actions.append(Action(subject, f"add address {address}",
                                      _call(netns.add_address, leg.namespace, leg.inner, address)))
        for address in sorted(inner.addresses - set(leg.addresses)):
            actions.append(Action(subject, f"delete address {address}",
                                  _call(netns.delete_address, leg.namespace, leg.inner, address)))
    for namespace in desired.namespaces:
        for name in sorted(observed.ns_links.get(namespace.name, {})):
            if name.startswith(INNER_LINK_PREFIXES) and name not in wanted_inner.get(
                    namespace.name, set()):
                actions.append(Action(f"leg {namespace.name}/{name}", "delete stale leg",
                                      _call(netns.delete_link, namespace.name, name)))
    return actions


def _recreate_leg(runner: Runner, root: str, leg: Leg, remove_outer: bool) -> None:
    if remove_outer:
        netns.delete_link(runner, root, leg.outer)
    netns.add_leg(runner, root, leg)


def _diff_tables(desired: DesiredState, observed: Observed, context: Context) -> list[Action]:
    actions: list[Action] = []
    for table in desired.tables:
        record = observed.table_records.get(table.namespace)
        current = observed.tables.get(table.namespace)
        if record is not None and record.script == table.script and current == record.listing:
            continue
        reason = ("create" if current is None else
                  "replace (rules changed or damaged)")
        actions.append(Action(f"firewall {table.namespace}",
                              f"{reason} table {firewall.TABLE_FAMILY} {firewall.TABLE_NAME}",
                              _call(_apply_table, table, context.state_dir, current is None)))
    wanted = {t.namespace for t in desired.tables}
    for namespace in sorted(set(observed.table_records) - wanted):
        path = records_dir(context.state_dir) / f"{namespace}.json"
        actions.append(Action(f"firewall {namespace}", "forget stale record",
                              _plain(_delete_file, str(path))))
    return actions


def _apply_table(runner: Runner, table: FirewallTable, state_dir: str, absent: bool) -> None:
    def record(listing: str) -> None:
        directory = records_dir(state_dir)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"{table.namespace}.json").write_text(
            json.dumps({"script": table.script, "listing": listing}))

    firewall.apply_table(runner, table.namespace, table.script, record, absent=absent)


def _diff_files(desired: DesiredState, observed: Observed) -> list[Action]:
    actions: list[Action] = []
    wanted = {f.path: f.content for f in desired.files}
    for path, content in wanted.items():
        if observed.files.get(path) != content:
            actions.append(Action(f"file {path}", "write",
                                  _plain(_write_file, path, content)))
    for path in sorted(set(observed.files) - set(wanted)):
        if observed.files[path] is not None:
            actions.append(Action(f"file {path}", "delete stale file",
                                  _plain(_delete_file, path)))
    return actions


def _write_file(path: str, content: str) -> None:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.parent.chmod(0o755)  # dnsmasq re-reads as its unprivileged user on SIGHUP
    scratch = target.with_suffix(target.suffix + ".tmp")
    scratch.write_text(content)
    scratch.chmod(0o644)
    scratch.replace(target)


def _delete_file(path: str) -> None:
    target = Path(path)
    target.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        target.parent.rmdir()


def _diff_stale_processes(
    desired: DesiredState, observed: Observed, context: Context
) -> list[Action]:
    wanted = {p.name: p for p in desired.processes}
    actions: list[Action] = []
    for name, state in sorted(observed.processes.items()):
        spec = wanted.get(name)
        gone = _namespace_gone(state, observed)
        if spec is not None and not gone and _unchanged(state, spec):
            continue
        if spec is not None and not gone and _can_replace(state, spec):
            continue  # swapped in place below, with no gap
        why = ("stop stale process" if spec is None
               else "stop: its namespace was deleted" if gone
               else "stop (command line changed)")
        actions.append(Action(f"process {name}", why,
                              _call(supervise.stop, state, context.stop_grace_seconds)))
    return actions


def _namespace_gone(state: supervise.ProcessState, observed: Observed) -> bool:
    """A running process whose namespace no longer has its name: deleted behind our
    back, it lives on only through that process, serving nobody, and the namespace
    made again under its name needs a process of its own."""
    return (state.is_running and bool(state.namespace)
            and state.namespace not in observed.namespaces)


def _unchanged(state: supervise.ProcessState, spec: ProcessSpec) -> bool:
    """Whether the running supervisor runs what ``spec`` asks, the way it asks."""
    return (state.argv == spec.argv and state.namespace == spec.namespace
            and state.keep_sockets == spec.keep_sockets)


def _can_replace(state: supervise.ProcessState, spec: ProcessSpec) -> bool:
    return supervise.can_replace(state, spec.namespace, spec.sockets, spec.keep_sockets)


def _diff_processes(desired: DesiredState, observed: Observed, context: Context) -> list[Action]:
    actions: list[Action] = []
    for spec in desired.processes:
        state = observed.processes.get(spec.name)
        gone = state is not None and _namespace_gone(state, observed)
        fresh = state is None or gone or not _unchanged(state, spec)
        if (state is not None and not gone and state.argv != spec.argv
                and _can_replace(state, spec)):
            actions.append(Action(f"process {spec.name}",
                                  f"replace on its open sockets: {' '.join(spec.argv[:6])} …",
                                  _call(supervise.replace, state, spec.argv)))
            continue
        if fresh or state is None or not state.is_running:
            actions.append(Action(f"process {spec.name}",
                                  f"start in {spec.namespace}: {' '.join(spec.argv[:6])} …",
                                  _call(_start, spec, context)))
            continue
        if any(observed.files.get(p) != _desired_content(desired, p)
               for p in spec.restart_files):
            actions.append(Action(f"process {spec.name}", "restart: its config changed",
                                  _call(_restart, state, spec, context)))
            continue
        changed = [p for p in spec.reload_files
                   if observed.files.get(p) != _desired_content(desired, p)]
        if changed:
            actions.append(Action(f"process {spec.name}", "reload (SIGHUP): files changed",
                                  _call(supervise.reload, state)))
    return actions


def _desired_content(desired: DesiredState, path: str) -> str | None:
    return next((f.content for f in desired.files if f.path == path), None)


def _restart(
    runner: Runner, state: supervise.ProcessState, spec: ProcessSpec, context: Context
) -> None:
    if _can_replace(state, spec):
        supervise.replace(runner, state, spec.argv)  # new one up before the old one stops
        return
    supervise.stop(runner, state, context.stop_grace_seconds)
    _start(runner, spec, context)


def _start(runner: Runner, spec: ProcessSpec, context: Context) -> None:
    supervise.start(runner, context.state_dir, spec.name, spec.namespace, spec.argv,
                    grace_seconds=context.stop_grace_seconds, sockets=spec.sockets,
                    keep_sockets=spec.keep_sockets)


# -- sync, status, teardown -------------------------------------------------------


def apply(runner: Runner, actions: Iterable[Action]) -> None:
    """Apply in order; kernel changes are batched (``Runner.batch``): a few ``ip`` starts."""
    with runner.batch():
        for action in actions:
            action.apply(runner)


def sync(runner: Runner, desired: DesiredState, context: Context) -> list[Action]:
    """Apply what differs; return what was done. Raise NotConverged if it did not stick."""
    Path(context.state_dir).mkdir(parents=True, exist_ok=True)
    actions = diff(desired, observe(runner, desired, context), context)
    apply(runner, actions)
    if actions:
        left = diff(desired, observe(runner, desired, context), context)
        if left:
            raise NotConverged("sync did not converge; still to do: " + "; ".join(
                f"{a.subject}: {a.description}" for a in left))
    return actions


def teardown(runner: Runner, context: Context) -> list[str]:
    """Remove everything the data plane made (and every plugged guest). Returns what went."""
    from cloudseed.dataplane import plug

    done: list[str] = []
    names = Names(context.root_netns)
    for state in supervise.observe(context.state_dir).values():
        supervise.stop(runner, state, context.stop_grace_seconds)
        done.append(f"process {state.name}")
    done += plug.unplug_all(runner, context)
    root = context.root_netns
    marker = Path(context.state_dir) / ROOT_MARKER
    present = runner.namespaces()
    root_goes = bool(root) and marker.exists() and root in present
    with runner.batch():
        for name in sorted(n for n in present if names.is_ours(n)):
            netns.delete_namespace(runner, name)
            done.append(f"namespace {name}")
        if not root or root in present:
            for name in netns.observe_links(runner, root):
                if name.startswith(OUTER_LINK_PREFIXES):
                    # Deleting the namespace removes its links in one kernel batch;
                    # one by one, each bridge costs the kernel ~40 ms.
                    if not root_goes:
                        netns.delete_link(runner, root, name)
                    done.append(f"link {name}")
        if root_goes:
            netns.delete_namespace(runner, root)
            done.append(f"namespace {root}")
    if Path(context.state_dir).exists():
        shutil.rmtree(context.state_dir, ignore_errors=True)
        done.append(f"directory {context.state_dir}")
    return done
