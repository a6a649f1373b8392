"""fetched_batches: the whole, CRC-checked batches at the start of a fetched records blob."""

from __future__ import annotations

import pytest

from strom.protocol.records import (
    ATTRIBUTES_OFFSET,
    COMPRESSION_ZSTD,
    CRC_OFFSET,
    CorruptRecord,
    build_batch,
    build_control_batch,
    fetched_batches,
)

NOW = 1_700_000_000_000


def three_batches() -> tuple[bytes, list[int]]:
    """Three batches at offsets 0, 2, 5 (leader epochs 1, 1, 4) and their sizes."""
    batches = [
        build_batch([(b"k", b"a", [], NOW), (b"k", b"b", [], NOW + 1)], base_offset=0, leader_epoch=1),
        build_batch([(None, b"c" * 50, [("h", b"v")], NOW)] * 3, base_offset=2, leader_epoch=1,
                    compression=COMPRESSION_ZSTD),
        build_batch([(b"k", b"d", [], NOW)], base_offset=5, leader_epoch=4),
    ]
    return b"".join(batches), [len(b) for b in batches]


def test_whole_batches_are_returned_with_their_headers():
    data, sizes = three_batches()
    view, headers = fetched_batches(data)
    assert bytes(view) == data
    assert [(h.base_offset, h.last_offset, h.partition_leader_epoch) for h in headers] == [(0, 1, 1), (2, 4, 1), (5, 5, 4)]
    assert [h.size for h in headers] == sizes


@pytest.mark.parametrize("source", [bytes, bytearray, memoryview])
def test_any_buffer_type_is_accepted(source):
    data, _ = three_batches()
    view, headers = fetched_batches(source(data))
    assert bytes(view) == data
    assert len(headers) == 3


def test_a_blob_cut_anywhere_inside_the_last_batch_keeps_the_batches_before_it():
    data, sizes = three_batches()
    before = sizes[0] + sizes[1]
    for cut in range(before, len(data)):
        view, headers = fetched_batches(data[:cut])
        assert bytes(view) == data[:before], cut
        assert [h.base_offset for h in headers] == [0, 2], cut


def test_a_blob_cut_inside_the_first_batch_yields_nothing():
    data, sizes = three_batches()
    for cut in range(0, sizes[0]):
        view, headers = fetched_batches(data[:cut])
        assert (bytes(view), headers) == (b"", []), cut


def test_empty_input_has_no_batches():
    view, headers = fetched_batches(b"")
    assert (bytes(view), headers) == (b"", [])


def test_control_batches_are_fetched_like_any_other():
    marker = build_control_batch(True, 7, 0, 3, NOW)
    view, headers = fetched_batches(marker)
    assert bytes(view) == marker
    assert headers[0].is_control and headers[0].producer_id == 7


@pytest.mark.parametrize("which", [0, 1, 2])
def test_a_flipped_byte_inside_a_batch_is_corrupt(which):
    """Every byte from the CRC on (the CRC covers the attributes to the end) is checked."""
    data, sizes = three_batches()
    start = sum(sizes[:which])
    for position in range(start + CRC_OFFSET, start + sizes[which]):
        damaged = bytearray(data)
        damaged[position] ^= 0x40
        with pytest.raises(CorruptRecord):
            fetched_batches(bytes(damaged))
    assert ATTRIBUTES_OFFSET == CRC_OFFSET + 4


@pytest.mark.parametrize("magic", [0, 1, 3])
def test_a_wrong_magic_is_corrupt(magic):
    data, sizes = three_batches()
    damaged = bytearray(data)
    damaged[sizes[0] + 16] = magic  # the second batch's magic byte
    with pytest.raises(CorruptRecord):
        fetched_batches(bytes(damaged))


def test_a_batch_length_below_the_minimum_is_corrupt():
    data, _ = three_batches()
    damaged = bytearray(data)
    damaged[8:12] = (10).to_bytes(4, "big")
    with pytest.raises(CorruptRecord):
        fetched_batches(bytes(damaged))


def test_a_damaged_batch_after_good_ones_fails_the_whole_blob():
    """The follower must not append anything from a blob with damage in it: no partial answer."""
    data, sizes = three_batches()
    damaged = bytearray(data)
    damaged[-1] ^= 0xFF
    with pytest.raises(CorruptRecord, match="offset 5"):
        fetched_batches(bytes(damaged))
