from strom.handlers.fetch_sessions import FetchPosition, FetchSessionCache, PartitionKey
from strom.protocol.errors import ErrorCode

A0 = PartitionKey("a", None, 0)
A1 = PartitionKey("a", None, 1)


def test_sessionless_full_fetch_opens_nothing() -> None:
    cache = FetchSessionCache()
    start = cache.begin(0, -1, [(A0, FetchPosition(5, 100))], [])
    assert start.error == ErrorCode.NONE and start.session is None and not start.incremental
    assert start.session_id == 0 and list(start.partitions) == [A0] and len(cache) == 0


def test_initial_then_incremental_updates_and_forgets() -> None:
    cache = FetchSessionCache()
    first = cache.begin(0, 0, [(A0, FetchPosition(5, 100)), (A1, FetchPosition(7, 100))], [])
    assert first.session is not None and first.session_id > 0 and not first.incremental
    sid = first.session_id
    second = cache.begin(sid, 1, [(A0, FetchPosition(9, 200))], [A1])
    assert second.error == ErrorCode.NONE and second.incremental
    assert list(second.partitions) == [A0]
    assert second.partitions[A0].fetch_offset == 9 and second.partitions[A0].partition_max_bytes == 200
    # The epoch must advance by one each time.
    assert cache.begin(sid, 1, [], []).error == ErrorCode.INVALID_FETCH_SESSION_EPOCH
    assert cache.begin(sid, 2, [], []).error == ErrorCode.NONE


def test_unknown_session_and_bad_epochs() -> None:
    cache = FetchSessionCache()
    assert cache.begin(12345, 1, [], []).error == ErrorCode.FETCH_SESSION_ID_NOT_FOUND
    assert cache.begin(0, 3, [], []).error == ErrorCode.INVALID_FETCH_SESSION_EPOCH


def test_final_epoch_closes_the_session() -> None:
    cache = FetchSessionCache()
    sid = cache.begin(0, 0, [(A0, FetchPosition(0, 1))], []).session_id
    closed = cache.begin(sid, -1, [(A0, FetchPosition(3, 1))], [])
    assert closed.session is None and closed.partitions[A0].fetch_offset == 3
    assert cache.begin(sid, 1, [], []).error == ErrorCode.FETCH_SESSION_ID_NOT_FOUND


def test_least_recently_used_session_is_evicted_when_full() -> None:
    cache = FetchSessionCache(max_slots=2)
    s1 = cache.begin(0, 0, [], []).session_id
    s2 = cache.begin(0, 0, [], []).session_id
    assert cache.begin(s1, 1, [], []).error == ErrorCode.NONE  # s1 is now the most recent
    cache.begin(0, 0, [], [])
    assert len(cache) == 2
    assert cache.begin(s2, 1, [], []).error == ErrorCode.FETCH_SESSION_ID_NOT_FOUND
    assert cache.begin(s1, 2, [], []).error == ErrorCode.NONE
