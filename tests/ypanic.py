"""Updates that make pycrdt panic, and a document that panics on demand.

pycrdt raises ``pyo3_runtime.PanicException`` when yrs panics; it derives from
``BaseException``, so ``except Exception`` misses it.
"""

from __future__ import annotations

from typing import Any

from pycrdt import Doc

# Found by fuzzing offline (single-byte mutations of real updates applied to documents
# with content; 3 panics in 80,000), then minimized by hand: a struct with *zero-length*
# content at a clock the document already holds makes yrs' ``BlockSet::exclude`` unwrap
# a None -> ``pyo3_runtime.PanicException`` (a BaseException). On a document that lacks
# that clock the same bytes apply without error.
#
# "minimized": the base is a node graph (client 1001) plus a label set by client 2002;
# the bad update is that label set again, with its content count 1 -> 0 (18 bytes).
PANIC_MINIMIZED_BASE = bytes.fromhex(
    "0201d20f002800e90700056c6162656c01770a4f7363696c6c61746f7211e907002701056e6f646573026e"
    "31012800e9070004747970650177036f73632800e907000178017c412000002800e907000179017c41a000"
    "002700e9070006706172616d73012800e907040466726571017c43dc00002701056e6f646573026e320128"
    "00e9070604747970650177036f75742800e907060178017c434800002800e907060179017c41a000002700"
    "e9070606706172616d73012701056564676573026531012800e9070b06736f757263650177026e312800e9"
    "070b0c736f75726365536f636b65740177036f75742800e9070b067461726765740177026e322800e9070b"
    "0c746172676574536f636b6574017702696e2801046d657461046e616d6501770766697874757265"
    "00"
)
PANIC_MINIMIZED_UPDATE = bytes.fromhex("0101d20f002800e90700056c6162656c0000")
# "fuzzed": exactly as the fuzzer found it. The base is a text + node-map document after
# six real edits of client 2002; the update is one of those edits (insert "Q") with one
# byte inserted, which makes the string content empty and adds an empty delete set.
PANIC_FUZZED_BASE = bytes.fromhex(
    "0207d20f00c1e90704e9070b01c4d20f00e9070b02626384e907130378797ac4e90701e907020151a8e90716"
    "017c40a000002701056e6f646573026e31012800d20f0804747970650177016620e907000101047465787402"
    "84e90701016c81e907020284e907040620776f726c64c4e90704e90705062c206465617284e9070a03212121"
    "2701056e6f646573026e30012800e9071404747970650177036f73632100e907140178012701056e6f646573"
    "026b30012800e9071704747970650177036f73632800e907170178017c000000002700e9071706706172616d"
    "73012800e9071a0167017c3f8000002101056e6f646573026b310100042701056e6f646573026b32012800e9"
    "072104747970650177036f73632100e907210178012700e9072106706172616d73012800e907240167017c3f"
    "8000002701056e6f646573026b33012800e9072604747970650177036f73632800e907260178017c40400000"
    "2700e9072606706172616d73012800e907290167017c3f8000002701056e6f646573026b34012800e9072b04"
    "747970650177036f73632800e9072b0178017c408000002700e9072b06706172616d73012800e9072e016701"
    "7c3f800000a8e90723017c4110000002e907050002030216011c052301d20f010001"
)
PANIC_FUZZED_UPDATE = bytes.fromhex("0101d20f06c4e90701e9070200015100")

PANIC_CASES = {
    "minimized": (PANIC_MINIMIZED_BASE, PANIC_MINIMIZED_UPDATE),
    "fuzzed": (PANIC_FUZZED_BASE, PANIC_FUZZED_UPDATE),
}


def panics(base: bytes, update: bytes) -> bool:
    """Does applying ``update`` to a doc holding ``base`` panic pycrdt?"""
    doc: Doc[Any] = Doc()
    doc.apply_update(base)
    try:
        doc.apply_update(update)
    except Exception:
        return False
    except BaseException as exc:
        if type(exc).__name__ != "PanicException":
            raise
        return True
    return False


def panic_type() -> type[BaseException]:
    """``pyo3_runtime.PanicException`` (only reachable through a real panic)."""
    doc: Doc[Any] = Doc()
    doc.apply_update(PANIC_MINIMIZED_BASE)
    try:
        doc.apply_update(PANIC_MINIMIZED_UPDATE)
    except BaseException as exc:
        if type(exc).__name__ == "PanicException":
            return type(exc)
        raise
    raise AssertionError("pycrdt no longer panics on PANIC_MINIMIZED_UPDATE")


PANIC_MARKER = b"panic-here"


class PanickyDoc(Doc[Any]):
    """A pycrdt doc that raises the real PanicException for any update containing
    ``PANIC_MARKER``: stands in for a yrs panic that the server cannot screen out."""

    def apply_update(self, update: bytes) -> None:
        if PANIC_MARKER in update:
            raise panic_type()("called `Option::unwrap()` on a `None` value")
        super().apply_update(update)
