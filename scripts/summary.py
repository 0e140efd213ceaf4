#!/usr/bin/env python3
"""Prints a `clickflow run --json` summary for a benchmark: scripts/summary.py SUMMARY.json LABEL"""
import json
import sys

s = json.load(open(sys.argv[1]))
label = sys.argv[2] if len(sys.argv) > 2 else ""
users = max(s["users_with_features"], 1)
print(f"{label}  lines={s['lines_read']}  wall={s['wall_s']:.2f}s  events/s={s['events_per_s']:,.0f}")
print(f"  accepted={s['accepted']}  invalid={s['invalid']}  late={s['late']}  future={s['future']}  bot_events={s['bot_events']}  bots={s['bots_flagged']}")
print(f"  tick write latency: p50={s['write_p50_us']/1000:.1f} ms  p99={s['write_p99_us']/1000:.1f} ms  max={s['write_max_us']/1000:.1f} ms  ({s['ticks_written']} ticks)")
if s.get("as_of_lag_p50_ms") is not None:
    print(f"  as_of behind the wall clock when written: p50={s['as_of_lag_p50_ms']} ms  p99={s['as_of_lag_p99_ms']} ms")
print(f"  peak RSS={s['peak_rss_bytes']/2**20:.0f} MiB  active users={s['users_with_features']}  sessions={s['sessions']}")
print(f"  peak RSS per active user={s['peak_rss_bytes']/users:,.0f} bytes (an upper bound on state: includes buffers and caches)")
