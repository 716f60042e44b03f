"""trioclient's benchmark suite: one command, every contender side by side.

Run ``python -m benchmarks`` (full, about ten minutes on two cores) or
``python -m benchmarks --quick`` (embedded server only, under a minute, no verdicts).
The suite starts what it needs itself (nginx for the static endpoints, wrk as the
server's ceiling, trioclient's embedded server for latency and rate limits), runs each
contender in its own process, and writes ``benchmarks/results/latest.{json,md}`` plus
plots. Every figure is reported as a ratio to another contender measured in the same
run, because ratios survive a noisy machine and absolute numbers do not.

See ``benchmarks/README.md`` for what each workload measures.
"""
