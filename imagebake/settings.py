"""Defaults for the launch and bake flags from invoke's own configuration system.

Under the `imagebake:` key of any invoke config file, or in INVOKE_IMAGEBAKE_<KEY>
environment variables, with invoke's hierarchy (lowest first):

    built-in default < system file (/etc/invoke.yaml) < user file (~/.invoke.yaml)
    < project file (invoke.yaml beside tasks.py) < environment < runtime file (-f)
    < a flag on the command line

    # ~/.invoke.yaml
    imagebake:
      target: aws
      region: eu-west-1
      key_name: mykey
      ttl: 4h
      vars: {aws_region: eu-west-1}

A key this module does not know, or a value of the wrong type, is one line naming
the key and where it came from (ImagebakeError, exit 2); nothing runs.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Callable

from . import durations, state, targets
from .errors import ImagebakeError

NAMESPACE = "imagebake"
COMMANDS = ("launch", "bake")
_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Setting:
    key: str
    kind: str  # str, int, bool, duration, cidr, target, name, tokens, vars
    default: Any
    help: str
    commands: tuple[str, ...] = ("launch",)
    # a launch option (handed to the target only when it takes it), not a launch argument
    option: bool = True
    # a key of invoke's config files and INVOKE_IMAGEBAKE_* too, not only a flag
    configurable: bool = True

    def default_for(self, command: str) -> Any:
        if self.key == "target" and command == "bake":
            return "docker"
        return self.default


# Each launch and bake setting, declared once: `invoke --help launch` shows HELP, the
# config files take KEY, and a target takes the options it lists in launch_options.
SETTINGS: dict[str, Setting] = {s.key: s for s in (
    Setting("target", "target", "aws", "aws (default for launch), docker (local) or qemu",
            ("launch", "bake"), option=False),
    Setting("name", "name", "imagebake",
            "cluster name (a short hostname part); default: imagebake", option=False),
    Setting("slaves", "int", None, "number of slave nodes, 1-64 (default 4)", option=False),
    Setting("workers_per_node", "int", None,
            "Disco workers per slave (default: its core count)", option=False),
    Setting("wait", "bool", True,
            "wait until the cluster is ready (default); --no-wait returns at once",
            option=False),
    Setting("region", "str", None, "aws: region (default from AWS config)"),
    Setting("profile", "str", None, "aws: profile from the AWS config"),
    Setting("instance_type", "str", None, "aws: slave instance type (default t2.medium)"),
    Setting("master_instance_type", "str", None,
            "aws: master instance type (default: as slaves)"),
    Setting("subnet", "str", None, "aws: subnet id (default: the default VPC's first subnet)"),
    Setting("spot", "bool", False,
            "aws: the slaves on one-time spot instances; the master stays on demand"),
    Setting("spot_master", "bool", False,
            "aws: with --spot, the master on spot too (its interruption ends the cluster "
            "and its data)"),
    Setting("ttl", "duration", None,
            "power the cluster off after this long, e.g. 4h or 90m (enforced on the "
            "cluster; `invoke extend` moves it)"),
    Setting("idle_stop", "duration", None,
            "the master stops (aws: terminates) the whole cluster after this long with no "
            "Disco job, e.g. 30m (1m to 30d; enforced on the cluster)"),
    Setting("allow_cidr", "cidr", None,
            "aws: CIDR allowed to reach SSH and the web UI (default: your address/32)"),
    Setting("allow_world", "bool", False,
            "aws: allow an --allow-cidr wider than /8, e.g. 0.0.0.0/0 (every address); "
            "refused without it", configurable=False),
    Setting("key_name", "str", None, "aws: your EC2 key pair for SSH"),
    Setting("placement_group", "bool", False, "aws: create a cluster placement group"),
    Setting("keep_on_failure", "bool", False, "aws: keep what was started when launch fails"),
    Setting("master_ami", "str", None, "aws: master AMI (default from build/images.json)"),
    Setting("node_ami", "str", None, "aws: node AMI (default from build/images.json)"),
    Setting("http_tokens", "tokens", None,
            "qemu: the emulated instances' HttpTokens, required (default) or optional"),
    Setting("vars", "vars", None, "bake: Packer variables {name: value}", ("bake",),
            option=False),
)}


def help_for(command: str) -> dict[str, str]:
    """The --help text of each flag of COMMAND that is a setting."""
    return {k: s.help for k, s in SETTINGS.items() if command in s.commands}


CONFIG_KEYS = tuple(k for k, s in SETTINGS.items() if s.configurable)


def _only_a_flag(key: str, where: str) -> None:
    if not SETTINGS[key].configurable:
        raise ImagebakeError(f"{NAMESPACE}.{key} in {where}: only taken as a flag "
                             f"(--{key.replace('_', '-')}), never from a file or the "
                             "environment")


_KIND_TEXT = {
    "str": "a string", "int": "a whole number of at least 1", "bool": "true or false",
    "duration": "a duration such as 90s, 30m, 4h or 2d", "cidr": "a CIDR such as 203.0.113.7/32",
    "target": f"one of {', '.join(targets.names())}", "name": "a cluster name (a-z, 0-9, '-')",
    "tokens": "required or optional", "vars": "a mapping of Packer variable names to values",
}
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


@dataclass(frozen=True)
class Value:
    key: str
    value: Any
    source: str  # "default", "flag --region", "user file /root/.invoke.yaml", ...


# ------------------------------------------------------------------ checking one value
def check(key: str, value: Any, where: str, from_text: bool = False) -> Any:
    """VALUE for KEY as the setting's type (FROM_TEXT: an environment string), or one
    line naming the key and WHERE it came from."""
    setting = SETTINGS[key]
    kind = setting.kind

    def wrong() -> ImagebakeError:
        return ImagebakeError(f"{NAMESPACE}.{key} in {where} must be {_KIND_TEXT[kind]}, "
                              f"not {value!r}")

    if kind == "bool":
        if from_text and isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
            return value.strip().lower() in _TRUE
        if not isinstance(value, bool):
            raise wrong()
        return value
    if kind == "int":
        if from_text and isinstance(value, str) and value.strip().isdigit():
            value = int(value.strip())
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise wrong()
        return value
    if kind == "vars":
        return _check_vars(key, value, where, from_text, wrong)
    if not isinstance(value, str) or not value.strip():
        raise wrong()
    value = value.strip()
    if kind == "duration":  # the flags' own grammar and range (imagebake.durations)
        try:
            durations.seconds(value, durations.LIMITS[key])
        except ImagebakeError:
            raise wrong() from None
    if kind == "cidr":
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise wrong() from None
    if kind == "target" and value not in targets.names():
        raise wrong()
    if kind == "name":
        try:
            state.check_name(value)
        except ImagebakeError:
            raise wrong() from None
    if kind == "tokens" and value not in ("required", "optional"):
        raise wrong()
    return value


def _check_vars(key: str, value: Any, where: str, from_text: bool,
                wrong: Callable[[], ImagebakeError]) -> dict[str, str]:
    if from_text and isinstance(value, str):  # INVOKE_IMAGEBAKE_VARS="k=v,k2=v2"
        pairs = [p.partition("=") for p in value.split(",") if p.strip()]
        if any(not sep for _, sep, _ in pairs):
            raise wrong()
        value = {k.strip(): v for k, _, v in pairs}
    if not isinstance(value, dict):
        raise wrong()
    out = {}
    for name, item in value.items():
        if not isinstance(name, str) or not _VAR_NAME.fullmatch(name):
            raise ImagebakeError(f"{NAMESPACE}.{key} in {where}: {name!r} is not a Packer "
                                 "variable name")
        if isinstance(item, bool) or not isinstance(item, (str, int, float)) \
                or "\n" in str(item):
            raise ImagebakeError(f"{NAMESPACE}.{key}.{name} in {where} must be one line of "
                                 f"text or a number, not {item!r}")
        out[name] = str(item)
    return out


# ------------------------------------------------------------------ the layers
def _file_layer(data: Any, where: str) -> dict[str, Any]:
    """The imagebake settings of one config file's data, checked."""
    if not isinstance(data, dict) or NAMESPACE not in data:
        return {}
    section = data[NAMESPACE]
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise ImagebakeError(f"{NAMESPACE} in {where} must be a mapping of settings, "
                             f"not {section!r}")
    out = {}
    for key, value in section.items():
        if key not in SETTINGS:
            raise ImagebakeError(f"unknown key {NAMESPACE}.{key} in {where} "
                                 f"(known: {', '.join(sorted(CONFIG_KEYS))})")
        _only_a_flag(key, where)
        if value is not None:
            out[key] = check(key, value, where)
    return out


def _env_layer(prefix: str, environ: dict[str, str]) -> dict[str, tuple[Any, str]]:
    """INVOKE_IMAGEBAKE_<KEY> variables, named as invoke's own loader names a known key
    (prefix, then the key path joined by '_', upper case); an unknown one is refused
    rather than silently ignored."""
    head = f"{prefix}{NAMESPACE.upper()}_"
    names = {f"{head}{key.upper()}": key for key in SETTINGS}
    for var, key in names.items():
        if environ.get(var, "").strip():
            _only_a_flag(key, f"the environment ({var})")
    for var in sorted(environ):
        if var.startswith(head) and var not in names:
            raise ImagebakeError(f"unknown key {NAMESPACE}.{var[len(head):].lower()} in the "
                                 f"environment ({var})")
    out = {}
    for var, key in names.items():
        text = environ.get(var, "")
        if text.strip():
            out[key] = (check(key, text, f"the environment ({var})", from_text=True),
                        f"env {var}")
    return out


def layers(config: Any, environ: dict[str, str] | None = None
           ) -> list[tuple[str, dict[str, Any]]]:
    """[(source, {key: value})] from an invoke Config, lowest precedence first, as
    invoke merges them: system, user and project files, environment, runtime file."""
    environ = dict(os.environ if environ is None else environ)
    out: list[tuple[str, dict[str, Any]]] = []

    def file(level: str, label: str) -> None:
        path = getattr(config, f"_{level}_path", None)
        if path:
            where = f"{label} {path}"
            out.append((where, _file_layer(getattr(config, f"_{level}", {}), where)))

    file("system", "system file")
    file("user", "user file")
    file("project", "project file")
    env = _env_layer(getattr(config, "_env_prefix", None) or "INVOKE_", environ)
    for key, (value, source) in env.items():
        out.append((source, {key: value}))
    file("runtime", "runtime file")
    return out


def given(flags: dict[str, Any]) -> dict[str, Any]:
    """The flags the command line set: not None, and a yes/no flag only when it differs
    from its built-in default (`--spot`, `--no-wait`)."""
    out = {}
    for key, value in flags.items():
        setting = SETTINGS.get(key)
        if value is None or (setting and setting.kind == "bool"
                             and value == setting.default):
            continue
        if setting and setting.kind == "vars" and not value:
            continue
        out[key] = value
    return out


def resolve(config: Any, command: str, flags: dict[str, Any] | None = None,
            environ: dict[str, str] | None = None) -> dict[str, Value]:
    """Every setting COMMAND uses: its effective value and where it came from."""
    if command not in COMMANDS:
        raise ImagebakeError(f"unknown command {command!r}: choose one of {', '.join(COMMANDS)}")
    chosen = {k: s for k, s in SETTINGS.items() if command in s.commands}
    values = {k: Value(k, s.default_for(command), "default") for k, s in chosen.items()}
    for source, data in layers(config, environ):
        for key, value in data.items():
            if key in chosen:
                values[key] = Value(key, value, source)
    for key, value in given(flags or {}).items():
        if key in chosen:
            if chosen[key].kind == "vars":  # --var k=v wins over the file's k only
                value = {**(values[key].value or {}), **value}
            values[key] = Value(key, value, f"flag --{key.replace('_', '-')}")
    return values


# ------------------------------------------------------------------ what the tasks call
def launch_args(config: Any, flags: dict[str, Any],
                options_of: Callable[[str], Iterable[str]],
                environ: dict[str, str] | None = None) -> tuple[str, dict[str, Any]]:
    """(target, keyword arguments for Target.launch). A target-specific option from a
    file or the environment goes only to a target that takes it (`region` in a file
    does not break `--target docker`); from a flag it always goes, so the target's
    own one-line refusal stays."""
    values = resolve(config, "launch", flags, environ)
    target = values["target"].value
    takes = set(options_of(target))
    # a flag with no setting (yet) goes as given
    kwargs = {k: v for k, v in flags.items() if k not in SETTINGS and v not in (None, False)}
    for key, value in values.items():
        setting = SETTINGS[key]
        if key == "target":
            continue
        if not setting.option:
            kwargs[key] = value.value
        elif value.value not in (None, False) and (value.source.startswith("flag")
                                                   or key in takes):
            kwargs[key] = value.value
    return target, kwargs


def bake_args(config: Any, flags: dict[str, Any],
              environ: dict[str, str] | None = None) -> tuple[str, dict[str, str]]:
    """(target, Packer variables): the file's vars with --var winning key by key."""
    values = resolve(config, "bake", flags, environ)
    return values["target"].value, dict(values["vars"].value or {})


def render(values: dict[str, Value], command: str,
           unused: Iterable[str] = ()) -> str:
    """The effective settings as text, one per line: key, value, source."""
    skip = set(unused)

    def note(v: Value) -> str:
        if v.key not in skip:
            return ""
        return (" (this target refuses it)" if v.source.startswith("flag")
                else " (not used by this target)")

    rows = [(k, _show(v.value), v.source + note(v)) for k, v in values.items()]
    width = max(len(r[0]) for r in rows)
    vwidth = max(len(r[1]) for r in rows)
    head = (f"{command} settings (flag > runtime file > env > project file > user file > "
            "system file > default):")
    return "\n".join([head, *(f"  {k:<{width}}  {v:<{vwidth}}  {s}" for k, v, s in rows)])


def _show(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in sorted(value.items())) or "-"
    return str(value)


def parse_flags(task: Any, argv: list[str]) -> dict[str, Any]:
    """Flags of TASK (an invoke Task) written out in ARGV, parsed by invoke's own parser:
    `invoke config -- --target docker --slaves 2` shows what those flags would do."""
    from invoke.exceptions import ParseError
    from invoke.parser import Parser, ParserContext

    context = ParserContext(name=task.name, args=task.get_arguments())
    try:
        parsed = Parser(contexts=[context]).parse_argv([task.name, *argv])
    except ParseError as exc:
        raise ImagebakeError(f"cannot read the flags {' '.join(argv)!r}: {exc}") from None
    out = {arg.name: arg.value for arg in parsed[0].args.values() if arg.got_value}
    if "var" in out:  # bake's repeatable --var k=v is the vars setting
        from .bake.variables import parse_vars

        out["vars"] = parse_vars(out.pop("var"))
    return out
