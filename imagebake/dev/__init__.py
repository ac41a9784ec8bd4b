"""Tools for working on imagebake itself (not used by the launcher): mutants.py runs
`invoke mutants`."""
