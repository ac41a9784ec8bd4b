"""state.py: state.json lives in a private directory: a loose one is tightened, another
user's is refused."""

import os
import stat

import pytest

from imagebake.agent import state as S

from .helpers import NOBODY, needs_root


def test_state_dir_loose_is_tightened_and_planted_temp_ignored(agent_ctx):
    ctx = agent_ctx()
    state_dir = ctx.path(S.STATE_DIR)
    os.makedirs(state_dir)
    os.chmod(state_dir, 0o777)
    target = ctx.path("/etc/pwned")
    for pid in (os.getpid(), os.getpid() + 1):
        os.symlink(target, ctx.path(S.STATE_FILE) + f".tmp.{pid}")
    S.State(ctx).set("role", "node")
    assert stat.S_IMODE(os.stat(state_dir).st_mode) == 0o700
    assert not os.path.lexists(target)
    assert stat.S_IMODE(os.stat(ctx.path(S.STATE_FILE)).st_mode) == 0o600


def owned_dir(path, uid=NOBODY, mode=0o755):
    os.makedirs(path, exist_ok=True)
    os.chown(path, uid, uid)
    os.chmod(path, mode)
    return path


@needs_root
def test_state_dir_owned_by_another_user_is_refused(agent_ctx):
    ctx = agent_ctx()
    state_dir = owned_dir(ctx.path(S.STATE_DIR), mode=0o700)
    with pytest.raises(OSError):
        S.State(ctx).set("role", "node")
    assert os.listdir(state_dir) == []
