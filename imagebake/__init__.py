"""imagebake: bake Disco images and launch Disco clusters.

Data flow, one module each: spec (imagebake.agent.spec) -> images (bake, packer)
-> instances (docker_cluster, aws_cluster) -> agent (imagebake.agent) -> cluster.
"""

__version__ = "0.1.0"
