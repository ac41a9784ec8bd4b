"""The docker target: a whole cluster as containers on one private Docker network
(cluster.py); images.py is what the bake needs from it (the base image, the kind)."""
