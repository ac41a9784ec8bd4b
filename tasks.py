"""invoke tasks: a thin face over imagebake/. Each task validates its flags,
calls one function, and turns ImagebakeError into one line and exit code 2."""

from __future__ import annotations

import functools
import json
import os
import sys

from invoke import Exit, task

from imagebake import settings
from imagebake.errors import ImagebakeError
from imagebake.terminal import safe_text

# Tools installed beside this interpreter (ruff, vermin, pytest) come first on PATH.
os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")

TARGET_HELP = settings.SETTINGS["target"].help


def _cli(fn):
    """Run a task body; our errors become one line on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ImagebakeError as exc:
            print(f"error: {safe_text(exc)}", file=sys.stderr)  # may quote a node's words
            raise Exit(code=exc.exit_code) from None
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            raise Exit(code=130) from None

    return wrapper


def _say(text) -> None:
    """Print TEXT that may carry what a node, its agent or Disco said, its control
    characters shown escaped (imagebake/terminal.py); --json output is printed as is:
    json.dumps escapes them itself."""
    print(safe_text(text))


def _target(name: str):
    from imagebake import targets

    return targets.get(name)


def _record(name, target=None):
    from imagebake import state

    return state.resolve(name, target)


@task(help={"target": "docker (local base image) or qemu (bootable Debian 12 qcow2)"})
@_cli
def base_image(c, target="docker"):
    """Build the local offline base image (debootstrap Debian 12, docker import)."""
    print(_target(target).build_base_image())


@task(
    iterable=["var"],
    help={
        "target": "docker (default), aws or qemu",
        "only": "bake one role: master or node",
        "var": "Packer variable k=v (repeatable), e.g. disco_source=none",
        "force": "rebake even when images with the same content hash exist",
    },
)
@_cli
def bake(c, target=None, only=None, var=None, force=False):
    """Bake the master and node images with Packer; writes build/images.json."""
    from imagebake.bake import variables

    target, given = settings.bake_args(c.config, {"target": target,
                                                  "vars": variables.parse_vars(var or [])})
    result = _target(target).bake(only=only, variables=given, force=force)
    print(json.dumps(result, indent=2))


@task(
    help={
        "target": "docker (default) or aws",
        "ami": "with --target aws: the AMI booted at --host",
        "host": "with --target aws: ssh destination (user@address) of an instance booted from it",
    }
)
@_cli
def verify(c, target="docker", ami=None, host=None):
    """Run the testinfra suite on baked images."""
    code = _target(target).verify_images(ami=ami, host=host)
    if code:
        raise Exit(code=code)


@task(
    help={
        **settings.help_for("launch"),  # each launch flag's help, declared once
        "dry_run": "create nothing: print the plan (aws: and which permissions are missing, "
                   "asked with DryRun=True; exit 1 if any)",
    }
)
@_cli
def launch(
    c,
    target=None,
    slaves=None,
    name=None,
    workers_per_node=None,
    wait=True,
    region=None,
    profile=None,
    instance_type=None,
    master_instance_type=None,
    subnet=None,
    spot=False,
    spot_master=False,
    ttl=None,
    idle_stop=None,
    allow_cidr=None,
    allow_world=False,
    key_name=None,
    placement_group=False,
    keep_on_failure=False,
    master_ami=None,
    node_ami=None,
    http_tokens=None,
    dry_run=False,
):
    """Start one master and N slaves; the first-boot agent forms the cluster."""
    flags = {k: v for k, v in locals().items() if k not in ("c", "dry_run")}  # first
    target, given = settings.launch_args(c.config, flags, lambda t: _target(t).launch_options)
    driver = _target(target)
    if dry_run:
        text, ok = driver.dry_run(**given)
        print(text)
        if not ok:
            raise Exit(code=1)
        return
    record = driver.launch(**given)
    _say(driver.summary(record))


@task(help={"command": "launch (default) or bake: the settings that command uses",
            "json": "print the settings as JSON"})
@_cli
def config(c, command="launch", json_=False):
    """Effective launch/bake defaults and where each came from (invoke.yaml, ~/.invoke.yaml,
    INVOKE_IMAGEBAKE_*); preview flags after --: invoke config -- --target docker."""
    import shlex

    flags = settings.parse_flags(launch if command == "launch" else bake,
                                 shlex.split(c.remainder))
    values = settings.resolve(c.config, command, flags)
    if json_:
        print(json.dumps({k: {"value": v.value, "source": v.source} for k, v in values.items()},
                         indent=2))
        return
    unused = ()
    if command == "launch":
        takes = _target(values["target"].value).launch_options
        unused = [k for k, s in settings.SETTINGS.items() if s.option and k not in takes]
    print(settings.render(values, command, unused))


@task(
    help={
        "name": "cluster name (may be left out when only one is recorded)",
        "target": TARGET_HELP,
        "json": "print the status as JSON",
    }
)
@_cli
def status(c, name=None, target=None, json_=False):
    """Every node's agent state, the Disco host list and readiness (exit 1 if not ready)."""
    from imagebake import lifetime

    record = _record(name, target)
    driver = _target(record["target"])
    report = driver.status(record)
    report["lifetime"] = lifetime.view(driver, record, report, driver.agent)  # TTL, idle
    if json_:
        print(json.dumps(report, indent=2, sort_keys=True))
    else:
        from imagebake.report import render_status

        _say("\n".join([render_status(report), *lifetime.render(report["lifetime"])]))
    if not report.get("ready"):
        raise Exit(code=1)


@task(help={"name": "cluster name", "target": TARGET_HELP,
            "ttl": "the new time to live from now, e.g. 2h (10m to 30d)"})
@_cli
def extend(c, name=None, ttl=None, target=None):
    """Move the TTL deadline to now + --ttl: a signed request to the master agent, which
    re-arms its power-off; the nodes follow within a heartbeat (30 s)."""
    from imagebake import lifetime

    lifetime.ttl_seconds(ttl)  # a bad value: one line, before anything is asked
    record = _record(name, target)
    driver = _target(record["target"])
    _say(lifetime.extend(driver, record, ttl, driver.agent))


@task(help={"slaves": "how many slaves to add", "name": "cluster name", "target": TARGET_HELP})
@_cli
def grow(c, slaves=None, name=None, target=None):
    """Add slaves to a running cluster without restarting the master."""
    record = _record(name, target)
    driver = _target(record["target"])
    _say(driver.summary(driver.grow(record, slaves)))


@task(help={"slaves": "how many slaves to remove (the newest ones)",
            "node": "which slaves to remove: node03[,node04]", "name": "cluster name",
            "force": "skip the drain (DDFS data only on those nodes may be lost)",
            "timeout": "seconds to wait for DDFS to re-replicate (default 900)",
            "target": TARGET_HELP})
@_cli
def shrink(c, slaves=None, node=None, name=None, force=False, timeout=None, target=None):
    """Remove slaves: blacklist them in Disco and DDFS, wait until DDFS re-replicated
    their data, take them out of the master's config, DNS and known_hosts, terminate."""
    from imagebake import shrink as shrinking

    if (slaves is None) == (node is None):
        raise ImagebakeError("shrink takes exactly one of --slaves K or --node node03[,node04]")
    wait = shrinking.DRAIN_TIMEOUT
    if timeout is not None:
        if not str(timeout).isdigit() or not 1 <= int(timeout) <= 86400:
            raise ImagebakeError(f"--timeout {timeout!r}: whole seconds, 1-86400")
        wait = float(timeout)
    record = _record(name, target)
    driver = _target(record["target"])
    _say(shrinking.shrink(driver, record, slaves=slaves, node=node, force=force, timeout=wait))


def _given_positionals(argv: list[str], task_name: str, value_flags: set[str],
                       names: list[str]) -> list[str]:
    """Invoke treats positional arguments as required; these are optional, so declare as
    many of NAMES as the command line gives after TASK_NAME (read before invoke parses it)."""
    if task_name not in argv:
        return []
    count, skip = 0, False
    for token in argv[argv.index(task_name) + 1:]:
        if skip or token.startswith("-"):
            skip = not skip and token in value_flags
            continue
        count += 1
    return names[:count]


SSH_FLAGS = {"--name", "-n", "--node", "-o", "--target", "-t", "--command", "-c"}


@task(positional=_given_positionals(sys.argv, "ssh", SSH_FLAGS, ["node", "command"]),
      help={"name": "cluster name", "target": TARGET_HELP,
            "node": "node to log into, e.g. node02 (default: master); also the first argument",
            "command": "run this shell command instead of a login shell; also the second "
                       "argument, e.g. invoke ssh --name demo node02 'uptime'"})
@_cli
def ssh(c, name=None, node=None, command=None, target=None):
    """Open a shell (or run a command) on the master or a node: invoke ssh [NODE [COMMAND]]."""
    record = _record(name, target)
    argv = _target(record["target"]).login_argv(record, node, command)
    os.execvp(argv[0], argv)


ON_HELP = "all (default), slaves, master, or names such as node01,node02"


def _fleet_done(outcome) -> None:
    _say(outcome.summary())
    if not outcome.ok:
        raise Exit(code=1)


@task(help={"name": "cluster name", "target": TARGET_HELP, "on": ON_HELP,
            "timeout": "seconds each node may take (default 3600)"})
@_cli
def run(c, name=None, on="all", timeout=None, target=None):
    """Run a shell command on many nodes at once, as disco on every target (not root):
    invoke run --name X [--on ...] -- CMD."""
    record = _record(name, target)
    _fleet_done(_target(record["target"]).run(record, on, c.remainder, timeout))


COPY_FLAGS = {"--name", "-n", "--on", "-o", "--timeout", "-t", "--target", "-a", "--src", "-s",
              "--dest", "-d"}


@task(positional=_given_positionals(sys.argv, "copy", COPY_FLAGS, ["src", "dest"]),
      help={"name": "cluster name", "target": TARGET_HELP, "on": ON_HELP,
            "src": "local file to copy (first argument)",
            "dest": "path on each node (second argument; a directory keeps SRC's name)",
            "timeout": "seconds each node may take (default 3600)"})
@_cli
def copy(c, src=None, dest=None, name=None, on="all", timeout=None, target=None):
    """Copy a file to many nodes at once, as disco (mode kept, set-id bits dropped):
    invoke copy --name X SRC DEST [--on ...]."""
    record = _record(name, target)
    _fleet_done(_target(record["target"]).copy(record, on, src, dest, timeout))


@task(help={"name": "cluster name", "target": TARGET_HELP,
            "cidr": "aws: the range to let in, e.g. 203.0.113.7/32 (default: your address/32)",
            "allow_world": "aws: allow a --cidr wider than /8, e.g. 0.0.0.0/0 (every "
                           "address); refused without it"})
@_cli
def authorize_ip(c, name=None, cidr=None, allow_world=False, target=None):
    """Let your current address (or --cidr) reach SSH and the agent port instead of the
    address allowed now; the replaced rule is removed."""
    record = _record(name, target)
    _say(_target(record["target"]).authorize_ip(record, cidr, allow_world))


@task(help={"name": "cluster name", "target": TARGET_HELP})
@_cli
def tunnel(c, name=None, target=None):
    """Print (and for AWS, open) the Disco web UI address."""
    record = _record(name, target)
    _say(_target(record["target"]).tunnel(record))


@task(help={"name": "cluster name", "target": TARGET_HELP})
@_cli
def destroy(c, name=None, target=None):
    """Remove everything the cluster's launch created; safe to repeat."""
    from imagebake import state

    if name is None and not state.names():
        print("nothing to destroy: no cluster recorded")
        return
    record = state.load(state.check_name(name)) if name else _record(None)
    tgt = (record or {}).get("target") or target
    if tgt is None:  # no record: a cloud target may still find the cluster by its tags
        from imagebake import targets

        driver, why = targets.find_unrecorded(name)
        if driver is None:
            print(f"nothing to destroy: no cluster named {name!r} recorded, and AWS not "
                  f"searched ({why}; or pass --target)")
            return
    else:
        driver = _target(tgt)
    _say(driver.destroy(name or record["name"], record))


@task(help={"name": "cluster name"})
@_cli
def smoke(c, name=None):
    """Run a job on the cluster (or, without Disco in the images, the Erlang check)."""
    from imagebake.disco import smoke as mod

    record = _record(name)
    ok, message = mod.smoke(record)
    _say(message)
    if not ok:
        raise Exit(code=1)


@task(help={"name": "cluster name",
            "module": "comma-separated modules of Disco's tests/ (default: all of them); a "
                      "named module also runs its tests too big for a small cluster "
                      "(test_50k's 50,000 tasks)",
            "timeout": "seconds per module before it counts as failed (default 300)",
            "json": "print the results as JSON instead of the table"})
@_cli
def disco_selftest(c, name=None, module=None, timeout=None, json=False):
    """Run Disco's own test suite on the cluster: one line per module, then the table."""
    import json as json_mod
    import sys

    from imagebake.disco import selftest as mod

    record = _record(name)
    limit = mod.parse_timeout(timeout)

    def progress(result):
        print(safe_text(f"{result.module}: {result.status} in {result.seconds:.1f}s"),
              file=sys.stderr, flush=True)

    results = mod.selftest(record, module.split(",") if module else None, limit, progress)
    if json:
        print(json_mod.dumps([vars(r) for r in results], indent=1))
    else:
        _say(mod.table(results))
    if not all(r.ok for r in results):
        raise Exit(code=1)


@task(help={
    "target": "aws (the only one: the local targets are covered by `invoke test`)",
    "yes": "spend: without it the cost ceiling is printed and nothing is done",
    "keep_amis": "keep the AMIs the run bakes (default: removed at the end; reused AMIs "
                 "always stay)",
    "name": "cluster name (default acceptance)",
    "region": "aws region (default: your AWS config's)",
    "instance_type": "slave instance type (default t2.medium)",
    "master_instance_type": "master instance type (default: as slaves)",
    "report": "where to write the JSON report (default build/acceptance-<time>.json)",
})
@_cli
def acceptance(c, target=None, yes=False, keep_amis=False, name=None, region=None,
               instance_type=None, master_instance_type=None, report=None):
    """Prove the AWS path on your account (never run by CI, never run by us): bake, launch
    2 spot slaves, status, ddfs-load + smoke, shrink, destroy, sweep; a JSON report."""
    from imagebake import acceptance as mod
    from imagebake.clients import aws

    plan = mod.check(target, name, instance_type, master_instance_type, keep_amis, report,
                     region)
    plan = mod.price(plan, aws.make_session(region, None))
    print(mod.ceiling(plan))
    if not yes:
        raise ImagebakeError("nothing done: pass --yes to spend what is above")
    result = mod.run(plan)
    print(f"report: {plan.report_path}")
    if not result["ok"]:
        print(f"acceptance FAILED: {result['failed']}", file=sys.stderr)
        raise Exit(code=1)
    print("acceptance passed: nothing left (" + ", ".join(result["left"]) + " swept)")


@task(help={"only": "comma-separated mutant names (default: all of them)",
            "list": "list the mutants and the claim each breaks",
            "committed": "mutate the last commit instead of the working tree"})
def mutants(c, only=None, list_=False, committed=False):
    """Break each README claim in a copy of the repo; exit 1 unless the tests catch them all."""
    from imagebake.dev import mutants as mod

    if list_:
        for mutant in mod.MUTANTS:
            print(f"{mutant.name:<34}{mutant.claim}")
        return
    outcomes = mod.run(only.split(",") if only else None, committed=committed)
    if any(o.verdict != "killed" for o in outcomes):
        raise Exit(code=1)


@task(help={"what": "bake, cluster, launch, vm, dns, job (real Disco) or all (default)"})
@_cli
def bench(c, what="all"):
    """Run benchmarks and print their figures."""
    from imagebake.bench import runner as mod

    mod.run(what)


def _shell_files() -> list[str]:
    import subprocess

    tracked = subprocess.run(["git", "ls-files", "*.sh", ".ci/run"], capture_output=True,
                             text=True, check=False).stdout.split()
    return sorted(set(tracked))


@task
def lint(c):
    """ruff, shellcheck, vermin (the agent must run on Python 3.4), workflow schema."""
    c.run("ruff check .", echo=True)
    c.run("shellcheck " + " ".join(_shell_files()), echo=True)
    c.run("vermin --no-tips --violations -t=3.4- imagebake/agent imagebake/disco/ddfs_push.py "
          "imagebake/disco/job_runner.py", echo=True)
    import glob

    workflows = sorted(glob.glob(".github/workflows/*.yml"))
    if workflows:
        c.run("check-jsonschema --builtin-schema vendor.github-workflows " + " ".join(workflows),
              echo=True)


@task(help={"fast": "skip the local bake and every test that needs Docker"})
def test(c, fast=False):
    """The README's test command: lint, bake the local images offline, run every test."""
    lint(c)
    if fast:
        c.run("python -m pytest -ra -m 'not docker and not vm' --ignore=tests/images", echo=True)
        return
    from imagebake.bake import vendor  # real Disco when vendor/disco/ has its archives

    disco_vars = vendor.local_bake_vars()
    c.run(" ".join(["invoke bake --target docker", *disco_vars]), echo=True)
    c.run("invoke verify --target docker", echo=True)  # testinfra on both baked images
    c.run(" ".join(["invoke bake --target qemu", *disco_vars]), echo=True)  # for tests/vm
    c.run("python -m pytest -ra --ignore=tests/images", echo=True)


@task(help={"target": "docker (default) or aws", "json": "print JSON",
            "region": "aws: region(s), comma-separated; every region build/images.json "
                      "lists is searched too (default: your AWS config's)",
            "profile": "aws: profile"})
@_cli
def images(c, target="docker", json_=False, region=None, profile=None):
    """List baked images (role, Disco ref, content hash, date)."""
    from imagebake.bake import images as mod

    rows = _target(target).list_images(region=region, profile=profile)
    print(json.dumps(rows, indent=2) if json_ else mod.render(rows))


@task(help={
    "keep": "how many of the newest images to keep per role (default 2)",
    "target": "docker (default) or aws",
    "dry_run": "show the plan, remove nothing",
    "discard_new": "aws: remove exactly the AMIs in build/images.json (a failed bake)",
    "region": "aws: region(s), comma-separated, besides every region build/images.json lists",
    "profile": "aws: profile",
})
@_cli
def prune(c, keep="2", target="docker", dry_run=False, discard_new=False, region=None,
          profile=None):
    """Remove old images (AMIs with their snapshots), never one a cluster uses."""
    from imagebake.bake import images as mod
    from imagebake.validate import parse_count

    only = None
    if discard_new:
        target, only = "aws", mod.new_ami_ids()
    doomed, spared = _target(target).prune_images(parse_count(keep, "--keep", 0, 1000),
                                                  dry_run, region=region, profile=profile,
                                                  only_ids=only)
    verb = "would remove" if dry_run else "removed"
    for image in doomed:
        print(f"{verb} {image['target']} {image['role']} {image['id']}"
              + (f" ({image['region']})" if image.get("region") else ""))
    for image in spared:
        print(f"kept {image['id']}: a cluster uses it")
    if not doomed:
        print("nothing to prune")


@task(
    iterable=["input", "sha256"],
    help={
        "name": "cluster name",
        "input": "a file path (.gz/.bz2 unpacked as a stream, .zip member by member), an "
                 "http(s):// URL or s3://bucket/key (both downloaded by the slaves "
                 "themselves; s3 presigned here with your credentials); repeatable",
        "tag": "DDFS tag to store under (default data:2grams)",
        "chunk": "store Disco's chunk format (`ddfs chunk`'s) instead of plain line-aligned "
                 "blobs: a job must then read it with map_reader=chain_reader; without "
                 "--chunk, Disco's default reader gives map() each line (bytes)",
        "blob_mb": "blob (or chunk) size in MiB, 1-1024 (default 16): one map task each",
        "sha256": "expected sha256 of each --input as given (before unpacking), in the "
                  "same order, `-` for none; checked before the tag changes",
        "replicas": "copies of each blob (default: DDFS's DDFS_BLOB_REPLICAS, min(3, slaves))",
    },
)
@_cli
def ddfs_load(c, name=None, input=None, tag="data:2grams", chunk=False,  # noqa: A002
              blob_mb=None, sha256=None, replicas=None):
    """Store files in the cluster's DDFS: streamed to a pusher on the master that writes
    blobs to several storage nodes at once, then updates the tag once (or not at all)."""
    from imagebake.disco import ddfs_load as mod

    mod.check_tag(tag)
    blob = mod.BLOB_MB
    if blob_mb is not None:
        if not str(blob_mb).isdigit():
            raise ImagebakeError(f"--blob-mb {blob_mb!r}: whole MiB, 1-1024")
        blob = int(blob_mb)
    copies = 0
    if replicas is not None:
        if not str(replicas).isdigit() or not 1 <= int(replicas) <= 16:
            raise ImagebakeError(f"--replicas {replicas!r}: 1-16")
        copies = int(replicas)
    done = mod.load(_record(name), input or [], tag, chunk=chunk, blob_mb=blob,
                    sha256=sha256 or None, replicas=copies)
    _say(mod.summary(done, mod.check_tag(tag)))


JOB_FLAGS = {"--name", "-n", "--with", "-w", "--results", "-r", "--on-interrupt", "-o",
             "--target", "-t", "--script", "-s"}


@task(positional=_given_positionals(sys.argv, "job", JOB_FLAGS, ["script"]),
      iterable=["with"],
      help={"name": "cluster name", "target": TARGET_HELP,
            "script": "the job script (.py; first argument); its arguments go after --",
            "with": "a folder of modules the script imports, copied beside it (repeatable)",
            "detach": "print the job's name once Disco accepted it and return; follow it "
                      "with job-status, job-logs, job-kill",
            "results": "write the job's results (result_iterator) to this local file, one "
                       "`key TAB value` line each",
            "on_interrupt": "what Ctrl-C does to the running job: ask (default on a "
                            "terminal; elsewhere kill), kill, or leave it running"})
@_cli
def job(c, script=None, name=None, with_=None, detach=False, results=None,
        on_interrupt="ask", target=None):
    """Run a Disco job script on the master as disco, with the job's stages as it runs:
    invoke job --name demo examples/ngram_top.py [--with DIR] -- tag://data:2grams 20.
    Exit 0 when Disco says the job is done, 1 with the failure reason."""
    import shlex

    from imagebake.disco import job_submit

    if not script:
        raise ImagebakeError("which job? invoke job --name X SCRIPT.py [-- ARGS]")
    job_submit.bundle(script, with_ or [])  # a missing file is named before the cluster
    record = _record(name, target)
    _say(job_submit.run(record, script, shlex.split(c.remainder or ""), with_ or [],
                         detach=detach, results=results, on_interrupt=on_interrupt))


JOB_HELP = {"name": "cluster name", "target": TARGET_HELP,
            "job": "the Disco job name (default: the newest job on the cluster)"}
JOB_ONLY = {"--name", "-n", "--target", "-t", "--job", "-j"}


@task(positional=_given_positionals(sys.argv, "job-status", JOB_ONLY, ["job"]), help=JOB_HELP)
@_cli
def job_status(c, job=None, name=None, target=None):
    """A job's state and stages (tasks done/total); exit 1 when it failed."""
    from imagebake.disco import job_submit

    line, alive = job_submit.status(_record(name, target), job_submit.check_job_name(job))
    _say(line)
    if not alive:
        raise Exit(code=1)


@task(positional=_given_positionals(sys.argv, "job-logs", JOB_ONLY, ["job"]), help=JOB_HELP)
@_cli
def job_logs(c, job=None, name=None, target=None):
    """A job's events from Disco (assignments, messages, errors)."""
    from imagebake.disco import job_submit

    _say(job_submit.logs(_record(name, target), job_submit.check_job_name(job)))


@task(positional=_given_positionals(sys.argv, "job-kill", JOB_ONLY, ["job"]), help=JOB_HELP)
@_cli
def job_kill(c, job=None, name=None, target=None):
    """Kill a running job (`disco kill`): nothing of it keeps running on the slaves."""
    from imagebake.disco import job_submit

    _say(job_submit.kill(_record(name, target), job_submit.check_job_name(job)))


@task(help={"name": "cluster name", "target": TARGET_HELP})
@_cli
def job_list(c, name=None, target=None):
    """The cluster's jobs, newest first: state and name."""
    from imagebake.disco import job_submit

    for _, state, job_name in job_submit.job_list(_record(name, target)):
        _say(f"{state:<8} {job_name}")
