"""Using a running cluster with Disco: smoke.py (a job, or the Erlang check offline)
and ddfs_load.py (files into DDFS through the master)."""
