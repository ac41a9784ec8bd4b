"""A throwaway fourth target: one package plus one name (tests register it in
imagebake.targets.REGISTRY). Its machines are entries in memory; it exists to prove that
nothing above imagebake/targets/ asks which target it talks to, and it is the one fake
Target every test of the code above targets shares."""
