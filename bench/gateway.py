"""Gateway benchmark: what the gateway adds to a request, against calling the model server directly.

    .venv/bin/python bench/gateway.py [--requests 200] [--max-tokens 8]

Uses what is served now (LLMOPS_HOME: the champion's llama.cpp server and the gateway in front of
it). The same request (system prompt included, so both do the same work) goes to each, in
alternation; prints the added latency per request (paired: gateway - direct) at p50 and p99 and
the sequential throughput ratio gateway / direct. Targets: at most 2 ms added at p50 on loopback,
throughput at least 0.95x direct. The gateway's rate limit applies: keep the requests of a minute
under `stages.deployment.gateway.requests_per_minute` (600 by default).
"""

import argparse
import statistics

from llmops_assets.deployment import gateway, traffic
from llmops_assets.orchestration.resources import ArtifactStoreResource
from llmops_assets.settings import load_settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--max-tokens", type=int, default=8)
    args = parser.parse_args()
    settings, resource = load_settings(), ArtifactStoreResource()
    champion, front = resource.registry.champion(), gateway.running(resource.home_path)
    if champion is None or front is None or champion.server != "llamacpp":
        raise SystemExit("serve a release on llama.cpp first (llmops run): the benchmark compares its server with "
                         "the gateway in front of it")
    messages = [{"role": "system", "content": settings.domain.system_prompt},
                {"role": "user", "content": "Add task: Buy milk and eggs on the way home"}]
    for endpoint in (champion.endpoint, front["endpoint"]):  # warm both
        traffic.send(endpoint, messages, args.max_tokens)
    direct, through = [], []
    for _ in range(args.requests):
        direct.append(traffic.send(champion.endpoint, messages, args.max_tokens))
        through.append(traffic.send(front["endpoint"], messages, args.max_tokens))
    failed = [r for r in direct + through if r["status"] != 200]
    if failed:
        raise SystemExit(f"{len(failed)} requests failed, first: {failed[0]}")
    added = sorted(g["latency_ms"] - d["latency_ms"] for g, d in zip(through, direct, strict=True))
    direct_ms = [r["latency_ms"] for r in direct]
    gateway_ms = [r["latency_ms"] for r in through]
    print(f"{args.requests} request pairs, {args.max_tokens} tokens each, release {champion.version}")
    print(f"direct:  p50 {statistics.median(direct_ms):.1f} ms, p99 {sorted(direct_ms)[int(0.99 * len(direct_ms))]:.1f} ms")
    print(f"gateway: p50 {statistics.median(gateway_ms):.1f} ms, p99 {sorted(gateway_ms)[int(0.99 * len(gateway_ms))]:.1f} ms")
    print(f"added by the gateway: p50 {statistics.median(added):.2f} ms, p99 {added[int(0.99 * len(added))]:.2f} ms "
          "(target p50 <= 2 ms)")
    print(f"throughput gateway / direct: {sum(direct_ms) / sum(gateway_ms):.3f}x (target >= 0.95x)")


if __name__ == "__main__":
    main()
