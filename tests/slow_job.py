"""The slowed 2-gram job (tests/vm/slow_ngram_job.py) that the node-loss tests run on the
docker and the qemu target, and the answer it must print, from examples/ngram_top.py's
plain-Python pipeline."""

from __future__ import annotations

from pathlib import Path

from imagebake.disco import smoke

SLOW_JOB = Path(__file__).parent / "vm" / "slow_ngram_job.py"


def full_count(paths: list[Path]) -> str:
    """Every 2-gram's count over PATHS as the slow job prints it (`ngram,count`, sorted)."""
    job = smoke.load_job_module()
    lines = [ln for p in paths for ln in p.read_text().splitlines(keepends=True)]
    counts = job.reduce_counts([kv for ln in lines for kv in job.map_ngram(ln, None)], None)
    return "".join(f"{ngram},{count}\n" for ngram, count in sorted(counts))
