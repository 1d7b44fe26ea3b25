"""Benchmark the live-reload proxy (standard library only).

    python3 bench/bench_proxy.py [--quick]

Prints markdown tables:
1. requests/s and median latency straight to a small app and through the
   proxy, measured in the same run against the same app process;
2. how long one reload takes to reach 1, 100 and 1000 SSE subscribers
   (raw socket clients), from the publish call to the last client's read;
3. how long a new request waits right after 3000 idle keep-alive connections
   (each used for one request) hang up at once, over several rounds.

The app and the proxy each run in their own process (as with a real air_std);
load comes from separate client processes, so the numbers are not one GIL
measuring itself. On a small machine all of them share the same cores: compare
the columns with each other, not with other machines.
"""

import argparse
import multiprocessing
import os
import platform
import resource
import selectors
import socket
import statistics
import subprocess
import sys
import textwrap
import time
import http.client

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

APP = textwrap.dedent('''
    import sys
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    PLAIN = b"x" * 2048
    PAGE = b"<html><head><title>bench</title></head><body>" + b"y" * 2000 + b"</body></html>"
    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall
        def do_GET(self):
            body, ctype = (PAGE, "text/html; charset=utf-8") if self.path == "/page" else (PLAIN, "text/plain")
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def log_message(self, *a):
            pass
    s = ThreadingHTTPServer(("127.0.0.1", 0), H)
    s.request_queue_size = 1024
    print(s.server_address[1], flush=True)
    s.serve_forever()
''')

# The proxy process: one command per stdin line ("publish", "count"), stop on EOF.
PROXY = textwrap.dedent('''
    import sys, types
    sys.path.insert(0, sys.argv[1])
    from air_std.broadcast import Event
    from air_std.proxy import LiveReloadProxy
    cfg = types.SimpleNamespace(enabled=True, proxy_port=0, app_port=int(sys.argv[2]),
                                app_start_timeout_s=5.0, bind="127.0.0.1")
    p = LiveReloadProxy(cfg)
    p.ping_interval_s = 60.0
    p.start()
    print(p.port, flush=True)
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "publish":
            print(p.subscribers.publish(Event("reload", '{"reason": "bench"}')), flush=True)
        elif cmd == "count":
            print(p.subscribers.count(), flush=True)
    p.stop()
''')


def spawn(code, *args):
    proc = subprocess.Popen([sys.executable, "-c", code] + [str(a) for a in args],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    port = int(proc.stdout.readline())
    return proc, port


def _load_worker(args):
    port, path, seconds = args
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    n = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        conn.request("GET", path)
        conn.getresponse().read()
        n += 1
    conn.close()
    return n


def throughput(port, path, clients, seconds):
    with multiprocessing.Pool(clients) as pool:
        counts = pool.map(_load_worker, [(port, path, seconds)] * clients)
    return sum(counts) / seconds


def cpu_s(pid):
    """utime+stime of a process so far, in seconds (None without /proc)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def throughput_and_cpu(port, path, clients, seconds, pid):
    """(requests/s, CPU µs per request of process pid) over one load run."""
    c0 = cpu_s(pid)
    rps = throughput(port, path, clients, seconds)
    c1 = cpu_s(pid)
    return rps, (None if c0 is None else (c1 - c0) / (rps * seconds) * 1e6)


def median_latency_ms(port, path, n):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    times = []
    for _ in range(n + 10):
        t0 = time.perf_counter()
        conn.request("GET", path)
        conn.getresponse().read()
        times.append(time.perf_counter() - t0)
    conn.close()
    return statistics.median(times[10:]) * 1000  # the first 10 warm up


def sse_clients(port, n):
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(b"GET /__air_internal/sse HTTP/1.1\r\nHost: bench\r\n\r\n")
        socks.append(s)
    for s in socks:  # headers and the retry line
        buf = b""
        while b"retry:" not in buf:
            buf += s.recv(4096)
        s.setblocking(False)
    return socks


def fanout_ms(proxy, socks):
    """Time from the publish command to the last subscriber reading the event."""
    waiting = set(socks)
    seen = {s: b"" for s in socks}
    with selectors.DefaultSelector() as sel:
        for s in socks:
            sel.register(s, selectors.EVENT_READ)
        t0 = time.perf_counter()
        proxy.stdin.write("publish\n")
        proxy.stdin.flush()
        deadline = t0 + 30
        while waiting and time.perf_counter() < deadline:
            for key, _ in sel.select(timeout=1.0):
                s = key.fileobj
                seen[s] += s.recv(65536)
                if b"event: reload" in seen[s]:
                    waiting.discard(s)
                    sel.unregister(s)
        elapsed = time.perf_counter() - t0
    proxy.stdout.readline()  # the publish count
    if waiting:
        raise SystemExit("%d subscribers never got the reload" % len(waiting))
    return elapsed * 1000


def idle_herd_ms(port, n):
    """n keep-alive connections, one request each, left idle, then closed
    together: how long the next request (on a new connection) takes."""
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        s.sendall(b"GET /plain HTTP/1.1\r\nHost: bench\r\n\r\n")
        socks.append(s)
    for s in socks:
        got = b""
        while len(got) < 2048 or b"\r\n\r\n" not in got:
            got += s.recv(65536)
    time.sleep(2.0)  # idle: past the proxy's linger, so parked (or, before, blocked threads)
    for s in socks:
        s.close()
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/plain")
    conn.getresponse().read()
    elapsed = time.perf_counter() - t0
    conn.close()
    time.sleep(1.0)  # let the closing finish before the next round
    return elapsed * 1000


def raise_nofile(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))  # the proxy child inherits it
        if target < need:
            print("note: RLIMIT_NOFILE hard limit %d < %d; the 1000-subscriber row may fail" % (hard, need))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="shorter runs (CI smoke)")
    opts = ap.parse_args(argv)
    seconds = 1.0 if opts.quick else 3.0
    lat_n = 200 if opts.quick else 1000
    rounds = 3 if opts.quick else 7
    clients = 4
    raise_nofile(8192)

    app, app_port = spawn(APP)
    proxy, proxy_port = spawn(PROXY, REPO, app_port)
    try:
        print("## air_std proxy benchmark\n")
        print("python %s on %s, %d CPUs; %d client processes, keep-alive, %.0f s per figure.\n"
              % (platform.python_version(), platform.system(), os.cpu_count() or 0, clients, seconds))
        print("CPU per request: utime+stime of the app's process over the direct run, and of the "
              "proxy's over the proxied run (the app's share of that run not counted), divided by "
              "the requests served; steadier than req/s on a shared machine.\n")
        print("| request | direct req/s | proxy req/s | direct median ms | proxy median ms | added ms "
              "| app CPU/request µs | proxy CPU/request µs | proxy / app |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for label, path in (("GET 2 KB text/plain", "/plain"), ("GET 2 KB HTML (script injected)", "/page")):
            rps_direct, app_cpu = throughput_and_cpu(app_port, path, clients, seconds, app.pid)
            rps_proxy, proxy_cpu = throughput_and_cpu(proxy_port, path, clients, seconds, proxy.pid)
            lat_direct = median_latency_ms(app_port, path, lat_n)
            lat_proxy = median_latency_ms(proxy_port, path, lat_n)
            cpu = ("%.0f | %.0f | %.2fx" % (app_cpu, proxy_cpu, proxy_cpu / app_cpu)
                   if app_cpu and proxy_cpu else "- | - | -")
            print("| %s | %.0f | %.0f | %.3f | %.3f | %+.3f | %s |" % (
                label, rps_direct, rps_proxy, lat_direct, lat_proxy, lat_proxy - lat_direct, cpu))

        print("\n| SSE subscribers | one reload reaches all: median ms | min ms | max ms |")
        print("| ---: | ---: | ---: | ---: |")
        socks = []
        for n in (1, 100, 1000):
            socks += sse_clients(proxy_port, n - len(socks))
            proxy.stdin.write("count\n")
            proxy.stdin.flush()
            got = int(proxy.stdout.readline())
            if got != n:
                raise SystemExit("expected %d subscribers, the proxy has %d" % (n, got))
            times = [fanout_ms(proxy, socks) for _ in range(rounds)]
            print("| %d | %.2f | %.2f | %.2f |" % (n, statistics.median(times), min(times), max(times)))
        for s in socks:
            s.close()

        n = 1000 if opts.quick else 3000
        herd = [idle_herd_ms(proxy_port, n) for _ in range(3 if opts.quick else 7)]
        print("\n| idle keep-alive connections closed at once | next request: median ms | max ms | rounds |")
        print("| ---: | ---: | ---: | ---: |")
        print("| %d | %.1f | %.1f | %d |" % (n, statistics.median(herd), max(herd), len(herd)))
    finally:
        proxy.stdin.close()
        try:
            proxy.wait(10)
        except subprocess.TimeoutExpired:
            proxy.kill()
        app.kill()
        app.wait(5)
        proxy.stdout.close()
        app.stdout.close()
        app.stdin.close()


if __name__ == "__main__":
    main()
