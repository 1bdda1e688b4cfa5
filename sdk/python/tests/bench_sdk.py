"""Latency of the Python SDK against a real ``tensafe serve`` (not a test: run it by hand).

    go build -o /tmp/tensafe ./cmd/tensafe
    TENSAFE_BIN=/tmp/tensafe python3 sdk/python/tests/bench_sdk.py [--n 200]

It reports p50/p95/mean of: a read (GET dp_metrics), a forward of one short
row (submit + long-poll), a DP training step (forward_backward of 16 rows +
optim_step), and a greedy sample of 32 tokens. The server runs on loopback on
the same machine, so the figures include its work, not a network.
"""

from __future__ import annotations

import argparse
import statistics
import time

from _server import server

import tensafe
from test_training import TEXTS, byte_batch, config


def measure(name, n, fn):
    fn()  # warm-up
    xs = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        xs.append((time.perf_counter() - t) * 1000)
    xs.sort()
    p95 = xs[min(len(xs) - 1, int(0.95 * len(xs)))]
    print("%-34s n=%4d  p50 %8.2f ms  p95 %8.2f ms  mean %8.2f ms" % (name, n, statistics.median(xs), p95, statistics.mean(xs)))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=200)
    args = p.parse_args()
    srv = server()
    svc = srv.client()
    tc = svc.create_training_client(config(sigma=1.0, eps=1000.0, dataset=16, batch=16))
    one = byte_batch(["the patient is stable."])
    sixteen = byte_batch(TEXTS)
    measure("get_dp_metrics (GET)", args.n, tc.get_dp_metrics)
    measure("forward 1 row (submit + result)", args.n, lambda: tc.forward(one).result())

    def step():
        tc.forward_backward(sixteen).result()
        tc.optim_step().result()

    measure("DP step: fb 16 rows + optim_step", max(args.n // 10, 5), step)
    measure("sample 32 tokens greedy", max(args.n // 10, 5), lambda: tc.sample("the patient ", max_tokens=32, temperature=0))
    print("python %s, tensafe SDK %s, server %s" % (__import__("sys").version.split()[0], tensafe.__version__, srv.base_url))


if __name__ == "__main__":
    main()
