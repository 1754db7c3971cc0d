"""Opens N keep-alive connections to a proxy, sends one request on each, reads each response
whole, and then holds them idle until its standard input closes (or DEADLINE seconds pass).

    python3 idle_conns.py PORT N PATH DEADLINE [HEADER ...]

Prints one line when every connection is idle: "ready OK FAILED". bench.sh measures the proxy's
memory while the connections are held. Connections go to 127.0.0.1 only.
"""
import errno
import selectors
import socket
import sys
import time

port, n, path, deadline_s = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
headers = sys.argv[5:]
deadline = time.monotonic() + deadline_s
request = (
    f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n" + "".join(h + "\r\n" for h in headers) + "\r\n"
).encode()

BATCH = 256  # connections in the handshake/request phase at once


def response_complete(buf):
    """True once buf holds one whole response (Content-Length or chunked)."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return False
    head = buf[:end].decode("latin-1").lower()
    body = buf[end + 4 :]
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip() == "content-length":
            return len(body) >= int(value.strip())
        if name.strip() == "transfer-encoding" and "chunked" in value:
            return body.endswith(b"0\r\n\r\n")
    return False


def status_ok(buf):
    return buf.startswith(b"HTTP/1.1 2") or buf.startswith(b"HTTP/1.0 2")


sel = selectors.DefaultSelector()
idle, failed, started = [], 0, 0
pending = {}  # socket -> bytearray of response so far (None while connecting)

while (started < n or pending) and time.monotonic() < deadline:
    while started < n and len(pending) < BATCH:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        err = s.connect_ex(("127.0.0.1", port))
        if err not in (0, errno.EINPROGRESS):
            failed += 1
            s.close()
        else:
            pending[s] = None
            sel.register(s, selectors.EVENT_WRITE)
        started += 1
    for key, _ in sel.select(timeout=0.5):
        s = key.fileobj
        if pending[s] is None:
            if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0:
                failed += 1
                sel.unregister(s)
                del pending[s]
                s.close()
                continue
            s.sendall(request)
            pending[s] = bytearray()
            sel.modify(s, selectors.EVENT_READ)
            continue
        try:
            chunk = s.recv(65536)
        except OSError:
            chunk = b""
        if not chunk:
            failed += 1
            sel.unregister(s)
            del pending[s]
            s.close()
            continue
        pending[s] += chunk
        if response_complete(pending[s]):
            ok = status_ok(pending[s])
            sel.unregister(s)
            del pending[s]
            if ok:
                idle.append(s)
            else:
                failed += 1
                s.close()

failed += len(pending) + (n - started)
print(f"ready {len(idle)} {failed}", flush=True)
# Hold until told to stop (stdin closed) or the deadline.
remaining = max(0.0, deadline - time.monotonic())
stdin_sel = selectors.DefaultSelector()
stdin_sel.register(sys.stdin, selectors.EVENT_READ)
stdin_sel.select(timeout=remaining)
for s in idle:
    s.close()
