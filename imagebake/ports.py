"""The cluster's two well-known ports, launcher side: the one place they are written.

The agent listens on what the spec names (imagebake.agent.spec fills these in); the
targets publish, forward or open them (aws/network.LISTENERS says to whom).
"""

from __future__ import annotations

DISCO = 8989  # Disco master: web UI and job API (unauthenticated; members only)
AGENT = 8990  # the master agent's join port: join, status, extend, leave (MAC-signed)
