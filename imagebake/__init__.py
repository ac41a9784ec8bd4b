"""imagebake: bake Disco images and launch Disco clusters.

Data flow, one package each: spec (agent/spec.py) -> images (bake/) -> instances
(targets/<docker|aws|qemu>/) -> agent (agent/) -> cluster (disco/). Provider clients
both bake and targets use are in clients/; README's architecture section has the file map.
"""

__version__ = "0.1.0"
