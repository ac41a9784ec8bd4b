"""`invoke mutants`: break each claim the README makes, in a copy of the repository, and
check that the tests which defend it fail (the mutant is *killed*).

Each mutant is one named source edit (an exact text found once, and what replaces it)
plus the few test files that should catch it. The repository is copied once into a
temporary directory (without .git, .venv and build/); each mutant is applied there,
its tests run with that copy first on sys.path, and the file is restored. A mutant
whose tests still pass *survived*: a claim nobody checks. Unmutated, every selected
test must pass first (else a kill would mean nothing).

    python -m imagebake.dev.mutants [--committed] [NAME ...]
    invoke mutants [--only NAME,...] [--committed]
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
IGNORE = shutil.ignore_patterns(".git", ".venv", "build", "__pycache__", ".pytest_cache",
                                ".ruff_cache", "*.egg-info")

# A check that skips the MAC and everything else: parse the body and trust it.
TRUST = '(lambda *_: __import__("json").loads({body})["msg"])('

# The master's one signed-request wrapper, and a mutant of it that trusts one route.
OPEN_SIGNED = "msg = open_envelope(key, body, self.spec[\"cluster\"], self.ctx.now(), route.type,"


def trust_only(route_type: str) -> str:
    return (f"msg = ({TRUST.format(body='body')[:-1]} if route.type == {route_type!r} "
            "else open_envelope)(key, body, self.spec[\"cluster\"], self.ctx.now(), route.type,")


UNIT_BAKE = ("tests/unit/bake/test_build_skip.py", "tests/unit/bake/test_build.py")
AWS_BAKE = ("tests/aws/test_bake_existing.py",)
HASHING = ("tests/unit/bake/test_hashing.py", "tests/unit/bake/test_build_skip.py")
CLEANUP = ("tests/cluster/test_cleanup_script.py",)
AGENT = ("tests/unit/agent/test_protocol.py", "tests/unit/agent/test_master.py",
         "tests/unit/agent/test_node.py")
AGENT_MASTER = "tests/unit/agent/test_master.py::"
STOP_ORDER = ("tests/unit/agent/test_loop.py::"
              "test_forged_or_unsigned_stop_order_and_deadline_are_refused",)
READINESS = ("tests/aws/test_aws_readiness.py",)
LAUNCHER_KEY = (AGENT_MASTER + "test_a_nodes_token_orders_nothing_cluster_wide",)
LAUNCH = ("tests/aws/test_aws_launch.py",)
DESTROY = ("tests/aws/test_aws_destroy.py", "tests/aws/test_aws_launch.py::"
           "test_destroy_removes_everything_and_twice_is_safe")
DOCKER_DESTROY = ("tests/cluster/test_local_destroy.py",)
DDFS_LOAD = ("tests/unit/disco/test_ddfs_load.py",)
LAUNCHER_INPUTS = ("tests/unit/test_launcher_inputs.py",)
TERMINAL = ("tests/unit/test_terminal.py", "tests/unit/test_report.py",
            "tests/unit/test_tasks.py::test_an_error_carrying_a_nodes_text_reaches_the_terminal"
            "_escaped", "tests/unit/targets/test_fleet.py::"
            "test_run_output_reaches_the_terminal_escaped")
STATUS_PINS = ("tests/aws/test_aws_security.py::"
               "test_status_only_reads_the_record_and_pins_under_the_addresses_ec2_reports",)


@dataclass(frozen=True)
class Mutant:
    name: str
    claim: str
    path: str
    find: str
    replace: str
    tests: tuple[str, ...]

    def apply(self, root: Path) -> str:
        """Edit the copy under ROOT; returns the original text (to restore)."""
        path = root / self.path
        text = path.read_text()
        count = text.count(self.find)
        if count != 1:
            raise ValueError(f"mutant {self.name}: the text to replace occurs {count} times "
                             f"in {self.path} (the source changed: update "
                             "imagebake/dev/mutants.py)")
        path.write_text(text.replace(self.find, self.replace))
        return text


MUTANTS = [
    # ---------------------------------------------------------------- bake skip and hash
    Mutant("bake-always-rebakes", "an unchanged bake is skipped",
           "imagebake/bake/build.py",
           "found = None if force else prepared.find(role, hashes[role])",
           "found = None", UNIT_BAKE + AWS_BAKE),
    Mutant("bake-ignores-force", "--force rebakes",
           "imagebake/bake/build.py",
           "found = None if force else prepared.find(role, hashes[role])",
           "found = prepared.find(role, hashes[role])", UNIT_BAKE),
    Mutant("ami-lookup-ignores-content-hash", "an AMI is reused only for the same inputs",
           "imagebake/bake/existing.py",
           '            {"Name": "tag:imagebake:content-hash", "Values": [digest]},\n',
           "", AWS_BAKE),
    Mutant("docker-lookup-ignores-label", "a local image is reused only for the same inputs",
           "imagebake/bake/existing.py",
           '    if labels.get("imagebake.content-hash") != digest:\n        return None\n',
           "", UNIT_BAKE),
    Mutant("hash-no-variables", "the content hash covers the variables",
           "imagebake/bake/variables.py",
           "    return {k: v for k, v in effective.items() if k in names}",
           "    return {}", HASHING),
    Mutant("hash-every-variable", "another target's variables do not rebake",
           "imagebake/bake/variables.py",
           "    return {k: v for k, v in effective.items() if k in names}",
           "    return dict(effective)", HASHING),
    Mutant("hash-no-files", "the content hash covers templates, scripts and agent",
           "imagebake/bake/hashing.py",
           "    for path in input_files(root):", "    for path in []:", HASHING),
    Mutant("hash-no-base-image", "the content hash covers the base image",
           "imagebake/bake/build.py",
           "{**hashed(kind.variables, effective),\n"
           "                                        **prepared.hash_inputs}",
           "hashed(kind.variables, effective)", HASHING),
    # ---------------------------------------------------------------- image cleanup
    Mutant("cleanup-removes-nothing", "no image carries a secret",
           "provision/90-cleanup.sh", '\nmain "$@"\n', "\nexit 0\n", CLEANUP),
    Mutant("cleanup-keeps-secrets", "no host key, private key, cookie or history is left",
           "provision/90-cleanup.sh", "    remove_secrets\n    cloud_init_state\n",
           "    cloud_init_state\n", CLEANUP),
    Mutant("cleanup-keeps-machine-state", "no spec, state or machine id is left",
           "provision/90-cleanup.sh", "    machine_state\n    apt_and_tmp\n",
           "    apt_and_tmp\n", CLEANUP),
    # ---------------------------------------------------------------- HMAC, three directions
    Mutant("master-trusts-unsigned-join", "the master refuses a join without a valid MAC",
           "imagebake/agent/master.py", OPEN_SIGNED, trust_only("join"), AGENT),
    Mutant("node-trusts-unsigned-welcome", "a node refuses a welcome without a valid MAC",
           "imagebake/agent/node.py",
           'welcome = open_envelope(spec["token"], body, spec["cluster"], ctx.now(), "welcome")',
           'welcome = ' + TRUST.format(body="body")
           + 'spec["token"], body, spec["cluster"], ctx.now(), "welcome")', AGENT),
    Mutant("node-obeys-unsigned-stop-order",
           "a node obeys a stop order or a moved deadline only in a validly signed reply",
           "imagebake/agent/node.py",
           'welcome = open_envelope(spec["token"], body, spec["cluster"], ctx.now(), "welcome")',
           'welcome = ' + TRUST.format(body="body")
           + 'spec["token"], body, spec["cluster"], ctx.now(), "welcome")', STOP_ORDER),
    Mutant("master-trusts-unsigned-extend", "the master refuses an extend without a valid MAC",
           "imagebake/agent/master.py", OPEN_SIGNED, trust_only("extend"),
           (AGENT_MASTER + "test_forged_extend_is_refused_and_nothing_moves",)),
    Mutant("master-trusts-unsigned-leave", "the master refuses a leave without a valid MAC",
           "imagebake/agent/master.py", OPEN_SIGNED, trust_only("leave"),
           (AGENT_MASTER + "test_forged_or_bad_leave_is_refused_and_nothing_changes",)),
    Mutant("launcher-trusts-unsigned-status",
           "the launcher refuses a status reply without a valid MAC",
           "imagebake/agent_client.py",
           'reply = protocol.open_envelope(key, raw, record["name"], time.time(),',
           'reply = ' + TRUST.format(body="raw")
           + 'key, raw, record["name"], time.time(),', READINESS),
    # ---------------------------------------------------------------- the launcher's key
    Mutant("master-takes-a-nodes-token-for-orders",
           "a node's join token orders nothing cluster-wide (extend, leave, status)",
           "imagebake/agent/master.py",
           '        if signer == NODE:\n            return self.spec["token"]\n',
           '        if True:\n            return self.spec["token"]\n', LAUNCHER_KEY),
    Mutant("extend-signed-by-a-node", "extend needs the launcher's key, not a node's token",
           "imagebake/agent/master.py",
           '"/v1/extend": Route("extend", LAUNCHER,', '"/v1/extend": Route("extend", NODE,',
           LAUNCHER_KEY),
    # ---------------------------------------------------------------- launch
    Mutant("one-runinstances-per-slave", "all slaves start in one RunInstances call",
           "imagebake/targets/aws/cluster.py",
           'nodes = _run(client, record, "node", plan.node_type, plan.count,\n'
           '                             userdata.render(userdata.node_spec(record)), '
           'tags["node"])',
           'nodes = [n for _ in range(plan.count) for n in _run(\n'
           '                    client, record, "node", plan.node_type, 1,\n'
           '                    userdata.render(userdata.node_spec(record)), tags["node"])]',
           LAUNCH),
    # ---------------------------------------------------------------- status only reads
    Mutant("status-writes-the-record", "status only reads the cluster record",
           "imagebake/targets/aws/cluster.py",
           "            hostkeys.remember(record, reply, found)\n        return result",
           "            hostkeys.remember(record, reply, found)\n            state.save(record)\n"
           "        return result", STATUS_PINS),
    Mutant("status-pins-under-record-addresses",
           "status pins a node's key only under the address EC2 reports for it",
           "imagebake/targets/aws/cluster.py",
           "            hostkeys.remember(record, reply, found)\n",
           "            hostkeys.remember(record, reply)\n", STATUS_PINS),
    Mutant("qemu-status-writes-the-record", "status only reads the cluster record (qemu)",
           "imagebake/targets/qemu/cluster.py",
           "    if reply is not None:\n        pin(record, reply)\n    return reply",
           "    if reply is not None:\n        pin(record, reply)\n        state.save(record)\n"
           "    return reply", ("tests/unit/targets/qemu/test_cluster.py",)),
    Mutant("old-record-nodes-unread", "a record written before state.Node still loads",
           "imagebake/state.py", '    record["nodes"] = nodes_from(record.get("nodes", []))\n',
           "", ("tests/unit/test_state.py",)),
    # ---------------------------------------------------------------- destroy completeness
    Mutant("destroy-leaves-known-hosts", "destroy removes the pinned host keys",
           "imagebake/targets/aws/cluster.py",
           "        had_record = state.remove(name)\n        hostkeys.forget(name)\n",
           "        had_record = state.remove(name)\n", DESTROY),
    Mutant("destroy-no-placement-search",
           "destroy without a record finds the placement group by tag",
           "imagebake/targets/aws/cluster.py", "search_placement=record is None)",
           "search_placement=False)", DESTROY),
    Mutant("destroy-leaves-security-group", "destroy deletes the security group",
           "imagebake/targets/aws/instances.py",
           '        _delete_group(client, group["GroupId"])\n', "", DESTROY),
    Mutant("destroy-leaves-spot-requests", "destroy cancels open spot requests",
           "imagebake/targets/aws/instances.py", "    if spot_ids:\n", "    if False:\n",
           DESTROY),
    Mutant("docker-destroy-leaves-network", "destroy removes a local cluster's network",
           "imagebake/targets/docker/cluster.py", 'for kind in ("network", "volume"):',
           'for kind in ("volume",):', DOCKER_DESTROY),
    # ---------------------------------------------------------------- laptop files (issue 21 N2)
    Mutant("zip-member-outside-accepted",
           "ddfs-load refuses a zip member that resolves outside its folder",
           "imagebake/disco/ddfs_load.py",
           'if name.startswith(("/", "\\\\")) or ":" in (parts[0] if parts else "") or escapes:',
           "if False:", DDFS_LOAD),
    Mutant("ddfs-load-tags-a-cut-stream",
           "a load cut short (Ctrl-C, a dead laptop) leaves the tag as it was",
           "imagebake/disco/ddfs_push.py",
           'if kind == "Z":', "if True:", DDFS_LOAD),
    Mutant("ddfs-load-stores-duplicates",
           "loading the same input again stores nothing new",
           "imagebake/disco/ddfs_push.py",
           "if name in self.known or name in self.new_names:", "if False:", DDFS_LOAD),
    Mutant("ddfs-url-skips-checksum", "a downloaded input's --sha256 is checked",
           "imagebake/disco/ddfs_push.py",
           "if want and self.sha.hexdigest() != want:", "if False:", DDFS_LOAD),
    Mutant("job-failure-exits-0", "invoke job exits 1 when Disco says the job failed",
           "imagebake/disco/job_submit.py", 'if name and state == "ready" and rc == 0:',
           "if name:", ("tests/unit/disco/test_job_submit.py",)),
    # ---------------------------------------------------------------- owner scope
    Mutant("cluster-filter-ignores-owner",
           "destroy, status and grow find only the caller's cluster (owner tag)",
           "imagebake/targets/aws/instances.py",
           "    return [cluster_filter(cluster), owner_filter(owner)]",
           "    return [cluster_filter(cluster)]",
           ("tests/aws/test_aws_security.py::"
            "test_destroy_leaves_another_principals_same_named_cluster_alone",
            "tests/aws/test_aws_security.py::"
            "test_every_cluster_filter_also_filters_on_the_owner")),
    # ---------------------------------------------------------------- launcher input (issue 21)
    Mutant("cluster-name-allows-trailing-newline", "a cluster name is matched whole",
           "imagebake/state.py", "NAME_RE.fullmatch(name)",
           're.match(NAME_RE.pattern + "$", name)', LAUNCHER_INPUTS),
    Mutant("half-the-world-needs-no-flag", "a CIDR wider than /8 needs --allow-world",
           "imagebake/targets/aws/inputs.py", "wide = network.prefixlen < WORLD_PREFIX",
           "wide = network.prefixlen == 0", LAUNCHER_INPUTS),
    Mutant("ssh-splits-the-command-line", "invoke ssh keeps the user's quoting",
           "imagebake/targets/base.py", "shell_words(line) if line else None",
           "__import__(\"shlex\").split(line) if line else None",
           ("tests/unit/targets/test_fleet.py::test_cli_ssh_runs_the_command_line_as_written",)),
    Mutant("copy-keeps-set-id-bits", "copy drops setuid/setgid",
           "imagebake/targets/fleet.py", "st_mode) & 0o777", "st_mode)",
           ("tests/unit/targets/test_fleet.py::test_copy_drops_the_set_id_bits",)),
    Mutant("aws-run-as-login-user", "run/copy act as disco on EC2 too",
           "imagebake/targets/aws/cluster.py", "[*ssh.AS_DISCO, *command]", "command",
           ("tests/aws/test_aws_launch.py::"
            "test_run_and_copy_act_as_disco_as_on_the_local_targets",)),
    Mutant("modern-base-keeps-imdsv1", "an Ubuntu >= 20.04 / Debian >= 11 base bakes IMDSv2-only",
           "imagebake/bake/source_ami.py",
           'return "yes" if (int(ubuntu[1]), int(ubuntu[2])) >= IMDSV2_UBUNTU else "no"',
           'return "no"', ("tests/aws/test_aws_ami.py",)),
    # ---------------------------------------------------------------- terminal escapes (N4)
    Mutant("terminal-obeys-node-escapes",
           "a node's control characters are shown escaped, never sent to the terminal",
           "imagebake/terminal.py",
           "_escape(c) if c not in keep and unicodedata.category(c) in ESCAPED else c", "c",
           TERMINAL),
    Mutant("run-output-unescaped", "invoke run shows a member's escape sequences as text",
           "imagebake/targets/fleet.py", ": {safe_text(text)}\\n", ": {text}\\n",
           ("tests/unit/targets/test_fleet.py::test_run_output_reaches_the_terminal_escaped",)),
    # ---------------------------------------------------------------- bake's SSH source
    Mutant("bake-ssh-open-to-world", "Packer's temporary security group lets in the caller only",
           "imagebake/targets/aws/images.py", "packer_vars={SSH_SOURCE: source_cidr}",
           'packer_vars={SSH_SOURCE: "0.0.0.0/0"}', ("tests/aws/test_aws_images.py",)),
]


@dataclass
class Outcome:
    mutant: Mutant
    verdict: str  # killed, survived, error
    seconds: float
    detail: str = ""


def copy_repo(root: Path = ROOT, committed: bool = False) -> Path:
    """The working tree (default), or with COMMITTED the last commit (`git archive HEAD`:
    what others are still editing in a shared checkout stays out)."""
    work = Path(tempfile.mkdtemp(prefix="imagebake-mutants-"))
    if not committed:
        shutil.copytree(root, work / "repo", ignore=IGNORE, symlinks=True)
        return work / "repo"
    (work / "repo").mkdir()
    archive = subprocess.run(["git", "-C", str(root), "archive", "--format=tar", "HEAD"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(work / "repo")], input=archive, check=True)
    return work / "repo"


def pytest(copy: Path, tests: tuple[str, ...], first_failure: bool = True,
           timeout: float = 900) -> subprocess.CompletedProcess:
    """The tests in the COPY (it comes first on sys.path, before the editable install)."""
    env = {**os.environ, "PYTHONPATH": str(copy), "PYTHONDONTWRITEBYTECODE": "1"}
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--no-header",
            *(["-x"] if first_failure else []), *tests]
    try:
        return subprocess.run(argv, cwd=copy, env=env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        return subprocess.CompletedProcess(argv, 124, str(exc.stdout or ""), "timeout")


def _last_line(proc: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
    return lines[-1] if lines else f"exit {proc.returncode}"


def run_one(copy: Path, mutant: Mutant) -> Outcome:
    started = time.monotonic()
    try:
        original = mutant.apply(copy)
    except ValueError as exc:
        return Outcome(mutant, "error", 0.0, str(exc))
    try:
        proc = pytest(copy, mutant.tests)
    finally:
        (copy / mutant.path).write_text(original)
    seconds = time.monotonic() - started
    if proc.returncode == 1:  # tests ran and at least one failed
        failed = next((ln.split(" ", 1)[1].split(" - ")[0]
                       for ln in proc.stdout.splitlines() if ln.startswith("FAILED ")), "")
        return Outcome(mutant, "killed", seconds, f"by {failed}" if failed else "")
    if proc.returncode == 0:
        return Outcome(mutant, "survived", seconds, _last_line(proc))
    return Outcome(mutant, "error", seconds, f"pytest exit {proc.returncode}: "
                   f"{_last_line(proc)}")


def select(names: list[str] | None) -> list[Mutant]:
    if not names:
        return list(MUTANTS)
    known = {m.name: m for m in MUTANTS}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"unknown mutant(s) {', '.join(unknown)}: "
                         f"choose from {', '.join(known)}")
    return [known[n] for n in names]


def run(names: list[str] | None = None, baseline: bool = True, committed: bool = False,
        out=print) -> list[Outcome]:
    mutants = select(names)
    copy = copy_repo(committed=committed)
    out(f"mutating a copy of {'the last commit' if committed else 'the working tree'}")
    try:
        if baseline:
            tests = tuple(dict.fromkeys(t for m in mutants for t in m.tests))
            out(f"baseline: {len(tests)} test selections on the unmutated copy ...")
            proc = pytest(copy, tests, first_failure=False)
            if proc.returncode != 0:
                out(proc.stdout[-3000:] + proc.stderr[-2000:])
                raise SystemExit(f"baseline failed ({_last_line(proc)}): fix the tests first")
            out(f"baseline: {_last_line(proc)}")
        outcomes = []
        for mutant in mutants:
            outcome = run_one(copy, mutant)
            outcomes.append(outcome)
            out(f"{outcome.verdict.upper():<9}{mutant.name:<34}{outcome.seconds:6.1f}s  "
                f"{outcome.detail}")
    finally:
        shutil.rmtree(copy.parent, ignore_errors=True)
    killed = sum(o.verdict == "killed" for o in outcomes)
    out(f"{killed}/{len(outcomes)} mutants killed"
        + "".join(f"; {o.verdict}: {o.mutant.name} ({o.mutant.claim})"
                  for o in outcomes if o.verdict != "killed"))
    return outcomes


def main(argv: list[str]) -> int:
    committed = "--committed" in argv
    outcomes = run([a for a in argv if a != "--committed"] or None, committed=committed)
    return 0 if all(o.verdict == "killed" for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
