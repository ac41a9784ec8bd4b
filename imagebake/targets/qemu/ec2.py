"""What makes a qemu VM look like an EC2 instance to the software inside it.

- SMBIOS system fields as on EC2 (manufacturer "Amazon EC2", product the instance type,
  UUID and serial the same "ec2..." string): cloud-init's ds-identify and its Ec2
  datasource identify the platform as AWS from exactly these;
- the cluster's EC2 fabric (imds.py, one process per cluster inside the namespace): the
  metadata service at 169.254.169.254, the VPC's DHCP, and the master's "public" ports
  forwarded from the host's 127.0.0.1;
- per instance: an instance id, the private address the launcher picked (as EC2 picks
  it at RunInstances), EC2's host name for it, HttpTokens, the user data the AWS
  launcher renders (imagebake.targets.aws.userdata) and the launcher's key pair.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

from ... import files, state
from ...errors import ImagebakeError
from . import netns

REGION = "us-east-1"
AVAILABILITY_ZONE = "us-east-1a"
INSTANCE_TYPE = "t2.medium"  # what the AWS launcher starts by default
HTTP_TOKENS = ("required", "optional")
EMULATOR = Path(__file__).with_name("imds.py")


def instance_id() -> str:
    return "i-0" + secrets.token_hex(8)


def smbios_uuid() -> str:
    """A random UUID whose text starts with ec2, as EC2's system UUIDs do."""
    text = "ec2" + uuid.uuid4().hex[3:]
    return str(uuid.UUID(text))


def ec2_hostname(address: str) -> str:
    """EC2's private DNS name for ADDRESS (us-east-1 style), first label only."""
    return "ip-" + address.replace(".", "-")


def smbios_argv(vmrec: dict) -> list[str]:
    u = vmrec["smbios_uuid"]
    return ["-uuid", u, "-smbios",
            f"type=1,manufacturer=Amazon EC2,product={vmrec['instance_type']},serial={u}"]


def new_instance(vmrec: dict, user_data: str, http_tokens: str) -> None:
    """Fill VMREC (the record's entry for one VM) with its EC2 identity."""
    vmrec.update({
        "instance_id": instance_id(), "smbios_uuid": smbios_uuid(),
        "instance_type": INSTANCE_TYPE, "http_tokens": http_tokens,
        "user_data": user_data, "launched_at": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                             time.gmtime()),
    })


def _instances(record: dict) -> dict:
    pub = (Path(record["dir"]) / "id_ed25519.pub").read_text().strip()
    out = {}
    for index, (_host, v) in enumerate(sorted(record["vms"].items(),
                                              key=lambda kv: kv[1]["index"])):
        if "instance_id" not in v:
            continue
        out[v["ip"]] = {
            "instance-id": v["instance_id"], "local-ipv4": v["ip"], "mac": v["mac"],
            "local-hostname": f"{ec2_hostname(v['ip'])}.ec2.internal",
            "availability-zone": AVAILABILITY_ZONE, "region": REGION,
            "instance-type": v["instance_type"], "ami-id": record["ami_ids"][v["role"]],
            "ami-launch-index": index, "pending-time": v["launched_at"],
            "http_tokens": v["http_tokens"], "user-data": v["user_data"],
            "public-keys": [[f"imagebake-{record['name']}", pub]],
            "subnet": record["subnet"],
        }
        if v.get("public_ipv4"):
            out[v["ip"]]["public-ipv4"] = v["public_ipv4"]
        for key in ("spot-instance-action", "rebalance"):  # send_spot_notice
            if v.get(key):
                out[v["ip"]][key] = v[key]
    return out


def config_path(record: dict) -> Path:
    return Path(record["dir"]) / "imds.json"


def log_path(record: dict) -> Path:
    return Path(record["dir"]) / "imds.log"


def write_config(record: dict) -> Path:
    """The emulator's configuration (root-only: it holds every instance's user data)."""
    return files.write_private(config_path(record), json.dumps(
        {"instances": _instances(record)}, indent=1, sort_keys=True))


def _listener() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    return sock


def start(record: dict, gateway: str, prefix: int, forwards: dict[str, tuple[str, int]]) -> None:
    """Start the cluster's fabric in its namespace; record its pid and the host ports.

    FORWARDS: name -> (address, port) in the cluster; each gets a listening socket on
    the host's 127.0.0.1, bound here (so it lives in the host's namespace) and handed
    to the emulator, which connects from GATEWAY, its address on the bridge.
    """
    name = record["name"]
    netns.add_address(name, f"{gateway}/{prefix}")
    netns.add_address(name, "169.254.169.254/32")
    write_config(record)
    listeners = {k: _listener() for k in forwards}
    argv = ["ip", "netns", "exec", netns.ns_name(name), sys.executable, str(EMULATOR),
            "--config", str(config_path(record)), "--log", str(log_path(record)),
            "--dhcp", f"{netns.BRIDGE},{gateway},{prefix}", "--source", gateway]
    for key, (address, port) in forwards.items():
        argv += ["--forward", f"{listeners[key].fileno()}:{address}:{port}"]
    log = open(log_path(record), "ab")
    try:
        proc = subprocess.Popen(argv, pass_fds=[s.fileno() for s in listeners.values()],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True)
    finally:
        log.close()
        ports = {k: s.getsockname()[1] for k, s in listeners.items()}
        for s in listeners.values():
            s.close()
    record["fabric"] = {"pid": proc.pid, "gateway": gateway}
    record["ports"] = ports
    state.save(record)
    deadline = time.time() + 15
    while time.time() < deadline:
        if "ready: metadata on" in _log_text(record):
            return
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    raise ImagebakeError(f"the EC2 metadata emulator did not start: "
                         f"{_log_text(record).strip()[-400:]}")


def _log_text(record: dict) -> str:
    try:
        return log_path(record).read_text(errors="replace")
    except OSError:
        return ""


def pid(record: dict) -> int | None:
    p = (record.get("fabric") or {}).get("pid")
    if not p:
        return None
    try:
        cmdline = Path(f"/proc/{p}/cmdline").read_bytes()
    except OSError:
        return None
    return p if str(config_path(record)).encode() in cmdline else None


def reload(record: dict) -> None:
    """Rewrite the configuration and make the running emulator read it (SIGHUP)."""
    write_config(record)
    p = pid(record)
    if p is None:
        raise ImagebakeError(f"the EC2 metadata emulator of {record['name']!r} is not running")
    before = _log_text(record).count("config reloaded")
    os.kill(p, signal.SIGHUP)
    deadline = time.time() + 5
    while time.time() < deadline and _log_text(record).count("config reloaded") <= before:
        time.sleep(0.05)


def set_http_tokens(record: dict, host: str, mode: str) -> None:
    """ModifyInstanceMetadataOptions HttpTokens=MODE for HOST (applies at once)."""
    if mode not in HTTP_TOKENS:
        raise ImagebakeError(f"HttpTokens must be one of {', '.join(HTTP_TOKENS)}, not {mode!r}")
    record["vms"][host]["http_tokens"] = mode
    state.save(record)
    reload(record)


def send_spot_notice(record: dict, host: str, kind: str = "instance-action",
                     seconds: int = 120) -> dict:
    """What EC2 does before it takes a spot instance back: HOST's metadata gets
    spot/instance-action (terminate, SECONDS from now), or with KIND "rebalance"
    events/recommendations/rebalance. Applies at once (the emulator reloads)."""
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + seconds))
    if kind == "instance-action":
        key, value = "spot-instance-action", {"action": "terminate", "time": when}
    elif kind == "rebalance":
        key, value = "rebalance", {"noticeTime": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                               time.gmtime())}
    else:
        raise ImagebakeError(f"a spot notice is instance-action or rebalance, not {kind!r}")
    record["vms"][host][key] = value
    state.save(record)
    reload(record)
    return value


def stop(record: dict) -> bool:
    """Stop the emulator (pid checked against its command line); True if it ran."""
    p = pid(record)
    if p is None:
        return False
    os.kill(p, signal.SIGTERM)
    for _ in range(50):
        if not Path(f"/proc/{p}").exists():
            break
        time.sleep(0.1)
    else:
        os.kill(p, signal.SIGKILL)
    return True


def requests(record: dict) -> list[str]:
    """The emulator's request log, one line per request (tests)."""
    return _log_text(record).splitlines()
