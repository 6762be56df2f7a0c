"""Benchmark the Synthesizer variants against HF BERT-sdpa and GPT-2 on this machine (CPU).

    python scripts/benchmark.py --quick            # < 3 minutes: tiny size, L = 128 / 512
    python scripts/benchmark.py                    # full run: tiny + small, L = 128 ... 2048

Writes results.json, results.md and PNG plots to --out (default runs/benchmark). See docs/BENCHMARKS.md.
"""

from synthesizer_tools.benchmarking import main

if __name__ == "__main__":
    main()
