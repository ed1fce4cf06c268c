"""Run one worker on many threads at once and re-raise in the test what any of them raised."""
import threading


def run_concurrently(worker, n_threads: int = 8, timeout: float = 120) -> None:
    """Call `worker(k)` for k in range(n_threads) on as many threads; raise the first error any raised."""
    errors = []

    def guarded(k):
        try:
            worker(k)
        except Exception as e:  # collected and re-raised in the main thread, where pytest sees it
            errors.append(e)

    threads = [threading.Thread(target=guarded, args=(k,)) for k in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=timeout)
    assert not errors, errors
