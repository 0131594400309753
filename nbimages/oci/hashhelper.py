"""The hash helper process (`rangehash`): run as `python -I -S hashhelper.py FD WORKERS`.

It reads requests from the Unix socket FD, each `job offset length algorithm` with one open
file descriptor attached, hashes up to `length` bytes of that file from `offset` in one of
WORKERS threads, and answers `job ok hexdigest count` or `job err message`. When the socket
closes it drops what is queued, finishes nothing more, and exits. The standard library only,
imported in a few milliseconds: this file is a script, not part of the package's import graph.
"""

import hashlib
import os
import queue
import socket
import sys
import threading

CHUNK = 1 << 20  # bytes per read: larger reads are not faster (BENCHMARKS.md, issue 13)
MESSAGE = 512  # the longest request or answer


class _Stopped(Exception):
    pass


def _hash(fd, offset, length, alg, view, stop):
    h = hashlib.new(alg)
    count = 0
    while count < length:
        if stop.is_set():
            raise _Stopped()
        n = os.preadv(fd, [view[:min(len(view), length - count)]], offset + count)
        if not n:
            break
        h.update(view[:n])
        count += n
    return h.hexdigest(), count


def serve(fd, workers):
    """Hash the ranges that arrive on the socket `fd` until it closes."""
    sock = socket.socket(fileno=fd)
    jobs = queue.SimpleQueue()
    stop = threading.Event()
    send = threading.Lock()

    def work():
        view = memoryview(bytearray(CHUNK))
        while (got := jobs.get()) is not None:
            job, f, offset, length, alg = got
            try:
                hexdigest, count = _hash(f, offset, length, alg, view, stop)
                reply = f"{job} ok {hexdigest} {count}"
            except _Stopped:
                continue
            except (OSError, ValueError) as e:
                reply = f"{job} err {type(e).__name__}: {e}"
            finally:
                os.close(f)
            with send:
                try:
                    sock.send(reply.encode()[:MESSAGE])
                except OSError:
                    stop.set()  # the client is gone

    threads = [threading.Thread(target=work, daemon=True) for _ in range(workers)]
    for t in threads:
        t.start()
    while True:
        try:
            msg, fds, _flags, _addr = socket.recv_fds(sock, MESSAGE, 1)
        except OSError:
            break
        if not msg:
            for f in fds:
                os.close(f)
            break
        try:
            job, offset, length, alg = msg.decode().split()
            request = (int(job), int(offset), int(length), alg)
        except ValueError:
            request = None
        if request is None or len(fds) != 1:
            for f in fds:
                os.close(f)
            with send:
                sock.send(f"{msg.split(b' ')[0].decode(errors='replace')} err a request "
                          "without one file descriptor".encode()[:MESSAGE])
            continue
        job, offset, length, alg = request
        jobs.put((job, fds[0], offset, length, alg))
    stop.set()
    for _ in threads:
        jobs.put(None)
    for t in threads:
        t.join()
    while True:  # what was queued but never started
        try:
            got = jobs.get_nowait()
        except queue.Empty:
            break
        if got is not None:
            os.close(got[1])


if __name__ == "__main__":
    serve(int(sys.argv[1]), int(sys.argv[2]))
