"""AWS target tests (a package, so its conftest and helpers never clash with other suites)."""
