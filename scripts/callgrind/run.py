#!/usr/bin/env python3
"""callgrind per-request instruction counts for signet-proxy, one variant.

usage: run.py VARIANT TARGET_DIR OUTDIR REPS
Starts one small Python keep-alive upstream (the same bytes for every request),
then per repetition three proxy processes under callgrind, each serving one keep-alive connection at a
time (signet-bench load --connections 1):
  base   : W signed warm-up requests, then exit
  signed : W warm-up + N signed
  junk   : W warm-up + M junk
Per-request instructions = (total(run) - total(base)) / count.
"""
import os, re, shutil, signal, socket, subprocess, sys, tempfile, time

variant, target_dir, outdir, reps = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
BIN = os.path.join(target_dir, "release")
PROXY, BENCH = os.path.join(BIN, "signet-proxy"), os.path.join(BIN, "signet-bench")
TARGET = "/repos/octo-org/hello-world"
JSON = '{"id":1296269,"name":"hello-world","full_name":"octo-org/hello-world","private":false}'
W, N, M = 10, int(os.environ.get("N", 1000)), int(os.environ.get("M", 2000))
os.makedirs(outdir, exist_ok=True)

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]

def listening(port):
    # Poll /proc/net/tcp, not connect(): no extra connection reaches the proxy.
    h = "%04X" % port
    with open("/proc/net/tcp") as f:
        return any(l.split()[1].endswith(":" + h) and l.split()[3] == "0A" for l in f.readlines()[1:])

def wait_listen(port, proc, what, secs=300):
    end = time.time() + secs
    while time.time() < end:
        if proc.poll() is not None: sys.exit(f"{what} exited: {proc.returncode}")
        if listening(port): return
        time.sleep(0.1)
    sys.exit(f"{what} did not listen")

def kv(s): return dict(p.split("=", 1) for p in s.split() if "=" in p)

def load(port, kind, n):
    out = subprocess.run([BENCH, "load", "--addr", f"127.0.0.1:{port}", "--target", TARGET,
                          "--kind", kind, "--requests", str(n), "--connections", "1"],
                         capture_output=True, text=True, check=True).stdout
    r = kv(out)
    ok = {"signed": f"200:{n}"}.get(kind)
    if int(r["errors"]) or int(r["answered"]) != n or (ok and r["statuses"] != ok) \
            or (kind == "junk" and not re.fullmatch(r"40[01]:\d+", r["statuses"])):
        sys.exit(f"bad load {kind}: {out}")
    return r

up = free_port()
# A tiny keep-alive HTTP/1.1 upstream (nginx is not installed here): the same
# fixed answer, byte for byte, to every request; its CPU is not measured.
UPSTREAM = r"""
import socket, sys, threading
body = sys.argv[2].encode()
resp = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)) + body
def serve(c):
    buf = b""
    with c:
        while True:
            d = c.recv(65536)
            if not d: return
            buf += d
            while b"\r\n\r\n" in buf:
                head, buf = buf.split(b"\r\n\r\n", 1)
                c.sendall(resp)
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(128)
while True:
    c, _ = s.accept(); c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""
upstream = subprocess.Popen([sys.executable, "-c", UPSTREAM, str(up), JSON])
tmp = None
try:
    wait_listen(up, upstream, "upstream", 20)
    mk = subprocess.run([BENCH, "master-key"], capture_output=True, text=True, check=True).stdout.strip()
    for rep in range(1, reps + 1):
        for run, kind, n in (("base", None, 0), ("signed", "signed", N), ("junk", "junk", M)):
            port = free_port()
            out = os.path.join(outdir, f"{variant}.{run}.{rep}.cg")
            cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                   PROXY, "--listen", "127.0.0.1", "--port", str(port),
                   "--github-api", f"http://127.0.0.1:{up}", "--master-key", mk,
                   "--github-token", "ghs_bench_token", "--clock-skew", "10m",
                   "--max-connections", "4096"]
            if rep == 1 and run == "base": print("proxy command:", " ".join(cmd), flush=True)
            log = open(os.path.join(outdir, f"{variant}.{run}.{rep}.log"), "w")
            p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
            wait_listen(port, p, "proxy")
            time.sleep(2)
            t0 = time.time()
            load(port, "signed", W)
            r = load(port, kind, n) if n else {}
            time.sleep(2)
            p.send_signal(signal.SIGTERM)
            rc = p.wait(timeout=300)
            tot = None
            for line in open(out):
                if line.startswith("summary:") or line.startswith("totals:"):
                    tot = int(line.split()[1])
            print(f"{variant} {run} rep{rep}: total={tot} rc={rc} secs={time.time()-t0:.1f} {r.get('statuses','')}", flush=True)
finally:
    upstream.send_signal(signal.SIGTERM)
    try: upstream.wait(timeout=10)
    except subprocess.TimeoutExpired: upstream.kill()
