"""The docker target: a whole cluster as containers on one private Docker network."""
