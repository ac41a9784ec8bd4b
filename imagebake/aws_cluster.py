"""The AWS target: launch, status, grow, ssh, tunnel and destroy a cluster on EC2.

Everything is plain boto3 and tagged ``imagebake:cluster=<name>`` at creation, so
`destroy` finds a cluster by tag even when the local record is lost. Every user
error is one ImagebakeError line, raised before anything is created when it can be.

Tests and the launch benchmark pass ``session_factory`` (to attach botocore event
hooks) and ``readiness`` (moto runs no user data, so no agent answers there).
"""

from __future__ import annotations

import json
import shlex
import subprocess
import time
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions

from . import state
from .aws import inputs, network, userdata
from .aws import instances as ec2i
from .aws import session as aws
from .aws.progress import Steps
from .aws.readiness import Readiness, agent_status, is_ready, master_host_key, node_host_keys
from .bake import images_json_path
from .errors import ImagebakeError

# where `invoke bake --target aws` writes it (imagebake.bake.images_json_path)
DEFAULT_INSTANCE_TYPE = "t2.medium"
DEFAULT_SLAVES = 4
SSH_USER = "ubuntu"
READY_TIMEOUT_BASE = 900.0
READY_TIMEOUT_PER_NODE = 5.0
ROLE_TAG = ec2i.ROLE_TAG
IMDS_TAG = "imagebake:imdsv2"
AWS_ERRORS = (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError)


# ------------------------------------------------------------------ inputs
def _default_amis(region: str, roles: list[str]) -> dict[str, str]:
    """{role: ami} from build/images.json (written by `invoke bake --target aws`)."""
    if not roles:
        return {}
    path = images_json_path()
    hint = "run `invoke bake --target aws` or pass --master-ami and --node-ami"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ImagebakeError(f"no AWS images: {path} does not exist: {hint}") from None
    except (OSError, ValueError) as exc:
        raise ImagebakeError(f"cannot read {path}: {aws.one_line(exc)}: {hint}") from None
    out: dict[str, str] = {}
    for role in roles:
        entry = ((data or {}).get("aws") or {}).get(role) or {}
        ami = entry.get("id")
        if not ami:
            raise ImagebakeError(f"no AWS {role} image in {path}: {hint}")
        baked_in = entry.get("region")
        if baked_in and baked_in != region:
            raise ImagebakeError(
                f"the {role} image {ami} was baked in {baked_in}, not {region}: "
                f"pass --region {baked_in} or --{role}-ami with an AMI of {region}")
        out[role] = ami
    return out


def _check_amis(client: Any, region: str, amis: dict[str, str]) -> dict[str, dict]:
    """Both AMIs exist in REGION, are available and carry the right imagebake:role."""
    ids = sorted(set(amis.values()))
    try:
        images = client.describe_images(ImageIds=ids)["Images"]
    except botocore.exceptions.ClientError as exc:
        if aws.error_code(exc).startswith("InvalidAMIID"):
            raise ImagebakeError(
                f"AMI {' / '.join(ids)} not found in {region}: an AMI belongs to one region; "
                "bake with `invoke bake --target aws` or pass --master-ami/--node-ami") from None
        raise ImagebakeError(aws.explain(exc, "looking up the AMIs", region=region)) from None
    by_id = {i["ImageId"]: i for i in images}
    out = {}
    for role, ami in amis.items():
        image = by_id.get(ami)
        if image is None:
            raise ImagebakeError(f"AMI {ami} not found in {region}: pass --{role}-ami")
        tags = {t["Key"]: t["Value"] for t in image.get("Tags", [])}
        if tags.get(ROLE_TAG) != role:
            found = tags.get(ROLE_TAG)
            what = f"an imagebake {found} image" if found else f"not tagged {ROLE_TAG}"
            raise ImagebakeError(
                f"AMI {ami} is {what}, not a {role} image: pass --{role}-ami with "
                f"an AMI tagged {ROLE_TAG}={role}")
        if image.get("State", "available") != "available":
            raise ImagebakeError(f"AMI {ami} is {image.get('State')}, not available yet")
        out[role] = image
    return out


def _imdsv2(image: dict) -> bool:
    """IMDSv2 only ('required') when the image says it copes: tag imagebake:imdsv2=yes
    (written at bake time) or ImdsSupport v2.0. Trusty's cloud-init 0.7.5 does not."""
    tags = {t["Key"]: t["Value"] for t in image.get("Tags", [])}
    return tags.get(IMDS_TAG, "").lower() == "yes" or image.get("ImdsSupport") == "v2.0"


def _check_instance_types(client: Any, types: list[str], images: dict[str, dict],
                          role_types: dict[str, str]) -> dict[str, dict]:
    wanted = sorted(set(types))
    try:
        found = client.describe_instance_types(InstanceTypes=wanted)["InstanceTypes"]
    except botocore.exceptions.ClientError as exc:
        if aws.error_code(exc) in ("InvalidInstanceType", "InvalidParameterValue"):
            raise ImagebakeError(
                f"unknown instance type {' / '.join(wanted)}: "
                "see `aws ec2 describe-instance-types`, e.g. t3.medium") from None
        raise ImagebakeError(aws.explain(exc, "checking instance types")) from None
    info = {t["InstanceType"]: t for t in found}
    for t in wanted:
        if t not in info:
            raise ImagebakeError(f"unknown instance type {t}: see "
                                 "`aws ec2 describe-instance-types`")
    for role, itype in role_types.items():
        arch = images[role].get("Architecture")
        archs = info[itype].get("ProcessorInfo", {}).get("SupportedArchitectures") or []
        if arch and archs and arch not in archs:
            raise ImagebakeError(
                f"instance type {itype} runs {'/'.join(archs)}, but the {role} AMI is {arch}: "
                "pass another --instance-type")
    return info


def _check_key(client: Any, key_name: str | None, region: str) -> None:
    if not key_name:
        return
    try:
        client.describe_key_pairs(KeyNames=[key_name])
    except botocore.exceptions.ClientError as exc:
        if aws.error_code(exc) == "InvalidKeyPair.NotFound":
            raise ImagebakeError(
                f"key pair {key_name!r} not found in {region}: import it with "
                "`aws ec2 import-key-pair` or pass another --key-name") from None
        raise ImagebakeError(aws.explain(exc, "looking up the key pair", region=region)) \
            from None


def _check_free(client: Any, name: str, region: str) -> None:
    if state.load(name) is not None:
        raise ImagebakeError(
            f"a cluster named {name!r} is already recorded: `invoke destroy --name {name}` "
            "or pick another --name")
    live = ec2i.describe(client, cluster=name, states=ec2i.LIVE_STATES)
    if live:
        raise ImagebakeError(
            f"{len(live)} instance(s) tagged {ec2i.CLUSTER_TAG}={name} exist in {region}: "
            f"`invoke destroy --name {name} --target aws` or pick another --name")


def _owner(session: boto3.Session) -> str:
    try:
        return str(aws.sts(session).get_caller_identity()["Arn"])
    except AWS_ERRORS as exc:
        if aws.error_code(exc) in aws.AUTH_CODES:
            raise ImagebakeError(
                f"AWS rejected your credentials ({aws.error_code(exc)}): "
                "run `aws configure` or set AWS_PROFILE") from None
        raise ImagebakeError(aws.explain(exc, "checking your AWS identity")) from None


def _session(region: str | None, profile: str | None, factory: aws.SessionFactory | None
             ) -> tuple[boto3.Session, str]:
    session = aws.make_session(region, profile, factory)
    region = network.check_region(session, region or session.region_name)
    return session, region


# ------------------------------------------------------------------ launch
def launch(name: str = "imagebake", slaves: Any = 4, workers_per_node: Any = None,
           wait: bool = True, region: str | None = None, profile: str | None = None,
           instance_type: str | None = None, master_instance_type: str | None = None,
           subnet: str | None = None, spot: bool = False, ttl: str | None = None,
           allow_cidr: str | None = None, key_name: str | None = None,
           placement_group: bool = False, keep_on_failure: bool = False,
           master_ami: str | None = None, node_ami: str | None = None, *,
           session_factory: aws.SessionFactory | None = None,
           readiness: Readiness | None = None, progress: bool | None = None) -> dict:
    """Start one master and SLAVES nodes; returns the saved record."""
    # Flags that need no AWS call first.
    name = state.check_name(name)
    count = inputs.slave_count(DEFAULT_SLAVES if slaves is None else slaves)
    workers = inputs.workers(workers_per_node)
    ttl_s = inputs.ttl_seconds(ttl)
    cidr = inputs.allow_cidr(allow_cidr) if allow_cidr is not None else None
    node_type = inputs.instance_type(instance_type or DEFAULT_INSTANCE_TYPE, "--instance-type")
    master_type = inputs.instance_type(master_instance_type or node_type,
                                       "--master-instance-type")
    key = inputs.key_name(key_name)
    subnet = inputs.resource_id(subnet, "subnet", "--subnet")
    inputs.resource_id(master_ami, "ami", "--master-ami")
    inputs.resource_id(node_ami, "ami", "--node-ami")

    # Then what needs AWS, still creating nothing.
    session, region = _session(region, profile, session_factory)
    owner = _owner(session)
    client = aws.ec2(session, region)
    given = {k: v for k, v in (("master", master_ami), ("node", node_ami)) if v}
    amis = _default_amis(region, [r for r in ("master", "node") if r not in given])
    amis.update(given)
    images = _check_amis(client, region, amis)
    _check_instance_types(client, [master_type, node_type], images,
                          {"master": master_type, "node": node_type})
    _check_key(client, key, region)
    where = network.find_placement(client, region, subnet, [master_type, node_type])
    _check_free(client, name, region)
    if cidr is None:
        cidr = network.caller_cidr()

    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    ttl_deadline = int(time.time()) + ttl_s if ttl_s else None
    mspec = userdata.master_spec(name, count, workers, ttl_deadline)
    record: dict[str, Any] = {
        "target": "aws", "name": name, "region": region, "profile": profile,
        "az": where.az, "subnet": where.subnet, "vpc": where.vpc,
        "security_group": None, "placement_group": None,
        "instance_type": node_type, "master_instance_type": master_type,
        "amis": amis, "imdsv2": {r: _imdsv2(i) for r, i in images.items()},
        "spot": bool(spot), "key_name": key, "allow_cidr": cidr, "owner": owner,
        "ttl": ttl, "ttl_deadline": ttl_deadline, "workers_per_node": workers,
        "token": mspec["token"], "cookie": mspec["cookie"], "created_at": created,
        "master": None, "nodes": [], "ids": [], "ready": False,
    }
    tags = {role: ec2i.tag_list(name, role, owner, created, ttl)
            for role in ("master", "node", "cluster")}
    state.save(record)  # first: a crash leaves a record that `destroy` can use
    doing = "creating the security group"
    started = time.monotonic()
    try:
        with Steps(f"launching {name} in {where.az}", progress) as steps:
            steps.step("creating group")
            record["security_group"] = network.create_group(client, name, where.vpc, cidr,
                                                            tags["cluster"])
            if placement_group:
                doing = "creating the placement group"
                record["placement_group"] = network.create_placement_group(
                    client, name, tags["cluster"])
            doing = f"starting the master ({master_type})"
            master = _run(client, record, "master", master_type, 1, userdata.render(mspec),
                          tags["master"])[0]
            record["master"] = master
            record["ids"] = [master["id"]]
            state.save(record)
            steps.step(f"master pending ({master['id']}, {master['private_ip']})")
            doing = f"starting {count} slave(s) ({node_type})"
            nodes = _run(client, record, "node", node_type, count,
                         userdata.render(userdata.node_spec(record)), tags["node"])
            record["nodes"] = nodes
            record["ids"] = [master["id"]] + [n["id"] for n in nodes]
            state.save(record)
            steps.step(f"slaves pending ({count})")
            if wait:
                doing = "waiting for the instances to run"
                _wait_running(client, record, steps)
                doing = "waiting for the agents"
                steps.step("waiting for agents")
                _wait_ready(record, readiness or agent_status, started)
                steps.step("ready")
    except BaseException as exc:  # noqa: B036 - clean up on anything, Ctrl-C included
        _fail(session, record, exc, doing, keep_on_failure,
              dict(instance_type=node_type if "slave" in doing else master_type,
                   az=where.az, spot=spot, region=region))
    record["launch_seconds"] = round(time.monotonic() - started, 2)
    state.save(record)
    return record


def _run(client: Any, record: dict, role: str, itype: str, count: int, text: str,
         tags: list[dict]) -> list[dict]:
    """COUNT instances of ROLE in one RunInstances call."""
    args = ec2i.run_args(
        ami=record["amis"][role], instance_type=itype, count=count, subnet=record["subnet"],
        group=record["security_group"], user_data=text, imdsv2=record["imdsv2"][role],
        tags=tags, key_name=record.get("key_name"), spot=record.get("spot", False),
        placement_group=record.get("placement_group"))
    started = client.run_instances(**args)["Instances"]
    return [_entry(i) for i in started]


def _entry(instance: dict) -> dict:
    info = ec2i.brief(instance)
    return {k: info[k] for k in ("id", "private_ip", "public_ip", "state", "az")}


def _wait_running(client: Any, record: dict, steps: Steps) -> None:
    """instance_running waiter over all ids, then one batched describe for addresses."""
    ids = record["ids"]
    try:
        ec2i.wait_running(client, ids)
    except botocore.exceptions.WaiterError as exc:
        gone = [ec2i.brief(i) for i in ec2i.describe(client, ids=ids)
                if i["State"]["Name"] != "running"]
        reason = next((g["state_reason"] for g in gone if g["state_reason"]), None)
        raise ImagebakeError(
            f"{len(gone)} instance(s) did not start ({reason or aws.one_line(exc)})") from None
    _refresh(client, record)
    steps.step(f"master running ({record['master'].get('public_ip')}), "
               f"slaves running ({len(record['nodes'])})")
    state.save(record)


def _refresh(client: Any, record: dict) -> list[dict]:
    """Update the record's addresses and states from one DescribeInstances."""
    found = {i["InstanceId"]: i for i in ec2i.describe(client, ids=record["ids"])}
    for entry in [record["master"], *record["nodes"]]:
        instance = found.get(entry["id"])
        if instance is not None:
            entry.update(_entry(instance))
    return list(found.values())


def _address(entry: dict) -> str:
    return entry.get("public_ip") or entry["private_ip"]


def _wait_ready(record: dict, readiness: Readiness, started: float) -> None:
    """Poll the master agent (signed status call) until every slave joined."""
    expected = len(record["nodes"])
    deadline = time.monotonic() + READY_TIMEOUT_BASE + READY_TIMEOUT_PER_NODE * expected
    delay = 1.0
    reply = None
    while True:
        reply = readiness(_address(record["master"]), network.JOIN_PORT, record)
        if is_ready(reply, expected):
            break
        if time.monotonic() > deadline:
            joined = (reply or {}).get("joined")
            raise ImagebakeError(
                f"cluster {record['name']!r} not ready after "
                f"{int(time.monotonic() - started)}s "
                f"({'agent unreachable' if reply is None else f'{joined}/{expected} joined'})")
        time.sleep(delay)
        delay = min(delay * 1.5, 10.0)
    _remember_keys(record, reply)
    record["ready"] = True
    record["ready_seconds"] = round(time.monotonic() - started, 2)


def _fail(session: boto3.Session, record: dict, exc: BaseException, doing: str,
          keep: bool, ctx: dict) -> None:
    """Clean up a half-done launch (unless KEEP) and raise one line."""
    name = record["name"]
    if isinstance(exc, ImagebakeError):
        why = str(exc)
    elif isinstance(exc, KeyboardInterrupt):
        why = "interrupted"
    elif isinstance(exc, AWS_ERRORS):
        why = aws.explain(exc, doing, **ctx)
    else:
        why = None
    if keep:
        record["failed"] = why or aws.one_line(exc)
        state.save(record)
        if why is None:
            raise exc
        raise ImagebakeError(
            f"launch failed: {why}; kept what was started (--keep-on-failure): "
            f"`invoke destroy --name {name}` removes it") from None
    try:
        ec2i.remove_cluster(session, record["region"], name,
                            placement_group=record.get("placement_group"),
                            search_placement=False)
    except BaseException as cleanup:  # noqa: B036
        record["failed"] = why or aws.one_line(exc)
        state.save(record)
        raise ImagebakeError(
            f"launch failed: {why or aws.one_line(exc)}; cleanup failed too "
            f"({aws.one_line(cleanup)}): run `invoke destroy --name {name} --target aws`"
        ) from None
    state.remove(name)
    _known_hosts(name).unlink(missing_ok=True)
    if why is None:
        raise exc
    raise ImagebakeError(f"launch failed: {why}; removed what was started") from None


# ------------------------------------------------------------------ keys
def _known_hosts(name: str) -> Path:
    return state.state_dir() / f"{state.check_name(name)}.known_hosts"


def _remember_keys(record: dict, reply: dict | None) -> None:
    """Pin the host keys the master reported over the signed status call."""
    master_key = master_host_key(reply)
    if master_key:
        record["master_host_key"] = master_key
    nodes = node_host_keys(reply)
    if nodes:
        record["node_host_keys"] = {**record.get("node_host_keys", {}), **nodes}
    lines = []
    if record.get("master_host_key"):
        hosts = [h for h in (record["master"].get("public_ip"),
                             record["master"].get("private_ip")) if h]
        lines.append(f"{','.join(hosts)} {record['master_host_key']}")
    for address, key in sorted(record.get("node_host_keys", {}).items()):
        lines.append(f"{address} {key}")
    if lines:
        path = _known_hosts(record["name"])
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.write_text("\n".join(lines) + "\n")


# ------------------------------------------------------------------ other tasks
def summary(record: dict) -> str:
    master = record.get("master") or {}
    name = record["name"]
    state_word = "ready" if record.get("ready") else "launched (agents not checked yet)"
    lines = [
        f"cluster {name} (aws {record['region']} {record['az']}, {record['subnet']}, "
        f"group {record.get('security_group')}): {state_word}",
        f"  master  {master.get('id')}  {master.get('public_ip') or '-'}  "
        f"({master.get('private_ip')}, {record.get('master_instance_type')})",
        f"  slaves  {len(record.get('nodes', []))} x {record.get('instance_type')}"
        f"{' spot' if record.get('spot') else ''}",
    ]
    if record.get("ttl_deadline"):
        until = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(record["ttl_deadline"]))
        lines.append(f"  powers off at {until} (--ttl {record.get('ttl')})")
    lines.append(f"  next: invoke status --name {name} | invoke tunnel --name {name} "
                 f"| invoke destroy --name {name}")
    return "\n".join(lines)


def status(record: dict, *, session_factory: aws.SessionFactory | None = None,
           readiness: Readiness | None = None) -> dict:
    """Instance states from one DescribeInstances, plus the master agent's report."""
    session = aws.make_session(record["region"], record.get("profile"), session_factory)
    client = aws.ec2(session, record["region"])
    try:
        found = {i["InstanceId"]: ec2i.brief(i)
                 for i in ec2i.describe(client, cluster=record["name"])}
    except AWS_ERRORS as exc:
        raise ImagebakeError(aws.explain(exc, "describing the cluster",
                                         region=record["region"])) from None
    master_entry = record.get("master") or {}
    master = found.get(master_entry.get("id"), {**master_entry, "state": "missing"})
    reply = None
    if master.get("state") == "running":
        reply = (readiness or agent_status)(_address(master), network.JOIN_PORT, record)
    by_address = {n.get("address"): n for n in (reply or {}).get("nodes", [])
                  if isinstance(n, dict)}
    nodes = []
    for entry in record.get("nodes", []):
        info = found.get(entry["id"], {**entry, "state": "missing"})
        joined = by_address.get(info.get("private_ip"))
        nodes.append({
            "id": entry["id"], "hostname": (joined or {}).get("hostname") or entry["id"],
            "address": info.get("private_ip"), "public_ip": info.get("public_ip"),
            "state": info["state"], "joined": joined is not None,
            "workers": (joined or {}).get("cores"),
        })
    extra = sorted(i for i, b in found.items()
                   if i not in record.get("ids", []) and b["state"] != "terminated")
    missing = [n["id"] for n in nodes if n["state"] != "running"]
    ready = (master.get("state") == "running" and not missing
             and is_ready(reply, len(nodes))
             and all(n["joined"] for n in nodes))
    if reply is not None:
        _remember_keys(record, reply)
    if ready != record.get("ready") or reply is not None:
        record["ready"] = ready
        state.save(record)
    public = master.get("public_ip")
    return {
        "name": record["name"], "target": "aws", "ready": ready,
        "region": record["region"], "az": record["az"], "subnet": record["subnet"],
        "security_group": record.get("security_group"),
        "master": {"id": master.get("id"), "hostname": "master", "address": public,
                   "private_ip": master.get("private_ip"), "state": master.get("state"),
                   "agent": reply, "web_ui": f"http://{public}:8989/" if public else None},
        "nodes": nodes, "missing": missing, "untracked": extra,
        "agent_reachable": reply is not None,
    }


def grow(record: dict, slaves: Any = 1, *, session_factory: aws.SessionFactory | None = None
         ) -> dict:
    """SLAVES more nodes with the cluster's token, cookie and master address."""
    count = inputs.slave_count(1 if slaves is None else slaves)
    have = len(record.get("nodes", []))
    if have + count > inputs.MAX_SLAVES:
        raise ImagebakeError(
            f"a cluster holds at most {inputs.MAX_SLAVES} slaves ({have} now): "
            f"add at most {inputs.MAX_SLAVES - have}")
    session = aws.make_session(record["region"], record.get("profile"), session_factory)
    client = aws.ec2(session, record["region"])
    master = (record.get("master") or {}).get("id")
    live = {i["InstanceId"]: i["State"]["Name"]
            for i in ec2i.describe(client, cluster=record["name"], states=ec2i.LIVE_STATES)}
    if live.get(master) != "running":
        raise ImagebakeError(
            f"the master of {record['name']!r} is {live.get(master, 'gone')}: cannot grow; "
            f"`invoke destroy --name {record['name']}` and launch again")
    owner = record.get("owner") or _owner(session)
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    tags = ec2i.tag_list(record["name"], "node", owner, created, record.get("ttl"))
    new: list[dict] = []
    try:
        new = _run(client, record, "node", record["instance_type"], count,
                   userdata.render(userdata.node_spec(record)), tags)
        ids = [n["id"] for n in new]
        ec2i.wait_running(client, ids)
        fresh = {i["InstanceId"]: i for i in ec2i.describe(client, ids=ids)}
        new = [_entry(fresh[n["id"]]) if n["id"] in fresh else n for n in new]
    except BaseException as exc:  # noqa: B036
        if new:
            ec2i.remove_cluster(session, record["region"], record["name"],
                                only_ids=[n["id"] for n in new])
        if isinstance(exc, AWS_ERRORS):
            raise ImagebakeError("grow failed: " + aws.explain(
                exc, f"starting {count} slave(s)", instance_type=record["instance_type"],
                az=record["az"], spot=record.get("spot", False), region=record["region"])
                + "; removed the new instances") from None
        if isinstance(exc, KeyboardInterrupt):
            raise ImagebakeError("grow interrupted; removed the new instances") from None
        raise
    record["nodes"] = record.get("nodes", []) + new
    record["ids"] = record.get("ids", []) + [n["id"] for n in new]
    record["ready"] = False
    state.save(record)
    return record


def destroy(name: str, record: dict | None = None, *,
            session_factory: aws.SessionFactory | None = None) -> str:
    """Remove everything tagged imagebake:cluster=NAME; safe to repeat."""
    name = state.check_name(name)
    region = (record or {}).get("region")
    session = aws.make_session(region, (record or {}).get("profile"), session_factory)
    region = region or session.region_name
    try:
        done = ec2i.remove_cluster(session, region, name,
                                   placement_group=(record or {}).get("placement_group"),
                                   search_placement=record is None)
    except AWS_ERRORS as exc:
        raise ImagebakeError(aws.explain(exc, f"destroying {name}", region=region)) from None
    had_record = state.remove(name)
    _known_hosts(name).unlink(missing_ok=True)
    notes = f" ({'; '.join(done.notes)})" if done.notes else ""
    if done.empty:
        local = "; removed the local record" if had_record else ""
        return f"nothing to destroy: nothing tagged {ec2i.CLUSTER_TAG}={name} in {region}" \
               f"{local}{notes}"
    return f"destroyed {name} in {region}: {done.describe()}{notes}"


def _ssh_base(record: dict) -> list[str]:
    path = _known_hosts(record["name"])
    if not record.get("master_host_key") or not path.exists():
        raise ImagebakeError(
            f"the master's host key is not known yet: wait until "
            f"`invoke status --name {record['name']}` says READY, then retry")
    return ["ssh", "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={path}"]


def _master_target(record: dict) -> str:
    master = record.get("master") or {}
    address = master.get("public_ip")
    if not address:
        raise ImagebakeError(f"the master of {record['name']!r} has no public address")
    return f"{SSH_USER}@{address}"


def ssh_argv(record: dict, node: str | None = None) -> list[str]:
    """ssh to the master (or, through it, to a node) with the pinned host keys."""
    base = _ssh_base(record)
    target = _master_target(record)
    if node in (None, "", "master"):
        return [*base, target]
    nodes = record.get("nodes", [])
    entry = next((n for i, n in enumerate(nodes, 1)
                  if node in (n["id"], n.get("private_ip"), str(i), f"node{i}")), None)
    if entry is None:
        raise ImagebakeError(
            f"no node {node!r} in {record['name']!r}: pass an instance id, a private "
            f"address or a number 1-{len(nodes)}")
    if entry.get("private_ip") not in record.get("node_host_keys", {}):
        raise ImagebakeError(
            f"the host key of node {node} is not known: wait until `invoke status --name "
            f"{record['name']}` says READY, then retry")
    jump = shlex.join([*base, "-W", "%h:%p", target])
    return [*base, "-o", f"ProxyCommand={jump}", f"{SSH_USER}@{entry['private_ip']}"]


def tunnel(record: dict) -> str:
    """Forward localhost:8989 to the master's Disco web UI (ssh in the background)."""
    argv = [*_ssh_base(record), "-f", "-N", "-o", "ExitOnForwardFailure=yes",
            "-L", f"{network.DISCO_PORT}:localhost:{network.DISCO_PORT}",
            _master_target(record)]
    try:
        result = subprocess.run(argv, check=False, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ImagebakeError(f"ssh tunnel failed: {aws.one_line(exc)}") from None
    if result.returncode != 0:
        raise ImagebakeError(
            f"ssh tunnel failed (exit {result.returncode}): is local port "
            f"{network.DISCO_PORT} free and your key loaded (ssh-add)?")
    return f"http://localhost:{network.DISCO_PORT}/"


def master_exec(record: dict, command: str, user: str = "root",
                stdin=None) -> tuple[int, str]:
    """Run a shell command on the master over ssh (pinned host key) as USER via sudo,
    optionally fed from the binary file STDIN; returns (exit code, output)."""
    remote = f"sudo -u {shlex.quote(user)} -H sh -c {shlex.quote(command)}"
    argv = [*_ssh_base(record), "-o", "BatchMode=yes", _master_target(record), remote]
    try:
        proc = subprocess.run(argv, stdin=stdin, capture_output=True, timeout=3600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ImagebakeError(f"ssh to the master failed: {aws.one_line(exc)}") from None
    return proc.returncode, (proc.stdout + proc.stderr).decode("utf-8", "replace")
