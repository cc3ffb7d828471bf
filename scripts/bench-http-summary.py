#!/usr/bin/env python3
"""Summarise scripts/bench-http.sh results: medians per (file, connections,
server) with ratios against nginx, and idle memory per connection.

usage: bench-http-summary.py OUT_DIR   (markdown on stdout)
"""
import glob
import json
import os
import platform
import statistics
import sys


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(v, spec):
    return "n/a" if v is None else format(v, spec)


def ratio(a, b):
    return None if a is None or b in (None, 0) else a / b


def machine():
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} CPUs ({cpu}), Linux {platform.release()}"


def main(out):
    loads, idles = {}, {}
    for path in sorted(glob.glob(os.path.join(out, "*.json"))):
        with open(path) as f:
            d = json.load(f)
        name = os.path.basename(path)[:-5]
        if d["mode"] == "load":
            # load-SERVER-FILE-cN-rR
            _, rest = name.split("-", 1)
            rest, _run = rest.rsplit("-r", 1)
            rest, conns = rest.rsplit("-c", 1)
            server, file = d["label"], rest[len(d["label"]) + 1:]
            loads.setdefault((file, int(conns), server), []).append(d)
        else:
            kind = "req" if d["request_first"] else "bare"
            idles[(d["label"], kind, d["connections"])] = d

    servers = []
    for (_, _, s) in loads:
        if s not in servers:
            servers.append(s)
    for (s, _, _) in idles:
        if s not in servers:
            servers.append(s)
    servers.sort(key=lambda s: (s != "nginx", s))

    print(f"Machine: {machine()}\n")
    print("### Load (medians over runs)\n")
    print("req/(srv+irq) CPU-s divides by server CPU plus all irq/softirq time, which no process is "
          "charged with (loopback TCP receive processing for both sides lands there).\n")
    print("| file | conns | server | runs | req/s | req per server-CPU-s | req/(srv+irq) CPU-s | MB/s | p50 ms | p99 ms "
          "| server CPU s | irq CPU s | client CPU s | other CPU s | errors | ×nginx req/s | ×nginx req/CPU-s "
          "| ×nginx req/(srv+irq) | ×nginx p99 |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    med = {}
    for key in sorted(loads, key=lambda k: (k[0] != "seg.ts", k[1], servers.index(k[2]))):
        runs = loads[key]
        m = {
            "rps": median([r["req_per_s"] for r in runs]),
            "rpc": median([r["req_per_server_cpu_s"] for r in runs]),
            "mbs": median([r["mb_per_s"] for r in runs]),
            "p50": median([r["latency_p50_us"] / 1000 for r in runs]),
            "p99": median([r["latency_p99_us"] / 1000 for r in runs]),
            "scpu": median([r["server_cpu_s"] for r in runs]),
            "ccpu": median([r["client_cpu_s"] for r in runs]),
            "ocpu": median([r.get("other_cpu_s") for r in runs]),
            "irq": median([r.get("machine_irq_s") for r in runs]),
            "rpci": median([r["requests"] / (r["server_cpu_s"] + r["machine_irq_s"]) for r in runs]),
            "err": sum(r["errors"]["total"] for r in runs),
            "n": len(runs),
        }
        med[key] = m
    for key, m in med.items():
        file, conns, server = key
        base = med.get((file, conns, "nginx"))
        rr = rc = ri = rp = None
        if base and server != "nginx":
            rr, rc, rp = ratio(m["rps"], base["rps"]), ratio(m["rpc"], base["rpc"]), ratio(m["p99"], base["p99"])
            ri = ratio(m["rpci"], base["rpci"])
        print(f"| {file} | {conns} | {server} | {m['n']} | {fmt(m['rps'], ',.0f')} | {fmt(m['rpc'], ',.0f')} "
              f"| {fmt(m['rpci'], ',.0f')} | {fmt(m['mbs'], ',.0f')} | {fmt(m['p50'], '.2f')} | {fmt(m['p99'], '.2f')} "
              f"| {fmt(m['scpu'], '.2f')} | {fmt(m['irq'], '.2f')} | {fmt(m['ccpu'], '.2f')} | {fmt(m['ocpu'], '.2f')} "
              f"| {m['err']} | {fmt(rr, '.2f')} | {fmt(rc, '.2f')} | {fmt(ri, '.2f')} | {fmt(rp, '.2f')} |")

    if idles:
        print("\n### Idle connections: server PSS growth per connection\n")
        print("bare = connected, nothing sent; req = one 1 KiB GET answered, then idle. "
              "bytes/conn = (PSS at end of hold − PSS before connecting) / connections; "
              "marginal = slope between the smallest and largest count (fixed costs cancel).\n")
        counts = sorted({n for (_, _, n) in idles})
        head = " | ".join(f"{n} conns: bytes/conn (held at end)" for n in counts)
        print(f"| server | kind | {head} | marginal bytes/conn | ×nginx marginal |")
        print("|---|---|" + "---:|" * (len(counts) + 2))
        marg = {}
        for server in servers:
            for kind in ("bare", "req"):
                row = [idles.get((server, kind, n)) for n in counts]
                if not any(row):
                    continue
                cells = []
                for d in row:
                    if d is None:
                        cells.append("n/a")
                    else:
                        cells.append(f"{fmt(d['pss_bytes_per_conn'], ',.0f')} ({d['held_at_end']})")
                m = None
                lo, hi = row[0], row[-1]
                if lo and hi and hi is not lo and None not in (lo["pss_end_bytes"], hi["pss_end_bytes"]):
                    grow_lo = lo["pss_end_bytes"] - lo["pss_before_bytes"]
                    grow_hi = hi["pss_end_bytes"] - hi["pss_before_bytes"]
                    m = (grow_hi - grow_lo) / (hi["connected"] - lo["connected"])
                marg[(server, kind)] = m
                base = marg.get(("nginx", kind))
                r = ratio(m, base) if server != "nginx" else None
                print(f"| {server} | {kind} | " + " | ".join(cells) + f" | {fmt(m, ',.0f')} | {fmt(r, '.2f')} |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "target/bench-http")
