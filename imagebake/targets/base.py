"""What every target does with a cluster: the one interface tasks.py and the benchmarks call.

Each command is a check-then-act pair (Flintrock's `*_check()` shape): `check_X`
validates the input and refuses with one ImagebakeError line, creating nothing;
`X` calls it and then acts. A target package (targets/<name>/cluster.py) subclasses
Target and implements the `_X` halves; the public methods are the same for all.

A cluster is a record (imagebake.state): a dict with at least name, target and nodes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, BinaryIO

from .. import state
from ..agent_client import AgentClient
from ..errors import ImagebakeError


@dataclass
class Member:
    """One slave of a cluster as shrink sees it."""

    label: str             # what --node takes: the node's name in the record (node03)
    hostname: str | None   # the name in the cluster (agent, Disco, DNS); None: never joined
    entry: state.Node | None = None  # the record's entry for it


class Target:
    """One place clusters run (docker, aws, qemu)."""

    name = ""
    # launch flags this target takes besides name, slaves, workers_per_node and wait
    launch_options: tuple[str, ...] = ()
    default_slaves = 4

    def __init__(self, agent: AgentClient | None = None) -> None:
        # the signed client to the master agent (tests hand in a subclass)
        self.agent = agent or AgentClient()

    # ---------------------------------------------------------------- launch
    def check_launch(self, name: str, slaves: Any = None, workers_per_node: Any = None,
                     **options: Any) -> Any:
        """The launch plan, or one line saying which input is wrong; creates nothing."""
        given = sorted(k for k, v in options.items() if v not in (None, False)
                       and k not in self.launch_options)
        if given:
            raise ImagebakeError(f"--{given[0].replace('_', '-')} does not apply to --target "
                                 f"{self.name}")
        return self._check_launch(state.check_name(name), slaves, workers_per_node,
                                  {k: v for k, v in options.items() if k in self.launch_options})

    def launch(self, name: str = "imagebake", slaves: Any = None, workers_per_node: Any = None,
               wait: bool = True, **options: Any) -> dict:
        """Start one master and SLAVES nodes; returns the saved record."""
        return self._launch(self.check_launch(name, slaves, workers_per_node, **options), wait)

    def dry_run(self, name: str = "imagebake", slaves: Any = None,
                workers_per_node: Any = None, wait: bool = True,
                **options: Any) -> tuple[str, bool]:
        """`launch --dry-run`: what launch would do, creating nothing; (text, ok). The AWS
        target also asks AWS (DryRun=True) which permissions are missing (ok False)."""
        return self._dry_run(self.check_launch(name, slaves, workers_per_node, **options))

    def _dry_run(self, plan: Any) -> tuple[str, bool]:
        """The plan check_launch made: names, and images and addresses where it has them."""
        from .local_status import node_hostname

        count = getattr(plan, "count", 0)
        names = ", ".join(node_hostname(i) for i in range(1, count + 1))
        lines = [f"dry run: would launch {getattr(plan, 'name', '?')} on {self.name}: master "
                 f"and {count} slave(s) ({names})"]
        for field in ("images", "addresses", "network", "subnet"):
            value = getattr(plan, field, None)
            if value:
                lines.append(f"  {field}: {value}")
        lines.append("  nothing created")
        return "\n".join(lines), True

    # ---------------------------------------------------------------- grow
    def check_grow(self, record: dict, slaves: Any = None) -> int:
        """How many slaves to add, or one line saying why not."""
        return self._check_grow(record, slaves)

    def grow(self, record: dict, slaves: Any = None) -> dict:
        """Add slaves without restarting the master; returns the saved record."""
        return self._grow(record, self.check_grow(record, slaves))

    # ---------------------------------------------------------------- destroy
    def check_destroy(self, name: str) -> str:
        return state.check_name(name)

    def destroy(self, name: str, record: dict | None = None) -> str:
        """Remove everything the cluster's launch created; safe to repeat."""
        return self._destroy(self.check_destroy(name), record)

    # ---------------------------------------------------------------- access
    def check_node(self, record: dict, node: str | None) -> str:
        """The host to reach: NODE (default: the master), or a one-line error."""
        host = node or "master"
        names = state.node_names(record)
        if host != "master" and host not in names:
            raise ImagebakeError(f"no node {host!r} in cluster {record['name']!r} "
                                 f"(nodes: {', '.join(names)})")
        return host

    def ssh_argv(self, record: dict, node: str | None = None,
                 command: list[str] | None = None) -> list[str]:
        """argv of an interactive login (or COMMAND) on the master or a node."""
        return self._ssh_argv(record, self.check_node(record, node), list(command or []))

    def login_argv(self, record: dict, node: str | None = None,
                   line: str | None = None) -> list[str]:
        """`invoke ssh`: an interactive login, or the shell LINE exactly as the user wrote
        it (never split and re-joined: a quoted `a;id;b` stays one word)."""
        from .fleet import shell_words

        return self.ssh_argv(record, node, shell_words(line) if line else None)

    def batch_argv(self, record: dict, node: str | None, command: list[str]) -> list[str]:
        """argv running COMMAND on NODE with no terminal, fed from the caller's stdin:
        ssh_argv without the `-t` an interactive login asks for (docker exec, ssh)."""
        argv = self.ssh_argv(record, node, command)
        return [a for a in argv[:-1] if a != "-t"] + argv[-1:]

    def check_run(self, record: dict, on: str | None, command: str | None) -> list[str]:
        """The members --on chooses for COMMAND, or one line saying why not."""
        from . import fleet

        fleet.check_command(command)
        return fleet.select(self, record, on)

    def run(self, record: dict, on: str | None, command: str, timeout: Any = None) -> Any:
        """COMMAND on every chosen member at once, lines prefixed by name (fleet.Outcome)."""
        from . import fleet

        return fleet.run(self, record, self.check_run(record, on, command), command, timeout)

    def check_copy(self, record: dict, on: str | None, src: str | None,
                   dest: str | None) -> list[str]:
        """The members --on chooses for copying SRC to DEST, or one line saying why not."""
        from . import fleet

        fleet.check_source(src)
        fleet.check_dest(dest)
        return fleet.select(self, record, on)

    def copy(self, record: dict, on: str | None, src: str, dest: str,
             timeout: Any = None) -> Any:
        """The file SRC to DEST on every chosen member at once (fleet.Outcome)."""
        from . import fleet

        return fleet.copy(self, record, self.check_copy(record, on, src, dest), src, dest,
                          timeout)

    def exec(self, record: dict, command: str, user: str = "root",
             stdin: BinaryIO | None = None) -> tuple[int, str]:
        """Run a shell command on the master as USER, fed from STDIN; (exit code, output)."""
        import subprocess

        proc = subprocess.run(self.exec_argv(record, command, user),
                              stdin=subprocess.DEVNULL if stdin is None else stdin,
                              capture_output=True, timeout=3600)
        return proc.returncode, (proc.stdout + proc.stderr).decode("utf-8", "replace")

    def exec_argv(self, record: dict, command: str, user: str = "root") -> list[str]:
        """argv running the shell COMMAND on the master as USER, no terminal, its stdin and
        stdout the caller's pipes (for streaming: `invoke ddfs-load`, `invoke job`)."""
        raise ImagebakeError(f"running commands is not available for the {self.name} target")

    def authorize_ip(self, record: dict, cidr: str | None = None,
                     allow_world: bool = False) -> str:
        """Let CIDR (default: the caller's address) reach the cluster instead of the range
        allowed now (AWS: the security group); one line where a target has no such rule."""
        raise ImagebakeError(f"authorize-ip does not apply to the {self.name} target: its "
                             "cluster has no security group (only --target aws has one)")

    # ---------------------------------------------------------------- lifetime
    def agent_endpoint(self, record: dict) -> tuple[str, int] | None:
        """(address, port) where this machine reaches the master agent's join port, or
        None while the master is not running (self.agent signs what is sent there)."""
        return None

    # ---------------------------------------------------------------- images
    def image_kind(self) -> Any:
        """What this target's images are to the bake (bake.build.ImageKind)."""
        raise ImagebakeError(f"bake does not apply to the {self.name} target")

    def bake(self, only: str | None = None, variables: dict[str, str] | None = None,
             force: bool = False, on_event: Any = None) -> dict:
        """Bake this target's master and node images (skipped when unchanged)."""
        from ..bake import build

        return build.bake(self.image_kind(), only=only, variables=variables, force=force,
                          on_event=on_event)

    def build_base_image(self) -> str:
        """`invoke base-image`: the local image bakes start from (never pulled)."""
        raise ImagebakeError(f"base-image does not apply to the {self.name} target: its "
                             "bakes start from an image it finds itself")

    def list_images(self, region: str | None = None, profile: str | None = None) -> list[dict]:
        """The images baked for this target, newest first per role."""
        raise ImagebakeError(f"listing images is not available for the {self.name} target")

    def prune_images(self, keep: int, dry_run: bool = False, region: str | None = None,
                     profile: str | None = None, only_ids: set[str] | None = None
                     ) -> tuple[list[dict], list[dict]]:
        """Remove all but the newest KEEP images per role (or exactly ONLY_IDS), never one
        a cluster uses; (removed or planned, kept because in use)."""
        raise ImagebakeError(f"pruning images is not available for the {self.name} target")

    def verify_images(self, ami: str | None = None, host: str | None = None) -> int:
        """`invoke verify`: the testinfra suite (tests/images/) on this target's baked
        images; the exit code (0: every check passed)."""
        raise ImagebakeError(f"verify is not available for the {self.name} target yet "
                             "(docker and aws have it)")

    # ---------------------------------------------------------------- members
    def members(self, record: dict, status_reply: dict | None = None) -> list[Member]:
        """The record's slaves with their names in the cluster (STATUS_REPLY: the master
        agent's signed status, for targets whose record does not know the names)."""
        return [Member(n["name"], n["name"], n) for n in record.get("nodes", [])]

    def remove_members(self, record: dict, chosen: list[Member]) -> str:
        """Stop and remove the machines of CHOSEN (they already left the cluster); one
        phrase saying what was done."""
        raise ImagebakeError(f"removing nodes is not available for the {self.name} target")

    def forget_members(self, record: dict, chosen: list[Member]) -> None:
        """Drop CHOSEN from the record and save it."""
        gone = {m.label for m in chosen}
        record["nodes"] = [n for n in record["nodes"] if n["name"] not in gone]
        state.save(record)

    def search_refusal(self) -> str | None:
        """'' when this target cannot find a cluster without its local record; None when
        it can search (by its cloud's tags); else why it cannot search now."""
        return ""

    # ---------------------------------------------------------------- the rest
    def status(self, record: dict) -> dict:
        """Every node's state, whether it joined, and readiness (see report.render_status)."""
        raise NotImplementedError

    def tunnel(self, record: dict) -> str:
        """The Disco web UI's address (opened first where needed)."""
        raise NotImplementedError

    def summary(self, record: dict) -> str:
        """A few lines about a launched or grown cluster."""
        raise NotImplementedError

    # ---------------------------------------------------------------- the targets' halves
    def _check_launch(self, name: str, slaves: Any, workers_per_node: Any,
                      options: dict[str, Any]) -> Any:
        raise NotImplementedError

    def _launch(self, plan: Any, wait: bool) -> dict:
        raise NotImplementedError

    def _check_grow(self, record: dict, slaves: Any) -> int:
        raise NotImplementedError

    def _grow(self, record: dict, count: int) -> dict:
        raise NotImplementedError

    def _destroy(self, name: str, record: dict | None) -> str:
        raise NotImplementedError

    def _ssh_argv(self, record: dict, host: str, command: list[str]) -> list[str]:
        raise NotImplementedError
