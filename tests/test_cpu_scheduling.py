"""hub/cpu.py: the policy set on a thread is the one the threads it starts afterwards run under."""
import os
import threading

from hub import cpu


def _policy_of_a_thread_started_after(policy: str) -> tuple[bool, int]:
    seen = {}

    def parent() -> None:
        seen["applied"] = cpu.apply(policy)
        child = threading.Thread(target=lambda: seen.setdefault("child", os.sched_getscheduler(0)))
        child.start()
        child.join()

    thread = threading.Thread(target=parent)  # a thread of its own: the test process's main thread is left as it was
    thread.start()
    thread.join()
    return seen["applied"], seen["child"]


def test_a_batch_thread_starts_batch_threads_and_normal_undoes_it():
    assert _policy_of_a_thread_started_after("batch") == (True, os.SCHED_BATCH)
    assert _policy_of_a_thread_started_after("normal") == (True, os.SCHED_OTHER)
