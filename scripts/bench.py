"""The body of scripts/bench (run that, not this): starts the servers, runs
the figures interleaved and prints each against its target.

Every server listens on 127.0.0.1 on a port the kernel picked. All state
lives in one temporary directory, removed at exit, and every process started
here is stopped by its own pid.
"""

import argparse
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target"), "release")
BENCH = os.path.join(BIN, "signet-bench")
PROXY = os.path.join(BIN, "signet-proxy")
TARGET = "/repos/octo-org/hello-world"
TOKEN = "ghs_bench_token"
JSON = '{"id":1296269,"name":"hello-world","full_name":"octo-org/hello-world","private":false}'
BIG_MB = 100
MODELS = ("per-core", "multi-thread")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, what):
    deadline = time.time() + 20
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"bench: {what} exited at startup (code {proc.returncode})")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"bench: {what} did not listen on {port}")


def kv(line):
    return dict(part.split("=", 1) for part in line.split() if "=" in part)


def bench(*args):
    out = subprocess.run([BENCH, *map(str, args)], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"bench: signet-bench {' '.join(map(str, args))} failed: {out.stderr.strip()}")
    return kv(out.stdout.strip())


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def nginx_stub(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/nginx-status", timeout=5) as r:
        text = r.read().decode()
    accepts, handled, requests = map(int, re.search(r"\n\s*(\d+) (\d+) (\d+)", text).groups())
    return accepts, requests


class Rig:
    """The servers, started once for the whole run."""

    def __init__(self, args):
        self.dir = tempfile.mkdtemp(prefix="signet-bench.")
        # nginx's workers drop root and must still read the 100 MB file.
        os.chmod(self.dir, 0o755)
        self.procs = []
        self.args = args
        big = os.path.join(self.dir, "big.bin")
        with open(big, "wb") as f:
            chunk = os.urandom(1 << 20)
            for _ in range(BIG_MB):
                f.write(chunk)
        self.upstream_port = free_port()
        self.nginx_port = free_port()
        self.upstream = self.nginx("upstream", f"""
    server {{
        listen 127.0.0.1:{self.upstream_port} backlog=4096;
        access_log off;
        keepalive_requests 10000000;
        keepalive_timeout 600s;
        location = /nginx-status {{ stub_status; }}
        location = /big {{ alias {big}; default_type application/octet-stream; etag off; }}
        location / {{ default_type application/json; return 200 '{JSON}'; }}
    }}""", workers=1)
        # The baseline: nginx as a plain reverse proxy with a pooled upstream,
        # doing what the proxy does to headers (strip the proof, set the
        # token), and logging every request as the proxy does.
        self.baseline = self.nginx("baseline", f"""
    upstream up {{ server 127.0.0.1:{self.upstream_port}; keepalive 128; keepalive_requests 10000000; }}
    server {{
        listen 127.0.0.1:{self.nginx_port} backlog=4096;
        access_log {self.dir}/baseline-access.log;
        keepalive_requests 10000000;
        location / {{
            proxy_pass http://up;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Signet-Proof "";
            proxy_set_header Authorization "Bearer {TOKEN}";
        }}
    }}""", workers="auto")
        self.master_key = subprocess.run([BENCH, "master-key"], capture_output=True, text=True).stdout.strip()
        self.proxies = {}
        for model in args.models:
            self.proxies[model] = self.proxy(model)

    def nginx(self, name, server, workers):
        conf = os.path.join(self.dir, f"{name}.conf")
        with open(conf, "w") as f:
            f.write(f"""
daemon off;
master_process on;
worker_processes {workers};
pid {self.dir}/{name}.pid;
error_log {self.dir}/{name}-error.log warn;
events {{ worker_connections 8192; }}
http {{
    sendfile on;
    tcp_nodelay on;
    client_body_temp_path {self.dir}/{name}-body;
    proxy_temp_path {self.dir}/{name}-proxy;
    {server}
}}
""")
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        proc = subprocess.Popen([nginx, "-c", conf, "-p", self.dir], stderr=subprocess.DEVNULL)
        self.procs.append(proc)
        port = int(re.search(r"127\.0\.0\.1:(\d+)", server).group(1))
        wait_port(port, proc, f"nginx ({name})")
        time.sleep(0.2)
        return proc

    def proxy(self, model, clock_skew="10m"):
        port = free_port()
        env = dict(os.environ, SIGNET_RUNTIME=model)
        log = open(os.path.join(self.dir, f"proxy-{model}-{port}.log"), "w")
        proc = subprocess.Popen(
            [
                PROXY, "--listen", "127.0.0.1", "--port", str(port),
                "--github-api", f"http://127.0.0.1:{self.upstream_port}",
                "--master-key", self.master_key, "--github-token", TOKEN,
                # Proofs are signed before a figure starts and used during
                # it; a wider window only lengthens how long nonces are kept.
                "--clock-skew", clock_skew, "--max-connections", "4096",
                # The load comes from one client; its default share (a
                # quarter of the upstream slots) would queue it behind
                # itself. The bench measures the proxy, not that policy.
                "--upstream-concurrency-per-client", "100",
            ],
            stdout=log, stderr=subprocess.STDOUT, env=env,
        )
        self.procs.append(proc)
        wait_port(port, proc, f"signet-proxy ({model})")
        time.sleep(0.5)
        return {"proc": proc, "port": port, "idle_rss_kib": rss_kib(proc.pid)}

    def nginx_pids(self, proc):
        return [proc.pid, *children(proc.pid)]

    def stop(self):
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def load(port, pids, kind, requests, connections, rate=None):
    args = ["load", "--addr", f"127.0.0.1:{port}", "--target", TARGET, "--kind", kind,
            "--requests", requests, "--connections", connections]
    if rate:
        args += ["--rate", rate]
    for pid in pids:
        args += ["--pid", pid]
    out = bench(*args)
    answered = int(out["answered"])
    if int(out["errors"]) or answered < requests:
        sys.exit(f"bench: {kind} load on :{port} lost requests: {out}")
    return out


def how(out):
    return "" if out.get("cpu_exact") == "true" else "  (from 10 ms ticks: a thread exited)"


def med(values):
    return statistics.median(values)


def main():
    parser = argparse.ArgumentParser(prog="scripts/bench", description=__doc__)
    parser.add_argument("--long", action="store_true", help="5x the requests per figure")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median reported)")
    parser.add_argument("--requests", type=int, default=20000, help="requests per saturation figure and round")
    parser.add_argument("--connections", type=int, default=64, help="connections for the saturation figures")
    parser.add_argument("--rate", type=int, default=1000, help="open-loop rate for P3, requests/s")
    parser.add_argument("--latency-secs", type=int, default=10, help="seconds of open-loop load per target and round")
    parser.add_argument("--models", default=",".join(MODELS),
                        help="serving models to measure, comma-separated (SIGNET_RUNTIME values)")
    args = parser.parse_args()
    args.models = [m for m in args.models.split(",") if m]
    if args.long:
        args.requests *= 5
        args.latency_secs *= 3
    n, c = args.requests, args.connections

    load1, load5, load15 = os.getloadavg()
    cpu_model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    print(f"== machine: {cpu_model}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}; "
          f"load average before: {load1:.2f} {load5:.2f} {load15:.2f}")
    print(f"== command: scripts/bench {' '.join(sys.argv[1:])}".rstrip())
    rig = Rig(args)
    try:
        run(rig, args, n, c)
    finally:
        rig.stop()
    load1, load5, load15 = os.getloadavg()
    print(f"== load average after: {load1:.2f} {load5:.2f} {load15:.2f}")


def run(rig, args, n, c):
    nginx_pids = rig.nginx_pids(rig.baseline)
    figures = {"verify": [], "nginx": [], "nginx_p50": [], "nginx_p99": [], "nginx_rps": []}
    for model in args.models:
        for key in ("signed", "signed_p50", "signed_p99", "signed_rps", "junk", "reuse"):
            figures[f"{model}:{key}"] = []

    # Warm-up: connections pooled, binding cached, allocator grown.
    for model, p in rig.proxies.items():
        load(p["port"], [], "signed", 2000, c)
    load(rig.nginx_port, [], "signed", 2000, c)

    for r in range(args.rounds):
        print(f"-- round {r + 1}/{args.rounds}", flush=True)
        figures["verify"].append(float(bench("verify")["verify_us"]))
        out = load(rig.nginx_port, nginx_pids, "signed", n, c)
        figures["nginx"].append(float(out["cpu_us_per_req"]))
        figures["nginx_p50"].append(int(out["p50_us"]))
        figures["nginx_p99"].append(int(out["p99_us"]))
        figures["nginx_rps"].append(float(out["rps"]))
        print(f"   nginx          signed: {out['cpu_us_per_req']:>7} us CPU/req  {out['rps']:>6} req/s{how(out)}")
        for model, p in rig.proxies.items():
            pid = p["proc"].pid
            accepts0, reqs0 = nginx_stub(rig.upstream_port)
            out = load(p["port"], [pid], "signed", n, c)
            accepts1, reqs1 = nginx_stub(rig.upstream_port)
            # The status request itself is one request on one new connection.
            upstream_requests = max(1, reqs1 - reqs0 - 1)
            new_connections = max(0, accepts1 - accepts0 - 1)
            figures[f"{model}:reuse"].append(1 - new_connections / upstream_requests)
            if out["statuses"] != f"200:{n}":
                sys.exit(f"bench: proxy ({model}) answered {out['statuses']}")
            figures[f"{model}:signed"].append(float(out["cpu_us_per_req"]))
            figures[f"{model}:signed_p50"].append(int(out["p50_us"]))
            figures[f"{model}:signed_p99"].append(int(out["p99_us"]))
            figures[f"{model}:signed_rps"].append(float(out["rps"]))
            print(f"   {model:<14} signed: {out['cpu_us_per_req']:>7} us CPU/req  {out['rps']:>6} req/s{how(out)}")
            out = load(p["port"], [pid], "junk", n, c)
            if not re.fullmatch(r"40[01]:\d+", out["statuses"]):
                sys.exit(f"bench: junk got {out['statuses']}")
            figures[f"{model}:junk"].append(float(out["cpu_us_per_req"]))
            print(f"   {model:<14} junk:   {out['cpu_us_per_req']:>7} us CPU/req  {out['rps']:>6} req/s{how(out)}")

    # P3: the same open-loop schedule straight to the upstream, through nginx
    # and through each proxy, interleaved.
    per = args.rate * args.latency_secs
    lat = {"direct": [], "nginx": [], **{m: [] for m in args.models}}
    ports = {"direct": rig.upstream_port, "nginx": rig.nginx_port,
             **{m: p["port"] for m, p in rig.proxies.items()}}
    for r in range(args.rounds):
        for name, port in ports.items():
            kind = "plain" if name == "direct" else "signed"
            out = load(port, [], kind, per, 32, args.rate)
            lat[name].append((int(out["p50_us"]), int(out["p99_us"])))
    print("-- open loop done", flush=True)

    # P4 and P5 on a freshly started proxy per model, with the default clock
    # skew: what a long run left in the replay store (kept for the bench's
    # wide skew) is no part of what a connection or a stream costs.
    held, streamed, idle = {}, {}, {}
    for model in args.models:
        p = rig.proxy(model, clock_skew="30s")
        pid = p["proc"].pid
        idle[model] = p["idle_rss_kib"]
        out = bench("hold", "--addr", f"127.0.0.1:{p['port']}", "--target", TARGET,
                    "--connections", 1000, "--pid", pid)
        if int(out["ok"]) != 1000:
            sys.exit(f"bench: hold got {out}")
        held[model] = int(out["rss_held_kib"])
        time.sleep(1)
        out = bench("stream", "--addr", f"127.0.0.1:{p['port']}", "--target", "/big", "--pid", pid)
        if out["status"] != "200" or int(out["bytes"]) < BIG_MB << 20:
            sys.exit(f"bench: stream got {out}")
        streamed[model] = int(out["growth_kib"])
        p["proc"].send_signal(signal.SIGTERM)

    report(rig, args, figures, lat, held, streamed, idle)


def report(rig, args, f, lat, held, streamed, idle_kib):
    verify = med(f["verify"])
    nginx = med(f["nginx"])
    direct_p99 = med(p99 for _, p99 in lat["direct"])
    print()
    print(f"one verify_strict: {verify:.1f} us CPU; nginx per proxied request: {nginx:.1f} us CPU, "
          f"p50 {med(f['nginx_p50'])} us, p99 {med(f['nginx_p99'])} us at {c_rps(f['nginx_rps'])} req/s "
          f"(saturation, {args.connections} connections)")
    print(f"open loop {args.rate} req/s: direct p50 {med(p50 for p50, _ in lat['direct'])} us p99 {direct_p99} us; "
          f"nginx p50 {med(p50 for p50, _ in lat['nginx'])} us p99 {med(p99 for _, p99 in lat['nginx'])} us")
    for model in args.models:
        signed = med(f[f"{model}:signed"])
        junk = med(f[f"{model}:junk"])
        p99 = med(p99 for _, p99 in lat[model])
        p50 = med(p50 for p50, _ in lat[model])
        idle = idle_kib[model] / 1024
        reuse = min(f[f"{model}:reuse"])
        rows = [
            ("P1 CPU/authenticated request", f"{signed:.1f} us = {signed / (verify + nginx):.2f} x (verify + nginx)",
             "<= 1.10 x", signed / (verify + nginx) <= 1.10),
            ("   (moonshot)", f"{signed / (verify + nginx):.2f} x", "<= 0.80 x", signed / (verify + nginx) <= 0.80),
            ("P2 CPU/refused junk request", f"{junk:.1f} us = {junk / nginx:.2f} x nginx", "<= 0.70 x", junk / nginx <= 0.70),
            ("P3 added p99 at fixed rate", f"{p99 - direct_p99:+d} us (p50 {p50} us, p99 {p99} us)", "<= 1000 us",
             p99 - direct_p99 <= 1000),
            ("P4 idle RSS", f"{idle:.1f} MiB", "<= 8 MiB", idle <= 8),
            ("P4 RSS, 1,000 keep-alive conns", f"{held[model] / 1024:.1f} MiB", "<= 32 MiB", held[model] / 1024 <= 32),
            ("P5 RSS growth, 100 MB response", f"{streamed[model] / 1024:.1f} MiB", "<= 16 MiB", streamed[model] / 1024 <= 16),
            ("upstream connection reuse", f"{reuse * 100:.2f} %", ">= 99 %", reuse >= 0.99),
        ]
        print(f"\n{model}: saturation {c_rps(f[f'{model}:signed_rps'])} req/s, "
              f"p50 {med(f[f'{model}:signed_p50'])} us, p99 {med(f[f'{model}:signed_p99'])} us")
        for name, value, target, ok in rows:
            print(f"  {name:<32} {value:<48} target {target:<11} {'met' if ok else 'MISSED'}")


def c_rps(values):
    return f"{med(values):,.0f}"


if __name__ == "__main__":
    main()
