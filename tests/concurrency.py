"""Run one worker on many threads at once and re-raise in the test what any of them raised."""
import threading
import time


def run_concurrently(worker, n_threads: int = 8, timeout: float = 120) -> None:
    """Call `worker(k)` for k in range(n_threads) on as many threads; raise the first error any raised,
    and fail when a thread has not finished within `timeout` seconds (a hang, not a pass)."""
    errors = []

    def guarded(k):
        try:
            worker(k)
        except Exception as e:  # collected and re-raised in the main thread, where pytest sees it
            errors.append(e)

    threads = [threading.Thread(target=guarded, args=(k,), daemon=True) for k in range(n_threads)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout  # one budget for all threads, not `timeout` per thread
    for t in threads:
        t.join(timeout=max(0.0, deadline - time.monotonic()))
    running = [t.name for t in threads if t.is_alive()]
    assert not running, f"{len(running)} of {n_threads} threads still running after {timeout:g} s: {running}"
    assert not errors, errors
