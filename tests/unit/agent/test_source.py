"""source.py: where the spec comes from (run file, cloud-init, IMDS), in order; copies of
it are root-only and a run file is never copied to disk."""

import os
import stat

import pytest

from imagebake.agent import context as C
from imagebake.agent import source, spec
from imagebake.agent.loop import Agent
from imagebake.agent.spec import SpecError, dumps, make_spec

from .helpers import COOKIE, TOKEN, write_spec

NODE01_SPEC = make_spec("demo", "node", master_address="10.0.0.5", hostname="node01")


def write(ctx, path, text, mode=0o644):
    full = ctx.path(path)
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with open(full, "w") as handle:
        handle.write(text)
    os.chmod(full, mode)
    return full


def test_source_order_and_persistence(agent_ctx):
    ctx = agent_ctx()
    with pytest.raises(SpecError, match="no cluster spec"):
        source.find_spec(ctx)
    cloud = write(ctx, source.CLOUD_INIT, dumps(NODE01_SPEC))
    spec, origin, _ = source.find_spec(ctx)
    assert origin == source.CLOUD_INIT
    source.persist_spec(ctx, spec)
    assert os.stat(cloud).st_mode & 0o777 == 0o600
    assert os.stat(ctx.path(source.PERSISTED)).st_mode & 0o777 == 0o600
    other = make_spec("other", "master")
    write(ctx, source.DEFAULT_SPEC, dumps(other))
    assert source.find_spec(ctx)[0] == other  # /run/imagebake/spec.json first
    write(ctx, "/tmp/x.json", dumps(NODE01_SPEC))
    assert source.find_spec(ctx, "/tmp/x.json")[0] == NODE01_SPEC
    with pytest.raises(SpecError, match="does not exist"):
        source.find_spec(ctx, "/nope.json")
    write(ctx, "/tmp/bad.json", "{")
    with pytest.raises(SpecError):
        source.find_spec(ctx, "/tmp/bad.json")


def test_cloud_init_user_data_that_is_not_ours_is_skipped(agent_ctx):
    ctx = agent_ctx()
    write(ctx, source.CLOUD_INIT, "#cloud-config\npackages: [vim]\n")
    with pytest.raises(SpecError, match="not JSON"):
        source.find_spec(ctx)


def test_spec_from_a_run_file_is_not_copied_to_disk(agent_ctx):
    ctx = agent_ctx()
    write_spec(ctx, spec.make_spec("demo", "node", master_address="10.0.0.5", token=TOKEN,
                                   cookie=COOKIE))
    agent = Agent(ctx)
    agent.state.run_phase("spec", agent.phase_spec)
    assert not os.path.lexists(ctx.path(source.PERSISTED))
    for base, _dirs, files in os.walk(ctx.path("/var")):
        for name in files:
            with open(os.path.join(base, name)) as handle:
                assert TOKEN not in handle.read()


def test_cloud_init_copies_are_root_only(agent_ctx):
    ctx = agent_ctx()
    the_spec = spec.make_spec("demo", "node", master_address="10.0.0.5", token=TOKEN,
                              cookie=COOKIE)
    inst = ctx.path("/var/lib/cloud/instances/i-0123")
    os.makedirs(inst)
    os.symlink(inst, ctx.path("/var/lib/cloud/instance"))
    for name in ("user-data.txt", "user-data.txt.i", "obj.pkl"):
        with open(os.path.join(inst, name), "w") as handle:
            handle.write(spec.dumps(the_spec))
        os.chmod(os.path.join(inst, name), 0o644)
    agent = Agent(ctx)
    agent.state.run_phase("spec", agent.phase_spec)
    for name in ("user-data.txt", "user-data.txt.i", "obj.pkl"):
        assert stat.S_IMODE(os.stat(os.path.join(inst, name)).st_mode) == 0o600, name
    persisted = ctx.path(source.PERSISTED)
    assert stat.S_IMODE(os.stat(persisted).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(persisted)).st_mode) == 0o700


def test_no_cloud_init_is_quiet(agent_ctx):
    import logging
    seen = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    C.LOG.addHandler(handler)
    try:
        ctx = agent_ctx()
        assert source.lock_cloud_init(ctx) == []
    finally:
        C.LOG.removeHandler(handler)
    assert not [m for m in seen if "cannot lock down" in m]
