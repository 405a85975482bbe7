"""Telemetry pipeline figures on this machine, printed, never asserted: `python -m benchmarks.pipeline`.

Real processes (tests/support/pipeline.py): OpenTelemetry SDK (this process) -> OTLP/HTTP -> collector
(.cache/bin/otelcol, collector/config.yaml) -> Agent Lightning store (`agl store`, memory) and
Jaeger v2 (memory).

Figures:
- throughput: offered load in steps (spans/s, every span carrying a rollout id, traces of one root
  and three children); per step the spans that arrived in the store (its ``total_spans``) and in
  Jaeger (spans Jaeger's own storage exporter wrote, checked against its query API), the drain time
  after the sender stopped, and the rate carried end to end. Steps stop at the first loss, when the
  sender (Python SDK, same 2 cores) cannot offer the target rate any more, or at the last step.
  Reported: the highest offered rate with zero loss in both sinks.
- latency: span end -> visible in the store (polling ``query_spans`` every 20 ms), p50/p99, with
  one span exported per request (SimpleSpanProcessor), so the SDK's own batching delay is not
  counted; the collector's store path (batch/store, timeout 0: forwarded at once) is.

Options: --quick (two small steps, few latency samples: checks the script, not figures to quote),
--duration SECONDS per step, --rates R1,R2,...
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import statistics
import threading
import time
from typing import Any

from tests.support.jaeger import jaeger_spans
from tests.support.pipeline import (
    Pipeline,
    SentSpan,
    SpanSender,
    SpanSpec,
    collector_counters,
    missing_binaries,
    pipeline,
    prom_metric,
)
from tests.support.store import RolloutRef, enqueue_rollouts, store_client, store_statistics

CHILDREN = 3  # spans per trace = 1 + CHILDREN
TICK = 0.02  # pacing granularity of the sender (s)
DRAIN_STALL = 20.0  # give up waiting when nothing new arrived for this long (s)
DRAIN_MAX = 180.0  # and in any case after this long (s)


def jaeger_written(p: Pipeline) -> float:
    """Spans Jaeger's storage exporter wrote (Jaeger's own metrics: names carry `_total` there)."""
    return prom_metric(p.jaeger.metrics_url, "otelcol_exporter_sent_spans", {"exporter": "jaeger_storage_exporter"})


def offer(p: Pipeline, service: str, refs: list[RolloutRef], rate: float, duration: float) -> dict[str, Any]:
    """Send ~rate spans/s for ``duration`` s, paced in TICK slices; returns send figures."""
    per_trace = 1 + CHILDREN
    with SpanSender(p.otlp_http_url, service, export_timeout=30.0, schedule_delay_millis=100) as sender:
        start = time.monotonic()
        sent = 0
        turn = 0
        end = start + duration
        while True:
            now = time.monotonic()
            if now >= end:
                break
            due = int(rate * (now - start)) - sent
            traces = max(0, math.ceil(due / per_trace))
            if traces:
                specs = []
                for _ in range(traces):
                    specs.append(SpanSpec.for_rollout(refs[turn % len(refs)], traces=1, children=CHILDREN))
                    turn += 1
                sent += len(sender.send(specs))
            time.sleep(max(0.0, TICK - (time.monotonic() - now)))
        send_seconds = time.monotonic() - start
        flushed = sender.flush(timeout_millis=120_000)
        flush_seconds = time.monotonic() - start - send_seconds
        return {
            "sent": sent,
            "send_seconds": send_seconds,
            "offered_rate": sent / send_seconds,
            "flush_seconds": flush_seconds,
            "flushed": flushed,
            "sdk_failed": sender.failed,
            "started": start,
        }


def throughput_step(p: Pipeline, rate: float, duration: float) -> dict[str, Any]:
    service = f"bench-{int(rate)}-{int(time.time())}"
    refs = enqueue_rollouts(p.store_url, 8)
    store_before = store_statistics(p.store_url)["total_spans"]
    jaeger_before = jaeger_written(p)
    col_before = collector_counters(p.telemetry_url)

    sent = offer(p, service, refs, rate, duration)
    send_end = sent["started"] + sent["send_seconds"]
    target = sent["sent"]

    # Wait for the sinks: until both hold everything, nothing new for DRAIN_STALL s, or DRAIN_MAX s.
    # A sink's arrival time is when it was first seen complete (or its last progress if never).
    arrived = {"store": send_end, "jaeger": send_end}
    counts = {"store": -1.0, "jaeger": -1.0}
    complete: set[str] = set()
    last_progress = time.monotonic()
    deadline = last_progress + DRAIN_MAX
    while True:
        now_counts = {
            "store": store_statistics(p.store_url)["total_spans"] - store_before,
            "jaeger": jaeger_written(p) - jaeger_before,
        }
        now = time.monotonic()
        for sink, value in now_counts.items():
            if value != counts[sink] and sink not in complete:
                counts[sink] = value
                arrived[sink] = now
                last_progress = now
                if value >= target:
                    complete.add(sink)
        if len(complete) == 2 or now - last_progress > DRAIN_STALL or now > deadline:
            break
        time.sleep(0.1)
    in_store, in_jaeger = counts["store"], counts["jaeger"]
    jaeger_ids = [span["spanID"] for span in jaeger_spans(p.jaeger_query_url, service)]
    jaeger_api = len(set(jaeger_ids))
    col_after = collector_counters(p.telemetry_url)
    lost_store = target - in_store
    lost_jaeger = target - min(in_jaeger, jaeger_api)

    def carried(sink: str) -> float:
        return round(target / max(arrived[sink] - sent["started"], sent["send_seconds"]), 1)

    return {
        "target_rate": rate,
        "offered_rate": round(sent["offered_rate"], 1),
        "sent": target,
        "store": int(in_store),
        "jaeger": int(in_jaeger),
        "jaeger_api": jaeger_api,
        "jaeger_duplicates": len(jaeger_ids) - jaeger_api,
        "lost_store": int(lost_store),
        "lost_jaeger": int(lost_jaeger),
        "sdk_failed": sent["sdk_failed"],
        "collector_refused": col_after.total("refused") - col_before.total("refused"),
        "collector_send_failed": col_after.total("send_failed") - col_before.total("send_failed"),
        "sdk_flush_seconds": round(sent["flush_seconds"], 2),
        "store_drain_seconds": round(max(0.0, arrived["store"] - send_end), 2),
        "jaeger_drain_seconds": round(max(0.0, arrived["jaeger"] - send_end), 2),
        "carried_rate_store": carried("store"),
        "carried_rate_jaeger": carried("jaeger"),
        "carried_rate": min(carried("store"), carried("jaeger")),
        "zero_loss": lost_store == 0 and lost_jaeger == 0 and sent["sdk_failed"] == 0,
    }


def latency(p: Pipeline, samples: int, rate: float) -> dict[str, Any]:
    """Span end -> first seen by polling the store; one span per export request."""
    ref = enqueue_rollouts(p.store_url, 1)[0]
    sent: list[SentSpan] = []
    done = threading.Event()

    def send() -> None:
        with SpanSender(p.otlp_http_url, "bench-latency", simple=True) as sender:
            for _ in range(samples):
                sent.extend(sender.send([SpanSpec.for_rollout(ref, traces=1, children=0)]))
                time.sleep(1.0 / rate)
        done.set()

    async def watch() -> dict[str, int]:
        seen: dict[str, int] = {}
        client = store_client(p.store_url)
        try:
            deadline = time.monotonic() + samples / rate + 60
            while time.monotonic() < deadline:
                spans = await client.query_spans(ref.rollout_id)
                now = time.time_ns()
                for span in spans:
                    seen.setdefault(span.span_id, now)
                if done.is_set() and len(seen) >= samples:
                    break
                await asyncio.sleep(0.02)
        finally:
            await client.close()
        return seen

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    seen = asyncio.run(watch())
    thread.join(timeout=60)
    delays = sorted((seen[s.span_id] - s.end_time_ns) / 1e6 for s in sent if s.span_id in seen)
    if not delays:
        return {"samples": 0, "missing": len(sent)}
    return {
        "samples": len(delays),
        "missing": len(sent) - len(delays),
        "p50_ms": round(statistics.median(delays), 1),
        "p99_ms": round(delays[min(len(delays) - 1, math.ceil(0.99 * len(delays)) - 1)], 1),
        "max_ms": round(delays[-1], 1),
        "poll_interval_ms": 20,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two small steps: checks the script, not figures")
    parser.add_argument("--duration", type=float, default=None, help="seconds of load per step")
    parser.add_argument("--rates", default=None, help="comma-separated offered rates (spans/s)")
    opts = parser.parse_args()
    if missing_binaries():
        print("missing the collector or Jaeger binary: run `make binaries`")
        return 1
    if opts.rates:
        rates = [float(r) for r in opts.rates.split(",")]
    else:
        rates = (
            [200.0, 800.0]
            if opts.quick
            else [250.0, 500.0, 1000.0, 2000.0, 4000.0, 6000.0, 8000.0, 12000.0, 16000.0, 24000.0]
        )
    duration = opts.duration or (3.0 if opts.quick else 8.0)
    figures: dict[str, Any] = {"machine": {"cpus": os.cpu_count()}, "step_seconds": duration, "steps": []}

    with pipeline(collector_log_level="warn") as p:
        print(f"pipeline up: collector {p.otlp_http_url}, store {p.store_url}, jaeger {p.jaeger_query_url}", flush=True)
        best = 0.0
        best_carried = 0.0
        for rate in rates:
            step = throughput_step(p, rate, duration)
            figures["steps"].append(step)
            print(json.dumps(step), flush=True)
            if step["zero_loss"]:
                best = max(best, step["offered_rate"])
                best_carried = max(best_carried, step["carried_rate"])
            else:
                print(f"loss at {rate:.0f} spans/s offered: stopping the steps", flush=True)
                break
            if step["offered_rate"] < 0.9 * rate:
                print(f"sender-bound: offered {step['offered_rate']:.0f} of {rate:.0f} spans/s; stopping", flush=True)
                figures["sender_bound"] = True
                break
        figures["max_zero_loss_offered_spans_per_second"] = best
        figures["max_zero_loss_carried_spans_per_second"] = best_carried
        figures["latency_span_end_to_store"] = latency(p, samples=40 if opts.quick else 300, rate=20.0)
        print(json.dumps({"latency_span_end_to_store": figures["latency_span_end_to_store"]}), flush=True)
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
