"""The session's event log: every event has a kind and a sequence number; readers resume from the last number
they handled, whatever the timestamps, the log's bound or the threads that write."""

import json
import threading

from avatar_desktop.runtime.events import EventKind, EventLog


def test_sequence_numbers_count_from_one_and_since_gives_the_newer_ones_in_order():
    log = EventLog()
    assert log.last_sequence == 0 and log.since(0) == []
    first = log.add(EventKind.WORKER_READY, "worker 1 ready")
    second = log.add(EventKind.MIC_STOPPED, "microphone 'x' stopped delivering audio")
    third = log.add(EventKind.MIC_BACK, "microphone 'x' is back")
    assert [e.sequence for e in (first, second, third)] == [1, 2, 3] and log.last_sequence == 3
    assert log.since(0) == [first, second, third] == list(log)
    assert log.since(1) == [second, third]
    assert log.since(3) == []


def test_events_in_the_same_millisecond_are_all_read():
    log = EventLog()
    events = [log.add(EventKind.SINK_FAILED, f"sink {i} failed") for i in range(50)]
    assert len({e.t for e in events}) < len(events)  # timestamps repeat: they cannot tell events apart
    seen, read = 0, []
    for _ in range(3):
        for event in log.since(seen):
            read.append(event)
            seen = event.sequence
    assert read == events


def test_a_full_log_keeps_the_newest_and_numbers_go_on():
    log = EventLog(capacity=3)
    for i in range(5):
        log.add(EventKind.WORKER_DIED, f"worker {i} died")
    assert [e.sequence for e in log] == [3, 4, 5] and log.last_sequence == 5
    assert [e.message for e in log.since(1)] == ["worker 2 died", "worker 3 died", "worker 4 died"]
    assert [e.sequence for e in log.since(4)] == [5]


def test_threads_writing_at_once_get_distinct_consecutive_numbers():
    log = EventLog(capacity=10_000)
    start = threading.Barrier(4)

    def write(name: str) -> None:
        start.wait()
        for i in range(500):
            log.add(EventKind.WORKER_READY, f"{name} {i}")

    threads = [threading.Thread(target=write, args=(f"thread {n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [e.sequence for e in log] == list(range(1, 2001))
    for n in range(4):  # each thread's events stay in the order it wrote them
        mine = [int(e.message.split()[-1]) for e in log if e.message.startswith(f"thread {n} ")]
        assert mine == list(range(500))


def test_problems_and_news_and_the_json_form():
    news = {kind for kind in EventKind if not kind.problem}
    assert news == {EventKind.STALE_MEMORY_REMOVED, EventKind.PORTRAIT_NOTICE, EventKind.WORKER_READY,
                    EventKind.MIC_BACK}
    event = EventLog().add(EventKind.MODEL_FAILED, "model 'x' failed to load: no model.json")
    data = json.loads(json.dumps(event.as_json()))
    assert data == {"sequence": 1, "t": event.t, "kind": "model_failed", "message": event.message}
    assert EventKind(data["kind"]) is EventKind.MODEL_FAILED
