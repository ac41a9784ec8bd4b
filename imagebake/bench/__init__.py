"""`invoke bench`: runner.py (bake, local cluster, the time-to-ready curve and its plot),
launch_calls.py (EC2 API calls per launch against moto), vm.py (QEMU figures)."""
