"""imagebake first-boot agent.

Runs on every baked machine (master and nodes) at first boot: reads the cluster
spec, makes the SSH keys, joins the nodes to the master over a signed HTTP
protocol, writes SSH trust, DNS and Disco configuration.

Standard library only, Python 3.4 to 3.12. Only relative imports, so the same
directory works as ``imagebake.agent`` (host) and as the top-level package
``imagebake_agent`` (copied to /opt/imagebake/imagebake_agent on an image).
See docs/agent.md.
"""

__version__ = "1"
