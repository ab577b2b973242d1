"""Hosts on one machine: a Linux network namespace per host, each with one veth link into a bridge that lives in a
namespace of its own, so every host reaches the others by address and nothing crosses over loopback or touches the
machine's own network. Needs root and iproute2 (`ip netns`, veth, bridge).

Faults act on the links, not on the processes:
- `link_down(host)` sets the bridge's end of the host's veth down: the host's packets stop, nobody is told (no RST,
  no FIN), every TCP connection to it is left half-open;
- `partition(a, b)` adds blackhole routes on both hosts, so a and b drop what they send each other while each keeps
  talking to everyone else.
(This kernel has no netem and no tc classifiers, so neither `tc ... netem loss 100%` nor a tc drop filter exists here.)
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import threading
import time
from typing import Any, Callable

PREFIX = "hmh-"  # every namespace of ours; a leftover one (a killed run) is removed before a new run starts
SWITCH = f"{PREFIX}net"  # the namespace holding the bridge
BRIDGE = "br0"
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done


def namespaces() -> list[str]:
    return [line.split()[0] for line in ip("netns", "list").stdout.splitlines() if line.strip()]


def kill_namespace(namespace: str) -> None:
    """SIGKILLs every process still in `namespace` (by pid, from `ip netns pids`), then deletes it."""
    for _ in range(50):
        pids = [int(pid) for pid in ip("netns", "pids", namespace, check=False).stdout.split()]
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)
    ip("netns", "delete", namespace, check=False)


def remove_leftovers() -> list[str]:
    """Deletes the namespaces (and their processes) of an earlier run that could not clean up."""
    left = [name for name in namespaces() if name.startswith(PREFIX)]
    for name in left:
        kill_namespace(name)
    return left


class Hosts:
    """Hosts by name (one letter: A, B, ...), each `<subnet>.<octet>/24` on one bridge."""

    def __init__(self, octets: dict[str, int], subnet: str = "10.77.0"):
        self.octets = octets
        self.subnet = subnet
        self.created: list[str] = []
        self.partitions: set[tuple[str, str]] = set()

    def namespace(self, host: str) -> str:
        return f"{PREFIX}{host}"

    def address(self, host: str) -> str:
        return f"{self.subnet}.{self.octets[host]}"

    def port_link(self, host: str) -> str:
        """The bridge's end of the host's veth (in the switch namespace)."""
        return f"v{host}"

    def create(self) -> None:
        remove_leftovers()
        self._add_namespace(SWITCH)
        ip("-n", SWITCH, "link", "add", BRIDGE, "type", "bridge")
        ip("-n", SWITCH, "link", "set", BRIDGE, "up")
        for host in self.octets:
            namespace = self.namespace(host)
            self._add_namespace(namespace)
            ip(
                "-n",
                SWITCH,
                "link",
                "add",
                self.port_link(host),
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                namespace,
            )
            ip("-n", SWITCH, "link", "set", self.port_link(host), "master", BRIDGE)
            ip("-n", SWITCH, "link", "set", self.port_link(host), "up")
            ip("-n", namespace, "addr", "add", f"{self.address(host)}/24", "dev", "eth0")
            ip("-n", namespace, "link", "set", "eth0", "up")

    def _add_namespace(self, namespace: str) -> None:
        ip("netns", "add", namespace)
        self.created.append(namespace)
        ip("-n", namespace, "link", "set", "lo", "up")

    def destroy(self) -> None:
        """Kills whatever still runs in the hosts and deletes every namespace; safe to call more than once."""
        for namespace in reversed(self.created):
            kill_namespace(namespace)
        self.created.clear()

    # Processes

    def argv(self, host: str, argv: list[str]) -> list[str]:
        """`argv` run on `host` (`ip netns exec` execs it: the pid is the program's own)."""
        return ["ip", "netns", "exec", self.namespace(host), *argv]

    def run(self, host: str, argv: list[str], timeout: float = 30, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run(self.argv(host, argv), capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise RuntimeError(f"{argv} on {host} failed ({done.returncode}): {done.stderr.strip()}")
        return done

    def enter(self, host: str) -> None:
        """Moves the calling thread (only it: setns is per thread) into the host's network namespace; the sockets
        it opens from now on are the host's."""
        fd = os.open(f"/run/netns/{self.namespace(host)}", os.O_RDONLY)
        try:
            if _libc.setns(fd, CLONE_NEWNET) != 0:
                error = ctypes.get_errno()
                raise OSError(error, f"setns into {host}: {os.strerror(error)}")
        finally:
            os.close(fd)

    def call(self, host: str, function: Callable[..., Any], *args: Any, timeout: float = 60) -> Any:
        """Runs `function(*args)` on `host`, in a thread of its own, and returns what it returns (or raises)."""
        outcome: dict[str, Any] = {}

        def body() -> None:
            try:
                self.enter(host)
                outcome["value"] = function(*args)
            except BaseException as error:  # handed to the caller
                outcome["error"] = error

        thread = threading.Thread(target=body, daemon=True)
        thread.start()
        thread.join(timeout)
        if thread.is_alive():
            raise TimeoutError(f"{function.__name__} on {host} still runs after {timeout} s")
        if "error" in outcome:
            raise outcome["error"]
        return outcome.get("value")

    # Faults

    def link_down(self, host: str) -> None:
        ip("-n", SWITCH, "link", "set", self.port_link(host), "down")

    def link_up(self, host: str) -> None:
        ip("-n", SWITCH, "link", "set", self.port_link(host), "up")

    def partition(self, a: str, b: str) -> None:
        """a and b can no longer reach each other; both still reach every other host."""
        ip("-n", self.namespace(a), "route", "add", "blackhole", f"{self.address(b)}/32")
        ip("-n", self.namespace(b), "route", "add", "blackhole", f"{self.address(a)}/32")
        self.partitions.add((a, b))

    def heal(self, a: str, b: str) -> None:
        ip("-n", self.namespace(a), "route", "del", "blackhole", f"{self.address(b)}/32", check=False)
        ip("-n", self.namespace(b), "route", "del", "blackhole", f"{self.address(a)}/32", check=False)
        self.partitions.discard((a, b))
