"""The AWS target: launch, status, grow and destroy a cluster on EC2 (the orchestration).

Everything is plain boto3 and tagged ``imagebake:cluster=<name>`` at creation, so
`destroy` finds a cluster by tag even when the local record is lost. Input is checked
first (inputs.py without AWS, preflight.py with read-only calls), before anything is
created; output is report.py's; SSH access is ssh.py's.

Tests and the launch benchmark construct AwsTarget with ``session_factory`` (to attach
botocore event hooks) and ``agent`` (an AgentClient of their own: moto runs no user data,
so no agent answers).
"""

from __future__ import annotations

import time
from typing import Any, BinaryIO

import boto3
import botocore.exceptions

from ... import durations, ports, state
from ...agent_client import AgentClient
from ...clients import aws
from ...errors import ImagebakeError
from ...progress import Steps
from ..base import Member, Target
from ..ready import cluster_ready
from . import dryrun, hostkeys, inputs, network, preflight, report, ssh, userdata
from . import instances as ec2i
from .plan import AwsRecord, LaunchPlan

DEFAULT_INSTANCE_TYPE = "t2.medium"
DEFAULT_SLAVES = 4
READY_TIMEOUT_BASE = 900.0
READY_TIMEOUT_PER_NODE = 5.0
AWS_ERRORS = preflight.AWS_ERRORS
LAUNCH_OPTIONS = ("region", "profile", "instance_type", "master_instance_type", "subnet",
                  "spot", "spot_master", "ttl", "allow_cidr", "allow_world", "key_name",
                  "placement_group", "keep_on_failure", "master_ami", "node_ami", "idle_stop")


class AwsTarget(Target):
    name = "aws"
    launch_options = LAUNCH_OPTIONS
    default_slaves = DEFAULT_SLAVES

    def __init__(self, session_factory: aws.SessionFactory | None = None,
                 agent: AgentClient | None = None, progress: bool | None = None) -> None:
        super().__init__(agent)
        self.session_factory = session_factory
        self.progress = progress

    def _session(self, record: dict | None) -> boto3.Session:
        return aws.make_session((record or {}).get("region"), (record or {}).get("profile"),
                                self.session_factory)

    # ------------------------------------------------------------------ launch
    def _check_launch(self, name: str, slaves: Any, workers_per_node: Any,
                      options: dict[str, Any]) -> LaunchPlan:
        o = {k: options.get(k) for k in LAUNCH_OPTIONS}
        # Flags that need no AWS call first.
        count = inputs.slave_count(DEFAULT_SLAVES if slaves is None else slaves)
        workers = inputs.workers(workers_per_node)
        ttl_s = durations.ttl_seconds(o["ttl"])
        idle_s = durations.idle_stop_seconds(o["idle_stop"])
        cidr = inputs.checked_cidr(o["allow_cidr"], bool(o["allow_world"]), "--allow-cidr")
        node_type = inputs.instance_type(o["instance_type"] or DEFAULT_INSTANCE_TYPE,
                                         "--instance-type")
        master_type = inputs.instance_type(o["master_instance_type"] or node_type,
                                           "--master-instance-type")
        key = inputs.key_name(o["key_name"])
        subnet = inputs.resource_id(o["subnet"], "subnet", "--subnet")
        inputs.resource_id(o["master_ami"], "ami", "--master-ami")
        inputs.resource_id(o["node_ami"], "ami", "--node-ami")
        spot_roles = inputs.spot_roles(bool(o["spot"]), bool(o["spot_master"]))
        role_types = {"master": master_type, "node": node_type}

        # Then what needs AWS, still creating nothing.
        session, region = preflight.session(o["region"], o["profile"], self.session_factory)
        owner = preflight.owner(session)
        client = aws.ec2(session, region)
        given = {k: v for k, v in (("master", o["master_ami"]), ("node", o["node_ami"])) if v}
        amis = preflight.default_amis(region, [r for r in ("master", "node") if r not in given])
        amis.update(given)
        images = preflight.amis(client, region, amis)
        types = preflight.instance_types(client, [master_type, node_type], images, role_types)
        preflight.placement_strategy(types, role_types, bool(o["placement_group"]),
                                     spot_roles)
        preflight.spot_usage(types, role_types, spot_roles)
        preflight.key_pair(client, key, region)
        where = network.find_placement(client, region, subnet, [master_type, node_type])
        preflight.spot_offered(client, region, where.az,
                               sorted({role_types[r] for r in spot_roles}))
        preflight.name_free(client, name, region, owner, where.vpc)
        if cidr is None:
            cidr = network.caller_cidr()
        return LaunchPlan(
            name=name, count=count, workers=workers, ttl=o["ttl"], ttl_seconds=ttl_s,
            cidr=cidr, node_type=node_type, master_type=master_type, key_name=key,
            spot="node" in spot_roles, spot_master="master" in spot_roles,
            placement_group=bool(o["placement_group"]),
            keep_on_failure=bool(o["keep_on_failure"]), profile=o["profile"],
            session=session, region=region, client=client, owner=owner, amis=amis,
            images=images, where=where, idle_stop=idle_s)

    def _launch(self, plan: LaunchPlan, wait: bool) -> dict:
        name, client, where = plan.name, plan.client, plan.where
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        ttl_deadline = int(time.time()) + plan.ttl_seconds if plan.ttl_seconds else None
        mspec = userdata.master_spec(name, plan.count, plan.workers, ttl_deadline,
                                     idle_stop=plan.idle_stop)
        record: AwsRecord = {
            "target": "aws", "name": name, "region": plan.region, "profile": plan.profile,
            "az": where.az, "subnet": where.subnet, "vpc": where.vpc,
            "security_group": None, "placement_group": None,
            "instance_type": plan.node_type, "master_instance_type": plan.master_type,
            "amis": plan.amis,
            "imdsv2": {r: preflight.imdsv2(i) for r, i in plan.images.items()},
            "spot": plan.spot, "spot_master": plan.spot_master,
            "key_name": plan.key_name, "allow_cidr": plan.cidr,
            "owner": plan.owner, "ttl": plan.ttl, "ttl_deadline": ttl_deadline,
            "idle_stop": plan.idle_stop,
            "workers_per_node": plan.workers,
            "token": mspec["token"], "cookie": mspec["cookie"], "created_at": created,
            "launcher_key": mspec["launcher_key"],
            "master": None, "nodes": [], "ids": [], "ready": False,
        }
        tags = {role: ec2i.tag_list(name, role, plan.owner, created, plan.ttl)
                for role in ("master", "node", "cluster")}
        state.save(record)  # first: a crash leaves a record that `destroy` can use
        doing = "creating the security group"
        role = "master"  # whose instances an error names (type, spot) until the slaves start
        started = time.monotonic()
        try:
            with Steps(f"launching {name} in {where.az}", self.progress) as steps:
                steps.step("creating group")
                record["security_group"] = network.create_group(client, name, where.vpc,
                                                                plan.cidr, tags["cluster"])
                if plan.placement_group:
                    doing = "creating the placement group"
                    record["placement_group"] = network.create_placement_group(
                        client, name, tags["cluster"])
                doing = f"starting the master ({plan.master_type})"
                master = _run(client, record, "master", plan.master_type, 1,
                              userdata.render(mspec), tags["master"])[0]
                record["master"] = master
                record["ids"] = [master["id"]]
                state.save(record)
                steps.step(f"master pending ({master['id']}, {master['private_ip']})")
                doing = f"starting {plan.count} slave(s) ({plan.node_type})"
                role = "node"
                nodes = _run(client, record, "node", plan.node_type, plan.count,
                             userdata.render(userdata.node_spec(record)), tags["node"])
                record["nodes"] = _named(record, nodes)
                record["ids"] = [master["id"]] + [n["id"] for n in nodes]
                state.save(record)
                steps.step(f"slaves pending ({plan.count})")
                if wait:
                    doing = "waiting for the instances to run"
                    _wait_running(client, record, steps)
                    doing = "waiting for the agents"
                    steps.step("waiting for agents")
                    _wait_ready(record, self.agent, started)
                    steps.step("ready")
        except BaseException as exc:  # noqa: B036 - clean up on anything, Ctrl-C included
            _fail(plan.session, record, exc, doing, plan.keep_on_failure,
                  dict(instance_type=plan.node_type if role == "node" else plan.master_type,
                       az=where.az, spot=_spot(record, role), region=plan.region))
        record["launch_seconds"] = round(time.monotonic() - started, 2)
        state.save(record)
        return record

    # ------------------------------------------------------------------ status
    def status(self, record: dict) -> dict:
        """Instance states from one DescribeInstances, plus the master agent's report.
        Only reads the record; host keys a reply adds are pinned in the known_hosts file
        (hostkeys.remember), under the addresses DescribeInstances reports."""
        session = self._session(record)
        client = aws.ec2(session, record["region"])
        owner = _owner(record, session)
        try:
            found = {i["InstanceId"]: ec2i.brief(i)
                     for i in ec2i.describe(client, cluster=record["name"], owner=owner)}
        except AWS_ERRORS as exc:
            raise ImagebakeError(aws.explain(exc, "describing the cluster",
                                             region=record["region"])) from None
        master_entry = record.get("master") or {}
        master = found.get(master_entry.get("id"), {**master_entry, "state": "missing"})
        reply = None
        if master.get("state") == "running":
            reply = self.agent.status(_address(master), ports.AGENT, record)
        result = report.status_report(record, found, reply)
        warning = access_warning(record)
        if warning:
            result["warnings"] = [warning]
        if reply is not None:
            hostkeys.remember(record, reply, found)
        return result

    def addressed(self, record: dict) -> dict:
        """RECORD, with the master's public address asked of EC2 (one DescribeInstances)
        where the record has none: a --no-wait launch records RunInstances' answer, given
        before EC2 assigns it, and `status` only reads the record. Nothing is saved."""
        master = record.get("master") or {}
        if master.get("public_ip") or not master.get("id"):
            return record
        session = self._session(record)
        client = aws.ec2(session, record["region"])
        try:
            found = ec2i.describe(client, ids=[master["id"]], cluster=record["name"],
                                  owner=_owner(record, session))
        except AWS_ERRORS:
            return record  # the caller's own check names what is missing
        if not found:
            return record
        info = ec2i.brief(found[0])
        return {**record, "master": {**master, "public_ip": info["public_ip"],
                                     "private_ip": info["private_ip"]}}

    def agent_endpoint(self, record: dict) -> tuple[str, int] | None:
        """The master's address (public when it has one) and the agent's join port."""
        master = self.addressed(record).get("master") or {}
        if not (master.get("public_ip") or master.get("private_ip")):
            return None
        return _address(master), ports.AGENT

    # ------------------------------------------------------------------ grow
    def _check_grow(self, record: dict, slaves: Any) -> int:
        count = inputs.slave_count(1 if slaves is None else slaves)
        have = len(record.get("nodes", []))
        if have + count > inputs.MAX_SLAVES:
            raise ImagebakeError(
                f"a cluster holds at most {inputs.MAX_SLAVES} slaves ({have} now): "
                f"add at most {inputs.MAX_SLAVES - have}")
        return count

    def _grow(self, record: dict, count: int) -> dict:
        """COUNT more nodes with the cluster's token, cookie and master address."""
        session = self._session(record)
        client = aws.ec2(session, record["region"])
        master = (record.get("master") or {}).get("id")
        owner = _owner(record, session)
        live = {i["InstanceId"]: i["State"]["Name"]
                for i in ec2i.describe(client, cluster=record["name"], owner=owner,
                                       states=ec2i.LIVE_STATES)}
        if live.get(master) != "running":
            raise ImagebakeError(
                f"the master of {record['name']!r} is {live.get(master, 'gone')}: cannot grow; "
                f"`invoke destroy --name {record['name']}` and launch again")
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        tags = ec2i.tag_list(record["name"], "node", owner, created, record.get("ttl"))
        new: list[state.Node] = []
        try:
            new = _run(client, record, "node", record["instance_type"], count,
                       userdata.render(userdata.node_spec(record)), tags)
            ids = [n["id"] for n in new]
            ec2i.wait_running(client, ids)
            fresh = {i["InstanceId"]: i for i in ec2i.describe(client, ids=ids)}
            new = _named(record, [_entry(fresh[n["id"]]) if n["id"] in fresh else n
                                  for n in new])
        except BaseException as exc:  # noqa: B036
            if new:
                ec2i.remove_cluster(session, record["region"], record["name"], owner=owner,
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

    # ------------------------------------------------------------------ images
    def image_kind(self) -> Any:
        from .images import KIND

        return KIND

    def list_images(self, region: str | None = None, profile: str | None = None) -> list[dict]:
        from ...bake import images

        return images.list_aws(region, profile)

    def prune_images(self, keep: int, dry_run: bool = False, region: str | None = None,
                     profile: str | None = None, only_ids: set[str] | None = None
                     ) -> tuple[list[dict], list[dict]]:
        from ...bake import images

        return images.prune_aws(keep, dry_run, region, profile, only_ids=only_ids)

    def verify_images(self, ami: str | None = None, host: str | None = None) -> int:
        """On an instance booted from AMI (--host), or, without --host, the AMIs of
        build/images.json booted as a one-slave cluster (each gets its agent and its
        pinned host key), checked over ssh, then torn down."""
        from ...bake import verify

        if host:
            return verify.verify_host(host, ami)
        if ami:
            raise ImagebakeError("--ami goes with --host; without both, verify boots the "
                                 "AMIs in build/images.json itself")
        return self._verify_boot()

    def _verify_boot(self, region: str | None = None) -> int:
        import os
        import sys
        import tempfile
        from pathlib import Path

        from ...bake import verify

        client = aws.ec2(self._session({"region": region}))
        tag = f"verify{os.getpid() % 100000}"
        key_name = f"imagebake-{tag}"
        with tempfile.TemporaryDirectory() as tmp:
            key = Path(tmp) / "id_ed25519"
            material = client.create_key_pair(KeyName=key_name,
                                              KeyType="ed25519")["KeyMaterial"]
            key.touch(mode=0o600)
            key.write_text(material)
            try:
                record = self.launch(name=tag, slaves=1, region=region, key_name=key_name,
                                     ttl="2h")
                return verify.verify_booted(record["master"]["public_ip"],
                                            record["nodes"][0]["private_ip"], key,
                                            hostkeys.known_hosts_path(tag), Path(tmp))
            finally:
                print(self.destroy(tag, state.load(tag)), file=sys.stderr)
                client.delete_key_pair(KeyName=key_name)

    # ------------------------------------------------------------------ shrink
    def members(self, record: dict, status_reply: dict | None = None) -> list[Member]:
        """Slaves are the record's node01.. (state.Node); their names in the cluster come
        from the master agent's membership, matched by the private address EC2 reports."""
        joined = {}
        for node in (status_reply or {}).get("nodes") or []:
            if isinstance(node, dict) and node.get("address"):
                joined[node["address"]] = node.get("hostname")
        return [Member(entry["name"], joined.get(entry.get("private_ip")), entry)
                for entry in record.get("nodes", [])]

    def remove_members(self, record: dict, chosen: list[Member]) -> str:
        """Terminate exactly CHOSEN's instances, in one call, and only those of this
        owner's cluster: a stale record never terminates another's."""
        session = self._session(record)
        client = aws.ec2(session, record["region"])
        owner = _owner(record, session)
        wanted = [m.entry["id"] for m in chosen]
        mine = {i["InstanceId"] for i in ec2i.describe(client, ids=wanted,
                                                       cluster=record["name"], owner=owner)}
        ids = [i for i in wanted if i in mine]
        ec2i.terminate(client, ids)
        gone = [i for i in wanted if i not in mine]
        return (f"terminated {len(ids)} instance(s) ({', '.join(ids)})"
                + (f"; not found in the cluster: {', '.join(gone)}" if gone else ""))

    def forget_members(self, record: dict, chosen: list[Member]) -> None:
        ids = {m.entry["id"] for m in chosen}
        record["nodes"] = [n for n in record["nodes"] if n["id"] not in ids]
        record["ids"] = [i for i in record.get("ids", []) if i not in ids]
        hostkeys.remember(record, None)  # rewrites the pinned known_hosts without them
        state.save(record)

    def search_refusal(self) -> str | None:
        return search_refusal(self.session_factory)

    # ------------------------------------------------------------------ destroy
    def _destroy(self, name: str, record: dict | None) -> str:
        """Remove everything tagged imagebake:cluster=NAME and owned by the caller (the
        owner tag, preflight.owner); safe to repeat."""
        region = (record or {}).get("region")
        session = self._session(record)
        region = region or session.region_name
        owner = preflight.owner(session)
        try:
            done = ec2i.remove_cluster(session, region, name, owner=owner,
                                       placement_group=(record or {}).get("placement_group"),
                                       search_placement=record is None)
        except AWS_ERRORS as exc:
            raise ImagebakeError(aws.explain(exc, f"destroying {name}", region=region)) from None
        had_record = state.remove(name)
        hostkeys.forget(name)
        notes = f" ({'; '.join(done.notes)})" if done.notes else ""
        if done.empty:
            local = "; removed the local record" if had_record else ""
            return (f"nothing to destroy: nothing of yours tagged {ec2i.CLUSTER_TAG}={name} "
                    f"in {region}{local}{notes}")
        return f"destroyed {name} in {region}: {done.describe()}{notes}"

    # ------------------------------------------------------------------ dry run
    def _dry_run(self, plan: LaunchPlan) -> tuple[str, bool]:
        """Every call launch makes that creates something, sent with DryRun=True; AWS
        answers DryRunOperation (allowed) or UnauthorizedOperation (missing)."""
        checks = dryrun.check_launch(plan)
        return dryrun.render(plan, checks), not any(c.verdict == dryrun.MISSING
                                                    for c in checks)

    # ------------------------------------------------------------------ access rules
    def authorize_ip(self, record: dict, cidr: str | None = None,
                     allow_world: bool = False) -> str:
        """Let CIDR (default: the caller's address now) reach the ports LISTENERS opens to
        the caller, and revoke the caller rules it replaces; the record keeps the CIDR."""
        wanted = inputs.authorize_cidr(cidr, allow_world)
        name, region = record["name"], record["region"]
        if wanted is None:
            wanted = network.caller_cidr(flag="--cidr")
        session = self._session(record)
        client = aws.ec2(session, region)
        owner = _owner(record, session)
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        try:
            group = record.get("security_group") or _find_group(client, name, owner)
            if not group:
                raise ImagebakeError(f"cluster {name!r} has no security group of yours in "
                                     f"{region}: nothing to authorize")
            added, replaced = network.replace_caller(
                client, group, wanted, record.get("allow_cidr"),
                ec2i.tag_list(name, "cluster", owner, created, record.get("ttl")))
        except AWS_ERRORS as exc:
            if aws.error_code(exc).startswith("InvalidGroup"):
                raise ImagebakeError(
                    f"the security group {record.get('security_group')} of {name!r} is gone "
                    f"from {region}: `invoke destroy --name {name}`") from None
            raise ImagebakeError(aws.explain(exc, f"updating {name}'s security group",
                                             region=region)) from None
        record["allow_cidr"] = wanted
        record["security_group"] = group
        state.save(record)
        ports = "/".join(str(p) for p in network.PUBLIC_PORTS)
        if not added and not replaced:
            return f"{name}: {wanted} may already reach TCP {ports} (group {group}); no change"
        gone = sorted({r.cidr for r in replaced})
        return (f"{name}: {wanted} may now reach TCP {ports} (group {group})"
                + (f"; removed the rule(s) for {', '.join(gone)}" if gone else ""))

    # ------------------------------------------------------------------ access
    def check_node(self, record: dict, node: str | None) -> str:
        ssh.find_node(record, node)
        return node or "master"

    def _ssh_argv(self, record: dict, host: str, command: list[str]) -> list[str]:
        return ssh.argv(self.addressed(record), host, command)

    def batch_argv(self, record: dict, node: str | None, command: list[str]) -> list[str]:
        """run and copy: as disco, the unprivileged user they act as on every target (the
        login user ubuntu has sudo; -n: never wait for a password)."""
        return super().batch_argv(record, node, [*ssh.AS_DISCO, *command])

    def exec(self, record: dict, command: str, user: str = "root",
             stdin: BinaryIO | None = None) -> tuple[int, str]:
        return ssh.master_exec(self.addressed(record), command, user, stdin)

    def exec_argv(self, record: dict, command: str, user: str = "root") -> list[str]:
        return ssh.master_exec_argv(self.addressed(record), command, user)

    def tunnel(self, record: dict) -> str:
        return ssh.tunnel(self.addressed(record))

    def summary(self, record: dict) -> str:
        return report.summary(record)


TARGET_CLASS = AwsTarget


# ------------------------------------------------------------------ launch steps
def _run(client: Any, record: dict, role: str, itype: str, count: int, text: str,
         tags: list[dict]) -> list[dict]:
    """COUNT instances of ROLE in one RunInstances call."""
    args = ec2i.run_args(
        ami=record["amis"][role], instance_type=itype, count=count, subnet=record["subnet"],
        group=record["security_group"], user_data=text, imdsv2=record["imdsv2"][role],
        tags=tags, key_name=record.get("key_name"), spot=_spot(record, role),
        placement_group=record.get("placement_group"))
    started = client.run_instances(**args)["Instances"]
    return [_entry(i) for i in started]


def _named(record: dict, entries: list[dict]) -> list[state.Node]:
    """ENTRIES (new slaves' instances) as Nodes named after the record's highest nodeNN:
    node01.. at launch, node05.. when a grow follows four (a name is never reused while
    the record holds it, whatever shrink removed)."""
    taken = [int(n[4:]) for n in state.node_names(record)
             if n.startswith("node") and n[4:].isdigit()]
    first = max(taken or [0]) + 1
    return [state.node(f"node{first + i:02d}", **e) for i, e in enumerate(entries)]


def _spot(record: dict, role: str) -> bool:
    """Whether ROLE's instances are spot: `--spot` makes the slaves spot and keeps the
    master on demand; `--spot-master` puts the master on spot too."""
    return bool(record.get("spot_master" if role == "master" else "spot"))


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


def _find_group(client: Any, name: str, owner: str) -> str | None:
    groups = client.describe_security_groups(Filters=ec2i.scope(name, owner))["SecurityGroups"]
    return groups[0]["GroupId"] if groups else None


STATUS_CHECKIP_TIMEOUT = 2.0


def access_warning(record: dict) -> str | None:
    """One line when this machine's public address is outside the CIDR the cluster's
    group lets in (None when it is inside, or when the address cannot be found)."""
    try:
        mine = network.caller_cidr(timeout=STATUS_CHECKIP_TIMEOUT)
    except ImagebakeError:
        return None
    if network.allows(record.get("allow_cidr"), mine):
        return None
    return (f"your address {mine.split('/')[0]} is not allowed by the security group "
            f"(it lets in {record.get('allow_cidr') or 'nothing'}): SSH and status need "
            f"`invoke authorize-ip --name {record['name']}`")


def search_refusal(session_factory: aws.SessionFactory | None = None) -> str | None:
    """Why AWS cannot be searched for a cluster by tag (no credentials or no region), or
    None when it can: `destroy` without a record and without --target looks there."""
    try:
        aws.make_session(None, None, session_factory)
    except ImagebakeError as exc:
        return str(exc)
    return None


def _owner(record: dict, session: boto3.Session) -> str:
    """The owner tag the cluster's resources carry: the record's, else the caller's."""
    return record.get("owner") or preflight.owner(session)


def _address(entry: dict) -> str:
    return entry.get("public_ip") or entry["private_ip"]


def _wait_ready(record: dict, agent: AgentClient, started: float) -> None:
    """Poll the master agent (signed status call) until every slave joined."""
    expected = len(record["nodes"])
    deadline = time.monotonic() + READY_TIMEOUT_BASE + READY_TIMEOUT_PER_NODE * expected
    delay = 1.0
    reply = None
    while True:
        reply = agent.status(_address(record["master"]), ports.AGENT, record)
        if cluster_ready(master_running=True, reply=reply, expected=expected):
            break
        if time.monotonic() > deadline:
            joined = (reply or {}).get("joined")
            raise ImagebakeError(
                f"cluster {record['name']!r} not ready after "
                f"{int(time.monotonic() - started)}s "
                f"({'agent unreachable' if reply is None else f'{joined}/{expected} joined'})")
        time.sleep(delay)
        delay = min(delay * 1.5, 10.0)
    hostkeys.remember(record, reply)
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
        ec2i.remove_cluster(session, record["region"], name, owner=record["owner"],
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
    hostkeys.forget(name)
    if why is None:
        raise exc
    raise ImagebakeError(f"launch failed: {why}; removed what was started") from None
