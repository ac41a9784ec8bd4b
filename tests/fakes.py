"""Test doubles shared by every suite (imported as tests.fakes)."""

from __future__ import annotations

from typing import Any, Callable

from imagebake.agent_client import AgentClient


class FakeAgent(AgentClient):
    """An AgentClient answering from functions instead of the network: STATUS(address,
    port, record) -> reply or None; CALL(address, port, record, path, msg, reply_type)
    -> reply. Without CALL a signed request is a test failure."""

    def __init__(self, status: Callable[[str, int, dict], Any] | None = None,
                 call: Callable[..., dict] | None = None) -> None:
        self._status = status
        self._call = call

    def status(self, address: str, port: int, record: dict, timeout: float = 0) -> Any:
        return self._status(address, port, record) if self._status else None

    def call(self, address: str, port: int, record: dict, path: str, msg: dict,
             reply_type: str, timeout: float = 0) -> dict:
        if self._call is None:
            raise AssertionError(f"unexpected signed call {path}")
        return self._call(address, port, record, path, msg, reply_type)
