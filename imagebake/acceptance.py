"""`invoke acceptance --target aws`: the whole path on a real AWS account, one command that
cannot leak money. It prints its cost ceiling and refuses without --yes; then bakes (or
reuses the AMIs of the same inputs), makes a key pair, launches a master on demand and 2
spot slaves with a 1 h TTL enforced on the cluster, checks status, runs the smoke job
(ddfs-load of a generated 2-gram sample, the job, its answer checked), grows one spot
slave and shrinks one slave, drained (DDFS keeps min(3, slaves at launch) = 2 replicas,
and shrink never goes below them: 2 slaves could not lose one), destroys, removes the
key pair and (unless --keep-amis) the AMIs it baked, and sweeps by the owner and cluster
tags for anything left: instances, volumes, security groups, key pairs, spot requests
(and the AMIs it removed). Cleanup runs whatever failed before it. A JSON report keeps
the timings, the EC2 calls and a cost estimate.

Nobody on this project has an AWS account: the flow and the sweep are tested against
moto's server (tests/aws/test_aws_acceptance.py) with the steps that need a real cluster
(bake, agent readiness, Disco, the drain) handed in as `Steps`; it has not been run on
AWS."""

from __future__ import annotations

import contextlib
import datetime
import json
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import boto3

from . import files, state, targets
from .agent_client import AgentClient
from .clients import aws
from .errors import ImagebakeError
from .targets.aws import inputs, network, preflight
from .targets.aws import instances as ec2i
from .targets.aws.cluster import DEFAULT_INSTANCE_TYPE, AwsTarget

DEFAULT_NAME = "acceptance"
SLAVES = 2             # at launch; one more is grown so that one can be shrunk
GROWN = 1
READY_AFTER_GROW = 900.0
TTL = "1h"            # the master agent powers the whole cluster off after it
HOURS = 1.0
RUN_DEADLINE = 3600.0  # past this the run stops starting steps and cleans up


# ------------------------------------------------------------------ the plan and its price
@dataclass
class Plan:
    name: str
    region: str
    instance_type: str
    master_type: str
    keep_amis: bool
    report_path: Path
    spot_price: float | None = None  # USD per hour, the highest current one in the region
    spot_zone: str | None = None


def check(target: str | None, name: str | None, instance_type: str | None,
          master_instance_type: str | None, keep_amis: bool, report: str | None,
          region: str | None) -> Plan:
    """The run's inputs, checked without AWS; one line when one is wrong."""
    if target is not None and not isinstance(targets.get(target), AwsTarget):
        raise ImagebakeError(f"acceptance runs on --target aws only, not {target!r} (the "
                             "local targets are covered by `invoke test`)")
    node_type = inputs.instance_type(instance_type or DEFAULT_INSTANCE_TYPE,
                                     "--instance-type")
    master_type = inputs.instance_type(master_instance_type or node_type,
                                       "--master-instance-type")
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = Path(report) if report else Path("build") / f"acceptance-{stamp}.json"
    return Plan(name=state.check_name(name or DEFAULT_NAME), region=region or "",
                instance_type=node_type, master_type=master_type, keep_amis=keep_amis,
                report_path=path)


def price(plan: Plan, session: boto3.Session) -> Plan:
    """The region (checked) and the highest current spot price of the slave type there."""
    plan.region = network.check_region(session, plan.region or session.region_name)
    client = aws.ec2(session, plan.region)
    try:
        history = client.describe_spot_price_history(
            InstanceTypes=[plan.instance_type], ProductDescriptions=preflight.SPOT_PRODUCTS,
            StartTime=datetime.datetime.now(datetime.timezone.utc))["SpotPriceHistory"]
    except aws.AWS_CALL_ERRORS as exc:
        raise ImagebakeError(aws.explain(exc, "asking for spot prices",
                                         region=plan.region)) from None
    if history:
        top = max(history, key=lambda h: float(h["SpotPrice"]))
        plan.spot_price, plan.spot_zone = float(top["SpotPrice"]), top["AvailabilityZone"]
    return plan


def ceiling(plan: Plan) -> str:
    """What the run may spend at most, in instance-hours (and dollars where EC2 says)."""
    spot = (f"spot now at most ${plan.spot_price:.4f}/h ({plan.spot_zone}): "
            f"<= ${(SLAVES + GROWN) * HOURS * plan.spot_price:.2f}" if plan.spot_price is not None
            else "no spot price for it in the region now: the launch will be refused")
    return "\n".join([
        f"acceptance run on AWS: cluster {plan.name} in {plan.region}, at most:",
        f"  master  1 x {plan.master_type} on demand  <= {HOURS:g} h  (on-demand prices are "
        "not in the EC2 API: see the EC2 price list)",
        f"  slaves  {SLAVES} (+{GROWN} grown, then {GROWN} shrunk) x {plan.instance_type} spot"
        f"  <= {HOURS:g} h  ({spot})",
        "  bake    Packer's 2 build instances while baking (none when AMIs of the same inputs "
        "exist), and 2 AMIs with their EBS snapshots"
        + (" (kept: --keep-amis)" if plan.keep_amis else " (removed at the end)"),
        f"  hard limit: the master agent powers the cluster off {TTL} after launch (--ttl "
        f"{TTL}, terminate on shutdown), laptop or not; the run itself stops past "
        f"{RUN_DEADLINE / 60:.0f} min and cleans up",
        "  plus a key pair and a security group (free), removed at the end",
    ])


# ------------------------------------------------------------------ the injectable steps
def _bake(plan: Plan) -> dict:
    return AwsTarget().bake(variables={"aws_region": plan.region})


def _smoke(record: dict) -> tuple[bool, str]:
    from .disco import smoke

    return smoke.smoke(record)


def _shrink(target: AwsTarget, record: dict) -> str:
    """One slave out, drained first (Disco and DDFS blacklists until GC says safe)."""
    from . import shrink

    return shrink.shrink(target, record, slaves=1)


@dataclass
class Steps:
    """What needs a real cluster (or Packer): the tests hand in their own."""

    bake: Callable[[Plan], dict] = _bake
    agent: AgentClient = field(default_factory=AgentClient)  # signed calls to the master
    smoke: Callable[[dict], tuple[bool, str]] = _smoke
    shrink: Callable[[AwsTarget, dict], str] = _shrink


# ------------------------------------------------------------------ counting EC2 calls
class CallCounter:
    """EC2 calls of every session the run makes (botocore's before-call event)."""

    def __init__(self, base: aws.SessionFactory | None = None) -> None:
        self.calls: Counter[str] = Counter()
        self.base = base or aws.default_session_factory

    def _hook(self, model: Any, **_: Any) -> None:
        self.calls[model.name] += 1

    def factory(self, region: str | None, profile: str | None) -> boto3.Session:
        session = self.base(region, profile)
        session.events.register("before-call.ec2.*", self._hook)
        return session


# ------------------------------------------------------------------ the sweep
def sweep(client: Any, name: str, owner: str, amis: set[str] | None = None
          ) -> dict[str, list[str]]:
    """Everything of OWNER's still tagged imagebake:cluster=NAME (and the AMIS, when
    they should be gone): empty lists mean nothing is left."""
    mine = ec2i.scope(name, owner)
    left: dict[str, list[str]] = {
        "instances": [i["InstanceId"] for i in ec2i.describe(
            client, cluster=name, owner=owner, states=ec2i.LIVE_STATES)],
        "volumes": [v["VolumeId"]
                    for page in client.get_paginator("describe_volumes").paginate(Filters=mine)
                    for v in page["Volumes"]],
        "security_groups": [g["GroupId"] for g in
                            client.describe_security_groups(Filters=mine)["SecurityGroups"]],
        "key_pairs": [k["KeyName"] for k in
                      client.describe_key_pairs(Filters=mine)["KeyPairs"]],
        "spot_requests": [r["SpotInstanceRequestId"]
                          for page in client.get_paginator(
                              "describe_spot_instance_requests").paginate(
                              Filters=[*mine, {"Name": "state",
                                               "Values": ec2i.OPEN_SPOT_STATES}])
                          for r in page["SpotInstanceRequests"]],
    }
    if amis:
        left["amis"] = [i["ImageId"] for i in client.describe_images(
            Owners=["self"], Filters=[{"Name": "image-id", "Values": sorted(amis)}])["Images"]]
    return left


# ------------------------------------------------------------------ the run
@dataclass
class Report:
    plan: Plan
    say: Callable[[str], None]
    clock: Callable[[], float] = time.monotonic
    steps: list[dict] = field(default_factory=list)
    failed: str | None = None
    started: float = 0.0

    @contextlib.contextmanager
    def step(self, name: str, cleanup: bool = False) -> Iterator[dict]:
        """Time one step; a failing cleanup step is noted and the next one still runs."""
        if not cleanup and self.clock() - self.started > RUN_DEADLINE:
            raise ImagebakeError(f"the run passed {RUN_DEADLINE / 60:.0f} min before {name}")
        entry: dict[str, Any] = {"step": name, "ok": False}
        self.steps.append(entry)
        begun = self.clock()
        self.say(f"acceptance: {name} ...")
        try:
            yield entry
            entry["ok"] = True
        except BaseException as exc:  # noqa: B036 - Ctrl-C too: cleanup still runs
            entry["error"] = "interrupted" if isinstance(exc, KeyboardInterrupt) \
                else aws.one_line(exc)
            if not cleanup:
                raise
            self.failed = self.failed or f"{name}: {entry['error']}"
        finally:
            entry["seconds"] = round(self.clock() - begun, 2)
            self.say(f"acceptance: {name} {'done' if entry['ok'] else 'FAILED'} "
                     f"({entry['seconds']} s){': ' + entry['detail'] if 'detail' in entry else ''}")


KEY_DIR = "keys"


def _wait_ready(target: AwsTarget, name: str, clock: Callable[[], float]) -> None:
    """Status until READY (every slave joined), at most READY_AFTER_GROW seconds."""
    deadline = clock() + READY_AFTER_GROW
    while not target.status(state.load(name) or {}).get("ready"):
        if clock() > deadline:
            raise ImagebakeError(f"the grown slave did not join in {READY_AFTER_GROW:.0f} s")
        time.sleep(10)


def _key(client: Any, plan: Plan, tags: list[dict]) -> tuple[str, Path]:
    """A fresh ed25519 key pair for this run: private half 0600 under the state directory,
    public half imported into EC2, tagged at creation."""
    folder = files.private_dir(state.state_dir() / KEY_DIR)
    path = folder / f"{plan.name}.ed25519"
    for old in (path, Path(f"{path}.pub")):
        old.unlink(missing_ok=True)
    try:
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C",
                        f"imagebake-{plan.name}", "-f", str(path)], check=True,
                       capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        raise ImagebakeError(f"ssh-keygen failed: {aws.one_line(exc)}") from None
    key_name = f"imagebake-{plan.name}"
    client.import_key_pair(KeyName=key_name, PublicKeyMaterial=Path(f"{path}.pub").read_bytes(),
                           TagSpecifications=[{"ResourceType": "key-pair", "Tags": tags}])
    return key_name, path


def _forget_key(client: Any, key_name: str, path: Path | None) -> None:
    try:
        client.delete_key_pair(KeyName=key_name)
    finally:
        if path is not None:
            for old in (path, Path(f"{path}.pub")):
                old.unlink(missing_ok=True)


def run(plan: Plan, steps: Steps | None = None,
        session_factory: aws.SessionFactory | None = None,
        say: Callable[[str], None] = print) -> dict:
    """The whole run; always cleans up and sweeps; returns (and writes) the report."""
    steps = steps or Steps()
    counter = CallCounter(session_factory)
    session = aws.make_session(plan.region or None, None, counter.factory)
    client = aws.ec2(session, plan.region)
    owner = preflight.owner(session)
    target = AwsTarget(session_factory=counter.factory, agent=steps.agent, progress=False)
    report = Report(plan, say)
    report.started = report.clock()
    if state.load(plan.name) is not None:
        raise ImagebakeError(f"a cluster named {plan.name!r} is already recorded: "
                             f"`invoke destroy --name {plan.name}` or pass another --name")
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    baked: set[str] = set()
    reused: set[str] = set()
    key_name: str | None = None
    key_path: Path | None = None
    hours: dict[str, float] = {}
    launched_at = None
    try:
        with report.step("bake") as entry:
            result = steps.bake(plan)
            for role, image in (result.get("images") or {}).items():
                ids = {image["id"], *(image.get("copies") or {}).values()}
                (baked if role in (result.get("built") or []) else reused).update(ids)
            entry["detail"] = (f"baked {', '.join(result.get('built') or []) or 'nothing'}; "
                               f"reused {', '.join(result.get('skipped') or []) or 'nothing'}")
        with report.step("key pair") as entry:
            key_name = f"imagebake-{plan.name}"
            key_name, key_path = _key(client, plan, ec2i.tag_list(
                plan.name, "cluster", owner, created, TTL))
            entry["detail"] = key_name
        with report.step("launch") as entry:
            record = target.launch(name=plan.name, slaves=SLAVES, spot=True, ttl=TTL,
                                   key_name=key_name, region=plan.region,
                                   instance_type=plan.instance_type,
                                   master_instance_type=plan.master_type, wait=True)
            launched_at = report.clock()
            record["identity_file"] = str(key_path)
            state.save(record)
            entry["detail"] = (f"master {record['master']['id']} on demand, slaves "
                               f"{', '.join(n['id'] for n in record['nodes'])} spot, "
                               f"{record['az']}")
        with report.step("status") as entry:
            status = target.status(state.load(plan.name) or record)
            if not status.get("ready"):
                raise ImagebakeError("the cluster is not READY")
            entry["detail"] = "READY"
        with report.step("ddfs-load and smoke job") as entry:
            ok, text = steps.smoke(state.load(plan.name) or record)
            lines = text.strip().splitlines() or ["no output"]
            if not ok:
                raise ImagebakeError(lines[-1])
            entry["detail"] = lines[-1]
        with report.step("grow one slave") as entry:
            grown = target.grow(state.load(plan.name) or record, GROWN)
            _wait_ready(target, plan.name, report.clock)
            entry["detail"] = f"{grown['nodes'][-1]['id']} spot, joined"
        with report.step("shrink one slave") as entry:
            entry["detail"] = aws.one_line(steps.shrink(target, state.load(plan.name) or record))
    except BaseException as exc:  # noqa: B036 - cleanup below runs on anything
        report.failed = "interrupted" if isinstance(exc, KeyboardInterrupt) else (
            str(exc) if isinstance(exc, ImagebakeError) else aws.one_line(exc))
    finally:
        with report.step("destroy", cleanup=True) as entry:
            entry["detail"] = target.destroy(plan.name, state.load(plan.name))
            if launched_at is not None:
                hours = {"master": (report.clock() - launched_at) / 3600}
        if key_name is not None:
            with report.step("remove the key pair", cleanup=True):
                _forget_key(client, key_name, key_path)
        doomed = set() if plan.keep_amis else baked
        if doomed:
            with report.step("remove the baked AMIs", cleanup=True) as entry:
                from .bake import images

                gone, _ = images.prune_aws(0, region=plan.region, session=session,
                                           only_ids=doomed)
                entry["detail"] = ", ".join(g["id"] for g in gone) or "none"
        left: dict[str, list[str]] = {}
        with report.step("sweep", cleanup=True) as entry:
            left = sweep(client, plan.name, owner, doomed)
            found = {k: v for k, v in left.items() if v}
            entry["detail"] = ("nothing left" if not found else
                               "LEFT: " + "; ".join(f"{k} {', '.join(v)}"
                                                    for k, v in found.items()))
            if found:
                report.failed = report.failed or f"the sweep found {entry['detail']}"
    return _write(report, counter, left, baked, reused, hours)


def _write(report: Report, counter: CallCounter, left: dict, baked: set[str],
           reused: set[str], hours: dict[str, float]) -> dict:
    plan = report.plan
    slave_hours = (SLAVES + GROWN) * hours.get("master", 0.0)  # an upper bound
    estimate = {
        "slave_spot_usd_per_hour": plan.spot_price,
        "slave_instance_hours_at_most": round(slave_hours, 4),
        "slaves_usd_at_most": (round(slave_hours * plan.spot_price, 4)
                               if plan.spot_price is not None else None),
        "master_instance_hours": round(hours.get("master", 0.0), 4),
        "master_usd": None,
        "note": "the on-demand master's price is not in the EC2 API: multiply its hours by "
                f"the EC2 price of {plan.master_type} in {plan.region}; the bake's build "
                "instances and the AMIs' snapshots are not counted",
    }
    out = {
        "cluster": plan.name, "region": plan.region, "ok": report.failed is None,
        "failed": report.failed,
        "instance_types": {"master": plan.master_type, "slaves": plan.instance_type},
        "steps": report.steps,
        "seconds": round(report.clock() - report.started, 2),
        "ec2_calls": dict(sorted(counter.calls.items())),
        "ec2_calls_total": sum(counter.calls.values()),
        "cost_estimate": estimate,
        "amis": {"baked": sorted(baked), "reused": sorted(reused),
                 "kept": plan.keep_amis or not baked},
        "left": left,
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    plan.report_path.parent.mkdir(parents=True, exist_ok=True)
    plan.report_path.write_text(json.dumps(out, indent=2) + "\n")
    return out
