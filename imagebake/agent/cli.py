"""Command line: python3 -m imagebake_agent run|status|join.

  run    [--spec PATH] [--root DIR] [--once]   all phases; master serves joins
                                               forever, node heartbeats every 30 s
  status [--json] [--root DIR]                 exit 0 when ready, else 1
  join   [--spec PATH] [--root DIR] --once     one join + trust/dns (debugging)
  ttl    [--wait] [--spec PATH] [--root DIR]   schedule (systemd) or wait for (--wait)
                                               the power-off at ttl_deadline; run by
                                               its own boot unit, not by the agent

Exit codes: 0 ok/ready, 1 not ready or a phase failed, 2 usage or spec error.
"""

import argparse
import json
import sys

from . import report
from .context import Context, setup_logging
from .loop import Agent
from .spec import SpecError
from .state import PhaseFailed


def _parser():
    parser = argparse.ArgumentParser(prog="imagebake_agent",
                                     description="imagebake first-boot agent")
    sub = parser.add_subparsers(dest="command")

    def common(p):
        p.add_argument("--root", default="/", help="file system root prefix (tests)")
        p.add_argument("--no-imds", action="store_true",
                       help="never ask the EC2 metadata service for the spec")
        p.add_argument("--imds-url", default="http://169.254.169.254", help=argparse.SUPPRESS)
        p.add_argument("--bind", default="0.0.0.0", help=argparse.SUPPRESS)
        p.add_argument("--address", action="append", help=argparse.SUPPRESS)
        p.add_argument("--hostname", help=argparse.SUPPRESS)
        p.add_argument("--allow-loopback", action="store_true", help=argparse.SUPPRESS)

    run = sub.add_parser("run", help="run the first-boot phases")
    run.add_argument("--spec", help="spec file (default /run/imagebake/spec.json, ...)")
    run.add_argument("--once", action="store_true",
                     help="do the phases and exit (no serving / no heartbeat)")
    common(run)
    status = sub.add_parser("status", help="print the agent's state")
    status.add_argument("--json", action="store_true")
    status.add_argument("--root", default="/")
    join = sub.add_parser("join", help="one join to the master (debugging)")
    join.add_argument("--spec")
    join.add_argument("--once", action="store_true", required=True)
    common(join)
    ttl_cmd = sub.add_parser("ttl", help="power off at the spec's ttl_deadline")
    ttl_cmd.add_argument("--spec")
    ttl_cmd.add_argument("--wait", action="store_true",
                         help="stay up and power off at the deadline (upstart)")
    common(ttl_cmd)
    return parser


def _context(args):
    return Context(root=args.root, imds_url=None if args.no_imds else args.imds_url,
                   hostname=args.hostname, allow_loopback=args.allow_loopback)


def cmd_run(args):
    ctx = _context(args)
    agent = Agent(ctx, spec_path=args.spec, bind_address=args.bind, addresses=args.address)
    try:
        if not agent.setup():
            return 0
        if not args.once:
            agent.forever()
    except PhaseFailed as exc:
        ctx.log.error("%s", exc)
        return 2 if "phase spec failed" in str(exc) else 1
    except KeyboardInterrupt:
        return 130
    finally:
        agent.stop()
    return 0


def cmd_join(args):
    ctx = _context(args)
    agent = Agent(ctx, spec_path=args.spec, addresses=args.address)
    run = agent.state.run_phase
    try:
        run("spec", agent.phase_spec)
        if agent.spec["role"] != "node":
            ctx.log.error("join: this machine is the master")
            return 2
        run("keys", agent.phase_keys)
        run("join", lambda: agent.phase_join(max_attempts=1))
        run("trust", agent.node_trust)
        run("dns", agent.node_dns)
        agent.confirm(attempts=1)
    except PhaseFailed as exc:
        ctx.log.error("%s", exc)
        return 1
    print(json.dumps(agent.welcome, sort_keys=True, indent=1))
    return 0


def cmd_ttl(args):
    """Find the spec (read-only) and schedule or await the power-off."""
    from . import source, ttl
    ctx = _context(args)
    while True:
        try:
            spec = source.find_spec(ctx, args.spec)[0]
            break
        except SpecError as exc:
            if not args.wait:
                ctx.log.error("ttl: %s", exc)
                return 1
            ctx.log.info("ttl: %s; retrying in 30 s", exc)
            ctx.sleep(30)
    if ttl.deadline(ctx, spec) is None and not args.wait:
        ctx.log.info("ttl: no ttl_deadline: nothing to do")
        return 0
    if not args.wait:
        try:
            how = ttl.arm(ctx, spec)
        except RuntimeError as exc:
            ctx.log.error("ttl: %s", exc)
            return 1
        if how is not None:
            ctx.log.info("ttl: power-off at %d scheduled (%s)", ttl.deadline(ctx, spec), how)
            return 0
    ctx.log.info("ttl: waiting for the deadline (%s; re-read every minute) to power off",
                 ttl.deadline(ctx, spec))
    # --wait keeps waiting without a deadline: `invoke extend` may set one later.
    ttl.wait_and_power_off(ctx, spec, forever=args.wait)
    return 0


def cmd_status(args):
    found, is_ready = report.status_report(Context(root=args.root))
    if args.json:
        print(json.dumps(found, sort_keys=True, indent=1))
    else:
        print("\n".join(report.render(found, is_ready)))
    return 0 if is_ready else 1


def main(argv=None):
    setup_logging()
    args = _parser().parse_args(argv)
    if args.command is None:
        _parser().print_help(sys.stderr)
        return 2
    try:
        return {"run": cmd_run, "status": cmd_status, "join": cmd_join,
                "ttl": cmd_ttl}[args.command](args)
    except SpecError as exc:
        sys.stderr.write("imagebake-agent: %s\n" % exc)
        return 2
